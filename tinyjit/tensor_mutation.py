"""PyTorch's in-place methods (add_, sub_, mul_, div_, zero_, fill_, clamp_, copy_, uniform_, normal_, the
augmented assignments +=, -=, *=, /=, and the twins NAME_ of out-of-place methods listed in INPLACE_TWINS: exp_,
fmod_, eq_, cumsum_, addmm_, ...), each computed out of place and written back with `Tensor.assign` (the buffer is
reused; lazy values that read the old contents keep them, see tinyjit.inplace). The in-place view ops (t_,
transpose_, squeeze_, ... in VIEW_TWINS) and detach_ change the tensor itself, not its buffer.

PyTorch's rules: an in-place op on a leaf that requires grad raises RuntimeError outside no_grad (initialize
parameters under `Tensor.no_grad()` / `tinyjit.no_grad()`), and the result must keep the tensor's dtype: an int
tensor cannot take a float result in place (RuntimeError, like torch's "result type Float can't be cast to the
desired output type Long"), a float tensor takes int or float results.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from tinyjit import inplace
from tinyjit.dtype import dtypes
from tinyjit.tensor_base import TensorBase, broadcast_shape

if TYPE_CHECKING:
    from typing_extensions import Self


def _castable(result, target) -> bool:
    """torch.can_cast for an in-place result: never float -> int/bool, nor int -> bool."""
    if result.is_float:
        return target.is_float

    if result.is_int:
        return target != dtypes.bool

    return True


class MutationMixin(TensorBase):
    def _check_inplace(self, op: str) -> None:
        if self.requires_grad and self._ctx is None and not self.no_grad_active:
            raise RuntimeError(f"{op}: a leaf tensor that requires grad (shape {self.shape}) is being used in an "
                               f"in-place operation; do it under tinyjit.no_grad() or on a detached tensor")

    def _refresh_view(self) -> None:
        """Before an in-place op reads self: a view taken by basic indexing (v = x[::2]) whose tensor was written
        since reads its region again, as PyTorch's views share their tensor's memory (`x += 10; v.mul_(2)` doubles
        the new values; computed from v's old value, the write-through would undo x's update). A view of a view
        refreshes its own tensor first."""
        written = self._write_back
        parent = written.parent() if written is not None else None
        if parent is None:
            return
        parent._refresh_view()
        if parent.node is not written.parent_node:
            fresh = parent[written.index]
            self.node, self._requires_grad, self._ctx = fresh.node, fresh._requires_grad, fresh._ctx
            self._write_back = fresh._write_back
            inplace.track(self)

    def _inplace(self, op: str, compute: Callable[[], Self]) -> Self:
        """Write `compute()` (the op computed out of place from self) into self, after PyTorch's checks. Computed
        here, after `_refresh_view`, so every in-place op reads an indexing view's current region."""
        self._refresh_view()
        result = compute()
        self._check_inplace(op)
        if not _castable(result.dtype, self.dtype):
            raise RuntimeError(f"{op}: result type {result.dtype.name} can't be cast to the desired output type "
                               f"{self.dtype.name} (an in-place op keeps the tensor's dtype)")
        if result.shape != self.shape:
            if broadcast_shape(result.shape, self.shape, op) != self.shape:
                raise RuntimeError(f"{op}: output with shape {self.shape} doesn't match the broadcast shape "
                                   f"{broadcast_shape(result.shape, self.shape, op)}")
        return self.assign(result)

    def _rebind(self, view: Self) -> None:
        """Make self the tensor `view` is (its node and autograd state): an in-place view op. Registered as a live
        value again, so later assigns into the buffer it reads keep its contents (tinyjit.inplace)."""
        self.node, self._requires_grad, self._ctx = view.node, view._requires_grad, view._ctx
        inplace.track(self)

    def detach_(self) -> Self:
        """torch.Tensor.detach_: cut self from the graph that made it, in place: it no longer requires grad and is
        a leaf (its value is unchanged); returns self."""
        self._requires_grad, self._ctx = False, None
        return self

    def add_(self, other, alpha=1) -> Self:
        """torch.Tensor.add_: self += alpha * other, in place; returns self. RuntimeError (like PyTorch) for a leaf
        that requires grad outside no_grad, a result whose dtype cannot be kept (float into an int tensor) or a
        broadcast shape larger than self's."""
        return self._inplace("add_", lambda: self + (other if alpha == 1 else other * alpha))

    def sub_(self, other, alpha=1) -> Self:
        """torch.Tensor.sub_: self -= alpha * other, in place; returns self. RuntimeError (like PyTorch) for a leaf
        that requires grad outside no_grad, a result whose dtype cannot be kept (float into an int tensor) or a
        broadcast shape larger than self's."""
        return self._inplace("sub_", lambda: self - (other if alpha == 1 else other * alpha))

    def mul_(self, other) -> Self:
        """torch.Tensor.mul_: self *= other, in place; returns self. RuntimeError (like PyTorch) for a leaf that
        requires grad outside no_grad, a result whose dtype cannot be kept (float into an int tensor) or a broadcast
        shape larger than self's."""
        return self._inplace("mul_", lambda: self * other)

    def div_(self, other, rounding_mode: Optional[str] = None) -> Self:
        """torch.Tensor.div_: self /= other in place (true division, so an int tensor raises unless rounding_mode is
        'trunc' or 'floor'); returns self. RuntimeError (like PyTorch) for a leaf that requires grad outside no_grad,
        a result whose dtype cannot be kept (float into an int tensor) or a broadcast shape larger than self's."""
        return self._inplace("div_", lambda: self.div(other, rounding_mode=rounding_mode))

    def zero_(self) -> Self:
        """torch.Tensor.zero_: every element set to 0, in place; returns self. RuntimeError for a leaf that requires
        grad outside no_grad."""
        return self.fill_(0)

    def fill_(self, value) -> Self:
        """torch.Tensor.fill_: every element set to `value` (a number or a one-element tensor), in place; the
        value must fit the dtype (RuntimeError, like torch)."""
        self._check_inplace("fill_")
        if isinstance(value, TensorBase):
            if value.numel() != 1:
                raise RuntimeError(f"fill_: only supports a 0-dim value tensor, got shape {value.shape}")
            filled = value.reshape(()).cast(self.dtype)._broadcast_to(self.shape)
        else:
            filled = self.full_like(value)
        return self.assign(filled)

    def clamp_(self, min=None, max=None) -> Self:   # torch's argument names
        """torch.Tensor.clamp_: clamp(min, max) written into self; returns self. RuntimeError (like PyTorch) for a
        leaf that requires grad outside no_grad, a result whose dtype cannot be kept (float into an int tensor) or a
        broadcast shape larger than self's."""
        return self._inplace("clamp_", lambda: self.clamp(min, max))

    clip_ = clamp_

    def copy_(self, src) -> Self:
        """torch.Tensor.copy_: src (broadcast to self's shape, cast to its dtype, moved to its device) written into
        self, in place."""
        self._check_inplace("copy_")
        src = src if isinstance(src, TensorBase) else self._new(src, device=self.device)
        if src.device != self.device:
            src = src.to(self.device)
        try:
            fits = broadcast_shape(src.shape, self.shape, "copy_") == self.shape
        except ValueError:
            fits = False
        if not fits:
            raise RuntimeError(f"copy_: the source of shape {src.shape} does not broadcast to {self.shape}")
        return self.assign(src.cast(self.dtype)._broadcast_to(self.shape))

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> Self:
        """torch.Tensor.uniform_: values drawn uniformly from [a, b) written into self (float tensors; half draws in
        float32); returns self. TypeError for a non-float tensor, RuntimeError for a leaf that requires grad outside
        no_grad."""
        self._check_inplace("uniform_")
        if not self.dtype.is_float:
            raise TypeError(f"uniform_: needs a float tensor, got {self.dtype.name}")
        draw = self.rand(*self.shape, dtype=dtypes.float32 if self.dtype.itemsize < 4 else self.dtype,
                         device=self.device)
        return self.assign((draw * (b - a) + a).cast(self.dtype))

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Self:
        """torch.Tensor.normal_: values drawn from N(mean, std^2) written into self (float tensors; half draws in
        float32); returns self. TypeError for a non-float tensor, RuntimeError for a leaf that requires grad outside
        no_grad."""
        self._check_inplace("normal_")
        if not self.dtype.is_float:
            raise TypeError(f"normal_: needs a float tensor, got {self.dtype.name}")
        draw = self.randn(*self.shape, dtype=dtypes.float32 if self.dtype.itemsize < 4 else self.dtype,
                          device=self.device)
        return self.assign((draw * std + mean).cast(self.dtype))

    def __iadd__(self, other):
        return self._inplace("+=", lambda: self + other)

    def __isub__(self, other):
        return self._inplace("-=", lambda: self - other)

    def __imul__(self, other):
        return self._inplace("*=", lambda: self * other)

    def __itruediv__(self, other):
        return self._inplace("/=", lambda: self / other)


# torch.Tensor's in-place twins of out-of-place methods whose result has self's shape (or broadcasts to it):
# NAME_(...) computes self.NAME(...) and writes it into self with `_inplace` (PyTorch's checks: a leaf that requires
# grad, a result dtype that cannot be kept, a broadcast shape larger than self's). The shape-changing twins (t_,
# squeeze_, ...) are VIEW_TWINS below.
INPLACE_TWINS = (
    # elementwise math
    "abs neg sign exp exp2 expm1 log log2 log1p sqrt rsqrt reciprocal square sin cos tan tanh sigmoid relu erf "
    "floor ceil round trunc frac nan_to_num pow lerp fmod remainder atan2 arctan2 hypot "
    # comparisons and logic (the bool result cast to self's dtype, as torch)
    "eq ne lt le gt ge logical_and logical_or logical_xor logical_not bitwise_and bitwise_or bitwise_xor bitwise_not "
    # along a dim, triangles, and the addmm family
    "cumsum cumprod tril triu addmm baddbmm addmv addbmm"
).split()


def _inplace_twin(name: str):
    def method(self, *args, **kwargs):
        dtype = kwargs.get("dtype")   # (cumsum_, cumprod_: torch takes the keyword, only for self's own dtype)
        if dtype is not None and dtypes.from_any(dtype) != self.dtype:
            raise RuntimeError(f"{name}_: Bad in-place call: input tensor dtype {self.dtype.name} and output tensor "
                               f"dtype {dtypes.from_any(dtype).name} should match")
        return self._inplace(f"{name}_", lambda: getattr(self, name)(*args, **kwargs))
    method.__name__ = method.__qualname__ = f"{name}_"
    method.__doc__ = (f"torch.Tensor.{name}_: self.{name}(...) written into self in place; returns self. RuntimeError "
                      f"(like PyTorch) for a leaf that requires grad outside no_grad, a result whose dtype cannot be "
                      f"kept (a float result into an int tensor) or a broadcast shape larger than self's.")
    return method


for _name in INPLACE_TWINS:
    setattr(MutationMixin, f"{_name}_", _inplace_twin(_name))
del _name


# torch.Tensor's in-place view ops: NAME_(...) makes self the view self.NAME(...) (its shape changes, no data is
# written; autograd flows through the view as for the out-of-place op)
VIEW_TWINS = ("t", "transpose", "swapaxes", "swapdims", "squeeze", "unsqueeze")


def _view_twin(name: str):
    def method(self, *args, **kwargs):
        view = getattr(self, name)(*args, **kwargs)   # bad dims raise here, before self changes
        if self.requires_grad and self._ctx is None:
            raise RuntimeError(f"{name}_: a leaf tensor that requires grad (shape {self.shape}) cannot change its "
                               f"shape in place; use the out-of-place {name}() or a detached tensor")
        self._rebind(view)
        return self
    method.__name__ = method.__qualname__ = f"{name}_"
    method.__doc__ = (f"torch.Tensor.{name}_: self becomes self.{name}(...) (its shape changes in place, no data is "
                      f"copied); returns self. The same errors as {name}(); RuntimeError for a leaf that requires "
                      f"grad (tinyjit refuses it under no_grad too: a leaf is matched by its node).")
    return method


for _name in VIEW_TWINS:
    setattr(MutationMixin, f"{_name}_", _view_twin(_name))
del _name
