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
    meta_size: int | None = None  # BiLAW's D_meta, held out of training; None: 1000 (bilaw), else 0
    seed: int | None = None  # seed of the validation split and the subset; None: train.seed
    augment: bool | None = None  # None: the dataset's default (crop/flip for CIFAR, none for digits)
    subset: str | None = None  # easiest:N | hardest:N | random:N images per class of the training split
    subset_from: str | None = None  # the run whose instance difficulty picks the easiest/hardest subset
    extra: str | None = None  # extra data, half of every batch: heldout | a dataset name | a .npz file


@dataclass
class ModelConfig:
    name: str = "tiny-cnn"  # a name from `irat.models.names()`
    preprocess: str | None = None  # none | quantize-L: non-differentiable input step (masking studies)


@dataclass
class AttackConfig:
    """The training attack (PGD); evaluation attacks are named in EvalConfig."""

    norm: str = "linf"  # linf | l2
    eps: float = 0.1  # radius in [0,1] pixel units (BiLAW's Fashion-MNIST setting: 0.1)
    steps: int = 10  # PGD iterations K
    step_size: float | None = None  # None: eps/4 (BiLAW), eps/10 (LRAT); the papers' CIFAR value is 2/255
    start: str | None = None  # uniform | gauss_small | none; None: the method's default
    variants: list[str] | None = None  # LRAT/LSAT: one variant per attack (pgd|cw|saa|gd); None: the method's


@dataclass
class WeightingConfig:
    """Instance weighting (METHODS.md §4.6–4.9); every None means "the method's default"."""

    scheme: str | None = (
        None  # uniform | gairat | wmmr | mail | vir | lrat | bilaw | bilaw-np | hard (any objective)
    )
    burn_in: int | None = None  # epochs with all-ones weights; None: the method's rule (MAIL, VIR,
    # WMMR, GAIRAT: until the first lr drop of train.schedule; LRAT, BiLAW: none; fast AT: 5/38 of
    # the epochs); a run stores the number
    alpha: float | None = None  # WMMR α; VIR α (scale of the vulnerability score); LRAT α
    gamma: float | None = None  # MAIL slope γ; VIR γ
    beta: float | None = None  # MAIL bias β; VIR floor β; LRAT exponent β
    margin: str | None = None  # MAIL: adv | nat | dif; WMMR: adv | nat
    lam: float | None = None  # GAIRAT λ (also LRAT's GD variant)
    lam_schedule: str | None = None  # GAIRAT: fixed | linear | piecewise
    normalize: str | None = None  # MAIL: batch (mean-one weights) | const3 (the MAIL code's 3·w)
    c: float | None = None  # LRAT C > 0: the data term's coefficient is [C − Σ_j ω_j]_+


@dataclass
class BilawConfig:
    """BiLAW's learned weighting (METHODS.md §4.11); every None means the default in brackets.
    The weight-network options apply to ``bilaw`` only, the last two to ``bilaw-np`` as well."""

    input: str | None = None  # mc-margin | margin | adv-loss | loss-diff [mc-margin] (Table 8)
    margin_on: str | None = None  # nat | adv [nat]: the logits of the (multi-class) margin
    hidden: list[int] | None = None  # hidden widths of ω_μ [128]; ablations: 64, 256, 64,64
    lr: float | None = None  # SGD of μ: learning rate [1e-3]
    momentum: float | None = None  # [0.9]
    weight_decay: float | None = None  # [1e-4]
    val_batch_size: int | None = None  # D_meta images per meta step [128]
    attack_on: str | None = None  # pseudo | current [pseudo]: the validation attack targets θ̃ or θ_t


BILAW_NET_OPTIONS = ("input", "margin_on", "hidden", "lr", "momentum", "weight_decay")
LEARNED_SCHEMES = ("bilaw", "bilaw-np")
DEFAULT_META_SIZE = 1000  # BiLAW's D_meta (the paper: two held-out sets of 1000)


@dataclass
class TrainConfig:
    method: str = "at"  # a name from `irat.methods.names()`
    objective: str | None = None  # override the method's objective (natural | at | trades | mart)
    data_term: str | None = None  # LRAT x*: natural|pgd|cw|saa|same; None: saa if simulated, else same
    trade_off: float | None = None  # objective trade-off (TRADES 1/λ, MART β); None: the method's
    epochs: int = 30
    batch_size: int = 128
    lr: float | None = None  # None: the method's default (0.1; TRADES 0.01; finetune 1e-3); a run stores it
    momentum: float = 0.9
    weight_decay: float = 0.0  # BiLAW uses 0 on (Fashion-)MNIST, 5e-4 on CIFAR
    schedule: str | None = None  # piecewise | cosine | constant; None: the method's (finetune: constant)
    milestones: list[float] = field(default_factory=lambda: [0.3, 0.6])  # fractions of epochs
    warmup: int | None = None  # epochs of linear lr warm-up, step by step (0: none; None: the method's)
    lr_decay: float | list[float] = 0.1  # piecewise: the lr is multiplied by this at each milestone,
    # or by one factor per milestone (GAIRAT, FAT: [0.1, 0.1, 0.5] at [0.5, 0.75, 0.9167])
    val_attack: str = "pgd-20"  # per-epoch validation attack; best checkpoint by its accuracy (§5.1)
    seed: int = 0
    init: str | None = None  # start from these weights: a run directory (best.pt, else last.pt) or a .pt
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    channels_last: bool | None = None  # NHWC activations; None: on a GPU (1.24x on an H200), off on the CPU
    precision: str = "fp32"  # fp32 | bf16 (autocast of the training step; plain, AT, TRADES only)
    compile: str = "off"  # off | default | reduce-overhead (CUDA graphs) | max-autotune; slower on CPU
    sync_bn: bool = False  # torchrun: BatchNorm statistics over the global batch (SyncBatchNorm)
    deterministic: bool = False  # GPU: deterministic kernels (bit-for-bit resume), slower; CPU: always
    progress: bool = True  # progress bars on training and evaluation
    tensorboard: bool = False  # per-epoch scalars in RUN_DIR/tensorboard (pip install 'irat[tensorboard]')


COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@dataclass
class EvalConfig:
    # attack names, each with an optional step (pgd-100:1/255) and image count (autoattack@1000)
    attacks: list[str] = field(default_factory=lambda: ["clean", "pgd-20", "cw-20", "autoattack"])
    limit: int | None = None  # evaluate on the first N test images (None: all; tables state N)
    batch_size: int | None = None  # None: 500 on the CPU; on a GPU the whole split, halved on OOM
    checkpoint: str = "best"  # best | last | both (irat eval and irat compare report each)
    step_size: float | None = None  # PGD-k / CW-k step (None: eps/4); restarts via names, e.g. pgd-20x5
    bpda: bool = False  # attacks see through the model's declared preprocessing (identity backward)


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
    bilaw: BilawConfig = field(default_factory=BilawConfig)
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
            raise ConfigError(
                f"config file {path} is not valid YAML ({yaml_problem(e)}); fix that line"
            ) from None
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


def yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error on one line: ``line 3: expected ',' or ']'``."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark is not None else problem


SECTION_ORDER = ("train", "weighting", "attack", "data", "model", "eval", "bilaw", "hard")
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
        if isinstance(value, str):  # "0.3,0.6" from the command line: each item parsed as YAML
            value = [yaml.safe_load(v.strip()) for v in value.split(",") if v.strip()]
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


def scheme_of(cfg: Config) -> str:
    """The weighting scheme a config trains with: ``weighting.scheme``, else its method's."""
    from irat import methods

    return cfg.weighting.scheme or methods.get(cfg.train.method).weighting


def meta_size(cfg: Config) -> int:
    """Images of BiLAW's held-out D_meta: ``data.meta_size``, else 1000 for the learned schemes
    (bilaw, bilaw-np) and 0 otherwise."""
    if cfg.data.meta_size is not None:
        return cfg.data.meta_size
    return DEFAULT_META_SIZE if scheme_of(cfg) in LEARNED_SCHEMES else 0


def _choice(name: str, value: str, choices: list[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of: {', '.join(choices)}")


def validate(cfg: Config) -> None:
    """Check ranges and names against the registries; raise one ``ConfigError``."""
    from irat import attacks, data, methods, models, objectives

    _choice("data.dataset", cfg.data.dataset, data.names())
    if cfg.model.name not in models.names() and not cfg.model.name.startswith("wrn-"):
        _choice("model.name", cfg.model.name, models.names())
    try:
        models.preprocess.parse_preprocess(cfg.model.preprocess)
    except ValueError as e:
        raise ConfigError(str(e)) from None
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
    _validate_variants(cfg)
    w = cfg.weighting
    for name, value, choices in [
        (
            "weighting.scheme",
            w.scheme,
            ["uniform", "gairat", "wmmr", "mail", "vir", "lrat", *LEARNED_SCHEMES, "hard"],
        ),
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
        ("data.meta_size", cfg.data.meta_size is None or cfg.data.meta_size >= 0, "must be >= 0"),
        ("train.epochs", cfg.train.epochs >= 1, "must be >= 1"),
        ("train.batch_size", cfg.train.batch_size >= 1, "must be >= 1"),
        ("train.lr", cfg.train.lr is None or cfg.train.lr > 0, "must be > 0"),
        (
            "train.warmup",
            cfg.train.warmup is None or 0 <= cfg.train.warmup < cfg.train.epochs,
            "must be >= 0 and below train.epochs",
        ),
        ("train.weight_decay", cfg.train.weight_decay >= 0, "must be >= 0"),
        ("weighting.burn_in", cfg.weighting.burn_in is None or cfg.weighting.burn_in >= 0, "must be >= 0"),
        ("weighting.c", cfg.weighting.c is None or cfg.weighting.c > 0, "must be > 0 (LRAT's C)"),
        ("train.milestones", all(0 < m <= 1 for m in cfg.train.milestones), "must be fractions in (0, 1]"),
        ("train.lr_decay", all(f > 0 for f in _as_list(cfg.train.lr_decay)), "must be > 0"),
        (
            "train.lr_decay",
            not isinstance(cfg.train.lr_decay, list) or len(cfg.train.lr_decay) == len(cfg.train.milestones),
            f"must be one number or one factor per milestone ({len(cfg.train.milestones)})",
        ),
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
    _choice("eval.checkpoint", cfg.eval.checkpoint, ["best", "last", "both"])
    _validate_subset(cfg.data)
    _validate_bilaw(cfg)
    from irat.training import tensorboard

    if cfg.train.tensorboard and not tensorboard.available():
        raise ConfigError(f"train.tensorboard=true needs the tensorboard package: {tensorboard.INSTALL}")
    from irat.training.assemble import burn_in_epochs, train_defaults

    burn_in_epochs(cfg)  # a reweighting method on a schedule without a drop: ConfigError
    warmup = train_defaults(cfg)["warmup"]
    if warmup >= cfg.train.epochs:
        raise ConfigError(
            f"train.warmup={warmup} (the {cfg.train.method} default) must be below train.epochs"
        )
    from irat.evaluation.evaluate import split_images

    try:
        for name in cfg.eval.attacks:
            attacks.build(split_images(name)[0], eps=cfg.attack.eps, norm=cfg.attack.norm)
        attacks.build(cfg.train.val_attack, eps=cfg.attack.eps, norm=cfg.attack.norm)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _validate_variants(cfg: Config) -> None:
    """LRAT/LSAT's options: ``attack.variants``, ``train.data_term``, and that the lrat objective,
    the lrat scheme and the variants come together."""
    from irat import methods

    family = ", ".join(n for n in methods.names() if methods.get(n).variants)
    variant_options = [("attack.variants", cfg.attack.variants), ("train.data_term", cfg.train.data_term)]
    overrides = [("train.objective", cfg.train.objective), ("weighting.scheme", cfg.weighting.scheme)]
    if not methods.get(cfg.train.method).variants:
        for name, value in variant_options:
            if value is not None:
                raise ConfigError(
                    f"{name} applies to the methods that train on several attack variants ({family}); "
                    f"{cfg.train.method!r} has one training attack"
                )
        for name, value in overrides:
            if value == "lrat":
                raise ConfigError(f"{name}=lrat needs several attack variants: use one of {family}")
        return
    for name, value in overrides:
        if value not in (None, "lrat"):
            raise ConfigError(
                f"{name}={value!r} does not apply to {cfg.train.method!r}: the LRAT/LSAT methods use the "
                "lrat objective and weights over their variants (tune them with weighting.alpha, "
                "weighting.beta, weighting.c, train.data_term)"
            )
    chosen = cfg.attack.variants
    if chosen is not None:
        for v in chosen:
            _choice("attack.variants", v, list(methods.VARIANTS))
        if not chosen or len(set(chosen)) != len(chosen) or {"pgd", "gd"} <= set(chosen):
            raise ConfigError(
                f"attack.variants={chosen} must list distinct attacks, at least one, and not both pgd "
                "and gd (gd is the PGD variant with GAIRAT's weight)"
            )
    if cfg.train.data_term is not None:
        _choice("train.data_term", cfg.train.data_term, list(methods.DATA_TERMS))


def _validate_bilaw(cfg: Config) -> None:
    """The ``bilaw`` section: values in range, options only with the schemes they apply to, a
    D_meta to learn from, and no ``torch.compile`` (the meta step's functional forward- and
    reverse-mode passes are not compiled)."""
    from irat.weighting.weight_net import INPUTS, MARGIN_INPUTS

    b, scheme = cfg.bilaw, scheme_of(cfg)
    for name, value, choices in [
        ("bilaw.input", b.input, list(INPUTS)),
        ("bilaw.margin_on", b.margin_on, ["nat", "adv"]),
        ("bilaw.attack_on", b.attack_on, ["pseudo", "current"]),
    ]:
        if value is not None:
            _choice(name, value, choices)
    checks = [
        (
            "bilaw.hidden",
            b.hidden is None or (len(b.hidden) > 0 and min(b.hidden) >= 1),
            "must be widths >= 1",
        ),
        ("bilaw.lr", b.lr is None or b.lr > 0, "must be > 0"),
        ("bilaw.momentum", b.momentum is None or 0 <= b.momentum < 1, "must be in [0, 1)"),
        ("bilaw.weight_decay", b.weight_decay is None or b.weight_decay >= 0, "must be >= 0"),
        ("bilaw.val_batch_size", b.val_batch_size is None or b.val_batch_size >= 1, "must be >= 1"),
    ]
    for name, ok, rule in checks:
        if not ok:
            raise ConfigError(f"{name}={_value(cfg, name)!r} {rule}")
    given = [f.name for f in dataclasses.fields(b) if getattr(b, f.name) is not None]
    if scheme not in LEARNED_SCHEMES and given:
        raise ConfigError(
            f"bilaw.{given[0]} applies to the learned weightings (bilaw, bilaw-np), not to the "
            f"{scheme!r} weighting of method {cfg.train.method!r}; drop it or add --weighting=bilaw"
        )
    net_given = [o for o in BILAW_NET_OPTIONS if getattr(b, o) is not None]
    if scheme == "bilaw-np" and net_given:
        raise ConfigError(
            f"bilaw.{net_given[0]} configures the weight network, which the non-parametric bilaw-np "
            "has none of; drop it or use --weighting=bilaw"
        )
    if b.margin_on is not None and (b.input or "mc-margin") not in MARGIN_INPUTS:
        raise ConfigError(
            f"bilaw.margin_on applies to the margin inputs ({', '.join(MARGIN_INPUTS)}), not to "
            f"bilaw.input={b.input!r}; drop one of them"
        )
    if scheme in LEARNED_SCHEMES:
        if meta_size(cfg) == 0:
            raise ConfigError(
                f"the {scheme} weighting learns from a held-out meta split, but data.meta_size=0; "
                f"set --data.meta_size=N (N > 0; the paper's is {DEFAULT_META_SIZE})"
            )
        if cfg.train.compile != "off":
            raise ConfigError(
                f"train.compile={cfg.train.compile!r} cannot run the {scheme} weighting: its meta step "
                "differentiates the model functionally in forward and reverse mode, which irat does not "
                "compile; use --train.compile=off"
            )


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
