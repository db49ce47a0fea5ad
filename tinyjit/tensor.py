"""The user-facing Tensor: a lazy value on a device. Every method builds graph nodes; `.numpy()`, `.item()` and
`.realize()` schedule, compile and run what is needed.

Composite ops (sigmoid, softmax, matmul, conv2d, ...) are written here and in the mixins from the primitives
of `tinyjit.ops`; codegen and autograd only ever see primitives.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from tinyjit import inplace
from tinyjit.device import Buffer, canonicalize
from tinyjit.dtype import (DType, DTypeNotSupported, check_fits, dtypes, fits, least_upper_float, promote,
                           scalar_result_dtype)
from tinyjit.helpers import prod
from tinyjit.lazy import Node
from tinyjit.ops import Op
from tinyjit.tensor_autograd import AutogradMixin
from tinyjit.tensor_create import CreationMixin
from tinyjit.tensor_math import MathMixin
from tinyjit.tensor_movement import MovementMixin
from tinyjit.tensor_linalg import LinalgMixin
from tinyjit.tensor_mutation import MutationMixin
from tinyjit.tensor_sort import SortMixin
from tinyjit.tensor_nn import NNMixin
from tinyjit.tensor_reduce import ReduceMixin

class Tensor(AutogradMixin, CreationMixin, MathMixin, MovementMixin, ReduceMixin, NNMixin, MutationMixin, SortMixin,
             LinalgMixin):
    __slots__ = ("node", "_requires_grad", "grad", "_ctx")
    no_grad_active = False

    def __init__(self, data, dtype=None, device: Optional[str] = None, requires_grad: Optional[bool] = None):
        # a Node or Tensor keeps its device unless `device` is given; other data goes to `device` or the default
        device = canonicalize(device) if device is not None or not isinstance(data, (Node, Tensor)) else None
        dtype = dtypes.from_any(dtype) if dtype is not None else None
        if isinstance(data, Node):
            node = data
        elif isinstance(data, Tensor):
            data = data if dtype is None else data.cast(dtype)
            node = data.node if device is None or data.device == device else data.to(device).node
        elif isinstance(data, (bool, int, float)):
            dt = dtype or dtypes.from_py(data)
            if dtype is not None and dt.is_int:   # Tensor(300, dtype=uint8) is an error, not 44 (PyTorch)
                check_fits(data, dt, "Tensor")
            node = Node.const(data, dt, (), device)
        else:
            if isinstance(data, (list, tuple)):
                try:
                    arr = np.array(data)
                except ValueError:
                    raise ValueError("Tensor: nested lists must be rectangular (every row the same length)") from None
                if arr.dtype == np.float64 and dtype is None:
                    arr = arr.astype(np.float32)
                elif arr.size == 0 and dtype is None:
                    arr = arr.astype(np.float32)
            elif isinstance(data, np.ndarray) or np.isscalar(data):
                arr = np.asarray(data)
            else:
                raise TypeError(f"Tensor: cannot make a tensor from {type(data).__name__}")
            if arr.dtype.kind in "OUSV":
                raise TypeError(f"Tensor: unsupported data of dtype {arr.dtype}")
            if dtype is not None:
                if dtype.is_int and isinstance(data, (list, tuple)) and arr.size:
                    # Python values must fit, as in torch.tensor; a numpy array is cast with numpy's rules
                    check_fits(arr.min(), dtype, "Tensor")
                    check_fits(arr.max(), dtype, "Tensor")
                arr = arr.astype(dtype.np)
            dt = dtypes.from_np(arr.dtype)
            buf = Buffer(device, arr.size, dt).copyin(arr)
            node = Node.from_buffer(buf, arr.shape)
        self.node: Node = node
        self._ctx = None   # autograd: the op that made this tensor when it was recorded (None for a leaf)
        self.grad: Optional[Tensor] = None
        self._requires_grad = None
        inplace.track(self)   # a value that can still be read: assigns keep its meaning (tinyjit.inplace)
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
        """torch's repr: the values (realized to show them; summarized past 1000 elements), and the dtype, device
        and autograd state where they differ from the defaults (tinyjit.tensor_format)."""
        from tinyjit.tensor_format import tensor_repr
        return tensor_repr(self)

    def __hash__(self):
        return id(self)

    def _python_scalar(self, kind: str):
        if self.numel() != 1:
            raise ValueError(f"{kind}(): only one element tensors can be converted to Python scalars, got shape "
                             f"{self.shape}")
        return self.item()

    def __float__(self) -> float:
        return float(self._python_scalar("float"))

    def __int__(self) -> int:
        """int(t) of a one-element tensor: floats truncate toward zero (ValueError for NaN, OverflowError for
        inf), like torch."""
        return int(self._python_scalar("int"))

    def __index__(self) -> int:
        """A one-element int tensor used as an index (range(t), list[t]), like torch; TypeError otherwise."""
        if not self.dtype.is_int or self.numel() != 1:
            raise TypeError(f"only integer tensors of a single element can be converted to an index, got "
                            f"{self.dtype.name} of shape {self.shape}")
        return int(self.item())

    def __bool__(self):
        if self.numel() == 0:
            raise RuntimeError("Boolean value of Tensor with no values is ambiguous")
        if self.numel() != 1:
            raise RuntimeError(f"Boolean value of Tensor with more than one value is ambiguous (shape {self.shape})")
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
        grad keeps its graph (backward after .item() must reach the parameters), and so does an assign recorded for
        autograd (`y += x` on a result); other assigns collapse (or every optimizer step would grow the graph)."""
        if self.node.realized and self.node.op != Op.BUFFER and \
                (self._ctx is None or self.node.op == Op.ASSIGN and self._ctx != Op.ASSIGN):
            old = self.node
            self.node = Node.from_buffer(self.node.buffer, self.shape)
            self._node_changed(old)

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

    def to(self, *args, device=None, dtype=None, **kwargs) -> Tensor:
        """torch.Tensor.to: to(device), to(dtype), to(device, dtype), to(other) (other's device and dtype), and the
        keywords device= and dtype= (non_blocking= and copy= are accepted). Returns self when nothing changes."""
        for arg in args:
            if isinstance(arg, Tensor):
                device, dtype = device or arg.device, dtype or arg.dtype
            elif arg is None:
                continue
            elif isinstance(arg, str) and not hasattr(dtypes, arg):
                device = arg
            else:
                dtype = arg
        unknown = set(kwargs) - {"non_blocking", "copy", "memory_format"}
        if unknown:
            raise TypeError(f"to: unexpected keyword arguments {sorted(unknown)}")
        out = self if dtype is None else self.cast(dtype)
        if device is None:
            return out
        device = canonicalize(device)
        if device == out.device:
            return out
        return Tensor(Node(Op.COPY, (out.node,), None, out.dtype, out.shape, device))._record(out)

    def type_as(self, other: Tensor) -> Tensor:
        """torch.Tensor.type_as: self cast to other's dtype."""
        return self.cast(other.dtype)

    def type(self, dtype=None):
        """torch.Tensor.type: without an argument the type's name ('tinyjit.FloatTensor', torch's naming);
        with a dtype, self cast to it."""
        if dtype is None:
            return f"tinyjit.{_TYPE_NAMES.get(self.dtype.name, self.dtype.name)}Tensor"
        return self.cast(dtype)

    def dim(self) -> int:
        """torch.Tensor.dim: the number of dims."""
        return self.ndim

    def cpu(self) -> Tensor:
        return self.to("CPU")

    def clone(self) -> Tensor:
        return Tensor(Node(Op.CONTIGUOUS, (self.node,), None, self.dtype, self.shape, self.device))._record(self)

    def assign(self, value) -> Tensor:
        """Write `value` into this tensor's buffer (in place: the buffer is reused, not reallocated). Lazy values
        built from this tensor before keep the value they read (the old contents are copied for them if they are
        still needed when the assign runs, see tinyjit.inplace)."""
        value = value if isinstance(value, Tensor) else Tensor(value, dtype=self.dtype, device=self.device)
        if value.shape != self.shape and value.ndim <= self.ndim and \
                broadcast_shape(value.shape, self.shape, "assign") == self.shape:
            value = value._broadcast_to(self.shape)
        if value.shape != self.shape or value.device != self.device:
            raise ValueError(f"assign: value of shape {value.shape} on {value.device} does not fit the target of "
                             f"shape {self.shape} on {self.device}")
        if value.dtype != self.dtype:
            value = value.cast(self.dtype)
        recording = not Tensor.no_grad_active and self.dtype.is_float
        if recording and self.requires_grad and self._ctx is None:
            raise RuntimeError(f"assign: a leaf tensor that requires grad (shape {self.shape}) cannot be updated in "
                               f"place outside no_grad, like PyTorch; update it under `with Tensor.no_grad():`, or "
                               f"update a clone")
        if not self.node.realized:
            self.realize()
        if recording and self.requires_grad:
            # the old contents are overwritten: gradient 0 flows to them (PyTorch's copy_), not none
            value = self._with_zero_gradient(value)
        # a target node of its own: the node other values read stays the old contents (and may get a copy of them)
        target = Node.from_buffer(self.node.buffer, self.shape)
        old = self.node
        self.node = Node(Op.ASSIGN, (target, value.node), None, self.dtype, self.shape, self.device)
        if recording and value.requires_grad:
            self._record_assign()   # gradient flows through the assign into the value (x += y, x[i] = y, ...)
        inplace.note_assign(self)
        self._node_changed(old)
        return self

    # ---- primitive application (autograd hooks in here) ----
    def _same_device(self, op: str, *others) -> None:
        """Raise the user-facing error for an op whose tensors are on different devices."""
        for o in others:
            if isinstance(o, Tensor) and o.device != self.device:
                raise RuntimeError(f"{op}: tensors are on different devices ({self.device} and {o.device}); "
                                   f"move one with .to()")

    def _apply(self, op: Op, *others: Tensor, arg=None) -> Tensor:
        self._same_device(op.name.lower(), *others)
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
        return x._apply(Op.IDIV, y)   # IEEE division, correctly rounded on every backend (not x * (1 / y))

    def floordiv(self, other, reverse=False) -> Tensor:
        x, y = self._operands(other, "floordiv", reverse)
        if x.dtype.is_float:
            return x._float_floordiv(y)
        q, r = x._int_divmod(y, "floordiv")
        # C division truncates; Python and PyTorch floor: step down when the signs differ and it was inexact
        if x.dtype.is_unsigned:
            return q
        inexact = r._apply(Op.CMPNE, Tensor.full_like(x, 0))
        signs_differ = x._apply(Op.CMPLT, Tensor.full_like(x, 0))._apply(
            Op.CMPNE, y._apply(Op.CMPLT, Tensor.full_like(y, 0)))
        return q - (inexact & signs_differ).cast(q.dtype)

    def _float_floordiv(self, y: Tensor) -> Tensor:
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

    def mod(self, other, reverse=False) -> Tensor:
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
        fix = r._apply(Op.CMPNE, Tensor.full_like(r, 0)) & (
            r._apply(Op.CMPLT, Tensor.full_like(r, 0))._apply(Op.CMPNE, y._apply(Op.CMPLT, Tensor.full_like(y, 0))))
        return r + fix.where(y, Tensor.full_like(y, 0))

    def _int_divmod(self, y: Tensor, op: str) -> tuple[Tensor, Tensor]:
        """C-style (truncating) quotient and remainder of int tensors of one shape and dtype. They never trap: the
        primitives are total (ops.py): x / 0 gives 0 and x % 0 gives 0 (NumPy's results; PyTorch raises), INT_MIN / -1
        wraps to INT_MIN."""
        if self.dtype == dtypes.bool:
            raise TypeError(f"{op}: integer division of bool tensors is not supported; cast to an int dtype first")
        return self._apply(Op.IDIV, y), self._apply(Op.MOD, y)

    def pow(self, exponent, reverse=False) -> Tensor:
        """self ** exponent (torch.pow; `reverse`: exponent ** self), values and gradients like PyTorch at the
        special points too: 0 ** y, x ** 0 (1 for every x, NaN and inf included, and still in the autograd graph
        with gradient 0), 1 ** y, negative bases (a real result only for integer exponents). A Python int exponent
        multiplies (exact for ints, which wrap on overflow like PyTorch); ints to negative int powers raise
        RuntimeError like PyTorch. The gradients are PyTorch's formulas, y * x ** (y - 1) for the base (0 where
        y == 0) and x ** y * log(x) for the exponent (0 where x == 0 and y >= 0), so inf, NaN and zero meet there
        as in PyTorch."""
        tensors = [t for t in (self, exponent) if isinstance(t, Tensor)]
        if Tensor.no_grad_active or not any(t.requires_grad for t in tensors):
            return self._pow_value(exponent, reverse)
        with Tensor.no_grad():
            out = self._pow_value(exponent, reverse)
        if not out.dtype.is_float:
            return out
        from tinyjit.autograd_function import with_gradient
        x, y = self._operands(exponent, "pow", reverse)   # the broadcast operands, in the result's dtype
        x, y = x.cast(out.dtype), y.cast(out.dtype)
        scalar = exponent if not reverse and isinstance(exponent, (int, float)) else None

        def backward(grad: Tensor) -> tuple:
            dx = dy = None
            if x.requires_grad:
                if scalar is not None:
                    dx = grad.zeros_like() if scalar == 0 else grad * (scalar * x ** (scalar - 1))
                else:
                    dx = (y == 0).where(0.0, grad * (y * x ** (y - 1)))
            if y.requires_grad:   # (the result, not the bare value: differentiable again under create_graph)
                dy = grad * ((x == 0) & (y >= 0)).where(0.0, result * x.log())
            return dx, dy
        result = with_gradient(out, [x, y], backward)
        return result

    def _pow_value(self, exponent, reverse=False) -> Tensor:
        """The value of pow (see pow), built of primitives."""
        if self.dtype == dtypes.bool and not reverse and isinstance(exponent, (bool, np.bool_)):
            # PyTorch: a bool tensor to a Python bool power stays bool (x ** True is x, x ** False is all True)
            return (self & True) if exponent else Tensor.full_like(self, True)
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

    def _pow_float(self, y: Tensor) -> Tensor:
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

    def _pow_int_scalar(self, e: int) -> Tensor:
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
            return x._with_zero_gradient(Tensor.ones_like(x)) if x.dtype.is_float else Tensor.ones_like(x)
        out, base = None, x
        while e:
            if e & 1:
                out = base if out is None else out * base
            e >>= 1
            if e:
                base = base * base
        return out if out is not x else x * 1

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

    def clip(self, min=None, max=None, min_=None, max_=None) -> Tensor:   # torch's argument names
        """torch.clamp: clamp(min, max), clamp(min=...), clamp(max=...) (numbers or tensors; min_/max_ are the older
        spellings). Where, not maximum/minimum: x keeps its gradient at the bounds (and NaN stays NaN)."""
        min_ = min if min is not None else min_
        max_ = max if max is not None else max_
        for bound in (min_, max_):
            if isinstance(bound, Tensor):
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
                if isinstance(bound, Tensor) or isinstance(bound, float) and math.isnan(bound):
                    unordered = unordered | (bound != bound)
            out = unordered.where(math.nan, out)
        return out

    clamp = clip

    def where(self, x, y) -> Tensor:
        """self ? x : y with broadcasting (self is the condition)."""
        self._same_device("where", x, y)
        cond = self if self.dtype == dtypes.bool else self.cast(dtypes.bool)
        if not isinstance(x, Tensor) and not isinstance(y, Tensor):
            dt = dtypes.from_py(x) if type(x) is type(y) else promote(dtypes.from_py(x), dtypes.from_py(y))
            x = Tensor(Node.const(x, dt, (), self.device))
        for tensor, scalar in ((x, y), (y, x)):   # a scalar kept in the tensor's dtype must fit it (PyTorch)
            if isinstance(tensor, Tensor) and isinstance(scalar, (int, float, np.integer, np.floating)) and \
                    scalar_result_dtype(tensor.dtype, scalar) == tensor.dtype:
                check_fits(scalar, tensor.dtype, "where")
        x, y = (x._operands(y, "where") if isinstance(x, Tensor) else tuple(reversed(y._operands(x, "where"))))
        shape = broadcast_shape(cond.shape, x.shape, "where")
        cond, x, y = cond._broadcast_to(shape), x._broadcast_to(shape), y._broadcast_to(shape)
        return cond._apply(Op.WHERE, x, y)

    # comparisons
    def _compare(self, other, op: str, reverse: bool = False) -> Tensor:
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
            return Tensor.full(self.shape, truth, dtype=dtypes.bool, device=self.device)
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
            raise DTypeNotSupported(f"{name}: bitwise ops need int or bool tensors, got {x.dtype.name}")
        return x._apply(op, y)

    def bitwise_and(self, other, reverse=False): return self._bitwise(other, Op.AND, "and", reverse)  # noqa: E704
    def bitwise_or(self, other, reverse=False): return self._bitwise(other, Op.OR, "or", reverse)     # noqa: E704
    def bitwise_xor(self, other, reverse=False): return self._bitwise(other, Op.XOR, "xor", reverse)  # noqa: E704

    def bitwise_not(self) -> Tensor:
        if self.dtype.is_float:
            raise DTypeNotSupported(f"bitwise_not: needs an int or bool tensor, got {self.dtype.name}")
        return self._apply(Op.XOR, Tensor.full_like(self, True if self.dtype == dtypes.bool else -1
                                                    if not self.dtype.is_unsigned else (1 << self.dtype.bits) - 1))

    logical_not = bitwise_not

    def lshift(self, bits, reverse=False) -> Tensor:
        """self << bits (an int or int tensor; dtypes promote as for +). A shift by a negative amount or by the
        dtype's width or more gives 0, as in PyTorch (the hardware's shifts leave those undefined)."""
        return self._shift(bits, Op.SHL, "lshift", reverse)

    def rshift(self, bits, reverse=False) -> Tensor:
        """self >> bits, arithmetic for signed dtypes. A shift by a negative amount or by the dtype's width or
        more gives 0, or -1 for a negative signed value, as in PyTorch."""
        return self._shift(bits, Op.SHR, "rshift", reverse)

    def _shift(self, other, op: Op, name: str, reverse: bool) -> Tensor:
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
    def __rmatmul__(self, other): return Tensor(other, device=self.device).matmul(self)  # noqa: E704


# torch's legacy tensor type names (Tensor.type())
_TYPE_NAMES = {"float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long", "int32": "Int",
               "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}


def _is_bool(x) -> bool:
    """A Python/NumPy bool or a bool tensor."""
    return isinstance(x, (bool, np.bool_)) or isinstance(x, Tensor) and x.dtype == dtypes.bool


def broadcast_shape(a: Sequence[int], b: Sequence[int], op: str = "op") -> tuple[int, ...]:
    n = max(len(a), len(b))
    pa, pb = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(pa, pb):
        if x != y and x != 1 and y != 1:
            raise ValueError(f"{op}: shapes {tuple(a)} and {tuple(b)} cannot be broadcast together")
        out.append(y if x == 1 else x)
    return tuple(out)
