"""More torch.nn modules over tinyjit.nn.functional_more and nn.functional: Unfold/Fold, PixelShuffle/
PixelUnshuffle, AdaptiveMaxPool1d/2d, PairwiseDistance, CosineSimilarity, InstanceNorm1d/2d/3d, PReLU, SELU,
Threshold, Hardshrink/Softshrink/Tanhshrink, Bilinear, and the containers ParameterList/ParameterDict (the
padding layers are in tinyjit/nn/padding.py). Constructor arguments, defaults,
parameter names and state_dict keys are torch's."""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Iterable, Iterator, Mapping, Optional

from tinyjit.deferred import defer_realize
from tinyjit.nn import functional as F
from tinyjit.nn import functional_more as FM
from tinyjit.nn import init
from tinyjit.nn.activation import inplace_repr
from tinyjit.nn.module import Module, Parameter
from tinyjit.tensor import Tensor


class Unfold(Module):
    """torch.nn.Unfold: F.unfold (im2col) with the stored kernel_size, dilation, padding and stride: (N, C, H, W)
    -> (N, C * kh * kw, L)."""

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.kernel_size, self.dilation, self.padding, self.stride = kernel_size, dilation, padding, stride

    def forward(self, x: Tensor) -> Tensor:
        return FM.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding}, "
                f"stride={self.stride}")


class Fold(Module):
    """torch.nn.Fold: F.fold (col2im) with the stored output_size, kernel_size, dilation, padding and stride:
    (N, C * kh * kw, L) -> (N, C, H, W), overlapping blocks summed."""

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.output_size, self.kernel_size = output_size, kernel_size
        self.dilation, self.padding, self.stride = dilation, padding, stride

    def forward(self, x: Tensor) -> Tensor:
        return FM.fold(x, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"padding={self.padding}, stride={self.stride}")


class PixelShuffle(Module):
    """torch.nn.PixelShuffle: (*, C * r^2, H, W) -> (*, C, H * r, W * r) (F.pixel_shuffle)."""

    def __init__(self, upscale_factor: int):
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, x: Tensor) -> Tensor:
        return FM.pixel_shuffle(x, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    """torch.nn.PixelUnshuffle: (*, C, H * r, W * r) -> (*, C * r^2, H, W) (F.pixel_unshuffle)."""

    def __init__(self, downscale_factor: int):
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, x: Tensor) -> Tensor:
        return FM.pixel_unshuffle(x, self.downscale_factor)

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"


class AdaptiveMaxPool1d(Module):
    """torch.nn.AdaptiveMaxPool1d: F.adaptive_max_pool1d with the stored output_size (and return_indices)."""

    def __init__(self, output_size, return_indices: bool = False):
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, x: Tensor):
        return FM.adaptive_max_pool1d(x, self.output_size, self.return_indices)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(AdaptiveMaxPool1d):
    """torch.nn.AdaptiveMaxPool2d: F.adaptive_max_pool2d with the stored output_size (and return_indices)."""

    def forward(self, x: Tensor):
        return FM.adaptive_max_pool2d(x, self.output_size, self.return_indices)


class AdaptiveMaxPool3d(AdaptiveMaxPool1d):
    """torch.nn.AdaptiveMaxPool3d: F.adaptive_max_pool3d with the stored output_size (and return_indices)."""

    def forward(self, x: Tensor):
        return FM.adaptive_max_pool3d(x, self.output_size, self.return_indices)


class PairwiseDistance(Module):
    """torch.nn.PairwiseDistance: F.pairwise_distance(x1, x2, p, eps, keepdim), the p-norm of x1 - x2 + eps over
    the last dim."""

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False):
        super().__init__()
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return FM.pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)


class CosineSimilarity(Module):
    """torch.nn.CosineSimilarity: F.cosine_similarity(x1, x2, dim, eps) along `dim` (default 1)."""

    def __init__(self, dim: int = 1, eps: float = 1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return F.cosine_similarity(x1, x2, self.dim, self.eps)


class _InstanceNorm(Module):
    _nd = 2

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = False,
                 track_running_stats: bool = False, device=None, dtype=None, *, bias: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = init.ones((num_features,), dtype, device) if affine else None
        self.bias = init.zeros((num_features,), dtype, device) if affine and bias else None
        if track_running_stats:
            self.register_buffer("running_mean", init.zeros((num_features,), dtype, device))
            self.register_buffer("running_var", init.ones((num_features,), dtype, device))
            self.register_buffer("num_batches_tracked", Tensor(0, dtype="int64", device=device))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x: Tensor) -> Tensor:
        name, nd = type(self).__name__, self._nd
        if x.ndim not in (nd + 1, nd + 2):
            raise ValueError(f"{name}: expected a {nd + 1}-d or {nd + 2}-d input, got shape {x.shape}")
        batched = x if x.ndim == nd + 2 else x.unsqueeze(0)
        if batched.shape[1] != self.num_features and self.affine:
            raise ValueError(f"{name}: expected {self.num_features} channels, got shape {x.shape}")
        use_input_stats = self.training or not self.track_running_stats
        # (torch's instance norm never counts num_batches_tracked, and momentum=None updates nothing)
        momentum = 0.0 if self.momentum is None else self.momentum
        out = FM.instance_norm(batched, self.running_mean, self.running_var, self.weight, self.bias,
                               use_input_stats, momentum, self.eps)
        if self.track_running_stats and self.training:   # the lazy buffer updates run with the next step
            defer_realize(self.running_mean, self.running_var)
        return out if x.ndim == nd + 2 else out.squeeze(0)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class InstanceNorm1d(_InstanceNorm):
    """torch.nn.InstanceNorm1d: F.instance_norm of (N, C, L) or (C, L), each (n, c) row normalized over L; affine
    weight/bias and running statistics as torch's arguments (both off by default)."""
    _nd = 1


class InstanceNorm2d(_InstanceNorm):
    """torch.nn.InstanceNorm2d: F.instance_norm of (N, C, H, W) or (C, H, W), each (n, c) image normalized over H
    and W; affine weight/bias and running statistics as torch's arguments (both off by default)."""
    _nd = 2


class InstanceNorm3d(_InstanceNorm):
    """torch.nn.InstanceNorm3d: F.instance_norm of (N, C, D, H, W) or (C, D, H, W), each (n, c) volume normalized
    over D, H and W; affine weight/bias and running statistics as torch's arguments (both off by default)."""
    _nd = 3


class PReLU(Module):
    """torch.nn.PReLU: x where x > 0, weight * x elsewhere, weight a parameter of num_parameters (1, or one per
    channel) values starting at `init`."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters = num_parameters
        self.weight = Tensor.full((num_parameters,), float(init), dtype=dtype or "float32", device=device)

    def forward(self, x: Tensor) -> Tensor:
        return FM.prelu(x, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class SELU(Module):
    """torch.nn.SELU: F.selu, scale * elu(x, alpha) with torch's constants."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return FM.selu(x)

    def extra_repr(self) -> str:
        return inplace_repr(self)


class Threshold(Module):
    """torch.nn.Threshold(threshold, value): x where x > threshold, else value."""

    def __init__(self, threshold: float, value: float, inplace: bool = False):
        super().__init__()
        self.threshold, self.value, self.inplace = threshold, value, inplace

    def forward(self, x: Tensor) -> Tensor:
        return FM.threshold(x, self.threshold, self.value)

    def extra_repr(self) -> str:
        return inplace_repr(self, f"threshold={self.threshold}, value={self.value}")


class Hardshrink(Module):
    """torch.nn.Hardshrink(lambd=0.5): x where |x| > lambd, else 0."""

    def __init__(self, lambd: float = 0.5):
        super().__init__()
        self.lambd = lambd

    def forward(self, x: Tensor) -> Tensor:
        return FM.hardshrink(x, self.lambd)

    def extra_repr(self) -> str:
        return f"{self.lambd}"


class Softshrink(Hardshrink):
    """torch.nn.Softshrink(lambd=0.5): x - lambd above lambd, x + lambd below -lambd, 0 between."""

    def forward(self, x: Tensor) -> Tensor:
        return FM.softshrink(x, self.lambd)


class Tanhshrink(Module):
    """torch.nn.Tanhshrink: x - tanh(x)."""

    def forward(self, x: Tensor) -> Tensor:
        return FM.tanhshrink(x)


class Bilinear(Module):
    """torch.nn.Bilinear(in1_features, in2_features, out_features, bias=True): y = x1^T W x2 + b with weight
    (out, in1, in2) and bias (out,), both uniform in +-1/sqrt(in1_features) as torch; inputs (*, in1) and (*, in2)
    -> (*, out)."""

    def __init__(self, in1_features: int, in2_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__()
        self.in1_features, self.in2_features, self.out_features = in1_features, in2_features, out_features
        bound = 1 / math.sqrt(in1_features) if in1_features > 0 else 0
        self.weight = init.uniform((out_features, in1_features, in2_features), -bound, bound, dtype, device)
        self.bias = init.uniform((out_features,), -bound, bound, dtype, device) if bias else None

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return FM.bilinear(x1, x2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


def _as_parameter(value, where: str) -> Tensor:
    if isinstance(value, Parameter):
        return value
    if isinstance(value, Tensor):
        return Parameter(value)
    raise TypeError(f"{where}: expected a Tensor or Parameter, got {type(value).__name__}")


class ParameterList(Module):
    """torch.nn.ParameterList: a list of parameters registered under "0", "1", ... (state_dict keys as torch's);
    plain tensors become Parameters. append, extend, indexing, len and iteration as a list."""

    def __init__(self, values: Optional[Iterable[Tensor]] = None):
        super().__init__()
        object.__setattr__(self, "_count", 0)
        for v in values or ():
            self.append(v)

    def append(self, value: Tensor) -> ParameterList:
        setattr(self, str(self._count), _as_parameter(value, "ParameterList.append"))
        object.__setattr__(self, "_count", self._count + 1)
        return self

    def extend(self, values: Iterable[Tensor]) -> ParameterList:
        for v in values:
            self.append(v)
        return self

    def __getitem__(self, idx):
        if isinstance(idx, slice):   # a new list of the same Parameter objects, as torch
            return ParameterList([self[i] for i in range(self._count)[idx]])
        return getattr(self, str(range(self._count)[idx]))

    def __setitem__(self, idx: int, value: Tensor) -> None:
        setattr(self, str(range(self._count)[idx]), _as_parameter(value, "ParameterList"))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Tensor]:
        return (self[i] for i in range(self._count))

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ParameterList is a container: index it for its parameters")


class ParameterDict(Module):
    """torch.nn.ParameterDict: an ordered dict of parameters registered under their keys (state_dict keys as
    torch's); plain tensors become Parameters. Indexing, assignment, `del`, `in`, len, iteration (the keys),
    keys/values/items, get, pop, popitem, setdefault, update (from a mapping, a ParameterDict or (key, value)
    pairs; a plain dict in sorted key order, as torch), clear, copy, | and |=. KeyError for a missing key (torch's
    pop raises AttributeError); TypeError for a key that is not a str or a value that is not a tensor."""

    def __init__(self, parameters=None):
        super().__init__()
        object.__setattr__(self, "_keys", [])
        if parameters is not None:
            self.update(parameters)

    def __setitem__(self, key: str, value: Tensor) -> None:
        if not isinstance(key, str):
            raise TypeError(f"ParameterDict: keys must be str, got {type(key).__name__}")
        setattr(self, key, _as_parameter(value, "ParameterDict"))
        if key not in self._keys:
            self._keys.append(key)

    def __getitem__(self, key: str) -> Tensor:
        if key not in self._keys:
            raise KeyError(key)
        return getattr(self, key)

    def __delitem__(self, key: str) -> None:
        if key not in self._keys:
            raise KeyError(key)
        self._keys.remove(key)
        delattr(self, key)

    def __contains__(self, key) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._keys))

    def keys(self) -> list[str]:
        return list(self._keys)

    def values(self) -> list[Tensor]:
        return [self[k] for k in self._keys]

    def items(self) -> list[tuple[str, Tensor]]:
        return [(k, self[k]) for k in self._keys]

    def get(self, key: str, default=None):
        """The parameter under `key`, or `default` when there is none."""
        return self[key] if key in self._keys else default

    def pop(self, key: str) -> Tensor:
        """Remove and return the parameter under `key`; KeyError when it is missing."""
        value = self[key]
        del self[key]
        return value

    def popitem(self) -> tuple[str, Tensor]:
        """Remove and return the last (key, parameter) pair; KeyError when empty."""
        if not self._keys:
            raise KeyError("popitem(): ParameterDict is empty")
        key = self._keys[-1]
        return key, self.pop(key)

    def setdefault(self, key: str, default=None):
        """The parameter under `key`, first setting it to `default` when missing (None is stored as a missing
        parameter, like torch's, and returned)."""
        if key not in self._keys:
            if default is None:
                self._keys.append(key)
                self.register_parameter(key, None)
                return None
            self[key] = default
        return self[key]

    def update(self, parameters) -> None:
        """Add or replace parameters from a mapping or an iterable of (key, value) pairs. As torch: an OrderedDict,
        a ParameterDict and pairs keep their order, another mapping (a plain dict) is added in sorted key order.
        TypeError for anything else, ValueError for an element that is not a pair."""
        if isinstance(parameters, (ParameterDict, OrderedDict)):
            pairs = list(parameters.items())
        elif isinstance(parameters, Mapping):
            pairs = sorted(parameters.items(), key=lambda pair: pair[0])
        elif isinstance(parameters, Iterable) and not isinstance(parameters, (str, bytes, Tensor)):
            pairs = []
            for i, pair in enumerate(parameters):
                if not isinstance(pair, Iterable) or isinstance(pair, (str, Tensor)):
                    raise TypeError(f"ParameterDict.update: element {i} should be a (key, value) pair, got "
                                    f"{type(pair).__name__}")
                pair = tuple(pair)
                if len(pair) != 2:
                    raise ValueError(f"ParameterDict.update: element {i} has length {len(pair)}; 2 is required")
                pairs.append(pair)
        else:
            raise TypeError(f"ParameterDict.update: expected a mapping or an iterable of (key, value) pairs, got "
                            f"{type(parameters).__name__}")
        for key, value in pairs:
            self[key] = value

    def clear(self) -> None:
        """Remove every parameter."""
        for key in list(self._keys):
            del self[key]

    def copy(self) -> ParameterDict:
        """A new ParameterDict holding the same parameters (not copies of them), as torch's."""
        return ParameterDict(OrderedDict(self.items()))

    def __or__(self, other) -> ParameterDict:
        """`pd | other`: a copy of pd updated from other (a mapping or pairs, as update), as torch's; TypeError
        otherwise."""
        merged = self.copy()
        merged.update(other)
        return merged

    def __ror__(self, other):
        """`other | pd`: a copy of other (a dict stays a dict) updated from pd's pairs, as torch's."""
        merged = other.copy()
        merged.update(self.items())
        return merged

    def __ior__(self, other) -> ParameterDict:
        """`pd |= other`: pd updated from other in place, as update."""
        self.update(other)
        return self

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ParameterDict is a container: index it for its parameters")
