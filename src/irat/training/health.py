"""Signs that a run has collapsed, checked after every epoch (issue 18): one warning with the
likely cause and what to try; the run goes on. (A non-finite loss stops the run instead,
``NonFiniteLossError``, keeping the last good checkpoint.)

* **chance level**: validation clean accuracy not above guessing, i.e. at most
  ``1/n + 3·sqrt((1/n)(1 − 1/n)/N)`` for n classes and N validation images (three standard
  deviations of a guesser's accuracy; 12.8 % for 10 classes and 1000 images), after any epoch
  but the first: a model may still guess after one short epoch (AT, tiny-cnn, 40 steps on 5000
  Fashion-MNIST images: 10.0 %, then 65.1 % after the second; ``benchmarks/stability.py``);
* **accuracy collapse**: validation clean accuracy below half of its best so far (TRADES at lr 0.1
  on Fashion-MNIST, seed 1: 78.9 % after epoch 0, 19.6 % after epoch 2, a loss only 3.6 times its
  lowest);
* **loss blow-up**: a training loss at least 10 times the lowest of the earlier epochs.
"""

from __future__ import annotations

import math

LOSS_GROWTH = 10.0
CONCENTRATED = 10.0  # a largest instance weight (batch mean 1) that names the weights as the cause


def chance_level(num_classes: int, n_val: int) -> float:
    """The highest validation accuracy still indistinguishable from guessing (see the module)."""
    p = 1.0 / num_classes
    return p + 3.0 * math.sqrt(p * (1.0 - p) / max(n_val, 1))


def collapse(row: dict, history: list[dict], num_classes: int, n_val: int) -> str | None:
    """What looks collapsed in this epoch's metrics ``row`` given the earlier rows, or None."""
    acc = row.get("val_clean_acc")
    if history and acc is not None and n_val > 0 and acc <= chance_level(num_classes, n_val):
        return (
            f"validation clean accuracy {100 * acc:.1f} % is at chance level ({num_classes} classes, "
            f"{n_val} images)"
        )
    best = max((r["val_clean_acc"] for r in history if "val_clean_acc" in r), default=None)
    if acc is not None and best is not None and acc < 0.5 * best:
        now, top = f"{100 * acc:.1f} %", f"{100 * best:.1f} %"
        return f"validation clean accuracy fell to {now}, less than half its best ({top})"
    earlier = [r["train_loss"] for r in history if math.isfinite(r.get("train_loss", math.nan))]
    if earlier and min(earlier) > 0 and row["train_loss"] >= LOSS_GROWTH * min(earlier):
        loss = row["train_loss"]
        return f"the training loss {loss:.3g} is {loss / min(earlier):.0f} times its lowest so far"
    return None


def advice(
    what: str,
    epoch: int,
    method: str,
    lr: float,
    warmup: int,
    *,
    kl: bool = False,
    largest_weight: float | None = None,
) -> str:
    """One warning line: what happened, the likely cause, what to try. ``kl``: the objective has a
    TRADES-type KL term; ``largest_weight``: the largest instance weight of the epoch (weights have
    batch mean 1), which names concentrated weights as the cause from ``CONCENTRATED`` up
    (bilaw-np at lr 0.1 on Fashion-MNIST: 18.6 after its first reweighted epoch, half the weights 0)."""
    tries = [f"--train.lr={lr / 10:g}"] + ([] if warmup else ["--train.warmup=2"])
    if largest_weight is not None and largest_weight >= CONCENTRATED:
        cause = (
            f"the instance weights concentrate (the largest this epoch was {largest_weight:.1f} times the "
            f"batch mean), so a few images take steps that many times the learning rate ({lr:g})"
        )
    elif kl:
        cause = (
            f"a learning rate ({lr:g}) too high for this model and objective (a TRADES-type KL term "
            "scales the logit gradients by its trade-off)"
        )
    else:
        cause = f"a learning rate ({lr:g}) too high for this model and objective"
    return (
        f"WARNING: after epoch {epoch} {what}: the {method} run has probably collapsed. Likely cause: "
        f"{cause}. The run goes on; try {' or '.join(tries)}."
    )
