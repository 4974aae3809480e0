"""Adversarial attacks with input gradients only (METHODS.md §3).

``threat`` (ℓ∞/ℓ2 balls ∩ [0, 1], written once), ``pgd`` (the one PGD loop, with GAIRAT/MAIL
path information), ``fgsm``, ``cw_attack`` (CW-k), ``apgd`` (APGD, own code) and ``saa``
(LRAT's targeted APGD-DLR), ``lm_pgd`` (MAIL's line-search & momentum PGD), ``variants``
(several attacks stacked per sample, LRAT), ``spsa`` (gradient-free SPSA), ``fmn`` (FMN through foolbox),
``autoattack`` (adapter over the official package) and ``build(name, eps=...)`` for attacks by
name.
"""

from irat.attacks.apgd import apgd
from irat.attacks.autoattack import autoattack
from irat.attacks.build import build, names
from irat.attacks.cw import cw_attack
from irat.attacks.fgsm import fgsm
from irat.attacks.fmn import fmn
from irat.attacks.lm_pgd import lm_pgd
from irat.attacks.pgd import pgd
from irat.attacks.saa import saa
from irat.attacks.spsa import spsa
from irat.attacks.threat import L2, Linf, Threat, threat
from irat.attacks.variants import variants

__all__ = [
    "L2",
    "Linf",
    "Threat",
    "apgd",
    "autoattack",
    "build",
    "cw_attack",
    "fgsm",
    "fmn",
    "lm_pgd",
    "names",
    "pgd",
    "saa",
    "spsa",
    "threat",
    "variants",
]
