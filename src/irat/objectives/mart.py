"""MART, METHODS.md §4.4 (definition from the MAIL appendix, KL direction of the MART code):
``L = mean_i [w_i·bce(f(x'_i), y_i) + β·KL(p(x_i) ‖ p(x'_i))·(1.0000001 − p_y(x_i))]``.

``w`` [B] multiplies the boosted CE only (MAIL-MART); ``β`` = 6 (5 to reproduce VIR's tables).
The factor ``(1 − p_y(x))`` is not detached.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from irat.losses import bce, kl, true_value


def mart(
    logits_nat: Tensor, logits_adv: Tensor, y: Tensor, w: Tensor, *, beta: float = 6.0
) -> tuple[Tensor, Tensor]:
    """Returns ``(loss, per_sample)``; logits [B, n], ``y`` [B], ``w`` [B]."""
    p_true_nat = true_value(F.softmax(logits_nat, dim=1), y)
    reg = kl(logits_nat, logits_adv) * (1.0000001 - p_true_nat)
    per_sample = w * bce(logits_adv, y) + beta * reg
    return per_sample.mean(), per_sample
