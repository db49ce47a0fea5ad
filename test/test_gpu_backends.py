"""Differential tests of the GPU backends against numpy/torch, on OpenCL (PoCL, for real) and on the CUDA
emulation (CUDA C from codegen/cuda.py, compiled by NVRTC+ptxas for sm_80/sm_90 and run on the CPU by
test/cuda_emulator.py); the CPU backend runs them too, as a check of the expectations. Each test builds
tensors on the default device, which the `device` fixture sets.

The cases are chosen to cover the GPU code paths with few kernels (each kernel costs a PoCL build, an
NVRTC+ptxas check and a g++ build the first time): every dtype through loads, stores, arithmetic and casts,
short reduces (a loop per work-item) and long ones (GROUP: a work-group reduce through local memory, with a
power-of-two and a non-power-of-two group), matmul, conv2d, movement ops with masks, and softmax.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyjit import Tensor
from tinyjit.schedule import create_schedule

pytestmark = pytest.mark.devices("CPU", "CL", "CUDAEMU")

ALL_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
              "float64"]


def data(shape, dtype: str, seed: int, lo: int = -100, hi: int = 100) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 3).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(max(info.min, lo), min(info.max, hi), shape, endpoint=True).astype(dt)


def check(t: Tensor, ref, atol=1e-6, rtol=1e-5) -> None:
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    got = t.numpy()
    assert got.shape == ref.shape, f"shape {got.shape} != {ref.shape}"
    if got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got.astype(np.float64), ref.astype(np.float64), atol=atol, rtol=rtol)


# ---- elementwise, every dtype ----
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_elementwise(device, dtype):
    a, b = data((37, 29), dtype, 1), data((37, 29), dtype, 2)
    x, y = Tensor(a), Tensor(b)
    assert x.device == device and x.dtype.name == dtype
    if dtype == "bool":
        check((x & y) | (x ^ y).bitwise_not() | (x != y), (a & b) | ~(a ^ b) | (a != b))
        check(x.where(y, x), np.where(a, b, a))
    elif dtype.startswith("float"):
        tol = {"float16": 1e-2, "float32": 1e-6, "float64": 1e-12}[dtype]
        with np.errstate(all="ignore"):
            ref = np.where(a < b, -a, np.maximum(a * b + a, b))
        check((x < y).where(-x, (x * y + x).maximum(y)), ref, atol=tol, rtol=tol)
    else:
        # wrap-around of narrow types, comparisons, where, bit ops
        with np.errstate(all="ignore"):
            ref = np.maximum(a * b + a, b) + ((a & b) ^ (a | 7)) + np.where(a < b, a, b)
        check((x * y + x).maximum(y) + ((x & y) ^ (x | 7)) + (x < y).where(x, y), ref.astype(a.dtype))
        p, q = data((37, 29), dtype, 3, lo=1), data((37, 29), dtype, 4, lo=1, hi=9)
        px, qx = Tensor(p), Tensor(q)
        with np.errstate(all="ignore"):
            ref = (p // q + p % q + (p << 2).astype(p.dtype)) >> 1
        check((px // qx + px % qx + px.lshift(2)).rshift(1), ref.astype(p.dtype))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_float_math(device, dtype):
    a = data((3, 257), dtype, 5)
    x = Tensor(a)
    out = (x.abs() + 0.5).log2() + x.sin() + x.abs().sqrt() + (x * 0.25).exp2() + 1 / (x.abs() + 1)
    a64 = a.astype(np.float64)
    ref = np.log2(np.abs(a64) + 0.5) + np.sin(a64) + np.sqrt(np.abs(a64)) + np.exp2(a64 * 0.25) + 1 / (np.abs(a64) + 1)
    tol = {"float16": 3e-2, "float32": 1e-5, "float64": 1e-12}[dtype]
    check(out, ref, atol=tol, rtol=tol)


def test_special_values(device):
    a = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1.5, -2.5, 3e38], dtype=np.float32)
    x = Tensor(a)
    with np.errstate(all="ignore"):
        check(x.maximum(0.0), np.array([np.inf, 0, np.nan, 0, 0, 1.5, 0, 3e38], dtype=np.float32))
        check((x * 2).isinf(), np.isinf(a * 2))
        check(x.isnan(), np.isnan(a))
        check(Tensor(a.astype(np.float16)) * 1, a.astype(np.float16))   # 3e38 -> inf in half
    check(Tensor.full((3,), float("-inf")) + x[:3], np.array([np.nan, -np.inf, np.nan], dtype=np.float32))


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_cast_roundtrip(device, dtype):
    """float32 -> dtype -> float32, and bool/half handling of the conversions."""
    lo, hi = (0, 200) if dtype.startswith("u") or dtype == "bool" else (-100, 100)
    a = np.random.default_rng(6).uniform(lo, hi, (5, 41)).astype(np.float32)
    a[0, :3] = [0.0, 0.5, -0.0] if lo < 0 else [0.0, 0.5, 0.0]
    with np.errstate(all="ignore"):
        check(Tensor(a).cast(dtype).cast("float32"), a.astype(dtype).astype(np.float32))


def test_double_to_half_rounds_once(device):
    """float64 -> float16 converts directly (rounding through float32 first can be off by one ulp)."""
    rng = np.random.default_rng(7)
    a = (rng.uniform(-60000, 60000, 4096) * (1 + 2.0 ** -12)).astype(np.float64)
    # values just above a half-way point between two halves: float32 rounding lands on the tie
    halves = np.arange(1000, 1100, dtype=np.float16).astype(np.float64)
    a[:100] = halves + 2.0 ** -1 * (halves[1] - halves[0]) / 2 + 2.0 ** -40
    check(Tensor(a).cast("float16"), a.astype(np.float16), atol=0, rtol=0)


def test_half_conversions_exhaustive(device):
    """Every half bit pattern widened, and floats around every rounding boundary narrowed (ties, subnormals,
    the overflow threshold 65520), bit-exact against numpy."""
    bits = np.arange(65536, dtype=np.uint16)
    widened = Tensor(bits).bitcast("float16").cast("float32").numpy()
    np.testing.assert_array_equal(widened, bits.view(np.float16).astype(np.float32))
    finite = bits.view(np.float16)[np.isfinite(bits.view(np.float16))].astype(np.float32)
    ulp = np.float32(2.0 ** -25)
    f = np.concatenate([finite, finite + finite * 2.0 ** -12, (finite[:-1] + finite[1:]) / 2, finite * (1 + ulp),
                        np.float32([65504, 65519.996, 65520, 65536, 1e30, np.inf, -np.inf])]).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        want = f.astype(np.float16).view(np.int16)
        np.testing.assert_array_equal(Tensor(f).cast("float16").bitcast("int16").numpy(), want)
        np.testing.assert_array_equal(Tensor(f.astype(np.float64)).cast("float16").bitcast("int16").numpy(), want)
    nan = Tensor(np.array([np.nan], np.float32)).cast("float16").numpy()
    assert np.isnan(nan).all()


def test_bitcast(device):
    a = data((64,), "float32", 8)
    check(Tensor(a).bitcast("int32"), a.view(np.int32))
    check(Tensor(a.view(np.uint32)).bitcast("float32"), a)
    h = data((64,), "float16", 9)
    check(Tensor(h).bitcast("int16"), h.view(np.int16))
    check(Tensor(h.view(np.uint16)).bitcast("float16"), h, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_copy_between_devices(device, dtype):
    a = data((3, 5), dtype, 10)
    t = Tensor(a, device=device)
    back = t.to("CPU")
    assert back.device == "CPU" and t.device == device
    np.testing.assert_array_equal(back.numpy(), a)
    np.testing.assert_array_equal(Tensor(a, device="CPU").to(device).numpy(), a)


# ---- reductions ----
@pytest.mark.parametrize("shape,axis", [((37, 7), 1), ((3, 4096), 1), ((4096, 3), 0), ((2, 5000), 1),
                                        ((300, 347), None)], ids=str)
def test_sum_max(device, shape, axis):
    a = data(shape, "float32", 11)
    x = Tensor(a)
    check(x.sum(axis=axis), a.astype(np.float64).sum(axis=axis), atol=1e-3, rtol=1e-4)
    check(x.amax(axis=axis), a.max(axis=axis))


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool", "float16", "float64"])
def test_long_reduce_dtypes(device, dtype):
    a = np.random.default_rng(12).integers(0, 2, (3, 1024)).astype(dtype)   # 0/1: every sum is exact, even in half
    x = Tensor(a)
    if dtype == "bool":
        check(x.any(axis=1), a.any(axis=1))
        check(x.all(axis=1), a.all(axis=1))
        return
    ref = a.sum(axis=1, dtype=np.float64)
    out = x.sum(axis=1)
    assert out.dtype.name in (dtype, "int64") or dtype == "uint8"
    check(out.cast("float64"), ref)
    check((-x.cast("float32") if dtype.startswith("u") else -x).amax(axis=1).cast("float64"),
          (-a.astype(np.float64)).max(axis=1))


@pytest.mark.devices("CL", "CUDAEMU")
def test_long_reduce_uses_a_work_group(device):
    """The long reduce runs on a work-group with a local-memory tree; an elementwise kernel on many threads."""
    from tinyjit.kernel_cache import compile_kernel
    x = Tensor(data((4, 4096), "float32", 13))
    reduce_ast = create_schedule([x.sum(axis=1).node])[0].ast
    k = compile_kernel(device, reduce_ast)
    assert int(np.prod(k.local_size)) >= 64, k.local_size
    assert ("__local" in k.source) or ("__shared__" in k.source)
    assert ("barrier(" in k.source) or ("__syncthreads()" in k.source)
    ew = compile_kernel(device, create_schedule([(x * 2 + 1).node])[0].ast)
    assert int(np.prod(ew.local_size)) * int(np.prod(ew.global_size)) == 4 * 4096
    assert int(np.prod(ew.local_size)) > 1


def test_mean_var_argmax(device):
    a = data((6, 1000), "float32", 14)
    t, x = torch.from_numpy(a), Tensor(a)
    check(x.mean(axis=1), t.mean(dim=1), atol=1e-5)
    check(x.var(axis=1), t.var(dim=1), atol=1e-4, rtol=1e-4)
    check(x.argmax(axis=1), t.argmax(dim=1))


# ---- matmul, conv ----
@pytest.mark.parametrize("shapes", [((33, 20), (20, 17)), ((2, 5, 64), (64, 3)), ((2, 2048), (2048, 3))], ids=str)
def test_matmul(device, shapes):
    a, b = data(shapes[0], "float32", 15), data(shapes[1], "float32", 16)
    check(Tensor(a) @ Tensor(b), a.astype(np.float64) @ b.astype(np.float64), atol=1e-3, rtol=1e-4)


def test_matmul_half(device):
    a, b = data((8, 16), "float16", 17), data((16, 4), "float16", 18)
    ref = torch.from_numpy(a).float() @ torch.from_numpy(b).float()
    check((Tensor(a) @ Tensor(b)).float(), ref, atol=0.3, rtol=2e-2)


def test_conv2d(device):
    x, w, b = data((2, 3, 9, 9), "float32", 19), data((4, 3, 3, 3), "float32", 20), data((4,), "float32", 21)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=2,
                                     padding=1)
    check(Tensor(x).conv2d(Tensor(w), Tensor(b), stride=2, padding=1), ref, atol=1e-4, rtol=1e-4)


# ---- movement ----
def test_movement(device):
    a = data((2, 3, 4, 5, 6), "float32", 22)
    x = Tensor(a)
    # a permute no view merge can simplify: five grid axes, merged into one work-item dimension
    check(x.permute(4, 2, 0, 3, 1).contiguous(), a.transpose(4, 2, 0, 3, 1))
    check(x.flip(1, 3)[:, 1:, ::2, :, 1::3].pad(((1, 0), (0, 1), (0, 0), (2, 1), (0, 0)), value=7.0) * 2,
          np.pad(a[:, ::-1, :, ::-1][:, 1:, ::2, :, 1::3], ((1, 0), (0, 1), (0, 0), (2, 1), (0, 0)),
                 constant_values=7.0) * 2)
    m = data((7, 9), "int32", 23)
    check(Tensor(m).cat(Tensor(m[:, :4] * 3), dim=1), np.concatenate([m, m[:, :4] * 3], axis=1))


def test_indexing(device):
    a = data((6, 8), "float32", 24)
    idx = np.array([[5, 0, 2], [1, 1, 4]], dtype=np.int32)
    check(Tensor(a)[Tensor(idx)], a[idx])
    gi = np.random.default_rng(25).integers(0, 6, (6, 8)).astype(np.int32)
    check(Tensor(a).gather(0, Tensor(gi)), np.take_along_axis(a, gi, 0))


def test_setitem(device):
    a = data((4, 6), "float32", 26)
    x = Tensor(a).contiguous().realize()
    x[1:3, ::2] = 5.0
    ref = a.copy()
    ref[1:3, ::2] = 5.0
    check(x, ref)


# ---- composites ----
@pytest.mark.parametrize("shape", [(5, 30), (3, 2000)], ids=str)
def test_softmax(device, shape):
    a = data(shape, "float32", 27)
    t, x = torch.from_numpy(a), Tensor(a)
    check(x.softmax(axis=-1), t.softmax(dim=-1), atol=1e-6, rtol=1e-4)
    check(x.log_softmax(axis=-1), t.log_softmax(dim=-1), atol=1e-5, rtol=1e-5)
