"""Several adversarial variants per sample (LRAT / LSAT, METHODS.md §4.10): each attack of a list
runs on the whole batch, and the results are stacked sample-major, so that the training step
evaluates all B·m variants in one forward and the statistics come out shaped [B, m].

Shapes: ``x`` [B, C, H, W], ``y`` [B] → ``x_adv`` [B, m, C, H, W] (variant j of sample i at
``[i, j]``), ``logits_adv`` None (the training step computes them with a graph),
``steps_to_flip`` [B]: κ of the one attack that records its path (LRAT's "GD" PGD variant), or
None. The loop runs over the m attacks (m ≤ 4), never over samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from irat.types import Attack, AttackResult


def variants(model: nn.Module, x: Tensor, y: Tensor, *, attacks: Sequence[Attack]) -> AttackResult:
    """Run every attack in ``attacks`` (in order, so random starts are drawn in that order) and
    stack their outputs: ``x_adv`` [B, m, C, H, W]."""
    if not attacks:
        raise ValueError("variants needs at least one attack")
    results = [attack(model, x, y) for attack in attacks]
    kappas = [r.steps_to_flip for r in results if r.steps_to_flip is not None]
    if len(kappas) > 1:
        raise ValueError("at most one variant may record its PGD path (steps_to_flip)")
    return AttackResult(
        x_adv=torch.stack([r.x_adv for r in results], dim=1),
        steps_to_flip=kappas[0] if kappas else None,
    )
