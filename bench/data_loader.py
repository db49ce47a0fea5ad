"""Per-batch cost of building batches from numpy: tinyjit.data.DataLoader against torch's, on a makemore-style
dataset (200k contexts of 3 int64 characters and an int64 label), batch 32, shuffled.

    python bench/data_loader.py
"""
import time

import numpy as np
import torch
import torch.utils.data as tud

from tinyjit import data

BATCHES = 2000


def per_batch_ms(loader) -> float:
    best = float("inf")
    for _ in range(3):
        started, n = time.perf_counter(), 0
        for x, y in loader:
            n += 1
            if n == BATCHES:
                break
        best = min(best, (time.perf_counter() - started) / n * 1e3)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 27, (200_000, 3)).astype(np.int64)
    y = rng.integers(0, 27, 200_000).astype(np.int64)
    ours = data.DataLoader(data.TensorDataset(x, y), batch_size=32, shuffle=True, generator=0)
    theirs = tud.DataLoader(tud.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=32, shuffle=True)
    print(f"tinyjit.data.DataLoader: {per_batch_ms(ours):.3f} ms/batch")
    print(f"torch DataLoader:        {per_batch_ms(theirs):.3f} ms/batch")


if __name__ == "__main__":
    main()
