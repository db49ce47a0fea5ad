"""Eager dispatch cost (issue 10): a repeated eager graph is a schedule-cache hit that schedules, lowers and binds
nothing new; each cached kernel plan keeps its launch argument lists (KernelPlan.run) and only re-points them at
the new buffers, as a TinyJit replay does. Tests count work (schedules, kernels built, argument lists bound,
threads used), never seconds, and compare values with NumPy/PyTorch."""
import gc
import os
import pickle
import subprocess
import sys
import weakref

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyjit.schedule as schedule
import tinyjit.schedule_cache as schedule_cache
from tinyjit import autograd_graph, gradient_cache, lazy
from tinyjit import Tensor
from tinyjit.device import Buffer, Device
from tinyjit.dtype import dtypes
from tinyjit.kernel_cache import compile_kernel, counters
from tinyjit.lazy import Node, toposort
from tinyjit.ops import Op
from thread_runner import errors_in_threads


def _work():
    return (schedule.stats["schedules"], schedule.stats["kernels_built"], schedule.stats["nodes_lowered"],
            counters["plans_bound"])


def test_repeated_one_element_add_schedules_and_binds_nothing(device):
    """W7 of bench/compare.py: `(x + 1)` realized again and again."""
    (Tensor(np.array([0.5], np.float32)) + 1).realize()
    xs = [Tensor(np.array([1.5 + i], np.float32)).realize() for i in range(5)]   # a new buffer each call
    before, launched = _work(), counters["kernels_launched"]
    for i, x in enumerate(xs):
        assert (x + 1).numpy().tolist() == [2.5 + i]
    assert _work() == before   # no schedule, no lowering, no new launch argument lists
    assert counters["kernels_launched"] - launched == 5


def test_repeated_training_step_binds_its_launches_once(device):
    """An eager training step (matmul, activation, mean, backward, SGD update) repeated on new inputs: from the
    third step on nothing is scheduled or bound again, and every step matches PyTorch (the re-pointed arguments
    read this step's buffers, not the first step's)."""
    rng = np.random.default_rng(0)
    wn = rng.standard_normal((24, 16)).astype(np.float32)
    w, wt = Tensor(wn, requires_grad=True), torch.tensor(wn, requires_grad=True)
    per_step = []
    for _ in range(5):
        xn = rng.standard_normal((8, 24)).astype(np.float32)
        before = _work()
        loss = (Tensor(xn) @ w).relu().mean()
        loss.backward()
        with Tensor.no_grad():
            w.assign(w - 0.5 * w.grad)
        w.grad = None
        value = loss.item()
        w.realize()
        per_step.append(tuple(a - b for a, b in zip(_work(), before)))
        loss_t = (torch.from_numpy(xn) @ wt).relu().mean()
        loss_t.backward()
        with torch.no_grad():
            wt -= 0.5 * wt.grad
        wt.grad = None
        assert abs(value - loss_t.item()) < 1e-5
        np.testing.assert_allclose(w.numpy(), wt.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert per_step[0][3] > 0, per_step   # the first step binds its kernels' launches ...
    assert all(step == (0, 0, 0, 0) for step in per_step[2:]), per_step   # ... later steps nothing


def test_threads_running_one_graph_at_once_get_their_own_values():
    """Two threads realizing the same structure at once share its cached plans: each run takes its own bound
    argument lists, so neither launches on the other's buffers."""
    def worker(offset: float) -> None:
        for i in range(30):
            x = Tensor(np.arange(6, dtype=np.float32) + offset + i)
            got = (x * 2 + 1).numpy()
            np.testing.assert_array_equal(got, (np.arange(6, dtype=np.float32) + offset + i) * 2 + 1)
    errors = errors_in_threads(worker, [(offset,) for offset in (0.0, 1000.0)])
    assert not errors, errors


def test_one_element_kernel_runs_on_the_calling_thread():
    """A tiny kernel never wakes the thread pool; a large one is split (when the machine has threads)."""
    x = Tensor(np.ones(1, np.float32)).realize()
    for tiny in (x + 1, (x * 3).sum()):
        ast = schedule.create_schedule([tiny.node])[-1].ast
        assert compile_kernel("CPU", ast).threads == 1
    big = Tensor.ones(1 << 20).contiguous()
    ast = schedule.create_schedule([(big * 2).node])[-1].ast
    assert compile_kernel("CPU", ast).threads == min(Device["CPU"].threads, compile_kernel("CPU", ast).threads)
    if Device["CPU"].threads > 1:
        assert compile_kernel("CPU", ast).threads > 1


def test_cpu_memory_address_matches_numpy():
    """Launches read a CPU buffer's address from its memory (set once at allocation)."""
    allocator = Device["CPU"].allocator
    for nbytes in (1, 7, 4096):
        handle = allocator.alloc(nbytes)
        assert allocator.address(handle) == handle.ctypes.data and allocator.address(handle) % 64 == 0
        assert allocator.address(handle[1:]) == handle[1:].ctypes.data   # a view: computed, not inherited
    buffer = Buffer("CPU", 3, dtypes.float32).copyin(np.array([1, 2, 3], np.float32))
    assert allocator.address(buffer.handle) == buffer.handle.ctypes.data


def _reference_toposort(roots, stop_at_realized=True):
    """Depth-first post-order, sources in order: what toposort must return."""
    order, seen = [], set()

    def visit(n):
        if id(n) in seen:
            return
        seen.add(id(n))
        if not (stop_at_realized and n.buffer is not None):
            for s in n.src:
                visit(s)
        order.append(n)
    for r in roots:
        visit(r)
    return order


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_toposort_is_depth_first_post_order(data):
    """toposort (every realize walks its graph with it) on random DAGs with shared nodes and realized nodes."""
    count = data.draw(st.integers(1, 30))
    nodes = []
    for i in range(count):
        sources = tuple(nodes[j] for j in data.draw(st.lists(st.integers(0, i - 1), max_size=3))) if i else ()
        realized = data.draw(st.booleans()) and data.draw(st.booleans())
        nodes.append(Node(Op.ADD, sources, None, dtypes.float32, (1,), "CPU",
                          Buffer("CPU", 1, dtypes.float32) if realized else None))
    roots = [nodes[j] for j in data.draw(st.lists(st.integers(0, count - 1), min_size=1, max_size=4))]
    for stop in (True, False):
        assert [id(n) for n in toposort(roots, stop)] == [id(n) for n in _reference_toposort(roots, stop)]


@pytest.mark.parametrize("scalar", [2, 2.5, True, -0.0])
def test_scalar_operand_is_one_constant_node(scalar):
    """`x + scalar` builds the scalar as a constant expanded to x's shape (no intermediate tensors); values and
    dtypes as PyTorch's, the reflected operator too."""
    xn = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    x, xt = Tensor(xn), torch.from_numpy(xn)
    ts = scalar.item() if isinstance(scalar, np.generic) else scalar   # (numpy's operator would win over torch's)
    for got, want in ((x + scalar, xt + ts), (scalar / x, ts / xt), (x * scalar, xt * ts)):
        assert got.shape == tuple(want.shape) and got.dtype.name == str(want.dtype).removeprefix("torch.")
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)   # (division: 1 ulp)
    const = (x + scalar).node.src[1]
    assert const.op == Op.EXPAND and const.src[0].op == Op.RESHAPE and const.src[0].src[0].op == Op.CONST


SAME_KERNEL_IN_A_FORKED_CHILD = """
import os, numpy as np
from tinyjit import Tensor
from tinyjit.kernel_cache import counters
x = np.arange(512 * 300, dtype=np.float32).reshape(512, 300)
assert np.array_equal((Tensor(x) * 2).numpy(), x * 2)   # bound in the parent, to the parent's pool threads
pid = os.fork()
if pid == 0:   # the same kernel again: the child binds its own launch (the parent's workers do not exist here)
    bound = counters["plans_bound"]
    ok = np.array_equal((Tensor(x + 1) * 2).numpy(), (x + 1) * 2) and counters["plans_bound"] == bound + 1
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
assert os.WEXITSTATUS(status) == 0
print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_forked_child_does_not_reuse_the_parents_threaded_launch():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, THREADS="2")
    proc = subprocess.run([sys.executable, "-c", SAME_KERNEL_IN_A_FORKED_CHILD], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


# ---- Python work per op (issue 10: the eager GRU step spent a third of its time in the garbage collector) ----
def test_recording_an_op_makes_no_weak_reference_to_its_node():
    """Autograd's record of an op (which inputs required grad) lives on the node: no weak reference (a
    garbage-collected object, and a Python-level lookup in every backward pass) per recorded op. The gradient is
    still torch's."""
    x = Tensor(np.array([0.5, -1.0, 2.0], np.float32), requires_grad=True)
    y = (x * 2).exp() + x
    assert y.node.edges == (True, True)
    assert weakref.getweakrefcount(y.node) == 0 and weakref.getweakrefcount(y.node.src[0]) == 0
    y.sum().backward()
    xt = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    ((xt * 2).exp() + xt).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-6)


def test_backward_walks_the_graph_once(monkeypatch):
    """backward finds the nodes gradient flows through in one walk, shared with the gradient pass (and with the
    gradient cache's key: gradient_cache.ReachableWalk, else autograd_graph.reachable)."""
    walks = []
    real = autograd_graph.reachable
    monkeypatch.setattr(autograd_graph, "reachable", lambda *args, **kwargs: walks.append(1) or real(*args, **kwargs))
    real_walk = gradient_cache.ReachableWalk
    monkeypatch.setattr(gradient_cache, "ReachableWalk",
                        lambda *args, **kwargs: walks.append(1) or real_walk(*args, **kwargs))
    w = Tensor(np.array([[0.1, 0.2], [0.3, -0.4]], np.float32), requires_grad=True)
    x = Tensor(np.array([[0.5, -1.5]], np.float32))
    (x @ w).tanh().sum().backward()
    assert len(walks) == 1
    wt = torch.tensor([[0.1, 0.2], [0.3, -0.4]], requires_grad=True)
    (torch.tensor([[0.5, -1.5]]) @ wt).tanh().sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-5)


def test_schedule_cache_key_makes_no_container_per_node():
    """The schedule cache's key of a graph (built on every realize) is one flat tuple: the walk allocates a fixed
    number of garbage-collected containers, not one or two per node."""
    x = Tensor(np.arange(4, dtype=np.float32)).realize()
    y = x
    for i in range(300):
        y = y * 1.5 + x
    graph_nodes = len(toposort([y.node]))
    assert graph_nodes > 600
    gc.disable()
    try:
        before = gc.get_count()[0]
        key, graph = schedule_cache._structure_key([y.node], ())
        allocated = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert len(graph) == graph_nodes
    assert allocated < 20, f"{allocated} containers for {graph_nodes} nodes"
    # the key still tells graphs apart: another constant, another sharing of the same ops
    z = x
    for i in range(300):
        z = z * 1.5 + x
    assert schedule_cache._structure_key([z.node], ())[0] == key
    w = x
    for i in range(300):
        w = w * (2.5 if i == 150 else 1.5) + x
    assert schedule_cache._structure_key([w.node], ())[0] != key
    shared = x * 1.5
    assert schedule_cache._structure_key([(shared + shared).node], ())[0] != \
        schedule_cache._structure_key([(x * 1.5 + x * 1.5).node], ())[0]
    np.testing.assert_allclose(y.numpy(), z.numpy())


def test_dtypes_compare_by_value():
    """DType's equality takes the identity shortcut, and still equals a dtype made again (unpickled)."""
    copy = pickle.loads(pickle.dumps(dtypes.float32))
    assert copy == dtypes.float32 and hash(copy) == hash(dtypes.float32) and copy != dtypes.float64
    assert dtypes.int32 != "int32" and dtypes.float16 == dtypes.half


def _count_walks(monkeypatch) -> list:
    walks = []
    real = schedule_cache.GraphWalk.add
    monkeypatch.setattr(schedule_cache.GraphWalk, "add", lambda self, outputs: walks.append(1) or real(self, outputs))
    return walks


def test_reshaped_realized_indices_are_checked_at_the_call(monkeypatch):
    """Indices that are reshapes of a realized CPU batch (an embedding of `idx.reshape(-1)`, cross_entropy's
    `targets.reshape(-1)`, as training loops write them) are checked at the call: nothing is left pending for
    realize (no flag kernel, no search of the step's graph for readers), a bad index raises at once, and the
    realize walks its graph once."""
    from tinyjit import index_check
    from tinyjit.nn import functional as F
    weight_np = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    weight = Tensor(weight_np, requires_grad=True)
    idx = Tensor(np.array([[0, 3], [2, 1]], np.int64)).realize()
    targets = Tensor(np.array([[2, 0], [1, 1]], np.int64)).realize()
    loss = F.cross_entropy(F.embedding(idx.reshape(-1), weight), targets.reshape(-1))
    assert len(index_check._pending) == 0
    walks = _count_walks(monkeypatch)
    loss.realize()
    assert len(walks) == 1
    loss.backward()
    weight_t = torch.tensor(weight_np, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(
        torch.nn.functional.embedding(torch.tensor([0, 3, 2, 1]), weight_t), torch.tensor([2, 0, 1, 1]))
    loss_t.backward()
    np.testing.assert_allclose(loss.item(), loss_t.item(), rtol=1e-6)
    np.testing.assert_allclose(weight.grad.numpy(), weight_t.grad.numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(IndexError, match="embedding"):
        F.embedding(Tensor(np.array([[0, 4]], np.int64)).realize().reshape(-1), weight)
    bad_targets = Tensor(np.array([[3, 0], [1, 1]], np.int64)).realize()
    with pytest.raises(IndexError, match="cross_entropy"):
        F.cross_entropy(Tensor(weight_np), bad_targets.reshape(-1))
    assert len(index_check._pending) == 0


def test_realize_with_a_pending_index_check_walks_the_graph_once_more_only_when_the_check_computed_part_of_it(
        monkeypatch):
    """realize's hooks, pending assigns and schedule cache key share one walk of the graph; the index check
    (deferred for a lazy index) computes the index, which changes the graph, so that case walks once more."""
    table = Tensor(np.arange(10, dtype=np.float32).reshape(5, 2))
    index = Tensor(np.array([[4, 0], [1, 3]], np.int64)).realize()
    walks = _count_walks(monkeypatch)
    got = table.gather(0, index + 0).sum(1)   # a lazy index: checked by the realize
    got.realize()
    assert len(walks) == 3   # the graph, the check's own realize (flag and index), the graph again
    expected = torch.arange(10, dtype=torch.float32).reshape(5, 2).gather(0, torch.tensor([[4, 0], [1, 3]])).sum(1)
    np.testing.assert_allclose(got.numpy(), expected.numpy())
    walks.clear()
    (table * 2).sum().realize()   # no check pending: one walk
    assert len(walks) == 1
    with pytest.raises(IndexError):
        table.gather(0, index * 2).realize()


def test_repeated_graph_leaves_the_recursion_limit_alone(monkeypatch):
    """Only the passes that recurse (scheduling, code generation) raise Python's recursion limit: a realize whose
    schedule and kernels are cached does not touch it, and a long chain of fused ops still compiles."""
    x = Tensor(np.array([0.25, -2.0], np.float32)).realize()
    (x + 1).realize()
    changes = []
    real = sys.setrecursionlimit
    monkeypatch.setattr(sys, "setrecursionlimit", lambda limit: changes.append(limit) or real(limit))
    for _ in range(3):
        np.testing.assert_allclose((x + 1).numpy(), [1.25, -1.0])
    assert changes == []
    y = x
    for i in range(1100):   # new structure: scheduled and compiled (the limit goes up, then back)
        y = y * 0.5 + 0.5 if i % 2 else y + 0.25
    limit = sys.getrecursionlimit()
    value = y.numpy()
    expected = np.array([0.25, -2.0], np.float64)
    for i in range(1100):
        expected = expected * 0.5 + 0.5 if i % 2 else expected + 0.25
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    assert changes and sys.getrecursionlimit() == limit


# ---- shared constants (issue 10: 700 of a GRU step's 750 scalar constants were repeats, three nodes each) ----
def test_repeated_scalar_operand_shares_one_constant_node():
    """`x * 0.5` twice reads one constant node (the graph, its walk and its key are a third smaller for a training
    step); values as torch's."""
    xn = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = Tensor(xn)
    a, b = x * 0.5, (x + 1) * 0.5
    assert a.node.src[1] is b.node.src[1]
    assert (x * 2).node.src[1] is not a.node.src[1]                 # another value
    assert (x[:1] * 0.5).node.src[1] is not a.node.src[1]           # another shape
    assert (x.double() * 0.5).node.src[1] is not a.node.src[1]      # another dtype
    out = (a + b).numpy()
    np.testing.assert_allclose(out, (xn * 0.5 + (xn + 1) * 0.5), rtol=1e-6)


@pytest.mark.parametrize("pair", [(0.0, -0.0), (1, 1.0), (True, 1)])
def test_constants_equal_as_python_keys_but_not_as_values_do_not_share(pair):
    """0.0 == -0.0 and 1 == 1.0 == True as dict keys: a shared constant keeps them apart where they differ (the
    sign of a zero, the dtype a Python int or bool makes)."""
    xn = np.array([1.0, -2.0, 4.0], np.float32)
    x, xt = Tensor(xn), torch.from_numpy(xn)
    first, second = pair
    for scalar in pair:   # int and bool scalars on an int tensor: the dtype follows the scalar (promotion)
        got, want = 1 / (x * scalar), 1 / (xt * scalar)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    ints, ints_t = Tensor(np.array([3, 4], np.int32)), torch.tensor([3, 4], dtype=torch.int32)
    for scalar in pair:
        got, want = ints + scalar, ints_t + scalar
        assert got.dtype.name == str(want.dtype).removeprefix("torch.")
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_nan_constant_is_not_kept():
    """NaN is never equal to itself: kept, every NaN operand would add an entry that is never found again."""
    x = Tensor(np.ones(3, np.float32))
    before = len(lazy._shared_consts)
    for _ in range(3):
        assert np.isnan((x + float("nan")).numpy()).all()
    assert len(lazy._shared_consts) == before


def test_marked_shared_constant_is_not_reused():
    """A shared constant that became a leaf tensor's node (autograd marks it) or was realized (it has a buffer) is
    not handed out again: later graphs get a node of their own, and gradients stay torch's."""
    x = Tensor(np.ones(3, np.float32))
    leaf = (x * 0.0).node.src[1]
    held = Tensor(leaf, requires_grad=True)   # a leaf tensor on the shared node
    fresh = (x * 0.0).node.src[1]
    assert fresh is not leaf
    w = Tensor(np.array([1.0, 2.0, 3.0], np.float32), requires_grad=True)
    (w * 0.0 + held * w).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), np.zeros(3, np.float32))
    np.testing.assert_allclose(held.grad.numpy(), [1.0, 2.0, 3.0])
    realized = (x * 3.0).node.src[1]
    Tensor(realized).realize()
    assert realized.buffer is not None and (x * 3.0).node.src[1] is not realized
    np.testing.assert_array_equal((x * 3.0).numpy(), np.full(3, 3.0, np.float32))


def test_shared_constants_are_bounded(monkeypatch):
    monkeypatch.setattr(lazy, "SHARED_CONSTS", 8)
    x = Tensor(np.ones(2, np.float32))
    for i in range(20):
        x = x + float(i)
    assert len(lazy._shared_consts) <= 8
    np.testing.assert_array_equal(x.numpy(), np.full(2, 1 + sum(range(20)), np.float32))


@pytest.mark.parametrize("x_shape", [(4,), (3, 4), (2, 3, 4)])
def test_linear_reads_its_weight_without_transposing_it_twice(x_shape, monkeypatch):
    """linear(x, W) is x @ W.T, and matmul transposes its right operand back: linear reads W as it is stored (no
    permute node made, none in the graph). Values and gradients as torch's; a mismatch still names the shapes."""
    rng = np.random.default_rng(1)
    xn, wn, bn = (rng.standard_normal(s).astype(np.float32) for s in (x_shape, (5, 4), (5,)))
    x, w, b = (Tensor(a, requires_grad=True) for a in (xn, wn, bn))
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (xn, wn, bn))
    made, node_init = [], Node.__init__

    def counting_init(self, op, *args, **kwargs):
        made.append(op)
        node_init(self, op, *args, **kwargs)
    monkeypatch.setattr(Node, "__init__", counting_init)
    out = x.linear(w, b)
    monkeypatch.undo()
    assert Op.PERMUTE not in made and Op.PERMUTE not in {n.op for n in toposort([out.node])}
    want = torch.nn.functional.linear(xt, wt, bt)
    np.testing.assert_allclose(out.numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-6)
    (out * out).sum().backward()
    (want * want).sum().backward()
    for got, ref in ((x, xt), (w, wt), (b, bt)):
        np.testing.assert_allclose(got.grad.numpy(), ref.grad.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"matmul: shapes \(3, 4\) and \(3, 5\) do not match \(4 != 3\)"):
        Tensor(np.ones((3, 4), np.float32)).linear(Tensor(np.ones((5, 3), np.float32)))
