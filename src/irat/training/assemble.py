"""Assembling a training step from a named recipe and the config's overrides.

``build_step(cfg, generator, epoch, state)`` turns ``cfg.train.method`` (a recipe of
``irat.methods``), the ``weighting.*`` and ``train.objective`` overrides and the epoch (burn-in,
FAT's budget) into the ``StepParts`` that ``irat.training.step.train_step`` runs: the training
attack, the weighting scheme with its burn-in, the objective and, for the hard-instance paper's
fast AT, the per-instance ``state`` (ATTA's cache, adaptive targets) that ``instance_state``
builds. Any weighting scheme combines with any objective. New method families add their parts
here, not in the epoch loop.
"""

from __future__ import annotations

import functools

import torch

from irat import attacks, methods, objectives, weighting
from irat.attacks.atta import PerturbationCache
from irat.config import AttackConfig, Config, ConfigError
from irat.objectives.adaptive_targets import AdaptiveTargets
from irat.training.instance_state import InstanceState
from irat.training.step import StepParts

SCHEME_OPTIONS = {
    "uniform": {},
    "gairat": {"lam": "lam", "lam_schedule": "schedule"},
    "wmmr": {"alpha": "alpha", "margin": "margin_on"},
    "mail": {"gamma": "gamma", "beta": "beta", "margin": "margin", "normalize": "norm"},
    "vir": {"alpha": "alpha", "gamma": "gamma", "beta": "beta"},
    "hard": {},
}
"""Per scheme: ``weighting.<option>`` of the config → the parameter of ``irat.weighting.make``."""

SCHEME_BURN_IN = {
    "uniform": 0.0,
    "gairat": methods.GAIRAT_BURN_IN,
    "wmmr": methods.MAIL_BURN_IN,
    "mail": methods.MAIL_BURN_IN,
    "vir": methods.MAIL_BURN_IN,
    "hard": methods.HARD_WARMUP,
}
"""Share of training with all-ones weights when a scheme is used outside its own recipe."""


def lr_schedule(cfg: Config) -> tuple[float, str]:
    """``(lr, schedule)``: ``train.lr`` and ``train.schedule``, or the recipe's where unset."""
    recipe = methods.get(cfg.train.method)
    lr = cfg.train.lr if cfg.train.lr is not None else recipe.lr
    return lr, cfg.train.schedule if cfg.train.schedule is not None else recipe.schedule


def burn_in_epochs(cfg: Config) -> int:
    """``weighting.burn_in`` if set, else the paper's share of training (the recipe's, or the
    scheme's when ``weighting.scheme`` overrides it) times the epochs of this run, rounded."""
    if cfg.weighting.burn_in is not None:
        return cfg.weighting.burn_in
    recipe = methods.get(cfg.train.method)
    scheme = cfg.weighting.scheme or recipe.weighting
    share = recipe.burn_in if scheme == recipe.weighting else SCHEME_BURN_IN[scheme]
    return round(share * cfg.train.epochs)


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
    state: InstanceState | None = None,
) -> StepParts:
    """Assemble attack, weighting and objective for ``epoch`` from the recipe named in
    ``cfg.train.method`` and the config's overrides (any scheme with any objective); ``state``:
    the method's per-instance state from ``instance_state`` (fast AT, adaptive targets)."""
    recipe = methods.get(cfg.train.method)
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
    return StepParts(
        attack=attack,
        needs_nat=needs_nat,
        stats_nat="nat" in needs and not needs_nat,
        weights=weighting.with_burn_in(scheme, burn_in),
        objective=objective,
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
    """Fast AT's attack: ``recipe.attack_steps`` CE step(s) of ``step_share``·ε (or
    ``attack.step_size``) from ATTA's cache (``StepParts.cache`` hands it ``x_start``)."""
    a = cfg.attack
    return functools.partial(
        attacks.pgd,
        eps=a.eps,
        steps=recipe.attack_steps,
        step_size=a.step_size if a.step_size is not None else recipe.step_share * a.eps,
        norm=a.norm,
        loss="ce",
        start="none",
        final_logits=False,
        generator=generator,
    )
