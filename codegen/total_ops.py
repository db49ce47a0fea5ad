"""What the ops that LLVM and C leave undefined for some inputs compute here (shared by both renderers).

Integer division and remainder by 0 and MIN / -1 trap on x86 (SIGFPE kills the process), shifts by the bit
width or more are poison in LLVM and undefined in C, and so is a float -> int conversion of NaN, +-inf or a value
out of range. A padded area computes the inlined expression with every load and constant masked to 0 before the
result is thrown away, so such an op can meet those inputs even where the user's values are fine: the renderers
make every one of them total, with the results documented in tinyjit/ops.py.
"""
from __future__ import annotations

import math

import numpy as np

from tinyjit.dtype import DType, dtypes


def float_to_int_bounds(frm: DType, to: DType) -> tuple[DType, float, bool, float]:
    """How a float -> int CAST is made total: (the int type converted to first, the lower bound, whether it is
    inclusive, the exclusive upper bound), as values of `frm`. Between the bounds the conversion truncates toward
    zero; NaN, +-inf and values outside give the "integer indefinite" bits 100...0 of that int type (the minimum
    of a signed type), which x86 conversions produce and so PyTorch and NumPy show. A type narrower than 32 bits
    converts through int32 and uint32 through int64 (then the value wraps to the narrow type)."""
    via = dtypes.int32 if to.bits < 32 else dtypes.int64 if to == dtypes.uint32 else to
    with np.errstate(over="ignore"):   # a bound beyond the range of half is +-inf there
        if via.is_unsigned:
            return via, -1.0, False, float(np.array(2.0 ** via.bits, dtype=frm.np))
        # (-2**(b-1) - 1, -2**(b-1)) truncates to the minimum, the same bits as the fallback: >= -2**(b-1) will do
        lo = float(np.array(-(2.0 ** (via.bits - 1)), dtype=frm.np))
        return via, lo, math.isfinite(lo), float(np.array(2.0 ** (via.bits - 1), dtype=frm.np))
