"""A benchmark grid as data: ``BenchSpec`` (read from YAML by ``load_spec``) and its expansion into
cells, one run directory each (``expand``).

A spec file (``configs/bench/*.yaml``)::

    title: BiLAW Table 1, Fashion-MNIST rows        # what the table reproduces
    source: BiLAW (seed 000), Table 1
    base: ../bilaw-fmnist.yaml    # a config file (relative to this one) every cell starts from
    config: {train: {epochs: 10}}  # overrides of it, as in a config file (or dotted: train.epochs)
    seeds: [0, 1]                 # or a count: 2 → [0, 1]
    methods:                      # rows; a name, or a mapping
      - at
      - {method: mail-at, label: mail-at (γ=5, β=0.05), config: {weighting.gamma: 5, weighting.beta: 0.05}}
      - {method: bilaw, planned: true}   # not in this irat yet: skipped with a note until it lands
    settings:                     # tables; each its own overrides (default: one setting, "main")
      - {name: tc-linf, config: {model.name: tiny-cnn}}
      - {name: tc-l2, config: {attack.norm: l2, attack.eps: 0.3}}
    grid: {train.epochs: [5, 10]}  # optional: every setting × every combination of these values
    attacks: [clean, fgsm, pgd-20:eps/4, cw-20:eps/4, autoattack, {attack: saa, planned: true}]
    checkpoint: best              # best | last | both (eval.checkpoint of every cell)
    paper:                        # the paper's numbers (%), per setting (the setting level may be
      tc-linf:                    # left out with one setting); "84.86±0.17" or null (garbled)
        at: {clean: 86.4, "pgd-20:eps/4": 70.1, autoattack: 68.3}
    needs: [fashion-mnist]        # the data files it reads (irat data fetch NAME)
    cost: {cpu: "...", gpu: "..."}
    notes: ["..."]

Names are resolved when the grid is expanded, against ``irat.methods.names()``, the attack parser
and the dataset registry: a name marked ``planned`` that this irat lacks is skipped with a note
(and runs once it exists); any other unknown name is one ``ConfigError`` naming the file, the
entry and the valid choices.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from irat.config import Config, ConfigError, from_dict

KEYS = (
    "title",
    "source",
    "description",
    "base",
    "config",
    "seeds",
    "methods",
    "settings",
    "grid",
    "attacks",
    "checkpoint",
    "paper",
    "needs",
    "cost",
    "notes",
)
DEFAULT_ATTACKS = ("clean", "fgsm", "pgd-20", "cw-20", "autoattack", {"attack": "saa", "planned": True})
"""The attack suite of a spec that names none: clean, FGSM, PGD-20, CW-20, AutoAttack (standard),
and LRAT's SAA once it exists."""
DEFAULT_SETTING = "main"


@dataclass(frozen=True)
class MethodEntry:
    """A row: ``method`` (a name of ``irat.methods``) under ``label`` with config ``overrides``
    ({"section.key": value}); ``planned``: may be missing from this irat (skipped then)."""

    label: str
    method: str
    overrides: dict = field(default_factory=dict)
    planned: bool = False
    note: str = ""


@dataclass(frozen=True)
class AttackEntry:
    name: str
    planned: bool = False


@dataclass(frozen=True)
class Setting:
    """A table: its ``name`` (a folder name) and ``overrides``; ``planned``: its dataset may be
    missing from this irat's registry (skipped then)."""

    name: str
    overrides: dict = field(default_factory=dict)
    title: str = ""
    planned: bool = False


@dataclass
class Cell:
    """One run: ``setting`` × method ``label`` × ``seed``, trained with ``config`` in ``path``
    (relative to the bench's output folder)."""

    setting: str
    label: str
    method: str
    seed: int
    config: Config

    @property
    def path(self) -> Path:
        return Path(self.setting) / self.label.replace("/", "_").replace(" ", "_") / f"seed{self.seed}"


@dataclass
class Skipped:
    """Something the spec lists that this irat cannot run yet, and why."""

    what: str
    name: str
    reason: str


@dataclass
class BenchSpec:
    name: str
    path: Path | None
    raw: dict
    base: dict
    methods: list[MethodEntry]
    seeds: list[int]
    settings: list[Setting]
    attacks: list[AttackEntry]
    checkpoint: str | None
    paper: dict  # setting → label → attack → (mean, std | None) or None
    needs: list[str]
    cost: dict
    notes: list[str]
    title: str = ""
    source: str = ""

    def attack_names(self) -> list[str]:
        return [a.name for a in self.attacks]


def _where(path: Path | None) -> str:
    return str(path) if path is not None else "the bench spec"


def flatten(values, where: str) -> dict:
    """{"section.key": value} from a config-like mapping, nested (``{train: {epochs: 5}}``) or
    dotted (``{train.epochs: 5}``) or both."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of config keys (e.g. train.epochs: 5), got {values!r}")
    flat = {}
    for key, value in values.items():
        key = str(key)
        if "." in key:
            flat[key] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                flat[f"{key}.{k}"] = v
        else:
            raise ConfigError(
                f"{where}: {key!r} is neither a section with keys nor a dotted key "
                "(write e.g. train.epochs: 5)"
            )
    return flat


def nest(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = value
    return out


def parse_paper_value(value, where: str):
    """A paper's cell: a number, ``"84.86±0.17"`` / ``"84.86 +- 0.17"`` → (mean, std), or None
    (not reported, garbled)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not a number")
    if isinstance(value, int | float):
        return (float(value), None)
    m = re.fullmatch(r"\s*([0-9.]+)\s*(?:±|\+-|\+/-)\s*([0-9.]+)\s*", str(value))
    if m is None:
        raise ConfigError(f"{where}: {value!r} is not a number or 'mean±std' (e.g. 84.86±0.17)")
    return (float(m.group(1)), float(m.group(2)))


def _entries(items, key: str, where: str) -> list[dict]:
    out = []
    for item in items:
        if isinstance(item, str):
            out.append({key: item})
        elif isinstance(item, dict) and key in item:
            out.append(dict(item))
        else:
            raise ConfigError(f"{where}: each entry is a name or a mapping with {key!r}, got {item!r}")
    return out


def parse_spec(raw: dict, path: Path | None = None, name: str | None = None) -> BenchSpec:
    """A ``BenchSpec`` from the mapping of a spec file (``path``: where it was read, for
    messages and relative ``base`` files). Checks its structure; names are resolved by ``expand``."""
    where = _where(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a YAML mapping with keys {', '.join(KEYS)}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(KEYS)}")

    base: dict = {}
    if raw.get("base") is not None:
        base_path = Path(raw["base"])
        if not base_path.is_absolute() and path is not None:
            base_path = path.parent / base_path
        try:
            base = yaml.safe_load(base_path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{where}: base config {base_path} does not exist") from None
    base = flatten(base, f"{where}: base") | flatten(raw.get("config"), f"{where}: config")

    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(seeds))
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{where}: seeds must be a list of integers or a count, got {raw.get('seeds')!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: seeds {seeds} repeat a seed")

    if not raw.get("methods"):
        raise ConfigError(f"{where}: methods is empty; list at least one (e.g. methods: [at, mail-at])")
    methods = []
    for e in _entries(raw["methods"], "method", f"{where}: methods"):
        extra = set(e) - {"method", "label", "config", "planned", "note"}
        if extra:
            raise ConfigError(
                f"{where}: method {e['method']!r} has unknown key(s) {', '.join(sorted(extra))}"
            )
        label = str(e.get("label", e["method"]))
        overrides = flatten(e.get("config"), f"{where}: method {label!r} config")
        methods.append(
            MethodEntry(label, str(e["method"]), overrides, bool(e.get("planned")), e.get("note", ""))
        )
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels):
        dup = sorted({x for x in labels if labels.count(x) > 1})
        raise ConfigError(f"{where}: method label(s) {', '.join(dup)} appear twice; give each row a label")

    settings = []
    for e in _entries(raw.get("settings") or [{"name": DEFAULT_SETTING}], "name", f"{where}: settings"):
        extra = set(e) - {"name", "config", "title", "planned"}
        if extra:
            raise ConfigError(f"{where}: setting {e['name']!r} has unknown key(s) {', '.join(sorted(extra))}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", str(e["name"])):
            raise ConfigError(
                f"{where}: setting name {e['name']!r} must be a folder name (letters, digits, ._-)"
            )
        overrides = flatten(e.get("config"), f"{where}: setting {e['name']!r} config")
        settings.append(Setting(str(e["name"]), overrides, str(e.get("title", "")), bool(e.get("planned"))))
    grid = flatten(raw.get("grid"), f"{where}: grid")
    if grid:
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}: grid {key} must be a non-empty list of values")
        expanded = []
        for s in settings:
            for combo in itertools.product(*grid.values()):
                extra = dict(zip(grid, combo))
                suffix = "_".join(f"{k.split('.')[-1]}={v}" for k, v in extra.items())
                name = s.name if s.name != DEFAULT_SETTING else ""
                expanded.append(
                    Setting(f"{name}_{suffix}".strip("_"), {**s.overrides, **extra}, s.title, s.planned)
                )
        settings = expanded
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: setting names repeat: {', '.join(names)}")

    attacks = []
    for e in _entries(raw.get("attacks") or list(DEFAULT_ATTACKS), "attack", f"{where}: attacks"):
        attacks.append(AttackEntry(str(e["attack"]), bool(e.get("planned"))))
    checkpoint = raw.get("checkpoint")
    if checkpoint is not None and checkpoint not in ("best", "last", "both"):
        raise ConfigError(f"{where}: checkpoint={checkpoint!r}; choose best, last or both")

    paper = _parse_paper(raw.get("paper"), settings, labels, [a.name for a in attacks], where)
    return BenchSpec(
        name=name or (path.stem if path is not None else "bench"),
        path=path,
        raw=raw,
        base=base,
        methods=methods,
        seeds=list(seeds),
        settings=settings,
        attacks=attacks,
        checkpoint=checkpoint,
        paper=paper,
        needs=list(raw.get("needs") or []),
        cost=dict(raw.get("cost") or {}),
        notes=list(raw.get("notes") or []),
        title=str(raw.get("title", "")),
        source=str(raw.get("source", "")),
    )


def _parse_paper(paper, settings: list[Setting], labels: list[str], attacks: list[str], where: str) -> dict:
    if not paper:
        return {}
    if not isinstance(paper, dict):
        raise ConfigError(f"{where}: paper must map setting → method → attack → number")
    names = [s.name for s in settings]
    if not set(paper) <= set(names):
        if len(settings) > 1:
            bad = sorted(set(map(str, paper)) - set(names))
            raise ConfigError(
                f"{where}: paper: {', '.join(bad)} is not a setting ({', '.join(names)}); with several "
                "settings the paper's numbers go under each setting's name"
            )
        paper = {names[0]: paper}
    out: dict = {}
    for setting, rows in paper.items():
        for label, cells in (rows or {}).items():
            if label not in labels:
                raise ConfigError(
                    f"{where}: paper: {setting}/{label} is not a method label; labels: {', '.join(labels)}"
                )
            if not isinstance(cells, dict):
                raise ConfigError(f"{where}: paper: {setting}/{label} must map attack → number")
            for attack, value in cells.items():
                if attack not in attacks:
                    raise ConfigError(
                        f"{where}: paper: {setting}/{label}: {attack!r} is not one of the attacks "
                        f"({', '.join(attacks)}); name the column as the attack list does"
                    )
                parsed = parse_paper_value(value, f"{where}: paper: {setting}/{label}/{attack}")
                out.setdefault(setting, {}).setdefault(label, {})[attack] = parsed
    return out


def load_spec(path: str | Path) -> BenchSpec:
    """Read and check the spec file at ``path``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"bench spec {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"bench spec {path} is not valid YAML: {e}") from None
    return parse_spec(raw, path)


def available_attack(name: str, eps: float, norm: str) -> str | None:
    """None when ``name`` is an attack this irat can run at ``eps``/``norm``, else the parser's
    reason."""
    from irat import attacks
    from irat.evaluation.evaluate import split_images

    try:
        attacks.build(split_images(name)[0], eps=eps, norm=norm)
    except (ValueError, TypeError) as e:
        return str(e)
    return None


@dataclass
class Grid:
    """The cells of a spec, in run order (setting, seed, method: the methods of one seed share
    their initial weights and data split), and what was skipped."""

    spec: BenchSpec
    cells: list[Cell]
    skipped: list[Skipped]
    attacks: dict  # setting → the attack names that run


def expand(spec: BenchSpec, overrides: dict | None = None) -> Grid:
    """Resolve every name and build every cell's validated ``Config``; ``overrides``
    ({"section.key": value}, e.g. from the command line) apply to every cell, last. The grid has
    no cell when every method (or setting) is planned and none has landed yet."""
    from irat import data, methods

    where = _where(spec.path)
    known_methods = set(methods.names())
    skipped: list[Skipped] = []
    rows = []
    for m in spec.methods:
        if m.method in known_methods:
            rows.append(m)
        elif m.planned:
            skipped.append(Skipped("method", m.label, f"{m.method!r} is not in this irat yet (planned)"))
        else:
            raise ConfigError(
                f"{where}: unknown method {m.method!r}; choose one of: {', '.join(sorted(known_methods))} "
                "(mark a method that is still to come with planned: true)"
            )
    cells, attacks_by_setting = [], {}
    for s in spec.settings:
        flat = {**spec.base, **s.overrides, **(overrides or {})}
        dataset = flat.get("data.dataset", Config().data.dataset)
        if dataset not in data.names():
            if s.planned:
                skipped.append(
                    Skipped("setting", s.name, f"dataset {dataset!r} is not in this irat yet (planned)")
                )
                continue
            raise ConfigError(
                f"{where}: setting {s.name!r}: unknown dataset {dataset!r}; choose one of: "
                f"{', '.join(data.names())} (mark a setting whose dataset is still to come with "
                "planned: true)"
            )
        probe = _config({**flat, "eval.attacks": ["clean"]}, where, s.name, "")
        runnable = []
        for a in spec.attacks:
            reason = available_attack(a.name, probe.attack.eps, probe.attack.norm)
            if reason is None:
                runnable.append(a.name)
            elif a.planned:
                if not any(x.what == "attack" and x.name == a.name for x in skipped):
                    skipped.append(Skipped("attack", a.name, "not in this irat yet (planned)"))
            else:
                raise ConfigError(f"{where}: attack {a.name!r}: {reason}")
        if not runnable:
            raise ConfigError(f"{where}: setting {s.name!r} has no attack this irat can run")
        attacks_by_setting[s.name] = runnable
        for seed in spec.seeds:
            for m in rows:
                values = {**spec.base, **s.overrides, **m.overrides, **(overrides or {})}
                values |= {"train.method": m.method, "train.seed": seed, "eval.attacks": runnable}
                if spec.checkpoint is not None:
                    values["eval.checkpoint"] = spec.checkpoint
                cfg = _config(values, where, s.name, f"/{m.label}/seed{seed}")
                cells.append(Cell(s.name, m.label, m.method, seed, cfg))
    return Grid(spec, cells, skipped, attacks_by_setting)


def _config(flat: dict, where: str, setting: str, cell: str) -> Config:
    try:
        return from_dict(nest(copy.deepcopy(flat)))
    except ConfigError as e:
        raise ConfigError(f"{where}: cell {setting}{cell}: {e}") from None
