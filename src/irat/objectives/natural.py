"""Plain (natural) training, METHODS.md §4.1: ``L = mean_i w_i·ce(f(x_i), y_i)``.

``w`` [B] multiplies the per-sample cross-entropy (ones for the paper's method).
"""

from __future__ import annotations

from torch import Tensor

from irat.losses import ce


def natural(logits_nat: Tensor, logits_adv: Tensor | None, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Returns ``(loss, per_sample)``; ``logits_nat`` [B, n], ``y`` [B], ``w`` [B]."""
    per_sample = w * ce(logits_nat, y)
    return per_sample.mean(), per_sample
