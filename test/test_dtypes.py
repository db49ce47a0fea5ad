"""Dtypes: the promotion table against PyTorch for every pair and every Python scalar kind, and casts.

Documented differences from PyTorch (chosen, not accidental):
- a Python int (alone, or meeting a bool tensor) becomes the default int, int32 (PyTorch: int64);
- a 0-d tensor promotes like any tensor (NumPy 2); PyTorch lets a dimensioned tensor's dtype win in its category;
- uint16/uint32/uint64 promote like NumPy among ints (PyTorch refuses to promote them); with a float, the float
  wins as for every int (PyTorch's rule; NumPy would widen int32 + float16 to float64);
- float -> int conversions truncate toward zero; into a narrow int (8/16 bits, or unsigned) the value then wraps,
  like NumPy. Out-of-range conversions into int32/int64 are undefined, as in C and PyTorch.

Dtype checks need no kernel (the dtype of a lazy result is known before it runs), so the full tables are cheap;
values are checked on a sample.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tinyjit import Tensor, dtypes

# expected values are computed with NumPy casts that overflow on purpose (wrapping, inf)
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                                        "ignore:divide by zero:RuntimeWarning", "ignore:invalid value:RuntimeWarning")

ALL = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
       "float64"]
TORCH_PROMOTES = [d for d in ALL if d not in ("uint16", "uint32", "uint64")]
KIND = {d: np.dtype(d).kind for d in ALL}


def lazy(dtype: str, shape=(2,)) -> Tensor:
    """A tensor of `dtype` that never needs to run (dtype checks only)."""
    return Tensor.zeros(*shape, dtype=dtype)


def expected_promotion(a: str, b: str) -> str:
    if a in TORCH_PROMOTES and b in TORCH_PROMOTES:
        return str(torch.promote_types(getattr(torch, a), getattr(torch, b))).replace("torch.", "")
    # uint16/32/64 (no promotion in torch): the float if there is one, else NumPy's int promotion
    floats = [d for d in (a, b) if KIND[d] == "f"]
    if floats:
        return max(floats, key=lambda d: np.dtype(d).itemsize)
    return np.promote_types(a, b).name


@pytest.mark.parametrize("a", ALL)
def test_promotion_table(a):
    for b in ALL:
        want = expected_promotion(a, b)
        x, y = lazy(a), lazy(b)
        assert (x + y).dtype.name == want, f"{a} + {b}"
        assert (y * x).dtype.name == want, f"{b} * {a}"
        assert x.maximum(y).dtype.name == want, f"maximum({a}, {b})"
        assert Tensor.ones(2, dtype="bool").where(x, y).dtype.name == want, f"where(c, {a}, {b})"
        assert Tensor.cat([x, y]).dtype.name == want, f"cat({a}, {b})"
        # true division is float math: ints and bools become the default float
        assert (x / y).dtype.name == (want if KIND[want] == "f" else "float32"), f"{a} / {b}"
        for cmp in (x < y, x == y, x >= y, x != y):
            assert cmp.dtype == dtypes.bool
        if KIND[want] in "iu":
            assert (x // y).dtype.name == want and (x % y).dtype.name == want
            assert (x & y).dtype.name == want and (x | y).dtype.name == want and (x ^ y).dtype.name == want
        if want != "bool":
            assert (x - y).dtype.name == want


@pytest.mark.parametrize("a,b", [(a, b) for a, b in itertools.combinations(TORCH_PROMOTES, 2)])
def test_promotion_matches_torch_results(a, b):
    """The same pairs through torch's own ops (not only promote_types)."""
    ta, tb = torch.zeros(2, dtype=getattr(torch, a)), torch.zeros(2, dtype=getattr(torch, b))
    x, y = lazy(a), lazy(b)
    assert (x + y).dtype.name == str((ta + tb).dtype)[6:]
    assert (x / y).dtype.name == str((ta / tb).dtype)[6:]
    assert x.maximum(y).dtype.name == str(torch.maximum(ta, tb).dtype)[6:]


SCALARS = [True, 3, -2, 2.5]


def _torch_scalar_result(dtype: str, scalar, op) -> str:
    """torch's result dtype for `tensor op scalar`."""
    if dtype in TORCH_PROMOTES:
        return str(op(torch.zeros(2, dtype=getattr(torch, dtype)), scalar).dtype)[6:]
    # uint16/32/64: a bool or int scalar keeps the dtype, a float scalar gives the default float
    result = op(np.zeros(2, dtype), abs(scalar)).dtype   # only to classify the op: comparison or true division
    if result == np.bool_:
        return "bool"
    return "float32" if isinstance(scalar, float) or result.kind == "f" else dtype


@pytest.mark.parametrize("dtype", ALL)
def test_scalar_promotion(dtype):
    ops = {"add": lambda a, s: a + s, "mul": lambda a, s: a * s, "radd": lambda a, s: s + a,
           "rmul": lambda a, s: s * a, "div": lambda a, s: a / s, "rdiv": lambda a, s: s / a,
           "lt": lambda a, s: a < s, "ge": lambda a, s: s >= a, "eq": lambda a, s: a == s}
    if dtype != "bool":
        ops |= {"sub": lambda a, s: a - s, "rsub": lambda a, s: s - a}
    for scalar in SCALARS:
        for name, op in ops.items():
            if name in ("sub", "rsub") and isinstance(scalar, bool):
                continue   # torch refuses bool subtraction
            got = op(lazy(dtype), scalar).dtype.name
            assert got == _torch_scalar_result(dtype, scalar, op), f"{dtype} {name} {scalar!r}"
        # numpy scalars behave like Python scalars
        assert (lazy(dtype) + np.float64(2.5)).dtype.name == _torch_scalar_result(dtype, 2.5, lambda a, s: a + s)
        assert (lazy(dtype) * np.int64(3)).dtype.name == _torch_scalar_result(dtype, 3, lambda a, s: a * s)


def test_zero_dim_tensors_promote_like_tensors():
    # NumPy 2 semantics (documented above): a 0-d int64 tensor (a Python int's default) widens an int8 tensor
    assert (lazy("int8") + Tensor(5)).dtype == dtypes.int64
    assert (lazy("float16") + Tensor(5.0)).dtype == dtypes.float32
    assert (lazy("float16") + Tensor(5.0, dtype="float16")).dtype == dtypes.float16


@pytest.mark.parametrize("dtype", ALL)
def test_math_and_reduction_dtypes(dtype):
    x = lazy(dtype, (2, 3))
    fl = dtype if KIND[dtype] == "f" else "float32"
    for fn in ("exp", "log", "sqrt", "sin", "sigmoid", "tanh", "exp2", "rsqrt", "gelu", "erf"):
        assert getattr(x, fn)().dtype.name == fl, fn
    assert x.softmax(-1).dtype.name == fl and x.mean().dtype.name == fl and x.var().dtype.name == fl
    summed = "int64" if KIND[dtype] in "biu" and dtype != "uint64" else dtype
    assert x.sum().dtype.name == summed and x.sum(0).dtype.name == summed and x.cumsum(1).dtype.name == summed
    assert x.prod().dtype.name == ("int64" if KIND[dtype] in "biu" else dtype)
    assert x.max().dtype.name == dtype and x.min(1).values.dtype.name == dtype and x.amin(1).dtype.name == dtype
    assert x.argmax().dtype == dtypes.int64 and x.argmin(0).dtype == dtypes.int64
    assert x.any().dtype == dtypes.bool and x.all(1).dtype == dtypes.bool
    assert x.sum(dtype="float64").dtype == dtypes.float64
    if dtype in TORCH_PROMOTES:
        t = torch.zeros(2, 3, dtype=getattr(torch, dtype))
        assert x.sum().dtype.name == str(t.sum().dtype)[6:]
        assert x.cumsum(1).dtype.name == str(t.cumsum(1).dtype)[6:]
        assert x.prod().dtype.name == str(t.prod().dtype)[6:]
        if dtype != "bool":
            assert x.abs().dtype.name == str(t.abs().dtype)[6:]


def test_cast_method_names():
    x = lazy("int16")
    assert x.float().dtype == dtypes.float32 and x.half().dtype == dtypes.float16
    assert x.double().dtype == dtypes.float64 and x.int().dtype == dtypes.int32
    assert x.long().dtype == dtypes.int64 and x.bool().dtype == dtypes.bool
    for spelling in ("uint8", dtypes.uint8, np.uint8, np.dtype("uint8"), torch.uint8, "u1"):
        assert x.cast(spelling).dtype == dtypes.uint8
    assert x.cast(float).dtype == dtypes.float32 and x.cast(int).dtype == dtypes.int64
    assert x.cast(bool).dtype == dtypes.bool
    assert dtypes.half == dtypes.float16 and dtypes.long == dtypes.int64


# ---------------------------------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------------------------------

def _np(a: Tensor, dtype: str):
    return np.array(a, dtype=dtype)


@pytest.mark.parametrize("a,b,va,vb", [
    ("int8", "uint8", [-100, 127, -128], [200, 255, 0]),
    ("uint8", "int16", [255, 0, 7], [-300, 1000, -7]),
    ("bool", "int8", [True, False, True], [-5, 7, 127]),
    ("int32", "float16", [70000, -3, 2049], [0.5, -1.5, 1.0]),
    ("int64", "float32", [2 ** 40, -5, 16777217], [0.25, 2.0, 0.0]),
    ("float16", "float64", [0.1, 65504, -2.5], [1e-8, 1.0, 3.3]),
    ("uint32", "int8", [4000000000, 5, 0], [-1, -128, 3]),
    ("uint16", "uint8", [65535, 300, 1], [255, 1, 0]),
    ("bool", "float16", [True, False, True], [0.5, -2.0, 65504]),
    ("int16", "int32", [-32768, 12345, 1], [2 ** 31 - 1, -5, 40000]),
])
def test_mixed_dtype_values(a, b, va, vb):
    x, y = Tensor(np.array(va, a)), Tensor(np.array(vb, b))
    out = expected_promotion(a, b)
    wa, wb = np.array(va, a).astype(out), np.array(vb, b).astype(out)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal((x + y).numpy(), wa + wb)
        np.testing.assert_array_equal((x * y).numpy(), wa * wb)
        np.testing.assert_array_equal(x.maximum(y).numpy(), np.maximum(wa, wb))
        np.testing.assert_array_equal((x < y).numpy(), wa < wb)
    assert (x + y).dtype.name == out


def test_scalar_values_wrap_and_promote():
    u8 = Tensor(np.array([3, 250, 0], np.uint8))
    # an int scalar takes the tensor's dtype (and wraps), like torch
    np.testing.assert_array_equal((u8 * 300).numpy(), (torch.tensor([3, 250, 0], dtype=torch.uint8) * 300).numpy())
    np.testing.assert_array_equal((u8 + (-3)).numpy(), (torch.tensor([3, 250, 0], dtype=torch.uint8) + (-3)).numpy())
    # a float scalar makes it float math
    np.testing.assert_allclose((u8 * 0.5).numpy(), np.array([1.5, 125, 0], np.float32))
    i8 = Tensor(np.array([100, -100], np.int8))
    np.testing.assert_array_equal((i8 + 100).numpy(), np.array([100, -100], np.int8) + np.int8(100))
    np.testing.assert_array_equal((i8 < 2.5).numpy(), [False, True])
    b = Tensor([True, False])
    np.testing.assert_array_equal((b + True).numpy(), [True, True])
    np.testing.assert_array_equal((b * 3).numpy(), [3, 0])
    np.testing.assert_allclose((b / 2).numpy(), [0.5, 0.0])
    h = Tensor(np.array([1.0, 2049.0], np.float16))
    assert (h * 3).dtype == dtypes.float16
    np.testing.assert_array_equal((h * 3).numpy(), np.array([1.0, 2049.0], np.float16) * np.float16(3))


# sources: values that are exact in their dtype; int/float values stay in the int32 range
SOURCE_VALUES = {
    "bool": [True, False, True, False],
    "int8": [0, 1, -1, 127, -128, 100, -7, 42],
    "int16": [0, -1, 300, -300, 32767, -32768, 255, 256],
    "int32": [0, -1, 70000, -70000, 2 ** 31 - 1, -2 ** 31, 65504, 2049],
    "int64": [0, -1, 2 ** 40 + 3, -(2 ** 40), 2 ** 31, 16777217, 255, -129],
    "uint8": [0, 1, 255, 128, 127, 200, 7, 42],
    "uint16": [0, 65535, 300, 256, 255, 32768, 1, 2049],
    "uint32": [0, 2 ** 32 - 1, 70000, 2 ** 31, 255, 256, 65505, 1],
    "uint64": [0, 2 ** 40, 2 ** 32, 255, 256, 70000, 1, 3],
    "float16": [0.0, -0.0, 0.5, -1.5, 2.5, -100.9, 65504.0, 300.7],
    "float32": [0.0, -0.5, 1.7, -1.7, 2.5, -128.9, 70000.9, 1e9],
    "float64": [0.0, -2.5, 255.5, -255.5, 1e-40, 3.4e38, 65520.0, -2e9],
}


def expected_cast(arr: np.ndarray, dst: str) -> np.ndarray:
    """The documented semantics, computed with NumPy."""
    if dst == "bool":
        return arr != 0
    if arr.dtype.kind == "f" and KIND[dst] in "iu":
        with np.errstate(all="ignore"):
            return np.trunc(arr).astype(np.int64).astype(dst)   # truncate, then wrap into narrow ints
    with np.errstate(all="ignore"):
        return arr.astype(dst)


def _int_range_ok(arr: np.ndarray, dst: str) -> np.ndarray:
    """Elements whose conversion is defined: float -> int32/int64 only inside the target's range."""
    if arr.dtype.kind != "f" or dst not in ("int32", "int64", "uint64"):
        return np.ones(arr.shape, bool)
    info = np.iinfo("int64" if dst == "uint64" else dst)
    return (arr > info.min) & (arr < info.max)


@pytest.mark.parametrize("src", ALL)
def test_cast_every_pair(src):
    """src -> every dst in one kernel: each cast is widened back to float64 (exact for every value here) and
    the results are stacked."""
    arr = np.array(SOURCE_VALUES[src], dtype=src)
    x = Tensor(arr)
    outs = Tensor.stack([x.cast(dst).cast("float64") for dst in ALL]).numpy()
    for dst, got in zip(ALL, outs):
        want = expected_cast(arr, dst).astype(np.float64)
        ok = _int_range_ok(arr, dst)
        np.testing.assert_array_equal(got[ok], want[ok], err_msg=f"{src} -> {dst}")


@pytest.mark.parametrize("dst", ALL)
def test_cast_stores_each_dtype(dst):
    """The cast result realized in its own dtype's buffer (bool bytes, half bits, 64-bit ints)."""
    arr = np.array([0.0, -1.5, 2.7, 100.2, -0.0, 65.9], np.float32)
    out = Tensor(arr).cast(dst)
    got = out.numpy()
    assert got.dtype == np.dtype(dst) and out.dtype.name == dst
    np.testing.assert_array_equal(got, expected_cast(arr, dst))
    if dst in TORCH_PROMOTES and dst != "uint8":
        np.testing.assert_array_equal(got, torch.from_numpy(arr).to(getattr(torch, dst)).numpy())


def test_cast_special_floats():
    arr = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 70000.0, 65519.0, 65520.0], np.float32)
    x = Tensor(arr)
    np.testing.assert_array_equal(x.bool().numpy(), arr != 0)    # nan is truthy
    np.testing.assert_array_equal(x.half().numpy(), arr.astype(np.float16))   # overflow -> inf, round to even
    np.testing.assert_array_equal(x.double().numpy(), arr.astype(np.float64))
    np.testing.assert_array_equal(np.signbit(x.half().numpy()), np.signbit(arr.astype(np.float16)))
    # half -> float keeps every value, subnormals included
    h = np.array([6e-8, -6e-5, 65504, np.inf, 0.1], np.float16)
    np.testing.assert_array_equal(Tensor(h).float().numpy(), h.astype(np.float32))


def test_float_to_int_truncates_toward_zero():
    arr = np.array([2.9, -2.9, 0.5, -0.5, 1e6 + 0.7, -7.999], np.float32)
    for dst in ("int32", "int64", "int16", "int8"):
        np.testing.assert_array_equal(Tensor(arr).cast(dst).numpy(), np.trunc(arr).astype(np.int64).astype(dst))
    np.testing.assert_array_equal(Tensor(arr).int().numpy(), torch.from_numpy(arr).int().numpy())
    np.testing.assert_array_equal(Tensor(arr).long().numpy(), torch.from_numpy(arr).long().numpy())
    # unsigned targets wrap the truncated value
    np.testing.assert_array_equal(Tensor(arr).cast("uint64").numpy(), np.trunc(arr).astype(np.int64).astype("uint64"))
    np.testing.assert_array_equal(Tensor(arr).cast("uint32").numpy(), np.trunc(arr).astype(np.int64).astype("uint32"))


def test_bitcast():
    arr = np.array([1.0, -2.5, 0.0], np.float32)
    np.testing.assert_array_equal(Tensor(arr).bitcast("int32").numpy(), arr.view(np.int32))
    np.testing.assert_array_equal(Tensor(arr.view(np.uint32)).bitcast("float32").numpy(), arr)
    with pytest.raises(TypeError, match="bitcast"):
        Tensor(arr).bitcast("int16")
