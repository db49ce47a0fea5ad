"""Bounds checks for index values: getitem with integer arrays, gather, one_hot, cross_entropy/nll_loss targets
and Embedding. These ops pick with a one-hot compare or a GATHER, which read zeros for an index outside its range;
here such an index is an error, like PyTorch. The same machinery checks other values
an op needs valid where PyTorch raises (`check_values`: multinomial's weights).

- Index values on the host (a list, a NumPy array, a Python int, or a tensor already realized in CPU memory, also
  seen through reshapes) are checked at the call: `check_index` raises at once.
- A lazy index, or one realized on a device, is checked when it is first computed: the op registers a check on
  the node that reads the index (its one-hot compare, which the forward and the backward pass both read, or its
  GATHER, whose gradient carries the check on: `share_checks`), and
  `realize` calls `before_realize` first: for every registered check on a node it is about to compute, one flag
  (an any() over the index) is computed and read, and a bad index raises before anything else runs, so no
  tensor is left half-updated. Reading a device tensor back at the call instead would copy the whole index to
  the host and wait for the device on every call.
- TinyJit: a capture records the flag kernels and a step that reads each flag, so every replay is checked too.

Cost of the deferred check: per checked op, one small reduce kernel over the index and a one-byte read (a device
sync) in the realize that computes it, and the same in every TinyJit replay; a walk over the graph being
realized while a check is pending. `INDEX_CHECK=0` turns checking off (an out-of-range index then picks zeros).
The error is `IndexOutOfRange`, an IndexError that is also a RuntimeError (the class PyTorch raises for gather
and one_hot).
"""
from __future__ import annotations

import functools
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from tinyjit import capture, realize
from tinyjit.capture import StepKind
from tinyjit.dtype import dtypes, fits
from tinyjit.helpers import prod
from tinyjit.lazy import Node
from tinyjit.ops import Op
from tinyjit.tensor_base import TensorBase


_RESHAPE = Op.RESHAPE   # (a module constant: reading a member from the Enum class is a slow metaclass hook)


class IndexOutOfRange(IndexError, RuntimeError):
    """An index value outside the range its op accepts."""


def enabled() -> bool:
    """INDEX_CHECK=0 turns the checks off (read on each call, so tests and programs can switch it)."""
    return os.environ.get("INDEX_CHECK", "1") != "0"


@dataclass(frozen=True)
class _Range:
    low: int                        # valid values are low <= v < high ...
    high: int
    op: str                         # names in the message: "gather: index 5 is out of bounds for dimension 1 ..."
    what: str
    where: str                      # "dimension 1 with size 3"
    allowed: Optional[int] = None   # ... or v == allowed (cross_entropy's ignore_index)

    def bad(self, values: np.ndarray) -> np.ndarray:
        values = values.astype(np.int64, copy=False) if values.dtype != np.uint64 else values
        bad = (values < self.low) | (values >= self.high)
        return bad & (values != self.allowed) if self.allowed is not None else bad

    def error(self, values: np.ndarray) -> IndexOutOfRange:
        bad = values[self.bad(values)]
        extra = f", or {self.allowed}" if self.allowed is not None else ""
        span = f"; the bad values range from {bad.min()} to {bad.max()}" if bad.size > 1 else ""
        return IndexOutOfRange(f"{self.op}: {self.what} {bad.flat[0]} is out of bounds for {self.where} (valid: "
                               f"{self.low} to {self.high - 1}{extra}){span}")

    def flag(self, index: TensorBase) -> TensorBase:
        """A 0-d bool tensor: whether `index` holds a value outside the range."""
        values, low, allowed = index, self.low, self.allowed
        if index.dtype.name == "uint64":   # no wider int: compare as uint64, where no value is below 0
            low, allowed = max(low, 0), allowed if allowed is None or allowed >= 0 else None
        else:
            values = values.cast("int64")
        bad = (values < low) | (values >= self.high)
        if allowed is not None:
            bad = bad & (values != allowed)
        return bad.any()


@dataclass(frozen=True)
class _Values:
    """A check of other values (check_values): `flag(t)` builds a 0-d bool tensor that is True when t holds a bad
    value; `error(values)` makes the exception from the values read back."""
    flag: Callable[[TensorBase], TensorBase]
    error: Callable[[np.ndarray], Exception]


# node that reads checked values -> the checks still to run before it is computed (weak: a dropped graph needs
# none): (values node, the check (_Range or _Values), the reader's `_new`, which makes the values a tensor to build
# the check from)
_pending: "weakref.WeakKeyDictionary[Node, list[tuple[Node, object, Callable]]]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def check_index(index, low: int, high: int, op: str, where: str, reader: Optional[TensorBase] = None,
                what: str = "index", allowed: Optional[int] = None) -> None:
    """Check that every value of `index` is in [low, high) (or equals `allowed`), else IndexOutOfRange naming
    `op`, `what` and `where`. Host values (list, NumPy array, int, a tensor realized in CPU memory outside a
    TinyJit capture) are checked now; any other tensor is checked by the realize that first computes `reader`,
    the tensor whose node reads the index (required then)."""
    if not enabled():
        return
    valid = _Range(low, high, op, what, where, allowed)
    if isinstance(index, TensorBase):
        node = index.node
        values = _host_values(node) if capture.current() is None else None
        if values is None:
            assert reader is not None, "a deferred index check needs the tensor that reads the index"
            with _lock:
                _pending.setdefault(reader.node, []).append((node, valid, reader._new))
            return
    else:
        values = np.asarray(index)
    if values.size and valid.bad(values).any():
        raise valid.error(values)


def _host_values(node: Node) -> Optional[np.ndarray]:
    """The values of `node` when they are in CPU memory already: a realized node, or reshapes of one (an
    embedding's `idx.reshape(-1)` of a realized batch: checked at the call, with no flag kernel, no realize of
    the reshape and no pending check for realize to look for in every graph); else None."""
    base = node
    while base.op is _RESHAPE and base.buffer is None:
        base = base.src[0]
    buffer = base.buffer
    if buffer is None or buffer.device != "CPU" or buffer.size != prod(node.shape):
        return None
    return buffer.numpy().reshape(node.shape)


def share_checks(reader: Node, also: Node) -> None:
    """Register the checks pending on `reader` on `also` too: a gradient that reads the same index without reading
    the forward result (a gather's scatter-add) is checked when it is realized alone. A realize that computes both
    runs each check once."""
    with _lock:
        found = _pending.get(reader)
        if found and not also.realized:
            _pending.setdefault(also, []).extend(found)


def check_values(values: TensorBase, reader: TensorBase, flag: Callable[[TensorBase], TensorBase],
                 error: Callable[[np.ndarray], Exception]) -> None:
    """Raise `error(array)` unless `flag(values)` (a 0-d bool tensor built from values: True means bad) is False:
    at once for values realized in CPU memory outside a TinyJit capture, else in the realize that first computes
    `reader` (a tensor whose node reads `values`), as index checks are (INDEX_CHECK=0 turns these off too)."""
    if not enabled():
        return
    node = values.node
    if node.realized and node.device == "CPU" and capture.current() is None:
        if flag(values).item():
            raise error(values.numpy())
        return
    with _lock:
        _pending.setdefault(reader.node, []).append((node, _Values(flag, error), reader._new))


def wide_enough(index: TensorBase, n: int) -> TensorBase:
    """`index` in a dtype that holds 0..n-1, so comparing it with arange(n) of its dtype cannot wrap (a uint8
    index into 300 rows would otherwise match row 44 for 300 - 256), and no wider than 32 bits when n allows: a
    64-bit index (the default int) is compared as int32, which halves the width of the one-hot compares. A value
    outside [0, n) may then wrap into it, so callers check the ORIGINAL index (check_index), never this one."""
    if n <= 1 or fits(n - 1, index.dtype) and index.dtype.itemsize <= 4:
        return index
    return index.cast(dtypes.int32 if fits(n - 1, dtypes.int32) else dtypes.int64)


def before_realize(nodes, positions: dict[int, int]) -> bool:
    """Run the checks registered on the unrealized nodes reachable from `nodes`, whose graph's nodes are at
    `positions` (id(node) -> position in the scheduler's order: realize's GraphWalk.index). Realize calls it
    first (see the registration below); returns whether it ran any check (and so realized something)."""
    if not _pending.data:   # (the weak dictionary's own len() is a Python call; dead entries are dropped below)
        return False
    with _lock:
        for node in [n for n in _pending if n.realized]:   # computed without a check (e.g. INDEX_CHECK=0 then)
            del _pending[node]
        # the pending readers in this graph, in its order (the graph is large and the readers few: each reader is
        # looked up in the walk's positions, not each node of the walk in the weak dictionary)
        readers = sorted((positions[id(node)], node) for node in list(_pending) if id(node) in positions)
        checks, seen = [], set()
        for _, node in readers:
            for index, valid, make in _pending.pop(node):
                if (id(index), id(valid)) not in seen:   # (shared by a forward and its gradient: once)
                    seen.add((id(index), id(valid)))
                    checks.append((node, index, valid, make))
    if not checks:
        return False
    flags = [valid.flag(make(index)) for _, index, valid, make in checks]
    # the flags and the indices in one schedule (the index then stays computed for the op that reads it); this
    # realize runs the checks of the indices' own graphs first
    passed = 0
    try:
        realize.realize_nodes([f.node for f in flags] + [index for _, index, _, _ in checks])
        for (_, index, valid, _), flag in zip(checks, flags):
            verify = functools.partial(_verify, valid, index.shape)
            capture.record(StepKind.CHECK, verify, [flag.node.buffer, index.buffer])   # TinyJit replays check too
            verify(flag.node.buffer, index.buffer)
            passed += 1
        return True
    except BaseException:
        # the checks not passed stay pending: realizing the same tensor again raises again
        with _lock:
            for reader, index, valid, make in checks[passed:]:
                _pending.setdefault(reader, []).append((index, valid, make))
        raise


# realize runs the pending checks before it computes anything (registered here: realize knows no index checks)
realize.before_realize_hooks.append(before_realize)


def _verify(valid, shape: tuple, flag, index_buffer) -> None:
    if flag.numpy().reshape(()).item():
        raise valid.error(index_buffer.numpy().reshape(shape))
