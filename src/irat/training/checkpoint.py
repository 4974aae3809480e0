"""Atomic files and safe checkpoints.

Every file a run writes goes through ``atomic_write_bytes``: a temporary file in the same folder,
flushed and fsynced, then ``os.replace``d over the target, so a killed process never leaves a
half-written checkpoint. Checkpoints are loaded with ``torch.load(weights_only=True)``, which
refuses to execute pickled code.

A write that fails (disk full, read-only folder, no permission) raises one ``WriteError`` that
names the file and the cause; the target keeps its previous contents and no temporary file is
left behind. ``check_writable`` finds an unwritable folder before any work is done.
"""

from __future__ import annotations

import errno
import io
import os
import re
import tempfile
from pathlib import Path

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)


class WriteError(OSError):
    """A file could not be written; the message names it, the cause and what to do. The file keeps
    its previous contents (atomic writes)."""

    def __init__(self, path: Path, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.path = path
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        if cause.errno == errno.ENOSPC or cause.errno == errno.EDQUOT:
            fix = "free some space on that disk"
        elif cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = "make the folder writable or write somewhere else (--out)"
        else:
            fix = "check the folder"
        self.message = (
            f"cannot write {path}: {reason}; {fix}. Nothing was half-written: "
            f"{path.name} keeps its previous contents, if it had any"
        )

    def __str__(self) -> str:
        return self.message


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename, fsync folder).
    ``WriteError`` when the disk is full or the folder is not writable."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it owner-only; give it the usual mode
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(path, e) from e
        raise


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files (``.NAME.XXXX.tmp``) that a process killed in the middle of
    ``atomic_write_bytes`` left in ``folder``; returns them. Call it only where no other irat
    process is writing."""
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def check_writable(folder: str | Path) -> None:
    """``WriteError`` now, before any work, if ``folder`` (created if missing) cannot take a file."""
    probe = Path(folder) / ".irat-write-check"
    atomic_write_bytes(probe, b"")
    probe.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save(path: str | Path, payload: dict) -> None:
    """Save a dict of tensors, numbers, strings and nested dicts/lists atomically."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint without executing pickled code; a clear error if it is unreadable or
    not a dict (what every irat checkpoint is)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, ...
        text = str(e)
        code = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if code is not None:
            detail = f"it asks to run {code.group(1)}, and irat never executes code from a checkpoint"
        else:
            detail = f"{type(e).__name__}: {text.strip().splitlines()[0] if text.strip() else ''}"
        raise ValueError(
            f"checkpoint {path} is unreadable or not an irat checkpoint ({detail}); "
            "delete it to start over, or resume from another run directory"
        ) from None
    if not isinstance(state, dict):
        raise ValueError(
            f"checkpoint {path} is not an irat checkpoint (it holds a {type(state).__name__}, not a dict "
            "with the model's weights); delete it to start over, or resume from another run directory"
        )
    return state


OWNER_KEYS = ("dataset", "model", "preprocess", "method", "objective", "weighting")


def owner(config) -> dict:
    """What a run's checkpoints belong to (stored with them as ``owner``): its dataset, model,
    preprocessing, method, objective and weighting scheme."""
    return {
        "dataset": config.data.dataset,
        "model": config.model.name,
        "preprocess": config.model.preprocess,
        "method": config.train.method,
        "objective": config.train.objective,
        "weighting": config.weighting.scheme,
    }


def restore(model: torch.nn.Module, state: dict, path: str | Path, config=None) -> None:
    """Load ``state["model"]`` into ``model``. ``ValueError`` with what differs when the checkpoint
    belongs to another run (its ``owner`` against ``config``'s) or holds another model's weights."""
    if not isinstance(state.get("model"), dict):
        raise ValueError(
            f"checkpoint {path} holds no model weights (keys: {sorted(state)}); it is not an irat "
            "checkpoint: delete it, or point to the run directory that wrote it"
        )
    stored = state.get("owner")
    if config is not None and isinstance(stored, dict):
        mine = owner(config)
        diff = [
            f"{k} {stored.get(k)!r} (this run: {mine[k]!r})" for k in OWNER_KEYS if stored.get(k) != mine[k]
        ]
        if diff:
            raise ValueError(
                f"checkpoint {path} belongs to another run: it was written for {', '.join(diff)}; put this "
                "run's own checkpoint back, or evaluate/resume the run directory that wrote it"
            )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = " ".join(line.strip() for line in first[1:3]) if len(first) > 1 else str(e)
        raise ValueError(
            f"checkpoint {path} holds the weights of another model ({detail[:300]}); it was not written "
            "for this run's model: check --model.name, or use the run directory that wrote it"
        ) from None
