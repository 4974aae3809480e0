"""FMN, the Fast Minimum-Norm attack (Pintor et al., NeurIPS 2021), as VIR evaluates with it
(seed 003, §5.1: FMN-100, ℓ∞; METHODS.md §3.8), through foolbox 3.3's ``LInfFMNAttack`` /
``L2FMNAttack`` (wrapped, not copied; foolbox is an optional dependency, ``pip install
'irat[fmn]'``, imported only when an FMN attack runs).

FMN searches for the *smallest* perturbation that misclassifies each point, with no ε: it steps
along the normalised gradient of the logit difference and shrinks (after a success) or grows
(after a failure) an adaptive radius, ``steps`` = 100 iterations, keeping the smallest
adversarial perturbation found.

* ``minimal_norms(model, x, y)`` → the adversarial points foolbox found and their distance
  ‖x' − x‖ [B] (ℓ∞ or ℓ2; ``inf`` where no misclassified point was found; 0 for a point
  misclassified as it is). The distance is an upper bound of the true minimal distance of x to
  the decision boundary (the point it belongs to is misclassified, checked by one forward here).
* ``fmn(model, x, y, eps=...)``, the attack at radius ε: a point counts as robust when its minimal
  norm exceeds ε or the attack failed (the spec's rule). ``x_adv`` is the found point, projected
  onto the threat model (a no-op up to rounding) where its norm is ≤ ε, else x itself.

The model runs in eval mode with its parameters frozen (foolbox calls ``.backward()``), and both
are restored afterwards. Shapes: ``x`` [B, C, H, W] in [0, 1], ``y`` [B].
"""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor, nn

from irat.attacks.mode import eval_mode, frozen_parameters
from irat.attacks.threat import threat
from irat.types import AttackResult

STEPS = 100
INSTALL = "pip install 'irat[fmn]' (or pip install 'foolbox==3.3.*')"


def available() -> bool:
    """Whether foolbox can be imported (without importing it)."""
    return importlib.util.find_spec("foolbox") is not None


def require() -> None:
    """``ValueError`` saying how to install foolbox when it is missing (raised by ``build`` for
    the ``fmn`` names, so a config naming FMN fails before anything is written)."""
    if not available():
        raise ValueError(f"the FMN attack needs the foolbox package, which is not installed: {INSTALL}")


def minimal_norms(
    model: nn.Module, x: Tensor, y: Tensor, *, steps: int = STEPS, norm: str = "linf"
) -> tuple[Tensor, Tensor]:
    """FMN's adversarial points [B, C, H, W] and their distances to ``x`` [B] in ``norm``
    (``inf`` where the point foolbox returns is classified correctly)."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps={steps} must be a positive integer")
    ball = threat(norm, 0.0)  # validates the norm; its distance() is all that is used
    require()
    import foolbox  # lazy: an optional dependency

    make = foolbox.attacks.LInfFMNAttack if ball.norm == "linf" else foolbox.attacks.L2FMNAttack
    x = x.detach()
    with eval_mode(model), frozen_parameters(model):
        fmodel = foolbox.PyTorchModel(model, bounds=(0.0, 1.0), device=x.device)
        found = make(steps=int(steps)).run(fmodel, x, foolbox.criteria.Misclassification(y))
        found = found.detach().clamp(0.0, 1.0)
        with torch.no_grad():
            fooled = model(found).argmax(1) != y
    dist = ball.distance(found, x)
    return found, torch.where(fooled, dist, torch.full_like(dist, float("inf")))


QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def summarize(norms: Tensor, eps: float | None = None) -> dict[str, float]:
    """The distribution of FMN's minimal norms [N] (``inf``: not found): ``n``, ``found`` (share
    with a finite norm), the quantiles ``q10`` … ``q90`` over all points (``inf`` when a quantile
    falls among the failures), ``mean_found`` (mean of the finite ones, NaN if none) and, with
    ``eps``, ``robust`` = the share with norm > ε (FMN's robust accuracy on correctly classified
    and misclassified points alike: a misclassified point has norm 0)."""
    v = norms.detach().double().cpu()
    finite = torch.isfinite(v)
    out = {"n": float(len(v)), "found": finite.double().mean().item() if len(v) else float("nan")}
    ordered = v.sort().values
    for q in QUANTILES:
        out[f"q{round(100 * q)}"] = (
            ordered[min(len(v) - 1, int(q * len(v)))].item() if len(v) else float("nan")
        )
    out["mean_found"] = v[finite].mean().item() if finite.any() else float("nan")
    if eps is not None:
        out["robust"] = (v > eps).double().mean().item() if len(v) else float("nan")
    return out


def batched_norms(
    model: nn.Module, x: Tensor, y: Tensor, *, steps: int = STEPS, norm: str = "linf", batch_size=None
) -> Tensor:
    """FMN's minimal norms [N] (CPU; ``inf``: not found) of ``x`` [N, C, H, W] (``y`` [N]), found
    ``batch_size`` images at a time (None: the evaluation's default batch); ``summarize`` gives
    their distribution, which ``irat.evaluate`` reports beside the accuracy of an ``fmn-K``
    attack."""
    from irat.evaluation.robust import batches  # evaluation's batching; imported here: no cycle

    norms = [
        minimal_norms(model, xb, yb, steps=steps, norm=norm)[1].cpu() for xb, yb in batches(x, y, batch_size)
    ]
    return torch.cat(norms) if norms else torch.empty(0)


def fmn(
    model: nn.Module, x: Tensor, y: Tensor, *, eps: float, steps: int = STEPS, norm: str = "linf"
) -> AttackResult:
    """FMN at radius ``eps``: broken where the minimal norm found is ≤ ε (module docstring)."""
    ball = threat(norm, eps)
    found, dist = minimal_norms(model, x, y, steps=steps, norm=norm)
    broken = (dist <= eps).view(-1, *([1] * (x.dim() - 1)))
    x_adv = torch.where(broken, ball.project(found, x), x.detach())
    with eval_mode(model), torch.no_grad():
        logits = model(x_adv)
    return AttackResult(x_adv=x_adv, logits_adv=logits)
