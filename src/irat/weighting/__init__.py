"""Instance-weighting schemes: pure functions of per-sample statistics (no model, optimizer or
I/O inside a scheme), plus the shared burn-in. ``make(name, **params)`` builds
``scheme(stats: SampleStats) -> w [B]`` with the prescribed normalisation and ``needs(name,
**params)`` tells which optional statistics it reads; ``SCHEMES`` maps each name to its scheme
with default parameters.
"""

from irat.weighting.burn_in import with_burn_in
from irat.weighting.gairat import gairat, gairat_lambda
from irat.weighting.hard import hard
from irat.weighting.mail import const3, mail, prob_margin_adv, prob_margin_dif, prob_margin_nat
from irat.weighting.normalize import normalize_to_batch
from irat.weighting.schemes import NAMES, SCHEME_FUNCTIONS, make, needs
from irat.weighting.uniform import uniform
from irat.weighting.vir import vir, vir_stats, vulnerability
from irat.weighting.wmmr import wmmr

SCHEMES = {"uniform": lambda stats: uniform(stats.y)}
SCHEMES.update({name: make(name) for name in NAMES if name != "uniform"})

__all__ = [
    "NAMES",
    "SCHEMES",
    "SCHEME_FUNCTIONS",
    "const3",
    "gairat",
    "gairat_lambda",
    "hard",
    "mail",
    "make",
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
