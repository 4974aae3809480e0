"""WMMR: weighted margin-aware minimax risk (Zeng et al., "Are Adversarial Examples Created
Equal? A Learnable Weighted Minimax Risk for Robustness under Non-uniform Attacks", AAAI 2021;
the BiLAW paper's baseline; METHODS.md §4.7).

Raw weight from the probabilistic margin ``m_i = pm(p(x'_i), y_i) ∈ [−1, 1]`` (on the adversarial
example by default; ``wmmr.margin_on = nat`` uses x):

    ω_raw = exp(−α · m)

strictly decreasing in m for α > 0; α = 0 gives ones. After ``normalize_to_batch`` (applied by
``weighting.make("wmmr")``) the weights equal ``B · softmax(−α m)``. Default α_train = 0.1; the
paper's α_test has no role in training and is ignored.

Shapes: ``margin`` [B] → weights [B], detached.
"""

from __future__ import annotations

from torch import Tensor


def wmmr(margin: Tensor, alpha: float) -> Tensor:
    """Raw WMMR weights ``exp(−α·margin)`` [B] for margins [B] (detached)."""
    return (-alpha * margin.detach()).exp()
