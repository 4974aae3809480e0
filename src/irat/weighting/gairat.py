"""GAIRAT: geometry-aware instance-reweighted adversarial training (Zhang et al., "Geometry-aware
Instance-reweighted Adversarial Training", ICLR 2021; METHODS.md §4.6, [EXT] for the λ schedules).

Raw weight of a sample whose PGD-K path had κ correctly classified iterates x^(0..K−1)
(``AttackResult.steps_to_flip``, §3.1):

    ω_raw(κ) = ½ · (1 + tanh(λ + 5 · (1 − 2κ/K)))

in (0, 1), non-increasing in κ (the exact form; the GAIRAT code writes ``5(⌊K/2⌋ − κ)/⌊K/2⌋``,
which is the same for even K). λ = +∞ gives all-ones (tanh(+∞) = 1). The scheme then applies
``normalize_to_batch`` (done by ``weighting.make("gairat")``, not here).

λ schedules, as pure functions of the 0-based epoch (``gairat_lambda``), following the GAIRAT
code's ``fixed`` / ``linear`` / ``piecewise`` options with its hard-coded epochs (60, 90, 110 of
120 for WRN) expressed as fractions of ``epochs`` and the reweighting start given as ``start``:

* ``fixed``: λ_max before ``start``, λ from ``start`` on (the default; with λ_max = ∞ the weights
  before ``start`` are all ones).
* ``linear``: λ_max before ``start``; from ``start`` on ``λ_max − (epoch/epochs)·(λ_max − λ)``,
  which reaches λ at the end of training. With λ_max = ∞ this is ∞ − ∞ = NaN, so ``linear`` needs a
  finite λ_max: its default here is ``LINEAR_LAM_MAX = 10`` (our choice; before ``start`` that
  gives weights within 1e-4 of one) and an explicit infinite λ_max raises ``ValueError``.
* ``piecewise``: λ_max before ``start``, λ from ``start``, λ − 1.0 from 75 % of training
  (epoch 90 of 120) and λ − 1.5 from 11/12 of training (epoch 110 of 120). Each step applies
  only once ``start`` is reached.

Shapes: ``steps_to_flip`` [B] (integer or float) → weights [B] float, detached.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LINEAR_LAM_MAX = 10.0
SCHEDULES = ("fixed", "linear", "piecewise")


def gairat(steps_to_flip: Tensor, num_steps: int, lam: float) -> Tensor:
    """Raw GAIRAT weights ``½(1 + tanh(λ + 5(1 − 2κ/K)))`` [B] for κ = ``steps_to_flip`` [B] and
    K = ``num_steps`` (the K of the training attack). Float dtype: that of ``steps_to_flip`` if
    it is floating, else the default dtype."""
    if num_steps <= 0:
        raise ValueError(f"gairat: num_steps (K) must be positive, got {num_steps}")
    kappa = steps_to_flip.detach()
    if not kappa.is_floating_point():
        kappa = kappa.to(torch.get_default_dtype())
    # ½(1 + tanh(u)) = sigmoid(2u), evaluated as the sigmoid: same function, no cancellation in
    # 1 + tanh(u) for large κ (κ = K with λ = −1 gives 6.1e-6, kept to full relative precision).
    return torch.sigmoid(2.0 * (lam + 5.0 * (1.0 - 2.0 * kappa / num_steps)))


def gairat_lambda(
    epoch: int,
    *,
    epochs: int,
    start: int,
    lam: float = -1.0,
    lam_max: float | None = None,
    schedule: str = "fixed",
) -> float:
    """λ at 0-based ``epoch`` of ``epochs`` under ``schedule`` ∈ {fixed, linear, piecewise}, with
    reweighting from epoch ``start``. ``lam_max`` (λ before ``start``) defaults to ∞ for fixed and
    piecewise and to ``LINEAR_LAM_MAX`` = 10 for linear (see the module docstring)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"gairat_lambda: unknown schedule {schedule!r}; choose from {SCHEDULES}")
    if epochs <= 0:
        raise ValueError(f"gairat_lambda: epochs must be positive, got {epochs}")
    if lam_max is None:
        lam_max = LINEAR_LAM_MAX if schedule == "linear" else math.inf
    if schedule == "linear" and not math.isfinite(lam_max):
        raise ValueError(
            "gairat_lambda: the linear schedule needs a finite lam_max "
            f"(λ_max − (e/E)(λ_max − λ) is NaN for λ_max = {lam_max}); leave it unset for 10"
        )
    if epoch < start:
        return float(lam_max)
    if schedule == "fixed":
        return float(lam)
    if schedule == "linear":
        return float(lam_max - (epoch / epochs) * (lam_max - lam))
    # piecewise, with integer comparisons: epoch ≥ 11/12·epochs, epoch ≥ 3/4·epochs
    if 12 * epoch >= 11 * epochs:
        return float(lam - 1.5)
    if 4 * epoch >= 3 * epochs:
        return float(lam - 1.0)
    return float(lam)
