"""tinyjit: lazy tensors, fused kernels, compiled at run time for the CPU (LLVM), OpenCL and CUDA."""
import warnings

__version__ = "0.1.0"   # the package's version (setup.cfg reads it from here)

# `python -m tinyjit.device` (the self-check's old command) runs device.py as __main__ after this package imported
# it; runpy warns about that. The __main__ copy only names the new command (tinyjit.device_check), so the warning
# is noise.
warnings.filterwarnings("ignore", message="'tinyjit.device' found in sys.modules", category=RuntimeWarning)

from tinyjit.device import Device  # noqa: E402
from tinyjit.dtype import dtypes  # noqa: E402
from tinyjit.tensor import Tensor  # noqa: E402
from tinyjit.jit import JitError, TinyJit  # noqa: F401,E402
from tinyjit.tensor_autograd import grad_of as gradient  # noqa: F401,E402
from tinyjit.tensor_autograd import inference_mode, no_grad  # noqa: F401,E402
from tinyjit import nn, optim  # noqa: F401,E402  (after Tensor: both build on it)
from tinyjit.serialization import load, save  # noqa: F401,E402


def where(condition, x, y) -> Tensor:
    """torch.where(condition, x, y) / numpy.where: x where condition is true, else y (see Tensor.where)."""
    condition = condition if isinstance(condition, Tensor) else Tensor(condition)
    return condition.cast(dtypes.bool).where(x, y) if condition.dtype != dtypes.bool else condition.where(x, y)


def _report_in_one_line(error: BaseException) -> None:
    """When `error` ends the program uncaught, print it as one line (type and message) instead of a traceback
    through tinyjit's import machinery: a bad environment variable is the user's setting, not a crash. Code that
    catches the error sees it as usual."""
    import sys
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if exc is error:
            name = exc_type.__qualname__ if exc_type.__module__ == "builtins" else \
                f"{exc_type.__module__}.{exc_type.__qualname__}"
            print(f"{name}: {exc}", file=sys.stderr)
        else:
            previous(exc_type, exc, tb)
    sys.excepthook = hook


# read DEVICE (or CPU=1/CL=1/CUDA=1) and every other variable now, so a bad value fails at import with one line
# naming the valid values
try:
    Device.DEFAULT
    __import__("runtime.env").env.check_all()
except (ValueError, RuntimeError) as _error:   # DeviceError is a RuntimeError, a bad variable a ValueError
    _report_in_one_line(_error)
    raise
