"""Training objectives: per-sample losses reduced once, each taking instance weights ``w`` [B]
(ones when unweighted). Signature: ``objective(logits_nat, logits_adv, y, w, **params) ->
(loss, per_sample)``. Each file says where ``w`` enters.
"""

from irat.objectives.adaptive_targets import AdaptiveTargets
from irat.objectives.at import at
from irat.objectives.finetune import finetune
from irat.objectives.lrat import lrat
from irat.objectives.mart import mart
from irat.objectives.natural import natural
from irat.objectives.trades import trades

OBJECTIVES = {
    "natural": natural,
    "at": at,
    "trades": trades,
    "mart": mart,
    "lrat": lrat,
    "finetune": finetune,
}
"""Name → objective. ``needs_nat``: natural logits needed; ``needs_adv``: an attack is needed;
``SOFT_TARGETS``: the objectives whose labels enter through ``ce`` only, so that they also take
soft targets [B, n] (the adaptive targets, ``hard.beta < 1``)."""

NEEDS_NAT = {"natural": True, "at": False, "trades": True, "mart": True, "lrat": False, "finetune": True}
NEEDS_ADV = {"natural": False, "at": True, "trades": True, "mart": True, "lrat": True, "finetune": True}
SOFT_TARGETS = ("natural", "at", "trades", "finetune")
"""LRAT takes the natural forward only when its data term is the natural input (its step assembly
decides); its adversarial logits are those of the m variants, [B, m, n]."""

__all__ = [
    "OBJECTIVES",
    "NEEDS_NAT",
    "NEEDS_ADV",
    "SOFT_TARGETS",
    "AdaptiveTargets",
    "at",
    "finetune",
    "lrat",
    "mart",
    "natural",
    "trades",
]
