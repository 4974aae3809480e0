"""SPSA, the gradient-free attack of Uesato et al. 2018 ("Adversarial Risk and the Dangers of
Evaluating Against Weak Attacks"), with VIR's settings (seed 003, §5.1 black-box attacks;
METHODS.md §3.8): it reads only the model's logits, so it is also the black-box check for
gradient masking (a model that resists PGD but not SPSA hides its gradients).

    x⁰ = Π(x + δ⁰)                                       uniform start in the ball (``start``)
    ℓ(x') = max_{j≠y} z_j(x') − z_y(x')                  the margin loss, maximised (> 0: fooled)
    for k = 1..K:
        ĝ = 1/N Σ_{n=1..N} (ℓ(xᵏ⁻¹ + c vₙ) − ℓ(xᵏ⁻¹ − c vₙ)) / (2c) · vₙ,   vₙ ~ Rademacher {±1}^d
        Adam ascent on the perturbation:  m = β₁ m + (1 − β₁) ĝ,  s = β₂ s + (1 − β₂) ĝ²,
        xᵏ = Π(xᵏ⁻¹ + lr · m̂ / (√ŝ + 1e-8)),  m̂ = m / (1 − β₁ᵏ), ŝ = s / (1 − β₂ᵏ)

Defaults (VIR): K = 100 iterations, c = 0.001 (the finite-difference perturbation), lr = 0.01,
N = 256 Rademacher samples per estimate, Adam β = (0.9, 0.999). ĝ is the two-sided
simultaneous-perturbation estimate: for a linear ℓ it is exact per sample, ``(w·v) v``, and
E[v vᵀ] = I makes it unbiased (cleverhans' SPSA computes the same direction scaled by c, which
Adam does not see). The queries x ± c v are not clipped to [0, 1] (as in cleverhans; the box
holds for every iterate, not for the c-sized probes around it).

Batched: the N probes of all B images run as forwards of at most ``query_batch`` images (default
by device, ``QUERY_BATCH``; N is
split into chunks of ``query_batch // (2B)`` samples), so SPSA costs K·(2N + 1)·B forwards and no
gradient, with no Python loop over images. ``keep="fooled"`` (evaluation) returns the first
misclassified iterate whenever one was met (checked with one forward of B per iteration),
``"last"`` the final one. Deterministic under ``generator`` (start and Rademacher draws).

Shapes: ``x`` [B, C, H, W] in [0, 1], ``y`` [B] → ``x_adv`` [B, C, H, W], ``logits_adv`` [B, n].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from irat import losses
from irat.attacks.mode import eval_mode
from irat.attacks.threat import STARTS, threat
from irat.types import AttackResult

STEPS = 100
DELTA = 0.001
LR = 0.01
SAMPLES = 256
BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
QUERY_BATCH = {"cpu": 2048}
"""Images per forward of the probes by device type (default 8192 elsewhere): on the 2-core CPU
2048 was ~1.5× faster than 16384 for tiny-cnn on Fashion-MNIST (cache), and 8192 keeps a
ResNet-18 on CIFAR-10 within a GPU's memory without autograd buffers."""


def query_batch_for(device: torch.device) -> int:
    """The default ``query_batch`` on ``device``."""
    return QUERY_BATCH.get(device.type, 8192)


KEEPS = ("last", "fooled")


def margin_loss(z: Tensor, y: Tensor) -> Tensor:
    """``max_{j≠y} z_j − z_y`` per sample [B]; SPSA maximises it (> 0: misclassified)."""
    return -losses.margin(z, y)


def rademacher(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Independent ±1 entries of ``shape``, dtype and device of ``like``, from ``generator``."""
    device = generator.device if generator is not None else like.device
    bits = torch.randint(0, 2, shape, generator=generator, device=device)
    return (2 * bits - 1).to(device=like.device, dtype=like.dtype)


def spsa_gradient(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    delta: float = DELTA,
    samples: int = SAMPLES,
    query_batch: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The SPSA estimate ĝ [B, C, H, W] of ∇_x margin_loss at ``x`` (module docstring), from
    ``samples`` Rademacher directions per image, queried in forwards of ≤ ``query_batch`` images
    (at least 2 per image; None: ``query_batch_for`` the device). Logits only, under
    ``no_grad``; the caller sets the model's mode."""
    b, tail = x.shape[0], [1] * (x.dim() - 1)
    query_batch = query_batch_for(x.device) if query_batch is None else query_batch
    chunk = max(1, min(samples, int(query_batch) // (2 * b)))
    total = torch.zeros_like(x)
    done = 0
    with torch.no_grad():
        while done < samples:
            c = min(chunk, samples - done)
            v = rademacher((c, *x.shape), x, generator)  # [c, B, C, H, W]
            probes = torch.cat([x + delta * v, x - delta * v]).reshape(2 * c * b, *x.shape[1:])
            ell = margin_loss(model(probes), y.repeat(2 * c)).view(2, c, b)
            total += ((ell[0] - ell[1]) / (2 * delta)).view(c, b, *tail).mul(v).sum(0)
            done += c
    return total / samples


def _check(eps, steps, delta, lr, samples, query_batch, start, keep) -> None:
    if not float(eps) >= 0:
        raise ValueError(f"eps={eps} must be >= 0")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps={steps} must be a non-negative integer")
    if not float(delta) > 0:
        raise ValueError(f"delta={delta} must be > 0 (SPSA's finite-difference perturbation)")
    if not float(lr) >= 0:
        raise ValueError(f"lr={lr} must be >= 0 (SPSA's Adam learning rate)")
    if int(samples) != samples or samples < 1:
        raise ValueError(f"samples={samples} must be a positive integer (Rademacher draws per estimate)")
    if query_batch is not None and (int(query_batch) != query_batch or query_batch < 2):
        raise ValueError(f"query_batch={query_batch} must be an integer >= 2")
    if start not in STARTS:
        raise ValueError(f"unknown random start {start!r}; valid: {', '.join(STARTS)}")
    if keep not in KEEPS:
        raise ValueError(f"keep={keep!r}; valid: {', '.join(KEEPS)}")


def spsa(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int = STEPS,
    norm: str = "linf",
    delta: float = DELTA,
    lr: float = LR,
    samples: int = SAMPLES,
    start: str = "uniform",
    keep: str = "last",
    query_batch: int | None = None,
    generator: torch.Generator | None = None,
) -> AttackResult:
    """SPSA with ``steps`` Adam iterations in the ``norm`` ball of radius ``eps`` (module
    docstring); the model runs in eval mode and only its logits are read."""
    _check(eps, steps, delta, lr, samples, query_batch, start, keep)
    ball = threat(norm, eps)
    x = x.detach()
    tail = [1] * (x.dim() - 1)
    b1, b2 = BETAS
    with eval_mode(model), torch.no_grad():
        x_adv = ball.random_start(x, start, generator)
        m, s = torch.zeros_like(x), torch.zeros_like(x)
        z = model(x_adv)
        found = z.argmax(1) != y
        x_first, z_first = x_adv, z
        for k in range(1, int(steps) + 1):
            g = spsa_gradient(
                model, x_adv, y, delta=delta, samples=samples, query_batch=query_batch, generator=generator
            )
            m = b1 * m + (1 - b1) * g
            s = b2 * s + (1 - b2) * g * g
            step = (m / (1 - b1**k)) / ((s / (1 - b2**k)).sqrt() + ADAM_EPS)
            x_adv = ball.project(x_adv + lr * step, x)
            z = model(x_adv)
            new = (z.argmax(1) != y) & ~found
            x_first = torch.where(new.view(-1, *tail), x_adv, x_first)
            z_first = torch.where(new[:, None], z, z_first)
            found = found | new
    if keep == "fooled":
        x_adv = torch.where(found.view(-1, *tail), x_first, x_adv)
        z = torch.where(found[:, None], z_first, z)
    return AttackResult(x_adv=x_adv, logits_adv=z)
