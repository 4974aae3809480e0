"""Reader for the CIFAR-10/100 "python version": pickled batches, read from the extracted folder or
straight from the .tar.gz, through an unpickler that can only rebuild plain containers and numpy
arrays (a pickle can otherwise run arbitrary code)."""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from irat.data.errors import DataError

# The only globals a CIFAR batch needs: numpy's array reconstruction (old and new module names)
# and, for pickles written by Python 3 at protocol < 3, `_codecs.encode`, which turns a str into bytes.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, str, bytes, numbers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a dataset file")
        if module == "numpy.core.multiarray":  # the pre-2.0 name of numpy._core.multiarray
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def safe_load(data: bytes, where: str) -> object:
    """Unpickle ``data`` (``encoding="bytes"``) with the restricted unpickler; ``where`` names the source."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{where} is not a CIFAR batch file: {e}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(f"{where} is truncated or corrupt ({type(e).__name__}: {e})") from None


# name: (folder inside the archive, archive file, train batches, test batch, label key, meta file, names key)
LAYOUTS = {
    "cifar10": (
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        b"labels",
        "batches.meta",
        b"label_names",
    ),
    "cifar100": (
        "cifar-100-python",
        "cifar-100-python.tar.gz",
        ("train",),
        "test",
        b"fine_labels",
        "meta",
        b"fine_label_names",
    ),
}


class _Source:
    """Reads member files from an extracted folder, or from the tar.gz archive in one pass."""

    def __init__(self, folder: Path, layout: tuple):
        inner, archive, train, test, _, meta, _ = layout
        self.members: dict[str, bytes] | None = None
        for d in (folder / inner, folder):
            if (d / train[0]).is_file():
                self.dir = d
                return
        path = folder / archive
        if not path.is_file():
            raise DataError(f"neither {folder / inner} nor {path} found")
        wanted = {f"{inner}/{n}": n for n in (*train, test, meta)}
        self.members, self.where = {}, str(path)
        try:
            with tarfile.open(path, "r|gz") as tar:
                for m in tar:
                    if m.name in wanted and m.isfile():
                        self.members[wanted[m.name]] = tar.extractfile(m).read()
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise DataError(f"{path} is truncated or not a tar.gz archive ({e})") from None
        self.inner = inner

    def read(self, name: str, required: bool = True) -> tuple[bytes | None, str]:
        if self.members is None:
            p = self.dir / name
            if not p.is_file():
                if required:
                    raise DataError(f"{p} not found")
                return None, str(p)
            return p.read_bytes(), str(p)
        where = f"{self.where}:{self.inner}/{name}"
        if name not in self.members and required:
            raise DataError(f"{self.where} has no member {self.inner}/{name}")
        return self.members.get(name), where


def _batch(src: _Source, name: str, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    raw, where = src.read(name)
    d = safe_load(raw, where)
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        raise DataError(f"{where} is not a CIFAR batch (needs keys b'data' and {label_key!r})")
    x = np.asarray(d[b"data"])
    y = np.asarray(d[label_key], dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or y.shape != (x.shape[0],):
        raise DataError(
            f"{where}: expected uint8 data [N, 3072] and N labels, "
            f"got {x.dtype} {x.shape} and {y.shape} labels"
        )
    return x.reshape(-1, 3, 32, 32), y


def read_cifar(folder: Path, name: str):
    """``(x_train [N,3,32,32] uint8, y_train, x_test, y_test, class_names or None)`` for ``cifar10``
    or ``cifar100`` (fine labels) from ``folder``."""
    layout = LAYOUTS[name]
    _, _, train, test, label_key, meta, names_key = layout
    src = _Source(Path(folder), layout)
    parts = [_batch(src, b, label_key) for b in train]
    x_test, y_test = _batch(src, test, label_key)
    class_names = None
    raw, where = src.read(meta, required=False)
    if raw is not None:
        m = safe_load(raw, where)
        if isinstance(m, dict) and isinstance(m.get(names_key), list):
            class_names = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in m[names_key])
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return x_train, y_train, x_test, y_test, class_names
