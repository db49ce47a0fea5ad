"""Render the linear loop program as C for a GPU: one renderer, dialects differ only in a table of spellings.

`CStyleLanguage` below is the renderer; `codegen/opencl.py` and `codegen/cuda.py` subclass it and fill in the
class attributes (kernel and buffer qualifiers, work-item ids, barrier, shared memory, type names, half
precision, math functions, bit casts). Every choice of *what* to compute is made here, once.

Choices made here:
- Every value is one `const` C variable in program order (the program is SSA). Constants are inlined.
- bool buffers hold one byte per element (OpenCL kernels cannot take `bool*`); loads compare with 0.
- half (float16) is a storage type only: values live in `float` registers, loads and stores convert, and every
  operation that produces a half value rounds its float result to half (round to nearest even). For +, -, *,
  / and sqrt this is exactly IEEE half arithmetic (float has more than 2*11+2 significand bits, so rounding
  twice cannot differ from rounding once); transcendental functions are computed in float, as on the CPU
  backend. This needs no cl_khr_fp16 (PoCL on the CPU lacks it) and no half arithmetic on the device.
- max propagates NaN (like torch.maximum and the LLVM backend's llvm.maximum), so it is not C's fmax.
- Float code keeps IEEE semantics: no contraction of a * b + c into an FMA (OpenCL `FP_CONTRACT OFF`, NVRTC
  `--fmad=false`), so a value recomputed in another kernel is bitwise the same; division and sqrt are correctly
  rounded (the OpenCL build option `-cl-fp32-correctly-rounded-divide-sqrt`, NVRTC's default `--prec-div`). The
  one fused multiply-add is explicit: a reduce's accumulator plus a product is `fma(a, b, acc)`, on every device.
- float IDIV is `/` and float MOD is fmod (ops.py). SIN's phase (quarter turns) picks sin or cos and a sign.
- exp2(x * c) for a constant c (how exp is composed) calls a helper that carries the product to twice the
  precision: a rounded x * c would be off by half its ulp, which exp2 turns into a relative error of the result
  (62 ulp near exp(80) in float32).
- Integer results narrower than int are cast back to their type (C promotes char/short operands to int).
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

from tinyjit.dtype import DType, dtypes
from tinyjit.ops import Op

from codegen.llvm_math import scaled_exp2, split_constant
from codegen.total_ops import float_to_int_bounds
from codegen.uops import U, UOp, accumulations

BINARY_OPERATORS = {Op.ADD: "+", Op.MUL: "*", Op.CMPLT: "<", Op.CMPNE: "!=", Op.IDIV: "/", Op.MOD: "%",
                    Op.AND: "&", Op.OR: "|", Op.XOR: "^", Op.SHL: "<<", Op.SHR: ">>"}
MATH_OPS = (Op.EXP2, Op.LOG2, Op.SIN, Op.SQRT)
# the C math functions the renderer calls, by their double-precision name (`float_math` spells them per type)
MATH_FUNCTIONS = ("exp2", "log2", "sin", "cos", "sqrt", "fmod", "fma", "rint", "ldexp", "fabs")
# ops whose half result needs rounding (max, neg, where and comparisons of half inputs are exact; so is fmod)
ROUNDING_OPS = {Op.ADD, Op.MUL, Op.RECIP, Op.IDIV, *MATH_OPS}
# exp2(x * c): past these |x * c| the result is 0 or inf (or NaN) and plain exp2 gives it
_EXP2_SCALED_LIMIT = {dtypes.float32: 256.0, dtypes.float64: 2048.0}
_EXP2_SCALED = """{prefix}{T} tj_exp2_scaled_{sfx}({T} x, {T} c_hi, {T} c_lo) {{
  {T} p = x * c_hi;
  if (!({fabs}(p) < {limit})) return {exp2}(p);
  {T} tail = {fma}(x, c_hi, -p) + x * c_lo;    /* x * (c_hi + c_lo) - p, the part the rounded product lost */
  {T} n = {rint}(p);
  return {ldexp}({exp2}((p - n) + tail), (int)n);
}}"""


class CStyleLanguage:
    device = ""
    gpu = True
    # ---- the table of spellings, filled in by each dialect ----
    kernel_prefix = ""                 # up to the kernel's name, e.g. "__kernel void "; may use {local_size}, {threads}
    buffer_prefix = ""                 # address space of a buffer argument
    buffer_restrict = ""               # after the `*` of a buffer argument
    smem_prefix = ""                   # declaration prefix of work-group shared memory
    barrier = ""
    ids: dict[str, str] = {}           # "group"/"lid"/"gid" -> expression with {dim}
    id_dims = "012"                    # how dimension 0, 1, 2 is spelled in `ids`
    types: dict[DType, str] = {}
    float_math: dict[tuple[str, DType], str] = {}   # (MATH_FUNCTIONS name, float32 or float64) -> C function
    function_prefix = ""               # before a helper function's return type (CUDA: __device__)
    int_suffix: dict[DType, str] = {}  # literal suffixes, e.g. int64 -> "LL"
    infinity = ""                      # float +inf; nan similarly
    nan = ""
    double_infinity = ""
    double_nan = ""
    half_load = ""                     # {buf}, {idx} -> float
    half_store = ""                    # {buf}, {idx}, {value} -> statement
    half_round = ""                    # float -> float rounded to half
    half_from_double = ""              # double -> float holding the half nearest to it
    half_from_bits = ""                # ushort bits -> float
    half_to_bits = ""                  # float -> ushort bits
    bitcast = ""                       # {type}, {value}; `{name}` is the OpenCL-style short type name
    vector_load = ""                   # {vtype}, {buf}, {idx}: 4 consecutive elements from buf + idx
    vector_types = {dtypes.float32: "float4", dtypes.int32: "int4", dtypes.uint32: "uint4"}
    vector_needs_alignment = True      # the address must be a multiple of the vector size (CUDA), or not (vload4)

    # ---- what the pipeline calls ----
    def linearize(self, kernel):
        from codegen.gpu import GPULinearizer
        return GPULinearizer(kernel).linearize()

    def render(self, name: str, uops: list[UOp]) -> tuple[str, str]:
        """(function name, complete source of one kernel)."""
        self._reset()
        self.vectors = vector_groups(uops, self.vector_needs_alignment) if self.vector_load else {}
        self.accumulations = accumulations(uops)
        body = [self._line(u) for u in uops]
        body_lines = [line for lines in body for line in lines]
        digest = hashlib.sha256("\n".join(body_lines).encode()).hexdigest()[:8]
        fname = f"{name}_{digest}"
        args = [self._param(u) for u in uops if u.uop == U.DEFINE_GLOBAL]
        local_size = [1, 1, 1]
        for u in uops:
            if u.uop == U.SPECIAL and u.arg[0] == "lid":
                local_size[u.arg[1]] = u.arg[2]
        prefix = self.kernel_prefix.format(local_size=", ".join(map(str, local_size)),
                                           threads=math.prod(local_size))
        src = self.prelude(uops) + [f"{prefix}{fname}({', '.join(args)}) {{"] + body_lines + ["}"]
        return fname, "\n".join(src) + "\n"

    def prelude(self, uops: list[UOp]) -> list[str]:
        """Lines before the kernel (extensions, includes, helpers); each dialect adds what `uops` need and then
        calls this for the shared math helpers."""
        lines = []
        for dt in (dtypes.float32, dtypes.float64):
            if any(self._scaled_exp2(u, dt) for u in uops):
                spell = {name: self.float_math[(name, dt)] for name in MATH_FUNCTIONS}
                lines.append(_EXP2_SCALED.format(prefix=self.function_prefix, T=self.types[dt], sfx=dt.name,
                                                 limit=self.literal(_EXP2_SCALED_LIMIT[dt], dt), **spell))
        return lines

    @staticmethod
    def _scaled_exp2(u: UOp, compute: DType) -> bool:
        """Whether `u` is an exp2(x * constant) computed in `compute` (float32 for half)."""
        if u.uop != U.ALU or u.arg != Op.EXP2:
            return False
        dt = dtypes.float32 if u.dtype == dtypes.float16 else u.dtype
        return dt == compute and scaled_exp2(u.src[0])[1] is not None

    # ---- helpers for the dialects ----
    @staticmethod
    def uses(uops: list[UOp], dtype: DType) -> bool:
        return any(u.dtype == dtype for u in uops)

    def reg_type(self, dt: DType) -> str:
        return self.types[dtypes.float32] if dt == dtypes.float16 else self.types[dt]

    def mem_type(self, dt: DType) -> str:
        return self.types[dtypes.uint8] if dt == dtypes.bool else self.types[dt]

    def literal(self, value, dt: DType) -> str:
        if dt == dtypes.bool:
            return "true" if value else "false"
        if dt.is_int:
            v = int(np.array(value).astype(dt.np)) if not isinstance(value, bool) else int(value)
            if dt.kind == "i" and v == -(1 << (dt.bits - 1)) and dt.bits >= 32:
                return f"({v + 1}{self.int_suffix.get(dt, '')}-1)"   # the minimum has no literal of its own
            text = f"{v}{self.int_suffix.get(dt, '')}"
            return text if dt.itemsize >= 4 else f"({self.types[dt]}){text}"
        v = float(np.array(value, dtype=dt.np))
        double = dt == dtypes.float64
        if math.isnan(v):
            return self.double_nan if double else self.nan
        if math.isinf(v):
            inf = self.double_infinity if double else self.infinity
            return inf if v > 0 else f"(-{inf})"
        if double:
            return repr(v)
        text = str(np.float32(v))
        return text + ("f" if any(c in text for c in ".en") else ".0f")

    # ---- rendering ----
    def _reset(self) -> None:
        self.names: dict = {}
        self.depth = 1
        self.counter = 0

    def _new(self, u: UOp, prefix: str, numbered: bool = True) -> str:
        self.counter += 1
        name = self.names[id(u)] = f"{prefix}{self.counter}" if numbered else prefix
        return name

    def _ref(self, u: UOp) -> str:
        if u.uop == U.CONST:
            return self.literal(u.arg, u.dtype)
        return self.names[id(u)]

    def _param(self, u: UOp) -> str:
        _, name, is_output = u.arg
        const = "" if is_output else "const "
        return f"{self.buffer_prefix}{const}{self.mem_type(u.dtype)}* {self.buffer_restrict}{name}".rstrip()

    def _define(self, u: UOp, prefix: str, expr: str) -> list[str]:
        name = self._new(u, prefix)
        return [f"{'  ' * self.depth}{self.reg_type(u.dtype)} {name} = {expr};"]

    def _line(self, u: UOp) -> list[str]:
        """The C lines of one UOp (usually one)."""
        ind = "  " * self.depth
        kind = u.uop
        if kind == U.DEFINE_GLOBAL:
            self.names[id(u)] = u.arg[1]
            return []
        if kind == U.CONST:
            return []
        if kind == U.SPECIAL:
            what, dim, _ = u.arg
            spelled = self.ids[what].format(dim=self.id_dims[dim])
            name = self._new(u, {"group": "gidx", "lid": "lidx", "gid": "idx"}[what] + str(dim), numbered=False)
            return [f"{ind}{self.reg_type(u.dtype)} {name} = ({self.reg_type(u.dtype)})({spelled});"]
        if kind == U.DEFINE_LOCAL:
            name, size = u.arg
            self.names[id(u)] = name
            return [f"{ind}{self.smem_prefix}{self.mem_type(self._local_dtype(u.dtype))} {name}[{size}];"]
        if kind == U.LOOP:
            var = self._new(u, u.arg, numbered=False)
            t = self.reg_type(u.dtype)
            self.depth += 1
            return [f"{ind}for ({t} {var} = {self._ref(u.src[0])}; {var} < {self._ref(u.src[1])}; {var}++) {{"]
        if kind == U.IF:
            self.depth += 1
            return [f"{ind}if ({self._ref(u.src[0])}) {{"]
        if kind in (U.ENDLOOP, U.ENDIF):
            self.depth -= 1
            return [f"{'  ' * self.depth}}}"]
        if kind == U.BARRIER:
            return [f"{ind}{self.barrier}"]
        if kind == U.DEFINE_ACC:
            name = self._new(u, "acc")
            return [f"{ind}{self.reg_type(u.dtype)} {name} = {self.literal(u.arg, u.dtype)};"]
        if kind == U.ACC_READ:
            return self._define(u, "v", self._ref(u.src[0]))
        if kind == U.ACC_WRITE:
            return [f"{ind}{self._ref(u.src[0])} = {self._ref(u.src[1])};"]
        if kind == U.LOAD and id(u) in self.vectors:
            return self._vector_lane(u)
        if kind == U.LOAD:
            value = self._load(u.src[0], self._ref(u.src[1]))
            if len(u.src) > 2:
                value = f"({self._ref(u.src[2])} ? {value} : {self.literal(0, u.dtype)})"
            return self._define(u, "val", value)
        if kind == U.STORE:
            return [ind + self._store(u.src[0], self._ref(u.src[1]), self._ref(u.src[2]))]
        if kind == U.ALU:
            return self._define(u, "alu", self._alu(u))
        if kind == U.CAST:
            return self._define(u, "cast", self._cast(u.src[0], u.dtype))
        if kind == U.BITCAST:
            return self._define(u, "cast", self._bitcast(u.src[0], u.dtype))
        raise NotImplementedError(f"{type(self).__name__}: cannot render {kind}")

    def _vector_lane(self, u: UOp) -> list[str]:
        """A lane of a 4-wide load: the first lane met loads the vector, every lane names its component."""
        group, lane, buf, base = self.vectors[id(u)]
        lines = []
        if group not in self.names:
            self.counter += 1
            name = self.names[group] = f"vec{self.counter}"
            vtype = self.vector_types[u.dtype]
            load = self.vector_load.format(vtype=vtype, buf=self._ref(buf), idx=self._ref(base))
            lines.append(f"{'  ' * self.depth}{vtype} {name} = {load};")
        self.names[id(u)] = f"{self.names[group]}.{'xyzw'[lane]}"
        return lines

    @staticmethod
    def _local_dtype(dt: DType) -> DType:
        return dtypes.float32 if dt == dtypes.float16 else dt   # local memory holds register values

    def _load(self, buf: UOp, idx: str) -> str:
        name = self._ref(buf)
        dt = buf.dtype if buf.uop == U.DEFINE_GLOBAL else self._local_dtype(buf.dtype)
        if dt == dtypes.float16:
            return self.half_load.format(buf=name, idx=idx)
        if dt == dtypes.bool:
            return f"({name}[{idx}] != 0)"
        return f"{name}[{idx}]"

    def _store(self, buf: UOp, idx: str, value: str) -> str:
        name = self._ref(buf)
        dt = buf.dtype if buf.uop == U.DEFINE_GLOBAL else self._local_dtype(buf.dtype)
        if dt == dtypes.float16:
            return self.half_store.format(buf=name, idx=idx, value=value)
        if dt == dtypes.bool:
            return f"{name}[{idx}] = ({self.mem_type(dt)})({value});"
        return f"{name}[{idx}] = {value};"

    def _alu(self, u: UOp) -> str:
        op, dt = u.arg, u.dtype
        src_dt = u.src[1].dtype if op == Op.WHERE else u.src[0].dtype
        a = [self._ref(s) for s in u.src]
        if op == Op.WHERE:
            return f"({a[0]} ? {a[1]} : {a[2]})"
        if op == Op.NEG:
            expr = f"(!{a[0]})" if dt == dtypes.bool else f"(-({a[0]}))"   # (-(-3)), never (--3)
        elif op == Op.EXP2 and scaled_exp2(u.src[0])[1] is not None:
            compute = dtypes.float32 if src_dt == dtypes.float16 else src_dt
            x, scale = scaled_exp2(u.src[0])
            hi, lo = split_constant(scale, "double" if compute == dtypes.float64 else "float")
            expr = (f"tj_exp2_scaled_{compute.name}({self._ref(x)}, {self.literal(hi, compute)}, "
                    f"{self.literal(lo, compute)})")
        elif op == Op.SIN:
            compute = dtypes.float32 if src_dt == dtypes.float16 else src_dt
            phase = int(u.src[1].arg) % 4 if len(u.src) > 1 else 0
            expr = f"{self.float_math[('cos' if phase % 2 else 'sin', compute)]}({a[0]})"
            expr = f"(-{expr})" if phase >= 2 else expr
        elif op in MATH_OPS:
            compute = dtypes.float32 if src_dt == dtypes.float16 else src_dt
            expr = f"{self.float_math[(op.name.lower(), compute)]}({a[0]})"
        elif op == Op.MOD and src_dt.is_float:
            compute = dtypes.float32 if src_dt == dtypes.float16 else src_dt
            expr = f"{self.float_math[('fmod', compute)]}({a[0]}, {a[1]})"
        elif op == Op.ADD and src_dt in (dtypes.float32, dtypes.float64) and self._accumulated_product(u):
            acc, product = (u.src[0], u.src[1]) if u.src[0].uop == U.ACC_READ else (u.src[1], u.src[0])
            x, y = (self._ref(s) for s in product.src)
            expr = f"{self.float_math[('fma', src_dt)]}({x}, {y}, {self._ref(acc)})"
        elif op == Op.RECIP:
            expr = f"({self.literal(1.0, src_dt if src_dt != dtypes.float16 else dtypes.float32)}/{a[0]})"
        elif op == Op.MAX:
            if dt == dtypes.bool:
                expr = f"({a[0]} || {a[1]})"
            elif src_dt.is_float:   # NaN in either operand gives NaN
                expr = f"(({a[0]} > {a[1]} || {a[0]} != {a[0]}) ? {a[0]} : {a[1]})"
            else:
                expr = f"({a[0]} > {a[1]} ? {a[0]} : {a[1]})"
        elif dt == dtypes.bool and op in (Op.ADD, Op.MUL):   # the result type decides: bool*int is int math
            expr = f"({a[0]} {'||' if op == Op.ADD else '&&'} {a[1]})"
        elif op in (Op.IDIV, Op.MOD) and not src_dt.is_float:
            expr = self._total_division(op, dt, u.src[1], a[0], a[1])
        elif op in (Op.SHL, Op.SHR) and dt != dtypes.bool:
            expr = self._total_shift(op, dt, u.src[1], a[0], a[1])
        elif op in BINARY_OPERATORS:
            expr = f"({a[0]} {BINARY_OPERATORS[op]} {a[1]})"
        else:
            raise NotImplementedError(f"{type(self).__name__}: ALU {op}")
        if dt == dtypes.float16 and op in ROUNDING_OPS:
            return self.half_round.format(value=expr)
        if dt.is_int and dt.itemsize < 4:
            return f"({self.types[dt]}){expr}"
        return expr

    def _accumulated_product(self, u: UOp) -> bool:
        """Whether the float ADD `u` is a reduce's accumulation of a product: acc = acc + a * b."""
        return id(u) in self.accumulations and any(s.uop == U.ALU and s.arg == Op.MUL for s in u.src)
    # ---- ops undefined in C for some inputs, made total (codegen/total_ops.py; the results are in ops.py) ----
    def _total_division(self, op: Op, dt: DType, divisor: UOp, a: str, b: str) -> str:
        """x / 0 = x % 0 = 0, MIN / -1 = MIN (wraps), x % -1 = 0; the division itself only runs where it cannot
        trap. A constant divisor other than 0 (and -1 when signed) needs no guard (index math)."""
        symbol = "/" if op == Op.IDIV else "%"
        signed = dt.kind == "i"
        zero = self.literal(0, dt)
        negated = f"({self.types[dt]})({self.literal(0, _UNSIGNED[dt])} - ({self.types[_UNSIGNED[dt]]})({a}))" \
            if signed else ""
        if divisor.uop == U.CONST:   # known divisor: no test
            if int(divisor.arg) == 0 or (signed and int(divisor.arg) == -1 and op == Op.MOD):
                return zero
            return negated if signed and int(divisor.arg) == -1 else f"({a} {symbol} {b})"
        if not signed:
            return f"({b} == {zero} ? {zero} : {a} {symbol} {b})"
        if op == Op.MOD:
            return f"({b} == {zero} || {b} == {self.literal(-1, dt)} ? {zero} : {a} {symbol} {b})"
        return f"({b} == {zero} ? {zero} : {b} == {self.literal(-1, dt)} ? {negated} : {a} / {b})"

    def _total_shift(self, op: Op, dt: DType, amount: UOp, a: str, b: str) -> str:
        """Shifts by any amount, as PyTorch: >= the bit width (or negative) shifts every bit out, leaving 0 or, for
        an arithmetic right shift, the sign. A left shift is done unsigned (shifting a negative value is undefined
        in C)."""
        bits, signed = dt.bits, dt.kind == "i"
        unsigned = self.types[_UNSIGNED[dt]] if signed else self.types[dt]
        if amount.uop == U.CONST:   # known amount: no test (and no compiler warning about a too wide shift)
            if 0 <= int(amount.arg) < bits:
                return f"({self.types[dt]})(({unsigned})({a}) << {b})" if op == Op.SHL else f"({a} >> {b})"
            return f"({a} >> {bits - 1})" if op == Op.SHR and signed else self.literal(0, dt)
        too_far = f"({unsigned})({b}) >= {bits}u"
        if op == Op.SHL:
            return f"({too_far} ? {self.literal(0, dt)} : ({self.types[dt]})(({unsigned})({a}) << {b}))"
        if signed:
            return f"({a} >> ({too_far} ? {self.literal(bits - 1, dt)} : {b}))"
        return f"({too_far} ? {self.literal(0, dt)} : {a} >> {b})"

    def _float_to_int(self, frm: DType, to: DType, v: str) -> str:
        """Truncation toward zero inside the int type's range; NaN, +-inf and values outside give 100...0."""
        via, lo, inclusive, hi = float_to_int_bounds(frm, to)
        compute = dtypes.float32 if frm == dtypes.float16 else frm
        inside = f"{v} {'>=' if inclusive else '>'} {self.literal(lo, compute)} && {v} < {self.literal(hi, compute)}"
        fallback = self.literal(-(1 << (via.bits - 1)) if not via.is_unsigned else 1 << (via.bits - 1), via)
        converted = f"({inside} ? ({self.types[via]})({v}) : {fallback})"
        return converted if via == to else f"({self.types[to]}){converted}"

    def _cast(self, src: UOp, to: DType) -> str:
        frm, v = src.dtype, self._ref(src)
        if frm == to:
            return v
        if to == dtypes.bool:
            return f"({v} != {self.literal(0, frm)})"
        if frm.is_float and to.is_int:
            return self._float_to_int(frm, to, v)
        if to == dtypes.float16:
            if frm == dtypes.float64:
                return self.half_from_double.format(value=v)
            return self.half_round.format(value=f"({self.types[dtypes.float32]})({v})")
        return f"({self.types[to]})({v})"

    def _bitcast(self, src: UOp, to: DType) -> str:
        frm, v = src.dtype, self._ref(src)
        if frm == dtypes.float16:
            return f"({self.types[to]})({self.half_to_bits.format(value=v)})"
        if to == dtypes.float16:
            return self.half_from_bits.format(value=f"({self.types[dtypes.uint16]})({v})")
        return self.bitcast.format(type=self.types[to], name=self.types[to].replace("unsigned ", "u"), value=v)


_UNSIGNED = {dtypes.int8: dtypes.uint8, dtypes.int16: dtypes.uint16, dtypes.int32: dtypes.uint32,
             dtypes.int64: dtypes.uint64}

VECTOR_DTYPES = (dtypes.float32, dtypes.int32, dtypes.uint32)   # 4-byte elements: a 4-wide vector is 16 bytes


def _split_offset(index: UOp) -> tuple[UOp, int]:
    """index == base + constant: (base, constant); the linearizer puts constants last in index sums."""
    if index.uop == U.ALU and index.arg == Op.ADD and index.src[1].uop == U.CONST:
        return index.src[0], int(index.src[1].arg)
    return index, 0


def _multiple_of(u: UOp, n: int) -> bool:
    """Whether the integer value of `u` is a multiple of n for every work-item (a sufficient check)."""
    if u.uop == U.CONST:
        return int(u.arg) % n == 0
    if u.uop == U.ALU and u.arg == Op.MUL:
        return any(_multiple_of(s, n) for s in u.src)
    if u.uop == U.ALU and u.arg == Op.ADD:
        return all(_multiple_of(s, n) for s in u.src)
    return False


def vector_groups(uops: list[UOp], need_alignment: bool) -> dict:
    """Loads that can be one 4-wide vector load: four unmasked loads of 4-byte elements from the same buffer at
    base+c .. base+c+3, in the same block, with c a multiple of 4 (and base too when the dialect's vector loads
    need aligned addresses; a buffer itself is always aligned). id(load) -> (group, lane, buffer, base index)."""
    block, blocks, candidates = 0, [0], {}
    for u in uops:
        if u.uop in (U.LOOP, U.IF):
            block += 1
            blocks.append(block)
        elif u.uop in (U.ENDLOOP, U.ENDIF):
            blocks.pop()
        elif (u.uop == U.LOAD and len(u.src) == 2 and u.dtype in VECTOR_DTYPES
              and u.src[0].uop == U.DEFINE_GLOBAL):
            base, offset = _split_offset(u.src[1])
            candidates.setdefault((blocks[-1], id(u.src[0]), id(base), offset // 4), {})[offset % 4] = (u, base)
    groups = {}
    for key, lanes in candidates.items():
        if len(lanes) != 4:
            continue
        base, start = lanes[0][1], key[3] * 4
        if need_alignment and not _multiple_of(base, 4):
            continue
        if start:   # base + start: an index value that exists only in this group
            continue
        for lane, (u, _) in lanes.items():
            groups[id(u)] = (("vec",) + key, lane, u.src[0], base)
    return groups
