"""Tensors to realize with the next optimizer step.

A training forward pass assigns some state lazily (BatchNorm's running statistics). Realizing each such assign
on its own would cost extra kernels every step; instead it is registered here and `Optimizer.step()` realizes it
in the same schedule as the forward pass, the backward pass and the parameter updates. Anything registered is
also realized when read, or when assigned again, so nothing is lost without an optimizer.
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinyjit.tensor import Tensor

# weak: a tensor nobody holds any more needs no realizing
_pending: dict[int, weakref.ref] = {}


def defer_realize(*tensors: "Tensor") -> None:
    for t in tensors:
        _pending[id(t)] = weakref.ref(t)


def take_deferred() -> list["Tensor"]:
    """The registered tensors that still exist and need realizing (and forget all of them)."""
    out = [t for t in (ref() for ref in _pending.values()) if t is not None and not t.node.realized]
    _pending.clear()
    return out
