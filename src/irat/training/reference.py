"""The plain reference step: one adversarial-training step written the way the papers' public code
is (GAIRAT, MAIL, VIR, MART), to check and to measure ``train_step`` against.

It is the oracle of ``tests/test_reference.py`` (the optimized step and this one give the same
loss, weights and updated parameters on a fixed batch) and the naive loop of
``benchmarks/throughput.py``. It computes the same math as ``train_step``; only the engineering
differs:

* stock layers (``stock_copy``: irat's ``Conv2d`` with its native input-gradient kernel becomes
  ``nn.Conv2d``);
* ``model.eval()`` / ``model.train()`` toggled around the attack;
* a PGD loop that calls ``loss.backward()`` on the model, so every attack step also computes the
  parameter gradients it never uses (irat: ``torch.autograd.grad`` on the input, parameters
  frozen);
* the natural forward for the weights alone runs in train mode without a graph, as the TRADES
  loss would run it, and the BatchNorm buffers are copied back afterwards, as irat's does.

Scope: ℓ∞ PGD with the ``ce``, ``kl`` or ``cw`` loss, uniform or ``gauss_small`` start, and the κ
path record (GAIRAT); LRAT/LSAT with PGD and CW variants, each variant attacked and forwarded on
its own as Algorithm 1 of the LRAT paper loops over the attacks. FAT's early-stopped attack,
MAIL's first-wrong margin and LRAT's SAA (APGD) have no reference here.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor

from irat.models.conv import Conv2d
from irat.training.step import StepParts
from irat.types import Batch, SampleStats


def stock_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` built from stock layers only, as the papers' code defines its networks:
    irat's ``Conv2d`` becomes ``nn.Conv2d`` with the same weights."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv2d):
                stock = torch.nn.Conv2d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size,
                    stride=child.stride,
                    padding=child.padding,
                    bias=child.bias is not None,
                ).to(device=child.weight.device, dtype=child.weight.dtype)
                stock.load_state_dict(child.state_dict())
                setattr(parent, name, stock)
    return model


def covers(parts: StepParts) -> bool:
    """Whether ``reference_step`` has a reference for the method of ``parts``: an attack, ℓ∞ PGD
    on ce, kl or cw, no FAT early stop, no SAA, no learned weighting (BiLAW's meta step is checked
    against finite differences and its closed form in tests/test_bilaw.py instead), no per-instance
    state (fast AT has its own Algorithm-1 reference in tests/test_fast_at.py)."""
    if parts.attack is None or parts.meta_step is not None:
        return False
    if parts.cache is not None or parts.targets is not None:
        return False
    kw = parts.attack.keywords
    inner = [a.keywords for a in kw["attacks"]] if "attacks" in kw else [kw]
    return all(
        k.get("loss") in ("ce", "kl", "cw") and k.get("tau") is None and k.get("norm", "linf") == "linf"
        for k in inner
    )


def paper_start(x: Tensor, start: str, eps: float) -> Tensor:
    """The papers' random start from the global RNG: ``x + U[−ε, ε]`` (Madry) or
    ``x + 0.001·N(0, I)`` (TRADES), clipped to [0, 1]."""
    if start == "gauss_small":
        x_adv = x + 0.001 * torch.randn_like(x)
    elif start == "uniform":
        x_adv = x + torch.empty_like(x).uniform_(-eps, eps)
    else:
        x_adv = x.clone()
    return x_adv.clamp(0.0, 1.0).detach()


def reference_pgd(
    model: torch.nn.Module,
    x: Tensor,
    y: Tensor,
    x_start: Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    loss: str = "ce",
    record_path: bool = False,
) -> tuple[Tensor, Tensor]:
    """ℓ∞ PGD from ``x_start`` through ``loss.backward()``; returns x^(K) and κ [B] (correct
    iterates before each step, counted from the step's own forward)."""
    if loss not in ("ce", "kl", "cw"):
        raise ValueError(f"the reference PGD has the ce, kl and cw losses, not {loss!r}")
    model.eval()
    logits_nat = None
    if loss == "kl":
        with torch.no_grad():
            logits_nat = model(x)
    kappa = torch.zeros(len(y), dtype=torch.long, device=y.device)
    x_adv = x_start.detach()
    for _ in range(steps):
        x_adv.requires_grad_()
        model.zero_grad()
        out = model(x_adv)
        if record_path:
            kappa += (out.argmax(1) == y).long()
        if loss == "kl":
            value = F.kl_div(F.log_softmax(out, 1), F.softmax(logits_nat, 1), reduction="sum")
        elif loss == "cw":  # the GAIRAT/MAIL code's CW loss, κ = 50
            onehot = F.one_hot(y, out.shape[1]).to(out.dtype)
            correct = (onehot * out).sum(1)
            other = ((1 - onehot) * out - onehot * 1e4).max(1)[0]
            value = -torch.clamp(correct - other + 50.0, min=0).sum()
        else:
            value = F.cross_entropy(out, y, reduction="sum")
        value.backward()
        x_adv = x_adv.detach() + step_size * torch.sign(x_adv.grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    model.train()
    return x_adv.detach(), kappa


def reference_step(
    model: torch.nn.Module,
    batch: Batch,
    parts: StepParts,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    x_start: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One step of the method in ``parts`` (from ``irat.training.assemble.build_step``), written
    plainly. ``x_start``: the attack's start x⁰ (None: ``paper_start`` from the global RNG).
    Returns the loss (scalar, detached) and the weights [B]."""
    kw = parts.attack.keywords
    if "attacks" in kw:
        return _reference_variants_step(model, batch, parts, optimizer, epoch, x_start)
    if kw.get("tau") is not None or kw.get("norm", "linf") != "linf":
        raise ValueError("the reference step has ℓ∞ PGD without early stopping (not FAT, not ℓ2)")
    x, y = batch.x, batch.y
    if x_start is None:
        x_start = paper_start(x, kw["start"], kw["eps"])
    x_adv, kappa = _pgd_as_configured(model, x, y, x_start, kw)
    nat_for_weights = None
    if parts.stats_nat:
        buffers = {name: b.clone() for name, b in model.named_buffers()}
        with torch.no_grad():
            nat_for_weights = model(x)
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    logits_adv = model(x_adv)
    logits_nat = model(x) if parts.needs_nat else None
    if logits_nat is not None:
        nat_for_weights = logits_nat.detach()
    stats = SampleStats(
        idx=batch.idx,
        y=y,
        logits_adv=logits_adv.detach(),
        logits_nat=nat_for_weights,
        steps_to_flip=kappa if kw["record_path"] else None,
        epoch=epoch,
    )
    w = parts.weights(stats)
    loss, _ = parts.objective(logits_nat, logits_adv, y, w)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach(), w


def _pgd_as_configured(model: torch.nn.Module, x: Tensor, y: Tensor, x_start: Tensor, kw: dict):
    """``reference_pgd`` with the settings of one of irat's PGD partials (its ``keywords``)."""
    return reference_pgd(
        model,
        x,
        y,
        x_start,
        eps=kw["eps"],
        step_size=kw["step_size"],
        steps=kw["steps"],
        loss=kw["loss"],
        record_path=kw.get("record_path", False),
    )


def _reference_variants_step(
    model: torch.nn.Module,
    batch: Batch,
    parts: StepParts,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    x_start: list[Tensor] | None,
) -> tuple[Tensor, Tensor]:
    """LRAT/LSAT with PGD/CW variants: for each attack j, its variant and its own forward (the
    paper's loop over j), then the weights and the objective of ``parts`` on the stacked logits."""
    x, y = batch.x, batch.y
    variant_kw = [a.keywords for a in parts.attack.keywords["attacks"]]
    if any(kw.get("loss") not in ("ce", "cw") or kw.get("norm", "linf") != "linf" for kw in variant_kw):
        raise ValueError("the reference step has ℓ∞ PGD and CW variants only (no SAA, no ℓ2)")
    if x_start is None:
        x_start = [paper_start(x, kw["start"], kw["eps"]) for kw in variant_kw]
    xs, kappa = [], None
    for kw, start in zip(variant_kw, x_start):
        x_j, k_j = _pgd_as_configured(model, x, y, start, kw)
        xs.append(x_j)
        kappa = k_j if kw["record_path"] else kappa
    logits_adv = torch.stack([model(x_j) for x_j in xs], dim=1)
    logits_nat = model(x) if parts.needs_nat else None
    stats = SampleStats(
        idx=batch.idx, y=y, logits_adv=logits_adv.detach(), logits_nat=None, steps_to_flip=kappa, epoch=epoch
    )
    w = parts.weights(stats)
    loss, _ = parts.objective(logits_nat, logits_adv, y, w)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach(), w
