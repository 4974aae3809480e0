"""Model mode during an attack (METHODS.md §1.1.4): adversarial examples are generated with the
model in ``eval()`` mode, so BatchNorm uses its running statistics and does not update them, and
dropout is off. The previous ``training`` flag of every submodule is restored afterwards.

``kept_running_stats``: a train-mode forward that leaves BatchNorm's running statistics as they
were (the natural forward that only the instance weights read)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn.modules.batchnorm import _NormBase


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``with eval_mode(model): ...`` runs the body with ``model.eval()`` and then restores each
    submodule's own ``training`` flag (also when the body raises)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily ``requires_grad_(False)`` on every parameter, for third-party attacks that call
    ``.backward()`` (they would otherwise accumulate ``θ.grad``); the flags are restored after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def kept_running_stats(model: nn.Module) -> Iterator[nn.Module]:
    """``with kept_running_stats(model): model(x)`` runs train-mode forwards (BatchNorm normalises
    with the batch's own statistics) and then restores every running mean, variance and batch
    count, so the forwards inside leave no trace in the model. Models without BatchNorm copy
    nothing."""
    saved = [
        (buf, buf.clone())
        for m in model.modules()
        if isinstance(m, _NormBase) and m.track_running_stats
        for buf in (m.running_mean, m.running_var, m.num_batches_tracked)
        if buf is not None
    ]
    try:
        yield model
    finally:
        for buf, copy in saved:
            buf.copy_(copy)
