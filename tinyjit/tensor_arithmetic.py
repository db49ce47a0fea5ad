"""Binary arithmetic, comparisons, bitwise ops and shifts of Tensor, with Python's operators (+, <, &, <<, ...):
dtypes promote and shapes broadcast like PyTorch's (`_operands`), and results match PyTorch's at the special
points (division by zero, negative bases of pow, NaN in comparisons and clamps, shifts past the dtype's width)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import numpy as np

from tinyjit.dtype import DTypeNotSupported, check_fits, dtypes, fits, least_upper_float, promote, scalar_result_dtype
from tinyjit.lazy import Node
from tinyjit.ops import Op
from tinyjit.tensor_base import TensorBase, broadcast_shape

if TYPE_CHECKING:
    from typing_extensions import Self


def _is_bool(x) -> bool:
    """A Python/NumPy bool or a bool tensor."""
    return isinstance(x, (bool, np.bool_)) or isinstance(x, TensorBase) and x.dtype == dtypes.bool


# the most used ops as module constants (reading a member from the Enum class goes through the enum metaclass's
# __getattr__ hook, several times slower than a global)
_ADD, _MUL = Op.ADD, Op.MUL



def _scaled(tensor, other, alpha, op: str):
    """alpha * other for torch.add/sub's `alpha` (other a tensor or a number, broadcast later with `tensor`)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: alpha must be a number, got {type(alpha).__name__}")
    if isinstance(alpha, (float, np.floating)) and not tensor.dtype.is_float and \
            not (isinstance(other, TensorBase) and other.dtype.is_float):
        raise RuntimeError(f"{op}: a float alpha ({alpha}) with integer operands (like PyTorch)")
    if isinstance(other, (TensorBase, int, float, np.number)):
        return other * alpha          # a Python number stays a number (a weak scalar for dtype promotion)
    return tensor._new(np.asarray(other), device=tensor.device) * alpha

class ArithmeticMixin(TensorBase):
    # ---- arithmetic ----
    def add(self, other, reverse=False, *, alpha=1) -> Self:
        """self + other elementwise (torch.add, the + operator); bool + bool is logical or. `other` is a tensor, a
        Python/NumPy number or a list; dtypes promote and shapes broadcast like PyTorch's (ValueError for shapes that do
        not broadcast, RuntimeError for tensors on different devices); `reverse` computes other OP self (the reflected
        operator). `alpha` scales other first (torch.add(x, y, alpha=a) is x + a * y)."""
        if alpha != 1:
            return self.add(_scaled(self, other, alpha, "add"), reverse)
        x, y = self._operands(other, "add", reverse)
        return x._apply(_ADD, y)

    def sub(self, other, reverse=False, *, alpha=1) -> Self:
        """self - other elementwise (torch.sub, the - operator). `other` is a tensor, a Python/NumPy number or a list;
        dtypes promote and shapes broadcast like PyTorch's (ValueError for shapes that do not broadcast, RuntimeError
        for tensors on different devices); `reverse` computes other OP self (the reflected operator). TypeError for bool
        tensors, like PyTorch. `alpha` scales other first (torch.sub(x, y, alpha=a) is x - a * y)."""
        if alpha != 1:
            return self.sub(_scaled(self, other, alpha, "sub"), reverse)
        x, y = self._operands(other, "sub", reverse)
        if x.dtype == dtypes.bool:
            raise TypeError("sub: subtracting bool tensors is not supported; use ^ or logical ops")
        return x._apply(Op.ADD, -y)

    def mul(self, other, reverse=False) -> Self:
        """self * other elementwise (torch.mul, the * operator). `other` is a tensor, a Python/NumPy number or a list;
        dtypes promote and shapes broadcast like PyTorch's (ValueError for shapes that do not broadcast, RuntimeError
        for tensors on different devices); `reverse` computes other OP self (the reflected operator)."""
        if _in_float32_for_half(self, other):
            return self.float().mul(other, reverse).half()
        x, y = self._operands(other, "mul", reverse)
        return x._apply(_MUL, y)

    def div(self, other, reverse=False, rounding_mode: Optional[str] = None) -> Self:
        """self / other elementwise (torch.div, the / operator): true division in the least float dtype that holds both
        (ints and bools divide as float32), IEEE results at 0 (inf, NaN). rounding_mode='trunc' or 'floor' rounds the
        quotient and keeps int dtypes (an int tensor divided by the int 0 raises RuntimeError like PyTorch; by a tensor
        holding 0 it gives 0 there). `other` is a tensor, a
        Python/NumPy number or a list; dtypes promote and shapes broadcast like PyTorch's (ValueError for shapes that do
        not broadcast, RuntimeError for tensors on different devices); `reverse` computes other OP self (the reflected
        operator)."""
        if _in_float32_for_half(self, other):
            return self.float().div(other, reverse, rounding_mode).half()
        if rounding_mode == "floor":
            return self.floordiv(other, reverse)
        if rounding_mode == "trunc":
            self._refuse_int_division_by_zero(other, "div", reverse)
            x, y = self._operands(other, "div", reverse)
            return x._int_divmod(y, "div")[0] if not x.dtype.is_float else (x / y).trunc()
        if not self.dtype.is_float and isinstance(other, (int, float, np.integer, np.floating)):
            # true division is float math on the scalar's own value: uint8 / -3 divides by -3, not by 253
            return self._float().div(other, reverse)
        x, y = self._operands(other, "div", reverse)
        out = least_upper_float(x.dtype)
        x, y = x.cast(out), y.cast(out)
        return x._apply(Op.IDIV, y)   # IEEE division, correctly rounded on every backend (not x * (1 / y))

    def floordiv(self, other, reverse=False) -> Self:
        """floor(self / other) elementwise (torch.floor_divide, the // operator), keeping the promoted dtype: floats
        from the exact remainder like torch (1. // 0.1 is 9), ints floored (by the int 0: RuntimeError, like PyTorch;
        by a tensor holding 0: 0 there), gradient 0. `other` is a tensor, a Python/NumPy number or a list; dtypes
        promote and shapes broadcast like PyTorch's (ValueError for shapes that do not broadcast, RuntimeError for
        tensors on different devices); `reverse` computes other OP self (the reflected operator)."""
        self._refuse_int_division_by_zero(other, "floordiv", reverse)
        x, y = self._operands(other, "floordiv", reverse)
        if x.dtype.is_float:
            return x._float_floordiv(y)
        q, r = x._int_divmod(y, "floordiv")
        # C division truncates; Python and PyTorch floor: step down when the signs differ and it was inexact
        if x.dtype.is_unsigned:
            return q
        inexact = r._apply(Op.CMPNE, x.full_like(0))
        signs_differ = x._apply(Op.CMPLT, x.full_like(0))._apply(
            Op.CMPNE, y._apply(Op.CMPLT, y.full_like(0)))
        return q - (inexact & signs_differ).cast(q.dtype)


    def floor_divide(self, other) -> Self:
        """torch.floor_divide / Tensor.floor_divide: self // other (see floordiv)."""
        return self.floordiv(other)

    def true_divide(self, other) -> Self:
        """torch.true_divide / Tensor.true_divide: self / other (see div)."""
        return self.div(other)
    def _float_floordiv(self, y: Self) -> Self:
        """floor(x / y) for float tensors of one shape and dtype, as torch.floor_divide computes it (c10's
        div_floor_floating, after CPython): from the exact remainder, so that x == (x // y) * y + x % y holds as
        well as it can: 1. // 0.1 is 9 (0.1 is a bit more than 1/10), where floor(1. / 0.1) would be 10. y == 0
        gives x / y (inf or nan); a zero quotient has the sign of x / y. The gradient is zero (torch.div with
        rounding_mode="floor"). half is computed in float32 (torch rounds its intermediates to half and can be one
        off)."""
        if self.dtype.itemsize < 4:
            return self.float()._float_floordiv(y.float()).cast(self.dtype)
        x, y, inputs = self.detach(), y.detach(), (self, y)
        remainder = x._apply(Op.MOD, y)
        quotient = (x - remainder)._apply(Op.IDIV, y)   # an integer, up to the rounding of the division
        wrong_sign = (remainder != 0) & ((y < 0) != (remainder < 0))
        quotient = wrong_sign.where(quotient - 1, quotient)
        floored = quotient.floor()
        floored = (quotient - floored > 0.5).where(floored + 1, floored)
        true_quotient = x._apply(Op.IDIV, y)
        out = (quotient != 0).where(floored, true_quotient * 0)   # true_quotient is finite where quotient is 0
        out = (y == 0).where(true_quotient, out)
        if not any(t.requires_grad for t in inputs):
            return out
        # back in the graph with gradient 0: where out is NaN, out + x * 0 + y * 0 is NaN too
        anchor = out + inputs[0] * 0 + inputs[1] * 0
        return (out == out).where(out, anchor)

    def mod(self, other, reverse=False) -> Self:
        """The remainder with the sign of the divisor elementwise (torch.remainder, Python's %), keeping the promoted
        dtype; floats from the exact fmod, ints raise RuntimeError for the divisor 0 (an int, like
        PyTorch; a tensor divisor holding 0 gives 0 there). `other` is a tensor, a
        Python/NumPy number or a list; dtypes promote and shapes broadcast like PyTorch's (ValueError for shapes that do
        not broadcast, RuntimeError for tensors on different devices); `reverse` computes other OP self (the reflected
        operator)."""
        self._refuse_int_division_by_zero(other, "remainder", reverse)
        x, y = self._operands(other, "mod", reverse)
        if x.dtype.is_float:
            # the exact remainder (fmod) moved to the sign of the divisor, like torch.remainder and Python's %
            # (x - floor(x / y) * y cancels: 1e10 % 3 was 256 in float32)
            r = x._apply(Op.MOD, y)
            return ((r != 0) & ((r < 0) != (y < 0))).where(r + y, r)
        r = x._int_divmod(y, "mod")[1]
        if x.dtype.is_unsigned:
            return r
        # the result takes the sign of the divisor (Python/PyTorch), C's takes the dividend's
        fix = r._apply(Op.CMPNE, r.full_like(0)) & (
            r._apply(Op.CMPLT, r.full_like(0))._apply(Op.CMPNE, y._apply(Op.CMPLT, y.full_like(0))))
        return r + fix.where(y, y.full_like(0))

    def _refuse_int_division_by_zero(self, other, op: str, reverse: bool = False) -> None:
        """RuntimeError("ZeroDivisionError ...") for an integer division (//, %, fmod, div with a rounding mode) of
        an int or bool tensor by the Python or NumPy int 0, as PyTorch raises. (A tensor divisor holding 0 is not
        read to check: its quotient and remainder are 0.)"""
        if reverse or self.dtype.is_float or isinstance(other, (bool, np.bool_)) or \
                not isinstance(other, (int, np.integer)) or other != 0:
            return
        raise RuntimeError(f"ZeroDivisionError: {op} of an integer tensor ({self.dtype.name}, shape {self.shape}) "
                           f"by the integer 0")

    def _int_divmod(self, y: Self, op: str) -> tuple[Self, Self]:
        """C-style (truncating) quotient and remainder of int tensors of one shape and dtype. They never trap: the
        primitives are total (ops.py): x / 0 gives 0 and x % 0 gives 0 (NumPy's results; PyTorch raises), INT_MIN / -1
        wraps to INT_MIN."""
        if self.dtype == dtypes.bool:
            raise TypeError(f"{op}: integer division of bool tensors is not supported; cast to an int dtype first")
        return self._apply(Op.IDIV, y), self._apply(Op.MOD, y)

    def pow(self, exponent, reverse=False) -> Self:
        """self ** exponent (torch.pow; `reverse`: exponent ** self), values and gradients like PyTorch at the
        special points too: 0 ** y, x ** 0 (1 for every x, NaN and inf included, and still in the autograd graph
        with gradient 0), 1 ** y, negative bases (a real result only for integer exponents). A Python int exponent
        multiplies (exact for ints, which wrap on overflow like PyTorch); ints to negative int powers raise
        RuntimeError like PyTorch. The gradients are PyTorch's formulas, y * x ** (y - 1) for the base (0 where
        y == 0) and x ** y * log(x) for the exponent (0 where x == 0 and y >= 0), so inf, NaN and zero meet there
        as in PyTorch."""
        tensors = [t for t in (self, exponent) if isinstance(t, TensorBase)]
        if self.no_grad_active or not any(t.requires_grad for t in tensors) or \
                self.dtype == dtypes.bool and _is_bool(exponent):
            return self._pow_value(exponent, reverse)
        x, y = self._operands(exponent, "pow", reverse)   # the broadcast operands, in the result's dtype
        if not x.dtype.is_float:
            return self._pow_value(exponent, reverse)
        scalar = exponent if not reverse and isinstance(exponent, (int, float)) else None
        x, y = x._frozen(), y._frozen()   # what backward reads, whatever in-place update self gets later

        def backward(grad: Self, saved_result: Self) -> tuple:
            dx = dy = None
            if x.requires_grad:
                if scalar is not None:
                    dx = grad.zeros_like() if scalar == 0 else grad * (scalar * x ** (scalar - 1))
                else:
                    dx = (y == 0).where(0.0, grad * (y * x ** (y - 1)))
            if y.requires_grad:   # (the result, not the bare value: differentiable again under create_graph)
                dy = grad * ((x == 0) & (y >= 0)).where(0.0, saved_result * x.log())
            return dx, dy
        return self._with_gradient(lambda: self._pow_value(exponent, reverse), [x, y], backward, reads_result=True,
                                   saved=[x, y])

    def _pow_value(self, exponent, reverse=False) -> Self:
        """The value of pow (see pow), built of primitives."""
        if self.dtype == dtypes.bool and not reverse and isinstance(exponent, (bool, np.bool_)):
            # PyTorch: a bool tensor to a Python bool power stays bool (x ** True is x, x ** False is all True)
            return (self & True) if exponent else self.full_like(True)
        if self.dtype == dtypes.bool and _is_bool(exponent):
            raise DTypeNotSupported(f"pow: a bool tensor to a bool power is not supported (like PyTorch's \"pow\" "
                                    f"not implemented for 'Bool'); cast the {'exponent' if reverse else 'base'} "
                                    "to an int or float dtype first")
        if not reverse and isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
            # PyTorch's shortcuts for these scalar exponents, which differ from C pow at -inf (nan, not +inf or 0)
            # and -0; its half kernel takes none of them
            if exponent == 0.5 and self.dtype != dtypes.float16:
                return self.sqrt()
            if exponent == -0.5 and self.dtype in (dtypes.float32, dtypes.float64):
                return self.rsqrt()
            if float(exponent).is_integer() and abs(exponent) <= 1 << 10:
                return self._pow_int_scalar(int(exponent))
        x, y = self._operands(exponent, "pow", reverse)
        if not x.dtype.is_float:
            return x._pow_int_tensor(y)
        if x.dtype == dtypes.float16:   # in float32, rounded once (like PyTorch): half's log2 loses the low bits
            return x.float()._pow_float(y.float()).half()
        return x._pow_float(y)

    def _pow_float(self, y: Self) -> Self:
        """self ** y for float tensors of one shape and dtype: |x|^y = 2^(y log2|x|) and its sign away from x == 0,
        an explicit branch at x == 0. Each branch is built so that its gradient is PyTorch's, y x^(y-1) for the base
        and x^y ln(x) for the exponent (0 where x == 0 and y >= 0), without the 0 * inf = NaN a single formula gives
        at x == 0, and every branch stays finite where it is not selected (a where passes it a zero gradient)."""
        x = self
        zero, negative = x == 0, x < 0
        y_int = y.floor() == y                                   # true for +-inf too
        y_odd = y_int & ((y * 0.5).floor() != y * 0.5)
        magnitude = (y * zero.where(1.0, x.abs()).log2()).exp2()
        general = (negative & y_odd).where(-magnitude, magnitude)
        no_real_result = negative & ~y_int & (x != -math.inf)   # NaN, with NaN gradients like PyTorch
        general = no_real_result.where(magnitude * no_real_result.where(x.full_like(math.nan), 1.0), general)
        # x == 0: 0 ** y is 0 (y > 0), 1 (y == 0), inf (y < 0, as 2^(y * -inf): its y-gradient is -inf, PyTorch's
        # inf * log(0)) and NaN for a NaN y. The base's gradient y 0^(y-1) is 1 for y == 1 (x itself), +inf for
        # 0 < y < 1 and -inf for y < 0 (+-sqrt(x), whose gradient at 0 is inf), else 0.
        y_negative = y < 0
        at_zero = (y_negative & zero).where(x.full_like(-math.inf), 0.0)
        at_zero = (y > 0).where(0.0, y_negative.where((y * at_zero).exp2(), (y == 0).where(1.0, y)))
        steep = zero & ((y < 1) & (y != 0))
        root = steep.where(x + 0.0, 1.0).sqrt()   # (+0 for -0: the gradient of sqrt at +0 is +inf)
        at_zero = at_zero + steep.where(y_negative.where(-root, root), 0.0)
        # -0 to an odd integer power keeps its sign: -0 for y > 0, -inf for y < 0 (C pow)
        negative_zero = zero & (x.reciprocal() < 0)
        at_zero = (negative_zero & y_odd).where(-at_zero, at_zero)
        at_zero = (y == 1).where(zero.where(x, 0.0), at_zero)
        out = zero.where(at_zero, general)
        # 2^(y log2|x|) is NaN for inf ** 0, NaN ** 0, 1 ** NaN, 1 ** +-inf and (-1) ** +-inf, which are all 1
        one = ((y == 0) & (x * 0 != 0)) | ((x == 1) & (y != y)) | ((x.abs() == 1) & y.isinf())
        # any other NaN operand gives NaN, explicitly: PoCL folds exp2(NAN * log2(x)) with a literal NaN to 1
        out = ((x != x) | (y != y)).where(x + y, out)
        return one.where(1.0, out)

    def _pow_int_scalar(self, e: int) -> Self:
        """self ** e for a Python int e by repeated squaring: exact for ints (wrapping like PyTorch), and more
        accurate than exp2(e * log2(x)) for floats. x ** 0 is 1 but stays in the autograd graph (gradient 0), and
        x ** 1 is a new tensor, like PyTorch."""
        x = self if self.dtype != dtypes.bool else self.cast(scalar_result_dtype(self.dtype, e))
        if e < 0:
            if not x.dtype.is_float:
                raise RuntimeError(f"pow: integers to negative integer powers are not allowed ({x.dtype.name} "
                                   f"tensor ** {e})")
            # (1/x)^-e, not 1/x^-e: at x == 0 the gradient is then -inf like PyTorch's e * 0^(e-1), not 0 * inf
            return x.reciprocal()._pow_int_scalar(-e)
        if e == 0:
            return x._with_zero_gradient(x.ones_like()) if x.dtype.is_float else x.ones_like()
        out, base = None, x
        while e:
            if e & 1:
                out = base if out is None else out * base
            e >>= 1
            if e:
                base = base * base
        return out if out is not x else x * 1

    def _pow_int_tensor(self, y: Self) -> Self:
        """Elementwise x ** y for int tensors of one dtype: square-and-multiply over every bit of y (wraps on
        overflow). A negative exponent gives 1 / x truncated: 1 for x == 1, +-1 for x == -1, else 0 (PyTorch)."""
        one = self.full_like(1)
        out, base = one, self
        bits = y.dtype.bits - (0 if y.dtype.is_unsigned else 1)
        for i in range(bits):
            bit = (y.rshift(i) & 1) != 0 if i else (y & 1) != 0
            out = bit.where(out * base, out)
            if i + 1 < bits:
                base = base * base
        if y.dtype.is_unsigned:
            return out
        odd = (y & 1) != 0
        minus_one = (self == -1).where(odd.where(-one, one), self.full_like(0))
        negative = (self == 1).where(one, minus_one)
        return (y < 0).where(negative, out)

    def neg(self) -> Self:
        """-self elementwise (torch.neg, unary -), keeping the dtype (unsigned ints wrap); TypeError for a bool tensor,
        like PyTorch."""
        if self.dtype == dtypes.bool:
            raise TypeError("neg: negation of a bool tensor is not supported; use ~ (logical not)")
        return self._apply(Op.NEG)

    def maximum(self, other) -> Self:
        """The larger of self and other elementwise (torch.maximum): NaN wins; at ties the gradient is split evenly
        between the two, like PyTorch. `other` is a tensor, a Python/NumPy number or a list; dtypes promote and shapes
        broadcast like PyTorch's (ValueError for shapes that do not broadcast, RuntimeError for tensors on different
        devices); `reverse` computes other OP self (the reflected operator)."""
        x, y = self._operands(other, "maximum")
        return x._apply(Op.MAX, y)

    def minimum(self, other) -> Self:
        """The smaller of self and other elementwise (torch.minimum): NaN wins; at ties the gradient is split evenly.
        `other` is a tensor, a Python/NumPy number or a list; dtypes promote and shapes broadcast like PyTorch's
        (ValueError for shapes that do not broadcast, RuntimeError for tensors on different devices); `reverse` computes
        other OP self (the reflected operator)."""
        x, y = self._operands(other, "minimum")
        if x.dtype.is_float:
            return -((-x)._apply(Op.MAX, -y))
        # ints and bool: ~ reverses the order without overflow (negating the lowest signed int wraps onto itself)
        return ~((~x)._apply(Op.MAX, ~y))

    def clip(self, min=None, max=None, min_=None, max_=None) -> Self:   # torch's argument names
        """torch.clamp / numpy.clip: clamp(min, max), clamp(min=...), clamp(max=...) with numbers or tensors (broadcast
        to self; min_/max_ are older spellings); keeps self's dtype when the bounds fit it (RuntimeError for an int
        bound outside it, like PyTorch). NaN in self or a bound gives NaN; self keeps its gradient at the bounds (a
        where, not maximum/minimum)."""
        min_ = min if min is not None else min_
        max_ = max if max is not None else max_
        for bound in (min_, max_):
            if isinstance(bound, TensorBase):
                broadcast_shape(self.shape, bound.shape, "clip")
            elif bound is not None and scalar_result_dtype(self.dtype, bound) == self.dtype:
                check_fits(bound, self.dtype, "clip")   # uint8.clip(0, 300) is an error, as in PyTorch
        out = self
        if min_ is not None:
            out = (out < min_).where(min_, out)
        if max_ is not None:
            out = (out > max_).where(max_, out)
        if out.dtype.is_float:
            # NaN anywhere (x or a bound) gives NaN with no gradient to any of them, like torch.clamp
            unordered = out != out
            for bound in (min_, max_):
                if isinstance(bound, TensorBase) or isinstance(bound, float) and math.isnan(bound):
                    unordered = unordered | (bound != bound)
            out = unordered.where(math.nan, out)
        return out

    clamp = clip

    def where(self, x, y) -> Self:
        """torch.where(self, x, y) / numpy.where: x where self (the condition, cast to bool) is true, else y, all three
        broadcast together; x and y are tensors or numbers and their dtypes promote (a number kept in a tensor's dtype
        must fit it: RuntimeError otherwise). The gradient flows to x and y, not to the condition.
        PyTorch's method form, `values.where(condition, other)` (torch.Tensor.where), is recognized when self is not
        bool and `x` is a bool tensor: self is then the values and `x` the condition. For bool values use the
        function form, `tinyjit.where(condition, x, y)` or `condition.where(x, y)`."""
        if self.dtype != dtypes.bool and isinstance(x, TensorBase) and x.dtype == dtypes.bool:
            self, x = x, self   # torch.Tensor.where(condition, y): x.where(cond, y) is where(cond, x, y)
        self._same_device("where", x, y)
        cond = self if self.dtype == dtypes.bool else self.cast(dtypes.bool)
        if not isinstance(x, TensorBase) and not isinstance(y, TensorBase):
            dt = dtypes.from_py(x) if type(x) is type(y) else promote(dtypes.from_py(x), dtypes.from_py(y))
            x = self._new(Node.const(x, dt, (), self.device))
        for tensor, scalar in ((x, y), (y, x)):   # a scalar kept in the tensor's dtype must fit it (PyTorch)
            if isinstance(tensor, TensorBase) and isinstance(scalar, (int, float, np.integer, np.floating)) and \
                    scalar_result_dtype(tensor.dtype, scalar) == tensor.dtype:
                check_fits(scalar, tensor.dtype, "where")
        x, y = (x._operands(y, "where") if isinstance(x, TensorBase) else tuple(reversed(y._operands(x, "where"))))
        shape = broadcast_shape(cond.shape, x.shape, "where")
        cond, x, y = cond._broadcast_to(shape), x._broadcast_to(shape), y._broadcast_to(shape)
        return cond._apply(Op.WHERE, x, y)

    # comparisons
    def _compare(self, other, op: str, reverse: bool = False) -> Self:
        """self <op> other elementwise, a bool tensor. A Python int outside the range of an int tensor's dtype is
        compared by value (NumPy 2), never wrapped into the dtype: `uint8_tensor == 300` is all False and
        `uint8_tensor < 300` all True (PyTorch 2.13 wraps 300 to 44 here; see the README)."""
        if isinstance(other, np.integer):
            other = other.item()
        if isinstance(other, int) and not isinstance(other, bool) and self.dtype.is_int and \
                not fits(other, self.dtype):
            wide = promote(self.dtype, dtypes.from_py(other))
            if wide.is_int:   # a dtype that holds every value of both
                return self.cast(wide)._compare(other, op, reverse)
            # int64 against 2**63 and up, uint64 against a negative int: the scalar is beyond every element
            above = other > 0
            truth = {"eq": False, "ne": True, "lt": above, "le": above, "gt": not above, "ge": not above}[op]
            if reverse and op in ("lt", "le", "gt", "ge"):
                truth = not truth
            return self.full_like(truth, dtype=dtypes.bool)
        x, y = self._operands(other, op, reverse)
        if op == "lt":
            return x._apply(Op.CMPLT, y)
        if op == "gt":
            return y._apply(Op.CMPLT, x)
        if op in ("le", "ge"):   # not (x > y), and neither is NaN (integers never are)
            smaller, larger = (y, x) if op == "le" else (x, y)
            ordered = ~smaller._apply(Op.CMPLT, larger)
            return ordered & (x == x) & (y == y) if x.dtype.is_float else ordered
        if op == "ne":
            return x._apply(Op.CMPNE, y)
        return ~x._apply(Op.CMPNE, y)

    def __lt__(self, other):
        """self < other elementwise (torch.lt). A bool tensor of the broadcast shape. A Python int outside an int
        tensor's range is compared by value, never wrapped (NumPy 2; PyTorch 2.13 wraps it). Dtypes promote and shapes
        broadcast as for +."""
        return self._compare(other, "lt")

    def __gt__(self, other):
        """self > other elementwise (torch.gt). A bool tensor of the broadcast shape. A Python int outside an int
        tensor's range is compared by value, never wrapped (NumPy 2; PyTorch 2.13 wraps it). Dtypes promote and shapes
        broadcast as for +."""
        return self._compare(other, "gt")

    def __le__(self, other):
        """self <= other elementwise (torch.le); False where either side is NaN. A bool tensor of the broadcast shape. A
        Python int outside an int tensor's range is compared by value, never wrapped (NumPy 2; PyTorch 2.13 wraps it).
        Dtypes promote and shapes broadcast as for +."""
        return self._compare(other, "le")

    def __ge__(self, other):
        """self >= other elementwise (torch.ge); False where either side is NaN. A bool tensor of the broadcast shape. A
        Python int outside an int tensor's range is compared by value, never wrapped (NumPy 2; PyTorch 2.13 wraps it).
        Dtypes promote and shapes broadcast as for +."""
        return self._compare(other, "ge")

    def __eq__(self, other):
        """self == other elementwise (torch.eq): a tensor, not a Python bool; NaN equals nothing. A bool tensor of the
        broadcast shape. A Python int outside an int tensor's range is compared by value, never wrapped (NumPy 2;
        PyTorch 2.13 wraps it). Dtypes promote and shapes broadcast as for +."""
        return self._compare(other, "eq")

    def __ne__(self, other):
        """self != other elementwise (torch.ne): a tensor, not a Python bool; NaN differs from everything. A bool tensor
        of the broadcast shape. A Python int outside an int tensor's range is compared by value, never wrapped (NumPy 2;
        PyTorch 2.13 wraps it). Dtypes promote and shapes broadcast as for +."""
        return self._compare(other, "ne")

    lt, gt, le, ge, eq, ne = __lt__, __gt__, __le__, __ge__, __eq__, __ne__

    # bitwise / logical
    def _bitwise(self, other, op: Op, name: str, reverse=False) -> Self:
        x, y = self._operands(other, name, reverse)
        if x.dtype.is_float:
            raise DTypeNotSupported(f"{name}: bitwise ops need int or bool tensors, got {x.dtype.name}")
        return x._apply(op, y)

    def bitwise_and(self, other, reverse=False):
        """self & other elementwise (torch.bitwise_and, logical and for bools); dtypes promote and shapes broadcast as
        for +. TypeError (DTypeNotSupported) for float tensors."""
        return self._bitwise(other, Op.AND, "and", reverse)

    def bitwise_or(self, other, reverse=False):
        """self | other elementwise (torch.bitwise_or, logical or for bools); dtypes promote and shapes broadcast as for
        +. TypeError (DTypeNotSupported) for float tensors."""
        return self._bitwise(other, Op.OR, "or", reverse)

    def bitwise_xor(self, other, reverse=False):
        """self ^ other elementwise (torch.bitwise_xor, logical xor for bools); dtypes promote and shapes broadcast as
        for +. TypeError (DTypeNotSupported) for float tensors."""
        return self._bitwise(other, Op.XOR, "xor", reverse)

    def bitwise_not(self) -> Self:
        """~self elementwise (torch.bitwise_not): every bit flipped, logical not for a bool tensor; keeps the dtype.
        TypeError (DTypeNotSupported) for float tensors."""
        if self.dtype.is_float:
            raise DTypeNotSupported(f"bitwise_not: needs an int or bool tensor, got {self.dtype.name}")
        ones = True if self.dtype == dtypes.bool else -1 if not self.dtype.is_unsigned else (1 << self.dtype.bits) - 1
        return self._apply(Op.XOR, self.full_like(ones))

    def logical_not(self) -> Self:
        """A bool tensor, True where self is zero (torch.logical_not, numpy.logical_not); any dtype (NaN is
        nonzero)."""
        return self == 0 if self.dtype != dtypes.bool else ~self

    def _truths(self, other) -> tuple[Self, Self]:
        """self and `other` (a tensor or anything Tensor() takes) as bool tensors: True where nonzero."""
        other = other if isinstance(other, TensorBase) else self._new(other, device=self.device)
        return tuple(t if t.dtype == dtypes.bool else t != 0 for t in (self, other))

    def logical_and(self, other) -> Self:
        """A bool tensor, True where both are nonzero (torch.logical_and, numpy.logical_and); any dtypes, shapes
        broadcast (RuntimeError when they cannot)."""
        x, y = self._truths(other)
        return x & y

    def logical_or(self, other) -> Self:
        """A bool tensor, True where either is nonzero (torch.logical_or, numpy.logical_or); any dtypes, shapes
        broadcast."""
        x, y = self._truths(other)
        return x | y

    def logical_xor(self, other) -> Self:
        """A bool tensor, True where exactly one is nonzero (torch.logical_xor, numpy.logical_xor); any dtypes,
        shapes broadcast."""
        x, y = self._truths(other)
        return x ^ y

    def lshift(self, bits, reverse=False) -> Self:
        """self << bits elementwise (torch.bitwise_left_shift; `bits` an int or int tensor, dtypes promote as for +). A
        shift by a negative amount or by the dtype's width or more gives 0, as in PyTorch (the hardware's shifts leave
        those undefined). TypeError (DTypeNotSupported) for float and bool tensors."""
        return self._shift(bits, Op.SHL, "lshift", reverse)

    def rshift(self, bits, reverse=False) -> Self:
        """self >> bits elementwise (torch.bitwise_right_shift), arithmetic for signed dtypes. A shift by a negative
        amount or by the dtype's width or more gives 0, or -1 for a negative signed value, as in PyTorch. TypeError
        (DTypeNotSupported) for float and bool tensors."""
        return self._shift(bits, Op.SHR, "rshift", reverse)

    def _shift(self, other, op: Op, name: str, reverse: bool) -> Self:
        x, y = self._operands(other, name, reverse)
        if not x.dtype.is_int:
            raise DTypeNotSupported(f"{name}: shifts need int tensors, got {x.dtype.name}"
                                    f"{' (bools shift as ints: cast one of them)' if x.dtype == dtypes.bool else ''}")
        constant = isinstance(other, (int, np.integer)) and not reverse
        if constant and 0 <= other < x.dtype.bits:
            return x._apply(op, y)
        zero = x.full_like(0)
        overflow = zero if op == Op.SHL or x.dtype.is_unsigned else (x < 0).where(x.full_like(-1), zero)
        if constant:
            return overflow
        in_range = ~(y < 0) & (y < x.dtype.bits)
        return in_range.where(x._apply(op, in_range.where(y, 0)), overflow)

    __add__ = add
    __mul__ = mul
    __truediv__ = div
    __floordiv__ = floordiv
    __mod__ = mod
    __pow__ = pow
    __sub__ = sub
    __and__ = bitwise_and
    __or__ = bitwise_or
    __xor__ = bitwise_xor
    __invert__ = bitwise_not
    __lshift__ = lshift
    __rshift__ = rshift
    __neg__ = neg

    def __radd__(self, other): return self.add(other, reverse=True)            # noqa: E704
    def __rsub__(self, other): return self.sub(other, reverse=True)            # noqa: E704
    def __rmul__(self, other): return self.mul(other, reverse=True)            # noqa: E704
    def __rtruediv__(self, other): return self.div(other, reverse=True)        # noqa: E704
    def __rfloordiv__(self, other): return self.floordiv(other, reverse=True)  # noqa: E704
    def __rmod__(self, other): return self.mod(other, reverse=True)            # noqa: E704
    def __rpow__(self, other): return self.pow(other, reverse=True)            # noqa: E704
    def __rand__(self, other): return self.bitwise_and(other, reverse=True)    # noqa: E704
    def __ror__(self, other): return self.bitwise_or(other, reverse=True)      # noqa: E704
    def __rxor__(self, other): return self.bitwise_xor(other, reverse=True)    # noqa: E704
    def __rlshift__(self, other): return self.lshift(other, reverse=True)      # noqa: E704
    def __rrshift__(self, other): return self.rshift(other, reverse=True)      # noqa: E704
    def __matmul__(self, other): return self.matmul(other)                     # noqa: E704
    def __rmatmul__(self, other): return self._new(other, device=self.device).matmul(self)  # noqa: E704


def _in_float32_for_half(x, other) -> bool:
    """Whether x * other or x / other runs in float32 and rounds once to float16, as PyTorch computes them: x is a
    float16 tensor and `other` a Python or NumPy number that float16 cannot hold (|v| > 65504 rounds to inf, |v| below
    2**-25 to 0). Rounded first, 0 * 1e5 would be 0 * inf = NaN and 2 / 1e5 would be 0 (PyTorch: 0 and 2e-5). A number
    float16 holds keeps the usual rules (its rounding is what tinyjit's own formulas expect: exp's x * log2(e) is read
    by exp2 as one product); PyTorch rounds the number to float16 for + and - too (-60000 + 1e5 is inf in both)."""
    dtype = x.node.dtype   # (kind and size, not `== dtypes.float16`, a Python call: every * and / asks this)
    if dtype.kind != "f" or dtype.itemsize != 2 or isinstance(other, (bool, np.bool_)) or \
            not isinstance(other, (int, float, np.integer, np.floating)):
        return False
    try:
        value = float(other)
    except OverflowError:   # (an int beyond any float: left to the usual rules)
        return False
    if value == 0 or not math.isfinite(value):
        return False
    with np.errstate(over="ignore", under="ignore"):
        rounded = float(np.float16(value))
    return math.isinf(rounded) or rounded == 0
