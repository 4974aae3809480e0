"""Per-sample loss and margin primitives shared by attacks, objectives and weighting schemes
(METHODS.md §2). Each takes logits ``z`` [B, n] and labels ``y`` [B] and returns a vector [B]:
the reduction is always done explicitly by the caller.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def ce(z: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy ``−log softmax(z)_y`` per sample; ``y`` [B] labels, or [B, n] target
    distributions (then ``−Σ_k y_k log softmax(z)_k`` = ``soft_ce``: the adaptive targets)."""
    return F.cross_entropy(z, y, reduction="none")


def soft_ce(z: Tensor, t: Tensor) -> Tensor:
    """Soft-target cross-entropy ``−Σ_k t_k log softmax(z)_k``; ``t`` [B, n] rows sum to 1."""
    return -(t * F.log_softmax(z, dim=1)).sum(1)


def kl(z_p: Tensor, z_q: Tensor) -> Tensor:
    """``KL(softmax(z_p) ‖ softmax(z_q)) = Σ_k p_k (log p_k − log q_k)`` per sample (TRADES'
    regulariser with p = p(x), q = p(x'))."""
    log_p = F.log_softmax(z_p, dim=1)
    log_q = F.log_softmax(z_q, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1)


def other_max(v: Tensor, y: Tensor) -> Tensor:
    """``max_{j≠y} v_j`` per sample, masking the true class with −inf (never "top-1 ≠ y").
    The mask is scattered, not ``F.one_hot``, which reads ``y``'s range back to the host."""
    is_true = torch.zeros_like(v, dtype=torch.bool).scatter_(1, y[:, None], True)
    masked = v.masked_fill(is_true, float("-inf"))
    return masked.amax(1)


def true_value(v: Tensor, y: Tensor) -> Tensor:
    """``v_y`` per sample."""
    return v.gather(1, y[:, None]).squeeze(1)


def margin(v: Tensor, y: Tensor) -> Tensor:
    """Top-other margin ``v_y − max_{j≠y} v_j``; on probabilities this is MAIL's PM ∈ [−1, 1]."""
    return true_value(v, y) - other_max(v, y)


def pm(z: Tensor, y: Tensor) -> Tensor:
    """Probabilistic margin ``p_y − max_{j≠y} p_j`` of logits ``z`` (MAIL, WMMR, LRAT's t)."""
    return margin(F.softmax(z, dim=1), y)


def mc_margin(p: Tensor, y: Tensor) -> Tensor:
    """BiLAW's multi-class margin ``Δ_j = p_y − p_j`` [B, n] of probabilities ``p``; Δ_y = 0."""
    return true_value(p, y)[:, None] - p


def cw(z: Tensor, y: Tensor, kappa: float = 50.0) -> Tensor:
    """CW margin loss ``−clamp(z_y − max_{j≠y} z_j + κ, min=0)``; attacks maximise it."""
    return -(margin(z, y) + kappa).clamp(min=0)


def dlr(z: Tensor, y: Tensor) -> Tensor:
    """Untargeted DLR loss (APGD-DLR, Croce & Hein 2020) ``−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3 + 1e-12)``,
    π sorting the logits in decreasing order; attacks maximise it. Needs ``n ≥ 3`` classes."""
    _need_classes(z, 3, "dlr")
    top = z.topk(3, dim=1).values
    return -margin(z, y) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_t(z: Tensor, y: Tensor, t: Tensor) -> Tensor:
    """Targeted DLR loss towards class ``t`` [B] (APGD-T, LRAT's SAA):
    ``−(z_y − z_t) / (z_π1 − ½(z_π3 + z_π4) + 1e-12)``; attacks maximise it (the leading minus is
    the one the LRAT text drops, METHODS.md §2). Invariant to ``z → a·z + b`` (a > 0); 0 when
    ``z_y = z_t``. Needs ``n ≥ 4`` classes."""
    _need_classes(z, 4, "dlr_t")
    top = z.topk(4, dim=1).values
    return -(true_value(z, y) - true_value(z, t)) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def _need_classes(z: Tensor, n: int, name: str) -> None:
    if z.shape[1] < n:
        raise ValueError(f"the {name} loss needs at least {n} classes, the logits have {z.shape[1]}")


def bce(z_adv: Tensor, y: Tensor) -> Tensor:
    """MART's boosted CE ``−log p_y(x') − log(1.0001 − max_{k≠y} p_k(x'))`` (constants from the
    MART/MAIL code)."""
    p = F.softmax(z_adv, dim=1)
    return ce(z_adv, y) - torch.log(1.0001 - other_max(p, y) + 1e-12)
