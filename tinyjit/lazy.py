"""The lazy graph: immutable nodes that say what to compute, built by Tensor ops and rewritten by autograd.

A node never changes what it means. Realizing it attaches a `buffer` holding its value, after which every
graph that refers to the node loads that buffer instead of recomputing it.
"""
from __future__ import annotations

import math

from tinyjit.dtype import DType, dtypes
from tinyjit.helpers import prod
from tinyjit.ops import BOOL_RESULT, Op


# ops as module constants for the functions every graph op goes through: reading a member from an Enum class
# (Op.PAD) goes through the enum metaclass's __getattr__ hook, several times slower than a global
_RESHAPE_OR_EXPAND = frozenset((Op.RESHAPE, Op.EXPAND))
_CASTS = frozenset((Op.CAST, Op.BITCAST))
_PERMUTE, _PAD, _SHRINK, _FLIP, _WHERE = Op.PERMUTE, Op.PAD, Op.SHRINK, Op.FLIP, Op.WHERE
_BUFFER, _CONST, _RESHAPE, _EXPAND = Op.BUFFER, Op.CONST, Op.RESHAPE, Op.EXPAND


# Node.shared_const's nodes by (value, sign of a float, dtype name, shape, device); cleared when it holds this many
SHARED_CONSTS = 1024
_shared_consts: dict[tuple, "Node"] = {}


class Node:
    """One value of the graph: `op` applied to the nodes `src` (with `arg`), of `dtype` and `shape` on `device`.

    Two slots belong to autograd (tinyjit.tensor_autograd), kept on the node rather than in weak dictionaries keyed
    by it: every op would otherwise make a weak reference (a garbage-collected object) and every backward pass
    would look each node up through Python-level weak-dictionary calls.
    - `edges`: recorded when a Tensor op made this node while some input required grad: one bool per source,
      whether that input required grad (gradient flows only along these); None when nothing was recorded.
    - `leaf`: a weak reference to the leaf tensor that has (or had) this node, or None (gradient stops there)."""
    __slots__ = ("op", "src", "arg", "dtype", "shape", "device", "buffer", "edges", "leaf", "__weakref__")

    def __init__(self, op: Op, src: tuple[Node, ...], arg, dtype: DType, shape: tuple[int, ...], device: str,
                 buffer=None):
        self.op, self.src, self.arg, self.dtype, self.shape, self.device = op, src, arg, dtype, shape, device
        self.buffer = buffer
        self.edges = self.leaf = None

    # ---- constructors ----
    @staticmethod
    def from_buffer(buffer, shape: tuple[int, ...]) -> Node:
        return Node(_BUFFER, (), None, buffer.dtype, tuple(shape), buffer.device, buffer)

    @staticmethod
    def const(value, dtype: DType, shape: tuple[int, ...], device: str) -> Node:
        """A scalar broadcast to `shape` (stored as a 0-d const expanded, so it never needs memory)."""
        value = _cast_python(value, dtype)
        node = Node(_CONST, (), value, dtype, (), device)
        if shape:
            node = node.movement(_RESHAPE, (1,) * len(shape)).movement(_EXPAND, tuple(shape))
        return node

    @staticmethod
    def shared_const(value, dtype: DType, shape: tuple[int, ...], device: str) -> Node:
        """`const`, the same node for the same value, dtype, shape and device while that node is untouched (no
        buffer, no autograd mark): for the scalar operands of ops (`x * 0.5`) and the constants of gradient rules.
        A training step makes hundreds of the same few constants, three nodes each; shared, its graph is a third
        smaller, which every pass over it and the garbage collector see. (A node is immutable in meaning; where one
        gets marked, a leaf tensor's or a realized one, later lookups make a fresh node instead.)"""
        value = _cast_python(value, dtype)
        sign = None
        if type(value) is float:
            if value != value:   # (NaN: never equal to itself, so never found again; not kept)
                return Node.const(value, dtype, shape, device)
            if value == 0.0:   # 0.0 and -0.0 are equal as keys
                sign = math.copysign(1.0, value)
        key = (value, sign, dtype.name, shape if type(shape) is tuple else tuple(shape), device)
        node = _shared_consts.get(key)
        if node is None or node.buffer is not None or node.edges is not None or node.leaf is not None:
            node = Node.const(value, dtype, shape, device)
            if len(_shared_consts) >= SHARED_CONSTS:
                _shared_consts.clear()
            _shared_consts[key] = node
        return node

    @staticmethod
    def empty(shape: tuple[int, ...], dtype: DType, device: str) -> Node:
        return Node(Op.EMPTY, (), None, dtype, tuple(shape), device)

    # ---- building ----
    def alu(self, op: Op, *others: Node, arg=None) -> Node:
        srcs = (self,) + others
        for s in others:
            assert s.shape == self.shape, f"{op.name}: shapes {self.shape} and {s.shape} (broadcast first)"
            assert s.device == self.device, f"{op.name}: devices {self.device} and {s.device}"
        if op in BOOL_RESULT:
            dtype = dtypes.bool
        elif op in _CASTS:
            dtype = arg
        elif op is _WHERE:
            dtype = srcs[1].dtype
        else:
            dtype = self.dtype
        return Node(op, srcs, arg, dtype, self.shape, self.device)

    def reduce(self, op: Op, axes: tuple[int, ...]) -> Node:
        axes = tuple(sorted(a for a in axes if self.shape[a] != 1))
        if not axes:
            return self
        shape = tuple(1 if i in axes else s for i, s in enumerate(self.shape))
        return Node(op, (self,), axes, self.dtype, shape, self.device)

    def gather(self, index: Node, axis: int) -> Node:
        """GATHER (tinyjit/ops.py): this table read at `index` along `axis`; the index's shape, this node's dtype."""
        assert index.dtype.is_int, f"GATHER: index dtype {index.dtype.name}"
        assert len(index.shape) == len(self.shape) and all(
            i == t for d, (i, t) in enumerate(zip(index.shape, self.shape)) if d != axis), \
            f"GATHER: index {index.shape} for a table {self.shape} along axis {axis}"
        assert index.device == self.device, f"GATHER: devices {self.device} and {index.device}"
        return Node(Op.GATHER, (self, index), axis, self.dtype, index.shape, self.device)

    def movement(self, op: Op, arg) -> Node:
        shape = _movement_shape(self.shape, op, arg)
        if shape == self.shape and op in _RESHAPE_OR_EXPAND:
            return self
        if op is _PERMUTE and arg == tuple(range(len(self.shape))):
            return self
        if op is _PAD and all(a == (0, 0) for a in arg):
            return self
        if op is _SHRINK and all(a == (0, s) for a, s in zip(arg, self.shape)):
            return self
        if op is _FLIP and not arg:
            return self
        # fold chains of the same op: reshape(reshape(x)) == reshape(x)
        if op is self.op and op in _RESHAPE_OR_EXPAND and self.buffer is None:
            return self.src[0].movement(op, arg)
        return Node(op, (self,), arg, self.dtype, shape, self.device)

    # ---- inspection ----
    @property
    def realized(self) -> bool:
        return self.buffer is not None

    @property
    def size(self) -> int:
        return prod(self.shape)

    def toposort(self) -> list[Node]:
        return toposort([self])

    def __repr__(self) -> str:
        state = "realized" if self.realized else "lazy"
        return f"<Node {self.op.name} {self.shape} {self.dtype.name} {self.device} {state}>"


def toposort(roots: list[Node], stop_at_realized: bool = True, children=None) -> list[Node]:
    """Nodes reachable from `roots`, each after its sources (iterative: graphs can be deep). `children(node)`
    picks which sources to follow (default: all of them, stopping at realized nodes if asked).

    Every realize walks its whole graph at least once (the schedule cache's key, pending index checks), so this is
    written for speed: a node is pushed as itself, expanded the first time it is popped (pushed back above its
    sources) and emitted the second time."""
    order: list[Node] = []
    emitted: set[int] = set()
    expanded: set[int] = set()
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        key = id(node)
        if key in expanded:
            if key not in emitted:   # (a copy pushed before the node was expanded elsewhere: already emitted)
                emitted.add(key)
                order.append(node)
            continue
        expanded.add(key)
        stack.append(node)
        if children is not None:
            sources = tuple(children(node))
        elif stop_at_realized and node.buffer is not None:
            continue
        else:
            sources = node.src
        for s in reversed(sources):
            if id(s) not in expanded:
                stack.append(s)
    return order


def _movement_shape(shape: tuple[int, ...], op: Op, arg) -> tuple[int, ...]:
    if op in _RESHAPE_OR_EXPAND:
        return tuple(arg)
    if op is _PERMUTE:
        return tuple(shape[i] for i in arg)
    if op is _PAD:
        return tuple(s + b + a for s, (b, a) in zip(shape, arg))
    if op is _SHRINK:
        return tuple(hi - lo for lo, hi in arg)
    if op is _FLIP:
        return shape
    raise ValueError(f"not a movement op: {op}")


def _cast_python(value, dtype: DType):
    kind = dtype.kind   # (not `dtype == dtypes.bool`: every scalar operand comes here, and DType.__eq__ is Python)
    if kind == "b":
        return bool(value)
    if kind == "i" or kind == "u":
        return int(value)
    return float(value)

