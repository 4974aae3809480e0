"""The seams between irat's parts: what flows from the loader, through the attack, into the
weighting and the objective (see docs/architecture.md for the diagram).

Shapes: ``B`` is the batch size, ``C, H, W`` the image shape, ``n`` the number of classes.
Everything outside the model lives in [0, 1] pixel space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


@dataclass(frozen=True)
class Batch:
    """One mini-batch. ``idx`` [B] long: dataset indices (they travel with every batch so that
    per-instance records and state are keyed by index); ``x`` [B, C, H, W] float in [0, 1];
    ``y`` [B] long. With augmentation, the loader's draws: ``crop`` [B, 2] long row and column
    offsets into the zero-padded image, ``flip`` [B] bool (None: not drawn); ATTA's cache applies
    the same view to its stored perturbation (``irat.data.augmentation``). ``total``: under
    torchrun, the size of the global batch this process's rows belong to (None: this batch is the
    whole batch)."""

    idx: Tensor
    x: Tensor
    y: Tensor
    crop: Tensor | None = None
    flip: Tensor | None = None
    total: int | None = None

    def __len__(self) -> int:
        return self.y.shape[0]


@dataclass(frozen=True)
class AttackResult:
    """What an attack returns.

    ``x_adv`` [B, C, H, W]: adversarial examples inside the threat model and [0, 1]; or
        [B, m, C, H, W] for an attack that gives each sample m variants (LRAT,
        ``irat.attacks.variants``; variant j of sample i at ``[i, j]``).
    ``logits_adv`` [B, n] or None: logits of ``x_adv`` from the attack's final forward (eval mode,
        no graph); None when the caller asked the attack to skip that forward.
    ``steps_to_flip`` [B] long or None: GAIRAT's κ, the number of correctly classified iterates
        among x^(0..K-1) (METHODS.md §3.1); only with ``record_path=True`` (for variants: κ of
        the one PGD variant that records it, LRAT's GD).
    ``first_wrong`` [B] long or None: the smallest k in 0..K whose iterate x^(k) is misclassified
        (K if none); ``x_first_wrong`` [B, C, H, W] that iterate (x^(K) when never wrong) and
        ``logits_first_wrong`` [B, n] its logits from the attack's own forward (MAIL's PM_dif).
    ``logits_nat`` [B, n] or None: with ``first_wrong``, the logits of the clean ``x`` in the
        attack's (eval) mode, no graph: PM_dif's reference point, in the mode of its iterate.
    """

    x_adv: Tensor
    logits_adv: Tensor | None = None
    steps_to_flip: Tensor | None = None
    first_wrong: Tensor | None = None
    x_first_wrong: Tensor | None = None
    logits_first_wrong: Tensor | None = None
    logits_nat: Tensor | None = None


@dataclass(frozen=True)
class SampleStats:
    """Per-sample statistics of one training step, computed once from logits that already exist
    and shared by the weighting scheme, the objective and the recorder. All tensors are detached.

    ``idx``, ``y`` [B]; ``logits_adv`` [B, n] (the training forward, train mode), or [B, m, n]
    for m adversarial variants per sample (LRAT, one forward of the B·m images);
    ``logits_nat`` [B, n] or None when the method needs no natural forward (train mode as well);
    ``steps_to_flip`` [B] or None; ``epoch`` 0-based; ``logits_first_wrong`` [B, n] and
    ``logits_nat_eval`` [B, n] or None: the first misclassified PGD iterate's logits and the clean
    x's, both from the attack (eval mode), so that MAIL's PM_dif compares two distributions of one
    BatchNorm mode (PGD with ``record_path`` and ``first_wrong``).
    """

    idx: Tensor
    y: Tensor
    logits_adv: Tensor
    logits_nat: Tensor | None
    steps_to_flip: Tensor | None
    epoch: int
    logits_first_wrong: Tensor | None = None
    logits_nat_eval: Tensor | None = None


class Attack(Protocol):
    """``attack(model, x, y) -> AttackResult``; gradients with respect to the input only."""

    def __call__(self, model: torch.nn.Module, x: Tensor, y: Tensor) -> AttackResult: ...


class Objective(Protocol):
    """``objective(logits_nat, logits_adv, y, w) -> (loss scalar, per-sample loss [B])``; with m
    variants ``logits_adv`` is [B, m, n] and ``w`` [B, m + 1] (``irat.objectives.lrat``)."""

    def __call__(
        self, logits_nat: Tensor | None, logits_adv: Tensor, y: Tensor, w: Tensor
    ) -> tuple[Tensor, Tensor]: ...
