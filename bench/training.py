"""Training-step workloads (W5 MLP, W6 CNN) for each framework, and the cold-start step of W8."""
from __future__ import annotations

import numpy as np

BATCH_MLP, BATCH_CNN = 128, 64


def _data(batch: int, shape: tuple[int, ...]):
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch,) + shape).astype(np.float32), rng.integers(0, 10, batch).astype(np.int32)


def _tinyjit_step(model, batch: int, shape: tuple[int, ...]):
    from tinyjit import Tensor, TinyJit, optim
    opt = optim.SGD(model.parameters(), lr=0.01)

    @TinyJit
    def step(x, y):
        opt.zero_grad()
        loss = model(x).cross_entropy(y)
        loss.backward()
        opt.step()
        return loss
    xn, yn = _data(batch, shape)
    x, y = Tensor(xn), Tensor(yn)
    return lambda: step(x, y).realize()


def tinyjit_mlp_step():
    from tinyjit import nn
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    return _tinyjit_step(model, BATCH_MLP, (784,))


def tinyjit_cnn_step():
    from tinyjit import nn
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 10))
    return _tinyjit_step(model, BATCH_CNN, (1, 28, 28))


def torch_step(torch, cnn: bool):
    nn = torch.nn
    if cnn:
        model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 10))
        xn, yn = _data(BATCH_CNN, (1, 28, 28))
    else:
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
        xn, yn = _data(BATCH_MLP, (784,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.from_numpy(xn), torch.from_numpy(yn).long()

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def tinygrad_step(tinygrad, cnn: bool):
    from tinygrad import Tensor, TinyJit, nn
    if cnn:
        layers = [nn.Conv2d(1, 32, 3), Tensor.relu, lambda t: t.max_pool2d(2), nn.Conv2d(32, 64, 3), Tensor.relu,
                  lambda t: t.max_pool2d(2), lambda t: t.flatten(1), nn.Linear(64 * 5 * 5, 10)]
        xn, yn = _data(BATCH_CNN, (1, 28, 28))
    else:
        layers = [nn.Linear(784, 512), Tensor.relu, nn.Linear(512, 512), Tensor.relu, nn.Linear(512, 10)]
        xn, yn = _data(BATCH_MLP, (784,))
    params = nn.state.get_parameters(layers)
    opt = nn.optim.SGD(params, lr=0.01)

    def step(x, y):
        opt.zero_grad()
        loss = x.sequential(layers).sparse_categorical_crossentropy(y)
        loss.backward()
        opt.step()
        return loss.realize()
    if hasattr(Tensor, "train"):   # older tinygrad: training mode is a Tensor decorator
        step = Tensor.train()(step)
    else:                          # 0.14: a Context variable
        from tinygrad.helpers import Context
        inner = step

        def step(x, y):
            with Context(TRAINING=1):
                return inner(x, y)
    step = TinyJit(step)
    x, y = Tensor(xn).realize(), Tensor(yn).realize()
    return lambda: step(x, y)


def _cases(peers, cnn: bool):
    cases = {}
    try:
        from tinyjit import nn, optim  # noqa: F401
        cases["tinyjit"] = tinyjit_cnn_step if cnn else tinyjit_mlp_step
    except ImportError as e:
        cases["tinyjit"] = f"n/a (tinyjit.{e.name} missing)"
    cases["numpy"] = "n/a (no autograd)"
    torch = peers.get("torch")
    cases["torch"] = torch if isinstance(torch, str) else (lambda: torch_step(torch, cnn))
    tg = peers.get("tinygrad")
    cases["tinygrad"] = tg if isinstance(tg, str) else (lambda: tinygrad_step(tg, cnn))
    return cases


def mlp_cases(peers):
    return _cases(peers, cnn=False)


def cnn_cases(peers):
    return _cases(peers, cnn=True)


def first_mlp_step() -> None:
    """W8: from import to the first MLP training step done (called in a fresh process)."""
    step = tinyjit_mlp_step()
    step()
