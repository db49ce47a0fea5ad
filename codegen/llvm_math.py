"""exp2 and log2 as inline LLVM IR polynomials instead of libm calls, so loops containing them vectorize.

exp2 is within 1 ulp and log2 within 3 ulp of the correctly rounded result (test/test_llvm_math.py)
and keep IEEE special cases: NaN in -> NaN out, exp2(+inf) = inf, exp2(-inf) = 0, log2(0) = -inf,
log2(x < 0) = NaN, log2(+inf) = inf. Denormal inputs and results are handled.
"""
from __future__ import annotations

import math
import struct
from typing import Callable

Emit = Callable[[str], None]
Fresh = Callable[[], str]


def _hex(v: float, ft: str = "double") -> str:
    """LLVM's float literal: the bits of a double, which must be exactly representable in `ft`."""
    if ft == "float" and math.isfinite(v):
        v = struct.unpack("<f", struct.pack("<f", v))[0]
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", v))[0]


# float32 and float64 layouts: (llvm float type, int type, mantissa bits, exponent bias, Taylor degree of 2^f on
# [-0.5, 0.5], odd-power terms of the atanh series for log)
_FORMATS = {
    "float": ("float", "i32", 23, 127, 7, 6),
    "double": ("double", "i64", 52, 1023, 13, 12),
}


def _poly(emit: Emit, fresh: Fresh, ft: str, x: str, coefficients: list[float], flags: str) -> str:
    """Horner evaluation of sum(c[k] * x^k)."""
    acc = _hex(coefficients[-1], ft)
    for c in reversed(coefficients[:-1]):
        m, a = fresh(), fresh()
        emit(f"{m} = fmul {flags} {ft} {acc}, {x}")
        emit(f"{a} = fadd {flags} {ft} {m}, {_hex(c, ft)}")
        acc = a
    return acc


def _pow2i(emit: Emit, fresh: Fresh, ft: str, it: str, mant: int, bias: int, n: str) -> str:
    """2**n for an integer n (as float) in the normal exponent range, built from its bits."""
    biased, shifted, out = fresh(), fresh(), fresh()
    emit(f"{biased} = add {it} {n}, {bias}")
    emit(f"{shifted} = shl {it} {biased}, {mant}")
    emit(f"{out} = bitcast {it} {shifted} to {ft}")
    return out


def emit_exp2(emit: Emit, fresh: Fresh, declare: Callable[[str], None], ft: str, x: str, flags: str,
              scalef: bool = False) -> str:
    """exp2(x); `scalef`: the target scales by powers of two in one vector instruction (AVX-512)."""
    ft, it, mant, bias, degree, _ = _FORMATS[ft]
    limit = bias + mant + 8.0                       # beyond this the result is 0 or inf anyway
    sfx = "f32" if ft == "float" else "f64"
    for fn in ("minnum", "maxnum", "rint"):
        declare(f"declare {ft} @llvm.{fn}.{sfx}({ft}{', ' + ft if fn != 'rint' else ''})")
    lo, clamped, n_f, f = fresh(), fresh(), fresh(), fresh()
    emit(f"{lo} = call {ft} @llvm.maxnum.{sfx}({ft} {x}, {ft} {_hex(-limit)})")
    emit(f"{clamped} = call {ft} @llvm.minnum.{sfx}({ft} {lo}, {ft} {_hex(limit)})")
    emit(f"{n_f} = call {ft} @llvm.rint.{sfx}({ft} {clamped})")
    emit(f"{f} = fsub {ft} {clamped}, {n_f}")     # f in [-0.5, 0.5]
    coefficients = [math.log(2) ** k / math.factorial(k) for k in range(degree + 1)]
    p = _poly(emit, fresh, ft, f, coefficients, flags)
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
    is_nan, out = fresh(), fresh()
    emit(f"{is_nan} = fcmp uno {ft} {x}, {x}")
    emit(f"{out} = select i1 {is_nan}, {ft} {x}, {ft} {r2}")
    return out


def emit_log2(emit: Emit, fresh: Fresh, declare: Callable[[str], None], ft: str, x: str, flags: str) -> str:
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
    series = _poly(emit, fresh, ft, t2, [2.0 / (2 * k + 1) / math.log(2) for k in range(terms)], flags)
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
