"""Resumable evaluation: an attack over many images (AutoAttack on a whole test set takes hours)
keeps, after every finished batch, the predictions so far and the random-number state in one
small file, written atomically. Killed and started again with the same model, images and
attack, it goes on from the last finished batch and gives what an uninterrupted evaluation
gives: the batches start at the same images and draw from the same random state.

A file is keyed by everything its predictions depend on (``progress_key``: the attack's name,
ε, norm, seed and step, BPDA, and sha256 digests of the model's weights and of the images and
labels); a file whose key differs (another checkpoint, other images) is ignored and replaced.
``irat eval`` keeps these files in ``RUN/.eval_progress/`` and deletes them once the evaluation is
complete; ``irat compare`` and ``irat bench`` keep them (``keep_progress``), so that a finished
attack of unchanged weights on unchanged images is read back instead of run again.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor


def tensor_digest(*tensors: Tensor) -> str:
    """sha256 of the tensors' bytes (any dtype, any device), in order."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_digest(model: torch.nn.Module) -> str:
    """sha256 of a model's state dict (names, shapes, dtypes and values)."""
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor_digest(value).encode())
    return h.hexdigest()


def progress_key(**parts) -> str:
    """A short digest of ``parts`` (JSON-serialisable values)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def progress_keys(
    model: torch.nn.Module, x: Tensor, y: Tensor, images: dict[str, int], **settings
) -> dict[str, str]:
    """The key of each attack ``name`` run on the first ``images[name]`` of ``x``, ``y``: its
    name, ``settings`` (ε, norm, seed, ...), the model's weights and those images."""
    model_hash = model_digest(model)
    digests = {k: tensor_digest(x[:k], y[:k]) for k in set(images.values())}
    return {
        name: f"{_slug(name)}-{progress_key(attack=name, images=digests[k], model=model_hash, **settings)}"
        for name, k in images.items()
    }


def _slug(name: str) -> str:
    """The attack's name as a file-name prefix (``autoattack@1000`` → ``autoattack_1000``)."""
    return re.sub(r"[^a-z0-9.-]+", "_", name.lower())[:40]


@dataclass
class Saved:
    """``done`` images finished; ``predictions`` [done] long; the random states to go on with."""

    done: int
    predictions: Tensor
    cpu_rng: Tensor
    cuda_rng: Tensor | None


class Progress:
    """The progress file of one attack over one set of images: ``RUN/.eval_progress/<key>.pt``."""

    def __init__(self, folder: str | Path, key: str):
        self.path = Path(folder) / f"{key}.pt"
        self.key = key

    def load(self, device: torch.device) -> Saved | None:
        """The saved progress, or None (no file, another key, or a file that is not readable)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if state.get("key") != self.key:
                return None
            return Saved(
                done=int(state["done"]),
                predictions=state["predictions"].to(device),
                cpu_rng=state["cpu_rng"],
                cuda_rng=state.get("cuda_rng"),
            )
        except Exception:  # a foreign or damaged file: start this attack over
            return None

    def save(self, done: int, predictions: Tensor, device: torch.device) -> None:
        """After a finished batch: the first ``done`` predictions and the current random states."""
        from irat.training.checkpoint import atomic_write_bytes

        state = {
            "key": self.key,
            "done": done,
            "predictions": predictions[:done].cpu(),
            "cpu_rng": torch.get_rng_state(),
        }
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.path, buf.getvalue())

    @staticmethod
    def restore_rng(saved: Saved, device: torch.device) -> None:
        torch.set_rng_state(saved.cpu_rng)
        if device.type == "cuda" and saved.cuda_rng is not None:
            torch.cuda.set_rng_state(saved.cuda_rng, device)

    def clear(self) -> None:
        from irat.training.checkpoint import remove_temporaries

        self.path.unlink(missing_ok=True)
        if self.path.parent.is_dir():
            remove_temporaries(self.path.parent)
        try:
            self.path.parent.rmdir()  # only when empty
        except OSError:
            pass
