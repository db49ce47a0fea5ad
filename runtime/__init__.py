"""Devices: allocate, copy, compile (with an on-disk cache) and launch kernels.

This package never sees a graph: it takes source text and buffers. Each backend lives in its own module
(`cpu`, `opencl`, `cuda`) and is imported only when used, so a missing driver package costs nothing until
someone asks for that device. What every backend provides is declared below (`Device`, `Allocator`, `Program`,
`PreparedLaunch`); tinyjit's kernel cache uses nothing else of a device. The two errors at the end are shared by
every backend.
"""
from __future__ import annotations

import functools
import threading
from abc import ABC, abstractmethod
from typing import Callable

# Held while a module is imported on first use or a device is opened (tinyjit.helpers.lazy_import): a fork takes it
# before anything else (runtime.cpu's fork locks, tinyjit.helpers), so a child never inherits an import or an
# LLVM set-up half done by a thread it does not have. Re-entrant: both fork hooks take it.
first_use_lock = threading.RLock()


class Allocator(ABC):
    """A device's memory. A handle is opaque to everyone but the device's own programs; copies block, so the
    caller may reuse its host memory as soon as they return."""

    @abstractmethod
    def alloc(self, nbytes: int):
        """A new buffer of `nbytes` bytes (a handle, even for 0 bytes)."""

    @abstractmethod
    def free(self, handle) -> None:
        """Give the buffer back (the handle is not used again)."""

    @abstractmethod
    def copyin(self, handle, src: memoryview) -> None:
        """Host bytes `src` into the start of the buffer; ValueError when they do not fit."""

    @abstractmethod
    def copyout(self, dest: memoryview, handle) -> None:
        """The first `len(dest)` bytes of the buffer into host memory `dest`; ValueError when it is larger."""

    # whether `offset` works: kernels then launch on a pointer into a buffer (tinyjit.base_offsets)
    offsets = False

    def offset(self, handle, nbytes: int):
        """A handle `nbytes` bytes into the buffer, for a kernel argument only (copies take whole buffers); it
        keeps the buffer's memory alive. Only where `offsets` is True."""
        raise NotImplementedError(f"{type(self).__name__} has no offset handles")


class PreparedLaunch:
    """One kernel with its launch sizes fixed: what the engine calls for every run of a compiled kernel.
    `threads` is how many threads a launch is split over (the CPU's choice; 1 on other devices).

    This default passes the arguments to the program one call at a time; a device may do better (the CPU builds
    the C argument array once in `bind`)."""
    threads = 1

    def __init__(self, program: "Program", global_size: tuple, local_size: tuple):
        self.program, self.global_size, self.local_size = program, global_size, local_size

    def __call__(self, handles: list, wait: bool = False) -> float | None:
        """Launch over buffer handles `handles`; with `wait`, block until done and return the seconds taken."""
        return self.program(*handles, global_size=self.global_size, local_size=self.local_size, wait=wait)

    def bind(self, handles: list) -> tuple[Callable[[], None], Callable[[int, object], None]]:
        """(call, set_handle) for launching over the same arguments again and again (TinyJit's replay): call()
        launches, set_handle(j, handle) makes argument j another buffer from then on."""
        handles = list(handles)
        return functools.partial(self, handles), handles.__setitem__


class Program(ABC):
    """A compiled kernel loaded on its device."""
    name: str

    @abstractmethod
    def __call__(self, *args, global_size=(1, 1, 1), local_size=(1, 1, 1), wait: bool = False) -> float | None:
        """Launch once on `args` (buffer handles; plain ints are passed as 32-bit ints). `global_size` counts
        work-groups per dimension (CPU: the outer loop's length), `local_size` work-items per group. With `wait`,
        block until the kernel is done and return the seconds it took, else None."""

    def prepare(self, global_size: tuple, local_size: tuple, work: int) -> PreparedLaunch:
        """The launch of this kernel at these sizes; `work` (the kernel's loop iterations) lets a device decide
        whether splitting it over threads pays."""
        return PreparedLaunch(self, global_size, local_size)

    @property
    def wants_reload(self) -> bool:
        """True when the device would rather load this kernel again (`reloaded`) to free the memory it sits in
        (the CPU's retired JIT engines)."""
        return False

    def reloaded(self) -> "Program":
        """The same kernel loaded again (see wants_reload)."""
        return self


class Device(ABC):
    """A backend's device: memory (`allocator`), source -> binary (`compile`, cached on disk), binary -> loaded
    kernel (`program`). `threads`: how many threads a launch may be split over (CPU; 1 elsewhere)."""
    name: str
    allocator: Allocator
    threads: int = 1
    # kernels launch in work-groups (OpenCL, CUDA) rather than as loops on the CPU's threads: the same as the `gpu`
    # of the backend's renderer (tinyjit.device.BACKENDS), readable without importing the code generator
    gpu: bool = True

    @abstractmethod
    def compile(self, src: str) -> bytes:
        """Kernel source -> binary; CompileError with the numbered source and the compiler's log."""

    @abstractmethod
    def program(self, name: str, binary: bytes) -> Program:
        """Load kernel `name` of `binary`; CompileError when it cannot be loaded or is not there."""

    @abstractmethod
    def cache_key(self) -> tuple[str, ...]:
        """Everything besides the source that decides what `compile` produces (compiler version, target, options):
        part of the keys of the disk caches."""

    def debug_listing(self, src: str, machine_code: bool = False) -> str | None:
        """What `src` compiles to, for DEBUG (optimized IR, or with machine_code the assembly); None when the
        device cannot show it."""
        return None

    def synchronize(self) -> None:
        """Wait until every launch so far is done."""


class DeviceUnavailable(RuntimeError):
    """A backend cannot be used here. The message is ONE line: the reason and the command that fixes it."""


def number_lines(src: str) -> str:
    """The source with right-aligned 1-based line numbers, the form compiler logs refer to."""
    lines = src.splitlines() or [""]
    width = len(str(len(lines)))
    return "\n".join(f"{i:>{width}} | {line}" for i, line in enumerate(lines, 1))


class CompileError(RuntimeError):
    """Kernel source that a compiler (or assembler, or loader) rejected.

    The message holds what failed, the source with line numbers (when known) and the compiler's log, so a
    renderer bug can be read straight from the traceback. `src` and `log` stay available as attributes.
    """

    def __init__(self, what: str, src: str | None = None, log: str = ""):
        self.what, self.src, self.log = what, src, log.strip()
        parts = [what]
        if src is not None:
            parts += ["--- source ---", number_lines(src)]
        parts += ["--- compiler log ---", self.log or "(empty)"]
        super().__init__("\n".join(parts))
