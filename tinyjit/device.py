"""Devices and buffers: which backend runs a kernel, and memory on it.

`Device.DEFAULT` comes from `DEVICE=CPU|CL|CUDA` (or the shortcuts `CPU=1`, `CL=1`, `CUDA=1`; setting two that
disagree is an error). `GPU` is accepted as a name of CL (OpenCL, which runs on any GPU vendor's driver and on the
CPU through PoCL); an NVIDIA GPU through CUDA is `CUDA`. A backend is
opened the first time it is used; a missing driver fails there with one line saying how to fix it.
"""
from __future__ import annotations

import functools
import os
from collections import defaultdict
from typing import Optional

import numpy as np

from runtime.env import device_shortcut
from tinyjit.dtype import DType
from tinyjit.helpers import lazy_import, lazy_imports

# device name -> (runtime module, class, renderer module, renderer class)
BACKENDS = {
    "CPU": ("runtime.cpu", "CPUDevice", "codegen.llvmir", "LLVMRenderer"),
    "CL": ("runtime.opencl", "CLDevice", "codegen.opencl", "OpenCLRenderer"),
    "CUDA": ("runtime.cuda", "CUDADevice", "codegen.cuda", "CUDARenderer"),
}


class DeviceError(RuntimeError):
    """A device name that does not exist, or a backend that cannot run here."""


def canonical_name(name: str) -> str:
    """The registry name of a device name or alias ("gpu", "cl:0" -> "CL"); DeviceError when there is none."""
    if not isinstance(name, str):
        raise DeviceError(f"device must be a name like 'CPU', not {type(name).__name__}; valid devices: "
                          f"{', '.join(BACKENDS)}")
    base, has_index, index = name.partition(":")
    base = base.upper()
    base = ALIASES.get(base, base)
    if base not in BACKENDS:
        raise DeviceError(f"unknown device {name!r}; valid devices: {', '.join(BACKENDS)}")
    if has_index and index.strip() != "0":   # one device per backend is opened: "cl:1" must not mean cl:0
        which = " (CL_PLATFORM=N and CL_DEVICE=N choose which OpenCL device that is)" if base == "CL" else ""
        raise DeviceError(f"invalid device {name!r}: tinyjit uses one {base} device, {base.lower()}:0 or "
                          f"{base!r}{which}")
    return base


def canonicalize(name: Optional[str]) -> str:
    """The registry name of `name` (None: the default device). The backend is opened here, so creating a
    tensor on a device that cannot run (no driver, no package) fails at once with its one-line reason."""
    base = Device.DEFAULT if name is None else canonical_name(name)
    Device[base]
    return base


# spellings of DEVICE (and of device=) that name a backend by another name
ALIASES = {"GPU": "CL", "OPENCL": "CL", "LLVM": "CPU"}
VALID_DEVICE_VALUES = f"{', '.join(BACKENDS)} (GPU and OPENCL mean CL, LLVM means CPU)"


def _default_device() -> str:
    """DEVICE, or the one backend whose shortcut flag (CPU=1, CL=1, CUDA=1) is set, else CPU. Two flags naming
    different backends, or a flag that contradicts DEVICE, are an error rather than a silent pick."""
    flagged = [name for name in BACKENDS if device_shortcut(name)]
    if "DEVICE" in os.environ and os.environ["DEVICE"].strip() != "":
        value = os.environ["DEVICE"]
        if value.upper() not in BACKENDS and value.upper() not in ALIASES:
            raise DeviceError(f"DEVICE={value!r} is not a device; valid values: {VALID_DEVICE_VALUES}")
        chosen = canonical_name(value)
        if any(name != chosen for name in flagged):
            flags = " ".join(f"{name}=1" for name in flagged)
            raise DeviceError(f"DEVICE={value} and {flags} name different devices; set only one of them")
        return chosen
    if len(flagged) > 1:
        flags = " ".join(f"{name}=1" for name in flagged)
        raise DeviceError(f"{flags} name different default devices; set only one (or DEVICE=...)")
    return flagged[0] if flagged else "CPU"


class _DeviceRegistry:
    def __init__(self):
        self.opened: dict[str, object] = {}   # canonical name -> runtime device, opened once per process

    @functools.cached_property
    def DEFAULT(self) -> str:   # PyTorch/tinygrad spelling
        return _default_device()   # only the name: `import tinyjit` must not fail for a missing driver

    def __getitem__(self, name: str):
        """The opened runtime device (allocator, compiler, programs) for `name`. Opening is retried after a
        failure, so the error is raised again (and a driver installed meanwhile is found)."""
        name = canonical_name(name)
        if name not in self.opened:
            module_name, class_name, _, _ = BACKENDS[name]
            with lazy_imports():   # (a fork waits until the device is open: see tinyjit.helpers)
                module = lazy_import(module_name)
                runtime_errors = lazy_import("runtime")
                try:
                    self.opened[name] = getattr(module, class_name)()
                except runtime_errors.DeviceUnavailable as e:
                    raise DeviceError(str(e)) from None
        return self.opened[name]

    @functools.lru_cache(maxsize=None)
    def renderer(self, name: str):
        _, _, module_name, class_name = BACKENDS[canonical_name(name)]
        return getattr(lazy_import(module_name), class_name)()


Device = _DeviceRegistry()


class BufferPool:
    """Freed device memory kept by size for reuse: writing fresh pages is several times slower than reusing
    touched ones, and training loops free and allocate the same sizes every step."""

    def __init__(self, limit_bytes: int = 1 << 30):
        self.free: dict[tuple[str, int], list] = defaultdict(list)
        self.held = 0
        self.limit = limit_bytes

    def alloc(self, device: str, nbytes: int):
        stack = self.free.get((device, nbytes))
        if stack:
            self.held -= nbytes
            return stack.pop()
        try:
            return Device[device].allocator.alloc(nbytes)
        except MemoryError:
            self.clear()
            return Device[device].allocator.alloc(nbytes)

    def release(self, device: str, nbytes: int, handle) -> None:
        if self.held + nbytes > self.limit:
            Device[device].allocator.free(handle)
            return
        self.free[(device, nbytes)].append(handle)
        self.held += nbytes

    def clear(self) -> None:
        for (device, _), handles in self.free.items():
            for h in handles:
                Device[device].allocator.free(h)
        self.free.clear()
        self.held = 0


POOL = BufferPool()


class Buffer:
    """Memory for `size` elements of `dtype` on `device`, allocated on first use."""

    def __init__(self, device: str, size: int, dtype: DType):
        self.device, self.size, self.dtype = device, size, dtype
        self._handle = None

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def allocated(self) -> bool:
        return self._handle is not None

    @property
    def handle(self):
        if self._handle is None:
            self._handle = POOL.alloc(self.device, max(self.nbytes, 1))
        return self._handle

    def copyin(self, data: np.ndarray) -> Buffer:
        data = np.ascontiguousarray(data, dtype=self.dtype.np)
        assert data.size == self.size, f"copyin of {data.size} elements into a buffer of {self.size}"
        if self.size:
            Device[self.device].allocator.copyin(self.handle, memoryview(data.reshape(-1)).cast("B"))
        return self

    def numpy(self) -> np.ndarray:
        out = np.empty(self.size, dtype=self.dtype.np)
        if self.size:
            Device[self.device].allocator.copyout(memoryview(out).cast("B"), self.handle)
        return out

    def __del__(self):
        if self._handle is not None:
            try:
                POOL.release(self.device, max(self.nbytes, 1), self._handle)
            except Exception:  # interpreter shutdown: modules may already be gone
                pass

    def __repr__(self) -> str:
        return f"<Buffer {self.device} {self.size} {self.dtype.name}>"


if __name__ == "__main__":   # the self-check's old command
    raise SystemExit("the backend self-check is now `python -m tinyjit.device_check`")
