"""tinyjit: lazy tensors, fused kernels, compiled at run time for the CPU (LLVM), OpenCL and CUDA."""
from tinyjit.device import Device  # noqa: F401
from tinyjit.dtype import dtypes  # noqa: F401
from tinyjit.tensor import Tensor  # noqa: F401
from tinyjit.jit import JitError, TinyJit  # noqa: F401
from tinyjit.tensor_autograd import grad_of as gradient  # noqa: F401
from tinyjit import nn, optim  # noqa: F401,E402  (after Tensor: both build on it)

# read DEVICE (or CPU=1/CL=1/CUDA=1) now, so a bad value fails at import with one line naming the valid values
Device.DEFAULT  # noqa: B018
