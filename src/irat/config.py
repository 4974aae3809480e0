"""Typed configuration: dataclasses with commented defaults, loadable from YAML, overridable with
``--section.key=value`` or a bare ``--key=value`` (resolved by ``bare_key``). Unknown keys and
invalid values raise one ``ConfigError`` that says what was wrong and lists the valid choices. No
``eval``, no ``type=bool`` pitfalls: values are parsed by the declared type of the field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A configuration value or key is invalid."""


@dataclass
class DataConfig:
    dataset: str = "fashion-mnist"  # a name from `irat.data.names()`
    root: str | None = None  # --data-dir; else $IRAT_DATA, the user cache, /usr/share/datasets
    val_size: int = 1000  # held-out validation images (checkpoint selection), class-stratified
    limit: int | None = None  # keep a seeded class-balanced subset of N training images
    seed: int | None = None  # seed of the validation split and the subset; None: train.seed
    augment: bool | None = None  # None: the dataset's default (crop/flip for CIFAR, none for digits)
    subset: str | None = None  # easiest:N | hardest:N | random:N images per class of the training split
    subset_from: str | None = None  # the run whose instance difficulty picks the easiest/hardest subset
    extra: str | None = None  # extra data, half of every batch: heldout | a dataset name | a .npz file


@dataclass
class ModelConfig:
    name: str = "tiny-cnn"  # a name from `irat.models.names()`


@dataclass
class AttackConfig:
    """The training attack (PGD); evaluation attacks are named in EvalConfig."""

    norm: str = "linf"  # linf | l2
    eps: float = 0.1  # radius in [0,1] pixel units (BiLAW's Fashion-MNIST setting: 0.1)
    steps: int = 10  # PGD iterations K
    step_size: float | None = None  # None: eps/4 (BiLAW); the papers' CIFAR value is 2/255
    start: str | None = None  # uniform | gauss_small | none; None: the method's default


@dataclass
class WeightingConfig:
    """Instance weighting (METHODS.md §4.6–4.9); every None means "the method's default"."""

    scheme: str | None = None  # uniform | gairat | wmmr | mail | vir | hard (any works with any objective)
    burn_in: int | None = None  # epochs with all-ones weights; None: the paper's share of training
    alpha: float | None = None  # WMMR α; VIR α (scale of the vulnerability score)
    gamma: float | None = None  # MAIL slope γ; VIR γ
    beta: float | None = None  # MAIL bias β; VIR floor β
    margin: str | None = None  # MAIL: adv | nat | dif; WMMR: adv | nat
    lam: float | None = None  # GAIRAT λ
    lam_schedule: str | None = None  # GAIRAT: fixed | linear | piecewise
    normalize: str | None = None  # MAIL: batch (mean-one weights) | const3 (the MAIL code's 3·w)


@dataclass
class TrainConfig:
    method: str = "at"  # a name from `irat.methods.names()`
    objective: str | None = None  # override the method's objective (natural | at | trades | mart)
    trade_off: float | None = None  # objective trade-off (TRADES 1/λ, MART β); None: the method's
    epochs: int = 30
    batch_size: int = 128
    lr: float | None = None  # None: the method's (0.1; finetune: 1e-3)
    momentum: float = 0.9
    weight_decay: float = 0.0  # BiLAW uses 0 on (Fashion-)MNIST, 5e-4 on CIFAR
    schedule: str | None = None  # piecewise | cosine | constant; None: the method's (finetune: constant)
    milestones: list[float] = field(default_factory=lambda: [0.3, 0.6])  # fractions of epochs
    lr_decay: float = 0.1  # piecewise: the lr is multiplied by this at each milestone
    val_attack: str = "pgd-10"  # per-epoch validation attack; best checkpoint by its accuracy
    seed: int = 0
    init: str | None = None  # start from these weights: a run directory (best.pt, else last.pt) or a .pt
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    channels_last: bool = False  # NHWC activations for conv nets (faster for small-cnn on CPU)
    precision: str = "fp32"  # fp32 | bf16 (autocast of the training step; plain, AT, TRADES only)
    compile: str = "off"  # off | default | reduce-overhead (CUDA graphs) | max-autotune; slower on CPU
    deterministic: bool = False  # GPU: deterministic kernels (bit-for-bit resume), slower; CPU: always
    progress: bool = True  # progress bars on training and evaluation


COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@dataclass
class EvalConfig:
    attacks: list[str] = field(default_factory=lambda: ["clean", "pgd-20", "cw-20", "autoattack"])
    limit: int | None = None  # evaluate on the first N test images (None: all; tables state N)
    batch_size: int | None = None  # None: 500 on the CPU; on a GPU the whole split, halved on OOM
    checkpoint: str = "best"  # best | last
    step_size: float | None = None  # PGD-k / CW-k step (None: eps/4); restarts via names, e.g. pgd-20x5


@dataclass
class HardConfig:
    """Fast AT and fine-tuning of the hard-instance paper (METHODS.md §3.7, §4.12)."""

    rho: float = 0.9  # momentum ρ of the adaptive targets t̃ ← ρ·t̃ + (1 − ρ)·softmax(f(x'))
    beta: float | None = None  # target β·onehot + (1 − β)·t̃; None: the method's (0.1 adaptive, else 1)
    reset: int = 10  # ATTA: reset the perturbation cache every N epochs (0: never)
    detach_clean: bool = False  # fine-tuning: p(x) detached in the KL term (default: not, as TRADES)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    hard: HardConfig = field(default_factory=HardConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = typing.get_type_hints(Config)


def from_dict(values: dict) -> Config:
    """Build a validated ``Config`` from a nested dict (e.g. parsed YAML)."""
    cfg = Config()
    for section, entries in (values or {}).items():
        target = _section(cfg, section)
        if not isinstance(entries, dict):
            raise ConfigError(f"config section {section!r} must be a mapping of key: value")
        for key, value in entries.items():
            _set(target, section, key, value)
    validate(cfg)
    return cfg


def load(
    path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None
) -> Config:
    """Read a YAML file (if given) over ``base`` (a nested dict, e.g. another run's config) and
    apply ``section.key=value`` overrides, then validate."""
    values: dict = {k: dict(v) for k, v in (base or {}).items()}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must map sections to key: value entries")
        for section, entries in loaded.items():
            if isinstance(entries, dict) and isinstance(values.get(section), dict):
                values[section].update(entries)
            else:
                values[section] = entries
    for item in overrides or []:
        key, sep, raw = item.removeprefix("--").partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like --section.key=value (e.g. --train.epochs=5)")
        section, name = key.split(".", 1) if "." in key else bare_key(key)
        values.setdefault(section, {})[name] = yaml.safe_load(raw) if raw != "" else None
    return from_dict(values)


SECTION_ORDER = ("train", "weighting", "attack", "data", "model", "eval", "hard")
"""Where a bare key is looked up, in order: a key that several sections have takes its training
meaning (``batch_size`` → train, ``step_size`` → attack, ``limit`` → data); the evaluation ones
are written ``eval.batch_size``, ``eval.step_size``, ``eval.limit``."""


def bare_key(key: str) -> tuple[str, str]:
    """(section, name) of a bare key: ``epochs`` → ("train", "epochs"), the first section in
    ``SECTION_ORDER`` that has it; ``weighting`` → ("weighting", "scheme"). The CLI's
    ``--epochs=5`` and ``irat.train(epochs=5)`` both resolve through here."""
    if key == "weighting":
        return "weighting", "scheme"
    for section in SECTION_ORDER:
        if key in {f.name for f in dataclasses.fields(SECTIONS[section])}:
            return section, key
    raise ConfigError(f"unknown option {key!r}; write section.key=value (e.g. train.epochs=5)")


def resolve_config(config: Config | None = None, **overrides) -> Config:
    """A validated copy of ``config`` with flat overrides (``epochs=5``, ``eps=0.1``, ``lr=...``;
    resolved by ``irat.config.bare_key``, as on the command line) or dotted ones
    (``**{"eval.limit": 100}``) applied."""
    values = (config or Config()).to_dict()
    for key, value in overrides.items():
        section, name = key.split(".", 1) if "." in key else bare_key(key)
        values.setdefault(section, {})[name] = value
    return from_dict(values)


def _section(cfg: Config, section: str):
    if section not in SECTIONS:
        raise ConfigError(f"unknown config section {section!r}; valid sections: {', '.join(SECTIONS)}")
    return getattr(cfg, section)


def _set(target, section: str, key: str, value) -> None:
    fields = {f.name: f for f in dataclasses.fields(target)}
    if key not in fields:
        raise ConfigError(f"unknown key {section}.{key}; valid keys in [{section}]: {', '.join(fields)}")
    hint = typing.get_type_hints(type(target))[key]
    setattr(target, key, _coerce(value, hint, f"{section}.{key}"))


def _coerce(value, hint, name: str):
    """Check/convert ``value`` to the declared type ``hint`` (no eval, bools are strict)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, name)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{name} may not be empty")
    if origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        return [_coerce(v, item, name) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value


def _choice(name: str, value: str, choices: list[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of: {', '.join(choices)}")


def validate(cfg: Config) -> None:
    """Check ranges and names against the registries; raise one ``ConfigError``."""
    from irat import attacks, data, methods, models, objectives

    _choice("data.dataset", cfg.data.dataset, data.names())
    if cfg.model.name not in models.names() and not cfg.model.name.startswith("wrn-"):
        _choice("model.name", cfg.model.name, models.names())
    _choice("train.method", cfg.train.method, methods.names())
    if cfg.train.objective is not None:
        _choice("train.objective", cfg.train.objective, list(objectives.OBJECTIVES))
    _choice("attack.norm", cfg.attack.norm, ["linf", "l2"])
    if cfg.attack.start is not None:
        _choice("attack.start", cfg.attack.start, ["uniform", "gauss_small", "none"])
    if cfg.train.schedule is not None:
        _choice("train.schedule", cfg.train.schedule, ["piecewise", "cosine", "constant"])
    _choice("train.precision", cfg.train.precision, ["fp32", "bf16"])
    _choice("train.compile", cfg.train.compile, list(COMPILE_MODES))
    if cfg.train.precision == "bf16":
        recipe = methods.get(cfg.train.method)
        objective = cfg.train.objective or recipe.objective
        scheme = cfg.weighting.scheme or recipe.weighting
        if objective not in ("natural", "at", "trades") or scheme != "uniform":
            raise ConfigError(
                "train.precision=bf16 is allowed for plain, AT and TRADES training only (METHODS.md "
                f"§1.1.5: instance weights need fp32); method {cfg.train.method!r} uses objective "
                f"{objective!r} with {scheme!r} weights. Use --train.precision=fp32."
            )
    w = cfg.weighting
    for name, value, choices in [
        ("weighting.scheme", w.scheme, ["uniform", "gairat", "wmmr", "mail", "vir", "hard"]),
        ("weighting.margin", w.margin, ["adv", "nat", "dif"]),
        ("weighting.lam_schedule", w.lam_schedule, ["fixed", "linear", "piecewise"]),
        ("weighting.normalize", w.normalize, ["batch", "const3"]),
    ]:
        if value is not None:
            _choice(name, value, choices)
    checks = [
        ("attack.eps", cfg.attack.eps >= 0, "must be >= 0"),
        ("attack.steps", cfg.attack.steps >= 0, "must be >= 0"),
        ("attack.step_size", cfg.attack.step_size is None or cfg.attack.step_size > 0, "must be > 0"),
        ("data.val_size", cfg.data.val_size >= 0, "must be >= 0"),
        ("data.limit", cfg.data.limit is None or cfg.data.limit > 0, "must be > 0"),
        ("train.epochs", cfg.train.epochs >= 1, "must be >= 1"),
        ("train.batch_size", cfg.train.batch_size >= 1, "must be >= 1"),
        ("train.lr", cfg.train.lr is None or cfg.train.lr > 0, "must be > 0"),
        ("train.weight_decay", cfg.train.weight_decay >= 0, "must be >= 0"),
        ("weighting.burn_in", cfg.weighting.burn_in is None or cfg.weighting.burn_in >= 0, "must be >= 0"),
        ("train.milestones", all(0 < m <= 1 for m in cfg.train.milestones), "must be fractions in (0, 1]"),
        ("eval.limit", cfg.eval.limit is None or cfg.eval.limit > 0, "must be > 0"),
        ("eval.batch_size", cfg.eval.batch_size is None or cfg.eval.batch_size >= 1, "must be >= 1 or none"),
        ("eval.step_size", cfg.eval.step_size is None or cfg.eval.step_size > 0, "must be > 0"),
        ("hard.rho", 0 <= cfg.hard.rho <= 1, "must lie in [0, 1]"),
        ("hard.beta", cfg.hard.beta is None or 0 <= cfg.hard.beta <= 1, "must lie in [0, 1]"),
        ("hard.reset", cfg.hard.reset >= 0, "must be >= 0 (0: never reset)"),
    ]
    for name, ok, rule in checks:
        if not ok:
            raise ConfigError(f"{name}={_value(cfg, name)!r} {rule}")
    _choice("eval.checkpoint", cfg.eval.checkpoint, ["best", "last"])
    _validate_subset(cfg.data)
    for name in [*cfg.eval.attacks, cfg.train.val_attack]:
        try:
            attacks.build(name, eps=cfg.attack.eps, norm=cfg.attack.norm)
        except ValueError as e:
            raise ConfigError(str(e)) from None


def _validate_subset(d: DataConfig) -> None:
    from irat.data.subset import parse_subset

    if d.subset is None:
        if d.subset_from is not None:
            raise ConfigError("data.subset_from needs data.subset (easiest:N, hardest:N or random:N)")
        return
    try:
        kind, _ = parse_subset(d.subset)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if kind != "random" and d.subset_from is None:
        raise ConfigError(
            f"data.subset={d.subset} needs data.subset_from=RUN: the run whose instance difficulty "
            "ranks the images (trained with the perturbation this run uses)"
        )


def _value(cfg: Config, dotted: str):
    section, key = dotted.split(".")
    return getattr(getattr(cfg, section), key)
