"""The inline exp2/log2 polynomials of the LLVM renderer against numpy, including special values."""
import ctypes
import ctypes.util
import platform

import numpy as np
import pytest

from tinyjit import Tensor


def _ulp_error(got, want, dtype):
    """Largest error in ulps of `dtype`, against a reference in long double (or float64) where finite in dtype."""
    got, want = got.astype(np.longdouble), want.astype(np.longdouble)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = want.astype(dtype)
    spacing = np.spacing(np.abs(rounded)).astype(np.longdouble)
    finite = np.isfinite(rounded)
    return np.max(np.abs(got[finite] - want[finite]) / spacing[finite])


@pytest.fixture(params=["native", "no_scalef", "no_fma"])
def exp2_path(request, monkeypatch):
    """exp2 scales by 2**n with one vscalef on AVX-512 hosts and with integer bit tricks elsewhere, and splits the
    product of exp(x) = exp2(x * log2(e)) with an FMA where there is one and by Dekker's method elsewhere: test
    each."""
    if request.param != "native":
        import codegen.llvm_ops
        from tinyjit import kernel_cache
        if request.param == "no_scalef":
            monkeypatch.setattr(codegen.llvm_ops, "host_vector_bits", lambda: 256)
        else:
            monkeypatch.setattr(codegen.llvm_ops, "host_has_fma", lambda: False)
        # compile again, and not from the disk caches either (an empty cache of the same kind)
        monkeypatch.setattr(kernel_cache, "_plans", kernel_cache.LRUCache(kernel_cache.kernel_cache_size))
        monkeypatch.setenv("CACHE", "0")
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp2_accuracy(dtype, exp2_path):
    x = np.concatenate([np.linspace(-160, 130, 20001), np.random.default_rng(0).uniform(-5, 5, 5000)]).astype(dtype)
    if dtype == np.float64:
        x = np.concatenate([x, np.linspace(-1080, 1030, 5001)])
    got = Tensor(x).exp2().numpy()
    with np.errstate(over="ignore"):
        want = np.exp2(x.astype(np.float64))   # reference in double: numpy's float32 exp2 has its own error
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want.astype(dtype)))
    assert _ulp_error(got, want, dtype) <= 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_accuracy(dtype, exp2_path):
    """exp(x) = exp2(x * log2(e)) with the product carried to twice the precision: within an ulp over the whole
    range (a rounded product made it 62 ulp off near x = 80 in float32)."""
    big = 88.8 if dtype == np.float32 else 709.8
    x = np.concatenate([np.linspace(-big - 16, big, 20001), np.random.default_rng(2).uniform(-3, 3, 5000),
                        [80.0, -80.0, np.nan, np.inf, -np.inf, 1e30, -1e30]]).astype(dtype)
    got = Tensor(x).exp().numpy()
    with np.errstate(over="ignore"):
        want = np.exp(x.astype(np.longdouble))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want.astype(dtype)))
    # without FMA the polynomial rounds twice per term: a little over an ulp
    assert _ulp_error(got, want, dtype) <= (1.25 if exp2_path == "no_fma" else 1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(x))


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
def test_special_values(dtype, exp2_path):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0], dtype=dtype)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(Tensor(x).exp2().numpy(), np.exp2(x))
        np.testing.assert_array_equal(Tensor(x).log2().numpy(), np.log2(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_that_rounds_to_zero_does_not_underflow(dtype, exp2_path):
    """exp of -inf or of a large negative number (a masked softmax's entries, a sigmoid of a large input) is 0 without
    an arithmetic underflow: on x86 an underflowing multiply takes a microcode assist, and exp(-inf) ran 27x slower
    than exp(0) (P1's causal-softmax gradient kernel 2.1 -> 0.26 ms). Checked by the CPU's underflow flag, which
    the kernel sets on the calling thread (the launch is too small to be split over threads); results that really
    are denormal still set it."""
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    fe_underflow, fe_all = 0x10, 0x3F   # x86's <fenv.h>
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"the floating-point flag values here are x86's, this is {platform.machine()}")
    zero_below = -1100.0 if dtype == np.float64 else -160.0
    for values, underflows in (([-np.inf, zero_below, -1e30, 0.0, 1.0], False), ([zero_below / 1.07], True)):
        x = Tensor(np.array(values * 64, dtype)).realize()
        outs = (x.exp2(), x.exp()) if not underflows else (x.exp2(),)
        libm.feclearexcept(fe_all)
        Tensor.realize_all(*outs)
        assert bool(libm.fetestexcept(fe_underflow)) == underflows, (values, underflows)
        with np.errstate(under="ignore"):   # (references in long double, rounded once to dtype)
            wide = x.numpy().astype(np.longdouble)
            np.testing.assert_array_equal(outs[0].numpy(), np.exp2(wide).astype(dtype))
            if not underflows:
                np.testing.assert_allclose(outs[1].numpy(), np.exp(wide).astype(dtype), rtol=1e-6)
