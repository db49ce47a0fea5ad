"""Unary math of Tensor (exp, log, trig, activations, rounding), composed from the primitives EXP2, LOG2, SIN,
SQRT, RECIP and elementwise arithmetic; written for accuracy near 0 and for gradients that match PyTorch."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tinyjit.composite_cache import templated
from tinyjit.dtype import dtypes, least_upper_float
from tinyjit.ops import Op
from tinyjit.tensor_base import TensorBase, broadcast_shape

if TYPE_CHECKING:
    from typing_extensions import Self


# the fit of erf(x) / x = P(t) / Q(t), t = x^2, as float32 coefficients from t^0 up (see MathMixin._erf_value)
_ERF_NUMERATOR = (1.128379225730896, 0.18510639667510986, 0.054221007972955704, 0.0038350007962435484,
                  0.00037589791463688016, 4.586430804920383e-06, -1.2676706795389237e-08)
_ERF_DENOMINATOR = (1.0, 0.49737969040870667, 0.1138448715209961, 0.015419740229845047, 0.0012996414443477988,
                    6.218520866241306e-05)


def _horner(t, coefficients: tuple[float, ...]):
    """sum(c_i t^i) by Horner's rule, the coefficients from t^0 up."""
    value = t * coefficients[-1] + coefficients[-2]
    for c in coefficients[-3::-1]:
        value = value * t + c
    return value


class MathMixin(TensorBase):
    def _float(self) -> Self:
        return self.cast(least_upper_float(self.dtype))

    def _with_zero_gradient(self, value: Self) -> Self:
        """`value` (of self's shape), recorded as computed from self with gradient 0: PyTorch keeps the results of
        piecewise-constant ops (trunc, sign, x ** 0) in the graph, so backward() through them gives zeros instead of
        raising. A where on a constant True condition: the value is exact, whatever self holds (inf, NaN)."""
        return self.full_like(True, dtype=dtypes.bool).where(value, self)

    def _half_in_float32(self, fn) -> Self | None:
        """fn computed in float32 and rounded to half once, for a half tensor (like torch's half math); None for
        other dtypes. Composites of several ops would otherwise round to half after each of them."""
        return fn(self.float()).half() if self.dtype == dtypes.float16 else None

    def exp2(self) -> Self:
        """2 ** x elementwise (torch.exp2), for float tensors; ints and bools are computed in the default float dtype
        (float32); the primitive EXP2."""
        return self._float()._apply(Op.EXP2)

    def log2(self) -> Self:
        """Base-2 logarithm elementwise (torch.log2), for float tensors; ints and bools are computed in the default
        float dtype (float32): -inf at 0, NaN below it; the primitive LOG2."""
        return self._float()._apply(Op.LOG2)

    def sqrt(self) -> Self:
        """Square root elementwise (torch.sqrt), for float tensors; ints and bools are computed in the default float
        dtype (float32): NaN below 0; the primitive SQRT."""
        return self._float()._apply(Op.SQRT)

    def sin(self) -> Self:
        """Sine elementwise, in radians (torch.sin), for float tensors; ints and bools are computed in the default float
        dtype (float32); the primitive SIN."""
        return self._float()._apply(Op.SIN)

    def reciprocal(self) -> Self:
        """1 / x elementwise (torch.reciprocal), for float tensors; ints and bools are computed in the default float
        dtype (float32): +-inf at +-0; the primitive RECIP."""
        return self._float()._apply(Op.RECIP)
    # the renderers evaluate exp2(x * c) with the product to twice the precision (codegen/llvm_math.py)
    def exp(self) -> Self:
        """e ** x elementwise (torch.exp), for float tensors; ints and bools are computed in the default float dtype
        (float32); computed as exp2(x / ln 2), the product carried to twice the precision by the renderers."""
        return (self._float() * (1 / math.log(2))).exp2()

    def log(self) -> Self:
        """Natural logarithm elementwise (torch.log), for float tensors; ints and bools are computed in the default
        float dtype (float32): -inf at 0, NaN below it."""
        return self.log2() * math.log(2)

    def rsqrt(self) -> Self:
        """1 / sqrt(x) elementwise (torch.rsqrt), for float tensors; ints and bools are computed in the default float
        dtype (float32): inf at 0, NaN below it."""
        return self.sqrt().reciprocal()
    # SIN with a quarter-turn phase: no rounded pi/2 - x, so large arguments keep their accuracy
    def cos(self) -> Self:
        """Cosine elementwise, in radians (torch.cos), for float tensors; ints and bools are computed in the default
        float dtype (float32); SIN with a quarter-turn phase, so large arguments keep their accuracy."""
        return self._float()._apply(Op.SIN, arg=1)

    def tan(self) -> Self:
        """Tangent elementwise, sin(x) / cos(x) (torch.tan), for float tensors; ints and bools are computed in the
        default float dtype (float32)."""
        return self.sin() / self.cos()

    def square(self) -> Self:
        """self * self elementwise (torch.square), keeping the dtype; a bool tensor is squared as int64, like
        torch.square (pow(x, 2))."""
        x = self.cast(dtypes.int64) if self.dtype == dtypes.bool else self
        return x * x

    def relu(self) -> Self:
        """max(x, 0) elementwise (torch.relu), keeping the dtype; NaN stays NaN, and the gradient at 0 is 0 like
        PyTorch's."""
        return ((self > 0) | self.isnan()).where(self, 0)   # grad 0 at 0

    @templated   # (built from a template after the first call: tinyjit.composite_cache)
    def silu(self) -> Self:
        """x * sigmoid(x) elementwise (torch.nn.functional.silu, also called swish); ints and bools become the default
        float."""
        return self * self.sigmoid()

    swish = silu

    @templated   # (built from a template after the first call: tinyjit.composite_cache)
    def expm1(self) -> Self:
        """e^x - 1 elementwise (torch.expm1), for float tensors; ints and bools are computed in the default float dtype
        (float32); accurate for small x too (a Taylor polynomial for |x| < 0.25, where e^x - 1 cancels)."""
        x = self._float()
        if (half := x._half_in_float32(MathMixin.expm1)) is not None:
            return half
        small = (x < 0.25) & (x > -0.25)
        xs = small.where(x, 0.0)
        n = {2: 4, 4: 6, 8: 12}[x.dtype.itemsize]
        poly = xs * (1.0 / math.factorial(n)) + 1.0 / math.factorial(n - 1)
        for k in range(n - 2, 0, -1):
            poly = poly * xs + 1.0 / math.factorial(k)
        return small.where(poly * xs, x.exp() - 1)

    @templated   # (built from a template after the first call: tinyjit.composite_cache)
    def log1p(self) -> Self:
        """log(1 + x) elementwise (torch.log1p), for float tensors; ints and bools are computed in the default float
        dtype (float32); accurate for small x too (an atanh series for |x| < 0.25)."""
        x = self._float()
        if (half := x._half_in_float32(MathMixin.log1p)) is not None:
            return half
        small = (x < 0.25) & (x > -0.25)
        s = small.where(x, 0.0) / (small.where(x, 0.0) + 2)
        s2 = s * s
        terms = {2: 3, 4: 5, 8: 10}[x.dtype.itemsize]
        series = s2 * (1.0 / (2 * terms + 1))
        for k in range(terms - 1, 0, -1):
            series = (series + 1.0 / (2 * k + 1)) * s2
        return small.where(2 * s * (series + 1.0), (1 + x).log())

    @templated   # (built from a template after the first call: tinyjit.composite_cache)
    def tanh(self) -> Self:
        """Hyperbolic tangent elementwise (torch.tanh), for float tensors; ints and bools are computed in the default
        float dtype (float32); through expm1(-2|x|), accurate near 0 and never overflowing. half is computed in float32
        and rounded once."""
        # through expm1(-2|x|), in (-1, 0]: accurate near 0 (1 - 2 / (e^2x + 1) cancels) and never overflows
        x = self._float()
        if (half := x._half_in_float32(MathMixin.tanh)) is not None:
            return half
        if self.no_grad_active or not x.requires_grad:
            return x._tanh_value()
        return x._with_result_gradient(x._tanh_value, lambda y: 1 - y * y)   # PyTorch's tanh_backward

    def _tanh_value(self) -> Self:
        """tanh of a float tensor, its value only (tanh gives the gradient)."""
        neg = self < 0
        t = (-2 * neg.where(-self, self)).expm1()
        r = -t / (t + 2)
        return neg.where(-r, r)

    @templated   # (built from a template after the first call: tinyjit.composite_cache)
    def sigmoid(self) -> Self:
        """1 / (1 + e^-x) elementwise (torch.sigmoid), for float tensors; ints and bools are computed in the default
        float dtype (float32); through e^-|x|, so neither the value nor the gradient overflows for large |x|."""
        # through e^-|x|, which never overflows: 1 / (1 + e^-x) has a finite value at x = -100 but its
        # gradient would be 0 * inf = NaN
        x = self._float()
        if (half := x._half_in_float32(MathMixin.sigmoid)) is not None:
            return half
        if self.no_grad_active or not x.requires_grad:
            return x._sigmoid_value()
        return x._with_result_gradient(x._sigmoid_value, lambda y: y * (1 - y))   # PyTorch's sigmoid_backward

    def _sigmoid_value(self) -> Self:
        """sigmoid of a float tensor, its value only (sigmoid gives the gradient)."""
        neg = self < 0
        z = neg.where(self, -self).exp()
        return neg.where(z, 1.0) / (1 + z)

    def abs(self) -> Self:
        """|x| elementwise (torch.abs), keeping the dtype (unsigned and bool tensors are returned as they are); -0.0
        becomes +0.0, NaN stays NaN, and the gradient at 0 is 0 like PyTorch's."""
        if self.dtype.is_unsigned or self.dtype == dtypes.bool:
            return self
        # float: max(x, -x) gives +0 for -0, keeps NaN, and (MAX splits ties) has gradient 0 at 0 like PyTorch
        return (self < 0).where(-self, self) if not self.dtype.is_float else self.maximum(-self)

    def sign(self) -> Self:
        """-1, 0 or 1 by the sign of each element (torch.sign), keeping the dtype; sign(NaN) is 0 like PyTorch, and the
        result stays in the autograd graph with gradient 0."""
        zero = self.full_like(0)
        one = self.full_like(1)
        if self.dtype.is_unsigned or self.dtype == dtypes.bool:
            return (self != 0).where(one, zero)
        # self * 0 keeps sign(x) in the autograd graph (zero gradient, like PyTorch); sign(nan) == 0 like PyTorch
        out = (self < 0).where(-one, (self > 0).where(one, self * 0))
        return (self != self).where(zero, out) if self.dtype.is_float else out

    def leaky_relu(self, negative_slope: float = 0.01) -> Self:
        """x where x > 0, else negative_slope * x (torch.nn.functional.leaky_relu); the dtype promotes as for x *
        negative_slope."""
        return (self > 0).where(self, self * negative_slope)

    def elu(self, alpha: float = 1.0) -> Self:
        """x where x > 0, else alpha * (e^x - 1) (torch.nn.functional.elu), for float tensors; ints and bools are
        computed in the default float dtype (float32); NaN keeps gradient 1 like PyTorch."""
        x = self._float()
        pos = (x > 0) | (x != x)   # NaN takes the linear branch: NaN with gradient 1, like PyTorch
        # expm1 keeps small negative x accurate; it only sees x <= 0, so it never overflows (nor its gradient)
        return pos.where(x, alpha * pos.where(0.0, x).expm1())

    def softplus(self, beta: float = 1.0, threshold: float = 20.0) -> Self:
        """log(1 + e^(beta x)) / beta, and x itself where beta * x > threshold (torch.nn.functional.softplus), for float
        tensors; ints and bools are computed in the default float dtype (float32); computed without overflow, gradient
        0.5 at 0."""
        bx = self._float() * beta
        # log(1 + e^x) computed stably as max(x, 0) + log(1 + e^-|x|), written with where so that the gradient
        # at 0 is sigmoid(0) = 0.5
        pos = bx > 0
        soft = (pos.where(bx, 0.0) + pos.where(-bx, bx).exp().log1p()) / beta   # log1p: exact for tiny e^-|x|
        return (bx > threshold).where(self._float(), soft)

    def mish(self) -> Self:
        """x * tanh(softplus(x)) elementwise (torch.nn.functional.mish); ints and bools become the default float."""
        return self * self.softplus().tanh()

    def hardswish(self) -> Self:
        """x * relu6(x + 3) / 6. The kinks are decided on x itself (not on a computed x + 3, whose rounding
        depends on how a kernel was fused), with PyTorch's gradient there: 0 at -3, 1 at 3."""
        x = self._float()
        upper = (x >= 3) | (x != x)   # NaN too: NaN with gradient 1, like PyTorch
        middle = ~upper & (x > -3)
        xm = middle.where(x, 0.0)     # the polynomial never sees inf or NaN, so its zero gradient stays 0
        # x * 0 below -3: -0 like PyTorch (x * relu6(x + 3) / 6), and NaN at -inf
        return (x <= -3).where(x * 0.0, upper.where(x, xm * (xm + 3) / 6))

    def hardsigmoid(self) -> Self:
        """relu6(x + 3) / 6 elementwise (torch.nn.functional.hardsigmoid), a float (ints become float32), with
        gradient 1/6 strictly inside (-3, 3) and 0 at and beyond +-3, like PyTorch."""
        x = self._float()
        return x._hardtanh((x + 3) / 6, -3, 3, 0.0, 1.0, nan_gradient=False)

    def relu6(self) -> Self:
        """min(max(x, 0), 6) elementwise (torch.nn.functional.relu6), keeping the dtype, with gradient 1 strictly
        inside (0, 6) and 0 at the bounds (PyTorch's hardtanh rule; `clip` instead passes the gradient at its bounds,
        like torch.clamp)."""
        return self._hardtanh(self, 0, 6, 0, 6, nan_gradient=True)

    def _hardtanh(self, inside, lo, hi, low_value, high_value, nan_gradient: bool) -> Self:
        """`inside` where lo < self < hi, `low_value` at and below lo, `high_value` at and above hi; NaN stays NaN,
        with gradient 1 (`nan_gradient`: PyTorch's hardtanh/relu6) or 0 (hardsigmoid). Comparing self (not a
        computed value) keeps the kinks exact on every backend."""
        out = (self >= hi).where(high_value, self if nan_gradient else self.detach())   # NaN reaches this branch
        out = (self <= lo).where(low_value, out)
        return ((self > lo) & (self < hi)).where(inside, out)

    @templated   # (built from a template after the first call: tinyjit.composite_cache)
    def gelu(self, approximate: str = "none") -> Self:
        """x * Phi(x), Phi the standard normal CDF computed with erf (torch.nn.functional.gelu); approximate='tanh' uses
        PyTorch's tanh formula. Ints and bools become the default float."""
        x = self._float()
        if approximate == "tanh":
            return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)).tanh())
        return 0.5 * x * (1 + (x * (1 / math.sqrt(2))).erf())

    def erf(self) -> Self:
        """The error function elementwise (torch.erf, scipy.special.erf), for float tensors; ints and bools are computed
        in the default float dtype (float32): float32 from one rational fit (within ~5 ulp, exactly +-1 beyond +-3.9),
        float16 from it and rounded once, float64 to ~1e-15 from a series and a continued fraction."""
        x = self._float()
        if self.no_grad_active or not x.requires_grad:
            return x._erf_value()
        frozen = x._frozen()
        # the exact derivative 2/sqrt(pi) e^(-x^2), like torch: differentiating the approximation was NaN at +-inf
        # (0 * inf inside it) and off by up to ~1e-6 relative
        return x._with_gradient(lambda: frozen.detach()._erf_value(), [frozen],
                                lambda grad: (grad * (-frozen * frozen).exp() * (2 / math.sqrt(math.pi)),),
                                saved=[frozen])

    def _erf_value(self) -> Self:
        """erf of a float tensor, its value only (erf gives the gradient)."""
        x = self
        if x.dtype == dtypes.float64:
            return x._erf_float64()
        if (half := x._half_in_float32(MathMixin._erf_value)) is not None:
            return half
        # erf(x) = x P(x^2) / Q(x^2): a rational fit of erf(x)/x on [0, 3.9] (a weighted least-squares fit,
        # reweighted toward the minimax error, in float64 against mpmath, then rounded to float32), within ~5 ulp in
        # float32 arithmetic (test_numerics). No exp and no branches: half the time of a series near 0 plus a
        # rational approximation of erfc with an exp beyond, which this replaced (GELU's forward in transformers).
        # Beyond +-3.9, erf is +-1 in float32 (exactly: gelu's 1 + erf(x) must be 0 there), and the fit only sees
        # [-3.9, 3.9] (NaN passes, failing both compares); it can overshoot 1 by an ulp, kept in [-1, 1].
        above, below = x > 3.9, x < -3.9
        xc = above.where(3.9, below.where(-3.9, x))
        t = xc * xc
        y = xc * _horner(t, _ERF_NUMERATOR) / _horner(t, _ERF_DENOMINATOR)
        y = (y > 1.0).where(1.0, (y < -1.0).where(-1.0, y))
        return above.where(1.0, below.where(-1.0, y))

    def _erf_float64(self) -> Self:
        """erf to ~1e-15: the Taylor series for |x| < 2, and 1 - erfc(|x|) beyond, erfc from its continued
        fraction e^-x^2 / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...)))) evaluated from the tail."""
        neg = self < 0
        ax = neg.where(-self, self)
        small = ax < 2.0
        xs = small.where(ax, 0.0)
        x2 = xs * xs
        series = x2 * ((-1) ** 32 / (math.factorial(32) * 65))
        for n in range(31, 0, -1):
            series = (series + (-1) ** n / (math.factorial(n) * (2 * n + 1))) * x2
        series = (series + 1.0) * xs * (2 / math.sqrt(math.pi))
        xb = small.where(2.0, ax)
        fraction = xb
        for k in range(40, 0, -1):
            fraction = xb + (k / 2) / fraction
        tail = 1.0 - (-xb * xb).exp() / (fraction * math.sqrt(math.pi))
        y = small.where(series, tail)
        return neg.where(-y, y)

    def _to_integral(self, mode: str) -> Self:
        """round (half to even), trunc, floor or ceil of a float tensor, exact for every value, in float arithmetic
        alone: from 2**mantissa_bits on every value is an integer already, and below it (|x| + 2**m) - 2**m is |x|
        rounded to the nearest integer, ties to even, by the hardware (IEEE elementwise code, nothing reassociates
        it). NaN and inf pass through; a zero result has the sign of x (ceil(-0.5) is -0.0) and the gradient is
        zero, both like torch."""
        if not self.dtype.is_float:
            return self
        x = self.detach()
        big = 2.0 ** {2: 10, 4: 23, 8: 52}[x.dtype.itemsize]
        magnitude = x.abs()
        nearest = (magnitude < big).where((magnitude + big) - big, magnitude)
        if mode == "trunc":
            nearest = (nearest > magnitude).where(nearest - 1, nearest)
        out = (x < 0).where(-nearest, nearest)
        if mode == "floor":
            out = (out > x).where(out - 1, out)
        elif mode == "ceil":
            out = (out < x).where(out + 1, out)
        # self * 0 is a zero with the sign of x here (|x| < 1), and keeps the result in the graph with gradient 0
        return (out == 0).where(self * 0, out)

    def trunc(self) -> Self:
        """Rounded toward zero elementwise (torch.trunc, numpy.trunc), exact for every float value and keeping the
        dtype; ints are returned as they are; the gradient is 0."""
        return self._to_integral("trunc")

    def floor(self) -> Self:
        """Rounded down elementwise (torch.floor, numpy.floor), exact for every float value and keeping the dtype; ints
        are returned as they are; the gradient is 0."""
        return self._to_integral("floor")

    def ceil(self) -> Self:
        """Rounded up elementwise (torch.ceil, numpy.ceil), exact for every float value and keeping the dtype
        (ceil(-0.5) is -0.0); ints are returned as they are; the gradient is 0."""
        return self._to_integral("ceil")

    def round(self) -> Self:
        """Rounded to the nearest integer, half to even, elementwise (torch.round, numpy.round), exact for every float
        value and keeping the dtype; ints are returned as they are; the gradient is 0."""
        return self._to_integral("round")

    def isnan(self) -> Self:
        """A bool tensor of self's shape: True where the element is NaN (torch.isnan); all False for ints."""
        return self != self

    def isinf(self) -> Self:
        """A bool tensor of self's shape: True where the element is +inf or -inf (torch.isinf)."""
        return (self == math.inf) | (self == -math.inf)

    def isclose(self, other, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Self:
        """torch.isclose: |self - other| <= atol + rtol * |other| elementwise (bool), equal infinities are close,
        NaN is close to NaN only with equal_nan. Broadcasts; dtypes promote."""
        x, y = self._operands(other, "isclose")
        if not x.dtype.is_float:
            return x == y
        close = (x == y) | ((x - y).abs() <= atol + rtol * y.abs()) & ~x.isinf() & ~y.isinf()
        return close | (x.isnan() & y.isnan()) if equal_nan else close

    def allclose(self, other, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> bool:
        """torch.allclose: whether isclose holds everywhere (a Python bool: realizes both tensors)."""
        return bool(self.isclose(other, rtol, atol, equal_nan).all().item())

    def masked_fill(self, mask, value) -> Self:
        """torch.masked_fill: `value` (a number or a 0-d tensor) where the bool `mask` (broadcast to self's shape)
        is True, self elsewhere; the result keeps self's dtype. TypeError unless mask is bool."""
        if not isinstance(mask, TensorBase) or mask.dtype != dtypes.bool:
            raise TypeError(f"masked_fill: the mask must be a bool tensor, got "
                            f"{mask.dtype.name if isinstance(mask, TensorBase) else type(mask).__name__}")
        if broadcast_shape(mask.shape, self.shape, "masked_fill") != self.shape:
            raise RuntimeError(f"masked_fill: the mask of shape {mask.shape} does not broadcast to {self.shape}")
        if isinstance(value, TensorBase):
            if value.ndim:
                raise RuntimeError(f"masked_fill: only a 0-d value tensor is supported, got shape {value.shape}")
            value = value.cast(self.dtype)
        elif not self.dtype.is_float and isinstance(value, float):
            value = int(value) if math.isfinite(value) else value
        out = mask.where(value, self)
        return out if out.dtype == self.dtype else out.cast(self.dtype)

    def masked_fill_(self, mask, value) -> Self:
        """torch.Tensor.masked_fill_: masked_fill written into self; returns self. Errors as for masked_fill, and
        RuntimeError for a leaf that requires grad outside no_grad."""
        return self._inplace("masked_fill_", lambda: self.masked_fill(mask, value))

    def lerp(self, end, weight) -> Self:
        """self + weight * (end - self) elementwise (torch.lerp); end and weight are tensors or numbers and broadcast,
        dtypes promote as for the arithmetic. Like torch, a weight of magnitude 0.5 or more computes
        end - (end - self) * (1 - weight) instead (exact at weight 1, and inf and NaN where torch has them)."""
        if isinstance(weight, TensorBase):
            small = weight.abs() < 0.5
            return small.where(self + weight * (end - self), end - (end - self) * (1 - weight))
        if abs(weight) < 0.5:
            return self + weight * (end - self)
        return end - (end - self) * (1 - weight)
