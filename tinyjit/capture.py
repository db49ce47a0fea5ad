"""Recording what a thread runs, for TinyJit to replay: `with capture() as recorded:`.

While the block runs, every step the calling thread runs on buffers (a kernel launch, a copy between devices, a
host step such as an MPI collective, an index check) is appended to `recorded.steps` by the code that runs it
(`record`); steps of other threads are not. Blocks nest: an inner block records into its own Capture only.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
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


@dataclass
class Capture:
    steps: list[Step] = field(default_factory=list)
    # buffers that old contents of an in-place updated buffer were copied into meanwhile (realize's
    # preserve_old_contents): TinyJit treats them like the buffers the function assigned
    preserved: list = field(default_factory=list)


_local = threading.local()


@contextmanager
def capture() -> Iterator[Capture]:
    """Record the steps this thread runs until the block ends, into the Capture yielded."""
    previous = getattr(_local, "capture", None)
    _local.capture = recorded = Capture()
    try:
        yield recorded
    finally:
        _local.capture = previous


def current() -> Optional[Capture]:
    """The Capture this thread's steps are being recorded into, or None."""
    return getattr(_local, "capture", None)


def record(kind: StepKind, run, buffers: list) -> None:
    """Append a step to this thread's capture, when one is running."""
    recorded = current()
    if recorded is not None:
        recorded.steps.append(Step(kind, run, buffers))
