"""``irat report RUN_DIR... [--html OUT]``: the mean ± std tables and the HTML report of existing
runs, of any mix of ``irat train``, ``irat compare`` and ``irat bench`` run directories.

Runs of an ``irat bench`` output folder (it holds ``bench.yaml``) form the tables of its spec:
one per setting, rows in the spec's order, the paper's numbers beside ours. Other runs form one
table per (dataset, model, norm, ε); runs of different settings are refused unless
``group=True`` (``--group``), which makes one table per setting. Within a table, rows are the
method names; runs of one method with different configs (e.g. two trade-offs) become separate
rows named by what differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from irat.bench import stats
from irat.bench.runs import BENCH_FILE, RunRecord, bench_root, find_runs, read_run, setting_text
from irat.config import ConfigError
from irat.training.checkpoint import atomic_write_text

PER_METHOD_KEYS = {
    "train.method",
    "train.seed",
    "data.seed",
    "train.objective",
    "train.trade_off",
    "attack.start",
}
"""Config keys in which rows of one table may differ without a note (the method's own; every
``weighting.*`` key too)."""


@dataclass
class Report:
    """``tables`` (``stats.Table``); ``benches``: bench root → its bench.yaml contents;
    ``notes``: about the whole report."""

    tables: list
    benches: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    command: str = ""

    def markdown(self) -> str:
        head = "\n".join(f"- {n}" for n in self.notes)
        return (head + "\n\n" if head else "") + stats.to_markdown(self.tables)

    def csv(self) -> str:
        return stats.to_csv(self.tables)


def _bench_records(root: Path, paths: list[Path]) -> tuple[dict, list, list]:
    """bench.yaml of ``root`` and its runs among ``paths`` as (setting, label) records; runs it
    does not list come back unlabelled."""
    from irat.bench.grid import Cell, parse_spec

    info = yaml.safe_load((root / BENCH_FILE).read_text())
    spec = parse_spec(info["spec"], None, name=info.get("name"))
    where = {}
    for s in spec.settings:
        for m in spec.methods:
            for seed in spec.seeds:
                cell = Cell(s.name, m.label, m.method, seed, None)
                where[(root / cell.path).resolve()] = (s.name, m.label)
    records, loose = [], []
    for p in paths:
        hit = where.get(p.resolve())
        if hit is None:
            loose.append(p)
        else:
            records.append(read_run(p, group=hit[0], label=hit[1]))
    return {"info": info, "spec": spec}, records, loose


def build(paths, *, group: bool = False) -> Report:
    """The ``Report`` of the runs at or below ``paths``."""
    runs = find_runs(paths)
    benches: dict = {}
    bench_records: list[RunRecord] = []
    loose_paths: list[Path] = []
    by_root: dict = {}
    for p in runs:
        root = bench_root(p.parent)
        (by_root.setdefault(root, []) if root is not None else loose_paths).append(p)
    for root, ps in by_root.items():
        bench, records, loose = _bench_records(root, ps)
        benches[root] = bench
        bench_records += records
        loose_paths += loose
    loose = [read_run(p) for p in loose_paths]

    keys = {}
    for r in loose:
        keys.setdefault(r.setting_key(), []).append(r)
    if len(keys) > 1 and not group:
        listing = "; ".join(f"{setting_text(k)} ({len(v)} runs)" for k, v in keys.items())
        raise ConfigError(
            f"the runs are of {len(keys)} different settings ({listing}); one table compares one "
            "dataset, model, norm and ε: pass --group for one table per setting, or name the runs of "
            "one setting"
        )
    tables = []
    for root, bench in benches.items():
        spec = bench["spec"]
        mine = [r for r in bench_records if bench_root(r.path.parent) == root]
        for s in spec.settings:
            rs = [r for r in mine if r.group == s.name]
            if not rs:
                continue
            keyset = {r.setting_key() for r in rs}
            title = f"{spec.title or spec.name}: {s.title or s.name} ({'; '.join(map(setting_text, keyset))})"
            order = [m.label for m in spec.methods]
            overridden = {k for m in spec.methods for k in m.overrides}
            t = stats.summarize(
                rs,
                group=s.name,
                title=title,
                order=order,
                paper=spec.paper.get(s.name),
                columns=spec.attack_names(),
            )
            t.notes += _differences(rs, PER_METHOD_KEYS | overridden)
            tables.append(t)
    for key, rs in keys.items():
        _disambiguate(rs)
        t = stats.summarize(rs, group=setting_text(key), title=setting_text(key))
        t.notes += _differences(rs, PER_METHOD_KEYS)
        tables.append(t)
    if not any(r.evals for t in tables for r in t.records):
        raise ConfigError(
            "none of the runs has been evaluated (no eval*.json); run irat eval RUN_DIR first, or irat bench"
        )
    return Report(tables, benches)


def _flat(record: RunRecord) -> dict:
    from irat.bench.cell import comparable

    return comparable(record.config.to_dict())


def _differences(records: list[RunRecord], allowed: set) -> list[str]:
    """Notes naming the config keys (other than ``allowed``) in which the runs of one table differ."""
    flats = [_flat(r) for r in records]
    notes = []
    for key in flats[0]:
        if key in allowed or key.startswith(("eval.", "weighting.")):
            continue
        values = sorted({json.dumps(f.get(key), default=str) for f in flats})
        if len(values) > 1:
            notes.append(f"the runs differ in {key}: {', '.join(values)}")
    return notes


def _disambiguate(records: list[RunRecord]) -> None:
    """Runs of one method with different configs get labels that say what differs."""
    by_method: dict = {}
    for r in records:
        by_method.setdefault(r.label, []).append(r)
    for label, rs in by_method.items():
        flats = [{k: v for k, v in _flat(r).items() if k not in ("train.seed", "data.seed")} for r in rs]
        if len({json.dumps(f, sort_keys=True, default=str) for f in flats}) < 2:
            continue
        differing = [k for k in flats[0] if len({json.dumps(f.get(k), default=str) for f in flats}) > 1]
        for r, f in zip(rs, flats):
            r.label = f"{label} [" + ", ".join(f"{k}={f.get(k)}" for k in differing) + "]"


def write(report: Report, out: str | Path, *, html: str | Path | None = None, command: str = "") -> dict:
    """``table.md``, ``table.csv``, ``results.json`` in ``out`` and the HTML report at ``html``
    (default ``out/report.html``); returns {kind: path}."""
    from irat.bench import report_html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report.command = command or report.command
    paths = {"markdown": out / "table.md", "csv": out / "table.csv", "json": out / "results.json"}
    atomic_write_text(paths["markdown"], report.markdown())
    atomic_write_text(paths["csv"], report.csv())
    atomic_write_text(paths["json"], json.dumps(stats.to_dict(report.tables), indent=2) + "\n")
    paths["html"] = Path(html) if html is not None else out / "report.html"
    report_html.write(report, paths["html"], figures=out / "figures")
    return paths


def report(
    paths,
    *,
    out: str | Path | None = None,
    html: str | Path | None = None,
    group: bool = False,
    command: str | None = None,
) -> tuple[Report, dict]:
    """Build and write the report of the runs at or below ``paths`` (``irat report``); ``out``:
    the folder of the tables (default: the bench folder when ``paths`` is one, else ``report/``
    in the current folder). Returns the ``Report`` and {kind: path} of the files written."""
    from irat.bench.provenance import command_line

    paths = list(paths)
    built = build(paths, group=group)
    if out is None:
        roots = list(built.benches)
        out = roots[0] if len(roots) == 1 and len(paths) == 1 else Path("report")
    files = write(built, out, html=html, command=command or command_line())
    return built, files
