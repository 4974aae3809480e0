"""Adapter over the official AutoAttack code (the ``pyautoattack`` package; METHODS.md §3.8).

* ``autoattack`` standard: APGD-CE (100 iterations, 1 restart) → APGD-T (targeted DLR,
  9 targets × 100 iterations) → FAB-T (9 targets) → Square (5000 queries, p_init 0.8), each run
  only on the points still robust; the robust accuracy is the fraction surviving all four.
* a single component (``apgd-ce``, ``apgd-t``, ``fab-t``, ``square``) runs with exactly the
  settings it has inside the standard cascade; ``apgd-dlr`` (untargeted APGD on the DLR loss,
  100 iterations, 1 restart: the package's standard APGD with its loss switched, as in its
  ``plus`` and ``rand`` versions) is offered too, outside the standard cascade;
  ``square_queries`` shortens Square (for the sanity probe of ``irat.evaluation.masking``);
* ``version="rand"`` (``autoattack-rand``): the package's cascade for randomised defences,
  APGD-CE then APGD-DLR, each averaging the gradient over 20 draws of the model (EOT).

The number of target classes is capped at ``n_cls − 1`` (the package indexes the ``k``-th
largest logit). The model runs in ``eval()`` mode and its parameters are frozen during the call
(FAB calls ``.backward()``, which would otherwise fill ``θ.grad``); both are restored after. The
package's logging, warnings and the global RNG seeding it does are contained: nothing is printed
unless ``verbose``, and the caller's RNG state is unchanged apart from one draw for the seed when
``seed`` is None (so ``torch.manual_seed`` makes the result reproducible).
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from irat.attacks.mode import eval_mode, frozen_parameters
from irat.types import AttackResult

STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
COMPONENTS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square")
_NORMS = {"linf": "Linf", "l2": "L2"}
_MAX_TARGETS = 9


@contextmanager
def _contained(verbose: bool) -> Iterator[None]:
    """Silence the package unless ``verbose`` and undo its global side effects (its dynamic-defence
    check replaces ``sys.settrace``)."""
    logger = logging.getLogger("auto-attack")
    disabled, trace = logger.disabled, sys.gettrace()
    logger.disabled = not verbose
    try:
        with warnings.catch_warnings():
            if not verbose:
                warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = disabled
        sys.settrace(trace)


def autoattack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "linf",
    attacks: Sequence[str] | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    verbose: bool = False,
    version: str = "standard",
    square_queries: int | None = None,
) -> AttackResult:
    """Run AutoAttack (``attacks=None``: the standard cascade) or the listed components on
    ``x`` [B, C, H, W] in [0, 1] (float32; the package casts to float32). Returns ``x_adv`` (x
    itself for points not broken) and ``logits_adv`` from one no-grad eval-mode forward.
    ``seed``: the package's seed (drawn from torch's global RNG when None). ``batch_size``:
    the package's internal batch (default: the whole input)."""
    key = str(norm).lower()
    if key not in _NORMS:
        raise ValueError(f"unknown norm {norm!r} for AutoAttack; valid: {', '.join(_NORMS)}")
    if not float(eps) >= 0:
        raise ValueError(f"eps={eps} must be >= 0")
    if version not in ("standard", "rand") or (version == "rand" and attacks is not None):
        raise ValueError(f"AutoAttack version={version!r}: standard (optionally with attacks=) or rand")
    if attacks is not None:
        bad = [a for a in attacks if a not in COMPONENTS]
        if bad or not attacks:
            raise ValueError(f"unknown AutoAttack components {bad}; valid: {', '.join(COMPONENTS)}")
    x, y = x.detach(), y.detach()
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    with eval_mode(model):
        with torch.no_grad():
            n_cls = model(x[:1]).shape[1]
        if n_cls < 2:
            raise ValueError("AutoAttack needs a model with at least 2 classes")
        if eps == 0 or len(y) == 0:
            with torch.no_grad():
                return AttackResult(x_adv=x.clone(), logits_adv=model(x))
        to_run = list(STANDARD) if attacks is None else list(attacks)
        if n_cls < 3 and "apgd-dlr" in to_run:
            raise ValueError(f"apgd-dlr (DLR loss) needs at least 3 classes, the model has {n_cls}")
        if version == "rand":
            to_run = ["apgd-ce", "apgd-dlr"] if n_cls >= 3 else ["apgd-ce"]
        if n_cls < 4 and "apgd-t" in to_run:
            if attacks is not None:
                raise ValueError(f"apgd-t (targeted DLR) needs at least 4 classes, the model has {n_cls}")
            to_run.remove("apgd-t")
        from pyautoattack import AutoAttack

        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with frozen_parameters(model), torch.random.fork_rng(devices=devices), _contained(verbose):
            adversary = AutoAttack(
                model, norm=_NORMS[key], eps=float(eps), seed=seed, version=version, device=x.device
            )
            adversary.verbose = verbose
            adversary.attacks_to_run = to_run
            adversary.apgd_targeted.n_target_classes = min(_MAX_TARGETS, n_cls - 1)
            adversary.fab.n_target_classes = min(_MAX_TARGETS, n_cls - 1)
            if square_queries is not None:
                adversary.square.n_queries = int(square_queries)
            x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size or max(1, len(y)))
        x_adv = x_adv.detach().to(x.dtype)
        with torch.no_grad():
            logits = model(x_adv)
    return AttackResult(x_adv=x_adv, logits_adv=logits)
