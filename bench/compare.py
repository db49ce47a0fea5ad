"""Benchmark tinyjit against numpy, PyTorch (eager, torch.compile), JAX jit, MLX and tinygrad on one machine.

    python bench/compare.py [--quick] [--only W1,W3,P1,G1] [--no-cold] [--threads N]

W1-W8 are kernels and small training steps; P1-P4 are small public programs ported to every framework
(bench/programs.py: nanoGPT, makemore GRU and Transformer, an LSTM word language model), each timed as a TinyJit
step, an eager step and against the peers, plus tinyjit's first step in a fresh process from an empty compile
cache with its per-kernel compile times (max, p95, total); G1 is generation through a KV cache in tokens/s.

Each workload runs on every framework that is installed (others print `n/a (reason)`), reports the median
of several runs after warm-up, and prints tinyjit's ratio to each peer (> 1 means tinyjit is faster).
Elementwise and reduce results are also given as a fraction of this machine's measured copy bandwidth.
The peers come with `pip install -e ".[bench]"` (torch CPU, tinygrad, jax[cpu], mlx[cpu] where a wheel exists);
tinygrad's CPU device also needs clang (`apt-get install clang`). A missing peer prints `n/a (reason)`.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FRAMEWORKS = ["tinyjit", "numpy", "torch", "tinygrad"]


def median_time(fn: Callable[[], object], runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def memory_bandwidth() -> float:
    """GB/s (bytes read + written) of numpy copying into an already-touched 256 MB buffer."""
    src = np.ones(64 * 1024 * 1024, dtype=np.float32)
    dst = np.zeros_like(src)
    seconds = median_time(lambda: np.copyto(dst, src), runs=5)
    return 2 * src.nbytes / seconds / 1e9


# ---- peers ----
def load_peers() -> dict[str, object]:
    peers: dict[str, object] = {"numpy": np}
    try:
        import torch
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        peers["torch"] = torch
    except ImportError as e:
        peers["torch"] = f"n/a (torch not installed: {e.name})"
    try:
        os.environ.setdefault("DEV", "CPU")
        import tinygrad
        (tinygrad.Tensor([1.0]) + 1).realize()
        peers["tinygrad"] = tinygrad
    except ImportError:
        peers["tinygrad"] = "n/a (tinygrad not installed)"
    except Exception as e:   # e.g. no clang for its CPU device
        peers["tinygrad"] = f"n/a ({type(e).__name__}: {str(e).splitlines()[0][:60]})"
    import tinyjit
    peers["tinyjit"] = tinyjit
    return peers


class Result:
    def __init__(self, workload: str, unit: str):
        self.workload, self.unit = workload, unit
        self.values: dict[str, object] = {}   # framework -> (seconds, metric) or "n/a (...)"


def run_case(result: Result, framework: str, make: Callable[[], Optional[Callable]], metric: Callable[[float], float],
             runs: int) -> None:
    try:
        fn = make()
        if fn is None:
            result.values[framework] = "n/a (no equivalent)"
            return
        seconds = median_time(fn, runs)
        result.values[framework] = (seconds, metric(seconds))
    except Exception as e:   # a peer that cannot run a workload is reported, not fatal
        result.values[framework] = f"n/a ({type(e).__name__}: {str(e).splitlines()[0][:50] if str(e) else ''})"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.1f}"


def print_table(results: list[Result], bandwidth: float) -> None:
    print(f"\nmachine copy bandwidth: {bandwidth:.1f} GB/s (read + write)\n")
    header = f"{'workload':<34}{'framework':<10}{'ms':>10}{'metric':>16}   vs numpy  vs torch  vs tinygrad"
    print(header)
    print("-" * len(header))
    for r in results:
        for fw in FRAMEWORKS:
            v = r.values.get(fw)
            if v is None:
                continue
            if isinstance(v, str):
                print(f"{r.workload:<34}{fw:<10}{v:>26}")
                continue
            seconds, metric = v
            extra = ""
            if r.unit == "GB/s" and bandwidth:
                extra = f" ({metric / bandwidth * 100:.0f}% bw)"
            line = f"{r.workload:<34}{fw:<10}{fmt_ms(seconds):>10}{metric:>11.2f} {r.unit:<5}{extra}"
            if fw == "tinyjit":
                ratios = []
                for peer in ("numpy", "torch", "tinygrad"):
                    pv = r.values.get(peer)
                    ratios.append(f"{pv[0] / seconds:8.2f}x" if isinstance(pv, tuple) else f"{'n/a':>9}")
                line += "  " + " ".join(ratios)
            print(line)
    print("\nratio = peer time / tinyjit time: > 1 means tinyjit is faster")


# ---- workloads ----
def w1_elementwise(peers, runs):
    n = 16 * 1024 * 1024
    r = Result("W1 elementwise 16M f32", "GB/s")
    xn = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    yn = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    gbs = lambda s: 3 * n * 4 / s / 1e9   # noqa: E731  (read x, y; write out)
    tj = peers["tinyjit"]

    def tinyjit_case():
        x, y = tj.Tensor(xn).realize(), tj.Tensor(yn).realize()
        return lambda: ((x * 1.5 + y).relu() * (x * 0.5).exp() - y).realize()
    run_case(r, "tinyjit", tinyjit_case, gbs, runs)
    run_case(r, "numpy", lambda: (lambda: np.maximum(xn * 1.5 + yn, 0) * np.exp(xn * 0.5) - yn), gbs, runs)
    if not isinstance(peers["torch"], str):
        torch = peers["torch"]
        xt, yt = torch.from_numpy(xn), torch.from_numpy(yn)
        run_case(r, "torch", lambda: (lambda: (xt * 1.5 + yt).relu() * (xt * 0.5).exp() - yt), gbs, runs)
    _tinygrad_case(r, peers, lambda T: (lambda x, y: lambda: ((x * 1.5 + y).relu() * (x * 0.5).exp() - y).realize())(
        T(xn).realize(), T(yn).realize()), gbs, runs)
    return r


def w2_reduce(peers, runs):
    n = 4096
    xn = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    out = []
    for name, tj_fn, np_fn, torch_fn, unit in [
        ("W2 sum last axis 4096x4096", lambda x: x.sum(-1), lambda x: x.sum(-1), lambda x: x.sum(-1), "GB/s"),
        ("W2 softmax last axis 4096x4096", lambda x: x.softmax(-1), _np_softmax, lambda x: x.softmax(-1), "GB/s"),
    ]:
        r = Result(name, unit)
        gbs = (lambda s: n * n * 4 / s / 1e9) if "sum" in name else (lambda s: 2 * n * n * 4 / s / 1e9)
        tj = peers["tinyjit"]
        run_case(r, "tinyjit", lambda: (lambda x: lambda: tj_fn(x).realize())(tj.Tensor(xn).realize()), gbs, runs)
        run_case(r, "numpy", lambda: (lambda: np_fn(xn)), gbs, runs)
        if not isinstance(peers["torch"], str):
            xt = peers["torch"].from_numpy(xn)
            run_case(r, "torch", lambda: (lambda: torch_fn(xt)), gbs, runs)
        _tinygrad_case(r, peers, lambda T: (lambda x: lambda: tj_fn(x).realize())(T(xn).realize()), gbs, runs)
        out.append(r)
    return out


def _np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def w3_matmul(peers, runs):
    out = []
    for n in (1024, 2048):
        r = Result(f"W3 matmul f32 {n}^3", "GFLOP/s")
        an = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
        bn = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
        flops = lambda s, n=n: 2 * n ** 3 / s / 1e9   # noqa: E731
        tj = peers["tinyjit"]
        run_case(r, "tinyjit", lambda: (lambda a, b: lambda: (a @ b).realize())(tj.Tensor(an).realize(),
                                                                               tj.Tensor(bn).realize()), flops, runs)
        run_case(r, "numpy", lambda: (lambda: an @ bn), flops, runs)
        if not isinstance(peers["torch"], str):
            at, bt = peers["torch"].from_numpy(an), peers["torch"].from_numpy(bn)
            run_case(r, "torch", lambda: (lambda: at @ bt), flops, runs)
        _tinygrad_case(r, peers, lambda T: (lambda a, b: lambda: (a @ b).realize())(T(an).realize(), T(bn).realize()),
                       flops, runs)
        out.append(r)
    return out


def w4_conv(peers, runs):
    r = Result("W4 conv2d b32 32->64 3x3 32x32", "GFLOP/s")
    xn = np.random.default_rng(0).standard_normal((32, 32, 32, 32)).astype(np.float32)
    wn = np.random.default_rng(1).standard_normal((64, 32, 3, 3)).astype(np.float32)
    flops = lambda s: 2 * 32 * 64 * 32 * 32 * 32 * 9 / s / 1e9   # noqa: E731
    tj = peers["tinyjit"]
    run_case(r, "tinyjit", lambda: (lambda x, w: lambda: x.conv2d(w, padding=1).realize())(
        tj.Tensor(xn).realize(), tj.Tensor(wn).realize()), flops, runs)
    r.values["numpy"] = "n/a (no conv2d)"
    if not isinstance(peers["torch"], str):
        torch = peers["torch"]
        xt, wt = torch.from_numpy(xn), torch.from_numpy(wn)
        run_case(r, "torch", lambda: (lambda: torch.nn.functional.conv2d(xt, wt, padding=1)), flops, runs)
    _tinygrad_case(r, peers, lambda T: (lambda x, w: lambda: x.conv2d(w, padding=1).realize())(
        T(xn).realize(), T(wn).realize()), flops, runs)
    return r


def _tinygrad_case(r: Result, peers, make_with_tensor, metric, runs):
    tg = peers["tinygrad"]
    if isinstance(tg, str):
        r.values["tinygrad"] = tg
        return
    run_case(r, "tinygrad", lambda: make_with_tensor(tg.Tensor), metric, runs)


def w5_w6_training(peers, runs):
    from bench.training import cnn_cases, mlp_cases
    out = []
    for name, cases in (("W5 MLP 784-512-512-10 step b128", mlp_cases), ("W6 CNN step 1x28x28 b64", cnn_cases)):
        r = Result(name, "steps/s")
        for framework, make in cases(peers).items():
            if isinstance(make, str):
                r.values[framework] = make
            else:
                run_case(r, framework, make, lambda s: 1 / s, runs)
        out.append(r)
    return out


def w7_dispatch(peers, runs):
    tj = peers["tinyjit"]
    out = []
    r = Result("W7 1-element add, eager", "us/call")
    x = tj.Tensor(np.ones(1, np.float32)).realize()
    run_case(r, "tinyjit", lambda: (lambda: (x + 1).realize()), lambda s: s * 1e6, runs * 50)
    if not isinstance(peers["torch"], str):
        xt = peers["torch"].ones(1)
        run_case(r, "torch", lambda: (lambda: xt + 1), lambda s: s * 1e6, runs * 50)
    run_case(r, "numpy", lambda: (lambda xn=np.ones(1, np.float32): xn + 1), lambda s: s * 1e6, runs * 50)
    _tinygrad_case(r, peers, lambda T: (lambda v: lambda: (v + 1).realize())(T.ones(1).contiguous().realize()),
                   lambda s: s * 1e6, runs * 20)
    out.append(r)
    r = Result("W7 1-element add, TinyJit replay", "us/call")

    def tinyjit_jit():
        f = tj.TinyJit(lambda v: v + 1)
        return lambda: f(x)
    run_case(r, "tinyjit", tinyjit_jit, lambda s: s * 1e6, runs * 50)
    if not isinstance(peers["tinygrad"], str):
        T = peers["tinygrad"]

        def tinygrad_jit():
            v = T.Tensor.ones(1).contiguous().realize()
            f = T.TinyJit(lambda a: (a + 1).realize())
            return lambda: f(v)
        run_case(r, "tinygrad", tinygrad_jit, lambda s: s * 1e6, runs * 20)
    else:
        r.values["tinygrad"] = peers["tinygrad"]
    out.append(r)
    return out


def w8_cold_start(peers, runs):
    out = []
    script = "import sys, time; t0 = time.perf_counter(); sys.path.insert(0, {root!r}); " \
             "from bench.training import first_mlp_step; first_mlp_step(); print(time.perf_counter() - t0)"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # Python's bytecode as an installed package has it (pip compiles it at install time), even where the
    # environment says PYTHONDONTWRITEBYTECODE: otherwise every import compiles tinyjit's source again (~0.17 s).
    # Kept under the temp dir (PYTHONPYCACHEPREFIX), compiled once before anything is timed.
    python_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    python_env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "tinyjit-bench-pycache")
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r}); import bench.training, "
                    "runtime.cpu"], env=python_env, check=False, capture_output=True)
    for label, fresh in (("W8 cold start, empty cache", True), ("W8 cold start, warm cache", False)):
        r = Result(label, "s")
        cache = tempfile.mkdtemp(prefix="tinyjit-bench-cache-") if fresh else os.path.join(
            tempfile.gettempdir(), "tinyjit-bench-warm-cache")
        env = dict(python_env, TINYJIT_CACHE_DIR=cache)
        try:
            if not fresh:   # warm it once
                subprocess.run([sys.executable, "-c", script.format(root=root)], env=env, check=True,
                               capture_output=True, text=True)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", script.format(root=root)], env=env, check=True,
                                  capture_output=True, text=True)
            total = time.perf_counter() - t0
            r.values["tinyjit"] = (total, total)
        except subprocess.CalledProcessError as e:
            r.values["tinyjit"] = f"n/a ({(e.stderr or '').strip().splitlines()[-1][:60] if e.stderr else 'failed'})"
        out.append(r)
    return out


# ---- ported programs (bench/programs.py): train steps of small models, cold first steps, generation ----
PROGRAM_FRAMEWORKS = ["tinyjit", "tinyjit eager", "torch", "torch.compile", "jax jit", "mlx compile"]
PROGRAM_BUDGET = 2.0   # seconds of timed runs per case at most (at least one run): slow peers stay short


def adaptive_time(fn: Callable[[], object], runs: int, warmup: int) -> tuple[float, float]:
    """(seconds of the first call, median seconds per call after `warmup` calls), within PROGRAM_BUDGET."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        fn()
    times: list[float] = []
    while len(times) < runs and (not times or sum(times) < PROGRAM_BUDGET):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def _program_peers(peers, frameworks=None) -> dict[str, object]:
    """framework -> module, or 'n/a (reason)'; a framework left out by --peers is 'n/a (not selected)'."""
    found = {"torch": peers["torch"]}
    if frameworks is not None:
        skipped = [f for f in ("torch.compile", "jax jit", "mlx compile") if f not in frameworks]
        found.update({f: "n/a (not selected: --peers)" for f in skipped})
        if "torch.compile" in skipped and "jax jit" in skipped and "mlx compile" in skipped:
            return found
    if "torch.compile" not in found:
        found["torch.compile"] = peers["torch"] if isinstance(peers["torch"], str) else \
            _torch_compile_usable(peers["torch"])
    if "jax jit" not in found:
        try:
            import jax
            jax.numpy.zeros(1).block_until_ready()
            found["jax jit"] = jax
        except ImportError:
            found["jax jit"] = "n/a (jax not installed: pip install 'jax[cpu]')"
    if "mlx compile" not in found:
        try:
            import mlx.core as mx
            mx.eval(mx.zeros(1))
            found["mlx compile"] = mx
        except ImportError:
            found["mlx compile"] = "n/a (mlx not installed: pip install 'mlx[cpu]')"
    return found


def _torch_compile_usable(torch):
    try:
        torch.compile(lambda x: x + 1)(torch.ones(2))
        return torch
    except Exception as e:   # e.g. no C++ compiler for inductor
        return f"n/a (torch.compile: {type(e).__name__}: {str(e).splitlines()[0][:50] if str(e) else ''})"


def _program_case(framework: str, module, name: str):
    from bench import programs
    if framework == "tinyjit":
        return programs.make_tinyjit(name)
    if framework == "tinyjit eager":
        return programs.make_tinyjit(name, jit=False)
    if framework == "torch":
        return programs.make_torch(module, name)
    if framework == "torch.compile":
        return programs.make_torch(module, name, compiled=True)
    if framework == "jax jit":
        return programs.make_jax(module, name)
    return programs.make_mlx(module, name)


class ProgramResult:
    def __init__(self, workload: str, unit: str = "ms/step"):
        self.workload, self.unit = workload, unit
        self.values: dict[str, object] = {}   # framework -> (first call s, seconds per step, loss) or "n/a (...)"
        self.cold: object = None              # tinyjit's first step in a fresh process from an empty cache


def programs_train(peers, runs, names=None, cold: bool = True, frameworks=None) -> list:
    from bench import programs
    found = _program_peers(peers, frameworks)
    out = []
    for name in names or list(programs.PROGRAMS):
        r = ProgramResult(programs.LABELS[name])
        print(f"  {name} ...", file=sys.stderr, flush=True)
        for framework in PROGRAM_FRAMEWORKS:
            module = found.get(framework)
            if isinstance(module, str):
                r.values[framework] = module
                continue
            try:
                step = _program_case(framework, module, name)
                losses: list = []
                first, seconds = adaptive_time(lambda: losses.append(step()), runs, warmup=3)
                r.values[framework] = (first, seconds, losses[0])
            except Exception as e:   # a peer that cannot run a program is reported, not fatal
                r.values[framework] = f"n/a ({type(e).__name__}: {str(e).splitlines()[0][:60] if str(e) else ''})"
        if cold:
            r.cold = cold_first_step(name)
        out.append(r)
    return out


def cold_first_step(name: str) -> object:
    """tinyjit's first training step of program `name` in a fresh process with an empty compile cache."""
    import json
    import shutil
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cache = tempfile.mkdtemp(prefix="tinyjit-bench-cold-")
    env = dict(os.environ, TINYJIT_CACHE_DIR=cache, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    try:
        done = subprocess.run([sys.executable, os.path.join(root, "bench", "programs.py"), name], env=env,
                              capture_output=True, text=True, timeout=900)
        if done.returncode:
            return f"n/a ({(done.stderr or 'failed').strip().splitlines()[-1][:70]})"
        return json.loads(done.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return "n/a (more than 900 s)"
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def programs_generate(peers, runs, frameworks=None) -> list:
    from bench import programs
    found = _program_peers(peers, frameworks)
    r = ProgramResult(f"G1 GPT generate {programs.GENERATE_TOKENS} tok, KV cache", "tokens/s")
    makers = {"tinyjit": lambda m: programs.generate_tinyjit(), "torch": programs.generate_torch,
              "jax jit": programs.generate_jax, "mlx compile": programs.generate_mlx}
    for framework in PROGRAM_FRAMEWORKS:
        module = None if framework == "tinyjit" else found.get(framework)
        if framework not in makers:
            continue
        if isinstance(module, str):
            r.values[framework] = module
            continue
        try:
            gen = makers[framework](module)
            tokens: list = []
            first, seconds = adaptive_time(lambda: tokens.append(gen()), min(runs, 3), warmup=1)
            r.values[framework] = (first, seconds, tokens[0])
        except Exception as e:
            r.values[framework] = f"n/a ({type(e).__name__}: {str(e).splitlines()[0][:60] if str(e) else ''})"
    return [r]


def print_program_table(results: list) -> None:
    from bench.programs import GENERATE_TOKENS
    print()
    header = f"{'program':<36}{'framework':<15}{'first call s':>13}{'per step':>14}{'tinyjit faster by':>19}" \
             f"{'first loss':>12}"
    print(header)
    print("-" * len(header))
    for r in results:
        mine = r.values.get("tinyjit")
        for fw in PROGRAM_FRAMEWORKS:
            v = r.values.get(fw)
            if v is None:
                continue
            if isinstance(v, str):
                print(f"{r.workload:<36}{fw:<15}  {v}")
                continue
            first, seconds, loss = v
            if r.unit == "tokens/s":
                step = f"{GENERATE_TOKENS / seconds:9.1f} tok/s"
            else:
                step = f"{seconds * 1e3:10.1f} ms"
            ratio = f"{seconds / mine[1]:17.2f}x" if isinstance(mine, tuple) and fw != "tinyjit" else f"{'':>18}"
            loss_text = f"{loss:12.4f}" if isinstance(loss, float) else f"{loss!s:>12}"
            print(f"{r.workload:<36}{fw:<15}{first:13.2f}{step:>14} {ratio}{loss_text}")
        if r.cold is not None:
            c = r.cold
            if isinstance(c, str):
                print(f"{r.workload:<36}{'cold start':<15}  {c}")
            else:
                print(f"{r.workload:<36}{'cold start':<15}{c['seconds']:13.2f}  first step from an empty cache: "
                      f"{c['kernels']} kernels built, compile CPU s per kernel max {c['compile_cpu_max']:.2f} "
                      f"({c['slowest']}), p95 {c['compile_cpu_p95']:.2f}, total {c['compile_cpu_total']:.1f}")
    print("\nper step: median after warm-up (TinyJit: replays); tinyjit faster by = peer time / tinyjit TinyJit time; "
          "first call includes compiling (disk caches warm, except 'cold start')")


WORKLOADS = {"W1": w1_elementwise, "W2": w2_reduce, "W3": w3_matmul, "W4": w4_conv, "W5": w5_w6_training,
             "W7": w7_dispatch, "W8": w8_cold_start}
PROGRAM_WORKLOADS = {"P1": "gpt", "P2": "gru", "P3": "transformer", "P4": "lstm"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs per case")
    parser.add_argument("--only", default="", help="comma-separated workload ids, e.g. W1,W3 (W5 includes W6); "
                                                   "P1-P4 ported programs, G1 generation, W for all W, P for all P")
    parser.add_argument("--no-cold", action="store_true", help="skip the programs' first steps from an empty cache")
    parser.add_argument("--peers", default="", help="the programs' compiled peers to run, comma-separated: "
                                                   "torch.compile,jax,mlx (default all; torch eager always runs)")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for tinyjit (THREADS) and torch (default: all cores this process may use)")
    args = parser.parse_args()
    runs = 3 if args.quick else 7
    if args.threads:
        os.environ["THREADS"] = str(args.threads)
    only = {w.strip().upper() for w in args.only.split(",") if w.strip()}
    only = {"W5" if w == "W6" else w for w in only}
    only |= {w for w in list(WORKLOADS) + list(PROGRAM_WORKLOADS) + ["G1"] if w[0] in only}
    peers = load_peers()
    if args.threads and not isinstance(peers["torch"], str):
        peers["torch"].set_num_threads(args.threads)
    for name in ("torch", "tinygrad"):
        if isinstance(peers[name], str):
            print(f"{name}: {peers[name]}")
    bandwidth = memory_bandwidth()
    results: list[Result] = []
    for wid, fn in WORKLOADS.items():
        if only and wid not in only:
            continue
        print(f"running {wid} ...", file=sys.stderr, flush=True)
        out = fn(peers, runs)
        results.extend(out if isinstance(out, list) else [out])
    if results:
        print_table(results, bandwidth)
    programs = [name for wid, name in PROGRAM_WORKLOADS.items() if not only or wid in only]
    aliases = {"jax": "jax jit", "mlx": "mlx compile", "compile": "torch.compile"}
    selected = None if not args.peers else {aliases.get(p.strip(), p.strip()) for p in args.peers.split(",")}
    program_results = []
    if programs:
        print("running ported programs ...", file=sys.stderr, flush=True)
        program_results += programs_train(peers, runs, programs, cold=not args.no_cold, frameworks=selected)
    if not only or "G1" in only:
        print("running G1 ...", file=sys.stderr, flush=True)
        program_results += programs_generate(peers, runs, frameworks=selected)
    if program_results:
        print_program_table(program_results)


if __name__ == "__main__":
    main()
