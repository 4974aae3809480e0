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
from irat.data import Loader, Split
from irat.data.loader import derive_seed
from irat.data.mixed import MixedLoader
from irat.evaluation.robust import correct_under
from irat.losses import ce, true_value
from irat.runtime import configure_cuda, keep_freed_memory, pick_device
from irat.training import checkpoint
from irat.training.assemble import build_step, instance_state, lr_schedule
from irat.training.records import InstanceRecorder
from irat.training.rundir import RunDir
from irat.training.schedules import learning_rate
from irat.training.step import train_step


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
    device = pick_device(cfg.train.device)
    train_split = _training_split(data, cfg).to(device)  # a bad subset fails here, before the run dir
    extra = _extra_split(data, cfg)  # so does bad extra data
    fit = train_split if extra is None else _concat(train_split, extra.to(device))  # what is trained on
    augment = (
        cfg.data.augment if cfg.data.augment is not None else bool(data.spec.crop_padding or data.spec.flip)
    )
    seed_state = torch.Generator(device=device).manual_seed(derive_seed(cfg.train.seed, 2))
    state = instance_state(cfg, fit, data.spec, augment=augment, generator=seed_state)
    build_step(cfg, state=state)  # a bad method/scheme combination fails here too
    _load_init(model, cfg)  # and weights that do not fit the model
    run_dir = RunDir(out)
    if device.type == "cpu":
        keep_freed_memory()  # no page faults on the attack's buffers (irat/runtime.py)
    configure_cuda(device, deterministic=cfg.train.deterministic)
    model.to(device)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    tc = cfg.train
    base_lr, schedule = lr_schedule(cfg)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=base_lr, momentum=tc.momentum, weight_decay=tc.weight_decay
    )
    # what the steps call; checkpoints keep ``model``'s own keys. Validation runs the eager module:
    # its other batch size and eval mode made a CUDA-graph module re-record (110 img/s against
    # 3559 eager for preact-resnet18 on an H200, benchmarks/README.md "GPU")
    fast = model if tc.compile == "off" else torch.compile(model, mode=tc.compile)

    start_epoch, best_epoch, best_val, history = 0, -1, -math.inf, []
    if resume and run_dir.exists():
        saved = checkpoint.load(run_dir.last, map_location=device) if run_dir.last.exists() else None
        if saved is not None:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            start_epoch, best_epoch, best_val = saved["epoch"] + 1, saved["best_epoch"], saved["best_val"]
            if state is not None:
                state.load_state_dict(saved["instance_state"])
        history = run_dir.keep_metrics_through(start_epoch - 1)
    else:
        files = getattr(data, "files", {})  # where the data came from, with the sha256 of what was read
        run_dir.create({**cfg.to_dict(), "irat_version": irat.__version__, "data_files": files})
    if tc.progress and getattr(data, "location", None):
        print(data.provenance(), file=sys.stderr)

    val_split = data.val.to(device)
    if extra is None:
        loader = Loader(
            train_split, batch_size=tc.batch_size, shuffle=True, seed=tc.seed, augment=augment, spec=data.spec
        )
    else:
        loader = MixedLoader(
            train_split,
            extra.to(device),
            batch_size=tc.batch_size,
            seed=tc.seed,
            augment=augment,
            spec=data.spec,
        )
    generator = torch.Generator(device=device)
    val_attack = attacks.build(tc.val_attack, eps=cfg.attack.eps, norm=cfg.attack.norm)
    recorder = InstanceRecorder(fit.idx, fit.y)

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
        if state is not None:
            state.begin_epoch(epoch, generator)  # ATTA's cache reset
        parts = build_step(cfg, generator, epoch, state)
        fast.train()
        sums = torch.zeros(2, device=device)  # loss·B, correct on x' (read once per epoch)
        desc = f"epoch {epoch + 1}/{tc.epochs}"
        for batch in tqdm(loader, desc=desc, disable=not tc.progress, leave=False, unit="batch"):
            if cfg.train.channels_last:
                batch = dataclasses.replace(batch, x=batch.x.contiguous(memory_format=memory_format))
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
        (loss_sum, correct), count = sums.tolist(), _images_per_epoch(loader)
        if not math.isfinite(loss_sum):
            raise NonFiniteLossError(
                f"the training loss became {loss_sum / count} in epoch {epoch}; lower --train.lr "
                f"(now {lr:g}) or check the data. The last good checkpoint is {run_dir.last}"
            )
        row = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / count, "train_robust_acc": correct / count}
        if len(val_split):
            torch.manual_seed(_epoch_seed(tc.seed, epoch) + 1)
            row["val_robust_acc"] = (
                correct_under(model, val_split.x, val_split.y, val_attack).float().mean().item()
            )
            row["val_clean_acc"] = correct_under(model, val_split.x, val_split.y, clean).float().mean().item()
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
                **({"instance_state": state.state_dict()} if state is not None else {}),
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


def _extra_split(data, cfg: Config) -> Split | None:
    """The extra data ``data.extra`` names (``irat.data.extra``), or None; a path is stored
    absolute so that the run reloads it."""
    source = cfg.data.extra
    if source is None:
        return None
    from irat.data.extra import HELDOUT, load_extra

    if source != HELDOUT and Path(source).exists():
        cfg.data.extra = str(Path(source).resolve())
    return load_extra(cfg.data.extra, data)


def _concat(a: Split, b: Split) -> Split:
    return Split(torch.cat([a.x, b.x]), torch.cat([a.y, b.y]), torch.cat([a.idx, b.idx]), a.name)


def _load_init(model: torch.nn.Module, cfg: Config) -> None:
    """Start from ``train.init``: a run directory (its best.pt, else last.pt) or a checkpoint file;
    a ConfigError when it is missing or its weights do not fit ``model``. Stored absolute."""
    if cfg.train.init is None:
        return
    path = Path(cfg.train.init)
    if RunDir(path).exists():
        path = RunDir(path).best if RunDir(path).best.exists() else RunDir(path).last
    if not path.is_file():
        raise ConfigError(f"train.init={cfg.train.init}: no such run directory or checkpoint file")
    try:
        model.load_state_dict(checkpoint.load(path)["model"])
    except (RuntimeError, KeyError) as e:
        raise ConfigError(
            f"train.init={path}: its weights do not fit model {cfg.model.name!r} "
            f"({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None
    cfg.train.init = str(path.resolve())


def _images_per_epoch(loader) -> int:
    if isinstance(loader, MixedLoader):
        return 2 * len(loader.extra) + len(loader) * (loader.batch_size % 2)  # as many training images
    return len(loader.split)


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def config_from_run(run_dir: str | Path) -> Config:
    """The resolved ``Config`` stored in a run directory."""
    values = RunDir(run_dir).read_config()
    values.pop("irat_version", None)
    fields = {f.name for f in dataclasses.fields(Config)}
    return from_dict({k: v for k, v in values.items() if k in fields})
