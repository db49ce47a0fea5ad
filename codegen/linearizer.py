"""Kernel (AST + views + optimizations) -> the linear loop program (a list of UOps) that renderers print.

Loop structure of every kernel:

    for global axes (CPU: the outermost one over [start, end) given by the thread pool; GPU: work-item ids)
      accumulators = identity                      (one per reduce per upcast output element)
      for reduce axes
        accumulator = op(accumulator, value)       (unrolled over upcast/unroll axes)
      store(output, post-reduce expression)        (unrolled over upcast axes)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from tinyjit.dtype import DType, dtypes, fits
from tinyjit.helpers import prod
from tinyjit.ops import AstNode, Op, gathered_load, reduce_identity
from tinyjit.symbolic import And, Div, Expr, Lt, Mod, Mul, Num, Sum, Var

from codegen.accumulate import REGISTER_BLOCK, VECTOR_BLOCK, ReduceLoop, level_zero_block, plan_reduce_loops
from codegen.copies import index_strides
from codegen.kernel import Kernel, alu_ops, upcast_combinations
from codegen.uops import U, UOp

REDUCE_TO_ALU = {Op.SUM: Op.ADD, Op.RMAX: Op.MAX}
# A CPU kernel's loops are left to LLVM's loop vectorizer unless its innermost loop is short and its per-element
# math light (a copy, a relu gradient) and either the kernel is small or it is elementwise and its innermost loop
# is not whole vectors (a 10-row panel pack): then vectorizing pays nothing at run time (such copies
# ran as fast or faster without it) but costs up to a CPU second of LLVM time per kernel (LLVM fully unrolls the
# short innermost loop, then vectorizes and interleaves the loop around it with gathers: ~10x the code). Such a
# kernel's loops are named with this suffix, and the LLVM renderer turns the vectorizer off for them.
NO_VECTORIZE_SUFFIX = "_novec"
NO_VECTORIZE_MAX_TRIP = 16        # innermost loop length
NO_VECTORIZE_MAX_ALU = 8          # ALU ops of the kernel's AST (each shared node once)
NO_VECTORIZE_MAX_WORK = 1 << 17   # loop iterations of a kernel left scalar whatever its innermost loop
NO_VECTORIZE_WHOLE_VECTOR = 8     # a bigger kernel stays vectorized if its innermost loop is a multiple of this
                                  # (2-7x faster vectorized) or if it reduces
# LLVM unrolls a register block's reduce loop by 2. A block one vector wide (many rows of broadcast elements times
# one vector of B: the 10 x 8 block of a 200-column matmul) then holds two steps' broadcasts beside its accumulators
# and spills accumulators to the stack inside the loop: it ran 1.2-2x slower than the loop left rolled (a block two
# or more vectors wide gains ~5-10% from the unroll). Such a block's reduce loops are named with this suffix, and the
# LLVM renderer turns unrolling off for them. So are the loops around an elementwise block SLP vectorizes
# (slp_vectorized_block): the block is whole vectors already, and LLVM's full unroll of the loop around it (8 blocks
# of 8 stores) made its loop-load elimination compare every pair of stores: 0.2-0.3 CPU s for one small copy.
NO_UNROLL_SUFFIX = "_nounroll"
# The same unroll-then-vectorize happens in any elementwise kernel whose short innermost loop LLVM unrolls, however
# heavy its math or big its work: LLVM vectorizes the loop around the unrolled one, and an access that is not read
# in order along that loop is gathered (or scattered) once per unrolled copy: a 16-wide panel pack of a transposed
# weight took 0.3-0.4 CPU s, a pack of a concatenation (its mask varies along that loop) 0.2 s, and they ran
# 1.1-1.6x slower than scalar. That loop alone is then marked (`gathering_loop`); the unrolled loop is still
# vectorized by SLP where it is read in order. An interleaved group of at most NO_VECTORIZE_MAX_INTERLEAVE
# contiguous elements per iteration (a 4-row panel: the short loop contiguous, the loop around it stepping by its
# length) is vectorized cheaply and stays. LLVM unrolls a constant loop whose unrolled body is at most about
# LLVM_FULL_UNROLL_SIZE instructions (its -O3 threshold); a longer body (exp and log are inline polynomials of
# about INLINE_MATH_SIZE instructions) is vectorized along the short loop itself.
NO_VECTORIZE_MAX_INTERLEAVE = 8
LLVM_FULL_UNROLL_SIZE = 300
INLINE_MATH_SIZE = 25
# A masked load reads index 0 where it is not valid, so its address is select(valid, index, 0): LLVM cannot see that
# it steps along the loop it vectorizes and gathers it, one element per lane (the GRU's stacked gradient, a sum of 48
# time-masked pieces packed 16 wide: 0.25-0.35 CPU s). Where the mask does not change along the innermost loop, the
# select is taken of the rest of the index only (a LOAD with this arg: its index is safe as it is): a row that is not
# valid reads the elements 0, step, 2*step, ... which exist because the rows that are valid read them in full
# (index = rest + step * i, rest >= 0).
SAFE_INDEX = "safe index"


def acc_dtype(reduce_node: AstNode) -> DType:
    """The accumulator's type: a half sum accumulates in float32 (like PyTorch), everything else in its own."""
    return dtypes.float32 if reduce_node.op == Op.SUM and reduce_node.dtype == dtypes.float16 else reduce_node.dtype


INT32_MAX = 2 ** 31 - 1


def _magnitude(e: Expr) -> int:
    """A bound on the absolute value of `e` and of every value its lowering computes on the way (the constants it
    multiplies, divides and compares by, and every partial sum of a Sum, whose terms may cancel)."""
    own = max(abs(e.min), abs(e.max))
    if isinstance(e, (Mul, Div, Mod, Lt)):
        return max(own, _magnitude(e.a), abs(e.b))
    if isinstance(e, Sum):
        return max(own, sum(_magnitude(t) for t in e.terms))
    if isinstance(e, And):
        return max(_magnitude(t) for t in e.terms)
    return own


def index_magnitude(k: Kernel, gpu: bool) -> int:
    """A bound on every index value a kernel computes: addresses and masks of every access (upcast axes at any
    position), loop bounds (blocked accumulation loops run up to a block past the axis), and on a GPU the
    work-item ids, which may be one flat id over every grid axis."""
    full = k.full_shape
    idxs = [Var(f"i{a}", 0, s - 1) for a, s in enumerate(full)]
    bound = max(full) + max(REGISTER_BLOCK, VECTOR_BLOCK)
    if gpu:
        bound = max(bound, prod(full[:k.first_reduce + k.group_for_reduce]))
    for node, st in zip(k.accesses, k.sts):
        index, valid = st.index_and_valid([Num(0) if s == 1 else i for i, s in zip(idxs, st.shape)])
        bound = max(bound, _magnitude(index), _magnitude(valid))
        gather = gathered_load(node)
        if gather is not None:   # row 0's address plus up to rows - 1 row strides, and the row number itself
            bound = max(bound, _magnitude(index) + (gather.rows - 1) * abs(gather.row_stride), gather.rows)
    return bound


@dataclass
class Program:
    """What a backend needs to compile and launch one kernel."""
    name: str
    uops: list[UOp]
    buffer_dtypes: list[DType]
    global_size: tuple[int, ...]          # CPU: (outer loop length,) split over threads; GPU: work-groups
    local_size: tuple[int, ...] = (1, 1, 1)
    flops: int = 0
    applied_opts: list = field(default_factory=list)


class Linearizer:
    def __init__(self, k: Kernel, gpu: bool = False, vector_bits: int = 0):
        """`vector_bits`: the CPU's vector width (0: unknown; then no loop is marked NO_UNROLL_SUFFIX)."""
        self.k, self.gpu, self.vector_bits = k, gpu, vector_bits
        self.uops: list[UOp] = []
        self.cse: list[dict] = [{}]          # scoped: values made inside a loop die with it
        # 32-bit index math (faster, and vectorizes better) unless some value of it could leave int32
        self.index_dtype = dtypes.int64 if index_magnitude(k, gpu) > INT32_MAX else dtypes.int32

    # ---- emitting ----
    def emit(self, uop: U, dtype, src=(), arg=None, cse: bool = True) -> UOp:
        # floats by repr: -0.0 == 0.0 but they are different constants, and a NaN must match itself
        key = (uop, dtype, tuple(id(s) for s in src), repr(arg) if isinstance(arg, float) else arg)
        if cse:
            for scope in reversed(self.cse):
                if key in scope:
                    return scope[key]
        u = UOp(uop, dtype, src, arg)
        self.uops.append(u)
        if cse:
            self.cse[-1][key] = u
        return u

    def const(self, value, dtype: DType) -> UOp:
        return self.emit(U.CONST, dtype, (), value)

    def alu(self, op: Op, dtype: DType, *src: UOp) -> UOp:
        return self.emit(U.ALU, dtype, src, op)

    # ---- index expressions ----
    def expr(self, e: Expr) -> UOp:
        """The UOp of index expression `e`. A composite expression is lowered once per loop scope: the index math
        shares its objects (a register block's element indices are element 0's terms plus a constant, and
        symbolic.add keeps the terms it does not change), so the same term is asked for again and again; it is
        remembered by identity beside the common-subexpression keys (with the expression itself, which keeps its
        id from being reused)."""
        if isinstance(e, Num):
            return self.const(e.value, self.index_dtype)
        if isinstance(e, Var):
            return self.vars[e.name]
        key = (id(e),)
        for scope in reversed(self.cse):
            found = scope.get(key)
            if found is not None and found[0] is e:
                return found[1]
        u = self._expr(e)
        self.cse[-1][key] = (e, u)
        return u

    def _expr(self, e: Expr) -> UOp:
        dt = self.index_dtype
        if isinstance(e, Mul):
            return self.alu(Op.MUL, dt, self.expr(e.a), self.const(e.b, dt))
        if isinstance(e, Div):
            return self.alu(Op.IDIV, dt, self.expr(e.a), self.const(e.b, dt))
        if isinstance(e, Mod):
            return self.alu(Op.MOD, dt, self.expr(e.a), self.const(e.b, dt))
        if isinstance(e, Sum):
            # constants last so `base + offset` keeps the variable part shareable between accesses
            terms = sorted(e.terms, key=lambda t: isinstance(t, Num))
            out = self.expr(terms[0])
            for t in terms[1:]:
                out = self.alu(Op.ADD, dt, out, self.expr(t))
            return out
        if isinstance(e, Lt):
            return self.alu(Op.CMPLT, dtypes.bool, self.expr(e.a), self.const(e.b, dt))
        if isinstance(e, And):
            out = self.expr(e.terms[0])
            for t in e.terms[1:]:
                out = self.alu(Op.AND, dtypes.bool, out, self.expr(t))
            return out
        raise TypeError(f"cannot lower index expression {e!r}")

    def valid_uop(self, valid: Expr):
        if isinstance(valid, Num):
            return None if valid.value else self.const(False, dtypes.bool)
        v = self.expr(valid)
        return v if v.dtype == dtypes.bool else self.alu(Op.CMPNE, dtypes.bool, v, self.const(0, self.index_dtype))

    def access_idxs(self, st, upcast: Sequence[Expr]) -> list[Expr]:
        """The index of each axis of access `st`: its loop variable, `upcast[n]` on the n-th upcast axis (an
        element of the block, or a variable over the axis), 0 on a size-1 axis."""
        first_upcast = self.first_upcast
        idxs: list[Expr] = []
        for axis, size in enumerate(st.shape):
            if size == 1:
                idxs.append(Num(0))
            elif axis >= first_upcast:
                idxs.append(upcast[axis - first_upcast])
            else:
                idxs.append(self.axis_vars[axis])
        return idxs

    def index_and_valid(self, st, combo: tuple[int, ...]) -> tuple[Expr, Expr]:
        """(index, valid) of access `st` at upcast element `combo`, computed once per linearization: the symbolic
        index math is the costliest part of linearizing, and a register block asks for the same access again in
        every loop scope it is lowered in (and different loads often share one ShapeTracker)."""
        relevant = self._upcasts_read.get(st)
        if relevant is None:
            relevant = self._upcasts_read[st] = self.upcast_axes_read(st)
        # an access broadcast along an upcast axis (a matmul's A across the block's columns) is the same access for
        # every element along it: one symbolic computation serves them all (1/16 of a 6 x 16 block's A loads)
        key = (st, tuple(c if read else 0 for c, read in zip(combo, relevant)))
        found = self._index_cache.get(key)
        if found is None:
            steps = self._upcast_steps[st]
            if steps is not None and any(key[1]):   # element 0's index plus a constant (see upcast_axes_read)
                index, valid = self.index_and_valid(st, (0,) * len(combo))
                found = (index + sum(c * step for c, step in zip(key[1], steps)), valid)
            else:
                found = st.index_and_valid(self.access_idxs(st, [Num(c) for c in key[1]]))
            self._index_cache[key] = found
        return found

    def upcast_axes_read(self, st) -> tuple[bool, ...]:
        """Per upcast axis, whether access `st`'s index or validity depends on the element along it: computed with
        each upcast axis as a variable over its range (an exact answer for every element, as the symbolic rewrites
        hold over a variable's whole range).

        That expression also tells when the block's elements differ only by constants: when the validity does not
        depend on the element and each upcast variable appears in the index only as a term `upcast * step` (a
        contiguous output, a row of B), element c's index is element 0's plus sum(c * step) and its validity is
        element 0's. `_upcast_steps[st]` keeps those steps per upcast axis (None when it is not so), and
        index_and_valid adds them up instead of doing the symbolic index math of the views again for each of the
        block's elements (256 stores of a big block, each through the view's index math, were most of the
        Python time of building its kernel)."""
        upcast_vars = [Var(f"upcast{axis}", 0, size - 1) for axis, size in enumerate(st.shape[self.first_upcast:])]
        index, valid = st.index_and_valid(self.access_idxs(st, upcast_vars))
        used = index.vars() | valid.vars()
        self._upcast_steps[st] = _upcast_steps(index, valid, upcast_vars)
        return tuple(var in used for var in upcast_vars)

    # ---- the AST ----
    def lower(self, node: AstNode, combo: tuple[int, ...]) -> UOp:
        key = (id(node), combo)
        for scope in reversed(self.memo):
            if key in scope:
                return scope[key]
        out = self._lower(node, combo)
        self.memo[-1][key] = out
        return out

    def _lower(self, node: AstNode, combo) -> UOp:
        k = self.k
        if node.op in (Op.LOAD, Op.CONST, Op.VALID):
            st = k.sts[self.access_index[id(node)]]
            index, valid = self.index_and_valid(st, combo)
            if node.op == Op.VALID:
                v = self.valid_uop(valid)
                return self.const(True, dtypes.bool) if v is None else v
            v = self.valid_uop(valid)
            if node.op == Op.CONST:
                c = self.const(node.arg[0], node.dtype)
                if v is None:
                    return c
                zero = self.const(reduce_identity(Op.SUM, node.dtype), node.dtype)
                return self.alu(Op.WHERE, node.dtype, v, c, zero)
            buf = self.buffers[node.arg[0]]
            gather = gathered_load(node)
            if gather is None and v is not None and not isinstance(valid, Num):
                steady = self.steady_masked_index(st, index, valid)
                if steady is not None:
                    rest, step, inner = steady
                    zero = self.const(0, self.index_dtype)
                    safe = self.alu(Op.ADD, self.index_dtype, self.alu(Op.WHERE, self.index_dtype, v, rest, zero),
                                    self.alu(Op.MUL, self.index_dtype, inner, self.const(step, self.index_dtype)))
                    return self.emit(U.LOAD, node.dtype, (buf, safe, v), arg=SAFE_INDEX)
            if gather is None:
                src = (buf, self.expr(index)) + ((v,) if v is not None else ())
                return self.emit(U.LOAD, node.dtype, src)
            return self.gathered(node, gather, buf, self.expr(index), v, combo)
        if node.op in REDUCE_TO_ALU:
            acc = self.accs[(id(node), self.output_combo(combo))]
            total = self.emit(U.ACC_READ, acc.dtype, (acc,), cse=False)
            return total if acc.dtype == node.dtype else self.emit(U.CAST, node.dtype, (total,))
        srcs = [self.lower(s, combo) for s in node.src]
        if node.op == Op.CAST:
            return self.emit(U.CAST, node.dtype, srcs)
        if node.op == Op.BITCAST:
            return self.emit(U.BITCAST, node.dtype, srcs)
        if node.op == Op.SIN and node.arg:   # the phase, in quarter turns (tinyjit/ops.py), as a constant operand
            srcs.append(self.const(node.arg % 4, dtypes.int32))
        return self.alu(node.op, node.dtype, *srcs)

    def steady_masked_index(self, st, index: Expr, valid: Expr):
        """(the index without its innermost-loop term as a UOp, that term's step, the loop variable's UOp) for a
        masked load of an elementwise CPU kernel whose mask does not change along the innermost loop and whose index
        steps along it by a constant > 0; None otherwise (see SAFE_INDEX)."""
        k = self.k
        axis = self.first_upcast - 1
        if self.gpu or k.has_reduce or axis < 0 or k.full_shape[axis] == 1:
            return None
        if any(v.mask is not None and any(lo >= hi for lo, hi in v.mask) for v in st.views):
            return None   # never valid: there may be no element to read at all
        name = self.axis_vars[axis].name
        if any(var.name == name for var in valid.vars()):
            return None
        terms = index.terms if isinstance(index, Sum) else (index,)
        step, rest = 0, []
        for t in terms:
            if isinstance(t, Var) and t.name == name:
                step += 1
            elif isinstance(t, Mul) and isinstance(t.a, Var) and t.a.name == name:
                step += t.b
            elif any(var.name == name for var in t.vars()):
                return None
            else:
                rest.append(t)
        if step <= 0 or name not in self.vars:
            return None
        rest_expr = Num(0) if not rest else rest[0] if len(rest) == 1 else Sum(tuple(rest))
        return self.expr(rest_expr), step, self.vars[name]

    def gathered(self, node: AstNode, gather, buf: UOp, row_zero: UOp, valid, combo) -> UOp:
        """A gathered load (tinyjit.ops.Gather): the element at row_zero + row * row_stride, where row is the index
        value; an index outside [0, rows) reads row 0's address and gives 0. The range test is on the index's own
        type (before narrowing it to the index type could wrap it into range) and selects the value after the load,
        not the address: the address stays base + lane where the index is the same across a vector of lanes."""
        dt = self.index_dtype
        row = self.lower(node.src[0], combo)
        tests = []
        if not row.dtype.is_unsigned:
            tests.append(self.alu(Op.CMPLT, dtypes.bool, self.const(-1, row.dtype), row))
        if fits(gather.rows, row.dtype):
            tests.append(self.alu(Op.CMPLT, dtypes.bool, row, self.const(gather.rows, row.dtype)))
        in_range = tests[0] if tests else None
        if len(tests) == 2:
            in_range = self.alu(Op.AND, dtypes.bool, tests[0], tests[1])
        row = row if row.dtype == dt else self.emit(U.CAST, dt, (row,))
        if in_range is not None:
            row = self.alu(Op.WHERE, dt, in_range, row, self.const(0, dt))
        address = self.alu(Op.ADD, dt, row_zero, self.alu(Op.MUL, dt, row, self.const(gather.row_stride, dt)))
        value = self.emit(U.LOAD, node.dtype, (buf, address) + ((valid,) if valid is not None else ()))
        if in_range is None:
            return value
        return self.alu(Op.WHERE, node.dtype, in_range, value, self.const(reduce_identity(Op.SUM, node.dtype),
                                                                          node.dtype))

    def output_combo(self, combo: tuple[int, ...]) -> tuple[int, ...]:
        """The combo with unrolled reduce axes zeroed: which accumulator/output element it belongs to."""
        return tuple(0 if reduced else c for reduced, c in zip(self.upcast_reduced, combo))

    # ---- the loop program ----
    def linearize(self) -> Program:
        k = self.k
        self.access_index = {id(n): i for i, n in enumerate(k.accesses)}
        self.memo: list[dict] = [{}]
        nbuf = 1 + max([n.arg[0] for n in k.accesses if n.op == Op.LOAD], default=0)
        dtypes_of = {0: k.ast.dtype}
        for n in k.accesses:
            if n.op == Op.LOAD:
                dtypes_of[n.arg[0]] = n.dtype
        self.buffers = [self.emit(U.DEFINE_GLOBAL, dtypes_of[i], (), (i, f"data{i}", i == 0), cse=False)
                        for i in range(nbuf)]
        full, first_reduce, first_upcast = k.full_shape, k.first_reduce, k.first_upcast
        # the kernel's shape is fixed while it is linearized: computed once (Kernel recomputes them per call)
        self.first_upcast = first_upcast
        self.upcast_reduced = tuple(k.is_reduce_axis(a) for a in range(first_upcast, k.ndim))
        self._index_cache: dict = {}
        self._upcasts_read: dict = {}
        self._upcast_steps: dict = {}
        self.scalar = not self.gpu and scalar_kernel(k)
        self.rolled_reduce = not self.gpu and self.vector_bits > 0 and one_vector_block(k, self.vector_bits)
        self.gathering_axis = None if self.gpu or self.scalar else gathering_loop(k)
        self.block_by_slp = not self.gpu and slp_vectorized_block(k)
        self.rolled_outer = not self.gpu and not self.scalar and self.gathering_axis is None and \
            gathered_innermost_loop(k)
        self.vars: dict[str, UOp] = {}
        self.axis_vars: list[Expr] = []
        for axis in range(first_upcast):
            name = f"{'g' if axis < first_reduce else 'r'}idx{axis}"
            self.axis_vars.append(Var(name, 0, full[axis] - 1))

        # global axes: loops on the CPU (the outermost over a thread's range), ids on a GPU
        global_loops = []
        if self.gpu:
            global_size, local_size = self.gpu_global_ids(first_reduce)
        else:
            start = self.emit(U.DEFINE_VAR, self.index_dtype, (), "start", cse=False)
            end = self.emit(U.DEFINE_VAR, self.index_dtype, (), "end", cse=False)
            global_size, local_size = ((full[0],) if first_reduce > 0 else (1,)), (1, 1, 1)
            for axis in range(first_reduce):
                lo, hi = (start, end) if axis == 0 else (self.const(0, self.index_dtype),
                                                         self.const(full[axis], self.index_dtype))
                loop = self.emit(U.LOOP, self.index_dtype, (lo, hi), self.loop_name(axis), cse=False)
                self.vars[self.axis_vars[axis].name] = loop
                global_loops.append(loop)
                self.cse.append({})
                self.memo.append({})

        upcast_sizes = list(full[first_upcast:])
        combos = upcast_combinations(upcast_sizes)
        out_combos = list(dict.fromkeys(self.output_combo(c) for c in combos))
        reduces = [n for n in k.ast.toposort() if n.op in REDUCE_TO_ALU]

        # accumulators, reduce loops, accumulate
        self.accs: dict = {}
        for r in reduces:
            for oc in out_combos:
                self.accs[(id(r), oc)] = self.emit(U.DEFINE_ACC, acc_dtype(r), (), reduce_identity(r.op, r.dtype),
                                                   cse=False)
        if reduces:
            self.reduce_loops(reduces, combos, out_combos)

        guard = self.after_reduce(reduces, out_combos)

        # post-reduce expression and the store
        out_st = k.sts[0]
        for oc in out_combos:
            value = self.lower(k.ast.src[0], oc)
            index, _ = self.index_and_valid(out_st, oc)
            self.emit(U.STORE, None, (self.buffers[0], self.expr(index), value), cse=False)
        if guard is not None:
            self.emit(U.ENDIF, None, (guard,), cse=False)
        for loop in reversed(global_loops):
            self.emit(U.ENDLOOP, None, (loop,), cse=False)
        self.close_kernel()

        flops = sum(1 for u in self.uops if u.uop == U.ALU and u.dtype != self.index_dtype)
        return Program(k.name(), self.uops, [dtypes_of[i] for i in range(nbuf)], tuple(global_size),
                       tuple(local_size), flops * prod(full[:first_upcast]), list(k.applied))

    def reduce_loops(self, reduces: list, combos: list, out_combos: list) -> None:
        """The reduce loops and the accumulation in them. Float sums accumulate in levels (codegen/accumulate.py):
        a level's accumulators start inside the loop that opens it and are added to the level above at the end of
        its body; other reduces accumulate straight into the kernel's accumulators."""
        k, dt = self.k, self.index_dtype
        full, first_upcast = k.full_shape, k.first_upcast
        loop_axes = [(axis, full[axis]) for axis in range(k.first_reduce + k.group_for_reduce, first_upcast)]
        blocked = [r for r in reduces if r.op == Op.SUM and r.dtype.is_float]
        unrolled = prod(full[a] for a in range(first_upcast, k.ndim) if k.is_reduce_axis(a))
        plan = plan_reduce_loops(loop_axes, unrolled, self.level_zero_block(len(out_combos) > 1)) if blocked \
            else [ReduceLoop(axis, size) for axis, size in loop_axes]
        levels = [{key: acc for key, acc in self.accs.items()}]   # the innermost level last
        opened, loops_of_axis = [], {}
        for spec in plan:
            outer = loops_of_axis.get(spec.axis)
            if outer is None:
                lo, hi = self.const(0, dt), self.const(spec.steps, dt)
            else:   # a block of `count` steps of the loop just outside
                lo = self.alu(Op.MUL, dt, outer, self.const(spec.count, dt))
                hi = self.alu(Op.ADD, dt, lo, self.const(spec.count, dt))
                if spec.ragged:
                    steps = self.const(spec.steps, dt)
                    hi = self.alu(Op.WHERE, dt, self.alu(Op.CMPLT, dtypes.bool, hi, steps), hi, steps)
            name = self.loop_name(spec.axis, "" if spec.unit == 1 else f"_blk{spec.unit}")
            loop = self.emit(U.LOOP, dt, (lo, hi), name, cse=False)
            loops_of_axis[spec.axis] = loop
            if spec.unit == 1:
                self.vars[self.axis_vars[spec.axis].name] = loop
            self.cse.append({})
            self.memo.append({})
            opened.append((loop, spec.opens_level))
            if spec.opens_level:
                levels.append({(id(r), oc): self.emit(U.DEFINE_ACC, acc_dtype(r), (), reduce_identity(r.op, r.dtype),
                                                      cse=False) for r in blocked for oc in out_combos})
        for r in reduces:
            for combo in combos:
                key = (id(r), self.output_combo(combo))
                acc = levels[-1].get(key, self.accs[key])
                value = self.lower(r.src[0], combo)
                if value.dtype != acc.dtype:   # half sums accumulate in float32
                    value = self.emit(U.CAST, acc.dtype, (value,))
                current = self.emit(U.ACC_READ, acc.dtype, (acc,), cse=False)
                # "accumulate": the renderer may reorder these additions among themselves (vectorize them)
                self.emit(U.ACC_WRITE, None, (acc, self.alu(REDUCE_TO_ALU[r.op], acc.dtype, current, value)),
                          cse=False, arg="accumulate")
        for loop, opens_level in reversed(opened):
            if opens_level:   # this level's partial sums are one term each of the level above, in order
                inner = levels.pop()
                for key, acc in inner.items():
                    above = levels[-1][key]
                    total = self.alu(Op.ADD, acc.dtype, self.emit(U.ACC_READ, acc.dtype, (above,), cse=False),
                                     self.emit(U.ACC_READ, acc.dtype, (acc,), cse=False))
                    self.emit(U.ACC_WRITE, None, (above, total), cse=False)
            self.emit(U.ENDLOOP, None, (loop,), cse=False)
            self.cse.pop()
            self.memo.pop()

    def loop_name(self, axis: int, block: str = "") -> str:
        """The name of a loop over `axis` (`block`: "_blk<unit>" for a loop over blocks of it; NO_VECTORIZE_SUFFIX
        marks the loops LLVM should leave scalar, NO_UNROLL_SUFFIX the loops it should not unroll)."""
        rolled = NO_UNROLL_SUFFIX if self.block_by_slp or (self.rolled_reduce and self.k.is_reduce_axis(axis)) or \
            (self.rolled_outer and axis < self.k.ndim - 1) else ""
        scalar = self.scalar or self.block_by_slp or axis == self.gathering_axis
        return self.axis_vars[axis].name + block + rolled + (NO_VECTORIZE_SUFFIX if scalar else "")

    def level_zero_block(self, register_block: bool) -> int:
        """How many terms the innermost accumulation level takes (codegen/accumulate.py): more when the innermost
        reduce loop reads some float buffer contiguously, so that LLVM vectorizes it."""
        k = self.k
        axis = k.first_upcast - 1
        contiguous = axis >= k.first_reduce + k.group_for_reduce and any(
            node.op == Op.LOAD and node.dtype.is_float and st.real_strides()[axis] == 1
            for node, st in zip(k.accesses, k.sts))
        return level_zero_block(register_block, contiguous, self.gpu)

    def gpu_global_ids(self, first_reduce: int):
        """Map the global axes onto GPU ids. Overridden by the GPU linearizer."""
        raise NotImplementedError("GPU linearization lives in codegen.gpu")

    def close_kernel(self) -> None:
        """Hook at the end of the program (the GPU linearizer closes a guard it opened around the kernel)."""

    def after_reduce(self, reduces: list, out_combos: list):
        """Hook between the reduce loops and the store; may open an IF that the store is put in (returned so
        it is closed after the store). The GPU linearizer combines work-group partial reduces here."""
        return None


def scalar_kernel(k: Kernel) -> bool:
    """Whether the CPU kernel `k`'s loops are better left to run scalar (see NO_VECTORIZE_SUFFIX): no upcast
    axes (a register block is vectorized by SLP, not by the loop vectorizer), a short innermost loop, little math,
    and little work in all or (elementwise) an innermost loop that is not whole vectors."""
    full = k.full_shape
    if k.upcasted or not full or full[-1] > NO_VECTORIZE_MAX_TRIP:
        return False
    if alu_ops(k) > NO_VECTORIZE_MAX_ALU:
        return False
    if prod(full) <= NO_VECTORIZE_MAX_WORK:
        return True
    # a big light elementwise kernel keeps the vectorizer unless its innermost loop is not whole vectors (reduces
    # and transposing copies ran 1.5-3x slower scalar)
    return not k.has_reduce and full[-1] % NO_VECTORIZE_WHOLE_VECTOR != 0


def one_vector_block(k: Kernel, vector_bits: int) -> bool:
    """Whether the CPU kernel `k` is a register block one vector wide with several rows (see NO_UNROLL_SUFFIX) on a
    CPU with vectors of `vector_bits`: its innermost upcast axis is a global axis of at most one vector of the
    output's dtype, and the other upcast global axes make at least two rows."""
    if not k.has_reduce or not k.upcasted:
        return False
    lanes = max(1, vector_bits // (8 * k.ast.dtype.itemsize))
    full, last = k.full_shape, k.ndim - 1
    if k.is_reduce_axis(last) or full[last] > lanes:
        return False
    rows = prod(full[a] for a in range(k.first_upcast, last) if not k.is_reduce_axis(a))
    return rows >= 2


def slp_vectorized_block(k: Kernel) -> bool:
    """Whether the CPU kernel `k` is an elementwise block that SLP vectorizes, so its loops are named with
    NO_VECTORIZE_SUFFIX (and NO_UNROLL_SUFFIX): the upcast axes cover the output's contiguous axis (a short
    innermost loop unrolled into a block, codegen.cpu_opts.short_inner_axis_plan). The loop vectorizer would
    vectorize the loop around the block with gathers, 8 blocks at a time: ~3x slower and ~5x the code. A block of
    rows over a long loop that stores in order (an UPCAST of an outer axis, e.g. by BEAM) keeps the loop
    vectorizer: it vectorizes that loop with whole vectors per row, 2-3x faster than SLP across rows that are far
    apart in memory."""
    if k.has_reduce or not k.upcasted or k.first_upcast == 0:
        return False
    innermost_loop = k.first_upcast - 1
    return not any(node.op == Op.STORE and st.real_strides()[innermost_loop] == 1
                   for node, st in zip(k.accesses, k.sts))


def gathering_loop(k: Kernel) -> int | None:
    """The axis of the loop around a short innermost loop that LLVM would unroll and then vectorize with gathers
    or scatters (see NO_VECTORIZE_MAX_INTERLEAVE), for an elementwise CPU kernel without upcast axes; None when
    there is no such loop, LLVM would not unroll the short one, or every access reads or writes in order."""
    full = k.full_shape
    if k.has_reduce or k.upcasted or len(full) < 2 or full[-1] > NO_VECTORIZE_MAX_TRIP or full[-2] == 1:
        return None
    if full[-1] * element_size(k) > LLVM_FULL_UNROLL_SIZE:
        return None
    short, outer = len(full) - 1, len(full) - 2
    for node, st in zip(k.accesses, k.sts):
        if node.op not in (Op.LOAD, Op.STORE):
            continue
        index = index_strides(st)
        if index[outer] is None or st.real_strides()[outer] is None:
            return outer   # an index or a mask (a concatenation, a pad) that varies along the loop: gathered
        in_order = index[outer] in (0, 1)
        interleaved = index[short] == 1 and index[outer] == full[short] <= NO_VECTORIZE_MAX_INTERLEAVE
        if not in_order and not interleaved:
            return outer
    return None


def _upcast_steps(index: Expr, valid: Expr, upcast_vars: list[Var]) -> tuple[int, ...] | None:
    """Per upcast variable, its coefficient in `index` when `index` is a sum of terms free of them and of terms
    `var` or `var * step`, and `valid` does not read them; else None (Linearizer.upcast_axes_read)."""
    names = {var.name: n for n, var in enumerate(upcast_vars)}
    if any(var.name in names for var in valid.vars()):
        return None
    steps = [0] * len(upcast_vars)
    for term in index.terms if isinstance(index, Sum) else (index,):
        var, step = (term.a, term.b) if isinstance(term, Mul) else (term, 1)
        if isinstance(var, Var) and var.name in names:
            steps[names[var.name]] += step
        elif any(v.name in names for v in term.vars()):
            return None
    return tuple(steps)


def gathered_innermost_loop(k: Kernel) -> bool:
    """Whether the CPU kernel `k` is elementwise without upcast axes and its innermost loop, longer than
    NO_VECTORIZE_MAX_TRIP, is read or written out of order by some access (a transposing copy: the panel pack of a
    transposed operand reads along a stride of a row). LLVM vectorizes that loop with gathers, and as its length is
    a constant it unrolls the vectorized loop fully and then the short loops around it too: 8 copies of 4 gathers
    each for a 4 x 2 x 32 pack, 0.2-0.25 CPU s to compile one 3 KB kernel. The loops around it are then named with
    NO_UNROLL_SUFFIX: the innermost loop is vectorized as before (its gathers are the work), its copies are not."""
    full = k.full_shape
    if k.has_reduce or k.upcasted or len(full) < 2 or full[-1] <= NO_VECTORIZE_MAX_TRIP:
        return False
    for node, st in zip(k.accesses, k.sts):
        if node.op in (Op.LOAD, Op.STORE):
            step = index_strides(st)[-1]
            if step is None or step not in (0, 1) or st.real_strides()[-1] is None:
                return True
    return False


def element_size(k: Kernel) -> int:
    """About how many LLVM instructions one element of kernel `k` takes (each shared AST node once): a load or
    store with its address 2, a masked one 4, exp/log/sin INLINE_MATH_SIZE, any other op 1."""
    size = 0
    for n in k.ast.toposort():
        if n.op in (Op.EXP2, Op.LOG2, Op.SIN):
            size += INLINE_MATH_SIZE
        elif n.op in (Op.LOAD, Op.STORE):
            size += 2
        elif n.op not in (Op.CONST, Op.VALID):
            size += 1
    for st, node in zip(k.sts, k.accesses):
        if node.op == Op.LOAD and any(v.mask is not None for v in st.views):
            size += 2
    return size
