"""Kernel AST -> launchable plan, cached in memory and on disk, and loaded on its device.

A plan is the launches that compute one scheduled kernel (codegen/pipeline.py builds it: optimizations, code,
and on the CPU copy kernels around the kernel sharing scratch buffers). This module decides the optimizations'
source (NOOPT, BEAM, the heuristics), caches what the pipeline built, loads it through the runtime's device
interface (runtime/__init__.py) and binds launches to buffers.

Caches: in memory by (device, AST, opts); on disk, for the CPU, by the AST's text together with everything else
that decides the result (a hash of the code generator's sources, LLVM version, host CPU and features, NOOPT,
BEAM, threads). A warm start then loads the binaries without running the code generator at all. The renderer's
source-keyed compile cache (runtime/cache.py) sits below it, so a plan rebuilt with DEBUG>=3 (which always
regenerates, to print) still reuses compiled binaries. Plans built but not loaded yet (by `precompile`, or
compiled ahead for BEAM's timing) wait in one more in-memory cache, `_built`.

The in-memory caches are bounded: the TINYJIT_KERNEL_CACHE (default DEFAULT_KERNEL_CACHE) most recently used
plans are kept, loaded programs only as long as a plan (or a TinyJit capture) uses them. On the CPU a dropped
program frees its memory when its whole JIT engine goes (runtime.cpu.JitEngine): a cached plan whose program is
one of the few left in a retired engine gets that program loaded again into the current engine.

codegen is imported inside the functions that build plans, not at the top: codegen imports tinyjit's core modules
(ops, dtype, view), importing any of them runs tinyjit/__init__.py, and that reaches this module.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import pickle
import queue
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from runtime import CompileError, PreparedLaunch, Program
from runtime.cache import cache_lookup, cached_compile
from tinyjit import compile_workers
from tinyjit.base_offsets import split_base_offsets
from tinyjit.device import Buffer, Device
from tinyjit.helpers import debug_level, deep_recursion, getenv, lazy_import, lazy_imports
from tinyjit.ops import REDUCE, AstNode, Op

if TYPE_CHECKING:
    from codegen.opts import Opt
    from codegen.plan import BuiltPlan, LaunchArg, LaunchSpec

DEFAULT_KERNEL_CACHE = 1024   # plans kept in memory unless TINYJIT_KERNEL_CACHE says otherwise
# the files whose code decides what an AST compiles to: a change to any of them invalidates the disk plan cache
_CODEGEN_FILES = ("codegen", "tinyjit/kernel_cache.py", "tinyjit/view.py", "tinyjit/symbolic.py", "tinyjit/ops.py",
                  "tinyjit/dtype.py", "tinyjit/helpers.py", "runtime/cpu.py")


@dataclass
class CompiledKernel:
    """One launch of a plan, loaded on its device and ready to run on Buffers."""
    name: str            # readable, e.g. r_64_32_x4
    symbol: str          # the function name in the binary
    launch: PreparedLaunch   # the runtime's launch of the loaded program at these sizes
    global_size: tuple
    local_size: tuple
    flops: int
    source: str
    work: int            # loop iterations (the runtime decides from it whether threads pay)
    # per argument, elements its buffer's pointer is advanced by (tinyjit.base_offsets); () when none is
    arg_shifts: tuple[int, ...] = ()

    @property
    def program(self) -> Program:
        return self.launch.program

    @property
    def threads(self) -> int:
        """CPU: how many threads the outer axis is split over (what the runtime really uses); 1 elsewhere."""
        return self.launch.threads

    def __call__(self, buffers: list[Buffer], wait: bool = False):
        return self.launch(self._handles(buffers), wait)

    def prepare(self, buffers: list[Buffer]):
        """(call, set_buffer) for launching again and again (TinyJit's replay loop): call() launches on
        `buffers`, set_buffer(j, buffer) points argument j at another buffer from then on."""
        call, set_handle = self.launch.bind(self._handles(buffers))
        if not self.arg_shifts:
            return call, lambda j, buffer: set_handle(j, buffer.handle)
        shifts = self.arg_shifts
        return call, lambda j, buffer: set_handle(j, _shifted_handle(buffer, shifts[j]))

    def _handles(self, buffers: list[Buffer]) -> list:
        if not self.arg_shifts:
            return [b.handle for b in buffers]
        return [_shifted_handle(b, shift) for b, shift in zip(buffers, self.arg_shifts)]


def _shifted_handle(buffer: Buffer, elements: int):
    """The handle of `buffer` advanced by `elements` (a kernel argument of a plan with base offsets)."""
    if not elements:
        return buffer.handle
    return Device[buffer.device].allocator.offset(buffer.handle, elements * buffer.dtype.itemsize)


@dataclass
class KernelPlan:
    """The launches of one scheduled kernel, in order, each with what its buffer arguments are bound to; the
    scratch buffers they share are allocated per run (and kept by a TinyJit capture)."""
    launches: list[tuple[CompiledKernel, tuple[LaunchArg, ...]]]
    scratch: list[tuple[int, object]]     # (size, dtype)
    main: int = 0                         # which launch is the scheduled kernel itself (the others are copies)
    # BoundPlans not in use (run): a plan that runs again re-points one at new buffers instead of building the
    # argument lists again; they live as long as the plan does (dropped with it by the kernel cache)
    spare: list = dataclasses.field(default_factory=list, init=False, repr=False, compare=False)

    @property
    def kernel(self) -> CompiledKernel:
        return self.launches[self.main][0]

    def with_base_offsets(self, shifts: tuple[int, ...]) -> KernelPlan:
        """This plan (compiled for a canonical AST, tinyjit.base_offsets) launching on buffer i advanced by
        shifts[i] elements."""
        launches = []
        for kernel, args in self.launches:
            arg_shifts = tuple(0 if a.scratch or a.index >= len(shifts) else shifts[a.index] for a in args)
            launches.append((dataclasses.replace(kernel, arg_shifts=arg_shifts) if any(arg_shifts) else kernel, args))
        return KernelPlan(launches, self.scratch, self.main)

    def bind(self, buffers: list[Buffer]) -> list[tuple[CompiledKernel, list[Buffer]]]:
        """Each launch with the buffers it runs on, given the scheduled kernel's buffers (its output, then its
        inputs); the scratch buffers are new ones, allocated by this call."""
        scratch = [Buffer(buffers[0].device, size, dtype) for size, dtype in self.scratch]
        return [(kernel, [scratch[a.index] if a.scratch else buffers[a.index] for a in args])
                for kernel, args in self.launches]

    def run(self, buffers: list[Buffer]) -> None:
        """Launch on the scheduled kernel's buffers (its output, then its inputs; scratch buffers are allocated
        here), through a spare BoundPlan when there is one, as a TinyJit replay does: an eager loop that runs
        the same kernel every step builds its argument lists once. Thread-safe: a run takes its BoundPlan out of
        `spare` (list.pop is atomic) and puts it back after; threads running at once build one each."""
        try:
            bound = self.spare.pop()
        except IndexError:
            bound = None
        if bound is None or bound.pid != _process[0]:   # (bound in a parent process: its thread pool is not ours)
            bound = BoundPlan(self, buffers)
        bound.run(buffers)
        if len(self.spare) < MAX_SPARE_BOUND_PLANS:
            self.spare.append(bound)


# this process's id, kept up to date in a forked child (KernelPlan.run compares it on every launch: a system call)
_process = [os.getpid()]
# BoundPlans a KernelPlan keeps (one per thread that runs it at the same time, up to this many)
MAX_SPARE_BOUND_PLANS = 2


class BoundPlan:
    """A KernelPlan's launches with their argument lists built once (KernelPlan.run). `run(buffers)` points
    every argument at the given buffers (the scheduled kernel's output, then its inputs) and launches: no argument
    list is built again. Only addresses are kept between runs, not the buffers (their memory goes back to the pool
    as usual), so every argument is set again before each launch. One run at a time (KernelPlan.run hands it
    out)."""

    def __init__(self, plan: KernelPlan, buffers: list[Buffer]):
        self.scratch = plan.scratch   # (not the plan: the plan holds its spare BoundPlans, no cycle)
        # a threaded CPU launch is bound to this process's thread pool: a forked child binds its own
        self.pid = _process[0]
        # per launch: (call, set_handle, ((argument position, from scratch, buffer index, shift), ...)); the
        # runtime's set_handle is called directly with the handle (no wrapper per argument: every launch sets
        # every argument), advanced by the argument's base offset when it has one
        self.launches = []
        for (kernel, bufs), (_, args) in zip(plan.bind(buffers), plan.launches):
            call, set_handle = kernel.launch.bind(kernel._handles(bufs))
            shifts = kernel.arg_shifts or (0,) * len(args)
            self.launches.append((call, set_handle, tuple((j, a.scratch, a.index, shifts[j])
                                                          for j, a in enumerate(args))))
        counters["plans_bound"] += 1

    def run(self, buffers: list[Buffer]) -> None:
        scratch = [Buffer(buffers[0].device, size, dtype) for size, dtype in self.scratch] if self.scratch else ()
        for call, set_handle, args in self.launches:
            for j, from_scratch, index, shift in args:
                buffer = scratch[index] if from_scratch else buffers[index]
                set_handle(j, _shifted_handle(buffer, shift) if shift else buffer.handle)
            call()


def kernel_cache_size() -> int:
    """How many plans the in-memory cache keeps (TINYJIT_KERNEL_CACHE, a positive integer)."""
    size = getenv("TINYJIT_KERNEL_CACHE", DEFAULT_KERNEL_CACHE)
    if size < 1:
        raise ValueError(f"TINYJIT_KERNEL_CACHE={size} is not valid: expected a positive number of kernels "
                         f"(default {DEFAULT_KERNEL_CACHE})")
    return size


_MISSING = object()


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
            value = self._data.get(key, _MISSING)
            if value is _MISSING:
                return default
            self._data.move_to_end(key)
            return value

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def absent(self, keys: list) -> list:
        """The keys not held, in order (under one lock: an eager step asks this of each of its kernels)."""
        with self._lock:
            data = self._data
            return [key for key in keys if key not in data]

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
    os.register_at_fork(after_in_child=lambda: _process.__setitem__(0, os.getpid()))

_plans = LRUCache(kernel_cache_size)   # (device, AST, opts) -> KernelPlan
# (device, symbol) -> loaded program, while some plan or capture uses it: a binary shared by plans loads once
_programs: "weakref.WeakValueDictionary[tuple[str, str], object]" = weakref.WeakValueDictionary()
# plans_bound: BoundPlans built (a plan's argument lists; an eager loop builds them once per kernel)
counters = {"kernels_compiled": 0, "kernels_launched": 0, "plans_bound": 0}
# one entry per kernel built by the code generator in this process (disk cache hits are not builds): its name and
# the seconds it took, wall-clock and CPU time of the building thread (LLVM included; bench/compare.py reports them)
compile_log: list[tuple[str, float, float]] = []


def compile_kernel(device: str, ast: AstNode) -> CompiledKernel:
    """The launchable kernel for `ast` on `device` (without the copy launches its plan may put around it)."""
    return compile_plan(device, ast).kernel


def compile_plan(device: str, ast: AstNode, opts: list[Opt] | None = None) -> KernelPlan:
    """The launches for `ast` on `device`, built once per process. `opts` (codegen.opts.Opt) replaces the
    hand-coded heuristics, e.g. for a search or a test."""
    key = (device, ast, None if opts is None else tuple(opts))
    plan = _plans.get(key)
    if plan is not None:
        for kernel, _ in plan.launches:
            if kernel.program.wants_reload:
                plan = _plans[key] = _with_current_programs(device, plan)
                break
        return plan
    with deep_recursion():   # (the code generator's passes recurse along an AST's chains of fused ops)
        return _build_and_cache_plan(device, ast, opts, key)


def _build_and_cache_plan(device: str, ast: AstNode, opts: list[Opt] | None, key: tuple) -> KernelPlan:
    """compile_plan on a miss of the in-memory cache: the plan built (or loaded from the disk cache) and kept."""
    if opts is None and Device[device].allocator.offsets:
        canonical, shifts = split_base_offsets(ast)
        if shifts:   # compiled once for every kernel that differs from it only in offsets
            plan = _plans[key] = compile_plan(device, canonical).with_base_offsets(shifts)
            counters["kernels_compiled"] += 1
            return plan
    built = _built.pop(key, None)
    if built is None:
        built = _cached_build(device, ast) if opts is None and _disk_cached(device) else _build(device, ast, opts)
    plan = _load_plan(device, built)
    counters["kernels_compiled"] += 1   # one per scheduled kernel, its copy kernels included
    _plans[key] = plan
    return plan


def precompile(device: str, asts: list[AstNode]) -> None:
    """Build the plans of several kernels at once on the CPU's threads: LLVM releases the GIL while it optimizes
    and emits code, so one kernel's code generation in Python overlaps another's compilation.

    Ctrl-C (or an error in one kernel) stops it at once: the calling thread raises, the workers take no new
    kernel or compile step, and, being daemon threads, the one still inside an LLVM call does not keep the
    process alive. (A ThreadPoolExecutor would finish every queued kernel before the exception got out.)"""
    asts = [key[1] for key in _plans.absent([(device, a, None) for a in asts])]
    if len(asts) < 2:   # (a warm eager step: none; one is built where it runs)
        return
    with deep_recursion():   # (splitting base offsets, code generation and unpickling plans recurse along ASTs)
        _precompile(device, asts)


def _precompile(device: str, asts: list[AstNode]) -> None:
    if Device[device].allocator.offsets:
        asts = [split_base_offsets(a)[0] for a in asts]
    todo = [a for a in dict.fromkeys(asts) if (device, a, None) not in _plans and (device, a, None) not in _built]
    threads = Device[device].threads
    if len(todo) < 2 or threads < 2 or not _disk_cached(device) or getenv("BEAM", 0):
        return   # (BEAM times kernels while it builds them: one at a time, or they disturb each other's timings)
    todo = _load_disk_hits(device, todo)   # a warm disk cache needs no threads, and above all no worker processes
    if len(todo) < 2:
        return
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    for ast in compile_order(todo):
        jobs.put(ast)
    results: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    processes = compile_workers.processes(device) if len(todo) >= compile_workers.MIN_KERNELS_FOR_PROCESSES else 0

    def work(i: int) -> None:
        _precompile_worker.stop = stop
        worker = compile_workers.worker(i) if i < processes else None
        while not stop.is_set():
            try:
                ast = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                reply = worker.build(device, ast) if worker is not None else None
                if reply is not None:
                    built, log = reply
                    compile_log.extend(log)
                else:   # (no worker, or it could not build this one)
                    built = _cached_build(device, ast)
                results.put((ast, built, None))
            except _Stopped:
                return
            except BaseException as e:   # handed to the calling thread, which raises it
                results.put((ast, None, e))

    workers = [threading.Thread(target=work, args=(i,), name=f"tinyjit-precompile-{i}", daemon=True)
               for i in range(min(max(threads, processes), len(todo)))]
    for worker in workers:
        worker.start()
    try:
        for _ in todo:
            ast, built, error = results.get()   # interruptible: Ctrl-C raises KeyboardInterrupt here
            if error is not None:
                raise error
            _built[(device, ast, None)] = built
    finally:
        stop.set()


def compile_order(asts: list[AstNode]) -> list[AstNode]:
    """The order precompile's threads take kernels in: reductions (register-blocked contractions take several times
    an elementwise kernel's compile) before elementwise kernels, each in schedule order. The last kernels to start
    decide how long one thread works on after the others are done: longest first keeps that tail short."""
    return sorted(asts, key=lambda ast: not any(n.op in REDUCE for n in ast.toposort()))


def _load_disk_hits(device: str, asts: list[AstNode]) -> list[AstNode]:
    """Take the builds of `asts` that the disk cache holds into _built; return the ASTs still to build."""
    key, misses = _plan_key(device), []
    for ast in asts:
        payload = cache_lookup("plan", key, ast_text(ast))
        if payload is None:
            misses.append(ast)
        else:
            with lazy_imports():   # (the plan classes are in codegen.plan)
                _built[(device, ast, None)] = pickle.loads(payload)
    return misses


def serve_builds() -> None:
    """The loop of a compile worker process (tinyjit.compile_workers)."""
    def build(device: str, ast: AstNode) -> tuple[BuiltPlan, list]:
        before = len(compile_log)
        built = _cached_build(device, ast)
        return built, compile_log[before:]

    def warm_up() -> None:   # the imports and LLVM set-up of a first build, before the worker says it is ready
        lazy_import("codegen.pipeline")
        Device["CPU"]
    compile_workers.serve(build, warm_up)


class _Stopped(Exception):
    """Raised in a precompile worker whose precompile was abandoned (Ctrl-C or an error elsewhere)."""


_precompile_worker = threading.local()   # .stop: the Event of the precompile this thread works for


def _check_stopped() -> None:
    """In a precompile worker, give up before the next expensive step once the precompile was abandoned."""
    stop = getattr(_precompile_worker, "stop", None)
    if stop is not None and stop.is_set():
        raise _Stopped


# built, not loaded yet (precompiled, or compiled ahead for BEAM's timing): (device, AST, opts) -> BuiltPlan
_built = LRUCache(kernel_cache_size)


def _disk_cached(device: str) -> bool:
    """Plans go through the disk cache on the CPU, unless DEBUG>=3 wants to see them generated. (Asked of the
    runtime device, not of the renderer: a warm start then never imports the code generator.)"""
    return not Device[device].gpu and debug_level() < 3


def ast_text(ast: AstNode) -> str:
    """The AST as text, each shared node once (pretty() repeats shared subtrees: exponential for a chain of
    relus): the disk caches' key for a kernel."""
    ids: dict[int, int] = {}
    lines = []
    for n in ast.toposort():
        ids[id(n)] = len(lines)
        lines.append(f"{n.op.name} {n.dtype!r} {n.arg!r} {[ids[id(s)] for s in n.src]}")
    return "\n".join(lines)


def _cached_build(device: str, ast: AstNode) -> BuiltPlan:
    """The plan the heuristics (or BEAM) choose for `ast`, through the disk cache."""
    payload = cached_compile("plan", _plan_key(device), ast_text(ast),
                             lambda _: pickle.dumps(_build(device, ast, None)))
    with lazy_imports():   # (a plan read from disk imports codegen.plan)
        return pickle.loads(payload)


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


def _build(device: str, ast: AstNode, opts: list[Opt] | None) -> BuiltPlan:
    """Build the plan of `ast`: with `opts`, or else none under NOOPT=1, BEAM's choice under BEAM=N (CPU), or the
    heuristics'."""
    build_plan = lazy_import("codegen.pipeline").build_plan
    _check_stopped()
    started, cpu_started = time.perf_counter(), time.thread_time()
    renderer = Device.renderer(device)
    if opts is None and getenv("NOOPT", 0):
        opts = []
    elif opts is None and getenv("BEAM", 0) and not renderer.gpu:
        opts = _beam_opts(device, ast)
    built = build_plan(ast, renderer, functools.partial(_compile_source, device), opts, Device[device].threads)
    compile_log.append((built.launches[built.main].name, time.perf_counter() - started,
                        time.thread_time() - cpu_started))
    return built


def _compile_source(device: str, source: str, name: str) -> bytes:
    """Kernel `name`'s source -> binary on `device`; DEBUG>=5 prints what it compiled to (6: machine code)."""
    runtime_device = Device[device]
    _check_stopped()
    try:
        binary = runtime_device.compile(source)
    except CompileError as e:   # the source names its function by a hash: say which kernel it is
        raise CompileError(f"kernel {name}: {e.what}", e.src, e.log) from None
    level = debug_level()
    listing = runtime_device.debug_listing(source) if level >= 5 else None
    if listing is not None:
        print(f"--- compiled {name} (optimized IR)\n{listing}")
        if level >= 6:
            print(f"--- machine code of {name}\n{runtime_device.debug_listing(source, machine_code=True)}")
    return binary


# ---- BEAM: the timing codegen.search asks for ----
def _beam_opts(device: str, ast: AstNode) -> list[Opt]:
    """The optimizations BEAM picks for `ast`: searched once per kernel and machine, then read from the disk
    cache (kind "beam")."""
    beam_search = lazy_import("codegen.search").beam_search

    def search(_) -> bytes:
        threads = Device[device].threads
        return pickle.dumps(beam_search(ast, getenv("BEAM", 0), threads, _CandidateTimer(device, ast)))
    payload = cached_compile("beam", _plan_key(device), ast_text(ast), search)
    with lazy_imports():
        return pickle.loads(payload)


class _CandidateTimer:
    """codegen.search's timing callback for one kernel: builds a batch of candidate plans at once (LLVM releases the
    GIL) into `_built`, then loads and times each on random inputs of the kernel's buffer sizes."""

    def __init__(self, device: str, ast: AstNode):
        self.device, self.ast = device, ast
        self.buffers = _random_buffers(device, ast)

    def __call__(self, candidates: list[tuple], runs: int, give_up_after: float) -> list[float]:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max(1, Device[self.device].threads)) as pool:
            for opts, built in zip(candidates, pool.map(self._build, candidates)):
                _built[(self.device, self.ast, opts)] = built
        return [self._time(opts, runs, give_up_after) for opts in candidates]

    def _build(self, opts: tuple):
        try:
            return _build(self.device, self.ast, list(opts))
        except Exception:   # a sequence the code generator rejects is simply not a candidate
            return None

    def _time(self, opts: tuple, runs: int, give_up_after: float) -> float:
        built = _built.pop((self.device, self.ast, opts), None)
        if built is None:
            return math.inf
        calls = _load_plan(self.device, built).bind(self.buffers)
        fastest = math.inf
        for _ in range(runs):
            t0 = time.perf_counter()
            for kernel, buffers in calls:
                kernel(buffers)
            fastest = min(fastest, time.perf_counter() - t0)
            if fastest > give_up_after:
                break
        return fastest


def _random_buffers(device: str, ast: AstNode) -> list[Buffer]:
    """Buffers as large as the kernel's views reach, output first, inputs filled with small random values."""
    sizes: dict[int, tuple[int, object]] = {}
    for n in ast.toposort():
        if n.op in (Op.LOAD, Op.STORE):
            index, st = n.arg[0], n.arg[1]
            view = st.views[0]
            reach = view.offset + sum((s - 1) * max(stride, 0) for s, stride in zip(view.shape, view.strides)) + 1
            if len(n.arg) > 2:   # a gathered load: the other rows of its table (indices are random 0s and 1s)
                reach += (n.arg[2].rows - 1) * max(n.arg[2].row_stride, 0)
            sizes[index] = (max(reach, sizes.get(index, (0,))[0], 1), n.dtype)
    rng = np.random.default_rng(0)
    buffers = []
    for i in range(max(sizes) + 1):
        size, dtype = sizes.get(i, (1, ast.dtype))
        b = Buffer(device, size, dtype)
        if i:
            b.copyin((rng.standard_normal(size) if dtype.is_float else rng.integers(0, 2, size)).astype(dtype.np))
        buffers.append(b)
    return buffers


# ---- loading ----
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


def _load(device: str, spec: LaunchSpec) -> CompiledKernel:
    runtime_device = Device[device]
    program = _program(device, spec.symbol, lambda: runtime_device.program(spec.symbol, spec.binary))
    return CompiledKernel(spec.name, spec.symbol, program.prepare(spec.global_size, spec.local_size, spec.work),
                          spec.global_size, spec.local_size, spec.flops, spec.source, spec.work)


def _load_plan(device: str, built: BuiltPlan) -> KernelPlan:
    return KernelPlan([(_load(device, spec), spec.args) for spec in built.launches], built.scratch, built.main)
