"""The CUDA runtime: NVRTC and ptxas checks that need no GPU, the no-driver error, the driver plumbing against an
emulated driver, and (only where a GPU exists) real launches."""
import ctypes
import time

import numpy as np
import pytest

import runtime.cuda as rcuda
from runtime import CompileError, DeviceUnavailable

if rcuda.nvrtc is None:
    pytest.skip("cuda-python is not installed (pip install 'tinyjit[cuda]')", allow_module_level=True)
try:
    rcuda.nvrtc_version()
except DeviceUnavailable as e:
    pytest.skip(str(e), allow_module_level=True)

from runtime import nvcheck   # needs NVRTC, checked above


def _driver_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def _open_device():
    try:
        return rcuda.CUDADevice(), None
    except DeviceUnavailable as e:
        return None, str(e)


DEVICE, REASON = _open_device()
if DEVICE is None:
    print(f"\nskipping real CUDA launches: {REASON}")
needs_gpu = pytest.mark.skipif(DEVICE is None, reason=f"no CUDA device: {REASON}")
PTXAS = nvcheck.find_ptxas()
if PTXAS is None:
    print(f"\nskipping ptxas checks: ptxas not found ({nvcheck.PTXAS_HINT})")
needs_ptxas = pytest.mark.skipif(PTXAS is None, reason=f"ptxas not found ({nvcheck.PTXAS_HINT})")

ELEMENTWISE = r"""
extern "C" __global__ void scale_add(float* out, const float* a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 2.0f * a[i] + 1.0f;
}
"""

REDUCE = r"""
#define BLOCK 128
extern "C" __global__ void block_sum(float* out, const float* x, int n) {
  __shared__ float acc[BLOCK];
  int tid = threadIdx.x;
  float s = 0.0f;
  for (int i = blockIdx.x * BLOCK + tid; i < n; i += gridDim.x * BLOCK) s += x[i];
  acc[tid] = s;
  __syncthreads();
  for (int step = BLOCK / 2; step > 0; step >>= 1) {
    if (tid < step) acc[tid] += acc[tid + step];
    __syncthreads();
  }
  if (tid == 0) out[blockIdx.x] = acc[0];
}
"""

HALF_WITH_HEADER = r"""
#include <cuda_fp16.h>
extern "C" __global__ void hfma(half* out, const half* x, const half* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __hfma(x[i], __float2half(2.0f), y[i]);
}
"""

# Half precision without any header: the storage type and the two conversions in inline PTX.
HALF_OWN_TYPE = r"""
struct half_t { unsigned short bits; };
__device__ __forceinline__ float h2f(half_t h) {
  float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits)); return f;
}
__device__ __forceinline__ half_t f2h(float f) {
  half_t h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(f)); return h;
}
extern "C" __global__ void axpy_half(half_t* out, const half_t* x, const half_t* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = f2h(2.0f * h2f(x[i]) + h2f(y[i]));
}
"""

BAD = 'extern "C" __global__ void broken(float* out) {\n  out[0] = not_declared;\n}\n'


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CACHE", raising=False)
    return tmp_path / "cache"


# --- NVRTC ---------------------------------------------------------------------------------------------------

def test_nvrtc_ptx_and_cubin_without_gpu():
    ptx = rcuda.nvrtc_compile(ELEMENTWISE, "sm_80", "ptx").decode()
    assert ".target sm_80" in ptx and ".entry scale_add" in ptx and not ptx.endswith("\0")
    cubin = rcuda.nvrtc_compile(ELEMENTWISE, "sm_90", "cubin")
    assert cubin[:4] == b"\x7fELF"


def test_nvrtc_rejects_bad_targets():
    with pytest.raises(ValueError):
        rcuda.nvrtc_compile(ELEMENTWISE, "compute_80", "cubin")
    with pytest.raises(ValueError):
        rcuda.nvrtc_compile(ELEMENTWISE, "sm_80", "sass")
    with pytest.raises(CompileError, match="sm_1"):
        rcuda.nvrtc_compile(ELEMENTWISE, "sm_1", "ptx")  # an invalid option is a CompileError too


def test_nvrtc_error_has_numbered_source_and_log():
    with pytest.raises(CompileError) as info:
        rcuda.nvrtc_compile(BAD)
    assert "2 |   out[0] = not_declared;" in str(info.value)
    assert "not_declared" in info.value.log and "undefined" in info.value.log


def test_missing_nvrtc_is_device_unavailable(monkeypatch):
    monkeypatch.setattr(rcuda, "nvrtc", None)
    rcuda.nvrtc_version.cache_clear()
    try:
        with pytest.raises(DeviceUnavailable, match=r"pip install 'tinyjit\[cuda\]'"):
            rcuda.nvrtc_compile(ELEMENTWISE)
    finally:
        rcuda.nvrtc_version.cache_clear()


def test_pick_target_prefers_cubin_for_the_device_arch():
    supported = (75, 80, 86, 90, 120)
    assert rcuda.pick_target((8, 6), supported) == ("sm_86", "cubin")
    assert rcuda.pick_target((12, 1), supported) == ("compute_120", "ptx")  # newer than NVRTC: driver JIT
    with pytest.raises(CompileError):
        rcuda.pick_target((7, 0), supported)


# --- nvcheck: NVRTC + ptxas ----------------------------------------------------------------------------------

def _check(src, archs=("sm_80", "sm_90")):
    report = nvcheck.check_cuda_source(src, archs)
    assert report["nvrtc"].startswith("NVRTC ")
    assert set(report["archs"]) == set(archs)
    for arch, entry in report["archs"].items():
        assert f".target {arch}" in entry["ptx"]
        assert entry["cubin"][:4] == b"\x7fELF"
        if PTXAS:
            assert entry["ptxas_cubin"][:4] == b"\x7fELF", "ptxas must have assembled the PTX"
        else:
            assert entry["ptxas_cubin"] is None and report["ptxas_skipped"]
    return report


def test_check_elementwise():
    report = _check(ELEMENTWISE)
    assert ".entry scale_add" in report["archs"]["sm_80"]["ptx"]


def test_check_shared_memory_reduction():
    ptx = _check(REDUCE)["archs"]["sm_80"]["ptx"]
    assert ".shared" in ptx and "bar.sync" in ptx


def test_check_half_with_own_type():
    ptx = _check(HALF_OWN_TYPE)["archs"]["sm_80"]["ptx"]
    assert "cvt.rn.f16.f32" in ptx and "cvt.f32.f16" in ptx


@pytest.mark.skipif(not rcuda.cuda_include_dirs(), reason="cuda_fp16.h not found (no CUDA toolkit headers)")
def test_check_half_with_cuda_fp16_header():
    ptx = _check(HALF_WITH_HEADER)["archs"]["sm_80"]["ptx"]
    assert "fma.rn.f16" in ptx


def test_check_bad_kernel_is_compile_error():
    with pytest.raises(CompileError, match="not_declared"):
        nvcheck.check_cuda_source(BAD)


def test_check_without_ptxas_still_compiles_with_nvrtc(monkeypatch):
    monkeypatch.setattr(nvcheck, "find_ptxas", lambda: None)
    report = nvcheck.check_cuda_source(ELEMENTWISE, ("sm_80",))
    assert report["ptxas"] is None and "ptxas not found" in report["ptxas_skipped"]
    assert report["archs"]["sm_80"]["cubin"][:4] == b"\x7fELF"


def test_check_uses_the_compile_cache(monkeypatch):
    nvcheck.check_cuda_source(ELEMENTWISE, ("sm_80",))
    calls = []
    monkeypatch.setattr(rcuda, "nvrtc_compile", lambda *a, **k: calls.append(a))
    nvcheck.check_cuda_source(ELEMENTWISE, ("sm_80",))
    assert calls == []


def test_match_ptx_isa():
    ptx = "//\n.version 9.5\n.target sm_80\n.address_size 64\n"
    rewritten, note = nvcheck.match_ptx_isa(ptx, (9, 0))
    assert rewritten == ptx.replace("9.5", "9.0") and note == ".version 9.5 rewritten to 9.0"
    assert nvcheck.match_ptx_isa(ptx, (9, 5)) == (ptx, None)
    assert nvcheck.match_ptx_isa(ptx, (9, 7)) == (ptx, None)
    with pytest.raises(CompileError, match="major"):
        nvcheck.match_ptx_isa(ptx, (8, 8))
    with pytest.raises(CompileError, match=".version"):
        nvcheck.match_ptx_isa(".target sm_80\n", (9, 0))


@needs_ptxas
def test_ptxas_reports_its_isa():
    info = nvcheck.ptxas_info(PTXAS)
    assert info.max_isa >= (7, 0) and info.release.count(".") == 1


B128_PTX = """.version {isa}
.target sm_80
.address_size 64
.visible .entry uses_b128()
{{
  .reg .b128 %q<2>;
  .reg .b64 %rd<3>;
  mov.b64 %rd1, 1;
  mov.b64 %rd2, 2;
  mov.b128 %q1, {{%rd1, %rd2}};
  ret;
}}
"""


@needs_ptxas
def test_ptxas_checks_features_against_the_declared_isa():
    """Why rewriting .version down is safe: PTX using a newer feature than it declares is rejected."""
    if nvcheck.ptxas_info(PTXAS).max_isa < (8, 3):
        pytest.skip("this ptxas predates the .b128 type (PTX ISA 8.3)")
    assert nvcheck.ptxas_assemble(B128_PTX.format(isa="8.3"), "sm_80")[:4] == b"\x7fELF"
    with pytest.raises(CompileError) as info:
        nvcheck.ptxas_assemble(B128_PTX.format(isa="8.0"), "sm_80", what="hand-written PTX: ")
    assert "requires PTX ISA" in info.value.log and "mov.b128" in str(info.value)


# --- the driver ----------------------------------------------------------------------------------------------

@pytest.mark.skipif(_driver_present(), reason="an NVIDIA driver is present on this machine")
def test_no_driver_is_one_line_device_unavailable():
    start = time.perf_counter()
    with pytest.raises(DeviceUnavailable) as info:
        rcuda.CUDADevice()
    message = str(info.value)
    assert time.perf_counter() - start < 5.0
    assert "\n" not in message
    assert message.startswith("CUDA device unavailable: no NVIDIA driver (libcuda.so) found")


def test_missing_cuda_python_is_one_line_with_install_command(monkeypatch):
    monkeypatch.setattr(rcuda, "cu", None)
    with pytest.raises(DeviceUnavailable) as info:
        rcuda.CUDADevice()
    assert str(info.value) == "CUDA device unavailable: cuda-python is not installed (pip install 'tinyjit[cuda]')"


class FakeDriver:
    """Stands in for cuda.bindings.driver with host memory as "device" memory and numpy as the "GPU", so the
    runtime's own plumbing runs end to end: result tuples, copies, the kernelParams array, grid × block.
    It reuses the real module's enums and handle types; every function the runtime calls is recorded so
    a test can check that the real module has it."""

    def __init__(self, real, init_error=None, launch_error=None):
        self.real, self.called = real, set()
        self.CUresult, self.CUdevice_attribute = real.CUresult, real.CUdevice_attribute
        self.CUevent_flags, self.CUstream, self.CUdeviceptr = real.CUevent_flags, real.CUstream, real.CUdeviceptr
        self.init_error, self.launch_error = init_error, launch_error
        self.memory, self.images, self.launches = {}, [], []
        self.ok = real.CUresult.CUDA_SUCCESS

    def __getattribute__(self, name):
        if name.startswith("cu"):
            object.__getattribute__(self, "called").add(name)
        return object.__getattribute__(self, name)

    def cuInit(self, flags):
        return (self.init_error or self.ok,)

    def cuDeviceGet(self, ordinal):
        return self.ok, 0

    def cuDeviceGetAttribute(self, attr, dev):
        major = attr == self.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
        return self.ok, 8 if major else 6

    def cuDeviceGetName(self, length, dev):
        return self.ok, b"Fake GPU\0\0\0"

    def cuDriverGetVersion(self):
        return self.ok, 13000

    def cuDevicePrimaryCtxRetain(self, dev):
        return self.ok, "ctx"

    def cuCtxSetCurrent(self, ctx):
        return (self.ok,)

    def cuCtxSynchronize(self):
        return (self.ok,)

    def cuGetErrorString(self, err):
        return self.ok, b"fake error text"

    def cuMemAlloc(self, nbytes):
        buf = ctypes.create_string_buffer(nbytes)
        self.memory[ctypes.addressof(buf)] = buf
        return self.ok, self.CUdeviceptr(ctypes.addressof(buf))

    def cuMemFree(self, ptr):
        del self.memory[int(ptr)]
        return (self.ok,)

    def cuMemcpyHtoD(self, dst, src_host, nbytes):
        ctypes.memmove(int(dst), src_host, nbytes)
        return (self.ok,)

    def cuMemcpyDtoH(self, dst_host, src, nbytes):
        ctypes.memmove(dst_host, int(src), nbytes)
        return (self.ok,)

    def cuModuleLoadData(self, image):
        assert image[:4] == b"\x7fELF" or image.endswith(b"\0"), "PTX must reach the driver NUL-terminated"
        self.images.append(image)
        return self.ok, "module"

    def cuModuleGetFunction(self, module, name):
        if name != b"scale_add":
            return self.CUresult.CUDA_ERROR_NOT_FOUND, None
        return self.ok, "scale_add"

    def cuModuleUnload(self, module):
        return (self.ok,)

    def cuLaunchKernel(self, f, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        if self.launch_error:
            return (self.launch_error,)
        self.launches.append(((gx, gy, gz), (bx, by, bz)))
        # scale_add(float* out, const float* a, int n): read each argument through its pointer
        arg = (ctypes.c_void_p * 3).from_address(params)
        out = ctypes.c_uint64.from_address(arg[0]).value
        a = ctypes.c_uint64.from_address(arg[1]).value
        n = ctypes.c_int32.from_address(arg[2]).value
        i = np.arange(gx * bx)
        i = i[i < n]
        out_arr = np.ctypeslib.as_array((ctypes.c_float * n).from_address(out))
        a_arr = np.ctypeslib.as_array((ctypes.c_float * n).from_address(a))
        out_arr[i] = 2.0 * a_arr[i] + 1.0
        return (self.ok,)

    def cuEventCreate(self, flags):
        return self.ok, [0.0]

    def cuEventRecord(self, event, stream):
        event[0] = time.perf_counter()
        return (self.ok,)

    def cuEventSynchronize(self, event):
        return (self.ok,)

    def cuEventElapsedTime(self, start, end):
        return self.ok, (end[0] - start[0]) * 1e3

    def cuEventDestroy(self, event):
        return (self.ok,)


@pytest.fixture
def fake_driver(monkeypatch):
    fake = FakeDriver(rcuda.cu)
    monkeypatch.setattr(rcuda, "cu", fake)
    return fake


def test_device_plumbing_against_emulated_driver(fake_driver):
    dev = rcuda.CUDADevice()
    assert dev.compute_capability == (8, 6) and dev.device_name == "Fake GPU" and dev.target == ("sm_86", "cubin")
    a = np.random.default_rng(0).standard_normal(100).astype(np.float32)
    ha, hout = dev.allocator.alloc(a.nbytes), dev.allocator.alloc(a.nbytes)
    dev.allocator.copyin(ha, memoryview(a).cast("B"))
    prg = dev.program("scale_add", dev.compile(ELEMENTWISE))
    assert fake_driver.images[-1][:4] == b"\x7fELF", "compile() must hand the driver a CUBIN"
    assert prg(hout, ha, a.size, global_size=(4, 1, 1), local_size=(32, 1, 1)) is None
    elapsed = prg(hout, ha, a.size, global_size=(4,), local_size=(32,), wait=True)
    assert isinstance(elapsed, float) and elapsed >= 0.0
    assert fake_driver.launches == [((4, 1, 1), (32, 1, 1))] * 2
    dev.synchronize()
    out = np.empty_like(a)
    dev.allocator.copyout(memoryview(out).cast("B"), hout)
    np.testing.assert_array_equal(out, 2.0 * a + 1.0)
    with pytest.raises(ValueError):
        dev.allocator.copyin(ha, memoryview(np.zeros(200, np.float32)).cast("B"))
    dev.allocator.free(ha)
    dev.allocator.free(hout)
    assert fake_driver.memory == {}
    missing = sorted(name for name in fake_driver.called if not hasattr(fake_driver.real, name))
    assert missing == [], f"runtime.cuda calls functions cuda-python does not have: {missing}"


def test_ptx_binary_is_nul_terminated_for_the_driver(fake_driver):
    dev = rcuda.CUDADevice()
    dev.program("scale_add", rcuda.nvrtc_compile(ELEMENTWISE, "compute_80", "ptx"))
    assert fake_driver.images[-1].endswith(b"\0")


def test_unknown_kernel_name_is_compile_error(fake_driver):
    dev = rcuda.CUDADevice()
    with pytest.raises(CompileError, match="no kernel named 'other'"):
        dev.program("other", dev.compile(ELEMENTWISE))


def test_launch_failure_names_kernel_and_error(monkeypatch):
    fake = FakeDriver(rcuda.cu, launch_error=rcuda.cu.CUresult.CUDA_ERROR_INVALID_VALUE)
    monkeypatch.setattr(rcuda, "cu", fake)
    dev = rcuda.CUDADevice()
    prg = dev.program("scale_add", dev.compile(ELEMENTWISE))
    with pytest.raises(rcuda.CUDAError, match="scale_add.*CUDA_ERROR_INVALID_VALUE"):
        prg(dev.allocator.alloc(4), dev.allocator.alloc(4), 1)


def test_no_gpu_error_from_cuinit_is_one_line(monkeypatch):
    monkeypatch.setattr(rcuda, "cu", FakeDriver(rcuda.cu, init_error=rcuda.cu.CUresult.CUDA_ERROR_NO_DEVICE))
    with pytest.raises(DeviceUnavailable) as info:
        rcuda.CUDADevice()
    assert str(info.value) == "CUDA device unavailable: no CUDA-capable GPU found (CUDA_ERROR_NO_DEVICE)"


# --- a real GPU, where there is one --------------------------------------------------------------------------

@needs_gpu
def test_real_gpu_elementwise_and_reduction():
    x = np.random.default_rng(3).standard_normal(5000).astype(np.float32)
    hx, hout = DEVICE.allocator.alloc(x.nbytes), DEVICE.allocator.alloc(x.nbytes)
    DEVICE.allocator.copyin(hx, memoryview(x).cast("B"))
    DEVICE.program("scale_add", DEVICE.compile(ELEMENTWISE))(hout, hx, x.size, global_size=(40,),
                                                             local_size=(128,), wait=True)
    out = np.empty_like(x)
    DEVICE.allocator.copyout(memoryview(out).cast("B"), hout)
    np.testing.assert_allclose(out, 2 * x + 1, rtol=1e-6)
    blocks = 8
    hsum = DEVICE.allocator.alloc(blocks * 4)
    elapsed = DEVICE.program("block_sum", DEVICE.compile(REDUCE))(hsum, hx, x.size, global_size=(blocks,),
                                                                   local_size=(128,), wait=True)
    assert elapsed >= 0.0
    partial = np.empty(blocks, np.float32)
    DEVICE.allocator.copyout(memoryview(partial).cast("B"), hsum)
    np.testing.assert_allclose(partial.sum(dtype=np.float64), x.sum(dtype=np.float64), rtol=1e-4, atol=1e-3)
