"""Edge cases for this session's changes, compared with torch or numpy: float32 erf as one rational fit (special
values, tiny and huge inputs, -0.0, gradients to second order, on CPU, CL and CUDAEMU), the release of tensors a
gradient rule saved (in-place updates between forward, backward and the step), tanh's and sigmoid's gradients from
their result and the templates built for them (views, dtypes, devices, in-place chains, training over steps with
changing shapes), the continued walk of a training step (gradient accumulation, zero_grad(set_to_none=False),
in-place parameter updates, threads), TinyJit's sequenced replay (many kernels, index checks, outputs fed back,
THREADS=4 without the native pool, a jitted training step) and codegen (odd shapes, views, every integer dtype)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import tinyjit
import tinyjit.nn.functional as F
from tinyjit import Tensor, TinyJit, nn, no_grad, optim
from thread_runner import errors_in_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_F = torch.nn.functional


def _close(got, expected, tol: float = 1e-5) -> None:
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), rtol=tol, atol=tol,
                               equal_nan=True)


# ---- 1. erf: the float32 rational fit, float16 through float32, gelu ----
ERF_POINTS = [0.0, -0.0, 1e-45, -1e-45, 1e-38, 1e-30, 1e-10, 1e-4, 0.5, 1, 2, 3, 3.89, 3.9, 3.91, 4, 5, 10, 1e30,
              3.4e38, np.inf, -np.inf, np.nan, -3.9, -4, -1e30, -0.5]


@pytest.mark.devices("CPU", "CL", "CUDAEMU")
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64], ids=["f32", "f16", "f64"])
def test_erf_special_values_and_signs(device, dtype):
    with np.errstate(over="ignore"):
        x = np.array(ERF_POINTS, dtype=np.float64).astype(dtype)
    got = Tensor(x).erf().numpy()
    want = torch.erf(torch.tensor(x)).numpy()
    assert got.dtype == want.dtype
    _close(got, want, 1e-6 if dtype != np.float16 else 1e-3)
    # the sign of zeros and of the tiny values (erf(-0.0) is -0.0); a NaN's sign means nothing
    numbers = ~np.isnan(want)
    assert np.array_equal(np.signbit(got[numbers]), np.signbit(want[numbers]))


def test_erf_float32_is_within_a_few_ulp_over_a_dense_grid():
    x = np.concatenate([np.linspace(-6, 6, 20001), np.geomspace(1e-12, 4, 2000)]).astype(np.float32)
    exact = np.array([math.erf(float(v)) for v in x])
    got = Tensor(x).erf().numpy().astype(np.float64)
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert (np.abs(got - exact) / ulp).max() <= 6


@pytest.mark.devices("CPU", "CL", "CUDAEMU")
def test_erf_and_exact_gelu_gradients_to_second_order_at_special_points(device):
    x = np.array([-5, -3.95, -3.9, -2, -0.0, 0.0, 1e-20, 0.3, 2, 3.9, 4, np.nan], np.float32)
    for name, jf, tf in (("erf", lambda t: t.erf(), torch.erf), ("gelu", F.gelu, TORCH_F.gelu),
                         ("gelu_tanh", lambda t: F.gelu(t, approximate="tanh"),
                          lambda t: TORCH_F.gelu(t, approximate="tanh"))):
        tx, jx = torch.tensor(x, requires_grad=True), Tensor(x, requires_grad=True)
        tout, jout = tf(tx), jf(jx)
        if name == "gelu":
            # x Phi(x) for x < -3 cancels in 1 + erf(x / sqrt 2) (torch too): compared with the exact value instead
            exact = [v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)]
            np.testing.assert_allclose(jout.numpy(), exact, rtol=1e-5, atol=2e-6)
        else:
            _close(jout.numpy(), tout.detach().numpy(), 1e-5)
        (tg,) = torch.autograd.grad(tout.sum(), tx, create_graph=True)
        (jg,) = tinyjit.gradient(jout.sum(), [jx], create_graph=True)
        _close(jg.numpy(), tg.detach().numpy(), 1e-5)
        (tg2,) = torch.autograd.grad(tg.sum(), tx)
        (jg2,) = tinyjit.gradient(jg.sum(), [jx])
        _close(jg2.numpy(), tg2.numpy(), 1e-4)


def test_exact_gelu_at_infinities():
    """gelu(inf) = inf (torch's CPU kernel gives NaN there); erf's gradient vanishes at both infinities."""
    x = Tensor(np.array([np.inf, -np.inf], np.float32), requires_grad=True)
    assert F.gelu(x).numpy()[0] == np.inf
    x.erf().sum().backward()
    assert np.array_equal(x.grad.numpy(), [0.0, 0.0])


# ---- 2. saved tensors released after the rule ran ----
def test_p_data_replaced_between_forward_and_backward_is_read_like_torch():
    """PyTorch's saved tensors see `.data = v` (same TensorImpl): erf's, pow's and atan2's rules read the new data."""
    rng = np.random.default_rng(0)
    xv, nv = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)
    yv = rng.uniform(0.5, 2, (2, 3)).astype(np.float32)

    def run(lib_tensor, erf, atan2):
        x, y = lib_tensor(xv, requires_grad=True), lib_tensor(yv, requires_grad=True)
        loss = (erf(x) + x ** 3 + atan2(x, y)).sum()
        x.data = lib_tensor(nv)
        loss.backward()
        return x.grad.numpy(), y.grad.numpy()

    got = run(Tensor, Tensor.erf, Tensor.atan2)
    want = run(torch.tensor, torch.erf, torch.atan2)
    for g, w in zip(got, want):
        _close(g, w, 1e-5)


def test_in_place_updates_of_saved_inputs_before_backward_keep_forward_values():
    """hypot, logaddexp, atan2, var/std, pow and binary_cross_entropy read their inputs as they were at forward
    time, even when the inputs are realized and updated in place (with no_grad) before backward."""
    rng = np.random.default_rng(1)
    av, bv = rng.uniform(0.1, 0.9, (3, 4)).astype(np.float32), rng.uniform(0.1, 0.9, (3, 4)).astype(np.float32)

    def forward(a, b, lib):
        if lib is torch:
            return (torch.hypot(a, b) + torch.logaddexp(a, b) + torch.atan2(a, b) + a ** b).sum() \
                + a.var() + b.std() + TORCH_F.binary_cross_entropy(a, b)
        return (a.hypot(b) + a.logaddexp(b) + a.atan2(b) + a ** b).sum() + a.var() + b.std() \
            + a.binary_cross_entropy(b)

    ta, tb = torch.tensor(av, requires_grad=True), torch.tensor(bv, requires_grad=True)
    forward(ta * 1, tb * 1, torch).backward()
    a, b = Tensor(av, requires_grad=True), Tensor(bv, requires_grad=True)
    a1, b1 = (a * 1).realize(), (b * 1).realize()
    loss = forward(a1, b1, None)
    with no_grad():
        a1.mul_(0.5).realize()
        b1.add_(0.25).realize()
    loss.backward()
    _close(a.grad.numpy(), ta.grad.numpy(), 1e-4)
    _close(b.grad.numpy(), tb.grad.numpy(), 1e-4)


def test_conv_rules_with_steps_and_gradient_accumulation_match_torch():
    """conv2d and conv1d (stride 1) with gelu, SGD with momentum, gradient accumulated over two backward calls,
    and a parameter updated in place between steps: parameters equal torch's after four steps."""
    rng = np.random.default_rng(2)
    w2, w1 = rng.standard_normal((3, 2, 3, 3)).astype(np.float32) * 0.3, rng.standard_normal((2, 3, 2)).astype(
        np.float32) * 0.3
    params = [Tensor(w2, requires_grad=True), Tensor(w1, requires_grad=True)]
    tparams = [torch.tensor(w2, requires_grad=True), torch.tensor(w1, requires_grad=True)]
    opt, topt = optim.SGD(params, lr=0.05, momentum=0.9), torch.optim.SGD(tparams, lr=0.05, momentum=0.9)

    def loss(x, cw, lw, conv2d, conv1d, gelu):
        h = gelu(conv2d(x, cw, padding=1))                         # (2, 3, 5, 5)
        return gelu(conv1d(h.reshape(2, 3, 25), lw)).square().mean()

    for step in range(4):
        x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
        opt.zero_grad(set_to_none=step % 2 == 0)
        topt.zero_grad(set_to_none=step % 2 == 0)
        for _ in range(2):
            loss(Tensor(x), *params, F.conv2d, F.conv1d, F.gelu).backward()
            loss(torch.tensor(x), *tparams, TORCH_F.conv2d, TORCH_F.conv1d, TORCH_F.gelu).backward()
        if step == 1:
            params[0].grad.realize()
        opt.step()
        topt.step()
        if step == 2:
            with no_grad(), torch.no_grad():
                params[1].mul_(-1)
                tparams[1].mul_(-1)
    for p, tp in zip(params, tparams):
        _close(p.numpy(), tp.detach().numpy(), 1e-4)


def test_retain_graph_twice_then_step_then_backward_of_a_new_forward():
    rng = np.random.default_rng(3)
    wv = rng.standard_normal((4, 4)).astype(np.float32)
    w, tw = Tensor(wv, requires_grad=True), torch.tensor(wv, requires_grad=True)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    loss = ((Tensor(x) @ w).erf() ** 2).sum() + w.std()
    tloss = ((torch.tensor(x) @ tw).erf() ** 2).sum() + tw.std()
    loss.backward(retain_graph=True)
    loss.backward(retain_graph=True)
    loss.backward()
    tloss.backward(retain_graph=True)
    tloss.backward(retain_graph=True)
    tloss.backward()
    _close(w.grad.numpy(), tw.grad.numpy(), 1e-4)
    opt, topt = optim.SGD([w], lr=0.1), torch.optim.SGD([tw], lr=0.1)
    opt.step()
    topt.step()
    opt.zero_grad()
    topt.zero_grad()
    ((Tensor(x) @ w).erf() ** 2).sum().backward()
    ((torch.tensor(x) @ tw).erf() ** 2).sum().backward()
    _close(w.grad.numpy(), tw.grad.numpy(), 1e-4)


def test_jitted_step_through_rules_with_p_data_replaced_between_replays():
    """A TinyJit training step (erf, pow, var) replayed after p.data = v: it reads the new values, as the eager
    step on a model given the same values does."""
    rng = np.random.default_rng(4)
    wv = rng.standard_normal((5, 3)).astype(np.float32) * 0.5

    def step(w, opt, x):
        opt.zero_grad()
        h = x @ w
        loss = h.erf().sum() + (h ** 2).mean() + h.var()
        loss.backward()
        opt.step()
        return loss.realize()

    w_jit, w_eager = Tensor(wv, requires_grad=True), Tensor(wv, requires_grad=True)
    opt_jit, opt_eager = optim.SGD([w_jit], lr=0.05), optim.SGD([w_eager], lr=0.05)
    jitted = TinyJit(lambda x: step(w_jit, opt_jit, x))
    for i in range(6):
        x = rng.standard_normal((4, 5)).astype(np.float32)
        if i == 4:
            new = rng.standard_normal((5, 3)).astype(np.float32)
            w_jit.data, w_eager.data = Tensor(new), Tensor(new)
        _close(jitted(Tensor(x).realize()).numpy(), step(w_eager, opt_eager, Tensor(x)).numpy(), 1e-5)
        _close(w_jit.numpy(), w_eager.numpy(), 1e-5)


def test_two_threads_update_saved_inputs_of_their_own_models():
    def run(seed):
        rng = np.random.default_rng(seed)
        xv = rng.standard_normal((3, 4)).astype(np.float32)
        for _ in range(4):
            x = Tensor(xv, requires_grad=True)
            y = (x * 1).realize()
            loss = y.erf().sum() + (y ** 3).sum() + y.var()
            with no_grad():
                y.add_(1.0).realize()
            loss.backward()
            tx = torch.tensor(xv, requires_grad=True)
            (torch.erf(tx).sum() + (tx ** 3).sum() + tx.var()).backward()
            _close(x.grad.numpy(), tx.grad.numpy(), 1e-4)

    errors = errors_in_threads(run, [(s,) for s in range(2)])
    assert not errors, errors


SAVED_INPUT_OPS = {
    "erf": (lambda t: t.erf(), torch.erf),
    "pow": (lambda t: t ** 2.5, lambda t: t ** 2.5),
    "var": (lambda t: t.var(), lambda t: t.var()),
    "std": (lambda t: t.std(0), lambda t: t.std(0)),
    "atan2": (lambda t: t.atan2(t.flip(0)), lambda t: torch.atan2(t, t.flip(0))),
    "hypot": (lambda t: t.hypot(t * 0.5 + 1), lambda t: torch.hypot(t, t * 0.5 + 1)),
    "logaddexp": (lambda t: t.logaddexp(-t), lambda t: torch.logaddexp(t, -t)),
    "binary_cross_entropy": (lambda t: (t / 2).binary_cross_entropy(Tensor(np.full(t.shape, 0.3, np.float32))),
                             lambda t: TORCH_F.binary_cross_entropy(t / 2, torch.full(t.shape, 0.3))),
    "conv2d": (lambda t: t[:4].reshape(1, 1, 4, 5).conv2d(Tensor(np.ones((2, 1, 2, 2), np.float32))
                                                         * t[0, :4].reshape(1, 1, 2, 2)),
               lambda t: TORCH_F.conv2d(t[:4].reshape(1, 1, 4, 5),
                                        torch.ones(2, 1, 2, 2) * t[0, :4].reshape(1, 1, 2, 2))),
}


@pytest.mark.parametrize("mode", ["setitem", "view_in_place", "setitem_after_backward", "step_between"])
@pytest.mark.parametrize("name", list(SAVED_INPUT_OPS))
def test_saved_inputs_written_by_setitem_views_and_steps(name, mode):
    """x[i] = v and an in-place update through a view of a realized saved input before backward, a setitem after
    backward (the gradient still lazy), and an SGD step on the parameter between the forward and its backward."""
    jf, tf = SAVED_INPUT_OPS[name]
    wv = np.random.default_rng(23).uniform(0.3, 1.2, (5, 5)).astype(np.float32)
    w, tw = Tensor(wv.copy(), requires_grad=True), torch.tensor(wv.copy(), requires_grad=True)
    tf(tw[1:] if mode == "view_in_place" else tw).sum().backward()
    if mode == "step_between":
        opt = optim.SGD([w], lr=0.1)
        loss = jf(w).sum()
        (w * w).sum().backward()
        opt.step()
        opt.zero_grad()
        loss.backward()
        _close(w.grad.numpy(), tw.grad.numpy(), 1e-4)
        return
    base = (w * 1).realize()
    loss = jf(base[1:] if mode == "view_in_place" else base).sum()
    with no_grad():
        if mode == "setitem":
            base[1] = Tensor(np.full(5, 9.0, np.float32))
            base.realize()
        elif mode == "view_in_place":
            base[1:].mul_(3.0)
            base.realize()
    loss.backward()
    if mode == "setitem_after_backward":
        with no_grad():
            base[0] = Tensor(np.zeros(5, np.float32))
            base.realize()
    _close(w.grad.numpy(), tw.grad.numpy(), 1e-4)


# ---- 3. tanh and sigmoid: gradients from the result, templates ----
COMPOSITES = {
    "tanh": (lambda t: t.tanh(), torch.tanh), "sigmoid": (lambda t: t.sigmoid(), torch.sigmoid),
    "expm1": (lambda t: t.expm1(), torch.expm1), "log1p": (lambda t: t.abs().log1p(), lambda t: t.abs().log1p()),
    "silu": (F.silu, TORCH_F.silu), "gelu": (F.gelu, TORCH_F.gelu), "mish": (F.mish, TORCH_F.mish),
    "gelu_tanh": (lambda t: F.gelu(t, approximate="tanh"), lambda t: TORCH_F.gelu(t, approximate="tanh")),
}
VIEWS = [lambda t: t, lambda t: t.T, lambda t: t.flip(0), lambda t: t[::1], lambda t: t.reshape(16).reshape(4, 4),
         lambda t: t[:1].expand(4, 4), lambda t: t * 1, lambda t: t.permute(1, 0).contiguous()]


@pytest.mark.parametrize("name", list(COMPOSITES))
def test_composites_over_views_repeated_match_torch(name):
    """The same function over views of a 4x4 leaf, three rounds (templates from the second call on): the template
    built for one view's input must not be reused for another's."""
    jf, tf = COMPOSITES[name]
    rng = np.random.default_rng(6)
    for _ in range(3):
        for view in VIEWS:
            xv = rng.uniform(-0.9, 2, (4, 4)).astype(np.float32)
            w = rng.standard_normal((4, 4)).astype(np.float32)
            x, tx = Tensor(xv, requires_grad=True), torch.tensor(xv, requires_grad=True)
            out, tout = jf(view(x)), tf(view(tx))
            out2, tout2 = jf(view(out)), tf(view(tout))
            ((out * Tensor(w)).sum() + out2.sum()).backward()
            ((tout * torch.tensor(w)).sum() + tout2.sum()).backward()
            _close(out2.numpy(), tout2.detach().numpy(), 1e-5)
            _close(x.grad.numpy(), tx.grad.numpy(), 1e-4)


@pytest.mark.parametrize("name", list(COMPOSITES))
def test_composites_over_changing_shapes_grad_modes_and_dtypes(name):
    jf, tf = COMPOSITES[name]
    rng = np.random.default_rng(7)
    cases = [((3, 4), np.float32, True), ((3, 4), np.float32, True), ((3, 4), np.float32, False),
             ((5,), np.float32, True),
             ((3, 4), np.float64, True), ((2, 3, 4), np.float32, True), ((3, 4), np.float16, True),
             ((3, 4), np.float32, True), ((4, 3), np.float32, True)]
    for shape, dtype, requires in cases:
        xv = rng.standard_normal(shape).astype(dtype)
        tol = 2e-2 if dtype == np.float16 else 1e-5
        x = Tensor(xv, requires_grad=requires)
        tx = torch.tensor(xv.astype(np.float32) if dtype == np.float16 else xv, requires_grad=requires)
        out, tout = jf(x * 2) * jf(x), tf(tx * 2) * tf(tx)
        _close(out.numpy(), tout.detach().numpy(), tol)
        if requires:
            (out * Tensor(xv)).sum().backward()
            (tout * torch.tensor(xv.astype(np.float32) if dtype == np.float16 else xv)).sum().backward()
            _close(x.grad.numpy(), tx.grad.numpy(), 5 * tol)
        with no_grad():
            _close(jf(Tensor(xv)).numpy(), tf(torch.tensor(xv)).numpy(), tol)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=["f16", "f32", "f64"])
def test_result_gradients_to_third_order_at_special_points(name, dtype):
    x = np.array([-20, -9, -1, -0.0, 0.0, 1e-20, 0.5, 9, 20, np.inf, -np.inf, np.nan], np.float64).astype(dtype)
    tol = 3e-2 if dtype == np.float16 else 1e-5
    tx, jx = torch.tensor(x, requires_grad=True), Tensor(x, requires_grad=True)
    tout, jout = getattr(torch, name)(tx), getattr(jx, name)()
    _close(jout.numpy(), tout.detach().numpy(), tol)
    for order in range(3):
        last = order == 2
        (tout,) = torch.autograd.grad(tout.sum(), tx, create_graph=not last)
        (jout,) = tinyjit.gradient(jout.sum(), [jx], create_graph=not last)
        _close(jout.numpy(), tout.detach().numpy(), tol)


@pytest.mark.parametrize("device", ["CPU", "CL", "CPU", "CL"], indirect=True)
def test_in_place_chains_on_results_and_integer_inputs(device):
    rng = np.random.default_rng(8)
    iv = rng.integers(-3, 4, (3, 3)).astype(np.int32)
    for name in ("tanh", "sigmoid", "expm1", "erf"):
        _close(getattr(Tensor(iv), name)().numpy(), getattr(torch, name)(torch.tensor(iv)).numpy(), 1e-6)
    _close(Tensor(np.abs(iv)).log1p().numpy(), torch.tensor(np.abs(iv)).log1p().numpy(), 1e-6)
    xv = rng.standard_normal((3, 3)).astype(np.float32)
    x, tx = Tensor(xv, requires_grad=True), torch.tensor(xv, requires_grad=True)
    y, ty = x.tanh(), tx.tanh()
    y2, ty2 = y * 1, ty * 1
    y2 += 1
    ty2 += 1
    y2.sigmoid_()
    ty2.sigmoid_()
    (y2 * y).sum().backward()
    (ty2 * ty).sum().backward()
    _close(x.grad.numpy(), tx.grad.numpy())
    # in-place tanh_, tanh_, sigmoid_ on one non-leaf (torch refuses: the out-of-place chain is the reference)
    x, tx = Tensor(xv, requires_grad=True), torch.tensor(xv, requires_grad=True)
    y = x * 2
    y.tanh_()
    y.tanh_()
    y.sigmoid_()
    ty = (tx * 2).tanh().tanh().sigmoid()
    (y * y).sum().backward()
    (ty * ty).sum().backward()
    _close(x.grad.numpy(), tx.grad.numpy())


@pytest.mark.parametrize("realized", [False, True])
@pytest.mark.parametrize("name", ["tanh", "sigmoid", "silu", "gelu_tanh"])
def test_result_updated_in_place_before_backward(name, realized):
    jf, tf = COMPOSITES[name]
    rng = np.random.default_rng(9)
    for _ in range(3):
        xv = rng.standard_normal(4).astype(np.float32)
        x = Tensor(xv, requires_grad=True)
        y = jf(x)
        if realized:
            y.realize()
        z = y * 3
        with no_grad():
            y.mul_(0.0)
        z.sum().backward()
        tx = torch.tensor(xv, requires_grad=True)
        tf(tx).sum().backward()
        _close(x.grad.numpy(), 3 * tx.grad.numpy())


TEMPLATED = {"tanh": lambda t: t.tanh(), "sigmoid": lambda t: t.sigmoid(), "silu": F.silu, "gelu": F.gelu,
             "expm1": lambda t: t.expm1(), "log1p": lambda t: t.abs().log1p(), "linear": lambda t: t.linear(t.T),
             "cat": lambda t: Tensor.cat(t, t * 2)}


@pytest.mark.parametrize("name", list(TEMPLATED))
def test_templates_follow_the_grad_mode_not_only_the_inputs(name):
    """A template recorded with gradients is not reused under no_grad for an input that requires grad (and back)."""
    fn = TEMPLATED[name]
    rng = np.random.default_rng(24)
    for _ in range(4):
        xv = rng.standard_normal((3, 3)).astype(np.float32)
        x = Tensor(xv, requires_grad=True)
        with_grad = fn(x)
        with no_grad():
            without = fn(x)
        again = fn(x)
        assert with_grad.requires_grad and again.requires_grad and not without.requires_grad
        _close(without.numpy(), with_grad.numpy())
        again.sum().backward()
        tx = torch.tensor(xv, requires_grad=True)
        torch_fn = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "silu": TORCH_F.silu, "gelu": TORCH_F.gelu,
                    "expm1": torch.expm1, "log1p": lambda t: t.abs().log1p(),
                    "linear": lambda t: TORCH_F.linear(t, t.T),
                    "cat": lambda t: torch.cat([t, t * 2])}[name]
        torch_fn(tx).sum().backward()
        _close(x.grad.numpy(), tx.grad.numpy(), 1e-4)


# ---- 4. training steps: continued walks, templates for Adam, linear, cat ----
@pytest.mark.parametrize("kind", ["GRUCell", "LSTMCell", "GRU", "LSTM"])
@pytest.mark.parametrize("opt_name", ["Adam", "AdamW"])
def test_recurrent_training_with_accumulation_realize_and_in_place_params(kind, opt_name):
    torch.manual_seed(0)
    tmodel, model = getattr(torch.nn, kind)(5, 6), getattr(nn, kind)(5, 6)
    model.load_state_dict({k: Tensor(v.detach().numpy().copy()) for k, v in tmodel.state_dict().items()})
    topt = getattr(torch.optim, opt_name)(tmodel.parameters(), lr=0.05)
    opt = getattr(optim, opt_name)(model.parameters(), lr=0.05)
    tparams, params = dict(tmodel.named_parameters()), dict(model.named_parameters())
    rng = np.random.default_rng(10)
    for step in range(6):
        xv = rng.standard_normal((3, 5) if "Cell" in kind else (4, 3, 5)).astype(np.float32)
        topt.zero_grad(set_to_none=step % 2 == 0)
        opt.zero_grad(set_to_none=step % 2 == 0)
        for _ in range(2 if step == 3 else 1):
            tout, out = tmodel(torch.tensor(xv)), model(Tensor(xv))
            while isinstance(tout, tuple):
                tout, out = tout[0], out[0]
            tloss, loss = (tout * tout).mean() + tout.sum() * 0.1, (out * out).mean() + out.sum() * 0.1
            tloss.backward()
            loss.backward()
        if step == 2:   # realize the loss and the gradients between backward and step
            loss.realize()
            for p in params.values():
                p.grad.realize()
        if step == 4:
            with no_grad(), torch.no_grad():
                for n in tparams:
                    tparams[n].mul_(0.9)
                    params[n].mul_(0.9)
        topt.step()
        opt.step()
        _close(loss.numpy(), tloss.detach().numpy(), 1e-4)
    for n in tparams:
        _close(params[n].numpy(), tparams[n].detach().numpy(), 1e-4)


@pytest.mark.parametrize("how", ["setitem", "update", "ior"])
def test_learning_rate_changed_through_dict_update_reaches_the_step(how):
    """group.update(lr=...) (and |=) changed the Python float only: dict.update bypasses ParamGroup.__setitem__,
    so the on-device learning rate the updates read stayed the old one (fixed: ParamGroup.update)."""
    v = np.random.default_rng(19).standard_normal(5).astype(np.float32)
    p, tp = Tensor(v.copy(), requires_grad=True), torch.tensor(v.copy(), requires_grad=True)
    opt, topt = optim.Adam([p], lr=0.1), torch.optim.Adam([tp], lr=0.1)
    for step in range(5):
        if step == 2:
            for group in opt.param_groups + topt.param_groups:
                if how == "setitem":
                    group["lr"] = 0.02
                elif how == "update":
                    group.update(lr=0.02)
                else:
                    group |= {"lr": 0.02}
        opt.zero_grad()
        topt.zero_grad()
        (p * p + p.sin()).sum().backward()
        (tp * tp + tp.sin()).sum().backward()
        opt.step()
        topt.step()
    _close(p.numpy(), tp.detach().numpy())


def test_cat_with_aliased_inputs_and_linear_over_views_repeated():
    rng = np.random.default_rng(11)
    for step in range(4):
        av = rng.standard_normal((3, 4)).astype(np.float32)
        a, ta = Tensor(av, requires_grad=True), torch.tensor(av, requires_grad=True)
        out = Tensor.cat(a, a, a[1:], a.T.reshape(3, 4), dim=0)
        tout = torch.cat([ta, ta, ta[1:], ta.T.reshape(3, 4)], 0)
        w = rng.standard_normal(tuple(tout.shape)).astype(np.float32)
        (out * Tensor(w)).sum().backward()
        (tout * torch.tensor(w)).sum().backward()
        _close(out.numpy(), tout.detach().numpy())
        _close(a.grad.numpy(), ta.grad.numpy())
        xv = rng.standard_normal((4, 4)).astype(np.float32)
        x, tx = Tensor(xv, requires_grad=True), torch.tensor(xv, requires_grad=True)
        bias = Tensor(xv[0], requires_grad=True) if step % 2 else None
        tbias = torch.tensor(xv[0], requires_grad=True) if step % 2 else None
        out = x.linear(x.T, bias) + x[1:].linear(x[:, :3].T).square().sum()
        tout = TORCH_F.linear(tx, tx.T, tbias) + TORCH_F.linear(tx[1:], tx[:, :3].T).square().sum()
        out.sum().backward()
        tout.sum().backward()
        _close(out.numpy(), tout.detach().numpy(), 1e-4)
        _close(x.grad.numpy(), tx.grad.numpy(), 1e-4)
        if bias is not None:
            _close(bias.grad.numpy(), tbias.grad.numpy(), 1e-4)


def test_threads_training_separate_models_concurrently():
    results = {}

    def train(seed):
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        tmodel = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3),
                                     torch.nn.Sigmoid())
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3), nn.Sigmoid())
        model.load_state_dict({k: Tensor(v.detach().numpy().copy()) for k, v in tmodel.state_dict().items()})
        topt, opt = torch.optim.Adam(tmodel.parameters(), lr=0.01), optim.Adam(model.parameters(), lr=0.01)
        for _ in range(6):
            xv = rng.standard_normal((5, 6)).astype(np.float32)
            topt.zero_grad()
            opt.zero_grad()
            tmodel(torch.tensor(xv)).square().mean().backward()
            model(Tensor(xv)).square().mean().backward()
            topt.step()
            opt.step()
        results[seed] = [(p.numpy(), q.detach().numpy()) for p, q in zip(model.parameters(), tmodel.parameters())]

    errors = errors_in_threads(train, [(s,) for s in range(3)])
    assert not errors, errors
    for pairs in results.values():
        for got, want in pairs:
            _close(got, want, 1e-4)


def _constant_cases(c: float) -> list:
    """(name, tinyjit loss, torch loss) over x, each holding the Python constant c somewhere in its graph: the
    gradient cache's templates must not keep one call's constant for the next."""
    full = np.full((3, 4), c, np.float32)
    return [
        ("tanh_times_c", lambda t: (t.tanh() * c).sum(), lambda t: (t.tanh() * c).sum()),
        ("pow_c", lambda t: (t ** c).tanh().sum(), lambda t: (t ** c).tanh().sum()),
        ("c_pow", lambda t: (Tensor(np.float32(c + 3)) ** t).sigmoid().sum(),
         lambda t: (torch.tensor(np.float32(c + 3)) ** t).sigmoid().sum()),
        ("sigmoid_of_scaled", lambda t: (t * c).sigmoid().square().sum(), lambda t: (t * c).sigmoid().square().sum()),
        ("clamp", lambda t: t.clamp(0.5 * c, 1.0 + c).tanh().sum(), lambda t: t.clamp(0.5 * c, 1.0 + c).tanh().sum()),
        ("leaky_relu", lambda t: F.leaky_relu(t - 1, c).sigmoid().sum(),
         lambda t: TORCH_F.leaky_relu(t - 1, c).sigmoid().sum()),
        ("var", lambda t: t.tanh().var(correction=int(abs(c)) % 2),
         lambda t: t.tanh().var(correction=int(abs(c)) % 2)),
        ("atan2", lambda t: t.atan2(Tensor(full)).sum(), lambda t: torch.atan2(t, torch.tensor(full)).sum()),
        ("hypot", lambda t: t.hypot(Tensor(full)).tanh().sum(),
         lambda t: torch.hypot(t, torch.tensor(full)).tanh().sum()),
        ("logaddexp", lambda t: t.logaddexp(t * c).sum(), lambda t: torch.logaddexp(t, t * c).sum()),
        ("binary_cross_entropy", lambda t: t.sigmoid().binary_cross_entropy(Tensor(np.abs(full) / 3)),
         lambda t: TORCH_F.binary_cross_entropy(t.sigmoid(), torch.tensor(np.abs(full) / 3))),
    ]


def test_gradient_templates_over_changing_constants():
    xv = np.random.default_rng(20).uniform(0.2, 1.5, (3, 4)).astype(np.float32)
    for c in [2.0, 3.0, 2.0, 0.5, -1.0, 0.0, 1.0, 2.5]:
        for name, jf, tf in _constant_cases(c):
            x, tx = Tensor(xv, requires_grad=True), torch.tensor(xv, requires_grad=True)
            jf(x).backward()
            tf(tx).backward()
            np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-4, err_msg=f"{name} {c}")


def test_training_interleaved_over_devices_and_dtypes():
    """Four models (CPU/CL x float32/float64) stepped in turn: templates are keyed by device and dtype."""
    pytest.importorskip("pyopencl")
    rng = np.random.default_rng(21)
    runs = []
    for device, dtype, tdtype in [("CPU", np.float32, torch.float32), ("CL", np.float32, torch.float32),
                                  ("CPU", np.float64, torch.float64), ("CL", np.float64, torch.float64)]:
        torch.manual_seed(0)
        tmodel = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.SiLU(), torch.nn.Linear(8, 8), torch.nn.Tanh(),
                                     torch.nn.Linear(8, 3), torch.nn.Sigmoid()).to(tdtype)
        model = nn.Sequential(nn.Linear(6, 8), nn.SiLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3), nn.Sigmoid())
        model.load_state_dict({k: Tensor(v.detach().numpy().copy()) for k, v in tmodel.state_dict().items()})
        model = model.to(device)
        runs.append((device, dtype, tmodel, model, torch.optim.AdamW(tmodel.parameters(), lr=0.01),
                     optim.AdamW(model.parameters(), lr=0.01)))
    for _ in range(4):
        for device, dtype, tmodel, model, topt, opt in runs:
            xv = rng.standard_normal((4, 6)).astype(dtype)
            topt.zero_grad()
            opt.zero_grad(set_to_none=False)
            tloss, loss = tmodel(torch.tensor(xv)).square().mean(), model(Tensor(xv, device=device)).square().mean()
            tloss.backward()
            loss.backward()
            topt.step()
            opt.step()
            _close(loss.numpy(), tloss.detach().numpy())
    for _, _, tmodel, model, _, _ in runs:
        for p, q in zip(model.parameters(), tmodel.parameters()):
            _close(p.numpy(), q.detach().numpy())


def test_two_losses_extra_forwards_and_a_step_from_another_thread():
    """Odd orders around the continued walk: two backward calls from one forward, a realize of something unrelated
    between backward and step, a second forward's backward before the step, the step run by another thread."""
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    model.load_state_dict({k: Tensor(v.detach().numpy().copy()) for k, v in tmodel.state_dict().items()})
    topt, opt = torch.optim.Adam(tmodel.parameters(), lr=0.05), optim.Adam(model.parameters(), lr=0.05)
    rng = np.random.default_rng(22)
    for step in range(8):
        xv = rng.standard_normal((4, 6)).astype(np.float32)
        topt.zero_grad()
        opt.zero_grad()
        th, h = tmodel(torch.tensor(xv)), model(Tensor(xv))
        tl1, tl2, l1, l2 = th.square().mean(), th.sigmoid().sum(), h.square().mean(), h.sigmoid().sum()
        mode = step % 4
        if mode == 0:
            tl1.backward(retain_graph=True)
            tl2.backward()
            l1.backward()
            l2.backward()
        elif mode == 1:
            tl2.backward()
            l2.backward()
            (Tensor(xv) * 2).sum().realize()
            _close(l2.numpy(), tl2.detach().numpy())
        elif mode == 2:
            tl1.backward()
            l1.backward()
            tmodel(torch.tensor(xv * 2)).sum().backward()
            model(Tensor(xv * 2)).sum().backward()
        else:
            tl1.backward()
            l1.backward()
        topt.step()
        if mode == 3:
            thread = threading.Thread(target=opt.step)
            thread.start()
            thread.join()
        else:
            opt.step()
        _close(l1.numpy(), tl1.detach().numpy())
        for p, q in zip(model.parameters(), tmodel.parameters()):
            _close(p.numpy(), q.detach().numpy())


# ---- 5. TinyJit's sequenced replay ----
def test_replay_of_many_kernels_with_an_index_check_in_the_middle():
    rng = np.random.default_rng(12)
    table_v = rng.standard_normal((10, 4)).astype(np.float32)
    table = Tensor(table_v).realize()

    def f(a, b, idx):
        h = a
        for i in range(12):
            h = (h * 1.01 + b).sum(1, keepdim=True).realize() if i % 4 == 0 else (h.sin() + i * 0.01).realize()
            if i == 5:
                h = h + table[idx].sum()
        return h.realize(), (a - b).realize()

    def reference(a, b, idx):
        h = a
        for i in range(12):
            h = (h * 1.01 + b).sum(1, keepdims=True) if i % 4 == 0 else np.sin(h) + i * 0.01
            if i == 5:
                h = h + table_v[idx].sum()
        return h, a - b

    jitted = TinyJit(f)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    for _ in range(6):
        b = rng.standard_normal((3, 4)).astype(np.float32)
        idx = rng.integers(0, 10, 5).astype(np.int32)
        for got, want in zip(jitted(Tensor(a).realize(), Tensor(b).realize(), Tensor(idx).realize()),
                             reference(a, b, idx)):
            _close(got.numpy(), want, 1e-4)
    with pytest.raises(IndexError):
        jitted(Tensor(a).realize(), Tensor(b).realize(), Tensor(np.array([0, 1, 2, 3, 11], np.int32)).realize())[0] \
            .numpy()
    # after the raise the replay still runs
    idx = rng.integers(0, 10, 5).astype(np.int32)
    _close(jitted(Tensor(a).realize(), Tensor(b).realize(), Tensor(idx).realize())[0].numpy(),
           reference(a, b, idx)[0], 1e-4)


def test_replay_with_outputs_fed_back():
    jitted = TinyJit(lambda x, y: ((x * 2 + y).realize(), (x - y).realize()))
    x, y = Tensor(np.ones(4, np.float32)).realize(), Tensor(np.arange(4, dtype=np.float32)).realize()
    xn, yn = np.ones(4), np.arange(4.0)
    for _ in range(6):
        x, y = jitted(x, y)
        xn, yn = xn * 2 + yn, xn - yn
        _close(x.numpy(), xn)
        _close(y.numpy(), yn)


def test_replay_with_one_tensor_passed_twice_from_capture_on():
    jitted = TinyJit(lambda a, b: ((a * b).sum(0) + a.sum(0)).realize())
    rng = np.random.default_rng(13)
    for _ in range(5):
        v = rng.standard_normal((6, 3)).astype(np.float32)
        t = Tensor(v).realize()
        _close(jitted(t, t).numpy(), (v * v).sum(0) + v.sum(0))


def test_jitted_training_step_equals_the_eager_step():
    def make():
        torch.manual_seed(1)
        tmodel = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.Linear(8, 3))
        model = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3))
        model.load_state_dict({k: Tensor(v.detach().numpy().copy()) for k, v in tmodel.state_dict().items()})
        return model

    eager, jit_model = make(), make()
    opt_eager, opt_jit = optim.AdamW(eager.parameters(), lr=0.01), optim.AdamW(jit_model.parameters(), lr=0.01)

    def step(model, opt, x):
        opt.zero_grad()
        loss = model(x).tanh().square().mean() + model(x).sigmoid().mean()
        loss.backward()
        opt.step()
        return loss.realize()

    jitted = TinyJit(lambda x: step(jit_model, opt_jit, x))
    rng = np.random.default_rng(14)
    for _ in range(6):
        xv = rng.standard_normal((5, 6)).astype(np.float32)
        _close(jitted(Tensor(xv).realize()).numpy(), step(eager, opt_eager, Tensor(xv)).numpy())
    for p, q in zip(eager.parameters(), jit_model.parameters()):
        _close(q.numpy(), p.numpy())


def test_jitted_function_using_cl_and_cpu():
    pytest.importorskip("pyopencl")
    jitted = TinyJit(lambda a, c: (((a * 2).to("CPU") + c).realize(), c.to("CL").exp().realize()))
    rng = np.random.default_rng(15)
    for _ in range(5):
        av, cv = rng.standard_normal(7).astype(np.float32), rng.standard_normal(7).astype(np.float32)
        r1, r2 = jitted(Tensor(av, device="CL").realize(), Tensor(cv).realize())
        _close(r1.numpy(), av * 2 + cv)
        _close(r2.numpy(), np.exp(cv))


def test_jitted_functions_replayed_by_three_threads_at_once():
    def worker(seed):
        rng = np.random.default_rng(seed)
        w = Tensor(rng.standard_normal((64, 64)).astype(np.float32) / 8).realize()
        jitted = TinyJit(lambda x: ((x @ w).tanh().realize(), (x.sigmoid() * 2).sum(0).realize()))
        for _ in range(8):
            xv = rng.standard_normal((32, 64)).astype(np.float32)
            a, b = jitted(Tensor(xv).realize())
            _close(a.numpy(), np.tanh(xv @ w.numpy()), 1e-4)
            _close(b.numpy(), (2 / (1 + np.exp(-xv))).sum(0), 1e-4)

    errors = errors_in_threads(worker, [(s,) for s in range(3)])
    assert not errors, errors


def test_one_kernel_launched_several_times_gets_each_launch_its_input():
    """(b * 2), (a * 2) and (c * 2) are one kernel launched three times in a sequence: each input swap goes to its
    own launch."""
    def f(a, b, c):
        x, y, z = (b * 2).realize(), (a * 2).realize(), (c * 2).realize()
        return (x * 2).realize(), (y + z * 2).realize(), x

    jitted = TinyJit(f)
    rng = np.random.default_rng(25)
    for _ in range(6):
        a, b, c = (rng.standard_normal(7).astype(np.float32) for _ in range(3))
        u, v, x = jitted(Tensor(a).realize(), Tensor(b).realize(), Tensor(c).realize())
        _close(u.numpy(), b * 4)
        _close(v.numpy(), a * 2 + c * 4)
        _close(x.numpy(), b * 2)


THREADED = """
import numpy as np
from tinyjit import Tensor, TinyJit
rng = np.random.default_rng(2)
table = Tensor(rng.standard_normal((64, 128)).astype(np.float32)).realize()
def step(x, w, idx):
    h = (x @ w).tanh()
    g = table[idx] * 2
    return (h.sum(1) + g.sum()).realize(), (h.T @ h).sigmoid().realize()
jitted = TinyJit(step)
w = Tensor(rng.standard_normal((128, 128)).astype(np.float32) / 16).realize()
for i in range(5):
    x = rng.standard_normal((300, 128)).astype(np.float32)
    idx = rng.integers(0, 64, 7).astype(np.int32)
    a, b = jitted(Tensor(x).realize(), w, Tensor(idx).realize())
    h = np.tanh(x @ w.numpy())
    np.testing.assert_allclose(a.numpy(), h.sum(1) + (table.numpy()[idx] * 2).sum(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(b.numpy(), 1 / (1 + np.exp(-(h.T @ h))), rtol=1e-4, atol=1e-5)
try:
    jitted(Tensor(x).realize(), w, Tensor(np.array([0, 64, 1, 2, 3, 4, 5], np.int32)).realize())[0].numpy()
    print("no raise")
except IndexError:
    print("raised")
"""


@pytest.mark.parametrize("threads,native", [("4", "1"), ("4", "0"), ("2", "1")])
def test_threaded_sequenced_replay_in_a_subprocess(threads, native, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, THREADS=threads, TINYJIT_NATIVE_POOL=native,
               TINYJIT_CACHE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", THREADED], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["raised"]


# ---- 6. codegen: odd shapes, views, dtypes against numpy ----
DTYPES = [np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64]


@pytest.mark.parametrize("seed", range(4))
def test_fuzz_views_masks_and_reductions_against_numpy(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(12):
        dtype = DTYPES[rng.integers(len(DTYPES))]
        shape = tuple(int(s) for s in rng.integers(1, 9, size=rng.integers(2, 4)))
        if np.issubdtype(dtype, np.integer):
            a, b = rng.integers(-5, 6, shape).astype(dtype), rng.integers(-5, 6, shape[::-1]).astype(dtype)
        else:
            a, b = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape[::-1]).astype(dtype)
        perm = tuple(range(len(shape)))[::-1]
        pad = ((1, 2),) + ((0, 0),) * (len(shape) - 1)
        got = (Tensor(a).permute(*perm) + Tensor(b)).flip(0)[::2].pad(pad)
        want = np.pad((a.transpose(perm) + b)[::-1][::2], pad)
        got, want = (got > 0).where(got, got * 3), np.where(want > 0, want, want * 3)
        axis = int(rng.integers(len(shape)))
        tol = 3e-2 if dtype == np.float16 else 1e-5
        _close(got.sum(axis).numpy(), want.astype(np.float64).sum(axis), tol)
        assert np.array_equal(got.max(axis).values.numpy(), want.max(axis))
        m, k, n = (int(v) for v in rng.integers(1, 13, 3))
        x, y = rng.integers(-3, 4, (k, m)).astype(dtype), rng.integers(-3, 4, (n, k)).astype(dtype)
        _close((Tensor(x).T @ Tensor(y).T)[::-1].numpy(), (x.T.astype(np.float64) @ y.T)[::-1], 1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.int16], ids=lambda d: d.__name__)
def test_transposed_matmuls_with_odd_sizes(dtype):
    rng = np.random.default_rng(16)
    for m, k, n in [(67, 130, 259), (1, 300, 33), (129, 17, 65), (33, 257, 3)]:
        a, b = rng.integers(-3, 4, (k, m)).astype(dtype), rng.integers(-3, 4, (n, k)).astype(dtype)
        _close((Tensor(a).T @ Tensor(b).T).numpy(), a.T.astype(np.float64) @ b.T.astype(np.float64), 0)
        _close((Tensor(b) @ Tensor(a)).T.contiguous().numpy(), (b.astype(np.float64) @ a).T, 0)


def test_attention_scores_and_odd_convolutions_against_torch():
    rng = np.random.default_rng(17)
    q, k = rng.standard_normal((2, 3, 37, 16)).astype(np.float32), rng.standard_normal((2, 3, 41, 16)).astype(
        np.float32)
    _close((Tensor(q) @ Tensor(k).transpose(-1, -2)).softmax(-1).numpy(),
           torch.softmax(torch.tensor(q) @ torch.tensor(k).transpose(-1, -2), -1).numpy())
    for cin, cout, h, w, kh, kw, stride, pad, dil, groups in [(3, 5, 7, 9, 3, 2, 1, 1, 1, 1),
                                                                (4, 4, 13, 5, 5, 1, 2, 2, 1, 2),
                                                                (2, 6, 1, 17, 1, 4, 1, 0, 2, 1),
                                                                (6, 3, 8, 8, 3, 3, 3, 1, 1, 3)]:
        x = rng.standard_normal((2, cin, h, w)).astype(np.float32)
        wt = rng.standard_normal((cout, cin // groups, kh, kw)).astype(np.float32)
        kwargs = dict(stride=stride, padding=pad, dilation=dil, groups=groups)
        _close(F.conv2d(Tensor(x), Tensor(wt), **kwargs).numpy(),
               TORCH_F.conv2d(torch.tensor(x), torch.tensor(wt), **kwargs).numpy(), 1e-4)
        _close(F.conv1d(Tensor(x[:, :, 0]), Tensor(wt[:, :, 0]), **kwargs).numpy(),
               TORCH_F.conv1d(torch.tensor(x[:, :, 0]), torch.tensor(wt[:, :, 0]), **kwargs).numpy(), 1e-4)


def test_bool_and_int8_wraparound_through_views():
    rng = np.random.default_rng(18)
    a, b = rng.random((5, 7)) > 0.5, rng.random((7, 5)) > 0.3
    assert np.array_equal(((Tensor(a).T & Tensor(b)) | Tensor(a).T.flip(1)).numpy(), (a.T & b) | a.T[:, ::-1])
    assert np.array_equal(Tensor(a)[::2, 1::3].sum(0).numpy(), a[::2, 1::3].sum(0))
    c = rng.integers(-128, 127, (9, 11)).astype(np.int8)
    assert np.array_equal((Tensor(c) * Tensor(c) + Tensor(c).flip(0)).numpy(), c * c + c[::-1])
