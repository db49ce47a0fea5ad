"""Time per data-parallel training step (the MNIST CNN, TinyJit, AdamW) and the gradient allreduce inside it.

    THREADS=1 python bench/distributed_step.py                    # one process
    THREADS=1 mpirun -n 2 python bench/distributed_step.py        # two ranks (add --allow-run-as-root as root)

Prints, on rank 0: ms per step, ms per step spent in the gradient allreduce (host copies included), the gradient
bytes each rank contributes per step and the bytes a ring allreduce sends per rank (2 (n-1)/n of them).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from tinyjit import Tensor, TinyJit, nn, optim
from tinyjit import distributed as dist


def make_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64, help="per rank")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    dist.init()
    Tensor.manual_seed(0)
    model = dist.DataParallel(make_model())
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(dist.rank())
    x = Tensor(rng.standard_normal((args.batch_size, 1, 28, 28)).astype(np.float32)).realize()
    y = Tensor(rng.integers(0, 10, args.batch_size).astype(np.int32)).realize()

    comm_seconds = [0.0]
    real = dist._host_collective

    def timed(tensor, shape, compute):   # time the MPI call and its host copies, also in replays
        def wrapped(values):
            t0 = time.perf_counter()
            out = compute(values)
            comm_seconds[0] += time.perf_counter() - t0
            return out
        return real(tensor, shape, wrapped)

    dist._host_collective = timed

    @TinyJit
    def step(x: Tensor, y: Tensor) -> Tensor:
        opt.zero_grad()
        loss = model(x).cross_entropy(y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):   # compile, capture
        step(x, y).realize()
    dist.barrier()
    comm_seconds[0] = 0.0
    started = time.perf_counter()
    for _ in range(args.steps):
        step(x, y).realize()
    dist.barrier()
    elapsed = (time.perf_counter() - started) / args.steps
    nbytes = sum(int(np.prod(p.shape)) * p.dtype.itemsize for p in model.parameters())
    n = dist.world_size()
    if dist.is_main_process():
        print(f"ranks {n}  batch/rank {args.batch_size}  step {elapsed * 1e3:.1f} ms  allreduce "
              f"{comm_seconds[0] / args.steps * 1e3:.2f} ms/step in {model.bucket_count} bucket(s)  gradient "
              f"{nbytes / 1e3:.1f} kB/rank  ring sends {2 * (n - 1) / n * nbytes / 1e3:.1f} kB/rank/step")


if __name__ == "__main__":
    main()
