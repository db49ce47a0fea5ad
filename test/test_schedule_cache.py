"""The schedule cache (tinyjit.schedule_cache.cached_schedule): an eager loop that builds a graph of the same structure
every step schedules it once. Tests count cache hits and kernels built, and compare values with PyTorch; graphs
that differ in what the scheduler looks at (which buffer is which, the sign of a zero) must not share a schedule."""
import numpy as np
import torch

import tinyjit.schedule as schedule
import tinyjit.schedule_cache as schedule_cache
from tinyjit import Tensor, optim


def test_repeated_eager_training_step_reuses_its_schedule():
    rng = np.random.default_rng(0)
    wn = rng.standard_normal((5, 3)).astype(np.float32)
    xs = rng.standard_normal((4, 6, 5)).astype(np.float32)
    w, wt = Tensor(wn, requires_grad=True), torch.tensor(wn, requires_grad=True)
    opt, opt_t = optim.Adam([w], lr=0.1), torch.optim.Adam([wt], lr=0.1)
    hits, built = [], []
    for x in xs:
        before_hits, before_built = schedule.stats["schedule_cache_hits"], schedule.stats["kernels_built"]
        loss = ((Tensor(x) @ w).tanh() ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        value = loss.item()
        hits.append(schedule.stats["schedule_cache_hits"] - before_hits)
        built.append(schedule.stats["kernels_built"] - before_built)
        loss_t = ((torch.from_numpy(x) @ wt).tanh() ** 2).mean()
        loss_t.backward()
        opt_t.step()
        opt_t.zero_grad()
        assert abs(value - loss_t.item()) < 1e-5
        np.testing.assert_allclose(w.numpy(), wt.detach().numpy(), rtol=1e-5, atol=1e-6)
    # the first step schedules (the first Adam step differs from the later ones only in values on the device);
    # every later step is the same structure: a hit, nothing lowered again
    assert built[0] > 0
    assert all(h >= 1 for h in hits[2:]) and all(b == 0 for b in built[2:]), (hits, built)


def test_which_buffer_is_which_is_part_of_the_structure():
    """a.assign(b + 1) and a.assign(a + 1) have the same ops and shapes; the second reads its own target."""
    a, b = Tensor.zeros(4).contiguous().realize(), Tensor.ones(4).contiguous().realize()
    for _ in range(2):
        a.assign(b + 1).realize()
        np.testing.assert_array_equal(a.numpy(), np.full(4, 2, np.float32))
    for expected in (3, 4):
        a.assign(a + 1).realize()
        np.testing.assert_array_equal(a.numpy(), np.full(4, expected, np.float32))


def test_signed_zero_constants_do_not_share_a_schedule():
    x = Tensor(np.ones(3, np.float32)).realize()
    for _ in range(2):   # the second of each is a cache hit
        assert np.all((1 / (x * 0.0)).numpy() == np.inf)
        assert np.all((1 / (x * -0.0)).numpy() == -np.inf)


def test_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(schedule_cache, "SCHEDULE_CACHE_ENTRIES", 4)
    for n in range(1, 9):
        (Tensor.ones(n).contiguous() * 2).realize()
    assert len(schedule_cache._schedule_cache) <= 4


def test_cache_hit_compares_the_long_key_once(monkeypatch):
    """A hit finds the entry by hash and one item-by-item comparison; moving the entry to the end of the LRU order
    uses the stored key (found by identity), not a second comparison of a key with an item per graph node."""
    x = Tensor(np.ones(4, np.float32)).realize()
    compared = []
    original_eq = schedule_cache._HashedKey.__eq__

    def counting_eq(self, other):
        compared.append(other)
        return original_eq(self, other)
    for _ in range(2):
        ((x * 2).exp() + 1).realize()
    monkeypatch.setattr(schedule_cache._HashedKey, "__eq__", counting_eq)
    hits = schedule.stats["schedule_cache_hits"]
    out = ((x * 2).exp() + 1).numpy()
    assert schedule.stats["schedule_cache_hits"] == hits + 1
    assert len(compared) == 1, f"{len(compared)} comparisons of the structure key on one hit"
    np.testing.assert_allclose(out, np.exp(np.full(4, 2, np.float32)) + 1, rtol=1e-6)
