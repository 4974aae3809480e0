"""Gradient masking: every kind of deliberately masked model is caught by a warning that says what
to run next, honest models raise none, and BPDA (``--bpda``) sees through declared preprocessing."""

import pytest
import torch
from torch import nn

import irat
from irat.evaluation import masking, sanity
from irat.models import Preprocessing, Quantize, bpda
from test_evaluation import _toy, trained  # noqa: F401  (the trained toy model, a fixture)


class _Scaled(nn.Module):
    """Saturated softmax: logits × 10⁴, so p_y = 1 in float32 and the CE gradient vanishes."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return 1e4 * self.net(x)


class _Noisy(nn.Module):
    """A randomised defence: Gaussian noise on the input at every forward, also in eval mode."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x + 0.1 * torch.randn_like(x))


class _NaNGradient(nn.Module):
    """Exact forward, NaN input gradient: sqrt at 0 has an infinite derivative (0 · ∞)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x + torch.sqrt(x - x))


MASKED = {
    "quantised input": (lambda net: nn.Sequential(Quantize(8), net), "exactly zero for 100%"),
    "saturated softmax": (_Scaled, "the softmax is saturated"),
    "randomised defence": (_Noisy, "a randomised defence"),
    "NaN gradient": (_NaNGradient, "NaN or infinite for 100%"),
}


# ---------------------------------------------------------------- the checks by hand


def test_black_box_check_needs_a_clear_margin():
    assert sanity.check_black_box(0.70, 0.72, n=100) == []  # 2 points: noise
    assert sanity.check_black_box(0.70, 0.7299, n=100) == []
    w = sanity.check_black_box(0.69, 0.815, n=100)
    assert len(w) == 1 and "by 12.5 points" in w[0] and "--attacks clean,pgd-20,cw-20,square" in w[0]
    assert sanity.check_black_box(0.0, 0.03, n=20) == []  # 3 % of 20 is < 2 images: two are needed
    assert len(sanity.check_black_box(0.0, 0.1, n=20)) == 1


def test_nothing_broken_check_separates_a_robust_model_from_a_blind_attack():
    # a model robust at ε: nothing broken, but PGD lowers the margin far more than noise
    assert sanity.check_nothing_broken(50, 0, 0.1, drop_pgd=3.0, drop_random=0.2) == []
    w = sanity.check_nothing_broken(50, 0, 0.1, drop_pgd=0.3, drop_random=0.2)  # no better than noise
    assert len(w) == 1 and "robust accuracy equals clean accuracy at eps=0.1" in w[0]
    assert len(sanity.check_nothing_broken(50, 0, 0.1, drop_pgd=0.0, drop_random=0.0)) == 1
    assert len(sanity.check_nothing_broken(50, 0, 0.1, drop_pgd=0.1, drop_random=-1.0)) == 0
    assert sanity.check_nothing_broken(50, 1, 0.1, drop_pgd=0.0, drop_random=0.0) == []  # one broken
    assert sanity.check_nothing_broken(9, 0, 0.1, drop_pgd=0.0, drop_random=0.0) == []  # too few
    assert sanity.check_nothing_broken(50, 0, 0.0, drop_pgd=0.0, drop_random=0.0) == []  # ε = 0


def test_gradient_check_tells_saturation_from_a_hidden_gradient():
    assert sanity.check_gradients(0.1, 0.1, 0.1, n=200) == []  # 10 % is the limit
    (w,) = sanity.check_gradients(0.5, 0.0, 0.0, n=200)
    assert "saturated" in w and "apgd-t" in w
    (w,) = sanity.check_gradients(0.5, 0.5, 0.0, n=200)
    assert "exactly zero for 50% of 200 points" in w and "--bpda" in w
    (w,) = sanity.check_gradients(0.0, 0.0, 0.2, n=200)
    assert "NaN or infinite for 20%" in w


def test_randomness_check():
    assert sanity.check_randomness(1e-4) == [] and sanity.check_randomness(0.0) == []
    (w,) = sanity.check_randomness(0.05)
    assert "randomised defence" in w and "autoattack-rand" in w


def test_white_box_names():
    for name in (
        "pgd-20",
        "pgd-100:1/255",
        "cw-20x2",
        "fgsm",
        "apgd-ce",
        "apgd-t+fab-t",
        "lm-pgd",
        "fmn-100",
    ):
        assert masking.is_white_box(name)
    for name in ("square", "apgd-ce+square", "autoattack", "autoattack-rand", "clean", "spsa", "spsa-50"):
        assert not masking.is_white_box(name)


def test_input_gradients_and_output_change_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    x, y = torch.tensor([[[[0.0, 0.0]]]], dtype=torch.float64), torch.tensor([0])
    g_ce, g_margin = masking.input_gradients(model, x, y)
    # z = (x1, 3·x2) = (0, 0): p = (½, ½); ∇CE = Wᵀ(p − e_0) = (−½, 3/2); ∇(z_0 − z_1) = (1, −3)
    assert torch.allclose(g_ce.flatten(), torch.tensor([-0.5, 1.5], dtype=torch.float64))
    assert torch.allclose(g_margin.flatten(), torch.tensor([1.0, -3.0], dtype=torch.float64))
    assert masking.output_change(model, x) == 0.0
    assert masking.margin_drop(
        model, x, y, x + torch.tensor([0.0, 0.5]).view(1, 1, 1, 2), torch.tensor([True])
    ) == (pytest.approx(1.5))


# ---------------------------------------------------------------- BPDA


def test_quantize_rounds_to_its_levels():
    q = Quantize(3)
    x = torch.tensor([0.0, 0.2, 0.26, 0.74, 0.8, 1.0])
    assert torch.equal(q(x), torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0, 1.0]))
    with pytest.raises(ValueError, match="integer >= 2"):
        Quantize(1)


def test_bpda_keeps_the_forward_and_makes_the_backward_the_identity():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double()
    model = nn.Sequential(Quantize(4), net)
    x = torch.rand(5, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    plain = model(x)
    (g_plain,) = torch.autograd.grad(plain.sum(), x)
    assert torch.equal(g_plain, torch.zeros_like(x))  # round() has no gradient
    with bpda(model):
        assert model[0].bpda
        through = model(x)
        (g,) = torch.autograd.grad(through.sum(), x)
    assert not model[0].bpda  # restored
    assert torch.equal(through, plain)  # forward unchanged
    q = Quantize(4)(x.detach()).requires_grad_(True)
    (g_net,) = torch.autograd.grad(net(q).sum(), q)
    assert torch.allclose(g, g_net)  # backward: ∇net at the quantised point, ∂q/∂x = I
    custom = nn.Sequential(Preprocessing(lambda v: (v > 0.5).double()), net)
    with bpda(custom):
        (g,) = torch.autograd.grad(custom(x).sum(), x)
    assert g.abs().sum() > 0


def test_bpda_is_refused_for_a_model_without_declared_preprocessing(trained):  # noqa: F811
    with pytest.raises(ValueError, match=r"irat.models.Preprocessing\(fn\)"):
        with bpda(trained):
            pass
    with pytest.raises(ValueError, match="declares none"):
        irat.evaluate(trained, _toy(20, 0), ["clean"], eps=0.1, bpda=True, progress=False)


def test_config_preprocess_builds_the_quantiser_with_the_same_checkpoint_keys():
    spec = irat.data.registry.get("fashion-mnist").spec
    plain = irat.models.create("fc1", dataset=spec)
    quantised = irat.models.create("fc1", dataset=spec, preprocess="quantize-8")
    assert isinstance(quantised.preprocess, Quantize) and quantised.preprocess.levels == 8
    assert quantised.irat_preprocess == "quantize-8" and plain.irat_preprocess is None
    assert set(quantised.state_dict()) == set(plain.state_dict())
    with pytest.raises(irat.ConfigError, match="quantize-L"):
        irat.config.from_dict({"model": {"preprocess": "jpeg"}})


# ---------------------------------------------------------------- masked and honest models


@pytest.mark.parametrize("kind", list(MASKED))
def test_each_kind_of_masked_model_is_caught(trained, kind):  # noqa: F811
    wrap, fragment = MASKED[kind]
    torch.manual_seed(0)
    res = irat.evaluate(wrap(trained), _toy(200, 3), ["clean", "pgd-20"], eps=0.3, progress=False)
    assert any(fragment in w for w in res.warnings), res.warnings
    assert all("next: " in w for w in res.warnings)  # each says what to run next
    assert res.masking["images"] == 200 and res.to_dict()["masking"] == res.masking


def test_a_quantised_model_is_caught_three_ways_and_bpda_confirms_it(trained):  # noqa: F811
    model, test = nn.Sequential(Quantize(8), trained), _toy(200, 3)
    res = irat.evaluate(model, test, ["clean", "pgd-20"], eps=0.3, progress=False)
    assert res.accuracy["pgd-20"] == res.accuracy["clean"] == 1.0  # PGD cannot move
    text = " ".join(res.warnings)
    assert "robust accuracy equals clean accuracy" in text and "the black-box attack square" in text
    assert res.masking["black_box"]["accuracy"] < 0.9
    seen = irat.evaluate(model, test, ["clean", "pgd-20"], eps=0.3, progress=False, bpda=True)
    assert seen.warnings == [] and seen.bpda and "attacks with BPDA" in seen.title()
    assert seen.accuracy["pgd-20"] < 0.4  # the robustness was an artefact
    assert seen.masking["gradient_zero_ce"] == 0.0


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_honest_models_raise_no_warning(trained, eps):  # noqa: F811
    res = irat.evaluate(trained, _toy(200, 3), ["clean", "pgd-20", "cw-20"], eps=eps, progress=False)
    assert res.warnings == []
    if eps == 0.1:  # robust at this radius: nothing broken, yet PGD pushes the margins down
        assert res.masking["broken_by_white_box"] == 0
        assert res.masking["margin_drop_pgd"] > 2 * res.masking["margin_drop_random"]


def test_an_undefended_model_raises_no_warning():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))  # untrained: an honest, weak model
    res = irat.evaluate(model, _toy(100, 4), ["clean", "pgd-10", "fgsm"], eps=0.3, progress=False)
    assert res.warnings == []


@pytest.mark.slow
def test_an_at_tiny_cnn_on_real_fashion_mnist_raises_no_warning(fmnist_small, tmp_path):
    """The kind of model ``make demo`` trains (tiny-cnn, PGD-10 AT at ε = 0.1), smaller."""
    torch.manual_seed(0)
    model = irat.models.create("tiny-cnn", dataset=fmnist_small.spec)
    run = irat.train(model, fmnist_small, "at", 1, 0.1, out=tmp_path / "at", lr=0.05, progress=False)
    res = irat.evaluate(
        run.model, fmnist_small.test, ["clean", "pgd-20", "cw-20"], eps=0.1, limit=100, progress=False
    )
    assert res.warnings == [] and res.accuracy["pgd-20"] < res.accuracy["clean"]


def test_cli_eval_warns_on_a_quantised_run_and_bpda_confirms(tiny_npz, tmp_path, capsys):
    from irat.cli.main import main

    out = tmp_path / "q"
    common = ["--data.dataset=npz", f"--data.root={tiny_npz}", "--data.val_size=40", "--model.name=fc1"]
    train = ["--epochs=2", "--steps=2", "--eps=0.2", "--progress=false", "--model.preprocess=quantize-4"]
    assert main(["train", *common, *train, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--attacks", "clean,pgd-10"]) == 0
    err = capsys.readouterr().err
    assert "WARNING (irat.evaluate): the input gradient is exactly zero" in err
    assert main(["eval", str(out), "--attacks", "clean,pgd-10", "--bpda"]) == 0
    captured = capsys.readouterr()
    assert "exactly zero" not in captured.err and "attacks with BPDA" in captured.out


def test_autoattack_rand_runs_the_packages_eot_cascade(trained, monkeypatch):  # noqa: F811
    """The attack the randomness warning recommends: the package's version for randomised
    defences, APGD-CE then APGD-DLR with 20 EOT draws per gradient (the package is not run here)."""
    import pyautoattack

    seen = {}

    def record(self, x, y, batch_size):
        seen.update(version=self.version, attacks=list(self.attacks_to_run), eot=self.apgd.eot_iter)
        return x, y

    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", record)
    test = _toy(8, 5)
    irat.attacks.build("autoattack-rand", eps=0.3)(trained, test.x, test.y)
    assert seen == {"version": "rand", "attacks": ["apgd-ce", "apgd-dlr"], "eot": 20}
    with pytest.raises(ValueError, match="standard"):
        irat.attacks.autoattack(trained, test.x, test.y, eps=0.3, version="rand", attacks=["apgd-ce"])


def test_an_evaluated_spsa_is_a_second_black_box_check(trained):  # noqa: F811
    """A NaN input gradient: PGD cannot move, SPSA (logits only) breaks points and says so."""
    torch.manual_seed(0)
    res = irat.evaluate(
        _NaNGradient(trained), _toy(40, 3), ["clean", "pgd-20", "spsa"], eps=0.3, progress=False
    )
    assert res.accuracy["spsa"] < res.accuracy["pgd-20"] - 0.1
    assert any("the black-box attack spsa leaves" in w for w in res.warnings), res.warnings
