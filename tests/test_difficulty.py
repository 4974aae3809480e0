"""The instance difficulty of the hard-instance paper (METHODS.md §4.12, §7.4 "Difficulty metric"):
d(x) on hand-made tables, its properties, the D-distance, the groups, and the analysis sections
built on a run's records."""

import numpy as np
import pytest
import torch

import irat
from irat.analysis import analyze, d_distance, difficulty
from irat.analysis.difficulty import common_difficulty, groups, mean_loss, run_difficulty


def pairwise(lbar):
    """The definition itself: P[L̄(x) < L̄(e)] + ½ P[L̄(x) = L̄(e)], e uniform over all of D."""
    lbar = np.asarray(lbar, dtype=np.float64)
    less = (lbar[:, None] < lbar[None, :]).mean(1)
    equal = (lbar[:, None] == lbar[None, :]).mean(1)
    return less + 0.5 * equal


def test_difficulty_on_a_hand_made_table_with_ties_and_missing_epochs():
    # mean losses over the finite epochs: 2, 1, 3, 1, 0.5
    losses = np.array(
        [
            [1.0, 3.0, np.nan],
            [1.0, 1.0, 1.0],
            [3.0, np.nan, 3.0],
            [0.0, 2.0, 1.0],
            [0.5, 0.5, 0.5],
        ]
    )
    np.testing.assert_allclose(mean_loss(losses), [2, 1, 3, 1, 0.5])
    # ascending ranks with average ties: 0.5 → 1, 1 and 1 → 2.5, 2 → 4, 3 → 5; d = (n − r + ½)/n
    expected = np.array([(5 - 4 + 0.5) / 5, (5 - 2.5 + 0.5) / 5, (5 - 5 + 0.5) / 5, 0.6, (5 - 1 + 0.5) / 5])
    np.testing.assert_allclose(difficulty(losses), expected)
    np.testing.assert_allclose(expected, [0.3, 0.6, 0.1, 0.6, 0.9])
    np.testing.assert_allclose(difficulty(losses), pairwise([2, 1, 3, 1, 0.5]))


def test_properties_of_d():
    rng = np.random.default_rng(0)
    lbar = rng.integers(0, 30, 200).astype(np.float64)  # many ties
    d = difficulty(lbar)
    np.testing.assert_allclose(d, pairwise(lbar), atol=1e-12)  # direct definition = rank formula
    assert (d > 0).all() and (d < 1).all()
    assert d.mean() == pytest.approx(0.5, abs=1e-12)
    np.testing.assert_array_equal(difficulty(np.exp(lbar) * 3 + 1), d)  # increasing transform
    order = np.argsort(lbar)
    assert (np.diff(d[order]) <= 0).all()  # decreasing in L̄ ...
    strict = np.diff(lbar[order]) > 0
    assert (np.diff(d[order])[strict] < 0).all()  # ... strictly across distinct losses
    for v in np.unique(lbar):
        assert len(np.unique(d[lbar == v])) == 1  # ties share d
    unique = np.arange(7.0)
    d7 = difficulty(unique)
    assert d7[0] == pytest.approx(1 - 1 / 14) and d7[-1] == pytest.approx(1 / 14)  # not exactly 1 / 0
    assert difficulty(np.array([4.2]))[0] == 0.5


def test_difficulty_and_distance_keep_the_input_kind():
    losses = torch.tensor([[1.0, 2.0], [0.5, 0.5], [3.0, 1.0]])
    d = difficulty(losses)
    assert isinstance(d, torch.Tensor) and d.dtype == torch.float64
    np.testing.assert_allclose(d.numpy(), difficulty(losses.numpy()))
    dist = d_distance(d, d.flip(0))
    assert isinstance(dist, torch.Tensor) and dist.ndim == 0
    assert isinstance(d_distance(d.numpy(), d.numpy()), np.ndarray)


def test_an_instance_without_any_loss_is_refused():
    with pytest.raises(ValueError, match="no finite loss"):
        difficulty(np.array([[1.0, np.nan], [np.nan, np.nan]]))


def test_d_distance():
    rng = np.random.default_rng(1)
    d = difficulty(rng.normal(size=500))
    assert float(d_distance(d, d)) == 0.0
    other = difficulty(rng.normal(size=500))
    assert float(d_distance(d, other)) == float(d_distance(other, d))
    assert 0 <= float(d_distance(d, other)) <= 1
    # two independent random rankings: E|U1 − U2| = 1/3 (not the paper's 0.375)
    n = 10_000
    a = difficulty(rng.permutation(n).astype(float))
    b = difficulty(rng.permutation(n).astype(float))
    assert float(d_distance(a, b)) == pytest.approx(1 / 3, abs=0.01)
    with pytest.raises(ValueError, match="equal length"):
        d_distance(a, b[:-1])


def test_groups_partition_the_set_with_the_easiest_in_g9():
    d = difficulty(np.arange(1000.0))  # instance 0 has the smallest loss: the easiest
    g = groups(d)
    assert g.min() >= 0 and g.max() <= 9 and g[0] == 9 and g[-1] == 0
    np.testing.assert_array_equal(np.bincount(g, minlength=10), [100] * 10)
    for i in range(10):
        assert ((d[g == i] >= 0.1 * i) & (d[g == i] < 0.1 * (i + 1))).all()


@pytest.fixture
def two_runs(tiny_npz, tmp_path):
    data = irat.data.load("npz", root=tiny_npz, val_size=40)
    dirs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = irat.models.create("fc1", dataset=data.spec)
        out = tmp_path / f"run{seed}"
        irat.train(
            model, data, method="at", epochs=2, eps=0.05, steps=2, out=out, progress=False,
            seed=seed, root=str(tiny_npz), val_size=40, **{"data.seed": 0},
        )  # fmt: skip
        dirs.append(out)
    return dirs


def test_a_runs_records_give_the_difficulty_and_two_runs_a_distance(two_runs):
    a, b = two_runs
    idx, y, d = run_difficulty(a)
    recs = irat.analysis.load_records(a)
    np.testing.assert_array_equal(idx, recs.idx)
    np.testing.assert_allclose(d, difficulty(recs.loss.T))
    common, d_a, d_b = common_difficulty(a, b)
    np.testing.assert_array_equal(common, idx)  # same split (data.seed), different training seeds
    assert 0 < float(d_distance(d_a, d_b)) < 1 / 3  # two seeds agree better than chance


def test_analyze_adds_the_hard_instance_sections(two_runs):
    a, b = two_runs
    report = analyze(a, limit=50, against=b)
    text = report.read_text()
    out = a / "analysis"
    for name in (
        "group_loss.png",
        "gallery.png",
        "feature_norms.png",
        "test_groups.png",
        "difficulty_vs_other.png",
    ):
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name
        assert f"]({name})" in text
    assert "D-distance between" in text and "| G9 |" in text
    rows = (out / "difficulty.csv").read_text().splitlines()
    assert rows[0] == "idx,y,mean_loss,difficulty,group" and len(rows) == 1 + len(run_difficulty(a)[0])
    analyze(a, limit=0)  # without data or model: the record-only sections still render
    assert "Skipped (limit = 0)" in (out / "report.md").read_text()


def test_every_model_exposes_penultimate_features():
    spec = irat.data.registry.get("cifar10").spec
    x = torch.rand(2, 3, 32, 32)
    for name in ("fc1", "tiny-cnn", "small-cnn", "resnet18", "preact-resnet18", "wrn-10-1"):
        model = irat.models.create(name, dataset=spec).eval()
        f = model.features(x)
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        assert f.shape == (2, head.in_features), name
        torch.testing.assert_close(head(f), model(x), msg=name)
