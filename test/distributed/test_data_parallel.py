"""Under `mpirun -n 2` (see conftest.py): collectives, DataParallel against one process with the whole batch,
the sampler's shards across real ranks, and the parameter check at construction."""
import numpy as np
import pytest

from tinyjit import Tensor, TinyJit, dtypes, nn, optim
from tinyjit import distributed as dist
from tinyjit.data import DataLoader, TensorDataset

dist.init()
RANK, SIZE = dist.rank(), dist.world_size()

DTYPES = [dtypes.float32, dtypes.float64, dtypes.float16, dtypes.int32, dtypes.int64, dtypes.uint8, dtypes.bool]
SHAPES = [(), (5,), (2, 3, 4)]


def _value(rank: int, shape, dtype) -> np.ndarray:
    """What rank `rank` holds: distinct per rank and element, small enough for every dtype."""
    base = np.asarray((np.arange(int(np.prod(shape, dtype=np.int64))).reshape(shape) * 3 + rank * 7) % 11)
    return np.asarray(base % 2 == rank % 2) if dtype == dtypes.bool else base.astype(dtype.np)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_all_reduce_broadcast_all_gather(dtype, shape):
    everyone = np.stack([_value(r, shape, dtype) for r in range(SIZE)])
    t = Tensor(_value(RANK, shape, dtype))
    assert dist.all_reduce(t, "sum") is t and t.dtype == dtype and t.shape == shape
    expected_sum = everyone.any(0) if dtype == dtypes.bool else everyone.sum(0, dtype=dtype.np)
    np.testing.assert_array_equal(t.numpy(), expected_sum)
    t = Tensor(_value(RANK, shape, dtype))
    np.testing.assert_array_equal(dist.all_reduce(t, "max").numpy(), everyone.max(0))
    if dtype.is_float:
        t = Tensor(_value(RANK, shape, dtype))
        np.testing.assert_allclose(dist.all_reduce(t, "mean").numpy(), everyone.astype(np.float64).mean(0),
                                   rtol=1e-3 if dtype == dtypes.float16 else 1e-6)
    for src in range(SIZE):
        t = Tensor(_value(RANK, shape, dtype))
        np.testing.assert_array_equal(dist.broadcast(t, src).numpy(), everyone[src])
    gathered = dist.all_gather(Tensor(_value(RANK, shape, dtype)))
    assert len(gathered) == SIZE
    for r, g in enumerate(gathered):
        assert g.shape == shape and g.dtype == dtype
        np.testing.assert_array_equal(g.numpy(), everyone[r])


def test_collective_argument_errors():
    with pytest.raises(ValueError, match="op must be one of"):
        dist.all_reduce(Tensor([1.0]), "min")
    with pytest.raises(TypeError, match="op='mean' needs a floating-point tensor"):
        dist.all_reduce(Tensor([1]), "mean")
    with pytest.raises(ValueError, match="src=5 is not a rank"):
        dist.broadcast(Tensor([1.0]), 5)
    with pytest.raises(ValueError, match="differ in shape or dtype"):
        dist.all_gather(Tensor(np.zeros(RANK + 1, np.float32)))


def test_all_reduce_inside_tinyjit_is_replayed():
    @TinyJit
    def total(x: Tensor) -> Tensor:
        y = (x * 2).contiguous()
        return dist.all_reduce(y, "sum") + 1

    for step in range(4):
        x = Tensor(np.full(3, RANK + step, np.float32)).realize()
        expected = sum(2 * (r + step) for r in range(SIZE)) + 1
        np.testing.assert_array_equal(total(x).numpy(), np.full(3, expected, np.float32))
    assert total.calls == 4 and total.captured   # the last calls were replays


B = 4


def _model():
    Tensor.manual_seed(RANK * 100)   # different initial weights per rank: DataParallel must broadcast rank 0's
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def _batches():
    rng = np.random.default_rng(42)
    return [(rng.standard_normal((SIZE * B, 5)).astype(np.float32),
             rng.standard_normal((SIZE * B, 3)).astype(np.float32)) for _ in range(10)]


OPTIMIZERS = {
    "SGD": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    "AdamW": lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.1),
    "Adam": lambda ps: optim.Adam(ps, lr=0.01),
    "RMSprop": lambda ps: optim.RMSprop(ps, lr=0.01),
    "Lion": lambda ps: optim.Lion(ps, lr=0.001),
}


def _train(model, opt, batches, use_jit, rows):
    def step(x, y):
        opt.zero_grad()
        loss = (model(x) - y).square().mean()
        loss.backward()
        opt.step()
        return loss

    run = TinyJit(step) if use_jit else step
    for x, y in batches:
        run(Tensor(x[rows]).realize(), Tensor(y[rows]).realize())
    return [p.numpy() for p in model.parameters()]


# every optimizer eagerly; SGD and AdamW also under TinyJit (the update kernels differ only in arithmetic)
@pytest.mark.parametrize("name,use_jit", [(name, False) for name in OPTIMIZERS] + [("SGD", True), ("AdamW", True)])
def test_two_ranks_with_batch_b_match_one_process_with_batch_2b(name, use_jit):
    batches = _batches()
    # reference: this process alone, rank 0's initial weights, the whole batch
    Tensor.manual_seed(0)
    reference = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    start = [p.numpy().copy() for p in reference.parameters()]
    expected = _train(reference, OPTIMIZERS[name](reference.parameters()), batches, use_jit, slice(None))

    model = dist.DataParallel(_model())
    for a, b in zip(model.parameters(), start):
        np.testing.assert_array_equal(a.numpy(), b)   # rank 0's weights everywhere
    got = _train(model, OPTIMIZERS[name](model.parameters()), batches, use_jit, slice(RANK * B, (RANK + 1) * B))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=2e-5)
    # and every rank holds the same parameters
    for g in got:
        np.testing.assert_array_equal(dist.all_gather(Tensor(g))[0].numpy(), g)


def test_gradients_are_reduced_in_buckets():
    model = dist.DataParallel(nn.Sequential(*[nn.Linear(64, 64) for _ in range(4)]), bucket_cap_mb=0.04)
    # 4 x (64*64 + 64) float32 = 4 x 16.6 KB; 0.04 MB = 41.9 KB holds two layers' worth per bucket
    assert model.bucket_count == 2
    calls = []
    real = dist._host_collective

    def counting(*args):
        calls.append(args[0].shape)
        return real(*args)

    dist._host_collective = counting
    try:
        opt = optim.SGD(model.parameters(), lr=0.0)
        model(Tensor(np.ones((2, 64), np.float32))).sum().backward()
        opt.step()
        opt.step()   # the same gradients: not reduced twice
    finally:
        dist._host_collective = real
    assert calls == [(2 * (64 * 64 + 64),)] * 2


def test_parameter_shape_mismatch_is_detected_at_construction():
    width = 4 + RANK
    with pytest.raises(ValueError, match=r"the model differs across ranks \(parameter 0: rank 0 has '0.weight' "
                                         r"\(4, 3\) float32, rank 1 has '0.weight' \(5, 3\) float32\)"):
        dist.DataParallel(nn.Sequential(nn.Linear(3, width)))


def test_sampler_shards_cover_the_dataset_once_per_epoch():
    n = 23
    data = TensorDataset(np.arange(n))
    sampler = dist.DistributedSampler(data, shuffle=True, seed=5)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        mine = np.concatenate([b[0].numpy() for b in DataLoader(data, batch_size=4, sampler=sampler)])
        assert len(mine) == len(sampler) == 12
        everyone = np.concatenate([g.numpy() for g in dist.all_gather(Tensor(mine.astype(np.int64)))])
        values, counts = np.unique(everyone, return_counts=True)
        assert values.tolist() == list(range(n))
        assert counts.sum() == 24 and (counts >= 1).all() and (counts == 2).sum() == 1   # one index padded
        orders.append(everyone.tolist())
    assert orders[0] != orders[1]


def test_collectives_and_a_jitted_data_parallel_step_on_each_device(device):
    t = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3) + RANK, device=device)
    dist.all_reduce(t, "mean")
    assert t.device == device
    np.testing.assert_allclose(t.numpy(), np.arange(6).reshape(2, 3) + (SIZE - 1) / 2)
    model = dist.DataParallel(_model().to(device))
    opt = optim.SGD(model.parameters(), lr=0.1)
    x, y = _batches()[0]

    @TinyJit
    def step(x, y):
        opt.zero_grad()
        (model(x) - y).square().mean().backward()
        opt.step()

    for _ in range(3):
        step(Tensor(x[RANK * B:(RANK + 1) * B], device=device).realize(),
             Tensor(y[RANK * B:(RANK + 1) * B], device=device).realize())
    for p in model.parameters():   # the same on every rank after replayed steps
        assert p.device == device
        np.testing.assert_array_equal(dist.all_gather(p)[0].numpy(), p.numpy())
