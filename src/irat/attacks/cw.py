"""CW-k (METHODS.md §3.3): PGD (§3.1) maximising the CW margin loss
``−clamp(z_y − max_{j≠y} z_j + κ, min=0)`` with κ = 50, uniform start and step ε/4 by default."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from irat.attacks.pgd import pgd
from irat.types import AttackResult


def cw_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int = 20,
    step_size: float | None = None,
    norm: str = "linf",
    kappa: float = 50.0,
    start: str = "uniform",
    record_path: bool = False,
    final_logits: bool = True,
    generator: torch.Generator | None = None,
) -> AttackResult:
    """PGD on the CW loss; ``step_size`` defaults to ``eps / 4``."""
    return pgd(
        model,
        x,
        y,
        eps=eps,
        steps=steps,
        step_size=eps / 4 if step_size is None else step_size,
        norm=norm,
        loss="cw",
        start=start,
        kappa=kappa,
        record_path=record_path,
        final_logits=final_logits,
        generator=generator,
    )
