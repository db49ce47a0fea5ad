"""Edge cases of the 2026-11-30 changes that no other test pins down (found while trying to break them; all pass):
tril/triu around the int32/int64 switch of their position compares, >= and <= of integers (no NaN check) against
NaN/inf and range-edge scalars, and gradient templates (tinyjit/gradient_cache.py) whose result is a node reused
across instances, or whose targets repeat or are intermediates."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import tinyjit.autograd
from tinyjit import Tensor, gradient_cache

# diagonals either side of where tril/triu switch from int32 to int64 positions (max(n, m) + |diagonal| < 2**31)
_DIAGONALS = [2 ** 31 - 6, 2 ** 31 - 5, 2 ** 31, -2 ** 31 + 4, -2 ** 31 - 1, 2 ** 40, 3, -2]


@pytest.mark.parametrize("dtype", [np.float32, np.bool_])
def test_tril_triu_diagonals_around_the_int32_switch(dtype, device):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5))
    x = (x > 0) if dtype is np.bool_ else x.astype(dtype)
    ours = Tensor(x, device=device)
    for diagonal in _DIAGONALS:
        np.testing.assert_array_equal(ours.tril(diagonal).numpy(), torch.tensor(x).tril(diagonal).numpy(),
                                      err_msg=f"tril({diagonal})")
        np.testing.assert_array_equal(ours.triu(diagonal).numpy(), torch.tensor(x).triu(diagonal).numpy(),
                                      err_msg=f"triu({diagonal})")


@pytest.mark.parametrize("dtype, values", [(np.uint8, [0, 1, 254, 255]), (np.int32, [-2 ** 31, -1, 0, 2 ** 31 - 1]),
                                           (np.int64, [-2 ** 63, -1, 0, 2 ** 63 - 1])])
def test_integer_ge_le_against_nan_inf_and_edges(dtype, values, device):
    """>= and <= of integer tensors skip the NaN checks; a float scalar promotes them, so NaN still compares False
    (the scalars chosen compare alike in float32 and exactly)."""
    x = Tensor(np.array(values, dtype), device=device)
    for scalar in (float("nan"), float("inf"), -float("inf"), 0.5, values[0], values[-1]):
        for name, op in (("ge", lambda a, b: a >= b), ("le", lambda a, b: a <= b)):
            assert op(x, scalar).numpy().tolist() == [op(v, scalar) for v in values], (name, scalar)
            assert op(scalar, x).numpy().tolist() == [op(scalar, v) for v in values], (name, scalar, "reversed")


def test_gradient_template_result_reused_across_steps_with_inplace_grad_edits(monkeypatch):
    """x.sum()'s gradient depends on no forward node: every hit returns the template's own node as x.grad. Edits
    of .grad in place between steps (zero_, mul_, setitem, optimizer zero_grad) must not reach later steps."""
    from tinyjit import no_grad, optim
    monkeypatch.setattr(gradient_cache, "TEMPLATE_AT_FIRST_SIGHT", True)
    gradient_cache._cache.clear()
    x = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    kept = []
    opt = optim.SGD([x], lr=0.1)
    for step, edit in enumerate(["zero_", "mul_", "setitem", "zero_grad", "none", "accumulate"]):
        if edit != "accumulate":
            x.grad = None
        x.sum().backward()
        kept.append(x.grad)
        expected = 2.0 if edit == "accumulate" else 1.0
        np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), expected, np.float32))
        with no_grad():
            if edit == "zero_":
                x.grad.zero_()
            elif edit == "mul_":
                x.grad.mul_(3.0)
            elif edit == "setitem":
                x.grad[0] = 7.0
            elif edit == "zero_grad":
                opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(kept[0].numpy(), np.zeros((2, 3), np.float32))   # the edits stayed where made
    np.testing.assert_array_equal(kept[1].numpy(), np.full((2, 3), 3.0, np.float32))
    gradient_cache._cache.clear()


def test_functional_grad_with_repeated_and_intermediate_inputs_through_the_cache(monkeypatch):
    monkeypatch.setattr(gradient_cache, "TEMPLATE_AT_FIRST_SIGHT", True)
    gradient_cache._cache.clear()
    rng = np.random.default_rng(4)
    before = dict(gradient_cache.stats)
    for step in range(3):
        a, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
        x, y = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
        mid = (x * y).tanh()
        ours = tinyjit.autograd.grad((mid * x).sum(), [y, x, mid, x])
        tx, ty = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        tmid = (tx * ty).tanh()
        theirs = torch.autograd.grad((tmid * tx).sum(), [ty, tx, tmid, tx])
        for o, t in zip(ours, theirs):
            np.testing.assert_allclose(o.numpy(), t.numpy(), rtol=1e-5, atol=1e-6)
    assert gradient_cache.stats["gradient_cache_hits"] - before["gradient_cache_hits"] == 2
    gradient_cache._cache.clear()
