"""How reduce accumulators accumulate: the loop nest of a reduce, cut into levels for cascade summation.

One float accumulator that takes n terms in a row loses up to about n/2 ulp, and does so systematically on
data of one sign: summing 10**6 float32 copies of 0.1 into one register is 0.02% off. Like PyTorch's cascade
sum (and close to NumPy's pairwise sum), a float SUM here accumulates in levels instead. Level 0 adds at most
`block` terms into a fresh accumulator; that partial sum is then added, as one term, to the accumulator of
level 1, which takes at most FAN_IN such terms before it is added to level 2, and so on up to the kernel's own
accumulator. Every chain of additions is short, so the total is off by a few ulp times the number of levels
(log_FAN_IN(n / block)) instead of by n ulp, and it costs one extra addition per `block` terms.

The levels are made of loops: a reduce loop longer than a level's budget is split into a loop over blocks and
a loop over the elements of a block, `[b * m, min(b * m + m, n))`, whose variable is still the axis index (so
no index math changes, and a length that no block size divides needs no padding); the block loop is split
again while it is too long. A level's accumulator is defined inside the loop that opens the level and added
to the level above at the end of that loop's body.

The size of level 0 is chosen for speed, the sizes above it for accuracy:
- on the CPU, a level 0 that is part of one innermost loop reading memory contiguously is vectorized by LLVM
  (the accumulation may be reassociated): 8 vector registers of lanes take VECTOR_BLOCK = 256 terms, about 8
  per lane, and the lanes are added as a tree;
- a register block (several outputs per thread: matmul, conv) keeps its accumulators in registers for
  REGISTER_BLOCK = 256 steps of the reduce and then adds them to the level above, like the K blocks of a BLAS
  kernel;
- everything else (strided reduces, every GPU work-item's loop) is a scalar chain: SCALAR_BLOCK = 8 terms.
Only float sums are blocked: integer sums are exact (wrapping) and max is exact in any order.
"""
from __future__ import annotations

from dataclasses import dataclass

VECTOR_BLOCK = 256
REGISTER_BLOCK = 256
SCALAR_BLOCK = 8
# 8, not 4: a weight gradient's 2048 steps then take two levels, not three (each level is a copy of a register
# block's accumulators: LLVM time), while every chain of additions stays short
FAN_IN = 8


@dataclass
class ReduceLoop:
    """One loop of a reduce loop nest. It walks kernel axis `axis` in steps of `unit` elements; `count` is None
    for the outermost loop of the axis (range [0, ceil(size / unit))), else the number of steps per step of the
    loop just outside it, which walks the same axis in steps of unit * count. The loop with unit 1 is the axis
    variable. `opens_level`: a fresh accumulator level starts inside this loop's body and is added to the level
    above at the end of it."""
    axis: int
    size: int
    unit: int = 1
    count: int | None = None
    opens_level: bool = False

    @property
    def steps(self) -> int:
        """How many steps of `unit` the whole axis takes."""
        return -(-self.size // self.unit)

    @property
    def ragged(self) -> bool:
        """Whether the last block of the enclosing loop is shorter than `count` (the bound needs a min)."""
        return self.count is not None and self.steps % self.count != 0


def plan_reduce_loops(axes: list[tuple[int, int]], terms_per_step: int, block: int) -> list[ReduceLoop]:
    """The loops (outermost first) for reduce axes `axes` [(axis, size), outermost first] when each step of the
    innermost loop adds `terms_per_step` terms to an accumulator (an unrolled reduce adds several) and level 0
    may take `block` terms. Without levels (every level fits) this is one loop per axis, as before blocking."""
    loops: list[ReduceLoop] = []   # innermost first while planning
    terms, budget, open_next = terms_per_step, block, False
    for axis, size in reversed(axes):
        unit, steps = 1, size
        while True:
            if terms * steps <= budget:   # the rest of this axis fits in the current level
                loops.append(ReduceLoop(axis, size, unit, None, open_next))
                open_next = False
                terms *= steps
                break
            per_block = budget // terms
            if per_block >= 2:   # blocks of per_block steps stay in this level; the loop over them is the next level
                loops.append(ReduceLoop(axis, size, unit, per_block, open_next))
                unit, steps = unit * per_block, -(-steps // per_block)
            # the next loop made (of this axis or an outer one) opens a new level: each of its steps is one term
            open_next, terms, budget = True, 1, FAN_IN
    return loops[::-1]


def level_zero_block(register_block: bool, contiguous_innermost: bool, gpu: bool) -> int:
    """The budget of level 0 (see the module docstring)."""
    if register_block:
        return REGISTER_BLOCK
    return VECTOR_BLOCK if contiguous_innermost and not gpu else SCALAR_BLOCK
