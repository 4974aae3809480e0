"""Reweighting of the hard-instance paper ("On the Impact of Hard Adversarial Instances on
Overfitting in Adversarial Training", the [HARD] seed paper, Section 6.1; METHODS.md §4.12): each
instance's weight is the model's adversarial probability of its true class,

    w_i = p_{y_i}(x'_i) = softmax(f(x'_i))_{y_i} ∈ (0, 1]

normalised per batch (to sum 1 in the paper; ``normalize_to_batch`` gives mean 1, the same loss,
METHODS.md §1.1.2). Hard instances (low p_y at x') get small weights. It reads the adversarial
logits the step already has: no extra forward. Used by the fast-AT methods (``fast-at-rw``,
``fast-at-rw-at``) and by fine-tuning (``finetune``).

Shapes: ``logits_adv`` [B, n], ``y`` [B] → raw weights [B], detached.
"""

from __future__ import annotations

from torch import Tensor

from irat.losses import true_value


def hard(logits_adv: Tensor, y: Tensor) -> Tensor:
    """Raw weights ``p_y(x')`` [B] in (0, 1] (not normalised)."""
    return true_value(logits_adv.detach().softmax(1), y)
