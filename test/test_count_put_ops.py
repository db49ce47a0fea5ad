"""bincount, histc, masked_scatter(_) and put(_) (Tensor methods and torch.NAME in tinyjit.pytorch) against torch
2.13 CPU: values, result dtypes, gradients where torch has them, and torch's error classes, on CPU and CL."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyjit.pytorch as tj
from tinyjit import Tensor, dtypes


def same(ours, theirs, atol=1e-6, rtol=1e-6):
    theirs = theirs.detach().numpy()
    got = ours.numpy()
    assert got.shape == theirs.shape, (got.shape, theirs.shape)
    assert str(got.dtype) == str(theirs.dtype), (got.dtype, theirs.dtype)
    np.testing.assert_allclose(got.astype(np.float64), theirs.astype(np.float64), atol=atol, rtol=rtol)


def raises_like(call_torch, call_ours):
    """Both calls raise; ours an exception of the class torch's has (or a subclass)."""
    with pytest.raises(Exception) as theirs:
        call_torch()
    with pytest.raises(type(theirs.value)):
        call_ours()


# ---- bincount ----

def test_bincount_counts_like_torch(device):
    for dtype in ("uint8", "int8", "int16", "int32", "int64"):
        values = np.array([3, 0, 3, 7, 1, 3, 0], dtype=dtype)
        for minlength in (0, 2, 12) if dtype == "int64" else (0,):   # minlength below and above the largest value
            same(Tensor(values).bincount(minlength=minlength), torch.bincount(torch.tensor(values),
                                                                              minlength=minlength))
    same(tj.bincount(Tensor([5])), torch.bincount(torch.tensor([5])))


def test_bincount_weights_dtypes_and_empty(device):
    """Weights' sums are float32 for float32 weights and float64 for every other dtype (torch); an empty input
    gives int64 zeros of length minlength, weights or not."""
    values = np.array([2, 0, 2, 5, 1], dtype=np.int64)
    raw = np.array([0.5, -1.25, 2.0, 3.0, 1.0])
    for wdtype in ("float32", "float64", "float16", "int32", "int64", "bool", "uint8"):
        w = raw.astype(wdtype)
        for minlength in (0, 9) if wdtype == "float32" else (0,):
            same(Tensor(values).bincount(Tensor(w), minlength), torch.bincount(torch.tensor(values),
                                                                              torch.tensor(w), minlength))
    empty = np.zeros(0, dtype=np.int64)
    for minlength in (0, 3):
        for weights in (None, np.zeros(0, np.float32)):
            ours = Tensor(empty).bincount(None if weights is None else Tensor(weights), minlength=minlength)
            same(ours, torch.bincount(torch.tensor(empty), None if weights is None else torch.tensor(weights),
                                      minlength=minlength))


def test_bincount_gradient_reaches_the_weights():
    """torch has no bincount gradient (backward raises); here the weights get the one-hot's: each weight the
    gradient of its value's bin."""
    weights = Tensor([0.5, 1.0, 2.0, 4.0], requires_grad=True)
    out = Tensor([1, 3, 1, 0]).bincount(weights, minlength=5)
    (out * Tensor([1.0, 10.0, 100.0, 1000.0, 1e4])).sum().backward()
    np.testing.assert_allclose(weights.grad.numpy(), [10.0, 1000.0, 10.0, 1.0])


def test_bincount_errors_like_torch():
    good = np.array([1, 2], dtype=np.int64)
    cases = [
        lambda m: m.tensor([1, -2]).bincount(),                    # negative value: RuntimeError
        lambda m: m.tensor([[1, 2]]).bincount(),                   # 2-D
        lambda m: m.tensor(3).bincount(),                          # 0-d
        lambda m: m.tensor([1.0, 2.0]).bincount(),                 # float: NotImplementedError
        lambda m: m.tensor([True, False]).bincount(),              # bool
        lambda m: m.tensor(good).bincount(minlength=-1),
        lambda m: m.tensor(good).bincount(m.ones(3)),              # weights of another length
        lambda m: m.tensor(good).bincount(m.ones(1, 2)),           # 2-D weights
    ]
    for case in cases:
        raises_like(lambda: case(torch), lambda: case(tj))
    with pytest.raises(RuntimeError, match="non-negative"):
        Tensor([4, -1, 2]).bincount()


# ---- histc ----

def test_histc_values_edges_nan_and_range_like_torch(device):
    """Values exactly on min, max and bin edges, outside the range, NaN (never counted), and the data's range
    when min == max (widened by 1 when the data is constant or empty)."""
    data = np.array([0.0, 1.0, 2.0, 3.0, 4.0, np.nan, 5.0, -1.0, 0.1, 0.2, 0.3, 2.5, -0.0, np.inf, -np.inf],
                    dtype=np.float32)
    ranged = [(4, 0, 4), (10, 0, 1), (7, -0.3, 1.3), (3, 1, 2), (1, 0, 4), (5, 2.5, 2.5 + 1e-3)]
    for bins, low, high in ranged:
        same(Tensor(data).histc(bins, low, high), torch.histc(torch.tensor(data), bins, low, high))
    finite = data[np.isfinite(data)]
    for values in (finite, np.full(4, 2.0, np.float32), np.zeros(0, np.float32), finite.reshape(3, 4)):
        same(tj.histc(Tensor(values), bins=4), torch.histc(torch.tensor(values), bins=4))
    same(tj.histc(Tensor(finite)), torch.histc(torch.tensor(finite)))   # the default 100 bins
    spread = np.linspace(-1, 2, 31, dtype=np.float32)
    same(Tensor(spread).histc(bins=7, min=1.5, max=1.5), torch.histc(torch.tensor(spread), 7, 1.5, 1.5))


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_histc_keeps_the_float_dtype(dtype):
    data = np.linspace(-2, 3, 41).astype(dtype)
    same(Tensor(data).histc(9, -1, 2), torch.histc(torch.tensor(data), 9, -1, 2))
    same(Tensor(data).histc(6), torch.histc(torch.tensor(data), 6))


def test_histc_is_not_differentiable_and_errors_like_torch():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    assert not x.histc(3).requires_grad
    cases = [
        lambda m: m.tensor([1, 2, 3]).histc(3),                          # int input: NotImplementedError
        lambda m: m.tensor([1.0, 2.0]).histc(0),
        lambda m: m.tensor([1.0, 2.0]).histc(-1),
        lambda m: m.tensor([1.0, 2.0]).histc(2.5),                       # TypeError
        lambda m: m.tensor([1.0, 2.0]).histc(3, 3, 1),                   # min > max
        lambda m: m.tensor([1.0, 2.0]).histc(3, 0, float("inf")),
        lambda m: m.tensor([1.0, 2.0]).histc(3, float("nan"), 1),
        lambda m: m.tensor([1.0, float("nan")]).histc(3),                # the data's range is NaN
        lambda m: m.tensor([1.0, float("inf")]).histc(3),
    ]
    for case in cases:
        raises_like(lambda: case(torch), lambda: case(tj))


# ---- masked_scatter ----

def _masked_scatter_case(lib, base, mask, source, inplace=False):
    if lib is torch:
        base = torch.tensor(base, requires_grad=True)
        source = torch.tensor(source, requires_grad=True)
        mask = torch.tensor(mask)
    else:
        base, source, mask = Tensor(base, requires_grad=True), Tensor(source, requires_grad=True), Tensor(mask)
    out = base.masked_scatter(mask, source)
    weights = np.arange(1, int(np.prod(out.shape)) + 1, dtype=np.float32).reshape(tuple(out.shape))
    (out * (torch.tensor(weights) if lib is torch else Tensor(weights))).sum().backward()
    return out, base.grad, source.grad


def test_masked_scatter_values_and_gradients_like_torch():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((2, 3, 4)).astype(np.float32)
    cases = [
        (rng.random((2, 3, 4)) < 0.5, (30,)),     # source with more entries than needed
        (rng.random((3, 1)) < 0.6, (2, 3, 5)),    # mask broadcasts over self's first and last dims
        (rng.random((4,)) < 0.5, (4, 6)),         # a 2-D source, read row-major
        (np.ones((2, 3, 4), bool), (24,)),        # exactly enough entries
        (np.zeros((1,), bool), (3,)),
        (rng.random((5, 1, 3, 1)) < 0.5, (200,)),  # the result is larger than self (broadcast self)
    ]
    for mask, source_shape in cases:
        source = rng.standard_normal(source_shape).astype(np.float32)
        ours = _masked_scatter_case(Tensor, base, mask, source)
        theirs = _masked_scatter_case(torch, base, mask, source)
        for o, t in zip(ours, theirs):
            same(o, t)


def test_masked_scatter_dtypes_views_and_inplace(device):
    for dtype in ("int32", "bool", "float16", "uint8"):
        base = (np.arange(12) % 3).astype(dtype).reshape(3, 4)
        mask = np.array([[True, False, True, True]] * 3) & (np.arange(3)[:, None] != 1)
        source = (np.arange(10) % 2 == 0).astype(dtype) if dtype == "bool" else np.arange(10).astype(dtype)
        same(Tensor(base).masked_scatter(Tensor(mask), Tensor(source)),
             torch.tensor(base).masked_scatter(torch.tensor(mask), torch.tensor(source)))
    # a non-contiguous self (transpose) and source (a strided slice), and masked_scatter_ into a basic view
    base = np.arange(20, dtype=np.float32).reshape(4, 5)
    mask = (np.arange(20).reshape(5, 4) % 3 == 0)
    src = -np.arange(40, dtype=np.float32)
    ours = Tensor(base).T.masked_scatter(Tensor(mask), Tensor(src)[::3])
    same(ours, torch.tensor(base).T.masked_scatter(torch.tensor(mask), torch.tensor(src)[::3]))
    x, y = Tensor(base), torch.tensor(base)
    row_mask = np.array([True, False, True])
    x[1:, ::2].masked_scatter_(Tensor(row_mask), Tensor(src))
    y[1:, ::2].masked_scatter_(torch.tensor(row_mask), torch.tensor(src))
    same(x, y)
    same(tj.masked_scatter(Tensor(base), Tensor(base > 7), Tensor(src)),
         torch.masked_scatter(torch.tensor(base), torch.tensor(base > 7), torch.tensor(src)))


def test_masked_scatter_errors_like_torch_and_leave_self_unchanged():
    base = np.zeros((2, 3), np.float32)
    mask = np.array([True, False, True])
    cases = [
        lambda m: m.tensor(base).masked_scatter(m.tensor(mask), m.arange(3.0)),           # too few entries
        lambda m: m.tensor(base).masked_scatter(m.tensor(mask).int(), m.arange(9.0)),     # not a bool mask
        lambda m: m.tensor(base).masked_scatter(m.tensor(mask), m.arange(9)),             # int64 source
        lambda m: m.tensor(base).masked_scatter(m.ones(4, dtype=m.bool), m.arange(9.0)),  # no broadcast
        lambda m: m.tensor(base).masked_scatter(m.tensor(mask), 1.0),                     # not a tensor
        lambda m: m.tensor(base).masked_scatter_(m.ones(3, 2, 3, dtype=m.bool), m.arange(20.0)),
    ]
    for case in cases:
        raises_like(lambda: case(torch), lambda: case(tj))
    x = Tensor(np.ones((2, 3), np.float32))
    with pytest.raises(RuntimeError, match="number of ones"):
        x.masked_scatter_(Tensor(mask) | True, Tensor([1.0, 2.0]))
    np.testing.assert_array_equal(x.numpy(), np.ones((2, 3)))


# ---- put ----

def _put_case(lib, base, index, source, accumulate):
    make = torch.tensor if lib is torch else Tensor
    base_t = make(base, requires_grad=True) if base.dtype.kind == "f" else make(base)
    source_t = make(source, requires_grad=True) if source.dtype.kind == "f" else make(source)
    index_t = make(index)
    out = lib.put(base_t, index_t, source_t, accumulate=accumulate)
    if base.dtype.kind != "f":
        return (out,)
    weights = np.arange(1, base.size + 1, dtype=base.dtype).reshape(base.shape)
    (out * make(weights)).sum().backward()
    return out, base_t.grad, source_t.grad


def test_put_values_and_gradients_like_torch():
    """Distinct indices (negative ones too) with and without accumulate, duplicates with accumulate: values and
    both gradients; duplicates without it: the values (torch's winner is the last entry on CPU as here)."""
    base = np.arange(12, dtype=np.float32).reshape(3, 4) / 4
    cases = [
        (np.array([0, 11, -1, 5, -12]), False, (5,)),          # -1 and 11 name one place: duplicates
        (np.array([[3, -2], [7, 0]]), False, (4,)),             # 2-D index, 1-D source
        (np.array([0, 0, 5, -7, 5, 0]), True, (2, 3)),          # duplicates add
        (np.array([2, 9, -3]), True, (3,)),
        (np.zeros(0, np.int64), False, (0,)),
    ]
    for index, accumulate, source_shape in cases:
        source = (np.arange(int(np.prod(source_shape)), dtype=np.float32).reshape(source_shape) - 2) * 1.5
        ours, theirs = _put_case(tj, base, index, source, accumulate), _put_case(torch, base, index, source,
                                                                                accumulate)
        distinct = len(set((index.reshape(-1) % base.size).tolist())) == index.size
        for o, t in zip(ours, theirs) if accumulate or distinct else zip(ours[:2], theirs[:2]):
            same(o, t)
        if not accumulate and not distinct:   # the last duplicate wins here; only it gets the gradient
            assert ours[2].numpy()[0] == 0 and ours[2].numpy()[2] == theirs[2][2].item()


def test_put_dtypes_zero_dim_and_inplace(device):
    for dtype in ("int32", "int8", "bool", "float16"):
        base = (np.arange(6) % 2).astype(dtype)
        source = np.array([1, 1, 100, 1]).astype(dtype) if dtype != "bool" else np.array([1, 1, 0, 1], bool)
        index = np.array([0, 0, 3, -1])
        for accumulate in (False, True):
            ours = Tensor(base).put(Tensor(index), Tensor(source), accumulate=accumulate)
            same(ours, torch.tensor(base).put(torch.tensor(index), torch.tensor(source), accumulate=accumulate))
    same(Tensor(np.float32(5)).put(Tensor([0]), Tensor([2.0])), torch.tensor(5.0).put(torch.tensor([0]),
                                                                                   torch.tensor([2.0])))
    x, y = Tensor(np.zeros((3, 4), np.float32)), torch.zeros(3, 4)
    returned = x[:, 1:3].put_(Tensor([0, 3, 5]), Tensor([1.0, 2.0, 3.0]))
    y[:, 1:3].put_(torch.tensor([0, 3, 5]), torch.tensor([1.0, 2.0, 3.0]))
    same(x, y)
    same(returned, y[:, 1:3])


def test_put_errors_like_torch_and_leave_self_unchanged():
    cases = [
        lambda m: m.zeros(2, 3).put(m.tensor([0, 6]), m.tensor([1.0, 2.0])),              # out of range
        lambda m: m.zeros(2, 3).put(m.tensor([0, -7]), m.tensor([1.0, 2.0])),
        lambda m: m.zeros(2, 3).put(m.tensor([0, 6]), m.tensor([1.0, 2.0]), accumulate=True),
        lambda m: m.zeros(2, 3).put(m.tensor([0, 1]), m.tensor([1.0, 2.0, 3.0])),         # counts differ
        lambda m: m.zeros(2, 3).put(m.tensor([0, 1], dtype=m.int32), m.tensor([1.0, 2.0])),
        lambda m: m.zeros(2, 3).put(m.tensor([0.0, 1.0]), m.tensor([1.0, 2.0])),
        lambda m: m.zeros(2, 3).put(m.tensor([0, 1]), m.tensor([1, 2])),                  # source dtype
        lambda m: m.zeros(2, 3).put(m.tensor([0, 1]), 1.0),
        lambda m: m.zeros(0).put(m.tensor([0]), m.tensor([1.0])),                        # into an empty tensor
    ]
    for case in cases:
        raises_like(lambda: case(torch), lambda: case(tj))
    x = Tensor(np.ones(6, np.float32))
    with pytest.raises(IndexError, match="out of bounds"):
        x.put_(Tensor([1, 6]), Tensor([5.0, 5.0]))
    np.testing.assert_array_equal(x.numpy(), np.ones(6))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 9), max_size=12), st.integers(0, 12),
       st.lists(st.integers(-12, 11), min_size=1, max_size=6))
def test_bincount_and_put_accumulate_agree_with_torch(values, minlength, index):
    """Property: bincount equals torch's for any small list; put with accumulate on a 12-entry tensor too."""
    values = np.array(values, dtype=np.int64)
    same(Tensor(values).bincount(minlength=minlength), torch.bincount(torch.tensor(values), minlength=minlength))
    index = np.array(index, dtype=np.int64)
    source = np.arange(1, index.size + 1, dtype=np.int64)
    same(Tensor(np.zeros(12, np.int64)).put(Tensor(index), Tensor(source), accumulate=True),
         torch.zeros(12, dtype=torch.int64).put(torch.tensor(index), torch.tensor(source), accumulate=True))
    assert Tensor(values).bincount().dtype == dtypes.int64
