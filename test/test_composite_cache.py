"""Composite functions built from templates (tinyjit.composite_cache): a later call of tanh, sigmoid, gelu, ... on
a tensor of the same dtype, shape, device and autograd state makes exactly the nodes the function makes (same
structure key, same autograd edges, same result state), so schedules, kernels, values and gradients are those of
the function. Counts work (hits, records), never time."""
import numpy as np
import pytest
import torch

from tinyjit import Tensor, composite_cache, dtypes
from tinyjit.schedule_cache import GraphWalk
from tinyjit.tensor_math import MathMixin

CASES = [("tanh", (), {}), ("sigmoid", (), {}), ("expm1", (), {}), ("log1p", (), {}), ("silu", (), {}),
         ("gelu", (), {}), ("gelu", (), {"approximate": "tanh"}), ("gelu", ("tanh",), {})]


@pytest.fixture(autouse=True)
def empty_cache():
    composite_cache._templates.clear()
    yield
    composite_cache._templates.clear()


def _structure(t: Tensor, x: Tensor):
    """(structure key of t's graph, each node's autograd edges in the walk's order, t's autograd state)."""
    walk = GraphWalk([t.node])
    position = walk.index.get(id(x.node))
    return walk.key(), [n.edges for n in walk.graph], t._requires_grad, t._ctx, position


@pytest.mark.parametrize("name, args, kwargs", CASES)
@pytest.mark.parametrize("dtype, requires_grad, no_grad", [
    (np.float32, True, False), (np.float32, False, False), (np.float32, True, True), (np.float16, True, False),
    (np.int32, False, False)])
def test_template_makes_the_functions_nodes(name, args, kwargs, dtype, requires_grad, no_grad):
    plain = getattr(MathMixin, name).__wrapped__
    rng = np.random.default_rng(0)
    values = [(rng.standard_normal((3, 5)) * 3).astype(dtype) for _ in range(3)]
    hits = composite_cache.stats["composite_hits"]
    for i, v in enumerate(values):
        leaf = Tensor(v, requires_grad=requires_grad)
        x = leaf * 1 if requires_grad else leaf   # (a result, as in a model)
        with Tensor.no_grad() if no_grad else _nothing():
            got = getattr(x, name)(*args, **kwargs)
            want = plain(x, *args, **kwargs)
        assert _structure(got, x) == _structure(want, x)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        if requires_grad and not no_grad and got.requires_grad:
            (g1,), (g2,) = got.sum().gradient(leaf), want.sum().gradient(leaf)
            np.testing.assert_array_equal(g1.numpy(), g2.numpy())
    # the first call records; the others are built from the template (gelu's exact form under autograd: never)
    custom = name == "gelu" and not args and not kwargs and requires_grad and not no_grad and dtype != np.int32
    mine = [t for key, t in composite_cache._templates.items() if key[0] is plain]
    if custom:
        assert mine == [None]
    else:
        assert mine and None not in mine and composite_cache.stats["composite_hits"] - hits >= 2


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_gru_activations_come_from_templates_and_match_torch():
    """sigmoid and tanh in a recurrent loop: every call after the first is a hit, and the loss and gradients are
    torch's."""
    rng = np.random.default_rng(5)
    wn = (rng.standard_normal((6, 6)) * 0.5).astype(np.float32)
    xs = rng.standard_normal((4, 2, 6)).astype(np.float32)
    w, wt = Tensor(wn, requires_grad=True), torch.tensor(wn, requires_grad=True)
    h, ht = Tensor(np.zeros((2, 6), np.float32)), torch.zeros((2, 6))
    before = dict(composite_cache.stats)
    for x in xs:
        z = (Tensor(x) @ w).sigmoid()
        h = z * h + (1 - z) * (Tensor(x) @ w + h).tanh()
        zt = (torch.from_numpy(x) @ wt).sigmoid()
        ht = zt * ht + (1 - zt) * (torch.from_numpy(x) @ wt + ht).tanh()
    loss, loss_t = h.square().mean(), ht.square().mean()
    loss.backward()
    loss_t.backward()
    # sigmoid, tanh and the expm1 tanh calls record once
    assert composite_cache.stats["composite_records"] - before["composite_records"] == 3
    assert composite_cache.stats["composite_hits"] - before["composite_hits"] == 6
    np.testing.assert_allclose(loss.item(), loss_t.item(), rtol=1e-5)
    np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_custom_gradient_is_not_templated():
    """gelu (exact) under autograd goes through erf, whose gradient is a custom rule registered per node: never
    templated, and its gradient stays torch's."""
    xn = np.linspace(-3, 3, 7, dtype=np.float32)
    for _ in range(3):
        x = Tensor(xn, requires_grad=True)
        x.gelu().sum().backward()
    assert any(v is None for v in composite_cache._templates.values())
    xt = torch.tensor(xn, requires_grad=True)
    torch.nn.functional.gelu(xt).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_touched_constant_makes_a_new_template():
    """A constant a template reuses that was marked since (realized here) is not reused: the call records again."""
    x = Tensor(np.linspace(-2, 2, 4, dtype=np.float32))
    x.sigmoid()
    template = next(iter(composite_cache._templates.values()))
    assert template.fixed
    Tensor(template.fixed[-1]).realize()   # (a realized constant: the walk would stop there)
    records = composite_cache.stats["composite_records"]
    got = x.sigmoid()
    assert composite_cache.stats["composite_records"] == records + 1
    np.testing.assert_allclose(got.numpy(), 1 / (1 + np.exp(-np.linspace(-2, 2, 4))), rtol=1e-6)
    assert x.dtype == dtypes.float32


def _multi_structure(t: Tensor, inputs):
    walk = GraphWalk([t.node])
    return walk.key(), [n.edges for n in walk.graph], t._requires_grad, t._ctx, \
        [walk.index.get(id(i.node)) for i in inputs]


@pytest.mark.parametrize("case", ["linear", "linear_no_bias", "linear_1d", "cat", "cat_same", "cat_three",
                                  "cat_int", "cat_mixed_dtype"])
@pytest.mark.parametrize("grads", [(True, True, True), (False, True, False), (False, False, False)])
@pytest.mark.parametrize("no_grad", [False, True])
def test_tensor_inputs_template_makes_the_functions_nodes(case, grads, no_grad):
    """linear and cat: tensor arguments are inputs of the template (keyed by dtype, shape, device, requires_grad
    and which are the same tensor); every call makes the function's nodes, and gradients are the function's."""
    from tinyjit.tensor_movement import MovementMixin
    from tinyjit.tensor_nn import NNMixin
    rng = np.random.default_rng(2)

    def tensors():
        a = Tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=grads[0])
        w = Tensor(rng.standard_normal((5, 4)).astype(np.float32), requires_grad=grads[1])
        b = Tensor(rng.standard_normal((5,)).astype(np.float32), requires_grad=grads[2])
        c = Tensor(rng.standard_normal((3, 2)).astype(np.float32), requires_grad=grads[2])
        i = Tensor(rng.integers(-5, 5, (3, 2)).astype(np.int32))
        return a, w, b, c, i

    calls = {
        "linear": lambda f, a, w, b, c, i: (f(a, w, b), [a, w, b]),
        "linear_no_bias": lambda f, a, w, b, c, i: (f(a, w), [a, w]),
        "linear_1d": lambda f, a, w, b, c, i: (f(a[0], w, bias=b), [a, w, b]),
        "cat": lambda f, a, w, b, c, i: (f(a, c, dim=1), [a, c]),
        "cat_same": lambda f, a, w, b, c, i: (f(a, a, dim=0), [a]),
        "cat_three": lambda f, a, w, b, c, i: (f(c, a, c, dim=-1), [a, c]),
        "cat_int": lambda f, a, w, b, c, i: (f(i, i, i), [i]),
        "cat_mixed_dtype": lambda f, a, w, b, c, i: (f(i, c, dim=1), [i, c]),
    }
    fn = NNMixin.linear if case.startswith("linear") else MovementMixin.cat
    plain = fn.__wrapped__
    before = composite_cache.stats["composite_hits"]
    for _ in range(3):
        a, w, b, c, i = tensors()
        with Tensor.no_grad() if no_grad else _nothing():
            got, inputs = calls[case](fn, a, w, b, c, i)
            want, _ = calls[case](plain, a, w, b, c, i)
        assert _multi_structure(got, inputs) == _multi_structure(want, inputs)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        leaves = [t for t in inputs if t.requires_grad]
        if got.requires_grad and leaves:
            for g1, g2 in zip(got.square().sum().gradient(*leaves), want.square().sum().gradient(*leaves)):
                np.testing.assert_array_equal(g1.numpy(), g2.numpy())
    if case != "linear_1d":   # (a[0] may be a reshape, which linear's unsqueeze folds: then never templated)
        assert composite_cache.stats["composite_hits"] - before >= 2


def test_function_that_folds_into_its_inputs_graph_is_not_templated():
    """A 1-d input that is a reshape of a constant: linear's unsqueeze folds into the constant under it, so the
    first call's result reads that constant instead of the input. A template would keep that constant for every
    later call; it is not made, and each call computes with its own input."""
    w = Tensor(np.eye(4, dtype=np.float32))
    for v in (1.0, 2.0, 3.0):
        x = Tensor.full((1, 4), v).reshape(4)
        np.testing.assert_array_equal(x.linear(w).numpy(), np.full(4, v, np.float32))
    assert None in composite_cache._templates.values()


def test_linear_matches_torch_from_a_template():
    rng = np.random.default_rng(4)
    wn, bn = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    w, b = Tensor(wn, requires_grad=True), Tensor(bn, requires_grad=True)
    wt, bt = torch.tensor(wn, requires_grad=True), torch.tensor(bn, requires_grad=True)
    hits = composite_cache.stats["composite_hits"]
    for _ in range(3):
        x = rng.standard_normal((2, 4)).astype(np.float32)
        out = Tensor(x).linear(w, b).tanh().sum()
        out_t = torch.nn.functional.linear(torch.from_numpy(x), wt, bt).tanh().sum()
        out.backward()
        out_t.backward()
        np.testing.assert_allclose(out.item(), out_t.item(), rtol=1e-5)
    assert composite_cache.stats["composite_hits"] - hits == 4   # (linear and tanh, twice)
    np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), bt.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opt_name, kwargs", [("Adam", {}), ("AdamW", {}), ("Adam", {"weight_decay": 0.1}),
                                               ("AdamW", {"amsgrad": True, "maximize": True})])
def test_adam_update_from_templates_is_the_same_graph(monkeypatch, opt_name, kwargs):
    """Adam's per-parameter update composites (optim.optimizers._adam_*) come from templates after the first step:
    the step's graph (all updates, by structure key) is the one the plain functions build, and the weights after
    each step are the same bits."""
    from tinyjit import optim
    from tinyjit.optim import optimizers

    def run(plain: bool):
        if plain:
            for name in ("_adam_moment", "_adam_second_moment", "_adam_param"):
                monkeypatch.setattr(optimizers, name, getattr(optimizers, name).__wrapped__)
        rng = np.random.default_rng(7)
        w = Tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True)
        b = Tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)
        opt = getattr(optim, opt_name)([w, b], lr=0.01, **kwargs)
        keys, values = [], []
        for _ in range(3):
            x = Tensor(rng.standard_normal((2, 4)).astype(np.float32))
            ((x @ w + b).tanh().square()).mean().backward()
            targets = opt.schedule_step()
            keys.append(GraphWalk([t.node for t in targets]).key())
            Tensor.realize_all(*targets)
            opt.zero_grad()
            values.append((w.numpy(), b.numpy()))
        return keys, values

    hits = composite_cache.stats["composite_hits"]
    keys, values = run(plain=False)
    assert composite_cache.stats["composite_hits"] - hits >= 6 * 2   # (3 composites x 2 parameters, later steps)
    plain_keys, plain_values = run(plain=True)
    assert keys == plain_keys
    for (w1, b1), (w2, b2) in zip(values, plain_values):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(b1, b2)
