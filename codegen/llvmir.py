"""Render the linear loop program as LLVM IR text (for the CPU backend, compiled by llvmlite): the kernel's loops,
loads, stores and accumulators, and the loop metadata and value layout that steer LLVM's vectorizers. One scalar
operation's IR (ALU ops, accumulation, casts, types and constants) is codegen/llvm_ops.py's."""
from __future__ import annotations

import hashlib
import math

from tinyjit.dtype import DType, dtypes
from tinyjit.ops import Op

from codegen.linearizer import NO_UNROLL_SUFFIX, NO_VECTORIZE_SUFFIX, SAFE_INDEX
from codegen.llvm_ops import LLVM_TYPES, accumulate, alu, cast, host_vector_bits, llvm_const, mem_type
from codegen.uops import U, UOp


class LLVMRenderer:
    device = "CPU"
    gpu = False

    def linearize(self, kernel):
        from codegen.linearizer import Linearizer
        return Linearizer(kernel, vector_bits=host_vector_bits()).linearize()

    def render(self, name: str, uops: list[UOp]) -> tuple[str, str]:
        """(function name, LLVM IR module text). The function name is the kind of kernel (E, r) and a hash of the
        body, not its readable name: kernels whose loops do not spell out their sizes (a 1-D elementwise kernel runs
        over the [start, end) its caller passes) have one source for all sizes, so Adam's update of every parameter
        compiles (and is cached and loaded) once."""
        body, declares, args = self._body(uops)
        digest = hashlib.sha256("\n".join(body).encode()).hexdigest()[:16]   # 64 bits: no two bodies share a name
        fname = f"{name.split('_', 1)[0]}_{digest}"
        lines = [f"define void @{fname}({', '.join(args)}) #0 {{", "entry:"] + body + ["}"]
        lines += self._thunk(fname, args)
        lines += sorted(declares)
        # LLVM vectorizes with 256-bit registers on AVX-512 CPUs unless told to prefer the full width
        lines.append(f'attributes #0 = {{ nounwind "no-trapping-math"="true" '
                     f'"prefer-vector-width"="{host_vector_bits()}" }}')
        return fname, "\n".join(lines) + "\n"

    @staticmethod
    def _thunk(fname: str, args: list[str]) -> list[str]:
        """`{fname}_thunk(ptr args, i64 start, i64 end)`: the kernel called with its buffers from an array, one
        signature for all kernels, so the CPU runtime's native thread pool can call any of them. The range is 64-bit
        (an outer loop may pass 2**31); a kernel whose index math is 32-bit gets it truncated (it fits)."""
        buffers = [a for a in args if a.startswith("ptr")]
        index_type = next((a.split()[0] for a in args if not a.startswith("ptr")), "i32")
        lines = [f"define void @{fname}_thunk(ptr %args, i64 %start, i64 %end) {{", "entry:"]
        for i in range(len(buffers)):
            lines += [f"  %a{i}p = getelementptr ptr, ptr %args, i64 {i}", f"  %a{i} = load ptr, ptr %a{i}p"]
        if index_type == "i64":
            lo, hi = "%start", "%end"
        else:
            lines += [f"  %lo = trunc i64 %start to {index_type}", f"  %hi = trunc i64 %end to {index_type}"]
            lo, hi = "%lo", "%hi"
        call_args = [f"ptr %a{i}" for i in range(len(buffers))] + [f"{index_type} {lo}", f"{index_type} {hi}"]
        return lines + [f"  call void @{fname}({', '.join(call_args)})", "  ret void", "}"]

    @staticmethod
    def _register_block(uops: list[UOp]) -> bool:
        """Whether the kernel is a register block of accumulators (several stores): SLP vectorizes its reduce loops
        across the block instead of the loop vectorizer (an elementwise block's loops are named by the linearizer:
        codegen.linearizer.slp_vectorized_block)."""
        return sum(u.uop == U.STORE for u in uops) > 1 and any(u.uop == U.DEFINE_ACC for u in uops)

    @staticmethod
    def _index_math(uops: list[UOp]) -> set[int]:
        """ids of the integer ops (add, mul, and the div/mod by constants between them) that compute addresses from
        loop variables and constants. Their values are in-range indices (the linearizer picks a wide enough index
        type), so the adds and multiplies get `nsw`: LLVM then
        sees that neighbouring elements are neighbours in memory (sext(i + 1) == sext(i) + 1), which the SLP and
        loop vectorizers need. Data math never depends on a loop variable directly, so it keeps wrapping."""
        index: set[int] = set()
        for u in uops:
            if u.uop in (U.LOOP, U.DEFINE_VAR, U.SPECIAL):
                index.add(id(u))
            elif u.uop == U.ALU and u.arg in (Op.ADD, Op.MUL, Op.IDIV, Op.MOD) and u.dtype.is_int \
                    and u.dtype != dtypes.bool \
                    and any(id(s) in index for s in u.src) \
                    and all(id(s) in index or s.uop == U.CONST for s in u.src):
                index.add(id(u))
        return index

    @staticmethod
    def _staged_epilogues(uops: list[UOp], register_block: bool) -> dict[int, tuple[int, tuple]]:
        """The epilogues of a register block that read their accumulators from a staging array: {id of each
        ACC_READ after the reduce loops: (the byte offset of its accumulator in the array, the accumulators staged
        with their byte offsets, ((acc, offset), ...), when this read is the first of its epilogue, else ())}.
        Each accumulator is staged as its own type: a block may hold accumulators of several dtypes (a float sum
        and an int64 count over the same axis); they are grouped by dtype, widest first (each offset aligned),
        and within a group in block order (whole vectors for SLP).

        SLP vectorizes a block from its stores back to the accumulators. An epilogue that reads an accumulator's
        value twice (a gelu gradient: grad * cdf + grad * x * pdf, grad the block's product) made it pair the
        accumulators' lanes wrongly: the reduce loop ran 4-wide with shuffles, ~5x slower than the same product
        alone. Stored to a stack array behind a compiler barrier (an empty asm that may read it), the accumulators
        are a store chain of their own, vectorized cleanly, and the epilogue reads whole vectors. Epilogues that
        use each value once (a bias, a residual, an activation) vectorize well as they are and are left so (the
        staging costs compile time)."""
        if not register_block:
            return {}
        staged: dict[int, tuple[int, tuple]] = {}
        define_order = {id(u): n for n, u in enumerate(u for u in uops if u.uop == U.DEFINE_ACC)}
        depth, segment, uses, value_of = 0, [], {}, {}

        def close() -> None:
            if segment and max(uses.values(), default=0) > 1:
                accs = sorted({id(r.src[0]): r.src[0] for r in segment}.values(),
                              key=lambda a: (-a.dtype.itemsize, a.dtype.name, define_order[id(a)]))
                offset, layout, end = {}, [], 0
                for acc in accs:   # widest first: each offset is a multiple of its own size
                    offset[id(acc)] = end
                    layout.append((acc, end))
                    end += acc.dtype.itemsize
                for n, read in enumerate(segment):
                    staged[id(read)] = (offset[id(read.src[0])], tuple(layout) if n == 0 else ())
        for u in uops:
            if u.uop == U.LOOP and u.arg.startswith("r"):
                close()
                depth, segment, uses = depth + 1, [], {}
            elif u.uop == U.ENDLOOP and u.src[0].arg.startswith("r"):
                depth -= 1
            elif depth == 0 and u.uop == U.ACC_READ:
                segment.append(u)
                value_of[id(u)] = id(u)
            elif depth == 0 and u.uop == U.LOOP:
                close()
                segment, uses = [], {}
            elif depth == 0 and u.uop in (U.ACC_WRITE, U.DEFINE_ACC):
                segment, uses = [], {}   # reads before it flush a level's partial sums: not an epilogue
            elif depth == 0 and segment and u.uop == U.CAST and id(u.src[0]) in value_of:
                value_of[id(u)] = value_of[id(u.src[0])]   # the value cast to the output's type: the same value
            elif depth == 0 and segment:
                for src in u.src:   # uses of each accumulator's value
                    if id(src) in value_of:
                        uses[value_of[id(src)]] = uses.get(value_of[id(src)], 0) + 1
        close()
        return staged

    def _body(self, uops: list[UOp]):
        register_block = self._register_block(uops)
        staged = self._staged_epilogues(uops, register_block)
        nsw = self._index_math(uops)
        accumulations, flushes = self._accumulator_writes(uops)
        masked_max_terms = self._masked_max_terms(uops, accumulations)
        fused = self._fused_products(uops, accumulations)
        out: list[str] = []
        allocas: list[str] = []
        for dt in sorted({u.dtype for u in uops if id(u) in masked_max_terms}, key=lambda d: d.name):
            t = LLVM_TYPES[dt]   # the masked max's -inf, loaded where LLVM cannot see its value (see below)
            allocas += [f"  %neg_inf_slot.{t} = alloca {t}",
                        f"  store volatile {t} {llvm_const(-math.inf, dt)}, ptr %neg_inf_slot.{t}",
                        f"  %neg_inf.{t} = load volatile {t}, ptr %neg_inf_slot.{t}"]
        if staged:   # one staging array, as large as the largest epilogue's accumulators
            size = max(at + acc.dtype.itemsize for _, layout in staged.values() for acc, at in layout)
            allocas.append(f"  %stage = alloca [{size} x i8], align 64")
        declares: set[str] = set()
        args: list[str] = []
        names: dict[int, str] = {}
        counter = [0]
        block = ["entry"]
        loop_info: dict[int, tuple[str, str, str, str]] = {}
        metadata: list[str] = []

        def fresh(prefix="v") -> str:
            counter[0] += 1
            return f"%{prefix}{counter[0]}"

        def ref(u: UOp) -> str:
            if u.uop == U.CONST:
                return llvm_const(u.arg, u.dtype)
            return names[id(u)]

        def ty(u: UOp) -> str:
            return LLVM_TYPES[u.dtype]

        def emit(text: str) -> None:
            out.append("  " + text)

        def loop_hint(loop: UOp) -> str:
            """Loop metadata: the reduce loops of a register block are vectorized by SLP across the block (the loop
            vectorizer would vectorize across the reduce axis instead, with strided gathers); a loop over the
            blocks of an accumulation level is not unrolled (each block ends with a horizontal add: unrolled, a
            row of blocks becomes one long stretch of code that spills), nor the reduce loop of a block one vector
            wide (codegen.linearizer.NO_UNROLL_SUFFIX: unrolled, it spills accumulators); a loop the linearizer
            marked (codegen.linearizer.NO_VECTORIZE_SUFFIX: a short innermost loop of a small, light kernel, the
            loops around an elementwise block SLP vectorizes) is not vectorized."""
            properties = []
            if (register_block and loop.arg.startswith("r")) or loop.arg.endswith(NO_VECTORIZE_SUFFIX):
                properties.append("!{!\"llvm.loop.vectorize.enable\", i1 false}")
            if "_blk" in loop.arg or NO_UNROLL_SUFFIX in loop.arg:
                properties.append("!{!\"llvm.loop.unroll.disable\"}")
            if not properties:
                return ""
            n = len(metadata)
            metadata.extend([f"!{n} = distinct !{{!{n}" + "".join(f", !{n + 1 + i}" for i in range(len(properties)))
                             + "}"] + [f"!{n + 1 + i} = {p}" for i, p in enumerate(properties)])
            return f", !llvm.loop !{n}"

        def address(buf: UOp, index: UOp, mt: str, it: str, idx: str) -> str:
            """A pointer to element `idx` of `buf`. An index `base + k` (k constant: the elements of a register block,
            of an unrolled or upcast axis) is addressed as k elements past a pointer to `base`, so accesses differing
            only in k share one base: LLVM's SLP vectorizer then sees neighbouring elements as neighbours in memory
            (it did not through the sign extension of the 32-bit index once instcombine had turned the `add nsw` into
            an `or disjoint`, and a matmul whose result is added to another tensor ran ~25x slower, scalar). Those
            two GEPs are not `inbounds`: the base alone may point outside the buffer (a padded access)."""
            ptr = fresh("p")
            if index.uop == U.ALU and index.arg == Op.ADD and id(index) in nsw and idx == ref(index):
                base, k = next(((a, b.arg) for a, b in (index.src, index.src[::-1]) if b.uop == U.CONST),
                               (None, 0))
                if base is not None:
                    start = fresh("p")
                    emit(f"{start} = getelementptr {mt}, ptr {ref(buf)}, {it} {ref(base)}")
                    emit(f"{ptr} = getelementptr {mt}, ptr {start}, i64 {int(k)}")
                    return ptr
            emit(f"{ptr} = getelementptr inbounds {mt}, ptr {ref(buf)}, {it} {idx}")
            return ptr

        def call_intrinsic(fn: str, dt: DType, *operands: str) -> str:
            t = LLVM_TYPES[dt]
            suffix = {"half": "f16", "float": "f32", "double": "f64"}.get(t, t)
            declares.add(f"declare {t} @llvm.{fn}.{suffix}({', '.join([t] * len(operands))})")
            r = fresh()
            emit(f"{r} = call {t} @llvm.{fn}.{suffix}("
                 + ", ".join(f"{t} {o}" for o in operands) + ")")
            return r

        for u in uops:
            kind = u.uop
            if kind == U.DEFINE_GLOBAL:
                idx, name, is_output = u.arg
                names[id(u)] = f"%{name}"
                args.append(f"ptr noalias {'' if is_output else 'readonly '}%{name}")
            elif kind == U.DEFINE_VAR:
                names[id(u)] = f"%{u.arg}"
                args.append(f"{ty(u)} %{u.arg}")
            elif kind == U.CONST:
                continue
            elif kind == U.LOOP:
                n = counter[0] = counter[0] + 1
                header, body, latch, exit_ = f"loop{n}", f"body{n}", f"latch{n}", f"exit{n}"
                var, nxt = f"%{u.arg}_{n}", f"%{u.arg}_{n}_next"
                names[id(u)] = var
                t = ty(u)
                emit(f"br label %{header}")
                out.append(f"{header}:")
                out.append(f"  {var} = phi {t} [ {ref(u.src[0])}, %{block[-1]} ], [ {nxt}, %{latch} ]")
                cond = fresh("c")
                emit(f"{cond} = icmp slt {t} {var}, {ref(u.src[1])}")
                emit(f"br i1 {cond}, label %{body}, label %{exit_}")
                out.append(f"{body}:")
                block.append(body)
                loop_info[id(u)] = (header, latch, exit_, nxt)
            elif kind == U.ENDLOOP:
                loop = u.src[0]
                header, latch, exit_, nxt = loop_info[id(loop)]
                emit(f"br label %{latch}")
                out.append(f"{latch}:")
                emit(f"{nxt} = add nsw {ty(loop)} {names[id(loop)]}, 1")
                emit(f"br label %{header}{loop_hint(loop)}")
                out.append(f"{exit_}:")
                block.pop()
                block[-1] = exit_
            elif kind == U.DEFINE_ACC:
                name = fresh("acc")
                allocas.append(f"  {name} = alloca {ty(u)}")
                names[id(u)] = name
                emit(f"store {ty(u)} {llvm_const(u.arg, u.dtype)}, ptr {name}")
            elif kind == U.ACC_READ and id(u) in staged:
                offset, layout = staged[id(u)]
                if layout:   # the epilogue's first read: stage every accumulator it reads, each as its own type
                    for acc, at in layout:
                        value, slot_ptr = fresh(), fresh("p")
                        emit(f"{value} = load {ty(acc)}, ptr {ref(acc)}")
                        emit(f"{slot_ptr} = getelementptr inbounds i8, ptr %stage, i32 {at}")
                        emit(f"store {ty(acc)} {value}, ptr {slot_ptr}")
                    emit('call void asm sideeffect "", "r,~{memory}"(ptr %stage)')
                slot_ptr, r = fresh("p"), fresh()
                emit(f"{slot_ptr} = getelementptr inbounds i8, ptr %stage, i32 {offset}")
                emit(f"{r} = load {ty(u)}, ptr {slot_ptr}")
                names[id(u)] = r
            elif kind == U.ACC_READ:
                r = names[id(u)] = fresh()
                emit(f"{r} = load {ty(u)}, ptr {ref(u.src[0])}")
            elif kind == U.ACC_WRITE:
                acc, value = u.src
                emit(f"store {ty(acc)} {ref(value)}, ptr {ref(acc)}")
            elif kind == U.LOAD:
                buf, index = u.src[0], u.src[1]
                valid = u.src[2] if len(u.src) > 2 else None
                it = ty(index)
                idx = ref(index)
                if valid is not None and u.arg != SAFE_INDEX:   # (codegen.linearizer.SAFE_INDEX: in bounds already)
                    safe = fresh("i")
                    emit(f"{safe} = select i1 {ref(valid)}, {it} {idx}, {it} 0")
                    idx = safe
                mt = mem_type(u.dtype)
                ptr = address(buf, index, mt, it, idx)
                raw = fresh()
                emit(f"{raw} = load {mt}, ptr {ptr}, align {u.dtype.itemsize}")
                value = raw
                if u.dtype == dtypes.bool:
                    value = fresh()
                    emit(f"{value} = icmp ne i8 {raw}, 0")
                if valid is not None:
                    masked = fresh()
                    emit(f"{masked} = select i1 {ref(valid)}, {ty(u)} {value}, {ty(u)} "
                         f"{llvm_const(0, u.dtype)}")
                    value = masked
                names[id(u)] = value
            elif kind == U.STORE:
                buf, index, value = u.src
                dt = buf.dtype
                v = ref(value)
                if dt == dtypes.bool:
                    v8 = fresh()
                    emit(f"{v8} = zext i1 {v} to i8")
                    v = v8
                ptr = address(buf, index, mem_type(dt), ty(index), ref(index))
                emit(f"store {mem_type(dt)} {v}, ptr {ptr}, align {dt.itemsize}")
            elif kind == U.ALU and id(u) in fused:
                continue   # only an accumulation reads it, which multiplies its operands itself (an FMA)
            elif kind == U.ALU and id(u) in accumulations and u.dtype.is_float:
                names[id(u)] = accumulate(u, ref, emit, fresh, declares.add)
            elif kind == U.ALU and id(u) in flushes and u.dtype.is_float:
                r = names[id(u)] = fresh()
                emit(f"{r} = fadd {ty(u)} {ref(u.src[0])}, {ref(u.src[1])}")   # in order: no flags
            elif kind == U.ALU and id(u) in masked_max_terms:
                def ref_opaque(src: UOp) -> str:
                    return f"%neg_inf.{ty(src)}" if src.uop == U.CONST and src.arg == -math.inf else ref(src)
                names[id(u)] = alu(u, ref_opaque, emit, fresh, call_intrinsic, declares.add)
            elif kind == U.ALU:
                names[id(u)] = alu(u, ref, emit, fresh, call_intrinsic, declares.add, id(u) in nsw)
            elif kind == U.CAST:
                names[id(u)] = cast(u.src[0], u.dtype, ref, emit, fresh)
            elif kind == U.BITCAST:
                r = names[id(u)] = fresh()
                emit(f"{r} = bitcast {ty(u.src[0])} {ref(u.src[0])} to {ty(u)}")
            else:
                raise NotImplementedError(f"LLVM renderer: {kind}")
        emit("ret void")
        return allocas + out, declares | set(metadata), args

    @staticmethod
    def _masked_max_terms(uops: list[UOp], accumulations: set[int]) -> set[int]:
        """ids of the selects that pick -inf where a float max reduce is masked (a causal softmax's row max:
        where(mask, x, -inf)). LLVM folds max(acc, select(c, x, -inf)) into select(c, max(acc, x), acc), a conditional
        reduction its loop vectorizer does not vectorize for llvm.maximum: the masked row max ran scalar, 6x slower
        than the plain one. Such a select reads its -inf from a volatile stack slot loaded once per call, which LLVM
        cannot fold. Selects nested in the term's arms count too: the masked row max of a softmax's backward,
        where(m == -inf, 0, where(mask, x, -inf)), was folded the same way and ran 18x slower than the forward's."""
        terms: set[int] = set()
        for u in uops:
            if u.uop == U.ALU and u.arg == Op.MAX and id(u) in accumulations and u.dtype.is_float:
                arms = [u.src[1]]
                while arms:   # the selects along the term's chains of selects
                    term = arms.pop()
                    if term.uop != U.ALU or term.arg != Op.WHERE or id(term) in terms:
                        continue
                    if any(s.uop == U.CONST and s.arg == -math.inf for s in term.src[1:]):
                        terms.add(id(term))
                    arms += term.src[1:]
        return terms

    @staticmethod
    def _fused_products(uops: list[UOp], accumulations: set[int]) -> set[int]:
        """ids of the float products that llvm_ops.accumulate fuses into their accumulation (an FMA) and that nothing
        else reads: not rendered at all. (LLVM removed the dead multiply, but a register block has one per
        accumulator, 256 in a big block: text to write, parse and clean up on every compile.)"""
        uses: dict[int, int] = {}
        for u in uops:
            for src in u.src:
                uses[id(src)] = uses.get(id(src), 0) + 1
        fused = set()
        for u in uops:
            if u.uop == U.ALU and id(u) in accumulations and u.dtype.is_float and u.arg != Op.MAX:
                term = u.src[1]
                if term.uop == U.ALU and term.arg == Op.MUL and term.dtype == u.dtype and uses[id(term)] == 1:
                    fused.add(id(term))
        return fused

    @staticmethod
    def _accumulator_writes(uops: list[UOp]) -> tuple[set[int], set[int]]:
        """ids of the ALU ops whose results are written to an accumulator: (accumulations inside the reduce loops,
        the other writes: a level's partial sum added to the level above, codegen/accumulate.py)."""
        accumulations, flushes = set(), set()
        for u in uops:
            if u.uop == U.ACC_WRITE and u.src[1].uop == U.ALU:
                (accumulations if u.arg == "accumulate" else flushes).add(id(u.src[1]))
        return accumulations, flushes
