"""What the code generator hands the engine for one scheduled kernel (`BuiltPlan`, its `LaunchSpec`s and their
`LaunchArg`s): plain data, pickled into the disk plan cache (tinyjit/kernel_cache.py).

They live apart from the code generator (codegen/pipeline.py builds them) so that a warm start, which only
unpickles and loads cached plans, never imports it.
"""
from __future__ import annotations

from dataclasses import dataclass

from tinyjit.dtype import DType


@dataclass(frozen=True)
class LaunchArg:
    """What one buffer argument of a launch is bound to: buffer `index` of the scheduled kernel (0 its output,
    then its inputs), or with `scratch`, scratch buffer `index` of the kernel's plan."""
    index: int
    scratch: bool = False

    def __repr__(self) -> str:
        return f"scratch{self.index}" if self.scratch else f"buffer{self.index}"


@dataclass
class LaunchSpec:
    """One compiled launch of a plan, everything but the loaded program (what the disk cache stores)."""
    name: str            # readable, e.g. r_64_32_x4
    symbol: str          # the function name in the binary
    source: str
    binary: bytes
    global_size: tuple
    local_size: tuple
    flops: int
    work: int            # loop iterations (the runtime decides from it whether CPU threads pay)
    args: tuple[LaunchArg, ...]   # what each buffer argument of the kernel is bound to


@dataclass
class BuiltPlan:
    """The launches of one scheduled kernel, in order: copies (PACK, DEPAD) before it, the kernel itself at
    `main`, copies (STAGE) after it; `scratch` lists the (size, dtype) of the scratch buffers they share."""
    launches: list[LaunchSpec]
    scratch: list[tuple[int, DType]]
    main: int
