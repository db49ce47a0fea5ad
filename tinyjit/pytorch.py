"""`import tinyjit.pytorch as torch`: the `torch` namespace a PyTorch script reaches for, over tinyjit.

A small PyTorch program ports by changing its imports only:

    import torch                                -> import tinyjit.pytorch as torch
    import torch.nn as nn                       -> from tinyjit import nn
    from torch import nn, optim                 -> from tinyjit import nn, optim
    import torch.nn.functional as F             -> import tinyjit.nn.functional as F
    import torch.optim as optim                 -> from tinyjit import optim
    from torch.optim.lr_scheduler import StepLR -> from tinyjit.optim.lr_scheduler import StepLR
    from torch.utils.data import DataLoader     -> from tinyjit.data import DataLoader
    from torch.utils.data import Dataset        -> from tinyjit.data import Dataset

(`torch.nn`, `torch.optim`, `torch.utils.data` and `torch.autograd` are also attributes of this module.)

What is here: the dtypes under torch's names, `torch.Tensor` (isinstance checks and torch's legacy constructor
`torch.Tensor(2, 3)`) with the typed `FloatTensor`, `LongTensor`, ..., tensor creation (`tensor`, `from_numpy`,
`zeros`, `randn`, `randint`, `arange`, ...), `cat`/`stack`/`flatten`/`where`/`einsum`, the math and reduction functions
`torch.NAME(input, ...)` that are `input.NAME(...)` (listed in `TENSOR_FUNCTIONS`), `linalg.cross` and
`linalg.vector_norm`, gradient modes (`no_grad`,
`enable_grad`, `set_grad_enabled`, `inference_mode`), `manual_seed`, `device`, `save`/`load`, and `cuda`,
`backends.mps` and `accelerator` availability queries.

What differs: tensors are lazy (work runs at `.item()`, `.numpy()`, `print` or an optimizer step); the device
a tensor is created on by default is the `DEVICE` environment variable's (CPU unless set), so `torch.device("cpu")`
and `.to(device)` work but choosing a GPU is done by `DEVICE=CUDA` / `DEVICE=CL`; `save`/`load` write safetensors
(never pickle), so files are not interchangeable with torch.save's (read PyTorch checkpoints with
`tinyjit.nn.state.torch_load`). There is no `torch.Generator`: random numbers come from the global seed.
"""
from __future__ import annotations

import builtins
import numbers
import types

from tinyjit import autograd, data, nn, optim  # noqa: F401  (torch.nn, torch.optim, torch.autograd)
from tinyjit import tensor_select
from tinyjit import where as tinyjit_where
from tinyjit.device import Device, canonical_name
from tinyjit.dtype import DType, dtypes
from tinyjit.serialization import load, save  # noqa: F401  (torch.save / torch.load: safetensors files)
from tinyjit.tensor import Tensor as _Tensor   # (torch.Tensor, below, is the legacy constructor)
from tinyjit.tensor_autograd import inference_mode, no_grad  # noqa: F401
from tinyjit.tensor_base import TensorBase   # holds the per-thread no_grad_active flag

__version__ = __import__("tinyjit").__version__

# ---- dtypes under torch's names ----
bool = dtypes.bool   # torch.bool
int8, int16, int32, int64 = dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64
uint8, uint16, uint32, uint64 = dtypes.uint8, dtypes.uint16, dtypes.uint32, dtypes.uint64
float16, float32, float64 = dtypes.float16, dtypes.float32, dtypes.float64
short, int, long = int16, int32, int64   # torch.int is int32, torch.long int64
half, float, double = float16, float32, float64

utils = types.SimpleNamespace(data=data)   # torch.utils.data


# ---- torch.Tensor and the typed tensor classes (FloatTensor, LongTensor, ...) ----
class _LegacyTensorType(type):
    """The type of `torch.Tensor` and `torch.FloatTensor`-style names here: isinstance/issubclass answer for
    tinyjit's Tensor (the typed names also check the dtype), calling one is torch's legacy constructor, and any
    other attribute is Tensor's (`torch.Tensor.backward`, `torch.Tensor.add(x, y)`). Subclassing one does not
    make a tensor type: subclass tinyjit.Tensor for that."""

    def __instancecheck__(cls, obj) -> builtins.bool:
        return isinstance(obj, _Tensor) and (cls._dtype is None or obj.dtype == cls._dtype)

    def __subclasscheck__(cls, subclass) -> builtins.bool:
        return subclass is cls or cls._dtype is None and isinstance(subclass, type) and issubclass(subclass, _Tensor)

    def __call__(cls, *args, device=None):
        return _legacy_new(cls, args, device)

    def __getattr__(cls, name: str):
        return getattr(_Tensor, name)


def _legacy_new(cls, args: tuple, device) -> _Tensor:
    """torch.Tensor(*sizes) / torch.Tensor(data) and the typed forms: sizes give an uninitialized tensor, a
    sequence or numpy array a copy converted to the class's dtype (float32 for torch.Tensor, not the data's), a
    tensor of that dtype (any dtype for torch.Tensor) is returned as it is. TypeError for a scalar or a tensor of
    another dtype, RuntimeError for a negative size."""
    import numpy as np
    dtype = cls._dtype if cls._dtype is not None else dtypes.float32
    name = f"torch.{cls.__name__}"
    if not args:
        return _Tensor.empty(0, dtype=dtype, device=device)
    if builtins.all(isinstance(a, numbers.Integral) and not isinstance(a, builtins.bool) for a in args):
        if builtins.any(a < 0 for a in args):
            raise RuntimeError(f"{name}: trying to create a tensor with negative dimension: {list(args)}")
        return _Tensor.empty(*(builtins.int(a) for a in args), dtype=dtype, device=device)
    if len(args) == 1 and isinstance(args[0], _Tensor):
        if cls._dtype is not None and args[0].dtype != cls._dtype:
            raise TypeError(f"{name}: expected a tensor of dtype {cls._dtype.name}, got {args[0].dtype.name}")
        return args[0]
    if len(args) == 1 and isinstance(args[0], (list, builtins.tuple, range, np.ndarray)):
        return _Tensor(np.asarray(args[0]).astype(dtype.np), device=device)
    raise TypeError(f"{name}(): expected sizes (ints), a sequence or a numpy array, or a tensor; got "
                    f"({', '.join(type(a).__name__ for a in args)})")


class Tensor(metaclass=_LegacyTensorType):
    """torch.Tensor: `isinstance(x, torch.Tensor)` and `torch.Tensor.method` are tinyjit's Tensor's, and
    `torch.Tensor(2, 3)` (uninitialized float32 of that shape), `torch.Tensor([1, 2])` (float32, whatever the
    data's type) and `torch.Tensor()` (empty) are torch's legacy constructor. Errors: TypeError for a scalar,
    RuntimeError for a negative size."""
    _dtype = None


def _typed_tensor(name: str, dtype: DType) -> type:
    doc = (f"torch.{name}: `{name}(*sizes)` (uninitialized), `{name}(data)` ({dtype.name}, converted as a cast "
           f"does) or `{name}(tensor)` (that {dtype.name} tensor); isinstance(x, torch.{name}) is whether x is a "
           f"{dtype.name} tensor.")
    return _LegacyTensorType(name, (), {"_dtype": dtype, "__doc__": doc, "__module__": __name__})


FloatTensor, DoubleTensor, HalfTensor = (_typed_tensor(n, d) for n, d in (
    ("FloatTensor", float32), ("DoubleTensor", float64), ("HalfTensor", float16)))
LongTensor, IntTensor, ShortTensor, CharTensor, ByteTensor, BoolTensor = (_typed_tensor(n, d) for n, d in (
    ("LongTensor", int64), ("IntTensor", int32), ("ShortTensor", int16), ("CharTensor", int8), ("ByteTensor", uint8),
    ("BoolTensor", dtypes.bool)))


class device(str):   # named like torch.device
    """torch.device("cpu"), torch.device("cuda", 0), torch.device("cl:0"): a device name that `.to()`,
    `Module.to()` and every `device=` argument accept (it is a str). `.type` is the backend's lower-case name as
    written ("cpu", "cuda", "cl"), `.index` the index or None. DeviceError (a RuntimeError, as torch raises) for a
    name tinyjit has no backend for; whether the backend can run is checked when a tensor is put there."""

    def __new__(cls, type: str, index=None):   # torch's argument name
        if isinstance(type, device) and index is None:
            return type
        if not isinstance(type, str):
            raise TypeError(f"device(): expected a device name like 'cpu', got {type.__class__.__name__}")
        kind, has_index, written_index = type.partition(":")
        if has_index and index is not None:
            raise ValueError(f"device(): type {type!r} already names an index; do not pass index={index}")
        if has_index:
            index = written_index
        name = kind if index is None else f"{kind}:{index}"
        canonical_name(name)   # DeviceError for an unknown backend or an index other than 0
        out = super().__new__(cls, name.lower())
        out.type, out.index = kind.lower(), None if index is None else builtins.int(index)
        return out

    def __repr__(self) -> str:
        return f"device(type={self.type!r}" + ("" if self.index is None else f", index={self.index}") + ")"


def _backend_runs(name: str) -> bool:
    """Whether the backend `name` can be opened here (driver and package present)."""
    try:
        Device[name]
    except Exception:   # any failure to open means "not available", as torch.cuda.is_available
        return False
    return True


cuda = types.SimpleNamespace(
    is_available=lambda: _backend_runs("CUDA"),
    device_count=lambda: 1 if _backend_runs("CUDA") else 0,
)
cuda.is_available.__doc__ = "torch.cuda.is_available: whether tinyjit's CUDA backend can run here."
backends = types.SimpleNamespace(mps=types.SimpleNamespace(is_available=lambda: False, is_built=lambda: False),
                                 cudnn=types.SimpleNamespace(deterministic=True, benchmark=False))
accelerator = types.SimpleNamespace(
    is_available=lambda: Device.DEFAULT != "CPU",
    current_accelerator=lambda: device(Device.DEFAULT.lower()) if Device.DEFAULT != "CPU" else None,
)
accelerator.is_available.__doc__ = ("torch.accelerator.is_available: whether the default device (DEVICE) is not "
                                    "the CPU; current_accelerator() is that device or None.")


# ---- seeds and gradient modes ----
def manual_seed(seed) -> None:
    """torch.manual_seed: seed every device's random numbers (Tensor.manual_seed). Returns None, not a
    torch.Generator (tinyjit has no generator objects)."""
    _Tensor.manual_seed(builtins.int(seed))


def is_grad_enabled() -> builtins.bool:
    """torch.is_grad_enabled: False inside no_grad / inference_mode."""
    return not TensorBase.no_grad_active


class set_grad_enabled:   # named like torch.set_grad_enabled
    """torch.set_grad_enabled(mode): turns recording on or off at once (a plain call) and, used as a context
    manager, restores the previous mode on exit."""

    def __init__(self, mode):
        self._previous = TensorBase.no_grad_active
        TensorBase.no_grad_active = not mode

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        TensorBase.no_grad_active = self._previous


class enable_grad:   # named like torch.enable_grad
    """torch.enable_grad: records gradients inside a no_grad block (context manager or decorator)."""

    def __enter__(self):
        self._previous = TensorBase.no_grad_active
        TensorBase.no_grad_active = False
        return self

    def __exit__(self, *exc) -> None:
        TensorBase.no_grad_active = self._previous

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with enable_grad():
                return fn(*args, **kwargs)
        return wrapper


def get_default_dtype() -> DType:
    """torch.get_default_dtype: float32 (tinyjit's default float; set_default_dtype is not supported)."""
    return dtypes.default_float


# ---- creation ----
def tensor(data, *, dtype=None, device=None, requires_grad: builtins.bool = False) -> _Tensor:
    """torch.tensor: a new tensor holding a copy of `data` (nested lists, numbers, numpy arrays or scalars,
    a Tensor). Dtypes as torch infers them: Python floats float32, ints int64, numpy arrays and scalars keep
    theirs."""
    if isinstance(data, _Tensor):
        data = data.detach().clone()
    return _Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None) -> _Tensor:
    """torch.as_tensor: `data` itself when it is already a Tensor of that dtype and device, else a new tensor."""
    if isinstance(data, _Tensor):
        return data.to(device=device, dtype=dtype)
    return _Tensor(data, dtype=dtype, device=device)


def from_numpy(ndarray) -> _Tensor:
    """torch.from_numpy: a tensor of the array's dtype and shape. Unlike torch it is a copy (device memory is not
    the array's), so writes to the array later do not show. TypeError for anything but a numpy array."""
    import numpy as np
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray, got {type(ndarray).__name__}")
    return _Tensor(ndarray)


def _create(method: str, doc: str):
    def create(*size, dtype=None, device=None, requires_grad: builtins.bool = False, **kwargs):
        return getattr(_Tensor, method)(*size, dtype=dtype, device=device, requires_grad=requires_grad or None,
                                       **kwargs)
    create.__name__ = create.__qualname__ = method
    create.__doc__ = doc
    return create


zeros = _create("zeros", "torch.zeros(*size, dtype=None, device=None, requires_grad=False).")
ones = _create("ones", "torch.ones(*size, dtype=None, device=None, requires_grad=False).")
rand = _create("rand", "torch.rand: uniform in [0, 1) from the global seed.")
randn = _create("randn", "torch.randn: standard normal from the global seed.")


def empty(*size, dtype=None, device=None, requires_grad: builtins.bool = False) -> _Tensor:
    """torch.empty: an uninitialized tensor of `size`."""
    return _Tensor.empty(*size, dtype=dtype, device=device).requires_grad_(requires_grad)


def full(size, fill_value, *, dtype=None, device=None, requires_grad: builtins.bool = False) -> _Tensor:
    """torch.full: `size` filled with `fill_value`; the dtype is inferred from the value as torch does."""
    return _Tensor.full(size, fill_value, dtype=dtype, device=device, requires_grad=requires_grad or None)


def _like(method: str):
    """torch.zeros_like-style functions: input.METHOD(...) with torch's dtype=, device= and requires_grad=."""
    def like(input: _Tensor, *args, dtype=None, device=None, requires_grad: builtins.bool = False):
        out = getattr(input, method)(*args)
        if dtype is not None or device is not None:
            out = out.to(device=device, dtype=dtype)
        return out.requires_grad_(True) if requires_grad else out
    like.__name__ = like.__qualname__ = method
    like.__doc__ = f"torch.{method}(input, ...): input.{method}(...), with dtype=, device= and requires_grad=."
    return like


zeros_like, ones_like, full_like, empty_like, rand_like, randn_like = (
    _like(m) for m in ("zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like"))


def arange(start, end=None, step=1, *, dtype=None, device=None,
           requires_grad: builtins.bool = False) -> _Tensor:
    """torch.arange: int64 for int arguments, float32 when any is a float."""
    out = _Tensor.arange(start, end, step, dtype=dtype, device=device)
    return out.requires_grad_(True) if requires_grad else out


def linspace(start, end, steps, *, dtype=None, device=None) -> _Tensor:
    """torch.linspace: `steps` evenly spaced values from start to end inclusive."""
    return _Tensor.linspace(start, end, steps, dtype=dtype, device=device)


def eye(n, m=None, *, dtype=None, device=None) -> _Tensor:
    """torch.eye: the n x m identity."""
    return _Tensor.eye(n, m, dtype=dtype, device=device)


def randint(*args, size=None, dtype=None, device=None) -> _Tensor:
    """torch.randint(high, size) or torch.randint(low, high, size): int64 in [low, high) from the global seed.
    TypeError for another number of positional arguments."""
    if size is not None:
        args = args + (size,)
    if len(args) == 2:
        low, (high, size) = 0, args
    elif len(args) == 3:
        low, high, size = args
    else:
        raise TypeError(f"randint: expected (high, size) or (low, high, size), got {len(args)} arguments")
    return _Tensor.randint(low, high, size=size, dtype=dtype, device=device)


def randperm(n, *, dtype=dtypes.int64, device=None) -> _Tensor:
    """torch.randperm: a random permutation of 0..n-1 from the global seed."""
    return _Tensor.randperm(n, dtype=dtype, device=device)


# ---- torch.linalg ----
def _linalg_cross(input: _Tensor, other: _Tensor, *, dim: builtins.int = -1) -> _Tensor:
    """torch.linalg.cross: the cross product of 3-vectors along `dim` (default the last), the other dims
    broadcast. RuntimeError when the inputs have different numbers of dims (torch.linalg.cross does not add
    leading dims, unlike torch.cross) or `dim` is not of length 3. Dtypes promote (torch requires equal ones)."""
    if not isinstance(input, _Tensor) or not isinstance(other, _Tensor):
        raise TypeError(f"linalg.cross: expected two tensors, got {type(input).__name__} and "
                        f"{type(other).__name__}")
    if input.ndim != other.ndim:
        raise RuntimeError(f"linalg.cross: inputs must have the same number of dimensions, got shapes {input.shape} "
                           f"and {other.shape}")
    return input.cross(other, dim=dim)


def _linalg_vector_norm(x: _Tensor, ord=2, dim=None, keepdim: builtins.bool = False, *, dtype=None) -> _Tensor:
    """torch.linalg.vector_norm: Tensor.norm(ord, dim, keepdim, dtype) (every entry when dim is None)."""
    return x.norm(ord, dim, keepdim, dtype)


_linalg_cross.__name__ = _linalg_cross.__qualname__ = "cross"
_linalg_vector_norm.__name__ = _linalg_vector_norm.__qualname__ = "vector_norm"
linalg = types.SimpleNamespace(cross=_linalg_cross, vector_norm=_linalg_vector_norm)   # torch.linalg


# ---- joining, shaping, selecting ----
def cat(tensors, dim: builtins.int = 0) -> _Tensor:
    """torch.cat: join a sequence of tensors along `dim` (dtypes promote)."""
    return _Tensor.cat(list(tensors), dim=dim)


concat = concatenate = cat


def stack(tensors, dim: builtins.int = 0) -> _Tensor:
    """torch.stack: join a sequence of same-shaped tensors along a new `dim`."""
    return _Tensor.stack(list(tensors), dim=dim)


def where(condition: _Tensor, input, other) -> _Tensor:
    """torch.where(condition, input, other): input where condition, else other (broadcast; scalars allowed)."""
    return tinyjit_where(condition, input, other)


def einsum(equation: str, *operands) -> _Tensor:
    """torch.einsum."""
    return _Tensor.einsum(equation, *operands)


def meshgrid(*tensors, indexing: str = "ij") -> tuple:
    """torch.meshgrid(*tensors, indexing='ij'): see tinyjit.tensor_select.meshgrid ('ij' is torch's default, 'xy'
    numpy's)."""
    return tensor_select.meshgrid(*tensors, indexing=indexing)


def is_tensor(obj) -> builtins.bool:
    """torch.is_tensor: whether `obj` is a tinyjit Tensor."""
    return isinstance(obj, _Tensor)


def is_floating_point(input: _Tensor) -> builtins.bool:
    """torch.is_floating_point."""
    return input.dtype.is_float


def numel(input: _Tensor) -> builtins.int:
    """torch.numel."""
    return input.numel()


# torch.NAME(input, *args, **kwargs) is input.NAME(*args, **kwargs) for these
TENSOR_FUNCTIONS = (
    "flatten reshape squeeze unsqueeze transpose permute t chunk split roll tril triu gather masked_fill "
    "abs neg exp exp2 log log2 log1p expm1 sqrt rsqrt sin cos tan tanh sigmoid relu square sign floor ceil round "
    "trunc erf pow maximum minimum clamp clip lerp isnan isinf logical_not "
    "sum mean std var prod max min amax amin argmax argmin all any cumsum logsumexp softmax log_softmax "
    "matmul mm mv bmm dot sort argsort topk kthvalue unique multinomial allclose isclose eq ne lt le gt ge "
    "index_select narrow movedim moveaxis swapaxes swapdims unbind diagonal diag trace outer ger cumprod diff "
    "remainder fmod atan2 arctan2 hypot logaddexp frac nan_to_num nansum nanmean norm count_nonzero "
    "addmm baddbmm addmv addbmm add sub mul div floor_divide true_divide "
    "repeat_interleave scatter scatter_add scatter_reduce index_add index_put index_copy index_fill nonzero argwhere "
    "masked_select median cross take bincount histc masked_scatter put"
).split()


# the functions torch also takes with a number first (its Scalar_Tensor overloads): torch.NAME(number, tensor) is
# tensor.METHOD(number, reverse=True); torch.fmod, atan2, maximum, ... take no number first (TypeError, as in torch)
SCALAR_FIRST = {"remainder": "mod", "pow": "pow"}


def _forward_to_method(name: str):
    reverse_method = SCALAR_FIRST.get(name)

    def function(input: _Tensor, *args, **kwargs):
        if not isinstance(input, _Tensor):
            if reverse_method is not None and isinstance(input, numbers.Number) and not isinstance(input, complex) \
                    and len(args) == 1 and isinstance(args[0], _Tensor) and not kwargs:
                return getattr(args[0], reverse_method)(input, reverse=True)
            raise TypeError(f"{name}(): argument 'input' must be Tensor, not {type(input).__name__}")
        return getattr(input, name)(*args, **kwargs)
    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"torch.{name}(input, ...): input.{name}(...) (see Tensor.{name})." + (
        " `input` may be a number when `other` is a tensor, as in torch." if reverse_method else "")
    return function


for _name in TENSOR_FUNCTIONS:
    if not hasattr(_Tensor, _name):
        raise ImportError(f"tinyjit.pytorch: Tensor has no method {_name!r} to expose as torch.{_name}")
    globals()[_name] = _forward_to_method(_name)
del _name
