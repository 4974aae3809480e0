"""Instance-weighting schemes: pure functions of per-sample statistics (no model, optimizer or
I/O inside a scheme), plus the shared burn-in. ``make(name, **params)`` builds
``scheme(stats: SampleStats) -> w [B]`` (LRAT: [B, m + 1]) with the prescribed normalisation and
``needs(name, **params)`` tells which optional statistics it reads; ``SCHEMES`` maps each name to
its scheme with default parameters.

BiLAW's weighting is learned, not a formula (``LEARNED`` names its two variants): a
``WeightNet`` on the multi-class margin, trained through ``bilaw_meta_gradient`` by the stateful
``LearnedWeighting`` that the training step updates once per step (``learned.py``).
"""

from irat.weighting.burn_in import with_burn_in
from irat.weighting.gairat import gairat, gairat_lambda
from irat.weighting.hard import hard
from irat.weighting.learned import LearnedWeighting
from irat.weighting.lrat import data_coefficient, lrat, lrat_coefficients
from irat.weighting.mail import const3, mail, prob_margin_adv, prob_margin_dif, prob_margin_nat
from irat.weighting.meta import bilaw_meta_gradient, meta_weight_gradient
from irat.weighting.normalize import normalize_to_batch
from irat.weighting.schemes import NAMES, SCHEME_FUNCTIONS, make, needs
from irat.weighting.uniform import uniform
from irat.weighting.vir import vir, vir_stats, vulnerability
from irat.weighting.weight_net import WeightNet
from irat.weighting.wmmr import wmmr

LEARNED = ("bilaw", "bilaw-np")
"""The learned weightings (BiLAW, METHODS.md §4.11): ``LearnedWeighting`` with and without the
weight network."""

SCHEMES = {"uniform": lambda stats: uniform(stats.y)}
SCHEMES.update({name: make(name) for name in NAMES if name != "uniform"})

__all__ = [
    "LEARNED",
    "NAMES",
    "SCHEMES",
    "SCHEME_FUNCTIONS",
    "LearnedWeighting",
    "WeightNet",
    "bilaw_meta_gradient",
    "const3",
    "data_coefficient",
    "gairat",
    "gairat_lambda",
    "lrat",
    "lrat_coefficients",
    "hard",
    "mail",
    "make",
    "meta_weight_gradient",
    "needs",
    "normalize_to_batch",
    "prob_margin_adv",
    "prob_margin_dif",
    "prob_margin_nat",
    "uniform",
    "vir",
    "vir_stats",
    "vulnerability",
    "with_burn_in",
    "wmmr",
]
