"""Autograd as a graph-to-graph transformation: from output nodes and the gradient flowing into them, build
(lazy) nodes for the gradient of each input node. Nothing is computed here; the gradients are ordinary graph
nodes, so a backward pass and the optimizer update that consumes it are scheduled and fused like any code.

There is one rule per primitive op (`RULES`). A rule receives a node and the gradient of the loss with
respect to that node (same shape and dtype) and returns one gradient per source, or None where no gradient
flows (comparisons, integer and bitwise ops, bitcast, the condition of a where, the target of an assign).
Only float nodes carry gradients.

Ties, chosen so that the composed Tensor ops match PyTorch:
- MAX(a, b) splits the gradient evenly between a and b where a == b, and gives it to both where one is NaN (like
  `torch.maximum`); `minimum`, built as -max(-a, -b), inherits it. (`relu` and `clip` are built from WHERE in
  tensor.py, so that relu has gradient 0 at 0 and clip passes the gradient at its bounds, like PyTorch.)
- RMAX (the max reduce) splits the gradient evenly between all positions equal to the maximum, like
  `torch.amax` (and `torch.max()` without a dim); `amin` (-max(-x)) inherits it. `Tensor.max(dim)`, which
  returns indices, picks the value at its index instead, so the gradient goes there alone (like torch).

Higher-order gradients: the gradient nodes are ordinary nodes, so they can be differentiated again once they
carry autograd edges; `Tensor.backward/gradient(..., create_graph=True)` records them (tensor_autograd).
Custom rules: a node in `CUSTOM` (tinyjit.autograd_function.Function) has its gradient sources and rule given
by user code. `Node.edges` holds the edges Tensor ops record (which sources required grad).

This module knows only nodes; the Tensor-level API (backward, hooks, no_grad) is tinyjit/tensor_autograd.py and
the torch-style namespace `tinyjit.autograd` (Function, grad) is tinyjit/autograd.py.
"""
from __future__ import annotations

import functools
import math
import threading
import weakref
from typing import Callable, Hashable, NamedTuple, Optional, Sequence

import numpy as np

from tinyjit.device import Buffer
from tinyjit.dtype import dtypes, fits
from tinyjit.helpers import argsort
from tinyjit.index_check import share_checks
from tinyjit.lazy import Node, toposort
from tinyjit.ops import Op

# edges(node) -> one bool per source saying whether gradient flows into it, or None: do not differentiate
# through this node (it is a constant for autograd)
Edges = Callable[[Node], Optional[tuple]]


def _const(value: float, like: Node) -> Node:
    return Node.shared_const(value, like.dtype, like.shape, like.device)


def _mul(a: Node, b: Node) -> Node:
    return a.alu(Op.MUL, b)


# a gradient that is a sum of at most this many padded pieces is summed piece by piece (see _sum_to)
MAX_PIECES_SUMMED_APART = 8


def _sum_to(g: Node, shape: tuple[int, ...]) -> Node:
    """Sum g over the axes where `shape` has size 1 and g does not (the inverse of an expand).
    A g that adds up padded pieces along other axes (the gradient of a split: a fused q/k/v or gate projection,
    whose bias gradient this is) is summed piece by piece and padded after: small plain reduces instead of one
    reduce reading every piece through masks at every element."""
    return _sum_over(g, tuple(i for i, (s, t) in enumerate(zip(shape, g.shape)) if s != t))


def _sum_over(g: Node, axes: tuple[int, ...]) -> Node:
    pieces = _padded_pieces(g, axes)
    if pieces:
        summed = [_sum_over(piece.src[0], axes).movement(Op.PAD, piece.arg) for piece in pieces]
        total = functools.reduce(lambda a, b: a.alu(Op.ADD, b), summed)
        # in a buffer of its own (a small concatenation): a bias used at every step of a recurrence adds up one such
        # gradient per step, and its readers would otherwise inline all their pieces through masks (an LSTM's
        # gradient norm read 80 padded pieces: a kernel of 0.6 CPU seconds to compile)
        return Node(Op.CONTIGUOUS, (total,), None, total.dtype, total.shape, total.device)
    if g.dtype.itemsize < 4:   # accumulate half precision in float32, like Tensor.sum
        return g.alu(Op.CAST, arg=dtypes.float32).reduce(Op.SUM, axes).alu(Op.CAST, arg=g.dtype)
    return g.reduce(Op.SUM, axes)


def _padded_pieces(g: Node, axes: tuple[int, ...]) -> list[Node]:
    """The PAD nodes that g adds up (through lazy ADDs), when all its terms are such pads padding none of `axes`,
    there are at most MAX_PIECES_SUMMED_APART of them, and axes is not empty; else []."""
    if not axes or g.op is not Op.ADD or g.buffer is not None:
        return []
    pieces, stack = [], [g]
    while stack:
        node = stack.pop()
        if node.op is Op.ADD and node.buffer is None:
            stack.extend(node.src)
        elif node.op is Op.PAD and node.buffer is None and all(node.arg[a] == (0, 0) for a in axes) \
                and len(pieces) < MAX_PIECES_SUMMED_APART:
            pieces.append(node)
        else:
            return []
    return pieces


class _RuleLog(threading.local):
    """What the rules did besides building nodes, while tinyjit.gradient_cache records a gradient graph (per
    thread; `entries` None: not recording): `entries`, (gather node, its table's gradient) pairs whose index checks
    were shared (share_checks); `constant_buffers`, ids of the arange buffers the rules uploaded."""
    entries = None
    constant_buffers: set = set()


rule_log = _RuleLog()


# ---- the rules: (node, grad) -> one gradient (or None) per source ----
def _max(n: Node, g: Node):
    """PyTorch's rule for maximum: g to the larger source, g/2 to each at a tie, and g to both where they are
    unordered (a NaN: neither is smaller, the result is NaN whichever it came from)."""
    a, b = n.src
    zero = _const(0.0, g)
    share = a.alu(Op.CMPNE, b).alu(Op.WHERE, g, _mul(g, _const(0.5, g)))
    return (a.alu(Op.CMPLT, b).alu(Op.WHERE, zero, share), b.alu(Op.CMPLT, a).alu(Op.WHERE, zero, share))


def _rmax(n: Node, g: Node):
    a = n.src[0]
    is_max = n.movement(Op.EXPAND, a.shape).alu(Op.CMPNE, a).alu(Op.WHERE, _const(0.0, a), _const(1.0, a))
    if a.dtype.itemsize < 4:   # count the ties and share the gradient in float32: 70000 ties are inf in half
        count = is_max.alu(Op.CAST, arg=dtypes.float32).reduce(Op.SUM, n.arg)
        share = g.alu(Op.CAST, arg=dtypes.float32).alu(Op.MUL, count.alu(Op.RECIP)).alu(Op.CAST, arg=a.dtype)
    else:
        share = _mul(g, is_max.reduce(Op.SUM, n.arg).alu(Op.RECIP))
    return (_mul(is_max, share.movement(Op.EXPAND, a.shape)),)


def _cast(n: Node, g: Node):
    src = n.src[0]
    return (g.alu(Op.CAST, arg=src.dtype) if src.dtype.is_float else None,)


def _copy(n: Node, g: Node):
    src = n.src[0]
    if src.device == g.device:
        return (g,)
    return (Node(Op.COPY, (g,), None, g.dtype, g.shape, src.device),)


def _pad(n: Node, g: Node):
    return (g.movement(Op.SHRINK, tuple((b, b + s) for (b, _), s in zip(n.arg, n.src[0].shape))),)


def _shrink(n: Node, g: Node):
    return (g.movement(Op.PAD, tuple((lo, s - hi) for (lo, hi), s in zip(n.arg, n.src[0].shape))),)


def _div(n: Node, g: Node):
    """a / b: g / b and -g * (a / b) / b (float division; integer division has no gradient)."""
    if not n.dtype.is_float:
        return (None, None)
    a, b = n.src
    grad_a = g.alu(Op.IDIV, b)
    return (grad_a, _mul(grad_a, n).alu(Op.NEG))


def _mod(n: Node, g: Node):
    """fmod(a, b) = a - trunc(a / b) * b: g and -g * trunc(a / b), with trunc(a / b) = (a - fmod(a, b)) / b (float
    remainder; the integer one has no gradient)."""
    if not n.dtype.is_float:
        return (None, None)
    a, b = n.src
    quotient = a.alu(Op.ADD, n.alu(Op.NEG)).alu(Op.IDIV, b)
    return (g, _mul(g, quotient).alu(Op.NEG))


def _gather(n: Node, g: Node):
    """GATHER's table gets the scatter-add of g: grad[.., v, ..] = sum of g[.., i, ..] over the i where
    index[.., i, ..] == v. No atomics and no order-dependent writes: it is built from reduces, whichever of two
    forms costs fewer operations (V rows in the table, N positions along the gathered axis):
    - one-hot: the index (.., N, 1, ..) compared with arange(V) (.., 1, V, ..) selects g (a select, not a multiply
      by 0/1: an inf in g stays in its row), summed over N; inside one reduce, so nothing (N, V)-sized is stored:
      N * table size additions;
    - pairwise (N below V, e.g. 400 lookups into 10000 embedding rows): each position's total over the positions
      with the same index, S[i] = sum over j of g[j] where index[j] == index[i] (N * index size), and for each row
      the first position that looks it up, first[v] (N * V compares on the index before its broadcast); then
      grad[v] = S[first[v]], a gather, which reads 0 where no position looks row v up (first[v] = N).
    The index gets no gradient. Half precision accumulates in float32, as sums do."""
    table, index = n.src
    axis, rows, positions = n.arg, table.shape[n.arg], index.shape[n.arg]
    if positions == 0:
        return (_const(0.0, table), None)
    # the index before its broadcast (embedding's row numbers are broadcast over the width): compares run on it
    narrow = index.src[0] if index.op is Op.EXPAND and index.src[0].shape[axis] == positions else index
    one_hot_cost = table.size * positions
    pairwise_cost = narrow.size * rows + index.size * positions + table.size
    term = g if g.dtype.itemsize >= 4 else g.alu(Op.CAST, arg=dtypes.float32)
    if pairwise_cost < one_hot_cost:
        grad = _scatter_add_pairwise(table, narrow, index, term, axis)
    else:
        grad = _scatter_add_one_hot(table, index, term, axis)
    share_checks(n, grad)   # realizing the gradient alone checks the index as the forward does
    if rule_log.entries is not None:   # (tinyjit.gradient_cache replays the check's sharing on a reuse)
        rule_log.entries.append((n, grad))
    return (grad if grad.dtype == table.dtype else grad.alu(Op.CAST, arg=table.dtype), None)


def _arange_along(count: int, dtype, axis: int, ndim: int, device: str) -> Node:
    """0, 1, .., count - 1 of `dtype` along `axis` of an `ndim`-d node (size 1 elsewhere): an uploaded buffer, as
    Tensor.arange makes it."""
    values = Node.from_buffer(Buffer(device, count, dtype).copyin(np.arange(count, dtype=dtype.np)), (count,))
    if rule_log.entries is not None:   # (a constant: tinyjit.gradient_cache may reuse it)
        rule_log.constant_buffers.add(id(values))
    return values.movement(Op.RESHAPE, (1,) * axis + (count,) + (1,) * (ndim - axis - 1))


def _wide_index(index: Node, rows: int) -> Node:
    """`index` in a type that holds every row number, so comparing it with arange(rows) cannot wrap (uint8 into 300
    rows)."""
    return index if fits(rows - 1, index.dtype) else index.alu(Op.CAST, arg=dtypes.int64)


def _scatter_add_one_hot(table: Node, index: Node, term: Node, axis: int) -> Node:
    rows = table.shape[axis]
    index = _wide_index(index, rows)
    wide = index.shape[:axis + 1] + (rows,) + index.shape[axis + 1:]
    split = index.shape[:axis + 1] + (1,) + index.shape[axis + 1:]
    row_of = _arange_along(rows, index.dtype, axis + 1, len(wide), term.device).movement(Op.EXPAND, wide)
    other_row = index.movement(Op.RESHAPE, split).movement(Op.EXPAND, wide).alu(Op.CMPNE, row_of)
    term = term.movement(Op.RESHAPE, split).movement(Op.EXPAND, wide)
    summed = other_row.alu(Op.WHERE, _const(0.0, term), term).reduce(Op.SUM, (axis,))
    return summed.movement(Op.RESHAPE, table.shape)


def _scatter_add_pairwise(table: Node, narrow: Node, index: Node, term: Node, axis: int) -> Node:
    rows, positions = table.shape[axis], index.shape[axis]
    assert narrow.shape[axis] == positions, f"GATHER gradient: index {narrow.shape} along axis {axis} of {index.shape}"
    # S[.., i, ..] = sum over j of term[.., j, ..] where narrow[.., j, ..] == narrow[.., i, ..]: j on axis, i next
    split = narrow.shape[:axis + 1] + (1,) + narrow.shape[axis + 1:]
    pairs = narrow.shape[:axis] + (positions, positions) + narrow.shape[axis + 1:]
    mine = narrow.movement(Op.RESHAPE, narrow.shape[:axis] + (1, positions) + narrow.shape[axis + 1:])
    same = narrow.movement(Op.RESHAPE, split).movement(Op.EXPAND, pairs).alu(Op.CMPNE,
                                                                             mine.movement(Op.EXPAND, pairs))
    wide = index.shape[:axis] + (positions, positions) + index.shape[axis + 1:]
    same = same.movement(Op.EXPAND, wide) if same.shape != wide else same
    spread = term.movement(Op.RESHAPE, index.shape[:axis + 1] + (1,) + index.shape[axis + 1:]).movement(Op.EXPAND,
                                                                                                      wide)
    totals = same.alu(Op.WHERE, _const(0.0, spread), spread).reduce(Op.SUM, (axis,))
    totals = totals.movement(Op.RESHAPE, index.shape)
    # first[.., v, ..] = positions - max over j of (positions - j where narrow[.., j, ..] == v, else 0): the first
    # position looking row v up, or `positions` (a row nobody looks up: the gather below reads 0 there)
    wide_narrow = _wide_index(narrow, rows)
    grid = narrow.shape[:axis + 1] + (rows,) + narrow.shape[axis + 1:]
    row_of = _arange_along(rows, wide_narrow.dtype, axis + 1, len(grid), term.device).movement(Op.EXPAND, grid)
    looks_up = wide_narrow.movement(Op.RESHAPE, split).movement(Op.EXPAND, grid).alu(Op.CMPNE, row_of)
    countdown = _arange_along(positions, dtypes.int32, axis, len(grid), term.device)
    countdown = Node.const(positions, dtypes.int32, countdown.shape, term.device).alu(Op.ADD, countdown.alu(Op.NEG))
    to_end = looks_up.alu(Op.WHERE, Node.const(0, dtypes.int32, grid, term.device), countdown.movement(Op.EXPAND, grid))
    to_end = to_end.reduce(Op.RMAX, (axis,))
    to_end = to_end.movement(Op.RESHAPE, narrow.shape[:axis] + (rows,) + narrow.shape[axis + 1:])
    first = Node.const(positions, dtypes.int32, to_end.shape, term.device).alu(Op.ADD, to_end.alu(Op.NEG))
    first = first.movement(Op.EXPAND, table.shape) if first.shape != table.shape else first
    return totals.gather(first, axis)


def _none(n: Node, g: Node):
    return (None,) * len(n.src)


RULES: dict[Op, Callable[[Node, Node], tuple]] = {
    Op.ADD: lambda n, g: (g, g),
    Op.MUL: lambda n, g: (_mul(g, n.src[1]), _mul(n.src[0], g)),
    Op.NEG: lambda n, g: (g.alu(Op.NEG),),
    Op.EXP2: lambda n, g: (_mul(g, _mul(n, _const(math.log(2), n))),),                          # 2^x ln 2
    Op.LOG2: lambda n, g: (_mul(g, _mul(n.src[0], _const(math.log(2), n)).alu(Op.RECIP)),),      # 1/(x ln 2)
    Op.SIN: lambda n, g: (_mul(g, n.src[0].alu(Op.SIN, arg=((n.arg or 0) + 1) % 4 or None)),),   # sin' = sin(.+pi/2)
    Op.IDIV: _div,
    Op.MOD: _mod,
    Op.SQRT: lambda n, g: (_mul(g, _mul(n, _const(2.0, n)).alu(Op.RECIP)),),                     # 1/(2 sqrt x)
    Op.RECIP: lambda n, g: (_mul(g, _mul(n, n)).alu(Op.NEG),),                                   # -1/x^2
    Op.MAX: _max,
    Op.WHERE: lambda n, g: (None, n.src[0].alu(Op.WHERE, g, _const(0.0, g)),
                            n.src[0].alu(Op.WHERE, _const(0.0, g), g)),
    Op.CAST: _cast,
    Op.SUM: lambda n, g: (g.movement(Op.EXPAND, n.src[0].shape),),
    Op.RMAX: _rmax,
    Op.RESHAPE: lambda n, g: (g.movement(Op.RESHAPE, n.src[0].shape),),
    Op.PERMUTE: lambda n, g: (g.movement(Op.PERMUTE, tuple(argsort(n.arg))),),
    Op.EXPAND: lambda n, g: (_sum_to(g, n.src[0].shape),),
    Op.PAD: _pad,
    Op.SHRINK: _shrink,
    Op.FLIP: lambda n, g: (g.movement(Op.FLIP, n.arg),),
    Op.CONTIGUOUS: lambda n, g: (g,),
    Op.COPY: _copy,
    Op.ASSIGN: lambda n, g: (None, g),    # the old contents of the target are overwritten
    Op.GATHER: _gather,
}
for _op in (Op.BITCAST, Op.CMPLT, Op.CMPNE, Op.AND, Op.OR, Op.XOR, Op.SHL, Op.SHR):
    RULES[_op] = _none


class CustomGrad(NamedTuple):
    """A node whose gradient is given by user code (tinyjit.autograd_function.Function): gradient flows from it
    to `src` (the Function's tensor inputs, not the node's own source, which computes the forward value), by
    `rule(node, grad) -> one gradient node (or None) per src`. `formula`: None, or a key that, with the graph's
    structure, determines the gradient graph `rule` builds (a derivative written in terms of the result alone:
    Tensor._with_result_gradient), so that the gradient cache may template it like the built-in rules."""
    src: tuple
    rule: Callable[[Node, Node], tuple]
    formula: Hashable = None


# node -> its CustomGrad; consulted before RULES. Every custom node is a RESHAPE (a same-shape view of the forward's
# value, Tensor._with_gradient_rule), so only RESHAPE nodes are looked up (a weak dictionary's lookup is a Python
# call, and gradient() asks for every node of the graph)
CUSTOM_OP = Op.RESHAPE
CUSTOM: "weakref.WeakKeyDictionary[Node, CustomGrad]" = weakref.WeakKeyDictionary()


# node -> a function giving the node whose value gradient formulas read in its place (None: keep it). `t.data = v`
# files t's old node here: PyTorch saves an op's inputs as the tensors themselves, so a backward pass after
# `y = p * p; p.data = v` reads v (the new contents of p), while y keeps its value.
REPLACED: "weakref.WeakKeyDictionary[Node, Callable[[], Optional[Node]]]" = weakref.WeakKeyDictionary()
# ops whose rule reads the result instead of the sources (PyTorch saves the result of exp, sqrt, reciprocal)
_RESULT_RULES = (Op.EXP2, Op.SQRT, Op.RECIP)


def _with_replaced_sources(node: Node, mask: tuple) -> Node:
    """`node` with each source gradient flows into that has a replacement (REPLACED) swapped for it, for its rule
    to read (a node of its own: the graph keeps `node` as it is), or `node` itself when there is none."""
    sources, changed = list(node.src), False
    for i, (src, flows) in enumerate(zip(node.src, mask)):
        current = REPLACED.get(src) if flows else None
        new = current() if current is not None else None
        if new is not None and new is not src and (new.shape, new.dtype, new.device) == \
                (src.shape, src.dtype, src.device):
            sources[i], changed = new, True
    return Node(node.op, tuple(sources), node.arg, node.dtype, node.shape, node.device) if changed else node


def grad_sources(node: Node) -> tuple:
    """The nodes gradient flows into from `node`: its sources, or a custom function's inputs."""
    custom = CUSTOM.get(node) if node.op is CUSTOM_OP else None
    return custom.src if custom is not None else node.src


def all_edges(node: Node) -> Optional[tuple]:
    """The default: differentiate through every node (every source of every op)."""
    src = grad_sources(node)
    return (True,) * len(src) if src else None


def reachable(outputs: Sequence[Node], edges: Edges = all_edges) -> list[Node]:
    """Nodes reachable from `outputs` through the edges gradient may flow along, each after its sources."""
    def children(node: Node):
        mask = edges(node)
        if not mask:
            return ()
        sources = grad_sources(node)
        return sources if all(mask) else [s for s, m in zip(sources, mask) if m]   # (the common case: no copy)
    return toposort(list(outputs), children=children)


def gradient(outputs: Sequence[Node], inputs: Sequence[Node], grad_outputs: Optional[Sequence[Node]] = None,
             edges: Edges = all_edges, hook: Optional[Callable[[Node, Node], Node]] = None,
             order: Optional[list[Node]] = None) -> list[Optional[Node]]:
    """Gradient nodes of sum(output * grad_output) with respect to each input (None where no path leads
    from an output to the input). `grad_outputs` default to ones (every output then must be float);
    `edges` decides which nodes and sources gradient flows through (see `Edges`); `hook(node, grad)`, when
    given, may replace the complete gradient of each node before it flows on (Tensor.register_hook).
    `order`: `reachable(outputs, edges)` when the caller already walked it (the walk is then not repeated)."""
    outputs = list(outputs)
    if grad_outputs is None:
        grad_outputs = [_const(1.0, o) for o in outputs]
    grads: dict[int, Node] = {}
    for o, g in zip(outputs, grad_outputs):
        if not o.dtype.is_float:
            raise TypeError(f"gradient: output {o} is not a float; only float values have gradients")
        if g.shape != o.shape or g.device != o.device:
            raise ValueError(f"gradient: grad_output of shape {g.shape} on {g.device} does not match output of "
                             f"shape {o.shape} on {o.device}")
        g = g if g.dtype == o.dtype else g.alu(Op.CAST, arg=o.dtype)
        grads[id(o)] = grads[id(o)].alu(Op.ADD, g) if id(o) in grads else g
    if order is None:
        order = reachable(outputs, edges)
    # only nodes with a path to an input need a gradient
    wanted = {id(i) for i in inputs}
    needed: set[int] = set()
    masks: dict[int, tuple] = {}
    # (plain loops, no generator per node: a training step's backward visits thousands of nodes)
    for node in order:
        node_id = id(node)
        mask = edges(node) or ()
        masks[node_id] = mask
        if node_id in wanted:
            needed.add(node_id)
            continue
        if mask:
            for s, m in zip(grad_sources(node), mask):
                if m and id(s) in needed:
                    needed.add(node_id)
                    break
    for node in reversed(order):
        node_id = id(node)
        g = grads.get(node_id)
        if g is None or node_id not in needed:
            continue
        if hook is not None:
            g = grads[node_id] = hook(node, g)
        mask = masks[node_id]
        if not any(mask):
            continue
        custom = CUSTOM.get(node) if node.op is CUSTOM_OP else None
        rule = custom.rule if custom is not None else RULES.get(node.op)
        if rule is None:
            raise NotImplementedError(f"gradient: no rule for {node.op.name}")
        read = node   # the node the rule reads: with replaced sources after `t.data = v` (REPLACED)
        if REPLACED and custom is None and node.op not in _RESULT_RULES:
            read = _with_replaced_sources(node, mask)
        for src, m, sg in zip(grad_sources(node), mask, rule(read, g)):
            if not m or sg is None:
                continue
            src_id = id(src)
            if src_id not in needed or src.dtype.kind != "f":
                continue
            assert sg.shape == src.shape and sg.dtype == src.dtype, f"{node.op.name} rule: {sg} for {src}"
            previous = grads.get(src_id)
            grads[src_id] = sg if previous is None else previous.alu(Op.ADD, sg)
    return [grads.get(id(i)) for i in inputs]
