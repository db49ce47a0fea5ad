"""More than 2**31 elements: launch ranges, loop bounds and index math switch to 64 bits where a buffer, a view or
a loop needs it (codegen/linearizer.py `index_magnitude`), and stay 32-bit otherwise.

The end-to-end tests allocate a 2 GB buffer and take seconds, so there are two (one per device), and they take a
lock so that two pytest workers never hold such buffers at the same time. Before the fix the CPU thunk took a
32-bit range: a kernel over 2**31 + 4109 elements did not run at all ((x + 1)[:3] was [0, 0, 0]) and reading the
tail of such a buffer used a wrapped offset (a segfault).
"""
from __future__ import annotations

import fcntl
import os
import tempfile

import numpy as np
import pytest

from codegen.cuda import CUDARenderer
from codegen.kernel import Kernel
from codegen.linearizer import Linearizer
from codegen.optimizer import optimize
from codegen.uops import U
from runtime.nvcheck import check_cuda_source
from tinyjit import Device, Tensor, dtypes
from tinyjit.schedule import create_schedule

PRIME_PAST_2_31 = 2 ** 31 + 4109   # no block, thread or work-group size divides it


@pytest.fixture
def one_big_test_at_a_time():
    with open(os.path.join(tempfile.gettempdir(), "tinyjit-big-tensor-tests.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.mark.devices("CPU", "CL")
def test_more_than_2_31_elements(device, one_big_test_at_a_time):
    n = PRIME_PAST_2_31
    if device == "CL":
        # PoCL runs one work-item per work-group for a prime length (2**31 groups: minutes); 2**31 + 4096 takes
        # work-groups of 256 and still needs 64-bit indices
        n = 2 ** 31 + 4096
        max_alloc = Device["CL"].device.max_mem_alloc_size
        if max_alloc < n:
            pytest.skip(f"the CL device allocates at most {max_alloc} bytes in one buffer, not {n}")
    x = Tensor.ones(n, dtype=dtypes.uint8).contiguous().realize()   # one launch over all n elements
    np.testing.assert_array_equal(x[2 ** 31 - 2:2 ** 31 + 2].numpy(), [1, 1, 1, 1])
    np.testing.assert_array_equal(x[-3:].numpy(), [1, 1, 1])       # offsets past 2**31
    y = x + 1
    np.testing.assert_array_equal(y[:3].numpy(), [2, 2, 2])
    np.testing.assert_array_equal(y[-3:].numpy(), [2, 2, 2])
    if device == "CPU":
        assert int(y.sum().numpy()) == 2 * n                      # one reduce loop of n steps
    else:   # (a single-output reduce is a work-group of strided loops, which PoCL runs for minutes at this size)
        rows = y.reshape(4096, n // 4096).sum(1).numpy()
        np.testing.assert_array_equal(rows, np.full(4096, 2 * (n // 4096)))
    del x, y


def _kernel(t: Tensor) -> Kernel:
    """The kernel of the last schedule item of `t`, without running anything."""
    return Kernel(create_schedule([t.node])[-1].ast)


def test_index_math_is_64_bit_only_where_needed():
    """Decided from the values the index math can take, not from buffer sizes: the head of a huge buffer stays
    32-bit, its tail and a loop past 2**31 do not (nothing is allocated: the kernels are only linearized)."""
    huge = Tensor.empty(PRIME_PAST_2_31, dtype=dtypes.uint8)
    cases = [(Tensor.ones(1000) + 1, dtypes.int32), (huge[:3] + 1, dtypes.int32), (huge[-3:] + 1, dtypes.int64),
             (huge + 1, dtypes.int64), (huge.sum(), dtypes.int64),
             (huge[:2 ** 31 + 4096].reshape(4096, -1)[:, :2] + 1, dtypes.int32),
             (huge[:2 ** 31 + 4096].reshape(4096, -1)[:, -2:] + 1, dtypes.int64),
             (Tensor.ones(50_000, 50_000).sum(1), dtypes.int32)]   # a big loop space whose indices are small
    for t, want in cases:
        program = Linearizer(_kernel(t)).linearize()
        assert {u.dtype for u in program.uops if u.uop == U.LOOP} == {want}, (t.shape, want)


def test_grid_of_more_than_2_31_groups():
    """CUDA's grid takes at most 2**31 - 1 groups in x: a longer grid is split over x and y, and the groups past
    the end are guarded out (no run: the kernel is linearized and rendered)."""
    k = _kernel(Tensor.empty(PRIME_PAST_2_31, dtype=dtypes.uint8) + 1)
    renderer = CUDARenderer()
    optimize(k, renderer)
    program = renderer.linearize(k)
    columns, rows = program.global_size
    assert rows == 2 and columns * rows >= PRIME_PAST_2_31 and columns <= 2 ** 31 - 1
    _, source = renderer.render(program.name, program.uops)
    assert "blockIdx.y" in source and f"< {PRIME_PAST_2_31}LL" in source and "long long" in source
    check_cuda_source(source, archs=("sm_80",))   # NVRTC (and ptxas) compile it
