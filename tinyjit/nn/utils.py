"""Gradient utilities: clip_grad_norm_ and clip_grad_value_ (PyTorch semantics).

Gradients are lazy, so "in place" means each parameter's `.grad` is replaced by the clipped lazy value; nothing
runs until the optimizer step realizes it together with the update.
"""
from __future__ import annotations

import math
from typing import Iterable, Union

from tinyjit.dtype import dtypes
from tinyjit.tensor import Tensor

_Params = Union[Tensor, Iterable[Tensor]]


def _with_grads(parameters: _Params) -> list[Tensor]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p for p in params if p.grad is not None]


def clip_grad_norm_(parameters: _Params, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale all gradients by min(1, max_norm / (total_norm + 1e-6)), where total_norm is the norm of all
    gradients together, and return total_norm as a (lazy) 0-d Tensor."""
    params = _with_grads(parameters)
    norm_type = float(norm_type)
    if not params:
        return Tensor(0.0)
    # the norm in float32 at least: the squares of half gradients pass half's range
    grads = [p.grad if p.grad.dtype in (dtypes.float32, dtypes.float64) else p.grad.float() for p in params]
    if norm_type == math.inf:
        total = grads[0].abs().max()
        for g in grads[1:]:
            total = total.maximum(g.abs().max())
    elif norm_type <= 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be positive or inf, got {norm_type}")
    else:
        acc = None
        for g in grads:
            s = g.square().sum() if norm_type == 2 else (g.abs() ** norm_type).sum()
            acc = s if acc is None else acc + s
        total = acc.sqrt() if norm_type == 2 else acc ** (1 / norm_type)
    if error_if_nonfinite:
        value = total.item()
        if not math.isfinite(value):
            raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {value}; "
                               f"pass error_if_nonfinite=False to clip anyway")
    coef = (max_norm / (total + 1e-6)).minimum(1.0)
    for p in params:
        p.grad = p.grad * coef.cast(p.grad.dtype)
    return total


def clip_grad_value_(parameters: _Params, clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value]."""
    for p in _with_grads(parameters):
        p.grad = p.grad.clip(-clip_value, clip_value)
