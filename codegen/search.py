"""BEAM=N: choose a kernel's optimizations by timing candidates (CPU), and remember the winner on disk.

A beam search over optimization sequences: start from no optimizations and from the hand-coded heuristics'
choice, extend every sequence in the beam by each candidate optimization (codegen.cpu_opts.candidate_opts),
compile and time every extension on random inputs of the kernel's buffer sizes, keep the N fastest, and stop when
a round finds nothing faster or the time per kernel (MAX_SECONDS) is up. The winner is cached under the kernel's
AST text (runtime/cache.py, kind "beam"), so the search runs once per kernel and machine; the plan built from it
is cached like any other.
"""
from __future__ import annotations

import math
import pickle
import time

import numpy as np

from tinyjit.device import Buffer, Device
from tinyjit.helpers import getenv
from tinyjit.ops import AstNode, Op

MAX_DEPTH = 6           # optimizations per sequence
TIMING_RUNS = 3         # a candidate's time is the fastest of these
GIVE_UP_FACTOR = 3.0    # a candidate slower than this times the best so far is not timed again
MAX_SECONDS = 10.0      # search time per kernel: the best sequence found by then wins
MAX_UPCAST = 128        # elements in a register block


def beam_search(device: str, ast: AstNode) -> list:
    """The optimizations BEAM picks for `ast` (cached on disk)."""
    from runtime.cache import cached_compile
    from tinyjit.kernel_cache import _plan_key, ast_text
    width = getenv("BEAM", 0)
    payload = cached_compile("beam", _plan_key(device), ast_text(ast),
                             lambda _: pickle.dumps(_search(device, ast, width)))
    return pickle.loads(payload)


def _search(device: str, ast: AstNode, width: int) -> list:
    from codegen.cpu_opts import candidate_opts, contraction_plan
    from codegen.kernel import Kernel, KernelOptError

    buffers = _random_buffers(device, ast)
    timings: dict[tuple, float] = {}
    deadline = time.perf_counter() + MAX_SECONDS

    def timed(opts: tuple) -> float:
        if opts not in timings:
            timings[opts] = _time_plan(device, ast, list(opts), buffers, min(timings.values(), default=math.inf)) \
                if time.perf_counter() < deadline else math.inf
        return timings[opts]

    def kernel_after(opts: tuple):
        k = Kernel(ast)
        for opt in opts:
            k.apply_opt(opt)
        return k

    heuristic = []
    k = Kernel(ast)
    for opt in contraction_plan(k, Device[device].threads):   # the heuristics' sequence, less what does not apply
        try:
            k.apply_opt(opt)
            heuristic.append(opt)
        except KernelOptError:
            pass
    beam = sorted({(), tuple(heuristic)}, key=timed)[:width]
    best = beam[0]
    for _ in range(MAX_DEPTH):
        extensions = set()
        for opts in beam:
            k = kernel_after(opts)
            for opt in candidate_opts(k, MAX_UPCAST):
                try:
                    kernel_after(opts).apply_opt(opt)
                except KernelOptError:
                    continue
                extensions.add(opts + (opt,))
        if not extensions or time.perf_counter() > deadline:
            break
        _compile_all(device, ast, extensions)
        beam = sorted(extensions, key=timed)[:width]
        if timed(beam[0]) >= timed(best):
            break
        best = beam[0]
    _specs.clear()
    return list(best)


_specs: dict[tuple, object] = {}   # (ast, opts) -> compiled launches, built ahead of timing


def _compile_all(device: str, ast: AstNode, candidates) -> None:
    """Compile a round's candidates on all cores (LLVM releases the GIL) before they are timed one by one."""
    from concurrent.futures import ThreadPoolExecutor
    from tinyjit.kernel_cache import _build

    def build(opts: tuple):
        try:
            return _build(device, ast, list(opts))
        except Exception:   # a sequence the code generator rejects is simply not a candidate
            return None
    todo = [c for c in candidates if (ast, c) not in _specs]
    with ThreadPoolExecutor(Device[device].threads) as pool:
        for opts, built in zip(todo, pool.map(build, todo)):
            _specs[(ast, opts)] = built


def _random_buffers(device: str, ast: AstNode) -> list[Buffer]:
    """Buffers as large as the kernel's views reach, output first, inputs filled with small random values."""
    sizes: dict[int, tuple[int, object]] = {}
    for n in ast.toposort():
        if n.op in (Op.LOAD, Op.STORE):
            index, st = n.arg
            view = st.views[0]
            reach = view.offset + sum((s - 1) * max(stride, 0) for s, stride in zip(view.shape, view.strides)) + 1
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


def _time_plan(device: str, ast: AstNode, opts: list, buffers: list[Buffer], best: float) -> float:
    from tinyjit.kernel_cache import _build, _load
    built = _specs.pop((ast, tuple(opts)), False)
    if built is False:
        try:
            built = _build(device, ast, opts)
        except Exception:   # an optimization sequence the code generator rejects is simply not a candidate
            built = None
    if built is None:
        return math.inf
    specs, scratch, _ = built
    launches = [(_load(device, spec), spec.args) for spec in specs]
    scratch_buffers = [Buffer(device, size, dtype) for size, dtype in scratch]
    calls = [(kernel, [buffers[a] if isinstance(a, int) else scratch_buffers[a[1]] for a in args])
             for kernel, args in launches]
    fastest = math.inf
    for _ in range(TIMING_RUNS):
        t0 = time.perf_counter()
        for kernel, bufs in calls:
            kernel(bufs)
        fastest = min(fastest, time.perf_counter() - t0)
        if fastest > GIVE_UP_FACTOR * best:
            break
    return fastest
