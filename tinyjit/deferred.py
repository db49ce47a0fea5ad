"""Tensors to realize with the next optimizer step.

A training step leaves lazy values that read the parameters the optimizer step overwrites in place: the loss
(registered by `backward()`) and BatchNorm's running statistics. Realized after the step they would see the new
weights (a wrong loss), and realized on their own they would cost extra kernels, so they are registered here and
`Optimizer.step()` realizes them in the same schedule as the forward pass, the backward pass and the updates.
Anything registered is also realized when read first, so nothing depends on an optimizer being used, and with
any other schedule that overwrites a buffer it reads (a hand-written update: `w.assign(w - lr * w.grad)`).
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinyjit.tensor_base import TensorBase

# weak: a tensor nobody holds any more needs no realizing
_pending: dict[int, weakref.ref] = {}


def defer_realize(*tensors: "TensorBase") -> None:
    for t in tensors:
        _pending[id(t)] = weakref.ref(t)


def take_deferred(select=None) -> list["TensorBase"]:
    """The registered tensors that still exist and need realizing (and forget them); with `select` (a predicate),
    only those it picks (the others stay registered)."""
    out = []
    for key, ref in list(_pending.items()):
        t = ref()
        if t is None or t.node.realized:
            _pending.pop(key, None)
        elif select is None or select(t):
            _pending.pop(key, None)
            out.append(t)
    return out
