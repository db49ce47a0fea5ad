"""Graph size: every pass (autograd, schedule, lowering, the CPU contraction planner, linearize, DEBUG printing) is
linear in the number of graph nodes. The tests count work (nodes lowered, kernels built, AST nodes visited), never
seconds, and compare values with PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import tinyjit.schedule as schedule
from codegen import cpu_opts
from codegen.kernel import Kernel
from codegen.linearizer import Linearizer
from tinyjit import Tensor
from tinyjit.ops import AstNode, Op
from tinyjit.schedule import create_schedule


def _reset():
    for key in schedule.stats:
        schedule.stats[key] = 0


def _lstm_loss(lib, T: int, B: int = 2, D: int = 3, H: int = 4, seed: int = 0):
    """A hand-written LSTM cell unrolled over T steps (the recurrence of a word language model), in tinyjit
    (lib=Tensor) or PyTorch (lib=torch); returns the loss and the weights."""
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((D, 4 * H)).astype(np.float32) * 0.5,
              rng.standard_normal((H, 4 * H)).astype(np.float32) * 0.5,
              rng.standard_normal(4 * H).astype(np.float32) * 0.1]
    xs_np = rng.standard_normal((T, B, D)).astype(np.float32)
    if lib is torch:
        weights = [torch.tensor(a, requires_grad=True) for a in arrays]
        xs, h, c = torch.tensor(xs_np), torch.zeros(B, H), torch.zeros(B, H)
    else:
        weights = [Tensor(a, requires_grad=True) for a in arrays]
        xs, h, c = Tensor(xs_np), Tensor.zeros(B, H), Tensor.zeros(B, H)
    wx, wh, b = weights
    for t in range(T):
        gates = xs[t] @ wx + h @ wh + b
        i, f = gates[:, :H].sigmoid(), gates[:, H:2 * H].sigmoid()
        g, o = gates[:, 2 * H:3 * H].tanh(), gates[:, 3 * H:].sigmoid()
        c = f * c + i * g
        h = o * c.tanh()
    return (h * h).mean(), weights


def _lstm_work(T: int) -> dict:
    """Schedule (no run) the forward and backward pass of the T-step LSTM; the scheduler's work counters."""
    loss, weights = _lstm_loss(Tensor, T)
    loss.backward()
    _reset()
    items = create_schedule([w.grad.node for w in weights])
    stats = dict(schedule.stats)
    stats["distinct_kernels"] = len({item.ast for item in items if item.kind == "kernel"})
    return stats


def test_unrolled_recurrence_schedules_in_linear_work():
    """An LSTM over 16 steps costs about 4x what 4 steps cost to schedule (it was quadratic: the cell state chain
    was inlined back to step 0 into every step's kernels), and most kernels of the steps are the same ones, so
    compiling grows less than T."""
    short, long = _lstm_work(4), _lstm_work(16)
    for key in ("kernels_built", "nodes_lowered"):
        assert long[key] <= 6 * short[key], (key, short, long)
    # (kernels with T fused reduces, e.g. the weight gradients, differ; the per-step ones repeat)
    assert long["distinct_kernels"] <= 2 * short["distinct_kernels"], (short, long)


def test_unrolled_recurrence_gradients_match_torch():
    loss, weights = _lstm_loss(Tensor, 6)
    loss.backward()
    ref_loss, ref_weights = _lstm_loss(torch, 6)
    ref_loss.backward()
    np.testing.assert_allclose(loss.numpy(), ref_loss.detach().numpy(), rtol=1e-5, atol=1e-6)
    for w, ref in zip(weights, ref_weights):
        np.testing.assert_allclose(w.grad.numpy(), ref.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_deep_shared_expression_lowers_each_node_once():
    """tanh reads its input twice: 20 of them are 2^20 paths but a few hundred nodes to lower (it took minutes
    for 3 tanhs when the passes walked the DAG as a tree)."""
    x = Tensor(np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4))
    y = x
    for _ in range(20):
        y = y.tanh()
    out = y.sum(1)
    graph_size = len(out.node.toposort())
    _reset()
    items = create_schedule([out.node])
    assert schedule.stats["nodes_lowered"] <= 2 * graph_size, (schedule.stats, graph_size)
    ast_size = sum(len(item.ast.toposort()) for item in items if item.kind == "kernel")
    # linearizing visits each (AST node, upcast position) once
    calls = []
    original = Linearizer._lower

    def counting(self, node, combo):
        calls.append(1)
        return original(self, node, combo)
    Linearizer._lower = counting
    try:
        for item in items:
            if item.kind == "kernel":
                k = Kernel(item.ast)
                cpu_opts.optimize_cpu(k)
                Linearizer(k).linearize()
    finally:
        Linearizer._lower = original
    assert len(calls) <= 4 * ast_size, (len(calls), ast_size)
    expected = torch.tensor(np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4))
    for _ in range(20):
        expected = expected.tanh()
    np.testing.assert_allclose(out.numpy(), expected.sum(1).numpy(), rtol=1e-5, atol=1e-6)


def test_contraction_planner_visits_a_shared_ast_once():
    """pack_candidates walked the AST as a tree: exponential in the depth of a reduce body that reads a value
    twice (mish().cumsum(1), (a ** b).sum(1)). Count the nodes it looks at."""
    xn = np.linspace(-0.5, 0, 32, dtype=np.float32).reshape(4, 8)
    y, expected = Tensor(xn), xn
    for _ in range(12):
        y, expected = y * y + y, expected * expected + expected   # reads y twice: 2^12 paths
    item = create_schedule([y.sum(1).node])[-1]
    k = Kernel(item.ast)
    seen = []
    original = AstNode.toposort

    def counting(self):
        order = original(self)
        seen.append(len(order))
        return order
    AstNode.toposort = counting
    try:
        candidates = cpu_opts.pack_candidates(k)
    finally:
        AstNode.toposort = original
    ast_size = len(item.ast.toposort())
    assert sum(seen) <= 2 * ast_size, (sum(seen), ast_size)
    assert candidates == []   # the body depends on every axis: nothing to pack
    np.testing.assert_allclose(y.sum(1).numpy(), expected.sum(1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["mish_cumsum", "int_pow_sum"])
def test_shared_reduce_bodies_compile_and_match_torch(case):
    if case == "mish_cumsum":
        x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
        out = Tensor(x).mish().cumsum(1).numpy()
        expected = torch.nn.functional.mish(torch.tensor(x)).cumsum(1).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    else:
        a = np.arange(-4, 6, dtype=np.int32).reshape(2, 5)
        b = (np.arange(10, dtype=np.int32).reshape(2, 5) % 4)
        out = (Tensor(a) ** Tensor(b)).sum(1).numpy()
        np.testing.assert_array_equal(out, (torch.tensor(a) ** torch.tensor(b)).sum(1).numpy())


def test_value_read_through_many_views_gets_its_own_buffer():
    """prod's gradient reads each level of its halving tree through twice as many pads as the level above:
    inlined, the kernel would grow with 2^depth. Work stays near-linear in n (128 vs 32 elements)."""
    def work(n):
        t = Tensor(np.linspace(0.5, 1.5, n, dtype=np.float32), requires_grad=True)
        t.prod().backward()
        _reset()
        create_schedule([t.grad.node])
        return schedule.stats["nodes_lowered"], t
    small, _ = work(32)
    large, t = work(128)
    assert large <= 8 * small, (small, large)
    p = torch.tensor(np.linspace(0.5, 1.5, 128, dtype=np.float32), requires_grad=True)
    p.prod().backward()
    np.testing.assert_allclose(t.grad.numpy(), p.grad.numpy(), rtol=1e-4)


def test_debug_print_of_a_shared_ast_is_linear():
    x = Tensor(np.ones((2, 3), np.float32))
    y = x
    for _ in range(30):
        y = (y * y).relu() + y   # each level reads the one below three times
    item = create_schedule([y.node])[-1]
    text = item.ast.pretty()
    nodes = item.ast.toposort()
    # a line per node and one per reference to a node printed already: nodes + edges, not paths
    assert len(text.splitlines()) <= len(nodes) + sum(len(n.src) for n in nodes)
    assert item.ast.op == Op.STORE


@pytest.mark.devices("CPU")   # the scheduler and codegen passes are the same for every device
def test_long_fused_chains_do_not_hit_the_recursion_limit():
    """An unrolled loop of a few hundred elementwise steps is one chain of fused ops; the graph passes recurse along
    it (past Python's default 1000 frames before: RecursionError), forward and backward, matching torch."""
    x = Tensor([1.0, 2.0], requires_grad=True)
    t = torch.tensor([1.0, 2.0], requires_grad=True)
    y, ty = x, t
    for _ in range(300):
        y, ty = y * 0.99 + 0.01 * y.sin(), ty * 0.99 + 0.01 * ty.sin()
    y.sum().backward()
    ty.sum().backward()
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-4)
