"""OpenCL C spellings for the shared C-style renderer (`codegen/cstyle.py`)."""
from __future__ import annotations

from tinyjit.dtype import dtypes

from codegen.cstyle import MATH_OPS, CStyleLanguage

# half without cl_khr_fp16: a `half*` may still point at half data, and vload_half/vstore_half convert
_HALF_HELPERS = """float tj_half_bits(ushort b) { return vload_half(0, (const __private half*)&b); }
ushort tj_half_to_bits(float x) { ushort b; vstore_half_rte(x, 0, (__private half*)&b); return b; }
float tj_round_half(float x) { return tj_half_bits(tj_half_to_bits(x)); }"""
_HALF_FROM_DOUBLE = """float tj_double_to_half(double x) {
  ushort b; vstore_half_rte(x, 0, (__private half*)&b); return tj_half_bits(b);
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
    float_math = {(op, dt): op.name.lower() for op in MATH_OPS for dt in (dtypes.float32, dtypes.float64)}
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
        lines = []
        if self.uses(uops, dtypes.float64):
            lines.append("#pragma OPENCL EXTENSION cl_khr_fp64 : enable")
        if self.uses(uops, dtypes.float16):
            lines.append(_HALF_HELPERS)
            if any(u.dtype == dtypes.float64 for u in uops):
                lines.append(_HALF_FROM_DOUBLE)
        return lines
