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
