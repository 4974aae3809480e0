"""Analysis of a run: records → arrays, figures, adversarial confusion matrix, report, CLI.

A tiny run is trained for real (fc1 on the 4-class 8×8 npz toy problem, 2 epochs of PGD-3 AT).
"""

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch

import irat
from irat.analysis import AnalysisError, analyze, class_names, confusion_matrix, load_records, plots
from irat.training import checkpoint

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = (
    "weights_per_class.png",
    "weight_vs_margin.png",
    "class_weight_over_epochs.png",
    "adversarial_confusion.png",
    "learning_curves.png",
    "lps_pm.png",
    "vulnerability.png",
    "vir_factors.png",
    "margin_pca.png",
)
EPS = 0.05
BIG_EPS = 0.3
LIMIT = 60


@pytest.fixture
def run_dir(tiny_npz, tmp_path):
    data = irat.data.load("npz", root=tiny_npz, val_size=40)
    model = irat.models.create("fc1", dataset=data.spec)
    out = tmp_path / "run"
    # root and val_size go into the run's config, so that the run can reload its data
    irat.train(
        model, data, method="at", epochs=2, eps=EPS, out=out, steps=3, progress=False,
        root=str(tiny_npz), val_size=40,
    )  # fmt: skip
    return out


def png_width(path) -> int:
    """Pixel width from the IHDR chunk (bytes 16..20 of a PNG file)."""
    return int.from_bytes(path.read_bytes()[16:20], "big")


def read_confusion_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0][1:], [r[0] for r in rows[1:]], np.array([[int(v) for v in r[1:]] for r in rows[1:]])


def test_analyze_writes_every_figure_and_a_report_linking_them(run_dir):
    report = analyze(run_dir, limit=LIMIT)
    out = run_dir / "analysis"
    assert report == out / "report.md"
    text = report.read_text()
    for name in FIGURES:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert len(data) > 5000, name
        assert f"]({name})" in text, name
    assert "](adversarial_confusion.csv)" in text
    assert "All weights are equal" in text  # plain AT: uniform weights still render
    assert "epoch 1" in text  # the last recorded epoch by default
    predicted, true, m = read_confusion_csv(out / "adversarial_confusion.csv")
    assert predicted == true == ["0", "1", "2", "3"]  # inferred npz spec: class indices as names
    assert m.shape == (4, 4) and m.sum() == LIMIT
    assert "](lps_pm.csv)" in text and "LPS changes with the attack on" in text
    with open(out / "lps_pm.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == LIMIT and all(0 <= int(r["lps_pgd"]) <= 3 for r in rows)  # PGD-3 training attack
    assert "](vulnerability.csv)" in text and "| V_PGD | 1.00 |" in text
    with open(out / "vulnerability.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == LIMIT and sum(int(r["top_V_CW"]) for r in rows) == round(0.2 * LIMIT)
    assert "](vir_factors.csv)" in text and "weights with `uniform`, not VIR" in text


def test_confusion_matrix_rows_and_trace_match_the_robust_accuracy(run_dir, tiny_npz):
    # A larger radius than in training (the toy problem is robust at EPS): the analysis attacks
    # at the eps of the run's config, so the matrix has off-diagonal counts.
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace(f"eps: {EPS}", f"eps: {BIG_EPS}"))
    analyze(run_dir, limit=LIMIT, checkpoint="last")
    _, _, m = read_confusion_csv(run_dir / "analysis" / "adversarial_confusion.csv")
    data = irat.data.load("npz", root=tiny_npz, val_size=40)
    y = data.test.y[:LIMIT]
    np.testing.assert_array_equal(m.sum(1), torch.bincount(y, minlength=4).numpy())

    model = irat.models.create("fc1", dataset=data.spec)
    model.load_state_dict(checkpoint.load(run_dir / "last.pt")["model"])
    cfg = irat.training.config_from_run(run_dir)
    res = irat.evaluate(
        model,
        data.test,
        attacks=["pgd-20"],
        eps=BIG_EPS,
        limit=LIMIT,
        seed=cfg.train.seed,
        batch_size=cfg.eval.batch_size,
        progress=False,
        sanity=False,
    )
    correct = res.per_sample["pgd-20"]
    assert np.trace(m) == int(correct.sum())  # trace / total = the robust accuracy
    np.testing.assert_array_equal(np.diag(m), torch.bincount(y[correct], minlength=4).numpy())
    assert 0 < np.trace(m) < LIMIT  # the attack is neither vacuous nor total on this toy problem


def test_confusion_matrix_counts_pairs():
    m = confusion_matrix(torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 0, 2, 2]), 3)
    np.testing.assert_array_equal(m.numpy(), [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    with pytest.raises(ValueError, match="0..2"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)


def test_class_weight_sums_equal_a_hand_computation_from_the_npz_files(run_dir):
    # Give the records non-uniform weights and a shuffled order, as a reweighting method would.
    rng = np.random.default_rng(1)
    files = sorted((run_dir / "records").glob("epoch_*.npz"))
    assert [f.name for f in files] == ["epoch_000.npz", "epoch_001.npz"]
    for f in files:
        with np.load(f) as z:
            rec = {k: z[k] for k in z.files}
        perm = rng.permutation(len(rec["idx"]))
        for k in ("idx", "y", "weight", "loss", "p_true", "steps_to_flip"):
            rec[k] = rec[k][perm]
        rec["weight"] = rng.gamma(2.0, 0.5, len(perm)).astype(np.float32)
        np.savez_compressed(f, **rec)

    recs = load_records(run_dir)
    np.testing.assert_array_equal(recs.epochs, [0, 1])
    assert np.all(np.diff(recs.idx) > 0)
    sums = recs.class_weight_sums(4)
    for e, f in enumerate(files):
        with np.load(f) as z:
            for c in range(4):
                expected = float(z["weight"][z["y"] == c].astype(np.float64).sum())
                assert sums[e, c] == pytest.approx(expected, rel=1e-6)
        assert recs.weight[e].sum() == pytest.approx(sums[e].sum(), rel=1e-5)

    report = analyze(run_dir, epoch=0, limit=0).read_text()
    assert "All weights are equal" not in report and "epoch 0" in report


def test_clear_errors(run_dir, tmp_path):
    with pytest.raises(AnalysisError, match="not a run directory"):
        analyze(tmp_path / "nothing")
    with pytest.raises(AnalysisError, match=r"no record for epoch 7; recorded epochs: 0-1"):
        analyze(run_dir, epoch=7)
    for f in (run_dir / "records").iterdir():
        f.unlink()
    with pytest.raises(AnalysisError, match="no per-instance records"):
        analyze(run_dir)


def test_limit_zero_needs_no_data(run_dir, tiny_npz):
    tiny_npz.unlink()  # the dataset is gone: the record figures still render
    report = analyze(run_dir, limit=0)
    assert "Skipped" in report.read_text()
    assert not (run_dir / "analysis" / "adversarial_confusion.png").exists()
    assert (run_dir / "analysis" / "weights_per_class.png").read_bytes().startswith(PNG_SIGNATURE)
    with pytest.raises(irat.data.DataError):
        analyze(run_dir, limit=10)


def test_weight_vs_margin_adds_a_steps_to_flip_panel_only_when_recorded(tmp_path):
    rng = np.random.default_rng(0)
    n = 7000
    y = rng.integers(0, 3, n)
    p = rng.uniform(0, 1, n)
    w = 1 + rng.normal(0, 0.2, n)
    names = ["a", "b", "c"]
    one = plots.weight_vs_margin(w, p, y, names, tmp_path / "one.png", steps_to_flip=np.full(n, -1))
    two = plots.weight_vs_margin(w, p, y, names, tmp_path / "two.png", steps_to_flip=rng.integers(0, 4, n))
    assert one.read_bytes().startswith(PNG_SIGNATURE) and two.read_bytes().startswith(PNG_SIGNATURE)
    assert png_width(two) > 1.5 * png_width(one)
    assert plots.wide_range([1e-6, 0.5, 2.0]) and not plots.wide_range([0.0, 1e-6, 2.0])
    assert not plots.wide_range(np.ones(5))
    assert plots.all_equal(np.array([1.0, 1.0 + 2e-7, np.nan])) and not plots.all_equal([1.0, 1.01])
    pick = plots.subsample(n, 5000, seed=3)
    assert len(pick) == 5000 and len(np.unique(pick)) == 5000 and np.all(np.diff(pick) > 0)
    np.testing.assert_array_equal(pick, plots.subsample(n, 5000, seed=3))
    np.testing.assert_array_equal(plots.subsample(10, 5000), np.arange(10))


def test_class_names_come_from_the_registered_spec():
    assert class_names("fashion-mnist", 10)[0] == "T-shirt/top"
    assert class_names("npz", 3) == ["0", "1", "2"]


def test_cli_analyze(run_dir, tmp_path):
    def irat_cli(*args):
        return subprocess.run([sys.executable, "-m", "irat", *map(str, args)], capture_output=True, text=True)

    r = irat_cli("analyze", run_dir, "--limit", "20", "--attack", "pgd-5")
    assert r.returncode == 0, r.stderr
    report = run_dir / "analysis" / "report.md"
    assert r.stdout.strip() == str(report) and report.exists()
    assert "pgd-5" in report.read_text()
    r = irat_cli("analyze", run_dir, "--epoch", "5")
    assert r.returncode == 2 and "irat: error: no record for epoch 5" in r.stderr
    assert "Traceback" not in r.stderr
    r = irat_cli("analyze", tmp_path / "nothing")
    assert r.returncode == 2 and "not a run directory" in r.stderr


def test_matplotlib_is_imported_only_when_plotting(tmp_path):
    code = (
        "import sys, irat, irat.analysis; assert 'matplotlib' not in sys.modules; "
        "from irat.analysis import plots; import numpy as np; "
        "plots.class_weight_over_epochs(np.arange(2), np.ones((2, 2)), ['a', 'b'], sys.argv[1]); "
        "assert 'matplotlib' in sys.modules and 'matplotlib.pyplot' not in sys.modules"
    )
    r = subprocess.run([sys.executable, "-c", code, tmp_path / "f.png"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_lps_and_pm_on_a_hand_made_model_and_the_summary():
    """A model whose prediction never moves: LPS = K when correct and 0 when wrong under both
    attacks, PM is the same at x and x'; the summary's shares and spread by hand."""
    from irat.analysis.lps import LpsPm, lps_and_pm

    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.b = torch.nn.Parameter(torch.tensor([2.0, 0.0, 1.0]))

        def forward(self, x):
            return self.b.expand(x.shape[0], -1) + 0 * x.flatten(1).sum(1, keepdim=True)

    x, y = torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 0, 2])
    res = lps_and_pm(Constant(), x, y, eps=0.1, steps=5, step_size=0.02, batch_size=3)
    assert res.lps_pgd.tolist() == [5, 0, 5, 0] and res.lps_lm.tolist() == [5, 0, 5, 0]
    p = torch.softmax(torch.tensor([2.0, 0.0, 1.0]), 0)
    pm_true = [p[0] - p[2], p[1] - p[0], p[0] - p[2], p[2] - p[0]]
    assert np.allclose(res.pm_nat, pm_true) and np.allclose(res.pm_adv, pm_true)

    r = LpsPm(
        y=np.zeros(4, dtype=int),
        lps_pgd=np.array([3, 3, 1, 0]),
        lps_lm=np.array([2, 3, 1, 1]),
        pm_nat=np.array([0.9, 0.5, 0.1, -0.2]),
        pm_adv=np.array([0.4, 0.3, -0.1, -0.5]),
        steps=3,
    )
    s = r.summary()
    assert s["changed"] == 0.5 and s["lm_earlier"] == 0.25 and s["at_max"] == 0.5
    assert s["pm_spread_at_max"] == pytest.approx(0.2)  # quartiles of (0.5, 0.9): 0.6 and 0.8
    assert s["spearman_nat"] == pytest.approx(np.corrcoef([3.5, 3.5, 2, 1], [4, 3, 2, 1])[0, 1])


def test_top_vulnerable_sets_and_their_overlap_by_hand():
    from irat.analysis import vulnerability as vul

    v = np.array([0.5, 0.1, 0.9, 0.1, 0.3, 0.7, 0.2, 0.8, 0.6, 0.4])
    assert np.nonzero(vul.top_vulnerable(v))[0].tolist() == [1, 3]  # 20 % of 10, smallest V
    assert np.nonzero(vul.top_vulnerable(v, 0.3))[0].tolist() == [1, 3, 6]
    ties = np.array([2, 1, 1, 1, 3])  # κ-like ties: broken by position
    assert np.nonzero(vul.top_vulnerable(ties, 0.4))[0].tolist() == [1, 2]
    masks = {"A": np.array([1, 1, 0, 0], bool), "B": np.array([0, 1, 1, 0], bool), "C": np.zeros(4, bool)}
    t = vul.overlap_table(masks)
    assert t[("A", "A")] == 1 and t[("A", "B")] == 0.5 and t[("B", "A")] == 0.5 and t[("A", "C")] == 0
    assert np.isnan(t[("C", "A")])
    with pytest.raises(ValueError, match="share"):
        vul.top_vulnerable(v, 0)


def test_vulnerability_views_of_a_model_whose_prediction_never_moves():
    """Constant logits: V_GD = K when correct and 0 when wrong, V_PGD = p_y, V_CW = V_SAA = the
    logit margin."""
    from irat.analysis.vulnerability import vulnerabilities

    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.b = torch.nn.Parameter(torch.tensor([2.0, 0.0, 1.0, -1.0]))

        def forward(self, x):
            return self.b.expand(x.shape[0], -1) + 0 * x.flatten(1).sum(1, keepdim=True)

    x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 3])
    v = vulnerabilities(Constant(), x, y, eps=0.1, steps=4, step_size=0.03)
    p = torch.softmax(torch.tensor([2.0, 0.0, 1.0, -1.0]), 0)
    assert v["V_GD"].tolist() == [4, 0, 0]
    assert np.allclose(v["V_PGD"], [p[0], p[1], p[3]], atol=1e-6)
    assert np.allclose(v["V_CW"], [1.0, -2.0, -3.0]) and np.allclose(v["V_SAA"], [1.0, -2.0, -3.0])


def test_vir_factors_and_recorded_weights_by_hand():
    """Constant logits: KL(p(x) ‖ p(x')) = 0 and p_y(x) = softmax(b)_y; recorded weights are looked
    up by dataset index (NaN when not recorded)."""
    from irat.analysis.vir_factors import recorded_weights, vir_factors

    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.b = torch.nn.Parameter(torch.tensor([2.0, 0.0, 1.0]))

        def forward(self, x):
            return self.b.expand(x.shape[0], -1) + 0 * x.flatten(1).sum(1, keepdim=True)

    x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 2])
    p_nat, kl = vir_factors(Constant(), x, y, eps=0.1, steps=3, step_size=0.03)
    assert np.allclose(p_nat, torch.softmax(torch.tensor([2.0, 0.0, 1.0]), 0).numpy(), atol=1e-6)
    assert np.allclose(kl, 0, atol=1e-7)
    w = recorded_weights(np.array([2, 5, 9]), np.array([0.1, 0.5, 0.9]), np.array([9, 3, 2, 11]))
    assert np.allclose(w[[0, 2]], [0.9, 0.1]) and np.isnan(w[[1, 3]]).all()
    assert np.isnan(recorded_weights(np.array([], dtype=int), np.array([]), np.array([1]))).all()


def test_margin_vectors_and_pca_by_hand():
    from irat.analysis.margin_pca import margin_vectors, pca2

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.eye(3, 4))

        def forward(self, x):
            return x.flatten(1) @ self.w.t()

    x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    v = margin_vectors(Linear(), x, y, batch_size=2)
    p = torch.softmax(x.flatten(1)[:, :3], 1).double()
    assert np.allclose(v, (p.gather(1, y[:, None]) - p).numpy())
    assert np.allclose(v[np.arange(5), y.numpy()], 0)
    # points on a line: all the variance on PC 1, the projection is the centred coordinate (up to sign)
    line = np.outer(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), np.array([0.6, 0.8]))
    proj, shares = pca2(line)
    assert np.allclose(np.abs(proj[:, 0]), [2, 1, 0, 1, 2]) and np.allclose(proj[:, 1], 0)
    assert np.allclose(shares, [1, 0])


def test_batches_cover_every_image_once_in_order_and_refuse_none():
    from irat.evaluation.robust import batches

    x, y = torch.arange(7.0).view(7, 1, 1, 1), torch.arange(7)
    chunks = list(batches(x, y, 3))
    assert [len(yb) for _, yb in chunks] == [3, 3, 1]
    assert torch.equal(torch.cat([yb for _, yb in chunks]), y)
    assert torch.equal(torch.cat([xb for xb, _ in chunks]), x)
    with pytest.raises(ValueError, match="no images"):
        list(batches(x[:0], y[:0]))
