"""MAIL's argument for the probabilistic margin (seed 002, §3 and Fig. 1; METHODS.md §3.5, §6.5):
GAIRAT's least PGD steps (LPS, the first iterate at which PGD misclassifies a point) depend on the
attack path and take a few discrete values, while the probabilistic margin PM = p_y − max_{j≠y} p_j
is continuous and needs no path.

``lps_and_pm(model, x, y, ...)`` runs, on the same points, PGD-K from the natural point (start
``none``, the run's training step size) and LM-PGD-K (``irat.attacks.lm_pgd``, α_max = 0.75 ε and
α_min = 0.5 ε: the paper's 6/255 and 4/255 at ε = 8/255) and returns per point

* ``lps_pgd``, ``lps_lm`` [N]: the first misclassified iterate in 0..K (K also when never fooled:
  LPS = K lumps "broken at the last step" with "never broken", MAIL's point (b));
* ``pm_nat`` [N]: PM at x; ``pm_adv`` [N]: PM at PGD's final point (MAIL-AT's PM_adv), both with
  the model in eval mode.

``summary`` gives the numbers the report states: the share of points whose LPS changes between the
two attacks, the share at LPS = K under PGD and the spread of PM among them, and the Spearman rank
correlation between PM and LPS. Shapes: ``x`` [N, C, H, W] in [0, 1], ``y`` [N].
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from irat import losses
from irat.attacks.lm_pgd import lm_pgd
from irat.attacks.pgd import pgd
from irat.evaluation.robust import batches
from irat.training.checkpoint import atomic_write_text

CSV_COLUMNS = ("position", "y", "lps_pgd", "lps_lm_pgd", "pm_nat", "pm_adv")


@dataclass
class LpsPm:
    """Per point: ``y``, ``lps_pgd``, ``lps_lm`` (ints in 0..``steps``), ``pm_nat``, ``pm_adv``
    (floats in [−1, 1]); numpy arrays [N]."""

    y: np.ndarray
    lps_pgd: np.ndarray
    lps_lm: np.ndarray
    pm_nat: np.ndarray
    pm_adv: np.ndarray
    steps: int

    def summary(self) -> dict[str, float]:
        """``changed``: share of points whose LPS differs between PGD and LM-PGD; ``lm_earlier``:
        share LM-PGD breaks earlier; ``at_max``: share with LPS = K under PGD; ``pm_spread_at_max``:
        the interquartile range of PM_nat among them (NaN if none); ``spearman_nat``,
        ``spearman_adv``: rank correlation of LPS (PGD) with PM_nat and PM_adv (NaN if constant)."""
        from scipy.stats import spearmanr

        at_max = self.lps_pgd == self.steps
        spread = np.subtract(*np.percentile(self.pm_nat[at_max], [75, 25])) if at_max.any() else np.nan

        def rank(a, b):
            if np.ptp(a) == 0 or np.ptp(b) == 0:
                return float("nan")
            return float(spearmanr(a, b).statistic)

        return {
            "changed": float(np.mean(self.lps_pgd != self.lps_lm)),
            "lm_earlier": float(np.mean(self.lps_lm < self.lps_pgd)),
            "at_max": float(np.mean(at_max)),
            "pm_spread_at_max": float(spread),
            "spearman_nat": rank(self.lps_pgd, self.pm_nat),
            "spearman_adv": rank(self.lps_pgd, self.pm_adv),
        }

    def to_csv(self, path: str | Path) -> Path:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for i in range(len(self.y)):
            writer.writerow(
                [
                    i,
                    int(self.y[i]),
                    int(self.lps_pgd[i]),
                    int(self.lps_lm[i]),
                    f"{self.pm_nat[i]:.6g}",
                    f"{self.pm_adv[i]:.6g}",
                ]
            )
        atomic_write_text(path, buf.getvalue())
        return Path(path)


def lps_and_pm(
    model: torch.nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    norm: str = "linf",
    batch_size: int | None = None,
) -> LpsPm:
    """LPS under PGD-``steps`` (start none, ``step_size``) and under LM-PGD-``steps``, and PM at x
    and at PGD's final point, for every image (module docstring); in batches, deterministic."""
    parts: dict[str, list[Tensor]] = {k: [] for k in ("lps_pgd", "lps_lm", "pm_nat", "pm_adv")}
    for xb, yb in batches(x, y, batch_size):
        p = pgd(
            model,
            xb,
            yb,
            eps=eps,
            steps=steps,
            step_size=step_size,
            norm=norm,
            start="none",
            record_path=True,
        )
        lm = lm_pgd(model, xb, yb, eps=eps, steps=steps, norm=norm, alpha_max=0.75 * eps, alpha_min=0.5 * eps)
        parts["lps_pgd"].append(p.first_wrong)
        parts["lps_lm"].append(lm.first_wrong)
        parts["pm_nat"].append(losses.pm(p.logits_nat, yb))
        parts["pm_adv"].append(losses.pm(p.logits_adv, yb))
    out = {k: torch.cat(v).cpu().numpy() for k, v in parts.items()}
    return LpsPm(y=y.cpu().numpy(), steps=int(steps), **out)
