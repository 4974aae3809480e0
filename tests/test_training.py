"""End-to-end training on real data, the run directory, and resume."""

import json

import pytest
import torch

import irat
from irat.training.rundir import RunDir, RunDirError


def _train(data, out, **kw):
    torch.manual_seed(0)
    model = irat.models.create("fc1", dataset=data.spec)
    opts = dict(method="at", epochs=2, eps=0.1, out=out, steps=5, lr=0.05, progress=False)
    opts.update(kw)
    return irat.train(model, data, **opts)


def test_two_epochs_of_at_on_real_fashion_mnist(fmnist_small, tmp_path):
    run = _train(fmnist_small, tmp_path / "at")
    res = irat.evaluate(
        run.model,
        fmnist_small.test,
        attacks=["clean", "pgd-20"],
        eps=0.1,
        limit=500,
        progress=False,
        spec=fmnist_small.spec,
    )
    assert res.accuracy["clean"] > 0.5  # chance is 0.1
    assert res.accuracy["pgd-20"] < res.accuracy["clean"]
    assert res.n == 500 and len(res.per_class["clean"]) == 10
    d = RunDir(run.dir)
    assert [r["epoch"] for r in d.metrics()] == [0, 1]
    assert d.best.exists() and d.last.exists() and d.record_path(1).exists()
    cfg = d.read_config()
    assert cfg["train"]["method"] == "at" and cfg["model"]["name"] == "fc1" and "irat_version" in cfg
    rec = irat.training.records.load_record(d.record_path(1))
    assert len(rec["idx"]) == len(fmnist_small.train) and (rec["weight"] == 1).all()
    assert (rec["y"] == fmnist_small.train.y.numpy()).all()
    assert (rec["loss"] > 0).all() and ((rec["p_true"] >= 0) & (rec["p_true"] <= 1)).all()


@pytest.mark.parametrize("method", ["plain", "trades", "mart"])
def test_other_base_methods_train_one_epoch(fmnist_small, tmp_path, method):
    run = _train(fmnist_small, tmp_path / method, method=method, epochs=1, steps=2)
    assert run.history[0]["train_loss"] > 0 and run.history[0]["val_clean_acc"] > 0.3


def test_existing_run_directory_is_not_overwritten(fmnist_small, tmp_path):
    _train(fmnist_small, tmp_path / "r", epochs=1, steps=1)
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match="--resume"):
        _train(fmnist_small, tmp_path / "r", epochs=1, steps=1)
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before


def test_resume_after_a_kill_gives_the_same_final_metrics(fmnist_small, tmp_path, monkeypatch):
    full = _train(fmnist_small, tmp_path / "full", epochs=3, steps=3)

    calls = {"n": 0}
    original = RunDir.append_metrics

    def killed_on_second_epoch(self, row):
        calls["n"] += 1
        if calls["n"] == 2:  # dies after epoch 1's record, before its metrics and checkpoint
            raise KeyboardInterrupt
        original(self, row)

    monkeypatch.setattr(RunDir, "append_metrics", killed_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _train(fmnist_small, tmp_path / "resumed", epochs=3, steps=3)
    monkeypatch.undo()
    resumed = _train(fmnist_small, tmp_path / "resumed", epochs=3, steps=3, resume=True)

    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1, 2]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_non_finite_loss_stops_with_a_clear_error(fmnist_small, tmp_path):
    with pytest.raises(irat.training.NonFiniteLossError, match="lower --train.lr"):
        _train(fmnist_small, tmp_path / "nan", epochs=1, steps=1, lr=1e30)


def test_bf16_autocast_training_runs_and_learns(fmnist_small, tmp_path):
    run = _train(fmnist_small, tmp_path / "bf16", precision="bf16")
    assert run.history[-1]["val_clean_acc"] > 0.5 and run.history[-1]["val_robust_acc"] > 0.2
    state = irat.training.checkpoint.load(RunDir(run.dir).last)
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())


def test_compiled_training_gives_the_eager_result_and_plain_checkpoint_keys(
    fmnist_small, tmp_path, monkeypatch
):
    # the plumbing of train.compile (the compiled module in the steps and the validation, the
    # checkpoint under the model's own keys) with the aot_eager backend: no C++ compiler needed

    modes, real_compile = [], torch.compile

    def compile_aot_eager(model, mode=None):
        modes.append(mode)
        return real_compile(model, mode=mode, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_aot_eager)
    eager = _train(fmnist_small, tmp_path / "eager", epochs=1, steps=2)
    assert modes == []
    compiled = _train(fmnist_small, tmp_path / "compiled", epochs=1, steps=2, compile="default")
    assert modes == ["default"]
    assert compiled.history[0]["train_loss"] == pytest.approx(eager.history[0]["train_loss"], rel=1e-4)
    assert compiled.history[0]["val_robust_acc"] == pytest.approx(
        eager.history[0]["val_robust_acc"], abs=0.01
    )
    state = torch.load(RunDir(compiled.dir).last, weights_only=True)["model"]
    assert set(state) == set(eager.model.state_dict())


def test_a_run_reloads_the_split_its_data_was_loaded_with(tiny_npz, tmp_path):
    from irat.analysis.run import load_run

    data = irat.data.load("npz", root=tiny_npz, val_size=40, seed=3)
    assert not torch.equal(data.val.idx, irat.data.load("npz", root=tiny_npz, val_size=40, seed=0).val.idx)
    model = irat.models.create("fc1", dataset=data.spec)
    run = irat.train(model, data, "at", 1, 0.1, out=tmp_path / "r", steps=1, progress=False)  # train.seed 0
    assert run.config.data.seed == 3
    assert torch.equal(load_run(run.dir).data.val.idx, data.val.idx)


def test_warmup_raises_the_learning_rate_step_by_step_then_follows_the_schedule(
    tiny_npz, tmp_path, monkeypatch
):
    from irat.training import loop

    data = irat.data.load("npz", root=tiny_npz, val_size=40)
    seen, step = [], loop.train_step

    def recording(model, batch, parts, optimizer, epoch):
        seen.append((epoch, optimizer.param_groups[0]["lr"]))
        return step(model, batch, parts, optimizer, epoch)

    monkeypatch.setattr(loop, "train_step", recording)
    torch.manual_seed(0)
    model = irat.models.create("fc1", dataset=data.spec)
    irat.train(
        model,
        data,
        method="at",
        epochs=3,
        eps=0.05,
        steps=1,
        lr=0.2,
        batch_size=120,
        warmup=2,
        milestones=[0.67],
        out=tmp_path / "w",
        progress=False,
    )
    # 360 training images, batch 120: 3 steps per epoch, 6 warm-up steps from 0.2/6 to 0.2
    got = [(e, round(lr, 6)) for e, lr in seen]
    assert got == [
        (0, 0.033333),
        (0, 0.066667),
        (0, 0.1),
        (1, 0.133333),
        (1, 0.166667),
        (1, 0.2),
        (2, 0.02),
        (2, 0.02),
        (2, 0.02),
    ]


def test_a_collapsed_run_warns_once_and_goes_on(tiny_npz, tmp_path, capsys):
    data = irat.data.load("npz", root=tiny_npz, val_size=40)
    torch.manual_seed(0)
    model = irat.models.create("fc1", dataset=data.spec)
    # lr ≈ 0: the model stays at its initialisation, which guesses (4 classes, 40 images)
    run = irat.train(
        model,
        data,
        method="trades",
        epochs=3,
        eps=0.05,
        steps=1,
        lr=1e-12,
        out=tmp_path / "c",
        progress=False,
    )
    err = capsys.readouterr().err
    # not after the first epoch (a model may still guess then), once after the second, not again
    assert err.count("WARNING: after epoch 1 validation clean accuracy") == 1
    assert "after epoch 0" not in err and "after epoch 2" not in err
    assert (
        "the trades run has probably collapsed" in err
        and "try --train.lr=1e-14 or --train.warmup=2" in err  # a tenth of that epoch's lr
        and "a TRADES-type KL term" in err  # the cause named for its objective
    )
    assert [("warning" in r) for r in run.history] == [False, True, False]
