"""Adversarial fine-tuning of the hard-instance paper (Section 6.2; METHODS.md §4.12):

    L = mean_i w_i·[ce(f(x'_i), y_i) + λ·KL(p(x_i) ‖ p(x'_i))]

``w`` [B] (mean 1; the paper's "sum to 1" gives the same loss) multiplies both terms: the RW
weights ``p_y(x')`` or ones. ``λ`` (``train.trade_off``) = 6 with the KL term, 0 without it (then
the loss is AT's and no natural forward is needed). p(x) is not detached (the TRADES convention;
``hard.detach_clean`` detaches it). With w ≡ 1 and λ = 0 it is AT; with w ≡ 1 and λ = 6 it is
``mean[ce(x') + 6·KL(p(x) ‖ p(x'))]``. ``y`` [B] labels, or soft targets [B, n].
"""

from __future__ import annotations

from torch import Tensor

from irat.losses import ce, kl


def finetune(
    logits_nat: Tensor | None,
    logits_adv: Tensor,
    y: Tensor,
    w: Tensor,
    *,
    lam: float = 6.0,
    detach_clean: bool = False,
) -> tuple[Tensor, Tensor]:
    """Returns ``(loss, per_sample)``; logits [B, n] (``logits_nat`` may be None when λ = 0)."""
    per_sample = ce(logits_adv, y)
    if lam:
        z_nat = logits_nat.detach() if detach_clean else logits_nat
        per_sample = per_sample + lam * kl(z_nat, logits_adv)
    per_sample = w * per_sample
    return per_sample.mean(), per_sample
