"""The OpenCL runtime, run for real on whatever OpenCL device is present (PoCL on the CPU in CI)."""
import numpy as np
import pytest

import runtime.opencl as rcl
from runtime import CompileError, DeviceUnavailable


def _open_device():
    try:
        return rcl.CLDevice(), None
    except DeviceUnavailable as e:
        return None, str(e)


DEVICE, REASON = _open_device()
if DEVICE is None:
    print(f"\nskipping OpenCL runtime tests: {REASON}")
needs_device = pytest.mark.skipif(DEVICE is None, reason=f"no OpenCL device: {REASON}")

ADD_SRC = """
__kernel void add(__global float* out, __global const float* a, __global const float* b) {
  int i = get_global_id(0);
  out[i] = a[i] + b[i];
}
"""

REDUCE_SRC = """
#define LOCAL 64
__kernel void partial_sum(__global float* out, __global const float* x, int n) {
  __local float acc[LOCAL];
  int lid = get_local_id(0);
  float s = 0.0f;
  for (int i = get_global_id(0); i < n; i += get_global_size(0)) s += x[i];
  acc[lid] = s;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int step = LOCAL / 2; step > 0; step >>= 1) {
    if (lid < step) acc[lid] += acc[lid + step];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid == 0) out[get_group_id(0)] = acc[0];
}
"""

INDEX_SRC = """
__kernel void where_am_i(__global int* out) {
  int x = get_global_id(0), y = get_global_id(1);
  int w = get_global_size(0);
  out[y * w + x] = x + 1000 * y + 1000000 * (int)(get_local_size(0) * 10 + get_local_size(1));
}
"""


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CACHE", raising=False)
    return tmp_path / "cache"


def to_device(dev, arr):
    handle = dev.allocator.alloc(arr.nbytes)
    dev.allocator.copyin(handle, memoryview(np.ascontiguousarray(arr)).cast("B"))
    return handle


def from_device(dev, handle, shape, dtype):
    out = np.empty(shape, dtype)
    dev.allocator.copyout(memoryview(out).cast("B"), handle)
    return out


@needs_device
def test_allocator_round_trip():
    data = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    h = to_device(DEVICE, data)
    np.testing.assert_array_equal(from_device(DEVICE, h, data.shape, data.dtype), data)
    DEVICE.allocator.free(h)
    empty = DEVICE.allocator.alloc(0)  # empty tensors still get a handle
    DEVICE.allocator.copyin(empty, memoryview(b""))
    DEVICE.allocator.free(empty)


@needs_device
def test_copyin_too_large_is_rejected():
    h = DEVICE.allocator.alloc(8)
    with pytest.raises(ValueError, match="16 bytes"):
        DEVICE.allocator.copyin(h, memoryview(np.zeros(4, np.float32)).cast("B"))


@needs_device
def test_add_kernel_with_work_groups(cache_dir):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(256).astype(np.float32), rng.standard_normal(256).astype(np.float32)
    prg = DEVICE.program("add", DEVICE.compile(ADD_SRC))
    ha, hb, hout = to_device(DEVICE, a), to_device(DEVICE, b), DEVICE.allocator.alloc(a.nbytes)
    # 16 work-groups of 16 work-items: NDRange 256
    assert prg(hout, ha, hb, global_size=(16, 1, 1), local_size=(16, 1, 1)) is None
    DEVICE.synchronize()
    np.testing.assert_array_equal(from_device(DEVICE, hout, a.shape, a.dtype), a + b)


@needs_device
def test_global_size_counts_groups_in_two_dims(cache_dir):
    prg = DEVICE.program("where_am_i", DEVICE.compile(INDEX_SRC))
    groups, local = (3, 2), (4, 2)
    w, h = groups[0] * local[0], groups[1] * local[1]
    out = DEVICE.allocator.alloc(w * h * 4)
    prg(out, global_size=groups, local_size=local, wait=True)
    got = from_device(DEVICE, out, (h, w), np.int32)
    y, x = np.mgrid[0:h, 0:w]
    np.testing.assert_array_equal(got, x + 1000 * y + 1000000 * 42)


@needs_device
def test_local_memory_reduction_with_barrier(cache_dir):
    x = np.random.default_rng(2).standard_normal(10_000).astype(np.float32)
    groups = 8
    prg = DEVICE.program("partial_sum", DEVICE.compile(REDUCE_SRC))
    hx, hout = to_device(DEVICE, x), DEVICE.allocator.alloc(groups * 4)
    elapsed = prg(hout, hx, x.size, global_size=(groups,), local_size=(64,), wait=True)
    assert isinstance(elapsed, float) and 0.0 <= elapsed < 10.0
    partial = from_device(DEVICE, hout, (groups,), np.float32)
    np.testing.assert_allclose(partial.sum(dtype=np.float64), x.sum(dtype=np.float64), rtol=1e-4, atol=1e-3)


@needs_device
def test_launch_failure_is_readable(cache_dir):
    prg = DEVICE.program("add", DEVICE.compile(ADD_SRC))
    h = DEVICE.allocator.alloc(4)
    too_big = DEVICE.device.max_work_group_size * 2
    with pytest.raises(RuntimeError, match="CL launch of kernel 'add'"):
        prg(h, h, h, global_size=(1,), local_size=(too_big,), wait=True)


@needs_device
def test_compile_error_has_numbered_source_and_log(cache_dir):
    bad = "__kernel void broken(__global float* out) {\n  out[0] = undefined_name;\n}\n"
    with pytest.raises(CompileError) as info:
        DEVICE.compile(bad)
    message = str(info.value)
    assert "2 |   out[0] = undefined_name;" in message
    assert "undefined_name" in info.value.log, "the compiler's own log must be included"
    assert not list(cache_dir.rglob("*.bin")), "failed compiles must not be cached"


@needs_device
def test_unknown_kernel_name_and_bad_binary_raise_compile_error(cache_dir):
    binary = DEVICE.compile(ADD_SRC)
    with pytest.raises(CompileError, match="no kernel named 'sub'.*add"):
        DEVICE.program("sub", binary)
    with pytest.raises(CompileError, match="program binary"):
        DEVICE.program("add", b"definitely not a binary")


@needs_device
def test_second_compile_is_a_cache_hit(cache_dir, monkeypatch):
    builds = []
    real_build = rcl.CLDevice._build

    def counting_build(self, src):
        builds.append(src)
        return real_build(self, src)

    monkeypatch.setattr(rcl.CLDevice, "_build", counting_build)
    first = DEVICE.compile(ADD_SRC)
    second = rcl.CLDevice().compile(ADD_SRC)  # a fresh device (as in a new process) hits the disk cache
    assert first == second and len(builds) == 1
    assert len(list((cache_dir / "opencl").iterdir())) == 1
    monkeypatch.setattr(DEVICE, "build_options", "-cl-fast-relaxed-math")
    DEVICE.compile(ADD_SRC)
    assert len(builds) == 2, "build options are part of the cache key"
    # the cached binary really runs
    a = np.arange(64, dtype=np.float32)
    ha, hout = to_device(DEVICE, a), DEVICE.allocator.alloc(a.nbytes)
    DEVICE.program("add", second)(hout, ha, ha, global_size=(4,), local_size=(16,), wait=True)
    np.testing.assert_array_equal(from_device(DEVICE, hout, a.shape, a.dtype), 2 * a)


@needs_device
@pytest.mark.parametrize("var,value", [("CL_DEVICE", "7"), ("CL_PLATFORM", "9"), ("CL_DEVICE", "gpu")])
def test_bad_device_env_names_valid_values(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(DeviceUnavailable) as info:
        rcl.CLDevice()
    message = str(info.value)
    assert "\n" not in message and f"{var}={value!r}" in message and "0 (" in message


def test_missing_pyopencl_is_one_line_with_install_command(monkeypatch):
    monkeypatch.setattr(rcl, "cl", None)
    with pytest.raises(DeviceUnavailable) as info:
        rcl.CLDevice()
    assert str(info.value) == "CL device unavailable: pyopencl is not installed (pip install 'tinyjit[opencl]')"


@pytest.mark.skipif(rcl.cl is None, reason="pyopencl is not installed")
@pytest.mark.parametrize("mode", ["empty", "raises"])
def test_no_platform_is_one_line(monkeypatch, mode):
    class NoICD(rcl.cl.Error):
        pass

    def get_platforms():
        if mode == "raises":
            raise NoICD("clGetPlatformIDs failed: PLATFORM_NOT_FOUND_KHR")
        return []

    monkeypatch.setattr(rcl.cl, "get_platforms", get_platforms)
    with pytest.raises(DeviceUnavailable) as info:
        rcl.CLDevice()
    assert "\n" not in str(info.value) and "no OpenCL platform" in str(info.value)
