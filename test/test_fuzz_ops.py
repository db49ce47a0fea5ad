"""CI part of the differential fuzzer (test/fuzz_ops.py): a fixed range of seeds on each test device (CPU and CL by
default), each case a random chain of ops run by tinyjit and by PyTorch and compared. A failing case is shrunk and
its reproducer printed in the assertion message. Long campaigns: `python test/fuzz_ops.py --help` (README).

KNOWN_FAILURES keeps kinds of faults that are filed but not fixed yet out of the generator for the CI seeds, so this
test passes while they are being fixed. Each entry names its issue item; empty it as the fixes land (the offline
campaign ignores it unless given --exclude-known). It is empty today.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import pytest

from fuzz_op_table import OPS
from fuzz_ops import reproducer, shrink
from fuzz_program import BuildError, Case, Failure, build, check, generate
from fuzz_support import DTYPES, SEMANTIC_DIFFERENCES, Ctx, index_src, random_index, torch_index


@dataclass(frozen=True)
class KnownFailure:
    item: str                                 # where the kind is filed
    op: str                                   # the op name an op passes to Ctx.skip
    applies: Callable[[Ctx, dict], bool]      # (ctx, the op's choices) -> leave this choice out
    devices: tuple = ()                       # only on these devices (all when empty)


KNOWN_FAILURES: tuple[KnownFailure, ...] = ()   # none today: an entry names the issue item of a fault not fixed yet


def known_failures_on(device: str):
    """The generator's exclusion callback for `device`: True for a choice a KNOWN_FAILURES entry covers."""
    def exclude(op: str, ctx: Ctx, details: dict) -> bool:
        return any(k.op == op and (not k.devices or device in k.devices) and k.applies(ctx, details)
                   for k in KNOWN_FAILURES)
    return exclude


# Seeds run in CI, in chunks so pytest-xdist can spread them; PoCL compiles are slower, so CL runs fewer.
CHUNKS = 8
SEEDS_PER_CHUNK = {"CPU": 7, "CL": 3}


def seeds(device: str, chunk: int) -> range:
    n = SEEDS_PER_CHUNK.get(device, SEEDS_PER_CHUNK["CL"])
    base = {"CPU": 0, "CL": 100_000}.get(device, 200_000)
    return range(base + chunk * n, base + (chunk + 1) * n)


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_fuzz(device, chunk):
    exclude = known_failures_on(device)
    failures, checked = [], 0
    for seed in seeds(device, chunk):
        case = generate(seed, exclude)
        try:
            failure, _ = check(case, device, exclude)
        except BuildError as e:   # generate() only returns cases that build
            failures.append(f"seed {seed}: the generated case does not build: {e}")
            continue
        checked += 1
        if failure is not None:
            small, small_failure = shrink(case, failure, device, exclude, budget=30)
            failures.append(f"seed {seed}: {failure.kind} mismatch ({failure.detail})\n"
                            f"{reproducer(small, device, small_failure, exclude)}")
    assert checked == len(seeds(device, chunk))
    assert not failures, "\n\n".join(failures)


# ---- the fuzzer's own parts, without tinyjit ----
def test_generator_reaches_every_op_dtype_and_edge_shape():
    """The CI seeds (with KNOWN_FAILURES left out) still cover every op, every dtype, 0-d, size-0 and size-1
    inputs, realizes part way, in-place updates and error-parity cases."""
    ops, dtypes_, shapes, realizes, invalid = set(), set(), set(), 0, 0
    all_seeds = [s for c in range(CHUNKS) for d in ("CPU", "CL") for s in seeds(d, c)]
    for seed in all_seeds:
        case = generate(seed, known_failures_on("CPU"))
        ops.update(s.op for s in case.steps)
        realizes += sum(s.realize for s in case.steps)
        invalid += any(s.invalid for s in case.steps)
        for a in case.inputs:
            dtypes_.add(a.dtype)
            shapes.update({"0-d"} if not a.shape else {"size-0"} if 0 in a.shape else
                          {"size-1"} if 1 in a.shape else set())
    assert ops == set(OPS), f"ops never generated: {set(OPS) - ops}"
    assert dtypes_ == set(DTYPES)
    assert shapes == {"0-d", "size-0", "size-1"}
    assert realizes and invalid


def test_cases_are_reproducible():
    for seed in (3, 17, 40):
        a, b = generate(seed), generate(seed)
        assert a == b
        assert build(a).lines == build(b).lines


def test_negative_step_slices_in_torch_match_numpy():
    """PyTorch has no negative steps: the PyTorch program flips, then slices forward (torch_index)."""
    import numpy as np
    rng = random.Random(0)
    for _ in range(300):
        shape = tuple(rng.randint(0, 5) for _ in range(rng.randint(1, 3)))
        items = random_index(rng, shape)
        arr = np.arange(int(np.prod(shape))).reshape(shape)
        try:
            expected = eval(f"arr[{index_src(items)}]")
        except IndexError:
            continue
        flips, pt_items = torch_index(items, shape)
        flipped = np.flip(arr, flips) if flips else arr   # noqa: F841 (read by the eval below)
        np.testing.assert_array_equal(eval(f"flipped[{index_src(pt_items)}]"), expected)


def test_shrink_keeps_the_failure_and_drops_the_rest(monkeypatch):
    """With a stand-in check that fails whenever a `cumsum` step is present, shrinking ends at one cumsum step on a
    small input."""
    import fuzz_ops
    seed = next(s for s in range(500) if any(st.op == "cumsum" for st in generate(s).steps)
                and len(generate(s).steps) >= 4)
    case = generate(seed)

    def fake_check(c: Case, device, exclude):
        program = build(c, exclude)
        fails = any(name == "cumsum" for name in program.op_names)
        return (Failure("value", program.output, "stand-in") if fails else None), program

    monkeypatch.setattr(fuzz_ops, "check", fake_check)
    small, failure = shrink(case, Failure("value", "", "stand-in"), "CPU", budget=200)
    assert [s.op for s in small.steps] == ["cumsum"]
    assert failure.kind == "value"
    assert all(len(a.shape) <= len(b.shape) for a, b in zip(small.inputs, case.inputs))


def test_semantic_differences_are_documented():
    for d in SEMANTIC_DIFFERENCES:
        assert d.what and d.reason and d.handling
