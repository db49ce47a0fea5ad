"""Pooling over 1, 2 or 3 spatial dims, as functions (re-exported by `tinyjit.nn.functional`) and as modules
(MaxPool1d/2d/3d, AvgPool1d/2d/3d, AdaptiveAvgPool1d/2d/3d).

Max and average pooling read sliding windows as views (`Tensor._windows`) and reduce them. Adaptive average
pooling is separable, like resampling (tinyjit.nn.resample): along each spatial axis the output is a fixed
(out, in) matrix times the input, built on the host with PyTorch's window bounds and contracted with a matmul
(`_contract`), so the gradient is the transposed matrix for free.
"""
from __future__ import annotations

import numbers
from typing import Callable, Optional

import numpy as np

from tinyjit.dtype import dtypes
from tinyjit.helpers import prod
from tinyjit.nn.module import Module
from tinyjit.ops import Op, reduce_identity
from tinyjit.tensor import Tensor
from tinyjit.tensor_nn import _first_maximum



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
    sources = _window_sources(x.shape[-nd:], k, s, p, d, out)
    inside = Tensor(sources >= 0, device=x.device) if (sources < 0).any() else None
    first = _first_maximum(win, best, inside)
    values = first.where(win, 0).sum(-1, dtype=x.dtype)
    if not return_indices:
        return values
    return values, first.where(Tensor(sources, device=x.device), 0).sum(-1, dtype=dtypes.int64)


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


# ---- modules ----
def _check_padding(module: str, nd: int, kernel_size, padding, dilation) -> None:
    """At construction, like PyTorch's modules: sizes are ints and padding at most half the (dilated) kernel."""
    k, p = _ints(kernel_size, nd, "kernel_size", module, 1), _ints(padding, nd, "padding", module, 0)
    d = _ints(dilation, nd, "dilation", module, 1)
    if any(2 * pi > di * (ki - 1) + 1 for pi, ki, di in zip(p, k, d)):
        raise ValueError(f"{module}: padding {padding} must be at most half the kernel size {kernel_size}")


class _PoolNd(Module):
    """The pooling modules: the constructor stores torch's arguments as attributes; forward passes those named in
    `_arguments` to `_pool(x, nd, ...)`, extra_repr shows those in `_shown`."""
    _nd = 2
    _pool: Callable        # max_pool, avg_pool or adaptive_avg_pool (a staticmethod)
    _arguments: tuple[str, ...] = ()
    _shown: tuple[str, ...] = ()

    def forward(self, x: Tensor):
        return type(self)._pool(x, self._nd, *(getattr(self, name) for name in self._arguments),
                                op=type(self).__name__)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name in self._shown)


class _MaxPoolNd(_PoolNd):
    _pool = staticmethod(max_pool)
    _arguments = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    _shown = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        _check_padding(type(self).__name__, self._nd, kernel_size, padding, dilation)
        # (torch stores the default stride as kernel_size: it is what extra_repr and a reader of .stride see)
        self.kernel_size, self.stride = kernel_size, kernel_size if stride is None else stride
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode


class MaxPool1d(_MaxPoolNd):
    """torch.nn.MaxPool1d: the maximum of each window of (N, C, L) or (C, L); any dtype, kept. Arguments, output
    size ((L + 2*padding - dilation*(k-1) - 1) / stride + 1, floored or with ceil_mode ceiled), return_indices
    and errors as F.max_pool1d; ValueError at construction for padding over half the kernel."""
    _nd = 1


class MaxPool2d(_MaxPoolNd):
    """torch.nn.MaxPool2d: max pooling of (N, C, H, W) or (C, H, W), as MaxPool1d per spatial dim (indices are
    flat positions h * W + w)."""
    _nd = 2


class MaxPool3d(_MaxPoolNd):
    """torch.nn.MaxPool3d: max pooling of (N, C, D, H, W) or (C, D, H, W), as MaxPool1d per spatial dim."""
    _nd = 3


class _AvgPoolNd(_PoolNd):
    _pool = staticmethod(avg_pool)
    _arguments = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
    _shown = ("kernel_size", "stride", "padding")

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: Optional[int] = None):
        super().__init__()
        _check_padding(type(self).__name__, self._nd, kernel_size, padding, 1)
        self.kernel_size, self.stride = kernel_size, kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override


class AvgPool1d(_AvgPoolNd):
    """torch.nn.AvgPool1d: the mean of each window of (N, C, L) or (C, L) (no divisor_override, as PyTorch's).
    Floats keep their dtype, ints truncate the mean, bool raises TypeError; sizes and errors as F.avg_pool1d."""
    _nd = 1

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)
        # torch's AvgPool1d (alone among the pools) keeps its sizes as 1-tuples
        self.kernel_size, self.stride, self.padding = (_ints(v, 1, name, "AvgPool1d", 0) for v, name in
                                                       ((self.kernel_size, "kernel_size"), (self.stride, "stride"),
                                                        (self.padding, "padding")))


class AvgPool2d(_AvgPoolNd):
    """torch.nn.AvgPool2d: average pooling of (N, C, H, W) or (C, H, W), as AvgPool1d per spatial dim, with
    divisor_override."""
    _nd = 2


class AvgPool3d(_AvgPoolNd):
    """torch.nn.AvgPool3d: average pooling of (N, C, D, H, W) or (C, D, H, W), as AvgPool2d."""
    _nd = 3


class _AdaptiveAvgPoolNd(_PoolNd):
    _pool = staticmethod(adaptive_avg_pool)
    _arguments = _shown = ("output_size",)

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """torch.nn.AdaptiveAvgPool1d: (N, C, L) or (C, L) averaged to length output_size, cell i over input
    [floor(i*L/out), ceil((i+1)*L/out)); float dtypes only (RuntimeError otherwise)."""
    _nd = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """torch.nn.AdaptiveAvgPool2d: (N, C, H, W) or (C, H, W) averaged to output_size (an int or a pair; None
    keeps that dim), as AdaptiveAvgPool1d per dim."""
    _nd = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """torch.nn.AdaptiveAvgPool3d: (N, C, D, H, W) or (C, D, H, W) averaged to output_size, as
    AdaptiveAvgPool2d."""
    _nd = 3
