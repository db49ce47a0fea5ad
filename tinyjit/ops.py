"""The primitive operations: every Tensor method is built from these, codegen and autograd know only these."""
from __future__ import annotations

import math
import weakref
from enum import Enum, auto
from typing import TYPE_CHECKING, NamedTuple, Optional

if TYPE_CHECKING:
    from tinyjit.dtype import DType


class Op(Enum):
    # buffers and constants
    BUFFER = auto()      # a realized buffer; arg: the Buffer
    CONST = auto()       # a scalar broadcast to the node's shape; arg: the Python value
    EMPTY = auto()       # uninitialized memory of the node's shape
    COPY = auto()        # copy of src[0] to this node's device
    CONTIGUOUS = auto()  # forces src[0] into its own buffer (a kernel boundary)
    ASSIGN = auto()      # write src[1] into the buffer of src[0] (in place); the node's value is the new contents
    # unary
    NEG = auto()
    EXP2 = auto()
    LOG2 = auto()
    SIN = auto()         # sin(x + k*pi/2); arg: k (quarter turns, None for 0), so k = 1 is cos with no rounded x + pi/2
    SQRT = auto()
    RECIP = auto()
    CAST = auto()        # arg: target dtype (value conversion); float -> int truncates toward zero, and NaN, +-inf
    #                      and values out of range give the bits 100...0 (INT_MIN; x86, PyTorch); a type narrower
    #                      than 32 bits converts through int32 and uint32 through int64, then wraps
    BITCAST = auto()     # arg: target dtype (same bits)
    # binary
    ADD = auto()
    MUL = auto()
    MAX = auto()
    CMPLT = auto()
    CMPNE = auto()
    IDIV = auto()        # C's `/`: ints truncate toward zero, x / 0 = 0, MIN / -1 = MIN (wraps); floats are IEEE
    #                      division, correctly rounded
    MOD = auto()         # C's `%` and fmod: the exact remainder, with the sign of the dividend;
    #                      int x % 0 = 0, x % -1 = 0
    AND = auto()
    OR = auto()
    XOR = auto()
    SHL = auto()         # by an amount >= the bit width, or negative: 0 (PyTorch)
    SHR = auto()         # arithmetic for signed types; by >= the bit width, or negative: 0, or -1 for x < 0
    # ternary
    WHERE = auto()
    # reduce; arg: tuple of reduced axes (kept with size 1)
    SUM = auto()
    RMAX = auto()
    # movement; arg: see View
    RESHAPE = auto()
    PERMUTE = auto()
    EXPAND = auto()
    PAD = auto()
    SHRINK = auto()
    FLIP = auto()
    # indexed load; arg: the gathered axis. src: (table, index); the result has the index's shape and the table's
    # dtype, the index has the table's shape except along the axis (any length there): out[..., i, ...] =
    # table[..., index[..., i, ...], ...] (torch.gather). An index outside [0, table.shape[axis]) reads 0 (Tensor ops
    # check indices before any kernel runs: tinyjit/index_check.py). The kernel AST has no GATHER: it is a LOAD
    # whose address along the axis comes from the index value (see gathered_load below)
    GATHER = auto()
    # kernel AST only (never in the lazy graph)
    LOAD = auto()        # arg: (buffer index, ShapeTracker), or for a gathered load (buffer index, ShapeTracker,
    #                      Gather); src: () or, gathered, (the index value,)
    STORE = auto()       # arg: (buffer index, ShapeTracker); src: (value,)
    VALID = auto()       # bool: the ShapeTracker's mask at the current index; arg: ShapeTracker

    def __repr__(self) -> str:
        return f"Op.{self.name}"

    # members are singletons compared by identity: hash them by identity too (C-level; Enum's own __hash__ is a
    # Python call, and ops are hashed for every node of every graph's schedule-cache key and in every `op in SET`)
    __hash__ = object.__hash__


UNARY = {Op.NEG, Op.EXP2, Op.LOG2, Op.SIN, Op.SQRT, Op.RECIP, Op.CAST, Op.BITCAST}
BINARY = {Op.ADD, Op.MUL, Op.MAX, Op.CMPLT, Op.CMPNE, Op.IDIV, Op.MOD, Op.AND, Op.OR, Op.XOR, Op.SHL, Op.SHR}
TERNARY = {Op.WHERE}
ELEMENTWISE = UNARY | BINARY | TERNARY
REDUCE = {Op.SUM, Op.RMAX}
MOVEMENT = {Op.RESHAPE, Op.PERMUTE, Op.EXPAND, Op.PAD, Op.SHRINK, Op.FLIP}
COMPARISON = {Op.CMPLT, Op.CMPNE}
# ops whose result dtype is bool regardless of the inputs
BOOL_RESULT = COMPARISON


class Gather(NamedTuple):
    """How a gathered LOAD (a LOAD with one source, the index value) finds its element: the ShapeTracker gives the
    address of row 0 (it views the table with the gathered axis cut to one row and broadcast over the kernel's loop
    shape, so kernel optimizations reshape it with every other access), and the element read is that address plus
    index * row_stride. An index outside [0, rows) reads 0 (from row 0's address, so never out of bounds)."""
    row_stride: int   # elements between consecutive rows of the table (negative for a flipped table)
    rows: int         # the table's length along the gathered axis


def gathered_load(node: "AstNode") -> Optional[Gather]:
    """The Gather of a gathered LOAD, None for any other node."""
    return node.arg[2] if node.op is Op.LOAD and len(node.arg) > 2 else None


def reduce_identity(op: Op, dtype: DType):
    """What a reduce over no elements gives (and where an accumulator starts), as a Python value of `dtype`'s kind:
    0 for SUM; the smallest value of the dtype for RMAX (False for bool, 0 for unsigned ints, -inf for floats)."""
    if op == Op.SUM or dtype.kind == "b" or dtype.is_unsigned:
        return False if dtype.kind == "b" else 0 if dtype.is_int else 0.0
    return -(1 << (dtype.bits - 1)) if dtype.is_int else -math.inf


def _exact_key(arg):
    """`arg` as a dict key that tells -0.0 from 0.0 (equal as floats, different results) and lets a NaN match."""
    if isinstance(arg, float):
        return (float, repr(arg))
    if isinstance(arg, tuple):
        return tuple(_exact_key(a) for a in arg)
    return arg


class AstNode:
    """A node of a kernel AST. Interned: two structurally equal ASTs are the same object, so a compiled
    kernel can be cached by identity and the codegen deduplicates repeated subtrees for free."""
    __slots__ = ("op", "src", "arg", "dtype", "__weakref__")
    _interned: "weakref.WeakValueDictionary" = None  # filled below

    def __new__(cls, op: Op, src: tuple = (), arg=None, dtype=None):
        key = (op, tuple(id(s) for s in src), _exact_key(arg), dtype)
        node = cls._interned.get(key)
        if node is not None:
            return node
        node = super().__new__(cls)
        node.op, node.src, node.arg, node.dtype = op, tuple(src), arg, dtype
        cls._interned[key] = node
        return node

    def __reduce__(self):
        return (AstNode, (self.op, self.src, self.arg, self.dtype))

    def toposort(self) -> list["AstNode"]:
        """Every node of the AST once (a DAG: shared subtrees are not repeated), each after its sources.
        Iterative, so deep expressions do not hit Python's recursion limit."""
        seen, order = set(), []
        stack = [(self, False)]
        while stack:
            n, expanded = stack.pop()
            if expanded:
                order.append(n)
                continue
            if id(n) in seen:
                continue
            seen.add(id(n))
            stack.append((n, True))
            stack.extend((s, False) for s in reversed(n.src) if id(s) not in seen)
        return order

    def __repr__(self) -> str:
        return self.pretty()

    def pretty(self, indent: int = 0) -> str:
        """The AST as indented text, one node a line. A node with more than one user is printed once, labelled
        `%n`, and referred to by that label afterwards: printing shared subtrees again would make the text grow
        exponentially with the depth of the expression (tanh reads its input twice)."""
        users: dict[int, int] = {}
        for n in self.toposort():
            for s in n.src:
                users[id(s)] = users.get(id(s), 0) + 1
        labels: dict[int, int] = {}
        lines = []
        stack = [(self, indent)]
        while stack:
            n, depth = stack.pop()
            if id(n) in labels:
                lines.append(" " * depth + f"-> %{labels[id(n)]}")
                continue
            arg = n.arg
            if n.op in (Op.LOAD, Op.STORE):
                arg = (arg[0], arg[1].views) + tuple(arg[2:])
            head = f"{n.op.name} {n.dtype!r}" + (f" {arg}" if arg is not None else "")
            if users.get(id(n), 0) > 1:
                labels[id(n)] = len(labels)
                head = f"%{labels[id(n)]} = " + head
            lines.append(" " * depth + head)
            stack.extend((s, depth + 2) for s in reversed(n.src))
        return "\n".join(lines)


AstNode._interned = weakref.WeakValueDictionary()
