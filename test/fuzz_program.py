"""Differential fuzzer, the programs: random chains of 3-8 public Tensor ops, run by tinyjit and by PyTorch (CPU),
compared. The command line, shrinking and campaigns are in test/fuzz_ops.py.

A case is made from one seed (`generate(seed)`): one or two input tensors (random shape, 0-d, size 0 and size 1
included, and dtype) and a list of steps, each an op from `fuzz_op_table.OPS` applied to an earlier value, with its
own seed for the op's choices. `build(case)` turns it into two programs, tinyjit's and PyTorch's, as Python source
(so a failure prints a reproducer that is exactly what ran), running PyTorch as it goes to learn shapes and dtypes.
tinyjit's program realizes some values part way (`.realize()`, and `Tensor.realize_all` of its outputs in half the
cases); PyTorch's is eager.

What is compared (`compare`): PyTorch raises at a step <=> tinyjit raises by the time the values are read; every
output (a value no later step reads), every value realized part way and every tensor updated in place (shape, dtype,
values); whether each output requires grad; and, when some do, the gradient of the sum of `(out * w).sum()` (a fixed
random `w` per output) with respect to every float input (present or not, values). Integer and bool results must be
equal, floats within a tolerance per dtype (`TOLERANCE`) widened where PyTorch's own result is ill-conditioned: by how
far PyTorch in the case's dtypes is from the same program run in float64, and by how far that float64 result moves
when the uniformly drawn inputs get float32-sized rounding errors (8 ulps; up to 1e-3 of the value). NaN and inf
positions must match.
"""
from __future__ import annotations

import math
import os
import random
import re
import sys
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fuzz_op_table import INVALID_OPS, OPS  # noqa: E402
from fuzz_support import (DTYPES, FLOATS, NO_KERNEL_ERRORS, Aux, Ctx, NotApplicable, Val, check_cap,  # noqa: E402
                          default_dist)

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=r".*(var|std)\(\).*degrees of freedom", category=UserWarning)
warnings.filterwarnings("ignore", category=RuntimeWarning)

# (atol, rtol) per dtype of a compared float value, before widening by PyTorch's own error (see module docstring)
TOLERANCE = {"float16": (1e-3, 2e-3), "float32": (1e-5, 2e-5), "float64": (1e-12, 1e-10)}
# how many times PyTorch's own distance from the float64 result tinyjit may be off by (different rounding orders
# and fused intermediates make the error of each a similar size, not the same)
CONDITIONING = 4.0

Exclude = Callable[[str, Ctx, dict], bool]


def no_exclusions(op: str, ctx: Ctx, details: dict) -> bool:
    return False


# ---------------------------------------------------------------------------------------------------------------
# the description of a case
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    op: str            # a key of OPS
    arg: int           # which value it applies to (inputs first, then one value per step)
    seed: int          # seeds the op's choices
    realize: bool      # tinyjit realizes the result right away
    invalid: bool = False   # the step must raise (the last step of an error-parity case)


@dataclass(frozen=True)
class Case:
    seed: int
    inputs: tuple      # of Aux
    steps: tuple       # of Step
    grad: bool = True  # also compare gradients


class BuildError(Exception):
    """The case does not make a valid program (an op does not apply, or PyTorch raised where it should not)."""


@dataclass
class Program:
    case: Case
    inputs: list       # every Aux, in order of creation
    lines: list        # (tinyjit line or None, torch line or None, step index)
    output: str        # the name of the final value
    compared: list     # names whose values are compared (output, realized, updated in place)
    error_step: Optional[int] = None   # the step where PyTorch raises (error-parity cases)
    torch_error: str = ""
    op_names: list = field(default_factory=list)   # the op of each step with its main choice, for classification
    sinks: list = field(default_factory=list)      # values no later step reads (the final value among them)
    dtypes: dict = field(default_factory=dict)     # value name -> torch dtype name


def _random_shape(rng: random.Random) -> tuple:
    ndim = rng.choices([0, 1, 2, 3, 4], weights=[1, 3, 4, 3, 1])[0]
    dims = []
    for _ in range(ndim):
        dims.append(rng.choices([0, 1, 2, 3, 4, 5, 7, 8, 16, 33], weights=[1, 5, 5, 5, 4, 3, 2, 2, 1, 1])[0])
    while math.prod(dims) > 2000:
        dims[dims.index(max(dims))] //= 2
    return tuple(dims)


def _random_input(rng: random.Random, name: str) -> Aux:
    dtype = rng.choices(DTYPES, weights=[6, 2, 2, 1, 1, 1])[0]
    return Aux(name, _random_shape(rng), dtype, default_dist(rng, dtype), rng.getrandbits(31),
               dtype in FLOATS and rng.random() < 0.9)


def generate(seed: int, exclude: Exclude = no_exclusions) -> Case:
    """A valid case from `seed`: steps are drawn until 3-8 of them apply (an op that does not suit its operand or
    that PyTorch rejects is drawn again). Now and then the last step is one PyTorch raises on."""
    rng = random.Random(seed)
    inputs = tuple(_random_input(rng, f"x{i}") for i in range(1 if rng.random() < 0.7 else 2))
    # an input the exclusion list rules out (e.g. an empty tensor that requires grad) does not require grad
    inputs = tuple(replace(a, requires_grad=False) if a.requires_grad and exclude("input", None, {"input": a})
                   else a for a in inputs)
    n_steps = rng.randint(3, 8)
    names, weights = zip(*((k, w) for k, (_, w) in OPS.items()))
    steps: list[Step] = []
    for _attempt in range(20 * n_steps):
        if len(steps) == n_steps:
            break
        n_values = len(inputs) + len(steps)
        arg = n_values - 1 if rng.random() < 0.75 or n_values == 1 else rng.randrange(n_values)
        invalid = len(steps) == n_steps - 1 and rng.random() < 0.04
        op = rng.choice(INVALID_OPS) if invalid else rng.choices(names, weights)[0]
        step = Step(op, arg, rng.getrandbits(31), rng.random() < 0.2, invalid)
        candidate = Case(seed, inputs, tuple(steps) + (step,))
        try:
            build(candidate, exclude)
        except BuildError as e:
            torch_raised = isinstance(e.__cause__, Exception) and not isinstance(e.__cause__, NotApplicable)
            if torch_raised and not re.search(NO_KERNEL_ERRORS, str(e.__cause__)) and rng.random() < 0.15:
                # keep an op PyTorch raises on as the last step: tinyjit must raise too
                steps.append(replace(step, invalid=True))
                break
            continue
        steps.append(step)
        if step.invalid:
            break
    return Case(seed, inputs, tuple(steps), grad=rng.random() < 0.85)


# ---------------------------------------------------------------------------------------------------------------
# building the two programs
# ---------------------------------------------------------------------------------------------------------------
def _input_lines(a: Aux) -> tuple[str, str]:
    grad = ", requires_grad=True" if a.requires_grad else ""
    return (f"{a.name} = Tensor({a.data_src()}, device=DEVICE{grad})",
            f"{a.name} = torch.tensor({a.data_src()}, dtype=@dt:{a.dtype}@{grad})")


def _fill(line: str, out: str) -> str:
    return line.replace("@out", out)


def build(case: Case, exclude: Exclude = no_exclusions) -> Program:
    """The tinyjit and PyTorch programs of `case`. PyTorch runs as the program is built (its values decide the
    ops' choices), so a case PyTorch rejects raises BuildError unless the failing step is marked invalid."""
    ns = _torch_namespace(float64=False)
    inputs = list(case.inputs)
    lines: list[tuple] = []
    values: list[Val] = []
    compared: list[str] = []
    op_names: list[str] = []
    for a in case.inputs:
        tj, pt = _input_lines(a)
        lines.append((tj, pt, -1))
        _exec_torch(_torch_src(pt, False), ns)
        values.append(Val(a.name, ns[a.name]))
    program = Program(case, inputs, lines, "", compared, op_names=op_names)
    for k, step in enumerate(case.steps):
        if not 0 <= step.arg < len(values):
            raise BuildError(f"step {k} reads value {step.arg} of {len(values)}")
        x = values[step.arg]
        ctx = Ctx(random.Random(step.seed), x, list(values), exclude, prefix=f"a{k}_", invalid=step.invalid,
                  history=tuple(op_names))
        try:
            emit = OPS[step.op][0](ctx)
        except NotApplicable as e:
            raise BuildError(f"step {k}: {step.op} does not apply: {e}") from e
        out = f"t{k}"
        for a in ctx.aux_inputs:
            tj, pt = _input_lines(a)
            lines.append((tj, pt, k))
            inputs.append(a)
            _exec_torch(_torch_src(pt, False), ns)
        step_lines = [(_fill(tj, out), _fill(pt, out), k) for tj, pt in zip(emit.tj, emit.torch)]
        try:
            for _, pt, _ in step_lines:
                _exec_torch(_torch_src(pt, False), ns)
        except Exception as e:   # any PyTorch error
            if step.invalid and k == len(case.steps) - 1:
                lines.extend(step_lines)
                op_names.append(emit.name)
                program.error_step, program.torch_error = k, f"{type(e).__name__}: {e}".splitlines()[0][:200]
                program.output = values[-1].name
                return program
            raise BuildError(f"step {k}: PyTorch raised {type(e).__name__}: {e}") from e
        if step.invalid:
            raise BuildError(f"step {k}: {emit.name} was to raise but PyTorch did not")
        result = ns[out]
        if not isinstance(result, torch.Tensor):
            raise BuildError(f"step {k}: {emit.name} gave a {type(result).__name__}")
        try:
            check_cap(result, x.tensor)
            ctx.skip("result", emit=emit.name, result=result)
        except NotApplicable as e:
            raise BuildError(f"step {k}: {e}") from e
        lines.extend(step_lines)
        op_names.append(emit.name)
        values.append(Val(out, result))
        if emit.inplace:
            compared.append(out)
        if step.realize:
            lines.append((f"{out}.realize()", None, k))
            compared.append(out)
    program.output = values[-1].name
    # every value no later step reads is an output: compared, and part of the loss for gradients
    read = {name for tj, pt, k in lines if tj is not None and pt is not None and k >= 0
            for name in re.findall(r"\b[xt]\d+\b", tj[len(f"t{k}"):] if tj.startswith(f"t{k}") else tj)}
    program.sinks = [v.name for v in values[len(case.inputs):] if v.name not in read or v.name == program.output]
    for name in program.sinks:
        if name not in compared:
            compared.append(name)
    if len(compared) > 1 and case.seed % 2 == 0:   # half the cases realize their outputs in one schedule
        lines.append((f"Tensor.realize_all({', '.join(compared)})", None, len(case.steps)))
    program.dtypes = {v.name: v.dtype for v in values}
    return program


def _torch_namespace(float64: bool) -> dict:
    return {"torch": torch, "F": F, "np": np, "__float64": float64}


def _torch_src(line: str, float64: bool) -> str:
    def sub(m):
        name = m.group(1)
        return "torch.float64" if float64 and name in FLOATS else f"torch.{name}"
    return re.sub(r"@dt:(\w+)@", sub, line)


def _tj_src(line: str) -> str:
    return re.sub(r"@dt:(\w+)@", r"dtypes.\1", line)


def _exec_torch(src: str, ns: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(src, ns)   # our own generated program


# ---------------------------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    error: Optional[tuple] = None          # (step, exception class, message) of the first error
    values: dict = field(default_factory=dict)    # name -> np.ndarray
    dtypes: dict = field(default_factory=dict)    # name -> dtype name
    requires_grad: dict = field(default_factory=dict)   # output name -> requires grad
    grads: dict = field(default_factory=dict)     # input name -> np.ndarray or None
    backward_error: Optional[str] = None


def _grad_lines(program: Program, fw: str, outputs: list[str]) -> list[str]:
    """Backward of the sum of (out * w).sum() over `outputs`, each w a fixed random tensor of out's shape and
    dtype."""
    lines, terms = [], []
    for i, out in enumerate(outputs):
        dtype = program.dtypes.get(out, "float32")
        data = f"np.random.default_rng({(program.case.seed + i) % 2 ** 31}).uniform(-1.0, 1.0, tuple({out}.shape))"
        data += f".astype(np.{dtype})"
        lines.append(f"w{i} = Tensor({data}, device=DEVICE)" if fw == "tj" else
                     f"w{i} = torch.tensor({data}, dtype=@dt:{dtype}@)")
        terms.append(f"({out} * w{i}).sum()")
    return lines + [f"({' + '.join(terms)}).backward()"]


def run_torch(program: Program, float64: bool = False, perturb: bool = False) -> Outcome:
    """Run PyTorch's program (in float64 for the reference). `perturb`: float inputs drawn uniformly are first
    multiplied by 1 + u * 2**-21 (u uniform in [-1, 1], a fixed seed): a backward error of 8 float32 ulps per input,
    the size float32 sums of tens to hundreds of elements have, so the distance of that result from the unperturbed
    float64 one measures how much such rounding errors move the result (the conditioning of the case, which
    PyTorch's own float32 result can underestimate by luck)."""
    ns = _torch_namespace(float64)
    result = Outcome()
    rng, perturbed = np.random.default_rng(0), set()
    for _, pt, k in program.lines:
        if pt is None:
            continue
        try:
            _exec_torch(_torch_src(pt, float64), ns)
        except Exception as e:
            result.error = (k, type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
            return result
        for a in program.inputs if perturb else ():
            t = ns.get(a.name)
            if a.name in perturbed or not isinstance(t, torch.Tensor) or not t.dtype.is_floating_point or \
                    a.dist[0] != "uniform":   # (exact values chosen for ties and special points stay exact)
                continue
            perturbed.add(a.name)
            with torch.no_grad():
                t.mul_(torch.from_numpy(np.asarray(1 + rng.uniform(-1, 1, tuple(t.shape)) * 2.0 ** -21)).to(t.dtype))
    for name in program.compared:
        t = ns[name]
        result.values[name] = t.detach().numpy().copy()
        result.dtypes[name] = str(t.dtype).replace("torch.", "")
    result.requires_grad = {name: bool(ns[name].requires_grad) for name in program.sinks}
    grad_outputs = [name for name in program.sinks if result.requires_grad[name]]
    if program.case.grad and grad_outputs:
        try:
            for line in _grad_lines(program, "torch", grad_outputs):
                _exec_torch(_torch_src(line, float64), ns)
        except Exception as e:
            result.backward_error = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            return result
        for a in program.inputs:
            if a.requires_grad:
                g = ns[a.name].grad
                result.grads[a.name] = None if g is None else g.numpy().copy()
    return result


def run_tinyjit(program: Program, device: str, grad_outputs: list[str]) -> Outcome:
    from tinyjit import Tensor, dtypes
    ns = {"Tensor": Tensor, "dtypes": dtypes, "np": np, "DEVICE": device}
    result = Outcome()
    step = -1
    try:
        for tj, _, k in program.lines:
            step = k
            if tj is not None:
                exec(_tj_src(tj), ns)
        if program.error_step is not None and f"t{program.error_step}" in ns:
            ns[f"t{program.error_step}"].realize()   # a deferred index check raises here (SEMANTIC_DIFFERENCES)
        step = len(program.case.steps)   # errors while reading the values: at realize
        for name in program.compared:
            t = ns[name]
            result.values[name] = t.numpy().copy()
            result.dtypes[name] = t.dtype.name
        result.requires_grad = {name: bool(ns[name].requires_grad) for name in program.sinks}
    except Exception as e:
        result.error = (step, type(e).__name__, f"{e}".splitlines()[0][:200] if str(e) else "")
        return result
    if program.case.grad and grad_outputs:
        try:
            for line in _grad_lines(program, "tj", grad_outputs):
                exec(_tj_src(line), ns)
            for a in program.inputs:
                if a.requires_grad:
                    g = ns[a.name].grad
                    result.grads[a.name] = None if g is None else g.numpy().copy()
        except Exception as e:
            result.backward_error = f"{type(e).__name__}: {e}".splitlines()[0][:200]
    return result


# ---------------------------------------------------------------------------------------------------------------
# comparing
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Failure:
    kind: str          # value, grad, dtype, shape, requires_grad, error, no-error, backward-error, crash
    where: str         # the value or input name
    detail: str

    def signature(self) -> str:
        return self.kind


def _mismatch(actual: np.ndarray, expected: np.ndarray, ref64: Optional[np.ndarray], dtype: str,
              perturbed64: Optional[np.ndarray] = None) -> Optional[str]:
    """None if `actual` matches `expected` (see the module docstring), else a description of the worst element."""
    if actual.shape != expected.shape:
        return f"shape {actual.shape} != {expected.shape}"
    if actual.size == 0:
        return None
    ref = ref64 if ref64 is not None and ref64.shape == expected.shape else None
    if dtype not in TOLERANCE:   # ints and bools: exact, except where PyTorch itself flips in float64
        bad = actual != expected
        if ref is not None:
            bad &= (expected.astype(np.float64) == ref.astype(np.float64)) | np.isnan(ref.astype(np.float64))
        return _describe(bad, actual, expected) if bad.any() else None
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    r = ref.astype(np.float64) if ref is not None else e
    # where PyTorch's own nan/inf-ness changes in float64 the position is unstable: no check there
    unstable = (np.isnan(e) != np.isnan(r)) | (np.isinf(e) & (e != r)) | (np.isinf(r) & (e != r))
    special = (np.isnan(e) | np.isinf(e)) & ~unstable
    bad_special = special & ~((np.isnan(a) & np.isnan(e)) | (a == e))
    atol, rtol = TOLERANCE[dtype]
    finite = ~special & ~unstable
    with np.errstate(invalid="ignore", over="ignore"):
        allowed = atol + rtol * np.abs(e) + CONDITIONING * np.abs(e - r)
        if perturbed64 is not None and perturbed64.shape == expected.shape:
            # (capped: a jump at a discontinuity, floor or a comparison flipping, must not excuse anything)
            sensitivity = np.minimum(np.abs(perturbed64.astype(np.float64) - r), 1e-3 * np.abs(r))
            allowed = allowed + CONDITIONING * np.where(np.isfinite(sensitivity), sensitivity, 0)
        bad_finite = finite & ~(np.abs(a - e) <= allowed)
    bad = bad_special | bad_finite
    return _describe(bad, actual, expected) if bad.any() else None


def _describe(bad: np.ndarray, actual: np.ndarray, expected: np.ndarray) -> str:
    idx = tuple(int(i[0]) for i in np.nonzero(bad)) if bad.ndim else ()
    n = int(bad.sum())
    return (f"{n} of {bad.size} elements differ, e.g. at {idx}: tinyjit {actual[idx]!r} vs torch {expected[idx]!r}")


def _tolerance_dtype(program: Program, dtype: str) -> str:
    """A float value computed through half precision anywhere in the program is held to half's tolerance."""
    through_half = "float16" in program.dtypes.values() or any(a.dtype == "float16" for a in program.inputs)
    return "float16" if through_half and dtype in TOLERANCE else dtype


def compare(program: Program, tj: Outcome, pt: Outcome, ref: Optional[Outcome],
            perturbed: Optional[Outcome] = None) -> Optional[Failure]:
    if program.error_step is not None or pt.error is not None:
        if tj.error is None:
            return Failure("no-error", f"step {program.error_step}", f"torch raised at step {program.error_step} "
                                                       f"({program.torch_error}); tinyjit did not")
        return None
    if tj.error is not None:
        step, cls, msg = tj.error
        return Failure("error", f"step {step}", f"tinyjit raised {cls}: {msg}")
    for name in program.compared:
        if tj.dtypes[name] != pt.dtypes[name]:
            return Failure("dtype", name, f"tinyjit {tj.dtypes[name]} vs torch {pt.dtypes[name]}")
        if tj.values[name].shape != pt.values[name].shape:
            return Failure("shape", name, f"tinyjit {tj.values[name].shape} vs torch {pt.values[name].shape}")
    for name in program.compared:
        bad = _mismatch(tj.values[name], pt.values[name], ref.values.get(name) if ref else None,
                        _tolerance_dtype(program, pt.dtypes[name]), perturbed.values.get(name) if perturbed else None)
        if bad:
            return Failure("value", name, bad)
    for name in program.sinks:
        if tj.requires_grad[name] != pt.requires_grad[name]:
            return Failure("requires_grad", name, f"tinyjit {tj.requires_grad[name]} vs torch "
                                                  f"{pt.requires_grad[name]}")
    if pt.backward_error is not None or tj.backward_error is not None:
        if pt.backward_error and re.search(NO_KERNEL_ERRORS, pt.backward_error):
            return None
        return Failure("backward-error", program.output, f"tinyjit: {tj.backward_error}; torch: {pt.backward_error}")
    for name, expected in pt.grads.items():
        actual = tj.grads.get(name)
        if (actual is None) != (expected is None):
            return Failure("grad", name, f"tinyjit grad {'None' if actual is None else 'present'} vs torch "
                                         f"{'None' if expected is None else 'present'}")
        if expected is None:
            continue
        dtype = _tolerance_dtype(program, str(expected.dtype))
        bad = _mismatch(actual.astype(expected.dtype) if actual.dtype != expected.dtype else actual, expected,
                        ref.grads.get(name) if ref else None, dtype, perturbed.grads.get(name) if perturbed else None)
        if actual.dtype != expected.dtype:
            bad = bad or f"dtype {actual.dtype} vs {expected.dtype}"
        if bad:
            return Failure("grad", name, bad)
    return None


def check(case: Case, device: str, exclude: Exclude = no_exclusions) -> tuple[Optional[Failure], Program]:
    """Build, run both and compare. Raises BuildError for a case that is not a valid program."""
    program = build(case, exclude)
    pt = run_torch(program)
    if pt.backward_error and re.search(NO_KERNEL_ERRORS, pt.backward_error):
        program.case = replace(case, grad=False)   # SEMANTIC_DIFFERENCES: only PyTorch refuses this backward
        pt = run_torch(program)
    ref = run_torch(program, float64=True) if program.error_step is None else None
    if ref is not None and ref.error is not None:
        ref = None
    perturbed = run_torch(program, float64=True, perturb=True) if ref is not None else None
    if perturbed is not None and (perturbed.error is not None or perturbed.backward_error is not None):
        perturbed = None
    tj = run_tinyjit(program, device, _grad_outputs(pt, program))
    return compare(program, tj, pt, ref, perturbed), program


def _grad_outputs(pt: Outcome, program: Program) -> list[str]:
    return [name for name in program.sinks if pt.requires_grad.get(name)]
