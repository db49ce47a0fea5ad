"""A TinyJit replay runs each run of consecutive CPU kernel launches as one C call (jit._sequenced,
runtime.cpu_pool.sequence_call): the same launches in the same order, with the input buffers swapped into the
launches that read them, threaded launches still split over the pool, and host steps (index checks) between runs."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tinyjit import Tensor, TinyJit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _step(x, w):
    h = (x @ w).relu()
    return (h * h.mean(0)).sum(1).realize(), ((h * 3).sum(0) - x.sum()).realize()


def _reference(x, w):
    h = np.maximum(x @ w, 0)
    return (h * h.mean(0)).sum(1), (h * 3).sum(0) - x.sum()


def test_a_replay_runs_its_cpu_launches_in_one_call():
    rng = np.random.default_rng(0)
    jitted = TinyJit(_step)
    w = Tensor(rng.standard_normal((16, 8)).astype(np.float32)).realize()
    for i in range(6):
        x = rng.standard_normal((12, 16)).astype(np.float32)
        outs = jitted(Tensor(x).realize(), w)
        for got, want in zip(outs, _reference(x, w.numpy())):
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5, err_msg=str(i))
    assert len(jitted.prepared) >= 4
    assert len(jitted.replay_steps) == 1


def test_index_checks_stay_steps_of_their_own_and_still_raise():
    rng = np.random.default_rng(1)
    table = Tensor(rng.standard_normal((10, 4)).astype(np.float32)).realize()

    def gather_step(idx):
        picked = table[idx] * 2   # (lazy indices: checked by a kernel and a host step reading its flag)
        return (picked.sum(1) + 1).realize()

    jitted = TinyJit(gather_step)
    for i in range(4):
        idx = rng.integers(0, 10, 6).astype(np.int32)
        np.testing.assert_allclose(jitted(Tensor(idx).realize()).numpy(),
                                   (table.numpy()[idx] * 2).sum(1) + 1, rtol=1e-6)
    # the host step reading the check's flag is a step of its own between the launches
    host = [step for step in jitted.prepared if getattr(step[0], "sequence_entry", None) is None]
    assert host and all(any(step is kept for kept in jitted.replay_steps) for step in host)
    with pytest.raises(IndexError):
        jitted(Tensor(np.array([0, 1, 2, 3, 4, 10], np.int32)).realize()).numpy()


THREADED = """
import numpy as np
from tinyjit import Device, Tensor, TinyJit
rng = np.random.default_rng(2)
def step(x, w):
    h = (x @ w).relu()
    return (h * 2 + h.sum(0)).realize(), (h.exp2() - 1).sum().realize()
jitted = TinyJit(step)
w = Tensor(rng.standard_normal((256, 256)).astype(np.float32) / 16).realize()
for i in range(8):
    x = rng.standard_normal((512, 256)).astype(np.float32)
    a, b = jitted(Tensor(x).realize(), w)
    h = np.maximum(x @ w.numpy(), 0)
    np.testing.assert_allclose(a.numpy(), h * 2 + h.sum(0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(b.numpy(), (np.exp2(h) - 1).sum(), rtol=1e-4)
threaded = [s for s in jitted.prepared if getattr(s[0], "sequence_entry", (0, 0, 0, 1))[3] > 1]
print(len(threaded) > 0, len(jitted.replay_steps), len(jitted.prepared))
"""


@pytest.mark.parametrize("native", ["1", "0"])
def test_threaded_launches_in_a_sequence(native):
    env = dict(os.environ, PYTHONPATH=ROOT, THREADS="2", TINYJIT_NATIVE_POOL=native)
    proc = subprocess.run([sys.executable, "-c", THREADED], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    threaded, sequenced, prepared = proc.stdout.split()
    assert threaded == "True"
    # without the native code every launch stays a step of its own
    assert (int(sequenced), int(prepared) > 1) == ((1, True) if native == "1" else (int(prepared), True))


FORKED = """
import os, numpy as np
from tinyjit import Tensor, TinyJit
rng = np.random.default_rng(3)
w = Tensor(rng.standard_normal((512, 512)).astype(np.float32)).realize()
f = TinyJit(lambda x: ((x @ w).relu() * 2).sum(1).realize())
x = rng.standard_normal((1024, 512)).astype(np.float32)
for _ in range(3):
    want = f(Tensor(x).realize()).numpy()
assert any(getattr(s[0], "sequence_entry", (0, 0, 0, 1))[3] > 1 for s in f.prepared)   # threaded launches
pid = os.fork()
if pid == 0:   # the child has none of the parent's pool workers: its replays bind to a pool of its own
    ok = all(np.allclose(f(Tensor(x).realize()).numpy(), want) for _ in range(2))
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
assert os.WEXITSTATUS(status) == 0
assert np.allclose(f(Tensor(x).realize()).numpy(), want)   # and the parent's replays still run
print("ok")
"""


def test_a_forked_child_replays_a_capture_with_threaded_launches():
    """A capture's launches are bound to the parent's thread pool, whose workers a forked child lacks (its threaded
    launches waited forever): a replay in the child prepares the capture again for its own pool."""
    env = dict(os.environ, PYTHONPATH=ROOT, THREADS="2")
    proc = subprocess.run([sys.executable, "-c", FORKED], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
