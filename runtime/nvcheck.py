"""Check CUDA source without a GPU: NVRTC → PTX and CUBIN per architecture, then the PTX through `ptxas`.

NVRTC alone proves the C++ is valid and that NVRTC's own assembler accepts what it generated. Running the
PTX through the toolkit's `ptxas` as well is an independent second assembler: it catches PTX that only one
of them accepts, and it is the same path a driver's JIT takes when it loads PTX.

PTX ISA versions (the `.version` line). NVRTC from PyPI (13.5 here) writes the newest ISA it knows (9.5),
and an older ptxas refuses it outright ("Unsupported .version 9.5; current version is '9.0'"), whatever the
PTX contains. NVRTC has no option to emit an older ISA (its options are only the architecture; the PTX
version follows the NVRTC release), so the choice here is to rewrite the `.version` directive down to the
newest ISA the installed ptxas accepts, under two conditions:
- only within the same major ISA version (9.5 → 9.0, never 9.x → 8.x): across majors, features were removed
  and defaults changed, so a rewritten file could mean something else;
- ptxas checks every instruction, type and directive against the declared version ("Feature 'X' requires
  PTX ISA .version 9.1 or later"). So PTX that uses nothing newer than the target ISA assembles, and PTX
  that does fails with that message, as a CompileError. The rewrite can therefore not hide a problem.
The ISA ptxas accepts is found by asking it: a probe file declaring `.version 99.9` makes ptxas print its
current version. `ptxas --version` (release → ISA table) is the fallback.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from typing import NamedTuple

from runtime import CompileError, number_lines
from runtime.cache import cached_compile
from runtime.cuda import nvrtc_compile_cached, nvrtc_version

PTXAS_HINT = "install the CUDA toolkit or `pip install nvidia-cuda-nvcc` for ptxas"
_VERSION_RE = re.compile(r"^[ \t]*\.version[ \t]+(\d+)\.(\d+)", re.M)
# CUDA release → newest PTX ISA, for the fallback only (from the PTX ISA release notes).
_RELEASE_TO_ISA = {(12, 0): (8, 0), (12, 1): (8, 1), (12, 2): (8, 2), (12, 3): (8, 3), (12, 4): (8, 4),
                   (12, 5): (8, 5), (12, 6): (8, 5), (12, 8): (8, 7), (12, 9): (8, 8)}


class Ptxas(NamedTuple):
    path: str
    release: str           # e.g. "13.0"
    max_isa: tuple[int, int]


def find_ptxas() -> str | None:
    """ptxas on PATH, else one cuda-python's pathfinder knows (CUDA_HOME, conda, the nvidia-cuda-nvcc wheel)."""
    path = shutil.which("ptxas")
    if path:
        return path
    try:
        from cuda.pathfinder import find_nvidia_binary_utility
        return find_nvidia_binary_utility("ptxas")
    except Exception:
        return None


def _run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CompileError(f"{' '.join(cmd)} timed out after {timeout:.0f} s") from None
    except OSError as e:
        raise CompileError(f"cannot run {cmd[0]}: {e}") from None


@functools.lru_cache(maxsize=None)
def ptxas_info(path: str) -> Ptxas:
    """Release and newest accepted PTX ISA of the ptxas at `path`."""
    out = _run([path, "--version"]).stdout
    m = re.search(r"release (\d+)\.(\d+)", out)
    if not m:
        raise CompileError(f"cannot read the version of {path}", log=out)
    release = (int(m.group(1)), int(m.group(2)))
    with tempfile.TemporaryDirectory(prefix="tinyjit-ptxas-") as tmp:
        probe = os.path.join(tmp, "probe.ptx")
        with open(probe, "w") as f:
            f.write(".version 99.9\n.target sm_80\n.address_size 64\n")
        result = _run([path, "-arch=sm_80", probe, "-o", os.path.join(tmp, "probe.cubin")])
    probed = re.search(r"current version is '(\d+)\.(\d+)'", result.stdout + result.stderr)
    if probed:
        isa = (int(probed.group(1)), int(probed.group(2)))
    elif release[0] >= 13 or release[0] == 11:  # 11.x wrote ISA 7.x, 13.x writes 9.x
        isa = (release[0] - 4, release[1])
    elif release in _RELEASE_TO_ISA:
        isa = _RELEASE_TO_ISA[release]
    else:
        raise CompileError(f"cannot tell which PTX ISA {path} (release {release[0]}.{release[1]}) accepts",
                           log=result.stdout + result.stderr)
    return Ptxas(path, f"{release[0]}.{release[1]}", isa)


def ptx_isa(ptx: str) -> tuple[int, int]:
    """The (major, minor) of the PTX `.version` directive."""
    m = _VERSION_RE.search(ptx)
    if not m:
        raise CompileError("PTX has no .version directive", ptx)
    return int(m.group(1)), int(m.group(2))


def match_ptx_isa(ptx: str, max_isa: tuple[int, int]) -> tuple[str, str | None]:
    """PTX that declares at most `max_isa`, and a note of the rewrite (None when the PTX was already old
    enough). See the module docstring for why only a same-major downgrade is done."""
    have = ptx_isa(ptx)
    if have <= tuple(max_isa):
        return ptx, None
    if have[0] != max_isa[0]:
        raise CompileError(f"the PTX declares ISA {have[0]}.{have[1]} but ptxas accepts at most "
                           f"{max_isa[0]}.{max_isa[1]}; a rewrite across major ISA versions is not safe: "
                           f"use a ptxas as new as NVRTC {nvrtc_version()} ({PTXAS_HINT})")
    m = _VERSION_RE.search(ptx)
    rewritten = f"{ptx[:m.start(1)]}{max_isa[0]}.{max_isa[1]}{ptx[m.end(2):]}"
    return rewritten, f".version {have[0]}.{have[1]} rewritten to {max_isa[0]}.{max_isa[1]}"


def ptxas_assemble(ptx: str, arch: str, ptxas: str | None = None, what: str = "") -> bytes:
    """Assemble PTX text into a CUBIN for `arch` with ptxas (disk-cached, kind "ptxas").

    The PTX must already declare an ISA this ptxas accepts (see `match_ptx_isa`). `what` is prepended to
    the error message, e.g. the CUDA source the PTX came from.
    """
    path = ptxas or find_ptxas()
    if path is None:
        raise CompileError(f"ptxas not found ({PTXAS_HINT})")
    info = ptxas_info(path)

    def assemble(text: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="tinyjit-ptxas-") as tmp:
            src_file, out_file = os.path.join(tmp, "kernel.ptx"), os.path.join(tmp, "kernel.cubin")
            with open(src_file, "w") as f:
                f.write(text)
            result = _run([path, f"-arch={arch}", src_file, "-o", out_file])
            if result.returncode != 0:
                raise CompileError(f"{what}ptxas {info.release} rejected the PTX below for {arch}", text,
                                   result.stderr + result.stdout)
            with open(out_file, "rb") as f:
                return f.read()

    return cached_compile("ptxas", (f"ptxas {info.release}", arch), ptx, assemble)


def check_cuda_source(src: str, archs=("sm_80", "sm_90"), opts=()) -> dict:
    """Compile `src` for each architecture without a GPU; raise CompileError on any failure.

    Returns what was built and by which tool:
        {"nvrtc": "NVRTC 13.5",
         "ptxas": "ptxas 13.0 (/usr/local/bin/ptxas), PTX ISA <= 9.0" or None,
         "ptxas_skipped": None or the reason ptxas did not run (not installed),
         "archs": {"sm_80": {"ptx": str, "ptx_isa": "9.5", "cubin": bytes (by NVRTC),
                             "ptxas_cubin": bytes or None, "ptxas_note": None or the .version rewrite}, ...}}
    """
    archs = (archs,) if isinstance(archs, str) else tuple(archs)
    for arch in archs:
        if not re.fullmatch(r"sm_\d+[af]?", arch):
            raise ValueError(f"architectures must be real ones like 'sm_80', not {arch!r}")
    report = {"nvrtc": f"NVRTC {nvrtc_version()}", "ptxas": None, "ptxas_skipped": None, "archs": {}}
    path = find_ptxas()
    info = ptxas_info(path) if path else None
    if info:
        report["ptxas"] = f"ptxas {info.release} ({info.path}), PTX ISA <= {info.max_isa[0]}.{info.max_isa[1]}"
    else:
        report["ptxas_skipped"] = f"ptxas not found on PATH ({PTXAS_HINT})"
    for arch in archs:
        ptx = nvrtc_compile_cached(src, arch, "ptx", opts).decode()
        isa = ptx_isa(ptx)
        entry = {"ptx": ptx, "ptx_isa": f"{isa[0]}.{isa[1]}", "cubin": nvrtc_compile_cached(src, arch, "cubin", opts),
                 "ptxas_cubin": None, "ptxas_note": None}
        if info:
            matched, entry["ptxas_note"] = match_ptx_isa(ptx, info.max_isa)
            origin = f"CUDA source (compiled by NVRTC {nvrtc_version()}"
            origin += f"; PTX {entry['ptxas_note']}):\n" if entry["ptxas_note"] else "):\n"
            entry["ptxas_cubin"] = ptxas_assemble(matched, arch, info.path, what=origin + number_lines(src) + "\n")
        report["archs"][arch] = entry
    return report
