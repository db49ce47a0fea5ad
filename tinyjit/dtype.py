"""Data types and the NumPy/PyTorch type promotion rules."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=True)
class DType:
    name: str        # e.g. "float32"
    itemsize: int    # bytes
    kind: str        # "b" bool, "i" signed int, "u" unsigned int, "f" float
    priority: int    # order used for promotion inside a kind

    def __eq__(self, other):
        # the dtypes are singletons (dtypes.*): identity first; the generated field-by-field compare builds two tuples
        if self is other:
            return True
        if other.__class__ is not DType:
            return NotImplemented   # (as the generated one: the other operand's __eq__ may know DTypes)
        return self.name == other.name and self.itemsize == other.itemsize and self.kind == other.kind and \
            self.priority == other.priority

    def __hash__(self) -> int:
        # the name alone tells dtypes apart; hashing it (a str caches its hash) is several times cheaper than the
        # dataclass's hash of all fields, and dtypes are in every graph node's schedule-cache key
        return hash(self.name)

    @property
    def np(self) -> np.dtype:
        return np.dtype(self.name if self.name != "bool" else np.bool_)

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.kind in "iu"

    @property
    def is_unsigned(self) -> bool:
        return self.kind == "u"

    @property
    def bits(self) -> int:
        return 1 if self.kind == "b" else self.itemsize * 8

    def __repr__(self) -> str:
        return f"dtypes.{self.name}"


class dtypes:
    bool = DType("bool", 1, "b", 0)
    int8 = DType("int8", 1, "i", 1)
    int16 = DType("int16", 2, "i", 2)
    int32 = DType("int32", 4, "i", 3)
    int64 = DType("int64", 8, "i", 4)
    uint8 = DType("uint8", 1, "u", 1)
    uint16 = DType("uint16", 2, "u", 2)
    uint32 = DType("uint32", 4, "u", 3)
    uint64 = DType("uint64", 8, "u", 4)
    float16 = DType("float16", 2, "f", 1)
    float32 = DType("float32", 4, "f", 2)
    float64 = DType("float64", 8, "f", 3)
    half, float, double, int, long, char, uchar = float16, float32, float64, int32, int64, int8, uint8

    default_float = float32
    default_int = int64   # Python ints make int64 tensors, as in PyTorch

    @staticmethod
    def all() -> list[DType]:
        return [dtypes.bool, dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64, dtypes.uint8, dtypes.uint16,
                dtypes.uint32, dtypes.uint64, dtypes.float16, dtypes.float32, dtypes.float64]

    @staticmethod
    def from_np(npdtype) -> DType:
        try:
            npdtype = np.dtype(npdtype)
        except Exception:
            raise TypeError(f"unsupported dtype {npdtype!r}; supported: {_supported()}") from None
        for dt in dtypes.all():
            if dt.np == npdtype:
                return dt
        raise TypeError(f"unsupported dtype {npdtype}; supported: {_supported()}")

    @staticmethod
    def from_any(x) -> DType:
        """Accept a DType, a numpy dtype, a name ('float32'), a Python type (float, int, bool) or a torch dtype
        (matched by name, torch is not imported)."""
        if isinstance(x, DType):
            return x
        if x is float:
            return dtypes.default_float
        if x is int:
            return dtypes.default_int
        if x is bool:
            return dtypes.bool
        name = str(x)[len("torch."):] if type(x).__module__ == "torch" and str(x).startswith("torch.") else x
        if isinstance(name, str):
            if isinstance(getattr(dtypes, name, None), DType):
                return getattr(dtypes, name)
            if name is not x:
                raise TypeError(f"unsupported dtype {x!r}; supported: {_supported()}")
        return dtypes.from_np(x)   # numpy dtypes and their spellings ("f4", np.float32)

    @staticmethod
    def from_py(x) -> DType:
        """The dtype a Python scalar gets when it becomes a tensor on its own (PyTorch's): bool, int64 for an int
        (uint64 from 2**63 on, never a wrapped value; OverflowError past uint64), the default float for a float."""
        if isinstance(x, bool):
            return dtypes.bool
        if isinstance(x, int):
            for dt in (dtypes.default_int, dtypes.uint64):
                if fits(x, dt):
                    return dt
            raise OverflowError(f"the Python int {x} does not fit any tensor dtype (int64 or uint64)")
        return dtypes.default_float

    @staticmethod
    def int_range(dt: DType) -> tuple[int, int]:
        """(lowest, highest) value of an int or bool dtype."""
        if dt.kind == "b":
            return 0, 1
        if dt.is_unsigned:
            return 0, (1 << dt.bits) - 1
        return -(1 << (dt.bits - 1)), (1 << (dt.bits - 1)) - 1


def _supported() -> str:
    return ", ".join(d.name for d in dtypes.all())


def promote(a: DType, b: DType) -> DType:
    """Result dtype of a binary op between two tensors: PyTorch's table (test/test_dtypes.py checks every pair).
    Where PyTorch has no rule, NumPy's: uint16/32/64 with a signed int widen to the next signed int (float64 for
    uint64). An int with a float always gives the float (PyTorch; NumPy would widen int32 + float16 to float64).
    0-d tensors promote like any tensor (NumPy 2; PyTorch lets a dimensioned tensor win within a kind)."""
    if a == b:
        return a
    if a.kind == "b":
        return b
    if b.kind == "b":
        return a
    if a.is_float or b.is_float:
        if a.is_float and b.is_float:
            return a if a.priority > b.priority else b
        return a if a.is_float else b
    if a.kind == b.kind:
        return a if a.priority > b.priority else b
    signed, unsigned = (a, b) if a.kind == "i" else (b, a)
    if signed.itemsize > unsigned.itemsize:
        return signed
    # a signed type that holds every value of the unsigned one: one size up (uint8+int8 -> int16)
    for cand in (dtypes.int16, dtypes.int32, dtypes.int64):
        if cand.itemsize > unsigned.itemsize:
            return cand
    return dtypes.float64  # uint64 with a signed int (NumPy's choice; PyTorch has no uint64 math)


def fits(value: int, dt: DType) -> bool:
    """Whether the Python int `value` is a value of the int dtype `dt`."""
    lo, hi = dtypes.int_range(dt)
    return lo <= value <= hi


def scalar_result_dtype(tensor_dtype: DType, scalar) -> DType:
    """Dtype of `tensor op python_scalar`: a scalar only changes the kind (int tensor * 1.5 -> float), like
    PyTorch: an int scalar keeps an int tensor's dtype (int32 + 1 is int32), and with a bool tensor gives int64.

    An int scalar that fits neither the tensor's dtype nor int32 is not wrapped into the tensor's
    dtype (PyTorch wraps: int32 tensor + 2**40 adds 0): it takes part as the int64 (or uint64) it is, so
    `int32 + 2**40` is int64 and exact, and `int32 < 2**40` is True. OverflowError where no int dtype holds both
    (int64 tensor + 2**63), like NumPy 2. Scalars in int32's range keep PyTorch's rule (uint8 + -3 wraps)."""
    if isinstance(scalar, bool) or tensor_dtype.is_float:
        return tensor_dtype
    if isinstance(scalar, float):
        return dtypes.default_float
    if isinstance(scalar, int) and not fits(scalar, tensor_dtype) and not fits(scalar, dtypes.int32):
        wide = dtypes.from_py(scalar)
        out = wide if tensor_dtype == dtypes.bool else promote(tensor_dtype, wide)
        if not out.is_int:
            raise OverflowError(f"the Python int {scalar} does not fit {tensor_dtype.name}, and no int dtype holds "
                                f"both; cast the tensor first")
        return out
    if tensor_dtype == dtypes.bool and isinstance(scalar, int):
        return dtypes.default_int
    return tensor_dtype


def least_upper_float(dt: DType) -> DType:
    """Dtype of float math (exp, sqrt, /) on `dt`: ints and bools become the default float."""
    return dt if dt.is_float else dtypes.default_float


class DTypeNotSupported(TypeError, NotImplementedError):
    """An op that has no meaning for a dtype (shifts of floats, a bool to a bool power). A TypeError, like every
    dtype error of tinyjit, and a NotImplementedError, like PyTorch's '"lshift_cpu" not implemented for 'Float''."""


def check_fits(value, dtype: DType, op: str) -> None:
    """Raise RuntimeError (PyTorch's "value cannot be converted to type uint8 without overflow") when the Python
    scalar `value` does not fit `dtype`, for ops whose result keeps the tensor's dtype (pad, full, where, the
    constructor): an int dtype takes finite values whose integer part is in its range (1.5 is 1, as a cast), a
    float dtype any value up to its largest finite one (inf and nan included), bool any value (its truth)."""
    if dtype == dtypes.bool or isinstance(value, (bool, np.bool_)):
        return
    finite = isinstance(value, (int, np.integer)) or math.isfinite(value)
    if dtype.is_float:
        fits = not finite or abs(value) <= float(np.finfo(dtype.np).max)
    else:
        info = np.iinfo(dtype.np)
        fits = finite and info.min <= int(value) <= info.max
    if not fits:
        shown = value.item() if isinstance(value, np.generic) else value
        raise RuntimeError(f"{op}: value {shown!r} cannot be converted to {dtype.name} without overflow")
