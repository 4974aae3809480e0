"""FMN through foolbox (METHODS.md §3.8): minimal norms against the exact distance of a linear
model, robustness at ε ⇔ minimal norm > ε, and the clear error when foolbox is not installed.
The shared invariants of every attack run for ``fmn-K`` in the table of tests/test_attacks.py
(all skipped where foolbox, an optional dependency, is absent)."""

import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from irat.attacks import build, pgd
from irat.attacks.fmn import minimal_norms

FMN = sys.modules["irat.attacks.fmn"]
needs_foolbox = pytest.mark.skipif(
    not FMN.available(), reason="foolbox not installed (pip install 'irat[fmn]')"
)


def test_a_missing_foolbox_gives_one_clear_error_at_build_time(monkeypatch):
    monkeypatch.setattr(FMN.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"foolbox.*pip install 'irat\[fmn\]'"):
        build("fmn-100", eps=0.1)
    with pytest.raises(ValueError, match="at least 1 step"):
        build("fmn-0", eps=0.1)


class TwoClassLinear(nn.Module):
    """z = (0, w·x + b): the exact ℓ∞ distance of x (y = 0, away from the box) to the boundary
    is −(w·x + b) / ‖w‖₁."""

    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = nn.Parameter(w), nn.Parameter(torch.tensor(b))

    def forward(self, x):
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], 1)


@needs_foolbox
def test_minimal_norms_are_at_least_the_exact_distance_and_close_to_it():
    """The point behind each norm is misclassified, so the norm bounds the exact minimal distance
    from above; FMN-100 comes within 2 % of it. PGD-50 does not break any point at 0.98 of the
    exact distance (nothing can) and breaks every point at 1.02 of it."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=g, dtype=torch.float64)
    model = TwoClassLinear(w, -0.2).double()
    x = 0.4 + 0.2 * torch.rand(10, 1, 4, 4, generator=g, dtype=torch.float64)
    s = x.flatten(1) @ w - 0.2
    x, s = x[s < 0], s[s < 0]  # the points classified as 0
    y = torch.zeros(len(s), dtype=torch.long)
    exact = -s / w.abs().sum()
    assert (exact < 0.35).all()  # x ∈ [0.4, 0.6]: the nearest boundary point lies inside the box
    found, norms = minimal_norms(model, x, y, steps=100)
    assert torch.allclose((found - x).flatten(1).abs().amax(1), norms)
    with torch.no_grad():
        assert (model(found).argmax(1) != y).all()
    assert (norms >= exact * (1 - 1e-9)).all()
    assert (norms <= exact * 1.02).all(), norms / exact
    for factor, broken in ((0.98, False), (1.02, True)):
        for i in range(len(y)):
            eps = float(factor * exact[i])
            r = pgd(model, x[i : i + 1], y[i : i + 1], eps=eps, steps=50, step_size=eps / 4, start="none")
            assert bool(r.logits_adv.argmax(1).item() != 0) == broken


def trained_mlp(n: int = 64):
    """A small ReLU network fitted to 4×4 images whose class is the brightest of the first four
    pixels: (model in eval mode, x [n, 1, 4, 4], y [n])."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 4, 4, generator=g)
    y = x.flatten(1)[:, :4].argmax(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y


@needs_foolbox
def test_robust_at_eps_exactly_when_the_minimal_norm_exceeds_eps():
    model, x, y = trained_mlp()
    x, y = x[:24], y[:24]
    _, norms = minimal_norms(model, x, y, steps=30)
    eps = float(norms[torch.isfinite(norms)].median())
    res = build("fmn-30", eps=eps)(model, x, y)
    robust = res.logits_adv.argmax(1) == y
    assert torch.equal(robust, norms > eps)
    assert 0 < robust.sum() < len(y)


def test_summary_of_the_minimal_norm_distribution():
    norms = torch.tensor([0.0, 0.05, 0.1, 0.2, float("inf")])
    s = FMN.summarize(norms, eps=0.08)
    assert s["n"] == 5 and s["found"] == pytest.approx(0.8)
    assert s["q50"] == pytest.approx(0.1) and s["q90"] == float("inf") and s["q10"] == 0.0
    assert s["mean_found"] == pytest.approx(0.0875)
    assert s["robust"] == pytest.approx(0.6)  # 0.1, 0.2 and the failure


@needs_foolbox
def test_evaluate_reports_the_minimal_norm_distribution_beside_fmns_accuracy():
    """``irat.evaluate`` with ``fmn-K`` gives the distribution of the minimal norms (the same as
    ``summarize`` of ``minimal_norms`` on those images, in batches) and FMN's robust share at ε
    matches its accuracy; eval.md shows it. No other attack gets one."""
    import irat

    model, x, y = trained_mlp(40)
    split = SimpleNamespace(x=x, y=y)
    res = irat.evaluate(
        model, split, ["clean", "pgd-5", "fmn-20@30"], eps=0.1, batch_size=16, progress=False, sanity=False
    )
    assert list(res.minimal_norms) == ["fmn-20@30"]
    d = res.minimal_norms["fmn-20@30"]
    _, norms = minimal_norms(model, x[:30], y[:30], steps=20)
    want = FMN.summarize(norms, eps=0.1)
    assert d["n"] == 30 and d["found"] == pytest.approx(want["found"])
    assert d["q50"] == pytest.approx(want["q50"], rel=1e-4)
    assert d["robust"] == pytest.approx(res.accuracy["fmn-20@30"])
    assert "fmn-20@30: minimal linf norms on 30 images" in res.to_markdown()
    assert res.to_dict()["minimal_norms"]["fmn-20@30"]["n"] == 30
