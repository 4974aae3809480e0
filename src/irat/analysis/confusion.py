"""Confusion matrix of a model under an attack: rows are true classes, columns predicted ones."""

from __future__ import annotations

import torch
from torch import Tensor

from irat.evaluation.robust import predictions_under


def confusion_matrix(y_true: Tensor, y_pred: Tensor, num_classes: int) -> Tensor:
    """[K, K] int64 counts: entry (i, j) = number of images of class i predicted as j."""
    y_true, y_pred = y_true.reshape(-1).long(), y_pred.reshape(-1).long().to(y_true.device)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {tuple(y_true.shape)} and y_pred {tuple(y_pred.shape)} differ in length")
    both = torch.cat([y_true, y_pred])
    if len(both) and (both.min() < 0 or both.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    counts = torch.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes).cpu()


def adversarial_predictions(
    model: torch.nn.Module,
    x: Tensor,
    y: Tensor,
    attack,
    *,
    batch_size: int | None = None,
    seed: int | None = 0,
) -> Tensor:
    """argmax of the model's logits at ``attack(model, x, y)`` for every image [N] (on ``y``'s
    device), in batches. ``seed`` seeds the attack's random start as ``irat.evaluate`` does (the
    same seed and batch size give the same points). The model's mode is restored afterwards."""
    if seed is not None:
        torch.manual_seed(seed)
    return predictions_under(model, x, y, attack, batch_size=batch_size)


def adversarial_confusion(
    model: torch.nn.Module,
    x: Tensor,
    y: Tensor,
    attack,
    num_classes: int,
    *,
    batch_size: int | None = None,
    seed: int | None = 0,
) -> Tensor:
    """``confusion_matrix(y, adversarial_predictions(...))``: [K, K] int64 on the CPU; its trace
    over its sum is the robust accuracy under ``attack``."""
    pred = adversarial_predictions(model, x, y, attack, batch_size=batch_size, seed=seed)
    return confusion_matrix(y, pred, num_classes)
