"""Kernels that differ only in where they start reading each buffer share one compiled program.

An unrolled recurrence (an RNN's time steps, a transformer's layers reading slices of one stacked weight) schedules
kernels whose ASTs are equal except for the offsets of their views: step t reads `x[t]`, step t+1 reads `x[t+1]`.
Compiled as they come, each is a new build (code generation and LLVM) for the same loop nest. Instead, a kernel's
AST is split into a canonical AST, in which the views of each buffer start at the lowest element any of them
reads or writes, and the element shift per buffer that was taken out; the canonical AST is compiled once and each
kernel launches it with its buffers' pointers advanced by their shifts (tinyjit.kernel_cache).

A buffer is shifted only when every access to it is one view (a stack of views can compute any address, so its
lowest one is not known) and none is a gathered load (its view says where row 0 is, not which rows it reads), and
by no more than its lowest valid address: every address the canonical kernel computes for a valid element stays >=
0 from the shifted pointer, and index 0 (where a masked-out lane points) is an element the kernel reads anyway. So
index arithmetic keeps the signs and bounds it had, and the shifted pointer stays inside the buffer.
"""
from __future__ import annotations

import functools

from tinyjit.ops import AstNode, Op
from tinyjit.view import ShapeTracker, View


def lowest_valid_address(view: View) -> int | None:
    """The lowest element (from the buffer's start) that `view` reads or writes, or None when its mask leaves no
    element valid."""
    ranges = view.mask if view.mask is not None else tuple((0, s) for s in view.shape)
    if any(lo >= hi for lo, hi in ranges):
        return None
    return view.offset + sum(stride * (lo if stride > 0 else hi - 1) for stride, (lo, hi) in zip(view.strides, ranges))


@functools.lru_cache(maxsize=4096)
def split_base_offsets(ast: AstNode) -> tuple[AstNode, tuple[int, ...]]:
    """(canonical AST, shifts): `shifts[i]` elements are taken out of the offsets of buffer i's views, so
    launching the canonical AST with buffer i's pointer advanced by shifts[i] elements computes what `ast` does.
    Shifts are 0 for buffers that cannot be shifted (see the module docstring) and for absent indices; the AST
    itself comes back when nothing shifts."""
    lows: dict[int, list[int]] = {}    # buffer index -> lowest valid address of each access reading something
    unshiftable = set()
    for n in ast.toposort():
        if n.op is Op.LOAD or n.op is Op.STORE:
            index, st = n.arg[0], n.arg[1]
            if len(st.views) != 1 or len(n.arg) > 2:   # (a gathered load's view is only its table's row 0)
                unshiftable.add(index)
                continue
            low = lowest_valid_address(st.views[0])
            lows.setdefault(index, [])
            if low is not None:   # (a view that reads nothing only points at index 0: it shifts with the others)
                lows[index].append(low)
    shifts = {index: min(found) for index, found in lows.items() if found and index not in unshiftable and min(found)}
    if not shifts:
        return ast, ()
    rebuilt: dict[int, AstNode] = {}
    for n in ast.toposort():
        src = tuple(rebuilt[id(s)] for s in n.src)
        arg = n.arg
        if n.op in (Op.LOAD, Op.STORE) and arg[0] in shifts:
            view = arg[1].views[0]
            arg = (arg[0], ShapeTracker((View(view.shape, view.strides, view.offset - shifts[arg[0]], view.mask),)),
                   *arg[2:])
        rebuilt[id(n)] = n if arg is n.arg and src == n.src else AstNode(n.op, src, arg, n.dtype)
    return rebuilt[id(ast)], tuple(shifts.get(i, 0) for i in range(max(shifts) + 1))
