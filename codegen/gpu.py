"""GPU linearization: global axes become work-item ids instead of loops, and GROUPed reduces are finished
across the work-group through local (shared) memory.

Axis layout of a GPU kernel (see `Kernel`):

    [ grid axes | local axes | group axes | reduce loop axes | upcast axes ]
      group ids   local ids    local ids    loops               registers

The grid axes map to work-group ids and the local and group axes to work-item ids inside a work-group. The
hardware has 3 dimensions of each; the innermost axis gets dimension 0 (CUDA's x, the one that may be long
and whose neighbouring threads form a warp), and when there are more than 3 axes, or a later dimension is
too long for y/z, all of them are merged into dimension 0 and unravelled with div/mod.

A GROUPed reduce: every work-item accumulates its share of the reduce in registers, writes it to local
memory, and a tree over the group axes (halving the live range each step, with a barrier after each) leaves
the total in the slot of group index 0, whose work-item alone computes the rest of the kernel and stores.
"""
from __future__ import annotations

from tinyjit.dtype import dtypes
from tinyjit.helpers import prod
from tinyjit.ops import Op

from codegen.linearizer import REDUCE_TO_ALU, Linearizer
from codegen.uops import U, UOp

MAX_GRID_YZ = 65535          # CUDA's limit on gridDim.y/z (OpenCL has none of its own that is smaller)
MAX_BLOCK = (1024, 1024, 64)  # CUDA's blockDim limits; OpenCL devices report theirs, all at least this on GPUs
MAX_THREADS = 1024


class GPULinearizer(Linearizer):
    def __init__(self, k):
        super().__init__(k, gpu=True)
        self.grid_guard = None   # an IF around the whole kernel when the grid has more groups than work

    def close_kernel(self) -> None:
        if self.grid_guard is not None:
            self._end_scope(self.grid_guard)

    # ---- ids ----
    def _ids(self, kind: str, axes: list[int], limits: tuple[int, int, int]) -> tuple[int, ...]:
        """Set the Var of each axis from `kind` ids ("group" or "lid"); returns the launch size per dimension."""
        full, dt = self.k.full_shape, self.index_dtype
        for a in axes:
            if full[a] == 1:
                self.vars[self.axis_vars[a].name] = self.const(0, dt)
        axes = [a for a in axes if full[a] != 1]
        sizes = [full[a] for a in axes]
        if not axes:
            return (1,)
        fits = len(axes) <= 3 and all(s <= lim for s, lim in zip(reversed(sizes), limits))
        if fits:
            for dim, axis in enumerate(reversed(axes)):
                self.vars[self.axis_vars[axis].name] = self.emit(U.SPECIAL, dt, (), (kind, dim, full[axis]),
                                                                 cse=False)
            return tuple(reversed(sizes))
        # merge everything into dimension 0: the innermost axis varies fastest
        total = prod(sizes)
        if total <= limits[0]:
            flat = self.emit(U.SPECIAL, dt, (), (kind, 0, total), cse=False)
        else:   # more groups than dimension 0 takes (2**31 - 1 on CUDA): dimensions 0 and 1, and a guard
            rows = -(-total // limits[0])
            if rows > limits[1]:
                raise ValueError(f"kernel {self.k.name()}: {total} work-groups exceed the grid")
            columns = -(-total // rows)
            low = self.emit(U.SPECIAL, dt, (), (kind, 0, columns), cse=False)
            high = self.emit(U.SPECIAL, dt, (), (kind, 1, rows), cse=False)
            flat = self.alu(Op.ADD, dt, self.alu(Op.MUL, dt, high, self.const(columns, dt)), low)
            if rows * columns != total:   # the same for a whole work-group, so barriers inside stay uniform
                inside = self.alu(Op.CMPLT, dtypes.bool, flat, self.const(total, dt))
                self.grid_guard = self._scope(self.emit(U.IF, None, (inside,), cse=False))
        stride = 1
        for axis, size in reversed(list(zip(axes, sizes))):
            value = flat if stride == 1 else self.alu(Op.IDIV, dt, flat, self.const(stride, dt))
            if stride * size < prod(sizes):
                value = self.alu(Op.MOD, dt, value, self.const(size, dt))
            self.vars[self.axis_vars[axis].name] = value
            stride *= size
        return (columns, rows) if total > limits[0] else (total,)

    def gpu_global_ids(self, first_reduce: int):
        k = self.k
        grid_axes = list(range(first_reduce - k.local_dims))
        thread_axes = list(range(first_reduce - k.local_dims, first_reduce + k.group_for_reduce))
        global_size = self._ids("group", grid_axes, (2 ** 31 - 1, MAX_GRID_YZ, MAX_GRID_YZ))
        threads = prod(k.full_shape[a] for a in thread_axes)
        if threads > MAX_THREADS:
            raise ValueError(f"kernel {k.name()}: {threads} work-items per group exceed {MAX_THREADS}")
        local_size = self._ids("lid", thread_axes, MAX_BLOCK)
        return global_size, local_size

    # ---- the work-group reduce ----
    def _flat(self, axes: list[int]) -> tuple[UOp, int]:
        """Row-major flat index over `axes` and the product of their sizes."""
        dt, full = self.index_dtype, self.k.full_shape
        out, size = self.const(0, dt), 1
        for axis in reversed(axes):
            term = self.vars[self.axis_vars[axis].name]
            if size > 1:
                term = self.alu(Op.MUL, dt, term, self.const(size, dt))
            out = term if out.uop == U.CONST else self.alu(Op.ADD, dt, term, out)
            size *= full[axis]
        return out, size

    def _scope(self, opening: UOp) -> UOp:
        self.cse.append({})
        self.memo.append({})
        return opening

    def _end_scope(self, opening: UOp) -> None:
        self.emit(U.ENDIF, None, (opening,), cse=False)
        self.cse.pop()
        self.memo.pop()

    def after_reduce(self, reduces: list, out_combos: list):
        k = self.k
        if not reduces or k.group_for_reduce == 0:
            return None
        dt, fr = self.index_dtype, k.first_reduce
        group, n = self._flat(list(range(fr, fr + k.group_for_reduce)))
        other, n_other = self._flat(list(range(fr - k.local_dims, fr)))
        base = self.alu(Op.MUL, dt, other, self.const(n, dt)) if n_other > 1 else self.const(0, dt)
        slot = self.alu(Op.ADD, dt, base, group) if n_other > 1 else group
        entries = []   # (reduce op, accumulator, local buffer)
        for r in reduces:
            for oc in out_combos:
                acc = self.accs[(id(r), oc)]
                smem = self.emit(U.DEFINE_LOCAL, acc.dtype, (), (f"partial{len(entries)}", n * n_other), cse=False)
                self.emit(U.STORE, None, (smem, slot, self.emit(U.ACC_READ, acc.dtype, (acc,), cse=False)), cse=False)
                entries.append((REDUCE_TO_ALU[r.op], acc, smem))
        self.emit(U.BARRIER, None, (), cse=False)
        live = n
        while live > 1:
            half = (live + 1) // 2
            cond = self.alu(Op.CMPLT, dtypes.bool, group, self.const(live - half, dt))
            guard = self._scope(self.emit(U.IF, None, (cond,), cse=False))
            partner = self.alu(Op.ADD, dt, slot, self.const(half, dt))
            for op, acc, smem in entries:
                a = self.emit(U.LOAD, acc.dtype, (smem, slot), cse=False)
                b = self.emit(U.LOAD, acc.dtype, (smem, partner), cse=False)
                self.emit(U.STORE, None, (smem, slot, self.alu(op, acc.dtype, a, b)), cse=False)
            self._end_scope(guard)
            self.emit(U.BARRIER, None, (), cse=False)
            live = half
        # work-item 0 of the group takes the total and does the rest of the kernel
        first = self.alu(Op.CMPLT, dtypes.bool, group, self.const(1, dt))
        guard = self._scope(self.emit(U.IF, None, (first,), cse=False))
        for _, acc, smem in entries:
            self.emit(U.ACC_WRITE, None, (acc, self.emit(U.LOAD, acc.dtype, (smem, base), cse=False)), cse=False)
        return guard
