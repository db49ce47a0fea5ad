"""Kernels that differ only in their views' offsets share one compiled program (tinyjit.base_offsets): the split
of an AST, the shared build, and values through every way a plan launches (eager run, bound plan reuse, DEBUG's
per-launch path, TinyJit replay with new inputs), compared with numpy."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinyjit import Tensor, TinyJit, kernel_cache
from tinyjit.base_offsets import lowest_valid_address, split_base_offsets
from tinyjit.ops import Op
from tinyjit.schedule import create_schedule
from tinyjit.view import View


def _kernel_ast(t: Tensor):
    (item,) = [i for i in create_schedule([t.node]) if i.ast is not None]
    return item.ast


def _loads(ast):
    return {n.arg[0]: n.arg[1].views for n in ast.toposort() if n.op is Op.LOAD}


def test_lowest_valid_address_of_strided_flipped_and_masked_views():
    assert lowest_valid_address(View((4, 5), (5, 1), 7)) == 7
    assert lowest_valid_address(View((4, 5), (-5, 1), 22)) == 7                      # flipped rows: last row lowest
    assert lowest_valid_address(View((4, 5), (5, 1), -3, ((0, 4), (3, 5)))) == 0     # padded left by 3
    assert lowest_valid_address(View((4, 5), (0, 1), 9)) == 9                        # broadcast rows
    assert lowest_valid_address(View((4, 5), (0, 0), 0, ((0, 0), (0, 0)))) is None   # nothing valid


def test_slices_of_one_buffer_split_to_one_canonical_ast_and_their_offsets():
    x = Tensor(np.arange(8 * 6, dtype=np.float32).reshape(8, 6)).realize()
    split = [split_base_offsets(_kernel_ast(x[t] * 2 + 1)) for t in range(8)]
    assert len({canonical for canonical, _ in split}) == 1
    assert [shifts for _, shifts in split] == [()] + [(0, 6 * t) for t in range(1, 8)]
    canonical, _ = split[3]
    assert _loads(canonical)[1][0].offset == 0


def test_a_buffer_read_through_stacked_views_is_not_shifted():
    x = Tensor(np.arange(64, dtype=np.float32)).realize()
    # a reshape of a strided slice that one view cannot express stacks views
    y = x[5:53:2].reshape(4, 6).permute(1, 0).reshape(3, 8)
    ast = _kernel_ast(y + 1)
    if len(_loads(ast)[1]) == 1:
        pytest.skip("this movement chain merged into one view: nothing to check")
    assert split_base_offsets(ast) == (ast, ())


def test_kernels_differing_only_in_offsets_build_once_and_compute_their_own_slices(device):
    """One program for all time steps of a recurrence-like loop; every step's values right."""
    data = np.random.default_rng(0).standard_normal((9, 40)).astype(np.float32)
    x = Tensor(data, device=device).realize()
    before = len(kernel_cache.compile_log)
    symbols = set()
    for t in range(1, 9):
        y = (x[t] * x[t - 1] + 1).realize()
        np.testing.assert_allclose(y.numpy(), data[t] * data[t - 1] + 1, rtol=1e-6)
        symbols.add(kernel_cache.compile_plan(device, _kernel_ast(x[t] * x[t - 1] + 1)).kernel.symbol)
    if device == "CPU":   # (the CPU's allocator has offset handles; other devices compile each offset)
        assert len(symbols) == 1
        assert len(kernel_cache.compile_log) - before <= 1   # (0 when the disk cache had it)


def test_eager_loop_reuses_a_bound_shifted_plan_with_new_buffers():
    """KernelPlan.run hands its BoundPlan to the next call of the same kernel: its shifted arguments point into
    the new buffers."""
    rng = np.random.default_rng(1)
    for _ in range(3):
        data = rng.standard_normal((4, 33)).astype(np.float32)
        x = Tensor(data).realize()
        out = (x[2:].flip(1) - x[1:3]).realize()
        np.testing.assert_allclose(out.numpy(), data[2:, ::-1] - data[1:3], rtol=1e-6)


def test_per_launch_path_with_debug_2_launches_shifted(monkeypatch, capsys):
    monkeypatch.setenv("DEBUG", "2")
    data = np.arange(30, dtype=np.float32).reshape(5, 6)
    out = (Tensor(data)[3:] * 3).numpy()
    np.testing.assert_array_equal(out, data[3:] * 3)


def test_tinyjit_replay_points_shifted_arguments_into_new_inputs(device):
    @TinyJit
    def step(x: Tensor) -> Tensor:
        return (x[1:] + x[:-1] * 2).realize()

    rng = np.random.default_rng(2)
    for _ in range(4):
        data = rng.standard_normal((7, 5)).astype(np.float32)
        np.testing.assert_allclose(step(Tensor(data, device=device)).numpy(), data[1:] + data[:-1] * 2, rtol=1e-6)


def test_assign_into_a_slice_writes_through_a_shifted_output():
    data = np.zeros((6, 8), dtype=np.float32)
    x = Tensor(data.copy()).realize()
    for t in range(1, 6):
        x[t] = x[t - 1] + t
        data[t] = data[t - 1] + t
    np.testing.assert_array_equal(x.numpy(), data)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_random_slices_pads_and_flips_of_one_buffer_match_numpy(data):
    """Views at many offsets (padding puts masked lanes below the lowest valid address) over one buffer."""
    base = np.arange(7 * 9, dtype=np.float32).reshape(7, 9)
    x = Tensor(base).realize()
    r0 = data.draw(st.integers(0, 6))
    r1 = data.draw(st.integers(r0 + 1, 7))
    c0 = data.draw(st.integers(0, 8))
    c1 = data.draw(st.integers(c0 + 1, 9))
    pad = data.draw(st.tuples(st.integers(0, 2), st.integers(0, 2)))
    flip = data.draw(st.booleans())
    view, expected = x[r0:r1, c0:c1], base[r0:r1, c0:c1]
    if flip:
        view, expected = view.flip(0), expected[::-1]
    view = view.pad(((0, 0), pad))
    expected = np.pad(expected, ((0, 0), pad))
    other = x[r1 - 1:r1, :1]   # a second view of the same buffer at another offset, broadcast
    np.testing.assert_array_equal((view + other).numpy(), expected + base[r1 - 1:r1, :1])
