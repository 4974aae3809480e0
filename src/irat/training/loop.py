"""``irat.train``: the epoch loop around ``train_step``.

Each epoch: set the learning rate, run the steps (metrics accumulate on the device, read once),
evaluate PGD robustness on the validation split, keep the best checkpoint by validation robust
accuracy (Rice et al. early stopping) and the last one, write the per-instance record and a
metrics row. Seeding is per epoch (loader order, attack starts, validation attack), so a killed
run resumed from ``last.pt`` reproduces the uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

import irat
from irat import attacks
from irat.attacks.build import clean
from irat.config import Config, ConfigError, from_dict, resolve_config
from irat.data import Loader
from irat.evaluation.robust import correct_under
from irat.losses import ce, true_value
from irat.runtime import keep_freed_memory, pick_device
from irat.training import checkpoint
from irat.training.assemble import build_step, lr_schedule
from irat.training.records import InstanceRecorder
from irat.training.rundir import RunDir
from irat.training.schedules import learning_rate
from irat.training.step import train_step
from irat.types import Batch


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Run:
    """The outcome of ``irat.train``: the run directory, its resolved config, one metrics row per
    epoch, and the best epoch by validation robust accuracy (−1 without a validation split).
    ``model`` holds the weights of the last epoch."""

    dir: Path
    config: Config
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_robust: float = float("nan")
    model: torch.nn.Module | None = None


def train(
    model: torch.nn.Module,
    data,
    method: str | None = None,
    epochs: int | None = None,
    eps: float | None = None,
    out: str | Path = "runs/run",
    *,
    resume: bool = False,
    config: Config | None = None,
    **overrides,
) -> Run:
    """Train ``model`` on ``data`` (from ``irat.data.load``) with a named method.

    ``method``, ``epochs``, ``eps`` and ``overrides`` (any config key, e.g. ``lr=0.05``,
    ``batch_size=64``, ``burn_in=2``) override ``config``. ``out`` becomes the run directory;
    ``resume=True`` continues the run found there from its last checkpoint.
    """
    given = {"method": method, "epochs": epochs, "eps": eps}
    cfg = resolve_config(config, **{k: v for k, v in given.items() if v is not None}, **overrides)
    cfg.data.dataset = data.spec.name
    cfg.data.val_size = len(data.val)
    if hasattr(data, "root"):  # what reloads this data later (irat eval / analyze / --resume)
        cfg.data.root, cfg.data.limit, cfg.data.seed = data.root, data.limit, data.seed
    cfg.model.name = getattr(model, "irat_name", cfg.model.name)
    build_step(cfg)  # a bad method/scheme combination fails here, before the run directory exists
    train_split = _training_split(data, cfg)  # a bad subset fails here too
    run_dir = RunDir(out)
    device = pick_device(cfg.train.device)
    if device.type == "cpu":
        keep_freed_memory()  # no page faults on the attack's buffers (irat/runtime.py)
    model.to(device)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    tc = cfg.train
    base_lr, schedule = lr_schedule(cfg)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=base_lr, momentum=tc.momentum, weight_decay=tc.weight_decay
    )
    # what the steps and the validation call; checkpoints keep ``model``'s own keys
    fast = model if tc.compile == "off" else torch.compile(model, mode=tc.compile)

    start_epoch, best_epoch, best_val, history = 0, -1, -math.inf, []
    if resume and run_dir.exists():
        state = checkpoint.load(run_dir.last, map_location=device) if run_dir.last.exists() else None
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_epoch, best_epoch, best_val = state["epoch"] + 1, state["best_epoch"], state["best_val"]
        history = run_dir.keep_metrics_through(start_epoch - 1)
    else:
        run_dir.create({**cfg.to_dict(), "irat_version": irat.__version__})

    train_split = train_split.to(device)
    val_split = data.val.to(device)
    augment = (
        cfg.data.augment if cfg.data.augment is not None else bool(data.spec.crop_padding or data.spec.flip)
    )
    loader = Loader(
        train_split, batch_size=tc.batch_size, shuffle=True, seed=tc.seed, augment=augment, spec=data.spec
    )
    generator = torch.Generator(device=device)
    val_attack = attacks.build(tc.val_attack, eps=cfg.attack.eps, norm=cfg.attack.norm)
    recorder = InstanceRecorder(train_split.idx, train_split.y)

    for epoch in range(start_epoch, tc.epochs):
        t0 = time.perf_counter()
        lr = learning_rate(
            epoch,
            lr=base_lr,
            epochs=tc.epochs,
            schedule=schedule,
            milestones=tc.milestones,
            gamma=tc.lr_decay,
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        loader.set_epoch(epoch)
        generator.manual_seed(_epoch_seed(tc.seed, epoch))
        parts = build_step(cfg, generator, epoch)
        fast.train()
        sums = torch.zeros(2, device=device)  # loss·B, correct on x' (read once per epoch)
        desc = f"epoch {epoch + 1}/{tc.epochs}"
        for batch in tqdm(loader, desc=desc, disable=not tc.progress, leave=False, unit="batch"):
            if cfg.train.channels_last:
                batch = Batch(batch.idx, batch.x.contiguous(memory_format=memory_format), batch.y)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16"):
                step = train_step(fast, batch, parts, optimizer, epoch)
            s = step.stats
            recorder.log(
                batch.idx,
                weight=step.weights,
                loss=ce(s.logits_adv, s.y),
                p_true=true_value(s.logits_adv.softmax(1), s.y),
                steps_to_flip=s.steps_to_flip,
            )
            sums += torch.stack([step.loss * len(batch), (s.logits_adv.argmax(1) == s.y).sum().float()])
        (loss_sum, correct), count = sums.tolist(), len(train_split)
        if not math.isfinite(loss_sum):
            raise NonFiniteLossError(
                f"the training loss became {loss_sum / count} in epoch {epoch}; lower --train.lr "
                f"(now {lr:g}) or check the data. The last good checkpoint is {run_dir.last}"
            )
        row = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / count, "train_robust_acc": correct / count}
        if len(val_split):
            torch.manual_seed(_epoch_seed(tc.seed, epoch) + 1)
            row["val_robust_acc"] = (
                correct_under(fast, val_split.x, val_split.y, val_attack).float().mean().item()
            )
            row["val_clean_acc"] = correct_under(fast, val_split.x, val_split.y, clean).float().mean().item()
            if row["val_robust_acc"] > best_val:
                best_epoch, best_val = epoch, row["val_robust_acc"]
                checkpoint.save(run_dir.best, {"model": model.state_dict(), "epoch": epoch})
        row["time_s"] = time.perf_counter() - t0
        recorder.save(run_dir.record_path(epoch), epoch)
        run_dir.append_metrics(row)
        history.append(row)
        checkpoint.save(
            run_dir.last,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "best_epoch": best_epoch,
                "best_val": best_val,
            },
        )
        if tc.progress:
            shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
            tqdm.write(" ".join(f"{k}={v}" for k, v in shown.items()), file=sys.stderr)

    return Run(
        dir=run_dir.path,
        config=cfg,
        history=history,
        best_epoch=best_epoch,
        best_val_robust=best_val if best_epoch >= 0 else float("nan"),
        model=model,
    )


def _training_split(data, cfg: Config):
    """``data.train``, or the subset ``data.subset`` names (``irat.data.subset``; the difficulty of
    ``data.subset_from``'s instances ranks easiest/hardest). Stores the run's absolute path."""
    d = cfg.data
    if d.subset is None:
        return data.train
    from irat.analysis.difficulty import run_difficulty
    from irat.data.subset import subset_of

    reference = None
    if d.subset_from is not None:
        if not RunDir(d.subset_from).exists():
            raise ConfigError(f"data.subset_from={d.subset_from} is not a run directory (no config.yaml)")
        d.subset_from = str(Path(d.subset_from).resolve())
        idx, _, difficulty = run_difficulty(d.subset_from)
        reference = (idx, difficulty)
    seed = d.seed if d.seed is not None else cfg.train.seed
    try:
        return subset_of(data.train, d.subset, reference, seed=seed)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def config_from_run(run_dir: str | Path) -> Config:
    """The resolved ``Config`` stored in a run directory."""
    values = RunDir(run_dir).read_config()
    values.pop("irat_version", None)
    fields = {f.name for f in dataclasses.fields(Config)}
    return from_dict({k: v for k, v in values.items() if k in fields})
