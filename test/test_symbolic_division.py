"""Index division and modulo simplify under floor semantics but render as truncating C operations: every
simplified form must agree with the rendered one wherever the whole expression is non-negative."""
import itertools
import math
import random

import numpy as np

from tinyjit import Tensor
from tinyjit.symbolic import And, Div, Lt, Mod, Mul, Num, Sum, Var


def _eval_truncating(e, env):
    if isinstance(e, Num):
        return e.value
    if isinstance(e, Var):
        return env[e.name]
    if isinstance(e, Mul):
        return _eval_truncating(e.a, env) * e.b
    if isinstance(e, Div):
        return math.trunc(_eval_truncating(e.a, env) / e.b)
    if isinstance(e, Mod):
        return int(math.fmod(_eval_truncating(e.a, env), e.b))
    if isinstance(e, Sum):
        return sum(_eval_truncating(t, env) for t in e.terms)
    if isinstance(e, Lt):
        return int(_eval_truncating(e.a, env) < e.b)
    if isinstance(e, And):
        return int(all(_eval_truncating(t, env) for t in e.terms))
    raise TypeError(e)


def test_div_mod_of_sums_with_negative_parts():
    rng = random.Random(0)
    for _ in range(300):
        vs = [Var(f"v{i}", 0, rng.randint(1, 6)) for i in range(3)]
        coefs = [rng.randint(-6, 12) for _ in vs]
        c = rng.randint(-20, 20)
        e = Num(c)
        for v, k in zip(vs, coefs):
            e = e + v * k
        d1, d2 = rng.randint(2, 7), rng.randint(2, 5)
        exprs = [e // d1, e % d1, (e // d1) % d2, (e % d1) // d2, (e // d1) // d2]
        for values in itertools.product(*[range(v.min, v.max + 1) for v in vs]):
            val = c + sum(k * x for k, x in zip(coefs, values))
            if val < 0:
                continue
            env = {v.name: x for v, x in zip(vs, values)}
            want = [val // d1, val % d1, (val // d1) % d2, (val % d1) // d2, (val // d1) // d2]
            assert [_eval_truncating(x, env) for x in exprs] == want, (e, d1, d2, env)


def test_pad_after_stacked_view():
    # spread a 3x3 with zeros between elements (a stacked view), then pad: the padded index goes negative
    x = Tensor.randn(3, 3)
    ref = np.zeros((5, 5), np.float32)
    ref[::2, ::2] = x.numpy()
    spread = x.reshape(3, 1, 3, 1).pad(((0, 0), (0, 1), (0, 0), (0, 1))).reshape(6, 6).shrink(((0, 5), (0, 5)))
    np.testing.assert_array_equal(spread.pad(((1, 1), (2, 1))).numpy(), np.pad(ref, ((1, 1), (2, 1))))


def _reference_addresses(shape, moves):
    """The buffer address of each element after `moves` (numpy on an arange; -1 where padding)."""
    a = np.arange(int(np.prod(shape))).reshape(shape)
    for op, arg in moves:
        if op == "permute":
            a = a.transpose(arg)
        elif op == "reshape":
            a = a.reshape(arg)
        elif op == "pad":
            a = np.pad(a, arg, constant_values=-1)
        elif op == "shrink":
            a = a[tuple(slice(lo, hi) for lo, hi in arg)]
    return a


def test_stacked_views_address_valid_elements_exactly_when_narrowed_to_the_mask():
    """ShapeTracker.index_and_valid narrows the loop variables to the last view's mask before unravelling through
    earlier views: at every valid element the (truncating) address is still the element's, and validity is
    unchanged. Random permute -> reshape -> pad/shrink chains (the pieces of a cat of transposed tensors)."""
    from tinyjit.view import ShapeTracker
    rng = random.Random(3)
    for _ in range(150):
        shape = tuple(rng.choice((2, 3, 4)) for _ in range(3))
        order = tuple(rng.sample(range(3), 3))
        moved = tuple(shape[o] for o in order)
        flat = (moved[0], moved[1] * moved[2]) if rng.random() < 0.5 else (moved[0] * moved[1], moved[2])
        pads = tuple((rng.randint(0, 5), rng.randint(0, 5)) for _ in flat)
        padded = tuple(s + lo + hi for s, (lo, hi) in zip(flat, pads))
        cut = tuple((lo, rng.randint(lo + 1, s)) for s in padded for lo in [rng.randint(0, s - 1)])
        moves = [("permute", order), ("reshape", flat), ("pad", pads), ("shrink", cut)]
        st = ShapeTracker.from_shape(shape)
        for op, arg in moves:
            st = st.movement(op, arg)
        ref = _reference_addresses(shape, moves)
        idxs = [Var(f"i{d}", 0, s - 1) for d, s in enumerate(st.shape)]
        index, valid = st.index_and_valid(idxs)
        for point in itertools.product(*(range(s) for s in st.shape)):
            env = {f"i{d}": v for d, v in enumerate(point)}
            expected = ref[point]
            assert _eval_truncating(valid, env) == (expected >= 0), (moves, point)
            if expected >= 0:
                assert _eval_truncating(index, env) == expected, (moves, point, index.render_str())


def test_cat_of_transposed_pieces_addresses_each_piece_without_division():
    """The q/k/v gradients of an attention block joined by a cat: each piece is the same transposed view at
    another offset, so after the first piece's address every other is that address plus a constant."""
    from codegen.kernel import Kernel
    from tinyjit import Device
    from tinyjit.ops import Op as _Op
    from tinyjit.schedule import create_schedule
    pieces = [Tensor(np.random.rand(2, 4, 3, 8).astype(np.float32)) for _ in range(3)]
    joined = Tensor.cat(*[p.permute(0, 2, 1, 3).reshape(2, 3, 32) for p in pieces], dim=2)
    (item,) = [i for i in create_schedule([joined.node]) if i.kind == "kernel"]
    program = Device.renderer("CPU").linearize(Kernel(item.ast))
    divisions = [u for u in program.uops if getattr(u, "arg", None) in (_Op.IDIV, _Op.MOD)]
    assert len(divisions) <= 4, f"{len(divisions)} divisions and remainders: one set for the first piece only"
    expected = np.concatenate([p.numpy().transpose(0, 2, 1, 3).reshape(2, 3, 32) for p in pieces], axis=2)
    np.testing.assert_array_equal(joined.numpy(), expected)
