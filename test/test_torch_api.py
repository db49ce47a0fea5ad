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


# ------------------------------------------------------------------------------------------------ int64 default
@pytest.mark.devices("CPU")
def test_python_ints_make_int64_tensors_like_torch(device):
    for ours, theirs in ((Tensor([1, 2, 3]), torch.tensor([1, 2, 3])), (Tensor.arange(3), torch.arange(3)),
                         (Tensor.full((2,), 3), torch.full((2,), 3)), (Tensor(5), torch.tensor(5)),
                         (Tensor.randint(0, 5, (3,)), torch.randint(0, 5, (3,)))):
        assert ours.dtype.name == str(theirs.dtype).split(".")[1]
    i32 = Tensor([1, 2], dtype=dtypes.int32)
    for expr in (lambda m, x: x + 1, lambda m, x: x * 3, lambda m, x: x // 2, lambda m, x: 1 - x,
                 lambda m, x: x + m([1, 2]), lambda m, x: (x > 0) + 1, lambda m, x: x + 1.5):
        ours, theirs = expr(Tensor, i32), expr(torch.tensor, torch.tensor([1, 2], dtype=torch.int32))
        assert ours.dtype.name == str(theirs.dtype).split(".")[1]
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert (Tensor([1, 2]) + 1).dtype == dtypes.int64 and Tensor(np.arange(3, dtype=np.int32)).dtype == dtypes.int32


def test_int64_indices_gather_embedding_argmax(device):
    table = Tensor(np.arange(20, dtype=np.float32).reshape(5, 4))
    idx = Tensor([[4, 0], [2, 2]])
    assert idx.dtype == dtypes.int64
    np.testing.assert_array_equal(table[idx].numpy(), np.arange(20).reshape(5, 4)[[[4, 0], [2, 2]]])
    np.testing.assert_array_equal(table.gather(1, Tensor([[3], [0], [1], [2], [0]])).numpy().ravel(),
                                  [3, 4, 9, 14, 16])
    assert table.argmax(1).dtype == dtypes.int64 and table.argmax(1).tolist() == [3] * 5
    with pytest.raises(IndexError):   # a value past int32 is still out of range (not wrapped into it)
        table[Tensor([2 ** 32 + 1])].numpy()


# ---------------------------------------------------------------------------------------------- in-place methods
def test_inplace_methods_match_torch(device):
    a = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    ours, theirs = Tensor(a), torch.tensor(a)
    steps = [("add_", (1.5,), {}), ("add_", (np.ones(3, np.float32),), {"alpha": 2}), ("sub_", (0.5,), {}),
             ("mul_", (np.array([1, -2, 3], np.float32),), {}), ("div_", (4,), {}), ("clamp_", (), {"min": -0.5}),
             ("clamp_", (), {"max": 1.0}), ("fill_", (7,), {}), ("zero_", (), {}),
             ("copy_", (np.array([3, 1, 2], np.float32),), {})]
    for name, args, kwargs in steps:
        out = getattr(ours, name)(*(Tensor(v) if isinstance(v, np.ndarray) else v for v in args), **kwargs)
        getattr(theirs, name)(*(torch.tensor(v) if isinstance(v, np.ndarray) else v for v in args), **kwargs)
        assert out is ours
        check(ours, theirs)
    ours += 1
    ours *= 2
    check(ours, (theirs + 1) * 2)


@pytest.mark.devices("CPU")
def test_inplace_rules(device):
    w = Tensor.ones(3, requires_grad=True)
    for fn in (lambda: w.add_(1), lambda: w.zero_(), lambda: w.uniform_(), lambda: w.copy_(Tensor.zeros(3))):
        with pytest.raises(RuntimeError, match="leaf"):
            fn()
    w.mul_  # noqa: B018
    with pytest.raises(RuntimeError, match="leaf"):
        w += 1
    with tinyjit.no_grad():
        w.normal_(2.0, 0.5).clamp_(0, 4)
    with Tensor.no_grad():
        w.uniform_(-1, 1)
    assert w.requires_grad and -1 <= w.numpy().min() and w.numpy().max() < 1
    ints = Tensor([1, 2, 3])
    with pytest.raises(RuntimeError, match="can't be cast"):
        ints.add_(0.5)
    with pytest.raises(RuntimeError, match="can't be cast"):
        ints /= 2
    ints.div_(2, rounding_mode="floor")
    assert ints.tolist() == [0, 1, 1]
    Tensor.manual_seed(1)
    x = Tensor.zeros(4000).normal_(1.0, 2.0).numpy()
    assert abs(x.mean() - 1) < 0.15 and abs(x.std() - 2) < 0.15
    with pytest.raises(RuntimeError, match="broadcast"):
        Tensor.zeros(3).copy_(Tensor.ones(2))


# ------------------------------------------------------------------------------------------------------ indexing
def test_mask_setitem_tuple_index_and_keyword_forms(device):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    x, t = Tensor(a), torch.tensor(a)
    x[x > 5] = 0
    t[t > 5] = 0
    check(x, t)
    x[Tensor([True, False, True])] = Tensor(-1.0)   # a mask over the leading dim
    t[torch.tensor([True, False, True])] = torch.tensor(-1.0)
    check(x, t)
    x[x < 0] = Tensor([5.0, 6, 7, 8])   # broadcast to the whole tensor
    t[t < 0] = torch.tensor([5.0, 6, 7, 8]).expand(3, 4)[t < 0]
    check(x, t)
    n = np.arange(12).reshape(3, 4)
    assert Tensor(n)[(2, 0), 1].tolist() == n[(2, 0), 1].tolist() == [9, 1]
    check(Tensor(n)[1, (3, 0, 0)], torch.tensor(n)[1, (3, 0, 0)])
    y = Tensor(n)
    assert y.reshape(shape=(4, 3)).shape == torch.tensor(n).reshape(shape=(4, 3)).shape
    assert y.view(size=(2, 6)).shape == (2, 6) and y.permute(dims=(1, 0)).shape == (4, 3)
    assert Tensor.ones(3, 1).expand(size=(3, 5)).shape == (3, 5) and y.view_as(Tensor.ones(6, 2)).shape == (6, 2)


@pytest.mark.devices("CPU")
def test_mask_setitem_errors(device):
    x = Tensor.ones(3, 4)
    with pytest.raises(IndexError, match="mask"):
        x[Tensor([True, False])] = 0
    with pytest.raises(NotImplementedError, match="x.assign"):
        x[x > 0] = Tensor([1.0, 2.0])
    with pytest.raises(NotImplementedError, match="integer-tensor"):
        x[Tensor([0, 1])] = 0
    with pytest.raises(TypeError, match="reshape"):
        x.reshape(2, shape=(6,))
    np.testing.assert_array_equal(x.numpy(), np.ones((3, 4)))   # nothing half-written
