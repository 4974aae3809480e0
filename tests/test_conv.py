"""The input gradient of ``irat.models.conv`` equals the stock convolution's gradients,
first and second order, for every stride / kernel / padding / size combination in a table."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from irat.models.conv import Conv2d, input_grad


@pytest.mark.parametrize(
    "c_in, c_out, size, k, s, p",
    [
        (1, 16, 28, 4, 2, 1),  # tiny-cnn's first layer
        (1, 4, 28, 3, 2, 1),
        (3, 5, 17, 5, 2, 2),  # odd size
        (2, 3, 16, 3, 3, 0),  # stride 3, no padding
        (1, 2, 9, 2, 2, 0),  # kernel = stride
        (3, 4, 12, 4, 2, 3),  # padding larger than stride
    ],
)
def test_input_grad_equals_the_transposed_convolution(c_in, c_out, size, k, s, p):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, c_in, size, size, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(c_out, c_in, k, k, dtype=torch.float64, generator=g)
    out = F.conv2d(x, w, stride=s, padding=p)
    grad_out = torch.randn(out.shape, dtype=torch.float64, generator=g)
    (expected,) = torch.autograd.grad(out, x, grad_out)
    got = input_grad(grad_out, w, s, p, (size, size))
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-12)


def _pair(c_in=1, c_out=6, k=4, s=2, p=1):
    torch.manual_seed(0)
    fast = Conv2d(c_in, c_out, k, stride=s, padding=p).double()
    stock = nn.Conv2d(c_in, c_out, k, stride=s, padding=p).double()
    stock.load_state_dict(fast.state_dict())
    return fast, stock


def test_layer_gradients_match_nn_conv2d_for_input_weight_and_bias():
    fast, stock = _pair()
    x = torch.rand(3, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    results = []
    for layer in (fast, stock):
        out = layer(x)
        loss = (out.sin() * torch.arange(out.numel(), dtype=torch.float64).view_as(out)).sum()
        results.append(torch.autograd.grad(loss, (x, layer.weight, layer.bias)))
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-10)


def test_frozen_weights_give_the_input_gradient_without_a_weight_gradient_kernel():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    fast, stock = _pair()
    x = torch.rand(2, 1, 10, 10, dtype=torch.float64, requires_grad=True)
    (expected,) = torch.autograd.grad(stock(x).square().sum(), x)
    fast.requires_grad_(True)
    with Ops() as trainable:
        torch.autograd.grad(fast(x).square().sum(), x)
    fast.requires_grad_(False)
    with Ops() as frozen:
        (gx,) = torch.autograd.grad(fast(x).square().sum(), x)
    assert torch.allclose(gx, expected, atol=1e-12)
    assert "convolution_backward" in trainable.seen  # the weight gradient's kernel, when needed
    assert "convolution_backward" not in frozen.seen and "slow_conv_transpose2d" in frozen.seen


def test_double_backward_matches_nn_conv2d():
    """BiLAW's meta step differentiates through a gradient: the second-order terms must agree."""
    fast, stock = _pair(c_in=2, c_out=3, k=3, s=2, p=1)
    x = torch.rand(2, 2, 9, 9, dtype=torch.float64, requires_grad=True)
    seconds = []
    for layer in (fast, stock):
        (gx,) = torch.autograd.grad(layer(x).tanh().sum(), x, create_graph=True)
        seconds.append(torch.autograd.grad(gx.square().sum(), (x, layer.weight)))
    for a, b in zip(*seconds):
        assert torch.allclose(a, b, atol=1e-10)


def test_state_dict_is_that_of_nn_conv2d():
    fast, stock = _pair()
    assert fast.state_dict().keys() == stock.state_dict().keys()


def test_gradients_under_bf16_autocast_match_nn_conv2d():
    """Under CPU autocast the forward runs in bf16: the backward must accept bf16 gradients and
    return each gradient in its input's dtype, close to what the stock layer gives."""
    fast, stock = _pair()
    fast, stock = fast.float(), stock.float()
    x = torch.rand(4, 1, 12, 12, requires_grad=True)
    grads = []
    for layer in (fast, stock):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = layer(x).float().square().sum()
        grads.append(torch.autograd.grad(loss, (x, layer.weight, layer.bias)))
    for a, b in zip(*grads):
        assert a.dtype == b.dtype == torch.float32
        assert torch.allclose(a, b, rtol=0.05, atol=0.05 * b.abs().max().item())
