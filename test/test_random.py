"""On-device random numbers: distribution, seeding, and fresh values under TinyJit replay."""
import numpy as np
import pytest

from tinyjit import Tensor, TinyJit


def test_rand_uniform_statistics():
    Tensor.manual_seed(1)
    x = Tensor.rand(200_000).numpy()
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() < 1
    assert abs(x.mean() - 0.5) < 0.005 and abs(x.var() - 1 / 12) < 0.002
    hist, _ = np.histogram(x, bins=20, range=(0, 1))
    assert hist.min() > 0.9 * len(x) / 20


def test_randn_statistics():
    Tensor.manual_seed(2)
    x = Tensor.randn(100, 1000).numpy()
    assert x.shape == (100, 1000)
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    assert abs((np.abs(x) < 1).mean() - 0.6827) < 0.01


def test_randint_range_and_uniformity():
    Tensor.manual_seed(3)
    x = Tensor.randint(-3, 7, size=(50_000,)).numpy()
    assert x.min() == -3 and x.max() == 6
    counts = np.bincount(x + 3)
    assert counts.min() > 0.9 * len(x) / 10
    with pytest.raises(ValueError, match="randint"):
        Tensor.randint(5, 5, size=(2,))


def test_manual_seed_reproduces_and_draws_differ():
    Tensor.manual_seed(7)
    a, b = Tensor.rand(1000).numpy(), Tensor.rand(1000).numpy()
    Tensor.manual_seed(7)
    np.testing.assert_array_equal(Tensor.rand(1000).numpy(), a)
    assert not np.array_equal(a, b)
    Tensor.manual_seed(8)
    assert not np.array_equal(Tensor.rand(1000).numpy(), a)


def test_jit_replay_draws_fresh_numbers():
    Tensor.manual_seed(0)
    f = TinyJit(lambda x: x + Tensor.rand(64))
    outs = [f(Tensor(np.zeros(64, np.float32))).numpy().copy() for _ in range(5)]
    assert len(f.captured) > 0
    for i in range(len(outs)):
        for j in range(i):
            assert not np.array_equal(outs[i], outs[j])


def test_rand_dtypes_and_empty():
    assert Tensor.rand(3, dtype="float16").dtype.name == "float16"
    assert Tensor.rand(0, 4).numpy().shape == (0, 4)


def test_manual_seed_after_a_capture_resets_the_replays(device):
    """The seed and the counter live in device buffers the captured kernels read: replays after manual_seed(s)
    draw what eager code draws after manual_seed(s)."""
    Tensor.manual_seed(3)
    f = TinyJit(lambda x: x + Tensor.rand(16))
    x = Tensor(np.zeros(16, np.float32))
    f(x)
    f(x)
    Tensor.manual_seed(7)
    eager = [Tensor.rand(16).numpy() for _ in range(3)]
    Tensor.manual_seed(7)
    replayed = [f(x).numpy().copy() for _ in range(3)]
    np.testing.assert_array_equal(replayed, eager)
    Tensor.manual_seed(8)
    assert not np.array_equal(f(x).numpy(), eager[0])


def test_random_values_have_the_resolution_of_their_dtype():
    """randint reaches every value of a wide range (odd ones too: it was built from 24-bit float uniforms), rand in
    float64 has more than float32's 2**24 grid, and rand in half never rounds up to 1.0."""
    Tensor.manual_seed(0)
    wide = Tensor.randint(0, 2 ** 40, size=(4000,)).numpy()
    assert wide.min() >= 0 and wide.max() < 2 ** 40 and 1500 < (wide % 2).sum() < 2500
    assert (Tensor.randint(-3, 3, (2000,)).numpy() == -3).any()
    assert Tensor.randint(10, (2, 3)).shape == (2, 3)   # torch.randint(high, size)
    u64 = Tensor.rand(4000, dtype="float64").numpy()
    assert u64.dtype == np.float64 and ((u64 * 2 ** 24) % 1 != 0).mean() > 0.9
    u16 = Tensor.rand(100_000, dtype="float16").numpy()
    assert u16.dtype == np.float16 and u16.max() < 1.0 and u16.min() >= 0.0
    with pytest.raises(TypeError, match="float dtype"):
        Tensor.rand(3, dtype="int32")
