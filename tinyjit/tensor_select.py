"""Selecting and rearranging ops of Tensor with torch's names: narrow, movedim, swapaxes, unbind, diagonal, diag,
unfold, index_select, take, repeat_interleave, and the ops whose result shape depends on the data (nonzero,
argwhere, masked_select) and `meshgrid`.

Views are movement ops; picking by an index tensor is the GATHER primitive (an indexed load in the kernel), so it
stays lazy, fuses and is differentiable. nonzero, argwhere, masked_select and repeat_interleave with a tensor of
repeats need the data to know their result's shape: they realize what decides the shape (the mask, the repeats)
and read it on the host, as torch synchronizes with the device for them, then build the result lazily (the
values picked stay in the graph, with their gradient).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from tinyjit.dtype import dtypes
from tinyjit.helpers import prod
from tinyjit.index_check import check_index
from tinyjit.tensor_base import TensorBase, broadcast_shape
from tinyjit.tensor_linalg import _diagonal
from tinyjit.tensor_movement import _axis, _distinct_axes
from tinyjit.tensor_conv import _window_one_axis

if TYPE_CHECKING:
    from typing_extensions import Self


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _pick(x: TensorBase, d: int, index: TensorBase, op: str) -> TensorBase:
    """x with dim d replaced by the entries `index` (1-D, values in [0, size)) names, in their order: a GATHER along
    d (its gradient is a scatter-add). Index values are checked (tinyjit.index_check)."""
    n = x.shape[d]
    picked_shape = x.shape[:d] + (index.shape[0],) + x.shape[d + 1:]
    rows = index.reshape((1,) * d + (index.shape[0],) + (1,) * (x.ndim - d - 1)).expand(picked_shape)
    out = x._gather(d, rows)
    check_index(index, 0, n, op, f"dimension {d} with size {n}", reader=out)
    return out


class SelectMixin(TensorBase):
    def narrow(self, dim: int, start, length: int) -> Self:
        """torch.narrow: the view of `length` entries of dim `dim` from `start` (negative counts from the end; an int
        or a 0-d int tensor, read on the host). IndexError for a dim out of range or a start outside [-size, size],
        RuntimeError when start + length passes the end or length is negative."""
        if self.ndim == 0:
            raise RuntimeError("narrow: cannot be applied to a 0-dim tensor")
        d = _axis(self, dim, "narrow")
        if isinstance(start, TensorBase):
            if start.ndim != 0 or start.dtype.is_float:
                raise RuntimeError(f"narrow: start must be an int or a 0-d int tensor, got shape {start.shape} "
                                   f"{start.dtype.name}")
            start = int(start.item())
        size = self.shape[d]
        if not _is_int(start) or not -size <= start <= size:
            raise IndexError(f"narrow: start {start} is out of range for dimension {d} of size {size} (shape "
                             f"{self.shape})")
        start = start + size if start < 0 else int(start)
        if not _is_int(length) or length < 0 or start + length > size:
            raise RuntimeError(f"narrow: start ({start}) + length ({length}) exceeds dimension size ({size}) of "
                               f"shape {self.shape}, or length is negative")
        return self.shrink(tuple((start, start + int(length)) if a == d else None for a in range(self.ndim)))

    def movedim(self, source, destination) -> Self:
        """torch.movedim: the dims `source` (an int or a sequence) moved to the positions `destination` (as many),
        the other dims keeping their order; a view. IndexError for a dim out of range, RuntimeError for sequences
        of different lengths or a dim named twice."""
        src = tuple(source) if isinstance(source, (tuple, list)) else (source,)
        dst = tuple(destination) if isinstance(destination, (tuple, list)) else (destination,)
        if len(src) != len(dst):
            raise RuntimeError(f"movedim: invalid source or destination dims: source {src} needs as many dims as "
                               f"destination {dst}")
        src, dst = _distinct_axes(self, src, "movedim"), _distinct_axes(self, dst, "movedim")
        rest = iter(a for a in range(self.ndim) if a not in src)
        placed = dict(zip(dst, src))
        return self.permute([placed[i] if i in placed else next(rest) for i in range(self.ndim)])

    def moveaxis(self, source, destination) -> Self:
        """torch.moveaxis / numpy.moveaxis: the same as movedim."""
        return self.movedim(source, destination)

    def swapaxes(self, axis0: int, axis1: int) -> Self:
        """torch.swapaxes / numpy.swapaxes: dims axis0 and axis1 exchanged (transpose), a view; IndexError for a dim
        out of range."""
        return self.transpose(axis0, axis1) if self.ndim else self._check_0d_dims("swapaxes", axis0, axis1)

    def swapdims(self, dim0: int, dim1: int) -> Self:
        """torch.swapdims: the same as swapaxes (transpose)."""
        return self.swapaxes(dim0, dim1)

    def _check_0d_dims(self, op: str, *dims) -> Self:
        for d in dims:
            _axis(self, d, op)
        return self

    def unbind(self, dim: int = 0) -> tuple:
        """torch.unbind: the slices along `dim`, each without that dim, as a tuple of views. IndexError for a dim out
        of range or a 0-d tensor."""
        if self.ndim == 0:
            raise IndexError("unbind: dimension specified as 0 but tensor has no dimensions")
        d = _axis(self, dim, "unbind")
        return tuple(self.narrow(d, i, 1).squeeze(d) for i in range(self.shape[d]))

    def diagonal(self, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Self:
        """torch.diagonal: the entries (i, i + offset) of dims dim1 and dim2 (offset > 0 above the main diagonal,
        < 0 below), as a new last dim, the other dims in order; a view (movement ops). RuntimeError when dim1 and
        dim2 are the same dim, IndexError for one out of range."""
        a, b = _axis(self, dim1, "diagonal"), _axis(self, dim2, "diagonal")
        if a == b:
            raise RuntimeError(f"diagonal: dim1 {dim1} and dim2 {dim2} cannot be identical (shape {self.shape})")
        rows = (max(-offset, 0), self.shape[a])
        cols = (max(offset, 0), self.shape[b])
        n = max(min(rows[1] - rows[0], cols[1] - cols[0]), 0)
        window = {a: (rows[0], rows[0] + n) if n else (0, 0), b: (cols[0], cols[0] + n) if n else (0, 0)}
        square = self.shrink(tuple(window.get(i) for i in range(self.ndim)))
        if n == 0:   # nothing on that diagonal: the empty (..., 0) result
            rest = [i for i in range(self.ndim) if i not in (a, b)]
            return square.permute(rest + [a, b]).reshape(tuple(self.shape[i] for i in rest) + (0,))
        return _diagonal(square, min(a, b), max(a, b))

    def diag(self, diagonal: int = 0) -> Self:
        """torch.diag: of a 1-D tensor of n, the (n + |diagonal|, n + |diagonal|) matrix with it on the `diagonal`-th
        diagonal and zeros elsewhere; of a 2-D tensor, its `diagonal`-th diagonal (1-D). Movement ops only.
        RuntimeError for another number of dims."""
        if self.ndim == 2:
            return self.diagonal(diagonal)
        if self.ndim != 1:
            raise RuntimeError(f"diag: expected a 1-D or 2-D tensor, got shape {self.shape}")
        n, k = self.shape[0], abs(diagonal)
        # (n, 1) padded to (n, n + 1) and flattened puts v[i] at i * (n + 1), the place of (i, i) in an n x n grid
        square = self.reshape(n, 1).pad(((0, 0), (0, n))).reshape(n * (n + 1))[:n * n].reshape(n, n)
        return square.pad(((0, k), (k, 0)) if diagonal >= 0 else ((k, 0), (0, k)))

    def unfold(self, dimension: int, size: int, step: int) -> Self:
        """torch.Tensor.unfold: every window of `size` entries of dim `dimension`, `step` apart, as a new last dim:
        dim `dimension` becomes (size_of_dim - size) // step + 1 windows. A view (movement ops); a 0-d tensor gives
        shape (1,) (size 1). RuntimeError when size is above the dim's size or not positive, or step is not
        positive."""
        if self.ndim == 0:
            _axis(self, dimension, "unfold")
            if size != 1 or not _is_int(step) or step <= 0:
                raise RuntimeError(f"unfold: a 0-d tensor unfolds with size 1 and a positive step, got size {size}, "
                                   f"step {step}")
            return self.reshape(1)
        d = _axis(self, dimension, "unfold")
        if not _is_int(step) or step <= 0:
            raise RuntimeError(f"unfold: step is {step} but must be > 0")
        if not _is_int(size) or not 0 < size <= self.shape[d]:
            raise RuntimeError(f"unfold: maximum size for tensor at dimension {d} is {self.shape[d]} but size is "
                               f"{size} (sizes below 1 are not supported)")
        windows = _window_one_axis(self, d, int(size), int(step), 1)     # (..., count, size, ...)
        return windows.movedim(d + 1, -1)

    def index_select(self, dim: int, index) -> Self:
        """torch.index_select: the entries `index` (a 1-D or 0-d int tensor, values in [0, size); negatives are an
        error as in torch) of dim `dim`, in that order: dim `dim` gets len(index) entries. A one-hot compare and a
        sum, lazy and differentiable. IndexError for a dim out of range, or a value out of range (checked when
        computed, see tinyjit.index_check), an index of more than 1 dim; TypeError for a float index."""
        d = _axis(self, dim, "index_select") if self.ndim else 0
        if not isinstance(index, TensorBase):
            index = self._new(np.asarray(index, dtype=np.int64), device=self.device)
        self._same_device("index_select", index)
        if index.dtype.is_float or index.dtype == dtypes.bool:
            raise TypeError(f"index_select: index must be an int tensor, got {index.dtype.name}")
        if index.ndim > 1:
            raise IndexError(f"index_select: index is supposed to be a vector, got shape {index.shape}")
        if self.ndim == 0:
            if index.numel() != 1:
                raise IndexError(f"index_select: an index into a 0-d tensor can have only 1 value, got shape "
                                 f"{index.shape}")
            return _pick(self.reshape(1), 0, index.reshape(-1), "index_select").reshape(())
        return _pick(self, d, index.reshape(-1), "index_select")

    def take(self, index) -> Self:
        """torch.take: self flattened, then the entries `index` names (an int tensor of any shape; negative values
        count from the end): the result has index's shape. IndexError for a value outside [-numel, numel)."""
        if not isinstance(index, TensorBase):
            index = self._new(np.asarray(index, dtype=np.int64), device=self.device)
        if index.dtype.is_float or index.dtype == dtypes.bool:
            raise TypeError(f"take: index must be an int tensor, got {index.dtype.name}")
        return self.reshape(-1)[index]

    def repeat_interleave(self, repeats=None, dim: Optional[int] = None, output_size: Optional[int] = None) -> Self:
        """torch.repeat_interleave: each entry repeated `repeats` times along `dim` (self flattened when dim is None).
        `repeats` is an int (a view: expand and reshape) or an int tensor with one count per entry (or one count for
        all): its values decide the result's shape, so it is read on the host (torch synchronizes too) and the
        entries are picked with a one-hot (differentiable). `self.repeat_interleave()` of a 1-D tensor of counts is
        torch.repeat_interleave(repeats): the indices 0..n-1 each repeated. RuntimeError for negative repeats or
        counts that do not match the dim, or an output_size that differs from the result."""
        if repeats is None:
            if self.ndim != 1 or self.dtype.is_float:
                raise RuntimeError(f"repeat_interleave: repeats must be a 1-D int tensor, got shape {self.shape} "
                                   f"{self.dtype.name}")
            return self.arange(self.shape[0], dtype=dtypes.int64, device=self.device).repeat_interleave(self)
        x = self.reshape(-1) if dim is None else self
        d = _axis(x, dim, "repeat_interleave") if dim is not None and x.ndim else 0
        if x.ndim == 0:
            x = x.reshape(1)
        n = x.shape[d]
        if isinstance(repeats, TensorBase):
            if repeats.dtype.is_float or repeats.ndim > 1:
                raise RuntimeError(f"repeat_interleave: repeats must be an int or a 0-d or 1-D int tensor, got "
                                   f"shape {repeats.shape} {repeats.dtype.name}")
            counts = repeats.numpy().astype(np.int64).reshape(-1)
            if counts.size == 1:
                repeats = int(counts[0])
            elif counts.size != n:
                raise RuntimeError(f"repeat_interleave: repeats must have the same size as input along dim: "
                                   f"{counts.size} repeats for {n} entries (shape {x.shape}, dim {d})")
        if _is_int(repeats):
            if repeats < 0:
                raise RuntimeError(f"repeat_interleave: repeats can not be negative, got {repeats}")
            out_shape = x.shape[:d] + (n * int(repeats),) + x.shape[d + 1:]
            _check_output_size(output_size, out_shape[d])
            expanded = x.unsqueeze(d + 1).expand(x.shape[:d + 1] + (int(repeats),) + x.shape[d + 1:])
            return expanded.reshape(out_shape)
        if not isinstance(repeats, TensorBase):
            counts = np.asarray(repeats, dtype=np.int64).reshape(-1)
            if counts.size != n:
                raise RuntimeError(f"repeat_interleave: {counts.size} repeats for {n} entries (shape {x.shape}, dim "
                                   f"{d})")
        if (counts < 0).any():
            raise RuntimeError(f"repeat_interleave: repeats can not be negative, got {counts.tolist()}")
        _check_output_size(output_size, int(counts.sum()))
        index = self._new(np.repeat(np.arange(n, dtype=np.int64), counts), device=self.device)
        return _pick(x, d, index, "repeat_interleave")

    def nonzero(self, as_tuple: bool = False):
        """torch.nonzero: the indices of the nonzero entries (NaN counts), in row-major order: an int64 tensor of
        shape (count, ndim), or with `as_tuple` a tuple of ndim 1-D tensors (one per dim; a 0-d tensor counts as
        1-D). The count depends on the data: self is computed and read back (torch synchronizes too)."""
        values = self.numpy()
        if as_tuple:
            found = np.nonzero(np.atleast_1d(values))
            return tuple(self._new(i.astype(np.int64), device=self.device) for i in found)
        return self._new(np.argwhere(values).astype(np.int64), device=self.device)

    def argwhere(self) -> Self:
        """torch.argwhere (numpy.argwhere): the same as nonzero(): the (count, ndim) int64 indices of the nonzero
        entries, read back from the device."""
        return self.nonzero()

    def masked_select(self, mask) -> Self:
        """torch.masked_select: the entries of self where the bool `mask` is True (both broadcast to one shape), as
        a 1-D tensor in row-major order. The mask is computed and read back (the count depends on it); the values
        are picked lazily with their gradient. RuntimeError for a mask that is not bool, ValueError for shapes that
        do not broadcast."""
        if not isinstance(mask, TensorBase):
            mask = self._new(np.asarray(mask), device=self.device)
        self._same_device("masked_select", mask)
        if mask.dtype != dtypes.bool:
            raise RuntimeError(f"masked_select: expected a bool mask, got {mask.dtype.name}")
        shape = broadcast_shape(self.shape, mask.shape, "masked_select")
        flat_mask = np.broadcast_to(mask.numpy(), shape).reshape(-1)
        index = self._new(np.flatnonzero(flat_mask).astype(np.int64), device=self.device)
        source = self._broadcast_to(shape).reshape(prod(shape))
        return _pick(source, 0, index, "masked_select")


def _check_output_size(output_size, size: int) -> None:
    if output_size is not None and output_size != size:
        raise RuntimeError(f"repeat_interleave: output_size {output_size} does not match the result's size {size}")


def meshgrid(*tensors, indexing: str = "ij") -> tuple:
    """torch.meshgrid: for N 1-D (or 0-d) tensors, N tensors of shape (len(t0), ..., len(tN-1)) where the i-th
    holds tensors[i] along dim i (indexing='ij', torch's default) — or with indexing='xy' the first two dims
    swapped (numpy.meshgrid's default, Cartesian). Views (reshape and expand). Tensors may also be given as one
    list. RuntimeError for a tensor of more than 1 dim, different dtypes or devices; ValueError for another
    indexing."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    if not tensors:
        raise RuntimeError("meshgrid: expects a non-empty list of tensors")
    for t in tensors:
        if not isinstance(t, TensorBase) or t.ndim > 1:
            raise RuntimeError(f"meshgrid: expects 0-d or 1-d tensors, got "
                               f"{getattr(t, 'shape', type(t).__name__)}")
        if t.dtype != tensors[0].dtype:
            raise RuntimeError(f"meshgrid: expects all tensors to have the same dtype, got {tensors[0].dtype.name} "
                               f"and {t.dtype.name}")
        tensors[0]._same_device("meshgrid", t)
    sizes = [t.numel() for t in tensors]
    places = list(range(len(tensors)))
    if indexing == "xy" and len(tensors) >= 2:
        places[0], places[1] = 1, 0
        sizes[0], sizes[1] = sizes[1], sizes[0]
    out = []
    for t, place in zip(tensors, places):
        shape = tuple(sizes[place] if i == place else 1 for i in range(len(tensors)))
        out.append(t.reshape(shape).expand(tuple(sizes)))
    return tuple(out)

