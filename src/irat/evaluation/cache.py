"""``AttackCache``: the per-sample correctness of each finished attack, on disk, so that a killed
evaluation (``irat bench``, ``irat compare``) continues with the attacks it had not finished.

One file per attack in ``directory``: ``<name>-<hash>.pt`` holding the key it was computed under
and the bool tensor [images] that ``correct_under`` returned. The key is everything the result
depends on: the model's weights (``model`` below: a fingerprint such as the checkpoint file's
sha256), the attack's name with its step and restarts, ε, the norm, the step size the name does
not give, the number of images, the seed, and the number of test images evaluated. An entry
whose key differs (another checkpoint, another ε) is computed again and replaces the old one.
Files are written atomically and loaded with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import torch
from torch import Tensor

from irat.training.checkpoint import atomic_write_bytes


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of the file at ``path``: a checkpoint's fingerprint."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class AttackCache:
    """Finished attacks of one model in ``directory``; ``model``: a string that changes whenever
    the weights do (the checkpoint's sha256)."""

    def __init__(self, directory: str | Path, model: str):
        self.directory = Path(directory)
        self.model = str(model)

    def _key(self, key: dict) -> str:
        return json.dumps({"model": self.model, **key}, sort_keys=True, default=str)

    def _path(self, key: dict) -> Path:
        slug = re.sub(r"[^a-z0-9._-]+", "_", str(key.get("attack", "entry")).lower())[:40]
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return self.directory / f"{slug}-{digest}.pt"

    def get(self, key: dict) -> Tensor | None:
        """The stored tensor computed under ``key`` for this model, or None."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a foreign or damaged file: compute again
            return None
        if not isinstance(entry, dict) or entry.get("key") != self._key(key):
            return None
        return entry["value"]

    def put(self, key: dict, value: Tensor) -> None:
        buf = io.BytesIO()
        torch.save({"key": self._key(key), "value": value.detach().cpu()}, buf)
        atomic_write_bytes(self._path(key), buf.getvalue())
