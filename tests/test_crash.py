"""Nothing lost on a crash: evaluations resume from their last finished batch, Ctrl-C stops with
the command that resumes, a full disk or a read-only folder gives one clear message and leaves
the last good checkpoint intact. (The SIGKILL loop over real processes is benchmarks/chaos.py.)"""

import errno
import json
import os
import sys
import tempfile
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import irat
from irat.cli.main import main
from irat.evaluation.progress import Progress
from irat.training import checkpoint
from irat.training.checkpoint import WriteError
from irat.training.rundir import RunDir


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = 0.3 * torch.rand(n, 1, 6, 6, generator=g)
    x[torch.arange(n), 0, y, y] += 0.6
    return SimpleNamespace(x=x, y=y)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


ATTACKS = ["clean", "pgd-5", "apgd-ce"]


def _evaluate(model, data, **kw):
    return irat.evaluate(model, data, ATTACKS, eps=0.2, batch_size=16, progress=False, sanity=False, **kw)


@pytest.fixture
def counted(monkeypatch):
    """Counts the images each named attack is run on (the real attacks, wrapped)."""
    module = sys.modules["irat.evaluation.evaluate"]
    calls, build = {}, module.attack_lib.build

    def counting_build(name, **kw):
        attack = build(name, **kw)

        def run(model, x, y):
            calls[name] = calls.get(name, 0) + len(y)
            return attack(model, x, y)

        return run

    monkeypatch.setattr(module.attack_lib, "build", counting_build)
    return calls


def test_a_killed_evaluation_resumes_after_its_last_finished_batch(tmp_path, monkeypatch, counted):
    model, data = _model(), _data()
    full = _evaluate(model, data)
    counted.clear()
    saves, real_save = [], Progress.save

    def killed_after_three_autoattack_batches(self, done, predictions, device):
        real_save(self, done, predictions, device)
        saves.append(done)
        if len(saves) == 6 + 6 + 3:  # clean and pgd-5: 6 batches of 16 each, then apgd-ce: 3
            raise KeyboardInterrupt

    monkeypatch.setattr(Progress, "save", killed_after_three_autoattack_batches)
    with pytest.raises(KeyboardInterrupt):
        _evaluate(model, data, resume_dir=tmp_path / "progress")
    assert counted == {"clean": 96, "pgd-5": 96, "apgd-ce": 48}
    monkeypatch.setattr(Progress, "save", real_save)
    counted.clear()
    resumed = _evaluate(model, data, resume_dir=tmp_path / "progress")
    assert counted == {"apgd-ce": 48}  # only AutoAttack's last 3 batches run again
    for name in ATTACKS:
        assert torch.equal(resumed.per_sample[name], full.per_sample[name]), name
    assert resumed.accuracy == full.accuracy
    assert not (tmp_path / "progress").exists()  # complete: the progress files are gone


def test_progress_of_another_model_or_other_images_is_not_used(tmp_path, monkeypatch):
    data, other = _data(), _model(seed=1)
    real_save = Progress.save

    def killed(self, done, predictions, device):
        real_save(self, done, predictions, device)
        raise KeyboardInterrupt

    monkeypatch.setattr(Progress, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        _evaluate(_model(), data, resume_dir=tmp_path)
    monkeypatch.setattr(Progress, "save", real_save)
    res = _evaluate(other, data, resume_dir=tmp_path)
    assert res.accuracy == _evaluate(other, data).accuracy
    res = _evaluate(_model(), _data(seed=5), resume_dir=tmp_path)
    assert res.accuracy == _evaluate(_model(), _data(seed=5)).accuracy
    (tmp_path / "junk.pt").write_bytes(b"not ours")  # a damaged progress file: ignored
    assert Progress(tmp_path, "junk").load(torch.device("cpu")) is None


# ---------------------------------------------------------------- full disk, read-only folder


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"model": {"w": torch.ones(2)}, "epoch": 3})
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(WriteError) as e:
        checkpoint.save(path, {"model": {"w": torch.zeros(2)}, "epoch": 4})
    assert str(e.value) == (
        f"cannot write {path}: No space left on device; free some space on that disk. Nothing was "
        "half-written: last.pt keeps its previous contents, if it had any"
    )
    monkeypatch.undo()
    assert checkpoint.load(path)["epoch"] == 3 and os.listdir(tmp_path) == ["last.pt"]


def _train_args(npz, out, *extra):
    return [
        "train",
        "--data.dataset=npz",
        f"--data.root={npz}",
        "--data.val_size=40",
        "--model.name=fc1",
        "--epochs=3",
        "--steps=2",
        "--eps=0.1",
        "--progress=false",
        "--out",
        str(out),
        *extra,
    ]


def _rows(out):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in RunDir(out).metrics()]


def test_a_disk_full_in_training_keeps_the_last_checkpoint_and_resumes(
    tiny_npz, tmp_path, monkeypatch, capsys
):
    assert main(_train_args(tiny_npz, tmp_path / "full")) == 0
    replace, writes = os.replace, []

    def disk_full_at_the_second_last_pt(src, dst):
        writes.append(os.path.basename(dst))
        if writes.count("last.pt") == 2:
            _enospc()
        return replace(src, dst)

    out = tmp_path / "run"
    monkeypatch.setattr(os, "replace", disk_full_at_the_second_last_pt)
    capsys.readouterr()
    assert main(_train_args(tiny_npz, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"cannot write {out / 'last.pt'}: No space left on device; free some space" in err
    assert (
        f"the last good checkpoint is {out / 'last.pt'}; resume with: irat train --out {out} --resume" in err
    )
    assert checkpoint.load(out / "last.pt")["epoch"] == 0  # intact
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert _rows(out) == _rows(tmp_path / "full")


def _read_only(monkeypatch, root):
    """Writes under ``root`` fail with EROFS (the tests run as root, so chmod cannot do it)."""
    mkstemp = tempfile.mkstemp

    def refusing(*a, dir=None, **k):
        if dir is not None and str(dir).startswith(str(root)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return mkstemp(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", refusing)


def test_a_read_only_output_folder_is_one_message_and_nothing_written(
    tiny_npz, tmp_path, monkeypatch, capsys
):
    _read_only(monkeypatch, tmp_path / "ro")
    assert main(_train_args(tiny_npz, tmp_path / "ro" / "run")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "Read-only file system; make the folder writable or write somewhere else (--out)" in err
    assert not (tmp_path / "ro").exists()  # the folders it made are removed again


def test_resume_or_eval_in_a_read_only_run_fails_before_any_work(tiny_npz, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(_train_args(tiny_npz, out, "--epochs=1")) == 0
    before = (out / "last.pt").read_bytes()
    _read_only(monkeypatch, out)
    ran = []
    monkeypatch.setattr(irat.training.loop, "train_step", lambda *a: ran.append(1))
    monkeypatch.setattr(irat.analysis.run, "evaluate_run", lambda *a, **k: ran.append(1))
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume"]) == 2
    assert "Read-only file system" in capsys.readouterr().err
    assert main(["eval", str(out), "--attacks", "clean"]) == 2
    err = capsys.readouterr().err
    assert "Read-only file system" in err and "run the same irat eval command again" in err
    assert ran == [] and (out / "last.pt").read_bytes() == before and not (out / "eval.json").exists()


# ---------------------------------------------------------------- Ctrl-C


def test_ctrl_c_in_training_says_how_to_resume_and_resuming_loses_nothing(
    tiny_npz, tmp_path, monkeypatch, capsys
):
    assert main(_train_args(tiny_npz, tmp_path / "full")) == 0
    out, calls, step = tmp_path / "run", [], irat.training.loop.train_step

    def ctrl_c_in_the_second_epoch(model, batch, parts, optimizer, epoch):
        calls.append(epoch)
        if epoch == 1 and calls.count(1) == 3:
            raise KeyboardInterrupt
        return step(model, batch, parts, optimizer, epoch)

    monkeypatch.setattr(irat.training.loop, "train_step", ctrl_c_in_the_second_epoch)
    capsys.readouterr()
    assert main(_train_args(tiny_npz, out)) == 130
    err = capsys.readouterr().err.strip()
    assert err == (
        f"irat: interrupted; the last good checkpoint is {out / 'last.pt'}; "
        f"resume with: irat train --out {out} --resume"
    )
    monkeypatch.undo()
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert _rows(out) == _rows(tmp_path / "full")


def test_ctrl_c_in_an_evaluation_resumes_from_the_last_batch(tiny_npz, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(_train_args(tiny_npz, out, "--epochs=1")) == 0
    args = ["eval", str(out), "--attacks", "clean,pgd-5", "--batch-size", "20", "--limit", "60"]
    assert main(args) == 0
    full = json.loads((out / "eval.json").read_text())
    (out / "eval.json").unlink()
    real_save, saves = Progress.save, []

    def ctrl_c_after_two_batches(self, done, predictions, device):
        real_save(self, done, predictions, device)
        saves.append(done)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Progress, "save", ctrl_c_after_two_batches)
    capsys.readouterr()
    assert main(args) == 130
    assert "interrupted; run the same irat eval command again" in capsys.readouterr().err
    assert len(list((out / ".eval_progress").iterdir())) == 1 and not (out / "eval.json").exists()
    monkeypatch.undo()
    assert main(args) == 0
    assert json.loads((out / "eval.json").read_text()) == full
    assert not (out / ".eval_progress").exists()
