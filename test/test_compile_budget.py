"""Compile time is bounded by the size of the code each kernel becomes: the CPU planner's register blocks stay
within the vector registers, and row reductions (a softmax's max over masked scores, a mean over x + positions)
get no block at all. Tests count linearized ops and block elements, never seconds; values are checked against
PyTorch."""
import math
import re

import numpy as np
import pytest
import torch

import codegen.copies
import codegen.cpu_opts
import codegen.linearizer
from codegen.cpu_opts import MAX_ACCUMULATOR_REGISTERS, contraction_plan, strided_reduce_plan
from codegen.kernel import Kernel
from codegen.linearizer import NO_VECTORIZE_SUFFIX
from codegen.llvm_ops import host_vector_bits
from codegen.opts import Opt, OptKind
from codegen.optimizer import optimize
from codegen.uops import U
from tinyjit import Device, Tensor, dtypes
from tinyjit.device import Buffer
from tinyjit.helpers import prod
from tinyjit.kernel_cache import compile_plan
from tinyjit.ops import Op
from tinyjit.schedule import create_schedule

# what the code of one kernel may grow to at the default optimization (the GPT step's largest is ~2,700 ops;
# a 512-element block of a masked max was 14,000 and took LLVM 15-37 CPU seconds)
MAX_KERNEL_UOPS = 4000
MAX_BLOCK = MAX_ACCUMULATOR_REGISTERS * host_vector_bits() // 32   # float32 accumulators in the vector registers


def _kernel_sizes(*tensors: Tensor) -> list[tuple[int, int, str]]:
    """(linearized ops of the kernel and its copy kernels, register block elements, name) per scheduled kernel."""
    renderer = Device.renderer("CPU")
    out = []
    for item in create_schedule([t.node for t in tensors]):
        if item.kind != "kernel":
            continue
        k = Kernel(item.ast)
        optimize(k, renderer)
        program = renderer.linearize(k)
        uops = len(program.uops) + sum(len(renderer.linearize(Kernel(ast)).uops)
                                       for ast, _ in k.copies.before + k.copies.after)
        out.append((uops, prod(k.full_shape[k.first_upcast:]), program.name))
    return out


def _masked_scores(lib, B=8, H=4, T=64, seed=0):
    s = np.random.default_rng(seed).standard_normal((B, H, T, T)).astype(np.float32)
    if lib is torch:
        scores = torch.tensor(s, requires_grad=True)
        mask = torch.arange(T).reshape(T, 1) >= torch.arange(T).reshape(1, T)
        return scores, torch.where(mask, scores, -math.inf)
    scores = Tensor(s, requires_grad=True)
    mask = Tensor.arange(T).reshape(T, 1) >= Tensor.arange(T).reshape(1, T)
    return scores, mask.where(scores, -math.inf)


def test_masked_row_max_is_not_register_blocked():
    """The causal softmax's row max reads every score once: no block (it was 8 x 64 accumulators, because a bool
    mask operand made 32-lane 'vectors')."""
    _, masked = _masked_scores(Tensor)
    row_max = masked.amax(-1)
    sizes = _kernel_sizes(row_max)
    assert len(sizes) == 1 and sizes[0][1] == 1, sizes
    item = create_schedule([row_max.node])[0]
    assert contraction_plan(Kernel(item.ast)) == []
    _, masked_t = _masked_scores(torch)
    np.testing.assert_allclose(row_max.numpy(), masked_t.amax(-1).detach().numpy(), rtol=1e-6)


def test_attention_step_kernels_stay_small():
    """Every kernel of a causal attention block's forward and backward (layer norm, projections, masked softmax,
    weighted values) stays within the code budget and the register budget; gradients match PyTorch."""
    rng = np.random.default_rng(1)
    B, T, C, H = 8, 64, 32, 4   # big enough to be planned as the GPT step is (packing starts at 64k elements)
    xn = rng.standard_normal((B, T, C)).astype(np.float32)
    wn = (rng.standard_normal((3 * C, C)) * 0.2).astype(np.float32)

    def loss_of(lib, x, w):
        F = torch.nn.functional if lib is torch else __import__("tinyjit").nn.functional
        h = F.layer_norm(x + x.mean(1, keepdim=True), (C,))
        q, k, v = F.linear(h, w).split(C, -1)
        q, k, v = (t.reshape(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return (y.transpose(1, 2).reshape(B, T, C) ** 2).mean()

    x, w = Tensor(xn), Tensor(wn, requires_grad=True)
    loss_of(Tensor, x, w).backward()
    sizes = _kernel_sizes(w.grad)
    assert max(u for u, _, _ in sizes) <= MAX_KERNEL_UOPS, sorted(sizes)[-3:]
    assert max(b for _, b, _ in sizes) <= MAX_BLOCK, sorted(sizes, key=lambda s: s[1])[-3:]
    wt = torch.tensor(wn, requires_grad=True)
    loss_of(torch, torch.tensor(xn), wt).backward()
    np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("vector_bits, registers, n, rows, width", [
    (256, 16, 1024, 4, 16),   # AVX2: 4 x 2 ymm accumulators (8 x 2 with the 2 B vectors and a broadcast spilled)
    (256, 16, 768, 6, 16),    # AVX2 where 6 divides the rows: 12 accumulators + 2 B vectors + 1 broadcast
    (512, 32, 1024, 8, 32),   # AVX-512: 8 x 2 zmm accumulators
    (128, 16, 1024, 4, 8),    # SSE: 4 x 2 xmm
    (128, 32, 1024, 8, 8),    # AArch64 NEON: 32 registers of 128 bits
])
def test_matmul_register_block_fits_the_targets_vector_registers(monkeypatch, vector_bits, registers, n, rows, width):
    """The register block of a float32 matmul follows the vector width and register count of the CPU: its
    accumulators, the B vectors loaded per reduce step and the broadcast element of A fit in the registers."""
    monkeypatch.setattr(codegen.cpu_opts, "host_vector_bits", lambda: vector_bits)
    monkeypatch.setattr(codegen.cpu_opts, "host_vector_registers", lambda: registers)
    a, b = Tensor(np.ones((n, 64), np.float32)), Tensor(np.ones((64, n), np.float32))
    (item,) = [i for i in create_schedule([(a @ b).node]) if i.kind == "kernel"]
    upcasts = [o.amount for o in contraction_plan(Kernel(item.ast), threads=2) if o.kind == OptKind.UPCAST]
    assert upcasts == [rows, width]
    lanes = vector_bits // 32
    b_vectors = width // lanes
    assert rows * b_vectors + b_vectors + 1 <= registers


def test_matmul_with_a_big_row_operand_is_tiled(monkeypatch):
    """When A (the operand broadcast along B's columns) is bigger than ROW_CHUNK_BYTES, the plan tiles its rows:
    SPLIT the row blocks into chunks and move the chunks outside the B panels, so a chunk of A stays in cache
    while every panel passes by; a small A keeps the plain order. (Values of the tiled kernel: test_opt_fuzz.)"""
    a, b = Tensor(np.ones((264, 72), np.float32)), Tensor(np.ones((72, 48), np.float32))
    (item,) = [i for i in create_schedule([(a @ b).node]) if i.kind == "kernel"]
    assert OptKind.SPLIT not in [o.kind for o in contraction_plan(Kernel(item.ast), threads=2)]
    monkeypatch.setattr(codegen.cpu_opts, "ROW_CHUNK_BYTES", 1 << 13)
    plan = contraction_plan(Kernel(item.ast), threads=2)
    kinds = [o.kind for o in plan]
    assert OptKind.SPLIT in kinds and kinds[kinds.index(OptKind.SPLIT) + 1] == OptKind.SWAP, plan
    k = Kernel(item.ast)
    for opt in plan:
        k.apply_opt(opt)
    upcast = prod(k.full_shape[k.first_upcast:])
    assert prod(k.full_shape[:k.first_reduce]) * upcast == 264 * 48   # every output once


def _optimized_ir_size(tensor: Tensor) -> tuple[int, bool, str]:
    """(LLVM instructions after optimization, whether the loops carry the no-vectorize mark, name) of the one
    kernel that computes `tensor`."""
    renderer = Device.renderer("CPU")
    items = [item for item in create_schedule([tensor.node]) if item.kind == "kernel"]
    assert len(items) == 1, [item.kind for item in items]
    k = Kernel(items[0].ast)
    optimize(k, renderer, Device["CPU"].threads)
    assert not k.copies.before and not k.copies.after
    program = renderer.linearize(k)
    _, source = renderer.render(program.name, program.uops)
    optimized = Device["CPU"].debug_listing(source)
    return sum(1 for line in optimized.splitlines() if line.startswith("  ")), NO_VECTORIZE_SUFFIX in source, \
        program.name


def _transposed_relu_gradient(lib, shape):
    """where(x.T + b < 0, g.T, 0), the pack copy of a small GRU gradient: a short innermost loop, little math."""
    rng = np.random.default_rng(2)
    x, g = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    b = rng.standard_normal((shape[1], shape[2])).astype(np.float32)
    x, g, b = (lib.tensor(v) if lib is torch else Tensor(v) for v in (x, g, b))
    pre = x.permute(1, 0, 2) + b.reshape(shape[1], 1, shape[2])
    return torch.where(pre < 0, g.permute(1, 0, 2), 0.0) if lib is torch else (pre < 0).where(g.permute(1, 0, 2), 0.0)


def test_small_light_kernel_is_not_loop_vectorized():
    """A 2,048-element kernel with an 8-long innermost loop and three ALU ops: LLVM unrolled the short loop and
    vectorized the one around it into ~630 instructions (0.1-0.3 CPU s of a cold step, dozens of such copies per
    GRU step) for no speed; its loops are marked scalar and it stays ~100 instructions."""
    out = _transposed_relu_gradient(Tensor, (32, 8, 8))
    instructions, marked, name = _optimized_ir_size(out)
    assert marked and instructions <= 250, (name, instructions)
    np.testing.assert_array_equal(out.numpy(), _transposed_relu_gradient(torch, (32, 8, 8)).numpy())


def test_big_or_heavy_kernels_stay_loop_vectorized():
    """The scalar mark on every loop is for small, light kernels only: the same copy 128x larger keeps LLVM's
    loop vectorizer on its innermost loops (only the loop around the short one, which it would gather, is marked:
    101 instructions instead of 635, and it ran ~1.6x faster so), and a small kernel with an exp per element,
    whose short loop LLVM does not unroll, keeps it everywhere."""
    big = _transposed_relu_gradient(Tensor, (512, 64, 8))
    renderer = Device.renderer("CPU")
    (item,) = [item for item in create_schedule([big.node]) if item.kind == "kernel"]
    program = renderer.linearize(Kernel(item.ast))
    loops = [u.arg for u in program.uops if u.uop == U.LOOP]
    assert [name.endswith(NO_VECTORIZE_SUFFIX) for name in loops] == [False, True, False], loops
    np.testing.assert_array_equal(big.numpy(), _transposed_relu_gradient(torch, (512, 64, 8)).numpy())
    x = np.random.default_rng(3).standard_normal((32, 8, 8)).astype(np.float32)
    heavy = Tensor(x).permute(1, 0, 2).sigmoid().tanh()
    (item,) = [item for item in create_schedule([heavy.node]) if item.kind == "kernel"]
    k = Kernel(item.ast)
    optimize(k, Device.renderer("CPU"))   # (AVX-512: a block of 8 x 2 elements, one vector, for SLP)
    assert k.upcasted or not _optimized_ir_size(heavy)[1]
    optimized = Device["CPU"].debug_listing(compile_plan("CPU", item.ast).kernel.source)
    assert re.search(rf"<{host_vector_bits() // 32} x float>", optimized), "the heavy kernel was not vectorized"
    np.testing.assert_allclose(heavy.numpy(), torch.tensor(x).permute(1, 0, 2).sigmoid().tanh().numpy(), rtol=1e-5,
                               atol=1e-6)


def _weight_gradient(lib, seed=4):
    """A layer norm weight gradient's shape: sum over batch and time of g * (x - mean) * rstd, 64 columns. The
    inputs are contiguous along the columns, the mean and rstd along time (a strided reduce for both)."""
    rng = np.random.default_rng(seed)
    x, g = (rng.standard_normal((32, 64, 64)).astype(np.float32) for _ in range(2))
    mean = rng.standard_normal((32, 64, 1)).astype(np.float32)
    var = rng.random((32, 64, 1)).astype(np.float32)
    x, g, mean, var = (lib.tensor(v) if lib is torch else Tensor(v) for v in (x, g, mean, var))
    return (g * ((x - mean) / (var + 1e-5).sqrt())).sum((0, 1))


def test_strided_reduce_is_upcast_across_its_outputs():
    """A reduce whose innermost reduce axis is strided for its loads but whose output axis is contiguous for them
    (the GPT step's layer norm weight gradients) gets one vector of outputs per thread, so every load is a whole
    vector or a broadcast: LLVM had vectorized the strided reduce loop with gathers (~580 instructions here, ~2,000 and
    0.7-1.1 CPU s per kernel in the GPT step, where it also ran 1-20x slower)."""
    out = _weight_gradient(Tensor)
    (item,) = [i for i in create_schedule([out.node]) if i.kind == "kernel"]
    lanes = host_vector_bits() // 32
    assert strided_reduce_plan(Kernel(item.ast)) == [Opt(OptKind.UPCAST, 0, lanes)]
    instructions, _, name = _optimized_ir_size(out)
    assert instructions <= 300, (name, instructions)   # 582 with the gathers
    np.testing.assert_allclose(out.numpy(), _weight_gradient(torch).numpy(), rtol=1e-4, atol=1e-3)


def test_a_reduce_the_same_along_an_output_axis_computes_its_body_once_per_block():
    """The weight gradient of a zero initial state (an LSTM's h0), sum over the batch of g[b, j] * 0 for every column
    k: no input varies along k, and each of the 200 columns computed the gelu-like body again (P4: 2.8 ms a step).
    The axis is upcast, so the body (one exp here) is computed once per block of columns; values, NaN from 0 * inf
    included, as numpy's."""
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((20, 800)).astype(np.float32), rng.standard_normal((20, 800)).astype(np.float32)
    a[3, 7] = np.inf   # 0 * (something infinite) is NaN for the whole column j = 7, as in numpy and torch
    at, bt = Tensor(a), Tensor(b)
    out = ((at > 0).where(at, -at) * bt + at.sigmoid() * 0.5).T @ Tensor.zeros(20, 200)
    (item,) = [i for i in create_schedule([out.node]) if i.kind == "kernel"]
    k = Kernel(item.ast)
    plan = codegen.cpu_opts.invariant_axis_plan(k)
    assert plan == [Opt(OptKind.UPCAST, 1, 25)], plan
    for opt in plan:
        k.apply_opt(opt)
    program = Device.renderer("CPU").linearize(k)
    assert sum(1 for u in program.uops if u.uop == U.ALU and u.arg == Op.EXP2) == 1
    with np.errstate(invalid="ignore", over="ignore"):
        expected = (np.where(a > 0, a, -a) * b + 0.5 / (1 + np.exp(-a))).T @ np.zeros((20, 200), np.float32)
    np.testing.assert_array_equal(out.numpy(), expected)
    # an axis some input varies along is not upcast this way: the plain matmul keeps its contraction plan
    assert codegen.cpu_opts.invariant_axis_plan(Kernel(create_schedule([(at.T @ bt[:, :200]).node])[-1].ast)) == []


def test_reduces_read_in_whole_vectors_are_not_upcast():
    """The upcast is only for strided reduces: a row sum (contiguous along the reduce) keeps its plain loop (the
    loop vectorizer reads it in whole vectors), and so do reduces with a load strided along the output (the block
    would gather it)."""
    x = Tensor(np.random.default_rng(5).standard_normal((64, 256)).astype(np.float32))
    y = Tensor(np.random.default_rng(6).standard_normal((64, 64, 64)).astype(np.float32))
    for out in (x.sum(1), (x + x.T.contiguous().T).sum(0), (y * y.permute(0, 2, 1)).sum(0)):
        for item in create_schedule([out.node]):
            if item.kind == "kernel":
                assert strided_reduce_plan(Kernel(item.ast)) == [], item.ast.pretty()


def _panel_pack(lib, rows=64, columns=2560, panel=10):
    """The LSTM's 10-row panel pack of its output layer's gradient: softmax' - one_hot, scaled per row, laid out
    as panels of `panel` columns (columns / panel panels, each rows x panel)."""
    rng = np.random.default_rng(7)
    a, x = (rng.standard_normal((rows, columns)).astype(np.float32) for _ in range(2))
    b = rng.standard_normal((1, columns)).astype(np.float32)
    c, p, q = (rng.standard_normal((rows, 1)).astype(np.float32) for _ in range(3))
    a, x, b, c, p, q = (lib.tensor(v) if lib is torch else Tensor(v) for v in (a, x, b, c, p, q))
    hit = c != x + b
    scaled = (torch.where(hit, 0.0, 1.0) if lib is torch else hit.where(0.0, 1.0)) * (p / q)
    return (a + scaled).reshape(rows, columns // panel, panel).permute(1, 0, 2)


def test_big_light_kernel_without_whole_vectors_is_not_loop_vectorized():
    """Past 2^17 iterations a light elementwise kernel stays loop-vectorized only where its short innermost loop
    is whole vectors. A 10-wide panel pack (the LSTM's 10-row register block packs its 10,000-word output gradient
    so) was unrolled and vectorized across the loop around it with gathers: ~1,100 instructions, 0.4-0.6 CPU s,
    and no faster. Reduces keep the vectorizer (a 2x2 max pool's 4-long window ran 1.5-3x slower scalar)."""
    panel = _panel_pack(Tensor)
    instructions, marked, name = _optimized_ir_size(panel)
    assert marked and instructions <= 300, (name, instructions)
    np.testing.assert_allclose(panel.numpy(), _panel_pack(torch).numpy(), rtol=1e-6)
    x = np.random.default_rng(7).standard_normal((65536, 4)).astype(np.float32)
    pooled = Tensor(x).amax(1)
    assert not _optimized_ir_size(pooled)[1]
    np.testing.assert_array_equal(pooled.numpy(), x.max(1))


def _exp(v):
    return v.exp() if isinstance(v, Tensor) else np.exp(v)


# epilogues of a product p, the same for tinyjit and numpy (c a tensor of p's shape, b a bias)
_EPILOGUES = {"plain": lambda p, c, b: p, "+ c": lambda p, c, b: p + c, "* c": lambda p, c, b: p * c,
              "c +": lambda p, c, b: c + p, "+ bias": lambda p, c, b: p + b,
              # a gelu gradient's shape: the incoming gradient p read twice, at different depths
              "p read twice": lambda p, c, b: (0.5 * (c + b)) * p * c * 1.128 * 0.707 + 0.5 * (p * (1 + c)),
              "p read twice with exp": lambda p, c, b: c * p * _exp(-c * c) * 0.4 + p * (1 + c) * 0.5}


def _reduces(item) -> bool:
    return any(n.op in (Op.SUM, Op.RMAX) for n in item.ast.toposort())


def _vector_fma_widths(x: Tensor, w: Tensor, c: Tensor, bias: Tensor, epilogue: str) -> tuple[Tensor, list[int]]:
    """(x @ w with `epilogue`, the lane counts of the vector FMAs in its kernel's optimized IR)."""
    out = _EPILOGUES[epilogue](x @ w, c, bias)
    (item,) = [item for item in create_schedule([out.node]) if item.kind == "kernel" and _reduces(item)]
    optimized = Device["CPU"].debug_listing(compile_plan("CPU", item.ast).kernel.source)
    return out, [int(n) for n in re.findall(r"<(\d+) x float> @llvm\.fmuladd", optimized)]


@pytest.mark.parametrize("epilogue", list(_EPILOGUES))
def test_a_matmul_with_an_elementwise_epilogue_stays_vectorized(epilogue):
    """The register block of x @ W is vectorized by SLP from the stores of its results. With a tensor added to
    the product (a residual connection) SLP could not tell the loads of that tensor and the stores were
    neighbours (the sign-extended 32-bit index of `base + k` after instcombine) and left the whole block scalar:
    ~25x slower. Accesses base + k now share a pointer to base. An epilogue reading the product twice (a gelu
    gradient) made SLP pair the accumulators' lanes wrongly: the block ran half-width with shuffles, ~5x slower;
    its accumulators are now staged in a stack array first (an epilogue with an exp runs as a kernel of its own,
    see test_a_transcendental_epilogue_runs_as_its_own_kernel). Every vector FMA is as wide as the plain product's."""
    rng = np.random.default_rng(0)
    x, w, c = (rng.standard_normal(s).astype(np.float32) for s in ((256, 64), (64, 128), (256, 128)))
    bias = rng.standard_normal(128).astype(np.float32)
    tensors = (Tensor(x), Tensor(w), Tensor(c), Tensor(bias))
    out, widths = _vector_fma_widths(*tensors, epilogue)
    _, plain_widths = _vector_fma_widths(*tensors, "plain")
    assert len(widths) >= 4, f"{epilogue}: the register block was left scalar ({len(widths)} vector FMAs)"
    assert set(widths) == set(plain_widths), f"{epilogue}: vector FMAs of {set(widths)} lanes, plain product's " \
        f"{set(plain_widths)}"
    np.testing.assert_allclose(out.numpy(), _EPILOGUES[epilogue](x @ w, c, bias), rtol=1e-4, atol=1e-4)


def _vector_float_ops(source: str) -> int:
    """Vector float instructions (any width) in the optimized IR of a CPU kernel's source."""
    optimized = Device["CPU"].debug_listing(source)
    return len(re.findall(r"= (?:fmul|fadd|fsub|fdiv|call) [^\n]*<\d+ x float>", optimized))


_EXPENSIVE = {"gelu": lambda h: h.gelu(), "exp * h": lambda h: (-(h * h)).exp() * h,
              "erf": lambda h: (h * 0.7).erf() + h}
_EXPENSIVE_TORCH = {"gelu": torch.nn.functional.gelu, "exp * h": lambda h: (-(h * h)).exp() * h,
                    "erf": lambda h: torch.erf(h * 0.7) + h}


@pytest.mark.parametrize("expression", list(_EXPENSIVE))
def test_a_packed_operand_computed_from_an_expression_is_vectorized(expression):
    """The operand a matmul's register block reads in 4-row tiles is packed by a copy whose innermost loop is 4
    long (4 rows side by side), and the copy computes the expression the operand was fused from (a gelu
    gradient read by the weight gradient). LLVM leaves a 4-iteration loop alone, so the copy ran one element at a
    time: ~90 ns per element for an erf gradient, 45 ms for a 2048 x 256 operand. Its loops are now unrolled into
    blocks that SLP vectorizes."""
    rng = np.random.default_rng(3)
    h, x = rng.standard_normal((512, 256)).astype(np.float32), rng.standard_normal((512, 64)).astype(np.float32)
    out = _EXPENSIVE[expression](Tensor(h)).T @ Tensor(x)
    (item,) = [item for item in create_schedule([out.node]) if item.kind == "kernel"]
    plan = compile_plan("CPU", item.ast)
    copies = [kernel for n, (kernel, _) in enumerate(plan.launches) if n != plan.main]
    computing = [kernel for kernel in copies if " fmul " in kernel.source]   # the pack that computes h's expression
    assert computing, [kernel.name for kernel in copies]
    for kernel in computing:
        assert _vector_float_ops(kernel.source) >= 4, f"{kernel.name} computes its expression scalar"
    expected = _EXPENSIVE_TORCH[expression](torch.tensor(h)).T @ torch.tensor(x)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("inner", [2, 4])
def test_an_elementwise_kernel_with_a_short_innermost_loop_is_vectorized(inner):
    """An elementwise kernel whose innermost loop is shorter than a vector (a transpose in tiles of `inner`
    elements) is unrolled into a block: the loop vectorizer left it scalar (see the packed operand above)."""
    rng = np.random.default_rng(4)
    h = rng.standard_normal((256, 64 * inner)).astype(np.float32)
    out = Tensor(h).gelu().reshape(256, 64, inner).permute(1, 0, 2)
    (item,) = [item for item in create_schedule([out.node]) if item.kind == "kernel"]
    plan = compile_plan("CPU", item.ast)
    assert len(plan.launches) == 1
    kernel = plan.launches[0][0]
    assert _vector_float_ops(kernel.source) >= 4, f"{kernel.name} computes its expression scalar"
    expected = torch.nn.functional.gelu(torch.tensor(h)).reshape(256, 64, inner).permute(1, 0, 2)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)



@pytest.mark.parametrize("inner", [2, 4])
def test_the_loop_around_an_elementwise_block_is_not_unrolled(inner):
    """A short innermost loop unrolled into a block (see above) is already whole vectors; LLVM also fully unrolled
    the loop around it (8 blocks of 8 stores), and its loop-load elimination then compared every pair of the 64
    stores: 0.2-0.3 CPU s for a copy of (q + bias) * 0.25 in attention heads, the slowest LLVM build of the makemore
    Transformer. The loops of such a block are left rolled: one block per iteration."""
    rng = np.random.default_rng(7)
    h, b = rng.standard_normal((256, 64 * inner)).astype(np.float32), rng.standard_normal(64 * inner).astype(np.float32)
    out = ((Tensor(h) + Tensor(b)) * 0.25).reshape(256, 64, inner).permute(1, 0, 2)
    (item,) = [item for item in create_schedule([out.node]) if item.kind == "kernel"]
    kernel = compile_plan("CPU", item.ast).launches[0][0]
    optimized = Device["CPU"].debug_listing(kernel.source)
    body = optimized[optimized.index("define"):optimized.index("_thunk(")]   # the kernel, not its thunk
    stored = sum(int(width) for width in re.findall(r"store <(\d+) x float>", body))
    assert 0 < stored <= kernel.source.count("store float"), f"{kernel.name}: {stored} elements stored per pass"
    expected = ((h + b) * 0.25).reshape(256, 64, inner).transpose(1, 0, 2)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)


def test_a_block_of_rows_over_a_long_loop_keeps_the_loop_vectorizer():
    """An elementwise kernel given an UPCAST of an outer axis (by BEAM, or by hand) is a block of rows far apart in
    memory over a long innermost loop that stores in order. That loop is vectorized by the loop vectorizer, whole
    vectors per row; it had been turned off like the loops around a short-loop block (SLP across the rows then
    vectorized nothing 8 wide: 3-5x slower)."""
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((256, 256)).astype(np.float32), rng.standard_normal((256, 256)).astype(np.float32)
    x_t, y_t = Tensor(x).realize(), Tensor(y).realize()
    out = (x_t * 1.5 + 2).exp() * y_t.T
    (item,) = create_schedule([out.node])
    plan = compile_plan("CPU", item.ast, [Opt(OptKind.UPCAST, 0, 4)])
    optimized = Device["CPU"].debug_listing(plan.launches[0][0].source)
    lanes = host_vector_bits() // 32
    assert re.search(rf"= fmul [^\n]*<{lanes} x float>", optimized), "the long loop was not vectorized"
    output = Buffer("CPU", item.output.size, item.output.dtype)
    for kernel, buffers in plan.bind([output] + [i.buffer for i in item.inputs]):
        kernel(buffers)
    np.testing.assert_allclose(output.numpy().reshape(256, 256), np.exp(x * 1.5 + 2) * y.T, rtol=1e-5)


def test_a_register_block_one_vector_wide_is_not_unrolled():
    """A matmul with 3 vectors of columns (24 float32 on AVX2) gets a block of rows x one vector. LLVM unrolled its
    reduce loop by 2: two steps' broadcasts beside the accumulators spilled accumulators to the stack inside the
    loop (the 10 x 8 block of a 200-column matmul, P4's logits gradient, ran 1.2-2x slower). Now each step of the
    loop is one block of FMAs."""
    rng = np.random.default_rng(5)
    columns = 3 * host_vector_bits() // 32   # 24 on AVX2, 48 on AVX-512: three vectors, blocked one vector wide
    x, w = rng.standard_normal((64, 256)).astype(np.float32), rng.standard_normal((256, columns)).astype(np.float32)
    out = Tensor(x) @ Tensor(w)
    (item,) = [item for item in create_schedule([out.node]) if item.kind == "kernel"]
    plan = compile_plan("CPU", item.ast)
    upcasts = [o.amount for o in contraction_plan(Kernel(item.ast), Device["CPU"].threads) if o.kind == OptKind.UPCAST]
    rows, lanes = upcasts[0], host_vector_bits() // 32
    assert len(upcasts) == 2 and upcasts[1] <= lanes and rows >= 2, upcasts
    optimized = Device["CPU"].debug_listing(plan.kernel.source)
    blocks = re.split(r"\n(?=[\w.]+:)", optimized)   # basic blocks: a label starts each
    fmas = max(len(re.findall(r"<\d+ x float> @llvm\.fmuladd", block)) for block in blocks)
    assert fmas == rows, f"{fmas} vector FMAs in one loop body for a block of {rows} rows x one vector"
    np.testing.assert_allclose(out.numpy(), x @ w, rtol=1e-4, atol=1e-4)


def test_a_row_operand_read_across_its_layout_is_packed():
    """x.T @ y (a weight gradient: the batch is the reduce) reads A with a stride along the reduce, a new cache line
    per block row and step: A is packed in loop order first (1.3-1.7x faster with the copy, P4's output layer
    gradient 63 -> 39 ms); an A contiguous along the reduce is read as it is."""
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((128, 256)).astype(np.float32), rng.standard_normal((128, 1024)).astype(np.float32)
    for transposed in (True, False):
        a = Tensor(x).T if transposed else Tensor(np.ascontiguousarray(x.T))
        out = a @ Tensor(y)
        (item,) = [item for item in create_schedule([out.node]) if item.kind == "kernel"]
        k = Kernel(item.ast)
        a_operand = next(n for n, c in enumerate(codegen.copies.pack_candidates(k)) if c.arg[0] == 1)
        packed = [o.axis for o in contraction_plan(k, threads=2) if o.kind == OptKind.PACK]
        assert (a_operand in packed) == transposed, (transposed, packed)
        np.testing.assert_allclose(out.numpy(), x.T @ y, rtol=1e-4, atol=1e-3)


def _weight_panels(lib, columns=200, panel=16, panels=50):
    """The LSTM's pack of a weight (panels * panel rows, columns) into panels of `panel` rows, transposed: each
    panel row is written `panel` elements apart."""
    w = np.random.default_rng(9).standard_normal((panels * panel, columns)).astype(np.float32)
    w = lib.tensor(w) if lib is torch else Tensor(w)
    return (w * 2).reshape(panels, panel, columns).permute(0, 2, 1)


def test_loop_around_an_unrolled_short_loop_is_not_vectorized_with_gathers():
    """LLVM unrolls a short innermost loop and vectorizes the loop around it; an access out of order along that
    loop (here a 16-wide transposed panel, written 16 elements apart) is then gathered or scattered per unrolled
    copy: 439 instructions, 0.3-0.4 CPU s for the LSTM's weight pack, and 1.6x slower than scalar. That loop is
    marked and the kernel stays small."""
    out = _weight_panels(Tensor)
    instructions, marked, name = _optimized_ir_size(out)
    assert marked and instructions <= 200, (name, instructions)
    np.testing.assert_array_equal(out.numpy(), _weight_panels(torch).numpy())


def _heads_transposed(lib):
    """(x + b) split into 4 heads of 16 and transposed so that the sequence is innermost, in 2 halves of 32
    positions: attention's K^T with its bias. The innermost loop (32 positions) reads x 64 elements apart."""
    rng = np.random.default_rng(3)
    x, b = rng.standard_normal((8, 64, 64)).astype(np.float32), rng.standard_normal(64).astype(np.float32)
    x, b = (lib.tensor(v) if lib is torch else Tensor(v) for v in (x, b))
    return (x + b).reshape(8, 2, 32, 4, 16).permute(0, 3, 1, 4, 2)


def test_loops_around_a_gathered_innermost_loop_are_not_unrolled(monkeypatch):
    """A transposing copy whose long innermost loop reads out of order is vectorized with gathers; LLVM then unrolled
    that loop (its length is a constant) and the short loops around it too: 8 copies of the gathers, ~1,100
    instructions and 0.2-0.25 CPU s for one of the GPT attention's packs. The loops around it stay rolled."""
    out = _heads_transposed(Tensor)
    instructions, _, name = _optimized_ir_size(out)
    assert instructions <= 300, (name, instructions)
    np.testing.assert_allclose(out.numpy(), _heads_transposed(torch).numpy(), rtol=1e-6)
    monkeypatch.setattr(codegen.linearizer, "gathered_innermost_loop", lambda k: False)   # what it was before
    assert _optimized_ir_size(_heads_transposed(Tensor))[0] > 3 * instructions


def test_masked_loads_steady_along_the_innermost_loop_are_vector_loads():
    """stack(pieces, 1) reads every piece through a mask that changes along the time axis only. The masked
    load's address select(valid, index, 0) hid from LLVM that it steps along the innermost loop, so each of the
    16 pieces was gathered one element per lane (767 instructions, no vector load; the GRU's stacked gradient,
    48 pieces packed 16 wide, took 0.25-0.35 CPU s and ran ~4x slower). The select now covers the rest of the
    index only, and the pieces are read in whole vectors. Padded rows read in bounds (a pad of a single row, a
    transposed piece stepping by 3)."""
    rng = np.random.default_rng(10)
    pieces = [rng.standard_normal((32, 64)).astype(np.float32) for _ in range(16)]
    stacked = Tensor(pieces[0]).stack(*[Tensor(p) for p in pieces[1:]], dim=1) * 2
    instructions, _, name = _optimized_ir_size(stacked)
    # (AVX2's 8-lane vectors; AVX-512's 16-lane ones take 470 instructions, gathered more than twice that)
    assert instructions <= 400 * max(1, host_vector_bits() // 256) ** 0.5, (name, instructions)
    (item,) = [item for item in create_schedule([stacked.node]) if item.kind == "kernel"]
    optimized = Device["CPU"].debug_listing(compile_plan("CPU", item.ast).kernel.source)
    assert len(re.findall(r"load <\d+ x float>", optimized)) >= 16, name
    np.testing.assert_array_equal(stacked.numpy(), np.stack(pieces, 1) * 2)
    row = rng.standard_normal((1, 8)).astype(np.float32)
    padded = Tensor(row).pad((0, 0, 1, 2)) * 2
    np.testing.assert_array_equal(padded.numpy(), np.pad(row, ((1, 2), (0, 0))) * 2)
    piece = rng.standard_normal((8, 3)).astype(np.float32)
    transposed = Tensor(piece).T.pad((0, 0, 2, 5)) + 1
    np.testing.assert_array_equal(transposed.numpy(), np.pad(piece.T, ((2, 5), (0, 0))) + 1)


def test_a_block_with_a_long_epilogue_is_sized_by_its_epilogue():
    """The epilogue of a register block is unrolled per block element like its reduce: a gelu gradient's exp after
    a 4 x 16 block took LLVM 0.6-0.8 CPU s and ran slower than a 2 x 16 block. A block is sized so that epilogue x
    elements stays within MAX_EPILOGUE_COST (here 21 ops of polynomial, below the cost that moves an epilogue into a
    kernel of its own: see the next test), its width too when one row is already too many (AVX-512)."""
    rng = np.random.default_rng(5)
    g, w = rng.standard_normal((256, 64)).astype(np.float32), rng.standard_normal((64, 256)).astype(np.float32)
    h = rng.standard_normal((256, 256)).astype(np.float32)

    def epilogue(p, c):
        poly = c * 0.1
        for coefficient in (0.3, -0.2, 0.5, 0.7, -0.1, 0.25, 0.125, 0.5, 0.3):
            poly = (poly + coefficient) * c
        return p * poly + p
    out = epilogue(Tensor(g) @ Tensor(w), Tensor(h))
    (item,) = [item for item in create_schedule([out.node]) if item.kind == "kernel"]
    k = Kernel(item.ast)
    block = prod(o.amount for o in contraction_plan(k, threads=2) if o.kind == OptKind.UPCAST)
    assert block > 1
    assert codegen.cpu_opts._epilogue_cost(k) * block <= codegen.cpu_opts.MAX_EPILOGUE_COST, block
    expected = epilogue(torch.tensor(g) @ torch.tensor(w), torch.tensor(h))
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-4, atol=1e-3)


def test_a_transcendental_epilogue_runs_as_its_own_kernel(device):
    """A gelu gradient (erf and exp of the pre-activation) fused after the matmul of the incoming gradient cut the
    matmul's register block to one row (its code is unrolled per block element): P1's MLP input gradient ran 16x
    slower than the matmul alone. On the CPU the product is stored and the epilogue runs as an elementwise kernel;
    the matmul keeps the plain product's block. GPUs keep the epilogue fused (one kernel)."""
    rng = np.random.default_rng(5)
    g, w = rng.standard_normal((256, 64)).astype(np.float32), rng.standard_normal((64, 256)).astype(np.float32)
    h = rng.standard_normal((256, 256)).astype(np.float32)
    p, ht = Tensor(g, device=device) @ Tensor(w, device=device), Tensor(h, device=device)
    out = p * (0.5 + 0.5 * (ht * 0.7).erf()) + p * ht * (-(ht * ht) * 0.5).exp() * 0.4
    kernels = [item for item in create_schedule([out.node]) if item.kind == "kernel"]
    assert [_reduces(item) for item in kernels] == ([True, False] if device == "CPU" else [True])
    if device == "CPU":
        plain = [item for item in create_schedule([p.node]) if item.kind == "kernel"]
        upcasts = [[o for o in contraction_plan(Kernel(item.ast), threads=2) if o.kind == OptKind.UPCAST]
                   for item in (kernels[0], plain[0])]
        assert upcasts[0] == upcasts[1]
    pt = torch.tensor(g) @ torch.tensor(w)
    expected = pt * (0.5 + 0.5 * torch.erf(torch.tensor(h) * 0.7)) + \
        pt * torch.tensor(h) * torch.exp(-torch.tensor(h) ** 2 * 0.5) * 0.4
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-4, atol=1e-3)


def test_an_access_broadcast_across_a_register_block_is_indexed_once_per_distinct_element(monkeypatch):
    """The symbolic index math is the costliest part of linearizing. A matmul's 4 x 16 block reads A once per row
    and B once per column: their indices are computed 4 and 16 times (plus one check of which block axes each
    access depends on), not 64 times each; the output's 64 elements are 64 stores."""
    import tinyjit.view as view
    from codegen.linearizer import Linearizer
    calls: dict = {}
    original = view.ShapeTracker.index_and_valid

    def counting(self, idxs):
        calls[self] = calls.get(self, 0) + 1
        return original(self, idxs)
    x = Tensor(np.ones((256, 128), np.float32))
    w = Tensor(np.ones((128, 512), np.float32))
    (item,) = [item for item in create_schedule([(x @ w).node]) if item.kind == "kernel"]
    k = Kernel(item.ast)
    optimize(k, Device.renderer("CPU"), 2)
    rows, columns = k.full_shape[k.first_upcast:]
    monkeypatch.setattr(view.ShapeTracker, "index_and_valid", counting)
    Linearizer(k, vector_bits=256).linearize()
    store, a, b = (calls[st] for st in k.sts)
    assert store <= rows * columns + 2 and a <= rows + 3 and b <= columns + 3, (rows, columns, store, a, b)


def test_a_masked_row_max_is_vectorized():
    """A causal softmax's row max, max(where(mask, x, -inf)): LLVM folded it into a conditional max reduction
    that its loop vectorizer leaves scalar (6x slower than a plain row max). The -inf is now opaque to it."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((16, 64, 64)).astype(np.float32)
    x[3, 5, 2] = np.nan   # NaN still propagates
    i, j = Tensor.arange(64).reshape(64, 1), Tensor.arange(64).reshape(1, 64)
    out = (i >= j).where(Tensor(x), float("-inf")).amax(-1)
    (item,) = [item for item in create_schedule([out.node]) if item.kind == "kernel"]
    kernel = compile_plan("CPU", item.ast).launches[-1][0]
    assert _vector_float_ops(kernel.source) + len(re.findall(r"@llvm\.vector\.reduce\.fmaximum",
                                                            Device["CPU"].debug_listing(kernel.source))) > 0
    expected = np.where(np.arange(64)[:, None] >= np.arange(64)[None, :], x, -np.inf).max(-1)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_causal_attention_masks_compare_int32_positions():
    """The causal mask of scaled_dot_product_attention (and tril/triu) compares int32 positions: with int64 ones
    the softmax kernels vectorized 4 wide instead of 8 (AVX2: 4 int64 lanes), 2x slower."""
    rng = np.random.default_rng(9)
    q, k, v = (Tensor(rng.standard_normal((2, 4, 32, 16)).astype(np.float32)) for _ in range(3))
    out = Tensor.scaled_dot_product_attention(q, k, v, is_causal=True)
    tril = Tensor(rng.standard_normal((32, 32)).astype(np.float32)).tril(-1) * 2
    for item in create_schedule([out.node, tril.node]):
        if item.kind == "kernel":
            assert dtypes.int64 not in [n.dtype for n in item.ast.toposort() if n.op == Op.LOAD], item.ast
    expected = torch.nn.functional.scaled_dot_product_attention(*(torch.tensor(t.numpy()) for t in (q, k, v)),
                                                                is_causal=True)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduce_size", [800, 20])
def test_a_block_over_columns_that_are_not_whole_vectors_is_an_odd_number_of_half_vectors(reduce_size):
    """Neither output axis of (20 x K) @ (K x 5*lanes/2*5) is a multiple of a vector (200 columns on AVX-512): the
    block runs along the columns, 2.5 vectors wide (40 columns: 3.5x faster than half a vector per FMA at K = 800),
    when the reduce is long enough for the FMAs to be the work; over 20 steps it stays half a vector wide."""
    lanes = host_vector_bits() // 32
    columns = 5 * (lanes // 2) * 5
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((20, reduce_size)).astype(np.float32), rng.standard_normal((reduce_size, columns))
    out = Tensor(a) @ Tensor(b.astype(np.float32))
    (item,) = [item for item in create_schedule([out.node]) if item.kind == "kernel"]
    k = Kernel(item.ast)
    widths = [o.amount for o in contraction_plan(k, threads=2)
              if o.kind == OptKind.UPCAST and k.full_shape[o.axis] == columns]
    assert widths == [5 * lanes // 2 if reduce_size == 800 else lanes // 2]
    np.testing.assert_allclose(out.numpy(), a @ b.astype(np.float32), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("panels", [32, 128])
def test_a_copy_into_panels_reads_its_rows_in_order(panels):
    """Packing a matrix into panels of 8 columns (a weight gradient's transposed operand): panel j of row r is the
    next piece of row r, so the panel axis becomes the innermost loop (rows read in order, each line once, one
    write stream per panel), unless there are more panels than write streams that stay in L1."""
    from codegen.cpu_opts import MAX_WRITE_STREAMS, short_inner_axis_plan
    x = np.arange(2048 * panels * 8, dtype=np.float32).reshape(2048, panels * 8)
    out = Tensor(x).reshape(2048, panels, 8).permute(1, 0, 2).contiguous()
    (item,) = [item for item in create_schedule([out.node]) if item.kind == "kernel"]
    swaps = [o for o in short_inner_axis_plan(Kernel(item.ast)) if o.kind == OptKind.SWAP]
    assert len(swaps) == (1 if panels <= MAX_WRITE_STREAMS else 0)
    np.testing.assert_array_equal(out.numpy(), x.reshape(2048, panels, 8).transpose(1, 0, 2))


def test_products_fused_into_accumulations_are_not_rendered():
    """A matmul's product is fused into its accumulation (llvm.fmuladd); the multiply itself is read by nothing else
    and is not in the source (it was: one dead fmul per accumulator, 256 in a big register block, for LLVM to
    parse and delete on every compile)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((64, 256)).astype(np.float32), rng.standard_normal((256, 128)).astype(np.float32)
    out = Tensor(x) @ Tensor(w)
    (item,) = [item for item in create_schedule([out.node]) if item.kind == "kernel"]
    source = compile_plan("CPU", item.ast).kernel.source
    assert len(re.findall(r"= call [^\n]*@llvm\.fmuladd", source)) >= 64, "the products are not fused"
    assert " = fmul " not in source
    np.testing.assert_allclose(out.numpy(), x @ w, rtol=1e-4, atol=1e-4)
