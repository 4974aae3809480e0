"""Instance-weighting schemes against hand-computed values and the invariants of METHODS.md §7.3
and §7.4 (GAIRAT, WMMR, MAIL, VIR), plus the ``make`` / ``needs`` registry."""

import math

import pytest
import torch

from irat import losses, weighting
from irat.types import SampleStats
from irat.weighting import (
    const3,
    gairat,
    gairat_lambda,
    mail,
    make,
    needs,
    normalize_to_batch,
    prob_margin_adv,
    prob_margin_dif,
    prob_margin_nat,
    vir,
    vir_stats,
    vulnerability,
    with_burn_in,
    wmmr,
)

Z = torch.tensor
D = torch.float64


def _logits(b=12, n=5, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, n, generator=g, dtype=D) * scale
    y = torch.randint(0, n, (b,), generator=g)
    return z, y


def _stats(b=12, n=5, seed=0, epoch=0, nat=True, path=True):
    z_adv, y = _logits(b, n, seed)
    z_nat, _ = _logits(b, n, seed + 100)
    z_wrong, _ = _logits(b, n, seed + 200)
    z_nat_eval, _ = _logits(b, n, seed + 400)
    kappa = torch.randint(0, 11, (b,), generator=torch.Generator().manual_seed(seed + 300))
    return SampleStats(
        idx=torch.arange(b),
        y=y,
        logits_adv=z_adv,
        logits_nat=z_nat if nat else None,
        steps_to_flip=kappa if path else None,
        epoch=epoch,
        logits_first_wrong=z_wrong if path else None,
        logits_nat_eval=z_nat_eval if path else None,
    )


def _permute(stats, perm):
    def p(t):
        return None if t is None else t[perm]

    return SampleStats(
        idx=stats.idx[perm],
        y=stats.y[perm],
        logits_adv=stats.logits_adv[perm],
        logits_nat=p(stats.logits_nat),
        steps_to_flip=p(stats.steps_to_flip),
        epoch=stats.epoch,
        logits_first_wrong=p(stats.logits_first_wrong),
        logits_nat_eval=p(stats.logits_nat_eval),
    )


CONFIGS = [
    ("uniform", {}),
    ("gairat", {}),
    ("gairat", {"schedule": "piecewise", "epochs": 12, "start": 0}),
    ("wmmr", {}),
    ("wmmr", {"margin_on": "nat", "alpha": 2.0}),
    ("mail", {}),
    ("mail", {"gamma": 30.0, "beta": -0.07}),
    ("mail", {"margin": "nat"}),
    ("mail", {"margin": "dif"}),
    ("mail", {"norm": "const3"}),
    ("vir", {}),
    ("vir", {"alpha": 8.0, "gamma": 3.0, "beta": 1.6}),
    ("hard", {}),
]
NORMALISED = [
    c for c in CONFIGS if c[0] in ("gairat", "wmmr", "hard") or (c[0] == "mail" and "norm" not in c[1])
]


# ---------------------------------------------------------------- normalize_to_batch (§1.1.2)


def test_normalize_hand_value_and_sum():
    w = normalize_to_batch(Z([1.0, 3.0], dtype=D))
    assert torch.allclose(w, Z([0.5, 1.5], dtype=D), atol=1e-10)
    raw = torch.rand(37, generator=torch.Generator().manual_seed(1), dtype=D) + 1e-3
    assert abs(normalize_to_batch(raw).sum().item() - 37) <= 1e-5 * 37


def test_normalize_is_invariant_to_scaling_and_permutation_equivariant():
    raw = torch.rand(20, generator=torch.Generator().manual_seed(2), dtype=D)
    w = normalize_to_batch(raw)
    assert torch.allclose(normalize_to_batch(raw * 123.4), w, atol=1e-10)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(normalize_to_batch(raw[perm]), w[perm], atol=1e-12)


@pytest.mark.parametrize("raw", [torch.zeros(5), torch.full((5,), float("inf")), Z([1.0, float("nan"), 1.0])])
def test_normalize_falls_back_to_ones_when_the_sum_is_zero_or_not_finite(raw):
    assert torch.equal(normalize_to_batch(raw), torch.ones_like(raw))


def test_normalize_detaches():
    raw = torch.rand(4, requires_grad=True)
    assert not normalize_to_batch(raw).requires_grad


# ---------------------------------------------------------------- GAIRAT (§4.6, §7.4)


@pytest.mark.parametrize(
    "kappa,expected",
    [(0, 0.99966), (3, 0.88080), (4, 0.5), (5, 0.11920), (7, 0.0024726), (10, 6.1442e-6)],
)
def test_gairat_reference_values(kappa, expected):
    w = gairat(Z([kappa]), 10, -1.0).item()
    assert w == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_gairat_exact_half_and_full_formula():
    assert gairat(Z([4], dtype=torch.long), 10, -1.0).item() == 0.5
    kappa = torch.arange(0, 11, dtype=D)
    for lam, k in [(-1.0, 10), (0.5, 7), (-2.0, 3)]:
        ref = 0.5 * (1 + torch.tanh(lam + 5 * (1 - 2 * kappa[: k + 1] / k)))
        assert torch.allclose(gairat(kappa[: k + 1], k, lam), ref, atol=1e-12)


def test_gairat_is_non_increasing_in_kappa_and_in_zero_one():
    w = gairat(torch.arange(0, 11), 10, -1.0)
    assert (w[1:] <= w[:-1]).all() and (w[1:] < w[:-1]).all()
    assert ((w > 0) & (w < 1)).all()


def test_gairat_lambda_plus_inf_gives_ones():
    assert torch.equal(gairat(torch.arange(0, 11), 10, math.inf), torch.ones(11))


def test_gairat_odd_k_uses_the_exact_form_not_the_floor_form():
    # K=5, κ=2: exact 5(1 − 4/5) = 1 → σ(2·0) = 0.5 with λ = −1; the floor form would give 5·(2−2)/2 = 0
    assert gairat(Z([2]), 5, -1.0).item() == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize(
    "epoch,schedule,expected",
    [
        (0, "fixed", math.inf),
        (59, "fixed", math.inf),
        (60, "fixed", -1.0),
        (119, "fixed", -1.0),
        (59, "piecewise", math.inf),
        (60, "piecewise", -1.0),
        (89, "piecewise", -1.0),
        (90, "piecewise", -2.0),
        (109, "piecewise", -2.0),
        (110, "piecewise", -2.5),
        (119, "piecewise", -2.5),
        (59, "linear", 10.0),
        (60, "linear", 10.0 - 0.5 * 11.0),
        (90, "linear", 10.0 - 0.75 * 11.0),
    ],
)
def test_gairat_lambda_schedules_on_the_gairat_code_epochs(epoch, schedule, expected):
    assert gairat_lambda(epoch, epochs=120, start=60, schedule=schedule) == pytest.approx(expected)


def test_gairat_lambda_piecewise_scales_with_epochs_and_waits_for_start():
    assert gairat_lambda(29, epochs=40, start=10, lam=-0.5, schedule="piecewise") == -0.5
    assert gairat_lambda(30, epochs=40, start=10, lam=-0.5, schedule="piecewise") == -1.5
    assert gairat_lambda(37, epochs=40, start=10, lam=-0.5, schedule="piecewise") == -2.0
    # a late start holds λ_max even past 3/4 of training
    assert gairat_lambda(35, epochs=40, start=36, schedule="piecewise") == math.inf


def test_gairat_lambda_linear_uses_finite_lam_max_and_rejects_infinite():
    assert gairat_lambda(50, epochs=100, start=0, lam=-1.0, lam_max=3.0, schedule="linear") == 1.0
    with pytest.raises(ValueError, match="finite lam_max"):
        gairat_lambda(50, epochs=100, start=0, lam_max=math.inf, schedule="linear")
    with pytest.raises(ValueError, match="schedule"):
        gairat_lambda(0, epochs=10, start=0, schedule="cosine")


def test_make_gairat_before_start_is_uniform_and_after_start_matches_normalised_raw():
    s = _stats(epoch=3)
    before = make("gairat", start=5)(s)
    assert torch.allclose(before, torch.ones(12, dtype=D), rtol=0, atol=1e-12)  # ε 1e-12 in the sum
    after = make("gairat", start=3)(s)
    assert torch.allclose(after, normalize_to_batch(gairat(s.steps_to_flip.to(D), 10, -1.0)), atol=1e-12)
    assert not torch.allclose(after, before)


# ---------------------------------------------------------------- WMMR (§4.7, §7.4)


def test_wmmr_hand_values():
    m = Z([-1.0, 0.0, 0.5], dtype=D)
    assert torch.allclose(wmmr(m, 2.0), torch.exp(Z([2.0, 0.0, -1.0], dtype=D)), atol=1e-12)


def test_wmmr_normalised_equals_batch_softmax():
    m = torch.rand(16, generator=torch.Generator().manual_seed(4), dtype=D) * 2 - 1
    for alpha in (0.1, 2.0):
        assert torch.allclose(
            normalize_to_batch(wmmr(m, alpha)), 16 * torch.softmax(-alpha * m, 0), atol=1e-10
        )


def test_wmmr_strictly_decreasing_in_margin_and_alpha_zero_gives_ones():
    m = torch.linspace(-1, 1, 21, dtype=D)
    w = wmmr(m, 0.1)
    assert (w[1:] < w[:-1]).all()
    assert torch.allclose(normalize_to_batch(wmmr(m, 0.0)), torch.ones(21, dtype=D), rtol=0, atol=1e-12)


def test_make_wmmr_reads_the_adversarial_margin_by_default_and_natural_on_request():
    s = _stats()
    adv = make("wmmr", alpha=1.0)(s)
    nat = make("wmmr", alpha=1.0, margin_on="nat")(s)
    assert torch.allclose(adv, 12 * torch.softmax(-losses.pm(s.logits_adv, s.y), 0), atol=1e-10)
    assert torch.allclose(nat, 12 * torch.softmax(-losses.pm(s.logits_nat, s.y), 0), atol=1e-10)
    assert not torch.allclose(adv, nat)


# ---------------------------------------------------------------- MAIL (§4.8, §7.4)


@pytest.mark.parametrize("pm,expected", [(-1.0, 0.994780), (0.0, 0.562177), (0.5, 0.095349), (1.0, 0.008577)])
def test_mail_reference_values(pm, expected):
    assert mail(Z([pm], dtype=D), 5.0, 0.05).item() == pytest.approx(expected, abs=1e-6)


def test_mail_half_at_bias_decreasing_and_gamma_zero_gives_ones():
    assert mail(Z([-0.07], dtype=D), 30.0, -0.07).item() == 0.5
    pm = torch.linspace(-1, 1, 41, dtype=D)
    w = mail(pm, 5.0, 0.05)
    assert (w[1:] < w[:-1]).all()
    assert torch.allclose(
        normalize_to_batch(mail(pm, 0.0, 0.05)), torch.ones(41, dtype=D), rtol=0, atol=1e-12
    )


def test_prob_margins_read_the_right_logits():
    z_nat = Z([[3.0, 0.0, 0.0], [0.0, 2.0, 1.0]], dtype=D)
    z_adv = Z([[0.0, 3.0, 0.0], [0.0, 0.0, 2.0]], dtype=D)
    y = Z([0, 1])
    assert torch.allclose(prob_margin_nat(z_nat, y), losses.pm(z_nat, y))
    assert torch.allclose(prob_margin_adv(z_adv, y), losses.pm(z_adv, y))
    assert (prob_margin_nat(z_nat, y) > 0).all() and (prob_margin_adv(z_adv, y) < 0).all()


def test_prob_margin_dif_hand_value_zero_when_unperturbed_and_unclamped():
    z_nat = Z([[math.log(3.0), 0.0]], dtype=D)  # p_y = 0.75
    z_wrong = Z([[0.0, math.log(3.0)]], dtype=D)  # p_y = 0.25
    y = Z([0])
    assert prob_margin_dif(z_nat, z_wrong, y).item() == pytest.approx(0.5, abs=1e-12)
    assert prob_margin_dif(z_wrong, z_nat, y).item() == pytest.approx(-0.5, abs=1e-12)  # not clamped
    z, yy = _logits()
    assert torch.equal(prob_margin_dif(z, z, yy), torch.zeros(12, dtype=D))


def test_make_mail_margins_and_normalisations():
    s = _stats()
    y = s.y
    expect = {
        "adv": losses.pm(s.logits_adv, y),
        "nat": losses.pm(s.logits_nat, y),
        # PM_dif reads the attack's eval-mode natural logits, not the training forward's
        "dif": s.logits_nat_eval.softmax(1).gather(1, y[:, None]).squeeze(1)
        - s.logits_first_wrong.softmax(1).gather(1, y[:, None]).squeeze(1),
    }
    for margin, pm in expect.items():
        w = make("mail", margin=margin)(s)
        assert torch.allclose(w, normalize_to_batch(torch.sigmoid(-5 * (pm - 0.05))), atol=1e-12), margin
    w3 = make("mail", norm="const3")(s)
    assert torch.allclose(w3, 3 * torch.sigmoid(-5 * (expect["adv"] - 0.05)), atol=1e-12)
    assert torch.equal(const3(Z([1.0, 0.5])), Z([3.0, 1.5]))


# ---------------------------------------------------------------- VIR (§4.9, §7.4)


def test_vir_reference_vulnerability_score():
    assert vulnerability(Z([0.5], dtype=D), 7.0, 10.0).item() == pytest.approx(7 * math.exp(-5), abs=1e-12)
    assert vir(Z([0.5], dtype=D), Z([1.0], dtype=D), 7.0, 10.0, 0.0).item() == pytest.approx(
        0.047166, abs=1e-6
    )
    # with β and a KL of 2: 2·7e^{−5} + 0.007
    assert vir(Z([0.5], dtype=D), Z([2.0], dtype=D), 7.0, 10.0, 0.007).item() == pytest.approx(
        2 * 7 * math.exp(-5) + 0.007, abs=1e-12
    )


def test_vir_vulnerability_range_and_monotonicity():
    p = torch.linspace(0, 1, 51, dtype=D)
    s = vulnerability(p, 7.0, 10.0)
    assert (s[1:] < s[:-1]).all()
    assert s.max().item() == pytest.approx(7.0) and s.min().item() == pytest.approx(7 * math.exp(-10))
    assert ((s >= 7 * math.exp(-10) - 1e-15) & (s <= 7.0)).all()


def test_vir_floor_and_equality_at_unperturbed_input():
    z_nat, y = _logits()
    z_adv, _ = _logits(seed=5)
    p_y, kl_ = vir_stats(z_nat, z_adv, y)
    assert torch.allclose(p_y, z_nat.softmax(1).gather(1, y[:, None]).squeeze(1))
    assert torch.allclose(kl_, losses.kl(z_nat, z_adv))
    w = vir(p_y, kl_, 7.0, 10.0, 0.007)
    assert (w >= 0.007).all() and (w > 0.007).any()
    p0, kl0 = vir_stats(z_nat, z_nat, y)
    assert (kl0 == 0).all()
    assert torch.equal(vir(p0, kl0, 7.0, 10.0, 0.007), torch.full((12,), 0.007, dtype=D))
    assert torch.equal(vir(p_y, kl_, 0.0, 10.0, 0.3), torch.full((12,), 0.3, dtype=D))


def test_make_vir_is_not_normalised():
    s = _stats()
    w = make("vir")(s)
    p_y, kl_ = vir_stats(s.logits_nat, s.logits_adv, s.y)
    assert torch.allclose(w, 7.0 * torch.exp(-10.0 * p_y) * kl_ + 0.007, atol=1e-12)
    assert abs(w.sum().item() - 12) > 1e-3


# ---------------------------------------------------------------- common invariants (§7.3)


@pytest.mark.parametrize("name,params", CONFIGS, ids=lambda v: str(v))
def test_weights_are_finite_non_negative_detached_and_shaped(name, params):
    s = _stats()
    grad_stats = SampleStats(
        idx=s.idx,
        y=s.y,
        logits_adv=s.logits_adv.clone().requires_grad_(),
        logits_nat=s.logits_nat.clone().requires_grad_(),
        steps_to_flip=s.steps_to_flip.to(D).requires_grad_(),
        epoch=0,
        logits_first_wrong=s.logits_first_wrong.clone().requires_grad_(),
        logits_nat_eval=s.logits_nat_eval.clone().requires_grad_(),
    )
    w = make(name, **params)(grad_stats)
    assert w.shape == (12,) and w.is_floating_point()
    assert not w.requires_grad and w.grad_fn is None
    assert torch.isfinite(w).all() and (w >= 0).all()


@pytest.mark.parametrize("name,params", NORMALISED, ids=lambda v: str(v))
def test_normalised_schemes_sum_to_b(name, params):
    for b in (1, 7, 128):
        w = make(name, **params)(_stats(b=b, seed=b))
        assert abs(w.sum().item() - b) <= 1e-5 * b
        assert (w > 0).all()


@pytest.mark.parametrize("name,params", CONFIGS, ids=lambda v: str(v))
def test_permutation_equivariance(name, params):
    s = _stats(b=16, seed=7)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(8))
    scheme = make(name, **params)
    assert torch.allclose(scheme(_permute(s, perm)), scheme(s)[perm], atol=1e-12)


@pytest.mark.parametrize("name,params", CONFIGS, ids=lambda v: str(v))
def test_burn_in_gives_exact_ones(name, params):
    s = _stats(epoch=4)
    wrapped = with_burn_in(make(name, **params), burn_in=5)
    w = wrapped(s)
    assert torch.equal(w, torch.ones(12)) and not w.requires_grad
    after = with_burn_in(make(name, **params), burn_in=4)(s)
    assert torch.equal(after, make(name, **params)(s))


def test_schemes_registry_keeps_uniform_and_offers_defaults():
    s = _stats()
    assert torch.equal(weighting.SCHEMES["uniform"](s), torch.ones(12))
    assert set(weighting.SCHEMES) == {"uniform", "gairat", "wmmr", "mail", "vir", "lrat", "hard"}
    assert torch.equal(weighting.SCHEMES["mail"](s), make("mail")(s))
    assert torch.equal(weighting.SCHEME_FUNCTIONS["wmmr"](alpha=2.0)(s), make("wmmr", alpha=2.0)(s))


# ---------------------------------------------------------------- make / needs


@pytest.mark.parametrize(
    "name,params,missing,match",
    [
        ("gairat", {}, {"path": False}, "gairat needs steps_to_flip"),
        ("wmmr", {"margin_on": "nat"}, {"nat": False}, "wmmr with margin_on='nat' needs the natural logits"),
        ("mail", {"margin": "nat"}, {"nat": False}, "mail with margin='nat' needs the natural logits"),
        ("mail", {"margin": "dif"}, {"path": False}, "mail with margin='dif' needs logits_first_wrong"),
        ("vir", {}, {"nat": False}, "vir needs the natural logits"),
    ],
)
def test_make_raises_a_clear_error_when_a_statistic_is_missing(name, params, missing, match):
    with pytest.raises(ValueError, match=match):
        make(name, **params)(_stats(**missing))


@pytest.mark.parametrize("name,params", [("uniform", {}), ("wmmr", {}), ("mail", {})])
def test_schemes_on_adversarial_logits_need_nothing_else(name, params):
    w = make(name, **params)(_stats(nat=False, path=False))
    assert w.shape == (12,)


def test_make_rejects_unknown_names_parameters_and_options():
    with pytest.raises(ValueError, match="unknown weighting scheme 'no-such-scheme'"):
        make("no-such-scheme")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['slope'\]"):
        make("mail", slope=3.0)
    with pytest.raises(ValueError, match="mail margin"):
        make("mail", margin="lps")
    with pytest.raises(ValueError, match="mail norm"):
        make("mail", norm="sum")
    with pytest.raises(ValueError, match="wmmr margin_on"):
        needs("wmmr", margin_on="both")
    with pytest.raises(ValueError, match="finite lam_max"):
        make("gairat", schedule="linear", lam_max=math.inf)


@pytest.mark.parametrize(
    "name,params,expected",
    [
        ("uniform", {}, set()),
        ("gairat", {}, {"kappa"}),
        ("wmmr", {}, set()),
        ("wmmr", {"margin_on": "nat"}, {"nat"}),
        ("mail", {}, set()),
        ("mail", {"margin": "nat"}, {"nat"}),
        ("mail", {"margin": "dif"}, {"first_wrong"}),
        ("vir", {}, {"nat"}),
    ],
)
def test_needs(name, params, expected):
    assert needs(name, **params) == expected


def test_every_primitive_detaches_inputs_that_require_grad():
    z_nat, y = _logits()
    z_adv, _ = _logits(seed=9)
    zn, za = z_nat.clone().requires_grad_(), z_adv.clone().requires_grad_()
    v = torch.rand(12, dtype=D, requires_grad=True)
    outputs = [
        gairat(v * 10, 10, -1.0),
        wmmr(v, 0.1),
        mail(v, 5.0, 0.05),
        const3(v),
        vulnerability(v, 7.0, 10.0),
        vir(v, v, 7.0, 10.0, 0.007),
        prob_margin_adv(za, y),
        prob_margin_nat(zn, y),
        prob_margin_dif(zn, za, y),
        *vir_stats(zn, za, y),
    ]
    assert all(not o.requires_grad for o in outputs)


def test_make_gairat_uses_lambda_at_the_step_epoch():
    def expected(lam, k=10):
        return normalize_to_batch(gairat(_stats().steps_to_flip.to(D), k, lam))

    scheme = make("gairat", schedule="piecewise", epochs=12, start=4)
    for epoch, lam in [(4, -1.0), (8, -1.0), (9, -2.0), (10, -2.0), (11, -2.5)]:
        assert torch.allclose(scheme(_stats(epoch=epoch)), expected(lam), atol=1e-12), epoch
    assert torch.allclose(scheme(_stats(epoch=3)), torch.ones(12, dtype=D), atol=1e-12)
    fixed = make("gairat", num_steps=5, lam=0.5)
    assert torch.allclose(fixed(_stats(epoch=50)), expected(0.5, k=5), atol=1e-12)
