"""The ``irat`` command: ``irat train``, ``irat eval RUN_DIR``, ``irat analyze RUN_DIR``,
``irat compare``, ``irat finetune RUN_DIR --extra ...``, ``irat bench SPEC``,
``irat report RUN_DIR...``, ``irat export RUN_DIR``, ``irat data fetch NAME`` / ``irat data list``.

Options not listed by ``--help`` are config overrides of the form ``--section.key=value``
(sections: data, model, attack, train, weighting, eval, bilaw, hard; see ``irat.config``), or a bare
``--key=value`` (``--epochs=5``, ``--weighting=vir --objective=mart``), which belongs to the first
section in train, weighting, attack, data, model, eval that has the key (``irat.config.bare_key``:
``--batch_size`` is ``train.batch_size``; write ``--eval.batch_size`` for evaluation).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXAMPLES = """examples:
  irat train --train.method=at --train.epochs=30 --attack.eps=0.1 --out runs/at
  irat train --config configs/demo.yaml --data.limit=5000 --out runs/quick
  irat train --out runs/at --resume            # continue a killed run
  irat eval runs/at --attacks clean,pgd-20,cw-20,autoattack --limit 1000
  irat eval runs/at --attacks clean,pgd-20:eps/4,pgd-100:1/255,autoattack@1000 --checkpoint both
  irat eval runs/q --attacks clean,pgd-20,square --bpda   # see through declared preprocessing
  irat analyze runs/at                         # figures + runs/at/analysis/report.md
  irat analyze runs/at --against runs/at-seed1 # + D-distance of the two runs' instance difficulty
  irat compare --config configs/demo.yaml --methods at,mail-trades,vir-trades --out runs/demo
  irat train --method=at --weighting=vir --objective=mart --out runs/vir-mart   # any combination
  irat bench configs/bench/cpu-fmnist.yaml --dry-run   # the plan and a cost estimate
  irat bench configs/bench/cpu-fmnist.yaml            # methods x seeds, mean +- std, report.html
  irat report runs/demo runs/at --html report.html     # tables and report of existing runs
  irat export runs/at --format safetensors             # weights + model card
  irat train --method=fast-at-rw-at --out runs/fast  # the hard-instance paper's fast AT
  irat finetune runs/at --extra heldout --out runs/at-ft  # + extra data, half of every batch
  irat data fetch fashion-mnist                # find, download (verified) or apt-install the data
  irat data list                               # where each dataset is, its files and checksums
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irat",
        description="Instance-reweighted adversarial training: train and evaluate robust classifiers.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from irat import __version__

    parser.add_argument("--version", action="version", version=f"irat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train a model; writes a run directory",
        description="Train a model. Any config key can be set with --section.key=value, e.g. "
        "--train.method=trades --train.epochs=10 --attack.eps=0.1 --data.limit=5000.",
        epilog=_choices_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--config", help="YAML file with sections data, model, attack, train, weighting, eval")
    t.add_argument("--out", default="runs/run", help="run directory to create (default: runs/run)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--data-dir", help="folder holding the dataset files (same as --data.root)")
    t.add_argument(
        "--eval", action="store_true", help="evaluate the best checkpoint on the test split afterwards"
    )

    c = sub.add_parser(
        "compare",
        help="train several methods under one budget and print one table",
        description="Train each method with the same config, data, initial weights and budget, evaluate "
        "each on the same test images, write OUT/comparison.md and the analysis plots of every run. "
        "Existing runs in OUT are resumed.",
        epilog=_choices_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--config", help="YAML file with sections data, model, attack, train, weighting, eval")
    c.add_argument(
        "--methods",
        default="at,mail-trades,vir-trades",
        help="comma-separated (default: at,mail-trades,vir-trades)",
    )
    c.add_argument("--out", default="runs/compare", help="folder of the runs (default: runs/compare)")
    c.add_argument("--data-dir", help="folder holding the dataset files (same as --data.root)")
    c.add_argument("--no-analyze", action="store_true", help="skip the analysis plots")

    b = sub.add_parser(
        "bench",
        help="run a benchmark grid (methods x seeds x settings) from a YAML spec; tables and report",
        description="Train and evaluate every cell of the grid SPEC describes (configs/bench/*.yaml), "
        "one run directory each, then write OUT/table.md, table.csv, results.json and the self-contained "
        "OUT/report.html. Finished cells and finished attacks are skipped: run the same command again to "
        "continue a killed bench. Config overrides (--section.key=value) apply to every cell.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("spec", help="a bench spec, e.g. configs/bench/cpu-fmnist.yaml")
    b.add_argument("--out", help="output folder (default: runs/bench/<spec name>)")
    b.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan and a cost estimate (one timed step per method)",
    )
    b.add_argument("--no-estimate", action="store_true", help="with --dry-run: skip the timed steps")
    b.add_argument("--data-dir", help="folder holding the dataset files (same as --data.root)")
    b.add_argument("--html", help="where to write the HTML report (default: OUT/report.html)")

    r = sub.add_parser(
        "report",
        help="mean +- std tables and the HTML report of existing runs",
        description="Build the tables (Markdown, CSV, JSON) and the self-contained HTML report of the runs "
        "at or below each RUN_DIR (irat train, compare or bench output, in any mix). Runs of different "
        "dataset, model, norm or eps are refused unless --group is given.",
    )
    r.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories or folders holding runs")
    r.add_argument("--html", help="the HTML report's path (default: OUT/report.html)")
    r.add_argument("--out", help="folder of table.md/csv (default: the bench folder given, else ./report)")
    r.add_argument("--group", action="store_true", help="one table per (dataset, model, norm, eps)")

    x = sub.add_parser(
        "export", help="a run's weights as safetensors or RobustBench files, with a model card"
    )
    x.add_argument("run_dir", help="a run directory")
    x.add_argument("--format", choices=["safetensors", "robustbench"], default="safetensors")
    x.add_argument(
        "--checkpoint", choices=["best", "last"], default="best", help="which weights (default: best)"
    )
    x.add_argument("--out", help="output folder (default: RUN_DIR/export)")
    ft = sub.add_parser(
        "finetune",
        help="fine-tune a run's model with extra data (the hard-instance paper's RW+KL)",
        description="Adversarially fine-tune the model of RUN_DIR: its data, model and attack, method "
        "finetune (loss sum_i w_i [ce(x'_i) + 6 KL(p(x_i) || p(x'_i))], w = p_y(x') normalised), constant "
        "lr 1e-3, 1 epoch (one pass over the extra data), each batch half training and half extra "
        "images. Ablations: --weighting=uniform (KL), --train.trade_off=0 (RW), both (vanilla AT). "
        "Other config keys as in 'irat train' (--section.key=value).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ft.add_argument("run_dir", help="the pretrained run (a run directory written by 'irat train')")
    ft.add_argument(
        "--extra",
        required=True,
        help="heldout (the training-file images the run did not use) | a dataset name | an .npz file "
        "with images x and labels y",
    )
    ft.add_argument("--out", help="run directory to create (default: RUN_DIR-finetune)")
    ft.add_argument(
        "--checkpoint", choices=["best", "last"], default="best", help="weights to start from (default: best)"
    )
    ft.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    ft.add_argument("--data-dir", help="folder holding the dataset files (same as --data.root)")
    ft.add_argument("--eval", action="store_true", help="evaluate the best checkpoint afterwards")

    e = sub.add_parser("eval", help="evaluate a run's checkpoint on the test split")
    e.add_argument("run_dir", help="a run directory written by 'irat train'")
    e.add_argument("--attacks", help="comma-separated attacks (default: the run's eval.attacks)")
    e.add_argument("--limit", type=int, help="evaluate on the first N test images")
    e.add_argument(
        "--checkpoint",
        choices=["best", "last", "both"],
        help="which checkpoint (default: the run's eval.checkpoint, best); both: best then last, "
        "written to eval_best.* and eval_last.*",
    )
    e.add_argument(
        "--batch-size",
        type=int,
        help="evaluation batch (default: 500 on the CPU, the whole split on a GPU; halved on out-of-memory)",
    )
    e.add_argument("--data-dir", help="folder holding the dataset files")
    e.add_argument(
        "--bpda",
        action="store_true",
        default=None,
        help="attacks use the identity in the backward pass of the model's declared non-differentiable "
        "preprocessing (BPDA), to confirm a gradient-masking warning",
    )

    a = sub.add_parser(
        "analyze",
        help="figures of a run's instance weights and robustness; writes RUN_DIR/analysis/report.md",
    )
    a.add_argument("run_dir", help="a run directory written by 'irat train'")
    a.add_argument("--epoch", type=int, help="epoch of the weight figures (default: the last recorded)")
    a.add_argument(
        "--limit",
        type=int,
        default=1000,
        help="first N test images for the adversarial confusion matrix (default: 1000; 0: skip it)",
    )
    a.add_argument("--attack", default="pgd-20", help="attack of the confusion matrix (default: pgd-20)")
    a.add_argument(
        "--checkpoint", choices=["best", "last"], default="last", help="which checkpoint (default: last)"
    )
    a.add_argument("--data-dir", help="folder holding the dataset files")
    a.add_argument(
        "--against",
        metavar="RUN_B",
        help="another run: report the D-distance between the two runs' instance difficulties",
    )

    d = sub.add_parser("data", help="fetch a dataset, or list where each one is")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    f = dsub.add_parser(
        "fetch",
        help="find the files, else download and verify them, else install the Debian package (apt)",
    )
    f.add_argument("name", help="dataset name (irat data list shows them)")
    f.add_argument("--data-dir", help="put the files here (and only here)")
    f.add_argument("--no-apt", action="store_true", help="never call apt-get")
    ls = dsub.add_parser("list", help="each dataset: where it was found (or missing), its files and sha256")
    ls.add_argument("--data-dir", help="look in this folder (and its NAME subfolder) only")
    return parser


def _choices_text() -> str:
    from irat import attacks, data, methods, models

    return (
        f"methods:  {', '.join(methods.names())}\n"
        f"models:   {', '.join(models.names())}\n"
        f"datasets: {', '.join(data.names())}\n"
        f"attacks:  {', '.join(attacks.names())}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    bad = [a for a in extra if not (a.startswith("--") and ("=" in a or "." in a))]
    if bad or (extra and args.command not in ("train", "compare", "bench", "finetune")):
        parser.error(
            f"unrecognized arguments: {' '.join(bad or extra)} (config overrides look like --train.epochs=5)"
        )
    try:
        if args.command == "train":
            return _train(args, extra)
        if args.command == "analyze":
            return _analyze(args)
        if args.command == "compare":
            return _compare(args, extra)
        if args.command == "finetune":
            return _finetune(args, extra)
        if args.command == "data":
            return _data(args)
        if args.command == "bench":
            return _bench(args, extra)
        if args.command == "report":
            return _report(args)
        if args.command == "export":
            return _export(args)
        return _eval(args)
    except KeyboardInterrupt:
        print(f"irat: interrupted; {_resume_hint(args)}", file=sys.stderr)
        return 130
    except OSError as e:  # disk full, read-only folder (WriteError names the file)
        if os.environ.get("IRAT_DEBUG"):
            raise
        hint = "" if isinstance(e, FileNotFoundError) else f"; {_resume_hint(args)}"
        print(f"irat: error: {e}{hint}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as e:
        if os.environ.get("IRAT_DEBUG"):
            raise
        print(f"irat: error: {e}", file=sys.stderr)
        return 2


def _resume_hint(args) -> str:
    """What to run after an interruption or a failed write: each command resumes where it stopped
    (training from its last checkpoint, evaluation from its last finished batch)."""
    if args.command == "train":
        from irat.training.rundir import RunDir

        last = RunDir(args.out).last
        kept = f"the last good checkpoint is {last}; " if last.exists() else ""
        return f"{kept}resume with: irat train --out {args.out} --resume"
    if args.command == "compare":
        return (
            "run the same irat compare command again: finished runs are kept, the others resume from their "
            "last checkpoint and evaluation from its last finished batch"
        )
    if args.command == "eval":
        return "run the same irat eval command again: it resumes after the last finished batch"
    return "run the same command again"


def _train(args, overrides: list[str]) -> int:

    from irat.config import load
    from irat.training.loop import config_from_run
    from irat.training.rundir import RunDir

    if args.resume and RunDir(args.out).exists():
        if overrides or args.config:
            print(
                "irat: --resume uses the run's stored config; ignoring --config and overrides",
                file=sys.stderr,
            )
        cfg = config_from_run(args.out)
    else:
        cfg = load(args.config, overrides)
    return _run(cfg, args)


def _run(cfg, args) -> int:
    """Train what ``cfg`` describes into ``args.out``; print the summary; evaluate with ``--eval``."""
    import torch

    import irat
    from irat import distributed
    from irat.analysis.run import load_data

    torch.manual_seed(cfg.train.seed)
    data = load_data(cfg, args.data_dir)
    model = irat.models.create(cfg.model.name, dataset=data.spec, preprocess=cfg.model.preprocess)
    run = irat.train(model, data, out=args.out, resume=args.resume, config=cfg)
    last = run.history[-1] if run.history else {}
    if distributed.is_main():  # under torchrun rank 0 reports
        print(f"run: {run.dir}")
        if run.best_epoch >= 0:
            val = f"validation {cfg.train.val_attack} accuracy {run.best_val_robust:.4f}"
            print(f"best epoch {run.best_epoch} ({val})")
        if last:
            print("last epoch: " + ", ".join(f"{k}={v:.4f}" for k, v in last.items() if isinstance(v, float)))
    if args.eval:
        return _eval(
            argparse.Namespace(
                run_dir=args.out,
                attacks=None,
                limit=None,
                checkpoint=None,
                batch_size=None,
                data_dir=args.data_dir,
                bpda=None,
            )
        )
    return 0


FINETUNE_RESET = {
    "train": ("method", "objective", "trade_off", "lr", "schedule", "init"),
    "weighting": None,  # the whole section: the pretrained method's weighting options do not carry over
    "hard": None,
}


def _finetune(args, overrides: list[str]) -> int:
    """``irat finetune RUN_DIR --extra ...``: the run's config with method finetune, 1 epoch,
    ``train.init`` = its checkpoint and ``data.extra``; then the overrides."""
    from irat.analysis.run import checkpoint_path
    from irat.config import load
    from irat.training.loop import config_from_run
    from irat.training.rundir import RunDir

    args.out = args.out or f"{str(args.run_dir).rstrip('/')}-finetune"
    if args.resume and RunDir(args.out).exists():
        return _train(argparse.Namespace(**{**vars(args), "config": None}), overrides)
    pretrained = config_from_run(args.run_dir)
    base = pretrained.to_dict()
    for section, keys in FINETUNE_RESET.items():
        if keys is None:
            base.pop(section)
        else:
            for key in keys:
                base[section].pop(key)
    base["train"].update(
        method="finetune", epochs=1, init=str(checkpoint_path(args.run_dir, args.checkpoint, pretrained))
    )
    base["data"]["extra"] = args.extra
    if args.data_dir:
        base["data"]["root"] = args.data_dir
    return _run(load(None, overrides, base=base), args)


def _compare(args, overrides: list[str]) -> int:
    import irat
    from irat.config import load

    if args.data_dir:
        overrides = [*overrides, f"--data.root={args.data_dir}"]
    cfg = load(args.config, overrides)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    from irat import distributed

    comparison = irat.compare(methods, config=cfg, out=args.out, analyze=not args.no_analyze)
    if not distributed.is_main():  # torchrun: rank 0 reports
        return 0
    print(comparison.to_markdown())
    print(f"table: {comparison.out / 'comparison.md'}")
    if not args.no_analyze:
        print("plots: " + ", ".join(str(comparison.out / m / "analysis" / "report.md") for m in methods))
    return 0


def _overrides(items: list[str]) -> dict:
    """``--train.epochs=5`` / ``--epochs=5`` → {"train.epochs": 5} (values parsed as YAML)."""
    import yaml

    from irat.config import ConfigError, bare_key

    out = {}
    for item in items:
        key, sep, raw = item.removeprefix("--").partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like --section.key=value (e.g. --train.epochs=5)")
        section, name = key.split(".", 1) if "." in key else bare_key(key)
        out[f"{section}.{name}"] = yaml.safe_load(raw) if raw != "" else None
    return out


def _bench(args, overrides: list[str]) -> int:
    from irat import bench

    flat = _overrides(overrides)
    if args.dry_run:
        plan = bench.plan(
            args.spec, args.out, overrides=flat, data_dir=args.data_dir, estimate_cost=not args.no_estimate
        )
        print(plan.text())
        return 0
    result = bench.bench(args.spec, args.out, overrides=flat, data_dir=args.data_dir, html=args.html)
    from irat import distributed

    if not distributed.is_main():  # torchrun: rank 0 reports
        return 1 if result.failed else 0
    print(result.report.markdown())
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    if result.failed:
        print(f"irat: {len(result.failed)} cell(s) failed: {', '.join(result.failed)}", file=sys.stderr)
        return 1
    return 0


def _report(args) -> int:
    from irat.bench import build_report
    from irat.bench.provenance import command_line

    built, files = build_report(
        args.run_dirs, out=args.out, html=args.html, group=args.group, command=command_line()
    )
    print(built.markdown())
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0


def _export(args) -> int:
    from irat.export import export

    for path in export(args.run_dir, args.format, checkpoint=args.checkpoint, out=args.out):
        print(path)
    return 0


def _eval(args) -> int:
    from irat import distributed
    from irat.analysis.run import checkpoint_names, checkpoint_path, evaluate_run, load_run
    from irat.training import checkpoint

    run = load_run(args.run_dir, checkpoint=args.checkpoint, data_dir=args.data_dir)
    main = distributed.is_main()  # under torchrun only rank 0 writes and prints
    if main:
        checkpoint.check_writable(args.run_dir)  # results and progress go there: fail before any attack
        checkpoint.remove_temporaries(args.run_dir)  # of a killed write
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()] if args.attacks else None
    names = checkpoint_names(args.checkpoint, run.config)
    for which in names:
        path = checkpoint_path(args.run_dir, which, run.config) if len(names) > 1 else run.checkpoint
        state = checkpoint.load(path, map_location=run.device)
        checkpoint.restore(run.model, state, path, run.config)
        res = evaluate_run(
            run.model,
            run.data,
            run.config,
            attacks=attacks,
            limit=args.limit,
            batch_size=args.batch_size,
            bpda=args.bpda,
            run_dir=args.run_dir,
        )
        if main:
            res.save(Path(args.run_dir), stem="eval" if len(names) == 1 else f"eval_{which}")
            print(f"checkpoint: {path} (epoch {state['epoch']})")
            print(res.to_markdown())
    distributed.barrier()
    return 0


def _data(args) -> int:
    from irat.data import provision

    if args.data_command == "list":
        print(provision.listing(args.data_dir))
        return 0
    found = provision.fetch(args.name, root=args.data_dir, apt=not args.no_apt)
    print(f"{args.name}: {found}")
    return 0


def _analyze(args) -> int:
    from irat import distributed
    from irat.analysis import analyze

    if distributed.requested() and int(os.environ.get("RANK", "0")) != 0:
        return 0  # torchrun: the analyses run in one process, rank 0
    with distributed.alone():
        report = analyze(
            args.run_dir,
            epoch=args.epoch,
            limit=args.limit,
            attack=args.attack,
            checkpoint=args.checkpoint,
            data_dir=args.data_dir,
            against=args.against,
        )
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
