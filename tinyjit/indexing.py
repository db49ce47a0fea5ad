"""Tensor indexing: x[...] with ints, slices (any step), None, Ellipsis and integer tensors (or lists, ranges and
arrays of ints), and x[...] = v.

Basic indexing is movement ops only (a view); an integer tensor index becomes a GATHER (an indexed load).
`IndexingMixin` gives Tensor `__getitem__` and `__setitem__`.
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np

from tinyjit.helpers import prod
from tinyjit.index_check import check_index
from tinyjit.tensor_base import TensorBase, broadcast_shape

if TYPE_CHECKING:
    from typing_extensions import Self


def _normalize(x, index, host_values: dict | None = None) -> list:
    """The index as a list with one item per dim of x (Ellipsis expanded, lists and arrays made tensors, whose
    values are kept in `host_values` by id of the tensor when given, for checking them without a device read)."""
    if not isinstance(index, tuple):
        index = (index,)
    items = []
    for it in index:
        # a sequence (x[(2, 0), 1] as numpy; a range as the list it spells, as torch) indexes like an int tensor
        if isinstance(it, (list, tuple, range, np.ndarray)) and not isinstance(it, TensorBase):
            values = np.asarray(it)
            if values.size == 0 and not isinstance(it, np.ndarray):   # x[[]], x[range(0)]: no indices (int64)
                values = values.astype(np.int64)
            it = x._new(values, device=x.device)
            if host_values is not None:
                host_values[id(it)] = values
        if isinstance(it, (bool, np.bool_)):
            raise TypeError("indexing with a Python bool is not supported")
        if isinstance(it, np.integer):
            it = int(it)
        if not (it is None or it is Ellipsis or isinstance(it, (int, slice, TensorBase))):
            raise TypeError(f"invalid index of type {type(it).__name__}: use ints, slices, None, ..., int tensors or "
                            f"sequences of ints")
        items.append(it)
    ellipses = [i for i, it in enumerate(items) if it is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have one ellipsis (...)")
    consumed = sum(1 for it in items if it is not None and it is not Ellipsis)
    if consumed > x.ndim:
        raise IndexError(f"too many indices for a tensor of shape {x.shape}: {consumed} given")
    fill = [slice(None)] * (x.ndim - consumed)
    if ellipses:
        e = ellipses[0]
        items = items[:e] + fill + items[e + 1:]
    else:
        items = items + fill
    for it in items:
        if isinstance(it, TensorBase) and it.dtype.is_float:
            raise IndexError(f"tensors used as indices must be int or bool, got {it.dtype.name}")
    return items


def _basic(x, items) -> tuple[TensorBase, list[tuple[int, TensorBase, int]]]:
    """Apply ints/slices/None; return the view and the (output axis, index tensor, dim of x) still to apply."""
    out_shape, tensor_indices = [], []
    dim = 0
    for it in items:
        if it is None:
            out_shape.append(("new", 1))
            continue
        size = x.shape[dim]
        if isinstance(it, int):
            i = it + size if it < 0 else it
            if not 0 <= i < size:
                raise IndexError(f"index {it} is out of bounds for dimension {dim} with size {size}")
            x = x.shrink(tuple((i, i + 1) if a == dim else None for a in range(x.ndim)))
            out_shape.append(("drop", dim))
        elif isinstance(it, slice):
            r = range(*it.indices(size))
            n = len(r)
            if n == 0:
                x = x.shrink(tuple((0, 0) if a == dim else None for a in range(x.ndim)))
            else:
                step = r.step
                first = r[0]
                if step < 0:
                    x = x.flip(dim)
                    first, step = size - 1 - first, -step
                x = x.shrink(tuple((first, first + (n - 1) * step + 1) if a == dim else None for a in range(x.ndim)))
                x = x._stride_axis(dim, step)
            out_shape.append(("keep", dim))
        else:
            assert isinstance(it, TensorBase)
            out_shape.append(("tensor", dim))
            tensor_indices.append((dim, it))
        dim += 1
    # final shape: drop int-indexed dims, insert None dims
    shape, tensor_axes = [], []
    for kind, v in out_shape:
        if kind == "new":
            shape.append(1)
        elif kind in ("keep", "tensor"):
            if kind == "tensor":
                tensor_axes.append(len(shape))
            shape.append(x.shape[v])
    x = x.reshape(tuple(shape))
    return x, [(axis, t, dim) for axis, (dim, t) in zip(tensor_axes, tensor_indices)]


class IndexingMixin(TensorBase):
    def __getitem__(self, index) -> Self:
        """self[index], NumPy/PyTorch indexing (torch.Tensor.__getitem__): ints, slices with any step, None,
        Ellipsis, and int tensors, lists or arrays (advanced indexing, a GATHER of the indexed dims). Integer arrays
        must hold values in [-size, size) of their dim: others raise IndexError (IndexOutOfRange) at the call when
        the values are on the host, else when first computed (see tinyjit.index_check). IndexError for too many
        indices or a bool mask (the result's shape would depend on the data), TypeError for other index types."""
        return _getitem(self, index)

    def __setitem__(self, index, value) -> None:
        """self[index] = value, written into self's buffer in place (torch.Tensor.__setitem__): basic indices
        (ints, slices, None, Ellipsis) and integer tensors, lists, ranges or arrays (torch's index_put_; where an
        index repeats a place the last entry's value is written) with a value that broadcasts to self[index], or a
        bool mask over self's leading dims with a scalar or a value that broadcasts to self. IndexError for an
        index out of range, NotImplementedError for a bool mask combined with other indices, RuntimeError for a
        value that does not broadcast to the region."""
        _setitem(self, index, value)


class WriteBack:
    """How a basic-indexing view `parent[index]` writes into its parent, as PyTorch's views write into the tensor
    they were taken of (`x[0] += 1`: Tensor.assign of the view assigns `parent[index] = value`). The parent is held
    weakly when it is a tensor of its own (dead, nobody can see the write), strongly when it is itself a view or a
    `.data` alias (short-lived objects, the way through to the tensor that owns the memory)."""
    __slots__ = ("_parent", "index", "parent_node", "node")

    def __init__(self, parent: TensorBase, index, node):
        through = parent._write_back is not None or parent._view_of is not None or parent._storage_owner() is not parent
        self._parent = (lambda: parent) if through else weakref.ref(parent)
        self.index, self.parent_node, self.node = index, parent.node, node

    def parent(self) -> TensorBase | None:
        """The tensor the view was taken of, or None once it is gone (held weakly)."""
        return self._parent()

    def unchanged_view_of(self, parent: TensorBase, index) -> bool:
        """Whether the view this describes, still holding its first node, is parent[index] of parent as it is now
        (writing it back, the last step of `x[i] += v`, changes nothing)."""
        try:
            same_index = bool(index == self.index)
        except Exception:   # an index whose == is not a bool
            return False
        return self.parent() is parent and parent.node is self.parent_node and same_index


def _getitem(x: TensorBase, index) -> TensorBase:
    """x[index] (IndexingMixin.__getitem__)."""
    for item in index if isinstance(index, tuple) else (index,):
        if isinstance(item, TensorBase) and item.dtype.name == "uint8":
            # PyTorch reads a uint8 index tensor as a mask (deprecated), NumPy a uint8 array as integers: refuse
            # rather than silently pick one
            raise IndexError("getitem: a uint8 index tensor is ambiguous (PyTorch reads it as a mask, NumPy as "
                             "integers); cast it: .long() for integer indices, .bool() for a mask")
    host_values: dict = {}
    items = _normalize(x, index, host_values)
    x._same_device("getitem", *items)
    parent = x
    x, tensor_indices = _basic(x, items)
    if not tensor_indices:
        x._write_back = WriteBack(parent, index, x.node)
        return x
    flat, rows, layout = _flatten_indexed(x, tensor_indices, host_values, "getitem")
    out = flat._gather(len(layout.pre), rows)
    layout.check(out)
    return out.reshape(layout.pre + layout.idx_shape + layout.post)


class _IndexedLayout:
    """How `_flatten_indexed` laid out a view's integer-indexed axes: `order` the permutation that brought them
    together at `insert_at`, the permuted shape, the dims before (`pre`) and after (`post`) them, the broadcast
    index shape, and the index checks still to attach to the reader of the result."""
    __slots__ = ("order", "permuted_shape", "pre", "post", "idx_shape", "checks")

    def check(self, reader) -> None:
        for values, size, dim, op in self.checks:
            check_index(values, -size, size, op, f"dimension {dim} with size {size}", reader=reader)


def _flatten_indexed(x, tensor_indices, host_values: dict, op: str):
    """For a view x (after `_basic`) with integer tensors on some axes: (flat, rows, layout) where flat is x with
    the indexed axes moved together (to the front when they are not adjacent, like NumPy) and merged into one of
    size S, shape pre + (S,) + post, and rows the int index of shape pre + (L,) + post along it (L = number of
    index entries, broadcast over the index tensors) that a GATHER along that axis reads or a scatter writes."""
    axes = [a for a, _, _ in tensor_indices]
    idx_shape = ()
    for _, t, _ in tensor_indices:
        idx_shape = broadcast_shape(idx_shape, t.shape, "index")
    # bool masks are not supported as lazy indices (their result shape depends on the data)
    for _, t, _ in tensor_indices:
        if t.dtype.name == "bool":
            raise IndexError(f"{op}: boolean mask indexing is not supported here (the result shape would depend on "
                             f"the data); use Tensor.where instead")
    adjacent = axes == list(range(axes[0], axes[0] + len(axes)))
    rest = [a for a in range(x.ndim) if a not in axes]
    insert_at = axes[0] if adjacent else 0
    order = rest[:insert_at] + axes + rest[insert_at:]
    x = x.permute(order)
    sizes = [x.shape[insert_at + i] for i in range(len(axes))]
    linear = None
    # the linear index in int32 when it fits (a 64-bit index, the default int, would double the width of the index
    # math); a value out of range that wraps is caught by check_index on the original index
    index_dtype = "int32" if prod(sizes) <= 2 ** 31 else "int64"
    for (axis, t, _), size, stride in zip(tensor_indices, sizes, _strides(sizes)):
        t = t.cast(index_dtype) if t.dtype.itemsize < 4 or t.dtype.name != index_dtype else t
        t = (t < 0).where(t + size, t)
        term = t._broadcast_to(idx_shape) * stride
        linear = term if linear is None else linear + term
    flat = x.reshape(x.shape[:insert_at] + (prod(sizes),) + x.shape[insert_at + len(axes):])
    layout = _IndexedLayout()
    layout.order, layout.permuted_shape, layout.idx_shape = order, x.shape, idx_shape
    layout.pre, layout.post = flat.shape[:insert_at], flat.shape[insert_at + 1:]
    layout.checks = [(host_values.get(id(t), t), size, dim, op) for (_, t, dim), size in zip(tensor_indices, sizes)]
    count = prod(idx_shape)
    rows = linear.reshape((1,) * len(layout.pre) + (count,) + (1,) * len(layout.post))
    return flat, rows.expand(layout.pre + (count,) + layout.post), layout


def _strides(sizes: list[int]) -> list[int]:
    out, acc = [], 1
    for s in reversed(sizes):
        out.append(acc)
        acc *= s
    return list(reversed(out))


def _setitem(x: TensorBase, index, value) -> None:
    """x[index] = value for basic indices: the value is moved back into place with the inverse movement ops and
    merged with a mask, then assigned into x's buffer."""
    if _is_mask(index):
        _setitem_mask(x, index, value)
        return
    host_values: dict = {}
    items = _normalize(x, index, host_values)
    tensors = [it for it in items if isinstance(it, TensorBase)]
    if any(t.dtype.name == "bool" for t in tensors):
        raise NotImplementedError("setitem: a bool mask combined with other indices is not supported; use "
                                  "Tensor.where (a bool mask alone, x[mask] = v, is)")
    if tensors:
        _setitem_advanced(x, items, value, host_values)
        return
    x._same_device("setitem", value)
    written = getattr(value, "_write_back", None)
    if written is not None and value.node is written.node and written.unchanged_view_of(x, index):
        return   # x[index] = x[index] (the view `x[index] += v` wrote through already)
    region, _ = _basic(x, items)
    value = value if isinstance(value, TensorBase) else x._new(value, dtype=x.dtype, device=x.device)
    value = value.cast(x.dtype)
    # leading size-1 dims beyond the region's are dropped, as PyTorch and NumPy do (x[0] = v of shape (1, n))
    extra = value.ndim - region.ndim
    if extra > 0 and all(s == 1 for s in value.shape[:extra]):
        value = value.reshape(value.shape[extra:])
    try:
        if value.ndim > region.ndim:
            raise ValueError
        value = value._broadcast_to(region.shape)
    except ValueError:
        raise RuntimeError(f"setitem: value of shape {value.shape} cannot be broadcast to the indexed region "
                           f"{region.shape}") from None
    inside = x.ones(*region.shape, dtype="bool", device=x.device)
    # region (a view of x) must not be alive at the assign: for a one-element x it can share x's base node, and
    # the assign would take x for a view of it (zeros(1)[0] = v raised)
    del region
    placed, mask = _scatter_basic(x, items, value), _scatter_basic(x, items, inside)
    x.assign(mask.where(placed, x))


def _setitem_advanced(x: TensorBase, items: list, value, host_values: dict) -> None:
    """x[index] = value with integer tensors (lists, ranges, arrays) among the indices, torch's index_put_ without
    accumulate: the region the basic indices select is rebuilt with the value scattered along its indexed axes
    (`put_indexed`), then written back through the basic indices."""
    rebuilt = put_indexed(x, items, value, host_values, accumulate=False, op="setitem")
    if rebuilt is not None:
        _setitem(x, tuple(slice(None) if isinstance(it, TensorBase) else it for it in items), rebuilt)


def put_indexed(x: TensorBase, items: list, value, host_values: dict, accumulate: bool, op: str):
    """The region x[basic items] (`_basic`) with `value` written (or, with `accumulate`, added) at the places its
    integer-tensor items name, or None when they name no place. Where index entries repeat a place, the last
    one's value is written (torch leaves which one unspecified); accumulated, every entry adds. Gradients reach x
    (where nothing was written, everywhere when accumulating) and the value. `items` as `_normalize` gives them.
    RuntimeError for a value that does not broadcast to x[items]'s shape, IndexError for an index out of range."""
    x._same_device(op, *items, value)
    region, tensor_indices = _basic(x, items)
    flat, rows, layout = _flatten_indexed(region, tensor_indices, host_values, op)
    result_shape = layout.pre + layout.idx_shape + layout.post
    value = value if isinstance(value, TensorBase) else x._new(value, dtype=x.dtype, device=x.device)
    value = value.cast(x.dtype)
    extra = value.ndim - len(result_shape)
    if extra > 0 and all(size == 1 for size in value.shape[:extra]):   # leading size-1 dims dropped, as torch
        value = value.reshape(value.shape[extra:])
    try:
        if value.ndim > len(result_shape):
            raise ValueError
        value = value._broadcast_to(result_shape)
    except ValueError:
        raise RuntimeError(f"{op}: shape mismatch: value of shape {value.shape} cannot be broadcast to the "
                           f"indexing result of shape {result_shape}") from None
    if prod(layout.idx_shape) == 0:
        return None   # no index entries: nothing is written
    axis, source = len(layout.pre), value.reshape(rows.shape)
    written = flat.scatter_add(axis, rows, source) if accumulate else flat.scatter(axis, rows, source)
    layout.check(written)
    inverse = [layout.order.index(a) for a in range(len(layout.order))]
    return written.reshape(layout.permuted_shape).permute(inverse)


def _is_mask(index) -> bool:
    return isinstance(index, TensorBase) and index.dtype.name == "bool" or \
        isinstance(index, np.ndarray) and index.dtype == np.bool_


def _setitem_mask(x: TensorBase, mask, value) -> None:
    """x[mask] = value for a bool mask over x's leading dims (torch, NumPy): a where, assigned into x. The value
    is a scalar or a tensor that broadcasts to x (one value per selected element, whose count depends on the data,
    is not supported: the lazy graph needs the shape before the mask is computed)."""
    mask = mask if isinstance(mask, TensorBase) else x._new(mask, device=x.device)
    x._same_device("setitem", mask, value)
    if mask.ndim > x.ndim or mask.shape != x.shape[:mask.ndim]:
        raise IndexError(f"setitem: the mask of shape {mask.shape} does not match the indexed tensor of shape "
                         f"{x.shape} (its shape must be x's leading dims)")
    mask = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
    value = value if isinstance(value, TensorBase) else x._new(value, dtype=x.dtype, device=x.device)
    if value.numel() == 1:
        value = value.reshape(())
    try:
        shape = broadcast_shape(value.shape, x.shape, "setitem")
    except ValueError:
        shape = None
    if shape != x.shape:
        raise NotImplementedError(f"setitem: x[mask] = value needs a scalar or a value that broadcasts to "
                                  f"{x.shape}, got shape {value.shape} (one value per selected element depends on "
                                  f"the data; use x.assign(mask.where(v, x)))")
    x.assign(mask.where(value.cast(x.dtype), x))


def _scatter_basic(x, items, value):
    """Inverse of `_basic`: a tensor of x's shape holding `value` in the indexed region, 0 elsewhere."""
    # one (index, size) per original dim (None adds no dim); undo the final reshape: size 1 for int indices
    axes = list(zip([it for it in items if it is not None], x.shape))
    v = value.reshape(tuple(1 if isinstance(it, int) else len(range(*it.indices(size))) for it, size in axes))
    for dim, (it, size) in enumerate(axes):
        if isinstance(it, int):
            i = it + size if it < 0 else it
            v = v.pad(tuple((i, size - i - 1) if a == dim else (0, 0) for a in range(v.ndim)))
        else:
            r = range(*it.indices(size))
            n = len(r)
            if n == 0:
                v = v.pad(tuple((0, size) if a == dim else (0, 0) for a in range(v.ndim)))
            else:
                step, first, flip = r.step, r[0], False
                if step < 0:
                    first, step, flip = size - 1 - first, -step, True
                if step > 1:   # spread: (n,) -> (n, step) padded -> (n*step,) -> cut to the span
                    pre, post = v.shape[:dim], v.shape[dim + 1:]
                    v = v.reshape(pre + (n, 1) + post)
                    v = v.pad(tuple((0, step - 1) if a == dim + 1 else (0, 0) for a in range(v.ndim)))
                    v = v.reshape(pre + (n * step,) + post)
                    v = v.shrink(tuple((0, (n - 1) * step + 1) if a == dim else None for a in range(v.ndim)))
                span = v.shape[dim]
                v = v.pad(tuple((first, size - first - span) if a == dim else (0, 0) for a in range(v.ndim)))
                if flip:
                    v = v.flip(dim)
    return v
