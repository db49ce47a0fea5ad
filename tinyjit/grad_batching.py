"""Batching the gradient of a weight shared across the steps of a recurrence.

A weight used at every step of an unrolled recurrence (an RNN cell's matrices, applied T times) gets one gradient
contribution per step, each a small matrix product: dW = sum_t x_t^T @ g_t, with x_t and g_t of only `batch` rows.
Summed as they come, that is T product kernels with a reduce of `batch` (too short to run fast), T weight-sized
intermediates and an add of all of them. The same sum is one product over the steps' rows stacked:

    sum_t SUM_r(f(x_t) * f(g_t))  ==  SUM_r(f(cat_t x_t) * f(cat_t g_t))

where r is the reduced (row) axis and f the broadcast views the product reads through. `combine` finds the
contributions of that form among a node's gradient terms (autograd_graph.gradient collects them per node) and
rewrites each group into the single product over concatenated operands: one cheap copy per operand and one
reduce of T * batch, instead of T small reduces. The bias gradients (sum_t SUM_r(g_t)) join the same way, and the
cat of the g_t is built once for both.

Only short reduces are batched (MAX_BATCHED_ROWS): a long one (an embedding's 400 rows over a 10,000-word vocabulary)
already runs fast, and copying its operands would cost more than the add it saves.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from tinyjit.lazy import Node
from tinyjit.ops import Op

# a product whose reduce is longer than this is summed as it is
MAX_BATCHED_ROWS = 256
_VIEW_OPS = (Op.RESHAPE, Op.PERMUTE)


class _Factor(NamedTuple):
    """One factor of the reduced product: `leaf` read through RESHAPE to `reshaped` then EXPAND to `expanded`
    (either may be the leaf's own shape); `axis` is the leaf's axis that becomes the reduced axis."""
    leaf: Node
    reshaped: tuple[int, ...]
    expanded: tuple[int, ...]
    axis: int


class _Product(NamedTuple):
    """A gradient term moves(SUM_r(factor0 * factor1 ...)): `moves` the view ops above the reduce, outermost last."""
    moves: tuple
    reduce: Node
    factors: tuple[_Factor, ...]


def _without(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return shape[:axis] + (-1,) + shape[axis + 1:]


def _factor(node: Node, r: int) -> Optional[_Factor]:
    """`node` as leaf -> RESHAPE -> EXPAND with the reduced axis r not broadcast, or None."""
    expanded = node.shape
    if node.op is Op.EXPAND and node.buffer is None:
        node = node.src[0]
    reshaped = node.shape
    if node.op is Op.RESHAPE and node.buffer is None:
        node = node.src[0]
    if reshaped[r] != expanded[r] or reshaped[r] < 2:
        return None
    if node.shape == reshaped:
        return _Factor(node, reshaped, expanded, r)
    # the reshape may only add or drop size-1 axes; then the reduced axis is the leaf's k-th axis of size > 1
    if [s for s in node.shape if s != 1] != [s for s in reshaped if s != 1]:
        return None
    k = sum(1 for s in reshaped[:r] if s != 1)
    axis = [i for i, s in enumerate(node.shape) if s != 1][k]
    return _Factor(node, reshaped, expanded, axis)


def _as_product(term: Node) -> Optional[_Product]:
    """`term` as views of a one-axis SUM of a product of (at most two) broadcast leaves, with a short reduce."""
    moves = []
    node = term
    while node.op in _VIEW_OPS and node.buffer is None:
        moves.append((node.op, node.arg, node.shape))
        node = node.src[0]
    if node.op is not Op.SUM or node.buffer is not None or len(node.arg) != 1:
        return None
    (r,) = node.arg
    body = node.src[0]
    if body.buffer is None and body.op is Op.MUL:
        factors = tuple(_factor(s, r) for s in body.src)
    else:
        factors = (_factor(body, r),)
    if any(f is None for f in factors) or body.shape[r] > MAX_BATCHED_ROWS:
        return None
    return _Product(tuple(reversed(moves)), node, factors)


def _signature(p: _Product) -> tuple:
    """Products with equal signatures differ only in their leaves and in the length of the reduced axis."""
    r = p.reduce.arg[0]
    return (p.moves, p.reduce.arg, p.reduce.dtype, p.reduce.src[0].op if len(p.factors) > 1 else None,
            tuple((f.leaf.dtype, _without(f.leaf.shape, f.axis), f.axis, _without(f.reshaped, r),
                   _without(f.expanded, r)) for f in p.factors))


def _cat(leaves: tuple[Node, ...], axis: int, cache: dict) -> Node:
    """The leaves joined along `axis`, as its own buffer (read by a reduce, it must not be recomputed per output)."""
    key = (tuple(id(n) for n in leaves), axis)
    if key not in cache:
        total = sum(n.shape[axis] for n in leaves)
        joined, start = None, 0
        for n in leaves:
            pads = tuple((start, total - start - n.shape[axis]) if i == axis else (0, 0) for i in range(len(n.shape)))
            padded = n.movement(Op.PAD, pads)
            joined = padded if joined is None else joined.alu(Op.ADD, padded)
            start += n.shape[axis]
        cache[key] = (Node(Op.CONTIGUOUS, (joined,), None, joined.dtype, joined.shape, joined.device), leaves)
    return cache[key][0]


def _merged(group: list[_Product], cache: dict) -> Node:
    """One product over the concatenated leaves of the group's products (same signature)."""
    first = group[0]
    r = first.reduce.arg[0]
    rows = sum(p.factors[0].expanded[r] for p in group)
    factors = []
    for i, f in enumerate(first.factors):
        leaf = _cat(tuple(p.factors[i].leaf for p in group), f.axis, cache)
        reshaped = f.reshaped[:r] + (rows,) + f.reshaped[r + 1:]
        expanded = f.expanded[:r] + (rows,) + f.expanded[r + 1:]
        factors.append(leaf.movement(Op.RESHAPE, reshaped).movement(Op.EXPAND, expanded))
    body = factors[0].alu(first.reduce.src[0].op, *factors[1:]) if len(factors) > 1 else factors[0]
    out = body.reduce(Op.SUM, (r,))
    for op, arg, _ in first.moves:
        out = out.movement(op, arg)
    return out


def combine(terms: list[Node], cache: dict) -> Node:
    """The sum of a node's gradient terms (in order), with each group of two or more short products of the same
    form rewritten as one product over concatenated operands. `cache` holds the concatenations built so far in
    this backward pass (shared between the groups of different nodes: a weight's and its bias's gradients both
    read the cat of the g_t)."""
    if len(terms) == 1:
        return terms[0]
    groups: dict[tuple, list[tuple[int, _Product]]] = {}
    for position, term in enumerate(terms):
        product = _as_product(term)
        if product is not None:
            groups.setdefault(_signature(product), []).append((position, product))
    replaced: dict[int, Optional[Node]] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        replaced[members[0][0]] = _merged([p for _, p in members], cache)
        for position, _ in members[1:]:
            replaced[position] = None
    total = None
    for position, term in enumerate(terms):
        term = replaced.get(position, term)
        if term is not None:
            total = term if total is None else total.alu(Op.ADD, term)
    return total
