"""The scheduler: exact kernel counts for known graphs (counted from the schedule, without running anything),
the results of the fused kernels against numpy, and a hypothesis property test over random small graphs."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyjit import Tensor
from tinyjit.ops import Op
from tinyjit.realize import realize_nodes
from tinyjit.schedule import create_schedule, format_schedule


def kernels(*tensors: Tensor) -> int:
    """How many kernels realizing `tensors` takes, counted from the schedule alone (nothing runs)."""
    return sum(1 for item in create_schedule([t.node for t in tensors]) if item.kind == "kernel")


def rand(*shape, seed=0):
    arr = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return Tensor(arr), arr


def check(t: Tensor, expected, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(t.numpy(), expected, rtol=rtol, atol=atol)


def ast_ops(item) -> set:
    return {n.op for n in item.ast.toposort()}


# ---- exact kernel counts, then the values ----

@pytest.mark.parametrize("length", [1, 2, 5, 20])
def test_elementwise_chain_is_one_kernel(length):
    (x, xn), (y, yn) = rand(4, 8, seed=1), rand(4, 8, seed=2)
    out, expected = x, xn
    for i in range(length):
        out, expected = (out * y + x, expected * yn + xn) if i % 2 else ((out - y).relu(), np.maximum(expected - yn, 0))
    assert kernels(out) == 1
    check(out, expected, rtol=1e-4, atol=1e-4)


def test_elementwise_then_reduce_is_one_kernel():
    x, xn = rand(16, 32)
    out = (x * 2 + 1).relu().sum()
    assert kernels(out) == 1
    check(out, np.maximum(xn * 2 + 1, 0).sum(), rtol=1e-4)


def test_reduce_then_elementwise_is_one_kernel():
    (x, xn), (b, bn) = rand(6, 10), rand(6, seed=3)
    out = (x.sum(1) * 2 + b).exp()
    assert kernels(out) == 1
    check(out, np.exp(xn.sum(1) * 2 + bn), rtol=1e-4)


def test_softmax_is_three_kernels():
    x, xn = rand(5, 7)
    out = x.softmax()
    # max; sum of exp(x - max); exp(x - max) / sum (each reduce is read back through an expanding view)
    assert kernels(out) == 3
    e = np.exp(xn - xn.max(1, keepdims=True))
    check(out, e / e.sum(1, keepdims=True))


def test_linear_relu_linear_forward_is_two_kernels():
    (x, xn), (w1, w1n), (b1, b1n) = rand(5, 16, seed=1), rand(32, 16, seed=2), rand(32, seed=3)
    (w2, w2n), (b2, b2n) = rand(10, 32, seed=4), rand(10, seed=5)
    out = (x @ w1.T + b1).relu() @ w2.T + b2
    # the first matmul, bias and relu in one kernel; the second matmul reads it through an expand: a new kernel
    assert kernels(out) == 2
    check(out, np.maximum(xn @ w1n.T + b1n, 0) @ w2n.T + b2n, rtol=1e-4, atol=1e-4)


def test_two_reduces_of_the_same_shape_share_a_kernel():
    (x, xn), (y, yn) = rand(6, 9, seed=1), rand(6, 9, seed=2)
    out = x.sum(1) + y.exp().amax(1)
    assert kernels(out) == 1
    check(out, xn.sum(1) + np.exp(yn).max(1), rtol=1e-5)


def test_reduces_over_different_axes_are_separate_kernels():
    x, xn = rand(6, 6)
    out = x.sum(0) + x.sum(1)
    assert kernels(out) == 2
    check(out, xn.sum(0) + xn.sum(1))


def test_reduce_of_a_reduce():
    x, xn = rand(4, 5, 6)
    out = x.sum(2).amax(0)
    assert kernels(out) == 2
    check(out, xn.sum(2).max(0))


def test_reduce_read_through_an_expand_is_its_own_kernel():
    x, xn = rand(8, 16)
    out = x - x.amax(1, keepdim=True)
    items = create_schedule([out.node])
    assert [i.kind for i in items] == ["kernel", "kernel"]
    assert Op.RMAX in ast_ops(items[0]) and Op.RMAX not in ast_ops(items[1])
    check(out, xn - xn.max(1, keepdims=True))


def test_reduce_under_a_permute_is_realized_first():
    x, xn = rand(2, 3, 4)
    out = x.amax(0).permute(1, 0)   # the kernel's loop shape is the reduce's, so the permute needs a second one
    assert kernels(out) == 2
    check(out, xn.max(0).T)


def test_tensor_used_twice():
    x, xn = rand(4, 8)
    e = x.exp()
    out = e + e * e
    assert kernels(out) == 1
    assert sum(1 for n in create_schedule([out.node])[0].ast.toposort() if n.op == Op.EXP2) == 1   # not computed twice
    check(out, np.exp(xn) + np.exp(xn) ** 2, rtol=1e-5)


def test_reduce_used_twice_in_one_kernel_is_fused_and_computed_once():
    x, xn = rand(4, 8)
    s = x.sum(1)
    out = s * s + s
    assert kernels(out) == 1
    (item,) = create_schedule([out.node])
    assert sum(n.op == Op.SUM for n in item.ast.toposort()) == 1   # the AST shares one SUM between its uses
    check(out, xn.sum(1) ** 2 + xn.sum(1), rtol=1e-5)


def test_pad_of_a_non_zero_preserving_op_reads_zero():
    x, xn = rand(3, 4)
    out = x.exp().pad(((1, 2), (2, 0)))
    assert kernels(out) == 1
    check(out, np.pad(np.exp(xn), ((1, 2), (2, 0))))
    # exp(0) = 1 would leak into the padded area if the pad were pushed through the exp; and through a reduce
    out = (x.exp() + 1).pad(((0, 0), (0, 3))).sum(1)
    check(out, np.pad(np.exp(xn) + 1, ((0, 0), (0, 3))).sum(1), rtol=1e-5)


def test_pad_of_a_zero_preserving_op_needs_no_select():
    x, xn = rand(3, 4)
    out = (x * 3 + x).pad(((1, 1), (1, 1)))
    assert Op.WHERE not in ast_ops(create_schedule([out.node])[0])
    check(out, np.pad(xn * 3 + xn, ((1, 1), (1, 1))))


def test_cat_of_three_is_one_kernel():
    (a, an), (b, bn), (c, cn) = rand(2, 3, seed=1), rand(4, 3, seed=2), rand(1, 3, seed=3)
    out = Tensor.cat(a, b.exp(), c + 1, dim=0)
    assert kernels(out) == 1
    check(out, np.concatenate([an, np.exp(bn), cn + 1], 0), rtol=1e-6)


def test_realized_input_is_loaded_not_recomputed():
    x, xn = rand(4, 8)
    e = x.exp()
    out = e + 1
    e.realize()
    items = create_schedule([out.node])
    assert len(items) == 1
    assert Op.EXP2 not in ast_ops(items[0])
    assert items[0].inputs[0].buffer is e.node.buffer
    check(out, np.exp(xn) + 1, rtol=1e-6)


def test_contiguous_is_a_kernel_boundary():
    x, xn = rand(4, 8)
    out = (x * 2).contiguous() + 1
    assert kernels(out) == 2
    check(out, xn * 2 + 1)


def test_realized_outputs_need_nothing():
    x, _ = rand(4, 8)
    out = (x + 1).realize()
    assert create_schedule([out.node]) == []


def test_several_outputs_share_one_schedule():
    x, xn = rand(4, 8)
    e = x.exp()
    a, b = e.sum(1), e * 2
    assert kernels(a, b) == 2
    realize_nodes([a.node, b.node])
    check(a, np.exp(xn).sum(1), rtol=1e-5)
    check(b, np.exp(xn) * 2, rtol=1e-6)


def test_format_schedule_names_every_item():
    x, _ = rand(4, 8)
    text = format_schedule(create_schedule([x.softmax().node]))
    assert text.splitlines()[0] == "schedule: 3 items"
    assert "RMAX" in text and "SUM" in text and "BUFFER (4, 8) float32" in text


# ---- property test: random graphs of elementwise, reduce and movement ops against numpy ----

UNARY = {
    "neg": (lambda t: -t, lambda a: -a),
    "relu": (lambda t: t.relu(), lambda a: np.maximum(a, 0)),
    "sin": (lambda t: t.sin(), np.sin),
    "exp_sin": (lambda t: t.sin().exp(), lambda a: np.exp(np.sin(a))),   # exp that cannot overflow
    "sqrt_abs": (lambda t: t.abs().sqrt(), lambda a: np.sqrt(np.abs(a))),
    "affine": (lambda t: t * 0.5 + 1, lambda a: a * np.float32(0.5) + 1),
    "trunc": (lambda t: (t * 3).cast("int32").cast("float32"), lambda a: (a * 3).astype(np.int32).astype(np.float32)),
}
BINARY = {
    "add": (lambda x, y: x + y, np.add),
    "mul": (lambda x, y: x * y, np.multiply),
    "max": (lambda x, y: x.maximum(y), np.maximum),
    "where": (lambda x, y: (x < y).where(x, y * 2), lambda a, b: np.where(a < b, a, b * 2)),
}


def _broadcastable(s1, s2) -> bool:
    return len(s1) == len(s2) and all(a == b or a == 1 or b == 1 for a, b in zip(s1, s2))


@st.composite
def random_graphs(draw):
    """1-2 output tensors built from a few random inputs by up to 10 random ops, each with its numpy value."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    pool = []   # (tensor, numpy value, description)

    def new_input(shape):
        arr = rng.standard_normal(shape).astype(np.float32)
        pool.append((Tensor(arr), arr, f"input{shape}"))

    ndim = draw(st.integers(1, 3))
    new_input(tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim))))
    for _ in range(draw(st.integers(1, 10))):
        t, a, d = pool[draw(st.integers(0, len(pool) - 1))]
        kind = draw(st.sampled_from(["unary", "binary", "binary", "reduce", "move", "move", "realize", "cat"]))
        if kind == "unary":
            name = draw(st.sampled_from(sorted(UNARY)))
            pool.append((UNARY[name][0](t), UNARY[name][1](a), f"{name}({d})"))
        elif kind == "binary":
            others = [j for j, (_, b, _) in enumerate(pool) if _broadcastable(a.shape, b.shape)]
            if draw(st.booleans()):
                new_input(tuple(1 if draw(st.booleans()) else s for s in a.shape))
                others = [len(pool) - 1]
            u, b, e = pool[draw(st.sampled_from(others))]
            name = draw(st.sampled_from(sorted(BINARY)))
            pool.append((BINARY[name][0](t, u), BINARY[name][1](a, b), f"{name}({d}, {e})"))
        elif kind == "reduce":
            axis = tuple(sorted(set(draw(st.lists(st.integers(0, a.ndim - 1), min_size=1, max_size=2)))))
            keep = draw(st.booleans())
            if draw(st.booleans()):
                pool.append((t.sum(axis, keepdim=keep), a.sum(axis, keepdims=keep), f"sum{axis}({d})"))
            else:
                pool.append((t.amax(axis, keepdim=keep), a.max(axis, keepdims=keep), f"max{axis}({d})"))
        elif kind == "realize":
            if draw(st.booleans()):
                pool.append((t.contiguous(), a, f"contiguous({d})"))
            else:
                pool.append((t.realize(), a, f"realized({d})"))
        elif kind == "cat":
            axis = draw(st.integers(0, a.ndim - 1))
            fits = [j for j, (_, b, _) in enumerate(pool) if b.ndim == a.ndim and all(
                x == y for k, (x, y) in enumerate(zip(a.shape, b.shape)) if k != axis)]
            js = draw(st.lists(st.sampled_from(fits), min_size=1, max_size=2))
            pool.append((Tensor.cat(t, *[pool[j][0] for j in js], dim=axis),
                         np.concatenate([a] + [pool[j][1] for j in js], axis), f"cat{axis}({d}, {js})"))
        else:
            pool.append(_random_movement(draw, t, a, d))
        if pool[-1][1].ndim == 0:   # keep every value at least 1-d so every op above applies
            t, a, d = pool.pop()
            pool.append((t.reshape(1), a.reshape(1), d))
    outputs = 2 if len(pool) > 2 and draw(st.booleans()) else 1
    return pool[-outputs:]


def _random_movement(draw, t, a, d):
    kind = draw(st.sampled_from(["permute", "reshape", "pad", "shrink", "flip", "expand"]))
    if kind == "permute":
        order = tuple(draw(st.permutations(range(a.ndim))))
        return t.permute(*order), a.transpose(order), f"permute{order}({d})"
    if kind == "reshape":
        shape = draw(st.sampled_from([(a.size,), a.shape + (1,)] + ([(2, a.size // 2)] if a.size % 2 == 0 else [])))
        return t.reshape(*shape), a.reshape(shape), f"reshape{shape}({d})"
    if kind == "pad":
        pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in a.shape)
        return t.pad(pads), np.pad(a, pads), f"pad{pads}({d})"
    if kind == "shrink":
        arg = []
        for s in a.shape:
            lo = draw(st.integers(0, s - 1))
            arg.append((lo, draw(st.integers(lo + 1, s))))
        return t.shrink(tuple(arg)), a[tuple(slice(lo, hi) for lo, hi in arg)], f"shrink{arg}({d})"
    if kind == "flip":
        axis = draw(st.integers(0, a.ndim - 1))
        return t.flip(axis), np.flip(a, axis), f"flip{axis}({d})"
    shape = tuple(3 if s == 1 else s for s in a.shape)
    return t.expand(*shape), np.broadcast_to(a, shape), f"expand{shape}({d})"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_graphs())
def test_random_graphs_match_numpy(outputs):
    realize_nodes([t.node for t, _, _ in outputs])   # several outputs in one schedule when there are two
    for t, expected, description in outputs:
        np.testing.assert_allclose(t.numpy(), expected, rtol=1e-4, atol=1e-4, err_msg=description)


# ---- assign: in place, but a graph's meaning never changes ----

def realized(arr) -> Tensor:
    return Tensor(np.asarray(arr, dtype=np.float32)).realize()


def test_assign_of_an_elementwise_value_is_one_kernel_in_place():
    x = realized(np.arange(4))
    buffer = x.node.buffer
    x.assign(x * 3 + 1)
    assert kernels(x) == 1
    check(x, [1, 4, 7, 10])
    assert x.node.buffer is buffer


@pytest.mark.parametrize("move, expected", [
    (lambda t: t.flip(0), [[2, 3], [0, 1]]),
    (lambda t: t.permute(1, 0), [[0, 2], [1, 3]]),
    (lambda t: t.flip(1) + t, [[1, 1], [5, 5]]),
])
def test_assign_reading_its_target_elsewhere_goes_through_a_temporary(move, expected):
    x = realized(np.arange(4).reshape(2, 2))
    x.assign(move(x))
    assert kernels(x) == 2   # writing in place while reading other elements would read overwritten values
    check(x, expected)


def test_chained_assigns():
    x = realized(np.arange(4))
    x.assign(x * 2)
    x.assign(x.flip(0) + 1)
    check(x, [7, 5, 3, 1])


def test_a_read_of_the_old_value_runs_before_the_assign():
    x = realized(np.arange(4))
    old = x * 1
    x.assign(x * 10)
    realize_nodes([x.node, old.node])   # x's assign comes first in the graph order
    check(x, [0, 10, 20, 30])
    check(old, [0, 1, 2, 3])


def test_assigns_that_each_read_what_the_other_overwrites_get_temporaries():
    a, b = realized([1, 2]), realized([3, 4])
    old_a = a * 1
    a.assign(b * 1)
    b.assign(old_a)
    realize_nodes([a.node, b.node])   # both values go to temporaries first, then the assigns copy them
    check(a, [3, 4])
    check(b, [1, 2])


def test_assigns_of_plain_buffers_that_each_read_what_the_other_overwrites_swap():
    from tinyjit import inplace
    a, b = realized([1, 2]), realized([3, 4])
    old_a = Tensor(a.node)   # the buffer itself: nothing to compute into a temporary
    a.assign(b)
    b.assign(old_a)
    copies = inplace.stats["buffers_preserved"]
    realize_nodes([a.node, b.node])   # one of them reads a copy of the other's old contents
    assert inplace.stats["buffers_preserved"] == copies + 1
    check(a, [3, 4])
    check(b, [1, 2])
    check(old_a, [1, 2])


def test_a_read_of_a_realized_assign_runs_before_the_next_assign_to_its_buffer():
    x0, x1 = realized([[0, 1], [2, 3]]), realized(np.zeros((2, 2)))
    x0.assign(x0.flip(0))
    x1.assign(x0.flip(0))   # reads the first assign's result ...
    x0.assign(x0.flip(0))   # ... which this overwrites (the first assign is realized here, by Tensor.assign)
    realize_nodes([x0.node, x1.node])
    check(x0, [[0, 1], [2, 3]])
    check(x1, [[0, 1], [2, 3]])


def test_a_kernel_reading_a_buffer_before_and_after_its_assign_reads_a_copy():
    x = realized([1, 2])
    old = x * 1
    x.assign(x * 10)
    both = old + x
    del old   # only this kernel reads the old value, and it must run after the assign
    items = create_schedule([both.node])
    assert [len(it.preserve) for it in items if it.output.op == Op.ASSIGN] == [1]
    check(both, [11, 22])
    check(x, [10, 20])


def test_a_transitive_reader_of_an_assigned_value_is_not_reordered_before_it():
    x = realized([1, 2])
    x.assign(x * 10)
    y = (x + 1).contiguous()      # reads the new x ...
    z = (y * 2).contiguous() - x  # ... and so does z, through y: neither may run before the assign
    check(z, [12, 22])
    a = realized([1, 2])
    old = a * 1
    a.assign(a * 10)
    both = (a + 1).contiguous() + old   # reads the old a, and the new one through a kernel in between
    check(both, [12, 23])
