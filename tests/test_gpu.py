"""The training and evaluation paths on a CUDA device (marker ``gpu``; skipped without one, run by
``benchmarks/gpu.sh`` on a lent GPU machine).

What only a GPU can show: the step computes on the device what it computes on the CPU (float64,
so that PGD's sign steps do not amplify kernel rounding); no operator in a step synchronises
with the host (``torch.cuda.set_sync_debug_mode("error")`` raises on any that does); bf16
autocast, CUDA-graph compilation and whole-split evaluation run; a run trained on the GPU
resumes and loads on the CPU.
"""

from __future__ import annotations

import copy

import pytest
import torch

import irat
from irat import methods
from irat.config import resolve_config
from irat.data import Split
from irat.training.assemble import build_learned, build_step, instance_state
from irat.training.step import train_step
from irat.types import Batch

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")
FMNIST = irat.data.registry.get("fashion-mnist").spec
# every family: plain, AT, TRADES, MART, FAT's early stop, and each weighting scheme after burn-in
FAMILIES = ["plain", "at", "trades", "mart", "fat", "gairat", "wmmr", "mail-at", "mail-trades", "vir-at"]


def _batch(n=32, device="cpu", dtype=torch.float32) -> Batch:
    """The same random images and labels on any device (drawn on the CPU, then moved)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(n, 1, 28, 28, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g)
    return Batch(torch.arange(n, device=device), x.to(device), y.to(device))


def _parts(method, device, **kw):
    steps = 1 if methods.get(method).cached else 3  # fast AT: one step from ATTA's cache
    kw = {"eps": 0.1, "steps": steps, "epochs": 10, "weighting.burn_in": 0, **kw}
    cfg = resolve_config(None, method=method, **kw)
    meta = irat.data.Split(torch.rand(200, 1, 28, 28), torch.randint(0, 10, (200,)), torch.arange(200))
    learned = build_learned(cfg, 10, meta.to(device))  # BiLAW's D_meta and weight network
    learned = learned.to(device) if learned is not None else None
    b = _batch(device=device)  # fast AT's per-instance state covers the batch's indices
    state = instance_state(cfg, Split(b.x, b.y, b.idx), FMNIST, augment=False)
    generator = torch.Generator(device=device).manual_seed(0)
    return build_step(cfg, generator, epoch=5, learned=learned, state=state)


@pytest.mark.parametrize("method", [m for m in FAMILIES if m != "fat"])
def test_a_step_on_the_gpu_equals_the_step_on_the_cpu(method):
    torch.manual_seed(0)
    model = irat.models.create("tiny-cnn", dataset=FMNIST).double()
    out = {}
    for device in ("cpu", "cuda"):
        m = copy.deepcopy(model).to(device)
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        # no random start: the two devices' random streams differ. The KL attack (TRADES) cannot
        # start at x itself (its gradient there is rounding noise, whose sign differs between
        # devices), so its methods compare the objective at K = 0
        kl = irat.methods.get(method).attack_loss == "kl"
        parts = _parts(method, device, start="none", **({"steps": 0} if kl else {}))
        step = train_step(m, _batch(device=device, dtype=torch.float64), parts, opt, epoch=5)
        out[device] = (step.loss.cpu(), step.weights.cpu(), [p.detach().cpu() for p in m.parameters()])
    (la, wa, pa), (lb, wb, pb) = out["cpu"], out["cuda"]
    assert torch.allclose(la, lb, rtol=0, atol=1e-9), (la, lb)
    assert torch.allclose(wa, wb, rtol=0, atol=1e-9)
    assert all(torch.allclose(p, q, rtol=0, atol=1e-9) for p, q in zip(pa, pb))


@pytest.mark.parametrize("method", methods.names())
def test_no_operator_of_a_step_synchronises_with_the_host(method):
    torch.manual_seed(0)
    model = irat.models.create("tiny-cnn", dataset=FMNIST).to(CUDA)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    parts = _parts(method, CUDA)
    batch = _batch(device=CUDA)
    train_step(model, batch, parts, opt, epoch=5)  # first call: lazy initialisations may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        train_step(model, batch, parts, opt, epoch=5)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("method", ["at", "trades"])
def test_bf16_autocast_trains_with_fp32_parameters(method):
    torch.manual_seed(0)
    model = irat.models.create("preact-resnet18", dataset=irat.data.registry.get("cifar10").spec).to(CUDA)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator(device=CUDA).manual_seed(0)
    batch = Batch(torch.arange(64, device=CUDA), torch.rand(64, 3, 32, 32, device=CUDA, generator=g),
                  torch.randint(0, 10, (64,), device=CUDA, generator=g))  # fmt: skip
    with torch.autocast("cuda", dtype=torch.bfloat16):
        step = train_step(model, batch, _parts(method, CUDA), opt, epoch=0)
    assert torch.isfinite(step.loss) and step.stats.logits_adv.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def _npz_data(tmp_path, n=600, size=28):
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 256, (n, size, size)).astype(np.uint8)
    x[np.arange(n), y, :] = 255  # a learnable row per class
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:200], y_test=y[:200])
    return irat.data.load("npz", root=path, val_size=100)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("method", FAMILIES)
def test_a_gpu_run_trains_resumes_and_loads_on_the_cpu(tmp_path, method, deterministic, monkeypatch):
    from irat.training.rundir import RunDir

    data = _npz_data(tmp_path)
    kw = dict(method=method, epochs=2, eps=0.1, steps=3, batch_size=64, progress=False, burn_in=1)
    kw.update(device="cuda", deterministic=deterministic)

    def run(out, **more):
        torch.manual_seed(0)
        return irat.train(
            irat.models.create("tiny-cnn", dataset=data.spec), data, out=tmp_path / out, **kw, **more
        )

    whole = run("whole")
    original = RunDir.append_metrics

    def killed_in_the_second_epoch(self, row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt
        original(self, row)

    monkeypatch.setattr(RunDir, "append_metrics", killed_in_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run("cut")
    monkeypatch.undo()
    resumed = run("cut", resume=True)
    losses = [r["train_loss"] for r in whole.history], [r["train_loss"] for r in resumed.history]
    if deterministic:  # bit for bit
        assert losses[0] == losses[1]
    else:  # cuDNN's autotuned kernels may add in another order (irat.runtime.configure_cuda), and
        # the difference grows with training: 1.3e-4 relative after two epochs of TRADES on an H200
        assert losses[0] == pytest.approx(losses[1], rel=1e-3)
    state = irat.training.checkpoint.load(whole.dir / "last.pt", map_location="cpu")
    model = irat.models.create("tiny-cnn", dataset=data.spec)
    model.load_state_dict(state["model"])
    assert all(t.device.type == "cpu" for t in model.state_dict().values())


def test_compiled_cuda_graph_training_runs_and_keeps_the_models_keys(tmp_path):
    data = _npz_data(tmp_path)
    torch.manual_seed(0)
    model = irat.models.create("tiny-cnn", dataset=data.spec)
    run = irat.train(model, data, method="at", epochs=2, eps=0.1, steps=3, batch_size=64, progress=False,
                     device="cuda", compile="reduce-overhead", out=tmp_path / "c")  # fmt: skip
    assert all(r["train_loss"] == r["train_loss"] for r in run.history)  # finite, not NaN
    keys = irat.training.checkpoint.load(run.dir / "last.pt", map_location="cpu")["model"].keys()
    assert set(keys) == set(model.state_dict().keys())


def test_whole_split_evaluation_on_the_gpu_equals_batches_of_100(tmp_path):
    data = _npz_data(tmp_path)
    torch.manual_seed(0)
    model = irat.models.create("tiny-cnn", dataset=data.spec).to(CUDA).eval()
    x, y = data.test.x.to(CUDA), data.test.y.to(CUDA)
    attack = irat.attacks.build("pgd-5", eps=0.1)
    from irat.evaluation.robust import correct_under, default_batch_size

    assert default_batch_size(CUDA, len(y)) == len(y)
    torch.manual_seed(1)
    whole = correct_under(model, x, y, attack)
    torch.manual_seed(1)
    parts = correct_under(model, x, y, attack, batch_size=100)
    assert whole.device.type == "cuda" and whole.shape == (len(y),)
    # the uniform start draws differ between batchings; correctness agrees on nearly every image
    assert (whole == parts).float().mean() > 0.95
