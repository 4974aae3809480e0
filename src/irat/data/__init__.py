"""Datasets as tensors in [0, 1]: named specs, file readers, verified download, stratified
train/validation splits, a device-resident loader that yields indices, batched augmentation.

    data = irat.data.load("fashion-mnist", val_size=1000)
    data.spec, data.train, data.val, data.test
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from irat.data.augmentation import augment
from irat.data.errors import DataError
from irat.data.fetch import locate, sha256
from irat.data.loader import Loader
from irat.data.registry import get, names
from irat.data.spec import DatasetSpec
from irat.data.split import Split, stratified_split

__all__ = [
    "DataError",
    "DataWarning",
    "Dataset",
    "DatasetSpec",
    "Loader",
    "Split",
    "augment",
    "load",
    "names",
    "stratified_split",
]


@dataclass
class Dataset:
    """A dataset's spec and its three splits (``val`` is carved out of the training file), plus
    the arguments of ``load`` that reproduce it (a run stores them in its config), where the data
    was found (``location``) and the sha256 of each file read (``files``: path → hex digest)."""

    spec: DatasetSpec
    train: Split
    val: Split
    test: Split
    root: str | None = None
    seed: int = 0
    limit: int | None = None
    location: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    def provenance(self) -> str:
        """One line: the dataset, the folder it came from, and its files' sha256 (shortened)."""
        digests = ", ".join(f"{Path(p).name} {d[:12]}" for p, d in self.files.items())
        return f"data: {self.spec.name} from {self.location} (sha256: {digests})"


class DataWarning(UserWarning):
    """The data was read, but something about it deserves a look (e.g. an unpublished checksum)."""


def _digests(entry, found: Path) -> dict[str, str]:
    """sha256 of every file read from ``found``; one warning when files under their published
    names have other checksums than the published ones (another dataset's files, or modified
    copies: the data is read all the same)."""
    out, odd = {}, []
    for path in entry.data_files(found):
        out[str(path)] = sha256(path)
        if path.name in entry.files:
            algorithm, expected = entry.files[path.name]
            got = (
                out[str(path)]
                if algorithm == "sha256"
                else hashlib.new(algorithm, path.read_bytes()).hexdigest()
            )
            if got != expected.lower():
                odd.append(path.name)
    if odd:
        warnings.warn(
            f"{entry.name}: {', '.join(odd)} in {found} do not match the published checksums; they may be "
            "another dataset's files or modified copies. Delete them to re-download, or pass --data-dir the "
            "right folder",
            DataWarning,
            stacklevel=3,
        )
    return out


def _to_float(x: np.ndarray) -> torch.Tensor:
    """uint8 [N,C,H,W] → float32 / 255; float32 as is (already checked to lie in [0, 1])."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.float().div_(255) if t.dtype == torch.uint8 else t.float()


def _split(x: np.ndarray, y: np.ndarray, pos: torch.Tensor, name: str) -> Split:
    p = pos.numpy()
    return Split(_to_float(x[p]), torch.from_numpy(y[p]), pos, name)


def _infer_spec(x: np.ndarray, y_train: np.ndarray, y_test: np.ndarray) -> DatasetSpec:
    n, c, h, _ = x.shape
    k = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    mean, std = [], []
    for ch in range(c):  # one channel at a time keeps the float copy small
        v = x[:, ch].astype(np.float64) / (255.0 if x.dtype == np.uint8 else 1.0)
        mean.append(round(float(v.mean()), 4) if n else 0.5)
        std.append(max(round(float(v.std()), 4), 1e-3) if n else 0.25)
    return DatasetSpec("npz", c, h, k, tuple(str(i) for i in range(k)), tuple(mean), tuple(std))


def load(
    name: str,
    root: str | os.PathLike | None = None,
    val_size: int = 1000,
    seed: int = 0,
    limit: int | None = None,
    download: bool = True,
) -> Dataset:
    """Load dataset ``name`` (see ``names()``) as float tensors in [0, 1] on the CPU.

    ``root``: a folder holding the files (for ``npz``: the .npz file, or a folder with ``data.npz``);
    otherwise ``$IRAT_DATA/<name>``, the user cache and ``/usr/share/datasets/<name>`` are searched,
    and with ``download=True`` missing files are downloaded and checksum-verified.
    ``val_size``: a seeded, class-stratified validation split taken from the training file (the
    same whatever ``limit`` is; 0 gives an empty split). ``limit``: keep a seeded, class-stratified
    subset of that many of the remaining training images (all of them when ``limit`` is larger).
    ``Split.idx`` holds each image's index in its file's split.
    """
    entry = get(name)
    val_size, limit = int(val_size), None if limit is None else int(limit)
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of training images (or None for all), got {limit}")
    if val_size < 0:
        raise DataError(f"val_size must be >= 0, got {val_size}")
    found = locate(entry, root=root, download=download)
    files = _digests(entry, found)
    try:
        x_train, y_train, x_test, y_test, class_names = entry.reader(found)
    except DataError as e:
        raise DataError(f"{e}; {entry.corrupt_hint()}") from None

    spec = entry.spec if entry.spec is not None else _infer_spec(x_train, y_train, y_test)
    if class_names is not None and len(class_names) == spec.num_classes:
        spec = replace(spec, class_names=tuple(class_names))
    for split, x, y in (("training", x_train, y_train), ("test", x_test, y_test)):
        if x.shape[1:] != spec.shape:
            raise DataError(
                f"{found}: {split} images are {x.shape[1:]}, expected {spec.shape} for {spec.name}"
            )
        if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
            raise DataError(
                f"{found}: {split} labels span {y.min()}..{y.max()}, expected 0..{spec.num_classes - 1}; "
                f"{entry.corrupt_hint()}"
            )

    n = len(y_train)
    if val_size >= n:
        raise DataError(
            f"val_size={val_size} leaves no training images ({spec.name} has {n}); choose a smaller one"
        )
    val_pos, rest = stratified_split(torch.from_numpy(y_train), [val_size], seed)
    if limit is not None and limit < len(rest):
        chosen, _ = stratified_split(torch.from_numpy(y_train[rest.numpy()]), [limit], seed + 1)
        rest = rest[chosen]
    test_pos = torch.arange(len(y_test))
    return Dataset(
        spec,
        _split(x_train, y_train, rest, "train"),
        _split(x_train, y_train, val_pos, "val"),
        _split(x_test, y_test, test_pos, "test"),
        root=None if root is None else str(root),
        seed=seed,
        limit=limit,
        location=str(found),
        files=files,
    )
