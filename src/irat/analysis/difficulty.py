"""Instance difficulty ("On the Impact of Hard Adversarial Instances on Overfitting in Adversarial
Training", the [HARD] seed paper, Section 3; METHODS.md §4.12).

``L̄(x)`` is the mean over the training epochs of the loss of x's perturbed input (clean, FGSM or
PGD, whatever the run trained on: the per-instance record's ``loss``; epochs where x was not
visited, NaN, are skipped). Within a finite set D of n instances

    d(x) = P_{e~U(D)}[L̄(x) < L̄(e)] + ½ · P_{e~U(D)}[L̄(x) = L̄(e)]        (e ranges over all of D, x included)
         = (n − r(x) + ½) / n                                             r: average-tie ascending rank

so d is close to 0 for the hardest instances (largest loss) and close to 1 for the easiest.

Properties (tested in ``tests/test_difficulty.py``):

* ``d ∈ (0, 1)``: a unique easiest instance has ``d = 1 − 1/(2n)``, not 1 (x itself counts as a tie
  with weight ½), a unique hardest one ``1/(2n)``; n = 1 gives ½. The mean of d over D is ½.
* d depends only on the order of the L̄: invariant to strictly increasing transforms, strictly
  decreasing in L̄, equal for tied L̄.
* Groups ``G_i = {x : 0.1 i ≤ d(x) < 0.1 (i + 1)}``, i = 0..9: G0 the hardest, G9 the easiest.

``D(d1, d2) = mean_x |d1(x) − d2(x)|`` compares the difficulty two runs assign to the same set
(two seeds, two architectures, two perturbation types). For two *independent* random rankings d1
and d2 are, at large n, independent U(0, 1) variables, and ``E|U1 − U2| = 1/3``; the paper's 0.375
does not follow from its own definition, so no test or claim uses it.

Both functions take numpy arrays or torch tensors and return the same kind (torch: float64 on the
input's device).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata

GROUPS = 10


def _as_numpy(a) -> tuple[np.ndarray, torch.device | None]:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy(), a.device
    return np.asarray(a, dtype=np.float64), None


def _like(values: np.ndarray, device: torch.device | None):
    return values if device is None else torch.from_numpy(values).to(device)


def mean_loss(losses) -> np.ndarray:
    """``L̄`` [N] from ``losses`` [N, epochs] (or [N]: one value each), NaN epochs skipped; a
    ValueError names the instances that have no finite loss at all."""
    a, _ = _as_numpy(losses)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"losses must be [N, epochs] (or [N]); got shape {a.shape}")
    finite = np.isfinite(a)
    empty = np.flatnonzero(~finite.any(1))
    if len(empty):
        raise ValueError(
            f"{len(empty)} instance(s) have no finite loss in any epoch (rows {empty[:5].tolist()}"
            f"{'...' if len(empty) > 5 else ''}); drop them before computing the difficulty"
        )
    return np.where(finite, a, 0.0).sum(1) / finite.sum(1)


def difficulty(losses):
    """``d(x) = (n − r(x) + ½) / n`` [N] from per-instance losses [N, epochs] (or [N]), with ``r``
    the average-tie ascending rank of the mean loss over the finite epochs (see the module
    docstring). numpy in, numpy out; torch in, torch (float64, same device) out."""
    _, device = _as_numpy(losses)
    mean = mean_loss(losses)
    n = len(mean)
    d = (n - rankdata(mean, method="average") + 0.5) / n if n else np.zeros(0)
    return _like(d, device)


def d_distance(d1, d2):
    """``mean_x |d1(x) − d2(x)|`` for two difficulty vectors [N] over the same instances, in
    [0, 1]; 0 for identical rankings, ≈ 1/3 for independent random ones. Returns a 0-d array
    (numpy) or a 0-d float64 tensor (torch) when ``d1`` is a tensor."""
    a, device = _as_numpy(d1)
    b, _ = _as_numpy(d2)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"d_distance needs two vectors of equal length; got {a.shape} and {b.shape}")
    if not len(a):
        raise ValueError("d_distance of empty sets is undefined")
    return _like(np.asarray(np.abs(a - b).mean()), device)


def groups(d):
    """The group ``i`` of each instance, ``G_i = {0.1 i ≤ d < 0.1 (i + 1)}`` [N] int64: 0 the
    hardest, 9 the easiest (``d < 1`` always, so ``floor(10 d) ≤ 9``)."""
    a, device = _as_numpy(d)
    g = np.clip(np.floor(a * GROUPS + 1e-9), 0, GROUPS - 1).astype(np.int64)
    return g if device is None else torch.from_numpy(g).to(device)


def run_difficulty(run_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(idx, y, d)`` [N] of the training instances of the run in ``run_dir``, sorted by dataset
    index: the difficulty of each within the run's training set, from the recorded per-epoch
    loss of its perturbed input (``records/epoch_XXX.npz``)."""
    from irat.analysis.records import load_records

    recs = load_records(run_dir)
    return recs.idx, recs.y, difficulty(recs.loss.T)


def common_difficulty(run_a, run_b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(idx, d_a, d_b)`` on the training instances both runs recorded (sorted by index), each
    difficulty computed within that common set, so that ``d_distance(d_a, d_b)`` compares two
    rankings of the same D. A ValueError when the runs share no instance."""
    from irat.analysis.records import load_records

    a, b = load_records(run_a), load_records(run_b)
    idx, ia, ib = np.intersect1d(a.idx, b.idx, assume_unique=True, return_indices=True)
    if not len(idx):
        raise ValueError(f"{run_a} and {run_b} trained on no common instance; nothing to compare")
    return idx, difficulty(a.loss[:, ia].T), difficulty(b.loss[:, ib].T)
