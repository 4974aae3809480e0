"""Named training recipes: attack + weighting + objective, with each paper's defaults
(METHODS.md §3.2 for the training attacks, §4 for the objectives).

A recipe only fills in what the user left unset: every field can be overridden through the
config (``--weighting.beta=4``, ``--attack.start=uniform``, ``--train.objective=mart`` ...), so any
weighting combines with any objective.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recipe:
    """One named method.

    ``objective``: key of ``irat.objectives.OBJECTIVES``. ``attack_loss``: the PGD loss of the
    training attack (``None``: no attack, plain training). ``start``: PGD random start.
    ``trade_off``: the objective's trade-off (TRADES' 1/λ, MART's β); ``None`` when it has none.
    ``weighting``: the instance-weighting scheme (``irat.weighting.make``) and ``params`` its
    hyper-parameters. ``burn_in``: the share of training with all-ones weights in the paper
    (0.75 = "the first 75 of 100 epochs"); ``irat.train`` scales it to the epochs it runs, rounding
    to whole epochs, unless ``weighting.burn_in`` gives a number of epochs. ``early_stop``: FAT's
    early-stopped PGD with the dynamic budget τ of ``fat_tau``. ``cached``: the attack starts from
    ATTA's per-instance cache and takes ``attack_steps`` steps of ``step_share``·ε (the
    hard-instance paper's fast AT); ``target_beta``: β of the adaptive targets (1: the labels).
    ``lr``, ``schedule``: the
    learning rate and its schedule when ``train.lr`` / ``train.schedule`` are unset. ``paper``:
    the source.
    """

    name: str
    objective: str
    attack_loss: str | None
    start: str
    trade_off: float | None = None
    weighting: str = "uniform"
    params: dict = field(default_factory=dict)
    burn_in: float = 0.0
    early_stop: bool = False
    cached: bool = False
    attack_steps: int | None = None
    step_share: float | None = None
    target_beta: float = 1.0
    lr: float = 0.1
    schedule: str = "piecewise"
    paper: str = ""


MAIL_BURN_IN = 0.75
"""MAIL and VIR reweight from the first lr decay, epoch 75 of 100 (METHODS.md §4.8, §4.9)."""

GAIRAT_BURN_IN = 0.5
"""GAIRAT's code reweights from epoch 60 of 120 (§4.6)."""


HARD_WARMUP = 5 / 38
"""The hard-instance paper's fast AT: one-hot targets and uniform weights for the first 5 of its
38 epochs (Appendix C.2), scaled to the run like the other burn-ins."""

FAST_STEP = 0.5
"""Fast AT's one step from the cache: 4/255 at ε = 8/255 (ATTA, §3.2), i.e. ε/2."""

FINETUNE_LR = 1e-3
"""Fine-tuning's constant learning rate (§4.12)."""


FAT_NOISE = 0.001
"""FAT's ω: std of the Gaussian noise added to each early-stopped PGD step (§3.6)."""


def fat_tau(epoch: int, epochs: int) -> int:
    """FAT's dynamic budget (§3.6): τ = 0 up to 1-based epoch 50 of 120, 1 up to 90, then 2;
    scaled to ``epochs`` (0-based ``epoch``)."""
    progress = (epoch + 1) / epochs
    return 0 if progress <= 50 / 120 else 1 if progress <= 90 / 120 else 2


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("plain", "natural", None, "none", paper="natural training (METHODS §4.1)"),
        Recipe("at", "at", "ce", "uniform", paper="Madry et al. 2018, PGD-AT (METHODS §4.2)"),
        Recipe("trades", "trades", "kl", "gauss_small", 6.0, paper="Zhang et al. 2019 (METHODS §4.3)"),
        Recipe("mart", "mart", "ce", "gauss_small", 6.0, paper="Wang et al. 2020 (METHODS §4.4)"),
        Recipe("fat", "at", "ce", "uniform", early_stop=True, paper="Zhang et al. 2020, FAT (§4.5)"),
        Recipe(
            "fat-trades", "trades", "kl", "gauss_small", 6.0, early_stop=True, paper="FAT for TRADES (§4.5)"
        ),
        Recipe(
            "gairat",
            "at",
            "ce",
            "uniform",
            weighting="gairat",
            params={"lam": -1.0, "lam_schedule": "fixed"},
            burn_in=GAIRAT_BURN_IN,
            paper="Zhang et al. 2021, GAIRAT (§4.6)",
        ),
        Recipe(
            "wmmr",
            "at",
            "ce",
            "uniform",
            weighting="wmmr",
            params={"alpha": 0.1, "margin": "adv"},
            burn_in=MAIL_BURN_IN,
            paper="WMMR, weighted margin-aware minimax risk (§4.7)",
        ),
        *[
            Recipe(
                f"mail-{base}",
                base,
                "kl" if base == "trades" else "ce",
                "gauss_small",
                trade_off,
                weighting="mail",
                params={"gamma": gamma, "beta": beta, "margin": "adv", "normalize": "batch"},
                burn_in=MAIL_BURN_IN,
                paper=f"Wang et al. 2021, MAIL-{base.upper()} (§4.8)",
            )
            for base, gamma, beta, trade_off in [
                ("at", 30.0, -0.07, None),
                ("trades", 5.0, 0.05, 5.0),
                ("mart", 5.0, 0.05, 6.0),
            ]
        ],
        *[
            Recipe(
                f"vir-{base}",
                base,
                "kl" if base == "trades" else "ce",
                "gauss_small",
                trade_off,
                weighting="vir",
                params={"alpha": alpha, "gamma": gamma, "beta": beta},
                burn_in=MAIL_BURN_IN,
                paper=f"VIR (seed 003), VIR-{base.upper()} (§4.9)",
            )
            for base, alpha, gamma, beta, trade_off in [
                ("at", 7.0, 10.0, 0.007, None),
                ("trades", 8.0, 3.0, 1.6, 5.0),
            ]
        ],
        *[
            Recipe(
                name,
                "at",
                "ce",
                "none",
                weighting="hard" if reweight else "uniform",
                burn_in=HARD_WARMUP if (reweight or adaptive) else 0.0,
                cached=True,
                attack_steps=1,
                step_share=FAST_STEP,
                target_beta=0.1 if adaptive else 1.0,
                paper=f"hard-instance paper, Algorithm 1: {what} (§3.7, §4.12)",
            )
            for name, reweight, adaptive, what in [
                ("fast-at", False, False, "ATTA, one PGD step per batch from a per-instance cache"),
                ("fast-at-rw", True, False, "ATTA with reweighting by p_y(x')"),
                ("fast-at-at", False, True, "ATTA with adaptive targets"),
                ("fast-at-rw-at", True, True, "ATTA with reweighting and adaptive targets"),
            ]
        ],
        Recipe(
            "finetune",
            "finetune",
            "ce",
            "uniform",
            6.0,
            weighting="hard",
            lr=FINETUNE_LR,
            schedule="constant",
            paper="hard-instance paper, adversarial fine-tuning with extra data, RW+KL (§4.12)",
        ),
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
