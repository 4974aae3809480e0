"""``create(name, dataset=spec)``: an architecture by name, sized from the dataset spec
(``channels``, ``image_size``, ``num_classes``) and wrapped with the spec's input normalisation
(``mean``, ``std``) as its first layer, so that the model takes [0, 1] pixels."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from irat.models._shapes import hw
from irat.models.fc1 import fc1
from irat.models.normalize import Normalize, Normalized
from irat.models.preact_resnet import preact_resnet18
from irat.models.preprocess import parse_preprocess
from irat.models.resnet import resnet18
from irat.models.small_cnn import small_cnn
from irat.models.tiny_cnn import tiny_cnn
from irat.models.wide_resnet import parse_wrn, wide_resnet

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "fc1": fc1,
    "tiny-cnn": tiny_cnn,
    "small-cnn": small_cnn,
    "resnet18": resnet18,
    "preact-resnet18": preact_resnet18,
}
WRN_EXAMPLES = ("wrn-34-10", "wrn-28-10", "wrn-32-10")


def names() -> list[str]:
    """The model names ``create`` understands; any ``wrn-D-W`` with D = 6n + 4 (or Madry's
    D = 6n + 2, as in wrn-32-10) works too."""
    return [*ARCHITECTURES, *WRN_EXAMPLES]


def create(name: str, *, dataset, preprocess: str | None = None, **kw) -> nn.Module:
    """Build model ``name`` for ``dataset`` (a ``DatasetSpec``: ``channels``, ``image_size``,
    ``num_classes``, per-channel ``mean`` and ``std``). ``kw`` goes to the architecture (e.g.
    ``dropout`` for WRN, ``hidden`` for fc1). ``preprocess``: None, ``"none"`` or ``"quantize-L"``
    (a non-differentiable input quantisation before everything, ``irat.models.preprocess``; for
    studying gradient masking and BPDA). Returns a ``Normalized`` module (``.normalize``,
    ``.net``) with ``irat_name`` set to ``name`` and ``irat_preprocess`` to ``preprocess``; inputs
    are [B, C, H, W] in [0, 1], outputs logits [B, num_classes]."""
    key = name.strip().lower()
    channels, size, n_cls = int(dataset.channels), hw(dataset.image_size), int(dataset.num_classes)
    if len(tuple(dataset.mean)) != channels or len(tuple(dataset.std)) != channels:
        raise ValueError(
            f"dataset mean {tuple(dataset.mean)} / std {tuple(dataset.std)} need one value per channel "
            f"({channels} channels)"
        )
    wrn = parse_wrn(key)
    if wrn is not None:
        net = wide_resnet(channels, size, n_cls, blocks=wrn[0], widen=wrn[1], **kw)
    elif key in ARCHITECTURES:
        net = ARCHITECTURES[key](channels, size, n_cls, **kw)
    else:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(names())} (or any wrn-D-W)")
    model = Normalized(Normalize(dataset.mean, dataset.std), net, preprocess=parse_preprocess(preprocess))
    model.irat_name = key
    model.irat_preprocess = preprocess if preprocess != "none" else None
    return model
