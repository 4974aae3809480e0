"""The HTML report: one self-contained file (CSS inline, every figure embedded as a PNG data URI,
no script, no external reference) that opens in any browser offline.

Per table: the mean ± std table (best of each column in bold, the paper's numbers in italics
beneath ours), the learning curves of every method (mean over seeds, band: min–max), the robust
per-class accuracy under the table's strongest attack, and each method's instance-weight
distribution per class (all seeds' weights of the last recorded epoch). At the end: the exact
commands, the spec or configs, package versions and hardware. The figures are also kept as PNG
files in ``figures/`` beside the tables.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import numpy as np
import yaml

from irat.analysis import plots
from irat.bench.provenance import provenance
from irat.bench.runs import bench_root
from irat.bench.stats import WORST, Table, images_line
from irat.training.checkpoint import atomic_write_text

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05em; }
table.results { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
table.results th, table.results td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
table.results th:first-child, table.results td:first-child { text-align: left; }
table.results tr.paper td { color: #555; font-style: italic; background: #f7f7f7; }
td.best { font-weight: bold; background: #eef6ee; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.88em; color: #555; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.note { color: #8a5300; } .weights { display: flex; flex-wrap: wrap; gap: 1em; }
.weights figure { flex: 1 1 420px; }
"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _img(path: Path, alt: str, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def table_html(t: Table) -> str:
    """The table as HTML, as ``stats.to_markdown`` lays it out."""
    e = html.escape
    both = len({r.which for r in t.rows}) > 1
    head = ["method"] + (["checkpoint"] if both else []) + ["seeds"] + t.attacks + ["epoch"]
    out = [
        '<table class="results"><thead><tr>'
        + "".join(f"<th>{e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
    ]
    done = set()

    def paper_row(label: str, suffix: str) -> str:
        row = t.paper[label]
        cells = []
        for a in t.attacks:
            v = row.get(a)
            cells.append("–" if v is None else (f"{v[0]:g}" if v[1] is None else f"{v[0]:g} ± {v[1]:g}"))
        lead = [f"{label} ({suffix})"] + ([""] if both else []) + [""]
        return '<tr class="paper">' + "".join(f"<td>{e(c)}</td>" for c in lead + cells + [""]) + "</tr>"

    for r in t.rows:
        tds = (
            [f"<td>{e(r.label)}</td>"]
            + ([f"<td>{e(r.which)}</td>"] if both else [])
            + [f"<td>{len(r.seeds)}</td>"]
        )
        for a in t.attacks:
            s = r.cells.get(a)
            if s is None:
                tds.append("<td>–</td>")
                continue
            text = s.text() + (f" (n={s.n})" if s.n != len(r.seeds) else "")
            cls = ' class="best"' if r.label in t.best.get((r.which, a), ()) else ""
            tds.append(f"<td{cls}>{e(text)}</td>")
        epochs = sorted({x for x in r.epochs if x is not None})
        tds.append(f"<td>{e(','.join(map(str, epochs)) or '–')}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
        if r.label in t.paper and r.label not in done:
            done.add(r.label)
            out.append(paper_row(r.label, "paper"))
    for label in t.paper:
        if label not in done:
            out.append(paper_row(label, "paper; not run"))
    out.append("</tbody></table>")
    return "\n".join(out)


def _curves(t: Table, folder: Path) -> str:
    curves = {}
    for label in dict.fromkeys(r.label for r in t.records):
        runs = [r for r in t.records if r.label == label and r.metrics]
        if not runs:
            continue
        n_epochs = max(max(m["epoch"] for m in r.metrics) + 1 for r in runs)
        series = {}
        for metric in ("val_robust_acc", "val_clean_acc", "train_loss"):
            a = np.full((len(runs), n_epochs), np.nan)
            for i, r in enumerate(runs):
                for m in r.metrics:
                    if metric in m:
                        a[i, m["epoch"]] = m[metric]
            series[metric] = a
        curves[label] = series
    if not curves:
        return '<p class="note">No metrics.jsonl rows: no learning curves.</p>'
    path = plots.method_curves(curves, folder / "learning_curves.png", title=f"Learning curves: {t.group}")
    return _img(
        path,
        "learning curves",
        "Per epoch: validation robust accuracy (the training's validation attack) and clean accuracy on "
        "the held-out split, training loss; line: mean over seeds, band: the seeds' minimum to maximum.",
    )


def _strongest(t: Table) -> str | None:
    """The attack with the lowest mean accuracy over the table's rows (not clean, not worst-case)."""
    scores = {}
    for a in t.attacks:
        if a in ("clean", WORST):
            continue
        means = [r.cells[a].mean for r in t.rows if a in r.cells]
        if means:
            scores[a] = float(np.mean(means))
    return min(scores, key=scores.get) if scores else None


def _per_class(t: Table, folder: Path) -> str:
    attack = _strongest(t) or "clean"
    values, names = {}, None
    for row in t.rows:
        if row.which != t.rows[0].which:
            continue
        runs = [r for r in t.records if r.label == row.label and row.which in r.evals]
        per = [r.evals[row.which].get("per_class", {}).get(attack) for r in runs]
        per = [p for p in per if p is not None]
        if not per:
            continue
        names = names or runs[0].evals[row.which].get("class_names") or [str(i) for i in range(len(per[0]))]
        with np.errstate(all="ignore"):
            values[row.label] = 100 * np.nanmean(np.array(per, dtype=np.float64), 0)
    if not values:
        return '<p class="note">No per-class accuracies in the evaluations.</p>'
    which = t.rows[0].which
    path = plots.per_class_bars(
        values,
        names,
        folder / "per_class.png",
        title=f"Per-class accuracy under {attack} ({which} checkpoint)",
    )
    return _img(
        path,
        f"per-class accuracy under {attack}",
        f"Robust accuracy of each class under {attack}, the table's strongest attack (lowest mean), of the "
        f"{which} checkpoints; mean over seeds.",
    )


def _weights(t: Table, folder: Path) -> str:
    from irat.analysis.records import AnalysisError, load_records
    from irat.analysis.report import class_names

    figs, missing = [], []
    for label in dict.fromkeys(r.label for r in t.records):
        ws, ys, epochs = [], [], set()
        for r in (r for r in t.records if r.label == label):
            try:
                recs = load_records(r.path)
            except AnalysisError:
                continue
            ws.append(recs.weight[-1])
            ys.append(recs.y)
            epochs.add(int(recs.epochs[-1]))
        if not ws:
            missing.append(label)
            continue
        w, y = np.concatenate(ws), np.concatenate(ys)
        names = class_names(t.records[0].config.data.dataset, int(y.max(initial=-1)) + 1)
        path = plots.weights_per_class(
            w, y, names, folder / f"weights_{_slug(label)}.png", title=f"{label}: instance weights per class"
        )
        caption = (
            f"{label}: the instance weights of every training image in the last recorded epoch "
            f"({', '.join(map(str, sorted(epochs)))}), all {len(ws)} seed(s) pooled; box: quartiles, "
            "triangle: mean."
        )
        figs.append(_img(path, f"weights of {label}", caption))
    note = f'<p class="note">No per-instance records for: {", ".join(missing)}.</p>' if missing else ""
    return f'<div class="weights">{"".join(figs)}</div>{note}'


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def render(report, figures: Path) -> str:
    """The HTML of ``report`` (a ``irat.bench.report.Report``); figures are written to ``figures``."""
    e = html.escape
    prov = provenance(report.command or None)
    titles = [b["spec"].title or b["spec"].name for b in report.benches.values()]
    title = "; ".join(titles) if titles else "irat report"
    body = [f"<h1>{e(title)}</h1>"]
    for b in report.benches.values():
        spec = b["spec"]
        if spec.source:
            body.append(f"<p>Source: {e(spec.source)}.</p>")
        if spec.raw.get("description"):
            body.append(f"<p>{e(str(spec.raw['description']))}</p>")
    body.append(
        "<p>Accuracy (%) on the test split, mean ± sample standard deviation over seeds (n seeds per "
        "row); <b>bold</b>: the best mean of each column; <i>italic rows</i>: the numbers the paper "
        "reports for the same method. Attacks count a point as robust only if it is also correct when "
        "clean; worst-case: correct under every attack.</p>"
    )
    for n in report.notes:
        body.append(f'<p class="note">{e(n)}</p>')
    for i, t in enumerate(report.tables):
        folder = Path(figures) / f"{i:02d}_{_slug(t.group)}"
        folder.mkdir(parents=True, exist_ok=True)
        body.append(f"<h2>{e(t.title)}</h2>")
        body.append(f"<p>{e(images_line(t))}</p>")
        body.append(table_html(t))
        if t.notes:
            body.append("<ul>" + "".join(f'<li class="note">{e(n)}</li>' for n in t.notes) + "</ul>")
        body.append("<h3>Learning curves</h3>" + _curves(t, folder))
        body.append("<h3>Robust per-class accuracy</h3>" + _per_class(t, folder))
        body.append("<h3>Instance weights per class</h3>" + _weights(t, folder))

    body.append("<h2>Provenance</h2>")
    for root, b in report.benches.items():
        info = b["info"]
        body.append(f"<h3>Bench {e(str(root))}</h3>")
        for run in info.get("runs", []):
            body.append(
                f"<p>{e(run.get('date', ''))}: <code>{e(run.get('command', ''))}</code>, wall-clock "
                f"{e(run.get('wall_clock', '?'))}; {e(_hw(run.get('hardware', {})))}; "
                f"{e(_ver(run.get('versions', {})))}</p>"
            )
        body.append(
            "<p>Spec (with its base config resolved):</p>"
            + _pre(yaml.safe_dump(info["spec"], sort_keys=False))
        )
    seen = set()
    for r in (r for t in report.tables for r in t.records):
        if bench_root(r.path.parent) is None:
            if r.label in seen:
                continue
            seen.add(r.label)
            body.append(
                f"<p>Config of {e(r.label)} ({e(str(r.path))}):</p>"
                + _pre(yaml.safe_dump(r.raw, sort_keys=False))
            )
    files = {
        p: d for t in report.tables for r in t.records for p, d in (r.raw.get("data_files") or {}).items()
    }
    if files:
        body.append(
            "<p>Data files read (sha256):</p>" + _pre("\n".join(f"{d}  {p}" for p, d in files.items()))
        )
    body.append(
        f"<p>This report: <code>{e(prov['command'])}</code>, {e(prov['date'])}; {e(_hw(prov['hardware']))}; "
        f"{e(_ver(prov['versions']))}</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _hw(h: dict) -> str:
    if not h:
        return "hardware not recorded"
    gpu = h.get("gpu", "none")
    cores = f"{h.get('cpu_count', '?')} cores, {h.get('torch_threads', '?')} torch threads"
    return f"CPU {h.get('cpu', '?')} ({cores}), GPU {gpu}"


def _ver(v: dict) -> str:
    return ", ".join(f"{k} {x}" for k, x in v.items())


def write(report, path: str | Path, *, figures: str | Path) -> Path:
    """Render ``report`` to the HTML file ``path``."""
    atomic_write_text(path, render(report, Path(figures)))
    return Path(path)
