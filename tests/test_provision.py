"""Getting the data onto a fresh machine (``irat data fetch``/``list``, irat.data.provision), the
data folders that ``--data-dir``/``$IRAT_DATA`` accept, and the provenance a run records."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from tests.test_data import IDX_NAMES, write_idx_set

import irat
import irat.data as D
from irat.data import fetch, provision, registry

DEAD_MIRROR = "http://127.0.0.1:9/"  # the discard port: the connection is refused at once


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test sees the user's cache, $IRAT_DATA, a mirror, or /usr/share/datasets."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("IRAT_DATA", raising=False)
    monkeypatch.setenv("IRAT_MIRROR", DEAD_MIRROR)
    monkeypatch.setattr(fetch, "SYSTEM_DIR", tmp_path / "system")


@pytest.fixture
def published(monkeypatch):
    """Point the registry's Fashion-MNIST checksums at the files ``write_idx_set(seed=0)`` writes."""
    ref = Path(os.environ["XDG_CACHE_HOME"]).parent / "reference"
    write_idx_set(ref, n_train=30, n_test=10)
    files = {
        f"{n}.gz": ("sha256", hashlib.sha256((ref / f"{n}.gz").read_bytes()).hexdigest()) for n in IDX_NAMES
    }
    entry = registry.REGISTRY["fashion-mnist"]
    monkeypatch.setitem(registry.REGISTRY, "fashion-mnist", replace(entry, files=files))
    return ref


def fake_apt(tmp_path: Path, source: Path | None, exit_code: int = 0) -> list[str]:
    """An ``apt-get`` stand-in: logs its arguments; ``install`` copies ``source`` into
    ``/usr/share/datasets/fashion-mnist`` (the test's SYSTEM_DIR) and exits with ``exit_code``."""
    script, log = tmp_path / "apt-get", tmp_path / "apt.log"
    dest = fetch.SYSTEM_DIR / "fashion-mnist"
    copy = f'mkdir -p "{dest}" && cp "{source}"/* "{dest}"/' if source else "true"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> "{log}"\nif [ "$1" = install ]; then {copy}; exit {exit_code}; fi\nexit 0\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return [str(script)]


def apt_log(tmp_path: Path) -> list[str]:
    log = tmp_path / "apt.log"
    return log.read_text().splitlines() if log.exists() else []


def test_fetch_finds_data_already_there_without_apt(tmp_path, monkeypatch, published):
    write_idx_set(fetch.SYSTEM_DIR / "fashion-mnist", n_train=30, n_test=10)
    monkeypatch.setattr(provision, "apt_command", lambda: pytest.fail("apt must not be called"))
    assert provision.fetch("fashion-mnist") == fetch.SYSTEM_DIR / "fashion-mnist"


def test_fetch_installs_the_debian_package_when_the_download_fails(tmp_path, monkeypatch, published, capsys):
    monkeypatch.setattr(provision, "apt_command", lambda: fake_apt(tmp_path, published))
    found = provision.fetch("fashion-mnist")
    assert found == fetch.SYSTEM_DIR / "fashion-mnist"
    assert apt_log(tmp_path) == ["install -y dataset-fashion-mnist"]
    assert "installing the Debian package dataset-fashion-mnist" in capsys.readouterr().err  # says so
    assert len(D.load("fashion-mnist", val_size=0, download=False).train) == 30


def test_a_failed_install_is_retried_after_an_update_then_explained(tmp_path, monkeypatch, published):
    monkeypatch.setattr(provision, "apt_command", lambda: fake_apt(tmp_path, None, exit_code=100))
    with pytest.raises(D.DataError) as e:
        provision.fetch("fashion-mnist")
    assert apt_log(tmp_path) == [
        "install -y dataset-fashion-mnist",
        "update",
        "install -y dataset-fashion-mnist",
    ]
    msg = str(e.value)
    assert "sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist" in msg
    assert "downloading" in msg  # what was tried first


def test_without_apt_the_message_gives_the_command(monkeypatch, published):
    monkeypatch.setattr(provision, "apt_command", lambda: None)
    with pytest.raises(D.DataError, match=r"run: sudo apt-get install -y dataset-fashion-mnist"):
        provision.fetch("fashion-mnist")


def test_an_explicit_folder_is_used_alone(tmp_path, monkeypatch, published):
    write_idx_set(fetch.SYSTEM_DIR / "fashion-mnist", n_train=30, n_test=10)  # another copy elsewhere
    monkeypatch.setattr(provision, "apt_command", lambda: pytest.fail("apt must not be called"))
    with pytest.raises(D.DataError, match=str(tmp_path / "mine")):
        provision.fetch("fashion-mnist", root=tmp_path / "mine")
    with pytest.raises(D.DataError, match="searched"):
        D.load("fashion-mnist", root=tmp_path / "mine", download=False)


def test_datasets_without_a_package_do_not_call_apt(monkeypatch):
    monkeypatch.setattr(provision, "apt_command", lambda: pytest.fail("apt must not be called"))
    with pytest.raises(D.DataError, match="downloading"):
        provision.fetch("mnist")


@pytest.mark.parametrize("via", ["root", "env"])
@pytest.mark.parametrize("level", ["files", "parent"])
def test_data_dir_and_irat_data_take_the_folder_or_its_parent(tmp_path, monkeypatch, via, level):
    write_idx_set(fetch.SYSTEM_DIR / "fashion-mnist", n_train=20, n_test=10, seed=9)  # a decoy
    parent = tmp_path / "d"
    write_idx_set(parent / "fashion-mnist", n_train=30, n_test=10)
    given = parent if level == "parent" else parent / "fashion-mnist"
    if via == "env":
        monkeypatch.setenv("IRAT_DATA", str(given))
    data = D.load("fashion-mnist", root=given if via == "root" else None, val_size=0, download=False)
    assert len(data.train) == 30 and data.location == str(parent / "fashion-mnist")
    read = sorted(Path(p).name for p in data.files)
    assert read == sorted(f"{n}.gz" for n in IDX_NAMES)
    for p, digest in data.files.items():
        assert digest == hashlib.sha256(Path(p).read_bytes()).hexdigest()


def test_files_that_differ_from_the_published_ones_are_read_with_one_warning(tmp_path, published):
    write_idx_set(tmp_path / "other", n_train=30, n_test=10, seed=5)  # same names, other bytes
    with pytest.warns(D.DataWarning, match="do not match the published checksums") as record:
        D.load("fashion-mnist", root=tmp_path / "other", val_size=0)
    assert len(record) == 1 and "train-images-idx3-ubyte.gz" in str(record[0].message)


def test_the_published_files_raise_no_warning(tmp_path, published, recwarn):
    D.load("fashion-mnist", root=published, val_size=0)
    assert not [w for w in recwarn if issubclass(w.category, D.DataWarning)]


def test_listing_shows_found_and_missing_datasets(tmp_path, published):
    write_idx_set(fetch.SYSTEM_DIR / "fashion-mnist", n_train=30, n_test=10)
    text = provision.listing()
    assert f"fashion-mnist: {fetch.SYSTEM_DIR / 'fashion-mnist'}" in text
    digest = hashlib.sha256((published / "train-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    assert f"train-images-idx3-ubyte.gz  sha256 {digest}" in text
    assert "mnist: missing" in text and "irat data fetch mnist" in text
    assert "md5 f68b3c2dcbeaaa9fbdd348bbdeb94873" in text  # what a download of MNIST would check


def test_cli_data_list_and_fetch(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "IRAT_MIRROR": DEAD_MIRROR}
    folder = tmp_path / "d"
    write_idx_set(folder / "fashion-mnist", n_train=30, n_test=10)
    run = [sys.executable, "-m", "irat", "data"]
    out = subprocess.run([*run, "list", "--data-dir", folder], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and f"fashion-mnist: {folder / 'fashion-mnist'}" in out.stdout
    out = subprocess.run(
        [*run, "fetch", "mnist", "--data-dir", folder], capture_output=True, text=True, env=env
    )
    assert out.returncode == 2 and "irat: error: " in out.stderr and "downloading" in out.stderr


def test_a_run_prints_and_stores_where_its_data_came_from(tmp_path, capsys):
    write_idx_set(tmp_path / "d", n_train=40, n_test=10, size=28)
    data = D.load("fashion-mnist", root=tmp_path / "d", val_size=10)
    model = irat.models.create("fc1", dataset=data.spec)
    irat.train(model, data, method="plain", epochs=1, out=tmp_path / "run", batch_size=16)
    assert f"data: fashion-mnist from {tmp_path / 'd'}" in capsys.readouterr().err
    stored = irat.training.rundir.RunDir(tmp_path / "run").read_config()["data_files"]
    assert stored == data.files and len(stored) == 4
