"""LRAT: local reweighting over several attacks ("Local Reweighting for Adversarial Training",
seed 001, Eq. 7, 11, 12 and appendix B; METHODS.md §4.10).

Each instance i has one adversarial variant x̃_ij per attack j (m attacks). On each variant, from
detached logits:

    t_ij = p_y(x̃_ij) − max_{k≠y} p_k(x̃_ij) ∈ [−1, 1]           the variable factor (Eq. 11)
    ω_ij = α · clamp(1 − t_ij, min=0)^β                       the reweighting function (Eq. 12)

(α = 2, β = 0.5; ω(1) = 0, ω(0) = α, ω(−1) = α·2^β; non-increasing in t; the clamp keeps a t a
rounding above 1 from giving NaN). In the "GD" ablations the PGD variant takes GAIRAT's raw weight
½(1 + tanh(λ + 5(1 − 2κ/K))) instead (λ = −1, K = 10; ``irat.weighting.gairat``). LSAT is
α = 1, β = 0: ω ≡ 1 exactly (x⁰ = 1 also at x = 0).

The adversarial data term x*_i gets ``c_i = [C − Σ_j ω_ij]_+`` (C = 0.1), so an instance whose
variants are all safe is not dropped. Normalisation (appendix B, DECISION #12): raw c and ω first,
then every coefficient divided by ``s̄ = mean_i(c_i + Σ_j ω_ij)``, so that the coefficients of an
instance sum to 1 on average over the batch. ``s̄ ≥ C > 0`` always, so the division needs no guard:
with ω ≡ 1, m = 1 and C < 1 (LSAT) every coefficient is exactly 1 or 0 and the loss is exactly AT's.
Under torchrun the mean is over the global batch (``irat.distributed.global_sums``).

Shapes: ``t``, ``ω`` [B, m] (or any shape for ``lrat``); coefficients [B, m + 1], column m = c.
"""

from __future__ import annotations

import torch
from torch import Tensor

from irat.distributed import global_sums


def lrat(t: Tensor, alpha: float = 2.0, beta: float = 0.5) -> Tensor:
    """``α · clamp(1 − t, min=0)^β`` elementwise for variable factors ``t`` (detached)."""
    return alpha * (1.0 - t.detach()).clamp(min=0.0).pow(beta)


def data_coefficient(omega: Tensor, c: float = 0.1) -> Tensor:
    """``[C − Σ_j ω_ij]_+`` [B] for raw weights ``omega`` [B, m]."""
    return (c - omega.detach().sum(1)).clamp(min=0.0)


def lrat_coefficients(omega: Tensor, c: float = 0.1) -> Tensor:
    """Raw ω [B, m] → the normalised coefficients [B, m + 1]: columns 0..m−1 the variants' ω_ij
    and column m the data term's c_i, all divided by ``mean_i(c_i + Σ_j ω_ij)``."""
    if not c > 0:
        raise ValueError(f"lrat: C must be > 0 (the paper's constraint on Eq. 7), got {c}")
    raw = torch.cat([omega.detach(), data_coefficient(omega, c)[:, None]], dim=1)
    total, count = global_sums(raw.sum(), raw.shape[0])  # the global batch's mean (one all-reduce)
    return raw / (total / count.to(raw.dtype))
