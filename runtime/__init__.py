"""Devices: memory, compilers and kernel launches. Never sees a graph; takes source text and buffers."""


class DeviceUnavailable(RuntimeError):
    """The backend cannot run on this machine (missing package, driver or device); the message says why."""


class CompileError(RuntimeError):
    """A kernel failed to compile; the message holds the numbered source and the compiler's log."""

    def __init__(self, source: str, log: str, what: str = "kernel"):
        numbered = "\n".join(f"{i + 1:4d} | {line}" for i, line in enumerate(source.splitlines()))
        super().__init__(f"{what} failed to compile:\n{log}\n--- source ---\n{numbered}")
        self.source, self.log = source, log
