"""Adamax, NAdam and RAdam against torch.optim: the same start, the same gradients each step (random, given by
hand, so the update rules alone are tested), parameters compared after every step; and a TinyJit-captured step
(the step counts and bias corrections live on the device, so every replay advances them)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyjit import Tensor, TinyJit, optim

RNG = np.random.default_rng(5)
W0 = RNG.standard_normal((3, 4)).astype(np.float32)
C0 = RNG.standard_normal(3).astype(np.float32)
GRADS = [(RNG.standard_normal((3, 4)).astype(np.float32), RNG.standard_normal(3).astype(np.float32))
         for _ in range(8)]

OPTIMIZERS = {
    "adamax": lambda o, p: o.Adamax(p),
    "adamax_wd_maximize": lambda o, p: o.Adamax(p, lr=0.05, betas=(0.8, 0.95), weight_decay=0.1, maximize=True),
    "nadam": lambda o, p: o.NAdam(p, lr=0.01),
    "nadam_wd": lambda o, p: o.NAdam(p, lr=0.02, betas=(0.85, 0.99), weight_decay=0.05, momentum_decay=0.01),
    "nadam_decoupled": lambda o, p: o.NAdam(p, weight_decay=0.2, decoupled_weight_decay=True),
    "radam": lambda o, p: o.RAdam(p, lr=0.01),
    # beta2 = 0.9: rho_t passes 5 at step 6, so both branches of the rectification run
    "radam_rectified": lambda o, p: o.RAdam(p, lr=0.05, betas=(0.8, 0.9), weight_decay=0.1),
    "radam_decoupled_groups": lambda o, p: o.RAdam([{"params": [p[0]], "lr": 0.1}, {"params": [p[1]]}], lr=0.03,
                                                   betas=(0.9, 0.5), weight_decay=0.3, decoupled_weight_decay=True),
}


def _torch_run(make):
    w, c = torch.tensor(W0, requires_grad=True), torch.tensor(C0, requires_grad=True)
    opt = make(torch.optim, [w, c])
    out = []
    for gw, gc in GRADS:
        w.grad, c.grad = torch.tensor(gw), torch.tensor(gc)
        opt.step()
        out.append((w.detach().numpy().copy(), c.detach().numpy().copy()))
    return out


def _our_run(make, jit: bool = False):
    w, c = Tensor(W0.copy(), requires_grad=True), Tensor(C0.copy(), requires_grad=True)
    opt = make(optim, [w, c])

    def step(gw, gc):
        w.grad, c.grad = gw, gc
        opt.step()

    run = TinyJit(step) if jit else step
    out = []
    for gw, gc in GRADS:
        run(Tensor(gw), Tensor(gc))
        out.append((w.numpy().copy(), c.numpy().copy()))
    return out


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_trajectory_matches_torch(name):
    for step, ((w, c), (tw, tc)) in enumerate(zip(_our_run(OPTIMIZERS[name]), _torch_run(OPTIMIZERS[name]))):
        np.testing.assert_allclose(w, tw, rtol=2e-5, atol=2e-6, err_msg=f"{name} step {step}")
        np.testing.assert_allclose(c, tc, rtol=2e-5, atol=2e-6, err_msg=f"{name} step {step}")


@pytest.mark.parametrize("name", ["nadam", "radam_rectified"])
def test_jit_replay_advances_the_step_counts(name):
    for step, ((w, _), (tw, _)) in enumerate(zip(_our_run(OPTIMIZERS[name], jit=True),
                                                 _torch_run(OPTIMIZERS[name]))):
        np.testing.assert_allclose(w, tw, rtol=2e-5, atol=2e-6, err_msg=f"{name} step {step}")


def test_hyperparameter_errors():
    p = [Tensor.zeros(2, requires_grad=True)]
    for make in (lambda: optim.Adamax(p, lr=-1.0), lambda: optim.NAdam(p, betas=(1.0, 0.9)),
                 lambda: optim.RAdam(p, eps=-1e-8), lambda: optim.NAdam(p, momentum_decay=-0.1),
                 lambda: optim.Adamax(p, weight_decay=-0.1)):
        with pytest.raises(ValueError):
            make()
