"""Device selection and errors: unknown names, a CUDA without driver, ops mixing devices, moving tensors
between devices, the `python -m tinyjit.device_check` self-check, and DEBUG=4 printing OpenCL source."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tinyjit import Device, Tensor
from tinyjit.device import BACKENDS, DeviceError, _default_device, canonical_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_py(code: str, **env) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("DEVICE", "CPU", "CL", "CUDA", "DEBUG")}
    full_env.update(env, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, cwd=ROOT,
                          timeout=120)


# ---- names ----
def test_unknown_device_name():
    with pytest.raises(DeviceError, match=r"unknown device 'TPU'; valid devices: CPU, CL, CUDA"):
        Tensor([1.0, 2.0], device="TPU")
    with pytest.raises(DeviceError, match="unknown device"):
        Tensor.zeros(3).to("metal")
    with pytest.raises(DeviceError, match="device must be a name"):
        Tensor([1.0], device=3)


def test_device_aliases():
    assert canonical_name("gpu") == canonical_name("opencl") == canonical_name("cl:0") == "CL"
    assert canonical_name("llvm") == canonical_name("cpu") == "CPU"
    assert Device["cl"] is Device["CL"] is Device["gpu"]   # one context: buffers move freely between spellings


def test_default_device_from_env(monkeypatch):
    for var in ("DEVICE", "CPU", "CL", "CUDA"):
        monkeypatch.delenv(var, raising=False)
    assert _default_device() == "CPU"
    monkeypatch.setenv("CL", "1")
    assert _default_device() == "CL"
    monkeypatch.setenv("DEVICE", "cuda")   # DEVICE and a shortcut that disagree: an error, not a silent pick
    with pytest.raises(DeviceError, match=r"DEVICE=cuda and CL=1 name different devices"):
        _default_device()
    monkeypatch.delenv("CL")
    assert _default_device() == "CUDA"
    monkeypatch.setenv("DEVICE", "TPU")
    with pytest.raises(DeviceError, match=r"DEVICE='TPU' is not a device; valid values: CPU, CL, CUDA"):
        _default_device()


# ---- CUDA without a driver ----
class _NoDriver(Exception):
    """Stands in for cuda-python's DynamicLibNotFoundError, raised by cuInit when libcuda.so is missing."""


def _without_driver(monkeypatch):
    import runtime.cuda as rcuda
    if rcuda.cu is None:
        return   # no cuda-python at all: opening CUDA already fails (checked below the same way)

    class Driver:
        def __getattr__(self, name):
            return getattr(rcuda.cu, name)

        @staticmethod
        def cuInit(flags):
            raise _NoDriver("Failure finding libcuda.so: not found")
    monkeypatch.setattr(rcuda, "cu", Driver())
    monkeypatch.delitem(Device.opened, "CUDA", raising=False)   # a GPU machine may have opened it already


def test_cuda_without_driver_fails_at_once(monkeypatch):
    _without_driver(monkeypatch)
    for make in (lambda: Tensor([1.0], device="CUDA"), lambda: Tensor.zeros(4, device="cuda"),
                 lambda: Tensor.ones(2).to("CUDA")):
        with pytest.raises(DeviceError) as info:
            make()   # creating the (lazy) tensor already fails: nothing waits for a kernel
        message = str(info.value)
        assert "\n" not in message and message.startswith("CUDA device unavailable: ")
        assert "_NoDriver" not in message and "AttributeError" not in message


def test_cuda_default_without_driver(monkeypatch):
    _without_driver(monkeypatch)
    monkeypatch.setattr(Device, "DEFAULT", "CUDA", raising=False)
    with pytest.raises(DeviceError, match="^CUDA device unavailable: "):
        Tensor([1.0, 2.0])


# ---- several devices ----
def test_cross_device_ops_raise():
    a, b = Tensor([[1.0, 2.0], [3.0, 4.0]], device="CPU"), Tensor([[1.0, 0.0], [0.0, 1.0]], device="CL")
    cases = {"add": lambda: a + b, "matmul": lambda: a @ b, "cat": lambda: a.cat(b),
             "where": lambda: (a > 1).where(b, 0.0), "maximum": lambda: a.maximum(b),
             "gather": lambda: a.gather(0, Tensor([[0, 1]], device="CL")),
             "getitem": lambda: a[Tensor([1, 0], device="CL")],
             "conv2d": lambda: a.reshape(1, 1, 2, 2).conv2d(b.reshape(1, 1, 2, 2)),
             "cross_entropy": lambda: a.cross_entropy(Tensor([0, 1], device="CL"))}
    for op, fn in cases.items():
        with pytest.raises(RuntimeError, match=rf"^{op}: tensors are on different devices \((CPU and CL|CL and CPU)\)"):
            fn()


@pytest.mark.devices("CL", "CUDAEMU")
def test_to_and_back(device):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = Tensor(a).to(device)
    assert t.device == device and Tensor(a, device=device).device == device
    moved = (t * 2).to("CPU") + 1   # the kernel runs on `device`, the add on CPU
    assert moved.device == "CPU"
    np.testing.assert_array_equal(moved.numpy(), a * 2 + 1)
    assert Tensor(t).device == device and Tensor(t, device="CPU").device == "CPU"
    np.testing.assert_array_equal(Tensor(t, device="CPU").numpy(), a)


def test_cudaemu_is_test_only():
    assert "CUDAEMU" in BACKENDS   # registered by conftest ...
    proc = run_py("from tinyjit.device import BACKENDS; print(sorted(BACKENDS))")
    assert proc.stdout.strip() == "['CL', 'CPU', 'CUDA']"   # ... and not a user device


# ---- the self-check ----
def test_self_check_lists_every_backend():
    proc = subprocess.run([sys.executable, "-m", "tinyjit.device_check"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RuntimeWarning" not in proc.stderr, proc.stderr
    lines = {m.group(1): m.group(0) for m in re.finditer(r"^  (\S+) +(available|unavailable) .*$", out, re.M)}
    assert set(lines) >= {"CPU", "CL", "CUDA"}, out
    assert "available" in lines["CPU"] and "tiny kernel ok" in lines["CPU"]
    assert "tiny kernel ok" in lines["CL"], out    # PoCL is installed by the test extras
    cuda = lines["CUDA"]
    assert "tiny kernel ok" in cuda or ("unavailable" in cuda and "CUDA device unavailable: " in cuda), out


def test_self_check_with_missing_default():
    proc = subprocess.run([sys.executable, "-m", "tinyjit.device_check"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT, "DEVICE": "CUDA"})
    if "  CUDA  available" in proc.stdout:
        pytest.skip("a real CUDA GPU is present, so DEVICE=CUDA works here")
    assert proc.returncode == 1
    assert proc.stdout.startswith("default device: CUDA (set with DEVICE=CPU|CL|CUDA)\n")
    assert re.search(r"^  CUDA +unavailable +CUDA device unavailable: ", proc.stdout, re.M)
    assert "RuntimeWarning" not in proc.stderr and "Traceback" not in proc.stderr


def test_old_self_check_command_names_the_new_one():
    proc = subprocess.run([sys.executable, "-m", "tinyjit.device"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 1 and "python -m tinyjit.device_check" in proc.stderr, proc.stdout + proc.stderr
    assert "RuntimeWarning" not in proc.stderr and "Traceback" not in proc.stderr


# ---- DEBUG ----
def test_debug_4_prints_opencl_source():
    code = ("import numpy as np; from tinyjit import Tensor; "
            "print((Tensor(np.arange(256, dtype=np.float32), device='{d}') * 3).sum().item())")
    cl = run_py(code.format(d="CL"), DEBUG="4")
    assert cl.returncode == 0, cl.stderr
    assert "__kernel" in cl.stdout and "get_local_id(0)" in cl.stdout and "97920.0" in cl.stdout.splitlines()
