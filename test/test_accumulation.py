"""Accumulation precision: float sums accumulate in levels of short partial sums (codegen/accumulate.py), half
reductions and what divides by a count compute in float32. Values are compared with float64 NumPy (and torch).

A float32 sum is "accurate" here when it is within a few ulp of the float64 sum of the same float32 values, which
is what PyTorch and NumPy reach on these inputs (their own errors are up to ~2e-7 relative); one accumulator taking
every term in a row is off by up to n/2 ulp (10**6 tenths: 1.5e-4).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from codegen.accumulate import FAN_IN, plan_reduce_loops
from tinyjit import Tensor, dtypes
from tinyjit.ops import Op

FLOAT32_SUM_RTOL = 5e-7   # about 4 ulp


def rel_error(got, exact) -> float:
    return float(np.max(np.abs(np.asarray(got, np.float64) - exact)) / np.max(np.abs(exact)))


def test_a_million_tenths(device):
    """The mean of 10**6 float32 tenths is 0.1000000089 to float32 accuracy (was 0.099985 on the CPU)."""
    tenths = np.full(10 ** 6, 0.1, np.float32)
    exact = tenths.astype(np.float64).mean()
    got = Tensor(tenths).mean().numpy()
    assert abs(float(got) - 0.1000000089) <= 1.5e-8 and abs(float(got) - exact) <= 1.5e-8, got


@pytest.mark.parametrize("n", [0, 1, 255, 257, 70001, 1_000_003])
def test_sum_lengths(device, n):
    """Lengths that no block size divides, and the empty and one-element sums: float32 against float64."""
    rng = np.random.default_rng(n)
    x32, tenths = (rng.random(n) + 0.5).astype(np.float32), np.full(n, 0.1, np.float32)
    for data in (x32, tenths):
        got, exact = float(Tensor(data).sum().numpy()), data.astype(np.float64).sum()
        assert abs(got - exact) <= FLOAT32_SUM_RTOL * max(exact, 1e-30), (n, got, exact)


def test_float64_and_integer_sums():
    """float64 sums are blocked too (to float64 accuracy); integer sums stay exact (and unblocked)."""
    rng = np.random.default_rng(3)
    x64 = rng.random(100_003) + 0.5
    assert abs(float(Tensor(x64).sum().numpy()) - np.sum(x64)) <= 1e-15 * x64.size
    ints = rng.integers(0, 256, 100_003).astype(np.uint8)
    assert int(Tensor(ints).sum().numpy()) == int(ints.astype(np.int64).sum())
    big = np.full(300_001, 2 ** 30, np.int32)
    assert int(Tensor(big).sum().numpy()) == 300_001 * 2 ** 30


def test_sum_axes_and_keepdim():
    """Every axis (a long one in the middle, strided and contiguous) and combination, with and without keepdim
    (on the CPU: test_blocked_sums_on_every_backend covers the GPU code paths with fewer kernels)."""
    x = (np.random.default_rng(0).random((6, 20011, 3)) + 0.1).astype(np.float32)
    exact64 = x.astype(np.float64)
    t = Tensor(x)
    for axis in (0, 1, 2, (0, 1), (1, 2), (0, 2), None):
        for keepdim in (False, True):
            got = t.sum(axis, keepdim=keepdim).numpy()
            want = exact64.sum(axis, keepdims=keepdim)
            assert got.shape == want.shape, (axis, keepdim)
            assert rel_error(got, want) <= FLOAT32_SUM_RTOL, (axis, keepdim, rel_error(got, want))


def test_strided_reduce_of_tenths(device):
    """A reduce over a strided axis is a scalar chain on every backend: blocks of 8 terms, then levels of 4 (the
    sequential sum of 10**6 tenths is 0.02% off; torch's own error here is 6e-7)."""
    x = np.full((10 ** 6, 2), 0.1, np.float32)
    got = Tensor(x).mean(0).numpy()
    assert rel_error(got, np.full(2, np.float64(np.float32(0.1)))) <= FLOAT32_SUM_RTOL, got


@pytest.mark.devices("CPU", "CL", "CUDAEMU")
def test_blocked_sums_on_every_backend(device):
    """Ragged blocks, a work-group (GROUP) reduce, a strided reduce and a matmul (register block), one kernel each,
    on the CUDA renderer too."""
    rng = np.random.default_rng(1)
    long_row = (rng.random((2, 100_003)) + 0.5).astype(np.float32)
    assert rel_error(Tensor(long_row).sum(1).numpy(), long_row.astype(np.float64).sum(1)) <= FLOAT32_SUM_RTOL
    tall = (rng.random((30_011, 3)) + 0.5).astype(np.float32)
    assert rel_error(Tensor(tall).sum(0).numpy(), tall.astype(np.float64).sum(0)) <= FLOAT32_SUM_RTOL
    a, b = rng.standard_normal((8, 3001)).astype(np.float32), rng.standard_normal((3001, 8)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose((Tensor(a) @ Tensor(b)).numpy(), exact, rtol=0, atol=1e-4)


# ---- half: accumulate and divide in float32 ----
def test_half_mean_softmax_and_max_gradient(device):
    """A half sum of 10**5 ones is inf; the mean, the softmax denominator and the max gradient's tie count must
    not go through it."""
    assert float(Tensor.ones(100_000, dtype=dtypes.float16).mean().numpy()) == 1.0
    np.testing.assert_allclose(float(Tensor.ones(70_000, dtype=dtypes.float16).softmax(0)[0].numpy()), 1.43e-05,
                               rtol=1e-3)
    x = Tensor.ones(70_000, dtype=dtypes.float16, requires_grad=True)
    x.max().backward()
    ref = torch.ones(70_000, dtype=torch.float16, requires_grad=True)
    ref.amax().backward()
    np.testing.assert_array_equal(x.grad.numpy(), ref.grad.numpy())
    assert x.grad.dtype == dtypes.float16 and float(x.grad[12345].numpy()) == pytest.approx(1.43e-05, rel=1e-3)


def test_half_statistics_match_torch():
    """var, log_softmax, logsumexp, layer_norm, mean and a loss mean of half inputs whose squares or sums leave
    half's range, computed in float32 like torch (a graph-level choice, the same on every device)."""
    rng = np.random.default_rng(2)
    big = (rng.standard_normal((3, 4000)) * 300).astype(np.float16)   # squares up to ~1e6 > 65504
    x, ref = Tensor(big), torch.from_numpy(big)
    checks = [
        (x.var(1), ref.var(1)),
        (x.log_softmax(1), ref.float().log_softmax(1).half()),
        (x.logsumexp(1), ref.float().logsumexp(1).half()),
        (x.layer_norm(4000), torch.nn.functional.layer_norm(ref.float(), (4000,)).half()),
        (x.mean(1), ref.mean(1)),
    ]
    for got, want in checks:
        assert got.dtype == dtypes.float16
        np.testing.assert_allclose(got.numpy().astype(np.float32), want.numpy().astype(np.float32), rtol=2e-3,
                                   atol=2e-3)
    from tinyjit import nn
    channels_last = np.ascontiguousarray(big.T)   # (4000, 3): BatchNorm1d over 4000 samples of 3 channels
    bn = nn.BatchNorm1d(3)(Tensor(channels_last)).numpy()   # a new module is in training mode: batch statistics
    wide = channels_last.astype(np.float64)
    np.testing.assert_allclose(bn, (wide - wide.mean(0)) / np.sqrt(wide.var(0) + 1e-5), rtol=2e-3, atol=2e-3)
    rms = nn.RMSNorm(4000)(x).numpy().astype(np.float64)
    wide = big.astype(np.float64)
    want = wide / np.sqrt((wide ** 2).mean(1, keepdims=True) + float(np.finfo(np.float16).eps))
    np.testing.assert_allclose(rms, want, rtol=2e-3, atol=2e-3)
    logits = np.zeros((70_000, 2), np.float16)
    target = np.zeros(70_000, np.int64)
    loss = Tensor(logits).cross_entropy(Tensor(target))
    assert loss.dtype == dtypes.float16
    np.testing.assert_allclose(float(loss.numpy()), np.log(2), rtol=1e-3)


def test_half_sum_node_accumulates_in_float32(device):
    """A SUM node of half (as autograd or a kernel may build) accumulates in a float32 register: in half, 1 + 2048
    is 2048 and a sum of ones stops there."""
    ones = Tensor.ones(2048, 3000, dtype=dtypes.float16)   # 2048 outputs: one loop per output on a GPU too
    total = Tensor(ones.node.reduce(Op.SUM, (1,)))
    assert total.dtype == dtypes.float16
    np.testing.assert_array_equal(total.numpy(), np.full((2048, 1), 3000.0, np.float16))


# ---- the plan itself: every element once, every chain short ----
def _walk(plan, axes):
    """Simulate the loop plan: the element index tuples visited in order, and for each accumulation level the
    longest run of terms it took before being added to the level above."""
    sizes = dict(axes)
    visited, longest = [], {}

    def run(depth, outer_var, index, level_terms):
        if depth == len(plan):
            visited.append(tuple(index[a] for a, _ in axes))
            level_terms[-1] += 1
            return
        loop = plan[depth]
        steps = -(-sizes[loop.axis] // loop.unit)
        if loop.axis in outer_var:
            lo = outer_var[loop.axis] * loop.count
            hi = min(lo + loop.count, steps)
        else:
            lo, hi = 0, steps
        for v in range(lo, hi):
            inner_var = {**outer_var, loop.axis: v}
            if loop.unit == 1:
                index[loop.axis] = v
            if loop.opens_level:
                level_terms.append(0)
                run(depth + 1, inner_var, index, level_terms)
                count = level_terms.pop()
                longest[len(level_terms)] = max(longest.get(len(level_terms), 0), count)
                level_terms[-1] += 1
            else:
                run(depth + 1, inner_var, index, level_terms)
    top = [0]
    run(0, {}, {}, top)
    longest[0] = max(longest.get(0, 0), top[0])
    return visited, longest


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=3), terms=st.sampled_from([1, 2, 3, 4]),
       block=st.sampled_from([8, 256]))
def test_plan_visits_every_element_once_in_short_chains(sizes, terms, block):
    """Simulated in Python (small sizes): the plan's loops, with their block bounds, visit every element once in
    the unblocked order, level 0 takes at most `block` terms and every level above at most FAN_IN."""
    assume(int(np.prod(sizes)) <= 10_000)
    axes = list(enumerate(sizes))
    plan = plan_reduce_loops(axes, terms, block)
    visited, longest = _walk(plan, axes)
    expected = [tuple(i) for i in np.ndindex(*sizes)]
    assert visited == expected   # every element once, in the order of the unblocked loops
    innermost = max(longest)
    assert longest[innermost] * terms <= block, longest
    assert all(count <= FAN_IN for level, count in longest.items() if level != innermost), longest


def test_a_weight_gradient_block_accumulates_in_two_levels():
    """A register block reducing over batch x time (32 x 64 = 2048 steps, a weight gradient) keeps its accumulators
    for 256 steps and adds those 8 partial sums in one level above (FAN_IN = 8): a third level of accumulators
    per block element was that kernel's LLVM time (0.41 -> 0.33 CPU s)."""
    plan = plan_reduce_loops([(2, 32), (3, 64)], 1, 256)
    assert sum(loop.opens_level for loop in plan) == 1
