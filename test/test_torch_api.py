"""The PyTorch API a user reaches for first (issue 11), checked against torch: max/min with a dim, functional
dropout, Python scalars from tensors, repr, torch_load of whole checkpoints, int64 defaults, in-place methods,
indexing forms, sort/topk/unique/einsum and the small methods ports hit.

Tests with the `device` fixture run on CPU and CL; CL cases are few (PoCL compiles are slow) and reuse shapes.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import tinyjit
from tinyjit import Tensor, dtypes


def check(ours, theirs, atol=1e-6, rtol=1e-5):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    got = ours.numpy() if isinstance(ours, Tensor) else np.asarray(ours)
    assert got.shape == theirs.shape, (got.shape, theirs.shape)
    np.testing.assert_allclose(got.astype(np.float64), theirs.astype(np.float64), atol=atol, rtol=rtol)


# ---------------------------------------------------------------------------------------------------- max / min
def test_max_min_with_dim_return_values_and_indices(device):
    a = np.array([[1, 3, 3, -2], [4, 2, 4, 9], [np.nan, 0, 5, 5]], np.float32)
    for name in ("max", "min"):
        for dim, keepdim in ((1, False), (0, True), (-1, True)):
            ours = getattr(Tensor(a), name)(dim=dim, keepdim=keepdim)
            theirs = getattr(torch.tensor(a), name)(dim=dim, keepdim=keepdim)
            assert type(ours).__name__ == name and ours._fields == ("values", "indices")
            v, i = ours   # unpacks like torch's named tuple
            check(v, theirs.values)
            np.testing.assert_array_equal(i.numpy(), theirs.indices.numpy())
            assert i.dtype == dtypes.int64
        whole = getattr(Tensor(a[1:]), name)()   # without a dim: one tensor
        assert isinstance(whole, Tensor) and whole.shape == ()
        check(whole, getattr(torch.tensor(a[1:]), name)())
    v, i = Tensor([[1, 3], [4, 2]]).max(dim=1)
    assert v.tolist() == [3, 4] and i.tolist() == [1, 0]


@pytest.mark.devices("CPU")
def test_max_dim_gradient_goes_to_the_chosen_index(device):
    a = np.array([[1, 3, 3], [2, 2, 0]], np.float32)
    for name in ("max", "min"):
        x, t = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
        getattr(x, name)(1).values.sum().backward()
        getattr(t, name)(1).values.sum().backward()
        check(x.grad, t.grad)
        check(Tensor(a).amax(1), torch.tensor(a).amax(1))


@pytest.mark.devices("CPU")
def test_max_argument_errors(device):
    x = Tensor.ones(2, 3)
    with pytest.raises(TypeError, match="amax"):
        x.max(dim=(0, 1))
    with pytest.raises(IndexError, match="max"):
        Tensor.ones(0, 3).max(0)
    with pytest.raises(IndexError):
        x.min(2)
    check(x.max(Tensor([[0.0, 2, 1]] * 2)), torch.tensor([[1.0, 2, 1]] * 2))   # torch.max(a, b)


# ---------------------------------------------------------------------------------------------------- dropout
@pytest.mark.devices("CPU")
def test_functional_dropout_is_on_by_default(device):
    Tensor.manual_seed(0)
    dropped = Tensor.ones(1000).dropout(0.5).numpy()
    assert 350 < (dropped == 0).sum() < 650 and set(np.unique(dropped)) == {0.0, 2.0}
    np.testing.assert_array_equal(Tensor.ones(10).dropout(0.5, training=False).numpy(), np.ones(10))
    drop = tinyjit.nn.Dropout(0.5)
    drop.eval()
    np.testing.assert_array_equal(drop(Tensor.ones(100)).numpy(), np.ones(100))


# ---------------------------------------------------------------------------------------------- python scalars
@pytest.mark.devices("CPU")
def test_float_int_bool_of_one_element_tensors(device):
    assert float(Tensor([[2.5]])) == 2.5 and isinstance(float(Tensor(3)), float)
    assert int(Tensor([2.7])) == 2 and int(Tensor(-2.7)) == -2 and isinstance(int(Tensor(2.0)), int)
    assert bool(Tensor([1.0])) is True and bool(Tensor(0)) is False and bool(Tensor(float("nan")))
    assert list(range(Tensor(3))) == [0, 1, 2]
    for conv in (float, int):
        with pytest.raises(ValueError, match="one element"):
            conv(Tensor.ones(2))
    with pytest.raises(RuntimeError, match="more than one value"):
        bool(Tensor.ones(2))
    with pytest.raises(RuntimeError, match="no values"):
        bool(Tensor.ones(0))
    with pytest.raises(ValueError):
        int(Tensor(float("nan")))
    with pytest.raises(TypeError):
        range(Tensor(2.0))


# ------------------------------------------------------------------------------------------------------ repr
@pytest.mark.devices("CPU")
@pytest.mark.parametrize("make", [
    lambda m: m.tensor([1.0, 2.0]), lambda m: m.tensor(1.5), lambda m: m.tensor([1e-5, 1.0]),
    lambda m: m.tensor([1e9, 1.0]), lambda m: m.tensor([float("nan"), 1.5, float("inf")]),
    lambda m: m.tensor([-1.5, 100.0]), lambda m: m.arange(24.0).reshape(2, 3, 4), lambda m: m.tensor([True, False]),
    lambda m: m.arange(2000).reshape(2, 1000), lambda m: m.arange(2000.0) / 7, lambda m: m.zeros(0, 3),
    lambda m: m.tensor([[1, -20], [300, 4]]), lambda m: m.tensor([0.0, 0.0]),
], ids=["floats", "scalar", "small", "large", "special", "widths", "3d", "bool", "ints_summarized",
        "floats_summarized", "empty", "int_matrix", "zeros"])
def test_repr_like_torch(device, make):
    class Maker:   # the same calls on tinyjit
        tensor = staticmethod(lambda data: Tensor(data, dtype=dtypes.int64 if _all_int(data) else None))
        arange = staticmethod(lambda *a: Tensor.arange(*a, dtype=dtypes.int64 if _all_int(a) else None))
        zeros = staticmethod(Tensor.zeros)
    assert repr(make(Maker)) == repr(make(torch))


def _all_int(data) -> bool:
    flat = np.asarray(data).reshape(-1)
    return flat.size > 0 and flat.dtype.kind in "iu"


@pytest.mark.devices("CPU")
def test_repr_suffixes(device):
    assert repr(Tensor([1.5, 2], dtype=dtypes.float16)) == "tensor([1.5000, 2.0000], dtype=dtypes.float16)"
    assert repr(Tensor([1, 2], dtype=dtypes.int32)) == "tensor([1, 2], dtype=dtypes.int32)"
    assert repr(Tensor([1.0, 2.0], requires_grad=True)) == "tensor([1., 2.], requires_grad=True)"
    assert repr(Tensor([1.0, 2.0], requires_grad=True) * 2) == "tensor([2., 4.], grad_fn=<MulBackward>)"


@pytest.mark.devices("CL")
def test_repr_names_the_device(device):
    assert repr(Tensor([1.0, 2.0])) == "tensor([1., 2.], device='CL')"


# -------------------------------------------------------------------------------------------------- torch_load
@pytest.mark.devices("CPU")
def test_torch_load_returns_the_whole_checkpoint(device, tmp_path):
    from tinyjit.nn.state import torch_load
    sd = {"fc.weight": torch.randn(2, 3), "fc.bias": torch.randn(2)}
    ckpt = {"model": sd, "iter": 3, "lr": 0.5, "name": "run", "hist": [1, 2.5], "pair": (torch.ones(1), None)}
    path = tmp_path / "ckpt.pth"
    torch.save(ckpt, path)
    got = torch_load(path)
    assert got["iter"] == 3 and got["lr"] == 0.5 and got["name"] == "run" and got["hist"] == [1, 2.5]
    assert isinstance(got["pair"], tuple) and got["pair"][1] is None
    check(got["model"]["fc.weight"], sd["fc.weight"])
    assert isinstance(got["model"]["fc.bias"], Tensor)
    torch.save(sd["fc.bias"], path)
    check(torch_load(path), sd["fc.bias"])
