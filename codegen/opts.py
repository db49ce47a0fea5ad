"""What a kernel optimization is: its kind (the one list of them, `OptKind`), the axis it applies to and an amount.

Every kind is applied by `Kernel.apply_opt` (codegen/kernel.py), whoever chose it: the hand-coded heuristics
(codegen/optimizer.py, codegen/cpu_opts.py), BEAM (codegen/search.py), a test. None of them changes what a kernel
computes, only its loop structure and (PACK, DEPAD, STAGE) the copies made around it.
"""
from __future__ import annotations

from dataclasses import dataclass

from tinyjit.helpers import NameEnum


class OptKind(NameEnum):
    # every device: `axis` counts within the global axes (UPCAST) or the reduce loop axes (UNROLL)
    UPCAST = "UPCAST"   # split a global axis by `amount` and unroll that part into registers
    UNROLL = "UNROLL"   # the same for a reduce axis
    # GPU: `axis` counts within the grid axes (LOCAL) or the reduce loop axes (GROUP)
    LOCAL = "LOCAL"     # split a grid axis by `amount` into work-groups
    GROUP = "GROUP"     # `amount` work-items of a work-group share a reduce axis, finished in local memory
    # CPU (codegen/copies.py for PACK, DEPAD and STAGE)
    SWAP = "SWAP"       # exchange global axes `axis` and `amount` (loop order)
    MERGE = "MERGE"     # make global axes `axis` and axis+1 one loop (amount 0)
    SPLIT = "SPLIT"     # global axis `axis` becomes two loops: size/amount outside, `amount` inside (loop tiling)
    PACK = "PACK"       # operand `axis` of pack_candidates is read from a copy in loop order (amount 0)
    DEPAD = "DEPAD"     # padded load `axis` of pack_candidates is read from a copy without its padding (amount 0)
    STAGE = "STAGE"     # the output is written in loop order to a scratch buffer, then copied into place (0, 0)


GPU_ONLY = frozenset({OptKind.LOCAL, OptKind.GROUP})
CPU_ONLY = frozenset({OptKind.SWAP, OptKind.MERGE, OptKind.SPLIT, OptKind.PACK, OptKind.DEPAD, OptKind.STAGE})


@dataclass(frozen=True)
class Opt:
    """One optimization. `kind` may be given by name ("UPCAST"); ValueError for a name that is not a kind."""
    kind: OptKind
    axis: int
    amount: int

    def __post_init__(self):
        object.__setattr__(self, "kind", OptKind(self.kind))


class KernelOptError(ValueError):
    """An optimization that does not apply to the kernel as it is (a bad axis, an amount that does not divide it,
    a kind the device does not have)."""
