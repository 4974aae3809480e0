"""Bad input, as one table: every case gives one error, on one line, saying what was wrong and how
to fix it, and writes nothing (the folder it works in is byte-for-byte the same afterwards, apart
from what a case explicitly allows).

Kinds: configuration (unknown names of every kind, out-of-range numbers, contradictory options),
data files (missing, truncated, corrupt, a wrong checksum, npz arrays of the wrong shape, dtype
or labels), run directories and checkpoints (another model's or method's checkpoint, files that
are not ours, a malicious pickle), the command line, and a training loss that becomes non-finite.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import irat
import irat.data as D
from irat.cli.main import main
from irat.config import ConfigError, from_dict, load
from irat.data import fetch, registry
from irat.training import checkpoint
from test_data import IDX_NAMES, _Server, idx_bytes, write_cifar, write_idx_set


@dataclass
class Case:
    """``prepare(ctx) -> action``: writes what the case needs under ``ctx.tmp`` and returns the
    bad call. ``error``: the exception it must raise (``SystemExit``-free CLI cases: ``"cli"``,
    exit status 2 and one ``irat: error:`` line on stderr). ``says``: fragments the message must
    contain (what was wrong, how to fix it). ``allowed``: paths (relative to ``ctx.tmp``) the
    action may create or change."""

    id: str
    prepare: Callable
    error: type[BaseException] | str
    says: tuple[str, ...]
    allowed: tuple[str, ...] = ()


def config(values: dict) -> Callable:
    return lambda ctx: lambda: from_dict(values)


def overrides(*items: str) -> Callable:
    return lambda ctx: lambda: load(None, list(items))


def cli(*args: str) -> Callable:
    """``irat ARGS`` in this process; ``{tmp}``, ``{npz}`` and ``{run}`` are filled in."""

    def prepare(ctx):
        filled = [a.format(tmp=ctx.tmp, npz=ctx.npz, run=ctx.run) for a in args]
        return lambda: main(filled)

    return prepare


def npz_file(**arrays) -> Callable:
    """An npz with good defaults (4 classes of 8×8 uint8) and ``arrays`` replaced."""

    def prepare(ctx):
        rng = np.random.default_rng(0)
        good = {
            "x_train": rng.integers(0, 256, (40, 8, 8), dtype=np.uint8),
            "y_train": np.arange(40) % 4,
            "x_test": rng.integers(0, 256, (12, 8, 8), dtype=np.uint8),
            "y_test": np.arange(12) % 4,
        }
        path = ctx.tmp / "data.npz"
        np.savez(path, **{k: v for k, v in {**good, **arrays}.items() if v is not None})  # None: left out
        return lambda: D.load("npz", root=path, val_size=0)

    return prepare


def idx_folder(damage: Callable[[Path], None], dataset: str = "fashion-mnist") -> Callable:
    def prepare(ctx):
        folder = ctx.tmp / "fm"
        write_idx_set(folder)
        damage(folder)
        return lambda: D.load(dataset, root=folder, val_size=0, download=False)

    return prepare


def _truncate(folder):
    path = folder / f"{IDX_NAMES[0]}.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:1000]))


def _cut_gzip(folder):
    path = folder / f"{IDX_NAMES[2]}.gz"
    path.write_bytes(path.read_bytes()[:100])


def _labels_out_of_range(folder):
    (folder / f"{IDX_NAMES[1]}.gz").write_bytes(gzip.compress(idx_bytes(np.full(40, 12, np.uint8))))


def _remove_labels(folder):
    (folder / f"{IDX_NAMES[3]}.gz").unlink()


def wrong_checksum_download(ctx):
    served = ctx.tmp / "served"
    write_idx_set(served, n_train=30, n_test=10)
    files = {
        f"{n}.gz": ("sha256", hashlib.sha256((served / f"{n}.gz").read_bytes()).hexdigest())
        for n in IDX_NAMES
    }
    ctx.mp.setitem(
        registry.REGISTRY, "fashion-mnist", replace(registry.REGISTRY["fashion-mnist"], files=files)
    )
    path = served / IDX_NAMES[0]
    (served / f"{IDX_NAMES[0]}.gz").write_bytes(gzip.compress(b"tampered" + path.name.encode()))
    server = _Server(served)
    ctx.cleanup.append(server.close)
    ctx.mp.setenv("IRAT_MIRROR", server.url)
    return lambda: D.load("fashion-mnist", val_size=0)


def malicious_cifar(ctx):
    folder = ctx.tmp / "c10"
    write_cifar(folder)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil()}))
    return lambda: D.load("cifar10", root=folder, val_size=0)


# ---------------------------------------------------------------- run directories, checkpoints


def run_copy(ctx, name="run") -> Path:
    """A copy of the small trained run (fc1 on the toy npz, method at)."""
    out = ctx.tmp / name
    shutil.copytree(ctx.run, out)
    return out


def eval_with(change: Callable[[Path], None]) -> Callable:
    def prepare(ctx):
        out = run_copy(ctx)
        change(out)
        return lambda: main(["eval", str(out), "--attacks", "clean", "--checkpoint", "last"])

    return prepare


def resume_with(change: Callable[[Path], None]) -> Callable:
    def prepare(ctx):
        out = run_copy(ctx)
        change(out)
        return lambda: main(["train", "--out", str(out), "--resume"])

    return prepare


def _another_models_checkpoint(out):
    spec = SimpleNamespace(channels=1, image_size=8, num_classes=4, mean=(0.5,), std=(0.25,))
    other = irat.models.create("tiny-cnn", dataset=spec)
    checkpoint.save(out / "last.pt", {"model": other.state_dict(), "epoch": 0})  # no owner: an old file


def _another_methods_checkpoint(out):
    state = checkpoint.load(out / "last.pt")
    state["owner"] = {**state["owner"], "method": "trades"}
    checkpoint.save(out / "last.pt", state)


def _a_tensor_not_a_checkpoint(out):
    torch.save(torch.zeros(3), out / "last.pt")


def _a_dict_without_weights(out):
    torch.save({"weights": [1, 2, 3]}, out / "last.pt")


def _garbage_checkpoint(out):
    (out / "last.pt").write_bytes(b"PK\x03\x04 not really a zip")


def _malicious_checkpoint(out):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": Evil(), "epoch": 0}, out / "last.pt")


def _config_not_ours(out):
    (out / "config.yaml").write_text("- just\n- a list\n")


def _config_not_yaml(out):
    (out / "config.yaml").write_text("train: [unclosed\n")


def _metrics_damaged(out):
    (out / "metrics.jsonl").write_text('{"epoch": 0, "lr": 0.1}\n{"epoch": 1, "lr"\n')


def nan_training(ctx):
    data = irat.data.load("npz", root=ctx.npz, val_size=20)
    model = irat.models.create("fc1", dataset=data.spec)
    return lambda: irat.train(
        model, data, "at", 2, 0.1, out=ctx.tmp / "nan", steps=1, lr=1e30, progress=False
    )


def evaluate_call(**kw) -> Callable:
    def prepare(ctx):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        split = SimpleNamespace(x=torch.rand(6, 1, 2, 2), y=torch.zeros(6, dtype=torch.long))
        args = {"attacks": ["clean"], "eps": 0.1, "progress": False, **kw}
        return lambda: irat.evaluate(model, split, **args)

    return prepare


def models_create(name: str) -> Callable:
    spec = registry.get("fashion-mnist").spec
    return lambda ctx: lambda: irat.models.create(name, dataset=spec)


TRAIN = (
    "train --data.dataset=npz --data.root={npz} --data.val_size=20 --model.name=fc1 --progress=false".split()
)

CASES = [
    # configuration: unknown names of every kind
    Case(
        "unknown method",
        config({"train": {"method": "nope"}}),
        ConfigError,
        ("train.method='nope'", "choose one of"),
    ),
    Case(
        "misspelt key",
        config({"train": {"metod": "at"}}),
        ConfigError,
        ("unknown key train.metod", "valid keys in [train]"),
    ),
    Case("misspelt section", config({"trian": {"method": "at"}}), ConfigError, ("'trian'", "valid sections")),
    Case(
        "unknown dataset",
        config({"data": {"dataset": "imagenet"}}),
        ConfigError,
        ("'imagenet'", "fashion-mnist"),
    ),
    Case("unknown model", config({"model": {"name": "vgg"}}), ConfigError, ("'vgg'", "tiny-cnn")),
    Case(
        "unknown eval attack",
        config({"eval": {"attacks": ["clean", "pgd-x"]}}),
        ConfigError,
        ("'pgd-x'", "valid names"),
    ),
    Case(
        "unknown val attack",
        config({"train": {"val_attack": "pdg-20"}}),
        ConfigError,
        ("'pdg-20'", "valid names"),
    ),
    Case(
        "unknown objective",
        config({"train": {"objective": "hinge"}}),
        ConfigError,
        ("'hinge'", "choose one of"),
    ),
    Case(
        "unknown weighting",
        overrides("--weighting=softmax"),
        ConfigError,
        ("'softmax'", "choose one of: uniform"),
    ),
    Case("unknown norm", config({"attack": {"norm": "l3"}}), ConfigError, ("attack.norm='l3'", "linf, l2")),
    Case(
        "unknown start",
        config({"attack": {"start": "zeros"}}),
        ConfigError,
        ("'zeros'", "uniform, gauss_small, none"),
    ),
    Case(
        "unknown schedule",
        config({"train": {"schedule": "step"}}),
        ConfigError,
        ("'step'", "piecewise, cosine"),
    ),
    Case(
        "unknown precision",
        config({"train": {"precision": "fp16"}}),
        ConfigError,
        ("'fp16'", "choose one of: fp32, bf16"),
    ),
    Case(
        "unknown compile mode",
        config({"train": {"compile": "fast"}}),
        ConfigError,
        ("'fast'", "reduce-overhead"),
    ),
    Case(
        "unknown checkpoint",
        config({"eval": {"checkpoint": "first"}}),
        ConfigError,
        ("'first'", "best, last, both"),
    ),
    Case(
        "unknown preprocessing",
        config({"model": {"preprocess": "jpeg"}}),
        ConfigError,
        ("'jpeg'", "quantize-L"),
    ),
    Case("unknown bare option", overrides("--epoch=3"), ConfigError, ("'epoch'", "section.key=value")),
    Case(
        "unknown step size", config({"eval": {"attacks": ["pgd-20:fast"]}}), ConfigError, ("'fast'", "eps/4")
    ),
    # configuration: out-of-range numbers and wrong types
    Case("negative eps", config({"attack": {"eps": -0.1}}), ConfigError, ("attack.eps=-0.1", "must be >= 0")),
    Case("zero epochs", config({"train": {"epochs": 0}}), ConfigError, ("train.epochs=0", "must be >= 1")),
    Case("zero batch", config({"train": {"batch_size": 0}}), ConfigError, ("train.batch_size=0", ">= 1")),
    Case("zero lr", config({"train": {"lr": 0}}), ConfigError, ("train.lr=0.0", "must be > 0")),
    Case(
        "zero lr factor",
        config({"train": {"lr_decay": 0}}),
        ConfigError,
        ("train.lr_decay=0.0", "must be > 0"),
    ),
    Case("zero data limit", config({"data": {"limit": 0}}), ConfigError, ("data.limit=0", "must be > 0")),
    Case(
        "milestones in epochs",
        config({"train": {"milestones": [30, 60]}}),
        ConfigError,
        ("[30.0, 60.0]", "fractions"),
    ),
    Case(
        "negative eval step",
        config({"eval": {"step_size": -0.01}}),
        ConfigError,
        ("eval.step_size=-0.01", "> 0"),
    ),
    Case(
        "zero image count",
        config({"eval": {"attacks": ["pgd-20@0"]}}),
        ConfigError,
        ("'pgd-20@0'", "positive integer"),
    ),
    Case("zero restarts", config({"eval": {"attacks": ["pgd-20x0"]}}), ConfigError, ("'pgd-20x0'", ">= 1")),
    Case(
        "text for a number",
        config({"train": {"epochs": "ten"}}),
        ConfigError,
        ("train.epochs", "must be an integer"),
    ),
    Case(
        "number for a flag",
        config({"train": {"progress": 1}}),
        ConfigError,
        ("train.progress", "true or false"),
    ),
    Case(
        "override without value",
        overrides("--train.epochs"),
        ConfigError,
        ("'--train.epochs'", "--section.key=value"),
    ),
    # configuration: contradictory options
    Case(
        "lr factors per milestone",
        config({"train": {"lr_decay": [0.1, 0.1, 0.5]}}),
        ConfigError,
        ("train.lr_decay", "one number or one factor per milestone (2)"),
    ),
    Case(
        "reweighting without an lr drop",
        config({"train": {"method": "mail-at", "schedule": "constant"}}),
        ConfigError,
        ("constant", "set --weighting.burn_in=N"),
    ),
    Case(
        "bf16 with instance weights",
        config({"train": {"precision": "bf16", "method": "mail-trades"}}),
        ConfigError,
        ("plain, AT and TRADES training only", "Use --train.precision=fp32"),
    ),
    Case(
        "bpda without preprocessing",
        evaluate_call(bpda=True),
        ValueError,
        ("declares none", "Preprocessing(fn)"),
    ),
    # configuration files
    Case(
        "missing config file",
        lambda ctx: lambda: load(ctx.tmp / "none.yaml"),
        ConfigError,
        ("none.yaml", "does not exist"),
    ),
    Case(
        "config file not YAML",
        lambda ctx: (ctx.tmp.joinpath("c.yaml").write_text("train: [x\n"), lambda: load(ctx.tmp / "c.yaml"))[
            1
        ],
        ConfigError,
        ("c.yaml is not valid YAML (line 2", "fix that line"),
    ),
    # data files
    Case(
        "unknown dataset name",
        lambda ctx: lambda: D.load("imagenet"),
        D.DataError,
        ("'imagenet'", "choose one of"),
    ),
    Case(
        "missing data files",
        idx_folder(_remove_labels),
        D.DataError,
        ("t10k-labels-idx1-ubyte.gz", "searched"),
    ),
    Case("truncated IDX file", idx_folder(_truncate), D.DataError, ("is truncated", "delete it")),
    Case("cut gzip stream", idx_folder(_cut_gzip), D.DataError, ("t10k-images-idx3-ubyte.gz", "delete it")),
    Case(
        "labels out of range",
        idx_folder(_labels_out_of_range),
        D.DataError,
        ("labels span 12..12", "expected 0..9"),
    ),
    Case(
        "wrong checksum on download",
        wrong_checksum_download,
        D.DataError,
        ("does not match its sha256 checksum", "dataset-fashion-mnist"),
        allowed=("cache",),  # the folder it would have filled; the bad file is not kept
    ),
    Case("malicious CIFAR pickle", malicious_cifar, D.DataError, ("not allowed", "data_batch_1")),
    Case(
        "npz not a zip",
        lambda ctx: (
            ctx.tmp.joinpath("d.npz").write_bytes(b"hello"),
            lambda: D.load("npz", root=ctx.tmp / "d.npz"),
        )[1],
        D.DataError,
        ("not a readable .npz", "d.npz"),
    ),
    Case("npz missing arrays", npz_file(x_test=None), D.DataError, ("lacks arrays ['x_test']", "it needs")),
    Case(
        "npz 5-D images",
        npz_file(x_train=np.zeros((40, 1, 1, 8, 8), np.uint8)),
        D.DataError,
        ("x_train has shape", "[N,C,H,W]"),
    ),
    Case(
        "npz int32 images",
        npz_file(x_train=np.zeros((40, 8, 8), np.int32)),
        D.DataError,
        ("dtype int32", "store uint8"),
    ),
    Case(
        "npz float labels",
        npz_file(y_train=np.zeros(40)),
        D.DataError,
        ("y_train has dtype float64", "integer class labels"),
    ),
    Case(
        "npz negative labels",
        npz_file(y_train=np.arange(40) % 4 - 1),
        D.DataError,
        ("negative labels", "0..K-1"),
    ),
    Case(
        "npz label count",
        npz_file(y_train=np.zeros(39, int)),
        D.DataError,
        ("y_train has shape (39,)", "[40]"),
    ),
    Case(
        "npz non-square",
        npz_file(x_train=np.zeros((40, 8, 6), np.uint8), x_test=np.zeros((12, 8, 6), np.uint8)),
        D.DataError,
        ("square", "8x6"),
    ),
    Case(
        "validation split too large",
        lambda ctx: lambda: D.load("npz", root=ctx.npz, val_size=400),
        D.DataError,
        ("val_size=400 leaves no training images", "choose a smaller one"),
    ),
    # run directories, checkpoints and files that are not ours
    Case(
        "eval of a folder that is no run",
        cli("eval", "{tmp}"),
        "cli",
        ("is not a run directory", "config.yaml"),
    ),
    Case(
        "checkpoint of another model",
        eval_with(_another_models_checkpoint),
        "cli",
        ("weights of another model", "--model.name"),
    ),
    Case(
        "checkpoint of another method",
        resume_with(_another_methods_checkpoint),
        "cli",
        ("method 'trades' (this run: 'at')", "own checkpoint back"),
    ),
    Case(
        "a tensor, not a checkpoint",
        eval_with(_a_tensor_not_a_checkpoint),
        "cli",
        ("not an irat checkpoint", "delete it"),
    ),
    Case(
        "a dict without weights",
        eval_with(_a_dict_without_weights),
        "cli",
        ("holds no model weights", "delete it"),
    ),
    Case(
        "a damaged checkpoint",
        eval_with(_garbage_checkpoint),
        "cli",
        ("unreadable or not an irat checkpoint", "delete it"),
    ),
    Case(
        "a malicious pickle",
        eval_with(_malicious_checkpoint),
        "cli",
        ("asks to run print", "never executes code"),
    ),
    Case(
        "config.yaml not ours",
        eval_with(_config_not_ours),
        "cli",
        ("config.yaml is not an irat run config", "run directory"),
    ),
    Case(
        "config.yaml not YAML",
        resume_with(_config_not_yaml),
        "cli",
        ("config.yaml is not valid YAML", "run directory"),
    ),
    Case(
        "damaged metrics",
        resume_with(_metrics_damaged),
        "cli",
        ("metrics.jsonl line 2 is not JSON", "delete that line"),
    ),
    # the command line
    Case(
        "cli: negative eps",
        cli(*TRAIN, "--eps=-1", "--out", "{tmp}/x"),
        "cli",
        ("attack.eps=-1.0 must be >= 0",),
    ),
    Case(
        "cli: unknown method",
        cli(*TRAIN, "--method=magic", "--out", "{tmp}/x"),
        "cli",
        ("'magic'", "choose one of"),
    ),
    Case(
        "cli: an existing run", cli(*TRAIN, "--out", "{run}"), "cli", ("already holds a run", "pass --resume")
    ),
    Case(
        "cli: out is a file",
        lambda ctx: (ctx.tmp.joinpath("f").write_text(""), cli(*TRAIN, "--out", "{tmp}/f")(ctx))[1],
        "cli",
        ("exists and is not a directory", "choose another --out"),
    ),
    Case(
        "cli: bpda without preprocessing",
        cli("eval", "{run}", "--attacks", "clean", "--bpda"),
        "cli",
        ("declares none", "Preprocessing(fn)"),
    ),
    Case(
        "cli: unknown dataset to fetch",
        cli("data", "fetch", "imagenet"),
        "cli",
        ("'imagenet'", "choose one of"),
    ),
    # API arguments
    Case("evaluate: negative eps", evaluate_call(eps=-1.0), ValueError, ("eps=-1.0", ">= 0")),
    Case(
        "evaluate: no attacks",
        evaluate_call(attacks=[]),
        ValueError,
        ("attacks is empty", "name at least one"),
    ),
    Case("unknown architecture", models_create("vgg16"), ValueError, ("'vgg16'", "valid names")),
    # training
    Case(
        "non-finite loss",
        nan_training,
        irat.training.NonFiniteLossError,
        ("training loss became", "lower --train.lr"),
        allowed=("nan",),  # the run's config and empty metrics: no checkpoint, no metrics row
    ),
]


def test_the_table_is_large_and_its_ids_unique():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A toy npz and one finished run on it (fc1, method at, 1 epoch)."""
    root = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(0)
    y = np.arange(240) % 4
    x = rng.integers(0, 80, (240, 8, 8)).astype(np.uint8)
    for c in range(4):
        r, col = divmod(c, 2)
        x[y == c, 4 * r : 4 * r + 4, 4 * col : 4 * col + 4] += 170
    npz = root / "toy.npz"
    np.savez(npz, x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    run = root / "run"
    args = [a.format(npz=npz) for a in TRAIN]
    assert main([*args, "--epochs=1", "--steps=1", "--out", str(run)]) == 0
    return npz, run


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_message_and_writes_nothing(case, small_run, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(work / "cache"))
    monkeypatch.delenv("IRAT_DATA", raising=False)
    monkeypatch.delenv("IRAT_MIRROR", raising=False)
    monkeypatch.setattr(fetch, "SYSTEM_DIR", tmp_path / "system")
    ctx = SimpleNamespace(tmp=work, mp=monkeypatch, npz=small_run[0], run=small_run[1], cleanup=[])
    try:
        action = case.prepare(ctx)
        before = _snapshot(work)
        capsys.readouterr()
        if case.error == "cli":
            assert action() == 2
            err = capsys.readouterr().err
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("irat: error: "), err
            message = lines[0]
        else:
            with pytest.raises(case.error) as e:
                action()
            message = str(e.value)
            assert "\n" not in message.strip(), message
        for fragment in case.says:
            assert fragment in message, message
        after = _snapshot(work)
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        assert {k for k in changed if not k.startswith(case.allowed or ("\0",))} == set(), changed
    finally:
        for close in ctx.cleanup:
            close()
