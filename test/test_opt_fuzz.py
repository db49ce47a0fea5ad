"""Optimizations never change results: random sequences of valid optimization choices (UPCAST, UNROLL, and the
CPU's SWAP, MERGE, SPLIT, PACK, STAGE) applied to every kernel of a set of op graphs, compared with the unoptimized
kernel (what NOOPT=1 runs). A sequence it finds wrong goes into the regression list at the end. (Runs of ~5000
random sequences found none so far; that list starts with hand-picked interactions that are easy to break.)"""
import random

import numpy as np
import pytest

from codegen.cpu_opts import candidate_opts
from codegen.kernel import Kernel, KernelOptError, Opt
from tinyjit import Tensor
from tinyjit.kernel_cache import compile_plan
from tinyjit.device import Buffer
from tinyjit.realize import run_schedule
from tinyjit.schedule import create_schedule

RNG = np.random.default_rng(0)


def rand(*shape):
    return Tensor(RNG.standard_normal(shape).astype(np.float32))


def _graphs():
    x, y = rand(12, 20), rand(12, 20)
    a, b = rand(24, 40), rand(40, 48)
    img, w = rand(2, 3, 9, 10), rand(8, 3, 3, 3)
    ints = Tensor(RNG.integers(-50, 50, (6, 16)).astype(np.int32))
    return {
        "elementwise": lambda: ((x * 1.5 + y).relu() * (x * 0.5).exp() - y),
        "sum_last": lambda: x.sum(-1),
        "sum_first": lambda: x.sum(0),
        "max_both": lambda: (x * y).max(),
        "sum_3d_middle": lambda: rand(4, 6, 8).sum(1),
        "matmul": lambda: a @ b,
        "matmul_transposed": lambda: a @ rand(48, 40).T,
        "batched_matmul": lambda: rand(3, 8, 12) @ rand(3, 12, 16),
        "matmul_fused": lambda: ((a * 2).relu() @ b + 1).relu(),
        "conv2d_padded": lambda: img.conv2d(w, padding=1).relu(),
        "conv2d_strided": lambda: img.conv2d(w, stride=2),
        "max_pool": lambda: img.max_pool2d(2),
        "avg_pool_overlap": lambda: img.avg_pool2d(3, stride=1),
        "softmax": lambda: x.softmax(-1),
        "padded_view": lambda: (x.pad(((1, 2), (0, 3))) * 2).sum(0),
        "strided_view": lambda: (rand(16, 24)[::2, 1::3] + 1).sum(1),
        "flip_permute": lambda: (x.flip(1).T @ y),
        "int_reduce": lambda: (ints * 3 - 1).sum(1),
        "bool_where": lambda: (x > y).where(x, y * 2).amax(1),
        # accumulators of two dtypes in one block, the epilogue reading one twice (staged by the LLVM renderer)
        "sum_and_count": lambda: x.sum(0) * x.sum(0) + (x > 0).long().sum(0) * x.sum(0),
    }


GRAPHS = _graphs()


def _random_opts(ast, rng: random.Random, steps: int) -> list[Opt]:
    """A sequence of opts each valid after the ones before it."""
    k, opts = Kernel(ast), []
    for _ in range(steps):
        choices = candidate_opts(k, max_upcast=64)
        if not choices:
            break
        opt = rng.choice(choices)
        try:
            k.apply_opt(opt)
        except KernelOptError:
            continue
        opts.append(opt)
    return opts


def _run(item, opts) -> np.ndarray:
    """The item's output computed by its plan under `opts` (the item's inputs are realized)."""
    buffers = [Buffer(item.output.device, item.output.size, item.output.dtype)] + [i.buffer for i in item.inputs]
    for kernel, bufs in compile_plan(item.output.device, item.ast, opts).bind(buffers):
        kernel(bufs)
    return buffers[0].numpy()


def _check(item, opts) -> None:
    expected, got = _run(item, []), _run(item, opts)
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * (np.abs(expected).max() + 1),
                                   err_msg=f"opts {opts}")
    else:
        np.testing.assert_array_equal(got, expected, err_msg=f"opts {opts}")


def _each_kernel(name):
    """Yield the graph's kernel items in order, realizing each (unoptimized) after the caller checked it."""
    out = GRAPHS[name]()
    for item in create_schedule([out.node]):
        if item.kind == "kernel" and item.output.size:
            yield item
        run_schedule([item])


@pytest.mark.parametrize("name", list(GRAPHS))
def test_random_optimizations_match_noopt(name):
    rng = random.Random(name)
    for item in _each_kernel(name):
        _check(item, None)   # the hand-coded heuristics
        for trial in range(4):
            _check(item, _random_opts(item.ast, rng, steps=2 + trial))


# ---- regressions (and hand-picked interactions): sequences pinned to the graph they exercise ----

@pytest.mark.parametrize("name, opts", [
    # a PACKed operand that is read again by a second load of the same buffer (the kernel keeps both)
    ("matmul_transposed", [Opt("PACK", 1, 0), Opt("PACK", 0, 0), Opt("UPCAST", 1, 8)]),
    # STAGE before an upcast: the staged layout follows the later split of the output axes
    ("conv2d_padded", [Opt("STAGE", 0, 0), Opt("UPCAST", 1, 8), Opt("SWAP", 0, 2), Opt("MERGE", 0, 0)]),
    # MERGE of a broadcast axis with a packed one stacks views in the main kernel
    ("batched_matmul", [Opt("PACK", 1, 0), Opt("MERGE", 0, 0), Opt("UPCAST", 0, 4)]),
    # the tiling of a big matmul: row chunks outside the packed B panels, row blocks of a chunk inside
    ("matmul", [Opt("UPCAST", 0, 4), Opt("UPCAST", 1, 16), Opt("PACK", 1, 0), Opt("SWAP", 0, 1), Opt("SPLIT", 1, 2),
                Opt("SWAP", 0, 1), Opt("MERGE", 0, 0)]),
    ("matmul_transposed", [Opt("PACK", 0, 0), Opt("SPLIT", 0, 4), Opt("UPCAST", 2, 8), Opt("SWAP", 0, 2)]),
    ("conv2d_padded", [Opt("UPCAST", 1, 8), Opt("DEPAD", 0, 0), Opt("SPLIT", 3, 5), Opt("SWAP", 0, 3)]),
])
def test_regressions(name, opts):
    for item in _each_kernel(name):
        k = Kernel(item.ast)
        valid = []
        for opt in opts:   # the sequence was found on this graph's reduce kernel; others skip what does not fit
            try:
                k.apply_opt(opt)
                valid.append(opt)
            except KernelOptError:
                pass
        _check(item, valid)
