"""Adaptive targets of the hard-instance paper's fast AT (Algorithm 1, Section 6.1; METHODS.md
§4.12): a moving average of the model's adversarial outputs per training instance, mixed with
the one-hot label.

    t̃_i ← ρ·t̃_i + (1 − ρ)·softmax(f(x'_i))      updated once per visit, before it is used
    t_i = β·1_{y_i} + (1 − β)·t̃_i                 the target of the soft cross-entropy

t̃ starts at ``1_y``; during the warm-up (the first ``warmup`` epochs) t̃ is not updated and the
target is the label itself (so the loss is the plain cross-entropy, bit for bit). β = 1 gives the
one-hot target, β = 0 the moving average alone; ρ = 1 freezes t̃. With a constant output o,
k updates give ``t̃ = ρ^k·t̃₀ + (1 − ρ^k)·o``. Both t̃ and t are probability vectors.

Shapes: ``t`` [B, n], ``probs`` [B, n], ``y`` [B]; the state ``t̃`` [N, n] one row per training
instance, looked up by dataset index (``SampleStats.idx``), on the training device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from irat.data.split import index_slots
from irat.types import SampleStats


def one_hot(y: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``1_y`` [B, n] by scatter (``F.one_hot`` reads ``y``'s range back to the host)."""
    return torch.zeros(y.shape[0], num_classes, dtype=dtype, device=y.device).scatter_(1, y[:, None], 1.0)


def moving_average(t: Tensor, probs: Tensor, rho: float) -> Tensor:
    """``ρ·t + (1 − ρ)·probs`` [B, n] (``probs`` detached)."""
    return rho * t + (1.0 - rho) * probs.detach()


def mix(t: Tensor, y: Tensor, beta: float) -> Tensor:
    """``β·1_y + (1 − β)·t`` [B, n]."""
    return beta * one_hot(y, t.shape[1], t.dtype) + (1.0 - beta) * t


class AdaptiveTargets:
    """``targets(stats) -> labels [B] (warm-up) or soft targets [B, n]`` with the per-instance
    moving average t̃ of the training split ``idx`` [N] (labels ``y`` [N])."""

    def __init__(
        self,
        idx: Tensor,
        y: Tensor,
        num_classes: int,
        *,
        rho: float = 0.9,
        beta: float = 0.1,
        warmup: int = 0,
        dtype: torch.dtype = torch.float32,
    ):
        if not (0 <= rho <= 1 and 0 <= beta <= 1):
            raise ValueError(f"adaptive targets need rho and beta in [0, 1]; got rho={rho}, beta={beta}")
        self.idx, self.rho, self.beta, self.warmup = idx, float(rho), float(beta), int(warmup)
        self.slot = index_slots(idx)
        self.t = one_hot(y, num_classes, dtype)

    def __call__(self, stats: SampleStats) -> Tensor:
        if stats.epoch < self.warmup:
            return stats.y
        rows = self.slot[stats.idx]
        t = moving_average(self.t[rows], stats.logits_adv.softmax(1).to(self.t.dtype), self.rho)
        self.t[rows] = t
        return mix(t, stats.y, self.beta).to(stats.logits_adv.dtype)

    def state_dict(self) -> dict:
        return {"t": self.t, "idx": self.idx}

    def load_state_dict(self, state: dict) -> None:
        if not torch.equal(state["idx"].to(self.idx.device), self.idx):
            raise ValueError("the checkpoint's adaptive targets belong to another training split")
        self.t.copy_(state["t"])
