"""Reader for SVHN's cropped-digit MATLAB files (train_32x32.mat, test_32x32.mat): ``X`` is
[32, 32, 3, N] uint8 and ``y`` [N, 1] with label 10 standing for the digit 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from irat.data.errors import DataError


def read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(x [N,3,32,32] uint8, y [N] int64 in 0..9)`` from one SVHN .mat file."""
    import scipy.io

    try:
        d = scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise DataError(f"{path} not found") from None
    except Exception as e:  # scipy raises ValueError, TypeError, OSError, … on a bad file
        raise DataError(f"{path} is truncated or not a MATLAB file ({type(e).__name__}: {e})") from None
    if "X" not in d or "y" not in d:
        raise DataError(f"{path} is not an SVHN file (needs variables X and y)")
    x, y = np.asarray(d["X"]), np.asarray(d["y"]).reshape(-1)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != y.shape[0]:
        raise DataError(
            f"{path}: expected X uint8 [H, W, 3, N] and N labels, got {x.dtype} {x.shape}, {y.shape}"
        )
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() > 10):
        raise DataError(f"{path}: labels must lie in 0..10 (10 = digit 0), found {y.min()}..{y.max()}")
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


def read_svhn(folder: Path):
    """``(x_train, y_train, x_test, y_test, None)`` from ``folder``."""
    folder = Path(folder)
    x_train, y_train = read_mat(folder / "train_32x32.mat")
    x_test, y_test = read_mat(folder / "test_32x32.mat")
    return x_train, y_train, x_test, y_test, None
