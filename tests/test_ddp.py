"""torchrun / DistributedDataParallel (issue 15) on the CPU: two gloo processes spawned here.

K processes × b images must equal one process × K·b images on the same data order: the loader
shards every global batch, random starts are drawn for the global batch and sliced, and every
per-batch normalisation of the weights divides by global sums (``irat.distributed``). The
comparisons are on the run files (last.pt, records/), which only rank 0 writes.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import irat
from irat.config import ConfigError
from irat.training.records import load_record
from irat.training.rundir import RunDir

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo")

N_TRAIN, N_VAL = 256, 32


@pytest.fixture(scope="module")
def toy(toy_npz):
    """A 4-class 8×8 toy problem (class = bright quadrant), 256 training + 32 validation images."""
    return toy_npz(N_TRAIN + N_VAL, 64)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    """The environment of a command-line process: one thread, this checkout's irat."""
    src = str(Path(irat.__file__).parents[1])
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": src}


def _torchrun(*flags: str) -> list[str]:
    """``torchrun`` (as ``python -m torch.distributed.run``) with ``flags``; two processes on a
    free port unless the flags say otherwise."""
    if not flags:
        flags = ("--nproc-per-node=2", f"--master-port={_free_port()}")
    return [sys.executable, "-m", "torch.distributed.run", *flags]


def _train(npz, out, method, kw):
    torch.set_num_threads(1)
    meta = kw.pop("meta_size", 0)
    data = irat.data.load("npz", root=npz, val_size=N_VAL, seed=0, meta_size=meta)
    torch.manual_seed(0)
    model = irat.models.create("fc1", dataset=data.spec)
    opts = dict(method=method, epochs=1, eps=0.1, out=out, steps=3, lr=0.05, batch_size=128, progress=False)
    opts.update(kw)
    return irat.train(model, data, **{k: v for k, v in opts.items() if v is not None})


def _worker(rank, world, port, npz, jobs, errors):
    """Run ``jobs`` [(out, method, kw)] one after the other in this process of ``world``."""
    os.environ.update(irat.distributed.local_env(rank, world, port))
    method = None
    try:
        for out, method, kw in jobs:
            run = _train(npz, out, method, dict(kw))
            state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
            torch.save(state, f"{out}.rank{rank}.pt")
    except Exception as e:  # reported to the test; the other process may then fail on a collective
        errors.put(f"{rank}: {method}: {type(e).__name__}: {e}")
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _spawn_jobs(npz, jobs, world=2):
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    jobs = [(str(out), method, kw) for out, method, kw in jobs]
    try:
        mp.spawn(_worker, args=(world, _free_port(), str(npz), jobs, errors), nprocs=world)
    except Exception:
        msgs = []
        while not errors.empty():
            msgs.append(errors.get())
        raise AssertionError("; ".join(msgs) or "a process failed") from None


def _spawn(npz, out, method, world=2, **kw):
    _spawn_jobs(npz, [(out, method, kw)], world)


def _same_run(a, b, atol=1e-5):
    ma, mb = (torch.load(RunDir(p).last, weights_only=True)["model"] for p in (a, b))
    for k in ma:
        torch.testing.assert_close(ma[k], mb[k], atol=atol, rtol=1e-4, msg=f"parameter {k}")
    for epoch in range(len(RunDir(a).metrics())):
        ra, rb = load_record(RunDir(a).record_path(epoch)), load_record(RunDir(b).record_path(epoch))
        assert (ra["idx"] == rb["idx"]).all()
        for f in ("weight", "loss", "p_true", "margin_adv", "data_coef"):
            np.testing.assert_allclose(ra[f], rb[f], atol=atol, rtol=1e-4, equal_nan=True, err_msg=f)
        assert not np.isnan(ra["weight"]).any()  # every instance was trained on by one process
    ha, hb = RunDir(a).metrics(), RunDir(b).metrics()
    for x, y in zip(ha, hb, strict=True):
        assert abs(x["train_loss"] - y["train_loss"]) < 1e-5


EXACT = [
    ("at", {}),
    ("mail-trades", {"burn_in": 0}),
    ("lrat", {}),
    # BiLAW's meta step: the pseudo update on the global batch, μ's meta-gradient summed over the
    # processes (through the global normalisation too); lr of μ raised so that μ moves enough
    ("bilaw", {"meta_size": 32, "burn_in": 0, "bilaw.lr": 1.0}),
    ("bilaw-np", {"meta_size": 32, "burn_in": 0}),  # each process differentiates its validation shard
    # ATTA's cache and the adaptive targets over two epochs: rows merged at the end of each epoch
    ("fast-at-rw-at", {"burn_in": 0, "epochs": 2, "steps": None}),
    # fine-tuning with extra data: the half/half batches (MixedLoader) sharded like Loader's; the
    # extra set here is the toy file's own training images ("extra" is replaced by its path)
    ("finetune", {"extra": True}),
]


def test_two_processes_of_64_equal_one_of_128(toy, tmp_path):
    """at, mail-trades, lrat, bilaw, fast-at-rw-at, finetune with extra data: 2 × 64 equals 1 × 128
    on the same data order
    (losses, weights and the other per-instance records, parameters, BiLAW's weight network,
    fast AT's cache and targets); only rank 0 writes; both processes end with the same weights."""
    exact = [(m, {**kw, "extra": str(toy)} if "extra" in kw else kw) for m, kw in EXACT]
    for method, kw in exact:
        _train(toy, tmp_path / f"one-{method}", method, dict(kw))
    _spawn_jobs(toy, [(tmp_path / f"two-{method}", method, kw) for method, kw in exact])
    for method, _ in EXACT:
        one, two = tmp_path / f"one-{method}", tmp_path / f"two-{method}"
        _same_run(one, two)
        r0, r1 = (torch.load(f"{two}.rank{r}.pt", weights_only=True) for r in (0, 1))
        for k in r0:
            torch.testing.assert_close(r0[k], r1[k], atol=0, rtol=0, msg=f"{method}: {k}")
        a, b = (torch.load(RunDir(p).last, weights_only=True) for p in (one, two))
        if "net" in a.get("weighting", {}):
            for k in a["weighting"]["net"]:
                torch.testing.assert_close(
                    a["weighting"]["net"][k], b["weighting"]["net"][k], atol=1e-5, rtol=1e-4, msg=k
                )
        if "instance_state" in a:
            sa, sb = a["instance_state"], b["instance_state"]
            torch.testing.assert_close(sa["cache"]["store"], sb["cache"]["store"], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(sa["targets"]["t"], sb["targets"]["t"], atol=1e-5, rtol=1e-4)
    # rank 0 alone wrote: one metrics row per epoch, no temporary files left
    assert len(RunDir(tmp_path / "two-at").metrics()) == 1
    assert (tmp_path / "two-at" / "records" / "epoch_000.npz").exists()
    assert not any(p.name.endswith(".tmp") or p.name.startswith(".") for p in tmp_path.rglob("*"))


def _one_process_reference(toy, out):
    """One epoch, then resumed to two (the lr schedule depends on ``epochs``, so the reference
    is resumed the same way), all on one process."""
    _train(toy, out, "at", {"epochs": 1})
    _train(toy, out, "at", {"epochs": 2, "resume": True})


def test_resume_from_two_processes_on_one(toy, tmp_path):
    _spawn(toy, tmp_path / "r", "at", epochs=1)
    _train(toy, tmp_path / "r", "at", {"epochs": 2, "resume": True})
    _one_process_reference(toy, tmp_path / "ref")
    _same_run(tmp_path / "r", tmp_path / "ref")


def test_resume_from_one_process_on_two(toy, tmp_path):
    _train(toy, tmp_path / "r", "at", {"epochs": 1})
    _spawn(toy, tmp_path / "r", "at", epochs=2, resume=True)
    _one_process_reference(toy, tmp_path / "ref")
    _same_run(tmp_path / "r", tmp_path / "ref")


def test_an_existing_run_directory_stops_every_process(toy, tmp_path):
    _train(toy, tmp_path / "r", "at", {})
    with pytest.raises(AssertionError, match="already holds a run"):
        _spawn(toy, tmp_path / "r", "at")


def test_a_global_batch_that_does_not_divide_is_refused(toy, tmp_path, monkeypatch):
    """Checked before anything is written (as if two processes ran: the check needs no peer)."""
    monkeypatch.setattr(irat.distributed, "world_size", lambda: 2)
    with pytest.raises(ConfigError, match=r"batch_size=127 .* does not divide by the 2 processes.*=126"):
        _train(toy, tmp_path / "odd", "at", {"batch_size": 127})
    with pytest.raises(ConfigError, match="sync_bn needs CUDA"):
        _train(toy, tmp_path / "odd", "at", {"sync_bn": True})
    assert not (tmp_path / "odd").exists()


def test_every_named_method_runs_under_two_processes(toy, tmp_path):
    jobs = []
    for method in irat.methods.names():
        kw = {"meta_size": 32} if method.startswith("bilaw") else {}
        kw["steps"] = None if method.startswith("fast-at") else 1  # fast AT: its own single step
        jobs.append((tmp_path / method, method, kw))
    _spawn_jobs(toy, jobs)
    for method in irat.methods.names():
        assert np.isfinite(RunDir(tmp_path / method).metrics()[-1]["train_loss"]), method


def _eval_worker(rank, world, port, npz, out, errors):
    """Evaluate an untrained fc1 with PGD-3 (random starts) on the 64 test images: whole; then
    killed after two saved batches of its shard and started again from the progress files."""
    from irat.evaluation.progress import Progress

    os.environ.update(irat.distributed.local_env(rank, world, port))
    torch.set_num_threads(1)
    try:
        irat.distributed.setup(torch.device("cpu"))
        data = irat.data.load("npz", root=npz, val_size=N_VAL, seed=0)
        torch.manual_seed(0)
        model = irat.models.create("fc1", dataset=data.spec)
        kw = dict(attacks=["pgd-3"], eps=0.1, batch_size=8, progress=False, sanity=False)
        whole = irat.evaluate(model, data.test, **kw).per_sample["pgd-3"]
        original, saves = Progress.save, []

        def save_then_die(self, *a, **k):
            original(self, *a, **k)
            saves.append(1)
            if len(saves) == 2:
                raise KeyboardInterrupt  # killed after its second batch

        Progress.save = save_then_die
        try:
            irat.evaluate(model, data.test, resume_dir=out, **kw)
        except KeyboardInterrupt:
            pass
        Progress.save = original
        irat.distributed.barrier()  # both processes killed (each wrote its file) before looking
        files = sorted(p.name for p in Path(out).glob("*.pt"))
        resumed = irat.evaluate(model, data.test, resume_dir=out, **kw).per_sample["pgd-3"]
        torch.save({"whole": whole, "resumed": resumed, "files": files}, f"{out}.rank{rank}.pt")
    except Exception as e:
        errors.put(f"{rank}: {type(e).__name__}: {e}")
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_a_killed_evaluation_resumes_from_each_process_s_progress_file(toy, tmp_path):
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    out = tmp_path / "progress"
    mp.spawn(_eval_worker, args=(2, _free_port(), str(toy), str(out), errors), nprocs=2)
    r0, r1 = (torch.load(f"{out}.rank{r}.pt", weights_only=True) for r in (0, 1))
    assert len(r0["files"]) == 2 and r0["files"] == r1["files"]  # one file per process, shards apart
    for r in (r0, r1):
        assert torch.equal(r["resumed"], r["whole"])  # as if never killed (random starts included)
        assert len(r["whole"]) == 64
    assert not out.exists()  # complete: the files and their folder are gone


def test_irat_train_and_eval_under_torchrun(toy, tmp_path):
    """``torchrun --nproc-per-node=2 -m irat train`` trains; ``... -m irat eval``: each process
    attacks its half of the test images and rank 0 writes eval.json; with deterministic attacks
    (clean, FGSM) the per-sample results equal one process's."""
    env = _env()
    out = tmp_path / "run"
    train = [
        "-m",
        "irat",
        "train",
        "--data.dataset=npz",
        f"--data.root={toy}",
        f"--data.val_size={N_VAL}",
        "--model.name=fc1",
        "--train.epochs=1",
        "--train.batch_size=128",
        "--attack.eps=0.1",
        "--attack.steps=3",
        "--train.progress=false",
        "--out",
        str(out),
    ]
    r = subprocess.run([*_torchrun(), *train], env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("best epoch") == 1, r.stdout  # rank 0 alone reports
    run = RunDir(out)
    run.dir = out
    import json

    from irat.attacks.fmn import available

    attacks = "clean,fgsm,fmn-10" if available() else "clean,fgsm"  # FMN: foolbox, the fmn extra
    cmd = ["-m", "irat", "eval", str(run.dir), "--attacks", attacks]
    one = subprocess.run([sys.executable, *cmd], env=env, capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    single = torch.load(run.dir / "eval_per_sample.pt", weights_only=True)
    norms = json.loads((run.dir / "eval.json").read_text()).get("minimal_norms")
    (run.dir / "eval.json").unlink()
    two = subprocess.run([*_torchrun(), *cmd], env=env, capture_output=True, text=True, timeout=180)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("checkpoint:") == 1  # rank 0 alone prints and writes
    sharded = torch.load(run.dir / "eval_per_sample.pt", weights_only=True)
    assert (run.dir / "eval.json").exists()
    for name in ("clean", "fgsm", "worst-case"):
        assert torch.equal(single[name], sharded[name]), name
    # FMN's minimal norms: each process finds its shard's, the distribution is the whole split's
    assert json.loads((run.dir / "eval.json").read_text()).get("minimal_norms") == norms


def test_irat_compare_under_torchrun_writes_once_and_analyses_on_rank_0(toy, tmp_path):
    """Every process trains and evaluates each cell, rank 0 writes and prints the table; then rank 0
    alone draws each run's analyses while the other process has finished; ``irat analyze`` under
    torchrun likewise runs once, on rank 0."""
    env = _env()
    cmd = [
        "-m",
        "irat",
        "compare",
        "--methods",
        "at,mail-at",
        "--out",
        str(tmp_path / "c"),
        "--data.dataset=npz",
        f"--data.root={toy}",
        f"--data.val_size={N_VAL}",
        "--model.name=fc1",
        "--epochs=1",
        "--steps=2",
        "--eps=0.05",
        "--progress=false",
        "--eval.attacks=clean,fgsm",
        "--train.batch_size=128",
    ]
    r = subprocess.run([*_torchrun(), *cmd], env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("table:") == 1 and "| mail-at |" in r.stdout and r.stdout.count("plots:") == 1
    assert (tmp_path / "c" / "comparison.json").exists() and (tmp_path / "c" / "at" / "eval.json").exists()
    for method in ("at", "mail-at"):
        report = (tmp_path / "c" / method / "analysis" / "report.md").read_text()
        assert "## Instance weights per class" in report
    (tmp_path / "c" / "at" / "analysis" / "report.md").unlink()
    r = subprocess.run(
        [*_torchrun(), "-m", "irat", "analyze", str(tmp_path / "c" / "at"), "--limit", "32"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("report.md") == 1 and (tmp_path / "c" / "at" / "analysis" / "report.md").exists()


def test_irat_bench_across_two_nodes_with_torchrun_s_rendezvous_flags(toy, tmp_path):
    """Two torchrun launchers, one per "node" (``--nnodes=2 --node-rank=r`` with a static master,
    here both on this machine): ``irat bench`` runs its cells in both processes, node 0 alone
    writes the tables and prints; the table equals one process's (clean and FGSM are
    deterministic, and the sharded training step equals one process's)."""
    import yaml

    env = _env()
    spec = {
        "title": "two nodes",
        "config": {
            "data": {"dataset": "npz", "root": str(toy), "val_size": N_VAL},
            "model": {"name": "fc1"},
            "attack": {"eps": 0.1, "steps": 2},
            "train": {"epochs": 1, "batch_size": 128, "lr": 0.05, "progress": False},
        },
        "seeds": [0],
        "methods": ["at", "gairat"],
        "attacks": ["clean", "fgsm"],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    bench = ["-m", "irat", "bench", str(path)]
    port = _free_port()
    master = ["--nnodes=2", "--nproc-per-node=1", "--master-addr=127.0.0.1", f"--master-port={port}"]
    nodes = [
        subprocess.Popen(
            [*_torchrun(f"--node-rank={r}", *master), *bench, "--out", str(tmp_path / "two")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    outs = [p.communicate(timeout=300) for p in nodes]
    for p, (_, err) in zip(nodes, outs):
        assert p.returncode == 0, err[-3000:]
    assert "| gairat |" in outs[0][0] and "| gairat |" not in outs[1][0]  # node 0 alone prints
    one = subprocess.run(
        [sys.executable, *bench, "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    table = (tmp_path / "two" / "table.csv").read_text()
    assert table == (tmp_path / "one" / "table.csv").read_text().replace(
        str(tmp_path / "one"), str(tmp_path / "two")
    )
