"""All per-instance records of a run (``records/epoch_XXX.npz``) as arrays [epochs, instances].

recs = load_records("runs/at")
recs.epochs            # [E] recorded epochs, ascending
recs.weight[e]         # [N] weights of epoch recs.epochs[e], aligned with recs.idx / recs.y
recs.class_weight_sums(num_classes)   # [E, K]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irat.training.records import FIELDS, OPTIONAL_FIELDS, load_record
from irat.training.rundir import RunDir

_RECORD = re.compile(r"epoch_(\d+)\.npz")


class AnalysisError(ValueError):
    """A run cannot be analysed (not a run directory, no records, unknown epoch, ...)."""


@dataclass
class Records:
    """``epochs`` [E]; ``idx``, ``y`` [N] (dataset index and label of each training image, sorted
    by index); ``weight``, ``loss``, ``p_true``, ``margin_nat``, ``margin_adv`` [E, N] float32;
    ``steps_to_flip`` [E, N] int (−1: not recorded). Values are NaN where an instance was not
    visited in an epoch (and the margins where they were not recorded)."""

    epochs: np.ndarray
    idx: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    loss: np.ndarray
    p_true: np.ndarray
    steps_to_flip: np.ndarray
    margin_nat: np.ndarray
    margin_adv: np.ndarray

    def row(self, epoch: int) -> int:
        """The row of ``epoch`` in the [E, N] arrays; AnalysisError listing the recorded epochs."""
        hits = np.flatnonzero(self.epochs == epoch)
        if len(hits) == 0:
            raise AnalysisError(
                f"no record for epoch {epoch}; recorded epochs: {_ranges(self.epochs.tolist())}"
            )
        return int(hits[0])

    def class_weight_sums(self, num_classes: int | None = None) -> np.ndarray:
        """[E, K]: per epoch, the sum of the weights of each class (NaN weights count as 0)."""
        k = int(num_classes if num_classes is not None else self.y.max(initial=-1) + 1)
        onehot = self.y[:, None] == np.arange(k)[None, :]  # [N, K]
        return np.nan_to_num(self.weight.astype(np.float64)) @ onehot.astype(np.float64)

    def has_steps_to_flip(self, epoch: int | None = None) -> bool:
        """Whether ``steps_to_flip`` was recorded (in ``epoch``, or in any epoch)."""
        s = self.steps_to_flip if epoch is None else self.steps_to_flip[self.row(epoch)]
        return bool((s >= 0).any())


def record_files(run_dir: str | Path) -> dict[int, Path]:
    """{epoch: path} of the run's ``records/epoch_XXX.npz`` files."""
    folder = Path(run_dir) / "records"
    if not folder.is_dir():
        return {}
    found = {}
    for p in folder.iterdir():
        m = _RECORD.fullmatch(p.name)
        if m is not None:
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def load_records(
    run_dir: str | Path, labels: Mapping[int, int] | Callable[[], Mapping[int, int]] | None = None
) -> Records:
    """Load every epoch's record of the run in ``run_dir``.

    ``labels`` ({dataset index: label}, or a function returning it, called only when needed)
    supplies ``y`` for records written before labels were stored with them. Raises
    AnalysisError when ``run_dir`` is not a run directory or holds no records, or when the
    records disagree on the set of training images."""
    run = RunDir(run_dir)
    if not run.exists():
        raise AnalysisError(f"{run.path} is not a run directory (no config.yaml)")
    files = record_files(run.path)
    if not files:
        raise AnalysisError(
            f"{run.path} holds no per-instance records (records/epoch_XXX.npz); "
            "they are written at the end of every training epoch"
        )
    idx = y = None
    columns: dict[str, list[np.ndarray]] = {f: [] for f in FIELDS}
    for path in files.values():
        try:
            rec = load_record(path)
        except Exception as e:  # truncated or foreign file
            raise AnalysisError(f"{path} is unreadable ({type(e).__name__}: {e})") from None
        missing = [k for k in ("idx", *FIELDS) if k not in rec and k not in OPTIONAL_FIELDS]
        if missing:
            raise AnalysisError(f"{path} lacks {', '.join(missing)}; it is not an irat record")
        order = np.argsort(rec["idx"], kind="stable")
        this_idx = rec["idx"][order]
        if idx is None:
            idx = this_idx
        elif not np.array_equal(idx, this_idx):
            raise AnalysisError(
                f"{path} covers other training images than {files[next(iter(files))]}; "
                "the records come from different runs"
            )
        if y is None and "y" in rec:
            y = rec["y"][order].astype(np.int64)
        for f in FIELDS:
            columns[f].append(rec[f][order] if f in rec else np.full(len(order), np.nan, np.float32))
    if y is None:
        if labels is None:
            raise AnalysisError(
                f"the records in {run.path / 'records'} hold no labels (written by an older irat); "
                "pass labels={index: label} from the training split"
            )
        if callable(labels):
            labels = labels()
        try:
            y = np.array([labels[int(i)] for i in idx], dtype=np.int64)
        except KeyError as e:
            raise AnalysisError(f"no label for training index {e.args[0]}") from None
    return Records(
        epochs=np.array(list(files), dtype=np.int64),
        idx=idx,
        y=y,
        weight=np.stack(columns["weight"]).astype(np.float32),
        loss=np.stack(columns["loss"]).astype(np.float32),
        p_true=np.stack(columns["p_true"]).astype(np.float32),
        steps_to_flip=np.stack(columns["steps_to_flip"]).astype(np.int64),
        margin_nat=np.stack(columns["margin_nat"]).astype(np.float32),
        margin_adv=np.stack(columns["margin_adv"]).astype(np.float32),
    )


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5] → '0-2, 5'."""
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)
