"""Pins for the eager fast paths (per-op and per-realize overhead): they must compute and schedule exactly what the
general paths do. Counts work (nodes, kernels, bound plans), never time."""
import numpy as np
import pytest
import torch

from tinyjit import Tensor, dtypes
from tinyjit.kernel_cache import counters
from tinyjit.lazy import toposort
from tinyjit.ops import Op


def _ops(t: Tensor) -> list:
    return [n.op for n in toposort([t.node])]


def test_broadcast_operands_make_the_same_views_and_gradients():
    """A broadcast operand takes RESHAPE (only when dims are added) then EXPAND, as reshape().expand() makes them;
    gradients flow back through both like torch's."""
    a_np = np.arange(6, dtype=np.float32).reshape(2, 3)
    c_np = np.array([1.0, -2.0, 3.0], np.float32)
    a, c = Tensor(a_np, requires_grad=True), Tensor(c_np, requires_grad=True)
    out = a * c
    assert _ops(out) == [Op.BUFFER, Op.BUFFER, Op.RESHAPE, Op.EXPAND, Op.MUL]
    col = Tensor(np.ones((2, 1), np.float32))
    assert _ops(a + col) == [Op.BUFFER, Op.BUFFER, Op.EXPAND, Op.ADD]   # same ndim: no reshape
    out.sum().backward()
    ta, tc = torch.tensor(a_np, requires_grad=True), torch.tensor(c_np, requires_grad=True)
    (ta * tc).sum().backward()
    np.testing.assert_allclose(out.numpy(), (ta * tc).detach().numpy())
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy())
    np.testing.assert_allclose(c.grad.numpy(), tc.grad.numpy())
    # both sides broadcast, the scalar side reversed
    x, y = np.arange(3, dtype=np.float32).reshape(3, 1), np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal((Tensor(x) - Tensor(y)).numpy(), x - y)
    np.testing.assert_array_equal((2.0 - Tensor(y)).numpy(), 2.0 - y)


def test_broadcast_errors_unchanged():
    with pytest.raises(ValueError, match="cannot be broadcast"):
        Tensor(np.ones((2, 3), np.float32)) + Tensor(np.ones((4,), np.float32))
    x = Tensor(np.zeros((4, 3), np.float32))
    with pytest.raises(RuntimeError, match="does not broadcast"):
        x.copy_(Tensor(np.ones((2, 3), np.float32)))


@pytest.mark.parametrize("dtype, scalar", [(dtypes.bool, True), (dtypes.uint8, 3), (dtypes.int32, -7),
                                           (dtypes.int64, 2 ** 40), (dtypes.float16, 0.5), (dtypes.float32, -0.0),
                                           (dtypes.float64, 1e-300)])
def test_scalar_operands_take_the_tensors_dtype(dtype, scalar):
    """The scalar of `t op scalar` is converted by the dtype's kind (bool, int, float) as before."""
    values = np.array([0, 1, 1], dtype=dtype.np)
    t = Tensor(values)
    got = (t * scalar) if dtype != dtypes.bool else (t + scalar)   # (bool + bool is logical or)
    want = (values * np.array(scalar, dtype.np)) if dtype != dtypes.bool else (values | scalar)
    const = next(n for n in toposort([got.node]) if n.op is Op.CONST)
    assert type(const.arg) is {"b": bool, "i": int, "u": int, "f": float}[dtype.kind]
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.numpy(), want)


def test_eager_loop_rebinds_plans_with_base_offsets():
    """An eager loop over x[t] (one plan built for every t: base offsets) launches through the plan's spare bound
    argument lists, each run pointed at its own slice."""
    x_np = np.arange(40, dtype=np.float32).reshape(8, 5)
    x = Tensor(x_np).realize()
    outs = [(x[t] * 2 + 1).realize() for t in range(8)]
    bound = counters["plans_bound"]
    outs += [(x[t] * 2 + 1).realize() for t in range(8)]
    assert counters["plans_bound"] == bound   # (the second loop builds no argument list)
    for t, o in enumerate(outs):
        np.testing.assert_array_equal(o.numpy(), x_np[t % 8] * 2 + 1)
