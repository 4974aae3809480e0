"""TensorBoard scalars of a run (``train.tensorboard=true``): every number of each epoch's
metrics row (loss, accuracies, lr, time) under its key, at step = epoch, in ``RUN_DIR/tensorboard``.

The ``tensorboard`` package is an optional extra (``pip install 'irat[tensorboard]'``), imported
only when the option is on; ``irat.config.validate`` refuses the option, before any run directory
is written, where the package is missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

INSTALL = "pip install 'irat[tensorboard]' (or pip install tensorboard)"


def available() -> bool:
    """Whether the ``tensorboard`` package can be imported."""
    return importlib.util.find_spec("tensorboard") is not None


class ScalarLog:
    """Writes metrics rows to ``run_dir/tensorboard`` when ``enabled`` (else does nothing).
    ``start_epoch``: a resumed run's first epoch; TensorBoard hides the events a killed run wrote
    from that step on (``purge_step``), so a resumed curve has no doubled epochs."""

    def __init__(self, run_dir: str | Path, enabled: bool, start_epoch: int = 0):
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                log_dir=str(Path(run_dir) / "tensorboard"), purge_step=start_epoch or None
            )

    def log(self, row: dict) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float):
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
