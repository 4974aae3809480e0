"""Reader for the IDX format of MNIST and Fashion-MNIST (gzip-compressed or raw).

Header: two zero bytes, a type code (0x08 = unsigned byte, the only one these datasets use), the
number of dimensions, then each dimension as a big-endian uint32; then the values, row-major.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from irat.data.errors import DataError

UBYTE = 0x08


def read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzip (detected by its magic bytes)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except EOFError as e:
        raise DataError(f"{path} is truncated (the gzip stream ends early: {e})") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path} is not a valid gzip file ({e})") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None


def read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """The uint8 array stored in the IDX file at ``path``; ``ndim`` checks its number of dimensions."""
    path = Path(path)
    data = read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path} is not an IDX file (wrong magic number {data[:4].hex() or 'empty'})")
    dtype, dims = data[2], data[3]
    if dtype != UBYTE:
        raise DataError(
            f"{path}: IDX value type 0x{dtype:02x} is not supported (expected 0x08, unsigned byte)"
        )
    if ndim is not None and dims != ndim:
        raise DataError(f"{path}: expected an IDX file with {ndim} dimensions, found {dims}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise DataError(f"{path} is truncated (header needs {header} bytes, found {len(data)})")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    expected = math.prod(shape)
    found = len(data) - header
    if found != expected:
        what = "is truncated" if found < expected else "has trailing data"
        raise DataError(
            f"{path} {what} (expected {expected} bytes of values for shape {shape}, found {found})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def find(folder: Path, name: str) -> Path:
    """``folder/name.gz`` or else ``folder/name`` (un-gzipped); DataError when neither exists."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder / name}.gz not found (nor un-gzipped {name})")


def read_idx_dataset(folder: Path):
    """``(x_train [N,1,H,W], y_train, x_test, y_test)`` from the four MNIST-style IDX files in ``folder``."""
    out = []
    for prefix in ("train", "t10k"):
        img_path = find(folder, f"{prefix}-images-idx3-ubyte")
        lab_path = find(folder, f"{prefix}-labels-idx1-ubyte")
        x = read_idx(img_path, ndim=3)
        y = read_idx(lab_path, ndim=1)
        if x.shape[0] != y.shape[0]:
            raise DataError(f"{img_path} has {x.shape[0]} images but {lab_path} has {y.shape[0]} labels")
        out += [x[:, None], y.astype(np.int64)]
    return tuple(out)
