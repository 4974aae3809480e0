"""Reader for a user's own data as one .npz file with arrays ``x_train``, ``y_train``, ``x_test``,
``y_test``. Images are uint8 (0..255) or float in [0, 1], shaped [N, H, W], [N, H, W, C] (channels
last, C <= 4) or [N, C, H, W]; labels are integers 0..K-1."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from irat.data.errors import DataError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def _images(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[3] <= 4 and x.shape[1] > 4:
            x = x.transpose(0, 3, 1, 2)
        elif x.shape[1] > 4:
            raise DataError(
                f"{path}: {key} has shape {x.shape}; expected [N,H,W], [N,H,W,C] or [N,C,H,W], C <= 4"
            )
    else:
        raise DataError(f"{path}: {key} has shape {x.shape}; expected [N,H,W], [N,H,W,C] or [N,C,H,W]")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
        if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
            raise DataError(
                f"{path}: float {key} must lie in [0, 1] (found {np.nanmin(x):g}..{np.nanmax(x):g}, "
                "or non-finite values); divide by 255 or store uint8"
            )
        return np.ascontiguousarray(x)
    raise DataError(f"{path}: {key} has dtype {x.dtype}; store uint8 (0..255) or float in [0, 1]")


def _labels(y: np.ndarray, n: int, path: Path, key: str) -> np.ndarray:
    y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{path}: {key} has shape {y.shape}; expected [{n}] to match the images")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: {key} has dtype {y.dtype}; expected integer class labels 0..K-1")
    if y.size and y.min() < 0:
        raise DataError(f"{path}: {key} has negative labels; expected 0..K-1")
    return y.astype(np.int64)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the .npz file at ``path`` (no pickles); one ``DataError`` when it is missing
    or not a readable .npz."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise DataError(f"{path} not found") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a readable .npz file ({type(e).__name__}: {e})") from None


def read_npz(path: Path):
    """``(x_train [N,C,H,W] uint8 or float32, y_train, x_test, y_test, None)`` from ``path``."""
    path = Path(path)
    arrays = _arrays(path)
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks arrays {missing}; it needs {list(KEYS)} (found {list(arrays)})")
    out = []
    for split in ("train", "test"):
        x = _images(arrays[f"x_{split}"], path, f"x_{split}")
        out += [x, _labels(arrays[f"y_{split}"], x.shape[0], path, f"y_{split}")]
    if out[0].shape[1:] != out[2].shape[1:]:
        raise DataError(
            f"{path}: x_train images are {out[0].shape[1:]} but x_test images are {out[2].shape[1:]}"
        )
    _, h, w = out[0].shape[1:]
    if h != w:
        raise DataError(f"{path}: images must be square, found {h}x{w}")
    return (*out, None)


def read_extra_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Extra training data from an .npz file: images ``x`` and labels ``y`` (or ``x_train`` and
    ``y_train``), in the formats ``read_npz`` accepts. Labels are required (pseudo-labels for
    unlabelled data, as the hard-instance paper's 80M-TinyImages)."""
    path = Path(path)
    arrays = _arrays(path)
    for xk, yk in (("x", "y"), ("x_train", "y_train")):
        if xk in arrays:
            if yk not in arrays:
                raise DataError(
                    f"{path} has images {xk!r} but no labels {yk!r}; extra training data needs "
                    "labels (pseudo-labels for unlabelled images)"
                )
            x = _images(arrays[xk], path, xk)
            return x, _labels(arrays[yk], x.shape[0], path, yk)
    raise DataError(
        f"{path} holds no images: it needs arrays x and y (or x_train and y_train); found {list(arrays)}"
    )
