"""The linear loop program: the one data type every renderer (LLVM IR, OpenCL C, CUDA C) consumes.

A program is a list of UOps in execution order. Values are SSA: each UOp that produces a value is defined once,
before its uses; loops are explicit LOOP/ENDLOOP pairs; accumulators are the only mutable variables.
"""
from __future__ import annotations

from enum import Enum, auto
from typing import Any, Optional

from tinyjit.dtype import DType


class U(Enum):
    DEFINE_GLOBAL = auto()   # a buffer argument; arg: (index, name, is_output); dtype: element type
    DEFINE_VAR = auto()      # an int argument (CPU thread range); arg: name
    SPECIAL = auto()         # a GPU work-item id; arg: (kind "gid"|"lid"|"group", dim, size)
    DEFINE_LOCAL = auto()    # shared/local memory; arg: (name, size); dtype: element type
    CONST = auto()           # arg: Python value
    LOOP = auto()            # src: (start, end); produces the loop variable; arg: its name, which contains
    #                          "_blk" for a loop over the blocks of an accumulation level (codegen/accumulate.py)
    #                          and ends in "_novec" for a loop the CPU should not vectorize (codegen/linearizer.py)
    ENDLOOP = auto()         # src: (loop,)
    ALU = auto()             # arg: tinyjit.ops.Op; src: operands
    CAST = auto()            # src: (value,); dtype: target
    BITCAST = auto()         # src: (value,); dtype: target
    LOAD = auto()            # src: (buffer, index) or (buffer, index, valid); reads 0 where not valid
    #                          arg: SAFE_INDEX (codegen/linearizer.py) when the index is in bounds where not valid
    STORE = auto()           # src: (buffer, index, value)
    DEFINE_ACC = auto()      # a mutable accumulator; arg: initial value
    ACC_READ = auto()        # src: (acc,)
    ACC_WRITE = auto()       # src: (acc, value); arg "accumulate" when value is acc op term inside the reduce loops
    #                          (such writes to one accumulator may be reordered among themselves: vectorized), else None
    BARRIER = auto()         # work-group barrier (GPU)
    IF = auto()              # src: (condition,)
    ENDIF = auto()           # src: (if,)

    # members are singletons compared by identity: hashed by identity too (C-level), as tinyjit.ops.Op. Every op the
    # linearizer emits hashes its kind for common-subexpression elimination (Enum's __hash__ is a Python call)
    __hash__ = object.__hash__


class UOp:
    __slots__ = ("uop", "dtype", "src", "arg", "name")

    def __init__(self, uop: U, dtype: Optional[DType], src: tuple = (), arg: Any = None):
        self.uop, self.dtype, self.src, self.arg = uop, dtype, tuple(src), arg
        self.name = ""   # filled by the renderer

    def __repr__(self) -> str:
        dt = self.dtype.name if self.dtype is not None else "-"
        arg = self.arg.name if hasattr(self.arg, "name") and not isinstance(self.arg, str) else self.arg
        return f"{self.uop.name:<13} {dt:<8} {arg!s:<20} {[id(s) % 10000 for s in self.src]}"


def accumulations(uops: list[UOp]) -> set[int]:
    """ids of the ALU ops that update a reduce's accumulator from its own value: ACC_WRITE(acc, op(ACC_READ(acc), v)).
    (Renderers may give these, and only these, freedom such as reassociation or a fused multiply-add.)"""
    return {id(u.src[1]) for u in uops if u.uop == U.ACC_WRITE and u.src[1].uop == U.ALU
            and any(s.uop == U.ACC_READ and s.src[0] is u.src[0] for s in u.src[1].src)}


def print_program(uops: list[UOp]) -> str:
    index = {id(u): i for i, u in enumerate(uops)}
    lines = []
    for i, u in enumerate(uops):
        dt = u.dtype.name if u.dtype is not None else ""
        arg = u.arg.name if hasattr(u.arg, "name") and not isinstance(u.arg, str) else u.arg
        srcs = ", ".join(f"%{index[id(s)]}" for s in u.src)
        lines.append(f"%{i:<4} {u.uop.name:<13} {dt:<8} {'' if arg is None else arg!s:<24} {srcs}")
    return "\n".join(lines)
