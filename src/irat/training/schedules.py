"""Learning-rate schedules as pure functions of the 0-based epoch.

* ``piecewise``: ``lr · gamma^(number of milestones m with epoch >= round(m·E))``, the papers'
  "÷10 at epochs 30 and 60 of 100" is ``milestones=[0.3, 0.6]``.
* ``cosine``: ``lr · ½(1 + cos(π·epoch/E))``.
* ``constant``: ``lr``.
"""

from __future__ import annotations

import math


def learning_rate(
    epoch: int, *, lr: float, epochs: int, schedule: str, milestones: list[float], gamma: float
) -> float:
    if schedule == "piecewise":
        drops = sum(epoch >= round(m * epochs) for m in milestones)
        return lr * gamma**drops
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    if schedule == "constant":
        return lr
    raise ValueError(f"unknown schedule {schedule!r}; choose one of: piecewise, cosine, constant")
