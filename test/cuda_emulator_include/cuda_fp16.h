// Host stand-in for CUDA's cuda_fp16.h, for the CPU emulation of CUDA kernels (test/cuda_emulator.py).
// Only what codegen/cuda.py emits: the half storage type and its conversions, all rounding to nearest even
// (g++'s _Float16 conversions round that way).
#pragma once
#include <string.h>

struct __half { unsigned short x; };
typedef __half half;

static inline float __half2float(__half h) { _Float16 f; memcpy(&f, &h.x, 2); return (float)f; }
static inline __half __float2half_rn(float v) { _Float16 f = (_Float16)v; __half h; memcpy(&h.x, &f, 2); return h; }
static inline __half __double2half(double v) { _Float16 f = (_Float16)v; __half h; memcpy(&h.x, &f, 2); return h; }
static inline __half __ushort_as_half(unsigned short b) { __half h; h.x = b; return h; }
static inline unsigned short __half_as_ushort(__half h) { return h.x; }
