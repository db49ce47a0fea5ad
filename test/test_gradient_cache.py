"""The gradient cache (tinyjit/gradient_cache.py): a backward over a graph of the same structure as an earlier one
builds its gradient graph from the earlier one's template. Each test checks gradients against torch and counts
what the cache did (rewrites by the rules, hits), so a key that misses a distinction shows as a wrong value or a
hit where a rewrite was due."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyjit.nn.functional as F
from tinyjit import Tensor, gradient_cache


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    """An empty cache that records a template the first time it sees a graph (every repeat is then a hit: the counts
    below are easier to read; test_template_recorded_at_second_sight checks the default)."""
    monkeypatch.setattr(gradient_cache, "TEMPLATE_AT_FIRST_SIGHT", True)
    gradient_cache._cache.clear()
    yield
    gradient_cache._cache.clear()


def counts() -> dict:
    return dict(gradient_cache.stats)


def delta(before: dict) -> dict:
    return {k: gradient_cache.stats[k] - before[k] for k in before}


def grads_of(fn, arrays, requires=None, dtype=np.float32):
    """(tinyjit gradients, torch gradients) of fn(*tensors).sum() for each tensor that requires grad."""
    requires = requires or [True] * len(arrays)
    ts = [Tensor(a.astype(dtype), requires_grad=r) for a, r in zip(arrays, requires)]
    fn(*ts).sum().backward()
    ours = [t.grad.numpy() if r else None for t, r in zip(ts, requires)]
    tt = [torch.tensor(a.astype(np.float32), requires_grad=r) for a, r in zip(arrays, requires)]
    fn(*tt).sum().backward()
    return ours, [t.grad.numpy() if r else None for t, r in zip(tt, requires)]


def assert_close(ours, theirs, tol=1e-5):
    for o, t in zip(ours, theirs):
        if t is None:
            assert o is None
        else:
            np.testing.assert_allclose(o, t, rtol=tol, atol=tol)


def test_repeated_step_hits_with_changing_values():
    rng = np.random.default_rng(0)
    before = counts()
    for step in range(4):
        arrays = [rng.standard_normal((3, 4)), rng.standard_normal((4,))]
        assert_close(*grads_of(lambda a, b: (a * b).tanh() * a.sigmoid() + 2.0, arrays))
    assert delta(before) == {"gradient_rewrites": 1, "gradient_cache_hits": 3, "gradient_uncached": 0}


def test_template_recorded_at_second_sight(monkeypatch):
    """By default a graph seen for the first time only leaves its key: the rules run again the second time, which
    records the template, and the third backward is built from it."""
    monkeypatch.setattr(gradient_cache, "TEMPLATE_AT_FIRST_SIGHT", False)
    rng = np.random.default_rng(11)
    before = counts()
    for step in range(4):
        assert_close(*grads_of(lambda a: (a * a).tanh() * 3.0, [rng.standard_normal((2, 5))]))
        assert sum(t.entries is not None for t in gradient_cache._cache.values()) == (step >= 1)
    assert delta(before) == {"gradient_rewrites": 2, "gradient_cache_hits": 2, "gradient_uncached": 0}


@pytest.mark.parametrize("constants, rewrites", [((2.0, 3.0), 2), ((0.0, -0.0), 2), ((1, 1.0), 1)])
def test_different_constant_is_another_graph(constants, rewrites):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 3))
    before = counts()
    for c in constants:   # the gradient reads c: the same structure with another constant must not reuse it
        assert_close(*grads_of(lambda x: (x * c) * x + x / (c + 5), [a]))
    # (1 and 1.0 are the same float32 constant: the same graph)
    assert delta(before) == {"gradient_rewrites": rewrites, "gradient_cache_hits": 2 - rewrites,
                             "gradient_uncached": 0}


def test_different_dtype_is_another_graph():
    a = np.linspace(-2, 2, 6).reshape(2, 3)
    before = counts()
    for dtype in (np.float32, np.float16, np.float32):
        ours, theirs = grads_of(lambda x: (x * x).exp(), [a], dtype=dtype)
        assert_close(ours, theirs, tol=1e-5 if dtype == np.float32 else 2e-2)
        assert ours[0].dtype == dtype
    assert delta(before) == {"gradient_rewrites": 2, "gradient_cache_hits": 1, "gradient_uncached": 0}


def test_different_broadcast_is_another_graph():
    rng = np.random.default_rng(2)
    before = counts()
    for shape in ((1, 4), (3, 1), (1, 4)):   # the sum over the broadcast axes differs
        arrays = [rng.standard_normal((3, 4)), rng.standard_normal(shape)]
        assert_close(*grads_of(lambda a, b: a * b, arrays))
    assert delta(before) == {"gradient_rewrites": 2, "gradient_cache_hits": 1, "gradient_uncached": 0}


def test_different_view_is_another_graph():
    rng = np.random.default_rng(3)
    before = counts()
    for view in ("T", "flip", "T"):   # same shapes, ops and dtypes but the permute/flip differ
        arrays = [rng.standard_normal((3, 3)), rng.standard_normal((3, 3))]
        fn = (lambda a, b: a.T * b) if view == "T" else (lambda a, b: a.flip(0) * b)
        assert_close(*grads_of(fn, arrays))
    assert delta(before) == {"gradient_rewrites": 2, "gradient_cache_hits": 1, "gradient_uncached": 0}


def test_requires_grad_set_is_part_of_the_key():
    rng = np.random.default_rng(4)
    before = counts()
    for requires in ([True, True], [True, False], [False, True], [True, True]):
        arrays = [rng.standard_normal((2, 3)), rng.standard_normal((2, 3))]
        assert_close(*grads_of(lambda a, b: (a * b).sin() * b, arrays, requires))
    assert delta(before) == {"gradient_rewrites": 3, "gradient_cache_hits": 1, "gradient_uncached": 0}


def test_detach_is_part_of_the_key():
    rng = np.random.default_rng(5)
    before = counts()
    for detach in (False, True, False, True):
        a = rng.standard_normal((2, 3)).astype(np.float32)
        x = Tensor(a, requires_grad=True)
        y = x * x
        (y.detach() if detach else y).mul(x).sum().backward()
        expected = a * a if detach else 3 * a * a
        np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-5)
    assert delta(before) == {"gradient_rewrites": 2, "gradient_cache_hits": 2, "gradient_uncached": 0}


def test_edges_of_a_reached_node_are_part_of_the_key():
    """y * y and y * y.detach(): the same nodes reached, but gradient flows along one edge of the product only."""
    rng = np.random.default_rng(10)
    before = counts()
    for detach in (False, True, False, True):
        a = rng.standard_normal((2, 3)).astype(np.float32)
        x = Tensor(a, requires_grad=True)
        y = x.sin()
        (y * (y.detach() if detach else y)).sum().backward()
        expected = np.sin(a) * np.cos(a) * (1 if detach else 2)
        np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert delta(before) == {"gradient_rewrites": 2, "gradient_cache_hits": 2, "gradient_uncached": 0}


def test_realized_intermediate_is_part_of_the_key():
    rng = np.random.default_rng(6)
    before = counts()
    for realize in (False, True, False, True):
        a = rng.standard_normal((2, 3)).astype(np.float32)
        x = Tensor(a, requires_grad=True)
        y = (x * x).exp()
        if realize:   # realized, it keeps its graph for backward; the walk stops there: not cached
            y.realize()
        (y * x).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), np.exp(a * a) * (2 * a * a + 1), rtol=1e-4)
    d = delta(before)
    assert d["gradient_rewrites"] == 1 and d["gradient_cache_hits"] == 1 and d["gradient_uncached"] == 2


def test_accumulates_into_grad_and_same_buffer_twice():
    """The same buffer read twice (x * x) and two different buffers (x * z) have the same ops and shapes."""
    rng = np.random.default_rng(7)
    before = counts()
    a, b = rng.standard_normal((2, 2)).astype(np.float32), rng.standard_normal((2, 2)).astype(np.float32)
    x, z = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    (x * x).sum().backward()
    (x * z).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * a + b, rtol=1e-5)
    np.testing.assert_allclose(z.grad.numpy(), a, rtol=1e-5)
    assert delta(before) == {"gradient_rewrites": 2, "gradient_cache_hits": 1, "gradient_uncached": 0}


def test_hooks_are_not_cached():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((3,)).astype(np.float32)
    before = counts()
    for hooked in (False, False, True, False):
        x = Tensor(a, requires_grad=True)
        y = x * 2.0
        if hooked:
            y.register_hook(lambda g: g * 10)
        (y * y).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), 8 * a * (10 if hooked else 1), rtol=1e-5)
    assert delta(before) == {"gradient_rewrites": 1, "gradient_cache_hits": 2, "gradient_uncached": 0}


def test_embedding_index_check_on_a_cached_gradient():
    """A gather's gradient carries the forward's pending index check: realized alone from a cached template, an
    out-of-range index still raises."""
    weight = Tensor(np.ones((5, 3), np.float32), requires_grad=True)
    before = counts()
    for idx, bad in (([0, 1, 4], False), ([0, 2, 3], False), ([0, 7, 1], True)):
        weight.grad = None
        lazy_index = Tensor(np.array(idx, np.int32)) + 0   # lazy: checked when first computed
        (F.embedding(lazy_index, weight) * 2.0).sum().backward()
        if bad:
            with pytest.raises(IndexError):
                weight.grad.numpy()
        else:
            expected = np.zeros((5, 3), np.float32)
            np.add.at(expected, idx, 2.0)
            np.testing.assert_allclose(weight.grad.numpy(), expected)
    assert delta(before) == {"gradient_rewrites": 1, "gradient_cache_hits": 2, "gradient_uncached": 0}


def test_training_loop_matches_torch():
    """A small recurrent model trained with AdamW for several steps: the losses and the weights match torch's, and
    the backward after the first one reuses its gradient graph."""
    from tinyjit import optim
    rng = np.random.default_rng(9)
    w0, u0 = rng.standard_normal((4, 4)).astype(np.float32) * 0.5, rng.standard_normal((4, 3)).astype(np.float32)
    xs = rng.standard_normal((5, 6, 3, 3)).astype(np.float32)   # step, batch, time, feature

    def loss_of(w, u, x, lib_tanh):
        h = lib_tanh(x[:, 0] @ u.T)
        for t in range(1, 3):
            h = lib_tanh(h @ w.T + x[:, t] @ u.T)
        return (h * h).mean()
    w, u = Tensor(w0, requires_grad=True), Tensor(u0, requires_grad=True)
    tw, tu = torch.tensor(w0, requires_grad=True), torch.tensor(u0, requires_grad=True)
    opt, topt = optim.AdamW([w, u], lr=0.05), torch.optim.AdamW([tw, tu], lr=0.05)
    before = counts()
    for step in range(5):
        opt.zero_grad()
        loss = loss_of(w, u, Tensor(xs[step]), lambda v: v.tanh())
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = loss_of(tw, tu, torch.tensor(xs[step]), torch.tanh)
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-4)
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(u.numpy(), tu.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert delta(before) == {"gradient_rewrites": 1, "gradient_cache_hits": 4, "gradient_uncached": 0}


_UNARY = {"tanh": lambda x: x.tanh(), "sigmoid": lambda x: x.sigmoid(), "sq": lambda x: x * x,
          "exp": lambda x: (x * 0.5).exp(), "relu": lambda x: x.relu()}


@settings(max_examples=15, deadline=None)
@given(ops=st.lists(st.sampled_from(sorted(_UNARY)), min_size=1, max_size=3),
       constants=st.lists(st.sampled_from([0.5, 2.0, -1.0]), min_size=2, max_size=2),
       seed=st.integers(0, 2 ** 16))
def test_same_structure_other_constants_property(ops, constants, seed):
    """Two graphs of the same ops with constants that may differ, each run twice with new values: all match
    torch, and the cache reuses a template exactly when the constants are equal."""
    rng = np.random.default_rng(seed)
    gradient_cache._cache.clear()   # (the fixture runs once for all examples)
    before = counts()
    for c in constants:
        for _ in range(2):
            def fn(a, b, c=c):
                y = a * c + b
                for op in ops:
                    y = _UNARY[op](y)
                return y * b
            assert_close(*grads_of(fn, [rng.standard_normal((2, 3)), rng.standard_normal((3,))]), tol=1e-4)
    d = delta(before)
    assert d["gradient_rewrites"] + d["gradient_cache_hits"] == 4
    assert d["gradient_rewrites"] == (1 if constants[0] == constants[1] else 2)


def test_custom_function_is_not_cached():
    """A custom Function's backward is user code: run every time, never taken from a template."""
    from tinyjit.autograd import Function

    class Cube(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x * x
    before = counts()
    for value in (1.0, 2.0, -1.5):
        x = Tensor(np.full((3,), value, np.float32), requires_grad=True)
        (Cube.apply(x) * 2.0).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), np.full((3,), 6 * value * value), rtol=1e-6)
    assert delta(before) == {"gradient_rewrites": 0, "gradient_cache_hits": 0, "gradient_uncached": 3}
