"""Movement ops of Tensor: views (reshape, permute, expand, pad, shrink, flip) and what is built from them
(slicing with steps, squeeze, cat, stack, split, repeat). None of these copies data."""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from tinyjit.composite_cache import templated
from tinyjit.dtype import DType, check_fits, dtypes, promote
from tinyjit.helpers import normalize_axis, prod
from tinyjit.inplace import TORCH_VIEWS
from tinyjit.lazy import Node
from tinyjit.ops import Op
from tinyjit.tensor_base import TensorBase

if TYPE_CHECKING:
    from typing_extensions import Self


def _axis(x, axis: int, op: str, extra: int = 0) -> int:
    """`axis` of x (negative counts from the end) as 0..ndim-1+extra; the error names the op and x's shape."""
    return normalize_axis(axis, x.ndim + extra, f"{op} on shape {x.shape}")


def _distinct_axes(x, axes, op: str) -> tuple[int, ...]:
    """`axes` of x as 0..ndim-1, in the given order; a dim named twice (0 and -ndim included) is an error, as in
    PyTorch, not silently merged."""
    out = tuple(_axis(x, a, op) for a in axes)
    for i, a in enumerate(out):
        if a in out[:i]:
            raise RuntimeError(f"{op} on shape {x.shape}: dim {a} appears multiple times in the list of dims "
                               f"{tuple(axes)}")
    return out


def _pick_axis(axis, dim):
    """Accept PyTorch's `dim=` and NumPy's `axis=` spellings."""
    if axis is not None and dim is not None and axis != dim:
        raise TypeError("pass either axis= or dim=, not both")

    return axis if axis is not None else dim


def _keyword_dims(args: tuple, kwargs: dict, name: str, op: str) -> tuple:
    """The positional sizes, or torch's keyword spelling (reshape(shape=...), view(size=...), permute(dims=...))."""
    if not kwargs:
        return args

    if set(kwargs) != {name} or args:
        raise TypeError(f"{op}: takes the sizes positionally or as {name}=, got {args} and {sorted(kwargs)}")

    value = kwargs[name]
    return (tuple(value),) if isinstance(value, (tuple, list)) else (value,)


def _dims(args) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])

    return tuple(args)


class MovementMixin(TensorBase):
    def _movement(self, op: Op, arg) -> Self:
        return self._apply_movement(op, arg)

    def _apply_movement(self, op: Op, arg) -> Self:
        node = self.node.movement(op, arg)
        if self.requires_grad and node is not self.node and node.src[:1] != (self.node,):
            # Node.movement folded a chain (reshape of a reshape) past self.node: keep self.node in the graph,
            # autograd needs to reach it
            node = Node(op, (self.node,), arg, self.dtype, node.shape, self.device)
        out = self._new(node)._record(self)
        if op in TORCH_VIEWS:   # remember what PyTorch would share storage with (writes into views are refused)
            root = self._view_of() if self._view_of is not None else None
            out._view_of = weakref.ref(root if root is not None else self._storage_owner())
        return out

    def reshape(self, *shape, **kwargs) -> Self:
        """torch.reshape / numpy.reshape: reshape(2, 3), reshape((2, 3)) or reshape(shape=(2, 3)), one size may be
        -1; a view (no copy). ValueError for more than one -1, a negative size or a size that does not hold the same
        number of elements."""
        shape = _dims(_keyword_dims(shape, kwargs, "shape", "reshape"))
        if sum(1 for s in shape if s == -1) > 1:
            raise ValueError(f"reshape: only one dimension can be -1, got {shape}")
        for s in shape:
            if not isinstance(s, (int, np.integer)) or s < -1:
                raise ValueError(f"reshape: invalid size {s!r} in {shape}")
        if -1 in shape:
            known = prod(s for s in shape if s != -1)
            if known == 0 or self.numel() % known:
                raise ValueError(f"reshape: cannot reshape tensor of shape {self.shape} into {shape}")
            shape = tuple(self.numel() // known if s == -1 else s for s in shape)
        shape = tuple(int(s) for s in shape)
        if prod(shape) != self.numel():
            raise ValueError(f"reshape: cannot reshape tensor of shape {self.shape} ({self.numel()} elements) "
                             f"into {shape} ({prod(shape)} elements)")
        return self._movement(Op.RESHAPE, shape)

    def view(self, *shape, **kwargs) -> Self:
        """torch.Tensor.view (a reshape: every view is lazy here): view(2, 3), view((2, 3)) or view(size=(2, 3)).
        A dtype argument (torch's reinterpreting view) is a bitcast."""
        if len(shape) == 1 and not kwargs and (isinstance(shape[0], (DType, str)) or
                                              type(shape[0]).__module__ == "torch"):
            return self.bitcast(dtypes.from_any(shape[0]))
        return self.reshape(*_keyword_dims(shape, kwargs, "size", "view"))

    def view_as(self, other) -> Self:
        """torch.Tensor.view_as: self reshaped to other's shape."""
        return self.reshape(other.shape)

    def permute(self, *order, **kwargs) -> Self:
        """torch.permute / numpy.transpose: the dims reordered, permute(1, 0), permute((1, 0)) or permute(dims=(1,
        0)); a view. RuntimeError unless the dims are a permutation of all of self's."""
        dims = _dims(_keyword_dims(order, kwargs, "dims", "permute"))
        if len(dims) != self.ndim:
            raise RuntimeError(f"permute: {dims} is not a permutation of the {self.ndim} dims of shape {self.shape}")
        order = _distinct_axes(self, dims, "permute")
        return self._movement(Op.PERMUTE, order)

    def expand(self, *shape, **kwargs) -> Self:
        """torch.Tensor.expand: size-1 dims repeated (and new leading dims added) without copying, expand(4, 3),
        expand((4, 3)) or expand(size=(4, 3)); -1 keeps a size. ValueError for a dim that is neither 1 nor the target
        size, or fewer target dims than self has."""
        shape = _dims(_keyword_dims(shape, kwargs, "size", "expand"))
        if len(shape) < self.ndim:
            raise ValueError(f"expand: target {shape} has fewer dims than the tensor's shape {self.shape}")
        x = self.reshape((1,) * (len(shape) - self.ndim) + self.shape) if len(shape) > self.ndim else self
        new = tuple(s if t == -1 else t for s, t in zip(x.shape, shape))
        for s, t in zip(x.shape, new):
            if s != t and s != 1:
                raise ValueError(f"expand: cannot expand shape {self.shape} to {tuple(shape)}")
        return x._movement(Op.EXPAND, new)

    def expand_as(self, other) -> Self:
        """self expanded to other's shape (torch.Tensor.expand_as): a view; ValueError when it does not expand to it."""
        return self.expand(other.shape)

    def broadcast_to(self, shape) -> Self:
        """self broadcast to `shape` (torch.broadcast_to, numpy.broadcast_to): a view, -1 keeps a size; ValueError when
        the shapes do not broadcast."""
        return self.expand(shape)

    def shrink(self, arg) -> Self:
        """The view of [lo, hi) of each dim, `arg` one (lo, hi) pair or None (the whole dim) per dim: a slice with step
        1 (like self[lo0:hi0, lo1:hi1, ...] in torch and NumPy). ValueError for a range outside its dim."""
        arg = tuple((0, s) if a is None else tuple(a) for a, s in zip(arg, self.shape))
        for (lo, hi), s in zip(arg, self.shape):
            if not 0 <= lo <= hi <= s:
                raise ValueError(f"shrink: range {(lo, hi)} is outside a dimension of size {s} (shape {self.shape})")
        return self._movement(Op.SHRINK, arg)

    def pad(self, padding, value: float = 0.0, mode: str = "constant") -> Self:
        """`padding` is either one (before, after) pair per dim, or PyTorch's flat form: last dim first (negative
        amounts crop). The result keeps the tensor's dtype, so `value` must fit it (RuntimeError otherwise, like
        torch.nn.functional.pad): an int tensor takes the integer part of a float value, a bool tensor its truth."""
        if mode != "constant":
            raise NotImplementedError(f"pad: mode {mode!r} (only 'constant' is supported)")
        padding = tuple(padding)
        if padding and all(isinstance(p, (int, np.integer)) for p in padding):
            if len(padding) % 2 or len(padding) // 2 > self.ndim:
                raise ValueError(f"pad: {padding} needs an even number of values, at most 2 per dim of {self.shape}")
            pairs = [(0, 0)] * self.ndim
            for i in range(len(padding) // 2):
                pairs[self.ndim - 1 - i] = (int(padding[2 * i]), int(padding[2 * i + 1]))
        else:
            pairs = [(0, 0) if p is None else (int(p[0]), int(p[1])) for p in padding]
            if len(pairs) != self.ndim:
                raise ValueError(f"pad: {len(pairs)} pairs for a tensor with {self.ndim} dims (shape {self.shape})")
        check_fits(value, self.dtype, "pad")
        x = self
        # negative padding crops
        if any(b < 0 or a < 0 for b, a in pairs):
            x = x.shrink(tuple((-min(b, 0), s + min(a, 0)) for (b, a), s in zip(pairs, x.shape)))
            pairs = [(max(b, 0), max(a, 0)) for b, a in pairs]
        out = x._movement(Op.PAD, tuple(pairs))
        if value != 0:
            mask = x.ones(*x.shape, dtype="bool", device=x.device)._movement(Op.PAD, tuple(pairs))
            out = mask.where(out, x.full((), value, dtype=x.dtype, device=x.device))
        return out

    def flip(self, *axes, dims=None, axis=None) -> Self:
        """The order of the elements reversed along the given dims (torch.flip(dims), numpy.flip(axis=), or flip(0,
        2)); a view. IndexError for a dim out of range, RuntimeError for a dim named twice."""
        if dims is not None or axis is not None:
            axes = (_pick_axis(axis, dims),)
        axes = tuple(sorted(_distinct_axes(self, _dims(axes), "flip")))
        return self._movement(Op.FLIP, axes)

    # ---- derived ----
    def transpose(self, dim0: int = -2, dim1: int = -1) -> Self:
        """self with dims dim0 and dim1 swapped (torch.transpose): a view; negative dims count from the end. A tensor of
        fewer than 2 dims is returned as it is for the default dims (-2, -1); IndexError for a dim out of range."""
        if self.ndim < 2 and dim0 in (-2, -1) and dim1 in (-2, -1):
            return self
        d0, d1 = _axis(self, dim0, "transpose"), _axis(self, dim1, "transpose")
        order = list(range(self.ndim))
        order[d0], order[d1] = order[d1], order[d0]
        return self.permute(order)

    @property
    def T(self) -> Self:
        """self with the order of all its dims reversed (torch.Tensor.T, numpy.ndarray.T): a view."""
        return self.permute(tuple(reversed(range(self.ndim))))

    @property
    def mT(self) -> Self:
        """self with its last two dims swapped (torch.Tensor.mT): a view; a tensor of fewer than 2 dims is returned
        as it is (PyTorch raises)."""
        return self.transpose(-2, -1)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Self:
        """Dims start_dim..end_dim merged into one (torch.flatten): a view; a 0-d tensor becomes shape (1,).
        RuntimeError when start_dim comes after end_dim, IndexError for a dim out of range."""
        if self.ndim == 0:
            return self.reshape(1)
        s, e = _axis(self, start_dim, "flatten"), _axis(self, end_dim, "flatten")
        if s > e:
            raise RuntimeError(f"flatten on shape {self.shape}: start_dim {start_dim} comes after end_dim {end_dim}")
        return self.reshape(self.shape[:s] + (prod(self.shape[s:e + 1]),) + self.shape[e + 1:])

    def unflatten(self, dim: int, sizes) -> Self:
        """Dim `dim` split into `sizes` (torch.unflatten), one of which may be -1: a view. RuntimeError for a size that
        is not a non-negative int, ValueError when the sizes do not multiply to the dim."""
        d = _axis(self, dim, "unflatten")
        sizes = tuple(sizes)
        if any(not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < -1 for s in sizes):
            raise RuntimeError(f"unflatten: sizes {sizes} must be non-negative ints (one of them may be -1)")
        known = prod(s for s in sizes if s != -1)
        if sizes.count(-1) > 1 or (-1 not in sizes and known != self.shape[d]) or \
                (-1 in sizes and (known == 0 or self.shape[d] % known)):
            raise ValueError(f"unflatten: sizes {sizes} do not multiply to {self.shape[d]}, the size of dim {d} of "
                             f"shape {self.shape}")
        return self.reshape(self.shape[:d] + sizes + self.shape[d + 1:])

    def squeeze(self, dim=None, axis=None) -> Self:
        """self without dims of size 1 (torch.squeeze, numpy.squeeze): all of them, or only `dim` (an int or a tuple; a
        named dim of another size is kept, like PyTorch). `axis=` is NumPy's spelling. A view."""
        dim = _pick_axis(axis, dim)
        if dim is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        dims = _distinct_axes(self, dim if isinstance(dim, (tuple, list)) else [dim], "squeeze")
        return self.reshape(tuple(s for i, s in enumerate(self.shape) if not (i in dims and s == 1)))

    def unsqueeze(self, dim: Optional[int] = None, axis: Optional[int] = None) -> Self:
        """self with a new dim of size 1 at `dim` (torch.unsqueeze; numpy.expand_dims with `axis=`), negative counting
        from the end of the result. A view; TypeError without a dim, IndexError for one out of range."""
        dim = _pick_axis(axis, dim)
        if dim is None:
            raise TypeError("unsqueeze: missing the dim (or axis) argument")
        d = _axis(self, dim, "unsqueeze", 1)
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def repeat(self, *repeats) -> Self:
        """self tiled `repeats` times along each dim (torch.Tensor.repeat, numpy.tile), with new leading dims when there
        are more repeats than dims: expand and reshape, no copy until used. RuntimeError for a negative or non-int
        repeat, ValueError for fewer repeats than dims."""
        repeats = _dims(repeats)
        for r in repeats:
            if not isinstance(r, (int, np.integer)) or isinstance(r, bool) or r < 0:
                raise RuntimeError(f"repeat: repeats {repeats} must be non-negative ints (shape {self.shape})")
        if len(repeats) < self.ndim:
            raise ValueError(f"repeat: {len(repeats)} repeats {repeats} for a tensor of shape {self.shape} (need at "
                             f"least {self.ndim})")
        x = self.reshape((1,) * (len(repeats) - self.ndim) + self.shape)
        # put a new axis of size r before each dim, expand it, then merge the pairs
        interleaved = tuple(v for s in x.shape for v in (1, s))
        expanded = tuple(v for r, s in zip(repeats, x.shape) for v in (r, s))
        return x.reshape(interleaved).expand(expanded).reshape(tuple(r * s for r, s in zip(repeats, x.shape)))

    def _stride_axis(self, axis: int, step: int) -> Self:
        """Every `step`-th element along `axis` (step > 0): pad to a multiple, split, keep the first column."""
        if step == 1:
            return self
        n = self.shape[axis]
        count = -(-n // step)
        x = self.pad(tuple((0, count * step - n) if i == axis else (0, 0) for i in range(self.ndim)))
        x = x.reshape(self.shape[:axis] + (count, step) + self.shape[axis + 1:])
        x = x.shrink(tuple((0, 1) if i == axis + 1 else None for i in range(x.ndim)))
        return x.reshape(self.shape[:axis] + (count,) + self.shape[axis + 1:])

    def chunk(self, chunks: int, dim: int = 0, axis: Optional[int] = None) -> list[Self]:
        """self split into `chunks` pieces of ceil(size / chunks) along `dim` (torch.chunk; the last may be smaller, and
        there may be fewer pieces): a list of views. ValueError unless chunks > 0."""
        dim = _pick_axis(axis, dim if axis is None else None)
        d = _axis(self, dim, "chunk")
        if chunks <= 0:
            raise ValueError(f"chunk: the number of chunks must be positive, got {chunks}")
        size = -(-self.shape[d] // chunks) if self.shape[d] else 1
        return self.split(size, d)

    def split(self, split_size, dim: int = 0, axis: Optional[int] = None) -> list[Self]:
        """self split along `dim` into pieces of `split_size` (the last may be smaller) or of the given list of sizes
        (torch.split): a list of views. ValueError for a non-positive size or sizes that do not add up to the dim,
        RuntimeError for a 0-d tensor."""
        dim = _pick_axis(axis, dim if axis is None else None)
        if self.ndim == 0:
            raise RuntimeError("split: a 0-d tensor cannot be split (it has no dim); reshape it to (1,) first")
        d = _axis(self, dim, "split")
        n = self.shape[d]
        if isinstance(split_size, int):
            if split_size <= 0 and not (split_size == 0 and n == 0):   # PyTorch: one empty piece of an empty dim
                raise ValueError(f"split: split_size must be positive, got {split_size}")
            sizes = [min(split_size, n - i) for i in range(0, n, split_size)] if n else [0]
        else:
            sizes = list(split_size)
            if any(not isinstance(s, (int, np.integer)) or s < 0 for s in sizes):
                raise RuntimeError(f"split: sizes {sizes} must be non-negative ints (dim {d} of {self.shape})")
            if sum(sizes) != n:
                raise ValueError(f"split: sizes {sizes} do not add up to {n}, the size of dim {d} of {self.shape}")
        out, start = [], 0
        for s in sizes:
            out.append(self.shrink(tuple((start, start + s) if i == d else None for i in range(self.ndim))))
            start += s
        return out

    @templated   # (built from a template after the first call: tinyjit.composite_cache)
    def cat(self, *others, dim: int = 0, axis: Optional[int] = None) -> Self:
        """Concatenate along `dim`, promoting dtypes. Three spellings: `a.cat(b, c, dim=1)`, `Tensor.cat(a, b)` and
        PyTorch's `Tensor.cat([a, b, c], dim=1)` (a sequence first; `Tensor.cat([a, b], 1)` also works)."""
        tensors, dim = _tensor_list(self, others, dim if axis is None else axis, "cat")
        for position, t in enumerate(tensors):
            if t.ndim == 0:   # PyTorch's rule and class; use stack (or reshape to (1,)) to join scalars
                raise RuntimeError(f"cat: the tensor at position {position} is 0-d (shape ()) and cannot be "
                                   f"concatenated; use Tensor.stack, or reshape it to (1,)")
        first = tensors[0]
        d = _axis(first, dim, "cat")
        for t in tensors[1:]:
            if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != d):
                raise ValueError(f"cat: shapes {first.shape} and {t.shape} differ outside dim {d}")
            first._same_device("cat", t)
        dt = first.dtype
        for t in tensors[1:]:
            dt = promote(dt, t.dtype)
        total = sum(t.shape[d] for t in tensors)
        out, start = None, 0
        for t in tensors:
            n = t.shape[d]
            padded = t.cast(dt).pad(tuple((start, total - start - n) if i == d else (0, 0) for i in range(t.ndim)))
            # bools are merged with OR (their ADD), every other dtype with ADD: the padding is 0 either way
            out = padded if out is None else out + padded
            start += n
        return out

    def roll(self, shifts, dims=None) -> Self:
        """torch.roll: elements shifted by `shifts` along `dims` (ints or tuples of them), wrapping around; with no
        dims, the flattened tensor is rolled and the shape restored."""
        if dims is None:
            if isinstance(shifts, (tuple, list)) and len(shifts) != 1:
                raise RuntimeError(f"roll: {len(shifts)} shifts need as many dims")
            shift = shifts[0] if isinstance(shifts, (tuple, list)) else shifts
            return self.flatten().roll(shift, 0).reshape(self.shape) if self.ndim else self
        shifts = tuple(shifts) if isinstance(shifts, (tuple, list)) else (shifts,)
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
        if len(shifts) != len(dims):
            raise RuntimeError(f"roll: shifts {shifts} and dims {dims} must have the same length")
        out = self
        for shift, dim in zip(shifts, dims):
            d = _axis(self, dim, "roll")
            n = self.shape[d]
            s = shift % n if n else 0
            if s:
                window = lambda lo, hi: tuple((lo, hi) if a == d else None for a in range(self.ndim))  # noqa: E731
                out = out.shrink(window(n - s, n)).cat(out.shrink(window(0, n - s)), dim=d)
        return out

    def stack(self, *others, dim: int = 0, axis: Optional[int] = None) -> Self:
        """Join tensors of one shape along a new dim `dim` (torch.stack, numpy.stack); the same spellings as `cat`
        (`Tensor.stack([a, b], dim=0)`), dtypes promote. ValueError for different shapes or an empty list."""
        tensors, dim = _tensor_list(self, others, dim if axis is None else axis, "stack")
        first = tensors[0]
        d = _axis(first, dim, "stack", 1)
        for t in tensors[1:]:
            if t.shape != first.shape:
                raise ValueError(f"stack: all tensors need the same shape, got {first.shape} and {t.shape}")
        return first.unsqueeze(d).cat(*[t.unsqueeze(d) for t in tensors[1:]], dim=d)


def _tensor_list(first, rest: tuple, dim: int, op: str) -> tuple[list, int]:
    """The tensors of a cat/stack call, whether given as `a, b, c` or as a sequence `[a, b, c]` (then optionally
    followed by the dim as a positional int, like torch.cat(tensors, 1))."""
    if isinstance(first, (list, tuple)):
        if len(rest) == 1 and isinstance(rest[0], int) and not isinstance(rest[0], bool):
            dim, rest = rest[0], ()
        tensors = list(first) + list(rest)

    else:
        tensors = [first, *rest]

    if not tensors:
        raise ValueError(f"{op}: expected a non-empty list of tensors")

    for t in tensors:
        if not isinstance(t, TensorBase):
            raise TypeError(f"{op}: expected tensors, got {type(t).__name__}")
    return tensors, dim


def cat(tensors: Sequence[TensorBase], dim: int = 0) -> TensorBase:
    """torch.cat(tensors, dim) as a function: the tensors joined along `dim` (see Tensor.cat); ValueError for an empty
    list."""
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")

    return tensors[0].cat(*tensors[1:], dim=dim)


def stack(tensors: Sequence[TensorBase], dim: int = 0) -> TensorBase:
    """torch.stack(tensors, dim) as a function: the tensors joined along a new dim (see Tensor.stack); ValueError for an
    empty list."""
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")

    return tensors[0].stack(*tensors[1:], dim=dim)
