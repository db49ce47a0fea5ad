"""torch.nn's padding layers over F.pad: ZeroPad1d/2d/3d, ConstantPad1d/2d/3d, ReflectionPad1d/2d/3d and
ReplicationPad1d/2d/3d. Each takes one int for every side or 2 * N ints, (left, right, top, bottom, front, back)
from the last dim backwards, and pads an (unbatched) (C, *spatial) or (N, C, *spatial) input; constructor
arguments and reprs are torch's."""
from __future__ import annotations

import numbers

from tinyjit.nn import functional as F
from tinyjit.nn.module import Module
from tinyjit.tensor import Tensor


class _PadNd(Module):
    """The N-d padding layer of one mode: `_nd` trailing dims padded by F.pad(mode)."""
    _nd = 1
    _mode = "constant"

    def __init__(self, padding, value: float = 0.0):
        super().__init__()
        amounts = (padding,) * (2 * self._nd) if isinstance(padding, numbers.Integral) else tuple(padding)
        if len(amounts) != 2 * self._nd:
            raise ValueError(f"{type(self).__name__}: padding must be an int or {2 * self._nd} ints, got {padding!r}")
        self.padding, self.value = amounts, value

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in (self._nd + 1, self._nd + 2):
            raise ValueError(f"{type(self).__name__}: expected a {self._nd + 1}-d or {self._nd + 2}-d input, got "
                             f"shape {x.shape}")
        return F.pad(x, self.padding, self._mode, self.value if self._mode == "constant" else None)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}" if self._mode == "constant" else f"{self.padding}"


class ConstantPad1d(_PadNd):
    """torch.nn.ConstantPad1d(padding, value): the last dim padded by (left, right) (one int for both) with
    value."""


class ConstantPad2d(_PadNd):
    """torch.nn.ConstantPad2d(padding, value): the last two dims padded by (left, right, top, bottom) (one int for
    all) with value."""
    _nd = 2


class ConstantPad3d(_PadNd):
    """torch.nn.ConstantPad3d(padding, value): the last three dims padded by (left, right, top, bottom, front,
    back) (one int for all) with value; input (C, D, H, W) or (N, C, D, H, W)."""
    _nd = 3


class _ZeroPad:
    """ZeroPadNd(padding): ConstantPadNd with 0 (torch's repr shows the padding only)."""

    def __init__(self, padding):
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ZeroPad1d(_ZeroPad, ConstantPad1d):
    """torch.nn.ZeroPad1d(padding): ConstantPad1d with 0."""


class ZeroPad2d(_ZeroPad, ConstantPad2d):
    """torch.nn.ZeroPad2d(padding): ConstantPad2d with 0."""


class ZeroPad3d(_ZeroPad, ConstantPad3d):
    """torch.nn.ZeroPad3d(padding): ConstantPad3d with 0."""


class ReflectionPad1d(_PadNd):
    """torch.nn.ReflectionPad1d(padding): the last dim padded by its reflection (not repeating the edge); each
    amount must be smaller than the dim (RuntimeError)."""
    _mode = "reflect"

    def __init__(self, padding):
        super().__init__(padding)


class ReflectionPad2d(ReflectionPad1d):
    """torch.nn.ReflectionPad2d(padding): the last two dims padded by reflection, (left, right, top, bottom)."""
    _nd = 2


class ReflectionPad3d(ReflectionPad1d):
    """torch.nn.ReflectionPad3d(padding): the last three dims padded by reflection, (left, right, top, bottom,
    front, back); each amount smaller than its dim (RuntimeError)."""
    _nd = 3


class ReplicationPad1d(_PadNd):
    """torch.nn.ReplicationPad1d(padding): the last dim padded by repeating its edge values."""
    _mode = "replicate"

    def __init__(self, padding):
        super().__init__(padding)


class ReplicationPad2d(ReplicationPad1d):
    """torch.nn.ReplicationPad2d(padding): the last two dims padded by repeating their edge values, (left, right,
    top, bottom)."""
    _nd = 2


class ReplicationPad3d(ReplicationPad1d):
    """torch.nn.ReplicationPad3d(padding): the last three dims padded by repeating their edge values, (left, right,
    top, bottom, front, back)."""
    _nd = 3
