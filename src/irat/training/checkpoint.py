"""Atomic files and safe checkpoints.

Every file a run writes goes through ``atomic_write_bytes``: a temporary file in the same folder,
flushed and fsynced, then ``os.replace``d over the target, so a killed process never leaves a
half-written checkpoint. Checkpoints are loaded with ``torch.load(weights_only=True)``, which
refuses to execute pickled code.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename, fsync folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it owner-only; give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save(path: str | Path, payload: dict) -> None:
    """Save a dict of tensors, numbers, strings and nested dicts/lists atomically."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint without executing pickled code; a clear error if it is unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, ...
        raise ValueError(
            f"checkpoint {path} is unreadable or not an irat checkpoint ({type(e).__name__}: {e}); "
            "delete it to start over, or resume from another run directory"
        ) from None
