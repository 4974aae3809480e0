"""``irat export RUN --format safetensors|robustbench``: a run's selected weights in a file other
tools load, with a model card (``README.md``: method, config, the evaluation table).

* ``safetensors``: ``model.safetensors`` (the model's state dict; no pickled code; the metadata
  holds the irat version, method, model, dataset spec, checkpoint and the run's config as JSON).
* ``robustbench``: ``<name>.pt`` (the state dict, ``torch.save``) and ``<name>.json`` in
  RobustBench's ``model_info`` format (``robustbench_info``), e.g. for a leaderboard entry.

``robustbench_info`` is also what ``irat.bench`` writes beside every evaluated checkpoint.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

import irat
from irat.training.checkpoint import atomic_write_bytes, atomic_write_text

FORMATS = ("safetensors", "robustbench")


class ExportError(ValueError):
    """A run cannot be exported (no checkpoint, unknown format, ...)."""


def eps_text(eps: float) -> str:
    """ε as RobustBench writes it: ``8/255`` when ε·255 is (nearly) a whole number, else ``0.1``."""
    k = eps * 255
    if eps > 0 and abs(k - round(k)) < 1e-3 * max(1.0, k):
        return f"{round(k)}/255"
    return f"{eps:g}"


def _percent(value) -> str:
    return "" if value is None else f"{100 * float(value):.2f}"


def robustbench_info(
    cfg, evaluation: dict, *, which: str, epoch: int | None = None, reported: float | None = None
) -> dict:
    """RobustBench's ``model_info`` fields for a model trained with ``cfg`` (a ``Config``) and
    evaluated as ``evaluation`` (``EvalResult.to_dict()``), plus irat's own: the threat model, ε
    as a number, the images each accuracy was computed on (``n_examples``; RobustBench's
    standard is the 10 000 CIFAR test images) and the checkpoint. ``autoattack_acc`` is empty
    when AutoAttack was not run; ``reported``: the paper's AutoAttack accuracy in %, if any."""
    acc = evaluation.get("accuracy", {})
    images = evaluation.get("images", {})
    aa = next((k for k in acc if k.split("@")[0] == "autoattack"), None)
    method = cfg.train.method
    recipe = irat.methods.get(method) if method in irat.methods.names() else None
    return {
        "link": "",
        "name": f"{method} ({cfg.model.name}, {cfg.data.dataset}), trained with irat",
        "authors": "",
        "additional_data": False,
        "number_forward_passes": 1,
        "dataset": cfg.data.dataset,
        "venue": "",
        "architecture": cfg.model.name,
        "eps": eps_text(cfg.attack.eps),
        "clean_acc": _percent(acc.get("clean")),
        "reported": "" if reported is None else f"{float(reported):.2f}",
        "autoattack_acc": _percent(acc.get(aa)) if aa else "",
        "footnote": (
            f"irat {irat.__version__}: {recipe.paper if recipe else method}; {which} checkpoint"
            + (f" (epoch {epoch})" if epoch is not None else "")
            + f"; accuracies on the first {evaluation.get('n')} test images"
            + (f", AutoAttack on {images.get(aa)}" if aa and images.get(aa) != evaluation.get("n") else "")
        ),
        "threat_model": {"linf": "Linf", "l2": "L2"}[cfg.attack.norm],
        "eps_value": cfg.attack.eps,
        "n_examples": evaluation.get("n"),
        "n_autoattack": images.get(aa) if aa else None,
        "method": method,
        "checkpoint": which,
        "epoch": epoch,
        "irat_version": irat.__version__,
    }


def _spec(cfg, run_dir: Path):
    from irat.data import registry

    entry = registry.get(cfg.data.dataset)
    if entry.spec is not None:
        return entry.spec
    from irat.analysis.run import load_data  # npz: the spec is inferred from the data

    return load_data(cfg).spec


def _evaluation(run_dir: Path, which: str, cfg) -> dict | None:
    """The evaluation of checkpoint ``which``: ``eval_<which>.json``, else ``eval.json`` when the
    run's ``eval.checkpoint`` is ``which`` (what ``irat eval`` and ``irat train --eval`` write)."""
    stems = [f"eval_{which}"] + (["eval"] if cfg.eval.checkpoint == which else [])
    for stem in stems:
        path = run_dir / f"{stem}.json"
        if path.exists():
            return json.loads(path.read_text())
    return None


def model_card(cfg, spec, evaluation: dict | None, *, which: str, epoch: int, files: list[str]) -> str:
    """The README.md that goes with the exported weights."""
    method = cfg.train.method
    recipe = irat.methods.get(method) if method in irat.methods.names() else None
    a, t = cfg.attack, cfg.train
    lines = [
        f"# {method} · {cfg.model.name} · {cfg.data.dataset}",
        "",
        f"Trained with irat {irat.__version__}: **{method}** ({recipe.paper if recipe else 'see config'}).",
        "",
        f"- threat model: {a.norm} ε = {eps_text(a.eps)} ({a.eps:g}) in [0, 1] pixel units; the model "
        "normalises its input itself",
        f"- training: {t.epochs} epochs, batch {t.batch_size}, lr {t.lr:g} ({t.schedule}), weight decay "
        f"{t.weight_decay:g}, PGD-{a.steps} training attack, seed {t.seed}",
        f"- weights: the **{which}** checkpoint (epoch {epoch}; best = highest validation "
        f"{t.val_attack} accuracy on the held-out split)",
        f"- files: {', '.join(files)}",
        "",
        "## Evaluation",
        "",
    ]
    if evaluation is None:
        lines.append(f"Not evaluated yet: `irat eval RUN --checkpoint {which}` writes the table.")
    else:
        acc = evaluation["accuracy"]
        lines += [
            f"Accuracy (%) on the first {evaluation['n']} test images"
            + "".join(f"; {k}: {v}" for k, v in evaluation.get("images", {}).items() if v != evaluation["n"]),
            "",
            "| " + " | ".join(acc) + " |",
            "|" + "---|" * len(acc),
            "| " + " | ".join(f"{100 * v:.2f}" for v in acc.values()) + " |",
        ]
        if evaluation.get("warnings"):
            lines += ["", "Sanity warnings:", ""] + [f"- {w}" for w in evaluation["warnings"]]
    lines += [
        "",
        "## Loading",
        "",
        "```python",
        "import irat",
        "from irat.data import DatasetSpec",
        f"spec = DatasetSpec(**{_spec_dict(spec)!r})",
        f'model = irat.models.create("{cfg.model.name}", dataset=spec)',
    ]
    if "model.safetensors" in files:
        lines += [
            "from safetensors.torch import load_file",
            'model.load_state_dict(load_file("model.safetensors"))',
        ]
    else:
        pt = next(f for f in files if f.endswith(".pt"))
        lines += ["import torch", f'model.load_state_dict(torch.load("{pt}", weights_only=True))']
    lines += [
        "model.eval()  # inputs: [B, C, H, W] in [0, 1]",
        "```",
        "",
        "## Config",
        "",
        "```yaml",
        _yaml(cfg.to_dict()).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _spec_dict(spec) -> dict:
    from dataclasses import asdict

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()}


def _yaml(values: dict) -> str:
    import yaml

    return yaml.safe_dump(values, sort_keys=False)


def export(
    run_dir: str | Path,
    format: str = "safetensors",
    *,
    checkpoint: str = "best",
    out: str | Path | None = None,
) -> list[Path]:
    """Write the ``checkpoint`` ("best" or "last") weights of the run in ``run_dir`` in ``format``
    (``FORMATS``) with a model card into ``out`` (default ``RUN_DIR/export``); return the files."""
    from irat.analysis.run import checkpoint_path
    from irat.training import checkpoint as ckpt
    from irat.training.loop import config_from_run
    from irat.training.rundir import RunDir

    if format not in FORMATS:
        raise ExportError(f"format={format!r}; choose one of: {', '.join(FORMATS)}")
    if checkpoint not in ("best", "last"):
        raise ExportError(f"checkpoint={checkpoint!r}; choose best or last")
    run = RunDir(run_dir)
    if not run.exists():
        raise ExportError(f"{run.path} is not a run directory (no config.yaml)")
    cfg = config_from_run(run.path)
    path = checkpoint_path(run.path, checkpoint, cfg)
    state = ckpt.load(path, map_location="cpu")
    weights = {k: v.contiguous().clone() for k, v in state["model"].items()}
    spec = _spec(cfg, run.path)
    out = Path(out) if out is not None else run.path / "export"
    evaluation = _evaluation(run.path, checkpoint, cfg)
    written: list[Path] = []
    if format == "safetensors":
        from safetensors.torch import save

        metadata = {
            "format": "pt",
            "irat_version": irat.__version__,
            "method": cfg.train.method,
            "model": cfg.model.name,
            "dataset_spec": json.dumps(_spec_dict(spec)),
            "checkpoint": checkpoint,
            "epoch": str(state["epoch"]),
            "config": json.dumps(cfg.to_dict()),
        }
        atomic_write_bytes(out / "model.safetensors", save(weights, metadata=metadata))
        written.append(out / "model.safetensors")
    else:
        name = re.sub(r"[^A-Za-z0-9_]+", "_", f"irat_{cfg.train.method}_{cfg.model.name}_{cfg.data.dataset}")
        import io

        buf = io.BytesIO()
        torch.save(weights, buf)
        atomic_write_bytes(out / f"{name}.pt", buf.getvalue())
        info = robustbench_info(cfg, evaluation or {}, which=checkpoint, epoch=state["epoch"])
        atomic_write_text(out / f"{name}.json", json.dumps(info, indent=2) + "\n")
        written += [out / f"{name}.pt", out / f"{name}.json"]
    card = model_card(
        cfg, spec, evaluation, which=checkpoint, epoch=state["epoch"], files=[p.name for p in written]
    )
    atomic_write_text(out / "README.md", card)
    return [*written, out / "README.md"]
