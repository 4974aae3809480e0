"""AT (Madry PGD-AT), METHODS.md §4.2: ``L = mean_i w_i·ce(f(x'_i), y_i)``.

``w`` [B] multiplies the adversarial cross-entropy: this is where GAIRAT, WMMR, MAIL-AT and
VIR-AT put their weights (ones for plain AT).
"""

from __future__ import annotations

from torch import Tensor

from irat.losses import ce


def at(logits_nat: Tensor | None, logits_adv: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Returns ``(loss, per_sample)``; ``logits_adv`` [B, n], ``y`` [B], ``w`` [B]."""
    per_sample = w * ce(logits_adv, y)
    return per_sample.mean(), per_sample
