"""Extra training data for adversarial fine-tuning (the hard-instance paper, Section 6.2;
METHODS.md §4.12): half of every batch comes from it (``irat.data.mixed.MixedLoader``).

``data.extra`` names it:

* ``heldout``: the images of the training file that the run uses for neither its training nor
  its validation split (train on ``data.limit`` images, fine-tune with the rest);
* a registered dataset name (``irat.data.names()``): that dataset's training images;
* a path to an .npz file with images ``x`` and labels ``y`` (``irat.data.npz.read_extra_npz``).

The images must have the training data's shape and labels in its range; anything else (no
labels, another shape, a label out of range) stops with one ``DataError`` before training.
Extra images get dataset indices that no training or validation image has: their own
training-file index for ``heldout``, else ``offset + position`` past the largest index in use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from irat.data.errors import DataError
from irat.data.split import Split

HELDOUT = "heldout"


def load_extra(source: str, data) -> Split:
    """The extra split that ``source`` names for ``data`` (an ``irat.data.Dataset``), on the CPU."""
    import irat.data as D
    from irat.data.npz import read_extra_npz

    spec = data.spec
    used = torch.cat([data.train.idx.cpu(), data.val.idx.cpu()])
    offset = int(used.max()) + 1 if len(used) else 0
    if source == HELDOUT:
        full = D.load(spec.name, root=data.root, val_size=0, seed=data.seed, download=False)
        keep = ~torch.isin(full.train.idx, used)
        if not bool(keep.any()):
            raise DataError(
                "data.extra=heldout: the run already uses every training image; train it on a subset "
                "(data.limit) to hold the rest out for fine-tuning"
            )
        return full.train.subset(torch.nonzero(keep).flatten())
    if Path(source).suffix == ".npz" or Path(source).is_file():
        x, y = read_extra_npz(Path(source))
        where = source
    elif source in D.names():
        other = D.load(source, val_size=0)
        x, y, where = other.train.x, other.train.y, f"dataset {source}"
    else:
        raise DataError(
            f"data.extra={source!r} is neither 'heldout', a dataset name ({', '.join(D.names())}) nor an "
            ".npz file"
        )
    x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    y = torch.as_tensor(np.asarray(y)).long()
    if tuple(x.shape[1:]) != spec.shape:
        raise DataError(
            f"extra data ({where}) has images of shape {tuple(x.shape[1:])}; the training data's are "
            f"{spec.shape}"
        )
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= spec.num_classes):
        raise DataError(
            f"extra data ({where}) has labels {int(y.min())}..{int(y.max())}; the training data has "
            f"classes 0..{spec.num_classes - 1}"
        )
    if not len(y):
        raise DataError(f"extra data ({where}) holds no images")
    return Split(x, y, torch.arange(len(y)) + offset, "extra")
