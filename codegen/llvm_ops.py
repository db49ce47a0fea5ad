"""LLVM IR for one scalar operation of a kernel: the types and constants, the elementwise ALU ops (IEEE semantics,
no fast-math flags), the float accumulation of a reduce (the only reassociated math), casts, and the total versions
of the ops that trap or are poison in LLVM for some inputs. Each function emits through the renderer's callbacks
(`emit` a line, `fresh` a name, `ref` an operand's name, `declare` an intrinsic) and returns the result's name.
The CPU the IR is built for (its vector width, registers and FMA) is asked here too. Used by codegen/llvmir.py."""
from __future__ import annotations

import functools
import math
import struct

import numpy as np

from tinyjit.dtype import DType, dtypes
from tinyjit.ops import Op

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
# the product it adds (a matmul's multiply-add is one llvm.fmuladd: accumulate).
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


# ---- one operation ----

def accumulate(u: UOp, ref, emit, fresh, declare) -> str:
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

def alu(u: UOp, ref, emit, fresh, call_intrinsic, declare, nsw: bool = False) -> str:
    """One elementwise ALU op: no fast-math flags (IEEE semantics; accumulations are accumulate's)."""
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

def cast(src: UOp, to: DType, ref, emit, fresh) -> str:
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
