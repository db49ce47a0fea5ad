"""More learning-rate schedulers, each stepped beside torch's on the same optimizer config (two param groups with
different rates): get_last_lr() and the groups' lr after every step must match. No kernels run here (the schedulers
only set Python floats), so these tests are fast."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tinyjit import Tensor, optim
from tinyjit.optim import lr_scheduler as ours_lr

theirs_lr = torch.optim.lr_scheduler


def optimizers():
    """A tinyjit and a torch SGD with the same two param groups (lr 0.1 and 0.02, momentum)."""
    mine = optim.SGD([{"params": [Tensor.zeros(2, requires_grad=True)]},
                      {"params": [Tensor.zeros(3, requires_grad=True)], "lr": 0.02}], lr=0.1, momentum=0.9)
    reference = torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)]},
                                 {"params": [torch.zeros(3, requires_grad=True)], "lr": 0.02}], lr=0.1, momentum=0.9)
    return mine, reference


def run_side_by_side(make_ours, make_theirs, steps: int = 25, metrics=None):
    mine, reference = optimizers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch warns that optimizer.step() was not called first
        ours, theirs = make_ours(mine), make_theirs(reference)
        np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12, atol=1e-15)
        for i in range(steps):
            if metrics is None:
                ours.step(), theirs.step()
            else:
                ours.step(metrics[i]), theirs.step(metrics[i])
            np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12, atol=1e-15,
                                       err_msg=f"after step {i + 1}")
            np.testing.assert_allclose([g["lr"] for g in mine.param_groups],
                                       [g["lr"] for g in reference.param_groups], rtol=1e-12, atol=1e-15)


SCHEDULES = {
    "MultiStepLR": lambda m, lr: lr.MultiStepLR(m, milestones=[3, 7, 7, 12], gamma=0.5),
    "ExponentialLR": lambda m, lr: lr.ExponentialLR(m, gamma=0.9),
    "LambdaLR": lambda m, lr: lr.LambdaLR(m, lambda e: 1 / (e + 1)),
    "LambdaLR per group": lambda m, lr: lr.LambdaLR(m, [lambda e: 0.95 ** e, lambda e: 1 + e]),
    "MultiplicativeLR": lambda m, lr: lr.MultiplicativeLR(m, lambda e: 0.9 if e % 2 else 1.05),
    "ConstantLR": lambda m, lr: lr.ConstantLR(m, factor=0.5, total_iters=4),
    "ConstantLR default": lambda m, lr: lr.ConstantLR(m),
    "LinearLR": lambda m, lr: lr.LinearLR(m, start_factor=0.25, end_factor=0.75, total_iters=6),
    "PolynomialLR": lambda m, lr: lr.PolynomialLR(m, total_iters=8, power=2.0),
    "PolynomialLR linear": lambda m, lr: lr.PolynomialLR(m),
    "CosineAnnealingWarmRestarts": lambda m, lr: lr.CosineAnnealingWarmRestarts(m, T_0=4, eta_min=0.001),
    "CosineAnnealingWarmRestarts T_mult": lambda m, lr: lr.CosineAnnealingWarmRestarts(m, T_0=2, T_mult=2),
    "SequentialLR": lambda m, lr: lr.SequentialLR(m, [lr.LinearLR(m, start_factor=0.1, total_iters=3),
                                                      lr.ExponentialLR(m, gamma=0.8),
                                                      lr.CosineAnnealingLR(m, T_max=5)], milestones=[4, 10]),
    "SequentialLR constant then step": lambda m, lr: lr.SequentialLR(m, [lr.ConstantLR(m, factor=0.3),
                                                                         lr.StepLR(m, 3, 0.5)], milestones=[5]),
    "ChainedScheduler": lambda m, lr: lr.ChainedScheduler([lr.ConstantLR(m, factor=0.1, total_iters=6),
                                                            lr.ExponentialLR(m, gamma=0.9)]),
    "ChainedScheduler given the optimizer": lambda m, lr: lr.ChainedScheduler(
        [lr.LinearLR(m, start_factor=0.5, total_iters=4), lr.MultiStepLR(m, [3, 9], 0.5),
         lr.CosineAnnealingLR(m, T_max=7)], optimizer=m),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_scheduler_matches_torch_step_by_step(name):
    run_side_by_side(lambda m: SCHEDULES[name](m, ours_lr), lambda m: SCHEDULES[name](m, theirs_lr))


def test_warm_restarts_with_fractional_epochs():
    mine, reference = optimizers()
    ours = ours_lr.CosineAnnealingWarmRestarts(mine, T_0=3, T_mult=2, eta_min=0.01)
    theirs = theirs_lr.CosineAnnealingWarmRestarts(reference, T_0=3, T_mult=2, eta_min=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in (0.5, 1.25, 2.9, 3.0, 7.5, 10.0, 4.2, 20.0):
            ours.step(epoch), theirs.step(epoch)
            np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12)
    with pytest.raises(ValueError):
        ours.step(-1)


@pytest.mark.parametrize("kwargs", [{}, {"mode": "max", "factor": 0.5, "patience": 2, "cooldown": 2},
                                    {"threshold_mode": "abs", "threshold": 0.05, "patience": 1, "min_lr": 0.004},
                                    {"patience": 0, "min_lr": [0.05, 0.0], "eps": 1e-3}])
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    rng = np.random.default_rng(3)
    metrics = list(np.round(1 / np.arange(1, 41) + rng.standard_normal(40) * 0.05, 3))
    metrics[20:30] = [0.5] * 10   # a plateau
    run_side_by_side(lambda m: ours_lr.ReduceLROnPlateau(m, **kwargs),
                     lambda m: theirs_lr.ReduceLROnPlateau(m, **kwargs), steps=40, metrics=metrics)


def test_step_with_an_epoch_uses_the_closed_form():
    for make in (lambda m, lr: lr.ExponentialLR(m, 0.5), lambda m, lr: lr.MultiStepLR(m, [2, 4]),
                 lambda m, lr: lr.PolynomialLR(m, 4), lambda m, lr: lr.StepLR(m, 2)):
        mine, reference = optimizers()
        ours, theirs = make(mine, ours_lr), make(reference, theirs_lr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours.step(3), theirs.step(3)
        np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12)


def test_scheduler_errors_and_state():
    mine, _ = optimizers()
    with pytest.raises(ValueError):
        ours_lr.ConstantLR(mine, factor=1.5)
    with pytest.raises(ValueError):
        ours_lr.LambdaLR(mine, [lambda e: 1.0])
    with pytest.raises(ValueError):
        ours_lr.CosineAnnealingWarmRestarts(mine, T_0=0)
    with pytest.raises(ValueError):
        ours_lr.ReduceLROnPlateau(mine, factor=1.0)
    with pytest.raises(ValueError):
        ours_lr.ReduceLROnPlateau(mine, mode="up")
    with pytest.raises(ValueError):
        ours_lr.SequentialLR(mine, [ours_lr.ExponentialLR(mine, 0.9)], milestones=[3])
    other, _ = optimizers()
    with pytest.raises(ValueError):
        ours_lr.SequentialLR(mine, [ours_lr.ExponentialLR(mine, 0.9), ours_lr.ExponentialLR(other, 0.9)], [2])
    # a scheduler's state round-trips: a copy resumed from it continues identically
    first = ours_lr.ExponentialLR(mine, 0.5)
    first.step()
    saved = first.state_dict()
    first.step()
    again = ours_lr.ExponentialLR(optimizers()[0], 0.5)
    again.load_state_dict(saved)
    assert again.last_epoch == 1 and again.get_last_lr() == saved["_last_lr"]
    plateau = ours_lr.ReduceLROnPlateau(mine, patience=0)
    plateau.step(1.0), plateau.step(2.0)
    assert plateau.state_dict()["num_bad_epochs"] == 0 and plateau.get_last_lr()[0] < 0.1 * 0.5 ** 2 + 1e-12


def test_chained_scheduler_errors_and_state():
    mine, _ = optimizers()
    other, _ = optimizers()
    with pytest.raises(ValueError):
        ours_lr.ChainedScheduler([])
    with pytest.raises(ValueError):
        ours_lr.ChainedScheduler([ours_lr.ExponentialLR(mine, 0.9), ours_lr.ExponentialLR(other, 0.9)])
    with pytest.raises(ValueError):
        ours_lr.ChainedScheduler([ours_lr.ExponentialLR(mine, 0.9), ours_lr.ReduceLROnPlateau(mine)])
    with pytest.raises(ValueError):
        ours_lr.ChainedScheduler([ours_lr.ExponentialLR(mine, 0.9)], optimizer=other)
    chained = ours_lr.ChainedScheduler([ours_lr.ConstantLR(mine, 0.5, 2), ours_lr.ExponentialLR(mine, 0.9)])
    chained.step()
    saved = chained.state_dict()
    assert [s["last_epoch"] for s in saved["_schedulers"]] == [1, 1] and "optimizer" not in saved
    copy_of, _ = optimizers()
    resumed = ours_lr.ChainedScheduler([ours_lr.ConstantLR(copy_of, 0.5, 2), ours_lr.ExponentialLR(copy_of, 0.9)])
    resumed.load_state_dict(saved)
    assert [s.last_epoch for s in resumed._schedulers] == [1, 1] and resumed.get_last_lr() == chained.get_last_lr()
