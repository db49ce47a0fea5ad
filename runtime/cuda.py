"""CUDA backend on cuda-python: the driver API for memory and launches, NVRTC for compiling.

Compiled output: `CUDADevice.compile` asks NVRTC for a CUBIN for the device's own architecture (`sm_XY`), not
for PTX. NVRTC from PyPI is usually newer than the installed driver, and a driver refuses PTX whose ISA
version it does not know (CUDA_ERROR_UNSUPPORTED_PTX_VERSION), while a CUBIN for the exact architecture
loads on any driver that supports the GPU. Only when NVRTC does not know the device's architecture (a GPU
newer than NVRTC) do we fall back to PTX for the newest architecture NVRTC knows and let the driver JIT it.
`nvrtc_compile(src, arch, "ptx")` still gives the PTX for reading (DEBUG) and for `runtime.nvcheck`.

`nvrtc_compile` needs no GPU and no driver, only NVRTC (the nvidia-cuda-nvrtc wheel), so CI without a GPU
still compiles every CUDA kernel.
"""
from __future__ import annotations

import ctypes
import functools
import os

import numpy as np

from runtime import Allocator, CompileError, Device, DeviceUnavailable, Program
from runtime.cache import cached_compile

try:
    from cuda.bindings import driver as cu, nvrtc
except ImportError:
    try:  # cuda-python before 12.6 had this layout, with the same functions
        from cuda import cuda as cu, nvrtc  # type: ignore[no-redef]
    except ImportError:
        cu = nvrtc = None

INSTALL_HINT = "pip install 'tinyjit[cuda]'"
_ELF_MAGIC = b"\x7fELF"


class CUDAError(RuntimeError):
    """A CUDA driver call failed after the device was opened (launch failure, out of memory, ...)."""


# --- NVRTC ---------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def nvrtc_version() -> str:
    """The loaded NVRTC's version as 'major.minor'; DeviceUnavailable when cuda-python or libnvrtc is missing."""
    if nvrtc is None:
        raise DeviceUnavailable(f"NVRTC unavailable: cuda-python is not installed ({INSTALL_HINT})")
    try:
        err, major, minor = nvrtc.nvrtcVersion()
    except Exception as e:  # cuda-python raises its own loader errors when libnvrtc.so cannot be found
        first_line = (str(e).splitlines() or [""])[0]
        raise DeviceUnavailable(f"NVRTC unavailable: {type(e).__name__}: {first_line} "
                                f"({INSTALL_HINT} installs nvidia-cuda-nvrtc)") from None
    _nvrtc_check(err, "nvrtcVersion")
    return f"{major}.{minor}"


@functools.lru_cache(maxsize=None)
def nvrtc_supported_archs() -> tuple[int, ...]:
    """Compute capabilities NVRTC can compile for, e.g. (75, 80, 86, ..., 120)."""
    nvrtc_version()
    err, archs = nvrtc.nvrtcGetSupportedArchs()
    _nvrtc_check(err, "nvrtcGetSupportedArchs")
    return tuple(int(a) for a in archs)


@functools.lru_cache(maxsize=None)
def cuda_include_dirs() -> tuple[str, ...]:
    """Directories with the CUDA headers (cuda_fp16.h ...) that NVRTC itself does not ship.

    NVRTC has no default include path, and the nvidia-cuda-nvrtc wheel carries only nvrtc.h. The headers come
    from a CUDA toolkit (CUDA_HOME / CUDA_PATH / /usr/local/cuda) or from a wheel that ships them; cuda-python's
    pathfinder knows those places, and the plain paths are the fallback for older cuda-python.
    """
    found = []
    try:
        from cuda.pathfinder import find_nvidia_header_directory
        found.append(find_nvidia_header_directory("cudart"))
    except Exception:  # no pathfinder (old cuda-python) or nothing found: try the usual places
        pass
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            found.append(os.path.join(root, "include"))
    dirs = []
    for d in found:
        if d and os.path.isfile(os.path.join(d, "cuda_fp16.h")) and os.path.realpath(d) not in dirs:
            dirs.append(os.path.realpath(d))
    return tuple(dirs[:1])  # one toolkit's headers; mixing two versions would be worse than either


def _nvrtc_check(err, what: str) -> None:
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise CompileError(f"{what} failed: {_nvrtc_error_name(err)}")


def _nvrtc_error_name(err) -> str:
    try:
        return nvrtc.nvrtcGetErrorString(err)[1].decode()
    except Exception:
        return str(err)


def _nvrtc_output(prog, size_fn, get_fn) -> bytes:
    err, size = size_fn(prog)
    _nvrtc_check(err, size_fn.__name__)
    buf = b" " * size
    (err,) = get_fn(prog, buf)
    _nvrtc_check(err, get_fn.__name__)
    return buf


# IEEE float semantics, as on every backend: no contraction of a * b + c into an FMA (a value recomputed in another
# kernel must come out bitwise the same; renderers write the FMAs they want explicitly), correctly rounded division
# and sqrt, denormals kept (these three are NVRTC's defaults, stated so that they stay)
FLOAT_SEMANTICS = ("--fmad=false", "--prec-div=true", "--prec-sqrt=true", "--ftz=false")


def nvrtc_options(arch: str, opts=()) -> list[str]:
    """The full NVRTC option list used for `arch` (also part of cache keys)."""
    return [f"--gpu-architecture={arch}", *FLOAT_SEMANTICS, *(f"-I{d}" for d in cuda_include_dirs()), *opts]


def nvrtc_compile(src: str, arch: str = "sm_80", target: str = "ptx", opts=()) -> bytes:
    """CUDA C++ source → PTX text (without the trailing NUL) or CUBIN, with NVRTC. No GPU or driver needed.

    `arch` is a real architecture `sm_XY` (needed for CUBIN) or a virtual one `compute_XY` (PTX only).
    Raises CompileError with the numbered source and NVRTC's log when the source (or an option) is bad.
    """
    if target not in ("ptx", "cubin"):
        raise ValueError(f"target must be 'ptx' or 'cubin', not {target!r}")
    if target == "cubin" and not arch.startswith("sm_"):
        raise ValueError(f"a CUBIN needs a real architecture like sm_80, not {arch!r}")
    version = nvrtc_version()
    options = [o.encode() for o in nvrtc_options(arch, opts)]
    err, prog = nvrtc.nvrtcCreateProgram(src.encode(), b"kernel.cu", 0, [], [])
    _nvrtc_check(err, "nvrtcCreateProgram")
    try:
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(options), options)
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            log = _nvrtc_output(prog, nvrtc.nvrtcGetProgramLogSize, nvrtc.nvrtcGetProgramLog)
            log = log.rstrip(b"\0").decode(errors="replace")
            raise CompileError(f"NVRTC {version} failed for {arch} ({_nvrtc_error_name(err)}); options: "
                               f"{' '.join(o.decode() for o in options)}", src, log)
        if target == "ptx":
            return _nvrtc_output(prog, nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX).rstrip(b"\0")
        return _nvrtc_output(prog, nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN)
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def nvrtc_cache_key(arch: str, target: str, opts=()) -> tuple[str, ...]:
    """What decides NVRTC's output besides the source: its version, arch, target and options."""
    return (f"nvrtc {nvrtc_version()}", arch, target, " ".join(nvrtc_options(arch, opts)))


def nvrtc_compile_cached(src: str, arch: str, target: str, opts=()) -> bytes:
    """`nvrtc_compile` through the disk cache (kind "cuda"), keyed by `nvrtc_cache_key`."""
    return cached_compile("cuda", nvrtc_cache_key(arch, target, opts), src,
                          lambda s: nvrtc_compile(s, arch, target, opts))


def pick_target(compute_capability: tuple[int, int], supported: tuple[int, ...]) -> tuple[str, str]:
    """(arch, target) to build for a device: CUBIN for its own arch when NVRTC knows it (see module doc),
    else PTX for the newest virtual arch NVRTC knows that the device can run."""
    cc = compute_capability[0] * 10 + compute_capability[1]
    if cc in supported:
        return f"sm_{cc}", "cubin"
    older = [a for a in supported if a <= cc]
    if not older:
        raise CompileError(f"NVRTC {nvrtc_version()} cannot compile for compute capability "
                           f"{compute_capability[0]}.{compute_capability[1]}; it supports {list(supported)}")
    return f"compute_{max(older)}", "ptx"


# --- driver --------------------------------------------------------------------------------------------------

_INIT_REASONS = {
    "CUDA_ERROR_NO_DEVICE": "no CUDA-capable GPU found",
    "CUDA_ERROR_INSUFFICIENT_DRIVER": "the NVIDIA driver is too old for this cuda-python (update the driver)",
    "CUDA_ERROR_STUB_LIBRARY": "libcuda.so is the toolkit's stub, not a real NVIDIA driver",
    "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH": "the NVIDIA kernel module and libcuda.so versions differ (reboot?)",
}


def _error_name(err) -> str:
    name = getattr(err, "name", None)
    return name if name else f"CUresult {int(err)}"


def _check(result, what: str):
    """Unpack a cuda-python result tuple (CUresult, *values); raise CUDAError naming the call on failure."""
    err, *values = result
    if err != cu.CUresult.CUDA_SUCCESS:
        try:
            text = cu.cuGetErrorString(err)[1].decode()
        except Exception:
            text = ""
        raise CUDAError(f"{what} failed: {_error_name(err)}" + (f" ({text})" if text else ""))
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


class CUDABuffer:
    """Device memory: the CUdeviceptr and its size (the size lets copies be checked before the driver sees them)."""
    __slots__ = ("ptr", "nbytes")

    def __init__(self, ptr, nbytes: int):
        self.ptr, self.nbytes = ptr, nbytes

    def __int__(self) -> int:
        return int(self.ptr)


def _host_address(mv: memoryview) -> int:
    return np.frombuffer(mv, dtype=np.uint8).ctypes.data


class CUDAAllocator(Allocator):
    """cuMemAlloc'd buffers; copies are synchronous (pageable host memory), so host memory is free on return."""

    def __init__(self, device: "CUDADevice"):
        self.device = device

    def alloc(self, nbytes: int) -> CUDABuffer:
        self.device.make_current()
        return CUDABuffer(_check(cu.cuMemAlloc(max(int(nbytes), 1)), f"cuMemAlloc({nbytes})"), int(nbytes))

    def free(self, handle: CUDABuffer) -> None:
        _check(cu.cuMemFree(handle.ptr), "cuMemFree")

    def copyin(self, handle: CUDABuffer, src: memoryview) -> None:
        src = memoryview(src).cast("B")
        if src.nbytes > handle.nbytes:
            raise ValueError(f"copyin of {src.nbytes} bytes into a buffer of {handle.nbytes}")
        if src.nbytes:
            self.device.make_current()
            _check(cu.cuMemcpyHtoD(handle.ptr, _host_address(src), src.nbytes), "cuMemcpyHtoD")

    def copyout(self, dest: memoryview, handle: CUDABuffer) -> None:
        dest = memoryview(dest).cast("B")
        if dest.readonly:
            raise ValueError("copyout needs a writable destination")
        if dest.nbytes > handle.nbytes:
            raise ValueError(f"copyout of {dest.nbytes} bytes from a buffer of {handle.nbytes}")
        if dest.nbytes:
            self.device.make_current()
            _check(cu.cuMemcpyDtoH(_host_address(dest), handle.ptr, dest.nbytes), "cuMemcpyDtoH")


def _dims(size) -> tuple[int, int, int]:
    dims = tuple(int(s) for s in size) + (1,) * (3 - len(tuple(size)))
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"bad launch size {size}")
    return dims


class CUDAProgram(Program):
    """One `extern "C"` kernel of a loaded module."""

    def __init__(self, device: "CUDADevice", name: str, binary: bytes):
        self.device, self.name = device, name
        device.make_current()
        # the driver reads PTX as a NUL-terminated string; a CUBIN is an ELF image passed as is
        image = binary if binary[:4] == _ELF_MAGIC else binary.rstrip(b"\0") + b"\0"
        err, module = cu.cuModuleLoadData(image)
        if err != cu.CUresult.CUDA_SUCCESS:
            raise CompileError(f"CUDA could not load the module of kernel {name!r}: {_error_name(err)}")
        self.module = module
        err, function = cu.cuModuleGetFunction(module, name.encode())
        if err != cu.CUresult.CUDA_SUCCESS:
            raise CompileError(f"CUDA module has no kernel named {name!r} ({_error_name(err)}); "
                               "is it declared extern \"C\" __global__?")
        self.function = function
        self._events = None

    def __call__(self, *bufs, global_size=(1, 1, 1), local_size=(1, 1, 1), wait=False) -> float | None:
        """Launch with a grid of `global_size` blocks of `local_size` threads. Buffers are passed as device
        pointers, plain Python ints as 32-bit `int`."""
        grid, block = _dims(global_size), _dims(local_size)
        # kernelParams is an array of pointers, each to the value of one argument; keep the values alive
        values = [ctypes.c_int32(b) if isinstance(b, (int, np.integer)) else ctypes.c_uint64(int(b)) for b in bufs]
        params = (ctypes.c_void_p * max(len(values), 1))(*[ctypes.addressof(v) for v in values])
        self.device.make_current()
        stream = cu.CUstream(0)
        if wait:
            if self._events is None:
                flags = cu.CUevent_flags.CU_EVENT_DEFAULT
                self._events = (_check(cu.cuEventCreate(flags), "cuEventCreate"),
                                _check(cu.cuEventCreate(flags), "cuEventCreate"))
            _check(cu.cuEventRecord(self._events[0], stream), "cuEventRecord")
        _check(cu.cuLaunchKernel(self.function, *grid, *block, 0, stream, ctypes.addressof(params), 0),
               f"launch of kernel {self.name!r} (grid {grid}, block {block})")
        if not wait:
            return None
        start, end = self._events
        _check(cu.cuEventRecord(end, stream), "cuEventRecord")
        _check(cu.cuEventSynchronize(end), f"kernel {self.name!r}")
        return _check(cu.cuEventElapsedTime(start, end), "cuEventElapsedTime") * 1e-3

    def __del__(self):
        try:  # at interpreter exit the driver may already be gone; nothing useful to do then
            for event in self._events or ():
                cu.cuEventDestroy(event)
            cu.cuModuleUnload(self.module)
        except Exception:
            pass


class CUDADevice(Device):
    name = "CUDA"
    nvrtc_opts: tuple[str, ...] = ()  # extra NVRTC options; part of the cache key

    def __init__(self):
        if cu is None:
            raise DeviceUnavailable(f"CUDA device unavailable: cuda-python is not installed ({INSTALL_HINT})")
        try:
            (err,) = cu.cuInit(0)
        except Exception:  # cuda-python raises (e.g. DynamicLibNotFoundError) when libcuda.so cannot be loaded
            raise DeviceUnavailable("CUDA device unavailable: no NVIDIA driver (libcuda.so) found; install the "
                                    "NVIDIA driver on a machine with a GPU (CUDA kernels still compile with "
                                    "runtime.nvcheck)") from None
        if err != cu.CUresult.CUDA_SUCCESS:
            name = _error_name(err)
            raise DeviceUnavailable(f"CUDA device unavailable: {_INIT_REASONS.get(name, 'cuInit failed')} ({name})")
        try:
            self.device = _check(cu.cuDeviceGet(0), "cuDeviceGet")
            attr = cu.CUdevice_attribute
            self.compute_capability = (
                _check(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.device), "cc"),
                _check(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.device), "cc"))
            self.device_name = _check(cu.cuDeviceGetName(256, self.device), "cuDeviceGetName")
            self.device_name = self.device_name.split(b"\0")[0].decode(errors="replace")
            self.driver_version = _check(cu.cuDriverGetVersion(), "cuDriverGetVersion")
            self.context = _check(cu.cuDevicePrimaryCtxRetain(self.device), "cuDevicePrimaryCtxRetain")
        except CUDAError as e:
            raise DeviceUnavailable(f"CUDA device unavailable: {e}") from None
        self.make_current()
        self.allocator = CUDAAllocator(self)

    def make_current(self) -> None:
        """Bind the primary context to the calling thread (contexts are per thread in the driver API)."""
        _check(cu.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    @property
    def target(self) -> tuple[str, str]:
        """(arch, "cubin"|"ptx") that compile() produces for this device."""
        return pick_target(self.compute_capability, nvrtc_supported_archs())

    def compile(self, src: str) -> bytes:
        arch, target = self.target
        return nvrtc_compile_cached(src, arch, target, self.nvrtc_opts)

    def cache_key(self) -> tuple[str, ...]:
        return nvrtc_cache_key(*self.target, self.nvrtc_opts)

    def program(self, name: str, binary: bytes) -> CUDAProgram:
        return CUDAProgram(self, name, binary)

    def synchronize(self) -> None:
        self.make_current()
        _check(cu.cuCtxSynchronize(), "cuCtxSynchronize")
