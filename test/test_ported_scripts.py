"""Small PyTorch programs (test/ported/) run unchanged under torch and, with only their import lines rewritten by
`PORT`, under tinyjit (issue 11: "a test ports one small public-style PyTorch training script by changing only its
imports"). Started from the same weights, with dropout off, the two runs print the same losses to a tolerance;
with dropout on (the script as written), tinyjit's run learns.

CPU only: each script compiles a few dozen kernels, which PoCL would take minutes over.
"""
from __future__ import annotations

import contextlib
import io
import pathlib
import re
import types

import numpy as np
import pytest
import torch

PORTED = pathlib.Path(__file__).parent / "ported"

# the PyTorch import line -> its tinyjit equivalent (README "Coming from PyTorch")
PORT = {
    "import torch": "import tinyjit.pytorch as torch",
    "import torch.nn as nn": "from tinyjit import nn",
    "import torch.nn.functional as F": "import tinyjit.nn.functional as F",
    "import torch.optim as optim": "from tinyjit import optim",
    "from torch.optim.lr_scheduler import StepLR": "from tinyjit.optim.lr_scheduler import StepLR",
    "from torch.utils.data import DataLoader, TensorDataset": "from tinyjit.data import DataLoader, TensorDataset",
}


def port(source: str) -> str:
    """`source` with each torch import line replaced by PORT's line; every other line is left as it is, and a
    torch import PORT does not know fails the test (so the port really changes imports only)."""
    lines = []
    for line in source.splitlines():
        if re.match(r"\s*(import|from)\s+torch\b", line):
            assert line.strip() in PORT, f"no tinyjit equivalent for {line.strip()!r}"
            line = line.replace(line.strip(), PORT[line.strip()])
        lines.append(line)
    ported = "\n".join(lines) + "\n"
    changed = [(a, b) for a, b in zip(source.splitlines(), ported.splitlines()) if a != b]
    assert changed and all(re.match(r"\s*(import|from)\s", a) for a, _ in changed)
    return ported


def load(name: str, framework: str) -> types.ModuleType:
    """test/ported/<name>.py as a fresh module, as written (framework "torch") or ported ("tinyjit")."""
    path = PORTED / f"{name}.py"
    source = path.read_text()
    module = types.ModuleType(f"ported_{name}_{framework}")
    module.__file__ = str(path)
    exec(compile(source if framework == "torch" else port(source), str(path), "exec"), module.__dict__)
    return module


def run_main(module: types.ModuleType, argv: list[str]) -> tuple[object, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = module.main(argv)
    return result, out.getvalue()


def start_from(module: types.ModuleType, state: dict, *, dropout: float) -> None:
    """Make the module's Net start from `state` (torch tensors) with every Dropout's p set to `dropout`."""
    original_init = module.Net.__init__

    def init(self):
        original_init(self)
        self.load_state_dict({k: v.clone() for k, v in state.items()} if module.__name__.endswith("torch")
                             else state)
        for sub in self.modules():
            if type(sub).__name__ == "Dropout":
                sub.p = dropout
    module.Net.__init__ = init


NUMBER = r"([-+]?\d+\.?\d*(?:e[-+]?\d+)?)"


def numbers(log: str, pattern: str) -> np.ndarray:
    return np.array([float(v) for v in re.findall(pattern, log)])


def test_port_changes_only_imports():
    source = (PORTED / "mnist_main.py").read_text()
    ported = port(source)
    assert "import tinyjit.pytorch as torch" in ported and len(ported.splitlines()) == len(source.splitlines())
    with pytest.raises(AssertionError, match="no tinyjit equivalent"):
        port("import torch.distributed as dist\n")


def test_mnist_main_matches_torch_from_the_same_weights():
    """pytorch/examples-style MNIST trainer (Conv2d, max_pool2d, flatten, log_softmax, nll_loss, Adadelta with
    StepLR, DataLoader over TensorDataset, train()/eval(), no_grad, item(), argmax/eq/view_as): from torch's
    initial weights with dropout off, every printed train loss, test loss and accuracy matches torch's."""
    reference, ported = load("mnist_main", "torch"), load("mnist_main", "tinyjit")
    torch.manual_seed(1)
    state = reference.Net().state_dict()
    for module in (reference, ported):
        start_from(module, state, dropout=0.0)
    argv = ["--epochs", "2", "--train-size", "64", "--test-batch-size", "32", "--log-interval", "1"]
    (torch_model, torch_results), torch_log = run_main(reference, argv)
    (our_model, our_results), our_log = run_main(ported, argv)
    train_pattern, test_pattern = rf"Loss: {NUMBER}", rf"Average loss: {NUMBER}, Accuracy: (\d+)"
    torch_train, our_train = numbers(torch_log, train_pattern), numbers(our_log, train_pattern)
    assert len(torch_train) == len(our_train) == 4
    np.testing.assert_allclose(our_train, torch_train, rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(np.array(our_results), np.array(torch_results), rtol=2e-4, atol=1e-5)
    for name, value in torch_model.state_dict().items():
        np.testing.assert_allclose(our_model.state_dict()[name].numpy(), value.numpy(), rtol=1e-3, atol=1e-4,
                                   err_msg=name)


def test_mnist_main_as_written_learns():
    """The script as written (dropout on, its own seeded initialization; a larger --lr so that 8 steps show it):
    the test loss falls every epoch and the accuracy ends well above chance (10%)."""
    (_, results), log = run_main(load("mnist_main", "tinyjit"), ["--epochs", "2", "--train-size", "128", "--lr", "3"])
    losses = [loss for loss, _ in results]
    assert losses[1] < losses[0] and losses[2] < losses[1], log
    assert results[-1][1] >= 128 * 0.25, log
    assert "Train Epoch: 2 [64/128 (50%)]" in log
