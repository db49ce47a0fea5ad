"""More nn.functional functions and nn modules, compared with torch: values and gradients (inputs and parameters),
state_dict keys, and torch's error classes. CPU only: these are compositions of Tensor ops whose backends are
tested elsewhere."""
from __future__ import annotations

import contextlib
from collections import OrderedDict

import numpy as np
import pytest
import torch

import tinyjit.nn.functional as F
from tinyjit import Tensor, nn
from tinyjit.dtype import dtypes

pytestmark = pytest.mark.devices("CPU")
RNG = np.random.default_rng(1)


def values(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def check(ours, theirs, atol=1e-5, rtol=1e-5):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    got = ours.numpy() if isinstance(ours, Tensor) else np.asarray(ours)
    assert got.shape == theirs.shape, (got.shape, theirs.shape)
    assert got.dtype == theirs.dtype, (got.dtype, theirs.dtype)
    np.testing.assert_allclose(got, theirs, atol=atol, rtol=rtol)


def compare(ours_fn, theirs_fn, *arrays, atol=1e-5, params=()):
    """ours_fn(*tensors) against theirs_fn(*torch tensors): the values and the gradients of a weighted sum with
    respect to every input and each (ours, theirs) parameter pair in `params`."""
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, expected = ours_fn(*ours), theirs_fn(*theirs)
    check(out, expected, atol)
    weights = values(*expected.shape)
    (out * Tensor(weights)).sum().backward()
    (expected * torch.tensor(weights)).sum().backward()
    for o, t in list(zip(ours, theirs)) + list(params):
        check(o.grad, t.grad, atol)


def copy_parameters(ours: nn.Module, theirs: torch.nn.Module):
    """theirs' parameters loaded into ours (by state_dict name); returns the (ours, theirs) parameter pairs."""
    ours.load_state_dict({k: Tensor(v.detach().numpy()) for k, v in theirs.state_dict().items()})
    mine = dict(ours.named_parameters())
    return [(mine[name], p) for name, p in theirs.named_parameters()]


def test_unfold_fold():
    x = values(2, 3, 6, 7)
    for kwargs in ({"kernel_size": 2}, {"kernel_size": (2, 3), "stride": 2, "padding": 1},
                   {"kernel_size": 3, "dilation": (1, 2), "stride": (1, 2)}):
        compare(lambda t: F.unfold(t, **kwargs), lambda t: torch.nn.functional.unfold(t, **kwargs), x)
        cols = torch.nn.functional.unfold(torch.tensor(x), **kwargs).detach().numpy()
        compare(lambda t: F.fold(t, (6, 7), **kwargs), lambda t: torch.nn.functional.fold(t, (6, 7), **kwargs),
                cols)
    compare(lambda t: nn.Unfold(2, stride=2)(t), lambda t: torch.nn.Unfold(2, stride=2)(t), x[0])   # unbatched
    cols = values(1, 3 * 4, 9)
    compare(lambda t: nn.Fold((4, 4), 2, stride=1)(t), lambda t: torch.nn.Fold((4, 4), 2, stride=1)(t), cols)
    with pytest.raises(RuntimeError):
        F.fold(Tensor(values(1, 5, 9)), (4, 4), 2)
    with pytest.raises(RuntimeError):
        F.unfold(Tensor(values(3, 4)), 2)


def test_pixel_shuffle():
    x = values(2, 8, 3, 4)
    compare(lambda t: F.pixel_shuffle(t, 2), lambda t: torch.nn.functional.pixel_shuffle(t, 2), x)
    compare(lambda t: nn.PixelShuffle(2)(t), lambda t: torch.nn.PixelShuffle(2)(t), x[0])
    compare(lambda t: nn.PixelUnshuffle(2)(t), lambda t: torch.nn.PixelUnshuffle(2)(t), values(1, 2, 4, 6))
    compare(lambda t: F.pixel_unshuffle(F.pixel_shuffle(t, 2), 2) * 1, lambda t: t * 1, x)
    with pytest.raises(RuntimeError):
        F.pixel_shuffle(Tensor(x), 3)


def test_adaptive_max_pool():
    x = values(2, 3, 7, 5)
    for size in (1, (3, 2), (7, 5), (4, None)):
        compare(lambda t: F.adaptive_max_pool2d(t, size), lambda t: torch.nn.functional.adaptive_max_pool2d(t, size),
                x)
        _, indices = torch.nn.functional.adaptive_max_pool2d(torch.tensor(x), size, return_indices=True)
        check(F.adaptive_max_pool2d(Tensor(x), size, return_indices=True)[1], indices)
    for size in (3, 1, 5):
        compare(lambda t: nn.AdaptiveMaxPool1d(size)(t), lambda t: torch.nn.AdaptiveMaxPool1d(size)(t), x[0, :, 0])
    v, i = nn.AdaptiveMaxPool1d(2, return_indices=True)(Tensor(x[:, :, 0]))
    tv, ti = torch.nn.AdaptiveMaxPool1d(2, return_indices=True)(torch.tensor(x[:, :, 0]))
    check(v, tv)
    check(i, ti)
    compare(lambda t: nn.AdaptiveMaxPool2d((2, 3))(t), lambda t: torch.nn.AdaptiveMaxPool2d((2, 3))(t), x[0])
    with pytest.raises(RuntimeError):   # torch's class
        F.adaptive_max_pool2d(Tensor(values(4)), 2)


def test_adaptive_max_pool3d_like_torch():
    """F.adaptive_max_pool3d / nn.AdaptiveMaxPool3d: values, input gradients and indices as torch's for windows that
    divide, overlap (7 -> 3), keep a size (None) and cover everything (1); unbatched; float64; ties (a relu's
    zeros) send the whole gradient to one element as torch's; an empty output_size; torch's error classes."""
    x = values(2, 2, 5, 7, 4)
    for size in ((2, 3, 4), 1, (5, None, 2)):
        compare(lambda t: F.adaptive_max_pool3d(t, size), lambda t: torch.nn.functional.adaptive_max_pool3d(t, size),
                x)
        _, indices = torch.nn.functional.adaptive_max_pool3d(torch.tensor(x), size, return_indices=True)
        check(F.adaptive_max_pool3d(Tensor(x), size, return_indices=True)[1], indices)
    layer, reference = nn.AdaptiveMaxPool3d((3, 2, None), return_indices=True), \
        torch.nn.AdaptiveMaxPool3d((3, 2, None), return_indices=True)
    assert repr(layer) == repr(reference)
    for got, want in zip(layer(Tensor(x[0].astype(np.float64))), reference(torch.tensor(x[0].astype(np.float64)))):
        check(got, want)
    ties = np.zeros((1, 1, 3, 4, 4), np.float32)
    ties[0, 0, 1, 1:3, 1] = 2.0
    ours, theirs = Tensor(ties, requires_grad=True), torch.tensor(ties, requires_grad=True)
    F.adaptive_max_pool3d(ours, (2, 2, 3)).sum().backward()
    torch.nn.functional.adaptive_max_pool3d(theirs, (2, 2, 3)).sum().backward()
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())
    empty, empty_indices = F.adaptive_max_pool3d(Tensor(x), (0, 2, 2), return_indices=True)
    assert empty.shape == (2, 2, 0, 2, 2) and empty_indices.dtype == dtypes.int64
    with pytest.raises(RuntimeError, match="adaptive_max_pool3d"):
        F.adaptive_max_pool3d(Tensor(values(4, 4)), 2)
    with pytest.raises(RuntimeError, match="adaptive_max_pool3d"):
        F.adaptive_max_pool3d(Tensor(np.zeros((1, 2, 0, 3, 3), np.float32)), 2)
    with pytest.raises(RuntimeError, match="adaptive_max_pool3d"):
        F.adaptive_max_pool3d(Tensor(x), (2, 2))
    with pytest.raises(RuntimeError, match="adaptive_max_pool3d"):
        F.adaptive_max_pool3d(Tensor(x), -1)
    with pytest.raises(TypeError, match="adaptive_max_pool3d"):
        F.adaptive_max_pool3d(Tensor(x), (2, 2.5, 2))


def test_distances():
    a, b = values(4, 5), values(4, 5)
    for p in (2.0, 1.0, 3.0):
        compare(lambda x, y: F.pairwise_distance(x, y, p), lambda x, y: torch.nn.functional.pairwise_distance(x, y, p),
                a, b)
    compare(lambda x, y: nn.PairwiseDistance(keepdim=True)(x, y),
            lambda x, y: torch.nn.PairwiseDistance(keepdim=True)(x, y), a, b[:1])
    compare(lambda x, y: nn.CosineSimilarity()(x, y), lambda x, y: torch.nn.CosineSimilarity()(x, y), a, b)
    compare(lambda x, y: nn.CosineSimilarity(dim=0)(x, y), lambda x, y: torch.nn.CosineSimilarity(dim=0)(x, y),
            a, b)


def test_instance_norm_and_rms_norm():
    x = values(2, 3, 4, 5)
    compare(lambda t: F.instance_norm(t), lambda t: torch.nn.functional.instance_norm(t), x)
    ours, theirs = nn.InstanceNorm2d(3, affine=True), torch.nn.InstanceNorm2d(3, affine=True)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(values(3)))
        theirs.bias.copy_(torch.tensor(values(3)))
    params = copy_parameters(ours, theirs)
    compare(ours, theirs, x, params=params)
    compare(lambda t: nn.InstanceNorm1d(3)(t), lambda t: torch.nn.InstanceNorm1d(3)(t), x[:, :, 0])
    compare(lambda t: nn.InstanceNorm1d(3)(t), lambda t: torch.nn.InstanceNorm1d(3)(t), x[0, :, 0])   # unbatched
    # running statistics: updated in training, used in eval
    ours, theirs = nn.InstanceNorm2d(3, track_running_stats=True), torch.nn.InstanceNorm2d(3, track_running_stats=True)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    for _ in range(2):
        ours(Tensor(x))
        theirs(torch.tensor(x))
    check(ours.running_mean, theirs.running_mean)
    check(ours.running_var, theirs.running_var)
    ours.eval(), theirs.eval()
    check(ours(Tensor(x)), theirs(torch.tensor(x)))
    w = values(5)
    compare(lambda t: F.rms_norm(t, (5,), Tensor(w)), lambda t: torch.nn.functional.rms_norm(t, (5,), torch.tensor(w)),
            x)
    compare(lambda t: F.rms_norm(t, (4, 5), eps=1e-3), lambda t: torch.nn.functional.rms_norm(t, (4, 5), eps=1e-3), x)
    with pytest.raises(ValueError):
        F.rms_norm(Tensor(x), (4,))


def test_activations():
    x = values(3, 4, 5) * 2
    compare(lambda t: nn.SELU()(t), lambda t: torch.nn.SELU()(t), x)
    compare(lambda t: nn.Threshold(0.1, 20.0)(t), lambda t: torch.nn.Threshold(0.1, 20.0)(t), x)
    compare(lambda t: nn.Hardshrink()(t), lambda t: torch.nn.Hardshrink()(t), x)
    compare(lambda t: nn.Softshrink(1.0)(t), lambda t: torch.nn.Softshrink(1.0)(t), x)
    compare(lambda t: nn.Tanhshrink()(t), lambda t: torch.nn.Tanhshrink()(t), x)
    for channels in (1, 4):
        ours, theirs = nn.PReLU(channels, init=0.1), torch.nn.PReLU(channels, init=0.1)
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(values(channels)))
        compare(ours, theirs, x, params=copy_parameters(ours, theirs))
    compare(lambda t: F.prelu(t, Tensor([0.3])), lambda t: torch.nn.functional.prelu(t, torch.tensor([0.3])), x[0, 0])
    with pytest.raises(RuntimeError):
        F.prelu(Tensor(x), Tensor(values(3)))
    with pytest.raises(RuntimeError):
        F.softshrink(Tensor(x), -1.0)


def test_padding_layers():
    x = values(2, 3, 4, 5)
    layers = [("ZeroPad2d", (1, 2, 0, 3), ()), ("ConstantPad2d", 2, (1.5,)), ("ReflectionPad2d", (1, 3, 2, 0), ()),
              ("ReplicationPad2d", 2, ())]
    for name, padding, extra in layers:
        compare(getattr(nn, name)(padding, *extra), getattr(torch.nn, name)(padding, *extra), x)
    for name, padding, extra in (("ConstantPad1d", (2, 1), (-1.0,)), ("ReflectionPad1d", 3, ()),
                                 ("ReplicationPad1d", (0, 4), ())):
        compare(getattr(nn, name)(padding, *extra), getattr(torch.nn, name)(padding, *extra), x[0])
    with pytest.raises(RuntimeError):
        nn.ReflectionPad1d(5)(Tensor(x[0]))


def test_bilinear():
    ours, theirs = nn.Bilinear(4, 3, 5), torch.nn.Bilinear(4, 3, 5)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    assert ours.weight.shape == tuple(theirs.weight.shape)
    params = copy_parameters(ours, theirs)
    compare(ours, theirs, values(2, 6, 4), values(2, 6, 3), params=params)
    no_bias = nn.Bilinear(4, 3, 2, bias=False)
    assert list(no_bias.state_dict()) == ["weight"]
    with pytest.raises(RuntimeError):
        ours(Tensor(values(2, 3)), Tensor(values(2, 3)))


def test_parameter_list_and_dict():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.scales = nn.ParameterList([Tensor(values(3)), nn.Parameter(Tensor(values(2)))])
            self.table = nn.ParameterDict({"a": Tensor(values(2, 2))})
            self.table["b"] = Tensor(values(1))
            self.scales.append(Tensor(values(4)))

    class TorchModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scales = torch.nn.ParameterList([torch.zeros(3), torch.zeros(2)])
            self.table = torch.nn.ParameterDict({"a": torch.zeros(2, 2)})
            self.table["b"] = torch.zeros(1)
            self.scales.append(torch.zeros(4))

    model, reference = Model(), TorchModel()
    assert list(model.state_dict()) == list(reference.state_dict())
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in reference.named_parameters()]
    assert len(model.scales) == 3 and len(model.table) == 2 and "b" in model.table
    assert all(p.requires_grad for p in model.parameters())
    (model.scales[0].sum() + model.scales[-1].sum() + model.table["a"].sum()).backward()
    assert model.scales[0].grad.tolist() == [1.0] * 3 and model.table["b"].grad is None
    assert list(model.table.keys()) == ["a", "b"] and len(list(model.scales)) == 3
    assert len(model.scales[1:]) == 2 and model.scales[1:][0] is model.scales[1]
    with pytest.raises(KeyError):
        model.table["c"]
    with pytest.raises(TypeError):
        model.scales.append(3)


def test_found_by_a_tester_nan_half_and_overflow_like_torch():
    """NaN passes through threshold and the shrinks; rms_norm of float16 takes float32's epsilon; cosine similarity
    divides by the norms first (no overflow of their product, float16 in float32); instance norm's running
    statistics never count num_batches_tracked and momentum=None updates nothing."""
    xs = np.array([np.nan, 0.2, 1.0, -1.0, 0.5, -0.5], np.float32)
    for name, args in (("threshold", (0.5, -1.0)), ("hardshrink", ()), ("softshrink", ())):
        got = getattr(F, name)(Tensor(xs), *args).numpy()
        want = getattr(torch.nn.functional, name)(torch.tensor(xs), *args).numpy()
        np.testing.assert_array_equal(got, want, err_msg=name)
    h = (np.array([[1e-3, -2e-3, 5e-4, 1e-3]]) * 1).astype(np.float16)
    np.testing.assert_allclose(F.rms_norm(Tensor(h), (4,)).numpy().astype(np.float32),
                               torch.nn.functional.rms_norm(torch.tensor(h), (4,)).float().numpy(), rtol=2e-3)
    for a, b, dtype in (([300, 300], [300, 0], np.float16), ([1e20, 1e20], [1e20, -1e20], np.float32),
                        ([1.0, 2.0], [3.0, -1.0], np.float32)):
        a, b = np.array(a, dtype), np.array(b, dtype)
        got = F.cosine_similarity(Tensor(a), Tensor(b), dim=0).numpy().astype(np.float32)
        want = torch.nn.functional.cosine_similarity(torch.tensor(a), torch.tensor(b), dim=0).float().numpy()
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-6)
    x = np.random.default_rng(0).standard_normal((3, 2, 5)).astype(np.float32)
    for momentum in (0.1, None):
        ours, theirs = nn.InstanceNorm1d(2, track_running_stats=True, momentum=momentum), \
            torch.nn.InstanceNorm1d(2, track_running_stats=True, momentum=momentum)
        ours(Tensor(x)).numpy()
        theirs(torch.tensor(x))
        for key, value in theirs.state_dict().items():
            np.testing.assert_allclose(ours.state_dict()[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{key} momentum={momentum}")


@pytest.mark.parametrize("return_indices", [False, True])
def test_adaptive_max_pool_gradient_goes_to_the_chosen_maximum_of_ties(return_indices):
    x = np.array([[[1, 1, 0, 2, 2, 2]]], np.float32)
    ours, theirs = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = F.adaptive_max_pool1d(ours, 2, return_indices=return_indices)
    want = torch.nn.functional.adaptive_max_pool1d(theirs, 2, return_indices=return_indices)
    (out[0] if return_indices else out).sum().backward()
    (want[0] if return_indices else want).sum().backward()
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())
    x2 = np.zeros((1, 1, 4, 4), np.float32)   # every value tied (a relu's zeros)
    ours, theirs = Tensor(x2, requires_grad=True), torch.tensor(x2, requires_grad=True)
    F.adaptive_max_pool2d(ours, 2).sum().backward()
    torch.nn.functional.adaptive_max_pool2d(theirs, 2).sum().backward()
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())


def test_max_pool_picks_like_torch_at_minus_inf_nan_and_the_lowest_int():
    """The gradient (and index) of a max pool goes where torch's does: a window of -inf (or of the lowest int) next
    to padding picks its first input element, never the padding, which ties with it (before: the gradient was
    lost); a window holding NaN picks its last NaN. Every pooling path: max_pool1d/2d/3d with and without ceil_mode
    and indices (2-d without them has its own kernel), and adaptive_max_pool2d."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    cases = {"all -inf": np.full_like(x, -np.inf), "-inf and values": np.where(x > 0, -np.inf, x),
             "nan": np.where(x > 0.3, np.nan, x)}
    pools = [lambda f, t: f.max_pool2d(t, 3, 2, padding=1), lambda f, t: f.max_pool2d(t, 2, 2),
             lambda f, t: f.max_pool2d(t, 3, 2, padding=1, ceil_mode=True),
             lambda f, t: f.max_pool2d(t, 2, 2, padding=1, return_indices=True),
             lambda f, t: f.max_pool1d(t[0], 2, 2, padding=1, return_indices=True),
             lambda f, t: f.max_pool3d(t[None], 2, 2, padding=1),
             lambda f, t: f.adaptive_max_pool2d(t, (2, 3), return_indices=True)]
    for name, data in cases.items():
        for pool in pools:
            ours, theirs = Tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
            got, want = pool(F, ours), pool(torch.nn.functional, theirs)
            got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
            for g, w in zip(got, want):
                check(g, w)
            weights = np.arange(1, 1 + want[0].numel(), dtype=np.float32).reshape(want[0].shape)
            (got[0] * Tensor(weights)).sum().backward()
            (want[0] * torch.tensor(weights)).sum().backward()
            np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy(), err_msg=name)
    lowest = np.full((1, 1, 4, 4), np.iinfo(np.int64).min, np.int64)
    lowest[0, 0, 1, 2] = 7
    _, indices = F.max_pool2d(Tensor(lowest), 2, 2, padding=1, return_indices=True)
    np.testing.assert_array_equal(indices.numpy(), [[[[0, 1, 3], [4, 6, 7], [12, 13, 15]]]])


def test_padding_layers_1d_and_3d_like_torch():
    """ZeroPad1d and the 3-d padding layers (constant, zero, reflect, replicate) on batched and unbatched inputs;
    reprs as torch's."""
    volume = values(2, 2, 3, 4, 5)
    layers = [("ZeroPad3d", (1, 2, 0, 1, 2, 0), ()), ("ConstantPad3d", 1, (-2.5,)),
              ("ReflectionPad3d", (1, 3, 2, 0, 1, 2), ()), ("ReplicationPad3d", (2, 0, 1, 3, 0, 1), ())]
    for name, padding, extra in layers:
        ours, theirs = getattr(nn, name)(padding, *extra), getattr(torch.nn, name)(padding, *extra)
        assert repr(ours) == repr(theirs)
        compare(ours, theirs, volume)
        compare(ours, theirs, volume[0])
    compare(nn.ZeroPad1d((3, 1)), torch.nn.ZeroPad1d((3, 1)), values(2, 3, 4))
    assert repr(nn.ZeroPad1d(2)) == repr(torch.nn.ZeroPad1d(2))
    assert repr(nn.ZeroPad2d(1)) == repr(torch.nn.ZeroPad2d(1))
    with pytest.raises(RuntimeError):
        nn.ReflectionPad3d(3)(Tensor(volume))   # not smaller than the depth 3
    with pytest.raises(ValueError):
        nn.ReplicationPad3d(1)(Tensor(values(3, 4)))
    with pytest.raises(ValueError):
        nn.ConstantPad3d((1, 2), 0.0)


def test_instance_norm_3d_like_torch():
    x = values(2, 3, 2, 3, 4)
    ours, theirs = nn.InstanceNorm3d(3, affine=True), torch.nn.InstanceNorm3d(3, affine=True)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(values(3)))
        theirs.bias.copy_(torch.tensor(values(3)))
    compare(ours, theirs, x, atol=1e-4, params=copy_parameters(ours, theirs))
    tracked, reference = nn.InstanceNorm3d(3, track_running_stats=True), torch.nn.InstanceNorm3d(
        3, track_running_stats=True)
    tracked(Tensor(x))
    reference(torch.tensor(x))
    for name in ("running_mean", "running_var"):
        check(getattr(tracked, name), getattr(reference, name), atol=1e-5)
    assert list(tracked.state_dict()) == list(reference.state_dict())
    compare(tracked.eval(), reference.eval(), x[0], atol=1e-4)   # unbatched, normalized by the running statistics
    with pytest.raises(ValueError):
        tracked(Tensor(values(3, 4, 5)))


def test_parameter_dict_is_a_dict_like_torchs():
    ours = nn.ParameterDict({"b": Tensor(values(2)), "a": Tensor(values(3))})
    theirs = torch.nn.ParameterDict({"b": torch.zeros(2), "a": torch.zeros(3)})
    for d in (ours, theirs):
        d.update({"z": d["a"] * 0 + 1, "c": d["b"] * 1})                   # a plain dict: sorted, as torch
        d.update([("y", d["a"] * 2), ("x", d["b"] * 2)])                   # pairs: in order
        d.update(type(d)(OrderedDict([("w", d["a"] * 3), ("v", d["b"])])))
    assert list(ours.keys()) == list(theirs.keys()) == list(ours) == [k for k, _ in ours.items()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [v.shape for v in ours.values()] == [tuple(v.shape) for v in theirs.values()]
    assert all(isinstance(v, nn.Parameter) and v.requires_grad for v in ours.values())
    assert "z" in ours and 3 not in ours and len(ours) == len(theirs) == 8
    z = ours.pop("z")
    assert z.shape == (3,) and "z" not in ours and len(ours) == 7 and "z" not in ours.state_dict()
    assert ours.get("nope") is None and ours.get("nope", 5) == 5 and ours.get("a") is ours["a"]
    assert ours.popitem()[0] == theirs.popitem()[0] == "v"
    assert ours.setdefault("a", Tensor(values(7))).shape == (3,)
    assert ours.setdefault("new", Tensor(values(4))).shape == (4,) and list(ours)[-1] == "new"
    copied = ours.copy()
    assert list(copied) == list(ours) and copied["a"] is ours["a"]
    del ours["new"]
    assert "new" not in ours and "new" in copied
    with pytest.raises(KeyError):
        ours.pop("missing")
    with pytest.raises(KeyError):
        del ours["missing"]
    with pytest.raises(TypeError):
        ours.update(3)
    with pytest.raises(ValueError):
        ours.update([("a",)])
    with pytest.raises(TypeError):
        ours[3] = Tensor(values(1))
    ours.clear()
    assert len(ours) == 0 and list(ours.parameters()) == []


# ---- channel-wise dropout (found porting pytorch/examples mnist_rnn, whose Dropout2d reads a 2-d input) ----
def constant_axes(out: np.ndarray) -> list[int]:
    """The axes (of size > 1) along which `out` does not change: those its dropout mask is broadcast over."""
    return [axis for axis in range(out.ndim)
            if out.shape[axis] > 1 and (out == np.take(out, [0], axis=axis)).all()]


CHANNEL_DROPOUT_CASES = [("dropout1d", (12, 5)), ("dropout1d", (6, 12, 5)),
                         ("dropout2d", (12, 10)), ("dropout2d", (6, 12, 5)), ("dropout2d", (4, 12, 3, 2)),
                         ("dropout2d", (3, 12, 2, 2, 2)),
                         ("dropout3d", (12,)), ("dropout3d", (12, 5)), ("dropout3d", (12, 3, 2, 2)),
                         ("dropout3d", (4, 12, 2, 2, 2))]


@pytest.mark.filterwarnings("ignore:dropout")
@pytest.mark.parametrize("case", range(len(CHANNEL_DROPOUT_CASES)))
def test_channel_dropout_drops_the_features_torch_drops(case):
    """F.dropout1d/2d/3d and nn.Dropout1d/2d/3d zero the same kind of slice as torch for every rank torch
    accepts (torch's masks are other random numbers, so the axes each mask is broadcast over are compared), keep
    the dtype, scale the kept values by 1 / (1 - p), and pass the mask's gradient."""
    name, shape = CHANNEL_DROPOUT_CASES[case]
    dtype = (np.float32, np.float64, np.float16)[case % 3]
    torch.manual_seed(case)
    Tensor.manual_seed(case)
    theirs = getattr(torch.nn.functional, name)(torch.ones(shape, dtype=getattr(torch, np.dtype(dtype).name)), 0.5)
    x = Tensor(np.ones(shape, dtype), requires_grad=True)
    out = getattr(F, name)(x, 0.5)
    out.sum().backward()
    got = out.numpy()
    assert got.dtype == dtype and got.shape == shape
    assert set(np.unique(got)) == {0.0, 2.0}
    assert constant_axes(got) == constant_axes(theirs.numpy())
    np.testing.assert_array_equal(x.grad.numpy(), got)
    module = getattr(nn, name.replace("dropout", "Dropout"))(0.5)
    assert set(np.unique(module(Tensor(np.ones(shape, dtype))).numpy())) == {0.0, 2.0}
    module.eval()
    np.testing.assert_array_equal(module(Tensor(np.ones(shape, dtype))).numpy(), np.ones(shape, dtype))


def test_channel_dropout_edges_like_torch():
    x = values(2, 3, 4, 5)
    for name in ("dropout1d", "dropout2d", "dropout3d"):
        inp = x if name != "dropout1d" else x[0]
        ours, theirs = getattr(F, name), getattr(torch.nn.functional, name)
        for kwargs in ({"p": 0.0}, {"p": 0.5, "training": False}):
            check(ours(Tensor(inp), **kwargs), theirs(torch.tensor(inp), **kwargs))
        check(ours(Tensor(inp), 1.0), theirs(torch.tensor(inp), 1.0))
        with pytest.raises(ValueError, match="between 0 and 1"):
            ours(Tensor(inp), 1.5)
        with pytest.raises(ValueError):
            theirs(torch.tensor(inp), 1.5)
    for name, shape in (("dropout1d", (2, 3, 4, 5)), ("dropout1d", (5,)), ("dropout2d", (5,)),
                        ("dropout3d", ())):
        with pytest.raises(RuntimeError), pytest.warns() if name != "dropout1d" else contextlib.nullcontext():
            getattr(torch.nn.functional, name)(torch.ones(shape))
        with pytest.raises(RuntimeError, match=name), (
                pytest.warns(UserWarning) if name != "dropout1d" else contextlib.nullcontext()):
            getattr(F, name)(Tensor.ones(*shape))
    with pytest.warns(UserWarning, match="2-d input"):
        F.dropout2d(Tensor.ones(3, 4), 0.5)
    with pytest.raises(ValueError):
        nn.Dropout2d(2.0)
    assert repr(nn.Dropout3d(0.25)) == repr(torch.nn.Dropout3d(0.25))


# ---- reprs: print(model) prints torch's text (found porting pytorch/examples siamese_network) ----
MODULE_REPR_CASES = [
    "Conv2d(1, 8, 3)", "Conv2d(1, 8, 3, padding=1, bias=False)", "Conv2d(2, 4, (3, 5), stride=2, dilation=2, groups=2)",
    "Conv2d(2, 4, 3, padding='same')", "Conv1d(1, 8, 3)", "Conv3d(1, 2, 3, padding=1)",
    "ConvTranspose2d(2, 3, 3, stride=2, output_padding=1)", "ConvTranspose1d(2, 3, 3)",
    "ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=2, bias=False)",
    "BatchNorm1d(16)", "BatchNorm2d(4, affine=False)", "BatchNorm3d(4, momentum=None)", "LayerNorm(8)",
    "LayerNorm((3, 4), bias=False)", "GroupNorm(2, 4)", "GroupNorm(2, 4, affine=False)", "InstanceNorm2d(4)",
    "InstanceNorm1d(4, affine=True)", "RMSNorm(4)",
    "ReLU()", "ReLU(inplace=True)", "ReLU6(inplace=True)", "LeakyReLU(0.2, True)", "ELU(inplace=True)", "CELU()",
    "SELU(inplace=True)", "SiLU(inplace=True)", "Mish(inplace=True)", "Hardtanh()", "Hardtanh(-2, 2, True)",
    "Hardswish(inplace=True)", "Hardsigmoid()", "GELU(approximate='tanh')", "Threshold(0.1, 20.0, inplace=True)",
    "Hardshrink()", "Softshrink(0.3)", "Softmax(1)", "LogSoftmax(dim=1)", "Softplus(2, 10)", "Sigmoid()",
    "Dropout()", "Dropout(0.2, inplace=True)", "Dropout1d()", "Dropout2d(0.25)", "Dropout3d(0.1)",
    "MaxPool2d(2)", "MaxPool2d(3, 2, 1)", "MaxPool1d(2)", "MaxPool2d(3, stride=1)", "AvgPool2d(2)", "AvgPool1d(3)",
    "AdaptiveAvgPool2d((1, 1))", "Linear(3, 4)", "Linear(3, 4, bias=False)", "Embedding(5, 2, padding_idx=0)",
    "Flatten()", "Unflatten(1, (2, 3))", "LSTM(10, 16, batch_first=True)", "GRU(4, 8, 2, dropout=0.5)", "RNN(4, 8)",
    "LSTMCell(3, 4)", "GRUCell(3, 4)", "RNNCell(3, 4, nonlinearity='relu', bias=False)", "Identity()",
    "Upsample(scale_factor=2)", "Upsample(scale_factor=(2, 3))", "Upsample(size=4)", "PixelShuffle(2)",
    "MSELoss()", "BCELoss(reduction='sum')", "CrossEntropyLoss()", "NLLLoss()", "L1Loss()", "HuberLoss()",
    "Sequential(Conv2d(1, 2, 3), BatchNorm2d(2), ReLU(inplace=True), MaxPool2d(3, 2, 1), Flatten())",
]


def test_module_reprs_are_torchs():
    """repr(module) (what print(model) shows) is torch 2.13's text: only non-default convolution arguments,
    the norms' bias flag, inplace where torch shows it, the pools' default stride (kernel_size), the losses'
    empty parentheses..."""
    for text in MODULE_REPR_CASES:   # each text built from each framework's nn names
        assert repr(eval(text, dict(vars(nn)))) == repr(eval(text, dict(vars(torch.nn)))), text
