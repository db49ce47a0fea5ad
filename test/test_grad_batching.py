"""The gradient of a weight shared across the steps of a recurrence is one product over the steps' rows
(tinyjit/grad_batching.py), with the values torch gives."""
import numpy as np
import pytest
import torch

from tinyjit import Tensor, autograd
from tinyjit.autograd_graph import gradient
from tinyjit.grad_batching import MAX_BATCHED_ROWS
from tinyjit.lazy import toposort
from tinyjit.ops import Op

RNG = np.random.default_rng(7)


def _rnn(lib_tensor, x, w_in, w_rec, bias, steps):
    """A tanh RNN unrolled over `steps` (x: (batch, steps, features)); returns the loss and the parameters."""
    X, WI, WR, B = (lib_tensor(a) for a in (x, w_in, w_rec, bias))
    for p in (WI, WR, B):
        p.requires_grad_(True)
    h = None
    for t in range(steps):
        pre = X[:, t] @ WI.T + B
        if h is not None:
            pre = pre + h @ WR.T
        h = pre.tanh()
    return (h * h).sum(), (WI, WR, B)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unrolled_rnn_gradients_match_torch(device, dtype):
    batch, steps, features, hidden = 3, 6, 4, 5
    arrays = [RNG.standard_normal(s).astype(dtype) for s in
              ((batch, steps, features), (hidden, features), (hidden, hidden), (hidden,))]
    loss, params = _rnn(lambda a: Tensor(a, device=device), *arrays, steps)
    loss.backward()
    ref_loss, ref_params = _rnn(torch.tensor, *arrays, steps)
    ref_loss.backward()
    tol = 1e-5 if dtype == "float32" else 1e-12
    for p, r in zip(params, ref_params):
        np.testing.assert_allclose(p.grad.numpy(), r.grad.numpy(), rtol=tol, atol=tol)


def _weight_gradient_sums(steps: int, rows: int) -> list:
    """The SUM nodes of d(sum_t (x_t @ W) ** 2)/dW for `steps` inputs x_t of `rows` rows."""
    w = Tensor(RNG.standard_normal((4, 5)).astype("float32"), requires_grad=True)
    loss = None
    for _ in range(steps):
        y = Tensor(RNG.standard_normal((rows, 4)).astype("float32")) @ w
        loss = (y * y).sum() if loss is None else loss + (y * y).sum()
    (grad,) = gradient([loss.node], [w.node])
    # (the forward's own products, (rows, 5, 1), are in the graph too: y is needed for d(y^2)/dy)
    return [n for n in toposort([grad]) if n.op == Op.SUM and n.size == 20]


def test_per_step_products_become_one_product_over_all_rows():
    sums = _weight_gradient_sums(steps=5, rows=3)
    assert len(sums) == 1, "one product for the five steps"
    assert sums[0].src[0].shape[sums[0].arg[0]] == 15, "reduced over the 5 x 3 rows"


def test_long_products_are_summed_as_they_are():
    sums = _weight_gradient_sums(steps=3, rows=MAX_BATCHED_ROWS + 1)
    assert len(sums) == 3


def test_steps_of_different_batch_sizes_and_other_terms(device):
    """Steps of 2, 5 and 3 rows join; an elementwise use of the same weight is added as its own term."""
    w_np = RNG.standard_normal((4, 3)).astype("float32")
    xs = [RNG.standard_normal((n, 4)).astype("float32") for n in (2, 5, 3)]

    def loss_of(tensor, w):
        total = (w * w).sum() * 0.5
        for x in xs:
            total = total + (tensor(x) @ w).sigmoid().sum()
        return total
    w = Tensor(w_np, device=device, requires_grad=True)
    loss_of(lambda a: Tensor(a, device=device), w).backward()
    ref = torch.tensor(w_np, requires_grad=True)
    loss_of(torch.tensor, ref).backward()
    np.testing.assert_allclose(w.grad.numpy(), ref.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_half_precision_weights_are_not_batched_but_right():
    w_np = RNG.standard_normal((4, 3)).astype("float16")
    xs = [RNG.standard_normal((2, 4)).astype("float16") for _ in range(3)]
    w = Tensor(w_np, requires_grad=True)
    sum(((Tensor(x) @ w).float().sum() for x in xs), Tensor(0.0)).backward()
    expected = sum(x.astype(np.float32).sum(0) for x in xs)[:, None] * np.ones((1, 3), np.float32)
    np.testing.assert_allclose(w.grad.numpy().astype(np.float32), expected, rtol=1e-2, atol=1e-2)


def test_second_derivative_through_a_batched_product():
    """create_graph: the batched weight gradient is differentiated again like any graph (against torch)."""
    w_np = RNG.standard_normal((3, 3)).astype("float64")
    xs = [RNG.standard_normal((2, 3)) for _ in range(4)]

    def run(tensor, grad_fn):
        w = tensor(w_np)
        w.requires_grad_(True)
        loss = sum(((tensor(x) @ w).tanh().sum() for x in xs[1:]), (tensor(xs[0]) @ w).tanh().sum())
        (g,) = grad_fn(loss, w)
        (g * g).sum().backward()
        return w.grad.numpy()
    ours = run(Tensor, lambda loss, w: autograd.grad(loss, [w], create_graph=True))
    ref = run(torch.tensor, lambda loss, w: torch.autograd.grad(loss, [w], create_graph=True))
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)
