"""Devices: allocate, copy, compile (with an on-disk cache) and launch kernels.

This package never sees a graph: it takes source text and buffers. Each backend lives in its own module
(`cpu`, `opencl`, `cuda`) and is imported only when used, so a missing driver package costs nothing until
someone asks for that device. The two errors below are shared by every backend.
"""


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
