"""The CUDA emulation harness itself (test/cuda_emulator.py): it must catch what it is there to catch.

Hand-written CUDA kernels (valid for NVRTC too: they pass the same NVRTC + ptxas check) show that barriers are
real, that threads disagreeing about a barrier and writes outside a buffer are errors, and that the host
stand-in for cuda_fp16.h converts exactly like the GPU (round to nearest even, subnormals, inf, NaN).
"""
from __future__ import annotations

import numpy as np
import pytest

from cuda_emulator import EmulatedCUDADevice

ROTATE = """extern "C" __global__ void rotate(int* __restrict__ out) {{
  __shared__ int slot[64];
  int t = threadIdx.x;
  slot[t] = (int)(blockIdx.x * 1000) + t;
  {barrier}
  out[blockIdx.x * 64 + t] = slot[(t + 1) % 64];
}}
"""


@pytest.fixture(scope="module")
def emu():
    return EmulatedCUDADevice()


def launch(emu, src: str, name: str, arrays: list[np.ndarray], grid=(1, 1, 1), block=(1, 1, 1)) -> list[np.ndarray]:
    handles = []
    for a in arrays:
        h = emu.allocator.alloc(a.nbytes)
        emu.allocator.copyin(h, memoryview(np.ascontiguousarray(a)).cast("B"))
        handles.append(h)
    emu.program(name, emu.compile(src))(*handles, global_size=grid, local_size=block)
    outs = []
    for a, h in zip(arrays, handles):
        out = np.empty_like(a)
        emu.allocator.copyout(memoryview(out).cast("B"), h)
        outs.append(out)
    return outs


def test_barrier_orders_shared_memory(emu):
    want = np.array([[b * 1000 + (t + 1) % 64 for t in range(64)] for b in range(3)], dtype=np.int32).reshape(-1)
    (got,) = launch(emu, ROTATE.format(barrier="__syncthreads();"), "rotate", [np.zeros(192, np.int32)], (3, 1, 1),
                    (64, 1, 1))
    np.testing.assert_array_equal(got, want)
    # without the barrier a thread reads its neighbour's slot before the neighbour wrote it: a wrong result
    (racy,) = launch(emu, ROTATE.format(barrier=""), "rotate", [np.zeros(192, np.int32)], (3, 1, 1), (64, 1, 1))
    assert (racy != want).any()


def test_divergent_barrier_is_an_error(emu):
    src = """extern "C" __global__ void diverge(float* __restrict__ out) {
  if (threadIdx.x == 0) return;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}
"""
    with pytest.raises(RuntimeError, match=r"1 of 8 threads returned while the others wait at __syncthreads"):
        launch(emu, src, "diverge", [np.zeros(8, np.float32)], block=(8, 1, 1))


def test_out_of_bounds_write_is_an_error(emu):
    src = """extern "C" __global__ void past_end(float* __restrict__ out) { out[threadIdx.x + 1] = 1.0f; }
"""
    with pytest.raises(RuntimeError, match=r"wrote outside buffer 0 \(32 bytes\)"):
        launch(emu, src, "past_end", [np.zeros(8, np.float32)], block=(8, 1, 1))


def test_ids_and_launch_limits(emu):
    src = """extern "C" __global__ void ids(int* __restrict__ out) {
  int block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  int thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  out[block * blockDim.x * blockDim.y * blockDim.z + thread] = block * 100 + thread;
}
"""
    grid, block = (2, 3, 2), (4, 2, 3)
    (got,) = launch(emu, src, "ids", [np.zeros(12 * 24, np.int32)], grid, block)
    np.testing.assert_array_equal(got, [b * 100 + t for b in range(12) for t in range(24)])
    with pytest.raises(ValueError, match="exceeds CUDA's limits"):
        launch(emu, src, "ids", [np.zeros(4, np.int32)], (1, 1, 1), (1, 1, 65))


def test_half_conversions_match_the_gpu(emu):
    src = """#include <cuda_fp16.h>
extern "C" __global__ void conv(float* __restrict__ widened, half* __restrict__ narrowed,
                                 half* __restrict__ from_double, const half* __restrict__ bits,
                                 const float* __restrict__ f, const double* __restrict__ d) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  widened[i] = __half2float(bits[i]);
  narrowed[i] = __float2half_rn(f[i]);
  from_double[i] = __double2half(d[i]);
}
"""
    n = 65536
    bits = np.arange(n, dtype=np.uint16).view(np.float16)
    rng = np.random.default_rng(0)
    f = (rng.standard_normal(n) * np.exp2(rng.integers(-26, 18, n))).astype(np.float32)
    f[:n // 4] = (bits[:n // 4].astype(np.float32) + bits[1:n // 4 + 1].astype(np.float32)) / 2   # ties
    d = f.astype(np.float64) * (1 + 2.0 ** -30)
    widened, narrowed, from_double, *_ = launch(
        emu, src, "conv", [np.zeros(n, np.float32), np.zeros(n, np.float16), np.zeros(n, np.float16), bits, f, d],
        (n // 256, 1, 1), (256, 1, 1))
    with np.errstate(invalid="ignore", over="ignore"):
        np.testing.assert_array_equal(widened, bits.astype(np.float32))   # NaN == NaN for this check
        np.testing.assert_array_equal(narrowed.view(np.uint16), f.astype(np.float16).view(np.uint16))
        np.testing.assert_array_equal(from_double.view(np.uint16), d.astype(np.float16).view(np.uint16))
