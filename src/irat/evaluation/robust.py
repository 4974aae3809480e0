"""Per-sample robust correctness of a model under one attack over a whole split.

``correct_under(model, split, attack) -> bool [N]``: ``argmax f(A(x)) == y`` for every image, in
batches, the model in eval mode. Naturally misclassified points count as non-robust because the
attack's logits are taken at its output, which for a wrong point is still wrong or worse.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm


def correct_under(
    model: torch.nn.Module,
    x: Tensor,
    y: Tensor,
    attack,
    *,
    batch_size: int = 500,
    progress: bool = False,
    desc: str = "",
) -> Tensor:
    """``x`` [N, C, H, W] in [0, 1], ``y`` [N]; ``attack(model, x, y) -> AttackResult`` with
    logits. Returns a bool tensor [N] on the data's device. The attack itself restores the
    model's mode; clean evaluation runs under ``inference_mode``."""
    was_training = model.training
    model.eval()
    out = torch.empty(len(y), dtype=torch.bool, device=y.device)
    starts = range(0, len(y), batch_size)
    for s in tqdm(starts, desc=desc, disable=not progress, leave=False, unit="batch"):
        xb, yb = x[s : s + batch_size], y[s : s + batch_size]
        logits = attack(model, xb, yb).logits_adv
        out[s : s + batch_size] = logits.argmax(1) == yb
    model.train(was_training)
    return out
