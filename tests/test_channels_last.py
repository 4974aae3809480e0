"""Channels-last training (``train.channels_last``) computes the same function: the format-keeping
``Flatten`` and a whole training step agree with the default memory format."""

import copy

import torch
from torch import nn

import irat
from irat.config import resolve_config
from irat.models.flatten import Flatten
from irat.training.assemble import build_step
from irat.training.step import train_step
from irat.types import Batch

CL = torch.channels_last


def test_flatten_matches_nn_flatten_and_keeps_the_gradient_format():
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    for xin in (x.clone(), x.contiguous(memory_format=CL)):
        a = xin.clone().requires_grad_(True)
        b = xin.clone().requires_grad_(True)
        out_a, out_b = Flatten()(a), nn.Flatten()(b)
        assert torch.equal(out_a, out_b)
        w = torch.randn(out_a.shape, dtype=torch.float64)
        (ga,) = torch.autograd.grad((out_a * w).sum(), a)
        (gb,) = torch.autograd.grad((out_b * w).sum(), b)
        assert torch.equal(ga, gb)
        input_is_cl = xin.is_contiguous(memory_format=CL) and not xin.is_contiguous()
        assert ga.is_contiguous(memory_format=CL) == input_is_cl


def test_a_channels_last_training_step_equals_the_default_one():
    spec = irat.data.registry.get("fashion-mnist").spec
    torch.manual_seed(0)
    # float64: in float32 the two formats' kernels sum in different orders, and TRADES' KL gradient
    # near its start is small enough that the rounding flips PGD's sign on a few pixels (seen here)
    model = irat.models.create("small-cnn", dataset=spec).double()
    x = torch.rand(16, 1, 28, 28, dtype=torch.float64)
    batch = Batch(torch.arange(16), x, torch.randint(0, 10, (16,)))
    parts = build_step(resolve_config(None, method="trades", steps=3), torch.Generator().manual_seed(0))
    results = []
    for fmt in (torch.contiguous_format, CL):
        m = copy.deepcopy(model).to(memory_format=fmt)
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        parts.attack.keywords["generator"].manual_seed(0)
        out = train_step(m, Batch(batch.idx, batch.x.contiguous(memory_format=fmt), batch.y), parts, opt, 0)
        results.append((out.loss, [p.detach().clone() for p in m.parameters()]))
    (loss_a, params_a), (loss_b, params_b) = results
    assert torch.allclose(loss_a, loss_b, rtol=0, atol=1e-10)
    assert all(torch.allclose(p, q, rtol=0, atol=1e-10) for p, q in zip(params_a, params_b))
