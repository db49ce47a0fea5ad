"""Kernels that read through stacked views (a max pool's gradient scattered from its windows back to the image:
window layout (..., oh, ow, kh, kw) permuted to (..., oh, kh, ow, kw) and reshaped to (..., H, W)) keep every loop's
address linear: the kernel's loops are not merged into one that each address unravels with divisions
(Kernel._mergeable), and on the CPU the axes an address divides are split by the window and unrolled
(cpu_opts.stacked_view_plan). Values are compared exactly with NumPy on every device."""
import numpy as np
import pytest

from codegen.copies import index_strides
from codegen.kernel import Kernel
from codegen.optimizer import optimize
from tinyjit import Device, Tensor
from tinyjit.schedule import create_schedule


def _scatter_windows(x, lead: tuple[int, ...], out: tuple[int, int], window: tuple[int, int]):
    """(*lead, oh, ow, kh, kw) -> (*lead, oh * kh, ow * kw): each window back at its place in the image."""
    (oh, ow), (kh, kw) = out, window
    n = len(lead)
    order = tuple(range(n)) + (n, n + 2, n + 1, n + 3)
    return x.permute(order).reshape(lead + (oh * kh, ow * kw))


def test_window_scatter_kernel_loops_are_linear():
    """The scattered windows times an image (a relu's gradient times a pool's): one kernel whose every load and
    store is linear in each loop once the CPU heuristics are applied; it was one flat loop of 43k iterations
    unravelling each address with four divisions and remainders."""
    lead, out, window = (8, 8), (13, 13), (2, 2)
    g = Tensor(np.ones(lead + out + window, np.float32))
    image = Tensor(np.ones(lead + (26, 26), np.float32))
    value = _scatter_windows(g, lead, out, window) * image
    (item,) = [i for i in create_schedule([value.node]) if i.kind == "kernel"]
    k = Kernel(item.ast)
    assert k.full_shape == (8, 8, 26, 26)   # the image's rows and columns stay loops of their own
    from codegen.cpu_opts import stacked_view_plan
    plan = stacked_view_plan(k)
    assert sorted(opt.amount for opt in plan) == [2, 2]   # each divided axis split by its window size
    optimize(k, Device.renderer("CPU"))
    for st in k.sts:
        strides = index_strides(st)
        assert all(strides[a] is not None for a in range(k.first_upcast) if k.full_shape[a] > 1), (st, strides)


SCATTER_CASES = [
    ((4, 3), (13, 13), (2, 2), 0, "float32"),   # a 2x2 max pool's gradient, 26x26
    ((2, 5), (5, 5), (2, 2), 1, "float32"),     # an 11x11 image pooled to 5x5: its last row and column padded
    ((3,), (4, 6), (3, 2), 0, "float64"),       # windows of different sizes per axis
    ((2, 2), (9, 3), (4, 3), 2, "int32"),       # a split of 4 makes the rows linear; padded
]


@pytest.mark.parametrize("lead, out, window, pad, dtype", SCATTER_CASES)
def test_window_scatter_values_match_numpy(device, lead, out, window, pad, dtype):
    rng = np.random.default_rng(0)
    gn = rng.integers(-8, 8, lead + out + window).astype(dtype)
    height, width = out[0] * window[0] + pad, out[1] * window[1] + pad
    imn = rng.integers(-8, 8, lead + (height, width)).astype(dtype)
    scattered = _scatter_windows(Tensor(gn), lead, out, window)
    if pad:   # the rows and columns no window covers
        scattered = scattered.pad(((0, 0),) * len(lead) + ((0, pad), (0, pad)))
    value = (scattered * Tensor(imn) + 1).numpy()
    n = len(lead)
    expected = gn.transpose(tuple(range(n)) + (n, n + 2, n + 1, n + 3)).reshape(
        lead + (out[0] * window[0], out[1] * window[1]))
    expected = np.pad(expected, [(0, 0)] * n + [(0, pad), (0, pad)]) * imn + 1
    assert value.dtype == expected.dtype
    np.testing.assert_array_equal(value, expected)
