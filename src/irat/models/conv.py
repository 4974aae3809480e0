"""A ``Conv2d`` whose input gradient takes the fast CPU kernel for few-channel strided layers.

Adversarial training spends most of its time in the attack, and the attack needs only the
gradient with respect to the input: a transposed convolution of the output gradient. For a
strided convolution on an image with few channels (the first layer of ``tiny-cnn``: 1 → 16
channels, 4×4, stride 2, on 28×28) PyTorch's CPU dispatcher sends that transposed convolution to
oneDNN, which runs it at a few GFLOP/s (2.4 ms for a batch of 128 on this project's 2-core
machine). The native im2col/GEMM kernel (``aten.slow_conv_transpose2d``) computes the same
``gx = conv_transpose2d(g, w, stride, padding)`` in 0.6 ms. This layer routes the input gradient
there and leaves everything else (forward, weight and bias gradients) to the stock kernels.

Measured with ``benchmarks/conv_input_grad.py``. The kernel is differentiable, so double
backward (BiLAW's meta step) still works. On other devices, and outside the fast case (stride 1,
more than ``MAX_IN_CHANNELS`` input channels, dilation, groups), it is a plain ``nn.Conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_IN_CHANNELS = 3
"""Route the input gradient to the native kernel only for strided convolutions with at most this
many input channels (faster for 1 → 16, 4×4, stride 2; oneDNN wins for 16 → 32)."""


def input_grad(grad_out: Tensor, weight: Tensor, stride: int, padding: int, size) -> Tensor:
    """``∂(Σ g·conv2d(x, w))/∂x = conv_transpose2d(g, w)`` by the native kernel; ``grad_out``
    [B, C_out, H_o, W_o] → [B, C_in, H, W] with ``size = (H, W)`` the input's spatial size."""
    k = weight.shape[-1]
    extra = [n - ((m - 1) * stride - 2 * padding + k) for n, m in zip(size, grad_out.shape[-2:])]
    return torch.ops.aten.slow_conv_transpose2d(
        grad_out, weight, [k, k], None, [stride, stride], [padding, padding], extra, [1, 1]
    )


class _NativeInputGradConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        gx = gw = gb = None
        # under autocast the forward ran in a lower precision: compute in the gradient's dtype
        # and hand each gradient back in its input's dtype
        cx, cw = x.to(grad_out.dtype), weight.to(grad_out.dtype)
        if ctx.needs_input_grad[0]:
            gx = input_grad(grad_out, cw, s, p, x.shape[-2:]).to(x.dtype)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            _, gw, gb = torch.ops.aten.convolution_backward(
                grad_out,
                cx,
                cw,
                [weight.shape[0]] if ctx.has_bias else None,
                [s, s],
                [p, p],
                [1, 1],
                False,
                [0, 0],
                1,
                [False, ctx.needs_input_grad[1], ctx.needs_input_grad[2] and ctx.has_bias],
            )
            gw = None if gw is None else gw.to(weight.dtype)
            gb = None if gb is None else gb.to(weight.dtype)
        return gx, gw, gb, None, None


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same state dict) whose input gradient takes the native CPU
    kernel when it is a strided convolution with at most ``MAX_IN_CHANNELS`` input channels."""

    def forward(self, x: Tensor) -> Tensor:
        if not self._fast(x):
            return super().forward(x)
        return _NativeInputGradConv.apply(x, self.weight, self.bias, self.stride[0], self.padding[0])

    def _fast(self, x: Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.requires_grad
            and self.in_channels <= MAX_IN_CHANNELS
            and self.groups == 1
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)
            and self.stride[0] == self.stride[1] > 1
            and self.padding[0] == self.padding[1]
            and self.dilation == (1, 1)
            and self.kernel_size[0] == self.kernel_size[1]
        )
