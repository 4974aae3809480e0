"""Projected gradient descent, one loop for every PGD-type attack (METHODS.md §3.1).

    x⁰ = Π(x + δ⁰)                                     start: uniform | gauss_small | none
    for k in 0..K−1:
        z = f(xᵏ)
        correctₖ = (argmax z == y)                     path record, BEFORE the update, same forward
        g = ∇_{xᵏ} Σ_i loss_i(z)                       sum, so per-sample steps do not depend on B
        xᵏ⁺¹ = Π(step(xᵏ, g, α))                       ℓ∞: sign step; ℓ2: per-sample normalised

Losses (all maximised): ``ce`` = CE(z, y); ``kl`` = KL(p(x) ‖ p(x')) with p(x) from
``logits_nat`` (detached) or one natural forward under no_grad (the TRADES inner maximisation);
``cw`` = −clamp(z_y − max_{j≠y} z_j + κ, min=0) (CW-k, §3.3).

Path record (``record_path=True``): ``steps_to_flip`` κ_i = Σ_{k<K} correct_{k,i} ∈ [0, K]
(GAIRAT's least PGD steps; x^(K) is not counted); with ``first_wrong=True`` (the default) also
``first_wrong`` the smallest k ∈ 0..K whose iterate is misclassified (K if none; x^(K) is checked
with one more forward), ``x_first_wrong`` that iterate (x^(K) if none), its logits and those of
the clean x (``logits_nat``: the KL attack's target, or one more forward), all in eval mode, so
that MAIL's PM_dif compares two distributions of one BatchNorm mode. κ alone
(``first_wrong=False``, what GAIRAT needs) costs one comparison per step and no extra forward.
All vectorised.

Gradients are taken with ``torch.autograd.grad(loss, x_adv)`` with respect to the input only:
no ``.backward()``, parameter ``.grad`` is never touched, and the parameters are frozen
(``requires_grad=False``) for the duration of the attack so that no layer even records what a
parameter gradient would need. BatchNorm choice (§1.1.4): the model runs
in ``eval()`` mode for the whole attack (running statistics used, not updated; dropout off) and
every submodule's previous mode is restored on exit.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from irat import losses
from irat.attacks.mode import eval_mode, frozen_parameters
from irat.attacks.threat import STARTS, gaussian, threat
from irat.types import AttackResult

LOSSES = ("ce", "kl", "cw")


def _check(eps: float, steps: int, step_size: float, loss: str, start: str) -> None:
    if not float(eps) >= 0:
        raise ValueError(f"eps={eps} must be >= 0")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps={steps} must be a non-negative integer")
    if not float(step_size) >= 0:
        raise ValueError(f"step_size={step_size} must be >= 0")
    if loss not in LOSSES:
        raise ValueError(f"unknown PGD loss {loss!r}; valid: {', '.join(LOSSES)}")
    if start not in STARTS:
        raise ValueError(f"unknown random start {start!r}; valid: {', '.join(STARTS)}")


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    norm: str = "linf",
    loss: str = "ce",
    start: str = "uniform",
    kappa: float = 50.0,
    logits_nat: Tensor | None = None,
    record_path: bool = False,
    first_wrong: bool = True,
    final_logits: bool = True,
    generator: torch.Generator | None = None,
    tau: int | None = None,
    noise: float = 0.0,
    x_start: Tensor | None = None,
) -> AttackResult:
    """PGD with ``steps`` iterations of size ``step_size`` in the ``norm`` ball of radius ``eps``.

    ``x`` [B, C, H, W] in [0, 1], ``y`` [B]. ``loss``: ``ce`` | ``kl`` | ``cw`` (κ = ``kappa``).
    ``start``: ``uniform`` | ``gauss_small`` | ``none``, drawn from ``generator`` (the global RNG
    when None). ``logits_nat``: the eval-mode logits of ``x``, p(x) for the ``kl`` loss and PM_dif's
    reference with ``first_wrong`` (computed once under no_grad if None).
    ``final_logits``: one more no-grad forward on x^(K) → ``logits_adv`` (the training step
    passes False and recomputes them in train mode with a graph); with ``record_path`` and
    ``first_wrong`` that forward is needed anyway and its logits are returned.
    K = 0 returns the start x⁰ (= x for start ``none``); ε = 0 returns x for any K and start.
    ``x_start`` [B, C, H, W]: start from ``Π(x_start)`` instead of a random start (ATTA's cached
    adversarial example, ``irat.attacks.atta``; ``start`` is then not drawn).

    Early stopping (FAT, §3.6) with ``tau`` (per-sample budget τ ≥ 0, None: off): at iterate k a
    misclassified sample with budget 0 is frozen (returned as it is), a misclassified one with
    budget > 0 spends one unit, and only samples not frozen step, by
    ``Π(x + α·sign(g) + noise·N(0, I))`` (FAT's ω = 0.001; drawn from ``generator``).
    """
    _check(eps, steps, step_size, loss, start)
    if tau is not None and (int(tau) != tau or tau < 0):
        raise ValueError(f"tau={tau} must be a non-negative integer (FAT's early-stop budget)")
    ball = threat(norm, eps)
    x = x.detach()
    track_first = record_path and first_wrong
    with eval_mode(model), frozen_parameters(model):
        target = None
        if (loss == "kl" or track_first) and logits_nat is None:
            with torch.no_grad():
                logits_nat = model(x)
        if loss == "kl":
            target = logits_nat.detach()
        if x_start is not None:
            x_adv = ball.project(x_start.detach().to(x.dtype), x)
        else:
            x_adv = ball.random_start(x, start, generator)
        if record_path:
            n_correct = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
        if track_first:
            k_first = torch.full(y.shape, int(steps), dtype=torch.long, device=y.device)
            found = torch.zeros(y.shape, dtype=torch.bool, device=y.device)
            x_first, z_first = x_adv, None
        if tau is not None:
            budget = torch.full(y.shape, int(tau), dtype=torch.long, device=y.device)
            frozen = torch.zeros(y.shape, dtype=torch.bool, device=y.device)
        for k in range(int(steps)):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                z = model(x_adv)
                if loss == "ce":
                    per_sample = losses.ce(z, y)
                elif loss == "kl":
                    per_sample = losses.kl(target, z)
                else:
                    per_sample = losses.cw(z, y, kappa)
                (grad,) = torch.autograd.grad(per_sample.sum(), x_adv)
            x_adv = x_adv.detach()
            wrong = z.detach().argmax(1) != y if record_path or tau is not None else None
            if record_path:
                n_correct += (~wrong).long()
            if track_first:
                new = wrong & ~found
                k_first = torch.where(new, torch.full_like(k_first, k), k_first)
                x_first = torch.where(_per_sample(new, x), x_adv, x_first)
                z_first = z.detach() if z_first is None else torch.where(new[:, None], z.detach(), z_first)
                found = found | wrong
            if tau is None:
                x_adv = ball.project(ball.step(x_adv, grad, step_size), x)
                continue
            frozen = frozen | (wrong & (budget == 0))
            budget = budget - (wrong & ~frozen).long()
            moved = ball.step(x_adv, grad, step_size)
            if noise > 0:
                moved = moved + noise * gaussian(x_adv.shape, x_adv, generator)
            x_adv = torch.where(_per_sample(frozen, x), x_adv, ball.project(moved, x))
        logits_adv = None
        if final_logits or track_first:
            with torch.no_grad():
                logits_adv = model(x_adv)
    if not record_path:
        return AttackResult(x_adv=x_adv, logits_adv=logits_adv if final_logits else None)
    if not track_first:
        return AttackResult(x_adv=x_adv, logits_adv=logits_adv, steps_to_flip=n_correct)
    # x^(K): never wrong before → first_wrong stays K and the iterate is x^(K) either way.
    x_first = torch.where(_per_sample(found, x), x_first, x_adv)
    z_first = logits_adv if z_first is None else torch.where(found[:, None], z_first, logits_adv)
    return AttackResult(
        x_adv=x_adv,
        logits_adv=logits_adv,
        steps_to_flip=n_correct,
        first_wrong=k_first,
        x_first_wrong=x_first,
        logits_first_wrong=z_first,
        logits_nat=logits_nat.detach(),
    )


def _per_sample(mask: Tensor, x: Tensor) -> Tensor:
    """A per-sample mask [B] shaped to broadcast against ``x`` [B, C, H, W]."""
    return mask.view(-1, *([1] * (x.dim() - 1)))
