"""One training step, as a straight line (DESIGN.md, "The data flow of one training step"):

    attack → adversarial forward → natural forward (only if needed) → SampleStats (detached,
    computed once) → [meta step of a learned weighting] → weights → objective → backward →
    optimizer step.

When only the weighting needs natural logits (MAIL with PM_nat, VIR on the AT objective), they are
computed without a graph and with the model in eval mode, so that the extra forward neither
costs a backward nor moves the BatchNorm statistics.

A learned weighting (BiLAW, ``irat.weighting.LearnedWeighting``) is the one stateful weighting:
its ``meta_step`` updates it once per step, before the weights are read, from this step's inputs
and logits (it differentiates through their graph without changing θ, ``.grad`` or the BatchNorm
buffers); the weights it then gives are detached like every other scheme's.

No host synchronisation happens here: the caller accumulates metrics on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from irat.attacks.mode import eval_mode
from irat.types import Attack, Batch, Objective, SampleStats


@dataclass(frozen=True)
class StepParts:
    """What stays fixed between steps. ``attack(model, x, y) -> AttackResult`` (None: plain
    training); ``needs_nat``: the objective or the weighting needs natural logits;
    ``stats_nat``: only the weighting needs them (no graph); ``weights(stats) -> w [B]``
    (detached, burn-in applied); ``objective(logits_nat, logits_adv, y, w) -> (loss, per_sample)``;
    ``meta_step(model, batch, adv, logits_nat, logits_adv, stats, lr)``: the update of a learned
    weighting (None for the formula schemes and during burn-in)."""

    attack: Attack | None
    needs_nat: bool
    stats_nat: bool
    weights: Callable[[SampleStats], Tensor]
    objective: Objective
    meta_step: Callable[..., None] | None = None


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
    adv = parts.attack(model, batch.x, batch.y) if parts.attack is not None else None
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
    if parts.meta_step is not None:  # a learned weighting (BiLAW) learns from this step first
        parts.meta_step(model, batch, adv, logits_nat, logits_adv, stats, optimizer.param_groups[0]["lr"])
    w = parts.weights(stats)
    loss, _ = parts.objective(logits_nat, logits_adv, batch.y, w)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return StepOutput(loss=loss.detach(), weights=w, stats=stats)


def _stats_only(model: torch.nn.Module, x: Tensor, parts: StepParts) -> Tensor | None:
    """Natural logits for the weighting alone: no graph, eval mode (BatchNorm untouched)."""
    if not parts.stats_nat:
        return None
    with eval_mode(model), torch.no_grad():
        return model(x)
