"""Kernel AST -> launchable plan: optimize, linearize, render, compile and load, cached in memory and on disk.

A plan is the launches that compute one scheduled kernel. On the CPU the optimizer may add copy kernels around
the kernel itself (codegen.cpu_opts: PACK computes an operand into a scratch buffer in the order the kernel
reads it, STAGE writes the output through one), so a plan is a list of launches plus the scratch buffers they
share.

Caches: in memory by (device, AST, opts); on disk, for the CPU, by the AST's text together with everything else
that decides the result (a hash of the code generator's sources, LLVM version, host CPU and features, NOOPT,
BEAM, threads). A warm start then loads the binaries without running the code generator at all. The renderer's
source-keyed compile cache (runtime/cache.py) sits below it, so a plan rebuilt with DEBUG>=3 (which always
regenerates, to print) still reuses compiled binaries.

The in-memory caches are bounded: the TINYJIT_KERNEL_CACHE (default DEFAULT_KERNEL_CACHE) most recently used
plans are kept, loaded programs only as long as a plan (or a TinyJit capture) uses them. On the CPU a dropped
program frees its memory when its whole JIT engine goes (runtime.cpu.JitEngine): a cached plan whose program is
one of the few left in a retired engine gets that program loaded again into the current engine.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pickle
import queue
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

from runtime import PreparedLaunch, Program
from tinyjit.device import Buffer, Device
from tinyjit.helpers import debug_level, getenv, prod
from tinyjit.ops import AstNode

DEFAULT_KERNEL_CACHE = 1024   # plans kept in memory unless TINYJIT_KERNEL_CACHE says otherwise
# the files whose code decides what an AST compiles to: a change to any of them invalidates the disk plan cache
_CODEGEN_FILES = ("codegen", "tinyjit/kernel_cache.py", "tinyjit/view.py", "tinyjit/symbolic.py", "tinyjit/ops.py",
                  "tinyjit/dtype.py", "runtime/cpu.py")


@dataclass
class CompiledKernel:
    name: str            # readable, e.g. r_64_32_x4
    symbol: str          # the function name in the binary
    launch: PreparedLaunch   # the runtime's launch of the loaded program at these sizes
    global_size: tuple
    local_size: tuple
    flops: int
    source: str
    work: int            # loop iterations (the runtime decides from it whether threads pay)

    @property
    def program(self) -> Program:
        return self.launch.program

    @property
    def threads(self) -> int:
        """CPU: how many threads the outer axis is split over (what the runtime really uses); 1 elsewhere."""
        return self.launch.threads

    def __call__(self, buffers: list[Buffer], wait: bool = False):
        return self.launch([b.handle for b in buffers], wait)

    def prepare(self, buffers: list[Buffer]):
        """(call, set_buffer) for launching again and again (TinyJit's replay loop): call() launches on
        `buffers`, set_buffer(j, buffer) points argument j at another buffer from then on."""
        call, set_handle = self.launch.bind([b.handle for b in buffers])
        return call, lambda j, buffer: set_handle(j, buffer.handle)


@dataclass
class KernelPlan:
    """The launches of one scheduled kernel, in order. Each names its arguments: an int is the scheduled item's
    buffer (0 the output, then its inputs), ("scratch", j) the j-th scratch buffer, allocated per run (and kept
    by a TinyJit capture)."""
    launches: list[tuple[CompiledKernel, tuple]]
    scratch: list[tuple[int, object]]     # (size, dtype)
    main: int = 0                         # which launch is the scheduled kernel itself (the others are copies)

    @property
    def kernel(self) -> CompiledKernel:
        return self.launches[self.main][0]


@dataclass
class _LaunchSpec:
    """One compiled launch as it is stored on disk (everything but the loaded program)."""
    name: str
    symbol: str
    source: str
    binary: bytes
    global_size: tuple
    local_size: tuple
    flops: int
    work: int            # loop iterations (decides the CPU thread count)
    args: tuple


def kernel_cache_size() -> int:
    """How many plans the in-memory cache keeps (TINYJIT_KERNEL_CACHE, a positive integer)."""
    size = getenv("TINYJIT_KERNEL_CACHE", DEFAULT_KERNEL_CACHE)
    if size < 1:
        raise ValueError(f"TINYJIT_KERNEL_CACHE={size} is not valid: expected a positive number of kernels "
                         f"(default {DEFAULT_KERNEL_CACHE})")
    return size


class LRUCache:
    """A mapping that keeps only its most recently used entries (at most `capacity()`). Thread-safe: the lock is
    held only for the dict operations; a value that leaves (evicted or replaced) is released after it, since
    freeing a plan can dispose a JIT engine, which waits for LLVM."""

    def __init__(self, capacity):
        self.capacity = capacity
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        _lru_caches.add(self)

    def get(self, key, default=None):
        with self._lock:
            if key not in self._data:
                return default
            self._data.move_to_end(key)
            return self._data[key]

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __setitem__(self, key, value) -> None:
        capacity = self.capacity()
        with self._lock:
            replaced = self._data.get(key)
            self._data[key] = value
            self._data.move_to_end(key)
            evicted = [self._data.popitem(last=False) for _ in range(len(self._data) - capacity)]
        del replaced, evicted

    def pop(self, key, default=None):
        with self._lock:
            return self._data.pop(key, default)

    def clear(self) -> None:
        with self._lock:
            evicted, self._data = self._data, OrderedDict()
        del evicted

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()   # a thread of the parent may have held it; none of them exists here


_lru_caches: "weakref.WeakSet[LRUCache]" = weakref.WeakSet()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: [cache._after_fork_in_child() for cache in list(_lru_caches)])

_plans = LRUCache(kernel_cache_size)   # (device, AST, opts) -> KernelPlan
# (device, symbol) -> loaded program, while some plan or capture uses it: a binary shared by plans loads once
_programs: "weakref.WeakValueDictionary[tuple[str, str], object]" = weakref.WeakValueDictionary()
counters = {"kernels_compiled": 0, "kernels_launched": 0}


def compile_kernel(device: str, ast: AstNode) -> CompiledKernel:
    """The launchable kernel for `ast` on `device` (without the copy launches its plan may put around it)."""
    return compile_plan(device, ast).kernel


def compile_plan(device: str, ast: AstNode, opts: list | None = None) -> KernelPlan:
    """The launches for `ast` on `device`, built once per process. `opts` (a list of codegen.kernel.Opt)
    replaces the hand-coded heuristics, e.g. for a search or a test."""
    key = (device, ast, None if opts is None else tuple(opts))
    plan = _plans.get(key)
    if plan is not None:
        if any(kernel.program.wants_reload for kernel, _ in plan.launches):
            plan = _plans[key] = _with_current_programs(device, plan)
        return plan
    if opts is None and _disk_cached(device):
        specs, scratch, main = _built.pop((device, ast), None) or _cached_build(device, ast)
    else:
        specs, scratch, main = _build(device, ast, opts)
    plan = KernelPlan([(_load(device, spec), spec.args) for spec in specs], scratch, main)
    counters["kernels_compiled"] += 1   # one per scheduled kernel, its copy kernels included
    _plans[key] = plan
    return plan


def precompile(device: str, asts: list[AstNode]) -> None:
    """Build the plans of several kernels at once on the CPU's threads: LLVM releases the GIL while it optimizes
    and emits code, so one kernel's code generation in Python overlaps another's compilation.

    Ctrl-C (or an error in one kernel) stops it at once: the calling thread raises, the workers take no new
    kernel or compile step, and, being daemon threads, the one still inside an LLVM call does not keep the
    process alive. (A ThreadPoolExecutor would finish every queued kernel before the exception got out.)"""
    todo = [a for a in dict.fromkeys(asts) if (device, a, None) not in _plans and (device, a) not in _built]
    threads = Device[device].threads
    if len(todo) < 2 or threads < 2 or not _disk_cached(device) or getenv("BEAM", 0):
        return   # (BEAM times kernels while it builds them: one at a time, or they disturb each other's timings)
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    for ast in todo:
        jobs.put(ast)
    results: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        _precompile_worker.stop = stop
        while not stop.is_set():
            try:
                ast = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                results.put((ast, _cached_build(device, ast), None))
            except _Stopped:
                return
            except BaseException as e:   # handed to the calling thread, which raises it
                results.put((ast, None, e))

    workers = [threading.Thread(target=work, name=f"tinyjit-precompile-{i}", daemon=True)
               for i in range(min(threads, len(todo)))]
    for worker in workers:
        worker.start()
    try:
        for _ in todo:
            ast, built, error = results.get()   # interruptible: Ctrl-C raises KeyboardInterrupt here
            if error is not None:
                raise error
            _built[(device, ast)] = built
    finally:
        stop.set()


class _Stopped(Exception):
    """Raised in a precompile worker whose precompile was abandoned (Ctrl-C or an error elsewhere)."""


_precompile_worker = threading.local()   # .stop: the Event of the precompile this thread works for


def _check_stopped() -> None:
    """In a precompile worker, give up before the next expensive step once the precompile was abandoned."""
    stop = getattr(_precompile_worker, "stop", None)
    if stop is not None and stop.is_set():
        raise _Stopped


_built = LRUCache(kernel_cache_size)   # precompiled, not yet loaded: (device, ast) -> (specs, scratch, main)


def _disk_cached(device: str) -> bool:
    """Plans go through the disk cache on the CPU, unless DEBUG>=3 wants to see them generated."""
    return not Device.renderer(device).gpu and debug_level() < 3


def ast_text(ast: AstNode) -> str:
    """The AST as text, each shared node once (pretty() repeats shared subtrees: exponential for a chain of
    relus): the disk caches' key for a kernel."""
    ids: dict[int, int] = {}
    lines = []
    for n in ast.toposort():
        ids[id(n)] = len(lines)
        lines.append(f"{n.op.name} {n.dtype!r} {n.arg!r} {[ids[id(s)] for s in n.src]}")
    return "\n".join(lines)


def _cached_build(device: str, ast: AstNode):
    from runtime.cache import cached_compile
    return pickle.loads(cached_compile("plan", _plan_key(device), ast_text(ast),
                                       lambda _: pickle.dumps(_build(device, ast, None))))


@functools.lru_cache(maxsize=None)
def _codegen_version() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    h = hashlib.sha256()
    for entry in _CODEGEN_FILES:
        path = os.path.join(root, entry)
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".py")) \
            if os.path.isdir(path) else [path] if os.path.exists(path) else []
        for f in files:
            with open(f, "rb") as fh:
                h.update(f.encode() + b"\0" + fh.read())
    return h.hexdigest()


def _plan_key(device: str) -> tuple[str, ...]:
    runtime_device = Device[device]
    return (_codegen_version(), device, *runtime_device.cache_key(), f"threads={runtime_device.threads}",
            f"NOOPT={getenv('NOOPT', 0)}", f"BEAM={getenv('BEAM', 0)}")


def _build(device: str, ast: AstNode, opts: list | None):
    """Optimize, render and compile: ([_LaunchSpec], scratch, index of the kernel itself)."""
    from codegen.kernel import Kernel
    from codegen.optimizer import optimize
    from codegen.opts import CPU_ONLY, GPU_ONLY, KernelOptError

    _check_stopped()
    renderer = Device.renderer(device)
    k = Kernel(ast)
    if opts is None and getenv("BEAM", 0) and not getenv("NOOPT", 0) and not renderer.gpu:
        from codegen.search import beam_search
        opts = beam_search(device, ast)
    if opts is not None:
        for opt in opts:
            if opt.kind in (CPU_ONLY if renderer.gpu else GPU_ONLY):
                raise KernelOptError(f"{opt.kind} is not an optimization of {renderer.device} kernels")
            k.apply_opt(opt)
    elif not getenv("NOOPT", 0):
        optimize(k, renderer, Device[device].threads)
    copies = k.copies
    specs = [_spec(device, Kernel(c), c, args) for c, args in copies.before]
    specs.append(_spec(device, k, ast, tuple(copies.args)))
    specs += [_spec(device, Kernel(c), c, args) for c, args in copies.after]
    return specs, list(copies.scratch), len(copies.before)


def _spec(device: str, k, ast: AstNode, args) -> _LaunchSpec:
    from codegen.uops import print_program

    renderer = Device.renderer(device)
    program = renderer.linearize(k)
    symbol, source = renderer.render(program.name, program.uops)
    level = debug_level()
    if level >= 3:
        print(f"--- kernel {program.name} on {device}: {k.describe()}\n{ast.pretty()}")
    if level >= 5:
        print(f"--- linear program of {program.name}\n{print_program(program.uops)}")
    if level >= 4:
        print(f"--- source of {program.name}\n{source}")
    runtime_device = Device[device]
    _check_stopped()
    binary = runtime_device.compile(source)
    listing = runtime_device.debug_listing(source) if level >= 5 else None
    if listing is not None:
        print(f"--- compiled {program.name} (optimized IR)\n{listing}")
        if level >= 6:
            print(f"--- machine code of {program.name}\n{runtime_device.debug_listing(source, machine_code=True)}")
    return _LaunchSpec(program.name, symbol, source, binary, program.global_size, program.local_size, program.flops,
                       prod(k.full_shape), tuple(args))


def _program(device: str, symbol: str, load) -> Program:
    """The loaded program of `symbol` (load() loads it): one per binary, in the current engine where that lets an
    old engine go."""
    program = _programs.get((device, symbol))
    if program is None or program.wants_reload:
        program = _programs[(device, symbol)] = load()
    return program


def _with_current_programs(device: str, plan: KernelPlan) -> KernelPlan:
    """`plan` with the programs that want it loaded again into the current engine."""
    launches = []
    for kernel, args in plan.launches:
        if kernel.program.wants_reload:
            program = _program(device, kernel.symbol, kernel.program.reloaded)
            kernel = dataclasses.replace(kernel, launch=program.prepare(kernel.global_size, kernel.local_size,
                                                                        kernel.work))
        launches.append((kernel, args))
    return KernelPlan(launches, plan.scratch, plan.main)


def _load(device: str, spec: _LaunchSpec) -> CompiledKernel:
    runtime_device = Device[device]
    program = _program(device, spec.symbol, lambda: runtime_device.program(spec.symbol, spec.binary))
    return CompiledKernel(spec.name, spec.symbol, program.prepare(spec.global_size, spec.local_size, spec.work),
                          spec.global_size, spec.local_size, spec.flops, spec.source, spec.work)
