"""``irat.compare`` and ``irat compare``: several methods under one budget, one table."""

import json
import subprocess
import sys

import pytest
import torch

import irat


@pytest.fixture
def toy(tiny_npz):
    return irat.data.load("npz", root=tiny_npz, val_size=40)


def test_compare_trains_each_method_from_the_same_start_and_tabulates(toy, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    starts, original = [], irat.train

    def recording_train(model, *args, **kwargs):
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        return original(model, *args, **kwargs)

    monkeypatch.setattr(irat, "train", recording_train)
    kw = dict(epochs=1, steps=3, eps=0.05, progress=False, batch_size=64, **{"model.name": "fc1"})
    cmp = irat.compare(
        ["at", "mail-at"],
        out=out,
        data=toy,
        analyze=False,
        attacks=["clean", "pgd-10"],
        **{"eval.limit": 50},
        **kw,
    )
    assert list(cmp.results) == ["at", "mail-at"]
    table = (out / "comparison.md").read_text()
    assert "| method | clean | pgd-10 | worst-case | epoch |" in table and "| mail-at |" in table
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["at"]["n"] == 50 and saved["at"]["accuracy"]["pgd-10"] <= saved["at"]["accuracy"]["clean"]
    for method in ("at", "mail-at"):
        assert (out / method / "eval.json").exists() and (out / method / "best.pt").exists()
    assert len(starts) == 2 and all(torch.equal(starts[0][k], starts[1][k]) for k in starts[0])
    # a second call resumes the finished runs instead of refusing the existing directories
    again = irat.compare(["at"], out=out, data=toy, analyze=False, attacks=["clean"], **kw)
    assert again.best_epoch["at"] == cmp.best_epoch["at"]


def test_compare_refuses_an_unknown_method_before_training(toy, tmp_path):
    with pytest.raises(irat.ConfigError, match="choose one of"):
        irat.compare(["at", "mial-at"], out=tmp_path / "x", data=toy, analyze=False)
    assert not (tmp_path / "x").exists()


def test_cli_compare_with_a_combination_outside_the_papers(tiny_npz, tmp_path):
    out = tmp_path / "cmp"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "irat",
            "compare",
            "--methods",
            "at",
            "--out",
            str(out),
            "--no-analyze",
            "--data.dataset=npz",
            f"--data.root={tiny_npz}",
            "--data.val_size=40",
            "--model.name=fc1",
            "--epochs=1",
            "--steps=2",
            "--eps=0.05",
            "--progress=false",
            "--eval.limit=30",
            "--eval.attacks=clean,fgsm",
            "--weighting=vir",
            "--objective=mart",
            "--weighting.burn_in=0",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "| at |" in r.stdout and "on 30 test images" in r.stdout
    cfg = irat.training.rundir.RunDir(out / "at").read_config()
    assert cfg["weighting"]["scheme"] == "vir" and cfg["train"]["objective"] == "mart"


def test_compare_without_a_validation_split_reports_the_last_epoch(tiny_npz, tmp_path):
    data = irat.data.load("npz", root=tiny_npz, val_size=0)
    cmp = irat.compare(
        ["at"],
        out=tmp_path / "cmp",
        data=data,
        analyze=False,
        attacks=["clean"],
        epochs=2,
        steps=1,
        progress=False,
        **{"model.name": "fc1"},
    )
    assert cmp.best_epoch["at"] == 1  # no best.pt: last.pt (epoch 1) is evaluated, and so reported


def test_compare_reports_the_best_and_the_last_checkpoint_when_asked(toy, tmp_path):
    """§5.1, DECISION #27: the last epoch and the best by PGD-20 on the held-out split."""
    cmp = irat.compare(
        ["at"],
        out=tmp_path / "cmp",
        data=toy,
        analyze=False,
        attacks=["clean", "pgd-5"],
        epochs=3,
        steps=2,
        eps=0.05,
        progress=False,
        batch_size=64,
        lr=0.5,  # too high on purpose: the last epoch need not be the best
        **{"model.name": "fc1", "eval.checkpoint": "both", "eval.limit": 40},
    )
    run = tmp_path / "cmp" / "at"
    assert irat.training.rundir.RunDir(run).read_config()["train"]["val_attack"] == "pgd-20"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = max(range(3), key=lambda e: (metrics[e]["val_robust_acc"], -e))
    assert cmp.best_epoch["at"] == best and cmp.last_epoch["at"] == 2
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| method | checkpoint | clean | pgd-5 | worst-case | epoch |" in table
    assert f"| at | best | {100 * cmp.results['at'].accuracy['clean']:.2f} |" in table
    assert f"| at | last | {100 * cmp.last['at'].accuracy['clean']:.2f} |" in table
    assert table.rstrip().endswith("| 2 |")
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert saved["at"]["best_epoch"] == best and saved["at"]["last"]["epoch"] == 2
    assert (run / "eval_best.json").exists() and (run / "eval_last.json").exists()
