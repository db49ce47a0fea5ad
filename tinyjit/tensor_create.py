"""Tensor constructors: constants, ranges, identity and empty buffers (random ones are in tinyjit/random.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from tinyjit.device import canonicalize
from tinyjit.dtype import check_fits, dtypes
from tinyjit.lazy import Node
from tinyjit.tensor_base import TensorBase

if TYPE_CHECKING:
    from typing_extensions import Self

Scalar = Union[int, float, bool]


def shape_arg(shape) -> tuple[int, ...]:
    """Accept f(2, 3), f((2, 3)) and f([2, 3]) spellings of a shape."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]

    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    for s in shape:
        if not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"invalid shape {shape}: sizes must be non-negative ints")
    return tuple(int(s) for s in shape)


class CreationMixin(TensorBase):
    @classmethod
    def full(cls, shape, fill_value: Scalar, dtype=None, device=None, requires_grad=None) -> Self:
        """A tensor of `shape` filled with `fill_value` (torch.full). Without a dtype, a Python int gets the default
        int (int64, uint64 past it), a float the default float, a bool bool; RuntimeError (like PyTorch) for an int
        that the given int dtype cannot hold."""
        shape = shape_arg(shape)
        dt = dtypes.from_any(dtype) if dtype is not None else dtypes.from_py(fill_value)
        check_fits(fill_value, dt, "full")
        return cls._new(Node.const(fill_value, dt, shape, canonicalize(device)), requires_grad=requires_grad)

    @classmethod
    def zeros(cls, *shape, dtype=None, device=None, requires_grad=None) -> Self:
        """A tensor of `shape` filled with 0 (torch.zeros), of `dtype` (default float32); the shape as f(2, 3), f((2,
        3)) or f([2, 3]). ValueError for a negative size."""
        return cls.full(shape_arg(shape), 0.0, dtype=dtype or dtypes.default_float, device=device,
                        requires_grad=requires_grad)

    @classmethod
    def ones(cls, *shape, dtype=None, device=None, requires_grad=None) -> Self:
        """A tensor of `shape` filled with 1 (torch.ones), of `dtype` (default float32); the shape as f(2, 3), f((2, 3))
        or f([2, 3]). ValueError for a negative size."""
        return cls.full(shape_arg(shape), 1.0, dtype=dtype or dtypes.default_float, device=device,
                        requires_grad=requires_grad)

    @classmethod
    def empty(cls, *shape, dtype=None, device=None) -> Self:
        """An uninitialized tensor of `shape` (torch.empty), of `dtype` (default float32): no values are written until
        something assigns them. ValueError for a negative size."""
        dt = dtypes.from_any(dtype or dtypes.default_float)
        return cls._new(Node.empty(shape_arg(shape), dt, canonicalize(device)))

    def new_full(self, size, fill_value: Scalar, dtype=None, device=None, requires_grad=None) -> Self:
        """torch.Tensor.new_full: a tensor of `size` filled with `fill_value`, of self's dtype and device unless
        given."""
        return type(self).full(shape_arg((size,)), fill_value, dtype=dtype or self.dtype,
                               device=device or self.device, requires_grad=requires_grad)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=None) -> Self:
        """torch.Tensor.new_zeros: zeros of `size`, of self's dtype and device unless given."""
        return self.new_full(shape_arg(size), 0, dtype, device, requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=None) -> Self:
        """torch.Tensor.new_ones: ones of `size`, of self's dtype and device unless given."""
        return self.new_full(shape_arg(size), 1, dtype, device, requires_grad)

    def new_empty(self, *size, dtype=None, device=None) -> Self:
        """torch.Tensor.new_empty: an uninitialized tensor of `size`, of self's dtype and device unless given."""
        return type(self).empty(*shape_arg(size), dtype=dtype or self.dtype, device=device or self.device)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=None) -> Self:
        """torch.Tensor.new_tensor: `data` as a new tensor of self's dtype and device unless given."""
        return self._new(data, dtype=dtype or self.dtype, device=device or self.device,
                          requires_grad=requires_grad)

    def full_like(self, fill_value: Scalar, dtype=None, device=None) -> Self:
        """A tensor of self's shape filled with `fill_value` (torch.full_like), of self's dtype and device unless given;
        RuntimeError for a value the int dtype cannot hold."""
        return type(self).full(self.shape, fill_value, dtype=dtype or self.dtype, device=device or self.device)

    def zeros_like(self, dtype=None, device=None) -> Self:
        """Zeros of self's shape (torch.zeros_like), of self's dtype and device unless given."""
        return self.full_like(0, dtype, device)

    def ones_like(self, dtype=None, device=None) -> Self:
        """Ones of self's shape (torch.ones_like), of self's dtype and device unless given."""
        return self.full_like(1, dtype, device)

    def empty_like(self, dtype=None, device=None) -> Self:
        """An uninitialized tensor of self's shape (torch.empty_like), of self's dtype and device unless given."""
        return type(self).empty(*self.shape, dtype=dtype or self.dtype, device=device or self.device)

    @classmethod
    def arange(cls, start, stop=None, step=1, dtype=None, device=None) -> Self:
        """start, start + step, ... below stop (torch.arange, numpy.arange; arange(stop) starts at 0): int64 for int
        arguments, float32 when one is a float, unless `dtype` is given. ValueError for step 0."""
        if stop is None:
            start, stop = 0, start
        if step == 0:
            raise ValueError("arange: step must be nonzero")
        is_float = any(isinstance(v, float) for v in (start, stop, step))
        values = np.arange(start, stop, step)
        if dtype is not None:
            dt = dtypes.from_any(dtype)
        elif is_float:
            dt = dtypes.default_float
        else:   # int64, like torch.arange of ints
            dt = dtypes.default_int
        return cls._new(values.astype(dt.np), device=device)

    @classmethod
    def linspace(cls, start, stop, steps: int, dtype=None, device=None) -> Self:
        """`steps` evenly spaced values from start to stop inclusive (torch.linspace, numpy.linspace), of `dtype`
        (default float32)."""
        dt = dtypes.from_any(dtype) if dtype is not None else dtypes.default_float
        return cls._new(np.linspace(start, stop, steps).astype(dt.np), device=device)

    @classmethod
    def eye(cls, n: int, m: Optional[int] = None, dtype=None, device=None) -> Self:
        """The n x m identity matrix (m defaults to n; torch.eye, numpy.eye), of `dtype` (default float32), built from
        movement ops without uploading it."""
        m = n if m is None else m
        dt = dtypes.from_any(dtype) if dtype is not None else dtypes.default_float
        if n > m:   # the trick below puts row i's 1 at column i only while i <= m
            return cls.eye(m, n, dtype=dt, device=device).T
        # a 1 followed by m zeros, repeated and cut: row i has its 1 at column i, no arange needed
        row = cls.ones(1, dtype=dt, device=device).pad(((0, m),))
        return row.reshape(1, m + 1).expand(n, m + 1).reshape(n * (m + 1))[:n * m].reshape(n, m) \
            if n and m else cls.zeros(n, m, dtype=dt, device=device)

    @classmethod
    def _index_range(cls, n: int, dtype, device: str) -> TensorBase:
        """0, 1, ..., n-1 as a lazy `dtype` tensor on `device`, computed where it is used: the host builds and
        uploads only ranges of at most HOST_RANGE items, so an index over 2**31 elements costs kilobytes, not
        16 GiB.

        n items are the first n of a (a, HOST_RANGE) grid whose item [i, j] is i * HOST_RANGE + j, with the range
        of a = ceil(n / HOST_RANGE) rows composed the same way: O(n) work on the device, O(log n) small uploads.
        Only movement ops, add and mul: fused into the kernel that reads the indices (argmax, random bits)."""
        dt = dtypes.from_any(dtype)
        if n <= HOST_RANGE:
            return cls._new(np.arange(n).astype(dt.np), device=device)
        rows = -(-n // HOST_RANGE)
        row_starts = cls._index_range(rows, dt, device).reshape(rows, 1) * HOST_RANGE
        grid = row_starts + cls._index_range(HOST_RANGE, dt, device).reshape(1, HOST_RANGE)
        return grid.reshape(rows * HOST_RANGE).shrink(((0, n),))


# ranges up to this long are uploaded from the host as they are; longer ones are composed from them on the device
HOST_RANGE = 1024
