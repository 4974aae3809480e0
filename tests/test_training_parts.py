"""Schedules, atomic checkpoints, per-instance records and sanity checks."""

import math
import os

import numpy as np
import pytest
import torch

from irat.evaluation.sanity import check_accuracies, check_eps_sweep
from irat.training import checkpoint
from irat.training.records import InstanceRecorder, load_record
from irat.training.schedules import first_drop, learning_rate


def test_piecewise_and_cosine_schedules():
    kw = dict(lr=0.1, epochs=100, milestones=[0.3, 0.6], gamma=0.1)
    got = [learning_rate(e, schedule="piecewise", **kw) for e in (0, 29, 30, 59, 60, 99)]
    assert got == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert learning_rate(0, schedule="cosine", **kw) == pytest.approx(0.1)
    assert learning_rate(50, schedule="cosine", **kw) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="piecewise"):
        learning_rate(0, schedule="step", **kw)


def test_per_milestone_factors_give_the_gairat_and_fat_schedule():
    # lr/10 at 60, lr/100 at 90, lr/200 at 110 of 120 (METHODS.md §4.5, §4.6)
    kw = dict(
        lr=0.1, epochs=120, schedule="piecewise", milestones=[0.5, 0.75, 11 / 12], gamma=[0.1, 0.1, 0.5]
    )
    got = [learning_rate(e, **kw) for e in (59, 60, 89, 90, 109, 110, 119)]
    assert got == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001, 0.0005, 0.0005])
    with pytest.raises(ValueError, match="2 learning-rate factors for 3 milestones"):
        learning_rate(0, **{**kw, "gamma": [0.1, 0.1]})


def test_first_drop_of_each_schedule():
    kw = dict(epochs=100, milestones=[0.3, 0.6], gamma=0.1)
    assert first_drop(schedule="piecewise", **kw) == 30
    assert first_drop(schedule="piecewise", **{**kw, "gamma": [1.0, 0.1]}) == 60  # no drop at 30
    assert first_drop(schedule="piecewise", **{**kw, "milestones": [0.6, 0.3]}) == 30  # unsorted
    assert first_drop(schedule="piecewise", **{**kw, "milestones": [1.0, 1.0]}) is None  # past the end
    assert first_drop(schedule="piecewise", **{**kw, "milestones": [], "gamma": []}) is None
    # cosine: first epoch at most a tenth of the initial lr; cos(π·79/100) > −0.8 ≥ cos(π·80/100)
    assert first_drop(schedule="cosine", **kw) == 80
    assert first_drop(schedule="cosine", **{**kw, "epochs": 30}) == 24
    assert first_drop(schedule="constant", **kw) is None


def test_checkpoint_roundtrip_and_atomicity(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"model": {"w": torch.arange(3.0)}, "epoch": 4})
    assert checkpoint.load(path)["epoch"] == 4
    # a failure during the rename leaves the old file intact and no temporary file behind
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        checkpoint.save(path, {"model": {"w": torch.zeros(3)}, "epoch": 5})
    monkeypatch.undo()
    assert checkpoint.load(path)["epoch"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_load_refuses_pickled_code_and_reports_corrupt_files(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(ValueError, match="evil.pt"):
        checkpoint.load(evil)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        checkpoint.load(bad)
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "none.pt")


def test_instance_record_is_aligned_with_indices_and_reset(tmp_path):
    idx = torch.tensor([7, 2, 5, 9])
    rec = InstanceRecorder(idx)
    rec.log(
        torch.tensor([5, 7]),
        weight=torch.tensor([0.5, 2.0]),
        loss=torch.tensor([1.0, 3.0]),
        steps_to_flip=None,
    )
    rec.log(
        torch.tensor([2, 9]),
        weight=torch.tensor([1.5, 1.0]),
        loss=torch.tensor([0.1, 0.2]),
        steps_to_flip=torch.tensor([3, 10]),
    )
    rec.save(tmp_path / "e.npz", epoch=3)
    r = load_record(tmp_path / "e.npz")
    assert r["idx"].tolist() == [7, 2, 5, 9] and int(r["epoch"]) == 3
    assert r["weight"].tolist() == [2.0, 1.5, 0.5, 1.0]
    assert np.allclose(r["loss"], [3.0, 0.1, 1.0, 0.2])
    assert r["steps_to_flip"].tolist() == [-1, 3, -1, 10]
    assert all(math.isnan(v) for v in rec.values["weight"][idx].tolist())


def test_sanity_checks_flag_inconsistent_results():
    ok = {"clean": 0.9, "fgsm": 0.6, "pgd-20": 0.5, "pgd-100": 0.48, "cw-20": 0.5, "autoattack": 0.45}
    assert check_accuracies(ok, n=1000) == []
    w = check_accuracies({**ok, "pgd-20": 0.95}, n=1000)
    assert any("exceeds clean" in s for s in w) and any("pgd-20 (0.9500) is weaker than fgsm" in s for s in w)
    assert any("autoattack" in s for s in check_accuracies({**ok, "autoattack": 0.55}, n=1000))
    assert any("pgd-100" in s for s in check_accuracies({**ok, "pgd-100": 0.6}, n=1000))
    restarted = {"clean": 0.9, "pgd-20": 0.5, "pgd-20x5": 0.47, "pgd-50": 0.48, "cw-20x2": 0.5}
    assert check_accuracies(restarted, n=1000) == []
    assert any("pgd-20x5" in s for s in check_accuracies({**restarted, "pgd-20x5": 0.55}, n=1000))
    assert check_eps_sweep({0.1: 0.5, 0.2: 0.3, 0.4: 0.0}, n=200) == []
    assert len(check_eps_sweep({0.1: 0.5, 0.2: 0.6, 0.4: 0.0}, n=200)) == 1
    flat = check_eps_sweep({0.1: 0.5, 0.2: 0.5, 0.4: 0.5}, n=200)
    assert len(flat) == 1 and "does not fall" in flat[0]
    assert check_eps_sweep({0.1: 0.0, 0.2: 0.0, 0.4: 0.0}, n=200) == []


def test_warmup_factor_grows_linearly_step_by_step():
    from irat.training.schedules import warmup_factor

    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0  # no warm-up


def test_collapse_signs_chance_level_and_loss_blow_up():
    from irat.training import health

    # 10 classes, 1000 images: 0.1 + 3·sqrt(0.09/1000) = 0.12846
    assert health.chance_level(10, 1000) == pytest.approx(0.12846, abs=1e-5)
    hist = [{"train_loss": 1.2}, {"train_loss": 0.9}]
    assert health.collapse({"train_loss": 1.0, "val_clean_acc": 0.129}, hist, 10, 1000) is None
    assert health.collapse({"train_loss": 1.0, "val_clean_acc": 0.1}, [], 10, 1000) is None  # 1st epoch
    what = health.collapse({"train_loss": 1.0, "val_clean_acc": 0.102}, hist, 10, 1000)
    assert what == "validation clean accuracy 10.2 % is at chance level (10 classes, 1000 images)"
    hist = [{"train_loss": 1.2, "val_clean_acc": 0.789}, {"train_loss": 0.9, "val_clean_acc": 0.628}]
    what = health.collapse({"train_loss": 3.6, "val_clean_acc": 0.196}, hist, 10, 1000)
    assert what == "validation clean accuracy fell to 19.6 %, less than half its best (78.9 %)"
    assert health.collapse({"train_loss": 3.6, "val_clean_acc": 0.40}, hist, 10, 1000) is None
    what = health.collapse({"train_loss": 9.0, "val_clean_acc": 0.5}, hist, 10, 1000)
    assert what == "the training loss 9 is 10 times its lowest so far"
    assert health.collapse({"train_loss": 8.9}, hist, 10, 0) is None  # 9.9×, no validation split
    assert health.collapse({"train_loss": 1.0}, [{"train_loss": 0.0}], 10, 0) is None  # from a zero loss
    line = health.advice(what, 2, "trades", 0.1, 0)
    assert "after epoch 2" in line and "try --train.lr=0.01 or --train.warmup=2" in line
    assert "--train.warmup" not in health.advice(what, 2, "trades", 0.1, 1)
    # the cause: a KL objective, concentrated weights (from CONCENTRATED = 10 up), else the rate alone
    assert "TRADES-type KL" in health.advice(what, 2, "trades", 0.1, 0, kl=True, largest_weight=3.0)
    line = health.advice(what, 1, "bilaw-np", 0.1, 0, kl=False, largest_weight=18.64)
    assert "the largest this epoch was 18.6 times the batch mean" in line and "KL" not in line
    rate_only = health.advice(what, 1, "at", 0.1, 0)
    assert "Likely cause: a learning rate (0.1) too high for this model and objective. The run" in rate_only
    assert "concentrate" not in health.advice(what, 1, "gairat", 0.1, 0, largest_weight=9.9)
