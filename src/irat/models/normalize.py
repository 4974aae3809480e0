"""Input normalisation owned by the model (METHODS.md §1: everything outside the model is in
[0, 1] pixel space, so ε stays in pixel units).

``Normalize`` computes ``(x − mean) / std`` per channel; ``Normalized`` is the wrapper every model
from ``irat.models.create`` is: ``Normalize`` as the first layer, then the architecture (``.net``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Normalize(nn.Module):
    """``(x − mean) / std`` with per-channel ``mean`` and ``std`` kept as buffers [1, C, 1, 1]
    (saved in the state dict, moved with ``.to``)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        mean_t = torch.as_tensor(tuple(mean), dtype=torch.float32)
        std_t = torch.as_tensor(tuple(std), dtype=torch.float32)
        if mean_t.ndim != 1 or mean_t.shape != std_t.shape:
            raise ValueError(
                f"mean {tuple(mean)} and std {tuple(std)} must be per-channel tuples of equal length"
            )
        if not bool((std_t > 0).all()):
            raise ValueError(f"std {tuple(std)} must be positive")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class Normalized(nn.Sequential):
    """``Normalize`` followed by the architecture ``net``: ``model(x) == model.net(model.normalize(x))``.
    With ``preprocess`` (a parameter-free ``irat.models.Preprocessing``, e.g. quantisation) that
    step comes first: ``model.net(model.normalize(model.preprocess(x)))``; the state dict keys
    stay the same.

    ``features(x)`` [B, F]: the penultimate-layer activations, the input of the final linear layer
    (the hard-instance paper's Figure 2b measures their ℓ2 norm per difficulty group). An
    architecture defines ``features`` itself, or is an ``nn.Sequential`` ending in that layer."""

    def __init__(self, normalize: Normalize, net: nn.Module, preprocess: nn.Module | None = None):
        layers = OrderedDict(preprocess=preprocess) if preprocess is not None else OrderedDict()
        super().__init__(OrderedDict(**layers, normalize=normalize, net=net))

    def features(self, x: Tensor) -> Tensor:
        z = self.normalize(self.preprocess(x) if "preprocess" in self._modules else x)
        if hasattr(self.net, "features"):
            return self.net.features(z)
        if isinstance(self.net, nn.Sequential) and isinstance(self.net[-1], nn.Linear):
            return self.net[:-1](z).flatten(1)
        raise TypeError(f"{type(self.net).__name__} exposes no penultimate features")
