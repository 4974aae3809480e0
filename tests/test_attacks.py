"""Attacks against the invariants of METHODS.md §7.1, a trained toy model, hand-made models with a
known answer and a slow per-sample reference loop for the path record (κ, first wrong iterate)."""

import copy
import functools
import logging
import re

import pytest
import torch
from torch import nn

from irat import attacks, losses
from irat.attacks import L2, Linf, build, cw_attack, fgsm, lm_pgd, pgd, saa, spsa, threat
from irat.attacks.fmn import available as fmn_available

EPS = {"linf": 0.4, "l2": 1.5}
NEEDS_FOOLBOX = pytest.mark.skipif(
    not fmn_available(), reason="foolbox not installed (pip install 'irat[fmn]')"
)


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


# (name, norm, factory(eps, generator) -> attack(model, x, y))
ATTACKS = [
    ("fgsm", "linf", lambda eps, g: functools.partial(fgsm, eps=eps)),
    (
        "pgd10-linf",
        "linf",
        lambda eps, g: functools.partial(pgd, eps=eps, steps=10, step_size=eps / 4, generator=g),
    ),
    (
        "pgd10-l2",
        "l2",
        lambda eps, g: functools.partial(pgd, eps=eps, steps=10, step_size=eps / 4, norm="l2", generator=g),
    ),
    ("cw10", "linf", lambda eps, g: functools.partial(cw_attack, eps=eps, steps=10, generator=g)),
    (
        "pgd10-kl",
        "linf",
        lambda eps, g: functools.partial(
            pgd, eps=eps, steps=10, step_size=eps / 4, loss="kl", start="gauss_small", generator=g
        ),
    ),
    ("apgd-ce", "linf", lambda eps, g: build("apgd-ce", eps=eps, seed=int(g.initial_seed()))),
    ("apgd-ce-20", "linf", lambda eps, g: build("apgd-ce-20", eps=eps, generator=g)),
    ("apgd-dlr-20-l2", "l2", lambda eps, g: build("apgd-dlr-20", eps=eps, norm="l2", generator=g)),
    ("saa", "linf", lambda eps, g: build("saa", eps=eps)),
    ("saa-l2-train", "l2", lambda eps, g: functools.partial(saa, eps=eps, norm="l2")),
    ("lm-pgd", "linf", lambda eps, g: build("lm-pgd-30:eps/8", eps=eps)),
    (
        "lm-pgd-l2-last",
        "l2",
        lambda eps, g: functools.partial(
            lm_pgd, eps=eps, steps=30, norm="l2", alpha_max=eps / 8, alpha_min=eps / 12
        ),
    ),
    (
        "spsa",
        "linf",
        lambda eps, g: functools.partial(
            spsa, eps=eps, steps=20, samples=16, lr=eps / 8, keep="fooled", generator=g
        ),
    ),
    (
        "spsa-l2-last",
        "l2",
        lambda eps, g: functools.partial(
            spsa, eps=eps, steps=20, samples=16, lr=eps / 8, norm="l2", generator=g
        ),
    ),
    pytest.param("fmn-30", "linf", lambda eps, g: build("fmn-30", eps=eps), marks=NEEDS_FOOLBOX),
    pytest.param("fmn-30-l2", "l2", lambda eps, g: build("fmn-30", eps=eps, norm="l2"), marks=NEEDS_FOOLBOX),
]
IDS = [a.values[0] if hasattr(a, "values") else a[0] for a in ATTACKS]
AA_POINTS = 12  # AutoAttack runs on a handful of points only


def _n_points(name, n):
    return min(n, AA_POINTS) if name == "apgd-ce" else n


def _toy_data(n, seed):
    """4 classes of 1×4×4 images: the quadrant of class c is bright (0.8), the others dark (0.2),
    plus U(−0.15, 0.15) noise. Separable with a wide margin."""
    g = _generator(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.full((n, 1, 4, 4), 0.2)
    for c in range(4):
        r, col = divmod(c, 2)
        x[y == c, :, 2 * r : 2 * r + 2, 2 * col : 2 * col + 2] = 0.8
    x = (x + 0.3 * torch.rand(x.shape, generator=g) - 0.15).clamp(0, 1)
    return x, y


def _mlp(bn=False, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Flatten(), nn.Linear(16, 64)]
    if bn:
        layers.append(nn.BatchNorm1d(64))
    layers += [nn.ReLU(), nn.Linear(64, 4)]
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def trained():
    """A tiny MLP trained to ~100 % on the toy problem, and held-out points."""
    x, y = _toy_data(256, seed=1)
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    model.eval()
    x_test, y_test = _toy_data(200, seed=2)
    return model, x_test, y_test


def _accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


# ---------------------------------------------------------------- table-driven invariants


@pytest.mark.parametrize("name,norm,make", ATTACKS, ids=IDS)
def test_output_inside_ball_and_box_near_corners(name, norm, make):
    """§7.1.1 with x at and near the box corners, so the clipping is active."""
    g = _generator(0)
    n = _n_points(name, 64)
    corners = torch.tensor([0.0, 0.01, 0.99, 1.0])
    x = corners[torch.randint(0, 4, (n, 1, 4, 4), generator=g)]
    y = torch.randint(0, 4, (n,), generator=g)
    model = _mlp(seed=3).eval()
    eps = EPS[norm]
    res = make(eps, _generator(0))(model, x, y)
    assert res.x_adv.shape == x.shape
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    if norm == "linf":
        assert (res.x_adv - x).abs().max() <= eps + 1e-6
    else:
        assert (res.x_adv - x).flatten(1).norm(dim=1).max() <= eps * (1 + 1e-6)
    assert not torch.equal(res.x_adv, x)  # the attack did move
    with torch.no_grad():
        assert torch.allclose(res.logits_adv, model(res.x_adv), atol=1e-5)


@pytest.mark.parametrize("name,norm,make", ATTACKS, ids=IDS)
def test_deterministic_under_the_same_seed(name, norm, make, trained):
    model, x, y = trained
    n = _n_points(name, 64)
    a = make(EPS[norm] / 2, _generator(7))(model, x[:n], y[:n])
    b = make(EPS[norm] / 2, _generator(7))(model, x[:n], y[:n])
    assert torch.equal(a.x_adv, b.x_adv)


@pytest.mark.parametrize("name,norm,make", ATTACKS, ids=IDS)
def test_lowers_accuracy_of_a_trained_model(name, norm, make, trained):
    model, x, y = trained
    n = _n_points(name, len(y))
    x, y = x[:n], y[:n]
    clean = _accuracy(model, x, y)
    res = make(EPS[norm], _generator(0))(model, x, y)
    robust = (res.logits_adv.argmax(1) == y).float().mean().item()
    assert clean >= 0.95
    assert robust <= 0.25, f"{name}: accuracy {clean:.2f} → {robust:.2f}"


@pytest.mark.parametrize("name,norm,make", ATTACKS, ids=IDS)
def test_eps_zero_returns_x(name, norm, make, trained):
    """§7.1.2: ε = 0 gives x' = x whatever the steps and the start."""
    model, x, y = trained
    n = _n_points(name, 32)
    res = make(0.0, _generator(0))(model, x[:n], y[:n])
    assert torch.equal(res.x_adv, x[:n])


@pytest.mark.parametrize("name,norm,make", ATTACKS, ids=IDS)
def test_mode_bn_stats_and_param_grads_untouched(name, norm, make):
    """§7.1.5 with a BatchNorm model in train mode (and one submodule left in eval mode)."""
    x, y = _toy_data(_n_points(name, 32), seed=4)
    model = _mlp(bn=True, seed=5)
    with torch.no_grad():  # non-trivial running statistics
        model.train()(torch.rand(64, 1, 4, 4))
    model.train()
    model[-1].eval()
    bn = model[2]
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    make(EPS[norm], _generator(0))(model, x, y)
    assert model.training and all(m.training for m in list(model)[:-1]) and not model[-1].training
    for k, v in bn.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())
    # and existing gradients are left as they are
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    make(EPS[norm], _generator(0))(model, x, y)
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())


# ---------------------------------------------------------------- threat models (§7.1.2, §7.1.3)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("start", ["uniform", "gauss_small", "none"])
@pytest.mark.parametrize("steps", [0, 3])
def test_pgd_eps_zero_is_identity(norm, start, steps, trained):
    model, x, y = trained
    res = pgd(
        model, x, y, eps=0.0, steps=steps, step_size=0.1, norm=norm, start=start, generator=_generator()
    )
    assert torch.equal(res.x_adv, x)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_zero_steps_no_start_is_identity(norm, trained):
    model, x, y = trained
    res = pgd(model, x, y, eps=0.3, steps=0, step_size=0.1, norm=norm, start="none", record_path=True)
    assert torch.equal(res.x_adv, x)
    assert (res.steps_to_flip == 0).all() and (res.first_wrong == 0).all()
    with torch.no_grad():
        assert torch.equal(res.logits_adv, model(x))


def test_uniform_start_linf_fills_the_ball_and_stays_in_the_box():
    eps = 0.1
    x = torch.cat([torch.zeros(200, 1, 4, 4), torch.full((200, 1, 4, 4), 0.5), torch.ones(200, 1, 4, 4)])
    x0 = Linf(eps).random_start(x, "uniform", _generator())
    d = x0 - x
    assert x0.min() >= 0 and x0.max() <= 1 and d.abs().max() <= eps + 1e-7
    mid = d[200:400]  # no clipping at 0.5: U(−ε, ε)
    assert mid.min() < -0.99 * eps and mid.max() > 0.99 * eps
    assert abs(mid.mean().item()) < 0.01 and abs(mid.std().item() - eps / 3**0.5) < 0.005
    assert (d[:200] >= 0).all() and (d[400:] <= 0).all()


def test_uniform_start_l2_within_ball():
    eps = 0.5
    x = torch.rand(500, 3, 4, 4)
    x0 = L2(eps).random_start(x, "uniform", _generator())
    norms = (x0 - x).flatten(1).norm(dim=1)
    assert x0.min() >= 0 and x0.max() <= 1 and norms.max() <= eps * (1 + 1e-6)
    assert norms.max() > 0.5 * eps


def test_gauss_small_std():
    x = torch.full((100, 3, 8, 8), 0.5)
    d = threat("linf", 1.0).random_start(x, "gauss_small", _generator()) - x
    assert abs(d.std().item() - 0.001) < 0.00005 and abs(d.mean().item()) < 0.0001


def test_random_start_is_reproducible_and_none_is_x():
    x = torch.rand(4, 1, 4, 4)
    a = Linf(0.1).random_start(x, "uniform", _generator(3))
    b = Linf(0.1).random_start(x, "uniform", _generator(3))
    assert torch.equal(a, b)
    assert torch.equal(Linf(0.1).random_start(x, "none"), x)


def test_l2_step_is_per_sample_normalised_and_linf_projection():
    x = torch.full((2, 1, 2, 2), 0.5)
    g = torch.tensor([[1.0, 0, 0, 0], [3.0, 4.0, 0, 0]]).view(2, 1, 2, 2)
    step = L2(1.0).step(x, g, 0.1) - x
    assert torch.allclose(step.flatten(1).norm(dim=1), torch.full((2,), 0.1))
    assert torch.allclose(Linf(0.1).step(x, g, 0.1) - x, 0.1 * g.sign())
    # ℓ∞ ball and box: x = 0.95, x' = 1.2 → 1.0 (the box); x' = 0.7 → 0.85 (the ball). For ℓ∞ the
    # two clamps commute; the order matters for ℓ2 (next test)
    x = torch.full((1, 1, 1, 1), 0.95)
    assert Linf(0.1).project(torch.full_like(x, 1.2), x).item() == 1.0
    assert Linf(0.1).project(torch.full_like(x, 0.7), x).item() == pytest.approx(0.85)


def test_l2_projection_projects_before_clipping():
    # δ = (1, 1) shrinks to ε·(1, 1)/√2 = (0.354, 0.354), then the box clips 1.254 to 1
    x = torch.tensor([0.9, 0.5]).view(1, 1, 1, 2)
    out = L2(0.5).project(torch.tensor([1.9, 1.5]).view(1, 1, 1, 2), x)
    assert torch.allclose(out.flatten(), torch.tensor([1.0, 0.5 + 0.5 / 2**0.5]), atol=1e-6)


def test_threat_factory_and_errors():
    assert isinstance(threat("Linf", 0.1), Linf) and isinstance(threat("L2", 0.1), L2)
    with pytest.raises(ValueError, match="norm"):
        threat("l1", 0.1)
    with pytest.raises(ValueError, match="eps"):
        threat("linf", -0.1)
    with pytest.raises(ValueError, match="start"):
        Linf(0.1).random_start(torch.zeros(1, 1, 1, 1), "gaussian")
    with pytest.raises(ValueError, match="loss"):
        pgd(
            _mlp(),
            torch.zeros(1, 1, 4, 4),
            torch.zeros(1, dtype=torch.long),
            eps=0.1,
            steps=1,
            step_size=0.1,
            loss="mse",
        )


# ---------------------------------------------------------------- §7.1.4: two-class linear model


class Linear2(nn.Module):
    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = nn.Parameter(w), nn.Parameter(b)

    def forward(self, x):
        return x.flatten(1) @ self.w.T + self.b


def test_two_class_linear_model_moves_to_the_corner():
    g = _generator(11)
    eps = 0.1
    w = torch.randn(2, 8, generator=g, dtype=torch.float64)
    model = Linear2(w, torch.randn(2, generator=g, dtype=torch.float64))
    x = eps + (1 - 2 * eps) * torch.rand(16, 1, 2, 4, generator=g, dtype=torch.float64)
    y = torch.zeros(16, dtype=torch.long)
    expected = x + eps * (w[1] - w[0]).sign().view(1, 1, 2, 4)
    for steps, step in [(10, eps / 4), (4, eps / 4), (1, eps)]:
        res = pgd(model, x, y, eps=eps, steps=steps, step_size=step, start="none")
        assert torch.allclose(res.x_adv, expected, atol=1e-12)
    # FGSM is that single step
    assert torch.allclose(fgsm(model, x, y, eps=eps).x_adv, expected, atol=1e-12)


# ---------------------------------------------------------------- §7.1.6: path record


class Constant(nn.Module):
    """Logits independent of x (x multiplied by 0): the prediction never changes."""

    def __init__(self, n=3, top=1):
        super().__init__()
        self.lin = nn.Linear(4, n)
        self.bias = torch.zeros(n)
        self.bias[top] = 5.0

    def forward(self, x):
        return self.lin(0 * x.flatten(1)) * 0 + self.bias


@pytest.mark.parametrize("start", ["uniform", "none"])
def test_kappa_for_a_model_whose_prediction_never_changes(start):
    k = 7
    x = torch.rand(9, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 1, 1, 0, 2, 1, 0])
    res = pgd(
        Constant(),
        x,
        y,
        eps=0.2,
        steps=k,
        step_size=0.05,
        start=start,
        record_path=True,
        generator=_generator(),
    )
    correct = y == 1
    assert res.steps_to_flip.dtype == torch.long
    assert torch.equal(res.steps_to_flip, torch.where(correct, k, 0))
    assert torch.equal(res.first_wrong, torch.where(correct, k, 0))
    # wrong from the start: the first wrong iterate is x^(0); never wrong: x^(K)
    assert torch.equal(res.x_first_wrong, res.x_adv)  # zero gradient: every iterate is x^(0)


class Threshold1D(nn.Module):
    """Two classes on a scalar pixel: z = (0, a·(x − 0.5)); class 1 iff x > 0.5."""

    def forward(self, x):
        s = 10.0 * (x.flatten(1)[:, :1] - 0.5)
        return torch.cat([torch.zeros_like(s), s], 1)


def _reference_1d(x0, y, eps, step, steps):
    """Slow per-sample loop: the CE gradient pushes class-0 points up and class-1 points down by
    exactly ``step`` per iteration (sign step), then Π. Returns κ, first wrong k, x_first, x_K."""
    out = []
    for xi, yi in zip(x0.tolist(), y.tolist()):
        direction = 1.0 if yi == 0 else -1.0
        xk, kappa, first, x_first = xi, 0, steps, None
        for k in range(steps + 1):
            pred = 1 if xk > 0.5 else 0
            if pred != yi and x_first is None:
                first, x_first = k, xk
            if k == steps:
                break
            kappa += pred == yi
            xk = min(max(min(max(xk + step * direction - xi, -eps), eps) + xi, 0.0), 1.0)
        out.append((kappa, first, xk if x_first is None else x_first, xk))
    return out


def test_kappa_matches_a_hand_made_model_with_known_flip_step():
    g = _generator(5)
    n, eps, step, steps = 64, 0.25, 0.03, 10
    x = 0.2 + 0.6 * torch.rand(n, 1, 1, 1, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (n,), generator=g)
    res = pgd(Threshold1D(), x, y, eps=eps, steps=steps, step_size=step, start="none", record_path=True)
    ref = _reference_1d(x.flatten(), y, eps, step, steps)
    assert res.steps_to_flip.tolist() == [r[0] for r in ref]
    assert res.first_wrong.tolist() == [r[1] for r in ref]
    assert torch.allclose(res.x_first_wrong.flatten(), torch.tensor([r[2] for r in ref], dtype=torch.float64))
    assert torch.allclose(res.x_adv.flatten(), torch.tensor([r[3] for r in ref], dtype=torch.float64))
    # the batch covers points wrong from the start, flipping mid-way and never flipping
    kappas = set(res.steps_to_flip.tolist())
    assert 0 in kappas and steps in kappas and len(kappas) > 4


def _reference_path(model, x, y, eps, step, steps):
    """Slow per-sample PGD-ce (ℓ∞, start none) that records every iterate's prediction."""
    kappa, first, x_first, x_last = [], [], [], []
    for i in range(len(y)):
        x0, xi, yi = x[i : i + 1], x[i : i + 1].clone(), y[i : i + 1]
        preds, iterates = [], []
        for _ in range(steps):
            xi.requires_grad_(True)
            z = model(xi)
            (g,) = torch.autograd.grad(losses.ce(z, yi).sum(), xi)
            preds.append(int(z.argmax(1)))
            iterates.append(xi.detach())
            xi = torch.min(torch.max(xi.detach() + step * g.sign(), x0 - eps), x0 + eps).clamp(0, 1)
        with torch.no_grad():
            preds.append(int(model(xi).argmax(1)))
        iterates.append(xi)
        kappa.append(sum(p == int(yi) for p in preds[:steps]))
        wrong = [k for k, p in enumerate(preds) if p != int(yi)]
        first.append(wrong[0] if wrong else steps)
        x_first.append(iterates[first[-1]])
        x_last.append(xi)
    return torch.tensor(kappa), torch.tensor(first), torch.cat(x_first), torch.cat(x_last)


def test_path_record_matches_a_per_sample_reference_loop(trained):
    model, x, y = trained
    model = copy.deepcopy(model).double()
    x, y = x[:40].double(), y[:40]
    eps, step, steps = 0.35, 0.04, 10
    res = pgd(model, x, y, eps=eps, steps=steps, step_size=step, start="none", record_path=True)
    kappa, first, x_first, x_last = _reference_path(model, x, y, eps, step, steps)
    assert torch.allclose(res.x_adv, x_last, atol=1e-12)
    assert torch.equal(res.steps_to_flip, kappa)
    assert torch.equal(res.first_wrong, first)
    assert torch.allclose(res.x_first_wrong, x_first, atol=1e-12)
    assert ((res.steps_to_flip >= 0) & (res.steps_to_flip <= steps)).all()
    assert (res.first_wrong <= steps).all()
    assert len(set(kappa.tolist())) > 2  # flips happen at different steps


@pytest.mark.parametrize("loss", ["ce", "kl", "cw"])
def test_one_step_matches_a_manual_step_on_the_named_loss(loss, trained):
    """One PGD step from the gauss_small start, against the gradient of the spec's loss
    (kl: KL(p(x) ‖ p(x')) with p(x) fixed; cw: κ = 50), computed here by hand."""
    model, x, y = trained
    y = torch.where(torch.arange(len(y)) % 2 == 0, y, (y + 1) % 4)  # half misclassified: cw clamp active
    eps, step = 0.1, 0.03
    res = pgd(
        model, x, y, eps=eps, steps=1, step_size=step, loss=loss, start="gauss_small", generator=_generator(4)
    )
    x0 = Linf(eps).random_start(x, "gauss_small", _generator(4)).requires_grad_(True)
    z = model(x0)
    with torch.no_grad():
        z_nat = model(x)
    value = {"ce": losses.ce(z, y), "kl": losses.kl(z_nat, z), "cw": losses.cw(z, y, 50.0)}[loss]
    (g,) = torch.autograd.grad(value.sum(), x0)
    expected = torch.min(torch.max(x0.detach() + step * g.sign(), x - eps), x + eps).clamp(0, 1)
    assert torch.allclose(res.x_adv, expected, atol=1e-6)


def _forwards(model, attack):
    """(the attack's result, how many forward passes of ``model`` it ran)."""
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        return attack(), len(calls)
    finally:
        hook.remove()


def test_final_logits_false_skips_the_last_forward(trained):
    model, x, y = trained
    kw = dict(eps=0.1, steps=2, step_size=0.05)
    res, n = _forwards(model, lambda: pgd(model, x, y, final_logits=False, **kw))
    assert res.logits_adv is None and res.steps_to_flip is None and n == 2
    res, n = _forwards(model, lambda: pgd(model, x, y, **kw))
    assert res.logits_adv is not None and n == 3
    res = pgd(model, x, y, final_logits=False, record_path=True, **kw)
    assert res.logits_adv is not None and res.steps_to_flip is not None


def test_kappa_alone_costs_no_extra_forward_and_matches_the_full_record(trained):
    model, x, y = trained
    kw = dict(eps=0.1, steps=4, step_size=0.03, final_logits=False, record_path=True)
    full, n_full = _forwards(model, lambda: pgd(model, x, y, generator=_generator(), **kw))
    kappa, n_kappa = _forwards(
        model, lambda: pgd(model, x, y, generator=_generator(), first_wrong=False, **kw)
    )
    # K forwards; the full record checks x^(K) once more and takes PM_dif's p(x) in eval mode
    assert n_full == 6 and n_kappa == 4
    assert torch.equal(kappa.steps_to_flip, full.steps_to_flip) and torch.equal(kappa.x_adv, full.x_adv)
    assert kappa.first_wrong is None and kappa.logits_first_wrong is None and kappa.logits_adv is None
    assert full.first_wrong is not None and full.logits_first_wrong is not None


def test_kl_attack_uses_given_natural_logits(trained):
    model, x, y = trained
    with torch.no_grad():
        z = model(x)
    kw = dict(eps=0.2, steps=3, step_size=0.05, loss="kl", start="gauss_small")
    a, n_a = _forwards(model, lambda: pgd(model, x, y, generator=_generator(), **kw))
    b, n_b = _forwards(model, lambda: pgd(model, x, y, generator=_generator(), logits_nat=z, **kw))
    c = pgd(model, x, y, generator=_generator(), logits_nat=z.roll(1, 1), **kw)
    assert torch.equal(a.x_adv, b.x_adv)  # the given logits are p(x): the same attack
    assert n_a == n_b + 1  # without them, one natural forward computes p(x)
    assert not torch.equal(c.x_adv, b.x_adv)  # other given logits: another target
    # KL from p(x) grows along the attack, from ≈ 0 at the start x + 0.001·N(0, I)
    with torch.no_grad():
        at_start = model(threat("linf", 0.2).random_start(x, "gauss_small", _generator()))
    assert losses.kl(z, b.logits_adv).mean() > losses.kl(z, at_start).mean() + 1e-4


# ---------------------------------------------------------------- build()


def test_names():
    assert attacks.names() == [
        "clean",
        "fgsm",
        "pgd-K",
        "pgd-K:STEP",
        "cw-K",
        "cw-K:STEP",
        "autoattack",
        "autoattack-rand",
        "apgd-ce",
        "apgd-dlr",
        "apgd-t",
        "fab-t",
        "square",
        "apgd-ce-K",
        "apgd-dlr-K",
        "saa",
        "saa-K",
        "lm-pgd",
        "lm-pgd-K",
        "lm-pgd-K:STEP",
        "spsa",
        "spsa-K",
        "fmn",
        "fmn-K",
    ]


@pytest.mark.parametrize(
    "name, func, expected",
    [
        ("clean", "clean", {}),
        ("fgsm", "fgsm", {}),
        ("pgd-20", "restarted_pgd", {"steps": 20, "restarts": 1, "loss": "ce"}),
        ("pgd-20x5", "restarted_pgd", {"steps": 20, "restarts": 5, "loss": "ce"}),
        ("PGD-7", "restarted_pgd", {"steps": 7, "restarts": 1, "loss": "ce"}),
        ("cw-20", "restarted_pgd", {"steps": 20, "restarts": 1, "loss": "cw", "kappa": 50.0}),
        ("cw-10x2", "restarted_pgd", {"steps": 10, "restarts": 2, "loss": "cw"}),
        ("autoattack", "autoattack", {"attacks": None}),
        ("apgd-ce", "autoattack", {"attacks": ["apgd-ce"]}),
        ("apgd-t", "autoattack", {"attacks": ["apgd-t"]}),
        ("fab-t", "autoattack", {"attacks": ["fab-t"]}),
        ("square", "autoattack", {"attacks": ["square"]}),
        ("apgd-dlr", "autoattack", {"attacks": ["apgd-dlr"]}),
        ("apgd-ce+square", "autoattack", {"attacks": ["apgd-ce", "square"]}),
        ("apgd-ce-100", "apgd", {"steps": 100, "loss": "ce", "start": "uniform", "keep": "fooled"}),
        ("apgd-dlr-50", "apgd", {"steps": 50, "loss": "dlr", "start": "uniform", "keep": "fooled"}),
        ("saa", "saa", {"steps": 20, "keep": "fooled"}),
        ("saa-40", "saa", {"steps": 40, "keep": "fooled"}),
        ("lm-pgd", "lm_pgd", {"steps": 50, "keep": "fooled"}),
        ("lm-pgd-7", "lm_pgd", {"steps": 7, "keep": "fooled"}),
        ("spsa", "spsa", {"steps": 100, "keep": "fooled"}),
        ("spsa-20", "spsa", {"steps": 20, "keep": "fooled"}),
        ("apgd-t+fab-t+square", "autoattack", {"attacks": ["apgd-t", "fab-t", "square"]}),
    ],
)
def test_build_parses_names(name, func, expected):
    for norm, eps in (("linf", 8 / 255), ("l2", 0.5)):
        attack = build(name, eps=eps, norm=norm)
        assert getattr(attack, "func", attack).__name__ == func
        kw = getattr(attack, "keywords", {})
        assert {k: kw[k] for k in expected} == expected
        if func == "restarted_pgd":
            assert kw["eps"] == eps and kw["norm"] == norm and kw["step_size"] == pytest.approx(eps / 4)
        if func in ("apgd", "saa", "lm_pgd", "spsa"):
            assert kw["eps"] == eps and kw["norm"] == norm


@pytest.mark.parametrize(
    "name, steps, restarts, loss, step",
    [
        ("pgd-100:1/255", 100, 1, "ce", 1 / 255),  # VIR's PGD-100
        ("pgd-20:eps/4", 20, 1, "ce", 0.1 / 4),
        ("cw-20:0.003", 20, 1, "cw", 0.003),  # the MAIL code's CW step
        ("pgd-20x5:0.25*eps", 20, 5, "ce", 0.025),
        ("cw-10:2*eps/10", 10, 1, "cw", 0.02),
        ("PGD-7:EPS", 7, 1, "ce", 0.1),
        ("pgd-3:.5/255", 3, 1, "ce", 0.5 / 255),
        ("pgd-3:1e-3", 3, 1, "ce", 0.001),
    ],
)
def test_a_step_size_in_the_name_wins_over_the_step_size_option(name, steps, restarts, loss, step):
    kw = build(name, eps=0.1, step_size=0.5).keywords
    assert (kw["steps"], kw["restarts"], kw["loss"]) == (steps, restarts, loss)
    assert kw["step_size"] == pytest.approx(step, rel=1e-12)


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("pgd-20:eps*4", "is not understood"),
        ("pgd-20:-1", "is not understood"),
        ("pgd-20:0", "must be > 0"),
        ("pgd-20:1/0", "divides by zero"),
        ("pgd-20:2*3", "a factor goes with eps"),
        ("pgd-20:", "unknown attack"),
        ("fgsm:1/255", "a step size goes with pgd-K, cw-K and lm-pgd-K only"),
        ("autoattack:eps/4", "a step size goes with pgd-K, cw-K and lm-pgd-K only"),
        ("pgd-20@100", "an image limit, @N, goes in an evaluation's attack list"),
    ],
)
def test_bad_step_sizes_in_names_give_one_clear_error(name, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        build(name, eps=0.1)


@pytest.mark.parametrize(
    "name",
    [
        "foo",
        "pgd",
        "pgd-",
        "pgd-x5",
        "cw-abc",
        "pgd-20-r5",
        "auto-attack",
        "",
        "apgd-ce+pgd-20",
        "square+square",
    ],
)
def test_build_unknown_name_lists_valid_names(name):
    with pytest.raises(ValueError, match="valid names: clean, fgsm, pgd-K"):
        build(name, eps=0.1)


def test_custom_autoattack_list_runs_exactly_the_named_components():
    attack = build("apgd-t+square", eps=0.1, seed=3)
    assert attack.keywords["attacks"] == ["apgd-t", "square"] and attack.keywords["seed"] == 3
    assert build("autoattack", eps=0.1).keywords["attacks"] is None  # the standard cascade


def test_build_errors():
    with pytest.raises(ValueError, match="restarts"):
        build("pgd-20x0", eps=0.1)
    with pytest.raises(ValueError, match="eps"):
        build("pgd-20", eps=-0.1)
    with pytest.raises(ValueError, match="norm"):
        build("pgd-20", eps=0.1, norm="l1")
    with pytest.raises(TypeError, match="unknown options"):
        build("pgd-20", eps=0.1, stepsize=0.1)


@pytest.mark.parametrize(
    "name",
    [
        "clean",
        "fgsm",
        "pgd-3",
        "pgd-3x2",
        "cw-3",
        "autoattack",
        "apgd-t",
        "fab-t",
        "square",
        "saa-3",
        "apgd-ce-3",
    ],
)
def test_built_attacks_at_eps_zero_return_x_and_its_logits(name, trained):
    model, x, y = trained
    x, y = x[:8], y[:8]
    res = build(name, eps=0.0)(model, x, y)
    assert torch.equal(res.x_adv, x)
    with torch.no_grad():
        assert torch.allclose(res.logits_adv, model(x), atol=1e-6)


def test_clean_uses_eval_mode_and_restores_it():
    model = _mlp(bn=True, seed=1)
    with torch.no_grad():
        model(torch.rand(32, 1, 4, 4))  # running stats ≠ batch stats
    model.train()
    x, y = _toy_data(8, seed=0)
    res = build("clean", eps=0.1)(model, x, y)
    assert model.training
    with torch.no_grad():
        assert torch.allclose(res.logits_adv, model.eval()(x))


def test_restarts_never_less_successful_than_one_run(trained):
    model, x, y = trained
    eps = 0.34  # one run breaks ~20 % of the points, six restarts ~60 %
    one = build("pgd-3", eps=eps, generator=_generator(9))(model, x, y)
    many = build("pgd-3x6", eps=eps, generator=_generator(9))(model, x, y)
    fooled_one, fooled_many = one.logits_adv.argmax(1) != y, many.logits_adv.argmax(1) != y
    assert 0.1 < fooled_one.float().mean() < 0.9
    assert (fooled_many | ~fooled_one).all()  # every point broken by one run stays broken
    assert fooled_many.sum() > fooled_one.sum()
    assert torch.equal(one.x_adv[fooled_one], many.x_adv[fooled_one])  # the first success is kept
    assert (many.x_adv - x).abs().max() <= eps + 1e-6
    with torch.no_grad():
        assert torch.allclose(many.logits_adv, model(many.x_adv), atol=1e-5)
    kw = build("pgd-3", eps=eps, restarts=6, generator=_generator(9))(model, x, y)
    assert torch.equal(kw.x_adv, many.x_adv)


def test_pgd_name_uses_step_eps_over_4_and_uniform_start(trained):
    model, x, y = trained
    res = build("pgd-5", eps=0.1, generator=_generator(2))(model, x, y)
    ref = pgd(model, x, y, eps=0.1, steps=5, step_size=0.025, generator=_generator(2))
    assert torch.equal(res.x_adv, ref.x_adv)
    res = build("cw-5", eps=0.1, generator=_generator(2))(model, x, y)
    ref = pgd(model, x, y, eps=0.1, steps=5, step_size=0.025, loss="cw", kappa=50.0, generator=_generator(2))
    assert torch.equal(res.x_adv, ref.x_adv)


def test_autoattack_standard_is_silent_and_lowers_accuracy(trained, capsys, caplog):
    model, x, y = trained
    x, y = x[:AA_POINTS], y[:AA_POINTS]
    state = torch.get_rng_state()
    with caplog.at_level(logging.DEBUG):
        res = build("autoattack", eps=EPS["linf"], seed=0)(model, x, y)
    assert (res.logits_adv.argmax(1) == y).float().mean() <= 0.1
    assert (res.x_adv - x).abs().max() <= EPS["linf"] + 1e-6
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert not [r for r in caplog.records if r.name == "auto-attack"]
    assert torch.equal(torch.get_rng_state(), state)  # with a seed given, the global RNG is untouched


def test_fab_leaves_grads_and_mode_alone(trained):
    """FAB calls .backward() inside the package: the adapter must freeze θ (and unfreeze it)."""
    model, x, y = trained
    model = copy.deepcopy(model).train()
    x, y = x[:3], y[:3]
    res = build("fab-t", eps=EPS["linf"], seed=0)(model, x, y)
    assert (res.logits_adv.argmax(1) != y).all()  # FAB ran (and broke the points)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


# ---------------------------------------------------------------- path logits and FAT's early stop


def test_first_wrong_logits_are_the_logits_of_the_first_wrong_iterate(trained):
    model, x, y = trained
    model = copy.deepcopy(model).double()
    x, y = x[:40].double(), y[:40]
    res = pgd(model, x, y, eps=0.35, steps=10, step_size=0.04, start="none", record_path=True)
    with torch.no_grad():
        expected = model(res.x_first_wrong)
    assert torch.allclose(res.logits_first_wrong, expected, atol=1e-10)
    never = res.first_wrong == 10
    assert torch.equal(res.logits_first_wrong[never], res.logits_adv[never])
    with torch.no_grad():  # PM_dif's reference: the clean x in the same (eval) mode
        assert torch.allclose(res.logits_nat, model.eval()(x), atol=1e-10)


def test_early_stop_with_a_budget_of_at_least_k_and_no_noise_is_plain_pgd(trained):
    """METHODS.md §7.1.10, first half."""
    model, x, y = trained
    kw = dict(eps=0.35, steps=10, step_size=0.04)
    plain = pgd(model, x, y, generator=_generator(5), **kw)
    early = pgd(model, x, y, generator=_generator(5), tau=10, noise=0.0, **kw)
    assert torch.equal(plain.x_adv, early.x_adv)


def test_early_stop_with_zero_budget_freezes_misclassified_points(trained):
    """§7.1.10, second half: every frozen output is misclassified, and it stops moving once
    frozen, so it is closer to x than a full run's point."""
    model, x, y = trained
    kw = dict(eps=0.35, steps=10, step_size=0.04, start="none")
    early = pgd(model, x, y, tau=0, **kw)
    full = pgd(model, x, y, **kw)
    wrong = early.logits_adv.argmax(1) != y
    stopped = (early.x_adv - full.x_adv).flatten(1).abs().amax(1) > 0
    assert stopped.any() and wrong[stopped].all()
    dist_early = (early.x_adv - x).flatten(1).abs().amax(1)
    dist_full = (full.x_adv - x).flatten(1).abs().amax(1)
    assert (dist_early[stopped] <= dist_full[stopped] + 1e-6).all()
    # a larger budget lets points travel further past the boundary
    later = pgd(model, x, y, tau=2, **kw)
    assert (later.x_adv - x).abs().sum() > (early.x_adv - x).abs().sum()


def test_early_stop_noise_is_seeded_and_stays_in_the_ball(trained):
    model, x, y = trained
    kw = dict(eps=0.1, steps=5, step_size=0.03, tau=1, noise=0.001)
    a = pgd(model, x, y, generator=_generator(1), **kw)
    b = pgd(model, x, y, generator=_generator(1), **kw)
    assert torch.equal(a.x_adv, b.x_adv)
    assert (a.x_adv - x).abs().max() <= 0.1 + 1e-6 and a.x_adv.min() >= 0 and a.x_adv.max() <= 1
    with pytest.raises(ValueError, match="tau"):
        pgd(model, x, y, tau=-1, **{k: v for k, v in kw.items() if k != "tau"})
