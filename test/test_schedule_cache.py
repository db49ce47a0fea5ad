"""The schedule cache (tinyjit.schedule_cache.cached_schedule): an eager loop that builds a graph of the same structure
every step schedules it once. Tests count cache hits and kernels built, and compare values with PyTorch; graphs
that differ in what the scheduler looks at (which buffer is which, the sign of a zero) must not share a schedule."""
from collections import OrderedDict

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


def _train(steps: int, between=None, continue_walks: bool = True, monkeypatch=None, power: bool = False):
    """A small eager training loop (Linear-tanh-Linear, Adam; the loss realized with the optimizer step as
    backward defers it). Returns (losses, final weights, nodes walked per step, walks continued per step).
    `power`: the square as `** 2`, whose gradient is a custom rule (no gradient template: nothing spliced)."""
    rng = np.random.default_rng(1)
    w1n, w2n = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    xs = rng.standard_normal((steps, 3, 5)).astype(np.float32)
    if not continue_walks:
        monkeypatch.setattr(schedule_cache, "remember_walk", lambda walk: None)
    w1, w2 = Tensor(w1n, requires_grad=True), Tensor(w2n, requires_grad=True)
    opt = optim.Adam([w1, w2], lr=0.05)
    losses, walked, continued = [], [], []
    for i, x in enumerate(xs):
        before_walked, before_continued = schedule.stats["walked_nodes"], schedule.stats["walks_continued"]
        hidden = (Tensor(x) @ w1).tanh()
        out = hidden @ w2
        loss = (out ** 2 if power else out * out).mean()
        loss.backward()
        if between is not None:
            between(i, hidden, loss)
        opt.step()
        opt.zero_grad()
        walked.append(schedule.stats["walked_nodes"] - before_walked)
        continued.append(schedule.stats["walks_continued"] - before_continued)
        losses.append(loss.item())
    return losses, (w1.numpy(), w2.numpy()), walked, continued


def _torch_train(steps: int):
    rng = np.random.default_rng(1)
    w1n, w2n = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    xs = rng.standard_normal((steps, 3, 5)).astype(np.float32)
    w1, w2 = torch.tensor(w1n, requires_grad=True), torch.tensor(w2n, requires_grad=True)
    opt = torch.optim.Adam([w1, w2], lr=0.05)
    losses = []
    for x in xs:
        out = (torch.from_numpy(x) @ w1).tanh() @ w2
        loss = (out * out).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses, (w1.detach().numpy(), w2.detach().numpy())


def test_training_step_walks_its_forward_graph_once(monkeypatch):
    """The optimizer step realizes the loss that backward walked (tinyjit.deferred): its realize continues
    backward's walk (schedule_cache.walk_for), so no node of a step's graph is walked twice (the forward graph was
    walked by backward and again by the step's realize). The values are the same bits as with a fresh walk per
    realize, and torch's."""
    emitted = []   # per GraphWalk.add or splice: the nodes it added
    real_add, real_splice = schedule_cache.GraphWalk.add, schedule_cache.GraphWalk.splice

    def add(walk, outputs):
        before = len(walk.graph)
        real_add(walk, outputs)
        emitted.append([id(n) for n in walk.graph[before:]])

    def splice(walk, fixed, new, memo):
        before = len(walk.graph)
        done = real_splice(walk, fixed, new, memo)
        emitted.append([id(n) for n in walk.graph[before:]])
        return done

    def walked_twice(between):
        emitted.clear()
        with monkeypatch.context() as m:
            m.setattr(schedule_cache.GraphWalk, "add", add)
            m.setattr(schedule_cache.GraphWalk, "splice", splice)
            between()
        ids = [i for nodes in emitted for i in nodes]
        return len(ids) - len(set(ids))

    assert _train(3, power=True)[3] == [1] * 3   # (also without a gradient template)
    losses, weights, walked, continued = _train(5)
    assert continued == [1] * 5
    with monkeypatch.context() as m:
        fresh_losses, fresh_weights, fresh_walked, fresh_continued = _train(5, continue_walks=False, monkeypatch=m)
    assert fresh_continued == [0] * 5
    assert losses == fresh_losses
    for a, b in zip(weights, fresh_weights):
        np.testing.assert_array_equal(a, b)
    assert all(w < f for w, f in zip(walked[1:], fresh_walked[1:])), (walked, fresh_walked)
    torch_losses, torch_weights = _torch_train(5)
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-5)
    for a, b in zip(weights, torch_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # one step, node by node: nothing walked twice with the continued walk; the forward graph twice without
    assert walked_twice(lambda: _train(1)) == 0
    with monkeypatch.context() as m:
        assert walked_twice(lambda: _train(1, continue_walks=False, monkeypatch=m)) > 0


def test_continued_walk_is_not_used_for_other_graphs():
    """backward's walk is continued only by the next realize, when it realizes the loss and the loss's graph is
    unchanged: a realize of the loss alone between backward and the step continues it (and the step walks
    afresh); a realize of a forward value drops it (the step's realize walks afresh: the walk would stop at that
    value now). Every step still computes torch's values."""
    torch_losses, torch_weights = _torch_train(4)

    def read_loss(i, hidden, loss):
        loss.item()

    def read_hidden(i, hidden, loss):
        if i % 2:
            hidden.realize()

    for between in (read_loss, read_hidden):
        losses, weights, walked, continued = _train(4, between)
        if between is read_loss:   # (the loss's own realize)
            assert continued == [1] * 4
        else:
            assert continued[1::2] == [0, 0] and continued[2] == 1
        np.testing.assert_allclose(losses, torch_losses, rtol=1e-5)
        for a, b in zip(weights, torch_weights):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_outputs_are_keyed_in_their_order():
    """A continued walk lists its first root's graph first; its key lists the outputs as the scheduler gets them
    (in order, each once, realized ones left out), so keys of the same graph differ with the outputs' order. A
    fresh walk's roots are those outputs already."""
    x = Tensor(np.arange(4, dtype=np.float32)).realize()
    a, b = x * 2, x + 1
    walk = schedule_cache.GraphWalk([a.node, b.node])
    assert walk.key(outputs=[b.node, a.node]) == walk.key()
    walk.continued = True
    assert walk.key(outputs=[a.node, b.node]) == walk.key()
    assert walk.key(outputs=[b.node, a.node, b.node]) != walk.key()
    assert walk.key(outputs=[b.node, a.node, x.node]) == walk.key(outputs=[b.node, a.node])


def test_backward_splices_its_gradient_graph_into_the_walk(monkeypatch):
    """backward adds the gradient graph it made from a template (or recorded as one) to its walk in the template's
    order (GraphWalk.splice: no node walked), from the first step on, so the step's realize walks only the
    optimizer's nodes, schedules once, and computes the same bits as without splicing."""
    monkeypatch.setattr(schedule_cache, "_schedule_cache", OrderedDict())
    before_schedules, before_spliced = schedule.stats["schedules"], schedule.stats["spliced_nodes"]
    losses, weights, walked, continued = _train(4)
    spliced = schedule.stats["spliced_nodes"] - before_spliced
    assert spliced > 0 and spliced % 4 == 0   # (the same gradient graph every step)
    assert schedule.stats["schedules"] - before_schedules == 1   # the first step's: the key is the same from then on
    with monkeypatch.context() as m:
        m.setattr(schedule_cache.GraphWalk, "splice", lambda walk, fixed, new, memo: False)
        plain_losses, plain_weights, plain_walked, _ = _train(4)
    assert losses == plain_losses
    for a, b in zip(weights, plain_weights):
        np.testing.assert_array_equal(a, b)
    assert [w + spliced // 4 for w in walked] == plain_walked   # each spliced node is one node fewer walked


def test_spliced_entries_are_those_of_the_nodes():
    """The key entries a template keeps for its new nodes (written once, at the first splice) are the entries of
    each later instantiation's own nodes: a walk that emits the same nodes one by one writes the same key."""
    from tinyjit import gradient_cache
    rng = np.random.default_rng(3)
    w = Tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True)
    keys = []
    for step in range(3):
        x = Tensor(rng.standard_normal((2, 4)).astype(np.float32))
        loss = ((x @ w).sigmoid() * 0.5 - 2.0).square().mean()
        loss.backward()
        walk = schedule_cache.remembered_walks.walk
        schedule_cache.remembered_walks.walk = None
        forward = schedule_cache.GraphWalk([loss.node])
        spliced = walk.graph[len(forward.graph):]
        assert spliced and forward.graph == walk.graph[:len(forward.graph)]
        for n in spliced:   # (each node's sources come before it: emitted with their positions)
            forward._emit(n)
        assert forward.key() == walk.key()
        keys.append(walk.key())
        w.grad = None
    assert keys[0] == keys[1] == keys[2]
    assert any(t.walk_memo[0][0] is not None for t in gradient_cache._cache.values())
