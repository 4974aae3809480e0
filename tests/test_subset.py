"""Training on the easiest, hardest or random N instances of each class (the hard-instance paper's
Figure 1): the choice on a hand-made table, the config errors, and a run that trains on exactly
the subset a previous run's difficulty names."""

import numpy as np
import pytest
import torch

import irat
from irat.analysis.difficulty import run_difficulty
from irat.config import ConfigError, resolve_config
from irat.data.subset import parse_subset, pick_per_class
from irat.training.records import load_record
from irat.training.rundir import RunDir


def test_pick_per_class_on_a_hand_made_table():
    y = np.array([0, 0, 0, 1, 1, 1, 0])
    d = np.array([0.9, 0.1, 0.5, 0.3, 0.8, 0.3, 0.5])
    np.testing.assert_array_equal(pick_per_class(y, "easiest", 2, d), [0, 2, 3, 4])  # ties: lower position
    np.testing.assert_array_equal(pick_per_class(y, "hardest", 2, d), [1, 2, 3, 5])
    r = pick_per_class(y, "random", 2, seed=3)
    assert len(r) == 4 and (np.bincount(y[r]) == 2).all()
    np.testing.assert_array_equal(r, pick_per_class(y, "random", 2, seed=3))
    with pytest.raises(ValueError, match="class 1 has only 3"):
        pick_per_class(y, "easiest", 4, d)


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"data.subset": "easy:3"}, "must be easiest:N, hardest:N or random:N"),
        ({"data.subset": "hardest:0"}, "N must be >= 1"),
        ({"data.subset": "hardest:x"}, "N must be a whole number"),
        ({"data.subset": "hardest:5"}, "needs data.subset_from=RUN"),
        ({"data.subset_from": "runs/a"}, "data.subset_from needs data.subset"),
    ],
)
def test_bad_subsets_give_one_clear_error(values, fragment):
    with pytest.raises(ConfigError, match=fragment):
        resolve_config(None, **values)
    assert parse_subset("random:7") == ("random", 7)


def test_a_run_on_the_easiest_and_hardest_instances_of_a_previous_run(tiny_npz, tmp_path):
    data = irat.data.load("npz", root=tiny_npz, val_size=40)
    kw = dict(method="at", epochs=1, eps=0.05, steps=2, progress=False)
    torch.manual_seed(0)
    first = irat.train(irat.models.create("fc1", dataset=data.spec), data, out=tmp_path / "all", **kw)
    idx, y, d = run_difficulty(first.dir)
    for kind in ("easiest", "hardest", "random"):
        torch.manual_seed(0)
        run = irat.train(
            irat.models.create("fc1", dataset=data.spec),
            data,
            out=tmp_path / kind,
            subset=f"{kind}:5",
            subset_from=str(first.dir),
            **kw,
        )
        rec = load_record(RunDir(run.dir).record_path(0))
        assert len(rec["idx"]) == 20 and (np.bincount(rec["y"]) == 5).all()
        if kind != "random":
            chosen = idx[pick_per_class(y, kind, 5, d)]
            np.testing.assert_array_equal(np.sort(rec["idx"]), chosen)
        stored = RunDir(run.dir).read_config()["data"]
        assert stored["subset"] == f"{kind}:5" and stored["subset_from"] == str(first.dir.resolve())
    with pytest.raises(ConfigError, match="class 0 has only"):
        irat.train(
            irat.models.create("fc1", dataset=data.spec), data, out=tmp_path / "big",
            subset="hardest:1000", subset_from=str(first.dir), **kw,
        )  # fmt: skip
    assert not (tmp_path / "big").exists()
