"""APGD, the step-size-free PGD of Croce & Hein 2020 ("Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks"), as METHODS.md §3.4 states it:
the core of LRAT's SAA, and of ``apgd-ce-K`` / ``apgd-dlr-K`` in evaluation.

    x⁰ = Π(x + δ⁰)                                        start: none (default) | uniform | gauss_small
    η⁰ = 2ε, per sample
    z^{k+1} = Π(x^k + η^k·step(∇L(x^k)))                  the threat model's step: sign (ℓ∞) or g/‖g‖ (ℓ2)
    x^{k+1} = z^{k+1}                                      k = 0
    x^{k+1} = Π(x^k + a(z^{k+1} − x^k) + (1 − a)(x^k − x^{k−1}))    k ≥ 1, momentum a = 0.75
    x_max: the iterate of highest loss so far (kept with its gradient and logits)

Checkpoints ``w_j = ⌈p_j·N⌉`` with ``p_0 = 0``, ``p_1 = 0.22``,
``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)`` (N = 20: 0, 5, 9, 12, 14, 16, 18, 19, 20). At
each checkpoint w_j < N, per sample, when

    (a) fewer than ρ = 75 % of the w_j − w_{j−1} steps since the last checkpoint raised the loss, or
    (b) η was not halved at the last checkpoint and the best loss has not changed since,

η is halved and the iterate x^{w_j} is replaced by x_max (whose stored gradient gives the next
step, so a restart costs no forward). Paper choices where the official code differs: the
checkpoints follow the formula above, not the package's integer approximation (§7.1.11); (a) is
a strict "fewer than"; (b) can fire at the first checkpoint.

Returned point (``keep``): ``best`` returns x_max, the highest-loss iterate (METHODS.md §3.4;
LRAT's training variant); ``fooled`` returns, for samples that some iterate misclassified, the
last such iterate, and x_max otherwise: the official ``perturb`` semantics, for robust accuracy.
``logits_adv`` are the logits of the returned point from the attack's own forwards.

Losses (maximised): ``ce`` = CE(z, y); ``dlr`` (untargeted DLR); ``dlr_t`` (targeted DLR towards
``target`` [B]). Cost: N input-gradient evaluations (x⁰ … x^{N−1}) and one forward of x^N, all
batched; no host synchronisation (per-sample decisions are ``torch.where``). The model runs in
eval mode with frozen parameters, as in every irat attack (``irat.attacks.mode``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from irat import losses
from irat.attacks.mode import eval_mode, frozen_parameters
from irat.attacks.threat import STARTS, threat
from irat.types import AttackResult

LOSSES = ("ce", "dlr", "dlr_t")
KEEP = ("best", "fooled")
MOMENTUM = 0.75
RHO = 0.75


def checkpoints(steps: int) -> list[int]:
    """The checkpoints ``w_j = ⌈p_j·steps⌉`` (0 and ``steps`` included, duplicates removed). The
    p_j are exact multiples of 0.01, kept in integer hundredths so that ⌈0.70·20⌉ is 14, not 15."""
    p = [0, 22]
    while p[-1] + max(p[-1] - p[-2] - 3, 6) <= 100:
        p.append(p[-1] + max(p[-1] - p[-2] - 3, 6))
    return sorted({-(-q * int(steps) // 100) for q in p})


def _loss_fn(loss: str, y: Tensor, target: Tensor | None) -> Callable[[Tensor], Tensor]:
    if loss == "ce":
        return lambda z: losses.ce(z, y)
    if loss == "dlr":
        return lambda z: losses.dlr(z, y)
    return lambda z: losses.dlr_t(z, y, target)


def _value_and_grad(model: nn.Module, x: Tensor, loss_fn, grad: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """Logits, per-sample loss and (if ``grad``) the input gradient of Σ loss at ``x``."""
    if not grad:
        with torch.no_grad():
            z = model(x)
            return z, loss_fn(z), None
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        z = model(x)
        value = loss_fn(z)
        (g,) = torch.autograd.grad(value.sum(), x)
    return z.detach(), value.detach(), g


def apgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int = 100,
    norm: str = "linf",
    loss: str = "ce",
    target: Tensor | None = None,
    start: str = "none",
    keep: str = "best",
    generator: torch.Generator | None = None,
) -> AttackResult:
    """APGD with ``steps`` iterations in the ``norm`` ball of radius ``eps`` (module docstring).

    ``x`` [B, C, H, W] in [0, 1], ``y`` [B]; ``target`` [B] the target classes of ``dlr_t``.
    ``start`` is drawn from ``generator``. Returns ``x_adv`` [B, C, H, W] and ``logits_adv``
    [B, n] of the point chosen by ``keep``. ``steps = 0`` returns the start; ``eps = 0`` returns x.
    """
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps={steps} must be a non-negative integer")
    if loss not in LOSSES:
        raise ValueError(f"unknown APGD loss {loss!r}; valid: {', '.join(LOSSES)}")
    if (loss == "dlr_t") != (target is not None):
        raise ValueError("APGD: the dlr_t loss needs target=[B] classes, and only dlr_t takes one")
    if start not in STARTS:
        raise ValueError(f"unknown random start {start!r}; valid: {', '.join(STARTS)}")
    if keep not in KEEP:
        raise ValueError(f"keep={keep!r}; valid: {', '.join(KEEP)}")
    ball = threat(norm, eps)
    x = x.detach()
    loss_fn = _loss_fn(loss, y, target)
    steps = int(steps)
    marks = set(checkpoints(steps)) - {0, steps}
    row = (-1, *([1] * (x.dim() - 1)))  # per-sample values shaped to broadcast against x
    with eval_mode(model), frozen_parameters(model):
        x_k = ball.random_start(x, start, generator)
        z, value, grad = _value_and_grad(model, x_k, loss_fn, grad=steps > 0)
        best_x, best_value, best_z, best_grad = x_k, value, z, grad
        if keep == "fooled":
            fooled = z.argmax(1) != y
            fooled_x, fooled_z = x_k, z
        eta = torch.full((x.shape[0],), 2.0 * ball.eps, dtype=x.dtype, device=x.device)
        x_prev, value_prev = x_k, value
        rises = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        halved = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        best_at_mark, last_mark = best_value, 0
        for k in range(steps):
            z_next = ball.project(ball.step(x_k, grad, eta.view(row)), x)
            if k > 0:
                z_next = ball.project(x_k + MOMENTUM * (z_next - x_k) + (1 - MOMENTUM) * (x_k - x_prev), x)
            x_prev, x_k = x_k, z_next
            final = k + 1 == steps
            z, value, grad = _value_and_grad(model, x_k, loss_fn, grad=not final)
            rises += (value > value_prev).long()
            value_prev = value
            better = value > best_value
            best_x = torch.where(better.view(row), x_k, best_x)
            best_z = torch.where(better[:, None], z, best_z)
            best_value = torch.where(better, value, best_value)
            if not final:
                best_grad = torch.where(better.view(row), grad, best_grad)
            if keep == "fooled":
                wrong = z.argmax(1) != y
                fooled_x = torch.where(wrong.view(row), x_k, fooled_x)
                fooled_z = torch.where(wrong[:, None], z, fooled_z)
                fooled = fooled | wrong
            if k + 1 in marks:
                few_rises = rises < RHO * (k + 1 - last_mark)
                stalled = ~halved & (best_value == best_at_mark)
                halved = few_rises | stalled
                eta = torch.where(halved, eta / 2, eta)
                x_k = torch.where(halved.view(row), best_x, x_k)
                grad = torch.where(halved.view(row), best_grad, grad)
                value_prev = torch.where(halved, best_value, value_prev)
                rises.zero_()
                best_at_mark, last_mark = best_value, k + 1
    if keep == "fooled":
        return AttackResult(
            x_adv=torch.where(fooled.view(row), fooled_x, best_x),
            logits_adv=torch.where(fooled[:, None], fooled_z, best_z),
        )
    return AttackResult(x_adv=best_x, logits_adv=best_z)
