"""Packaging: a wheel built from the tree holds every module, installs, and runs a kernel outside the tree.

Built without build isolation (no network needed): setuptools>=70.1 (in the test extras) builds wheels alone."""
import os
import shutil
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("tinyjit", "codegen", "runtime")

CHILD = """
import os, sys
import numpy as np
import codegen, runtime, tinyjit, tinyjit.nn
from tinyjit import Tensor
site = sys.argv[1]
for module in (tinyjit, tinyjit.nn, codegen, runtime):
    assert module.__file__.startswith(site), (module.__name__, module.__file__)
x = np.arange(12, dtype=np.float32).reshape(3, 4)
out = (Tensor(x) * 2 + 1).relu().sum(1).numpy()
assert np.array_equal(out, (x * 2 + 1).sum(1)), out
print("ok", out.tolist())
"""


def _tree_modules() -> set:
    """Every .py file of the shipped packages in the source tree, as wheel paths."""
    found = set()
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(ROOT, package)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            rel = os.path.relpath(folder, ROOT).replace(os.sep, "/")
            found.update(f"{rel}/{f}" for f in files if f.endswith(".py"))
    return found


def test_wheel_builds_installs_and_runs_outside_the_tree(tmp_path):
    # build from a copy, so the build leaves no build/ or egg-info in the tree (and parallel runs don't collide)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.cfg", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    for package in PACKAGES:
        shutil.copytree(os.path.join(ROOT, package), src / package, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(pip[:3] + ["wheel"] + pip[3:] + ["--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                   str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("tinyjit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert _tree_modules() <= names, sorted(_tree_modules() - names)
    for package in ("tinyjit", "tinyjit/nn", "codegen", "runtime"):
        assert f"{package}/__init__.py" in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Requires-Dist: numpy" in metadata and "Requires-Dist: llvmlite" in metadata

    site = tmp_path / "site"
    subprocess.run(pip[:3] + ["install"] + pip[3:] + ["--no-deps", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DEVICE", "NOOPT")}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(site)], cwd=run_dir, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok [16.0, 48.0, 80.0]"
