"""Integer index expressions with value ranges, used by views to describe addresses and validity.

Every expression knows its minimum and maximum, which lets `(4*i + j) // 4` fold to `i` when `0 <= j < 4`.
Division and modulo are floor division/modulo by a positive constant; index math on valid elements is
never negative, so renderers may emit C-style (truncating) division.
"""
from __future__ import annotations

import functools
import math


class Expr:
    __slots__ = ("min", "max", "_str")
    min: int
    max: int

    # ---- arithmetic that simplifies as it builds ----
    def __add__(self, other) -> Expr:
        return add(self, const(other))

    __radd__ = __add__

    def __sub__(self, other) -> Expr:
        return add(self, mul(const(other), -1))

    def __mul__(self, other: int) -> Expr:
        assert isinstance(other, int), "index expressions multiply by constants only"
        return mul(self, other)

    __rmul__ = __mul__

    def __floordiv__(self, other: int) -> Expr:
        return floordiv(self, other)

    def __mod__(self, other: int) -> Expr:
        return mod(self, other)

    def __lt__(self, other: int) -> Expr:
        return less_than(self, other)

    def __ge__(self, other: int) -> Expr:
        # a comparison, not the integer 1 - (self < other): validity terms must stay 0/1 conditions that
        # renderers lower as booleans
        return less_than(mul(self, -1), 1 - other)   # self >= other  <=>  -self < -other + 1

    def __repr__(self) -> str:
        return self.render_str()

    def render_str(self) -> str:
        """The expression as text (also the key `add` collects like terms by). Rendered once per expression:
        expressions are immutable, and `add` asks every term of both operands for it on every addition (the index
        math of a 256-element register block adds thousands of times)."""
        try:
            return self._str
        except AttributeError:
            self._str = text = self._render()
            return text

    def _render(self) -> str:
        raise NotImplementedError

    def vars(self) -> set:
        return set()


class Num(Expr):
    __slots__ = ("value",)

    def __init__(self, value: int):
        self.value = self.min = self.max = int(value)

    def _render(self) -> str:
        return str(self.value)

    def __eq__(self, other):
        return isinstance(other, Num) and other.value == self.value

    def __hash__(self):
        return hash(("num", self.value))


class Var(Expr):
    __slots__ = ("name",)

    def __init__(self, name: str, min_value: int, max_value: int):
        self.name, self.min, self.max = name, min_value, max_value

    def _render(self) -> str:
        return self.name

    def vars(self) -> set:
        return {self}

    def __eq__(self, other):
        return isinstance(other, Var) and (other.name, other.min, other.max) == (self.name, self.min, self.max)

    def __hash__(self):
        return hash(("var", self.name, self.min, self.max))


class Mul(Expr):
    __slots__ = ("a", "b")

    def __init__(self, a: Expr, b: int):
        self.a, self.b = a, b
        lo, hi = a.min * b, a.max * b
        self.min, self.max = min(lo, hi), max(lo, hi)

    def _render(self) -> str:
        return f"({self.a.render_str()}*{self.b})"

    def vars(self) -> set:
        return self.a.vars()


class Div(Expr):
    __slots__ = ("a", "b")

    def __init__(self, a: Expr, b: int):
        self.a, self.b = a, b
        self.min, self.max = a.min // b, a.max // b

    def _render(self) -> str:
        return f"({self.a.render_str()}//{self.b})"

    def vars(self) -> set:
        return self.a.vars()


class Mod(Expr):
    __slots__ = ("a", "b")

    def __init__(self, a: Expr, b: int):
        self.a, self.b = a, b
        self.min, self.max = 0, b - 1

    def _render(self) -> str:
        return f"({self.a.render_str()}%{self.b})"

    def vars(self) -> set:
        return self.a.vars()


class Sum(Expr):
    __slots__ = ("terms",)

    def __init__(self, terms: tuple[Expr, ...]):
        self.terms = terms
        self.min, self.max = sum(t.min for t in terms), sum(t.max for t in terms)

    def _render(self) -> str:
        return "(" + "+".join(t.render_str() for t in self.terms) + ")"

    def vars(self) -> set:
        return set().union(*(t.vars() for t in self.terms))


class Lt(Expr):
    """1 if a < b else 0."""
    __slots__ = ("a", "b")

    def __init__(self, a: Expr, b: int):
        self.a, self.b = a, b
        self.min, self.max = 0, 1

    def _render(self) -> str:
        return f"({self.a.render_str()}<{self.b})"

    def vars(self) -> set:
        return self.a.vars()


class And(Expr):
    """1 if every term is nonzero else 0 (terms are 0/1 valued)."""
    __slots__ = ("terms",)

    def __init__(self, terms: tuple[Expr, ...]):
        self.terms = terms
        self.min, self.max = 0, 1

    def _render(self) -> str:
        return "(" + " and ".join(t.render_str() for t in self.terms) + ")"

    def vars(self) -> set:
        return set().union(*(t.vars() for t in self.terms))


TRUE, FALSE = Num(1), Num(0)


def const(x) -> Expr:
    return x if isinstance(x, Expr) else Num(x)


def _split_coefficient(e: Expr) -> tuple[Expr, int]:
    """e == base * coefficient; used to collect like terms."""
    if isinstance(e, Mul):
        return e.a, e.b
    return e, 1


def add(a: Expr, b: Expr) -> Expr:
    terms: list[Expr] = []
    for e in (a, b):
        terms.extend(e.terms if isinstance(e, Sum) else [e])
    constant = 0
    # per like term: (its base, its total coefficient, the term itself while it occurred once: kept as it is, so
    # an unchanged term is not built again, and keeps its rendered text)
    coefficients: dict[str, tuple[Expr, int, Expr | None]] = {}
    for t in terms:
        if isinstance(t, Num):
            constant += t.value
            continue
        base, coef = _split_coefficient(t)
        key = base.render_str()
        seen = coefficients.get(key)
        coefficients[key] = (base, coef, t) if seen is None else (base, seen[1] + coef, None)
    out = [term if term is not None else mul(base, coef) for base, coef, term in coefficients.values() if coef != 0]
    if constant != 0 or not out:
        out.append(Num(constant))
    return out[0] if len(out) == 1 else Sum(tuple(out))


def mul(a: Expr, b: int) -> Expr:
    if b == 0:
        return Num(0)
    if b == 1:
        return a
    if isinstance(a, Num):
        return Num(a.value * b)
    if isinstance(a, Mul):
        return mul(a.a, a.b * b)
    if isinstance(a, Sum):
        return functools.reduce(add, (mul(t, b) for t in a.terms))
    return Mul(a, b)


def floordiv(a: Expr, b: int) -> Expr:
    assert isinstance(b, int) and b > 0, f"division by {b}"
    if b == 1:
        return a
    if isinstance(a, Num):
        return Num(a.value // b)
    if a.min >= 0 and a.max < b:
        return Num(0)
    if a.min // b == a.max // b:
        return Num(a.min // b)
    if isinstance(a, Mul) and a.b % b == 0:
        return mul(a.a, a.b // b)
    if isinstance(a, Div):
        return floordiv(a.a, a.b * b)
    if isinstance(a, Sum):
        # floor((b*q + r) / b) == q + floor(r / b) for integer q. The constant moves its multiple of b into q.
        # Renderers emit truncating division, so only split when the remainder part can never be negative:
        # (6*i + j - 7) // 2 must not become 3*i + (j - 7) // 2, which truncates wrongly for j < 7.
        whole, rest, constant = [], [], 0
        for t in a.terms:
            if isinstance(t, Num):
                constant += t.value
            else:
                (whole if _split_coefficient(t)[1] % b == 0 else rest).append(t)
        q, r = divmod(constant, b)
        remainder = functools.reduce(add, rest, Num(r))
        if (whole or q) and remainder.min >= 0:
            quotient = functools.reduce(add, (floordiv(t, b) for t in whole), Num(q))
            return add(quotient, floordiv(remainder, b))
        # a common factor of every coefficient: (2*i + 2*j) // 4 == (i + j) // 2
        g = math.gcd(b, *(_split_coefficient(t)[1] if not isinstance(t, Num) else t.value for t in a.terms))
        if g > 1:
            return floordiv(functools.reduce(add, (_divide_exact(t, g) for t in a.terms)), b // g)
    return Div(a, b)


def _divide_exact(e: Expr, g: int) -> Expr:
    if isinstance(e, Num):
        return Num(e.value // g)
    base, coef = _split_coefficient(e)
    return mul(base, coef // g)


def mod(a: Expr, b: int) -> Expr:
    assert isinstance(b, int) and b > 0, f"modulo by {b}"
    if b == 1:
        return Num(0)
    if isinstance(a, Num):
        return Num(a.value % b)
    if a.min >= 0 and a.max < b:
        return a
    if a.min // b == a.max // b:
        return add(a, Num(-(a.min // b) * b))
    if isinstance(a, Mul) and a.b % b == 0:
        return Num(0)
    if isinstance(a, Sum):
        # reduce every coefficient and the constant mod b ((i + 35*j) % 34 == (i + j) % 34), unless what is left
        # could be negative (renderers emit a truncating remainder, which differs from the floor modulo for
        # negative values)
        kept = [mul(base, coef % b) for base, coef in (_split_coefficient(t) for t in a.terms if not isinstance(t, Num))
                if coef % b != 0]
        constant = sum(t.value for t in a.terms if isinstance(t, Num)) % b
        rest = functools.reduce(add, kept, Num(constant))
        if rest.render_str() != a.render_str() and rest.min >= 0:
            return mod(rest, b)
    return Mod(a, b)


def less_than(a: Expr, b: int) -> Expr:
    if a.max < b:
        return TRUE
    if a.min >= b:
        return FALSE
    return Lt(a, b)


def logical_and(terms) -> Expr:
    kept = []
    for t in terms:
        if isinstance(t, Num):
            if t.value == 0:
                return FALSE
            continue
        kept.extend(t.terms if isinstance(t, And) else [t])
    if not kept:
        return TRUE
    return kept[0] if len(kept) == 1 else And(tuple(kept))


def simplify_under(index: Expr, valid: Expr) -> Expr:
    """`index` rewritten for the points where `valid` holds (an address is only used there): a quotient or
    remainder of an expression that `valid` bounds below its divisor, `(i + 13*j) // 42` under `i + 13*j < 42`,
    is 0 or the expression itself. Views stacked by reshapes of padded windows (a conv's gradient) are full of
    those."""
    terms = valid.terms if isinstance(valid, And) else (valid,)
    bounds = {t.a.render_str(): t.b for t in terms if isinstance(t, Lt)}
    if not bounds:
        return index

    def walk(e: Expr) -> Expr:
        if isinstance(e, Mul):
            return mul(walk(e.a), e.b)
        if isinstance(e, Sum):
            return functools.reduce(add, (walk(t) for t in e.terms))
        if isinstance(e, (Div, Mod)):
            a = walk(e.a)
            bound = bounds.get(a.render_str())
            if bound is not None and a.min >= 0 and bound <= e.b:
                return Num(0) if isinstance(e, Div) else a
            out = floordiv(a, e.b) if isinstance(e, Div) else mod(a, e.b)
            if bound is not None and a.min >= 0 and isinstance(out, Div) and out.a is a:
                out = Div(a, e.b)   # valid only below the bound: a tighter maximum folds an enclosing % or //
                out.max = min(out.max, (bound - 1) // e.b)
            return out
        return e
    return walk(index)
