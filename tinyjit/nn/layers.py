"""Layers with weights (Linear, convolutions, Embedding) and the shape-only ones (Dropout, pooling, Flatten).

Weights start from PyTorch's default distributions (see `tinyjit.nn.init`), so a model built here and one built
in PyTorch have statistically identical starting points, and `load_state_dict` moves weights between them.
"""
from __future__ import annotations

import math
from typing import Optional

from tinyjit.nn import functional_more, init
from tinyjit.nn.module import Module, Parameter
from tinyjit.random import host_generator
from tinyjit.tensor import Tensor
from tinyjit.tensor_conv import _pair


def size_arg(module: str, name: str, value, minimum: int = 0) -> int:
    """A size argument of a module constructor: an int >= minimum. TypeError for another type; for a negative
    size RuntimeError (PyTorch: "Trying to create tensor with negative dimension"), ValueError for 0 where that
    is the minimum's only violation (num_heads, groups)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{module}: {name} must be an int, got {value!r}")
    if value < minimum:
        error = RuntimeError if value < 0 else ValueError
        raise error(f"{module}: {name} must be at least {minimum}, got {value}")
    return value


class Identity(Module):
    """torch.nn.Identity: returns its input unchanged (constructor arguments are accepted and ignored)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x


class Linear(Module):
    """torch.nn.Linear: y = x @ weight.T + bias for x (*, in_features) -> (*, out_features); weight
    (out_features, in_features) and bias (out_features,) start as PyTorch's (Kaiming-uniform). ValueError for an
    input whose last dim is not in_features; TypeError/RuntimeError for bad sizes at construction."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        size_arg("Linear", "in_features", in_features), size_arg("Linear", "out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = init.kaiming_uniform((out_features, in_features), a=math.sqrt(5), dtype=dtype, device=device)
        bound = 1 / math.sqrt(in_features) if in_features > 0 else 0
        self.bias = init.uniform((out_features,), -bound, bound, dtype, device) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear: input of shape {x.shape} does not end in in_features={self.in_features}")
        return x.linear(self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _ConvNd(Module):
    _nd = 2
    _transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", output_padding=0, device=None,
                 dtype=None):
        super().__init__()
        name = type(self).__name__
        size_arg(name, "in_channels", in_channels), size_arg(name, "out_channels", out_channels)
        size_arg(name, "groups", groups, minimum=1)
        for k in _pair(kernel_size, self._nd):
            size_arg(name, "kernel_size", k)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels={in_channels} and out_channels={out_channels} must be "
                             f"divisible by groups={groups}")
        if padding_mode != "zeros":
            raise ValueError(f"{name}: padding_mode {padding_mode!r} is not supported (only 'zeros')")
        if isinstance(padding, str) and (self._transposed or padding not in ("same", "valid")):
            allowed = "an int or tuple" if self._transposed else "an int, a tuple, 'same' or 'valid'"
            raise ValueError(f"{name}: padding must be {allowed}, got {padding!r}")
        nd = self._nd
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.dilation = _pair(kernel_size, nd), _pair(stride, nd), _pair(dilation, nd)
        self.padding = padding if isinstance(padding, str) else _pair(padding, nd)
        self.output_padding = _pair(output_padding, nd)
        self.padding_mode = padding_mode
        if self._transposed:
            shape = (in_channels, out_channels // groups) + self.kernel_size
        else:
            shape = (out_channels, in_channels // groups) + self.kernel_size
        # PyTorch computes the fan from dim 1 of the weight in both cases (for a transposed conv that is
        # out_channels / groups), and uses the same fan for the bias bound
        self.weight = init.kaiming_uniform(shape, a=math.sqrt(5), dtype=dtype, device=device)
        fan_in = shape[1] * math.prod(self.kernel_size)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        self.bias = init.uniform((out_channels,), -bound, bound, dtype, device) if bias else None

    def _check_input(self, x: Tensor) -> None:
        nd = self._nd
        if x.ndim not in (nd + 1, nd + 2) or x.shape[-nd - 1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: expected input (N, {self.in_channels}, *{nd} spatial dims) or "
                             f"unbatched, got shape {x.shape}")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        unbatched = x.ndim == self._nd + 1
        if unbatched:
            x = x.unsqueeze(0)
        if self._transposed:
            out = x._conv_transpose(self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                    self.groups, self.dilation, self._nd, type(self).__name__)
        else:
            out = x._conv(self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups, self._nd,
                          type(self).__name__)
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:
        """torch's text: the arguments that differ from their defaults, in torch's order."""
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if isinstance(self.padding, str) or any(p != 0 for p in self.padding):
            s += f", padding={self.padding}"
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if any(p != 0 for p in self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + (", bias=False" if self.bias is None else "")   # (padding_mode is always zeros here)


class _Conv(_ConvNd):
    """The convolutions' constructor: torch.nn.ConvNd's arguments (no output_padding)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype)


class _ConvTranspose(_ConvNd):
    """The transposed convolutions' constructor: torch.nn.ConvTransposeNd's argument order (output_padding after
    padding, dilation after bias)."""
    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros", device=None,
                 dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, device, dtype)


class Conv1d(_Conv):
    """torch.nn.Conv1d: 1-d convolution of (N, in_channels, L) or unbatched (in_channels, L) to (N, out_channels,
    L_out), L_out = (L + 2*padding - dilation*(k-1) - 1) // stride + 1; weight (out_channels, in_channels/groups,
    k) and bias initialized as PyTorch's. padding: ints, 'same' or 'valid'; only padding_mode='zeros'. ValueError
    for channels not divisible by groups, another padding, or an input whose rank or channels do not fit."""
    _nd = 1


class Conv2d(_Conv):
    """torch.nn.Conv2d: 2-d convolution of (N, in_channels, H, W) or unbatched (in_channels, H, W) to
    (N, out_channels, H_out, W_out); weight (out_channels, in_channels/groups, kh, kw). Arguments, output sizes
    and errors as Conv1d's, per spatial dim."""
    _nd = 2


class Conv3d(_Conv):
    """torch.nn.Conv3d: 3-d convolution of (N, in_channels, D, H, W) or unbatched (in_channels, D, H, W);
    weight (out_channels, in_channels/groups, kd, kh, kw). Arguments, output sizes and errors as Conv1d's."""
    _nd = 3


class ConvTranspose1d(_ConvTranspose):
    """torch.nn.ConvTranspose1d: the transposed 1-d convolution (the gradient of Conv1d with respect to its
    input) of (N, in_channels, L) or unbatched, to L_out = (L-1)*stride - 2*padding + dilation*(k-1) +
    output_padding + 1; weight (in_channels, out_channels/groups, k). ValueError for channels not divisible by
    groups, a string padding, or an input whose rank or channels do not fit."""
    _nd = 1


class ConvTranspose2d(_ConvTranspose):
    """torch.nn.ConvTranspose2d: the transposed 2-d convolution (the gradient of Conv2d with respect to its
    input); weight (in_channels, out_channels/groups, kh, kw). Output sizes and errors as ConvTranspose1d's."""
    _nd = 2


class ConvTranspose3d(_ConvTranspose):
    """torch.nn.ConvTranspose3d: the transposed 3-d convolution; weight (in_channels, out_channels/groups, kd,
    kh, kw). Output sizes and errors as ConvTranspose1d's."""
    _nd = 3


class Embedding(Module):
    """torch.nn.Embedding: rows of `weight` (num_embeddings, embedding_dim) picked by integer indices; weight
    starts N(0, 1) (or is `_weight`), with the `padding_idx` row zeroed. max_norm, norm_type, scale_grad_by_freq
    and sparse as in nn.functional.embedding; `_freeze` makes the weight not require grad. ValueError for
    padding_idx out of range or a `_weight` of another shape."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: Optional[int] = None,
                 max_norm: Optional[float] = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight: Optional[Tensor] = None, _freeze: bool = False, device=None,
                 dtype=None):
        super().__init__()
        size_arg("Embedding", "num_embeddings", num_embeddings), size_arg("Embedding", "embedding_dim", embedding_dim)
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} is out of range for {num_embeddings} rows")
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse = max_norm, norm_type, \
            scale_grad_by_freq, sparse
        if _weight is None:
            w = host_generator().normal(0.0, 1.0, size=(num_embeddings, embedding_dim))
            if padding_idx is not None:
                w[padding_idx] = 0
            self.weight = init._host(w, dtype, device)
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(f"Embedding: _weight of shape {tuple(_weight.shape)} does not match "
                                 f"({num_embeddings}, {embedding_dim})")
            self.weight = Parameter(_weight if isinstance(_weight, Tensor) else Tensor(_weight))
        if _freeze:
            self.weight.requires_grad_(False)

    def forward(self, idx: Tensor) -> Tensor:
        """Rows of the table at `idx` (an int tensor, list or array of any shape): (*idx.shape, embedding_dim).
        The padding_idx row gets no gradient. IndexError (IndexOutOfRange) for an index outside
        [0, num_embeddings), like PyTorch."""
        from tinyjit.nn.functional import embedding
        if isinstance(idx, Tensor) and idx.dtype.is_float:
            raise TypeError(f"Embedding: indices must be an int tensor, got {idx.dtype.name}")
        return embedding(idx, self.weight, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq,
                         self.sparse)

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True, padding_idx: Optional[int] = None,
                        max_norm: Optional[float] = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = False) -> "Embedding":
        """torch.nn.Embedding.from_pretrained: an Embedding whose weight is a Parameter over the 2-d `embeddings`,
        frozen unless freeze=False. ValueError unless embeddings is 2-d."""
        if len(embeddings.shape) != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-d, got shape "
                             f"{tuple(embeddings.shape)}")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, _weight=embeddings,
                   _freeze=freeze)

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"   # torch's order and defaults left out
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            text += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            text += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq:
            text += ", scale_grad_by_freq=True"
        if self.sparse:
            text += ", sparse=True"
        return text


class _DropoutNd(Module):
    """What the dropout modules share (torch's _DropoutNd): p and inplace, checked and shown the same way."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p, self.inplace = p, inplace   # (inplace is shown, as torch does, and otherwise ignored)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """torch.nn.Dropout: while the module is in training mode (its own flag, see Module), zero each element with
    probability p and scale the rest by 1 / (1 - p); in eval mode the identity. Any shape and float dtype.
    ValueError for p outside [0, 1]."""

    def forward(self, x: Tensor) -> Tensor:
        return x.dropout(self.p, training=self.training)


class _ChannelDropout(_DropoutNd):
    """Dropout1d/2d/3d: nn.functional's dropout1d/2d/3d (whole channels zeroed) in training mode, the identity in
    eval mode."""
    _function = None   # the nn.functional_more function, set by each subclass

    def forward(self, x: Tensor) -> Tensor:
        return type(self)._function(x, self.p, self.training)


class Dropout1d(_ChannelDropout):
    """torch.nn.Dropout1d: zero each channel x[n, c, :] of (N, C, L) (or x[c, :] of (C, L)) with probability p,
    scale the rest by 1 / (1 - p). RuntimeError for other ranks."""
    _function = staticmethod(functional_more.dropout1d)


class Dropout2d(_ChannelDropout):
    """torch.nn.Dropout2d: zero each channel x[n, c] of (N, C, H, W) with probability p, scale the rest by
    1 / (1 - p); other ranks as torch reads them (see nn.functional.dropout2d: a 2-d input drops elements)."""
    _function = staticmethod(functional_more.dropout2d)


class Dropout3d(_ChannelDropout):
    """torch.nn.Dropout3d: zero each channel x[n, c] of (N, C, D, H, W) (or x[c] of (C, D, H, W)) with
    probability p, scale the rest by 1 / (1 - p)."""
    _function = staticmethod(functional_more.dropout3d)

class Flatten(Module):
    """torch.nn.Flatten: dims start_dim..end_dim (default 1..-1) merged into one, as Tensor.flatten."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """torch.nn.Unflatten: dim `dim` split into `unflattened_size` (its product must equal that dim's size;
    ValueError otherwise)."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x: Tensor) -> Tensor:
        return x.unflatten(self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
