"""Run a schedule: compile each kernel (cached in memory by its AST, on disk by its source) and launch it."""
from __future__ import annotations

import atexit
import time
from collections import defaultdict
from dataclasses import dataclass

from tinyjit.device import Buffer, Device
from tinyjit.helpers import debug_level, getenv, prod
from tinyjit.ops import AstNode
from tinyjit.schedule import ScheduleItem


@dataclass
class CompiledKernel:
    name: str            # readable, e.g. r_64_32_128
    symbol: str          # the function name in the binary
    program: object      # the runtime's launchable program
    global_size: tuple
    local_size: tuple
    flops: int
    threads: int         # CPU: how many threads to split the outer axis over
    source: str

    def __call__(self, buffers: list[Buffer], wait: bool = False):
        return self.program(*[b.handle for b in buffers], global_size=self.global_size,
                            local_size=self.local_size, wait=wait, threads=self.threads)


_kernels: dict[tuple[str, AstNode], CompiledKernel] = {}
_stats: dict[str, list] = defaultdict(lambda: [0, 0.0, 0, 0])   # name -> calls, seconds, flops, bytes
counters = {"kernels_compiled": 0, "kernels_launched": 0}
# TinyJit capture: while a list is installed here, every launch is appended to it as (kind, runner, buffers)
capture: list | None = None


def compile_kernel(device: str, ast: AstNode) -> CompiledKernel:
    key = (device, ast)
    if key in _kernels:
        return _kernels[key]
    from codegen.kernel import Kernel
    from codegen.optimizer import optimize
    from codegen.uops import print_program

    renderer = Device.renderer(device)
    k = Kernel(ast)
    if not getenv("NOOPT", 0):
        optimize(k, renderer)
    program = renderer.linearize(k)
    symbol, source = renderer.render(program.name, program.uops)
    level = debug_level()
    if level >= 3:
        print(f"--- kernel {program.name} on {device}: opts {k.applied}\n{ast.pretty()}")
    if level >= 4:
        print(source)
    if level >= 5:
        print(print_program(program.uops))
    runtime_device = Device[device]
    binary = runtime_device.compile(source)
    if level >= 5 and getattr(runtime_device, "last_optimized_ir", None):
        print(runtime_device.last_optimized_ir)
    compiled = CompiledKernel(program.name, symbol, runtime_device.program(symbol, binary), program.global_size,
                              program.local_size, program.flops, _thread_count(k), source)
    counters["kernels_compiled"] += 1
    _kernels[key] = compiled
    return compiled


def _thread_count(k) -> int:
    """Split a CPU kernel over threads only when it does enough work to pay for the hand-off (~10 µs)."""
    work = prod(k.full_shape)
    return 1 if work < 1 << 16 else 64


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
        from tinyjit.ops import Op
        out = node.src[0].buffer if node.op == Op.ASSIGN else Buffer(node.device, node.size, node.dtype)
        if node.size == 0:
            node.buffer = out
            continue
        kernel = compile_kernel(node.device, item.ast)
        buffers = [out] + [i.buffer for i in item.inputs]
        elapsed = kernel(buffers, wait=level >= 2)
        counters["kernels_launched"] += 1
        if capture is not None:
            capture.append(("kernel", kernel, buffers))
        node.buffer = out
        if level >= 2:
            nbytes = sum(b.nbytes for b in buffers)
            stat = _stats[kernel.name]
            stat[0] += 1
            stat[1] += elapsed
            stat[2] += kernel.flops
            stat[3] += nbytes
            print(f"  {node.device:<4} {kernel.name:<28} {elapsed * 1e6:9.1f} us  "
                  f"{kernel.flops / max(elapsed, 1e-9) / 1e9:8.2f} GFLOP/s  {nbytes / max(elapsed, 1e-9) / 1e9:7.2f} GB/s"
                  f"  {'threads=' + str(kernel.threads) if kernel.threads > 1 else ''}")


def copy_buffer(dest: Buffer, src: Buffer) -> None:
    """Copy between devices (through host memory)."""
    dest.copyin(src.numpy())


def realize_nodes(nodes) -> None:
    from tinyjit.schedule import create_schedule
    level = debug_level()
    t0 = time.perf_counter()
    schedule = create_schedule(list(nodes))
    run_schedule(schedule)
    if level >= 1 and schedule:
        kernels = sum(1 for s in schedule if s.kind == "kernel")
        print(f"realize: {kernels} kernel{'s' if kernels != 1 else ''}, {len(schedule)} items in "
              f"{(time.perf_counter() - t0) * 1e3:.2f} ms")


@atexit.register
def _print_stats() -> None:
    if debug_level() >= 2 and _stats:
        print(f"{'kernel':<30}{'calls':>7}{'total ms':>11}{'GFLOP/s':>10}{'GB/s':>9}")
        for name, (calls, seconds, flops, nbytes) in sorted(_stats.items(), key=lambda kv: -kv[1][1]):
            print(f"{name:<30}{calls:>7}{seconds * 1e3:>11.3f}{flops / max(seconds, 1e-9) / 1e9:>10.2f}"
                  f"{nbytes / max(seconds, 1e-9) / 1e9:>9.2f}")
