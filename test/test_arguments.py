"""Bad arguments get a clear error at the call, of the class PyTorch raises, never a silent fix-up; and host
memory stays proportional to the work (issue 9, items 9-11). Environment variables: test_env.py."""
import math
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyjit import Tensor, nn
from tinyjit.device import DeviceError


def same_error(tinyjit_call, torch_call, *words):
    """Both calls raise, tinyjit's error is an instance of torch's class, and its message has `words`."""
    with pytest.raises(Exception) as torch_error:
        torch_call()
    with pytest.raises(type(torch_error.value)) as error:
        tinyjit_call()
    for word in words:
        assert word in str(error.value), (word, str(error.value))
    return str(error.value)


X = np.arange(6, dtype=np.float32).reshape(2, 1, 3)


# ---- dims: duplicates, order, negative sizes ----

@pytest.mark.parametrize("op", ["sum", "mean", "any", "all", "std", "var", "logsumexp", "amax", "amin"])
@pytest.mark.parametrize("dims", [(0, 0), (0, -3), (2, 1, 2)])
def test_duplicate_dims_in_reductions(op, dims):
    mine, theirs = Tensor(X), torch.tensor(X)
    same_error(lambda: getattr(mine, op)(dims), lambda: getattr(theirs, op)(dims), "appears multiple times",
               str(X.shape))


def test_duplicate_dims_in_movement_ops():
    mine, theirs = Tensor(X), torch.tensor(X)
    same_error(lambda: mine.flip(0, 0), lambda: theirs.flip(0, 0), "flip", "appears multiple times")
    same_error(lambda: mine.flip((1, -2)), lambda: theirs.flip((1, -2)), "flip", "appears multiple times")
    same_error(lambda: mine.squeeze((1, 1)), lambda: theirs.squeeze((1, 1)), "squeeze", "appears multiple times")
    same_error(lambda: mine.permute(0, 2, 0), lambda: theirs.permute(0, 2, 0), "permute")
    same_error(lambda: mine.permute(0, 1), lambda: theirs.permute(0, 1), "permute")
    np.testing.assert_array_equal(mine.flip(0, 2).numpy(), theirs.flip(0, 2).numpy())
    np.testing.assert_array_equal(mine.flip(()).numpy(), theirs.flip(()).numpy())


def test_flatten_start_after_end():
    mine, theirs = Tensor(X), torch.tensor(X)
    same_error(lambda: mine.flatten(1, 0), lambda: theirs.flatten(1, 0), "flatten", "start_dim")
    same_error(lambda: mine.flatten(-1, 0), lambda: theirs.flatten(-1, 0), "flatten", "start_dim")
    same_error(lambda: mine.flatten(0, 3), lambda: theirs.flatten(0, 3), "flatten")
    for start, end in [(0, 0), (1, 1), (0, -1), (1, 2), (-2, -1)]:
        assert mine.flatten(start, end).shape == tuple(theirs.flatten(start, end).shape)
    same_error(lambda: nn.Flatten(2, 1)(mine), lambda: torch.nn.Flatten(2, 1)(theirs), "flatten")


def test_negative_sizes_in_movement_ops():
    mine, theirs = Tensor(X), torch.tensor(X)
    same_error(lambda: mine.repeat(-1, 1, 1), lambda: theirs.repeat(-1, 1, 1), "repeat", "-1")
    same_error(lambda: mine.split([4, -1], 2), lambda: theirs.split([4, -1], 2), "split", "[4, -1]")
    same_error(lambda: mine.unflatten(2, (-3, -1)), lambda: theirs.unflatten(2, (-3, -1)), "unflatten", "(-3, -1)")
    assert mine.repeat(0, 2, 1).shape == tuple(theirs.repeat(0, 2, 1).shape)
    assert [t.shape for t in mine.split([3, 0], 2)] == [tuple(t.shape) for t in theirs.split([3, 0], 2)]


# ---- module constructors ----

@pytest.mark.parametrize("module,args,kwargs", [
    ("Linear", (-1, 2), {}), ("Linear", (2, -1), {}), ("Linear", (2.5, 2), {}), ("Conv1d", (-1, 2, 3), {}),
    ("Conv2d", (2, -2, 3), {}), ("ConvTranspose2d", (-1, 2, 3), {}), ("Conv2d", (2, 2, -3), {}),
    ("Conv2d", (4, 4, 3), {"groups": 0}), ("Embedding", (-1, 2), {}), ("Embedding", (2, -1), {}),
    ("LayerNorm", (-1,), {}), ("LayerNorm", ((2, -1),), {}), ("BatchNorm1d", (-1,), {}), ("BatchNorm2d", (-4,), {}),
    ("GroupNorm", (2, -2), {}), ("GroupNorm", (0, 4), {}), ("RMSNorm", (-2,), {}),
    ("MultiheadAttention", (8, 0), {}), ("MultiheadAttention", (0, 1), {}),
])
def test_module_sizes_are_checked(module, args, kwargs):
    """The torch error (negative dimension, zero groups or heads, a float size) or a subclass of it, naming the
    module and the argument; "math domain error" before."""
    with pytest.raises(Exception) as torch_error:
        getattr(torch.nn, module)(*args, **kwargs)
    expected = type(torch_error.value)
    if expected is ZeroDivisionError:   # torch's GroupNorm(0, 4) fails in its own modulo
        expected = ValueError
    with pytest.raises(expected, match=f"^{module}: .* must be"):
        getattr(nn, module)(*args, **kwargs)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
def test_zero_sized_modules_work_like_torch():
    torch_linear = torch.nn.Linear(0, 2)
    linear = nn.Linear(0, 2)
    assert linear.weight.shape == tuple(torch_linear.weight.shape) == (2, 0)
    np.testing.assert_array_equal(linear(Tensor.zeros(3, 0)).numpy(), np.zeros((3, 2), np.float32))
    assert nn.Embedding(0, 4).weight.shape == (0, 4)


# ---- dtypes: ops without meaning for a dtype, values that do not fit a kept dtype ----

def test_bool_to_a_bool_power():
    b = np.array([True, False])
    for mine, theirs in [(lambda: Tensor(b) ** Tensor(b), lambda: torch.tensor(b) ** torch.tensor(b)),
                         (lambda: True ** Tensor(b), lambda: True ** torch.tensor(b))]:
        message = same_error(mine, theirs, "pow", "bool")
        assert "negation" not in message
    np.testing.assert_array_equal((Tensor(b) ** True).numpy(), torch.tensor(b) ** True)   # the base, still bool
    assert (Tensor(b) ** True).dtype.name == "bool"
    np.testing.assert_array_equal((Tensor(b) ** 2).numpy(), torch.tensor(b) ** 2)   # int exponents promote
    np.testing.assert_array_equal((2 ** Tensor(b)).numpy(), 2 ** torch.tensor(b))


@pytest.mark.parametrize("op", ["<<", ">>"])
def test_shifts_of_floats_and_bools(op):
    f, b, i = np.ones(2, np.float32), np.array([True, False]), np.array([1, 2], np.int32)
    shift = {"<<": lambda x, y: x << y, ">>": lambda x, y: x >> y}[op]
    for x, y in [(f, 1), (i, 1.5), (b, True), (i, f)]:
        mine = lambda: shift(Tensor(x), Tensor(y) if isinstance(y, np.ndarray) else y)  # noqa: E731
        theirs = lambda: shift(torch.tensor(x), torch.tensor(y) if isinstance(y, np.ndarray) else y)  # noqa: E731
        message = same_error(mine, theirs, "shift")
        assert "CompileError" not in message and "define" not in message
        with pytest.raises(TypeError):   # also a TypeError, like the other dtype errors of tinyjit
            mine()


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "int64"])
def test_shifts_match_torch(device, dtype):
    """Amounts from 0 to past the width, negative ones, tensor amounts and the reversed form, in one kernel per op:
    a shift by a negative amount or the width or more is 0 (or -1 for negative values >>), not undefined."""
    values = np.array([-100, -8, -1, 0, 1, 7, 100], dtype=np.int64)
    values = values[(values >= np.iinfo(dtype).min) & (values <= np.iinfo(dtype).max)].astype(dtype)
    amounts = np.array([-9, -1, 0, 1, 3, 7, 8, 15, 31, 63, 64, 70], dtype=dtype if dtype != "uint8" else "int16")
    x, amount = np.repeat(values, amounts.size), np.tile(amounts, values.size)
    mine, theirs = Tensor(x, device=device), torch.tensor(x)
    for op in ("<<", ">>"):
        shift = {"<<": lambda a, b: a << b, ">>": lambda a, b: a >> b}[op]
        got = shift(mine, Tensor(amount, device=device))
        want = shift(theirs, torch.tensor(amount))
        assert got.dtype.name == str(want.dtype)[len("torch."):]
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=op)
        for k in (-1, 0, 3, 8, 40):
            np.testing.assert_array_equal(shift(mine, k).numpy(), shift(theirs, k).numpy(), err_msg=f"{op} {k}")
    np.testing.assert_array_equal((3 << Tensor(np.arange(4, dtype=np.int32), device=device)).numpy(), 3 << np.arange(4))


@pytest.mark.parametrize("dtype,value", [("uint8", 300), ("uint8", -1), ("int8", 200), ("int8", -129),
                                         ("int32", 2 ** 31), ("int32", math.nan), ("int16", math.inf)])
def test_values_that_do_not_fit_the_kept_dtype(dtype, value):
    """Python values into an int dtype: refused like torch (torch lets -1 into uint8 in tensor() and full() but not
    in pad() or full_like(); here it never fits), instead of wrapping (300 -> 44)."""
    td = getattr(torch, dtype)
    small = np.array([1, 2], dtype=dtype)
    calls = [
        ("Tensor", lambda: Tensor([1, value], dtype=dtype), lambda: torch.tensor([1, value], dtype=td)),
        ("Tensor", lambda: Tensor(value, dtype=dtype), lambda: torch.tensor(value, dtype=td)),
        ("full", lambda: Tensor.full((2,), value, dtype=dtype), lambda: torch.full((2,), value, dtype=td)),
        ("full", lambda: Tensor(small).full_like(value), lambda: torch.full_like(torch.tensor(small), value)),
        ("pad", lambda: Tensor(small).pad((1, 1), value=value),
         lambda: F.pad(torch.tensor(small), (1, 1), value=value)),
        ("where", lambda: Tensor([True, False]).where(Tensor(small), value),
         lambda: torch.where(torch.tensor([True, False]), torch.tensor(small), value)),
        ("clip", lambda: Tensor(small).clip(None, value), lambda: torch.tensor(small).clamp(None, value)),
    ]
    for op, mine, theirs in calls:
        if isinstance(value, float) and op in ("where", "clip"):   # a float scalar promotes: no error anywhere
            continue
        if op in ("where", "clip") and not -2 ** 31 <= value < 2 ** 31:
            # an int past the default int promotes like arithmetic does (int32 + 2**31 is int64; README), exactly
            out = mine()
            assert out.dtype.name == "int64" and out.tolist() == ([1, value] if op == "where" else [1, 2])
            continue
        try:
            theirs()
        except RuntimeError as e:
            assert "without overflow" in str(e)
        else:
            assert (dtype, value) == ("uint8", -1), op
        with pytest.raises(RuntimeError, match=f"{op}: value .* cannot be converted to {dtype} without overflow"):
            mine()


def test_pad_keeps_the_dtype(device):
    """bool padded with 1 stays bool, int32 padded with 1.5 stays int32 (1), uint8 takes 255; like F.pad."""
    cases = [(np.array([True, False]), 1), (np.array([True, False]), 0.5), (np.array([1, 2], np.int32), 1.5),
             (np.array([1, 2], np.int32), -7), (np.array([1, 2], np.uint8), 255), (np.ones(2, np.float16), -math.inf),
             (np.ones(2, np.float32), 1e38), (np.array([1, 2], np.int64), 2 ** 40)]
    for x, value in cases:
        got = Tensor(x, device=device).pad((1, 2), value=value)
        want = F.pad(torch.tensor(x), (1, 2), value=value)
        assert got.dtype.name == str(want.dtype)[len("torch."):], (x.dtype, value)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    same_error(lambda: Tensor(np.ones(2, np.float16)).pad((1, 1), value=1e6),
               lambda: F.pad(torch.ones(2, dtype=torch.float16), (1, 1), value=1e6), "pad", "float16")


def test_values_that_fit_are_kept():
    assert Tensor([255, 0], dtype="uint8").tolist() == [255, 0]
    assert Tensor([1.9, -1.9], dtype="int32").tolist() == torch.tensor([1.9, -1.9], dtype=torch.int32).tolist()
    assert Tensor(np.array([300]), dtype="uint8").tolist() == [44]   # numpy data: numpy's cast, as in torch.tensor
    assert Tensor.full((2,), 2, dtype="bool").tolist() == [True, True]
    assert Tensor([True, False]).where(Tensor([1, 2], dtype="uint8"), 255).tolist() == [1, 255]


# ---- devices ----

@pytest.mark.parametrize("name", ["cl:7", "cpu:3", "cl:abc", "cl:", "cuda:1", "CL:-1"])
def test_device_index_other_than_0_is_refused(name):
    with pytest.raises(DeviceError, match=f"invalid device '{name}': tinyjit uses one"):
        Tensor([1.0], device=name)
    with pytest.raises(DeviceError, match="invalid device"):
        Tensor([1.0]).to(name)
    assert Tensor([1.0], device="cpu:0").device == "CPU"


# ---- host memory proportional to the work ----

def _peak_host_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_argmax_indices_are_computed_on_the_device():
    """argmax of 16 MiB of uint8 used to build a 128 MiB int64 range on the host (3 GB for 256 MB; 16 GiB at 2**31
    elements); the indices now come from small ranges composed on the device."""
    n = 1 << 24
    x = np.zeros((2, n), dtype=np.uint8)
    x[0, n - 5], x[1, 7] = 3, 9
    t = Tensor(x).realize()
    out = {}
    peak = _peak_host_bytes(lambda: out.update(rows=t.argmax(1).numpy(), flat=t.argmax().numpy(),
                                               low=t.argmin(1).numpy()))
    assert out["rows"].tolist() == [n - 5, 7] and out["flat"] == n + 7 and out["low"].tolist() == [0, 0]
    assert peak < n // 4, peak


def test_random_draws_use_no_host_range():
    n = 1 << 22
    Tensor.rand(16).realize()   # the counter buffer, made once
    peak = _peak_host_bytes(lambda: Tensor.rand(n).realize())
    # the random words and the floats made from them (4n bytes each); no range of n uint32 (and its upload) beside
    assert peak < 2.5 * 4 * n, peak


@pytest.mark.parametrize("n", [1, 1023, 1024, 1025, 1024 * 1024 + 1, 3 * 1024 * 1024 + 7])
def test_index_range(n):
    from tinyjit import dtypes
    got = Tensor._index_range(n, dtypes.int32, "CPU")
    assert got.shape == (n,)
    np.testing.assert_array_equal(got.numpy(), np.arange(n, dtype=np.int32))
