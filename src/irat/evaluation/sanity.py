"""Checks that expose gradient masking and broken evaluations (DESIGN.md: "Rules that keep it
trustworthy"). Each check is a pure function of accuracies and returns warning strings; the
caller prints them loudly.

* robust accuracy above clean accuracy;
* a stronger attack weaker than a weaker one (FGSM ≥ PGD ≥ AutoAttack, PGD-k non-increasing in
  k at one step size, CW-k ≥ AutoAttack, single AutoAttack components ≥ the full cascade);
* accuracy rising as ε grows, or not falling at all from the smallest to the largest ε of the
  sweep (at 4ε every undefended point should fall; a flat curve means the gradients are useless);
* a black-box attack (Square, which reads only the model's outputs) clearly stronger than the
  white-box attacks (``check_black_box``);
* no attack changing a single prediction at the evaluation ε (``check_nothing_broken``);
* input gradients that are zero or non-finite for a large share of points (``check_gradients``);
* outputs that change between two forwards of the same input, a randomised defence
  (``check_randomness``).

Every warning says what it saw, why it matters and what to run next; the numbers the last four
read come from ``irat.evaluation.masking``, which probes the model.
"""

from __future__ import annotations

from irat.attacks.build import ITERATIVE

BLACK_BOX_MARGIN = 0.03
"""A black-box attack is "clearly stronger" when it leaves this fraction of the images (at least
two images) fewer robust than the white-box attacks did."""
GRADIENT_SHARE = 0.1
"""Share of points with zero or non-finite input gradients above which the gradients are masked."""
MIN_CORRECT = 10
"""``check_nothing_broken`` needs at least this many correctly classified points."""
PGD_OVER_RANDOM = 2.0
"""With nothing broken, PGD must lower the mean logit margin more than this many times what a
random point of the ball does, or the gradient is useless."""
RANDOM_TOLERANCE = 1e-4
"""Relative change of the logits between two forwards of one input above which the model is
random (floating-point non-determinism of GPU kernels stays far below)."""

NEXT_BLACK_BOX = (
    "next: irat eval RUN --attacks clean,pgd-20,cw-20,square (Square needs no gradients), and "
    "--bpda if the model has a non-differentiable preprocessing step"
)


def _budget(name: str) -> tuple[int, int]:
    """(steps K, restarts R) of ``pgd-K``, ``cw-K``, ``pgd-KxR``, ``cw-KxR`` (and with ``:STEP``)."""
    _, k, r, _ = ITERATIVE.fullmatch(name).groups()
    return int(k), int(r or 1)


def _step(name: str) -> str | None:
    return ITERATIVE.fullmatch(name).group(4)


def stronger_pairs(names: list[str]) -> list[tuple[str, str]]:
    """``(weaker, stronger)`` pairs among the evaluated attack names; within PGD and within CW,
    every pair written with the same step size where the second has at least the first's steps
    and restarts (PGD-100 at 1/255 need not beat PGD-20 at ε/4)."""
    pairs = []
    families = [
        sorted((n for n in names if (m := ITERATIVE.fullmatch(n)) and m.group(1) == fam), key=_budget)
        for fam in ("pgd", "cw")
    ]
    pgds, cws = families
    for fam in families:
        pairs += [
            (a, b)
            for i, a in enumerate(fam)
            for b in fam[i + 1 :]
            if _step(a) == _step(b) and all(x <= y for x, y in zip(_budget(a), _budget(b)))
        ]
    if "fgsm" in names:
        pairs += [("fgsm", n) for n in pgds]
    if "autoattack" in names:
        aa_parts = ["apgd-ce", "apgd-t", "fab-t", "square", "fgsm"]
        pairs += [(n, "autoattack") for n in [*pgds, *cws, *aa_parts] if n in names]
    return pairs


def check_accuracies(accuracy: dict[str, float], n: int) -> list[str]:
    """Warnings for robust > clean and stronger-attack-weaker, with a tolerance of one sample."""
    tol = 1.0 / max(n, 1) + 1e-9
    warnings = []
    clean = accuracy.get("clean")
    names = [k for k in accuracy if k not in ("clean", "worst-case")]
    if clean is not None:
        for name in names:
            if accuracy[name] > clean + tol:
                warnings.append(
                    f"robust accuracy under {name} ({accuracy[name]:.4f}) exceeds clean accuracy "
                    f"({clean:.4f}): the attack or the model is broken"
                )
    for weak, strong in stronger_pairs(names):
        if accuracy[strong] > accuracy[weak] + tol:
            warnings.append(
                f"{strong} ({accuracy[strong]:.4f}) is weaker than {weak} ({accuracy[weak]:.4f}): "
                "a sign of gradient masking or a broken attack"
            )
    return warnings


def check_eps_sweep(sweep: dict[float, float], n: int) -> list[str]:
    """``sweep`` maps ε → robust accuracy; warn where accuracy rises as ε grows, and when it does
    not fall at all between the smallest and the largest ε (unless it is already 0)."""
    tol = 1.0 / max(n, 1) + 1e-9
    eps = sorted(sweep)
    warnings = [
        f"accuracy rises from {sweep[a]:.4f} at eps={a:g} to {sweep[b]:.4f} at eps={b:g}: "
        "accuracy must not grow with the attack radius (gradient masking?)"
        for a, b in zip(eps, eps[1:])
        if sweep[b] > sweep[a] + tol
    ]
    lo, hi = (eps[0], eps[-1]) if eps else (None, None)
    if len(eps) > 1 and sweep[lo] > 0 and sweep[hi] >= sweep[lo] - tol / 2:
        warnings.append(
            f"accuracy does not fall from eps={lo:g} ({sweep[lo]:.4f}) to eps={hi:g} ({sweep[hi]:.4f}): "
            "a working attack drives accuracy towards 0 as the radius grows (gradient masking?); "
            + NEXT_BLACK_BOX
        )
    return warnings


def check_black_box(black: float, white: float, n: int, name: str = "square") -> list[str]:
    """``black``: accuracy under the black-box attack ``name``; ``white``: the accuracy left by
    the white-box attacks (per point, robust under all of them) on the same ``n`` images. Warn
    when the black-box attack is clearly stronger (``BLACK_BOX_MARGIN``)."""
    margin = max(BLACK_BOX_MARGIN, 2 / max(n, 1)) - 1e-9
    if not black < white - margin:
        return []
    return [
        f"the black-box attack {name} leaves {black:.4f} of {n} images robust, the white-box attacks "
        f"{white:.4f}: an attack that reads only the outputs beats the ones that follow the gradients "
        f"by {100 * (white - black):.1f} points, so the gradients are masked and the white-box numbers "
        "overstate robustness; report the worst case with square (or autoattack); " + NEXT_BLACK_BOX
    ]


def check_nothing_broken(
    n_correct: int, n_broken: int, eps: float, drop_pgd: float, drop_random: float
) -> list[str]:
    """``n_correct`` points classified correctly when clean, of which the white-box attacks at
    ``eps`` broke ``n_broken``; on them PGD lowered the logit margin by ``drop_pgd`` on average
    and a uniform random point of the ε-ball by ``drop_random``. Warn when robust accuracy
    equals clean accuracy and PGD did no better than ``PGD_OVER_RANDOM`` times random noise: a
    model that is truly robust at ε still lets the gradient push every margin down."""
    if eps <= 0 or n_correct < MIN_CORRECT or n_broken > 0:
        return []
    if drop_pgd > PGD_OVER_RANDOM * max(drop_random, 0.0) and drop_pgd > 0:
        return []
    return [
        f"robust accuracy equals clean accuracy at eps={eps:g}: the white-box attacks changed none of the "
        f"{n_correct} correct predictions, and PGD lowered their logit margin by {drop_pgd:.3g} on "
        f"average against {drop_random:.3g} for random noise in the same ball, so the gradient leads "
        "nowhere (gradient masking); " + NEXT_BLACK_BOX
    ]


def check_gradients(zero_ce: float, zero_margin: float, nonfinite: float, n: int) -> list[str]:
    """Shares of ``n`` points whose input gradient is exactly zero for the cross-entropy
    (``zero_ce``) and for the logit margin (``zero_margin``), and non-finite for either
    (``nonfinite``). Warn when one passes ``GRADIENT_SHARE``."""
    warnings = []
    if nonfinite > GRADIENT_SHARE:
        warnings.append(
            f"the input gradient is NaN or infinite for {100 * nonfinite:.0f}% of {n} points: gradient "
            "attacks step in no meaningful direction (an operation such as sqrt, log or a division at 0 "
            "in the model or its preprocessing); fix that operation, declare a non-differentiable step "
            "as irat.models.Preprocessing and evaluate with --bpda; " + NEXT_BLACK_BOX
        )
    if zero_ce > GRADIENT_SHARE and zero_margin <= GRADIENT_SHARE:
        warnings.append(
            f"the cross-entropy's input gradient is exactly zero for {100 * zero_ce:.0f}% of {n} points "
            f"but the logit margin's only for {100 * zero_margin:.0f}%: the softmax is saturated (logits "
            "so large that p = 1 in floating point), so PGD on the cross-entropy cannot move; next: "
            "irat eval RUN --attacks clean,pgd-20,cw-20,apgd-t,square (margin and DLR losses do not saturate)"
        )
    elif zero_ce > GRADIENT_SHARE:
        warnings.append(
            f"the input gradient is exactly zero for {100 * zero_ce:.0f}% of {n} points (cross-entropy) "
            f"and {100 * zero_margin:.0f}% (logit margin): a non-differentiable step (quantisation, "
            "thresholding, JPEG) hides the gradient, so gradient attacks cannot move these points; declare "
            "the step as irat.models.Preprocessing and evaluate with --bpda; " + NEXT_BLACK_BOX
        )
    return warnings


def check_randomness(change: float) -> list[str]:
    """``change``: the largest relative change of a point's logits between two forwards of the
    same input in eval mode. Warn above ``RANDOM_TOLERANCE``."""
    if not change > RANDOM_TOLERANCE:
        return []
    return [
        f"the model's outputs change between two forwards of the same input (relative change up to "
        f"{change:.3g}): a randomised defence, against which one draw's gradient misleads PGD; next: "
        "irat eval RUN --attacks clean,pgd-20,autoattack-rand,square (autoattack-rand averages each "
        "gradient over 20 draws)"
    ]
