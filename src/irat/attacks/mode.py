"""Model mode during an attack (METHODS.md §1.1.4): adversarial examples are generated with the
model in ``eval()`` mode, so BatchNorm uses its running statistics and does not update them, and
dropout is off. The previous ``training`` flag of every submodule is restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


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
