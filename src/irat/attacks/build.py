"""Attacks by name, for evaluation and validation (METHODS.md §3.8, §5):
``build(name, eps=..., norm=...) -> attack(model, x, y) -> AttackResult`` with ``logits_adv``
always set (eval-mode model, no graph).

Names:
* ``clean``: x itself, logits under ``inference_mode``;
* ``fgsm``: §3.1;
* ``pgd-K``: PGD-K on CE, uniform start, step ε/4 (``step_size=`` overrides); ``pgd-KxR``
  (e.g. ``pgd-20x5``) or ``restarts=R``: R restarts, keeping per sample the first restart that
  misclassifies (the last restart's point when none does), so R restarts never succeed on fewer
  points than the first one alone;
* ``cw-K`` (also ``cw-KxR``): CW-K, κ = 50 (``kappa=``), uniform start, step ε/4 (§3.3);
* a step size in the name, after a colon, wins over ``step_size=``: ``pgd-100:1/255`` (VIR),
  ``pgd-20:eps/4``, ``cw-20:0.003`` (MAIL code), ``pgd-10:2*eps/10``. A step is a number, a
  fraction ``a/b``, or ε written ``eps`` times or divided by a number (``eps/4``, ``0.25*eps``),
  parsed without ``eval`` (``parse_step``);
* ``autoattack``: the standard AutoAttack cascade; ``apgd-ce``, ``apgd-dlr``, ``apgd-t``,
  ``fab-t``, ``square``: one component of the official AutoAttack code with its standard settings;
  a ``+``-joined list of them (``apgd-ce+square``) runs that custom cascade; ``autoattack-rand``:
  the package's version for randomised defences (APGD-CE and APGD-DLR with 20 EOT draws per
  gradient).
* irat's own APGD (``irat.attacks.apgd``, METHODS.md §3.4), names with an iteration count:
  ``apgd-ce-K``, ``apgd-dlr-K`` (untargeted, uniform start, K iterations, one run); ``saa``
  (LRAT's SAA: targeted APGD-DLR on the 3 highest wrong classes, 20 iterations each) and
  ``saa-K`` (K iterations each). In evaluation they count a point as broken when any iterate
  misclassified it (``keep="fooled"``). APGD chooses its own step sizes: no ``:STEP``.
* ``lm-pgd`` (MAIL's line-search & momentum PGD, ``irat.attacks.lm_pgd``, METHODS.md §3.5: 50
  iterations, γ = 0.8, line search on [4/255, 6/255], then [0, 6/255] after 15 iterations) and
  ``lm-pgd-T`` (T iterations); ``lm-pgd-T:STEP`` sets α_max = STEP and α_min = ⅔·STEP (the
  paper's ratio; ``lm-pgd-50:0.75*eps`` is the paper's setting at any ε). Deterministic; in
  evaluation a point is broken when any iterate misclassified it (``keep="fooled"``).
* ``spsa`` (gradient-free SPSA, ``irat.attacks.spsa``, VIR's settings: 100 Adam iterations,
  lr 0.01, perturbation 0.001, 256 Rademacher samples per estimate, margin loss, uniform start)
  and ``spsa-K`` (K iterations); ``generator=`` seeds the start and the draws; a point is broken
  when any iterate misclassified it.
* ``fmn-K`` (``fmn`` = ``fmn-100``, VIR's FMN-100): the Fast Minimum-Norm attack through foolbox
  3.3 (``irat.attacks.fmn``; an optional dependency: ``pip install 'irat[fmn]'``, checked here so
  that a config naming it fails before a run starts); robust at ε when the minimal norm found
  exceeds ε or FMN found no adversarial point.
``eps = 0`` is allowed (every attack then returns x).
"""

from __future__ import annotations

import functools
import re

import torch
from torch import Tensor, nn

from irat.attacks.apgd import apgd
from irat.attacks.autoattack import COMPONENTS, autoattack
from irat.attacks.fgsm import fgsm
from irat.attacks.fmn import STEPS as FMN_STEPS
from irat.attacks.fmn import fmn
from irat.attacks.fmn import require as require_foolbox
from irat.attacks.lm_pgd import ALPHA_MAX, ALPHA_MIN, lm_pgd
from irat.attacks.lm_pgd import STEPS as LM_STEPS
from irat.attacks.mode import eval_mode
from irat.attacks.pgd import pgd
from irat.attacks.saa import STEPS as SAA_STEPS
from irat.attacks.saa import saa
from irat.attacks.spsa import STEPS as SPSA_STEPS
from irat.attacks.spsa import spsa
from irat.attacks.threat import threat
from irat.types import Attack, AttackResult

ITERATIVE = re.compile(r"(pgd|cw)-(\d+)(?:x(\d+))?(?::(.+))?")
"""``pgd-K``, ``cw-K``, with ``xR`` restarts and ``:STEP`` (groups: kind, K, R, step)."""
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)(?:e-?\d+)?"
_STEP = re.compile(rf"(?:({_NUMBER})\*)?(eps|{_NUMBER})(?:/({_NUMBER}))?")
OWN_APGD = re.compile(r"(apgd-ce|apgd-dlr|saa)-(\d+)")
FMN = re.compile(r"fmn(?:-(\d+))?")
SPSA = re.compile(r"spsa(?:-(\d+))?")
LM_PGD = re.compile(r"lm-pgd(?:-(\d+))?(?::(.+))?")
"""``lm-pgd``, ``lm-pgd-T``, ``lm-pgd-T:STEP`` (groups: T, α_max)."""
_PGD_KW = {"step_size", "restarts", "generator", "start", "kappa"}
_AA_KW = {"seed", "batch_size", "verbose"}


def names() -> list[str]:
    """The attack names ``build`` understands (K: the number of iterations, e.g. ``pgd-20``)."""
    return [
        "clean",
        "fgsm",
        "pgd-K",
        "pgd-K:STEP",
        "cw-K",
        "cw-K:STEP",
        "autoattack",
        "autoattack-rand",
        *COMPONENTS,
        "apgd-ce-K",
        "apgd-dlr-K",
        "saa",
        "saa-K",
        "lm-pgd",
        "lm-pgd-K",
        "lm-pgd-K:STEP",
        "spsa",
        "spsa-K",
        "fmn",
        "fmn-K",
    ]


def parse_step(text: str, eps: float) -> float:
    """The step size written ``text`` for radius ``eps``: ``0.003``, ``1/255``, ``eps/4``,
    ``0.25*eps``, ``2*eps/10``, ``eps``. ``ValueError`` for anything else or a step <= 0."""
    m = _STEP.fullmatch(text.strip().lower().replace(" ", ""))
    if m is None:
        raise ValueError(
            f"step size {text!r} is not understood; write a number (0.003), a fraction (1/255) or a "
            "multiple of eps (eps/4, 0.25*eps)"
        )
    factor, base, divisor = m.group(1), m.group(3), m.group(5)
    value = (float(factor) if factor else 1.0) * (eps if base == "eps" else float(base))
    if divisor is not None:
        if float(divisor) == 0:
            raise ValueError(f"step size {text!r} divides by zero")
        value /= float(divisor)
    if factor and base != "eps":
        raise ValueError(f"step size {text!r}: a factor goes with eps (0.25*eps), not with a number")
    if not value > 0 and eps > 0:
        raise ValueError(f"step size {text!r} must be > 0")
    return value


def clean(model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
    """No attack: ``x`` and its logits (eval mode, ``inference_mode``)."""
    with eval_mode(model), torch.inference_mode():
        return AttackResult(x_adv=x, logits_adv=model(x))


def _fooled(res: AttackResult, y: Tensor) -> Tensor:
    return res.logits_adv.argmax(1) != y


def restarted_pgd(
    model: nn.Module, x: Tensor, y: Tensor, *, restarts: int, generator: torch.Generator | None = None, **kw
) -> AttackResult:
    """``restarts`` runs of ``pgd(..., **kw)``; per sample, the first run that misclassifies wins
    (the last run's point when none does). Stops early once every sample is misclassified."""
    best = pgd(model, x, y, generator=generator, final_logits=True, **kw)
    for _ in range(restarts - 1):
        keep = _fooled(best, y)
        if bool(keep.all()):
            break
        new = pgd(model, x, y, generator=generator, final_logits=True, **kw)
        m = keep.view(-1, *([1] * (x.dim() - 1)))
        best = AttackResult(
            x_adv=torch.where(m, best.x_adv, new.x_adv),
            logits_adv=torch.where(keep[:, None], best.logits_adv, new.logits_adv),
        )
    return best


def build(name: str, *, eps: float, norm: str = "linf", **kw) -> Attack:
    """The attack called ``name`` (see ``names()``) with radius ``eps`` in ``norm``.

    Optional ``kw``: for ``pgd-K``/``cw-K``: ``step_size`` (default ε/4; a ``:STEP`` in the name
    wins), ``restarts``,
    ``generator`` (random starts), ``start``, ``kappa`` (cw); for the AutoAttack names: ``seed``,
    ``batch_size``, ``verbose``. Options that do not concern the named attack are ignored;
    unknown options are an error."""
    unknown = set(kw) - _PGD_KW - _AA_KW
    if unknown:
        raise TypeError(f"build() got unknown options {sorted(unknown)}; valid: {sorted(_PGD_KW | _AA_KW)}")
    threat(norm, eps)  # validates norm and eps (ValueError)
    key = name.strip().lower()
    if key == "clean":
        return clean
    if key == "fgsm":
        return functools.partial(fgsm, eps=eps, norm=norm)
    m = ITERATIVE.fullmatch(key)
    if m is not None:
        kind, steps = m.group(1), int(m.group(2))
        restarts = int(m.group(3)) if m.group(3) is not None else int(kw.get("restarts", 1))
        if restarts < 1:
            raise ValueError(f"{name!r}: the number of restarts must be >= 1")
        step_size = parse_step(m.group(4), eps) if m.group(4) is not None else kw.get("step_size")
        return functools.partial(
            restarted_pgd,
            restarts=restarts,
            generator=kw.get("generator"),
            eps=eps,
            steps=steps,
            step_size=eps / 4 if step_size is None else step_size,
            norm=norm,
            loss="ce" if kind == "pgd" else "cw",
            start=kw.get("start", "uniform"),
            kappa=kw.get("kappa", 50.0),
        )
    m = OWN_APGD.fullmatch(key)
    if m is not None or key == "saa":
        kind, steps = ("saa", SAA_STEPS) if m is None else (m.group(1), int(m.group(2)))
        if kind == "saa":
            return functools.partial(saa, eps=eps, steps=steps, norm=norm, keep="fooled")
        return functools.partial(
            apgd,
            eps=eps,
            steps=steps,
            norm=norm,
            loss=kind.removeprefix("apgd-"),
            start="uniform",
            keep="fooled",
            generator=kw.get("generator"),
        )
    m = LM_PGD.fullmatch(key)
    if m is not None:
        steps = int(m.group(1)) if m.group(1) is not None else LM_STEPS
        alpha_max, alpha_min = ALPHA_MAX, ALPHA_MIN
        if m.group(2) is not None:
            alpha_max = parse_step(m.group(2), eps)
            alpha_min = alpha_max * ALPHA_MIN / ALPHA_MAX
        return functools.partial(
            lm_pgd, eps=eps, steps=steps, norm=norm, alpha_max=alpha_max, alpha_min=alpha_min, keep="fooled"
        )
    m = FMN.fullmatch(key)
    if m is not None:
        steps = int(m.group(1)) if m.group(1) is not None else FMN_STEPS
        if steps < 1:
            raise ValueError(f"{name!r}: FMN needs at least 1 step (fmn-100 is VIR's setting)")
        require_foolbox()
        return functools.partial(fmn, eps=eps, steps=steps, norm=norm)
    m = SPSA.fullmatch(key)
    if m is not None:
        steps = int(m.group(1)) if m.group(1) is not None else SPSA_STEPS
        return functools.partial(
            spsa, eps=eps, steps=steps, norm=norm, keep="fooled", generator=kw.get("generator")
        )
    aa_kw = {k: v for k, v in kw.items() if k in _AA_KW}
    if key == "autoattack":
        return functools.partial(autoattack, eps=eps, norm=norm, attacks=None, **aa_kw)
    if key == "autoattack-rand":
        return functools.partial(autoattack, eps=eps, norm=norm, attacks=None, version="rand", **aa_kw)
    listed = key.split("+")
    if all(part in COMPONENTS for part in listed) and len(set(listed)) == len(listed):
        return functools.partial(autoattack, eps=eps, norm=norm, attacks=listed, **aa_kw)
    hint = " (a step size goes with pgd-K, cw-K and lm-pgd-K only)" if ":" in key else ""
    if "@" in key:
        hint = " (an image limit, @N, goes in an evaluation's attack list, e.g. eval.attacks)"
    raise ValueError(
        f"unknown attack {name!r}{hint}; valid names: {', '.join(names())} (K = iterations, e.g. pgd-20; "
        "STEP = step size, e.g. pgd-100:1/255 or cw-20:eps/4; AutoAttack components can be joined with '+', "
        "e.g. apgd-ce+square)"
    )
