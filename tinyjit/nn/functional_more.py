"""More of torch.nn.functional (re-exported by tinyjit.nn.functional): patches (unfold/fold), pixel_shuffle,
adaptive max pooling, distances, instance_norm, rms_norm, bilinear and the activations prelu, selu, threshold,
hardshrink, softshrink, tanhshrink, and the channel-wise dropout1d/2d/3d. Each is composed from Tensor ops (lazy,
fused, differentiable)."""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Optional

import numpy as np

from tinyjit.dtype import dtypes
from tinyjit.tensor import Tensor
from tinyjit.tensor_conv import _window_one_axis
from tinyjit.tensor_nn import _first_maximum
from tinyjit.tensor_select import _pick


def _check_tensor(op: str, x) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(x).__name__}")


def _two(value, what: str, op: str, low: int) -> tuple[int, int]:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or any(not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low
                               for v in values):
        raise RuntimeError(f"{op}: {what} must be an int >= {low} or a pair of them, got {value!r}")
    return int(values[0]), int(values[1])


# ---- patches ----
def unfold(input: Tensor, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """torch.nn.functional.unfold (im2col): every kernel_size block of (N, C, H, W) (or (C, H, W)) as a column:
    (N, C * kh * kw, L), L the number of block positions; channel-major, then kernel row, then kernel column, as
    torch. Movement ops only (a view of the padded input). RuntimeError for a 3-d/4-d input mismatch, sizes below
    their minimum or a kernel that does not fit."""
    _check_tensor("unfold", input)
    if input.ndim not in (3, 4):
        raise RuntimeError(f"unfold: expected a 3-d or 4-d input, got shape {input.shape}")
    x = input.unsqueeze(0) if input.ndim == 3 else input
    k, d = _two(kernel_size, "kernel_size", "unfold", 1), _two(dilation, "dilation", "unfold", 1)
    p, s = _two(padding, "padding", "unfold", 0), _two(stride, "stride", "unfold", 1)
    x = x.pad(((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    for axis in (2, 3):
        if x.shape[axis] < d[axis - 2] * (k[axis - 2] - 1) + 1:
            raise RuntimeError(f"unfold: kernel {k} (dilation {d}) does not fit the padded input {x.shape}")
    rows = _window_one_axis(x, 2, k[0], s[0], d[0])              # (N, C, oh, kh, W)
    blocks = _window_one_axis(rows, 4, k[1], s[1], d[1])         # (N, C, oh, kh, ow, kw)
    n, c, oh, _, ow, _ = blocks.shape
    out = blocks.permute(0, 1, 3, 5, 2, 4).reshape(n, c * k[0] * k[1], oh * ow)
    return out.squeeze(0) if input.ndim == 3 else out


def fold(input: Tensor, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """torch.nn.functional.fold (col2im), the adjoint of unfold: columns (N, C * kh * kw, L) (or unbatched
    (C * kh * kw, L)) summed into (N, C, H, W) at the block positions they came from (overlaps add). One spread
    (padding and reshapes) per kernel offset, then a sum. RuntimeError when the sizes do not match torch's rules."""
    _check_tensor("fold", input)
    if input.ndim not in (2, 3):
        raise RuntimeError(f"fold: expected a 2-d or 3-d input, got shape {input.shape}")
    x = input.unsqueeze(0) if input.ndim == 2 else input
    size = _two(output_size, "output_size", "fold", 1)
    k, d = _two(kernel_size, "kernel_size", "fold", 1), _two(dilation, "dilation", "fold", 1)
    p, s = _two(padding, "padding", "fold", 0), _two(stride, "stride", "fold", 1)
    padded = (size[0] + 2 * p[0], size[1] + 2 * p[1])
    blocks = [(padded[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2)]
    n, ckk, count = x.shape
    if ckk % (k[0] * k[1]) or blocks[0] <= 0 or blocks[1] <= 0 or count != blocks[0] * blocks[1]:
        raise RuntimeError(f"fold: input of shape {input.shape} does not match kernel_size {k} and output_size "
                           f"{size}: expected C * {k[0] * k[1]} rows and {max(blocks[0], 0) * max(blocks[1], 0)} "
                           f"columns")
    c, (oh, ow) = ckk // (k[0] * k[1]), blocks
    cols = x.reshape(n, c, k[0], k[1], oh, ow)
    out = None
    for i in range(k[0]):
        for j in range(k[1]):
            patch = cols[:, :, i, j]                                              # (N, C, oh, ow)
            # spread to stride s: (oh, ow) -> every s-th place, then move to the kernel offset (i*d, j*d)
            patch = patch.reshape(n, c, oh, 1, ow, 1).pad(((0, 0), (0, 0), (0, 0), (0, s[0] - 1), (0, 0),
                                                           (0, s[1] - 1)))
            patch = patch.reshape(n, c, oh * s[0], ow * s[1])[:, :, :(oh - 1) * s[0] + 1, :(ow - 1) * s[1] + 1]
            top, left = i * d[0], j * d[1]
            patch = patch.pad(((0, 0), (0, 0), (top, padded[0] - top - patch.shape[2]),
                               (left, padded[1] - left - patch.shape[3])))
            out = patch if out is None else out + patch
    out = out[:, :, p[0]:p[0] + size[0], p[1]:p[1] + size[1]]
    return out.squeeze(0) if input.ndim == 2 else out


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """torch.nn.functional.pixel_shuffle: (*, C * r^2, H, W) -> (*, C, H * r, W * r), r = upscale_factor; a
    view. RuntimeError for fewer than 3 dims or channels not divisible by r^2."""
    _check_tensor("pixel_shuffle", input)
    r = int(upscale_factor)
    if input.ndim < 3 or r <= 0 or input.shape[-3] % (r * r):
        raise RuntimeError(f"pixel_shuffle: expected (*, C * {r}^2, H, W) with a positive factor, got shape "
                           f"{input.shape}")
    *lead, c, h, w = input.shape
    lead, n = tuple(lead), len(lead)
    x = input.reshape(lead + (c // (r * r), r, r, h, w))
    x = x.permute(tuple(range(n)) + (n, n + 3, n + 1, n + 4, n + 2))
    return x.reshape(lead + (c // (r * r), h * r, w * r))


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """torch.nn.functional.pixel_unshuffle, the inverse of pixel_shuffle: (*, C, H * r, W * r) -> (*, C * r^2, H,
    W); a view. RuntimeError for fewer than 3 dims or H, W not divisible by r."""
    _check_tensor("pixel_unshuffle", input)
    r = int(downscale_factor)
    if input.ndim < 3 or r <= 0 or input.shape[-2] % r or input.shape[-1] % r:
        raise RuntimeError(f"pixel_unshuffle: expected (*, C, H * {r}, W * {r}) with a positive factor, got shape "
                           f"{input.shape}")
    *lead, c, h, w = input.shape
    lead, n = tuple(lead), len(lead)
    x = input.reshape(lead + (c, h // r, r, w // r, r))
    x = x.permute(tuple(range(n)) + (n, n + 2, n + 4, n + 1, n + 3))
    return x.reshape(lead + (c * r * r, h // r, w // r))


# ---- adaptive max pooling ----
def _adaptive_windows(size: int, out: int) -> np.ndarray:
    """(out, k) input positions of each output cell's window [floor(i*size/out), ceil((i+1)*size/out)), the
    shorter windows padded by repeating their last position (a max is unchanged by a repeat)."""
    starts = [i * size // out for i in range(out)]
    ends = [-(-(i + 1) * size // out) for i in range(out)]
    k = max(e - s for s, e in zip(starts, ends))
    return np.array([[min(s + j, e - 1) for j in range(k)] for s, e in zip(starts, ends)], np.int64)


def _adaptive_max_pool(input: Tensor, nd: int, output_size, return_indices: bool, op: str):
    _check_tensor(op, input)
    if input.ndim not in (nd + 1, nd + 2) or any(s == 0 for s in input.shape[-nd:]):
        raise RuntimeError(f"{op}: expected a {nd + 1}-d or {nd + 2}-d input, non-empty in its last {nd} dims, got "
                           f"shape {input.shape}")
    sizes = (output_size,) * nd if isinstance(output_size, numbers.Integral) else tuple(output_size)
    if any(s is not None and not isinstance(s, numbers.Integral) for s in sizes):
        raise TypeError(f"{op}: output_size must be an int or a tuple of {nd} ints (or None), got {output_size!r}")
    sizes = tuple(int(s) if s is not None else i for s, i in zip(sizes, input.shape[-nd:]))
    if len(sizes) != nd or any(s < 0 for s in sizes):
        raise RuntimeError(f"{op}: output_size must be {nd} non-negative ints, got {output_size!r}")
    if 0 in sizes:   # an empty output (as torch), still a view of the input for autograd
        empty = input.reshape(input.shape[:input.ndim - nd] + (-1,))[..., :0]
        empty = empty.reshape(input.shape[:input.ndim - nd] + sizes)
        return (empty, empty.detach().to(dtypes.int64)) if return_indices else empty
    x, tables = input, []
    for axis_from_end, out in zip(range(nd, 0, -1), sizes):
        axis = x.ndim - axis_from_end   # (the windows of the axes before were added in front of it)
        table = _adaptive_windows(input.shape[-axis_from_end], out)
        tables.append(table)
        picked = _pick(x, axis, x._new(table.reshape(-1), device=x.device), op)
        x = picked.reshape(x.shape[:axis] + table.shape + x.shape[axis + 1:])
    # x: (..., o1, k1[, o2, k2]): move the window dims last and merge them
    lead = input.ndim - nd
    outs = [lead + 2 * i for i in range(nd)]
    kernel = [lead + 2 * i + 1 for i in range(nd)]
    x = x.permute(list(range(lead)) + outs + kernel)
    window = x.reshape(x.shape[:lead + nd] + (-1,))
    # the whole gradient goes to the chosen maximum (torch's pick: the first, or the last NaN), not shared between ties
    if input.requires_grad and not Tensor.no_grad_active:
        window = window.contiguous()    # the kernels below read one buffer (a recomputed producer could round apart)
    first = _first_maximum(window, window.amax(-1), None)
    values = first.where(window, 0).sum(-1, dtype=window.dtype)
    if not return_indices:
        return values
    positions = x._index_range(window.shape[-1], dtypes.int64, x.device)
    choice = first.where(positions, 0).sum(-1, dtype=dtypes.int64)   # position inside the (k1[, k2]) window
    flat = None
    for i, table in enumerate(tables):
        k_rest = int(np.prod([t.shape[1] for t in tables[i + 1:]])) if i + 1 < len(tables) else 1
        offset = (choice // k_rest) % table.shape[1]
        cell = x._index_range(sizes[i], dtypes.int64, x.device).reshape((sizes[i],) + (1,) * (nd - 1 - i))
        position = x._new(table, device=x.device)[cell, offset]
        stride = int(np.prod(input.shape[input.ndim - nd + i + 1:]))
        flat = position * stride if flat is None else flat + position * stride
    return values, flat


def adaptive_max_pool1d(input: Tensor, output_size, return_indices: bool = False):
    """torch.nn.functional.adaptive_max_pool1d: (N, C, L) or (C, L) -> (..., output_size), cell i the max of input
    [floor(i*L/out), ceil((i+1)*L/out)); with return_indices also the int64 positions of the maxima along L.
    RuntimeError for another input rank, an empty L or a negative output_size; TypeError for a non-int size."""
    return _adaptive_max_pool(input, 1, output_size, return_indices, "adaptive_max_pool1d")


def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False):
    """torch.nn.functional.adaptive_max_pool2d: (N, C, H, W) or (C, H, W) -> (..., oh, ow) (an int for both; None
    keeps that size), each cell the max of its adaptive window; with return_indices also the int64 positions of
    the maxima in the flattened H * W. RuntimeError for another input rank, an empty H or W, or a negative or wrong
    number of sizes; TypeError for a size that is not an int."""
    return _adaptive_max_pool(input, 2, output_size, return_indices, "adaptive_max_pool2d")


def adaptive_max_pool3d(input: Tensor, output_size, return_indices: bool = False):
    """torch.nn.functional.adaptive_max_pool3d: (N, C, D, H, W) or (C, D, H, W) -> (..., od, oh, ow) (an int for
    all three; None keeps that size), each cell the max of its adaptive window [floor(i*size/out),
    ceil((i+1)*size/out)) along each of the three dims; with return_indices also the int64 positions of the maxima
    in the flattened D * H * W. The gradient goes to the chosen maximum only (the first; the last NaN), as torch's.
    RuntimeError for another input rank, an empty D, H or W, or a negative or wrong number of sizes; TypeError for
    a size that is not an int."""
    return _adaptive_max_pool(input, 3, output_size, return_indices, "adaptive_max_pool3d")


# ---- distances and norms ----
def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    """torch.nn.functional.pairwise_distance: the p-norm of x1 - x2 + eps over the last dim (x1 and x2 broadcast),
    the last dim dropped unless keepdim."""
    _check_tensor("pairwise_distance", x1)
    return (x1 - x2 + eps).norm(p, dim=-1, keepdim=keepdim)


def instance_norm(input: Tensor, running_mean: Optional[Tensor] = None, running_var: Optional[Tensor] = None,
                  weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.instance_norm: each (n, c) slice of (N, C, *spatial) normalized over its spatial dims
    with the biased variance, then scaled by weight[c] and shifted by bias[c]. With running_mean/running_var and
    use_input_stats, those buffers are updated in place (momentum, the batch mean of the per-instance statistics,
    the variance unbiased, as torch); use_input_stats=False normalizes with them instead. ValueError for fewer than
    3 dims."""
    _check_tensor("instance_norm", input)
    if input.ndim < 3:
        raise ValueError(f"instance_norm: expected (N, C, *spatial), got shape {input.shape}")
    axes = tuple(range(2, input.ndim))
    channel = (1, input.shape[1]) + (1,) * (input.ndim - 2)
    x = input.float() if input.dtype == dtypes.float16 else input
    if use_input_stats:
        mean = x.mean(axes, keepdim=True)
        var = x.var(axes, keepdim=True, correction=0)
        if running_mean is not None or running_var is not None:
            count = math.prod(input.shape[2:])
            with Tensor.no_grad():
                if running_mean is not None:
                    batch_mean = mean.detach().mean(0).reshape(-1)
                    running_mean.assign(running_mean * (1 - momentum) + batch_mean * momentum)
                if running_var is not None:
                    unbiased = var.detach().mean(0).reshape(-1) * (count / max(count - 1, 1))
                    running_var.assign(running_var * (1 - momentum) + unbiased * momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm: use_input_stats=False needs running_mean and running_var")
        mean, var = running_mean.reshape(channel), running_var.reshape(channel)
    out = ((x - mean) * (var + eps).rsqrt()).cast(input.dtype)
    if weight is not None:
        out = out * weight.reshape(channel)
    if bias is not None:
        out = out + bias.reshape(channel)
    return out


def rms_norm(input: Tensor, normalized_shape, weight: Optional[Tensor] = None, eps: Optional[float] = None) -> Tensor:
    """torch.nn.functional.rms_norm: x / sqrt(mean(x^2) + eps) over the trailing `normalized_shape` dims, times
    weight; eps=None uses the dtype's machine epsilon (float32's for float16, which is computed in float32).
    ValueError for an input that does not end in normalized_shape."""
    _check_tensor("rms_norm", input)
    shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else tuple(normalized_shape)
    n = len(shape)
    if input.shape[input.ndim - n:] != shape:
        raise ValueError(f"rms_norm: input of shape {input.shape} does not end in {shape}")
    if eps is None:   # float16 is computed in float32 and takes float32's epsilon, as torch does
        eps = float(np.finfo(np.float32 if input.dtype == dtypes.float16 else input.dtype.np).eps) \
            if input.dtype.is_float else 1e-6
    axes = tuple(range(input.ndim - n, input.ndim))
    wide = input.float() if input.dtype == dtypes.float16 else input   # a half square overflows
    out = (wide * (wide.square().mean(axes, keepdim=True) + eps).rsqrt()).cast(input.dtype)
    return out * weight if weight is not None else out


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """torch.nn.functional.bilinear: y[..., o] = sum_ij input1[..., i] weight[o, i, j] input2[..., j] + bias[o],
    for input1 (*, in1), input2 (*, in2) and weight (out, in1, in2). RuntimeError for sizes that do not match."""
    _check_tensor("bilinear", input1)
    if weight.ndim != 3 or input1.shape[-1] != weight.shape[1] or input2.shape[-1] != weight.shape[2] or \
            input1.shape[:-1] != input2.shape[:-1]:
        raise RuntimeError(f"bilinear: inputs {input1.shape} and {input2.shape} do not fit weight {weight.shape}")
    out = Tensor.einsum("...i,oij,...j->...o", input1, weight, input2)
    return out + bias if bias is not None else out


# ---- activations ----
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """torch.nn.functional.prelu: x where x > 0, weight * x elsewhere; weight has 1 element or one per channel
    (dim 1 of the input, dim 0 of a 1-d input). RuntimeError for another number of weights."""
    _check_tensor("prelu", input)
    channels = input.shape[1] if input.ndim >= 2 else 1
    if weight.numel() not in (1, channels):
        raise RuntimeError(f"prelu: {weight.numel()} weights for an input of shape {input.shape} (expected 1 or "
                           f"{channels})")
    w = weight.reshape(()) if weight.numel() == 1 else weight.reshape((channels,) + (1,) * (input.ndim - 2))
    return (input > 0).where(input, w * input)


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """torch.nn.functional.selu: scale * (x for x > 0, alpha * (exp(x) - 1) elsewhere), with torch's alpha and
    scale constants; any shape."""
    _check_tensor("selu", input)
    return input.elu(SELU_ALPHA) * SELU_SCALE


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """torch.nn.functional.threshold: x where x > threshold, else `value`; same dtype; gradient 1 where kept."""
    _check_tensor("threshold", input)
    return (input <= threshold).where(value, input)   # (NaN is kept, like torch)


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """torch.nn.functional.hardshrink: x where |x| > lambd, else 0."""
    _check_tensor("hardshrink", input)
    return ((input >= -lambd) & (input <= lambd)).where(0, input)   # (NaN is kept, like torch)


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """torch.nn.functional.softshrink: x - lambd above lambd, x + lambd below -lambd, 0 between. RuntimeError for
    a negative lambd, like torch."""
    _check_tensor("softshrink", input)
    if lambd < 0:
        raise RuntimeError(f"softshrink: lambda must be greater or equal to 0, but found to be {lambd}")
    return (input > lambd).where(input - lambd, (input < -lambd).where(input + lambd, input * 0))   # NaN stays


def tanhshrink(input: Tensor) -> Tensor:
    """torch.nn.functional.tanhshrink: x - tanh(x)."""
    _check_tensor("tanhshrink", input)
    return input - input.tanh()


# ---- channel-wise (feature) dropout ----
def _feature_dropout(input: Tensor, p: float, training: bool, op: str) -> Tensor:
    """Zero whole features input[i, j, ...] (one draw per index of the first two dims) with probability p and
    scale the rest by 1 / (1 - p), as torch's feature_dropout: an input of at least 2 dims."""
    _check_tensor(op, input)
    if not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")
    if input.ndim < 2:
        raise RuntimeError(f"{op}: feature dropout requires at least 2 dimensions in the input, got shape "
                           f"{input.shape}")
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0
    mask_shape = input.shape[:2] + (1,) * (input.ndim - 2)
    keep = Tensor.rand(*mask_shape, device=input.device) >= p
    return keep.where(input * (1 / (1 - p)), 0)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """torch.nn.functional.dropout1d: zero each channel input[n, c, :] of an (N, C, L) input (or a row c of an
    unbatched (C, L) one) with probability p and scale the rest by 1 / (1 - p), when `training`. Any float dtype.
    RuntimeError for an input that is not 2-d or 3-d, ValueError for p outside [0, 1]."""
    _check_tensor("dropout1d", input)
    if input.ndim not in (2, 3):
        raise RuntimeError(f"dropout1d: expected a 2-d or 3-d input, got shape {input.shape}")
    if input.ndim == 2:
        return _feature_dropout(input.unsqueeze(0), p, training, "dropout1d").squeeze(0)
    return _feature_dropout(input, p, training, "dropout1d")


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """torch.nn.functional.dropout2d: zero each channel input[n, c] of an (N, C, H, W) input with probability p
    and scale the rest by 1 / (1 - p), when `training`. As in torch (which warns), any input of at least 2 dims
    is read as (N, C, ...): a 3-d one drops input[n, c, :], a 2-d one single elements. RuntimeError for fewer than
    2 dims, ValueError for p outside [0, 1]."""
    _check_tensor("dropout2d", input)
    if input.ndim not in (3, 4):
        warnings.warn(f"dropout2d: received a {input.ndim}-d input; dropout2d drops channels of 3-d or 4-d "
                      "inputs (use dropout for element-wise dropout)", stacklevel=2)
    return _feature_dropout(input, p, training, "dropout2d")


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """torch.nn.functional.dropout3d: zero each channel input[n, c] of an (N, C, D, H, W) input (or input[c] of
    an unbatched (C, D, H, W) one) with probability p and scale the rest by 1 / (1 - p), when `training`. As in
    torch (which warns), an input that is not 5-d is read as unbatched: its first dim is the channel one.
    RuntimeError for a 0-d input, ValueError for p outside [0, 1]."""
    _check_tensor("dropout3d", input)
    if input.ndim not in (4, 5):
        warnings.warn(f"dropout3d: received a {input.ndim}-d input; dropout3d drops channels of 4-d or 5-d "
                      "inputs (use dropout for element-wise dropout)", stacklevel=2)
    if input.ndim != 5:
        return _feature_dropout(input.unsqueeze(0), p, training, "dropout3d").squeeze(0)
    return _feature_dropout(input, p, training, "dropout3d")
