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
    hyper-parameters. ``burn_in``: how long the weights stay all ones: ``FIRST_DROP`` (until the
    first learning-rate drop of the run's schedule, as MAIL, VIR, WMMR and GAIRAT do), or a share
    of training (0.1 = "the first 10 of 100 epochs", rounded to whole epochs); ``weighting.burn_in``
    overrides it with a number of epochs (``irat.training.assemble.burn_in_epochs``). ``lr`` and
    ``warmup``: the learning rate and linear warm-up epochs a run takes when ``train.lr`` /
    ``train.warmup`` are not given (``irat.training.assemble.train_defaults``), ``defaults_why``
    their source when they are not the usual ones. ``early_stop``: FAT's early-stopped PGD with
    the dynamic budget τ of ``fat_tau``. ``step``: the training attack's step as a fraction of ε
    when ``attack.step_size`` is unset. ``variants``: LRAT/LSAT's attacks, one adversarial variant
    per instance each (``VARIANTS``; empty: one training attack). ``cached``: the attack starts
    from ATTA's per-instance cache and takes ``attack_steps`` steps of ``step``·ε (the hard-instance
    paper's fast AT); ``target_beta``: β of the adaptive targets (1: the labels). ``schedule``: the
    learning-rate schedule when ``train.schedule`` is unset. ``paper``: the source.
    """

    name: str
    objective: str
    attack_loss: str | None
    start: str
    trade_off: float | None = None
    weighting: str = "uniform"
    params: dict = field(default_factory=dict)
    burn_in: float | str = 0.0
    early_stop: bool = False
    step: float = 0.25
    variants: tuple[str, ...] = ()
    cached: bool = False
    attack_steps: int | None = None
    target_beta: float = 1.0
    paper: str = ""
    lr: float = 0.1  # DEFAULT_LR
    warmup: int = 0
    defaults_why: str = ""
    schedule: str = "piecewise"


DEFAULT_LR = 0.1
"""The learning rate of every recipe that does not carry its own (BiLAW's Fashion-MNIST setting)."""

TRADES_LR = 0.01
TRADES_LR_WHY = (
    "TRADES' own setting for small networks without BatchNorm, its MNIST code; MAIL and VIR train "
    "ResNet-18 at 0.01 too. At 0.1 TRADES collapses on Fashion-MNIST tiny-cnn (docs/results.md, issue 18)"
)
"""The default learning rate of the recipes on the TRADES objective (trades, fat-trades,
mail-trades, vir-trades): the KL term's gradient with respect to the natural logits,
p ⊙ (log p − log q − KL) times 1/λ = 6, grows with the adversarial log-ratio where CE's is bounded
by √2, and at lr 0.1 with momentum 0.9 it blows the weights up (docs/results.md, issue 18)."""


FIRST_DROP = "first-drop"
"""Burn-in until the first learning-rate drop of the run's schedule
(``irat.training.schedules.first_drop``)."""

MAIL_BURN_IN = FIRST_DROP
"""MAIL, VIR and WMMR reweight from the first lr drop: epoch 75 in their schedules, ÷10 at 75 and
90 (METHODS.md §4.7–4.9, DECISION #6); epoch 30 in BiLAW's (÷10 at 30 and 60)."""

GAIRAT_BURN_IN = FIRST_DROP
"""GAIRAT's code reweights from its first lr drop, 1-based epoch 60 of 120 (§4.6)."""


VARIANTS = ("pgd", "cw", "saa", "gd")
"""LRAT's attacks (METHODS.md §4.10): ``pgd`` (CE, uniform start), ``cw`` (CW-k, κ = 50), ``saa``
(targeted APGD-DLR, ``irat.attacks.saa``), ``gd`` (the PGD variant weighted by GAIRAT's κ, the
Table 2 ablations)."""

DATA_TERMS = ("natural", "pgd", "cw", "saa", "same")
"""LRAT's data term x*: the natural input, the variant of that attack (run for the data term alone
when the method does not simulate it) or ``same``: the method's first variant."""

LRAT_STEP = 0.1
"""LRAT's training step for its PGD and CW variants, ε/10 as printed (DECISION #11)."""

LRAT = {"alpha": 2.0, "beta": 0.5, "c": 0.1}
LSAT = {"alpha": 1.0, "beta": 0.0, "c": 0.1}
"""LRAT's defaults (§4.10) and LSAT as LRAT with ω ≡ 1 (1·x⁰) and C < 1, so c = 0."""


def default_data_term(variants) -> str:
    """§4.10 DECISION #13: the SAA variant if SAA is simulated, otherwise the method's first
    variant (``same``)."""
    return "saa" if "saa" in variants else "same"


HARD_WARMUP = 5 / 38
"""The hard-instance paper's fast AT: one-hot targets and uniform weights for the first 5 of its
38 epochs (Appendix C.2), scaled to the run like the other burn-ins."""

FAST_STEP = 0.5
"""Fast AT's one step from the cache: 4/255 at ε = 8/255 (ATTA, §3.2), i.e. ε/2."""

FAST_WARMUP = 1
FAST_WARMUP_WHY = (
    "one step from a fresh perturbation cache at lr 0.1 left tiny-cnn guessing after its first epoch "
    "on a short Fashion-MNIST budget (benchmarks/stability.py, issue 18); a linear warm-up over the first "
    "epoch, as the cyclic schedules of fast AT ramp up, lets it learn first"
)
"""Fast AT's default linear lr warm-up, in epochs (not in the hard-instance paper: see the why)."""

BILAW_NP_BURN_IN = 0.01
BILAW_NP_WHY = (
    "BiLAW's non-parametric weights max(-dL_val/d eps, 0) zero about half of a batch; from the first "
    "step they left tiny-cnn at chance on a short Fashion-MNIST budget (benchmarks/stability.py, issue 18). "
    "One epoch of uniform weights (burn-in share 0.01: one epoch below 150) and a one-epoch lr warm-up "
    "train it"
)
"""bilaw-np's burn-in share: BiLAW describes none; one epoch keeps it from collapsing (see the why)."""

FINETUNE_LR = 1e-3
"""Fine-tuning's constant learning rate (§4.12)."""


FAT_NOISE = 0.001
"""FAT's ω: std of the Gaussian noise added to each early-stopped PGD step (§3.6)."""


def fat_tau(epoch: int, epochs: int) -> int:
    """FAT's dynamic budget (§3.6): τ = 0 up to 1-based epoch 50 of 120, 1 up to 90, then 2;
    scaled to ``epochs`` (0-based ``epoch``)."""
    progress = (epoch + 1) / epochs
    return 0 if progress <= 50 / 120 else 1 if progress <= 90 / 120 else 2


def _objective_lr(objective: str) -> dict:
    """The learning-rate fields of a recipe on ``objective``: TRADES' for the TRADES objective."""
    return {"lr": TRADES_LR, "defaults_why": TRADES_LR_WHY} if objective == "trades" else {}


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("plain", "natural", None, "none", paper="natural training (METHODS §4.1)"),
        Recipe("at", "at", "ce", "uniform", paper="Madry et al. 2018, PGD-AT (METHODS §4.2)"),
        Recipe(
            "trades",
            "trades",
            "kl",
            "gauss_small",
            6.0,
            paper="Zhang et al. 2019 (METHODS §4.3)",
            lr=TRADES_LR,
            defaults_why=TRADES_LR_WHY,
        ),
        Recipe("mart", "mart", "ce", "gauss_small", 6.0, paper="Wang et al. 2020 (METHODS §4.4)"),
        Recipe("fat", "at", "ce", "uniform", early_stop=True, paper="Zhang et al. 2020, FAT (§4.5)"),
        Recipe(
            "fat-trades",
            "trades",
            "kl",
            "gauss_small",
            6.0,
            early_stop=True,
            paper="FAT for TRADES (§4.5)",
            lr=TRADES_LR,
            defaults_why=TRADES_LR_WHY,
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
                **_objective_lr(base),
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
                **_objective_lr(base),
            )
            for base, alpha, gamma, beta, trade_off in [
                ("at", 7.0, 10.0, 0.007, None),
                ("trades", 8.0, 3.0, 1.6, 5.0),
            ]
        ],
        *[
            Recipe(
                name,
                "lrat",
                None,
                "uniform",
                weighting="lrat",
                params=dict(params),
                step=LRAT_STEP,
                variants=variants,
                paper=f"LRAT (seed 001), {label} (§4.10)",
            )
            for name, variants, params, label in [
                ("lsat-cw", ("cw",), LSAT, "LSAT-CW"),
                ("lsat-saa", ("saa",), LSAT, "LSAT-SAA"),
                ("lrat-cw", ("cw",), LRAT, "LRAT-CW"),
                ("lrat-saa", ("saa",), LRAT, "LRAT-SAA"),
                ("lrat", ("saa", "cw"), LRAT, "LRAT-SAA+CW"),
                ("lrat-gd-cw", ("cw", "gd"), LRAT, "Table 2 ablation GD+CW"),
                ("lrat-gd-saa", ("saa", "gd"), LRAT, "Table 2 ablation GD+SAA"),
                ("lrat-saa-cw-gd", ("saa", "cw", "gd"), LRAT, "Table 2 ablation SAA+CW+GD"),
            ]
        ],
        Recipe(
            "bilaw",
            "at",
            "ce",
            "uniform",
            weighting="bilaw",
            paper="BiLAW (seed 000), learned weights (§4.11)",
        ),
        Recipe(
            "bilaw-trades",
            "trades",
            "kl",
            "gauss_small",
            6.0,
            weighting="bilaw",
            paper="BiLAW-TRADES (seed 000, Eq. 8; §4.11)",
            **_objective_lr("trades"),
        ),
        Recipe(
            "bilaw-np",
            "at",
            "ce",
            "uniform",
            weighting="bilaw-np",
            burn_in=BILAW_NP_BURN_IN,
            warmup=1,
            defaults_why=BILAW_NP_WHY,
            paper="BiLAW's non-parametric reweighting (seed 000; §4.11, DECISION #20)",
        ),
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
                step=FAST_STEP,
                target_beta=0.1 if adaptive else 1.0,
                warmup=FAST_WARMUP,
                defaults_why=FAST_WARMUP_WHY,
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
            defaults_why="the hard-instance paper fine-tunes at a constant 1e-3 (§4.12)",
            schedule="constant",
            paper="hard-instance paper, adversarial fine-tuning with extra data, RW+KL (§4.12)",
        ),
    ]
}


OBJECTIVE_RECIPE = {"natural": "plain", "at": "at", "trades": "trades", "mart": "mart"}
"""The recipe whose defaults an objective brings when ``train.objective`` overrides a recipe's."""


def names() -> list[str]:
    """The method names, sorted."""
    return sorted(RECIPES)


def get(name: str) -> Recipe:
    """The recipe called ``name``; a ``ValueError`` lists the valid names otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(names())}") from None
