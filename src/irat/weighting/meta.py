"""BiLAW's meta-gradient (METHODS.md §4.11, steps 1 and 2): how the robust validation loss after
one pseudo SGD step of the classifier changes with the instance weights.

    θ̃(w) = θ − lr_θ · ∇_θ L_tr(θ, w),        L_tr(θ, w) = Σ_i w_i ℓ_i(θ)
    F(w)  = L_val(θ̃(w)) = mean_k ce(f_θ̃(x̂'_k), ŷ_k)                    (unweighted, robust)
    ∂F/∂w_j = −lr_θ · ∇_θ L_val(θ̃)ᵀ ∇_θ ℓ_j(θ)                            (closed form)

Autograd computes it: the pseudo step's gradient keeps its graph (``create_graph=True``), and the
validation forward runs the same module at θ̃ through ``torch.func.functional_call``, so the model
stays an ordinary ``nn.Module`` (no copy, no monkey-patched parameters). The pseudo step is plain
SGD (no momentum, no weight decay) at the classifier's current learning rate.

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
from torch import Tensor, nn
from torch.func import functional_call

from irat import losses
from irat.weighting.normalize import normalize_to_batch


def _buffer_copies(model: nn.Module) -> dict[str, Tensor]:
    return {name: b.clone() for name, b in model.named_buffers()}


def functional_forward(model: nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """``f(x)`` with the parameters ``params`` (name → tensor; missing names: the module's own)
    and copies of the module's buffers, in the module's current train/eval mode."""
    return functional_call(model, {**params, **_buffer_copies(model)}, (x,))


def pseudo_update(model: nn.Module, train_loss: Tensor, lr_theta: float) -> dict[str, Tensor]:
    """θ̃ = θ − lr_θ·∇_θ ``train_loss`` over the parameters that require gradients (name →
    tensor, with the graph of the gradient: ``create_graph=True``, which also keeps the graph
    of ``train_loss`` for a later backward)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(train_loss, [p for _, p in named], create_graph=True, allow_unused=True)
    return {n: p if g is None else p - lr_theta * g for (n, p), g in zip(named, grads)}


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
    lr_theta: float,
    validation: Callable[[dict[str, Tensor]], Tensor],
) -> Tensor:
    """``∂ validation(θ̃) / ∂w`` [B] for θ̃ = ``pseudo_update(model, train_loss, lr_theta)``;
    ``w`` [B] is the leaf that ``train_loss`` was computed from, ``validation(θ̃)`` the scalar
    validation loss (it may attack its batch at θ̃ first)."""
    theta = pseudo_update(model, train_loss, lr_theta)
    (g,) = torch.autograd.grad(validation(theta), w)
    return g


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
    logits = functional_forward(model, dict(model.named_parameters()), x_adv)
    train_loss = (w * losses.ce(logits, y)).sum()
    return weight_gradient(
        model, w, train_loss, lr_theta, lambda theta: validation_loss(model, theta, x_val_adv, y_val)
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
