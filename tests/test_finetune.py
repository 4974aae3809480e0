"""Adversarial fine-tuning with extra data (the hard-instance paper, Section 6.2; METHODS.md §4.12,
§7.3.5, §7.4): mixed batches, the objective, the recipe, bad extra data, and `irat finetune`."""

import numpy as np
import pytest
import torch

import irat
from irat.config import ConfigError, resolve_config
from irat.data import DataError, Split
from irat.data.mixed import MixedLoader
from irat.losses import ce, kl
from irat.objectives import at, finetune
from irat.training import checkpoint
from irat.training.assemble import build_step, train_defaults
from irat.training.records import load_record
from irat.training.rundir import RunDir


def _split(n, offset, seed):
    g = torch.Generator().manual_seed(seed)
    return Split(
        torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g), torch.arange(n) + offset
    )


@pytest.mark.parametrize("batch_size", [8, 9])
def test_batches_mix_the_two_sources_half_and_half(batch_size):
    train, extra = _split(10, 0, 0), _split(23, 1000, 1)
    loader = MixedLoader(train, extra, batch_size=batch_size, seed=3)
    half = batch_size // 2
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader) == 6
        seen = []
        for b in batches:
            from_extra = b.idx >= 1000
            n_extra = int(from_extra.sum())
            assert n_extra in (half, 23 % half)  # the last batch: what is left of the extra split
            assert int((~from_extra).sum()) == n_extra + batch_size % 2  # as many training images
            assert not from_extra[: len(b) - n_extra].any()  # training part first, then extra
            seen += b.idx[from_extra].tolist()
            assert torch.equal(b.x[from_extra], extra.x[b.idx[from_extra] - 1000])
            assert torch.equal(b.y[~from_extra], train.y[b.idx[~from_extra]])
        assert sorted(seen) == list(range(1000, 1023))  # each extra image once per epoch
    loader.set_epoch(1)
    again = list(loader)
    assert all(torch.equal(a.idx, b.idx) for a, b in zip(again, batches))  # depends on (seed, epoch) only


def test_shards_of_a_mixed_batch_make_up_one_process_s_batch():
    # torchrun: each process keeps its contiguous slice of the same global batch (total = its size)
    train, extra = _split(10, 0, 0), _split(23, 1000, 1)
    one = list(MixedLoader(train, extra, batch_size=7, seed=3))
    shards = [list(MixedLoader(train, extra, batch_size=7, seed=3, rank=r, world=3)) for r in range(3)]
    for i, whole in enumerate(one):
        parts = [s[i] for s in shards]
        assert torch.equal(torch.cat([p.idx for p in parts]), whole.idx)
        assert torch.equal(torch.cat([p.x for p in parts]), whole.x)
        assert all(p.total == len(whole) for p in parts) and all(len(p) > 0 for p in parts)


def test_the_objective_weights_both_terms_and_reduces_to_its_bases():
    g = torch.Generator().manual_seed(0)
    z_nat, z_adv = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    y, ones = torch.randint(0, 4, (6,), generator=g), torch.ones(6)
    loss, _ = finetune(z_nat, z_adv, y, ones, lam=6.0)
    torch.testing.assert_close(loss, (ce(z_adv, y) + 6 * kl(z_nat, z_adv)).mean())  # §7.4
    torch.testing.assert_close(
        finetune(None, z_adv, y, ones, lam=0.0)[0], at(None, z_adv, y, ones)[0]
    )  # §7.3.5
    w = torch.rand(6, generator=g) * 2
    torch.testing.assert_close(finetune(z_nat, z_adv, y, w)[1], w * (ce(z_adv, y) + 6 * kl(z_nat, z_adv)))
    # p(x) is not detached unless asked (TRADES convention)
    z = z_nat.clone().requires_grad_()
    assert torch.autograd.grad(finetune(z, z_adv, y, ones)[0], z)[0].abs().sum() > 0
    loss = finetune(z, z_adv.clone().requires_grad_(), y, ones, detach_clean=True)[0]
    assert not torch.autograd.grad(loss, z, allow_unused=True)[0]


def test_the_recipe_and_its_ablations():
    cfg = resolve_config(None, method="finetune")
    parts = build_step(cfg)
    assert parts.objective.func is finetune and parts.objective.keywords == {
        "lam": 6.0,
        "detach_clean": False,
    }
    assert parts.needs_nat and parts.attack.keywords["steps"] == 10 and parts.attack.keywords["loss"] == "ce"

    def lr_schedule(c):
        chosen = train_defaults(c)
        return chosen["lr"], chosen["schedule"]

    assert lr_schedule(cfg) == (1e-3, "constant")
    assert lr_schedule(resolve_config(None, method="finetune", lr=0.01)) == (0.01, "constant")
    assert lr_schedule(resolve_config(None, method="at")) == (0.1, "piecewise")
    from irat.config import load

    assert lr_schedule(load(None, ["--method=finetune", "--lr=1e-4"]))[0] == 1e-4  # YAML reads 1e-4 as text
    rw = build_step(resolve_config(None, method="finetune", trade_off=0))  # RW: no KL, no natural forward
    assert not rw.needs_nat and rw.objective.keywords["lam"] == 0
    from irat.training.assemble import scheme_params

    assert scheme_params(cfg)[0] == "hard"
    assert scheme_params(resolve_config(None, method="finetune", weighting="uniform"))[0] == "uniform"  # KL


@pytest.fixture
def toy(tiny_npz):
    return irat.data.load("npz", root=tiny_npz, val_size=40, limit=200)  # 160 of the 360 held out


def _ft(data, out, **kw):
    torch.manual_seed(0)
    model = irat.models.create("fc1", dataset=data.spec)
    return irat.train(
        model, data, method="finetune", epochs=1, eps=0.05, steps=2, out=out, progress=False, **kw
    )


@pytest.mark.parametrize(
    "arrays, fragment",
    [
        ({"x": np.zeros((5, 8, 8), np.uint8), "y": np.array([0, 1, 2, 3, 4])}, "labels 0..4"),
        ({"x": np.zeros((5, 9, 9), np.uint8), "y": np.zeros(5, np.int64)}, "shape"),
        ({"x": np.zeros((5, 8, 8), np.uint8)}, "no labels"),
    ],
)
def test_bad_extra_data_stops_before_training(toy, tmp_path, arrays, fragment):
    path = tmp_path / "extra.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=fragment):
        _ft(toy, tmp_path / "run", extra=str(path))
    assert not (tmp_path / "run").exists()


def test_nothing_held_out_and_unfit_weights_are_refused(tiny_npz, toy, tmp_path):
    full = irat.data.load("npz", root=tiny_npz, val_size=40)
    with pytest.raises(DataError, match="already uses every training image"):
        _ft(full, tmp_path / "a", extra="heldout")
    other = irat.train(
        irat.models.create("tiny-cnn", dataset=toy.spec), toy, method="at", epochs=1, eps=0.05, steps=1,
        out=tmp_path / "cnn", progress=False,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="do not fit model 'fc1'"):
        _ft(toy, tmp_path / "b", extra="heldout", init=str(other.dir))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_irat_finetune_starts_from_the_run_and_mixes_in_the_held_out_images(tiny_npz, tmp_path, capsys):
    from irat.cli.main import main  # in-process: the same code as the command, without a new interpreter

    pre = tmp_path / "pre"
    assert main([
        "train", "--out", str(pre), "--data.dataset=npz", f"--data.root={tiny_npz}", "--data.val_size=40",
        "--data.limit=200", "--model.name=fc1", "--train.epochs=1", "--attack.eps=0.05", "--attack.steps=2",
        "--train.progress=false", "--train.batch_size=32",
    ]) == 0  # fmt: skip
    out = tmp_path / "ft"
    args = ["finetune", str(pre), "--extra", "heldout", "--out", str(out), "--checkpoint", "last"]
    assert main([*args, "--train.lr=1e-12"]) == 0
    cfg = RunDir(out).read_config()
    assert cfg["train"]["method"] == "finetune" and cfg["train"]["epochs"] == 1
    assert cfg["train"]["init"] == str((pre / "last.pt").resolve()) and cfg["data"]["extra"] == "heldout"
    assert cfg["model"]["name"] == "fc1" and cfg["attack"]["eps"] == 0.05 and cfg["train"]["batch_size"] == 32
    rec = load_record(RunDir(out).record_path(0))
    data = irat.data.load("npz", root=tiny_npz, val_size=40, limit=200)
    train_idx = set(data.train.idx.tolist())
    extra = [i for i in rec["idx"].tolist() if i not in train_idx]
    assert len(extra) == 160 and not set(extra) & set(data.val.idx.tolist())  # the held-out images
    # started from the pretrained weights (a learning rate of 1e-12 leaves them in place)
    before, after = checkpoint.load(pre / "last.pt")["model"], checkpoint.load(out / "last.pt")["model"]
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=1e-9)
    assert RunDir(out).metrics()[0]["lr"] == 1e-12
    capsys.readouterr()
    bad = ["finetune", str(pre), "--extra", str(tmp_path / "none.npz"), "--out", str(tmp_path / "x")]
    assert main(bad) == 2
    assert "not found" in capsys.readouterr().err and not (tmp_path / "x").exists()
