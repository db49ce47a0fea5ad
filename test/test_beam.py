"""BEAM=N picks optimizations by timing and caches the choice on disk; results stay those of NOOPT."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = """
import numpy as np
from tinyjit import Tensor
from tinyjit.realize import counters
a = np.arange(48 * 40, dtype=np.float32).reshape(48, 40) % 7 - 3
b = np.arange(40 * 64, dtype=np.float32).reshape(40, 64) % 5 - 2
out = (Tensor(a) @ Tensor(b)).relu().numpy()
assert np.array_equal(out, np.maximum(a @ b, 0)), out
print("ok", counters["kernels_compiled"])
"""


def run(tmp_path, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("BEAM", "NOOPT", "DEBUG", "CACHE")}
    full.update(PYTHONPATH=ROOT, TINYJIT_CACHE_DIR=str(tmp_path / "cache"), **env)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=full, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_beam_searches_once_then_reads_its_choice_from_disk(tmp_path):
    assert run(tmp_path, BEAM="2").startswith("ok 1")
    beams = list((tmp_path / "cache" / "beam").glob("*.bin"))
    assert len(beams) == 1
    stamp = beams[0].stat().st_mtime_ns
    assert run(tmp_path, BEAM="2").startswith("ok 1")
    assert beams[0].stat().st_mtime_ns == stamp   # read, not searched and written again


def test_noopt_wins_over_beam(tmp_path):
    assert run(tmp_path, BEAM="2", NOOPT="1").startswith("ok")
    assert not (tmp_path / "cache" / "beam").exists()
