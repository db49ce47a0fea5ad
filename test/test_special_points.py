"""Values and gradients at the points where ops change behaviour (kinks, bounds, 0, ties), against PyTorch on every
test device. The op suite samples random points and never lands exactly on a kink; these tests put every
special point of an op into one tensor (one forward and one backward per op).

Deliberate differences from PyTorch, not tested here: gradients at NaN inputs, and the exponent's gradient of
pow at a negative base (PyTorch: NaN; here x^y ln|x|)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyjit import Tensor

pytestmark = pytest.mark.usefixtures("device")   # each test runs on each selected device (test/conftest.py)

# every kink and bound of the ops below, and points on both sides of them
POINTS = np.array([-25, -20, -7, -6, -3.5, -3, -2.5, -1, -0.5, -1e-3, 0, 1e-3, 0.5, 1, 2.5, 3, 3.5, 6, 6.5, 7, 20,
                   20.5, 21, 25], np.float32)

ACTIVATIONS = {
    "relu": (lambda x: x.relu(), F.relu),
    "relu6": (lambda x: x.relu6(), F.relu6),
    "hardswish": (lambda x: x.hardswish(), F.hardswish),
    "hardsigmoid": (lambda x: x.hardsigmoid(), F.hardsigmoid),
    "leaky_relu": (lambda x: x.leaky_relu(0.1), lambda x: F.leaky_relu(x, 0.1)),
    "elu": (lambda x: x.elu(1.5), lambda x: F.elu(x, 1.5)),
    "abs": (lambda x: x.abs(), torch.abs),
    "sign": (lambda x: x.sign(), torch.sign),
    "clip": (lambda x: x.clip(-3, 6), lambda x: x.clamp(-3, 6)),
    "clip_tensor_bounds": (lambda x: x.clip(Tensor.full(x.shape, -3.0), Tensor.full(x.shape, 6.0)),
                           lambda x: x.clamp(torch.full(x.shape, -3.0), torch.full(x.shape, 6.0))),
    "maximum": (lambda x: x.maximum(Tensor.full(x.shape, 3.0)), lambda x: torch.maximum(x, torch.full(x.shape, 3.0))),
    "minimum": (lambda x: x.minimum(Tensor.full(x.shape, 0.0)), lambda x: torch.minimum(x, torch.zeros(x.shape))),
    "maximum_self": (lambda x: x.maximum(x), lambda x: torch.maximum(x, x)),
    "where": (lambda x: (x > 0).where(x, x * 2), lambda x: torch.where(x > 0, x, x * 2)),
    "softplus": (lambda x: x.softplus(), F.softplus),
    "softplus_threshold": (lambda x: x.softplus(2.0, 6.0), lambda x: F.softplus(x, 2.0, 6.0)),
    "gelu": (lambda x: x.gelu(), F.gelu),
    "gelu_tanh": (lambda x: x.gelu("tanh"), lambda x: F.gelu(x, approximate="tanh")),
    "silu": (lambda x: x.silu(), F.silu),
    "mish": (lambda x: x.mish(), F.mish),
    "sigmoid": (lambda x: x.sigmoid(), torch.sigmoid),
    "logsigmoid": (lambda x: -(-x).softplus(), F.logsigmoid),
    "tanh": (lambda x: x.tanh(), torch.tanh),
    "erf": (lambda x: x.erf(), torch.erf),
    "trunc": (lambda x: x.trunc(), torch.trunc),
    "floor": (lambda x: x.floor(), torch.floor),
    "ceil": (lambda x: x.ceil(), torch.ceil),
    "round": (lambda x: x.round(), torch.round),
    "sqrt_of_abs": (lambda x: x.abs().sqrt(), lambda x: x.abs().sqrt()),
}


def _values_and_grads(fns: dict, points: np.ndarray):
    """Every fn of `fns` (name -> (tinyjit fn, torch fn)) at `points`, with a gradient: rows of (values,
    gradients) per name, for tinyjit and torch. All tinyjit results are stacked into one tensor, so the forward
    pass is one kernel and the backward pass one more (compiling a kernel per op would make this test slow)."""
    upstream = np.linspace(0.5, 1.5, points.size, dtype=np.float32)
    leaves = {name: Tensor(points, requires_grad=True) for name in fns}
    out = Tensor.stack([fns[name][0](leaves[name]) for name in fns])
    out.backward(Tensor(np.broadcast_to(upstream, out.shape).copy()))
    values, grads = out.numpy(), Tensor.stack([leaves[name].grad for name in fns]).numpy()
    ours, theirs = {}, {}
    for row, (name, (_, torch_fn)) in enumerate(fns.items()):
        t = torch.tensor(points, requires_grad=True)
        ref = torch_fn(t)
        ref.backward(torch.tensor(upstream))
        ours[name], theirs[name] = (values[row], grads[row]), (ref.detach().numpy(), t.grad.numpy())
    return ours, theirs


def test_activations_at_kinks():
    ours, theirs = _values_and_grads(ACTIVATIONS, POINTS)
    for name in ACTIVATIONS:
        np.testing.assert_allclose(ours[name][0], theirs[name][0], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name} values at {POINTS}")
        np.testing.assert_allclose(ours[name][1], theirs[name][1], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name} gradients at {POINTS}")


def test_kinks_of_the_issue():
    """relu6 at 0 and 6, hardswish at -3 and 3, hardsigmoid at +-3: PyTorch's values, same on every backend (the
    kink is decided on x itself, not on a computed x + 3 whose rounding depends on the kernel it was fused into)."""
    x = Tensor([0.0, 6.0, -3.0, 3.0], requires_grad=True)
    (x.relu6() + x.hardswish() * 10 + x.hardsigmoid() * 100).sum().backward()
    relu6 = [0, 0, 0, 1]
    hardswish = [0.5, 1, 0, 1]   # inside (-3, 3): x/3 + 0.5
    hardsigmoid = [1 / 6, 0, 0, 0]
    expected = np.array(relu6) + np.array(hardswish) * 10 + np.array(hardsigmoid) * 100
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)


def test_pow_special_points():
    """Tensor ** Tensor over a grid of bases and exponents with 0, +-1, negatives and fractions: values everywhere
    (inf and NaN too), the base's gradient at every finite point, the exponent's at every finite base >= 0."""
    inf, nan = float("inf"), float("nan")
    bases = [-inf, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, inf, nan]
    exponents = [-inf, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, inf, nan]
    xa = np.array([b for b in bases for _ in exponents], np.float32)
    ya = np.array([e for _ in bases for e in exponents], np.float32)
    x, y = Tensor(xa, requires_grad=True), Tensor(ya, requires_grad=True)
    (x ** y).sum().backward()
    tx, ty = torch.tensor(xa, requires_grad=True), torch.tensor(ya, requires_grad=True)
    ref = tx ** ty
    ref.sum().backward()
    np.testing.assert_allclose((x ** y).numpy(), ref.detach().numpy(), rtol=1e-5)
    finite = np.isfinite(xa) & np.isfinite(ya)
    np.testing.assert_allclose(x.grad.numpy()[finite], tx.grad.numpy()[finite], rtol=1e-5)
    nonnegative = finite & (xa >= 0)
    np.testing.assert_allclose(y.grad.numpy()[nonnegative], ty.grad.numpy()[nonnegative], rtol=1e-5)


def _same_or_both_nan(ours: np.ndarray, theirs: np.ndarray, what: str, rtol: float = 1e-5) -> None:
    close = np.isclose(ours, theirs, rtol=rtol, atol=0) & (np.isinf(ours) == np.isinf(theirs))
    same = close | np.isnan(ours) & np.isnan(theirs)
    assert same.all(), f"{what}: differ at {np.nonzero(~same)[0]}: {ours[~same]} (PyTorch {theirs[~same]})"


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_pow_gradients_everywhere_with_special_upstream_gradients(device, dtype):
    """PyTorch's pow gradients at every pair of special values (inf, NaN, signed zeros, negative bases) with
    upstream gradients 1, -0.5, 0, NaN and inf: y * x ** (y - 1) for the base (0 where y == 0, whatever the
    upstream gradient), x ** y * log(x) for the exponent (0 where x == 0 and y >= 0), for a tensor exponent, Python
    scalar exponents and Python scalar bases."""
    inf, nan = np.inf, np.nan
    special = [-inf, -3.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 3.0, inf, nan]
    upstream = [1.0, -0.5, 0.0, nan, inf]
    grid = np.array([(b, e, g) for b in special for e in special + [2.0, -2.0, 1.5, -1.5] for g in upstream], dtype)
    base, exponent, grad = grid.T
    rtol = 1e-5 if dtype != np.float16 else 4e-3
    x, y = Tensor(base, requires_grad=True), Tensor(exponent, requires_grad=True)
    tx, ty = torch.tensor(base, requires_grad=True), torch.tensor(exponent, requires_grad=True)
    (x ** y * Tensor(grad)).sum().backward()
    (tx ** ty * torch.tensor(grad)).sum().backward()
    _same_or_both_nan(x.grad.numpy(), tx.grad.numpy(), "d(x ** y)/dx", rtol)
    _same_or_both_nan(y.grad.numpy(), ty.grad.numpy(), "d(x ** y)/dy", rtol)


@pytest.mark.devices("CPU")   # the rule is the same on every device; their values: test_pow_at_every_pair_...
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_pow_gradients_with_python_scalars_at_special_points(dtype):
    """As above for Python scalar exponents (PyTorch: zeros for x ** 0) and Python scalar bases."""
    inf, nan = np.inf, np.nan
    special = [-inf, -3.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 3.0, inf, nan]
    upstream = [1.0, -0.5, 0.0, nan, inf]
    rtol = 1e-5 if dtype != np.float16 else 4e-3
    values = np.array([(b, g) for b in special for g in upstream], dtype)
    scalars = [0, 1, 2, 3, -1, -2, 0.5, -0.5, 2.5, inf, nan]
    ours = [Tensor(values[:, 0], requires_grad=True) for _ in scalars + special]
    theirs = [torch.tensor(values[:, 0], requires_grad=True) for _ in scalars + special]
    loss = sum(((t ** s if i < len(scalars) else s ** t) * Tensor(values[:, 1])).sum()
               for i, (t, s) in enumerate(zip(ours, scalars + special)))
    torch_loss = sum(((t ** s if i < len(scalars) else s ** t) * torch.tensor(values[:, 1])).sum()
                     for i, (t, s) in enumerate(zip(theirs, scalars + special)))
    loss.backward()
    torch_loss.backward()
    for t, tt, s, i in zip(ours, theirs, scalars + special, range(len(ours))):
        what = f"d(x ** {s})/dx" if i < len(scalars) else f"d({s} ** x)/dx"
        _same_or_both_nan(t.grad.numpy(), tt.grad.numpy(), what, rtol)


def test_pow_scalar_exponents_at_zero_and_negative_bases():
    points = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0], np.float32)
    exponents = [0, 1, 2, 3, -1, -2, -3, 0.5, 1.5, -0.5, -1.5, 2.0, 0.0]
    fns = {repr(e): ((lambda x, e=e: x ** e), (lambda x, e=e: x ** e)) for e in exponents}
    ours, theirs = _values_and_grads(fns, points)
    for name in fns:
        np.testing.assert_allclose(ours[name][0], theirs[name][0], rtol=1e-5, err_msg=f"x ** {name} at {points}")
        np.testing.assert_allclose(ours[name][1], theirs[name][1], rtol=1e-5, err_msg=f"grad of x ** {name}")


def test_pow_by_tensor_at_zero_issue_values():
    x = Tensor([0.0], requires_grad=True)
    (x ** 1.5 + x ** Tensor([2.0])).sum().backward()
    assert x.grad.numpy().tolist() == [0.0]


def test_pow_zero_and_one_stay_in_the_graph():
    x = Tensor([2.0, 0.0, -3.0, float("inf")], requires_grad=True)
    zeroth = x ** 0
    assert zeroth.requires_grad
    np.testing.assert_array_equal(zeroth.numpy(), [1, 1, 1, 1])
    zeroth.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0, 0, 0])
    first = x ** 1
    assert first is not x and first.requires_grad
    x.grad = None
    first[:3].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1, 1, 1, 0])


@pytest.mark.parametrize("args", [(2,), (3, 1, 1), (2, 1), (3, 2, 1, 1), ((2, 3), (1, 2), (1, 0))])
def test_max_pool_ties_pick_one_element(args):
    """Every window holds its maximum several times (and NaN in one): the whole gradient of a window goes to its
    first maximum in row-major order, like PyTorch."""
    a = np.array([[[[1, 1, 2, 2, 0], [1, 1, 2, 2, 0], [0, 3, 3, 0, 5], [3, 3, 0, 0, 5], [5, 0, 5, 5, 5]],
                   [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 7, 0, 0], [0, 7, 7, 0, 0], [0, 0, 0, 0, 0]]]], np.float32)
    x = Tensor(a, requires_grad=True)
    out = x.max_pool2d(*args)
    upstream = np.arange(1, out.numel() + 1, dtype=np.float32).reshape(out.shape)
    out.backward(Tensor(upstream))
    t = torch.tensor(a, requires_grad=True)
    ref = F.max_pool2d(t, *args)
    ref.backward(torch.tensor(upstream))
    np.testing.assert_array_equal(out.numpy(), ref.detach().numpy())
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())


def test_max_pool_of_a_fused_input_and_nan():
    """The input is an expression (fused into the pool's kernels): forward and gradient still match, and a NaN in a
    window is its maximum and takes the gradient."""
    a = np.array([[[[1, 5, 2, 2], [5, 1, np.nan, 2], [0, 0, 1, 1], [-1, -2, 1, 1]]]], np.float32)
    x = Tensor(a, requires_grad=True)
    out = (x * 0.1 + 0.2).relu().max_pool2d(2)
    out.sum().backward()
    t = torch.tensor(a, requires_grad=True)
    ref = F.max_pool2d((t * 0.1 + 0.2).relu(), 2)
    ref.sum().backward()
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-6)


def test_max_reduce_keeps_the_even_split():
    """Tensor.max (torch.amax) splits the gradient evenly between ties: documented, and PyTorch does the same."""
    a = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]], np.float32)
    x = Tensor(a, requires_grad=True)
    x.amax(1).sum().backward()
    t = torch.tensor(a, requires_grad=True)
    torch.amax(t, 1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())


VAR_CASES = [((1,), None, 1), ((3, 1), 1, 1), ((2, 2), 1, 2), ((2, 3), 0, 3), ((2,), 0, 0), ((2, 2), None, 4),
             ((3, 4), (0, 1), 1), ((2, 3), 1, 1), ((2, 2), None, 1)]


@pytest.mark.devices("CPU")   # a gradient rule: the same graph on every device
@pytest.mark.filterwarnings("ignore:var\\(\\)|std\\(\\):UserWarning")
@pytest.mark.parametrize("fn", ["var", "std"])
@pytest.mark.parametrize("constant", [False, True], ids=["spread", "constant"])
def test_var_and_std_gradients_with_no_more_elements_than_the_correction(fn, constant):
    """PyTorch's var_backward, 2 / (n - correction) * grad * (x - mean) with that factor unclamped (negative, or
    inf at n == correction), and for a full reduction with n <= correction grad * (NaN where x == mean, else inf);
    std's is var's with grad / (2 std) (0 where std == 0). Values too (inf or NaN there)."""
    for shape, dim, correction in VAR_CASES:
        x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1
        x = x * 0 + 2 if constant else x
        ours, theirs = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        args = (dim,) if dim is not None else ()
        out = getattr(ours, fn)(*args, correction=correction)
        expected = getattr(theirs, fn)(*args, correction=correction)
        (out * 2).sum().backward()
        (expected * 2).sum().backward()
        what = f"{fn}{shape} dim={dim} correction={correction}"
        _same_or_both_nan(out.numpy().ravel(), expected.detach().numpy().ravel(), what)
        _same_or_both_nan(ours.grad.numpy().ravel(), theirs.grad.numpy().ravel(), f"gradient of {what}")
