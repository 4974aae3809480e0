"""Named training recipes: attack + weighting + objective, with each paper's defaults
(METHODS.md §3.2 for the training attacks, §4 for the objectives).

A recipe only fills in what the user left unset: every field can be overridden through the
config (``--train.beta=4``, ``--attack.start=uniform``, ``--train.objective=mart`` ...), so any
weighting combines with any objective.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """One named method.

    ``objective``: key of ``irat.objectives.OBJECTIVES``. ``attack_loss``: the PGD loss of the
    training attack (``None``: no attack, plain training). ``start``: PGD random start.
    ``weighting``: instance-weighting scheme (``uniform`` = all ones). ``beta``: the objective's
    trade-off (TRADES' 1/λ, MART's β); ``None`` when the objective has none. ``paper``: source.
    """

    name: str
    objective: str
    attack_loss: str | None
    start: str
    weighting: str = "uniform"
    beta: float | None = None
    paper: str = ""


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("plain", "natural", None, "none", paper="natural training (METHODS §4.1)"),
        Recipe("at", "at", "ce", "uniform", paper="Madry et al. 2018, PGD-AT (METHODS §4.2)"),
        Recipe("trades", "trades", "kl", "gauss_small", beta=6.0, paper="Zhang et al. 2019 (METHODS §4.3)"),
        Recipe("mart", "mart", "ce", "gauss_small", beta=6.0, paper="Wang et al. 2020 (METHODS §4.4)"),
    ]
}


def names() -> list[str]:
    """The method names, sorted."""
    return sorted(RECIPES)


def get(name: str) -> Recipe:
    """The recipe called ``name``; a ``ValueError`` lists the valid names otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(names())}") from None
