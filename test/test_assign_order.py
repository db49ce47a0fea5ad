"""assign() overwrites a buffer in place: within one schedule, kernels reading the old value run first."""
import numpy as np
import pytest

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


def test_old_and_new_value_in_one_kernel_is_an_error():
    q = Tensor([1.0, 2.0]).realize()
    old = q * 1
    q.assign(q * 10)
    both = (old + q).contiguous()
    with pytest.raises(RuntimeError, match="assign"):
        both.realize()
