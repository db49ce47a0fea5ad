"""What a fresh process loads: `import tinyjit` and a first CPU computation pull in no other backend's driver
package and nothing the CPU path does not use (each module costs start-up time, W8 in bench/compare.py). Checked in
subprocesses through sys.modules, never by timing."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# never needed by import tinyjit or by a CPU computation
UNUSED_ON_CPU = ("pyopencl", "cuda", "torch", "hypothesis", "concurrent.futures", "logging")


def _loaded_modules(code: str, cache_dir) -> set[str]:
    env = dict(os.environ, PYTHONPATH=ROOT, TINYJIT_CACHE_DIR=str(cache_dir), THREADS="2")
    env.pop("DEVICE", None)
    script = code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stdout.strip().splitlines()[-1].split())


def _unwanted(modules: set[str], names) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_import_loads_no_backend_and_no_compiler(tmp_path):
    modules = _loaded_modules("import tinyjit", tmp_path)
    assert "tinyjit" in modules
    assert _unwanted(modules, UNUSED_ON_CPU + ("llvmlite", "codegen")) == []


def test_a_cpu_computation_loads_no_other_backend(tmp_path):
    code = ("import numpy as np\nfrom tinyjit import Tensor\n"
            "x = np.arange(512 * 300, dtype=np.float32).reshape(512, 300)\n"
            "assert np.array_equal((Tensor(x) * 2 + 1).numpy(), x * 2 + 1)")   # threaded: the native pool runs
    modules = _loaded_modules(code, tmp_path)
    assert "llvmlite.binding" in modules
    assert _unwanted(modules, UNUSED_ON_CPU) == []


def test_a_warm_start_does_not_import_the_code_generator(tmp_path):
    """A second process finds its plans in the disk cache: it unpickles and loads them (codegen.plan holds their
    classes) and never imports the code generator itself."""
    code = ("import numpy as np\nfrom tinyjit import Tensor\n"
            "x = np.arange(64 * 30, dtype=np.float32).reshape(64, 30)\n"
            "np.testing.assert_allclose((Tensor(x) * 2 + 1).sum(1).numpy(), (x * 2 + 1).sum(1), rtol=1e-6)")
    cold = _loaded_modules(code, tmp_path)
    assert "codegen.pipeline" in cold   # (the first process built the kernels)
    warm = _loaded_modules(code, tmp_path)
    assert _unwanted(warm, ("codegen",)) == ["codegen", "codegen.plan"]


def test_runtime_devices_agree_with_their_renderers_on_gpu():
    """The kernel cache asks the runtime device whether it is a GPU (so a warm start skips importing codegen);
    the renderer says the same."""
    import importlib

    from tinyjit.device import BACKENDS
    for name, (module_name, class_name, renderer_module, renderer_class) in BACKENDS.items():
        try:
            device_class = getattr(importlib.import_module(module_name), class_name)
        except ImportError:   # a backend whose driver package is missing here
            continue
        renderer = getattr(importlib.import_module(renderer_module), renderer_class)
        assert device_class.gpu == renderer.gpu, name
