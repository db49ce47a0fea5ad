"""Differential fuzzer against PyTorch: the command line, shrinking, reproducers and offline campaigns. The cases
and their comparison are in test/fuzz_program.py, the ops in test/fuzz_op_table.py; CI runs test/test_fuzz_ops.py.

On a failure the case is shrunk (`shrink`: cut the chain, drop steps, realizes and inputs, make inputs smaller, while
it still fails the same way) and printed as a short Python snippet (`reproducer`).

Offline campaigns (see the README):

    python test/fuzz_ops.py --device CPU --cases 20000 --log fuzz-cpu.jsonl
    python test/fuzz_ops.py --device CL --cases 2000 --start 100000 --log fuzz-cl.jsonl
    python test/fuzz_ops.py --summarize fuzz-cpu.jsonl fuzz-cl.jsonl       # failures grouped by kind
    python test/fuzz_ops.py --device CPU --seed 123                         # one case, shrunk, printed

Each case runs in a worker process, so a crash (SIGSEGV, SIGFPE) or a hang is recorded and the campaign goes on.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import replace
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from fuzz_program import (BuildError, Case, Exclude, Failure, Step, _grad_lines, _grad_outputs,  # noqa: E402
                          _tj_src, _torch_src, build, check, generate, no_exclusions, run_torch)
from fuzz_support import Aux  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------
# shrinking and reporting
# ---------------------------------------------------------------------------------------------------------------
def _drop_step(case: Case, j: int) -> Case:
    n_in = len(case.inputs)
    steps = []
    for k, s in enumerate(case.steps):
        if k == j:
            continue
        arg = s.arg
        if arg == n_in + j:
            arg = case.steps[j].arg
        elif arg > n_in + j:
            arg -= 1
        steps.append(replace(s, arg=arg))
    return replace(case, steps=tuple(steps))


def _smaller_shapes(shape: tuple) -> list[tuple]:
    out = []
    for i, s in enumerate(shape):
        if s > 1:
            out.append(shape[:i] + (1,) + shape[i + 1:])
            if s > 3:
                out.append(shape[:i] + (s // 2,) + shape[i + 1:])
        out.append(shape[:i] + shape[i + 1:])
    return out


def shrink_candidates(case: Case):
    n = len(case.steps)
    for k in range(1, n):                               # a shorter chain
        yield replace(case, steps=case.steps[:k])
    for j in range(n - 1, -1, -1):                      # one step fewer
        yield _drop_step(case, j)
    for j, s in enumerate(case.steps):                  # no realize
        if s.realize:
            yield replace(case, steps=case.steps[:j] + (replace(s, realize=False),) + case.steps[j + 1:])
    if case.grad:
        yield replace(case, grad=False)
    for i in range(len(case.inputs) - 1, -1, -1):      # one input fewer (when no step applies to it)
        if len(case.inputs) > 1 and all(s.arg != i for s in case.steps):
            steps = tuple(replace(s, arg=s.arg - (s.arg > i)) for s in case.steps)
            yield replace(case, inputs=case.inputs[:i] + case.inputs[i + 1:], steps=steps)
    for i, a in enumerate(case.inputs):                 # smaller inputs
        for shape in _smaller_shapes(a.shape):
            yield replace(case, inputs=case.inputs[:i] + (replace(a, shape=shape),) + case.inputs[i + 1:])
        if a.requires_grad and not case.grad:
            yield replace(case, inputs=case.inputs[:i] + (replace(a, requires_grad=False),) + case.inputs[i + 1:])


def shrink(case: Case, failure: Failure, device: str, exclude: Exclude = no_exclusions,
           budget: int = 40) -> tuple[Case, Failure]:
    """Greedily the smallest variant of `case` that still fails with the same kind of failure."""
    tried = 0
    progress = True
    while progress and tried < budget:
        progress = False
        for cand in shrink_candidates(case):
            if tried >= budget:
                break
            try:
                build(cand, exclude)   # cheap (PyTorch only): an invalid candidate costs no budget
            except BuildError:
                continue
            tried += 1
            f, _ = check(cand, device, exclude)
            if f is not None and f.signature() == failure.signature():
                case, failure, progress = cand, f, True
                break
    return case, failure


def reproducer(case: Case, device: str, failure: Optional[Failure] = None, exclude: Exclude = no_exclusions) -> str:
    """A runnable tinyjit snippet of the case, with PyTorch's program under it as comments."""
    program = build(case, exclude)
    head = [f"# fuzz case seed={case.seed} device={device}"]
    if failure and failure.kind == "crash":
        head.append(f"# crash: {failure.detail}")
    elif failure:
        head.append(f"# {failure.kind} mismatch in {failure.where}: {failure.detail}")
    if program.error_step is not None:
        head.append(f"# PyTorch raises at the last step: {program.torch_error}")
    tj = ["import numpy as np", "from tinyjit import Tensor, dtypes", f"DEVICE = {device!r}"]
    tj += [_tj_src(line) for line, _, _ in program.lines if line is not None]
    pt = ["import numpy as np, torch", "import torch.nn.functional as F"]
    pt += [_torch_src(line, False) for _, line, _ in program.lines if line is not None]
    reads = [f"print({name}.numpy())" for name in program.compared]
    grad_outputs = _grad_outputs(run_torch(program), program) if program.error_step is None else []
    if case.grad and grad_outputs:
        grads = [f"print({a.name}.grad.numpy() if {a.name}.grad is not None else None)" for a in program.inputs
                 if a.requires_grad]
        if grads:
            tj += _grad_lines(program, "tj", grad_outputs)
            pt += [_torch_src(line, False) for line in _grad_lines(program, "torch", grad_outputs)]
            reads += grads
    return "\n".join(head + tj + reads + ["# --- PyTorch ---"] + ["# " + line for line in pt])


def case_summary(case: Case, exclude: Exclude = no_exclusions) -> dict:
    try:
        program = build(case, exclude)
    except BuildError:
        return {}
    return {"ops": program.op_names, "dtypes": [a.dtype for a in case.inputs],
            "shapes": [list(a.shape) for a in case.inputs], "output_dtype": program.dtypes.get(program.output)}


def run_one(seed: int, device: str, exclude: Exclude = no_exclusions, do_shrink: bool = True) -> dict:
    """Check the case of `seed`; a failing one is shrunk. A JSON-able record."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    case = generate(seed, exclude)
    record = {"seed": seed, "device": device, "n_steps": len(case.steps)}
    try:
        failure, program = check(case, device, exclude)
    except BuildError as e:
        record.update(status="invalid", detail=str(e))
        return record
    except Exception:
        record.update(status="harness-error", detail=traceback.format_exc()[-2000:])
        return record
    record["ops"] = program.op_names
    if failure is None:
        record.update(status="pass", seconds=round(time.perf_counter() - t0, 2),
                      cpu_seconds=round(time.process_time() - cpu0, 2))
        return record
    small, small_failure = shrink(case, failure, device, exclude) if do_shrink else (case, failure)
    record.update(status="fail", kind=small_failure.kind, where=small_failure.where, detail=small_failure.detail,
                  original=failure.detail, shrunk=case_summary(small, exclude),
                  reproducer=reproducer(small, device, small_failure, exclude),
                  seconds=round(time.perf_counter() - t0, 2), cpu_seconds=round(time.process_time() - cpu0, 2))
    return record


# ---------------------------------------------------------------------------------------------------------------
# the offline campaign: a worker process per device, restarted after a crash
# ---------------------------------------------------------------------------------------------------------------
def _worker(device: str, exclude_known: bool, do_shrink: bool) -> None:
    import faulthandler
    exclude = _known_exclusions(device) if exclude_known else no_exclusions
    for line in sys.stdin:
        seed, timeout = line.split()
        # a hang prints every thread's stack to stderr before the parent kills the worker
        faulthandler.dump_traceback_later(max(float(timeout) - 5, 1), exit=False)
        record = run_one(int(seed), device, exclude, do_shrink)
        faulthandler.cancel_dump_traceback_later()
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


def _known_exclusions(device: str) -> Exclude:
    from test_fuzz_ops import known_failures_on
    return known_failures_on(device)


class WorkerPool:
    """One worker subprocess fed seeds on stdin; a dead or hung worker is reported for its seed and restarted."""

    def __init__(self, device: str, exclude_known: bool, do_shrink: bool, timeout: float):
        self.args = [sys.executable, os.path.abspath(__file__), "--worker", "--device", device]
        if exclude_known:
            self.args.append("--exclude-known")
        if not do_shrink:
            self.args.append("--no-shrink")
        self.timeout = timeout
        self.proc = None

    def _start(self):
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def run(self, seed: int) -> dict:
        import select
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(f"{seed} {self.timeout}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        if ready:   # end of file: the worker is exiting
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            status, detail = "hang", f"no result in {self.timeout:.0f} s"
        else:
            status, detail = "crash", f"worker died with exit code {self.proc.returncode}"
        self.proc.wait()
        self.proc = None
        return {"seed": seed, "status": status, "detail": detail}

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:   # still busy with a slow case: the campaign has ended anyway
                self.proc.kill()
                self.proc.wait()


def case_to_json(case: Case) -> str:
    return json.dumps({"seed": case.seed, "grad": case.grad, "inputs": [vars(a) for a in case.inputs],
                       "steps": [vars(s) for s in case.steps]})


def case_from_json(text: str) -> Case:
    d = json.loads(text)
    inputs = tuple(Aux(**{**a, "shape": tuple(a["shape"]), "dist": tuple(
        tuple(v) if isinstance(v, list) else v for v in a["dist"])}) for a in d["inputs"])
    return Case(d["seed"], inputs, tuple(Step(**s) for s in d["steps"]), d["grad"])


def crashes(case: Case, device: str, exclude_known: bool, timeout: float = 300) -> bool:
    """Does checking `case` kill the process (a signal, or a hang)? Run in a fresh subprocess."""
    args = [sys.executable, os.path.abspath(__file__), "--device", device, "--case-json", case_to_json(case)]
    if exclude_known:
        args.append("--exclude-known")
    try:
        proc = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return True
    return proc.returncode < 0


def shrink_crash(seed: int, device: str, exclude_known: bool, budget: int = 25) -> dict:
    """The smallest variant of a crashing case that still crashes, each candidate run in its own process."""
    exclude = _known_exclusions(device) if exclude_known else no_exclusions
    case = generate(seed, exclude)
    tried, progress = 0, True
    while progress and tried < budget:
        progress = False
        for cand in shrink_candidates(case):
            if tried >= budget:
                break
            try:
                build(cand, exclude)
            except BuildError:
                continue
            tried += 1
            if crashes(cand, device, exclude_known):
                case, progress = cand, True
                break
    return {"reproducer": reproducer(case, device, Failure("crash", "", "the process dies (a signal)"), exclude),
            "shrunk": case_summary(case, exclude)}


def campaign(device: str, start: int, cases: int, log: Optional[str], exclude_known: bool, do_shrink: bool,
             timeout: float, max_seconds: Optional[float]) -> dict:
    pool = WorkerPool(device, exclude_known, do_shrink, timeout)
    counts: dict[str, int] = {}
    t0 = time.time()
    out = open(log, "a") if log else None
    try:
        for seed in range(start, start + cases):
            if max_seconds is not None and time.time() - t0 > max_seconds:
                break
            record = pool.run(seed)
            record.setdefault("device", device)
            if record["status"] == "crash" and do_shrink:
                record.update(shrink_crash(seed, device, exclude_known))
            counts[record["status"]] = counts.get(record["status"], 0) + 1
            if out:
                out.write(json.dumps(record) + "\n")
                out.flush()
            if record["status"] not in ("pass", "invalid"):
                print(f"seed {seed}: {record['status']} {record.get('kind', '')} {record.get('detail', '')[:160]}",
                      flush=True)
    finally:
        pool.close()
        if out:
            out.close()
    counts["seconds"] = round(time.time() - t0)
    print(json.dumps(counts), flush=True)
    return counts


def summarize(paths: list[str]) -> None:
    """Group the failures of campaign logs by kind and shrunk op sequence (one line per group, smallest seed
    first), and count the cases run per device."""
    runs: dict[str, dict[str, int]] = {}
    groups: dict[tuple, list[dict]] = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                per_device = runs.setdefault(r.get("device", "?"), {})
                per_device[r["status"]] = per_device.get(r["status"], 0) + 1
                for key in ("seconds", "cpu_seconds"):
                    per_device[key] = round(per_device.get(key, 0) + r.get(key, 0))
                if r["status"] in ("pass", "invalid"):
                    continue
                shrunk = r.get("shrunk") or {}
                key = (r["status"], r.get("kind", ""), tuple(shrunk.get("ops", r.get("ops", []))))
                groups.setdefault(key, []).append(r)
    print(json.dumps(runs))
    for (status, kind, ops), records in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        first = min(records, key=lambda r: r["seed"])
        devices = sorted({r.get("device", "?") for r in records})
        print(f"{len(records):5d}  {status}/{kind}  {' '.join(ops)}  [{','.join(devices)}] seed {first['seed']}: "
              f"{first.get('detail', '')[:150]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="CPU")
    p.add_argument("--cases", type=int, default=100)
    p.add_argument("--start", type=int, default=0, help="first seed")
    p.add_argument("--seed", type=int, help="run this one case and print it")
    p.add_argument("--log", help="append one JSON line per case here")
    p.add_argument("--exclude-known", action="store_true", help="leave out test_fuzz_ops.KNOWN_FAILURES, as CI does")
    p.add_argument("--no-shrink", action="store_true")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per case before it counts as a hang")
    p.add_argument("--max-seconds", type=float, help="stop starting new cases after this long")
    p.add_argument("--summarize", nargs="+", metavar="LOG", help="group the failures of campaign logs and exit")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case-json", help=argparse.SUPPRESS)   # check one serialized case (crash shrinking)
    args = p.parse_args(argv)
    if args.case_json:
        exclude = _known_exclusions(args.device) if args.exclude_known else no_exclusions
        failure, _ = check(case_from_json(args.case_json), args.device, exclude)
        return 0 if failure is None else 1
    if args.summarize:
        summarize(args.summarize)
        return 0
    if args.worker:
        _worker(args.device, args.exclude_known, not args.no_shrink)
        return 0
    if args.seed is not None:
        exclude = _known_exclusions(args.device) if args.exclude_known else no_exclusions
        record = run_one(args.seed, args.device, exclude, not args.no_shrink)
        if record.get("status") == "pass":
            print(reproducer(generate(args.seed, exclude), args.device, None, exclude))
        print(json.dumps({k: v for k, v in record.items() if k != "reproducer"}, indent=1))
        if "reproducer" in record:
            print(record["reproducer"])
        return 0 if record["status"] in ("pass", "invalid") else 1
    counts = campaign(args.device, args.start, args.cases, args.log, args.exclude_known, not args.no_shrink,
                      args.timeout, args.max_seconds)
    return 0 if set(counts) <= {"pass", "invalid", "seconds"} else 1


if __name__ == "__main__":
    sys.exit(main())
