"""Model zoo: shapes sized from the dataset spec, normalisation inside the model, names."""

import types

import pytest
import torch

from irat import models
from irat.models import Normalize

FMNIST = types.SimpleNamespace(channels=1, image_size=28, num_classes=10, mean=(0.286,), std=(0.353,))
CIFAR = types.SimpleNamespace(
    channels=3, image_size=32, num_classes=7, mean=(0.491, 0.482, 0.447), std=(0.247, 0.243, 0.262)
)
SHAPE_CHECKED = ["fc1", "tiny-cnn", "small-cnn", "resnet18", "preact-resnet18", "wrn-10-1", "wrn-16-2"]


def _params(model):
    return sum(p.numel() for p in model.parameters())


def test_names():
    assert models.names() == [
        "fc1",
        "tiny-cnn",
        "small-cnn",
        "resnet18",
        "preact-resnet18",
        "wrn-34-10",
        "wrn-28-10",
        "wrn-32-10",
    ]


@pytest.mark.parametrize("spec", [FMNIST, CIFAR], ids=["fmnist", "cifar"])
@pytest.mark.parametrize("name", SHAPE_CHECKED)
def test_logits_shape_sized_from_spec(name, spec):
    torch.manual_seed(0)
    model = models.create(name, dataset=spec).eval()
    assert model.irat_name == name
    assert isinstance(model[0], Normalize)
    x = torch.rand(2, spec.channels, spec.image_size, spec.image_size)
    out = model(x)
    assert out.shape == (2, spec.num_classes)
    assert torch.isfinite(out).all()
    # the input gradient (what every attack needs) exists and is non-zero
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).sum(), x)
    assert g.abs().sum() > 0


@pytest.mark.parametrize("name", ["fc1", "tiny-cnn", "small-cnn", "preact-resnet18"])
def test_normalisation_is_inside_the_model(name):
    torch.manual_seed(0)
    model = models.create(name, dataset=CIFAR).eval()
    x = torch.rand(3, 3, 32, 32)
    mean = torch.tensor(CIFAR.mean).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR.std).view(1, 3, 1, 1)
    assert torch.allclose(model(x), model.net((x - mean) / std), atol=1e-5)
    assert not torch.allclose(model(x), model.net(x), atol=1e-3)
    state = model.state_dict()
    assert torch.equal(state["normalize.mean"].flatten(), mean.flatten())
    assert torch.equal(state["normalize.std"].flatten(), std.flatten())


def test_tiny_cnn_and_fc1_follow_the_bilaw_appendix():
    tiny = models.create("tiny-cnn", dataset=FMNIST).net
    convs = [m for m in tiny if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (16, (4, 4), (2, 2)),
        (32, (4, 4), (2, 2)),
    ]
    linears = [m for m in tiny if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32 * 7 * 7, 100), (100, 10)]
    fc1 = models.create("fc1", dataset=FMNIST).net
    linears = [m for m in fc1 if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 1024), (1024, 10)]
    small = models.create("small-cnn", dataset=CIFAR).net
    widths = [m.out_channels for m in small.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [64, 64, 128, 128, 196, 196]
    linears = [m for m in small.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(196 * 4 * 4, 256), (256, 7)]


def test_parameter_counts_of_the_standard_cifar_networks():
    spec = types.SimpleNamespace(**{**vars(CIFAR), "num_classes": 10})
    assert _params(models.create("resnet18", dataset=spec)) == 11_173_962
    assert _params(models.create("wrn-28-10", dataset=spec)) == 36_479_194
    # WRN-34-10 (Zagoruyko's depth count) and WRN-32-10 (Madry's count) are the same network
    assert _params(models.create("wrn-34-10", dataset=spec)) == 46_160_474
    assert _params(models.create("wrn-32-10", dataset=spec)) == 46_160_474


@pytest.mark.parametrize("name", ["wrn-33-10", "wrn-12-2", "wrn-6-1", "wrn-34-0"])
def test_bad_wrn_names_error(name):
    with pytest.raises(ValueError, match="wrn|widen"):
        models.create(name, dataset=CIFAR)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="tiny-cnn") as err:
        models.create("vgg16", dataset=CIFAR)
    assert "unknown model 'vgg16'" in str(err.value)


def test_spec_mismatch_errors():
    bad = types.SimpleNamespace(**{**vars(CIFAR), "mean": (0.5,)})
    with pytest.raises(ValueError, match="per channel"):
        models.create("fc1", dataset=bad)
