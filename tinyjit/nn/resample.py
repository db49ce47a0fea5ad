"""Resampling: `interpolate` (torch.nn.functional.interpolate, re-exported by `tinyjit.nn.functional`) and the
modules Upsample, UpsamplingNearest2d and UpsamplingBilinear2d.

Every mode is separable: along each spatial axis the output is a fixed (out, in) matrix times the input, built on
the host with PyTorch's source-index and weight formulas (in float32, as PyTorch's CPU kernels compute them) and
contracted with a matmul (`pooling._contract`), so the gradient is the transposed matrix for free and a resize
is a few small matmuls that fuse like any other.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np

from tinyjit.dtype import dtypes
from tinyjit.nn.module import Module
from tinyjit.nn.pooling import _contract, _output_sizes, adaptive_avg_pool
from tinyjit.tensor import Tensor

# mode -> the number of spatial dims it needs (None: any of 1 to 3)
_MODES = {"nearest": None, "nearest-exact": None, "linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3,
          "area": None}
_INTERPOLATING = ("linear", "bilinear", "bicubic", "trilinear")   # the modes that take align_corners
_CUBIC_A = -0.75            # the cubic convolution's parameter in PyTorch's bicubic mode
_CUBIC_A_ANTIALIAS = -0.5   # and in its antialiased bicubic (PIL's)


def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest",
                align_corners: Optional[bool] = None, recompute_scale_factor: Optional[bool] = None,
                antialias: bool = False) -> Tensor:
    """torch.nn.functional.interpolate for (N, C, *spatial) with 1 to 3 spatial dims. Modes: 'nearest',
    'nearest-exact', 'linear' (3-d input), 'bilinear' and 'bicubic' (4-d), 'trilinear' (5-d) and 'area'. Give
    exactly one of `size` and `scale_factor`; `align_corners` only with the interpolating modes; `antialias` only
    with bilinear and bicubic (it widens the filter when downsampling, as PyTorch's, PIL-style). Source indices
    and weights are PyTorch's; float inputs keep their dtype, ints work in the nearest modes. TypeError for a
    non-Tensor, NotImplementedError for an unknown mode, ValueError for a wrong rank or argument."""
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
    if align_corners is not None and mode not in _INTERPOLATING:
        raise ValueError(f"interpolate: align_corners only applies to the modes {', '.join(_INTERPOLATING)}, not "
                         f"{mode!r}")
    if antialias and mode not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolate: antialias is restricted to the bilinear and bicubic modes and a 4-d input, "
                         f"got mode {mode!r}")
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
    if antialias:
        mats = [_antialias_matrix(i, o, sc, mode, bool(align_corners)) for i, o, sc in zip(spatial, out, scales)]
    else:
        mats = [_resample_matrix(i, o, sc, mode, bool(align_corners)) for i, o, sc in zip(spatial, out, scales)]
    if mode.startswith("nearest") and not x.dtype.is_float:   # ints and bools: pick, never multiply
        for i, m in enumerate(mats):
            axis = 2 + i
            pick = Tensor(np.argmax(m, axis=1).astype(np.int32), device=x.device)
            x = _pick_along(x, axis, pick)
        return x
    if not x.dtype.is_float:
        raise RuntimeError(f"interpolate: mode {mode!r} is not implemented for {x.dtype.name} (float dtypes only)")
    return _contract(x, mats).cast(x.dtype)


def _pick_along(x: Tensor, axis: int, index: Tensor) -> Tensor:
    """x with axis `axis` replaced by x[..., index, ...] (index: 1-d int tensor)."""
    onehot = index.unsqueeze(-1) == Tensor.arange(x.shape[axis], dtype=dtypes.int32, device=x.device)
    moved = x.transpose(axis, -1).unsqueeze(-2)                       # (..., 1, in)
    picked = onehot.where(moved, Tensor.zeros((), dtype=x.dtype, device=x.device)).sum(-1).cast(x.dtype)
    return picked.transpose(axis, -1)      # one hit per row: the sum is the picked value


def _source_scale(size: int, out: int, scale: Optional[float], align_corners: bool) -> np.float32:
    """PyTorch's area_pixel_compute_scale: input step per output step."""
    if align_corners:
        return np.float32((size - 1) / (out - 1)) if out > 1 else np.float32(0.0)
    return np.float32(1.0 / scale if scale is not None and scale > 0 else size / out)


def _cubic_near(t: np.ndarray, a: float) -> np.ndarray:
    """The cubic convolution kernel for |t| <= 1 (PyTorch's cubic_convolution1)."""
    a = np.float32(a)
    return ((a + 2) * t - (a + 3)) * t * t + 1


def _cubic_far(t: np.ndarray, a: float) -> np.ndarray:
    """The cubic convolution kernel for 1 < |t| < 2 (PyTorch's cubic_convolution2)."""
    a = np.float32(a)
    return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a


def _resample_matrix(size: int, out: int, scale: Optional[float], mode: str, align_corners: bool) -> np.ndarray:
    """(out, size) weights of one axis for the nearest, linear and cubic modes (PyTorch's index formulas)."""
    m = np.zeros((out, size), np.float64)
    dst = np.arange(out, dtype=np.float32)
    rows = np.arange(out)
    ratio = _source_scale(size, out, scale, False)
    if mode in ("nearest", "nearest-exact"):
        offset = np.float32(0.5) if mode == "nearest-exact" else np.float32(0.0)
        src = np.minimum(np.floor((dst + offset) * ratio).astype(np.int64), size - 1)
        m[rows, src] = 1.0
        return m
    if align_corners:
        src = _source_scale(size, out, scale, True) * dst
    else:
        src = ratio * (dst + np.float32(0.5)) - np.float32(0.5)
        if mode != "bicubic":   # the linear modes clamp the source to the first pixel, the cubic one does not
            src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), size - 1)
    if mode == "bicubic":
        # four taps at i0-1 .. i0+2 (indices clamped to the edge), PyTorch's get_cubic_upsample_coefficients
        t = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
        one = np.float32(1.0)
        taps = (_cubic_far(t + one, _CUBIC_A), _cubic_near(t, _CUBIC_A), _cubic_near(one - t, _CUBIC_A),
                _cubic_far(np.float32(2.0) - t, _CUBIC_A))
        for k, weight in enumerate(taps):
            np.add.at(m, (rows, np.clip(i0 - 1 + k, 0, size - 1)), weight)
        return m
    i1 = np.where(i0 < size - 1, i0 + 1, i0)
    lam1 = (src - i0).astype(np.float32)
    lam0 = np.float32(1.0) - lam1
    np.add.at(m, (rows, i0), lam0)
    np.add.at(m, (rows, i1), lam1)
    return m


def _antialias_matrix(size: int, out: int, scale: Optional[float], mode: str, align_corners: bool) -> np.ndarray:
    """(out, size) weights of one axis for antialiased bilinear / bicubic, PyTorch's _compute_weights_aa: when
    downsampling by s the filter (triangle, or cubic with a = -0.5) is stretched by s, so each output averages
    about s times as many inputs; the weights of a row are normalized to sum to 1."""
    support_base = 1.0 if mode == "bilinear" else 2.0      # half the filter's width at scale 1
    s = _source_scale(size, out, scale, align_corners)
    support = np.float32(support_base) * s if s >= 1 else np.float32(support_base)
    stretch = np.float32(1.0) / s if s >= 1 else np.float32(1.0)

    def kernel(t: np.ndarray) -> np.ndarray:
        t = np.abs(t)
        if mode == "bilinear":
            return np.where(t < 1, 1 - t, 0).astype(np.float32)
        return np.where(t < 1, _cubic_near(t, _CUBIC_A_ANTIALIAS),
                        np.where(t < 2, _cubic_far(t, _CUBIC_A_ANTIALIAS), 0)).astype(np.float32)

    m = np.zeros((out, size), np.float64)
    half = np.float32(0.5)
    for i in range(out):
        center = s * np.float32(i + 0.5)
        first = max(int(center - support + half), 0)      # (int() truncates toward zero, as PyTorch's cast)
        last = min(int(center + support + half), size)
        weights = kernel((np.arange(first, last, dtype=np.float32) - center + half) * stretch)
        total = weights.sum(dtype=np.float32)
        m[i, first:last] = weights / total if total != 0 else weights
    return m


class Upsample(Module):
    """torch.nn.Upsample: `interpolate` as a module, Upsample(size=None, scale_factor=None, mode='nearest',
    align_corners=None, recompute_scale_factor=None); the same shapes, dtypes and errors (raised at the call,
    except an unknown mode: NotImplementedError at construction)."""

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
        factor = self.scale_factor   # (shown as the floats torch stores)
        factor = tuple(float(f) for f in factor) if isinstance(factor, (tuple, list)) else \
            None if factor is None else float(factor)
        what = f"size={self.size!r}" if self.size is not None else f"scale_factor={factor!r}"
        return f"{what}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    """torch.nn.UpsamplingNearest2d: Upsample(size, scale_factor, mode='nearest') of a 4-d input."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    """torch.nn.UpsamplingBilinear2d: Upsample(size, scale_factor, mode='bilinear', align_corners=True)."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)
