"""Page faults and time of one PGD-10 attack with glibc's default allocator and with
``irat.runtime.keep_freed_memory()``.

The allocator setting is process-wide and cannot be undone, so each measurement runs in its own
process; the two settings alternate (default, kept, default, kept, ...) ``--pairs`` times and
medians are reported, so a noisy shared machine affects both alike.

    python benchmarks/page_faults.py                   # a table
    python benchmarks/page_faults.py --model fc1 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = """
import json, resource, sys, time
import torch
import irat
from irat.attacks.pgd import pgd
from irat.runtime import keep_freed_memory

model_name, kept, batch, attacks = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4])
if kept:
    keep_freed_memory()
torch.manual_seed(0)
spec = irat.data.registry.get("fashion-mnist").spec
model = irat.models.create(model_name, dataset=spec)
x, y = torch.rand(batch, spec.channels, spec.image_size, spec.image_size), torch.randint(0, 10, (batch,))
run = lambda: pgd(model, x, y, eps=0.1, steps=10, step_size=0.025, final_logits=False)
for _ in range(3):
    run()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
times = []
for _ in range(attacks):
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
median_ms = 1e3 * sorted(times)[len(times) // 2]
print(json.dumps({"faults_per_attack": faults / attacks, "ms_per_attack": median_ms}))
"""


def child(model: str, kept: bool, batch: int, attacks: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["IRAT_KEEP_FREED_MEMORY"] = "1"
    cmd = [sys.executable, "-c", CHILD, model, "1" if kept else "0", str(batch), str(attacks)]
    return json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-cnn,fc1", help="comma-separated")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--attacks", type=int, default=20, help="attacks timed per process")
    p.add_argument("--pairs", type=int, default=5, help="alternating default/kept processes")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = []
    for model in [m.strip() for m in args.model.split(",") if m.strip()]:
        runs = {False: [], True: []}
        for _ in range(args.pairs):
            for kept in (False, True):
                runs[kept].append(child(model, kept, args.batch_size, args.attacks))
        row = {"model": model, "batch_size": args.batch_size, "pairs": args.pairs}
        for kept, name in ((False, "default"), (True, "kept")):
            row[f"{name}_faults_per_attack"] = statistics.median(r["faults_per_attack"] for r in runs[kept])
            row[f"{name}_ms_per_attack"] = statistics.median(r["ms_per_attack"] for r in runs[kept])
        row["kept_faster_in_pairs"] = sum(
            k["ms_per_attack"] < d["ms_per_attack"] for d, k in zip(runs[False], runs[True])
        )
        row["speedup"] = row["default_ms_per_attack"] / row["kept_ms_per_attack"]
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        print(f"PGD-10, batch {args.batch_size}, medians of {args.pairs} alternating process pairs")
        print("| model | faults/attack default | kept | ms/attack default | kept | speed-up | kept faster |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['model']} | {r['default_faults_per_attack']:.0f} | "
                f"{r['kept_faults_per_attack']:.0f} | "
                f"{r['default_ms_per_attack']:.1f} | {r['kept_ms_per_attack']:.1f} | {r['speedup']:.2f}× | "
                f"{r['kept_faster_in_pairs']}/{r['pairs']} |"
            )
    return rows


if __name__ == "__main__":
    main()
