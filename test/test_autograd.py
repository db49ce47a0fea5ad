"""Autograd: gradients of every differentiable Tensor op against PyTorch (forward and backward, with a random
upstream gradient), finite differences in float64, and the Tensor-level semantics (accumulation, explicit
gradients, detach, no_grad, the functional gradient(), realize/assign interplay)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tinyjit
from tinyjit import Tensor, dtypes
from tinyjit.lazy import Node, toposort
from tinyjit.ops import Op
from tinyjit.realize import realize_nodes

pytestmark = pytest.mark.usefixtures("device")   # each test runs on each selected device (test/conftest.py)


def _inputs(specs, seed):
    """specs: shape tuples (float32, uniform in [-2, 2]) or (shape, lo, hi)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in specs:
        if s and isinstance(s[0], tuple):
            shape, lo, hi = s
            out.append(rng.uniform(lo, hi, size=shape).astype(np.float32))
        else:
            out.append(rng.uniform(-2, 2, size=s).astype(np.float32))
    return out


def check(fn, specs, torch_fn=None, atol=1e-4, rtol=1e-3, seed=0, arrays=None):
    """fn(*tensors) on tinyjit and torch_fn (default fn) on torch: values and gradients of every float input
    for a random upstream gradient."""
    torch_fn = torch_fn or fn
    arrays = arrays if arrays is not None else _inputs(specs, seed)
    xs = [Tensor(a, requires_grad=True) if a.dtype.kind == "f" else Tensor(a) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) if a.dtype.kind == "f" else torch.tensor(a).long() for a in arrays]
    out, ref = fn(*xs), torch_fn(*ts)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=atol, rtol=rtol, err_msg="forward")
    g = np.random.default_rng(seed + 1).standard_normal(ref.shape).astype(np.float32)
    out.backward(Tensor(g))
    ref.backward(torch.tensor(g))
    for i, (x, t) in enumerate(zip(xs, ts)):
        if t.grad is None:
            continue
        assert x.grad is not None, f"no gradient for input {i}"
        assert x.grad.shape == x.shape and x.grad.dtype == x.dtype
        np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), atol=atol, rtol=rtol, err_msg=f"grad of input {i}")


# ---- elementwise ----
POS = ((3, 4), 0.2, 3.0)
UNARY = {
    "neg": (lambda x: -x, None, (3, 4)),
    "exp": (lambda x: x.exp(), None, (3, 4)),
    "exp2": (lambda x: x.exp2(), None, (3, 4)),
    "log": (lambda x: x.log(), None, POS),
    "log2": (lambda x: x.log2(), None, POS),
    "sqrt": (lambda x: x.sqrt(), None, POS),
    "rsqrt": (lambda x: x.rsqrt(), None, POS),
    "reciprocal": (lambda x: x.reciprocal(), None, POS),
    "sin": (lambda x: x.sin(), None, (3, 4)),
    "cos": (lambda x: x.cos(), None, (3, 4)),
    "tan": (lambda x: x.tan(), None, ((3, 4), -1.2, 1.2)),
    "square": (lambda x: x.square(), None, (3, 4)),
    "abs": (lambda x: x.abs(), None, (3, 4)),
    "relu": (lambda x: x.relu(), None, (3, 4)),
    "sigmoid": (lambda x: x.sigmoid(), None, ((4, 5), -6, 6)),
    "tanh": (lambda x: x.tanh(), None, ((4, 5), -4, 4)),
    "silu": (lambda x: x.silu(), F.silu, (3, 4)),
    "gelu": (lambda x: x.gelu(), F.gelu, (3, 4)),
    "gelu_tanh": (lambda x: x.gelu("tanh"), lambda x: F.gelu(x, approximate="tanh"), (3, 4)),
    "softplus": (lambda x: x.softplus(), F.softplus, ((4, 5), -5, 5)),
    "softplus_beta": (lambda x: x.softplus(beta=2.0, threshold=3.0), lambda x: F.softplus(x, 2.0, 3.0), (4, 5)),
    "mish": (lambda x: x.mish(), F.mish, (3, 4)),
    "erf": (lambda x: x.erf(), torch.erf, (3, 4)),
    "elu": (lambda x: x.elu(0.7), lambda x: F.elu(x, 0.7), (3, 4)),
    "leaky_relu": (lambda x: x.leaky_relu(0.1), lambda x: F.leaky_relu(x, 0.1), (3, 4)),
    "hardswish": (lambda x: x.hardswish(), F.hardswish, ((4, 5), -5, 5)),
    "hardsigmoid": (lambda x: x.hardsigmoid(), F.hardsigmoid, ((4, 5), -5, 5)),
    "relu6": (lambda x: x.relu6(), F.relu6, ((4, 5), -3, 9)),
    "sign": (lambda x: x.sign(), None, (3, 4)),
    "floor": (lambda x: x.floor(), None, (3, 4)),
    "round": (lambda x: x.round(), None, (3, 4)),
    "pow2": (lambda x: x ** 2, None, (3, 4)),
    "pow3": (lambda x: x ** 3, None, (3, 4)),
    "pow_half": (lambda x: x ** 0.5, None, POS),
    "pow_frac": (lambda x: x ** 2.5, None, POS),
    "pow_neg": (lambda x: x ** -1.5, None, POS),
    "rpow": (lambda x: 2.0 ** x, None, (3, 4)),
    "clip": (lambda x: x.clip(-0.5, 0.8), lambda x: x.clamp(-0.5, 0.8), (3, 4)),
    "cast_roundtrip": (lambda x: x.double().float() * 3, None, (3, 4)),
    "lerp": (lambda x: x.lerp(x * 2 + 1, 0.3), lambda x: torch.lerp(x, x * 2 + 1, 0.3), (3, 4)),
}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary(name):
    fn, torch_fn, spec = UNARY[name]
    check(fn, [spec], torch_fn)


BINARY = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / (y.abs() + 0.5),
    "maximum": lambda x, y: x.maximum(y),
    "minimum": lambda x, y: x.minimum(y),
    "pow": lambda x, y: (x.abs() + 0.5) ** y,
    "where": lambda x, y: (x > y).where(x * 2, y),
    "clip_tensor": lambda x, y: x.clip(y, y + 1),
}


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 1, 4), (3, 1)), ((), (2, 3))], ids=["same", "bcast", "0d"])
def test_binary(name, shapes):
    fn = BINARY[name]
    torch_fn = {"clip_tensor": lambda x, y: x.clamp(y, y + 1),
                "where": lambda x, y: torch.where(x > y, x * 2, y)}.get(name)
    check(fn, list(shapes), torch_fn)


def test_ties_follow_torch():
    # maximum/minimum split ties evenly; relu has gradient 0 at 0; clamp passes the gradient at its bounds;
    # abs has gradient 0 at 0; max/min reductions split ties evenly (like amax/amin)
    a = np.array([[1.0, 2.0, 2.0, 0.0], [-1.0, 0.0, 3.0, 3.0]], np.float32)
    b = np.array([[1.0, 0.0, 2.0, 0.0], [-1.0, 5.0, 3.0, -3.0]], np.float32)
    check(lambda x, y: x.maximum(y) + 2 * x.minimum(y), [], arrays=[a, b])
    check(lambda x: x.relu() + x.abs() * 3, [], arrays=[a])
    check(lambda x: x.clip(0.0, 2.0), [], lambda x: x.clamp(0.0, 2.0), arrays=[a])
    check(lambda x: x.amax(1) + x.amin(0).sum(), [], lambda x: x.amax(1) + x.amin(0).sum(), arrays=[a])
    check(lambda x: x.max(), [], lambda x: x.amax(), arrays=[a])


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus", "silu", "mish", "gelu", "erf", "log_sigmoid"])
def test_stable_at_extremes(name):
    # composite ops must not turn 0 * inf into NaN in the backward pass, and must get the slope at 0 right
    fn, torch_fn = {"sigmoid": (Tensor.sigmoid, torch.sigmoid), "tanh": (Tensor.tanh, torch.tanh),
                    "softplus": (Tensor.softplus, F.softplus), "silu": (Tensor.silu, F.silu),
                    "mish": (Tensor.mish, F.mish), "gelu": (Tensor.gelu, F.gelu), "erf": (Tensor.erf, torch.erf),
                    "log_sigmoid": (lambda x: -(-x).softplus(), F.logsigmoid)}[name]
    check(fn, [], torch_fn, arrays=[np.array([-100.0, -30.0, -1e-3, 0.0, 1e-3, 30.0, 100.0], np.float32)], atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_erf_gradient_is_the_exact_derivative(dtype):
    """erf's gradient is 2/sqrt(pi) e^(-x^2), like torch: 0 at +-inf (differentiating the approximation gave NaN
    there), NaN at NaN, and as accurate as the exponential elsewhere (also through gelu)."""
    x = np.array([-np.inf, -30, -5, -1.5, -1e-3, 0, 0.3, 0.49, 0.51, 2, 4, 30, np.inf, np.nan], dtype)
    tol = {np.float16: 1e-3, np.float32: 2e-7, np.float64: 1e-15}[dtype]
    for fn, torch_fn in ((Tensor.erf, torch.erf), (Tensor.gelu, F.gelu)):
        ours, theirs = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        fn(ours).sum().backward()
        torch_fn(theirs).sum().backward()
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("seed", range(4))
def test_random_broadcast_shapes(seed):
    rng = np.random.default_rng(100 + seed)
    out_shape = tuple(int(s) for s in rng.integers(1, 5, size=rng.integers(1, 4)))
    def operand():   # drop leading dims and squash some to 1
        shape = out_shape[rng.integers(0, len(out_shape)):]
        return tuple(1 if rng.random() < 0.4 else s for s in shape)
    specs = [operand(), operand(), operand()]
    check(lambda x, y, z: ((x * y).maximum(z) - y / (z * z + 1)).exp() * x, specs, seed=seed)


# ---- reductions ----
REDUCE = {
    "sum": (lambda x: x.sum(), None),
    "sum_axis": (lambda x: x.sum(1), None),
    "sum_axes_keepdim": (lambda x: x.sum((0, 2), keepdim=True), lambda x: x.sum((0, 2), keepdim=True)),
    "mean": (lambda x: x.mean(-1), None),
    "max": (lambda x: x.amax(1), lambda x: x.amax(1)),
    "min": (lambda x: x.amin(0), lambda x: x.amin(0)),
    "var": (lambda x: x.var(1), None),
    "std": (lambda x: x.std(-1, correction=0), lambda x: x.std(-1, correction=0)),
    "logsumexp": (lambda x: x.logsumexp(1), lambda x: x.logsumexp(1)),
    "softmax": (lambda x: x.softmax(-1), lambda x: x.softmax(-1)),
    "log_softmax": (lambda x: x.log_softmax(1), lambda x: x.log_softmax(1)),
    "cumsum": (lambda x: x.cumsum(1), lambda x: x.cumsum(1)),
    "prod": (lambda x: x.prod(1), lambda x: x.prod(1)),
}


@pytest.mark.parametrize("name", list(REDUCE))
def test_reduce(name):
    fn, torch_fn = REDUCE[name]
    check(fn, [(3, 5, 4)], torch_fn)


# ---- movement and indexing ----
MOVEMENT = {
    "reshape": (lambda x: x.reshape(6, 4) * 2, None),
    "permute": (lambda x: x.permute(2, 0, 1), None),
    "transpose_noncontig": (lambda x: x.transpose(0, 2).exp(), None),
    "expand": (lambda x: x[:, :1].expand(2, 4, 4), lambda x: x[:, :1].expand(2, 4, 4)),
    "pad": (lambda x: x.pad((1, 2, 0, 1)), lambda x: F.pad(x, (1, 2, 0, 1))),
    "pad_value": (lambda x: x.pad((1, 1), value=2.0) * x.sum(), lambda x: F.pad(x, (1, 1), value=2.0) * x.sum()),
    "flip": (lambda x: x.flip(0, 2), lambda x: x.flip((0, 2))),
    "slice_steps": (lambda x: x[:, ::2, 1::3], None),
    "slice_negative": (lambda x: x[::-1, 1:, ::-2], lambda x: x.flip(0)[:, 1:].flip(2)[:, :, ::2]),
    "int_index": (lambda x: x[1, :, -1], None),
    "squeeze": (lambda x: x[:1].squeeze(0).unsqueeze(1), None),
    "repeat": (lambda x: x.repeat(2, 1, 3), None),
    "split": (lambda x: x.split(1, 1)[2] * x.split([1, 3], 2)[1].sum(), None),
    "chunk": (lambda x: x.chunk(2, 2)[1], None),
}


@pytest.mark.parametrize("name", list(MOVEMENT))
def test_movement(name):
    fn, torch_fn = MOVEMENT[name]
    check(fn, [(2, 3, 4)], torch_fn)


def test_cat_stack():
    check(lambda x, y: x.cat(y, dim=1), [(2, 3), (2, 5)], lambda x, y: torch.cat([x, y], 1))
    check(lambda x, y: tinyjit.Tensor.stack(x, y * 2, dim=1), [(2, 3), (2, 3)],
          lambda x, y: torch.stack([x, y * 2], 1))


def test_getitem_tensor_index():
    idx = np.array([[2, 0], [1, 2]], np.int32)
    a = _inputs([(3, 4)], 3)[0]
    check(lambda x, i: x[i], [], lambda x, i: x[i], arrays=[a, idx])
    check(lambda x, i: x[:, i] * 2, [], lambda x, i: x[:, i] * 2, arrays=[a, idx])
    check(lambda x, i: x[i, i], [], lambda x, i: x[i, i], arrays=[a, idx])   # repeated picks accumulate


def test_gather():
    idx = np.random.default_rng(5).integers(0, 4, size=(3, 2)).astype(np.int32)
    check(lambda x, i: x.gather(1, i), [], lambda x, i: x.gather(1, i), arrays=[_inputs([(3, 4)], 6)[0], idx])


# ---- linear algebra and nn ----
def test_matmul():
    check(lambda x, y: x @ y, [(3, 4), (4, 5)])
    check(lambda x, y: x @ y, [(2, 1, 3, 4), (5, 4, 6)])        # batch broadcasting
    check(lambda x, y: x @ y, [(4,), (3, 4, 2)])                 # vector @ batch
    check(lambda x, y: x.T @ y, [(4, 3), (4, 2)])                # non-contiguous operand


def test_linear():
    check(lambda x, w, b: x.linear(w, b), [(5, 3), (4, 3), (4,)], lambda x, w, b: F.linear(x, w, b))


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1), dict(dilation=2, padding=2),
                                dict(groups=2, stride=(1, 2))], ids=["plain", "stride_pad", "dilation", "groups"])
def test_conv2d(kw):
    cin = 4
    specs = [(2, cin, 7, 6), (6, cin // kw.get("groups", 1), 3, 3), (6,)]
    check(lambda x, w, b: x.conv2d(w, b, **kw), specs, lambda x, w, b: F.conv2d(x, w, b, **kw))


def test_pools():
    check(lambda x: x.max_pool2d(2), [(2, 3, 6, 6)], lambda x: F.max_pool2d(x, 2))
    check(lambda x: x.max_pool2d(3, stride=2, padding=1), [(1, 2, 7, 7)],
          lambda x: F.max_pool2d(x, 3, stride=2, padding=1))
    check(lambda x: x.avg_pool2d(2), [(2, 3, 6, 6)], lambda x: F.avg_pool2d(x, 2))
    check(lambda x: x.avg_pool2d(3, stride=2, padding=1, count_include_pad=False), [(1, 2, 7, 7)],
          lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False))


def test_max_pool_ties():
    # ties inside a window: the whole gradient goes to the first of them (row-major), like torch
    x = Tensor(np.ones((1, 1, 4, 4), np.float32), requires_grad=True)
    x.max_pool2d(2).sum().backward()
    t = torch.ones((1, 1, 4, 4), requires_grad=True)
    F.max_pool2d(t, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())


def test_layernorm():
    check(lambda x, w, b: x.layer_norm(5, w, b), [(3, 4, 5), (5,), (5,)],
          lambda x, w, b: F.layer_norm(x, (5,), w, b))
    check(lambda x: x.layernorm(), [(6, 8)], lambda x: F.layer_norm(x, (8,)))


@pytest.mark.parametrize("kw", [dict(), dict(label_smoothing=0.1), dict(ignore_index=1), dict(reduction="sum"),
                                dict(reduction="none", label_smoothing=0.2)])
def test_cross_entropy(kw):
    target = np.array([0, 1, 3, 1, 2], np.int32)
    check(lambda x, t: x.cross_entropy(t, **kw), [], lambda x, t: F.cross_entropy(x, t, **kw),
          arrays=[_inputs([(5, 4)], 7)[0], target])


@pytest.mark.parametrize("name", ["log_softmax", "softmax", "logsumexp", "cross_entropy"])
def test_softmax_shift_is_not_differentiated(name):
    """The maximum subtracted for stability cancels out of the value, so its gradient is not taken: the backward
    needs no mask of the maxima and no sum of their gradients (two row reductions fewer, over a 10,000-word
    vocabulary the size of the logits each; cross_entropy one more: no sum over the classes of the picked
    gradient). Gradients still match PyTorch, ties for the maximum included."""
    from tinyjit.schedule import create_schedule
    xn = _inputs([(6, 7)], 21)[0]
    xn[1, 2] = xn[1, 5] = xn[1].max() + 1   # a tie for the maximum
    wn = _inputs([(6, 7)], 22)[0]
    target = np.array([0, 5, 6, 1, 2, 2], np.int32)
    losses = {"log_softmax": lambda x, w, t: (x.log_softmax(1) * w).sum(),
              "softmax": lambda x, w, t: (x.softmax(1) * w).sum(),
              "logsumexp": lambda x, w, t: (x.logsumexp(1) * w[:, 0]).sum(),
              "cross_entropy": lambda x, w, t: F.cross_entropy(x, t) if isinstance(x, torch.Tensor)
              else x.cross_entropy(t)}
    check(losses[name], [], arrays=[xn, wn, target])
    x = Tensor(xn, requires_grad=True)
    losses[name](x, Tensor(wn), Tensor(target)).backward()
    reduces = [item for item in create_schedule([x.grad.node]) if item.kind == "kernel"
               and any(n.op in (Op.SUM, Op.RMAX) for n in item.ast.toposort())]
    # the max, the sum of exps and the sum of the upstream gradient (logsumexp: none; cross_entropy: the count of
    # targets its mean divides by instead, the log-sum-exp being added per target after picking)
    assert len(reduces) == {"logsumexp": 2}.get(name, 3), [r.ast.pretty() for r in reduces]


def test_cross_entropy_spatial_and_probs():
    target = np.random.default_rng(8).integers(0, 3, size=(2, 4, 5)).astype(np.int32)
    check(lambda x, t: x.cross_entropy(t), [], lambda x, t: F.cross_entropy(x, t),
          arrays=[_inputs([(2, 3, 4, 5)], 9)[0], target])
    probs = np.random.default_rng(10).dirichlet(np.ones(4), size=5).astype(np.float32)
    check(lambda x, p: x.cross_entropy(p, label_smoothing=0.1), [(5, 4)],
          lambda x, p: F.cross_entropy(x, p, label_smoothing=0.1), arrays=[_inputs([(5, 4)], 11)[0], probs])


def test_binary_cross_entropy():
    check(lambda p, t: p.sigmoid().binary_cross_entropy(t), [(4, 3), ((4, 3), 0.0, 1.0)],
          lambda p, t: F.binary_cross_entropy(p.sigmoid(), t))
    check(lambda x, t: x.binary_cross_entropy_with_logits(t), [((4, 3), -6, 6), ((4, 3), 0.0, 1.0)],
          lambda x, t: F.binary_cross_entropy_with_logits(x, t))
    w = np.array([0.5, 1.0, 2.0], np.float32)   # torch does not differentiate pos_weight
    check(lambda x, t: x.binary_cross_entropy_with_logits(t, pos_weight=Tensor(w)), [(4, 3), ((4, 3), 0.0, 1.0)],
          lambda x, t: F.binary_cross_entropy_with_logits(x, t, pos_weight=torch.tensor(w)))


def test_mlp_loss():
    target = np.array([1, 0, 2, 2], np.int32)
    arrays = _inputs([(4, 6), (8, 6), (8,), (3, 8), (3,)], 12) + [target]
    check(lambda x, w1, b1, w2, b2, t: x.linear(w1, b1).relu().linear(w2, b2).cross_entropy(t), [],
          lambda x, w1, b1, w2, b2, t: F.cross_entropy(F.linear(F.linear(x, w1, b1).relu(), w2, b2), t),
          arrays=arrays)


# ---- finite differences in float64 ----
FD = {
    "mul_div": lambda x, y: x * y / (y * y + 1),
    "softmax": lambda x, y: (x + y).softmax(-1) * y,
    "logsumexp_var": lambda x, y: x.logsumexp(0) + (x * y).var(1).sum(),
    "matmul_tanh": lambda x, y: (x @ y.T).tanh(),
    "gelu_erf": lambda x, y: x.gelu() + y.erf() * x.sigmoid(),
    "pool_conv": lambda x, y: x.reshape(1, 1, 3, 4).conv2d(y.reshape(1, 1, 3, 4)[:, :, :2, :2], padding=1)
    .max_pool2d(2),
    "cumsum_prod_flip": lambda x, y: x.cumsum(1).flip(0) * y.prod(1, keepdim=True),
}


@pytest.mark.parametrize("name", list(FD))
def test_finite_differences(name):
    fn = FD[name]
    rng = np.random.default_rng(13)
    xs = [rng.uniform(-1.5, 1.5, size=(3, 4)) for _ in range(2)]
    ts = [Tensor(a, dtype=dtypes.float64, requires_grad=True) for a in xs]
    out = fn(*ts)
    assert out.dtype == dtypes.float64
    w = rng.standard_normal(out.shape)
    (out * Tensor(w)).sum().backward()
    grads = [t.grad.numpy() for t in ts]

    def f(arrays):
        return float((fn(*[Tensor(a) for a in arrays]).numpy() * w).sum())
    eps = 1e-6
    for _ in range(3):   # directional derivatives along random directions
        v = [rng.standard_normal(a.shape) for a in xs]
        numeric = (f([a + eps * d for a, d in zip(xs, v)]) - f([a - eps * d for a, d in zip(xs, v)])) / (2 * eps)
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, v))
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), (numeric, analytic)


# ---- Tensor-level semantics ----
def test_accumulates_over_backward_calls():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 7.0, 9.0])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0, 3.0])


def test_backward_explicit_gradient_and_errors():
    x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x * x
    y.backward(Tensor([[1.0, 0.0], [2.0, -1.0]]))
    np.testing.assert_allclose(x.grad.numpy(), [[2.0, 0.0], [12.0, -8.0]])
    with pytest.raises(RuntimeError, match="one-element"):
        y.backward()
    with pytest.raises(ValueError, match="shape"):
        y.backward(Tensor([1.0, 2.0]))
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0, 2.0]).sum().backward()
    with pytest.raises(RuntimeError, match="only float"):
        Tensor([1, 2], requires_grad=True)


def test_gradients_are_lazy_nodes():
    w = Tensor.randn(4, 3, requires_grad=True)
    x = Tensor.randn(2, 4)
    (x @ w).relu().sum().backward()
    assert isinstance(w.grad, Tensor) and not w.grad.node.realized and w.grad.requires_grad is False
    assert x.grad is None


def test_detach_cuts_one_path():
    w = Tensor([1.0, -2.0, 3.0], requires_grad=True)
    (w.detach() * w).sum().backward()          # the same node reached twice, only one path carries grad
    np.testing.assert_allclose(w.grad.numpy(), [1.0, -2.0, 3.0])
    assert not w.detach().requires_grad


def test_no_grad():
    w = Tensor([1.0, 2.0], requires_grad=True)
    with Tensor.no_grad():
        y = w * 2
        inner_leaf = Tensor([1.0], requires_grad=True)   # a leaf created here still requires grad (like torch)
    assert not y.requires_grad and inner_leaf.requires_grad
    (y * w).sum().backward()                    # y is a constant: only the direct path counts
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 4.0])

    @Tensor.no_grad
    def bare(t):
        return t * 3

    @Tensor.no_grad()
    def called(t):
        return t * 3

    with Tensor.no_grad():
        with Tensor.no_grad():
            pass
        assert Tensor.no_grad_active
        assert not bare(w).requires_grad
    assert not Tensor.no_grad_active
    assert not bare(w).requires_grad and not called(w).requires_grad and (w * 3).requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        bare(w).sum().backward()


def test_functional_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = Tensor([3.0, -1.0], requires_grad=True)
    z = Tensor([5.0], requires_grad=True)
    out = (x * y).sum() + x.exp().sum()
    gx, gy = tinyjit.gradient(out, [x, y])
    np.testing.assert_allclose(gx.numpy(), np.array([3.0, -1.0]) + np.exp([1.0, 2.0]), rtol=1e-6)
    np.testing.assert_allclose(gy.numpy(), [1.0, 2.0])
    assert x.grad is None and y.grad is None
    (gm,) = (x * x).gradient(x, gradient=Tensor([1.0, 10.0]))
    np.testing.assert_allclose(gm.numpy(), [2.0, 40.0])
    # with respect to an intermediate result: the total derivative, like torch.autograd.grad
    h = x * 2
    gh, gx2 = tinyjit.gradient((h * h + x).sum(), [h, x])
    np.testing.assert_allclose(gh.numpy(), [4.0, 8.0])
    np.testing.assert_allclose(gx2.numpy(), [9.0, 17.0])     # d/dx (4x^2 + x)
    with pytest.raises(RuntimeError, match="do not depend on input"):
        tinyjit.gradient(out, [z])
    assert tinyjit.gradient(out, [x, z], allow_unused=True)[1] is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        tinyjit.gradient(out, [Tensor([1.0])])


def test_backward_after_item_and_after_realizing_a_leaf():
    w = Tensor.uniform(3, low=-1, high=1, requires_grad=True)   # a lazy leaf (rand * scale + shift)
    x = Tensor([1.0, 2.0, 3.0])
    loss = (w * x).sum()
    w.realize()                   # swaps w's node for a buffer node; the loss still holds the old node
    loss.item()                   # realizes the loss: it must keep its graph
    loss.backward()
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 2.0, 3.0])
    assert not loss.is_leaf and loss.node.op != Op.BUFFER


def test_leaf_views_and_int_paths():
    base = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    v = base.T.requires_grad_()                      # a leaf that is a (non-contiguous) view
    (v * v).sum().backward()
    np.testing.assert_allclose(v.grad.numpy(), 2 * np.arange(6, dtype=np.float32).reshape(2, 3).T)
    r = v.reshape(6).reshape(3, 2)                   # a reshape chain back to the leaf's own shape
    assert r.node is not v.node and r.requires_grad
    z = Tensor.zeros(2, 3, requires_grad=True)      # a leaf made of a const expanded: chains must not fold it
    (z.expand(4, 2, 3) * 2).sum().backward()
    np.testing.assert_allclose(z.grad.numpy(), np.full((2, 3), 8.0))
    x = Tensor([1.5, -2.5], requires_grad=True)
    (x.int().float() * x).sum().backward()          # an int cast carries no gradient
    np.testing.assert_allclose(x.grad.numpy(), [1.0, -2.0])


def test_half_precision_broadcast_gradient():
    b = Tensor(np.zeros(3, np.float16), requires_grad=True)
    x = Tensor(np.full((3000, 3), 0.5, np.float16))
    (x + b).sum(dtype=dtypes.float32).backward()
    assert b.grad.dtype == dtypes.float16
    np.testing.assert_allclose(b.grad.numpy().astype(np.float32), [3000.0] * 3)


def _sgd_steps(order, steps=3):
    rng = np.random.default_rng(14)
    w1a, w2a = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    xa, ya = rng.standard_normal((6, 4)).astype(np.float32), np.array([0, 1, 2, 0, 1, 2], np.int32)
    w1, w2 = Tensor(w1a, requires_grad=True), Tensor(w2a, requires_grad=True)
    t1, t2 = torch.tensor(w1a, requires_grad=True), torch.tensor(w2a, requires_grad=True)
    x, y = Tensor(xa), Tensor(ya)
    graph_sizes, losses = [], []
    for _ in range(steps):
        w1.grad = w2.grad = None
        loss = x.linear(w1).relu().linear(w2).cross_entropy(y)
        loss.backward()
        with Tensor.no_grad():
            params = [w1, w2] if order == "forward" else [w2, w1]
            for p in params:
                p.assign(p - 0.5 * p.grad)
            realize_nodes([p.node for p in params])   # one schedule: every read of the old weights first
            for p in params:
                p._collapse()
        losses.append(loss.item())
        graph_sizes.append(len(toposort([w1.node, w2.node], stop_at_realized=False)))
        ref = F.cross_entropy(F.linear(F.linear(torch.tensor(xa), t1).relu(), t2), torch.tensor(ya).long())
        ref.backward()
        with torch.no_grad():
            for t in (t1, t2):
                t -= 0.5 * t.grad
                t.grad = None
        assert abs(losses[-1] - ref.item()) < 1e-4
    np.testing.assert_allclose(w1.numpy(), t1.detach().numpy(), atol=1e-4)
    np.testing.assert_allclose(w2.numpy(), t2.detach().numpy(), atol=1e-4)
    return graph_sizes


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_sgd_training_matches_torch_and_assign_collapses(order):
    sizes = _sgd_steps(order)
    assert all(n == 2 for n in sizes), sizes     # each parameter is a bare buffer again after its update


def test_node_level_gradient():
    from tinyjit import autograd_graph as autograd
    from tinyjit.device import Buffer
    a = Node.from_buffer(Buffer("CPU", 4, dtypes.float32).copyin(np.array([1, 2, 3, 4], np.float32)), (2, 2))
    b = a.alu(Op.MUL, a).reduce(Op.SUM, (1,))
    (ga,) = autograd.gradient([b], [a])
    assert isinstance(ga, Node) and ga.shape == (2, 2)
    np.testing.assert_allclose(Tensor(ga).numpy(), [[2, 4], [6, 8]])
    assert autograd.gradient([b], [Node.const(1.0, dtypes.float32, (2, 2), "CPU")]) == [None]
    assert all(op in autograd.RULES for op in Op if op not in (Op.BUFFER, Op.CONST, Op.EMPTY, Op.LOAD, Op.STORE,
                                                                 Op.VALID))


def test_copy_rule_sends_gradient_back_to_the_source_device():
    from tinyjit import autograd_graph as autograd
    a = Tensor([1.0, 2.0], device="CPU").node
    moved = Node(Op.COPY, (a,), None, a.dtype, a.shape, "CL")      # graph only: nothing runs on CL
    (g,) = autograd.gradient([moved.alu(Op.MUL, moved)], [a], [Node.const(1.0, a.dtype, a.shape, "CL")])
    assert g.device == "CPU" and g.op == Op.COPY and g.src[0].device == "CL"


def test_contiguous_clone_and_leaf_flags():
    x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x.T.contiguous() * x.clone() + x.to("CPU").to(x.device)   # a round trip through the CPU
    assert x.is_leaf and not y.is_leaf and y.requires_grad
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([[1.0, 3.0], [2.0, 4.0]]) + 1)
    with pytest.raises(RuntimeError, match="detach"):
        y.requires_grad = False
    assert Tensor([1.0]).requires_grad_().requires_grad and Tensor([1.0]).is_leaf


def test_realize_collapses_unless_the_graph_is_needed():
    w = Tensor([1.0, 2.0], requires_grad=True)
    with Tensor.no_grad():
        frozen = (w * 2).realize()
    assert frozen.node.op == Op.BUFFER                 # no gradient will ever flow: the graph is dropped
    live = (w * 2).realize()
    assert live.node.op == Op.MUL and live.node.realized
    live.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 2.0])


# ---- empty tensors: a sum over no elements is 0 wherever it comes from (autograd sums broadcast gradients) ----
EMPTY = {
    "mul_by_0d": (lambda a, b: (a * b).sum(), None, [(3, 0, 2), ()]),
    "mul_by_size1": (lambda a, b: (a * b).sum(), None, [(3, 0, 2), (1,)]),
    "mul_by_row": (lambda a, b: a * b, None, [(3, 0, 2), (2,)]),
    "add_0d_over_0x17": (lambda a, b: a + b.reshape(()), None, [(0, 17), (1,)]),
    "div_by_column": (lambda a, b: (a / b).sum(1), None, [(4, 0), (4, 1)]),
    "matmul_empty_k": (lambda a, b: a @ b, None, [(3, 0), (0, 4)]),
    "matmul_empty_m": (lambda a, b: (a @ b).sum(), None, [(0, 5), (5, 3)]),
    "linear_empty_batch": (lambda x, w, b: x.linear(w, b), F.linear, [(0, 3), (2, 3), (2,)]),
    "conv2d_empty_batch": (lambda x, w: x.conv2d(w).sum(), lambda x, w: F.conv2d(x, w).sum(),
                           [(0, 1, 4, 4), (2, 1, 3, 3)]),
    "cat_with_empty": (lambda a, b: a.cat(b) * 2, lambda a, b: torch.cat([a, b]) * 2, [(0, 3), (2, 3)]),
    "softmax_empty_batch": (lambda a, b: (a.softmax(1) * b).sum(), None, [(0, 4), (4,)]),
    "expand_to_empty": (lambda a, b: (a.expand(0, 3) * b).sum(), None, [(1, 3), (3,)]),
}


@pytest.mark.parametrize("name", list(EMPTY))
def test_gradients_through_empty_tensors(name):
    fn, torch_fn, specs = EMPTY[name]
    check(fn, specs, torch_fn)


def test_a_reduce_over_no_elements_is_its_identity():
    """Node.reduce over an axis of size 0 (as autograd builds it, without Tensor.sum's padding) for every dtype."""
    for dtype, lowest in (("float32", -np.inf), ("float16", -np.inf), ("int32", -2 ** 31), ("uint8", 0),
                          ("bool", False), ("int64", -2 ** 63)):
        x = Tensor.ones(2, 0, 3, dtype=dtype).node
        np.testing.assert_array_equal(Tensor(x.reduce(Op.SUM, (1,))).numpy(), np.zeros((2, 1, 3), dtype))
        np.testing.assert_array_equal(Tensor(x.reduce(Op.RMAX, (0, 1))).numpy(), np.full((1, 1, 3), lowest, dtype))
        # fused into an elementwise kernel with a non-empty input
        fused = Tensor(x.reduce(Op.SUM, (0, 1))).cast(dtypes.float32) + Tensor([[[1.0, 2.0, 3.0]]])
        np.testing.assert_array_equal(fused.numpy(), [[[1, 2, 3]]])


# ---- leaves are tensors, not buffers or nodes ----
def test_a_detached_copy_made_a_leaf_is_another_leaf():
    w1 = Tensor([3.0], requires_grad=True)
    w2 = w1.detach().requires_grad_()          # reads the same memory, but is its own leaf
    (w1 + w2 * 2).sum().backward()
    np.testing.assert_allclose(w1.grad.numpy(), [1])
    np.testing.assert_allclose(w2.grad.numpy(), [2])
    lazy = Tensor([1.0, 2.0]) * 2               # a lazy value made a leaf twice
    l1 = lazy.requires_grad_()
    l2 = l1.detach().requires_grad_()
    (l1 * 3 + l2).sum().backward()
    np.testing.assert_allclose(l1.grad.numpy(), [3, 3])
    np.testing.assert_allclose(l2.grad.numpy(), [1, 1])


def test_a_tensor_made_from_another_with_requires_grad_is_a_new_leaf():
    a = Tensor([3.0], requires_grad=True)
    b = Tensor(a, requires_grad=True)           # like torch.tensor(a, requires_grad=True): a new leaf
    (a * 5 + b * 7).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [5])
    np.testing.assert_allclose(b.grad.numpy(), [7])
    x = Tensor([2.0], requires_grad=True)
    h = x * 3                                   # not a leaf: the new leaf made from it cuts the path to x
    w = Tensor(h, requires_grad=True)
    (w * w + h).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [12])
    np.testing.assert_allclose(x.grad.numpy(), [3])


def test_a_graph_built_before_an_update_still_reaches_the_leaf():
    """The leaf's node changes with each assign (an optimizer step); graphs built before it still hold the old
    node, which stands for the same leaf (at its old value)."""
    from tinyjit import optim
    p = Tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    loss_before = (p * p).sum()                 # built at p = [1, 2]
    p.grad = Tensor([1.0, 1.0])
    opt.step()                                  # p = [0.9, 1.9]
    p.grad = None
    loss_after = (p * p).sum()
    (loss_before + loss_after).backward()
    np.testing.assert_allclose(p.grad.numpy(), [2 * 1.0 + 2 * 0.9, 2 * 2.0 + 2 * 1.9], rtol=1e-6)


@pytest.mark.parametrize("dtype,split,dim", [("float32", (8, 8, 8), 2), ("float32", (5, 19), 2),
                                             ("float16", (8, 16), 2), ("float32", (2, 3), 1)])
def test_bias_gradient_of_a_split_projection_sums_each_piece(dtype, split, dim):
    """The gradient of a bias broadcast over a result that is then split (a fused q/k/v or gate projection) adds
    the pieces' padded gradients: it is summed piece by piece, so no reduce reads the pieces through masks."""
    from tinyjit.schedule import create_schedule
    rng = np.random.default_rng(0)
    shape = (4, 5, sum(split)) if dim == 2 else (4, sum(split), 6)
    xn = rng.standard_normal(shape).astype(dtype)
    bn = rng.standard_normal((1,) + shape[1:] if dim == 1 else shape[-1:]).astype(dtype)

    def f(x, b):
        parts = (x + b).split(list(split), dim=dim)
        out = (parts[0] * 0.25).exp().sum() + (parts[1] * parts[1]).sum()
        return out + parts[2].tanh().sum() if len(parts) > 2 else out
    x, b = Tensor(xn, requires_grad=True), Tensor(bn, requires_grad=True)
    f(x, b).backward()
    reduces = [item.ast for item in create_schedule([b.grad.node]) if any(
        n.op is Op.SUM for n in item.ast.toposort())]
    for ast in reduces:
        for load in (n for n in ast.toposort() if n.op is Op.LOAD):
            assert all(v.mask is None for v in load.arg[1].views), f"a masked load in a reduce:\n{ast.pretty()}"
    xt, bt = (torch.tensor(a.astype(np.float32), requires_grad=True) for a in (xn, bn))
    f(xt, bt).backward()
    tol = 1e-5 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(b.grad.numpy().astype(np.float32), bt.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(x.grad.numpy().astype(np.float32), xt.grad.numpy(), rtol=tol, atol=tol)


def test_bias_gradient_summed_over_steps_reads_each_steps_gradient_whole():
    """A bias used at every step of a recurrence with a split result (an LSTM's gates): each step's gradient is
    its pieces' sums put together in a buffer, so the kernels adding up the steps (and a gradient norm) read T
    buffers, not T x pieces masked loads (an LSTM's gradient norm read 80 of them: 0.6 s to compile)."""
    from tinyjit.schedule import create_schedule
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((5, 3, 4)).astype(np.float32)
    wn, bn = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal(8).astype(np.float32)

    def f(lib_tensor, w, b):
        h = 0
        for t in range(5):
            i, g = (lib_tensor(xs[t]) @ w + b).split([4, 4], dim=1)
            h = h + (i.sigmoid() * g.tanh()).sum()
        return h
    w, b = Tensor(wn, requires_grad=True), Tensor(bn, requires_grad=True)
    f(Tensor, w, b).backward()
    norm = (b.grad * b.grad).sum()
    last = create_schedule([norm.node])[-1].ast
    masked = [n for n in last.toposort() if n.op is Op.LOAD and any(v.mask is not None for v in n.arg[1].views)]
    assert not masked, f"the gradient norm reads pieces through masks:\n{last.pretty()}"
    wt, bt = torch.tensor(wn, requires_grad=True), torch.tensor(bn, requires_grad=True)
    f(torch.tensor, wt, bt).backward()
    np.testing.assert_allclose(b.grad.numpy(), bt.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.numpy(), (bt.grad * bt.grad).sum().item(), rtol=1e-5)


def test_bias_gradients_of_overlapping_reused_and_many_pieces_match_torch():
    """Padded pieces that overlap (two slices share columns), a piece read twice, pieces along the kept axis of a
    (k, 1) bias, more pieces than are summed apart (a fallback to one reduce), and a second derivative through the
    piecewise sum (create_graph): all match torch."""
    from tinyjit import autograd
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [(4, 7), (7,), (6, 5), (6, 1), (3, 12), (12,)]]

    def loss(x1, b1, x2, b2, x3, b3, cat):
        y1 = x1 + b1
        piece = y1[:, :3]
        overlapping = (y1[:, :4] * y1[:, 2:6]).sum() + (piece * piece + piece).sum()
        y2 = x2 + b2
        rows = (y2[:2] * 3 + y2[1:3] + cat([y2[4:5], y2[:1]]).exp()).sum()
        y3 = x3 + b3
        many = sum((y3[:, i:i + 1] * (i + 1)).sum() for i in range(12))
        return overlapping + rows + many

    def grads(make, cat, grad):
        leaves = [make(a) for a in arrays]
        first = grad(loss(*leaves, cat), [leaves[1]])[0]   # create_graph: differentiate b1's gradient again
        return grad(loss(*leaves, cat) + (first * first).sum(), leaves)

    ours = grads(lambda a: Tensor(a, requires_grad=True), lambda ts: ts[0].cat(*ts[1:]),
                 lambda out, ins: autograd.grad(out, ins, create_graph=True))
    theirs = grads(lambda a: torch.tensor(a, requires_grad=True), torch.cat,
                   lambda out, ins: torch.autograd.grad(out, ins, create_graph=True))
    for got, want in zip(ours, theirs):
        np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["pow_scalar", "pow_tensor", "hypot"])
def test_a_formula_gradient_does_not_keep_its_graph_alive(op):
    """Ops whose gradient is a formula reading their own result (pow, hypot) registered a rule, in a weak
    dictionary keyed by the result's node, that held that very node: every step's graph stayed alive for good (and
    a `.data` replacement it read kept the gradient cache off). After backward and the gradients realized, nothing
    of a step's graph remains; the gradients still match torch."""
    import gc
    from tinyjit import autograd_graph
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.5, 2.0, 4).astype(np.float32), rng.uniform(0.5, 2.0, 4).astype(np.float32)
    x, y = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    tx, ty = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    forward = {"pow_scalar": lambda p, q: p ** 2.5, "pow_tensor": lambda p, q: p ** q,
               "hypot": lambda p, q: p.hypot(q)}[op]
    gc.collect()
    before = len(autograd_graph.CUSTOM)
    for _ in range(5):
        forward(x, y).sum().backward()
        forward(tx, ty).sum().backward()
        Tensor.realize_all(*(t.grad for t in (x, y) if t.grad is not None))
    gc.collect()
    assert len(autograd_graph.CUSTOM) == before
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5)
    if op != "pow_scalar":
        np.testing.assert_allclose(y.grad.numpy(), ty.grad.numpy(), rtol=1e-5)
