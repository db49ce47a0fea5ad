"""Run a schedule: compile each kernel (tinyjit.kernel_cache: cached in memory and on disk) and launch it.

DEBUG output (DESIGN.md): 1 kernel counts and realize times; 2 one line per kernel launch (name, sizes, time,
GFLOP/s, GB/s) and a table at exit; 3 the schedule and each kernel's AST with the optimizations applied; 4 the
generated source; 5 the linear program and the compiled output (optimized LLVM IR); 6 machine code (CPU).
"""
from __future__ import annotations

import atexit
import time
from collections import defaultdict
from typing import Callable

from tinyjit import capture, inplace
from tinyjit.capture import StepKind
from tinyjit.deferred import take_deferred
from tinyjit.device import Buffer
from tinyjit.helpers import debug_level
from tinyjit.kernel_cache import CompiledKernel, compile_plan, counters, precompile
from tinyjit.lazy import Node
from tinyjit.ops import Op
from tinyjit.schedule import ItemKind, ScheduleItem, create_schedule, format_schedule
from tinyjit.schedule_cache import GraphWalk, cached_schedule, remembered_walks, walk_for

# called before anything runs with the nodes about to be realized and the positions of their graph's nodes
# (id(node) -> position in the scheduler's order, GraphWalk.index), e.g. tinyjit.index_check's deferred checks of
# lazy indices (an out-of-range index raises there, so no tensor is left half-updated); returns whether it
# realized anything itself
before_realize_hooks: list[Callable[[list, dict], bool]] = []
_stats: dict[str, list] = defaultdict(lambda: [0, 0.0, 0, 0])   # name -> calls, seconds, flops, bytes


# enum members as module constants (reading one from its Enum class goes through a slow metaclass hook)
_KERNEL, _COPY, _EMPTY, _ASSIGN = ItemKind.KERNEL, ItemKind.COPY, ItemKind.EMPTY, Op.ASSIGN


def run_schedule(items: list[ScheduleItem], preserve: dict | None = None, level: int | None = None) -> None:
    """Launch the items in order. `preserve` (tinyjit.inplace.preservation_plan): before an assign overwrites a
    buffer, the listed nodes still holding its contents get a copy of them. `level`: DEBUG, when the caller read it."""
    level = debug_level() if level is None else level
    if len(items) > 1:
        kernels = [item for item in items if item.kind == _KERNEL and item.output.size]
        if len(kernels) > 1:   # (builds several kernels at once; one is built where it runs)
            for device in {item.output.device for item in kernels}:
                precompile(device, [item.ast for item in kernels if item.output.device == device])
    recording = capture.current() is not None
    for item in items:
        node = item.output
        target = inplace.target_buffer(node) if node.op is _ASSIGN else None
        # the item reads its inputs as they are now: an assign's own kernel reads the target's current contents
        # from the target, not from the copy made below for other readers (a TinyJit capture records these
        # buffers, and the copy is not part of it)
        input_buffers = [i.buffer for i in item.inputs]
        if target is not None and (item.preserve or preserve):
            preserve_old_contents(target, item.preserve + (preserve or {}).get(id(target), []))
        if item.kind == _EMPTY:
            node.buffer = Buffer(node.device, node.size, node.dtype)
            continue
        if item.kind == _COPY:
            out = Buffer(node.device, node.size, node.dtype)
            copy_buffer(out, input_buffers[0])
            node.buffer = out
            capture.record(StepKind.COPY, copy_buffer, [out, input_buffers[0]])
            continue
        size = node.size
        out = target if node.op is _ASSIGN else Buffer(node.device, size, node.dtype)
        if size == 0:
            node.buffer = out
            continue
        plan = compile_plan(node.device, item.ast)
        input_buffers.insert(0, out)   # (the kernel's buffers: its output, then its inputs)
        if level < 2 and not recording:   # the common case: argument lists reused (KernelPlan.run)
            plan.run(input_buffers)
        else:
            for (kernel, bufs), (_, args) in zip(plan.bind(input_buffers), plan.launches):
                elapsed = kernel(bufs, wait=level >= 2)
                capture.record(StepKind.KERNEL, kernel, bufs, writes_scratch=args[0].scratch)
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


def preserve_old_contents(buffer: Buffer, nodes: list[Node]) -> None:
    """Copy `buffer` (about to be overwritten in place) into a new buffer for those `nodes` that still mean its
    current contents. Under a TinyJit capture the copy is recorded too (the kernels captured after it read the
    copy, so each replay makes it again) and the copy's buffer is reported to the capture, which then preserves
    it like an assigned buffer for readers outside the function."""
    holders = [n for n in nodes if n.buffer is buffer]
    if not holders:
        return
    copy = Node(Op.CONTIGUOUS, (Node.from_buffer(buffer, (buffer.size,)),), None, buffer.dtype, (buffer.size,),
                buffer.device)
    run_schedule(create_schedule([copy]))
    recording = capture.current()
    if recording is not None:
        recording.preserved.append(copy.buffer)
    for n in holders:
        n.buffer = copy.buffer
    inplace.stats["buffers_preserved"] += 1


def _with_inplace_readers(nodes: list[Node], walk: GraphWalk) -> tuple[list[Node], list | None]:
    """When some assign is pending, the buffers it overwrites may still be read by live tensors (tinyjit.inplace):
    (the nodes to realize, plus what was deferred to the next update of what it reads, e.g. the loss of
    backward(), which `walk` (of `nodes`) walks too; the live lazy tensors). Otherwise (nodes, None): nothing is
    overwritten."""
    if not inplace.assigns_pending():
        return nodes, None
    targets: list = []

    def reads_overwritten(t) -> bool:
        if not targets:
            targets.append(inplace.assign_targets(nodes, walk.graph))
        return inplace.reads_any(t.node, targets[0])
    deferred = [t.node for t in take_deferred(reads_overwritten)]
    if deferred:
        walk.add(deferred)
    return nodes + deferred, inplace.lazy_tensors()


def realize_nodes(nodes) -> None:
    """Compute `nodes`: schedule, compile and run (see the module docstring). The passes that recurse along
    chains of fused ops (scheduling, code generation) raise Python's recursion limit themselves (deep_recursion)
    when they run: a repeated graph runs none of them."""
    nodes = list(nodes)
    # one walk of the graph serves the hooks, the pending assigns and the schedule cache's key (continuing the walk
    # of the last backward's loss when that loss is realized here: a training step's forward graph is walked once)
    walk = GraphWalk(nodes) if remembered_walks.walk is None else walk_for(nodes)
    for hook in before_realize_hooks:
        if hook(nodes, walk.index) and walk.is_stale():   # (it realized nodes of this graph: walk again)
            walk = GraphWalk(nodes)
    level = debug_level()
    t0 = time.perf_counter() if level >= 1 else 0.0
    compiled_before = counters["kernels_compiled"]
    nodes, lazy = _with_inplace_readers(nodes, walk)
    schedule = cached_schedule(nodes, [t.node for t in lazy] if lazy else (), walk)
    if level >= 3 and schedule:
        print(format_schedule(schedule))
    run_schedule(schedule, None if lazy is None else inplace.preservation_plan(schedule, lazy), level)
    for t in lazy or ():   # readers realized by this schedule: drop the graphs that made them
        if t.node.realized:
            t._collapse()
    if level >= 1 and schedule:
        kernels = sum(1 for s in schedule if s.kind == ItemKind.KERNEL)
        compiled = counters["kernels_compiled"] - compiled_before
        print(f"realize: {kernels} kernel{'s' if kernels != 1 else ''} ({compiled} compiled), {len(schedule)} "
              f"item{'s' if len(schedule) != 1 else ''} in {(time.perf_counter() - t0) * 1e3:.2f} ms")


@atexit.register
def _print_stats() -> None:
    if not _stats:   # nothing ran (also: a bad DEBUG value already ended the import; don't read it again here)
        return
    if debug_level() >= 2:
        print(f"{'kernel':<30}{'calls':>7}{'total ms':>11}{'GFLOP/s':>10}{'GB/s':>9}")
        for name, (calls, seconds, flops, nbytes) in sorted(_stats.items(), key=lambda kv: -kv[1][1]):
            print(f"{name:<30}{calls:>7}{seconds * 1e3:>11.3f}{flops / max(seconds, 1e-9) / 1e9:>10.2f}"
                  f"{nbytes / max(seconds, 1e-9) / 1e9:>9.2f}")
