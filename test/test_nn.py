"""nn modules against torch.nn with the same weights: forward values, state_dict keys and round trips, init
distributions, registration and train/eval behaviour."""
import math

import numpy as np
import pytest
import torch

from tinyjit import Tensor, nn
from tinyjit.dtype import dtypes
from tinyjit.nn.state import safe_load, safe_save


def _copy(ours: nn.Module, theirs: torch.nn.Module) -> None:
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def _close(ours: Tensor, theirs: torch.Tensor, atol=1e-5, rtol=1e-4) -> None:
    assert ours.shape == tuple(theirs.shape), (ours.shape, tuple(theirs.shape))
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), atol=atol, rtol=rtol)


def _input(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---- modules with weights: same keys as torch, same forward ----
WEIGHTED = [
    ("linear", lambda m: m.Linear(6, 5), (3, 6)),
    ("linear_nobias_3d", lambda m: m.Linear(6, 4, bias=False), (2, 3, 6)),
    ("conv1d", lambda m: m.Conv1d(4, 6, 3, stride=2, padding=1), (2, 4, 9)),
    ("conv2d", lambda m: m.Conv2d(3, 4, 3, padding=1), (2, 3, 7, 6)),
    ("conv2d_strided_dilated", lambda m: m.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(2, 1), dilation=2,
                                                  groups=2), (2, 4, 9, 8)),
    ("conv2d_same_even", lambda m: m.Conv2d(2, 3, 4, padding="same", bias=False), (1, 2, 7, 7)),
    ("conv_transpose2d", lambda m: m.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                                     groups=2), (2, 4, 5, 4)),
    ("conv_transpose2d_dilated", lambda m: m.ConvTranspose2d(3, 2, (2, 3), stride=(1, 3), dilation=2),
     (1, 3, 4, 3)),
    ("conv_transpose1d", lambda m: m.ConvTranspose1d(3, 2, 4, stride=3, padding=2), (2, 3, 5)),
    ("layernorm", lambda m: m.LayerNorm(6), (3, 4, 6)),
    ("layernorm_2d_shape", lambda m: m.LayerNorm((4, 6), eps=1e-3), (3, 4, 6)),
    ("groupnorm", lambda m: m.GroupNorm(2, 6), (2, 6, 3, 3)),
    ("rmsnorm", lambda m: m.RMSNorm(6), (3, 6)),
    ("rmsnorm_eps", lambda m: m.RMSNorm((2, 6), eps=1e-4), (3, 2, 6)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name,make,shape", WEIGHTED, ids=[w[0] for w in WEIGHTED])
def test_weighted_forward(name, make, shape):
    torch.manual_seed(0)
    theirs = make(torch.nn)
    ours = make(nn)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    # norm layers start at ones/zeros: perturb so the affine part is tested
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    _copy(ours, theirs)
    x = _input(*shape)
    _close(ours(Tensor(x)), theirs(torch.tensor(x)))


def test_embedding():
    torch.manual_seed(0)
    theirs = torch.nn.Embedding(10, 4, padding_idx=2)
    ours = nn.Embedding(10, 4, padding_idx=2)
    assert np.all(ours.weight.numpy()[2] == 0)
    _copy(ours, theirs)
    idx = np.array([[0, 2, 9], [3, 3, 1]])
    _close(ours(Tensor(idx)), theirs(torch.tensor(idx)))


@pytest.mark.parametrize("cls", ["BatchNorm1d", "BatchNorm2d"])
def test_batchnorm_train_then_eval(cls):
    shape = (4, 3, 5) if cls == "BatchNorm1d" else (4, 3, 2, 3)
    theirs = getattr(torch.nn, cls)(3, momentum=0.2)
    ours = getattr(nn, cls)(3, momentum=0.2)
    with torch.no_grad():
        theirs.weight.add_(0.5)
        theirs.bias.sub_(0.25)
    _copy(ours, theirs)
    for step in range(2):
        x = _input(*shape, seed=step) * 2 + 1
        _close(ours(Tensor(x)), theirs(torch.tensor(x)))
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        _close(getattr(ours, key), getattr(theirs, key))
    ours.eval()
    theirs.eval()
    assert not ours.training
    x = _input(*shape, seed=5)
    _close(ours(Tensor(x)), theirs(torch.tensor(x)))


def test_batchnorm_cumulative_average_and_no_tracking():
    theirs, ours = torch.nn.BatchNorm1d(2, momentum=None), nn.BatchNorm1d(2, momentum=None)
    for step in range(3):
        x = _input(5, 2, seed=step) + step
        ours(Tensor(x))
        theirs(torch.tensor(x))
    _close(ours.running_mean, theirs.running_mean)
    _close(ours.running_var, theirs.running_var)
    plain = nn.BatchNorm2d(2, affine=False, track_running_stats=False).eval()
    assert list(plain.state_dict()) == []
    x = _input(3, 2, 2, 2)
    ref = torch.nn.BatchNorm2d(2, affine=False, track_running_stats=False).eval()(torch.tensor(x))
    _close(plain(Tensor(x)), ref)


def test_batchnorm_rejects_one_value_per_channel():
    with pytest.raises(ValueError, match="more than 1 value"):
        nn.BatchNorm1d(3)(Tensor.randn(1, 3))


ACTIVATIONS = [("ReLU", {}), ("ReLU6", {}), ("GELU", {}), ("GELU", {"approximate": "tanh"}), ("SiLU", {}),
               ("Sigmoid", {}), ("Tanh", {}), ("LeakyReLU", {"negative_slope": 0.2}), ("ELU", {"alpha": 0.7}),
               ("Softplus", {"beta": 2.0, "threshold": 3.0}), ("Mish", {}), ("Hardswish", {}), ("Hardsigmoid", {}),
               ("Softmax", {"dim": 1}), ("LogSoftmax", {"dim": -1}), ("Flatten", {}),
               ("Flatten", {"start_dim": 0, "end_dim": 1}), ("Identity", {})]


def test_activations_and_shape_modules():
    x = _input(3, 4, 5) * 3
    outs, refs = [], []
    for name, kw in ACTIVATIONS:
        outs.append(getattr(nn, name)(**kw)(Tensor(x)))
        refs.append(getattr(torch.nn, name)(**kw)(torch.tensor(x)))
    Tensor.realize_all(*outs)
    for (name, kw), o, r in zip(ACTIVATIONS, outs, refs):
        assert o.shape == tuple(r.shape), name
        np.testing.assert_allclose(o.numpy(), r.numpy(), atol=2e-5, rtol=1e-4, err_msg=f"{name} {kw}")


@pytest.mark.parametrize("cls,kw", [("MaxPool2d", dict(kernel_size=3, stride=2, padding=1)),
                                    ("MaxPool2d", dict(kernel_size=2, dilation=2)),
                                    ("AvgPool2d", dict(kernel_size=3, stride=2, padding=1)),
                                    ("AvgPool2d", dict(kernel_size=3, stride=1, padding=1, count_include_pad=False))])
def test_pools(cls, kw):
    x = _input(2, 3, 7, 6)
    _close(getattr(nn, cls)(**kw)(Tensor(x)), getattr(torch.nn, cls)(**kw)(torch.tensor(x)))


def test_dropout_follows_module_mode():
    Tensor.manual_seed(1)
    drop = nn.Dropout(0.25)
    x = Tensor.ones(200, 100)
    out = drop(x).numpy()
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    drop.eval()
    np.testing.assert_array_equal(drop(x).numpy(), np.ones((200, 100), np.float32))


# ---- attention ----
@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_attention(batch_first):
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=batch_first)
    ours = nn.MultiheadAttention(8, 2, batch_first=batch_first)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _copy(ours, theirs)
    q, kv = _input(3, 2, 8, seed=1), _input(5, 2, 8, seed=2)
    if batch_first:
        q, kv = q.transpose(1, 0, 2).copy(), kv.transpose(1, 0, 2).copy()
    mask = np.triu(np.ones((3, 5), bool), 2)
    pad = np.array([[False] * 4 + [True], [False] * 5])
    o, w = ours(Tensor(q), Tensor(kv), Tensor(kv), attn_mask=Tensor(mask), key_padding_mask=Tensor(pad))
    ro, rw = theirs(torch.tensor(q), torch.tensor(kv), torch.tensor(kv), attn_mask=torch.tensor(mask),
                    key_padding_mask=torch.tensor(pad))
    _close(o, ro)
    _close(w, rw)


def test_multihead_attention_kdim_vdim_float_mask_per_head_weights():
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(8, 4, kdim=6, vdim=3, bias=False)
    ours = nn.MultiheadAttention(8, 4, kdim=6, vdim=3, bias=False)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    _copy(ours, theirs)
    q, k, v = _input(3, 2, 8, seed=1), _input(4, 2, 6, seed=2), _input(4, 2, 3, seed=3)
    mask = _input(3, 4, seed=4)
    o, w = ours(Tensor(q), Tensor(k), Tensor(v), attn_mask=Tensor(mask), average_attn_weights=False)
    ro, rw = theirs(*map(torch.tensor, (q, k, v)), attn_mask=torch.tensor(mask), average_attn_weights=False)
    _close(o, ro)
    _close(w, rw)


def test_multihead_attention_unbatched_causal():
    torch.manual_seed(0)
    theirs, ours = torch.nn.MultiheadAttention(4, 1), nn.MultiheadAttention(4, 1)
    _copy(ours, theirs)
    x = _input(5, 4)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(5)
    o, w = ours(Tensor(x), Tensor(x), Tensor(x), is_causal=True)
    ro, rw = theirs(*(torch.tensor(x),) * 3, attn_mask=causal)
    _close(o, ro)
    _close(w, rw)


def test_scaled_dot_product_attention():
    q, k, v = _input(2, 3, 4, 8, seed=1), _input(2, 3, 6, 8, seed=2), _input(2, 3, 6, 5, seed=3)
    bool_mask = np.random.default_rng(0).random((4, 6)) > 0.3
    bool_mask[:, 0] = True
    tq, tk, tv = map(torch.tensor, (q, k, v))
    F = torch.nn.functional
    _close(Tensor(q).scaled_dot_product_attention(Tensor(k), Tensor(v), is_causal=True),
           F.scaled_dot_product_attention(tq, tk, tv, is_causal=True))
    _close(Tensor(q).scaled_dot_product_attention(Tensor(k), Tensor(v), attn_mask=Tensor(bool_mask), scale=0.2),
           F.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(bool_mask), scale=0.2))


# ---- losses ----
def test_losses():
    F = torch.nn
    logits, y = _input(6, 4), np.array([0, 3, 1, -100, 2, 1])
    w = np.array([0.5, 1.0, 2.0, 1.5], np.float32)
    x, t = _input(3, 5), np.random.default_rng(1).random((3, 5)).astype(np.float32)
    cases = [
        (nn.CrossEntropyLoss(), F.CrossEntropyLoss(), logits, y),
        (nn.CrossEntropyLoss(label_smoothing=0.1, reduction="sum"),
         F.CrossEntropyLoss(label_smoothing=0.1, reduction="sum"), logits, y),
        (nn.CrossEntropyLoss(weight=Tensor(w), label_smoothing=0.2),
         F.CrossEntropyLoss(weight=torch.tensor(w), label_smoothing=0.2), logits, y),
        (nn.CrossEntropyLoss(ignore_index=1, reduction="none"), F.CrossEntropyLoss(ignore_index=1, reduction="none"),
         logits, np.abs(y) % 4),
        (nn.NLLLoss(weight=Tensor(w)), F.NLLLoss(weight=torch.tensor(w)), logits, y),
        (nn.MSELoss(), F.MSELoss(), x, t),
        (nn.L1Loss(reduction="sum"), F.L1Loss(reduction="sum"), x, t),
        (nn.HuberLoss(delta=0.5), F.HuberLoss(delta=0.5), x, t),
        (nn.BCEWithLogitsLoss(), F.BCEWithLogitsLoss(), x * 4, t),
        (nn.BCEWithLogitsLoss(pos_weight=Tensor(w[:1].repeat(5))),
         F.BCEWithLogitsLoss(pos_weight=torch.tensor(w[:1].repeat(5))), x, t),
        (nn.BCELoss(), F.BCELoss(), t * 0.9 + 0.05, (t > 0.5).astype(np.float32)),
    ]
    outs = [ours(Tensor(a), Tensor(b)) for ours, _, a, b in cases]
    Tensor.realize_all(*outs)
    for (ours, theirs, a, b), o in zip(cases, outs):
        tb = torch.tensor(b).long() if b.dtype.kind == "i" else torch.tensor(b)
        _close(o, theirs(torch.tensor(a), tb))


def test_loss_errors():
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(3, 4\)"):
        nn.MSELoss()(Tensor.randn(3, 5), Tensor.randn(3, 4))


# ---- Module mechanics ----
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.blocks = [nn.Linear(8, 8), nn.Linear(8, 3)]   # a plain list becomes a ModuleList
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.1))
        self.scale = Tensor.ones(3)
        self.register_buffer("mask", Tensor.zeros(3), persistent=False)

    def forward(self, x):
        x = self.bn(self.conv(x)).reshape(x.shape[0], -1)[:, :8]
        for b in self.blocks:
            x = b(x)
        return self.head(x) * self.scale + self.mask


def test_module_list_add_pop_del_like_torch():
    """ModuleList + iterable (a new ModuleList), pop and del renumber as torch's (state_dict keys); a list of
    modules grown by `self.layers = self.layers + [layer]` (mnist_forward_forward: the first assignment of a
    non-empty list makes it a ModuleList here) keeps working, and so does `[layer] + self.layers`."""
    def build(m):
        layers = m.ModuleList([m.Linear(2, 3), m.ReLU(), m.Linear(3, 4)])
        joined = layers + [m.Tanh(), m.Linear(4, 1)]
        popped = joined.pop(1)
        del joined[0]
        with pytest.raises(TypeError):
            layers + [3]
        return type(popped).__name__, list(joined.state_dict()), len(layers), len(joined)
    assert build(nn) == build(torch.nn)

    class Grown(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = []
            for width in (3, 4):
                self.layers = self.layers + [nn.Linear(2, width)]
            self.layers = [nn.ReLU()] + self.layers
    assert [n for n, _ in Grown().named_parameters()] == ["layers.1.weight", "layers.1.bias", "layers.2.weight",
                                                          "layers.2.bias"]


def test_registration_and_traversal():
    net = _Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "conv.weight", "conv.bias", "bn.weight", "bn.bias", "blocks.0.weight", "blocks.0.bias",
                     "blocks.1.weight", "blocks.1.bias"]
    assert all(p.requires_grad for p in net.parameters())
    assert [n for n, _ in net.named_buffers()] == ["mask", "bn.running_mean", "bn.running_var",
                                                   "bn.num_batches_tracked"]
    assert "mask" not in net.state_dict() and "bn.running_mean" in net.state_dict()
    assert [type(m).__name__ for m in net.children()] == ["Conv2d", "BatchNorm2d", "ModuleList", "Sequential"]
    assert len(list(net.modules())) == 9
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "_Net" and len(seen) == 9
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    shared = nn.Linear(2, 2)
    tied = nn.Sequential(shared, shared)
    assert len(list(tied.parameters())) == 2
    assert len(tied) == 2 and isinstance(tied[0:1], nn.Sequential)
    assert net(Tensor.randn(2, 1, 4, 4)).shape == (2, 3)
    assert "Conv2d(1, 2, kernel_size=(3, 3)" in repr(net)


def test_state_dict_round_trip_through_safetensors(tmp_path):
    net, other = _Net(), _Net()
    net(Tensor.randn(3, 1, 4, 4))   # update the running stats
    path = tmp_path / "net.safetensors"
    safe_save(net.state_dict(), path)
    before = {k: id(v) for k, v in other.state_dict().items()}
    other.load_state_dict(safe_load(path))
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key].numpy(), value.numpy(), err_msg=key)
        assert id(other.state_dict()[key]) == before[key]   # loaded in place
    assert other.state_dict()["bn.num_batches_tracked"].numpy() == 1


def test_load_state_dict_errors():
    lin = nn.Linear(3, 2)
    sd = {"weight": np.zeros((2, 3), np.float32), "bias": np.zeros(2, np.float32)}
    with pytest.raises(RuntimeError, match=r"missing key\(s\).*'bias'"):
        lin.load_state_dict({"weight": sd["weight"]})
    with pytest.raises(RuntimeError, match=r"unexpected key\(s\).*'extra'"):
        lin.load_state_dict({**sd, "extra": np.zeros(1)})
    with pytest.raises(RuntimeError, match=r"size mismatch for 'weight'.*\(3, 2\).*\(2, 3\)"):
        lin.load_state_dict({**sd, "weight": np.zeros((3, 2), np.float32)})
    result = lin.load_state_dict({"weight": np.ones((2, 3)), "extra": np.zeros(1)}, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(lin.weight.numpy(), np.ones((2, 3), np.float32))


# ---- initialization: PyTorch's default distributions ----
def test_default_init_distributions():
    Tensor.manual_seed(0)
    lin = nn.Linear(400, 300)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    bound = 1 / math.sqrt(400)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound
    assert np.abs(b).max() <= bound
    conv = nn.Conv2d(16, 32, 3)
    assert np.abs(conv.weight.numpy()).max() <= 1 / math.sqrt(16 * 9)
    convt = nn.ConvTranspose2d(16, 8, 3)   # PyTorch's fan for transposed convs is weight dim 1 (8 * 9)
    assert np.abs(convt.weight.numpy()).max() > 1 / math.sqrt(16 * 9) * 1.1
    emb = nn.Embedding(300, 200).weight.numpy()
    assert abs(emb.mean()) < 0.02 and abs(emb.std() - 1) < 0.02
    ln = nn.LayerNorm(5)
    np.testing.assert_array_equal(ln.weight.numpy(), np.ones(5))
    np.testing.assert_array_equal(ln.bias.numpy(), np.zeros(5))
    mha = nn.MultiheadAttention(64, 4)
    xavier = math.sqrt(6 / (64 + 192))
    assert xavier * 0.98 < np.abs(mha.in_proj_weight.numpy()).max() <= xavier
    np.testing.assert_array_equal(mha.out_proj.bias.numpy(), np.zeros(64))
    t = Tensor.zeros(100, 100).contiguous().realize()
    nn.init.trunc_normal_(t, std=0.5, a=-0.4, b=0.6)
    assert t.numpy().min() >= -0.4 and t.numpy().max() <= 0.6
    nn.init.kaiming_normal_(t, nonlinearity="relu")
    assert abs(t.numpy().std() - math.sqrt(2 / 100)) < 0.01



def test_init_orthogonal_sparse_eye_dirac_like_torch():
    """nn.init.orthogonal_ (Q^T Q = gain^2 I on the flattened (out, -1) weight, wide and tall, float64 to float64
    precision), sparse_ (ceil(sparsity * rows) zeros per column), eye_ and dirac_ (exactly torch's, groups too),
    calculate_gain for the transposed convolutions; torch's ValueErrors."""
    Tensor.manual_seed(0)
    for shape in ((6, 4), (3, 8), (8, 2, 3, 3)):
        w = Tensor.zeros(*shape, dtype=dtypes.float64).contiguous().realize()
        q = nn.init.orthogonal_(w, gain=nn.init.calculate_gain("relu")).numpy().reshape(shape[0], -1)
        small = q.T @ q if q.shape[0] >= q.shape[1] else q @ q.T
        np.testing.assert_allclose(small, 2.0 * np.eye(len(small)), atol=1e-12)
    w = nn.init.sparse_(Tensor.zeros(10, 50).contiguous().realize(), sparsity=0.25, std=0.5).numpy()
    assert ((w == 0).sum(0) == 3).all() and 0.4 < w[w != 0].std() < 0.6
    for ours, theirs in [(nn.init.eye_(Tensor.zeros(2, 3).contiguous()), torch.nn.init.eye_(torch.zeros(2, 3))),
                         (nn.init.dirac_(Tensor.zeros(4, 2, 3).contiguous(), 2),
                          torch.nn.init.dirac_(torch.zeros(4, 2, 3), 2)),
                         (nn.init.dirac_(Tensor.zeros(3, 5, 3, 2).contiguous()),
                          torch.nn.init.dirac_(torch.zeros(3, 5, 3, 2)))]:
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert nn.init.calculate_gain("conv_transpose2d") == torch.nn.init.calculate_gain("conv_transpose2d") == 1
    for call in (lambda m, t: m.init.orthogonal_(t.zeros(3)), lambda m, t: m.init.eye_(t.zeros(2, 2, 2)),
                 lambda m, t: m.init.dirac_(t.zeros(2, 2)), lambda m, t: m.init.dirac_(t.zeros(3, 2, 3), 2),
                 lambda m, t: m.init.sparse_(t.zeros(3), 0.5), lambda m, t: m.init.calculate_gain("foo"),
                 lambda m, t: m.init.calculate_gain("leaky_relu", "x")):
        with pytest.raises(ValueError):
            call(torch.nn, torch)
        with pytest.raises(ValueError):
            call(nn, Tensor)


def test_init_draws_in_the_parameters_float_precision():
    """An in-place initializer on a float64 tensor draws float64 values (before: float32 draws widened)."""
    Tensor.manual_seed(0)
    for fill in (lambda t: nn.init.normal_(t), lambda t: nn.init.uniform_(t, -1, 1), nn.init.kaiming_uniform_,
                 lambda t: nn.init.xavier_normal_(t), lambda t: nn.init.constant_(t, 0.1)):
        values = fill(Tensor.zeros(8, 8, dtype=dtypes.float64).contiguous().realize()).numpy()
        assert values.dtype == np.float64 and (values.astype(np.float32).astype(np.float64) != values).any()

# ---- backward through modules vs torch ----
BACKWARD = [
    ("linear", lambda m: m.Linear(6, 5), (3, 6)),
    ("conv2d", lambda m: m.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 7, 6)),
    ("conv_transpose2d", lambda m: m.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), (2, 3, 4, 3)),
    ("batchnorm2d", lambda m: m.BatchNorm2d(3), (4, 3, 3, 2)),
    ("layernorm", lambda m: m.LayerNorm(6), (2, 3, 6)),
    ("groupnorm", lambda m: m.GroupNorm(2, 4), (2, 4, 3, 3)),
    ("rmsnorm", lambda m: m.RMSNorm(6), (4, 6)),
]


def _backward_both(ours, theirs, inputs, out_fn=lambda o: o):
    """Seed both modules' outputs with the same random cotangent and compare input and parameter gradients."""
    xs = [Tensor(a, requires_grad=True) for a in inputs]
    txs = [torch.tensor(a, requires_grad=True) for a in inputs]
    out, tout = out_fn(ours(*xs)), out_fn(theirs(*txs))
    cot = _input(*tout.shape, seed=7)
    (out * Tensor(cot)).sum().backward()
    (tout * torch.tensor(cot)).sum().backward()
    for x, tx in zip(xs, txs):
        _close(x.grad, tx.grad, atol=1e-5)
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        _close(p.grad, tparams[name].grad, atol=1e-5)


@pytest.mark.parametrize("name,make,shape", BACKWARD, ids=[b[0] for b in BACKWARD])
def test_module_backward(name, make, shape):
    torch.manual_seed(0)
    theirs, ours = make(torch.nn), make(nn)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    _copy(ours, theirs)
    _backward_both(ours, theirs, [_input(*shape) * 2 + 0.5])


def test_multihead_attention_backward():
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    ours = nn.MultiheadAttention(8, 2, batch_first=True)
    _copy(ours, theirs)
    mask = np.triu(np.ones((3, 4), bool), 2)
    _backward_both(_SelfAttention(ours, Tensor(mask)), _TorchSelfAttention(theirs, torch.tensor(mask)),
                   [_input(2, 3, 8, seed=1), _input(2, 4, 8, seed=2)])


class _SelfAttention(nn.Module):
    def __init__(self, mha, mask):
        super().__init__()
        self.mha = mha
        self.register_buffer("mask", mask)

    def forward(self, q, kv):
        return self.mha(q, kv, kv, attn_mask=self.mask)[0]


class _TorchSelfAttention(torch.nn.Module):
    def __init__(self, mha, mask):
        super().__init__()
        self.mha, self.mask = mha, mask

    def forward(self, q, kv):
        return self.mha(q, kv, kv, attn_mask=self.mask)[0]
