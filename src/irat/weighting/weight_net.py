"""BiLAW's weight network ω_μ and what it reads (Holtz et al., "Learning Sample Reweighting for
Adversarial Robustness", seed 000; METHODS.md §4.11).

    ω_μ(Δ) = sigmoid(Linear_k(ReLU(… ReLU(Linear_1(Δ)) …)))  ∈ (0, 1)

with hidden widths ``hidden`` (the paper: one layer of 128; its Table 6 ablation: 64, 256 and
64-64). Per batch the weights are ``w_i = ω_μ(Δ_i) / Σ_j ω_μ(Δ_j)`` (positive, summing to 1); the
training step uses the equivalent mean-one form ``normalize_to_batch`` (§1.1.2).

Inputs (``INPUTS``; the paper's Table 8 ablation), all detached, from logits [B, n] and labels [B]:

* ``mc-margin`` (default): the multi-class margin ``Δ_j = p_y − p_j`` [B, n] (Def. 3), on the
  natural input (``margin_on="nat"``, DECISION #16) or on x' (``"adv"``);
* ``margin``: the class-unaware margin ``p_y − max_{j≠y} p_j`` [B, 1] (Def. 2), natural or x';
* ``adv-loss``: the adversarial loss ``ce(f(x'), y)`` [B, 1];
* ``loss-diff``: ``ce(f(x'), y) − ce(f(x), y)`` [B, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from irat import losses
from irat.weighting.normalize import normalize_to_batch

INPUTS = ("mc-margin", "margin", "adv-loss", "loss-diff")
MARGIN_INPUTS = ("mc-margin", "margin")


class WeightNet(nn.Module):
    """``ω_μ``: ``Linear(in_features, h_1) → ReLU → … → Linear(h_k, 1) → sigmoid``.

    ``in_features``: the number of classes for the multi-class margin, 1 for the scalar inputs.
    ``hidden``: the hidden widths, e.g. ``(128,)`` (default), ``(64, 64)``.
    ``forward(features [B, in_features]) -> ω [B]`` in (0, 1)."""

    def __init__(self, in_features: int, hidden: Sequence[int] = (128,)):
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if int(in_features) < 1 or not hidden or any(h < 1 for h in hidden):
            raise ValueError(
                f"WeightNet needs in_features >= 1 and at least one hidden width >= 1, got "
                f"in_features={in_features}, hidden={hidden}"
            )
        widths = (int(in_features), *hidden)
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], 1))
        self.layers = nn.Sequential(*layers)
        self.in_features, self.hidden = int(in_features), hidden

    def forward(self, features: Tensor) -> Tensor:
        return torch.sigmoid(self.layers(features)).squeeze(1)

    def normalized(self, features: Tensor) -> Tensor:
        """``w_i = ω(Δ_i) / Σ_j ω(Δ_j)`` [B]: positive, summing to 1, differentiable in μ (the
        mean-one ``normalize_to_batch`` divided by B)."""
        return normalize_to_batch(self(features), keep_graph=True) / features.shape[0]


def input_size(kind: str, num_classes: int) -> int:
    """The width of input ``kind``: ``num_classes`` for the multi-class margin, else 1."""
    if kind not in INPUTS:
        raise ValueError(f"unknown BiLAW input {kind!r}; choose one of: {', '.join(INPUTS)}")
    return num_classes if kind == "mc-margin" else 1


def weight_inputs(
    kind: str, y: Tensor, logits_adv: Tensor, logits_nat: Tensor | None, margin_on: str = "nat"
) -> Tensor:
    """The detached input [B, d] of the weight network (see the module docstring): ``kind`` ∈
    ``INPUTS``; ``margin_on`` ∈ {nat, adv} picks the logits of the margin inputs."""
    if kind not in INPUTS:
        raise ValueError(f"unknown BiLAW input {kind!r}; choose one of: {', '.join(INPUTS)}")
    if margin_on not in ("nat", "adv"):
        raise ValueError(f"margin_on={margin_on!r}; choose nat or adv")
    if needs_natural(kind, margin_on) and logits_nat is None:
        raise ValueError(f"the BiLAW input {kind!r} (margin_on={margin_on}) needs the natural logits")
    z_adv = logits_adv.detach()
    z_nat = logits_nat.detach() if logits_nat is not None else None
    if kind in MARGIN_INPUTS:
        p = (z_nat if margin_on == "nat" else z_adv).softmax(1)
        return losses.mc_margin(p, y) if kind == "mc-margin" else losses.margin(p, y)[:, None]
    if kind == "adv-loss":
        return losses.ce(z_adv, y)[:, None]
    return (losses.ce(z_adv, y) - losses.ce(z_nat, y))[:, None]


def needs_natural(kind: str, margin_on: str = "nat") -> bool:
    """Whether input ``kind`` reads the natural logits."""
    return kind == "loss-diff" or (kind in MARGIN_INPUTS and margin_on == "nat")
