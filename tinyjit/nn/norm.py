"""Normalization layers: BatchNorm1d/2d/3d, LayerNorm, GroupNorm, RMSNorm (PyTorch semantics and state_dict keys).

BatchNorm updates its running statistics with `assign` during a training forward pass. Those assigns are lazy;
they are realized together with the next optimizer step (see `defer_realize`), when read, or at the next
training forward pass, whichever comes first.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from tinyjit.deferred import defer_realize
from tinyjit.dtype import dtypes
from tinyjit.helpers import prod
from tinyjit.nn import functional_more, init
from tinyjit.nn.layers import size_arg
from tinyjit.nn.module import Module
from tinyjit.tensor import Tensor


class _BatchNorm(Module):
    _input_dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *, bias: bool = True):
        super().__init__()
        size_arg(type(self).__name__, "num_features", num_features)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = init.ones((num_features,), dtype, device) if affine else None
        self.bias = init.zeros((num_features,), dtype, device) if affine and bias else None
        if track_running_stats:
            self.register_buffer("running_mean", _buffer(np.zeros(num_features), dtype, device))
            self.register_buffer("running_var", _buffer(np.ones(num_features), dtype, device))
            self.register_buffer("num_batches_tracked", Tensor(np.zeros((), np.int64), device=device,
                                                               requires_grad=False))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x: Tensor) -> Tensor:
        name = type(self).__name__
        if x.ndim not in self._input_dims or x.shape[1] != self.num_features:
            raise ValueError(f"{name}: expected a {' or '.join(f'{d}-d' for d in self._input_dims)} input with "
                             f"{self.num_features} channels in dim 1, got shape {x.shape}")
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, self.num_features) + (1,) * (x.ndim - 2)
        use_batch = self.training or not self.track_running_stats
        dtype = x.dtype
        if dtype == dtypes.float16:   # statistics and normalization in float32, like PyTorch
            x = x.float()
        if use_batch:
            count = prod(x.shape[a] for a in axes)
            if self.training and count <= 1:
                raise ValueError(f"{name}: expected more than 1 value per channel when training, got input "
                                 f"shape {x.shape}")
            mean = x.mean(axes)
            var = (x - mean.reshape(shape)).square().mean(axes)
            if self.training and self.track_running_stats:
                with Tensor.no_grad():
                    self._update_running(mean, var, count)
        else:
            mean, var = self.running_mean, self.running_var
        out = ((x - mean.reshape(shape)) * (var.reshape(shape) + self.eps).rsqrt()).cast(dtype)
        if self.weight is not None:
            out = out * self.weight.reshape(shape)
        return out + self.bias.reshape(shape) if self.bias is not None else out

    def _update_running(self, mean: Tensor, var: Tensor, count: int) -> None:
        mean, var = mean.detach().cast(self.running_mean.dtype), var.detach().cast(self.running_var.dtype)
        self.num_batches_tracked.assign(self.num_batches_tracked + 1)
        if self.momentum is None:   # cumulative moving average: 1 / batches seen
            factor = self.num_batches_tracked.cast(self.running_mean.dtype).reciprocal()
        else:
            factor = self.momentum
        # PyTorch normalizes with the biased batch variance but tracks the unbiased one
        unbiased = var * (count / (count - 1))
        self.running_mean.assign(self.running_mean * (1 - factor) + mean * factor)
        self.running_var.assign(self.running_var * (1 - factor) + unbiased * factor)
        defer_realize(self.running_mean, self.running_var, self.num_batches_tracked)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """torch.nn.BatchNorm1d over (N, C) or (N, C, L): (x - mean) / sqrt(var + eps) * weight + bias per channel,
    with the batch's statistics (biased variance) while training (the running ones, updated with `momentum`,
    tracking the unbiased variance; momentum=None a cumulative average) and the running ones in eval mode.
    float16 is normalized in float32. ValueError for an input of another rank or channel count, or one value per
    channel while training."""
    _input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """torch.nn.BatchNorm2d: BatchNorm1d's normalization over (N, C, H, W), statistics per channel."""
    _input_dims = (4,)


class BatchNorm3d(_BatchNorm):
    """torch.nn.BatchNorm3d: BatchNorm1d's normalization over (N, C, D, H, W), statistics per channel."""
    _input_dims = (5,)


def _buffer(values: np.ndarray, dtype, device) -> Tensor:
    dt = dtypes.from_any(dtype) if dtype is not None else dtypes.default_float
    return Tensor(values.astype(dt.np), device=device, requires_grad=False)


def _norm_shape(normalized_shape, module: str) -> tuple[int, ...]:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    for size in shape:
        size_arg(module, "normalized_shape", size)
    return shape


class LayerNorm(Module):
    """torch.nn.LayerNorm: (x - mean) / sqrt(var + eps) over the trailing `normalized_shape` dims (biased
    variance; float16 in float32), then * weight + bias elementwise (shape normalized_shape). ValueError for an
    input that does not end in normalized_shape."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.normalized_shape, self.eps = _norm_shape(normalized_shape, "LayerNorm"), eps
        self.elementwise_affine = elementwise_affine
        self.weight = init.ones(self.normalized_shape, dtype, device) if elementwise_affine else None
        self.bias = init.zeros(self.normalized_shape, dtype, device) if elementwise_affine and bias else None

    def forward(self, x: Tensor) -> Tensor:
        n = len(self.normalized_shape)
        if x.shape[x.ndim - n:] != self.normalized_shape:
            raise ValueError(f"LayerNorm: input of shape {x.shape} does not end in {self.normalized_shape}")
        return x.layer_norm(self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class GroupNorm(Module):
    """torch.nn.GroupNorm: the channels (dim 1) of (N, C, *) split into num_groups groups, each normalized over
    its channels and spatial dims, then * weight + bias per channel. ValueError for num_channels not divisible
    by num_groups, or an input without num_channels in dim 1."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, device=None,
                 dtype=None, *, bias: bool = True):
        super().__init__()
        size_arg("GroupNorm", "num_groups", num_groups, minimum=1), size_arg("GroupNorm", "num_channels", num_channels)
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels={num_channels} must be divisible by num_groups={num_groups}")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        self.weight = init.ones((num_channels,), dtype, device) if affine else None
        self.bias = init.zeros((num_channels,), dtype, device) if affine and bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: expected (N, {self.num_channels}, ...), got shape {x.shape}")
        grouped = x.reshape(x.shape[0], self.num_groups, -1).layernorm(-1, self.eps)
        out = grouped.reshape(x.shape)
        shape = (1, self.num_channels) + (1,) * (x.ndim - 2)
        if self.weight is not None:
            out = out * self.weight.reshape(shape)
        return out + self.bias.reshape(shape) if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, " \
               f"bias={self.bias is not None}"


class RMSNorm(Module):
    """torch.nn.RMSNorm: x / sqrt(mean(x^2) + eps) * weight over the trailing `normalized_shape` dims; eps=None
    uses the dtype's machine epsilon; float16 in float32. ValueError for an input that does not end in
    normalized_shape."""

    def __init__(self, normalized_shape, eps: Optional[float] = None, elementwise_affine: bool = True, device=None,
                 dtype=None):
        super().__init__()
        self.normalized_shape, self.eps = _norm_shape(normalized_shape, "RMSNorm"), eps
        self.elementwise_affine = elementwise_affine
        self.weight = init.ones(self.normalized_shape, dtype, device) if elementwise_affine else None

    def forward(self, x: Tensor) -> Tensor:
        return functional_more.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
