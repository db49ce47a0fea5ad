"""Optimizers and schedulers against torch.optim: trajectories from the same start, lr sequences,
clip_grad_norm_, checkpoints, and TinyJit replay seeing scheduled learning rates.

The trajectory tests compute gradients by hand (a least-squares problem), so they test the update rules alone;
the autograd-based tests (MLP training, kernel counts) are further down."""
import numpy as np
import pytest
import torch

from tinyjit import Tensor, TinyJit, nn, optim

RNG = np.random.default_rng(0)
X = RNG.standard_normal((8, 4)).astype(np.float32)
Y = RNG.standard_normal((8, 3)).astype(np.float32)
W0 = RNG.standard_normal((3, 4)).astype(np.float32) * 0.5
C0 = RNG.standard_normal(3).astype(np.float32) * 0.5


def _least_squares_grads(w: Tensor, c: Tensor, x: Tensor, y: Tensor):
    """Gradients of 0.5 * mean_i ||W x_i + c - y_i||^2, written out (no autograd)."""
    r = (x @ w.T + c - y) * (1 / x.shape[0])
    return r.T @ x, r.sum(0)


def _torch_run(make_opt, steps, sched=None):
    w, c = torch.tensor(W0, requires_grad=True), torch.tensor(C0, requires_grad=True)
    opt = make_opt(torch.optim, [w, c])
    s = sched(torch.optim.lr_scheduler, opt) if sched else None
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * ((torch.tensor(X) @ w.T + c - torch.tensor(Y)) ** 2).sum(1).mean()
        loss.backward()
        opt.step()
        if s:
            s.step()
        out.append((w.detach().numpy().copy(), c.detach().numpy().copy()))
    return out


def _our_run(make_opt, steps, sched=None, jit=False):
    w, c = Tensor(W0.copy(), requires_grad=True), Tensor(C0.copy(), requires_grad=True)
    x, y = Tensor(X), Tensor(Y)
    opt = make_opt(optim, [w, c])
    s = sched(optim.lr_scheduler, opt) if sched else None

    def step(x, y):
        opt.zero_grad()
        w.grad, c.grad = _least_squares_grads(w, c, x, y)
        opt.step()

    run = TinyJit(step) if jit else step
    out = []
    for _ in range(steps):
        run(x, y)
        if s:
            s.step()
        out.append((w.numpy().copy(), c.numpy().copy()))
    return out


OPTIMIZERS = {
    "sgd": lambda o, p: o.SGD(p, lr=0.1),
    "sgd_momentum_dampening_wd": lambda o, p: o.SGD(p, lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01),
    "sgd_nesterov_maximize": lambda o, p: o.SGD(p, lr=0.01, momentum=0.8, nesterov=True, maximize=True),
    "adam": lambda o, p: o.Adam(p, lr=0.05),
    "adam_wd_amsgrad": lambda o, p: o.Adam(p, lr=0.05, betas=(0.8, 0.9), weight_decay=0.1, amsgrad=True),
    "adamw": lambda o, p: o.AdamW(p, lr=0.05, weight_decay=0.3),
    "adam_groups": lambda o, p: o.Adam([{"params": [p[0]], "lr": 0.1}, {"params": [p[1]]}], lr=0.02),
    "rmsprop": lambda o, p: o.RMSprop(p, lr=0.01),
    "rmsprop_centered_momentum": lambda o, p: o.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.5, centered=True,
                                                        weight_decay=0.05),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_trajectory_matches_torch(name):
    ours, theirs = _our_run(OPTIMIZERS[name], 10), _torch_run(OPTIMIZERS[name], 10)
    for step, ((w, c), (tw, tc)) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(w, tw, rtol=1e-5, atol=1e-6, err_msg=f"{name} step {step}")
        np.testing.assert_allclose(c, tc, rtol=1e-5, atol=1e-6, err_msg=f"{name} step {step}")


def test_lion_matches_reference():
    lr, (b1, b2), wd = 0.01, (0.9, 0.99), 0.1
    ours = _our_run(lambda o, p: o.Lion(p, lr=lr, betas=(b1, b2), weight_decay=wd), 10)
    w, c = W0.astype(np.float64), C0.astype(np.float64)
    mw, mc = np.zeros_like(w), np.zeros_like(c)
    for step in range(10):
        r = (X @ w.T + c - Y) / len(X)
        gw, gc = r.T @ X, r.sum(0)
        for p, m, g in ((w, mw, gw), (c, mc, gc)):
            p *= 1 - lr * wd
            p -= lr * np.sign(b1 * m + (1 - b1) * g)
            m[...] = b2 * m + (1 - b2) * g
        np.testing.assert_allclose(ours[step][0], w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours[step][1], c, rtol=1e-5, atol=1e-6)


# which parameters have a gradient at each step: a parameter without one is skipped and its state does not advance
SKIP_PATTERN = [(0,), (0, 1), (1, 2), (0, 1, 2), (2,), (0, 2)]
SHAPES = [(3,), (2, 2), (1,)]


def _grads(step: int):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def _lion_reference(lr, betas, weight_decay, params):
    """torch.optim has no Lion: the update of Chen et al. 2023, in float64, skipping parameters without grads."""
    params, exp_avgs = [p.astype(np.float64) for p in params], [np.zeros(s) for s in SHAPES]
    out = []
    for step, having in enumerate(SKIP_PATTERN):
        for i in having:
            g = _grads(step)[i]
            params[i] *= 1 - lr * weight_decay
            params[i] -= lr * np.sign(betas[0] * exp_avgs[i] + (1 - betas[0]) * g)
            exp_avgs[i] = betas[1] * exp_avgs[i] + (1 - betas[1]) * g
        out.append([p.copy() for p in params])
    return out


@pytest.mark.parametrize("name", list(OPTIMIZERS) + ["lion"])
def test_parameters_without_a_gradient_are_skipped_like_torch(device, name):
    """torch.optim semantics: the step count and state are per parameter; with A, B = [1], [1] and Adam(lr=0.01),
    A alone at step 1 and both at step 2, B is 0.99 (bias-corrected as at its own first step)."""
    rng = np.random.default_rng(7)
    starts = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    ours = [Tensor(a.copy(), requires_grad=True) for a in starts]
    opt = (optim.Lion(ours, lr=0.01, betas=(0.9, 0.99), weight_decay=0.1) if name == "lion"
           else OPTIMIZERS[name](optim, ours))
    if name == "lion":
        expected = _lion_reference(0.01, (0.9, 0.99), 0.1, starts)
    else:
        theirs = [torch.tensor(a.copy(), requires_grad=True) for a in starts]
        topt = OPTIMIZERS[name](torch.optim, theirs)
        expected = []
    for step, having in enumerate(SKIP_PATTERN):
        grads = _grads(step)
        for i, p in enumerate(ours):
            p.grad = Tensor(grads[i]) if i in having else None
        opt.step()
        if name != "lion":
            for i, t in enumerate(theirs):
                t.grad = torch.tensor(grads[i]) if i in having else None
            topt.step()
            expected.append([t.detach().numpy().copy() for t in theirs])
        for i, p in enumerate(ours):
            np.testing.assert_allclose(p.numpy(), expected[step][i], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name}: parameter {i} after step {step}")


def test_adam_step_count_is_per_parameter(device):
    a, b = Tensor([1.0], requires_grad=True), Tensor([1.0], requires_grad=True)
    opt = optim.Adam([a, b], lr=0.01)
    a.grad = Tensor([0.5])
    opt.step()
    a.grad, b.grad = Tensor([0.5]), Tensor([0.5])
    opt.step()
    np.testing.assert_allclose(b.numpy(), [0.99], rtol=1e-6)
    np.testing.assert_allclose(a.numpy(), [0.98], rtol=1e-6)


def test_adam_counts_survive_a_checkpoint_and_are_shared_again():
    """Saved per parameter; parameters with equal counts share one count tensor after loading (one kernel advances
    it per step), and training continues as in torch."""
    from tinyjit.realize import counters
    starts = [np.full(s, 0.5, np.float32) for s in SHAPES]
    ours = [Tensor(a.copy(), requires_grad=True) for a in starts]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in starts]
    opt, topt = optim.Adam(ours, lr=0.1), torch.optim.Adam(theirs, lr=0.1)
    for step, having in enumerate([(0,), (0, 1, 2)]):
        for i, (p, t) in enumerate(zip(ours, theirs)):
            p.grad, t.grad = (Tensor(_grads(step)[i]), torch.tensor(_grads(step)[i])) if i in having else (None, None)
        opt.step()
        topt.step()
    resumed_params = [Tensor(p.numpy(), requires_grad=True) for p in ours]
    resumed = optim.Adam(resumed_params, lr=0.1)
    resumed.load_state_dict(opt.state_dict())
    counts = [resumed.state[p]["bias_correction"] for p in resumed_params]
    assert counts[1] is counts[2] and counts[0] is not counts[1]    # B and C have stepped once, A twice
    for i, (p, t) in enumerate(zip(resumed_params, theirs)):
        p.grad, t.grad = Tensor(_grads(5)[i]), torch.tensor(_grads(5)[i])
    before = counters["kernels_launched"]
    resumed.step()
    topt.step()
    assert counters["kernels_launched"] - before == 2 + 3 * 3    # two counts; m, v and the parameter, each
    for p, t in zip(resumed_params, theirs):
        np.testing.assert_allclose(p.numpy(), t.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_updates_are_in_place():
    w = Tensor(W0.copy(), requires_grad=True)
    opt = optim.Adam([w], lr=0.1)
    buffer = w.node.buffer
    for _ in range(2):
        w.grad = Tensor.ones(*w.shape)
        opt.step()
    assert w.node.buffer is buffer
    assert all(s.node.buffer is not None for s in opt.state[w].values())


# ---- schedulers ----
SCHEDULERS = {
    "step": (lambda s, o: s.StepLR(o, step_size=3, gamma=0.5), 10),
    "cosine": (lambda s, o: s.CosineAnnealingLR(o, T_max=4, eta_min=0.001), 13),
    "linear": (lambda s, o: s.LinearLR(o, start_factor=0.25, end_factor=0.9, total_iters=4), 8),
    "onecycle": (lambda s, o: s.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=12), 12),
    "onecycle_linear_3phase": (lambda s, o: s.OneCycleLR(o, max_lr=0.3, epochs=2, steps_per_epoch=5,
                                                         anneal_strategy="linear", three_phase=True), 10),
}


@pytest.mark.parametrize("name", list(SCHEDULERS))
@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_scheduler_sequence_matches_torch(name, opt_name):
    make, steps = SCHEDULERS[name]
    ours_p = [Tensor.zeros(2).contiguous().realize(), Tensor.zeros(3).contiguous().realize()]
    theirs_p = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    kw = {"momentum": 0.9} if opt_name == "SGD" else {}
    ours_opt = getattr(optim, opt_name)([{"params": [ours_p[0]]}, {"params": [ours_p[1]], "lr": 0.05}], lr=0.1, **kw)
    theirs_opt = getattr(torch.optim, opt_name)([{"params": [theirs_p[0]]}, {"params": [theirs_p[1]], "lr": 0.05}],
                                                lr=0.1, **kw)
    ours, theirs = make(optim.lr_scheduler, ours_opt), make(torch.optim.lr_scheduler, theirs_opt)
    key = "momentum" if opt_name == "SGD" else "betas"
    for _ in range(steps):
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
        for g, tg in zip(ours_opt.param_groups, theirs_opt.param_groups):
            assert g[key] == pytest.approx(tg[key], rel=1e-12)
            assert g.lr_tensor("CPU").item() == pytest.approx(tg["lr"], rel=1e-6)   # the device copy follows
        ours_opt.step()
        theirs_opt.step()
        ours.step()
        theirs.step()


def test_onecycle_errors():
    opt = optim.SGD([Tensor.zeros(2).contiguous().realize()], lr=0.1)
    with pytest.raises(ValueError, match="total_steps"):
        optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0)
    sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=2)
    sched.step()
    sched.step()
    with pytest.raises(ValueError, match="stepped 3 times"):
        sched.step()
    with pytest.raises(ValueError, match="momentum or betas"):
        optim.lr_scheduler.OneCycleLR(_NoMomentum([Tensor.zeros(1).contiguous().realize()]), max_lr=1.0,
                                      total_steps=3)
    no_cycle = optim.lr_scheduler.OneCycleLR(_NoMomentum([Tensor.zeros(1).contiguous().realize()]), max_lr=1.0,
                                             total_steps=3, cycle_momentum=False)
    theirs = torch.optim.lr_scheduler.OneCycleLR(torch.optim.Adagrad([torch.zeros(1, requires_grad=True)]),
                                                 max_lr=1.0, total_steps=3, cycle_momentum=False)
    assert no_cycle.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)


class _NoMomentum(optim.Optimizer):
    def __init__(self, params):
        super().__init__(params, {"lr": 0.1})


def test_jit_replay_sees_scheduled_lr():
    make = OPTIMIZERS["sgd_momentum_dampening_wd"]
    sched = SCHEDULERS["step"][0]
    ours = _our_run(make, 8, sched, jit=True)
    theirs = _torch_run(make, 8, sched)
    for (w, c), (tw, tc) in zip(ours, theirs):
        np.testing.assert_allclose(w, tw, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c, tc, rtol=1e-5, atol=1e-6)


# ---- gradient clipping ----
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
def test_clip_grad_norm(norm_type):
    grads = [RNG.standard_normal((3, 4)).astype(np.float32), RNG.standard_normal(5).astype(np.float32) * 3]
    ours = [Tensor.zeros(*g.shape).contiguous().realize() for g in grads]
    theirs = [torch.zeros(g.shape, requires_grad=True) for g in grads]
    for p, tp, g in zip(ours, theirs, grads):
        p.grad, tp.grad = Tensor(g), torch.tensor(g)
    total = nn.utils.clip_grad_norm_(ours, max_norm=1.5, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm=1.5, norm_type=norm_type)
    assert isinstance(total, Tensor) and total.shape == ()
    np.testing.assert_allclose(total.numpy(), ttotal.numpy(), rtol=1e-5)
    for p, tp in zip(ours, theirs):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-5, atol=1e-7)
    big = Tensor.zeros(2).contiguous().realize()
    big.grad = Tensor([0.1, 0.2])
    nn.utils.clip_grad_norm_([big], max_norm=10.0)   # below the limit: unchanged
    np.testing.assert_allclose(big.grad.numpy(), [0.1, 0.2], rtol=1e-6)


def test_clip_grad_value_and_nonfinite():
    p = Tensor.zeros(3).contiguous().realize()
    p.grad = Tensor([-2.0, 0.5, 3.0])
    nn.utils.clip_grad_value_([p], 1.0)
    np.testing.assert_array_equal(p.grad.numpy(), [-1.0, 0.5, 1.0])
    p.grad = Tensor([float("inf"), 1.0, 0.0])
    with pytest.raises(RuntimeError, match="inf"):
        nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)


# ---- checkpoints and errors ----
def test_optimizer_state_dict_round_trip():
    first = _our_run(OPTIMIZERS["adam"], 3)
    w, c = Tensor(first[-1][0].copy()), Tensor(first[-1][1].copy())
    w2, c2 = Tensor(W0.copy()), Tensor(C0.copy())
    opt = optim.Adam([w2, c2], lr=0.05)
    for _ in range(3):
        w2.grad, c2.grad = _least_squares_grads(w2, c2, Tensor(X), Tensor(Y))
        opt.step()
    resumed = optim.Adam([w, c], lr=0.05)
    resumed.load_state_dict(opt.state_dict())
    for o, (pw, pc) in ((opt, (w2, c2)), (resumed, (w, c))):
        pw.grad, pc.grad = _least_squares_grads(pw, pc, Tensor(X), Tensor(Y))
        o.step()
    np.testing.assert_allclose(w.numpy(), w2.numpy(), rtol=1e-6)
    np.testing.assert_allclose(c.numpy(), c2.numpy(), rtol=1e-6)


def test_optimizer_errors():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([])
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(Tensor.zeros(2))
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam([Tensor.zeros(2)], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([Tensor.zeros(2)], nesterov=True)
    p = Tensor.zeros(2)
    with pytest.raises(ValueError, match="more than one param group"):
        optim.SGD([{"params": [p]}, {"params": [p]}])
    opt = optim.SGD([Tensor.zeros(2)], lr=0.1)
    with pytest.raises(TypeError, match="Python number"):
        opt.param_groups[0]["lr"] = Tensor(0.1)


# ---- with autograd: a small MLP trained by loss.backward() + opt.step() ----
MLP_X = RNG.standard_normal((16, 8)).astype(np.float32)
MLP_Y = RNG.integers(0, 4, 16)


def _mlps():
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    ours = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


MLP_OPTIMIZERS = {
    "sgd_momentum": lambda o, p: o.SGD(p, lr=0.1, momentum=0.9),
    "adam": lambda o, p: o.Adam(p, lr=0.01),
    "adamw": lambda o, p: o.AdamW(p, lr=0.01, weight_decay=0.1),
    "rmsprop": lambda o, p: o.RMSprop(p, lr=0.01, momentum=0.3),
}


@pytest.mark.parametrize("name", list(MLP_OPTIMIZERS))
def test_mlp_training_matches_torch(name):
    ours, theirs = _mlps()
    opt = MLP_OPTIMIZERS[name](optim, ours.parameters())
    topt = MLP_OPTIMIZERS[name](torch.optim, theirs.parameters())
    x, y = Tensor(MLP_X), Tensor(MLP_Y)
    for step in range(10):
        opt.zero_grad()
        loss = ours(x).cross_entropy(y)
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(theirs(torch.tensor(MLP_X)), torch.tensor(MLP_Y))
        tloss.backward()
        topt.step()
        # the loss was realized in the step's schedule, before the parameters it reads were overwritten
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-5), step
    for (key, value), tvalue in zip(ours.state_dict().items(), theirs.state_dict().values()):
        np.testing.assert_allclose(value.numpy(), tvalue.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


def test_adam_step_kernel_count():
    """One Adam step of a 2-layer MLP (forward, backward, updates, loss) in one schedule with a known number of
    kernels: forward, backward and the loss 15, per parameter m, v and the parameter itself (12), the 2 bias
    corrections."""
    from tinyjit.realize import counters
    from tinyjit.schedule import create_schedule
    ours, _ = _mlps()
    opt = optim.Adam(ours.parameters(), lr=0.01)
    x, y = Tensor(MLP_X), Tensor(MLP_Y)
    loss = ours(x).cross_entropy(y)
    loss.backward()
    targets = opt.schedule_step()
    assert any(t is loss for t in targets)   # the loss rides along with the step
    items = create_schedule([t.node for t in targets])
    kernels = sum(1 for it in items if it.kind == "kernel")
    assert kernels <= 29, kernels
    before = counters["kernels_launched"]
    Tensor.realize_all(*targets)
    assert counters["kernels_launched"] - before == kernels
    # the next step needs no new kernels: same graph shapes, compiled once
    compiled = counters["kernels_compiled"]
    opt.zero_grad()
    ours(x).cross_entropy(y).backward()
    opt.step()
    assert counters["kernels_compiled"] == compiled


def test_jit_training_step_with_batchnorm_and_scheduler():
    """A TinyJit-captured step with BatchNorm (running stats realized in the step) and a OneCycle schedule."""
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(),
                                 torch.nn.Linear(6, 4))
    ours = nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 4))
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    opt, topt = optim.SGD(ours.parameters(), lr=0.1), torch.optim.SGD(theirs.parameters(), lr=0.1)
    sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=6, cycle_momentum=False)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.5, total_steps=6, cycle_momentum=False)

    @TinyJit
    def step(x, y):
        opt.zero_grad()
        loss = ours(x).cross_entropy(y)
        loss.backward()
        opt.step()
        return loss

    for i in range(5):
        xs = MLP_X + i * 0.1
        loss = step(Tensor(xs), Tensor(MLP_Y))
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(theirs(torch.tensor(xs)), torch.tensor(MLP_Y))
        tloss.backward()
        topt.step()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-5), i
        sched.step()
        tsched.step()
    for (key, value), tvalue in zip(ours.state_dict().items(), theirs.state_dict().values()):
        np.testing.assert_allclose(value.numpy(), tvalue.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=key)
