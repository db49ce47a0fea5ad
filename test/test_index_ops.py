"""Index ops against PyTorch: gather along every dim of 2-d to 5-d inputs (values and gradients), the one-hot
compares of gather/one_hot/cross_entropy/Embedding for index dtypes narrower than the indexed size, and
out-of-range indices, which raise IndexError (at the call for host values, in the realize
that computes the op for lazy or device tensors, on TinyJit replays too) instead of picking zeros."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyjit import Tensor, TinyJit, nn, realize
from tinyjit.index_check import IndexOutOfRange

pytestmark = pytest.mark.usefixtures("device")   # each test runs on each selected device (test/conftest.py)

# (input shape, index shape) per dim: index sizes up to the input's off `dim`, any size along it
GATHER_CASES = [((3, 4), (2, 4), 0), ((3, 4), (3, 6), 1), ((3, 3, 3), (3, 3, 3), 0), ((3, 3, 3), (2, 3, 1), 1),
                ((2, 3, 4), (2, 2, 5), 2), ((2, 3, 2, 3), (3, 2, 2, 1), 0), ((2, 3, 2, 3), (2, 4, 1, 3), 1),
                ((2, 3, 2, 3), (1, 3, 3, 2), 2), ((2, 3, 2, 3), (2, 2, 2, 4), 3), ((2, 2, 3, 2, 2), (3, 1, 2, 2, 2), 0),
                ((2, 2, 3, 2, 2), (2, 3, 3, 1, 2), 1), ((2, 2, 3, 2, 2), (2, 2, 4, 2, 1), 2),
                ((2, 2, 3, 2, 2), (1, 2, 3, 3, 2), 3), ((2, 2, 3, 2, 2), (2, 1, 2, 2, 3), 4)]


@pytest.mark.parametrize("shape,index_shape,dim", GATHER_CASES, ids=[f"{len(s)}d-dim{d}" for s, _, d in GATHER_CASES])
def test_gather_every_dim(shape, index_shape, dim):
    rng = np.random.default_rng(len(shape) * 10 + dim)
    a = rng.standard_normal(shape).astype(np.float32)
    idx = rng.integers(0, shape[dim], index_shape)
    x = Tensor(a, requires_grad=True)
    out = x.gather(dim, Tensor(idx))
    upstream = rng.standard_normal(index_shape).astype(np.float32)
    out.backward(Tensor(upstream))
    t = torch.tensor(a, requires_grad=True)
    ref = t.gather(dim, torch.tensor(idx))
    ref.backward(torch.tensor(upstream))
    np.testing.assert_array_equal(out.numpy(), ref.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-6, atol=1e-6)
    # negative dims name the same axis
    np.testing.assert_array_equal(Tensor(a).gather(dim - len(shape), Tensor(idx)).numpy(), ref.detach().numpy())


def test_gather_int_input_and_narrow_index_dtypes():
    """A uint8 index into 300 rows must not wrap when compared with arange(300); int inputs stay exact."""
    a = np.arange(600, dtype=np.int32).reshape(300, 2) * 7919
    idx = np.array([[5, 299], [255, 0]], np.int16)
    ref = torch.tensor(a).gather(0, torch.tensor(idx).long()).numpy()
    np.testing.assert_array_equal(Tensor(a).gather(0, Tensor(idx)).numpy(), ref)
    small = np.array([[5, 6], [255, 1]], np.uint8)
    np.testing.assert_array_equal(Tensor(a).gather(0, Tensor(small)).numpy(),
                                  torch.tensor(a).gather(0, torch.tensor(small.astype(np.int64))).numpy())
    # one_hot, cross_entropy and Embedding with uint8 indices and more than 256 classes
    np.testing.assert_array_equal(Tensor(small).one_hot(300).numpy(),
                                  F.one_hot(torch.tensor(small).long(), 300).numpy())
    logits = np.random.default_rng(0).standard_normal((2, 300)).astype(np.float32)
    target = np.array([44, 255], np.uint8)
    np.testing.assert_allclose(Tensor(logits).cross_entropy(Tensor(target)).numpy(),
                               F.cross_entropy(torch.tensor(logits), torch.tensor(target).long()).numpy(), rtol=1e-5)
    emb = nn.Embedding(300, 3)
    np.testing.assert_array_equal(emb(Tensor(np.array([44], np.uint8))).numpy(), emb.weight.numpy()[[44]])


X = np.arange(6, dtype=np.float32).reshape(2, 3)


def _kernels():
    return realize.counters["kernels_launched"]


# the cases: every op with an out-of-range host index raises at the call, before any kernel runs
HOST_CASES = {
    "getitem list": lambda: Tensor(X)[[5]],
    "getitem negative": lambda: Tensor(X)[[-3]],
    "getitem array second dim": lambda: Tensor(X)[:, np.array([0, 3])],
    "getitem two arrays": lambda: Tensor(X)[[0, 1], [2, 7]],
    "gather": lambda: Tensor(X).gather(1, Tensor([[5], [0]])),
    "gather negative": lambda: Tensor(X).gather(1, Tensor([[-1], [0]])),
    "cross_entropy": lambda: Tensor(X).cross_entropy(Tensor([7, 0])),
    "cross_entropy negative": lambda: Tensor(X).cross_entropy(Tensor([-1, 0])),
    "nll_loss": lambda: Tensor(X).log_softmax(1).nll_loss(Tensor([0, 3])),
    "one_hot": lambda: Tensor([5]).one_hot(3),
    "one_hot negative": lambda: Tensor([-1, 0]).one_hot(3),
    "embedding": lambda: nn.Embedding(4, 2)(Tensor([9])),
    "embedding list": lambda: nn.Embedding(4, 2)([[1, 9]]),
    "embedding negative": lambda: nn.Embedding(4, 2)(Tensor([-1])),
}


@pytest.mark.parametrize("name", list(HOST_CASES))
def test_out_of_range_host_index_raises_at_the_call(name, device):
    """On the CPU at the call, before any kernel runs; on CL, where index tensors are device buffers, lists and
    arrays still raise at the call, tensors in the realize (by a kernel)."""
    before = _kernels()
    with pytest.raises(IndexError, match="out of bounds") as info:
        out = HOST_CASES[name]()
        assert device != "CPU", "no error at the call"
        out.numpy()
    assert isinstance(info.value, RuntimeError)   # gather and one_hot raise RuntimeError in PyTorch
    if device == "CPU" or "list" in name or "array" in name:
        assert _kernels() == before, "the error came after running kernels"


def test_error_names_the_op_the_value_and_the_size():
    with pytest.raises(IndexError, match=r"getitem: index 5 is out of bounds for dimension 0 with size 2"):
        Tensor(X)[[5]]
    with pytest.raises(IndexError, match=r"gather: index 5 is out of bounds for dimension 1 with size 3 "
                                         r"\(valid: 0 to 2\)"):
        Tensor(X).gather(1, Tensor([[5], [0]]) + 0).numpy()
    with pytest.raises(IndexError, match=r"cross_entropy: target 7 is out of bounds for 3 classes \(valid: 0 to 2, "
                                         r"or -100\)"):
        Tensor(X).cross_entropy(Tensor([7, 0])).numpy()
    with pytest.raises(IndexError, match=r"the bad values range from -9 to 12"):
        Tensor.ones(3, 4)[Tensor([0, 12, -9, 1]) + 0].numpy()


LAZY_CASES = {   # the same ops with indices computed on the device (valid: 0..2), checked when realized
    "getitem": lambda i: Tensor(X).T[i.reshape(2)],
    "gather": lambda i: Tensor(X).gather(1, i),
    "cross_entropy": lambda i: Tensor(X).cross_entropy(i.reshape(2)),
    "one_hot": lambda i: i.one_hot(3),
    "embedding": lambda i: nn.Embedding(3, 2)(i),
}


@pytest.mark.parametrize("name", list(LAZY_CASES))
def test_out_of_range_lazy_index_raises_when_realized(name):
    bad = Tensor([[2], [1]]) + Tensor([[3], [0]])          # lazy [[5], [1]]
    out = LAZY_CASES[name](bad)                             # building the graph does not raise
    with pytest.raises(IndexOutOfRange, match="out of bounds"):
        out.numpy()
    with pytest.raises(IndexOutOfRange):                    # and does not turn into zeros on a second try
        out.numpy()
    good = LAZY_CASES[name](Tensor([[2], [1]]) + Tensor([[0], [0]]))
    good.numpy()


def test_lazy_check_runs_before_anything_is_written():
    """An assign whose value reads a bad index leaves its target untouched."""
    target = Tensor.zeros(2, 1).realize()
    memory = target.node.buffer
    target.assign(Tensor(X).gather(1, Tensor([[2], [1]]) * 3))
    with pytest.raises(IndexOutOfRange):
        target.realize()
    np.testing.assert_array_equal(memory.numpy(), [0, 0])


def test_gradient_alone_is_checked():
    """backward() builds a graph that reads the index but not the forward result: realizing only the gradient
    still checks it."""
    x = Tensor(X, requires_grad=True)
    x.gather(1, Tensor([[2], [1]]) * 3).sum().backward()
    with pytest.raises(IndexOutOfRange):
        x.grad.numpy()


def test_negative_indices_in_range_work_like_torch():
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    index = np.array([-1, 0, -4, 2])
    np.testing.assert_array_equal(Tensor(a)[index].numpy(), torch.tensor(a)[torch.tensor(index)].numpy())
    np.testing.assert_array_equal(Tensor(a)[Tensor(index) + 0].numpy(), torch.tensor(a)[torch.tensor(index)].numpy())
    np.testing.assert_array_equal(Tensor(a)[:, [-6, 5]].numpy(), torch.tensor(a)[:, [-6, 5]].numpy())


def test_ignore_index_is_not_out_of_range():
    logits = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    target = np.array([1, -100, 3])
    for t in (Tensor(target), Tensor(target) + 0):
        np.testing.assert_allclose(Tensor(logits).cross_entropy(t).numpy(),
                                   F.cross_entropy(torch.tensor(logits), torch.tensor(target)).numpy(), rtol=1e-5)


def test_tinyjit_replays_are_checked():
    @TinyJit
    def pick(x, index):
        return x.gather(1, index).realize()

    x = Tensor(X).realize()
    for good in ([[2], [1]], [[0], [2]], [[1], [1]]):   # first call, capture, replay
        np.testing.assert_array_equal(pick(x, Tensor(good).realize()).numpy(), np.take_along_axis(X, np.array(good), 1))
    with pytest.raises(IndexOutOfRange, match="gather: index 4"):
        pick(x, Tensor([[2], [4]]).realize())


def test_index_check_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("INDEX_CHECK", "0")
    np.testing.assert_array_equal(Tensor(X).gather(1, Tensor([[5], [0]])).numpy(), [[0], [3]])
    np.testing.assert_array_equal((Tensor(X)[Tensor([7]) + 0]).numpy(), [[0, 0, 0]])


def test_unsigned_index_dtypes():
    """uint64 indices (no wider int to compare in) are checked and picked without wrapping."""
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    index = Tensor(np.array([3, 0], np.uint64)) + 0
    np.testing.assert_array_equal(Tensor(a)[index].numpy(), a[[3, 0]])
    with pytest.raises(IndexOutOfRange, match="index 4 is out of bounds"):
        Tensor(a)[Tensor(np.array([4], np.uint64)) + 0].numpy()


def test_an_empty_list_index_selects_nothing():
    """x[[]] and x[:, []] are empty selections like torch (the empty list was read as float64 indices)."""
    x, t = Tensor.arange(6).reshape(2, 3), torch.arange(6).reshape(2, 3)
    for ours, theirs in ((x[[]], t[[]]), (x[:, []], t[:, []])):
        assert ours.shape == tuple(theirs.shape) and ours.numpy().size == 0


def test_uint8_index_tensor_is_refused_as_ambiguous():
    """PyTorch reads a uint8 index tensor as a mask, NumPy a uint8 array as integers: tinyjit refuses a uint8
    Tensor index (a clear IndexError, not one of the two answers silently); a host uint8 array indexes as NumPy."""
    x = Tensor(np.arange(4.0, dtype=np.float32))
    with pytest.raises(IndexError, match="uint8 index tensor is ambiguous"):
        x[Tensor(np.array([1, 0, 1, 1], np.uint8))]
    with pytest.raises(IndexError, match="uint8 index tensor is ambiguous"):
        x[Tensor(np.array([1, 0], np.uint8)), ...]
    np.testing.assert_array_equal(x[np.array([1, 0], np.uint8)].numpy(), [1.0, 0.0])


def test_a_range_indexes_like_the_list_it_spells():
    """x[range(n), y] (mnist_forward_forward's overlay of labels), x[:, range(1, 3)], x[range(0)] and the same
    as assignment targets (a 0-d tensor value, and an in-place *=) give torch's values, and the gradients reach
    both the indexed tensor and the assigned value; before, a range raised TypeError."""
    a = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    labels = np.array([2, 0, 3])
    ours, theirs = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    for get in (lambda x, y: x[range(3), y], lambda x, y: x[:, range(1, 3)], lambda x, y: x[range(-1, 1)],
                lambda x, y: x[range(0)]):
        got, want = get(ours, Tensor(labels)), get(theirs, torch.tensor(labels))
        assert got.shape == tuple(want.shape)
        np.testing.assert_array_equal(got.numpy(), want.detach().numpy())

    def overlay(x, y, fill):
        x_ = x * 1
        x_[:, range(2)] *= 0.5
        x_[range(x.shape[0]), y] = fill.max()
        return x_
    fill = np.array([1.5, 7.0], np.float32)
    fill_ours, fill_theirs = Tensor(fill, requires_grad=True), torch.tensor(fill, requires_grad=True)
    got, want = overlay(ours, Tensor(labels), fill_ours), overlay(theirs, torch.tensor(labels), fill_theirs)
    np.testing.assert_array_equal(got.numpy(), want.detach().numpy())
    weights = np.arange(12, dtype=np.float32).reshape(3, 4)
    (got * Tensor(weights)).sum().backward()
    (want * torch.tensor(weights)).sum().backward()
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())
    np.testing.assert_array_equal(fill_ours.grad.numpy(), fill_theirs.grad.numpy())
