"""Small utilities shared by every stage: environment variables, DEBUG level, shape arithmetic."""
from __future__ import annotations

import functools
import importlib
import math
import os
import sys
import threading
from enum import Enum
from typing import Iterable, TypeVar

from runtime import env, first_use_lock

T = TypeVar("T")


@functools.lru_cache(maxsize=None)
def getenv(key: str, default=0):
    """Read an environment variable (cached: env is read once). The variables tinyjit knows (DEBUG, BEAM, NOOPT,
    JIT, THREADS ...: runtime/env.py) are checked against their valid values, which a ValueError names; any other
    is converted to the type of `default`."""
    if key in env.VARIABLES:
        return env.env(key)
    value = os.environ.get(key)
    if value is None:
        return default
    try:
        return type(default)(value)
    except ValueError:
        raise ValueError(f"{key}={value!r} is not valid: expected {type(default).__name__} "
                         f"(e.g. {key}={default})") from None


def debug_level() -> int:
    return getenv("DEBUG", 0)


def prod(xs: Iterable[int]) -> int:
    return math.prod(xs)


def largest_divisor(n: int, limit: int) -> int:
    """The largest d <= limit that divides n (1 when there is none above 1)."""
    for d in range(min(n, limit), 1, -1):
        if n % d == 0:
            return d
    return 1


def all_same(xs) -> bool:
    xs = list(xs)
    return all(x == xs[0] for x in xs)


def argsort(xs) -> list[int]:
    return sorted(range(len(xs)), key=xs.__getitem__)


def normalize_axis(axis: int, ndim: int, op: str = "op") -> int:
    """Turn a possibly negative axis into 0..ndim-1, raising a clear error when it is out of range."""
    if not isinstance(axis, int):
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__}")
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    if not lo <= axis <= hi:
        raise IndexError(f"{op}: axis {axis} is out of range for a tensor with {ndim} dimensions "
                         f"(expected {lo}..{hi})")
    return axis % max(ndim, 1)


def round_up(x: int, multiple: int) -> int:
    return (x + multiple - 1) // multiple * multiple


class NameEnum(str, Enum):
    """An enum whose members are their own names as strings: a member equals, prints and formats as its name
    (`OptKind.UPCAST == "UPCAST"`), so code and tests may spell it either way (enum.StrEnum, which Python 3.10
    lacks)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


# Graph and kernel passes recurse once per op along a chain of fused ops (an unrolled loop of a few hundred steps is
# realized as one long chain), past Python's default limit of 1000 frames. Their frames are Python frames, so a
# higher limit is safe while they run.
GRAPH_RECURSION_LIMIT = 20_000
_recursion_lock = threading.Lock()
_recursion_users = 0


class _DeepRecursion:
    """Raise Python's recursion limit to GRAPH_RECURSION_LIMIT while the block runs (restored when the last
    concurrent user leaves). A class, not a generator context manager: every realize enters it."""

    previous = None

    def __enter__(self) -> None:
        global _recursion_users
        with _recursion_lock:
            if _recursion_users == 0:
                _DeepRecursion.previous = sys.getrecursionlimit()
                sys.setrecursionlimit(max(_DeepRecursion.previous, GRAPH_RECURSION_LIMIT))
            _recursion_users += 1

    def __exit__(self, *exc) -> None:
        global _recursion_users
        with _recursion_lock:
            _recursion_users -= 1
            if _recursion_users == 0:
                sys.setrecursionlimit(_DeepRecursion.previous)


_deep_recursion = _DeepRecursion()


def deep_recursion() -> _DeepRecursion:
    """`with deep_recursion():` raises Python's recursion limit to GRAPH_RECURSION_LIMIT while the block runs
    (restored when the last concurrent user leaves)."""
    return _deep_recursion



# ---- imports on first use, safe to fork during ----
# Some modules are imported on first use, not with tinyjit (the code generator: a warm start that finds every plan
# on disk never needs it; a device's runtime). A fork while another thread is inside such an import hands the child
# that module's import lock held by a thread the child does not have: the child's own first use of the module then
# waits forever. So those imports, the opening of a device (LLVM's set-up) and unpickling (which imports the
# classes it meets) hold runtime.first_use_lock, which a fork takes first and both processes release after it:
# a fork waits for them. (Nothing under it waits for runtime.cpu's fork locks, which a fork takes after it.)


def lazy_imports():
    """`with lazy_imports():` around code that may import modules on first use (unpickling a plan, opening a
    device): a fork waits until the block is done."""
    return first_use_lock


def lazy_import(name: str):
    """importlib.import_module(name) for a module imported on first use: a fork waits until it is imported."""
    module = sys.modules.get(name)
    if module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False):
        return module   # (imported already: no lock)
    with first_use_lock:
        return importlib.import_module(name)


def _release_first_use_lock() -> None:
    first_use_lock.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=first_use_lock.acquire, after_in_parent=_release_first_use_lock,
                        after_in_child=_release_first_use_lock)
