"""More of the PyTorch tensor API that ports hit (selection, scatter, math), each compared with torch: the values,
and for float ops the gradients, on a few shapes, dims (negative too) and dtypes; and torch's error classes.

Most tests run on CPU only (the ops are compositions of existing primitives, whose backends are tested elsewhere);
a few run on CPU and CL.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tinyjit.pytorch as tj
from tinyjit import Tensor, dtypes

RNG = np.random.default_rng(0)


def values(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def check(ours, theirs, atol=1e-5, rtol=1e-5):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    got = ours.numpy() if isinstance(ours, Tensor) else np.asarray(ours)
    assert got.shape == theirs.shape, (got.shape, theirs.shape)
    assert got.dtype == theirs.dtype, (got.dtype, theirs.dtype)
    np.testing.assert_allclose(got.astype(np.float64), theirs.astype(np.float64), atol=atol, rtol=rtol)


def compare(fn, *arrays, grad=True, atol=1e-5, rtol=1e-5, torch_fn=None):
    """fn(*tensors) with tinyjit and torch on the same arrays: the values, and (grad) the gradients of a weighted
    sum of the result with respect to every float input."""
    torch_fn = torch_fn or fn
    ours = [Tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    theirs = [torch.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    out, expected = fn(*ours), torch_fn(*theirs)
    check(out, expected, atol, rtol)
    if grad and expected.requires_grad:
        weights = values(*expected.shape, dtype=np.float64).astype(expected.detach().numpy().dtype)
        (out * Tensor(weights)).sum().backward()
        (expected * torch.tensor(weights)).sum().backward()
        for o, t in zip(ours, theirs):
            if t.requires_grad:
                check(o.grad, t.grad, atol, rtol)
    return out


# ------------------------------------------------------------------------------------------------ views & picks
def test_narrow_movedim_swapaxes_unbind(device):
    a = values(2, 3, 4)
    compare(lambda x: x.narrow(-1, 1, 2) * 1, a)
    compare(lambda x: x.narrow(0, -1, 1) * 1, a)
    compare(lambda x: x.movedim(0, -1) * 1, a)
    compare(lambda x: x.movedim((0, 1), (2, 0)) * 1, a)
    compare(lambda x: x.moveaxis(-1, 0) * 1, a)
    compare(lambda x: x.swapaxes(0, -1) * 1, a)
    compare(lambda x: x.swapdims(1, 2) * 1, a)
    compare(lambda x: tj.stack([p * (i + 1) for i, p in enumerate(x.unbind(1))], -1) if isinstance(x, Tensor)
            else torch.stack([p * (i + 1) for i, p in enumerate(x.unbind(1))], -1), a)
    assert len(Tensor(a).unbind(-1)) == 4 and Tensor(a).unbind(-1)[0].shape == (2, 3)


@pytest.mark.devices("CPU")
def test_view_errors(device):
    x = Tensor(values(2, 3))
    with pytest.raises(RuntimeError):
        x.narrow(1, 2, 2)
    with pytest.raises(IndexError):
        x.narrow(2, 0, 1)
    with pytest.raises(RuntimeError):
        x.movedim((0, 1), (0,))
    with pytest.raises(RuntimeError):
        x.movedim((0, 0), (0, 1))
    with pytest.raises(RuntimeError):
        x.diagonal(0, 1, -1)
    with pytest.raises(RuntimeError):
        Tensor(values(2, 2, 2)).diag()
    with pytest.raises(RuntimeError):
        x.unfold(1, 4, 1)
    with pytest.raises(RuntimeError):
        x.unfold(1, 2, 0)
    with pytest.raises(IndexError):
        Tensor(1.0).unbind()


@pytest.mark.devices("CPU")
def test_diagonal_diag_trace(device):
    a = values(3, 4, 5)
    for offset, d1, d2 in ((0, 0, 1), (1, 1, 2), (-2, -1, 0), (2, 2, -3), (7, 0, 1)):
        compare(lambda x: x.diagonal(offset, d1, d2) * 1, a)
    compare(lambda x: x.diagonal(dim1=-2, dim2=-1) * 1, a)
    for k in (0, 2, -1):
        compare(lambda x: x.diag(k), a[0, 0])
        compare(lambda x: x.diag(k) * 1, a[0])
    compare(lambda x: x.trace(), a[0])
    ints = np.arange(12, dtype=np.int32).reshape(3, 4)
    compare(lambda x: x.trace(), ints, grad=False)     # int64, like torch
    compare(lambda x: x.diag(1), ints[0], grad=False)
    with pytest.raises(RuntimeError):
        Tensor(a).trace()


@pytest.mark.devices("CPU")
def test_unfold(device):
    a = values(3, 7)
    for dim, size, step in ((1, 3, 2), (-1, 7, 1), (0, 2, 1), (1, 2, 5), (-2, 1, 3)):
        compare(lambda x: x.unfold(dim, size, step) * 1, a)
    check(Tensor(2.0).unfold(0, 1, 1), torch.tensor(2.0).unfold(0, 1, 1))


def test_index_select_take(device):
    a = values(3, 5)
    idx = np.array([4, 0, 4, 2], np.int64)
    compare(lambda x, i: x.index_select(1, i), a, idx)
    compare(lambda x, i: x.index_select(-2, i[1:3] // 2), a, idx)
    compare(lambda x, i: x.index_select(0, i), np.arange(6, dtype=np.int32), idx, grad=False)
    compare(lambda x, i: x.take(i), a, np.array([[0, -1], [14, 3]], np.int64))
    compare(lambda x, i: tj.index_select(x, 0, i) if isinstance(x, Tensor) else torch.index_select(x, 0, i),
            a, np.array(2, np.int64))


@pytest.mark.devices("CPU")
def test_index_errors(device):
    x = Tensor(values(3, 5))
    with pytest.raises(IndexError):
        x.index_select(1, Tensor([5])).numpy()
    with pytest.raises(IndexError):
        x.index_select(1, Tensor([-1])).numpy()          # torch: negative indices are out of range here
    with pytest.raises(IndexError):
        x.index_select(1, Tensor([[1]]))
    with pytest.raises(TypeError):
        x.index_select(1, Tensor([1.0]))
    with pytest.raises(IndexError):
        x.take(Tensor([15])).numpy()
    with pytest.raises(IndexError):
        Tensor(2.0).index_select(0, Tensor([0, 0]))
    check(Tensor(2.0).index_select(0, Tensor([0])), torch.tensor(2.0).index_select(0, torch.tensor([0])))


@pytest.mark.devices("CPU")
def test_repeat_interleave(device):
    a = values(2, 3)
    compare(lambda x: x.repeat_interleave(2), a)
    compare(lambda x: x.repeat_interleave(3, dim=-1), a)
    compare(lambda x: x.repeat_interleave(2, 0), a)
    compare(lambda x, r: x.repeat_interleave(r, dim=1), a, np.array([1, 0, 3], np.int64))
    compare(lambda x, r: x.repeat_interleave(r, 0), a, np.array([2], np.int64))
    compare(lambda x, r: x.repeat_interleave(r), a, np.array([1, 2, 0, 1, 1, 2], np.int64))
    check(Tensor([2, 0, 1]).repeat_interleave(), torch.repeat_interleave(torch.tensor([2, 0, 1])))
    check(tj.repeat_interleave(Tensor([2, 0, 1])), torch.repeat_interleave(torch.tensor([2, 0, 1])))
    check(tj.repeat_interleave(Tensor([1, 2]), 2), torch.repeat_interleave(torch.tensor([1, 2]), 2))
    with pytest.raises(RuntimeError):
        Tensor(a).repeat_interleave(Tensor([1, 2]), dim=1)
    with pytest.raises(RuntimeError):
        Tensor(a).repeat_interleave(-1)


@pytest.mark.devices("CPU")
def test_nonzero_argwhere_masked_select(device):
    a = np.array([[0, 1.5, 0], [np.nan, 0, -2]], np.float32)
    check(Tensor(a).nonzero(), torch.tensor(a).nonzero())
    check(Tensor(a).argwhere(), torch.tensor(a).argwhere())
    for ours, theirs in zip(Tensor(a).nonzero(as_tuple=True), torch.tensor(a).nonzero(as_tuple=True)):
        check(ours, theirs)
    check(Tensor(3).nonzero(), torch.tensor(3).nonzero())
    check(tj.nonzero(Tensor(np.zeros((2, 2), np.int32))), torch.nonzero(torch.zeros(2, 2, dtype=torch.int32)))
    b = values(2, 3)
    mask = np.array([True, False, True])
    compare(lambda x, m: x.masked_select(m), b, mask)
    compare(lambda x, m: x.masked_select(m), b[0], np.array([[True], [False]]))   # broadcast both ways
    with pytest.raises(RuntimeError):
        Tensor(b).masked_select(Tensor([1, 0, 1]))


@pytest.mark.devices("CPU")
def test_meshgrid(device):
    x, y, z = np.arange(3, dtype=np.float32), np.arange(4, dtype=np.float32) * 2, np.array([5.0], np.float32)
    for indexing in ("ij", "xy"):
        ours = tj.meshgrid(Tensor(x), Tensor(y), Tensor(z), indexing=indexing)
        theirs = torch.meshgrid(torch.tensor(x), torch.tensor(y), torch.tensor(z), indexing=indexing)
        for o, t in zip(ours, theirs):
            check(o, t)
    for o, t in zip(tj.meshgrid([Tensor(x), Tensor(y)]), torch.meshgrid([torch.tensor(x), torch.tensor(y)],
                                                                          indexing="ij")):
        check(o, t)
    with pytest.raises(RuntimeError):
        tj.meshgrid(Tensor(x), Tensor(np.arange(2)))
    with pytest.raises(ValueError):
        tj.meshgrid(Tensor(x), indexing="yx")


# ----------------------------------------------------------------------------------------------------- scatter
@pytest.mark.devices("CPU")
def test_scatter_add_and_reduce(device):
    base, src = values(3, 5), values(2, 4)
    index = np.array([[0, 2, 2, 1], [2, 2, 0, 0]], np.int64)
    compare(lambda x, i, s: x.scatter_add(0, i, s), base, index, src)
    compare(lambda x, i, s: x.scatter_add(-1, i, s), base, index + 1, src)
    for reduce in ("sum", "prod", "mean", "amax", "amin"):
        for include_self in (True, False):
            compare(lambda x, i, s: x.scatter_reduce(0, i, s, reduce, include_self=include_self), base, index,
                    src)


@pytest.mark.devices("CPU")
def test_scatter_replace_and_ints(device):
    base, src = values(3, 5), values(2, 5)
    index = np.array([[0, 1, 2, 0, 1], [2, 0, 1, 1, 2]], np.int64)   # no duplicates along dim 0 per column
    compare(lambda x, i, s: x.scatter(0, i, s), base, index, src)
    compare(lambda x, i: x.scatter(1, i, 2.5), base, index[:, :3] + 2)
    compare(lambda x, i: x.scatter(1, i, value=-1.0), base, index[:, :2])
    ints, int_src = np.arange(15, dtype=np.int32).reshape(3, 5), np.arange(10, dtype=np.int32).reshape(2, 5)
    compare(lambda x, i, s: x.scatter_add(0, i, s), ints, index, int_src, grad=False)
    for reduce in ("sum", "prod", "mean", "amax", "amin"):
        compare(lambda x, i, s: x.scatter_reduce(1, i, s, reduce), ints, index, int_src, grad=False)
    compare(lambda x, i, s: x.scatter(0, i, s, reduce="add"), ints, index, int_src, grad=False)
    compare(lambda x, i, s: x.scatter(0, i, s, reduce="multiply"), ints, index, int_src, grad=False)


@pytest.mark.devices("CPU")
def test_scatter_index_add_errors(device):
    x = Tensor(values(3, 5))
    with pytest.raises(IndexError):
        x.scatter_add(0, Tensor([[3]]), Tensor([[1.0]])).numpy()
    with pytest.raises(RuntimeError):
        x.scatter_add(0, Tensor([[0]]), Tensor([[1]], dtype=dtypes.int32))
    with pytest.raises(RuntimeError):
        x.scatter_add(0, Tensor([0]), Tensor([1.0]))
    with pytest.raises(RuntimeError):
        x.scatter_reduce(0, Tensor([[0]]), Tensor([[1.0]]), "max")
    with pytest.raises(RuntimeError):
        x.index_add(0, Tensor([0, 1]), Tensor(values(2, 4)))
    with pytest.raises(IndexError):
        x.index_add(1, Tensor([5]), Tensor(values(3, 1))).numpy()


def test_index_add(device):
    base, src = values(4, 3), values(4, 5)
    index = np.array([2, 0, 2, 1, 0], np.int64)
    compare(lambda x, i, s: x.index_add(0, i[:3] % 4, s[:3, :3]), base, index, src)
    compare(lambda x, i, s: x.index_add(-1, i % 3, s, alpha=0.5), base, index, src)
    ints = np.arange(12, dtype=np.int64).reshape(4, 3)
    compare(lambda x, i: x.index_add(1, i[:2], x[:, :2], alpha=2), ints, index, grad=False)


@pytest.mark.devices("CPU")
def test_inplace_scatter_forms(device):
    base, src, index = values(3, 4), values(1, 4), np.array([[2, 0, 1, 2]], np.int64)
    ours, theirs = Tensor(base), torch.tensor(base)
    ours.scatter_add_(0, Tensor(index), Tensor(src))
    theirs.scatter_add_(0, torch.tensor(index), torch.tensor(src))
    ours.index_add_(1, Tensor([1, 1]), Tensor(base[:, :2]))
    theirs.index_add_(1, torch.tensor([1, 1]), torch.tensor(base[:, :2]))
    ours.scatter_(0, Tensor(index), Tensor(src * 3))
    theirs.scatter_(0, torch.tensor(index), torch.tensor(src * 3))
    ours.scatter_reduce_(0, Tensor(index), Tensor(src), "amax")
    theirs.scatter_reduce_(0, torch.tensor(index), torch.tensor(src), "amax")
    check(ours, theirs)


# -------------------------------------------------------------------------------------------------------- math
def test_remainder_fmod_signs(device):
    a = np.array([5.5, -5.5, 5.5, -5.5, 0.0, 7.0, -1e10, 3.25], np.float32)
    b = np.array([2.0, 2.0, -2.0, -2.0, 3.0, 7.0, 3.0, -0.5], np.float32)
    for name in ("remainder", "fmod"):
        compare(lambda x, y: getattr(x, name)(y), a, b)
        compare(lambda x: getattr(x, name)(-1.5), a)
        ai, bi = np.array([7, -7, 7, -7, 0, 9], np.int64), np.array([3, 3, -3, -3, 5, 9], np.int64)
        compare(lambda x, y: getattr(x, name)(y), ai, bi, grad=False)
        compare(lambda x, y: getattr(x, name)(y), ai.astype(np.int32), bi.astype(np.int32), grad=False)
        compare(lambda x: getattr(x, name)(-4), ai, grad=False)


@pytest.mark.devices("CPU")
def test_atan2_hypot_logaddexp(device):
    y, x = values(4, 6), values(4, 6)
    x[0, :3] = 0
    compare(lambda a, b: a.atan2(b), y, x, atol=2e-6)
    compare(lambda a, b: a.atan2(b), y[:1], x, atol=2e-6)                  # broadcast
    compare(lambda a, b: a.hypot(b), y, x)
    compare(lambda a, b: a.logaddexp(b), y, x * 30)
    special = np.array([0.0, -0.0, 0.0, -0.0, np.inf, -np.inf, np.inf, 1.0, np.nan, 3.0, -2.0], np.float32)
    other = np.array([0.0, 0.0, -0.0, -1.0, np.inf, np.inf, -np.inf, -np.inf, 1.0, 0.0, -np.inf], np.float32)
    compare(lambda a, b: a.atan2(b), special, other, grad=False)
    compare(lambda a, b: a.hypot(b), special, other, grad=False)
    compare(lambda a, b: a.logaddexp(b), special, other, grad=False)
    d = values(50, dtype=np.float64) * 10
    compare(lambda a, b: a.atan2(b), d, d[::-1].copy(), atol=1e-15, rtol=1e-14)
    compare(lambda a, b: a.atan2(b), np.arange(-3, 3, dtype=np.int64), np.array([2, -1, 0, 0, 1, -2]), grad=False)
    with pytest.raises(RuntimeError):
        Tensor([1, 2]).hypot(Tensor([3, 4]))
    with pytest.raises(RuntimeError):
        Tensor([1, 2]).logaddexp(Tensor([3, 4]))


@pytest.mark.devices("CPU")
def test_frac_nan_to_num_nansum_nanmean(device):
    a = np.array([[1.75, -2.5, np.nan, np.inf], [-np.inf, 0.0, 3.0, -0.25]], np.float32)
    compare(lambda x: x.frac(), a[:, [0, 1, 3]].copy())
    compare(lambda x: x.nan_to_num(), a)
    compare(lambda x: x.nan_to_num(nan=1.0, posinf=5.0, neginf=-5.0), a)
    compare(lambda x: x.nan_to_num(2.0), a.astype(np.float64))
    compare(lambda x: x.nan_to_num(), np.array([1, 2], np.int32), grad=False)
    finite = np.where(np.isinf(a), 1.0, a).astype(np.float32)
    for dim in (None, 0, -1, (0, 1)):
        compare(lambda x: x.nansum(dim) if dim is not None else x.nansum(), finite)
        compare(lambda x: x.nanmean(dim) if dim is not None else x.nanmean(), finite)
    compare(lambda x: x.nansum(1, keepdim=True), finite)
    # (all NaN: torch's gradient is NaN there, 0 * (1 / 0); here 0)
    compare(lambda x: x.nanmean(0), np.array([[np.nan], [np.nan]], np.float32), grad=False)
    compare(lambda x: x.nansum(), np.array([1, 2], np.int32), grad=False)
    with pytest.raises(RuntimeError):
        Tensor([1, 2]).frac()
    with pytest.raises(RuntimeError):
        Tensor([1, 2]).nanmean()


@pytest.mark.devices("CPU")
def test_norm_count_nonzero(device):
    a = values(3, 4)
    a[1] = 0
    for p in (2, "fro", 1, math.inf, -math.inf, 0, 3, 0.5):
        for dim, keepdim in ((None, False), (1, False), (-2, True), ((0, 1), False)):
            # (p = 0, 0.5 and -inf: torch's gradients at the zero row are None, inf or NaN; values only)
            compare(lambda x: x.norm(p, dim, keepdim), a, grad=p in (2, "fro", 1, math.inf, 3))
    compare(lambda x: x.norm(), a.astype(np.float16), grad=False, atol=1e-2, rtol=1e-3)
    check(Tensor(a).count_nonzero(), torch.tensor(a).count_nonzero())
    check(Tensor(a).count_nonzero(1), torch.tensor(a).count_nonzero(1))
    check(tj.count_nonzero(Tensor(a), dim=(0, 1)), torch.count_nonzero(torch.tensor(a), dim=(0, 1)))
    with pytest.raises(RuntimeError):
        Tensor([1, 2]).norm()
    with pytest.raises(RuntimeError):
        Tensor(a).norm("nuc")


@pytest.mark.devices("CPU")
def test_outer_addmm_baddbmm(device):
    compare(lambda x, y: x.outer(y), values(3), values(4))
    compare(lambda x, y: x.outer(y), np.arange(3, dtype=np.int64), np.arange(2, dtype=np.int32), grad=False)
    compare(lambda c, a, b: c.addmm(a, b), values(3, 5), values(3, 4), values(4, 5))
    compare(lambda c, a, b: c.addmm(a, b, beta=0.5, alpha=2.0), values(5), values(3, 4), values(4, 5))
    nan_input = np.full((3, 5), np.nan, np.float32)
    compare(lambda c, a, b: c.addmm(a, b, beta=0), nan_input, values(3, 4), values(4, 5))
    compare(lambda c, a, b: c.baddbmm(a, b, alpha=-1.0), values(2, 3, 5), values(2, 3, 4), values(2, 4, 5))
    compare(lambda c, a, b: tj.baddbmm(c, a, b, beta=2) if isinstance(c, Tensor) else torch.baddbmm(c, a, b, beta=2),
            values(1, 5), values(2, 3, 4), values(2, 4, 5))
    with pytest.raises(RuntimeError):
        Tensor(values(3)).outer(Tensor(values(2, 2)))
    with pytest.raises(RuntimeError):
        Tensor(values(3, 5)).addmm(Tensor(values(3, 4)), Tensor(values(3, 5)))


@pytest.mark.devices("CPU")
def test_cumprod_diff(device):
    a = values(3, 5)
    a[1, 2] = 0   # exact gradients through a zero
    compare(lambda x: x.cumprod(1), a)
    compare(lambda x: x.cumprod(-2), a)
    compare(lambda x: x.cumprod(0), np.arange(1, 7, dtype=np.int32), grad=False)   # int64
    compare(lambda x: x.cumprod(0, dtype=torch.float64 if isinstance(x, torch.Tensor) else dtypes.float64), a)
    compare(lambda x: x.diff(), a)
    compare(lambda x: x.diff(2, 0), a)
    compare(lambda x: x.diff(n=3, dim=-1, prepend=x[:, :1], append=x[:, :2]), a)
    compare(lambda x: x.diff(9), a)
    compare(lambda x: x.diff(), np.array([True, False, False, True]), grad=False)
    compare(lambda x: x.diff(dim=0), np.array([[3, 1], [1, 7]], np.int32), grad=False)
    with pytest.raises(RuntimeError):
        Tensor(1.0).diff()


@pytest.mark.devices("CPU")
def test_median(device):
    a = RNG.permutation(20).astype(np.float32).reshape(4, 5)   # distinct values: the index is unique
    compare(lambda x: x.median(), a)
    for dim, keepdim in ((1, False), (0, True), (-1, True), (-2, False)):
        compare(lambda x: x.median(dim, keepdim).values, a)
        check(Tensor(a).median(dim, keepdim).indices, torch.tensor(a).median(dim, keepdim).indices)
    with_nan = a.copy()
    with_nan[2, 3] = np.nan
    check(Tensor(with_nan).median(), torch.tensor(with_nan).median())
    ours, theirs = Tensor(with_nan).median(1), torch.tensor(with_nan).median(1)
    check(ours.values, theirs.values)
    check(ours.indices, theirs.indices)
    check(Tensor(np.array([4, 1, 3, 2], np.int32)).median(), torch.tensor([4, 1, 3, 2], dtype=torch.int32).median())
    assert type(Tensor(a).median(0)).__name__ == "median"
    with pytest.raises(IndexError):
        Tensor(a).median(2)


@pytest.mark.devices("CPU")
def test_cross(device):
    a, b = values(4, 3), values(4, 3)
    compare(lambda x, y: x.cross(y, dim=1), a, b)
    compare(lambda x, y: x.cross(y, dim=-1), a, b[:1])
    compare(lambda x, y: tj.cross(x, y) if isinstance(x, Tensor) else torch.linalg.cross(x, y, dim=0), a.T.copy(),
            b.T.copy())
    compare(lambda x, y: x.cross(y, dim=0), np.arange(3, dtype=np.int64), np.array([2, 0, 1], np.int64), grad=False)
    with pytest.raises(RuntimeError):
        Tensor(values(4, 2)).cross(Tensor(values(4, 2)))


@pytest.mark.devices("CPU")
def test_torch_namespace_forwards_the_new_names(device):
    x = values(3, 4)
    check(tj.narrow(Tensor(x), 1, 0, 2) * 1, torch.narrow(torch.tensor(x), 1, 0, 2))
    check(tj.movedim(Tensor(x), 0, 1) * 1, torch.movedim(torch.tensor(x), 0, 1))
    check(tj.atan2(Tensor(x), Tensor(x[::-1].copy())), torch.atan2(torch.tensor(x), torch.tensor(x[::-1].copy())))
    check(tj.norm(Tensor(x), 1, 1), torch.norm(torch.tensor(x), 1, 1))
    check(tj.diagonal(Tensor(x), 1) * 1, torch.diagonal(torch.tensor(x), 1))
    check(tj.cumprod(Tensor(x), dim=1), torch.cumprod(torch.tensor(x), dim=1))


@pytest.mark.devices("CPU")
def test_half_and_double_dtypes(device):
    a, b = values(3, 4), values(3, 4)
    for dtype, atol in ((np.float16, 2e-3), (np.float64, 1e-12)):
        x, y = a.astype(dtype), b.astype(dtype)
        for fn in (lambda p, q: p.atan2(q), lambda p, q: p.hypot(q), lambda p, q: p.logaddexp(q),
                   lambda p, q: p.remainder(q), lambda p, q: p.fmod(q), lambda p, q: p.cross(q, dim=0)):
            compare(fn, x, y, grad=False, atol=atol, rtol=atol)
        for fn in (lambda p: p.cumprod(1), lambda p: p.norm(), lambda p: p.norm(1, -1), lambda p: p.frac(),
                   lambda p: p.nansum(0), lambda p: p.median(1).values, lambda p: p.diff(dim=0)):
            compare(fn, x, grad=False, atol=atol, rtol=atol)
