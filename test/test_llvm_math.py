"""The inline exp2/log2 polynomials of the LLVM renderer against numpy, including special values."""
import numpy as np
import pytest

from tinyjit import Tensor


def _ulp_error(got, want, dtype):
    got, want = got.astype(np.float64), want.astype(np.float64)
    spacing = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
    finite = np.isfinite(want.astype(dtype))
    return np.max(np.abs(got[finite] - want[finite]) / spacing[finite])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp2_accuracy(dtype):
    x = np.concatenate([np.linspace(-160, 130, 20001), np.random.default_rng(0).uniform(-5, 5, 5000)]).astype(dtype)
    if dtype == np.float64:
        x = np.concatenate([x, np.linspace(-1080, 1030, 5001)])
    got = Tensor(x).exp2().numpy()
    with np.errstate(over="ignore"):
        want = np.exp2(x.astype(np.float64))   # reference in double: numpy's float32 exp2 has its own error
    assert _ulp_error(got, want, dtype) <= 2
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want.astype(dtype)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log2_accuracy(dtype):
    rng = np.random.default_rng(1)
    tiny = np.finfo(dtype).tiny
    x = np.concatenate([rng.uniform(0, 4, 20000), 10.0 ** rng.uniform(-30, 30, 20000),
                        tiny * rng.uniform(0, 1, 1000), [1.0, 2.0, 0.5, 1 + 1e-7]]).astype(dtype)
    got = Tensor(x).log2().numpy()
    want = np.log2(x.astype(np.float64))
    # t = (m-1)/(m+1), the series and the product each round once: up to ~2.5 ulp where log2(x) is small
    assert _ulp_error(got, want, dtype) <= 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_special_values(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0], dtype=dtype)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(Tensor(x).exp2().numpy(), np.exp2(x))
        np.testing.assert_array_equal(Tensor(x).log2().numpy(), np.log2(x))
