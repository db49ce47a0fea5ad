"""Scatter ops of Tensor with torch's names: scatter, scatter_add, scatter_reduce, index_add, index_put, index_copy,
index_fill, put and masked_scatter (out-of-place; the in-place spellings with `_` write the result into self with
`assign`).

Each is a one-hot compare of the index with arange(size of dim) and a reduce over the index entries that land on
the same place, so it stays lazy, fuses, and is differentiable with respect to both self and the source (the
gradient runs back through the same one-hot). The work is O(index entries * size of dim).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from tinyjit.dtype import dtypes
from tinyjit.index_check import check_index, wide_enough
from tinyjit.indexing import _normalize, put_indexed
from tinyjit.tensor_base import TensorBase, broadcast_shape
from tinyjit.tensor_movement import _axis

if TYPE_CHECKING:
    from typing_extensions import Self

REDUCTIONS = ("sum", "prod", "mean", "amax", "amin")


def _identity(reduce: str, dtype):
    """The value an empty slot of a reduce holds (it never changes the result)."""
    if reduce in ("sum", "mean"):
        return 0
    if reduce == "prod":
        return 1
    if dtype.is_float:
        return -math.inf if reduce == "amax" else math.inf
    info = np.iinfo(dtype.np)
    return int(info.min) if reduce == "amax" else int(info.max)


class ScatterMixin(TensorBase):
    def _scatter_slots(self, op: str, dim: int, index, src):
        """The entries of `src` (shrunk to index's shape) placed on self's grid: (values, hits), both of shape
        self.shape + (k,), k = index.shape[dim]: slot j of place p holds src at the index entry j that names p
        along `dim` (and the others of p), where hits is True; elsewhere values holds 0 and hits False. Checks the
        arguments as torch does (RuntimeError for ranks, sizes and dtypes, IndexError for an index value out of
        range, TypeError for a float index)."""
        x = self.reshape(1) if self.ndim == 0 else self
        d = _axis(x, dim, op)
        if not isinstance(index, TensorBase):
            raise TypeError(f"{op}: index must be an int tensor, got {type(index).__name__}")
        self._same_device(op, index, src)
        if index.dtype.is_float or index.dtype == dtypes.bool:
            raise TypeError(f"{op}: index must be an int tensor, got {index.dtype.name}")
        index = index.reshape(1) if index.ndim == 0 else index
        if isinstance(src, TensorBase):
            src = src.reshape(1) if src.ndim == 0 else src
            if src.dtype != self.dtype:
                raise RuntimeError(f"{op}: expected self.dtype to be equal to src.dtype, got {self.dtype.name} and "
                                   f"{src.dtype.name}")
            if index.ndim != x.ndim or src.ndim != x.ndim:
                raise RuntimeError(f"{op}: index {index.shape}, self {self.shape} and src {src.shape} must have the "
                                   f"same number of dims")
            if any(i > s for i, s in zip(index.shape, src.shape)):
                raise RuntimeError(f"{op}: index {index.shape} is larger than src {src.shape} in some dim")
            src = src.shrink(tuple((0, i) for i in index.shape))
        else:
            if index.ndim != x.ndim:
                raise RuntimeError(f"{op}: index {index.shape} and self {self.shape} must have the same number of "
                                   f"dims")
            src = self.full(index.shape, src, dtype=self.dtype, device=self.device)
        if any(i > s for a, (i, s) in enumerate(zip(index.shape, x.shape)) if a != d):
            raise RuntimeError(f"{op}: index {index.shape} is larger than self {self.shape} in a dim other than "
                               f"{d}")
        n = x.shape[d]
        narrow = wide_enough(index, n)
        onehot = narrow.unsqueeze(-1) == x.arange(n, dtype=narrow.dtype, device=x.device)    # index.shape + (n,)
        check_index(index, 0, n, op, f"dimension {d} with size {n}", reader=onehot)
        # swap the index's dim d with the one-hot's last: index.shape with dim d of n, then the k entries of dim d
        hits = onehot.transpose(d, -1)
        values = hits.where(src.unsqueeze(-1).transpose(d, -1), 0)
        grow = tuple((0, s - i) if a != d else (0, 0) for a, (i, s) in enumerate(zip(hits.shape, x.shape))) + \
            ((0, 0),)
        return x, values.pad(grow), hits.pad(grow), d

    def scatter(self, dim: int, index, src=None, value=None, reduce=None) -> Self:
        """torch.scatter: self with out[index[i][j]][j] = src[i][j] for dim 0 (and so for every dim); `src` is a
        tensor of self's dtype or a scalar (also `value=`). Where several index entries name one place torch leaves
        the winner unspecified; here the last one wins (its gradient goes to that entry only). reduce='add' or
        'multiply' (torch's older spelling) is scatter_reduce with 'sum' or 'prod'. Gradients: self's where nothing
        was written, src's from the places it was written to. Errors as scatter_reduce."""
        if src is None and value is None:
            raise TypeError("scatter: needs src (a tensor or a scalar) or value=")
        src = value if src is None else src
        if reduce is not None:
            if reduce not in ("add", "multiply"):
                raise RuntimeError(f"scatter: reduce must be 'add' or 'multiply', got {reduce!r}")
            return self.scatter_reduce(dim, index, src, "sum" if reduce == "add" else "prod")
        x, values, hits, d = self._scatter_slots("scatter", dim, index, src)
        k = hits.shape[-1]
        slot = self._index_range(k, dtypes.int32, self.device)
        last = hits.where(slot, -1).amax(-1, keepdim=True)             # the last entry written to each place
        winner = hits & (slot == last)
        picked = winner.where(values, 0).sum(-1, dtype=self.dtype if self.dtype.is_float else None).cast(self.dtype)
        out = hits.any(-1).where(picked, x)
        return out.reshape(self.shape)

    def scatter_add(self, dim: int, index, src) -> Self:
        """torch.scatter_add: self with src[i][j] added at out[index[i][j]][j] for dim 0 (and so for every dim);
        every entry adds, duplicates included. index has self's number of dims, no dim larger than src's, nor
        than self's outside `dim`. Gradients: self's is the output's, src's the output's at index (a gather).
        RuntimeError for shapes or dtypes that differ from those rules, IndexError for an index value outside
        [0, size of dim) (checked when computed), TypeError for a float index."""
        return self.scatter_reduce(dim, index, src, "sum")

    def scatter_reduce(self, dim: int, index, src, reduce: str, include_self: bool = True) -> Self:
        """torch.scatter_reduce: the src entries that index sends to one place of self (as scatter_add) reduced with
        `reduce`: 'sum', 'prod', 'mean', 'amax' or 'amin', together with self's value there when `include_self`
        (else self's value is kept only where nothing lands). 'mean' of ints rounds down, like torch. Gradients as
        torch's: amax/amin share the gradient evenly between the tied values (self's included), prod's is the
        product of the others. RuntimeError for another reduce or the errors of scatter_add."""
        if reduce not in REDUCTIONS:
            raise RuntimeError(f"scatter_reduce: reduce must be one of {REDUCTIONS}, got {reduce!r}")
        if self.dtype == dtypes.bool:
            raise RuntimeError("scatter_reduce: bool tensors are not supported; cast to an int or float dtype")
        x, values, hits, d = self._scatter_slots("scatter_reduce", dim, index, src)
        values = hits.where(values, _identity(reduce, self.dtype))
        if include_self:
            values = x.unsqueeze(-1).cat(values, dim=-1)
        if reduce in ("sum", "mean"):
            out = values.sum(-1, dtype=self.dtype if self.dtype.is_float else None).cast(self.dtype)
        elif reduce == "prod":
            out = values.prod(-1).cast(self.dtype)
        else:
            out = values.amax(-1) if reduce == "amax" else values.amin(-1)
        landed = hits.any(-1)
        if reduce == "mean":
            count = hits.sum(-1) + (1 if include_self else 0)
            count = landed.where(count, 1).cast(self.dtype)
            out = out / count if self.dtype.is_float else out // count
        if not include_self:
            out = landed.where(out, x)
        return out.reshape(self.shape)

    def index_add(self, dim: int, index, source, alpha=1) -> Self:
        """torch.index_add: self with alpha * source[..., i, ...] added at self[..., index[i], ...] along `dim`
        (index 1-D of source.shape[dim] ints in [0, size of dim); duplicates add). source has self's shape except
        along `dim`. Gradients: self's is the output's, source's alpha times the output's at index. RuntimeError
        for shapes or dtypes that differ from those rules, IndexError for an index value out of range (checked
        when computed), TypeError for a float index."""
        x = self.reshape(1) if self.ndim == 0 else self
        d = _axis(x, dim, "index_add")
        if not isinstance(index, TensorBase) or index.dtype.is_float or index.dtype == dtypes.bool:
            raise TypeError(f"index_add: index must be an int tensor, got "
                            f"{getattr(index, 'dtype', type(index).__name__)}")
        self._same_device("index_add", index, source)
        index = index.reshape(-1) if index.ndim == 0 else index
        source = source.reshape(1) if source.ndim == 0 else source
        if index.ndim != 1:
            raise IndexError(f"index_add: index must be a vector, got shape {index.shape}")
        if source.dtype != self.dtype:
            raise RuntimeError(f"index_add: self ({self.dtype.name}) and source ({source.dtype.name}) must have the "
                               f"same dtype")
        expected = x.shape[:d] + (index.shape[0],) + x.shape[d + 1:]
        if source.shape != expected:
            raise RuntimeError(f"index_add: source of shape {source.shape} must have shape {expected} (self "
                               f"{self.shape}, {index.shape[0]} indices along dim {d})")
        n = x.shape[d]
        narrow = wide_enough(index, n)
        onehot = narrow.unsqueeze(-1) == x.arange(n, dtype=narrow.dtype, device=x.device)    # (L, n)
        check_index(index, 0, n, "index_add", f"dimension {d} with size {n}", reader=onehot)
        moved = source.transpose(d, -1) if d != x.ndim - 1 else source                      # (..., L)
        spread = onehot.where(moved.unsqueeze(-1), 0)                                        # (..., L, n)
        added = spread.sum(-2, dtype=self.dtype if self.dtype.is_float else None).cast(self.dtype)
        added = added.transpose(d, -1) if d != x.ndim - 1 else added
        if not (isinstance(alpha, (int, float)) and alpha == 1):
            added = added * alpha
        return (x + added).cast(self.dtype).reshape(self.shape)

    def index_put(self, indices, values, accumulate: bool = False) -> Self:
        """torch.index_put: self with `values` (broadcast to self[indices]'s shape) written at self[indices], or
        added there with `accumulate` (duplicate places add up); `indices` a tuple or list of int tensors for
        self's leading dims (as x[i0, i1, ...]). Without accumulate, a repeated place keeps the last entry's
        value (torch leaves it unspecified). Gradients: self's where nothing was written (everywhere when
        accumulating), values' from their places. TypeError for indices that are not a tuple or list of tensors,
        IndexError for one out of range, RuntimeError for values that do not broadcast."""
        if not isinstance(indices, (tuple, list)) or not all(isinstance(i, TensorBase) for i in indices):
            raise TypeError(f"index_put: indices must be a tuple of tensors, got {type(indices).__name__}")
        if any(i.dtype == dtypes.bool for i in indices):
            raise NotImplementedError("index_put: bool mask indices are not supported (use Tensor.where)")
        if not indices:
            raise RuntimeError("index_put: needs at least one index tensor")
        host_values: dict = {}
        items = _normalize(self, tuple(indices), host_values)
        rebuilt = put_indexed(self, items, values, host_values, accumulate, "index_put")
        return self * 1 if rebuilt is None else rebuilt.reshape(self.shape)

    def index_put_(self, indices, values, accumulate: bool = False) -> Self:
        """torch.Tensor.index_put_: index_put written into self; returns self."""
        return self._inplace("index_put_", lambda: self.index_put(indices, values, accumulate))

    def _along(self, op: str, dim: int, index) -> tuple:
        """The index tuple (:, ..., index) that picks `index` (an int tensor of 0 or 1 dims) along `dim`."""
        d = _axis(self.reshape(1) if self.ndim == 0 else self, dim, op)
        if not isinstance(index, TensorBase) or index.dtype.is_float or index.dtype == dtypes.bool:
            raise TypeError(f"{op}: index must be an int tensor, got {getattr(index, 'dtype', type(index).__name__)}")
        if index.ndim > 1:
            raise IndexError(f"{op}: index should have 0 or 1 dims, got shape {index.shape}")
        return (slice(None),) * d + (index.reshape(-1),)

    def index_copy(self, dim: int, index, source) -> Self:
        """torch.index_copy: self with source[..., i, ...] written at self[..., index[i], ...] along `dim` (index
        of 0 or 1 dims; source of self's shape with len(index) along dim; a repeated index keeps the last entry).
        Gradients: self's where nothing was written, source's from its places. IndexError for an index of more
        dims or out of range, or a source of another shape (torch's class)."""
        along = self._along("index_copy", dim, index)
        expected = self.shape[:len(along) - 1] + (along[-1].shape[0],) + self.shape[len(along):]
        if not isinstance(source, TensorBase) or source.shape != expected:
            raise IndexError(f"index_copy: source of shape {getattr(source, 'shape', None)} must have shape "
                             f"{expected} (self {self.shape} with {expected[len(along) - 1]} indices along dim "
                             f"{len(along) - 1})")
        out = self * 1
        out[along] = source
        return out

    def index_copy_(self, dim: int, index, source) -> Self:
        """torch.Tensor.index_copy_: index_copy written into self; returns self."""
        return self._inplace("index_copy_", lambda: self.index_copy(dim, index, source))

    def index_fill(self, dim: int, index, value) -> Self:
        """torch.index_fill: self with `value` (a number or a 0-d tensor) at self[..., index[i], ...] along `dim`.
        Gradients: self's where nothing was written, a 0-d value's summed over its places. IndexError for an index
        of more dims or out of range, RuntimeError for a value tensor that is not 0-d."""
        along = self._along("index_fill", dim, index)
        if isinstance(value, TensorBase) and value.ndim != 0:
            raise RuntimeError(f"index_fill: only supports a 0-dimensional value tensor, got shape {value.shape}")
        out = self * 1
        out[along] = value
        return out

    def index_fill_(self, dim: int, index, value) -> Self:
        """torch.Tensor.index_fill_: index_fill written into self; returns self."""
        return self._inplace("index_fill_", lambda: self.index_fill(dim, index, value))

    def scatter_(self, dim: int, index, src=None, value=None, reduce=None) -> Self:
        """torch.Tensor.scatter_: scatter written into self (see scatter); returns self."""
        return self._inplace("scatter_", lambda: self.scatter(dim, index, src, value=value, reduce=reduce))

    def scatter_add_(self, dim: int, index, src) -> Self:
        """torch.Tensor.scatter_add_: scatter_add written into self; returns self."""
        return self._inplace("scatter_add_", lambda: self.scatter_add(dim, index, src))

    def scatter_reduce_(self, dim: int, index, src, reduce: str, include_self: bool = True) -> Self:
        """torch.Tensor.scatter_reduce_: scatter_reduce written into self; returns self."""
        return self._inplace("scatter_reduce_", lambda: self.scatter_reduce(dim, index, src, reduce, include_self))

    def index_add_(self, dim: int, index, source, alpha=1) -> Self:
        """torch.Tensor.index_add_: index_add written into self; returns self."""
        return self._inplace("index_add_", lambda: self.index_add(dim, index, source, alpha=alpha))

    def put(self, index, source, accumulate: bool = False) -> Self:
        """torch.put / Tensor.put: self with source's entries written at the places `index` names in self
        flattened (row-major, whatever self's strides), or added there with `accumulate` (duplicates add up);
        index and source of any shapes with the same number of entries, negative indices count from the end.
        Without accumulate a repeated place keeps the last entry's value (torch leaves it unspecified) and only
        that entry gets the gradient there (torch's formula gives every duplicate the place's gradient).
        Gradients: self's where nothing was written (everywhere when accumulating), source's from its places.
        Errors as torch: TypeError for an index or source that is not a tensor; RuntimeError for an index that is
        not int64 or a source of another dtype than self's; IndexError for a different number of index and source
        entries, any index into an empty tensor, or a value outside [-numel, numel) (checked at the call for host
        values, else when computed: see tinyjit.index_check)."""
        for name, value in (("index", index), ("source", source)):
            if not isinstance(value, TensorBase):
                raise TypeError(f"put(): argument '{name}' must be Tensor, not {type(value).__name__}")
        self._same_device("put", index, source)
        if index.dtype != dtypes.int64:
            raise RuntimeError(f"put: expected a long (int64) tensor for index, but got {index.dtype.name}")
        if source.dtype != self.dtype:
            raise RuntimeError(f"put: self and source expected to have the same dtype, but got self.dtype = "
                               f"{self.dtype.name} and source.dtype = {source.dtype.name}")
        if index.numel() != source.numel():
            raise IndexError(f"put: expected source and index to have the same number of elements, but got "
                             f"source.numel() = {source.numel()}, index.numel() = {index.numel()}")
        if self.numel() == 0 and index.numel() > 0:
            raise IndexError(f"put: tried to put {index.numel()} elements into an empty tensor of shape "
                             f"{self.shape}")
        if index.numel() == 0:   # nothing is written; x - (empty sum, +0.0) is x, -0.0 and NaN included, and
            # keeps source in the graph so it gets its (empty) gradient as in torch
            return self - source.sum().cast(self.dtype) if self.dtype.is_float else (self * 1).cast(self.dtype)
        if accumulate and self.dtype == dtypes.bool:   # torch adds bools as a logical or
            added = self.cast(dtypes.uint8).put(index, source.cast(dtypes.uint8), accumulate=True)
            return added != 0
        flat = self.reshape(-1)
        items = _normalize(flat, (index.reshape(-1),))
        rebuilt = put_indexed(flat, items, source.reshape(-1), {}, accumulate, "put")
        return rebuilt.reshape(self.shape)

    def put_(self, index, source, accumulate: bool = False) -> Self:
        """torch.Tensor.put_: put written into self; returns self."""
        return self._inplace("put_", lambda: self.put(index, source, accumulate))

    def masked_scatter(self, mask, source) -> Self:
        """torch.masked_scatter: self with source's entries, taken in order (source flattened, row-major, any
        shape), written where the bool `mask` is True; self and mask broadcast to one shape (the result's).
        The mask is computed and read back at the call (where each True takes its entry from is a prefix count
        of the mask, O(n) on the host against O(n^2) as a lazy cumsum; torch's CPU kernel synchronizes too);
        the entries are picked lazily (a GATHER), with gradients to self (where the mask is False) and source
        (from where its entries went). Errors as torch: TypeError for a source that is not a tensor;
        RuntimeError for a mask that is not bool, a source of another dtype than self's, shapes that do not
        broadcast, or fewer source entries than True values in the mask."""
        if not isinstance(source, TensorBase):
            raise TypeError(f"masked_scatter(): argument 'source' must be Tensor, not {type(source).__name__}")
        if not isinstance(mask, TensorBase):
            raise TypeError(f"masked_scatter(): argument 'mask' must be Tensor, not {type(mask).__name__}")
        self._same_device("masked_scatter", mask, source)
        if mask.dtype != dtypes.bool:
            raise RuntimeError(f"masked_scatter: only supports boolean masks, but got mask with dtype "
                               f"{mask.dtype.name}")
        if source.dtype != self.dtype:
            raise RuntimeError(f"masked_scatter: expected self and source to have the same dtype, but got "
                               f"{self.dtype.name} and {source.dtype.name}")
        try:
            shape = broadcast_shape(self.shape, mask.shape, "masked_scatter")
        except ValueError as e:
            raise RuntimeError(str(e)) from None
        chosen = np.broadcast_to(mask.numpy(), shape).reshape(-1)
        count = int(np.count_nonzero(chosen))
        if count > source.numel():
            raise RuntimeError(f"masked_scatter: number of elements of source ({source.numel()}) < number of ones "
                               f"in mask ({count}); mask of shape {mask.shape}, self of shape {self.shape}")
        flat_source = source.reshape(-1)
        if source.numel() == 0:
            # nothing is picked (count is 0); the empty sum, exactly 0, keeps source in the graph so it gets its
            # (empty) gradient as in torch
            picked = self.zeros(*shape, dtype=self.dtype, device=self.device) + flat_source.sum().cast(self.dtype) \
                if self.dtype.is_float else self.zeros(*shape, dtype=self.dtype, device=self.device)
        else:
            # entry k of the flattened result takes source's entry (number of Trues before k); where the mask is
            # False any valid entry will do (0), the where below drops it
            taken = np.maximum(np.cumsum(chosen, dtype=np.int64) - 1, 0)
            width = np.int32 if source.numel() <= 2 ** 31 else np.int64
            rows = self._new(taken.astype(width), device=self.device)
            picked = flat_source._gather(0, rows).reshape(shape)
        return mask._broadcast_to(shape).where(picked, self)

    def masked_scatter_(self, mask, source) -> Self:
        """torch.Tensor.masked_scatter_: masked_scatter written into self (the mask must broadcast to self's shape,
        else RuntimeError); returns self."""
        return self._inplace("masked_scatter_", lambda: self.masked_scatter(mask, source))
