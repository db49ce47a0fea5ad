"""TinyJit: capture on the second call, replay after; refuses (JitError) what it cannot replay."""
import numpy as np
import pytest

from tinyjit import JitError, Tensor, TinyJit
from tinyjit import realize as realize_module


def _rand(*shape):
    return np.random.default_rng(len(shape) + sum(shape)).standard_normal(shape).astype(np.float32)


def test_replay_matches_eager_over_many_calls():
    w = Tensor(_rand(4, 3))
    wn = w.numpy()

    @TinyJit
    def f(x, y):
        return ((x @ w).relu() + y).sum(0)

    rng = np.random.default_rng(0)
    for _ in range(8):
        xn = rng.standard_normal((2, 4)).astype(np.float32)
        yn = rng.standard_normal((2, 3)).astype(np.float32)
        out = f(Tensor(xn), Tensor(yn)).numpy()
        np.testing.assert_allclose(out, (np.maximum(xn @ wn, 0) + yn).sum(0), rtol=1e-5, atol=1e-5)
    assert len(f.captured) == 2


def test_replay_runs_no_scheduling():
    @TinyJit
    def f(x):
        return (x * 2 + 1).exp()

    for _ in range(2):
        f(Tensor(_rand(8)))
    compiled = realize_module.counters["kernels_compiled"]
    launched = realize_module.counters["kernels_launched"]
    import tinyjit.schedule as schedule_module
    calls = []
    original = schedule_module.create_schedule
    schedule_module.create_schedule = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        x = _rand(8)
        out = f(Tensor(x)).numpy()
    finally:
        schedule_module.create_schedule = original
    np.testing.assert_allclose(out, np.exp(x * 2 + 1), rtol=1e-5)
    assert calls == []
    assert realize_module.counters["kernels_compiled"] == compiled
    assert realize_module.counters["kernels_launched"] == launched   # replay bypasses run_schedule


def test_in_place_state_updates_every_replay():
    acc = Tensor.zeros(3).contiguous().realize()

    @TinyJit
    def add(x):
        acc.assign(acc + x)
        return acc

    total = np.zeros(3, np.float32)
    for i in range(6):
        x = np.full(3, i, np.float32)
        total += x
        add(Tensor(x))
        np.testing.assert_allclose(acc.numpy(), total)


@pytest.mark.parametrize("change", ["shape", "dtype"])
def test_input_change_raises(change):
    @TinyJit
    def f(x):
        return x + 1

    for _ in range(2):
        f(Tensor(_rand(4)))
    bad = Tensor(_rand(5)) if change == "shape" else Tensor(np.arange(4, dtype=np.int32))
    with pytest.raises(JitError, match="inputs changed"):
        f(bad)


def test_unrealized_input_raises():
    f = TinyJit(lambda x: x + 1)
    with pytest.raises(JitError, match="not realized"):
        f(Tensor(_rand(3)) * 2)


def test_nested_tensor_input_raises():
    f = TinyJit(lambda xs: xs[0] + 1)
    with pytest.raises(JitError, match="nests tensors"):
        f([Tensor(_rand(3))])


def test_changed_python_argument_raises():
    f = TinyJit(lambda x, k: x * k)
    f(Tensor(_rand(3)), 2)
    f(Tensor(_rand(3)), 2)
    np.testing.assert_allclose(f(Tensor(np.ones(3, np.float32)), 2).numpy(), [2, 2, 2])
    with pytest.raises(JitError, match="non-tensor argument changed"):
        f(Tensor(_rand(3)), 3)


def test_nothing_captured_raises():
    const = Tensor(_rand(3))
    f = TinyJit(lambda x: const)
    f(Tensor(_rand(3)))
    with pytest.raises(JitError, match="no kernels"):
        f(Tensor(_rand(3)))


def test_jitted_training_loop_matches_eager_every_step():
    """The weights change every step; replayed steps must track the eager ones exactly (same kernels)."""
    from tinyjit import nn, optim

    def make():
        Tensor.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        return model, optim.Adam(model.parameters(), lr=1e-2)

    def train_step(model, opt, x, y):
        opt.zero_grad()
        loss = model(x).cross_entropy(y)
        loss.backward()
        opt.step()
        return loss

    eager_model, eager_opt = make()
    jit_model, jit_opt = make()
    jitted = TinyJit(lambda x, y: train_step(jit_model, jit_opt, x, y))
    rng = np.random.default_rng(0)
    for _ in range(6):
        xn = rng.standard_normal((5, 6)).astype(np.float32)
        yn = rng.integers(0, 3, 5).astype(np.int32)
        eager_loss = train_step(eager_model, eager_opt, Tensor(xn), Tensor(yn)).item()
        jit_loss = jitted(Tensor(xn), Tensor(yn)).item()
        np.testing.assert_allclose(jit_loss, eager_loss, rtol=1e-5)
        for (name, p), (_, q) in zip(eager_model.named_parameters(), jit_model.named_parameters()):
            np.testing.assert_allclose(q.numpy(), p.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    assert len(jitted.captured) > 0


# ---- buffers the replay writes, fed back in ----
def test_an_output_fed_back_as_the_next_input(device):
    """The replay writes the buffer the previous call returned; passed back in, it is copied first (the shift
    would otherwise read elements it already overwrote, and race across threads)."""
    fn = lambda x: x.pad(((1, 0),))[:-1] + 1   # noqa: E731
    f = TinyJit(fn)
    x = Tensor.zeros(64).contiguous().realize()
    eager = Tensor.zeros(64).contiguous().realize()
    for call in range(6):
        x, eager = f(x), fn(eager).realize()
        np.testing.assert_array_equal(x.numpy(), eager.numpy(), err_msg=f"call {call}")
    assert x.numpy()[16] == 6.0


def test_an_intermediate_fed_back_as_an_input(device):
    def fn(x, y):
        h = (x * 2).contiguous()
        return h, (h.flip(0) + y).contiguous()
    f = TinyJit(fn)
    x, y = Tensor(np.arange(8, dtype=np.float32)).realize(), Tensor(np.ones(8, np.float32)).realize()
    ex, ey = x, y
    for call in range(5):
        h, out = f(x, y)
        eh, eout = fn(ex, ey)
        np.testing.assert_array_equal(out.numpy(), eout.numpy(), err_msg=f"call {call}")
        x, y, ex, ey = out, h, eout.realize(), eh.realize()   # y is the replay's intermediate buffer


# ---- threads: a capture records its own thread's launches only ----
def test_two_threads_capture_only_their_own_kernels():
    import threading
    capturing, other_launched = threading.Event(), threading.Event()
    stop = threading.Event()
    w = Tensor.zeros(4).contiguous().realize()   # thread B's tensor
    b_updates = [0]

    def other_thread():
        while not stop.is_set():
            w.assign(w + 1).realize()
            b_updates[0] += 1
            if capturing.is_set():
                other_launched.set()

    def body(x):
        y = (x * 2).contiguous().realize()
        if f.calls == 2:   # the capture: let the other thread launch meanwhile
            capturing.set()
            assert other_launched.wait(30)
        return y + 1

    f = TinyJit(body)
    b = threading.Thread(target=other_thread)
    b.start()
    try:
        for i in range(2):
            f(Tensor(np.full(4, i, np.float32)))
    finally:
        stop.set()
        b.join()
    assert len(f.captured) == 2, len(f.captured)
    np.testing.assert_array_equal(w.numpy(), np.full(4, b_updates[0]))
    for i in range(3):
        np.testing.assert_array_equal(f(Tensor(np.full(4, i, np.float32))).numpy(), np.full(4, 2 * i + 1))
    np.testing.assert_array_equal(w.numpy(), np.full(4, b_updates[0]))   # A's replays never touch B's buffer


def test_two_threads_with_tinyjit_match_eager():
    import threading
    results, errors = {}, []

    def worker(k):
        try:
            state = Tensor.zeros(8).contiguous().realize()

            @TinyJit
            def step(x):
                state.assign(state * 0.5 + x)
                return (state * 2).sum()

            expected = np.zeros(8, np.float32)
            for i in range(30):
                x = np.full(8, k + i, np.float32)
                expected = expected * 0.5 + x
                out = step(Tensor(x)).numpy()
                np.testing.assert_allclose(out, 2 * expected.sum(), rtol=1e-6)
            results[k] = (state.numpy(), expected, len(step.captured))
        except Exception as e:   # reported below, from the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in (1, 100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k, (state, expected, captured) in results.items():
        np.testing.assert_allclose(state, expected, rtol=1e-6)
        assert captured == 2


# ---- a replay updates in place like a realize: lazy values that read the old contents keep them ----
def test_a_replay_keeps_lazy_values_that_read_what_it_updates(device):
    from tinyjit import inplace, nn, optim
    rng = np.random.default_rng(0)
    x, y = Tensor(rng.standard_normal((6, 4)).astype(np.float32)), Tensor(rng.integers(0, 3, 6).astype(np.int32))
    test = Tensor(rng.standard_normal((6, 4)).astype(np.float32))
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    opt = optim.SGD(model.parameters(), lr=0.5)

    @TinyJit
    def step(x, y):
        opt.zero_grad()
        loss = model(x).cross_entropy(y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(4):
        step(x, y)
    copies = inplace.stats["buffers_preserved"]
    step(x, y)
    assert inplace.stats["buffers_preserved"] == copies   # nothing reads the old weights: no copy
    prediction, expected = model(test), model(test).numpy()
    weight = model[0].weight.detach()
    weight_before = weight.numpy()
    step(x, y)
    assert inplace.stats["buffers_preserved"] == copies + 4   # the prediction reads all four parameters
    np.testing.assert_allclose(prediction.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(weight.numpy(), weight_before)
    assert not np.allclose(model[0].weight.numpy(), weight_before)   # the model itself moved on
    assert not np.allclose(model(test).numpy(), expected)
    step(x, y)
    assert inplace.stats["buffers_preserved"] == copies + 4


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_lazy_reader_of_parameters_alive_during_captured_step(optimizer):
    """A lazy value that reads the parameters and is alive while the captured step updates them (an accuracy, or
    a value returned from the step) gets a copy of the old contents; the replayed update and that value must
    match eager on every call, and a reader built outside the function keeps its value across replays."""
    from tinyjit import optim

    def run(jit: bool):
        w = Tensor([1.0, 2.0], requires_grad=True)
        opt = getattr(optim, optimizer)([w], lr=0.1)
        x = Tensor([3.0, 4.0])

        def step():
            opt.zero_grad()
            loss = (w * x).sum()
            before = w * 2   # reads w as it was before the update
            loss.backward()
            opt.step()
            return loss, before
        f = TinyJit(step) if jit else step
        rows, outside = [], None
        for i in range(5):
            if i == 3:
                outside = w * 3   # built outside the step, read after two more steps
            loss, before = f()
            rows.append([loss.item(), *before.numpy().tolist()])
        return np.array(rows), w.numpy(), outside.numpy()
    for got, want in zip(run(True), run(False)):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_assign_nothing_returned_reads_is_replayed():
    """A KV-cache update: the step assigns the cache and returns a value computed from the new contents as a lazy
    value of its own (not by reading the cache back). The assign is part of every call, replays included (it used
    to stay pending outside the capture, so replays never updated the cache)."""
    cache = Tensor.zeros(4).contiguous().realize()

    @TinyJit
    def step(x, at):
        new = at.where(x, cache)
        cache.assign(new)
        return (new * 2).sum()

    expected = np.zeros(4, np.float32)
    for i in range(6):
        at = np.arange(4) == i % 4
        expected = np.where(at, np.float32(i + 1), expected)
        out = step(Tensor(np.full(4, i + 1, np.float32)), Tensor(at)).item()
        assert out == pytest.approx(2 * expected.sum())
        np.testing.assert_array_equal(cache.numpy(), expected)
    assert len(step.captured) == 2   # the sum and the cache update


def _packed_rnn_steps(w_in_place: bool):
    """A TinyJit function running the same W.T product at 3 steps (W.T is read across its layout, so each product's
    kernel packs it into scratch first); with `w_in_place`, W is updated in place between steps 2 and 3."""
    rng = np.random.default_rng(5)
    w = Tensor(rng.standard_normal((256, 64)).astype(np.float32) * 0.1)

    def steps(h):
        outs = []
        for t in range(3):
            if w_in_place and t == 2:
                w.add_(1.0)
            h = (h @ w.T)[:, :64].tanh()
            outs.append(h)
        return Tensor.stack(outs).realize()
    return w, TinyJit(steps), rng


@pytest.mark.parametrize("w_in_place", [False, True])
def test_replay_packs_a_shared_weight_once_unless_it_changed(w_in_place):
    """The copies packing W for each step's product repeat each other: a replay runs the first only and the later
    products read its scratch; when W is written in between, the copy after the write runs again. Values match a
    plain (eager) run on every call, with new inputs."""
    w, jitted, rng = _packed_rnn_steps(w_in_place)
    for call in range(4):
        h = rng.standard_normal((20, 64)).astype(np.float32)
        w_before = w.numpy().copy()
        got = jitted(Tensor(h)).numpy()
        expected, state = [], h
        for t in range(3):
            weights = w_before + 1.0 if w_in_place and t == 2 else w_before
            state = np.tanh((state @ weights.T)[:, :64])
            expected.append(state)
        np.testing.assert_allclose(got, np.stack(expected), rtol=1e-4, atol=1e-5)
    # (the first launch packs W; the later steps' A, an expression, is packed too, each from a different h)
    w_packs = [s for s in jitted.captured if s.writes_scratch and s.run.source == jitted.captured[0].run.source]
    assert len(w_packs) == 3, [s.run.name for s in jitted.captured]
    dropped = len(jitted.captured) - len(jitted.prepared)
    assert dropped == (1 if w_in_place else 2), "repeated packs of W dropped from the replay"


# ---- inputs returned: the call's own inputs, not the capture call's ----
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_an_input_written_in_place_and_returned_is_this_calls_input(device, dtype):
    """`buf.add_(v); return buf` with a new buf each call: a replay returns the caller's buf (as eager and torch
    do), with this call's values, not a tensor over the capture call's buffer. Also a view of it, the same tensor
    twice, an unchanged input, and a slice assignment."""
    def fn(buf, v):
        buf.add_(v)
        buf[1:3] = v[:2] * 3
        return buf, buf[1:].reshape(3, 1), buf, v
    f = TinyJit(fn)
    for call in range(5):
        buf = Tensor(np.zeros(4, dtype)).realize()
        v = Tensor(np.arange(4, dtype=dtype) + call).realize()
        out, view, again, v_out = f(buf, v)
        expected = np.arange(4, dtype=dtype) + call
        expected[1:3] = expected[:2] * 3
        assert out is buf and again is buf and v_out is v, f"call {call}"
        np.testing.assert_array_equal(buf.numpy(), expected, err_msg=f"call {call}")
        np.testing.assert_array_equal(view.numpy(), expected[1:].reshape(3, 1), err_msg=f"call {call}")
        np.testing.assert_array_equal(v_out.numpy(), np.arange(4, dtype=dtype) + call, err_msg=f"call {call}")
