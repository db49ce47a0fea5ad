"""Expensive shared values are computed once: an elementwise value with transcendental ops that three or more
kernels would inline (attention probabilities read by the forward and the backward matmuls, GELU's erf), or with a
long expression that two or more would (a max pool's gradient times a relu's), gets its own buffer. Tests count
evaluations of an op (AST nodes times loop iterations) in the schedule, never seconds, and compare gradients with
PyTorch."""
import numpy as np
import pytest
import torch

import tinyjit.schedule as schedule
from codegen.kernel import Kernel
from codegen.optimizer import optimize
from tinyjit import Device, Tensor
from tinyjit.helpers import prod
from tinyjit.ops import Op
from tinyjit.schedule import create_schedule


def _cpu_launches(*tensors: Tensor):
    """(AST, Kernel) of each CPU launch of the schedule of `tensors`: every kernel as the heuristics optimize it, and
    the copy kernels the planner puts around it."""
    renderer = Device.renderer("CPU")
    for item in create_schedule([t.node for t in tensors]):
        if item.kind != "kernel":
            continue
        k = Kernel(item.ast)
        optimize(k, renderer)
        yield k.ast, k
        for copy, _ in k.copies.before + k.copies.after:
            yield copy, Kernel(copy)


def _exp2_evaluations(*tensors: Tensor) -> int:
    """exp2 evaluations of the CPU launches (copy kernels included) of the schedule: exp2 nodes of each launch's
    AST times its loop iterations."""
    return sum(sum(1 for n in ast.toposort() if n.op == Op.EXP2) * prod(launch.full_shape)
               for ast, launch in _cpu_launches(*tensors))


def _attention_loss(lib, q, k, v):
    F = torch.nn.functional if lib is torch else __import__("tinyjit").nn.functional
    return (F.scaled_dot_product_attention(q, k, v, is_causal=True) ** 2).sum()


def test_attention_probabilities_are_computed_once_for_forward_and_backward():
    B, H, T, D = 4, 2, 64, 16   # 32k probabilities: past SHARED_EXPENSIVE_SIZE
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(3)]
    q, k, v = (Tensor(a, requires_grad=True) for a in arrays)
    _attention_loss(Tensor, q, k, v).backward()
    evaluations = _exp2_evaluations(q.grad, k.grad, v.grad)
    # once for the probabilities (plus the softmax's sum reading them): it was once per element per matmul use,
    # i.e. D times per probability in each matmul that inlined it
    assert evaluations <= 3 * B * H * T * T, evaluations
    qt, kt, vt = (torch.tensor(a, requires_grad=True) for a in arrays)
    _attention_loss(torch, qt, kt, vt).backward()
    for ours, theirs in ((q, qt), (k, kt), (v, vt)):
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=2e-4, atol=2e-5)


def test_gelu_exp_is_evaluated_per_hidden_unit_not_per_multiply_add():
    """A guard: the MLP's GELU and its derivative reach the matmuls packed or realized, never inlined into a
    reduce loop."""
    rng = np.random.default_rng(1)
    xn, w1n, w2n = (rng.standard_normal(s).astype(np.float32) * 0.3 for s in ((256, 64), (256, 64), (64, 256)))
    x = Tensor(xn)
    w1, w2 = Tensor(w1n, requires_grad=True), Tensor(w2n, requires_grad=True)
    (x.linear(w1).gelu().linear(w2) ** 2).mean().backward()
    evaluations = _exp2_evaluations(w1.grad, w2.grad)
    assert evaluations <= 4 * 256 * 256, evaluations   # a few per hidden unit, not per multiply-add
    xt = torch.tensor(xn)
    w1t, w2t = torch.tensor(w1n, requires_grad=True), torch.tensor(w2n, requires_grad=True)
    (torch.nn.functional.gelu(xt @ w1t.T) @ w2t.T).pow(2).mean().backward()
    np.testing.assert_allclose(w1.grad.numpy(), w1t.grad.numpy(), rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(w2.grad.numpy(), w2t.grad.numpy(), rtol=2e-4, atol=1e-6)


def test_small_or_twice_read_values_stay_fused():
    """A softmax reads exp(x - max) in two kernels (its sum and the division): still 3 kernels; a small value
    read by many kernels is recomputed rather than given a launch of its own."""
    x = Tensor(np.random.default_rng(2).standard_normal((256, 128)).astype(np.float32))
    assert sum(item.kind == "kernel" for item in create_schedule([x.softmax(-1).node])) == 3
    small = Tensor(np.ones((8, 8), np.float32)).exp()
    outs = [(small * i).sum() for i in range(1, 5)]
    assert sum(item.kind == "kernel" for item in create_schedule([o.node for o in outs])) == 4
    assert schedule.SHARED_EXPENSIVE_SIZE > 64


def _stacked_steps(lib, x, steps: int):
    """An unrolled loop's outputs stacked: each step's transcendental term, padded into the stack by the stack and
    (in the backward) by the gradient of each step's slice of x."""
    stack = torch.stack if lib is torch else Tensor.stack
    return (stack([x[:, t].exp().sin() for t in range(steps)], 1) ** 2).sum()


def test_padded_expensive_terms_are_computed_once_not_on_the_padding():
    """Forward and backward of a stack of per-step exp terms: each term's exp2 runs on its own (B, C) elements,
    not on all T steps' positions of the stack (T times the work, and one kernel with T heavy terms to compile)."""
    B, T, C = 4, 8, 16
    xn = np.random.default_rng(3).standard_normal((B, T, C)).astype(np.float32)
    x = Tensor(xn, requires_grad=True)
    _stacked_steps(Tensor, x, T).backward()
    evaluations = _exp2_evaluations(x.grad)
    assert evaluations <= 2 * B * T * C, evaluations   # it was 2 * B * T * C per step: T times more
    xt = torch.tensor(xn, requires_grad=True)
    _stacked_steps(torch, xt, T).backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=2e-5, atol=1e-5)


def test_cheap_or_barely_padded_terms_stay_fused():
    """Pads of cheap terms, or of expensive ones by less than PADDED_WASTE_RATIO, stay in their consumer's kernel."""
    x = Tensor(np.ones((4, 8, 16), np.float32))
    cheap = Tensor.stack([x[:, t] * 2 + 1 for t in range(8)], 1)
    assert sum(item.kind == "kernel" for item in create_schedule([cheap.node])) == 1
    halves = Tensor.cat([x[:, :4].exp(), x[:, 4:].exp().sin()], 1)
    assert sum(item.kind == "kernel" for item in create_schedule([halves.node])) == 1
    assert schedule.PADDED_WASTE_RATIO > 2


def _evaluations(op: Op, *tensors: Tensor) -> int:
    """Evaluations of `op` in the CPU launches (copy kernels included) of the schedule of `tensors`: per launch, its
    `op` nodes under a reduce times the loop iterations, the others (an epilogue, an elementwise kernel) times the
    output elements."""
    total = 0
    for ast, launch in _cpu_launches(*tensors):
        under_reduce: set[int] = set()
        stack = [n.src[0] for n in ast.toposort() if n.op in (Op.SUM, Op.RMAX)]
        while stack:
            n = stack.pop()
            if id(n) not in under_reduce:
                under_reduce.add(id(n))
                stack.extend(n.src)
        for n in ast.toposort():
            if n.op == op:
                total += prod(launch.full_shape if id(n) in under_reduce else launch.output_shape)
    return total


def test_max_pool_gradient_is_computed_once_for_the_weight_and_bias_gradients():
    """conv -> relu -> max pool: the gradient reaching the conv's output (relu' times the pool's gradient: compares
    and selects over each window, ~17 ops) is read by the weight gradient's contraction and the bias gradient's sum.
    It is computed once, in a kernel of its own; it was computed in both (in the weight gradient's operand pack and
    in the bias sum), each through the windows' stacked views."""
    rng = np.random.default_rng(4)
    n, c, size = 8, 8, 26   # 43k conv outputs: past SHARED_EXPENSIVE_SIZE
    xn = rng.standard_normal((n, 3, size + 2, size + 2)).astype(np.float32)
    wn, bn = rng.standard_normal((c, 3, 3, 3)).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    w, b = Tensor(wn, requires_grad=True), Tensor(bn, requires_grad=True)
    pooled = Tensor(xn).conv2d(w, b).relu().max_pool2d(2)
    pooled.realize()   # the forward's buffers first: the count below is the backward's
    (pooled * pooled).sum().backward()
    # the first maximum of each window is found by `key.amax == key` (an XOR of a CMPNE) and so is the maximum
    # itself: two XORs per conv output, once. (It was four: twice in the pack, twice in the bias sum.)
    assert _evaluations(Op.XOR, w.grad, b.grad) == 2 * n * c * size * size
    wt, bt = torch.tensor(wn, requires_grad=True), torch.tensor(bn, requires_grad=True)
    out = torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(torch.tensor(xn), wt, bt).relu(), 2)
    (out * out).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(b.grad.numpy(), bt.grad.numpy(), rtol=1e-4, atol=1e-3)


def _chain(x, ops: int):
    """An elementwise expression of `ops` cheap ops (no transcendental) on x."""
    for i in range(ops // 2):
        x = (x * 0.5 + (0.25 if i % 2 else -0.25))
    return x


def test_long_cheap_expression_read_by_two_kernels_is_realized_once():
    """A 20-op expression read by two reductions is computed into a buffer once (3 kernels); a 4-op one stays fused
    into both (2 kernels); and a long one that is small (below SHARED_EXPENSIVE_SIZE) stays fused too."""
    xn = np.random.default_rng(5).standard_normal((128, 160)).astype(np.float32)
    for ops, size, kernels in ((20, 128, 3), (4, 128, 2), (20, 8, 2)):
        x = Tensor(xn[:size])
        value = _chain(x, ops)
        rows, cols = value.sum(1), value.amax(0)
        assert sum(item.kind == "kernel" for item in create_schedule([rows.node, cols.node])) == kernels, ops
        expected = _chain(torch.tensor(xn[:size]), ops)
        np.testing.assert_allclose(rows.numpy(), expected.sum(1).numpy(), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(cols.numpy(), expected.amax(0).numpy(), rtol=1e-6)
    assert schedule.SHARED_LONG_OPS > 4


def _conv_relu_pool_stack(lib, x, layers, pool: dict):
    F = torch.nn.functional if lib is torch else __import__("tinyjit").nn.functional
    for weight, bias, conv in layers:
        x = F.max_pool2d(F.conv2d(x, weight, bias, **conv).relu(), **pool)
    return (x * x).sum()


CONV_POOL_CASES = [
    # (input N, C, H, W), [(out channels, conv args)], pool args, dtype
    ((8, 1, 28, 28), [(8, {}), (16, {})], {"kernel_size": 2}, "float32"),   # W6's shape, scaled down
    ((4, 3, 23, 21), [(8, {"padding": 1})], {"kernel_size": 2}, "float64"),  # odd sizes: the last row unpooled
    ((4, 2, 20, 20), [(8, {"stride": 2, "padding": 2})], {"kernel_size": 3, "stride": 2, "padding": 1}, "float32"),
    ((2, 3, 16, 16), [(4, {})], {"kernel_size": 3, "stride": 3}, "float32"),  # small: stays fused
]


@pytest.mark.parametrize("shape, convs, pool, dtype", CONV_POOL_CASES)
def test_conv_relu_max_pool_stack_gradients_match_torch(device, shape, convs, pool, dtype):
    rng = np.random.default_rng(6)
    xn = rng.standard_normal(shape).astype(dtype)
    params, channels = [], shape[1]
    for out_channels, conv in convs:
        params.append((rng.standard_normal((out_channels, channels, 3, 3)).astype(dtype) * 0.5,
                       rng.standard_normal(out_channels).astype(dtype) * 0.1, conv))
        channels = out_channels
    x = Tensor(xn, requires_grad=True)
    layers = [(Tensor(w, requires_grad=True), Tensor(b, requires_grad=True), conv) for w, b, conv in params]
    _conv_relu_pool_stack(Tensor, x, layers, pool).backward()
    xt = torch.tensor(xn, requires_grad=True)
    layers_t = [(torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True), conv)
                for w, b, conv in params]
    _conv_relu_pool_stack(torch, xt, layers_t, pool).backward()
    tol = {"rtol": 1e-4, "atol": 1e-3} if dtype == "float32" else {"rtol": 1e-10, "atol": 1e-10}
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), **tol)
    for (w, b, _), (wt, bt, _) in zip(layers, layers_t):
        np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), **tol)
        np.testing.assert_allclose(b.grad.numpy(), bt.grad.numpy(), **tol)


def test_a_sum_of_padded_pieces_read_by_two_kernels_stays_fused():
    """A sum of one padded piece per step (how an unrolled recurrence's stacked gradient is built) is long and read
    by two kernels, but it is not realized: realized, the LSTM's per-step weight-gradient terms stopped fusing into
    one stacked contraction (one kernel of 20 products with 40 operand packs, 4 CPU s to compile)."""
    rng = np.random.default_rng(12)
    steps, rows, cols = 20, 8, 128
    parts = [rng.standard_normal((rows, cols)).astype(np.float32) for _ in range(steps)]
    value = None
    for t, part in enumerate(parts):
        piece = (Tensor(part) * 2).pad(((t * rows, (steps - 1 - t) * rows), (0, 0)))
        value = piece if value is None else value + piece
    row_sums, col_maxes = value.sum(1), value.amax(0)
    assert sum(item.kind == "kernel" for item in create_schedule([row_sums.node, col_maxes.node])) == 2
    stacked = np.concatenate(parts) * 2
    np.testing.assert_allclose(row_sums.numpy(), stacked.sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(col_maxes.numpy(), stacked.max(0))
