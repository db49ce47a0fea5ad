"""Hand-coded CPU heuristics: register blocking for contractions (matmul, conv) and reductions.

A contraction is a reduce kernel with a load that is contiguous along one output axis (the "vector" axis:
B's columns in a matmul, the output width in a conv) and broadcast (stride 0) along another output axis (A's
rows, the output channels). Upcasting both builds a register block, e.g. 4 rows x 32 columns of accumulators:
each loaded vector of B is reused 4 times and each element of A 32 times. LLVM's SLP vectorizer turns the
unrolled block into vector FMAs (the renderer keeps the loop vectorizer off such loops).
"""
from __future__ import annotations

from codegen.kernel import Kernel, KernelOptError, Opt
from tinyjit.ops import Op

VECTOR_BLOCK = (32, 16, 8)    # widths tried for the contiguous axis, in floats (2-4 AVX registers per row)
ROW_BLOCK = (4, 3, 2)         # rows of the register block


def _load_strides(k: Kernel) -> list[tuple]:
    return [st.real_strides() for node, st in zip(k.accesses, k.sts) if node.op == Op.LOAD]


def _largest_divisor(size: int, choices) -> int:
    return next((c for c in choices if size % c == 0 and size >= c), 1)


def optimize_cpu(k: Kernel) -> None:
    if not k.has_reduce or k.first_reduce == 0:
        return
    loads = _load_strides(k)
    global_axes = range(k.first_reduce)
    # the vector axis: an output axis along which some load is contiguous
    vector_axis, vector_load = None, None
    for axis in reversed(global_axes):
        for strides in loads:
            if strides[axis] == 1 and k.full_shape[axis] >= 8:
                vector_axis, vector_load = axis, strides
                break
        if vector_axis is not None:
            break
    if vector_axis is None:
        return   # e.g. a sum over the contiguous axis: LLVM's loop vectorizer handles the reduce loop
    # the row axis: an output axis along which that load is broadcast (so the block reuses its vectors)
    row_axis = next((a for a in global_axes if a != vector_axis and vector_load[a] == 0 and k.full_shape[a] > 1),
                    None)
    width = _largest_divisor(k.full_shape[vector_axis], VECTOR_BLOCK)
    rows = _largest_divisor(k.full_shape[row_axis], ROW_BLOCK) if row_axis is not None else 1
    try:
        if width > 1:
            k.apply_opt(Opt("UPCAST", vector_axis, width))
        if rows > 1:
            # splitting the vector axis did not move axes before it; the row axis index is unchanged
            k.apply_opt(Opt("UPCAST", row_axis, rows))
    except KernelOptError:
        pass
