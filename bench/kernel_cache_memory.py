"""Resident memory growth while a program meets new kernel shapes (the in-memory kernel caches' bound).

    python bench/kernel_cache_memory.py --no-buffer-pool   # run it twice: the second run loads from the disk cache

Each step runs one reduction kernel on a vector of a length never seen before and checks its value. Prints the
RSS growth over the first step every quarter of the way. --no-buffer-pool leaves out the freed tensor buffers
tinyjit keeps for reuse (one per size here, up to 1 GiB in all), so what is left is the kernels' memory.
Linux only (reads /proc/self/status).
"""
import argparse
import gc
import time

import numpy as np

from tinyjit import Tensor


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", type=int, default=2000)
    parser.add_argument("--no-buffer-pool", action="store_true", help="free tensor buffers instead of pooling them")
    args = parser.parse_args()
    if args.no_buffer_pool:
        from tinyjit.device import POOL
        POOL.limit = 0
    (Tensor(np.ones(7, np.float32)) * 2 + 1).sum().numpy()
    gc.collect()
    base, t0 = rss_mb(), time.perf_counter()
    for i in range(args.shapes):
        n = i + 10
        got = (Tensor(np.full((n,), 1.5, np.float32)) * 2 + 1).sum().numpy()
        assert abs(got - 4 * n) <= 1e-3 * n, (n, got)
        if (i + 1) % max(args.shapes // 4, 1) == 0:
            gc.collect()
            print(f"{i + 1:>6} shapes: RSS +{rss_mb() - base:6.1f} MB  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
