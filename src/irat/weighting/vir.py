"""VIR: vulnerability-aware instance reweighting ("Vulnerability-Aware Instance Reweighting For
Adversarial Training", the [VIR] seed paper; METHODS.md §4.9).

From the natural true-class probability ``p_y(x)`` and ``KL(p(x) ‖ p(x'))`` (both detached):

    S_v = α · exp(−γ · p_y(x))       vulnerability of the natural example, in [α e^{−γ}, α]
    S_d = KL(p(x) ‖ p(x'))           used as a value, ≥ 0
    w   = S_v · S_d + β              so w ≥ β, and w = β exactly when x' = x

**Not normalised** (β is the floor that balances the weights). Defaults: VIR-AT α = 7, γ = 10
(3 for TinyImageNet), β = 0.007; VIR-TRADES α = 8, γ = 3, β = 1.6. KL values below 0 (rounding
only) are clamped to 0.

Shapes: ``true_prob_nat``, ``kl_nat_adv`` [B] → weights [B], detached; ``vir_stats`` takes logits
[B, n] and labels [B].
"""

from __future__ import annotations

import torch
from torch import Tensor

from irat import losses


def vulnerability(true_prob_nat: Tensor, alpha: float, gamma: float) -> Tensor:
    """``S_v = α · exp(−γ · p_y(x))`` [B]."""
    return alpha * torch.exp(-gamma * true_prob_nat.detach())


def vir(true_prob_nat: Tensor, kl_nat_adv: Tensor, alpha: float, gamma: float, beta: float) -> Tensor:
    """VIR weights ``α·exp(−γ·p_y(x))·KL(p(x)‖p(x')) + β`` [B] (no normalisation)."""
    return vulnerability(true_prob_nat, alpha, gamma) * kl_nat_adv.detach().clamp(min=0) + beta


def vir_stats(logits_nat: Tensor, logits_adv: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``(p_y(x), KL(p(x) ‖ p(x')))``, each [B], from natural and adversarial logits [B, n]."""
    z_nat, z_adv = logits_nat.detach(), logits_adv.detach()
    return losses.true_value(z_nat.softmax(1), y), losses.kl(z_nat, z_adv)
