"""`python -m tinyjit.device_check`: list every backend as available or not (with the reason and the install command)
and run a tiny kernel on each available one. Exit status 0 when the default device works."""
from __future__ import annotations

import time

import numpy as np

from tinyjit.device import BACKENDS, Device, DeviceError
from tinyjit.tensor import Tensor

INSTALL = {"CPU": "pip install llvmlite", "CL": "pip install 'tinyjit[opencl]'",
           "CUDA": "pip install 'tinyjit[cuda]' and the NVIDIA driver (needs an NVIDIA GPU)"}


def describe(name: str, dev) -> str:
    """What the opened backend runs on, in a few words."""
    if name == "CL":
        return f"{dev.device.name.strip()} ({dev.platform.name})"
    if name == "CUDA":
        cc = dev.compute_capability
        return f"{dev.device_name} (sm_{cc[0]}{cc[1]})"
    if name == "CPU":
        import llvmlite
        return f"llvmlite {llvmlite.__version__}"
    return type(dev).__name__


def tiny_kernels(name: str) -> str:
    """Run an elementwise and a long reduce kernel on `name`; 'ok (...)' or raise AssertionError."""
    t0 = time.perf_counter()
    small = ((Tensor([1.0, 2.0, 3.0, 4.0], device=name) * 2 + 1).sum()).item()
    long = Tensor(np.arange(4096, dtype=np.float32), device=name).sum().item()
    assert small == 24.0, f"(x*2+1).sum() gave {small}, expected 24"
    assert long == float(np.arange(4096).sum()), f"arange(4096).sum() gave {long}"
    return f"ok ({(time.perf_counter() - t0) * 1e3:.0f} ms incl. compile)"


def nvrtc_note() -> str:
    """Whether CUDA kernels can still be compiled (not run) without a GPU."""
    try:
        from runtime.cuda import nvrtc_version
        from runtime.nvcheck import find_ptxas, ptxas_info
        note = f"NVRTC {nvrtc_version()}"
        path = find_ptxas()
        if path:
            note += f" and ptxas {ptxas_info(path).release}"
        return f"CUDA kernels still compile here ({note}; see runtime.nvcheck)"
    except Exception as e:   # no cuda-python / NVRTC either
        return f"no NVRTC either ({str(e).splitlines()[0]})"


def main() -> int:
    """Print the default device and one line per backend (available or not, and why); 0 when the default device
    runs the tiny kernels, else 1."""
    try:
        default = Device.DEFAULT
    except DeviceError as e:   # a DEVICE value that names no backend
        default = None
        print(f"default device: {e}")
    else:
        print(f"default device: {default} (set with DEVICE=CPU|CL|CUDA)")
    default_ok = False
    for name in BACKENDS:
        try:
            dev = Device[name]
        except DeviceError as e:
            line = f"  {name:<5} unavailable  {e}"
            hint = INSTALL.get(name)
            if hint and "install" not in str(e).lower():
                line += f" [install: {hint}]"
            print(line)
            if name == "CUDA":
                print(f"        {nvrtc_note()}")
            continue
        except Exception as e:   # a backend module that fails in another way is still reported, not fatal
            print(f"  {name:<5} unavailable  {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        try:
            result = tiny_kernels(name)
            ok = True
        except Exception as e:
            result, ok = f"FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", False
        print(f"  {name:<5} available    {describe(name, dev)}: tiny kernel {result}")
        default_ok |= ok and name == default
    return 0 if default_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

