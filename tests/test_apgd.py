"""APGD and SAA (METHODS.md §3.4, §7.1.8, §7.1.9, §7.1.11) against hand-made models with a known
answer and against the official AutoAttack code (``pyautoattack``) on a small trained model.

The shared invariants of every attack (inside the ball and [0, 1], ε = 0, mode, BatchNorm and
parameter gradients untouched, determinism, a trained model broken) run for ``apgd-*-K`` and
``saa`` in the table of tests/test_attacks.py."""

import copy
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import irat
from irat import losses
from irat.attacks import apgd, build, saa
from irat.attacks.saa import top_other_classes

APGD = sys.modules["irat.attacks.apgd"]  # the module (``irat.attacks.apgd`` is the function)


# ---------------------------------------------------------------- checkpoints and step control


def test_checkpoints_follow_the_paper_formula():
    """§7.1.11: p = 0, .22, .41, .57, .70, .80, .87, .93, .99 → ⌈20 p⌉."""
    assert APGD.checkpoints(20) == [0, 5, 9, 12, 14, 16, 18, 19, 20]
    assert APGD.checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert APGD.checkpoints(0) == [0]


class Bowl(nn.Module):
    """Logits (50·(x₀ − c)², 0, 0, 0) of the first input coordinate: with y = 0 the CE is largest
    at x₀ = c, a point inside the ball that a fixed-size sign step keeps jumping over."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        d = x.flatten(1)[:, :1] - self.c
        return torch.cat([50 * d**2, torch.zeros(x.shape[0], 3, dtype=x.dtype)], 1)


def test_step_halving_and_restarts_converge_on_an_interior_maximum(monkeypatch):
    x = torch.full((2, 1, 1, 1), 0.5, dtype=torch.float64)
    y = torch.zeros(2, dtype=torch.long)
    c = torch.tensor([[0.57], [0.43]], dtype=torch.float64)
    res = apgd(Bowl(c), x, y, eps=0.3, steps=20, loss="ce")
    assert (res.x_adv.flatten(1) - c).abs().max() < 1e-3
    # without checkpoints η stays 2ε and the iterates never come closer than 0.04
    monkeypatch.setattr(APGD, "checkpoints", lambda n: [0, n])
    res = apgd(Bowl(c), x, y, eps=0.3, steps=20, loss="ce")
    assert (res.x_adv.flatten(1) - c).abs().min() > 0.04


class Recorder(nn.Module):
    """Wraps a model and keeps the input and logits of every forward."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.seen = []

    def forward(self, x):
        z = self.model(x)
        self.seen.append((x.detach().clone(), z.detach().clone()))
        return z


def test_returns_the_highest_loss_iterate_and_costs_n_gradients_plus_one_forward(small):
    model, x, y = small
    x, y = x[:64].double(), y[:64]
    rec = Recorder(_double(model))
    target = top_other_classes(rec.model(x), y, 1)[:, 0]
    res = apgd(rec, x, y, eps=0.12, steps=20, loss="dlr_t", target=target)
    assert len(rec.seen) == 21  # x⁰ … x²⁰: 20 with a gradient, the last one forward only
    values = torch.stack([losses.dlr_t(z, y, target) for _, z in rec.seen])  # [21, B]
    best = values.argmax(0)
    rows = torch.arange(len(y))
    xs = torch.stack([xi for xi, _ in rec.seen])
    assert torch.equal(res.x_adv, xs[best, rows])
    assert torch.equal(res.logits_adv, torch.stack([z for _, z in rec.seen])[best, rows])


def test_keep_fooled_returns_a_misclassified_iterate_whenever_one_was_met(small):
    model, x, y = small
    x, y = x[:100].double(), y[:100]
    rec = Recorder(_double(model))
    res = apgd(rec, x, y, eps=0.12, steps=20, loss="ce", keep="fooled")
    ever_wrong = torch.stack([z.argmax(1) != y for _, z in rec.seen]).any(0)
    assert 0 < ever_wrong.sum() < len(y)
    assert torch.equal(res.logits_adv.argmax(1) != y, ever_wrong)
    with torch.no_grad():
        assert torch.allclose(res.logits_adv, rec.model(res.x_adv))


def test_argument_errors():
    model, x, y = Bowl(0.5), torch.rand(2, 1, 1, 1), torch.zeros(2, dtype=torch.long)
    for kw, match in [
        ({"loss": "hinge"}, "unknown APGD loss"),
        ({"loss": "dlr_t"}, "needs target"),
        ({"loss": "ce", "target": y}, "only dlr_t"),
        ({"start": "zero"}, "random start"),
        ({"keep": "last"}, "keep"),
        ({"steps": -1}, "non-negative"),
    ]:
        with pytest.raises(ValueError, match=match):
            apgd(model, x, y, eps=0.1, **kw)


# ---------------------------------------------------------------- SAA


def test_targets_exclude_y_also_when_x_is_misclassified():
    """§7.1.9: 3 distinct classes ≠ y, ordered by natural logit; a misclassified x keeps its winning
    class as a target (the AutoAttack package's ranks 2–4 would drop it)."""
    z = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0], [1.0, 5.0, 3.0, 4.0, 2.0]])
    y = torch.tensor([1, 0])  # the first is correct, the second misclassified as 1
    assert top_other_classes(z, y, 3).tolist() == [[3, 2, 4], [1, 3, 2]]


def test_saa_is_three_apgd_runs_batched_and_keeps_the_smallest_margin(small):
    model, x, y = small
    model, x, y = _double(model), x[:48].double(), y[:48]
    with torch.no_grad():
        x[:8] = x[8:16]  # make a few points misclassified by pairing them with other labels
    res = saa(model, x, y, eps=0.12, steps=10)
    with torch.no_grad():
        targets = top_other_classes(model(x), y, 3)
    runs = [apgd(model, x, y, eps=0.12, steps=10, loss="dlr_t", target=targets[:, k]) for k in range(3)]
    margins = torch.stack([losses.margin(r.logits_adv, y) for r in runs])
    pick = margins.argmin(0)
    rows = torch.arange(len(y))
    torch.testing.assert_close(res.x_adv, torch.stack([r.x_adv for r in runs])[pick, rows])
    torch.testing.assert_close(losses.margin(res.logits_adv, y), margins.min(0).values)
    assert (targets != y[:, None]).all()


def test_saa_needs_four_classes():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="at least 4 classes"):
        saa(model, torch.rand(2, 1, 2, 2), torch.zeros(2, dtype=torch.long), eps=0.1)


def test_saa_in_evaluation_by_name(small):
    model, x, y = small
    split = irat.data.Split(x[:200], y[:200], torch.arange(200))
    result = irat.evaluate(model, split, attacks=["clean", "saa", "apgd-dlr-20"], eps=0.12, progress=False)
    assert result.accuracy["saa"] < result.accuracy["clean"] - 0.2
    assert result.accuracy["apgd-dlr-20"] < result.accuracy["clean"] - 0.2


# ---------------------------------------------------------------- against the official code

N_TEST = 400
EPS = 0.12


def _points(n, seed, prototypes):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    return (prototypes[y] + 0.35 * torch.randn(n, 1, 6, 6, generator=g)).clamp(0, 1), y


@pytest.fixture(scope="module")
def small():
    """A 10-class 1×6×6 problem (noisy prototypes) and an MLP trained on it to ~99 % clean
    accuracy, with about half of the test points robust at ε = 0.12."""
    prototypes = torch.rand(10, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    x, y = _points(2000, 1, prototypes)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    x_test, y_test = _points(N_TEST, 2, prototypes)
    return model.eval(), x_test, y_test


def _double(model):
    return copy.deepcopy(model).double()


def _accuracy(model, x_adv, y):
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()


def test_targeted_apgd_dlr_matches_the_official_code_on_the_same_target_and_start(small):
    """One target (the highest wrong class), no random start on both sides, 20 iterations: our
    robust accuracy is within 1 point of ``APGDAttack_targeted``'s or lower."""
    from pyautoattack.autopgd_base import APGDAttack_targeted

    model, x, y = small
    with torch.no_grad():
        target = top_other_classes(model(x), y, 1)[:, 0]
    theirs = APGDAttack_targeted(model, n_iter=20, n_restarts=1, eps=EPS, seed=0, device="cpu")
    theirs.init_hyperparam(x)
    theirs.y_target = target
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, still_correct, _, _ = theirs.attack_single_run(x, y, x_init=x.clone())
    ours = apgd(model, x, y, eps=EPS, steps=20, loss="dlr_t", target=target, keep="fooled")
    acc_theirs = still_correct.float().mean().item()
    acc_ours = _accuracy(model, ours.x_adv, y)
    assert 0.2 < acc_theirs < 0.8  # a model on which the attack has work to do
    assert acc_ours <= acc_theirs + 0.01


def test_saa_matches_the_official_targeted_attack_on_three_targets(small):
    """SAA (3 targets × 20 iterations) against ``APGDAttack_targeted(n_target_classes=3,
    n_iter=20, n_restarts=1)`` with its own random start."""
    from pyautoattack.autopgd_base import APGDAttack_targeted

    model, x, y = small
    theirs = APGDAttack_targeted(
        model, n_iter=20, n_restarts=1, eps=EPS, seed=0, n_target_classes=3, device="cpu"
    )
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acc_theirs = _accuracy(model, theirs.perturb(x, y), y)
    acc_ours = _accuracy(model, build("saa", eps=EPS)(model, x, y).x_adv, y)
    assert 0.2 < acc_theirs < 0.8
    assert acc_ours <= acc_theirs + 0.01


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_untargeted_apgd_matches_the_official_code(loss, small):
    from pyautoattack.autopgd_base import APGDAttack

    model, x, y = small
    theirs = APGDAttack(model, n_iter=100, n_restarts=1, eps=EPS, seed=0, loss=loss, device="cpu")
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acc_theirs = _accuracy(model, theirs.perturb(x, y), y)
    attack = build(f"apgd-{loss}-100", eps=EPS, generator=torch.Generator().manual_seed(0))
    acc_ours = _accuracy(model, attack(model, x, y).x_adv, y)
    assert 0.2 < acc_theirs < 0.8
    assert acc_ours <= acc_theirs + 0.01
