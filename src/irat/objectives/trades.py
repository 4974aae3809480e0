"""TRADES, METHODS.md §4.3:
``L = mean_i [ce(f(x_i), y_i) + β·w_i·KL(p(x_i) ‖ p(x'_i))]``.

``w`` [B] multiplies the KL regulariser only (MAIL-TRADES, VIR-TRADES, BiLAW-TRADES); ``β`` is
TRADES' 1/λ (6 by default). Gradients flow through both p(x) and p(x') (TRADES convention), and
the regulariser vanishes when x' = x, so the loss is then the natural CE.
"""

from __future__ import annotations

from torch import Tensor

from irat.losses import ce, kl


def trades(
    logits_nat: Tensor, logits_adv: Tensor, y: Tensor, w: Tensor, *, beta: float = 6.0
) -> tuple[Tensor, Tensor]:
    """Returns ``(loss, per_sample)``; logits [B, n], ``y`` [B], ``w`` [B]."""
    per_sample = ce(logits_nat, y) + beta * (w * kl(logits_nat, logits_adv))
    return per_sample.mean(), per_sample
