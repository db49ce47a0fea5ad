"""A kernel before linearization: the AST plus one ShapeTracker per memory access over a shared loop shape.

All accesses see the same `full_shape`. Its axes are ordered

    [ global (parallel) axes | reduce axes | upcast axes ]

Global axes become threads (GPU work-items, CPU thread ranges) and loops; reduce axes are loops around the
accumulation; the trailing `upcasted` axes are unrolled into registers (an upcast axis that is also reduced
is an "unroll" of the reduce). Optimizations (codegen/opts.py, all applied by `Kernel.apply_opt`) only
reshape/permute every ShapeTracker the same way, or (PACK, DEPAD, STAGE: codegen/copies.py) read or write through
a copy, so they never change what the kernel computes.
"""
from __future__ import annotations

from typing import Optional

from tinyjit.helpers import prod
from tinyjit.ops import AstNode, Op
from tinyjit.view import ShapeTracker

from codegen.copies import Copies, depad, index_strides, pack, stage
from codegen.opts import KernelOptError, Opt, OptKind


# a stacked view's axes are kept apart (not merged into one loop that its address would unravel with divisions)
# when the inner one is at least this long (a vector of floats)
MIN_LINEAR_RUN = 8


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
        # the copy kernels and scratch buffers PACK, DEPAD and STAGE add, and what each buffer is bound to
        self.copies = Copies.none(1 + max([n.arg[0] for n in self.accesses if n.op == Op.LOAD], default=0))
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
        """Whether every access can read axes `axis` and `axis + 1` as one: its last view merges them, and a stacked
        view's address stays linear in the merged index where the inner axis is at least MIN_LINEAR_RUN long (else
        every element pays divisions and remainders to unravel the flat index: a max-pool gradient read through its
        windows ran 3x slower merged into one loop; a shorter inner loop costs more as a loop of its own)."""
        for st in self.sts:
            shape = st.shape
            merged = shape[:axis] + (shape[axis] * shape[axis + 1],) + shape[axis + 2:]
            if st.views[-1].reshape(merged) is None:
                return False
            if len(st.views) > 1 and shape[axis] > 1 and shape[axis + 1] >= MIN_LINEAR_RUN and \
                    index_strides(st.reshape(merged))[axis] is None:
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
        """Apply one optimization of any kind (codegen/opts.py); KernelOptError when it does not apply."""
        if opt.kind in (OptKind.UPCAST, OptKind.UNROLL):
            self._upcast(opt)
        elif opt.kind == OptKind.LOCAL:
            self._local(opt)
        elif opt.kind == OptKind.GROUP:
            self._group(opt)
        elif opt.kind == OptKind.SWAP:
            self._swap(opt.axis, opt.amount)
        elif opt.kind == OptKind.MERGE:
            self._merge(opt.axis)
        elif opt.kind == OptKind.SPLIT:
            self._split(opt.axis, opt.amount)
        elif opt.kind == OptKind.PACK:
            pack(self, opt.axis)
        elif opt.kind == OptKind.DEPAD:
            depad(self, opt.axis)
        else:
            assert opt.kind == OptKind.STAGE, opt
            stage(self)
        self.applied.append(opt)

    def _upcast(self, opt: Opt) -> None:
        """UPCAST a global axis or UNROLL a reduce axis: its `amount` part becomes the last upcast axis."""
        if opt.kind == OptKind.UPCAST:
            axis = opt.axis
            if not 0 <= axis < self.first_reduce:
                raise KernelOptError(f"UPCAST axis {axis} is not a global axis")
        else:
            axis = self.first_reduce + self.group_for_reduce + opt.axis
            if not self.first_reduce + self.group_for_reduce <= axis < self.first_upcast \
                    or not self.is_reduce_axis(axis):
                raise KernelOptError(f"UNROLL axis {opt.axis} is not a reduce axis")
        self.shift_to(axis, opt.amount)
        self.upcasted += 1

    def _local(self, opt: Opt) -> None:
        """LOCAL: split a grid axis and move the `amount` part to the front of the work-group axes (so splitting
        the innermost axis first leaves the local axes in the order of their grid axes)."""
        fr = self.first_reduce
        if not 0 <= opt.axis < fr - self.local_dims:
            raise KernelOptError(f"LOCAL axis {opt.axis} is not a grid axis")
        self.shift_to(opt.axis, opt.amount, insert_at=fr - self.local_dims + 1)
        self.local_dims += 1

    def _group(self, opt: Opt) -> None:
        """GROUP: split a reduce loop axis as (size/amount, amount) and move the inner `amount` part to the group
        axes (right after the global ones), so `amount` work-items share one reduce through local memory and
        neighbouring work-items read neighbouring elements."""
        fr = self.first_reduce
        axis = fr + self.group_for_reduce + opt.axis
        if not fr + self.group_for_reduce <= axis < self.first_upcast or not self.is_reduce_axis(axis):
            raise KernelOptError(f"GROUP axis {opt.axis} is not a reduce loop axis")
        self.shift_to(axis, opt.amount, insert_at=fr + self.group_for_reduce)
        self.group_for_reduce += 1

    def _swap(self, a: int, b: int) -> None:
        """SWAP: exchange global axes a and b (the loop order)."""
        if a == b or not (0 <= a < self.first_reduce and 0 <= b < self.first_reduce):
            raise KernelOptError(f"SWAP {a} {b}: both must be different global axes (there are {self.first_reduce})")
        order = list(range(self.ndim))
        order[a], order[b] = b, a
        self.reshape_and_permute(None, order)

    def _merge(self, a: int) -> None:
        """MERGE: global axes a and a+1 become one loop (so the outermost loop, which the CPU's thread pool splits,
        is long enough)."""
        if not 0 <= a < self.first_reduce - 1:
            raise KernelOptError(f"MERGE {a}: global axes {a} and {a + 1} do not both exist")
        self.reshape_and_permute(lambda sh: sh[:a] + (sh[a] * sh[a + 1],) + sh[a + 2:], None)

    def _split(self, a: int, amount: int) -> None:
        """SPLIT: global axis a becomes two loops, (size/amount) outside and `amount` inside, both global (with
        SWAP a loop tiling: a chunk of a matmul's rows stays in cache while every panel of B passes by)."""
        if not 0 <= a < self.first_reduce or amount >= self.full_shape[a]:
            raise KernelOptError(f"SPLIT {a} by {amount}: not a global axis longer than {amount}")
        self.shift_to(a, amount, insert_at=a + 2)

    def describe(self) -> str:
        """The loop shape by axis kind and the optimizations applied, e.g. `global 64 | reduce 32 | upcast 4;
        opts: UNROLL axis 0 by 4` (DEBUG=3)."""
        parts = [("global", self.full_shape[:self.first_reduce]),
                 ("reduce", self.full_shape[self.first_reduce:self.first_upcast]),
                 ("upcast", self.full_shape[self.first_upcast:])]
        shape = " | ".join(f"{kind} {'x'.join(map(str, sizes))}" for kind, sizes in parts if sizes)
        opts = ", ".join(f"{o.kind} axis {o.axis} by {o.amount}" for o in self.applied) or "none"
        return f"{shape}; opts: {opts}"

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


def alu_ops(k: Kernel) -> int:
    """The ALU ops of the kernel's AST, each shared node once (loads, constants, validity masks and the store
    excluded): the math one element costs."""
    return sum(1 for n in k.ast.toposort() if n.op not in (Op.LOAD, Op.CONST, Op.STORE, Op.VALID))


def kernel_flops_estimate(k: Kernel) -> int:
    return alu_ops(k) * prod(k.full_shape)
