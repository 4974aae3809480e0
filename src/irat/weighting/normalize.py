"""Batch normalisation of instance weights (METHODS.md §1.1.2).

``normalize_to_batch(w) = B · w / (Σ_j w_j + 1e-12)``, so the weights have mean 1 and the reduced
loss ``mean_i(ω_i ℓ_i)`` equals ``Σ_i w̄_i ℓ_i`` with ``w̄ = w / Σw``: "sum to 1" (GAIRAT paper,
BiLAW, HARD) and "sum to B" (MAIL, GAIRAT code) give the same loss. When every weight is 0 (only
possible by underflow) or the sum is not finite, the result falls back to all-ones.

Under torchrun (``irat.distributed``) B and Σw are those of the global batch, summed over the
processes in one all-reduce, so every process's share of the weights equals the rows of one
process's weights on the whole batch.

Shapes: ``w`` [B] (non-negative raw weights) → [B], same dtype and device, detached (with
``keep_graph=True``, BiLAW's meta step differentiates through it, METHODS.md §4.11).
"""

from __future__ import annotations

import torch
from torch import Tensor

from irat.distributed import global_sums


def normalize_to_batch(w: Tensor, *, keep_graph: bool = False) -> Tensor:
    """``B · w / (Σw + 1e-12)`` for raw weights ``w`` [B]; all-ones when ``Σw`` is 0 or not
    finite. No host synchronisation (the fallback is chosen with ``torch.where``). The result is
    detached unless ``keep_graph`` (the one exception of §1.1.1: BiLAW's weight network)."""
    if not keep_graph:
        w = w.detach()
    if not w.is_floating_point():
        w = w.to(torch.get_default_dtype())
    count, total = global_sums(w.shape[0], w.sum())  # over the global batch (one all-reduce)
    ok = torch.isfinite(total) & (total > 0)
    return torch.where(ok, count.to(w.dtype) * w / (total + 1e-12), torch.ones_like(w))
