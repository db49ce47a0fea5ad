"""nn modules added for PyTorch ports (3-d convolutions and pooling, Upsample, AdaptiveAvgPool2d, Embedding's
padding_idx, Transformer layers), nn.Parameter, module hooks and zero_grad, and optim.Adagrad / Adadelta, all
against torch with the same weights (loaded from torch's state_dict)."""
import numpy as np
import pytest
import torch

from tinyjit import Tensor, nn, optim


def _arr(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _close(ours, theirs, atol=2e-5, rtol=1e-4):
    assert ours.shape == tuple(theirs.shape), (ours.shape, tuple(theirs.shape))
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), atol=atol, rtol=rtol)


def compare_module(make, x, train=False, atol=2e-5):
    """Same module in both libraries, torch's weights loaded into ours; output, input gradient and parameter
    gradients of a fixed weighting of the output."""
    torch.manual_seed(0)
    theirs, ours = make(torch.nn), make(nn)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    theirs.train(train), ours.train(train)
    tx, ox = torch.tensor(x, requires_grad=True), Tensor(x, requires_grad=True)
    expected, got = theirs(tx), ours(ox)
    _close(got, expected, atol)
    w = _arr(*expected.shape, seed=9)
    (expected * torch.tensor(w)).sum().backward()
    (got * Tensor(w)).sum().backward()
    _close(ox.grad, tx.grad, atol * 10)
    params = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        _close(params[name].grad, p.grad, atol * 10)


MODULES = [
    ("conv3d", lambda m: m.Conv3d(2, 3, (2, 3, 2), stride=(1, 2, 1), padding=1), (2, 2, 3, 5, 4)),
    ("conv_transpose3d", lambda m: m.ConvTranspose3d(2, 4, 2, stride=2, groups=2), (1, 2, 2, 3, 2)),
    ("maxpool3d", lambda m: m.MaxPool3d(2, stride=1, padding=1), (2, 2, 3, 5, 4)),
    ("avgpool3d", lambda m: m.AvgPool3d((2, 3, 2), ceil_mode=True), (2, 2, 3, 5, 4)),
    ("maxpool1d", lambda m: m.MaxPool1d(3, 2), (2, 3, 9)),
    ("avgpool1d", lambda m: m.AvgPool1d(3, 2, 1), (2, 3, 9)),
    ("maxpool2d_ceil", lambda m: m.MaxPool2d(2, ceil_mode=True), (2, 3, 5, 5)),
    ("adaptive_avg_pool2d", lambda m: m.AdaptiveAvgPool2d((2, 3)), (2, 3, 5, 5)),
    ("upsample_nearest", lambda m: m.Upsample(scale_factor=2), (2, 3, 5, 5)),
    ("upsample_bilinear", lambda m: m.Upsample(size=(7, 4), mode="bilinear", align_corners=True), (2, 3, 5, 5)),
    ("hardtanh", lambda m: m.Hardtanh(-0.5, 0.5), (2, 3, 5, 5)),
]


@pytest.mark.parametrize("name,make,shape", MODULES, ids=[m[0] for m in MODULES])
def test_module_matches_torch(name, make, shape):
    compare_module(make, _arr(*shape))


def test_embedding_padding_idx_gets_no_gradient():
    torch.manual_seed(0)
    theirs, ours = torch.nn.Embedding(6, 3, padding_idx=1), nn.Embedding(6, 3, padding_idx=1)
    ours.load_state_dict(theirs.state_dict())
    idx = np.array([[1, 2, 1], [5, 0, 2]])
    (theirs(torch.tensor(idx)) * torch.tensor(_arr(2, 3, 3))).sum().backward()
    (ours(Tensor(idx)) * Tensor(_arr(2, 3, 3))).sum().backward()
    _close(ours.weight.grad, theirs.weight.grad)
    assert np.all(ours.weight.grad.numpy()[1] == 0)


# ---- transformer layers ----
TRANSFORMERS = [
    ("encoder_post_norm", lambda m: m.TransformerEncoderLayer(8, 2, 16, dropout=0.0), (5, 2, 8), {}),
    ("encoder_pre_norm_gelu", lambda m: m.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu",
                                                                  norm_first=True, batch_first=True), (2, 5, 8),
     {"is_causal": True}),
    ("decoder_post_norm", lambda m: m.TransformerDecoderLayer(8, 2, 16, dropout=0.0), (5, 2, 8), {}),
    ("decoder_pre_norm", lambda m: m.TransformerDecoderLayer(8, 2, 16, dropout=0.0, norm_first=True,
                                                             batch_first=True), (2, 5, 8), {"causal": True}),
    ("encoder_stack", lambda m: m.TransformerEncoder(m.TransformerEncoderLayer(8, 2, 16, dropout=0.0), 2,
                                                     norm=m.LayerNorm(8), enable_nested_tensor=False), (5, 2, 8), {}),
]


@pytest.mark.parametrize("name,make,shape,kw", TRANSFORMERS, ids=[t[0] for t in TRANSFORMERS])
def test_transformer_layers(name, make, shape, kw):
    torch.manual_seed(0)
    theirs, ours = make(torch.nn), make(nn)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x, mem = _arr(*shape), _arr(*shape[:-1], 8, seed=1)[:, :4] if shape[0] == 2 else _arr(4, 2, 8, seed=1)
    tx, ox = torch.tensor(x, requires_grad=True), Tensor(x, requires_grad=True)
    L = shape[1] if shape[0] == 2 else shape[0]
    if "decoder" in name:
        mask = kw.get("causal") and torch.nn.Transformer.generate_square_subsequent_mask(L)
        tm, om = (mask, Tensor(mask.numpy())) if kw.get("causal") else (None, None)
        expected = theirs(tx, torch.tensor(mem), tgt_mask=tm, tgt_is_causal=bool(kw.get("causal")))
        got = ours(ox, Tensor(mem), tgt_mask=om, tgt_is_causal=bool(kw.get("causal")))
    elif kw.get("is_causal"):
        mask = torch.nn.Transformer.generate_square_subsequent_mask(L)
        expected = theirs(tx, src_mask=mask, is_causal=True)
        got = ours(ox, src_mask=Tensor(mask.numpy()), is_causal=True)
    else:
        expected, got = theirs(tx), ours(ox)
    _close(got, expected, 1e-4)
    w = _arr(*expected.shape, seed=9)
    (expected * torch.tensor(w)).sum().backward()
    (got * Tensor(w)).sum().backward()
    _close(ox.grad, tx.grad, 1e-4)
    params = dict(ours.named_parameters())
    for pname, p in theirs.named_parameters():
        _close(params[pname].grad, p.grad, 1e-4)


def test_transformer_errors():
    with pytest.raises(RuntimeError, match="activation"):
        nn.TransformerEncoderLayer(8, 2, activation="swish")
    with pytest.raises(ValueError, match="divisible"):
        nn.TransformerDecoderLayer(8, 3)


# ---- Parameter, hooks, zero_grad ----
def test_parameter_is_a_registered_tensor_subclass():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(Tensor([2.0, 3.0]))
            self.frozen = nn.Parameter(Tensor([1.0]), requires_grad=False)
            self.plain = Tensor([4.0])               # plain tensor attributes stay parameters
            self.inner = nn.Linear(2, 2)

        def forward(self, x):
            return self.inner(x * self.scale) + self.plain

    net = Net()
    assert isinstance(net.scale, nn.Parameter) and isinstance(net.scale, Tensor)
    assert net.scale.requires_grad and net.scale.is_leaf and net.frozen.requires_grad is False
    assert [n for n, _ in net.named_parameters()] == ["scale", "frozen", "plain", "inner.weight", "inner.bias"]
    assert type(net.scale * 2) is Tensor and type(net.scale.zeros_like()) is Tensor
    assert [n for n, _ in net.named_modules()] == ["", "inner"]
    net(Tensor([[1.0, 1.0]])).sum().backward()
    assert net.scale.grad is not None and net.frozen.grad is None
    net.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(net.scale.grad.numpy(), [0.0, 0.0])
    net.zero_grad()
    assert net.scale.grad is None
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    with pytest.raises(RuntimeError, match="float"):
        nn.Parameter(Tensor([1, 2]))
    # a torch state_dict loads into Parameters
    lin = nn.Linear(2, 2)
    lin.weight = nn.Parameter(Tensor.zeros(2, 2))
    lin.load_state_dict(torch.nn.Linear(2, 2).state_dict())
    assert isinstance(lin.weight, nn.Parameter)


def test_forward_hooks_and_handles():
    lin = nn.Linear(3, 2)
    calls = []
    pre = lin.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    post = lin.register_forward_hook(lambda m, args, out: calls.append((m, args[0].shape, out.shape)))
    x = Tensor(_arr(4, 3))
    out = lin(x)
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(lin.bias.numpy(), (4, 2)), rtol=1e-6)
    assert calls == [(lin, (4, 3), (4, 2))]
    pre.remove()
    double = lin.register_forward_hook(lambda m, args, out: out * 2)
    first = lin.register_forward_pre_hook(lambda m, args, kwargs: ((args[0] + 1,), kwargs), with_kwargs=True,
                                          prepend=True)
    np.testing.assert_allclose(lin(x).numpy(), 2 * ((x.numpy() + 1) @ lin.weight.numpy().T + lin.bias.numpy()),
                               rtol=1e-5)
    for h in (post, double, first):
        h.remove()
    np.testing.assert_allclose(lin(x).numpy(), x.numpy() @ lin.weight.numpy().T + lin.bias.numpy(), rtol=1e-5)
    assert len(calls) == 2


def test_embedding_max_norm_and_scale_grad_by_freq_match_torch(device):
    """max_norm renormalizes the looked-up rows of the weight in place (p = 2, 1, inf), scale_grad_by_freq divides
    each row's gradient by its count: output, updated weight and gradient as torch."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((6, 4)).astype(np.float32) * 2
    idx = np.array([[0, 2, 2], [5, 2, 1]])
    g = rng.standard_normal((2, 3, 4)).astype(np.float32)
    for max_norm, norm_type, freq in ((1.5, 2.0, False), (2.0, 1.0, True), (1.0, float("inf"), False)):
        tw, ow = torch.tensor(w0, requires_grad=True), Tensor(w0, device=device, requires_grad=True)
        expected = torch.nn.functional.embedding(torch.tensor(idx), tw, max_norm=max_norm, norm_type=norm_type,
                                                 scale_grad_by_freq=freq)
        got = nn.functional.embedding(Tensor(idx, device=device), ow, max_norm=max_norm, norm_type=norm_type,
                                      scale_grad_by_freq=freq)
        (expected * torch.tensor(g)).sum().backward()
        (got * Tensor(g, device=device)).sum().backward()
        _close(got, expected)
        _close(ow, tw)
        _close(ow.grad, tw.grad)
    torch.manual_seed(0)
    theirs = torch.nn.Embedding(6, 4, padding_idx=1, max_norm=1.0, scale_grad_by_freq=True)
    ours = nn.Embedding(6, 4, padding_idx=1, max_norm=1.0, scale_grad_by_freq=True)
    ours.load_state_dict(theirs.state_dict())
    ours.to(device)
    expected, got = theirs(torch.tensor(idx)), ours(Tensor(idx, device=device))
    expected.sum().backward()
    got.sum().backward()
    _close(got, expected)
    _close(ours.weight.grad, theirs.weight.grad)
    assert repr(ours) == repr(theirs)


def test_embedding_from_pretrained_like_torch():
    table = _arr(5, 3)
    theirs, ours = torch.nn.Embedding.from_pretrained(torch.tensor(table)), nn.Embedding.from_pretrained(Tensor(table))
    assert not ours.weight.requires_grad and isinstance(ours.weight, nn.Parameter)
    _close(ours(Tensor([4, 0])), theirs(torch.tensor([4, 0])))
    trainable = nn.Embedding.from_pretrained(Tensor(table), freeze=False, padding_idx=0)
    assert trainable.weight.requires_grad and trainable.padding_idx == 0
    with pytest.raises(ValueError, match="must be 2-d"):
        nn.Embedding.from_pretrained(Tensor(table[0]))
    with pytest.raises(ValueError, match="does not match"):
        nn.Embedding(4, 3, _weight=Tensor(table))


def _backward_hook_run(lib, model, x, weight, log, replace=None):
    """Hooks on every submodule of `model` logging (name, grad_input, grad_output) as numpy; `replace` maps a
    submodule name to a function of grad_input returning the new one."""
    def make_hook(name):
        def hook(module, grad_input, grad_output):
            as_np = lambda gs: tuple(None if g is None else  # noqa: E731
                                     (g.detach().numpy() if lib is torch.nn else g.numpy()) for g in gs)
            log.append((name, as_np(grad_input), as_np(grad_output)))
            return replace[name](grad_input) if replace and name in replace else None
        return hook
    handles = [m.register_full_backward_hook(make_hook(name)) for name, m in model.named_children()]
    (model(x) * weight).sum().backward()
    return handles


def test_full_backward_hook_matches_torch(device):
    """grad_input / grad_output of every layer of a small MLP, and a hook that rescales grad_input (the
    gradient reaching the input and the earlier layers' parameters changes), as torch; handles remove them."""
    make = lambda lib: lib.Sequential(lib.Linear(4, 5), lib.Tanh(), lib.Linear(5, 3))  # noqa: E731
    torch.manual_seed(0)
    theirs, ours = make(torch.nn), make(nn)
    ours.load_state_dict(theirs.state_dict())
    ours.to(device)
    x, w = _arr(2, 4), _arr(2, 3, seed=1)
    tx, ox = torch.tensor(x, requires_grad=True), Tensor(x, device=device, requires_grad=True)
    torch_log, our_log = [], []
    replace_torch = {"2": lambda gi: (gi[0] * 3,)}
    replace_ours = {"2": lambda gi: (gi[0] * 3,)}
    _backward_hook_run(torch.nn, theirs, tx, torch.tensor(w), torch_log, replace_torch)
    handles = _backward_hook_run(nn, ours, ox, Tensor(w, device=device), our_log, replace_ours)
    assert [entry[0] for entry in our_log] == [entry[0] for entry in torch_log] == ["2", "1", "0"]
    for (name, t_in, t_out), (_, o_in, o_out) in zip(torch_log, our_log):
        for got, expected in zip(o_in + o_out, t_in + t_out):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=name)
    _close(ox.grad, tx.grad)
    params = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        _close(params[name].grad, p.grad)
    for h in handles:
        h.remove()
    our_log.clear()
    ours(ox).sum().backward()
    assert our_log == []


def test_full_backward_hook_arguments_like_torch():
    """Non-tensor arguments and outputs no gradient reached are None; a tensor input that does not require grad
    gets zeros when another input requires grad; with no input requiring grad the hook fires with grad_input
    all None; one call per module call; wrong return values raise RuntimeError as in torch."""
    def make(lib):
        class Mix(lib.Module):
            def forward(self, x, scale, y):
                return x * scale + y.sum(), (x * y).sum(0)
        return Mix()
    x, y = _arr(2, 3), _arr(2, 3, seed=1)
    shapes = lambda gs: [None if g is None else tuple(g.shape) for g in gs]  # noqa: E731
    for y_grad, use_second in ((False, False), (True, True)):
        logs = []
        for lib, T in ((torch.nn, torch.tensor), (nn, Tensor)):
            calls = []
            module = make(lib)
            module.register_full_backward_hook(lambda m, gi, go: calls.append((gi, go)))
            tx, ty = T(x, requires_grad=True), T(y, requires_grad=y_grad)
            a, b = module(tx, 2.0, ty)
            ((a ** 2).sum() + (b.sum() if use_second else 0)).backward()
            module(tx, 2.0, ty)[0].sum().backward()   # a second call: the hook runs again
            assert len(calls) == 2
            logs.append(calls[0])
        (t_in, t_out), (o_in, o_out) = logs
        assert shapes(o_in) == shapes(t_in) and shapes(o_out) == shapes(t_out)
        for got, expected in zip(o_in + o_out, t_in + t_out):
            if expected is not None:
                np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    calls = []
    lin = nn.Linear(3, 2)
    lin.register_full_backward_hook(lambda m, gi, go: calls.append((gi, shapes(go))))
    lin(Tensor(x)).sum().backward()
    assert calls == [((None,), [(2, 2)])]

    bad_count = nn.Linear(3, 2)
    bad_count.register_full_backward_hook(lambda m, gi, go: (gi[0], gi[0]))
    with pytest.raises(RuntimeError, match="invalid number of grad_input, got 2, but expected 1"):
        bad_count(Tensor(x, requires_grad=True)).sum().backward()
    bad_shape = nn.Linear(3, 2)
    bad_shape.register_full_backward_hook(lambda m, gi, go: (gi[0][:1],))
    with pytest.raises(RuntimeError, match="changed the size"):
        bad_shape(Tensor(x, requires_grad=True)).sum().backward()


def test_full_backward_hooks_order_and_no_grad():
    lin, order = nn.Linear(3, 2), []
    lin.register_full_backward_hook(lambda m, gi, go: order.append("first"))
    lin.register_full_backward_hook(lambda m, gi, go: order.append("prepended"), prepend=True)
    x = Tensor(_arr(2, 3), requires_grad=True)
    lin(x).sum().backward()
    assert order == ["prepended", "first"]
    with Tensor.no_grad():
        out = lin(x)
    assert not out.requires_grad and order == ["prepended", "first"]


# ---- optimizers ----
@pytest.mark.parametrize("name,make", [
    ("adagrad", lambda o, p: o.Adagrad(p, lr=0.1)),
    ("adagrad_decay", lambda o, p: o.Adagrad(p, lr=0.1, lr_decay=0.05, weight_decay=0.01,
                                             initial_accumulator_value=0.2, maximize=True)),
    ("adadelta", lambda o, p: o.Adadelta(p)),
    ("adadelta_wd", lambda o, p: o.Adadelta(p, lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1)),
])
def test_optimizer_trajectory_matches_torch(name, make):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal((8, 3)).astype(np.float32)
    w0 = rng.standard_normal((3, 4)).astype(np.float32)
    tw = torch.tensor(w0, requires_grad=True)
    ow = Tensor(w0.copy(), requires_grad=True)
    topt, oopt = make(torch.optim, [tw]), make(optim, [ow])
    for step in range(6):
        topt.zero_grad(), oopt.zero_grad()
        ((torch.tensor(x) @ tw.T - torch.tensor(y)) ** 2).mean().backward()
        ((Tensor(x) @ ow.T - Tensor(y)) ** 2).mean().backward()
        topt.step(), oopt.step()
        np.testing.assert_allclose(ow.numpy(), tw.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=f"step {step}")


def test_optimizer_errors():
    with pytest.raises(ValueError, match="lr_decay"):
        optim.Adagrad([Tensor([1.0], requires_grad=True)], lr_decay=-1)
    with pytest.raises(ValueError, match="rho"):
        optim.Adadelta([Tensor([1.0], requires_grad=True)], rho=1.5)


def test_modules_on_device(device):
    compare_module(lambda m: m.Sequential(m.Conv3d(2, 2, 2), m.MaxPool3d(2, 1), m.Flatten(1, 2),
                                          m.Upsample(scale_factor=2, mode="bilinear")), _arr(1, 2, 3, 5, 4))
