"""Kernels of a large schedule compile in worker processes (llvmlite holds one lock around every LLVM call, so
threads compile one kernel at a time). Tests count builds and worker processes, never seconds."""
import os
import subprocess
import sys

import numpy as np

from tinyjit import Tensor, compile_workers
from tinyjit import kernel_cache as compiler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# a script without a main guard (what multiprocessing's spawn would run again in every worker)
SCRIPT = """
import numpy as np
print("script body ran", flush=True)
from tinyjit import Tensor, compile_workers, kernel_cache as compiler
x = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
outs = [(x * (i + 1) + i).exp2().sum(1) for i in range(12)]   # 12 distinct kernels in one schedule
Tensor.realize_all(*outs)
xn = np.arange(12, dtype=np.float32).reshape(3, 4)
ok = all(np.allclose(o.numpy(), np.exp2(xn * (i + 1) + i).sum(1), rtol=1e-5) for i, o in enumerate(outs))
workers = [w for w in compile_workers._workers.values() if w.alive()]
print("values ok", ok, "builds", len(compiler.compile_log), "workers", len(workers), flush=True)
"""


def _run(extra_env: dict, tmp_path) -> str:
    env = dict(os.environ, PYTHONPATH=ROOT, TINYJIT_CACHE_DIR=str(tmp_path), THREADS="2", **extra_env)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_large_schedule_compiles_in_worker_processes(tmp_path):
    out = _run({}, tmp_path)
    assert out.count("script body ran") == 1   # the workers import tinyjit, not the user's script
    assert "values ok True builds 12 workers 2" in out, out


def test_compile_processes_can_be_turned_off(tmp_path):
    out = _run({"TINYJIT_COMPILE_PROCESSES": "0"}, tmp_path)
    assert "values ok True builds 12 workers 0" in out, out


def test_a_warm_disk_cache_starts_no_worker_processes(tmp_path):
    """The second process finds every plan on disk: it loads them, builds none and starts no worker (starting one
    costs a Python start-up, which made a warm-cache first step slower than a cold one used to be)."""
    _run({}, tmp_path)
    out = _run({}, tmp_path)
    assert "values ok True builds 0 workers 0" in out, out


def test_a_starting_worker_hands_kernels_back_until_it_is_ready():
    """A worker takes a Python start-up: until its READY message the precompile thread builds kernels itself
    (build() gives None at once) instead of waiting; once ready it builds them."""
    from tinyjit.schedule import create_schedule
    x = Tensor(np.arange(6, dtype=np.float32))
    (item,) = create_schedule([(x * 3.5 - 1).node])
    worker = compile_workers.CompileWorker()
    try:
        assert worker.build("CPU", item.ast) is None    # a Python start-up is far longer than this call
        assert worker.ready.wait(120), "the worker never said it was ready"
        built, log = worker.build("CPU", item.ast)
        # the kernel this process builds (a 6-element kernel is one upcast block: E_1_u6)
        assert built.launches[built.main].name == compiler.compile_plan("CPU", item.ast).kernel.name
    finally:
        worker.process.stdin.close()
        worker.process.wait(timeout=60)


def test_precompile_starts_the_reductions_first():
    """Longest first: reductions (the slow compiles) go to the threads before elementwise kernels, each kind in
    schedule order, so the compile that runs on alone at the end is a short one."""
    from tinyjit.schedule import create_schedule
    x = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    outs = [x * 2 + 1, (x * 3).sum(1), x.exp2(), (x - 1).amax(0), x.sqrt()]
    asts = [item.ast for item in create_schedule([o.node for o in outs])]
    reduces = [i for i, a in enumerate(asts) if any(n.op.name in ("SUM", "RMAX") for n in a.toposort())]
    assert len(asts) == 5 and len(reduces) == 2
    order = compiler.compile_order(asts)
    assert order[:2] == [asts[i] for i in reduces]
    assert order[2:] == [a for i, a in enumerate(asts) if i not in reduces]
