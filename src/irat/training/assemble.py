"""Assembling a training step from a named recipe and the config's overrides.

``build_step(cfg, generator, epoch)`` turns ``cfg.train.method`` (a recipe of ``irat.methods``),
the ``weighting.*`` and ``train.objective`` overrides and the epoch (burn-in, FAT's budget) into the
``StepParts`` that ``irat.training.step.train_step`` runs: the training attack, the weighting
scheme with its burn-in, and the objective. Any weighting scheme combines with any objective.
New method families add their parts here, not in the epoch loop.
"""

from __future__ import annotations

import dataclasses
import functools

import torch

from irat import attacks, methods, objectives, weighting
from irat.config import Config, ConfigError
from irat.training.schedules import first_drop
from irat.training.step import StepParts

SCHEME_OPTIONS = {
    "uniform": {},
    "gairat": {"lam": "lam", "lam_schedule": "schedule"},
    "wmmr": {"alpha": "alpha", "margin": "margin_on"},
    "mail": {"gamma": "gamma", "beta": "beta", "margin": "margin", "normalize": "norm"},
    "vir": {"alpha": "alpha", "gamma": "gamma", "beta": "beta"},
}
"""Per scheme: ``weighting.<option>`` of the config → the parameter of ``irat.weighting.make``."""

SCHEME_BURN_IN = {
    "uniform": 0.0,
    "gairat": methods.GAIRAT_BURN_IN,
    "wmmr": methods.MAIL_BURN_IN,
    "mail": methods.MAIL_BURN_IN,
    "vir": methods.MAIL_BURN_IN,
}
"""Burn-in of a scheme used outside its own recipe (``Recipe.burn_in``'s values)."""


def burn_in_epochs(cfg: Config) -> int:
    """Epochs with all-ones weights: ``weighting.burn_in`` if set, else the recipe's rule (the
    scheme's when ``weighting.scheme`` overrides it): until the first learning-rate drop of this
    run's schedule (``schedules.first_drop``), or a share of ``train.epochs``, rounded.

    A schedule without a drop (constant, or milestones past the end) gives a reweighting method no
    start: ``ConfigError`` asking for ``weighting.burn_in``."""
    if cfg.weighting.burn_in is not None:
        return cfg.weighting.burn_in
    scheme, rule = _burn_in_rule(cfg)
    if rule != methods.FIRST_DROP:
        return round(rule * cfg.train.epochs)
    t = cfg.train
    drop = first_drop(epochs=t.epochs, schedule=t.schedule, milestones=t.milestones, gamma=t.lr_decay)
    if drop is None:
        raise ConfigError(
            f"{scheme} weights start at the first learning-rate drop, and this {t.schedule} schedule has "
            f"none within {t.epochs} epochs; set --weighting.burn_in=N (epochs of all-ones weights, 0: "
            "reweight from the start) or use a piecewise schedule with a milestone"
        )
    return drop


def train_defaults(cfg: Config) -> dict:
    """``{"lr": ..., "warmup": ..., "why": ...}`` of this run: ``train.lr`` / ``train.warmup``
    where given, else the recipe's (``Recipe.lr``, ``Recipe.warmup``; with ``train.objective`` overriding the
    recipe's objective, the learning rate of that objective's own recipe): never a change of a value
    the user set."""
    recipe = methods.get(cfg.train.method)
    t = cfg.train
    objective = t.objective or recipe.objective
    if objective != recipe.objective:  # another objective brings its own recipe's learning rate
        own = methods.get(methods.OBJECTIVE_RECIPE[objective])
        recipe = dataclasses.replace(recipe, lr=own.lr, defaults_why=own.defaults_why)
    return {
        "lr": t.lr if t.lr is not None else recipe.lr,
        "warmup": t.warmup if t.warmup is not None else recipe.warmup,
        "why": recipe.defaults_why,
    }


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
        why = f"the first learning-rate drop of this {t.schedule} schedule"
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
    return name, params


def build_step(cfg: Config, generator: torch.Generator | None = None, epoch: int = 0) -> StepParts:
    """Assemble attack, weighting and objective for ``epoch`` from the recipe named in
    ``cfg.train.method`` and the config's overrides (any scheme with any objective)."""
    recipe = methods.get(cfg.train.method)
    objective_name = cfg.train.objective or recipe.objective
    objective = objectives.OBJECTIVES[objective_name]
    trade_off = cfg.train.trade_off if cfg.train.trade_off is not None else recipe.trade_off
    if objective_name in ("trades", "mart"):
        objective = functools.partial(objective, beta=trade_off if trade_off is not None else 6.0)
    name, params = scheme_params(cfg)
    try:
        scheme, needs = weighting.make(name, **params), weighting.needs(name, **params)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    burn_in = burn_in_epochs(cfg)
    if epoch < burn_in:  # all-ones weights: no forward that only the weights read (κ stays recorded)
        needs = needs & {"kappa"}
    attack = None
    if objectives.NEEDS_ADV[objective_name]:
        a = cfg.attack
        attack_loss = recipe.attack_loss or "ce"
        if objective_name == "trades" and recipe.attack_loss != "kl":
            attack_loss = "kl"  # TRADES' inner maximisation, whatever the recipe's attack was
        attack = functools.partial(
            attacks.pgd,
            eps=a.eps,
            steps=a.steps,
            step_size=a.step_size if a.step_size is not None else a.eps / 4,
            norm=a.norm,
            loss=attack_loss,
            start=a.start or recipe.start,
            record_path=bool(needs & {"kappa", "first_wrong"}),
            first_wrong="first_wrong" in needs,
            final_logits=False,
            generator=generator,
            tau=methods.fat_tau(epoch, cfg.train.epochs) if recipe.early_stop else None,
            noise=methods.FAT_NOISE if recipe.early_stop else 0.0,
        )
    needs_nat = objectives.NEEDS_NAT[objective_name]
    return StepParts(
        attack=attack,
        needs_nat=needs_nat,
        stats_nat="nat" in needs and not needs_nat,
        weights=weighting.with_burn_in(scheme, burn_in),
        objective=objective,
    )
