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
