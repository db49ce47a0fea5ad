"""The GATHER primitive (tinyjit/ops.py): an indexed load whose row comes from a loaded index value.

Values and gradients against torch for embedding, index_select, torch.gather and integer getitem on every backend
(CPU, CL, and CUDA through the emulator); the kernels it makes (a lookup and the elementwise ops after it are one
kernel, and neither direction of an embedding builds anything (lookups x rows)-sized); TinyJit replays with new
indices; index checks before any kernel runs; an index out of range reading 0 when checks are off; views of the
table, base offsets and the PACK copy of a gathered operand.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from tinyjit import Tensor, TinyJit, dtypes
from tinyjit.base_offsets import split_base_offsets
from tinyjit.helpers import prod
from tinyjit.index_check import IndexOutOfRange
from tinyjit.kernel_cache import ast_text, counters
from tinyjit.ops import REDUCE, Op, gathered_load
from tinyjit.schedule import create_schedule
import tinyjit.nn.functional as F

from codegen.kernel import Kernel

GPU_SUITE = pytest.mark.devices("CPU", "CL", "CUDAEMU")


def _rows(rng, rows: int, shape: tuple) -> np.ndarray:
    """Random row numbers with repeats: the first and last lookups pick the same row."""
    index = rng.integers(0, rows, shape)
    index.flat[0] = index.flat[-1]
    return index


# (table dtype, index dtype, index shape, rows, width, padding_idx): lookups vs rows pick the gradient's form
# (tinyjit.autograd_graph._gather): 20 lookups of 50 rows and 24 of 40 are pairwise, 30 of 6 and 12 of 5 one-hot
EMBEDDING_CASES = [
    ("float32", "int64", (4, 5), 50, 8, None),
    ("float64", "int32", (30,), 6, 3, None),
    ("float16", "int64", (2, 3, 4), 40, 8, 3),
    ("float32", "int32", (3, 4), 5, 4, 0),
]


@pytest.mark.devices("CPU", "CL")
@pytest.mark.parametrize("case", EMBEDDING_CASES)
def test_embedding_values_and_gradient_match_torch(device, case):
    _check_embedding(*case)


@pytest.mark.devices("CUDAEMU")
@pytest.mark.parametrize("case", EMBEDDING_CASES[1:3])
def test_embedding_values_and_gradient_match_torch_in_emulated_cuda(device, case):
    """Both gradient forms and both index dtypes (emulated CUDA kernels take seconds each to build)."""
    _check_embedding(*case)


def _check_embedding(table_dtype, index_dtype, shape, rows, width, padding_idx):
    rng = np.random.default_rng(rows)
    weight = rng.standard_normal((rows, width)).astype(table_dtype)
    index = _rows(rng, rows, shape).astype(index_dtype)
    if padding_idx is not None:
        index.flat[1] = padding_idx
    upstream = rng.standard_normal(shape + (width,)).astype(table_dtype)

    ours = Tensor(weight, requires_grad=True)
    out = F.embedding(Tensor(index), ours, padding_idx=padding_idx)
    (out * Tensor(upstream)).sum().backward()
    theirs = torch.tensor(weight.astype(np.float64), requires_grad=True)
    expected = torch.nn.functional.embedding(torch.from_numpy(index.astype(np.int64)), theirs,
                                             padding_idx=padding_idx)
    (expected * torch.from_numpy(upstream.astype(np.float64))).sum().backward()

    assert out.dtype == dtypes.from_any(table_dtype) and out.shape == shape + (width,)
    np.testing.assert_array_equal(out.numpy(), expected.detach().numpy().astype(table_dtype))
    tolerance = 1e-2 if table_dtype == "float16" else 1e-5
    np.testing.assert_allclose(ours.grad.numpy().astype(np.float64), theirs.grad.numpy(), rtol=tolerance,
                               atol=tolerance)


@GPU_SUITE
def test_index_select_gather_and_getitem_along_any_axis_match_torch(device):
    """The other users of GATHER: index_select and getitem along a middle axis of a transposed view (a table that is
    a view with strides), torch.gather with a full index, on a flipped table; values and gradients."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)
    pick = np.array([5, 0, 5, 2, 1, 4, 3])
    full = rng.integers(0, 6, (3, 2, 4))
    upstream = [rng.standard_normal(s).astype(np.float32) for s in ((4, 7, 3), (3, 7, 4), (3, 2, 4))]

    ours = Tensor(x, requires_grad=True)
    results = [ours.permute(2, 1, 0).index_select(1, Tensor(pick)), ours[:, Tensor(pick)],
               ours.flip(1).gather(1, Tensor(full))]
    sum(((r * Tensor(u)).sum() for r, u in zip(results, upstream)), Tensor(0.0)).backward()
    theirs = torch.tensor(x, requires_grad=True)
    expected = [theirs.permute(2, 1, 0).index_select(1, torch.from_numpy(pick)), theirs[:, torch.from_numpy(pick)],
                theirs.flip(1).gather(1, torch.from_numpy(full))]
    sum((r * torch.from_numpy(u)).sum() for r, u in zip(expected, upstream)).backward()
    for r, e in zip(results, expected):
        np.testing.assert_array_equal(r.numpy(), e.detach().numpy())
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-5, atol=1e-5)


@GPU_SUITE
def test_an_index_out_of_range_reads_zero_when_checks_are_off(device, monkeypatch):
    """INDEX_CHECK=0: an index below 0 or past the rows reads 0 (never memory outside the table: the emulated CUDA
    buffers have guard bytes), and a narrow index type is compared without wrapping (uint8 into 300 rows)."""
    monkeypatch.setenv("INDEX_CHECK", "0")
    table = np.arange(300 * 2, dtype=np.float32).reshape(300, 2)
    index = np.array([-1, 0, 299, 300, 7, -300, 1 << 40])
    expected = np.where(((index >= 0) & (index < 300))[:, None], table[np.clip(index, 0, 299)], 0)
    np.testing.assert_array_equal(F.embedding(Tensor(index), Tensor(table)).numpy(), expected)
    wide = np.array([255, 3], np.uint8)
    np.testing.assert_array_equal(F.embedding(Tensor(wide), Tensor(table)).numpy(), table[[255, 3]])


def _kernels(tensors) -> list:
    return [item for item in create_schedule([t.node for t in tensors]) if item.ast is not None]


def test_a_lookup_and_its_elementwise_consumer_are_one_kernel():
    """P4's shapes (10000 rows of 200, 20 x 20 lookups): the forward is one elementwise kernel with one gathered
    load (no reduce, nothing (lookups x rows)-sized), and the table's gradient is built without any kernel doing
    lookups x rows x width work or storing a lookups x rows buffer (the one-hot form did both)."""
    rows, width = 10000, 200
    weight = Tensor.empty(rows, width).realize()
    weight.requires_grad = True
    index = Tensor(np.random.default_rng(0).integers(0, rows, (20, 20))).realize()
    out = (F.embedding(index, weight) * 2).tanh()
    (forward,) = _kernels([out])
    nodes = forward.ast.toposort()
    assert [gathered_load(n) for n in nodes if gathered_load(n)] == [(width, rows)]
    assert not any(n.op in REDUCE for n in nodes)
    assert prod(Kernel(forward.ast).full_shape) == 400 * width

    out.sum().backward()
    backward = _kernels([weight.grad])
    one_hot_work = 400 * rows * width
    assert all(prod(Kernel(item.ast).full_shape) <= one_hot_work // 20 for item in backward)
    assert all(item.output.size < 400 * rows for item in backward)


def test_a_view_or_a_computed_table():
    """A table read through a view keeps its view (no copy kernel); a computed table gets a buffer first; a pad
    after the lookup reads 0 in the padded area."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((8, 3)).astype(np.float32)
    index = np.array([7, 0, 3, 3])
    weight = Tensor(w).realize()
    assert len(_kernels([weight.T.index_select(1, Tensor(index))])) == 1
    assert len(_kernels([(weight * 2)[Tensor(index)]])) == 2
    np.testing.assert_array_equal(weight.T.index_select(1, Tensor(index)).numpy(), w.T[:, index])
    np.testing.assert_array_equal((weight * 2)[Tensor(index)].numpy(), (w * 2)[index])
    padded = F.embedding(Tensor(index), weight).pad((1, 1, 0, 2)) + 1
    np.testing.assert_array_equal(padded.numpy(), np.pad(w[index], ((0, 2), (1, 1))) + 1)


def test_tinyjit_replays_lookups_and_gradients_with_new_indices():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((30, 4)).astype(np.float32)
    weight = Tensor(w, requires_grad=True).realize()

    @TinyJit
    def step(index):
        out = F.embedding(index, weight).tanh()
        (grad,) = (out * out).sum().gradient(weight)
        return out.realize(), grad.realize()

    for _ in range(4):   # plain runs, the capture, then replays
        index = rng.integers(0, 30, (5, 3))
        out, grad = step(Tensor(index).realize())
        theirs = torch.tensor(w, requires_grad=True)
        expected = torch.nn.functional.embedding(torch.from_numpy(index), theirs).tanh()
        (expected * expected).sum().backward()
        np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-6)
        np.testing.assert_allclose(grad.numpy(), theirs.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_out_of_range_indices_raise_before_any_kernel_runs():
    """A host index at the call; a lazy one when the forward, or the gradient alone, is realized: IndexError
    before any kernel but the check's own ran."""
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    weight = Tensor(w, requires_grad=True).realize()
    with pytest.raises(IndexError, match="embedding: index 4 is out of bounds"):
        F.embedding([0, 4], weight)
    lazy = Tensor([1, 2]).realize() * 2   # [2, 4]
    out = F.embedding(lazy, weight)
    out.sum().backward()
    launched = counters["kernels_launched"]
    with pytest.raises(IndexOutOfRange, match="embedding: index 4"):
        weight.grad.numpy()
    with pytest.raises(IndexOutOfRange, match="embedding: index 4"):
        out.numpy()
    # only the checks ran: a flag kernel per failed realize, and the lazy index itself once (nothing read the table)
    assert counters["kernels_launched"] - launched == 3
    np.testing.assert_array_equal(weight.numpy(), w)


def test_a_gathered_buffer_keeps_its_base_offset():
    """tinyjit.base_offsets: a gathered load's view says where row 0 is, not which rows it reads, so its buffer is
    never shifted (a shift by row 0's offset would move rows before it out of reach)."""
    w = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    weight = Tensor(w).realize()
    index = Tensor(np.array([0, 6, 2])).realize()
    out = weight[3:][index]
    (item,) = _kernels([out])
    canonical, shifts = split_base_offsets(item.ast)
    table = next(n.arg[0] for n in item.ast.toposort() if gathered_load(n))
    assert table >= len(shifts) or shifts[table] == 0
    assert canonical is item.ast or ast_text(canonical) != ""
    np.testing.assert_array_equal(out.numpy(), w[3:][[0, 6, 2]])


def test_a_packed_gathered_operand_of_a_matmul():
    """A lookup feeding a matmul: the CPU's PACK copy of that operand (codegen/copies.py) gathers the rows too."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((300, 64)).astype(np.float32)
    m = rng.standard_normal((64, 96)).astype(np.float32)
    index = rng.integers(0, 300, 128)
    out = F.embedding(Tensor(index), Tensor(w)) @ Tensor(m)
    np.testing.assert_allclose(out.numpy(), w[index] @ m, rtol=1e-4, atol=1e-4)


def test_the_cache_key_names_the_gather():
    """Two kernels that differ only in the table's number of rows differ in the disk cache's key."""
    index = Tensor(np.array([1, 0])).realize()
    keys = {ast_text(_kernels([Tensor.empty(rows, 2).realize()[index]])[0].ast) for rows in (3, 4)}
    assert len(keys) == 2 and all("Gather(row_stride=2" in key for key in keys)
    assert any(n.op is Op.LOAD and n.src for n in _kernels([Tensor.empty(3, 2).realize()[index]])[0].ast.toposort())


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_gather_along_any_axis_of_broadcast_indices_matches_torch(data):
    """torch.gather with random shapes, axis and an index broadcast along some dims (the gradient computes on the
    index before its broadcast) or along the gathered one; values and gradients. Either gradient form may come."""
    ndim = data.draw(st.integers(1, 3))
    shape = list(data.draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    axis = data.draw(st.integers(0, ndim - 1))
    shape[axis] = data.draw(st.sampled_from([1, 3, 40]))   # many rows: the pairwise gradient
    shape = tuple(shape)
    index_shape = tuple(data.draw(st.integers(1, 6)) if d == axis else s for d, s in enumerate(shape))
    broadcast = tuple(data.draw(st.booleans()) for _ in shape)
    seed = data.draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    narrow_shape = tuple(1 if b else s for b, s in zip(broadcast, index_shape))
    narrow = rng.integers(0, shape[axis], narrow_shape)
    upstream = rng.standard_normal(index_shape).astype(np.float32)

    ours = Tensor(x, requires_grad=True)
    out = ours.gather(axis, Tensor(narrow).expand(*index_shape))
    (out * Tensor(upstream)).sum().backward()
    theirs = torch.tensor(x, requires_grad=True)
    expected = theirs.gather(axis, torch.from_numpy(narrow).expand(*index_shape))
    (expected * torch.from_numpy(upstream)).sum().backward()
    np.testing.assert_array_equal(out.numpy(), expected.detach().numpy())
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_gradient_of_an_index_broadcast_along_the_gathered_axis():
    """Every position along the axis reads the same rows (the index broadcast along it): the pairwise gradient must
    not take the index before that broadcast for one with `positions` entries along the axis."""
    x = np.random.default_rng(5).standard_normal((50, 3)).astype(np.float32)
    ours, theirs = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ours.gather(0, Tensor([[7, 1, 7]]).expand(4, 3)).sum().backward()
    theirs.gather(0, torch.tensor([[7, 1, 7]]).expand(4, 3)).sum().backward()
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())


@pytest.mark.parametrize("rows, lookups", [(50, 6), (4, 30)])   # the pairwise and the one-hot gradient
def test_an_infinite_gradient_stays_in_its_row(rows, lookups):
    """The scatter-add selects terms (never multiplies a term by a 0/1 one-hot): an inf or NaN upstream gradient
    reaches only the row its lookup read, as in torch."""
    rng = np.random.default_rng(6)
    w = rng.standard_normal((rows, 3)).astype(np.float32)
    index = _rows(rng, rows, (lookups,))
    upstream = rng.standard_normal((lookups, 3)).astype(np.float32)
    upstream[1, 0], upstream[2, 1] = np.inf, np.nan
    ours, theirs = Tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
    (F.embedding(Tensor(index), ours) * Tensor(upstream)).sum().backward()
    (torch.nn.functional.embedding(torch.from_numpy(index), theirs) * torch.from_numpy(upstream)).sum().backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-5, atol=1e-6)
