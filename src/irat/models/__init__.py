"""Model zoo: ``create(name, dataset=spec)`` and ``names()``. Every model owns its input
normalisation (``Normalize`` as the first layer) and takes [0, 1] pixels.

Architectures: ``fc1``, ``tiny-cnn``, ``small-cnn`` (BiLAW appendix A.2.1), ``resnet18``,
``preact-resnet18`` (CIFAR-style stems) and ``wrn-D-W`` (WideResNet, e.g. ``wrn-34-10``).
A model declares non-differentiable input preprocessing as a ``Preprocessing`` module, which
``bpda(model)`` lets attacks see through (``irat.models.preprocess``).
"""

from irat.models.normalize import Normalize, Normalized
from irat.models.preprocess import Preprocessing, Quantize, bpda
from irat.models.registry import create, names

__all__ = ["Normalize", "Normalized", "Preprocessing", "Quantize", "bpda", "create", "names"]
