"""Tensors to realize with the next optimizer step.

A training forward pass assigns some state lazily (BatchNorm's running statistics). Realizing each such assign
on its own would cost extra kernels every step; instead it is registered here and `Optimizer.step()` realizes it
in the same schedule as the forward pass, the backward pass and the parameter updates. Anything registered is
also realized when read, or when assigned again, so nothing is lost without an optimizer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinyjit.tensor import Tensor

_pending: dict[int, "Tensor"] = {}


def defer_realize(*tensors: "Tensor") -> None:
    for t in tensors:
        _pending[id(t)] = t


def take_deferred() -> list["Tensor"]:
    """The registered tensors that still need realizing (and forget all of them)."""
    out = [t for t in _pending.values() if not t.node.realized]
    _pending.clear()
    return out
