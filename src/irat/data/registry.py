"""The named datasets: for each, its spec, where its files come from (with checksums), which local
names satisfy them, and the reader that turns them into arrays."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from irat.data.cifar import LAYOUTS, read_cifar
from irat.data.errors import DataError
from irat.data.idx import read_idx_dataset
from irat.data.npz import read_npz
from irat.data.spec import DatasetSpec
from irat.data.svhn import read_svhn

# A reader maps what `Entry.resolve` found to (x_train, y_train, x_test, y_test, class_names or None):
# x [N, C, H, W] uint8 or float32 in [0, 1], y [N] int64.
Reader = Callable[[Path], tuple]


@dataclass(frozen=True)
class Entry:
    """One registered dataset. ``spec`` is None when it is inferred from the data (npz).

    ``files``: {file name: (hash algorithm, hex digest)} to download from ``base_url``;
    ``alternatives``: {file name: other local names that also satisfy it} (an un-gzipped copy, an
    extracted folder); ``fix``: an extra way to get the files, added to error messages;
    ``apt_package``: a Debian package that installs the files under ``/usr/share/datasets``.
    """

    name: str
    spec: DatasetSpec | None
    reader: Reader
    files: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    alternatives: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    base_url: str | None = None
    fix: str = ""
    wanted: str = ""
    custom_resolve: Callable[[Path], Path | None] | None = None
    apt_package: str | None = None

    def missing(self, folder: Path) -> list[str]:
        """The download files that ``folder`` lacks (in neither their own nor an alternative name)."""
        return [
            f
            for f in self.files
            if not any((folder / a).exists() for a in (f, *self.alternatives.get(f, ())))
        ]

    def resolve(self, folder: Path) -> Path | None:
        """What the reader should read when ``folder`` holds this dataset, else None."""
        if self.custom_resolve is not None:
            return self.custom_resolve(folder)
        return folder if folder.is_dir() and not self.missing(folder) else None

    def data_files(self, found: Path) -> list[Path]:
        """The files the reader reads from ``found`` (what ``resolve`` returned): the file itself,
        or per download file the one present under its own name or an alternative name; an
        alternative inside a subfolder (an extracted archive) stands for every file of it."""
        if found.is_file():
            return [found]
        out: list[Path] = []
        for name in self.files:
            for alt in (name, *self.alternatives.get(name, ())):
                path = found / alt
                if path.is_file():
                    nested = path.parent != found
                    out += sorted(p for p in path.parent.iterdir() if p.is_file()) if nested else [path]
                    break
        return out

    def corrupt_hint(self) -> str:
        """What to do about a damaged file."""
        if not self.files:
            return "fix or replace the file"
        hint = "delete it and run again to re-download it"
        return f"{hint}, or {self.fix}" if self.fix else hint


def _idx_files(algorithm: str, digests: dict[str, str]) -> tuple[dict, dict]:
    files = {name: (algorithm, digest) for name, digest in digests.items()}
    return files, {name: (name.removesuffix(".gz"),) for name in files}


_FMNIST_FILES, _FMNIST_ALT = _idx_files(
    "sha256",
    {
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    },
)
# MNIST: the md5 digests torchvision publishes for these files (no sha256 from a source we could verify).
_MNIST_FILES, _MNIST_ALT = _idx_files(
    "md5",
    {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
)

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
DIGITS = tuple(str(i) for i in range(10))


def _idx_reader(path: Path) -> tuple:
    return (*read_idx_dataset(path), None)


def _resolve_npz(candidate: Path) -> Path | None:
    if candidate.is_file() and candidate.suffix == ".npz":
        return candidate
    if (candidate / "data.npz").is_file():
        return candidate / "data.npz"
    return None


def _cifar_entry(spec: DatasetSpec, md5: str) -> Entry:
    """A CIFAR entry whose archive, inner folder and first training batch come from the reader's
    own ``cifar.LAYOUTS``, so that what ``resolve`` accepts is what ``read_cifar`` reads."""
    inner, archive, train, *_ = LAYOUTS[spec.name]
    return Entry(
        spec.name,
        spec,
        partial(read_cifar, name=spec.name),
        {archive: ("md5", md5)},
        {archive: (f"{inner}/{train[0]}", train[0])},
        "https://www.cs.toronto.edu/~kriz/",
    )


_ENTRIES = [
    Entry(
        "fashion-mnist",
        DatasetSpec("fashion-mnist", 1, 28, 10, FASHION_CLASSES, (0.2860,), (0.3530,)),
        _idx_reader,
        _FMNIST_FILES,
        _FMNIST_ALT,
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        fix="install the Debian package dataset-fashion-mnist",
        apt_package="dataset-fashion-mnist",
    ),
    Entry(
        "mnist",
        DatasetSpec("mnist", 1, 28, 10, DIGITS, (0.1307,), (0.3081,)),
        _idx_reader,
        _MNIST_FILES,
        _MNIST_ALT,
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ),
    _cifar_entry(
        DatasetSpec(
            "cifar10", 3, 32, 10, CIFAR10_CLASSES, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 4, True
        ),
        "c58f30108f718f92721af3b95e74349a",
    ),
    _cifar_entry(
        DatasetSpec(
            "cifar100",
            3,
            32,
            100,
            tuple(str(i) for i in range(100)),  # replaced by the names in the archive's meta file
            (0.5071, 0.4865, 0.4409),
            (0.2673, 0.2564, 0.2762),
            4,
            True,
        ),
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
    Entry(
        "svhn",
        DatasetSpec("svhn", 3, 32, 10, DIGITS, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 4, False),
        read_svhn,
        {
            "train_32x32.mat": ("md5", "e26dedcc434d2e4c54c9b2d4a06d8373"),
            "test_32x32.mat": ("md5", "eb5a983be6a315427106f1b164d9cef3"),
        },
        base_url="http://ufldl.stanford.edu/housenumbers/",
    ),
    Entry(
        "npz",
        None,
        read_npz,
        wanted="an .npz file with x_train, y_train, x_test, y_test (pass root=its path, or name it data.npz)",
        custom_resolve=_resolve_npz,
    ),
]

REGISTRY: dict[str, Entry] = {e.name: e for e in _ENTRIES}


def names() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(REGISTRY)


def get(name: str) -> Entry:
    """The entry for ``name`` (case and ``_``/``-`` insensitive); DataError listing the valid names."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(names())}")
    return REGISTRY[key]
