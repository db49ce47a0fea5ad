"""The environment variables tinyjit reads: one table, one reader that checks the value and, when it is not
valid, raises one line naming the variable and its valid values (never a silent fix-up).

This lives in `runtime` because every layer reads some of them (`runtime` imports nothing of `tinyjit` or
`codegen`); `tinyjit.helpers.getenv` reads through here, and `import tinyjit` checks every variable that is set.
Paths (TINYJIT_CACHE_DIR, TINYJIT_DATA_DIR, CUDA_HOME) are read where they are used. DEVICE is checked by
tinyjit/device.py against the backends, CL_PLATFORM/CL_DEVICE here for their form and by runtime/opencl.py against
the platforms and devices found.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Optional

# more worker threads than this is a typo, not a machine (and each one is an OS thread started at once)
MAX_THREADS = 1024


@dataclass(frozen=True)
class IntVar:
    """An integer in [lo, hi] (hi None: no upper bound); `valid` says what the values mean, for the error."""
    default: int
    lo: int
    hi: Optional[int]
    valid: str

    def parse(self, name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            value = None
        if value is None or value < self.lo or (self.hi is not None and value > self.hi):
            raise ValueError(f"{name}={raw!r} is not valid; valid values: {self.valid}")
        return value


def _flag(default: int, meaning: str) -> IntVar:
    return IntVar(default, 0, 1, f"0 or 1 ({meaning})")


VARIABLES: dict[str, IntVar] = {
    "DEBUG": IntVar(0, 0, 6, "0 (quiet) to 6: 1 kernel counts, 2 a line per kernel, 3 schedules and ASTs, "
                             "4 source, 5 linear program and compiled IR, 6 machine code"),
    "BEAM": IntVar(0, 0, None, "0 (off) or a beam width >= 1"),
    "NOOPT": _flag(0, "1 turns the hand-coded kernel optimizations off"),
    "JIT": _flag(1, "0 turns TinyJit capture off"),
    "CACHE": _flag(1, "0 disables the on-disk compile cache"),
    "THREADS": IntVar(0, 1, MAX_THREADS, f"1 to {MAX_THREADS} CPU worker threads (unset: one per core)"),
    "TINYJIT_NATIVE_POOL": _flag(1, "0 uses Python threads instead of the native CPU thread pool"),
    "TINYJIT_COMPILE_PROCESSES": IntVar(-1, -1, MAX_THREADS, "processes that compile CPU kernels in parallel: "
                                        "0 (compile in threads of this process), 2 or more, or -1 (one per core)"),
    "CPU": _flag(0, "1 makes CPU the default device"),
    "CL": _flag(0, "1 makes CL the default device"),
    "CUDA": _flag(0, "1 makes CUDA the default device"),
    "TINYJIT_KERNEL_CACHE": IntVar(1024, 1, None, "a positive number of compiled kernels kept in memory"),
    "CL_PLATFORM": IntVar(0, 0, None, "the index of an OpenCL platform: 0, 1, ..."),
    "CL_DEVICE": IntVar(0, 0, None, "the index of a device of the OpenCL platform: 0, 1, ..."),
}


@functools.lru_cache(maxsize=None)
def env(name: str) -> int:
    """The value of the known variable `name` (its default when unset or empty), checked: ValueError naming the
    valid values otherwise. Cached: the environment is read once per process."""
    var = VARIABLES[name]
    raw = os.environ.get(name, "")
    return var.default if raw.strip() == "" else var.parse(name, raw)


def device_shortcut(name: str) -> bool:
    """CPU=1, CL=1, CUDA=1, and the same flag for a backend registered later (tests add one): checked 0 or 1."""
    var = VARIABLES.get(name) or _flag(0, f"1 makes {name} the default device")
    raw = os.environ.get(name, "")
    return bool(var.default if raw.strip() == "" else var.parse(name, raw))


def is_set(name: str) -> bool:
    return os.environ.get(name, "").strip() != ""


def check_all() -> None:
    """Read every known variable that is set, so a bad value fails at once (at import) rather than at first use."""
    for name in VARIABLES:
        if is_set(name):
            env(name)
