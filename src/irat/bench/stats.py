"""Mean ± standard deviation over seeds, per method × attack, as Markdown and CSV tables.

For each table (one setting: dataset, model, threat model), each row (method label and
checkpoint) and each attack: the accuracies (%) of the row's seeds, their mean, their sample
standard deviation (n − 1 in the denominator; none for n = 1) and n. The best mean of each column
is marked (ties: all of them), separately for the best and the last checkpoints; the paper's
numbers, when the spec carries them, go in a row of their own beneath ours.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

WORST = "worst-case"


@dataclass
class Summary:
    """Accuracies (%) of n seeds: ``values`` in seed order, ``mean``, ``std`` (None for n = 1)."""

    values: list[float]
    seeds: list[int]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / self.n

    @property
    def std(self) -> float | None:
        if self.n < 2:
            return None
        m = self.mean
        return math.sqrt(math.fsum((v - m) ** 2 for v in self.values) / (self.n - 1))

    def text(self, digits: int = 2) -> str:
        s = f"{self.mean:.{digits}f}"
        return s if self.std is None else f"{s} ± {self.std:.{digits}f}"


@dataclass
class Row:
    label: str
    which: str  # best | last
    seeds: list[int]
    cells: dict[str, Summary]
    epochs: list[int] = field(default_factory=list)
    runs: list = field(default_factory=list)  # the run directories


@dataclass
class Table:
    """One setting. ``attacks`` in column order; ``images``: attack → the image counts seen
    (one value unless the runs were evaluated differently); ``paper``: label → attack →
    (mean, std | None) or None; ``best``: (which, attack) → labels with the best mean."""

    group: str
    title: str
    attacks: list[str]
    images: dict[str, set]
    rows: list[Row]
    paper: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    best: dict = field(default_factory=dict)
    records: list = field(default_factory=list)

    def row(self, label: str, which: str) -> Row | None:
        return next((r for r in self.rows if r.label == label and r.which == which), None)


def summarize(
    records, *, group: str, title: str, order: list[str] | None = None, paper=None, columns=None
) -> Table:
    """The table of ``records`` (``RunRecord``s of one setting): one row per label × evaluated
    checkpoint, in ``order`` (labels; default: first seen). Columns: the attacks evaluated and
    those the ``paper`` reports (ours "–" until they run), in the order of ``columns`` (attack
    names) where given. Runs without an evaluation are left out with a note."""
    notes = []
    labels = list(order or [])
    for r in records:
        if r.label not in labels:
            labels.append(r.label)
    attacks: list[str] = []
    images: dict[str, set] = {}
    for r in records:
        for ev in r.evals.values():
            for a in ev["accuracy"]:
                if a not in attacks and a != WORST:
                    attacks.append(a)
                images.setdefault(a, set()).add(ev.get("images", {}).get(a, ev["n"]))
    for row in (paper or {}).values():
        attacks += [a for a, v in row.items() if v is not None and a not in attacks]
    if columns:
        rank = {a: i for i, a in enumerate(columns)}
        attacks.sort(key=lambda a: rank.get(a, len(rank)))
    if any(WORST in ev["accuracy"] for r in records for ev in r.evals.values()):
        attacks.append(WORST)
    rows = []
    for label in labels:
        mine = sorted((r for r in records if r.label == label), key=lambda r: r.seed)
        if not mine:
            continue
        missing = [r for r in mine if not r.evals]
        if missing:
            notes.append(
                f"{label}: not evaluated yet: " + ", ".join(str(r.path) for r in missing) + " (irat eval RUN)"
            )
        for which in ("best", "last"):
            evaluated = [r for r in mine if which in r.evals]
            if not evaluated:
                continue
            cells = {}
            for a in attacks:
                have = [r for r in evaluated if a in r.evals[which]["accuracy"]]
                if have:
                    cells[a] = Summary(
                        [100 * r.evals[which]["accuracy"][a] for r in have], [r.seed for r in have]
                    )
            seeds = [r.seed for r in evaluated]
            if len(set(seeds)) != len(seeds):
                notes.append(
                    f"{label} ({which}): several runs share a seed ({seeds}); they count as separate runs"
                )
            epochs = [r.epochs.get(which) for r in evaluated]
            rows.append(Row(label, which, seeds, cells, epochs, [r.path for r in evaluated]))
    table = Table(group, title, attacks, images, rows, dict(paper or {}), notes, records=list(records))
    table.best = best_cells(table)
    return table


def best_cells(table: Table) -> dict:
    """(which, attack) → the labels whose mean is highest in that column (rounded to the shown
    2 decimals, so ties on the page are ties here)."""
    best = {}
    for which in ("best", "last"):
        rows = [r for r in table.rows if r.which == which]
        if len(rows) < 2:
            continue
        for a in table.attacks:
            scored = [(round(r.cells[a].mean, 2), r.label) for r in rows if a in r.cells]
            if scored:
                top = max(s for s, _ in scored)
                best[(which, a)] = {label for s, label in scored if s == top}
    return best


def _paper_text(value) -> str:
    if value is None:
        return "–"
    mean, std = value
    return f"{mean:g}" if std is None else f"{mean:g} ± {std:g}"


def images_line(table: Table) -> str:
    """ "Test images: 1000; autoattack: the first 500." (ranges when runs differ)."""

    def text(v: set) -> str:
        return str(next(iter(v))) if len(v) == 1 else f"{min(v)}–{max(v)} (runs differ)"

    common = table.images.get("clean") or next(iter(table.images.values()), {0})
    parts = [f"Test images: {text(common)}"]
    for a in table.attacks:
        if a != WORST and table.images.get(a, common) != common:
            parts.append(f"{a}: {text(table.images[a])}")
    return "; ".join(parts) + "."


def to_markdown(tables: list[Table]) -> str:
    """The tables, each under its title, with the image counts and the notes."""
    out = []
    for t in tables:
        both = len({r.which for r in t.rows}) > 1
        head = ["method"] + (["checkpoint"] if both else []) + ["seeds"] + t.attacks + ["epoch"]
        lines = [
            f"### {t.title}",
            "",
            "Accuracy (%), mean ± std over seeds (sample std; n seeds per row, fewer where a cell "
            f"says n=…); **bold**: best of the column. {images_line(t)}",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        done_paper = set()
        for r in t.rows:
            cells = []
            for a in t.attacks:
                s = r.cells.get(a)
                if s is None:
                    cells.append("–")
                    continue
                text = s.text()
                if s.n != len(r.seeds):
                    text += f" (n={s.n})"
                if r.label in t.best.get((r.which, a), ()):
                    text = f"**{text}**"
                cells.append(text)
            epochs = sorted({e for e in r.epochs if e is not None})
            lead = [r.label] + ([r.which] if both else []) + [str(len(r.seeds))]
            lines.append("| " + " | ".join(lead + cells + [",".join(map(str, epochs)) or "–"]) + " |")
            if r.label in t.paper and r.label not in done_paper:
                done_paper.add(r.label)
                row = t.paper[r.label]
                lead = [f"*{r.label} (paper)*"] + ([""] if both else []) + [""]
                lines.append(
                    "| " + " | ".join(lead + [_paper_text(row.get(a)) for a in t.attacks] + [""]) + " |"
                )
        for label in t.paper:
            if label not in done_paper:
                row = t.paper[label]
                lead = [f"*{label} (paper; not run)*"] + ([""] if both else []) + [""]
                lines.append(
                    "| " + " | ".join(lead + [_paper_text(row.get(a)) for a in t.attacks] + [""]) + " |"
                )
        if t.notes:
            lines += [""] + [f"- {n}" for n in t.notes]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


CSV_FIELDS = (
    "setting",
    "method",
    "checkpoint",
    "attack",
    "images",
    "n",
    "mean",
    "std",
    "best",
    "values",
    "seeds",
    "paper_mean",
    "paper_std",
)


def to_csv(tables: list[Table]) -> str:
    """One line per setting × method × checkpoint × attack (long format, for analysis tools);
    accuracies in %."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for t in tables:
        for r in t.rows:
            for a in t.attacks:
                s = r.cells.get(a)
                if s is None:
                    continue
                paper = t.paper.get(r.label, {}).get(a)
                w.writerow(
                    [
                        t.group,
                        r.label,
                        r.which,
                        a,
                        "/".join(str(i) for i in sorted(t.images.get(a, ()))),
                        s.n,
                        f"{s.mean:.4f}",
                        "" if s.std is None else f"{s.std:.4f}",
                        int(r.label in t.best.get((r.which, a), ())),
                        " ".join(f"{v:.4f}" for v in s.values),
                        " ".join(map(str, s.seeds)),
                        "" if paper is None else f"{paper[0]:g}",
                        "" if paper is None or paper[1] is None else f"{paper[1]:g}",
                    ]
                )
    return buf.getvalue()


def to_dict(tables: list[Table]) -> dict:
    """JSON-ready: setting → rows with per-attack mean, std, n, values."""
    return {
        t.group: {
            "title": t.title,
            "attacks": t.attacks,
            "images": {a: sorted(v) for a, v in t.images.items()},
            "rows": [
                {
                    "method": r.label,
                    "checkpoint": r.which,
                    "seeds": r.seeds,
                    "epochs": r.epochs,
                    "runs": [str(p) for p in r.runs],
                    "accuracy": {
                        a: {"mean": s.mean, "std": s.std, "n": s.n, "values": s.values}
                        for a, s in r.cells.items()
                    },
                }
                for r in t.rows
            ],
            "paper": {
                label: {a: (None if v is None else {"mean": v[0], "std": v[1]}) for a, v in row.items()}
                for label, row in t.paper.items()
            },
            "notes": t.notes,
        }
        for t in tables
    }
