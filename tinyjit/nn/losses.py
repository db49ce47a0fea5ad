"""Loss modules with PyTorch's constructor arguments; `loss(input, target)` calls the Tensor method."""
from __future__ import annotations

from typing import Optional

from tinyjit.nn.module import Module
from tinyjit.tensor import Tensor
from tinyjit.tensor_nn import _reduce_loss

_REDUCTIONS = ("none", "mean", "sum")


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def _check_shapes(self, input: Tensor, target: Tensor) -> None:
        if input.shape != target.shape:
            raise ValueError(f"{type(self).__name__}: input of shape {input.shape} and target of shape "
                             f"{target.shape} must match")

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Log-softmax over dim 1 then negative log-likelihood. Targets are class indices (N, ...) or class
    probabilities shaped like the input; `weight` rescales classes, `ignore_index` targets add nothing (and are
    not counted by the mean), `label_smoothing` mixes the target with the uniform distribution."""

    def __init__(self, weight: Optional[Tensor] = None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__(reduction)
        if weight is not None:
            self.register_buffer("weight", weight)
        else:
            self.weight = None
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return input.cross_entropy(target, self.reduction, self.label_smoothing, self.ignore_index, self.weight)


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities (N, C, ...) at class-index targets (N, ...)."""

    def __init__(self, weight: Optional[Tensor] = None, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(reduction)
        if weight is not None:
            self.register_buffer("weight", weight)
        else:
            self.weight = None
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return input.nll_loss(target, self.reduction, self.ignore_index, self.weight)


class MSELoss(_Loss):
    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(input, target)
        return _reduce_loss((input - target).square(), self.reduction, None)


class L1Loss(_Loss):
    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(input, target)
        return _reduce_loss((input - target).abs(), self.reduction, None)


class HuberLoss(_Loss):
    """0.5 * d^2 where |d| < delta, else delta * (|d| - 0.5 * delta)."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(input, target)
        d = (input - target).abs()
        loss = (d < self.delta).where(0.5 * d * d, self.delta * (d - 0.5 * self.delta))
        return _reduce_loss(loss, self.reduction, None)


class BCELoss(_Loss):
    """Binary cross-entropy of probabilities; `weight` rescales each element."""

    def __init__(self, weight: Optional[Tensor] = None, reduction: str = "mean"):
        super().__init__(reduction)
        if weight is not None:
            self.register_buffer("weight", weight)
        else:
            self.weight = None

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(input, target)
        loss = input.binary_cross_entropy(target, reduction="none")
        return _reduce_loss(loss * self.weight if self.weight is not None else loss, self.reduction, None)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of logits, computed stably; `weight` rescales each element, `pos_weight` (one per
    class, broadcast over the last dim) the positive term."""

    def __init__(self, weight: Optional[Tensor] = None, reduction: str = "mean", pos_weight: Optional[Tensor] = None):
        super().__init__(reduction)
        for name, t in (("weight", weight), ("pos_weight", pos_weight)):
            if t is not None:
                self.register_buffer(name, t)
            else:
                setattr(self, name, None)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(input, target)
        loss = input.binary_cross_entropy_with_logits(target, reduction="none", pos_weight=self.pos_weight)
        return _reduce_loss(loss * self.weight if self.weight is not None else loss, self.reduction, None)
