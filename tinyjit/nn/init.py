"""Parameter initialization with PyTorch's default distributions.

Values are drawn on the host from a generator seeded by `Tensor.manual_seed` (`tinyjit.random.host_generator`) and
uploaded once, so a fresh parameter is a realized buffer and creating a model compiles no kernels.

Two spellings: functions returning a new Tensor (`kaiming_uniform(shape, a=...)`) and PyTorch-style in-place
versions with a trailing underscore (`kaiming_uniform_(tensor, a=...)`) that `assign` into an existing tensor.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from tinyjit.dtype import dtypes
from tinyjit.helpers import prod
from tinyjit.random import host_generator
from tinyjit.tensor import Tensor


def calculate_fan_in_and_fan_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch's fans: dim 1 (inputs) and dim 0 (outputs), each times the receptive field (dims 2...)."""
    if len(shape) < 2:
        raise ValueError(f"init: fan in and fan out need a tensor with at least 2 dims, got shape {tuple(shape)}")
    receptive = prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


_GAINS = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "conv_transpose1d": 1.0,
          "conv_transpose2d": 1.0, "conv_transpose3d": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3, "relu": math.sqrt(2.0),
          "selu": 3.0 / 4}


def calculate_gain(nonlinearity: str = "leaky_relu", param: Optional[float] = None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's table); leaky_relu's slope defaults to 0.01."""
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"calculate_gain: negative_slope {slope!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity not in _GAINS:
        raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; expected one of "
                         f"{sorted(_GAINS) + ['leaky_relu']}")
    return _GAINS[nonlinearity]


def _host(values: np.ndarray, dtype, device) -> Tensor:
    dt = dtypes.from_any(dtype) if dtype is not None else dtypes.default_float
    return Tensor(values.astype(dt.np), device=device, requires_grad=True)


def _shape(shape) -> tuple[int, ...]:
    return tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)


def uniform(shape, low: float = 0.0, high: float = 1.0, dtype=None, device=None) -> Tensor:
    """U(low, high) of the given shape."""
    rng = host_generator()
    return _host(rng.uniform(low, high, size=_shape(shape)), dtype, device)


def normal(shape, mean: float = 0.0, std: float = 1.0, dtype=None, device=None) -> Tensor:
    """N(mean, std^2) of the given shape."""
    rng = host_generator()
    return _host(rng.normal(mean, std, size=_shape(shape)), dtype, device)


def trunc_normal(shape, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, dtype=None,
                 device=None) -> Tensor:
    """N(mean, std^2) restricted to [a, b] (absolute bounds, like PyTorch), by redrawing what falls outside."""
    if not a < b:
        raise ValueError(f"trunc_normal: need a < b, got a={a}, b={b}")
    rng = host_generator()
    out = rng.normal(mean, std, size=_shape(shape))
    bad = (out < a) | (out > b)
    for _ in range(1000):
        if not bad.any():
            break
        out[bad] = rng.normal(mean, std, size=int(bad.sum()))
        bad = (out < a) | (out > b)
    return _host(np.clip(out, a, b), dtype, device)


def zeros(shape, dtype=None, device=None) -> Tensor:
    return _host(np.zeros(_shape(shape)), dtype, device)


def ones(shape, dtype=None, device=None) -> Tensor:
    return _host(np.ones(_shape(shape)), dtype, device)


def kaiming_uniform(shape, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", dtype=None,
                    device=None) -> Tensor:
    """U(-bound, bound) with bound = gain * sqrt(3 / fan). With a = sqrt(5) (the default of Linear and Conv
    weights) this is U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(shape, mode))
    return uniform(shape, -bound, bound, dtype, device)


def kaiming_normal(shape, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", dtype=None,
                   device=None) -> Tensor:
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(shape, mode))
    return normal(shape, 0.0, std, dtype, device)


def xavier_uniform(shape, gain: float = 1.0, dtype=None, device=None) -> Tensor:
    fan_in, fan_out = calculate_fan_in_and_fan_out(_shape(shape))
    bound = gain * math.sqrt(6.0 / max(fan_in + fan_out, 1))   # zero fans: a zero-sized tensor, nothing to draw
    return uniform(shape, -bound, bound, dtype, device)


def xavier_normal(shape, gain: float = 1.0, dtype=None, device=None) -> Tensor:
    fan_in, fan_out = calculate_fan_in_and_fan_out(_shape(shape))
    return normal(shape, 0.0, gain * math.sqrt(2.0 / max(fan_in + fan_out, 1)), dtype, device)


def orthogonal(shape, gain: float = 1.0, dtype=None, device=None) -> Tensor:
    """A (semi-)orthogonal matrix of shape (shape[0], prod(shape[1:])), reshaped to `shape` and scaled by `gain`:
    the Q of the QR decomposition of a standard normal draw, its columns' signs fixed by R's diagonal (so the
    result is uniform over orthogonal matrices), as torch.nn.init.orthogonal_ (Saxe et al. 2013). With more
    columns than rows the rows are orthonormal, otherwise the columns. ValueError for fewer than 2 dims."""
    shape = _shape(shape)
    if len(shape) < 2:
        raise ValueError(f"orthogonal: only tensors with 2 or more dimensions are supported, got shape {shape}")
    rows, cols = shape[0], prod(shape[1:])
    if rows * cols == 0:
        return _host(np.zeros(shape), dtype, device)
    draw = host_generator().normal(0.0, 1.0, size=(rows, cols))
    tall = draw if rows >= cols else draw.T
    q, r = np.linalg.qr(tall)
    q = q * np.sign(np.diag(r))   # (a zero on R's diagonal has probability 0)
    return _host((q if rows >= cols else q.T).reshape(shape) * gain, dtype, device)


def sparse(shape, sparsity: float, std: float = 0.01, dtype=None, device=None) -> Tensor:
    """A 2-d (rows, cols) draw from N(0, std^2) with ceil(sparsity * rows) entries of each column set to zero (at
    random rows), as torch.nn.init.sparse_ (Martens 2010). ValueError for another rank."""
    shape = _shape(shape)
    if len(shape) != 2:
        raise ValueError(f"sparse: only tensors with 2 dimensions are supported, got shape {shape}")
    rows, cols = shape
    rng = host_generator()
    values = rng.normal(0.0, std, size=shape)
    zeros_per_column = int(math.ceil(sparsity * rows))
    for column in range(cols):
        values[rng.permutation(rows)[:zeros_per_column], column] = 0.0
    return _host(values, dtype, device)


def _fan(shape, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(_shape(shape))
    fan = fan_in if mode == "fan_in" else fan_out
    # a zero fan means a zero-sized dim: there is nothing to draw, and nn.Linear(0, 2) is valid (as in PyTorch)
    return max(fan, 1)


# ---- in place, PyTorch style: draw a new value for an existing tensor and assign it ----
def _precision(tensor: Tensor):
    """The dtype to draw in for `tensor`: its own if floating (a float64 parameter gets float64 draws, not float32
    ones widened), else the default float (cast on assignment)."""
    return tensor.dtype if tensor.dtype.is_float else None


def _fill(tensor: Tensor, value: Tensor) -> Tensor:
    """Assign `value` into `tensor` (a parameter or any tensor) outside autograd; returns `tensor`."""
    with Tensor.no_grad():   # an initializer is no part of any graph (and a parameter is a leaf: PyTorch's rule)
        tensor.assign(value.cast(tensor.dtype)).realize()
    return tensor


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    return _fill(tensor, uniform(tensor.shape, a, b, _precision(tensor), tensor.device))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    return _fill(tensor, normal(tensor.shape, mean, std, _precision(tensor), tensor.device))


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> Tensor:
    return _fill(tensor, trunc_normal(tensor.shape, mean, std, a, b, _precision(tensor), tensor.device))


def zeros_(tensor: Tensor) -> Tensor:
    return _fill(tensor, zeros(tensor.shape, _precision(tensor), tensor.device))


def ones_(tensor: Tensor) -> Tensor:
    return _fill(tensor, ones(tensor.shape, _precision(tensor), tensor.device))


def constant_(tensor: Tensor, val: float) -> Tensor:
    return _fill(tensor, _host(np.full(tensor.shape, val), _precision(tensor), tensor.device))


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    return _fill(tensor, kaiming_uniform(tensor.shape, a, mode, nonlinearity, _precision(tensor), tensor.device))


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    return _fill(tensor, kaiming_normal(tensor.shape, a, mode, nonlinearity, _precision(tensor), tensor.device))


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    return _fill(tensor, xavier_uniform(tensor.shape, gain, _precision(tensor), tensor.device))


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    return _fill(tensor, xavier_normal(tensor.shape, gain, _precision(tensor), tensor.device))


def orthogonal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """torch.nn.init.orthogonal_: fill `tensor` (2 or more dims, flattened to (size(0), -1)) with a (semi-)orthogonal
    matrix times `gain` (see `orthogonal`). ValueError for fewer than 2 dims."""
    return _fill(tensor, orthogonal(tensor.shape, gain, _precision(tensor), tensor.device))


def sparse_(tensor: Tensor, sparsity: float, std: float = 0.01) -> Tensor:
    """torch.nn.init.sparse_: fill the 2-d `tensor` from N(0, std^2) with a `sparsity` fraction of each column zero
    (see `sparse`). ValueError for another rank."""
    return _fill(tensor, sparse(tensor.shape, sparsity, std, _precision(tensor), tensor.device))


def eye_(tensor: Tensor) -> Tensor:
    """torch.nn.init.eye_: fill the 2-d `tensor` with the identity (ones on the main diagonal of a rectangular
    matrix too), which keeps a Linear layer's inputs. ValueError for another rank."""
    if tensor.ndim != 2:
        raise ValueError(f"eye_: only tensors with 2 dimensions are supported, got shape {tensor.shape}")
    return _fill(tensor, _host(np.eye(*tensor.shape), _precision(tensor), tensor.device))


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    """torch.nn.init.dirac_: fill the 3-, 4- or 5-d convolution weight (out, in, *kernel) with the Dirac delta, so
    the convolution keeps its input channels (in each of `groups` groups of out // groups output channels, output
    channel i of a group is input channel i at the kernel's centre; the rest zero). ValueError for another rank or
    an out-channel count not divisible by `groups`."""
    if tensor.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_: only tensors with 3, 4, or 5 dimensions are supported, got shape {tensor.shape}")
    out_channels, in_channels, *kernel = tensor.shape
    if groups <= 0 or out_channels % groups:
        raise ValueError(f"dirac_: dim 0 ({out_channels}) must be divisible by groups ({groups})")
    per_group = out_channels // groups
    values = np.zeros(tensor.shape)
    centre = tuple(k // 2 for k in kernel)
    for group in range(groups):
        for channel in range(min(per_group, in_channels)):
            values[(group * per_group + channel, channel) + centre] = 1.0
    return _fill(tensor, _host(values, _precision(tensor), tensor.device))
