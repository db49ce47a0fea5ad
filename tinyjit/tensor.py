"""The user-facing Tensor: a lazy value on a device. Every method builds graph nodes; `.numpy()`, `.item()` and
`.realize()` schedule, compile and run what is needed.

Composite ops (sigmoid, softmax, matmul, conv2d, ...) are written here and in the mixins from the primitives
of `tinyjit.ops`; codegen and autograd only ever see primitives.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np

from tinyjit.device import Buffer, canonicalize
from tinyjit.dtype import DType, dtypes, least_upper_float, promote, scalar_result_dtype
from tinyjit.helpers import prod
from tinyjit.lazy import Node
from tinyjit.ops import Op
from tinyjit.tensor_autograd import AutogradMixin
from tinyjit.tensor_movement import MovementMixin
from tinyjit.tensor_nn import NNMixin
from tinyjit.tensor_reduce import ReduceMixin

Scalar = Union[int, float, bool]


class Tensor(AutogradMixin, MovementMixin, ReduceMixin, NNMixin):
    __slots__ = ("node", "_requires_grad", "grad", "_ctx")
    training = False
    no_grad_active = False

    def __init__(self, data, dtype=None, device: Optional[str] = None, requires_grad: Optional[bool] = None):
        device = canonicalize(device)
        dtype = dtypes.from_any(dtype) if dtype is not None else None
        if isinstance(data, Node):
            node = data
        elif isinstance(data, Tensor):
            node = data.node if dtype is None else data.cast(dtype).node
        elif isinstance(data, (bool, int, float)):
            dt = dtype or dtypes.from_py(data)
            node = Node.const(data, dt, (), device)
        else:
            if isinstance(data, (list, tuple)):
                try:
                    arr = np.array(data)
                except ValueError:
                    raise ValueError("Tensor: nested lists must be rectangular (every row the same length)") from None
                if arr.dtype == np.float64 and dtype is None:
                    arr = arr.astype(np.float32)
                elif arr.dtype == np.int64 and dtype is None and arr.size:
                    arr = arr.astype(np.int32) if np.abs(arr).max() < 2 ** 31 else arr
                elif arr.size == 0 and dtype is None:
                    arr = arr.astype(np.float32)
            elif isinstance(data, np.ndarray) or np.isscalar(data):
                arr = np.asarray(data)
            else:
                raise TypeError(f"Tensor: cannot make a tensor from {type(data).__name__}")
            if arr.dtype.kind in "OUSV":
                raise TypeError(f"Tensor: unsupported data of dtype {arr.dtype}")
            if dtype is not None:
                arr = arr.astype(dtype.np)
            dt = dtypes.from_np(arr.dtype)
            buf = Buffer(device, arr.size, dt).copyin(arr)
            node = Node.from_buffer(buf, arr.shape)
        self.node: Node = node
        self._ctx = None   # autograd: the op that made this tensor when it was recorded (None for a leaf)
        self.grad: Optional[Tensor] = None
        self.requires_grad = requires_grad

    # ---- properties ----
    @property
    def shape(self) -> tuple[int, ...]:
        return self.node.shape

    @property
    def dtype(self) -> DType:
        return self.node.dtype

    @property
    def device(self) -> str:
        return self.node.device

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        return prod(self.shape)

    def size(self, dim: Optional[int] = None):
        return self.shape if dim is None else self.shape[dim]

    def element_size(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.numel() * self.dtype.itemsize

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        state = "realized" if self.node.realized else "lazy"
        return f"<Tensor {self.shape} {self.dtype.name} on {self.device} ({state})>"

    def __hash__(self):
        return id(self)

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.numel()} elements is ambiguous")
        return bool(self.item())

    # ---- running ----
    def realize(self) -> Tensor:
        from tinyjit.realize import realize_nodes
        if self.node.realized:
            return self
        realize_nodes([self.node])
        self._collapse()
        return self

    @staticmethod
    def realize_all(*tensors: Tensor) -> None:
        """Realize several tensors in one schedule, so work they share (a forward pass, a backward pass, the
        optimizer updates that assign into parameters) is computed once and fused across them."""
        from tinyjit.realize import realize_nodes
        realize_nodes([t.node for t in tensors])
        for t in tensors:
            t._collapse()

    def _collapse(self) -> None:
        """Point at the realized buffer directly so the graph that made it can be freed. A result that requires
        grad keeps its graph (backward after .item() must reach the parameters), but an assign always collapses
        (or every optimizer step would grow the graph)."""
        if self.node.realized and self.node.op != Op.BUFFER and (self._ctx is None or self.node.op == Op.ASSIGN):
            self.node = Node.from_buffer(self.node.buffer, self.shape)

    def numpy(self) -> np.ndarray:
        self.realize()
        return self.node.buffer.numpy().reshape(self.shape)

    def tolist(self):
        return self.numpy().tolist()

    def item(self):
        if self.numel() != 1:
            raise RuntimeError(f"item(): only a tensor with one element can be converted to a Python scalar, "
                               f"got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def contiguous(self) -> Tensor:
        if self.node.op == Op.BUFFER:
            return self
        return Tensor(Node(Op.CONTIGUOUS, (self.node,), None, self.dtype, self.shape, self.device))._record(self)

    def to(self, device: Optional[str]) -> Tensor:
        device = canonicalize(device)
        if device == self.device:
            return self
        return Tensor(Node(Op.COPY, (self.node,), None, self.dtype, self.shape, device))._record(self)

    def cpu(self) -> Tensor:
        return self.to("CPU")

    def clone(self) -> Tensor:
        return Tensor(Node(Op.CONTIGUOUS, (self.node,), None, self.dtype, self.shape, self.device))._record(self)

    def assign(self, value) -> Tensor:
        """Write `value` into this tensor's buffer (in place: the buffer is reused, not reallocated)."""
        value = value if isinstance(value, Tensor) else Tensor(value, dtype=self.dtype, device=self.device)
        if value.shape != self.shape and value.ndim <= self.ndim and \
                broadcast_shape(value.shape, self.shape, "assign") == self.shape:
            value = value._broadcast_to(self.shape)
        if value.shape != self.shape or value.device != self.device:
            raise ValueError(f"assign: value of shape {value.shape} on {value.device} does not fit the target of "
                             f"shape {self.shape} on {self.device}")
        if value.dtype != self.dtype:
            value = value.cast(self.dtype)
        if not self.node.realized:
            self.realize()
        target = self.node if self.node.op == Op.BUFFER else Node.from_buffer(self.node.buffer, self.shape)
        self.node = Node(Op.ASSIGN, (target, value.node), None, self.dtype, self.shape, self.device)
        return self

    # ---- creation ----
    @staticmethod
    def full(shape, fill_value: Scalar, dtype=None, device=None, requires_grad=None) -> Tensor:
        shape = _shape_arg(shape)
        dt = dtypes.from_any(dtype) if dtype is not None else dtypes.from_py(fill_value)
        return Tensor(Node.const(fill_value, dt, shape, canonicalize(device)), requires_grad=requires_grad)

    @staticmethod
    def zeros(*shape, dtype=None, device=None, requires_grad=None) -> Tensor:
        return Tensor.full(_shape_arg(shape), 0.0, dtype=dtype or dtypes.default_float, device=device,
                           requires_grad=requires_grad)

    @staticmethod
    def ones(*shape, dtype=None, device=None, requires_grad=None) -> Tensor:
        return Tensor.full(_shape_arg(shape), 1.0, dtype=dtype or dtypes.default_float, device=device,
                           requires_grad=requires_grad)

    @staticmethod
    def empty(*shape, dtype=None, device=None) -> Tensor:
        return Tensor(Node.empty(_shape_arg(shape), dtypes.from_any(dtype or dtypes.default_float),
                                 canonicalize(device)))

    def full_like(self, fill_value: Scalar, dtype=None, device=None) -> Tensor:
        return Tensor.full(self.shape, fill_value, dtype=dtype or self.dtype, device=device or self.device)

    def zeros_like(self, dtype=None, device=None) -> Tensor:
        return self.full_like(0, dtype, device)

    def ones_like(self, dtype=None, device=None) -> Tensor:
        return self.full_like(1, dtype, device)

    def empty_like(self, dtype=None, device=None) -> Tensor:
        return Tensor.empty(*self.shape, dtype=dtype or self.dtype, device=device or self.device)

    @staticmethod
    def arange(start, stop=None, step=1, dtype=None, device=None) -> Tensor:
        if stop is None:
            start, stop = 0, start
        if step == 0:
            raise ValueError("arange: step must be nonzero")
        is_float = any(isinstance(v, float) for v in (start, stop, step))
        dt = dtypes.from_any(dtype) if dtype is not None else dtypes.default_float if is_float \
            else dtypes.default_int
        return Tensor(np.arange(start, stop, step).astype(dt.np), device=device)

    @staticmethod
    def linspace(start, stop, steps: int, dtype=None, device=None) -> Tensor:
        dt = dtypes.from_any(dtype) if dtype is not None else dtypes.default_float
        return Tensor(np.linspace(start, stop, steps).astype(dt.np), device=device)

    @staticmethod
    def eye(n: int, m: Optional[int] = None, dtype=None, device=None) -> Tensor:
        m = n if m is None else m
        dt = dtypes.from_any(dtype) if dtype is not None else dtypes.default_float
        if n > m:   # the trick below puts row i's 1 at column i only while i <= m
            return Tensor.eye(m, n, dtype=dt, device=device).T
        # a 1 followed by m zeros, repeated and cut: row i has its 1 at column i, no arange needed
        row = Tensor.ones(1, dtype=dt, device=device).pad(((0, m),))
        return row.reshape(1, m + 1).expand(n, m + 1).reshape(n * (m + 1))[:n * m].reshape(n, m) \
            if n and m else Tensor.zeros(n, m, dtype=dt, device=device)

    # ---- random (generated on the device: see tinyjit/random.py) ----
    @staticmethod
    def manual_seed(seed: int = 0) -> None:
        from tinyjit import random
        random.manual_seed(seed)

    @staticmethod
    def rand(*shape, dtype=None, device=None, requires_grad=None) -> Tensor:
        from tinyjit import random
        dt = dtypes.from_any(dtype or dtypes.default_float)
        out = random.uniform01(_shape_arg(shape), canonicalize(device)).cast(dt)
        return Tensor(out.node, requires_grad=requires_grad)

    @staticmethod
    def randn(*shape, dtype=None, device=None, requires_grad=None) -> Tensor:
        from tinyjit import random
        dt = dtypes.from_any(dtype or dtypes.default_float)
        out = random.standard_normal(_shape_arg(shape), canonicalize(device)).cast(dt)
        return Tensor(out.node, requires_grad=requires_grad)

    @staticmethod
    def randint(low: int, high: Optional[int] = None, size=(1,), dtype=None, device=None) -> Tensor:
        if high is None:
            low, high = 0, low
        if high <= low:
            raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
        dt = dtypes.from_any(dtype or dtypes.default_int)
        u = Tensor.rand(*_shape_arg(size), dtype=dtypes.float64, device=device)
        return (u * (high - low)).floor().cast(dtypes.int64).add(low).cast(dt)

    @staticmethod
    def uniform(*shape, low=0.0, high=1.0, dtype=None, device=None, requires_grad=None) -> Tensor:
        t = Tensor.rand(*shape, dtype=dtype, device=device) * (high - low) + low
        return Tensor(t.node, requires_grad=requires_grad)

    @staticmethod
    def normal(*shape, mean=0.0, std=1.0, dtype=None, device=None, requires_grad=None) -> Tensor:
        t = Tensor.randn(*shape, dtype=dtype, device=device) * std + mean
        return Tensor(t.node, requires_grad=requires_grad)

    def rand_like(self) -> Tensor:
        return Tensor.rand(*self.shape, dtype=self.dtype if self.dtype.is_float else None, device=self.device)

    def randn_like(self) -> Tensor:
        return Tensor.randn(*self.shape, dtype=self.dtype if self.dtype.is_float else None, device=self.device)

    # ---- primitive application (autograd hooks in here) ----
    def _apply(self, op: Op, *others: Tensor, arg=None) -> Tensor:
        node = self.node.alu(op, *(o.node for o in others), arg=arg)
        return Tensor(node)._record(self, *others)

    def cast(self, dtype) -> Tensor:
        dtype = dtypes.from_any(dtype)
        if dtype == self.dtype:
            return self
        if self.dtype.is_float and dtype.is_int and dtype.itemsize < 8 and (dtype.is_unsigned or dtype.itemsize < 4):
            # float -> narrow int truncates toward zero and then wraps (NumPy, PyTorch on x86); a direct
            # conversion of an out-of-range value is undefined in LLVM, C and CUDA
            return self._apply(Op.CAST, arg=dtypes.int64)._apply(Op.CAST, arg=dtype)
        if self.dtype.is_float and dtype == dtypes.uint64:   # negatives wrap too (fptoui is undefined for them)
            wrapped = self._apply(Op.CAST, arg=dtypes.int64)._apply(Op.CAST, arg=dtype)
            return (self < 0).where(wrapped, self._apply(Op.CAST, arg=dtype))
        return self._apply(Op.CAST, arg=dtype)

    def bitcast(self, dtype) -> Tensor:
        dtype = dtypes.from_any(dtype)
        if dtype.itemsize != self.dtype.itemsize:
            raise TypeError(f"bitcast: {self.dtype.name} and {dtype.name} differ in size")
        return self if dtype == self.dtype else self._apply(Op.BITCAST, arg=dtype)

    def float(self) -> Tensor:
        return self.cast(dtypes.float32)

    def half(self) -> Tensor:
        return self.cast(dtypes.float16)

    def double(self) -> Tensor:
        return self.cast(dtypes.float64)

    def int(self) -> Tensor:
        return self.cast(dtypes.int32)

    def long(self) -> Tensor:
        return self.cast(dtypes.int64)

    def bool(self) -> Tensor:
        return self.cast(dtypes.bool)

    # ---- broadcasting ----
    def _operands(self, other, op: str, reverse: bool = False, dtype: Optional[DType] = None):
        """(self, other) converted to one dtype and broadcast to one shape, or a clear error."""
        if isinstance(other, Tensor):
            if other.device != self.device:
                raise RuntimeError(f"{op}: tensors are on different devices ({self.device} and {other.device}); "
                                   f"move one with .to()")
            out_dtype = dtype or promote(self.dtype, other.dtype)
            x, y = self.cast(out_dtype), other.cast(out_dtype)
        elif isinstance(other, (bool, int, float, np.integer, np.floating, np.bool_)):
            other = other.item() if isinstance(other, np.generic) else other
            out_dtype = dtype or scalar_result_dtype(self.dtype, other)
            x = self.cast(out_dtype)
            y = Tensor(Node.const(other, out_dtype, (), self.device))
        elif isinstance(other, (list, tuple, np.ndarray)):
            return self._operands(Tensor(other, device=self.device), op, reverse, dtype)
        else:
            raise TypeError(f"{op}: unsupported operand type {type(other).__name__}")
        shape = broadcast_shape(x.shape, y.shape, op)
        x, y = x._broadcast_to(shape), y._broadcast_to(shape)
        return (y, x) if reverse else (x, y)

    def _broadcast_to(self, shape: tuple[int, ...]) -> Tensor:
        if self.shape == shape:
            return self
        padded = (1,) * (len(shape) - self.ndim) + self.shape
        return self.reshape(padded).expand(shape)

    # ---- arithmetic ----
    def add(self, other, reverse=False) -> Tensor:
        x, y = self._operands(other, "add", reverse)
        return x._apply(Op.ADD, y)

    def sub(self, other, reverse=False) -> Tensor:
        x, y = self._operands(other, "sub", reverse)
        if x.dtype == dtypes.bool:
            raise TypeError("sub: subtracting bool tensors is not supported; use ^ or logical ops")
        return x._apply(Op.ADD, -y)

    def mul(self, other, reverse=False) -> Tensor:
        x, y = self._operands(other, "mul", reverse)
        return x._apply(Op.MUL, y)

    def div(self, other, reverse=False, rounding_mode: Optional[str] = None) -> Tensor:
        if rounding_mode == "floor":
            return self.floordiv(other, reverse)
        if rounding_mode == "trunc":
            x, y = self._operands(other, "div", reverse)
            return x._int_divmod(y, "div")[0] if not x.dtype.is_float else (x / y).trunc()
        if not self.dtype.is_float and isinstance(other, (int, float, np.integer, np.floating)):
            # true division is float math on the scalar's own value: uint8 / -3 divides by -3, not by 253
            return self._float().div(other, reverse)
        x, y = self._operands(other, "div", reverse)
        out = least_upper_float(x.dtype)
        x, y = x.cast(out), y.cast(out)
        return x._apply(Op.MUL, y.reciprocal())

    def floordiv(self, other, reverse=False) -> Tensor:
        x, y = self._operands(other, "floordiv", reverse)
        if x.dtype.is_float:
            return (x / y).floor()
        q, r = x._int_divmod(y, "floordiv")
        # C division truncates; Python and PyTorch floor: step down when the signs differ and it was inexact
        if x.dtype.is_unsigned:
            return q
        inexact = r._apply(Op.CMPNE, Tensor.full_like(x, 0))
        signs_differ = x._apply(Op.CMPLT, Tensor.full_like(x, 0))._apply(
            Op.CMPNE, y._apply(Op.CMPLT, Tensor.full_like(y, 0)))
        return q - (inexact & signs_differ).cast(q.dtype)

    def mod(self, other, reverse=False) -> Tensor:
        x, y = self._operands(other, "mod", reverse)
        if x.dtype.is_float:
            return x - (x / y).floor() * y
        r = x._int_divmod(y, "mod")[1]
        if x.dtype.is_unsigned:
            return r
        # the result takes the sign of the divisor (Python/PyTorch), C's takes the dividend's
        fix = r._apply(Op.CMPNE, Tensor.full_like(r, 0)) & (
            r._apply(Op.CMPLT, Tensor.full_like(r, 0))._apply(Op.CMPNE, y._apply(Op.CMPLT, Tensor.full_like(y, 0))))
        return r + fix.where(y, Tensor.full_like(y, 0))

    def _int_divmod(self, y: Tensor, op: str) -> tuple[Tensor, Tensor]:
        """C-style (truncating) quotient and remainder of int tensors of one shape and dtype that never trap:
        x / 0 gives 0 and x % 0 gives 0 (NumPy's results; PyTorch raises), INT_MIN / -1 wraps to INT_MIN. Hardware
        division traps on both (SIGFPE kills the process), so the divisor is made safe first unless it is a constant
        known to be fine."""
        if self.dtype == dtypes.bool:
            raise TypeError(f"{op}: integer division of bool tensors is not supported; cast to an int dtype first")
        divisor = _const_value(y)
        if divisor is not None and divisor != 0 and (divisor != -1 or self.dtype.is_unsigned):
            return self._apply(Op.IDIV, y), self._apply(Op.MOD, y)
        zero = Tensor.full_like(y, 0)
        by_zero = y._apply(Op.CMPNE, zero).bitwise_not()
        special = by_zero if self.dtype.is_unsigned else by_zero | ~y._apply(Op.CMPNE, Tensor.full_like(y, -1))
        safe = special.where(Tensor.full_like(y, 1), y)
        q = self._apply(Op.IDIV, safe)
        if not self.dtype.is_unsigned:
            q = (special & ~by_zero).where(-self, q)    # x / -1 == -x, which wraps for INT_MIN
        return by_zero.where(zero, q), self._apply(Op.MOD, safe)   # x % 1 == x % -1 == 0, and x % 0 := 0

    def pow(self, exponent, reverse=False) -> Tensor:
        if not reverse and isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
            if exponent == 0.5:
                return self.sqrt()
            if float(exponent).is_integer() and abs(exponent) <= 1 << 10:
                return self._pow_int_scalar(int(exponent))
        x, y = self._operands(exponent, "pow", reverse)
        if not x.dtype.is_float:
            return x._pow_int_tensor(y)
        # |x|^y via exp2, then the sign: negative bases give a real result only for integer exponents
        magnitude = (y * x.abs().log2()).exp2()
        y_is_int = y.floor() == y
        odd = y_is_int & ((y.abs() % 2) == 1)
        neg_result = (x < 0) & odd
        out = neg_result.where(-magnitude, magnitude)
        nan = Tensor.full_like(out, math.nan)
        out = ((x < 0) & ~y_is_int).where(nan, out)
        return ((x == 0) & (y == 0)).where(Tensor.full_like(out, 1.0), out)

    def _pow_int_scalar(self, e: int) -> Tensor:
        """self ** e for a Python int e by repeated squaring: exact for ints (wrapping like PyTorch), and more
        accurate than exp2(e * log2(x)) for floats."""
        x = self if self.dtype != dtypes.bool else self.cast(scalar_result_dtype(self.dtype, e))
        if e < 0:
            if not x.dtype.is_float:
                raise RuntimeError(f"pow: integers to negative integer powers are not allowed ({x.dtype.name} "
                                   f"tensor ** {e})")
            return x._pow_int_scalar(-e).reciprocal()
        out, base = None, x
        while e:
            if e & 1:
                out = base if out is None else out * base
            e >>= 1
            if e:
                base = base * base
        return out if out is not None else Tensor.ones_like(x)

    def _pow_int_tensor(self, y: Tensor) -> Tensor:
        """Elementwise x ** y for int tensors of one dtype: square-and-multiply over every bit of y (wraps on
        overflow). A negative exponent gives 1 / x truncated: 1 for x == 1, +-1 for x == -1, else 0 (PyTorch)."""
        one = Tensor.full_like(self, 1)
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
        minus_one = (self == -1).where(odd.where(-one, one), Tensor.full_like(self, 0))
        negative = (self == 1).where(one, minus_one)
        return (y < 0).where(negative, out)

    def neg(self) -> Tensor:
        if self.dtype == dtypes.bool:
            raise TypeError("neg: negation of a bool tensor is not supported; use ~ (logical not)")
        return self._apply(Op.NEG)

    def maximum(self, other) -> Tensor:
        x, y = self._operands(other, "maximum")
        return x._apply(Op.MAX, y)

    def minimum(self, other) -> Tensor:
        x, y = self._operands(other, "minimum")
        return -((-x)._apply(Op.MAX, -y)) if not x.dtype.is_unsigned and x.dtype != dtypes.bool else \
            ~((~x)._apply(Op.MAX, ~y))

    def clip(self, min_=None, max_=None) -> Tensor:
        # where, not maximum/minimum: like torch.clamp, x keeps its gradient at the bounds (and NaN stays NaN)
        for bound in (min_, max_):
            if isinstance(bound, Tensor):
                broadcast_shape(self.shape, bound.shape, "clip")
        out = self
        if min_ is not None:
            out = (out < min_).where(min_, out)
        if max_ is not None:
            out = (out > max_).where(max_, out)
        return out

    clamp = clip

    def where(self, x, y) -> Tensor:
        """self ? x : y with broadcasting (self is the condition)."""
        cond = self if self.dtype == dtypes.bool else self.cast(dtypes.bool)
        if not isinstance(x, Tensor) and not isinstance(y, Tensor):
            dt = dtypes.from_py(x) if type(x) is type(y) else promote(dtypes.from_py(x), dtypes.from_py(y))
            x = Tensor(Node.const(x, dt, (), self.device))
        x, y = (x._operands(y, "where") if isinstance(x, Tensor) else tuple(reversed(y._operands(x, "where"))))
        shape = broadcast_shape(cond.shape, x.shape, "where")
        cond, x, y = cond._broadcast_to(shape), x._broadcast_to(shape), y._broadcast_to(shape)
        return cond._apply(Op.WHERE, x, y)

    # comparisons
    def _compare(self, other, op: str, reverse: bool = False) -> Tensor:
        x, y = self._operands(other, op, reverse)
        if op == "lt":
            return x._apply(Op.CMPLT, y)
        if op == "gt":
            return y._apply(Op.CMPLT, x)
        if op == "le":
            return ~y._apply(Op.CMPLT, x) & (x == x) & (y == y)
        if op == "ge":
            return ~x._apply(Op.CMPLT, y) & (x == x) & (y == y)
        if op == "ne":
            return x._apply(Op.CMPNE, y)
        return ~x._apply(Op.CMPNE, y)

    def __lt__(self, other): return self._compare(other, "lt")           # noqa: E704
    def __gt__(self, other): return self._compare(other, "gt")           # noqa: E704
    def __le__(self, other): return self._compare(other, "le")           # noqa: E704
    def __ge__(self, other): return self._compare(other, "ge")           # noqa: E704
    def __eq__(self, other): return self._compare(other, "eq")           # noqa: E704
    def __ne__(self, other): return self._compare(other, "ne")           # noqa: E704
    lt, gt, le, ge, eq, ne = __lt__, __gt__, __le__, __ge__, __eq__, __ne__

    # bitwise / logical
    def _bitwise(self, other, op: Op, name: str, reverse=False) -> Tensor:
        x, y = self._operands(other, name, reverse)
        if x.dtype.is_float:
            raise TypeError(f"{name}: bitwise ops need int or bool tensors, got {x.dtype.name}")
        return x._apply(op, y)

    def bitwise_and(self, other, reverse=False): return self._bitwise(other, Op.AND, "and", reverse)  # noqa: E704
    def bitwise_or(self, other, reverse=False): return self._bitwise(other, Op.OR, "or", reverse)     # noqa: E704
    def bitwise_xor(self, other, reverse=False): return self._bitwise(other, Op.XOR, "xor", reverse)  # noqa: E704

    def bitwise_not(self) -> Tensor:
        if self.dtype.is_float:
            raise TypeError(f"bitwise_not: needs an int or bool tensor, got {self.dtype.name}")
        return self._apply(Op.XOR, Tensor.full_like(self, True if self.dtype == dtypes.bool else -1
                                                    if not self.dtype.is_unsigned else (1 << self.dtype.bits) - 1))

    logical_not = bitwise_not

    def lshift(self, bits: int) -> Tensor:
        return self._apply(Op.SHL, Tensor.full_like(self, bits))

    def rshift(self, bits: int) -> Tensor:
        return self._apply(Op.SHR, Tensor.full_like(self, bits))

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
    def __matmul__(self, other): return self.matmul(other)                     # noqa: E704
    def __rmatmul__(self, other): return Tensor(other, device=self.device).matmul(self)  # noqa: E704

    def __iadd__(self, other): return self.assign(self + other)                # noqa: E704
    def __isub__(self, other): return self.assign(self - other)                # noqa: E704
    def __imul__(self, other): return self.assign(self * other)                # noqa: E704
    def __itruediv__(self, other): return self.assign(self / other)            # noqa: E704

    # ---- unary math ----
    def _float(self) -> Tensor:
        return self.cast(least_upper_float(self.dtype))

    def exp2(self) -> Tensor: return self._float()._apply(Op.EXP2)                 # noqa: E704
    def log2(self) -> Tensor: return self._float()._apply(Op.LOG2)                 # noqa: E704
    def sqrt(self) -> Tensor: return self._float()._apply(Op.SQRT)                 # noqa: E704
    def sin(self) -> Tensor: return self._float()._apply(Op.SIN)                   # noqa: E704
    def reciprocal(self) -> Tensor: return self._float()._apply(Op.RECIP)          # noqa: E704
    def exp(self) -> Tensor: return (self._float() * (1 / math.log(2))).exp2()     # noqa: E704
    def log(self) -> Tensor: return self.log2() * math.log(2)                      # noqa: E704
    def rsqrt(self) -> Tensor: return self.sqrt().reciprocal()                     # noqa: E704
    def cos(self) -> Tensor: return ((math.pi / 2) - self._float()).sin()          # noqa: E704
    def tan(self) -> Tensor: return self.sin() / self.cos()                        # noqa: E704
    def square(self) -> Tensor: return self * self                                 # noqa: E704
    def relu(self) -> Tensor: return ((self > 0) | self.isnan()).where(self, 0)   # noqa: E704 (grad 0 at 0)
    def silu(self) -> Tensor: return self * self.sigmoid()                         # noqa: E704
    swish = silu

    def expm1(self) -> Tensor:
        """e^x - 1, accurate for small x too: e^x - 1 cancels there, so |x| < 0.25 uses a Taylor polynomial with
        enough terms for the dtype."""
        x = self._float()
        small = (x < 0.25) & (x > -0.25)
        xs = small.where(x, 0.0)
        n = {2: 4, 4: 6, 8: 12}[x.dtype.itemsize]
        poly = xs * (1.0 / math.factorial(n)) + 1.0 / math.factorial(n - 1)
        for k in range(n - 2, 0, -1):
            poly = poly * xs + 1.0 / math.factorial(k)
        return small.where(poly * xs, x.exp() - 1)

    def log1p(self) -> Tensor:
        """log(1 + x), accurate for small x too: for |x| < 0.25, 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...) with
        s = x / (2 + x), |s| < 1/7. (Rounding-compensation tricks such as log(u) * x / (u - 1) do not survive the
        renderers' reassociating float math.)"""
        x = self._float()
        small = (x < 0.25) & (x > -0.25)
        s = small.where(x, 0.0) / (small.where(x, 0.0) + 2)
        s2 = s * s
        terms = {2: 3, 4: 5, 8: 10}[x.dtype.itemsize]
        series = s2 * (1.0 / (2 * terms + 1))
        for k in range(terms - 1, 0, -1):
            series = (series + 1.0 / (2 * k + 1)) * s2
        return small.where(2 * s * (series + 1.0), (1 + x).log())

    def tanh(self) -> Tensor:
        # through expm1(-2|x|), in (-1, 0]: accurate near 0 (1 - 2 / (e^2x + 1) cancels) and never overflows
        x = self._float()
        neg = x < 0
        t = (-2 * neg.where(-x, x)).expm1()
        r = -t / (t + 2)
        return neg.where(-r, r)

    def sigmoid(self) -> Tensor:
        # through e^-|x|, which never overflows: 1 / (1 + e^-x) has a finite value at x = -100 but its
        # gradient would be 0 * inf = NaN
        x = self._float()
        neg = x < 0
        z = neg.where(x, -x).exp()
        return neg.where(z, 1.0) / (1 + z)

    def abs(self) -> Tensor:
        if self.dtype.is_unsigned or self.dtype == dtypes.bool:
            return self
        # float: max(x, -x) gives +0 for -0, keeps NaN, and (MAX splits ties) has gradient 0 at 0 like PyTorch
        return (self < 0).where(-self, self) if not self.dtype.is_float else self.maximum(-self)

    def sign(self) -> Tensor:
        zero = Tensor.full_like(self, 0)
        one = Tensor.full_like(self, 1)
        if self.dtype.is_unsigned or self.dtype == dtypes.bool:
            return (self != 0).where(one, zero)
        # self * 0 keeps sign(x) in the autograd graph (zero gradient, like PyTorch); sign(nan) == 0 like PyTorch
        out = (self < 0).where(-one, (self > 0).where(one, self * 0))
        return (self != self).where(zero, out) if self.dtype.is_float else out

    def leaky_relu(self, negative_slope: float = 0.01) -> Tensor:
        return (self > 0).where(self, self * negative_slope)

    def elu(self, alpha: float = 1.0) -> Tensor:
        x = self._float()
        pos = x > 0
        # expm1 keeps small negative x accurate; it only sees x <= 0, so it never overflows (nor its gradient)
        return pos.where(x, alpha * pos.where(0.0, x).expm1())

    def softplus(self, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
        bx = self._float() * beta
        # log(1 + e^x) computed stably as max(x, 0) + log(1 + e^-|x|), written with where so that the gradient
        # at 0 is sigmoid(0) = 0.5
        pos = bx > 0
        soft = (pos.where(bx, 0.0) + pos.where(-bx, bx).exp().log1p()) / beta   # log1p: exact for tiny e^-|x|
        return (bx > threshold).where(self._float(), soft)

    def mish(self) -> Tensor:
        return self * self.softplus().tanh()

    def hardswish(self) -> Tensor:
        return self * (self + 3).clip(0, 6) / 6

    def hardsigmoid(self) -> Tensor:
        return ((self + 3) / 6).clip(0, 1)

    def relu6(self) -> Tensor:
        return self.clip(0, 6)

    def gelu(self, approximate: str = "none") -> Tensor:
        x = self._float()
        if approximate == "tanh":
            return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)).tanh())
        return 0.5 * x * (1 + (x * (1 / math.sqrt(2))).erf())

    def erf(self) -> Tensor:
        # Abramowitz & Stegun 7.1.26 refined with more terms (max error ~1.2e-7), odd symmetry via sign
        x = self._float()
        if x.dtype == dtypes.float64:
            return x._erf_float64()
        ax = (x < 0).where(-x, x)   # |x| with gradient 1 at 0, so erf'(0) = 2/sqrt(pi)
        t = 1.0 / (1.0 + 0.5 * ax)
        poly = (-ax * ax - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
            -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))
            ))))))
        y = 1.0 - t * poly.exp()
        # near 0, 1 - erfc(|x|) cancels: the Taylor series 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)) instead
        small = (x < 0.5) & (x > -0.5)
        xs = small.where(x, 0.0)
        x2 = xs * xs
        terms = {2: 3, 4: 5, 8: 12}[x.dtype.itemsize]
        series = x2 * ((-1) ** terms / (math.factorial(terms) * (2 * terms + 1)))
        for n in range(terms - 1, 0, -1):
            series = (series + (-1) ** n / (math.factorial(n) * (2 * n + 1))) * x2
        series = (series + 1.0) * xs * (2 / math.sqrt(math.pi))
        return small.where(series, (x < 0).where(-y, y))

    def _erf_float64(self) -> Tensor:
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

    def trunc(self) -> Tensor:
        if not self.dtype.is_float:
            return self
        # values with |x| >= 2^mantissa_bits are already integers (and inf/nan pass through)
        limit = {2: 2.0 ** 10, 4: 2.0 ** 23, 8: 2.0 ** 52}[self.dtype.itemsize]
        truncated = self.cast(dtypes.int64).cast(self.dtype)
        return (self.abs() < limit).where(truncated, self)

    def floor(self) -> Tensor:
        if not self.dtype.is_float:
            return self
        t = self.trunc()
        return (t > self).where(t - 1, t)

    def ceil(self) -> Tensor:
        if not self.dtype.is_float:
            return self
        t = self.trunc()
        return (t < self).where(t + 1, t)

    def round(self) -> Tensor:
        """Round half to even, like PyTorch and NumPy."""
        if not self.dtype.is_float:
            return self
        r = (self + 0.5).floor()
        is_half = (r - self) == 0.5
        r_odd = (r - (r * 0.5).floor() * 2) == 1
        return (is_half & r_odd).where(r - 1, r)

    def isnan(self) -> Tensor:
        return self != self

    def isinf(self) -> Tensor:
        return (self == math.inf) | (self == -math.inf)

    def lerp(self, end, weight) -> Tensor:
        return self + (end - self) * weight


def _const_value(t: Tensor):
    """The Python value of a tensor that is a broadcast constant, else None."""
    node = t.node
    while node.op in (Op.RESHAPE, Op.EXPAND):
        node = node.src[0]
    return node.arg if node.op == Op.CONST else None


def _shape_arg(shape) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    for s in shape:
        if not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"invalid shape {shape}: sizes must be non-negative ints")
    return tuple(int(s) for s in shape)


def broadcast_shape(a: Sequence[int], b: Sequence[int], op: str = "op") -> tuple[int, ...]:
    n = max(len(a), len(b))
    pa, pb = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(pa, pb):
        if x != y and x != 1 and y != 1:
            raise ValueError(f"{op}: shapes {tuple(a)} and {tuple(b)} cannot be broadcast together")
        out.append(y if x == 1 else x)
    return tuple(out)
