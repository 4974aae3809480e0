"""``irat bench``, ``irat report``, ``irat export``: a grid of 2 methods × 2 seeds on a tiny dataset
in the real IDX format; mean ± std against the run directories; resume at the cell and the
attack level; clear errors in --dry-run; the presets in configs/ resolve."""

import csv
import gzip
import importlib
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import irat
import irat.export
from irat.bench import grid, stats
from irat.bench.report import build
from irat.config import ConfigError

ev = importlib.import_module(
    "irat.evaluation.evaluate"
)  # the module (irat.evaluation.evaluate is the function)

ROOT = Path(__file__).resolve().parents[1]
IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def write_idx_fmnist(folder: Path, n_train=200, n_test=60, seed=0) -> Path:
    """Fashion-MNIST's four gzipped IDX files: noisy images whose class is a faint bright block."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def make(n):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 120, (n, 28, 28))
        for i, c in enumerate(y):
            r, col = divmod(int(c), 5)
            x[i, 14 * r : 14 * r + 14, 5 * col : 5 * col + 5] += 70
        return np.clip(x, 0, 255).astype(np.uint8), y

    arrays = (*make(n_train), *make(n_test))
    for name, a in zip(IDX_NAMES, arrays):
        header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
        (folder / f"{name}.gz").write_bytes(gzip.compress(header + a.tobytes()))
    return folder


def spec_dict(root: Path, **extra) -> dict:
    spec = {
        "title": "tiny bench",
        "config": {
            "data": {"dataset": "fashion-mnist", "root": str(root), "val_size": 50},
            "model": {"name": "fc1"},
            "attack": {"eps": 0.1, "steps": 2},
            "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "milestones": [0.5], "progress": False},
            "eval": {"limit": 40},
        },
        "seeds": [0, 1],
        "methods": ["at", "mail-at", {"method": "no-such-method-yet", "planned": True}],
        "attacks": ["clean", "fgsm", "pgd-3", {"attack": "no-such-attack", "planned": True}],
        "paper": {"at": {"clean": 86.4, "pgd-3": "70.1±0.2", "fgsm": None, "no-such-attack": 50}},
    }
    spec.update(extra)
    return spec


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """One finished bench: (spec path, output folder)."""
    base = tmp_path_factory.mktemp("bench")
    root = write_idx_fmnist(base / "fmnist")
    spec = write_spec(base / "tiny.yaml", spec_dict(root))
    out = base / "out"
    irat.bench.bench(spec, out, progress=False, command="irat bench tiny.yaml")
    return spec, out


def copy_bench(done, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(done[1], out)
    return out


def cell_accuracies(out: Path, method: str) -> dict:
    return {
        seed: json.loads((out / "main" / method / f"seed{seed}" / "eval.json").read_text())["accuracy"]
        for seed in (0, 1)
    }


# ---------------------------------------------------------------- the bench and its statistics


def test_bench_tables_are_the_mean_and_std_of_the_run_directories(done):
    _, out = done
    rows = list(csv.DictReader(io.StringIO((out / "table.csv").read_text())))
    assert {r["method"] for r in rows} == {"at", "mail-at"}
    for method in ("at", "mail-at"):
        acc = cell_accuracies(out, method)
        for attack in ("clean", "fgsm", "pgd-3", "worst-case"):
            values = [100 * acc[s][attack] for s in (0, 1)]
            (row,) = [r for r in rows if r["method"] == method and r["attack"] == attack]
            assert row["n"] == "2" and row["seeds"] == "0 1" and row["images"] == "40"
            assert float(row["mean"]) == pytest.approx(np.mean(values), abs=1e-4)
            assert float(row["std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-4)
    md = (out / "table.md").read_text()
    at = cell_accuracies(out, "at")
    clean = [100 * at[s]["clean"] for s in (0, 1)]
    assert f"{np.mean(clean):.2f} ± {np.std(clean, ddof=1):.2f}" in md
    # the paper's numbers beneath ours, a column for the attack it reports that irat lacks yet
    assert "| method | seeds | clean | fgsm | pgd-3 | no-such-attack | worst-case | epoch |" in md
    assert "| *at (paper)* |  | 86.4 | – | 70.1 ± 0.2 | 50 | – |  |" in md
    assert "skipped method no-such-method-yet" in md and "skipped attack no-such-attack" in md
    assert "Test images: 40." in md
    # the best mean of each column is bold, and only there
    lines = md.splitlines()
    head = [h.strip() for h in next(x for x in lines if x.startswith("| method |")).split("|")]
    for attack in ("clean", "fgsm", "pgd-3"):
        col = head.index(attack)
        means = {
            m: np.mean([100 * cell_accuracies(out, m)[s][attack] for s in (0, 1)]) for m in ("at", "mail-at")
        }
        top = max(round(v, 2) for v in means.values())
        for m, v in means.items():
            cell = next(x for x in lines if x.startswith(f"| {m} |")).split("|")[col].strip()
            assert cell.startswith("**") == (round(v, 2) == top), (m, attack, cell)


def test_bench_writes_robustbench_json_and_records_the_invocation(done):
    _, out = done
    run = out / "main" / "at" / "seed1"
    info = json.loads((run / "robustbench.json").read_text())
    ev = json.loads((run / "eval.json").read_text())
    assert info["clean_acc"] == f"{100 * ev['accuracy']['clean']:.2f}" and info["autoattack_acc"] == ""
    assert info["eps"] == "0.1" and info["threat_model"] == "Linf" and info["dataset"] == "fashion-mnist"
    assert info["n_examples"] == 40 and info["architecture"] == "fc1"
    bench_yaml = yaml.safe_load((out / "bench.yaml").read_text())
    (invocation,) = bench_yaml["runs"]
    assert invocation["command"] == "irat bench tiny.yaml" and invocation["wall_clock"] != "running"
    assert bench_yaml["spec"]["config"]["model"]["name"] == "fc1"


def test_summary_statistics_by_hand():
    s = stats.Summary([80.0, 82.0, 84.0], [0, 1, 2])
    assert s.mean == 82.0 and s.std == 2.0 and s.n == 3 and s.text() == "82.00 ± 2.00"
    one = stats.Summary([70.25], [0])
    assert one.std is None and one.text() == "70.25"
    assert grid.parse_paper_value("84.86±0.17", "x") == (84.86, 0.17)
    assert grid.parse_paper_value("84.86 +- 0.17", "x") == (84.86, 0.17)
    assert grid.parse_paper_value(86.4, "x") == (86.4, None) and grid.parse_paper_value(None, "x") is None
    with pytest.raises(ConfigError, match="mean±std"):
        grid.parse_paper_value("‹g:48TΠ›", "paper: at/autoattack")


def test_eps_text_as_robustbench_writes_it():
    from irat.export import eps_text

    assert eps_text(8 / 255) == "8/255" and eps_text(0.031372549) == "8/255"
    assert eps_text(0.031) == "0.031" and eps_text(0.1) == "0.1" and eps_text(0.3) == "0.3"


# ---------------------------------------------------------------- resume


def spy_attacks(monkeypatch, log: list, kill_at: str | None = None) -> None:
    """Log the name of each evaluation attack that really runs (not one read back from its kept
    progress); ``kill_at``: the first run of that attack raises KeyboardInterrupt instead."""
    original, killed = ev.correct_under, []

    def spy(model, x, y, attack, *args, **kw):
        name, ran = kw.get("desc"), []

        def counted(*a, **k):
            if name == kill_at and not killed:
                killed.append(True)
                raise KeyboardInterrupt
            if not ran:  # once per evaluation of the attack, however many batches
                ran.append(True)
                log.append(name)
            return attack(*a, **k)

        return original(model, x, y, counted if name else attack, *args, **kw)

    monkeypatch.setattr(ev, "correct_under", spy)


def test_kept_progress_returns_finished_attacks_and_recomputes_on_any_change(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).double()
    split = type("S", (), {"x": torch.rand(12, 1, 4, 4, dtype=torch.float64), "y": torch.arange(12) % 3})()
    calls = []
    spy_attacks(monkeypatch, calls)
    kw = dict(eps=0.1, progress=False, sanity=False, resume_dir=tmp_path / "c", keep_progress=True)
    first = irat.evaluate(model, split, ["clean", "pgd-3"], **kw)
    assert [c for c in calls if c] == ["clean", "pgd-3"]
    calls.clear()
    again = irat.evaluate(model, split, ["clean", "pgd-3"], **kw)
    assert [c for c in calls if c] == [] and again.accuracy == first.accuracy
    irat.evaluate(model, split, ["pgd-3"], **{**kw, "eps": 0.2})  # another eps
    irat.evaluate(model, split, ["pgd-3"], limit=6, **kw)  # other images
    with torch.no_grad():
        model[1].bias += 0.01
    irat.evaluate(model, split, ["pgd-3"], **kw)  # other weights
    assert [c for c in calls if c] == ["pgd-3"] * 3


def test_resume_skips_finished_cells_and_finished_attacks(done, tmp_path, monkeypatch):
    spec, _ = done
    out = copy_bench(done, tmp_path)
    before = cell_accuracies(out, "mail-at")
    # seed 0 of mail-at lost its table and one attack's cached result; seed 1 of at lost its table
    (out / "main" / "mail-at" / "seed0" / "eval.json").unlink()
    (pgd,) = (out / "main" / "mail-at" / "seed0" / ".eval_progress").glob("pgd-3-*.pt")
    pgd.unlink()
    (out / "main" / "at" / "seed1" / "eval.json").unlink()

    trained, attacked = [], []
    monkeypatch.setattr(irat, "train", lambda *a, **k: trained.append(k.get("out")))

    spy_attacks(monkeypatch, attacked)
    plan = irat.bench.plan(spec, out)
    assert [s.state for s in plan.statuses] == ["done", "evaluate", "evaluate", "done"]
    irat.bench.bench(spec, out, progress=False)
    assert trained == []  # finished runs are not trained again
    assert [a for a in attacked if a is not None] == ["pgd-3"]  # only the lost attack ran again
    assert cell_accuracies(out, "mail-at") == before  # and gave the same numbers


def test_a_killed_bench_continues_where_it_stopped(tmp_path, monkeypatch):
    root = write_idx_fmnist(tmp_path / "fmnist")
    spec = write_spec(tmp_path / "s.yaml", spec_dict(root, methods=["at"], seeds=[0]))
    out = tmp_path / "out"

    attacked = []
    spy_attacks(monkeypatch, attacked, kill_at="pgd-3")
    with pytest.raises(KeyboardInterrupt):
        irat.bench.bench(spec, out, progress=False)
    assert not (out / "table.md").exists()
    assert len(list((out / "main" / "at" / "seed0" / ".eval_progress").glob("*.pt"))) == 2
    attacked.clear()
    irat.bench.bench(spec, out, progress=False)
    assert [a for a in attacked if a is not None] == ["pgd-3"]  # clean and fgsm were kept
    assert (out / "table.md").exists()
    assert len(yaml.safe_load((out / "bench.yaml").read_text())["runs"]) == 2


def test_resume_refuses_a_run_of_another_config(done, tmp_path):
    spec, _ = done
    out = copy_bench(done, tmp_path)
    changed = yaml.safe_load(spec.read_text())
    changed["config"]["train"]["epochs"] = 3
    other = write_spec(tmp_path / "changed.yaml", changed)
    with pytest.raises(ConfigError, match=r"another config \(train.epochs: 2 in the run, 3 now"):
        irat.bench.plan(other, out)


# ---------------------------------------------------------------- clear errors before anything runs


@pytest.fixture
def cli(capsys):
    """``irat ARGS`` in this process (a subprocess would re-import torch): (code, stdout, stderr)."""
    from irat.cli.main import main

    def run(*args):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_dry_run_of_a_preset_with_an_unknown_method_fails_with_one_clear_message(tmp_path, cli):
    root = write_idx_fmnist(tmp_path / "fmnist")
    spec = write_spec(tmp_path / "typo.yaml", spec_dict(root, methods=["at", "mial-at"]))
    code, out, err = cli("bench", spec, "--dry-run", "--out", tmp_path / "out")
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert "unknown method 'mial-at'" in line and "mail-at" in line and "planned: true" in line
    assert not (tmp_path / "out").exists()


def test_dry_run_of_a_preset_with_missing_data_fails_with_one_clear_message(tmp_path, cli):
    spec = write_spec(tmp_path / "nodata.yaml", spec_dict(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    code, _, err = cli("bench", spec, "--dry-run", "--out", tmp_path / "out")
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "fashion-mnist" in line and "irat data fetch fashion-mnist" in line
    unknown = spec_dict(
        tmp_path, settings=[{"name": "tin", "config": {"data.dataset": "tinyimagenet"}}], paper=None
    )
    with pytest.raises(ConfigError, match="unknown dataset 'tinyimagenet'.*planned: true"):
        grid.expand(grid.parse_spec(unknown))
    unknown["settings"][0]["planned"] = True
    unknown["settings"].append({"name": "fm"})
    g = grid.expand(grid.parse_spec(unknown))
    assert {c.setting for c in g.cells} == {"fm"} and any(s.name == "tin" for s in g.skipped)


def test_dry_run_prints_the_plan_and_an_estimate(done, cli):
    spec, out = done
    code, text, err = cli("bench", spec, "--dry-run", "--out", out)
    assert code == 0, err
    assert "cells: 4 (2 seeds); 4 done, 0 evaluate, 0 resume, 0 new" in text
    assert "skipped method no-such-method-yet" in text and "estimate:" in text
    assert "| main | mail-at | 1 | done | 0 s |" in text


def test_estimate_times_a_learned_weighting_and_counts_evaluation_alike_for_every_method(done, tmp_path):
    """BiLAW's D_meta (1000 images by default) did not fit the timed subset and the estimate
    failed; and the unit of evaluation came from each method's own step, so a method with a
    costly step (LRAT: ~80 passes counted as K + 2) was charged many times AutoAttack's cost."""
    from irat.bench import estimate
    from irat.config import from_dict

    spec, _ = done
    raw = yaml.safe_load(Path(spec).read_text())["config"]
    raw["data"]["limit"] = None
    cfg_at = from_dict({**raw, "train": {**raw["train"], "method": "at"}})
    data = irat.data.load("fashion-mnist", root=raw["data"]["root"], val_size=50)
    bilaw = from_dict({**raw, "train": {**raw["train"], "method": "bilaw", "batch_size": 16}})
    assert estimate.time_step(bilaw, data) > 0  # ConfigError (meta_size=1000 ... 64 available) before
    unit = estimate.time_unit(cfg_at, data)
    assert unit > 0
    lrat = from_dict({**raw, "train": {**raw["train"], "method": "lrat"}})
    assert (
        estimate.unit_config(lrat).train.method == "at" and estimate.unit_config(lrat).attack.variants is None
    )
    a = estimate.cell_seconds(cfg_at, data, step_s=1.0, unit=unit)
    b = estimate.cell_seconds(lrat, data, step_s=8.0, unit=unit)
    assert a["evaluation"] == b["evaluation"] and a["validation"] == b["validation"]
    assert b["train"] == pytest.approx(8 * a["train"])
    # by hand: a clean pass is 0.35 units, FGSM 2, PGD-K K + 1; evaluation covers at least the
    # 40 test images under every attack of the config (the masking probes come on top)
    assert estimate.attack_passes("pgd-3") == 4 and estimate.attack_passes("fgsm") == 2
    assert estimate.attack_passes("clean") == 0.35
    # SAA: 3 targets × (20 + 1); it was charged as a whole AutoAttack (6500) before
    assert estimate.attack_passes("saa") == 63 and estimate.attack_passes("saa-10@500") == 33
    assert estimate.attack_passes("apgd-ce-50") == 51 and estimate.attack_passes("fmn-100") == 101
    assert estimate.attack_passes("spsa-10") == pytest.approx(10 * 512 * 0.35)
    passes = sum(estimate.attack_passes(n) for n in cfg_at.eval.attacks)
    assert a["evaluation"] > 40 * passes * unit


def test_spec_errors_name_the_file_and_the_entry(tmp_path):
    base = spec_dict(tmp_path, paper=None)
    for change, message in [
        ({"methos": ["at"]}, "unknown key"),
        ({"methods": ["at", {"method": "trades", "label": "at"}]}, "appear twice"),
        ({"seeds": [0, 0]}, "repeat a seed"),
        ({"paper": {"at": {"pgd-20": 1.0}}}, "'pgd-20' is not one of the attacks"),
        ({"paper": {"trades": {"clean": 1.0}}}, "not a method label"),
        ({"attacks": ["clean", "pgd-x"]}, "attack 'pgd-x'"),
        ({"checkpoint": "first"}, "choose best, last or both"),
    ]:
        with pytest.raises(ConfigError, match=message):
            grid.expand(grid.parse_spec({**base, **change}, Path("spec.yaml")))


def test_grid_expands_settings_times_values_times_seeds_times_methods(tmp_path):
    spec = spec_dict(
        tmp_path,
        seeds=2,
        settings=[{"name": "a"}, {"name": "b", "config": {"attack.norm": "l2", "attack.eps": 0.3}}],
        grid={"train.epochs": [1, 3]},
        paper=None,
    )
    g = grid.expand(grid.parse_spec(spec))
    names = sorted({c.setting for c in g.cells})
    assert names == ["a_epochs=1", "a_epochs=3", "b_epochs=1", "b_epochs=3"]
    assert len(g.cells) == 4 * 2 * 2
    cell = next(c for c in g.cells if c.setting == "b_epochs=3" and c.label == "mail-at" and c.seed == 1)
    assert (cell.config.attack.norm, cell.config.attack.eps, cell.config.train.epochs) == ("l2", 0.3, 3)
    assert cell.config.train.method == "mail-at" and cell.config.eval.attacks == ["clean", "fgsm", "pgd-3"]
    assert str(cell.path) == "b_epochs=3/mail-at/seed1"


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "configs" / "bench").glob("*.yaml")))
def test_every_preset_resolves_against_this_irat(preset):
    """Unknown names fail here; names marked planned are skipped until they land."""
    spec = grid.load_spec(ROOT / "configs" / "bench" / preset)
    g = grid.expand(spec)
    assert spec.needs and {"cpu", "gpu"} <= set(spec.cost) and spec.paper
    assert {c.config.data.dataset for c in g.cells} <= set(spec.needs)
    if not g.cells:  # nothing has landed yet: every row or every setting is planned
        assert all(m.planned for m in spec.methods) or all(s.planned for s in spec.settings)


# ---------------------------------------------------------------- irat report


def test_report_rebuilds_the_bench_table_from_the_run_directories(done, tmp_path, cli):
    _, out = done
    before = (out / "table.csv").read_text()
    code, _, err = cli("report", out, "--out", tmp_path / "rep", "--html", tmp_path / "r.html")
    assert code == 0, err
    assert (tmp_path / "rep" / "table.csv").read_text() == before
    assert (tmp_path / "r.html").stat().st_size > 10_000


def test_report_of_loose_runs_refuses_mixed_settings_unless_grouped(done, tmp_path, cli):
    _, out = done
    for name, eps in (("a", 0.1), ("b", 0.2)):
        target = tmp_path / "loose" / name
        shutil.copytree(out / "main" / "at" / "seed0", target)
        cfg = yaml.safe_load((target / "config.yaml").read_text())
        cfg["attack"]["eps"] = eps
        (target / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="2 different settings.*--group"):
        build([tmp_path / "loose"])
    tables = build([tmp_path / "loose"], group=True).tables
    assert len(tables) == 2 and all(len(t.rows) == 1 and t.rows[0].label == "at" for t in tables)
    code, _, err = cli("report", tmp_path / "loose", "--out", tmp_path / "rep")
    assert code == 2 and "--group" in err and not (tmp_path / "rep").exists()


def test_report_labels_runs_of_one_method_with_different_configs_by_what_differs(done, tmp_path):
    _, out = done
    for name, seed, trade_off in (("x", 0, None), ("y", 0, 2.0)):
        target = tmp_path / "loose" / name
        shutil.copytree(out / "main" / "at" / f"seed{seed}", target)
        cfg = yaml.safe_load((target / "config.yaml").read_text())
        cfg["train"]["trade_off"] = trade_off
        (target / "config.yaml").write_text(yaml.safe_dump(cfg))
    (t,) = build([tmp_path / "loose"]).tables
    assert sorted(r.label for r in t.rows) == ["at [train.trade_off=2.0]", "at [train.trade_off=None]"]


# ---------------------------------------------------------------- the HTML report in a real browser


def browser():
    """A headless Chromium through Selenium, or a reason why there is none."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (pip install 'irat[dev]')"
    if not chromium or not driver:
        return None, "no chromium/chromedriver (apt-get install chromium chromium-driver; .ci/run does)"
    options = Options()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,2000",
    ):
        options.add_argument(arg)
    options.add_argument("--proxy-server=127.0.0.1:9")  # offline: any network request would fail
    options.binary_location = chromium
    return webdriver.Chrome(options=options, service=Service(driver)), ""


def test_html_report_renders_offline_in_a_real_browser(done):
    _, out = done
    html = (out / "report.html").read_text()
    assert "http://" not in html.replace('lang="en"', "") and "https://" not in html
    assert "<script" not in html and 'src="data:image/png;base64,' in html
    driver, reason = browser()
    if driver is None:
        pytest.skip(reason)
    try:
        driver.get((out / "report.html").resolve().as_uri())
        rows = driver.execute_script(
            "return Array.from(document.querySelectorAll('table.results tbody tr')).map(r => r.innerText)"
        )
        assert len(rows) == 3 and rows[0].startswith("at") and "±" in rows[0] and "paper" in rows[1]
        sizes = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
        )
        # learning curves, per-class accuracy, one weight figure per method
        assert len(sizes) == 4 and all(ok and w > 0 and h > 0 for ok, w, h in sizes), sizes
        assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    finally:
        driver.quit()


# ---------------------------------------------------------------- irat export


def test_export_safetensors_with_a_model_card(done, tmp_path, cli):
    from safetensors import safe_open
    from safetensors.torch import load_file

    _, out = done
    run = out / "main" / "mail-at" / "seed0"
    code, _, err = cli("export", run, "--format", "safetensors", "--out", tmp_path / "st")
    assert code == 0, err
    weights = load_file(tmp_path / "st" / "model.safetensors")
    best = torch.load(run / "best.pt", weights_only=True)["model"]
    assert weights.keys() == best.keys() and all(torch.equal(weights[k], best[k]) for k in best)
    with safe_open(tmp_path / "st" / "model.safetensors", "pt") as f:
        meta = f.metadata()
    assert meta["method"] == "mail-at" and json.loads(meta["config"])["model"]["name"] == "fc1"
    spec = irat.data.DatasetSpec(**json.loads(meta["dataset_spec"]))
    model = irat.models.create("fc1", dataset=spec)
    model.load_state_dict(weights)
    card = (tmp_path / "st" / "README.md").read_text()
    ev = json.loads((run / "eval.json").read_text())
    assert "# mail-at · fc1 · fashion-mnist" in card and f"{100 * ev['accuracy']['pgd-3']:.2f}" in card
    assert 'load_file("model.safetensors")' in card and "method: mail-at" in card


def test_export_robustbench_and_errors(done, tmp_path):
    _, out = done
    run = out / "main" / "at" / "seed0"
    files = irat.export.export(run, "robustbench", checkpoint="last", out=tmp_path / "rb")
    pt = next(p for p in files if p.suffix == ".pt")
    state = torch.load(pt, weights_only=True)
    last = torch.load(run / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(state[k], last[k]) for k in last)
    info = json.loads(next(p for p in files if p.suffix == ".json").read_text())
    assert info["checkpoint"] == "last" and info["clean_acc"] == ""  # last was not evaluated
    assert "Not evaluated yet" in (tmp_path / "rb" / "README.md").read_text()
    with pytest.raises(irat.export.ExportError, match="choose one of: safetensors, robustbench"):
        irat.export.export(run, "onnx")
    with pytest.raises(irat.export.ExportError, match="not a run directory"):
        irat.export.export(tmp_path, "safetensors")


# ---------------------------------------------------------------- TensorBoard


def test_tensorboard_scalars_or_a_clear_error_without_the_package(tmp_path):
    from irat.training import tensorboard

    if not tensorboard.available():
        with pytest.raises(
            ConfigError, match=r"needs the tensorboard package: pip install 'irat\[tensorboard\]'"
        ):
            irat.config.load(overrides=["--train.tensorboard=true"])
        return
    root = write_idx_fmnist(tmp_path / "fmnist", n_train=100, n_test=10)
    data = irat.data.load("fashion-mnist", root=root, val_size=20)
    model = irat.models.create("fc1", dataset=data.spec)
    irat.train(model, data, epochs=2, out=tmp_path / "run", progress=False, tensorboard=True, steps=1)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    loss = [(e.step, e.value) for e in events.Scalars("train_loss")]
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [s for s, _ in loss] == [0, 1]
    assert all(math.isclose(v, r["train_loss"], rel_tol=1e-6) for (_, v), r in zip(loss, rows))
