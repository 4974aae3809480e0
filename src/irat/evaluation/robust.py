"""Per-sample robust correctness of a model under one attack over a whole split.

``correct_under(model, x, y, attack) -> bool [N]``: ``argmax f(A(x)) == y and argmax f(x) == y``
for every image, in batches, the model in eval mode; ``predictions_under`` gives the argmax
itself. A point misclassified when clean counts as non-robust under every attack (METHODS.md
§5.1), also when the attack's output happens to be classified correctly (a random start, or CW's
clamped loss that stops pushing a point that is already wrong, can land there).

Batching (the performance issue: evaluate at the largest batch that fits). On a GPU the default
batch is the whole split; on the CPU it is ``CPU_BATCH`` = 500, the fastest measured for PGD-20
on this project's machine (``benchmarks/README.md``; larger batches were slower there). On
out-of-memory the batch is halved and the failed batch is run again, so any batch size works.

Resuming (``progress=``, ``irat.evaluation.progress``): after every finished batch the predictions
so far and the random state are saved; a call with the same progress file starts after the last
finished batch, with the random state it had there.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from irat.attacks.build import clean
from irat.evaluation.progress import Progress


def correct_under(
    model: torch.nn.Module, x: Tensor, y: Tensor, attack, *, clean_correct: Tensor | None = None, **batching
) -> Tensor:
    """``x`` [N, C, H, W] in [0, 1], ``y`` [N]; ``attack(model, x, y) -> AttackResult`` with
    logits. Returns a bool tensor [N] on the data's device: ``predictions_under(...) == y`` and
    correct when clean. ``clean_correct`` [N]: the clean correctness when the caller has it
    (otherwise one clean forward computes it; not needed for the ``clean`` attack itself).
    ``batching``: ``predictions_under``'s ``batch_size``, ``progress``, ``desc``, ``resume``."""
    correct = predictions_under(model, x, y, attack, **batching) == y
    if attack is clean:
        return correct
    if clean_correct is None:
        clean_correct = predictions_under(model, x, y, clean, batch_size=batching.get("batch_size")) == y
    return correct & clean_correct


def predictions_under(
    model: torch.nn.Module,
    x: Tensor,
    y: Tensor,
    attack,
    *,
    batch_size: int | None = None,
    progress: bool = False,
    desc: str = "",
    resume: Progress | None = None,
) -> Tensor:
    """The model's argmax at ``attack(model, x, y)`` for every image, a long tensor [N] on ``y``'s
    device. ``batch_size``: None for ``default_batch_size``; halved on out-of-memory. The attack
    itself restores the model's mode; clean evaluation runs under ``inference_mode``.
    ``resume``: saves the progress after every batch and starts after the saved one."""
    n = len(y)
    batch = int(batch_size) if batch_size is not None else default_batch_size(x.device, n)
    if batch < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    was_training = model.training
    model.eval()
    out = torch.empty(n, dtype=torch.long, device=y.device)
    s = 0
    saved = resume.load(y.device) if resume is not None else None
    if saved is not None and saved.done <= n:
        s = saved.done
        out[:s] = saved.predictions
        resume.restore_rng(saved, x.device)
    try:
        with tqdm(total=n, initial=s, desc=desc, disable=not progress, leave=False, unit="img") as bar:
            while s < n:
                xb, yb = x[s : s + batch], y[s : s + batch]
                try:
                    logits = attack(model, xb, yb).logits_adv
                except torch.OutOfMemoryError:
                    if batch == 1:
                        raise
                    batch //= 2
                    _release_cached_memory(x.device)
                    continue
                out[s : s + len(yb)] = logits.argmax(1)
                s += len(yb)
                bar.update(len(yb))
                if resume is not None:
                    resume.save(s, out, x.device)
    finally:
        model.train(was_training)
    return out


CPU_BATCH = 500


def default_batch_size(device: torch.device, n: int) -> int:
    """The whole split on a GPU (halved on out-of-memory), ``CPU_BATCH`` on the CPU."""
    return max(1, min(n, CPU_BATCH)) if device.type == "cpu" else max(1, n)


def batches(x: Tensor, y: Tensor, batch_size: int | None = None):
    """``(x_b, y_b)`` chunks of ``batch_size`` images (None: ``default_batch_size``), in order,
    for the analyses that attack or run the model image set by image set; ``ValueError`` when
    there are no images."""
    n = len(y)
    if n == 0:
        raise ValueError("no images to analyse")
    batch = int(batch_size) if batch_size is not None else default_batch_size(x.device, n)
    for s in range(0, n, batch):
        yield x[s : s + batch], y[s : s + batch]


def _release_cached_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
