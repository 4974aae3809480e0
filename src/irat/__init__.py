"""irat: instance-reweighted adversarial training on PyTorch.

import irat
data  = irat.data.load("fashion-mnist", val_size=1000)
model = irat.models.create("tiny-cnn", dataset=data.spec)
run   = irat.train(model, data, method="at", epochs=30, eps=0.1, out="runs/at")
res   = irat.evaluate(model, data.test, attacks=["clean", "pgd-20", "cw-20", "autoattack"], eps=0.1)
"""

__version__ = "0.1.0"

from irat import attacks, data, losses, methods, models, objectives, weighting  # noqa: E402
from irat.compare import Comparison, compare  # noqa: E402
from irat.config import Config, ConfigError  # noqa: E402
from irat.evaluation import EvalResult, evaluate  # noqa: E402
from irat.training import Run, train  # noqa: E402

__all__ = [
    "Comparison",
    "Config",
    "ConfigError",
    "EvalResult",
    "Run",
    "attacks",
    "compare",
    "data",
    "evaluate",
    "losses",
    "methods",
    "models",
    "objectives",
    "train",
    "weighting",
]
