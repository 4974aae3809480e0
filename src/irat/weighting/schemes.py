"""Registry of instance-weighting schemes: ``make(name, **params)`` builds ``scheme(stats:
SampleStats) -> w [B]`` including the normalisation METHODS.md prescribes, and ``needs(name,
**params)`` says which optional statistics the trainer must compute for it.

| name    | raw weights (module)              | normalisation      | reads from SampleStats                  |
|---------|-----------------------------------|--------------------|-----------------------------------------|
| uniform | ones (uniform.py)                 | none               | y                                       |
| gairat  | ½(1+tanh(λ(e) + 5(1−2κ/K)))       | normalize_to_batch | steps_to_flip, epoch                    |
| wmmr    | exp(−α·PM)                        | normalize_to_batch | logits_adv (or logits_nat)              |
| mail    | sigmoid(−γ(PM − β))               | normalize_to_batch | logits_adv / logits_nat / (first-wrong, |
|         |                                   | (or ×3: const3)    | logits_nat_eval)                        |
| vir     | α·exp(−γ·p_y(x))·KL(p(x)‖p(x'))+β | none               | logits_nat, logits_adv                  |
| lrat    | α·clamp(1−t,0)^β per variant, or  | joint: all ω and c | logits_adv [B, m, n] (variants),        |
|         | GAIRAT(κ); c = [C − Σ_j ω]_+      | over mean(c + Σω)  | steps_to_flip (GD)                      |
| hard    | p_y(x') (hard.py)                 | normalize_to_batch | logits_adv                              |

Parameters (defaults in brackets):

* gairat: ``num_steps`` K [10], ``lam`` [−1], ``lam_max`` [None: ∞, or 10 for linear],
  ``schedule`` ∈ {fixed, linear, piecewise} [fixed], ``epochs`` [120], ``start`` [0]. λ at the
  step's epoch is ``gairat_lambda(stats.epoch, ...)``. The shared burn-in (``with_burn_in``) is
  applied separately by the trainer; ``start`` is the schedule's own reweighting start.
* wmmr: ``alpha`` [0.1], ``margin_on`` ∈ {adv, nat} [adv].
* mail: ``gamma`` [5.0], ``beta`` [0.05] (MAIL-TRADES/-MART and BiLAW's baseline; MAIL-AT uses
  30 and −0.07), ``margin`` ∈ {adv, nat, dif} [adv], ``norm`` ∈ {batch, const3} [batch].
* vir: ``alpha`` [7.0], ``gamma`` [10.0], ``beta`` [0.007] (VIR-AT).
* lrat: ``alpha`` [2.0], ``beta`` [0.5] (LSAT: 1 and 0, ω ≡ 1), ``c`` [0.1], ``rules`` one per
  variant column ∈ {lrat, gd, none} [("lrat",)]: α(1 − t)^β, GAIRAT's raw weight of κ (``lam``
  [−1], ``num_steps`` K [10]), or 0 (a variant run only for the data term). Returns [B, m + 1]
  (``irat.weighting.lrat_coefficients``: column m is the data term's c).
* hard: no parameters (the hard-instance paper's RW weights).

``needs`` answers a subset of {"nat", "kappa", "first_wrong"}: "nat" = natural logits
(``SampleStats.logits_nat``), "kappa" = ``steps_to_flip`` from the PGD path (``record_path=True``),
"first_wrong" = ``logits_first_wrong`` and ``logits_nat_eval`` as well (PM_dif, both from the
attack in eval mode; ``record_path=True, first_wrong=True``, one or two more forwards). A scheme
raises ``ValueError`` naming the method option when a statistic it needs is None.

BatchNorm mode: every statistic compares distributions of one mode. ``logits_adv`` and
``logits_nat`` are train-mode (the training forwards; PM_adv, PM_nat, VIR's p_y(x) and S_d);
``logits_first_wrong`` and ``logits_nat_eval`` are eval-mode (the attack's path; PM_dif).

All schemes return detached float tensors [B] (lrat: [B, m + 1]).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
from torch import Tensor

from irat import losses
from irat.types import SampleStats
from irat.weighting.gairat import SCHEDULES, gairat, gairat_lambda
from irat.weighting.hard import hard
from irat.weighting.lrat import lrat, lrat_coefficients
from irat.weighting.mail import const3, mail, prob_margin_adv, prob_margin_dif, prob_margin_nat
from irat.weighting.normalize import normalize_to_batch
from irat.weighting.uniform import uniform
from irat.weighting.vir import vir, vir_stats
from irat.weighting.wmmr import wmmr

Scheme = Callable[[SampleStats], Tensor]

NAMES = ("uniform", "gairat", "wmmr", "mail", "vir", "lrat", "hard")
LRAT_RULES = ("lrat", "gd", "none")


def _require(value: Tensor | None, what: str, option: str) -> Tensor:
    if value is None:
        raise ValueError(f"weighting {option} needs {what}, but SampleStats has None there")
    return value


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise ValueError(f"weighting {option}: {value!r} is not one of {allowed}")
    return value


_NAT = "the natural logits (SampleStats.logits_nat; compute the natural forward)"
_PATH_KAPPA = "steps_to_flip (κ: run the training PGD with record_path=True)"
_PATH_FIRST = (
    "logits_first_wrong and logits_nat_eval (the first misclassified PGD iterate's logits and the clean x's, "
    "from the attack in eval mode; record_path=True, first_wrong=True)"
)


def _build_uniform() -> tuple[Scheme, set[str]]:
    return (lambda stats: uniform(stats.y)), set()


def _build_gairat(
    *,
    num_steps: int = 10,
    lam: float = -1.0,
    lam_max: float | None = None,
    schedule: str = "fixed",
    epochs: int = 120,
    start: int = 0,
) -> tuple[Scheme, set[str]]:
    _choice(schedule, SCHEDULES, "gairat schedule")
    schedule_at = functools.partial(
        gairat_lambda, epochs=epochs, start=start, lam=lam, lam_max=lam_max, schedule=schedule
    )
    schedule_at(start)  # validate the schedule's parameters now rather than at the first step
    if num_steps <= 0:
        raise ValueError(f"weighting gairat: num_steps (K) must be positive, got {num_steps}")

    def scheme(stats: SampleStats) -> Tensor:
        kappa = _require(stats.steps_to_flip, _PATH_KAPPA, "gairat")
        kappa = kappa.to(stats.logits_adv.dtype)  # weights in the logits' float dtype
        return normalize_to_batch(gairat(kappa, num_steps, schedule_at(stats.epoch)))

    return scheme, {"kappa"}


def _build_wmmr(*, alpha: float = 0.1, margin_on: str = "adv") -> tuple[Scheme, set[str]]:
    _choice(margin_on, ("adv", "nat"), "wmmr margin_on")

    def scheme(stats: SampleStats) -> Tensor:
        if margin_on == "nat":
            m = prob_margin_nat(_require(stats.logits_nat, _NAT, "wmmr with margin_on='nat'"), stats.y)
        else:
            m = prob_margin_adv(stats.logits_adv, stats.y)
        return normalize_to_batch(wmmr(m, alpha))

    return scheme, ({"nat"} if margin_on == "nat" else set())


def _build_mail(
    *, gamma: float = 5.0, beta: float = 0.05, margin: str = "adv", norm: str = "batch"
) -> tuple[Scheme, set[str]]:
    _choice(margin, ("adv", "nat", "dif"), "mail margin")
    _choice(norm, ("batch", "const3"), "mail norm")
    normalise = normalize_to_batch if norm == "batch" else const3

    def scheme(stats: SampleStats) -> Tensor:
        if margin == "adv":
            pm = prob_margin_adv(stats.logits_adv, stats.y)
        elif margin == "nat":
            pm = prob_margin_nat(_require(stats.logits_nat, _NAT, "mail with margin='nat'"), stats.y)
        else:
            z_nat = _require(stats.logits_nat_eval, _PATH_FIRST, "mail with margin='dif'")
            z_wrong = _require(stats.logits_first_wrong, _PATH_FIRST, "mail with margin='dif'")
            pm = prob_margin_dif(z_nat, z_wrong, stats.y)
        return normalise(mail(pm, gamma, beta))

    need = {"adv": set(), "nat": {"nat"}, "dif": {"first_wrong"}}[margin]
    return scheme, need


def _build_vir(*, alpha: float = 7.0, gamma: float = 10.0, beta: float = 0.007) -> tuple[Scheme, set[str]]:
    def scheme(stats: SampleStats) -> Tensor:
        z_nat = _require(stats.logits_nat, _NAT, "vir")
        p_y, kl_nat_adv = vir_stats(z_nat, stats.logits_adv, stats.y)
        return vir(p_y, kl_nat_adv, alpha, gamma, beta)

    return scheme, {"nat"}


def _build_lrat(
    *,
    alpha: float = 2.0,
    beta: float = 0.5,
    c: float = 0.1,
    rules: tuple[str, ...] = ("lrat",),
    lam: float = -1.0,
    num_steps: int = 10,
) -> tuple[Scheme, set[str]]:
    rules = tuple(rules)
    for rule in rules:
        _choice(rule, LRAT_RULES, "lrat rule")
    if not rules or rules.count("gd") > 1:
        raise ValueError(f"weighting lrat: rules {rules} must name one rule per variant, at most one 'gd'")
    if not (alpha > 0 and beta >= 0 and c > 0):
        raise ValueError(
            f"weighting lrat: needs alpha > 0, beta >= 0 and C > 0 (got alpha={alpha}, beta={beta}, "
            f"c={c}); LSAT is alpha=1, beta=0"
        )
    if num_steps <= 0:
        raise ValueError(f"weighting lrat: num_steps (K of the GD variant) must be positive, got {num_steps}")

    def scheme(stats: SampleStats) -> Tensor:
        z = stats.logits_adv
        if z.dim() != 3 or z.shape[1] != len(rules):
            raise ValueError(
                f"weighting lrat needs the logits of {len(rules)} variants per sample [B, m, n], "
                f"got shape {tuple(z.shape)}; train with an LRAT/LSAT method"
            )
        b, m, n = z.shape
        t = losses.pm(z.reshape(b * m, n), stats.y[:, None].expand(b, m).reshape(-1)).view(b, m)
        omega = lrat(t, alpha, beta)
        columns = []
        for j, rule in enumerate(rules):  # m ≤ 4 columns, not samples
            if rule == "gd":
                kappa = _require(stats.steps_to_flip, _PATH_KAPPA, "lrat with a GD variant")
                columns.append(gairat(kappa.to(z.dtype), num_steps, lam))
            else:
                columns.append(omega[:, j] if rule == "lrat" else torch.zeros_like(omega[:, j]))
        return lrat_coefficients(torch.stack(columns, 1), c)

    return scheme, ({"kappa"} if "gd" in rules else set())


def _build_hard() -> tuple[Scheme, set[str]]:
    return (lambda stats: normalize_to_batch(hard(stats.logits_adv, stats.y))), set()


_BUILDERS: dict[str, Callable[..., tuple[Scheme, set[str]]]] = {
    "uniform": _build_uniform,
    "gairat": _build_gairat,
    "wmmr": _build_wmmr,
    "mail": _build_mail,
    "vir": _build_vir,
    "lrat": _build_lrat,
    "hard": _build_hard,
}


def _build(name: str, params: dict) -> tuple[Scheme, set[str]]:
    if name not in _BUILDERS:
        raise ValueError(f"unknown weighting scheme {name!r}; choose from {NAMES}")
    builder = _BUILDERS[name]
    accepted = set(inspect.signature(builder).parameters)
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(
            f"weighting {name}: unknown parameter(s) {unknown}; accepted: {sorted(accepted) or 'none'}"
        )
    return builder(**params)


def make(name: str, **params) -> Scheme:
    """``scheme(stats) -> w [B]`` for scheme ``name`` with ``params`` (see the module docstring),
    normalisation included, burn-in not included (wrap with ``with_burn_in``)."""
    scheme, _ = _build(name, params)
    return scheme


def needs(name: str, **params) -> set[str]:
    """Which of {"nat", "kappa", "first_wrong"} scheme ``name`` with ``params`` needs: natural
    logits, κ from the PGD path, the first misclassified iterate's logits."""
    _, need = _build(name, params)
    return set(need)


SCHEME_FUNCTIONS: dict[str, Callable[..., Scheme]] = {n: functools.partial(make, n) for n in NAMES}
"""``SCHEME_FUNCTIONS[name](**params)`` is ``make(name, **params)``."""
