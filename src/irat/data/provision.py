"""Getting a dataset onto this machine, and saying where each one is: ``irat data fetch NAME`` and
``irat data list``.

``fetch(name)`` tries, in order, until the data is there:
1. the folders ``irat.data.load`` searches (``fetch.search_folders``);
2. a download of the published files, checksum-verified (``fetch.locate``);
3. where the dataset has a Debian package and apt is usable (root, or ``sudo`` without a password):
   ``apt-get install -y PACKAGE``, after an ``apt-get update`` if the first try fails.
If all fail, one ``DataError`` says what was tried and the exact command to run. An explicit
``root`` is used alone: the data goes there or nowhere (apt installs into ``/usr/share/datasets``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from irat.data import fetch as _fetch
from irat.data.errors import DataError
from irat.data.registry import Entry, get, names


def fetch(name: str, root: str | os.PathLike | None = None, apt: bool = True) -> Path:
    """Make dataset ``name`` available and return what ``irat.data.load`` will read."""
    entry = get(name)
    try:
        return _fetch.locate(entry, root=root, download=True)
    except DataError as first:
        if root is not None or entry.apt_package is None or not apt:
            raise
        command = apt_command()
        if command is None:
            raise DataError(
                f"{first}. apt cannot be used here (not root, no password-less sudo); run: "
                f"sudo apt-get install -y {entry.apt_package}"
            ) from None
        print(
            f"irat: {name} is not here and could not be downloaded ({first}); installing the Debian "
            f"package {entry.apt_package} with {' '.join(command)} ...",
            file=sys.stderr,
        )
        reason = _apt_install(command, entry.apt_package)
        try:
            return _fetch.locate(entry, root=None, download=False)
        except DataError:
            raise DataError(
                f"{first}. Installing the Debian package {entry.apt_package} did not help ({reason}); run "
                f"'sudo apt-get update && sudo apt-get install -y {entry.apt_package}' and look at its output"
            ) from None


def apt_command() -> list[str] | None:
    """``["apt-get"]`` as root, ``["sudo", "-n", "apt-get"]`` with password-less sudo, else None."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return ["apt-get"]
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n", "apt-get"]
    return None


def _apt_install(command: list[str], package: str) -> str:
    """Install ``package``, updating the package lists once if the first try fails; the last
    error line, or "installed"."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*command, "install", "-y", package]
    done = subprocess.run(install, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        subprocess.run([*command, "update"], capture_output=True, text=True, env=env)
        done = subprocess.run(install, capture_output=True, text=True, env=env)
    if done.returncode == 0:
        return "installed"
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


@dataclass(frozen=True)
class Status:
    """Where dataset ``name`` was found (``location``, None when missing), the files read from
    there with their sha256, and what a download would fetch (file → (algorithm, digest))."""

    name: str
    location: Path | None
    files: dict[str, str]
    published: dict[str, tuple[str, str]]
    searched: list[Path]


def status(name: str, root: str | os.PathLike | None = None) -> Status:
    """Look for dataset ``name`` without downloading anything."""
    entry: Entry = get(name)
    searched = _fetch.search_folders(entry.name, root)
    found = next((f for f in (entry.resolve(folder) for folder in searched) if f is not None), None)
    files = {str(p): _fetch.sha256(p) for p in entry.data_files(found)} if found is not None else {}
    return Status(entry.name, found, files, dict(entry.files), searched)


def listing(root: str | os.PathLike | None = None) -> str:
    """``irat data list``: every dataset, where it is (or that it is missing), its files and checksums."""
    lines = []
    for name in names():
        s = status(name, root)
        if s.location is None:
            where = ", ".join(str(p) for p in s.searched)
            lines.append(f"{name}: missing (searched {where})")
            how = "irat data fetch " + name if s.published else "pass --data-dir (user-supplied files)"
            lines.append(f"  get it: {how}")
            lines += [f"  {f}  {alg} {digest}" for f, (alg, digest) in s.published.items()]
        else:
            lines.append(f"{name}: {s.location}")
            lines += [f"  {Path(p).name}  sha256 {d}" for p, d in s.files.items()]
    return "\n".join(lines)
