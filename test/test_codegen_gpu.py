"""GPU codegen: LOCAL/GROUP optimizations, mapping of axes onto work-item ids, and the C spellings.

Kernels with hand-chosen optimizations (odd group sizes, two grouped axes, several reduces and upcasts in one
kernel, no optimizations at all) run on OpenCL and the CUDA emulation and are compared with numpy.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from codegen.cuda import CUDARenderer
from codegen.gpu import GPULinearizer
from codegen.kernel import Kernel, KernelOptError, Opt
from codegen.opencl import OpenCLRenderer
from tinyjit import Device, Tensor, dtypes
from tinyjit.device import Buffer
from tinyjit.schedule import create_schedule


def kernel_of(t: Tensor) -> tuple[Kernel, list]:
    """The Kernel of the last schedule item of `t` (inputs realized first) and its input buffers."""
    items = create_schedule([t.node])
    from tinyjit.realize import run_schedule
    run_schedule(items[:-1])
    item = items[-1]
    return Kernel(item.ast), [n.buffer for n in item.inputs], item.output


def run_with_opts(device: str, t: Tensor, opts: list[Opt]) -> np.ndarray:
    """Compile `t`'s kernel with exactly `opts` (no heuristics) for `device`, run it, return the output."""
    k, inputs, out_node = kernel_of(t)
    for opt in opts:
        k.apply_opt(opt)
    renderer = Device.renderer(device)
    program = renderer.linearize(k)
    symbol, src = renderer.render(program.name, program.uops)
    dev = Device[device]
    out = Buffer(device, out_node.size, out_node.dtype)
    dev.program(symbol, dev.compile(src))(out.handle, *[b.handle for b in inputs], global_size=program.global_size,
                                            local_size=program.local_size, wait=True)
    return out.numpy().reshape(out_node.shape)


# ---- optimizations on the Kernel ----
def test_local_and_group_opts():
    k, _, _ = kernel_of(Tensor(np.ones((6, 10, 64), np.float32)).sum(axis=2))
    assert k.full_shape == (60, 64)
    k.apply_opt(Opt("GROUP", 0, 16))
    assert k.full_shape == (60, 16, 4) and k.group_for_reduce == 1 and k.first_reduce == 1
    k.apply_opt(Opt("LOCAL", 0, 12))
    assert k.full_shape == (5, 12, 16, 4) and k.local_dims == 1 and k.first_reduce == 2
    with pytest.raises(KernelOptError, match="LOCAL axis 1 is not a grid axis"):
        k.apply_opt(Opt("LOCAL", 1, 2))     # the local axis itself
    with pytest.raises(KernelOptError, match="GROUP axis 1 is not a reduce loop axis"):
        k.apply_opt(Opt("GROUP", 1, 2))
    with pytest.raises(KernelOptError, match="cannot split"):
        k.apply_opt(Opt("LOCAL", 0, 3))


def test_default_gpu_opts():
    """Heuristics: long reduce with few outputs -> GROUP; elementwise -> LOCAL split into a work-group."""
    from codegen.optimizer import optimize
    k, _, _ = kernel_of(Tensor(np.ones((4, 4096), np.float32)).sum(axis=1))
    optimize(k, OpenCLRenderer())
    assert k.applied == [Opt("GROUP", 0, 256)] and k.group_for_reduce == 1
    k, _, _ = kernel_of(Tensor(np.ones((1000, 30), np.float32)) * 2)
    optimize(k, OpenCLRenderer())
    program = GPULinearizer(k).linearize()
    assert math.prod(program.local_size) > 1
    assert math.prod(program.local_size) * math.prod(program.global_size) == 30000


def test_grid_dimensions_fit_cuda_limits():
    # 5 axes no view can merge: more than 3 grid dimensions, merged into one
    a = Tensor(np.zeros((2, 3, 4, 5, 6), np.float32)).permute(4, 2, 0, 3, 1).contiguous()
    program = GPULinearizer(kernel_of(a)[0]).linearize()
    assert program.global_size == (720,) and program.local_size == (1,)
    # a grid axis longer than CUDA's gridDim.y limit is not put in y
    b = Tensor(np.zeros((3, 70000), np.float32)).permute(1, 0).contiguous()
    program = GPULinearizer(kernel_of(b)[0]).linearize()
    assert program.global_size[0] <= 2 ** 31 - 1 and all(g <= 65535 for g in program.global_size[1:])
    assert math.prod(program.global_size) == 210000


def test_too_many_work_items():
    k, _, _ = kernel_of(Tensor(np.ones((4, 4096), np.float32)).sum(axis=1))
    k.apply_opt(Opt("GROUP", 0, 2048))
    with pytest.raises(ValueError, match="2048 work-items per group exceed 1024"):
        GPULinearizer(k).linearize()


# ---- hand-picked optimizations, run for real ----
CASES = {
    "no_opts": (lambda x: (x * 2 + 1).permute(1, 0), []),
    "group_odd": (lambda x: x.sum(axis=1), [Opt("GROUP", 0, 7)]),                  # a tree over 7 items
    "group_local": (lambda x: x.amax(axis=1), [Opt("GROUP", 0, 21), Opt("LOCAL", 0, 3)]),
    "two_groups": (lambda x: x.reshape(6, 3, 7).sum(axis=(1, 2)), [Opt("GROUP", 0, 3), Opt("GROUP", 0, 7)]),
    "reduces_upcast": (lambda x: x.sum(axis=1) + x.amax(axis=1),
                       [Opt("GROUP", 0, 3), Opt("UPCAST", 0, 2), Opt("UNROLL", 0, 7)]),
}


@pytest.mark.devices("CL", "CUDAEMU")
@pytest.mark.parametrize("case", list(CASES))
def test_hand_picked_opts(device, case):
    fn, opts = CASES[case]
    a = np.random.default_rng(1).standard_normal((6, 21)).astype(np.float32)
    got = run_with_opts(device, fn(Tensor(a)), opts)
    ref = fn(Tensor(a, device="CPU")).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


# ---- spellings ----
def test_literals():
    cl, cu = OpenCLRenderer(), CUDARenderer()
    assert cl.literal(-2 ** 63, dtypes.int64) == "(-9223372036854775807L-1)"
    assert cu.literal(-2 ** 63, dtypes.int64) == "(-9223372036854775807LL-1)"
    assert cu.literal(2 ** 64 - 1, dtypes.uint64) == "18446744073709551615ull"
    assert cl.literal(-5, dtypes.int8) == "(char)-5" and cu.literal(7, dtypes.uint16) == "(unsigned short)7"
    assert cl.literal(float("inf"), dtypes.float32) == "INFINITY"
    assert cu.literal(float("-inf"), dtypes.float32) == "(-__int_as_float(0x7f800000))"
    assert cu.literal(float("nan"), dtypes.float64) == "__longlong_as_double(0x7ff8000000000000LL)"
    assert cl.literal(0.1, dtypes.float32) == "0.1f" and cl.literal(2.0, dtypes.float32) == "2.0f"
    assert cl.literal(0.1, dtypes.float16) == "0.099975586f"   # the half nearest 0.1, held in a float
    assert cl.literal(True, dtypes.bool) == "true"


def test_kernel_signature_and_work_group_size():
    k, _, _ = kernel_of(Tensor(np.ones((4, 4096), np.float16)).sum(axis=1) > 0)
    from codegen.optimizer import optimize
    optimize(k, OpenCLRenderer())
    program = GPULinearizer(k).linearize()
    threads = math.prod(program.local_size)
    _, cl_src = OpenCLRenderer().render(program.name, program.uops)
    _, cu_src = CUDARenderer().render(program.name, program.uops)
    size = ", ".join(map(str, tuple(program.local_size) + (1,) * (3 - len(program.local_size))))
    assert f"__kernel __attribute__((reqd_work_group_size({size}))) void r_" in cl_src
    assert "__global uchar* data0, __global const half* data1" in cl_src   # bool is a byte; half is storage
    assert "vload_half(" in cl_src and "__local float partial0" in cl_src
    assert f'extern "C" __global__ void __launch_bounds__({threads}) r_' in cu_src
    assert "unsigned char* __restrict__ data0, const half* __restrict__ data1" in cu_src
    assert "#include <cuda_fp16.h>" in cu_src and "__syncthreads();" in cu_src


# ---- vector loads ----
@pytest.mark.devices("CL", "CUDAEMU")
@pytest.mark.parametrize("row", [64, 66])
def test_vector_loads(device, row):
    """B's columns are upcast by 4 in a matmul: one 4-wide load where allowed. vload4 (OpenCL) needs only
    element alignment; CUDA's float4 load needs 16 bytes, which a row of 66 floats cannot promise."""
    from codegen.optimizer import optimize
    from tinyjit.kernel_cache import compile_kernel
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((64, 48)).astype(np.float32), rng.standard_normal((48, row)).astype(np.float32)
    out = Tensor(a) @ Tensor(b)[:, :64]
    k, _, _ = kernel_of(out)
    optimize(k, Device.renderer(device))
    assert Opt("UPCAST", 1, 4) in k.applied
    source = compile_kernel(device, create_schedule([out.node])[-1].ast).source
    vectorized = "vload4(0, data2 + " in source or "*((const float4*)(data2 + " in source
    assert vectorized == (device == "CL" or row == 64), source
    np.testing.assert_allclose(out.numpy(), a @ b[:, :64], rtol=1e-5, atol=1e-5)
