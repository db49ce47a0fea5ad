"""Faults the differential fuzzer (test/fuzz_ops.py) found that are not on issue 8's list, each shrunk to a small
case and compared with PyTorch. They are marked xfail(strict=True) while the fault is there: when a fix lands the test
passes, strict xfail turns that into a failure, and the marker comes off (it becomes a plain regression test).
"""
from __future__ import annotations

import math

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


INPLACE_UPDATES = {   # (tinyjit, PyTorch) in-place updates of y by b
    "imul": (lambda y, b: y.__imul__(b), lambda y, b: y.__imul__(b)),
    "iadd": (lambda y, b: y.__iadd__(b * b), lambda y, b: y.__iadd__(b * b)),
    "isub": (lambda y, b: y.__isub__(b), lambda y, b: y.__isub__(b)),
    "idiv": (lambda y, b: y.__itruediv__(b), lambda y, b: y.__itruediv__(b)),
    "assign": (lambda y, b: y.assign(b * 2), lambda y, b: y.copy_(b * 2)),
    "assign_broadcast": (lambda y, b: y.assign(b[:1]), lambda y, b: y.copy_(b[:1])),
    "setitem": (lambda y, b: y.__setitem__(slice(1, None), b[1:]), lambda y, b: y.__setitem__(slice(1, None), b[1:])),
    "setitem_strided": (lambda y, b: y.__setitem__(slice(None, None, 2), b[::2].exp()),
                        lambda y, b: y.__setitem__(slice(None, None, 2), b[::2].exp())),
    "setitem_scalar": (lambda y, b: y.__setitem__(0, 5.0), lambda y, b: y.__setitem__(0, 5.0)),
    "twice": (lambda y, b: y.__imul__(b).__iadd__(b), lambda y, b: y.__imul__(b).__iadd__(b)),
}


@pytest.mark.parametrize("update", list(INPLACE_UPDATES))
@pytest.mark.parametrize("realize", [False, True])
def test_gradient_flows_through_inplace_updates(update, realize):
    """Like PyTorch's autograd through in-place ops on a non-leaf: the updated tensor is a result of the update,
    gradient flows into the value and into what the update keeps of the old contents, and the overwritten part gets
    0 (not None). With realize, the updated tensor is realized before it is used (it keeps its graph)."""
    x = np.array([1.0, 2.0, -3.0, 0.5], np.float32)
    w = np.array([3.0, 4.0, 0.5, -2.0], np.float32)
    tj_update, pt_update = INPLACE_UPDATES[update]

    def fn(update_fn, a, b):
        y = a.clone()
        update_fn(y, b)
        if realize and isinstance(y, Tensor):
            y.realize()
        return y * y

    tj, pt = _grads(lambda a, b: fn(tj_update, a, b), lambda a, b: fn(pt_update, a, b), x, w)
    for g_tj, g_pt in zip(tj, pt):
        assert (g_tj is None) == (g_pt is None)
        if g_pt is not None:
            np.testing.assert_allclose(g_tj, g_pt, rtol=1e-6)


@pytest.mark.parametrize("target_requires_grad", [False, True])
def test_inplace_update_makes_a_result_that_requires_grad(target_requires_grad):
    """A tensor that does not require grad updated with one that does becomes a result requiring grad (PyTorch);
    one that requires grad keeps requiring it when the value does not."""
    a = Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    y = a * 2 if target_requires_grad else Tensor(np.array([5.0, 6.0], np.float32))
    y += a if not target_requires_grad else 1.0
    assert y.requires_grad and not y.is_leaf
    (y * y).sum().backward()
    expected = 2 * (2 * np.array([1.0, 2.0]) + 1) * 2 if target_requires_grad else 2 * np.array([6.0, 8.0])
    np.testing.assert_allclose(a.grad.numpy(), expected)


def test_inplace_update_of_a_leaf_that_requires_grad_raises():
    """PyTorch: "a leaf Variable that requires grad is being used in an in-place operation" (RuntimeError), at the
    call, leaving the tensor as it was; under no_grad (an optimizer step) it is allowed."""
    w = Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    for update in (lambda: w.__iadd__(1.0), lambda: w.assign(Tensor(np.zeros(2, np.float32))),
                   lambda: w.__setitem__(0, 3.0)):
        with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
            update()
    np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])
    with Tensor.no_grad():
        w -= 0.5
    np.testing.assert_array_equal(w.numpy(), [0.5, 1.5])
    assert w.is_leaf and w.requires_grad


@pytest.mark.parametrize("op", ["mean", "var", "std", "prod", "sum", "logsumexp"])
def test_reduce_with_dim_on_0d_tensor(op):
    """PyTorch accepts dim 0 and -1 (alone or in a list) on a 0-d tensor and reduces over its one element."""
    value = np.float32(2.5)
    dims = ((0, False), (-1, True)) + (() if op == "prod" else (((0,), False), ([-1], True)))  # torch.prod: int dim
    for dim, keepdim in dims:
        expected = getattr(torch.tensor(value), op)(dim=dim, keepdim=keepdim)
        actual = getattr(Tensor(value), op)(dim=dim, keepdim=keepdim)
        assert actual.shape == tuple(expected.shape)
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), equal_nan=True)
    tj, pt = _grads(lambda a: getattr(a, op)(dim=0), lambda a: getattr(a, op)(dim=0), value)
    np.testing.assert_allclose(tj[0], pt[0], equal_nan=True)


@pytest.mark.parametrize("dtype", ["int32", "bool", "float16"])
def test_prod_and_sum_with_dim_on_0d_tensor_of_other_dtypes(dtype):
    value = np.array(3 if dtype != "bool" else True, dtype)
    for op in ("prod", "sum"):
        expected = getattr(torch.tensor(value), op)(dim=0)
        actual = getattr(Tensor(value), op)(dim=-1)
        assert actual.dtype.name == str(expected.dtype).replace("torch.", "")
        assert actual.numpy() == expected.numpy()


def test_reduce_with_bad_dim_on_0d_tensor_raises_index_error():
    for op in ("mean", "var", "prod", "sum"):
        with pytest.raises(IndexError):
            getattr(Tensor(np.float32(1.0)), op)(dim=1)


def test_setitem_value_with_leading_size_one_dims():
    t = Tensor(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))
    t[0, 1] = Tensor(np.array([5.0], np.float32))
    t[1] = Tensor(np.array([[7.0, 8.0]], np.float32))
    np.testing.assert_array_equal(t.numpy(), [[1.0, 5.0], [7.0, 8.0]])
    u = Tensor(np.zeros((2, 3, 2), np.int32))
    u[:, 1:] = Tensor(np.arange(8, dtype=np.int32).reshape(1, 1, 2, 2, 2))
    expected = torch.zeros(2, 3, 2, dtype=torch.int32)
    expected[:, 1:] = torch.arange(8, dtype=torch.int32).reshape(1, 1, 2, 2, 2)
    np.testing.assert_array_equal(u.numpy(), expected.numpy())
    scalar = Tensor(np.float32(1.0))
    scalar[...] = Tensor(np.array([[3.0]], np.float32))
    assert scalar.numpy() == 3.0


def test_setitem_value_with_extra_dims_of_other_sizes_raises():
    """PyTorch raises RuntimeError when the extra leading dims are not size 1, or the value does not broadcast."""
    t = Tensor(np.zeros((2, 2), np.float32))
    for value in (np.ones((2, 2), np.float32), np.ones(3, np.float32)):
        with pytest.raises(RuntimeError, match="setitem"):
            t[1] = Tensor(value)
    np.testing.assert_array_equal(t.numpy(), np.zeros((2, 2)))


def test_square_of_bool_is_int64():
    x = np.array([True, False])
    expected = torch.tensor(x).square()
    actual = Tensor(x).square()
    assert actual.dtype.name == str(expected.dtype).replace("torch.", "")
    np.testing.assert_array_equal(actual.numpy(), expected.numpy())


def _same_floats(actual, expected, rtol=0.0):
    """Equal values (within rtol: pow of ordinary values is exp2(y log2 x), a few ulp off) with equal signs of zero,
    infinities where infinities, NaN where NaN."""
    close = np.isclose(actual, expected, rtol=rtol, atol=0) & (np.isinf(actual) == np.isinf(expected))
    same = close & (np.signbit(actual) == np.signbit(expected)) | np.isnan(actual) & np.isnan(expected)
    assert same.all(), f"differ at {np.nonzero(~same)}: {actual[~same]} (PyTorch {expected[~same]})"


def test_pow_special_values():
    base = np.array([-np.inf, -np.inf, np.nan, 1.0, -1.0, -0.0, np.inf], np.float32)
    exponent = np.array([-1.5, 1.5, 0.0, np.nan, np.inf, -1.0, -2.5], np.float32)
    expected = (torch.tensor(base) ** torch.tensor(exponent)).numpy()   # [0, inf, 1, 1, 1, -inf, 0]
    np.testing.assert_array_equal((Tensor(base) ** Tensor(exponent)).numpy(), expected)
    np.testing.assert_array_equal((Tensor(base[:2]) ** 1.5).numpy(), (torch.tensor(base[:2]) ** 1.5).numpy())


SPECIAL = [-np.inf, -3.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 3.0, np.inf, np.nan]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_pow_at_every_pair_of_special_values(dtype):
    """Every pair of IEEE special and small integer values (signs of zero included) like PyTorch (C pow), for a tensor
    exponent, a Python scalar exponent (PyTorch's shortcuts: x ** 0.5 is sqrt, x ** -0.5 rsqrt outside half) and a
    Python scalar base."""
    rtol = 4 * np.finfo(dtype).eps
    pairs = np.array([(b, e) for b in SPECIAL for e in SPECIAL + [2.0, -2.0, 1.5, -1.5]], dtype)
    base, exponent = pairs[:, 0], pairs[:, 1]
    _same_floats((Tensor(base) ** Tensor(exponent)).numpy(), (torch.tensor(base) ** torch.tensor(exponent)).numpy(),
                 rtol)
    values = np.array(SPECIAL, dtype)
    exponents, bases = [np.inf, -np.inf, np.nan, -0.0, 0.5, -0.5, 1.5, 3.0, -3.0], [np.inf, -np.inf, np.nan, -0.0, -3.0]
    results = [Tensor(values) ** s for s in exponents] + [s ** Tensor(values) for s in bases]
    Tensor.realize_all(*results)   # (not stacked: cat adds +0 padding, which turns -0 into +0)
    expected = [torch.tensor(values) ** s for s in exponents] + [s ** torch.tensor(values) for s in bases]
    _same_floats(np.stack([r.numpy() for r in results]), torch.stack(expected).numpy(), rtol)


def test_pow_of_bool_by_bool():
    """A bool tensor to a Python bool power stays bool (x ** True == x, x ** False == 1) like PyTorch; bool ** bool
    with a bool tensor exponent raises NotImplementedError like PyTorch's "pow" not implemented for 'Bool'."""
    x = np.array([True, False])
    for e in (True, False):
        expected = torch.tensor(x) ** e
        actual = Tensor(x) ** e
        assert actual.dtype.name == "bool"
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())
    for fn in (lambda a: a ** a, lambda a: True ** a):
        with pytest.raises(NotImplementedError):
            fn(torch.tensor(x))
        with pytest.raises(NotImplementedError, match="pow"):
            fn(Tensor(x))


@pytest.mark.parametrize("fn", ["trunc", "floor", "ceil", "round"])
def test_rounding_gradient_is_zero_everywhere(fn):
    x = np.array([np.inf, -np.inf, np.nan, 2.0 ** 24 + 2, 1.5], np.float32)
    tj, pt = _grads(lambda a: getattr(a, fn)(), lambda a: getattr(a, fn)(), x)
    np.testing.assert_array_equal(tj[0], pt[0])


def test_clip_gradient_at_nan_is_zero():
    x = np.array([np.nan, 1.0, -5.0, 5.0], np.float32)
    tj, pt = _grads(lambda a: a.clip(-2.0, 2.0), lambda a: a.clip(-2.0, 2.0), x)
    np.testing.assert_array_equal(tj[0], pt[0])


F = torch.nn.functional
# (tinyjit, PyTorch) functions of two tensors whose values and gradients at NaN, +-inf and +-0 must match
SPECIAL_POINT_OPS = {
    "clip": (lambda a, b: a.clip(-2.0, 2.0) + b, lambda a, b: a.clip(-2.0, 2.0) + b),
    "clip_tensor_min": (lambda a, b: a.clip(b, None), lambda a, b: a.clamp(b, None)),
    "clip_tensor_max": (lambda a, b: a.clip(None, b), lambda a, b: a.clamp(None, b)),
    "maximum": (lambda a, b: a.maximum(b), lambda a, b: a.maximum(b)),
    "minimum": (lambda a, b: a.minimum(b), lambda a, b: a.minimum(b)),
    "max_all": (lambda a, b: a.max() + b, lambda a, b: a.max() + b),     # the NaN entries share the gradient
    "min_all": (lambda a, b: a.min() + b, lambda a, b: a.min() + b),
    "amax_all": (lambda a, b: a.amax() + b, lambda a, b: a.amax() + b),  # NaN gradients everywhere
    "amin_all": (lambda a, b: a.amin() + b, lambda a, b: a.amin() + b),
    "max_over_one": (lambda a, b: a.reshape(8, 1).amax(1) + b, lambda a, b: a.reshape(8, 1).amax(1) + b),
    "min_over_one": (lambda a, b: a.reshape(8, 1).amin(1, keepdim=True).reshape(8) + b,
                     lambda a, b: a.reshape(8, 1).amin(1, keepdim=True).reshape(8) + b),
    "max_of_0d": (lambda a, b: a[0].amax(0) + a[1].max() + b, lambda a, b: a[0].amax(0) + a[1].amax() + b),
    "max_pairs": (lambda a, b: a.reshape(4, 2).amax(1).sum() + b, lambda a, b: a.reshape(4, 2).amax(1).sum() + b),
    "max_stacked": (lambda a, b: a.stack(b).amax(0), lambda a, b: torch.stack([a, b]).amax(0)),
    "relu": (lambda a, b: a.relu() * b, lambda a, b: a.relu() * b),
    "abs": (lambda a, b: a.abs() * b, lambda a, b: a.abs() * b),
    "sign": (lambda a, b: a.sign() * b, lambda a, b: a.sign() * b),
    "relu6": (lambda a, b: a.relu6() + b, lambda a, b: F.relu6(a) + b),
    "hardsigmoid": (lambda a, b: a.hardsigmoid() + b, lambda a, b: F.hardsigmoid(a) + b),
    "hardswish": (lambda a, b: a.hardswish() + b, lambda a, b: F.hardswish(a) + b),
    "leaky_relu": (lambda a, b: a.leaky_relu() + b, lambda a, b: F.leaky_relu(a) + b),
    "elu": (lambda a, b: a.elu() + b, lambda a, b: F.elu(a) + b),
}


@pytest.mark.parametrize("op", list(SPECIAL_POINT_OPS))
def test_values_and_gradients_at_nan_and_inf_like_torch(op):
    """issue 8 item 7's kind at NaN and +-inf: clamp passes no gradient to a NaN (nor to a NaN bound), maximum and
    minimum pass it to both sources when one is NaN, amax/amin over one element give NaN to a NaN (as over more),
    relu6 and elu give 1 at NaN, hardswish 1 at +inf and NaN (its polynomial branch never sees them)."""
    tj_fn, pt_fn = SPECIAL_POINT_OPS[op]
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -2.0, 3.0], np.float32)
    y = np.array([1.0, np.nan, np.inf, -0.0, 0.0, 1.0, np.nan, -np.inf], np.float32)
    a, b = Tensor(x, requires_grad=True), Tensor(y, requires_grad=True)
    out = tj_fn(a, b)
    out.sum().backward()
    pa, pb = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    expected = pt_fn(pa, pb)
    expected.sum().backward()
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-6)   # NaN where NaN
    np.testing.assert_allclose(a.grad.numpy(), pa.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), pb.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_max_and_min_over_one_element_keep_the_dtype(dtype):
    x = np.array([[np.nan], [2.0]], dtype)
    for out, expected in ((Tensor(x).amax(1), torch.tensor(x).amax(1)),
                          (Tensor(x[1]).reshape(()).min(), torch.tensor(x[1]).reshape(()).amin())):
        assert out.dtype.name == dtype
        np.testing.assert_array_equal(out.numpy(), expected.numpy())


def test_pow_gradient_at_infinite_and_nan_bases():
    base = np.array([np.inf, np.inf, -np.inf, np.nan, 1.0], np.float32)
    exponent = np.array([2.0, 0.5, 3.0, 2.0, np.inf], np.float32)
    tj, pt = _grads(lambda a, b: a ** b, lambda a, b: a ** b, base, exponent)
    for g_tj, g_pt in zip(tj, pt):
        np.testing.assert_array_equal(g_tj, g_pt)


def test_prod_of_an_empty_tensor_stays_in_the_graph():
    """issue 8 item 18's kind: the empty product is 1 and requires grad when its input does (gradient: empty)."""
    x = np.zeros((2, 0), np.float32)
    tj, pt = _grads(lambda a: a.prod(1) * 2, lambda a: a.prod(1) * 2, x)
    assert tj[0].shape == pt[0].shape == (2, 0)
    assert Tensor(x, requires_grad=True).prod().requires_grad


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


def test_max_gradient_at_nan_over_one_element():
    x = np.array([[1.0, np.nan, 2.0]], np.float32)
    tj, pt = _grads(lambda a: a.amax(0), lambda a: a.amax(0), x)
    np.testing.assert_array_equal(tj[0], pt[0])


COMPARISONS = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
               "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b}


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int32", "int64", "uint64", "bool"])
def test_comparison_with_python_scalar_outside_the_dtype_compares_values(dtype):
    """`uint8_tensor == 300` is all False and `uint8_tensor < 300` all True: a Python int outside the dtype's range is
    compared by value, never wrapped into the dtype (NumPy 2's rule; PyTorch 2.13 wraps 300 to 44 for uint8, and
    2**31 to -2**31 for int32: a deliberate difference, see the README). Float scalars compare by value as in
    PyTorch. Both operand orders; the expected values are Python's comparisons of the numbers."""
    lo, hi = (0, 1) if dtype == "bool" else (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    values = [lo, hi, 0, 1] if dtype == "bool" else [lo, hi, 0, 1, 44, (lo + hi) // 2]
    scalars = [hi + 1, lo - 1, 44 + 256, 2 ** 31, -2 ** 63, 2 ** 64 - 1, 2.5, -0.5, math.nan, hi]
    scalars = [s for s in scalars if isinstance(s, float) or -2 ** 63 <= s < 2 ** 64]   # (others: OverflowError)
    x = Tensor(np.array(values, dtype))
    checks = [(s, fn, reverse) for s in scalars for name, fn in COMPARISONS.items()
              for reverse in ((False,) if name in ("eq", "ne") else (False, True))]
    # each comparison is one bit of an int64 code (a few fused kernels instead of one per comparison)
    codes, expected = [], []
    for start in range(0, len(checks), 62):
        code, want = None, np.zeros(len(values), np.int64)
        for bit, (s, fn, reverse) in enumerate(checks[start:start + 62]):
            result = fn(s, x) if reverse else fn(x, s)
            term = result.cast("int64") * (1 << bit)
            code = term if code is None else code + term
            want += np.array([fn(s, v) if reverse else fn(v, s) for v in values], np.int64) << bit
        codes.append(code)
        expected.append(want)
    Tensor.realize_all(*codes)
    np.testing.assert_array_equal(np.stack([c.numpy() for c in codes]), np.stack(expected))


@pytest.mark.parametrize("op", ["max", "min", "argmax", "argmin"])
def test_reduce_without_identity_over_empty_dim_raises_like_torch(op):
    """max/min/argmax/argmin over a dim of size 0 raise IndexError, like PyTorch (amax/amin for max/min with a dim);
    max()/min() of an empty tensor RuntimeError, argmax()/argmin() IndexError. Over a non-empty dim of an empty
    tensor the result is empty."""
    for shape, dim in (((2, 0), 1), ((0, 3), 0), ((0,), -1), ((3, 0, 2), None), ((2, 0), 0)):
        x = np.zeros(shape, np.float32)
        try:
            expected = getattr(torch.tensor(x), op)(**({} if dim is None else {"dim": dim}))
        except (IndexError, RuntimeError) as e:
            with pytest.raises(type(e), match=op):
                getattr(Tensor(x), op)(dim=dim)
            continue
        actual = getattr(Tensor(x), op)(dim=dim)
        if dim is not None and op in ("max", "min"):   # (values, indices), like torch
            actual, expected = actual.values, expected.values
        assert actual.shape == tuple(expected.shape) and actual.numpy().size == 0


@pytest.mark.parametrize("shape,dim,correction", [((), 0, 0), ((3,), 0, 1), ((2, 3), 1, 0), ((2, 3), None, 1)])
def test_std_gradient_where_the_variance_is_zero(shape, dim, correction):
    """issue 8 item 7's kind: PyTorch's std passes gradient 0 where the std is 0 (every element equal), not NaN."""
    x = np.full(shape, 1.5, np.float32)
    if len(shape) == 2:
        x[1] = [1.0, 2.0, 4.0]   # one row with a spread, one without
    tj, pt = _grads(lambda a: a.std(dim=dim, correction=correction), lambda a: a.std(dim=dim, correction=correction), x)
    np.testing.assert_allclose(tj[0], pt[0], rtol=1e-5)   # (x - mean: a float32 subtraction with cancellation)
