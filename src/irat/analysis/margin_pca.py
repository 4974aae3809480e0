"""BiLAW's view of its weights (seed 000; METHODS.md §4.11): the weight network maps the
multi-class margin vector Δ(x) = (p_y(x) − p_j(x))_j to a weight, so the weights should vary
smoothly over the space of margin vectors. The analysis projects the margin vectors of the first N
training images onto their first two principal components and colours each point by its recorded
weight (any run: for a non-learned scheme it shows how that scheme's weights sit in the same
space).

``margin_vectors(model, x, y)`` → Δ [N, n] at x (BiLAW's default input, DECISION #16) from the
checkpoint in eval mode; ``pca2(v)`` → the [N, 2] projection on the two leading principal
components of the centred vectors and their shares of the variance.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from irat import losses
from irat.attacks.mode import eval_mode
from irat.evaluation.robust import batches


def margin_vectors(
    model: torch.nn.Module, x: Tensor, y: Tensor, *, batch_size: int | None = None
) -> np.ndarray:
    """BiLAW's Δ_j = p_y(x) − p_j(x) [N, n] (Δ_y = 0), eval mode, in batches."""
    parts = []
    with eval_mode(model), torch.no_grad():
        for xb, yb in batches(x, y, batch_size):
            parts.append(losses.mc_margin(torch.softmax(model(xb), 1), yb))
    return torch.cat(parts).double().cpu().numpy()


def pca2(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(projection [N, 2], explained-variance shares [2]) of the rows of ``v`` [N, d] on the two
    leading principal components (SVD of the centred matrix; zeros where there are fewer)."""
    centred = v - v.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    proj = np.zeros((len(v), 2))
    k = min(2, vt.shape[0])
    proj[:, :k] = centred @ vt[:k].T
    total = float((s**2).sum())
    shares = np.zeros(2)
    if total > 0:
        shares[:k] = s[:k] ** 2 / total
    return proj, shares
