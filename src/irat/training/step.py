"""One training step, as a straight line (DESIGN.md, "The data flow of one training step"):

    attack → adversarial forward → natural forward (only if needed) → SampleStats (detached,
    computed once) → weights → targets → objective → backward → optimizer step.

ATTA (the hard-instance paper's fast AT) starts the attack from a per-instance cache and writes
its result back (``_attack``); adaptive targets replace the labels in the objective.

When only the weighting needs natural logits (MAIL with PM_nat, VIR on the AT objective), they are
computed without a graph and with the model in eval mode, so that the extra forward neither
costs a backward nor moves the BatchNorm statistics.

No host synchronisation happens here: the caller accumulates metrics on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from irat.attacks.atta import PerturbationCache
from irat.attacks.mode import eval_mode
from irat.types import Attack, AttackResult, Batch, Objective, SampleStats


@dataclass(frozen=True)
class StepParts:
    """What stays fixed between steps. ``attack(model, x, y) -> AttackResult`` (None: plain
    training); ``needs_nat``: the objective or the weighting needs natural logits;
    ``stats_nat``: only the weighting needs them (no graph); ``weights(stats) -> w [B]``
    (detached, burn-in applied); ``objective(logits_nat, logits_adv, y, w) -> (loss, per_sample)``;
    ``cache``: ATTA's perturbation cache (the attack starts from it, ``x_start``, and its result is
    written back; None: the attack's own start); ``targets(stats) -> labels [B] or soft targets
    [B, n]`` for the objective (None: the labels)."""

    attack: Attack | None
    needs_nat: bool
    stats_nat: bool
    weights: Callable[[SampleStats], Tensor]
    objective: Objective
    cache: PerturbationCache | None = None
    targets: Callable[[SampleStats], Tensor] | None = None


@dataclass(frozen=True)
class StepOutput:
    """``loss`` scalar (detached); ``weights`` [B]; ``stats`` of the step."""

    loss: Tensor
    weights: Tensor
    stats: SampleStats


def train_step(
    model: torch.nn.Module, batch: Batch, parts: StepParts, optimizer: torch.optim.Optimizer, epoch: int
) -> StepOutput:
    """Update ``model`` on ``batch`` once; the model is in train mode on entry and exit (the
    attack switches to eval mode internally and restores it)."""
    adv = _attack(model, batch, parts)
    logits_adv = model(adv.x_adv) if adv is not None else None
    logits_nat = model(batch.x) if parts.needs_nat else None
    stats = SampleStats(
        idx=batch.idx,
        y=batch.y,
        logits_adv=(logits_adv if logits_adv is not None else logits_nat).detach(),
        logits_nat=logits_nat.detach() if logits_nat is not None else _stats_only(model, batch.x, parts),
        steps_to_flip=adv.steps_to_flip if adv is not None else None,
        epoch=epoch,
        logits_first_wrong=adv.logits_first_wrong if adv is not None else None,
    )
    w = parts.weights(stats)
    targets = parts.targets(stats) if parts.targets is not None else batch.y
    loss, _ = parts.objective(logits_nat, logits_adv, targets, w)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return StepOutput(loss=loss.detach(), weights=w, stats=stats)


def _attack(model: torch.nn.Module, batch: Batch, parts: StepParts) -> AttackResult | None:
    """The training attack on ``batch``; with ATTA's cache it starts from the cached examples of
    ``batch.idx`` (in the batch's crop/flip view) and its result goes back into the cache."""
    if parts.attack is None:
        return None
    if parts.cache is None:
        return parts.attack(model, batch.x, batch.y)
    adv = parts.attack(model, batch.x, batch.y, x_start=parts.cache.read(batch))
    parts.cache.write(batch, adv.x_adv)
    return adv


def _stats_only(model: torch.nn.Module, x: Tensor, parts: StepParts) -> Tensor | None:
    """Natural logits for the weighting alone: no graph, eval mode (BatchNorm untouched)."""
    if not parts.stats_nat:
        return None
    with eval_mode(model), torch.no_grad():
        return model(x)
