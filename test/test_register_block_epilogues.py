"""Register blocks (a matmul-shaped reduction unrolled into a block of accumulators) whose epilogue reads an
accumulator's value twice: the LLVM renderer stages the block's accumulators in a stack array first
(codegen.llvmir.LLVMRenderer._staged_epilogues). A block may hold accumulators of several dtypes (two reductions
over the same axis fused into one kernel); each must be staged and read back as its own type."""
import numpy as np
import pytest
import torch

from tinyjit import Tensor

RNG = np.random.default_rng(0)


def _products(n: int, k: int, m: int):
    a = RNG.standard_normal((n, k)).astype(np.float32)
    b = RNG.standard_normal((k, m)).astype(np.float32)
    return Tensor(a)[:, :, None] * Tensor(b)[None], torch.from_numpy(a)[:, :, None] * torch.from_numpy(b)[None]


# a second reduction over the products' reduce axis, of another accumulator dtype than the float32 sum
_SECOND = {
    "int64 count": (lambda p: (p > 0).long().sum(1), lambda p: (p > 0).long().sum(1)),
    "int32 count": (lambda p: (p > 0).int().sum(1, dtype="int32"), lambda p: (p > 0).int().sum(1, dtype=torch.int32)),
    "float64 sum": (lambda p: p.double().sum(1), lambda p: p.double().sum(1)),
    "float16 max": (lambda p: p.half().amax(1), lambda p: p.half().amax(1)),
    "bool any": (lambda p: (p > 2).any(1), lambda p: (p > 2).any(1)),
}


@pytest.mark.parametrize("second", list(_SECOND))
def test_an_epilogue_reading_accumulators_of_two_dtypes(device, second):
    """p * p + q * p with p a float32 sum and q a reduction of another dtype in the same register block: staged
    through one float32 array, q was read back from float32 bits (int64: 5e19 off)."""
    ours, theirs = _SECOND[second]
    prod, prod_t = _products(32, 24, 32)
    p, q = prod.sum(1), ours(prod)
    p_t, q_t = prod_t.sum(1), theirs(prod_t)
    out = p * p + q * p
    expected = p_t * p_t + q_t * p_t
    assert out.dtype.name == str(expected.dtype).removeprefix("torch.")
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-4, atol=1e-3)


# a column reduction (over axis 0: its output axis is upcast into a block of accumulators) fused with a second
# reduction of another dtype, the epilogue reading the first one twice; (dtype, tinyjit's, torch's)
_COLUMNS = {
    "float32 sum, int64 count": (np.float32, lambda x: x.sum(0) * x.sum(0) + (x > 0).long().sum(0) * x.sum(0), None),
    "float64 max, int64 argmax": (np.float64, lambda x: x.amax(0) * x.amax(0) + x.argmax(0) * x.amax(0), None),
    "float32 max, bool any": (np.float32, lambda x: x.amax(0, keepdim=True) * x.amax(0, keepdim=True) +
                              (x > 1).any(0, keepdim=True) * x.amax(0, keepdim=True), None),
    "int8 sum, float32 sum": (np.int8, lambda x: x.sum(0, dtype="int8") * x.sum(0, dtype="int8") +
                              x.float().sum(0) * x.sum(0, dtype="int8"),
                              lambda x: x.sum(0, dtype=torch.int8) * x.sum(0, dtype=torch.int8) +
                              x.float().sum(0) * x.sum(0, dtype=torch.int8)),
}


@pytest.mark.parametrize("case", list(_COLUMNS))
def test_a_column_reduction_epilogue_reading_accumulators_of_two_dtypes(device, case):
    """As above for a reduction over axis 0 (x.sum(0) with a count of positives, amax with argmax): on the CPU
    its output axis is upcast into a register block, so the same staging applied."""
    dtype, ours, theirs = _COLUMNS[case]
    x = (RNG.standard_normal((5, 64)) * 4).astype(dtype)
    out, expected = ours(Tensor(x)), (theirs or ours)(torch.from_numpy(x))
    assert out.dtype.name == str(expected.dtype).removeprefix("torch.")
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-4)
