"""Datasets and batching, like ``torch.utils.data``: ``Dataset``, ``TensorDataset``, ``Subset``, ``random_split``,
samplers and ``DataLoader``.

Batches are assembled in numpy and become tinyjit Tensors only at the end, in the process that iterates the
loader: one host-to-device copy per field per batch, never one kernel per sample. A dataset may define
``get_batch(indices) -> batch`` (numpy leaves) to skip the per-sample path entirely; ``TensorDataset`` and
``Subset`` do, which makes a batch of a makemore-style integer dataset one fancy-index per field.

Worker processes (``num_workers > 0``) run only numpy: they fetch samples and collate them into numpy arrays,
which are sent to the parent and turned into Tensors there. A dataset that returns tinyjit Tensors from a worker
is refused with a TypeError (a forked child must not run kernels on the parent's devices).
"""
from __future__ import annotations

import bisect
import math
import multiprocessing
import numbers
import os
import queue
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from tinyjit.random import host_generator
from tinyjit.tensor import Tensor

GeneratorLike = Union[None, int, np.random.Generator]


def _rng(generator: GeneratorLike) -> np.random.Generator:
    """A numpy Generator: the one given, one seeded by an int, or one seeded from tinyjit's host generator (so
    ``Tensor.manual_seed`` makes shuffles reproducible, as ``torch.manual_seed`` does for torch's loader)."""
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is None:
        return np.random.default_rng(int(host_generator().integers(0, 2 ** 63)))
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(f"generator must be None, an int seed or a numpy.random.Generator, not {type(generator).__name__}")


# ---------------------------------------------------------------------------------------------------- datasets

class Dataset:
    """A map-style dataset: ``__getitem__(i)`` returns sample i and ``__len__`` the number of samples
    (``torch.utils.data.Dataset``). Optionally ``get_batch(indices)`` returns a whole collated batch (numpy
    leaves) at once; the DataLoader then never calls ``__getitem__``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


def _as_numpy(value: Any, what: str) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "numpy") and callable(value.numpy):   # a torch tensor, for instance
        return np.asarray(value.numpy())
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    raise TypeError(f"{what}: expected a Tensor or numpy array, got {type(value).__name__}")


class TensorDataset(Dataset):
    """Samples are rows of the given arrays (``torch.utils.data.TensorDataset``): ``ds[i]`` is
    ``(a[i], b[i], ...)`` as Tensors. The arrays (tinyjit Tensors, numpy arrays or anything with ``.numpy()``) are
    copied to host memory once here, so batching costs a numpy fancy-index per field and no kernel.

    Raises ValueError when no array is given, one is 0-d, or their first dimensions differ."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: needs at least one tensor")
        self.arrays = tuple(_as_numpy(t, "TensorDataset") for t in tensors)
        for i, a in enumerate(self.arrays):
            if a.ndim == 0:
                raise ValueError(f"TensorDataset: tensor {i} is 0-d; every tensor needs a first (sample) dimension")
        sizes = [a.shape[0] for a in self.arrays]
        if len(set(sizes)) != 1:
            raise ValueError(f"TensorDataset: size mismatch between tensors: first dimensions {sizes}")

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    def __getitem__(self, index):
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"TensorDataset: index {index} is out of range for {n} samples")
        return tuple(Tensor(np.array(a[index])) for a in self.arrays)

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(a[indices] for a in self.arrays)

    def _numpy_item(self, index):
        return tuple(a[index] for a in self.arrays)


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order (``torch.utils.data.Subset``)."""

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def get_batch(self, indices: np.ndarray):
        inner = self.indices[indices]
        if hasattr(self.dataset, "get_batch"):
            return self.dataset.get_batch(inner)
        return default_collate([_fetch_one(self.dataset, int(i)) for i in inner])

    def _numpy_item(self, index):
        return _fetch_one(self.dataset, int(self.indices[index]))


class ConcatDataset(Dataset):
    """The samples of several datasets one after another (``torch.utils.data.ConcatDataset``)."""

    def __init__(self, datasets: Iterable):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        self.cumulative_sizes = list(np.cumsum([len(d) for d in self.datasets]))

    def __len__(self) -> int:
        return int(self.cumulative_sizes[-1])

    def _locate(self, index: int) -> tuple[object, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"ConcatDataset: index out of range for {len(self)} samples")
        which = bisect.bisect_right(self.cumulative_sizes, index)
        start = 0 if which == 0 else int(self.cumulative_sizes[which - 1])
        return self.datasets[which], index - start

    def __getitem__(self, index):
        dataset, local = self._locate(index)
        return dataset[local]

    def _numpy_item(self, index):
        dataset, local = self._locate(index)
        return _fetch_one(dataset, local)


def random_split(dataset, lengths: Sequence[Union[int, float]], generator: GeneratorLike = None) -> list[Subset]:
    """Split `dataset` into non-overlapping random Subsets of the given lengths (``torch.utils.data.random_split``).

    `lengths` are counts summing to ``len(dataset)``, or fractions summing to 1 (each gets ``floor(f * n)`` and the
    remainder is handed out one by one from the first split on, as in PyTorch). Raises ValueError otherwise."""
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(x, float) for x in lengths) and math.isclose(sum(lengths), 1.0):
        if any(not 0 <= f <= 1 for f in lengths):
            raise ValueError(f"random_split: fractions must be in [0, 1], got {lengths}")
        counts = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if any(not isinstance(x, numbers.Integral) or x < 0 for x in lengths):
        raise ValueError(f"random_split: lengths must be non-negative ints or fractions summing to 1, got {lengths}")
    if sum(lengths) != n:
        raise ValueError(f"random_split: sum of input lengths ({sum(lengths)}) does not equal the length of the "
                         f"input dataset ({n})")
    order = _rng(generator).permutation(n)
    splits, start = [], 0
    for length in lengths:
        splits.append(Subset(dataset, order[start:start + length]))
        start += length
    return splits


# ---------------------------------------------------------------------------------------------------- samplers

class Sampler:
    """Yields dataset indices (``torch.utils.data.Sampler``)."""

    def __iter__(self) -> Iterator[int]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """A random permutation of the indices each time it is iterated (``torch.utils.data.RandomSampler``, without
    replacement). `generator` is a numpy Generator or an int seed; None draws a fresh seed from tinyjit's host
    generator each epoch (reproducible after ``Tensor.manual_seed``)."""

    def __init__(self, data_source, generator: GeneratorLike = None):
        self.data_source = data_source
        # an int seed becomes one Generator for the sampler's life: epochs differ, runs repeat
        self.generator = _rng(generator) if generator is not None else None

    def __iter__(self):
        rng = self.generator if self.generator is not None else _rng(None)
        return iter(rng.permutation(len(self.data_source)).tolist())

    def __len__(self) -> int:
        return len(self.data_source)


class BatchSampler(Sampler):
    """Groups the indices of `sampler` into lists of `batch_size` (the last one shorter unless `drop_last`)."""

    def __init__(self, sampler: Iterable[int], batch_size: int, drop_last: bool):
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size!r}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, int(batch_size), drop_last

    def __iter__(self) -> Iterator[list[int]]:
        batch = []
        for index in self.sampler:
            batch.append(int(index))
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


# ---------------------------------------------------------------------------------------------------- collation

def default_collate(samples: list) -> Any:
    """Stack a list of samples into one batch with numpy leaves (``torch.utils.data.default_collate``, but on the
    host): arrays and Tensors are stacked along a new first axis, Python ints become int64, floats float64 and
    bools bool arrays, tuples/lists/dicts are collated field by field, strings and other objects are kept as a
    list. Raises ValueError when samples differ in structure or shape."""
    first = samples[0]
    if isinstance(first, Tensor):
        if _worker_info is not None:
            raise TypeError("DataLoader worker: the dataset returned a tinyjit Tensor; in worker processes a dataset "
                            "must return numpy arrays (Tensors are built in the main process)")
        samples = [s.numpy() for s in samples]
        first = samples[0]
    if isinstance(first, (np.ndarray, np.generic)):
        shapes = {np.shape(s) for s in samples}
        if len(shapes) != 1:
            raise ValueError(f"default_collate: samples have different shapes {sorted(shapes)}; pass a collate_fn "
                             f"that pads them")
        return np.stack(samples)
    if isinstance(first, bool):
        return np.array(samples, dtype=np.bool_)
    if isinstance(first, numbers.Integral):
        return np.array(samples, dtype=np.int64)
    if isinstance(first, numbers.Real):
        return np.array(samples, dtype=np.float64)
    if isinstance(first, (str, bytes)):
        return list(samples)
    if isinstance(first, dict):
        keys = first.keys()
        for s in samples:
            if not isinstance(s, dict) or s.keys() != keys:
                raise ValueError(f"default_collate: every sample must be a dict with the keys {list(keys)}")
        return {k: default_collate([s[k] for s in samples]) for k in keys}
    if isinstance(first, (tuple, list)):
        if any(len(s) != len(first) for s in samples):
            raise ValueError("default_collate: each element in list of batch should be of equal size")
        fields = [default_collate(list(column)) for column in zip(*samples)]
        if isinstance(first, tuple) and hasattr(first, "_fields"):   # namedtuple
            return type(first)(*fields)
        return tuple(fields) if isinstance(first, tuple) else fields
    if hasattr(first, "numpy") and callable(first.numpy):   # torch tensors and the like
        return default_collate([np.asarray(s.numpy()) for s in samples])
    return list(samples)


def to_tensors(batch: Any, device: Optional[str] = None) -> Any:
    """Replace every numpy array in a (nested) batch with a Tensor on `device`; other leaves are kept."""
    if isinstance(batch, (np.ndarray, np.generic)):   # (ascontiguousarray would make a 0-d sample 1-d)
        return Tensor(np.ascontiguousarray(batch) if np.ndim(batch) else np.asarray(batch), device=device)
    if isinstance(batch, dict):
        return {k: to_tensors(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_tensors(v, device) for v in batch))
    if isinstance(batch, (tuple, list)) and any(isinstance(v, (np.ndarray, np.generic, dict, tuple, list))
                                                for v in batch):
        return type(batch)(to_tensors(v, device) for v in batch)
    return batch


def _fetch_one(dataset, index: int):
    """Sample `index`, as numpy where the dataset can give it so (no Tensor made per sample)."""
    numpy_item = getattr(dataset, "_numpy_item", None)
    return numpy_item(index) if numpy_item is not None else dataset[index]


def _fetch_batch(dataset, indices: list[int], collate_fn: Optional[Callable], batched: bool):
    if not batched:
        sample = _fetch_one(dataset, indices[0])
        return sample if collate_fn is None else collate_fn(sample)
    if collate_fn is None:
        get_batch = getattr(dataset, "get_batch", None)
        if get_batch is not None:
            return get_batch(np.asarray(indices, dtype=np.int64))
        return default_collate([_fetch_one(dataset, i) for i in indices])
    return collate_fn([_fetch_one(dataset, i) for i in indices])


# ---------------------------------------------------------------------------------------------------- workers

@dataclass(frozen=True)
class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker: its id, the number of workers, its seed, the dataset."""
    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: Optional[WorkerInfo] = None


def get_worker_info() -> Optional[WorkerInfo]:
    """The WorkerInfo of this DataLoader worker process, None in the main process."""
    return _worker_info


def _worker_loop(dataset, index_queue, result_queue, collate_fn, batched, worker_id, num_workers, seed,
                 worker_init_fn) -> None:
    global _worker_info
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
    np.random.seed(seed % 2 ** 32)   # each worker its own numpy stream: forked workers would otherwise repeat
    import random as py_random
    py_random.seed(seed)
    try:
        if worker_init_fn is not None:
            worker_init_fn(worker_id)
    except Exception as e:   # sent to the parent, which raises it
        result_queue.put((None, _WorkerError(worker_id, e)))
        return
    while True:
        job = index_queue.get()
        if job is None:
            return
        batch_number, indices = job
        try:
            result = _fetch_batch(dataset, indices, collate_fn, batched)
        except Exception as e:
            result = _WorkerError(worker_id, e)
        result_queue.put((batch_number, result))


class _WorkerError:
    """An exception raised in a worker, carried to the parent with its traceback text."""

    def __init__(self, worker_id: int, error: BaseException):
        self.worker_id, self.type = worker_id, type(error)
        self.message = str(error)
        self.text = "".join(traceback.format_exception(type(error), error, error.__traceback__))

    def reraise(self):
        message = f"{self.message}\n(raised in DataLoader worker {self.worker_id}; its traceback:)\n{self.text}"
        try:
            error = self.type(message)
        except Exception:   # an exception class with another constructor
            error = RuntimeError(f"{self.type.__name__}: {message}")
        raise error


class _MultiProcessIterator:
    """Hands batches of indices to worker processes round robin and yields their results in order."""

    def __init__(self, loader: DataLoader):
        self.loader = loader
        self.batches = iter(loader._index_batches())
        context = multiprocessing.get_context(loader.multiprocessing_context)
        self.result_queue = context.Queue()
        self.index_queues, self.workers = [], []
        base_seed = int(_rng(loader.generator).integers(0, 2 ** 62))
        for worker_id in range(loader.num_workers):
            index_queue = context.Queue()
            worker = context.Process(target=_worker_loop, daemon=True, args=(
                loader.dataset, index_queue, self.result_queue, loader.collate_fn, loader.batch_sampler is not None,
                worker_id, loader.num_workers, base_seed + worker_id, loader.worker_init_fn))
            worker.start()
            self.index_queues.append(index_queue)
            self.workers.append(worker)
        self.sent = self.received = 0
        self.waiting: dict[int, Any] = {}
        self.exhausted = False
        for _ in range(loader.prefetch_factor * loader.num_workers):
            self._send_next()

    def _send_next(self) -> None:
        if self.exhausted:
            return
        indices = next(self.batches, None)
        if indices is None:
            self.exhausted = True
            return
        self.index_queues[self.sent % len(self.workers)].put((self.sent, indices))
        self.sent += 1

    def __iter__(self):
        return self

    def __next__(self):
        if self.received == self.sent:
            self.shutdown()
            raise StopIteration
        while self.received not in self.waiting:
            try:
                number, result = self.result_queue.get(timeout=self.loader.timeout or 5.0)
            except queue.Empty:
                dead = [w for w in self.workers if not w.is_alive()]
                if dead:
                    codes = ", ".join(f"pid {w.pid} exit code {w.exitcode}" for w in dead)
                    self.shutdown()
                    raise RuntimeError(f"DataLoader worker(s) exited unexpectedly ({codes})") from None
                if self.loader.timeout:
                    self.shutdown()
                    raise RuntimeError(f"DataLoader timed out after {self.loader.timeout} seconds") from None
                continue
            if isinstance(result, _WorkerError):
                self.shutdown()
                result.reraise()
            self.waiting[number] = result
        result = self.waiting.pop(self.received)
        self.received += 1
        self._send_next()
        return self.loader._finish(result)

    def shutdown(self) -> None:
        for index_queue in self.index_queues:
            try:
                index_queue.put(None)
            except (OSError, ValueError):
                pass
        for worker in self.workers:
            worker.join(timeout=1.0)
            if worker.is_alive():
                worker.terminate()
        self.workers, self.index_queues = [], []

    def __del__(self):
        if getattr(self, "workers", None):
            self.shutdown()


# ---------------------------------------------------------------------------------------------------- loader

class DataLoader:
    """Iterate over `dataset` in batches of Tensors (``torch.utils.data.DataLoader``).

    Args mirror PyTorch: `batch_size` (None: single samples, no batch axis), `shuffle` (a RandomSampler using
    `generator`: a numpy Generator or an int seed), `sampler` (any iterable of indices with ``__len__``; mutually
    exclusive with `shuffle`), `batch_sampler` (yields lists of indices; excludes batch_size/shuffle/sampler/
    drop_last), `drop_last`, `collate_fn` (gets a list of samples; default ``default_collate``), `num_workers`
    (processes that fetch and collate in numpy), `worker_init_fn`, `prefetch_factor`, `timeout`,
    `multiprocessing_context` ("fork" by default on Linux, as in PyTorch). `device` puts the batch Tensors on that
    device (default: the default device).

    Each batch is built in numpy and becomes Tensors once (``to_tensors``). Raises ValueError for conflicting or
    invalid options, as PyTorch does."""

    def __init__(self, dataset, batch_size: Optional[int] = 1, shuffle: bool = False, sampler=None,
                 batch_sampler=None, num_workers: int = 0, collate_fn: Optional[Callable] = None,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn: Optional[Callable] = None,
                 generator: GeneratorLike = None, prefetch_factor: Optional[int] = None,
                 multiprocessing_context: Optional[str] = None, device: Optional[str] = None):
        if not isinstance(num_workers, numbers.Integral) or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable "
                             "multiprocessing.")
        if prefetch_factor is not None and num_workers == 0:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing. let num_workers > "
                             "0 to enable multiprocessing, otherwise set prefetch_factor to None.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                                 "and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with "
                             "drop_last")
        if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
            generator = _rng(generator)   # one stream for the loader's life: epochs differ, runs repeat
        if sampler is None:
            sampler = RandomSampler(dataset, generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.sampler, self.batch_sampler, self.generator = sampler, batch_sampler, generator
        self.num_workers, self.collate_fn, self.timeout = int(num_workers), collate_fn, timeout
        self.worker_init_fn = worker_init_fn
        self.prefetch_factor = 2 if prefetch_factor is None else int(prefetch_factor)
        self.multiprocessing_context = multiprocessing_context or ("fork" if os.name == "posix" else "spawn")
        self.device = device

    def _index_batches(self) -> Iterator[list[int]]:
        if self.batch_sampler is not None:
            return (list(b) for b in self.batch_sampler)
        return ([int(i)] for i in self.sampler)

    def _finish(self, batch):
        return to_tensors(batch, self.device)

    def __iter__(self) -> Iterator:
        if self.num_workers > 0:
            return _MultiProcessIterator(self)
        batched = self.batch_sampler is not None
        return (self._finish(_fetch_batch(self.dataset, indices, self.collate_fn, batched))
                for indices in self._index_batches())

    def __len__(self) -> int:
        return len(self.batch_sampler) if self.batch_sampler is not None else len(self.sampler)
