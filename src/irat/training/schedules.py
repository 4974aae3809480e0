"""Learning-rate schedules as pure functions of the 0-based epoch, and the epoch of their first drop
(where the papers start reweighting, METHODS.md §4.6–4.9).

* ``piecewise``: ``lr · Π f_i`` over the milestones i with ``epoch >= round(m_i · E)``. ``gamma`` is
  one factor for every milestone or a list with one factor per milestone:
  * the papers' "÷10 at epochs 30 and 60 of 100" (BiLAW) is ``milestones=[0.3, 0.6], gamma=0.1``;
  * MAIL's "÷10 at 75 and 90" is ``milestones=[0.75, 0.9], gamma=0.1``;
  * GAIRAT's and FAT's "lr/10, lr/100, lr/200 at 1/2, 3/4 and 11/12 of training" is
    ``milestones=[0.5, 0.75, 11/12], gamma=[0.1, 0.1, 0.5]``.
* ``cosine``: ``lr · ½(1 + cos(π·epoch/E))``.
* ``constant``: ``lr``.

Warm-up (``train.warmup = N`` epochs, ``warmup_factor``): over the first N epochs the learning rate
grows linearly, step by step, from ``lr/S`` to ``lr`` (S = N × steps per epoch), multiplying the
schedule's value; it never changes where the schedule drops.

``first_drop`` is the first epoch at a lower learning rate, the epoch from which the papers
reweight ("reweighting starts when the LR first drops"):
* ``piecewise``: ``round(m_i · E)`` of the earliest milestone whose factor is below 1;
* ``cosine``: no step, so the first epoch whose lr is at most a tenth of the initial one, the size
  of the papers' first drop (``COSINE_DROP``); that is epoch ⌈E·arccos(−0.8)/π⌉ ≈ 0.795·E;
* ``constant``: none.
It is None when the schedule has no drop within its ``epochs``.
"""

from __future__ import annotations

import math

SCHEDULES = ("piecewise", "cosine", "constant")

COSINE_DROP = 0.1
"""A cosine schedule's "first drop" is its first epoch at most this fraction of the initial lr."""


def factors(milestones: list[float], gamma: float | list[float]) -> list[float]:
    """One factor per milestone: ``gamma`` repeated, or ``gamma`` itself when it is a list (of the
    same length as ``milestones``; ``ValueError`` otherwise)."""
    if isinstance(gamma, int | float):
        return [float(gamma)] * len(milestones)
    if len(gamma) != len(milestones):
        raise ValueError(
            f"{len(gamma)} learning-rate factors for {len(milestones)} milestones; give one factor per "
            "milestone or a single number"
        )
    return [float(g) for g in gamma]


def learning_rate(
    epoch: int,
    *,
    lr: float,
    epochs: int,
    schedule: str,
    milestones: list[float],
    gamma: float | list[float],
) -> float:
    """The learning rate of 0-based ``epoch`` of ``epochs`` (see the module docstring)."""
    if schedule == "piecewise":
        rate = lr
        for m, f in zip(milestones, factors(milestones, gamma)):
            if epoch >= round(m * epochs):
                rate *= f
        return rate
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    if schedule == "constant":
        return lr
    raise ValueError(f"unknown schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")


def first_drop(
    *, epochs: int, schedule: str, milestones: list[float], gamma: float | list[float]
) -> int | None:
    """The first 0-based epoch at a lower learning rate (see the module docstring); None when the
    schedule has no drop before ``epochs``."""
    if schedule == "piecewise":
        drops = [round(m * epochs) for m, f in zip(milestones, factors(milestones, gamma)) if f < 1]
        epoch = min(drops, default=None)
    elif schedule == "cosine":
        kw = dict(lr=1.0, epochs=epochs, schedule=schedule, milestones=milestones, gamma=gamma)
        epoch = next((e for e in range(epochs) if learning_rate(e, **kw) <= COSINE_DROP), None)
    elif schedule == "constant":
        epoch = None
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    return epoch if epoch is not None and epoch < epochs else None


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The linear warm-up multiplier of 0-based global ``step``: ``(step + 1) / warmup_steps``
    during the first ``warmup_steps`` steps, then 1 (also when ``warmup_steps`` is 0)."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
