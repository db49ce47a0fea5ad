"""Errors are part of the API: raised at the Tensor call that caused them (building the lazy graph, before
anything runs), with an exception type a PyTorch user expects and a message naming the op and the shapes."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tinyjit import Tensor, realize

A = Tensor.ones(2, 3)


def raises(exc, fn, *needles):
    """fn() raises `exc` at the call (no kernel runs) and the message contains every needle."""
    before = realize.counters["kernels_launched"]
    with pytest.raises(exc) as info:
        fn()
    message = str(info.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    assert realize.counters["kernels_launched"] == before, "the error came after running kernels"
    return message


@pytest.mark.parametrize("op,fn", [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b), ("floordiv", lambda a, b: a // b), ("mod", lambda a, b: a % b),
    ("pow", lambda a, b: a ** b), ("maximum", lambda a, b: a.maximum(b)), ("minimum", lambda a, b: a.minimum(b)),
    ("lt", lambda a, b: a < b), ("eq", lambda a, b: a == b), ("ge", lambda a, b: a >= b),
])
def test_broadcast_mismatch(op, fn):
    raises(ValueError, lambda: fn(A, Tensor.ones(4)), op, "(2, 3)", "(4,)", "broadcast")
    raises(ValueError, lambda: fn(Tensor.ones(5, 1, 3), Tensor.ones(2, 4, 1)), op, "(5, 1, 3)", "(2, 4, 1)")


def test_broadcast_mismatch_other_ops():
    i = Tensor.ones(2, 3, dtype="int32")
    raises(ValueError, lambda: i & Tensor.ones(3, 2, dtype="int32"), "and", "(2, 3)", "(3, 2)")
    raises(ValueError, lambda: (A > 0).where(A, Tensor.ones(5)), "where", "(2, 3)", "(5,)")
    raises(ValueError, lambda: A.clip(Tensor.ones(4), 1), "clip", "(2, 3)", "(4,)")
    raises(ValueError, lambda: A + [1.0, 2.0], "add", "(2, 3)", "(2,)")
    raises(ValueError, lambda: A.expand(4, 3), "expand", "(2, 3)", "(4, 3)")
    raises(ValueError, lambda: A.assign(Tensor.ones(3, 3)), "assign", "(3, 3)", "(2, 3)")


@pytest.mark.parametrize("a,b", [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3), (2,)), ((4,), (3, 5, 2)),
                                 ((2, 2, 3), (3, 3, 4)), ((2, 3), ())])
def test_matmul_mismatch(a, b):
    x, y = Tensor.ones(*a), Tensor.ones(*b)
    for fn in (lambda: x @ y, lambda: x.matmul(y), lambda: x.dot(y)):
        raises(ValueError, fn, "matmul", str(a), str(b))


def test_linear_mismatch():
    raises(ValueError, lambda: A.linear(Tensor.ones(4, 4)), "matmul", "(2, 3)", "(4, 4)")


def test_linear_weight_not_a_matrix():
    """torch.nn.functional.linear refuses a weight of 3+ dims (RuntimeError) and one that is not a tensor
    (TypeError); a 3-d weight was matmul'd as a batch and a list gave an AttributeError."""
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError):
        torch.nn.functional.linear(torch.ones(2, 3), torch.ones(2, 4, 3))
    raises(RuntimeError, lambda: A.linear(Tensor.ones(2, 4, 3)), "linear", "(2, 4, 3)")
    for weight in ([[1.0, 2.0, 3.0]], np.ones((4, 3), np.float32)):
        with pytest.raises(TypeError):
            torch.nn.functional.linear(torch.ones(2, 3), weight)
        raises(TypeError, lambda: A.linear(weight), "linear", type(weight).__name__)


@pytest.mark.parametrize("shape", [(4, 2), (7,), (2, 2, 2), (-1, 4), (0, -1), (5, -1)])
def test_reshape_mismatch(shape):
    for fn in (lambda: A.reshape(*shape), lambda: A.reshape(shape), lambda: A.view(*shape)):
        raises(ValueError, fn, "reshape", "(2, 3)", str(shape))


def test_reshape_bad_arguments():
    raises(ValueError, lambda: A.reshape(-1, -1), "reshape", "-1")
    raises(ValueError, lambda: A.reshape(3, -2), "reshape", "-2")
    raises(ValueError, lambda: A.reshape(2.0, 3), "reshape", "2.0")
    raises(ValueError, lambda: A.unflatten(1, (2, 2)), "unflatten", "(2, 2)", "(2, 3)")
    raises(ValueError, lambda: A.flatten().unflatten(0, (4, -1)), "unflatten", "(4, -1)", "(6,)")


def test_cat_stack_mismatch():
    raises(ValueError, lambda: Tensor.cat([A, Tensor.ones(2, 4)]), "cat", "(2, 3)", "(2, 4)")
    raises(ValueError, lambda: A.cat(Tensor.ones(3, 4), dim=1), "cat", "(2, 3)", "(3, 4)")
    raises(ValueError, lambda: Tensor.cat([A, Tensor.ones(3)]), "cat", "(2, 3)", "(3,)")
    raises(ValueError, lambda: Tensor.stack([A, Tensor.ones(3, 2)]), "stack", "(2, 3)", "(3, 2)")
    raises(ValueError, lambda: Tensor.cat([]), "cat", "empty")
    raises(TypeError, lambda: Tensor.cat([A, np.ones((2, 3))]), "cat", "ndarray")
    raises(IndexError, lambda: Tensor.cat([A, A], dim=2), "cat", "(2, 3)", "axis 2")
    raises(IndexError, lambda: Tensor.stack([A, A], dim=3), "stack", "(2, 3)", "axis 3")


@pytest.mark.parametrize("op,fn", [
    ("sum", lambda x: x.sum(2)), ("sum", lambda x: x.sum(axis=-3)), ("sum", lambda x: x.sum((0, 5))),
    ("mean", lambda x: x.mean(dim=2)), ("max", lambda x: x.max(3)), ("min", lambda x: x.min(-4)),
    ("amax", lambda x: x.amax(3)), ("prod", lambda x: x.prod(2)), ("var", lambda x: x.var(2)),
    ("std", lambda x: x.std(2)),
    ("any", lambda x: x.any(2)), ("all", lambda x: x.all(2)), ("argmax", lambda x: x.argmax(2)),
    ("argmax", lambda x: x.argmin(-3)), ("logsumexp", lambda x: x.logsumexp(2)),
    ("softmax", lambda x: x.softmax(2)), ("log_softmax", lambda x: x.log_softmax(-3)),
    ("cumsum", lambda x: x.cumsum(2)),
    ("permute", lambda x: x.permute(0, 2)), ("transpose", lambda x: x.transpose(0, 2)), ("flip", lambda x: x.flip(2)),
    ("squeeze", lambda x: x.squeeze(2)), ("unsqueeze", lambda x: x.unsqueeze(4)), ("flatten", lambda x: x.flatten(3)),
    ("split", lambda x: x.split(1, 2)), ("chunk", lambda x: x.chunk(2, dim=-3)),
    ("gather", lambda x: x.gather(2, x.int())),
])
def test_bad_axis(op, fn):
    msg = raises(IndexError, lambda: fn(A), op, "(2, 3)")
    assert re.search(r"axis -?\d", msg)


def test_bad_axis_arguments():
    raises(TypeError, lambda: A.sum(axis=0, dim=1), "axis", "dim")
    raises(TypeError, lambda: A.sum(1.5), "axis", "float")
    raises(RuntimeError, lambda: A.permute(0, 0), "permute", "(0, 0)", "(2, 3)")   # RuntimeError, as in torch
    raises(RuntimeError, lambda: A.permute(0), "permute", "(2, 3)")
    raises(ValueError, lambda: A.repeat(2), "repeat", "(2, 3)")


@pytest.mark.parametrize("dtype", ["complex64", "bfloat16", "str", "float128", object, "foo"])
def test_unsupported_dtype(dtype):
    for fn in (lambda: Tensor([1.0], dtype=dtype), lambda: A.cast(dtype), lambda: Tensor.zeros(2, dtype=dtype)):
        msg = raises(TypeError, fn, "unsupported dtype", "float32", "int64")
        assert str(dtype) in msg or getattr(dtype, "__name__", "") in msg


def test_unsupported_data():
    raises(TypeError, lambda: Tensor(np.array([1 + 2j])), "unsupported dtype", "complex128")
    raises(TypeError, lambda: Tensor(np.array(["a", "b"])), "Tensor", "<U1")
    raises(TypeError, lambda: Tensor({1: 2}), "Tensor", "dict")
    raises(ValueError, lambda: Tensor([[1, 2], [3]]), "Tensor", "rectangular")
    raises(TypeError, lambda: A + "x", "add", "str")


def test_dtype_restricted_ops():
    f = Tensor.ones(3)
    raises(TypeError, lambda: f & f, "and", "float32")
    raises(TypeError, lambda: f ^ 1, "xor", "float32")
    raises(TypeError, lambda: ~f, "bitwise_not", "float32")
    raises(TypeError, lambda: -(f > 0), "neg", "bool")
    raises(TypeError, lambda: (f > 0) - (f > 0), "sub", "bool")
    raises(TypeError, lambda: f.one_hot(3), "one_hot", "float32")
    raises(IndexError, lambda: f[Tensor([0.5])], "float32")
    raises(TypeError, lambda: f.gather(0, Tensor([0.0])), "gather", "float32")
    raises(RuntimeError, lambda: Tensor([2, 3]) ** -1, "pow", "int64", "-1")
    raises(TypeError, lambda: (f > 0) // (f > 1), "floordiv", "bool")
    raises(TypeError, lambda: f.bitcast("int16"), "bitcast", "float32", "int16")


@pytest.mark.parametrize("shape", [(2, 3), (2,), (0,), (1, 2)])
def test_item_on_non_scalar(shape):
    x = Tensor.ones(*shape)
    raises(RuntimeError, lambda: x.item(), "item", str(shape))
    if shape != (0,):
        raises(RuntimeError, lambda: bool(x), "Boolean value", "ambiguous", str(shape))


def test_item_on_scalars():
    assert Tensor.ones(1, 1).item() == 1.0 and Tensor(3).item() == 3
    raises(TypeError, lambda: len(Tensor(1.0)), "len", "0-d")


def test_indexing_errors():
    raises(IndexError, lambda: A[5], "index 5", "size 2")
    raises(IndexError, lambda: A[:, -4], "index -4", "size 3")
    raises(IndexError, lambda: A[0, 0, 0], "too many indices", "(2, 3)")
    raises(IndexError, lambda: A[..., 0, ...], "ellipsis")
    raises(TypeError, lambda: A[1.5], "float")
    raises(TypeError, lambda: A[True], "bool")
    raises(IndexError, lambda: A[Tensor([True, False])], "mask")
    raises(ValueError, lambda: A[Tensor([[0, 1]]), Tensor([0, 1, 2])], "index", "(1, 2)", "(3,)")


def test_movement_argument_errors():
    raises(ValueError, lambda: A.shrink(((0, 3), None)), "shrink", "(0, 3)", "(2, 3)")
    raises(ValueError, lambda: A.pad((1, 1, 1, 1, 1, 1)), "pad", "(2, 3)")
    raises(ValueError, lambda: A.pad(((1, 1),)), "pad", "(2, 3)")
    raises(NotImplementedError, lambda: A.pad((1, 1), mode="reflect"), "pad", "reflect")
    raises(ValueError, lambda: A.split([1, 1], 1), "split", "[1, 1]", "(2, 3)")
    raises(ValueError, lambda: A.split(0), "split", "0")
    raises(ValueError, lambda: A.chunk(0), "chunk", "0")
    raises(ValueError, lambda: A.expand(2), "expand", "(2, 3)")
    raises(ValueError, lambda: Tensor.zeros(-1, 2), "shape", "(-1, 2)")
    raises(ValueError, lambda: Tensor.arange(0, 5, 0), "arange", "step")


def test_nn_errors():
    x = Tensor.ones(1, 3, 5, 5)
    raises(ValueError, lambda: x.conv2d(Tensor.ones(4, 2, 3, 3)), "conv2d", "(1, 3, 5, 5)", "(4, 2, 3, 3)")
    raises(ValueError, lambda: x.conv2d(Tensor.ones(4, 3, 3)), "conv2d", "(1, 3, 5, 5)", "(4, 3, 3)")
    raises(ValueError, lambda: x.conv2d(Tensor.ones(4, 1, 3, 3), groups=2), "conv2d", "groups=2")
    raises(ValueError, lambda: x.conv2d(Tensor.ones(4, 3, 3, 3), Tensor.ones(3)), "conv2d", "bias", "(3,)")
    raises(ValueError, lambda: x.conv2d(Tensor.ones(2, 3, 7, 7)), "conv2d", "(7, 7)")
    raises(ValueError, lambda: x.conv2d(Tensor.ones(2, 3, 3, 3), padding="full"), "conv2d", "full")
    raises(ValueError, lambda: x.max_pool2d(6), "max_pool2d", "(1, 3, 5, 5)", "(6, 6)")
    raises(ValueError, lambda: x.avg_pool2d((2, 7)), "avg_pool2d", "(1, 3, 5, 5)", "(2, 7)")
    raises(ValueError, lambda: A.layer_norm(4), "layer_norm", "(4,)", "(2, 3)")
    logits = Tensor.ones(4, 5)
    raises(ValueError, lambda: logits.cross_entropy(Tensor([1, 2, 3])), "cross_entropy", "(3,)", "(4, 5)")
    raises(ValueError, lambda: logits.cross_entropy(Tensor.ones(4, 4)), "cross_entropy", "(4, 4)", "(4, 5)")
    raises(ValueError, lambda: logits.cross_entropy(Tensor([1, 2, 3, 4]), reduction="avg"), "reduction", "avg")
    raises(ValueError, lambda: A.binary_cross_entropy(Tensor.ones(3)), "binary_cross_entropy", "(3,)", "(2, 3)")
    raises(ValueError, lambda: A.binary_cross_entropy_with_logits(Tensor.ones(2, 1)),
           "binary_cross_entropy_with_logits", "(2, 1)", "(2, 3)")
    raises(ValueError, lambda: A.gather(0, Tensor([0, 1])), "gather", "(2, 3)")
    raises(ValueError, lambda: A.dropout(1.5), "dropout", "1.5")
    raises(IndexError, lambda: Tensor.ones(0, 3).max(0), "max", "(0, 3)")   # the classes PyTorch raises
    raises(IndexError, lambda: Tensor.ones(3, 0).argmax(1), "argmax", "(3, 0)")
    raises(IndexError, lambda: Tensor.ones(3, 0).argmin(1), "argmin", "(3, 0)")
    raises(IndexError, lambda: Tensor.ones(3, 0).min(1), "min", "(3, 0)")
    raises(RuntimeError, lambda: Tensor.ones(0, 3).min(), "min", "(0, 3)")


def test_device_errors():
    from tinyjit.device import DeviceError
    raises(DeviceError, lambda: Tensor([1.0], device="TPU"), "TPU", "CPU")
    raises(DeviceError, lambda: A.to("NOPE"), "NOPE", "CPU")
