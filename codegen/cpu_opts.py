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

from dataclasses import dataclass, field
from typing import Optional

from tinyjit.helpers import prod
from tinyjit.ops import AstNode, Op
from tinyjit.symbolic import Var
from tinyjit.view import ShapeTracker, View, _linear_coefficient

from codegen.kernel import Kernel, KernelOptError, Opt
from codegen.llvmir import host_vector_bits

# vector registers of accumulators in a register block (of 32 on AVX-512 / 16 on AVX2: the rest hold B's vectors
# and the broadcast elements)
ACCUMULATOR_REGISTERS = 16
# below this many multiply-adds a contraction is not worth a packing launch
MIN_PACK_WORK = 1 << 16
# at most this many ALU ops in an unpacked register block (reduce body ops x block elements): past it LLVM spends
# more time compiling the unrolled block than a small kernel ever runs
MAX_BLOCK_OPS = 2048
# the outer loop is cut for at least this many threads (more than the 2 cores of a small machine costs nothing)
MIN_THREAD_HINT = 2


@dataclass
class Copies:
    """The copy kernels PACK and STAGE put around a kernel, and what the kernel's own buffers are bound to.

    `args[i]` is what buffer i of the kernel reads: an int is the scheduled kernel's own buffer (0 its output,
    then its inputs), ("scratch", j) a scratch buffer of `scratch[j]` = (size, dtype). `before` and `after` are
    elementwise kernels (AST, args) run before and after it; their buffer 0 is the one they write."""
    args: list
    scratch: list = field(default_factory=list)
    before: list = field(default_factory=list)
    after: list = field(default_factory=list)


def copies_of(k: Kernel) -> Copies:
    if not hasattr(k, "copies"):
        k.copies = Copies(list(range(1 + max([n.arg[0] for n in k.accesses if n.op == Op.LOAD], default=0))))
    return k.copies


# ---- the CPU-only optimizations ----
def apply_cpu_opt(k: Kernel, opt: Opt) -> None:
    """Apply one optimization: SWAP (axis, amount = the other global axis) exchanges two global axes (loop
    order); PACK (axis = which operand of pack_candidates(k); amount 0) reads that operand from a packed copy;
    STAGE (0, 0) writes the output in loop order to a scratch buffer that a copy moves into place; DEPAD (axis =
    an operand that is a padded load) reads it from a copy with the padding written out;
    MERGE (axis; amount 0) makes global axes axis and axis+1 one loop (so the outermost loop, which the thread
    pool splits, is long enough). Everything else is the Kernel's own (UPCAST, UNROLL)."""
    if opt.kind == "SWAP":
        a, b = opt.axis, opt.amount
        if a == b or not (0 <= a < k.first_reduce and 0 <= b < k.first_reduce):
            raise KernelOptError(f"SWAP {a} {b}: both must be different global axes (there are {k.first_reduce})")
        order = list(range(k.ndim))
        order[a], order[b] = b, a
        k.reshape_and_permute(None, order)
    elif opt.kind == "PACK":
        _pack(k, opt.axis)
    elif opt.kind == "DEPAD":
        _depad(k, opt.axis)
    elif opt.kind == "STAGE":
        _stage(k)
    elif opt.kind == "MERGE":
        a = opt.axis
        if not 0 <= a < k.first_reduce - 1:
            raise KernelOptError(f"MERGE {a}: global axes {a} and {a + 1} do not both exist")
        k.reshape_and_permute(lambda sh: sh[:a] + (sh[a] * sh[a + 1],) + sh[a + 2:], None)
    else:
        k.apply_opt(opt)
        return
    k.applied.append(opt)


_ACCESS_OPS = (Op.LOAD, Op.CONST, Op.VALID)


def _dependent_axes(k: Kernel, node: AstNode, st_of: dict) -> set[int]:
    """The axes (of size > 1) whose index changes the value of `node`."""
    return set(_operand_facts(k, st_of)[id(node)][1])


def _operand_facts(k: Kernel, st_of: dict) -> dict[int, tuple[bool, frozenset]]:
    """Per AST node (by id): whether its subtree reads memory, and the axes (of size > 1) it depends on.

    One bottom-up pass over the AST as a DAG (shared subtrees once), cached on the kernel until its views change:
    walking it as a tree is exponential in the depth of expressions that read a value twice (tanh, mish)."""
    cached = getattr(k, "_operand_facts", None)
    if cached is not None and cached[0] is k.ast and len(cached[1]) == len(k.sts) and \
            all(a is b for a, b in zip(cached[1], k.sts)):
        return cached[2]
    axes_of_view: dict[int, frozenset] = {}
    facts: dict[int, tuple[bool, frozenset]] = {}
    for n in k.ast.toposort():
        if n.op in _ACCESS_OPS:
            st = st_of[id(n)]
            if id(st) not in axes_of_view:
                axes_of_view[id(st)] = frozenset(a for a, (s, r) in enumerate(zip(st.shape, st.real_strides()))
                                                 if s > 1 and r != 0)
            facts[id(n)] = (n.op == Op.LOAD, axes_of_view[id(st)])
        else:
            reads = any(facts[id(s)][0] for s in n.src)
            facts[id(n)] = (reads, frozenset().union(*(facts[id(s)][1] for s in n.src)))
    k._operand_facts = (k.ast, tuple(k.sts), facts)
    return facts


def pack_candidates(k: Kernel) -> list[AstNode]:
    """The operands of the kernel's reduces that some packing could help: the largest subtrees under a reduce
    that read memory and do not depend on every axis (a matmul's A and B loads, a conv's windows, a fused
    `relu'(x) * grad`), in AST order. Linear in the size of the AST (a DAG: each node is visited once per
    context, inside or outside a reduce)."""
    st_of = {id(n): st for n, st in zip(k.accesses, k.sts)}
    facts = _operand_facts(k, st_of)
    everything = frozenset(a for a, s in enumerate(k.full_shape) if s > 1)
    out: list[AstNode] = []
    chosen: set[int] = set()
    visited: set[tuple[int, bool]] = set()
    stack: list[tuple[AstNode, bool]] = [(k.ast, False)]
    while stack:   # depth first, sources in order: the order a recursive walk would find them
        n, under_reduce = stack.pop()
        if (id(n), under_reduce) in visited:
            continue
        visited.add((id(n), under_reduce))
        if n.op in (Op.SUM, Op.RMAX):
            stack.extend((s, True) for s in reversed(n.src))
            continue
        reads, axes = facts[id(n)]
        if under_reduce and reads and axes != everything:
            if id(n) not in chosen:
                chosen.add(id(n))
                out.append(n)
            continue
        stack.extend((s, under_reduce) for s in reversed(n.src))
    return out


def _pack(k: Kernel, which: int) -> None:
    candidates = pack_candidates(k)
    if not 0 <= which < len(candidates):
        raise KernelOptError(f"PACK {which}: the kernel has {len(candidates)} packable operands")
    node = candidates[which]
    st_of = {id(n): st for n, st in zip(k.accesses, k.sts)}
    keep = sorted(_dependent_axes(k, node, st_of))
    full = k.full_shape
    kept_shape = tuple(full[a] for a in keep)
    copies = copies_of(k)
    args = copies.args
    copy_args: list = []   # buffer i + 1 of the copy kernel is copy_args[i]

    def onto_kept(st: ShapeTracker) -> ShapeTracker:
        """The access's view with the axes the operand does not depend on cut to one element."""
        return st.shrink(tuple((0, s) if a in keep else (0, 1) for a, s in enumerate(st.shape)))

    memo: dict[int, AstNode] = {}

    def rebuild(n: AstNode) -> AstNode:
        if id(n) in memo:
            return memo[id(n)]
        if n.op == Op.LOAD:
            if args[n.arg[0]] not in copy_args:
                copy_args.append(args[n.arg[0]])
            out = AstNode(Op.LOAD, (), (1 + copy_args.index(args[n.arg[0]]), onto_kept(st_of[id(n)])), n.dtype)
        elif n.op == Op.CONST:
            out = AstNode(Op.CONST, (), (n.arg[0], onto_kept(st_of[id(n)])), n.dtype)
        elif n.op == Op.VALID:
            out = AstNode(Op.VALID, (), onto_kept(st_of[id(n)]), n.dtype)
        else:
            out = AstNode(n.op, tuple(rebuild(s) for s in n.src), n.arg, n.dtype)
        memo[id(n)] = out
        return out
    value = rebuild(node)
    if value.op == Op.LOAD and value.arg[1].reshape(kept_shape).contiguous:
        raise KernelOptError(f"PACK {which}: the load already reads its buffer contiguously in loop order")
    # the copy runs over the kernel's axes (the dropped ones of size 1), so every view in it stays one view; it
    # writes in loop order, and the kernel reads that contiguously, broadcast where the operand was
    packed = ShapeTracker.from_shape(kept_shape).reshape(tuple(s if a in keep else 1 for a, s in enumerate(full)))
    copy = AstNode(Op.STORE, (value,), (0, packed), node.dtype)
    packed = packed.expand(full)
    copies.scratch.append((prod(kept_shape), node.dtype))
    copies.before.append((copy, (("scratch", len(copies.scratch) - 1),) + tuple(copy_args)))
    args = args + [("scratch", len(copies.scratch) - 1)]
    new_node = AstNode(Op.LOAD, (), (len(args) - 1, packed), node.dtype)
    st_of[id(new_node)] = packed
    ast = _substitute(k.ast, node, new_node)
    st_of[id(ast)] = k.sts[0]
    _rebind(k, ast, st_of, args)


def _stage(k: Kernel) -> None:
    """Write the output to a scratch buffer laid out like the output except that the innermost axis of the
    kernel (the register block's vector axis) is contiguous, then copy it into place: the block's stores become
    whole vectors (LLVM's SLP vectorizer starts from consecutive stores), and the copy is a transpose of small
    tiles that stay in cache."""
    copies = copies_of(k)
    if copies.args[0] != 0:
        raise KernelOptError("STAGE: the output is staged already")
    st = k.sts[0]
    strides = index_strides(st)
    if strides[-1] == 1 or st.shape[-1] == 1:
        raise KernelOptError("STAGE: the output is contiguous along the innermost axis already")
    # the output's memory order (largest stride first), the innermost kernel axis moved last
    order = sorted(range(len(st.shape) - 1), key=lambda a: -abs(strides[a]) if strides[a] is not None else 0)
    order.append(len(st.shape) - 1)
    size = prod(st.shape)
    copies.scratch.append((size, k.ast.dtype))
    scratch = ("scratch", len(copies.scratch) - 1)
    inverse = [order.index(a) for a in range(len(order))]
    staged = ShapeTracker.from_shape(tuple(st.shape[a] for a in order)).permute(inverse)
    # the copy walks the output in its memory order (contiguous writes)
    copy = AstNode(Op.STORE, (AstNode(Op.LOAD, (), (1, staged.permute(order)), k.ast.dtype),), (0, st.permute(order)),
                   k.ast.dtype)
    copies.after.append((copy, (0, scratch)))
    k.ast = AstNode(Op.STORE, k.ast.src, (0, staged), k.ast.dtype)
    k.accesses[0], k.sts[0] = k.ast, staged
    copies.args[0] = scratch


def _depad(k: Kernel, which: int) -> None:
    """Copy the padded view a load starts from (the first view of its ShapeTracker, the one with the mask) into
    a buffer of its own with the padding written out as zeros, and read that without bounds checks through the
    rest of the views. Much less memory than PACKing a conv's input windows: the padded input, not every
    window."""
    candidates = pack_candidates(k)
    if not 0 <= which < len(candidates) or candidates[which].op != Op.LOAD:
        raise KernelOptError(f"DEPAD {which}: not a load among the kernel's {len(candidates)} packable operands")
    node = candidates[which]
    st_of = {id(n): st for n, st in zip(k.accesses, k.sts)}
    st = st_of[id(node)]
    first = st.views[0]
    if first.mask is None:
        raise KernelOptError(f"DEPAD {which}: the load has no padding")
    keep = [a for a, (size, stride, m) in enumerate(zip(first.shape, first.strides, first.mask))
            if size > 1 and (stride != 0 or m != (0, size))]
    kept_shape = tuple(first.shape[a] for a in keep)
    source = first.shrink(tuple((0, s) if a in keep else (0, 1) for a, s in enumerate(first.shape)))
    source = source.reshape(kept_shape)
    copies = copies_of(k)
    copy = AstNode(Op.STORE, (AstNode(Op.LOAD, (), (1, ShapeTracker((source,))), node.dtype),),
                   (0, ShapeTracker.from_shape(kept_shape)), node.dtype)
    copies.scratch.append((prod(kept_shape), node.dtype))
    copies.before.append((copy, (("scratch", len(copies.scratch) - 1), copies.args[node.arg[0]])))
    strides, acc = [0] * len(first.shape), 1
    for a in reversed(keep):
        strides[a], acc = acc, acc * first.shape[a]
    depadded = ShapeTracker((View.create(first.shape, tuple(strides)),) + st.views[1:])
    args = copies.args + [("scratch", len(copies.scratch) - 1)]
    new_node = AstNode(Op.LOAD, (), (len(args) - 1, depadded), node.dtype)
    st_of[id(new_node)] = depadded
    ast = _substitute(k.ast, node, new_node)
    st_of[id(ast)] = k.sts[0]
    _rebind(k, ast, st_of, args)


def _rebind(k: Kernel, ast: AstNode, st_of: dict, args: list) -> None:
    """Install a rewritten AST: recollect its accesses (keeping their views) and number its buffers 1.. again
    in order of first use, so no index is left unused."""
    loads = [n for n in ast.toposort() if n.op == Op.LOAD]
    used = sorted({n.arg[0] for n in loads})
    number = {old: new for new, old in enumerate(used, 1)}
    memo: dict[int, AstNode] = {}

    def renumber(n: AstNode) -> AstNode:
        if id(n) not in memo:
            if n.op == Op.LOAD:
                out = AstNode(Op.LOAD, (), (number[n.arg[0]], n.arg[1]), n.dtype)
            else:
                out = AstNode(n.op, tuple(renumber(s) for s in n.src), n.arg, n.dtype) if n.src else n
            if id(n) in st_of:   # an access (or the store)
                st_of[id(out)] = st_of[id(n)]
            memo[id(n)] = out
        return memo[id(n)]
    k.ast = renumber(ast)
    k.accesses = [k.ast] + [n for n in k.ast.toposort() if n.op in _ACCESS_OPS]
    k.sts = [st_of[id(n)] for n in k.accesses]
    copies_of(k).args = [args[0]] + [args[old] for old in used]


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


def _largest_divisor(size: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(size, limit)) + 1) if size % d == 0)


def contraction_plan(k: Kernel, threads: int = 1) -> list[Opt]:
    """The register block, packing and loop order for a contraction kernel, as a list of optimizations (empty
    when `k` is not a contraction). `threads`: how many threads the device splits the outer loop over (the
    runtime device's `threads`)."""
    if not k.has_reduce or k.first_reduce == 0 or k.upcasted:
        return []
    globals_ = range(k.first_reduce)
    full = k.full_shape
    store = index_strides(k.sts[0])
    st_of = {id(n): st for n, st in zip(k.accesses, k.sts)}
    operands = pack_candidates(k)
    deps = [_dependent_axes(k, c, st_of) for c in operands]
    # the vector axis: the output's contiguous axis if an operand depends on it, else the last such global axis;
    # B: an operand that depends on it and is broadcast along another global axis, the row axis
    lanes = max(1, host_vector_bits() // (8 * k.ast.dtype.itemsize))
    # a short reduce (a conv over one input channel) makes the kernel as slow as writing its output: then staging
    # the output through a copy costs more than partial vectors, and packing B more than reading it
    short = prod(full[k.first_reduce:]) < 2 * lanes
    best = None
    # prefer an axis that fills whole vectors, then one the output is contiguous along, then the last (a short
    # reduce prefers the output's contiguous axis first)
    rank = (lambda a: (store[a] != 1, full[a] % lanes != 0, -a)) if short else \
        (lambda a: (full[a] % lanes != 0, store[a] != 1, -a))
    for axis in sorted(globals_, key=rank):
        if full[axis] < 4:
            continue
        for n, dep in enumerate(deps):
            rows = [a for a in globals_ if a != axis and a not in dep and full[a] > 1]
            # a contraction operand varies along the reduce too (a bias added before a max pool does not)
            if axis in dep and rows and any(a >= k.first_reduce for a in dep):
                best = (axis, n, max(rows, key=lambda a: (_largest_divisor(full[a], 8), full[a])))
                break
        if best:
            break
    if best is None:
        return []
    vector_axis, b, row_axis = best
    lanes = max(1, host_vector_bits() // (8 * operands[b].dtype.itemsize))
    width = _divisor(full[vector_axis], (2 * lanes, lanes, lanes // 2, lanes // 4))
    if width == 1 and full[vector_axis] <= 2 * lanes:
        width = full[vector_axis]
    if width < 4:
        return []
    rows = _largest_divisor(full[row_axis], ACCUMULATOR_REGISTERS * lanes // width)
    if prod(full) < MIN_PACK_WORK:
        # no packing: the block repeats the whole reduce body (operand expressions too) per element; keep the
        # unrolled code small enough to compile fast (a fused gradient of many steps is hundreds of ops)
        body = _reduce_body_ops(k)
        while body * rows * width > MAX_BLOCK_OPS and rows > 1:
            rows = _largest_divisor(full[row_axis], rows // 2)
        while body * rows * width > MAX_BLOCK_OPS and width >= 8 and full[vector_axis] % (width // 2) == 0:
            width //= 2
        if body * rows * width > MAX_BLOCK_OPS:
            return []
    # rows first, so the vector axis is the innermost upcast axis: a staged output is contiguous along it (an
    # upcast split leaves the positions of the global axes as they were)
    opts = ([Opt("UPCAST", row_axis, rows)] if rows > 1 else []) + [Opt("UPCAST", vector_axis, width)]
    plain_b = operands[b].op == Op.LOAD and index_strides(st_of[id(operands[b])])[vector_axis] == 1
    if prod(full) < MIN_PACK_WORK:
        return opts if plain_b else []   # an unpacked B read across its layout would make the block gather
    if short and store[vector_axis] != 1:
        return []   # a staged output would cost more than the block saves
    # operands that are expressions are computed once instead of once per use
    expressions = [Opt("PACK", n, 0) for n, c in enumerate(operands) if n != b and c.op != Op.LOAD]
    if plain_b and (full[row_axis] // rows < 2 or short):
        return opts + expressions   # B read as it is: contiguous along the vector axis already
    # B in loop order (or just without its padding, when that leaves it contiguous along the vector axis: a
    # conv's input instead of all its windows)
    depad = _depad_suffices(k, opts, b, vector_axis)
    opts += sorted(expressions + [Opt("DEPAD" if depad else "PACK", b, 0)], key=lambda o: o.axis)
    if store[vector_axis] != 1:
        opts.append(Opt("STAGE", 0, 0))
    # loop order: global axes B depends on first (a B panel stays in cache while row blocks pass by)
    sizes = [full[a] // (width if a == vector_axis else rows if a == row_axis else 1) for a in globals_]
    order = sorted(globals_, key=lambda a: (a not in deps[b], sizes[a] == 1))
    opts += _swaps(list(globals_), order)
    # the thread pool splits the outermost loop: merge loops until it has a few iterations per thread
    outer, merged = sizes[order[0]], 0
    while outer < 4 * max(MIN_THREAD_HINT, threads) and merged + 1 < len(order) and sizes[order[merged + 1]] > 1:
        merged += 1
        outer *= sizes[order[merged]]
        opts.append(Opt("MERGE", 0, 0))
    return opts


def _reduce_body_ops(k: Kernel) -> int:
    """ALU ops inside the kernel's reduces (each shared node once): what a register block repeats per element."""
    reduces = [n for n in k.ast.toposort() if n.op in (Op.SUM, Op.RMAX)]
    seen: set[int] = set()
    stack = [r.src[0] for r in reduces]
    while stack:
        n = stack.pop()
        if id(n) not in seen and n.op not in _ACCESS_OPS:
            seen.add(id(n))
            stack.extend(n.src)
    return len(seen) + len(reduces)


def _depad_suffices(k: Kernel, block: list[Opt], b: int, vector_axis: int) -> bool:
    """Whether operand b, read without its padding after the register block `block`, is contiguous along the
    vector axis (tried on a copy of the kernel)."""
    if pack_candidates(k)[b].op != Op.LOAD:
        return False
    trial = Kernel(k.ast)
    try:
        for opt in block + [Opt("DEPAD", b, 0)]:
            apply_cpu_opt(trial, opt)
    except KernelOptError:
        return False
    st_of = {id(n): st for n, st in zip(trial.accesses, trial.sts)}
    strides = index_strides(st_of[id(pack_candidates(trial)[b])])
    return strides[trial.first_upcast + len(block) - 1] == 1 and None not in strides


def _swaps(current: list[int], target: list[int]) -> list[Opt]:
    """SWAP opts turning the axis order `current` into `target` (both lists of the same axis ids)."""
    current, out = list(current), []
    for pos, axis in enumerate(target):
        at = current.index(axis)
        if at != pos:
            current[pos], current[at] = current[at], current[pos]
            out.append(Opt("SWAP", pos, at))
    return out


def optimize_cpu(k: Kernel, threads: int = 1) -> None:
    """Apply the CPU heuristics (contraction_plan) for a device of `threads` threads."""
    for opt in contraction_plan(k, threads):
        try:
            apply_cpu_opt(k, opt)
        except KernelOptError:   # e.g. a B already laid out in loop order needs no PACK; the loop order still helps
            pass


# ---- the space a search (BEAM) or a fuzz test walks ----
UPCAST_AMOUNTS = (2, 3, 4, 8, 16, 32)
UNROLL_AMOUNTS = (2, 3, 4, 8)


def candidate_opts(k: Kernel, max_upcast: int = 256) -> list[Opt]:
    """Every optimization that could be applied to `k` next (some may still raise KernelOptError), keeping the
    register block (the product of the upcast axes) at most `max_upcast` elements."""
    full, opts = k.full_shape, []
    room = max_upcast // prod(full[k.first_upcast:])
    for a in range(k.first_reduce):
        opts += [Opt("UPCAST", a, n) for n in UPCAST_AMOUNTS if full[a] % n == 0 and n <= min(full[a], room)]
    for r in range(k.first_upcast - k.first_reduce):
        size = full[k.first_reduce + r]
        opts += [Opt("UNROLL", r, n) for n in UNROLL_AMOUNTS if size % n == 0 and n <= min(size, room)]
    opts += [Opt("SWAP", a, b) for a in range(k.first_reduce) for b in range(a + 1, k.first_reduce)]
    opts += [Opt("MERGE", a, 0) for a in range(k.first_reduce - 1)]
    if k.has_reduce:
        operands = pack_candidates(k)
        opts += [Opt("PACK", n, 0) for n in range(len(operands))]
        opts += [Opt("DEPAD", n, 0) for n, c in enumerate(operands) if c.op == Op.LOAD]
    if copies_of(k).args[0] == 0:
        opts.append(Opt("STAGE", 0, 0))
    return opts
