"""BiLAW's meta-gradient (METHODS.md §4.11, steps 1 and 2): how the robust validation loss after
one pseudo SGD step of the classifier changes with the instance weights.

    θ̃(w) = θ − lr_θ · ∇_θ L_tr(θ, w),        L_tr(θ, w) linear in w (Σ_i w_i ℓ_i(θ) + terms without w)
    F(w)  = L_val(θ̃(w)) = mean_k ce(f_θ̃(x̂'_k), ŷ_k)                    (unweighted, robust)
    ∂F/∂w_j = −lr_θ · ∇_θ L_val(θ̃)ᵀ ∇_θ ℓ_j(θ)                            (closed form)

The closed form is exact for any w, because θ̃ is linear in w (∂θ̃/∂w_j = −lr_θ·∇ℓ_j(θ) does not
depend on w). So the gradient is computed without a second-order graph:

1. θ̃ from an ordinary gradient of ``L_tr`` (the caller's graph is kept: the real update
   backpropagates through it afterwards);
2. v = ∇L_val(θ̃) from an ordinary backward through the validation forward at θ̃;
3. vᵀ∇_θ L_tr(θ, w) = d/dτ L_tr(θ + τv, w) at τ = 0 from one forward-mode pass (dual numbers,
   ``torch.autograd.forward_ad``), and ∂F/∂w = −lr_θ·∂/∂w of that directional derivative (reverse
   mode through the last, linear-in-w operations only).

This gives what differentiating through the pseudo step with ``create_graph=True`` gives (the
finite-difference and closed-form checks in tests/test_bilaw.py hold for it), at less memory and
time: no graph of the gradient, and the validation graph is gone before the forward-mode pass
(benchmarks/README.md, "BiLAW's cost"). Every forward runs the same module through
``torch.func.functional_call``, so the model stays an ordinary ``nn.Module``; the forward-mode
pass recomputes the training forward (a model with dropout would draw new masks there).

What is left untouched: the model's parameters (θ̃ is a new set of tensors), their ``.grad``
(``torch.autograd.grad`` never accumulates) and the BatchNorm buffers (every functional forward
gets copies of them; train-mode BatchNorm updates the copies).

The chain rule splits BiLAW's gradient in two: ``meta_weight_gradient`` gives ∂F/∂w [B] for any
weights (the non-parametric variant reads it at w = 1/B), and ``bilaw_meta_gradient`` chains it
through the weight network's normalised output w(μ) into ∂F/∂μ. Both work in any floating dtype
(the checks use float64).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn
from torch.func import functional_call

from irat import losses
from irat.distributed import mean_over_processes
from irat.weighting.normalize import normalize_to_batch


def _buffer_copies(model: nn.Module) -> dict[str, Tensor]:
    return {name: b.clone() for name, b in model.named_buffers()}


def functional_forward(model: nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """``f(x)`` with the parameters ``params`` (name → tensor; missing names: the module's own)
    and copies of the module's buffers, in the module's current train/eval mode."""
    return functional_call(model, {**params, **_buffer_copies(model)}, (x,))


def pseudo_update(
    model: nn.Module, train_loss: Tensor, lr_theta: float, share: float = 1.0
) -> dict[str, Tensor]:
    """θ̃ = θ − lr_θ·∇_θ ``train_loss`` over the parameters that require gradients: name → a new
    leaf tensor that requires grad (for ∇L_val(θ̃)). The graph of ``train_loss`` is kept. Under
    torchrun the gradient is averaged over the processes (``share``: ``irat.distributed.share`` of
    this process's rows), so θ̃ is the pseudo update on the global batch, the same everywhere."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(train_loss, [p for _, p in named], retain_graph=True, allow_unused=True)
    grads = mean_over_processes(grads, share)
    return {
        n: (p if g is None else p - lr_theta * g).detach().requires_grad_(True)
        for (n, p), g in zip(named, grads)
    }


def validation_loss(model: nn.Module, theta: dict[str, Tensor], x_val_adv: Tensor, y_val: Tensor) -> Tensor:
    """``L_val(θ̃) = mean_k ce(f_θ̃(x̂'_k), ŷ_k)`` (scalar), the forward in the module's mode."""
    return losses.ce(functional_forward(model, theta, x_val_adv), y_val).mean()


class AtParameters(nn.Module):
    """``model`` evaluated at the parameters ``theta`` (detached) and copies of its buffers: what
    the validation attack runs against (θ̃; no graph to μ). The wrapped module is a submodule,
    so an attack's ``eval_mode`` switches it and restores it."""

    def __init__(self, model: nn.Module, theta: dict[str, Tensor]):
        super().__init__()
        self.model = model
        self._tensors = {**{n: t.detach() for n, t in theta.items()}, **_buffer_copies(model)}

    def forward(self, x: Tensor) -> Tensor:
        return functional_call(self.model, self._tensors, (x,))


def weight_gradient(
    model: nn.Module,
    w: Tensor,
    train_loss: Tensor,
    train_loss_at: Callable[[dict[str, Tensor]], Tensor],
    lr_theta: float,
    validation: Callable[[dict[str, Tensor]], Tensor],
    share: float = 1.0,
    val_share: float | None = None,
) -> Tensor:
    """``∂ validation(θ̃) / ∂w`` [B] for θ̃ = ``pseudo_update(model, train_loss, lr_theta)``.

    ``w`` [B]: the leaf the training loss is computed from (linear in it); ``train_loss``: that
    loss at the model's parameters, with its graph; ``train_loss_at(params)``: the same loss
    recomputed with the parameters ``params`` (name → tensor); ``validation(θ̃)``: the scalar
    validation loss at θ̃ (it may attack its batch at θ̃ first). Under torchrun each process
    gets K times its rows' share of the global gradient (its loss is a mean over b = B/K rows);
    the caller averages what it derives from it over the processes. ``val_share``: when each
    process's ``validation`` is the mean over its shard of the validation batch, that shard's
    ``irat.distributed.share``; ∇L_val(θ̃) is then averaged over the processes (one all-reduce),
    which gives the whole batch's gradient on every process."""
    theta = pseudo_update(model, train_loss, lr_theta, share)
    names = list(theta)
    v = torch.autograd.grad(validation(theta), [theta[n] for n in names], allow_unused=True)
    if val_share is not None:
        v = mean_over_processes(v, val_share)
    params = dict(model.named_parameters())
    with fwAD.dual_level():
        duals = {
            n: fwAD.make_dual(params[n].detach(), torch.zeros_like(params[n]) if t is None else t)
            for n, t in zip(names, v)
        }
        along_v = fwAD.unpack_dual(train_loss_at(duals)).tangent  # vᵀ∇_θ L_tr(θ, w), a graph to w
    if along_v is None:  # L_tr does not depend on the parameters
        return torch.zeros_like(w)
    (g,) = torch.autograd.grad(along_v, w)
    return -lr_theta * g


def meta_weight_gradient(
    model: nn.Module,
    w: Tensor,
    x_adv: Tensor,
    y: Tensor,
    x_val_adv: Tensor,
    y_val: Tensor,
    lr_theta: float,
) -> Tensor:
    """∂F/∂w [B] at the (unnormalised) weights ``w`` [B], with
    ``L_tr = Σ_i w_i·ce(f_θ(x_adv_i), y_i)`` and the validation batch ``x_val_adv`` [M, C, H, W],
    ``y_val`` [M] held fixed; equals ``−lr_θ·∇L_val(θ̃)ᵀ∇ℓ_j(θ)``."""
    w = w.detach().requires_grad_(True)

    def train_loss_at(params: dict[str, Tensor]) -> Tensor:
        return (w * losses.ce(functional_forward(model, params, x_adv), y)).sum()

    return weight_gradient(
        model,
        w,
        train_loss_at(dict(model.named_parameters())),
        train_loss_at,
        lr_theta,
        lambda theta: validation_loss(model, theta, x_val_adv, y_val),
    )


def bilaw_meta_gradient(
    model: nn.Module,
    weight_net: nn.Module,
    x_adv: Tensor,
    y: Tensor,
    delta: Tensor,
    x_val_adv: Tensor,
    y_val: Tensor,
    lr_theta: float,
) -> list[Tensor]:
    """∇_μ of ``mean ce(f_θ̃(x_val_adv), y_val)`` with θ̃ = θ − lr_θ·∇_θ Σ_i w_i·ce(f_θ(x_adv_i), y_i)
    and ``w = weight_net(delta) / Σ weight_net(delta)`` (positive, summing to 1): a list in
    ``weight_net.parameters()`` order. ``x_adv`` [B, C, H, W], ``y`` [B], ``delta`` [B, d] (the
    weight network's input, e.g. the multi-class margin), ``x_val_adv`` [M, C, H, W],
    ``y_val`` [M]. The model's parameters, ``.grad`` and buffers are left untouched."""
    w = normalize_to_batch(weight_net(delta), keep_graph=True) / delta.shape[0]
    g = meta_weight_gradient(model, w, x_adv, y, x_val_adv, y_val, lr_theta)
    return list(torch.autograd.grad(w, list(weight_net.parameters()), grad_outputs=g))
