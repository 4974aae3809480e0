"""The analysis figures, one function each: numpy arrays in, a PNG file out (the path is returned).

The only place irat uses matplotlib. Figures are drawn on the non-interactive Agg canvas
(``matplotlib.figure.Figure`` + ``FigureCanvasAgg``), without pyplot, so no global state or GUI
backend is touched; matplotlib is imported on first use.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from irat.training.checkpoint import atomic_write_bytes

DPI = 120
MAX_POINTS = 5000
LEGEND_MAX_CLASSES = 20
ANNOTATE_MAX_CLASSES = 20
WIDE_RANGE = 1e3

CURVE_LABELS = {
    "train_loss": "train loss",
    "train_robust_acc": "train robust acc.",
    "val_clean_acc": "val. clean acc.",
    "val_robust_acc": "val. robust acc.",
}


def _figure(ncols: int = 1, size: tuple[float, float] = (6.4, 4.8)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def _save(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def class_colors(num_classes: int) -> list:
    """One distinct colour per class (tab10 / tab20, a sampled continuous map beyond 20)."""
    from matplotlib import colormaps

    if num_classes <= 10:
        return [colormaps["tab10"](i) for i in range(num_classes)]
    if num_classes <= 20:
        return [colormaps["tab20"](i) for i in range(num_classes)]
    return [colormaps["turbo"](v) for v in np.linspace(0.05, 0.95, num_classes)]


def subsample(n: int, max_points: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """Sorted positions of at most ``max_points`` of ``n`` items, drawn without replacement with
    a fixed ``seed`` (all of them when ``n <= max_points``)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def wide_range(values: np.ndarray) -> bool:
    """Whether positive ``values`` span more than ``WIDE_RANGE`` (max / min): weights then go on a
    log axis (MAIL's or GAIRAT's weights can span many orders of magnitude)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return bool(len(v) and v.min() > 0 and v.max() / v.min() > WIDE_RANGE)


def all_equal(values: np.ndarray) -> bool:
    """Whether the finite ``values`` are equal up to float32 rounding (uniform weights)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return bool(len(v)) and np.ptp(v) <= 1e-6 * max(1.0, np.abs(v).max())


def _weight_axis(ax, values: np.ndarray) -> None:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if wide_range(v):
        ax.set_yscale("log")
        ax.set_ylabel("instance weight (log scale)")
        return
    ax.set_ylabel("instance weight")
    ax.ticklabel_format(axis="y", useOffset=False)
    if all_equal(v):  # a flat band around the common value, not a zoom into rounding noise
        mid = float(v.mean())
        half = 0.5 * max(abs(mid), 1.0)
        ax.set_ylim(mid - half, mid + half)


def _class_axis(ax, class_names: Sequence[str], axis: str = "x") -> None:
    k = len(class_names)
    rotate = 45 if k > 4 and max(len(c) for c in class_names) > 3 else 0
    if axis == "x":
        ax.set_xticks(range(k), class_names, rotation=rotate, ha="right" if rotate else "center")
    else:
        ax.set_yticks(range(k), class_names)
    if k > 30:
        ax.tick_params(axis=axis, labelsize=5)


def weights_per_class(
    weights: np.ndarray,
    y: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    *,
    title: str = "Instance weights per class",
) -> Path:
    """Box plot of the weights ``weights`` [N] of each class (labels ``y`` [N]); the mean as a
    triangle. NaN weights (instances not visited) are left out; a log axis when the positive
    weights span more than ``WIDE_RANGE``."""
    weights, y = np.asarray(weights, dtype=np.float64), np.asarray(y)
    k = len(class_names)
    keep = np.isfinite(weights)
    groups = [weights[keep & (y == c)] for c in range(k)]
    present = [c for c in range(k) if len(groups[c])]
    fig, (ax,) = _figure(size=(max(6.4, 0.35 * k + 2), 4.8))
    if present:
        box = ax.boxplot(
            [groups[c] for c in present],
            positions=present,
            widths=0.6,
            showmeans=True,
            patch_artist=True,
            flierprops={"markersize": 2, "alpha": 0.5},
            medianprops={"color": "black"},
        )
        colors = class_colors(k)
        for patch, c in zip(box["boxes"], present):
            patch.set_facecolor(colors[c])
            patch.set_alpha(0.6)
    finite = weights[keep]
    if all_equal(finite):
        title += f" (all equal to {finite.mean():.6g})"
    _class_axis(ax, class_names)
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_xlabel("class")
    _weight_axis(ax, finite)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def weight_vs_margin(
    weights: np.ndarray,
    p_true: np.ndarray,
    y: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    *,
    steps_to_flip: np.ndarray | None = None,
    max_points: int = MAX_POINTS,
    seed: int = 0,
    title: str = "Instance weight vs vulnerability",
    xlabel: str = "true-class probability at x' (p_true)",
    xlim: tuple[float, float] = (-0.02, 1.02),
) -> Path:
    """Scatter of weight vs true-class probability at x' (``p_true``; or any per-instance value
    named by ``xlabel`` on ``xlim``, e.g. BiLAW's margin), coloured by class; a second
    panel of weight vs ``steps_to_flip`` (jittered horizontally) when it is given and recorded
    (not all −1). At most ``max_points`` points, subsampled with ``seed``."""
    weights = np.asarray(weights, dtype=np.float64)
    p_true, y = np.asarray(p_true, dtype=np.float64), np.asarray(y)
    stf = None if steps_to_flip is None else np.asarray(steps_to_flip)
    if stf is not None and not (stf >= 0).any():
        stf = None
    keep = np.flatnonzero(np.isfinite(weights) & np.isfinite(p_true))
    keep = keep[subsample(len(keep), max_points, seed)]
    rng = np.random.default_rng(seed + 1)
    fig, axes = _figure(ncols=1 if stf is None else 2, size=(6.4 if stf is None else 11.5, 4.8))
    k = len(class_names)
    colors = class_colors(k)
    jitter = rng.uniform(-0.2, 0.2, len(keep))
    for c in range(k):
        sel = keep[y[keep] == c]
        if not len(sel):
            continue
        style = {"s": 6, "alpha": 0.5, "color": colors[c], "label": class_names[c], "linewidths": 0}
        axes[0].scatter(p_true[sel], weights[sel], **style)
        if stf is not None:
            s = sel[stf[sel] >= 0]
            axes[1].scatter(stf[s] + jitter[np.searchsorted(keep, s)], weights[s], **style)
    axes[0].set_xlabel(xlabel)
    axes[0].set_xlim(*xlim)
    if stf is not None:
        axes[1].set_xlabel("PGD iterates still correct (steps_to_flip, jittered)")
    for ax in axes:
        _weight_axis(ax, weights[keep])
        ax.grid(alpha=0.3)
    shown = f" ({len(keep)} of {int(np.isfinite(weights).sum())} instances)" if len(keep) < len(y) else ""
    fig.suptitle(title + shown)
    if 0 < k <= LEGEND_MAX_CLASSES and len(keep):
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, markerscale=2, frameon=False)
    return _save(fig, path)


def class_weight_over_epochs(
    epochs: np.ndarray,
    sums: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    *,
    title: str = "Sum of instance weights per class",
) -> Path:
    """One line per class: ``sums`` [E, K] (the sum of the weights of class k in epoch e)
    against ``epochs`` [E]."""
    epochs, sums = np.asarray(epochs), np.asarray(sums, dtype=np.float64)
    k = len(class_names)
    if sums.shape != (len(epochs), k):
        raise ValueError(f"sums has shape {sums.shape}, expected ({len(epochs)}, {k})")
    fig, (ax,) = _figure(size=(7.5, 4.8))
    colors = class_colors(k)
    marker = "o" if len(epochs) <= 30 else None
    for c in range(k):
        ax.plot(epochs, sums[:, c], color=colors[c], marker=marker, markersize=3, label=class_names[c])
    ax.set_xlabel("epoch")
    ax.set_ylabel("sum of weights")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(epochs) <= 20:
        ax.set_xticks(epochs)
    if k <= LEGEND_MAX_CLASSES:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    return _save(fig, path)


def weight_by_margin_over_epochs(
    epochs: np.ndarray,
    margins: np.ndarray,
    weights: np.ndarray,
    path: str | Path,
    *,
    bins: int = 20,
    xlabel: str = "p_y − max_{j≠y} p_j",
    title: str = "Mean instance weight by margin, per epoch",
) -> Path:
    """Heat map of the mean weight of the instances whose margin falls in each of ``bins`` equal
    bins of [−1, 1] (x axis), per epoch (y axis); ``margins`` and ``weights`` [E, N] with NaN
    where not recorded; empty bins are blank. What a learned weighting maps each margin to, and
    how that map moves during training (BiLAW's weight network; the seed's Fig. 5)."""
    epochs = np.asarray(epochs)
    m, w = np.asarray(margins, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    if m.shape != w.shape or m.shape[0] != len(epochs):
        raise ValueError(f"margins {m.shape} and weights {w.shape} must both be [{len(epochs)}, N]")
    edges = np.linspace(-1.0, 1.0, bins + 1)
    mean = np.full((len(epochs), bins), np.nan)
    for e in range(len(epochs)):
        ok = np.isfinite(m[e]) & np.isfinite(w[e])
        which = np.clip(np.digitize(m[e][ok], edges) - 1, 0, bins - 1)
        total = np.bincount(which, weights=w[e][ok], minlength=bins)
        count = np.bincount(which, minlength=bins)
        mean[e] = np.divide(total, count, out=np.full(bins, np.nan), where=count > 0)
    fig, (ax,) = _figure(size=(7.5, max(3.0, 0.25 * len(epochs) + 2)))
    im = ax.imshow(
        mean,
        aspect="auto",
        origin="lower",
        cmap="viridis",
        extent=(-1.0, 1.0, -0.5, len(epochs) - 0.5),
        interpolation="nearest",
    )
    fig.colorbar(im, ax=ax, label="mean instance weight", shrink=0.8)
    step = max(1, len(epochs) // 15)
    ax.set_yticks(range(0, len(epochs), step), [str(int(e)) for e in epochs[::step]])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("epoch")
    ax.set_title(title)
    return _save(fig, path)


def confusion(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    *,
    title: str = "Confusion matrix",
) -> Path:
    """Heat map of ``matrix`` [K, K] (rows: true class, columns: predicted), each row as a
    percentage of its class; the counts are written in the cells when K ≤ 20."""
    m = np.asarray(matrix, dtype=np.float64)
    k = len(class_names)
    if m.shape != (k, k):
        raise ValueError(f"matrix has shape {m.shape}, expected ({k}, {k})")
    rows = m.sum(1, keepdims=True)
    pct = np.divide(100 * m, rows, out=np.zeros_like(m), where=rows > 0)
    side = max(5.0, 0.45 * k + 2)
    fig, (ax,) = _figure(size=(side + 1, side))
    im = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, label="% of the true class", shrink=0.8)
    if k <= ANNOTATE_MAX_CLASSES:
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    color = "white" if pct[i, j] > 60 else "black"
                    ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7, color=color)
    _class_axis(ax, class_names, "x")
    _class_axis(ax, class_names, "y")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return _save(fig, path)


def learning_curves(
    metrics: Mapping[str, np.ndarray], path: str | Path, *, title: str = "Learning curves"
) -> Path:
    """Two panels against ``metrics["epoch"]``: the training loss, and the accuracies
    (``train_robust_acc``, ``val_clean_acc``, ``val_robust_acc``; those present, NaN gaps)."""
    epochs = np.asarray(metrics["epoch"])
    fig, (ax_loss, ax_acc) = _figure(ncols=2, size=(11, 4.2))
    marker = "o" if len(epochs) <= 30 else None
    panels = ((ax_loss, ["train_loss"]), (ax_acc, ["train_robust_acc", "val_clean_acc", "val_robust_acc"]))
    for ax, keys in panels:
        for key in keys:
            values = np.asarray(metrics.get(key, []), dtype=np.float64)
            if len(values) == len(epochs) and np.isfinite(values).any():
                ax.plot(epochs, values, marker=marker, markersize=3, label=CURVE_LABELS[key])
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    ax_loss.set_ylabel("loss")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(-0.02, 1.02)
    fig.suptitle(title)
    return _save(fig, path)


def method_curves(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    path: str | Path,
    *,
    metrics: Sequence[str] = ("val_robust_acc", "val_clean_acc", "train_loss"),
    title: str = "Learning curves",
) -> Path:
    """One panel per metric, one line per method: ``curves[label][metric]`` is [S, E] (S seeds,
    epochs 0..E−1, NaN where a run has fewer epochs). The line is the mean over seeds, the band
    spans the seeds' minimum and maximum."""
    fig, axes = _figure(ncols=len(metrics), size=(4.6 * len(metrics) + 1.6, 4.0))
    colors = class_colors(max(len(curves), 1))
    for ax, metric in zip(axes, metrics):
        for color, (label, series) in zip(colors, curves.items()):
            values = np.asarray(series.get(metric, np.empty((0, 0))), dtype=np.float64)
            if values.size == 0 or not np.isfinite(values).any():
                continue
            epochs = np.arange(values.shape[1])
            with np.errstate(all="ignore"):
                mean = np.nanmean(values, 0)
                lo, hi = np.nanmin(values, 0), np.nanmax(values, 0)
            ax.plot(
                epochs,
                mean,
                color=color,
                label=label,
                marker="o" if len(epochs) <= 30 else None,
                markersize=3,
            )
            if values.shape[0] > 1:
                ax.fill_between(epochs, lo, hi, color=color, alpha=0.15, linewidth=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(CURVE_LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
        if metric.endswith("_acc"):
            ax.set_ylim(-0.02, 1.02)
    if axes[0].get_legend_handles_labels()[0]:
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    fig.suptitle(title)
    return _save(fig, path)


def per_class_bars(
    values: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    path: str | Path,
    *,
    ylabel: str = "accuracy (%)",
    title: str = "Per-class accuracy",
) -> Path:
    """Grouped bars: for each class, one bar per method; ``values[label]`` is [K] (NaN: no image
    of that class)."""
    k, labels = len(class_names), list(values)
    fig, (ax,) = _figure(size=(max(6.4, 0.5 * k * max(1, len(labels)) ** 0.5 + 3), 4.4))
    width = 0.8 / max(len(labels), 1)
    colors = class_colors(max(len(labels), 1))
    for i, label in enumerate(labels):
        v = np.asarray(values[label], dtype=np.float64)
        ax.bar(np.arange(k) + (i - (len(labels) - 1) / 2) * width, v, width, color=colors[i], label=label)
    _class_axis(ax, class_names)
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if labels:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    return _save(fig, path)


def group_colors(groups: int = 10) -> list:
    """Colours from hard (G0, dark) to easy (G9, light) on the viridis map."""
    from matplotlib import colormaps

    return [colormaps["viridis"](v) for v in np.linspace(0.0, 0.9, groups)]


def group_curves(
    epochs: np.ndarray,
    values: np.ndarray,
    path: str | Path,
    *,
    errors: Mapping[str, np.ndarray] | None = None,
    ylabel: str = "mean training loss",
    title: str = "Training loss per difficulty group",
) -> Path:
    """One line per difficulty group: ``values`` [E, G] (G0 hardest … G9 easiest) against
    ``epochs`` [E]; ``errors`` ({label: [E]}, e.g. the robust training and validation error) on a
    second axis in grey, dashed for training curves (the paper's Figure 2a layout)."""
    epochs, values = np.asarray(epochs), np.asarray(values, dtype=np.float64)
    fig, (ax,) = _figure(size=(7.5, 4.8))
    colors = group_colors(values.shape[1])
    marker = "o" if len(epochs) <= 30 else None
    for g in range(values.shape[1]):
        if np.isfinite(values[:, g]).any():
            ax.plot(epochs, values[:, g], color=colors[g], marker=marker, markersize=3, label=f"G{g}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(epochs) <= 20:
        ax.set_xticks(epochs)
    handles, labels = ax.get_legend_handles_labels()
    if errors:
        right = ax.twinx()
        for label, curve in errors.items():
            style = "--" if "train" in label else "-"
            right.plot(epochs, np.asarray(curve, dtype=np.float64), style, color="grey", label=label)
        right.set_ylabel("error")
        right.set_ylim(-0.02, 1.02)
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.12, 1), fontsize=7, frameon=False)
    ax.set_title(title)
    return _save(fig, path)


def group_bars(
    series: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    ylabel: str,
    title: str,
) -> Path:
    """Grouped bars over the difficulty groups G0 … G(G−1): one bar per entry of ``series``
    ({label: [G]}; NaN for an empty group)."""
    fig, (ax,) = _figure(size=(7.5, 4.2))
    n = len(series)
    width = 0.8 / max(n, 1)
    groups = len(next(iter(series.values()))) if n else 0
    for i, (label, v) in enumerate(series.items()):
        ax.bar(
            np.arange(groups) + (i - (n - 1) / 2) * width, np.asarray(v, dtype=np.float64), width, label=label
        )
    ax.set_xticks(range(groups), [f"G{g}" for g in range(groups)])
    ax.set_xlabel("difficulty group (G0 hardest, G9 easiest)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if n > 1:
        ax.legend(fontsize=8)
    return _save(fig, path)


def gallery(
    easiest: np.ndarray,
    hardest: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    *,
    title: str = "Easiest (left) and hardest (right) training images per class",
) -> Path:
    """One row per class: the ``m`` easiest images, a gap, then the ``m`` hardest ones, tiled into
    one mosaic (one ``imshow``). ``easiest``, ``hardest`` [K, m, C, H, W] in [0, 1]; a missing
    image (a class with fewer than m) is NaN and stays blank."""
    k, m, c, h, w = easiest.shape
    cell_h, cell_w = h + 1, w + 1
    mosaic = np.ones((k * cell_h, (2 * m + 1) * cell_w, c), dtype=np.float32)
    for row in range(k):
        for j, img in enumerate([*easiest[row], None, *hardest[row]]):
            if img is None or not np.isfinite(img).all():
                continue
            mosaic[row * cell_h : row * cell_h + h, j * cell_w : j * cell_w + w] = np.transpose(
                img, (1, 2, 0)
            )
    fig, (ax,) = _figure(size=(0.45 * (2 * m + 1) + 1.5, 0.45 * k + 0.8))
    ax.imshow(mosaic[..., 0] if c == 1 else mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(np.arange(k) * cell_h + h / 2, class_names, fontsize=7)
    ax.set_xticks([m * cell_w / 2, (1.5 * m + 1) * cell_w], ["easiest", "hardest"], fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def difficulty_scatter(
    d_a: np.ndarray,
    d_b: np.ndarray,
    path: str | Path,
    *,
    labels: tuple[str, str],
    seed: int = 0,
    title: str = "",
) -> Path:
    """Scatter of the difficulty two runs assign to the same instances (at most ``MAX_POINTS``)."""
    keep = subsample(len(d_a), MAX_POINTS, seed)
    fig, (ax,) = _figure(size=(5.2, 5.0))
    ax.scatter(np.asarray(d_a)[keep], np.asarray(d_b)[keep], s=4, alpha=0.4, linewidths=0)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.set_xlabel(f"difficulty in {labels[0]}")
    ax.set_ylabel(f"difficulty in {labels[1]}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def error_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    path: str | Path,
    *,
    title: str = "Robust error",
    ylabel: str = "robust error",
) -> Path:
    """One colour per run: ``curves`` {label: (epochs, training error, held-out error)}, training
    error dashed and held-out error solid (the hard-instance paper's Figure 1 layout)."""
    fig, (ax,) = _figure(size=(7.0, 4.6))
    for i, (label, (epochs, train, held_out)) in enumerate(curves.items()):
        color = f"C{i}"
        ax.plot(epochs, train, "--", color=color, label=f"{label}, training")
        ax.plot(epochs, held_out, "-", color=color, label=f"{label}, held-out")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_title(title)
    return _save(fig, path)


def lps_vs_pm(
    lps_pgd: np.ndarray,
    lps_lm: np.ndarray,
    pm_nat: np.ndarray,
    pm_adv: np.ndarray,
    steps: int,
    path: str | Path,
    *,
    title: str = "LPS vs probabilistic margin",
) -> Path:
    """MAIL's figure: box plots of PM at x and at x' per LPS value (PGD) 0..``steps``, and the
    counts of (LPS under PGD, LPS under LM-PGD) as a heat map (off-diagonal: the LPS moved)."""
    k = int(steps)
    values = list(range(k + 1))
    fig, axes = _figure(ncols=3, size=(15.0, 4.6))
    for ax, pm, where in ((axes[0], pm_nat, "x"), (axes[1], pm_adv, "x' (PGD)")):
        groups = [pm[lps_pgd == v] for v in values]
        shown = [i for i, g in enumerate(groups) if len(g)]
        ax.boxplot([groups[i] for i in shown], positions=shown, widths=0.6, showfliers=False)
        ax.set_xticks(values, [str(v) for v in values], fontsize=7 if k > 20 else 9)
        ax.set_xlim(-0.7, k + 0.7)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel(f"LPS under PGD-{k} ({k}: never misclassified)")
        ax.set_ylabel(f"PM at {where}")
        ax.set_title(f"PM at {where} per LPS value")
    counts = np.zeros((k + 1, k + 1))
    np.add.at(counts, (lps_pgd.astype(int), lps_lm.astype(int)), 1)
    ax = axes[2]
    im = ax.imshow(np.log1p(counts), cmap="Blues", origin="lower")
    fig.colorbar(im, ax=ax, label="log(1 + points)", shrink=0.8)
    ax.plot([0, k], [0, k], color="grey", lw=0.6, ls="--")
    ax.set_xlabel(f"LPS under LM-PGD-{k}")
    ax.set_ylabel(f"LPS under PGD-{k}")
    ax.set_title("LPS depends on the attack path")
    fig.suptitle(title)
    return _save(fig, path)


def vulnerability_overlap(
    masks: Mapping[str, np.ndarray],
    table: Mapping[tuple[str, str], float],
    path: str | Path,
    *,
    title: str = "Top vulnerable instances per attack",
) -> Path:
    """LRAT's Fig. 5 argument in two panels: a three-set Venn diagram of the top-vulnerable sets
    of the first three ``masks`` with the count of every region (two or one set: circles for
    those), and the heat map of ``table`` ((row, column) → share of the row's top set that is in
    the column's)."""
    from matplotlib.patches import Circle

    names = list(masks)
    fig, (ax, hx) = _figure(ncols=2, size=(11.5, 5.0))
    venn = names[:3]
    centres = [(-0.55, 0.3), (0.55, 0.3), (0.0, -0.6)][: len(venn)]
    colours = class_colors(3)
    labels = [(-1.3, 1.45), (1.3, 1.45), (0.0, -1.85)]
    for (cx, cy), (lx, ly), name, colour in zip(centres, labels, venn, colours):
        ax.add_patch(Circle((cx, cy), 1.0, alpha=0.25, color=colour, lw=1.5))
        ax.text(lx, ly, name, ha="center", va="center", fontsize=11)
    m = [np.asarray(masks[n], dtype=bool) for n in venn]
    while len(m) < 3:
        m.append(np.zeros_like(m[0]))
    a, b, c = m
    regions = {
        (-1.0, 0.6): a & ~b & ~c,
        (1.0, 0.6): b & ~a & ~c,
        (0.0, -1.15): c & ~a & ~b,
        (0.0, 0.8): a & b & ~c,
        (-0.62, -0.4): a & c & ~b,
        (0.62, -0.4): b & c & ~a,
        (0.0, 0.0): a & b & c,
    }
    for (px, py), region in regions.items():
        if len(venn) == 3 or region.any():
            ax.text(px, py, str(int(region.sum())), ha="center", va="center", fontsize=11)
    ax.set_xlim(-2.0, 2.0)
    ax.set_ylim(-2.1, 1.8)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"top-vulnerable sets ({int(a.sum())} points each)")
    k = len(names)
    grid = np.array([[table[(r, q)] for q in names] for r in names])
    im = hx.imshow(grid, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=hx, label="share of the row's top set", shrink=0.8)
    for i in range(k):
        for j in range(k):
            hx.text(
                j,
                i,
                f"{grid[i, j]:.2f}",
                ha="center",
                va="center",
                color="white" if grid[i, j] > 0.6 else "black",
            )
    hx.set_xticks(range(k), names)
    hx.set_yticks(range(k), names)
    hx.set_title("overlap of the top sets")
    fig.suptitle(title)
    return _save(fig, path)


def vir_factors(
    weights: np.ndarray,
    p_nat: np.ndarray,
    kl: np.ndarray,
    path: str | Path,
    *,
    max_points: int = MAX_POINTS,
    seed: int = 0,
    title: str = "Instance weight vs VIR's factors",
) -> Path:
    """Two scatters of the instance weight: against p_y(x) coloured by KL(p(x) ‖ p(x')) (log
    colour scale), and against the KL (symmetric-log axis) coloured by p_y(x). At most
    ``max_points`` points, subsampled with ``seed``."""
    from matplotlib.colors import LogNorm

    weights, p_nat, kl = (np.asarray(a, dtype=np.float64) for a in (weights, p_nat, kl))
    keep = np.flatnonzero(np.isfinite(weights) & np.isfinite(p_nat) & np.isfinite(kl))
    keep = keep[subsample(len(keep), max_points, seed)]
    w, p, d = weights[keep], p_nat[keep], kl[keep]
    fig, (left, right) = _figure(ncols=2, size=(11.5, 4.8))
    floor = max(float(d[d > 0].min()) if (d > 0).any() else 1e-6, 1e-8)
    sc = left.scatter(p, w, c=np.maximum(d, floor), s=6, cmap="viridis", norm=LogNorm())
    fig.colorbar(sc, ax=left, label="KL(p(x) ‖ p(x'))")
    left.set_xlabel("true-class probability at x, p_y(x)")
    left.set_xlim(-0.02, 1.02)
    sc = right.scatter(d, w, c=p, s=6, cmap="plasma", vmin=0, vmax=1)
    fig.colorbar(sc, ax=right, label="p_y(x)")
    right.set_xscale("symlog", linthresh=floor)
    right.set_xlabel("KL(p(x) ‖ p(x')) (symmetric log)")
    for ax in (left, right):
        _weight_axis(ax, w)
    fig.suptitle(f"{title} ({len(keep)} points)")
    return _save(fig, path)


def margin_pca(
    proj: np.ndarray,
    weights: np.ndarray,
    shares: np.ndarray,
    path: str | Path,
    *,
    max_points: int = MAX_POINTS,
    seed: int = 0,
    title: str = "Margin vectors (PCA) coloured by weight",
) -> Path:
    """Scatter of the 2-D PCA projection ``proj`` [N, 2] of the margin vectors, coloured by
    ``weights`` [N] (log colour scale when they span more than ``WIDE_RANGE``)."""
    from matplotlib.colors import LogNorm

    weights = np.asarray(weights, dtype=np.float64)
    keep = np.flatnonzero(np.isfinite(weights) & np.isfinite(proj).all(1))
    keep = keep[subsample(len(keep), max_points, seed)]
    w = weights[keep]
    fig, (ax,) = _figure(size=(7.0, 5.6))
    norm = LogNorm() if wide_range(w) else None
    sc = ax.scatter(proj[keep, 0], proj[keep, 1], c=w, s=6, cmap="viridis", norm=norm)
    fig.colorbar(sc, ax=ax, label="instance weight")
    ax.set_xlabel(f"PC 1 ({100 * shares[0]:.1f}% of the variance)")
    ax.set_ylabel(f"PC 2 ({100 * shares[1]:.1f}% of the variance)")
    ax.set_title(f"{title} ({len(keep)} points)")
    return _save(fig, path)
