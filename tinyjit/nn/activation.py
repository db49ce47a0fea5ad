"""Activation modules (torch.nn's): thin wrappers over the Tensor methods and nn.functional, with PyTorch's
constructor arguments. `inplace=` is accepted for source compatibility (and shown in the repr, as torch shows it)
but otherwise ignored: every op here builds a new lazy value. Unless a docstring says otherwise, these take any
shape and keep it."""
from __future__ import annotations

from typing import Optional

from tinyjit.nn.module import Module
from tinyjit.tensor import Tensor


def inplace_repr(module: Module, text: str = "") -> str:
    """`text` (a module's other arguments) followed by "inplace=True" when the module was built with it, as
    torch's reprs show it."""
    if not module.inplace:
        return text
    return f"{text}, inplace=True" if text else "inplace=True"


class ReLU(Module):
    """torch.nn.ReLU: max(x, 0) elementwise (gradient 0 at 0); any shape, dtype kept."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return x.relu()

    def extra_repr(self) -> str:
        return inplace_repr(self)


class ReLU6(Module):
    """torch.nn.ReLU6: min(max(x, 0), 6) elementwise; any shape, dtype kept."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return x.relu6()

    def extra_repr(self) -> str:
        return inplace_repr(self)


class GELU(Module):
    """torch.nn.GELU: x * Phi(x) (the normal CDF), or its tanh approximation with approximate='tanh'; any
    shape; ints give float32. ValueError for another `approximate`."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return x.gelu(self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """torch.nn.SiLU: x * sigmoid(x) elementwise; any shape; ints give float32."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return x.silu()

    def extra_repr(self) -> str:
        return inplace_repr(self)


class Sigmoid(Module):
    """torch.nn.Sigmoid: 1 / (1 + exp(-x)) elementwise; any shape; ints give float32."""

    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid()


class Tanh(Module):
    """torch.nn.Tanh: tanh(x) elementwise; any shape; ints give float32."""

    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class LeakyReLU(Module):
    """torch.nn.LeakyReLU: x where x >= 0, else negative_slope * x; any shape; ints give float32."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, x: Tensor) -> Tensor:
        return x.leaky_relu(self.negative_slope)

    def extra_repr(self) -> str:
        return inplace_repr(self, f"negative_slope={self.negative_slope}")


class ELU(Module):
    """torch.nn.ELU: x where x > 0, else alpha * (exp(x) - 1); any shape; ints give float32."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, x: Tensor) -> Tensor:
        return x.elu(self.alpha)

    def extra_repr(self) -> str:
        return inplace_repr(self, f"alpha={self.alpha}")


class Softplus(Module):
    """torch.nn.Softplus: log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold; any
    shape; ints give float32."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, x: Tensor) -> Tensor:
        return x.softplus(self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Mish(Module):
    """torch.nn.Mish: x * tanh(softplus(x)) elementwise; any shape; ints give float32."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return x.mish()

    def extra_repr(self) -> str:
        return inplace_repr(self)


class Hardswish(Module):
    """torch.nn.Hardswish: x * relu6(x + 3) / 6 elementwise; any shape; ints give float32."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return x.hardswish()


class Hardsigmoid(Module):
    """torch.nn.Hardsigmoid: relu6(x + 3) / 6 elementwise; any shape; ints give float32."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return x.hardsigmoid()


def _softmax_dim(dim: Optional[int], x: Tensor) -> int:
    if dim is None:   # PyTorch's legacy choice when no dim is given
        return 0 if x.ndim in (0, 1, 3) else 1
    return dim


class Softmax(Module):
    """torch.nn.Softmax: exp(x) / sum(exp(x)) along `dim` (None: PyTorch's legacy choice, dim 0 for 0-, 1- and
    3-d inputs, else 1); shape kept, ints give float32. IndexError for a dim out of range."""

    def __init__(self, dim: Optional[int] = None):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return x.softmax(_softmax_dim(self.dim, x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """torch.nn.LogSoftmax: log(softmax(x)) along `dim`, computed stably; dim as Softmax's."""

    def __init__(self, dim: Optional[int] = None):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return x.log_softmax(_softmax_dim(self.dim, x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmin(Module):
    """torch.nn.Softmin: softmax(-x) along `dim`; dim as Softmax's."""

    def __init__(self, dim: Optional[int] = None):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return (-x).softmax(_softmax_dim(self.dim, x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Hardtanh(Module):
    """torch.nn.Hardtanh: x clipped to [min_val, max_val] (gradient 1 strictly inside, 0 at and beyond the
    bounds, like PyTorch); any shape, dtype kept. ValueError when min_val > max_val."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__()
        if min_val > max_val:
            raise ValueError(f"Hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})")
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def forward(self, x: Tensor) -> Tensor:
        from tinyjit.nn import functional as F
        return F.hardtanh(x, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return inplace_repr(self, f"min_val={self.min_val}, max_val={self.max_val}")


class CELU(Module):
    """torch.nn.CELU: max(0, x) + min(0, alpha * (exp(x / alpha) - 1)); any shape; ints give float32."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, x: Tensor) -> Tensor:
        from tinyjit.nn import functional as F
        return F.celu(x, self.alpha)

    def extra_repr(self) -> str:
        return inplace_repr(self, f"alpha={self.alpha}")


class Softsign(Module):
    """torch.nn.Softsign: x / (1 + |x|) elementwise; any shape; ints give float32."""

    def forward(self, x: Tensor) -> Tensor:
        from tinyjit.nn import functional as F
        return F.softsign(x)


class LogSigmoid(Module):
    """torch.nn.LogSigmoid: log(sigmoid(x)), stable for large |x|; any shape; ints give float32."""

    def forward(self, x: Tensor) -> Tensor:
        from tinyjit.nn import functional as F
        return F.logsigmoid(x)


class GLU(Module):
    """torch.nn.GLU: a * sigmoid(b), a and b the two halves of x along `dim` (that size halves).
    RuntimeError for an odd size."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        from tinyjit.nn import functional as F
        return F.glu(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
