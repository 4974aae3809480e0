"""The benchmark scripts run, and what they compute by formula is right. Nothing here is timed:
speeds are measured by running the scripts on purpose (benchmarks/README.md)."""

import importlib.util
from pathlib import Path

import torch

import irat
from irat.config import resolve_config
from irat.training.assemble import build_step
from irat.types import Batch

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flops_of_an_fc1_at_step_match_the_hand_count():
    throughput = _script("throughput")
    fmnist = irat.data.registry.get("fashion-mnist").spec
    model = irat.models.create("fc1", dataset=fmnist)
    parts = build_step(resolve_config(None, method="at", eps=0.1, steps=10), torch.Generator().manual_seed(0))
    batch = Batch(torch.arange(32), torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,)))
    # one forward: 2·(784·1024 + 1024·10); each attack step: a forward and an input gradient
    # (through W2ᵀ and W1ᵀ: the same products again); the update: a forward, then the gradients
    # of W2, of the hidden layer and of W1 (no input gradient)
    fwd = 2 * (784 * 1024 + 1024 * 10)
    expected = 10 * (2 * fwd) + fwd + (2 * 1024 * 10 + 2 * 1024 * 10 + 2 * 784 * 1024)
    assert throughput.flops_per_image(model, batch, parts) == expected == 35_794_944


def test_flops_of_an_fc1_lrat_step_are_the_passes_it_needs():
    """LRAT = SAA + CW: one natural forward to pick the targets, 3 targets × (20 input gradients
    + 1 forward) as one batched attack, CW-10, then one update on the 2 variants per image."""
    throughput = _script("throughput")
    fmnist = irat.data.registry.get("fashion-mnist").spec
    model = irat.models.create("fc1", dataset=fmnist)
    parts = build_step(
        resolve_config(None, method="lrat", eps=0.1, steps=10), torch.Generator().manual_seed(0)
    )
    batch = Batch(torch.arange(32), torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,)))
    fwd = 2 * (784 * 1024 + 1024 * 10)
    param_grads = 2 * 1024 * 10 + 2 * 1024 * 10 + 2 * 784 * 1024
    saa = fwd + 3 * (20 * (2 * fwd) + fwd)
    cw = 10 * (2 * fwd)
    expected = saa + cw + 2 * (fwd + param_grads)
    assert throughput.flops_per_image(model, batch, parts) == expected


def test_throughput_script_writes_every_field(capsys):
    throughput = _script("throughput")
    rows = throughput.main(
        "--model fc1 --method at,gairat,lrat --data synthetic --images 64 --eval-images 32 --batch-size 32 "
        "--steps 2 --repeats 1 --json".split()
    )
    assert [r["method"] for r in rows] == ["at", "gairat", "lrat"]
    for r in rows:
        naive = ("naive_images_per_s", "speedup_vs_naive") if r["method"] != "lrat" else ()
        for key in ("images_per_s", *naive, "achieved_flops", "peak_flops"):
            assert r[key] > 0, key
        parts = [r[k] for k in ("attack_forward_s", "attack_backward_s", "weights_s", "meta_s", "update_s")]
        assert all(p >= 0 for p in parts) and 0 < r["attack_fraction"] < 1
        assert r["meta_s"] == 0 and r["peak_step_memory_bytes"] > 0
    assert rows[2]["naive_images_per_s"] is None  # SAA has no naive reference
    assert len(capsys.readouterr().out.strip().splitlines()) == 3  # one JSON line per configuration


def test_throughput_measures_bilaw_s_meta_step_and_memory():
    # the building blocks of a --method bilaw row (main() adds the matrix-product peak, slow here)
    import argparse

    throughput = _script("throughput")
    from irat.training.assemble import build_learned

    fmnist = irat.data.registry.get("fashion-mnist").spec
    g = torch.Generator().manual_seed(0)
    train = irat.data.Split(
        torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g), torch.arange(64)
    )
    args = argparse.Namespace(batch_size=32, channels_last=False, bf16=False)
    out = {}
    for method in ("at", "bilaw"):
        cfg = resolve_config(None, method=method, eps=0.1, steps=2)
        learned = build_learned(cfg, 10, train.subset(32))  # D_meta: 32 of the images
        parts = build_step(cfg, torch.Generator().manual_seed(0), learned=learned)
        torch.manual_seed(0)
        model = irat.models.create("fc1", dataset=fmnist)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        cpu = torch.device("cpu")
        out[method] = (
            throughput.peak_step_memory(model, train, parts, opt, args, cpu),
            throughput.breakdown(model, train, parts, opt, args, cpu)["meta_s"],
            throughput.flops_per_image(model, next(iter(irat.data.Loader(train, 32, shuffle=False))), parts),
        )
    (mem_at, meta_at, flops_at), (mem_bilaw, meta_bilaw, flops_bilaw) = out["at"], out["bilaw"]
    assert meta_at == 0 < meta_bilaw
    # the pseudo-update's graph and the validation batch: more memory and work per step than AT
    assert mem_bilaw > mem_at > 0 and flops_bilaw > flops_at


def test_stability_script_trains_each_method_at_its_defaults_and_reports(fmnist_small, monkeypatch):
    stability = _script("stability")
    monkeypatch.setattr(irat.data, "load", lambda *a, **k: fmnist_small)
    rows = stability.main(
        "--methods at,trades --models fc1 --seeds 0 --epochs 1 --eval-images 40 --json".split()
    )
    assert [(r["method"], r["lr"]) for r in rows] == [
        ("at", 0.1),
        ("trades", 0.01),
    ]  # each at its own default
    for r in rows:
        assert r["status"] in ("ok",) or r["status"].startswith("collapse warning")
        assert 0 <= r["pgd20"] <= r["clean"] <= 1 and len(r["val_clean"]) == 1


def test_chaos_harness_checks_find_damage_and_compare_runs(tiny_npz, tmp_path):
    """benchmarks/chaos.py's own checks (its 20+ kills are run on purpose, not here)."""
    import shutil

    from irat.cli.main import main

    chaos = _script("chaos")
    run = tmp_path / "a" / "run"
    args = ["--data.dataset=npz", f"--data.root={tiny_npz}", "--data.val_size=40", "--model.name=fc1"]
    assert main(["train", *args, "--epochs=1", "--steps=1", "--progress=false", "--out", str(run)]) == 0
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert chaos.readable(tmp_path / "a") == [] and chaos.temporaries(tmp_path / "a") == []
    assert chaos.results(tmp_path / "a") == chaos.results(tmp_path / "b")
    (tmp_path / "b" / "run" / ".last.pt.x1.tmp").write_bytes(b"half")
    assert chaos.temporaries(tmp_path / "b") == [str(tmp_path / "b" / "run" / ".last.pt.x1.tmp")]
    (tmp_path / "b" / "run" / "last.pt").write_bytes(b"half a checkpoint")
    (problem,) = chaos.readable(tmp_path / "b")
    assert "last.pt is unreadable" in problem
    (tmp_path / "b" / "run" / "last.pt").unlink()
    assert chaos.results(tmp_path / "a") != chaos.results(tmp_path / "b")


def test_ddp_scaling_worker_runs_learned_and_stateful_methods_in_one_process():
    # the worker a spawned process runs, here in this process (world 1: no process group); BiLAW
    # needs its learned weighting and fast AT its per-instance state, built as irat.train does
    ddp = _script("ddp_scaling")
    times = []

    class Queue:
        put = staticmethod(times.append)

    for method in ("bilaw", "fast-at-rw-at", "at"):
        args = ddp.argparse.Namespace(
            model="fc1", method=method, batch_size=16, steps=1, warmup=1, attack_steps=10,
            eps=0.1, threads=torch.get_num_threads(), device="cpu",
        )  # fmt: skip
        ddp._worker(0, 1, 0, args, Queue)
    assert len(times) == 3 and all(t > 0 for t in times)
