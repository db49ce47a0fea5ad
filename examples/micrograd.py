"""Scalar autograd, the way learners start (after Karpathy's micrograd): every parameter is a 0-d Tensor.

A Neuron holds one 0-d weight per input and a 0-d bias; a Layer is a list of neurons, an MLP a list of layers.
Forward passes add and multiply scalars one at a time, exactly as a `Value` class would, and `loss.backward()`
fills each scalar's `.grad`. The difference from micrograd: nothing is computed while the graph is built; the
whole step (forward, backward and every update) is realized at once and fused by the scheduler into kernels,
and TinyJit replays those kernels for the later steps without building or scheduling the scalar graph again.

The data are two interleaving half-moons made with numpy. The inputs are the one thing that is not a scalar:
each input coordinate is one Tensor holding that coordinate of every point, so the same scalar graph computes
all points at once (with one Python float per point, as in micrograd, every point would add its own copy of the
graph, and every kernel would hold the whole data set's computation). After training, the graph of one neuron's
forward and backward pass on a single point (all 0-d) is drawn with tinyjit.viz (SVG with Graphviz's `dot`,
else DOT text).

    python examples/micrograd.py [--steps 100] [--points 64] [--hidden 4 4] [--graph neuron.svg]
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np
from tqdm import tqdm

from tinyjit import Tensor, TinyJit, optim, viz


class Neuron:
    def __init__(self, n_inputs: int, nonlinear: bool = True):
        # 0-d leaves: each one a scalar parameter, like micrograd's Value
        self.w = [Tensor(random.uniform(-1, 1), requires_grad=True) for _ in range(n_inputs)]
        self.b = Tensor(0.0, requires_grad=True)
        self.nonlinear = nonlinear

    def __call__(self, x: list) -> Tensor:
        act = self.b
        for wi, xi in zip(self.w, x):
            act = act + wi * xi
        return act.tanh() if self.nonlinear else act

    def parameters(self) -> list[Tensor]:
        return self.w + [self.b]


class Layer:
    def __init__(self, n_inputs: int, n_outputs: int, nonlinear: bool = True):
        self.neurons = [Neuron(n_inputs, nonlinear) for _ in range(n_outputs)]

    def __call__(self, x: list) -> list[Tensor]:
        return [n(x) for n in self.neurons]

    def parameters(self) -> list[Tensor]:
        return [p for n in self.neurons for p in n.parameters()]


class MLP:
    def __init__(self, n_inputs: int, hidden: list[int]):
        sizes = [n_inputs] + hidden + [1]
        self.layers = [Layer(sizes[i], sizes[i + 1], nonlinear=i < len(hidden)) for i in range(len(hidden) + 1)]

    def __call__(self, x: list) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x[0]

    def parameters(self) -> list[Tensor]:
        return [p for layer in self.layers for p in layer.parameters()]


def make_moons(n: int, noise: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """n points on two interleaving half circles (labels -1 and +1), with Gaussian noise."""
    upper = n // 2
    t_up, t_down = rng.uniform(0, np.pi, upper), rng.uniform(0, np.pi, n - upper)
    x = np.concatenate([np.stack([np.cos(t_up), np.sin(t_up)], 1),
                        np.stack([1 - np.cos(t_down), 0.5 - np.sin(t_down)], 1)])
    y = np.concatenate([-np.ones(upper), np.ones(n - upper)])
    return x + rng.normal(0, noise, x.shape), y


def loss_and_accuracy(model: MLP, xs: np.ndarray, ys: np.ndarray) -> tuple[Tensor, Tensor]:
    """micrograd's loss: mean SVM hinge loss plus L2 regularization; the accuracy as a lazy 0-d tensor too."""
    inputs = [Tensor(np.ascontiguousarray(xs[:, i], dtype=np.float32)) for i in range(xs.shape[1])]
    labels = Tensor(ys.astype(np.float32))
    scores = model(inputs)                        # one score per point
    hinge = (1 - labels * scores).relu().mean()
    l2 = 1e-4 * sum((p * p for p in model.parameters()), Tensor(0.0))
    accuracy = (labels * scores > 0).float().mean()
    return hinge + l2, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--points", type=int, default=64, help="size of the moons data set")
    parser.add_argument("--hidden", type=int, nargs="+", default=[4, 4], help="hidden layer sizes")
    parser.add_argument("--graph", default="neuron.svg",
                        help="where to draw one neuron's forward and backward graph (.svg/.png need Graphviz; .dot)")
    parser.add_argument("--no-jit", action="store_true", help="build and schedule every step (no TinyJit replay)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    random.seed(args.seed)
    xs, ys = make_moons(args.points, 0.1, np.random.default_rng(args.seed))
    model = MLP(2, args.hidden)
    params = model.parameters()
    print(f"MLP 2-{'-'.join(map(str, args.hidden))}-1 of {len(params)} scalar parameters (0-d tensors), "
          f"{args.points} points")
    opt = optim.SGD(params, lr=1.0)

    def train_step() -> tuple[Tensor, Tensor]:
        """One step on the whole data set; returns the loss and accuracy before the update."""
        opt.zero_grad()
        loss, accuracy = loss_and_accuracy(model, xs, ys)
        # realized before the update: a lazy reader of the parameters kept alive across a captured opt.step() gets
        # copy-on-write copies that TinyJit replays get wrong (test/test_examples.py has the strict xfail)
        accuracy.realize()
        loss.backward()
        opt.step()   # forward, backward and all the scalar updates: one schedule
        return loss, accuracy

    run_step = train_step if args.no_jit else TinyJit(train_step)
    started = time.perf_counter()
    bar = tqdm(range(args.steps), desc="train", unit="step")
    for step in bar:
        for group in opt.param_groups:   # micrograd's schedule: the learning rate decays from 1.0 to 0.1
            group["lr"] = 1.0 - 0.9 * step / max(1, args.steps)
        loss, accuracy = run_step()
        bar.set_postfix(loss=f"{loss.item():.3f}", accuracy=f"{accuracy.item():.0%}")
    loss, accuracy = loss_and_accuracy(model, xs, ys)
    print(f"after {args.steps} steps ({time.perf_counter() - started:.1f} s): loss {loss.item():.4f}, "
          f"accuracy {accuracy.item():.1%}")

    # one neuron's forward and backward graph, with the kernels the scheduler makes of it
    neuron = model.layers[0].neurons[0]
    x = [Tensor(float(v)) for v in xs[0]]
    out = neuron(x)
    for p in neuron.parameters():
        p.grad = None
    out.backward()
    drawn = [out] + [p.grad for p in neuron.parameters()]
    try:
        path = viz.save(drawn, args.graph, kernels=True)
        print(f"drew the forward and backward graph of one neuron: {path}")
    except viz.GraphvizNotFound as e:
        dot_path = viz.save(drawn, str(args.graph).rsplit(".", 1)[0] + ".dot", kernels=True)
        print(f"{e}\nwrote the DOT text instead: {dot_path}")


if __name__ == "__main__":
    main()
