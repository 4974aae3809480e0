"""What a bench will cost, from a timed first step (``irat bench --dry-run``).

For each method of each setting, ``irat.train`` runs one epoch of one batch and one of
``1 + STEPS`` batches of the real data (no validation); the difference of the two epochs' times
(metrics ``time_s``, without the run's set-up) gives the seconds of one training step, the first
step's start-up costs cancelling out. A learned weighting (BiLAW) gets a D_meta of one meta batch
for this. Once per setting, the same timing of an AT step (PGD-K: K + 2 forward and backward
passes of each image) gives one *unit*: the seconds of one forward and backward pass of one image
of that model. Validation and evaluation are counted in units, so they cost the same for every
method of a setting (they depend on the model, not on how it was trained; a unit taken from an
LRAT step, which runs ~80 passes, would count each of them ~7 times). A cell then costs

    training    steps per epoch × epochs × step
    validation  epochs × validation images × (K_val + 1) units
    evaluation  per checkpoint and attack: images × the attack's passes per image (ATTACK_PASSES)

AutoAttack's passes depend on how many points stay robust after each of its four attacks; the
figure used (``AUTOATTACK_PASSES``) is a rough one and the largest uncertainty of the estimate.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import replace

import torch

import irat
from irat.attacks.fmn import STEPS as FMN_STEPS
from irat.attacks.lm_pgd import GRID as LM_GRID
from irat.attacks.lm_pgd import STEPS as LM_STEPS
from irat.attacks.saa import STEPS as SAA_STEPS
from irat.attacks.saa import TARGETS as SAA_TARGETS
from irat.attacks.spsa import SAMPLES as SPSA_SAMPLES
from irat.attacks.spsa import STEPS as SPSA_STEPS
from irat.config import BilawConfig, Config, HardConfig, WeightingConfig, meta_size, resolve_config
from irat.data.split import Split
from irat.evaluation.evaluate import split_images
from irat.evaluation.masking import EPS_SWEEP_FACTORS, PROBE_IMAGES, SQUARE_IMAGES, SQUARE_QUERIES

STEPS = 3
AUTOATTACK_PASSES = 6500.0
"""Forward-backward passes per image of standard AutoAttack against a robust model: APGD-CE (100
iterations) on every image, then on the points still robust APGD-T (9 targets × 100), FAB-T
(9 × 100) and Square (5000 forward-only queries). Measured: 500 images of a tiny-cnn AT model
(63 % robust) took as long as ~6700 passes of its training step per image (18 min against 0.5 s
per PGD-10 step of 128, one thread). Far less against a model that is not robust (plain training:
~400)."""

COMPONENT_PASSES = {"apgd-ce": 100.0, "apgd-t": 900.0, "fab-t": 1800.0, "square": 1700.0}


def attack_passes(name: str) -> float:
    """Forward-backward passes per image of evaluation attack ``name`` (see the module doc)."""
    base, _ = split_images(name)
    key = base.split(":")[0].lower()
    if key == "clean":
        return 0.35  # one forward, no backward
    if key == "fgsm":
        return 2.0
    m = re.fullmatch(r"(pgd|cw)-(\d+)(?:x(\d+))?", key)
    if m:
        return (int(m.group(2)) + 1) * int(m.group(3) or 1)
    if key == "autoattack":
        return AUTOATTACK_PASSES
    m = re.fullmatch(r"(apgd-ce|apgd-dlr|saa)(?:-(\d+))?", key)
    if m and (m.group(1) == "saa" or m.group(2)):
        steps = int(m.group(2) or SAA_STEPS)
        return (steps + 1) * (SAA_TARGETS if m.group(1) == "saa" else 1)
    m = re.fullmatch(r"lm-pgd(?:-(\d+))?", key)
    if m:  # each iteration: one gradient, then a line search of LM_GRID forward-only points
        return int(m.group(1) or LM_STEPS) * (1 + LM_GRID * 0.35)
    m = re.fullmatch(r"spsa(?:-(\d+))?", key)
    if m:  # forward-only probes: 2 per sample direction per iteration
        return int(m.group(1) or SPSA_STEPS) * 2 * SPSA_SAMPLES * 0.35
    m = re.fullmatch(r"fmn(?:-(\d+))?", key)
    if m:
        return int(m.group(1) or FMN_STEPS) + 1
    parts = key.split("+")
    if all(p in COMPONENT_PASSES for p in parts):
        return sum(COMPONENT_PASSES[p] for p in parts)
    return AUTOATTACK_PASSES  # an attack this estimate does not know: assume the worst


def _subset(split: Split, n: int) -> Split:
    return Split(split.x[:n], split.y[:n], split.idx[:n], split.name)


def time_step(cfg: Config, data) -> float:
    """Seconds of one training step of ``cfg`` on ``data`` (see the module doc)."""
    b = cfg.train.batch_size
    empty = _subset(data.val, 0)
    meta = min(meta_size(cfg), max(b, cfg.bilaw.val_batch_size or 0))  # one meta batch, or none
    times = []
    for batches in (1, 1 + STEPS):
        small = replace(data, train=_subset(data.train, batches * b + meta), val=empty)
        run_cfg = resolve_config(
            cfg,
            **{"train.epochs": 1, "train.progress": False, "weighting.burn_in": 0, "data.meta_size": meta},
        )
        with tempfile.TemporaryDirectory() as tmp:
            torch.manual_seed(cfg.train.seed)
            model = irat.models.create(cfg.model.name, dataset=data.spec)
            run = irat.train(model, small, out=f"{tmp}/run", config=run_cfg)
            times.append(run.history[0]["time_s"])  # the epoch's steps, without the run's set-up
    if times[1] > times[0]:
        return (times[1] - times[0]) / STEPS
    return times[1] / (1 + STEPS)  # noise swallowed the difference: the mean step, start-up included


def unit_config(cfg: Config) -> Config:
    """``cfg`` as plain AT: same data, model, training attack (PGD-K) and batch; no weighting,
    variants, meta split or per-instance state. Its step is K + 2 passes of each image."""
    return replace(
        cfg,
        data=replace(cfg.data, meta_size=None, subset=None, subset_from=None, extra=None),
        attack=replace(cfg.attack, variants=None, start=None),
        train=replace(cfg.train, method="at", objective=None, data_term=None, trade_off=None, init=None),
        weighting=WeightingConfig(),
        bilaw=BilawConfig(),
        hard=HardConfig(),
    )


def time_unit(cfg: Config, data) -> float:
    """Seconds of one forward and backward pass of one image of ``cfg``'s model: an AT step's
    time (``time_step`` of ``unit_config``) over its batch × (K + 2) passes."""
    return time_step(unit_config(cfg), data) / (cfg.train.batch_size * (cfg.attack.steps + 2))


def cell_seconds(cfg: Config, data, step_s: float, unit: float) -> dict:
    """{train, validation, evaluation} seconds of one cell of ``cfg`` (``step_s``: ``time_step``
    of the cell's method; ``unit``: ``time_unit`` of its setting)."""
    b = cfg.train.batch_size
    n_train = len(data.train)
    train = math.ceil(n_train / b) * cfg.train.epochs * step_s
    val = cfg.train.epochs * len(data.val) * (attack_passes(cfg.train.val_attack) + 0.35) * unit
    n_test = min(len(data.test), cfg.eval.limit or len(data.test))
    per_checkpoint = 0.35 * n_test * unit  # the clean pass every evaluation starts with
    for name in cfg.eval.attacks:
        images = min(split_images(name)[1] or n_test, n_test)
        per_checkpoint += images * attack_passes(name) * unit
    # the gradient-masking probes: the ε sweep and one more PGD-20 at ε, a short Square
    probe = (len(EPS_SWEEP_FACTORS) + 1) * min(n_test, PROBE_IMAGES) * attack_passes("pgd-20")
    probe += min(n_test, SQUARE_IMAGES) * SQUARE_QUERIES * COMPONENT_PASSES["square"] / 5000
    per_checkpoint += probe * unit
    checkpoints = 2 if cfg.eval.checkpoint == "both" else 1
    return {"train": train, "validation": val, "evaluation": checkpoints * per_checkpoint}


def duration(seconds: float) -> str:
    """``1 h 05 min``, ``12 min``, ``40 s``; days beyond 48 h."""
    s = int(round(seconds))
    if s >= 48 * 3600:
        return f"{s / 86400:.1f} days"
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
