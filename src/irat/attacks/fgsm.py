"""FGSM (METHODS.md §3.1): ``x' = Π(x + ε · sign(∇_x CE(f(x), y)))``, no random start; in ℓ2 the
step is ``ε · g / ‖g‖₂``. It is PGD with K = 1, step ε and start ``none`` (one loop, §3.1)."""

from __future__ import annotations

from torch import Tensor, nn

from irat.attacks.pgd import pgd
from irat.types import AttackResult


def fgsm(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: str = "linf") -> AttackResult:
    """One CE gradient step of size ``eps`` from ``x``; returns ``x_adv`` and ``logits_adv``."""
    return pgd(model, x, y, eps=eps, steps=1, step_size=eps, norm=norm, loss="ce", start="none")
