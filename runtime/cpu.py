"""The CPU backend: LLVM IR compiled by llvmlite (MCJIT) for the host CPU, called through ctypes.

Kernels take `(buffers..., start, end)` and loop their outermost parallel axis over [start, end) (64-bit: an axis
may be longer than 2**31), so a launch is split across a thread pool; ctypes releases the GIL during the call, so
the threads run in parallel. How a launch is split is decided here, once per compiled kernel (`launch_threads`,
`split_range`).
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading
import time
import weakref

import numpy as np

from runtime import Allocator, CompileError, Device, DeviceUnavailable, PreparedLaunch, Program, first_use_lock
from runtime import cpu_symbols
from runtime.env import env, is_set

try:
    import llvmlite.binding as llvm
except ImportError:   # pragma: no cover - llvmlite is a hard dependency
    llvm = None


def cpu_count() -> int:
    """Worker threads: the cores this process may run on, or THREADS=N (checked: 1..MAX_THREADS)."""
    if is_set("THREADS"):
        return env("THREADS")
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# a launch is split over threads only when it does enough work to pay for the hand-off (~10 us)
MIN_WORK_PER_THREADED_LAUNCH = 1 << 16


def split_range(n: int, threads: int) -> tuple[int, int]:
    """How the outer loop [0, n) of a launch is cut for at most `threads` threads: (chunk length, number of
    chunks). The calling thread runs the first chunk, the pool the others."""
    threads = max(1, min(threads, n))
    chunk = max(1, -(-n // threads))
    return chunk, max(1, -(-n // chunk))


def launch_threads(n: int, work: int, threads: int) -> int:
    """The threads a launch over an outer loop of length `n` really uses, for a kernel of `work` loop iterations
    on a pool of `threads`: 1 when it is too small to pay for the hand-off."""
    if work < MIN_WORK_PER_THREADED_LAUNCH or threads <= 1:
        return 1
    return split_range(n, threads)[1]


class HostMemory(np.ndarray):
    """A CPU buffer's memory: a numpy byte array that knows its address (`address`), set once when allocated.
    numpy's `.ctypes.data` builds an object on every call, and every launch passes each buffer's address."""
    address: int


class CPUAllocator(Allocator):
    """Host memory as numpy byte arrays (64-byte aligned so vector loads never straddle a cache line)."""

    def alloc(self, nbytes: int):
        raw = np.empty(nbytes + 64, dtype=np.uint8)
        start = (-raw.ctypes.data) % 64
        handle = raw[start:start + nbytes].view(HostMemory)
        handle.address = raw.ctypes.data + start
        return handle

    def free(self, handle) -> None:
        pass   # numpy frees it when the last reference goes

    def copyin(self, handle, src: memoryview) -> None:
        np.copyto(handle[:len(src)], np.frombuffer(src, dtype=np.uint8))

    def copyout(self, dest: memoryview, handle) -> None:
        np.copyto(np.frombuffer(dest, dtype=np.uint8), handle[:len(dest)])

    offsets = True

    def offset(self, handle, nbytes: int):
        shifted = handle[nbytes:].view(HostMemory)
        shifted.address = self.address(handle) + nbytes
        return shifted

    @staticmethod
    def address(handle) -> int:
        address = getattr(handle, "address", None)   # (a view of a HostMemory, or other memory, has none)
        return address if address is not None else handle.ctypes.data


_THUNK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
ENGINE_OBJECTS = 256   # kernels loaded into one JIT engine before the next kernels go into a new one


class JitEngine:
    """One MCJIT engine and the kernels loaded into it.

    MCJIT cannot unload a single object: an object's code, data and the engine's copy of it stay until the engine
    is disposed. So a device loads kernels into one engine until it holds ENGINE_OBJECTS, then starts a new one;
    every CPUProgram holds its engine, so a retired engine is disposed, and all that memory freed, once none of
    its programs is left (tinyjit's kernel cache dropped them and no TinyJit capture holds them)."""

    def __init__(self, device: "CPUDevice"):
        # the engine takes ownership of its target machine: each engine needs its own
        target_machine = llvm.Target.from_default_triple().create_target_machine(
            cpu=device.cpu_name, features=device.features, opt=3, codemodel="jitdefault")
        self.llvm = llvm.create_mcjit_compiler(llvm.parse_assembly(""), target_machine)
        self.loaded = 0                       # objects added
        self.programs = weakref.WeakSet()     # its CPUPrograms still alive


class CPUProgram(Program):
    """A compiled kernel, called through its thunk `(void **buffers, int64 start, int64 end)` (codegen.llvmir)."""

    def __init__(self, device: "CPUDevice", name: str, address: int, thunk: int, engine: JitEngine | None = None,
                 binary: bytes | None = None):
        self.device, self.name, self.address, self.thunk = device, name, address, thunk
        self.engine = engine   # keeps the code alive: the engine is disposed when its last program goes
        self.binary = binary   # the object file, to load it again into a newer engine (reloaded)
        if engine is not None:
            engine.programs.add(self)
        self.fn = _THUNK(thunk)

    @property
    def wants_reload(self) -> bool:
        """True when this kernel is one of the few still alive in a retired engine: loading it again into the
        current engine (and dropping this program) lets that whole engine be freed."""
        engine = self.engine
        return engine is not None and self.binary is not None and engine is not self.device.jit_engine and \
            len(engine.programs) * 4 <= engine.loaded

    def reloaded(self) -> "CPUProgram":
        """The same kernel loaded into the device's current engine."""
        return self.device.program(self.name, self.binary)

    def __call__(self, *bufs, global_size=(1,), local_size=None, wait=False):
        """One launch on this thread alone (the engine's launches go through `prepare`)."""
        return self.prepare(global_size, local_size, work=0)(list(bufs), wait)

    def prepare(self, global_size: tuple, local_size, work: int) -> "CPULaunch":
        return CPULaunch(self, global_size, local_size, launch_threads(global_size[0], work, self.device.threads))


class CPULaunch(PreparedLaunch):
    """A CPU kernel's launch: the outer loop [0, global_size[0]) split into `threads` ranges."""

    def __init__(self, program: CPUProgram, global_size: tuple, local_size, threads: int):
        super().__init__(program, global_size, local_size)
        self.threads = threads

    @staticmethod
    def args(handles: list):
        """The buffers' addresses as the C array the thunk takes."""
        return (ctypes.c_void_p * max(len(handles), 1))(*[CPUAllocator.address(h) for h in handles])

    def __call__(self, handles: list, wait: bool = False) -> float | None:
        t0 = time.perf_counter() if wait else 0.0
        fn, fn_args = self._launcher(self.args(handles))
        fn(*fn_args)
        return time.perf_counter() - t0 if wait else None

    def bind(self, handles: list):
        """One C call over a C array of addresses that set_handle edits in place."""
        args = self.args(handles)

        def set_handle(j: int, handle) -> None:   # (CPUAllocator.address inlined: called for every argument)
            address = getattr(handle, "address", None)
            args[j] = address if address is not None else handle.ctypes.data
        fn, fn_args = self._launcher(args)
        call = functools.partial(fn, *fn_args)
        call.program = self.program   # fn_args hold the kernel's raw address: keep its code loaded while call lives
        # what runtime.cpu_pool.sequence_call needs to run this launch among others in one C call
        call.sequence_entry = (self.program.thunk, ctypes.addressof(args), self.global_size[0], self._split())
        return call, set_handle

    def _split(self) -> int:
        """The threads this launch's outer loop is split over (its own, capped by the device's and the loop's)."""
        return min(self.threads, self.program.device.threads, self.global_size[0])

    def _launcher(self, args):
        """(function, arguments) that launch over `args`: a ctypes call where possible, so a TinyJit replay runs
        each launch as one C call."""
        program, n = self.program, self.global_size[0]
        device = program.device
        threads = self._split()
        if threads <= 1:
            return program.fn, (args, 0, n)
        if device.native_pool is not None:
            return device.native_pool.launcher(program.thunk, args, n, threads)
        return self._python_pool_launch, (args, n, threads)

    def _python_pool_launch(self, args, n: int, threads: int) -> None:
        fn, pool = self.program.fn, self.program.device.pool
        chunk, _ = split_range(n, threads)
        futures = [pool.submit(fn, args, lo, min(lo + chunk, n)) for lo in range(chunk, n, chunk)]
        fn(args, 0, chunk)
        for f in futures:
            f.result()


class CPUDevice(Device):
    name = "CPU"
    gpu = False

    def __init__(self):
        if llvm is None:
            raise DeviceUnavailable("CPU device unavailable: llvmlite is not installed (pip install llvmlite)")
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        self.cpu_name = llvm.get_host_cpu_name()
        self.features = llvm.get_host_cpu_features().flatten()
        self.jit_engine = JitEngine(self)   # where new kernels are loaded (see JitEngine)
        self._local = threading.local()    # per compiling thread: its own LLVM context and target machine
        self._engine_lock = threading.Lock()
        self.allocator = CPUAllocator()
        self.threads = cpu_count()
        _live_devices.add(self)

    def _after_fork_in_child(self) -> None:
        """A forked child has none of the parent's threads: its first threaded launch starts its own native pool
        (new slots and workers; the pool's compiled code is reused), and its Python pool is a new one."""
        self.__dict__.pop("pool", None)
        self.__dict__.pop("native_pool", None)

    @functools.cached_property
    def pool(self):
        """The Python thread pool that splits launches where the native pool is not available (None on one
        thread). Made on first use: concurrent.futures (and the logging it imports) is not loaded for nothing."""
        if self.threads <= 1:
            return None
        from concurrent.futures import ThreadPoolExecutor
        return ThreadPoolExecutor(max_workers=self.threads)

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
        """LLVM IR text -> optimized object code. Thread-safe: kernels of a schedule compile in parallel.
        CompileError when the object calls a function tinyjit cannot provide (see runtime.cpu_symbols)."""
        binary = self._thread_llvm()[1].emit_object(self._optimized_module(src))
        cpu_symbols.check(binary, src)
        return binary

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

    @property
    def engine(self):
        """The llvmlite execution engine new kernels are loaded into."""
        return self.jit_engine.llvm

    def program(self, name: str, binary: bytes) -> CPUProgram:
        # every symbol the object needs is registered before MCJIT sees it: an unresolved one would be a call to
        # address 0 (a segmentation fault), so it is a CompileError here
        needed = cpu_symbols.check(binary)
        with self._engine_lock:
            if self.jit_engine.loaded >= ENGINE_OBJECTS:
                self.jit_engine = JitEngine(self)
            engine = self.jit_engine
            cpu_symbols.provide(needed)
            engine.llvm.add_object_file(llvm.ObjectFileRef.from_data(binary))
            engine.loaded += 1
            engine.llvm.finalize_object()
            address = engine.llvm.get_function_address(name)
            thunk = engine.llvm.get_function_address(name + "_thunk")
        if not address or not thunk:
            raise CompileError(f"symbol {name} (or its thunk) not found in the compiled LLVM object")
        return CPUProgram(self, name, address, thunk, engine, binary)

    def new_engine(self) -> JitEngine:
        """A fresh MCJIT engine of this device (the native thread pool loads its own code into one)."""
        return JitEngine(self)

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


# ---- fork safety ----
# llvmlite serializes every call into LLVM with one process-global lock. A fork while another thread is inside
# LLVM (compiling) hands the child that lock held by a thread that does not exist there, and LLVM's own state
# (its internal mutexes, the engine's section lists, the thread's context) in the middle of an update: the
# child's first compile, or even the disposal of the dead thread's LLVM context, hangs. So the forking thread
# takes every CPU engine lock, then llvmlite's lock, just before the fork (waiting for the LLVM call in progress,
# if any, to return) and both processes release them after it. No thread is inside LLVM at the fork, so the child
# inherits consistent LLVM state and keeps using the parent's engine, its already loaded kernels and its own
# thread's context; what it lacks are the parent's threads, which it starts anew (_after_fork_in_child).
_live_devices: "weakref.WeakSet[CPUDevice]" = weakref.WeakSet()
_held_at_fork: list = []


def _llvmlite_lock():
    """llvmlite's global re-entrant lock around every LLVM call (a private attribute: None if it moved)."""
    wrapper = getattr(getattr(llvm, "ffi", None), "lib", None)
    return getattr(getattr(wrapper, "_lock", None), "_lock", None)


def _before_fork() -> None:
    first_use_lock.acquire()   # first: a thread importing or opening a device may call into LLVM (see runtime)
    locks = [first_use_lock] + [device._engine_lock for device in list(_live_devices)]   # program() nests these
    llvm_lock = _llvmlite_lock() if llvm is not None else None
    if llvm_lock is not None:
        locks.append(llvm_lock)
    for lock in locks[1:]:
        lock.acquire()
    _held_at_fork[:] = locks


def _release_fork_locks() -> None:
    locks, _held_at_fork[:] = _held_at_fork[:], []
    for lock in reversed(locks):
        lock.release()


def _after_fork_in_child() -> None:
    _release_fork_locks()   # the forking thread held them; it is the child's only thread (same thread id)
    for device in list(_live_devices):
        device._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_release_fork_locks, after_in_child=_after_fork_in_child)
