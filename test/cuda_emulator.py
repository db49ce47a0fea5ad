"""Test harness: run CUDA kernels rendered by codegen/cuda.py on the CPU, for machines without an NVIDIA GPU.

Not a user backend. The test fixture registers it as the device "CUDAEMU" (`register()`), and then every
kernel of a test on that device goes through the CUDA renderer and
1. is compiled by NVRTC to PTX and CUBIN for sm_80 and sm_90, and the PTX assembled by the toolkit's ptxas
   (`runtime.nvcheck.check_cuda_source`): the source is valid CUDA and the PTX valid for both GPUs;
2. is compiled by the system g++ together with `cuda_emulator_shim.h` (blocks, threads as fibers with real
   `__syncthreads()` barriers, `__shared__` memory per block) and run on the launch sizes the codegen chose,
   so a differential test against numpy/torch catches indexing, launch-size and barrier bugs.
The rendered source is compiled unchanged; only the shim and a stand-in `cuda_fp16.h` surround it.

Buffers are host memory with guard bytes on both sides; a kernel that writes outside its buffers fails the
launch with an error naming the buffer. The compiled shared objects are cached on disk (runtime.cache).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import subprocess
import tempfile

import numpy as np

from codegen.cuda import CUDARenderer
from runtime import Allocator, CompileError, Device, DeviceUnavailable, Program
from runtime.cache import cached_compile

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM = os.path.join(HERE, "cuda_emulator_shim.h")
INCLUDE = os.path.join(HERE, "cuda_emulator_include")
GUARD = 4096                      # bytes of canary on each side of a buffer
CANARY = 0xA5
CXXFLAGS = ["-std=c++17", "-O1", "-shared", "-fPIC", "-fwrapv", "-fno-strict-aliasing", "-ffp-contract=off",
            "-w"]
_KERNEL_RE = re.compile(r'extern "C" __global__ void(?: __launch_bounds__\(\d+\))? (\w+)\(')

# what the suite compiled: kernel names checked by NVRTC (+ ptxas) and the tools used
stats = {"nvrtc_checked": 0, "ptxas_checked": 0, "launches": 0, "kernels": set(), "tools": set()}


class EmulatedCUDARenderer(CUDARenderer):
    device = "CUDAEMU"


@functools.lru_cache(maxsize=None)
def _gxx() -> tuple[str, str]:
    """(path, version line) of g++."""
    try:
        out = subprocess.run(["g++", "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise DeviceUnavailable(f"CUDAEMU unavailable: g++ not found ({e})") from None
    return "g++", out.splitlines()[0]


def _shim_digest() -> str:
    h = hashlib.sha256()
    for path in (SHIM, os.path.join(INCLUDE, "cuda_fp16.h")):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def host_source(src: str) -> str:
    """The translation unit g++ compiles: the shim, the kernel source unchanged, and one launch entry per
    kernel (`tj_launch_<name>`) that unpacks the argument array into the kernel's parameter types."""
    names = _KERNEL_RE.findall(src)
    if not names:
        raise CompileError("CUDAEMU: no extern \"C\" __global__ kernel in the source", src)
    barrier = "true" if "__syncthreads" in src else "false"
    entries = []
    for name in names:
        entries.append(f"static void tj_body_{name}(void** a) {{ tj::call({name}, a); }}\n"
                       f'extern "C" int tj_launch_{name}(void** a, const unsigned* grid, const unsigned* block, '
                       f"char* err, int errlen) {{\n"
                       f"  return tj_launch(tj_body_{name}, {barrier}, a, grid, block, err, errlen);\n}}")
    return f'#include "cuda_emulator_shim.h"\n#line 1 "kernel.cu"\n{src}\n' + "\n".join(entries) + "\n"


def _gxx_build(unit: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="tinyjit-cudaemu-") as tmp:
        cpp, so = os.path.join(tmp, "kernel.cpp"), os.path.join(tmp, "kernel.so")
        with open(cpp, "w") as f:
            f.write(unit)
        result = subprocess.run([_gxx()[0], *CXXFLAGS, f"-I{HERE}", f"-I{INCLUDE}", cpp, "-o", so], capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise CompileError("CUDAEMU: g++ rejected the CUDA kernel (with the emulation shim)", unit,
                               result.stderr)
        with open(so, "rb") as f:
            return f.read()


class EmuBuffer:
    """Host memory with GUARD canary bytes on both sides of the `nbytes` the kernel may touch."""
    __slots__ = ("raw", "nbytes")

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.raw = np.full(nbytes + 2 * GUARD, CANARY, dtype=np.uint8)
        self.raw[GUARD:GUARD + nbytes] = 0

    @property
    def ptr(self) -> int:
        return self.raw.ctypes.data + GUARD

    def data(self) -> np.ndarray:
        return self.raw[GUARD:GUARD + self.nbytes]

    def guards_intact(self) -> bool:
        return bool((self.raw[:GUARD] == CANARY).all() and (self.raw[GUARD + self.nbytes:] == CANARY).all())


class EmuAllocator(Allocator):
    def alloc(self, nbytes: int) -> EmuBuffer:
        return EmuBuffer(max(int(nbytes), 1))

    def free(self, handle: EmuBuffer) -> None:
        pass

    def copyin(self, handle: EmuBuffer, src: memoryview) -> None:
        src = np.frombuffer(memoryview(src).cast("B"), dtype=np.uint8)
        if src.nbytes > handle.nbytes:
            raise ValueError(f"copyin of {src.nbytes} bytes into a buffer of {handle.nbytes}")
        handle.data()[:src.nbytes] = src

    def copyout(self, dest: memoryview, handle: EmuBuffer) -> None:
        dest = np.frombuffer(memoryview(dest).cast("B"), dtype=np.uint8)
        if dest.nbytes > handle.nbytes:
            raise ValueError(f"copyout of {dest.nbytes} bytes from a buffer of {handle.nbytes}")
        dest[:] = handle.data()[:dest.nbytes]


class EmuProgram(Program):
    def __init__(self, name: str, binary: bytes):
        self.name = name
        fd, self.path = tempfile.mkstemp(prefix=f"tinyjit-cudaemu-{name}-", suffix=".so")
        with os.fdopen(fd, "wb") as f:
            f.write(binary)
        try:
            self.lib = ctypes.CDLL(self.path)
        finally:
            os.unlink(self.path)   # the loaded image stays mapped
        try:
            self.fn = getattr(self.lib, f"tj_launch_{name}")
        except AttributeError:
            raise CompileError(f"CUDAEMU: the module has no kernel named {name!r}") from None
        self.fn.restype = ctypes.c_int

    def __call__(self, *bufs, global_size=(1, 1, 1), local_size=(1, 1, 1), wait=False):
        grid = tuple(int(g) for g in global_size) + (1,) * (3 - len(global_size))
        block = tuple(int(b) for b in local_size) + (1,) * (3 - len(local_size))
        if len(grid) != 3 or len(block) != 3 or min(grid + block) < 1:
            raise ValueError(f"bad launch size: grid {global_size}, block {local_size}")
        if block[0] > 1024 or block[1] > 1024 or block[2] > 64 or block[0] * block[1] * block[2] > 1024:
            raise ValueError(f"kernel {self.name!r}: block {block} exceeds CUDA's limits (1024, 1024, 64; 1024)")
        if grid[1] > 65535 or grid[2] > 65535 or grid[0] > 2 ** 31 - 1:
            raise ValueError(f"kernel {self.name!r}: grid {grid} exceeds CUDA's limits")
        ptrs = (ctypes.c_void_p * max(len(bufs), 1))(*[b.ptr for b in bufs])
        err = ctypes.create_string_buffer(512)
        rc = self.fn(ptrs, (ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), err, len(err))
        stats["launches"] += 1
        if rc != 0:
            raise RuntimeError(f"CUDAEMU kernel {self.name!r} (grid {grid}, block {block}): {err.value.decode()}")
        for i, b in enumerate(bufs):
            if not b.guards_intact():
                raise RuntimeError(f"CUDAEMU kernel {self.name!r} (grid {grid}, block {block}) wrote outside "
                                   f"buffer {i} ({b.nbytes} bytes)")
        return 0.0 if wait else None


class EmulatedCUDADevice(Device):
    """The runtime device behind "CUDAEMU": NVRTC+ptxas check, then g++ and the CPU launch emulation."""
    name = "CUDAEMU"

    def __init__(self):
        from runtime.nvcheck import check_cuda_source   # raises DeviceUnavailable without NVRTC
        from runtime.cuda import nvrtc_version
        nvrtc_version()
        self._check = check_cuda_source
        self.allocator = EmuAllocator()

    def compile(self, src: str) -> bytes:
        report = self._check(src)   # CompileError when NVRTC or ptxas rejects the kernel
        stats["nvrtc_checked"] += 1
        stats["ptxas_checked"] += report["ptxas"] is not None
        stats["kernels"].update(_KERNEL_RE.findall(src))
        stats["tools"].add(report["nvrtc"] + (f", {report['ptxas']}" if report["ptxas"] else ""))
        return cached_compile("cudaemu", self.cache_key(), host_source(src), _gxx_build)

    def cache_key(self) -> tuple[str, ...]:
        return ("cudaemu", _gxx()[1], " ".join(CXXFLAGS), _shim_digest())

    def program(self, name: str, binary: bytes) -> EmuProgram:
        return EmuProgram(name, binary)

    def synchronize(self) -> None:
        pass


def register() -> None:
    """Make "CUDAEMU" a device name (tests only)."""
    from tinyjit.device import BACKENDS
    BACKENDS["CUDAEMU"] = ("cuda_emulator", "EmulatedCUDADevice", "cuda_emulator", "EmulatedCUDARenderer")
