"""Edge cases of the CPU heuristic invariant_axis_plan (codegen/cpu_opts.py): an output axis of a reduce that no
input varies along is upcast, so the reduce body is computed once per block. Values must not change: broadcasts
with pads, flips and stacked views, NaN/inf through max/argmax, integer wraparound, gradients and TinyJit replay,
all compared with numpy/torch. Each pin also checks whether the heuristic fired, so it keeps testing the upcast."""
import numpy as np
import pytest
import torch
import codegen.cpu_opts
from codegen.kernel import Kernel
from tinyjit import Tensor, TinyJit
from tinyjit.schedule import create_schedule


def _plans(out: Tensor) -> list:
    """invariant_axis_plan of every reduce kernel `out` is scheduled into (before it runs)."""
    return [codegen.cpu_opts.invariant_axis_plan(Kernel(item.ast)) for item in create_schedule([out.node])
            if item.kind == "kernel" and Kernel(item.ast).has_reduce]


def _body(a: np.ndarray) -> tuple[Tensor, np.ndarray]:
    """exp(a) * a: two ALU ops, enough reduce body for the heuristic to consider."""
    return Tensor(a).exp() * Tensor(a), np.exp(a) * a


@pytest.mark.parametrize("n", [4, 7, 13, 200, 1000])
def test_broadcast_sum_flipped_along_the_upcast_axis(n):
    a = np.random.default_rng(n).standard_normal((20, 16)).astype(np.float32)
    t, e = _body(a)
    out = t.reshape(20, 16, 1).expand(20, 16, n).flip(2).sum(0)
    assert any(_plans(out)), "the broadcast axis is upcast"
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(e[..., None], (20, 16, n)).sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [4, 7, 200])
def test_a_pad_along_the_broadcast_axis_is_not_invariant(n):
    """The validity mask of the pad varies along the axis: no upcast by this heuristic, and zeros where padded."""
    a = np.random.default_rng(n).standard_normal((20, 16)).astype(np.float32)
    t, e = _body(a)
    out = t.reshape(20, 16, 1).expand(20, 16, n).pad(((0, 0), (0, 0), (1, 2))).sum(0)
    assert not any(_plans(out))
    expected = np.pad(np.broadcast_to(e[..., None], (20, 16, n)), ((0, 0), (0, 0), (1, 2))).sum(0)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)
    padded_ones = (t.T @ Tensor.ones(20, n).pad(((0, 0), (3, 0))))
    assert not any(_plans(padded_ones))
    np.testing.assert_allclose(padded_ones.numpy(), e.T @ np.pad(np.ones((20, n), np.float32), ((0, 0), (3, 0))),
                               rtol=1e-5, atol=1e-5)


def test_a_stacked_view_expanded_along_an_output_axis():
    """pad then reshape (two views) of the body, broadcast along a middle output axis."""
    a = np.random.default_rng(4).standard_normal((20, 16)).astype(np.float32)
    t, e = _body(a)
    out = t.pad(((0, 0), (0, 4))).reshape(20, 4, 1, 5).expand(20, 4, 12, 5).sum(0)
    assert any(_plans(out))
    expected = np.broadcast_to(np.pad(e, ((0, 0), (0, 4))).reshape(20, 4, 1, 5), (20, 4, 12, 5)).sum(0)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_nan_and_inf_through_max_and_argmax_of_a_broadcast():
    a = np.random.default_rng(5).standard_normal((20, 16)).astype(np.float32)
    a[3, 2], a[5, 4], a[7, 6] = np.nan, np.inf, -np.inf
    x = (Tensor(a) * 2 + 1).reshape(20, 16, 1).expand(20, 16, 8)
    ref = torch.tensor(np.broadcast_to((a * 2 + 1)[..., None], (20, 16, 8)).copy())
    assert any(_plans(x.amax(0)))
    np.testing.assert_array_equal(x.amax(0).numpy(), ref.amax(0).numpy())
    np.testing.assert_array_equal(x.amin(0).numpy(), ref.amin(0).numpy())
    np.testing.assert_array_equal(x.argmax(0).numpy(), ref.argmax(0).numpy())


def test_int32_wraparound_matmul_with_ones():
    a = np.random.default_rng(6).integers(-2**31, 2**31 - 1, (20, 16)).astype(np.int32)
    out = (Tensor(a) * 3 + 7).T @ Tensor.ones(20, 8, dtype="int32")
    assert any(_plans(out))
    np.testing.assert_array_equal(out.numpy(), (a * np.int32(3) + np.int32(7)).T @ np.ones((20, 8), np.int32))


@pytest.mark.parametrize("n", [4, 200])
def test_weight_gradient_of_a_zero_state_matches_torch_under_jit_replay(n):
    """The LSTM h0 case: d/dw of (gelu(x) * x).T @ (w * 0), replayed by TinyJit with new inputs."""
    rng = np.random.default_rng(n)

    @TinyJit
    def step(x: Tensor, w: Tensor, g: Tensor):
        out = (x.gelu() * x).T @ (w * 0)
        (out * g).sum().backward()
        return out.realize(), w.grad.realize()

    for _ in range(4):
        a, wv = rng.standard_normal((20, 16)).astype(np.float32), rng.standard_normal((20, n)).astype(np.float32)
        gv = rng.standard_normal((16, n)).astype(np.float32)
        out, w_grad = step(Tensor(a), Tensor(wv, requires_grad=True), Tensor(gv))
        tx, tw = torch.tensor(a), torch.tensor(wv, requires_grad=True)
        tout = (torch.nn.functional.gelu(tx, approximate="tanh") * tx).T @ (tw * 0)
        (tout * torch.tensor(gv)).sum().backward()
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(w_grad.numpy(), tw.grad.numpy(), rtol=1e-4, atol=1e-4)
