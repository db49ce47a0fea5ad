"""Dtypes, edge shapes and argument checks of the composed ops, against PyTorch: pooling keeps every dtype exact,
conv/pool arguments PyTorch refuses raise at the call (never a ZeroDivisionError or a silent crop), softmax over an
empty axis, cat of 0-d tensors, split edge cases, and Python ints past 32 bits (never wrapped to int32)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyjit import Tensor, dtypes, realize

pytestmark = pytest.mark.usefixtures("device")   # each test runs on each selected device (test/conftest.py)


def _torch_dtype(name: str):
    return getattr(torch, name)


POOL_DTYPES = ["float32", "float64", "float16", "int8", "uint8", "int16", "int32", "int64"]


@pytest.mark.parametrize("dtype", POOL_DTYPES)
def test_pools_keep_the_dtype_exact(dtype):
    """max_pool2d (with padding) keeps any dtype and every value (int32 16777217 is not rounded through float32);
    avg_pool2d keeps it too, ints truncated toward zero like PyTorch's int64 pooling."""
    a = (np.arange(36).reshape(1, 1, 6, 6) * 7 % 23 - (0 if dtype[0] == "u" else 9)).astype(dtype)
    if dtype in ("int32", "int64"):
        a[0, 0, 0, 0] = 16777217 if dtype == "int32" else 2 ** 53 + 1
    t = torch.tensor(a)
    for args in [(2,), (3, 1, 1), (3, 2, 1, 2)]:
        out = Tensor(a).max_pool2d(*args)
        assert out.dtype.name == dtype
        np.testing.assert_array_equal(out.numpy(), F.max_pool2d(t, *args).numpy(), err_msg=f"max_pool2d{args}")
    for args, include in [((2,), True), ((3, 1, 1), True), ((3, 2, 1), False)]:
        out = Tensor(a).avg_pool2d(*args, count_include_pad=include)
        assert out.dtype.name == dtype
        # PyTorch pools ints only as int64 (with the same truncation); other ints go through int64 here
        ref_in = t if dtype[0] == "f" else t.long()
        ref = F.avg_pool2d(ref_in, *args, count_include_pad=include).to(_torch_dtype(dtype))
        np.testing.assert_allclose(out.numpy().astype(np.float64), ref.numpy().astype(np.float64),
                                   rtol=1e-3 if dtype == "float16" else 1e-6, err_msg=f"avg_pool2d{args}")


def test_max_pool_int32_issue_value():
    x = Tensor(np.array([[[[16777217, 1], [2, 3]]]], np.int32))
    out = x.max_pool2d(2, padding=1)
    assert out.dtype == dtypes.int32
    np.testing.assert_array_equal(out.numpy(), [[[[16777217, 1], [2, 3]]]])


def test_bool_pools():
    x = Tensor(np.array([[[[True, False], [False, False]]]]))
    np.testing.assert_array_equal(x.max_pool2d(2).numpy(), [[[[True]]]])
    with pytest.raises(TypeError, match="avg_pool2d"):
        x.avg_pool2d(2)


X4, W4 = Tensor.ones(1, 2, 5, 5), Tensor.ones(3, 2, 3, 3)
X3, W3 = Tensor.ones(1, 2, 5), Tensor.ones(3, 2, 3)
WT = Tensor.ones(2, 3, 3, 3)
BAD_ARGUMENTS = {
    "conv2d stride 0": lambda: X4.conv2d(W4, stride=0),
    "conv2d stride -1": lambda: X4.conv2d(W4, stride=(1, -1)),
    "conv2d dilation 0": lambda: X4.conv2d(W4, dilation=0),
    "conv2d padding -1": lambda: X4.conv2d(W4, padding=-1),
    "conv2d groups 0": lambda: X4.conv2d(W4, groups=0),
    "conv2d stride 1.5": lambda: X4.conv2d(W4, stride=1.5),
    "conv1d stride 0": lambda: X3.conv1d(W3, stride=0),
    "conv1d dilation 0": lambda: X3.conv1d(W3, dilation=0),
    "conv1d padding -1": lambda: X3.conv1d(W3, padding=-1),
    "conv_transpose2d stride 0": lambda: X4.conv_transpose2d(WT, stride=0),
    "conv_transpose2d dilation 0": lambda: X4.conv_transpose2d(WT, dilation=0),
    "conv_transpose2d padding -1": lambda: X4.conv_transpose2d(WT, padding=-1),
    "conv_transpose2d output_padding -1": lambda: X4.conv_transpose2d(WT, output_padding=-1),
    "conv_transpose2d empty output": lambda: X4.conv_transpose2d(WT, padding=5),
    "max_pool2d kernel 0": lambda: X4.max_pool2d(0),
    "max_pool2d kernel -1": lambda: X4.max_pool2d(-1),
    "max_pool2d stride 0": lambda: X4.max_pool2d(2, 0),
    "max_pool2d padding -1": lambda: X4.max_pool2d(2, 1, -1),
    "max_pool2d padding over half the kernel": lambda: X4.max_pool2d(2, 1, 2),
    "max_pool2d dilation 0": lambda: X4.max_pool2d(2, 1, 0, 0),
    "avg_pool2d kernel 0": lambda: X4.avg_pool2d(0),
    "avg_pool2d stride 0": lambda: X4.avg_pool2d(2, 0),
    "avg_pool2d padding -1": lambda: X4.avg_pool2d(2, 1, -1),
    "avg_pool2d padding over half the kernel": lambda: X4.avg_pool2d(2, 1, 2),
}


@pytest.mark.parametrize("name", list(BAD_ARGUMENTS))
def test_conv_pool_arguments_torch_refuses(name):
    """RuntimeError (PyTorch's class) at the call, naming the op and the argument, before any kernel runs."""
    before = realize.counters["kernels_launched"]
    op, argument = name.split()[0], name.split()[1]
    with pytest.raises(RuntimeError, match=op) as info:
        BAD_ARGUMENTS[name]()
    assert argument.split("_")[0] in str(info.value) or "output" in str(info.value)
    assert realize.counters["kernels_launched"] == before


def test_conv_transpose_cropping_padding_still_works():
    x, w = np.ones((1, 2, 5, 5), np.float32), np.arange(54, dtype=np.float32).reshape(2, 3, 3, 3)
    np.testing.assert_allclose(Tensor(x).conv_transpose2d(Tensor(w), padding=3).numpy(),
                               F.conv_transpose2d(torch.tensor(x), torch.tensor(w), padding=3).numpy())


@pytest.mark.parametrize("shape,axis", [((2, 0), 1), ((2, 0), -1), ((0,), 0), ((0, 3), 0), ((3, 0, 2), 1)])
def test_softmax_over_an_empty_axis(shape, axis):
    for name in ("softmax", "log_softmax"):
        x = Tensor.ones(*shape, requires_grad=True)
        out = getattr(x, name)(axis)
        ref = getattr(torch.ones(*shape), name)(axis)
        assert out.shape == tuple(ref.shape) and out.numpy().shape == tuple(ref.shape)
        out.sum().backward()
        assert x.grad.numpy().shape == shape


def test_cat_of_0d_tensors_raises_clearly():
    for tensors, position in [([Tensor(1.0), Tensor(2.0)], 0), ([Tensor.ones(2), Tensor(2.0)], 1)]:
        with pytest.raises(RuntimeError, match=f"cat: the tensor at position {position} is 0-d"):
            Tensor.cat(tensors)
    np.testing.assert_array_equal(Tensor.stack([Tensor(1.0), Tensor(2.0)]).numpy(), [1, 2])


def test_split_edge_cases():
    assert [t.shape for t in Tensor.ones(0).split(0)] == [tuple(t.shape) for t in torch.ones(0).split(0)]
    with pytest.raises(RuntimeError, match="non-negative"):
        Tensor.ones(3).split([1, -1, 3])
    with pytest.raises(RuntimeError, match="0-d"):
        Tensor(1.0).split(1)


def test_ints_past_32_bits():
    """Python ints that do not fit int32 are int64 values, never wrapped (the issue's cases and their kind)."""
    np.testing.assert_array_equal(Tensor.arange(2 ** 31 - 2, 2 ** 31 + 2).numpy(), np.arange(2 ** 31 - 2, 2 ** 31 + 2))
    assert Tensor.arange(2 ** 31 - 2, 2 ** 31 + 2).dtype == dtypes.int64
    np.testing.assert_array_equal(Tensor.arange(0, 2 ** 32, 2 ** 30).numpy(), np.arange(0, 2 ** 32, 2 ** 30))
    assert Tensor.arange(5).dtype == dtypes.int64             # the default int, as in torch
    for data in ([-2 ** 63], [-2 ** 31 - 1, 0], [2 ** 40]):
        t = Tensor(data)
        assert t.dtype == dtypes.int64 and t.tolist() == data
    assert Tensor([-2 ** 31, 2 ** 31 - 1]).dtype == dtypes.int64
    scalar = Tensor(2 ** 40)
    assert scalar.dtype == dtypes.int64 and scalar.item() == 2 ** 40
    full = Tensor.full((2,), 2 ** 40)
    assert full.dtype == dtypes.int64 and full.tolist() == [2 ** 40] * 2
    assert Tensor.full((2,), -2 ** 63).tolist() == [-2 ** 63] * 2
    with pytest.raises(RuntimeError, match="cannot be converted to int32"):
        Tensor.full((2,), 2 ** 40, dtype="int32")
    for dtype in ("int32", "int64", "uint8", "int16"):
        x = Tensor(np.array([1, 2], dtype))
        out = x + 2 ** 40
        assert out.dtype == dtypes.int64 and out.tolist() == [2 ** 40 + 1, 2 ** 40 + 2], dtype
        assert (x * 2 ** 33).tolist() == [2 ** 33, 2 ** 34]
        assert (x < 2 ** 40).tolist() == [True, True] and (x == 2 ** 32 + 1).tolist() == [False, False]
        assert x.maximum(2 ** 40).tolist() == [2 ** 40, 2 ** 40]
        assert (2 ** 40 - x).tolist() == [2 ** 40 - 1, 2 ** 40 - 2]
    assert (Tensor([True, False]) + 2 ** 40).tolist() == [2 ** 40 + 1, 2 ** 40]
    assert Tensor([True]).where(2 ** 40, 0).tolist() == [2 ** 40]
    r = Tensor.randint(2 ** 40, 2 ** 40 + 3, size=(50,))
    assert r.dtype == dtypes.int64 and set(r.tolist()) <= {2 ** 40, 2 ** 40 + 1, 2 ** 40 + 2}
    with pytest.raises(OverflowError):
        Tensor([1], dtype="int64") + 2 ** 63           # no int dtype holds both (NumPy 2 refuses it too)
    assert (Tensor(np.array([1], np.uint64)) + (2 ** 63)).tolist() == [2 ** 63 + 1]
    assert (Tensor(np.array([1], np.uint8)) + -3).tolist() == [254]   # within int32: PyTorch's wrap
