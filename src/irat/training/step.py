"""One training step, as a straight line (DESIGN.md, "The data flow of one training step"):

    attack → adversarial forward → natural forward (only if needed) → SampleStats (detached,
    computed once) → [meta step of a learned weighting] → weights → targets → objective →
    backward → optimizer step.

BatchNorm modes (METHODS.md §1.1.4, "one mode per statistic"): the attack runs in eval mode; the
objective's forwards run in train mode. A statistic of the weights compares two distributions in
one mode: those read from the training forwards (PM_adv, PM_nat, VIR's p_y(x) and
KL(p(x) ‖ p(x'))) in train mode, those of the attack's path (κ, PM_dif) in eval mode. When only
the weighting needs natural logits (MAIL with PM_nat, VIR on the AT objective), they come from the
train-mode forward the TRADES objective would run, without a graph and with BatchNorm's running
statistics restored afterwards, so the extra forward neither costs a backward nor changes the
model.

Several adversarial variants per sample (LRAT/LSAT: ``x_adv`` [B, m, C, H, W]) are one forward
of the B·m images, so their logits, statistics and weights come out shaped [B, m, ...] and the
step stays the same line.

A learned weighting (BiLAW, ``irat.weighting.LearnedWeighting``) is the one stateful weighting:
its ``meta_step`` updates it once per step, before the weights are read, from this step's inputs
and logits (it differentiates through their graph without changing θ, ``.grad`` or the BatchNorm
buffers); the weights it then gives are detached like every other scheme's.

ATTA (the hard-instance paper's fast AT) starts the attack from a per-instance cache and writes
its result back (``_attack``); its adaptive targets replace the labels in the objective.

No host synchronisation happens here: the caller accumulates metrics on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from irat.attacks.atta import PerturbationCache
from irat.attacks.mode import kept_running_stats
from irat.distributed import global_draws, share
from irat.types import Attack, AttackResult, Batch, Objective, SampleStats


@dataclass(frozen=True)
class StepParts:
    """What stays fixed between steps. ``attack(model, x, y) -> AttackResult`` (None: plain
    training); ``needs_nat``: the objective or the weighting needs natural logits;
    ``stats_nat``: only the weighting needs them (no graph); ``weights(stats) -> w [B]``
    (detached, burn-in applied; [B, m + 1] for m variants, see ``irat.objectives.lrat``);
    ``objective(logits_nat, logits_adv, y, w) -> (loss, per_sample)``;
    ``meta_step(model, batch, adv, logits_nat, logits_adv, stats, lr)``: the update of a learned
    weighting (None for the formula schemes and during burn-in);
    ``cache``: ATTA's perturbation cache (the attack starts from it, ``x_start``, and its result is
    written back; None: the attack's own start); ``targets(stats) -> labels [B] or soft targets
    [B, n]`` for the objective (None: the labels)."""

    attack: Attack | None
    needs_nat: bool
    stats_nat: bool
    weights: Callable[[SampleStats], Tensor]
    objective: Objective
    meta_step: Callable[..., None] | None = None
    cache: PerturbationCache | None = None
    targets: Callable[[SampleStats], Tensor] | None = None


@dataclass(frozen=True)
class StepOutput:
    """``loss`` scalar (detached); ``weights`` [B] (or [B, m + 1]); ``stats`` of the step."""

    loss: Tensor
    weights: Tensor
    stats: SampleStats


def train_step(
    model: torch.nn.Module, batch: Batch, parts: StepParts, optimizer: torch.optim.Optimizer, epoch: int
) -> StepOutput:
    """Update ``model`` on ``batch`` once; the model is in train mode on entry and exit (the
    attack switches to eval mode internally and restores it)."""
    net = unwrap(model)  # attacks and the meta step use the module itself, not DDP's wrapper
    with global_draws(batch.total):  # under torchrun: the global batch's random starts, this shard
        adv = _attack(net, batch, parts)
    nat_for_weights = _stats_only(net, batch.x, parts)  # before the graphs save BatchNorm's buffers
    logits_adv = forward_variants(model, adv.x_adv, batch.x) if adv is not None else None
    logits_nat = model(batch.x) if parts.needs_nat else None
    stats = SampleStats(
        idx=batch.idx,
        y=batch.y,
        logits_adv=(logits_adv if logits_adv is not None else logits_nat).detach(),
        logits_nat=logits_nat.detach() if logits_nat is not None else nat_for_weights,
        steps_to_flip=adv.steps_to_flip if adv is not None else None,
        epoch=epoch,
        logits_first_wrong=adv.logits_first_wrong if adv is not None else None,
        logits_nat_eval=adv.logits_nat if adv is not None else None,
    )
    if parts.meta_step is not None:  # a learned weighting (BiLAW) learns from this step first
        parts.meta_step(net, batch, adv, logits_nat, logits_adv, stats, optimizer.param_groups[0]["lr"])
    w = parts.weights(stats)
    targets = parts.targets(stats) if parts.targets is not None else batch.y
    loss, _ = parts.objective(logits_nat, logits_adv, targets, w)
    optimizer.zero_grad(set_to_none=True)
    (loss * shard_share(batch)).backward()  # DDP averages: the mean over the global batch
    optimizer.step()
    return StepOutput(loss=loss.detach(), weights=w, stats=stats)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under DistributedDataParallel (``model`` itself without it)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def shard_share(batch: Batch) -> float:
    """``K · b_r / B`` for this process's ``b_r`` rows of a global batch of ``B`` over K processes
    (1.0 on one process and whenever the shards are equal): DDP averages the gradients of the K
    local means, so this factor makes the average the global batch's mean also when the last
    batch of an epoch splits unevenly. Every objective reduces by a plain mean over the batch."""
    return share(len(batch), batch.total)


def forward_variants(model: torch.nn.Module, x_adv: Tensor, x: Tensor) -> Tensor:
    """``model(x_adv)`` [B, n] when ``x_adv`` is shaped like ``x``; for m variants per sample,
    ``x_adv`` [B, m, ...] → one forward of the B·m images → logits [B, m, n]."""
    if x_adv.dim() == x.dim():
        return model(x_adv)
    return model(x_adv.flatten(0, 1)).unflatten(0, x_adv.shape[:2])


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
    """Natural logits for the weighting alone: no graph, train mode like the adversarial forward,
    BatchNorm's running statistics put back as they were (in place: so this runs before any
    forward whose graph saves those buffers)."""
    if not parts.stats_nat:
        return None
    with kept_running_stats(model), torch.no_grad():
        return model(x)
