"""The uniform scheme: every instance weight is 1 (plain AT, TRADES, MART)."""

from __future__ import annotations

import torch
from torch import Tensor


def uniform(y: Tensor) -> Tensor:
    """All-ones weights [B] for labels ``y`` [B] (float, on ``y``'s device)."""
    return torch.ones(y.shape[0], device=y.device)
