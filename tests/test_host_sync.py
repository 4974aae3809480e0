"""No host synchronisation in the training step (the performance issue; a CUDA-graph-friendly
step). On a GPU, reading a value back (``.item()``, ``bool(t)``, ``F.one_hot``'s range check,
``nonzero``) stalls the host until the device has caught up. This machine has no GPU, so the
test watches for the operators that would do it, through a dispatch mode that sees every
operator the step runs."""

import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import irat
from irat import methods
from irat.config import resolve_config
from irat.data import Split
from irat.data.augmentation import augment_with_draws
from irat.training.assemble import build_learned, build_step, instance_state
from irat.training.step import train_step
from irat.types import Batch

READ_BACK = {"_local_scalar_dense", "nonzero", "masked_select", "equal", "is_nonzero", "unique", "_unique2"}
FMNIST = irat.data.registry.get("fashion-mnist").spec


class ReadBacks(TorchDispatchMode):
    """Counts operators whose result the host must wait for."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in READ_BACK:
            self.seen.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_the_detector_sees_a_read_back():
    with ReadBacks() as mode:
        torch.ones(3).sum().item()
        torch.nn.functional.one_hot(torch.tensor([0, 2]), 3)
    assert mode.seen.count("_local_scalar_dense") >= 2


@pytest.mark.parametrize("method", methods.names())
def test_training_step_reads_nothing_back(method):
    steps = 1 if methods.get(method).cached else 3
    cfg = resolve_config(None, method=method, eps=0.1, steps=steps, epochs=10, **{"weighting.burn_in": 0})
    meta = Split(torch.rand(20, 1, 28, 28), torch.randint(0, 10, (20,)), torch.arange(20))
    learned = build_learned(cfg, 10, meta)  # BiLAW's weight network and D_meta (None for the others)
    # crop and flip on, so that ATTA's cache reads and writes through the batch's draws
    spec = dataclasses.replace(FMNIST, crop_padding=2, flip=True)
    split = Split(torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,)), torch.arange(16) * 2)
    state = instance_state(cfg, split, spec, augment=True)  # fast AT: cache and adaptive targets
    parts = build_step(cfg, torch.Generator().manual_seed(0), epoch=5, learned=learned, state=state)
    torch.manual_seed(0)
    model = irat.models.create("tiny-cnn", dataset=FMNIST)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, crop, flip = augment_with_draws(split.x, 2, True)
    batch = Batch(split.idx, x, split.y, crop, flip)
    with ReadBacks() as mode:
        train_step(model, batch, parts, optimizer, epoch=5)
    assert mode.seen == []


def test_training_loop_reads_back_once_per_epoch_not_per_step(tiny_npz, tmp_path):
    data = irat.data.load("npz", root=tiny_npz, val_size=40)

    def read_backs(batch_size):
        torch.manual_seed(0)
        model = irat.models.create("fc1", dataset=data.spec)
        with ReadBacks() as mode:
            irat.train(
                model,
                data,
                method="mail-trades",
                epochs=1,
                eps=0.1,
                steps=2,
                batch_size=batch_size,
                out=tmp_path / f"b{batch_size}",
                progress=False,
                burn_in=0,
            )
        return len(mode.seen)

    # 360 training images: 23 steps against 3; the epoch's read-backs (metrics, validation) stay
    assert read_backs(16) == read_backs(120)


@pytest.mark.parametrize("name", ["lm-pgd-4", "spsa-2"])
def test_own_evaluation_attacks_read_nothing_back(name):
    """LM-PGD's line search and path record (and SPSA's estimate) stay on the device."""
    torch.manual_seed(0)
    model = irat.models.create("tiny-cnn", dataset=FMNIST).eval()
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    attack = irat.attacks.build(name, eps=0.1)
    with ReadBacks() as mode:
        attack(model, x, y)
    assert mode.seen == [], f"{name} reads back: {sorted(set(mode.seen))}"
