"""exp2 and log2 as inline LLVM IR polynomials instead of libm calls, so loops containing them vectorize.

exp2 is within 1 ulp and log2 within 3 ulp of the correctly rounded result (test/test_llvm_math.py)
and keep IEEE special cases: NaN in -> NaN out, exp2(+inf) = inf, exp2(-inf) = 0, log2(0) = -inf,
log2(x < 0) = NaN, log2(+inf) = inf. Denormal inputs and results are handled.

exp2 also evaluates 2**(x * c) for a constant c with the product carried to twice the precision of the type
(`scale`): that is how exp(x) = 2**(x * log2(e)) stays within an ulp or two. A rounded product x * c is off by up
to half an ulp of itself, and 2**(.) turns that absolute error into a relative error of the result: near x = 80
(float32) that was 62 ulp.

No fast-math flags: these are elementwise code, which keeps IEEE semantics (the reduction accumulators of the
renderer are the only place where LLVM may reassociate). Products and sums are fused with an explicit llvm.fma
on CPUs that have one (deterministic, so a value computed twice is computed the same), and otherwise are not.
"""
from __future__ import annotations

import math
import struct
from typing import Callable

import numpy as np

from tinyjit.ops import Op

from codegen.uops import U, UOp

Emit = Callable[[str], None]
Fresh = Callable[[], str]

# constants that Tensor ops scale by before EXP2 (and after LOG2), to more than double precision: the double value
# -> (exact value - double value). exp(x) is exp2(x * (1 / ln 2)); with the tail, float64 exp is accurate too.
CONSTANT_TAILS = {1 / math.log(2): 2.0355273740931033e-17, math.log(2): 2.3190468138462996e-17}


def _hex(v: float, ft: str = "double") -> str:
    """LLVM's float literal: the bits of a double, which must be exactly representable in `ft`."""
    if ft == "float" and math.isfinite(v):
        v = struct.unpack("<f", struct.pack("<f", v))[0]
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", v))[0]


def _round_to(v: float, ft: str) -> float:
    if ft != "float":
        return v
    with np.errstate(over="ignore"):
        return float(np.float32(v))


def scaled_exp2(arg: UOp) -> tuple[UOp, float | None]:
    """EXP2's operand as (x, c) when it is x * c for a constant c (the renderers then evaluate 2**(x * c) with the
    product in twice the precision, see `emit_exp2`), else (operand, None)."""
    if arg.uop == U.ALU and arg.arg == Op.MUL and arg.dtype.is_float:
        a, b = arg.src
        if b.uop == U.CONST:
            return a, float(b.arg)
        if a.uop == U.CONST:
            return b, float(a.arg)
    return arg, None


def _keep_bits(v: float, bits: int) -> float:
    """v with only its leading `bits` significant bits (truncated)."""
    (u,) = struct.unpack("<Q", struct.pack("<d", v))
    return struct.unpack("<d", struct.pack("<Q", u & ~((1 << (53 - bits)) - 1)))[0]


def split_constant(c: float, ft: str) -> tuple[float, float]:
    """(hi, lo), both exactly representable in `ft`, with hi + lo = c to about twice the precision of `ft`: c is a
    Python float, or a key of CONSTANT_TAILS standing for the exact constant."""
    hi = _round_to(c, ft)
    lo = _round_to((c - hi) + CONSTANT_TAILS.get(c, 0.0), ft)
    return hi, lo


# float32 and float64 layouts: (llvm float type, int type, mantissa bits, exponent bias, Taylor degree of 2^f on
# [-0.5, 0.5], odd-power terms of the atanh series for log)
_FORMATS = {
    "float": ("float", "i32", 23, 127, 7, 6),
    "double": ("double", "i64", 52, 1023, 13, 12),
}


def _fma(emit: Emit, fresh: Fresh, declare: Callable[[str], None], ft: str, a: str, b: str, c: str) -> str:
    """a * b + c rounded once (llvm.fma: one instruction on CPUs with FMA)."""
    sfx = "f32" if ft == "float" else "f64"
    declare(f"declare {ft} @llvm.fma.{sfx}({ft}, {ft}, {ft})")
    r = fresh()
    emit(f"{r} = call {ft} @llvm.fma.{sfx}({ft} {a}, {ft} {b}, {ft} {c})")
    return r


def _mul_add(emit: Emit, fresh: Fresh, declare, ft: str, a: str, b: str, c: str, fma: bool) -> str:
    """a * b + c: fused where the CPU has FMA, else a multiply and an add."""
    if fma:
        return _fma(emit, fresh, declare, ft, a, b, c)
    m, r = fresh(), fresh()
    emit(f"{m} = fmul {ft} {a}, {b}")
    emit(f"{r} = fadd {ft} {m}, {c}")
    return r


def _poly(emit: Emit, fresh: Fresh, declare, ft: str, x: str, coefficients: list[float], fma: bool) -> str:
    """Horner evaluation of sum(c[k] * x^k)."""
    acc = _hex(coefficients[-1], ft)
    for c in reversed(coefficients[:-1]):
        acc = _mul_add(emit, fresh, declare, ft, acc, x, _hex(c, ft), fma)
    return acc


def _product_error(emit: Emit, fresh: Fresh, declare, ft: str, x: str, c: float, p: str, fma: bool) -> str:
    """x * c - p exactly, for p = x * c rounded (an error-free product: x * c == p + error)."""
    if fma:
        neg = fresh()
        emit(f"{neg} = fneg {ft} {p}")
        return _fma(emit, fresh, declare, ft, x, _hex(c, ft), neg)
    # Dekker: split x and c into halves whose products are exact, then sum the partial products' errors
    bits = 24 if ft == "float" else 53
    splitter = _hex(2.0 ** ((bits + 1) // 2) + 1)
    t, t_minus_x, x_hi, x_lo = fresh(), fresh(), fresh(), fresh()
    emit(f"{t} = fmul {ft} {x}, {splitter}")
    emit(f"{t_minus_x} = fsub {ft} {t}, {x}")
    emit(f"{x_hi} = fsub {ft} {t}, {t_minus_x}")
    emit(f"{x_lo} = fsub {ft} {x}, {x_hi}")
    c_hi = _keep_bits(c, bits - (bits + 1) // 2)     # as many bits as x_hi, the rest in c_lo (exact)
    c_lo = c - c_hi
    out = []
    for a, b in ((x_hi, c_hi), (x_hi, c_lo), (x_lo, c_hi), (x_lo, c_lo)):
        m = fresh()
        emit(f"{m} = fmul {ft} {a}, {_hex(b, ft)}")
        out.append(m)
    e1, e2, e3, e4 = fresh(), fresh(), fresh(), fresh()
    emit(f"{e1} = fsub {ft} {out[0]}, {p}")
    emit(f"{e2} = fadd {ft} {e1}, {out[1]}")
    emit(f"{e3} = fadd {ft} {e2}, {out[2]}")
    emit(f"{e4} = fadd {ft} {e3}, {out[3]}")
    return e4


def _pow2i(emit: Emit, fresh: Fresh, ft: str, it: str, mant: int, bias: int, n: str) -> str:
    """2**n for an integer n (as float) in the normal exponent range, built from its bits."""
    biased, shifted, out = fresh(), fresh(), fresh()
    emit(f"{biased} = add {it} {n}, {bias}")
    emit(f"{shifted} = shl {it} {biased}, {mant}")
    emit(f"{out} = bitcast {it} {shifted} to {ft}")
    return out


def emit_exp2(emit: Emit, fresh: Fresh, declare: Callable[[str], None], ft: str, x: str, scalef: bool = False,
              scale: float | None = None, fma: bool = True) -> str:
    """exp2(x), or exp2(x * scale) with the product exact to twice the precision of `ft` (module docstring).
    `scalef`: the target scales by powers of two in one vector instruction (AVX-512); `fma`: it has FMA."""
    ft, it, mant, bias, degree, _ = _FORMATS[ft]
    limit = bias + mant + 8.0                       # beyond this the result is 0 or inf anyway
    sfx = "f32" if ft == "float" else "f64"
    for fn in ("minnum", "maxnum", "rint", "fabs"):
        declare(f"declare {ft} @llvm.{fn}.{sfx}({ft}{', ' + ft if fn not in ('rint', 'fabs') else ''})")
    tail = None
    if scale is not None:
        # x * scale = p + tail, p the rounded product; the tail is the product's rounding error plus x times the
        # part of `scale` that `ft` cannot hold
        hi, lo = split_constant(scale, ft)
        p, x_lo, tail = fresh(), fresh(), fresh()
        emit(f"{p} = fmul {ft} {x}, {_hex(hi, ft)}")
        error = _product_error(emit, fresh, declare, ft, x, hi, p, fma)
        emit(f"{x_lo} = fmul {ft} {x}, {_hex(lo, ft)}")
        emit(f"{tail} = fadd {ft} {error}, {x_lo}")
        x = p
    lo_, clamped, n_f, f = fresh(), fresh(), fresh(), fresh()
    emit(f"{lo_} = call {ft} @llvm.maxnum.{sfx}({ft} {x}, {ft} {_hex(-limit)})")
    emit(f"{clamped} = call {ft} @llvm.minnum.{sfx}({ft} {lo_}, {ft} {_hex(limit)})")
    emit(f"{n_f} = call {ft} @llvm.rint.{sfx}({ft} {clamped})")
    emit(f"{f} = fsub {ft} {clamped}, {n_f}")     # exact: f in [-0.5, 0.5]
    if tail is not None:
        # (beyond the clamp, or for NaN and inf, the tail is meaningless and the result does not need it)
        magnitude, in_range, kept, f2 = fresh(), fresh(), fresh(), fresh()
        emit(f"{magnitude} = call {ft} @llvm.fabs.{sfx}({ft} {x})")
        emit(f"{in_range} = fcmp olt {ft} {magnitude}, {_hex(limit)}")
        emit(f"{kept} = select i1 {in_range}, {ft} {tail}, {ft} {_hex(0.0)}")
        emit(f"{f2} = fadd {ft} {f}, {kept}")
        f = f2
    coefficients = [math.log(2) ** k / math.factorial(k) for k in range(degree + 1)]
    p = _poly(emit, fresh, declare, ft, f, coefficients, fma)
    # Where the result rounds to 0 (p * 2**n with n below the smallest denormal's exponent minus one: x = -inf, a
    # masked softmax's entries), scale by 2**0 and select 0 after: a multiply that underflows takes a microcode
    # assist on x86 (exp of -inf ran 27x slower than exp of 0); only true denormal results still pay it.
    is_zero, n_scaled = fresh(), fresh()
    emit(f"{is_zero} = fcmp olt {ft} {n_f}, {_hex(-(bias - 1 + mant) - 1.0)}")
    emit(f"{n_scaled} = select i1 {is_zero}, {ft} {_hex(0.0)}, {ft} {n_f}")
    n_f = n_scaled
    if scalef:
        # p * 2**n by ldexp: one vscalef on AVX-512, right for denormal results and overflow to inf
        n, r2 = fresh(), fresh()
        emit(f"{n} = fptosi {ft} {n_f} to i32")
        declare(f"declare {ft} @llvm.ldexp.{sfx}.i32({ft}, i32)")
        emit(f"{r2} = call {ft} @llvm.ldexp.{sfx}.i32({ft} {p}, i32 {n})")
    else:
        # (elsewhere ldexp is a library call per element) 2**n split in two halves so denormal results and
        # 2**128 (-> inf) come out right
        n, n1, n2, r1, r2 = fresh(), fresh(), fresh(), fresh(), fresh()
        emit(f"{n} = fptosi {ft} {n_f} to {it}")
        emit(f"{n1} = ashr {it} {n}, 1")
        emit(f"{n2} = sub {it} {n}, {n1}")
        s1, s2 = _pow2i(emit, fresh, ft, it, mant, bias, n1), _pow2i(emit, fresh, ft, it, mant, bias, n2)
        emit(f"{r1} = fmul {ft} {p}, {s1}")
        emit(f"{r2} = fmul {ft} {r1}, {s2}")
    is_nan, scaled, out = fresh(), fresh(), fresh()
    emit(f"{scaled} = select i1 {is_zero}, {ft} {_hex(0.0)}, {ft} {r2}")
    emit(f"{is_nan} = fcmp uno {ft} {x}, {x}")
    emit(f"{out} = select i1 {is_nan}, {ft} {x}, {ft} {scaled}")
    return out


def emit_log2(emit: Emit, fresh: Fresh, declare: Callable[[str], None], ft: str, x: str, fma: bool = True) -> str:
    ft, it, mant, bias, _, terms = _FORMATS[ft]
    # denormals: scale up by 2**mant first and subtract mant from the exponent afterwards
    tiny, scaled, xs, bias_adj = fresh(), fresh(), fresh(), fresh()
    emit(f"{tiny} = fcmp olt {ft} {x}, {_hex(2.0 ** (1 - bias))}")
    emit(f"{scaled} = fmul {ft} {x}, {_hex(2.0 ** mant)}")
    emit(f"{xs} = select i1 {tiny}, {ft} {scaled}, {ft} {x}")
    emit(f"{bias_adj} = select i1 {tiny}, {it} {bias + mant}, {it} {bias}")
    bits, exp_bits, e, mbits, mset, m = fresh(), fresh(), fresh(), fresh(), fresh(), fresh()
    emit(f"{bits} = bitcast {ft} {xs} to {it}")
    emit(f"{exp_bits} = lshr {it} {bits}, {mant}")
    emit(f"{e} = sub {it} {exp_bits}, {bias_adj}")
    emit(f"{mbits} = and {it} {bits}, {(1 << mant) - 1}")
    emit(f"{mset} = or {it} {mbits}, {bias << mant}")
    emit(f"{m} = bitcast {it} {mset} to {ft}")       # m in [1, 2)
    # fold m into [sqrt(1/2), sqrt(2)) so the series below converges fast
    big, m_half, m2, e_inc, e2 = fresh(), fresh(), fresh(), fresh(), fresh()
    emit(f"{big} = fcmp ogt {ft} {m}, {_hex(math.sqrt(2.0), ft)}")
    emit(f"{m_half} = fmul {ft} {m}, {_hex(0.5)}")
    emit(f"{m2} = select i1 {big}, {ft} {m_half}, {ft} {m}")
    emit(f"{e_inc} = add {it} {e}, 1")
    emit(f"{e2} = select i1 {big}, {it} {e_inc}, {it} {e}")
    # ln(m) = 2 * atanh(t), t = (m - 1) / (m + 1): 2 * (t + t^3/3 + t^5/5 + ...)
    num, den, t, t2 = fresh(), fresh(), fresh(), fresh()
    emit(f"{num} = fsub {ft} {m2}, {_hex(1.0)}")
    emit(f"{den} = fadd {ft} {m2}, {_hex(1.0)}")
    emit(f"{t} = fdiv {ft} {num}, {den}")
    emit(f"{t2} = fmul {ft} {t}, {t}")
    series = _poly(emit, fresh, declare, ft, t2, [2.0 / (2 * k + 1) / math.log(2) for k in range(terms)], fma)
    log_m, e_f, result = fresh(), fresh(), fresh()
    emit(f"{log_m} = fmul {ft} {t}, {series}")
    emit(f"{e_f} = sitofp {it} {e2} to {ft}")
    emit(f"{result} = fadd {ft} {e_f}, {log_m}")
    # special cases: x == 0 -> -inf, x < 0 or NaN -> NaN, x == inf -> inf
    is_zero, is_neg, is_inf, r1, r2, r3 = fresh(), fresh(), fresh(), fresh(), fresh(), fresh()
    emit(f"{is_zero} = fcmp oeq {ft} {x}, {_hex(0.0)}")
    emit(f"{is_neg} = fcmp ult {ft} {x}, {_hex(0.0)}")
    emit(f"{is_inf} = fcmp oeq {ft} {x}, {_hex(math.inf)}")
    emit(f"{r1} = select i1 {is_zero}, {ft} {_hex(-math.inf)}, {ft} {result}")
    emit(f"{r2} = select i1 {is_inf}, {ft} {x}, {ft} {r1}")
    emit(f"{r3} = select i1 {is_neg}, {ft} {_hex(math.nan)}, {ft} {r2}")
    return r3
