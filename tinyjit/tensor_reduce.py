"""Reductions of Tensor (sum, max and everything built from them: mean, var, softmax, argmax, cumsum...)."""
from __future__ import annotations

import math
from collections import namedtuple
from typing import TYPE_CHECKING

import numpy as np

from tinyjit.dtype import dtypes
from tinyjit.helpers import prod
from tinyjit.ops import Op, reduce_identity
from tinyjit.tensor_base import TensorBase
from tinyjit.tensor_movement import _axis, _distinct_axes, _pick_axis

if TYPE_CHECKING:
    from typing_extensions import Self


# torch.return_types.max / min: what max(dim) and min(dim) return
MaxResult = namedtuple("max", ("values", "indices"))
MinResult = namedtuple("min", ("values", "indices"))


def _axes(x, axis, op: str) -> tuple[int, ...]:
    """The axes of x a reduce over `axis` (an int, a sequence, or None for all) runs over, sorted. A 0-d tensor
    accepts dim 0 and -1 like PyTorch (it is then reduced over its one element) and has no axes to run over."""
    if axis is None:
        return tuple(range(x.ndim))

    axes = tuple(sorted(_distinct_axes(x, axis, op))) if isinstance(axis, (list, tuple)) else (_axis(x, axis, op),)
    return axes if x.ndim else ()


class ReduceMixin(TensorBase):
    def _reduce(self, op: Op, axis, keepdim: bool, name: str) -> Self:
        axes = _axes(self, axis, name)
        x = self
        if op == Op.RMAX and self.dtype.is_float and all(self.shape[a] == 1 for a in axes):
            # a max over one element is that element, with PyTorch's gradient g * (x == max) / count: NaN at a NaN
            x = self * (self == self).where(self.full_like(1.0), self.full_like(math.nan))
        if self.ndim == 0:
            return x
        if self.ndim and any(self.shape[a] == 0 for a in axes):
            if op == Op.RMAX and name in ("max", "min", "amax", "amin", "argmax", "argmin"):
                _no_identity(self, axis, name)
            # nothing to reduce: one element of the op's identity instead (kernels never loop 0 times)
            x = self.pad(tuple((0, 1) if i in axes and s == 0 else (0, 0) for i, s in enumerate(self.shape)),
                         value=reduce_identity(op, self.dtype))
        out = self._new(x.node.reduce(op, axes))._record(x)
        if not keepdim:
            out = out.reshape(tuple(s for i, s in enumerate(self.shape) if i not in axes))
        return out

    def sum(self, axis=None, keepdim: bool = False, dtype=None, dim=None) -> Self:
        """The sum over `axis` (torch.sum, numpy.sum). `axis` (or `dim`) is an int, a tuple of ints or None for every
        dim; reduced dims are dropped unless `keepdim`. IndexError for a dim out of range, RuntimeError for a dim named
        twice. ints and bools sum in int64 (uint64 stays), half accumulates in float32, like PyTorch; `dtype` casts
        first. An empty sum is 0."""
        axis = _pick_axis(axis, dim)
        x = self
        if dtype is not None:
            x = x.cast(dtype)
        elif x.dtype.is_int or x.dtype == dtypes.bool:
            # PyTorch and NumPy sum integers in 64 bits
            x = x.cast(dtypes.uint64 if x.dtype == dtypes.uint64 else dtypes.int64)
        if x.dtype == dtypes.float16:  # accumulate half in float, like PyTorch
            return x.float()._reduce(Op.SUM, axis, keepdim, "sum").half()
        return x._reduce(Op.SUM, axis, keepdim, "sum")

    def amax(self, axis=None, keepdim: bool = False, dim=None) -> Self:
        """The maximum values over one or several axes (torch.amax, numpy.max), keeping the dtype; NaN propagates and
        a gradient is shared evenly between tied maxima, like torch.amax. `axis` (or `dim`) is an int, a tuple or
        None for all; IndexError over a dim of size 0, RuntimeError for an empty tensor without a dim."""
        return self._reduce(Op.RMAX, _pick_axis(axis, dim), keepdim, "amax")

    def amin(self, axis=None, keepdim: bool = False, dim=None) -> Self:
        """The minimum values over one or several axes (torch.amin, numpy.min), keeping the dtype; NaN propagates and
        a gradient is shared evenly between tied minima. `axis` (or `dim`) is an int, a tuple or None for all;
        IndexError over a dim of size 0, RuntimeError for an empty tensor without a dim."""
        axis = _pick_axis(axis, dim)
        if self.dtype.is_float:
            return -((-self)._reduce(Op.RMAX, axis, keepdim, "amin"))
        # ~x reverses the order of every int (and bool) without overflow
        return ~((~self)._reduce(Op.RMAX, axis, keepdim, "amin"))

    def max(self, axis=None, keepdim: bool = False, dim=None):
        """torch.max: without a dim, the maximum of all elements (a 0-d tensor); with an int dim, the named tuple
        (values, indices) of the maxima along it (indices int64, of the first maximum; NaN counts as the maximum);
        with a tensor, the elementwise maximum. A tuple of dims is a TypeError, as in torch: use amax."""
        return self._extreme(axis, keepdim, dim, "max")

    def min(self, axis=None, keepdim: bool = False, dim=None):
        """torch.min: like `max`, for the minimum (the named tuple (values, indices) when a dim is given)."""
        return self._extreme(axis, keepdim, dim, "min")

    def _extreme(self, axis, keepdim: bool, dim, name: str):
        if isinstance(axis, TensorBase) or isinstance(dim, TensorBase):   # torch.max(a, b): elementwise
            other = axis if isinstance(axis, TensorBase) else dim
            return self.maximum(other) if name == "max" else self.minimum(other)
        axis = _pick_axis(axis, dim)
        if axis is None:
            if keepdim:
                raise TypeError(f"{name}: keepdim needs a dim (torch.{name}(input) takes no keepdim)")
            value = self.amax() if name == "max" else self.amin()
            return self._evenly_distributed(value)
        if isinstance(axis, (list, tuple)) or not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
            raise TypeError(f"{name}: dim must be an int, got {axis!r}; use amax/amin to reduce over several dims")
        if self.ndim and self.shape[_axis(self, axis, name)] == 0:
            raise IndexError(f"{name}: cannot reduce over a dimension of size 0 (shape {self.shape}, axis {axis})")
        x = self.contiguous() if self.requires_grad and not self.no_grad_active else self
        indices = x.argmax(axis, keepdim) if name == "max" else x.argmin(axis, keepdim)
        if self.requires_grad and not self.no_grad_active:
            # the gradient goes to the chosen index only, like torch.max(dim) (amax shares it between ties)
            a = _axis(self, axis, name)
            position = self._index_range(self.shape[a], dtypes.int64, self.device)
            position = position.reshape((self.shape[a],) + (1,) * (self.ndim - a - 1))
            chosen = (indices if keepdim else indices.unsqueeze(a)) == position
            # (from one buffer: a fused producer recomputed per kernel could round differently)
            values = chosen.where(x, 0).sum(a, keepdim=keepdim)
        else:
            values = self.amax(axis, keepdim) if name == "max" else self.amin(axis, keepdim)
        return (MaxResult if name == "max" else MinResult)(values, indices)

    def _evenly_distributed(self, value) -> Self:
        """`value` (a 0-d tensor equal to some entries of self: a max, min or median of all of them) whose gradient
        is shared evenly by the entries equal to it, NaN ones counting as equal to a NaN value: torch.max(x),
        torch.min(x) and torch.median(x) (no dim). amax's rule differs there: a NaN maximum gives NaN gradients."""
        if not self.dtype.is_float or not self.requires_grad or self.no_grad_active or self.numel() == 0:
            return value
        picked_value = value.detach()
        mask = (self.detach() == picked_value) | (self.isnan() & picked_value.isnan())
        count_dtype = dtypes.float64 if self.dtype == dtypes.float64 else dtypes.float32   # a half count overflows
        weight = (mask.cast(count_dtype) / mask.cast(count_dtype).sum()).cast(self.dtype)
        carrier = (mask.where(self, 0) * weight).sum()       # d carrier / d x = weight
        # the value itself stays exact: a finite value gets the carrier's gradient from carrier - carrier (0), a
        # non-finite one is the carrier (the sum of weight-scaled copies of +-inf or NaN is that value)
        finite = (picked_value - picked_value) == 0
        return finite.where(picked_value + (carrier - carrier.detach()), carrier)

    def mean(self, axis=None, keepdim: bool = False, dim=None) -> Self:
        """The mean over `axis` (torch.mean, numpy.mean), a float (ints become float32; half is summed in float32).
        `axis` (or `dim`) is an int, a tuple of ints or None for every dim; reduced dims are dropped unless `keepdim`.
        IndexError for a dim out of range, RuntimeError for a dim named twice. The mean of no elements is NaN."""
        axis = _pick_axis(axis, dim)
        if self.dtype == dtypes.float16:   # sum and divide in float32, like PyTorch: a half sum of 1e5 ones is inf
            return self.float().mean(axis, keepdim).half()
        count = prod(self.shape[a] for a in _axes(self, axis, "mean"))
        x = self if self.dtype.is_float else self.float()
        return x.sum(axis, keepdim) * (1.0 / count if count else math.nan) if count else \
            x.sum(axis, keepdim) * math.nan

    def var(self, axis=None, unbiased=None, keepdim: bool = False, *, correction=None, dim=None) -> Self:
        """The variance over `axis` (torch.var, with its argument order: `x.var(1, False)` is the biased variance),
        dividing by count - correction (default 1, Bessel's; unbiased=False means 0), a float. `axis` (or `dim`) is
        an int, a tuple of ints or None for every dim; reduced dims are dropped unless `keepdim`. IndexError for a dim
        out of range, RuntimeError for a dim named twice, TypeError for both unbiased and correction. NaN or inf when
        count <= correction, like PyTorch."""
        axis = _pick_axis(axis, dim)
        correction = _correction(unbiased, correction, "var")
        if self.dtype == dtypes.float16:   # squares and sums in float32, like PyTorch
            return self.float().var(axis, keepdim=keepdim, correction=correction).half()
        axes = _axes(self, axis, "var")
        count = prod(self.shape[a] for a in axes)
        x = self if self.dtype.is_float else self.float()

        def value() -> Self:
            centered = x - x.mean(axis, keepdim=True)
            return (centered * centered).sum(axis, keepdim) / max(count - correction, 0)
        if self.no_grad_active or not x.requires_grad:
            return value()
        dof = count - correction
        x = x._frozen()   # what backward reads, whatever in-place update self gets later

        def backward(grad: Self) -> tuple:
            """PyTorch's var_backward: 2 / (n - correction) * grad * (x - mean), that factor unclamped (negative,
            or inf at 0); reducing everything with n <= correction: grad * (NaN where x == mean, else inf)."""
            grad = grad.reshape(tuple(1 if a in axes else s for a, s in enumerate(x.shape)))
            mean = x.mean(axis, keepdim=True)
            if axis is None and dof <= 0:
                return (grad * (x == mean).where(math.nan, math.inf),)
            return (grad * (2.0 / dof if dof else math.inf) * (x - mean),)
        return self._with_gradient(value, [x], backward, saved=[x])

    def std(self, axis=None, unbiased=None, keepdim: bool = False, *, correction=None, dim=None) -> Self:
        """The standard deviation, sqrt of `var` with the same arguments (torch.std, its argument order), a float;
        its gradient is 0 where the variance is 0 (like PyTorch, not NaN). `axis` (or `dim`) is an int, a tuple of
        ints or None for every dim; reduced dims are dropped unless `keepdim`. IndexError for a dim out of range,
        RuntimeError for a dim named twice, TypeError for both unbiased and correction."""
        axis = _pick_axis(axis, dim)
        _axes(self, axis, "std")
        var = self.var(axis, keepdim=keepdim, correction=_correction(unbiased, correction, "std"))
        # gradient 0 where the variance is 0 (all elements equal), like PyTorch, not 0 * (1 / sqrt(0)) = NaN
        zero = var == 0
        return zero.where(var, zero.where(1.0, var).sqrt())

    def prod(self, axis=None, keepdim: bool = False, dim=None) -> Self:
        """The product over `axis` (torch.prod, numpy.prod): ints and bools multiply in int64 (wrapping), half in
        float32, as pairwise halving products. `axis` (or `dim`) is an int, a tuple of ints or None for every dim;
        reduced dims are dropped unless `keepdim`. IndexError for a dim out of range, RuntimeError for a dim named
        twice. An empty product is 1."""
        axis = _pick_axis(axis, dim)
        axes = _axes(self, axis, "prod")
        if self.dtype == dtypes.float16:   # multiply half in float, like PyTorch
            return self.float().prod(axis, keepdim).half()
        x = self.cast(dtypes.int64) if self.dtype.is_int or self.dtype == dtypes.bool else self
        # move reduced axes last, flatten them, then multiply halves until one element is left
        keep = [i for i in range(x.ndim) if i not in axes]
        x = x.permute(keep + list(axes))
        kept_shape = tuple(self.shape[i] for i in keep)
        n = prod(self.shape[a] for a in axes)
        x = x.reshape(kept_shape + (n,))
        while x.shape[-1] > 1:
            m = x.shape[-1]
            half = (m + 1) // 2
            if m % 2:
                x = x.pad(tuple((0, 0) for _ in kept_shape) + ((0, 1),), value=1)
            x = x[..., :half] * x[..., half:]
            if half > 64:
                x = x.contiguous()
        if n == 0:   # the empty product is 1, still computed from x: it requires grad when x does (PyTorch)
            x = x.sum(-1, keepdim=True).cast(x.dtype) * 0 + 1
        out = x.reshape(kept_shape)
        if keepdim:
            out = out.reshape(tuple(1 if i in axes else s for i, s in enumerate(self.shape)))
        return out

    def any(self, axis=None, keepdim: bool = False, dim=None) -> Self:
        """Whether any element is nonzero (NaN counts) over `axis` (torch.any, numpy.any): a bool tensor. `axis` (or
        `dim`) is an int, a tuple of ints or None for every dim; reduced dims are dropped unless `keepdim`. IndexError
        for a dim out of range, RuntimeError for a dim named twice."""
        return self.bool()._reduce(Op.RMAX, _pick_axis(axis, dim), keepdim, "any")

    def all(self, axis=None, keepdim: bool = False, dim=None) -> Self:
        """Whether every element is nonzero over `axis` (torch.all, numpy.all): a bool tensor. `axis` (or `dim`) is an
        int, a tuple of ints or None for every dim; reduced dims are dropped unless `keepdim`. IndexError for a dim out
        of range, RuntimeError for a dim named twice."""
        _axes(self, _pick_axis(axis, dim), "all")
        return ~((~self.bool()).any(axis, keepdim, dim))

    def argmax(self, axis=None, keepdim: bool = False, dim=None) -> Self:
        """The index of the first maximum along `axis`, or of the flattened tensor when it is None (torch.argmax,
        numpy.argmax): int64, NaN counts as the maximum. IndexError over a dim of size 0 or for an empty tensor, like
        PyTorch."""
        axis = _pick_axis(axis, dim)
        if self.ndim == 0:
            _axis(self, 0 if axis is None else axis, "argmax")
            return self.zeros((), dtype=dtypes.int64, device=self.device)
        if axis is None:
            return self.flatten().argmax(0).reshape(()) if not keepdim else \
                self.flatten().argmax(0).reshape((1,) * self.ndim)
        a = _axis(self, axis, "argmax")
        n = self.shape[a]
        is_max = self == self._reduce(Op.RMAX, a, True, "argmax")
        if self.dtype.is_float:
            is_max = is_max | (self != self)   # NaN is the maximum, like PyTorch
        # count down from n so the max over matches is the first index; the indices are computed on the device
        # (an arange uploaded from the host would cost 8 bytes per element of the axis there)
        index_dtype = dtypes.int32 if n < 2 ** 31 else dtypes.int64
        countdown = n - self._index_range(n, index_dtype, self.device)
        countdown = countdown.reshape((n,) + (1,) * (self.ndim - a - 1))
        first = (is_max.where(countdown, 0)).amax(a, keepdim=keepdim)
        return (n - first).cast(dtypes.int64)

    def argmin(self, axis=None, keepdim: bool = False, dim=None) -> Self:
        """The index of the first minimum along `axis`, or of the flattened tensor when it is None (torch.argmin,
        numpy.argmin): int64, NaN counts as the minimum. IndexError over a dim of size 0 or for an empty tensor, like
        PyTorch."""
        axis = _pick_axis(axis, dim)
        if self.numel() == 0 and (axis is None or self.shape[_axis(self, axis, "argmin")] == 0):
            _no_identity(self, axis if axis is not None else 0, "argmin")
        flipped = -self if self.dtype.is_float else ~self
        return flipped.argmax(axis, keepdim, dim)

    def logsumexp(self, axis=None, keepdim: bool = False, dim=None) -> Self:
        """log(sum(exp(x))) over `axis` (torch.logsumexp), computed stably by shifting by the maximum; a float (half is
        summed in float32). `axis` (or `dim`) is an int, a tuple of ints or None for every dim; reduced dims are dropped
        unless `keepdim`. IndexError for a dim out of range, RuntimeError for a dim named twice."""
        axis = _pick_axis(axis, dim)
        if self.dtype == dtypes.float16:   # the sum of exps in float32 (it can pass half's range), like PyTorch
            return self.float().logsumexp(axis, keepdim).half()
        # the shift cancels out of the value, so no gradient flows through it (as in PyTorch: d/dx = softmax(x));
        # differentiated, it would add a max's backward (a mask of ties, two more row reductions) that sums to zero
        m = self._float()._reduce(Op.RMAX, axis, True, "logsumexp").detach()
        m = (m.abs() == math.inf).where(0, m)   # keep inf inputs from producing inf - inf
        out = (self - m).exp().sum(axis, keepdim=True).log() + m
        if not keepdim:
            out = out.squeeze(_axes(self, axis, "logsumexp")) if self.ndim else out
        return out

    def softmax(self, axis=-1, dim=None) -> Self:
        """exp(x) / sum(exp(x)) along `axis` (default the last; torch.softmax), shifted by the maximum so it never
        overflows; a float (half is computed in float32), the input's shape. IndexError for a dim out of range."""
        axis = _pick_axis(axis if dim is None else None, dim) if dim is not None else axis
        axes = _axes(self, axis, "softmax")
        if self.dtype == dtypes.float16:   # the sum and the division in float32, like PyTorch
            return self.float().softmax(axis).half()
        x = self._float()
        if self.ndim and any(self.shape[a] == 0 for a in axes):   # nothing to normalize: the empty result
            return x * 1
        e = (x - x.amax(axis, keepdim=True).detach()).exp()   # a shift that cancels: no gradient through it
        return e / e.sum(axis, keepdim=True)

    def log_softmax(self, axis=-1, dim=None) -> Self:
        """log(softmax(x)) along `axis` (default the last; torch.log_softmax), computed as x - max - log(sum(exp(x -
        max))); a float (half is summed in float32), the input's shape. IndexError for a dim out of range."""
        axis = dim if dim is not None else axis
        axes = _axes(self, axis, "log_softmax")
        if self.dtype == dtypes.float16:   # the sum in float32, like PyTorch
            return self.float().log_softmax(axis).half()
        x = self._float()
        if self.ndim and any(self.shape[a] == 0 for a in axes):
            return x * 1
        shifted = x - x.amax(axis, keepdim=True).detach()   # a shift that cancels: no gradient through it
        return shifted - shifted.exp().sum(axis, keepdim=True).log()

    def cumsum(self, axis=None, dim=None, dtype=None) -> Self:
        """The running sum along `axis` (default 0; torch.cumsum, numpy.cumsum), the input's shape: ints and bools in
        int64 like sum, floats keep their dtype; `dtype` casts the input first and is the result's dtype (torch's
        keyword). One reduce kernel over windows of the left-padded input. IndexError for a dim out of range."""
        if dtype is not None:
            x = self.cast(dtype)
            return x.cumsum(axis, dim).cast(x.dtype)
        axis = _pick_axis(axis, dim)
        axis = _axis(self, 0 if axis is None else axis, "cumsum")
        if self.ndim == 0 or self.shape[axis] == 0:
            return self.sum(axis, keepdim=True) if self.ndim == 0 else self.cast(self.sum().dtype)
        x = self.transpose(axis, -1)
        n = x.shape[-1]
        # p = n-1 zeros then x. Repeat p n times, append n zeros and cut rows of 2n: row i then starts at
        # p[i], and its first n elements are the window that sums to x[0] + ... + x[i]
        batch = x.shape[:-1]
        padded = x.pad(tuple((0, 0) for _ in batch) + ((n - 1, 0),))
        repeated = padded.unsqueeze(-2).expand(batch + (n, 2 * n - 1)).reshape(batch + (n * (2 * n - 1),))
        rows = repeated.pad(tuple((0, 0) for _ in batch) + ((0, n),)).reshape(batch + (n, 2 * n))
        out = rows[..., :n].sum(-1)
        out = out.cast(self.dtype) if self.dtype.is_float else out
        return out.transpose(axis, -1)



def _correction(unbiased, correction, op: str) -> int:
    """var/std's divisor offset from PyTorch's two spellings: unbiased (True: 1, False: 0) or correction (default 1)."""
    if unbiased is not None and correction is not None:
        raise TypeError(f"{op}(): pass either unbiased or correction, not both")
    if unbiased is not None:
        if not isinstance(unbiased, (bool, np.bool_)):
            raise TypeError(f"{op}(): unbiased must be a bool, got {type(unbiased).__name__} (keepdim is the third "
                            f"argument, as in torch.{op})")
        return int(unbiased)
    return 1 if correction is None else correction


def _no_identity(x, axis, name: str) -> None:
    """Raise PyTorch's error for max/min/argmax/argmin over no elements (they have no identity): IndexError over a
    dim of size 0 (and for argmax/argmin of an empty tensor), RuntimeError for max()/min() of an empty tensor."""
    if axis is None and name in ("max", "min", "amax", "amin"):
        raise RuntimeError(f"{name}(): cannot reduce an empty tensor (shape {x.shape}) without a dim; pass dim=")

    raise IndexError(f"{name}(): cannot reduce over a dimension of size 0 (shape {x.shape}, dim {axis})")
