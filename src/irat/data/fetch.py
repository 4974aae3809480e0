"""Finding a dataset's files on disk, and downloading them when they are nowhere to be found.

Folders searched, in order: with a ``root`` argument (``--data-dir``), that folder and its
``<name>`` subfolder and nothing else (an explicit folder is never silently replaced by another
copy); otherwise ``$IRAT_DATA`` and ``$IRAT_DATA/<name>``, the user cache
``$XDG_CACHE_HOME/irat/<name>`` (default ``~/.cache/irat/<name>``) and ``/usr/share/datasets/<name>``
(where Debian's ``dataset-fashion-mnist`` package installs). Both ``root`` and ``$IRAT_DATA`` may
name the folder with the files or its parent. Downloads go to the first folder searched (``root``,
``$IRAT_DATA/<name>`` or the cache), are checked against a known checksum, and are written
atomically: a temporary file in the same folder, fsync, then rename, so an interrupted or
corrupt download never leaves a file behind. ``$IRAT_MIRROR`` replaces the canonical base URL.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from irat.data.errors import DataError

if TYPE_CHECKING:
    from irat.data.registry import Entry

SYSTEM_DIR = Path("/usr/share/datasets")
TIMEOUT_S = 60.0
CHUNK = 1 << 20


def cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/irat/<name>``, default ``~/.cache/irat/<name>``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "irat" / name


def search_folders(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The candidate locations for dataset ``name``, in lookup order; the first is where a
    download goes."""
    if root is not None:
        return [Path(root).expanduser(), Path(root).expanduser() / name]
    folders = []
    if os.environ.get("IRAT_DATA"):
        given = Path(os.environ["IRAT_DATA"]).expanduser()
        folders += [given / name, given]
    return folders + [cache_dir(name), SYSTEM_DIR / name]


def locate(entry: Entry, root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """What to read for ``entry``: the first search folder where ``entry.resolve`` finds its data;
    failing that, its missing ``entry.files`` are downloaded into the first search folder."""
    name, files, fix = entry.name, entry.files, f"; or {entry.fix}" if entry.fix else ""
    folders = search_folders(name, root)
    for folder in folders:
        found = entry.resolve(folder)
        if found is not None:
            return found
    listing = ", ".join(str(f) for f in folders)
    wanted = ", ".join(files) if files else entry.wanted
    base = (os.environ.get("IRAT_MIRROR") or entry.base_url or "").rstrip("/")
    if not files or not base:
        raise DataError(
            f"{name}: no data found (searched {listing}); put {wanted} in one of these folders{fix}"
        )
    if not download:
        raise DataError(
            f"{name}: data files not found (searched {listing}); put {wanted} in one of these folders, "
            f"or load with download=True to fetch them from {base}/{fix}"
        )
    target = folders[0]
    for fname in entry.missing(target):
        fetch(f"{base}/{fname}", target / fname, files[fname], searched=folders, fix=fix)
    found = entry.resolve(target)
    if found is None:
        raise DataError(f"{name}: downloaded {wanted} into {target} but the data is still incomplete{fix}")
    return found


def fetch(
    url: str, dest: Path, checksum: tuple[str, str], searched: Sequence[Path] = (), fix: str = ""
) -> Path:
    """Download ``url`` to ``dest`` and verify ``checksum`` = (algorithm, hex digest); atomic.

    On any failure nothing is left at ``dest`` nor beside it, and a DataError says what happened.
    """
    from tqdm.auto import tqdm

    algorithm, expected = checksum
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise DataError(
            f"cannot write to {dest.parent} ({e}); pass root= a writable folder or set $IRAT_DATA"
        ) from None
    try:
        h, got_bytes = hashlib.new(algorithm), 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
                    total = int(resp.headers.get("Content-Length") or 0) or None
                    with tqdm(
                        total=total, unit="B", unit_scale=True, desc=dest.name, disable=None, leave=False
                    ) as bar:
                        while chunk := resp.read(CHUNK):
                            out.write(chunk)
                            h.update(chunk)
                            got_bytes += len(chunk)
                            bar.update(len(chunk))
                    if total is not None and got_bytes != total:
                        raise http.client.IncompleteRead(b"", total - got_bytes)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
                where = ", ".join(str(p) for p in searched) or str(dest.parent)
                raise DataError(
                    f"downloading {url} failed ({e}); put {dest.name} in one of {where} "
                    f"(or set $IRAT_MIRROR to a reachable copy){fix}"
                ) from None
            out.flush()
            os.fsync(out.fileno())
        got = h.hexdigest()
        if got != expected.lower():
            raise DataError(
                f"{url} does not match its {algorithm} checksum (expected {expected}, got {got}); "
                f"nothing was saved to {dest}. Run again, or put a verified copy of {dest.name} there{fix}"
            )
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(dest.parent)
    return dest


def sha256(path: Path) -> str:
    """The sha256 hex digest of the file at ``path``, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
