"""VIR's two factors (seed 003, §4; METHODS.md §4.9): its weight w = α·exp(−γ·p_y(x))·KL(p(x) ‖
p(x')) + β grows with the vulnerability of the natural example (small p_y(x)) and with the
distance between its natural and adversarial predictions (large KL). The analysis puts a run's
recorded instance weights (one epoch, ``records/``) against both factors.

``vir_factors(model, x, y, ...)`` → ``p_y(x)`` and ``KL(p(x) ‖ p(x'))`` [N] at the checkpoint, in
eval mode, with x' from PGD-K on the CE (start x, the run's step): the factors as the final model
sees them. The weights were recorded during the epoch in train mode with the model of each step,
so for a VIR run the points follow the formula only approximately (more closely the later the
epoch); for any other method the figure shows how its weights relate to VIR's factors.
Shapes: ``x`` [N, C, H, W] in [0, 1], ``y`` [N].
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from irat.attacks.mode import eval_mode
from irat.attacks.pgd import pgd
from irat.evaluation.robust import batches
from irat.weighting.vir import vir_stats


def vir_factors(
    model: torch.nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    norm: str = "linf",
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(p_y(x), KL(p(x) ‖ p(x')))``, numpy arrays [N] (module docstring)."""
    p_parts, kl_parts = [], []
    for xb, yb in batches(x, y, batch_size):
        res = pgd(model, xb, yb, eps=eps, steps=steps, step_size=step_size, norm=norm, start="none")
        with eval_mode(model), torch.no_grad():
            z_nat = model(xb)
        p_y, kl = vir_stats(z_nat, res.logits_adv, yb)
        p_parts.append(p_y)
        kl_parts.append(kl.clamp(min=0))
    return torch.cat(p_parts).cpu().numpy(), torch.cat(kl_parts).cpu().numpy()


def recorded_weights(rec_idx: np.ndarray, rec_weight: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The recorded weight [M] of each dataset index in ``idx`` [M] (NaN where not recorded);
    ``rec_idx`` [N] and ``rec_weight`` [N] are one epoch of ``Records`` (sorted by index)."""
    out = np.full(len(idx), np.nan)
    if len(rec_idx) == 0:
        return out
    pos = np.clip(np.searchsorted(rec_idx, idx), 0, len(rec_idx) - 1)
    found = rec_idx[pos] == idx
    out[found] = rec_weight[pos[found]]
    return out
