"""Adversarial attacks with input gradients only (METHODS.md §3).

``threat`` (ℓ∞/ℓ2 balls ∩ [0, 1], written once), ``pgd`` (the one PGD loop, with GAIRAT/MAIL
path information), ``fgsm``, ``cw_attack`` (CW-k), ``autoattack`` (adapter over the official
package) and ``build(name, eps=...)`` for attacks by name.
"""

from irat.attacks.autoattack import autoattack
from irat.attacks.build import build, names
from irat.attacks.cw import cw_attack
from irat.attacks.fgsm import fgsm
from irat.attacks.pgd import pgd
from irat.attacks.threat import L2, Linf, Threat, threat

__all__ = ["L2", "Linf", "Threat", "autoattack", "build", "cw_attack", "fgsm", "names", "pgd", "threat"]
