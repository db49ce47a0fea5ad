"""assign() overwrites a buffer in place: within one schedule, kernels reading the old value run first."""
import numpy as np

from tinyjit import Tensor


def test_read_before_assign_in_one_realize():
    q = Tensor([1.0, 2.0]).realize()
    p = Tensor([0.0, 0.0]).realize()
    new_p = p + q * 3          # reads q's old contents
    q.assign(q * 10)
    p.assign(new_p)
    Tensor.realize_all(q, p)   # q's assign comes first in the graph walk, yet p must see the old q
    np.testing.assert_allclose(q.numpy(), [10, 20])
    np.testing.assert_allclose(p.numpy(), [3, 6])


def test_old_and_new_value_in_one_kernel():
    # the kernel must run after the assign but reads the old value too: it reads a copy made just before
    q = Tensor([1.0, 2.0]).realize()
    old = q * 1
    q.assign(q * 10)
    both = (old + q).contiguous()
    np.testing.assert_allclose(both.numpy(), [11, 22])
    np.testing.assert_allclose(old.numpy(), [1, 2])
    np.testing.assert_allclose(q.numpy(), [10, 20])


def test_assigns_reading_each_other_are_split():
    # each assign's kernel reduces over the other's old value (the reduce fuses into the assign): no order works
    # until the values get their own kernels, as in an optimizer step over two layers with fused gradient reduces
    from tinyjit.realize import counters
    a0, b0 = np.arange(3, dtype=np.float32), np.array([1.0, -2.0, 0.5], np.float32)
    w0 = np.arange(9, dtype=np.float32).reshape(3, 3) / 4
    a, b, w = Tensor(a0).realize(), Tensor(b0).realize(), Tensor(w0).realize()
    new_a = a + (b.reshape(1, 3).expand(3, 3) * w).sum(1)
    new_b = b + (a.reshape(1, 3).expand(3, 3) * w).sum(1)
    a.assign(new_a)
    b.assign(new_b)
    before = counters["kernels_launched"]
    Tensor.realize_all(a, b)
    assert counters["kernels_launched"] - before == 4    # two value kernels, two copies
    np.testing.assert_allclose(a.numpy(), a0 + w0 @ b0, rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), b0 + w0 @ a0, rtol=1e-6)
