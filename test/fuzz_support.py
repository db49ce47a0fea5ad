"""What an op of the differential fuzzer (test/fuzz_ops.py) sees and returns, the value ranges of inputs, and the
list of places where tinyjit and PyTorch differ on purpose.

An op (test/fuzz_op_table.py) is a function `op(ctx) -> Emit`. It reads the operand `ctx.x` (a `Val`: its name,
shape, dtype and the torch tensor computed so far), draws every choice from `ctx.rng` (seeded by the step, so a
program is reproducible and its arguments are re-derived when the shrinker makes an input smaller) and returns the
lines of code to run in each framework. It raises `NotApplicable` when the operand does not suit it. Fresh inputs an
op needs (a divisor, a gather index, a second matmul operand) come from `ctx.aux(...)`, which chooses their value
range for the op.

Each Emit carries both spellings, with two tokens the engine fills in: `@out` (the result's name) and `@dt:NAME@` (a
dtype: `dtypes.NAME` in tinyjit, `torch.NAME` in PyTorch, and float64 for every float in the float64 reference run).

`SEMANTIC_DIFFERENCES` lists, in one place, where tinyjit and PyTorch differ on purpose, and how the fuzzer keeps
those cases out of the comparison.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np
import torch

FLOATS = ("float16", "float32")
INTS = ("int32", "int64", "uint8")
DTYPES = ("float32", "float16", "int32", "int64", "bool", "uint8")

# Largest magnitude an op may produce: beyond it the next ops would overflow, and a comparison of inf against
# a large finite number says nothing. Ops whose result passes it are not chosen (input ranges per op, not looser
# checks).
CAP = {"float16": 1e4, "float32": 1e30, "float64": 1e30}


class NotApplicable(Exception):
    """The op does not suit this operand (shape, dtype or values); the generator picks another."""


# ---------------------------------------------------------------------------------------------------------------
# Where tinyjit and PyTorch differ on purpose (the README's list), and what the fuzzer does about each.
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    what: str
    reason: str
    handling: str
    torch_error: Optional[str] = None   # a regex of PyTorch's error message, when the difference is that torch raises


SEMANTIC_DIFFERENCES = (
    Difference("0-d tensor operands promote like any tensor",
               "NumPy 2 rule (tinyjit/dtype.py promote); PyTorch lets a dimensioned tensor win within a kind",
               "binary ops, where and comparisons cast both operands to PyTorch's result dtype when the rules differ"),
    Difference("comparing an int tensor with a Python int outside its dtype's range compares values",
               "NumPy 2 rule (Tensor._compare); PyTorch wraps the scalar into the dtype (uint8 == 300 is == 44)",
               "scalar_for draws only scalars inside the dtype's range"),
    Difference("an out-of-range index held on a device (not in CPU memory) raises at the realize that first "
               "computes the op reading it, not at the call",
               "checking at the call would read the index back from the device and wait for it on every call "
               "(tinyjit/index_check.py); host indices and CPU tensors are checked at the call",
               "on such devices the fuzzer realizes the failing step's result and expects the error there"),
    Difference("integer // and % by zero give 0", "NumPy's result, no trap (PyTorch raises ZeroDivisionError)",
               "integer divisors are fresh inputs or scalars without zeros", r"ZeroDivisionError"),
    Difference("tinyjit computes ops PyTorch has no CPU kernel for (bool matmul, int silu, bool relu6...)",
               "one code path for every dtype", "such ops are not generated",
               r"not implemented for|does not support|inputs not supported for"),
    Difference("mean/var/std/softmax of int tensors compute in float32", "tinyjit casts ints to the default float",
               "not generated", r"could not infer output dtype|must be either a floating point|"
                                r"only support floating point"),
    Difference("prod accepts a tuple of dims, logsumexp dim=None reduces everything", "NumPy-style reductions",
               "not generated", r"received an invalid combination of arguments|must be tuple of ints, not NoneType"),
    Difference("views do not alias storage: an in-place update of a tensor never changes another tensor",
               "tensors are values of an immutable lazy graph (like tinygrad)",
               "in-place ops only target tensors no other live tensor shares storage with (in PyTorch)"),
    Difference("assign, setitem and += cast the value to the target's dtype",
               "tinyjit's assign casts (PyTorch refuses some casts in place)", "those cases are not generated",
               r"can't be cast to the desired output type|Index put requires the source and destination dtypes"),
    Difference("backward through a tensor that was later updated in place uses its value at the time it was read",
               "the lazy graph is immutable, so nothing is 'modified by an inplace operation'",
               "cases where PyTorch's backward raises that error are dropped",
               r"modified by an inplace operation"),
    Difference("floor division and other piecewise-constant ops have a zero gradient",
               "PyTorch has no derivative for floor_divide", "gradients are not compared when PyTorch's backward "
               "refuses", r"derivative for \S+ is not implemented"),
    Difference("matmul of two dtypes promotes them", "like every other binary op (PyTorch wants one dtype)",
               "PyTorch's program casts both operands to the promoted dtype first"),
    Difference("any/all of a uint8 tensor give bool", "NumPy's result; PyTorch keeps uint8 for backward "
               "compatibility (documented in torch.any)", "PyTorch's program casts its result to bool"),
    Difference("prod's gradient is the product of the other elements, also where an element is inf or NaN",
               "exact (prod([inf, 2]) has gradient [2, inf]); PyTorch divides the result by the element (NaN there)",
               "prod is not generated over non-finite values that require grad"),
    Difference("slices with negative steps", "PyTorch has none", "the PyTorch program flips, then slices forward"),
)
NO_KERNEL_ERRORS = "|".join(d.torch_error for d in SEMANTIC_DIFFERENCES if d.torch_error)


# ---------------------------------------------------------------------------------------------------------------
# What an op sees and returns
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Val:
    name: str
    tensor: torch.Tensor          # PyTorch's value (native dtypes), computed while the program is built

    @property
    def shape(self) -> tuple:
        return tuple(self.tensor.shape)

    @property
    def dtype(self) -> str:
        return str(self.tensor.dtype).replace("torch.", "")

    @property
    def ndim(self) -> int:
        return self.tensor.ndim

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOATS


@dataclass(frozen=True)
class Aux:
    """A fresh input: `np.random.default_rng(seed).<dist>` of `shape`, as `dtype`."""
    name: str
    shape: tuple
    dtype: str
    dist: tuple                   # ("uniform", lo, hi) | ("integers", lo, hi) | ("choice", values) | ("bool",)
    seed: int
    requires_grad: bool = False

    def data_src(self) -> str:
        """The numpy expression of the input's data (what the programs and reproducers run)."""
        gen = f"np.random.default_rng({self.seed})"
        shape = repr(self.shape)
        kind = self.dist[0]
        if kind == "uniform":
            src = f"{gen}.uniform({self.dist[1]!r}, {self.dist[2]!r}, {shape})"
        elif kind == "integers":
            src = f"{gen}.integers({self.dist[1]!r}, {self.dist[2]!r}, {shape})"
        elif kind == "choice":
            values = "[" + ", ".join(_float_src(v) for v in self.dist[1]) + "]"
            src = f"{gen}.choice({values}, {shape})"
        else:
            return f"({gen}.random({shape}) < 0.5)"
        return f"{src}.astype(np.{self.dtype})"

    def values(self) -> np.ndarray:
        return np.asarray(eval(self.data_src(), {"np": np}))   # our own expression


def _float_src(v) -> str:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return "np.nan" if math.isnan(v) else ("np.inf" if v > 0 else "-np.inf")
    return repr(v)


@dataclass
class Emit:
    tj: list[str]
    torch: list[str]
    name: str = ""                # the op's name with the choices that matter for classification
    inplace: Optional[str] = None  # the value updated in place, if any


@dataclass
class Ctx:
    rng: random.Random
    x: Val
    values: list[Val]             # every value defined so far (x among them)
    exclude: Callable[[str, "Ctx", dict], bool]   # KNOWN_FAILURES filter: (op, ctx, details) -> skip this choice?
    aux_inputs: list[Aux] = field(default_factory=list)
    prefix: str = "a"
    invalid: bool = False         # asked for an op that must raise (error parity)
    history: tuple = ()           # the names of the steps before this one (Emit.name)

    def aux(self, shape, dtype: str, dist: Optional[tuple] = None, requires_grad: Optional[bool] = None) -> str:
        dist = dist or default_dist(self.rng, dtype)
        if requires_grad is None:
            requires_grad = dtype in FLOATS and self.rng.random() < 0.7
        a = Aux(f"{self.prefix}{len(self.aux_inputs)}", tuple(int(s) for s in shape), dtype, dist,
                self.rng.getrandbits(31), requires_grad and dtype in FLOATS)
        if a.requires_grad and self.exclude("input", self, {"input": a}):
            a = replace(a, requires_grad=False)   # KNOWN_FAILURES rules out gradients for such an input
        self.aux_inputs.append(a)
        return a.name

    def skip(self, op: str, **details) -> None:
        if self.exclude(op, self, details):
            raise NotApplicable(f"{op}: known failure {details}")


def default_dist(rng: random.Random, dtype: str) -> tuple:
    """Value ranges for inputs: small floats (some exactly representable, with ties and zeros), small ints, and now
    and then the edges (nan/inf, large int64, the whole uint8 range)."""
    r = rng.random()
    if dtype == "bool":
        return ("bool",)
    if dtype in FLOATS:
        if r < 0.55:
            return ("uniform", -3.0, 3.0)
        if r < 0.85:
            return ("choice", (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0))
        if r < 0.95:
            return ("uniform", 0.1, 4.0)
        return ("choice", (-1.5, 0.0, 1.0, 2.5, math.nan, math.inf, -math.inf))
    if dtype == "uint8":
        return ("integers", 0, 256) if r < 0.2 else ("integers", 0, 12)
    if dtype == "int64" and r < 0.05:
        return ("integers", -2 ** 40, 2 ** 40)
    return ("integers", -10, 11)


# ---------------------------------------------------------------------------------------------------------------
# helpers for ops
# ---------------------------------------------------------------------------------------------------------------
def dt(name: str) -> str:
    return f"@dt:{name}@"


def torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def check_cap(result: torch.Tensor, *operands: torch.Tensor) -> None:
    """Reject an op whose float result overflows (new inf from finite operands) or grows past CAP."""
    if not result.dtype.is_floating_point or result.numel() == 0:
        return
    r = result.detach()
    finite = torch.isfinite(r)
    if any(not torch.isfinite(o.detach()).all() for o in operands if o.dtype.is_floating_point):
        return   # inputs already hold inf/nan: the result's inf/nan are the data's, not an overflow
    if not finite.all():
        if r.isinf().any():
            raise NotApplicable("overflow")
    if finite.any() and r[finite].abs().max() > CAP[str(r.dtype).replace("torch.", "")]:
        raise NotApplicable("too large")


def scalar_for(rng: random.Random, dtype: str, allow_float: bool = True):
    """A Python scalar to combine with a tensor of `dtype`: its kind mostly, sometimes a float for an int tensor."""
    if dtype == "bool":
        choices = [True, False, 2, -1]   # an int scalar promotes bool to int64, as in PyTorch
        return rng.choice(choices + [1.5]) if allow_float else rng.choice(choices)
    if dtype in FLOATS or (allow_float and rng.random() < 0.2):
        return rng.choice([0.5, 1.5, -2.0, 3.0, 0.25, -0.75, 2.0])
    return rng.choice([1, 2, 3, 5, -1, -3]) if dtype != "uint8" else rng.choice([1, 2, 3, 7])


def lit(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "float('nan')"
        if math.isinf(v):
            return "float('inf')" if v > 0 else "-float('inf')"
    return repr(v)


def broadcast_partner_shape(rng: random.Random, shape: tuple) -> tuple:
    """A shape that broadcasts with `shape`: some dims set to 1, leading dims dropped, or one added in front."""
    out = [s if rng.random() < 0.7 else 1 for s in shape]
    r = rng.random()
    if r < 0.2 and out:
        out = out[rng.randint(1, len(out)):]
    elif r < 0.3 and len(out) < 4:
        out = [rng.choice([1, 2, 3])] + out
    return tuple(out)


def cast_pair(a: Val, b_name: str, b: torch.Tensor) -> tuple[str, str, str, str]:
    """(tj a, tj b, torch a, torch b) spellings, with both operands cast to PyTorch's result dtype when PyTorch's
    dimension-aware promotion differs from the NumPy 2 rule tinyjit follows (SEMANTIC_DIFFERENCES)."""
    rt = torch.result_type(a.tensor, b)
    if rt == torch.promote_types(a.tensor.dtype, b.dtype):
        return a.name, b_name, a.name, b_name
    name = str(rt).replace("torch.", "")
    ta = a.name if a.tensor.dtype == rt else f"{a.name}.cast({dt(name)})"
    tb = b_name if b.dtype == rt else f"{b_name}.cast({dt(name)})"
    pa = a.name if a.tensor.dtype == rt else f"{a.name}.to({dt(name)})"
    pb = b_name if b.dtype == rt else f"{b_name}.to({dt(name)})"
    return ta, tb, pa, pb


def same(code: str, name: str = "", inplace=None) -> Emit:
    return Emit([code], [code], name, inplace)


# ---------------------------------------------------------------------------------------------------------------
# basic indices (PyTorch has no negative steps)
# ---------------------------------------------------------------------------------------------------------------
def random_index(rng: random.Random, shape: tuple) -> list:
    """A basic index for `shape`: per dim an int, a slice (any step but 0, negative ones too) or a full slice, with
    None and Ellipsis now and then."""
    items = []
    for s in shape:
        r = rng.random()
        if r < 0.2 and s > 0:
            items.append(rng.randrange(-s, s))
        elif r < 0.75:
            start = rng.choice([None, 0, 1, -1, -2, 2, s])
            stop = rng.choice([None, None, s, -1, 1, 3, s + 2])
            step = rng.choice([None, 1, 2, 3, -1, -2, -3])
            items.append(slice(start, stop, step))
        else:
            items.append(slice(None))
    if rng.random() < 0.15:
        items.insert(rng.randrange(len(items) + 1), None)
    while items and items[-1] == slice(None) and rng.random() < 0.5:
        items.pop()
    if items and rng.random() < 0.15:
        i = rng.randrange(len(items) + 1)
        j = rng.randrange(i, len(items) + 1)
        if all(it is not None for it in items[i:j]):
            items = items[:i] + [Ellipsis] + items[j:]
    return items


def _item_src(it) -> str:
    if it is None:
        return "None"
    if it is Ellipsis:
        return "..."
    if isinstance(it, int):
        return repr(it)
    s = "" if it.start is None else repr(it.start)
    s += ":" + ("" if it.stop is None else repr(it.stop))
    if it.step is not None:
        s += ":" + repr(it.step)
    return s


def index_src(items: list) -> str:
    return ", ".join(_item_src(it) for it in items) if items else "..."


def torch_index(items: list, shape: tuple) -> tuple[tuple, list]:
    """PyTorch has no negative steps: (dims to flip first, the index to apply to the flipped tensor)."""
    consumed = sum(1 for it in items if it is not None and it is not Ellipsis)
    expanded = []
    for it in items:
        if it is Ellipsis:
            expanded.extend([slice(None)] * (len(shape) - consumed))
        else:
            expanded.append(it)
    if Ellipsis not in items:
        expanded.extend([slice(None)] * (len(shape) - consumed))
    flips, out, dim = [], [], 0
    for it in expanded:
        if it is None:
            out.append(None)
            continue
        if isinstance(it, slice) and it.step is not None and it.step < 0:
            n = shape[dim]
            r = range(*it.indices(n))
            if len(r) == 0:
                out.append(slice(0, 0))
            else:
                flips.append(dim)
                first, step = n - 1 - r[0], -r.step
                out.append(slice(first, first + (len(r) - 1) * step + 1, step if step != 1 else None))
        else:
            out.append(it)
        dim += 1
    return tuple(flips), out
