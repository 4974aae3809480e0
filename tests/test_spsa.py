"""SPSA (METHODS.md §3.8): the gradient estimate (exact for a linear loss over all Rademacher
directions, correlated with the true gradient of a smooth model), the Adam step, keep="fooled",
the query batching and the options. The shared invariants of every attack (inside the ball and
[0, 1] near the corners, ε = 0, mode, BatchNorm and parameter gradients untouched, determinism,
a trained model broken) run for ``spsa`` in the table of tests/test_attacks.py."""

import itertools
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from irat.attacks import build, spsa
from irat.attacks.spsa import margin_loss, spsa_gradient

SPSA = sys.modules["irat.attacks.spsa"]


class Linear3(nn.Module):
    """z = (0, w·x, −1): the margin loss of y = 0 is w·x − 0 for w·x > −1, linear in x."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        s = x.flatten(1) @ self.w
        return torch.stack([torch.zeros_like(s), s, torch.full_like(s, -1.0)], 1)


def _all_signs(d, dtype):
    return torch.tensor(list(itertools.product([-1.0, 1.0], repeat=d)), dtype=dtype)  # [2^d, d]


def test_estimate_is_exact_for_a_linear_loss_over_all_rademacher_directions(monkeypatch):
    """(ℓ(x + cv) − ℓ(x − cv)) / 2c = w·v for a linear ℓ, and the mean of (w·v) v over all 2^d
    sign vectors is w (E[v vᵀ] = I)."""
    w = torch.tensor([0.3, -1.2, 0.7, 0.05], dtype=torch.float64)
    model = Linear3(w)
    x = torch.full((2, 1, 2, 2), 0.5, dtype=torch.float64)
    y = torch.zeros(2, dtype=torch.long)
    signs = _all_signs(4, torch.float64)  # 16 directions, the same for both images

    def enumerate_signs(shape, like, generator):
        c = shape[0]
        start = enumerate_signs.used
        enumerate_signs.used += c
        return signs[start : start + c].view(c, 1, 1, 2, 2).expand(shape).clone()

    enumerate_signs.used = 0
    monkeypatch.setattr(SPSA, "rademacher", enumerate_signs)
    # query_batch 12 → chunks of 3 samples: the sum over chunks is the sum over all 16
    g = spsa_gradient(model, x, y, delta=0.01, samples=16, query_batch=12)
    assert torch.allclose(g, w.view(1, 1, 2, 2).expand_as(g), atol=1e-10)


def test_estimate_correlates_with_the_true_gradient_of_a_smooth_model():
    """A tanh MLP (float64): cos(ĝ, ∇ℓ) is high with the default 256 samples in 16 dimensions
    and ≈ 1 with many samples (the estimate is unbiased up to O(c²))."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4)).double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (8,), generator=g)
    xr = x.clone().requires_grad_(True)
    true = torch.autograd.grad(margin_loss(model(xr), y).sum(), xr)[0].flatten(1)
    for samples, bound in ((256, 0.85), (20000, 0.99)):
        est = spsa_gradient(model, x, y, samples=samples, generator=torch.Generator().manual_seed(2))
        cos = F.cosine_similarity(est.flatten(1), true, dim=1)
        assert (cos > bound).all(), (samples, cos)


def test_first_step_is_an_adam_step_of_size_lr_along_the_gradient_sign(monkeypatch):
    """Adam's first step is m̂ / √ŝ = ĝ / |ĝ| = sign(ĝ) (up to 1e-8): x¹ = Π(x + lr·sign(w))."""
    w = torch.tensor([0.3, -1.2, 0.7, 0.05], dtype=torch.float64)
    model = Linear3(w)
    x = torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64)
    y = torch.zeros(1, dtype=torch.long)
    signs = _all_signs(4, torch.float64)
    monkeypatch.setattr(SPSA, "rademacher", lambda shape, like, gen: signs.view(16, 1, 1, 2, 2).clone())
    res = spsa(model, x, y, eps=0.1, steps=1, lr=0.02, samples=16, start="none")
    assert torch.allclose(res.x_adv, x + 0.02 * w.sign().view(1, 1, 2, 2), atol=1e-9)
    # and ε clips it
    res = spsa(model, x, y, eps=0.01, steps=1, lr=0.02, samples=16, start="none")
    assert torch.allclose(res.x_adv, x + 0.01 * w.sign().view(1, 1, 2, 2), atol=1e-12)


def _trained_mlp():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 4, 4, generator=g)
    y = (x.flatten(1)[:, :4].argmax(1)).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x[:16], y[:16]


def test_keep_fooled_returns_a_misclassified_iterate_whenever_one_was_met():
    model, x, y = _trained_mlp()
    kw = dict(eps=0.15, steps=15, samples=16, lr=0.03)
    last = spsa(model, x, y, keep="last", generator=torch.Generator().manual_seed(3), **kw)
    fooled = spsa(model, x, y, keep="fooled", generator=torch.Generator().manual_seed(3), **kw)
    wrong_last = last.logits_adv.argmax(1) != y
    wrong_fooled = fooled.logits_adv.argmax(1) != y
    assert (wrong_fooled | ~wrong_last).all()  # fooled at the end → fooled
    assert wrong_fooled.sum() >= wrong_last.sum() > 0
    with torch.no_grad():
        assert torch.allclose(fooled.logits_adv, model(fooled.x_adv), atol=1e-5)


def test_query_batching_gives_the_same_estimate_for_the_same_draws(monkeypatch):
    """Chunks of 1 sample or all 8 at once: the same directions give the same estimate."""
    model, x, y = _trained_mlp()
    x, y = x[:4], y[:4]
    v = SPSA.rademacher((8, *x.shape), x, torch.Generator().manual_seed(5))

    def fixed(shape, like, generator):
        out = v[fixed.used : fixed.used + shape[0]]
        fixed.used += shape[0]
        return out

    fixed.used = 0
    monkeypatch.setattr(SPSA, "rademacher", fixed)
    a = spsa_gradient(model, x, y, samples=8, query_batch=8)  # chunks of 1
    fixed.used = 0
    b = spsa_gradient(model, x, y, samples=8, query_batch=10_000)
    assert torch.allclose(a, b, atol=1e-6)


def test_build_names():
    a = build("spsa", eps=0.1)
    assert a.func is spsa and a.keywords["steps"] == 100 and a.keywords["keep"] == "fooled"
    g = torch.Generator()
    b = build("spsa-7", eps=0.5, norm="l2", generator=g)
    assert b.keywords["steps"] == 7 and b.keywords["norm"] == "l2" and b.keywords["generator"] is g
    assert (SPSA.LR, SPSA.DELTA, SPSA.SAMPLES) == (0.01, 0.001, 256)  # VIR's settings


@pytest.mark.parametrize(
    "kw, fragment",
    [
        ({"delta": 0.0}, "delta"),
        ({"lr": -1.0}, "lr"),
        ({"samples": 0}, "samples"),
        ({"query_batch": 1}, "query_batch"),
        ({"start": "gauss"}, "start"),
        ({"keep": "best"}, "keep"),
    ],
)
def test_bad_options_give_one_clear_error(kw, fragment):
    model, x, y = _trained_mlp()
    with pytest.raises(ValueError, match=fragment):
        spsa(model, x, y, eps=0.1, steps=1, **kw)


def test_zero_steps_without_a_start_returns_x():
    """§7.1.2: K = 0 with start none gives x' = x."""
    model, x, y = _trained_mlp()
    assert torch.equal(spsa(model, x, y, eps=0.2, steps=0, start="none").x_adv, x)
