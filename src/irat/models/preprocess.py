"""Input preprocessing that a model declares, so that attacks can see through it with BPDA.

A defence that puts a non-differentiable step in front of the network (quantisation, JPEG,
thresholding, median filtering) has zero or useless input gradients: PGD cannot move, and the
robust accuracy it reports is an artefact (gradient masking). BPDA, the Backward Pass
Differentiable Approximation of Athalye, Carlini & Wagner (2018, "Obfuscated gradients give a
false sense of security"), keeps the forward pass exact and replaces the step by the identity in
the backward pass:

    forward:  g(x)                    backward:  ∂g/∂x := I
    written:  x + (g(x) − x).detach()

The seam: a model declares its preprocessing by using a ``Preprocessing`` module (anywhere
inside it, usually first). ``irat.evaluate(..., bpda=True)`` and ``irat eval --bpda`` run every
attack inside ``bpda(model)``, which switches all of them to the identity backward; a model that
declares none is refused with a message saying how to declare it. Training never uses BPDA.

* ``Preprocessing(fn)`` wraps any function ``fn(x) -> x'`` of the same shape, in [0, 1];
  subclasses override ``transform``;
* ``Quantize(levels)``: ``round(x·(L−1))/(L−1)``, L grey levels per channel (``model.preprocess:
  quantize-L`` in a config).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class Preprocessing(nn.Module):
    """A preprocessing step ``x [B, C, H, W] in [0, 1] -> same shape``. ``bpda`` (default False):
    the backward pass is the identity instead of the step's own gradient (the forward is
    unchanged); set it through ``bpda(model)``."""

    def __init__(self, fn: Callable[[Tensor], Tensor] | None = None):
        super().__init__()
        self.fn = fn
        self.bpda = False

    def transform(self, x: Tensor) -> Tensor:
        if self.fn is None:
            raise NotImplementedError("pass a function or override transform()")
        return self.fn(x)

    def forward(self, x: Tensor) -> Tensor:
        out = self.transform(x)
        if self.bpda and torch.is_grad_enabled() and x.requires_grad:
            return x + (out - x).detach()  # forward: out; backward: identity
        return out


class Quantize(Preprocessing):
    """``round(x·(L−1)) / (L−1)``: ``levels`` = L ≥ 2 grey levels per channel. Its gradient is
    zero almost everywhere: the textbook gradient-masking defence."""

    def __init__(self, levels: int):
        super().__init__()
        if int(levels) != levels or levels < 2:
            raise ValueError(f"quantize levels={levels!r} must be an integer >= 2")
        self.levels = int(levels)

    def transform(self, x: Tensor) -> Tensor:
        k = self.levels - 1
        return torch.round(x * k) / k

    def extra_repr(self) -> str:
        return f"levels={self.levels}"


_QUANTIZE = re.compile(r"quantize-(\d+)")


def parse_preprocess(name: str | None) -> Preprocessing | None:
    """The step a config names: None or ``"none"`` → None; ``"quantize-L"`` → ``Quantize(L)``.
    ``ValueError`` for anything else."""
    if name is None or name == "none":
        return None
    m = _QUANTIZE.fullmatch(name.strip().lower())
    if m is None or int(m.group(1)) < 2:
        raise ValueError(
            f"model.preprocess={name!r} is not valid; choose none or quantize-L with L >= 2 grey levels "
            "(e.g. quantize-8)"
        )
    return Quantize(int(m.group(1)))


def preprocessing_modules(model: nn.Module) -> list[Preprocessing]:
    """The ``Preprocessing`` modules inside ``model``."""
    return [m for m in model.modules() if isinstance(m, Preprocessing)]


@contextmanager
def bpda(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """``with bpda(model): ...``: every ``Preprocessing`` inside ``model`` uses the identity in
    the backward pass, then each gets its previous setting back. ``ValueError`` when the model
    declares none (``enabled=False``: a no-op)."""
    if not enabled:
        yield model
        return
    steps = preprocessing_modules(model)
    if not steps:
        raise ValueError(
            "--bpda needs a model that declares its non-differentiable preprocessing: wrap the step "
            "as irat.models.Preprocessing(fn) (or use model.preprocess=quantize-L) inside the model; "
            "this model declares none, so BPDA would change nothing"
        )
    before = [m.bpda for m in steps]
    for m in steps:
        m.bpda = True
    try:
        yield model
    finally:
        for m, flag in zip(steps, before):
            m.bpda = flag
