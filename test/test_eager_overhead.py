"""Pins for the eager fast paths (per-op and per-realize overhead): they must compute and schedule exactly what the
general paths do. Counts work (nodes, kernels, bound plans), never time."""
import numpy as np
import pytest
import torch

from tinyjit import Tensor, dtypes
from tinyjit.kernel_cache import counters
from tinyjit.lazy import toposort
from tinyjit.ops import Op


def _ops(t: Tensor) -> list:
    return [n.op for n in toposort([t.node])]


def test_broadcast_operands_make_the_same_views_and_gradients():
    """A broadcast operand takes RESHAPE (only when dims are added) then EXPAND, as reshape().expand() makes them;
    gradients flow back through both like torch's."""
    a_np = np.arange(6, dtype=np.float32).reshape(2, 3)
    c_np = np.array([1.0, -2.0, 3.0], np.float32)
    a, c = Tensor(a_np, requires_grad=True), Tensor(c_np, requires_grad=True)
    out = a * c
    assert _ops(out) == [Op.BUFFER, Op.BUFFER, Op.RESHAPE, Op.EXPAND, Op.MUL]
    col = Tensor(np.ones((2, 1), np.float32))
    assert _ops(a + col) == [Op.BUFFER, Op.BUFFER, Op.EXPAND, Op.ADD]   # same ndim: no reshape
    out.sum().backward()
    ta, tc = torch.tensor(a_np, requires_grad=True), torch.tensor(c_np, requires_grad=True)
    (ta * tc).sum().backward()
    np.testing.assert_allclose(out.numpy(), (ta * tc).detach().numpy())
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy())
    np.testing.assert_allclose(c.grad.numpy(), tc.grad.numpy())
    # both sides broadcast, the scalar side reversed
    x, y = np.arange(3, dtype=np.float32).reshape(3, 1), np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal((Tensor(x) - Tensor(y)).numpy(), x - y)
    np.testing.assert_array_equal((2.0 - Tensor(y)).numpy(), 2.0 - y)


def test_broadcast_errors_unchanged():
    with pytest.raises(ValueError, match="cannot be broadcast"):
        Tensor(np.ones((2, 3), np.float32)) + Tensor(np.ones((4,), np.float32))
    x = Tensor(np.zeros((4, 3), np.float32))
    with pytest.raises(RuntimeError, match="does not broadcast"):
        x.copy_(Tensor(np.ones((2, 3), np.float32)))


@pytest.mark.parametrize("dtype, scalar", [(dtypes.bool, True), (dtypes.uint8, 3), (dtypes.int32, -7),
                                           (dtypes.int64, 2 ** 40), (dtypes.float16, 0.5), (dtypes.float32, -0.0),
                                           (dtypes.float64, 1e-300)])
def test_scalar_operands_take_the_tensors_dtype(dtype, scalar):
    """The scalar of `t op scalar` is converted by the dtype's kind (bool, int, float) as before."""
    values = np.array([0, 1, 1], dtype=dtype.np)
    t = Tensor(values)
    got = (t * scalar) if dtype != dtypes.bool else (t + scalar)   # (bool + bool is logical or)
    want = (values * np.array(scalar, dtype.np)) if dtype != dtypes.bool else (values | scalar)
    const = next(n for n in toposort([got.node]) if n.op is Op.CONST)
    assert type(const.arg) is {"b": bool, "i": int, "u": int, "f": float}[dtype.kind]
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.numpy(), want)


def test_eager_loop_rebinds_plans_with_base_offsets():
    """An eager loop over x[t] (one plan built for every t: base offsets) launches through the plan's spare bound
    argument lists, each run pointed at its own slice."""
    x_np = np.arange(40, dtype=np.float32).reshape(8, 5)
    x = Tensor(x_np).realize()
    outs = [(x[t] * 2 + 1).realize() for t in range(8)]
    bound = counters["plans_bound"]
    outs += [(x[t] * 2 + 1).realize() for t in range(8)]
    assert counters["plans_bound"] == bound   # (the second loop builds no argument list)
    for t, o in enumerate(outs):
        np.testing.assert_array_equal(o.numpy(), x_np[t % 8] * 2 + 1)


def test_operand_fast_paths_match_the_general_rules():
    """Same-dtype same-shape tensors and a float tensor with a Python float skip the general operand rules; the
    results are what those rules give (dtypes, reversed operands, gradient edges, no_grad)."""
    h = Tensor(np.array([1.5, -2.0], np.float16))
    assert (h * 0.1).dtype == dtypes.float16 and (0.1 * h).dtype == dtypes.float16
    np.testing.assert_array_equal((2.0 - h).numpy(), np.float16(2.0) - np.array([1.5, -2.0], np.float16))
    i = Tensor(np.array([1, 2], np.int32))
    assert (i * 0.5).dtype == dtypes.float32   # (an int tensor with a float: the general rule)
    np.testing.assert_array_equal((i * 0.5).numpy(), [0.5, 1.0])
    f = Tensor(np.array([1.0, 2.0], np.float32))
    np.testing.assert_array_equal((f / np.float64(4.0)).numpy(), [0.25, 0.5])   # (a numpy float: the general path)
    a = Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    b = Tensor(np.array([3.0, 5.0], np.float32))
    out = b - a   # reversed operands of the same dtype and shape
    assert out.node.edges == (False, True)
    np.testing.assert_array_equal(out.numpy(), [2.0, 3.0])
    (b * a).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 5.0])
    with Tensor.no_grad():
        assert not (a * b).requires_grad and not (a * 2.0).requires_grad
    assert (a * b).requires_grad and (a * 2.0).requires_grad


def test_live_lazy_tensors_are_never_lost_between_threads(monkeypatch):
    """track appends without the lock: purges and lazy_tensors() in other threads (which hold it) must keep every
    tensor appended meanwhile, or an assign would skip the copy-on-write of a value still read."""
    import sys
    import threading

    from tinyjit import inplace

    class PurgeOften(dict):   # purge at every track past 64 entries (the threshold is never raised)
        def __setitem__(self, key, value):
            pass
    monkeypatch.setattr(inplace, "_purge_at", PurgeOften(lazy=64, buffers=1024))
    base = Tensor(np.ones(4, np.float32)).realize()
    kept: list = [[] for _ in range(3)]
    stop = threading.Event()

    def make(slot):
        for i in range(1500):
            t = base + float(i)
            if i % 5 == 0:
                kept[slot].append(t)   # live; the others die at once (purged as dead)

    def scan():
        while not stop.is_set():
            inplace.lazy_tensors()
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)   # threads switch as often as they can
    try:
        threads = [threading.Thread(target=make, args=(k,)) for k in range(3)] + [threading.Thread(target=scan)]
        for t in threads:
            t.start()
        for t in threads[:3]:
            t.join()
        stop.set()
        threads[3].join()
    finally:
        sys.setswitchinterval(previous)
    live = {id(t) for t in inplace.lazy_tensors()}
    missing = [t for ts in kept for t in ts if id(t) not in live]
    assert not missing, f"{len(missing)} live lazy tensors lost"


def test_warm_schedule_asks_the_kernel_cache_once(monkeypatch):
    """A schedule whose kernels are all built skips precompiling after one lookup of all of them; a schedule with
    new kernels still precompiles exactly those."""
    from tinyjit import kernel_cache
    calls = []
    original = kernel_cache._precompile
    monkeypatch.setattr(kernel_cache, "_precompile", lambda device, asts: calls.append(len(asts)) or
                        original(device, asts))
    x = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4)).realize()

    def step(scale):
        y = (x * scale).sum(1)
        return (x / y.reshape(3, 1) + y.max()).numpy()   # several kernels in one schedule
    first = step(2.0)
    assert calls and calls[0] >= 2
    calls.clear()
    again = step(2.0)
    assert calls == []
    np.testing.assert_array_equal(first, again)
    xs = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = (xs * 2).sum(1)
    np.testing.assert_allclose(first, xs / y.reshape(3, 1) + y.max(), rtol=1e-6)
