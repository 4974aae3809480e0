"""``analyze``: the figures of a run and a Markdown report that embeds them, in ``RUN_DIR/analysis/``.

weights_per_class.png         instance weights per class at one epoch (box plots)
weight_vs_margin.png          weight vs p_true (and vs steps_to_flip when recorded)
class_weight_over_epochs.png  per-class sum of weights over all recorded epochs
adversarial_confusion.png/.csv  true vs predicted class under an attack (test split)
learning_curves.png           metrics.jsonl: training loss, robust/clean accuracies
learned_weight_vs_margin.png  BiLAW runs: weight vs p_y − max_{j≠y} p_j, coloured by class
learned_weight_over_epochs.png  BiLAW runs: mean weight per margin bin, per epoch
difficulty.csv, group_loss.png, gallery.png, feature_norms.png, test_groups.png,
difficulty_vs_other.png       the hard-instance analyses (``irat.analysis.hard``)
lps_pm.png/.csv               MAIL: LPS under PGD and LM-PGD vs the probabilistic margin
                              (``irat.analysis.lps``, training images)
vulnerability.png/.csv        LRAT: overlap of the top-20 % vulnerable instances under PGD (V_GD,
                              V_PGD), CW and SAA (``irat.analysis.vulnerability``, training images)
vir_factors.png/.csv          VIR: recorded weights vs p_y(x) and KL(p(x) ‖ p(x')) (training images)
margin_pca.png                BiLAW: PCA of the margin vectors p_y − p_j, coloured by the weights
report.md
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from irat.analysis import hard, plots
from irat.analysis.confusion import adversarial_confusion
from irat.analysis.records import AnalysisError, Records, load_records
from irat.analysis.run import load_run
from irat.config import LEARNED_SCHEMES, scheme_of
from irat.training.checkpoint import atomic_write_text
from irat.training.rundir import RunDir

CONFUSION_FILES = ("adversarial_confusion.png", "adversarial_confusion.csv")
LPS_FILES = (
    "lps_pm.png",
    "lps_pm.csv",
    "vulnerability.png",
    "vulnerability.csv",
    "vir_factors.png",
    "vir_factors.csv",
)


def class_names(dataset: str, num_classes: int, spec=None) -> list[str]:
    """Class names from ``spec`` (a loaded ``DatasetSpec``), else from the registered spec of
    ``dataset``, when it has at least ``num_classes`` (the labels seen) classes; else
    "0".."num_classes−1" (npz specs are inferred from the data)."""
    if spec is None:
        from irat.data import DataError, registry

        try:
            spec = registry.get(dataset).spec
        except DataError:
            spec = None
    if spec is not None and spec.num_classes >= num_classes:
        return [str(c) for c in spec.class_names]
    return [str(c) for c in range(num_classes)]


def metrics_arrays(rows: list[dict]) -> dict[str, np.ndarray]:
    """metrics.jsonl rows → {key: array over rows} (NaN where a row lacks a numeric key)."""
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float))})
    return {k: np.array([float(r.get(k, np.nan)) for r in rows]) for k in keys}


def analyze(
    run_dir: str | Path,
    epoch: int | None = None,
    limit: int = 1000,
    attack: str = "pgd-20",
    *,
    checkpoint: str = "last",
    data_dir: str | None = None,
    against: str | Path | None = None,
) -> Path:
    """Write the figures of the run in ``run_dir`` and ``analysis/report.md``; return the report's path.

    ``epoch``: the epoch of the per-epoch weight figures (default: the last recorded one).
    ``limit``: the number of test images (the first ones) of the confusion matrix under
    ``attack`` at the run's ε and norm, with the ``checkpoint`` ("last" or "best") weights;
    ``limit=0`` skips it (and needs neither the data nor a checkpoint), and with it the analyses
    that need the model (feature norms and test error per difficulty group, on the first ``limit``
    test images) and the image gallery. ``data_dir``: where the dataset's files are, when not where
    the run found them. ``against``: another run directory; the report adds the D-distance between
    the difficulty the two runs assign to their common training instances.
    """
    from irat.training.loop import config_from_run

    run = RunDir(run_dir)
    if not run.exists():
        raise AnalysisError(f"{run.path} is not a run directory (no config.yaml)")
    if against is not None and not RunDir(against).exists():
        raise AnalysisError(f"--against {against} is not a run directory (no config.yaml)")
    if limit is None or int(limit) < 0:
        raise AnalysisError(f"limit={limit} must be a number of test images >= 0 (0: no confusion matrix)")
    limit = int(limit)
    cfg = config_from_run(run.path)
    loaded = None

    def training_labels() -> dict[int, int]:
        nonlocal loaded
        loaded = loaded or load_run(run.path, checkpoint, data_dir)
        train = loaded.data.train
        return dict(zip(train.idx.tolist(), train.y.tolist()))

    recs = load_records(run.path, labels=training_labels)
    ep = int(recs.epochs[-1]) if epoch is None else int(epoch)
    row = recs.row(ep)
    if limit and loaded is None:
        loaded = load_run(run.path, checkpoint, data_dir)

    spec = loaded.data.spec if loaded is not None else None
    names = class_names(cfg.data.dataset, int(recs.y.max(initial=-1)) + 1, spec)

    out = run.path / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    sections = [_header(run, cfg, recs, ep)]
    sections.append(_weights_section(out, recs, row, ep, names))
    sections.append(_margin_section(out, recs, row, ep, names, cfg.train.seed))
    sections.append(_over_epochs_section(out, recs, names))
    if scheme_of(cfg) in LEARNED_SCHEMES:
        sections.append(_learned_section(out, cfg, recs, row, ep, names))
    if limit:
        sections.append(_confusion_section(out, loaded, attack, limit, names))
    else:
        for f in CONFUSION_FILES:
            (out / f).unlink(missing_ok=True)
        sections.append("## Adversarial confusion matrix\n\nSkipped (limit = 0).\n")
    sections.append(_curves_section(out, run.metrics()))
    text, d = hard.difficulty_section(out, recs, run.metrics())
    sections.append(text)
    if against is not None:
        sections.append(hard.against_section(out, run.path, Path(against), seed=cfg.train.seed))
    if limit:
        from irat import attacks

        built = attacks.build(attack, eps=cfg.attack.eps, norm=cfg.attack.norm, step_size=cfg.eval.step_size)
        sections.append(hard.gallery_section(out, loaded.data.train, recs, d, names))
        sections.append(hard.features_section(out, loaded, recs, d, attack, built))
        sections.append(hard.test_groups_section(out, loaded, attack, built, limit))
        sections.append(_lps_section(out, loaded, limit))
        sections.append(_vulnerability_section(out, loaded, limit))
        sections.append(_vir_section(out, loaded, recs, row, ep, limit))
        sections.append(_pca_section(out, loaded, recs, row, ep, limit))
    else:
        sections.append("## Gallery, feature norms and test error per group\n\nSkipped (limit = 0).\n")
        for f in LPS_FILES:
            (out / f).unlink(missing_ok=True)
        sections.append("## LPS vs probabilistic margin (MAIL)\n\nSkipped (limit = 0).\n")
        sections.append("## Inconsistent vulnerability across attacks (LRAT)\n\nSkipped (limit = 0).\n")
        sections.append("## Weights vs VIR's factors\n\nSkipped (limit = 0).\n")
        sections.append("## Margin vectors coloured by weight (BiLAW)\n\nSkipped (limit = 0).\n")
    report = out / "report.md"
    atomic_write_text(report, "\n".join(sections))
    return report


def _figure(file: str, alt: str, caption: str) -> str:
    return f"![{alt}]({file})\n\n*{caption}*\n"


def _header(run: RunDir, cfg, recs: Records, epoch: int) -> str:
    a = cfg.attack
    return (
        f"# Analysis of `{run.path}`\n\n"
        f"Method `{cfg.train.method}`, model `{cfg.model.name}`, dataset `{cfg.data.dataset}`, "
        f"training attack PGD-{a.steps} {a.norm} ε = {a.eps:g}. Records of epochs "
        f"{int(recs.epochs[0])}–{int(recs.epochs[-1])} ({len(recs.epochs)} files, "
        f"{len(recs.idx)} training images); per-epoch figures show epoch {epoch}.\n"
    )


def _weights_section(out: Path, recs: Records, row: int, epoch: int, names: list[str]) -> str:
    w, y = recs.weight[row], recs.y
    plots.weights_per_class(
        w, y, names, out / "weights_per_class.png", title=f"Instance weights per class, epoch {epoch}"
    )
    lines = ["| class | images | mean | min | max | sum |", "|---|---|---|---|---|---|"]
    for c, name in enumerate(names):
        v = w[(y == c) & np.isfinite(w)].astype(np.float64)
        if len(v):
            stats = " | ".join(f"{s:.4g}" for s in (v.mean(), v.min(), v.max(), v.sum()))
            lines.append(f"| {name} | {len(v)} | {stats} |")
        else:
            lines.append(f"| {name} | 0 | – | – | – | 0 |")
    note = " All weights are equal (uniform weighting or burn-in)." if plots.all_equal(w) else ""
    if plots.wide_range(w):
        note = f" Log scale: the weights span more than a factor {plots.WIDE_RANGE:g}."
    return (
        "## Instance weights per class\n\n"
        + _figure(
            "weights_per_class.png",
            "weights per class",
            f"Distribution of the instance weights of each class in epoch {epoch} "
            f"(box: quartiles, line: median, triangle: mean).{note}",
        )
        + "\n"
        + "\n".join(lines)
        + "\n"
    )


def _margin_section(out: Path, recs: Records, row: int, epoch: int, names: list[str], seed: int) -> str:
    stf = recs.steps_to_flip[row]
    recorded = recs.has_steps_to_flip(epoch)
    plots.weight_vs_margin(
        recs.weight[row],
        recs.p_true[row],
        recs.y,
        names,
        out / "weight_vs_margin.png",
        steps_to_flip=stf if recorded else None,
        seed=seed,
        title=f"Instance weight vs vulnerability, epoch {epoch}",
    )
    second = (
        "; right: weight vs the number of PGD steps the point stayed correct (steps_to_flip)"
        if recorded
        else "; steps_to_flip was not recorded by this method"
    )
    n = min(len(recs.idx), plots.MAX_POINTS)
    return "## Weight vs vulnerability\n\n" + _figure(
        "weight_vs_margin.png",
        "weight vs true-class probability",
        f"Left: weight vs true-class probability at the adversarial example in epoch {epoch}{second}; "
        f"{n} points (seeded subsample beyond {plots.MAX_POINTS}), coloured by class.",
    )


def _over_epochs_section(out: Path, recs: Records, names: list[str]) -> str:
    plots.class_weight_over_epochs(
        recs.epochs, recs.class_weight_sums(len(names)), names, out / "class_weight_over_epochs.png"
    )
    return "## Class weights over epochs\n\n" + _figure(
        "class_weight_over_epochs.png",
        "per-class sum of weights over epochs",
        "Sum of the instance weights of each class in every recorded epoch.",
    )


def _learned_section(out: Path, cfg, recs: Records, row: int, epoch: int, names: list[str]) -> str:
    """BiLAW: the weights against the margin p_y − max_{j≠y} p_j (at x, or at x' with
    ``bilaw.margin_on=adv`` or when no natural margin was recorded), and over the epochs."""
    on_adv = cfg.bilaw.margin_on == "adv" or not np.isfinite(recs.margin_nat[row]).any()
    margins = recs.margin_adv if on_adv else recs.margin_nat
    where = "x'" if on_adv else "x"
    label = f"margin p_y − max_(j≠y) p_j at {where}"
    plots.weight_vs_margin(
        recs.weight[row],
        margins[row],
        recs.y,
        names,
        out / "learned_weight_vs_margin.png",
        seed=cfg.train.seed,
        title=f"Learned weight vs margin, epoch {epoch}",
        xlabel=label,
        xlim=(-1.02, 1.02),
    )
    plots.weight_by_margin_over_epochs(
        recs.epochs, margins, recs.weight, out / "learned_weight_over_epochs.png", xlabel=label
    )
    scheme = scheme_of(cfg)
    source = (
        "the weight network ω_μ (normalised per batch to mean one)"
        if scheme == "bilaw"
        else "the non-parametric meta-gradient weights (normalised per batch to mean one)"
    )
    return (
        f"## Learned weights ({scheme})\n\n"
        + _figure(
            "learned_weight_vs_margin.png",
            "learned weight vs margin",
            f"Weight from {source} in epoch {epoch} against the margin at {where}, coloured by class.",
        )
        + "\n"
        + _figure(
            "learned_weight_over_epochs.png",
            "mean learned weight per margin bin and epoch",
            f"Mean weight of the training instances in each margin bin (at {where}), per epoch: "
            "the learned map from margin to weight and how it moves during training.",
        )
    )


def _confusion_section(out: Path, loaded, attack: str, limit: int, names: list[str]) -> str:
    from irat import attacks

    cfg = loaded.config
    test = loaded.data.test
    x, y = test.x[:limit].to(loaded.device), test.y[:limit].to(loaded.device)
    if len(y) == 0:
        raise AnalysisError("the test split is empty; nothing to build a confusion matrix from")
    built = attacks.build(attack, eps=cfg.attack.eps, norm=cfg.attack.norm, step_size=cfg.eval.step_size)
    matrix = adversarial_confusion(
        loaded.model, x, y, built, len(names), batch_size=cfg.eval.batch_size, seed=cfg.train.seed
    ).numpy()
    acc = np.trace(matrix) / matrix.sum()
    where = f"{attack} ({cfg.attack.norm} ε = {cfg.attack.eps:g})"
    plots.confusion(
        matrix,
        names,
        out / "adversarial_confusion.png",
        title=f"Under {where}: {len(y)} test images, accuracy {100 * acc:.1f}%",
    )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["true \\ predicted", *names])
    for name, counts in zip(names, matrix.tolist()):
        writer.writerow([name, *counts])
    atomic_write_text(out / "adversarial_confusion.csv", buf.getvalue())
    return "## Adversarial confusion matrix\n\n" + _figure(
        "adversarial_confusion.png",
        "adversarial confusion matrix",
        f"True vs predicted class under {where} of `{loaded.checkpoint.name}` on the first {len(y)} "
        f"test images (robust accuracy {100 * acc:.2f}%; cells: counts, colour: % of the row); "
        "counts in [adversarial_confusion.csv](adversarial_confusion.csv).",
    )


def _lps_section(out: Path, loaded, limit: int) -> str:
    """MAIL's LPS-vs-PM analysis on the first ``limit`` training images (the points whose
    weights LPS or PM would set), with the run's training attack (ε, norm, step, K)."""
    from irat import methods
    from irat.analysis.lps import lps_and_pm

    cfg, train = loaded.config, loaded.data.train
    a = cfg.attack
    step = a.step_size if a.step_size is not None else a.eps * methods.get(cfg.train.method).step
    x, y = train.x[:limit].to(loaded.device), train.y[:limit].to(loaded.device)
    res = lps_and_pm(loaded.model, x, y, eps=a.eps, steps=a.steps, step_size=step, norm=a.norm)
    res.to_csv(out / "lps_pm.csv")
    k = res.steps
    plots.lps_vs_pm(
        res.lps_pgd,
        res.lps_lm,
        res.pm_nat,
        res.pm_adv,
        k,
        out / "lps_pm.png",
        title=f"{loaded.checkpoint.name}, {len(y)} training images, {a.norm} ε = {a.eps:g}",
    )
    s = res.summary()
    pct = {key: 100 * v for key, v in s.items() if key in ("changed", "lm_earlier", "at_max")}
    return (
        "## LPS vs probabilistic margin (MAIL)\n\n"
        + _figure(
            "lps_pm.png",
            "PM per LPS value and LPS under PGD vs LM-PGD",
            f"The first {len(y)} training images under `{loaded.checkpoint.name}`. LPS: the first iterate "
            f"misclassified by PGD-{k} (start at x, step {step:g}) and by LM-PGD-{k} (line search "
            f"on [0.5ε, 0.75ε], γ = 0.8); {k} also means never. Left and middle: PM = p_y − max_(j≠y) p_j "
            f"at x and at PGD's final point per LPS value; right: LPS under both attacks.",
        )
        + (
            f"\nLPS changes with the attack on {pct['changed']:.1f}% of the points (LM-PGD earlier on "
            f"{pct['lm_earlier']:.1f}%). {pct['at_max']:.1f}% sit at LPS = {k} under PGD, where LPS cannot "
            f"tell them apart; the interquartile range of their PM at x is {s['pm_spread_at_max']:.3f}. "
            f"Spearman correlation of LPS (PGD) with PM at x: {s['spearman_nat']:.3f}, at x': "
            f"{s['spearman_adv']:.3f}. Per point: [lps_pm.csv](lps_pm.csv).\n"
        )
    )


def _training_attack(cfg) -> tuple[float, int, float, str]:
    """ε, K, step and norm of the run's training attack (the recipe's step when unset)."""
    from irat import methods

    a = cfg.attack
    step = a.step_size if a.step_size is not None else a.eps * methods.get(cfg.train.method).step
    return a.eps, a.steps, step, a.norm


def _vulnerability_section(out: Path, loaded, limit: int) -> str:
    """LRAT's overlap of the top-20 % vulnerable training instances under PGD, CW and SAA."""
    from irat.analysis import vulnerability as vul

    cfg, train = loaded.config, loaded.data.train
    eps, steps, step, norm = _training_attack(cfg)
    x, y = train.x[:limit].to(loaded.device), train.y[:limit].to(loaded.device)
    values = vul.vulnerabilities(
        loaded.model, x, y, eps=eps, steps=steps, step_size=step, norm=norm, seed=cfg.train.seed
    )
    masks = {k: vul.top_vulnerable(v) for k, v in values.items()}
    table = vul.overlap_table(masks)
    vul.to_csv(values, masks, y.cpu().numpy(), out / "vulnerability.csv")
    venn = {k: masks[k] for k in ("V_PGD", "V_CW", "V_SAA", "V_GD") if k in masks}
    plots.vulnerability_overlap(
        venn, table, out / "vulnerability.png",
        title=f"{loaded.checkpoint.name}, {len(y)} training images, {norm} ε = {eps:g}",
    )  # fmt: skip
    names = list(venn)
    rows = [
        "| top 20 % under (row): share also in (column) | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    rows += [f"| {r} | " + " | ".join(f"{table[(r, q)]:.2f}" for q in names) + " |" for r in names]
    no_saa = (
        ""
        if "V_SAA" in values
        else " SAA needs at least 4 classes; this model has fewer, so V_SAA is left out."
    )
    return (
        "## Inconsistent vulnerability across attacks (LRAT)\n\n"
        + _figure(
            "vulnerability.png",
            "overlap of the top-vulnerable sets",
            f"The 20 % most vulnerable of the first {len(y)} training images in the view of each attack "
            f"(PGD-{steps} and CW-{steps} with step {step:g}, SAA): V_PGD = p_y at PGD's point, V_CW and "
            "V_SAA = z_y − max_(j≠y) z_j at CW's and SAA's points, V_GD = κ (ties by position). "
            "Left: how the three top sets overlap; right: the share of each row's top set that is in the "
            f"column's (0.2 for unrelated views).{no_saa}",
        )
        + "\n"
        + "\n".join(rows)
        + "\n\nPer point: [vulnerability.csv](vulnerability.csv).\n"
    )


def _vir_section(out: Path, loaded, recs: Records, row: int, epoch: int, limit: int) -> str:
    """The recorded weights of ``epoch`` against VIR's factors p_y(x) and KL(p(x) ‖ p(x')) on the
    first ``limit`` training images, the factors from the checkpoint."""
    from irat.analysis.vir_factors import recorded_weights, vir_factors

    cfg, train = loaded.config, loaded.data.train
    eps, steps, step, norm = _training_attack(cfg)
    x, y = train.x[:limit].to(loaded.device), train.y[:limit].to(loaded.device)
    p_nat, kl = vir_factors(loaded.model, x, y, eps=eps, steps=steps, step_size=step, norm=norm)
    idx = train.idx[:limit].cpu().numpy()
    w = recorded_weights(recs.idx, recs.weight[row], idx)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["index", "y", "weight", "p_y_nat", "kl_nat_adv"])
    for i in range(len(idx)):
        writer.writerow([int(idx[i]), int(y[i]), f"{w[i]:.6g}", f"{p_nat[i]:.6g}", f"{kl[i]:.6g}"])
    atomic_write_text(out / "vir_factors.csv", buf.getvalue())
    recorded = np.isfinite(w)
    if not recorded.any():
        (out / "vir_factors.png").unlink(missing_ok=True)
        return (
            "## Weights vs VIR's factors\n\nNo weight of epoch "
            f"{epoch} is recorded for the first {len(idx)} training images; re-run `irat train` (records are "
            "written every epoch) and analyse again. Factors per point: [vir_factors.csv](vir_factors.csv).\n"
        )
    plots.vir_factors(
        w, p_nat, kl, out / "vir_factors.png",
        title=f"{cfg.train.method}: weights of epoch {epoch} vs VIR's factors at {loaded.checkpoint.name}",
    )  # fmt: skip
    vir_run = scheme_of(cfg) == "vir"
    note = (
        "For this VIR run the points follow w = α·exp(−γ·p_y(x))·KL + β only approximately: the weights "
        "were taken during the epoch (train mode, the model of each step), the factors at the checkpoint "
        "(eval mode)."
        if vir_run
        else f"This run weights with `{scheme_of(cfg)}`, not VIR: the figure shows how its weights relate to "
        "VIR's factors; run vir-at or vir-trades (or --weighting.scheme=vir) for VIR's own weights."
    )
    return "## Weights vs VIR's factors\n\n" + _figure(
        "vir_factors.png",
        "weight vs p_y(x) and KL",
        f"Weights recorded in epoch {epoch} for {int(recorded.sum())} of the first {len(idx)} training "
        f"images, against p_y(x) and KL(p(x) ‖ p(x')), x' from PGD-{steps} (CE, start x, step {step:g}) at "
        f"`{loaded.checkpoint.name}`. {note} Per point: [vir_factors.csv](vir_factors.csv).",
    )


def _pca_section(out: Path, loaded, recs: Records, row: int, epoch: int, limit: int) -> str:
    """BiLAW's margin vectors Δ(x) of the first ``limit`` training images (checkpoint, eval
    mode) on their two principal components, coloured by the weights recorded in ``epoch``."""
    from irat.analysis.margin_pca import margin_vectors, pca2
    from irat.analysis.vir_factors import recorded_weights

    cfg, train = loaded.config, loaded.data.train
    x, y = train.x[:limit].to(loaded.device), train.y[:limit].to(loaded.device)
    proj, shares = pca2(margin_vectors(loaded.model, x, y))
    w = recorded_weights(recs.idx, recs.weight[row], train.idx[:limit].cpu().numpy())
    if not np.isfinite(w).any():
        (out / "margin_pca.png").unlink(missing_ok=True)
        return (
            f"## Margin vectors coloured by weight (BiLAW)\n\nNo weight of epoch {epoch} is recorded for the "
            f"first {len(y)} training images; re-run `irat train` (records are written every epoch).\n"
        )
    plots.margin_pca(
        proj, w, shares, out / "margin_pca.png",
        title=f"{cfg.train.method}, weights of epoch {epoch}",
    )  # fmt: skip
    learned = scheme_of(cfg) in LEARNED_SCHEMES
    note = "" if learned else f" This run weights with `{scheme_of(cfg)}`; BiLAW's own map needs a bilaw run."
    return "## Margin vectors coloured by weight (BiLAW)\n\n" + _figure(
        "margin_pca.png",
        "PCA of the margin vectors coloured by weight",
        f"Margin vectors Δ_j = p_y(x) − p_j(x) of the first {len(y)} training images at "
        f"`{loaded.checkpoint.name}` (eval mode) on their two principal components, coloured by the "
        f"weights recorded in epoch {epoch}.{note}",
    )


def _curves_section(out: Path, rows: list[dict]) -> str:
    target = out / "learning_curves.png"
    if not rows:
        target.unlink(missing_ok=True)
        return "## Learning curves\n\nmetrics.jsonl holds no rows.\n"
    plots.learning_curves(metrics_arrays(rows), target)
    return "## Learning curves\n\n" + _figure(
        "learning_curves.png",
        "learning curves",
        "Training loss and robust accuracy on the adversarial examples of training; validation "
        "clean and robust accuracy, per epoch (metrics.jsonl).",
    )
