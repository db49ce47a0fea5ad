"""Recording what a thread runs, for TinyJit to replay: `with capture() as recorded:`.

While the block runs, every step the calling thread runs on buffers (a kernel launch, a copy between devices, a
host step such as an MPI collective, an index check) is appended to `recorded.steps` by the code that runs it
(`record`); steps of other threads are not. Blocks nest: an inner block records into its own Capture only.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from tinyjit.helpers import NameEnum


class StepKind(NameEnum):
    KERNEL = "kernel"   # `run` is a CompiledKernel: replayed through its prepared launch
    COPY = "copy"       # a copy between devices: run(dest, src)
    HOST = "host"       # a step on the host (tinyjit.distributed's collectives): run(*buffers)
    CHECK = "check"     # an index check reading a flag the kernels computed (tinyjit.index_check): run(*buffers)


@dataclass
class Step:
    kind: StepKind
    run: Any          # a CompiledKernel (KERNEL), else a function called with the buffers
    buffers: list     # the buffers it runs on; the first is the one it writes (a check reads it)
    # the buffer it writes is a kernel plan's scratch (a PACK/DEPAD copy's destination), read only by the launches
    # of the same scheduled kernel
    writes_scratch: bool = False


@dataclass
class Capture:
    steps: list[Step] = field(default_factory=list)
    # buffers that old contents of an in-place updated buffer were copied into meanwhile (realize's
    # preserve_old_contents): TinyJit treats them like the buffers the function assigned
    preserved: list = field(default_factory=list)


class _CaptureLocal(threading.local):
    """Per thread: the Capture being recorded. A class attribute gives the default: getattr with a default on a
    plain threading.local raises and catches an AttributeError inside, ~1 us, and every realize asks."""
    capture: Optional["Capture"] = None


_local = _CaptureLocal()


@contextmanager
def capture() -> Iterator[Capture]:
    """Record the steps this thread runs until the block ends, into the Capture yielded."""
    previous = _local.capture
    _local.capture = recorded = Capture()
    try:
        yield recorded
    finally:
        _local.capture = previous


def current() -> Optional[Capture]:
    """The Capture this thread's steps are being recorded into, or None."""
    return _local.capture


def record(kind: StepKind, run, buffers: list, writes_scratch: bool = False) -> None:
    """Append a step to this thread's capture, when one is running."""
    recorded = current()
    if recorded is not None:
        recorded.steps.append(Step(kind, run, buffers, writes_scratch))


def without_repeated_scratch_copies(steps: list[Step]) -> list[Step]:
    """`steps` without the copies into scratch that repeat an earlier one: the same copy kernel on the same buffers,
    none of which was written since, so the earlier scratch still holds the result. The launches that read the
    dropped copy's scratch read the earlier one instead. An RNN step packs the same weight for each of its T
    products; a TinyJit replay then packs it once.

    Only scratch is shared this way: it is read by the launches of its own scheduled kernel alone, and each run
    of a plan gets new scratch, so nothing writes the earlier scratch again while a later launch reads it."""
    out: list[Step] = []
    last_write: dict[int, int] = {}   # id(buffer) -> position in `out` of the last step that wrote it
    made: dict[tuple, tuple[int, object]] = {}   # (copy kernel, its input buffers) -> (position, scratch written)
    instead: dict[int, object] = {}   # id(dropped copy's scratch) -> the earlier scratch holding the same values
    for step in steps:
        if any(id(b) in instead for b in step.buffers):
            step = dataclasses.replace(step, buffers=[instead.get(id(b), b) for b in step.buffers])
        if step.kind == StepKind.KERNEL and step.writes_scratch:
            # the same code at the same sizes (plans of different kernels share their pack copies' code)
            run = step.run
            key = (run.symbol, run.source, run.global_size, run.local_size, run.arg_shifts) + \
                tuple(id(b) for b in step.buffers[1:])
            earlier = made.get(key)
            if earlier is not None:
                position, scratch = earlier
                if last_write.get(id(scratch)) == position and \
                        all(last_write.get(id(b), -1) < position for b in step.buffers[1:]):
                    instead[id(step.buffers[0])] = scratch
                    continue
            made[key] = (len(out), step.buffers[0])
        if step.kind != StepKind.CHECK:   # (a check reads its first buffer)
            last_write[id(step.buffers[0])] = len(out)
        out.append(step)
    return out
