"""Autograd beyond first-order backward, against torch: second derivatives (create_graph=True) of the primitive ops
and the composites built on them, gradient penalties and Hessian-vector products; custom Functions
(tinyjit.autograd.Function); gradient hooks (register_hook) and retain_grad."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import tinyjit
from tinyjit import Tensor
from tinyjit.autograd import Function


def check(ours, theirs, atol=1e-5, rtol=1e-4):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=atol, rtol=rtol)


def _values(seed: int, shape=(3, 4), low=0.3, high=2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    signs = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return (signs * rng.uniform(low, high, shape)).astype(np.float32)


# f(x) per op (the torch spelling where it differs); x of both signs, |x| for the ops that need x > 0
UNARY = {
    "exp": lambda x: x.exp(), "log": lambda x: x.abs().log(), "sin": lambda x: x.sin(), "cos": lambda x: x.cos(),
    "sqrt": lambda x: x.abs().sqrt(), "recip": lambda x: 1 / x, "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(), "square": lambda x: x * x, "cube": lambda x: x ** 3,
    "pow_float": lambda x: x.abs() ** 2.5, "relu_mul": lambda x: x.relu() * x, "softmax": lambda x: x.softmax(-1),
    "log_softmax": lambda x: x.log_softmax(-1), "sum_sq": lambda x: x.sum(1, keepdim=True) ** 2,
    "amax": lambda x: x.amax(1) * x.amax(1), "abs_mul": lambda x: x.abs() * x,
    "div_self": lambda x: x / (x * x + 1), "mean_var": lambda x: x.var(1) * x.mean(0).sum(),
    "cast": lambda x: x.double().exp().float(), "matmul": lambda x: (x @ x.T).exp(),
    "where": (lambda x: (x > 0).where(x * x, x.exp()), lambda x: torch.where(x > 0, x * x, x.exp())),
    "movement": (lambda x: (x.T.flip(0)[1:].pad(((1, 0), (0, 1))) ** 2).reshape(-1),
                 lambda x: (torch.nn.functional.pad(x.T.flip(0)[1:], (0, 1, 1, 0)) ** 2).reshape(-1)),
}
# a few ops per case: each case is one graph (few kernels), and a wrong op is still named by its case
GROUPS = [["exp", "log", "sin", "cos", "sqrt"], ["recip", "tanh", "sigmoid", "square", "cube", "pow_float"],
          ["relu_mul", "softmax", "log_softmax", "sum_sq"], ["amax", "abs_mul", "div_self", "mean_var", "cast"],
          ["matmul", "where", "movement"]]


@pytest.mark.parametrize("names", GROUPS, ids=["-".join(g) for g in GROUPS])
def test_second_derivative_matches_torch(names):
    """d/dx <v, d f(x)/dx> (a Hessian-vector product of sum(f(x) * w)) summed over a few ops."""
    a, v = _values(1), _values(2, low=0.1, high=1.0)
    x, t = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    loss, tloss = 0, 0
    for i, name in enumerate(names):
        ours, theirs = UNARY[name] if isinstance(UNARY[name], tuple) else (UNARY[name], UNARY[name])
        tout = theirs(t)
        w = np.random.default_rng(3 + i).uniform(0.5, 1.5, tuple(tout.shape)).astype(np.float32)
        loss = loss + (ours(x) * Tensor(w)).sum()
        tloss = tloss + (tout * torch.tensor(w)).sum()
    (g,) = tinyjit.gradient(loss, x, create_graph=True)
    (tg,) = torch.autograd.grad(tloss, t, create_graph=True)
    check(g, tg)
    assert g.requires_grad
    (g * Tensor(v)).sum().backward()
    (tg * torch.tensor(v)).sum().backward()
    check(x.grad, t.grad, atol=1e-4, rtol=1e-3)


def test_binary_second_derivatives_and_mixed_partials():
    a, b = _values(4), _values(5)
    for fn in (lambda x, y: x * y * x, lambda x, y: x / y, lambda x, y: x.maximum(y) * x,
               lambda x, y: (x @ y.T).tanh(), lambda x, y: x ** y.abs()):
        x, y = Tensor(np.abs(a), requires_grad=True), Tensor(b, requires_grad=True)
        tx, ty = torch.tensor(np.abs(a), requires_grad=True), torch.tensor(b, requires_grad=True)
        gx, gy = tinyjit.gradient(fn(x, y).sum(), [x, y], create_graph=True)
        tgx, tgy = torch.autograd.grad(fn(tx, ty).sum(), [tx, ty], create_graph=True)
        (gx.square().sum() + (gy * gx).sum()).backward()
        (tgx.square().sum() + (tgy * tgx).sum()).backward()
        check(x.grad, tx.grad, atol=1e-4, rtol=1e-3)
        check(y.grad, ty.grad, atol=1e-4, rtol=1e-3)


def _mlp(m, x, w1, w2):
    return (m.tanh(x @ w1) @ w2).sum() if m is torch else ((x @ w1).tanh() @ w2).sum()


@pytest.mark.devices("CPU")   # (CL runs test_custom_function_values_and_gradients)
def test_gradient_penalty_and_hessian_vector_product(device):
    xs, w1n, w2n, vn = _values(6, (5, 3)), _values(7, (3, 4)), _values(8, (4, 2)), _values(9, (3, 4))
    # gradient penalty: || d D(x) / dx ||^2 differentiated with respect to the weights
    x = Tensor(xs, requires_grad=True)
    w1, w2 = Tensor(w1n, requires_grad=True), Tensor(w2n, requires_grad=True)
    tx = torch.tensor(xs, requires_grad=True)
    tw1, tw2 = torch.tensor(w1n, requires_grad=True), torch.tensor(w2n, requires_grad=True)
    (gx,) = tinyjit.gradient(_mlp(Tensor, x, w1, w2), x, create_graph=True)
    (tgx,) = torch.autograd.grad(_mlp(torch, tx, tw1, tw2), tx, create_graph=True)
    ((gx.square().sum(1) - 1) ** 2).mean().backward()
    ((tgx.square().sum(1) - 1) ** 2).mean().backward()
    check(w1.grad, tw1.grad)
    check(w2.grad, tw2.grad)
    # Hessian-vector product with respect to w1 (backward(create_graph=True) fills a differentiable .grad)
    w1.grad = None
    _mlp(Tensor, Tensor(xs), w1, w2).backward(create_graph=True)
    (hv,) = tinyjit.gradient((w1.grad * Tensor(vn)).sum(), w1)
    (tg,) = torch.autograd.grad(_mlp(torch, torch.tensor(xs), tw1, tw2), tw1, create_graph=True)
    (thv,) = torch.autograd.grad((tg * torch.tensor(vn)).sum(), tw1)
    check(hv, thv)


def test_without_create_graph_gradients_are_constants():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (g,) = tinyjit.gradient((x * x).sum(), x)
    assert not g.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        g.sum().backward()


# ------------------------------------------------------------------------------------------- autograd.Function
class ClampedExp(Function):
    """exp whose gradient is clipped to [-1, 1] times the output: differs from the true gradient on purpose."""

    @staticmethod
    def forward(ctx, x, scale):
        y = x.exp() * scale
        ctx.save_for_backward(y)
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        assert ctx.needs_input_grad == (True, False)
        return (grad * y).clip(-1, 1), None


class TorchClampedExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        y = x.exp() * scale
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return (grad * y).clamp(-1, 1), None


class SplitScale(Function):
    """Two outputs from two inputs (a broadcast one), backward built from Tensor ops."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b, a - b

    @staticmethod
    def backward(ctx, g_prod, g_diff):
        a, b = ctx.saved_tensors
        return g_prod * b + g_diff, g_prod * a - g_diff   # the gradient of b is summed back to its shape


def test_custom_function_values_and_gradients(device):
    a = _values(10, (2, 3))
    x, t = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    y, ty = ClampedExp.apply(x, 0.5), TorchClampedExp.apply(t, 0.5)
    check(y, ty)
    assert y.requires_grad and not y.is_leaf
    (y * y).sum().backward()
    (ty * ty).sum().backward()
    check(x.grad, t.grad)
    # two outputs, a broadcast input
    b = _values(11, (3,))
    x, xb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    t, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    p, d = SplitScale.apply(x, xb)
    (p.exp().sum() + (d * d).sum()).backward()
    ((t * tb).exp().sum() + ((t - tb) ** 2).sum()).backward()
    check(x.grad, t.grad)
    check(xb.grad, tb.grad)


def test_custom_function_is_lazy_and_errors():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with Tensor.no_grad():
        y = ClampedExp.apply(x, 1.0)
    assert not y.requires_grad
    assert not ClampedExp.apply(Tensor([1.0]), 1.0).requires_grad

    class WrongCount(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            return grad, grad

    with pytest.raises(RuntimeError, match="2 gradients, expected 1"):
        WrongCount.apply(x).sum().backward()


# ---------------------------------------------------------------------------------------------- hooks, retain_grad
def test_register_hook_and_retain_grad():
    a = _values(12, (4,))
    x, t = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    seen = []

    def run(m, x):
        y = x * 3
        y.retain_grad()
        handle = y.register_hook(lambda g: g * 2)
        h2 = x.register_hook(lambda g: seen.append(m) or g + 1)
        z = (y * y).sum()
        return y, z, handle, h2

    y, z, handle, h2 = run(Tensor, x)
    ty, tz, thandle, th2 = run(torch, t)
    z.backward()
    tz.backward()
    check(x.grad, t.grad)
    check(y.grad, ty.grad)
    assert seen == [Tensor, torch]
    handle.remove(), h2.remove(), thandle.remove(), th2.remove()
    x.grad, t.grad = None, None
    (x * 3).sum().backward()
    (t * 3).sum().backward()
    check(x.grad, t.grad)
    assert seen == [Tensor, torch]
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).register_hook(lambda g: g)
