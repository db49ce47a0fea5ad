"""Processes and threads around compilation: a fork while another thread compiles gives a working child, and
Ctrl-C during a parallel precompile stops the process at once.

Both run in a subprocess with a timeout, and every forked child has a deadline, so a regression fails in bounded
time instead of hanging CI.
"""
import os
import select
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FORK_WHILE_COMPILING = r"""
import multiprocessing as mp, threading, time
import numpy as np
import llvmlite.binding as llvm
from tinyjit import Tensor
from tinyjit.device import Device

assert Device["CPU"].threads == 2
x = np.linspace(-1, 1, 1 << 17, dtype=np.float32)   # large enough that a launch is split over the worker threads

def chain(t, i, depth, sin):
    for j in range(depth):
        t = sin(t * (1.0 + 1e-3 * j + 1e-5 * i)) + 0.25
    return t

def check(i, n, depth):
    got = chain(Tensor(x[:n]), i, depth, Tensor.sin).numpy()
    want = chain(x[:n].astype(np.float64), i, depth, np.sin)
    return np.allclose(got, want, rtol=1e-4, atol=1e-4)

assert check(0, len(x), 1)   # the parent's engine, pools and threads all exist before anything forks
compiler_ident, in_llvm, stop, failures, compiled = [], threading.Event(), threading.Event(), [], [0]

def on_llvm_lock():   # llvmlite calls this with its global lock held, before each call into LLVM
    if threading.get_ident() in compiler_ident:
        in_llvm.set()

llvm.ffi.register_lock_callback(on_llvm_lock, lambda: None)

def compile_forever():   # a new kernel each time (CACHE=0): this thread is almost always inside LLVM
    compiler_ident.append(threading.get_ident())
    i = 0
    while not stop.is_set():
        i += 1
        if not check(i, 1000 + i, 12):
            failures.append(i)
        compiled[0] += 1

def child(k):   # a new kernel (compiled here) and a threaded launch, checked against numpy
    ok = check(1000 + k, len(x) - k, 3) and check(0, len(x), 1)
    raise SystemExit(0 if ok else 1)

thread = threading.Thread(target=compile_forever, daemon=True)
thread.start()
ctx = mp.get_context("fork")
children = []
for k in range(3):
    in_llvm.clear()
    assert in_llvm.wait(timeout=60), "the compiling thread never entered LLVM"
    children.append(ctx.Process(target=child, args=(k,)))
    children[-1].start()   # forks now, while the other thread is (almost surely) inside an LLVM call
deadline = time.monotonic() + 60
codes = []
for p in children:
    p.join(timeout=max(0.0, deadline - time.monotonic()))
    if p.is_alive():
        p.kill()
        p.join()
        codes.append("hung")
    else:
        codes.append(p.exitcode)
stop.set()
thread.join(timeout=120)
assert not thread.is_alive(), "the parent's compiling thread did not finish"
print("children", codes)
print("parent", compiled[0], "kernels compiled, failures", failures, "new kernel ok", check(99999, 777, 2))
"""


def test_fork_while_another_thread_compiles_gives_working_children():
    env = dict(os.environ, PYTHONPATH=ROOT, THREADS="2", CACHE="0", TINYJIT_NATIVE_POOL="1")
    proc = subprocess.run([sys.executable, "-c", FORK_WHILE_COMPILING], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "children [0, 0, 0]", f"forked children must run kernels normally: {lines[0]}"
    assert lines[1].endswith("failures [] new kernel ok True"), f"the parent must be unaffected: {lines[1]}"


# Eight kernels that each take seconds to generate and compile, built by the precompile worker threads.
LONG_PRECOMPILE = r"""
import sys, threading, time
import numpy as np
from tinyjit import Tensor

outs = []
for i in range(8):
    y = Tensor(np.full((64, 64), i, np.float32))
    for j in range(100):
        y = (y * (1.0 + j * 1e-3 + i * 1e-6)).sin() + 0.5
    outs.append(y.sum(axis=1))

def announce_workers():   # tell the test when the worker threads have started, so it interrupts mid-compile
    before = threading.active_count()   # this thread included
    while threading.active_count() <= before:
        time.sleep(0.01)
    print("workers started", flush=True)

threading.Thread(target=announce_workers, daemon=True).start()
try:
    Tensor.realize_all(*outs)
except KeyboardInterrupt:
    print("KeyboardInterrupt at", time.time(), flush=True)
    raise
print("finished", flush=True)
"""


def test_ctrl_c_during_precompile_stops_promptly():
    env = dict(os.environ, PYTHONPATH=ROOT, THREADS="2", CACHE="0")
    proc = subprocess.Popen([sys.executable, "-c", LONG_PRECOMPILE], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready and proc.stdout.readline().strip() == "workers started", "no precompile workers started"
        time.sleep(1.0)   # well inside the ~30 s of compiling ahead
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        exited = time.time()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "finished" not in out, "the interrupt came too late to test anything"
    assert proc.returncode == -signal.SIGINT and err.rstrip().endswith("KeyboardInterrupt"), err[-2000:]
    reached = float(out.split("KeyboardInterrupt at")[1])
    assert reached - sent < 3, f"KeyboardInterrupt reached the main thread {reached - sent:.1f} s after Ctrl-C"
    assert exited - sent < 8, f"the process exited {exited - sent:.1f} s after Ctrl-C: a worker kept it alive"


# A fork while another thread is inside an import made on first use (tinyjit.helpers.lazy_import): the code
# generator in a warm-started process (which found its plans on disk and never imported it), here a module that
# takes a second to import. The child inherited that module's import lock held by a thread it does not have, and
# hung at its own first use; now the fork waits for the import.
FORK_DURING_FIRST_USE_IMPORT = r"""
import builtins, os, sys, threading, time
import numpy as np
from tinyjit import Tensor
from tinyjit.helpers import lazy_import

def child_exit_code(run_in_child):
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if run_in_child() else 3)
        except BaseException:
            os._exit(4)
    deadline = time.time() + 60
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"

sys.path.insert(0, sys.argv[1])
with open(os.path.join(sys.argv[1], "slow_first_use.py"), "w") as f:
    f.write("import builtins, time\nbuiltins.slow_import_started.set()\ntime.sleep(1.0)\nVALUE = 7\n")
builtins.slow_import_started = threading.Event()
importer = threading.Thread(target=lazy_import, args=("slow_first_use",))
importer.start()
builtins.slow_import_started.wait()
print("slow import", child_exit_code(lambda: __import__("slow_first_use").VALUE == 7), flush=True)
importer.join()

x = np.linspace(-1, 1, 1000, dtype=np.float32)
assert "codegen.pipeline" not in sys.modules, "a warm start imports no code generator"
compiler = threading.Thread(target=lambda: (Tensor(x) * 3.25).cos().numpy())   # a miss: imports codegen
compiler.start()
while "codegen.pipeline" not in sys.modules and compiler.is_alive():
    pass
print("codegen import", child_exit_code(lambda: np.allclose((Tensor(x) * 1.75).sin().numpy(), np.sin(x * 1.75),
                                                              atol=1e-5)), flush=True)
compiler.join()
"""


def test_fork_while_another_thread_imports_on_first_use_gives_a_working_child(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, THREADS="2", TINYJIT_CACHE_DIR=str(tmp_path / "cache"))
    warm = "import numpy as np; from tinyjit import Tensor; (Tensor(np.ones(8, np.float32)) + 1).numpy()"
    subprocess.run([sys.executable, "-c", warm], env=env, check=True, timeout=300)
    proc = subprocess.run([sys.executable, "-c", FORK_DURING_FIRST_USE_IMPORT, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ["slow import 0", "codegen import 0"], proc.stdout
