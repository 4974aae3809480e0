"""BiLAW (METHODS.md §4.11, §7.4): the weight network, its inputs, the meta-gradient against
central finite differences and the closed form, what the meta step leaves untouched, the three
steps in ``train_step``, the non-parametric variant, the held-out splits, the config, a short
run on real data and resume.

Gradient checks run in float64 on tiny networks: a smooth (tanh) MLP, so that the finite
differences never straddle a ReLU kink, and tiny-cnn itself (irat's Conv2d included)."""

import copy
import dataclasses
import functools

import pytest
import torch
from torch import nn

import irat
from irat import losses, objectives
from irat.config import ConfigError, resolve_config
from irat.data import Split, with_meta_split
from irat.training.assemble import build_learned, build_step, burn_in_epochs
from irat.training.step import train_step
from irat.types import Batch, SampleStats
from irat.weighting import LearnedWeighting, WeightNet, bilaw_meta_gradient, meta_weight_gradient
from irat.weighting.meta import functional_forward
from irat.weighting.weight_net import weight_inputs

FMNIST = irat.data.registry.get("fashion-mnist").spec
F64 = torch.float64


def _mlp(classes=3, bn=False):
    torch.manual_seed(0)
    layers = [nn.Flatten(), nn.Linear(16, 6)]
    layers += [nn.BatchNorm1d(6)] if bn else []
    layers += [nn.Tanh(), nn.Linear(6, classes)]
    return nn.Sequential(*layers).double()


def _images(n, seed, shape=(1, 4, 4), classes=3):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g, dtype=F64), torch.randint(0, classes, (n,), generator=g)


def _pseudo_val_loss(model, w, x, y, xv, yv, lr):
    """F(w) = L_val(θ − lr·∇_θ Σ w_i ce_i), written out independently of irat.weighting.meta."""
    params = dict(model.named_parameters())
    loss = (w * losses.ce(functional_forward(model, params, x), y)).sum()
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    theta = {n: p - lr * g for (n, p), g in zip(params.items(), grads)}
    return losses.ce(functional_forward(model, theta, xv), yv).mean()


def _finite_differences(model, net, x, y, delta, xv, yv, lr, h=1e-6):
    def f():
        omega = net(delta)
        return _pseudo_val_loss(model, omega / omega.sum(), x, y, xv, yv, lr).item()

    out = []
    with torch.no_grad():
        for p in net.parameters():
            flat, fd = p.view(-1), torch.zeros(p.numel(), dtype=F64)
            for i in range(p.numel()):
                old = flat[i].item()
                flat[i] = old + h
                with torch.enable_grad():
                    up = f()
                flat[i] = old - h
                with torch.enable_grad():
                    down = f()
                flat[i] = old
                fd[i] = (up - down) / (2 * h)
            out.append(fd.view_as(p))
    return out


# ---------------------------------------------------------------------------------------------
# the weight network and its inputs


@pytest.mark.parametrize("hidden", [(128,), (64,), (256,), (64, 64)])
def test_weight_net_outputs_lie_in_0_1_and_normalised_weights_sum_to_one(hidden):
    torch.manual_seed(0)
    net = WeightNet(10, hidden)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [*hidden, 1] and linears[0].in_features == 10
    delta = torch.rand(32, 10) * 2 - 1
    omega = net(delta)
    assert omega.shape == (32,) and ((omega > 0) & (omega < 1)).all()
    w = net.normalized(delta)
    assert (w > 0).all() and torch.allclose(w.sum(), torch.tensor(1.0), atol=1e-6)
    assert w.requires_grad  # the meta step differentiates through it
    with pytest.raises(ValueError, match="hidden width"):
        WeightNet(10, ())


def test_weight_inputs_match_hand_computed_values():
    z_nat = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    z_adv = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    y = torch.tensor([0, 2])
    p = z_nat.softmax(1)
    delta = weight_inputs("mc-margin", y, z_adv, z_nat)
    # Δ_j = p_y − p_j, Δ_y = 0, Δ ∈ [−1, 1], min_{j≠y} Δ_j = pm
    torch.testing.assert_close(delta[0], p[0, 0] - p[0])
    torch.testing.assert_close(delta[1], p[1, 2] - p[1])
    assert (delta.gather(1, y[:, None]) == 0).all() and delta.abs().max() <= 1
    others = delta.masked_fill(torch.nn.functional.one_hot(y, 3).bool(), float("inf")).amin(1)
    torch.testing.assert_close(others, losses.pm(z_nat, y))
    # margin_on=adv reads x''s logits
    torch.testing.assert_close(
        weight_inputs("mc-margin", y, z_adv, None, "adv"), losses.mc_margin(z_adv.softmax(1), y)
    )
    torch.testing.assert_close(weight_inputs("margin", y, z_adv, z_nat)[:, 0], losses.pm(z_nat, y))
    torch.testing.assert_close(weight_inputs("adv-loss", y, z_adv, None)[:, 0], losses.ce(z_adv, y))
    torch.testing.assert_close(
        weight_inputs("loss-diff", y, z_adv, z_nat)[:, 0], losses.ce(z_adv, y) - losses.ce(z_nat, y)
    )
    assert weight_inputs("adv-loss", y, z_adv, None).shape == (2, 1)
    with pytest.raises(ValueError, match="natural logits"):
        weight_inputs("mc-margin", y, z_adv, None, "nat")


# ---------------------------------------------------------------------------------------------
# the meta-gradient


@pytest.mark.parametrize("arch", ["mlp", "tiny-cnn"])
def test_meta_gradient_matches_central_finite_differences(arch):
    if arch == "mlp":
        model, shape, classes = _mlp(), (1, 4, 4), 3
    else:
        torch.manual_seed(0)
        model, shape, classes = irat.models.create("tiny-cnn", dataset=FMNIST).double(), (1, 28, 28), 10
    torch.manual_seed(1)
    net = WeightNet(classes, (4,)).double()
    x, y = _images(6, 2, shape, classes)
    xv, yv = _images(5, 3, shape, classes)
    delta = torch.rand(6, classes, dtype=F64, generator=torch.Generator().manual_seed(4)) * 2 - 1
    grads = bilaw_meta_gradient(model, net, x, y, delta, xv, yv, lr_theta=0.5)
    fds = _finite_differences(model, net, x, y, delta, xv, yv, lr=0.5)
    assert [g.shape for g in grads] == [p.shape for p in net.parameters()]
    for g, fd in zip(grads, fds):
        scale = g.abs().max()
        assert scale > 1e-8  # a gradient worth checking
        assert ((g - fd).abs() <= 1e-5 * scale).all(), (g - fd).abs().max() / scale
        assert (g - fd).norm() / fd.norm() < 1e-5


def test_the_finite_difference_check_can_fail():
    model, net = _mlp(), WeightNet(3, (4,)).double()
    x, y = _images(6, 2)
    xv, yv = _images(5, 3)
    delta = torch.rand(6, 3, dtype=F64) * 2 - 1
    grads = bilaw_meta_gradient(model, net, x, y, delta, xv, yv, lr_theta=0.5)
    fds = _finite_differences(model, net, x, y, delta, xv, yv, lr=0.5 * 1.001)  # another lr_θ
    assert any((g - fd).norm() / fd.norm() > 1e-5 for g, fd in zip(grads, fds))


def test_weight_gradient_is_the_closed_form_for_unnormalised_weights():
    # ∂F/∂w_j = −lr_θ·∇L_val(θ̃)ᵀ∇ℓ_j(θ)
    model, lr = _mlp(), 0.3
    x, y = _images(5, 2)
    xv, yv = _images(4, 3)
    w = torch.rand(5, dtype=F64, generator=torch.Generator().manual_seed(5))
    g = meta_weight_gradient(model, w, x, y, xv, yv, lr)
    params = dict(model.named_parameters())
    loss = (w * losses.ce(model(x), y)).sum()
    step = torch.autograd.grad(loss, list(params.values()))
    theta = {n: (p - lr * s).detach().requires_grad_(True) for (n, p), s in zip(params.items(), step)}
    val = losses.ce(functional_forward(model, theta, xv), yv).mean()
    grad_val = torch.autograd.grad(val, list(theta.values()))  # ∇L_val at θ̃
    closed = []
    for j in range(5):
        grad_j = torch.autograd.grad(
            losses.ce(model(x[j : j + 1]), y[j : j + 1]).sum(), list(params.values())
        )
        closed.append(-lr * sum((a * b).sum() for a, b in zip(grad_val, grad_j)))
    torch.testing.assert_close(g, torch.stack(closed), rtol=1e-8, atol=1e-12)


def test_no_pseudo_step_means_no_meta_gradient():
    model, net = _mlp(), WeightNet(3, (4,)).double()
    x, y = _images(6, 2)
    xv, yv = _images(5, 3)
    grads = bilaw_meta_gradient(model, net, x, y, torch.rand(6, 3, dtype=F64), xv, yv, lr_theta=0.0)
    assert all((g == 0).all() for g in grads)


def test_meta_gradient_leaves_parameters_grad_and_batchnorm_buffers_untouched():
    model = _mlp(bn=True).train()
    x, y = _images(6, 2)
    xv, yv = _images(5, 3)
    model(x).sum().backward()  # a .grad that must survive, and BatchNorm statistics to keep
    before = copy.deepcopy(model.state_dict())
    grads_before = [p.grad.clone() for p in model.parameters()]
    net = WeightNet(3, (4,)).double()
    out = bilaw_meta_gradient(model, net, x, y, torch.rand(6, 3, dtype=F64), xv, yv, lr_theta=0.5)
    assert any((g != 0).any() for g in out)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # parameters, running mean/var, num_batches_tracked
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads_before))
    assert model.training


# ---------------------------------------------------------------------------------------------
# the learned weighting inside train_step


def _learned(parametric=True, n_meta=24, classes=3, shape=(1, 4, 4), **kw):
    x, y = _images(n_meta, 9, shape, classes)
    learned = LearnedWeighting(
        Split(x, y, torch.arange(n_meta)), classes, parametric=parametric, batch_size=8, **kw
    )
    return learned.to(dtype=F64)


def _stats(model, x_adv, y, x=None):
    with torch.no_grad():
        z_adv, z_nat = model(x_adv), model(x if x is not None else x_adv)
    return SampleStats(torch.arange(len(y)), y, z_adv, z_nat, None, 0)


@pytest.mark.parametrize("bn", [False, True])
def test_meta_step_takes_one_sgd_step_on_the_public_meta_gradient_and_leaves_theta(bn):
    model = _mlp(bn=bn).train()
    learned = _learned()
    x_adv, y = _images(6, 2)
    x, _ = _images(6, 7)
    stats = _stats(model, x_adv, y, x)
    net0 = copy.deepcopy(learned.net)
    xv, yv = copy.deepcopy(learned)._next_batch()  # the batch the meta step will draw
    expected = bilaw_meta_gradient(model, net0, x_adv, y, learned.features(stats), xv, yv, lr_theta=0.2)
    logits = model(x_adv)  # the step's training forward (it moves BatchNorm's statistics once)
    theta0 = copy.deepcopy(model.state_dict())
    # no attack: the validation batch enters as it is, so both see the same x̂'
    batch, adv = Batch(torch.arange(6), x, y), irat.types.AttackResult(x_adv)
    learned.meta_step(model, batch, adv, None, logits, stats, 0.2, attack=None, objective=objectives.at)
    wd, lr = 1e-4, 1e-3  # LearnedWeighting's defaults; first SGD step: no momentum yet
    for p, p0, g in zip(learned.net.parameters(), net0.parameters(), expected):
        torch.testing.assert_close(p, p0 - lr * (g + wd * p0), rtol=1e-10, atol=1e-14)
    # step 2 leaves θ, the BatchNorm statistics and .grad as they were
    assert all(torch.equal(v, theta0[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert learned.steps == 1


def test_learned_weights_permute_with_the_batch():
    model, learned = _mlp(), _learned()
    x_adv, y = _images(8, 2)
    x, _ = _images(8, 7)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    w = learned.weights(_stats(model, x_adv, y, x))
    w_perm = learned.weights(_stats(model, x_adv[perm], y[perm], x[perm]))
    torch.testing.assert_close(w_perm, w[perm])
    assert not torch.allclose(w, torch.ones_like(w))


def test_step_three_uses_the_updated_detached_weights_and_does_not_move_mu():
    cfg = resolve_config(None, method="bilaw", eps=0.1, steps=2)
    model = _mlp().train()
    learned = _learned()
    parts = build_step(cfg, torch.Generator().manual_seed(0), learned=learned)
    seen = {}
    original = learned.meta_step

    def spy(*args, **kw):
        original(*args, **kw)
        seen["mu"] = copy.deepcopy(learned.net.state_dict())

    parts = dataclasses.replace(parts, meta_step=functools.partial(spy, **parts.meta_step.keywords))
    x, y = _images(6, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = train_step(model, Batch(torch.arange(6), x, y), parts, opt, epoch=0)
    after = learned.net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in seen["mu"].items())  # step 3 left μ alone
    assert not out.weights.requires_grad
    torch.testing.assert_close(out.weights, learned.weights(out.stats))  # ω_{μ_{t+1}}(Δ_t)
    torch.testing.assert_close(out.weights.mean(), torch.tensor(1.0, dtype=F64))


@pytest.mark.parametrize("method, base", [("bilaw", "at"), ("bilaw-trades", "trades")])
def test_with_a_constant_weight_network_the_real_update_is_the_base_method_s(method, base):
    learned = _learned()
    with torch.no_grad():
        last = learned.net.layers[-1]
        last.weight.zero_()  # ω ≡ sigmoid(b): uniform weights
    learned.optimizer.param_groups[0]["lr"] = 0.0  # and μ stays constant
    x, y = _images(8, 2)
    results = []
    for name, extra in ((method, learned), (base, None)):
        cfg = resolve_config(None, method=name, eps=0.1, steps=3)
        parts = build_step(cfg, torch.Generator().manual_seed(3), learned=extra)
        model = _mlp().train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        out = train_step(model, Batch(torch.arange(8), x, y), parts, opt, epoch=0)
        results.append((out, model.state_dict()))
    (ours, ours_state), (ref, ref_state) = results
    torch.testing.assert_close(ours.weights, torch.ones(8, dtype=F64), rtol=0, atol=1e-10)
    torch.testing.assert_close(ours.loss, ref.loss, rtol=1e-10, atol=1e-12)
    for k, v in ref_state.items():
        torch.testing.assert_close(ours_state[k], v, rtol=1e-10, atol=1e-12)


def test_non_parametric_weights_are_non_negative_and_normalised():
    model = _mlp().train()
    learned = _learned(parametric=False)
    assert learned.net is None and learned.state_dict() == {"steps": 0}
    x_adv, y = _images(8, 2)
    stats = _stats(model, x_adv, y)
    batch, adv = Batch(torch.arange(8), x_adv, y), irat.types.AttackResult(x_adv)
    learned.meta_step(model, batch, adv, None, model(x_adv), stats, 0.5, attack=None, objective=objectives.at)
    w = learned.weights(stats)
    assert (w >= 0).all() and torch.allclose(w.sum(), torch.tensor(8.0, dtype=F64))
    assert (w == 0).any() or w.std() > 0  # clamped or reweighted: not uniform by construction


def test_non_parametric_meta_gradient_is_positive_overall_on_its_own_batch():
    # validation batch = training batch, small lr_θ: Σ_j −∂F/∂ε_j = lr·∇Lᵀ∇L·B > 0
    model = _mlp()
    x, y = _images(8, 2)
    g = meta_weight_gradient(model, torch.full((8,), 1 / 8, dtype=F64), x, y, x, y, 1e-4)
    assert (-g).sum() > 0


def test_validation_batches_follow_a_seeded_order_and_resume_where_they_stopped():
    a = _learned()
    batches = [a._next_batch()[1] for _ in range(7)]  # 24 images, batch 8: a new pass at the 4th
    assert torch.equal(torch.sort(torch.cat(batches[:3])).values, torch.sort(a.meta.y).values)
    b = _learned()
    b.load_state_dict({**b.state_dict(), "steps": 5})
    assert torch.equal(b._next_batch()[1], batches[5])


# ---------------------------------------------------------------------------------------------
# splits and config


def test_meta_split_is_seeded_stratified_and_taken_out_of_the_baseline_training_images(tiny_npz):
    base = irat.data.load("npz", root=tiny_npz, val_size=40, seed=1)
    data = irat.data.load("npz", root=tiny_npz, val_size=40, seed=1, meta_size=60)
    again = with_meta_split(base, 60)
    assert torch.equal(data.meta.idx, again.meta.idx) and torch.equal(data.train.idx, again.train.idx)
    assert len(data.meta) == 60 and len(data.train) == len(base.train) - 60
    ids = set(data.train.idx.tolist()), set(data.meta.idx.tolist()), set(data.val.idx.tolist())
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and ids[0] | ids[1] == set(base.train.idx.tolist())
    assert torch.equal(data.val.idx, base.val.idx)  # D_es unchanged
    counts = torch.bincount(data.meta.y, minlength=4).float()
    expected = torch.bincount(base.train.y, minlength=4).float() * 60 / len(base.train)
    assert (counts - expected).abs().max() <= 1
    other = irat.data.load("npz", root=tiny_npz, val_size=40, seed=2, meta_size=60)
    assert not torch.equal(other.meta.idx, data.meta.idx)
    with pytest.raises(irat.data.DataError, match="meta_size"):
        with_meta_split(base, len(base.train))


def test_train_takes_the_meta_split_the_data_was_loaded_with(tiny_npz, tmp_path):
    data = irat.data.load("npz", root=tiny_npz, val_size=40, meta_size=50)
    model = irat.models.create("fc1", dataset=data.spec)
    run = irat.train(model, data, "bilaw", 1, 0.1, out=tmp_path / "r", steps=1, progress=False)
    assert run.config.data.meta_size == 50
    from irat.analysis.run import load_run

    assert torch.equal(load_run(run.dir).data.meta.idx, data.meta.idx)
    with pytest.raises(ConfigError, match="meta split of 50"):
        irat.train(model, data, "at", 1, 0.1, out=tmp_path / "s", progress=False, **{"data.meta_size": 20})
    assert not (tmp_path / "s").exists()  # refused before the run directory is written


def test_compare_refuses_a_meta_split_that_does_not_fit_before_training(tiny_npz, tmp_path):
    data = irat.data.load("npz", root=tiny_npz, val_size=40)  # 360 training images < 1000
    with pytest.raises(ConfigError, match="does not fit"):
        irat.compare(["at", "bilaw"], data=data, out=tmp_path / "c", epochs=1, **{"model.name": "fc1"})
    assert not (tmp_path / "c").exists()


def test_bilaw_config_errors_say_what_to_change():
    ok = resolve_config(None, method="bilaw", **{"bilaw.hidden": [64, 64], "bilaw.margin_on": "adv"})
    assert ok.bilaw.hidden == [64, 64]
    bad = [
        ({"method": "at", "bilaw.hidden": [64]}, "applies to the learned weightings"),
        ({"method": "bilaw-np", "bilaw.lr": 0.01}, "non-parametric"),
        ({"method": "bilaw", "bilaw.input": "logits"}, "bilaw.input"),
        ({"method": "bilaw", "bilaw.hidden": [0]}, "bilaw.hidden"),
        ({"method": "bilaw", "bilaw.lr": -1.0}, "bilaw.lr"),
        ({"method": "bilaw", "bilaw.input": "adv-loss", "bilaw.margin_on": "adv"}, "margin inputs"),
        ({"method": "bilaw", "data.meta_size": 0}, "meta_size"),
        ({"method": "bilaw", "compile": "default"}, "compile=off"),
        ({"method": "at", "weighting": "bilaw", "precision": "bf16"}, "bf16"),
        ({"method": "bilaw", "data.meta_size": -1}, "data.meta_size"),
    ]
    for overrides, message in bad:
        with pytest.raises(ConfigError, match=message):
            resolve_config(None, **overrides)
    with pytest.raises(ConfigError, match="learned"):
        build_step(resolve_config(None, method="bilaw"))  # no LearnedWeighting given


def test_recipes_and_any_objective():
    for method, objective, loss, start in [
        ("bilaw", objectives.at, "ce", "uniform"),
        ("bilaw-trades", objectives.trades, "kl", "gauss_small"),
        ("bilaw-np", objectives.at, "ce", "uniform"),
    ]:
        cfg = resolve_config(None, method=method)
        learned = build_learned(cfg, 3, _learned().meta)
        if method == "bilaw-np":  # one epoch of uniform weights first (issue 18): no meta step in it
            assert burn_in_epochs(cfg) == 1 and build_step(cfg, learned=learned).meta_step is None
        parts = build_step(cfg, epoch=1, learned=learned)
        obj = parts.objective
        assert (obj.func if isinstance(obj, functools.partial) else obj) is objective
        assert parts.attack.keywords["loss"] == loss and parts.attack.keywords["start"] == start
        assert parts.meta_step is not None and parts.meta_step.keywords["attack"] is parts.attack
        if method == "bilaw-trades":
            assert obj.keywords["beta"] == 6.0
    # the learned weighting on MART, which no paper has tried
    cfg = resolve_config(None, method="at", weighting="bilaw", objective="mart", eps=0.1, steps=2)
    learned = build_learned(cfg, 3, _learned().meta).to(dtype=F64)
    parts = build_step(cfg, torch.Generator().manual_seed(0), learned=learned)
    assert parts.stats_nat is False and parts.needs_nat  # MART has natural logits
    model = _mlp().train()
    x, y = _images(8, 2)
    out = train_step(
        model, Batch(torch.arange(8), x, y), parts, torch.optim.SGD(model.parameters(), lr=0.1), 0
    )
    assert torch.isfinite(out.loss) and learned.steps == 1


# ---------------------------------------------------------------------------------------------
# real data: a short run, the records, resume


def _run(data, out, method="bilaw", epochs=2, **kw):
    torch.manual_seed(0)
    model = irat.models.create("tiny-cnn", dataset=data.spec)
    opts = dict(epochs=epochs, eps=0.1, steps=2, lr=0.05, progress=False, **{"data.meta_size": 200})
    opts.update(kw)
    return irat.train(model, data, method=method, out=out, **opts)


def test_a_short_run_moves_mu_and_gives_non_uniform_weights(fmnist_small, tmp_path):
    from irat.training import checkpoint
    from irat.training.records import load_record
    from irat.training.rundir import RunDir

    run = _run(fmnist_small, tmp_path / "b", epochs=1, **{"bilaw.lr": 0.05})
    d = RunDir(run.dir)
    state = checkpoint.load(d.last)["weighting"]
    cfg = run.config
    start = build_learned(cfg, 10, fmnist_small.val).net.state_dict()  # the same seeded init
    moved = max((state["net"][k] - v).abs().max().item() for k, v in start.items())
    assert moved > 1e-4 and state["steps"] == -(-(len(fmnist_small.train) - 200) // 128)
    rec = load_record(d.record_path(0))
    # early in training the margins hardly differ, and so do the weights; uniform would be 0
    assert rec["weight"].std() > 1e-5 and (rec["weight"] > 0).all()
    assert len(rec["idx"]) == len(fmnist_small.train) - 200  # D_meta held out
    assert cfg.data.meta_size == 200 and run.history[0]["meta_val_loss"] > 0
    assert (rec["margin_nat"] >= -1).all() and (rec["margin_nat"] <= 1).all()


def test_resume_continues_a_bilaw_run_exactly(fmnist_small, tmp_path, monkeypatch):
    from irat.training import checkpoint
    from irat.training.rundir import RunDir

    data = dataclasses.replace(fmnist_small, train=fmnist_small.train.subset(700))  # 500 + D_meta

    full = _run(data, tmp_path / "full")
    calls = {"n": 0}
    original = RunDir.append_metrics

    def killed_in_second_epoch(self, row):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        original(self, row)

    monkeypatch.setattr(RunDir, "append_metrics", killed_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _run(data, tmp_path / "resumed")
    monkeypatch.undo()
    resumed = _run(data, tmp_path / "resumed", resume=True)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    mu_full = checkpoint.load(RunDir(full.dir).last)["weighting"]
    mu_resumed = checkpoint.load(RunDir(resumed.dir).last)["weighting"]
    assert mu_full["steps"] == mu_resumed["steps"]
    for k, v in mu_full["net"].items():
        assert torch.equal(v, mu_resumed["net"][k])


def test_eval_and_analyze_rebuild_the_held_out_splits(fmnist_small, tmp_path):
    from irat.analysis import analyze
    from irat.analysis.run import load_run

    run = _run(fmnist_small, tmp_path / "r", epochs=1, method="bilaw-np")
    loaded = load_run(run.dir)
    assert len(loaded.data.meta) == 200 and len(loaded.data.train) == len(fmnist_small.train) - 200
    report = analyze(run.dir, limit=0)
    text = report.read_text()
    assert "Learned weights (bilaw-np)" in text
    assert (run.dir / "analysis" / "learned_weight_vs_margin.png").stat().st_size > 0
    assert (run.dir / "analysis" / "learned_weight_over_epochs.png").stat().st_size > 0
