"""MAIL: margin-aware instance reweighting learning (Wang et al., "Probabilistic Margins for
Instance Reweighting in Adversarial Training", NeurIPS 2021; METHODS.md §4.8).

Probabilistic margins (all detached), from logits [B, n] and labels ``y`` [B]:

* ``PM_adv = p_y(x') − max_{j≠y} p_j(x')`` (default; the paper's main tables),
* ``PM_nat = p_y(x) − max_{j≠y} p_j(x)``,
* ``PM_dif = p_y(x) − p_y(x + δ^(t))``, where x + δ^(t) is the first misclassified PGD iterate
  (the last iterate if none); nominally in [0, 1], can be negative, not clamped.

Raw weight with slope γ and bias β:

    w_unn = sigmoid(−γ · (PM − β))

so ``w_unn(β) = ½``, strictly decreasing in PM for γ > 0, constant ½ for γ = 0. The default
normalisation is ``normalize_to_batch`` (the paper's B·w/Σw, applied by ``weighting.make``); the
public MAIL code instead multiplies by 3, offered as ``const3`` (``mail.norm = 'const3'``), not
the default. Defaults: MAIL-AT γ = 30, β = −0.07; MAIL-TRADES, MAIL-MART and BiLAW's MAIL
baseline γ = 5, β = 0.05.

Shapes: margins [B] → weights [B], detached.
"""

from __future__ import annotations

import torch
from torch import Tensor

from irat import losses


def mail(prob_margin: Tensor, gamma: float, beta: float) -> Tensor:
    """Raw MAIL weights ``sigmoid(−γ(PM − β))`` [B] for probabilistic margins [B]."""
    return torch.sigmoid(-gamma * (prob_margin.detach() - beta))


def prob_margin_adv(logits_adv: Tensor, y: Tensor) -> Tensor:
    """``PM_adv`` [B] from the adversarial logits [B, n]."""
    return losses.pm(logits_adv.detach(), y)


def prob_margin_nat(logits_nat: Tensor, y: Tensor) -> Tensor:
    """``PM_nat`` [B] from the natural logits [B, n]."""
    return losses.pm(logits_nat.detach(), y)


def prob_margin_dif(logits_nat: Tensor, logits_first_wrong: Tensor, y: Tensor) -> Tensor:
    """``PM_dif = p_y(x) − p_y(x at its first misclassified PGD iterate)`` [B] (not clamped)."""
    p_nat = losses.true_value(logits_nat.detach().softmax(1), y)
    p_wrong = losses.true_value(logits_first_wrong.detach().softmax(1), y)
    return p_nat - p_wrong


def const3(w: Tensor) -> Tensor:
    """The MAIL code's normalisation ``3 · w`` [B] (non-default alternative to
    ``normalize_to_batch``)."""
    return 3.0 * w.detach()
