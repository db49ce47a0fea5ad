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
    "from torch.nn import functional as F": "from tinyjit.nn import functional as F",
    "import torch.optim as optim": "from tinyjit import optim",
    "from torch.optim.lr_scheduler import StepLR": "from tinyjit.optim.lr_scheduler import StepLR",
    "from torch.utils.data import DataLoader, TensorDataset": "from tinyjit.data import DataLoader, TensorDataset",
    "from torch.utils.data import Dataset": "from tinyjit.data import Dataset",
    "from torch import nn, optim": "from tinyjit import nn, optim",
    "import torch.utils.data": "import tinyjit.data  # torch.utils.data is tinyjit.pytorch.utils.data",
    "from torch.optim import Adam": "from tinyjit.optim import Adam",
    "import torch.nn.init as init": "from tinyjit.nn import init",
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


def run_main(module: types.ModuleType, argument) -> tuple[object, str]:
    """module.main(argument)'s result and what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = module.main(argument)
    return result, out.getvalue()


def start_from(module: types.ModuleType, state: dict, *, dropout: float) -> None:
    """Make the module's Net start from `state` (torch tensors) with every Dropout's (and Dropout2d's...) p set to
    `dropout`."""
    original_init = module.Net.__init__

    def init(self):
        original_init(self)
        self.load_state_dict({k: v.clone() for k, v in state.items()} if module.__name__.endswith("torch")
                             else state)
        for sub in self.modules():
            if type(sub).__name__ in ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d"):
                sub.p = dropout
    module.Net.__init__ = init


@pytest.fixture(autouse=True)
def torch_on_one_thread():
    """torch's thread pool on this shared 2-core machine makes these small runs 25x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    torch_train, our_train = numbers(torch_log, rf"Loss: {NUMBER}"), numbers(our_log, rf"Loss: {NUMBER}")
    assert len(torch_train) == len(our_train) == 4
    np.testing.assert_allclose(our_train, torch_train, rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(np.array(our_results), np.array(torch_results), rtol=2e-4, atol=1e-5)
    test_losses = [loss for loss, _ in our_results]
    assert test_losses[2] < test_losses[1] < test_losses[0], our_log
    for name, value in torch_model.state_dict().items():
        np.testing.assert_allclose(our_model.state_dict()[name].numpy(), value.numpy(), rtol=1e-3, atol=1e-4,
                                   err_msg=name)


def test_mnist_main_as_written_learns():
    """The script as written (dropout on, its own seeded initialization; a larger --lr so that two steps show
    it): the test loss falls."""
    argv = ["--epochs", "1", "--train-size", "64", "--test-batch-size", "32", "--log-interval", "1", "--lr", "3"]
    (_, results), log = run_main(load("mnist_main", "tinyjit"), argv)
    (loss_before, _), (loss_after, _) = results
    assert loss_after < loss_before, log
    assert "Train Epoch: 1 [32/64 (50%)]" in log


def test_nanogpt_style_bigram_with_attention():
    """nanoGPT-lecture-style char model (Embedding, one masked self-attention head with tril / masked_fill /
    softmax, cross_entropy, AdamW, randint + stack batches, @no_grad estimate_loss, multinomial generation,
    f-string formatting of 0-d tensors): from torch's weights its loss on a batch matches torch's, and the script
    as written (fewer steps, set as nanoGPT's configurator sets globals) trains and samples from its vocabulary.
    Gradients of these layers are compared with torch in test_nn.py; here they would cost ~40 more kernels."""
    reference, ported = load("bigram_attention", "torch"), load("bigram_attention", "tinyjit")
    torch.manual_seed(0)
    torch_model = reference.BigramLanguageModel()
    our_model = ported.BigramLanguageModel()
    our_model.load_state_dict(torch_model.state_dict())
    batch = np.stack([ported.train_data[i:i + ported.block_size + 1] for i in range(0, 80, 10)]).astype(np.int64)
    with torch.no_grad():
        _, torch_loss = torch_model(torch.tensor(batch[:, :-1]), torch.tensor(batch[:, 1:]))
    with ported.torch.no_grad():
        _, our_loss = our_model.eval()(ported.torch.tensor(batch[:, :-1]), ported.torch.tensor(batch[:, 1:]))
    np.testing.assert_allclose(our_loss.item(), torch_loss.item(), rtol=1e-5)

    ported.max_iters, ported.eval_interval, ported.eval_iters = 6, 3, 1
    (history, sample), log = run_main(ported, 2)
    (train_before, _), _, (train_after, _) = history
    assert train_after < train_before - 0.1, log
    assert len(sample) == 3 and set(sample) <= set(ported.chars), log


def same_start(module: types.ModuleType, cls: str, state: dict) -> None:
    """Make the module's class `cls` start from `state` (torch tensors), whatever its own initialization did."""
    klass = getattr(module, cls)
    original_init = klass.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.load_state_dict({k: v.clone() for k, v in state.items()} if module.__name__.endswith("torch")
                             else state)
    klass.__init__ = init


def test_word_language_model_matches_torch_from_the_same_weights():
    """pytorch/examples word_language_model (Embedding, a 2-layer LSTM with dropout between layers, Linear
    decoder, nn.init.uniform_/zeros_, batchify's narrow/view/t().contiguous(), repackage_hidden's detach,
    clip_grad_norm_, the manual SGD update `p.data.add_(p.grad, alpha=-lr)`, NLLLoss, math.exp perplexity): from
    torch's initial weights with dropout 0, the printed training losses and the validation loss match torch's,
    and so do the weights; the second step's loss is below the first's."""
    reference, ported = load("word_language_model", "torch"), load("word_language_model", "tinyjit")
    torch.manual_seed(0)
    state = reference.RNNModel("LSTM", 24, 16, 16, 2, 0.0).state_dict()
    for module in (reference, ported):
        same_start(module, "RNNModel", state)
    argv = ["--epochs", "1", "--train-length", "52", "--bptt", "4", "--dropout", "0", "--log-interval", "1"]
    (torch_model, torch_val), torch_log = run_main(reference, argv)
    (our_model, our_val), our_log = run_main(ported, argv)
    torch_train, our_train = (numbers(log, rf"\| loss +{NUMBER} \| ppl") for log in (torch_log, our_log))
    assert len(torch_train) == len(our_train) == 2 and our_train[1] < our_train[0], our_log
    np.testing.assert_allclose(our_train, torch_train, rtol=1e-3)   # (printed with two decimals)
    np.testing.assert_allclose(our_val, torch_val, rtol=1e-4)
    for name, value in torch_model.state_dict().items():
        np.testing.assert_allclose(our_model.state_dict()[name].numpy(), value.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def test_vae_matches_torch_from_the_same_weights_and_noise(monkeypatch):
    """pytorch/examples vae (Linear encoder/decoder, reparameterize with randn_like and exp, sigmoid,
    binary_cross_entropy(reduction='sum'), the KL term with pow/exp, Adam, DataLoader, no_grad, cat, sampling
    with randn): from torch's weights, and with torch.randn / randn_like in both runs drawing the same numbers from
    one numpy generator, every printed loss and the average train and test losses match torch's; the test loss
    falls."""
    reference, ported = load("vae", "torch"), load("vae", "tinyjit")
    torch.manual_seed(0)
    state = reference.VAE().state_dict()
    for module in (reference, ported):
        same_start(module, "VAE", state)
        noise = np.random.default_rng(7)
        framework = module.torch
        monkeypatch.setattr(framework, "randn_like", lambda t, _n=noise, _f=framework: _f.from_numpy(
            _n.standard_normal(tuple(t.shape)).astype(np.float32)))
        monkeypatch.setattr(framework, "randn", lambda *size, _n=noise, _f=framework: _f.from_numpy(
            _n.standard_normal(size).astype(np.float32)))
    argv = ["--epochs", "2", "--train-size", "32", "--batch-size", "16", "--lr", "1e-2", "--log-interval", "1"]
    (_, torch_history), torch_log = run_main(reference, argv)
    (_, our_history), our_log = run_main(ported, argv)
    torch_losses, our_losses = numbers(torch_log, rf"Loss: {NUMBER}"), numbers(our_log, rf"Loss: {NUMBER}")
    assert len(torch_losses) == len(our_losses) == 4
    np.testing.assert_allclose(our_losses, torch_losses, rtol=1e-5)
    np.testing.assert_allclose(np.array(our_history), np.array(torch_history), rtol=1e-5)
    assert our_history[1][1] < our_history[0][1], our_log


def test_time_sequence_prediction_matches_torch_from_the_same_weights():
    """pytorch/examples time_sequence_prediction (two LSTMCells over input.split(1, dim=1), float64 via
    .double() and dtype=torch.double, torch.cat, predicting the future from its own outputs, MSELoss, LBFGS with a
    closure): from torch's weights every closure loss and the test loss match torch's in float64, and the
    training loss falls."""
    reference, ported = load("time_sequence_prediction", "torch"), load("time_sequence_prediction", "tinyjit")
    torch.manual_seed(0)
    state = reference.Sequence().double().state_dict()
    for module in (reference, ported):
        same_start(module, "Sequence", state)
    argv = ["--steps", "1", "--max-iter", "3", "--length", "4", "--future", "1"]
    (torch_model, torch_test), torch_log = run_main(reference, argv)
    (our_model, our_test), our_log = run_main(ported, argv)
    torch_losses, our_losses = (numbers(log, rf"\nloss: {NUMBER}") for log in (torch_log, our_log))
    assert len(torch_losses) == len(our_losses) == 3 and our_losses[-1] < our_losses[0], our_log
    np.testing.assert_allclose(our_losses, torch_losses, rtol=1e-9)
    np.testing.assert_allclose(our_test, torch_test, rtol=1e-9)
    assert all(p.dtype == ported.torch.double for p in our_model.parameters())


@pytest.mark.filterwarnings("ignore:dropout2d")   # (the example's Dropout2d reads a 2-d input: both warn)
def _two_epochs_match(reference, ported, saved_path) -> None:
    """Run the script's main() for 2 unshuffled epochs of 64 samples under torch then tinyjit (both started from the
    same weights): every printed train loss, the returned test results and the saved state_dict match."""
    argv = ["--epochs", "2", "--train-size", "64", "--log-interval", "1", "--no-shuffle", "--save-model"]
    (_, torch_results), torch_log = run_main(reference, argv)
    torch_saved = torch.load(saved_path)
    (_, our_results), our_log = run_main(ported, argv)
    our_saved = ported.torch.load(saved_path)
    torch_train, our_train = numbers(torch_log, rf"Loss: {NUMBER}"), numbers(our_log, rf"Loss: {NUMBER}")
    assert len(torch_train) == len(our_train) == 4
    np.testing.assert_allclose(our_train, torch_train, rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(np.array(our_results), np.array(torch_results), rtol=2e-4, atol=1e-5)
    assert set(our_saved) == set(torch_saved)
    for name, value in torch_saved.items():
        np.testing.assert_allclose(our_saved[name].numpy(), value.numpy(), rtol=1e-3, atol=1e-4, err_msg=name)


def test_mnist_rnn_matches_torch_from_the_same_weights(tmp_path, monkeypatch):
    """pytorch/examples mnist_rnn (nn.LSTM(batch_first=True) over image rows, output[:, -1, :], BatchNorm1d,
    Dropout2d on a 2-d input, Linear, log_softmax, nll_loss, Adadelta with StepLR, torch.utils.data.DataLoader
    over a TensorDataset, no_grad evaluation with argmax/eq/view_as, torch.save of the state_dict): from torch's
    weights with dropout off (and unshuffled: the frameworks draw different permutations), every printed train
    loss, test loss and accuracy matches torch's, and so do the saved weights and BatchNorm statistics."""
    monkeypatch.chdir(tmp_path)
    reference, ported = load("mnist_rnn", "torch"), load("mnist_rnn", "tinyjit")
    torch.manual_seed(1)
    state = reference.Net().state_dict()
    for module in (reference, ported):
        start_from(module, state, dropout=0.0)
    _two_epochs_match(reference, ported, tmp_path / "mnist_rnn.pt")


def test_siamese_network_matches_torch_from_the_same_weights(tmp_path, monkeypatch):
    """pytorch/examples siamese_network (a ResNet-style extractor cut with Sequential(*list(children())[:-1]),
    Conv2d/BatchNorm2d/ReLU(inplace)/MaxPool2d/AdaptiveAvgPool2d, a residual `out += identity`, apply() with
    xavier_uniform_ and bias.data.fill_, one extractor for both images, torch.cat, Sigmoid, BCELoss, Adadelta with
    StepLR, a custom Dataset drawing pairs with the random module (uint8 images, .clone().float(), 0-d float
    targets collated into a batch, np.array(tensor, copy=None)), torch.where(outputs > 0.5, 1, 0)): from torch's
    weights (unshuffled: the frameworks draw different permutations) every printed train loss, test loss and
    accuracy matches torch's, and so do the saved weights and BatchNorm statistics."""
    monkeypatch.chdir(tmp_path)
    reference, ported = load("siamese_network", "torch"), load("siamese_network", "tinyjit")
    torch.manual_seed(0)
    state = reference.SiameseNetwork().state_dict()
    for module in (reference, ported):
        same_start(module, "SiameseNetwork", state)
    _two_epochs_match(reference, ported, tmp_path / "siamese_network.pt")


def test_regression_matches_torch_from_the_same_weights_and_data(monkeypatch):
    """pytorch/examples regression (module-level torch.randn targets, polynomial features with unsqueeze and
    torch.cat of powers, x.mm(W) + b.item(), smooth_l1_loss, gradients cleared with .grad.data.zero_() and the
    manual step param.data.add_(-lr * param.grad), '{:+.2f}'.format of a weight's elements): with torch.randn
    drawing the same numbers in both runs (patched before the module is loaded: its targets are drawn at import)
    and the Linear layer starting from torch's weights, every batch's loss, the printed learned function and the
    weights match torch's, and the loss falls."""
    torch.manual_seed(0)
    state = torch.nn.Linear(4, 1).state_dict()
    runs = []
    for framework_name in ("torch", "tinyjit"):
        framework = torch if framework_name == "torch" else __import__("tinyjit.pytorch").pytorch
        noise = np.random.default_rng(5)
        monkeypatch.setattr(framework, "randn", lambda *size, _n=noise, _f=framework: _f.from_numpy(
            _n.standard_normal(size).astype(np.float32)))

        class Linear(framework.nn.Linear):   # the module builds its layer as torch.nn.Linear
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.load_state_dict({k: v.clone() for k, v in state.items()} if framework is torch else state)
        monkeypatch.setattr(framework.nn, "Linear", Linear)
        module = load("regression", framework_name)
        runs.append(run_main(module, ["--max-batches", "60", "--log-interval", "20"]))
    ((torch_fc, torch_losses), torch_log), ((our_fc, our_losses), our_log) = runs
    assert len(our_losses) == len(torch_losses) == 60
    assert np.mean(our_losses[-10:]) < np.mean(our_losses[:10]) / 2, our_log
    np.testing.assert_allclose(our_losses, torch_losses, rtol=1e-4, atol=1e-6)
    assert our_log.splitlines()[-2:] == torch_log.splitlines()[-2:], (our_log, torch_log)   # the two functions
    for name, value in torch_fc.state_dict().items():
        np.testing.assert_allclose(our_fc.state_dict()[name].numpy(), value.numpy(), rtol=1e-4, err_msg=name)


def test_dcgan_matches_torch_from_the_same_weights_and_noise(tmp_path, monkeypatch):
    """pytorch/examples dcgan (ConvTranspose2d/BatchNorm2d/ReLU(True)/Tanh generator, Conv2d/LeakyReLU(inplace)/
    Sigmoid discriminator, apply(weights_init) choosing layers by class name with nn.init.normal_/zeros_, BCELoss on
    torch.full labels refilled with fill_, fake.detach(), two Adams with betas, Module.zero_grad, --netG/--netD
    checkpoints loaded with torch.load, torch.save each epoch): both runs start from torch's initialized weights
    (each framework's own checkpoint file) and draw the same noise; every printed loss and D output over two
    unshuffled epochs matches torch's, and so do the saved weights and BatchNorm statistics."""
    reference, ported = load("dcgan", "torch"), load("dcgan", "tinyjit")
    torch.manual_seed(0)
    generator, discriminator = reference.Generator(8, 4, 3), reference.Discriminator(4, 3)
    generator.apply(reference.weights_init)
    discriminator.apply(reference.weights_init)
    runs = []
    for module in (reference, ported):
        framework, out = module.torch, tmp_path / module.__name__
        out.mkdir()
        for net, name in ((generator, "G0.pt"), (discriminator, "D0.pt")):
            framework.save({k: v if framework is torch else framework.from_numpy(v.numpy())
                            for k, v in net.state_dict().items()}, out / name)
        noise = np.random.default_rng(3)
        monkeypatch.setattr(framework, "randn", lambda *size, device=None, _n=noise, _f=framework: _f.from_numpy(
            _n.standard_normal(size).astype(np.float32)))
        argv = ["--niter", "2", "--train-size", "16", "--lr", "2e-3", "--no-shuffle", "--outf", str(out),
                "--netG", str(out / "G0.pt"), "--netD", str(out / "D0.pt")]
        runs.append(run_main(module, argv))
    ((_, _, torch_history), _), ((_, _, our_history), our_log) = runs
    assert len(our_history) == len(torch_history) == 4
    np.testing.assert_allclose(np.array(our_history), np.array(torch_history), rtol=1e-5, atol=1e-6)
    for name in ("netG_epoch_1.pth", "netD_epoch_1.pth"):
        theirs = torch.load(tmp_path / reference.__name__ / name)
        ours = ported.torch.load(tmp_path / ported.__name__ / name)
        assert set(ours) == set(theirs)
        for key, value in theirs.items():
            np.testing.assert_allclose(ours[key].numpy(), value.numpy(), rtol=1e-4, atol=1e-6, err_msg=key)


def test_fast_neural_style_matches_torch_from_the_same_weights(tmp_path):
    """pytorch/examples fast_neural_style (ReflectionPad2d + Conv2d layers, InstanceNorm2d(affine=True), residual
    blocks, F.interpolate(mode='nearest', scale_factor=2), a frozen feature net cut into slices with add_module and
    returning a namedtuple, normalize_batch's new_tensor and in-place div_ on the network's output, Gram matrices
    with view/transpose/bmm, MSELoss content and style losses accumulated with += and *= on a 0-d tensor, Adam,
    repeat, eval().cpu(), torch.save/torch.load of the state_dict and a no_grad stylization with clamp): from
    torch's weights, every content and style loss over two epochs matches torch's, and so does the stylized
    picture made by the saved model."""
    reference, ported = load("fast_neural_style", "torch"), load("fast_neural_style", "tinyjit")
    torch.manual_seed(0)
    for cls in ("TransformerNet", "Vgg16"):
        state = getattr(reference, cls)().state_dict()
        for module in (reference, ported):
            same_start(module, cls, state)
    runs = [run_main(module, ["--save-model-dir", str(tmp_path / module.__name__)])
            for module in (reference, ported)]
    ((torch_losses, torch_picture), torch_log), ((our_losses, our_picture), our_log) = runs
    assert len(our_losses) == len(torch_losses) == 4
    np.testing.assert_allclose(np.array(our_losses), np.array(torch_losses), rtol=1e-5)
    np.testing.assert_allclose(our_picture, torch_picture, rtol=1e-4, atol=1e-4)
    assert our_log.count("content:") == 4, our_log


def test_super_resolution_matches_torch_from_the_same_weights(tmp_path, monkeypatch):
    """pytorch/examples super_resolution (Conv2d with tuple arguments, nn.PixelShuffle, init.orthogonal_ with
    calculate_gain('relu'), a Dataset subclass making its low-resolution inputs with antialiased bicubic
    F.interpolate, MSELoss, Adam, math.log10 PSNR under no_grad, a checkpoint per epoch): from torch's weights,
    every printed loss and the PSNR of each epoch match torch's, and so does the saved state_dict. (The example
    saves the whole model, torch.save(model): tinyjit's files hold no pickle, so the port saves its state_dict.)
    The script as written (its own orthogonal initialization, shuffled) learns."""
    monkeypatch.chdir(tmp_path)
    reference, ported = load("super_resolution", "torch"), load("super_resolution", "tinyjit")
    (_, own_psnrs), own_log = run_main(ported, ["--nEpochs", "2"])
    assert own_psnrs[1] > own_psnrs[0], own_log
    torch.manual_seed(0)
    state = reference.Net(3).state_dict()
    for module in (reference, ported):
        same_start(module, "Net", state)
    (torch_model, torch_psnrs), torch_log = run_main(reference, ["--no-shuffle"])
    (our_model, our_psnrs), our_log = run_main(ported, ["--no-shuffle"])
    torch_losses, our_losses = numbers(torch_log, rf"Loss: {NUMBER}"), numbers(our_log, rf"Loss: {NUMBER}")
    assert len(torch_losses) == len(our_losses) == 6
    np.testing.assert_allclose(our_losses, torch_losses, rtol=1e-5)
    np.testing.assert_allclose(our_psnrs, torch_psnrs, rtol=1e-5)
    saved = ported.torch.load(tmp_path / "model_epoch_2.pth")
    for name, value in torch_model.state_dict().items():
        np.testing.assert_allclose(saved[name].numpy(), value.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_mnist_forward_forward_matches_torch_from_the_same_weights_and_draws(monkeypatch):
    """pytorch/examples mnist_forward_forward (nn.Linear subclasses with their own Adam and a train(x_pos, x_neg)
    replacing Module.train, grown as `self.layers = self.layers + [Layer(...)]`, the label overlay
    `x_[:, :10] *= 0.0; x_[range(n), y] = x.max()`, negative labels written one by one with
    `y_neg[idx] = torch.tensor(allowed)[torch.randint(...)].item()`, norm(2, 1, keepdim=True), torch.mm with
    weight.T, log1p(exp(cat)), Python's sum of tensors, argmax/eq/float().mean()): with each Layer starting from
    torch's weights and torch.randint drawing the same numbers, the negative labels, every printed loss, both
    errors and the trained weights match torch's."""
    reference, ported = load("mnist_forward_forward", "torch"), load("mnist_forward_forward", "tinyjit")
    torch.manual_seed(0)
    states = [torch.nn.Linear(36, 16).state_dict(), torch.nn.Linear(16, 16).state_dict()]
    runs = []
    for module in (reference, ported):
        framework, pending = module.torch, list(states)
        original_init = module.Layer.__init__

        def init(self, *args, _init=original_init, _pending=pending, _framework=framework, **kwargs):
            _init(self, *args, **kwargs)
            state = _pending.pop(0)
            self.load_state_dict({k: v.clone() for k, v in state.items()} if _framework is torch else state)
        monkeypatch.setattr(module.Layer, "__init__", init)
        draws = np.random.default_rng(4)
        monkeypatch.setattr(framework, "randint", lambda high, size, _d=draws, _f=framework: _f.tensor(
            _d.integers(0, high, size)))
        runs.append(run_main(module, ["--epochs", "8", "--log-interval", "2"]))
    ((torch_net, torch_negatives, *torch_errors), torch_log), ((our_net, our_negatives, *our_errors), our_log) = runs
    torch_losses, our_losses = (numbers(log, rf"Loss:  {NUMBER}") for log in (torch_log, our_log))
    assert len(torch_losses) == len(our_losses) == 8
    np.testing.assert_allclose(our_losses, torch_losses, rtol=1e-5)
    np.testing.assert_array_equal(our_negatives.numpy(), torch_negatives.numpy())
    assert our_errors == torch_errors, our_log
    for theirs, ours in zip(torch_net.layers, our_net.layers):
        for name, value in theirs.state_dict().items():
            np.testing.assert_allclose(ours.state_dict()[name].numpy(), value.numpy(), rtol=1e-4, atol=1e-6,
                                       err_msg=name)
