"""tinyjit: lazy tensors, fused kernels, compiled at run time for the CPU (LLVM), OpenCL and CUDA."""
import importlib

# imported on first use (PEP 562), so `python -m tinyjit.device` runs that module without importing it twice
_EXPORTS = {"Device": "tinyjit.device", "dtypes": "tinyjit.dtype", "Tensor": "tinyjit.tensor",
            "JitError": "tinyjit.jit", "TinyJit": "tinyjit.jit"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tinyjit' has no attribute {name!r}")
