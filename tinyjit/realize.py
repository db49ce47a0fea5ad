"""Run a schedule: compile each kernel (tinyjit.compiler: cached in memory and on disk) and launch it.

DEBUG output (DESIGN.md): 1 kernel counts and realize times; 2 one line per kernel launch (name, sizes, time,
GFLOP/s, GB/s) and a table at exit; 3 the schedule and each kernel's AST with the optimizations applied; 4 the
generated source; 5 the linear program and the compiled output (optimized LLVM IR); 6 machine code (CPU).
"""
from __future__ import annotations

import atexit
import time
from collections import defaultdict

from tinyjit import index_check
from tinyjit.compiler import (CompiledKernel, KernelPlan, _thread_count, compile_kernel,  # noqa: F401 (API)
                              compile_plan, counters, describe_kernel, precompile)
from tinyjit.device import Buffer
from tinyjit.helpers import debug_level
from tinyjit.ops import Op
from tinyjit.schedule import ScheduleItem, create_schedule, format_schedule

_stats: dict[str, list] = defaultdict(lambda: [0, 0.0, 0, 0])   # name -> calls, seconds, flops, bytes
# TinyJit capture: while a list is installed here, every launch is appended to it as (kind, runner, buffers)
capture: list | None = None


def run_schedule(items: list[ScheduleItem]) -> None:
    level = debug_level()
    kernels = [item for item in items if item.kind == "kernel" and item.output.size]
    for device in {item.output.device for item in kernels}:
        precompile(device, [item.ast for item in kernels if item.output.device == device])
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
    nodes = list(nodes)
    index_check.before_realize(nodes)   # out-of-range lazy indices raise here, before anything runs
    level = debug_level()
    t0 = time.perf_counter()
    compiled_before = counters["kernels_compiled"]
    schedule = create_schedule(nodes)
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
