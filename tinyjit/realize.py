"""Run a schedule: compile each kernel (cached in memory by its AST, on disk by its source) and launch it.

DEBUG output (DESIGN.md): 1 kernel counts and realize times; 2 one line per kernel launch (name, sizes, time,
GFLOP/s, GB/s) and a table at exit; 3 the schedule and each kernel's AST with the optimizations applied; 4 the
generated source; 5 the linear program and the compiled output (optimized LLVM IR); 6 machine code (CPU).
"""
from __future__ import annotations

import atexit
import functools
import time
from collections import defaultdict
from dataclasses import dataclass, field

from tinyjit.device import Buffer, Device
from tinyjit.helpers import debug_level, getenv, prod
from tinyjit.ops import AstNode, Op
from tinyjit.schedule import ScheduleItem, create_schedule, format_schedule

# a CPU kernel is split over threads only when it does enough work to pay for the hand-off (~10 us)
MIN_WORK_PER_THREADED_LAUNCH = 1 << 16


@dataclass
class CompiledKernel:
    name: str            # readable, e.g. r_64_32_x4
    symbol: str          # the function name in the binary
    program: object      # the runtime's launchable program
    global_size: tuple
    local_size: tuple
    flops: int
    source: str
    threads: int = 1     # CPU: how many threads the outer axis is split over (what the runtime really uses)
    launch_kwargs: dict = field(default_factory=dict)

    def __call__(self, buffers: list[Buffer], wait: bool = False):
        return self.program(*[b.handle for b in buffers], global_size=self.global_size,
                            local_size=self.local_size, wait=wait, **self.launch_kwargs)


@dataclass
class KernelPlan:
    """The launches that compute one scheduled kernel: on the CPU, first the copies that pack operands into
    scratch buffers in the order the kernel reads them (codegen.cpu_opts), then the kernel itself. Each launch
    names its arguments: an int is the scheduled item's buffer (0 the output, then its inputs), ("scratch", j)
    the j-th scratch buffer, allocated per run (and kept by a TinyJit capture)."""
    launches: list[tuple[CompiledKernel, tuple]]
    scratch: list[tuple[int, object]]     # (size, dtype)

    main: int = 0                         # which launch is the scheduled kernel itself

    @property
    def kernel(self) -> CompiledKernel:
        return self.launches[self.main][0]


_plans: dict[tuple, KernelPlan] = {}
_copies: dict[tuple, CompiledKernel] = {}
_stats: dict[str, list] = defaultdict(lambda: [0, 0.0, 0, 0])   # name -> calls, seconds, flops, bytes
counters = {"kernels_compiled": 0, "kernels_launched": 0}
# TinyJit capture: while a list is installed here, every launch is appended to it as (kind, runner, buffers)
capture: list | None = None


def compile_kernel(device: str, ast: AstNode) -> CompiledKernel:
    """The launchable kernel for `ast` on `device` (without the packing launches its plan may put before it)."""
    return compile_plan(device, ast).kernel


def compile_plan(device: str, ast: AstNode, opts: list | None = None) -> KernelPlan:
    """The launches for `ast` on `device`, compiled once per process and then served from memory. `opts`
    (a list of codegen.kernel.Opt) replaces the hand-coded heuristics, e.g. for a search or a test."""
    key = (device, ast, None if opts is None else tuple(opts))
    if key in _plans:
        return _plans[key]
    from codegen.cpu_opts import apply_cpu_opt, copies_of
    from codegen.kernel import Kernel
    from codegen.optimizer import optimize

    renderer = Device.renderer(device)
    k = Kernel(ast)
    if opts is not None:
        for opt in opts:
            (k.apply_opt if renderer.gpu else functools.partial(apply_cpu_opt, k))(opt)
    elif not getenv("NOOPT", 0):
        optimize(k, renderer)
    copies = copies_of(k)
    kernel = _compile(device, k, ast)
    launches = [(_compile_copy(device, c), tuple(args)) for c, args in copies.before] + [(kernel, tuple(copies.args))]
    launches += [(_compile_copy(device, c), tuple(args)) for c, args in copies.after]
    _plans[key] = plan = KernelPlan(launches, list(copies.scratch), len(copies.before))
    counters["kernels_compiled"] += 1   # one per scheduled kernel, its packing copies included
    return plan


def _compile_copy(device: str, ast: AstNode) -> CompiledKernel:
    """A packing copy kernel (no optimizations to choose: LLVM vectorizes its contiguous inner loop)."""
    from codegen.kernel import Kernel
    if (device, ast) not in _copies:
        _copies[(device, ast)] = _compile(device, Kernel(ast), ast)
    return _copies[(device, ast)]


def _compile(device: str, k, ast: AstNode) -> CompiledKernel:
    from codegen.uops import print_program

    renderer = Device.renderer(device)
    program = renderer.linearize(k)
    symbol, source = renderer.render(program.name, program.uops)
    level = debug_level()
    if level >= 3:
        print(f"--- kernel {program.name} on {device}: {describe_kernel(k)}\n{ast.pretty()}")
    if level >= 5:
        print(f"--- linear program of {program.name}\n{print_program(program.uops)}")
    if level >= 4:
        print(f"--- source of {program.name}\n{source}")
    runtime_device = Device[device]
    binary = runtime_device.compile(source)
    listing = getattr(runtime_device, "debug_listing", None)
    if level >= 5 and listing is not None:
        print(f"--- compiled {program.name} (optimized IR)\n{listing(source)}")
    if level >= 6 and listing is not None:
        print(f"--- machine code of {program.name}\n{listing(source, machine_code=True)}")
    compiled = CompiledKernel(program.name, symbol, runtime_device.program(symbol, binary), program.global_size,
                              program.local_size, program.flops, source)
    if hasattr(runtime_device, "pool"):   # the CPU runtime: threads over the outermost global axis
        compiled.threads = _thread_count(k, program.global_size, runtime_device.threads)
        compiled.launch_kwargs = {"threads": compiled.threads}
    return compiled


def describe_kernel(k) -> str:
    """The loop shape by axis kind and the optimizations applied, e.g. `global 64 | reduce 32 | upcast 4`."""
    parts = [("global", k.full_shape[:k.first_reduce]), ("reduce", k.full_shape[k.first_reduce:k.first_upcast]),
             ("upcast", k.full_shape[k.first_upcast:])]
    shape = " | ".join(f"{kind} {'x'.join(map(str, sizes))}" for kind, sizes in parts if sizes)
    opts = ", ".join(f"{o.kind} axis {o.axis} by {o.amount}" for o in k.applied) or "none"
    return f"{shape}; opts: {opts}"


def _thread_count(k, global_size: tuple, device_threads: int) -> int:
    """The threads a CPU launch really uses: the pool's size, capped by the outer loop's length, and 1 when the
    kernel is too small to pay for the hand-off."""
    n = global_size[0]
    threads = min(device_threads, n)
    if prod(k.full_shape) < MIN_WORK_PER_THREADED_LAUNCH or threads <= 1:
        return 1
    chunk = -(-n // threads)   # the runtime hands out ranges of this length: ceil(n / chunk) of them
    return -(-n // chunk)


def run_schedule(items: list[ScheduleItem]) -> None:
    level = debug_level()
    for item in items:
        node = item.output
        if item.kind == "empty":
            node.buffer = Buffer(node.device, node.size, node.dtype)
            continue
        if item.kind == "copy":
            src = item.inputs[0]
            out = Buffer(node.device, node.size, node.dtype)
            copy_buffer(out, src.buffer)
            node.buffer = out
            if capture is not None:
                capture.append(("copy", copy_buffer, [out, src.buffer]))
            continue
        out = node.src[0].buffer if node.op == Op.ASSIGN else Buffer(node.device, node.size, node.dtype)
        if node.size == 0:
            node.buffer = out
            continue
        plan = compile_plan(node.device, item.ast)
        buffers = [out] + [i.buffer for i in item.inputs]
        scratch = [Buffer(node.device, size, dtype) for size, dtype in plan.scratch]
        for kernel, args in plan.launches:
            bufs = [buffers[a] if isinstance(a, int) else scratch[a[1]] for a in args]
            elapsed = kernel(bufs, wait=level >= 2)
            if capture is not None:
                capture.append(("kernel", kernel, bufs))
            if level >= 2:
                _report_launch(node.device, kernel, bufs, elapsed)
        counters["kernels_launched"] += 1   # one per scheduled kernel, packing launches included
        node.buffer = out


def _report_launch(device: str, kernel: CompiledKernel, buffers: list[Buffer], elapsed: float) -> None:
    nbytes = sum(b.nbytes for b in buffers)
    stat = _stats[kernel.name]
    stat[0] += 1
    stat[1] += elapsed
    stat[2] += kernel.flops
    stat[3] += nbytes
    seconds = max(elapsed, 1e-9)
    sizes = f"global {kernel.global_size}" + (f" local {kernel.local_size}" if kernel.local_size != (1, 1, 1)
                                               else "")
    threads = f"  threads {kernel.threads}" if kernel.threads > 1 else ""
    print(f"  {device:<4} {kernel.name:<28} {sizes:<24} {elapsed * 1e6:9.1f} us  "
          f"{kernel.flops / seconds / 1e9:8.2f} GFLOP/s  {nbytes / seconds / 1e9:7.2f} GB/s{threads}")


def copy_buffer(dest: Buffer, src: Buffer) -> None:
    """Copy between devices (through host memory)."""
    dest.copyin(src.numpy())


def realize_nodes(nodes) -> None:
    level = debug_level()
    t0 = time.perf_counter()
    compiled_before = counters["kernels_compiled"]
    schedule = create_schedule(list(nodes))
    if level >= 3 and schedule:
        print(format_schedule(schedule))
    run_schedule(schedule)
    if level >= 1 and schedule:
        kernels = sum(1 for s in schedule if s.kind == "kernel")
        compiled = counters["kernels_compiled"] - compiled_before
        print(f"realize: {kernels} kernel{'s' if kernels != 1 else ''} ({compiled} compiled), {len(schedule)} "
              f"item{'s' if len(schedule) != 1 else ''} in {(time.perf_counter() - t0) * 1e3:.2f} ms")


@atexit.register
def _print_stats() -> None:
    if debug_level() >= 2 and _stats:
        print(f"{'kernel':<30}{'calls':>7}{'total ms':>11}{'GFLOP/s':>10}{'GB/s':>9}")
        for name, (calls, seconds, flops, nbytes) in sorted(_stats.items(), key=lambda kv: -kv[1][1]):
            print(f"{name:<30}{calls:>7}{seconds * 1e3:>11.3f}{flops / max(seconds, 1e-9) / 1e9:>10.2f}"
                  f"{nbytes / max(seconds, 1e-9) / 1e9:>9.2f}")
