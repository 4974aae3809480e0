"""LRAT and LSAT (METHODS.md §4.10, §7.4 "LRAT"): the weight and coefficient formulas against hand
values and a per-instance loop written as the paper's Algorithm 1, the [B, m] data flow through
the one training step, LSAT = AT exactly, the named recipes, their options and errors, and a short
run of each named method on real Fashion-MNIST."""

import dataclasses
import functools
import math

import numpy as np
import pytest
import torch

import irat
from irat import attacks, losses, methods, objectives, weighting
from irat.config import ConfigError, resolve_config
from irat.training.assemble import build_step, scheme_params, variant_plan
from irat.training.records import instance_weight, load_record, worst_variant
from irat.training.rundir import RunDir
from irat.training.step import train_step
from irat.types import Batch, SampleStats

D = torch.float64
FMNIST = irat.data.registry.get("fashion-mnist").spec
NAMED = ["lsat-cw", "lsat-saa", "lrat-cw", "lrat-saa", "lrat", "lrat-gd-cw", "lrat-gd-saa", "lrat-saa-cw-gd"]


def _cfg(method, **kw):
    return resolve_config(None, method=method, **kw)


# ---------------------------------------------------------------- the weights (Eq. 11, 12, 7, 15)


def test_reweighting_function_hand_values():
    """ω(t) = 2·(1 − t)^0.5: ω(1) = 0, ω(0) = 2, ω(−1) = 2√2, ω(0.75) = 1."""
    t = torch.tensor([1.0, 0.0, -1.0, 0.75], dtype=D)
    assert weighting.lrat(t).tolist() == pytest.approx([0.0, 2.0, 2 * math.sqrt(2), 1.0], abs=1e-12)
    assert weighting.lrat(t, alpha=0.5, beta=2.0).tolist() == pytest.approx([0.0, 0.5, 2.0, 0.03125])


def test_reweighting_function_is_decreasing_and_has_no_nan_above_one():
    t = torch.linspace(-1, 1, 201, dtype=D)
    w = weighting.lrat(t)
    assert (w[1:] < w[:-1]).all()
    above = torch.tensor([1.0 + 1e-7, 1.0 + 1e-16], dtype=D)  # a margin that rounding put above 1
    assert torch.equal(weighting.lrat(above), torch.zeros(2, dtype=D))
    assert torch.equal(weighting.lrat(torch.tensor([1.0000001], dtype=torch.float32)), torch.zeros(1))
    # LSAT: α = 1, β = 0 is ω ≡ 1 exactly, at t = 1 too
    assert torch.equal(weighting.lrat(torch.tensor([-1.0, 0.3, 1.0, 1.5]), 1.0, 0.0), torch.ones(4))


def test_data_coefficient_is_non_negative_and_c_when_every_variant_is_safe():
    omega = torch.tensor([[0.02, 0.03], [0.5, 0.0], [0.0, 0.0], [0.1, 0.0]], dtype=D)
    c = weighting.data_coefficient(omega, 0.1)
    assert c.tolist() == pytest.approx([0.05, 0.0, 0.1, 0.0], abs=1e-15)


def test_coefficients_are_normalised_jointly_after_the_raw_data_coefficient():
    """Raw c from raw ω, then everything divided by mean_i(c_i + Σ_j ω_ij) (DECISION #12)."""
    omega = torch.tensor([[0.05], [1.0]], dtype=D)  # c = (0.05, 0); totals (0.1, 1.0); s̄ = 0.55
    coef = weighting.lrat_coefficients(omega, 0.1)
    assert coef.shape == (2, 2)
    expected = torch.tensor([[0.05, 0.05], [1.0, 0.0]], dtype=D) / 0.55
    torch.testing.assert_close(coef, expected, rtol=0, atol=1e-15)
    g = torch.Generator().manual_seed(0)
    coef = weighting.lrat_coefficients(weighting.lrat(2 * torch.rand(64, 3, generator=g, dtype=D) - 1), 0.1)
    assert (coef >= 0).all() and abs(coef.sum(1).mean().item() - 1) < 1e-12
    with pytest.raises(ValueError, match="C must be > 0"):
        weighting.lrat_coefficients(omega, 0.0)


def _variant_stats(b=10, m=2, n=5, seed=0, kappa=None):
    g = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(b, m, n, generator=g, dtype=D)
    y = torch.randint(0, n, (b,), generator=g)
    return SampleStats(torch.arange(b), y, z, None, kappa, epoch=0)


def _algorithm_1_weights(stats, rules, alpha=2.0, beta=0.5, c_min=0.1, lam=-1.0, k_max=10):
    """The weights as the paper writes them: for each instance i, for each attack j."""
    b, m, _ = stats.logits_adv.shape
    omega, c = [[0.0] * m for _ in range(b)], [0.0] * b
    for i in range(b):
        y = int(stats.y[i])
        for j in range(m):
            p = torch.softmax(stats.logits_adv[i, j], 0).tolist()
            t = p[y] - max(p[k] for k in range(len(p)) if k != y)
            if rules[j] == "lrat":
                omega[i][j] = alpha * max(1 - t, 0.0) ** beta
            elif rules[j] == "gd":
                kappa = int(stats.steps_to_flip[i])
                omega[i][j] = (1 + math.tanh(lam + 5 * (1 - 2 * kappa / k_max))) / 2
        c[i] = max(c_min - sum(omega[i]), 0.0)
    mean_total = sum(c[i] + sum(omega[i]) for i in range(b)) / b
    return torch.tensor([[*omega[i], c[i]] for i in range(b)], dtype=D) / mean_total


@pytest.mark.parametrize(
    "rules", [("lrat",), ("lrat", "lrat"), ("lrat", "gd"), ("lrat", "lrat", "gd", "none")]
)
def test_scheme_matches_the_per_instance_loop_of_algorithm_1(rules):
    kappa = torch.randint(0, 11, (10,), generator=torch.Generator().manual_seed(3))
    stats = _variant_stats(m=len(rules), kappa=kappa)
    w = weighting.make("lrat", rules=rules)(stats)
    assert w.shape == (10, len(rules) + 1) and not w.requires_grad
    torch.testing.assert_close(w, _algorithm_1_weights(stats, rules), rtol=1e-12, atol=1e-12)
    assert weighting.needs("lrat", rules=rules) == ({"kappa"} if "gd" in rules else set())


def test_scheme_gives_the_data_term_everything_when_all_variants_are_certain():
    """t = 1 on every variant: ω = 0, c = C, normalised c = 1, and the loss is mean ce(x*)."""
    z = torch.full((4, 2, 5), -30.0, dtype=D)
    y = torch.tensor([0, 1, 2, 3])
    z[torch.arange(4), :, y] = 30.0  # p_y = 1 to rounding: t = 1
    stats = SampleStats(torch.arange(4), y, z, None, None, epoch=0)
    w = weighting.make("lrat", rules=("lrat", "lrat"))(stats)
    torch.testing.assert_close(w, torch.tensor([[0.0, 0.0, 1.0]] * 4, dtype=D), rtol=0, atol=1e-12)
    logits_nat = torch.randn(4, 5, dtype=D)
    loss, _ = objectives.lrat(logits_nat, z, y, w, data_term=None)
    torch.testing.assert_close(loss, losses.ce(logits_nat, y).mean())


def test_scheme_refuses_single_variant_logits_and_bad_parameters():
    z, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"variants per sample \[B, m, n\]"):
        weighting.make("lrat")(SampleStats(torch.arange(4), y, z, None, None, 0))
    for params in [{"alpha": 0.0}, {"beta": -1.0}, {"c": 0.0}, {"rules": ("gd", "gd")}, {"rules": ("x",)}]:
        with pytest.raises(ValueError):
            weighting.make("lrat", **params)


# ---------------------------------------------------------------- the objective (Eq. 7)


def test_objective_is_the_weighted_sum_over_variants_plus_the_data_term():
    stats = _variant_stats(b=6, m=3)
    z, y = stats.logits_adv.clone().requires_grad_(True), stats.y
    w = weighting.make("lrat", rules=("lrat", "lrat", "lrat"))(stats)
    ce = torch.stack([losses.ce(z[:, j], y) for j in range(3)], 1)
    for data_term in (0, 2):
        loss, per_sample = objectives.lrat(None, z, y, w, data_term=data_term)
        manual = (w[:, :3] * ce).sum(1) + w[:, 3] * ce[:, data_term]
        torch.testing.assert_close(per_sample, manual, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(loss, manual.mean(), rtol=1e-12, atol=1e-12)
    z_nat = torch.randn(6, 5, dtype=D, requires_grad=True)
    _, per_sample = objectives.lrat(z_nat, z, y, w, data_term=None)
    torch.testing.assert_close(per_sample, (w[:, :3] * ce).sum(1) + w[:, 3] * losses.ce(z_nat, y))


# ---------------------------------------------------------------- the data flow through the step


def _model(seed=0):
    torch.manual_seed(seed)
    return irat.models.create("tiny-cnn", dataset=FMNIST).double()


def _batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g, dtype=D)
    return Batch(torch.arange(n), x, torch.randint(0, 10, (n,), generator=g))


def _step(cfg, model=None, batch=None, epoch=0):
    model = model or _model()
    parts = build_step(cfg, torch.Generator().manual_seed(7), epoch=epoch)
    out = train_step(model, batch or _batch(), parts, torch.optim.SGD(model.parameters(), lr=0.1), epoch)
    return out, model, parts


def test_lsat_with_one_pgd_variant_is_at_exactly():
    """§7.4: LRAT with m = 1, ω ≡ 1 and C < 1 on the PGD variant equals AT: the same loss and the
    same update, bit for bit, on a fixed batch."""
    common = {"eps": 0.1, "steps": 3, "step_size": 0.025}
    at, model_at, _ = _step(_cfg("at", **common))
    for c in (0.1, 0.5):
        lsat, model_lsat, _ = _step(_cfg("lsat-cw", variants=["pgd"], **{"weighting.c": c}, **common))
        assert torch.equal(lsat.loss, at.loss)
        assert torch.equal(lsat.weights, torch.tensor([[1.0, 0.0]] * 16, dtype=D))
        for a, b in zip(model_at.parameters(), model_lsat.parameters()):
            assert torch.equal(a, b)


def test_step_with_several_variants_has_statistics_shaped_b_by_m():
    out, _, parts = _step(_cfg("lrat-saa-cw-gd", eps=0.1, steps=3))
    assert out.stats.logits_adv.shape == (16, 3, 10) and not out.stats.logits_adv.requires_grad
    assert out.weights.shape == (16, 4) and out.stats.steps_to_flip.shape == (16,)
    assert abs(out.weights.sum(1).mean().item() - 1) < 1e-12
    weight, data_coef = instance_weight(out.weights)
    torch.testing.assert_close(weight, out.weights[:, :3].sum(1))
    assert torch.equal(data_coef, out.weights[:, 3])
    worst = worst_variant(out.stats.logits_adv, out.stats.y)
    t = torch.stack([losses.pm(out.stats.logits_adv[:, j], out.stats.y) for j in range(3)], 1)
    torch.testing.assert_close(losses.pm(worst, out.stats.y), t.min(1).values)


def test_variants_are_the_attacks_run_one_after_the_other_and_stacked():
    model, batch = _model(), _batch(8)
    parts = build_step(_cfg("lrat-gd-cw", eps=0.1, steps=3), torch.Generator().manual_seed(7))
    res = parts.attack(model, batch.x, batch.y)
    assert res.x_adv.shape == (8, 2, 1, 28, 28) and res.logits_adv is None
    g = torch.Generator().manual_seed(7)
    kw = {"eps": 0.1, "steps": 3, "step_size": 0.1 * methods.LRAT_STEP, "generator": g}
    cw = attacks.pgd(model, batch.x, batch.y, loss="cw", **kw)
    gd = attacks.pgd(model, batch.x, batch.y, loss="ce", record_path=True, first_wrong=False, **kw)
    assert torch.equal(res.x_adv[:, 0], cw.x_adv) and torch.equal(res.x_adv[:, 1], gd.x_adv)
    assert torch.equal(res.steps_to_flip, gd.steps_to_flip)


def test_lrat_variants_forward_once_on_the_stacked_batch():
    calls = []
    model = _model()
    model.register_forward_hook(lambda m, i, o: calls.append((m.training, i[0].shape[0])))
    _step(_cfg("lrat", eps=0.1, steps=2), model=model)
    assert [c for c in calls if c[0]] == [(True, 32)]  # one train-mode forward of B·m = 16·2 images


def test_natural_data_term_takes_a_natural_forward_with_a_graph():
    out, _, parts = _step(_cfg("lrat-cw", eps=0.1, steps=2, data_term="natural"))
    assert parts.needs_nat and parts.objective.keywords["data_term"] is None
    assert out.stats.logits_nat is not None


def test_burn_in_gives_every_simulated_variant_weight_one_before_normalisation():
    out, _, _ = _step(_cfg("lrat-gd-cw", eps=0.1, steps=2, epochs=4, burn_in=1), epoch=0)
    assert torch.equal(out.weights, torch.tensor([[0.5, 0.5, 0.0]] * 16, dtype=D))


# ---------------------------------------------------------------- recipes, options and errors


@pytest.mark.parametrize(
    "method, variants, alpha, beta, data_term",
    [
        ("lsat-cw", ("cw",), 1.0, 0.0, 0),
        ("lsat-saa", ("saa",), 1.0, 0.0, 0),
        ("lrat-cw", ("cw",), 2.0, 0.5, 0),
        ("lrat-saa", ("saa",), 2.0, 0.5, 0),
        ("lrat", ("saa", "cw"), 2.0, 0.5, 0),
        ("lrat-gd-cw", ("cw", "gd"), 2.0, 0.5, 0),
        ("lrat-gd-saa", ("saa", "gd"), 2.0, 0.5, 0),
        ("lrat-saa-cw-gd", ("saa", "cw", "gd"), 2.0, 0.5, 0),
    ],
)
def test_each_named_method_assembles_the_paper_s_parts(method, variants, alpha, beta, data_term):
    cfg = _cfg(method, eps=8 / 255)
    plan = variant_plan(cfg)
    assert plan.attacks == variants and plan.data_term == data_term
    assert plan.rules == tuple("gd" if v == "gd" else "lrat" for v in variants)
    _, params = scheme_params(cfg)
    assert (params["alpha"], params["beta"], params["c"], params["num_steps"]) == (alpha, beta, 0.1, 10)
    parts = build_step(cfg)
    assert parts.objective.func is objectives.lrat and not parts.needs_nat and not parts.stats_nat
    for name, attack in zip(variants, parts.attack.keywords["attacks"]):
        kw = attack.keywords
        if name == "saa":
            assert attack.func is attacks.saa and kw == {"eps": 8 / 255, "norm": "linf"}  # 3 × 20, no start
            continue
        assert attack.func is attacks.pgd
        assert kw["loss"] == ("cw" if name == "cw" else "ce") and kw["start"] == "uniform"
        assert kw["steps"] == 10 and kw["step_size"] == pytest.approx(8 / 255 / 10)  # ε/10 (DECISION #11)
        assert kw["record_path"] is (name == "gd")


def test_data_term_options():
    assert variant_plan(_cfg("lrat", data_term="cw")).data_term == 1
    assert variant_plan(_cfg("lrat", data_term="same")).data_term == 0
    assert variant_plan(_cfg("lrat-gd-cw", data_term="pgd")).data_term == 1  # the GD variant is PGD
    plan = variant_plan(_cfg("lrat-cw", data_term="saa"))  # an attack run for the data term alone
    assert plan.attacks == ("cw", "saa") and plan.rules == ("lrat", "none") and plan.data_term == 1
    plan = variant_plan(_cfg("lrat-cw", data_term="natural"))
    assert plan.attacks == ("cw",) and plan.data_term is None
    plan = variant_plan(_cfg("lrat-cw", variants=["pgd", "saa"]))
    assert plan.attacks == ("pgd", "saa") and plan.data_term == 1


def test_options_override_the_paper_defaults():
    _, params = scheme_params(
        _cfg("lrat", **{"weighting.alpha": 4.0, "weighting.beta": 1.5, "weighting.c": 0.4})
    )
    assert (params["alpha"], params["beta"], params["c"]) == (4.0, 1.5, 0.4)
    assert (
        build_step(_cfg("lrat-cw", step_size=0.02)).attack.keywords["attacks"][0].keywords["step_size"]
        == 0.02
    )


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"method": "at", "variants": ["cw"]}, "attack.variants applies to the methods"),
        ({"method": "gairat", "data_term": "saa"}, "train.data_term applies to the methods"),
        ({"method": "at", "objective": "lrat"}, "train.objective=lrat needs several attack variants"),
        ({"method": "at", "weighting": "lrat"}, "weighting.scheme=lrat needs several attack variants"),
        ({"method": "lrat", "objective": "at"}, "train.objective='at' does not apply to 'lrat'"),
        ({"method": "lrat", "weighting": "mail"}, "weighting.scheme='mail' does not apply"),
        ({"method": "lrat", "variants": ["fgsm"]}, "attack.variants='fgsm' is not valid"),
        ({"method": "lrat", "variants": ["cw", "cw"]}, "must list distinct attacks"),
        ({"method": "lrat", "variants": ["pgd", "gd"]}, "not both pgd and gd"),
        ({"method": "lrat", "variants": []}, "at least one"),
        ({"method": "lrat", "data_term": "adv"}, "train.data_term='adv' is not valid"),
        ({"method": "lrat", "weighting.c": 0.0}, r"weighting.c=0.0 must be > 0"),
        ({"method": "lrat", "precision": "bf16"}, "bf16 is allowed for plain, AT and TRADES"),
        ({"method": "mail-at", "weighting.c": 0.2}, None),  # refused when the step is assembled
    ],
)
def test_bad_options_get_one_clear_error(overrides, match):
    if match is None:
        with pytest.raises(ConfigError, match="weighting.c does not apply to the mail scheme"):
            build_step(_cfg(**overrides))
        return
    with pytest.raises(ConfigError, match=match):
        _cfg(**overrides)


def test_lrat_scheme_parameters_are_checked_before_a_run(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
    split = irat.data.Split(x, y, torch.arange(32))
    data = irat.data.Dataset(spec=FMNIST, train=split, val=split.subset(8), test=split.subset(8))
    model = irat.models.create("fc1", dataset=FMNIST)
    with pytest.raises(ConfigError, match="alpha > 0"):
        irat.train(model, data, method="lrat", epochs=1, out=tmp_path / "r", **{"weighting.alpha": 0.0})
    assert not (tmp_path / "r").exists()


def test_methods_are_listed_by_name():
    assert set(NAMED) <= set(methods.names())
    assert (
        methods.default_data_term(("cw", "saa")) == "saa"
        and methods.default_data_term(("cw", "gd")) == "same"
    )


# ---------------------------------------------------------------- a short run of each method


@pytest.fixture(scope="module")
def fmnist_tiny(fmnist_small):
    return dataclasses.replace(
        fmnist_small, train=fmnist_small.train.subset(256), val=fmnist_small.val.subset(64)
    )


@pytest.mark.parametrize("method", NAMED)
def test_each_named_method_trains_on_fashion_mnist(method, fmnist_tiny, tmp_path):
    torch.manual_seed(0)
    model = irat.models.create("fc1", dataset=fmnist_tiny.spec)
    run = irat.train(
        model, fmnist_tiny, method=method, epochs=1, eps=0.1, steps=3, out=tmp_path, progress=False
    )
    assert math.isfinite(run.history[0]["train_loss"]) and run.history[0]["train_loss"] > 0
    rec = load_record(RunDir(run.dir).record_path(0))
    weight, data_coef = rec["weight"], rec["data_coef"]
    assert np.isfinite(weight).all() and (weight >= 0).all() and (data_coef >= 0).all()
    assert abs((weight + data_coef).mean() - 1) < 1e-5  # two full batches, each of mean total 1
    if method.startswith("lsat"):
        assert (weight == 1).all() and (data_coef == 0).all()
    else:
        assert weight.std() > 1e-3
    assert ((rec["steps_to_flip"] >= 0) == ("gd" in method)).all()


def test_objective_registry_and_partial():
    assert objectives.OBJECTIVES["lrat"] is objectives.lrat
    assert isinstance(build_step(_cfg("lrat")).objective, functools.partial)
