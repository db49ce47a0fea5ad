"""Tensor constructors: constants, ranges, identity, empty buffers and random numbers."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from tinyjit.device import canonicalize
from tinyjit.dtype import check_fits, dtypes
from tinyjit.lazy import Node

if TYPE_CHECKING:
    from tinyjit.tensor import Tensor

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


class CreationMixin:
    @classmethod
    def full(cls, shape, fill_value: Scalar, dtype=None, device=None, requires_grad=None) -> "Tensor":
        """A tensor of `shape` filled with `fill_value` (torch.full). Without a dtype, a Python int gets the default
        int (int64, uint64 past it), a float the default float, a bool bool; RuntimeError (like PyTorch) for an int
        that the given int dtype cannot hold."""
        shape = shape_arg(shape)
        dt = dtypes.from_any(dtype) if dtype is not None else dtypes.from_py(fill_value)
        check_fits(fill_value, dt, "full")
        return cls(Node.const(fill_value, dt, shape, canonicalize(device)), requires_grad=requires_grad)

    @classmethod
    def zeros(cls, *shape, dtype=None, device=None, requires_grad=None) -> "Tensor":
        return cls.full(shape_arg(shape), 0.0, dtype=dtype or dtypes.default_float, device=device,
                        requires_grad=requires_grad)

    @classmethod
    def ones(cls, *shape, dtype=None, device=None, requires_grad=None) -> "Tensor":
        return cls.full(shape_arg(shape), 1.0, dtype=dtype or dtypes.default_float, device=device,
                        requires_grad=requires_grad)

    @classmethod
    def empty(cls, *shape, dtype=None, device=None) -> "Tensor":
        return cls(Node.empty(shape_arg(shape), dtypes.from_any(dtype or dtypes.default_float), canonicalize(device)))

    def new_full(self, size, fill_value: Scalar, dtype=None, device=None, requires_grad=None) -> "Tensor":
        """torch.Tensor.new_full: a tensor of `size` filled with `fill_value`, of self's dtype and device unless
        given."""
        return type(self).full(shape_arg((size,)), fill_value, dtype=dtype or self.dtype,
                               device=device or self.device, requires_grad=requires_grad)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=None) -> "Tensor":
        """torch.Tensor.new_zeros: zeros of `size`, of self's dtype and device unless given."""
        return self.new_full(shape_arg(size), 0, dtype, device, requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=None) -> "Tensor":
        """torch.Tensor.new_ones: ones of `size`, of self's dtype and device unless given."""
        return self.new_full(shape_arg(size), 1, dtype, device, requires_grad)

    def new_empty(self, *size, dtype=None, device=None) -> "Tensor":
        """torch.Tensor.new_empty: an uninitialized tensor of `size`, of self's dtype and device unless given."""
        return type(self).empty(*shape_arg(size), dtype=dtype or self.dtype, device=device or self.device)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=None) -> "Tensor":
        """torch.Tensor.new_tensor: `data` as a new tensor of self's dtype and device unless given."""
        return type(self)(data, dtype=dtype or self.dtype, device=device or self.device,
                          requires_grad=requires_grad)

    def full_like(self, fill_value: Scalar, dtype=None, device=None) -> "Tensor":
        return type(self).full(self.shape, fill_value, dtype=dtype or self.dtype, device=device or self.device)

    def zeros_like(self, dtype=None, device=None) -> "Tensor":
        return self.full_like(0, dtype, device)

    def ones_like(self, dtype=None, device=None) -> "Tensor":
        return self.full_like(1, dtype, device)

    def empty_like(self, dtype=None, device=None) -> "Tensor":
        return type(self).empty(*self.shape, dtype=dtype or self.dtype, device=device or self.device)

    @classmethod
    def arange(cls, start, stop=None, step=1, dtype=None, device=None) -> "Tensor":
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
        return cls(values.astype(dt.np), device=device)

    @classmethod
    def linspace(cls, start, stop, steps: int, dtype=None, device=None) -> "Tensor":
        dt = dtypes.from_any(dtype) if dtype is not None else dtypes.default_float
        return cls(np.linspace(start, stop, steps).astype(dt.np), device=device)

    @classmethod
    def eye(cls, n: int, m: Optional[int] = None, dtype=None, device=None) -> "Tensor":
        m = n if m is None else m
        dt = dtypes.from_any(dtype) if dtype is not None else dtypes.default_float
        if n > m:   # the trick below puts row i's 1 at column i only while i <= m
            return cls.eye(m, n, dtype=dt, device=device).T
        # a 1 followed by m zeros, repeated and cut: row i has its 1 at column i, no arange needed
        row = cls.ones(1, dtype=dt, device=device).pad(((0, m),))
        return row.reshape(1, m + 1).expand(n, m + 1).reshape(n * (m + 1))[:n * m].reshape(n, m) \
            if n and m else cls.zeros(n, m, dtype=dt, device=device)

    # random numbers are generated on the device: see tinyjit/random.py
    @classmethod
    def manual_seed(cls, seed: int = 0) -> None:
        from tinyjit import random
        random.manual_seed(seed)

    @classmethod
    def rand(cls, *shape, dtype=None, device=None, requires_grad=None) -> "Tensor":
        from tinyjit import random
        dt = dtypes.from_any(dtype or dtypes.default_float)
        out = random.uniform01(shape_arg(shape), canonicalize(device)).cast(dt)
        return cls(out.node, requires_grad=requires_grad)

    @classmethod
    def randn(cls, *shape, dtype=None, device=None, requires_grad=None) -> "Tensor":
        from tinyjit import random
        dt = dtypes.from_any(dtype or dtypes.default_float)
        out = random.standard_normal(shape_arg(shape), canonicalize(device)).cast(dt)
        return cls(out.node, requires_grad=requires_grad)

    @classmethod
    def randint(cls, low: int, high: Optional[int] = None, size=(1,), dtype=None, device=None) -> "Tensor":
        if high is None:
            low, high = 0, low
        if high <= low:
            raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
        dt = dtypes.from_any(dtype) if dtype is not None else dtypes.default_int   # int64, like torch.randint
        u = cls.rand(*shape_arg(size), dtype=dtypes.float64, device=device)
        return (u * (high - low)).floor().cast(dtypes.int64).add(low).cast(dt)

    @classmethod
    def uniform(cls, *shape, low=0.0, high=1.0, dtype=None, device=None, requires_grad=None) -> "Tensor":
        t = cls.rand(*shape, dtype=dtype, device=device) * (high - low) + low
        return cls(t.node, requires_grad=requires_grad)

    @classmethod
    def normal(cls, *shape, mean=0.0, std=1.0, dtype=None, device=None, requires_grad=None) -> "Tensor":
        t = cls.randn(*shape, dtype=dtype, device=device) * std + mean
        return cls(t.node, requires_grad=requires_grad)

    def rand_like(self) -> "Tensor":
        return type(self).rand(*self.shape, dtype=self.dtype if self.dtype.is_float else None, device=self.device)

    def randn_like(self) -> "Tensor":
        return type(self).randn(*self.shape, dtype=self.dtype if self.dtype.is_float else None, device=self.device)


# ranges up to this long are uploaded from the host as they are; longer ones are composed from them on the device
HOST_RANGE = 1024


def index_range(n: int, dtype, device: str) -> "Tensor":
    """0, 1, ..., n-1 as a lazy `dtype` tensor on `device`, computed where it is used: the host builds and uploads
    only ranges of at most HOST_RANGE items, so an index over 2**31 elements costs kilobytes, not 16 GiB.

    n items are the first n of a (a, HOST_RANGE) grid whose item [i, j] is i * HOST_RANGE + j, with the range of
    a = ceil(n / HOST_RANGE) rows composed the same way: O(n) work on the device, O(log n) small uploads. Only
    movement ops, add and mul: fused into the kernel that reads the indices (argmax, random bits)."""
    from tinyjit.tensor import Tensor
    dt = dtypes.from_any(dtype)
    if n <= HOST_RANGE:
        return Tensor(np.arange(n).astype(dt.np), device=device)
    rows = -(-n // HOST_RANGE)
    row_starts = index_range(rows, dt, device).reshape(rows, 1) * HOST_RANGE
    grid = row_starts + index_range(HOST_RANGE, dt, device).reshape(1, HOST_RANGE)
    return grid.reshape(rows * HOST_RANGE).shrink(((0, n),))
