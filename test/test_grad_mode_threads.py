"""Grad mode is per thread, as in torch: one thread's no_grad (its own or an optimizer step's) never turns
recording off in another, and no interleaving of no_grad blocks across threads leaves it off."""
import threading

import numpy as np
import torch

import tinyjit
from tinyjit import Tensor, nn, optim
from thread_runner import errors_in_threads


def test_another_threads_no_grad_does_not_stop_recording_here():
    inside, release, seen = threading.Event(), threading.Event(), []

    def hold_no_grad():
        with tinyjit.no_grad():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=hold_no_grad)
    t.start()
    inside.wait(10)
    try:
        x = Tensor.ones(3, requires_grad=True)
        seen.append((x * 2).sum().requires_grad)
    finally:
        release.set()
        t.join()
    assert seen == [True]


def test_interleaved_no_grad_blocks_leave_recording_on():
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a():
        with tinyjit.no_grad():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b():
        a_in.wait(10)
        with tinyjit.no_grad():
            b_in.set()
            a_out.wait(10)

    threads = [threading.Thread(target=f) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not Tensor.no_grad_active
    assert (Tensor.ones(2, requires_grad=True) * 3).sum().requires_grad


def test_threads_training_at_once_each_match_torch():
    """Three threads each train their own Linear with SGD (whose step runs under no_grad) at the same time."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal((8, 1)).astype(np.float32)
    results = {}

    def train(i):
        layer = nn.Linear(4, 1)
        w0, b0 = layer.weight.numpy().copy(), layer.bias.numpy().copy()
        opt = optim.SGD(layer.parameters(), lr=0.1)
        for _ in range(15):
            opt.zero_grad()
            ((layer(Tensor(x)) - Tensor(y)) ** 2).mean().backward()
            opt.step()
        results[i] = (w0, b0, layer.weight.numpy())

    errors = errors_in_threads(train, [(i,) for i in range(3)])
    assert not errors, errors
    for w0, b0, w in results.values():
        layer = torch.nn.Linear(4, 1)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(w0))
            layer.bias.copy_(torch.tensor(b0))
        opt = torch.optim.SGD(layer.parameters(), lr=0.1)
        for _ in range(15):
            opt.zero_grad()
            ((layer(torch.tensor(x)) - torch.tensor(y)) ** 2).mean().backward()
            opt.step()
        np.testing.assert_allclose(w, layer.weight.detach().numpy(), rtol=1e-5, atol=1e-6)
