"""CLI smoke tests through a subprocess (a user's npz data, so no real data is needed); bad input:
tests/test_bad_input.py."""

import json
import subprocess
import sys


def irat(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "irat", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_help_lists_commands_and_choices():
    r = irat("--help")
    assert r.returncode == 0 and "train" in r.stdout and "eval" in r.stdout
    r = irat("train", "--help")
    assert r.returncode == 0 and "trades" in r.stdout and "tiny-cnn" in r.stdout and "pgd-K" in r.stdout


def test_train_then_eval_on_a_users_npz(tiny_npz, tmp_path):
    out = tmp_path / "run"
    common = [
        "--data.dataset=npz",
        f"--data.root={tiny_npz}",
        "--data.val_size=40",
        "--model.name=fc1",
        "--train.epochs=2",
        "--train.batch_size=64",
        "--attack.eps=0.05",
        "--attack.steps=3",
        "--train.progress=false",
    ]
    r = irat("train", *common, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "best epoch" in r.stdout
    r = irat("train", *common, "--out", out)
    assert r.returncode == 2 and "already holds a run" in r.stderr
    r = irat("train", "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    r = irat("eval", out, "--attacks", "clean,fgsm,pgd-10", "--limit", "50")
    assert r.returncode == 0, r.stderr
    assert "| clean | fgsm | pgd-10 | worst-case |" in r.stdout
    res = json.loads((out / "eval.json").read_text())
    assert res["n"] == 50 and 0 <= res["accuracy"]["pgd-10"] <= res["accuracy"]["clean"]
    # the papers' protocol in one call: a step per attack, AutoAttack's components on fewer images
    r = irat("eval", out, "--attacks", "clean,pgd-5:eps/4,pgd-10:0.002,apgd-ce@20", "--checkpoint", "both")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("checkpoint: ") == 2 and "last.pt (epoch 1)" in r.stdout
    assert "| clean | pgd-5:eps/4 | pgd-10:0.002 | apgd-ce@20 | worst-case |" in r.stdout
    assert "; apgd-ce@20: the first 20; worst-case: the first 20," in r.stdout
    for which in ("best", "last"):
        assert json.loads((out / f"eval_{which}.json").read_text())["images"]["apgd-ce@20"] == 20
