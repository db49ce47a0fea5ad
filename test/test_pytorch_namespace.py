"""`tinyjit.pytorch`, the `torch` namespace for ported scripts, against torch 2.13: dtype names, creation
functions, torch.NAME(input) functions, gradient modes, devices, and Module.to / Tensor formatting and iteration
that ported scripts use.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import tinyjit.pytorch as tj
from tinyjit import Tensor, dtypes, nn
from tinyjit.device import DeviceError


def check(ours, theirs, atol=1e-6, rtol=1e-5):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    got = ours.numpy() if isinstance(ours, Tensor) else np.asarray(ours)
    assert got.shape == theirs.shape, (got.shape, theirs.shape)
    assert str(got.dtype) == str(theirs.dtype), (got.dtype, theirs.dtype)
    np.testing.assert_allclose(got.astype(np.float64), theirs.astype(np.float64), atol=atol, rtol=rtol)


def test_legacy_tensor_constructors_like_torch():
    """torch.Tensor(2, 3) / torch.Tensor(data) / torch.Tensor() and the typed classes (FloatTensor, LongTensor,
    ...) build what torch's do (before: torch.Tensor([1, 2]) was int64, torch.Tensor(2, 3) a TypeError and the
    typed classes missing); isinstance and attribute access answer for tinyjit's Tensor; torch's error classes."""
    data = np.array([[1.7, -2.2], [3.0, 0.0]])
    cases = [lambda m: m.Tensor([1, 2]), lambda m: m.Tensor(data), lambda m: m.Tensor((2, 3)),
             lambda m: m.FloatTensor([[1, 2]]), lambda m: m.DoubleTensor(data), lambda m: m.LongTensor(data),
             lambda m: m.IntTensor([3, -4]), lambda m: m.ByteTensor([1, 255]), lambda m: m.BoolTensor([1, 0]),
             lambda m: m.HalfTensor([0.5]), lambda m: m.ShortTensor(range(3)), lambda m: m.CharTensor([-3])]
    for case in cases:
        check(case(tj), case(torch))
    for sizes in ((2, 3), (0,), ()):
        ours, theirs = tj.Tensor(*sizes), torch.Tensor(*sizes)
        assert ours.shape == tuple(theirs.shape) and ours.dtype.name == str(theirs.dtype).removeprefix("torch.")
    assert tj.LongTensor(4, 1).dtype == dtypes.int64 and tj.Tensor(2, device="cpu").shape == (2,)
    x = tj.zeros(3)
    assert tj.Tensor(x) is x and tj.FloatTensor(x) is x
    assert isinstance(x, tj.Tensor) and isinstance(x, tj.FloatTensor) and not isinstance(x, tj.LongTensor)
    assert issubclass(Tensor, tj.Tensor) and not isinstance(3, tj.Tensor)
    assert tj.Tensor.backward is Tensor.backward and tj.Tensor.__name__ == "Tensor"
    weight = nn.Parameter(tj.Tensor(3, 2))   # pytorch/examples gcn: an uninitialized weight, then an initializer
    nn.init.xavier_normal_(weight)
    assert weight.shape == (3, 2) and weight.requires_grad and np.isfinite(weight.numpy()).all()
    for call, error in ((lambda m: m.Tensor(2.5), TypeError), (lambda m: m.Tensor(-1), RuntimeError),
                        (lambda m: m.LongTensor(m.zeros(2)), TypeError)):
        with pytest.raises(error):
            call(torch)
        with pytest.raises(error):
            call(tj)


def test_dtype_names_are_torchs():
    for name in ("bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 "
                 "short int long half float double").split():
        assert getattr(tj, name).name == str(getattr(torch, name)).removeprefix("torch."), name
    assert tj.get_default_dtype() == dtypes.float32


NUMPY_AND_PYTHON_DATA = [
    1.5, 2, True, np.float64(1.5), np.float32(1.5), np.float16(1), np.int32(3), np.int64(3), np.uint16(3),
    np.bool_(True), np.array(1.5), [1.5], [np.float64(1.5)], [np.float64(1.5), 2.0], [2.0, np.float32(1.5)],
    [np.int32(3), 5], [np.int8(3), 2.5], [True, np.int8(2)], [np.float16(1), np.float64(2)],
    [[np.float64(1)], [2.0]], [np.array([1.5]), np.array([2.5])], [np.array([1.5], np.float32), [2.0]],
    [True, np.float64(2.0)], [np.uint32(1)],
]


@pytest.mark.parametrize("data", NUMPY_AND_PYTHON_DATA, ids=repr)
def test_tensor_infers_dtypes_like_torch_tensor(data):
    """Python floats make float32, ints int64; numpy scalars and arrays keep their dtype, also inside lists
    (torch.tensor(np.float64(1.5)) is float64)."""
    expected = torch.tensor(data)
    for ours in (Tensor(data), tj.tensor(data)):
        assert ours.dtype.name == str(expected.dtype).removeprefix("torch."), (data, ours.dtype)
        np.testing.assert_array_equal(ours.numpy(), expected.numpy())


def test_tensor_from_numpy_and_as_tensor(device):
    a = np.arange(6, dtype=np.int16).reshape(2, 3)
    t = tj.from_numpy(a)
    check(t, torch.from_numpy(a))
    with pytest.raises(TypeError, match="from_numpy: expected np.ndarray"):
        tj.from_numpy([1, 2])
    x = tj.tensor([[1, 2], [3, 4]], dtype=tj.float, device=device, requires_grad=True)
    assert x.requires_grad and x.is_leaf and x.device == device and x.dtype == dtypes.float32
    copy = tj.tensor(x)   # a new leaf holding the values (torch warns and copies)
    assert copy is not x and not copy.requires_grad
    check(copy, torch.tensor([[1., 2.], [3., 4.]]))
    assert tj.as_tensor(x) is x and tj.as_tensor(a).dtype == dtypes.int16


def test_creation_functions_match_torch(device):
    cases = [
        (tj.zeros(2, 3, device=device), torch.zeros(2, 3)),
        (tj.zeros((2, 3), dtype=tj.long, device=device), torch.zeros((2, 3), dtype=torch.long)),
        (tj.ones([4], device=device), torch.ones([4])),
        (tj.full((2,), 7, device=device), torch.full((2,), 7)),
        (tj.full((2,), 0.5, dtype=tj.float64, device=device), torch.full((2,), 0.5, dtype=torch.float64)),
        (tj.arange(5, device=device), torch.arange(5)),
        (tj.arange(1, 2, 0.25, device=device), torch.arange(1, 2, 0.25)),
        (tj.linspace(0, 1, 5, device=device), torch.linspace(0, 1, 5)),
        (tj.eye(2, 3, device=device), torch.eye(2, 3)),
    ]
    for ours, theirs in cases:
        check(ours, theirs)
    base = tj.ones(2, 2, dtype=tj.int32, device=device)
    check(tj.zeros_like(base), torch.zeros_like(torch.ones(2, 2, dtype=torch.int32)))
    check(tj.full_like(base, 3, dtype=tj.float), torch.full_like(torch.ones(2, 2), 3))
    assert tj.empty(3, 1, device=device).shape == (3, 1)
    assert tj.zeros(2, requires_grad=True).requires_grad and tj.arange(3.0, requires_grad=True).requires_grad
    assert tj.randn_like(tj.zeros(5, dtype=tj.float64)).dtype == dtypes.float64
    assert tj.rand_like(tj.zeros(5), dtype=tj.float16).dtype == dtypes.float16


def test_random_functions_and_manual_seed(device):
    tj.manual_seed(3)
    first = tj.randn(4, device=device).numpy()
    tj.manual_seed(3)
    np.testing.assert_array_equal(tj.randn(4, device=device).numpy(), first)
    high_only = tj.randint(10, (200,), device=device)
    low_high = tj.randint(5, 8, (200,), device=device)
    assert high_only.dtype == dtypes.int64 and set(high_only.numpy()) <= set(range(10))
    assert set(low_high.numpy()) == {5, 6, 7} and tj.randint(3, size=(2, 2)).shape == (2, 2)
    with pytest.raises(TypeError, match="randint"):
        tj.randint(5)
    assert sorted(tj.randperm(6, device=device).tolist()) == list(range(6))
    r = tj.rand(2, 3, device=device).numpy()
    assert r.shape == (2, 3) and ((0 <= r) & (r < 1)).all()


def test_joining_and_tensor_functions_match_torch(device):
    a = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    b = np.linspace(-1, 1, 12).astype(np.float32).reshape(3, 4)
    x, y = Tensor(a, device=device, requires_grad=True), Tensor(b, device=device)
    tx, ty = torch.tensor(a, requires_grad=True), torch.tensor(b)
    pairs = [
        (tj.cat([x, y], 1), torch.cat([tx, ty], 1)),
        (tj.cat((x, y)), torch.cat((tx, ty))),
        (tj.stack([x, y], dim=1), torch.stack([tx, ty], dim=1)),
        (tj.flatten(tj.stack([x, y]), 1), torch.flatten(torch.stack([tx, ty]), 1)),
        (tj.where(x > 0, x, y), torch.where(tx > 0, tx, ty)),
        (tj.einsum("ij,kj->ik", x, y), torch.einsum("ij,kj->ik", tx, ty)),
        (tj.sum(x, dim=1), torch.sum(tx, dim=1)),
        (tj.max(x, 1).values, torch.max(tx, 1).values),
        (tj.softmax(x, dim=-1), torch.softmax(tx, dim=-1)),
        (tj.clamp(x, min=-2, max=3), torch.clamp(tx, min=-2, max=3)),
        (tj.matmul(x, y.T), torch.matmul(tx, ty.T)),
        (tj.tanh(x), torch.tanh(tx)),
        (tj.tril(x), torch.tril(tx)),
    ]
    total_ours, total_torch = 0, 0
    for ours, theirs in pairs:
        check(ours, theirs, atol=1e-5)
        total_ours, total_torch = total_ours + ours.sum(), total_torch + theirs.sum()
    total_ours.backward()
    total_torch.backward()
    check(x.grad, tx.grad, atol=1e-4)
    assert tj.argmax(x, dim=1).tolist() == torch.argmax(tx, dim=1).tolist()
    assert tj.is_tensor(x) and not tj.is_tensor(a) and tj.is_floating_point(x) and tj.numel(x) == 12
    with pytest.raises(TypeError, match="exp\\(\\): argument 'input' must be Tensor, not list"):
        tj.exp([1.0])


def test_gradient_modes():
    x = tj.ones(2, requires_grad=True)
    assert tj.is_grad_enabled()
    with tj.no_grad():
        assert not tj.is_grad_enabled() and not (x * 2).requires_grad
        with tj.enable_grad():
            assert (x * 2).requires_grad
        assert not tj.is_grad_enabled()

    @tj.enable_grad()
    def doubled(t):
        return t * 2
    with tj.no_grad():
        assert doubled(x).requires_grad
    with tj.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert tj.is_grad_enabled()
    tj.set_grad_enabled(False)   # a plain call switches at once, as in torch
    try:
        assert not (x * 2).requires_grad
    finally:
        tj.set_grad_enabled(True)
    with tj.inference_mode():
        assert not tj.is_grad_enabled()


def test_device_objects(device):
    cpu = tj.device("cpu")
    assert cpu == "cpu" and str(cpu) == "cpu" and cpu.type == "cpu" and cpu.index is None
    assert repr(cpu) == repr(torch.device("cpu"))
    cuda0 = tj.device("cuda", 0)
    assert str(cuda0) == str(torch.device("cuda", 0)) and cuda0.index == 0 and cuda0.type == "cuda"
    assert tj.device("cuda:0").index == 0 and tj.device(cpu) is cpu
    with pytest.raises(RuntimeError, match="unknown device 'tpu'"):
        tj.device("tpu")
    with pytest.raises(DeviceError, match="one CUDA device"):
        tj.device("cuda", 1)
    with pytest.raises(ValueError, match="already names an index"):
        tj.device("cuda:0", 0)
    target = tj.device(device.lower())
    moved = tj.ones(2).to(target)
    assert moved.device == device
    model = nn.Linear(2, 2).to(target)
    assert model.weight.device == device and model(moved).device == device
    assert isinstance(tj.cuda.is_available(), bool) and tj.cuda.device_count() in (0, 1)
    assert tj.backends.mps.is_available() is False
    assert tj.accelerator.is_available() == (tj.accelerator.current_accelerator() is not None)


def test_module_to_dtype_and_device_like_torch(device):
    ours, theirs = nn.Linear(2, 2), torch.nn.Linear(2, 2)
    for m, long in ((ours, tj.long), (theirs, torch.long)):
        m.register_buffer("steps", (tj if m is ours else torch).zeros(2, dtype=long))
    weight = ours.weight
    ours.to(tj.float64)
    theirs.to(torch.float64)
    assert ours.weight is weight   # the same Parameter objects, as torch keeps
    assert ours.weight.dtype.name == str(theirs.weight.dtype).removeprefix("torch.")
    assert ours.steps.dtype.name == str(theirs.steps.dtype).removeprefix("torch.")   # non-float buffers stay
    with pytest.raises(TypeError, match="only accepts floating point"):
        ours.to(tj.long)
    with pytest.raises(TypeError, match="only accepts floating point"):
        theirs.to(torch.long)
    ours.to(device, tj.float32)
    assert ours.weight.device == device and ours.weight.dtype == dtypes.float32 and ours.steps.device == device
    assert ours.double().bias.dtype == dtypes.float64 and ours.float().bias.dtype == dtypes.float32
    assert ours.half().weight.dtype == dtypes.float16 and ours.cpu().weight.device == "CPU"
    with pytest.raises(TypeError, match="unexpected keyword"):
        ours.to(devices="CPU")


def test_format_and_iteration_like_torch(device):
    x = Tensor([[1.5, -2.0], [3.25, 4.0]], device=device)
    tx = torch.tensor([[1.5, -2.0], [3.25, 4.0]])
    assert f"{x[0, 0]:.3f}" == f"{tx[0, 0]:.3f}" and f"{x.sum():e}" == f"{tx.sum():e}"
    assert format(Tensor(3), "d") == format(torch.tensor(3), "d") and f"{x[1, 1]}" == "4.0"
    assert f"{x}" == repr(x)
    with pytest.raises(TypeError, match="unsupported format string"):
        f"{x:.2f}"
    rows = list(x)
    assert len(rows) == 2 and all(isinstance(r, Tensor) for r in rows)
    check(rows[1], tx[1])
    draws = Tensor.rand(4, device=device) * 10
    values = [float(v) for v in draws]
    assert values == draws.tolist()   # iterating realizes once: the same draws as the tensor holds
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        iter(Tensor(1.0))
