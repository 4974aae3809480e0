"""Threat models: the ℓ∞ and ℓ2 balls intersected with the [0, 1] box (METHODS.md §1, §1.1.6,
§3.1). Written once; every attack steps, starts and projects through these classes.

* projection Π (always project first, then clip):
  ℓ∞: ``x' ← min(max(x', x − ε), x + ε)``, then ``clip(x', 0, 1)``;
  ℓ2: ``δ ← δ · min(1, ε / ‖δ‖₂)`` per sample, then ``clip(x + δ, 0, 1)``.
* step: ℓ∞ ``x' + α · sign(g)``; ℓ2 ``x' + α · g / (‖g‖₂ + 1e-12)`` (per-sample normalisation).
* random starts, ``x⁰ = Π(x + δ⁰)``:
  ``uniform`` ℓ∞ ``δ⁰ ~ U[−ε, ε]^d``; ℓ2 ``δ⁰ = ε · u · g / ‖g‖₂`` with ``g ~ N(0, I)``,
  ``u ~ U(0, 1)`` (the spec's formula); ``gauss_small`` ``δ⁰ = 0.001 · N(0, I)`` (TRADES);
  ``none`` ``δ⁰ = 0``. The start is projected too, so that every iterate (also x⁰ of a K = 0
  attack, and every start at ε = 0) lies in the threat model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from irat.distributed import draw

STARTS = ("uniform", "gauss_small", "none")
NORMS = ("linf", "l2")
GAUSS_SMALL_STD = 0.001


def gaussian(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise of ``shape``, dtype and device of ``like``, from ``generator``."""
    device = generator.device if generator is not None else like.device
    return draw(torch.randn, shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _rand(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else like.device
    return draw(torch.rand, shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _l2(v: Tensor) -> Tensor:
    """Per-sample ℓ2 norm, shaped [B, 1, ..., 1] to broadcast against ``v``."""
    return v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))


class Threat:
    """An ε-ball of norm ``norm`` intersected with [0, 1]^d. Subclasses implement
    ``_uniform``, ``step`` and ``_shrink``."""

    norm = ""

    def __init__(self, eps: float):
        eps = float(eps)
        if not eps >= 0:  # also rejects NaN
            raise ValueError(f"eps={eps} must be >= 0")
        self.eps = eps

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps})"

    def random_start(
        self, x: Tensor, kind: str = "uniform", generator: torch.Generator | None = None
    ) -> Tensor:
        """The start x⁰ = Π(x + δ⁰) of kind ``uniform``, ``gauss_small`` or ``none``."""
        if kind == "none":
            return x.detach().clone()
        if kind == "uniform":
            delta = self._uniform(x, generator)
        elif kind == "gauss_small":
            delta = GAUSS_SMALL_STD * gaussian(x.shape, x, generator)
        else:
            raise ValueError(f"unknown random start {kind!r}; valid: {', '.join(STARTS)}")
        return self.project(x.detach() + delta, x)

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Π: onto the ε-ball around ``x`` first, then clip to [0, 1]."""
        return (x + self._shrink(x_adv - x)).clamp(0.0, 1.0)

    def step(self, x_adv: Tensor, grad: Tensor, step_size: float) -> Tensor:
        raise NotImplementedError

    def _uniform(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def _shrink(self, delta: Tensor) -> Tensor:
        raise NotImplementedError

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Per-sample ‖x_adv − x‖ in this norm, [B]."""
        raise NotImplementedError


class Linf(Threat):
    """``{x' : ‖x' − x‖∞ ≤ ε} ∩ [0, 1]^d``."""

    norm = "linf"

    def step(self, x_adv: Tensor, grad: Tensor, step_size: float) -> Tensor:
        return x_adv + step_size * grad.sign()

    def _uniform(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return (2 * _rand(x.shape, x, generator) - 1) * self.eps

    def _shrink(self, delta: Tensor) -> Tensor:
        return delta.clamp(-self.eps, self.eps)

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return (x_adv - x).flatten(1).abs().amax(1)


class L2(Threat):
    """``{x' : ‖x' − x‖₂ ≤ ε} ∩ [0, 1]^d`` (norms per sample over all of C·H·W)."""

    norm = "l2"

    def step(self, x_adv: Tensor, grad: Tensor, step_size: float) -> Tensor:
        return x_adv + step_size * grad / (_l2(grad) + 1e-12)

    def _uniform(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        g = gaussian(x.shape, x, generator)
        u = _rand((x.shape[0],), x, generator).view(-1, *([1] * (x.dim() - 1)))
        return self.eps * u * g / (_l2(g) + 1e-12)

    def _shrink(self, delta: Tensor) -> Tensor:
        # min(1, ε / ‖δ‖); the 1e-12 keeps ε = 0, δ = 0 at 0 instead of 0/0.
        return delta * (self.eps / (_l2(delta) + 1e-12)).clamp(max=1.0)

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return (x_adv - x).flatten(1).norm(dim=1)


def threat(norm: str, eps: float) -> Threat:
    """``threat("linf" | "l2", eps)``; the norm name is case-insensitive (``Linf``, ``L2``)."""
    key = str(norm).lower()
    if key == "linf":
        return Linf(eps)
    if key == "l2":
        return L2(eps)
    raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
