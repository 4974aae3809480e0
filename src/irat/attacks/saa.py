"""SAA, LRAT's simplified targeted APGD-DLR (Local Reweighting for Adversarial Training, seed 001,
§5.1; METHODS.md §3.4, DECISION #14):

1. targets: the ``targets`` = 3 classes with the highest natural logits among ``j ≠ y`` (never y,
   also when x is misclassified; the AutoAttack package would take ranks 2–4 of all classes);
2. for each target t, APGD (``irat.attacks.apgd``) maximising ``dlr_t(z, y, t)`` for ``steps`` = 20
   iterations, one run, no random start;
3. per sample, of the three final points the one with the smallest logit margin
   ``z_y − max_{j≠y} z_j`` (the most adversarial).

The three targets run as one batched attack on 3·B images (rows k·B + i: target k of sample i),
so SAA costs one natural forward plus 3 × (``steps`` input gradients + one forward) of B images.
``keep="best"`` (training) takes each run's highest-loss iterate; ``keep="fooled"`` (evaluation)
takes a misclassified iterate whenever one was met (``irat.attacks.apgd``).

Shapes: ``x`` [B, C, H, W] in [0, 1], ``y`` [B] → ``x_adv`` [B, C, H, W], ``logits_adv`` [B, n].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from irat import losses
from irat.attacks.apgd import apgd
from irat.attacks.mode import eval_mode
from irat.types import AttackResult

TARGETS = 3
STEPS = 20


def top_other_classes(z: Tensor, y: Tensor, k: int) -> Tensor:
    """The ``k`` classes ≠ y with the highest logits, in decreasing order: [B, k] long. The true
    class is masked with −inf, so it is never chosen."""
    is_true = torch.zeros_like(z, dtype=torch.bool).scatter_(1, y[:, None], True)
    return z.masked_fill(is_true, float("-inf")).topk(k, dim=1).indices


def saa(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int = STEPS,
    targets: int = TARGETS,
    norm: str = "linf",
    start: str = "none",
    keep: str = "best",
    generator: torch.Generator | None = None,
) -> AttackResult:
    """SAA: targeted APGD-DLR on the ``targets`` highest-scoring wrong classes at ``x``, ``steps``
    iterations each, batched; returns per sample the final point of smallest logit margin."""
    if int(targets) != targets or targets < 1:
        raise ValueError(f"targets={targets} must be a positive integer")
    with eval_mode(model), torch.no_grad():
        z_nat = model(x)
    n_cls = z_nat.shape[1]
    if n_cls < max(4, targets + 1):
        raise ValueError(
            f"SAA needs at least {max(4, targets + 1)} classes (targeted DLR uses the 4 largest logits "
            f"and {targets} targets ≠ y); the model has {n_cls}"
        )
    b = x.shape[0]
    chosen = top_other_classes(z_nat, y, targets)  # [B, T]
    res = apgd(
        model,
        x.repeat(targets, *([1] * (x.dim() - 1))),
        y.repeat(targets),
        eps=eps,
        steps=steps,
        norm=norm,
        loss="dlr_t",
        target=chosen.t().reshape(-1),
        start=start,
        keep=keep,
        generator=generator,
    )
    z = res.logits_adv.view(targets, b, n_cls)
    margin = losses.margin(res.logits_adv, y.repeat(targets)).view(targets, b)
    pick = margin.argmin(0)  # [B]: the target run that ends most adversarial
    rows = torch.arange(b, device=x.device)
    x_all = res.x_adv.view(targets, *x.shape)
    return AttackResult(x_adv=x_all[pick, rows], logits_adv=z[pick, rows])
