"""``irat.train``: the epoch loop around ``train_step``.

Each epoch: set the learning rate (step by step during a warm-up), run the steps (metrics
accumulate on the device, read once), evaluate PGD robustness on the validation split, keep the
best checkpoint by validation robust accuracy (Rice et al. early stopping) and the last one, write
the per-instance record and a metrics row, and warn once if the run looks collapsed
(``health.py``). Seeding is per epoch (loader order, attack starts, validation attack), so a killed
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
from irat import attacks, distributed, methods
from irat.attacks.build import clean
from irat.config import Config, ConfigError, from_dict, meta_size, resolve_config
from irat.data import DataError, Loader, Split, with_meta_split
from irat.data.loader import derive_seed
from irat.data.mixed import MixedLoader
from irat.evaluation.robust import correct_under
from irat.losses import ce, pm, true_value
from irat.runtime import configure_cuda, keep_freed_memory, pick_device
from irat.training import checkpoint, health
from irat.training.assemble import (
    build_learned,
    build_step,
    describe_burn_in,
    fill_defaults,
    instance_state,
    train_defaults,
)
from irat.training.records import InstanceRecorder, instance_weight, worst_variant
from irat.training.rundir import RunDir, RunDirError
from irat.training.schedules import learning_rate, warmup_factor
from irat.training.step import train_step
from irat.training.tensorboard import ScalarLog


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
    record_data(cfg, data)
    cfg.model.name = getattr(model, "irat_name", cfg.model.name)
    data = _hold_out_meta(cfg, data)  # BiLAW's D_meta: out of the training split (data.meta)
    meta = getattr(data, "meta", None)
    learned = build_learned(cfg, data.spec.num_classes, meta) if meta is not None else None
    cfg.model.preprocess = getattr(model, "irat_preprocess", cfg.model.preprocess)
    device = distributed.setup(pick_device(cfg.train.device))  # torchrun: joins the process group
    # bad input fails from here on, before the run directory exists: a subset, extra data,
    train_split = _training_split(data, cfg).to(device)
    extra = _extra_split(data, cfg)
    fit = train_split if extra is None else _concat(train_split, extra.to(device))  # what is trained on
    augment = (
        cfg.data.augment if cfg.data.augment is not None else bool(data.spec.crop_padding or data.spec.flip)
    )
    seed_state = torch.Generator(device=device).manual_seed(derive_seed(cfg.train.seed, 2))
    state = instance_state(cfg, fit, data.spec, augment=augment, generator=seed_state)
    build_step(cfg, learned=learned, state=state)  # a method/scheme combination,
    _load_init(model, cfg)  # initial weights that do not fit the model
    _announce_defaults(cfg)
    fill_defaults(cfg)
    _check_distributed(cfg, device)
    main = distributed.is_main()  # only rank 0 writes files
    run_dir = RunDir(out)
    if device.type == "cpu":
        keep_freed_memory()  # no page faults on the attack's buffers (irat/runtime.py)
    configure_cuda(device, deterministic=cfg.train.deterministic)
    model.to(device)
    tc = cfg.train
    channels_last = tc.channels_last if tc.channels_last is not None else device.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay
    )
    # what the steps call; checkpoints keep ``model``'s own keys. Validation runs the eager module:
    # its other batch size and eval mode made a CUDA-graph module re-record (110 img/s against
    # 3559 eager for preact-resnet18 on an H200, benchmarks/README.md "GPU")
    fast = model if tc.compile == "off" else torch.compile(model, mode=tc.compile)
    if distributed.world_size() > 1:  # DDP broadcasts rank 0's weights; resume restores them on all ranks
        if tc.sync_bn:
            fast = torch.nn.SyncBatchNorm.convert_sync_batchnorm(fast)
        fast = torch.nn.parallel.DistributedDataParallel(
            fast, device_ids=[device.index] if device.type == "cuda" else None
        )
    if learned is not None:
        learned.to(device)

    start_epoch, best_epoch, best_val, history = 0, -1, -math.inf, []
    if resume and run_dir.exists():
        if main:
            run_dir.prepare_resume()  # a full or read-only disk fails now, not after an epoch
        saved = checkpoint.load(run_dir.last, map_location=device) if run_dir.last.exists() else None
        if saved is not None:
            checkpoint.restore(model, saved, run_dir.last, cfg)
            optimizer.load_state_dict(saved["optimizer"])
            if learned is not None:
                learned.load_state_dict(saved["weighting"])
            if state is not None:
                state.load_state_dict(saved["instance_state"])
            start_epoch, best_epoch, best_val = saved["epoch"] + 1, saved["best_epoch"], saved["best_val"]
        if main:
            history = run_dir.keep_metrics_through(start_epoch - 1)
        else:
            history = [r for r in run_dir.metrics() if r["epoch"] <= start_epoch - 1]
    else:
        files = getattr(data, "files", {})  # where the data came from, with the sha256 of what was read
        failed = None
        try:
            if main:
                run_dir.create({**cfg.to_dict(), "irat_version": irat.__version__, "data_files": files})
        except Exception as e:  # noqa: BLE001 (re-raised below, after the other processes know)
            failed = e
        if distributed.any_true(failed is not None):  # every process stops, not only rank 0
            raise (
                failed
                if failed is not None
                else RunDirError(
                    f"rank 0 could not create the run directory {run_dir.path} (its message says why)"
                )
            )
    distributed.barrier()
    if tc.progress and main and getattr(data, "location", None):
        print(data.provenance(), file=sys.stderr)

    val_split = data.val.to(device)
    val_rows = distributed.shard(len(val_split))  # each process validates its shard; counts are summed
    if extra is None:
        loader = Loader(
            train_split,
            batch_size=tc.batch_size,
            shuffle=True,
            seed=tc.seed,
            augment=augment,
            spec=data.spec,
            rank=distributed.rank(),
            world=distributed.world_size(),
        )
    else:
        loader = MixedLoader(
            train_split,
            extra.to(device),
            batch_size=tc.batch_size,
            seed=tc.seed,
            augment=augment,
            spec=data.spec,
            rank=distributed.rank(),
            world=distributed.world_size(),
        )
    generator = torch.Generator(device=device)
    val_attack = attacks.build(tc.val_attack, eps=cfg.attack.eps, norm=cfg.attack.norm)
    recorder = InstanceRecorder(fit.idx, fit.y)
    owner = checkpoint.owner(cfg)  # stored with every checkpoint: another run's file is refused
    scalars = ScalarLog(run_dir.path, tc.tensorboard and main, start_epoch)
    visited = torch.zeros_like(recorder.values["loss"], dtype=torch.bool)  # indices this process trained on

    warned = any("warning" in r for r in history)  # one collapse warning per run, resumed or not
    for epoch in range(start_epoch, tc.epochs):
        t0 = time.perf_counter()
        lr = learning_rate(
            epoch,
            lr=tc.lr,
            epochs=tc.epochs,
            schedule=tc.schedule,
            milestones=tc.milestones,
            gamma=tc.lr_decay,
        )
        _set_lr(optimizer, lr)
        loader.set_epoch(epoch)
        generator.manual_seed(_epoch_seed(tc.seed, epoch))
        if state is not None:
            state.begin_epoch(epoch, generator)  # ATTA's cache reset
        parts = build_step(cfg, generator, epoch, learned, state)
        fast.train()
        visited.zero_()
        sums = torch.zeros(2, device=device)  # loss·B, correct on x' (read once per epoch)
        desc = f"epoch {epoch + 1}/{tc.epochs}"
        steps = len(loader)
        for i, batch in enumerate(
            tqdm(loader, desc=desc, disable=not (tc.progress and main), leave=False, unit="batch")
        ):
            if epoch < tc.warmup:
                _set_lr(optimizer, lr * warmup_factor(epoch * steps + i, tc.warmup * steps))
            if channels_last:
                batch = dataclasses.replace(batch, x=batch.x.contiguous(memory_format=memory_format))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16"):
                step = train_step(fast, batch, parts, optimizer, epoch)
            s = step.stats
            z = worst_variant(s.logits_adv, s.y)
            weight, data_coef = instance_weight(step.weights)
            recorder.log(
                batch.idx,
                weight=weight,
                data_coef=data_coef,
                loss=ce(z, s.y),
                p_true=true_value(z.softmax(1), s.y),
                steps_to_flip=s.steps_to_flip,
                margin_nat=pm(s.logits_nat, s.y) if s.logits_nat is not None else None,
                margin_adv=pm(z, s.y),
            )
            sums += torch.stack([step.loss * len(batch), (z.argmax(1) == s.y).sum().float()])
            visited[batch.idx] = True
        # torchrun: the epoch's sums, the per-instance records and state of every process
        (loss_sum, correct), count = distributed.all_reduce_(sums).tolist(), _images_per_epoch(loader)
        recorder.merge()
        if state is not None:
            state.merge(visited)
        if not math.isfinite(loss_sum):
            raise NonFiniteLossError(
                f"the training loss became {loss_sum / count} in epoch {epoch}; lower --train.lr "
                f"(now {lr:g}) or check the data. The last good checkpoint is {run_dir.last}"
            )
        row = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / count, "train_robust_acc": correct / count}
        if learned is not None:
            row.update(learned.pop_metrics())
        if len(val_split):
            torch.manual_seed(_epoch_seed(tc.seed, epoch) + 1)
            xv, yv = val_split.x[val_rows], val_split.y[val_rows]
            clean_ok = correct_under(model, xv, yv, clean)
            robust_ok = correct_under(model, xv, yv, val_attack, clean_correct=clean_ok)
            counts = distributed.all_reduce_(torch.stack([robust_ok.sum(), clean_ok.sum()]).double())
            robust_n, clean_n = counts.tolist()
            row["val_robust_acc"] = robust_n / len(val_split)
            row["val_clean_acc"] = clean_n / len(val_split)
            if row["val_robust_acc"] > best_val:
                best_epoch, best_val = epoch, row["val_robust_acc"]
                if main:
                    checkpoint.save(
                        run_dir.best, {"model": model.state_dict(), "epoch": epoch, "owner": owner}
                    )
        what = health.collapse(row, history, data.spec.num_classes, len(val_split))
        if what is not None and not warned:
            objective = tc.objective or methods.get(tc.method).objective
            w = recorder.values["weight"]
            largest = float(w[~torch.isnan(w)].max()) if not torch.isnan(w).all() else None
            row["warning"] = health.advice(
                what, epoch, tc.method, lr, tc.warmup, kl=objective == "trades", largest_weight=largest
            )
            if main:
                print(f"irat: {row['warning']}", file=sys.stderr)
            warned = True
        row["time_s"] = time.perf_counter() - t0
        if main:
            recorder.save(run_dir.record_path(epoch), epoch)
            run_dir.append_metrics(row)
            scalars.log(row)
        else:
            recorder.clear()
        history.append(row)
        last = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "best_epoch": best_epoch,
            "best_val": best_val,
            "owner": owner,
        }
        if learned is not None:
            last["weighting"] = learned.state_dict()
        if state is not None:
            last["instance_state"] = state.state_dict()
        if main:
            checkpoint.save(run_dir.last, last)
        distributed.barrier()  # no process starts the next epoch before last.pt holds this one
        if tc.progress and main:
            shown = {
                k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "warning"
            }
            tqdm.write(" ".join(f"{k}={v}" for k, v in shown.items()), file=sys.stderr)

    scalars.close()
    return Run(
        dir=run_dir.path,
        config=cfg,
        history=history,
        best_epoch=best_epoch,
        best_val_robust=best_val if best_epoch >= 0 else float("nan"),
        model=model,
    )


def _check_distributed(cfg: Config, device: torch.device) -> None:
    """Under torchrun: the global batch must split evenly over the processes (ConfigError with
    the fix) and SyncBatchNorm needs GPUs."""
    if distributed.world_size() == 1:
        return
    if cfg.train.sync_bn and device.type != "cuda":
        raise ConfigError("train.sync_bn needs CUDA devices (PyTorch's SyncBatchNorm); drop it on the CPU")
    try:
        distributed.check_batch(cfg.train.batch_size)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def record_data(cfg: Config, data) -> None:
    """Write into ``cfg`` what reloads ``data`` later (irat eval / analyze / --resume): the
    dataset, the validation size and, for ``irat.data.load`` data, its root, limit and seed."""
    cfg.data.dataset = data.spec.name
    cfg.data.val_size = len(data.val)
    if hasattr(data, "root"):
        cfg.data.root, cfg.data.limit, cfg.data.seed = data.root, data.limit, data.seed


def _hold_out_meta(cfg: Config, data):
    """``data`` with the D_meta the config asks for (``data.meta_size``; unset: the one ``data``
    was loaded with, else 1000 for BiLAW's learned weightings and 0 otherwise), taken out of the
    training split unless ``data`` holds it; the size goes into ``cfg.data.meta_size`` for reloads."""
    have = getattr(data, "meta", None)
    if cfg.data.meta_size is None and have is not None:
        cfg.data.meta_size = len(have)
    size = meta_size(cfg)
    if have is not None and len(have) != size:
        raise ConfigError(
            f"the data holds a meta split of {len(have)} images but the run needs {size} "
            "(data.meta_size); load the data without meta_size, or with the same one"
        )
    if have is None and size:
        if not hasattr(data, "seed"):
            raise ConfigError("a meta split needs data from irat.data.load (its split seed)")
        try:
            data = with_meta_split(data, size)
        except DataError as e:
            raise ConfigError(str(e)) from None
    cfg.data.meta_size = size
    return data


def _announce_defaults(cfg: Config) -> None:
    """Say, before ``fill_defaults`` writes them into the config, when the weights start and which
    recipe defaults are not the usual ones (lr, warm-up, schedule)."""
    t = cfg.train
    if not t.progress:
        return
    line = describe_burn_in(cfg)
    if line is not None:
        print(f"irat: {line}", file=sys.stderr)
    chosen, notes = train_defaults(cfg), []
    if t.lr is None and chosen["lr"] != methods.DEFAULT_LR:
        notes.append(f"lr {chosen['lr']:g}")
    if t.warmup is None and chosen["warmup"]:
        notes.append(f"{chosen['warmup']} warm-up epochs")
    if t.schedule is None and chosen["schedule"] != "piecewise":
        notes.append(f"a {chosen['schedule']} schedule")
    if notes:
        print(
            f"irat: {t.method} trains with {' and '.join(notes)} by default ({chosen['why']}); --train.lr / "
            "--train.warmup set others",
            file=sys.stderr,
        )


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


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
