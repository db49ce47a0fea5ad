"""Ordering ops of Tensor: sort, argsort, topk, kthvalue, unique, multinomial and randperm (torch's names,
arguments and results).

Sorting is lazy and shape-static: along a dim of size n, each element's rank is counted by comparing it with every
other element (an (n, n) compare-and-sum, fused into one reduce kernel), and the sorted values and indices are
picked with a one-hot of the ranks (another (n, n) reduce). That is O(n^2) work per row, which suits the sizes
sort is used on in models (top-k over classes, a few thousand items); it is stable (ties keep their order), and NaN
sorts as the largest value, like torch. Gradients flow through the picked values (to the positions they came
from, as torch's sort). `unique` has a data-dependent shape, so it realizes its input and is computed on the host.
"""
from __future__ import annotations

import math
from collections import namedtuple
from typing import TYPE_CHECKING, Optional

import numpy as np

from tinyjit.dtype import dtypes
from tinyjit.tensor_base import TensorBase
from tinyjit.tensor_movement import _axis

if TYPE_CHECKING:
    from typing_extensions import Self

# torch.return_types.sort / topk / kthvalue
SortResult = namedtuple("sort", ("values", "indices"))
TopkResult = namedtuple("topk", ("values", "indices"))
KthvalueResult = namedtuple("kthvalue", ("values", "indices"))


def _before(a: TensorBase, b: TensorBase, descending: bool) -> TensorBase:
    """a sorts strictly before b (NaN is the largest value)."""
    first, second = (b, a) if descending else (a, b)
    if not a.dtype.is_float:
        return first < second
    return (first < second) | (~first.isnan() & second.isnan())


def _same(a: TensorBase, b: TensorBase) -> TensorBase:
    return (a == b) | (a.isnan() & b.isnan()) if a.dtype.is_float else a == b


class SortMixin(TensorBase):
    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> SortResult:
        """torch.sort: (values, indices) along `dim`, ascending unless `descending`. Always stable (equal values
        keep their order; `stable` is accepted for torch's signature); NaN is the largest value. Indices are
        int64. O(n^2) compares per row of n (see the module docstring)."""
        if self.ndim == 0:   # a 0-d tensor sorts along its dim 0 or -1, like torch
            if dim not in (0, -1):
                raise IndexError(f"sort: dim {dim} is out of range for a 0-d tensor")
            return SortResult(self * 1 if self.dtype.is_float else self,
                              self.zeros((), dtype=dtypes.int64, device=self.device))
        d = _axis(self, dim, "sort")
        x = self.transpose(d, -1) if d != self.ndim - 1 else self
        n = x.shape[-1]
        if n == 0:
            empty = self.zeros(*self.shape, dtype=dtypes.int64, device=self.device)
            return SortResult(self * 1 if self.dtype.is_float else self, empty)
        if self.dtype.is_float and self.requires_grad and not self.no_grad_active:
            x = x.contiguous()   # every kernel below must see the same values (a recomputed producer may round)
        position = self._index_range(n, dtypes.int32 if n < 2 ** 31 else dtypes.int64, self.device)
        xi, xj = x.unsqueeze(-1), x.unsqueeze(-2)          # element i along dim -2, element j along dim -1
        earlier = position.reshape(1, n) < position.reshape(n, 1)          # j < i
        rank = (_before(xj, xi, descending) | (_same(xj, xi) & earlier)).sum(-1)   # (..., n): the place of i
        rank = rank.cast(position.dtype)
        picks = rank.unsqueeze(-2) == position.reshape(n, 1)               # [r, i]: element i goes to place r
        values = picks.where(x.unsqueeze(-2), 0).sum(-1, dtype=x.dtype if x.dtype.is_float else None).cast(x.dtype)
        indices = picks.where(position.cast(dtypes.int64).reshape(1, n), 0).sum(-1)
        if d != self.ndim - 1:
            values, indices = values.transpose(d, -1), indices.transpose(d, -1)
        return SortResult(values, indices)

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Self:
        """torch.argsort: the indices that sort `dim` (int64, stable)."""
        return self.sort(dim, descending, stable).indices

    def msort(self) -> Self:
        """torch.msort: sorted along dim 0."""
        return self.sort(0).values

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> TopkResult:
        """torch.topk: the k largest (smallest unless `largest`) values along `dim` and their indices, in sorted
        order (also when sorted=False). RuntimeError when k is outside [0, size of dim]."""
        d = _axis(self, dim, "topk") if self.ndim else 0
        size = self.shape[d] if self.ndim else 1
        if not isinstance(k, (int, np.integer)) or not 0 <= k <= size:
            raise RuntimeError(f"topk: k ({k}) is out of range for dimension {dim} of size {size} (shape "
                               f"{self.shape})")
        values, indices = self.sort(d, descending=largest)
        if not self.ndim:
            return TopkResult(values, indices)
        window = tuple((0, k) if a == d else None for a in range(self.ndim))
        return TopkResult(values.shrink(window), indices.shrink(window))

    def kthvalue(self, k: int, dim: int = -1, keepdim: bool = False) -> KthvalueResult:
        """torch.kthvalue: the k-th smallest value along `dim` (k counts from 1) and its index. RuntimeError when
        k is outside [1, size of dim]."""
        d = _axis(self, dim, "kthvalue") if self.ndim else 0
        size = self.shape[d] if self.ndim else 1
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= size:
            raise RuntimeError(f"kthvalue: k ({k}) is out of range for dimension {dim} of size {size} (shape "
                               f"{self.shape})")
        values, indices = self.sort(d)
        if not self.ndim:
            return KthvalueResult(values, indices)
        window = tuple((k - 1, k) if a == d else None for a in range(self.ndim))
        values, indices = values.shrink(window), indices.shrink(window)
        if not keepdim:
            values, indices = values.squeeze(d), indices.squeeze(d)
        return KthvalueResult(values, indices)

    def unique(self, sorted: bool = True, return_inverse: bool = False, return_counts: bool = False,
               dim: Optional[int] = None):
        """torch.unique: the distinct values (always sorted, as torch does on the CPU), with the index of each
        input element in them (`return_inverse`, int64, the input's shape) and how often each occurs
        (`return_counts`, int64). With `dim`, the distinct slices along it. Realizes the input: the size of
        the result depends on the values. No gradient (like torch)."""
        arr = self.numpy()
        if dim is None:
            # each NaN is its own value, as in torch (numpy would merge them)
            values, inverse, counts = np.unique(arr, return_inverse=True, return_counts=True, equal_nan=False)
            inverse = inverse.reshape(self.shape)
        else:
            d = _axis(self, dim, "unique")
            values, inverse, counts = np.unique(arr, return_inverse=True, return_counts=True, axis=d)
            inverse = inverse.reshape(-1)
        out = [self._new(values.astype(self.dtype.np), device=self.device)]
        if return_inverse:
            out.append(self._new(inverse.astype(np.int64), device=self.device))
        if return_counts:
            out.append(self._new(counts.astype(np.int64), device=self.device))
        return out[0] if len(out) == 1 else tuple(out)

    def multinomial(self, num_samples: int, replacement: bool = False) -> Self:
        """torch.multinomial: `num_samples` category indices (int64) per row of a 1-d or 2-d tensor of
        non-negative weights (not necessarily summing to 1), drawn on the device from Tensor.manual_seed's
        generator. With replacement: by inverting the cumulative weights at uniform draws; without: the
        num_samples largest of log(w) + Gumbel noise (a category of weight 0 is drawn only when nothing else
        is left). As torch: TypeError for a non-int num_samples; RuntimeError for a bad shape or dtype,
        num_samples <= 0 or (without replacement) more than the categories, and for weights holding inf, NaN or
        a negative value or a row summing to 0 (checked when the samples are computed, see index_check)."""
        from tinyjit.index_check import check_values
        if self.ndim not in (1, 2) or not self.dtype.is_float:
            raise RuntimeError(f"multinomial: the weights must be a 1-d or 2-d float tensor, got {self.dtype.name} "
                               f"of shape {self.shape}")
        n = self.shape[-1]
        if not isinstance(num_samples, (int, np.integer)) or isinstance(num_samples, bool):
            raise TypeError(f"multinomial: num_samples must be an int, got {type(num_samples).__name__}")
        if num_samples <= 0:
            raise RuntimeError(f"multinomial: num_samples must be positive, got {num_samples}")
        if n == 0:
            raise RuntimeError("multinomial: the weights have no categories")
        if not replacement and num_samples > n:
            raise RuntimeError(f"multinomial: cannot sample {num_samples} > {n} categories without replacement")
        w = (self if self.ndim == 2 else self.unsqueeze(0)).float()
        rows = w.shape[0]
        if replacement:
            cdf = w.cumsum(1)
            draws = self.rand(rows, num_samples, device=self.device) * cdf[:, -1:]
            # the sample is the number of categories whose cumulative weight is <= the draw
            out = (cdf.unsqueeze(1) <= draws.unsqueeze(2)).sum(2).minimum(n - 1)
        else:
            u = self.rand(rows, n, device=self.device).maximum(1e-30)
            keys = w.log() - (-u.log()).log()
            out = keys.topk(num_samples, dim=1).indices
        out = out.cast(dtypes.int64)
        if w.numel():   # (on self: weights realized on the host are checked at once)
            check_values(self, out, _bad_weights, _weights_error)
        return out if self.ndim == 2 else out.squeeze(0)

    @classmethod
    def randperm(cls, n: int, dtype=dtypes.int64, device=None) -> Self:
        """torch.randperm: a random permutation of 0..n-1 from Tensor.manual_seed's generator. The random keys
        are drawn on the device and ordered on the host (one read of n floats), so any n is cheap."""
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise RuntimeError(f"randperm: n must be a non-negative int, got {n!r}")
        keys = cls.rand(n, dtype=dtypes.float64, device=device).numpy() if n else np.zeros(0)
        return cls._new(np.argsort(keys, kind="stable").astype(dtypes.from_any(dtype).np), device=device)


def _bad_weights(w):
    """multinomial's weights are invalid: an inf, NaN or negative value, or a row that sums to 0."""
    return ((w < 0) | (w != w) | (w.abs() == math.inf)).any() | (w.sum(-1) <= 0).any()


def _weights_error(w: np.ndarray) -> RuntimeError:
    if (~np.isfinite(w) | (w < 0)).any():
        return RuntimeError("multinomial: probability tensor contains either `inf`, `nan` or element < 0")
    return RuntimeError("multinomial: invalid multinomial distribution (sum of probabilities <= 0)")
