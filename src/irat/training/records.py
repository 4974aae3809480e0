"""Per-instance record: for every training image and epoch, its weight, adversarial loss,
true-class probability at x', ``steps_to_flip`` (−1 when the attack did not record it) and the
probabilistic margins ``p_y − max_{j≠y} p_j`` at x (``margin_nat``; NaN when the step computed no
natural logits) and at x' (``margin_adv``). For LRAT/LSAT (m variants per instance) the weight is
the sum of the variants' normalised weights, ``data_coef`` the data term's coefficient c, and loss,
p_true, margin_adv and the training accuracy are taken at the instance's most adversarial variant
(``worst_variant``). ``data_coef`` is NaN for the other methods.

Values accumulate on the device in tensors indexed by dataset index (no host sync in the step)
and are written once per epoch as ``records/epoch_XXX.npz`` (compressed float32/int16 arrays
aligned with ``idx``), the input of the analysis plots and the difficulty metric.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from irat.distributed import merge_rows
from irat.losses import pm
from irat.training.checkpoint import atomic_write_bytes

FIELDS = ("weight", "loss", "p_true", "steps_to_flip", "margin_nat", "margin_adv", "data_coef")
OPTIONAL_FIELDS = ("margin_nat", "margin_adv", "data_coef")
"""Fields that records written by earlier versions (or by other methods) may lack (read as NaN)."""


def worst_variant(logits: Tensor, y: Tensor) -> Tensor:
    """Logits [B, n] as they are; for m variants [B, m, n], per sample the variant with the
    smallest probabilistic margin p_y − max_{k≠y} p_k (misclassified whenever any variant is)."""
    if logits.dim() == 2:
        return logits
    b, m, n = logits.shape
    t = pm(logits.reshape(b * m, n), y[:, None].expand(b, m).reshape(-1)).view(b, m)
    return logits[torch.arange(b, device=y.device), t.argmin(1)]


def instance_weight(w: Tensor) -> tuple[Tensor, Tensor | None]:
    """(weight [B], data-term coefficient [B] or None) of the step's weights: ``w`` [B] itself, or
    for LRAT's [B, m + 1] the sum of the m variants' weights and column m."""
    if w.dim() == 1:
        return w, None
    return w[:, :-1].sum(1), w[:, -1]


class InstanceRecorder:
    """``idx`` [N]: the dataset indices of the training split, on the training device; ``y`` [N]
    their labels (stored with every epoch so that the analysis needs no dataset)."""

    def __init__(self, idx: Tensor, y: Tensor | None = None):
        self.idx = idx
        self.y = y
        size = int(idx.max()) + 1 if len(idx) else 0
        self.values = {f: torch.full((size,), float("nan"), device=idx.device) for f in FIELDS}

    def log(self, idx: Tensor, **values: Tensor | None) -> None:
        """Store detached per-sample values [B] at dataset indices ``idx`` [B]."""
        for name, v in values.items():
            if v is not None:
                self.values[name][idx] = v.detach().float()

    def merge(self) -> None:
        """Under torchrun: every process's values (each index is trained on by one process in an
        epoch; its non-NaN entries are the ones it logged), one all-reduce per field."""
        for name, v in self.values.items():
            self.values[name] = merge_rows(v, ~torch.isnan(v))

    def clear(self) -> None:
        """Reset every value to NaN for the next epoch (what ``save`` does after writing)."""
        for v in self.values.values():
            v.fill_(float("nan"))

    def save(self, path: str | Path, epoch: int) -> None:
        """Write this epoch's arrays, aligned with ``idx``, then reset them to NaN."""
        arrays = {f: self.values[f][self.idx].cpu().numpy() for f in FIELDS}
        stf = arrays["steps_to_flip"]
        arrays["steps_to_flip"] = np.where(np.isnan(stf), -1, stf).astype(np.int16)
        buf = io.BytesIO()
        if self.y is not None:
            arrays["y"] = self.y.cpu().numpy().astype(np.int64)
        np.savez_compressed(buf, idx=self.idx.cpu().numpy(), epoch=np.int64(epoch), **arrays)
        atomic_write_bytes(path, buf.getvalue())
        for v in self.values.values():
            v.fill_(float("nan"))


def load_record(path: str | Path) -> dict[str, np.ndarray]:
    """Read one epoch's record (no pickled objects allowed)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
