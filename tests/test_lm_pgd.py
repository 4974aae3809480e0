"""LM-PGD (METHODS.md §3.5): against a per-sample reference loop written the paper's way, a
hand-computed two-class linear model, the path record and the cost. The shared invariants of
every attack (inside the ball and [0, 1] near the corners, ε = 0, mode, BatchNorm and parameter
gradients untouched, determinism, a trained model broken) run for ``lm-pgd`` in the table of
tests/test_attacks.py."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from irat.attacks import build, lm_pgd, pgd
from irat.attacks.lm_pgd import ALPHA_MAX, ALPHA_MIN


def _trained(seed=0):
    """A float64 MLP on 2 × 3 × 3 inputs, 3 classes, trained for a few steps on random data."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(48, 1, 3, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (48,), generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval(), x[:12], y[:12]


def _reference(model, x, y, eps, steps, gamma, a_max, a_min, warm, grid):
    """The paper's Eq. 12–14, one sample and one grid point at a time (ℓ∞, CE)."""
    out = []
    for i in range(len(y)):
        xi, yi = x[i : i + 1], y[i : i + 1]
        delta, v = torch.zeros_like(xi), torch.zeros_like(xi)
        first = None
        for t in range(steps + 1):
            with torch.no_grad():
                if first is None and model(xi + delta).argmax(1).item() != yi.item():
                    first = t
            if t == steps:
                break
            d = delta.clone().requires_grad_(True)
            g = torch.autograd.grad(F.cross_entropy(model(xi + d), yi), d)[0].sign()
            lo = a_min if t + 1 <= warm else 0.0
            best, best_alpha = -math.inf, None
            for alpha in torch.linspace(lo, a_max, grid, dtype=x.dtype).tolist():
                cand = _proj(delta + gamma * v + alpha * g, xi, eps)
                with torch.no_grad():
                    val = F.cross_entropy(model(xi + cand), yi).item()
                if val > best:
                    best, best_alpha = val, alpha
            v = gamma * v + best_alpha * g
            delta = _proj(delta + v, xi, eps)
        out.append((xi + delta, steps if first is None else first))
    return torch.cat([o[0] for o in out]), torch.tensor([o[1] for o in out])


def _proj(delta, x, eps):
    return (x + delta.clamp(-eps, eps)).clamp(0, 1) - x


@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_matches_the_per_sample_reference_of_the_paper(eps):
    model, x, y = _trained()
    kw = dict(steps=12, gamma=0.8, alpha_max=0.04, alpha_min=0.02, warm=5, grid=5)
    res = lm_pgd(model, x, y, eps=eps, **kw)
    ref_x, ref_first = _reference(model, x, y, eps, kw["steps"], 0.8, 0.04, 0.02, 5, 5)
    assert torch.allclose(res.x_adv, ref_x, atol=1e-12)
    assert torch.equal(res.first_wrong, ref_first)
    with torch.no_grad():
        assert torch.allclose(res.logits_adv, model(res.x_adv), atol=1e-12)
        assert torch.allclose(res.logits_nat, model(x), atol=1e-12)


class TwoClassLinear(nn.Module):
    """z = (0, w·x): the CE of y = 0 grows along sign(w) at every point, so the line search
    always picks α_max."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        s = x.flatten(1) @ self.w
        return torch.stack([torch.zeros_like(s), s], 1)


def test_two_class_linear_model_hand_computed_momentum_path():
    """With α = α_max every step: v¹ = a s, v² = (1.8) a s, v³ = (2.44) a s and
    δᵗ = clip(δᵗ⁻¹ + vᵗ, −ε, ε), s = sign(w)."""
    w = torch.tensor([1.0, -2.0, 0.5, -0.1], dtype=torch.float64)
    model = TwoClassLinear(w)
    x = torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64)
    y = torch.zeros(1, dtype=torch.long)
    a, eps = 0.01, 0.06
    s = w.sign().view(1, 1, 2, 2)
    for steps, expected in [(1, 0.01), (2, 0.028), (3, 0.0524), (4, 0.06)]:
        res = lm_pgd(model, x, y, eps=eps, steps=steps, alpha_max=a, alpha_min=0.0, grid=3)
        assert torch.allclose(res.x_adv, x + expected * s, atol=1e-12), steps


class Constant(nn.Module):
    """Logits that do not depend on x (but still have an input gradient of zero)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1) + self.scale * x.flatten(1).sum(1, keepdim=True)


def test_path_record_for_a_model_whose_prediction_never_changes():
    """§7.1.6 on LM-PGD: first_wrong (LPS) = T and κ = T when correct, 0 and 0 when wrong; the
    first-wrong iterate of a never-fooled point is x^(T) and is classified correctly."""
    model = Constant(torch.tensor([[2.0, 0.0, 1.0]]))
    x = torch.rand(4, 1, 2, 2)
    y = torch.tensor([0, 1, 0, 2])
    res = lm_pgd(model, x, y, eps=0.1, steps=7)
    assert res.first_wrong.tolist() == [7, 0, 7, 0]
    assert res.steps_to_flip.tolist() == [7, 0, 7, 0]
    assert torch.equal(res.logits_first_wrong.argmax(1) != y, torch.tensor([False, True, False, True]))


def test_lps_is_the_first_misclassified_iterate_and_keep_fooled_returns_it():
    model, x, y = _trained(1)
    eps = 0.3
    last = lm_pgd(model, x, y, eps=eps, steps=10, keep="last")
    fooled = lm_pgd(model, x, y, eps=eps, steps=10, keep="fooled")
    found = last.logits_first_wrong.argmax(1) != y
    assert found.any()
    assert (last.first_wrong[~found] == 10).all()
    assert (last.first_wrong <= 10).all() and (last.first_wrong >= 0).all()
    assert (last.steps_to_flip <= last.first_wrong).all()  # κ counts correct iterates before x^(T)
    # the first-wrong iterate is misclassified; keep="fooled" returns it
    assert torch.equal(fooled.x_adv[found], last.x_first_wrong[found])
    assert torch.equal(fooled.x_adv[~found], last.x_adv[~found])
    # LPS under LM-PGD equals the first flip of its own path, rerun with steps = LPS
    for i in torch.nonzero(found).flatten().tolist():
        k = int(last.first_wrong[i])
        short = lm_pgd(model, x[i : i + 1], y[i : i + 1], eps=eps, steps=k, keep="last")
        assert short.logits_adv.argmax(1).item() != y[i].item()


def test_cost_one_gradient_and_grid_forwards_per_iteration():
    model, x, y = _trained()
    seen = []
    hook = model[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    lm_pgd(model, x, y, eps=0.1, steps=6, grid=4)
    hook.remove()
    b = len(y)
    assert seen == [b] + [4 * b, b] * 5 + [4 * b]  # x^(0..5) gradients, 6 line searches, no more


def test_build_names_and_step_option():
    eps = 0.1
    a = build("lm-pgd", eps=eps)
    assert a.func is lm_pgd and a.keywords["steps"] == 50 and a.keywords["keep"] == "fooled"
    assert a.keywords["alpha_max"] == ALPHA_MAX and a.keywords["alpha_min"] == ALPHA_MIN
    b = build("lm-pgd-20:0.75*eps", eps=eps, norm="l2")
    assert b.keywords["steps"] == 20 and b.keywords["norm"] == "l2"
    assert b.keywords["alpha_max"] == pytest.approx(0.075)
    assert b.keywords["alpha_min"] == pytest.approx(0.05)
    # at ε = 8/255 the ε-relative setting is the paper's
    c = build("lm-pgd-50:0.75*eps", eps=8 / 255)
    assert c.keywords["alpha_max"] == pytest.approx(ALPHA_MAX)
    assert c.keywords["alpha_min"] == pytest.approx(ALPHA_MIN)


@pytest.mark.parametrize(
    "kw, fragment",
    [
        ({"gamma": 1.0}, "gamma"),
        ({"alpha_min": 0.1, "alpha_max": 0.01}, "alpha_min"),
        ({"grid": 0}, "grid"),
        ({"loss": "kl"}, "loss"),
        ({"keep": "best"}, "keep"),
        ({"steps": -1}, "steps"),
    ],
)
def test_bad_options_give_one_clear_error(kw, fragment):
    model, x, y = _trained()
    with pytest.raises(ValueError, match=fragment):
        lm_pgd(model, x, y, eps=0.1, **kw)


def test_lps_depends_on_the_attack_path():
    """MAIL's point on a trained model: LPS under PGD and under LM-PGD differ on some points."""
    model, x, y = _trained(2)
    eps = 0.3
    p = pgd(model, x, y, eps=eps, steps=10, step_size=eps / 10, start="none", record_path=True)
    lm = lm_pgd(model, x, y, eps=eps, steps=10)
    assert not torch.equal(p.first_wrong, lm.first_wrong)


def test_zero_steps_returns_x_with_its_record():
    """§7.1.2: K = 0 from δ⁰ = 0 is x itself; LPS is 0 for a misclassified x and T = 0 otherwise."""
    model, x, y = _trained()
    res = lm_pgd(model, x, y, eps=0.3, steps=0)
    assert torch.equal(res.x_adv, x) and torch.equal(res.first_wrong, torch.zeros_like(y))
    with torch.no_grad():
        assert torch.allclose(res.logits_adv, model(x))
