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
the other operand passes by it. When that other operand (A) is bigger than ROW_CHUNK_BYTES, its rows are tiled
(SPLIT): a chunk of rows stays in the last-level cache while every panel passes by, so A is read from memory once
instead of once per panel.

The register block is sized from the host: its vector width (lanes per register) and how many vector registers
it has (16 on AVX2, 32 on AVX-512): accumulators, the B vectors of one reduce step and the broadcast element of
A must all fit, or LLVM spills accumulators to the stack on every step.

A reduce that is not a contraction but reads across its innermost reduce axis with a stride (a weight gradient
summed over batch and time) gets one vector of outputs per thread instead (`strided_reduce_plan`), and an
elementwise kernel or copy whose innermost loop is shorter than a vector has it unrolled into a block
(`short_inner_axis_plan`).

The optimizations are applied by `Kernel.apply_opt`; PACK, DEPAD and STAGE rewrite the kernel in codegen/copies.py.
Here: which ones a contraction gets (`contraction_plan`), and every one that could apply (`candidate_opts`, the
space BEAM searches).
"""
from __future__ import annotations

from tinyjit.helpers import largest_divisor, prod
from tinyjit.ops import Op

from codegen.copies import ACCESS_OPS, dependent_axes, index_strides, operand_facts, pack_candidates
from codegen.kernel import Kernel, alu_ops
from codegen.linearizer import INLINE_MATH_SIZE, element_size
from codegen.llvm_ops import host_vector_bits, host_vector_registers
from codegen.opts import KernelOptError, Opt, OptKind

# at most this many vector registers of accumulators in a register block (16 unrolled vector FMAs per reduce step:
# the code a block unrolls stays within the compile budget, and 16 of AVX-512's 32 registers keep its FMA units
# busy); fewer where the CPU has fewer registers (accumulator_registers)
MAX_ACCUMULATOR_REGISTERS = 16
# below this many multiply-adds a contraction is not worth a packing launch
MIN_PACK_WORK = 1 << 16
# at most this many ALU ops in an unpacked register block (reduce body ops x block elements): past it LLVM spends
# more time compiling the unrolled block than a small kernel ever runs
MAX_BLOCK_OPS = 2048
# at most this many instructions of epilogue (ops on the block's results, per element, times the block's elements):
# a gelu gradient's exp fused after a 4 x 16 block took LLVM 0.8 CPU s to compile
MAX_EPILOGUE_COST = 2048
# a matmul whose other operand (A) is larger than this is tiled: a chunk of A's rows this size stays in the
# last-level cache while every panel of B passes by (else all of A streams from memory once per B panel)
ROW_CHUNK_BYTES = 2 << 20
# an input read across its layout by an elementwise kernel is read this many neighbouring elements at a time (at
# most one vector: 8 float32 rows of x + y.T ran 10-20% faster than 4, from 2-4x slower without)
TRANSPOSED_READ_UPCAST = 8
# ... while the unrolled elements are at most this many LLVM instructions (codegen.linearizer.element_size): with
# more math per element the kernel is bound by its math (an erf * sigmoid gained 2-5% and took 5x the LLVM time)
TRANSPOSED_READ_MAX_SIZE = 600
# ... and only where the lines one pass of the innermost loop touches would not stay in L1 until the next pass
# reads their neighbours: a loop this long, or lines this many bytes apart (a multiple of 4 KiB maps every line to
# one L1 set). A 16-row panel of a 200-column weight ran as fast element by element and compiled in a third.
TRANSPOSED_READ_MIN_LOOP = 128
TRANSPOSED_READ_MIN_STRIDE = 4096
# a reduce's output axis that no input varies along is unrolled by up to this many elements (invariant_axis_plan)
INVARIANT_UPCAST = 32
# at most this many output streams (panels) for a copy that reads its input in order and writes across (each
# stream's open cache line stays in L1 until the next row fills it)
MAX_WRITE_STREAMS = 64
# the outer loop is cut for at least this many threads (more than the 2 cores of a small machine costs nothing)
MIN_THREAD_HINT = 2


# ---- the heuristics ----
def _divisor(size: int, choices) -> int:
    return next((c for c in choices if c >= 1 and size % c == 0 and size >= c), 1)


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
    if _reads_everything_under_reduce(k, st_of):
        return []   # a row reduction (a softmax's max of masked scores), not a contraction: a block reuses nothing
    operands = pack_candidates(k)
    deps = [dependent_axes(k, c, st_of) for c in operands]
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
                best = (axis, n, max(rows, key=lambda a: (largest_divisor(full[a], 8), full[a])))
                break
        if best:
            break
    if best is None:
        return []
    vector_axis, b, row_axis = best
    # vectors of accumulators: their dtype sizes the block (a bool mask as B would make 32-lane "vectors" of
    # float accumulators, a block of hundreds of registers that takes LLVM tens of seconds to compile)
    lanes = max(1, host_vector_bits() // (8 * max(operands[b].dtype.itemsize, k.ast.dtype.itemsize)))
    # whole vectors, else (for a reduce long enough that the FMAs are the work) an odd number of half vectors: 200
    # columns on AVX-512, 40 wide (2.5 vectors), ran 3.5x faster than 8 wide, whose FMAs fill half a register; a
    # reduce over 20 steps gained nothing. Else fractions of one.
    odd_halves = (5 * lanes // 2, 3 * lanes // 2) if prod(full[k.first_reduce:]) >= 4 * lanes else ()
    width = _divisor(full[vector_axis], (2 * lanes, lanes) + odd_halves + (lanes // 2, lanes // 4))
    if width == 1 and full[vector_axis] <= 2 * lanes:
        width = full[vector_axis]
    if width < 4:
        return []
    b_vectors = -(-width // lanes)
    rows = largest_divisor(full[row_axis], accumulator_registers(host_vector_registers(), b_vectors) // b_vectors)
    if prod(full) < MIN_PACK_WORK:
        # no packing: the block repeats the whole reduce body (operand expressions too) per element; keep the
        # unrolled code small enough to compile fast (a fused gradient of many steps is hundreds of ops)
        body = _reduce_body_ops(k)
        while body * rows * width > MAX_BLOCK_OPS and rows > 1:
            rows = largest_divisor(full[row_axis], rows // 2)
        while body * rows * width > MAX_BLOCK_OPS and width >= 8 and full[vector_axis] % (width // 2) == 0:
            width //= 2
        if body * rows * width > MAX_BLOCK_OPS:
            return []
    # the epilogue (the ops on the block's results: a gelu gradient's exp) is unrolled per block element too
    epilogue = _epilogue_cost(k)
    while epilogue * rows * width > MAX_EPILOGUE_COST and rows > 1:
        rows = largest_divisor(full[row_axis], rows // 2)
    while epilogue * rows * width > MAX_EPILOGUE_COST and width > lanes and full[vector_axis] % (width // 2) == 0:
        width //= 2   # (one row two vectors wide: AVX-512's 32 float32 columns)
    # rows first, so the vector axis is the innermost upcast axis: a staged output is contiguous along it (an
    # upcast split leaves the positions of the global axes as they were)
    opts = ([Opt(OptKind.UPCAST, row_axis, rows)] if rows > 1 else []) + [Opt(OptKind.UPCAST, vector_axis, width)]
    plain_b = operands[b].op == Op.LOAD and index_strides(st_of[id(operands[b])])[vector_axis] == 1
    if prod(full) < MIN_PACK_WORK:
        return opts if plain_b else []   # an unpacked B read across its layout would make the block gather
    if short and store[vector_axis] != 1:
        return []   # a staged output would cost more than the block saves
    # operands that are expressions are computed once instead of once per use, and loads read across their layout
    # (a weight gradient's transposed A: each reduce step a new cache line per block row) are laid out in order
    expressions = [Opt(OptKind.PACK, n, 0) for n, c in enumerate(operands)
                   if n != b and (c.op != Op.LOAD or _read_across(k, c, st_of))]
    # ... and a padded load (the windows of a conv's input where the block runs along the output channels) is read
    # from a copy with its padding written out: no bounds check per element of the block (1.6x faster)
    expressions += [Opt(OptKind.DEPAD, n, 0) for n, c in enumerate(operands)
                    if n != b and c.op == Op.LOAD and not c.src and not _read_across(k, c, st_of)
                    and st_of[id(c)].views[0].mask is not None]
    if plain_b and (full[row_axis] // rows < 2 or short):
        return opts + expressions   # B read as it is: contiguous along the vector axis already
    # B in loop order (or just without its padding, when that leaves it contiguous along the vector axis: a
    # conv's input instead of all its windows)
    depad = _depad_suffices(k, opts, b, vector_axis)
    opts += sorted(expressions + [Opt(OptKind.DEPAD if depad else OptKind.PACK, b, 0)], key=lambda o: o.axis)
    if store[vector_axis] != 1:
        opts.append(Opt(OptKind.STAGE, 0, 0))
    # loop order: global axes B depends on first (a B panel stays in cache while row blocks pass by)
    sizes = [full[a] // (width if a == vector_axis else rows if a == row_axis else 1) for a in globals_]
    order = sorted(globals_, key=lambda a: (a not in deps[b], sizes[a] == 1))
    opts += _swaps(list(globals_), order)
    loops = [sizes[a] for a in order]
    if order == [vector_axis, row_axis]:   # a plain matmul: tile A's rows if A does not fit in cache
        a_operand = next((c for n, c in enumerate(operands) if n != b), None)
        block_bytes = rows * prod(full[k.first_reduce:]) * (a_operand.dtype.itemsize if a_operand else 4)
        chunk = largest_divisor(loops[1], max(1, ROW_CHUNK_BYTES // block_bytes))
        if chunk < loops[1]:
            opts += [Opt(OptKind.SPLIT, 1, chunk), Opt(OptKind.SWAP, 0, 1)]
            loops = [loops[1] // chunk, loops[0], chunk]
    # the thread pool splits the outermost loop: merge loops until it has a few iterations per thread
    outer, merged = loops[0], 0
    while outer < 4 * max(MIN_THREAD_HINT, threads) and merged + 1 < len(loops) and loops[merged + 1] > 1:
        merged += 1
        outer *= loops[merged]
        opts.append(Opt(OptKind.MERGE, 0, 0))
    return opts


def _read_across(k: Kernel, operand, st_of: dict) -> bool:
    """Whether load `operand` steps through memory with a stride along the innermost reduce axis (each reduce step
    of a block reads a new cache line per row: x.T @ y read 1.3-1.7x slower than packed, the pack included)."""
    stride = index_strides(st_of[id(operand)])[k.first_upcast - 1]
    return stride not in (0, 1)


def accumulator_registers(vector_registers: int, b_vectors: int) -> int:
    """How many of a CPU's `vector_registers` a register block may fill with accumulators when each reduce step
    loads `b_vectors` vectors of B: the others hold those vectors and the broadcast element of the other operand.
    A block with more accumulators spills them to the stack on every step (an 8 x 16 float block on AVX2 is 16
    accumulators + 2 B vectors + 1 broadcast in 16 ymm registers, and ran at half the speed of a 4 x 16 block)."""
    return max(1, min(MAX_ACCUMULATOR_REGISTERS, vector_registers - b_vectors - 1))


def _reads_everything_under_reduce(k: Kernel, st_of: dict) -> bool:
    """Whether some load inside a reduce depends on every axis (of size > 1) of the kernel: then each element it
    reads is used once, and a register block would only repeat the other operands' (cheap, broadcast) work."""
    everything = frozenset(a for a, s in enumerate(k.full_shape) if s > 1)
    facts = operand_facts(k, st_of)
    seen: set[int] = set()
    stack = [n.src[0] for n in k.ast.toposort() if n.op in (Op.SUM, Op.RMAX)]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n.op == Op.LOAD and facts[id(n)][1] == everything:
            return True
        stack.extend(n.src)
    return False


def _reduce_body_ops(k: Kernel) -> int:
    """ALU ops inside the kernel's reduces (each shared node once): what a register block repeats per element."""
    reduces = [n for n in k.ast.toposort() if n.op in (Op.SUM, Op.RMAX)]
    seen: set[int] = set()
    stack = [r.src[0] for r in reduces]
    while stack:
        n = stack.pop()
        if id(n) not in seen and n.op not in ACCESS_OPS:
            seen.add(id(n))
            stack.extend(n.src)
    return len(seen) + len(reduces)


def _epilogue_cost(k: Kernel) -> int:
    """About how many instructions the ops outside the kernel's reduces take per output element (each shared node
    once; exp, log and sin are inline polynomials of INLINE_MATH_SIZE)."""
    inside: set[int] = set()
    stack = [n.src[0] for n in k.ast.toposort() if n.op in (Op.SUM, Op.RMAX)]
    while stack:
        n = stack.pop()
        if id(n) not in inside:
            inside.add(id(n))
            stack.extend(n.src)
    return sum(INLINE_MATH_SIZE if n.op in (Op.EXP2, Op.LOG2, Op.SIN) else 1 for n in k.ast.toposort()
               if id(n) not in inside and n.op not in ACCESS_OPS and n.op not in (Op.SUM, Op.RMAX, Op.STORE))


def _depad_suffices(k: Kernel, block: list[Opt], b: int, vector_axis: int) -> bool:
    """Whether operand b, read without its padding after the register block `block`, is contiguous along the
    vector axis (tried on a copy of the kernel)."""
    if pack_candidates(k)[b].op != Op.LOAD:
        return False
    trial = Kernel(k.ast)
    try:
        for opt in block + [Opt(OptKind.DEPAD, b, 0)]:
            trial.apply_opt(opt)
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
            out.append(Opt(OptKind.SWAP, pos, at))
    return out


def strided_reduce_plan(k: Kernel) -> list[Opt]:
    """An UPCAST of the output's contiguous axis by one vector for a reduce that reads memory across its innermost
    reduce axis with a stride and along that output axis contiguously (a layer norm's weight gradient: 64 columns,
    each summed over batch and time); empty for any other kernel.

    Left alone, LLVM vectorizes the strided reduce loop with gathers (the code of a gathered load is ~8x a plain
    one, a CPU second to compile for a few loads) and each step gathers from 8 cache lines. Upcast, each reduce
    step reads whole vectors across `lanes` outputs (SLP vectorizes the block) and the loads that are contiguous
    along the reduce are broadcast across the block. Only where every load is then a whole vector or a broadcast,
    the reduce body times the block stays within MAX_BLOCK_OPS, and the outer loop keeps work for the threads."""
    if not k.has_reduce or k.first_reduce == 0 or k.upcasted:
        return []
    full = k.full_shape
    lanes = max(1, host_vector_bits() // (8 * k.ast.dtype.itemsize))
    store = index_strides(k.sts[0])
    inner = k.first_upcast - 1
    axis = next((a for a in reversed(range(k.first_reduce)) if store[a] == 1), None)
    if axis is None or full[axis] % lanes or prod(full[:k.first_reduce]) // lanes < MIN_THREAD_HINT:
        return []
    if _reduce_body_ops(k) * lanes > MAX_BLOCK_OPS:
        return []
    gathered = False
    for node, st in zip(k.accesses, k.sts):
        if node.op != Op.LOAD:
            continue
        strides = index_strides(st)
        if strides[axis] not in (0, 1):
            return []   # upcast, this load would be gathered across the block
        if strides[axis] == 1 and strides[inner] not in (0, 1):
            gathered = True   # contiguous across outputs, strided along the reduce: what the upcast is for
        if strides[axis] == 1 and strides[inner] == 1:
            return []   # contiguous along the reduce too: the loop vectorizer reads it in whole vectors already
    return [Opt(OptKind.UPCAST, axis, lanes)] if gathered else []


def invariant_axis_plan(k: Kernel) -> list[Opt]:
    """An UPCAST of an output axis that no input varies along, for a reduce: the weight gradient of a zero initial
    state (an LSTM's h0: the sum over the batch of 0 * g[b, j], the same for each of the 200 columns k, and each
    column computed it again: 2.8 ms a step of P4). In a register block along that axis the reduce body is computed
    once per block (its loads and ops are the same for every element) and only the accumulations repeat. Up to
    INVARIANT_UPCAST elements (the largest divisor of the axis), leaving the outer loop work for the threads; empty
    for any other kernel."""
    if not k.has_reduce or k.first_reduce == 0 or k.upcasted or _reduce_body_ops(k) < 2:
        return []
    full = k.full_shape
    # the axes the stored value depends on (through any load's address or validity, a gathered load's index too)
    value_axes = operand_facts(k, {id(n): st for n, st in zip(k.accesses, k.sts)})[id(k.ast.src[0])][1]
    for axis in reversed(range(k.first_reduce)):
        if full[axis] < 4 or axis in value_axes:
            continue
        amount = largest_divisor(full[axis], INVARIANT_UPCAST)
        if amount >= 4 and prod(full[:k.first_reduce]) // amount >= MIN_THREAD_HINT:
            return [Opt(OptKind.UPCAST, axis, amount)]
    return []


def short_inner_axis_plan(k: Kernel) -> list[Opt]:
    """UPCASTs that unroll the innermost loop of an elementwise kernel when it is shorter than one vector (a
    transposed copy in 4-element tiles: the packed operand of a matmul's register block, with the gradient of a
    gelu fused into it), and then the next loop out until the block fills a vector (and a SWAP for a copy into
    panels, below); empty for any other kernel.

    LLVM's loop vectorizer leaves loops of a few iterations alone, so such a kernel ran one element at a time:
    a long expression then waits on its own latency (~90 ns per element for an erf gradient, 60x the same kernel
    without the transpose). Unrolled, the block is straight-line code that SLP vectorizes (the accesses that
    were contiguous along the short axis become whole vectors) and whose elements overlap in any case."""
    if k.has_reduce or k.upcasted or k.first_reduce == 0:
        return []
    full = k.full_shape
    lanes = max(1, host_vector_bits() // (8 * k.ast.dtype.itemsize))
    inner = k.first_reduce - 1
    if not 1 < full[inner] < lanes or prod(full[:inner]) == 1:
        return []   # (a kernel that is one short loop has no loop around it to run slowly: left as it is)
    ops = alu_ops(k) + 1   # what an upcast repeats per element: its math and its store
    if ops * full[inner] > MAX_BLOCK_OPS:
        return []
    plan = [Opt(OptKind.UPCAST, inner, full[inner])]
    rest = lanes // full[inner]
    outer = inner - 1
    if rest > 1 and outer >= 0 and full[outer] % rest == 0 and full[outer] > rest and ops * lanes <= MAX_BLOCK_OPS:
        plan.append(Opt(OptKind.UPCAST, outer, rest))
    # a load whose rows continue along an outer axis (a matmul operand packed into panels of a few columns: panel j
    # of row r is the next piece of row r) makes that axis the innermost loop, so rows are read in order and each
    # line once, while the writes go to one stream per panel (few enough to stay in L1); in panel order every
    # line of the input was fetched once per panel it holds a piece of (a 2048 x 256 pack 2x slower)
    store = index_strides(k.sts[0])
    for node, st in zip(k.accesses, k.sts):
        strides = index_strides(st)
        if outer <= 0 or node.op != Op.LOAD or strides[inner] != 1:
            continue
        across = next((a for a in range(outer) if strides[a] == full[inner] and store[a] != full[inner] and
                       full[a] <= MAX_WRITE_STREAMS), None)
        if across is not None:
            plan.append(Opt(OptKind.SWAP, across, outer))
            break
    return plan


def stacked_view_plan(k: Kernel) -> list[Opt]:
    """UPCASTs of an elementwise kernel that make every address linear in the loops: an access through stacked
    views (a max-pool gradient scattered back from its windows) computes `h // 2` and `h % 2` for each element;
    split by the window size, with the inner part unrolled into a block, those are the outer loop's index and a
    constant, and the values the block's elements share (one window's gradient) are loaded once. Empty when
    nothing is divided, or when no split of at most one vector per axis makes every loop's address linear."""
    if k.has_reduce or k.upcasted or k.first_reduce == 0:
        return []
    full = k.full_shape
    lanes = max(1, host_vector_bits() // (8 * k.ast.dtype.itemsize))
    stacked = [st for st in k.sts if len(st.views) > 1]
    nonlinear = sorted({a for st in stacked for a, s in enumerate(index_strides(st)[:k.first_reduce])
                        if s is None and full[a] > 1}, reverse=True)
    if not nonlinear:
        return []
    amounts: dict[int, int] = {}
    for axis in nonlinear:   # the smallest split of each axis that makes its outer part linear
        for amount in range(2, lanes // prod(amounts.values()) + 1):
            if full[axis] % amount or amount >= full[axis]:
                continue
            split = tuple(full[:axis]) + (full[axis] // amount, amount) + tuple(full[axis + 1:])
            if all(index_strides(st.reshape(split))[axis] is not None for st in stacked):
                amounts[axis] = amount
                break
        else:
            if axis == k.first_reduce - 1 and full[axis] <= 2 * lanes and not amounts:
                amounts[axis] = full[axis]   # no split works (a padded row of 11): unroll the whole short row
            # (else the axis stays a loop that divides: checked below)
    if not amounts or (alu_ops(k) + 1) * prod(amounts.values()) > MAX_BLOCK_OPS:
        return []
    # all splits at once: every loop's address linear (the unrolled parts are constants in the block), or a block
    # of a whole row that pays the divisions of the loops around it once per row
    split, unrolled = [], []
    for a, size in enumerate(full):
        split += [size // amounts[a], amounts[a]] if a in amounts else [size]
        unrolled += [False, True] if a in amounts else [False]
    if prod(amounts.values()) < lanes and \
            any(index_strides(st.reshape(tuple(split)))[i] is None for st in stacked
                for i, u in enumerate(unrolled) if not u and split[i] > 1):
        return []
    return [Opt(OptKind.UPCAST, axis, amount) for axis, amount in amounts.items()]


def transposed_read_plan(k: Kernel) -> list[Opt]:
    """An UPCAST for an elementwise kernel that reads an input across its layout (x + y.T, a transposing copy): the
    axis along which that input is contiguous is unrolled by about one vector, so each pass of the innermost loop
    (vectorized along the output) uses that many neighbouring elements of each cache line it touches instead of
    one. Element by element, the read touched a new cache line per element, and with power-of-two strides the lines
    evicted each other: 512 x 512 copies and adds ran 4x slower (0.6 -> 0.13 ms), exp(x) * y.T 2x. Empty for any
    other kernel, and where the lines touched stay in L1 anyway (TRANSPOSED_READ_MIN_LOOP, _MIN_STRIDE) or the
    math per element outweighs the reads (TRANSPOSED_READ_MAX_SIZE)."""
    if k.has_reduce or k.upcasted or k.first_reduce < 2:
        return []
    full, inner = k.full_shape, k.first_reduce - 1
    lanes = max(2, host_vector_bits() // (8 * k.ast.dtype.itemsize))
    if full[inner] < lanes:
        return []   # (short_inner_axis_plan's case)
    strides = [(node, index_strides(st)) for node, st in zip(k.accesses, k.sts)]   # (a padded read too)
    if not all(node.op != Op.STORE or s[inner] == 1 for node, s in strides):
        return []
    amount, size = min(lanes, TRANSPOSED_READ_UPCAST), element_size(k)
    while amount > 4 and size * amount > TRANSPOSED_READ_MAX_SIZE:
        amount //= 2
    if size * amount > TRANSPOSED_READ_MAX_SIZE:
        return []   # the math outweighs the reads (and LLVM would vectorize the expression `amount` times over)
    for node, s in strides:
        if node.op != Op.LOAD or s[inner] in (0, 1, None):
            continue
        if full[inner] < TRANSPOSED_READ_MIN_LOOP and abs(s[inner]) * node.dtype.itemsize < TRANSPOSED_READ_MIN_STRIDE:
            continue   # the few lines the loop touches stay in L1 for the next element of each (no gain)
        across = next((a for a in range(inner) if s[a] == 1 and full[a] % amount == 0 and full[a] > amount), None)
        if across is not None:
            return [Opt(OptKind.UPCAST, across, amount)]
    return []


def optimize_cpu(k: Kernel, threads: int = 1) -> None:
    """Apply the CPU heuristics (contraction_plan, else strided_reduce_plan, else invariant_axis_plan, else
    stacked_view_plan, else short_inner_axis_plan, else transposed_read_plan) for a device of `threads` threads."""
    for opt in contraction_plan(k, threads) or strided_reduce_plan(k) or invariant_axis_plan(k) or \
            stacked_view_plan(k) or short_inner_axis_plan(k) or transposed_read_plan(k):
        try:
            k.apply_opt(opt)
        except KernelOptError:   # e.g. a B already laid out in loop order needs no PACK; the loop order still helps
            pass


# ---- the space a search (BEAM) or a fuzz test walks ----
UPCAST_AMOUNTS = (2, 3, 4, 8, 16, 32)
UNROLL_AMOUNTS = (2, 3, 4, 8)
SPLIT_AMOUNTS = (4, 16)


def candidate_opts(k: Kernel, max_upcast: int = 256) -> list[Opt]:
    """Every optimization that could be applied to `k` next (some may still raise KernelOptError), keeping the
    register block (the product of the upcast axes) at most `max_upcast` elements."""
    full, opts = k.full_shape, []
    room = max_upcast // prod(full[k.first_upcast:])
    for a in range(k.first_reduce):
        opts += [Opt(OptKind.UPCAST, a, n) for n in UPCAST_AMOUNTS if full[a] % n == 0 and n <= min(full[a], room)]
    for r in range(k.first_upcast - k.first_reduce):
        size = full[k.first_reduce + r]
        opts += [Opt(OptKind.UNROLL, r, n) for n in UNROLL_AMOUNTS if size % n == 0 and n <= min(size, room)]
    opts += [Opt(OptKind.SWAP, a, b) for a in range(k.first_reduce) for b in range(a + 1, k.first_reduce)]
    opts += [Opt(OptKind.MERGE, a, 0) for a in range(k.first_reduce - 1)]
    opts += [Opt(OptKind.SPLIT, a, n) for a in range(k.first_reduce) for n in SPLIT_AMOUNTS
             if full[a] % n == 0 and full[a] > n]
    if k.has_reduce:
        operands = pack_candidates(k)
        opts += [Opt(OptKind.PACK, n, 0) for n in range(len(operands))]
        opts += [Opt(OptKind.DEPAD, n, 0) for n, c in enumerate(operands) if c.op == Op.LOAD]
    if not k.copies.args[0].scratch:
        opts.append(Opt(OptKind.STAGE, 0, 0))
    return opts
