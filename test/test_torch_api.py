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
import tinyjit.pytorch
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


def test_max_min_median_of_all_share_the_gradient_between_equal_and_nan_entries(device):
    """torch.max(x), min(x) and median(x) (no dim) split the gradient evenly between the entries equal to the
    result, every NaN entry counting for a NaN result (amax gives NaN gradients there instead); median(dim) with a
    NaN sends it to the NaN whose index it returns. Before: NaN gradients for max/min, none for median."""
    nan, inf = np.nan, np.inf
    rows = np.array([[1, nan, 3, nan], [inf, 2, inf, 1], [0.1, 0.1, 0.2, 0.1], [2, 1, 2, 3], [-inf, -inf, 5, 4]],
                    np.float32)
    for row in rows:
        for name in ("max", "min", "median"):
            x, t = Tensor(row, requires_grad=True), torch.tensor(row, requires_grad=True)
            got, want = getattr(x, name)(), getattr(t, name)()
            (got * 3).backward()
            (want * 3).backward()
            check(got, want.detach())
            check(x.grad, t.grad)
    x, t = Tensor(rows, requires_grad=True), torch.tensor(rows, requires_grad=True)
    for dim in (0, 1):
        got, want = x.median(dim), t.median(dim)
        check(got.values, want.values.detach())
        check(got.indices, want.indices)
        weights = np.arange(1, 1 + want.values.numel(), dtype=np.float32)
        (got.values * Tensor(weights)).sum().backward()
        (want.values * torch.tensor(weights)).sum().backward()
    check(x.grad, t.grad)


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
    w.mul_
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
@pytest.mark.devices("CPU")   # (a where and an assign, as the in-place methods that run on CL too)
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
def test_setitem_into_one_element_tensors(device):
    """`losses = torch.zeros(1); losses[0] = loss.item()` (a ported eval loop with eval_iters=1) works as in
    torch: the indexed region of a one-element tensor shares its base node, and was taken for a live tensor the
    target is a view of. Writing through a real view of a live tensor still raises."""
    for shape, index in (((1,), 0), ((1, 1), (0, 0)), ((1, 1), 0), ((1,), slice(None)), ((1, 2), (0, 1))):
        ours, theirs = Tensor.zeros(*shape, device=device), torch.zeros(*shape)
        ours[index], theirs[index] = 3.5, 3.5
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    base = Tensor.zeros((), device=device)
    view = base.reshape(1)
    with pytest.raises(RuntimeError, match="view"):
        view[0] = 5.0


# x[index] = value with integer tensors (lists, ranges, arrays) among basic indices: (shape, index maker, value shape)
INTEGER_SETITEM_CASES = [
    ((5, 3), lambda t: (t([4, 0, 2]),), (3, 3)),                          # rows, one value per row
    ((5, 3), lambda t: (t([4, -5, 2]),), (3,)),                           # negative index, value broadcast
    ((4, 6), lambda t: (slice(None), t([5, 1])), (4, 2)),                 # columns
    ((4, 6), lambda t: (range(4), t([0, 5, 2, 2])), ()),                  # one place per row (a scalar value)
    ((3, 4, 5), lambda t: (t([2, 0]), slice(1, 3), t([4, 1])), (2, 2)),   # non-adjacent: index dims first
    ((3, 4, 5), lambda t: (1, t([[0, 3], [2, 1]]), slice(None, None, 2)), (2, 2, 3)),   # int + 2-d index + step
    ((3, 4, 5), lambda t: (Ellipsis, t([4, 0]), None), (3, 4, 2, 1)),     # Ellipsis and None
    ((2, 3), lambda t: ([[0], [1]], t([2, 0, 1])), (2, 3)),               # broadcast index shapes
]


@pytest.mark.devices("CPU")
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_integer_index_setitem_like_torch(device, dtype):
    """x[index] = v with integer tensors, lists or ranges among ints, slices, None and Ellipsis writes what torch
    writes (before: NotImplementedError), for float and int tensors; for floats the gradients reach the tensor
    (zero where written) and the value (summed over its broadcast)."""
    rng = np.random.default_rng(0)
    for shape, make_index, value_shape in INTEGER_SETITEM_CASES:
        a = rng.standard_normal(shape).astype(dtype) * 10
        v = rng.standard_normal(value_shape).astype(dtype) * 10
        grad = dtype != "int64"
        x, t = Tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad)
        vx, vt = Tensor(v, requires_grad=grad), torch.tensor(v, requires_grad=grad)
        ours, theirs = x * 1, t * 1
        ours[make_index(lambda i: Tensor(np.array(i)))] = vx
        theirs[make_index(lambda i: torch.tensor(i))] = vt
        np.testing.assert_array_equal(ours.numpy(), theirs.detach().numpy(), err_msg=str(shape))
        if grad:
            weights = rng.standard_normal(shape).astype(dtype)
            (ours * Tensor(weights)).sum().backward()
            (theirs * torch.tensor(weights)).sum().backward()
            np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-6, err_msg=str(shape))
            np.testing.assert_allclose(vx.grad.numpy(), vt.grad.numpy(), rtol=1e-6, err_msg=str(shape))


def test_integer_index_setitem_in_place_forms(device):
    """x[idx] += v, x[range(n), labels] = x.max() (mnist_forward_forward's overlay) and a repeated index (the
    last entry's value is written) on each device; x[[]] = v writes nothing."""
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    x, t = Tensor(a, device=device), torch.tensor(a)
    x[[2, 0]] += Tensor([1.0, 2.0, 3.0, 4.0], device=device)
    t[[2, 0]] += torch.tensor([1.0, 2.0, 3.0, 4.0])
    x[range(3), Tensor([3, 0, 1], device=device)] = x.max()
    t[range(3), torch.tensor([3, 0, 1])] = t.max()
    x[[]] = 7.0
    np.testing.assert_array_equal(x.numpy(), t.numpy())
    y = Tensor.zeros(4, device=device)
    y[Tensor([1, 3, 1], device=device)] = Tensor([5.0, 6.0, 7.0], device=device)
    np.testing.assert_array_equal(y.numpy(), [0.0, 7.0, 0.0, 6.0])


@pytest.mark.devices("CPU")
def test_index_put_copy_fill_like_torch(device):
    """index_put (written, and accumulated: duplicates add), index_copy and index_fill, out of place and in place,
    give torch's values, and gradients reach self and the values; torch's error classes."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 3)).astype(np.float32)
    v = rng.standard_normal((3, 3)).astype(np.float32)
    rows = np.array([2, 0, 2])
    calls = [lambda x, val, m: x.index_put((m.tensor(rows),), val, accumulate=True),
             lambda x, val, m: x.index_put((m.tensor(rows[:2]), m.tensor([1, 2])), val[0, :2]),
             lambda x, val, m: x.index_copy(0, m.tensor([3, 1]), val[:2]),
             lambda x, val, m: x.index_fill(1, m.tensor([2, 0]), val[0, 0]),
             lambda x, val, m: (x * 1).index_put_((m.tensor(rows),), val[1], accumulate=True),
             lambda x, val, m: (x * 1).index_copy_(1, m.tensor(1), val[0, :1].expand(4, 1) * 2),   # a 0-d index
             lambda x, val, m: (x * 1).index_fill_(0, m.tensor([1]), -2.5)]
    for i, call in enumerate(calls):
        ours, theirs = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
        our_v, their_v = Tensor(v, requires_grad=True), torch.tensor(v, requires_grad=True)
        got, want = call(ours, our_v, tinyjit.pytorch), call(theirs, their_v, torch)
        np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-6, err_msg=str(i))
        weights = rng.standard_normal(a.shape).astype(np.float32)
        (got * Tensor(weights)).sum().backward()
        (want * torch.tensor(weights)).sum().backward()
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-6, err_msg=str(i))
        their_grad = their_v.grad.numpy() if their_v.grad is not None else np.zeros_like(v)
        our_grad = our_v.grad.numpy() if our_v.grad is not None else np.zeros_like(v)
        np.testing.assert_allclose(our_grad, their_grad, rtol=1e-6, atol=1e-7, err_msg=str(i))
    errors = [(lambda x, m: x.index_put((m.tensor([0, 5]),), m.ones(3)), IndexError),
              (lambda x, m: x.index_copy(0, m.tensor([[1]]), m.ones(1, 3)), IndexError),
              (lambda x, m: x.index_copy(0, m.tensor([1]), m.ones(3)), IndexError),
              (lambda x, m: x.index_fill(1, m.tensor([1]), m.ones(2)), RuntimeError),
              (lambda x, m: x.index_put((m.tensor([0, 1]),), m.ones(3, 3)), RuntimeError)]
    for call, error in errors:
        with pytest.raises(error):
            call(torch.tensor(a), torch)
        with pytest.raises(error):
            call(Tensor(a), tinyjit.pytorch)


def test_mask_setitem_errors(device):
    x = Tensor.ones(3, 4)
    with pytest.raises(IndexError, match="mask"):
        x[Tensor([True, False])] = 0
    with pytest.raises(NotImplementedError, match="x.assign"):
        x[x > 0] = Tensor([1.0, 2.0])
    with pytest.raises(NotImplementedError, match="bool mask combined"):
        x[Tensor([True, False, True]), 0] = 0
    with pytest.raises(IndexError, match="out of bounds"):   # (host values: checked at the call)
        x[[0, 3]] = 0
    with pytest.raises(RuntimeError, match="shape mismatch"):
        x[Tensor([0, 1])] = Tensor([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="reshape"):
        x.reshape(2, shape=(6,))
    np.testing.assert_array_equal(x.numpy(), np.ones((3, 4)))   # nothing half-written


# ------------------------------------------------------------------------------------------- sort / topk / unique
def _grad_pair(a: np.ndarray):
    return Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def test_sort_topk_kthvalue_values_indices_gradients(device):
    a = np.array([[3, 1, 2, 1, np.nan, 0], [5, -1, 5, 2, 2, 7], [0, 0, 0, 1, -3, 1]], np.float32)
    weights = np.random.default_rng(0).uniform(0.5, 2, (3, 6)).astype(np.float32)
    x, t = _grad_pair(a)
    loss, tloss = 0, 0
    for descending in (False, True):
        ours, theirs = x.sort(dim=1, descending=descending), t.sort(dim=1, descending=descending, stable=True)
        check(ours.values, theirs.values)
        np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())
        loss = loss + ((ours.values == ours.values).where(ours.values, 0) * Tensor(weights)).sum()
        tloss = tloss + (theirs.values.nan_to_num() * torch.tensor(weights)).sum()
    np.testing.assert_array_equal(x.argsort(0).numpy(), t.argsort(dim=0, stable=True).numpy())
    top, ttop = x.topk(2, dim=1), t.topk(2, dim=1)
    check(top.values, ttop.values)
    np.testing.assert_array_equal(top.indices.numpy(), ttop.indices.numpy())
    low = Tensor(a[1:]).topk(3, largest=False)
    np.testing.assert_array_equal(low.values.numpy(), torch.tensor(a[1:]).topk(3, largest=False).values.numpy())
    # (columns without ties: torch's kthvalue picks any of tied positions)
    kth, tkth = x[:, :3].kthvalue(2, dim=0, keepdim=True), t[:, :3].kthvalue(2, dim=0, keepdim=True)
    check(kth.values, tkth.values)
    (loss + top.values[1:].sum() + kth.values.sum()).backward()
    (tloss + ttop.values[1:].sum() + tkth.values.sum()).backward()
    check(x.grad, t.grad)


@pytest.mark.devices("CPU")
def test_sort_ints_unique_and_errors(device):
    a = np.array([4, -2, 4, 9, 0, -2, 4], np.int64)
    ours, theirs = Tensor(a).sort(descending=True), torch.tensor(a).sort(descending=True, stable=True)
    np.testing.assert_array_equal(ours.values.numpy(), theirs.values.numpy())
    np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())
    for kwargs in ({}, {"return_inverse": True}, {"return_counts": True},
                   {"return_inverse": True, "return_counts": True}):
        got, want = Tensor(a).unique(**kwargs), torch.tensor(a).unique(**kwargs)
        for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            np.testing.assert_array_equal(g.numpy(), w.numpy())
            assert g.dtype.name == str(w.dtype).split(".")[1]
    m = np.array([[1, 2], [1, 2], [0, 5]])
    np.testing.assert_array_equal(Tensor(m).unique(dim=0).numpy(), torch.tensor(m).unique(dim=0).numpy())
    with pytest.raises(RuntimeError, match="topk"):
        Tensor(a).topk(8)
    with pytest.raises(RuntimeError, match="kthvalue"):
        Tensor(a).kthvalue(0)
    with pytest.raises(IndexError):
        Tensor(a).sort(dim=1)


@pytest.mark.devices("CPU")
def test_unique_keeps_each_nan_apart(device):
    """torch.unique counts every NaN as a value of its own (numpy's default merges them); -0.0 and 0.0 are one."""
    a = np.array([3, np.nan, 1, np.nan, -0.0, 0, np.inf, 1], np.float32)
    got = Tensor(a).unique(return_inverse=True, return_counts=True)
    want = torch.tensor(a).unique(return_inverse=True, return_counts=True)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w.numpy())


@pytest.mark.devices("CPU")
def test_multinomial_and_randperm(device):
    Tensor.manual_seed(5)
    w = Tensor([[0.0, 1.0, 3.0, 0.0], [2.0, 0.0, 0.0, 2.0]])
    draws = w.multinomial(4000, replacement=True).numpy()
    assert draws.shape == (2, 4000) and Tensor([1.0]).multinomial(1).dtype == dtypes.int64
    assert set(np.unique(draws[0])) == {1, 2} and set(np.unique(draws[1])) == {0, 3}
    assert abs((draws[0] == 2).mean() - 0.75) < 0.05 and abs((draws[1] == 0).mean() - 0.5) < 0.05
    picks = Tensor([1.0, 1.0, 0.0, 1.0, 1.0]).multinomial(4).numpy()
    assert sorted(picks.tolist()) == [0, 1, 3, 4]
    firsts = np.array([Tensor([8.0, 1.0, 1.0]).multinomial(2)[0].item() for _ in range(40)])
    assert (firsts == 0).mean() > 0.6
    with pytest.raises(RuntimeError, match="without replacement"):
        Tensor([1.0, 1.0]).multinomial(3)
    perm = Tensor.randperm(50)
    assert perm.dtype == dtypes.int64 and sorted(perm.tolist()) == list(range(50)) and perm.tolist() != list(range(50))


MULTINOMIAL_ERRORS = [   # weights, num_samples, replacement, error class, message part shared with torch
    ([1.0, 2.0, 3.0], 4, False, RuntimeError, "without replacement"),
    ([1.0, 2.0, 3.0], 0, False, RuntimeError, "n_sample <= 0|must be positive"),
    ([1.0, 2.0, 3.0], 2.0, False, TypeError, "must be int"),
    ([0.0, 0.0, 0.0], 1, True, RuntimeError, "sum of probabilities <= 0"),
    ([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], 1, False, RuntimeError, "sum of probabilities <= 0"),
    ([1.0, -1.0, 3.0], 1, False, RuntimeError, "`inf`, `nan` or element < 0"),
    ([1.0, float("nan"), 3.0], 1, True, RuntimeError, "`inf`, `nan` or element < 0"),
    ([1.0, float("inf"), 3.0], 1, False, RuntimeError, "`inf`, `nan` or element < 0"),
]


@pytest.mark.parametrize("weights,count,replacement,error,message", MULTINOMIAL_ERRORS)
def test_multinomial_errors_like_torch(weights, count, replacement, error, message):
    """The class and message torch gives, for weights already on the host (raised at the call) and for lazy
    weights (raised when the samples are computed; computing them again raises again)."""
    with pytest.raises(error, match=message):
        torch.multinomial(torch.tensor(weights), count, replacement)
    message = message.replace("must be int", "must be an int")
    with pytest.raises(error, match=message):
        Tensor(weights).multinomial(count, replacement)
    if "probabilit" in message:   # an error about the values: lazy weights are checked when computed
        samples = (Tensor(weights) * 1.0).multinomial(count, replacement)
        for _ in range(2):
            with pytest.raises(error, match=message):
                samples.numpy()


def test_multinomial_zero_weights_and_empty_batch():
    """Without replacement a zero-weight category is drawn only when the others are used up (torch on CPU);
    an empty batch gives (0, num_samples)."""
    Tensor.manual_seed(1)
    for _ in range(3):
        assert sorted(Tensor([0.0, 5.0, 0.0, 1.0]).multinomial(2).tolist()) == [1, 3]
    assert sorted(Tensor([0.0, 1.0, 0.0]).multinomial(3).tolist()) == [0, 1, 2]
    assert Tensor.zeros(0, 3).multinomial(2).shape == torch.multinomial(torch.zeros(0, 3), 2).shape == (0, 2)


# ------------------------------------------------------------------------------------------------------- einsum
EINSUM = [("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ii->i", [(4, 4)]),
          ("ii", [(4, 4)]), ("ij->", [(3, 4)]), ("ij->ji", [(3, 4)]), ("i,i->", [(4,), (4,)]),
          ("i,j->ij", [(3,), (4,)]),
          ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]), ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
          ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]), ("ab,b", [(3, 4), (4,)]), ("iij->j", [(3, 3, 2)]),
          ("...i,...i->...", [(3, 4), (1, 4)]), ("ba", [(3, 4)])]


@pytest.mark.devices("CPU")
@pytest.mark.parametrize("spec,shapes", EINSUM, ids=[s for s, _ in EINSUM])
def test_einsum_matches_torch(device, spec, shapes):
    arrays = [np.random.default_rng(i).standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)]
    ours, theirs = [Tensor(a, requires_grad=True) for a in arrays], [torch.tensor(a, requires_grad=True)
                                                                     for a in arrays]
    out, tout = Tensor.einsum(spec, *ours), torch.einsum(spec, *theirs)
    check(out, tout, atol=1e-5)
    (out * out).sum().backward()
    (tout * tout).sum().backward()
    for o, t in zip(ours, theirs):
        check(o.grad, t.grad, atol=1e-4)


def test_einsum_tril_triu_roll_masked_fill(device):
    a = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    x, t = _grad_pair(a)
    parts = [(Tensor.einsum("ij,kj->ik", x, x), torch.einsum("ij,kj->ik", t, t)),
             (x.tril(), t.tril()), (x.triu(1), t.triu(1)), (x.tril(-1), t.tril(-1)),
             (x.roll(1, 1), t.roll(1, 1)), (x.roll((2, -1), (0, 1)), t.roll((2, -1), (0, 1))), (x.roll(5), t.roll(5)),
             (x.masked_fill(x > 2, -1.0), t.masked_fill(t > 2, -1.0))]
    loss, tloss = 0, 0
    for i, (ours, theirs) in enumerate(parts):
        check(ours, theirs)
        loss, tloss = loss + (ours * (i + 1)).sum(), tloss + (theirs * (i + 1)).sum()
    loss.backward()
    tloss.backward()
    check(x.grad, t.grad)


@pytest.mark.devices("CPU")
def test_einsum_errors(device):
    for spec, shapes, exc in (("ij,jk->ik", [(3, 4), (5, 2)], ValueError), ("ij->k", [(3, 4)], ValueError),
                              ("ijk", [(3, 4)], ValueError), ("ij,jk", [(3, 4)], ValueError),
                              ("i1->i", [(3, 4)], ValueError)):
        with pytest.raises(exc, match="einsum"):
            Tensor.einsum(spec, *[Tensor.ones(*s) for s in shapes])


# ------------------------------------------------------------------------------------------------ small methods
@pytest.mark.devices("CPU")
def test_small_methods_match_torch(device):
    a = np.array([[1.0, -2.0, 3.5], [0.0, 4.0, -1.0]], np.float32)
    x, t = Tensor(a), torch.tensor(a)
    assert x.to("float64").dtype == dtypes.float64 and x.to(dtype=dtypes.int32).dtype == dtypes.int32
    assert x.to(Tensor([1, 2])).dtype == dtypes.int64 and x.to("CPU") is x and x.to(None) is x
    assert x.type() == "tinyjit.FloatTensor" and Tensor([1]).type() == "tinyjit.LongTensor"
    assert x.type(dtypes.float16).dtype == dtypes.float16 and x.type_as(Tensor([True])).dtype == dtypes.bool
    assert x.dim() == t.dim() == 2 and x.numel() == 6
    assert x.new_zeros(2, 3).dtype == dtypes.float32 and x.new_ones((4,)).tolist() == [1.0] * 4
    assert Tensor([1, 2]).new_full((2,), 7).tolist() == [7, 7] and x.new_tensor([1, 2]).dtype == dtypes.float32
    check(x.t(), t.t())
    check(x.clamp(min=-1, max=2), t.clamp(min=-1, max=2))
    check(x.clamp(max=0), t.clamp(max=0))
    c = x.clone()
    assert c is not x and c.tolist() == x.tolist()
    b = np.array([[1.0, -2.0 + 1e-6, np.nan], [np.inf, 4.1, -1.0]], np.float32)
    y, u = Tensor(np.where(np.isnan(b), np.nan, b)), torch.tensor(b)
    for kwargs in ({}, {"equal_nan": True}, {"rtol": 0.05}, {"atol": 1e-5}):
        np.testing.assert_array_equal(x.isclose(y, **kwargs).numpy(), t.isclose(u, **kwargs).numpy())
        assert x.allclose(y, **kwargs) == t.allclose(u, **kwargs)
    inf = torch.tensor([np.inf, -np.inf])
    np.testing.assert_array_equal(Tensor(inf.numpy()).isclose(Tensor(inf.numpy())).numpy(), inf.isclose(inf).numpy())
    p, q = np.ones((2, 3, 4), np.float32), np.ones((2, 4, 5), np.float32)
    check(Tensor(p).bmm(Tensor(q)), torch.tensor(p).bmm(torch.tensor(q)))
    with pytest.raises(RuntimeError, match="bmm"):
        Tensor(p).bmm(Tensor(q[0]))
    with pytest.raises(RuntimeError, match="t:"):
        Tensor(p).t()
    ints = Tensor([1, 5, 2])
    assert ints.masked_fill(ints > 1, 2.7).tolist() == torch.tensor([1, 5, 2]).masked_fill(
        torch.tensor([1, 5, 2]) > 1, 2.7).tolist()
    with pytest.raises(TypeError, match="masked_fill"):
        ints.masked_fill(ints, 0)


def test_tensor_from_a_torch_tensor():
    """Tensor(torch_tensor) copies its values and dtype (also when it requires grad); a dtype NumPy lacks raises a
    TypeError naming it."""
    assert Tensor(torch.arange(3)).dtype.name == "int64" and Tensor(torch.arange(3)).tolist() == [0, 1, 2]
    np.testing.assert_array_equal(Tensor(torch.ones(2, requires_grad=True)).numpy(), [1.0, 1.0])
    assert Tensor(torch.tensor(2.5)).shape == ()
    with pytest.raises(TypeError, match="BFloat16"):
        Tensor(torch.ones(2, dtype=torch.bfloat16))
