"""Shared fixtures: a small real Fashion-MNIST subset (skipped when the files are absent) and a
tiny synthetic dataset written in the npz format for fast CLI runs."""

from pathlib import Path

import numpy as np
import pytest

import irat

FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.fixture(scope="session")
def fmnist_small():
    """2000 training / 200 validation images of the real Fashion-MNIST."""
    if not FMNIST.exists():
        pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    return irat.data.load("fashion-mnist", val_size=200, seed=0, limit=2000)


def write_toy_npz(path, n_train: int, n_test: int):
    """A 4-class 8×8 grey-scale toy problem (class = bright quadrant) as a user's npz file."""
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 4, n)
        x = rng.uniform(0, 60, (n, 8, 8))
        for i, c in enumerate(y):
            r, col = divmod(int(c), 2)
            x[i, 4 * r : 4 * r + 4, 4 * col : 4 * col + 4] += 180
        return x.astype(np.uint8), y.astype(np.int64)

    x_train, y_train = make(n_train)
    x_test, y_test = make(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture
def tiny_npz(tmp_path):
    """400 training and 100 test images of the toy problem (``write_toy_npz``)."""
    return write_toy_npz(tmp_path / "toy.npz", 400, 100)


@pytest.fixture(scope="session")
def toy_npz(tmp_path_factory):
    """``toy_npz(n_train, n_test)``: a toy npz file in a fresh folder, for module-scoped fixtures."""
    return lambda n_train, n_test: write_toy_npz(tmp_path_factory.mktemp("toy") / "toy.npz", n_train, n_test)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need a CUDA device: skipped with a reason where there is none."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (benchmarks/gpu.sh runs these on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
