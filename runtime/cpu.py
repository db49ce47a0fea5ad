"""The CPU backend: LLVM IR compiled by llvmlite (MCJIT) for the host CPU, called through ctypes.

Kernels take `(buffers..., start, end)` and loop their outermost parallel axis over [start, end) (64-bit: an axis
may be longer than 2**31), so a launch is split across a thread pool; ctypes releases the GIL during the call, so
the threads run in parallel.
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from runtime import CompileError, DeviceUnavailable

try:
    import llvmlite.binding as llvm
except ImportError:   # pragma: no cover - llvmlite is a hard dependency
    llvm = None


def cpu_count() -> int:
    """Worker threads: the cores this process may run on, or THREADS=N."""
    env = os.environ.get("THREADS")
    if env:
        return max(1, int(env))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class CPUAllocator:
    """Host memory as numpy byte arrays (64-byte aligned so vector loads never straddle a cache line)."""

    def alloc(self, nbytes: int):
        raw = np.empty(nbytes + 64, dtype=np.uint8)
        start = (-raw.ctypes.data) % 64
        return raw[start:start + nbytes]

    def free(self, handle) -> None:
        pass   # numpy frees it when the last reference goes

    def copyin(self, handle, src: memoryview) -> None:
        np.copyto(handle[:len(src)], np.frombuffer(src, dtype=np.uint8))

    def copyout(self, dest: memoryview, handle) -> None:
        np.copyto(np.frombuffer(dest, dtype=np.uint8), handle[:len(dest)])

    @staticmethod
    def address(handle) -> int:
        return handle.ctypes.data


_THUNK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


class CPUProgram:
    """A compiled kernel, called through its thunk `(void **buffers, int64 start, int64 end)` (codegen.llvmir)."""

    def __init__(self, device: "CPUDevice", name: str, address: int, thunk: int):
        self.device, self.name, self.address, self.thunk = device, name, address, thunk
        self.fn = _THUNK(thunk)

    def __call__(self, *bufs, global_size=(1,), local_size=None, wait=False, threads: int = 1):
        t0 = time.perf_counter() if wait else 0.0
        self.launch(self.args([b.ctypes.data for b in bufs]), global_size[0], threads)
        return time.perf_counter() - t0 if wait else None

    @staticmethod
    def args(ptrs: list[int]):
        """The buffer addresses as the C array a launch takes (keep it: a TinyJit replay reuses it)."""
        return (ctypes.c_void_p * max(len(ptrs), 1))(*ptrs)

    def launch(self, args, n: int, threads: int) -> None:
        """Run the outer loop [0, n) over the buffers in `args`, split into `threads` ranges: the calling thread
        runs the first, the pool the others."""
        fn, fn_args = self.launcher(args, n, threads)
        fn(*fn_args)

    def launcher(self, args, n: int, threads: int):
        """(function, arguments) that launch over `args`: a ctypes call where possible, so a TinyJit replay runs
        each launch as one C call."""
        threads = min(threads, self.device.threads, n)
        if threads <= 1:
            return self.fn, (args, 0, n)
        if self.device.native_pool is not None:
            return self.device.native_pool.launcher(self.thunk, args, n, threads)
        return self._python_pool_launch, (args, n, threads)

    def _python_pool_launch(self, args, n: int, threads: int) -> None:
        chunk = -(-n // threads)
        futures = [self.device.pool.submit(self.fn, args, lo, min(lo + chunk, n)) for lo in range(chunk, n, chunk)]
        self.fn(args, 0, chunk)
        for f in futures:
            f.result()


class CPUDevice:
    name = "CPU"

    def __init__(self):
        if llvm is None:
            raise DeviceUnavailable("CPU device unavailable: llvmlite is not installed (pip install llvmlite)")
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        self.cpu_name = llvm.get_host_cpu_name()
        self.features = llvm.get_host_cpu_features().flatten()
        target = llvm.Target.from_default_triple()
        self.target_machine = target.create_target_machine(cpu=self.cpu_name, features=self.features, opt=3,
                                                           codemodel="jitdefault")
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self.target_machine)
        self._local = threading.local()    # per compiling thread: its own LLVM context and target machine
        self._engine_lock = threading.Lock()
        self.allocator = CPUAllocator()
        self.threads = cpu_count()
        self.pool = ThreadPoolExecutor(max_workers=self.threads) if self.threads > 1 else None
        if hasattr(os, "register_at_fork"):   # a forked child has none of the parent's threads: start new ones
            os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=self.threads) if self.threads > 1 else None
        self.__dict__.pop("native_pool", None)

    def cache_key(self) -> tuple[str, ...]:
        return ("llvm", ".".join(map(str, llvm.llvm_version_info)), self.cpu_name, self.features)

    def _thread_llvm(self):
        """This thread's (LLVM context, target machine): neither may be shared by threads compiling at once."""
        if not hasattr(self._local, "tm"):
            self._local.context = llvm.create_context()
            self._local.tm = llvm.Target.from_default_triple().create_target_machine(
                cpu=self.cpu_name, features=self.features, opt=3, codemodel="jitdefault")
        return self._local.context, self._local.tm

    def _optimized_module(self, src: str):
        context, tm = self._thread_llvm()
        try:
            module = llvm.parse_assembly(src, context=context)
            module.verify()
        except RuntimeError as e:
            raise CompileError("LLVM IR failed to parse or verify", src, str(e)) from None
        tuning = llvm.create_pipeline_tuning_options(speed_level=3)
        tuning.loop_vectorization = True
        tuning.slp_vectorization = True
        builder = llvm.create_pass_builder(tm, tuning)
        builder.getModulePassManager().run(module, builder)
        return module

    def compile_ir(self, src: str) -> bytes:
        """LLVM IR text -> optimized object code. Thread-safe: kernels of a schedule compile in parallel."""
        return self._thread_llvm()[1].emit_object(self._optimized_module(src))

    def debug_listing(self, src: str, machine_code: bool = False) -> str:
        """What `src` compiles to, for DEBUG: the optimized LLVM IR, or the host assembly with machine_code.
        Recomputed on request, so it is shown even when the binary came from the disk cache."""
        module = self._optimized_module(src)
        return self._thread_llvm()[1].emit_assembly(module) if machine_code else str(module)

    def compile(self, src: str) -> bytes:
        try:
            from runtime.cache import cached_compile
        except ImportError:
            return self.compile_ir(src)
        return cached_compile("cpu", self.cache_key(), src, self.compile_ir)

    def program(self, name: str, binary: bytes) -> CPUProgram:
        with self._engine_lock:
            self.engine.add_object_file(llvm.ObjectFileRef.from_data(binary))
            self.engine.finalize_object()
            address = self.engine.get_function_address(name)
            thunk = self.engine.get_function_address(name + "_thunk")
        if not address or not thunk:
            raise CompileError(f"symbol {name} (or its thunk) not found in the compiled LLVM object")
        return CPUProgram(self, name, address, thunk)

    @functools.cached_property
    def native_pool(self):
        """Worker threads that wait for kernels in native code (see runtime.cpu_pool), or None where that pool
        is not available (then a Python ThreadPoolExecutor splits launches)."""
        if self.threads <= 1:
            return None
        from runtime.cpu_pool import NativePool
        return NativePool.create(self, self.threads - 1)

    def synchronize(self) -> None:
        pass
