"""Checks that expose gradient masking and broken evaluations (DESIGN.md: "Rules that keep it
trustworthy"). Each check is a pure function of accuracies and returns warning strings; the
caller prints them loudly.

* robust accuracy above clean accuracy;
* a stronger attack weaker than a weaker one (FGSM ≥ PGD ≥ AutoAttack, PGD-k non-increasing in
  k at one step size, CW-k ≥ AutoAttack, single AutoAttack components ≥ the full cascade);
* accuracy rising as ε grows, or not falling at all from the smallest to the largest ε of the
  sweep (at 4ε every undefended point should fall; a flat curve means the gradients are useless).
"""

from __future__ import annotations

from irat.attacks.build import ITERATIVE


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
            "a working attack drives accuracy towards 0 as the radius grows (gradient masking?)"
        )
    return warnings
