"""tanh and sigmoid take their gradient from the result, as PyTorch's tanh_backward (1 - y^2) and
sigmoid_backward (y (1 - y)) do, instead of differentiating the formulas computing them (tanh's expm1 polynomial
and branches): smaller gradient graphs, fewer kernels, and still templated by the gradient cache."""
import numpy as np
import pytest
import torch

from tinyjit import Tensor, autograd, gradient_cache, nn, optim

ACTIVATIONS = {
    "tanh": (lambda t: t.tanh(), torch.tanh),
    "sigmoid": (lambda t: t.sigmoid(), torch.sigmoid),
    "gelu_tanh": (lambda t: t.gelu("tanh"), lambda t: torch.nn.functional.gelu(t, approximate="tanh")),
    "silu": (lambda t: t.silu(), torch.nn.functional.silu),
    "mish": (lambda t: t.mish(), torch.nn.functional.mish),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_match_torch_at_ordinary_and_special_points(name, dtype):
    ours, theirs = ACTIVATIONS[name]
    x = np.concatenate([np.random.default_rng(0).standard_normal(200) * 4,
                        [0.0, -0.0, 1e-8, -1e-8, 10.0, -10.0, 20.0, -20.0, 50.0, -50.0, 100.0, -100.0]]).astype(dtype)
    t = Tensor(x, requires_grad=True)
    ours(t).sum().backward()
    exact = torch.tensor(x.astype(np.float64), requires_grad=True)   # float32 compared with the exact gradient:
    theirs(exact).sum().backward()   # 1 - y^2 where tanh saturates is off by ~1e-6 (an ulp of y), in torch too
    np.testing.assert_allclose(t.grad.numpy(), exact.grad.numpy(), rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=3e-6 if dtype == np.float32 else 1e-14, err_msg=name)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_infinities_nan_and_half(name):
    ours, theirs = ACTIVATIONS[name]
    x = np.array([np.inf, -np.inf, np.nan, 0.5], np.float32)
    t = Tensor(x, requires_grad=True)
    ours(t).sum().backward()
    tt = torch.tensor(x, requires_grad=True)
    theirs(tt).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-6, atol=0)   # (NaN where NaN)
    h = Tensor(x.astype(np.float16), requires_grad=True)
    ours(h).sum().backward()
    th = torch.tensor(x.astype(np.float16), requires_grad=True)
    theirs(th.float()).half().sum().backward()
    assert h.grad.dtype.name == "float16"
    np.testing.assert_allclose(h.grad.numpy().astype(np.float32), th.grad.numpy().astype(np.float32), rtol=1e-3,
                               atol=1e-4)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "gelu_tanh"])
def test_second_derivatives_match_torch(name):
    ours, theirs = ACTIVATIONS[name]
    x = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float64) * 2
    t = Tensor(x, requires_grad=True)
    (g,) = autograd.grad(ours(t).sum(), [t], create_graph=True)
    (g * g).sum().backward()
    tt = torch.tensor(x, requires_grad=True)
    (tg,) = torch.autograd.grad(theirs(tt).sum(), [tt], create_graph=True)
    (tg * tg).sum().backward()
    np.testing.assert_allclose(g.numpy(), tg.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name, kernels", [("tanh", 13), ("sigmoid", 12), ("gelu_tanh", 11)])
def test_training_step_kernels(name, kernels, scheduled_kernel_counts):
    """Linear -> activation -> Linear, backward and an SGD step in one schedule: the activation's gradient is one
    small expression of its result (14, 12 and 18 kernels when the formulas were differentiated)."""
    counts = scheduled_kernel_counts
    rng = np.random.default_rng(0)
    lin, lin2 = nn.Linear(16, 32), nn.Linear(32, 4)
    opt = optim.SGD(list(lin.parameters()) + list(lin2.parameters()), lr=0.1)
    x = Tensor(rng.random((8, 16), dtype=np.float32))
    for _ in range(2):
        opt.zero_grad()
        loss = lin2(ACTIVATIONS[name][0](lin(x))).square().mean()
        loss.backward()
        opt.step()
    assert counts == [kernels, kernels]


def test_a_derivative_with_closure_variables_is_not_templated():
    """The gradient cache templates a result-gradient rule by its formula's code: a derivative that reads closure
    variables (which the graph does not show) keeps the graph uncached, and stays correct."""
    before = dict(gradient_cache.stats)
    for scale in (2.0, 3.0, 2.0, 3.0):
        x = Tensor(np.linspace(-1, 1, 6, dtype=np.float32), requires_grad=True)
        y = x._with_result_gradient(lambda: x.detach() * 1.0, lambda r: r * 0 + scale)
        y.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), np.full(6, scale, np.float32))
    assert gradient_cache.stats["gradient_uncached"] - before["gradient_uncached"] == 4


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_result_updated_in_place_after_realize_keeps_its_gradient(name):
    """The rule reads the result's node: a realized result updated in place (`y.add_(1)`, `y.mul_(y)`) keeps the
    old contents for it (tinyjit.inplace preserves what a recorded assign's gradient reads)."""
    ours, theirs = ACTIVATIONS[name]
    xv = np.linspace(-2, 2, 7).astype(np.float32)
    for in_place, out_of_place in ((lambda y: y.add_(1), lambda y: y + 1), (lambda y: y.mul_(y), lambda y: y * y)):
        x = Tensor(xv, requires_grad=True)
        y = ours(x).realize()
        in_place(y).realize()
        (y * 3).sum().backward()
        tx = torch.tensor(xv, requires_grad=True)
        (out_of_place(theirs(tx)) * 3).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)
