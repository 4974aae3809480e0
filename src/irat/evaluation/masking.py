"""Probes of the model that expose gradient masking, run by ``irat.evaluate`` after its attacks
(``sanity=True``). A masked model looks robust to gradient attacks because its gradients are
useless, not because it is; each probe measures one way that happens, on the first
``PROBE_IMAGES`` test images, and ``irat.evaluation.sanity`` turns the numbers into warnings
that say what was seen and what to run next:

* the ε sweep: PGD-20 at ε, 2ε, 4ε must drive accuracy down (``check_eps_sweep``);
* nothing broken: when the white-box attacks (the sweep's PGD-20 at ε and every gradient attack
  that was evaluated) change no correct prediction at ε, PGD must at least lower the logit margin
  of the correct points clearly more than its random start alone does, as it does on a model
  that is truly robust at ε (``check_nothing_broken``);
* gradients: the input gradients of the cross-entropy and of the logit margin at x and at a
  uniform random point of the ε-ball, zero or non-finite for how many points
  (``check_gradients``);
* randomness: two eval-mode forwards of the same input must agree (``check_randomness``);
* black box: Square (``SQUARE_QUERIES`` queries on the first ``SQUARE_IMAGES`` images, or the
  evaluated ``square`` itself) and an evaluated ``spsa`` (gradient-free, ``irat.attacks.spsa``)
  must not beat the white-box attacks (``check_black_box``).

With ``bpda`` (``irat.models.bpda``) the probes see the gradients the attacks saw.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from irat import losses
from irat.attacks.autoattack import autoattack
from irat.attacks.build import build
from irat.attacks.mode import eval_mode, frozen_parameters
from irat.attacks.threat import threat
from irat.evaluation import sanity
from irat.evaluation.robust import correct_under

PROBE_IMAGES = 200
"""Images of the ε sweep and the gradient, randomness and nothing-broken probes."""
EPS_SWEEP_FACTORS = (1.0, 2.0, 4.0)
"""ε multiples of the sweep (PGD-20, step ε/4 of each radius)."""
SQUARE_IMAGES = 100
SQUARE_QUERIES = 1000
"""The black-box probe: Square on the first 100 images with 1000 queries (the standard Square
has 5000; a masked model falls far sooner)."""
_WHITE_BOX = ("pgd-", "cw-", "fgsm", "apgd-ce", "apgd-t", "fab-t", "lm-pgd", "fmn")


@dataclass
class Probe:
    """``warnings``; ``eps_sweep``: ε → PGD-20 accuracy; ``details``: the measured numbers
    (saved with the evaluation as ``masking``)."""

    warnings: list[str] = field(default_factory=list)
    eps_sweep: dict[float, float] = field(default_factory=dict)
    details: dict = field(default_factory=dict)


def is_white_box(attack: str) -> bool:
    """Whether the attack (a name without ``@N``) follows the model's gradients only: PGD, CW,
    FGSM, APGD, FAB, LM-PGD and FMN, alone or joined with ``+``; Square, SPSA or a cascade with
    Square is not."""
    return all(part.startswith(_WHITE_BOX) for part in attack.split("+"))


def input_gradients(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``(∇_x CE, ∇_x margin)`` [B, C, H, W] of each point, the model in eval mode, parameters
    frozen. A model whose output does not depend on x gets zeros."""
    with eval_mode(model), frozen_parameters(model), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        z = model(xg)
        grads = []
        for i, loss in enumerate((losses.ce(z, y), losses.margin(z, y))):
            (g,) = torch.autograd.grad(loss.sum(), xg, retain_graph=i == 0, allow_unused=True)
            grads.append(torch.zeros_like(xg) if g is None else g.detach())
    return grads[0], grads[1]


def gradient_shares(model: nn.Module, points: list[Tensor], y: Tensor) -> dict[str, float]:
    """Shares of points whose input gradient is exactly zero for the cross-entropy
    (``zero_ce``), for the margin (``zero_margin``), and non-finite for either (``nonfinite``), at
    any of ``points`` (each [B, C, H, W]: x, a random point of its ε-ball, ...)."""
    n = len(y)
    zero_ce = torch.zeros(n, dtype=torch.bool, device=y.device)
    zero_m, bad = zero_ce.clone(), zero_ce.clone()
    for point in points:
        g_ce, g_m = input_gradients(model, point, y)
        for g, zero in ((g_ce, zero_ce), (g_m, zero_m)):
            flat = g.flatten(1)
            finite = torch.isfinite(flat).all(1)
            bad |= ~finite
            zero |= finite & (flat == 0).all(1)
    share = lambda mask: mask.float().mean().item()  # noqa: E731
    return {"zero_ce": share(zero_ce), "zero_margin": share(zero_m), "nonfinite": share(bad)}


def margin_drop(model: nn.Module, x: Tensor, y: Tensor, x_moved: Tensor, among: Tensor) -> float:
    """Mean over the points ``among`` [B] bool of the logit margin ``z_y − max_{j≠y} z_j`` lost
    from ``x`` to ``x_moved`` (eval mode); 0 when ``among`` is empty."""
    if not bool(among.any()):
        return 0.0
    with eval_mode(model), torch.no_grad():
        drop = losses.margin(model(x[among]), y[among]) - losses.margin(model(x_moved[among]), y[among])
    return drop.float().mean().item()


def output_change(model: nn.Module, x: Tensor) -> float:
    """The largest relative change ‖z₁ − z₂‖ / ‖z₁‖ of a point's logits between two eval-mode
    forwards of the same ``x``."""
    with eval_mode(model), torch.no_grad():
        z1, z2 = model(x).float(), model(x).float()
    change = (z1 - z2).norm(dim=1) / (z1.norm(dim=1) + 1e-12)
    change = torch.nan_to_num(change, nan=float("inf"))
    return change.max().item() if len(change) else 0.0


def probe(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    clean_ok: Tensor,
    per_sample: dict[str, Tensor],
    *,
    eps: float,
    norm: str,
    seed: int,
    batch_size: int | None = None,
) -> Probe:
    """Run the probes on ``x`` [N, C, H, W], ``y`` [N] (the evaluated images), ``clean_ok`` [N]
    their clean correctness and ``per_sample``: attack name (with ``@N`` / ``:STEP``) → bool
    [its images] (CPU), the attacks already evaluated. ``eps`` > 0. The caller sets BPDA."""
    from irat.evaluation.evaluate import split_images

    out = Probe()
    m = min(len(y), PROBE_IMAGES)
    xm, ym, ok = x[:m], y[:m], clean_ok[:m].cpu()
    sweep_ok = {}
    for f in EPS_SWEEP_FACTORS:
        torch.manual_seed(seed)
        attack = build("pgd-20", eps=eps * f, norm=norm)
        if f == 1.0:  # its points, for the margin it takes from the correct ones
            x_pgd = attack(model, xm, ym).x_adv
        c = correct_under(model, xm, ym, attack, clean_correct=clean_ok[:m], batch_size=batch_size).cpu()
        sweep_ok[f] = c
        out.eps_sweep[eps * f] = c.float().mean().item()
    out.warnings += sanity.check_eps_sweep(out.eps_sweep, m)

    generator = torch.Generator(device=x.device).manual_seed(seed)
    x_random = threat(norm, eps).random_start(xm, "uniform", generator)
    evaluated = {split_images(name)[0]: c for name, c in per_sample.items()}
    white = [c for name, c in evaluated.items() if is_white_box(name) and len(c) >= m]
    white_ok = torch.stack([sweep_ok[1.0], *(c[:m] for c in white)]).all(0)
    n_correct, n_broken = int(ok.sum()), int((ok & ~white_ok).sum())
    on = ok.to(x.device)
    drop_pgd, drop_random = margin_drop(model, xm, ym, x_pgd, on), margin_drop(model, xm, ym, x_random, on)
    out.warnings += sanity.check_nothing_broken(n_correct, n_broken, eps, drop_pgd, drop_random)

    shares = gradient_shares(model, [xm, x_random], ym)
    out.warnings += sanity.check_gradients(shares["zero_ce"], shares["zero_margin"], shares["nonfinite"], m)
    change = output_change(model, xm)
    out.warnings += sanity.check_randomness(change)

    k = min(m, SQUARE_IMAGES)
    if "square" in evaluated and len(evaluated["square"]) >= k:
        black_name, black = "square", evaluated["square"][:k]
    else:
        black_name = f"square ({SQUARE_QUERIES} queries)"
        torch.manual_seed(seed)
        square = functools.partial(
            autoattack, eps=eps, norm=norm, attacks=["square"], square_queries=SQUARE_QUERIES, seed=seed
        )
        black = correct_under(model, x[:k], y[:k], square, clean_correct=clean_ok[:k], batch_size=batch_size)
        black = black.cpu()
    black_acc, white_acc = black.float().mean().item(), white_ok[:k].float().mean().item()
    out.warnings += sanity.check_black_box(black_acc, white_acc, k, black_name)
    spsa = {name: c for name, c in evaluated.items() if name.startswith("spsa")}
    for name, c in spsa.items():  # an evaluated SPSA is a second black-box check, at no cost
        j = min(m, len(c))
        out.warnings += sanity.check_black_box(
            c[:j].float().mean().item(), white_ok[:j].float().mean().item(), j, name
        )
    out.details = {
        "images": m,
        "clean_correct": n_correct,
        "broken_by_white_box": n_broken,
        "margin_drop_pgd": drop_pgd,
        "margin_drop_random": drop_random,
        "white_box": ["pgd-20 (eps sweep)", *(name for name in evaluated if is_white_box(name))],
        "gradient_zero_ce": shares["zero_ce"],
        "gradient_zero_margin": shares["zero_margin"],
        "gradient_nonfinite": shares["nonfinite"],
        "output_change": change,
        "black_box": {
            "attack": black_name,
            "images": k,
            "accuracy": black_acc,
            "white_box_accuracy": white_acc,
        },
    }
    return out
