"""DEBUG levels and environment variables, each checked in a fresh interpreter (env vars are read once)."""
import os
import re
import subprocess
import sys

import pytest

from codegen.kernel import Kernel
from codegen.optimizer import optimize
from tinyjit import Device
from tinyjit.schedule import create_schedule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINYJIT_VARS = ("DEBUG", "DEVICE", "CPU", "CL", "CUDA", "NOOPT", "CACHE", "BEAM", "JIT", "THREADS",
                "TINYJIT_NATIVE_POOL", "CL_PLATFORM", "CL_DEVICE")

# a matmul + relu (one reduce kernel that the CPU heuristics optimize), its result checked inside the child
SETUP = """
import numpy as np
from tinyjit import Tensor
x = np.arange(64 * 128, dtype=np.float32).reshape(64, 128) % 7 - 3
w = np.arange(128 * 32, dtype=np.float32).reshape(128, 32) % 5 - 2
out = (Tensor(x) @ Tensor(w)).relu()
"""
SCRIPT = SETUP + """
result = out.numpy()
assert np.array_equal(result, np.maximum(x @ w, 0)), result
print("result", result[0, :4].tolist())
"""
RESULT = "result [0.0, 4.0, 4.0, 9.0]"


def expected_kernel(opt: bool = True) -> tuple[str, str]:
    """Name and description of the script's kernel, made here the way realize makes it (so a change of the
    heuristics changes both sides)."""
    scope: dict = {}
    exec(SETUP, scope)
    (item,) = create_schedule([scope["out"].node])
    k = Kernel(item.ast)
    if opt:
        optimize(k, Device.renderer("CPU"), Device["CPU"].threads)
    return k.name(), k.describe()


def run_py(code: str, cwd, **env) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in TINYJIT_VARS}
    full_env["PYTHONPATH"] = ROOT
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=120)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# ---- DEBUG ----

def test_debug_0_prints_only_the_result(tmp_path):
    assert ok(run_py(SCRIPT, tmp_path)).splitlines() == [RESULT]


def test_debug_1_kernel_counts_and_realize_times(tmp_path):
    out = ok(run_py(SCRIPT, tmp_path, DEBUG="1"))
    assert "realize: 1 kernel (1 compiled), 1 item in " in out and " ms" in out
    assert expected_kernel()[0] not in out   # per-kernel lines start at 2


def test_debug_2_a_line_per_kernel_and_a_table_at_exit(tmp_path):
    name, _ = expected_kernel()
    out = ok(run_py(SCRIPT, tmp_path, DEBUG="2"))
    # one line per launch: the kernel's, and one per copy kernel of its plan (the CPU optimizer may pack an operand)
    launches = [ln for ln in out.splitlines() if ln.lstrip().startswith("CPU ")]
    (line,) = [ln for ln in launches if f" {name} " in ln]
    for launch in launches:
        for part in ("global (", " us", "GFLOP/s", "GB/s"):
            assert part in launch
    table = out[out.index("\nkernel ") + 1:].splitlines()
    assert table[0].split() == ["kernel", "calls", "total", "ms", "GFLOP/s", "GB/s"]
    rows = {row.split()[0]: row.split()[1] for row in table[1:len(launches) + 1]}
    assert rows == {ln.split()[1]: "1" for ln in launches} and rows[name] == "1"
    assert "--- kernel" not in out


def test_debug_3_schedule_and_ast_with_opts(tmp_path):
    name, description = expected_kernel()
    assert "opts: none" not in description, "pick a script kernel that the CPU heuristics optimize"
    out = ok(run_py(SCRIPT, tmp_path, DEBUG="3"))
    assert "schedule: 1 item\n" in out
    assert "<- BUFFER (64, 128) float32, BUFFER (128, 32) float32" in out
    assert f"--- kernel {name} on CPU: {description}\n" in out
    ast = out[out.index(f"--- kernel {name}"):].splitlines()[1:8]
    # relu is a where(): the matmul's SUM feeds the WHERE and its comparison, all in one kernel
    assert [ln.split()[0] for ln in ast][:2] == ["STORE", "WHERE"]
    assert ast[1].startswith("  WHERE") and any(ln.startswith("      ") and "SUM" in ln for ln in ast)   # a tree
    assert "define void" not in out


def test_debug_4_generated_source(tmp_path):
    name, _ = expected_kernel()
    out = ok(run_py(SCRIPT, tmp_path, DEBUG="4"))
    # the function is named by its kind and a hash of its body (kernels that differ only in size share one)
    assert f"--- source of {name}\ndefine void @{name.split('_')[0]}_" in out
    assert "DEFINE_GLOBAL" not in out and "; ModuleID" not in out


def test_debug_5_linear_program_and_optimized_ir_also_from_the_disk_cache(tmp_path):
    name, _ = expected_kernel()
    for _ in range(2):   # the second run takes the binary from the disk cache and must still show the IR
        out = ok(run_py(SCRIPT, tmp_path, DEBUG="5", TINYJIT_CACHE_DIR=str(tmp_path / "cache")))
        assert f"--- linear program of {name}" in out and "DEFINE_GLOBAL" in out and "ACC_WRITE" in out
        ir = out[out.index(f"--- compiled {name} (optimized IR)"):]
        assert "; ModuleID" in ir and f"define void @{name.split('_')[0]}_" in ir
        assert "--- machine code" not in out
    assert list((tmp_path / "cache").rglob("*.bin"))


def test_debug_6_machine_code(tmp_path):
    name, _ = expected_kernel()
    out = ok(run_py(SCRIPT, tmp_path, DEBUG="6"))
    asm = out[out.index(f"--- machine code of {name}"):]
    assert ".globl" in asm and f"{name.split('_')[0]}_" in asm


def test_bad_debug_value_names_the_variable(tmp_path):
    proc = run_py(SCRIPT, tmp_path, DEBUG="lots")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == ("ValueError: DEBUG='lots' is not valid; valid values: 0 (quiet) "
                                                    "to 6: 1 kernel counts, 2 a line per kernel, 3 schedules and "
                                                    "ASTs, 4 source, 5 linear program and compiled IR, 6 machine code")


# ---- DEVICE, NOOPT, CACHE ----

def test_unknown_device_fails_at_import_with_one_line(tmp_path):
    proc = run_py("import tinyjit", tmp_path, DEVICE="bogus")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [   # the whole output: no traceback
        "tinyjit.device.DeviceError: DEVICE='bogus' is not a device; valid values: CPU, CL, CUDA (GPU and OPENCL "
        "mean CL, LLVM means CPU)"]


@pytest.mark.parametrize("env,message", [
    ({"CPU": "1", "CL": "1"}, "CPU=1 CL=1 name different default devices; set only one (or DEVICE=...)"),
    ({"CL": "1", "CUDA": "1"}, "CL=1 CUDA=1 name different default devices; set only one (or DEVICE=...)"),
    ({"DEVICE": "CL", "CPU": "1"}, "DEVICE=CL and CPU=1 name different devices; set only one of them"),
    ({"DEBUG": "x"}, None)])
def test_conflicting_or_bad_settings_fail_at_import_with_one_line(tmp_path, env, message):
    proc = run_py("import tinyjit", tmp_path, **env)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    if message is not None:
        assert lines[0] == f"tinyjit.device.DeviceError: {message}"
    # code that catches the error still gets the exception
    caught = run_py("try:\n    import tinyjit\nexcept Exception as e:\n    print(type(e).__name__)", tmp_path, **env)
    assert caught.returncode == 0 and caught.stdout.strip() in ("DeviceError", "ValueError")


@pytest.mark.parametrize("env,device", [({"DEVICE": "GPU"}, "CL"), ({"DEVICE": "opencl"}, "CL"),
                                        ({"DEVICE": "CPU", "CPU": "1"}, "CPU"), ({"CL": "1", "CPU": "0"}, "CL")])
def test_device_aliases_and_agreeing_flags(tmp_path, env, device):
    assert ok(run_py("from tinyjit import Device; print(Device.DEFAULT)", tmp_path, **env)).strip() == device


@pytest.mark.parametrize("env", [{"DEVICE": "CPU"}, {"DEVICE": "cpu"}, {"CPU": "1"}])
def test_cpu_device_by_env(tmp_path, env):
    out = ok(run_py(SCRIPT + "print(Tensor([1.0]).device)", tmp_path, **env))
    assert out.splitlines() == [RESULT, "CPU"]


def test_noopt_gives_the_same_results_with_unoptimized_kernels(tmp_path):
    (name, _), (plain_name, plain_description) = expected_kernel(), expected_kernel(opt=False)
    assert name != plain_name and plain_description.endswith("opts: none")
    code = SCRIPT + "print('softmax', Tensor(x).softmax().numpy().sum(1)[:3].round(5).tolist())"
    optimized = ok(run_py(code, tmp_path, DEBUG="2"))
    noopt = ok(run_py(code, tmp_path, DEBUG="2", NOOPT="1"))
    results = [[ln for ln in out.splitlines() if ln.startswith(("result", "softmax"))] for out in (optimized, noopt)]
    assert results[0] == results[1] and len(results[0]) == 2
    assert f" {name} " in optimized and f" {name} " not in noopt and f" {plain_name} " in noopt


@pytest.mark.parametrize("cache, files", [("0", False), ("1", True)])
def test_cache_0_writes_nothing(tmp_path, cache, files):
    out = ok(run_py(SCRIPT, tmp_path, CACHE=cache, TINYJIT_CACHE_DIR=str(tmp_path / "cache")))
    assert out.startswith(RESULT)
    assert bool(list((tmp_path / "cache").rglob("*.bin"))) == files


# ---- every variable: checked, with the valid values named ----

@pytest.fixture
def fresh_env(monkeypatch):
    """runtime.env reads each variable once per process: forget what it read, before and after the test."""
    from runtime import env
    for name in env.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    env.env.cache_clear()
    yield env
    env.env.cache_clear()


@pytest.mark.parametrize("name,value,valid", [
    ("THREADS", "abc", "1 to 1024"), ("THREADS", "0", "1 to 1024"), ("THREADS", "100000", "1 to 1024"),
    ("THREADS", "-2", "1 to 1024"), ("THREADS", "2.5", "1 to 1024"),
    ("BEAM", "-1", "0 (off) or a beam width >= 1"), ("BEAM", "wide", "0 (off)"),
    ("DEBUG", "7", "0 (quiet) to 6"), ("DEBUG", "-1", "0 (quiet) to 6"),
    ("NOOPT", "2", "0 or 1"), ("JIT", "yes", "0 or 1"), ("CACHE", "2", "0 or 1"),
    ("TINYJIT_NATIVE_POOL", "off", "0 or 1"), ("CL", "true", "0 or 1"), ("CUDA", "2", "0 or 1"),
    ("CL_PLATFORM", "first", "the index of an OpenCL platform"), ("CL_DEVICE", "-1", "the index of a device"),
])
def test_bad_env_values_name_the_valid_values(fresh_env, monkeypatch, name, value, valid):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=rf"^{name}='{re.escape(value)}' is not valid; valid values: "
                                         rf"{re.escape(valid)}"):
        fresh_env.check_all()


def test_good_env_values_are_read(fresh_env, monkeypatch):
    from runtime.cpu import cpu_count
    for name, value, want in [("THREADS", "3", 3), ("BEAM", "4", 4), ("DEBUG", " 2 ", 2), ("JIT", "0", 0),
                              ("CL_DEVICE", "1", 1), ("NOOPT", "", 0)]:
        monkeypatch.setenv(name, value)
        assert fresh_env.env(name) == want
    fresh_env.check_all()
    assert cpu_count() == 3


def test_bad_threads_fails_at_import_at_once(tmp_path):
    """THREADS=100000 used to start threads for 53 s and die with "can't start new thread"; THREADS=0 used to
    mean 1 and THREADS=abc failed in a bare int(). Now each fails at import, in one line."""
    for value in ("100000", "0", "abc"):
        proc = run_py("import tinyjit", tmp_path, THREADS=value)
        assert proc.returncode != 0
        assert proc.stderr.strip().splitlines()[-1].startswith(f"ValueError: THREADS={value!r} is not valid; valid "
                                                               "values: 1 to 1024 CPU worker threads")


def test_beam_minus_one_is_refused_before_searching(tmp_path):
    proc = run_py(SCRIPT, tmp_path, BEAM="-1")
    assert proc.returncode != 0 and "IndexError" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("ValueError: BEAM='-1' is not valid; valid values: 0 (off)")
