"""The user-facing Tensor: a lazy value on a device. Every method builds graph nodes; `.numpy()`, `.item()` and
`.realize()` schedule, compile and run what is needed.

This module holds construction, conversion (dtype, device, Python and NumPy values), realizing, `assign` and the
primitives the mixins build on (`TensorBase`: `_new`, `_apply`, `_operands`, ...). The ops are in the mixins, one
module per topic, composed here: tensor_arithmetic (+ - * / // % **, comparisons, bitwise, where, clip),
tensor_math (unary math and activations), tensor_movement (views, cat, split), indexing (x[i], x[i] = v),
tensor_reduce (sum, max, softmax, cumsum), tensor_nn (matmul, conv, pooling, losses, gather), tensor_linalg
(einsum, bmm, tril), tensor_sort (sort, topk, unique, multinomial), tensor_create and random (constructors),
tensor_mutation (in-place methods), tensor_autograd (backward, hooks, no_grad), tensor_select (narrow, movedim,
diagonal, index_select, nonzero, ...), tensor_scatter (scatter, scatter_reduce, index_add) and tensor_math_more
(remainder, atan2, norm, cumprod, median, ...). Composite ops are written from
the primitives of `tinyjit.ops`; codegen and autograd only ever see primitives.
"""
from __future__ import annotations

import weakref
from typing import Optional

import numpy as np

from tinyjit import autograd_graph, inplace
from tinyjit.device import Buffer, canonicalize
from tinyjit.dtype import DType, check_fits, dtypes, promote, scalar_result_dtype
from tinyjit.indexing import IndexingMixin
from tinyjit.lazy import Node
from tinyjit.ops import Op
from tinyjit.random import RandomMixin
from tinyjit.realize import realize_nodes
from tinyjit.tensor_arithmetic import ArithmeticMixin
from tinyjit.tensor_autograd import AutogradMixin
from tinyjit.tensor_base import broadcast_shape
from tinyjit.tensor_create import CreationMixin
from tinyjit.tensor_format import tensor_repr
from tinyjit.tensor_histogram import HistogramMixin
from tinyjit.tensor_linalg import LinalgMixin
from tinyjit.tensor_math import MathMixin
from tinyjit.tensor_math_more import MoreMathMixin
from tinyjit.tensor_movement import MovementMixin
from tinyjit.tensor_mutation import MutationMixin
from tinyjit.tensor_conv import ConvMixin
from tinyjit.tensor_nn import NNMixin
from tinyjit.tensor_reduce import ReduceMixin
from tinyjit.tensor_scatter import ScatterMixin
from tinyjit.tensor_select import SelectMixin
from tinyjit.tensor_sort import SortMixin


# ops as module constants where every op or realize reads them (reading a member from the Enum class goes through
# the enum metaclass's __getattr__ hook, several times slower than a global)
_BUFFER, _ASSIGN = Op.BUFFER, Op.ASSIGN


def to_arguments(args: tuple, device, dtype, kwargs: dict, op: str):
    """(device, dtype) from torch's `.to` spellings: a tensor (its device and dtype), a device name, a dtype, and
    the keywords device= / dtype= (non_blocking=, copy= and memory_format= are accepted). Either may be None.
    TypeError for another keyword. Shared by Tensor.to and nn.Module.to."""
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
        raise TypeError(f"{op}: unexpected keyword arguments {sorted(unknown)}")
    return device, dtype


def _holds_numpy_float64(data) -> bool:
    """Whether nested lists/tuples hold a numpy float64 scalar or array: torch.tensor keeps float64 for those,
    while Python floats alone make float32."""
    if isinstance(data, (list, tuple)):
        return any(_holds_numpy_float64(item) for item in data)
    return isinstance(data, (np.ndarray, np.generic)) and data.dtype == np.float64


class Tensor(ArithmeticMixin, AutogradMixin, CreationMixin, RandomMixin, MathMixin, MovementMixin, IndexingMixin,
             ReduceMixin, NNMixin, ConvMixin, MutationMixin, SortMixin, LinalgMixin, SelectMixin, ScatterMixin,
             MoreMathMixin, HistogramMixin):
    """A lazy n-dimensional array on a device, with PyTorch's API (torch.Tensor): `Tensor(data, dtype=None,
    device=None, requires_grad=None)` from a Python number, a (nested, rectangular) list, a NumPy array, another
    Tensor or a graph node. Ops build a graph; `.numpy()`, `.item()` and `.realize()` compute it."""
    __slots__ = ("node", "_requires_grad", "grad", "_ctx")

    def __init__(self, data, dtype=None, device: Optional[str] = None, requires_grad: Optional[bool] = None):
        if type(data) is Node and dtype is None and device is None and requires_grad is None:
            # every op's result comes here: the same as the general path below, without its checks
            self.node, self._ctx, self.grad, self._requires_grad = data, None, None, None
            inplace.track(self)
            return
        # a Node or Tensor keeps its device unless `device` is given; other data goes to `device` or the default
        device = canonicalize(device) if device is not None or not isinstance(data, (Node, Tensor)) else None
        dtype = dtypes.from_any(dtype) if dtype is not None else None
        if isinstance(data, Node):
            node = data
        elif isinstance(data, Tensor):
            data = data if dtype is None else data.cast(dtype)
            node = data.node if device is None or data.device == device else data.to(device).node
        elif isinstance(data, (bool, int, float)) and not isinstance(data, np.generic):   # np.float64 is a float
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
                if arr.dtype == np.float64 and dtype is None and not _holds_numpy_float64(data):
                    arr = arr.astype(np.float32)   # Python floats make float32 (numpy float64 values stay, as in torch)
                elif arr.size == 0 and dtype is None:
                    arr = arr.astype(np.float32)
            elif isinstance(data, np.ndarray) or np.isscalar(data):
                arr = np.asarray(data)
            elif hasattr(data, "__array__"):   # a torch tensor (also one that requires grad or is on a GPU), ...
                detached = data.detach().cpu() if hasattr(data, "detach") and hasattr(data, "cpu") else data
                try:
                    arr = np.asarray(detached)
                except (TypeError, RuntimeError) as e:
                    raise TypeError(f"Tensor: cannot make a tensor from {type(data).__name__}: {e}") from None
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

    @classmethod
    def _new(cls, data, dtype=None, device: Optional[str] = None, requires_grad: Optional[bool] = None) -> Tensor:
        """A plain Tensor, also when called on a subclass (the results of ops on an nn.Parameter are Tensors)."""
        return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        """`for row in t`: t[0], t[1], ... like torch (TypeError for a 0-d tensor). t is realized first, so the
        rows read its buffer instead of each recomputing t (`for i in randint(...)` draws once, as in torch)."""
        if not self.shape:
            raise TypeError("iteration over a 0-d tensor")
        self.realize()
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self) -> str:
        """torch's repr: the values (realized to show them; summarized past 1000 elements), and the dtype, device
        and autograd state where they differ from the defaults (tinyjit.tensor_format)."""
        return tensor_repr(self)

    def __format__(self, format_spec: str) -> str:
        """f"{t:.4f}" like torch: a 0-d tensor formats as its Python value; otherwise only the empty spec works
        (the repr), and another spec is a TypeError."""
        if self.ndim == 0:
            return format(self.item(), format_spec)
        return object.__format__(self, format_spec)

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
        """Compute self now: schedule, compile and run the kernels its graph needs (nothing when it is already
        computed); returns self. tinyjit's own (PyTorch computes eagerly); any error of a deferred check (an index out
        of range) is raised here."""
        if self.node.buffer is not None:
            return self
        realize_nodes([self.node])
        self._collapse()
        return self

    @staticmethod
    def realize_all(*tensors: Tensor) -> None:
        """Realize several tensors in one schedule, so work they share (a forward pass, a backward pass, the optimizer
        updates that assign into parameters) is computed once and fused across them. tinyjit's own (no PyTorch
        equivalent)."""
        realize_nodes([t.node for t in tensors])
        for t in tensors:
            t._collapse()

    def _collapse(self) -> None:
        """Point at the realized buffer directly so the graph that made it can be freed. A result that requires
        grad keeps its graph (backward after .item() must reach the parameters), and so does an assign recorded for
        autograd (`y += x` on a result); other assigns collapse (or every optimizer step would grow the graph)."""
        old = self.node
        if old.buffer is not None and old.op is not _BUFFER and \
                (self._ctx is None or old.op is _ASSIGN and self._ctx is not _ASSIGN):
            self.node = Node.from_buffer(old.buffer, old.shape)
            self._node_changed(old)

    def numpy(self) -> np.ndarray:
        """The values as a NumPy array of self's shape and dtype (torch.Tensor.numpy), computing self first; the array
        is a copy."""
        self.realize()
        return self.node.buffer.numpy().reshape(self.shape)

    def tolist(self):
        """The values as nested Python lists of Python numbers (torch.Tensor.tolist); a number for a 0-d tensor."""
        return self.numpy().tolist()

    def item(self):
        """The value of a one-element tensor as a Python number (torch.Tensor.item); RuntimeError for any other number
        of elements."""
        if self.numel() != 1:
            raise RuntimeError(f"item(): only a tensor with one element can be converted to a Python scalar, "
                               f"got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def contiguous(self) -> Tensor:
        """A tensor with a buffer of its own holding self's values in row-major order (torch.Tensor.contiguous); a
        realized buffer is returned as it is. Differentiable."""
        if self.node.op == Op.BUFFER:
            return self
        return Tensor(Node(Op.CONTIGUOUS, (self.node,), None, self.dtype, self.shape, self.device))._record(self)

    def to(self, *args, device=None, dtype=None, **kwargs) -> Tensor:
        """torch.Tensor.to: to(device), to(dtype), to(device, dtype), to(other) (other's device and dtype), and the
        keywords device= and dtype= (non_blocking= and copy= are accepted). Returns self when nothing changes; a copy
        between devices is differentiable. TypeError for an unknown keyword."""
        device, dtype = to_arguments(args, device, dtype, kwargs, "to")
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
        """self on the CPU device (torch.Tensor.cpu); self when it is already there."""
        return self.to("CPU")

    def clone(self) -> Tensor:
        """A copy of self in a buffer of its own (torch.clone), differentiable like PyTorch's."""
        return Tensor(Node(Op.CONTIGUOUS, (self.node,), None, self.dtype, self.shape, self.device))._record(self)

    def assign(self, value) -> Tensor:
        """Write `value` (a tensor or anything Tensor() takes; broadcast to self's shape and cast to its dtype) into
        self's buffer in place and return self, like torch.Tensor.copy_. Lazy values built from self before keep the
        value they read (tinyjit.inplace). ValueError for a shape or device that does not fit; RuntimeError for a leaf
        that requires grad outside no_grad, like PyTorch's in-place ops. A view taken by basic indexing (x[0],
        x[1:3, ::2]) of a live tensor is written through into that tensor, as PyTorch does (`x[0] += 1`); other views
        (reshape, permute, expand) of a live tensor raise RuntimeError (tinyjit's views are values)."""
        value = value if isinstance(value, Tensor) else Tensor(value, dtype=self.dtype, device=self.device)
        if value.shape != self.shape and value.ndim <= self.ndim and \
                broadcast_shape(value.shape, self.shape, "assign") == self.shape:
            value = value._broadcast_to(self.shape)
        if value.shape != self.shape or value.device != self.device:
            raise ValueError(f"assign: value of shape {value.shape} on {value.device} does not fit the target of "
                             f"shape {self.shape} on {self.device}")
        if value.dtype != self.dtype:
            value = value.cast(self.dtype)
        parent = self._write_back.parent() if self._write_back is not None else None
        if parent is not None:   # self is parent[index] and parent is alive: PyTorch writes into parent
            return self._assign_through(parent, value)
        viewed = inplace.viewed_tensor_shape(self)
        if viewed is not None:
            raise RuntimeError(f"assign: this tensor (shape {self.shape}) is a view (reshape, permute, expand, "
                               f"narrow, ...) of another live tensor of shape {viewed}; tinyjit's views are values "
                               f"(only one taken by indexing, x[1:3] or x[0], writes into its tensor), so writing "
                               f"into it would not change that tensor as PyTorch's in-place ops do. Index the "
                               f"tensor itself (x[1:3] += v), or clone() the view to update a copy")
        recording = not Tensor.no_grad_active and self.dtype.is_float
        # an unrecorded write (under no_grad, or through .data) into a result with a graph (n = p * 2) keeps that
        # graph, as in PyTorch: the new values carry the gradient the old node had
        history = self._frozen() if not recording and self.requires_grad and self._ctx is not None else None
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
        if history is not None:
            self._keep_history(history)
        self._node_changed(old)
        return self

    def _assign_through(self, parent: Tensor, value: Tensor) -> Tensor:
        """self is parent[index] (basic indexing): write value into that region of parent, as PyTorch writes
        through such a view (`x[0] += 1`, `v = x[1:3]; v.mul_(2)`), and make self the region's new value. A parent
        that is itself such a view writes on into its own parent."""
        parent[self._write_back.index] = value
        fresh = parent[self._write_back.index]
        old = self.node
        self.node, self._requires_grad, self._ctx = fresh.node, fresh._requires_grad, fresh._ctx
        self._write_back = fresh._write_back
        inplace.track(self)
        self._node_changed(old)
        return self

    def _keep_history(self, history: Tensor) -> None:
        """self was just written without recording: its new value (a node of its own over the assign) gets the
        gradient rule `history` (self before the write) had, identity into it."""
        written = self._new(self.node)._with_gradient_rule([history], lambda node, grad: (grad,))
        self.node, self._requires_grad, self._ctx = written.node, True, history._ctx

    @property
    def data(self) -> Tensor:
        """torch.Tensor.data: self's value as a tensor that does not require grad and is an alias of self: in-place
        ops on it (`p.data.add_(p.grad, alpha=-lr)`, `p.data.copy_(w)`, `w.data.uniform_(-a, a)`) update self
        without the leaf check and without being recorded for autograd, as in PyTorch, and it follows later
        updates of self. Reading it is the same as `detach()`. (The one alias tinyjit has: views and detach() are
        values.)"""
        return _DataAlias(self)

    @data.setter
    def data(self, value: Tensor) -> None:
        """`t.data = value`: t holds a copy of value's contents from now on (any shape, dtype and device, as in
        PyTorch), keeping its requires_grad, grad and identity (an optimizer still updates it), and a result its
        graph. Gradient formulas of graphs built before that read t as an op's input read the new contents, as
        PyTorch's saved inputs share t's storage (same shape and dtype; `y = p * p; p.data = v` gives p.grad 2 v).
        TypeError when value is not a Tensor; RuntimeError, as in PyTorch, when t requires grad and value is not a
        float tensor."""
        if not isinstance(value, Tensor):
            raise TypeError(f"Tensor.data has to be set to a Tensor, but got {type(value).__name__}")
        if self.requires_grad and not value.dtype.is_float:
            raise RuntimeError(f"data set to a tensor that requires gradients must be floating point or complex "
                               f"dtype (got {value.dtype.name} for a tensor of shape {self.shape} that requires "
                               f"grad)")
        if (self.shape, self.dtype, self.device) == (value.shape, value.dtype, value.device) and \
                self._write_back is None:
            # written into self's buffer, as `t.data.copy_(value)`: a TinyJit capture records the update (replays
            # make it again), and a replay that reads self reads the new contents
            self.data.assign(value.detach())
            return
        # a node of its own: a later in-place update of self must not write value's buffer
        copy = value.detach().clone()
        old = self.node
        history = self._frozen() if self.requires_grad and self._ctx is not None else None
        self.node = copy.node
        if (old.shape, old.dtype, old.device) == (copy.shape, copy.dtype, copy.device):
            _gradients_read_current(self, old)
            if history is not None:   # a result keeps its graph (torch keeps its grad_fn)
                self._keep_history(history)
        inplace.track(self)
        self._node_changed(old)

    # ---- primitive application (autograd hooks in here) ----
    def _same_device(self, op: str, *others) -> None:
        """Raise the user-facing error for an op whose tensors are on different devices."""
        for o in others:
            if isinstance(o, Tensor) and o.device != self.device:
                raise RuntimeError(f"{op}: tensors are on different devices ({self.device} and {o.device}); "
                                   f"move one with .to()")

    def _apply(self, op: Op, *others: Tensor, arg=None) -> Tensor:
        device = self.node.device
        for o in others:   # (the op's name for the error only when there is one: every op comes through here)
            if o.node.device != device:
                self._same_device(op.name.lower(), *others)
        if len(others) == 1:   # (most ops are binary: no generator to unpack)
            node = self.node.alu(op, others[0].node, arg=arg)
        else:
            node = self.node.alu(op, *[o.node for o in others], arg=arg)
        return Tensor(node)._record(self, *others)

    def _gather(self, axis: int, index: Tensor) -> Tensor:
        """The GATHER primitive (tinyjit/ops.py): self read at `index` (an int tensor with self's shape except along
        `axis`) along `axis`; the result has index's shape. No checks beyond the device: callers check shapes, dtypes
        and index values (tinyjit.index_check), and an index outside the axis reads 0. A table with no rows along
        the axis gives zeros (there is no row to point a masked read at)."""
        self._same_device("gather", index)
        if self.shape[axis] == 0:
            return Tensor.zeros(*index.shape, dtype=self.dtype, device=self.device)
        return Tensor(self.node.gather(index.node, axis))._record(self, index)

    def cast(self, dtype) -> Tensor:
        """self converted to `dtype` (a tinyjit dtype, its name, or a NumPy/torch dtype), self when it already has it
        (torch.Tensor.to(dtype), numpy.ndarray.astype): floats to ints truncate toward zero and wrap like NumPy, not
        undefined as in C."""
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
        """The same bytes reinterpreted as `dtype` (torch.Tensor.view(dtype), numpy.ndarray.view); TypeError unless both
        dtypes have the same size."""
        dtype = dtypes.from_any(dtype)
        if dtype.itemsize != self.dtype.itemsize:
            raise TypeError(f"bitcast: {self.dtype.name} and {dtype.name} differ in size")
        return self if dtype == self.dtype else self._apply(Op.BITCAST, arg=dtype)

    def float(self) -> Tensor:
        """self cast to float32 (torch.Tensor.float)."""
        return self.cast(dtypes.float32)

    def half(self) -> Tensor:
        """self cast to float16 (torch.Tensor.half)."""
        return self.cast(dtypes.float16)

    def double(self) -> Tensor:
        """self cast to float64 (torch.Tensor.double)."""
        return self.cast(dtypes.float64)

    def int(self) -> Tensor:
        """self cast to int32 (torch.Tensor.int)."""
        return self.cast(dtypes.int32)

    def long(self) -> Tensor:
        """self cast to int64 (torch.Tensor.long)."""
        return self.cast(dtypes.int64)

    def bool(self) -> Tensor:
        """self cast to bool, True where nonzero (torch.Tensor.bool)."""
        return self.cast(dtypes.bool)

    # ---- broadcasting ----
    def _operands(self, other, op: str, reverse: bool = False, dtype: Optional[DType] = None):
        """(self, other) converted to one dtype and broadcast to one shape, or a clear error."""
        node = self.node
        if dtype is None or dtype is node.dtype:   # the common cases first, each what the general path gives
            if type(other) is float and node.dtype.kind == "f":   # a float tensor op a Python float: self's dtype
                y = Tensor(Node.shared_const(other, node.dtype, node.shape, node.device))
                return (y, self) if reverse else (self, y)
            if isinstance(other, Tensor):
                o = other.node
                if o.dtype is node.dtype and o.shape == node.shape and o.device == node.device:
                    return (other, self) if reverse else (self, other)
        if isinstance(other, Tensor):
            if other.device != self.device:
                raise RuntimeError(f"{op}: tensors are on different devices ({self.device} and {other.device}); "
                                   f"move one with .to()")
            out_dtype = dtype or promote(self.dtype, other.dtype)
            # (most operands already have the dtype: no cast call, which converts and compares dtypes first)
            x = self if self.node.dtype is out_dtype else self.cast(out_dtype)
            y = other if other.node.dtype is out_dtype else other.cast(out_dtype)
        elif isinstance(other, (bool, int, float, np.integer, np.floating, np.bool_)):
            other = other.item() if isinstance(other, np.generic) else other
            out_dtype = dtype or scalar_result_dtype(self.dtype, other)
            x = self if self.node.dtype is out_dtype else self.cast(out_dtype)
            # the constant at x's shape at once: the nodes broadcasting a 0-d constant makes, without the tensors
            y = Tensor(Node.shared_const(other, out_dtype, x.shape, self.device))
            return (y, x) if reverse else (x, y)
        elif isinstance(other, (list, tuple, np.ndarray)):
            return self._operands(Tensor(other, device=self.device), op, reverse, dtype)
        else:
            raise TypeError(f"{op}: unsupported operand type {type(other).__name__}")
        if x.shape != y.shape:   # (most operands of a model's ops already have one shape)
            shape = broadcast_shape(x.shape, y.shape, op)
            x, y = x._broadcast_to(shape), y._broadcast_to(shape)
        return (y, x) if reverse else (x, y)

    def _broadcast_to(self, shape: tuple[int, ...]) -> Tensor:
        """self broadcast to `shape` (a tuple of sizes): reshape(padded).expand(shape). Every broadcast operand of a
        binary op comes here, so a shape that broadcasts takes the movement ops directly, without the argument
        parsing and checks of the public reshape and expand (which give the errors for one that does not)."""
        own = self.node.shape
        if own == shape:
            return self
        padded = (1,) * (len(shape) - len(own)) + own
        if len(padded) != len(shape) or any(s != t and (s != 1 or t < 0) for s, t in zip(padded, shape)):
            return self.reshape(padded).expand(shape)   # (raises)
        x = self if padded == own else self._movement(Op.RESHAPE, padded)
        return x._movement(Op.EXPAND, tuple(shape))



def _gradients_read_current(tensor: Tensor, old: Node) -> None:
    """After an unrecorded update of `tensor` through `.data`: gradient formulas of graphs built before that read
    its old node as an op's input read its current contents instead, as PyTorch's saved inputs share the tensor's
    storage (autograd_graph.REPLACED; `y = p * p; p.data = v` gives p.grad 2 v)."""
    ref = weakref.ref(tensor)
    autograd_graph.REPLACED[old] = lambda: ref().node if ref() is not None else None


class _DataAlias(Tensor):
    """What `owner.data` returns: a tensor without gradient whose node is its owner's, read and written through,
    so that in-place ops on it update the owner (torch.Tensor.data). Its op results are plain Tensors."""
    __slots__ = ("_owner",)

    def __init__(self, owner: Tensor):
        self._owner = owner
        self._ctx, self.grad, self._requires_grad = None, None, False
        inplace.track(self)

    @property
    def node(self) -> Node:
        return self._owner.node

    @node.setter
    def node(self, node: Node) -> None:
        self._owner.node = node

    @property
    def _view_of(self):
        """The owner's: writing into `view.data` is refused as writing into the view is (tinyjit.inplace)."""
        return self._owner._view_of

    def _node_changed(self, old: Node) -> None:
        self._owner._node_changed(old)   # the owner's node changed: a leaf parameter keeps both nodes

    def assign(self, value) -> Tensor:
        """Write `value` into the owner (every in-place op on `.data` ends here), not recorded for autograd, as
        torch's `.data` updates are not. The owner itself is assigned, so that it is what a TinyJit capture sees
        updated (an alias object assigned in a captured step is gone before the replays)."""
        owner, old = self._owner, self._owner.node
        with Tensor.no_grad():
            owner.assign(value)
        _gradients_read_current(owner, old)   # y = (w * w).sum(); w.data.add_(1); y.backward() gives 2 (w + 1)
        return self

    def _storage_owner(self) -> Tensor:
        return self._owner


# torch's legacy tensor type names (Tensor.type())
_TYPE_NAMES = {"float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long", "int32": "Int",
               "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}
