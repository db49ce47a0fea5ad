"""Edges of the PyTorch API a tester found apart from torch 2.13, each compared with torch: finite gradients at zero
(norms, cosine similarity, atan2) and infinities (logaddexp); addmm-family products ignored at alpha=0 / inputs
at beta=0; mm and mv; scalar-first remainder; the in-place twins of elementwise methods; requires_grad is a bool; second
derivatives of piecewise-linear ops. Nearly all on CPU only: the ops are compositions of tested primitives.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tinyjit.nn.functional as F
import tinyjit.pytorch as tj
from tinyjit import Tensor

INF, NAN = math.inf, math.nan


def check(ours, theirs, atol=1e-5, rtol=1e-5):
    """Values, shape and dtype equal to torch's (NaN where torch has NaN)."""
    theirs = theirs.detach().numpy(force=True) if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    got = ours.numpy() if isinstance(ours, Tensor) else np.asarray(ours)
    assert got.shape == theirs.shape, (got.shape, theirs.shape)
    assert got.dtype == theirs.dtype, (got.dtype, theirs.dtype)
    np.testing.assert_allclose(got.astype(np.float64), theirs.astype(np.float64), atol=atol, rtol=rtol)


def compare(fn, *arrays, torch_fn=None, atol=1e-5, rtol=1e-5):
    """fn(*tensors) with tinyjit and torch on the same arrays: the values and the gradients of the sum."""
    torch_fn = torch_fn or fn
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, expected = fn(*ours), torch_fn(*theirs)
    check(out, expected, atol, rtol)
    out.sum().backward()
    expected.sum().backward()
    for o, t in zip(ours, theirs):
        check(o.grad, t.grad, atol, rtol)


# ------------------------------------------------------------------------------- gradients at zero and infinity
@pytest.mark.parametrize("p", [0.5, 1.5, 3, -1, -0.5])
def test_norm_gradient_is_finite_at_zero_entries_and_zero_vectors(p):
    """|x|^p has an infinite slope at 0 for p < 1 (and |0|^p = inf for p < 0): torch's gradient is 0 there."""
    rows = np.array([[0, 0, 0], [0, 1, -2], [0.5, -3, 0]], dtype=np.float32)
    compare(lambda x: x.norm(p, dim=1), rows, torch_fn=lambda x: torch.linalg.vector_norm(x, p, dim=1))
    compare(lambda x: F.normalize(x, p=p, dim=1), rows, torch_fn=lambda x: torch.nn.functional.normalize(x, p, 1))


def test_norm_gradient_at_zero_float64_whole_tensor():
    compare(lambda x: x.norm(0.25), np.array([0.0, 2.0, 0.0, -1.0]),
            torch_fn=lambda x: torch.linalg.vector_norm(x, 0.25))
    compare(lambda x: x.norm(0.25), np.zeros(3), torch_fn=lambda x: torch.linalg.vector_norm(x, 0.25))


def test_cosine_similarity_of_a_zero_vector_has_torchs_gradient():
    """The norm is clamped to eps; torch's gradient is then large but finite, not NaN."""
    a = np.array([[0, 0, 0], [1, 2, 3], [0, 0, 0]], dtype=np.float32)
    b = np.array([[1, 2, 3], [0, 0, 0], [0, 0, 0]], dtype=np.float32)
    compare(lambda x, y: F.cosine_similarity(x, y, dim=1), a, b,
            torch_fn=lambda x, y: torch.nn.functional.cosine_similarity(x, y, dim=1), rtol=1e-4)


def test_atan2_gradient_at_the_origin_is_zero():
    y = np.array([0.0, -0.0, 0.0, 1e-30, 0.0, 1.0, -2.0], dtype=np.float32)
    x = np.array([0.0, 0.0, -0.0, 0.0, 1e-30, 0.0, 3.0], dtype=np.float32)
    compare(lambda a, b: tj.atan2(a, b), y, x, torch_fn=torch.atan2)
    compare(lambda a, b: tj.atan2(a, b), y.astype(np.float64), x.astype(np.float64), torch_fn=torch.atan2)


def test_logaddexp_with_infinities_matches_torch():
    """Forward and gradient: (inf, -inf) has gradient (1, 0) as in torch; both the same infinity gives NaN in
    torch too."""
    a = np.array([INF, -INF, INF, -INF, INF, 1e38, 3.0, 1.0, NAN], dtype=np.float32)
    b = np.array([-INF, -INF, INF, INF, 5.0, -1e38, NAN, 2.0, 0.0], dtype=np.float32)
    compare(lambda x, y: tj.logaddexp(x, y), a, b, torch_fn=torch.logaddexp)


# ------------------------------------------------------------------------------------------- requires_grad
def test_requires_grad_is_false_not_none_like_torch():
    from tinyjit import nn, optim
    made = [Tensor([1.0]), Tensor.zeros(2), Tensor.rand(2), tj.zeros(2), tj.tensor([1, 2]), Tensor([1.0]) * 2,
            Tensor([1.0], requires_grad=True).detach()]
    assert all(t.requires_grad is False for t in made)
    assert Tensor([1.0], requires_grad=True).requires_grad is True
    # a float tensor never set either way still becomes a parameter (Module attribute, optimizer)
    layer = nn.Module()
    layer.weight = Tensor([1.0, 2.0])
    assert layer.weight.requires_grad is True
    free = Tensor([3.0])
    optim.SGD([free], lr=0.1)
    assert free.requires_grad is True
    frozen = Tensor([1.0]).requires_grad_(False)
    layer.frozen = frozen
    assert frozen.requires_grad is False


# ------------------------------------------------------------------------------ double backward of piecewise ops
PIECEWISE = {
    "relu": lambda m, x, y: m.relu(x) * y,
    "leaky_relu": lambda m, x, y: m.leaky_relu(x, 0.1) * y,
    "hardtanh": lambda m, x, y: m.hardtanh(x) * y,
    "relu6": lambda m, x, y: m.relu6(x) * y,
    "hardswish": lambda m, x, y: m.hardswish(x) * y,
    "abs": lambda m, x, y: x.abs() * y,
    "clamp": lambda m, x, y: x.clamp(-1, 1) * y,
    "amax": lambda m, x, y: (x * y).amax(),
}


@pytest.mark.parametrize("name", sorted(PIECEWISE))
def test_second_derivative_of_piecewise_ops_like_torch(name):
    """The first gradient depends on x only through a comparison (relu's is where(x > 0, g, 0)): torch records it
    as requiring grad and its derivative is zeros; tinyjit raised 'does not require grad'."""
    fn = PIECEWISE[name]
    v = np.array([-1.5, 0.0, 0.5, 2.0, 3.0, -0.2], dtype=np.float32)
    w = np.array([1.0, 0.0, -1.0, 2.0, 3.0, -0.1], dtype=np.float32)
    xt, yt = torch.tensor(v, requires_grad=True), torch.tensor(w, requires_grad=True)
    (gt,) = torch.autograd.grad(fn(torch.nn.functional, xt, yt).sum(), xt, create_graph=True)
    assert gt.requires_grad
    expected = torch.autograd.grad(gt.sum(), [xt, yt], allow_unused=True, materialize_grads=True)
    xj, yj = Tensor(v, requires_grad=True), Tensor(w, requires_grad=True)
    (gj,) = tj.autograd.grad(fn(F, xj, yj).sum(), xj, create_graph=True)
    check(gj, gt)
    assert gj.requires_grad
    for ours, theirs in zip(tj.autograd.grad(gj.sum(), [xj, yj]), expected):
        check(ours, theirs)


def test_second_derivative_through_a_comparison_only_is_zero_and_unreached_stays_none():
    x, y = Tensor([-1.0, 2.0], requires_grad=True), Tensor([3.0, 4.0], requires_grad=True)
    (g,) = tj.autograd.grad((x.relu() * x).sum(), x, create_graph=True)   # 2 * relu(x): depends on x
    second = tj.autograd.grad(g.sum(), [x, y], allow_unused=True)
    assert second[0].tolist() == [0.0, 2.0] and second[1] is None
    with pytest.raises(RuntimeError, match="do not depend"):
        tj.autograd.grad(g.sum(), [y])


# ------------------------------------------------------------------------------------------ the addmm family
@pytest.mark.parametrize("alpha,beta", [(0, 1), (0, 2.5), (1, 0), (0, 0), (2, 0)])
def test_addmm_ignores_the_product_at_alpha_0_and_the_input_at_beta_0(alpha, beta):
    """torch reads neither operand whose factor is 0: inf and NaN there do not spread (values and gradients)."""
    mat1 = np.array([[INF, 1.0], [2.0, 3.0]], dtype=np.float32)
    mat2 = np.array([[1.0, NAN, 0.5], [2.0, 1.0, -1.0]], dtype=np.float32)
    bias = np.array([NAN, 1.0, -INF], dtype=np.float32)
    compare(lambda i, a, b: tj.addmm(i, a, b, alpha=alpha, beta=beta), bias, mat1, mat2,
            torch_fn=lambda i, a, b: torch.addmm(i, a, b, alpha=alpha, beta=beta))
    compare(lambda i, a, b: tj.baddbmm(i, a, b, alpha=alpha, beta=beta), bias, mat1[None], mat2[None],
            torch_fn=lambda i, a, b: torch.baddbmm(i, a, b, alpha=alpha, beta=beta))


def test_addmm_alpha_0_of_ints():
    ints = Tensor([[1, 2]]), Tensor([[3], [4]])
    out = tj.addmm(Tensor([5]), *ints, alpha=0, beta=2)
    check(out, torch.addmm(torch.tensor([5]), torch.tensor([[1, 2]]), torch.tensor([[3], [4]]), alpha=0, beta=2))


@pytest.mark.parametrize("alpha,beta", [(0, 1), (1, 0), (0, 0), (0.5, 2)])
def test_addmv_and_addbmm_like_torch(alpha, beta):
    mat = np.array([[INF, 1.0], [2.0, 3.0]], dtype=np.float32)
    vec = np.array([NAN, 2.0], dtype=np.float32) if alpha == 0 else np.array([0.5, 2.0], dtype=np.float32)
    bias = np.array([NAN, 1.0], dtype=np.float32) if beta == 0 else np.array([1.0, -1.0], dtype=np.float32)
    matrix = mat if alpha == 0 else np.ones_like(mat)   # (inf only where the product is ignored)
    compare(lambda i, a, b: tj.addmv(i, a, b, alpha=alpha, beta=beta), bias, matrix, vec,
            torch_fn=lambda i, a, b: torch.addmv(i, a, b, alpha=alpha, beta=beta))
    batches = np.stack([mat, mat[::-1]]) if alpha == 0 else np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    compare(lambda i, a, b: tj.addbmm(i, a, b, alpha=alpha, beta=beta), bias, batches, batches[:, :, ::-1].copy(),
            torch_fn=lambda i, a, b: torch.addbmm(i, a, b, alpha=alpha, beta=beta))
    with pytest.raises(RuntimeError):
        tj.addmv(Tensor(bias), Tensor(mat), Tensor(np.ones(3, np.float32)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
def test_mm_and_mv_like_torch(dtype):
    """Tensor.mm / torch.mm and Tensor.mv / torch.mv (found porting pytorch/examples regression, whose
    f(x) is x.mm(W_target)): values, dtypes and (float) gradients, including an empty inner size; torch's error
    classes for other ranks, sizes that do not match and a non-tensor operand."""
    rng = np.random.default_rng(3)
    a, b, v = (rng.integers(-4, 5, shape).astype(dtype) for shape in ((3, 4), (4, 2), (4,)))
    if np.dtype(dtype).kind == "f":
        compare(lambda x, y: x.mm(y), a, b)
        compare(lambda x, y: tj.mm(x, y), a, b.T.copy().T, torch_fn=torch.mm)
        compare(lambda x, y: x.mv(y), a, v)
        compare(lambda x, y: tj.mv(x, y), a, v, torch_fn=torch.mv)
    else:
        check(Tensor(a).mm(Tensor(b)), torch.tensor(a).mm(torch.tensor(b)))
        check(tj.mv(Tensor(a), Tensor(v)), torch.mv(torch.tensor(a), torch.tensor(v)))
    empty_a, empty_b = np.zeros((3, 0), dtype), np.zeros((0, 2), dtype)
    check(Tensor(empty_a).mm(Tensor(empty_b)), torch.tensor(empty_a).mm(torch.tensor(empty_b)))
    for first, second in (((3, 4), (2, 4)), ((4,), (4, 2)), ((3, 4), (4,)), ((2, 3, 4), (4, 2))):
        with pytest.raises(RuntimeError):
            torch.ones(first).mm(torch.ones(second))
        with pytest.raises(RuntimeError, match="mm"):
            Tensor.ones(*first).mm(Tensor.ones(*second))
    for first, second in (((3, 4), (3,)), ((3, 4), (4, 1)), ((4,), (4,))):
        with pytest.raises(RuntimeError):
            torch.ones(first).mv(torch.ones(second))
        with pytest.raises(RuntimeError, match="mv"):
            Tensor.ones(*first).mv(Tensor.ones(*second))
    with pytest.raises(TypeError):
        torch.ones(2, 2).mm([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(TypeError, match="mm"):
        Tensor.ones(2, 2).mm([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(TypeError, match="mv"):
        Tensor.ones(2, 2).mv([1.0, 2.0])


# ------------------------------------------------------------------------------------------ a number first
def test_remainder_and_pow_take_a_number_first_like_torch():
    divisors = np.array([3.0, -3.0, 2.5, -0.75], dtype=np.float32)
    for number in (5, -5.5):   # (torch has no derivative of remainder(number, tensor): values only)
        check(tj.remainder(number, Tensor(divisors)), torch.remainder(number, torch.tensor(divisors)))
    compare(lambda d: tj.pow(2, d), divisors, torch_fn=lambda d: torch.pow(2, d))
    ints = np.array([3, -3, 7], dtype=np.int64)
    for number in (5, -5, 5.5):
        check(tj.remainder(number, Tensor(ints)), torch.remainder(number, torch.tensor(ints)))
    check(tj.pow(2, Tensor(ints[ints > 0])), torch.pow(2, torch.tensor(ints[ints > 0])))
    for fn in (tj.fmod, tj.atan2, tj.maximum):   # no number-first form in torch either
        with pytest.raises(TypeError):
            fn(5, Tensor(divisors))


# ------------------------------------------------------------------------------------------------- torch.linalg
def test_linalg_cross_and_vector_norm_like_torch():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((1, 3)).astype(np.float32)
    compare(lambda x, y: tj.linalg.cross(x, y), a, b, torch_fn=torch.linalg.cross)
    compare(lambda x, y: tj.linalg.cross(x, y, dim=0), a.T.copy(), b.T.copy(),
            torch_fn=lambda x, y: torch.linalg.cross(x, y, dim=0))
    ints = Tensor([1, 2, 3]), Tensor([4, 5, 6])
    check(tj.linalg.cross(*ints), torch.linalg.cross(torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])))
    with pytest.raises(RuntimeError):
        tj.linalg.cross(Tensor(a), Tensor(b[0]))          # different numbers of dims: torch.linalg.cross refuses
    with pytest.raises(RuntimeError):
        tj.linalg.cross(Tensor(a), Tensor(a), dim=0)      # dim 0 has length 2
    compare(lambda x: tj.linalg.vector_norm(x, 3, dim=1, keepdim=True), a,
            torch_fn=lambda x: torch.linalg.vector_norm(x, 3, dim=1, keepdim=True))


# ---------------------------------------------------------------------------------------------- in-place twins
SIGNED = np.array([[-1.5, 0.5], [2.0, 3.25]], dtype=np.float32)
OTHER = np.array([[1.0, 0.5], [2.0, -3.0]], dtype=np.float32)
INTS = np.array([[6, -3], [5, 12]], dtype=np.int32)
INT_OTHER = np.array([[3, 5], [-2, 10]], dtype=np.int32)
SPECIAL = np.array([[NAN, INF], [-INF, 1.0]], dtype=np.float32)
# name: (self, extra arguments (arrays become tensors), whether the op is differentiable)
TWINS = {name: (SIGNED, (), True) for name in (
    "abs neg sign exp exp2 expm1 log log2 log1p sqrt rsqrt reciprocal square sin cos tan tanh sigmoid relu erf floor "
    "ceil round trunc frac").split()}
TWINS.update({name: (SIGNED, (OTHER,), True) for name in "pow fmod remainder atan2 arctan2 hypot".split()})
COMPARISONS = "eq ne lt le gt ge logical_and logical_or logical_xor".split()
TWINS.update({name: (SIGNED, (OTHER,), False) for name in COMPARISONS})
TWINS.update({name: (INTS, (INT_OTHER,), False) for name in "bitwise_and bitwise_or bitwise_xor".split()})
TWINS.update({
    "logical_not": (SIGNED, (), False), "bitwise_not": (INTS, (), False), "nan_to_num": (SPECIAL, (0.0, 7.0), False),
    "lerp": (SIGNED, (OTHER, 0.3), True), "cumsum": (SIGNED, (1,), True), "cumprod": (SIGNED, (0,), True),
    "tril": (SIGNED, (), True), "triu": (SIGNED, (), True), "addmm": (SIGNED, (OTHER, SIGNED), True),
    "baddbmm": (SIGNED[None], (OTHER[None], SIGNED[None]), True), "addmv": (SIGNED[0], (OTHER, SIGNED[1]), True),
    "addbmm": (SIGNED, (OTHER[None], SIGNED[None]), True), "remainder int": (INTS, (INT_OTHER,), False),
    "fmod int": (INTS, (INT_OTHER,), False), "cumsum int": (INTS, (0,), False), "abs int": (INTS, (), False),
})


@pytest.mark.parametrize("name", sorted(TWINS))
def test_inplace_twin_like_torch(name):
    """NAME_ writes self.NAME(...) into self (same object, dtype kept) and, on a result that requires grad,
    records the gradient through it, like torch."""
    base, extra, differentiable = TWINS[name]
    op = name.split()[0] + "_"
    ours, theirs = Tensor(base.copy()), torch.tensor(base.copy())
    ours_args = [Tensor(a) if isinstance(a, np.ndarray) else a for a in extra]
    theirs_args = [torch.tensor(a) if isinstance(a, np.ndarray) else a for a in extra]
    assert getattr(ours, op)(*ours_args) is ours
    getattr(theirs, op)(*theirs_args)
    check(ours, theirs)
    if differentiable:
        x, reference = Tensor(base, requires_grad=True), torch.tensor(base, requires_grad=True)
        y, expected = x * 1, reference * 1
        getattr(y, op)(*ours_args).sum().backward()
        getattr(expected, op)(*theirs_args).sum().backward()
        check(x.grad, reference.grad)


def test_inplace_twins_refuse_like_torch_and_leave_self_unchanged():
    ints = Tensor(INTS.copy())
    for op in ("sqrt_", "exp_", "sigmoid_"):   # a float result cannot go into an int tensor
        with pytest.raises(RuntimeError, match=op):
            getattr(ints, op)()
    with pytest.raises(RuntimeError):
        ints.remainder_(2.5)
    assert ints.tolist() == INTS.tolist()
    leaf = Tensor(SIGNED, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        leaf.fmod_(2.0)
    with pytest.raises(RuntimeError):                 # the broadcast result is larger than self
        Tensor(SIGNED[0].copy()).remainder_(Tensor(OTHER))
    with tj.no_grad():
        leaf.nan_to_num_().relu_()
    assert leaf.tolist() == np.maximum(SIGNED, 0).tolist()


@pytest.mark.parametrize("op", ["hypot", "atan2", "logaddexp", "pow", "var"])
def test_formula_gradients_read_the_values_before_a_later_inplace_update(op):
    """Ops whose gradient is a formula (Tensor._with_gradient) read their input and result when backward runs: an
    in-place update of the input in between must not change the gradient, which is that of the values used (torch
    refuses such a backward, "modified by an inplace operation": compared with torch's without the update)."""
    def run(module, x, other):
        y = x * 1
        out = y.var(1) if op == "var" else getattr(module, op)(y, other)
        if module is tj:
            y.mul_(3)                 # the input changes after the op
        return out
    other = OTHER if op != "pow" else np.abs(OTHER)
    x, reference = Tensor(np.abs(SIGNED), requires_grad=True), torch.tensor(np.abs(SIGNED), requires_grad=True)
    run(tj, x, Tensor(other)).sum().backward()
    run(torch, reference, torch.tensor(other)).sum().backward()
    check(x.grad, reference.grad)


@pytest.mark.parametrize("op,args", [("t_", ()), ("transpose_", (0, 2)), ("swapaxes_", (1, -1)),
                                     ("swapdims_", (0, 1)), ("squeeze_", ()), ("squeeze_", (1,)),
                                     ("unsqueeze_", (-1,))])
def test_inplace_view_ops_like_torch(op, args):
    """The tensor itself takes the view's shape (no data written); the gradient flows through it as torch's."""
    base = np.arange(6, dtype=np.float32).reshape((2, 3) if op == "t_" else (2, 1, 3))
    x, reference = Tensor(base, requires_grad=True), torch.tensor(base, requires_grad=True)
    y, expected = x * 1, reference * 1
    assert getattr(y, op)(*args) is y
    getattr(expected, op)(*args)
    check(y, expected)
    weights = np.arange(1, expected.numel() + 1, dtype=np.float32).reshape(tuple(expected.shape))
    (y * Tensor(weights)).sum().backward()
    (expected * torch.tensor(weights)).sum().backward()
    check(x.grad, reference.grad)


def test_inplace_view_ops_and_detach_refusals_and_state():
    leaf = Tensor(SIGNED, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        leaf.t_()
    with pytest.raises(IndexError):
        Tensor(SIGNED).transpose_(0, 5)
    assert leaf.shape == (2, 2)
    y = leaf * 2
    assert y.detach_() is y and y.requires_grad is False and y.is_leaf
    assert (y + leaf).requires_grad and y.tolist() == (SIGNED * 2).tolist()
    (y * leaf).sum().backward()                       # no gradient flows through the detached y
    check(leaf.grad, SIGNED * 2)
    before = Tensor([[1.0, 2.0]])
    kept = before * 1
    before.t_()
    with tj.no_grad():
        before.mul_(10)
    assert kept.tolist() == [[1.0, 2.0]] and before.tolist() == [[10.0], [20.0]]


# ---- integer division by the int 0, lerp at special weights, cumsum_'s dtype, ParameterDict |, norm reprs ----
@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "int8", "bool"])
def test_integer_division_by_the_int_zero_raises_like_torch(device, dtype):
    """torch raises RuntimeError("ZeroDivisionError") for fmod, remainder, %, // and div with a rounding mode of an
    int (or bool) tensor by the int 0, the in-place twins included (they gave 0); the tensor is left as it was. The
    float 0.0 divides in float (NaN), as torch."""
    values = np.array([5, 3, 0], dtype)
    x, reference = Tensor(values, device=device), torch.tensor(values)
    calls = [lambda t: t.fmod(0), lambda t: t.fmod_(0), lambda t: t.remainder(0), lambda t: t.remainder_(0),
             lambda t: t % 0, lambda t: t // 0, lambda t: t.div(0, rounding_mode="floor"),
             lambda t: t.div(0, rounding_mode="trunc"), lambda t: t.fmod(np.int64(0))]
    for call in calls:
        for t in (x, reference):   # (torch checks the dtype of a bool's in-place result first)
            with pytest.raises(RuntimeError, match="ZeroDivisionError|can't be cast"):
                call(t)
    assert x.numpy().tolist() == values.tolist()
    if dtype != "bool":
        check(x.fmod(0.0), reference.fmod(0.0))
        check(x.remainder(3), reference.remainder(3))


def test_lerp_at_special_weights_like_torch(device):
    """torch computes lerp as self + w * (end - self) for |w| < 0.5 and end - (end - self) * (1 - w) otherwise:
    exact at w = 1, and inf or NaN where that formula gives them (w = inf, an inf end). Scalar and tensor weights,
    a number as end, lerp_; gradients as torch's for finite values."""
    start = np.array([0.0, 1.0, -2.0, INF, 1.0, 0.0, 3.0, 0.1], np.float32)
    end = np.array([INF, 2.0, INF, 1.0, -INF, 1.0, NAN, 0.7], np.float32)
    for weight in (0.3, 0.7, INF, -INF, 0.0, 1.0, 2.0, -0.5, 0.5):
        ours, theirs = Tensor(start, device=device), torch.tensor(start)
        check(ours.lerp(Tensor(end, device=device), weight), theirs.lerp(torch.tensor(end), weight))
        weights = np.full(8, weight, np.float32)
        check(ours.lerp(Tensor(end, device=device), Tensor(weights, device=device)),
              theirs.lerp(torch.tensor(end), torch.tensor(weights)))
        check(Tensor(start, device=device).lerp_(3.0, weight), torch.tensor(start).lerp_(torch.tensor(3.0), weight))
    finite = [np.array([0.5, -1.0, 2.0, 0.25], np.float32), np.array([1.5, 2.0, -3.0, 0.75], np.float32),
              np.array([0.2, 0.7, 1.0, -0.6], np.float32)]
    compare(lambda a, b, w: a.lerp(b, w), *finite)


def test_cumsum_in_place_takes_the_dtype_keyword_like_torch(device):
    """cumsum_(dim, dtype=None) and dtype=self's dtype work; another dtype raises RuntimeError as torch's "Bad
    in-place call"; cumsum(dim, dtype=) accumulates in that dtype (int8 wraps)."""
    values = np.array([100, 100, 100, -5], np.int8)
    for make, lib in ((lambda a: Tensor(a, device=device), tj), (torch.tensor, torch)):
        floats = make(np.array([1.0, 2.0, 3.0], np.float32))
        assert floats.cumsum_(0, dtype=None) is floats and floats.tolist() == [1.0, 3.0, 6.0]
        ints = make(values.copy())
        ints.cumsum_(dim=0, dtype=ints.dtype)
        assert ints.tolist() == [100, -56, 44, 39]
        for call in (lambda: ints.cumsum_(0, dtype=lib.int64), lambda: floats.cumprod_(0, dtype=lib.float64)):
            with pytest.raises(RuntimeError, match="Bad in-place call"):
                call()
    check(Tensor(values, device=device).cumsum(0, dtype=tj.int8), torch.tensor(values).cumsum(0, dtype=torch.int8))
    check(Tensor(values, device=device).cumsum(0, dtype="float64"),
          torch.tensor(values).cumsum(0, dtype=torch.float64))


def test_parameter_dict_or_operators_like_torch():
    """ParameterDict | mapping (a new ParameterDict holding the same parameters, a dict added in sorted key
    order), dict | ParameterDict (a dict), |= (in place); TypeError for a non-mapping, as torch."""
    from tinyjit import nn
    for lib, make in ((nn, lambda v: Tensor([v])), (torch.nn, lambda v: torch.tensor([v]))):
        params = lib.ParameterDict({"b": make(1.0), "a": make(2.0)})
        merged = params | {"r": make(3.0), "c": make(4.0)}
        assert type(merged) is lib.ParameterDict and list(merged.keys()) == ["a", "b", "c", "r"]
        assert merged["b"] is params["b"] and merged["r"].requires_grad and list(params.keys()) == ["a", "b"]
        reflected = {"z": make(5.0)} | params
        assert type(reflected) is dict and list(reflected) == ["z", "a", "b"]
        same = params
        params |= {"q": make(6.0)}
        assert params is same and list(params.keys()) == ["a", "b", "q"]
        with pytest.raises(TypeError):
            params | 3


def test_norm_layers_bias_keyword_and_repr_like_torch():
    """torch 2.13's norm layers take `bias` (keyword; no bias parameter when False) and print it: BatchNorm,
    InstanceNorm, LayerNorm and GroupNorm reprs equal torch's, and so do their parameter names and outputs."""
    from tinyjit import nn
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 2, 2)).astype(np.float32)
    cases = [("BatchNorm1d", (4,), x[:, :, 0, 0, :]), ("BatchNorm2d", (4,), x[:, :, 0]), ("BatchNorm3d", (4,), x),
             ("InstanceNorm1d", (4,), x[:, :, 0, 0, :]), ("InstanceNorm2d", (4,), x[:, :, 0]),
             ("InstanceNorm3d", (4,), x), ("LayerNorm", (2,), x), ("GroupNorm", (2, 4), x)]
    for name, args, inp in cases:
        affine = "elementwise_affine" if name == "LayerNorm" else "affine"
        for kwargs in ({}, {affine: True}, {affine: False}, {"bias": False}, {affine: True, "bias": False},
                       {"eps": 1e-3}):
            ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
            assert repr(ours) == repr(theirs)
            assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
            ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
            check(ours(Tensor(inp)), theirs(torch.tensor(inp)), atol=1e-5)


def test_add_sub_alpha_and_the_division_functions_like_torch():
    """torch.add/sub's alpha (x + alpha * y; a float alpha with int operands is a RuntimeError, as in torch), and
    torch.add, sub, mul, div, floor_divide and true_divide as namespace functions and methods (they raised
    TypeError / AttributeError before)."""
    a = np.array([[1.5, -2.0, 7.0], [-7.0, 0.5, 3.0]], np.float32)
    b = np.array([2.0, -3.0, 0.25], np.float32)
    ints, int_divisors = np.array([7, -7, 6, -1], np.int64), np.array([2, 2, -4, 3], np.int64)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    oa, ob = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    got = tj.add(oa, ob, alpha=2) * tj.sub(oa, ob, alpha=-0.5) + oa.add(1.5, alpha=3)
    want = torch.add(ta, tb, alpha=2) * torch.sub(ta, tb, alpha=-0.5) + ta.add(1.5, alpha=3)
    check(got, want)
    got.sum().backward()
    want.sum().backward()
    check(oa.grad, ta.grad)
    check(ob.grad, tb.grad)
    for name in ("mul", "div", "floor_divide", "true_divide"):
        check(getattr(tj, name)(Tensor(a), Tensor(b)), getattr(torch, name)(torch.tensor(a), torch.tensor(b)))
        check(getattr(Tensor(ints), name)(Tensor(int_divisors)),
              getattr(torch.tensor(ints), name)(torch.tensor(int_divisors)))
    check(Tensor(ints).add(Tensor(ints), alpha=3), torch.tensor(ints).add(torch.tensor(ints), alpha=3))
    with pytest.raises(RuntimeError, match="alpha"):
        Tensor(ints).sub(Tensor(ints), alpha=0.5)
