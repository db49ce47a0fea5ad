"""BEAM=N: choose a kernel's optimizations by timing candidates (CPU).

A beam search over optimization sequences: start from no optimizations and from the hand-coded heuristics'
choice, extend every sequence in the beam by each candidate optimization (codegen.cpu_opts.candidate_opts), time
every extension, keep the N fastest, and stop when a round finds nothing faster or the time per kernel
(MAX_SECONDS) is up.

Timing is the engine's: it passes `time_candidates`, which compiles and launches candidates on its device (the
kernel cache, tinyjit/kernel_cache.py, which also remembers the winner on disk). This module only decides what to
time and what wins.
"""
from __future__ import annotations

import math
import time
from typing import Callable

from tinyjit.ops import AstNode

from codegen.cpu_opts import candidate_opts, contraction_plan
from codegen.kernel import Kernel
from codegen.opts import KernelOptError, Opt

MAX_DEPTH = 6           # optimizations per sequence
TIMING_RUNS = 3         # a candidate's time is the fastest of this many launches
GIVE_UP_FACTOR = 3.0    # a candidate slower than this times the best so far is not launched again
MAX_SECONDS = 10.0      # search time per kernel: the best sequence found by then wins
MAX_UPCAST = 128        # elements in a register block

# (candidates, runs, give_up_after) -> seconds per candidate: the fastest of `runs` launches of its plan, stopping
# once a launch took more than give_up_after; math.inf for a sequence the code generator rejects
TimeCandidates = Callable[[list[tuple[Opt, ...]], int, float], list[float]]


def beam_search(ast: AstNode, width: int, threads: int, time_candidates: TimeCandidates) -> list[Opt]:
    """The fastest optimization sequence found for `ast` by a beam of `width` sequences, on a device splitting a
    kernel over `threads` threads (`time_candidates` is called with at most `threads` candidates at once, which it
    may compile in parallel)."""
    timings: dict[tuple[Opt, ...], float] = {}
    deadline = time.perf_counter() + MAX_SECONDS

    def time_all(candidates) -> None:
        todo = [c for c in dict.fromkeys(candidates) if c not in timings]
        for start in range(0, len(todo), max(threads, 1)):
            part = todo[start:start + max(threads, 1)]
            if time.perf_counter() >= deadline:
                seconds = [math.inf] * len(part)
            else:
                seconds = time_candidates(part, TIMING_RUNS, GIVE_UP_FACTOR * min(timings.values(), default=math.inf))
            timings.update(zip(part, seconds))

    def kernel_after(opts: tuple) -> Kernel:
        k = Kernel(ast)
        for opt in opts:
            k.apply_opt(opt)
        return k

    heuristic = []
    k = Kernel(ast)
    for opt in contraction_plan(k, threads):   # the heuristics' sequence, without the steps that do not apply
        try:
            k.apply_opt(opt)
            heuristic.append(opt)
        except KernelOptError:
            pass
    start = sorted({(), tuple(heuristic)}, key=len)
    time_all(start)
    beam = sorted(start, key=timings.__getitem__)[:width]
    best = beam[0]
    for _ in range(MAX_DEPTH):
        extensions = set()
        for opts in beam:
            for opt in candidate_opts(kernel_after(opts), MAX_UPCAST):
                try:
                    kernel_after(opts).apply_opt(opt)
                except KernelOptError:
                    continue
                extensions.add(opts + (opt,))
        if not extensions or time.perf_counter() > deadline:
            break
        time_all(extensions)
        beam = sorted(extensions, key=timings.__getitem__)[:width]
        if timings[beam[0]] >= timings[best]:
            break
        best = beam[0]
    return list(best)
