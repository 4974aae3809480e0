"""LM-PGD, MAIL's line-search & momentum PGD (Probabilistic Margins for Instance Reweighting in
AT, seed 002, Appendix A; METHODS.md §3.5, DECISION #28). MAIL uses it to show that GAIRAT's
least PGD steps (LPS) depend on the attack path: the same point has a different LPS under PGD and
under LM-PGD.

    δ⁰ = 0, v⁰ = 0                                       LPS is measured from the natural point
    for t = 1..T:
        g = dir(∇_x ℓ(x + δᵗ⁻¹))                         ℓ∞: sign; ℓ2: g / ‖g‖₂ (threat.step)
        αᵗ⁻¹ = argmax_{α ∈ V_t} ℓ(x + Π[δᵗ⁻¹ + γ vᵗ⁻¹ + α g])   per sample, on a grid of V_t
        vᵗ = γ vᵗ⁻¹ + αᵗ⁻¹ g                             (v is not projected)
        δᵗ = Π[δᵗ⁻¹ + vᵗ]                                 = the chosen line-search candidate

``V_t = linspace(α_min, α_max, grid)`` with α_max = 6/255, α_min = 4/255 for t ≤ 15 and 0 after
(the paper's defaults for ε = 8/255, T = 50, γ = 0.8; ``grid`` = 11 points, DECISION #28). The
paper calls the momentum "Nesterov", but its formula takes the gradient at δᵗ⁻¹, not at the
look-ahead point; this is the formula as written. ℓ is the CE (``loss="cw"``: the CW margin).

Path record: ``first_wrong`` [B], the LPS under LM-PGD, the smallest t ∈ 0..T with x + δᵗ
misclassified (T if none, the convention of ``irat.attacks.pgd``: "never fooled" reads as T and
``logits_first_wrong`` then classifies correctly); ``x_first_wrong``/``logits_first_wrong`` that
iterate and its logits; ``steps_to_flip`` κ, the number of correct iterates among x⁰..x^(T−1)
(GAIRAT's count on this path); ``logits_nat`` the logits of x. All in eval mode.

Cost per iteration for B images: one input gradient of B images and ``grid``·B no-grad forwards
(the line search); the chosen candidate *is* the next iterate, so its logits come from the line
search and x^(T) costs no extra forward. No host synchronisation (argmax and ``torch.where``).

``keep="last"`` returns x + δ^T (the paper); ``keep="fooled"`` (evaluation, ``lm-pgd`` in
``irat.attacks.build``) returns the first misclassified iterate whenever one was met, so a point
counts as broken if any iterate broke it, like ``saa`` and ``apgd-*-K`` in evaluation.

Shapes: ``x`` [B, C, H, W] in [0, 1], ``y`` [B] → ``x_adv`` [B, C, H, W], ``logits_adv`` [B, n].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from irat import losses
from irat.attacks.mode import eval_mode, frozen_parameters
from irat.attacks.threat import threat
from irat.types import AttackResult

STEPS = 50
GAMMA = 0.8
ALPHA_MAX = 6 / 255
ALPHA_MIN = 4 / 255
WARM = 15
"""Iterations t = 1..WARM search [α_min, α_max]; later ones [0, α_max]."""
GRID = 11
LOSSES = ("ce", "cw")
KEEPS = ("last", "fooled")


def _loss(z: Tensor, y: Tensor, loss: str) -> Tensor:
    return losses.ce(z, y) if loss == "ce" else losses.cw(z, y)


def _gradient(model: nn.Module, x_adv: Tensor, y: Tensor, loss: str) -> tuple[Tensor, Tensor]:
    """∇_x Σ_i ℓ_i at ``x_adv`` (input gradient only) and the logits of that forward."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        z = model(x_adv)
        (grad,) = torch.autograd.grad(_loss(z, y, loss).sum(), x_adv)
    return grad, z.detach()


def _check(eps, steps, gamma, alpha_max, alpha_min, grid, loss, keep) -> None:
    if not float(eps) >= 0:
        raise ValueError(f"eps={eps} must be >= 0")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps={steps} must be a non-negative integer")
    if not 0 <= float(gamma) < 1:
        raise ValueError(f"gamma={gamma} must be in [0, 1) (the momentum of LM-PGD)")
    if not 0 <= float(alpha_min) <= float(alpha_max):
        raise ValueError(f"the line search needs 0 <= alpha_min ({alpha_min}) <= alpha_max ({alpha_max})")
    if int(grid) != grid or grid < 1:
        raise ValueError(f"grid={grid} must be a positive integer (points of the line search)")
    if loss not in LOSSES:
        raise ValueError(f"unknown LM-PGD loss {loss!r}; valid: {', '.join(LOSSES)}")
    if keep not in KEEPS:
        raise ValueError(f"keep={keep!r}; valid: {', '.join(KEEPS)}")


def lm_pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int = STEPS,
    norm: str = "linf",
    gamma: float = GAMMA,
    alpha_max: float = ALPHA_MAX,
    alpha_min: float = ALPHA_MIN,
    warm: int = WARM,
    grid: int = GRID,
    loss: str = "ce",
    keep: str = "last",
) -> AttackResult:
    """LM-PGD with ``steps`` = T iterations in the ``norm`` ball of radius ``eps`` (module
    docstring); deterministic (no random start). Returns the path record with the final point."""
    _check(eps, steps, gamma, alpha_max, alpha_min, grid, loss, keep)
    ball = threat(norm, eps)
    x = x.detach()
    b, tail = x.shape[0], [1] * (x.dim() - 1)
    rows = torch.arange(b, device=x.device)
    steps, grid = int(steps), int(grid)

    def rep(t: Tensor) -> Tensor:  # [B, ...] → [grid·B, ...], row a·B + i: grid point a, sample i
        return t.unsqueeze(0).expand(grid, *t.shape).reshape(grid * b, *t.shape[1:])

    with eval_mode(model), frozen_parameters(model):
        x_adv, v = x.clone(), torch.zeros_like(x)
        if steps > 0:
            grad, z = _gradient(model, x_adv, y, loss)
        else:
            with torch.no_grad():
                grad, z = None, model(x_adv)
        logits_nat = z
        wrong = z.argmax(1) != y
        found, x_first, z_first = wrong, x_adv, z
        k_first = torch.where(wrong, 0, steps)
        n_correct = torch.zeros_like(k_first)
        y_rep = rep(y)
        for t in range(1, steps + 1):
            n_correct += (~wrong).long()  # κ counts x^(0..T−1)
            # the line search along dir(g) from x^(t−1) + γ v^(t−1); its chosen candidate is x^(t)
            lo = float(alpha_min) if t <= warm else 0.0
            alphas = torch.linspace(lo, float(alpha_max), grid, dtype=x.dtype, device=x.device)
            direction = ball.step(torch.zeros_like(grad), grad, 1.0)
            shift = alphas.repeat_interleave(b).view(-1, *tail) * rep(direction)
            cand = ball.project(rep(x_adv + gamma * v) + shift, rep(x))
            with torch.no_grad():
                z_cand = model(cand)
            pick = _loss(z_cand, y_rep, loss).view(grid, b).argmax(0)  # first max: the smallest α
            v = gamma * v + alphas[pick].view(-1, *tail) * direction
            x_adv = cand.view(grid, *x.shape)[pick, rows]
            z = z_cand.view(grid, b, -1)[pick, rows]
            # the path record
            wrong = z.argmax(1) != y
            new = wrong & ~found
            k_first = torch.where(new, t, k_first)
            x_first = torch.where(new.view(-1, *tail), x_adv, x_first)
            z_first = torch.where(new[:, None], z, z_first)
            found = found | wrong
            if t < steps:
                grad, _ = _gradient(model, x_adv, y, loss)
    # never fooled: the first-wrong iterate is x^(T), as in irat.attacks.pgd
    x_first = torch.where(found.view(-1, *tail), x_first, x_adv)
    z_first = torch.where(found[:, None], z_first, z)
    out_x, out_z = (x_first, z_first) if keep == "fooled" else (x_adv, z)
    return AttackResult(
        x_adv=out_x,
        logits_adv=out_z,
        steps_to_flip=n_correct,
        first_wrong=k_first,
        x_first_wrong=x_first,
        logits_first_wrong=z_first,
        logits_nat=logits_nat,
    )
