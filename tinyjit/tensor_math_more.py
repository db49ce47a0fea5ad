"""More math of Tensor with torch's names, built from the existing ops (so lazy, fused and differentiable):
remainder/fmod, atan2, hypot, logaddexp, frac, nan_to_num, nansum/nanmean, norm, count_nonzero, outer, addmm,
baddbmm, trace, cumprod, diff, median and cross.
"""
from __future__ import annotations

import math
from collections import namedtuple
from typing import TYPE_CHECKING

import numpy as np

from tinyjit.dtype import dtypes
from tinyjit.ops import Op
from tinyjit.tensor_base import TensorBase
from tinyjit.tensor_movement import _axis, _pick_axis
from tinyjit.tensor_reduce import _axes

if TYPE_CHECKING:
    from typing_extensions import Self

# torch.return_types.median
MedianResult = namedtuple("median", ("values", "indices"))


def _needs_float(x: TensorBase, op: str) -> None:
    if not x.dtype.is_float:
        raise RuntimeError(f"{op}: not implemented for {x.dtype.name} tensors (torch takes floating point only); "
                           f"cast to a float dtype first")


def _atan_unit(a: TensorBase) -> TensorBase:
    """atan(a) for a in [0, 1]: halved twice (atan(t) = 2 atan(t / (1 + sqrt(1 + t^2)))) to |t| <= tan(pi/16),
    where the Taylor series converges fast enough for float64 with 12 terms (6 for 32 bits and less)."""
    t = a
    for _ in range(2):
        t = t / (1 + (1 + t * t).sqrt())
    terms = 12 if a.dtype == dtypes.float64 else 6
    t2 = t * t
    series = t.full_like(1.0 / (2 * terms - 1) * (-1) ** (terms - 1))
    for k in range(terms - 2, -1, -1):
        series = series * t2 + (-1) ** k / (2 * k + 1)
    return 4 * (t * series)


class MoreMathMixin(TensorBase):
    def remainder(self, other) -> Self:
        """torch.remainder: the remainder with the sign of the divisor, self - floor(self / other) * other (Python's
        %), in the promoted dtype; see Tensor.mod (the same op). The gradient is 1 for self and -floor(self / other)
        for other, as torch's."""
        return self.mod(other)

    def fmod(self, other) -> Self:
        """torch.fmod: the remainder with the sign of the dividend (C's fmod and %), in the promoted dtype: floats
        exact (IEEE fmod), ints truncating. The gradient is 1 for self and -trunc(self / other) for other, as
        torch's. ValueError for shapes that do not broadcast; RuntimeError("ZeroDivisionError") for an int tensor
        and the int 0, as torch (an int tensor divisor holding 0 is not read: the remainder there is 0)."""
        self._refuse_int_division_by_zero(other, "fmod")
        x, y = self._operands(other, "fmod")
        return x._apply(Op.MOD, y) if x.dtype.is_float else x._int_divmod(y, "fmod")[1]

    def atan2(self, other) -> Self:
        """torch.atan2 (numpy.arctan2): the angle of the point (other, self) in [-pi, pi], elementwise with
        broadcasting; ints become float32. Signed zeros and infinities as C's atan2 (atan2(0, -1) = pi,
        atan2(-0., -1) = -pi, atan2(inf, inf) = pi/4); NaN propagates. Gradients as torch's: other / (self^2 +
        other^2) for self and -self / (self^2 + other^2) for other, 0 where self^2 + other^2 is 0."""
        y, x = self._operands(other, "atan2")
        if not y.dtype.is_float:
            y, x = y.float(), x.float()
        if y.dtype == dtypes.float16:
            return y.float().atan2(x.float()).half()

        def value() -> Self:
            ay, ax = y.abs(), x.abs()
            both_inf = ay.isinf() & ax.isinf()
            big, small = ay.maximum(ax), ay.minimum(ax)
            ratio = both_inf.where(1.0, (big == 0).where(0.0, small / (big == 0).where(1.0, big)))
            angle = _atan_unit(ratio)
            angle = (ay > ax).where(math.pi / 2 - angle, angle)
            x_negative = (x < 0) | ((x == 0) & (x.reciprocal() < 0))      # -0 counts as negative here (C)
            angle = x_negative.where(math.pi - angle, angle)
            y_negative = (y < 0) | ((y == 0) & (y.reciprocal() < 0))
            angle = y_negative.where(-angle, angle)
            return ((y != y) | (x != x)).where(y + x, angle)

        y, x = y._frozen(), x._frozen()   # what backward reads, whatever in-place update self gets later

        def backward(grad: Self) -> tuple:
            squared = y * y + x * x
            at_origin = squared == 0   # gradient 0 at (0, 0), like torch (not 0 * inf = NaN)
            scale = at_origin.where(0.0, at_origin.where(1.0, squared).reciprocal())
            return (grad * x * scale if y.requires_grad else None, grad * -y * scale if x.requires_grad else None)
        if self.no_grad_active or not (y.requires_grad or x.requires_grad):
            return value()
        return self._with_gradient(value, [y, x], backward, saved=[y, x])

    def arctan2(self, other) -> Self:
        """torch.arctan2: the same as atan2."""
        return self.atan2(other)

    def hypot(self, other) -> Self:
        """torch.hypot: sqrt(self^2 + other^2) elementwise with broadcasting, without overflow or underflow in the
        squares (scaled by the larger magnitude); inf when either is infinite (even with a NaN), else NaN
        propagates. Floats only (RuntimeError for ints, like torch). Gradients as torch's: self / hypot and other /
        hypot (NaN at (0, 0))."""
        x, y = self._operands(other, "hypot")
        _needs_float(x, "hypot")
        if x.dtype == dtypes.float16:   # in float32, rounded once (torch computes half math in float32)
            return x.float().hypot(y.float()).half()

        def value() -> Self:
            ax, ay = x.abs(), y.abs()
            big, small = ax.maximum(ay), ax.minimum(ay)
            safe = (big == 0) | big.isinf()
            ratio = small / safe.where(1.0, big)
            out = safe.where(big, big * (1 + ratio * ratio).sqrt())
            return (ax.isinf() | ay.isinf()).where(math.inf, out)

        def backward(grad: Self, saved_result: Self) -> tuple:
            scale = grad / saved_result.detach()
            return (scale * x if x.requires_grad else None, scale * y if y.requires_grad else None)
        if self.no_grad_active or not (x.requires_grad or y.requires_grad):
            return value()
        x, y = x._frozen(), y._frozen()   # what backward reads, whatever in-place update self gets later
        return self._with_gradient(value, [x, y], backward, reads_result=True, saved=[x, y])

    def logaddexp(self, other) -> Self:
        """torch.logaddexp (numpy.logaddexp): log(exp(self) + exp(other)) elementwise with broadcasting, computed as
        max + log1p(exp(-|self - other|)) so it never overflows; -inf + -inf gives -inf and inf + inf inf. Floats
        only (RuntimeError for ints, like torch). Gradients as torch's: 1 / (1 + exp(other - self)) for self (1 at
        (inf, -inf)), 1 / (1 + exp(self - other)) for other; NaN where both are the same infinity."""
        x, y = self._operands(other, "logaddexp")
        _needs_float(x, "logaddexp")
        if x.dtype == dtypes.float16:   # in float32, rounded once
            return x.float().logaddexp(y.float()).half()

        def value() -> Self:
            big = x.maximum(y)
            same_inf = (x == y) & x.isinf()
            gap = same_inf.where(0.0, -(x - y).abs())
            return same_inf.where(x, big + gap.exp().log1p())

        def backward(grad: Self) -> tuple:
            # torch's form 1 / (1 + exp(other - self)): finite where one side is infinite (exp(self - out) is
            # exp(inf - inf) = NaN at (inf, -inf)); NaN only where both are the same infinity, as in torch
            return (grad / (1 + (y - x).exp()) if x.requires_grad else None,
                    grad / (1 + (x - y).exp()) if y.requires_grad else None)
        if self.no_grad_active or not (x.requires_grad or y.requires_grad):
            return value()
        x, y = x._frozen(), y._frozen()   # what backward reads, whatever in-place update self gets later
        return self._with_gradient(value, [x, y], backward, saved=[x, y])

    def frac(self) -> Self:
        """torch.frac: self - trunc(self), the fractional part with self's sign, same dtype; gradient 1. Floats only
        (RuntimeError for ints, like torch)."""
        _needs_float(self, "frac")
        return self - self.trunc()

    def nan_to_num(self, nan: float = 0.0, posinf=None, neginf=None) -> Self:
        """torch.nan_to_num (numpy.nan_to_num): NaN replaced by `nan`, +inf by `posinf` and -inf by `neginf` (by
        default the largest and the lowest finite value of the dtype); same dtype; int and bool tensors come back
        unchanged. The gradient is passed where self is finite and 0 elsewhere, as torch's."""
        if not self.dtype.is_float:
            return self * 1 if self.dtype != dtypes.bool else self
        info = np.finfo(self.dtype.np)
        posinf = float(info.max) if posinf is None else posinf
        neginf = float(info.min) if neginf is None else neginf
        out = (self == math.inf).where(posinf, (self == -math.inf).where(neginf, self))
        return (self != self).where(nan, out).cast(self.dtype)

    def nansum(self, dim=None, keepdim: bool = False, dtype=None, axis=None) -> Self:
        """torch.nansum (numpy.nansum): the sum over `dim` (an int, a tuple or None for all) with NaN counted as 0;
        dtypes as Tensor.sum (ints sum in int64). The gradient is 0 at the NaN entries."""
        dim = _pick_axis(axis, dim)
        x = (self != self).where(0, self) if self.dtype.is_float else self
        return x.sum(dim, keepdim, dtype=dtype)

    def nanmean(self, dim=None, keepdim: bool = False, dtype=None, axis=None) -> Self:
        """torch.nanmean (numpy.nanmean): the mean of the non-NaN entries over `dim` (an int, a tuple or None for
        all); NaN where every entry is NaN. Floats only (RuntimeError for ints, like torch). The gradient is 0 at
        the NaN entries and 1 / count elsewhere."""
        dim = _pick_axis(axis, dim)
        _needs_float(self, "nanmean")
        x = self.cast(dtype) if dtype is not None else self
        count = (x == x).sum(dim, keepdim).cast(x.dtype)
        return x.nansum(dim, keepdim) / count

    def norm(self, p="fro", dim=None, keepdim: bool = False, dtype=None) -> Self:
        """torch.norm / torch.linalg.vector_norm: the p-norm over `dim` (an int, a tuple, or None for every entry):
        p = 2 or 'fro' sqrt(sum |x|^2), 1 sum |x|, inf max |x|, -inf min |x|, 0 the count of nonzeros, any other
        number (sum |x|^p)^(1/p). A float result (half accumulates in float32); `dtype` casts first. Gradients as
        torch's: 0 at a zero norm and at zero entries (any p, also p < 1), shared evenly between tied entries for
        +-inf. RuntimeError for an int tensor or p='nuc' (not supported), ValueError for another string."""
        if isinstance(p, str) and p != "fro":
            if p == "nuc":
                raise RuntimeError("norm: the nuclear norm (p='nuc') is not supported")
            raise ValueError(f"norm: p must be a number or 'fro', got {p!r}")
        x = self.cast(dtype) if dtype is not None else self
        _needs_float(x, "norm")
        if x.dtype == dtypes.float16:
            return x.float().norm(p, dim, keepdim).half()
        _axes(x, dim, "norm")
        p = 2 if p == "fro" else p
        if p == 2:
            total = (x * x).sum(dim, keepdim)
            zero = total == 0   # gradient 0 there, like torch, not 0 * (1 / sqrt(0)) = NaN
            return zero.where(total, zero.where(1.0, total).sqrt())
        magnitude = x.abs()
        if p == 1:
            return magnitude.sum(dim, keepdim)
        if p == math.inf:
            return magnitude.amax(dim, keepdim) if x.numel() else magnitude.sum(dim, keepdim)
        if p == -math.inf:
            return magnitude.amin(dim, keepdim)
        if p == 0:   # piecewise constant: in the graph with gradient 0, like torch
            return x._with_zero_gradient((x != 0).cast(x.dtype)).sum(dim, keepdim)
        # |x|^p at a zero entry is a constant (0, or inf for p < 0) with gradient 0, like torch: p * |x|^(p-1) is
        # inf there for p < 1, and inf * 0 would make the whole gradient NaN
        zero_entry = magnitude == 0
        powered = zero_entry.where(0.0 if p > 0 else math.inf, zero_entry.where(1.0, magnitude) ** p)
        total = powered.sum(dim, keepdim)
        zero = total == 0   # gradient 0 at a zero norm (p > 0), like torch, not inf * 0
        return zero.where(total, zero.where(1.0, total) ** (1.0 / p))

    def count_nonzero(self, dim=None) -> Self:
        """torch.count_nonzero: the number of nonzero entries (NaN counts) over `dim` (an int, a tuple or None for
        all), int64."""
        return (self != 0).sum(dim, dtype=dtypes.int64)

    def outer(self, vec2) -> Self:
        """torch.outer (torch.ger): out[i, j] = self[i] * vec2[j] for 1-D tensors of n and m, shape (n, m), dtypes
        promote. RuntimeError unless both are 1-D."""
        if not isinstance(vec2, TensorBase) or self.ndim != 1 or vec2.ndim != 1:
            raise RuntimeError(f"outer: expected two 1-D tensors, got shapes {self.shape} and "
                               f"{getattr(vec2, 'shape', type(vec2).__name__)}")
        return self.reshape(-1, 1) * vec2.reshape(1, -1)

    def ger(self, vec2) -> Self:
        """torch.ger: the same as outer."""
        return self.outer(vec2)

    def _scaled_sum(self, product: Self, beta, alpha, op: str, product_ignored_at_0: bool = True) -> Self:
        """beta * self + alpha * product (product's shape; self broadcasts to it), as torch's addmm family: self is
        ignored when beta is 0 and (`product_ignored_at_0`) the product when alpha is 0 (their NaN and inf do not
        spread; the gradient into them is 0 * grad, as torch's)."""
        try:
            base = self._broadcast_to(product.shape)
        except ValueError:
            raise RuntimeError(f"{op}: input of shape {self.shape} does not broadcast to the product's shape "
                               f"{product.shape}") from None
        if alpha == 0 and product_ignored_at_0:   # not 0 * product, which is NaN where the product is inf or NaN
            zeros = product.zeros_like()
            scaled = product._with_zero_gradient(zeros) if product.requires_grad else zeros
        else:
            scaled = product if alpha == 1 else product * alpha
        if beta == 0:   # self's values are not used (torch: its NaN and inf do not spread); its gradient is 0
            return scaled + base._with_zero_gradient(base.zeros_like()) if base.requires_grad else scaled
        return scaled + (base if beta == 1 else base * beta)

    def addmm(self, mat1, mat2, *, beta=1, alpha=1) -> Self:
        """torch.addmm: beta * self + alpha * (mat1 @ mat2) for mat1 (n, m) and mat2 (m, p); self broadcasts to
        (n, p) and is ignored when beta is 0, the product when alpha is 0 (NaN and inf do not spread). RuntimeError
        unless mat1 and mat2 are 2-D with matching inner sizes, or when self does not broadcast."""
        for m in (mat1, mat2):
            if not isinstance(m, TensorBase) or m.ndim != 2:
                raise RuntimeError(f"addmm: mat1 and mat2 must be 2-D tensors, got "
                                   f"{getattr(m, 'shape', type(m).__name__)}")
        if mat1.shape[1] != mat2.shape[0]:
            raise RuntimeError(f"addmm: mat1 and mat2 shapes cannot be multiplied ({mat1.shape[0]}x{mat1.shape[1]} "
                               f"and {mat2.shape[0]}x{mat2.shape[1]})")
        return self._scaled_sum(mat1.matmul(mat2), beta, alpha, "addmm")

    def baddbmm(self, batch1, batch2, *, beta=1, alpha=1) -> Self:
        """torch.baddbmm: beta * self + alpha * (batch1 @ batch2) for batch1 (b, n, m) and batch2 (b, m, p); self
        broadcasts to (b, n, p) and is ignored when beta is 0. At alpha = 0 the product is still multiplied by 0
        (NaN where it is inf or NaN), as torch 2.13's baddbmm does, unlike its addmm. RuntimeError unless both are
        3-D with one batch size and matching inner sizes, or when self does not broadcast."""
        if not isinstance(batch1, TensorBase):
            raise RuntimeError(f"baddbmm: batch1 must be a tensor, got {type(batch1).__name__}")
        return self._scaled_sum(batch1.bmm(batch2), beta, alpha, "baddbmm", product_ignored_at_0=False)

    def addmv(self, mat, vec, *, beta=1, alpha=1) -> Self:
        """torch.addmv: beta * self + alpha * (mat @ vec) for mat (n, m) and vec (m,); self broadcasts to (n,); self
        is ignored when beta is 0 and the product when alpha is 0, as torch does. RuntimeError unless mat is 2-D
        and vec 1-D with matching sizes, or when self does not broadcast."""
        if not (isinstance(mat, TensorBase) and isinstance(vec, TensorBase)) or mat.ndim != 2 or vec.ndim != 1 \
                or mat.shape[1] != vec.shape[0]:
            raise RuntimeError(f"addmv: expected a 2-D mat (n, m) and a 1-D vec (m,), got "
                               f"{getattr(mat, 'shape', type(mat).__name__)} and "
                               f"{getattr(vec, 'shape', type(vec).__name__)}")
        return self._scaled_sum(mat.matmul(vec), beta, alpha, "addmv")

    def addbmm(self, batch1, batch2, *, beta=1, alpha=1) -> Self:
        """torch.addbmm: beta * self + alpha * sum_b(batch1[b] @ batch2[b]) for batch1 (b, n, m) and batch2
        (b, m, p); self broadcasts to (n, p); self is ignored when beta is 0 and the product when alpha is 0, as
        torch does. RuntimeError as bmm's for other shapes, or when self does not broadcast."""
        if not isinstance(batch1, TensorBase):
            raise RuntimeError(f"addbmm: batch1 must be a tensor, got {type(batch1).__name__}")
        return self._scaled_sum(batch1.bmm(batch2).sum(0), beta, alpha, "addbmm")

    def trace(self) -> Self:
        """torch.trace: the sum of the main diagonal of a 2-D tensor (ints sum in int64, like torch).
        RuntimeError for another number of dims."""
        if self.ndim != 2:
            raise RuntimeError(f"trace: expected a 2-D tensor, got shape {self.shape}")
        return self.diagonal().sum()

    def cumprod(self, dim: int, dtype=None) -> Self:
        """torch.cumprod: the running product along `dim`, same shape; ints and bools multiply in int64, `dtype`
        casts first. Each output is the product of its window of the input (a (n, n) window per row, multiplied
        pairwise), so gradients are exact at zeros too (torch's). IndexError for a dim out of range."""
        x = self.cast(dtype) if dtype is not None else self
        if x.dtype.is_int or x.dtype == dtypes.bool:
            x = x.cast(dtypes.int64)
        if x.ndim == 0:
            _axis(x, dim, "cumprod")
            return x * 1
        d = _axis(x, dim, "cumprod")
        n = x.shape[d]
        if n == 0:
            return x * 1
        moved = x.transpose(d, -1)
        batch = moved.shape[:-1]
        no_pad = tuple((0, 0) for _ in batch)
        # as cumsum: n-1 ones then the row, repeated n times and re-cut into rows of 2n; row i starts with
        # n-1-i ones followed by x[0..i], so its first n entries multiply to x[0] * ... * x[i]
        padded = moved.pad(no_pad + ((n - 1, 0),), value=1)
        repeated = padded.unsqueeze(-2).expand(batch + (n, 2 * n - 1)).reshape(batch + (n * (2 * n - 1),))
        rows = repeated.pad(no_pad + ((0, n),), value=1).reshape(batch + (n, 2 * n))
        return rows[..., :n].prod(-1).cast(x.dtype).transpose(d, -1)

    def diff(self, n: int = 1, dim: int = -1, prepend=None, append=None) -> Self:
        """torch.diff (numpy.diff): the n-th forward difference along `dim`, out[i] = x[i + 1] - x[i] applied n
        times, after joining `prepend` and `append` (tensors with self's dims, or scalars) to that dim; bool tensors
        give x[i + 1] != x[i]. The dim shrinks by n (to 0 at least). RuntimeError for a 0-d tensor or a negative
        n."""
        if self.ndim == 0:
            raise RuntimeError("diff: expects input to be at least one-dimensional")
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise RuntimeError(f"diff: order must be non-negative but got {n}")
        d = _axis(self, dim, "diff")
        parts = []
        for extra in (prepend, append):
            if extra is not None and not isinstance(extra, TensorBase):
                shape = tuple(1 if a == d else s for a, s in enumerate(self.shape))
                extra = self.full(shape, extra, dtype=self.dtype, device=self.device)
            parts.append(extra)
        x = self
        if parts[0] is not None:
            x = parts[0].cat(x, dim=d)
        if parts[1] is not None:
            x = x.cat(parts[1], dim=d)
        for _ in range(int(n)):
            size = x.shape[d]
            if size == 0:
                break
            later = x.shrink(tuple((1, size) if a == d else None for a in range(x.ndim)))
            earlier = x.shrink(tuple((0, size - 1) if a == d else None for a in range(x.ndim)))
            x = later != earlier if x.dtype == dtypes.bool else later - earlier
        return x

    def median(self, dim=None, keepdim: bool = False):
        """torch.median: without a dim, the lower median of every entry (the ((n - 1) // 2)-th smallest) as a 0-d
        tensor; with an int dim, the named tuple (values, indices) of the lower medians along it (indices int64;
        with ties, the index of one of the equal entries). NaN is returned when the entries include a NaN (its
        index then). The gradient goes to the entry picked. Uses sort (O(n^2) per row). IndexError for an empty
        tensor (with a dim of size 0) or a dim out of range."""
        if dim is None:
            if keepdim:
                raise TypeError("median: keepdim needs a dim (torch.median(input) takes no keepdim)")
            if self.numel() == 0:
                return self.reshape(-1).sum() * math.nan if self.dtype.is_float else \
                    self.reshape(-1).sum().cast(self.dtype)
            # the gradient is shared by the entries equal to the median (all NaN ones for a NaN), like torch
            return self._evenly_distributed(self.detach().reshape(-1).median(0).values)
        if self.ndim == 0:
            _axis(self, dim, "median")
            return MedianResult(self * 1, self.zeros((), dtype=dtypes.int64, device=self.device))
        d = _axis(self, dim, "median")
        size = self.shape[d]
        if size == 0:
            raise IndexError(f"median: cannot compute the median over a dimension of size 0 (shape {self.shape}, "
                             f"dim {d})")
        values, indices = self.kthvalue((size - 1) // 2 + 1, d, keepdim)
        if self.dtype.is_float:
            nan = self != self
            has_nan = nan.any(d, keepdim)
            indices = has_nan.where(nan.cast(dtypes.int8).argmax(d, keepdim), indices)
            # the NaN is read from the entry whose index is returned, so the gradient goes there, like torch
            nan_values = self.gather(d, indices if keepdim else indices.unsqueeze(d))
            values = has_nan.where(nan_values if keepdim else nan_values.squeeze(d), values)
        return MedianResult(values, indices)

    def cross(self, other, dim=None) -> Self:
        """torch.cross / torch.linalg.cross: the cross product of 3-vectors along `dim` (default: the first dim of
        size 3, as torch.cross), with broadcasting and dtype promotion. RuntimeError when that dim is not of size
        3 or no dim is."""
        x, y = self._operands(other, "cross")
        if dim is None:
            sizes = [a for a, s in enumerate(x.shape) if s == 3]
            if not sizes:
                raise RuntimeError(f"cross: no dimension of size 3 in input of shape {x.shape}")
            d = sizes[0]
        else:
            d = _axis(x, dim, "cross")
        if x.shape[d] != 3:
            raise RuntimeError(f"cross: inputs dimension {d} must have length 3, got shape {x.shape}")

        def part(t: TensorBase, i: int) -> TensorBase:
            return t.shrink(tuple((i, i + 1) if a == d else None for a in range(t.ndim)))
        a0, a1, a2 = (part(x, i) for i in range(3))
        b0, b1, b2 = (part(y, i) for i in range(3))
        return (a1 * b2 - a2 * b1).cat(a2 * b0 - a0 * b2, a0 * b1 - a1 * b0, dim=d)
