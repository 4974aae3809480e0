"""Class-balanced subsets of a training split by instance difficulty (the hard-instance paper's
Figure 1: train on the easiest, random or hardest N instances of each class; METHODS.md §4.12).

``--data.subset=easiest:N | hardest:N | random:N`` keeps N instances of every class: the N with
the largest difficulty d (easiest), the smallest (hardest), or a seeded random N. The difficulty
comes from a previous run (``--data.subset_from=RUN``, its records, ``irat.analysis.difficulty``)
trained with the perturbation the new run uses; the pool is the training split's instances that
run recorded (with ``random`` and no run: the whole split). Ties in d are broken by dataset index.
"""

from __future__ import annotations

import numpy as np
import torch

from irat.data.split import Split

KINDS = ("easiest", "hardest", "random")


def parse_subset(text: str) -> tuple[str, int]:
    """``"easiest:100"`` → ``("easiest", 100)``; a ValueError that shows the form otherwise."""
    kind, sep, count = str(text).partition(":")
    form = "easiest:N, hardest:N or random:N (N images per class, e.g. hardest:1000)"
    if not sep or kind not in KINDS:
        raise ValueError(f"data.subset={text!r} must be {form}")
    try:
        n = int(count)
    except ValueError:
        raise ValueError(f"data.subset={text!r}: N must be a whole number; {form}") from None
    if n < 1:
        raise ValueError(f"data.subset={text!r}: N must be >= 1; {form}")
    return kind, n


def pick_per_class(
    y: np.ndarray, kind: str, n: int, d: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Sorted positions into ``y`` [M]: ``n`` of each class present, by difficulty ``d`` [M]
    (easiest = largest d first, hardest = smallest first, ties by position) or seeded at random.
    A ValueError names a class that has fewer than ``n``."""
    if kind not in KINDS:
        raise ValueError(f"unknown subset kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind != "random" and d is None:
        raise ValueError(f"a {kind} subset needs the instances' difficulty (data.subset_from=RUN)")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(y):
        mine = np.flatnonzero(y == c)
        if len(mine) < n:
            raise ValueError(
                f"class {int(c)} has only {len(mine)} candidate images for a subset of {n} per class; "
                f"choose N <= {len(mine)}"
            )
        if kind == "random":
            chosen.append(rng.choice(mine, size=n, replace=False))
        else:
            key = -d[mine] if kind == "easiest" else d[mine]
            chosen.append(mine[np.argsort(key, kind="stable")[:n]])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def subset_of(
    split: Split, subset: str, reference: tuple[np.ndarray, np.ndarray] | None = None, seed: int = 0
) -> Split:
    """The subset of ``split`` that ``subset`` (``kind:N``) names. ``reference``: (dataset index,
    difficulty) of a previous run's training instances; the pool is then the instances of
    ``split`` it covers."""
    kind, n = parse_subset(subset)
    idx = split.idx.cpu().numpy()
    pool = np.arange(len(idx))
    d = None
    if reference is not None:
        ref_idx, ref_d = (np.asarray(a) for a in reference)
        _, pool, rows = np.intersect1d(idx, ref_idx, assume_unique=True, return_indices=True)
        if not len(pool):
            raise ValueError("the run of data.subset_from recorded none of this training split's images")
        d = ref_d[rows]
    picked = pool[pick_per_class(split.y.cpu().numpy()[pool], kind, n, d, seed)]
    return split.subset(torch.from_numpy(picked))
