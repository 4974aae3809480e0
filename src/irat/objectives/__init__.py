"""Training objectives: per-sample losses reduced once, each taking instance weights ``w`` [B]
(ones when unweighted). Signature: ``objective(logits_nat, logits_adv, y, w, **params) ->
(loss, per_sample)``. Each file says where ``w`` enters.
"""

from irat.objectives.at import at
from irat.objectives.lrat import lrat
from irat.objectives.mart import mart
from irat.objectives.natural import natural
from irat.objectives.trades import trades

OBJECTIVES = {"natural": natural, "at": at, "trades": trades, "mart": mart, "lrat": lrat}
"""Name → objective. ``needs_nat``: natural logits needed; ``needs_adv``: an attack is needed."""

NEEDS_NAT = {"natural": True, "at": False, "trades": True, "mart": True, "lrat": False}
NEEDS_ADV = {"natural": False, "at": True, "trades": True, "mart": True, "lrat": True}
"""LRAT takes the natural forward only when its data term is the natural input (its step assembly
decides); its adversarial logits are those of the m variants, [B, m, n]."""

__all__ = ["OBJECTIVES", "NEEDS_NAT", "NEEDS_ADV", "at", "lrat", "mart", "natural", "trades"]
