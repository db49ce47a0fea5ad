"""Differential tests of the forward Tensor API against PyTorch (CPU).

Every op runs on inputs of several layouts: contiguous, and views that are permuted, sliced with steps (positive
and negative), flipped and padded, so the kernels read through non-trivial ShapeTrackers. Shapes include 0-d,
size-1, size-0 and broadcast dimensions. Results must match torch in value (tolerance by dtype), shape and dtype.

Kept under ~40 s on one core: each distinct graph compiles kernels, so cases are chosen to cover the rules
(every op, every layout, every dtype kind) rather than the full product.
"""
from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyjit import Device, Tensor, dtypes

# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------

# torch warns about var/std with too few elements (the NaN result is compared) and about .T on non-2-d tensors
pytestmark = [pytest.mark.filterwarnings("ignore:var\\(\\)|std\\(\\):UserWarning",
                                         "ignore:The use of `x.T`:UserWarning"),
              pytest.mark.usefixtures("device")]   # every test runs on each selected device (test/conftest.py)

LAYOUTS = ("contig", "permuted", "strided", "flipped", "padded")
TOL = {"float16": (2e-3, 2e-2), "float32": (1e-5, 2e-5), "float64": (1e-12, 1e-10)}   # (atol, rtol)


def gen(shape, dtype: str, domain: str, rng: np.random.Generator) -> np.ndarray:
    """Random values of `dtype` from a domain: any, pos (> 0), nonzero, unit (|x| < 1)."""
    shape = tuple(shape)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    npdt = np.dtype(dtype)
    if npdt.kind == "f":
        if domain == "pos":
            v = rng.uniform(0.1, 3.0, shape)
        elif domain == "nonzero":
            v = rng.uniform(0.5, 3.0, shape) * rng.choice([-1, 1], shape)
        elif domain == "unit":
            v = rng.uniform(-0.95, 0.95, shape)
        else:
            v = rng.standard_normal(shape) * 2
        return np.asarray(v).astype(npdt)
    lo = 0 if npdt.kind == "u" or domain == "pos" else -10
    v = rng.integers(lo, 11, shape)
    if domain in ("pos", "nonzero"):
        v = np.where(v == 0, 1, v)
    return np.asarray(v).astype(npdt)


def _fill(dtype: str, domain: str):
    """A value inside `domain`, used as the padding value of padded layouts."""
    if dtype == "bool":
        return True
    if np.dtype(dtype).kind == "f":
        return 0.0 if domain in ("any", "unit") else 0.5
    return 0 if domain == "any" else 1


def make(shape, dtype: str = "float32", layout: str = "contig", domain: str = "any", seed: int = 0):
    """(tinyjit Tensor, numpy array) holding the same values; the Tensor is a view of `layout`."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    n = len(shape)
    if layout == "contig" or n == 0:
        arr = gen(shape, dtype, domain, rng)
        return Tensor(arr), arr
    if layout == "permuted":
        order = tuple(reversed(range(n))) if n > 1 else (0,)
        base = gen(tuple(shape[i] for i in order), dtype, domain, rng)
        return Tensor(base).permute(order), base.transpose(order)
    if layout == "strided":
        # step 2 forward on even axes, step -2 backward on odd axes
        base = gen(tuple(2 * s for s in shape), dtype, domain, rng)
        idx = tuple(slice(1, None, 2) if i % 2 == 0 else slice(None, None, -2) for i in range(n))
        return Tensor(base)[idx], base[idx]
    if layout == "flipped":
        base = gen(shape, dtype, domain, rng)
        return Tensor(base).flip(tuple(range(n))), base[(slice(None, None, -1),) * n]
    if layout == "padded":
        pads = tuple((1, 0) if s > 0 and i % 2 == 0 else (0, 1) if s > 0 else (0, 0) for i, s in enumerate(shape))
        inner = gen(tuple(s - sum(p) for s, p in zip(shape, pads)), dtype, domain, rng)
        fill = _fill(dtype, domain)
        return Tensor(inner).pad(pads, value=fill), np.pad(inner, pads, constant_values=fill)
    raise ValueError(layout)


def cycle(cases, options, per_case: int = 1, offset: int = 0) -> list:
    """Pair each case with `per_case` of `options`, cycling through them: every option is covered without the
    full product (each distinct graph costs an LLVM compile)."""
    out, i = [], offset
    for case in cases:
        for _ in range(per_case):
            option = options[i % len(options)]
            out.append((*case, option) if isinstance(case, tuple) else (case, option))
            i += 1
    return out


def ids(cases) -> list[str]:
    """Readable test ids: the strings and shapes of each case, lambdas left out."""
    return ["-".join(str(v) for v in (c if isinstance(c, tuple) else (c,)) if not callable(v) and v is not None)
            for c in cases]


def tt(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr))   # a contiguous copy (np.ascontiguousarray would make 0-d 1-d)


def torch_dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def check(out, ref, atol=None, rtol=None, check_dtype=True):
    """out: tinyjit Tensor; ref: torch tensor (or numpy / Python value). Same shape, dtype and values."""
    got = out.numpy()
    if isinstance(ref, torch.Tensor):
        if check_dtype:
            assert out.dtype.name == torch_dtype_name(ref), f"dtype {out.dtype.name} != torch {ref.dtype}"
        ref = ref.detach().numpy()
    ref = np.asarray(ref)
    assert got.shape == ref.shape, f"shape {got.shape} != {ref.shape}"
    if got.dtype.kind in "biu" and ref.dtype.kind in "biu":
        np.testing.assert_array_equal(got, ref)
        return
    d_atol, d_rtol = TOL.get(out.dtype.name, TOL["float32"])
    np.testing.assert_allclose(got.astype(np.float64), ref.astype(np.float64), atol=d_atol if atol is None else atol,
                               rtol=d_rtol if rtol is None else rtol, equal_nan=True)


# ---------------------------------------------------------------------------------------------------------------
# constructors and outputs
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [[1, 2, 3], [[1.5, 2.0], [3.0, -4.0]], (1, 2), [True, False], 3, 2.5, True,
                                  [[1, 2], [3, 4]], []])
def test_tensor_from_python(data):
    t = Tensor(data)
    ref = np.array(data)
    np.testing.assert_array_equal(t.numpy(), ref.astype(t.dtype.np))
    assert t.shape == ref.shape
    # Python floats become float32; Python ints int64 (as in torch); bools bool
    expected = {"f": "float32", "i": "int64", "b": "bool"}[ref.dtype.kind] if ref.size else "float32"
    assert t.dtype.name == expected


@pytest.mark.parametrize("npdt", ["bool", "int8", "int16", "int32", "int64", "uint8", "uint32", "float16", "float32",
                                  "float64"])
def test_tensor_from_numpy_keeps_dtype(npdt):
    arr = gen((3, 4), npdt, "any", np.random.default_rng(1))
    t = Tensor(arr)
    assert t.dtype.name == npdt
    np.testing.assert_array_equal(t.numpy(), arr)
    # a non-contiguous numpy array is copied in its logical order
    np.testing.assert_array_equal(Tensor(arr.T).numpy(), arr.T)
    np.testing.assert_array_equal(Tensor(arr[::-1, ::2]).numpy(), arr[::-1, ::2])


@pytest.mark.parametrize("dtype", ["int8", "uint8", "float16", "float64", "bool", dtypes.int64, torch.float32])
def test_tensor_dtype_argument(dtype):
    name = str(dtype).replace("torch.", "").replace("dtypes.", "")
    t = Tensor([[0, 1.0], [2.0, 3.0]], dtype=dtype)
    assert t.dtype.name == name
    np.testing.assert_array_equal(t.numpy(), np.array([[0, 1.0], [2.0, 3.0]]).astype(name))
    assert Tensor(2, dtype=dtype).dtype.name == name
    assert Tensor(np.arange(3), dtype=dtype).dtype.name == name


def test_creation_functions():
    check(Tensor.zeros(2, 3), torch.zeros(2, 3))
    check(Tensor.zeros((2, 3), dtype="int32"), torch.zeros(2, 3, dtype=torch.int32))
    check(Tensor.ones(4), torch.ones(4))
    check(Tensor.ones(2, 0), torch.ones(2, 0))
    check(Tensor.ones((), dtype=dtypes.bool), torch.ones((), dtype=torch.bool))
    check(Tensor.full((2, 2), 7), torch.full((2, 2), 7))
    check(Tensor.full((2, 2), 1.5), torch.full((2, 2), 1.5))
    check(Tensor.full((3,), True), torch.full((3,), True))
    check(Tensor.full((2,), 3, dtype="float16"), torch.full((2,), 3, dtype=torch.float16))
    e = Tensor.empty(3, 2, dtype="int16")
    assert e.shape == (3, 2) and e.dtype == dtypes.int16 and e.numpy().shape == (3, 2)


@pytest.mark.parametrize("args,kwargs", [((5,), {}), ((2, 9), {}), ((2, 9, 3), {}), ((10, 0, -3), {}),
                                         ((0.5, 3.0, 0.5), {}), ((5,), {"dtype": "float32"}), ((4, 1, -1), {}),
                                         ((-3, 3), {"dtype": "int64"}), ((0,), {})])
def test_arange(args, kwargs):
    ref = torch.arange(*args, dtype=getattr(torch, kwargs["dtype"]) if "dtype" in kwargs else None)
    out = Tensor.arange(*args, **kwargs)
    check(out, ref)


@pytest.mark.parametrize("start,stop,steps", [(0, 1, 5), (-2, 3, 1), (1, 1, 3), (0, 10, 0), (3, -3, 7)])
def test_linspace(start, stop, steps):
    check(Tensor.linspace(start, stop, steps), torch.linspace(start, stop, steps))


@pytest.mark.parametrize("n,m", [(3, None), (1, None), (2, 4), (4, 2), (0, 3), (3, 0)])
def test_eye(n, m):
    ref = torch.eye(n) if m is None else torch.eye(n, m)
    check(Tensor.eye(n, m), ref)
    check(Tensor.eye(n, m, dtype="int32"), ref.int())


def test_like_constructors():
    x, _ = make((2, 3), "int16", "permuted")
    for out, fill in ((x.zeros_like(), 0), (x.ones_like(), 1), (x.full_like(5), 5)):
        assert out.shape == (2, 3) and out.dtype == dtypes.int16
        np.testing.assert_array_equal(out.numpy(), np.full((2, 3), fill, np.int16))
    assert x.full_like(2.5, dtype="float32").numpy().tolist() == [[2.5] * 3] * 2
    assert x.empty_like().shape == (2, 3) and x.empty_like().dtype == dtypes.int16
    f = Tensor.ones(3, 2, dtype="float16")
    assert f.rand_like().dtype == dtypes.float16 and f.randn_like().shape == (3, 2)


@pytest.mark.parametrize("fn", [lambda: Tensor.rand(200, 3), lambda: Tensor.randn(50, 4),
                                lambda: Tensor.randint(-3, 9, size=(100,)), lambda: Tensor.uniform(64, low=-2, high=5),
                                lambda: Tensor.normal(64, mean=3, std=0.5)])
def test_random_is_seedable(fn):
    Tensor.manual_seed(1234)
    a = fn().numpy()
    Tensor.manual_seed(1234)
    b = fn().numpy()
    c = fn().numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)


def test_random_distributions():
    Tensor.manual_seed(0)
    r = Tensor.rand(4000).numpy()
    assert r.dtype == np.float32 and 0 <= r.min() and r.max() < 1 and abs(r.mean() - 0.5) < 0.03
    n = Tensor.randn(4000, dtype="float64").numpy()
    assert n.dtype == np.float64 and abs(n.mean()) < 0.1 and abs(n.std() - 1) < 0.1
    i = Tensor.randint(-3, 9, size=(2000,))
    assert i.dtype == dtypes.int64 and i.shape == (2000,)
    iv = i.numpy()
    assert iv.min() == -3 and iv.max() == 8
    assert Tensor.randint(5, size=(3, 2), dtype="int64").dtype == dtypes.int64
    u = Tensor.uniform(3000, low=-2, high=5).numpy()
    assert -2 <= u.min() and u.max() < 5 and abs(u.mean() - 1.5) < 0.2
    g = Tensor.normal(3000, mean=3, std=0.5).numpy()
    assert abs(g.mean() - 3) < 0.05 and abs(g.std() - 0.5) < 0.05


def test_outputs():
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = Tensor(arr)
    assert t.shape == (2, 3) and t.ndim == 2 and t.numel() == 6 and len(t) == 2
    assert t.dtype == dtypes.float32 and t.device == Device.DEFAULT
    assert t.tolist() == arr.tolist()
    assert (t + 1).realize() is not None
    assert Tensor(3.5).item() == 3.5 and isinstance(Tensor(3.5).item(), float)
    assert Tensor([[7]]).item() == 7 and isinstance(Tensor([[7]]).item(), int)
    assert Tensor(True).item() is True
    assert Tensor(2.0).tolist() == 2.0
    assert Tensor.zeros(0, 3).numel() == 0 and Tensor.zeros(0, 3).tolist() == []
    np.testing.assert_array_equal(np.asarray(t + 1), arr + 1)


# ---------------------------------------------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------------------------------------------

# (name, tinyjit/torch call, domain, extra tolerance (atol, rtol) for float32)
UNARY = [
    ("neg", lambda x: -x, "any", None),
    ("abs", lambda x: x.abs(), "any", None),
    ("sign", lambda x: x.sign(), "any", None),
    ("exp", lambda x: x.exp(), "any", None),
    ("exp2", lambda x: x.exp2(), "any", None),
    ("log", lambda x: x.log(), "pos", None),
    ("log2", lambda x: x.log2(), "pos", None),
    ("sqrt", lambda x: x.sqrt(), "pos", None),
    ("rsqrt", lambda x: x.rsqrt(), "pos", None),
    ("sin", lambda x: x.sin(), "any", (1e-5, 1e-4)),
    ("cos", lambda x: x.cos(), "any", (1e-5, 1e-4)),
    ("tan", lambda x: x.tan(), "unit", (1e-5, 1e-4)),
    ("tanh", lambda x: x.tanh(), "any", (1e-6, 1e-5)),
    ("sigmoid", lambda x: x.sigmoid(), "any", None),
    ("relu", lambda x: x.relu(), "any", None),
    ("leaky_relu", lambda x: x.leaky_relu(0.1) if isinstance(x, Tensor) else F.leaky_relu(x, 0.1), "any", None),
    ("elu", lambda x: x.elu() if isinstance(x, Tensor) else F.elu(x), "any", None),
    ("gelu", lambda x: x.gelu() if isinstance(x, Tensor) else F.gelu(x), "any", (1e-6, 1e-5)),
    ("gelu_tanh", lambda x: x.gelu("tanh") if isinstance(x, Tensor) else F.gelu(x, approximate="tanh"), "any",
     (1e-6, 1e-5)),
    ("silu", lambda x: x.silu() if isinstance(x, Tensor) else F.silu(x), "any", None),
    ("softplus", lambda x: x.softplus() if isinstance(x, Tensor) else F.softplus(x), "any", None),
    ("mish", lambda x: x.mish() if isinstance(x, Tensor) else F.mish(x), "any", (1e-6, 1e-5)),
    ("hardswish", lambda x: x.hardswish() if isinstance(x, Tensor) else F.hardswish(x), "any", None),
    ("erf", lambda x: x.erf(), "any", (1e-6, 1e-5)),
    ("floor", lambda x: x.floor(), "any", None),
    ("ceil", lambda x: x.ceil(), "any", None),
    ("round", lambda x: x.round(), "any", None),
    ("reciprocal", lambda x: x.reciprocal(), "nonzero", None),
    ("square", lambda x: x.square(), "any", None),
]


# every op on a zero-padded view (the pad must not be pushed through ops with f(0) != 0) and on one other layout
_OTHER_LAYOUTS = [("strided", (2, 3, 2)), ("permuted", (3, 5)), ("flipped", (2, 0, 3)), ("contig", ())]
UNARY_CASES = [u + layout for i, u in enumerate(UNARY)
               for layout in (("padded", (4, 3)), _OTHER_LAYOUTS[i % len(_OTHER_LAYOUTS)])]


@pytest.mark.parametrize("name,fn,domain,tol,layout,shape", UNARY_CASES, ids=ids(UNARY_CASES))
def test_unary_float32(name, fn, domain, tol, layout, shape):
    x, arr = make(shape, "float32", layout, domain, seed=len(name))
    atol, rtol = tol or (None, None)
    check(fn(x), fn(tt(arr)), atol=atol, rtol=rtol)


UNARY_OTHER = cycle([u for u in UNARY if u[0] in ("abs", "exp", "log", "sqrt", "sin", "tanh", "sigmoid", "relu",
                                                 "gelu", "erf", "floor", "round", "reciprocal")],
                    ["float16", "float64"], per_case=1)


@pytest.mark.parametrize("name,fn,domain,tol,dtype", UNARY_OTHER, ids=ids(UNARY_OTHER))
def test_unary_other_floats(name, fn, domain, tol, dtype):
    x, arr = make((3, 4), dtype, "flipped", domain, seed=3)
    check(fn(x), fn(tt(arr)))


@pytest.mark.parametrize("name,dtype", cycle(["neg", "abs", "sign", "relu", "square", "floor", "ceil", "round"],
                                              ["int32", "int8", "int64", "uint8", "int16"], per_case=2))
def test_unary_int(name, dtype):
    fn = dict((u[0], u[1]) for u in UNARY)[name]
    x, arr = make((3, 4), dtype, "permuted", seed=5)
    check(fn(x), fn(tt(arr)))


def test_neg_unsigned_wraps():
    x = Tensor(np.array([0, 1, 200], np.uint8))
    np.testing.assert_array_equal((-x).numpy(), -np.array([0, 1, 200], np.uint8))


@pytest.mark.parametrize("name,dtype", cycle(["exp", "sqrt", "sigmoid", "sin", "log", "tanh"],
                                              ["int32", "bool", "uint8"]))
def test_unary_float_math_on_int_promotes(name, dtype):
    fn = dict((u[0], u[1]) for u in UNARY)[name]
    x, arr = make((5,), dtype, "contig", "pos" if dtype != "bool" else "any", seed=2)
    check(fn(x), fn(tt(arr)), atol=1e-5, rtol=1e-4)


def test_unary_special_values():
    vals = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e30, 0.5, -0.5, 1.5, 2.5, -2.5], np.float32)
    x, r = Tensor(vals), tt(vals)
    for name in ("neg", "abs", "sign", "exp", "exp2", "sqrt", "relu", "sigmoid", "tanh", "floor", "ceil", "round",
                 "square", "reciprocal", "erf", "softplus", "silu"):   # torch's gelu(inf) is nan: not compared
        fn = dict((u[0], u[1]) for u in UNARY)[name]
        with np.errstate(all="ignore"):
            check(fn(x), fn(r), atol=1e-6, rtol=1e-5)
    pos = np.array([0.0, np.inf, 1e-30, 3.0, np.nan], np.float32)
    for name in ("log", "log2", "rsqrt"):
        fn = dict((u[0], u[1]) for u in UNARY)[name]
        check(fn(Tensor(pos)), fn(tt(pos)))
    big = np.array([1e4, -1e4, 88.0, -88.0, 100.0, -100.0], np.float32)
    for name in ("exp", "sigmoid", "tanh", "softplus", "erf", "gelu", "silu", "mish", "elu"):
        fn = dict((u[0], u[1]) for u in UNARY)[name]
        check(fn(Tensor(big)), fn(tt(big)), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-6), ("float64", 1e-13)])
def test_relative_accuracy_near_zero_and_in_tails(dtype, rtol):
    """Values that cancel in the naive formulas (tanh = 2 sigmoid(2x) - 1, erf = 1 - erfc, e^x - 1, log(1 + x),
    log(1 + e^-20)) keep their relative precision, like torch: compared with torch in float64."""
    x = np.array([1e-8, -3e-6, 1e-3, 0.2, -0.3, 0.6, 3.0, -20.0, 15.0, -0.0], dtype)
    ref_in = torch.from_numpy(x.astype(np.float64))
    cases = {"tanh": torch.tanh, "expm1": torch.expm1, "log1p": torch.log1p, "softplus": F.softplus,
             "mish": F.mish, "elu": F.elu, "sigmoid": torch.sigmoid, "silu": F.silu}
    cases["erf"] = torch.erf
    for name, ref_fn in cases.items():
        arg = x if name != "log1p" else np.abs(x)
        got = getattr(Tensor(arg), name)().numpy()
        ref = ref_fn(torch.from_numpy(arg.astype(np.float64))).numpy()
        np.testing.assert_allclose(got, ref.astype(dtype), rtol=rtol, atol=0, err_msg=name)
    assert ref_in.dtype == torch.float64


BINARY = [
    ("add", lambda a, b: a + b, "any"),
    ("sub", lambda a, b: a - b, "any"),
    ("mul", lambda a, b: a * b, "any"),
    ("truediv", lambda a, b: a / b, "nonzero"),
    ("floordiv", lambda a, b: a // b, "nonzero"),
    ("mod", lambda a, b: a % b, "nonzero"),
    ("lt", lambda a, b: a < b, "any"),
    ("gt", lambda a, b: a > b, "any"),
    ("le", lambda a, b: a <= b, "any"),
    ("ge", lambda a, b: a >= b, "any"),
    ("eq", lambda a, b: a == b, "any"),
    ("ne", lambda a, b: a != b, "any"),
    ("maximum", lambda a, b: a.maximum(b), "any"),
    ("minimum", lambda a, b: a.minimum(b), "any"),
]
BINARY_FN = {b[0]: b[1] for b in BINARY}
BROADCAST_SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((), (2, 3)), ((2, 1, 3), (4, 1)),
                    ((0, 3), (1, 3)), ((1,), ())]


BINARY_BROADCAST = cycle(BINARY, BROADCAST_SHAPES, per_case=2)


@pytest.mark.parametrize("name,fn,domain,shapes", BINARY_BROADCAST, ids=ids(BINARY_BROADCAST))
def test_binary_broadcast_float(name, fn, domain, shapes):
    a, an = make(shapes[0], "float32", "contig", "any", seed=1)
    b, bn = make(shapes[1], "float32", "contig", domain, seed=2)
    check(fn(a, b), fn(tt(an), tt(bn)))


BINARY_LAYOUTS = cycle(BINARY, [("permuted", "strided"), ("flipped", "padded"), ("padded", "permuted"),
                                ("strided", "contig")])


@pytest.mark.parametrize("name,fn,domain,layouts", BINARY_LAYOUTS, ids=ids(BINARY_LAYOUTS))
def test_binary_layouts_float(name, fn, domain, layouts):
    a, an = make((4, 3, 2), "float32", layouts[0], "any", seed=3)
    b, bn = make((3, 2), "float32", layouts[1], domain, seed=4)
    check(fn(a, b), fn(tt(an), tt(bn)))


BINARY_INT = cycle(BINARY, ["int32", "int8", "int64", "uint8", "int16"], per_case=2)


@pytest.mark.parametrize("name,fn,domain,dtype", BINARY_INT, ids=ids(BINARY_INT))
def test_binary_int(name, fn, domain, dtype):
    a, an = make((4, 5), dtype, "strided", "any", seed=5)
    b, bn = make((5,), dtype, "flipped", domain, seed=6)
    check(fn(a, b), fn(tt(an), tt(bn)))


@pytest.mark.parametrize("name,dtype", cycle(["add", "mul", "truediv", "lt", "eq", "maximum", "minimum", "floordiv",
                                               "mod", "sub"], ["float16", "float64"]))
def test_binary_other_floats(name, dtype):
    fn = BINARY_FN[name]
    a, an = make((3, 4), dtype, "padded", "any", seed=7)
    b, bn = make((3, 4), dtype, "permuted", "nonzero", seed=8)
    check(fn(a, b), fn(tt(an), tt(bn)))


SCALAR_CASES = cycle(["add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "lt", "gt", "le", "ge", "eq", "ne",
                      "maximum", "minimum"],
                     [(2, "float32"), (-3, "int32"), (2.5, "uint8"), (True, "float32"), (2.5, "int32"), (2, "uint8"),
                      (-3, "float32"), (True, "int32"), (2.5, "float32"), (-3, "uint8"), (2, "int32"), (True, "uint8")],
                     per_case=2)
SCALAR_CASES = [(name, scalar, dtype) for name, (scalar, dtype) in SCALAR_CASES]


@pytest.mark.parametrize("name,scalar,dtype", SCALAR_CASES, ids=[f"{n}-{type(s).__name__}{s}-{d}"
                                                                 for n, s, d in SCALAR_CASES])
def test_scalar_operands_both_sides(name, scalar, dtype):
    x, arr = make((2, 3), dtype, "permuted", "pos", seed=9)
    t = tt(arr)
    if name == "pow":
        fwd, rev = (lambda a, s: a ** s), (lambda a, s: s ** a)
    elif name in ("maximum", "minimum"):
        fwd = rev = (lambda a, s: getattr(a, name)(s if isinstance(a, Tensor) else torch.tensor(s)))
    else:
        fn = BINARY_FN[name]
        fwd, rev = (lambda a, s: fn(a, s)), (lambda a, s: fn(s, a))
    if name == "sub" and isinstance(scalar, bool):
        # torch refuses to subtract bools; here a bool scalar is 0/1 in the tensor's dtype
        check(fwd(x, scalar), fwd(t, int(scalar)), rtol=1e-4)
        check(rev(x, scalar), rev(t, int(scalar)), rtol=1e-4)
        return
    if name in ("maximum", "minimum"):
        # torch.maximum needs a tensor: compare values only (the promotion is tested in test_dtypes)
        check(fwd(x, scalar), fwd(t, scalar), check_dtype=False)
        return
    if name in ("lt", "le", "gt", "ge", "eq", "ne") and dtype == "uint8" and isinstance(scalar, int) and scalar < 0:
        # compared by value, not wrapped into uint8 as torch does (README): t as int64 gives the values
        check(fwd(x, scalar), fwd(t.long(), scalar))
        check(rev(x, scalar), rev(t.long(), scalar))
        return
    if name == "pow" and dtype != "float32" and isinstance(scalar, int) and scalar < 0:
        with pytest.raises(RuntimeError, match="negative integer powers"):   # like torch
            fwd(t, scalar)
        with pytest.raises(RuntimeError, match="negative integer powers"):
            fwd(x, scalar)
        return
    check(fwd(x, scalar), fwd(t, scalar), rtol=1e-4)
    if name in ("floordiv", "mod", "truediv") or (name == "pow" and dtype != "float32"):
        return   # the reversed form divides by (or raises to) an int tensor: below with nonzero values
    check(rev(x, scalar), rev(t, scalar), rtol=1e-4)


@pytest.mark.parametrize("scalar,dtype", cycle([7, -7, 2.5, -0.5], ["float32", "int32", "int64"], per_case=2))
def test_scalar_divided_by_tensor(scalar, dtype):
    x, arr = make((2, 5), dtype, "flipped", "nonzero", seed=10)
    t = tt(arr)
    check(scalar / x, scalar / t, rtol=1e-5)
    check(scalar // x, scalar // t)
    check(scalar % x, scalar % t, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_pow(dtype):
    a, an = make((3, 4), dtype, "padded", "pos", seed=11)
    b, bn = make((4,), dtype, "strided", "any", seed=12)
    check(a ** b, tt(an) ** tt(bn), rtol=1e-4 if dtype != "float16" else None)
    neg, nn_ = make((3, 4), dtype, "contig", "any", seed=13)
    for e in ((2, 3, 0, -1, 0.5, -2.0, 1.5, 7) if dtype == "float32" else (3, 1.5)):
        with np.errstate(all="ignore"):
            check(neg ** e, tt(nn_) ** e, rtol=1e-4 if dtype != "float16" else None)
    ints = Tensor(np.array([-3.0, -2.0, 0.0, 2.0], dtype))
    check(ints ** Tensor(np.array([3.0, 2.0, 0.0, -1.0], dtype)), tt(np.array([-3.0, -2.0, 0.0, 2.0], dtype)) **
          tt(np.array([3.0, 2.0, 0.0, -1.0], dtype)))
    check(2.0 ** b, 2.0 ** tt(bn), rtol=1e-4 if dtype != "float16" else None)


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8"])
def test_pow_int(dtype):
    a = np.array([[0, 1, 2, 3], [5, 7, 2, 1]], dtype)
    b = np.array([3, 2, 0, 5], dtype)
    check(Tensor(a) ** Tensor(b), tt(a) ** tt(b))
    check(Tensor(a) ** 3, tt(a) ** 3)
    check(2 ** Tensor(b), 2 ** tt(b))
    check(Tensor(a) ** 7, tt(a) ** 7)


@pytest.mark.parametrize("dtype", ["int32", "int8", "uint8", "int64"])
def test_integer_division_signs(dtype):
    vals = [-7, -6, -1, 0, 1, 5, 7, 9] if dtype[0] == "i" else [0, 1, 5, 7, 9, 200, 255, 13]
    divs = [3, -3, 2, -2, 1, -1, 4, 7] if dtype[0] == "i" else [3, 7, 2, 9, 1, 4, 8, 13]
    a, b = np.array(vals, dtype), np.array(divs, dtype)
    check(Tensor(a) // Tensor(b), tt(a) // tt(b))
    check(Tensor(a) % Tensor(b), tt(a) % tt(b))
    check(Tensor(a) / Tensor(b), tt(a) / tt(b))
    check(Tensor(a).div(Tensor(b), rounding_mode="trunc"), torch.div(tt(a), tt(b), rounding_mode="trunc"))
    check(Tensor(a).div(Tensor(b), rounding_mode="floor"), torch.div(tt(a), tt(b), rounding_mode="floor"))


@pytest.mark.parametrize("dtype", ["int32", "int8", "uint8", "int64"])
def test_integer_division_never_traps(dtype):
    """x // zeros and x % zeros give 0 (NumPy; torch raises) and INT_MIN // -1 wraps (NumPy): hardware division
    would kill the process with SIGFPE. (The int 0 itself raises RuntimeError, like torch: a constant tensor of
    zeros takes the same folded path.)"""
    info = np.iinfo(dtype)
    a = np.array([info.min, 7, info.max, 0, 5], dtype)
    b = np.array([0 if dtype[0] == "u" else -1, 0, 0, 0, 2], dtype)
    with np.errstate(all="ignore"):
        check(Tensor(a) // Tensor(b), a // b)
        check(Tensor(a) % Tensor(b), a % b)
        check(Tensor(a) // Tensor(a).full_like(0), a // np.zeros_like(a))
    if dtype[0] == "i":
        check(Tensor(a) // -1, -a)
        with np.errstate(all="ignore"):
            trunc = np.where(b == -1, -a, np.trunc(a / np.where(b == 0, 1, b)).astype(dtype))
        check(Tensor(a).div(Tensor(b), rounding_mode="trunc"), np.where(b == 0, 0, trunc).astype(dtype))


def test_float_division_modes():
    a = np.array([-7.5, -6.0, -1.0, 0.0, 1.0, 5.5, 7.0, 9.0], np.float32)
    b = np.array([2.0, -4.0, 0.3, -1.0, 3.0, -2.5, 2.0, 0.7], np.float32)
    check(Tensor(a) // Tensor(b), tt(a) // tt(b))
    check(Tensor(a) % Tensor(b), tt(a) % tt(b), atol=1e-5)
    check(Tensor(a).div(Tensor(b), rounding_mode="trunc"), torch.div(tt(a), tt(b), rounding_mode="trunc"))


@pytest.mark.parametrize("op,dtype", cycle(["and", "or", "xor"], ["bool", "int32", "uint8", "int64", "int8"],
                                           per_case=2))
def test_bitwise(op, dtype):
    fn = {"and": lambda a, b: a & b, "or": lambda a, b: a | b, "xor": lambda a, b: a ^ b}[op]
    a, an = make((3, 4), dtype, "permuted", seed=14)
    b, bn = make((4,), dtype, "strided", seed=15)
    check(fn(a, b), fn(tt(an), tt(bn)))
    s = True if dtype == "bool" else 6
    check(fn(a, s), fn(tt(an), s))
    check(fn(s, a), fn(s, tt(an)))


@pytest.mark.parametrize("dtype", ["bool", "int32", "uint8", "int64", "int8", "int16"])
def test_invert(dtype):
    x, arr = make((3, 4), dtype, "flipped", seed=16)
    check(~x, ~tt(arr))


def test_bool_arithmetic():
    a = np.array([True, False, True, False])
    b = np.array([True, True, False, False])
    check(Tensor(a) + Tensor(b), tt(a) + tt(b))
    check(Tensor(a) * Tensor(b), tt(a) * tt(b))
    check(Tensor(a) + 1, tt(a) + 1)   # a Python int with a bool tensor: int64, as in torch
    check(Tensor(a) * 2.5, tt(a) * 2.5)
    check(Tensor(a).maximum(Tensor(b)), torch.maximum(tt(a), tt(b)))
    check(Tensor(a).minimum(Tensor(b)), torch.minimum(tt(a), tt(b)))
    check(Tensor(a) < Tensor(b), tt(a) < tt(b))


@pytest.mark.parametrize("dtypes_", [("float32", "float32"), ("int32", "float32"), ("int8", "int64"),
                                     ("bool", "float16"), ("uint8", "int8")], ids=str)
def test_where(dtypes_):
    c, cn = make((3, 1, 4), "bool", "strided", seed=17)
    a, an = make((2, 4), dtypes_[0], "padded", seed=18)
    b, bn = make((4,), dtypes_[1], "flipped", seed=19)
    check(c.where(a, b), torch.where(tt(cn), tt(an), tt(bn)))
    ref = torch.where(tt(cn), tt(an), 2)
    check(Tensor.where(c, a, 2), ref)
    check(c.where(1.5, b), torch.where(tt(cn), 1.5, tt(bn)))
    check(c.where(3, -1), torch.where(tt(cn), 3, -1))     # two Python ints: int64
    check(c.where(2.0, 0.0), torch.where(tt(cn), 2.0, 0.0))
    # a non-bool condition is truthiness
    check(a.where(1, 0), torch.where(tt(an) != 0, 1, 0))


@pytest.mark.parametrize("dtype", ["float32", "int32", "uint8", "float16"])
def test_clip(dtype):
    x, arr = make((4, 5), dtype, "padded", seed=20)
    t = tt(arr)
    lo, hi = (2, 8) if dtype == "uint8" else (-2, 3)
    check(x.clip(lo, hi), t.clip(lo, hi))
    check(x.clip(lo), t.clip(lo))
    check(x.clip(None, hi), t.clip(None, hi))
    check(x.clamp(lo, hi), t.clamp(lo, hi))
    if dtype.startswith("float"):
        check(x.clip(-0.5, 0.75), t.clip(-0.5, 0.75))
        lo_t, hi_t = Tensor(np.full((5,), -1, dtype)), Tensor(np.full((4, 1), 1, dtype))
        check(x.clip(lo_t, hi_t), t.clip(tt(np.full((5,), -1, dtype)), tt(np.full((4, 1), 1, dtype))))


def test_maximum_minimum_nan():
    a = np.array([1.0, np.nan, 3.0, np.nan, -0.0], np.float32)
    b = np.array([np.nan, 2.0, 1.0, np.nan, 0.0], np.float32)
    check(Tensor(a).maximum(Tensor(b)), torch.maximum(tt(a), tt(b)))
    check(Tensor(a).minimum(Tensor(b)), torch.minimum(tt(a), tt(b)))
    check(Tensor(a).relu(), torch.relu(tt(a)))


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8"])
def test_minimum_at_int_limits(dtype):
    """minimum of signed ints must not negate: -(lowest) wraps onto itself, so min(lowest, 0) came back as 0."""
    info = np.iinfo(dtype)
    a = np.array([info.min, info.max, 5, info.min, 0], dtype)
    b = np.array([0, info.min, info.max, info.min, info.max], dtype)
    check(Tensor(a).minimum(Tensor(b)), torch.minimum(tt(a), tt(b)))
    check(Tensor(a).maximum(Tensor(b)), torch.maximum(tt(a), tt(b)))


def test_comparison_nan():
    a = np.array([1.0, np.nan, 3.0, np.nan], np.float32)
    b = np.array([np.nan, 2.0, 3.0, np.nan], np.float32)
    for fn in (lambda x, y: x < y, lambda x, y: x <= y, lambda x, y: x > y, lambda x, y: x >= y,
               lambda x, y: x == y, lambda x, y: x != y):
        check(fn(Tensor(a), Tensor(b)), fn(tt(a), tt(b)))


def test_cast_methods():
    x, arr = make((3, 4), "float32", "strided", seed=21)
    t = tt(arr)
    check(x.int(), t.int())
    check(x.float(), t.float())
    check(x.half(), t.half())
    check(x.double(), t.double())
    check(x.long(), t.long())
    check(x.bool(), t.bool())
    # float -> narrow int truncates toward zero, then wraps (NumPy's result, well defined here)
    check(x.cast(dtypes.uint8), arr.astype(np.int64).astype(np.uint8))
    check(x.cast("int8"), t.to(torch.int8))
    big = np.array([-300.7, 300.2, -2.5, 70000.9, -1e9], np.float32)
    for dt in ("int8", "uint8", "int16", "uint16", "uint32"):
        check(Tensor(big).cast(dt), big.astype(np.int64).astype(dt))


# ---------------------------------------------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------------------------------------------

REDUCE_SHAPES = [((3, 4, 5), None), ((3, 4, 5), 1), ((3, 4, 5), -1), ((3, 4, 5), (0, 2)), ((3, 4, 5), (-1, 0, 1)),
                 ((1, 6), 0), ((6, 1), (0, 1)), ((5,), 0), ((), None), ((2, 0, 3), 1)]


def _torch_reduce(t, name, axis, keepdim):
    """torch's spelling of our reductions (axis None, int or tuple)."""
    dims = tuple(range(t.ndim)) if axis is None else axis
    if name in ("sum", "mean", "logsumexp"):
        return getattr(t, name)(dim=dims, keepdim=keepdim) if name != "logsumexp" or t.ndim else t
    if name in ("max", "min"):
        return t.amax(dim=dims, keepdim=keepdim) if name == "max" else t.amin(dim=dims, keepdim=keepdim)
    if name in ("var", "std"):
        return getattr(t, name)(dim=dims, keepdim=keepdim)
    if name in ("any", "all"):
        return getattr(t, name)(dim=dims, keepdim=keepdim) if dims != () else t.bool()
    if name == "prod":
        if axis is None and not keepdim:
            return t.prod()
        out = t
        for d in sorted((dims,) if isinstance(dims, int) else dims, reverse=True):
            out = out.prod(dim=d, keepdim=True)
        return out if keepdim else out.squeeze(dims) if t.ndim else out
    raise ValueError(name)


# sum and max on every shape/axis kind, the others on a rotating half; keepdim and the layout alternate
REDUCE_CASES = [(name, shape, axis, i % 2 == 1, ("permuted", "strided", "padded", "flipped", "contig")[i % 5])
                for i, (name, (shape, axis)) in enumerate(
                    [(n, sa) for n in ("sum", "max") for sa in REDUCE_SHAPES] +
                    cycle(["mean", "min", "prod", "var", "std", "any", "all", "logsumexp"], REDUCE_SHAPES, per_case=4))]


@pytest.mark.parametrize("name,shape,axis,keepdim,layout", REDUCE_CASES, ids=ids(REDUCE_CASES))
def test_reduce_float(name, shape, axis, keepdim, layout):
    x, arr = make(shape, "float32", layout, "unit" if name == "prod" else "any", seed=22)
    name_here = {"max": "amax", "min": "amin"}.get(name, name)   # max(dim)/min(dim) return (values, indices)
    if 0 in shape and name in ("max", "min"):   # an error in torch too: IndexError over a dim, else RuntimeError
        with pytest.raises(RuntimeError if axis is None else IndexError, match=f"{name_here}\\(\\): cannot reduce"):
            getattr(x, name_here)(axis=axis, keepdim=keepdim)
        return
    with np.errstate(all="ignore"):
        ref = _torch_reduce(tt(arr), name, axis, keepdim)
    out = getattr(x, name_here)(axis=axis, keepdim=keepdim)
    check(out, ref, atol=1e-5, rtol=1e-4)


REDUCE_DTYPE_CASES = cycle([(n, d) for n in ("sum", "max", "min", "prod", "any", "all", "mean")
                           for d in ("int32", "int8", "uint8", "bool", "int64", "float16", "float64")],
                          [None, 1, 0, (0, 1)], offset=1)


@pytest.mark.parametrize("name,dtype,axis", REDUCE_DTYPE_CASES, ids=ids(REDUCE_DTYPE_CASES))
def test_reduce_dtypes(name, dtype, axis):
    x, arr = make((4, 6), dtype, "permuted", "pos" if name == "prod" else "any", seed=23)
    t = tt(arr) if name != "mean" or dtype.startswith("float") else tt(arr).float()   # torch.mean rejects ints
    ref = _torch_reduce(t, name, axis, False)
    if ref.dtype == torch.uint8 and name in ("any", "all"):
        ref = ref.bool()   # torch keeps uint8 for any/all of uint8; tinyjit always returns bool (NumPy)
    name_here = {"max": "amax", "min": "amin"}.get(name, name)   # max(dim)/min(dim) return (values, indices)
    check(getattr(x, name_here)(axis=axis), ref, rtol=5e-3 if dtype == "float16" else 1e-6)   # torch rounds each step


def test_reduce_special_values():
    """NaN propagates through max/min/sum (and is the arg max, like torch); infinities sum and compare."""
    a = np.array([[1, np.nan, 3, 0], [-np.inf, 2, 5, 1], [np.inf, -np.inf, 0, 1], [7, 8, 9, np.nan]], np.float32)
    x, t = Tensor(a).permute(1, 0), tt(a).permute(1, 0)
    for axis in (0, 1):
        check(x.amax(axis), t.amax(axis))
        check(x.amin(axis), t.amin(axis))
        for name in ("sum", "mean", "prod", "logsumexp", "softmax", "argmax", "argmin", "cumsum"):
            check(getattr(x, name)(axis), getattr(t, name)(axis))


def test_reduce_dim_keyword_and_methods():
    x, arr = make((3, 4, 5), "float32", "flipped", seed=24)
    t = tt(arr)
    check(x.sum(dim=1), t.sum(dim=1))
    check(x.mean(dim=(0, 2), keepdim=True), t.mean(dim=(0, 2), keepdim=True))
    check(x.amax(dim=-1), t.amax(dim=-1))
    check(x.std(dim=1, correction=0), t.std(dim=1, correction=0))
    check(x.var(1, unbiased=False), t.var(1, unbiased=False))
    check(x.sum(axis=[0, 1]), t.sum(dim=(0, 1)))
    check(x.sum(dtype="float64"), t.sum(dtype=torch.float64), rtol=1e-6)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("axis,dtype,keepdim", [(None, "float32", False), (0, "int32", True), (1, "uint8", False),
                                                (-1, "float32", True), (0, "float32", False), (None, "int32", True)])
def test_argmax_argmin(name, axis, dtype, keepdim):
    x, arr = make((5, 7), dtype, "strided", seed=25)
    arr = arr.copy()
    if dtype == "float32":   # ties: the first index wins
        arr[:, 3] = arr.max() if name == "argmax" else arr.min()
        x = Tensor(arr).permute(1, 0).permute(1, 0)
    check(getattr(x, name)(axis=axis, keepdim=keepdim), getattr(tt(arr), name)(dim=axis, keepdim=keepdim))


def test_argmax_special():
    a = np.array([[1.0, np.nan, 3.0], [-np.inf, -np.inf, -np.inf], [2.0, 5.0, 5.0]], np.float32)
    check(Tensor(a).argmax(1), tt(a).argmax(1))
    check(Tensor(a).argmin(1), tt(a).argmin(1))
    check(Tensor(3.0).argmax(), torch.tensor(3.0).argmax())
    check(Tensor([[4]]).argmax(), torch.tensor([[4]]).argmax())


SOFTMAX_CASES = cycle(cycle(["softmax", "log_softmax"], [((3, 5), -1), ((3, 5), 0), ((2, 3, 4), 1), ((7,), 0), ((), 0),
                                                       ((4, 1), 1)], per_case=3), ["contig", "padded", "permuted"])
SOFTMAX_CASES = [(fn, shape, axis, layout) for fn, (shape, axis), layout in SOFTMAX_CASES]


@pytest.mark.parametrize("fn,shape,axis,layout", SOFTMAX_CASES, ids=ids(SOFTMAX_CASES))
def test_softmax(fn, shape, axis, layout):
    x, arr = make(shape, "float32", layout, seed=26)
    check(getattr(x, fn)(axis), getattr(F, fn)(tt(arr), dim=axis))
    check(getattr(x, fn)(dim=axis), getattr(F, fn)(tt(arr), dim=axis))


def test_softmax_extreme_and_int():
    a = np.array([[1000.0, 0.0, -1000.0], [-np.inf, 0.0, 1.0], [5.0, 5.0, 5.0]], np.float32)
    check(Tensor(a).softmax(-1), F.softmax(tt(a), dim=-1))
    check(Tensor(a).log_softmax(-1), F.log_softmax(tt(a), dim=-1))
    check(Tensor(a).logsumexp(-1), tt(a).logsumexp(-1))
    check(Tensor([1, 2, 3]).softmax(0), F.softmax(torch.tensor([1.0, 2.0, 3.0]), dim=0))
    check(Tensor(a, dtype="float16").softmax(1), F.softmax(tt(a.astype(np.float16)), dim=1))


CUMSUM_CASES = (cycle([((7,), 0), ((3, 6), 1), ((3, 6), 0), ((2, 3, 4), -2), ((1,), 0), ((), 0), ((4, 0), 0),
                       ((40,), 0)], ["float32", "int32", "bool", "float16"], per_case=2))


@pytest.mark.parametrize("shape,axis,dtype", CUMSUM_CASES, ids=ids(CUMSUM_CASES))
def test_cumsum(shape, axis, dtype):
    x, arr = make(shape, dtype, "flipped" if len(shape) != 2 else "padded", seed=27)
    check(x.cumsum(axis), tt(arr).cumsum(axis), atol=1e-5, rtol=1e-5)
    check(x.cumsum(dim=axis), tt(arr).cumsum(dim=axis), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# movement (views)
# ---------------------------------------------------------------------------------------------------------------

MOVEMENT = [
    ("reshape", (2, 3, 4), lambda x: x.reshape(4, 6)),
    ("reshape_tuple", (2, 3, 4), lambda x: x.reshape((3, 2, 4))),
    ("reshape_-1", (2, 3, 4), lambda x: x.reshape(-1, 2)),
    ("reshape_-1_mid", (2, 3, 4), lambda x: x.reshape(2, -1, 3)),
    ("reshape_0d", (1, 1), lambda x: x.reshape(())),
    ("reshape_from_0d", (), lambda x: x.reshape(1, 1, 1)),
    ("reshape_0size", (0, 4), lambda x: x.reshape(2, 0, 2)),
    # tinyjit's view() never needs contiguous strides (it is reshape); torch's does, so compare with reshape
    ("view", (2, 3, 4), lambda x: x.view(6, 4) if isinstance(x, Tensor) else x.reshape(6, 4)),
    ("view_-1", (2, 3, 4), lambda x: x.view(-1) if isinstance(x, Tensor) else x.reshape(-1)),
    ("permute", (2, 3, 4), lambda x: x.permute(2, 0, 1)),
    ("permute_neg", (2, 3, 4), lambda x: x.permute(-1, -3, -2)),
    ("permute_tuple", (2, 3, 4), lambda x: x.permute((1, 2, 0))),
    ("transpose", (2, 3, 4), lambda x: x.transpose(0, 2)),
    ("transpose_neg", (2, 3, 4), lambda x: x.transpose(-1, -2)),
    ("T", (3, 5), lambda x: x.T),
    ("T_1d", (4,), lambda x: x.T),
    ("flatten", (2, 3, 4), lambda x: x.flatten()),
    ("flatten_range", (2, 3, 4, 2), lambda x: x.flatten(1, 2)),
    ("flatten_neg", (2, 3, 4, 2), lambda x: x.flatten(-3, -2)),
    ("flatten_0d", (), lambda x: x.flatten()),
    ("unflatten", (2, 12), lambda x: x.unflatten(1, (3, 4))),
    ("unflatten_neg", (2, 12), lambda x: x.unflatten(-1, (2, -1))),
    ("squeeze", (1, 3, 1, 2), lambda x: x.squeeze()),
    ("squeeze_dim", (1, 3, 1, 2), lambda x: x.squeeze(2)),
    ("squeeze_noop", (1, 3, 1, 2), lambda x: x.squeeze(1)),
    ("squeeze_tuple", (1, 3, 1, 2), lambda x: x.squeeze((0, -2))),
    ("unsqueeze", (3, 2), lambda x: x.unsqueeze(1)),
    ("unsqueeze_neg", (3, 2), lambda x: x.unsqueeze(-1)),
    ("unsqueeze_0d", (), lambda x: x.unsqueeze(0)),
    ("expand", (3, 1), lambda x: x.expand(3, 4)),
    ("expand_new_dims", (3, 1), lambda x: x.expand(2, 3, 5)),
    ("expand_-1", (1, 4), lambda x: x.expand(3, -1)),
    ("expand_0d", (), lambda x: x.expand(2, 2)),
    ("repeat", (2, 3), lambda x: x.repeat(2, 3)),
    ("repeat_new_dims", (2, 3), lambda x: x.repeat(2, 1, 2)),
    ("repeat_tuple", (3,), lambda x: x.repeat((4,))),
    ("flip", (2, 3, 4), lambda x: x.flip(1)),
    ("flip_many", (2, 3, 4), lambda x: x.flip((0, -1))),
    ("contiguous", (3, 4), lambda x: x.contiguous()),
]


def _torch_pad(t, pads, value=0.0):
    return F.pad(t, pads, value=value)


MOVEMENT += [
    ("pad_last", (2, 3), lambda x: x.pad((1, 2)) if isinstance(x, Tensor) else _torch_pad(x, (1, 2))),
    ("pad_two", (2, 3), lambda x: x.pad((1, 0, 0, 2)) if isinstance(x, Tensor) else _torch_pad(x, (1, 0, 0, 2))),
    ("pad_value", (2, 3), lambda x: x.pad((2, 1, 1, 1), value=-3.5) if isinstance(x, Tensor)
     else _torch_pad(x, (2, 1, 1, 1), -3.5)),
    ("pad_negative", (4, 5), lambda x: x.pad((-1, 2, 1, -2)) if isinstance(x, Tensor)
     else _torch_pad(x, (-1, 2, 1, -2))),
]


MOVEMENT_CASES = cycle(MOVEMENT, LAYOUTS, per_case=1)


@pytest.mark.parametrize("name,shape,fn,layout", MOVEMENT_CASES, ids=ids(MOVEMENT_CASES))
def test_movement(name, shape, fn, layout):
    x, arr = make(shape, "float32", layout, seed=28)
    out = fn(x)
    check(out, fn(tt(arr)))
    # the view composes with compute: an elementwise op and a reduce read through it
    check((out * 2 + 1).sum(), (fn(tt(arr)) * 2 + 1).sum(), atol=1e-4, rtol=1e-5)


def test_dim_and_axis_spellings():
    """Every op that takes an axis accepts PyTorch's dim= and NumPy's axis=."""
    x, arr = make((2, 1, 3), "float32", "contig", seed=73)
    t = tt(arr)
    for name in ("sum", "mean", "amax", "amin", "prod", "var", "std", "any", "all", "logsumexp", "argmax", "argmin"):
        ref = getattr(t, name)(dim=2)
        check(getattr(x, name)(axis=2), ref, atol=1e-6)
        assert getattr(x, name)(dim=2).shape == tuple(ref.shape)
    for name in ("softmax", "log_softmax", "cumsum"):
        ref = getattr(t, name)(dim=0)
        check(getattr(x, name)(axis=0), ref)
        assert getattr(x, name)(dim=0).shape == tuple(ref.shape)
    check(x.flip(dims=(0, 2)), t.flip(dims=(0, 2)))
    check(x.flip(axis=2), t.flip(2))
    check(x.squeeze(axis=1), t.squeeze(dim=1))
    check(x.unsqueeze(axis=-1), t.unsqueeze(dim=-1))
    check(Tensor.cat([x, x], axis=2), torch.cat([t, t], dim=2))
    check(Tensor.stack([x, x], axis=1), torch.stack([t, t], dim=1))
    check(Tensor.cat([x, x], 1), torch.cat([t, t], 1))
    assert [o.shape for o in x.split(1, axis=2)] == [tuple(o.shape) for o in t.split(1, dim=2)]
    assert [o.shape for o in x.chunk(2, axis=2)] == [tuple(o.shape) for o in t.chunk(2, dim=2)]


def test_pad_pairs_form_and_int():
    x, arr = make((2, 3), "int32", "permuted", seed=29)
    check(x.pad(((1, 0), (2, 1))), F.pad(tt(arr), (2, 1, 1, 0)))
    check(x.pad(((0, 0), (1, 1)), value=7), F.pad(tt(arr), (1, 1), value=7))
    check(x.pad((None, (1, 1))), F.pad(tt(arr), (1, 1)))


def test_movement_is_a_view():
    x = Tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    x.realize()
    buf = x.node.buffer
    for v in (x.reshape(6, 4), x.permute(2, 1, 0), x.flip(0), x[:, ::2, 1:], x.expand(2, 2, 3, 4), x.T):
        # the view's graph reads x's buffer directly: no node but movement ops between it and the buffer
        node = v.node
        while node.src:
            assert node.op.name in ("RESHAPE", "PERMUTE", "EXPAND", "PAD", "SHRINK", "FLIP"), node
            node = node.src[0]
        assert node.buffer is buf


INDEXES = [
    ("int", (5, 4), 2),
    ("neg_int", (5, 4), -1),
    ("int_int", (5, 4), (1, -2)),
    ("slice", (6, 4), slice(1, 4)),
    ("slice_step", (9, 4), slice(1, 8, 3)),
    ("slice_neg_step", (9, 4), slice(None, None, -2)),
    ("slice_neg_bounds", (9, 4), slice(-5, -1)),
    ("slice_neg_step_bounds", (9, 4), slice(-2, 1, -3)),
    ("slice_out_of_range", (5, 4), slice(2, 100)),
    ("slice_empty", (5, 4), slice(3, 1)),
    ("two_slices", (6, 7), (slice(None, None, 2), slice(5, None, -2))),
    ("ellipsis", (2, 3, 4), (Ellipsis, 1)),
    ("ellipsis_mid", (2, 3, 4), (0, Ellipsis, slice(None, None, -1))),
    ("none", (3, 4), (None, slice(1, 3), None)),
    ("none_int", (3, 4), (1, None)),
    ("mixed", (4, 5, 6), (slice(1, None), -1, slice(None, None, 4))),
    ("0d_ellipsis", (), Ellipsis),
    ("0d_none", (), None),
    ("np_int", (5, 4), np.int64(3)),
]


INDEX_CASES = cycle(INDEXES, ["contig", "permuted", "strided", "padded", "flipped"], per_case=2)


@pytest.mark.parametrize("name,shape,index,layout", INDEX_CASES, ids=ids(INDEX_CASES))
def test_basic_indexing(name, shape, index, layout):
    x, arr = make(shape, "float32", layout, seed=30)
    # NumPy is the reference: torch has no negative slice steps
    check(x[index], np.asarray(arr[index]))


TENSOR_INDEXES = [
    ("1d", (6, 3), lambda lib: lib([4, 0, -1, 4])),
    ("2d_index", (6, 3), lambda lib: lib([[1, 2], [5, 0]])),
    ("second_axis", (4, 5), lambda lib: (slice(None), lib([3, -5, 1]))),
    ("two_tensors", (4, 5), lambda lib: (lib([0, 3, 1]), lib([4, 4, 0]))),
    ("broadcast_tensors", (4, 5), lambda lib: (lib([[0], [3]]), lib([1, 2, 4]))),
    ("separated", (3, 4, 5), lambda lib: (lib([0, 2]), slice(1, 3), lib([1, 4]))),
    ("with_int", (3, 4, 5), lambda lib: (1, lib([0, 3]), slice(None, None, 2))),
    ("with_none", (3, 4), lambda lib: (None, lib([2, 0]))),
    ("0d_index", (5, 2), lambda lib: lib(3)),
]


TENSOR_INDEX_CASES = cycle(TENSOR_INDEXES, ["float32", "int32", "bool", "float16"])


@pytest.mark.parametrize("name,shape,index,dtype", TENSOR_INDEX_CASES, ids=ids(TENSOR_INDEX_CASES))
def test_tensor_indexing(name, shape, index, dtype):
    x, arr = make(shape, dtype, "flipped", seed=31)
    ours = index(lambda v: Tensor(np.array(v, np.int32)))
    ref = index(lambda v: torch.tensor(v, dtype=torch.int64))
    check(x[ours], tt(arr)[ref])
    # a plain list also indexes (like numpy/torch), and an int64 index tensor too
    if name == "1d":
        check(x[[4, 0, -1, 4]], tt(arr)[[4, 0, -1, 4]])
        check(x[Tensor(np.array([2, 1], np.int64))], tt(arr)[torch.tensor([2, 1])])


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_cat(dim, n):
    tensors = [make((2, 3 + i, 4) if dim == 1 else (2, 3, 4 + i) if dim == -1 else (2 + i, 3, 4),
                    "float32", LAYOUTS[i % 5], seed=32 + i) for i in range(n)]
    ref = torch.cat([tt(a) for _, a in tensors], dim=dim)
    check(tensors[0][0].cat(*[t for t, _ in tensors[1:]], dim=dim), ref)
    check(Tensor.cat([t for t, _ in tensors], dim=dim), ref)
    check(Tensor.cat(*[t for t, _ in tensors], dim=dim), ref)


def test_cat_dtypes_and_edge_cases():
    a, b = Tensor([1, 2]), Tensor([0.5, 1.5])
    check(a.cat(b), torch.cat([torch.tensor([1, 2], dtype=torch.int32), torch.tensor([0.5, 1.5])]))
    check(Tensor.cat([Tensor.zeros(0, 3), Tensor.ones(2, 3)]), torch.cat([torch.zeros(0, 3), torch.ones(2, 3)]))
    check(Tensor.cat([Tensor.ones(2, 3)]), torch.ones(2, 3))
    bools = Tensor([True, False]).cat(Tensor([False]))
    check(bools, torch.tensor([True, False, False]))


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_stack(dim):
    tensors = [make((3, 4), "float32", LAYOUTS[i], seed=40 + i) for i in range(3)]
    ref = torch.stack([tt(a) for _, a in tensors], dim=dim)
    check(Tensor.stack([t for t, _ in tensors], dim=dim), ref)
    check(tensors[0][0].stack(tensors[1][0], tensors[2][0], dim=dim), ref)
    check(Tensor.stack([Tensor(1.0), Tensor(2.0)]), torch.stack([torch.tensor(1.0), torch.tensor(2.0)]))


@pytest.mark.parametrize("size,dim", [(2, 0), (3, 1), ([1, 4, 2], 1), ([2, 3], 0), (10, 0), ((2, 0, 3), 0)],
                         ids=str)
def test_split(size, dim):
    x, arr = make((5, 7), "float32", "padded", seed=44)
    outs, refs = x.split(size, dim), tt(arr).split(size, dim)
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        check(o, r)
    assert len(x.split(size, dim=dim)) == len(refs)


@pytest.mark.parametrize("chunks,dim", [(2, 0), (3, 1), (7, 1), (10, 0), (1, -1), (4, 1)], ids=str)
def test_chunk(chunks, dim):
    x, arr = make((5, 7), "float32", "strided", seed=45)
    outs, refs = x.chunk(chunks, dim), tt(arr).chunk(chunks, dim)
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        check(o, r)
    assert len(x.chunk(chunks, dim=dim)) == len(refs)


# ---------------------------------------------------------------------------------------------------------------
# linear algebra and neural-network ops
# ---------------------------------------------------------------------------------------------------------------

MATMUL_SHAPES = [((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 5)), ((3, 4), (4, 5)), ((2, 3, 4), (4, 5)),
                 ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 1), (1, 1)), ((3, 0), (0, 2)), ((0, 3), (3, 2))]


MATMUL_CASES = cycle(MATMUL_SHAPES, [("contig", "contig"), ("permuted", "strided"), ("padded", "flipped"),
                                     ("strided", "permuted"), ("flipped", "padded")])


@pytest.mark.parametrize("sa,sb,layouts", MATMUL_CASES, ids=ids(MATMUL_CASES))
def test_matmul(sa, sb, layouts):
    a, an = make(sa, "float32", layouts[0], seed=46)
    b, bn = make(sb, "float32", layouts[1], seed=47)
    ref = tt(an) @ tt(bn)
    check(a @ b, ref, atol=1e-4, rtol=1e-4)
    check(a.matmul(b), ref, atol=1e-4, rtol=1e-4)
    if len(sa) == 1 and len(sb) == 1:
        check(a.dot(b), tt(an).dot(tt(bn)), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtypes_", [("int32", "int32"), ("int64", "int32"), ("float16", "float16"),
                                     ("float64", "float64"), ("int32", "float32"), ("uint8", "uint8")], ids=str)
def test_matmul_dtypes(dtypes_):
    a, an = make((3, 5), dtypes_[0], "permuted", seed=48)
    b, bn = make((5, 2), dtypes_[1], "strided", seed=49)
    ref = tt(an).to(torch.promote_types(tt(an).dtype, tt(bn).dtype)) @ tt(bn).to(
        torch.promote_types(tt(an).dtype, tt(bn).dtype))
    check(a @ b, ref, atol=1e-2 if "float16" in dtypes_ else 1e-5, rtol=1e-2 if "float16" in dtypes_ else 1e-5)


def test_matmul_python_operands():
    a, an = make((2, 3), "float32", "contig", seed=50)
    check(a @ [[1.0], [2.0], [3.0]], tt(an) @ torch.tensor([[1.0], [2.0], [3.0]]))
    check([[1.0, 2.0]] @ a, torch.tensor([[1.0, 2.0]]) @ tt(an))


CONV_CASES = [
    dict(x=(2, 3, 7, 7), w=(4, 3, 3, 3)),
    dict(x=(1, 2, 8, 6), w=(3, 2, 3, 2), stride=2),
    dict(x=(1, 2, 6, 6), w=(2, 2, 3, 3), padding=1),
    dict(x=(1, 2, 7, 8), w=(2, 2, 3, 3), dilation=2),
    dict(x=(2, 4, 6, 5), w=(6, 2, 3, 3), groups=2, bias=True),
    dict(x=(1, 4, 9, 9), w=(4, 1, 3, 3), groups=4, stride=(2, 3), padding=(1, 2), dilation=(1, 2)),
    dict(x=(1, 3, 5, 5), w=(2, 3, 1, 1), bias=True),
    dict(x=(1, 1, 4, 4), w=(1, 1, 4, 4)),
    dict(x=(1, 2, 5, 5), w=(3, 2, 3, 3), stride=4, padding=2),
    dict(x=(1, 2, 6, 7), w=(2, 2, 3, 3), padding="same"),
    dict(x=(1, 2, 6, 7), w=(2, 2, 2, 3), padding="valid", stride=(1, 2)),
]


CONV_PARAMS = cycle(CONV_CASES, ["contig", "padded", "strided"])


@pytest.mark.parametrize("case,layout", CONV_PARAMS, ids=["-".join(f"{k}{v}" for k, v in c.items() if k != "x")
                                                            + "-" + lay for c, lay in CONV_PARAMS])
def test_conv2d(case, layout):
    case = dict(case)
    x, xn = make(case.pop("x"), "float32", layout, seed=51)
    w, wn = make(case.pop("w"), "float32", "permuted" if layout == "padded" else "contig", seed=52)
    b, bn = make((wn.shape[0],), "float32", "flipped", seed=53) if case.pop("bias", False) else (None, None)
    ref = F.conv2d(tt(xn), tt(wn), None if bn is None else tt(bn), **case)
    check(x.conv2d(w, b, **case), ref, atol=1e-4, rtol=1e-4)


POOL_CASES = [dict(kernel_size=2), dict(kernel_size=3, stride=1), dict(kernel_size=(2, 3), stride=(1, 2)),
              dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, stride=3), dict(kernel_size=(3, 1))]


@pytest.mark.parametrize("case,shape", cycle(POOL_CASES, [(2, 3, 7, 6), (5, 8)]), ids=str)
def test_pools(case, shape):
    x, xn = make(shape, "float32", "strided", seed=54)
    ref_in = tt(xn) if len(shape) == 4 else tt(xn)[None]
    ref_max = F.max_pool2d(ref_in, **case)
    ref_avg = F.avg_pool2d(ref_in, **case)
    if len(shape) == 2:
        ref_max, ref_avg = ref_max[0], ref_avg[0]
    check(x.max_pool2d(**case), ref_max)
    check(x.avg_pool2d(**case), ref_avg)
    if case.get("padding"):
        check(x.avg_pool2d(**case, count_include_pad=False),
              F.avg_pool2d(ref_in, **case, count_include_pad=False)[0 if len(shape) == 2 else slice(None)])


def test_max_pool_dilation():
    x, xn = make((1, 2, 8, 8), "float32", "flipped", seed=55)
    check(x.max_pool2d(2, stride=2, dilation=2), F.max_pool2d(tt(xn), 2, stride=2, dilation=2))


@pytest.mark.parametrize("xshape", [(4, 5), (2, 3, 5), (5,)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_linear(xshape, bias):
    x, xn = make(xshape, "float32", "permuted", seed=56)
    w, wn = make((3, 5), "float32", "strided", seed=57)
    b, bn = make((3,), "float32", "contig", seed=58) if bias else (None, None)
    check(x.linear(w, b), F.linear(tt(xn), tt(wn), None if bn is None else tt(bn)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape,normalized", [((4, 6), (6,)), ((2, 3, 5), (5,)), ((2, 3, 5), (3, 5)), ((3, 1), 1)],
                         ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_layernorm(shape, normalized, affine):
    x, xn = make(shape, "float32", "padded", seed=59)
    ns = (normalized,) if isinstance(normalized, int) else normalized
    w, wn = make(ns, "float32", "contig", seed=60) if affine else (None, None)
    b, bn = make(ns, "float32", "flipped", seed=61) if affine else (None, None)
    ref = F.layer_norm(tt(xn), ns, None if wn is None else tt(wn), None if bn is None else tt(bn), eps=1e-5)
    check(x.layer_norm(normalized, w, b), ref, atol=1e-5, rtol=1e-4)
    if not affine and len(ns) == 1:
        check(x.layernorm(), ref, atol=1e-5, rtol=1e-4)
        check(x.layernorm(axis=-1, eps=1e-3), F.layer_norm(tt(xn), ns, eps=1e-3), atol=1e-5, rtol=1e-4)


def test_dropout():
    """Functional dropout is active by default (torch.nn.functional.dropout's training=True)."""
    x, xn = make((4, 5), "float32", "permuted", seed=62)
    check(x.dropout(0.5, training=False), tt(xn))
    check(x.dropout(training=False), tt(xn))
    Tensor.manual_seed(3)
    y = x.dropout(0.25).numpy()
    kept = y != 0
    np.testing.assert_allclose(y[kept], xn[kept] / 0.75, rtol=1e-6)
    assert 0.4 < kept.mean() < 0.95
    check(x.dropout(0.0), tt(xn))
    check(x.dropout(1.0), torch.zeros(4, 5))
    assert 0.3 < float((Tensor.ones(1000).dropout(0.5) == 0).float().mean()) < 0.7


@pytest.mark.parametrize("shape,classes,dtype", [((5,), 4, "int32"), ((2, 3), 6, "int64"), ((), 3, "uint8"),
                                                 ((4,), -1, "int32"), ((2, 3), 3, "uint8")], ids=str)
def test_one_hot(shape, classes, dtype):
    rng = np.random.default_rng(63)
    idx = rng.integers(0, 3, shape).astype(dtype)
    check(Tensor(idx).one_hot(classes), F.one_hot(tt(idx).long(), classes))


CE_CASES = [dict(), dict(reduction="sum"), dict(reduction="none"), dict(label_smoothing=0.1),
            dict(ignore_index=1), dict(ignore_index=1, reduction="sum"), dict(label_smoothing=0.2, ignore_index=0)]


@pytest.mark.parametrize("kwargs,shape", cycle(CE_CASES, [(6, 4), (2, 5, 3), (5,)], per_case=2), ids=str)
def test_cross_entropy_indices(kwargs, shape):
    x, xn = make(shape, "float32", "permuted", seed=64)
    rng = np.random.default_rng(65)
    tshape = (shape[0],) + shape[2:] if len(shape) > 1 else ()
    tgt = rng.integers(0, shape[1] if len(shape) > 1 else shape[0], tshape)
    ref = F.cross_entropy(tt(xn), torch.from_numpy(tgt), **kwargs)
    check(x.cross_entropy(Tensor(tgt.astype(np.int32)), **kwargs), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(), dict(reduction="sum"), dict(reduction="none"), dict(label_smoothing=0.3)],
                         ids=str)
def test_cross_entropy_probabilities(kwargs):
    x, xn = make((4, 5), "float32", "strided", seed=66)
    p = np.random.default_rng(67).dirichlet(np.ones(5), 4).astype(np.float32)
    ref = F.cross_entropy(tt(xn), tt(p), **kwargs)
    check(x.cross_entropy(Tensor(p), **kwargs), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("reduction,shape", [("mean", (6,)), ("sum", (3, 4)), ("none", (3, 4))], ids=str)
def test_binary_cross_entropy(reduction, shape):
    rng = np.random.default_rng(68)
    p = rng.uniform(0.02, 0.98, shape).astype(np.float32)
    p.flat[0], p.flat[-1] = 0.0, 1.0    # PyTorch clamps the log at -100
    y = (rng.random(shape) < 0.5).astype(np.float32)
    check(Tensor(p).binary_cross_entropy(Tensor(y), reduction=reduction),
          F.binary_cross_entropy(tt(p), tt(y), reduction=reduction), atol=1e-4, rtol=1e-5)
    logits, ln = make(shape, "float32", "flipped", seed=69)
    ln_big = ln * 20   # large logits must not overflow
    check((logits * 20).binary_cross_entropy_with_logits(Tensor(y), reduction=reduction),
          F.binary_cross_entropy_with_logits(tt(ln_big), tt(y), reduction=reduction), atol=1e-4, rtol=1e-5)
    pw = np.linspace(0.5, 2, shape[-1]).astype(np.float32)
    check(logits.binary_cross_entropy_with_logits(Tensor(y), reduction=reduction, pos_weight=Tensor(pw)),
          F.binary_cross_entropy_with_logits(tt(ln), tt(y), reduction=reduction, pos_weight=tt(pw)),
          atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape,dim,ishape,dtype", [
    ((4, 5), 0, (3, 5), "float32"), ((4, 5), 1, (4, 2), "int32"), ((4, 5), -1, (2, 3), "float16"),
    ((3, 4, 5), 1, (3, 6, 2), "float32"), ((6,), 0, (4,), "int64"), ((3, 4), 0, (1, 1), "float32")], ids=str)
def test_gather(shape, dim, ishape, dtype):
    x, xn = make(shape, dtype, "permuted", seed=70)
    idx = np.random.default_rng(71).integers(0, shape[dim], ishape)
    check(x.gather(dim, Tensor(idx.astype(np.int32))), torch.gather(tt(xn), dim, torch.from_numpy(idx)))
    check(x.gather(dim, Tensor(idx)), torch.gather(tt(xn), dim, torch.from_numpy(idx)))


def test_nll_loss():
    x, xn = make((5, 4), "float32", "contig", seed=72)
    logp = F.log_softmax(tt(xn), 1)
    tgt = np.array([0, 3, 1, 1, 2])
    check(x.log_softmax(1).nll_loss(Tensor(tgt)), F.nll_loss(logp, torch.from_numpy(tgt)), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# regressions in the core (schedule, view, symbolic) found by the tests above
# ---------------------------------------------------------------------------------------------------------------

def test_regression_reduce_feeding_a_permuted_output():
    """schedule.py: a reduce whose only consumer is the (permuted) output must not fuse in the reduce's order."""
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x = Tensor(a)
    check(x.sum(-1, keepdim=True).permute(2, 1, 0), tt(a).sum(-1, keepdim=True).permute(2, 1, 0))
    check((x.amax(1) + 1).T, (tt(a).amax(1) + 1).T)
    check(x.T.cumsum(1).T, tt(a).T.cumsum(1).T)


def test_regression_pad_mask_lower_bound():
    """symbolic.py: `i >= lo` in a padding mask mixed a bool into integer math (LLVM IR failed to verify)."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    check(Tensor(a).pad(((1, 0), (2, 1))), F.pad(tt(a), (2, 1, 1, 0)))


def test_regression_truncating_division_of_negative_parts():
    """symbolic.py: (6*i + 2*j - 10) // 6 was split into i + (2*j - 10) // 6, whose numerator can be negative where
    renderers' truncating division differs from floor division (a padded view of a flipped, strided slice)."""
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    x = Tensor(base)[1::2, ::-2].pad(((1, 1), (2, 1)), value=-3.5)
    check(x, np.pad(base[1::2, ::-2], ((1, 1), (2, 1)), constant_values=-3.5))


def test_regression_fully_masked_view_reshaped_to_0d():
    """view.py: reshaping an all-padding view to () dropped its mask and read the (empty) buffer."""
    check(Tensor(np.zeros(0, np.float32)).pad(((1, 0),)).reshape(()), torch.tensor(0.0))
    check(Tensor(np.array([2.0, 3, 5, 7, 11], np.float32)).prod(), torch.tensor(2310.0))


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int32", "int64", "float16", "float32"])
def test_logical_ops_like_torch(dtype):
    """torch.logical_not/and/or/xor: truth is "nonzero" for every dtype (NaN is true) and the result is bool; the
    other operand may have another dtype and broadcast."""
    a = np.array([[0, 1, 2, 3, 0, 100]]).astype(dtype)
    if dtype not in ("bool", "uint8"):
        a[0, 3] = -3
    if dtype.startswith("float"):
        a[0, 5] = np.nan
    b = np.array([[0], [5]], np.int32)
    x, t = Tensor(a), torch.tensor(a)
    results = [x.logical_not(), x.logical_and(Tensor(b)), x.logical_or(Tensor(b)), x.logical_xor(Tensor(b)),
               x.logical_and(0.5)]
    expected = [t.logical_not(), t.logical_and(torch.tensor(b)), t.logical_or(torch.tensor(b)),
                t.logical_xor(torch.tensor(b)), t.logical_and(torch.tensor(0.5))]
    for ours, theirs in zip(results, expected):
        assert ours.dtype.name == "bool"
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_where_in_pytorch_method_form_and_as_a_function():
    """torch.Tensor.where(condition, y) is `values.where(cond, other)`; tinyjit also keeps the condition-first form
    (torch.where(cond, x, y) as cond.where(x, y)) and tinyjit.where like torch.where. Gradients flow to the values."""
    import tinyjit
    a = np.array([1.0, -2.0, 3.0], np.float32)
    x, t = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    ours, theirs = x.where(x > 0, 0.0), t.where(t > 0, 0.0)
    np.testing.assert_array_equal(ours.numpy(), theirs.detach().numpy())
    (ours * Tensor([1.0, 2.0, 3.0])).sum().backward()
    (theirs * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())
    np.testing.assert_array_equal((x > 0).where(x, -x).numpy(), torch.where(t > 0, t, -t).detach().numpy())
    np.testing.assert_array_equal(tinyjit.where(x > 0, x, 0).numpy(), torch.where(t > 0, t, 0).detach().numpy())
    ints = Tensor([5, 6, 7])
    np.testing.assert_array_equal(ints.where(Tensor([True, False, True]), Tensor([0, 0, 0])).numpy(), [5, 0, 7])


@pytest.mark.parametrize("fn", ["var", "std"])
def test_var_and_std_take_pytorchs_argument_order(fn):
    """torch.var(dim, unbiased, keepdim): x.var(1, False) is biased, x.std(0, False, True) keeps the dim."""
    a = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]], np.float32)
    x, t = Tensor(a), torch.tensor(a)
    for args, kwargs in (((1, False), {}), ((0, False, True), {}), ((1,), {"correction": 0, "keepdim": True}),
                         ((), {"dim": 0, "unbiased": True}), ((), {})):
        ours, theirs = getattr(x, fn)(*args, **kwargs), getattr(t, fn)(*args, **kwargs)
        assert ours.shape == tuple(theirs.shape), (args, kwargs)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, err_msg=f"{fn}{args} {kwargs}")
    with pytest.raises(TypeError, match="either unbiased or correction"):
        getattr(x, fn)(1, True, correction=0)
