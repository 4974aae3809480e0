"""Kill ``irat train``, ``irat compare`` and a long ``irat eval`` at random moments, resume each
time, and check that nothing is lost (issue 9, "Nothing lost on a crash").

For each command: one uninterrupted reference run; then the same command in a fresh folder,
started again and again, each start killed after a random delay (SIGKILL, and every fourth kill
a Ctrl-C, SIGINT, sent once the interpreter is up) until the command has been killed
``--kills`` times, then left to finish (a start that finishes before its kill is compared with
the reference and the folder started afresh, so that every kill hits unfinished work). After
every kill the folder must be readable: the config parses, every metrics row is JSON, every
checkpoint loads with ``weights_only=True``, every record and evaluation file parses. At the end
the results must equal the reference:
metrics (without timings), the last checkpoint's weights bit for bit, ``eval.json``,
``comparison.json``; no temporary file may be left. A Ctrl-C must end with exit status 130 and
the one line that says how to resume.

    python benchmarks/chaos.py --out /tmp/chaos                 # 8 kills per command, 24 in all
    python benchmarks/chaos.py --kills 10 --seed 1 --json

The data is a synthetic npz (a learnable 4-class pattern), so no dataset is needed; CPU only.
Each start pays the interpreter's import of torch, so a run takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the irat the killed processes run


def synthetic(path: Path) -> Path:
    """A 4-class 12×12 grey-scale npz: the class is a bright quadrant over noise."""
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 4, n)
        x = rng.uniform(0, 90, (n, 12, 12))
        for c in range(4):
            r, col = divmod(c, 2)
            x[y == c, 6 * r : 6 * r + 6, 6 * col : 6 * col + 6] += 150
        return x.astype(np.uint8), y.astype(np.int64)

    (xt, yt), (xs, ys) = make(3000), make(600)
    np.savez(path, x_train=xt, y_train=yt, x_test=xs, y_test=ys)
    return path


def commands(npz: Path, folder: Path) -> dict[str, list[str]]:
    """The three commands, writing under ``folder``."""
    common = [
        "--data.dataset=npz",
        f"--data.root={npz}",
        "--data.val_size=200",
        "--model.name=tiny-cnn",
        "--eps=0.1",
        "--steps=5",
        "--progress=false",
    ]
    return {
        "train": ["train", *common, "--epochs=6", "--out", str(folder / "train"), "--resume"],
        "compare": [
            "compare",
            *common,
            "--methods",
            "at,mail-at",
            "--epochs=3",
            "--weighting.burn_in=1",
            "--eval.attacks=clean,pgd-20",
            "--eval.limit=200",
            "--no-analyze",
            "--out",
            str(folder / "compare"),
        ],
        "eval": [
            "eval",
            str(folder / "eval"),
            "--attacks",
            "clean,pgd-20,apgd-ce",
            "--limit",
            "400",
            "--batch-size",
            "40",
        ],
    }


def irat(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    with open(log, "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "irat", *args], stdout=subprocess.DEVNULL, stderr=err, env=env
        )


def readable(folder: Path) -> list[str]:
    """Problems found in every run directory under ``folder`` (empty: all readable)."""
    from irat.training import checkpoint
    from irat.training.records import load_record
    from irat.training.rundir import RunDir

    problems = []
    for config in folder.rglob("config.yaml"):
        run = RunDir(config.parent)
        try:
            run.read_config()
            run.metrics()
            for ckpt in (run.last, run.best):
                if ckpt.exists():
                    checkpoint.load(ckpt)
            for rec in (run.path / "records").glob("*.npz"):
                load_record(rec)
            for res in run.path.glob("*.json"):
                json.loads(res.read_text())
            for progress in (run.path / ".eval_progress").glob("*.pt"):
                torch.load(progress, weights_only=True)
        except Exception as e:  # noqa: BLE001 (any failure to read is what we count)
            problems.append(f"{run.path}: {type(e).__name__}: {e}")
    for res in folder.rglob("comparison.json"):
        try:
            json.loads(res.read_text())
        except Exception as e:  # noqa: BLE001
            problems.append(f"{res}: {type(e).__name__}: {e}")
    return problems


def results(folder: Path) -> dict:
    """What must equal the reference: metrics without timings, last checkpoints' weights (as a
    digest), evaluations and the comparison table."""
    from irat.evaluation.progress import tensor_digest
    from irat.training import checkpoint
    from irat.training.rundir import RunDir

    out = {}
    for config in sorted(folder.rglob("config.yaml")):
        run = RunDir(config.parent)
        key = str(run.path.relative_to(folder))
        out[key + "/metrics"] = [{k: v for k, v in r.items() if k != "time_s"} for r in run.metrics()]
        for ckpt in (run.last, run.best):
            if ckpt.exists():
                state = checkpoint.load(ckpt)["model"]
                out[f"{key}/{ckpt.name}"] = tensor_digest(*(state[k] for k in sorted(state)))
        for res in sorted(run.path.glob("eval*.json")):
            out[f"{key}/{res.name}"] = json.loads(res.read_text())
    for res in folder.rglob("comparison.json"):
        out[str(res.relative_to(folder))] = json.loads(res.read_text())
    return out


def temporaries(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(".*.tmp")]


def run_to_end(args: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    proc = irat(args, log)
    if proc.wait() != 0:
        raise SystemExit(f"irat {' '.join(args)} failed:\n{log.read_text()}")
    return time.perf_counter() - t0


def start_up() -> float:
    """Seconds for a fresh interpreter to import irat (and torch), now."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import irat"], env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return time.perf_counter() - t0


def chaos(
    name: str,
    args: list[str],
    folder: Path,
    kills: int,
    rng: random.Random,
    span: float,
    reference: Path,
    fresh: callable,
) -> dict:
    """Start ``args`` again and again, killing each start after a random delay in [0.1 s, span],
    until ``kills`` kills; a start that finishes first is compared with ``reference`` and its
    folder made ``fresh()`` again, so every kill hits unfinished work. Then let it finish.
    Returns the counts and the problems seen."""
    log = folder.parent / f"{name}.log"
    stats = {"sigkill": 0, "sigint": 0, "sigint_clean": 0, "finished_early": 0, "unreadable": [], "differ": 0}
    stats["unclean_ctrl_c"], stats["ctrl_c_at_exit"] = [], 0
    starts = 0
    while stats["sigkill"] + stats["sigint"] < kills:
        starts += 1
        ctrl_c = (stats["sigkill"] + stats["sigint"]) % 4 == 3
        # Ctrl-C once irat's code runs: a SIGINT while Python imports the package (torch) ends in
        # Python's own traceback, before any irat code could catch it; the start-up time is
        # measured again just before, since the machine's load changes
        low = 1.5 * start_up() + 1.0 if ctrl_c else 0.1
        delay = rng.uniform(low, max(low + 0.5, span))
        proc = irat(args, log)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            pass
        else:
            if proc.returncode != 0:
                raise SystemExit(f"irat {name} failed on start {starts}:\n{log.read_text()}")
            stats["finished_early"] += 1  # a complete result after some kills: check it, start over
            stats["differ"] += results(reference) != results(folder)
            fresh()
            continue
        if ctrl_c:
            proc.send_signal(signal.SIGINT)
            rc = proc.wait()
            stats["sigint"] += 1
            lines = log.read_text().strip().splitlines()
            clean = rc == 130 and bool(lines) and lines[-1].startswith("irat: interrupted; ")
            stats["sigint_clean"] += clean
            if not clean and rc == -signal.SIGINT and results(reference) == results(folder):
                # the work was complete: the signal reached the interpreter on its way out, after
                # irat's main() had returned (stdout, with irat's last line, goes to /dev/null)
                stats["ctrl_c_at_exit"] += 1
            elif not clean:
                stats["unclean_ctrl_c"].append(f"status {rc} after {delay:.1f} s: " + " | ".join(lines[-3:]))
        else:
            proc.kill()
            proc.wait()
            stats["sigkill"] += 1
        stats["unreadable"] += readable(folder)
    starts += 1
    if irat(args, log).wait() != 0:  # finish: a start that is not killed
        raise SystemExit(f"irat {name} failed after the kills:\n{log.read_text()}")
    stats["starts"] = starts
    stats["differ"] += results(reference) != results(folder)
    return stats


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/chaos", help="folder for the runs (emptied first)")
    parser.add_argument("--kills", type=int, default=8, help="kills per command (default 8: 24 in all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill moments")
    parser.add_argument("--only", help="comma-separated subset of train,compare,eval")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    ref, hit = out / "reference", out / "killed"
    ref.mkdir(parents=True)
    hit.mkdir()
    npz = synthetic(out / "data.npz")
    rng = random.Random(args.seed)
    ref_cmds, hit_cmds = commands(npz, ref), commands(npz, hit)
    names = args.only.split(",") if args.only else list(ref_cmds)
    base = out / "base" / "run"
    if "eval" in names:  # the evaluated run: one short training, copied for both sides
        train = commands(npz, out / "base")["train"][:-3] + ["--epochs=2", "--out", str(base)]
        run_to_end(train, out / "base.log")
        shutil.copytree(base, ref / "eval")
    report = {"kills_per_command": args.kills, "seed": args.seed, "commands": {}}
    for name in names:
        target = hit / name

        def fresh(target=target, name=name):
            shutil.rmtree(target, ignore_errors=True)
            if name == "eval":
                shutil.copytree(base, target)

        fresh()
        seconds = run_to_end(ref_cmds[name], out / f"reference-{name}.log")
        stats = chaos(name, hit_cmds[name], target, args.kills, rng, seconds, ref / name, fresh)
        stats.update(reference_s=round(seconds, 1), temporaries=temporaries(target))
        stats["same_results"] = stats["differ"] == 0
        report["commands"][name] = stats
        if not args.json:
            print(
                f"{name}: {stats['sigkill']} SIGKILL + {stats['sigint']} Ctrl-C "
                f"({stats['sigint_clean']} clean) over {stats['starts']} starts "
                f"({stats['finished_early']} finished before their kill, started over); "
                f"unreadable: {len(stats['unreadable'])}; every result equals the uninterrupted run: "
                f"{stats['same_results']}; temporaries left: {len(stats['temporaries'])}; "
                f"reference {seconds:.0f} s",
                flush=True,
            )
    c = report["commands"].values()
    report["total_kills"] = sum(s["sigkill"] + s["sigint"] for s in c)
    report["ok"] = all(
        s["same_results"] and not s["unreadable"] and not s["temporaries"] and not s["unclean_ctrl_c"]
        for s in c
    )
    print(json.dumps(report, indent=None if args.json else 2))
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
