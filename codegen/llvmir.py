"""Render the linear loop program as LLVM IR text (for the CPU backend, compiled by llvmlite)."""
from __future__ import annotations

import functools
import hashlib
import math
import struct

import numpy as np

from tinyjit.dtype import DType, dtypes
from tinyjit.ops import Op

from codegen.linearizer import NO_UNROLL_SUFFIX, NO_VECTORIZE_SUFFIX, SAFE_INDEX
from codegen.llvm_math import emit_exp2, emit_log2, scaled_exp2
from codegen.total_ops import float_to_int_bounds
from codegen.uops import U, UOp

LLVM_TYPES = {dtypes.bool: "i1", dtypes.int8: "i8", dtypes.int16: "i16", dtypes.int32: "i32", dtypes.int64: "i64",
              dtypes.uint8: "i8", dtypes.uint16: "i16", dtypes.uint32: "i32", dtypes.uint64: "i64",
              dtypes.float16: "half", dtypes.float32: "float", dtypes.float64: "double"}
# Fast-math flags. Elementwise float code carries none: it keeps IEEE semantics, so a stable formula is not folded
# back into the unstable one ((x - m) - lse into x - (m + lse)), NaN stays NaN, and a value computed in two
# kernels is computed identically (no contraction into an FMA in one and not the other). Only the accumulation of
# a reduce may be reassociated (so the loop vectorizer can keep partial sums in vector lanes) and contracted with
# the product it adds (a matmul's multiply-add is one llvm.fmuladd: LLVMRenderer._accumulate).
ACCUMULATE_FLAGS = "reassoc nsz contract"
# SIN's argument: quarter turns k, the op computes sin(x + k*pi/2) (ops.py); k = 1 is cos
SIN_PHASES = {0: ("sin", False), 1: ("cos", False), 2: ("sin", True), 3: ("cos", True)}   # (intrinsic, negate)


@functools.lru_cache(maxsize=None)
def host_vector_bits() -> int:
    """The widest vector registers of this CPU (512 with AVX-512, 256 with AVX, else 128)."""
    try:
        import llvmlite.binding as llvm
        features = llvm.get_host_cpu_features()
    except Exception:   # no llvmlite or an unknown host: assume AVX2-class hardware
        return 256
    return 512 if features.get("avx512f") else 256 if features.get("avx") else 128


@functools.lru_cache(maxsize=None)
def host_vector_registers() -> int:
    """How many vector registers this CPU has: 32 with AVX-512 (zmm0-31) and on AArch64 (v0-31), 16 on other
    x86-64 (xmm/ymm0-15) and other hosts."""
    try:
        import llvmlite.binding as llvm
        triple, features = llvm.get_process_triple(), llvm.get_host_cpu_features()
    except Exception:   # no llvmlite or an unknown host: assume AVX2-class hardware
        return 16
    if features.get("avx512f") or triple.startswith(("aarch64", "arm64")):
        return 32
    return 16


@functools.lru_cache(maxsize=None)
def host_has_fma() -> bool:
    """Whether this CPU has fused multiply-add (llvm.fma is then one instruction, else a library call)."""
    try:
        import llvmlite.binding as llvm
        return bool(llvm.get_host_cpu_features().get("fma"))
    except Exception:
        return False


def mem_type(dt: DType) -> str:
    return "i8" if dt == dtypes.bool else LLVM_TYPES[dt]


def llvm_const(value, dt: DType) -> str:
    if dt == dtypes.bool:
        return "true" if value else "false"
    if dt.is_int:
        return str(int(np.array(value).astype(dt.np)) if not isinstance(value, bool) else int(value))
    # LLVM wants float constants as the hex bits of the (exactly representable) double
    v = float(np.array(value, dtype=dt.np))
    if math.isnan(v):
        v = float("nan")
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", v))[0]


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
        out: list[str] = []
        allocas: list[str] = []
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
            elif kind == U.ALU and id(u) in accumulations and u.dtype.is_float:
                names[id(u)] = self._accumulate(u, ref, emit, fresh, declares.add)
            elif kind == U.ALU and id(u) in flushes and u.dtype.is_float:
                r = names[id(u)] = fresh()
                emit(f"{r} = fadd {ty(u)} {ref(u.src[0])}, {ref(u.src[1])}")   # in order: no flags
            elif kind == U.ALU:
                names[id(u)] = self._alu(u, ref, emit, fresh, call_intrinsic, declares.add, id(u) in nsw)
            elif kind == U.CAST:
                names[id(u)] = self._cast(u.src[0], u.dtype, ref, emit, fresh)
            elif kind == U.BITCAST:
                r = names[id(u)] = fresh()
                emit(f"{r} = bitcast {ty(u.src[0])} {ref(u.src[0])} to {ty(u)}")
            else:
                raise NotImplementedError(f"LLVM renderer: {kind}")
        emit("ret void")
        return allocas + out, declares | set(metadata), args

    @staticmethod
    def _accumulator_writes(uops: list[UOp]) -> tuple[set[int], set[int]]:
        """ids of the ALU ops whose results are written to an accumulator: (accumulations inside the reduce loops,
        the other writes: a level's partial sum added to the level above, codegen/accumulate.py)."""
        accumulations, flushes = set(), set()
        for u in uops:
            if u.uop == U.ACC_WRITE and u.src[1].uop == U.ALU:
                (accumulations if u.arg == "accumulate" else flushes).add(id(u.src[1]))
        return accumulations, flushes

    @staticmethod
    def _accumulate(u: UOp, ref, emit, fresh, declare) -> str:
        """acc + term (or max(acc, term)) of a float reduce. The additions into one accumulator may be reordered
        among themselves (ACCUMULATE_FLAGS), so LLVM vectorizes the loop into partial sums (a level of at most a few
        hundred
        terms: the order of the levels themselves is kept); a product term is fused into the accumulation (FMA).
        These flags belong to the accumulation alone, not to the elementwise math around it."""
        acc, term = u.src
        t = LLVM_TYPES[u.dtype]
        suffix = {"half": "f16", "float": "f32", "double": "f64"}[t]
        r = fresh()
        if u.arg == Op.MAX:
            declare(f"declare {t} @llvm.maximum.{suffix}({t}, {t})")
            emit(f"{r} = call reassoc {t} @llvm.maximum.{suffix}({t} {ref(acc)}, {t} {ref(term)})")
        elif term.uop == U.ALU and term.arg == Op.MUL and term.dtype == u.dtype:
            declare(f"declare {t} @llvm.fmuladd.{suffix}({t}, {t}, {t})")
            emit(f"{r} = call {ACCUMULATE_FLAGS} {t} @llvm.fmuladd.{suffix}({t} {ref(term.src[0])}, "
                 f"{t} {ref(term.src[1])}, "
                 f"{t} {ref(acc)})")
        else:
            emit(f"{r} = fadd {ACCUMULATE_FLAGS} {t} {ref(acc)}, {ref(term)}")
        return r

    @staticmethod
    def _alu(u: UOp, ref, emit, fresh, call_intrinsic, declare, nsw: bool = False) -> str:
        """One elementwise ALU op: no fast-math flags (IEEE semantics; accumulations are _accumulate's)."""
        op = u.arg
        src_dt = u.src[0].dtype if op != Op.WHERE else u.src[1].dtype
        t = LLVM_TYPES[src_dt]
        a = [ref(s) for s in u.src]
        is_float, signed = src_dt.is_float, src_dt.kind == "i"
        r = fresh()
        if op == Op.WHERE:
            emit(f"{r} = select i1 {a[0]}, {t} {a[1]}, {t} {a[2]}")
        elif op == Op.NEG:
            if is_float:
                emit(f"{r} = fneg {t} {a[0]}")
            elif src_dt == dtypes.bool:
                emit(f"{r} = xor i1 {a[0]}, true")
            else:
                emit(f"{r} = sub {t} 0, {a[0]}")
        elif op in (Op.EXP2, Op.LOG2, Op.SIN, Op.SQRT):
            # half math is computed in float and rounded once
            ct = "float" if src_dt == dtypes.float16 else t
            compute_dt = dtypes.float32 if src_dt == dtypes.float16 else src_dt

            def widen(operand: UOp) -> str:
                if operand.dtype != dtypes.float16:
                    return ref(operand)
                wide = fresh()
                emit(f"{wide} = fpext half {ref(operand)} to float")
                return wide
            if op == Op.EXP2:
                # inline polynomial instead of a libm call: loops with exp then vectorize. exp2(x * c) with a
                # constant c (how exp is composed) gets the product to twice the precision (codegen/llvm_math.py)
                x, scale = scaled_exp2(u.src[0])
                res = emit_exp2(emit, fresh, declare, ct, widen(x), host_vector_bits() == 512, scale, host_has_fma())
            elif op == Op.LOG2:
                res = emit_log2(emit, fresh, declare, ct, widen(u.src[0]), host_has_fma())
            elif op == Op.SIN:
                fn, negate = SIN_PHASES[int(u.src[1].arg) % 4 if len(u.src) > 1 else 0]
                res = call_intrinsic(fn, compute_dt, widen(u.src[0]))
                if negate:
                    res, negated = fresh(), res
                    emit(f"{res} = fneg {ct} {negated}")
            else:
                res = call_intrinsic("sqrt", compute_dt, widen(u.src[0]))
            if src_dt != dtypes.float16:
                return res
            emit(f"{r} = fptrunc float {res} to half")
        elif op == Op.RECIP:
            emit(f"{r} = fdiv {t} {llvm_const(1.0, src_dt)}, {a[0]}")
        elif op == Op.ADD:
            emit(f"{r} = fadd {t} {a[0]}, {a[1]}" if is_float else
                 f"{r} = {'or' if src_dt == dtypes.bool else 'add nsw' if nsw else 'add'} {t} {a[0]}, {a[1]}")
        elif op == Op.MUL:
            emit(f"{r} = fmul {t} {a[0]}, {a[1]}" if is_float else
                 f"{r} = {'and' if src_dt == dtypes.bool else 'mul nsw' if nsw else 'mul'} {t} {a[0]}, {a[1]}")
        elif op == Op.MAX:
            if src_dt == dtypes.bool:
                emit(f"{r} = or i1 {a[0]}, {a[1]}")
            else:
                return call_intrinsic("maximum" if is_float else "smax" if signed else "umax", src_dt, *a)
        elif op == Op.CMPLT:
            emit(f"{r} = fcmp olt {t} {a[0]}, {a[1]}" if is_float else
                 f"{r} = icmp {'slt' if signed else 'ult'} {t} {a[0]}, {a[1]}")
        elif op == Op.CMPNE:
            emit(f"{r} = fcmp une {t} {a[0]}, {a[1]}" if is_float else f"{r} = icmp ne {t} {a[0]}, {a[1]}")
        elif op == Op.IDIV and is_float:   # true division (IEEE, correctly rounded)
            emit(f"{r} = fdiv {t} {a[0]}, {a[1]}")
        elif op == Op.MOD and is_float:    # C's fmod: exact, the sign of the dividend
            emit(f"{r} = frem {t} {a[0]}, {a[1]}")
        elif op in (Op.IDIV, Op.MOD):
            return _total_division(op, src_dt, u.src[1], a[0], a[1], emit, fresh)
        elif op in (Op.SHL, Op.SHR) and src_dt != dtypes.bool:
            return _total_shift(op, src_dt, u.src[1], a[0], a[1], emit, fresh)
        elif op in (Op.AND, Op.OR, Op.XOR, Op.SHL):
            emit(f"{r} = {op.name.lower()} {t} {a[0]}, {a[1]}")
        elif op == Op.SHR:
            emit(f"{r} = lshr {t} {a[0]}, {a[1]}")
        else:
            raise NotImplementedError(f"LLVM renderer: ALU {op}")
        return r

    @staticmethod
    def _cast(src: UOp, to: DType, ref, emit, fresh) -> str:
        frm, v = src.dtype, ref(src)
        ft, tt = LLVM_TYPES[frm], LLVM_TYPES[to]
        if frm == to:
            return v
        r = fresh()
        if to == dtypes.bool:
            emit(f"{r} = fcmp une {ft} {v}, {llvm_const(0.0, frm)}" if frm.is_float else f"{r} = icmp ne {ft} {v}, 0")
        elif frm.is_float and to.is_float:
            emit(f"{r} = {'fpext' if to.itemsize > frm.itemsize else 'fptrunc'} {ft} {v} to {tt}")
        elif frm.is_float:
            return _float_to_int(frm, to, v, emit, fresh)
        elif to.is_float:
            emit(f"{r} = {'sitofp' if frm.kind == 'i' else 'uitofp'} {ft} {v} to {tt}")
        elif to.itemsize == frm.itemsize and frm != dtypes.bool:
            return v
        elif to.bits < frm.bits:
            emit(f"{r} = trunc {ft} {v} to {tt}")
        else:
            emit(f"{r} = {'sext' if frm.kind == 'i' else 'zext'} {ft} {v} to {tt}")
        return r


# ---- ops that trap or are poison in LLVM for some inputs, made total (codegen/total_ops.py; results: ops.py) ----

def _const_operand(u: UOp):
    return u.arg if u.uop == U.CONST else None


def _total_division(op: Op, dt: DType, divisor: UOp, a: str, b: str, emit, fresh) -> str:
    """IDIV/MOD that never trap: x / 0 = x % 0 = 0, MIN / -1 = MIN (wraps), MIN % -1 = 0. A constant divisor
    other than 0 (and -1 when signed) needs no guard: index math and division by a literal stay one instruction."""
    t, signed = LLVM_TYPES[dt], dt.kind == "i"
    instruction = ("sdiv" if signed else "udiv") if op == Op.IDIV else ("srem" if signed else "urem")
    c = _const_operand(divisor)
    r = fresh()
    if c is not None:   # known divisor: no test
        if int(c) == 0 or (signed and int(c) == -1 and op == Op.MOD):
            emit(f"{r} = add {t} 0, 0")
        elif signed and int(c) == -1:
            emit(f"{r} = sub {t} 0, {a}")
        else:
            emit(f"{r} = {instruction} {t} {a}, {b}")
        return r
    by_zero, bad, safe = fresh(), fresh(), fresh()
    emit(f"{by_zero} = icmp eq {t} {b}, 0")
    if signed:   # x / -1 is -x (computed below); x % -1 and x % 1 are both 0
        by_minus_one = fresh()
        emit(f"{by_minus_one} = icmp eq {t} {b}, -1")
        emit(f"{bad} = or i1 {by_zero}, {by_minus_one}")
    else:
        bad = by_zero
    emit(f"{safe} = select i1 {bad}, {t} 1, {t} {b}")
    emit(f"{r} = {instruction} {t} {a}, {safe}")
    if op == Op.MOD:
        return r
    if signed:
        negated, r2 = fresh(), fresh()
        emit(f"{negated} = sub {t} 0, {a}")   # wraps for MIN, like the hardware would without the trap
        emit(f"{r2} = select i1 {by_minus_one}, {t} {negated}, {t} {r}")
        r = r2
    out = fresh()
    emit(f"{out} = select i1 {by_zero}, {t} 0, {t} {r}")
    return out


def _total_shift(op: Op, dt: DType, amount: UOp, a: str, b: str, emit, fresh) -> str:
    """SHL/SHR by any amount (PyTorch's results): an amount >= the bit width, or negative, shifts every bit out
    (0, or the sign for an arithmetic right shift); LLVM makes such a shift poison."""
    t, bits, signed = LLVM_TYPES[dt], dt.bits, dt.kind == "i"
    instruction = "shl" if op == Op.SHL else "ashr" if signed else "lshr"
    c = _const_operand(amount)
    r = fresh()
    if c is not None:   # known amount: no test
        if 0 <= int(c) < bits:
            emit(f"{r} = {instruction} {t} {a}, {b}")
        elif instruction == "ashr":
            emit(f"{r} = ashr {t} {a}, {bits - 1}")
        else:
            emit(f"{r} = add {t} 0, 0")
        return r
    too_far = fresh()
    emit(f"{too_far} = icmp uge {t} {b}, {bits}")   # unsigned: a negative amount is too far as well
    if instruction == "ashr":   # shifting by bits - 1 leaves only copies of the sign bit
        clamped = fresh()
        emit(f"{clamped} = select i1 {too_far}, {t} {bits - 1}, {t} {b}")
        emit(f"{r} = ashr {t} {a}, {clamped}")
        return r
    out = fresh()
    emit(f"{r} = {instruction} {t} {a}, {b}")
    emit(f"{out} = select i1 {too_far}, {t} 0, {t} {r}")
    return out


def _float_to_int(frm: DType, to: DType, v: str, emit, fresh) -> str:
    """fptosi/fptoui where defined, else the bits 100...0 (`float_to_int_bounds`)."""
    via, lo, inclusive, hi = float_to_int_bounds(frm, to)
    ft, vt = LLVM_TYPES[frm], LLVM_TYPES[via]
    above, below, inside, converted, r = fresh(), fresh(), fresh(), fresh(), fresh()
    emit(f"{above} = fcmp {'oge' if inclusive else 'ogt'} {ft} {v}, {llvm_const(lo, frm)}")
    emit(f"{below} = fcmp olt {ft} {v}, {llvm_const(hi, frm)}")   # ordered compares: NaN is outside
    emit(f"{inside} = and i1 {above}, {below}")
    emit(f"{converted} = {'fptoui' if via.is_unsigned else 'fptosi'} {ft} {v} to {vt}")
    emit(f"{r} = select i1 {inside}, {vt} {converted}, {vt} {-(1 << (via.bits - 1))}")   # bits 100...0
    if via == to:
        return r
    out = fresh()
    emit(f"{out} = trunc {vt} {r} to {LLVM_TYPES[to]}")
    return out
