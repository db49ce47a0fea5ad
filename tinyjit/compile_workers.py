"""Worker processes that build kernel plans for this one (tinyjit.kernel_cache.precompile).

LLVM calls hold llvmlite's process-wide lock, so threads overlap Python work with only one compilation at a time;
a schedule with many new kernels is built by worker processes instead (started once, then kept), each fed by one
precompile thread. A worker runs `serve` (started as kernel_cache.serve_builds, which gives it the build function):
a kernel AST comes in as a pickle on its stdin, the build (disk cache included) and the compile_log entries it made
go back on its stdout.
"""
from __future__ import annotations

import os
import pickle
import threading
from typing import TYPE_CHECKING, Callable

from tinyjit.device import Device

if TYPE_CHECKING:
    from tinyjit.ops import AstNode

# a schedule with at least this many new kernels is built by worker processes; TINYJIT_COMPILE_PROCESSES=0 keeps
# everything in this process
MIN_KERNELS_FOR_PROCESSES = 8
_workers: dict[int, "CompileWorker"] = {}
_workers_lock = threading.Lock()


def processes(device: str) -> int:
    """How many worker processes build `device`'s kernels: TINYJIT_COMPILE_PROCESSES, by default one per CPU thread;
    0 where fewer than 2 or not the CPU."""
    from runtime.env import env
    wanted = env("TINYJIT_COMPILE_PROCESSES")
    count = Device[device].threads if wanted < 0 else wanted
    return count if count >= 2 and device == "CPU" else 0


def worker(i: int) -> "CompileWorker | None":
    """Worker process i (started on first use), or None when it cannot run (then the thread builds itself)."""
    with _workers_lock:
        worker = _workers.get(i)
        if worker is None or not worker.alive():
            try:
                worker = _workers[i] = CompileWorker()
            except OSError:
                return None
        return worker


class CompileWorker:
    """A Python process that builds plans for this one (see the module docstring). It imports the same tinyjit
    (this process's sys.path) and runs nothing of the user's program (unlike multiprocessing's spawn, which imports
    the main script again). It exits when its stdin closes, i.e. with this process."""

    def __init__(self):
        import subprocess
        import sys
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.process = subprocess.Popen([sys.executable, "-c", "from tinyjit.kernel_cache import serve_builds; "
                                         "serve_builds()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.lock = threading.Lock()   # one request at a time on the pipe (threads may precompile at once)

    def alive(self) -> bool:
        return self.process.poll() is None

    def build(self, device: str, ast: AstNode) -> tuple[object, list] | None:
        """(the build of `ast`, its compile_log entries), or None when the worker could not make it (the caller
        builds it then)."""
        try:
            request = pickle.dumps((device, ast))
        except Exception:   # an AST too deep to pickle
            return None
        try:
            with self.lock:
                self.process.stdin.write(request)
                self.process.stdin.flush()
                ok, payload = pickle.load(self.process.stdout)
        except Exception:   # a broken pipe, a dead worker: never used again (the pipe may be mid-message)
            self.process.kill()
            return None
        if not ok:
            return None
        return payload


def serve(build: Callable[[str, AstNode], tuple[object, list]]) -> None:
    """The loop of a compile worker process (CompileWorker): `build(device, ast)` gives (build, compile_log entries);
    the protocol runs on the original stdout, prints go to stderr.
    Ctrl-C is the parent's to handle (a terminal sends it to the whole process group): the worker ignores it and
    leaves quietly when the parent closes the pipe or goes away."""
    import signal
    import sys
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    source = sys.stdin.buffer
    try:
        while True:
            device, ast = pickle.load(source)
            try:
                reply = (True, build(device, ast))
            except Exception as e:   # the parent builds this kernel itself and raises the error there
                reply = (False, repr(e))
            pickle.dump(reply, channel)
            channel.flush()
    except (EOFError, OSError):   # the parent closed the pipe or exited
        os._exit(0)


def _forget_workers_in_child() -> None:
    _workers.clear()   # a forked child shares the parent's pipes: it starts workers of its own
    global _workers_lock
    _workers_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers_in_child)
