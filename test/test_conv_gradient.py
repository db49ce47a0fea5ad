"""Convolution gradients (tinyjit/tensor_nn.py `_conv`): the input's gradient is a transposed convolution of the
output's gradient, the weight's a contraction over the input's windows. Compared with torch over strides,
paddings (asymmetric 'same' too), dilations, groups, 1-d and 2-d, transposed convolutions (whose own gradients go
through the same rule) and second order; plus the kernels the input gradient takes (no window-sized buffer) and
the CPU plan for a padded input read across a register block."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyjit
import tinyjit.nn.functional as F
from tinyjit import Tensor
from tinyjit.schedule import create_schedule

SETTINGS = dict(deadline=None, max_examples=20, suppress_health_check=[HealthCheck.too_slow])
TORCH_CONV = {(1, False): torch.nn.functional.conv1d, (2, False): torch.nn.functional.conv2d,
              (1, True): torch.nn.functional.conv_transpose1d, (2, True): torch.nn.functional.conv_transpose2d}


def check_against_torch(x, w, b, transpose: bool, dtype=np.float32, **kwargs) -> None:
    """Forward, the gradients of sum(out * g) + sum(grad_x ** 2) (second order through grad_x) for x, w and b."""
    nd = x.ndim - 2
    rng = np.random.default_rng(0)
    x, w = x.astype(dtype), w.astype(dtype)
    b = None if b is None else b.astype(dtype)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    expected = TORCH_CONV[(nd, transpose)](tx, tw, tb, **kwargs)
    g = rng.standard_normal(tuple(expected.shape)).astype(dtype)
    (tgx,) = torch.autograd.grad((expected * torch.tensor(g)).sum(), tx, create_graph=True)
    ((expected * torch.tensor(g)).sum() + (tgx ** 2).sum()).backward()

    X, W = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    B = None if b is None else Tensor(b, requires_grad=True)
    out = getattr(F, f"conv{'_transpose' if transpose else ''}{nd}d")(X, W, B, **kwargs)
    (gx,) = tinyjit.gradient((out * Tensor(g)).sum(), X, create_graph=True)
    ((out * Tensor(g)).sum() + (gx ** 2).sum()).backward()
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    assert out.shape == tuple(expected.shape)
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), **tol)
    np.testing.assert_allclose(gx.numpy(), tgx.detach().numpy(), **tol)
    np.testing.assert_allclose(X.grad.numpy(), tx.grad.numpy(), **tol)
    np.testing.assert_allclose(W.grad.numpy(), tw.grad.numpy(), **tol)
    if b is not None:
        np.testing.assert_allclose(B.grad.numpy(), tb.grad.numpy(), **tol)


@settings(**SETTINGS)
@given(st.data())
def test_conv_gradients_match_torch(data):
    nd = data.draw(st.sampled_from([1, 2]))
    groups = data.draw(st.sampled_from([1, 1, 2, 3]))
    cin, cout = groups * data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3))
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(nd))
    transpose = data.draw(st.booleans())
    same = not transpose and data.draw(st.booleans())
    stride = (1,) * nd if same else tuple(data.draw(st.integers(1, 3)) for _ in range(nd))
    padding = "same" if same else tuple(data.draw(st.integers(0, 2)) for _ in range(nd))
    size = tuple(data.draw(st.integers(1, 8)) for _ in range(nd))
    extent = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    x = rng.standard_normal((data.draw(st.integers(1, 2)), cin) + size)
    b = rng.standard_normal(cout) if data.draw(st.booleans()) else None
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    if transpose:
        output_padding = tuple(data.draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
        out = [(i - 1) * s - 2 * p + e + o for i, s, p, e, o in zip(size, stride, padding, extent, output_padding)]
        if min(out) <= 0:
            return
        check_against_torch(x, rng.standard_normal((cin, cout // groups) + kernel), b, True,
                            output_padding=output_padding, **kwargs)
    else:
        if not same and any(i + 2 * p < e for i, p, e in zip(size, padding, extent)):
            return
        check_against_torch(x, rng.standard_normal((cout, cin // groups) + kernel), b, False, **kwargs)


@pytest.mark.parametrize("case", [
    dict(kernel=(4, 2), padding="same", stride=1, dilation=1, groups=1),      # asymmetric padding: one more after
    dict(kernel=(2, 2), padding=0, stride=3, dilation=1, groups=1),           # stride past the kernel: rows unread
    dict(kernel=(3, 3), padding=3, stride=1, dilation=1, groups=1),           # padding past the kernel's extent
    dict(kernel=(3, 3), padding=1, stride=2, dilation=2, groups=4),           # depthwise, dilated and strided
    dict(kernel=(1, 1), padding=0, stride=2, dilation=1, groups=2),           # 1x1
], ids=["same-even", "stride-past-kernel", "padding-past-extent", "depthwise-dilated", "one-by-one"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_gradient_edges(case, dtype):
    rng = np.random.default_rng(1)
    groups = case["groups"]
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((4, 4 // groups) + case["kernel"])
    check_against_torch(x, w, rng.standard_normal(4), False, dtype=dtype, stride=case["stride"],
                        padding=case["padding"], dilation=case["dilation"], groups=groups)


def test_the_input_gradient_of_a_conv_is_a_convolution_without_a_window_sized_buffer():
    """The derivative of the window view is a product as big as every window (9x the input for a 3x3 kernel),
    summed back over the overlaps in two more kernels: the input's gradient is instead the output's gradient,
    padded, convolved with the flipped weight: two kernels after the forward, none bigger than the padded
    gradient."""
    rng = np.random.default_rng(2)
    x = Tensor(rng.standard_normal((2, 4, 16, 16)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((8, 4, 3, 3)).astype(np.float32), requires_grad=True)
    out = x.conv2d(w, padding=1)
    (out * out).sum().backward()
    kernels = [item for item in create_schedule([x.grad.node]) if item.kind == "kernel"]
    assert len(kernels) == 3   # the forward, the padded gradient, the transposed convolution
    assert max(int(np.prod(item.output.shape)) for item in kernels) <= 2 * 8 * 18 * 18
    tx, tw = torch.tensor(x.numpy(), requires_grad=True), torch.tensor(w.numpy())
    (torch.nn.functional.conv2d(tx, tw, padding=1) ** 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-3)


def test_a_padded_input_read_across_a_register_block_is_depadded():
    """A conv whose output rows (13) are not whole vectors runs its register block along the output channels: the
    padded input is then the operand broadcast across the block, read with a bounds check per element unless it
    is copied with its padding written out first (DEPAD)."""
    from codegen.cpu_opts import contraction_plan
    from codegen.kernel import Kernel
    from codegen.opts import OptKind
    rng = np.random.default_rng(3)
    xn, wn = rng.standard_normal((8, 16, 13, 13)).astype(np.float32), rng.standard_normal((32, 16, 3, 3))
    x, w = Tensor(xn).realize(), Tensor(wn.astype(np.float32)).realize()
    out = x.conv2d(w, padding=1)
    (item,) = [item for item in create_schedule([out.node]) if item.kind == "kernel"]
    assert OptKind.DEPAD in [o.kind for o in contraction_plan(Kernel(item.ast), threads=2)]
    expected = torch.nn.functional.conv2d(torch.tensor(xn), torch.tensor(wn.astype(np.float32)), padding=1)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-4, atol=1e-3)
