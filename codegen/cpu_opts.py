"""Hand-coded CPU heuristics: register blocking and operand packing for contractions (matmul, conv).

A contraction is a reduce kernel whose output is contiguous along one global axis (the "vector" axis: the
columns of a matmul, the output width of a conv) and which has a load, "B", that depends on that axis and is
broadcast (stride 0) along another global axis (the "row" axis: the rows of A, the output channels). Upcasting
both builds a register block, e.g. 8 rows x 32 columns of accumulators: each vector loaded from B is reused by
8 rows and each element of the other operand by 32 columns. LLVM's SLP vectorizer turns the unrolled block into
vector FMAs (the renderer keeps the loop vectorizer off such reduce loops).

Memory decides the rest. B is PACKed: copied, by a small kernel run just before, into a scratch buffer laid out
in the order the contraction reads it (for a matmul: 32-column panels, each K x 32 contiguous), so the inner
loop streams through consecutive cache lines instead of jumping a row of B (and a TLB page) per step; a masked
(padded) B, like a conv's input windows, loses its bounds checks on the way (im2col). The global axes are then
reordered (SWAP) so the axes B depends on are outermost: one panel of B stays in L2 while every row block of
the other operand passes by it.

SWAP and PACK are CPU-only optimizations, handled here (`apply_cpu_opt`); UPCAST/UNROLL go to the Kernel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tinyjit.dtype import DType
from tinyjit.helpers import prod
from tinyjit.ops import AstNode, Op
from tinyjit.symbolic import Var
from tinyjit.view import ShapeTracker, _linear_coefficient

from codegen.kernel import Kernel, KernelOptError, Opt
from codegen.llvmir import host_vector_bits

# vector registers of accumulators in a register block (of 32 on AVX-512 / 16 on AVX2: the rest hold B's vectors
# and the broadcast elements)
ACCUMULATOR_REGISTERS = 16
ROW_CHOICES = (16, 12, 8, 6, 4, 3, 2)
# below this many multiply-adds a contraction is not worth a packing launch
MIN_PACK_WORK = 1 << 16


@dataclass(frozen=True)
class Pack:
    """Copy the kernel's input `source` (its buffer index) through a view into a scratch buffer of `size`
    elements, with the copy kernel `ast` (STORE to buffer 0 of a LOAD from buffer 1), and pass the scratch buffer
    to the kernel as argument `slot`."""
    ast: AstNode
    source: int
    slot: int
    size: int
    dtype: DType


def packs_of(k: Kernel) -> list[Pack]:
    """The packs `k` needs run before it (none unless a PACK was applied)."""
    return getattr(k, "packs", [])


# ---- the CPU-only optimizations ----
def apply_cpu_opt(k: Kernel, opt: Opt) -> None:
    """Apply one optimization: SWAP (axis, amount = the other global axis) exchanges two global axes (loop
    order); PACK (axis = which load, in AST order; amount 0) reads that load from a packed copy. Everything
    else is the Kernel's own (UPCAST, UNROLL)."""
    if opt.kind == "SWAP":
        a, b = opt.axis, opt.amount
        if a == b or not (0 <= a < k.first_reduce and 0 <= b < k.first_reduce):
            raise KernelOptError(f"SWAP {a} {b}: both must be different global axes (there are {k.first_reduce})")
        order = list(range(k.ndim))
        order[a], order[b] = b, a
        k.reshape_and_permute(None, order)
    elif opt.kind == "PACK":
        _pack(k, opt.axis)
    else:
        k.apply_opt(opt)
        return
    k.applied.append(opt)


def _load_positions(k: Kernel) -> list[int]:
    return [i for i, n in enumerate(k.accesses) if n.op == Op.LOAD]


def _pack(k: Kernel, load: int) -> None:
    loads = _load_positions(k)
    if not 0 <= load < len(loads):
        raise KernelOptError(f"PACK {load}: the kernel has {len(loads)} loads")
    i = loads[load]
    node, st = k.accesses[i], k.sts[i]
    if any(p.slot == node.arg[0] for p in packs_of(k)):
        raise KernelOptError(f"PACK {load}: this load is packed already")
    real = st.real_strides()
    keep = [a for a, s in enumerate(st.shape) if s > 1 and real[a] != 0]
    if not keep:
        raise KernelOptError(f"PACK {load}: the load reads one element")
    kept_shape = tuple(st.shape[a] for a in keep)
    # the copy: the load's view with its broadcast axes cut to one element, in the kernel's axis (= loop) order
    source_view = st.shrink(tuple((0, s) if a in keep else (0, 1) for a, s in enumerate(st.shape))).reshape(kept_shape)
    if source_view.contiguous:
        raise KernelOptError(f"PACK {load}: the load already reads its buffer contiguously in loop order")
    copy = AstNode(Op.STORE, (AstNode(Op.LOAD, (), (1, source_view), node.dtype),),
                   (0, ShapeTracker.from_shape(kept_shape)), node.dtype)
    # the kernel reads the copy contiguously in loop order, broadcast where it was
    packed = ShapeTracker.from_shape(kept_shape).reshape(
        tuple(s if a in keep else 1 for a, s in enumerate(st.shape))).expand(st.shape)
    shared = any(n.op == Op.LOAD and n.arg[0] == node.arg[0] for j, n in enumerate(k.accesses) if j != i)
    slot = 1 + max([n.arg[0] for n in k.accesses if n.op == Op.LOAD]) if shared else node.arg[0]
    new_node = AstNode(Op.LOAD, (), (slot, packed), node.dtype)
    k.ast = _substitute(k.ast, node, new_node)
    k.accesses[i], k.sts[i] = new_node, packed
    k.packs = packs_of(k) + [Pack(copy, node.arg[0], slot, prod(kept_shape), node.dtype)]


def _substitute(ast: AstNode, old: AstNode, new: AstNode) -> AstNode:
    memo: dict[int, AstNode] = {}

    def walk(n: AstNode) -> AstNode:
        if n is old:
            return new
        if id(n) not in memo:
            memo[id(n)] = AstNode(n.op, tuple(walk(s) for s in n.src), n.arg, n.dtype) if n.src else n
        return memo[id(n)]
    return walk(ast)


# ---- the heuristics ----
def index_strides(st: ShapeTracker) -> tuple[Optional[int], ...]:
    """Per axis, the constant step of the address (ignoring validity masks), or None when it is not linear."""
    idxs = [Var(f"i{d}", 0, s - 1) for d, s in enumerate(st.shape)]
    index, _ = st.index_and_valid(idxs)
    return tuple(_linear_coefficient(index, v) if s > 1 else 0 for v, s in zip(idxs, st.shape))


def _divisor(size: int, choices) -> int:
    return next((c for c in choices if size % c == 0 and size >= c), 1)


def contraction_plan(k: Kernel) -> list[Opt]:
    """The register block, packing and loop order for a contraction kernel, as a list of optimizations (empty
    when `k` is not a contraction)."""
    if not k.has_reduce or k.first_reduce == 0 or k.upcasted:
        return []
    globals_ = range(k.first_reduce)
    full = k.full_shape
    store = index_strides(k.sts[0])
    loads = _load_positions(k)
    reals = [k.sts[i].real_strides() for i in loads]
    # the vector axis: the output's contiguous axis if any load depends on it, else the last such global axis
    candidates = sorted(globals_, key=lambda a: (store[a] != 1, -a))
    best = None
    for axis in candidates:
        if full[axis] < 4:
            continue
        for n, real in enumerate(reals):
            if real[axis] == 0:
                continue
            rows = [a for a in globals_ if a != axis and real[a] == 0 and full[a] > 1]
            if rows:
                best = (axis, n, max(rows, key=lambda a: (_divisor(full[a], ROW_CHOICES), full[a])))
                break
        if best:
            break
    if best is None:
        return []
    vector_axis, b, row_axis = best
    node = k.accesses[loads[b]]
    lanes = max(1, host_vector_bits() // (8 * node.dtype.itemsize))
    width = _divisor(full[vector_axis], (2 * lanes, lanes, lanes // 2, lanes // 4))
    if width == 1 and full[vector_axis] <= 2 * lanes:
        width = full[vector_axis]
    if width < 4:
        return []
    rows = _divisor(full[row_axis], tuple(r for r in ROW_CHOICES if r * width <= ACCUMULATOR_REGISTERS * lanes))
    opts = [Opt("UPCAST", vector_axis, width)]
    if rows > 1:
        opts.append(Opt("UPCAST", row_axis, rows))   # the vector axis split did not move the axes before it
    b_strides = index_strides(k.sts[loads[b]])
    contiguous_b = b_strides[vector_axis] == 1
    reuse = full[row_axis] // rows
    if prod(full) >= MIN_PACK_WORK and (reuse >= 2 or not contiguous_b):
        opts.append(Opt("PACK", b, 0))
        # loop order: global axes B depends on first (a B panel stays in cache while row blocks pass by)
        order = sorted(globals_, key=lambda a: reals[b][a] == 0)
        opts += _swaps(list(globals_), order)
    elif not contiguous_b:
        return []   # an unpacked B read across its layout would make the block gather scalars
    return opts


def _swaps(current: list[int], target: list[int]) -> list[Opt]:
    """SWAP opts turning the axis order `current` into `target` (both lists of the same axis ids)."""
    current, out = list(current), []
    for pos, axis in enumerate(target):
        at = current.index(axis)
        if at != pos:
            current[pos], current[at] = current[at], current[pos]
            out.append(Opt("SWAP", pos, at))
    return out


def optimize_cpu(k: Kernel) -> None:
    for opt in contraction_plan(k):
        try:
            apply_cpu_opt(k, opt)
        except KernelOptError:   # e.g. a B already laid out in loop order needs no PACK; the loop order still helps
            pass
