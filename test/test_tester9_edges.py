"""Edge cases of HEAD 45af55f (exp2 results that round to 0, nested -inf selects in a masked max, causal SDPA
without the fully-masked-row guard, heavy CPU epilogues stored apart from their contraction), against numpy/torch."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyjit import Tensor, TinyJit
from tinyjit.realize import counters


# --- 1. exp2 where the result rounds to 0 -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, tiny", [(np.float32, 149), (np.float64, 1074)])
def test_exp2_around_the_zero_threshold(dtype, tiny):
    """The smallest denormal, the tie at half of it (rounds to even: 0), just above the tie (the denormal), and the
    first values the new select sends to 0, bitwise."""
    x = np.array([-tiny, -tiny - 0.5, -tiny - 1, -tiny - 1.5, -tiny - 2, -tiny - 0.99, -tiny + 0.7, -np.inf, np.inf,
                  np.nan, -1e30, -tiny - 1 + 2.0 ** -15], dtype=dtype)
    got = Tensor(x).exp2().numpy()
    smallest = np.finfo(dtype).smallest_subnormal
    want = np.array([smallest, smallest, 0.0, 0.0, 0.0, smallest, smallest * 2, 0.0, np.inf, np.nan, 0.0, smallest],
                    dtype=dtype)
    assert np.array_equal(got, want, equal_nan=True), (got, want)
    assert not np.signbit(got[~np.isnan(got)]).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_family_of_minus_inf_and_huge_negatives(dtype):
    x = np.array([-np.inf, -1e30, -800.0, -110.0, np.nan], dtype=dtype)
    t = torch.from_numpy(x)
    for got, want in [(Tensor(x).exp(), torch.exp(t)), (Tensor(x).sigmoid(), torch.sigmoid(t)),
                      (Tensor(x).softplus(), F.softplus(t)), (Tensor(x).elu(), F.elu(t)),
                      (Tensor(np.array(3.0, dtype)) ** Tensor(x), torch.pow(torch.tensor(3.0, dtype=t.dtype), t))]:
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=0)


def test_softmax_rows_of_minus_inf_and_far_entries():
    x = np.array([[0.0, -104.0, -np.inf, -200.0], [-np.inf, 5.0, -np.inf, -1000.0]], np.float32)
    for got, want in [(Tensor(x).softmax(-1), torch.softmax(torch.from_numpy(x), -1)),
                      (Tensor(x).log_softmax(-1), torch.log_softmax(torch.from_numpy(x), -1)),
                      (Tensor(x).logsumexp(-1), torch.logsumexp(torch.from_numpy(x), -1))]:
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-45)


# --- 2. masked max over nested selects with -inf --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cols", [7, 33, 129])
def test_masked_max_nested_selects(dtype, cols):
    """The softmax-backward pattern where(m == -inf, 0, where(mask, x, -inf)), with an all-masked row, a NaN kept,
    a NaN masked out, a +inf, and a row of -inf."""
    rng = np.random.default_rng(cols)
    x = rng.standard_normal((7, cols)).astype(dtype)
    mask = rng.random((7, cols)) < 0.5
    mask[0], mask[1] = False, True
    x[2, 3], mask[2, 3] = np.nan, True
    x[3, 3], mask[3, 3] = np.nan, False
    x[4, :], mask[4] = -np.inf, True
    x[5, 1], mask[5, 1] = np.inf, True
    m = np.array([[0.0], [-np.inf], [0.0], [0.0], [0.0], [0.0], [-np.inf]], dtype)
    e = (Tensor(m) == -math.inf).where(0.0, Tensor(mask).where(Tensor(x), -math.inf))
    ref = np.where(m == -np.inf, 0.0, np.where(mask, x, -np.inf)).astype(dtype)
    want = torch.amax(torch.from_numpy(ref), -1)
    assert np.array_equal(e.amax(-1).numpy(), want.numpy(), equal_nan=True)
    assert np.array_equal(e.amax(-1, keepdim=True).numpy(), want.numpy()[:, None], equal_nan=True)
    assert np.array_equal(e.argmax(-1).numpy(), torch.argmax(torch.from_numpy(ref), -1).numpy())
    e2 = Tensor(mask).where(-math.inf, (Tensor(x) > 0).where(Tensor(x), -math.inf))
    ref2 = np.where(mask, -np.inf, np.where(x > 0, x, -np.inf)).astype(dtype)
    assert np.array_equal(e2.amax(0).numpy(), torch.amax(torch.from_numpy(ref2), 0).numpy(), equal_nan=True)


# --- 3. causal SDPA --------------------------------------------------------------------------------------------------

def _sdpa_both(q, k, v, **kwargs):
    tq, tk, tv = (Tensor(a, requires_grad=True) for a in (q, k, v))
    Q, K, V = (torch.from_numpy(a).requires_grad_() for a in (q, k, v))
    out = tq.scaled_dot_product_attention(tk, tv, **kwargs)
    want = F.scaled_dot_product_attention(Q, K, V, **{k_: (torch.from_numpy(a.numpy()) if isinstance(a, Tensor)
                                                           else a) for k_, a in kwargs.items()})
    out.sum().backward()
    want.sum().backward()
    return (out.numpy(), tq.grad.numpy(), tk.grad.numpy(), tv.grad.numpy()), \
        (want.detach().numpy(), Q.grad.numpy(), K.grad.numpy(), V.grad.numpy())


def test_causal_sdpa_row_of_minus_inf_scores_is_zero():
    """(A regression of 45af55f, which dropped the fully-masked-row guard from the causal path: a row whose allowed
    scores are all -inf, by overflow or -inf in k, was NaN; torch and the equivalent bool tril mask give 0.)"""
    q = np.array([[1e20, 0.0], [1.0, 0.0]], np.float32)
    k = np.array([[-1e20, 0.0], [1.0, 0.0]], np.float32)    # row 0's only allowed score overflows to -inf
    v = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    got, want = _sdpa_both(q, k, v, is_causal=True)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_bool_tril_mask_row_of_minus_inf_scores_is_zero():
    """The same inputs through an explicit mask keep the guard (what is_causal=True gave before 45af55f)."""
    q = np.array([[1e20, 0.0], [1.0, 0.0]], np.float32)
    k = np.array([[-1e20, 0.0], [1.0, 0.0]], np.float32)
    v = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    got, want = _sdpa_both(q, k, v, attn_mask=Tensor(np.tril(np.ones((2, 2), bool))))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_causal_sdpa_no_keys():
    """is_causal=True with no keys (S == 0) raised IndexError from amax over a size-0 dim; torch returns zeros."""
    q, k, v = np.ones((3, 4), np.float32), np.ones((0, 4), np.float32), np.ones((0, 2), np.float32)
    out = Tensor(q).scaled_dot_product_attention(Tensor(k), Tensor(v), is_causal=True).numpy()
    np.testing.assert_array_equal(out, np.zeros((3, 2), np.float32))


@pytest.mark.parametrize("L, S", [(1, 1), (1, 5), (5, 1), (3, 5), (5, 3), (4, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_causal_sdpa_matches_torch(L, S, dtype):
    rng = np.random.default_rng(L * 10 + S)
    q = rng.standard_normal((2, 3, L, 4)).astype(dtype)
    k = rng.standard_normal((2, 3, S, 4)).astype(dtype)
    v = rng.standard_normal((2, 3, S, 3)).astype(dtype)
    tol = 2e-5 if dtype == np.float32 else 1e-11
    for scale in (None, 0.37):
        got, want = _sdpa_both(q, k, v, is_causal=True, scale=scale)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def test_sdpa_fully_masked_rows_still_zero():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 4, 5)) for _ in range(3))
    bool_mask = rng.random((4, 4)) < 0.5
    bool_mask[1] = False
    float_mask = np.where(rng.random((4, 4)) < 0.5, 0.3, -np.inf)
    float_mask[2] = -np.inf
    for mask in (bool_mask, float_mask):
        got, want = _sdpa_both(q, k, v, attn_mask=Tensor(mask))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


# --- 4. heavy epilogues stored apart from their contraction (CPU) ---------------------------------------------------

@pytest.mark.parametrize("act", ["gelu", "gelu_tanh", "silu", "softplus", "sigmoid"])
def test_linear_heavy_epilogue_values_and_grads(act):
    fa = {"gelu": lambda t: t.gelu(), "gelu_tanh": lambda t: t.gelu(approximate="tanh"), "silu": lambda t: t.silu(),
          "softplus": lambda t: t.softplus(), "sigmoid": lambda t: t.sigmoid()}[act]
    ft = {"gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "silu": F.silu,
          "softplus": F.softplus, "sigmoid": torch.sigmoid}[act]
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((130, 70)) * 0.5).astype(np.float32)
    w = (rng.standard_normal((129, 70)) * 0.3).astype(np.float32)
    b = rng.standard_normal(129).astype(np.float32)
    g = rng.standard_normal((130, 129))
    X, W, B = (torch.from_numpy(a.astype(np.float64)).requires_grad_() for a in (x, w, b))
    want = ft(F.linear(X, W, B))
    (want * torch.from_numpy(g)).sum().backward()
    tx, tw, tb = (Tensor(a, requires_grad=True) for a in (x, w, b))
    out = fa(tx @ tw.T + tb)
    (out * Tensor(g.astype(np.float32))).sum().backward()
    Tensor.realize_all(out, tx.grad, tw.grad, tb.grad)
    np.testing.assert_allclose(out.numpy(), want.detach().numpy(), rtol=3e-4, atol=3e-4)
    for got, ref in ((tx.grad, X.grad), (tw.grad, W.grad), (tb.grad, B.grad)):
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=3e-3, atol=3e-3)


def test_heavy_epilogue_is_split_and_shared_product_outputs():
    rng = np.random.default_rng(1)
    x, w = (rng.standard_normal((128, 128)).astype(np.float32) * 0.1 for _ in range(2))
    tx, tw = Tensor(x), Tensor(w)
    Tensor.realize_all(tx, tw)
    before = counters["kernels_launched"]
    (tx @ tw).gelu().realize()
    assert counters["kernels_launched"] - before == 2   # the product alone, then the gelu
    p = tx @ tw
    o1, o2, o3 = p.exp(), p.sin() * p, (p > 0).where((p + 1).log(), p.tanh())
    Tensor.realize_all(o1, o2, o3)
    P = torch.from_numpy(x).double() @ torch.from_numpy(w).double()
    np.testing.assert_allclose(o1.numpy(), P.exp(), rtol=1e-5)
    np.testing.assert_allclose(o2.numpy(), P.sin() * P, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(o3.numpy(), torch.where(P > 0, torch.log1p(P), P.tanh()), rtol=1e-5, atol=1e-7)


def test_heavy_epilogue_assign_reads_target_transposed():
    rng = np.random.default_rng(2)
    a, w = (rng.standard_normal((128, 128)) * 0.1 for _ in range(2))
    tw = Tensor(w)
    tw.realize()
    tw.assign((Tensor(a) @ tw).sigmoid() + tw.T).realize()
    W, A = torch.from_numpy(w), torch.from_numpy(a)
    np.testing.assert_allclose(tw.numpy(), torch.sigmoid(A @ W) + W.T, rtol=1e-12)


def test_heavy_epilogue_under_jit_replay():
    @TinyJit
    def f(x, w):
        p = x @ w
        return (p.erf() * p.exp().sin()).realize(), (p * 2).realize()
    rng = np.random.default_rng(3)
    for _ in range(4):
        x = rng.standard_normal((128, 64)).astype(np.float32)
        w = rng.standard_normal((64, 128)).astype(np.float32) * 0.1
        a, b = f(Tensor(x), Tensor(w))
        P = torch.from_numpy(x).double() @ torch.from_numpy(w).double()
        np.testing.assert_allclose(a.numpy(), torch.erf(P) * P.exp().sin(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b.numpy(), P * 2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_masked_softmax_gradient(fn):
    """The backward whose row max is the nested-select pattern of 2., with -inf entries (not whole rows)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 33))
    mask = rng.random((6, 33)) < 0.6
    mask[:, 0] = True
    g = rng.standard_normal((6, 33))
    tx, X = Tensor(x, requires_grad=True), torch.from_numpy(x).requires_grad_()
    out = getattr(Tensor(mask).where(tx, -math.inf), fn)(-1)
    (out * Tensor(g)).sum().backward()
    want = getattr(torch, fn)(torch.where(torch.from_numpy(mask), X, torch.tensor(-math.inf, dtype=X.dtype)), -1)
    (want * torch.from_numpy(g)).sum().backward()
    np.testing.assert_allclose(out.numpy(), want.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(tx.grad.numpy(), X.grad.numpy(), rtol=1e-10, atol=1e-12)
