"""OpenCL backend on pyopencl: buffers, program binaries (cached on disk) and timed kernel launches.

Device choice: env vars CL_PLATFORM and CL_DEVICE are indices (default 0 and 0) into `cl.get_platforms()`
and that platform's `get_devices()`. Without a GPU, PoCL (`pip install pocl-binary-distribution`) provides
an OpenCL device on the CPU, which is what the tests run on.

Launch convention shared with the other backends: `global_size` counts work-groups per dimension and
`local_size` the work-items per group, so the OpenCL NDRange is their element-wise product.
"""
from __future__ import annotations

import fcntl
import os
import re
import tempfile
from contextlib import contextmanager

import numpy as np

from runtime import Allocator, CompileError, Device, DeviceUnavailable, Program
from runtime.cache import cached_compile

try:
    import pyopencl as cl
except ImportError:  # the package is an optional extra
    cl = None

INSTALL_HINT = "pip install 'tinyjit[opencl]'"
LOCK_DIR = os.path.join(tempfile.gettempdir(), f"tinyjit-opencl-locks-{os.getuid()}")


@contextmanager
def _kernel_lock(name: str):
    """Hold a lock shared by every process of this machine while building or loading kernel `name`.

    PoCL (the CPU OpenCL) keeps a kernel cache on disk (~/.cache/pocl) that is not safe for processes building the
    same kernel at the same moment (pytest-xdist workers, MPI ranks running one program): one of them, and every
    later load of that entry, got a program with no kernels ("CL program has no kernel named ..."). Kernel names
    carry a hash of their code, so only builds of one kernel wait for each other."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    with open(os.path.join(LOCK_DIR, name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _kernel_name(src: str) -> str:
    match = re.search(r"__kernel\b.*?\bvoid\s+(\w+)\s*\(", src, re.DOTALL)   # a kernel returns void
    return match.group(1) if match else "program"


def _unavailable(reason: str) -> DeviceUnavailable:
    return DeviceUnavailable(f"CL device unavailable: {reason}")


def _env_index(var: str, choices: list[str]) -> int:
    """The index chosen by env var `var` (default 0), checked against `choices` (names, for the message)."""
    raw = os.environ.get(var, "0").strip() or "0"
    valid = ", ".join(f"{i} ({name})" for i, name in enumerate(choices))
    try:
        index = int(raw)
    except ValueError:
        index = -1
    if not 0 <= index < len(choices):
        raise _unavailable(f"{var}={raw!r} is not valid; valid values: {valid}")
    return index


def _launch_dims(global_size, local_size) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """NDRange global and local sizes from (work-groups, work-items per group), padded to the same rank."""
    groups, local = tuple(int(g) for g in global_size), tuple(int(x) for x in local_size)
    rank = max(len(groups), len(local))
    groups, local = groups + (1,) * (rank - len(groups)), local + (1,) * (rank - len(local))
    if rank > 3 or min(groups + local, default=1) < 1:
        raise ValueError(f"bad launch size: global_size={global_size} local_size={local_size}")
    return tuple(g * x for g, x in zip(groups, local)), local


class CLAllocator(Allocator):
    """cl.Buffer handles. Copies block, so the caller may reuse its host memory as soon as they return."""

    def __init__(self, context, queue):
        self.context, self.queue = context, queue

    def alloc(self, nbytes: int):
        # OpenCL rejects zero-sized buffers; an empty tensor still needs a handle.
        return cl.Buffer(self.context, cl.mem_flags.READ_WRITE, size=max(int(nbytes), 1))

    def free(self, handle) -> None:
        handle.release()

    def copyin(self, handle, src: memoryview) -> None:
        src = memoryview(src).cast("B")
        if src.nbytes > handle.size:
            raise ValueError(f"copyin of {src.nbytes} bytes into a buffer of {handle.size}")
        if src.nbytes:
            cl.enqueue_copy(self.queue, handle, src, is_blocking=True)

    def copyout(self, dest: memoryview, handle) -> None:
        dest = memoryview(dest).cast("B")
        if dest.nbytes > handle.size:
            raise ValueError(f"copyout of {dest.nbytes} bytes from a buffer of {handle.size}")
        if dest.nbytes:
            cl.enqueue_copy(self.queue, dest, handle, is_blocking=True)


class CLProgram(Program):
    """One kernel of a program binary, ready to launch."""

    def __init__(self, device: "CLDevice", name: str, binary: bytes):
        self.device, self.name = device, name
        try:
            with _kernel_lock(name):
                self.program = cl.Program(device.context, [device.device], [binary]).build()
        except cl.Error as e:
            raise CompileError(f"CL could not load the program binary of kernel {name!r}", None, str(e)) from None
        try:
            self.kernel = cl.Kernel(self.program, name)
        except cl.Error:
            names = self.program.kernel_names or "(none)"
            raise CompileError(f"CL program has no kernel named {name!r}; kernels: {names}") from None

    def __call__(self, *bufs, global_size=(1, 1, 1), local_size=(1, 1, 1), wait=False) -> float | None:
        """Launch; plain Python ints are passed as 32-bit `int` kernel arguments, everything else as buffers."""
        gsize, lsize = _launch_dims(global_size, local_size)
        try:
            for i, arg in enumerate(bufs):
                self.kernel.set_arg(i, np.int32(arg) if isinstance(arg, (int, np.integer)) else arg)
            event = cl.enqueue_nd_range_kernel(self.device.queue, self.kernel, gsize, lsize)
        except cl.Error as e:
            where = f"kernel {self.name!r} (global {gsize}, local {lsize})"
            raise RuntimeError(f"CL launch of {where} failed: {e}") from None
        if not wait:
            return None
        event.wait()
        return (event.profile.end - event.profile.start) * 1e-9


class CLDevice(Device):
    name = "CL"
    # passed to clBuildProgram; part of the cache key. float `/` and sqrt correctly rounded, as on every backend
    build_options = "-cl-fp32-correctly-rounded-divide-sqrt"

    def __init__(self):
        if cl is None:
            raise _unavailable(f"pyopencl is not installed ({INSTALL_HINT})")
        try:
            platforms = cl.get_platforms()
        except cl.Error:  # no ICD loader / no platform registered
            platforms = []
        if not platforms:
            raise _unavailable(f"no OpenCL platform found (for OpenCL on the CPU: {INSTALL_HINT})")
        self.platform = platforms[_env_index("CL_PLATFORM", [p.name for p in platforms])]
        try:
            devices = self.platform.get_devices()
        except cl.Error:
            devices = []
        if not devices:
            raise _unavailable(f"platform {self.platform.name!r} has no devices (choose another with CL_PLATFORM)")
        self.device = devices[_env_index("CL_DEVICE", [d.name for d in devices])]
        try:
            self.context = cl.Context([self.device])
            self.queue = cl.CommandQueue(self.context, self.device,
                                         properties=cl.command_queue_properties.PROFILING_ENABLE)
        except cl.Error as e:
            raise _unavailable(f"cannot open {self.device.name!r}: {e}".replace("\n", " ")) from None
        self.allocator = CLAllocator(self.context, self.queue)

    def cache_key(self) -> tuple[str, ...]:
        """Everything besides the source that changes the binary the driver produces."""
        return (f"{self.platform.name} {self.platform.version}", self.device.name, self.device.version,
                self.device.driver_version, self.build_options)

    def _build(self, src: str) -> bytes:
        """Source → program binary for this device (no cache)."""
        program = cl.Program(self.context, src)
        try:
            with _kernel_lock(_kernel_name(src)):
                program.build(options=self.build_options, devices=[self.device])
        except cl.Error as e:
            try:  # the clean log; pyopencl's message repeats it wrapped in its own text
                log = program.get_build_info(self.device, cl.program_build_info.LOG)
            except Exception:  # pyopencl's source-cache path may not expose the failed program object
                log = ""
            raise CompileError(f"OpenCL compilation failed on {self.device.name!r}", src, log or str(e)) from None
        return bytes(program.binaries[0])

    def compile(self, src: str) -> bytes:
        return cached_compile("opencl", self.cache_key(), src, self._build)

    def program(self, name: str, binary: bytes) -> CLProgram:
        return CLProgram(self, name, binary)

    def synchronize(self) -> None:
        self.queue.finish()
