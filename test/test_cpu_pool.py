"""The CPU runtime's native thread pool: launches split over workers give the same results as one thread,
under many quick launches, with more threads than cores, and in a forked child."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRESS = """
import numpy as np
from tinyjit import Device, Tensor
assert Device["CPU"].threads == 4
rng = np.random.default_rng(0)
a, b = rng.standard_normal((96, 200)).astype(np.float32), rng.standard_normal((200, 160)).astype(np.float32)
x = rng.standard_normal((512, 300)).astype(np.float32)
ta, tb, tx = Tensor(a).realize(), Tensor(b).realize(), Tensor(x).realize()
for i in range(300):   # many quick launches of one kernel: a worker must never miss or repeat a range
    c = np.full((1, 1), i, np.float32)
    got = (tx + Tensor(c)).numpy()
    assert np.array_equal(got, x + c), i
    if i % 50 == 0:
        np.testing.assert_allclose((ta @ tb).numpy(), a @ b, rtol=1e-4, atol=1e-4)
print("ok", Device["CPU"].native_pool is not None)
"""
FORK = """
import os, numpy as np
from tinyjit import Tensor
x = np.arange(512 * 300, dtype=np.float32).reshape(512, 300)
assert np.array_equal((Tensor(x) * 2).numpy(), x * 2)   # the parent's workers exist now
pid = os.fork()
if pid == 0:   # the child has none of them: its launches must start new ones, not wait forever
    ok = np.array_equal((Tensor(x) + 3).numpy(), x + 3)
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
assert os.WEXITSTATUS(status) == 0
print("ok")
"""

TWO_LAUNCHERS = """
import threading, numpy as np
from tinyjit import Tensor
from tinyjit.kernel_cache import compile_plan
from tinyjit.device import Buffer
from tinyjit.schedule import create_schedule
x = np.arange(512 * 300, dtype=np.float32).reshape(512, 300)
t = Tensor(x).realize()
(item,) = create_schedule([(t * 2).node])
kernel = compile_plan("CPU", item.ast).kernel
assert kernel.threads > 1
errors = []

def launch_many():   # two threads launching at once take turns with the workers, never mix their ranges
    out = Buffer("CPU", x.size, item.output.dtype)
    for _ in range(300):
        kernel([out, t.node.buffer])
        if not np.array_equal(out.numpy().reshape(x.shape), x * 2):
            errors.append(1)
threads = [threading.Thread(target=launch_many) for _ in range(2)]
for th in threads:
    th.start()
for th in threads:
    th.join()
assert not errors
print("ok")
"""


def run(code, **env):
    full = dict(os.environ, PYTHONPATH=ROOT, **env)
    proc = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("native", ["1", "0"])
def test_many_threaded_launches_match_numpy(native):
    out = run(STRESS, THREADS="4", TINYJIT_NATIVE_POOL=native)
    assert out.split() == ["ok", "True" if native == "1" and sys.platform == "linux" and os.uname().machine == "x86_64"
                           else "False"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_launches_threaded_kernels():
    assert run(FORK, THREADS="2").strip() == "ok"


def test_two_threads_launching_at_once():
    assert run(TWO_LAUNCHERS, THREADS="3").strip() == "ok"


POOL_FROM_DISK = """
import sys
import numpy as np
from runtime import cpu_pool
from tinyjit import Device, Tensor
if sys.argv[1] == "warm":   # the object code must come from the disk cache: generating it again is an error here
    def compile_again(*args):
        raise AssertionError("the native pool's code was generated again despite a warm disk cache")
    cpu_pool.pool_object = compile_again
x = np.arange(512 * 300, dtype=np.float32).reshape(512, 300)
assert np.array_equal((Tensor(x) * 2).numpy(), x * 2)   # a threaded launch: through the native pool
print("ok", Device["CPU"].native_pool is not None)
"""


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64", reason="native pool: Linux x86-64")
def test_the_native_pool_code_is_cached_on_disk(tmp_path):
    """The pool's object code is generated once per machine, then loaded from the compile cache (a warm start's
    first training step no longer pays LLVM's code generator for it)."""
    env = dict(os.environ, PYTHONPATH=ROOT, THREADS="2", TINYJIT_CACHE_DIR=str(tmp_path))
    for state in ("cold", "warm"):
        proc = subprocess.run([sys.executable, "-c", POOL_FROM_DISK, state], env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["ok", "True"], (state, proc.stdout)
        assert len(list((tmp_path / "cpu-pool").glob("*.bin"))) == 1
