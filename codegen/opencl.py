"""OpenCL C spellings for the shared C-style renderer (`codegen/cstyle.py`)."""
from __future__ import annotations

from tinyjit.dtype import dtypes

from codegen.cstyle import MATH_FUNCTIONS, CStyleLanguage

# half without cl_khr_fp16 (PoCL on the CPU has none): half data is read and written with vload_half and
# vstore_half, and the rounding of float results to half and the bit casts are integer arithmetic on the float
# bits. (Converting through a private `half*` to a local variable gave nondeterministic results on PoCL when
# the kernel has barriers.)
_HALF_HELPERS = """float tj_round_half(float x) {
  float a = fabs(x);
  if (!(a < 65520.0f)) return a != a ? x : copysign(INFINITY, x);            /* NaN; too large: inf */
  if (a < 6.103515625e-05f) return copysign((a + 0.5f) - 0.5f, x);          /* subnormal: multiple of 2^-24 */
  uint u = as_uint(a);
  return copysign(as_float((u + 0x0FFFu + ((u >> 13) & 1u)) & 0xFFFFE000u), x);   /* 10 bits, ties to even */
}
float tj_half_bits(ushort b) {
  uint e = (b >> 10) & 0x1Fu, m = b & 0x3FFu;
  float a = e == 0 ? (float)m * 5.9604644775390625e-08f
          : e == 31 ? (m ? NAN : INFINITY) : as_float(((e + 112u) << 23) | (m << 13));
  return (b & 0x8000u) ? -a : a;
}
ushort tj_half_to_bits(float x) {
  float a = fabs(tj_round_half(x));
  uint s = (as_uint(x) >> 16) & 0x8000u;
  if (a != a) return (ushort)(s | 0x7E00u);
  if (a > 65504.0f) return (ushort)(s | 0x7C00u);
  if (a < 6.103515625e-05f) return (ushort)(s | (uint)(a * 16777216.0f));
  return (ushort)(s | (((as_uint(a) >> 23) - 112u) << 10) | ((as_uint(a) >> 13) & 0x3FFu));
}"""
_HALF_FROM_DOUBLE = """float tj_double_to_half(double x) {
  double a = fabs(x);
  if (!(a < 65520.0)) return a != a ? (float)x : copysign(INFINITY, (float)x);
  if (a < 6.103515625e-05) return (float)copysign((a + 268435456.0) - 268435456.0, x);   /* 2^28: 2^-24 steps */
  ulong u = as_ulong(a);
  return (float)copysign(as_double((u + 0x1FFFFFFFFFFUL + ((u >> 42) & 1UL)) & 0xFFFFFC0000000000UL), x);
}"""


class OpenCLRenderer(CStyleLanguage):
    device = "CL"
    kernel_prefix = "__kernel __attribute__((reqd_work_group_size({local_size}))) void "
    buffer_prefix = "__global "
    smem_prefix = "__local "
    barrier = "barrier(CLK_LOCAL_MEM_FENCE);"
    ids = {"group": "get_group_id({dim})", "lid": "get_local_id({dim})", "gid": "get_global_id({dim})"}
    id_dims = "012"
    types = {dtypes.bool: "bool", dtypes.int8: "char", dtypes.int16: "short", dtypes.int32: "int",
             dtypes.int64: "long", dtypes.uint8: "uchar", dtypes.uint16: "ushort", dtypes.uint32: "uint",
             dtypes.uint64: "ulong", dtypes.float16: "half", dtypes.float32: "float", dtypes.float64: "double"}
    # the builtins are overloaded on float and double
    float_math = {(name, dt): name for name in MATH_FUNCTIONS for dt in (dtypes.float32, dtypes.float64)}
    int_suffix = {dtypes.int64: "L", dtypes.uint32: "u", dtypes.uint64: "UL"}
    infinity, nan = "INFINITY", "NAN"
    double_infinity, double_nan = "((double)INFINITY)", "((double)NAN)"
    half_load = "vload_half({idx}, {buf})"
    half_store = "vstore_half_rte({value}, {idx}, {buf});"
    half_round = "tj_round_half({value})"
    half_from_double = "tj_double_to_half({value})"
    half_from_bits = "tj_half_bits({value})"
    half_to_bits = "tj_half_to_bits({value})"
    bitcast = "as_{name}({value})"
    vector_load = "vload4(0, {buf} + {idx})"
    vector_needs_alignment = False   # vload4 needs only the alignment of one element

    def prelude(self, uops) -> list[str]:
        # no contraction of a * b + c into one rounding: a value must come out the same in every kernel computing it
        lines = ["#pragma OPENCL FP_CONTRACT OFF"]
        if self.uses(uops, dtypes.float64):
            lines.append("#pragma OPENCL EXTENSION cl_khr_fp64 : enable")
        if self.uses(uops, dtypes.float16):
            lines.append(_HALF_HELPERS)
            if any(u.dtype == dtypes.float64 for u in uops):
                lines.append(_HALF_FROM_DOUBLE)
        return lines + super().prelude(uops)
