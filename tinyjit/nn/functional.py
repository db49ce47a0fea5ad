"""`tinyjit.nn.functional`, used as `import tinyjit.nn.functional as F`: PyTorch's functional API (names, argument
order, defaults and reductions of torch.nn.functional), composed from Tensor methods.

Differences from PyTorch: `inplace=True` is accepted and ignored (every op builds a new lazy value; use the
result), and the legacy `size_average` / `reduce` arguments are mapped to `reduction` as PyTorch does.
Pooling (max_pool*, avg_pool*, adaptive_avg_pool*) lives in `tinyjit.nn.pooling`, `interpolate` in
`tinyjit.nn.resample`; unfold/fold, pixel_shuffle, adaptive_max_pool*, instance_norm, rms_norm, bilinear and a few
activations in `tinyjit.nn.functional_more` (all re-exported here).
"""
from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np

from tinyjit.dtype import dtypes
from tinyjit.index_check import check_index, wide_enough
from tinyjit.nn.functional_more import (adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d,  # noqa: F401
                                        bilinear, dropout1d, dropout2d, dropout3d, fold, hardshrink, instance_norm,
                                        pairwise_distance, pixel_shuffle, pixel_unshuffle, prelu, rms_norm, selu,
                                        softshrink, tanhshrink, threshold, unfold)
from tinyjit.nn.pooling import adaptive_avg_pool, avg_pool, max_pool
from tinyjit.nn.resample import interpolate  # noqa: F401 (re-exported)
from tinyjit.tensor import Tensor
from tinyjit.tensor_nn import _reduce_loss

# ---- activations ----


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """torch.nn.functional.relu: max(x, 0) elementwise (gradient 0 at 0); any shape, dtype kept. `inplace` is
    accepted and ignored (every op builds a new value)."""
    return input.relu()


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """torch.nn.functional.relu6: min(max(x, 0), 6) elementwise; any shape, dtype kept."""
    return input.relu6()


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """torch.nn.functional.gelu: x * Phi(x) (Phi the normal CDF), or the tanh formula with approximate='tanh';
    any shape, ints give float32. ValueError for another `approximate`."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return input.gelu(approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """torch.nn.functional.silu: x * sigmoid(x); any shape, ints give float32."""
    return input.silu()


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """torch.nn.functional.mish: x * tanh(softplus(x)); any shape, ints give float32."""
    return input.mish()


def sigmoid(input: Tensor) -> Tensor:
    """torch.nn.functional.sigmoid: 1 / (1 + exp(-x)); any shape, ints give float32."""
    return input.sigmoid()


def tanh(input: Tensor) -> Tensor:
    """torch.nn.functional.tanh: tanh(x); any shape, ints give float32."""
    return input.tanh()


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """torch.nn.functional.leaky_relu: x where x >= 0, else negative_slope * x; any shape, ints give float32."""
    return input.leaky_relu(negative_slope)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """torch.nn.functional.elu: x where x > 0, else alpha * (exp(x) - 1); any shape, ints give float32."""
    return input.elu(alpha)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:  # noqa: F811 (torch's name)
    """torch.nn.functional.softplus: log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold;
    any shape, ints give float32."""
    return input.softplus(beta, threshold)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """torch.nn.functional.hardswish: x * relu6(x + 3) / 6; any shape, ints give float32."""
    return input.hardswish()


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """torch.nn.functional.hardsigmoid: relu6(x + 3) / 6; any shape, ints give float32."""
    return input.hardsigmoid()


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """torch.nn.functional.hardtanh: x clipped to [min_val, max_val]; the gradient is 1 strictly inside and 0 at
    and beyond the bounds, like PyTorch; dtype kept. ValueError when min_val > max_val."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})")
    return input._hardtanh(input, min_val, max_val, min_val, max_val, nan_gradient=True)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """torch.nn.functional.celu: max(0, x) + min(0, alpha * (exp(x / alpha) - 1)); any shape, ints give float32.
    RuntimeError for alpha == 0."""
    if alpha == 0:
        raise RuntimeError("celu: alpha must not be 0 (it divides x)")
    x = input._float()
    pos = x > 0
    return pos.where(x, alpha * (pos.where(0.0, x) / alpha).expm1())


def softsign(input: Tensor) -> Tensor:
    """torch.nn.functional.softsign: x / (1 + |x|); any shape, ints give float32."""
    x = input._float()
    return x / (x.abs() + 1)


def logsigmoid(input: Tensor) -> Tensor:
    """torch.nn.functional.logsigmoid: log(sigmoid(x)), stable for large |x| (-softplus(-x)); any shape."""
    x = input._float()
    pos = x > 0
    # log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), written with where so the gradient at 0 is 1/2
    return pos.where(0.0, x) - pos.where(-x, x).exp().log1p()


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """torch.nn.functional.glu: a * sigmoid(b) where a, b are the two halves of `input` along `dim` (that size
    halves). RuntimeError for an odd size."""
    if input.ndim == 0:
        raise RuntimeError("glu: does not support 0-d tensors")
    size = input.shape[dim]
    if size % 2:
        raise RuntimeError(f"glu: halving dimension {dim} of shape {input.shape} must be even, got size {size}")
    a, b = input.chunk(2, dim)
    return a * b.sigmoid()


def softmax(input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """torch.nn.functional.softmax: exp(x) / sum(exp(x)) along `dim` (input cast to `dtype` first when given;
    dim=None is PyTorch's legacy choice: 0 for 0-, 1- and 3-d inputs, else 1); shape kept. IndexError for a dim
    out of range."""
    x = input.cast(dtype) if dtype is not None else input
    return x.softmax(_legacy_dim(dim, x))


def log_softmax(input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """torch.nn.functional.log_softmax: x - logsumexp(x) along `dim`, computed stably; dim and dtype as softmax."""
    x = input.cast(dtype) if dtype is not None else input
    return x.log_softmax(_legacy_dim(dim, x))


def softmin(input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """torch.nn.functional.softmin: softmax(-x) along `dim`; dim and dtype as softmax."""
    x = input.cast(dtype) if dtype is not None else input
    return (-x).softmax(_legacy_dim(dim, x))


def _legacy_dim(dim: Optional[int], x: Tensor) -> int:
    if dim is None:   # PyTorch's implicit choice (with a deprecation warning there)
        return 0 if x.ndim in (0, 1, 3) else 1
    return dim


# ---- losses ----
def _reduction(size_average, reduce, reduction: str, op: str) -> str:
    """The reduction string, with PyTorch's mapping of the deprecated size_average / reduce flags."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        return "mean" if size_average and reduce else "sum" if reduce else "none"
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{op}: {reduction!r} is not a valid value for reduction ('none', 'mean' or 'sum')")
    return reduction


def _check_tensors(op: str, **tensors) -> None:
    for name, t in tensors.items():
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")


def cross_entropy(input: Tensor, target: Tensor, weight: Optional[Tensor] = None, size_average=None,
                  ignore_index: int = -100, reduce=None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """torch.nn.functional.cross_entropy: log-softmax over dim 1 (dim 0 for an unbatched (C,) input) and the
    negative log-likelihood. `target` holds int class indices (N, d...) or probabilities shaped like the input;
    weight (C,), ignore_index, label_smoothing and reduction as torch. IndexError for a class index out of range;
    errors otherwise as Tensor.cross_entropy."""
    _check_tensors("cross_entropy", input=input, target=target, weight=weight)
    reduction = _reduction(size_average, reduce, reduction, "cross_entropy")
    return input.cross_entropy(target, reduction, label_smoothing, ignore_index, weight)


def nll_loss(input: Tensor, target: Tensor, weight: Optional[Tensor] = None, size_average=None,
             ignore_index: int = -100, reduce=None, reduction: str = "mean") -> Tensor:
    """torch.nn.functional.nll_loss: minus the log-probabilities (N, C, d...) at int class indices (N, d...),
    weighted by `weight` (C,); ignore_index targets add nothing. IndexError for a class index out of range."""
    _check_tensors("nll_loss", input=input, target=target, weight=weight)
    return input.nll_loss(target, _reduction(size_average, reduce, reduction, "nll_loss"), ignore_index, weight)


def _pair_up(input: Tensor, target: Tensor, op: str) -> tuple[Tensor, Tensor]:
    """Check the operands; they broadcast together in the arithmetic (PyTorch warns when the shapes differ)."""
    _check_tensors(op, input=input, target=target)
    return input, target


def mse_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """torch.nn.functional.mse_loss: (input - target)^2, reduced ('mean', 'sum' or 'none'); input and target
    broadcast together. ValueError for another reduction."""
    input, target = _pair_up(input, target, "mse_loss")
    return _reduce_loss((input - target).square(), _reduction(size_average, reduce, reduction, "mse_loss"), None)


def l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """torch.nn.functional.l1_loss: |input - target|, reduced; input and target broadcast together."""
    input, target = _pair_up(input, target, "l1_loss")
    return _reduce_loss((input - target).abs(), _reduction(size_average, reduce, reduction, "l1_loss"), None)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """torch.nn.functional.huber_loss: 0.5 d^2 where |d| < delta, else delta * (|d| - delta / 2), d = input -
    target, reduced."""
    input, target = _pair_up(input, target, "huber_loss")
    d = (input - target).abs()
    loss = (d < delta).where(0.5 * d * d, delta * (d - 0.5 * delta))
    return _reduce_loss(loss, _reduction(None, None, reduction, "huber_loss"), None)


def smooth_l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    """torch.nn.functional.smooth_l1_loss: 0.5 d^2 / beta where |d| < beta, else |d| - beta / 2 (beta=0 is the
    L1 loss), reduced."""
    input, target = _pair_up(input, target, "smooth_l1_loss")
    if beta < 0:
        raise RuntimeError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    d = (input - target).abs()
    loss = d if beta == 0 else (d < beta).where(0.5 * d * d / beta, d - 0.5 * beta)
    return _reduce_loss(loss, _reduction(size_average, reduce, reduction, "smooth_l1_loss"), None)


def kl_div(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
    """torch.nn.functional.kl_div: target * (log target - input) with input holding log-probabilities (target too
    with log_target=True), reduced; 'batchmean' divides the sum by the batch size."""
    _check_tensors("kl_div", input=input, target=target)
    if log_target:
        loss = target.exp() * (target - input)
    else:   # 0 * log 0 is 0 (xlogy), like PyTorch
        loss = (target > 0).where(target * (target > 0).where(target, 1.0).log(), 0.0) - target * input
    if reduction == "batchmean" and size_average is None and reduce is None:
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    return _reduce_loss(loss, _reduction(size_average, reduce, reduction, "kl_div"), None)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Optional[Tensor] = None, size_average=None,
                         reduce=None, reduction: str = "mean") -> Tensor:
    """torch.nn.functional.binary_cross_entropy: -(t log p + (1 - t) log(1 - p)) of probabilities p, logs clamped
    at -100 like PyTorch; `weight` (broadcast) rescales each element; reduced. ValueError unless input and target
    have one shape."""
    _check_tensors("binary_cross_entropy", input=input, target=target, weight=weight)
    loss = input.binary_cross_entropy(target, reduction="none")
    if weight is not None:
        loss = loss * weight
    return _reduce_loss(loss, _reduction(size_average, reduce, reduction, "binary_cross_entropy"), None)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                                     size_average=None, reduce=None, reduction: str = "mean",
                                     pos_weight: Optional[Tensor] = None) -> Tensor:
    """torch.nn.functional.binary_cross_entropy_with_logits: binary cross-entropy of logits, computed stably;
    `weight` rescales each element, `pos_weight` (broadcast over the last dim) the positive term; reduced.
    ValueError unless input and target have one shape."""
    _check_tensors("binary_cross_entropy_with_logits", input=input, target=target, weight=weight,
                   pos_weight=pos_weight)
    loss = input.binary_cross_entropy_with_logits(target, reduction="none", pos_weight=pos_weight)
    if weight is not None:
        loss = loss * weight
    return _reduce_loss(loss, _reduction(size_average, reduce, reduction, "binary_cross_entropy_with_logits"), None)


# ---- normalization and regularization ----
def layer_norm(input: Tensor, normalized_shape, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
               eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.layer_norm: (x - mean) / sqrt(var + eps) over the trailing `normalized_shape` dims,
    then * weight + bias (shape normalized_shape). ValueError for an input that does not end in
    normalized_shape."""
    return input.layer_norm(normalized_shape, weight, bias, eps)


def group_norm(input: Tensor, num_groups: int, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
               eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.group_norm: each of `num_groups` channel groups of (N, C, *) normalized over its
    channels and spatial dims, then * weight + bias per channel. RuntimeError for C not divisible by num_groups."""
    if input.ndim < 2 or not isinstance(num_groups, int) or num_groups <= 0 or input.shape[1] % num_groups:
        raise RuntimeError(f"group_norm: input of shape {input.shape} needs (N, C, ...) with C divisible by "
                           f"num_groups={num_groups!r}")
    c = input.shape[1]
    out = input.reshape(input.shape[0], num_groups, -1).layernorm(-1, eps).reshape(input.shape)
    shape = (1, c) + (1,) * (input.ndim - 2)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
               weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalization of (N, C, *) over every dim but 1. Training (or no running statistics) uses the batch
    statistics and, when running_mean / running_var are given, updates them in place with `momentum` (the variance
    unbiased, like PyTorch); otherwise the running statistics normalize."""
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected an input of at least 2 dims (N, C, ...), got shape {input.shape}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and t.shape != (c,):
            raise RuntimeError(f"batch_norm: {name} of shape {t.shape} does not match {c} channels")
    axes = (0,) + tuple(range(2, input.ndim))
    shape = (1, c) + (1,) * (input.ndim - 2)
    x = input.float() if input.dtype == dtypes.float16 else input
    if training or running_mean is None or running_var is None:
        count = input.numel() // c if c else 0
        if training and count <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input shape "
                             f"{input.shape}")
        mean = x.mean(axes)
        var = (x - mean.reshape(shape)).square().mean(axes)
        if training and running_mean is not None and running_var is not None:
            with Tensor.no_grad():
                unbiased = var.detach() * (count / (count - 1))
                running_mean.assign(running_mean * (1 - momentum) + mean.detach().cast(running_mean.dtype) * momentum)
                running_var.assign(running_var * (1 - momentum) + unbiased.cast(running_var.dtype) * momentum)
    else:
        mean, var = running_mean, running_var
    out = ((x - mean.reshape(shape)) * (var.reshape(shape) + eps).rsqrt()).cast(input.dtype)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) when `training` (True by default, like
    torch.nn.functional.dropout). ValueError for p outside [0, 1]."""
    if not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"dropout: probability has to be between 0 and 1, but got {p}")
    return input.dropout(p, training=bool(training))


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out=None) -> Tensor:
    """torch.nn.functional.normalize: input / max(||input||_p along dim, eps); shape kept. The gradient is
    finite for a zero vector (the norm's is 0 there)."""
    if out is not None:
        raise TypeError("normalize: out= is not supported (tinyjit tensors are values); use the result")
    x = input._float()
    if p == 2:
        norm = x.square().sum(dim, keepdim=True).maximum(eps * eps).sqrt().maximum(eps)
    elif p == 1:
        norm = x.abs().sum(dim, keepdim=True).maximum(eps)
    elif p == math.inf:
        norm = x.abs().amax(dim, keepdim=True).maximum(eps)
    else:   # Tensor.norm: a gradient of 0 at zero entries (|x|^p's is inf there for p < 1)
        norm = x.norm(p, dim, keepdim=True).maximum(eps)
    return x / norm


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """torch.nn.functional.cosine_similarity: sum(x1 / max(||x1||, eps) * x2 / max(||x2||, eps)) along dim (x1
    and x2 broadcast); the dim is removed. Each input is divided by its norm before the product (as torch does),
    so the product of two large norms cannot overflow; float16 is computed in float32."""
    wide = dtypes.float32 if dtypes.float16 in (x1.dtype, x2.dtype) else None
    shape = tuple(np.broadcast_shapes(x1.shape, x2.shape))   # (torch broadcasts before taking the norms)
    a, b = x1.expand(shape), x2.expand(shape)
    a, b = (a.float(), b.float()) if wide is not None else (a, b)
    # Tensor.norm, not square().sum().sqrt(): its gradient is 0 at a zero vector (as torch's), where sqrt's inf
    # times the 0 that maximum(eps) passes back would be NaN
    a = a / a.norm(2, dim, keepdim=True).maximum(eps)
    b = b / b.norm(2, dim, keepdim=True).maximum(eps)
    out = (a * b).sum(dim)
    return out.cast(x1.dtype) if wide is not None else out


# ---- linear, convolution, embedding, attention ----
def linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """torch.nn.functional.linear: input @ weight.T + bias for input (*, in_features), weight (out_features,
    in_features), bias (out_features,). RuntimeError when the last dims do not match."""
    _check_tensors("linear", input=input, weight=weight, bias=bias)
    if input.shape[-1:] != weight.shape[-1:]:
        raise RuntimeError(f"linear: input of shape {input.shape} and weight of shape {weight.shape} do not fit "
                           f"(both need in_features last)")
    return input.linear(weight, bias)


def _batched_conv(op: str, nd: int, input, weight, bias, run) -> Tensor:
    """What every convolution does around its op: check the tensors and their ranks (RuntimeError naming both
    shapes), give an unbatched (C, *spatial) input a batch dim for `run(x)` and take it off the result."""
    _check_tensors(op, input=input, weight=weight, bias=bias)
    if weight.ndim != nd + 2 or input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{op}: expected a {nd + 1}-d (unbatched) or {nd + 2}-d input and a {nd + 2}-d weight, "
                           f"got shapes {input.shape} and {weight.shape}")
    unbatched = input.ndim == nd + 1
    out = run(input.unsqueeze(0) if unbatched else input)
    return out.squeeze(0) if unbatched else out


def _conv_nd(input, weight, bias, stride, padding, dilation, groups, nd: int, op: str) -> Tensor:
    return _batched_conv(op, nd, input, weight, bias,
                         lambda x: x._conv(weight, bias, stride, padding, dilation, groups, nd, op))


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """torch.nn.functional.conv1d: 1-d convolution of input (N, Cin, L) or (Cin, L) with weight (Cout, Cin/groups,
    k) and bias (Cout,); padding ints, 'same' or 'valid'. Output (N, Cout, (L + 2*padding - dilation*(k-1) - 1) //
    stride + 1). RuntimeError for ranks that do not fit, ValueError for channels that do not."""
    return _conv_nd(input, weight, bias, stride, padding, dilation, groups, 1, "conv1d")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """torch.nn.functional.conv2d: 2-d convolution of (N, Cin, H, W) or (Cin, H, W) with weight (Cout, Cin/groups,
    kh, kw); arguments, sizes and errors as conv1d per spatial dim."""
    return _conv_nd(input, weight, bias, stride, padding, dilation, groups, 2, "conv2d")


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """torch.nn.functional.conv3d: 3-d convolution of (N, Cin, D, H, W) or unbatched with weight (Cout,
    Cin/groups, kd, kh, kw); as conv1d per spatial dim."""
    return _conv_nd(input, weight, bias, stride, padding, dilation, groups, 3, "conv3d")


def _conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation, nd, op) -> Tensor:
    return _batched_conv(op, nd, input, weight, bias,
                         lambda x: x._conv_transpose(weight, bias, stride, padding, output_padding, groups, dilation,
                                                     nd, op))


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1,
                     dilation=1) -> Tensor:
    """torch.nn.functional.conv_transpose1d: the transposed 1-d convolution (conv1d's gradient with respect to its
    input) of (N, Cin, L) or unbatched with weight (Cin, Cout/groups, k); output length (L-1)*stride - 2*padding +
    dilation*(k-1) + output_padding + 1. RuntimeError for ranks that do not fit, ValueError for channels that do
    not."""
    return _conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation, 1,
                              "conv_transpose1d")


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1,
                     dilation=1) -> Tensor:
    """torch.nn.functional.conv_transpose2d: the transposed 2-d convolution, weight (Cin, Cout/groups, kh, kw); as
    conv_transpose1d per spatial dim."""
    return _conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation, 2,
                              "conv_transpose2d")


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1,
                     dilation=1) -> Tensor:
    """torch.nn.functional.conv_transpose3d: the transposed 3-d convolution, weight (Cin, Cout/groups, kd, kh,
    kw); as conv_transpose1d per spatial dim."""
    return _conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation, 3,
                              "conv_transpose3d")


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """torch.nn.functional.one_hot: (*shape) int class indices -> (*shape, num_classes) int64 (num_classes=-1: the
    largest index + 1). IndexError for a class outside the range."""
    _check_tensors("one_hot", tensor=tensor)
    return tensor.one_hot(num_classes)


def embedding(input, weight: Tensor, padding_idx: Optional[int] = None, max_norm: Optional[float] = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of `weight` (num_embeddings, dim) at integer indices `input` (any shape): (*input.shape, dim), as
    torch.nn.functional.embedding. The `padding_idx` row gets no gradient. With `max_norm`, the rows looked up
    whose `norm_type`-norm exceeds it are first scaled in place (in `weight`, no gradient) to norm max_norm, as in
    torch. `scale_grad_by_freq` divides each row's gradient by how often its index occurs in `input`. `sparse` is
    accepted; the gradient is dense. IndexError for an index outside [0, num_embeddings); TypeError for float
    indices; RuntimeError for a weight that is not 2-d; ValueError for padding_idx out of range."""
    _check_tensors("embedding", weight=weight)
    if weight.ndim != 2:
        raise RuntimeError(f"embedding: weight must be 2-d (num_embeddings, embedding_dim), got {weight.shape}")
    rows = weight.shape[0]
    if padding_idx is not None:
        if not -rows <= padding_idx < rows:
            raise ValueError(f"embedding: padding_idx {padding_idx} is out of range for {rows} rows")
        padding_idx %= rows
    host = None if isinstance(input, Tensor) else input
    idx = input if isinstance(input, Tensor) else Tensor(input, device=weight.device)
    if idx.dtype.is_float or idx.dtype == dtypes.bool:
        raise TypeError(f"embedding: indices must be an int tensor, got {idx.dtype.name}")
    idx._same_device("embedding", weight)
    flat = idx.reshape(-1)
    dim = weight.shape[1]
    hits = None
    if max_norm is not None or (scale_grad_by_freq and weight.requires_grad):   # one-hot (lookups, rows)
        wide = wide_enough(flat, rows)
        hits = wide.unsqueeze(-1) == Tensor.arange(rows, dtype=wide.dtype, device=idx.device)
    if max_norm is not None:   # (the renorm reads the index: its check comes first)
        check_index(idx if host is None else host, 0, rows, "embedding", f"a table of {rows} rows", reader=hits)
        _renorm_rows_(weight, hits.any(0), max_norm, norm_type)
    # a GATHER of rows: an indexed load in the kernel, whose gradient is a scatter-add into the table
    out = weight._gather(0, flat.reshape(-1, 1).expand(flat.shape[0], dim))
    if max_norm is None:
        check_index(idx if host is None else host, 0, rows, "embedding", f"a table of {rows} rows", reader=out)
    if padding_idx is not None and weight.requires_grad:
        # the same values; the lookups of the padding row pass no gradient, so that row gets none
        out = (flat == padding_idx).reshape(-1, 1).where(out.detach(), out)
    if scale_grad_by_freq and weight.requires_grad:
        # the same values (o + 0), and each lookup's gradient divided by how often its row is looked up
        counts = hits.sum(0).maximum(1).cast(weight.dtype).reshape(rows, 1)
        per_lookup = counts._gather(0, flat.reshape(-1, 1))
        out = out.detach() + (out - out.detach()) / per_lookup
    return out.reshape(*idx.shape, dim)


def _renorm_rows_(weight: Tensor, used: Tensor, max_norm: float, norm_type: float) -> None:
    """torch's embedding_renorm_: each used row of `weight` whose norm_type-norm exceeds max_norm is scaled in
    place by max_norm / (norm + 1e-7). Not recorded for autograd (torch runs it under no_grad)."""
    with Tensor.no_grad():
        magnitude = weight.abs()
        if norm_type == math.inf:
            norms = magnitude.amax(1, keepdim=True)
        else:
            norms = (magnitude ** norm_type).sum(1, keepdim=True) ** (1.0 / norm_type)
        shrink = used.reshape(-1, 1) & (norms > max_norm)
        weight.assign(shrink.where(weight * (max_norm / (norms + 1e-7)), weight))


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Optional[Tensor] = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: Optional[float] = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(q @ k^T * scale + mask) @ v over (..., L, E) queries, (..., S, E) keys and (..., S, Ev) values. A bool
    mask marks positions that may be attended to; a float mask is added. With `enable_gqa`, key and value heads
    (dim -3) are repeated to the number of query heads. `dropout_p` always applies (as in PyTorch)."""
    _check_tensors("scaled_dot_product_attention", query=query, key=key, value=value, attn_mask=attn_mask)
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        hq, hk = query.shape[-3], key.shape[-3]
        if hq % hk or value.shape[-3] != hk:
            raise RuntimeError(f"scaled_dot_product_attention: {hq} query heads are not a multiple of {hk} key/value "
                               f"heads")
        key, value = _repeat_heads(key, hq // hk), _repeat_heads(value, hq // hk)
    return query.scaled_dot_product_attention(key, value, attn_mask, is_causal, dropout_p, scale)


def _repeat_heads(x: Tensor, n: int) -> Tensor:
    """(..., H, S, E) -> (..., H * n, S, E), each head repeated n times in a row (repeat_interleave on dim -3)."""
    shape = x.shape
    return x.unsqueeze(-3).expand(shape[:-2] + (n,) + shape[-2:]).reshape(shape[:-3] + (shape[-3] * n,) + shape[-2:])


# ---- padding ----
def pad(input: Tensor, pad, mode: str = "constant", value: Optional[float] = None) -> Tensor:
    """torch.nn.functional.pad: `pad` lists (before, after) amounts from the last dim backwards, e.g. (left, right,
    top, bottom). Modes: 'constant' (with `value`, default 0; negative amounts crop), 'reflect', 'replicate',
    'circular'. RuntimeError when a reflect/circular pad is not smaller than the dim."""
    _check_tensors("pad", input=input)
    amounts = tuple(pad)
    if len(amounts) % 2 or len(amounts) // 2 > input.ndim or \
            any(not isinstance(a, numbers.Integral) or isinstance(a, bool) for a in amounts):
        raise ValueError(f"pad: {amounts} must be an even number of ints, at most 2 per dim of {input.shape}")
    if mode == "constant":
        return input.pad(amounts, value=0.0 if value is None else value)
    if value is not None and value != 0:
        raise ValueError(f"pad: padding mode {mode!r} does not take a value")
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: mode {mode!r} (choose 'constant', 'reflect', 'replicate' or 'circular')")
    x = input
    for i in range(len(amounts) // 2):
        dim = input.ndim - 1 - i
        x = _pad_dim(x, dim, int(amounts[2 * i]), int(amounts[2 * i + 1]), mode)
    return x


def _cut(x: Tensor, dim: int, lo: int, hi: int) -> Tensor:
    return x.shrink(tuple((lo, hi) if a == dim else None for a in range(x.ndim)))


def _pad_dim(x: Tensor, dim: int, before: int, after: int, mode: str) -> Tensor:
    size = x.shape[dim]
    if before < 0 or after < 0:
        if mode != "circular":
            raise RuntimeError(f"pad: negative padding ({before}, {after}) only works with 'constant' or "
                               f"'circular' mode")
        x = _cut(x, dim, max(-before, 0), size - max(-after, 0))
        return _pad_dim(x, dim, max(before, 0), max(after, 0), mode)
    if before == after == 0:
        return x
    limit = size - 1 if mode == "reflect" else size
    if mode != "replicate" and (before > limit or after > limit):
        bound = "smaller than" if mode == "reflect" else "at most"
        raise RuntimeError(f"pad: {mode} padding ({before}, {after}) must be {bound} the size {size} of dim {dim}")
    if size == 0:
        raise RuntimeError(f"pad: cannot {mode}-pad an empty dim {dim} of shape {x.shape}")
    if mode == "reflect":
        left, right = _cut(x, dim, 1, before + 1).flip(dim), _cut(x, dim, size - after - 1, size - 1).flip(dim)
    elif mode == "circular":
        left, right = _cut(x, dim, size - before, size), _cut(x, dim, 0, after)
    else:
        first, last = _cut(x, dim, 0, 1), _cut(x, dim, size - 1, size)
        left = first.expand(tuple(before if a == dim else s for a, s in enumerate(x.shape)))
        right = last.expand(tuple(after if a == dim else s for a, s in enumerate(x.shape)))
    parts = [p for p, n in ((left, before), (x, size), (right, after)) if n]
    return parts[0].cat(*parts[1:], dim=dim)


# ---- pooling (nd-specific spellings of tinyjit.nn.pooling) ----
def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """torch.nn.functional.max_pool1d: the maximum of each window of (N, C, L) or (C, L); any dtype, kept; output
    length (L + 2*padding - dilation*(k-1) - 1) / stride + 1 (floored, or ceiled with ceil_mode). With
    return_indices also the int64 positions of the maxima. RuntimeError for bad sizes or padding over half the
    kernel."""
    return max_pool(input, 1, kernel_size, stride, padding, dilation, ceil_mode, return_indices, "max_pool1d")


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """torch.nn.functional.max_pool2d: max pooling of (N, C, H, W) or (C, H, W), as max_pool1d per dim; indices are
    flat positions h * W + w, like PyTorch's."""
    return max_pool(input, 2, kernel_size, stride, padding, dilation, ceil_mode, return_indices, "max_pool2d")


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """torch.nn.functional.max_pool3d: max pooling of (N, C, D, H, W) or (C, D, H, W), as max_pool1d per dim."""
    return max_pool(input, 3, kernel_size, stride, padding, dilation, ceil_mode, return_indices, "max_pool3d")


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """torch.nn.functional.avg_pool1d: the mean of each window of (N, C, L) or (C, L) (count_include_pad as torch);
    floats keep their dtype, ints truncate the mean, bool raises TypeError; sizes and errors as max_pool1d."""
    return avg_pool(input, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, None, "avg_pool1d")


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """torch.nn.functional.avg_pool2d: average pooling of (N, C, H, W) or (C, H, W), as avg_pool1d per dim, with
    divisor_override."""
    return avg_pool(input, 2, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                    "avg_pool2d")


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """torch.nn.functional.avg_pool3d: average pooling of (N, C, D, H, W) or (C, D, H, W), as avg_pool2d."""
    return avg_pool(input, 3, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                    "avg_pool3d")


def adaptive_avg_pool1d(input, output_size) -> Tensor:
    """torch.nn.functional.adaptive_avg_pool1d: (N, C, L) or (C, L) averaged to `output_size`, cell i over input
    [floor(i*L/out), ceil((i+1)*L/out)); float dtypes (RuntimeError otherwise)."""
    return adaptive_avg_pool(input, 1, output_size, "adaptive_avg_pool1d")


def adaptive_avg_pool2d(input, output_size) -> Tensor:
    """torch.nn.functional.adaptive_avg_pool2d: (N, C, H, W) or (C, H, W) averaged to output_size (an int or a
    pair; None keeps that dim), as adaptive_avg_pool1d per dim."""
    return adaptive_avg_pool(input, 2, output_size, "adaptive_avg_pool2d")


def adaptive_avg_pool3d(input, output_size) -> Tensor:
    """torch.nn.functional.adaptive_avg_pool3d: (N, C, D, H, W) or (C, D, H, W) averaged to output_size, as
    adaptive_avg_pool2d."""
    return adaptive_avg_pool(input, 3, output_size, "adaptive_avg_pool3d")
