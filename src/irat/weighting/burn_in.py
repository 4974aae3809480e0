"""Burn-in (METHODS.md §1.1.3): during epochs ``e < burn_in`` every weight is exactly 1 and no
normalisation is applied, so a weighted objective equals its unweighted base bit-for-bit.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from irat.types import SampleStats
from irat.weighting.uniform import uniform


def with_burn_in(
    scheme: Callable[[SampleStats], Tensor],
    burn_in: int,
    during: Callable[[SampleStats], Tensor] | None = None,
) -> Callable[[SampleStats], Tensor]:
    """Wrap ``scheme(stats) -> w [B]`` so that it returns all-ones before epoch ``burn_in``
    (``during(stats)`` instead, for a scheme whose weights are not one per sample: LRAT's ω ≡ 1 on
    every variant); weights are always detached."""

    def weights(stats: SampleStats) -> Tensor:
        if stats.epoch < burn_in:
            return uniform(stats.y) if during is None else during(stats).detach()
        return scheme(stats).detach()

    return weights
