"""Benchmarks as data: a grid of methods × seeds × settings from a YAML spec (``configs/bench/*.yaml``),
one run directory per cell, mean ± std tables and a self-contained HTML report.

    result = irat.bench.bench("configs/bench/cpu-fmnist.yaml", out="runs/bench/cpu")
    print(irat.bench.plan("configs/bench/mail-t2.yaml", estimate_cost=True).text())
    irat.bench.build_report(["runs/demo", "runs/at"], html="report.html")

grid.py (the spec and its cells), cell.py (train + evaluate one cell; shared with irat.compare),
runner.py (the bench loop, plan, resume), estimate.py (cost from a timed step), runs.py (reading
run directories), stats.py (mean ± std, Markdown/CSV), report.py (tables from runs),
report_html.py (the HTML file), provenance.py (command, versions, hardware).
"""

from irat.bench.grid import BenchSpec, expand, load_spec, parse_spec
from irat.bench.report import report as build_report
from irat.bench.runner import BenchResult, Plan, bench, plan

__all__ = [
    "BenchResult",
    "BenchSpec",
    "Plan",
    "bench",
    "build_report",
    "expand",
    "load_spec",
    "parse_spec",
    "plan",
]
