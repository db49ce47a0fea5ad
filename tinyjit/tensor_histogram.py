"""Counting ops of Tensor with torch's names: bincount and histc.

Both count with a one-hot compare of each value with arange(bins) and a sum over the values, so the counting
stays lazy and fuses into one reduce (O(values * bins) compares). What decides the result's length or the bins'
range from the data is read on the host, as torch synchronizes for it: bincount's largest value (and its
smallest, to refuse a negative one at the call), and histc's min and max when the range given is empty.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from tinyjit.dtype import dtypes
from tinyjit.index_check import wide_enough
from tinyjit.tensor_base import TensorBase

if TYPE_CHECKING:
    from typing_extensions import Self

# the input dtypes torch's bincount takes (its CPU kernel has none for bool, uint16/32/64 or floats)
BINCOUNT_DTYPES = ("int8", "uint8", "int16", "int32", "int64")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


class HistogramMixin(TensorBase):
    def _extrema(self) -> tuple:
        """(min, max) of a non-empty tensor as Python numbers: one small reduce kernel and a read back."""
        both = self.amin().reshape(1).cat(self.amax().reshape(1))
        low, high = both.numpy().tolist()
        return low, high

    def bincount(self, weights=None, minlength: int = 0) -> Self:
        """torch.bincount: for a 1-D tensor of non-negative ints, out[v] is how many entries equal v (with
        `weights`, a 1-D tensor of self's length, the sum of their weights), for v in 0..max(self, minlength - 1).
        Dtypes as torch's: int64 counts; weights' sums are float32 for float32 weights, float64 for any other
        weights dtype. An empty input gives int64 zeros of length minlength, with weights too (as torch).
        The result's length depends on the largest value, so self's min and max are computed and read back at
        the call (torch synchronizes too); the counting itself is a lazy one-hot sum, differentiable with
        respect to the weights (torch's bincount has no gradient formula and raises on backward).
        Errors as torch: NotImplementedError (a RuntimeError) for an input dtype other than int8, uint8, int16,
        int32, int64; RuntimeError for an input that is not 1-D, a negative value, minlength < 0, or weights
        that are not 1-D of self's length; TypeError for a minlength that is not an int."""
        if self.dtype.name not in BINCOUNT_DTYPES:
            raise NotImplementedError(f"bincount: not implemented for {self.dtype.name} input; it takes a 1-D "
                                      f"tensor of non-negative {', '.join(BINCOUNT_DTYPES)} values")
        if not _is_int(minlength):
            raise TypeError(f"bincount(): argument 'minlength' must be int, not {type(minlength).__name__}")
        if minlength < 0:
            raise RuntimeError(f"bincount: minlength should be >= 0, got {minlength}")
        if self.ndim != 1:
            raise RuntimeError(f"bincount: only supports 1-d non-negative integral inputs, got shape {self.shape}")
        if weights is not None:
            if not isinstance(weights, TensorBase):
                raise TypeError(f"bincount(): argument 'weights' must be Tensor, not {type(weights).__name__}")
            self._same_device("bincount", weights)
            if weights.ndim != 1 or weights.shape[0] != self.shape[0]:
                raise RuntimeError(f"bincount: weights should be 1-d and have the same length as input, got "
                                   f"weights of shape {weights.shape} for input of shape {self.shape}")
        if self.shape[0] == 0:
            return self.zeros(int(minlength), dtype=dtypes.int64, device=self.device)
        low, high = self._extrema()
        if low < 0:
            raise RuntimeError(f"bincount: only supports 1-d non-negative integral inputs, got the value {low}")
        length = max(int(minlength), int(high) + 1)
        values = wide_enough(self, length)
        onehot = values.unsqueeze(-1) == self.arange(length, dtype=values.dtype, device=self.device)  # (n, length)
        if weights is None:
            return onehot.sum(0, dtype=dtypes.int64)
        weights = weights if weights.dtype == dtypes.float32 else weights.cast(dtypes.float64)
        return onehot.where(weights.unsqueeze(-1), 0).sum(0, dtype=weights.dtype)

    def histc(self, bins: int = 100, min=0, max=0) -> Self:   # torch's argument names
        """torch.histc: the histogram of self's values (any shape, flattened) in `bins` equal-width bins over
        [min, max], of self's (float) dtype; values outside the range and NaN are not counted, a value equal to
        max goes into the last bin. When min == max the range is the data's (its min and max, computed and read
        back at the call, as torch does), widened by 1 on each side if that is empty too (an empty input gives
        zeros over [min - 1, max + 1]). A value's bin is int((x - min) * bins / (max - min)) computed in self's
        dtype, as torch's CPU kernel does, so values on a bin edge land where torch's do. Not differentiable
        (the result is detached, as torch's). Errors as torch: TypeError for bins that are not an int;
        NotImplementedError (a RuntimeError) for an int or bool input; RuntimeError for bins <= 0, a range that
        is not finite (also a NaN in the data when the data decides it) or min > max."""
        if not _is_int(bins):
            raise TypeError(f"histc(): argument 'bins' must be int, not {type(bins).__name__}")
        if not self.dtype.is_float:
            raise NotImplementedError(f"histc: not implemented for {self.dtype.name} input; it takes a float "
                                      f"tensor")
        if bins <= 0:
            raise RuntimeError(f"histc: bins must be > 0, but got {bins}")
        low, high = (float(v.item()) if isinstance(v, TensorBase) else float(v) for v in (min, max))
        x = self.detach().reshape(-1)
        if low == high and x.numel() > 0:
            low, high = (float(v) for v in x._extrema())
        if low == high:
            low, high = low - 1, high + 1
        if not (math.isfinite(low) and math.isfinite(high)):
            raise RuntimeError(f"histc: range of [{low}, {high}] is not finite")
        if low > high:
            raise RuntimeError(f"histc: max must be larger than min, got min {low} and max {high}")
        scalar = np.dtype(self.dtype.np).type   # the edges in self's dtype, as torch's kernel holds them
        low_edge, high_edge = scalar(low), scalar(high)
        width = float(high_edge - low_edge)   # (a subtraction in self's dtype, rounded as torch's)
        inside = (x >= float(low_edge)) & (x <= float(high_edge))   # False for NaN
        position = (inside.where(x, float(low_edge)) - float(low_edge)) * int(bins) / width
        slot = position.cast(dtypes.int32).minimum(int(bins) - 1)   # max itself goes into the last bin
        hits = (slot.unsqueeze(-1) == self.arange(int(bins), dtype=dtypes.int32, device=self.device)) & \
            inside.unsqueeze(-1)
        return hits.sum(0).cast(self.dtype)
