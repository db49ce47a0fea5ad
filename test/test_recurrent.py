"""nn.RNN / LSTM / GRU and their cells against torch.nn with the same weights (loaded from torch's state_dict):
outputs, final states and the gradients of the input, the initial state and every weight."""
import numpy as np
import pytest
import torch

from tinyjit import Tensor, nn


def _arr(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _close(ours, theirs, atol=2e-5, rtol=1e-4):
    assert ours.shape == tuple(theirs.shape), (ours.shape, tuple(theirs.shape))
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), atol=atol, rtol=rtol)


def _flat(out):
    """output, h_n[, c_n] as a flat list"""
    out, state = out
    return [out] + (list(state) if isinstance(state, tuple) else [state])


def compare(cls, kwargs, x_shape, with_state: bool, device="CPU"):
    torch.manual_seed(0)
    theirs = getattr(torch.nn, cls)(**kwargs)
    ours = getattr(nn, cls)(**kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = _arr(*x_shape)
    tx, ox = torch.tensor(x, requires_grad=True), Tensor(x, requires_grad=True)
    targs, oargs = [tx], [ox]
    leaves = []
    if with_state:
        layers = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
        unbatched = len(x_shape) == 2
        batch = () if unbatched else (x_shape[0] if kwargs.get("batch_first") else x_shape[1],)
        sizes = (kwargs.get("proj_size") or kwargs["hidden_size"], kwargs["hidden_size"])   # h, c
        states = [_arr(layers, *batch, size, seed=s) for s, size in zip((1, 2)[:2 if cls == "LSTM" else 1], sizes)]
        ts = [torch.tensor(s, requires_grad=True) for s in states]
        os_ = [Tensor(s, requires_grad=True) for s in states]
        targs.append(tuple(ts) if cls == "LSTM" else ts[0])
        oargs.append(tuple(os_) if cls == "LSTM" else os_[0])
        leaves = list(zip(os_, ts))
    expected, got = _flat(theirs(*targs)), _flat(ours(*oargs))
    weights = [_arr(*e.shape, seed=10 + i) for i, e in enumerate(expected)]
    for g, e in zip(got, expected):
        _close(g, e)
    sum((e * torch.tensor(w)).sum() for e, w in zip(expected, weights)).backward()
    loss = None
    for g, w in zip(got, weights):
        term = (g * Tensor(w)).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    _close(ox.grad, tx.grad, atol=1e-4)
    for o, t in leaves:
        _close(o.grad, t.grad, atol=1e-4)
    ours_params = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        _close(ours_params[name].grad, p.grad, atol=1e-4)


CASES = [
    ("LSTM", dict(input_size=3, hidden_size=4), (2, 2, 3), False),
    ("LSTM", dict(input_size=3, hidden_size=4, num_layers=2, batch_first=True, bidirectional=True), (2, 2, 3), True),
    ("LSTM", dict(input_size=3, hidden_size=4, bias=False), (2, 3), True),
    ("LSTM", dict(input_size=3, hidden_size=4, num_layers=2, proj_size=2), (2, 3), True),
    ("GRU", dict(input_size=3, hidden_size=4, num_layers=2), (2, 2, 3), True),
    ("GRU", dict(input_size=3, hidden_size=4, bidirectional=True, batch_first=True), (2, 2, 3), False),
    ("RNN", dict(input_size=3, hidden_size=4, nonlinearity="relu", num_layers=2, bidirectional=True), (2, 2, 3),
     True),
    ("RNN", dict(input_size=3, hidden_size=4), (2, 3), False),
]


@pytest.mark.parametrize("cls,kwargs,shape,with_state", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_recurrent_matches_torch(cls, kwargs, shape, with_state):
    compare(cls, kwargs, shape, with_state)


def test_lstm_on_device(device):
    compare("LSTM", dict(input_size=3, hidden_size=4, num_layers=2), (2, 2, 3), True, device)


@pytest.mark.parametrize("cls", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells(cls):
    torch.manual_seed(0)
    theirs, ours = getattr(torch.nn, cls)(3, 4), getattr(nn, cls)(3, 4)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x, h = _arr(2, 3), _arr(2, 4, seed=1)
    hx = (h, _arr(2, 4, seed=2)) if cls == "LSTMCell" else h
    t_hx = tuple(torch.tensor(a) for a in hx) if cls == "LSTMCell" else torch.tensor(hx)
    o_hx = tuple(Tensor(a) for a in hx) if cls == "LSTMCell" else Tensor(hx)
    expected, got = theirs(torch.tensor(x), t_hx), ours(Tensor(x), o_hx)
    for g, e in zip(got if cls == "LSTMCell" else [got], expected if cls == "LSTMCell" else [expected]):
        _close(g, e)
    unbatched = ours(Tensor(x[0]))
    _close(unbatched[0] if cls == "LSTMCell" else unbatched, (theirs(torch.tensor(x[0])))[0] if cls == "LSTMCell"
           else theirs(torch.tensor(x[0])))


def test_dropout_between_layers_and_errors():
    Tensor.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = Tensor(_arr(2, 2, 3))
    a, b = lstm(x)[0].numpy(), lstm(x)[0].numpy()
    assert not np.allclose(a, b)          # training: dropout between the layers draws new masks
    lstm.eval()
    np.testing.assert_array_equal(lstm(x)[0].numpy(), lstm(x)[0].numpy())
    with pytest.raises(ValueError, match="input"):
        lstm(Tensor(_arr(5, 2, 4)))
    with pytest.raises(RuntimeError, match="h_0"):
        lstm(x, (Tensor(_arr(1, 2, 4)), Tensor(_arr(2, 2, 4))))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")


def test_lstm_proj_size_errors_and_repr():
    """As torch: proj_size only for LSTM and below hidden_size; h_0 has proj_size features, c_0 hidden_size."""
    for make in (lambda m: m.LSTM(3, 4, proj_size=4), lambda m: m.GRU(3, 4, proj_size=2)):
        with pytest.raises(ValueError):
            make(torch.nn)
        with pytest.raises(ValueError, match="proj_size"):
            make(nn)
    kwargs = dict(num_layers=2, bias=False, batch_first=True, dropout=0.5, bidirectional=True, proj_size=2)
    assert repr(nn.LSTM(3, 4, **kwargs)) == repr(torch.nn.LSTM(3, 4, **kwargs))
    ours, theirs = nn.LSTM(3, 5, 2, bidirectional=True, proj_size=2), torch.nn.LSTM(3, 5, 2, bidirectional=True,
                                                                                     proj_size=2)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]   # names, order and shapes: weight_hr_l1_reverse
    lstm = nn.LSTM(3, 4, proj_size=2)
    x = Tensor(_arr(2, 1, 3))
    with pytest.raises(RuntimeError, match="h_0 of shape \\(1, 1, 2\\)"):
        lstm(x, (Tensor(_arr(1, 1, 4)), Tensor(_arr(1, 1, 4))))
    with pytest.raises(RuntimeError, match="c_0 of shape \\(1, 1, 4\\)"):
        lstm(x, (Tensor(_arr(1, 1, 2)), Tensor(_arr(1, 1, 2))))
