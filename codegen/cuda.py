"""CUDA C++ spellings for the shared C-style renderer (`codegen/cstyle.py`), compiled by NVRTC."""
from __future__ import annotations

from tinyjit.dtype import dtypes

from codegen.cstyle import MATH_FUNCTIONS, CStyleLanguage

# bit casts through a union: defined behaviour in CUDA C++ (and in g++, which the CPU emulation uses)
_BITCAST = """template <class T, class F> __device__ __forceinline__ T tj_bitcast(F x) {
  union { F from; T to; } u; u.from = x; return u.to;
}"""


class CUDARenderer(CStyleLanguage):
    device = "CUDA"
    kernel_prefix = 'extern "C" __global__ void __launch_bounds__({threads}) '
    buffer_restrict = "__restrict__ "
    smem_prefix = "__shared__ "
    barrier = "__syncthreads();"
    ids = {"group": "blockIdx.{dim}", "lid": "threadIdx.{dim}",
           "gid": "(blockIdx.{dim}*blockDim.{dim}+threadIdx.{dim})"}
    id_dims = "xyz"
    types = {dtypes.bool: "bool", dtypes.int8: "signed char", dtypes.int16: "short", dtypes.int32: "int",
             dtypes.int64: "long long", dtypes.uint8: "unsigned char", dtypes.uint16: "unsigned short",
             dtypes.uint32: "unsigned int", dtypes.uint64: "unsigned long long", dtypes.float16: "half",
             dtypes.float32: "float", dtypes.float64: "double"}
    float_math = {**{(name, dtypes.float32): name + "f" for name in MATH_FUNCTIONS},
                  **{(name, dtypes.float64): name for name in MATH_FUNCTIONS}}
    function_prefix = "__device__ "
    int_suffix = {dtypes.int64: "LL", dtypes.uint32: "u", dtypes.uint64: "ull"}
    # NVRTC has no math.h macros: spell the special values by their bits
    infinity, nan = "__int_as_float(0x7f800000)", "__int_as_float(0x7fc00000)"
    double_infinity = "__longlong_as_double(0x7ff0000000000000LL)"
    double_nan = "__longlong_as_double(0x7ff8000000000000LL)"
    half_load = "__half2float({buf}[{idx}])"
    half_store = "{buf}[{idx}] = __float2half_rn({value});"
    half_round = "__half2float(__float2half_rn({value}))"
    half_from_double = "__half2float(__double2half({value}))"
    half_from_bits = "__half2float(__ushort_as_half({value}))"
    half_to_bits = "__half_as_ushort(__float2half_rn({value}))"
    bitcast = "tj_bitcast<{type}>({value})"
    vector_load = "*((const {vtype}*)({buf} + {idx}))"   # one 16-byte load: the address must be 16-byte aligned

    def prelude(self, uops) -> list[str]:
        lines = []
        if self.uses(uops, dtypes.float16):
            lines.append("#include <cuda_fp16.h>")
        if any(u.uop.name == "BITCAST" for u in uops):
            lines.append(_BITCAST)
        return lines + super().prelude(uops)
