"""Property tests: random chains of movement ops (reshape, permute, expand, pad, shrink, flip, slicing with steps
and basic indexing) give the same values as the same chain in NumPy, alone, behind an elementwise op, and
followed by an elementwise op and a reduce.

Values are small integers stored as float32, so sums are exact and results compare exactly. Every example
compiles a kernel or two, so `max_examples` stays modest.
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyjit import Tensor

MAX_NUMEL = 384
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1 and p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out + ([n] if n > 1 else [])


def draw_op(data, shape: tuple[int, ...]):
    """One movement op valid for `shape`: (kind, argument)."""
    ndim = len(shape)
    kinds = ["reshape"] + (["permute", "expand", "pad", "shrink", "flip", "slice", "index"] if ndim else ["expand"])
    kind = data.draw(st.sampled_from(kinds))
    n = math.prod(shape)
    if kind == "reshape":
        new_ndim = data.draw(st.integers(0 if n == 1 else 1, 4))
        dims = [1] * new_ndim
        if n == 0:
            dims[data.draw(st.integers(0, new_ndim - 1))] = 0
            for i in range(new_ndim):
                dims[i] = dims[i] if dims[i] == 0 else data.draw(st.integers(1, 3))
        else:
            for f in _factors(n):
                dims[data.draw(st.integers(0, new_ndim - 1))] *= f
        if n and new_ndim and data.draw(st.booleans()):
            dims[data.draw(st.integers(0, new_ndim - 1))] = -1
        return kind, tuple(dims)
    if kind == "permute":
        return kind, tuple(data.draw(st.permutations(range(ndim))))
    if kind == "expand":
        lead = data.draw(st.integers(0, 2 if ndim < 4 else 0))
        target = [data.draw(st.integers(1, 3)) for _ in range(lead)]
        target += [data.draw(st.integers(1, 3)) if s == 1 else s for s in shape]
        if math.prod(target) > MAX_NUMEL:
            target = [1] * lead + list(shape)
        return kind, tuple(target)
    if kind == "pad":
        pads = tuple((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in shape)
        if math.prod(s + b + a for s, (b, a) in zip(shape, pads)) > MAX_NUMEL:
            pads = tuple((0, 1) for _ in shape)
        return kind, (pads, data.draw(st.sampled_from([0.0, 0.0, -1.5])))
    if kind == "shrink":
        arg = []
        for s in shape:
            lo = data.draw(st.integers(0, s))
            arg.append((lo, data.draw(st.integers(lo, s))))
        return kind, tuple(arg)
    if kind == "flip":
        return kind, tuple(data.draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True)))
    if kind == "slice":
        bound = st.one_of(st.none(), st.integers(-6, 6))
        return kind, tuple(slice(data.draw(bound), data.draw(bound), data.draw(st.sampled_from([1, 2, 3, -1, -2, -3])))
                           for _ in shape)
    # basic indexing: an int on some axes, slices elsewhere, maybe a new axis and an ellipsis
    items = []
    for s in shape:
        if s and data.draw(st.integers(0, 3)) == 0:
            items.append(data.draw(st.integers(-s, s - 1)))
        else:
            items.append(slice(data.draw(st.sampled_from([None, 1, -2])), None, data.draw(st.sampled_from([1, 2, -1]))))
    if data.draw(st.booleans()):
        items.insert(data.draw(st.integers(0, len(items))), None)
    if len(items) > 1 and data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(items) - 1))
        items = items[:cut] + [Ellipsis] + [it for it in items[cut:] if it is None][:1]
    return kind, tuple(items)


def apply_np(arr: np.ndarray, op) -> np.ndarray:
    kind, arg = op
    if kind == "reshape":
        return arr.reshape(arg)
    if kind == "permute":
        return arr.transpose(arg)
    if kind == "expand":
        return np.broadcast_to(arr, arg)
    if kind == "pad":
        pads, value = arg
        return np.pad(arr, pads, constant_values=value)
    if kind == "shrink":
        return arr[tuple(slice(lo, hi) for lo, hi in arg)]
    if kind == "flip":
        return np.flip(arr, arg)
    return arr[arg]


def apply_tj(t: Tensor, op) -> Tensor:
    kind, arg = op
    if kind == "reshape":
        return t.reshape(arg)
    if kind == "permute":
        return t.permute(arg)
    if kind == "expand":
        return t.expand(arg)
    if kind == "pad":
        pads, value = arg
        return t.pad(pads, value=value)
    if kind == "shrink":
        return t.shrink(arg)
    if kind == "flip":
        return t.flip(arg)
    return t[arg]


def draw_chain(data, max_ops: int = 6):
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    base = (np.arange(math.prod(shape)) % 23 - 11).astype(np.float32).reshape(shape)
    ops, cur = [], base
    for _ in range(data.draw(st.integers(1, max_ops))):
        op = draw_op(data, cur.shape)
        ops.append(op)
        cur = apply_np(cur, op)
    return base, ops


def run_chain(base: np.ndarray, ops, pre=None):
    """(tinyjit result, numpy result) of the chain, applied to `pre(base)` when given."""
    arr, t = base, Tensor(base)
    if pre is not None:
        arr, t = pre(arr), pre(t)
    for op in ops:
        arr, t = apply_np(arr, op), apply_tj(t, op)
    return t, arr


@settings(max_examples=int(__import__("os").environ.get("HYP_EXAMPLES", 70)), **SETTINGS)
@given(st.data())
def test_movement_chain_matches_numpy(data):
    base, ops = draw_chain(data)
    t, arr = run_chain(base, ops)
    assert t.shape == arr.shape, ops
    np.testing.assert_array_equal(t.numpy(), arr, err_msg=str(ops))


# elementwise work in front of the chain: the views are applied to the inputs of the fused ops, and padding must
# read as 0 / the pad value even where the op would not give 0 (x * 2 + 1, max(x, 0.5))
PRE_OPS = [lambda x: x * 2 + 1, lambda x: x.maximum(0.5) if isinstance(x, Tensor) else np.maximum(x, 0.5),
           lambda x: -x, lambda x: (x > 0) * 3.0 if isinstance(x, Tensor) else (x > 0) * np.float32(3.0)]


@settings(max_examples=int(__import__("os").environ.get("HYP_EXAMPLES", 50)), **SETTINGS)
@given(st.data())
def test_movement_chain_after_elementwise(data):
    base, ops = draw_chain(data, max_ops=4)
    pre = PRE_OPS[data.draw(st.integers(0, len(PRE_OPS) - 1))]
    t, arr = run_chain(base, ops, pre)
    np.testing.assert_array_equal(t.numpy(), arr.astype(np.float32), err_msg=str(ops))


@settings(max_examples=int(__import__("os").environ.get("HYP_EXAMPLES", 60)), **SETTINGS)
@given(st.data())
def test_movement_chain_then_elementwise_and_reduce(data):
    base, ops = draw_chain(data, max_ops=5)
    t, arr = run_chain(base, ops)
    # an elementwise op between the view and a second view of the same buffer (two differently strided loads)
    if arr.ndim and data.draw(st.booleans()):
        t, arr = t * 2 + t.flip(0), arr * 2 + np.flip(arr, 0)
    else:
        t, arr = (t - 1).maximum(t * 0.5), np.maximum(arr - 1, arr * np.float32(0.5))
    reduce = data.draw(st.sampled_from(["sum", "amax"]))
    if arr.ndim == 0:
        axis = None
    else:
        axis = data.draw(st.one_of(st.none(), st.integers(-arr.ndim, arr.ndim - 1),
                                   st.lists(st.integers(0, arr.ndim - 1), min_size=1, unique=True).map(tuple)))
    keepdim = data.draw(st.booleans())
    reduced_axes = range(arr.ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
    if reduce == "amax" and any(arr.shape[a] == 0 for a in reduced_axes):
        reduce = "sum"   # max over nothing is an error (tested in test_errors)
    out = getattr(t, reduce)(axis, keepdim=keepdim)
    ref = getattr(np, reduce)(arr, axis=axis, keepdims=keepdim)
    assert out.shape == ref.shape, (ops, axis)
    np.testing.assert_array_equal(out.numpy(), ref, err_msg=f"{ops} {reduce} axis={axis}")
    # a view of the reduced result, read back through an expanding view in another kernel
    if ref.ndim and data.draw(st.booleans()):
        grown = out.unsqueeze(0).expand((2,) + ref.shape).flip(0) + out
        np.testing.assert_array_equal(grown.numpy(), np.broadcast_to(ref[None], (2,) + ref.shape) + ref)


# ---- the index math under the views (pure Python, no kernels) ----

def _c_eval(e, env: dict) -> int:
    """Evaluate an index expression the way renderers emit it: C's truncating division and remainder."""
    from tinyjit import symbolic as sym
    if isinstance(e, sym.Num):
        return e.value
    if isinstance(e, sym.Var):
        return env[e.name]
    if isinstance(e, sym.Mul):
        return _c_eval(e.a, env) * e.b
    if isinstance(e, (sym.Div, sym.Mod)):
        a = _c_eval(e.a, env)
        q = abs(a) // e.b * (1 if a >= 0 else -1)
        return q if isinstance(e, sym.Div) else a - q * e.b
    if isinstance(e, sym.Sum):
        return sum(_c_eval(t, env) for t in e.terms)
    if isinstance(e, sym.Lt):
        return int(_c_eval(e.a, env) < e.b)
    if isinstance(e, sym.And):
        return int(all(_c_eval(t, env) for t in e.terms))
    raise TypeError(e)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-9, 9), st.integers(1, 6)), min_size=1, max_size=3), st.integers(-40, 40),
       st.integers(1, 9), st.integers(1, 5), st.data())
def test_index_division_matches_floor_semantics(terms, constant, b, b2, data):
    """Simplified `e // b`, `e % b` and `(e // b) % b2` agree with floor division wherever e >= 0, even when the
    simplifier splits e into parts that can be negative on their own (views with flips and negative offsets)."""
    from tinyjit import symbolic as sym
    xs = [sym.Var(f"v{i}", 0, hi - 1) for i, (_, hi) in enumerate(terms)]
    e = sym.Num(constant)
    for (coef, _), v in zip(terms, xs):
        e = e + v * coef
    env = {v.name: data.draw(st.integers(0, v.max)) for v in xs}
    value = constant + sum(coef * env[v.name] for (coef, _), v in zip(terms, xs))
    if value < 0:
        return   # only valid (non-negative) addresses are ever divided
    assert _c_eval(e // b, env) == value // b
    assert _c_eval(e % b, env) == value % b
    assert _c_eval((e // b) % b2, env) == (value // b) % b2
    assert _c_eval(e >= b, env) == int(value >= b) and _c_eval(e < b, env) == int(value < b)
