"""Faults the differential fuzzer (test/fuzz_ops.py) found that are not on issue 8's list, each shrunk to a small
case and compared with PyTorch. They are marked xfail(strict=True) while the fault is there: when a fix lands the test
passes, strict xfail turns that into a failure, and the marker comes off (it becomes a plain regression test).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyjit import Tensor

pytestmark = [pytest.mark.usefixtures("device"),
              pytest.mark.filterwarnings("ignore:var\\(\\)|std\\(\\):UserWarning")]


def _grads(fn_tj, fn_torch, *arrays):
    """Gradients of fn(*inputs).sum() with respect to every input, in tinyjit and in PyTorch."""
    tj_in = [Tensor(a, requires_grad=True) for a in arrays]
    pt_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    fn_tj(*tj_in).sum().backward()
    fn_torch(*pt_in).sum().backward()
    return ([None if t.grad is None else t.grad.numpy() for t in tj_in],
            [None if t.grad is None else t.grad.numpy() for t in pt_in])


@pytest.mark.xfail(strict=True, reason="new kind (fuzzer): gradient does not flow through assign, setitem and "
                                       "+=/*= (the assign node records no autograd edge)")
@pytest.mark.parametrize("update", ["imul", "assign", "setitem"])
def test_gradient_flows_through_inplace_updates(update):
    x = np.array([1.0, 2.0, -3.0], np.float32)
    w = np.array([3.0, 4.0, 0.5], np.float32)

    def fn(a, b, assign):
        y = a.clone()
        if update == "imul":
            y *= b
        elif update == "assign":
            assign(y, b * 2)
        else:
            y[1:] = b[1:]
        return y * y

    tj, pt = _grads(lambda a, b: fn(a, b, lambda y, v: y.assign(v)),
                    lambda a, b: fn(a, b, lambda y, v: y.copy_(v)), x, w)
    for g_tj, g_pt in zip(tj, pt):
        assert g_tj is not None
        np.testing.assert_allclose(g_tj, g_pt, rtol=1e-6)


@pytest.mark.xfail(strict=True, reason="new kind (fuzzer): mean/var/std/prod with a dim on a 0-d tensor raise "
                                       "(IndexError / ValueError) where PyTorch reduces over the one element")
@pytest.mark.parametrize("op", ["mean", "var", "std", "prod"])
def test_reduce_with_dim_on_0d_tensor(op):
    value = np.float32(2.5)
    for dim, keepdim in ((0, False), (-1, True)):
        expected = getattr(torch.tensor(value), op)(dim=dim, keepdim=keepdim)
        actual = getattr(Tensor(value), op)(dim=dim, keepdim=keepdim)
        assert actual.shape == tuple(expected.shape)
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), equal_nan=True)


@pytest.mark.xfail(strict=True, reason="new kind (fuzzer): setitem refuses a value with extra leading size-1 dims "
                                       "(x[0] = Tensor([5.]) on a 1-d x), which PyTorch and NumPy broadcast")
def test_setitem_value_with_leading_size_one_dims():
    t = Tensor(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))
    t[0, 1] = Tensor(np.array([5.0], np.float32))
    t[1] = Tensor(np.array([[7.0, 8.0]], np.float32))
    np.testing.assert_array_equal(t.numpy(), [[1.0, 5.0], [7.0, 8.0]])


@pytest.mark.xfail(strict=True, reason="new kind (fuzzer): square() of a bool tensor is bool; PyTorch gives int64 "
                                       "(like pow(x, 2))")
def test_square_of_bool_is_int64():
    x = np.array([True, False])
    assert Tensor(x).square().dtype.name == str(torch.tensor(x).square().dtype).replace("torch.", "")


@pytest.mark.xfail(strict=True, reason="new kind (fuzzer): pow at IEEE special values differs from C pow and PyTorch "
                                       "(-inf ** 1.5, nan ** 0, 1 ** nan, (-1) ** inf, -0. ** -1)")
def test_pow_special_values():
    base = np.array([-np.inf, -np.inf, np.nan, 1.0, -1.0, -0.0, np.inf], np.float32)
    exponent = np.array([-1.5, 1.5, 0.0, np.nan, np.inf, -1.0, -2.5], np.float32)
    expected = (torch.tensor(base) ** torch.tensor(exponent)).numpy()   # [0, inf, 1, 1, 1, -inf, 0]
    np.testing.assert_array_equal((Tensor(base) ** Tensor(exponent)).numpy(), expected)
    np.testing.assert_array_equal((Tensor(base[:2]) ** 1.5).numpy(), (torch.tensor(base[:2]) ** 1.5).numpy())


@pytest.mark.xfail(strict=True, reason="new kind (fuzzer): a bool tensor to a bool power raises TypeError "
                                       "(negation of bool); PyTorch gives bool (x ** True == x, x ** False == 1)")
def test_pow_of_bool_by_bool():
    x = np.array([True, False])
    for e in (True, False):
        expected = torch.tensor(x) ** e
        actual = Tensor(x) ** e
        assert actual.dtype.name == "bool"
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())


@pytest.mark.parametrize("fn", ["trunc", "floor", "ceil", "round"])
def test_rounding_gradient_is_zero_everywhere(fn):
    x = np.array([np.inf, -np.inf, np.nan, 2.0 ** 24 + 2, 1.5], np.float32)
    tj, pt = _grads(lambda a: getattr(a, fn)(), lambda a: getattr(a, fn)(), x)
    np.testing.assert_array_equal(tj[0], pt[0])


@pytest.mark.xfail(strict=True, reason="issue 8 item 7's kind (gradients at special points), an instance the item "
                                       "does not name: clip passes gradient 1 at NaN (PyTorch: 0)")
def test_clip_gradient_at_nan_is_zero():
    x = np.array([np.nan, 1.0, -5.0, 5.0], np.float32)
    tj, pt = _grads(lambda a: a.clip(-2.0, 2.0), lambda a: a.clip(-2.0, 2.0), x)
    np.testing.assert_array_equal(tj[0], pt[0])


class _Timeout(Exception):
    pass


def _within(seconds: int, fn):
    """fn() or _Timeout after `seconds` (SIGALRM: the slow parts are Python, so the alarm interrupts them)."""
    import signal

    def timeout(signum, frame):
        raise _Timeout(f"took more than {seconds} s")
    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)   # a few seconds when the work is linear, even on a loaded machine
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.devices("CPU")
def test_compile_time_after_reduce_is_not_exponential():
    x = np.random.default_rng(0).uniform(-3.0, 3.0, (4, 8)).astype(np.float32)
    out = _within(20, lambda: Tensor(x).sum(1).tanh().tanh().tanh().numpy())
    np.testing.assert_allclose(out, torch.tensor(x).sum(1).tanh().tanh().tanh().numpy(), rtol=1e-5)


@pytest.mark.devices("CPU")   # the scheduler is the same for every device
def test_prod_gradient_schedules_in_reasonable_time():
    x = np.random.default_rng(0).choice([0.5, 1.0, 2.0, -1.0], (128,)).astype(np.float32)
    t = Tensor(x, requires_grad=True)
    t.prod().backward()
    grad = _within(20, lambda: t.grad.numpy())
    p = torch.tensor(x, requires_grad=True)
    p.prod().backward()
    np.testing.assert_allclose(grad, p.grad.numpy(), rtol=1e-5)


@pytest.mark.xfail(strict=True, reason="issue 8 item 7's kind (gradients at special points), an instance the item "
                                       "does not name: max over a dim of size 1 passes gradient 1 to a NaN element "
                                       "(PyTorch: NaN, as over longer dims)")
def test_max_gradient_at_nan_over_one_element():
    x = np.array([[1.0, np.nan, 2.0]], np.float32)
    tj, pt = _grads(lambda a: a.amax(0), lambda a: a.amax(0), x)
    np.testing.assert_array_equal(tj[0], pt[0])
