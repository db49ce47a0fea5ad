"""The ops of the differential fuzzer (test/fuzz_ops.py): for each public Tensor op, how to pick its arguments for a
given operand and how to spell the call in tinyjit and in PyTorch (see test/fuzz_support.py for `Ctx` and `Emit`).
"""
from __future__ import annotations

import random
from typing import Callable, Optional

import torch

from fuzz_support import (DTYPES, FLOATS, INTS, Ctx, Emit, NotApplicable, broadcast_partner_shape, cast_pair, dt,
                          index_src, lit, random_index, same, scalar_for, torch_dtype, torch_index)


# ---------------------------------------------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------------------------------------------
# name -> (tinyjit spelling, torch spelling, needs float (True) / any dtype (False))
UNARY = {
    "neg": ("-{x}", "-{x}"), "abs": ("{x}.abs()", "{x}.abs()"), "sign": ("{x}.sign()", "{x}.sign()"),
    "exp": ("{x}.exp()", "{x}.exp()"), "log": ("{x}.log()", "{x}.log()"), "sqrt": ("{x}.sqrt()", "{x}.sqrt()"),
    "rsqrt": ("{x}.rsqrt()", "{x}.rsqrt()"), "sin": ("{x}.sin()", "{x}.sin()"), "cos": ("{x}.cos()", "{x}.cos()"),
    "tanh": ("{x}.tanh()", "{x}.tanh()"), "sigmoid": ("{x}.sigmoid()", "{x}.sigmoid()"),
    "relu": ("{x}.relu()", "{x}.relu()"), "silu": ("{x}.silu()", "F.silu({x})"),
    "gelu": ("{x}.gelu()", "F.gelu({x})"), "erf": ("{x}.erf()", "{x}.erf()"),
    "softplus": ("{x}.softplus()", "F.softplus({x})"), "elu": ("{x}.elu()", "F.elu({x})"),
    "leaky_relu": ("{x}.leaky_relu(0.1)", "F.leaky_relu({x}, 0.1)"),
    "hardswish": ("{x}.hardswish()", "F.hardswish({x})"), "hardsigmoid": ("{x}.hardsigmoid()", "F.hardsigmoid({x})"),
    "relu6": ("{x}.relu6()", "F.relu6({x})"), "floor": ("{x}.floor()", "{x}.floor()"),
    "ceil": ("{x}.ceil()", "{x}.ceil()"), "round": ("{x}.round()", "{x}.round()"),
    "trunc": ("{x}.trunc()", "{x}.trunc()"), "square": ("{x}.square()", "{x}.square()"),
    "reciprocal": ("{x}.reciprocal()", "{x}.reciprocal()"), "exp2": ("{x}.exp2()", "{x}.exp2()"),
    "log2": ("{x}.log2()", "{x}.log2()"), "expm1": ("{x}.expm1()", "{x}.expm1()"),
    "log1p": ("{x}.log1p()", "{x}.log1p()"), "isnan": ("{x}.isnan()", "{x}.isnan()"),
    "isinf": ("{x}.isinf()", "{x}.isinf()"), "not": ("~{x}", "~{x}"),
    "tan": ("{x}.tan()", "{x}.tan()"), "mish": ("{x}.mish()", "F.mish({x})"),
}
# ops that only make sense on floats and whose domain is limited: keep inputs where results stay comparable
DOMAIN = {"exp": 60.0, "exp2": 80.0, "expm1": 60.0, "tan": 1.4, "sin": 1e4, "cos": 1e4}


def op_unary(ctx: Ctx) -> Emit:
    name = ctx.rng.choice(sorted(UNARY))
    ctx.skip("unary", fn=name)
    x = ctx.x
    limit = DOMAIN.get(name)
    if limit is not None and x.tensor.numel():
        finite = x.tensor.detach().float()[torch.isfinite(x.tensor.detach().float())]
        if finite.numel() and finite.abs().max() > (limit if x.dtype != "float16" else min(limit, 10.0)):
            raise NotApplicable(f"{name} outside its range")
    tj, pt = UNARY[name]
    return Emit([f"@out = {tj.format(x=x.name)}"], [f"@out = {pt.format(x=x.name)}"], f"unary.{name}")


def op_clip(ctx: Ctx) -> Emit:
    x = ctx.x
    if x.dtype == "bool":
        raise NotApplicable("clip of bool")
    lo = scalar_for(ctx.rng, x.dtype, allow_float=False)
    hi = lo + ctx.rng.choice([0, 1, 2, 4])
    lo, hi = (lo, hi) if ctx.rng.random() < 0.8 else (None, hi)
    ctx.skip("clip", lo=lo, hi=hi)
    args = f"{lit(lo)}, {lit(hi)}"
    return same(f"@out = {x.name}.clip({args})", "clip")


def op_cast(ctx: Ctx) -> Emit:
    x = ctx.x
    to = ctx.rng.choice([d for d in DTYPES if d != x.dtype])
    ctx.skip("cast", src=x.dtype, dst=to)
    if x.is_float and to in INTS:
        v = x.tensor.detach()
        info = torch.iinfo(torch_dtype(to))
        # float -> int of nan/inf or out-of-range values is undefined in C/LLVM and differs between libraries
        if v.numel() and (not torch.isfinite(v).all() or float(v.min()) <= info.min - 1 or
                          float(v.max()) >= info.max + 1):
            raise NotApplicable("float to int out of range")
    return Emit([f"@out = {x.name}.cast({dt(to)})"], [f"@out = {x.name}.to({dt(to)})"], f"cast.{to}")


BINARY = {
    "add": "{a} + {b}", "sub": "{a} - {b}", "mul": "{a} * {b}", "div": "{a} / {b}", "floordiv": "{a} // {b}",
    "mod": "{a} % {b}", "pow": "{a} ** {b}", "lt": "{a} < {b}", "le": "{a} <= {b}", "gt": "{a} > {b}",
    "ge": "{a} >= {b}", "eq": "{a} == {b}", "ne": "{a} != {b}", "and": "{a} & {b}", "or": "{a} | {b}",
    "xor": "{a} ^ {b}", "maximum": None, "minimum": None,
}


def _second_operand(ctx: Ctx, op: str) -> tuple[str, Optional[torch.Tensor], object]:
    """(name, torch tensor or None, scalar or None) for the right operand of a binary op."""
    x, rng = ctx.x, ctx.rng
    r = rng.random()
    int_div = op in ("floordiv", "mod")
    if op == "pow":
        if x.is_float:
            if r < 0.6:
                return "", None, rng.choice([2, 3, 0.5, 1.5, -1, 0, 1, 2.5, -0.5, 2.0])
            return ctx.aux(broadcast_partner_shape(rng, x.shape), x.dtype, ("uniform", -2.0, 3.0)), None, None
        if r < 0.6:
            return "", None, rng.choice([0, 1, 2, 3])
        return ctx.aux(broadcast_partner_shape(rng, x.shape), x.dtype if x.dtype != "bool" else "int32",
                       ("integers", 0, 4)), None, None
    if int_div and not x.is_float:
        if r < 0.4:
            return "", None, rng.choice([1, 2, 3, 7, -2, -5]) if x.dtype != "uint8" else rng.choice([1, 2, 3, 7])
        values = (1, 2, 3, 5, 7) if x.dtype == "uint8" else (-7, -3, -2, -1, 1, 2, 3, 5)
        return ctx.aux(broadcast_partner_shape(rng, x.shape), x.dtype, ("choice", values)), None, None
    if r < 0.35:
        return "", None, scalar_for(rng, x.dtype, allow_float=op not in ("and", "or", "xor"))
    if r < 0.6:
        partners = [v for v in ctx.values if _broadcasts(v.shape, x.shape) and
                    (op not in ("and", "or", "xor") or not v.is_float)]
        if partners:
            v = rng.choice(partners)
            return v.name, v.tensor, None
    if op in ("and", "or", "xor"):
        dtype = x.dtype if rng.random() < 0.7 else rng.choice(["bool", "int32", "uint8", "int64"])
    else:
        dtype = x.dtype if rng.random() < 0.7 else rng.choice(DTYPES)
    name = ctx.aux(broadcast_partner_shape(rng, x.shape), dtype)
    return name, None, None


def _broadcasts(a: tuple, b: tuple) -> bool:
    try:
        torch.broadcast_shapes(a, b)
        return True
    except RuntimeError:
        return False


def op_binary(ctx: Ctx, op: Optional[str] = None) -> Emit:
    x, rng = ctx.x, ctx.rng
    op = op or rng.choice(sorted(BINARY))
    b_name, b_tensor, scalar = _second_operand(ctx, op)
    b_dtype = None
    if b_name and b_tensor is None:
        b_dtype = ctx.aux_inputs[-1].dtype
    elif b_tensor is not None:
        b_dtype = str(b_tensor.dtype).replace("torch.", "")
    if scalar is not None:
        if x.dtype == "bool" and isinstance(scalar, int) and not isinstance(scalar, bool):
            scalar = True    # SEMANTIC_DIFFERENCES: no int scalar with a bool tensor
        ctx.skip(op, a=x.dtype, b=type(scalar).__name__, scalar=scalar)
        reverse = op not in ("pow", "floordiv", "mod") and rng.random() < 0.3
        if op in ("maximum", "minimum"):
            raise NotApplicable("maximum with a scalar")   # torch.maximum takes tensors only
        a, b = (lit(scalar), x.name) if reverse else (x.name, lit(scalar))
        code = BINARY[op].format(a=a, b=b)
        return same(f"@out = {code}", f"{op}.scalar")
    # the other operand's values: to see which promotion PyTorch applies, and for KNOWN_FAILURES
    b_t = b_tensor if b_tensor is not None else torch.tensor(ctx.aux_inputs[-1].values(), dtype=torch_dtype(b_dtype))
    ctx.skip(op, a=x.dtype, b=b_dtype, b_values=b_t.detach())
    ta, tb, pa, pb = cast_pair(x, b_name, b_t)
    if rng.random() < 0.3 and op not in ("pow", "floordiv", "mod"):
        ta, tb, pa, pb = tb, ta, pb, pa
    if op in ("maximum", "minimum"):
        return Emit([f"@out = {ta}.{op}({tb})"], [f"@out = torch.{op}({pa}, {pb})"], op)
    return Emit([f"@out = {BINARY[op].format(a=ta, b=tb)}"], [f"@out = {BINARY[op].format(a=pa, b=pb)}"], op)


def op_compare(ctx: Ctx) -> Emit:
    return op_binary(ctx, ctx.rng.choice(["lt", "le", "gt", "ge", "eq", "ne"]))


def op_arith(ctx: Ctx) -> Emit:
    return op_binary(ctx, ctx.rng.choice(["add", "sub", "mul", "div", "floordiv", "mod", "pow", "maximum",
                                          "minimum"]))


def op_shift(ctx: Ctx) -> Emit:
    x = ctx.x
    if x.dtype not in INTS:
        raise NotApplicable("shift of a non-int")
    bits = ctx.rng.choice([0, 1, 3, 7])
    op = ctx.rng.choice(["<<", ">>"])
    if x.tensor.numel() and x.tensor.min() < 0 and op == "<<":
        raise NotApplicable("left shift of negatives")   # undefined in C before C++20
    ctx.skip("shift", dtype=x.dtype)
    return same(f"@out = {x.name} {op} {bits}", "shift")


def op_where(ctx: Ctx) -> Emit:
    x, rng = ctx.x, ctx.rng
    r = rng.random()
    if r < 0.5 and x.dtype != "bool":
        cond = f"({x.name} > {lit(scalar_for(rng, x.dtype, allow_float=False))})"
        cond_tj = cond_pt = cond
    else:
        cname = ctx.aux(broadcast_partner_shape(rng, x.shape), "bool")
        cond_tj = cond_pt = cname
    if rng.random() < 0.4:
        s = scalar_for(rng, x.dtype, allow_float=x.dtype != "bool")
        if x.dtype == "bool" and not isinstance(s, bool):
            s = False
        ctx.skip("where", a=x.dtype, b="scalar")
        a, b = (x.name, lit(s)) if rng.random() < 0.5 else (lit(s), x.name)
        return Emit([f"@out = {cond_tj}.where({a}, {b})"], [f"@out = torch.where({cond_pt}, {a}, {b})"],
                    "where.scalar")
    other = ctx.aux(broadcast_partner_shape(rng, x.shape), x.dtype if rng.random() < 0.7 else rng.choice(DTYPES))
    o_dtype = ctx.aux_inputs[-1].dtype
    ctx.skip("where", a=x.dtype, b=o_dtype)
    ta, tb, pa, pb = cast_pair(x, other, torch.empty(ctx.aux_inputs[-1].shape, dtype=torch_dtype(o_dtype)))
    if rng.random() < 0.5:
        ta, tb, pa, pb = tb, ta, pb, pa
    return Emit([f"@out = {cond_tj}.where({ta}, {tb})"], [f"@out = torch.where({cond_pt}, {pa}, {pb})"], "where")


# ---------------------------------------------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------------------------------------------
def _dims(rng: random.Random, ndim: int, allow_none=True, allow_tuple=True):
    r = rng.random()
    if ndim == 0:
        return None if allow_none and r < 0.5 else (rng.choice([0, -1]))
    if allow_none and r < 0.25:
        return None
    if allow_tuple and ndim >= 2 and r < 0.45:
        return tuple(sorted(rng.sample(range(ndim), 2)))
    return rng.randrange(-ndim, ndim)


REDUCE = {   # name -> (tinyjit method, torch method, dims may be a tuple, dims may be None)
    "sum": ("sum", "sum", True, True), "mean": ("mean", "mean", True, True), "max": ("amax", "amax", True, True),
    "min": ("amin", "amin", True, True), "prod": ("prod", "prod", False, True), "any": ("any", "any", True, True),
    "all": ("all", "all", True, True), "argmax": ("argmax", "argmax", False, True),
    "argmin": ("argmin", "argmin", False, True), "var": ("var", "var", True, True),
    "std": ("std", "std", True, True), "logsumexp": ("logsumexp", "logsumexp", True, False),
}


def op_reduce(ctx: Ctx) -> Emit:
    x, rng = ctx.x, ctx.rng
    name = rng.choice(sorted(REDUCE))
    tj_m, pt_m, tuples, nones = REDUCE[name]
    dims = _dims(rng, x.ndim, allow_none=nones, allow_tuple=tuples)
    keepdim = rng.random() < 0.5
    correction = rng.choice([0, 1])
    ctx.skip("reduce", fn=name, dtype=x.dtype, shape=x.shape, dims=dims, correction=correction)
    if name == "prod" and x.tensor.requires_grad and not bool(torch.isfinite(x.tensor.detach()).all()):
        raise NotApplicable("SEMANTIC_DIFFERENCES: prod's gradient at an inf or NaN element")
    extra = ""
    if name in ("var", "std"):
        extra = f", correction={correction}"
    if dims is None and pt_m in ("amax", "amin"):
        pt_dims = tuple(range(x.ndim))   # torch: amax(dim=()) reduces every dim; tinyjit: axis=None
        return Emit([f"@out = {x.name}.{tj_m}(keepdim={keepdim})"],
                    [f"@out = {x.name}.{pt_m}(dim={pt_dims}, keepdim={keepdim})"], f"reduce.{name}")
    if dims is None and name == "prod":   # PyTorch's prod takes no dim=None
        keepdim = False
    if dims is None and name in ("sum", "mean", "prod", "argmax", "argmin", "var", "std") and \
            not keepdim and (rng.random() < 0.5 or name == "prod"):
        return same(f"@out = {x.name}.{tj_m}({extra[2:]})", f"reduce.{name}")
    tj = f"@out = {x.name}.{tj_m}(dim={dims!r}, keepdim={keepdim}{extra})"
    pt = f"@out = {x.name}.{pt_m}(dim={dims!r}, keepdim={keepdim}{extra})"
    if name in ("any", "all") and x.dtype == "uint8":   # SEMANTIC_DIFFERENCES: PyTorch's legacy uint8 result
        pt += ".to(torch.bool)"
    return Emit([tj], [pt], f"reduce.{name}")


def op_softmax(ctx: Ctx) -> Emit:
    x, rng = ctx.x, ctx.rng
    if not x.is_float:
        raise NotApplicable("softmax of an int")   # SEMANTIC_DIFFERENCES: torch has no int softmax
    fn = rng.choice(["softmax", "log_softmax"])
    d = rng.randrange(-max(x.ndim, 1), max(x.ndim, 1))
    ctx.skip("softmax", fn=fn, dtype=x.dtype, shape=x.shape, dim=d)
    return same(f"@out = {x.name}.{fn}({d})", fn)


def op_cumsum(ctx: Ctx) -> Emit:
    x = ctx.x
    d = ctx.rng.randrange(-max(x.ndim, 1), max(x.ndim, 1))
    ctx.skip("cumsum", dtype=x.dtype, shape=x.shape, dim=d)
    return same(f"@out = {x.name}.cumsum({d})", "cumsum")


# ---------------------------------------------------------------------------------------------------------------
# movement
# ---------------------------------------------------------------------------------------------------------------
def _factor_shape(rng: random.Random, n: int) -> tuple:
    if n == 0:
        return rng.choice([(0,), (0, 2), (3, 0), (1, 0, 2)])
    factors, m = [], n
    for p in (2, 3, 5, 7, 11, 13):
        while m % p == 0:
            factors.append(p)
            m //= p
    if m > 1:
        factors.append(m)
    rng.shuffle(factors)
    ndim = rng.randint(1, min(4, len(factors) + 1))
    dims = [1] * ndim
    for f in factors:
        dims[rng.randrange(ndim)] *= f
    if rng.random() < 0.3 and len(dims) < 4:
        dims.insert(rng.randrange(len(dims) + 1), 1)
    return tuple(dims)


def op_reshape(ctx: Ctx) -> Emit:
    x, rng = ctx.x, ctx.rng
    shape = _factor_shape(rng, x.tensor.numel())
    if rng.random() < 0.3 and shape and 0 not in shape:
        i = rng.randrange(len(shape))
        shape = shape[:i] + (-1,) + shape[i + 1:]
    kind = rng.choice(["reshape", "view", "flatten", "squeeze", "unsqueeze"]) if x.ndim else "reshape"
    if kind == "flatten":
        return same(f"@out = {x.name}.flatten()", "flatten")
    if kind == "squeeze":
        return same(f"@out = {x.name}.squeeze()", "squeeze")
    if kind == "unsqueeze":
        return same(f"@out = {x.name}.unsqueeze({rng.randrange(-x.ndim - 1, x.ndim + 1)})", "unsqueeze")
    tj = f"@out = {x.name}.reshape({shape!r})"
    pt = f"@out = {x.name}.reshape({shape!r})" if kind == "reshape" else f"@out = {x.name}.contiguous().view({shape!r})"
    return Emit([tj], [pt], "reshape")


def op_permute(ctx: Ctx) -> Emit:
    x, rng = ctx.x, ctx.rng
    if x.ndim < 2:
        raise NotApplicable("permute needs 2 dims")
    if rng.random() < 0.3:
        a, b = rng.sample(range(-x.ndim, x.ndim), 2)
        if a % x.ndim == b % x.ndim:
            raise NotApplicable("same dims")
        return same(f"@out = {x.name}.transpose({a}, {b})", "transpose")
    order = list(range(x.ndim))
    rng.shuffle(order)
    return same(f"@out = {x.name}.permute({tuple(order)!r})", "permute")


def op_expand(ctx: Ctx) -> Emit:
    x, rng = ctx.x, ctx.rng
    shape = [rng.choice([1, 2, 3, 4]) if s == 1 else s for s in x.shape]
    if rng.random() < 0.4 or not any(s == 1 for s in x.shape):
        shape = [rng.choice([2, 3])] + shape
    if rng.random() < 0.3:   # -1 keeps a dim's size
        lead = len(shape) - x.ndim
        shape = shape[:lead] + [-1 if s == o and rng.random() < 0.5 else s for s, o in zip(shape[lead:], x.shape)]
    if rng.random() < 0.2 and len(shape) < 5:
        return same(f"@out = {x.name}.repeat({tuple(rng.choice([1, 2, 3]) for _ in range(max(x.ndim, 1)))!r})",
                    "repeat")
    return same(f"@out = {x.name}.expand({tuple(shape)!r})", "expand")


def op_pad(ctx: Ctx) -> Emit:
    x, rng = ctx.x, ctx.rng
    if x.ndim == 0:
        raise NotApplicable("pad of 0-d")
    k = rng.randint(1, x.ndim)
    pads = tuple(rng.choice([0, 0, 1, 2, 3, -1]) for _ in range(2 * k))
    if x.dtype == "bool":
        value = rng.choice([True, False])
    elif x.is_float:
        value = rng.choice([0.0, 0.0, 1.5, -2.0])
    else:
        value = rng.choice([0, 0, 1, 3])
    ctx.skip("pad", dtype=x.dtype, value=value)
    return Emit([f"@out = {x.name}.pad({pads!r}, value={lit(value)})"],
                [f"@out = F.pad({x.name}, {pads!r}, value={lit(value)})"], "pad")


def op_flip(ctx: Ctx) -> Emit:
    x, rng = ctx.x, ctx.rng
    if x.ndim == 0:
        raise NotApplicable("flip of 0-d")
    dims = tuple(sorted(rng.sample(range(x.ndim), rng.randint(1, x.ndim))))
    return same(f"@out = {x.name}.flip({dims!r})", "flip")


def op_getitem(ctx: Ctx) -> Emit:
    x, rng = ctx.x, ctx.rng
    if x.ndim == 0:
        raise NotApplicable("getitem of 0-d")
    items = random_index(rng, x.shape)
    flips, pt_items = torch_index(items, x.shape)
    ctx.skip("getitem", shape=x.shape, items=items)
    src = f"{x.name}.flip({flips!r})" if flips else x.name
    return Emit([f"@out = {x.name}[{index_src(items)}]"], [f"@out = {src}[{index_src(pt_items)}]"], "getitem")


def op_index_tensor(ctx: Ctx) -> Emit:
    """x[idx] or x[:, idx] with an integer tensor (negative indices too)."""
    x, rng = ctx.x, ctx.rng
    if x.ndim == 0:
        raise NotApplicable("tensor index of 0-d")
    d = rng.randrange(min(x.ndim, 2))
    n = x.shape[d]
    if n == 0 and not ctx.invalid:
        raise NotApplicable("index into an empty dim")
    lo, hi = (-n, n) if not ctx.invalid else (n, n + 3)
    idx = ctx.aux(rng.choice([(2,), (3,), (2, 2), (1,), (0,)]), rng.choice(["int32", "int64"]), ("integers", lo, hi))
    ctx.skip("index_tensor", dim=d, invalid=ctx.invalid)
    index = f"{idx}" if d == 0 else f":, {idx}"
    return same(f"@out = {x.name}[{index}]", "index_tensor")


def op_gather(ctx: Ctx) -> Emit:
    x, rng = ctx.x, ctx.rng
    if x.ndim == 0:
        raise NotApplicable("gather of 0-d")
    d = rng.randrange(x.ndim)
    n = x.shape[d]
    shape = tuple(rng.randint(1, 3) if i == d else rng.randint(min(1, s), s) for i, s in enumerate(x.shape))
    if n == 0 and not ctx.invalid:
        raise NotApplicable("gather from an empty dim")
    ctx.skip("gather", ndim=x.ndim, dim=d, invalid=ctx.invalid)
    dist = ("integers", 0, n) if not ctx.invalid else ("integers", n, n + 3)
    idx = ctx.aux(shape, "int64", dist)
    return same(f"@out = {x.name}.gather({d}, {idx})", "gather")


def op_cat(ctx: Ctx) -> Emit:
    x, rng = ctx.x, ctx.rng
    if x.ndim == 0 and not ctx.invalid:
        raise NotApplicable("cat of 0-d")
    d = rng.randrange(max(x.ndim, 1)) if x.ndim else 0
    fn = rng.choice(["cat", "cat", "stack"]) if x.ndim else "cat"
    parts, dtypes_ = [x.name], [x.dtype]
    if fn == "stack":   # tensors of one shape: x with itself or with 2 * x
        parts.append(x.name if rng.random() < 0.5 or x.dtype == "bool" else f"{x.name} * 2")
    else:
        for _ in range(rng.choice([1, 1, 2])):
            shape = tuple(rng.choice([0, 1, 2, 3]) if i == d else s for i, s in enumerate(x.shape))
            dtype = x.dtype if rng.random() < 0.7 else rng.choice(DTYPES)
            parts.append(ctx.aux(shape, dtype))
            dtypes_.append(dtype)
        if rng.random() < 0.3:
            rng.shuffle(parts)
    ctx.skip("cat", ndim=x.ndim, dtypes=tuple(dtypes_), fn=fn)
    seq = ", ".join(parts)
    return Emit([f"@out = Tensor.{fn}([{seq}], dim={d})"], [f"@out = torch.{fn}([{seq}], dim={d})"], fn)


def op_matmul(ctx: Ctx) -> Emit:
    x, rng = ctx.x, ctx.rng
    if x.ndim == 0 or x.dtype == "bool":
        raise NotApplicable("matmul of 0-d or bool")
    k = x.shape[-1]
    r = rng.random()
    m = rng.choice([1, 2, 3, 5])
    if r < 0.25:
        shape = (k,)
    elif r < 0.75 or x.ndim < 3:
        shape = (k, m)
    else:
        shape = x.shape[:-2][-1:] + (k, m)
    dtype = x.dtype if rng.random() < 0.85 else rng.choice(["float32", "int32", "float16"])
    ctx.skip("matmul", a=x.dtype, b=dtype)
    dist = ("uniform", -2.0, 2.0) if dtype in FLOATS else ("integers", -4, 5)
    w = ctx.aux(shape, dtype, dist)
    left = rng.random() < 0.2 and x.ndim == 2
    if left:   # w @ x: w of (m, rows of x)
        ctx.aux_inputs.pop()
        w = ctx.aux((m, x.shape[0]), x.dtype, ("uniform", -2.0, 2.0) if x.is_float else ("integers", -4, 5))
        return same(f"@out = {w} @ {x.name}", "matmul")
    if dtype != x.dtype:   # PyTorch's matmul wants one dtype: its program promotes first (SEMANTIC_DIFFERENCES)
        rt = str(torch.promote_types(x.tensor.dtype, torch_dtype(dtype))).replace("torch.", "")
        pa = x.name if x.dtype == rt else f"{x.name}.to({dt(rt)})"
        pb = w if dtype == rt else f"{w}.to({dt(rt)})"
        return Emit([f"@out = {x.name} @ {w}"], [f"@out = {pa} @ {pb}"], "matmul")
    return same(f"@out = {x.name} @ {w}", "matmul")


def op_contiguous(ctx: Ctx) -> Emit:
    return same(f"@out = {ctx.x.name}.contiguous()", "contiguous")


# ---------------------------------------------------------------------------------------------------------------
# in-place updates mid-chain
# ---------------------------------------------------------------------------------------------------------------
def _inplace_target(ctx: Ctx) -> tuple[list[str], list[str], str]:
    """(tinyjit lines, torch lines, name) of a tensor to update in place: a clone of x, or x itself when x owns its
    storage in PyTorch and no other live value shares it (SEMANTIC_DIFFERENCES: views do not alias)."""
    x = ctx.x
    t = x.tensor
    shares = t._base is not None or any(v.tensor is t or v.tensor._base is t for v in ctx.values if v is not x)
    leaf_grad = t.requires_grad and t.is_leaf   # PyTorch forbids in-place updates of such leaves
    if ctx.rng.random() < 0.5 or shares or leaf_grad:
        return [f"@out = {x.name}.clone()"], [f"@out = {x.name}.clone()"], "@out"
    return [f"@out = {x.name}"], [f"@out = {x.name}"], "@out"


def _skip_inplace(ctx: Ctx, kind: str, tj: list, value: str, value_shape: tuple, region: tuple) -> None:
    aux = {a.name: a for a in ctx.aux_inputs}
    ctx.skip("inplace", kind=kind, dtype=ctx.x.dtype, direct=not tj[0].endswith(".clone()"),
             target_requires_grad=bool(ctx.x.tensor.requires_grad),
             value_requires_grad=value in aux and aux[value].requires_grad, value_shape=value_shape, region=region)


def op_setitem(ctx: Ctx) -> Emit:
    x, rng = ctx.x, ctx.rng
    if x.ndim == 0:
        raise NotApplicable("setitem of 0-d")
    tj, pt, target = _inplace_target(ctx)
    items = random_index(rng, x.shape)
    flips, pt_items = torch_index(items, x.shape)
    if flips:
        raise NotApplicable("negative-step setitem has no PyTorch spelling without a copy")
    region = tuple(torch.empty(x.shape)[tuple(pt_items)].shape)
    if rng.random() < 0.4:
        value, value_shape = lit(scalar_for(rng, x.dtype, allow_float=False)), ()
    else:
        value_shape = broadcast_partner_shape(rng, region)
        value = ctx.aux(value_shape, x.dtype)
    _skip_inplace(ctx, "setitem", tj, value, value_shape, region)
    tj.append(f"{target}[{index_src(items)}] = {value}")
    pt.append(f"{target}[{index_src(pt_items)}] = {value}")
    return Emit(tj, pt, "setitem", inplace=target)


def op_assign(ctx: Ctx) -> Emit:
    x, rng = ctx.x, ctx.rng
    tj, pt, target = _inplace_target(ctx)
    kind = rng.choice(["assign", "iadd", "imul"])
    if x.dtype == "bool" and kind != "assign":
        raise NotApplicable("+= on bool")
    src_shape = broadcast_partner_shape(rng, x.shape) if rng.random() < 0.5 else x.shape
    src = ctx.aux(src_shape, x.dtype)
    _skip_inplace(ctx, kind, tj, src, src_shape, x.shape)
    if kind == "assign":
        tj.append(f"{target}.assign({src})")
        pt.append(f"{target}.copy_({src})")
    else:
        sym = "+=" if kind == "iadd" else "*="
        tj.append(f"{target} {sym} {src}")
        pt.append(f"{target} {sym} {src}")
    return Emit(tj, pt, kind, inplace=target)


# op name -> (function, weight)
OPS: dict[str, tuple[Callable[[Ctx], Emit], float]] = {
    "unary": (op_unary, 3.0), "arith": (op_arith, 4.0), "compare": (op_compare, 1.0), "shift": (op_shift, 0.3),
    "bitwise": (lambda c: op_binary(c, c.rng.choice(["and", "or", "xor"])), 0.5), "where": (op_where, 1.0),
    "clip": (op_clip, 0.5), "cast": (op_cast, 1.0), "reduce": (op_reduce, 3.0), "softmax": (op_softmax, 1.0),
    "cumsum": (op_cumsum, 0.7), "reshape": (op_reshape, 1.5), "permute": (op_permute, 1.0),
    "expand": (op_expand, 1.0), "pad": (op_pad, 1.0), "flip": (op_flip, 0.7), "getitem": (op_getitem, 2.0),
    "index_tensor": (op_index_tensor, 0.5), "gather": (op_gather, 0.7), "cat": (op_cat, 1.0),
    "matmul": (op_matmul, 1.2), "contiguous": (op_contiguous, 0.2), "setitem": (op_setitem, 1.0),
    "assign": (op_assign, 0.8),
}
# ops that can be asked to produce an invalid call (the program must raise in both frameworks)
INVALID_OPS = ("index_tensor", "gather", "cat")
