"""A lazy value keeps its meaning after an in-place update of what it reads (assign, +=, setitem, optimizer steps),
across separate realizes; the old contents are copied only when a live tensor still reads them (tinyjit.inplace).
Views are values, not aliases: a view or detached tensor made before an update keeps the old value."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyjit import Tensor, inplace, nn, optim
from tinyjit import no_grad as tinyjit_no_grad
import tinyjit.pytorch as tinyjit_torch
from tinyjit.realize import counters

UPDATES = {   # name -> (update of x in place, its result from x0 = [1, 2, 3])
    "iadd": (lambda x: x.__iadd__(1), [2, 3, 4]),
    "isub": (lambda x: x.__isub__(Tensor([1.0, 1.0, 2.0])), [0, 1, 1]),
    "imul": (lambda x: x.__imul__(x), [1, 4, 9]),
    "itruediv": (lambda x: x.__itruediv__(2), [0.5, 1, 1.5]),
    "assign": (lambda x: x.assign(Tensor([7.0, 8.0, 9.0])), [7, 8, 9]),
    "assign_reversed": (lambda x: x.assign(x.flip(0)), [3, 2, 1]),
    "setitem": (lambda x: x.__setitem__(0, 5.0), [5, 2, 3]),
    "setitem_slice": (lambda x: x.__setitem__(slice(1, None), Tensor([0.0, -1.0])), [1, 0, -1]),
}


def _readers(x):
    """Lazy values of several kinds that read x, and what they are for x = [1, 2, 3]."""
    return [(x * 3, [3, 6, 9]), (x[1:], [2, 3]), (x.detach(), [1, 2, 3]), (Tensor(x), [1, 2, 3]),
            (x.sum(), 6), (x.flip(0) + x, [4, 4, 4]), (x.reshape(3, 1).expand(3, 2).T, [[1, 2, 3]] * 2)]


@pytest.mark.parametrize("update", list(UPDATES))
def test_lazy_values_keep_their_meaning_after_an_update(device, update):
    fn, after = UPDATES[update]
    x = Tensor([1.0, 2.0, 3.0]).realize()
    buffer = x.node.buffer
    readers = _readers(x)
    fn(x)
    x.realize()
    assert x.node.buffer is buffer   # still in place
    Tensor.realize_all(*[r for r, _ in readers])
    for r, want in readers:
        np.testing.assert_allclose(r.numpy(), want)
    np.testing.assert_allclose(x.numpy(), after)


def test_the_issue_example(device):
    x = Tensor([1.0, 2.0]).realize()
    r = x * 3
    x += 1
    x.realize()
    np.testing.assert_allclose(r.numpy(), [3, 6])
    np.testing.assert_allclose(x.numpy(), [2, 3])


def test_every_node_over_the_buffer_keeps_its_version(device):
    b = Tensor([1.0, 2.0]).realize()
    a = b + 1
    c = a * 2          # reads a's node, which becomes a realized node over the buffer that is then updated
    a.realize()
    a += 1
    y = a * 2          # reads the (lazy) assign: the value after the first update
    a.realize()
    a += 10
    z = a - 1
    a.realize()
    Tensor.realize_all(c, y, z)
    np.testing.assert_allclose(c.numpy(), [4, 6])
    np.testing.assert_allclose(y.numpy(), [6, 8])
    np.testing.assert_allclose(z.numpy(), [12, 13])
    np.testing.assert_allclose(a.numpy(), [13, 14])


def test_ints_and_half(device):
    x = Tensor(np.array([1, 2], np.int32)).realize()
    h = Tensor(np.array([1.5, 2.5], np.float16)).realize()
    rx, rh = x * 3, h * 2
    x.assign(Tensor(np.array([7, 8], np.int32)))
    h[1] = 0.0
    Tensor.realize_all(x, h)
    np.testing.assert_array_equal(rx.numpy(), [3, 6])
    np.testing.assert_array_equal(rh.numpy(), np.array([3, 5], np.float16))
    np.testing.assert_array_equal(h.numpy(), np.array([1.5, 0], np.float16))


def test_copies_only_when_a_live_tensor_reads_the_old_contents(device):
    x = Tensor([1.0, 2.0]).realize()
    buffer = x.node.buffer
    before = inplace.stats["buffers_preserved"]
    for _ in range(3):
        x += 1
        x.realize()
        (x * 2).realize()                  # read, but realized before the next update: nothing to keep
    assert inplace.stats["buffers_preserved"] == before and x.node.buffer is buffer
    readers = [x * 2, x + 1, x[::-1]]      # three readers of the same contents: one copy
    x += 1
    x.realize()
    assert inplace.stats["buffers_preserved"] == before + 1 and x.node.buffer is buffer
    np.testing.assert_allclose([r.numpy() for r in readers], [[8, 10], [5, 6], [5, 4]], rtol=0)
    del readers
    x += 1
    x.realize()                            # the readers are gone: no copy
    assert inplace.stats["buffers_preserved"] == before + 1


def test_a_reader_the_schedule_computes_is_stored_not_copied(device):
    x = Tensor([1.0, 2.0]).realize()
    y = x * 2                      # a live tensor, computed inline by the assign's kernel below
    x.assign(y + 1)
    before = inplace.stats["buffers_preserved"]
    x.realize()
    assert inplace.stats["buffers_preserved"] == before and y.node.realized
    np.testing.assert_allclose(y.numpy(), [2, 4])
    np.testing.assert_allclose(x.numpy(), [3, 5])


def _torch_pair(seed=0):
    torch.manual_seed(seed)
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    ours = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


OPTIMIZERS = {
    "sgd": (lambda p: optim.SGD(p, lr=0.5), lambda p: torch.optim.SGD(p, lr=0.5)),
    "sgd_momentum": (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
                     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    "adam": (lambda p: optim.Adam(p, lr=0.1), lambda p: torch.optim.Adam(p, lr=0.1)),
    "adamw": (lambda p: optim.AdamW(p, lr=0.1), lambda p: torch.optim.AdamW(p, lr=0.1)),
    "rmsprop": (lambda p: optim.RMSprop(p, lr=0.1, momentum=0.5, centered=True),
                lambda p: torch.optim.RMSprop(p, lr=0.1, momentum=0.5, centered=True)),
}


@pytest.mark.parametrize("name", ["sgd", "sgd_momentum", "adam", "rmsprop"])
def test_optimizer_step_keeps_lazy_predictions_and_gradients(device, name):
    """A prediction built before opt.step() and realized after uses the old weights; .grad after the step is the
    gradient at the old weights (as in PyTorch)."""
    rng = np.random.default_rng(1)
    xa, ya, xt = (rng.standard_normal((6, 4)).astype(np.float32), rng.integers(0, 3, 6),
                  rng.standard_normal((6, 4)).astype(np.float32))   # shapes of other tests: kernels compiled once
    ours, theirs = _torch_pair()
    make, tmake = OPTIMIZERS[name]
    opt, topt = make(ours.parameters()), tmake(theirs.parameters())
    for step in range(2):
        opt.zero_grad()
        pred = ours(Tensor(xt))    # lazy: reads the weights before the step
        ours(Tensor(xa)).cross_entropy(Tensor(ya.astype(np.int32))).backward()
        before = inplace.stats["buffers_preserved"]
        opt.step()
        assert inplace.stats["buffers_preserved"] - before == 4   # the prediction reads every parameter
        topt.zero_grad()
        tpred = theirs(torch.tensor(xt)).detach().numpy()
        torch.nn.functional.cross_entropy(theirs(torch.tensor(xa)), torch.tensor(ya)).backward()
        topt.step()
        np.testing.assert_allclose(pred.numpy(), tpred, rtol=1e-5, atol=1e-6, err_msg=f"step {step}")
        for p, tp in zip(ours.parameters(), theirs.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(OPTIMIZERS) + ["lion"])
def test_a_training_loop_copies_nothing(name):
    """The usual loop (zero_grad, forward, backward, step, with the output and the loss still held) leaves nothing
    lazy that reads the old weights except what the step computes anyway: no copies, the same kernels every step."""
    rng = np.random.default_rng(2)
    x, y = Tensor(rng.standard_normal((6, 4)).astype(np.float32)), Tensor(rng.integers(0, 3, 6).astype(np.int32))
    ours, _ = _torch_pair()
    make = OPTIMIZERS[name][0] if name != "lion" else (lambda p: optim.Lion(p, lr=0.01))
    opt = make(ours.parameters())
    kernels = []
    before = inplace.stats["buffers_preserved"]
    for _ in range(3):
        start = counters["kernels_launched"]
        opt.zero_grad()
        out = ours(x)
        loss = out.cross_entropy(y)
        loss.backward()
        opt.step()
        kernels.append(counters["kernels_launched"] - start)
    assert inplace.stats["buffers_preserved"] == before
    assert kernels[1] == kernels[2], kernels
    assert np.isfinite(loss.item()) and out.numpy().shape == (6, 3)


# a random program of updates, reads and realizes against numpy with value semantics
READS = [lambda t: t * 3, lambda t: t[1:], lambda t: t.detach(), lambda t: t.sum(0, keepdim=True),
         lambda t: t.flip(0) + t]
READS_NP = [lambda a: a * 3, lambda a: a[1:], lambda a: a.copy(), lambda a: a.sum(0, keepdims=True),
            lambda a: a[::-1] + a]
WRITES = [(lambda t: t.__iadd__(1), lambda a: a + 1), (lambda t: t.__setitem__(0, -2.0), lambda a: np.r_[-2, a[1:]]),
          (lambda t: t.assign(t.flip(0) * 2), lambda a: a[::-1] * 2)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["read", "write", "realize_x", "realize_reads"]), st.integers(0, 4)),
                min_size=1, max_size=10))
def test_random_programs_of_updates_and_reads(program):
    x, value = Tensor([1.0, 2.0, 3.0]).realize(), np.array([1.0, 2.0, 3.0], np.float32)
    reads = []
    for action, k in program:
        if action == "read":
            reads.append((READS[k](x), READS_NP[k](value)))
        elif action == "write":
            update, update_np = WRITES[k % len(WRITES)]
            update(x)
            value = update_np(value).astype(np.float32)
        elif action == "realize_x":
            x.realize()
        elif reads:
            Tensor.realize_all(*[r for r, _ in reads[-(k + 1):]])
    for r, want in reads:
        np.testing.assert_allclose(r.numpy(), want)
    np.testing.assert_allclose(x.numpy(), value)


def test_a_hand_written_update_realizes_the_loss_with_it(device):
    """backward() defers its output to the next update of what it reads: the loss rides along with a hand-written
    `w.assign(...)` too (no copy of w), and is the loss before the update."""
    w = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    before = inplace.stats["buffers_preserved"]
    losses = []
    for _ in range(3):
        w.grad = None
        loss = (w * w).sum()       # reads w directly: not through anything the update computes anyway
        loss.backward()
        with Tensor.no_grad():
            w.assign(w - 0.25 * w.grad)
        w.realize()
        assert loss.node.realized
        losses.append(loss.item())
    assert inplace.stats["buffers_preserved"] == before
    np.testing.assert_allclose(losses, [14, 3.5, 0.875])


def test_writing_into_a_view_of_a_live_tensor_raises():
    """PyTorch writes `x.T[0] = v` and `x.reshape(4, 3) += 1` through the view into x; tinyjit's views other than
    basic indexing's are values, so such a write would be silently lost: it raises (RuntimeError naming both
    shapes). Writing x itself, a clone of the view, or a view whose base nobody holds any more works."""
    x = Tensor.arange(12).reshape(3, 4)
    for write in (lambda: x.T.__setitem__(0, -1), lambda: x.T[1:].__iadd__(1), lambda: x.reshape(4, 3).__iadd__(1),
                  lambda: x[0].expand(2, 4).assign(Tensor.zeros(2, 4, dtype=x.dtype))):
        with pytest.raises(RuntimeError, match=r"view \(.*\) of another live tensor of shape \(3, 4\)"):
            write()
    np.testing.assert_array_equal(x.numpy(), np.arange(12).reshape(3, 4))   # nothing half-written
    x[1, 2] = 100
    row = x[1].clone()
    row[0] = -5
    assert x.numpy()[1].tolist() == [4, 5, 100, 7] and row.numpy().tolist() == [-5, 5, 100, 7]
    flat = Tensor.arange(4).reshape(2, 2)   # the arange itself is not held by anyone
    flat[0, 0] = 7
    assert flat.numpy().tolist() == [[7, 1], [2, 3]]
    base = Tensor.arange(4)
    twice = base.reshape(2, 2).reshape(4)   # (one node: the reshapes fold) still a view of base
    with pytest.raises(RuntimeError, match="view"):
        twice += 1
    zeros = Tensor.zeros(1)
    element = zeros[0]   # a view of zeros, alive: writing zeros itself is fine
    zeros[0] = 1.0
    assert zeros.tolist() == [1.0] and element.item() == 0.0


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_data_is_an_alias_that_updates_the_tensor_like_torch(device, dtype):
    """`t.data` (torch.Tensor.data) aliases t without gradient: in-place ops on it update t (also a leaf that
    requires grad, outside no_grad, without being recorded), and it shows later updates of t; reading it is the
    same as detach()."""
    values = np.array([[1, -2, 3], [4, 5, -6]], dtype=dtype)
    ours, theirs = Tensor(values, device=device), torch.tensor(values)
    if dtype != "int32":
        ours.requires_grad_(), theirs.requires_grad_()
    for t in (ours, theirs):
        data = t.data
        assert not data.requires_grad and data.grad is None and data.is_leaf
        data.mul_(2).add_(t.data[0] * 1, alpha=3)   # (torch refuses an operand overlapping the target)
        t.data.sub_(1)
        data.clamp_(max=20)
    np.testing.assert_array_equal(ours.numpy(), theirs.detach().numpy())
    np.testing.assert_array_equal(data.numpy(), theirs.detach().numpy())   # the first alias follows t
    assert bool(ours.requires_grad) == theirs.requires_grad
    if dtype != "int32":   # the updates were not recorded: t is still a leaf, its gradient is as before
        (ours * ours).sum().backward()
        (theirs * theirs).sum().backward()
        assert ours.is_leaf
        np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())


def test_data_updates_of_parameters_in_a_training_loop(device):
    """The word_language_model update `p.data.add_(p.grad, alpha=-lr)` after backward, step after step, and an
    nn.init in-place initializer on `.data`: the same weights as torch's."""
    x = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    ours, theirs = nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ours.to(device)
    ours.load_state_dict(theirs.state_dict())
    for _ in range(3):
        for model, inp in ((ours, Tensor(x, device=device)), (theirs, torch.tensor(x))):
            model.zero_grad()
            model(inp).tanh().sum().backward()
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-0.5)
    for name, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[name].numpy(), value.numpy(), rtol=1e-6, atol=1e-7)
    nn.init.zeros_(ours.bias.data)
    assert ours.bias.numpy().tolist() == [0, 0]


def test_data_updates_in_a_tinyjit_step_reach_the_parameter_on_every_replay(device):
    """Manual SGD through `.data` inside a TinyJit step, with the weight read between calls (logging): every replay
    updates the weight (found by a tester: the replays wrote a buffer the weight no longer held, since the capture
    saw only the short-lived alias assigned, not the weight)."""
    from tinyjit import TinyJit
    w = Tensor(np.ones(3, np.float32), device=device, requires_grad=True).realize()

    @TinyJit
    def step(x: Tensor) -> Tensor:
        loss = (w * x).sum()
        w.data.add_(x, alpha=-0.1)
        return loss.realize()

    for i in range(5):
        loss = step(Tensor(np.ones(3, np.float32), device=device))
        np.testing.assert_allclose(loss.numpy(), 3 * (1 - 0.1 * i), rtol=1e-5)
        np.testing.assert_allclose(w.numpy(), np.full(3, 1 - 0.1 * (i + 1)), rtol=1e-5)


def test_data_of_a_non_leaf_and_of_a_view(device):
    """`y.data.zero_()` of a computed tensor changes y's value (torch); `.data` of a view of a live tensor writes
    through as the view itself does (an indexing view, like torch) or refuses (a reshape: tinyjit's other views are
    values, so it would not write through)."""
    w = Tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    y = w * 2
    y.data.zero_()
    assert y.numpy().tolist() == [0, 0, 0] and y.requires_grad
    base = Tensor(np.ones((2, 3), np.float32), device=device)
    row = base[0]
    row.data.add_(1)
    assert base.numpy().tolist() == [[2, 2, 2], [1, 1, 1]] and row.numpy().tolist() == [2, 2, 2]
    flat = base.reshape(6)
    with pytest.raises(RuntimeError, match="view"):
        flat.data.add_(1)
    assert base.numpy().tolist() == [[2, 2, 2], [1, 1, 1]] and flat.numpy().tolist() == [2, 2, 2, 1, 1, 1]


def test_setting_data_replaces_the_contents_like_torch(device):
    """`t.data = value` (torch): t takes value's contents, shape and dtype, keeps its identity and requires_grad;
    a later in-place update of t leaves value as it was. TypeError for a non-tensor, like torch."""
    p = nn.Linear(3, 2).weight
    p.to(device)
    value = Tensor(np.full((2, 2), 4.0, np.float64), device=device)
    p.data = value
    assert p.shape == (2, 2) and p.dtype == value.dtype and p.requires_grad and p.is_leaf
    with Tensor.no_grad():
        p.add_(1)
    assert p.numpy().tolist() == [[5, 5], [5, 5]] and value.numpy().tolist() == [[4, 4], [4, 4]]
    (p * p).sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), np.full((2, 2), 10.0))
    for target in (p, torch.zeros(2, requires_grad=True)):
        with pytest.raises(TypeError, match="data"):
            target.data = 3


@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_setting_data_to_a_non_float_tensor_on_a_tensor_that_requires_grad_raises(device, dtype):
    """torch refuses `p.data = int_tensor` when p requires grad (leaf or result) with RuntimeError "data set to a
    tensor that requires gradients must be floating point or complex dtype", leaving p as it was; a tensor that
    does not require grad takes it (its dtype changes)."""
    values = np.array([1, 0, 1], dtype=dtype)
    for make in (lambda lib: lib.tensor([1.0, 2.0, 3.0], requires_grad=True),
                 lambda lib: lib.tensor([1.0, 2.0, 3.0], requires_grad=True) * 2):
        ours = make(tinyjit_torch)
        ours.to(device)
        theirs = make(torch)
        for t, value in ((ours, Tensor(values, device=device)), (theirs, torch.tensor(values))):
            with pytest.raises(RuntimeError, match="must be floating point or complex dtype"):
                t.data = value
        assert ours.dtype.name == "float32" and ours.requires_grad
        np.testing.assert_array_equal(ours.detach().numpy(), theirs.detach().numpy())
    plain = Tensor(np.ones(3, np.float32), device=device)
    plain.data = Tensor(values, device=device)
    assert plain.dtype == Tensor(values).dtype and plain.numpy().tolist() == values.tolist()


@pytest.mark.parametrize("dtype", ["float32", "int32", "float16"])
def test_augmented_assignment_into_an_index_writes_the_tensor_like_torch(device, dtype):
    """`x[0] += 1`, `x[1:3] *= 2`, `x[..., -1] -= v`, `x[0][1] += 1` (Python: getitem, the in-place op on the view,
    setitem back) and an in-place op on a kept basic-indexing view (`v = x[1:3]; v.add_(5)`) write into x, with
    the values torch gives (the view too). They raised "view of another live tensor" before."""
    values = np.arange(24).reshape(4, 6).astype(dtype)
    ours, theirs = Tensor(values, device=device), torch.tensor(values)
    for x in (ours, theirs):
        x[0] += 1
        x[1:3] *= 2
        x[1:4, ::2] -= x[0, :3].clone()
        x[..., -1] += 7
        x[3][1] += 5
        row = x[2]
        row.mul_(3)
        part = x[::2, 1:3]
        part.sub_(1)
        part.add_(2)
    for a, b in ((ours, theirs), (row, row_t := theirs[2]), (part, theirs[::2, 1:3])):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    del row_t


def test_augmented_assignment_into_an_index_gradient_like_torch(device):
    """Gradients through `n[1] += p[0] * 3` and `n[0:2] *= m` on a result n (torch's CopySlices), and the
    leaf check: `w[0] += 1` on a leaf that requires grad raises RuntimeError (allowed under no_grad)."""
    values = np.array([1.0, -2.0, 3.0, 0.5], np.float32)
    grads = []
    for lib, make in (("ours", lambda: Tensor(values, device=device, requires_grad=True)),
                      ("torch", lambda: torch.tensor(values, requires_grad=True))):
        p = make()
        n = p * 2
        n[1] += p[0] * 3
        n[0:2] *= n[2:4].clone()
        n[1:][2] -= p[1]
        (n * n).sum().backward()
        grads.append((p.grad.numpy(), n.detach().numpy()))
        with pytest.raises(RuntimeError):
            p[0] += 1
        with (tinyjit_no_grad() if lib == "ours" else torch.no_grad()):
            p[1:3] *= 0
        np.testing.assert_array_equal(p.detach().numpy(), values * np.array([1, 0, 0, 1], np.float32))
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-6)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-6)


def test_augmented_assignment_into_an_index_in_tinyjit(device):
    """`buf[1:3] += v` and `buf[0] *= 2` inside TinyJit with a new buffer each call: each replay writes the
    caller's buffer with this call's values."""
    from tinyjit import TinyJit

    @TinyJit
    def step(buf, v):
        buf[1:3] += v
        buf[0] *= 2
        return buf

    for call in range(4):
        buf = Tensor(np.arange(4, dtype=np.float32) + call, device=device).realize()
        v = Tensor(np.full(2, call + 1, np.float32), device=device).realize()
        out = step(buf, v)
        expected = np.arange(4, dtype=np.float32) + call
        expected[1:3] += call + 1
        expected[0] *= 2
        assert out is buf
        np.testing.assert_array_equal(buf.numpy(), expected, err_msg=f"call {call}")


@pytest.mark.parametrize("mode", ["data", "no_grad"])
def test_unrecorded_write_into_a_result_keeps_its_graph_like_torch(device, mode):
    """`n.data.add_(1)`, `n.data[1] = 7`, `n.data.copy_(v)` or the same under no_grad, on a result n = p * 2: the
    values change, unrecorded, and n keeps its gradient path to p, as in torch (p.grad was None)."""
    values = np.array([1.0, 2.0, 3.0], np.float32)
    writes = [lambda t, lib: t.add_(1), lambda t, lib: t.__setitem__(1, 7.0),
              lambda t, lib: t.copy_(Tensor(values[::-1].copy(), device=device) if lib == "ours"
                                     else torch.tensor(values[::-1].copy()))]
    for write in writes:
        results = []
        for lib, make, no_grad in (("ours", lambda: Tensor(values, device=device, requires_grad=True),
                                    tinyjit_no_grad), ("torch", lambda: torch.tensor(values, requires_grad=True),
                                                       torch.no_grad)):
            p = make()
            n = p * 2
            if mode == "data":
                write(n.data, lib)
            else:
                with no_grad():
                    write(n, lib)
            assert n.requires_grad and not n.is_leaf
            (n * n * p).sum().backward()
            results.append((n.detach().numpy(), p.grad.numpy()))
        np.testing.assert_allclose(results[0][0], results[1][0])
        np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)


def test_view_of_data_writes_into_the_owner_like_torch(device):
    """A basic-indexing view of `w.data` writes into w (torch); another view of it (a reshape) is refused like a
    reshape of w itself, instead of writing into the short-lived alias and being lost."""
    w = Tensor(np.array([1.0, 2.0, 3.0, 4.0], np.float32), device=device, requires_grad=True)
    w.data[0:2].add_(5)
    part = w.data[2:]
    part.mul_(10)
    np.testing.assert_array_equal(w.detach().numpy(), [6, 7, 30, 40])
    assert w.is_leaf
    with pytest.raises(RuntimeError, match="view"):
        w.data.reshape(2, 2).add_(1)
    np.testing.assert_array_equal(w.detach().numpy(), [6, 7, 30, 40])


def test_gradient_reads_the_old_contents_after_a_second_assign(device):
    """`n[0:2] = n[0:2] * c; n[1] = 7` on a result n: realizing the first assign (before the second) overwrote n's
    buffer while the gradient with respect to c still reads n's old contents there (p.grad was 600 instead of 120).
    torch refuses this one (its saved view was modified), so the reference is the same computation out of place."""
    values = np.array([1.0, -2.0, 3.0, 0.5], np.float32)
    p = Tensor(values, device=device, requires_grad=True)
    n = p * 2
    c = n[2:4] * 1
    n[0:2] = n[0:2] * c
    n[1] = 7.0
    (n * n).sum().backward()
    q = torch.tensor(values, requires_grad=True)
    m = q * 2
    out = torch.cat([m[0:1] * m[2:3], torch.tensor([7.0]), m[2:4]])
    (out * out).sum().backward()
    np.testing.assert_array_equal(n.numpy(), out.detach().numpy())
    np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-6)


def test_setting_data_after_a_graph_is_built_backward_reads_the_new_contents_like_torch(device):
    """torch saves an op's inputs as the tensors themselves, so after `y = p * p; p.data = v` backward reads v (the
    graph still gives p.grad; y keeps its value); a detached copy taken before keeps the old contents, results
    saved by exp/sqrt keep theirs, and a result whose data is set keeps its graph (p.grad was computed from the
    old values, or lost for the result)."""
    def make_for(lib):
        if lib is torch:
            return lambda values, **kw: torch.tensor(values, dtype=torch.float32, **kw)
        return lambda values, **kw: Tensor(np.array(values, np.float32), device=device, **kw)

    def leaf_input(make):
        p = make([1.0, 2.0], requires_grad=True)
        y = p * p + p.detach() * p + (p / (p + 1)).sin() + p.sqrt() * p.exp() + p ** 3 + p.var() * p
        p.data = make([0.5, 3.0])
        y.sum().backward()
        return y, p.grad

    def result_data(make):
        p = make([1.0, 2.0], requires_grad=True)
        n = p * 3
        m = n * n
        n.data = make([1.0, -1.0])
        (m + n * 2).sum().backward()
        return m, p.grad
    for case in (leaf_input, result_data):
        ours, theirs = case(make_for(tinyjit_torch)), case(make_for(torch))
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, err_msg=case.__name__)


def test_view_taken_before_its_tensor_was_written_writes_from_the_new_values_like_torch():
    """v = x[::2]; x += 10; v.mul_(2): PyTorch's view shares x's memory, so it doubles the new values; an in-place
    op on a tinyjit indexing view reads its region again when its tensor was written since (computed from the old
    value, the write-through undid x's update). Values and gradients, views of views too."""
    import torch

    def run(lib, tensor):
        p = tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        p.requires_grad_(True)
        x = p * 1
        v, w = x[::2], x[3:]
        x += 10
        v.mul_(2)
        w.add_(100)
        rows = (p * 1).reshape(2, 3)
        first = rows[0]
        tail = first[1:]
        rows += 1
        tail -= 3
        ((x * x).sum() + (rows * rows).sum()).backward()
        return x.tolist(), rows.tolist(), p.grad.tolist()
    ours = run("tinyjit", lambda v: Tensor(v))
    ref = run("torch", torch.tensor)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-6)


def test_in_place_updates_through_data_reach_a_backward_built_before_like_torch():
    """torch's saved inputs share the tensor's storage, so `y = (w * w).sum(); w.data.add_(1); y.backward()` gives
    2 (w + 1); the same through an indexing write into `.data`, and for a result (non-leaf) n."""
    import torch

    def run(tensor):
        out = []
        for update in (lambda d: d.add_(1), lambda d: d.__setitem__(0, 5.0), lambda d: d.mul_(3)):
            w = tensor([1.0, 2.0, 3.0])
            w.requires_grad_(True)
            y = (w * w).sum()
            update(w.data)
            y.backward()
            out.append(w.grad.tolist())
        a = tensor([1.0, 2.0, 3.0])
        a.requires_grad_(True)
        n = a * 2
        b = (n * n).sum()
        n.data.add_(1)
        b.backward()
        return out + [a.grad.tolist()]
    ours, ref = run(Tensor), run(torch.tensor)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_every_in_place_op_on_a_stale_indexing_view_reads_its_current_region():
    """The in-place ops outside tensor_mutation (masked_fill_, scatter_add_, index_add_) read an indexing view's
    current region too: they compute inside `_inplace`, after the view is refreshed (they used the old values)."""
    import torch
    ops = [lambda v, t: v.masked_fill_(t([True, False]), 0.0),
           lambda v, t: v.index_add_(0, t([0]), t([5.0])),
           lambda v, t: v.scatter_add_(0, t([1]), t([7.0]))]
    for op in ops:
        results = []
        for tensor in (lambda v: Tensor(np.array(v)), torch.tensor):
            x = tensor([1.0, 2.0, 3.0, 4.0])
            v = x[::2]
            x += 10
            op(v, tensor)
            results.append(x.tolist())
        assert results[0] == results[1], results
