"""ATTA's per-instance perturbation cache (Zheng et al. 2020, "Efficient adversarial training with
transferable adversarial examples"; the fast AT of the hard-instance paper, Algorithm 1;
METHODS.md §3.7).

One adversarial image per training instance, keyed by dataset index, on the zero-padded canvas
of the random crop (``padding`` pixels on every side; the image itself when there is no crop).
Each mini-batch:

1. ``read(batch)``: the cached canvases of ``batch.idx``, cropped and flipped with the batch's own
   draws (``batch.crop``, ``batch.flip``), i.e. the same view as the natural ``batch.x``;
2. the attack takes its step(s) from there, projecting around ``batch.x``;
3. ``write(batch, x_adv)``: the result un-flipped and pasted back at its crop offset.

``reset(generator)`` sets every canvas to ``Π(x_pad + 0.001·N(0, I))`` (the initial state, and
ATTA's reset every ``hard.reset`` epochs). Every write is the output of a projection around the
augmented natural image, so the cache stays inside the ε-ball of the padded natural image
(outside the image, padding pixels may hold up to ε).

Shapes: ``idx`` [N] dataset indices, ``x`` [N, C, H, W] natural images of the training split;
the cache ``store`` [N, C, H + 2p, W + 2p] on the split's device. ``state_dict`` holds ``store``
and ``idx`` (checkpointed, so a resumed run continues from the same cache).
"""

from __future__ import annotations

import torch
from torch import Tensor

from irat.attacks.threat import GAUSS_SMALL_STD, gaussian, threat
from irat.data.augmentation import pad, paste, view
from irat.data.split import index_slots
from irat.types import Batch


class PerturbationCache:
    """The cached adversarial images of one training split (see the module docstring)."""

    def __init__(
        self,
        idx: Tensor,
        x: Tensor,
        *,
        padding: int,
        eps: float,
        norm: str = "linf",
        generator: torch.Generator | None = None,
    ):
        self.idx, self.x, self.padding = idx, x, int(padding)
        self.size = tuple(x.shape[2:])
        self.ball = threat(norm, eps)
        self.slot = index_slots(idx)
        self.store = torch.empty(
            (len(idx), x.shape[1], self.size[0] + 2 * self.padding, self.size[1] + 2 * self.padding),
            dtype=x.dtype,
            device=x.device,
        )
        self.reset(generator)

    def reset(self, generator: torch.Generator | None = None) -> None:
        """Every canvas to ``Π(x_pad + 0.001·N(0, I))`` around the padded natural image."""
        natural = pad(self.x, self.padding)
        noise = GAUSS_SMALL_STD * gaussian(natural.shape, natural, generator)
        self.store.copy_(self.ball.project(natural + noise, natural))

    def read(self, batch: Batch) -> Tensor:
        """The cached adversarial images of ``batch`` [B, C, H, W] in its crop/flip view."""
        return view(self.store[self.slot[batch.idx]], self.size, batch.crop, batch.flip)

    def write(self, batch: Batch, x_adv: Tensor) -> None:
        """Store ``x_adv`` [B, C, H, W] (in the batch's view) back on the instances' canvases."""
        rows = self.slot[batch.idx]
        self.store[rows] = paste(
            self.store[rows], x_adv.detach().to(self.store.dtype), batch.crop, batch.flip
        )

    def state_dict(self) -> dict:
        return {"store": self.store, "idx": self.idx}

    def load_state_dict(self, state: dict) -> None:
        if not torch.equal(state["idx"].to(self.idx.device), self.idx):
            raise ValueError("the checkpoint's perturbation cache belongs to another training split")
        self.store.copy_(state["store"])
