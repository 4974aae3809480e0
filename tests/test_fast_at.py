"""The hard-instance paper's fast AT (Algorithm 1; METHODS.md §3.7, §4.12, §7.1.12, §7.4 "HARD fast
AT"): ATTA's per-instance cache under crop/flip, the RW weights, the adaptive targets, the four
methods, and a run that is killed and resumed with its cache and targets."""

import dataclasses
import json

import numpy as np
import pytest
import torch

import irat
from irat.attacks.atta import PerturbationCache
from irat.config import ConfigError, resolve_config
from irat.data.augmentation import augment_with_draws, draw, pad, paste, view
from irat.losses import ce
from irat.objectives.adaptive_targets import AdaptiveTargets, mix, moving_average, one_hot
from irat.training import checkpoint
from irat.training.assemble import build_step, burn_in_epochs, instance_state
from irat.training.rundir import RunDir
from irat.training.step import train_step
from irat.types import Batch, SampleStats
from irat.weighting import hard, make, normalize_to_batch

FAST = ["fast-at", "fast-at-rw", "fast-at-at", "fast-at-rw-at"]


def _ref_view(canvas, r, c, flipped, h, w):
    """One sample's window, written the plain way (a slice, then a mirror)."""
    out = canvas[:, r : r + h, c : c + w]
    return out.flip(-1) if flipped else out


def test_view_and_paste_invert_each_other_and_match_the_loaders_augmentation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 2, 5, 5, generator=g)
    aug, crop, flip = augment_with_draws(x, 2, True, generator=torch.Generator().manual_seed(3))
    crop2, flip2 = draw(6, 2, True, x.device, torch.Generator().manual_seed(3))
    assert torch.equal(crop, crop2) and torch.equal(flip, flip2)
    canvas = pad(x, 2)
    assert torch.equal(view(canvas, (5, 5), crop, flip), aug)
    for i in range(6):  # the batched gather equals the plain per-sample slice
        expected = _ref_view(canvas[i], int(crop[i, 0]), int(crop[i, 1]), bool(flip[i]), 5, 5)
        assert torch.equal(aug[i], expected)
    # inverse(aug(cache)) restores the region exactly (§7.1.12), and paste keeps the rest
    assert torch.equal(paste(canvas, view(canvas, (5, 5), crop, flip), crop, flip), canvas)
    values = torch.rand(6, 2, 5, 5, generator=g)
    pasted = paste(canvas, values, crop, flip)
    assert torch.equal(view(pasted, (5, 5), crop, flip), values)
    outside = torch.ones(canvas.numel(), dtype=torch.bool)
    outside[view(torch.arange(canvas.numel()).view(canvas.shape), (5, 5), crop, flip).flatten()] = False
    assert outside.sum() == canvas.numel() - values.numel()
    assert torch.equal(pasted.flatten()[outside], canvas.flatten()[outside])


def _cache(n=10, padding=2, eps=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 6, 6, generator=g)
    idx = torch.arange(n) * 3 + 5  # dataset indices, not positions
    return x, idx, PerturbationCache(idx, x, padding=padding, eps=eps, generator=g)


def test_the_cache_returns_what_was_stored_for_the_right_indices_across_shuffled_batches():
    x, idx, cache = _cache()
    eps = 0.3
    g = torch.Generator().manual_seed(1)
    mirror = cache.store.clone()  # the expected canvases, kept with plain per-sample slices
    assert ((cache.store - pad(x, 2)).abs().max() <= eps) and (cache.store.min() >= 0)
    for _ in range(6):
        pos = torch.randperm(len(idx), generator=g)[:4]
        xb, crop, flip = augment_with_draws(x[pos], 2, True, generator=g)
        batch = Batch(idx[pos], xb, torch.zeros(4, dtype=torch.long), crop, flip)
        start = cache.read(batch)
        for j, p in enumerate(pos.tolist()):
            r, c, f = int(crop[j, 0]), int(crop[j, 1]), bool(flip[j])
            assert torch.equal(start[j], _ref_view(mirror[p], r, c, f, 6, 6))
        x_adv = (xb + eps * (2 * torch.rand(xb.shape, generator=g) - 1)).clamp(0, 1)
        cache.write(batch, x_adv)
        for j, p in enumerate(pos.tolist()):
            r, c, f = int(crop[j, 0]), int(crop[j, 1]), bool(flip[j])
            mirror[p, :, r : r + 6, c : c + 6] = x_adv[j].flip(-1) if f else x_adv[j]
        assert torch.equal(cache.store, mirror)
        # inside the ε-ball of the padded natural image after every write (§7.1.12)
        assert (cache.store - pad(x, 2)).abs().max() <= eps + 1e-7
        assert torch.equal(cache.read(batch), x_adv)


def test_the_cache_resets_to_the_natural_image_plus_small_noise_on_its_period():
    from irat.training.instance_state import InstanceState

    x, idx, cache = _cache(eps=0.5)
    cache.store.fill_(0.7)
    state = InstanceState(cache=cache, reset=3)
    for epoch in (0, 1, 3, 4):
        state.begin_epoch(epoch)
        assert (cache.store == 0.7).all(), epoch
    state.begin_epoch(2)  # 1-based epoch 3
    noise = cache.store - pad(x, 2)
    assert 1e-5 < noise.std() < 2e-3 and (cache.store >= 0).all()


def test_rw_weights_are_the_adversarial_true_class_probability_normalised_per_batch():
    z = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [5.0, -5.0, 0.0]])
    y = torch.tensor([0, 0, 2, 1])
    raw = hard(z, y)
    p = z.softmax(1)
    torch.testing.assert_close(raw, p[torch.arange(4), y])
    assert (raw > 0).all() and (raw <= 1).all()
    stats = SampleStats(torch.arange(4), y, z, None, None, epoch=0)
    w = make("hard")(stats)
    torch.testing.assert_close(w / 4, raw / raw.sum())  # weights summing to 1, as in the paper
    torch.testing.assert_close((w / 4).sum(), torch.tensor(1.0))
    torch.testing.assert_close(w, normalize_to_batch(raw))


def test_adaptive_targets_follow_the_moving_average_and_stay_distributions():
    y = torch.tensor([0, 2, 1])
    t0 = one_hot(y, 3)
    o = torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]])
    t = t0
    for k in range(1, 5):  # constant output: t̃ = ρ^k t̃₀ + (1 − ρ^k) o
        t = moving_average(t, o, 0.9)
        torch.testing.assert_close(t, 0.9**k * t0 + (1 - 0.9**k) * o)
    assert torch.equal(moving_average(t0, o, 1.0), t0)  # ρ = 1 freezes t̃
    target = mix(t, y, 0.1)
    assert (target >= 0).all()
    torch.testing.assert_close(target.sum(1), torch.ones(3))
    assert torch.equal(mix(t, y, 1.0), t0)  # β = 1: one-hot


def test_adaptive_targets_keep_labels_during_warm_up_and_update_per_index_after():
    idx = torch.tensor([7, 3, 9, 4])
    labels = torch.tensor([0, 1, 2, 1])
    targets = AdaptiveTargets(idx, labels, 3, rho=0.9, beta=0.1, warmup=2)
    z = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    stats = SampleStats(torch.tensor([9, 7]), torch.tensor([2, 0]), z, None, None, epoch=1)
    assert targets(stats) is stats.y and torch.equal(targets.t, one_hot(labels, 3))  # warm-up
    out = targets(dataclasses.replace(stats, epoch=2))
    tt = 0.9 * one_hot(torch.tensor([2, 0]), 3) + 0.1 * z.softmax(1)
    torch.testing.assert_close(out, 0.1 * one_hot(torch.tensor([2, 0]), 3) + 0.9 * tt)
    torch.testing.assert_close(targets.t[[2, 0]], tt)  # rows of indices 9 and 7
    torch.testing.assert_close(targets.t[[1, 3]], one_hot(torch.tensor([1, 1]), 3))  # untouched
    torch.testing.assert_close(out.sum(1), torch.ones(2))


def _setup(method, epoch=5, n=12, **kw):
    spec = dataclasses.replace(irat.data.registry.get("fashion-mnist").spec, crop_padding=2, flip=True)
    cfg = resolve_config(None, method=method, eps=0.1, epochs=10, **kw)
    g = torch.Generator().manual_seed(0)
    split = irat.data.Split(
        torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g), torch.arange(n) + 100
    )
    state = instance_state(cfg, split, spec, augment=True, generator=torch.Generator().manual_seed(1))
    parts = build_step(cfg, torch.Generator().manual_seed(2), epoch=epoch, state=state)
    xb, crop, flip = augment_with_draws(split.x, 2, True, generator=torch.Generator().manual_seed(4))
    batch = Batch(split.idx, xb, split.y, crop, flip)
    return cfg, state, parts, batch


def _model():
    torch.manual_seed(0)
    return irat.models.create("tiny-cnn", dataset=irat.data.registry.get("fashion-mnist").spec)


def test_fast_at_without_reweighting_or_targets_is_plain_atta():
    """Reweight off, β = 1: the loss is mean ce(f(x + Δ), y), Δ one step from the cache."""
    cfg, state, parts, batch = _setup("fast-at")
    assert state.targets is None and parts.targets is None
    kw = parts.attack.keywords
    assert kw["steps"] == 1 and kw["step_size"] == pytest.approx(0.05) and kw["start"] == "none"
    model = _model()
    start = state.cache.read(batch)
    x_adv = irat.attacks.pgd(
        model, batch.x, batch.y, eps=0.1, steps=1, step_size=0.05, start="none", x_start=start
    )
    expected = ce(model(x_adv.x_adv), batch.y).mean()
    out = train_step(model, batch, parts, torch.optim.SGD(model.parameters(), lr=0.0), epoch=5)
    torch.testing.assert_close(out.loss, expected.detach())
    assert torch.equal(state.cache.read(batch), x_adv.x_adv)  # written back
    assert (out.weights == 1).all()


def test_during_warm_up_targets_are_labels_and_weights_uniform():
    cfg, state, parts, batch = _setup("fast-at-rw-at", epoch=0)
    assert burn_in_epochs(cfg) == 1  # 5 of 38 epochs, scaled to 10
    _, _, plain, _ = _setup("fast-at", epoch=0)
    a, b = _model(), _model()
    out = train_step(a, batch, parts, torch.optim.SGD(a.parameters(), lr=0.1), epoch=0)
    ref = train_step(b, batch, plain, torch.optim.SGD(b.parameters(), lr=0.1), epoch=0)
    assert (out.weights == 1).all() and torch.equal(out.loss, ref.loss)
    assert torch.equal(state.targets.t, one_hot(batch.y, 10))  # t̃ not updated
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_after_warm_up_the_step_is_algorithm_1():
    cfg, state, parts, batch = _setup("fast-at-rw-at", epoch=3)
    model = _model()
    x_start = state.cache.read(batch)
    t_before = state.targets.t.clone()
    out = train_step(model, batch, parts, torch.optim.SGD(model.parameters(), lr=0.0), epoch=3)
    # Algorithm 1 written out: one PGD step, o' = softmax(f(x + Δ)), w = o'_y / Σ, t̃ update, target
    model2 = _model()
    x_adv = irat.attacks.pgd(
        model2, batch.x, batch.y, eps=0.1, steps=1, step_size=0.05, start="none", x_start=x_start
    ).x_adv
    z = model2(x_adv)
    o = z.softmax(1)
    w = o[torch.arange(len(batch)), batch.y].detach()
    w = w / w.sum()
    rows = batch.idx - 100
    t_tilde = 0.9 * t_before[rows] + 0.1 * o.detach()
    t = 0.1 * one_hot(batch.y, 10) + 0.9 * t_tilde
    loss = (w * -(t * z.log_softmax(1)).sum(1)).sum()
    torch.testing.assert_close(out.loss, loss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state.targets.t[rows], t_tilde, rtol=1e-5, atol=1e-6)


def test_fast_at_options_that_do_not_apply_are_refused():
    with pytest.raises(ConfigError, match="attack.steps=5 does not apply"):
        _setup("fast-at", steps=5)
    with pytest.raises(ConfigError, match="attack.start does not apply"):
        _setup("fast-at", start="uniform")
    with pytest.raises(ConfigError, match="soft targets"):
        _setup("fast-at-at", objective="mart")
    with pytest.raises(ValueError, match="pass state= to build_step"):
        build_step(resolve_config(None, method="fast-at"))


def _toy(tiny_npz):
    data = irat.data.load("npz", root=tiny_npz, val_size=40)
    data.spec = dataclasses.replace(data.spec, crop_padding=1, flip=True)  # exercise crop/flip
    return data


def _fit(data, out, method, **kw):
    torch.manual_seed(0)
    model = irat.models.create("fc1", dataset=data.spec)
    opts = dict(epochs=4, eps=0.1, lr=0.05, batch_size=64, progress=False, burn_in=1)
    return irat.train(model, data, method=method, out=out, **{**opts, **kw})


@pytest.mark.parametrize("method", FAST)
def test_each_fast_method_trains(tiny_npz, tmp_path, method):
    data = _toy(tiny_npz)
    run = _fit(data, tmp_path / method, method, epochs=2)
    assert all(np.isfinite(r["train_loss"]) for r in run.history)
    saved = checkpoint.load(RunDir(run.dir).last)
    assert ("instance_state" in saved) and ("targets" in saved["instance_state"]) == (
        method in ("fast-at-at", "fast-at-rw-at")
    )
    rec = irat.training.records.load_record(RunDir(run.dir).record_path(1))
    assert (rec["weight"].std() > 1e-3) == ("-rw" in method)


def test_a_killed_fast_run_resumes_with_its_cache_and_targets(tiny_npz, tmp_path, monkeypatch):
    data = _toy(tiny_npz)
    kw = dict(reset=2)  # a reset before epoch index 1 and 3
    full = _fit(data, tmp_path / "full", "fast-at-rw-at", **kw)
    calls = {"n": 0}
    original = RunDir.append_metrics

    def killed_on_third_epoch(self, row):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        original(self, row)

    monkeypatch.setattr(RunDir, "append_metrics", killed_on_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        _fit(data, tmp_path / "resumed", "fast-at-rw-at", **kw)
    monkeypatch.undo()
    resumed = _fit(data, tmp_path / "resumed", "fast-at-rw-at", resume=True, **kw)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    a, b = checkpoint.load(RunDir(full.dir).last), checkpoint.load(RunDir(resumed.dir).last)
    for part in ("cache", "targets"):
        for key, value in a["instance_state"][part].items():
            assert torch.equal(value, b["instance_state"][part][key]), (part, key)
    for p, q in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(p, q)
    assert [
        json.loads(r)["epoch"] for r in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    ] == [0, 1, 2, 3]


def test_adaptive_targets_combine_with_another_method(tiny_npz, tmp_path):
    """hard.beta < 1 adds the adaptive targets to any method whose objective takes soft targets."""
    _, state, parts, _ = _setup("at", steps=2, **{"hard.beta": 0.5})
    assert state.cache is None and parts.cache is None and parts.targets is state.targets
    run = _fit(
        _toy(tiny_npz), tmp_path / "at-targets", "trades", epochs=1, steps=2, burn_in=0, **{"hard.beta": 0.5}
    )
    t = checkpoint.load(RunDir(run.dir).last)["instance_state"]["targets"]["t"]
    assert (t < 1).any() and torch.allclose(
        t.sum(1), torch.ones(len(t))
    )  # moved off one-hot, still distributions
