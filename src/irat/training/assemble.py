"""Assembling a training step from a named recipe and the config's overrides.

``build_step(cfg, generator, epoch)`` turns ``cfg.train.method`` (a recipe of ``irat.methods``),
the ``weighting.*`` and ``train.objective`` overrides and the epoch (burn-in, FAT's budget) into the
``StepParts`` that ``irat.training.step.train_step`` runs: the training attack, the weighting
scheme with its burn-in, and the objective. Any weighting scheme combines with any objective.
New method families add their parts here, not in the epoch loop: LRAT/LSAT (``Recipe.variants``)
assemble m attacks stacked per sample (``irat.attacks.variants``), the lrat weights [B, m + 1]
and the lrat objective (``variant_plan``, ``_variant_step``).

The learned weightings (bilaw, bilaw-np) keep state across steps and epochs: ``build_learned``
makes their ``LearnedWeighting`` once per run (from the ``bilaw`` section and the held-out D_meta),
and ``build_step`` binds it, with this epoch's attack and objective, into ``StepParts.meta_step``.

The hard-instance paper's fast AT keeps per-instance state (ATTA's perturbation cache, adaptive
targets): ``instance_state`` builds it once per run and ``build_step(..., state=)`` hands it to the
step (``StepParts.cache``, ``StepParts.targets``).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import torch

from irat import attacks, methods, objectives, weighting
from irat.attacks.atta import PerturbationCache
from irat.config import AttackConfig, Config, ConfigError, scheme_of
from irat.data.split import Split
from irat.objectives.adaptive_targets import AdaptiveTargets
from irat.training.instance_state import InstanceState
from irat.training.schedules import first_drop
from irat.training.step import StepParts
from irat.types import Attack

SCHEME_OPTIONS = {
    "uniform": {},
    "gairat": {"lam": "lam", "lam_schedule": "schedule"},
    "wmmr": {"alpha": "alpha", "margin": "margin_on"},
    "mail": {"gamma": "gamma", "beta": "beta", "margin": "margin", "normalize": "norm"},
    "vir": {"alpha": "alpha", "gamma": "gamma", "beta": "beta"},
    "lrat": {"alpha": "alpha", "beta": "beta", "c": "c", "lam": "lam"},
    "bilaw": {},  # options in the config's bilaw section (build_learned)
    "bilaw-np": {},
    "hard": {},
}
"""Per scheme: ``weighting.<option>`` of the config → the parameter of ``irat.weighting.make``."""

SCHEME_BURN_IN = {
    "uniform": 0.0,
    "gairat": methods.GAIRAT_BURN_IN,
    "wmmr": methods.MAIL_BURN_IN,
    "mail": methods.MAIL_BURN_IN,
    "vir": methods.MAIL_BURN_IN,
    "lrat": 0.0,
    "bilaw": 0.0,  # BiLAW describes no burn-in (§4.11)
    "bilaw-np": 0.0,
    "hard": methods.HARD_WARMUP,
}
"""Burn-in of a scheme used outside its own recipe (``Recipe.burn_in``'s values)."""


def burn_in_epochs(cfg: Config) -> int:
    """Epochs with all-ones weights: ``weighting.burn_in`` if set, else the recipe's rule (the
    scheme's when ``weighting.scheme`` overrides it): until the first learning-rate drop of this
    run's schedule (``schedules.first_drop``), or a share of ``train.epochs``, rounded but at
    least one epoch when the share is not zero (a paper that burns in does so in short runs too:
    fast AT's 5/38 is 1 epoch of 3, not 0).

    A schedule without a drop (constant, or milestones past the end) gives a reweighting method no
    start: ``ConfigError`` asking for ``weighting.burn_in``."""
    if cfg.weighting.burn_in is not None:
        return cfg.weighting.burn_in
    scheme, rule = _burn_in_rule(cfg)
    if rule != methods.FIRST_DROP:
        return max(1, round(rule * cfg.train.epochs)) if rule > 0 else 0
    t, schedule = cfg.train, train_defaults(cfg)["schedule"]
    drop = first_drop(epochs=t.epochs, schedule=schedule, milestones=t.milestones, gamma=t.lr_decay)
    if drop is None:
        raise ConfigError(
            f"{scheme} weights start at the first learning-rate drop, and this {schedule} schedule has "
            f"none within {t.epochs} epochs; set --weighting.burn_in=N (epochs of all-ones weights, 0: "
            "reweight from the start) or use a piecewise schedule with a milestone"
        )
    return drop


def train_defaults(cfg: Config) -> dict:
    """``{"lr": ..., "warmup": ..., "schedule": ..., "why": ...}`` of this run: ``train.lr`` /
    ``train.warmup`` / ``train.schedule`` where given, else the recipe's (``Recipe.lr``,
    ``Recipe.warmup``, ``Recipe.schedule``; with ``train.objective`` overriding the recipe's
    objective, the learning rate of that objective's own recipe): never a change of a value the
    user set."""
    recipe = methods.get(cfg.train.method)
    t = cfg.train
    objective = t.objective or recipe.objective
    if objective != recipe.objective:  # another objective brings its own recipe's learning rate
        own = methods.get(methods.OBJECTIVE_RECIPE[objective])
        recipe = dataclasses.replace(recipe, lr=own.lr, defaults_why=own.defaults_why)
    return {
        "lr": t.lr if t.lr is not None else recipe.lr,
        # a recipe's warm-up never takes the whole run (a 1-epoch run has none)
        "warmup": t.warmup if t.warmup is not None else min(recipe.warmup, t.epochs - 1),
        "schedule": t.schedule if t.schedule is not None else recipe.schedule,
        "why": recipe.defaults_why,
    }


def fill_defaults(cfg: Config) -> None:
    """Write into ``cfg`` what a run takes from its recipe where the config leaves it unset:
    ``weighting.burn_in`` (``burn_in_epochs``), ``train.lr``, ``train.warmup`` and
    ``train.schedule`` (``train_defaults``). ``irat.train`` stores the result in the run's config;
    ``irat bench`` compares a stored run with a wanted config through it."""
    cfg.weighting.burn_in = burn_in_epochs(cfg)
    chosen = train_defaults(cfg)
    cfg.train.lr, cfg.train.warmup, cfg.train.schedule = chosen["lr"], chosen["warmup"], chosen["schedule"]


def _burn_in_rule(cfg: Config) -> tuple[str, float | str]:
    recipe = methods.get(cfg.train.method)
    scheme = cfg.weighting.scheme or recipe.weighting
    return scheme, recipe.burn_in if scheme == recipe.weighting else SCHEME_BURN_IN[scheme]


def describe_burn_in(cfg: Config) -> str | None:
    """One line saying when the weights start and why (None for uniform weights); printed at the
    start of a run."""
    scheme, rule = _burn_in_rule(cfg)
    if scheme == "uniform":
        return None
    n, t = burn_in_epochs(cfg), cfg.train
    if cfg.weighting.burn_in is not None:
        why = "weighting.burn_in"
    elif rule == methods.FIRST_DROP:
        why = f"the first learning-rate drop of this {train_defaults(cfg)['schedule']} schedule"
    else:
        why = f"{rule:.0%} of the epochs"
    ones = f"epochs 0-{n - 1} use all-ones weights" if n > 0 else "no burn-in"
    return f"{scheme} weights from epoch {n} of {t.epochs} (0-based; {ones}; {why})"


def scheme_params(cfg: Config) -> tuple[str, dict]:
    """The weighting scheme's name and its ``irat.weighting.make`` parameters: the recipe's
    defaults (when the scheme is the recipe's own), overridden by ``weighting.*`` options."""
    recipe = methods.get(cfg.train.method)
    name = cfg.weighting.scheme or recipe.weighting
    options = SCHEME_OPTIONS[name]
    chosen = dict(recipe.params) if name == recipe.weighting else {}
    for option in sorted({o for opts in SCHEME_OPTIONS.values() for o in opts}):
        value = getattr(cfg.weighting, option)
        if value is None:
            continue
        if option not in options:
            valid = ", ".join(options) or "no options"
            raise ConfigError(f"weighting.{option} does not apply to the {name} scheme (it takes {valid})")
        chosen[option] = value
    params = {options[k]: v for k, v in chosen.items()}
    if name == "gairat":
        params.update(num_steps=cfg.attack.steps, epochs=cfg.train.epochs, start=burn_in_epochs(cfg))
    if name == "lrat":
        params.update(rules=variant_plan(cfg).rules, num_steps=cfg.attack.steps)
    return name, params


@dataclass(frozen=True)
class VariantPlan:
    """LRAT/LSAT's columns (METHODS.md §4.10): ``attacks`` the attack of each variant column
    (``methods.VARIANTS``), ``rules`` its weight (``lrat``: α(1 − t)^β, ``gd``: GAIRAT's, ``none``:
    a column run for the data term alone), ``data_term`` the column of x* (None: natural x)."""

    attacks: tuple[str, ...]
    rules: tuple[str, ...]
    data_term: int | None


def variant_plan(cfg: Config) -> VariantPlan:
    """The variant columns of an LRAT/LSAT config: the method's variants (or ``attack.variants``),
    plus one column when the data term names an attack the method does not simulate."""
    variants = tuple(cfg.attack.variants or methods.get(cfg.train.method).variants)
    choice = cfg.train.data_term or methods.default_data_term(variants)
    rules = tuple("gd" if v == "gd" else "lrat" for v in variants)
    if choice == "natural":
        return VariantPlan(variants, rules, None)
    if choice == "same":
        return VariantPlan(variants, rules, 0)
    same_attack = [j for j, v in enumerate(variants) if v == choice or (choice, v) == ("pgd", "gd")]
    if same_attack:
        return VariantPlan(variants, rules, same_attack[0])
    return VariantPlan((*variants, choice), (*rules, "none"), len(variants))


def _variant_attack(name: str, cfg: Config, generator: torch.Generator | None) -> Attack:
    """One LRAT variant's training attack: SAA (3 targets × 20 APGD iterations, no start), or PGD
    on CE (``pgd``; ``gd`` also records κ) or on the CW loss (``cw``, κ_cw = 50), K = attack.steps,
    step ε/10 unless attack.step_size is set (§3.2)."""
    a, recipe = cfg.attack, methods.get(cfg.train.method)
    if name == "saa":
        return functools.partial(attacks.saa, eps=a.eps, norm=a.norm)
    loss = "cw" if name == "cw" else "ce"
    return _pgd(
        cfg,
        recipe,
        generator,
        steps=a.steps,
        loss=loss,
        start=a.start or recipe.start,
        record_path=name == "gd",
        first_wrong=False,
    )


def _variant_step(cfg: Config, generator: torch.Generator | None) -> StepParts:
    """LRAT/LSAT: the variants' attacks, the lrat weights (ω ≡ 1 on every simulated variant during
    a burn-in, if one is asked for) and the lrat objective with its data term."""
    plan = variant_plan(cfg)
    _, params = scheme_params(cfg)
    uniform = [r if r == "none" else "lrat" for r in plan.rules]
    try:
        scheme = weighting.make("lrat", **params)
        during = weighting.make("lrat", **{**params, "alpha": 1.0, "beta": 0.0, "rules": uniform})
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return StepParts(
        attack=functools.partial(
            attacks.variants, attacks=[_variant_attack(v, cfg, generator) for v in plan.attacks]
        ),
        needs_nat=plan.data_term is None,
        stats_nat=False,
        weights=weighting.with_burn_in(scheme, burn_in_epochs(cfg), during),
        objective=functools.partial(objectives.lrat, data_term=plan.data_term),
    )


def build_learned(cfg: Config, num_classes: int, meta: Split) -> weighting.LearnedWeighting | None:
    """The learned weighting of ``cfg`` (None for the formula schemes): its options from the
    ``bilaw`` section (unset ones: ``LearnedWeighting``'s defaults), D_meta = ``meta``, seeded by
    ``train.seed``. Built once per run: it carries the weight network across steps and epochs."""
    name = scheme_of(cfg)
    if name not in weighting.LEARNED:
        return None
    b = cfg.bilaw
    options = {
        "input": b.input,
        "margin_on": b.margin_on,
        "hidden": tuple(b.hidden) if b.hidden is not None else None,
        "lr": b.lr,
        "momentum": b.momentum,
        "weight_decay": b.weight_decay,
        "batch_size": b.val_batch_size,
        "attack_on": b.attack_on,
    }
    chosen = {k: v for k, v in options.items() if v is not None}
    try:
        return weighting.LearnedWeighting(
            meta, num_classes, parametric=name == "bilaw", seed=cfg.train.seed, **chosen
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None


def target_beta(cfg: Config) -> float:
    """β of the adaptive targets: ``hard.beta``, else the recipe's (1: the labels, no targets)."""
    return cfg.hard.beta if cfg.hard.beta is not None else methods.get(cfg.train.method).target_beta


def instance_state(
    cfg: Config, split, spec, *, augment: bool, generator: torch.Generator | None = None
) -> InstanceState | None:
    """The per-instance state of ``cfg``'s method for the training ``split`` (on its device):
    ATTA's cache on the crop canvas of ``spec`` (padding ``spec.crop_padding`` when ``augment``),
    initialised from ``generator``, and the adaptive targets when β < 1; None when the method
    keeps none."""
    recipe = methods.get(cfg.train.method)
    beta = target_beta(cfg)
    if not recipe.cached and beta >= 1:
        return None
    cache = targets = None
    if recipe.cached:
        padding = spec.crop_padding if augment else 0
        cache = PerturbationCache(
            split.idx, split.x, padding=padding, eps=cfg.attack.eps, norm=cfg.attack.norm, generator=generator
        )
    if beta < 1:
        targets = AdaptiveTargets(
            split.idx,
            split.y,
            spec.num_classes,
            rho=cfg.hard.rho,
            beta=beta,
            warmup=burn_in_epochs(cfg),
            dtype=split.x.dtype,
        )
    return InstanceState(cache=cache, targets=targets, reset=cfg.hard.reset if recipe.cached else 0)


def build_step(
    cfg: Config,
    generator: torch.Generator | None = None,
    epoch: int = 0,
    learned: weighting.LearnedWeighting | None = None,
    state: InstanceState | None = None,
) -> StepParts:
    """Assemble attack, weighting and objective for ``epoch`` from the recipe named in
    ``cfg.train.method`` and the config's overrides (any scheme with any objective). A learned
    weighting (bilaw, bilaw-np) needs ``learned`` from ``build_learned``; fast AT and adaptive
    targets need ``state`` from ``instance_state``."""
    recipe = methods.get(cfg.train.method)
    if recipe.variants:
        return _variant_step(cfg, generator)
    objective_name = cfg.train.objective or recipe.objective
    objective = objectives.OBJECTIVES[objective_name]
    trade_off = cfg.train.trade_off if cfg.train.trade_off is not None else recipe.trade_off
    needs_nat = objectives.NEEDS_NAT[objective_name]
    if objective_name in ("trades", "mart"):
        objective = functools.partial(objective, beta=trade_off if trade_off is not None else 6.0)
    if objective_name == "finetune":
        lam = trade_off if trade_off is not None else 6.0
        objective = functools.partial(objective, lam=lam, detach_clean=cfg.hard.detach_clean)
        needs_nat = lam != 0  # λ = 0: AT's loss, no natural forward
    _check_state(cfg, recipe, objective_name, state)
    name, params = scheme_params(cfg)
    if name in weighting.LEARNED:
        if learned is None:
            raise ConfigError(
                f"the {name} weighting is learned: pass learned=build_learned(cfg, num_classes, meta_split) "
                "(irat.train does this)"
            )
        scheme, needs = learned.weights, learned.needs()
    else:
        try:
            scheme, needs = weighting.make(name, **params), weighting.needs(name, **params)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    burn_in = burn_in_epochs(cfg)
    if epoch < burn_in:  # all-ones weights: no forward that only the weights read (κ stays recorded)
        needs = needs & {"kappa"}
    attack = None
    if recipe.cached:
        attack = _cached_attack(cfg, recipe, generator)
    elif objectives.NEEDS_ADV[objective_name]:
        a = cfg.attack
        attack_loss = recipe.attack_loss or "ce"
        if objective_name == "trades" and recipe.attack_loss != "kl":
            attack_loss = "kl"  # TRADES' inner maximisation, whatever the recipe's attack was
        attack = _pgd(
            cfg,
            recipe,
            generator,
            steps=a.steps,
            loss=attack_loss,
            start=a.start or recipe.start,
            record_path=bool(needs & {"kappa", "first_wrong"}),
            first_wrong="first_wrong" in needs,
            tau=methods.fat_tau(epoch, cfg.train.epochs) if recipe.early_stop else None,
            noise=methods.FAT_NOISE if recipe.early_stop else 0.0,
        )
    meta_step = None
    if name in weighting.LEARNED and epoch >= burn_in:
        meta_step = functools.partial(learned.meta_step, attack=attack, objective=objective)
    return StepParts(
        attack=attack,
        needs_nat=needs_nat,
        stats_nat="nat" in needs and not needs_nat,
        weights=weighting.with_burn_in(scheme, burn_in),
        objective=objective,
        meta_step=meta_step,
        cache=state.cache if state is not None else None,
        targets=state.targets if state is not None else None,
    )


def _check_state(
    cfg: Config, recipe: methods.Recipe, objective_name: str, state: InstanceState | None
) -> None:
    """The fast-AT options fit the method, and ``state`` holds what it needs."""
    beta = target_beta(cfg)
    if beta < 1 and objective_name not in objectives.SOFT_TARGETS:
        raise ConfigError(
            f"adaptive targets (hard.beta={beta:g} < 1) need an objective that takes soft targets "
            f"({', '.join(objectives.SOFT_TARGETS)}), not {objective_name!r}"
        )
    if recipe.cached:
        if cfg.attack.steps not in (AttackConfig.steps, recipe.attack_steps):
            raise ConfigError(
                f"{recipe.name} takes {recipe.attack_steps} PGD step per batch from ATTA's cache "
                f"(Algorithm 1); attack.steps={cfg.attack.steps} does not apply to it"
            )
        if cfg.attack.start is not None:
            raise ConfigError(f"{recipe.name} starts from ATTA's cache; attack.start does not apply to it")
    missing = (recipe.cached and (state is None or state.cache is None)) or (
        beta < 1 and (state is None or state.targets is None)
    )
    if missing:
        raise ValueError(
            f"method {cfg.train.method!r} keeps per-instance state (ATTA's cache, adaptive targets): "
            "build it with irat.training.assemble.instance_state(cfg, split, spec, augment=...) and "
            "pass state= to build_step"
        )


def _cached_attack(cfg: Config, recipe: methods.Recipe, generator: torch.Generator | None):
    """Fast AT's attack: ``recipe.attack_steps`` CE step(s) of ``step``·ε (or
    ``attack.step_size``) from ATTA's cache (``StepParts.cache`` hands it ``x_start``)."""
    return _pgd(cfg, recipe, generator, steps=recipe.attack_steps, loss="ce", start="none")


def _pgd(
    cfg: Config,
    recipe: methods.Recipe,
    generator: torch.Generator | None,
    *,
    steps: int,
    loss: str,
    **options,
) -> Attack:
    """The training PGD of every recipe: ε and the norm from ``attack``, the step
    ``attack.step_size`` or ``recipe.step``·ε, no final forward (the step computes the logits it
    needs); ``options``: ``start``, ``record_path``, ``first_wrong``, FAT's ``tau`` and ``noise``."""
    a = cfg.attack
    return functools.partial(
        attacks.pgd,
        eps=a.eps,
        steps=steps,
        step_size=a.step_size if a.step_size is not None else a.eps * recipe.step,
        norm=a.norm,
        loss=loss,
        final_logits=False,
        generator=generator,
        **options,
    )
