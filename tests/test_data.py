"""irat.data: readers on tiny files in the real formats, verified download from a local HTTP
server, stratified splits, the loader and augmentation; plus the real Fashion-MNIST when present."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import irat.data as D
from irat.data import fetch, registry
from irat.data.cifar import RestrictedUnpickler, safe_load
from irat.types import Batch

REAL_FMNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test sees the user's cache, $IRAT_DATA, a mirror, or /usr/share/datasets."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("IRAT_DATA", raising=False)
    monkeypatch.delenv("IRAT_MIRROR", raising=False)
    monkeypatch.setattr(fetch, "SYSTEM_DIR", tmp_path / "system")


# ---------------------------------------------------------------- writers of the real formats


def idx_bytes(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a, dtype=np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + a.tobytes()


def write_idx_set(folder: Path, n_train=40, n_test=12, gz=True, seed=0, size=28):
    """Four MNIST-style files; returns (x_train, y_train, x_test, y_test) as written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = (
        rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        (np.arange(n_train) % 10).astype(np.uint8),
        rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        (np.arange(n_test) % 10).astype(np.uint8)[::-1].copy(),
    )
    for name, a in zip(IDX_NAMES, arrays):
        data = idx_bytes(a)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def write_cifar(folder: Path, n_per_batch=6, n_test=8, hundred=False, seed=0):
    """CIFAR pickles (protocol 2, like the originals) in ``folder``; returns the written arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    k, key = (100, b"fine_labels") if hundred else (10, b"labels")
    batches = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    n_train = n_per_batch * len(batches)
    x_train = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8)
    y_train = rng.integers(0, k, n_train)
    x_test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    y_test = rng.integers(0, k, n_test)
    per = n_train // len(batches)
    for i, b in enumerate(batches):
        d = {
            b"data": x_train[i * per : (i + 1) * per],
            key: [int(v) for v in y_train[i * per : (i + 1) * per]],
        }
        (folder / b).write_bytes(pickle.dumps(d, protocol=2))
    (folder / ("test" if hundred else "test_batch")).write_bytes(
        pickle.dumps({b"data": x_test, key: [int(v) for v in y_test]}, protocol=2)
    )
    class_names = [f"class_{i}".encode() for i in range(k)]
    meta = {b"fine_label_names": class_names} if hundred else {b"label_names": class_names}
    (folder / ("meta" if hundred else "batches.meta")).write_bytes(pickle.dumps(meta, protocol=2))
    return x_train, y_train, x_test, y_test


def as_float(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).float() / 255


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reads_exact_pixels_and_labels(tmp_path, gz):
    xtr, ytr, xte, yte = write_idx_set(tmp_path / "f", gz=gz)
    data = D.load("fashion-mnist", root=tmp_path / "f", val_size=0)
    assert data.spec.name == "fashion-mnist" and data.spec.class_names[0] == "T-shirt/top"
    assert data.train.x.shape == (40, 1, 28, 28) and data.train.x.dtype == torch.float32
    assert torch.equal(data.train.idx, torch.arange(40))
    assert torch.equal(data.train.x[:, 0], as_float(xtr))
    assert torch.equal(data.train.y, torch.from_numpy(ytr.astype(np.int64)))
    assert torch.equal(data.test.x[:, 0], as_float(xte))
    assert torch.equal(data.test.y, torch.from_numpy(yte.astype(np.int64)))
    assert data.val.x.shape == (0, 1, 28, 28) and len(data.val) == 0


def test_idx_val_split_keeps_original_indices(tmp_path):
    xtr, ytr, _, _ = write_idx_set(tmp_path / "f", n_train=60)
    data = D.load("fashion-mnist", root=tmp_path / "f", val_size=10, seed=3)
    assert len(data.train) == 50 and len(data.val) == 10
    assert not set(data.train.idx.tolist()) & set(data.val.idx.tolist())
    for split in (data.train, data.val):
        assert torch.equal(split.x[:, 0], as_float(xtr[split.idx.numpy()]))
        assert torch.equal(split.y, torch.from_numpy(ytr[split.idx.numpy()].astype(np.int64)))
    assert torch.bincount(data.val.y, minlength=10).tolist() == [1] * 10


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_is_a_clear_error(tmp_path, gz):
    folder = tmp_path / "f"
    write_idx_set(folder, gz=False)
    raw = (folder / IDX_NAMES[0]).read_bytes()[:1000]
    (folder / IDX_NAMES[0]).unlink()
    if gz:
        name = f"{IDX_NAMES[0]}.gz"
        (folder / name).write_bytes(gzip.compress(raw))
    else:
        name = IDX_NAMES[0]
        (folder / name).write_bytes(raw)
    with pytest.raises(D.DataError, match="truncated") as e:
        D.load("fashion-mnist", root=folder, val_size=0)
    msg = str(e.value)
    assert str(folder / name) in msg
    assert "expected 31360 bytes" in msg and "found 984" in msg
    assert "delete it" in msg and "dataset-fashion-mnist" in msg


def test_cut_gzip_stream_is_a_clear_error(tmp_path):
    folder = tmp_path / "f"
    write_idx_set(folder)
    path = folder / f"{IDX_NAMES[0]}.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(D.DataError, match="truncated") as e:
        D.load("fashion-mnist", root=folder, val_size=0)
    assert str(path) in str(e.value)


def test_wrong_magic_is_a_clear_error(tmp_path):
    folder = tmp_path / "f"
    write_idx_set(folder, gz=False)
    path = folder / IDX_NAMES[1]
    path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])
    with pytest.raises(D.DataError, match="magic") as e:
        D.load("fashion-mnist", root=folder, val_size=0)
    assert str(path) in str(e.value)


def test_image_label_count_mismatch(tmp_path):
    folder = tmp_path / "f"
    write_idx_set(folder, gz=False)
    (folder / IDX_NAMES[1]).write_bytes(idx_bytes(np.zeros(39, np.uint8)))
    with pytest.raises(D.DataError, match="40 images but .* 39 labels"):
        D.load("fashion-mnist", root=folder, val_size=0)


# ---------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("archive", [False, True])
def test_cifar10_folder_and_archive(tmp_path, archive):
    inner = tmp_path / "src" / "cifar-10-batches-py"
    xtr, ytr, xte, yte = write_cifar(inner)
    root = tmp_path / "root"
    if archive:
        root.mkdir()
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(inner, arcname="cifar-10-batches-py")
    else:
        root = tmp_path / "src"
    data = D.load("cifar10", root=root, val_size=0)
    assert data.spec.channels == 3 and data.spec.crop_padding == 4 and data.spec.flip
    assert data.spec.class_names == tuple(f"class_{i}" for i in range(10))
    assert data.train.x.shape == (30, 3, 32, 32) and data.test.x.shape == (8, 3, 32, 32)
    assert torch.equal(data.train.x, as_float(xtr.reshape(-1, 3, 32, 32)))
    assert torch.equal(data.train.y, torch.from_numpy(ytr))
    assert torch.equal(data.test.x, as_float(xte.reshape(-1, 3, 32, 32)))
    assert torch.equal(data.test.y, torch.from_numpy(yte))
    # a pixel checked by hand: row r, column c of channel 1 is byte 1024 + 32 r + c of the row
    assert data.train.x[7, 1, 2, 5] == xtr[7, 1024 + 64 + 5] / 255


def test_cifar100_archive_fine_labels_and_names(tmp_path):
    inner = tmp_path / "src" / "cifar-100-python"
    xtr, ytr, _, yte = write_cifar(inner, n_per_batch=30, hundred=True)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-100-python.tar.gz", "w:gz") as tar:
        tar.add(inner, arcname="cifar-100-python")
    data = D.load("cifar100", root=root, val_size=0)
    assert data.spec.num_classes == 100 and data.spec.class_names[42] == "class_42"
    assert torch.equal(data.train.y, torch.from_numpy(ytr)) and torch.equal(
        data.test.y, torch.from_numpy(yte)
    )
    assert torch.equal(data.train.x, as_float(xtr.reshape(-1, 3, 32, 32)))


def test_cifar_pickles_with_old_numpy_module_name(tmp_path):
    """The original files (Python 2, old numpy) name numpy.core.multiarray._reconstruct."""
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    path = folder / "data_batch_2"
    raw = path.read_bytes()
    assert b"numpy._core.multiarray" in raw or b"numpy.core.multiarray" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    d = safe_load(path.read_bytes(), str(path))
    assert d[b"data"].shape == (6, 3072) and d[b"data"].dtype == np.uint8


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        RestrictedUnpickler(io.BytesIO(payload), encoding="bytes").load()
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "data_batch_1").write_bytes(payload)
    with pytest.raises(D.DataError, match="data_batch_1.*not allowed"):
        D.load("cifar10", root=tmp_path, val_size=0)
    assert not marker.exists()


def test_truncated_cifar_archive(tmp_path):
    inner = tmp_path / "src" / "cifar-10-batches-py"
    write_cifar(inner)
    root = tmp_path / "root"
    root.mkdir()
    archive = root / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(inner, arcname="cifar-10-batches-py")
    archive.write_bytes(archive.read_bytes()[:300])
    with pytest.raises(D.DataError, match="truncated") as e:
        D.load("cifar10", root=root, val_size=0)
    assert str(archive) in str(e.value)


# ---------------------------------------------------------------- SVHN


def test_svhn_mat(tmp_path):
    import scipy.io

    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 20), ("test", 7)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
        y[0, 0] = 10
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
        arrays[split] = (x, y)
    data = D.load("svhn", root=tmp_path, val_size=0)
    for split in ("train", "test"):
        x, y = arrays[split]
        got = getattr(data, split)
        assert torch.equal(got.x, as_float(x.transpose(3, 2, 0, 1)))
        want = y[:, 0].astype(np.int64)
        want[want == 10] = 0
        assert torch.equal(got.y, torch.from_numpy(want)) and got.y[0] == 0
    assert data.train.x[3, 2, 5, 9] == arrays["train"][0][5, 9, 2, 3] / 255


def test_svhn_bad_file(tmp_path):
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file at all" * 10)
    (tmp_path / "test_32x32.mat").write_bytes(b"")
    with pytest.raises(D.DataError) as e:
        D.load("svhn", root=tmp_path, val_size=0)
    assert str(tmp_path / "train_32x32.mat") in str(e.value)


# ---------------------------------------------------------------- npz


def test_npz_channels_last_uint8_and_inferred_spec(tmp_path):
    rng = np.random.default_rng(2)
    xtr = rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
    xte = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    ytr, yte = np.arange(30) % 3, np.array([0, 1, 2, 4, 0])
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    data = D.load("npz", root=path, val_size=0)
    s = data.spec
    assert (s.name, s.channels, s.image_size, s.num_classes) == ("npz", 3, 8, 5)
    assert s.class_names == ("0", "1", "2", "3", "4") and s.crop_padding == 0 and not s.flip
    want_mean = (xtr / 255).mean(axis=(0, 1, 2))
    want_std = (xtr / 255).std(axis=(0, 1, 2))
    assert np.allclose(s.mean, want_mean, atol=1e-4) and np.allclose(s.std, want_std, atol=1e-4)
    assert torch.equal(data.train.x, as_float(xtr.transpose(0, 3, 1, 2)))
    assert torch.equal(data.test.y, torch.from_numpy(yte))


def test_npz_grey_and_float_channels_first_in_folder(tmp_path):
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (12, 6, 6), dtype=np.uint8)
    np.savez(
        tmp_path / "data.npz",
        x_train=grey,
        y_train=np.arange(12) % 2,
        x_test=grey[:3],
        y_test=np.zeros(3, int),
    )
    data = D.load("npz", root=tmp_path, val_size=2)
    assert data.spec.channels == 1 and data.train.x.shape == (10, 1, 6, 6)
    assert torch.equal(data.val.x[:, 0], as_float(grey[data.val.idx.numpy()]))

    f = rng.random((10, 2, 5, 5), dtype=np.float32)
    np.savez(tmp_path / "f.npz", x_train=f, y_train=np.arange(10) % 2, x_test=f[:2], y_test=np.zeros(2, int))
    data = D.load("npz", root=tmp_path / "f.npz", val_size=0)
    assert data.spec.channels == 2 and torch.equal(data.train.x, torch.from_numpy(f))


def test_npz_rejects_floats_outside_unit_range_and_missing_keys(tmp_path):
    x = np.full((10, 4, 4), 3.0, np.float32)
    np.savez(tmp_path / "a.npz", x_train=x, y_train=np.zeros(10, int), x_test=x, y_test=np.zeros(10, int))
    with pytest.raises(D.DataError, match=r"a\.npz.*\[0, 1\]"):
        D.load("npz", root=tmp_path / "a.npz", val_size=0)
    np.savez(tmp_path / "b.npz", x_train=x)
    with pytest.raises(D.DataError, match=r"b\.npz lacks arrays \['y_train'"):
        D.load("npz", root=tmp_path / "b.npz", val_size=0)


def test_npz_not_found_lists_folders(tmp_path):
    with pytest.raises(D.DataError, match="searched") as e:
        D.load("npz", root=tmp_path / "nothing_here", val_size=0)
    assert str(tmp_path / "nothing_here") in str(e.value) and "x_train" in str(e.value)


# ---------------------------------------------------------------- registry, lookup, arguments


def test_names_and_unknown_name():
    assert D.names() == ["cifar10", "cifar100", "fashion-mnist", "mnist", "npz", "svhn"]
    with pytest.raises(D.DataError, match="unknown dataset 'imagenet'.*cifar10, cifar100, fashion-mnist"):
        D.load("imagenet")
    assert registry.get("Fashion_MNIST").name == "fashion-mnist"


def test_lookup_order_irat_data_then_cache(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "cache" / "irat" / "mnist", seed=1)
    cached = D.load("mnist", val_size=0, download=False)
    xtr, *_ = write_idx_set(tmp_path / "mine" / "mnist", seed=2)
    monkeypatch.setenv("IRAT_DATA", str(tmp_path / "mine"))
    data = D.load("mnist", val_size=0, download=False)
    assert torch.equal(data.train.x[:, 0], as_float(xtr)) and not torch.equal(data.train.x, cached.train.x)


def test_offline_error_says_where_to_put_files(tmp_path):
    with pytest.raises(D.DataError) as e:
        D.load("mnist", val_size=0, download=False)
    msg = str(e.value)
    assert str(tmp_path / "cache" / "irat" / "mnist") in msg and str(tmp_path / "system" / "mnist") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "ossci-datasets" in msg


def test_bad_sizes(tmp_path):
    write_idx_set(tmp_path / "f")
    with pytest.raises(D.DataError, match="val_size=40"):
        D.load("mnist", root=tmp_path / "f", val_size=40)
    with pytest.raises(D.DataError, match="limit"):
        D.load("mnist", root=tmp_path / "f", val_size=0, limit=0)


# ---------------------------------------------------------------- download


class _Server:
    """http.server on 127.0.0.1 in a thread, serving a folder and counting requests."""

    def __init__(self, folder: Path):
        hits = self.hits = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **k):
                super().__init__(*a, directory=str(folder), **k)

            def log_message(self, *a):
                hits.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """Tiny Fashion-MNIST files served locally; the registry's checksums point to them."""
    served = tmp_path / "served"
    arrays = write_idx_set(served, n_train=30, n_test=10)
    files = {
        f"{n}.gz": ("sha256", hashlib.sha256((served / f"{n}.gz").read_bytes()).hexdigest())
        for n in IDX_NAMES
    }
    entry = registry.REGISTRY["fashion-mnist"]
    monkeypatch.setitem(registry.REGISTRY, "fashion-mnist", replace(entry, files=files))
    server = _Server(served)
    monkeypatch.setenv("IRAT_MIRROR", server.url)
    yield served, arrays, server
    server.close()


def test_download_verifies_and_caches(tmp_path, mirror):
    served, (xtr, ytr, xte, yte), server = mirror
    data = D.load("fashion-mnist", val_size=0)
    cache = tmp_path / "cache" / "irat" / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in IDX_NAMES)
    for n in IDX_NAMES:
        assert (cache / f"{n}.gz").read_bytes() == (served / f"{n}.gz").read_bytes()
    assert torch.equal(data.train.x[:, 0], as_float(xtr)) and torch.equal(data.test.x[:, 0], as_float(xte))
    assert len(server.hits) == 4
    D.load("fashion-mnist", val_size=0)  # now found in the cache: no new request
    assert len(server.hits) == 4


def test_corrupt_download_leaves_nothing(tmp_path, mirror):
    served, _, _ = mirror
    path = served / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-5] + b"XXXXX")
    with pytest.raises(D.DataError, match="t10k-images-idx3-ubyte.gz does not match its sha256 checksum"):
        D.load("fashion-mnist", val_size=0)
    cache = tmp_path / "cache" / "irat" / "fashion-mnist"
    left = sorted(p.name for p in cache.iterdir())
    assert "t10k-images-idx3-ubyte.gz" not in left and not [n for n in left if n.startswith(".")]


def test_missing_file_on_server_is_a_clear_error(tmp_path, mirror):
    served, _, _ = mirror
    (served / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(D.DataError, match="downloading .*train-labels-idx1-ubyte.gz failed") as e:
        D.load("fashion-mnist", val_size=0)
    assert str(tmp_path / "cache" / "irat" / "fashion-mnist") in str(e.value)
    assert not list((tmp_path / "cache" / "irat" / "fashion-mnist").glob(".*"))


# ---------------------------------------------------------------- stratified_split and limit


def test_stratified_split_properties():
    y = torch.tensor([0] * 500 + [1] * 300 + [2] * 150 + [3] * 50)[
        torch.randperm(1000, generator=torch.Generator().manual_seed(1))
    ]
    a, b, rest = D.stratified_split(y, [100, 40], seed=0)
    assert len(a) == 100 and len(b) == 40 and len(rest) == 860
    assert torch.equal(torch.sort(torch.cat([a, b, rest])).values, torch.arange(1000))
    assert torch.bincount(y[a], minlength=4).tolist() == [50, 30, 15, 5]
    assert torch.bincount(y[b], minlength=4).tolist() == [20, 12, 6, 2]
    a2, b2, _ = D.stratified_split(y, [100, 40], seed=0)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    a3, _, _ = D.stratified_split(y, [100, 40], seed=1)
    assert not torch.equal(a, a3)


def test_stratified_split_rounding_and_errors():
    y = torch.tensor([0] * 7 + [1] * 7 + [2] * 6)
    (a, rest) = D.stratified_split(y, [10], seed=0)
    counts = torch.bincount(y[a], minlength=3).tolist()
    assert sum(counts) == 10 and max(counts) - min(counts) <= 1 and counts[2] == 3  # 3.5, 3.5, 3 → 4, 3, 3
    assert len(rest) == 10
    with pytest.raises(D.DataError):
        D.stratified_split(y, [15, 6], seed=0)


def test_limit_is_class_balanced_and_val_unchanged(tmp_path):
    counts = [100, 60, 30, 10]
    y = np.repeat(np.arange(4), counts)
    rng = np.random.default_rng(0)
    rng.shuffle(y)
    x = rng.integers(0, 256, (200, 4, 4), dtype=np.uint8)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    full = D.load("npz", root=path, val_size=20, seed=5)
    small = D.load("npz", root=path, val_size=20, seed=5, limit=40)
    assert torch.equal(full.val.idx, small.val.idx) and torch.equal(full.val.x, small.val.x)
    assert torch.bincount(small.val.y, minlength=4).tolist() == [10, 6, 3, 1]
    assert len(small.train) == 40 and torch.bincount(small.train.y, minlength=4).tolist() == [20, 12, 6, 2]
    assert set(small.train.idx.tolist()) <= set(full.train.idx.tolist())
    assert not set(small.train.idx.tolist()) & set(small.val.idx.tolist())
    assert torch.equal(small.train.x[:, 0], as_float(x[small.train.idx.numpy()]))
    assert len(D.load("npz", root=path, val_size=20, seed=5, limit=10_000).train) == 180
    other = D.load("npz", root=path, val_size=20, seed=6)
    assert not torch.equal(other.val.idx, full.val.idx)


# ---------------------------------------------------------------- Split and Loader


def _split(n=50, c=1, size=4):
    x = torch.rand(n, c, size, size)
    return D.Split(x, torch.arange(n) % 5, torch.arange(100, 100 + n), "train")


def test_split_subset_and_to():
    s = _split()
    assert len(s.subset(7)) == 7 and torch.equal(s.subset(7).idx, torch.arange(100, 107))
    sub = s.subset(torch.tensor([3, 1]))
    assert sub.idx.tolist() == [103, 101] and torch.equal(sub.x[0], s.x[3]) and sub.name == "train"
    assert s.to("cpu") is s and s.to(torch.device("cpu")).device.type == "cpu"


def test_loader_covers_each_index_once_and_is_reproducible():
    s = _split(50)
    loader = D.Loader(s, batch_size=8, seed=3)
    assert len(loader) == 7
    batches = list(loader)
    assert all(isinstance(b, Batch) for b in batches) and [len(b) for b in batches] == [8] * 6 + [2]
    seen = torch.cat([b.idx for b in batches])
    assert sorted(seen.tolist()) == list(range(100, 150))
    for b in batches:
        pos = b.idx - 100
        assert torch.equal(b.x, s.x[pos]) and torch.equal(b.y, s.y[pos])
        assert b.x.min() >= 0 and b.x.max() <= 1
    again = torch.cat([b.idx for b in D.Loader(s, batch_size=8, seed=3)])
    assert torch.equal(seen, again)
    loader.set_epoch(1)
    epoch1 = torch.cat([b.idx for b in loader])
    assert not torch.equal(seen, epoch1) and sorted(epoch1.tolist()) == list(range(100, 150))
    resumed = D.Loader(s, batch_size=8, seed=3)
    resumed.set_epoch(1)
    assert torch.equal(torch.cat([b.idx for b in resumed]), epoch1)
    assert not torch.equal(torch.cat([b.idx for b in D.Loader(s, batch_size=8, seed=4)]), seen)


def test_loader_no_shuffle_drop_last_and_augment():
    s = _split(50, c=3, size=8)
    plain = list(D.Loader(s, batch_size=16, shuffle=False, drop_last=True))
    assert len(plain) == 3 and torch.equal(torch.cat([b.idx for b in plain]), torch.arange(100, 148))
    spec = D.DatasetSpec("t", 3, 8, 5, tuple("abcde"), (0.5,) * 3, (0.25,) * 3, crop_padding=2, flip=True)
    aug = D.Loader(s, batch_size=16, augment=True, spec=spec, seed=1)
    first = [b.x for b in aug]
    assert [x.shape for x in first] == [(16, 3, 8, 8)] * 3 + [(2, 3, 8, 8)]
    assert not torch.equal(torch.cat(first), s.x[torch.cat([b.idx for b in aug]) - 100])
    assert all(torch.equal(a, b.x) for a, b in zip(first, aug))  # same epoch, same draws
    with pytest.raises(ValueError, match="spec"):
        D.Loader(s, batch_size=4, augment=True)


# ---------------------------------------------------------------- augment


def test_augment_identity_and_shape():
    x = torch.rand(6, 3, 5, 5)
    assert D.augment(x, padding=0, flip=False) is x
    assert D.augment(x, padding=3, flip=True).shape == x.shape


def test_augment_flip_only():
    x = torch.rand(200, 2, 4, 6)
    out = D.augment(x, padding=0, flip=True, generator=torch.Generator().manual_seed(0))
    flipped = (out == torch.flip(x, dims=[3])).flatten(1).all(1)
    same = (out == x).flatten(1).all(1)
    assert bool((flipped | same).all())
    assert torch.equal(out[flipped], torch.flip(x[flipped], dims=[3]))
    assert 60 < int(flipped.sum()) < 140


def test_augment_crop_is_a_window_of_the_padded_image():
    p, x = 2, torch.rand(64, 3, 6, 6) + 0.1  # no zeros inside the images
    out = D.augment(x, padding=p, flip=False, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    offsets = set()
    for i in range(len(x)):
        hits = [
            (r, c)
            for r in range(2 * p + 1)
            for c in range(2 * p + 1)
            if torch.equal(out[i], padded[i, :, r : r + 6, c : c + 6])
        ]
        assert len(hits) == 1, i
        offsets.add(hits[0])
    assert len(offsets) > 10  # offsets vary per sample


def test_augment_is_seeded():
    x = torch.rand(10, 1, 8, 8)
    a = D.augment(x, 4, True, generator=torch.Generator().manual_seed(7))
    b = D.augment(x, 4, True, generator=torch.Generator().manual_seed(7))
    c = D.augment(x, 4, True, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- the real files


@pytest.mark.skipif(
    not (REAL_FMNIST / "train-images-idx3-ubyte.gz").exists(), reason="dataset-fashion-mnist not installed"
)
def test_real_fashion_mnist():
    data = D.load("fashion-mnist", root=REAL_FMNIST, val_size=1000, download=False)
    assert len(data.train) == 59000 and len(data.val) == 1000 and len(data.test) == 10000
    assert data.train.x.shape == (59000, 1, 28, 28) and data.test.x.shape == (10000, 1, 28, 28)
    for s in (data.train, data.val, data.test):
        assert s.x.dtype == torch.float32 and s.x.min() >= 0 and s.x.max() <= 1
        assert s.y.min() == 0 and s.y.max() == 9
    assert torch.bincount(data.val.y).tolist() == [100] * 10
    assert abs(data.train.x.mean().item() - data.spec.mean[0]) < 0.005
