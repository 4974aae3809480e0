"""LRAT / LSAT, METHODS.md §4.10 (seed 001, Eq. 7):
``L = mean_i [ c_i·ce(f(x*_i), y_i) + Σ_j ω_ij·ce(f(x̃_ij), y_i) ]``.

``logits_adv`` [B, m, n] are the logits of the m adversarial variants of each instance (one
forward of the stacked B·m images, with a graph); ``w`` [B, m + 1] the jointly normalised
coefficients of ``irat.weighting.lrat_coefficients`` (columns 0..m−1: ω_ij, column m: c_i).
The data term x* is the variant ``data_term`` (its column index) or, with ``data_term=None``,
the natural input (``logits_nat`` [B, n], with a graph). A variant the method runs only for the
data term has ω = 0 in its column.

With m = 1, ω ≡ 1 and C < 1 (LSAT) the coefficients are exactly (1, 0) and the loss is exactly
AT's ``mean_i ce(f(x̃_i), y_i)`` on that variant.
"""

from __future__ import annotations

from torch import Tensor

from irat.losses import ce


def lrat(
    logits_nat: Tensor | None, logits_adv: Tensor, y: Tensor, w: Tensor, *, data_term: int | None = 0
) -> tuple[Tensor, Tensor]:
    """Returns ``(loss, per_sample)``; ``logits_adv`` [B, m, n], ``y`` [B], ``w`` [B, m + 1]."""
    b, m, n = logits_adv.shape
    per_variant = ce(logits_adv.reshape(b * m, n), y[:, None].expand(b, m).reshape(-1)).view(b, m)
    data = ce(logits_nat, y) if data_term is None else per_variant[:, data_term]
    per_sample = (w[:, :m] * per_variant).sum(1) + w[:, m] * data
    return per_sample.mean(), per_sample
