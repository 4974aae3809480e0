"""Training: the step, the epoch loop (``irat.train``), schedules, checkpoints, run directories
and the per-instance record."""

from irat.training.loop import NonFiniteLossError, Run, build_step, config_from_run, resolve_config, train
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
