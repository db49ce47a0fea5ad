"""tinyjit.data against torch.utils.data: batching, shuffling, collation, samplers, splits and worker processes."""
import numpy as np
import pytest
import torch
import torch.utils.data as tud

from tinyjit import Tensor, dtypes
from tinyjit import data


def _rows(n=10):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64) % 4
    return x, y


@pytest.mark.parametrize("batch_size,drop_last",
                         [(1, False), (3, False), (3, True), (10, False), (4, True), (16, False)])
def test_sequential_batches_match_torch(batch_size, drop_last):
    x, y = _rows()
    ours = list(data.DataLoader(data.TensorDataset(Tensor(x), y), batch_size=batch_size, drop_last=drop_last))
    theirs = list(tud.DataLoader(tud.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=batch_size,
                                 drop_last=drop_last))
    assert len(ours) == len(theirs) == len(data.DataLoader(data.TensorDataset(x, y), batch_size=batch_size,
                                                           drop_last=drop_last))
    for (bx, by), (tx, ty) in zip(ours, theirs):
        assert isinstance(bx, Tensor) and bx.dtype == dtypes.float32 and by.dtype == dtypes.int64
        np.testing.assert_array_equal(bx.numpy(), tx.numpy())
        np.testing.assert_array_equal(by.numpy(), ty.numpy())


def test_shuffle_is_a_permutation_reproducible_by_seed_and_new_each_epoch():
    x, y = _rows(50)
    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=8, shuffle=True, generator=123)
    epoch1 = np.concatenate([b[0].numpy()[:, 0] // 3 for b in loader])
    epoch2 = np.concatenate([b[0].numpy()[:, 0] // 3 for b in loader])
    assert sorted(epoch1.tolist()) == sorted(epoch2.tolist()) == list(range(50))
    assert epoch1.tolist() != epoch2.tolist()
    again = data.DataLoader(data.TensorDataset(x, y), batch_size=8, shuffle=True, generator=123)
    assert np.concatenate([b[0].numpy()[:, 0] // 3 for b in again]).tolist() == epoch1.tolist()
    # without a generator: Tensor.manual_seed makes it reproducible
    orders = []
    for _ in range(2):
        Tensor.manual_seed(7)
        orders.append([int(b[0].numpy()[0, 0]) for b in data.DataLoader(data.TensorDataset(x), shuffle=True)])
    assert orders[0] == orders[1]


class DictDataset(data.Dataset):
    """Samples of mixed kinds: a dict with an array, a Python int and float, a string, and a nested tuple."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"image": np.full((2, 2), i, np.float32), "label": i, "weight": i / 2, "name": f"s{i}",
                "pair": (np.int32(i), np.array([i, -i], np.int16))}


class TorchDictDataset(tud.Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return DictDataset()[i]


def test_collate_of_dicts_tuples_scalars_and_strings_matches_torch():
    (ours,) = list(data.DataLoader(DictDataset(), batch_size=5))
    (theirs,) = list(tud.DataLoader(TorchDictDataset(), batch_size=5))
    assert ours.keys() == theirs.keys()
    assert ours["name"] == theirs["name"] == ["s0", "s1", "s2", "s3", "s4"]
    for key in ("image", "label", "weight"):
        assert str(ours[key].dtype).split(".")[-1] == str(theirs[key].dtype).split(".")[-1], key
        np.testing.assert_array_equal(ours[key].numpy(), theirs[key].numpy())
    for a, b in zip(ours["pair"], theirs["pair"]):
        assert a.shape == tuple(b.shape)
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_collate_refuses_ragged_samples():
    class Ragged(data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.zeros(i + 1, np.float32)

    with pytest.raises(ValueError, match="different shapes"):
        list(data.DataLoader(Ragged(), batch_size=2))
    padded = list(data.DataLoader(Ragged(), batch_size=2, collate_fn=lambda s: [np.pad(a, (0, 2 - len(a))) for a in s]))
    assert [t.shape for t in padded[0]] == [(2,), (2,)]


def test_custom_sampler_batch_sampler_and_no_batching():
    x, y = _rows(6)
    ds = data.TensorDataset(x, y)
    got = [b[1].numpy().tolist() for b in data.DataLoader(ds, batch_size=2, sampler=[5, 4, 3, 2, 1, 0])]
    assert got == [[1, 0], [3, 2], [1, 0]]
    got = [b[1].numpy().tolist() for b in data.DataLoader(ds, batch_sampler=[[0, 1, 2], [5]])]
    assert got == [[0, 1, 2], [1]]
    single = list(data.DataLoader(ds, batch_size=None))
    assert len(single) == 6 and single[2][0].shape == (3,)
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        data.DataLoader(ds, sampler=[0], shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        data.DataLoader(ds, batch_sampler=[[0]], batch_size=2)
    with pytest.raises(ValueError, match="positive integer"):
        data.DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="num_workers"):
        data.DataLoader(ds, num_workers=-1)


def test_tensor_dataset_items_subset_concat_and_errors():
    x, y = _rows(4)
    ds = data.TensorDataset(Tensor(x), Tensor(y))
    assert len(ds) == 4
    item = ds[-1]
    np.testing.assert_array_equal(item[0].numpy(), x[-1])
    assert item[1].numpy() == y[-1]
    with pytest.raises(IndexError):
        ds[4]
    with pytest.raises(ValueError, match="size mismatch"):
        data.TensorDataset(x, y[:3])
    sub = data.Subset(ds, [3, 1])
    assert len(sub) == 2 and sub[0][1].numpy() == y[3]
    (batch,) = list(data.DataLoader(sub, batch_size=2))
    np.testing.assert_array_equal(batch[0].numpy(), x[[3, 1]])
    both = ds + sub
    assert len(both) == 6
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in data.DataLoader(both, batch_size=4)]),
                                  np.concatenate([x, x[[3, 1]]]))


@pytest.mark.parametrize("lengths", [[3, 7], [0.5, 0.5], [0.3, 0.3, 0.4], [0.34, 0.33, 0.33], [10], [0.1] * 10])
def test_random_split_sizes_match_torch_and_partition(lengths):
    ds = data.TensorDataset(np.arange(10))
    parts = data.random_split(ds, lengths, generator=0)
    theirs = tud.random_split(range(10), lengths, generator=torch.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [len(t) for t in theirs]
    seen = sorted(int(i) for p in parts for i in p.indices)
    assert seen == list(range(10))
    again = data.random_split(ds, lengths, generator=0)
    assert [p.indices.tolist() for p in parts] == [p.indices.tolist() for p in again]


def test_random_split_rejects_bad_lengths():
    with pytest.raises(ValueError, match="does not equal"):
        data.random_split(data.TensorDataset(np.arange(10)), [3, 3])


class Squares(data.Dataset):
    def __len__(self):
        return 23

    def __getitem__(self, i):
        info = data.get_worker_info()
        return np.array([i, i * i]), (info.id if info is not None else -1)


def test_workers_give_the_same_batches_in_order():
    plain = [b[0].numpy() for b in data.DataLoader(Squares(), batch_size=4)]
    workers = list(data.DataLoader(Squares(), batch_size=4, num_workers=2))
    assert len(workers) == len(plain) == 6
    for (batch, _), expected in zip(workers, plain):
        np.testing.assert_array_equal(batch.numpy(), expected)
    assert {int(w) for b in workers for w in b[1].numpy()} == {0, 1}   # both workers fetched
    x, y = _rows(9)
    shuffled = list(data.DataLoader(data.TensorDataset(x, y), batch_size=2, shuffle=True, generator=3, num_workers=2))
    assert sorted(np.concatenate([b[1].numpy() for b in shuffled]).tolist()) == sorted(y.tolist())


class Failing(data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5:
            raise KeyError("sample 5 is broken")
        return np.float32(i)


class ReturnsTensors(data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        return Tensor([float(i)])


def test_worker_errors_are_raised_in_the_parent():
    with pytest.raises(KeyError, match="sample 5 is broken"):
        list(data.DataLoader(Failing(), batch_size=2, num_workers=2))
    with pytest.raises(TypeError, match="must return numpy arrays"):
        list(data.DataLoader(ReturnsTensors(), batch_size=2, num_workers=1))
    # in the main process a dataset of Tensors is fine
    (batch,) = list(data.DataLoader(ReturnsTensors(), batch_size=2))
    np.testing.assert_array_equal(batch.numpy(), [[0.0], [1.0]])


def test_batch_size_none_yields_samples_without_a_batch_axis():
    """DataLoader(batch_size=None) gives each sample as is, like torch: 0-d samples stay 0-d (they were (1,))."""
    ds = data.TensorDataset(Tensor(np.arange(4, dtype=np.float32)), Tensor(np.arange(8).reshape(4, 2)))
    samples = list(data.DataLoader(ds, batch_size=None))
    assert len(samples) == 4 and samples[2][0].shape == () and samples[2][1].shape == (2,)
    assert samples[2][0].item() == 2.0 and samples[2][1].tolist() == [4, 5]
