"""The hard-instance analyses of ``irat analyze`` (the [HARD] seed paper, Sections 3–4; METHODS.md
§4.12), one report section each:

difficulty.csv / group_loss.png   d(x) of every training instance (``analysis.difficulty``) and the
                                  mean training loss of each group G0 (hardest) … G9 (easiest) per
                                  epoch, with the robust training and validation error (Figure 2a)
difficulty_vs_other.png           ``--against RUN_B``: the D-distance and a scatter of the two d's
gallery.png                       the easiest and hardest training images of each class
feature_norms.png                 mean ℓ2 norm of the penultimate features per group (Figure 2b),
                                  clean and under the analysis attack, of the chosen checkpoint
test_groups.png                   robust and clean test error per group, the test images grouped by
                                  their loss under the analysis attack against the chosen checkpoint

Figure 2b in the paper follows the norms over the epochs; a run keeps only its best and last
checkpoints, so here they are measured once, on the chosen one. The test grouping uses the
chosen model's own adversarial loss (the test set has no training record), which makes the robust
error per group largely a restatement of the grouping; the clean error per group is the part it
adds.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from irat.analysis import plots
from irat.analysis.difficulty import GROUPS, common_difficulty, d_distance, difficulty, groups, mean_loss
from irat.analysis.records import Records
from irat.training.checkpoint import atomic_write_text

GALLERY_PER_CLASS = 8
FEATURE_IMAGES = 5000


def _figure(file: str, alt: str, caption: str) -> str:
    return f"![{alt}]({file})\n\n*{caption}*\n"


def _group_means(values: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Mean of ``values`` [..., N] over each group's members (NaN-skipping) → [..., GROUPS]."""
    out = np.full((*values.shape[:-1], GROUPS), np.nan)
    for i in range(GROUPS):
        members = values[..., g == i]
        if members.shape[-1]:
            finite = np.isfinite(members)
            count = finite.sum(-1)
            total = np.where(finite, members, 0.0).sum(-1)
            out[..., i] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def difficulty_section(out: Path, recs: Records, rows: list[dict]) -> tuple[str, np.ndarray]:
    """The difficulty of the training instances, their groups' loss curves and ``difficulty.csv``;
    returns the section and d [N] (aligned with ``recs.idx``)."""
    loss = recs.loss.astype(np.float64)  # [E, N]
    d = difficulty(loss.T)
    g = groups(d)
    lbar = mean_loss(loss.T)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["idx", "y", "mean_loss", "difficulty", "group"])
    for row in zip(recs.idx.tolist(), recs.y.tolist(), lbar.tolist(), d.tolist(), g.tolist()):
        writer.writerow([row[0], row[1], f"{row[2]:.6g}", f"{row[3]:.6g}", row[4]])
    atomic_write_text(out / "difficulty.csv", buf.getvalue())

    per_epoch = _group_means(loss, g)  # [E, G]
    by_epoch = {int(r["epoch"]): r for r in rows}
    errors = {}
    for key, label in (
        ("train_robust_acc", "robust training error"),
        ("val_robust_acc", "robust validation error"),
    ):
        curve = np.array([1 - by_epoch.get(int(e), {}).get(key, np.nan) for e in recs.epochs])
        if np.isfinite(curve).any():
            errors[label] = curve
    plots.group_curves(recs.epochs, per_epoch, out / "group_loss.png", errors=errors)

    weight = recs.weight.astype(np.float64)
    mean_w = _nanmean_rows(weight.T)
    varied = np.nanstd(mean_w) > 1e-6 if np.isfinite(mean_w).any() else False
    head = "| group | instances | mean L̄ | loss, first epoch | loss, last epoch |"
    if varied:
        head += " mean weight |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    first, last = per_epoch[0], per_epoch[-1]
    w_group = _group_means(mean_w, g)
    l_group = _group_means(lbar, g)
    for i in range(GROUPS):
        cells = [f"G{i}", str(int((g == i).sum())), f"{l_group[i]:.4g}", f"{first[i]:.4g}", f"{last[i]:.4g}"]
        if varied:
            cells.append(f"{w_group[i]:.4g}")
        lines.append("| " + " | ".join(cells) + " |")
    corr = ""
    if varied:
        ok = np.isfinite(mean_w)
        r = np.corrcoef(d[ok], mean_w[ok])[0, 1]
        corr = (
            f"\nPearson correlation between the difficulty and the mean weight over the epochs: {r:.4f} "
            "(the paper reports 0.8900 for its reweighting).\n"
        )
    text = (
        "## Instance difficulty\n\n"
        f"d(x) of the {len(d)} training instances from their loss in the {len(recs.epochs)} recorded "
        "epochs (mean over the epochs, rank within the training set; 0 = hardest, 1 = easiest); "
        "per instance in [difficulty.csv](difficulty.csv).\n\n"
        + _figure(
            "group_loss.png",
            "training loss per difficulty group",
            "Mean training loss (of the perturbed input the run trained on) of the groups G0 (hardest) "
            "… G9 (easiest) per epoch; grey: robust training error (dashed) and robust validation "
            "error (solid) from metrics.jsonl (the paper's Figure 2a shows the test error there).",
        )
        + "\n"
        + "\n".join(lines)
        + "\n"
        + corr
    )
    return text, d


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    finite = np.isfinite(a)
    count = finite.sum(1)
    return np.where(count > 0, np.where(finite, a, 0.0).sum(1) / np.maximum(count, 1), np.nan)


def against_section(out: Path, run_a: Path, run_b: Path, seed: int = 0) -> str:
    """The D-distance between the difficulty of two runs on their common training instances."""
    idx, d_a, d_b = common_difficulty(run_a, run_b)
    dist = float(d_distance(d_a, d_b))
    plots.difficulty_scatter(
        d_a,
        d_b,
        out / "difficulty_vs_other.png",
        labels=(run_a.name, Path(run_b).name),
        seed=seed,
        title=f"D-distance {dist:.4f} on {len(idx)} instances",
    )
    return (
        "## Difficulty against another run\n\n"
        f"D-distance between `{run_a}` and `{run_b}`: **{dist:.4f}** on the {len(idx)} training "
        "instances both recorded (0: the same ranking; two independent random rankings give about "
        "1/3).\n\n"
        + _figure(
            "difficulty_vs_other.png",
            "difficulty in two runs",
            "Difficulty of each instance in the two runs.",
        )
    )


def _positions(split_idx: torch.Tensor, rec_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the record, positions in the split) of the instances both hold."""
    _, rows, pos = np.intersect1d(rec_idx, split_idx.cpu().numpy(), assume_unique=True, return_indices=True)
    return rows, pos


def gallery_section(out: Path, train, recs: Records, d: np.ndarray, names: list[str]) -> str:
    """The ``GALLERY_PER_CLASS`` easiest and hardest training images of every class."""
    rows, pos = _positions(train.idx, recs.idx)
    m, k = GALLERY_PER_CLASS, len(names)
    shape = tuple(train.x.shape[1:])
    easiest = np.full((k, m, *shape), np.nan, dtype=np.float32)
    hardest = np.full((k, m, *shape), np.nan, dtype=np.float32)
    y = recs.y[rows]
    for c in range(k):
        mine = np.flatnonzero(y == c)
        order = mine[np.argsort(d[rows][mine], kind="stable")]  # hardest first
        for j, r in enumerate(order[::-1][:m]):
            easiest[c, j] = train.x[int(pos[r])].cpu().numpy()
        for j, r in enumerate(order[:m]):
            hardest[c, j] = train.x[int(pos[r])].cpu().numpy()
    plots.gallery(easiest, hardest, names, out / "gallery.png")
    return "## Easiest and hardest training images\n\n" + _figure(
        "gallery.png",
        "easiest and hardest images per class",
        f"Per class, the {m} easiest training images (left, easiest first) and the {m} hardest "
        "(right, hardest first) by their difficulty in this run.",
    )


def _outputs(model, x, y, attack, batch: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per image: clean and adversarial feature norms, adversarial loss, adversarial and clean
    correctness (model in eval mode)."""
    from irat.losses import ce

    clean_norm, adv_norm, adv_loss, adv_ok, clean_ok = [], [], [], [], []
    was = model.training
    model.eval()
    try:
        for s in range(0, len(y), batch):
            xb, yb = x[s : s + batch], y[s : s + batch]
            res = attack(model, xb, yb)
            with torch.no_grad():
                clean_norm.append(model.features(xb).norm(dim=1))
                adv_norm.append(model.features(res.x_adv).norm(dim=1))
                adv_loss.append(ce(res.logits_adv, yb))
                adv_ok.append(res.logits_adv.argmax(1) == yb)
                clean_ok.append(model(xb).argmax(1) == yb)
    finally:
        model.train(was)
    return tuple(torch.cat(v).cpu().numpy() for v in (clean_norm, adv_norm, adv_loss, adv_ok, clean_ok))


def features_section(out: Path, loaded, recs: Records, d: np.ndarray, attack_name: str, built) -> str:
    """Mean ℓ2 norm of the penultimate features per group, on a seeded sample of training images."""
    train = loaded.data.train
    rows, pos = _positions(train.idx, recs.idx)
    pick = plots.subsample(len(rows), FEATURE_IMAGES, loaded.config.train.seed)
    rows, pos = rows[pick], pos[pick]
    p = torch.from_numpy(pos).to(train.x.device)
    x, y = train.x[p].to(loaded.device), train.y[p].to(loaded.device)
    torch.manual_seed(loaded.config.train.seed)
    clean_norm, adv_norm, *_ = _outputs(loaded.model, x, y, built)
    g = groups(d[rows])
    series = {"clean": _group_means(clean_norm, g), f"{attack_name}": _group_means(adv_norm, g)}
    plots.group_bars(
        series,
        out / "feature_norms.png",
        ylabel="mean ℓ2 norm of penultimate features",
        title=f"Feature norms per difficulty group ({loaded.checkpoint.name})",
    )
    lines = ["| group | images | clean | " + attack_name + " |", "|---|---|---|---|"]
    for i in range(GROUPS):
        lines.append(
            f"| G{i} | {int((g == i).sum())} | {series['clean'][i]:.4g} | {series[attack_name][i]:.4g} |"
        )
    return (
        "## Feature norms per group\n\n"
        + _figure(
            "feature_norms.png",
            "feature norms per group",
            f"Mean ℓ2 norm of the penultimate-layer activations of {len(rows)} training images "
            f"(seeded sample) per difficulty group, clean and under {attack_name}, with the weights of "
            f"`{loaded.checkpoint.name}` (the paper's Figure 2b follows them over the epochs).",
        )
        + "\n"
        + "\n".join(lines)
        + "\n"
    )


def test_groups_section(out: Path, loaded, attack_name: str, built, limit: int) -> str:
    """Clean and robust test error per group, the test images grouped by their adversarial loss."""
    test = loaded.data.test
    x, y = test.x[:limit].to(loaded.device), test.y[:limit].to(loaded.device)
    torch.manual_seed(loaded.config.train.seed)
    _, _, adv_loss, adv_ok, clean_ok = _outputs(loaded.model, x, y, built)
    g = groups(difficulty(adv_loss))
    robust_err = _group_means(1.0 - adv_ok.astype(np.float64), g)
    clean_err = _group_means(1.0 - clean_ok.astype(np.float64), g)
    plots.group_bars(
        {"clean error": clean_err, f"{attack_name} error": robust_err},
        out / "test_groups.png",
        ylabel="error",
        title=f"Test error per difficulty group ({len(y)} test images)",
    )
    lines = ["| group | images | clean error | robust error |", "|---|---|---|---|"]
    for i in range(GROUPS):
        lines.append(f"| G{i} | {int((g == i).sum())} | {clean_err[i]:.4f} | {robust_err[i]:.4f} |")
    return (
        "## Test error per group\n\n"
        + _figure(
            "test_groups.png",
            "test error per difficulty group",
            f"The first {len(y)} test images grouped by the difficulty of their {attack_name} loss under "
            f"`{loaded.checkpoint.name}` (the test set has no training record); robust error per group "
            "restates that grouping, clean error per group is what it adds.",
        )
        + "\n"
        + "\n".join(lines)
        + "\n"
    )
