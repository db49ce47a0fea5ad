"""tinyjit.nn.functional against torch.nn.functional: values and gradients of every function, with torch's
argument order and defaults, plus the errors PyTorch raises."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import tinyjit.nn.functional as F
from tinyjit import Tensor

pytestmark = [pytest.mark.filterwarnings("ignore:size_average and reduce"),
              pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")]


def _arr(*shape, seed=0, low=None):
    a = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return np.abs(a) + low if low is not None else a


def check(ours, theirs, *inputs, grad=True, atol=1e-5, rtol=1e-4, ints=()):
    """Call ours(*Tensors) and theirs(*torch tensors) on the same numpy inputs; compare outputs and, for float
    inputs not listed in `ints` (positions), the gradients of a fixed random weighting of the output."""
    ts = [torch.tensor(a, requires_grad=grad and a.dtype.kind == "f" and i not in ints) for i, a in enumerate(inputs)]
    os_ = [Tensor(a, requires_grad=grad and a.dtype.kind == "f" and i not in ints) for i, a in enumerate(inputs)]
    expected, got = theirs(*ts), ours(*os_)
    if isinstance(expected, tuple):
        for e, g in zip(expected, got):
            _close(g, e, atol, rtol)
        expected, got = expected[0], got[0]
    _close(got, expected, atol, rtol)
    if not grad or not expected.requires_grad:
        return
    weights = np.random.default_rng(7).standard_normal(tuple(expected.shape)).astype(np.float32)
    (expected * torch.tensor(weights)).sum().backward()
    (got * Tensor(weights)).sum().backward()
    for t, o in zip(ts, os_):
        if t.requires_grad:
            assert o.grad is not None
            np.testing.assert_allclose(o.grad.numpy(), t.grad.numpy(), atol=atol * 10, rtol=rtol * 10)


def _close(got, expected, atol, rtol):
    assert got.shape == tuple(expected.shape), (got.shape, tuple(expected.shape))
    np.testing.assert_allclose(got.numpy(), expected.detach().numpy(), atol=atol, rtol=rtol)


# values with the kinks of the piecewise functions: 0, +-1, and the hardtanh bounds
KINKS = np.array([-3, -1.5, -1, -0.5, 0, 0.25, 0.5, 1, 2, 30, -30, 1.5], np.float32).reshape(3, 4)

ACTIVATIONS = [
    ("relu", lambda m, x: m.relu(x)),
    ("gelu", lambda m, x: m.gelu(x)),
    ("gelu_tanh", lambda m, x: m.gelu(x, approximate="tanh")),
    ("silu", lambda m, x: m.silu(x)),
    ("hardtanh", lambda m, x: m.hardtanh(x)),
    ("hardtanh_bounds", lambda m, x: m.hardtanh(x, -0.5, 2.0)),
    ("celu", lambda m, x: m.celu(x, alpha=1.5)),
    ("softsign", lambda m, x: m.softsign(x)),
    ("logsigmoid", lambda m, x: m.logsigmoid(x)),
    ("glu", lambda m, x: m.glu(x)),
    ("glu_dim0", lambda m, x: m.glu(x[:2], dim=0)),
    ("softmax", lambda m, x: m.softmax(x, dim=1)),
    ("log_softmax", lambda m, x: m.log_softmax(x, dim=0)),
    ("softmin", lambda m, x: m.softmin(x, dim=-1)),
    ("leaky_relu", lambda m, x: m.leaky_relu(x, 0.2)),
    ("elu", lambda m, x: m.elu(x)),
    ("softplus", lambda m, x: m.softplus(x, beta=2.0)),
    ("normalize", lambda m, x: m.normalize(x)),
    ("normalize_p1", lambda m, x: m.normalize(x, p=1, dim=0)),
    ("dropout_p0", lambda m, x: m.dropout(x, 0.0)),
    ("dropout_eval", lambda m, x: m.dropout(x, 0.5, training=False)),
]


@pytest.mark.parametrize("name,fn", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation(name, fn):
    check(lambda x: fn(F, x), lambda x: fn(TF, x), KINKS)


def test_activation_modules():
    from tinyjit import nn
    x = KINKS
    for ours, theirs in [(nn.Hardtanh(-0.5, 2.0), torch.nn.Hardtanh(-0.5, 2.0)), (nn.CELU(0.5), torch.nn.CELU(0.5)),
                         (nn.Softsign(), torch.nn.Softsign()), (nn.LogSigmoid(), torch.nn.LogSigmoid()),
                         (nn.GLU(0), torch.nn.GLU(0)), (nn.Softmin(1), torch.nn.Softmin(1))]:
        inp = x[:2] if isinstance(ours, nn.GLU) else x
        _close(ours(Tensor(inp)), theirs(torch.tensor(inp)), 1e-6, 1e-5)


def test_dropout_is_training_by_default():
    Tensor.manual_seed(0)
    out = F.dropout(Tensor.ones(1000), 0.5).numpy()
    assert set(np.unique(out)) <= {0.0, 2.0}
    assert 350 < (out == 0).sum() < 650
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(Tensor.ones(3), 1.5)


# ---- losses ----
LOGITS, TARGETS = _arr(4, 5, 3), np.array([[0, 4, 2], [1, -100, 3], [4, 4, 0], [2, 1, -100]])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("extra", [{}, {"label_smoothing": 0.2}, {"weight": True}, {"weight": True,
                                                                                   "label_smoothing": 0.1}])
def test_cross_entropy(reduction, extra):
    w = np.array([1.0, 2.0, 0.5, 1.5, 3.0], np.float32)
    kw = dict(extra, reduction=reduction)
    if kw.pop("weight", False):
        check(lambda x, t, w: F.cross_entropy(x, t, w, **kw), lambda x, t, w: TF.cross_entropy(x, t, w, **kw),
              LOGITS, TARGETS, w, ints=(2,))
    else:
        check(lambda x, t: F.cross_entropy(x, t, **kw), lambda x, t: TF.cross_entropy(x, t, **kw), LOGITS, TARGETS)


def test_cross_entropy_probabilities_and_legacy_flags():
    probs = np.random.default_rng(1).dirichlet(np.ones(5), size=(4, 3)).transpose(0, 2, 1).astype(np.float32)
    check(lambda x, p: F.cross_entropy(x, p, label_smoothing=0.1), lambda x, p: TF.cross_entropy(x, p,
          label_smoothing=0.1), LOGITS, probs, ints=(1,))
    t = np.array([0, 4, 2, 1])
    check(lambda x, t: F.cross_entropy(x, t, size_average=False), lambda x, t: TF.cross_entropy(x, t,
          size_average=False), LOGITS[:, :, 0], t)
    check(lambda x, t: F.nll_loss(x, t, reduce=False), lambda x, t: TF.nll_loss(x, t, reduce=False),
          LOGITS[:, :, 0], t)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss(reduction):
    w = np.array([1.0, 2.0, 0.5, 1.5, 3.0], np.float32)
    check(lambda x, t, w: F.nll_loss(x.log_softmax(1), t, w, ignore_index=4, reduction=reduction),
          lambda x, t, w: TF.nll_loss(x.log_softmax(1), t, w, ignore_index=4, reduction=reduction),
          LOGITS, np.where(TARGETS < 0, 0, TARGETS), w, ints=(2,))


PRED, GOAL = _arr(3, 4), _arr(3, 4, seed=1)
PROB, LABEL = 1 / (1 + np.exp(-PRED)), (GOAL > 0).astype(np.float32)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses(reduction):
    for name in ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"):
        check(lambda x, y: getattr(F, name)(x, y, reduction=reduction),
              lambda x, y: getattr(TF, name)(x, y, reduction=reduction), PRED, GOAL)
    check(lambda x, y: F.kl_div(x, y, reduction=reduction), lambda x, y: TF.kl_div(x, y, reduction=reduction),
          PRED, np.abs(GOAL), ints=(1,))


def test_binary_cross_entropy():
    w = _arr(3, 4, seed=3, low=0.1)
    pos = np.array([1.0, 2.0, 0.5, 3.0], np.float32)
    check(lambda p, t, w: F.binary_cross_entropy(p, t, w), lambda p, t, w: TF.binary_cross_entropy(p, t, w),
          PROB, LABEL, w, ints=(1, 2))
    check(lambda p, t: F.binary_cross_entropy(p, t, reduction="none"),
          lambda p, t: TF.binary_cross_entropy(p, t, reduction="none"), PROB, LABEL, ints=(1,))
    check(lambda x, t, w, pw: F.binary_cross_entropy_with_logits(x, t, w, reduction="sum", pos_weight=pw),
          lambda x, t, w, pw: TF.binary_cross_entropy_with_logits(x, t, w, reduction="sum", pos_weight=pw),
          PRED, LABEL, w, pos, ints=(1, 2, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_gradient_at_certain_probabilities(dtype):
    """torch's BCE gradients where a probability is 0 or 1: (p - t) / max(p (1 - p), 1e-12) for p (finite; the
    clamped logs' gradients were NaN there) and log(1 - p) - log(p) for a target that requires grad (+-inf)."""
    p = np.array([0, 1, 0.5, 1e-30, 1 - 1e-7, 0.3, 0, 1], dtype)
    t = np.array([1, 0, 0.5, 0, 1, 0.2, 0, 1], dtype)
    for reduction in ("mean", "none"):
        ours_p, ours_t = Tensor(p, requires_grad=True), Tensor(t, requires_grad=True)
        theirs_p, theirs_t = torch.tensor(p, requires_grad=True), torch.tensor(t, requires_grad=True)
        got = F.binary_cross_entropy(ours_p, ours_t, reduction=reduction)
        want = TF.binary_cross_entropy(theirs_p, theirs_t, reduction=reduction)
        np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-6)
        got.sum().backward()
        want.sum().backward()
        np.testing.assert_allclose(ours_p.grad.numpy(), theirs_p.grad.numpy(), rtol=1e-6)
        np.testing.assert_allclose(ours_t.grad.numpy(), theirs_t.grad.numpy(), rtol=1e-6)


def test_loss_errors():
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(Tensor(PRED), Tensor(GOAL), reduction="avg")
    with pytest.raises(ValueError, match="target"):
        F.cross_entropy(Tensor(LOGITS), Tensor(TARGETS[:2]))
    with pytest.raises(TypeError, match="Tensor"):
        F.l1_loss(PRED, Tensor(GOAL))


# ---- normalization ----
def test_norms():
    x = _arr(4, 6, 3, 2)
    w, b = _arr(6, seed=1), _arr(6, seed=2)
    check(lambda x, w, b: F.group_norm(x, 3, w, b), lambda x, w, b: TF.group_norm(x, 3, w, b), x, w, b)
    check(lambda x, w, b: F.layer_norm(x, (3, 2)), lambda x, w, b: TF.layer_norm(x, (3, 2)) + 0 * w.sum() * b.sum(),
          x, w, b, grad=False)
    check(lambda x: F.layer_norm(x, (2,), eps=1e-3), lambda x: TF.layer_norm(x, (2,), eps=1e-3), x)
    check(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
          lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True), x, w, b)


def test_batch_norm_running_stats():
    x = _arr(4, 6, 3, 2)
    rm, rv = np.zeros(6, np.float32), np.ones(6, np.float32)
    orm, orv, trm, trv = Tensor(rm), Tensor(rv), torch.tensor(rm), torch.tensor(rv)
    _close(F.batch_norm(Tensor(x), orm, orv, training=True, momentum=0.3),
           TF.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.3), 1e-5, 1e-4)
    _close(orm, trm, 1e-6, 1e-5), _close(orv, trv, 1e-6, 1e-5)
    _close(F.batch_norm(Tensor(x), orm, orv), TF.batch_norm(torch.tensor(x), trm, trv), 1e-5, 1e-4)


# ---- linear, convolutions, embedding, attention ----
def test_linear_and_conv():
    check(F.linear, TF.linear, _arr(2, 3, 5), _arr(4, 5, seed=1), _arr(4, seed=2))
    check(lambda x, w: F.conv1d(x, w, stride=2, padding=1), lambda x, w: TF.conv1d(x, w, stride=2, padding=1),
          _arr(2, 4, 9), _arr(6, 4, 3, seed=1))
    check(lambda x, w, b: F.conv2d(x, w, b, padding="same", groups=2),
          lambda x, w, b: TF.conv2d(x, w, b, padding="same", groups=2), _arr(4, 5, 5), _arr(6, 2, 3, 3, seed=1),
          _arr(6, seed=2))
    check(lambda x, w, b: F.conv3d(x, w, b, stride=(1, 2, 1), padding=1, dilation=(1, 1, 2)),
          lambda x, w, b: TF.conv3d(x, w, b, stride=(1, 2, 1), padding=1, dilation=(1, 1, 2)),
          _arr(2, 2, 4, 5, 5), _arr(3, 2, 2, 3, 2, seed=1), _arr(3, seed=2))


def test_conv_transpose():
    check(lambda x, w: F.conv_transpose1d(x, w, stride=2, output_padding=1),
          lambda x, w: TF.conv_transpose1d(x, w, stride=2, output_padding=1), _arr(2, 3, 5), _arr(3, 2, 3, seed=1))
    check(lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, groups=2),
          lambda x, w, b: TF.conv_transpose2d(x, w, b, stride=2, padding=1, groups=2), _arr(1, 4, 3, 4),
          _arr(4, 3, 3, 3, seed=1), _arr(6, seed=2))
    check(lambda x, w, b: F.conv_transpose3d(x, w, b, stride=(2, 1, 2), padding=(1, 0, 1)),
          lambda x, w, b: TF.conv_transpose3d(x, w, b, stride=(2, 1, 2), padding=(1, 0, 1)), _arr(2, 2, 3, 3, 3),
          _arr(2, 3, 3, 2, 3, seed=1), _arr(3, seed=2))


def test_conv_errors():
    with pytest.raises(RuntimeError, match="conv3d"):
        F.conv3d(Tensor(_arr(2, 4, 4)), Tensor(_arr(3, 2, 2, 2, 2)))
    with pytest.raises(ValueError, match="groups"):
        F.conv2d(Tensor(_arr(1, 3, 4, 4)), Tensor(_arr(2, 2, 2, 2)))


def test_embedding_and_one_hot():
    idx = np.array([[0, 2, 5], [2, 2, 1]])
    check(lambda i, w: F.embedding(i, w, padding_idx=2), lambda i, w: TF.embedding(i, w, padding_idx=2),
          idx, _arr(6, 4))
    check(lambda i, w: F.embedding(i, w), lambda i, w: TF.embedding(i, w), idx, _arr(6, 4))
    np.testing.assert_array_equal(F.one_hot(Tensor(idx), 7).numpy(), TF.one_hot(torch.tensor(idx), 7).numpy())
    with pytest.raises(IndexError):
        F.embedding(Tensor(np.array([6])), Tensor(_arr(6, 4))).numpy()
    with pytest.raises(ValueError, match="padding_idx"):
        F.embedding(Tensor(idx), Tensor(_arr(6, 4)), padding_idx=6)


@pytest.mark.parametrize("kw", [{}, {"is_causal": True}, {"scale": 0.3}, {"mask": "bool"}, {"mask": "float"},
                                {"enable_gqa": True}, {"mask": "bool", "empty_row": True},
                                {"mask": "float", "empty_row": True}])
def test_scaled_dot_product_attention(kw):
    """Values and gradients like torch; a query row that may attend to nothing gives zeros (torch's CPU kernels),
    with a bool mask or a float mask of -inf."""
    kw = dict(kw)
    q, k, v = _arr(2, 4, 5, 8), _arr(2, 4, 6, 8, seed=1), _arr(2, 4, 6, 3, seed=2)
    if kw.get("enable_gqa"):
        k, v = k[:, :2], v[:, :2]
    mask = kw.pop("mask", None)
    if mask is None:
        check(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **kw),
              lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, **kw), q, k, v)
        return
    m = np.random.default_rng(3).random((5, 6)) > 0.3
    m[:, 0] = True
    if kw.pop("empty_row", False):
        m[2] = False
    m = m if mask == "bool" else np.where(m, 0.0, -np.inf if not m[2].any() else -2.0).astype(np.float32)
    check(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, m),
          lambda q, k, v, m: TF.scaled_dot_product_attention(q, k, v, m), q, k, v, m, ints=(3,))


# ---- padding ----
@pytest.mark.parametrize("mode,amounts", [("constant", (1, 2, 0, 1)), ("constant", (-1, 2)),
                                          ("reflect", (2, 1, 1, 2)), ("replicate", (3, 0, 1, 2)),
                                          ("circular", (2, 1, 3, 0)), ("circular", (-1, 2, 0, 0)),
                                          ("circular", (2, -1, 1, 1))])
def test_pad(mode, amounts):
    check(lambda x: F.pad(x, amounts, mode), lambda x: TF.pad(x, amounts, mode), _arr(2, 3, 4, 5))


def test_pad_value_and_errors():
    check(lambda x: F.pad(x, (1, 1), value=2.5), lambda x: TF.pad(x, (1, 1), value=2.5), _arr(2, 3))
    with pytest.raises(RuntimeError, match="reflect"):
        F.pad(Tensor(_arr(1, 2, 3)), (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="even"):
        F.pad(Tensor(_arr(2, 3)), (1, 2, 3))


# ---- pooling and resampling ----
POOL_CASES = [
    ("max1d", lambda m, x: m.max_pool1d(x, 3, 2, 1), (2, 3, 9)),
    ("max1d_ceil", lambda m, x: m.max_pool1d(x, 2, ceil_mode=True), (2, 3, 9)),
    ("max2d_ceil", lambda m, x: m.max_pool2d(x, 3, 2, ceil_mode=True), (2, 3, 6, 7)),
    ("max2d_indices", lambda m, x: m.max_pool2d(x, 2, 1, 1, return_indices=True), (2, 3, 6, 7)),
    ("max3d", lambda m, x: m.max_pool3d(x, (2, 3, 2), (1, 2, 2), (1, 1, 0)), (2, 2, 4, 5, 4)),
    ("max3d_dilated_indices", lambda m, x: m.max_pool3d(x, 2, 1, dilation=2, return_indices=True), (1, 2, 4, 5, 4)),
    ("max3d_unbatched", lambda m, x: m.max_pool3d(x, 2), (2, 4, 5, 4)),
    ("avg1d", lambda m, x: m.avg_pool1d(x, 3, 2, 1, count_include_pad=False), (2, 3, 9)),
    ("avg2d_ceil", lambda m, x: m.avg_pool2d(x, 3, 2, 1, ceil_mode=True), (2, 3, 6, 7)),
    ("avg2d_divisor", lambda m, x: m.avg_pool2d(x, 2, divisor_override=3), (2, 3, 6, 7)),
    ("avg3d", lambda m, x: m.avg_pool3d(x, 2, (1, 2, 2), 1), (2, 2, 4, 5, 4)),
    ("avg3d_ceil_exclude", lambda m, x: m.avg_pool3d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
     (1, 2, 4, 5, 4)),
    ("adaptive_avg2d", lambda m, x: m.adaptive_avg_pool2d(x, (4, 3)), (2, 3, 6, 7)),
    ("adaptive_avg2d_none", lambda m, x: m.adaptive_avg_pool2d(x, (None, 5)), (2, 3, 6, 7)),
    ("adaptive_avg1d", lambda m, x: m.adaptive_avg_pool1d(x, 4), (2, 3, 9)),
    ("adaptive_avg3d", lambda m, x: m.adaptive_avg_pool3d(x, (3, 2, 3)), (1, 2, 4, 5, 4)),
]


@pytest.mark.parametrize("name,fn,shape", POOL_CASES, ids=[c[0] for c in POOL_CASES])
def test_pool(name, fn, shape):
    check(lambda x: fn(F, x), lambda x: fn(TF, x), _arr(*shape))


def test_max_pool_first_maximum_gets_the_gradient():
    x = np.array([[[1, 3, 3, 2, 2, 2, 0]]], np.float32)
    check(lambda x: F.max_pool1d(x, 3, 2, 1), lambda x: TF.max_pool1d(x, 3, 2, 1), x)
    check(lambda x: F.max_pool3d(x, 2), lambda x: TF.max_pool3d(x, 2), np.ones((1, 1, 2, 4, 2), np.float32))


INTERP_CASES = [
    ("nearest_size", dict(size=(5, 9)), (2, 3, 4, 6)),
    ("nearest_scale", dict(scale_factor=1.7), (2, 3, 4, 6)),
    ("nearest_exact", dict(size=(7, 4), mode="nearest-exact"), (2, 3, 4, 6)),
    ("bilinear", dict(size=(7, 9), mode="bilinear"), (2, 3, 4, 6)),
    ("bilinear_down", dict(size=(3, 4), mode="bilinear"), (2, 3, 4, 6)),
    ("bilinear_corners", dict(scale_factor=2, mode="bilinear", align_corners=True), (2, 3, 4, 6)),
    ("bilinear_scale", dict(scale_factor=(1.5, 0.7), mode="bilinear"), (2, 3, 4, 6)),
    ("linear", dict(size=11, mode="linear"), (2, 3, 6)),
    ("trilinear", dict(scale_factor=2, mode="trilinear"), (1, 2, 2, 3, 2)),
    ("nearest3d", dict(size=(3, 4, 5)), (1, 2, 2, 3, 2)),
    ("area", dict(size=(3, 4), mode="area"), (2, 3, 4, 6)),
    ("bicubic", dict(size=(7, 9), mode="bicubic"), (1, 2, 4, 6)),
    ("bicubic_corners_down", dict(scale_factor=(0.6, 1.5), mode="bicubic", align_corners=True), (1, 2, 5, 6)),
    ("bicubic_antialias", dict(size=(2, 9), mode="bicubic", antialias=True), (1, 2, 7, 6)),
    ("bicubic_antialias_corners", dict(size=(3, 4), mode="bicubic", antialias=True, align_corners=True),
     (1, 2, 7, 6)),
    ("bilinear_antialias", dict(scale_factor=(0.3, 0.5), mode="bilinear", antialias=True), (1, 2, 10, 6)),
]


@pytest.mark.parametrize("name,kw,shape", INTERP_CASES, ids=[c[0] for c in INTERP_CASES])
def test_interpolate(name, kw, shape):
    check(lambda x: F.interpolate(x, **kw), lambda x: TF.interpolate(x, **kw), _arr(*shape))


def test_interpolate_ints_and_errors():
    x = np.arange(-12, 12, dtype=np.int32).reshape(1, 2, 3, 4)
    got = F.interpolate(Tensor(x), scale_factor=2).numpy()
    expected = TF.interpolate(torch.tensor(x).float(), scale_factor=2).numpy().astype(np.int32)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="exactly one"):
        F.interpolate(Tensor(_arr(1, 2, 3, 4)))
    with pytest.raises(ValueError, match="4-d"):
        F.interpolate(Tensor(_arr(1, 2, 3)), size=4, mode="bilinear")
    with pytest.raises(ValueError, match="4-d"):
        F.interpolate(Tensor(_arr(1, 2, 3)), size=4, mode="bicubic")
    with pytest.raises(ValueError, match="antialias is restricted"):
        F.interpolate(Tensor(_arr(1, 2, 3, 4)), size=4, antialias=True)
    with pytest.raises(RuntimeError, match="not implemented for int32"):   # torch: "not implemented for 'Int'"
        F.interpolate(Tensor(x), size=4, mode="bicubic")
    with pytest.raises(NotImplementedError, match="'cubic' is not supported"):
        F.interpolate(Tensor(_arr(1, 2, 3, 4)), size=4, mode="cubic")


def test_pool_errors():
    with pytest.raises(RuntimeError, match="half"):
        F.max_pool3d(Tensor(_arr(1, 1, 4, 4, 4)), 2, padding=2)
    with pytest.raises(ValueError, match="4-d"):
        F.max_pool3d(Tensor(_arr(4, 4)), 2)
    with pytest.raises(RuntimeError, match="empty"):
        F.avg_pool1d(Tensor(_arr(1, 1, 2)), 3)
    with pytest.raises(TypeError, match="bool"):
        F.avg_pool3d(Tensor(np.ones((1, 1, 2, 2, 2), bool)), 2)


# ---- a few on every device (CL compiles are slow: one combined graph) ----
def test_functional_on_device(device):
    x, w = _arr(2, 2, 4, 5, 4), _arr(4, 2, 2, 2, 2, seed=1)

    def run(m, x, w):
        y = m.conv3d(x, w, padding=1)
        y = m.max_pool3d(m.hardtanh(y, -1.0, 1.5), 2) + m.avg_pool3d(m.logsigmoid(y), 2)
        y = m.interpolate(y.flatten(2, 3), scale_factor=1.5, mode="bilinear")
        return m.pad(m.glu(y, 1), (1, 1, 0, 2), mode="replicate")
    check(lambda x, w: run(F, x, w), lambda x, w: run(TF, x, w), x, w)
