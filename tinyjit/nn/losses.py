"""Loss modules with PyTorch's constructor arguments (torch.nn's losses); `loss(input, target)` calls the
Tensor method."""
from __future__ import annotations

from typing import Optional

from tinyjit.nn.functional import _reduction
from tinyjit.nn.module import Module
from tinyjit.tensor import Tensor
from tinyjit.tensor_nn import _reduce_loss

class _Loss(Module):
    """The losses' common part: `reduction` ('none', 'mean' or 'sum'; PyTorch's deprecated size_average / reduce
    flags map onto it as in torch) and optional weight tensors, registered as buffers (None when not given)."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", **weights: Optional[Tensor]):
        super().__init__()
        self.reduction = _reduction(size_average, reduce, reduction, type(self).__name__)
        for name, t in weights.items():
            if t is not None:
                self.register_buffer(name, t)
            else:
                setattr(self, name, None)

    def _check_shapes(self, input: Tensor, target: Tensor) -> None:
        if input.shape != target.shape:
            raise ValueError(f"{type(self).__name__}: input of shape {input.shape} and target of shape "
                             f"{target.shape} must match")


class CrossEntropyLoss(_Loss):
    """torch.nn.CrossEntropyLoss: log-softmax over dim 1 (input (N, C, d...) or unbatched (C,)) then the negative
    log-likelihood. Targets are int class indices (N, d...) or class probabilities shaped like the input;
    `weight` (C,) rescales classes, `ignore_index` targets add nothing (and are not counted by the mean),
    `label_smoothing` mixes the target with the uniform distribution. Errors as F.cross_entropy (IndexError for a
    class index out of range)."""

    def __init__(self, weight: Optional[Tensor] = None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(size_average, reduce, reduction, weight=weight)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return input.cross_entropy(target, self.reduction, self.label_smoothing, self.ignore_index, self.weight)


class NLLLoss(_Loss):
    """torch.nn.NLLLoss: minus the log-probabilities (N, C, d...) at int class-index targets (N, d...), weighted
    by `weight` (C,); `ignore_index` targets add nothing. IndexError for a class index out of range."""

    def __init__(self, weight: Optional[Tensor] = None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction, weight=weight)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return input.nll_loss(target, self.reduction, self.ignore_index, self.weight)


class MSELoss(_Loss):
    """torch.nn.MSELoss: (input - target)^2, reduced. ValueError unless input and target have one shape."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(input, target)
        return _reduce_loss((input - target).square(), self.reduction, None)


class L1Loss(_Loss):
    """torch.nn.L1Loss: |input - target|, reduced. ValueError unless input and target have one shape."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(input, target)
        return _reduce_loss((input - target).abs(), self.reduction, None)


class HuberLoss(_Loss):
    """torch.nn.HuberLoss: 0.5 * d^2 where |d| < delta, else delta * (|d| - 0.5 * delta), d = input - target,
    reduced. ValueError unless input and target have one shape."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(input, target)
        d = (input - target).abs()
        loss = (d < self.delta).where(0.5 * d * d, self.delta * (d - 0.5 * self.delta))
        return _reduce_loss(loss, self.reduction, None)


class BCELoss(_Loss):
    """torch.nn.BCELoss: -(t * log(p) + (1 - t) * log(1 - p)) of probabilities p (logs clamped at -100, as
    PyTorch), times `weight` (broadcast) when given, reduced. ValueError unless input and target have one
    shape."""

    def __init__(self, weight: Optional[Tensor] = None, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction, weight=weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(input, target)
        loss = input.binary_cross_entropy(target, reduction="none")
        return _reduce_loss(loss * self.weight if self.weight is not None else loss, self.reduction, None)


class BCEWithLogitsLoss(_Loss):
    """torch.nn.BCEWithLogitsLoss: binary cross-entropy of logits, computed stably (sigmoid and log in one);
    `weight` rescales each element, `pos_weight` (one per class, broadcast over the last dim) the positive term.
    ValueError unless input and target have one shape."""

    def __init__(self, weight: Optional[Tensor] = None, size_average=None, reduce=None, reduction: str = "mean",
                 pos_weight: Optional[Tensor] = None):
        super().__init__(size_average, reduce, reduction, weight=weight, pos_weight=pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self._check_shapes(input, target)
        loss = input.binary_cross_entropy_with_logits(target, reduction="none", pos_weight=self.pos_weight)
        return _reduce_loss(loss * self.weight if self.weight is not None else loss, self.reduction, None)
