"""A kernel before linearization: the AST plus one ShapeTracker per memory access over a shared loop shape.

All accesses see the same `full_shape`. Its axes are ordered

    [ global (parallel) axes | reduce axes | upcast axes ]

Global axes become threads (GPU work-items, CPU thread ranges) and loops; reduce axes are loops around the
accumulation; the trailing `upcasted` axes are unrolled into registers (an upcast axis that is also reduced
is an "unroll" of the reduce). Optimizations only reshape/permute every ShapeTracker the same way, so they
never change what the kernel computes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tinyjit.helpers import prod
from tinyjit.ops import AstNode, Op
from tinyjit.view import ShapeTracker


@dataclass(frozen=True)
class Opt:
    """One optimization: UPCAST a global axis, UNROLL a reduce axis, LOCAL (GPU work-group) split of a global
    axis, or GROUP a reduce axis across a work-group (GPU). `axis` counts within that kind's axes."""
    kind: str
    axis: int
    amount: int


class KernelOptError(ValueError):
    pass


class Kernel:
    def __init__(self, ast: AstNode, name_prefix: str = ""):
        assert ast.op == Op.STORE
        self.ast = ast
        # the memory accesses in a fixed order: the store first, then loads/consts/valids as the AST lists them
        self.accesses: list[AstNode] = [ast] + [n for n in ast.toposort() if n.op in (Op.LOAD, Op.CONST, Op.VALID)]
        self.sts: list[ShapeTracker] = [_st_of(n) for n in self.accesses]
        self.has_reduce = any(n.op in (Op.SUM, Op.RMAX) for n in ast.toposort())
        ndim = max(len(st.shape) for st in self.sts)
        assert all(len(st.shape) == ndim for st in self.sts), [st.shape for st in self.sts]
        self.upcasted = 0
        self.local_dims = 0          # GPU: global axes right after the group axes that are work-group local
        self.group_for_reduce = 0    # GPU: reduce axes split across a work-group (shared memory reduce)
        self.applied: list[Opt] = []
        self._move_reduce_axes_last()
        self._merge_axes()

    # ---- shape bookkeeping ----
    @property
    def full_shape(self) -> tuple[int, ...]:
        return tuple(max(s) for s in zip(*(st.shape for st in self.sts))) if self.sts[0].shape else ()

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.sts[0].shape

    @property
    def ndim(self) -> int:
        return len(self.full_shape)

    def is_reduce_axis(self, axis: int) -> bool:
        return self.output_shape[axis] != self.full_shape[axis]

    @property
    def first_reduce(self) -> int:
        """Index of the first reduce axis among the non-upcast axes (== number of global axes)."""
        for i in range(self.ndim - self.upcasted):
            if self.is_reduce_axis(i):
                return i
        return self.ndim - self.upcasted

    @property
    def first_upcast(self) -> int:
        return self.ndim - self.upcasted

    def reshape_and_permute(self, new_shape_fn, order: Optional[list[int]]) -> None:
        new_sts = []
        for st in self.sts:
            if new_shape_fn is not None:
                st = st.reshape(tuple(new_shape_fn(st.shape)))
            if order is not None:
                st = st.permute(tuple(order))
            new_sts.append(st)
        self.sts = new_sts

    def _move_reduce_axes_last(self) -> None:
        reduce_axes = [i for i in range(self.ndim) if self.is_reduce_axis(i)]
        order = [i for i in range(self.ndim) if i not in reduce_axes] + reduce_axes
        if order != list(range(self.ndim)):
            self.reshape_and_permute(None, order)

    def _merge_axes(self) -> None:
        """Merge neighbouring axes wherever every access can (fewer loops, longer contiguous runs)."""
        axis = self.ndim - 2
        while axis >= 0:
            if self.is_reduce_axis(axis) == self.is_reduce_axis(axis + 1) and self._mergeable(axis):
                self.reshape_and_permute(lambda s, a=axis: s[:a] + (s[a] * s[a + 1],) + s[a + 2:], None)
            axis -= 1
        # drop size-1 axes (keep at least one axis so every kernel has a loop shape)
        if self.ndim > 1 and 1 in self.full_shape:
            keep = [i for i, s in enumerate(self.full_shape) if s != 1] or [0]
            self.reshape_and_permute(lambda s: tuple(s[i] for i in keep), None)
        if self.ndim == 0:
            self.reshape_and_permute(lambda s: (1,), None)

    def _mergeable(self, axis: int) -> bool:
        for st in self.sts:
            shape = st.shape
            merged = shape[:axis] + (shape[axis] * shape[axis + 1],) + shape[axis + 2:]
            if st.views[-1].reshape(merged) is None:
                return False
        return True

    # ---- optimizations ----
    def shift_to(self, axis: int, amount: int, insert_at: Optional[int] = None) -> None:
        """Split `axis` into (size/amount, amount) and move the `amount` part to position `insert_at`."""
        size = self.full_shape[axis]
        if amount <= 1 or size % amount != 0:
            raise KernelOptError(f"cannot split axis {axis} of size {size} by {amount}")
        self.reshape_and_permute(lambda s: s[:axis] + ((s[axis] // amount, amount) if s[axis] > 1 else (1, 1))
                                 + s[axis + 1:], None)
        insert_at = self.ndim if insert_at is None else insert_at
        order = list(range(self.ndim))
        moved = order.pop(axis + 1)
        order.insert(insert_at if insert_at <= axis else insert_at - 1, moved)
        self.reshape_and_permute(None, order)

    def apply_opt(self, opt: Opt) -> None:
        if opt.kind == "UPCAST":
            axis = opt.axis
            if not 0 <= axis < self.first_reduce:
                raise KernelOptError(f"UPCAST axis {axis} is not a global axis")
            self.shift_to(axis, opt.amount)
        elif opt.kind == "UNROLL":
            axis = self.first_reduce + opt.axis
            if not self.first_reduce <= axis < self.first_upcast or not self.is_reduce_axis(axis):
                raise KernelOptError(f"UNROLL axis {opt.axis} is not a reduce axis")
            self.shift_to(axis, opt.amount)
        else:
            raise KernelOptError(f"unknown optimization {opt.kind}")
        self.upcasted += 1
        self.applied.append(opt)

    # ---- naming ----
    def name(self) -> str:
        """What the kernel does, in a symbol-safe word: `E_` elementwise or `r_` reduce, then the loop sizes in
        axis order (global, then reduce), then each upcast axis as `u<n>` (an output axis upcast by n) or `x<n>`
        (a reduce axis unrolled n times). E.g. E_4096, E_1024_u4, r_64_128, r_64_32_x4 (64 sums of 32*4)."""
        prefix = "r" if self.has_reduce else "E"
        loops = [str(s) for s in self.full_shape[:self.first_upcast]]
        upcasts = [("x" if self.is_reduce_axis(a) else "u") + str(self.full_shape[a])
                   for a in range(self.first_upcast, self.ndim)]
        return "_".join([prefix] + loops + upcasts)


def _st_of(node: AstNode) -> ShapeTracker:
    if node.op in (Op.LOAD, Op.STORE, Op.CONST):
        return node.arg[1]
    return node.arg   # VALID


def upcast_combinations(sizes: list[int]) -> list[tuple[int, ...]]:
    combos: list[tuple[int, ...]] = [()]
    for s in sizes:
        combos = [c + (i,) for c in combos for i in range(s)]
    return combos


def kernel_flops_estimate(k: Kernel) -> int:
    n_alu = sum(1 for n in k.ast.toposort() if n.op not in (Op.LOAD, Op.CONST, Op.STORE, Op.VALID))
    return n_alu * prod(k.full_shape)
