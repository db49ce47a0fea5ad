"""Ops that trap, or that LLVM and C leave undefined, for some inputs are defined for every input on every backend
(codegen/total_ops.py, results in tinyjit/ops.py): integer division and remainder by 0 and MIN / -1, shifts by the
bit width or more, float -> int conversions of NaN, inf and out-of-range values. A padded area computes the
inlined expression with every load and constant masked to 0 (a safe divisor becomes 0 there), so these ops meet
such inputs even where the user's values are fine; before the fix a padded integer division killed the process
with SIGFPE.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tinyjit import Tensor, dtypes

pytestmark = pytest.mark.devices("CPU", "CL", "CUDAEMU")


@pytest.mark.parametrize("dtype", ["int32", "int8", "uint8", "int64"])
def test_padded_integer_division_does_not_trap(device, dtype):
    """(a // b) concatenated with more values: the pad of the quotient masks b's safe divisor (and every constant)
    to 0 in the padded area. One kernel: a constant divisor under a pad and the truncating division too."""
    a, b = Tensor([7, 8, 9], dtype=dtype), Tensor([2, 3, 4], dtype=dtype)
    one = Tensor([1], dtype=dtype)
    got = Tensor.cat((a // b).cat(one), (a % b).cat(one), (a // 5).pad(((2, 1),)),
                     a.div(b, rounding_mode="trunc").pad(((0, 2),)))
    expected = [3, 2, 2, 1] + [1, 2, 1, 1] + [0, 0, 1, 1, 1, 0] + [3, 2, 2, 0, 0]
    np.testing.assert_array_equal(got.numpy(), np.array(expected, dtype))


def test_division_by_zero_and_by_minus_one(device):
    """Tensor divisors (the guarded path) and constant ones (folded) give NumPy's results."""
    info = np.iinfo(np.int32)
    a = np.array([info.min, -7, 7, info.max, 0], np.int32)
    b = np.array([-1, 0, -1, 0, 0], np.int32)
    x, y = Tensor(a), Tensor(b)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(Tensor.stack([x // y, x % y]).numpy(), np.stack([a // b, a % b]))
        np.testing.assert_array_equal((x // -1).numpy(), a // -1)
        np.testing.assert_array_equal((x % x.full_like(0)).numpy(), a % 0)   # (the int 0 raises, like torch)
    u = np.array([0, 5, 255], np.uint8)
    np.testing.assert_array_equal((Tensor(u) // Tensor(np.zeros(3, np.uint8))).numpy(), [0, 0, 0])


@pytest.mark.parametrize("dtype", ["int32", "int8", "uint8"])
def test_shifts_by_the_bit_width_or_more(device, dtype):
    """Like PyTorch: shifting by >= the width (or by a negative amount) leaves 0, or the sign bits for >> of a
    signed value. Stacked, every amount is masked by the stack's pads (the guarded path, one kernel); alone, a
    constant amount is folded (int32 only: one kernel each)."""
    values = np.array([1, -8, 5, 127] if dtype != "uint8" else [1, 248, 5, 127], dtype)
    bits = np.dtype(dtype).itemsize * 8
    amounts = [0, 1, bits - 1, bits, bits + 1, 40] + ([-1] if dtype != "uint8" else [])
    x, ref = Tensor(values), torch.from_numpy(values)
    got = Tensor.stack([x << s for s in amounts] + [x >> s for s in amounts]).numpy()
    expected = np.stack([(ref << s).numpy() for s in amounts] + [(ref >> s).numpy() for s in amounts])
    np.testing.assert_array_equal(got, expected)
    if dtype == "int32":
        for s in (32, -1):
            np.testing.assert_array_equal((x << s).numpy(), (ref << s).numpy(), err_msg=f"<< {s}")
            np.testing.assert_array_equal((x >> s).numpy(), (ref >> s).numpy(), err_msg=f">> {s}")


def test_float_to_int_of_nan_inf_and_out_of_range(device):
    """Truncation where the value fits; NaN, +-inf and values outside give INT_MIN, as PyTorch (and NumPy) show on
    x86 (LLVM folded a constant NaN to garbage; C leaves these undefined)."""
    values = [math.nan, math.inf, -math.inf, 3e9, -3e9, 2.5, -2.5, 2147483520.0, -2147483648.0, 1e30]
    arr32 = np.array(values, np.float32)
    arr64 = np.array(values + [2147483647.9, 2147483648.0, -2147483648.9, -2147483649.0], np.float64)
    for arr in (arr32, arr64):
        x, ref = Tensor(arr), torch.from_numpy(arr)
        np.testing.assert_array_equal(Tensor.stack([x.int().long(), x.long()]).numpy(),
                                      torch.stack([ref.int().long(), ref.long()]).numpy(), err_msg=f"{arr.dtype}")
    # narrow and unsigned targets convert through a wide int and wrap (PyTorch's values); half goes through float
    small = np.array([300.0, -1.0, math.nan, 1e20], np.float32)
    halves = np.array([math.nan, -math.inf, -3.5], np.float16)
    got = Tensor.cat(Tensor(small).cast(dtypes.uint8).int(), Tensor(small).cast(dtypes.int8).int(),
                     Tensor(halves).int())
    expected = torch.cat([torch.from_numpy(small).to(torch.uint8).int(), torch.from_numpy(small).to(torch.int8).int(),
                          torch.from_numpy(halves).int()])
    np.testing.assert_array_equal(got.numpy(), expected.numpy())
    # a constant NaN (folded by LLVM), and a NaN made in a padded area (0 / 0) that is then cast
    zero = Tensor([0.0, 1.0])
    masked = (zero / zero).cast(dtypes.int32).pad(((0, 2),))
    np.testing.assert_array_equal(Tensor.full((3,), math.nan).int().numpy(), np.full(3, np.iinfo(np.int32).min))
    np.testing.assert_array_equal(masked.numpy(), [np.iinfo(np.int32).min, 1, 0, 0])
