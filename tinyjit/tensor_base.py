"""`TensorBase`: what every part of `Tensor` builds on, so that the parts import it and never `Tensor` itself.

`Tensor` (tinyjit/tensor.py) is one class composed of mixins, one per topic (tensor_arithmetic, tensor_math,
tensor_movement, tensor_reduce, tensor_nn, tensor_linalg, tensor_sort, tensor_select, tensor_scatter,
tensor_math_more, tensor_create, tensor_mutation, tensor_autograd, random, indexing). Each mixin derives from
TensorBase and reaches the rest of the class only through `self`: the methods of the other mixins, and the
primitives declared here. Results are built with
`self._new(...)` / `cls._new(...)` and tensors recognized with `isinstance(x, TensorBase)`, so the dependency goes
one way: mixins -> tensor_base, and tensor.py -> mixins.

The primitives below raise NotImplementedError here; `Tensor` (or, for `_record`, AutogradMixin) implements them.
The properties read the tensor's lazy graph node, which every Tensor has.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Optional, Sequence

from tinyjit.dtype import DType
from tinyjit.helpers import prod
from tinyjit.lazy import Node
from tinyjit.ops import Op

if TYPE_CHECKING:
    from typing_extensions import Self


class _GradMode(threading.local):
    """.no_grad: this thread's autograd switch (torch's grad mode is per thread too). The class attribute is the
    default, read without the AttributeError a getattr default on a plain threading.local raises and catches."""
    no_grad = False


_grad_mode = _GradMode()


def _no_grad_active() -> bool:
    return _grad_mode.no_grad


def _set_no_grad_active(value: bool) -> None:
    _grad_mode.no_grad = bool(value)


class _GradModeMeta(type):
    """Makes `TensorBase.no_grad_active` (read and assigned on the class by no_grad and friends) this thread's
    switch: a data descriptor on the metaclass takes precedence over the class's own attributes."""
    no_grad_active = property(lambda cls: _no_grad_active(), lambda cls, value: _set_no_grad_active(value))


class TensorBase(metaclass=_GradModeMeta):
    """The state and primitives of a tensor that the mixins of Tensor rely on (see the module docstring)."""
    node: Node                        # the lazy graph node (or realized buffer) holding the value
    grad: Optional[TensorBase]        # the accumulated gradient of a tensor that requires grad (torch's .grad)
    _requires_grad: Optional[bool]
    _ctx: Optional[Op]                # autograd: the op that made this result when recorded (None for a leaf)
    # this thread's switch of autograd recording, turned on by `tinyjit.no_grad()` (tinyjit.tensor_autograd); a new
    # thread records (as in torch, where grad mode is thread-local)
    @property
    def no_grad_active(self) -> bool:
        """Whether autograd recording is off in this thread (inside no_grad / inference_mode): tinyjit's own, the
        negation of torch.is_grad_enabled()."""
        return _no_grad_active()
    # a tensor made by view ops (reshape, permute, expand, slice) from another: a weak reference to the tensor it
    # was first taken of, which PyTorch would write through it into (tinyjit.inplace.viewed_tensor_shape)
    _view_of = None
    # a tensor made by basic indexing (parent[index]): how to write into it through its parent (tinyjit.indexing)
    _write_back = None

    def _storage_owner(self) -> "TensorBase":
        """The tensor whose memory this one is in PyTorch's sense: itself (a `.data` alias: its owner)."""
        return self

    # ---- primitives (implemented by Tensor) ----
    @classmethod
    def _new(cls, data: Any, dtype=None, device: Optional[str] = None,
             requires_grad: Optional[bool] = None) -> TensorBase:
        """A new tensor of the user-facing class (`Tensor`, also for subclasses such as nn.Parameter, whose
        op results are plain tensors like PyTorch's): `Tensor(data, dtype, device, requires_grad)`."""
        raise NotImplementedError("TensorBase._new is implemented by tinyjit.tensor.Tensor")

    def _apply(self, op: Op, *others: TensorBase, arg=None) -> Self:
        """The primitive `op` on self and `others` (same device, shape and dtype as the op needs), recorded for
        autograd; RuntimeError when the tensors are on different devices."""
        raise NotImplementedError("TensorBase._apply is implemented by tinyjit.tensor.Tensor")

    def _with_gradient(self, compute, inputs, backward) -> Self:
        """`compute()` run without recording gradients, as a result whose gradient with respect to `inputs` is the
        formula `backward(grad)` (one tensor or None per input)."""
        raise NotImplementedError("TensorBase._with_gradient is implemented by tinyjit.tensor_autograd")

    def _operands(self, other, op: str, reverse: bool = False, dtype: Optional[DType] = None) -> tuple[Self, Self]:
        """(self, other) promoted to one dtype (or `dtype`) and broadcast to one shape, swapped when `reverse`;
        `other` may be a tensor, a Python/NumPy scalar or a nested list. TypeError for another type, ValueError
        for shapes that do not broadcast, RuntimeError for tensors on different devices (each naming `op`)."""
        raise NotImplementedError("TensorBase._operands is implemented by tinyjit.tensor.Tensor")

    def _same_device(self, op: str, *others) -> None:
        """RuntimeError naming `op` when one of `others` is a tensor on another device than self (others that are
        not tensors are ignored)."""
        raise NotImplementedError("TensorBase._same_device is implemented by tinyjit.tensor.Tensor")

    def _broadcast_to(self, shape: tuple[int, ...]) -> Self:
        """self broadcast to `shape` (size-1 dims expanded, missing leading dims added): a view."""
        raise NotImplementedError("TensorBase._broadcast_to is implemented by tinyjit.tensor.Tensor")

    def _record(self, *inputs: TensorBase) -> Self:
        """Record self, just made by an op from `inputs`, for autograd; returns self."""
        raise NotImplementedError("TensorBase._record is implemented by tinyjit.tensor_autograd.AutogradMixin")

    def cast(self, dtype) -> Self:
        """self converted to `dtype` (self itself when it already has it)."""
        raise NotImplementedError("TensorBase.cast is implemented by tinyjit.tensor.Tensor")

    def realize(self) -> Self:
        """Compute self now (schedule, compile and run what it needs); returns self."""
        raise NotImplementedError("TensorBase.realize is implemented by tinyjit.tensor.Tensor")

    def assign(self, value) -> Self:
        """Write `value` into self's buffer in place; returns self."""
        raise NotImplementedError("TensorBase.assign is implemented by tinyjit.tensor.Tensor")

    # ---- what the node says ----
    @property
    def shape(self) -> tuple[int, ...]:
        """The size of each dim, a tuple of ints (torch.Tensor.shape)."""
        return self.node.shape

    @property
    def dtype(self) -> DType:
        """The element type, a `tinyjit.dtypes` member (torch.Tensor.dtype)."""
        return self.node.dtype

    @property
    def device(self) -> str:
        """The device the tensor lives on, a canonical name such as 'CPU' or 'CL' (torch.Tensor.device)."""
        return self.node.device

    @property
    def ndim(self) -> int:
        """The number of dims (torch.Tensor.ndim)."""
        return len(self.shape)

    def numel(self) -> int:
        """The number of elements, the product of the shape (torch.Tensor.numel)."""
        return prod(self.shape)

    def size(self, dim: Optional[int] = None):
        """torch.Tensor.size: the shape, or the size of dim `dim` (negative counts from the end; IndexError when
        out of range)."""
        return self.shape if dim is None else self.shape[dim]

    def element_size(self) -> int:
        """The size of one element in bytes (torch.Tensor.element_size)."""
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        """The size of the elements in bytes, numel() * element_size() (torch.Tensor.nbytes)."""
        return self.numel() * self.dtype.itemsize


def broadcast_shape(a: Sequence[int], b: Sequence[int], op: str = "op") -> tuple[int, ...]:
    """The shape that shapes `a` and `b` broadcast to (NumPy's rules, numpy.broadcast_shapes); ValueError naming
    `op` and both shapes when they do not broadcast."""
    n = max(len(a), len(b))
    pa, pb = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(pa, pb):
        if x != y and x != 1 and y != 1:
            raise ValueError(f"{op}: shapes {tuple(a)} and {tuple(b)} cannot be broadcast together")
        out.append(y if x == 1 else x)
    return tuple(out)
