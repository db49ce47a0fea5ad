"""Elementwise CPU kernels that read an input across its layout (x + y.T, a permuting copy) unroll the axis that
input is contiguous along (codegen.cpu_opts.transposed_read_plan). Tests check which plan is chosen and that values
stay exact for any permutation, size, dtype and padding (hypothesis), never timings."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from codegen.cpu_opts import TRANSPOSED_READ_UPCAST, transposed_read_plan
from codegen.kernel import Kernel
from codegen.opts import Opt, OptKind
from tinyjit import Tensor
from tinyjit.helpers import prod
from tinyjit.schedule import create_schedule


def _plan(out: Tensor) -> list[Opt]:
    (item,) = [item for item in create_schedule([out.node]) if item.kind == "kernel"]
    return transposed_read_plan(Kernel(item.ast))


def test_a_transposed_read_unrolls_the_axis_the_input_is_contiguous_along():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((256, 512)).astype(np.float32), rng.standard_normal((512, 256)).astype(np.float32)
    assert _plan(Tensor(x) + Tensor(y).T) == [Opt(OptKind.UPCAST, 0, TRANSPOSED_READ_UPCAST)]
    assert _plan(Tensor(y).T.contiguous()) == [Opt(OptKind.UPCAST, 0, TRANSPOSED_READ_UPCAST)]
    padded = Tensor(y).T.pad((1, 2)) + Tensor(np.ones((256, 515), np.float32))   # a masked read
    assert _plan(padded) == [Opt(OptKind.UPCAST, 0, TRANSPOSED_READ_UPCAST)]
    # (B, T, H) -> (B, H, T): the input is contiguous along T, the output's middle axis
    z = rng.standard_normal((2, 256, 32)).astype(np.float32)
    assert _plan(Tensor(z).permute(0, 2, 1) * 2) == [Opt(OptKind.UPCAST, 1, TRANSPOSED_READ_UPCAST)]


def test_kernels_that_read_in_order_or_are_heavy_get_no_plan():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((256, 256)).astype(np.float32), rng.standard_normal((256, 256)).astype(np.float32)
    assert _plan(Tensor(x) + Tensor(y)) == []                      # in order (one flat loop)
    assert _plan(Tensor(x) + Tensor(y[0])) == []                   # a broadcast row
    assert _plan(Tensor(x)[:, :4].T.contiguous()) == []            # a short innermost loop: short_inner_axis_plan's
    panels = Tensor(x[:, :200]).reshape(16, 16, 200).permute(0, 2, 1) * 2   # 16 lines 800 bytes apart stay in L1
    assert _plan(panels) == []
    heavy = ((Tensor(x) + Tensor(y).T).erf().exp() * (Tensor(x) - Tensor(y).T).sigmoid()).tanh()
    assert _plan(heavy) == []                                      # bound by its math


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.int64, np.bool_])
def test_transposed_reads_of_every_dtype(dtype, device):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((96, 160)) * 50).astype(dtype)
    y = (rng.standard_normal((160, 96)) * 50).astype(dtype)
    got = (Tensor(x, device=device) + Tensor(y, device=device).T).numpy()
    np.testing.assert_array_equal(got, x + y.T)
    np.testing.assert_array_equal(Tensor(y, device=device).T.contiguous().numpy(), np.ascontiguousarray(y.T))


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.sampled_from([3, 16, 24, 256, 1024]), min_size=2, max_size=3), data=st.data())
def test_any_permutation_with_padding_is_exact(shape, data):
    """Permute, pad and add: the unrolled axis may be any axis the input is contiguous along, sizes that do not
    divide by the unroll are left alone, and padded (masked) reads stay zero."""
    assume(prod(shape) <= 1 << 16)
    order = data.draw(st.permutations(range(len(shape))))
    pad_axis = data.draw(st.integers(0, len(shape) - 1))
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    padding = [(0, 0)] * len(shape)
    padding[pad_axis] = (1, 2)
    padded_shape = [shape[a] + sum(padding[n]) for n, a in enumerate(order)]
    other = rng.standard_normal(padded_shape).astype(np.float32)
    got = Tensor(x).permute(*order).pad([p for pair in reversed(padding) for p in pair]) + Tensor(other)
    np.testing.assert_array_equal(got.numpy(), np.pad(x.transpose(order), padding) + other)
