"""Training: the step, its assembly from a recipe (``assemble.py``), the epoch loop
(``irat.train``), schedules, checkpoints, run directories and the per-instance record."""

from irat.config import resolve_config
from irat.training.assemble import build_step
from irat.training.loop import NonFiniteLossError, Run, config_from_run, train
from irat.training.step import StepOutput, StepParts, train_step

__all__ = [
    "NonFiniteLossError",
    "Run",
    "StepOutput",
    "StepParts",
    "build_step",
    "config_from_run",
    "resolve_config",
    "train",
    "train_step",
]
