"""``irat.bench`` / ``irat bench SPEC``: run a grid of methods × seeds × settings (``grid``), one
run directory per cell (``cell.train_and_evaluate``, shared with ``irat compare``), then write the
mean ± std tables and the HTML report (``report``).

Resumable at two levels: a cell whose run is trained and evaluated is skipped; otherwise its run
resumes from its last checkpoint and its evaluation skips the attacks already finished on that
checkpoint. A killed bench, started again with the same command, continues where it stopped.

Output folder (default ``runs/bench/<spec name>``)::

    bench.yaml                 the spec (base config resolved) and each invocation's command,
                               date, versions, hardware and wall-clock time
    <setting>/<method>/seed<k>/  the runs
    table.md, table.csv, results.json, report.html, figures/
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from irat import distributed
from irat.bench import estimate
from irat.bench.grid import BenchSpec, Cell, Grid, expand, load_spec, nest
from irat.bench.runs import BENCH_FILE
from irat.config import ConfigError
from irat.training.checkpoint import atomic_write_text
from irat.training.rundir import RunDir


@dataclass
class CellStatus:
    cell: Cell
    state: str  # done | evaluate | resume | new
    detail: str = ""
    epochs_done: int = 0


@dataclass
class Plan:
    """What ``bench`` will do: the grid, each cell's state, the data found, the estimate."""

    grid: Grid
    out: Path
    statuses: list[CellStatus]
    data: dict = field(default_factory=dict)  # dataset → where it was found
    estimates: dict = field(default_factory=dict)  # (setting, label) → {train, validation, evaluation} s
    estimate_notes: list = field(default_factory=list)

    def text(self) -> str:
        spec = self.grid.spec
        lines = [f"bench {spec.name}" + (f" ({spec.path})" if spec.path else "") + f" → {self.out}"]
        if spec.title:
            lines.append(f"  {spec.title}" + (f" [{spec.source}]" if spec.source else ""))
        for name, where in self.data.items():
            lines.append(f"  data: {name}: {where}")
        for name in spec.needs:
            lines.append(f"  needs: {name}: {_files(name)}")
        for kind, text in spec.cost.items():
            lines.append(f"  cost ({kind}, stated by the preset): {text}")
        for s in self.grid.skipped:
            lines.append(f"  skipped {s.what} {s.name}: {s.reason}")
        for setting, attacks in self.grid.attacks.items():
            lines.append(f"  attacks ({setting}): {', '.join(attacks)}")
        counts = {
            k: sum(st.state == k for st in self.statuses) for k in ("done", "evaluate", "resume", "new")
        }
        lines.append(
            f"  cells: {len(self.statuses)} ({len(spec.seeds)} seeds); "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
        )
        if not self.statuses:
            lines.append("  nothing runs until the planned names above land in irat")
        if not self.statuses:
            return "\n".join(lines)
        lines.append("")
        head = "| setting | method | seed | state | estimate (train + validation + evaluation) |"
        lines += [head, "|---|---|---|---|---|"]
        total = 0.0
        for st in self.statuses:
            c = st.cell
            est = self.estimates.get((c.setting, c.label))
            if est is None:
                shown = "–"
            else:
                parts = dict(est)
                if st.state == "done":
                    parts = {}
                elif st.state == "evaluate":
                    parts = {"evaluation": est["evaluation"]}
                elif st.state == "resume":
                    left = 1 - st.epochs_done / c.config.train.epochs
                    parts = {**parts, "train": left * est["train"], "validation": left * est["validation"]}
                cost = sum(parts.values())
                total += cost
                shown = estimate.duration(cost) if parts else "0 s"
            state = st.state + (f" ({st.detail})" if st.detail else "")
            lines.append(f"| {c.setting} | {c.label} | {c.seed} | {state} | {shown} |")
        if self.estimates:
            lines += [
                "",
                f"estimate: {estimate.duration(total)} on this machine for what is left, from one timed "
                f"training step per method; AutoAttack counted as {estimate.AUTOATTACK_PASSES:.0f} "
                "forward-backward passes per image (rough: the largest uncertainty)",
            ]
        lines += [f"  note: {n}" for n in self.estimate_notes]
        return "\n".join(lines)


def _files(dataset: str) -> str:
    """The files a dataset is read from (``irat data fetch NAME`` gets them)."""
    from irat.data import DataError, registry

    try:
        entry = registry.get(dataset)
    except DataError:
        return "not a dataset of this irat yet"
    return ", ".join(entry.files) or entry.wanted


def _status(cell: Cell, out: Path) -> CellStatus:
    from irat.analysis.run import checkpoint_names
    from irat.bench.cell import check_resumable, eval_stem, finished

    run = RunDir(out / cell.path)
    if not run.exists():
        return CellStatus(cell, "new")
    check_resumable(run, cell.config)
    if not finished(run, cell.config.train.epochs):
        rows = run.metrics()
        done = rows[-1]["epoch"] + 1 if rows else 0
        return CellStatus(cell, "resume", f"from epoch {done}" if rows else "", done)
    names = checkpoint_names(None, cell.config)
    for which in names:
        f = run.path / f"{eval_stem(which, names)}.json"
        if not f.is_file():
            return CellStatus(cell, "evaluate")
        import json

        ev = json.loads(f.read_text())
        if (
            set(cell.config.eval.attacks) - set(ev.get("accuracy", {}))
            or abs(ev.get("eps", -1) - cell.config.attack.eps) > 1e-12
        ):
            return CellStatus(cell, "evaluate")
    return CellStatus(cell, "done")


def _data_key(cfg) -> tuple:
    d = cfg.data
    return (d.dataset, d.root, d.val_size, d.seed if d.seed is not None else cfg.train.seed, d.limit)


def _load(cfg, data_dir, download: bool):
    import irat

    dataset, root, val_size, seed, limit = _data_key(cfg)
    return irat.data.load(
        dataset, root=data_dir or root, val_size=val_size, seed=seed, limit=limit, download=download
    )


def plan(
    spec: BenchSpec | str | Path,
    out: str | Path | None = None,
    *,
    overrides: dict | None = None,
    data_dir: str | None = None,
    estimate_cost: bool = False,
) -> Plan:
    """Resolve ``spec`` into cells, check every dataset is present (no download) and every
    existing run directory is of its cell's config; with ``estimate_cost``, time one training
    step per method (``estimate``). Raises one ``ConfigError``/``DataError`` for anything wrong."""
    from irat.data import registry
    from irat.data.fetch import locate

    if not isinstance(spec, BenchSpec):
        spec = load_spec(spec)
    grid = expand(spec, overrides)
    out = Path(out) if out is not None else Path("runs/bench") / spec.name
    found = {}
    for cell in grid.cells:
        name, root = cell.config.data.dataset, data_dir or cell.config.data.root
        if name not in found:
            try:
                found[name] = str(locate(registry.get(name), root=root, download=False))
            except Exception as e:
                raise type(e)(
                    f"{spec.path or spec.name}: {e}; fetch it with: irat data fetch {name}"
                ) from None
    statuses = [_status(c, out) for c in grid.cells]
    result = Plan(grid, out, statuses, found)
    if estimate_cost:
        data, key, units = None, None, {}
        for cell in grid.cells:
            if (cell.setting, cell.label) in result.estimates:
                continue
            if _data_key(cell.config) != key:
                data, key = _load(cell.config, data_dir, download=False), _data_key(cell.config)
            try:
                if cell.setting not in units:  # one pass of one image of this setting's model
                    units[cell.setting] = estimate.time_unit(cell.config, data)
                step = estimate.time_step(cell.config, data)
            except Exception as e:  # a method the estimate cannot run alone: say so, keep planning
                result.estimate_notes.append(
                    f"{cell.setting}/{cell.label}: no estimate ({type(e).__name__}: {e})"
                )
                continue
            result.estimates[(cell.setting, cell.label)] = estimate.cell_seconds(
                cell.config, data, step, units[cell.setting]
            )
    return result


def _record_invocation(
    out: Path, spec: BenchSpec, command: str, wall: float | None, started: str, invocation: str
) -> None:
    """bench.yaml: the spec with its base resolved, and one entry per invocation (``invocation``:
    its unique id; two invocations may start within the same second)."""
    from irat.bench.provenance import hardware, versions

    path = out / BENCH_FILE
    info = yaml.safe_load(path.read_text()) if path.is_file() else {}
    raw = {k: v for k, v in spec.raw.items() if k != "base"}
    raw["config"] = nest(spec.base)
    runs = [r for r in info.get("runs", []) if r.get("id") != invocation]
    runs.append(
        {
            "id": invocation,
            "date": started,
            "command": command,
            "wall_clock": estimate.duration(wall) if wall is not None else "running",
            "versions": versions(),
            "hardware": hardware(),
        }
    )
    info = {"name": spec.name, "spec_file": str(spec.path) if spec.path else None, "spec": raw, "runs": runs}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(info, sort_keys=False, allow_unicode=True))


@dataclass
class BenchResult:
    out: Path
    plan: Plan
    report: object  # irat.bench.report.Report
    failed: dict = field(default_factory=dict)  # cell path → error text
    files: dict = field(default_factory=dict)


def bench(
    spec: BenchSpec | str | Path,
    out: str | Path | None = None,
    *,
    overrides: dict | None = None,
    data_dir: str | None = None,
    progress: bool = True,
    command: str | None = None,
    html: str | Path | None = None,
) -> BenchResult:
    """Run every cell of ``spec`` that is not finished, then write the tables and the report into
    ``out``. A cell that fails (e.g. a diverging run) is reported and the others still run."""
    from datetime import datetime, timezone

    from irat.bench.cell import train_and_evaluate
    from irat.bench.provenance import command_line
    from irat.bench.report import build, write

    if not progress:
        overrides = {**(overrides or {}), "train.progress": False}
    p = plan(spec, out, overrides=overrides, data_dir=data_dir)
    spec, out = p.grid.spec, p.out
    if not p.statuses:
        missing = ", ".join(s.name for s in p.grid.skipped)
        raise ConfigError(
            f"{spec.path or spec.name}: nothing to run yet: {missing} not in this irat (planned)"
        )
    command = command or command_line()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    invocation = uuid.uuid4().hex[:12]
    t0 = time.perf_counter()
    main = distributed.is_main()  # torchrun: every process trains and evaluates the cells, rank 0 writes
    if main:
        _record_invocation(out, spec, command, None, started, invocation)
    todo = [st for st in p.statuses if st.state != "done"]
    failed: dict = {}
    bar = tqdm(
        total=len(p.statuses),
        initial=len(p.statuses) - len(todo),
        desc=f"bench {spec.name}",
        unit="cell",
        position=0,
        disable=not progress,
    )
    data, key = None, None
    try:
        for st in todo:
            cell = st.cell
            bar.set_postfix_str(f"{cell.setting}/{cell.label}/seed{cell.seed} ({st.state})")
            try:
                if _data_key(cell.config) != key:
                    data, key = _load(cell.config, data_dir, download=True), _data_key(cell.config)
                train_and_evaluate(cell.config, data, out / cell.path)
            except (ConfigError, KeyboardInterrupt):
                raise
            except Exception as e:
                failed[str(cell.path)] = f"{type(e).__name__}: {e}"
                tqdm.write(f"irat bench: {cell.path} failed: {type(e).__name__}: {e}", file=sys.stderr)
            bar.update(1)
    finally:
        bar.close()
        if main:
            _record_invocation(out, spec, command, time.perf_counter() - t0, started, invocation)
    distributed.barrier()
    report = build([out])
    for path, error in failed.items():
        report.notes.append(f"{path} failed: {error}")
    for s in p.grid.skipped:
        report.notes.append(f"skipped {s.what} {s.name}: {s.reason}")
    files = write(report, out, html=html, command=command) if main else {}
    return BenchResult(out, p, report, failed, files)
