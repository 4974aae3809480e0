"""One cell of a comparison or a benchmark: train one config into its run directory (resuming
what is there) and evaluate the checkpoints it selects. ``irat.compare`` and ``irat.bench``
both call ``train_and_evaluate``, so their run directories are the same:

    config.yaml, metrics.jsonl, best.pt, last.pt, records/   (``irat.train``)
    eval.json | eval_best.json + eval_last.json             (one per checkpoint of eval.checkpoint)
    robustbench.json | robustbench_best.json + ...           (RobustBench-style model info)
    .eval_progress/                                          (each attack's predictions, for resuming)

A finished run is not trained again (``irat.train`` is not called); an attack keeps its
predictions after every batch (``irat.evaluation.progress``) and, here, keeps them once finished,
so a killed evaluation continues where it stopped and a finished attack of unchanged weights on
unchanged images is not run again.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

import irat
from irat import distributed
from irat.analysis.run import checkpoint_names, checkpoint_path, evaluate_run
from irat.config import Config, ConfigError
from irat.runtime import pick_device
from irat.training import checkpoint
from irat.training.checkpoint import atomic_write_text
from irat.training.loop import config_from_run, record_data
from irat.training.rundir import RunDir

VOLATILE = {("train", "progress"), ("train", "device"), ("data", "root"), ("train", "tensorboard")}
"""Keys that may differ between a run and a config that resumes it (where and how it runs, not
what it computes). The ``eval`` section is not compared either: it is applied afresh."""


@dataclass
class CellResult:
    """``results``: checkpoint ("best", "last") → ``EvalResult``, in ``eval.checkpoint`` order;
    ``epochs``: checkpoint → its epoch."""

    run_dir: Path
    results: dict = field(default_factory=dict)
    epochs: dict = field(default_factory=dict)


def eval_stem(which: str, names: list[str]) -> str:
    """``eval`` for a single checkpoint, ``eval_best`` / ``eval_last`` for both."""
    return "eval" if len(names) == 1 else f"eval_{which}"


def comparable(values: dict) -> dict:
    """A run's config as a flat {section.key: value} of what determines its training: without
    the ``eval`` section and ``VOLATILE`` keys, with the data split seed, burn-in, D_meta size,
    learning rate, warm-up and schedule resolved as ``irat.train`` stores them."""
    from irat.config import from_dict, meta_size
    from irat.training.assemble import fill_defaults

    sections = {k: v for k, v in values.items() if k in Config.__dataclass_fields__}
    cfg = from_dict(sections)
    if cfg.data.seed is None:
        cfg.data.seed = cfg.train.seed
    cfg.data.meta_size = meta_size(cfg)
    fill_defaults(cfg)
    flat = {}
    for section, entries in cfg.to_dict().items():
        if section == "eval":
            continue
        for key, value in entries.items():
            if (section, key) not in VOLATILE:
                flat[f"{section}.{key}"] = value
    return flat


def check_resumable(run: RunDir, cfg: Config, data=None) -> None:
    """``ConfigError`` when the run in ``run`` was trained with another config than ``cfg`` (a
    changed preset would otherwise be reported under numbers of the old one); ``data``: the
    dataset it is given, which ``irat.train`` writes into the config (``record_data``)."""
    if data is not None:
        cfg = copy.deepcopy(cfg)
        record_data(cfg, data)
    stored, wanted = comparable(run.read_config()), comparable(cfg.to_dict())
    diff = [k for k in wanted if stored.get(k) != wanted[k]]
    if diff:
        shown = ", ".join(f"{k}: {stored.get(k)!r} in the run, {wanted[k]!r} now" for k in diff[:4])
        more = f" (and {len(diff) - 4} more)" if len(diff) > 4 else ""
        raise ConfigError(
            f"{run.path} holds a run of another config ({shown}{more}); move or delete it, or choose "
            "another --out"
        )


def finished(run: RunDir, epochs: int) -> bool:
    """Whether the run in ``run`` has trained all ``epochs`` (its last.pt is of the last one)."""
    if not run.last.exists():
        return False
    try:
        state = torch.load(run.last, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return int(state.get("epoch", -1)) >= epochs - 1


def train_and_evaluate(cfg: Config, data, out: str | Path, *, robustbench: bool = True) -> CellResult:
    """Train ``cfg`` on ``data`` into the run directory ``out`` (resumed when it exists; a run of
    another config there is refused) from the initial weights of ``torch.manual_seed(cfg.train.seed)``,
    then evaluate each checkpoint of ``cfg.eval.checkpoint`` on ``data.test``: ``eval*.json``,
    ``eval*.md`` and, with ``robustbench``, ``robustbench*.json`` in ``out``."""
    run = RunDir(out)
    if run.exists():
        check_resumable(run, cfg, data)
    torch.manual_seed(cfg.train.seed)
    model = irat.models.create(cfg.model.name, dataset=data.spec, preprocess=cfg.model.preprocess)
    if run.exists() and finished(run, cfg.train.epochs):
        model.to(pick_device(cfg.train.device))  # trained: only evaluated
    else:
        irat.train(model, data, out=run.path, resume=run.exists(), config=cfg)
    device = next(model.parameters()).device
    names = checkpoint_names(None, cfg)
    result = CellResult(run.path)
    for which in names:
        path = checkpoint_path(run.path, which, cfg)
        state = checkpoint.load(path, map_location=device)
        checkpoint.restore(model, state, path, config_from_run(run.path))
        res = evaluate_run(model, data, cfg, run_dir=run.path, keep_progress=True)
        stem = eval_stem(which, names)
        if distributed.is_main():  # torchrun: every process holds the gathered result; rank 0 writes
            res.save(run.path, stem=stem)
        if robustbench and distributed.is_main():
            from irat.export import robustbench_info

            info = robustbench_info(cfg, res.to_dict(), which=which, epoch=state["epoch"])
            name = stem.replace("eval", "robustbench")
            atomic_write_text(run.path / f"{name}.json", json.dumps(info, indent=2) + "\n")
        result.results[which], result.epochs[which] = res, int(state["epoch"])
    distributed.barrier()  # nobody reads the cell's files before rank 0 has written them
    return result
