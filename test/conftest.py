"""Test setup: run against the source tree, keep compile caches out of the user's home, and run tests on
several devices.

Devices. A test that takes the `device` fixture (or a module with `pytestmark = pytest.mark.usefixtures("device")`)
runs once per selected device, with `Device.DEFAULT` set to it for the test, so tests written for the
default device need no change. Selected devices, first match wins:
- `@pytest.mark.devices("CL", "CUDAEMU")` on the test or module: exactly those (the GPU backend suite);
- `--devices=CPU,CL` on the command line, or the env var `TEST_DEVICES=CPU,CL`;
- otherwise CPU and CL: the op and gradient suites run on both. Only in this default case is a CL that cannot
  run here (pyopencl or PoCL not installed) skipped, with the reason; a device asked for by name fails instead.
Device names: CPU, CL (OpenCL; PoCL on the CPU here), CUDA (a real GPU), CUDAEMU (test-only: CUDA kernels
checked by NVRTC + ptxas and run on the CPU by test/cuda_emulator.py). A selected device that cannot run
here fails its tests with the reason; it is never skipped silently.

At the end the session prints how many CUDA kernels NVRTC and ptxas compiled (all xdist workers together).
"""
import os
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)
os.environ.setdefault("TINYJIT_CACHE_DIR", os.path.join(tempfile.gettempdir(), "tinyjit-test-cache"))

import cuda_emulator  # noqa: E402  (needs the paths above)

cuda_emulator.register()   # "CUDAEMU" is a device name in tests (and DEVICE=CUDAEMU works under pytest)


def pytest_addoption(parser):
    parser.addoption("--devices", default=None,
                     help="comma-separated devices for tests using the `device` fixture (default: $TEST_DEVICES "
                          "or CPU), e.g. CPU,CL,CUDAEMU")


def pytest_configure(config):
    config.addinivalue_line("markers", "devices(*names): run this test on exactly these devices")


DEFAULT_DEVICES = "CPU,CL"


def selected_devices(config) -> list[str]:
    raw = config.getoption("--devices") or os.environ.get("TEST_DEVICES") or DEFAULT_DEVICES
    return [d.strip().upper() for d in raw.split(",") if d.strip()]


def devices_chosen_by_name(config) -> bool:
    return bool(config.getoption("--devices") or os.environ.get("TEST_DEVICES"))


def pytest_generate_tests(metafunc):
    if "device" not in metafunc.fixturenames:
        return
    if any("device" in m.args[0] for m in metafunc.definition.iter_markers("parametrize") if m.args):
        return   # the test parametrizes `device` itself
    marker = metafunc.definition.get_closest_marker("devices")
    devices = list(marker.args) if marker else selected_devices(metafunc.config)
    metafunc.parametrize("device", devices, indirect=True)


@pytest.fixture
def device(request):
    """The device name this test runs on; Device.DEFAULT is that device while the test runs."""
    from tinyjit.device import Device, DeviceError, canonical_name
    name = canonical_name(getattr(request, "param", "CPU"))
    try:
        Device[name]
    except DeviceError as e:
        by_name = devices_chosen_by_name(request.config) or request.node.get_closest_marker("devices")
        if name != "CPU" and not by_name:
            pytest.skip(f"device {name} (a default test device) cannot run here: {e}")
        pytest.fail(f"device {name} was selected but cannot run here: {e}", pytrace=False)
    saved = Device.__dict__.get("DEFAULT")
    Device.DEFAULT = name
    try:
        yield name
    finally:
        if saved is None:
            del Device.DEFAULT
        else:
            Device.DEFAULT = saved


# ---- the NVRTC + ptxas count, summed over xdist workers ----
def _emulator_report() -> dict:
    s = cuda_emulator.stats
    return {"kernels": sorted(s["kernels"]), "nvrtc": s["nvrtc_checked"], "ptxas": s["ptxas_checked"],
            "launches": s["launches"], "tools": sorted(s["tools"])}


@pytest.fixture
def scheduled_kernel_counts(monkeypatch) -> list:
    """The number of kernels of each schedule realize runs from now on (tests assert exact fusion counts)."""
    from tinyjit import realize
    counts = []
    original = realize.run_schedule

    def counting(items, *args, **kwargs):
        counts.append(sum(1 for item in items if item.kind == "kernel"))
        return original(items, *args, **kwargs)
    monkeypatch.setattr(realize, "run_schedule", counting)
    return counts


_worker_reports: list = []


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):   # an xdist worker: hand the counts to the controller
        session.config.workeroutput["cudaemu"] = _emulator_report()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    report = getattr(node, "workeroutput", {}).get("cudaemu")
    if report:
        _worker_reports.append(report)


def pytest_terminal_summary(terminalreporter):
    reports = _worker_reports or [_emulator_report()]
    kernels = set().union(*(r["kernels"] for r in reports))
    if not kernels:
        return
    compiled = sum(r["nvrtc"] for r in reports)
    assembled = sum(r["ptxas"] for r in reports)
    launches = sum(r["launches"] for r in reports)
    tools = "; ".join(sorted(set().union(*(r["tools"] for r in reports))))
    terminalreporter.write_line(
        f"CUDA kernels: {len(kernels)} distinct kernels compiled by NVRTC to PTX+CUBIN for sm_80 and sm_90 "
        f"({compiled} compiles, {assembled} also assembled by ptxas), {launches} emulated launches [{tools}]")
