"""Pooling and resampling over 1, 2 or 3 spatial dims, as functions (re-exported by `tinyjit.nn.functional`) and
as modules (MaxPool1d/3d, AvgPool1d/3d, AdaptiveAvgPool1d/2d/3d, Upsample).

Max and average pooling read sliding windows as views (`Tensor._windows`) and reduce them. Resampling
(`interpolate`, adaptive average pooling) is separable: along each spatial axis the output is a fixed (out, in)
matrix times the input, built on the host with PyTorch's index and weight formulas (in float32, as PyTorch's CPU
kernels compute them) and contracted with a matmul, so the gradient is the transposed matrix for free.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np

from tinyjit.dtype import dtypes
from tinyjit.helpers import prod
from tinyjit.nn.module import Module
from tinyjit.ops import Op, reduce_identity
from tinyjit.tensor import Tensor



def _ints(value, nd: int, what: str, op: str, low: int) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * nd
    if len(values) == 1 and nd > 1:
        values = values * nd
    if len(values) != nd or any(not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low
                                for v in values):
        kind = "positive" if low > 0 else "non-negative"
        raise RuntimeError(f"{op}: {what} must be a {kind} int or a tuple of {nd}, got {value!r}")
    return tuple(int(v) for v in values)


def _pool_params(x: Tensor, nd: int, kernel_size, stride, padding, dilation, ceil_mode: bool, op: str):
    """Validated (kernel, stride, padding, dilation, out sizes, extra right padding for ceil_mode) per spatial dim,
    with PyTorch's output-size rule: with ceil_mode the last window must start inside the input or left padding."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(x).__name__}")
    if x.ndim not in (nd + 1, nd + 2):
        raise ValueError(f"{op}: expected a {nd + 1}-d (unbatched) or {nd + 2}-d input, got shape {x.shape}")
    k = _ints(kernel_size, nd, "kernel_size", op, 1)
    s = k if stride is None or stride == () or stride == [] else _ints(stride, nd, "stride", op, 1)
    p, d = _ints(padding, nd, "padding", op, 0), _ints(dilation, nd, "dilation", op, 1)
    outs, extra = [], []
    for size, ki, si, pi, di in zip(x.shape[-nd:], k, s, p, d):
        if 2 * pi > di * (ki - 1) + 1:
            raise RuntimeError(f"{op}: padding {p} must be at most half of the effective kernel size (kernel {k}, "
                               f"dilation {d})")
        span = size + 2 * pi - di * (ki - 1) - 1
        out = (-(-span // si) if ceil_mode else span // si) + 1
        if ceil_mode and (out - 1) * si >= size + pi:
            out -= 1
        if span < 0 or out <= 0:
            raise RuntimeError(f"{op}: input of shape {x.shape} is too small for kernel {k} (dilation {d}, padding "
                               f"{p}): the output would be empty")
        outs.append(out)
        extra.append(max((out - 1) * si + di * (ki - 1) + 1 - (size + 2 * pi), 0))
    return k, s, p, d, tuple(outs), tuple(extra)


def _unbatched(x: Tensor, nd: int, fn):
    """Run fn on x with a batch dim added when x has none (PyTorch accepts (C, *spatial))."""
    if x.ndim == nd + 1:
        out = fn(x.unsqueeze(0))
        return tuple(o.squeeze(0) for o in out) if isinstance(out, tuple) else out.squeeze(0)
    return fn(x)


def max_pool(x: Tensor, nd: int, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
             return_indices: bool = False, op: str = "max_pool"):
    """torch.nn.functional.max_pool{nd}d over the last nd dims of (N, C, *spatial) or (C, *spatial); any dtype, kept.
    The gradient goes to the first maximum of each window (row-major), like PyTorch. With `return_indices`, also
    the int64 flat index (into the input's spatial dims) of that maximum."""
    k, s, p, d, out, extra = _pool_params(x, nd, kernel_size, stride, padding, dilation, ceil_mode, op)
    if nd == 2 and not ceil_mode and not return_indices:
        return _unbatched(x, nd, lambda t: t.max_pool2d(k, s, p, d))
    track = return_indices or (x.requires_grad and not Tensor.no_grad_active)
    # with a gradient or indices, several kernels read the windows: from one buffer they all see the same values
    src = x.contiguous() if track else x
    lead = ((0, 0),) * (x.ndim - nd)
    padded = src.pad(lead + tuple((pi, pi + e) for pi, e in zip(p, extra)), value=reduce_identity(Op.RMAX, x.dtype))
    win = padded._windows(k, s, d)
    win = win.reshape(win.shape[:x.ndim] + (prod(k),))      # (..., *out, window)
    best = win.amax(-1)
    if not track:
        return best
    is_best = win == best.unsqueeze(-1)
    if x.dtype.is_float:
        is_best = is_best | (win != win)      # NaN counts as the maximum
    n = win.shape[-1]
    countdown = Tensor.arange(n, 0, -1, dtype=dtypes.int32, device=x.device)
    first = is_best.where(countdown, 0).amax(-1, keepdim=True) == countdown
    values = first.where(win, 0).sum(-1, dtype=x.dtype)
    if not return_indices:
        return values
    where_from = Tensor(_window_sources(x.shape[-nd:], k, s, p, d, out), device=x.device)
    return values, first.where(where_from, 0).sum(-1, dtype=dtypes.int64)


def _window_sources(spatial, k, s, p, d, out) -> np.ndarray:
    """(*out, prod(k)) int64: the flat input index each window element reads (-1 in the padding)."""
    grids = []
    for size, ki, si, pi, di, oi in zip(spatial, k, s, p, d, out):
        pos = np.arange(oi)[:, None] * si - pi + np.arange(ki)[None, :] * di      # (out, k)
        grids.append(np.where((pos >= 0) & (pos < size), pos, -1))
    nd = len(spatial)
    flat = np.zeros(tuple(out) + tuple(k), np.int64)
    valid = np.ones(tuple(out) + tuple(k), bool)
    for axis, (g, size) in enumerate(zip(grids, spatial)):
        shape = [1] * (2 * nd)
        shape[axis], shape[nd + axis] = g.shape
        g = g.reshape(shape)
        flat = flat * size + np.maximum(g, 0)
        valid &= g >= 0
    return np.where(valid, flat, -1).reshape(tuple(out) + (prod(k),))


def avg_pool(x: Tensor, nd: int, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
             count_include_pad: bool = True, divisor_override: Optional[int] = None, op: str = "avg_pool"):
    """torch.nn.functional.avg_pool{nd}d over the last nd dims of (N, C, *spatial) or (C, *spatial). Each window's
    divisor follows PyTorch: the window clipped to the padded input (count_include_pad) or to the input, or
    `divisor_override`. Ints keep their dtype (the mean truncated toward zero); bool raises TypeError."""
    if isinstance(x, Tensor) and x.dtype == dtypes.bool:
        raise TypeError(f"{op}: bool tensors are not supported (like PyTorch); cast to a number dtype first")
    if divisor_override is not None and (not isinstance(divisor_override, numbers.Integral) or divisor_override <= 0):
        raise RuntimeError(f"{op}: divisor_override must be a positive int, got {divisor_override!r}")
    k, s, p, _, out, extra = _pool_params(x, nd, kernel_size, stride, padding, 1, ceil_mode, op)
    if nd == 2 and not ceil_mode and divisor_override is None:
        return _unbatched(x, nd, lambda t: t.avg_pool2d(k, s, p, count_include_pad))
    lead = ((0, 0),) * (x.ndim - nd)
    win = x.pad(lead + tuple((pi, pi + e) for pi, e in zip(p, extra)))._windows(k, s, (1,) * nd)
    axes = tuple(range(-nd, 0))
    if divisor_override is not None:
        divisor = Tensor(float(divisor_override) if x.dtype.is_float else int(divisor_override), device=x.device)
    else:
        counts = np.ones((), np.int64)
        for size, ki, si, pi, oi in zip(x.shape[-nd:], k, s, p, out):
            start = np.arange(oi) * si - pi
            end = np.minimum(start + ki, size + pi)
            if not count_include_pad:
                start, end = np.maximum(start, 0), np.minimum(end, size)
            counts = counts[..., None] * (end - start)
        divisor = Tensor(counts.astype(np.int64 if x.dtype.is_int else x.dtype.np), device=x.device)
    if x.dtype.is_int:
        return win.sum(axes, dtype=dtypes.int64).div(divisor, rounding_mode="trunc").cast(x.dtype)
    total = win.sum(axes, dtype=dtypes.float32 if x.dtype.itemsize < 4 else x.dtype)
    return (total / divisor.cast(total.dtype)).cast(x.dtype)


# ---- separable resampling ----
def _contract(x: Tensor, matrices: list[np.ndarray]) -> Tensor:
    """Apply one (out, in) matrix along each of the last len(matrices) axes of x (None leaves an axis alone)."""
    nd = len(matrices)
    for i, m in enumerate(matrices):
        if m is None:
            continue
        axis = x.ndim - nd + i
        dtype = x.dtype if x.dtype.is_float else dtypes.float32
        mat = Tensor(m.astype(dtype.np).T.copy(), device=x.device)      # (in, out)
        moved = x.transpose(axis, -1) if axis != x.ndim - 1 else x
        y = moved.cast(dtype) @ mat
        x = y.transpose(axis, -1) if axis != x.ndim - 1 else y
    return x


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    m = np.zeros((out, size), np.float64)
    for i in range(out):
        start, end = (i * size) // out, -(-((i + 1) * size) // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def _output_sizes(x: Tensor, nd: int, output_size, op: str) -> tuple[int, ...]:
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * nd
    if len(sizes) != nd:
        raise ValueError(f"{op}: output_size must be an int or {nd} of them, got {output_size!r}")
    sizes = tuple(x.shape[-nd + i] if v is None else v for i, v in enumerate(sizes))
    if any(not isinstance(v, numbers.Integral) or v < 0 for v in sizes):
        raise ValueError(f"{op}: output_size must hold non-negative ints, got {output_size!r}")
    return tuple(int(v) for v in sizes)


def adaptive_avg_pool(x: Tensor, nd: int, output_size, op: str = "adaptive_avg_pool") -> Tensor:
    """torch.nn.functional.adaptive_avg_pool{nd}d: output cell i averages input [floor(i*in/out), ceil((i+1)*in/out))
    along each spatial dim; (N, C, *spatial) or (C, *spatial), float dtypes."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(x).__name__}")
    if x.ndim not in (nd + 1, nd + 2) or any(s == 0 for s in x.shape[-nd:]):
        raise ValueError(f"{op}: expected a non-empty {nd + 1}-d or {nd + 2}-d input, got shape {x.shape}")
    if not x.dtype.is_float:
        raise RuntimeError(f"{op}: not implemented for {x.dtype.name} (float dtypes only, like PyTorch)")
    sizes = _output_sizes(x, nd, output_size, op)
    mats = [None if o == i else _adaptive_matrix(i, o) for i, o in zip(x.shape[-nd:], sizes)]
    return _contract(x, mats)


_MODES = {"nearest": None, "nearest-exact": None, "linear": 1, "bilinear": 2, "trilinear": 3, "area": None}


def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest",
                align_corners: Optional[bool] = None, recompute_scale_factor: Optional[bool] = None,
                antialias: bool = False) -> Tensor:
    """torch.nn.functional.interpolate for (N, C, *spatial) with 1 to 3 spatial dims. Modes: 'nearest',
    'nearest-exact', 'linear' (3-d), 'bilinear' (4-d), 'trilinear' (5-d) and 'area'. Give exactly one of `size` and
    `scale_factor`; align_corners only with the linear modes. Source indices and weights are PyTorch's."""
    x = input
    if not isinstance(x, Tensor):
        raise TypeError(f"interpolate: input must be a Tensor, got {type(x).__name__}")
    if mode not in _MODES:
        raise NotImplementedError(f"interpolate: mode {mode!r} is not supported (choose from {', '.join(_MODES)})")
    nd = x.ndim - 2
    if nd not in (1, 2, 3):
        raise ValueError(f"interpolate: expected a 3-d, 4-d or 5-d input (N, C, *spatial), got shape {x.shape}")
    if _MODES[mode] is not None and _MODES[mode] != nd:
        raise ValueError(f"interpolate: mode {mode!r} needs a {_MODES[mode] + 2}-d input, got shape {x.shape}")
    if align_corners is not None and _MODES[mode] is None:
        raise ValueError(f"interpolate: align_corners only applies to the linear modes, not {mode!r}")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    spatial = x.shape[2:]
    if size is not None:
        out = _output_sizes(x, nd, size, "interpolate")
        scales = [None] * nd
    else:
        factors = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * nd
        if len(factors) != nd or any(not isinstance(f, numbers.Real) or f <= 0 for f in factors):
            raise ValueError(f"interpolate: scale_factor must be a positive number or {nd} of them, got "
                             f"{scale_factor!r}")
        out = tuple(int(math.floor(i * float(f))) for i, f in zip(spatial, factors))
        scales = [None] * nd if recompute_scale_factor else [float(f) for f in factors]
    if any(o <= 0 for o in out):
        raise ValueError(f"interpolate: the output size {out} must be positive (input {x.shape})")
    if mode == "area":
        return adaptive_avg_pool(x, nd, out, "interpolate")
    mats = [_resample_matrix(i, o, sc, mode, bool(align_corners)) for i, o, sc in zip(spatial, out, scales)]
    if mode.startswith("nearest") and not x.dtype.is_float:   # ints and bools: pick, never multiply
        for i, m in enumerate(mats):
            axis = 2 + i
            pick = Tensor(np.argmax(m, axis=1).astype(np.int32), device=x.device)
            x = _pick_along(x, axis, pick)
        return x
    return _contract(x, mats).cast(x.dtype)


def _pick_along(x: Tensor, axis: int, index: Tensor) -> Tensor:
    """x with axis `axis` replaced by x[..., index, ...] (index: 1-d int tensor)."""
    onehot = index.unsqueeze(-1) == Tensor.arange(x.shape[axis], dtype=dtypes.int32, device=x.device)
    moved = x.transpose(axis, -1).unsqueeze(-2)                       # (..., 1, in)
    picked = onehot.where(moved, Tensor.zeros((), dtype=x.dtype, device=x.device)).sum(-1).cast(x.dtype)
    return picked.transpose(axis, -1)      # one hit per row: the sum is the picked value


def _resample_matrix(size: int, out: int, scale: Optional[float], mode: str, align_corners: bool) -> np.ndarray:
    m = np.zeros((out, size), np.float64)
    dst = np.arange(out, dtype=np.float32)
    # PyTorch's area_pixel_compute_scale: 1/scale_factor when one was given, else in/out
    ratio = np.float32(1.0 / scale if scale is not None and scale > 0 else size / out)
    if mode in ("nearest", "nearest-exact"):
        offset = np.float32(0.5) if mode == "nearest-exact" else np.float32(0.0)
        src = np.minimum(np.floor((dst + offset) * ratio).astype(np.int64), size - 1)
        m[np.arange(out), src] = 1.0
        return m
    if align_corners:
        ratio = np.float32((size - 1) / (out - 1)) if out > 1 else np.float32(0.0)
        src = ratio * dst
    else:
        src = np.maximum(ratio * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, size - 1)
    i1 = np.where(i0 < size - 1, i0 + 1, i0)
    lam1 = (src - i0).astype(np.float32)
    lam0 = np.float32(1.0) - lam1
    rows = np.arange(out)
    np.add.at(m, (rows, i0), lam0)
    np.add.at(m, (rows, i1), lam1)
    return m


# ---- modules ----
def _check_padding(module: str, nd: int, kernel_size, padding, dilation) -> None:
    """At construction, like PyTorch's modules: sizes are ints and padding at most half the (dilated) kernel."""
    k, p = _ints(kernel_size, nd, "kernel_size", module, 1), _ints(padding, nd, "padding", module, 0)
    d = _ints(dilation, nd, "dilation", module, 1)
    if any(2 * pi > di * (ki - 1) + 1 for pi, ki, di in zip(p, k, d)):
        raise ValueError(f"{module}: padding {padding} must be at most half the kernel size {kernel_size}")


class _MaxPoolNd(Module):
    _nd = 2

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        _check_padding(type(self).__name__, self._nd, kernel_size, padding, dilation)
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, x: Tensor):
        return max_pool(x, self._nd, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                        self.return_indices, type(self).__name__)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool2d(_MaxPoolNd):
    """Max pooling over (N, C, H, W) or (C, H, W)."""
    _nd = 2


class MaxPool1d(_MaxPoolNd):
    """Max pooling over (N, C, L)."""
    _nd = 1


class MaxPool3d(_MaxPoolNd):
    """Max pooling over (N, C, D, H, W)."""
    _nd = 3


class _AvgPoolNd(Module):
    _nd = 2

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: Optional[int] = None):
        super().__init__()
        _check_padding(type(self).__name__, self._nd, kernel_size, padding, 1)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def forward(self, x: Tensor) -> Tensor:
        return avg_pool(x, self._nd, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                        self.count_include_pad, self.divisor_override, type(self).__name__)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool1d(_AvgPoolNd):
    """Average pooling over (N, C, L) (PyTorch's AvgPool1d has no divisor_override)."""
    _nd = 1

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)


class AvgPool2d(_AvgPoolNd):
    """Average pooling over (N, C, H, W) or (C, H, W)."""
    _nd = 2


class AvgPool3d(_AvgPoolNd):
    """Average pooling over (N, C, D, H, W)."""
    _nd = 3


class _AdaptiveAvgPoolNd(Module):
    _nd = 2

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return adaptive_avg_pool(x, self._nd, self.output_size, type(self).__name__)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    _nd = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    _nd = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    _nd = 3


class Upsample(Module):
    """`interpolate` as a module: Upsample(size=None, scale_factor=None, mode='nearest', align_corners=None)."""

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners: Optional[bool] = None,
                 recompute_scale_factor: Optional[bool] = None):
        super().__init__()
        if mode not in _MODES:
            raise NotImplementedError(f"Upsample: mode {mode!r} is not supported (choose from {', '.join(_MODES)})")
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, x: Tensor) -> Tensor:
        return interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners,
                           self.recompute_scale_factor)

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"
