"""Per-instance training state keyed by dataset index (docs/architecture.md, "stateful parts"):
ATTA's perturbation cache (``irat.attacks.atta``) and the adaptive targets
(``irat.objectives.adaptive_targets``) of the hard-instance paper's fast AT. Built by
``irat.training.assemble.instance_state`` for the methods that need it, handed to ``build_step``,
saved in ``last.pt`` and restored on resume, so a resumed run continues from the same cache and
targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from irat.attacks.atta import PerturbationCache
from irat.distributed import merge_rows
from irat.objectives.adaptive_targets import AdaptiveTargets


@dataclass
class InstanceState:
    """``cache``: ATTA's cached adversarial images (None when the method has none), reset every
    ``reset`` epochs (0: never; before the 1-based epochs reset, 2·reset, ...); ``targets``: the
    adaptive targets (None: labels)."""

    cache: PerturbationCache | None = None
    targets: AdaptiveTargets | None = None
    reset: int = 0

    def begin_epoch(self, epoch: int, generator: torch.Generator | None = None) -> None:
        """Before the 0-based ``epoch``: reset the cache when ``epoch + 1`` is a multiple of ``reset``."""
        if self.cache is not None and self.reset and (epoch + 1) % self.reset == 0:
            self.cache.reset(generator)

    def merge(self, visited: Tensor) -> None:
        """Under torchrun, at the end of an epoch: each process updated the rows of the dataset
        indices it trained on (``visited`` [max index + 1] bool); every process gets all rows."""
        for part, rows in ((self.cache, "store"), (self.targets, "t")):
            if part is not None:
                mine = visited[part.idx]
                getattr(part, rows).copy_(merge_rows(getattr(part, rows), mine))

    def state_dict(self) -> dict:
        parts = {"cache": self.cache, "targets": self.targets}
        return {name: part.state_dict() for name, part in parts.items() if part is not None}

    def load_state_dict(self, state: dict) -> None:
        for name, part in (("cache", self.cache), ("targets", self.targets)):
            if part is not None:
                if name not in state:
                    raise ValueError(f"the checkpoint holds no {name} for this method's per-instance state")
                part.load_state_dict(state[name])
