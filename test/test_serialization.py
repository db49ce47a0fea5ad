"""tinyjit.save / tinyjit.load: state dicts and nested containers round-trip through one safetensors file whose
structure is JSON metadata (no pickle)."""
import json
import math

import numpy as np
import pytest
from safetensors.numpy import load_file

import tinyjit
from tinyjit import Tensor, dtypes, nn, optim


def _model():
    Tensor.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_model_and_optimizer_state_round_trip(tmp_path):
    model = _model()
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    x = Tensor(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    for _ in range(2):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    path = tmp_path / "ckpt.safetensors"
    tinyjit.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": 3}, path)
    loaded = tinyjit.load(path)
    assert loaded["epoch"] == 3
    expected = model.state_dict()
    assert list(loaded["model"]) == list(expected)
    for k, v in expected.items():
        assert isinstance(loaded["model"][k], Tensor) and loaded["model"][k].dtype == v.dtype
        np.testing.assert_array_equal(loaded["model"][k].numpy(), v.numpy())
    # the restored optimizer continues exactly like the original
    model2 = _model()
    model2.load_state_dict(loaded["model"])
    opt2 = optim.AdamW(model2.parameters(), lr=1e-2)
    opt2.load_state_dict(loaded["opt"])
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_nested_containers_values_and_dtypes(tmp_path):
    obj = {
        "tensors": [Tensor(np.arange(6, dtype=np.int64).reshape(2, 3)), Tensor(np.float16(1.5)),
                    Tensor(np.zeros((0, 4), np.float32)), Tensor([True, False])],
        "pair": (Tensor([1, 2], dtype=dtypes.uint8), np.array([[1.0, 2.0]], np.float64)),
        0: {"lr": 0.1, "betas": (0.9, 0.999), "name": "adam", "flag": True, "none": None, "inf": -math.inf},
        "scalar": np.float32(2.5),
        "leaf": Tensor([1.0, 2.0], requires_grad=True),
    }
    path = tmp_path / "nested.safetensors"
    tinyjit.save(obj, path)
    out = tinyjit.load(path)
    assert set(out) == {"tensors", "pair", 0, "scalar", "leaf"}
    for a, b in zip(out["tensors"], obj["tensors"]):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert isinstance(out["pair"], tuple) and out["pair"][0].dtype == dtypes.uint8
    assert isinstance(out["pair"][1], np.ndarray) and out["pair"][1].dtype == np.float64
    assert out[0] == {"lr": 0.1, "betas": (0.9, 0.999), "name": "adam", "flag": True, "none": None, "inf": -math.inf}
    assert out["scalar"] == np.float32(2.5) and out["scalar"].dtype == np.float32
    assert out["leaf"].requires_grad and not out["tensors"][0].requires_grad
    # a single tensor, on a chosen device
    tinyjit.save(Tensor([3.0]), path)
    single = tinyjit.load(path, device="CPU")
    assert isinstance(single, Tensor) and single.device == "CPU" and single.numpy().tolist() == [3.0]


def test_file_is_plain_safetensors_with_json_structure(tmp_path):
    path = tmp_path / "sd.safetensors"
    tinyjit.save({"w": Tensor([[1.0, 2.0]]), "b": Tensor([0.5])}, path)
    raw = load_file(str(path))            # the reference reader sees the tensors
    assert sorted(raw) == ["0", "1"]
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8:8 + header_len])
    structure = json.loads(header["__metadata__"]["tinyjit.structure"])
    assert structure["version"] == 1 and structure["tree"]["type"] == "dict"
    assert b"pickle" not in path.read_bytes() and b"\x80\x04" not in path.read_bytes()[:8 + header_len]


def test_foreign_safetensors_file_loads_flat(tmp_path):
    from safetensors.numpy import save_file
    path = tmp_path / "foreign.safetensors"
    save_file({"a": np.ones((2,), np.float32)}, str(path))
    out = tinyjit.load(path)
    assert list(out) == ["a"] and out["a"].numpy().tolist() == [1.0, 1.0]


class Opaque:
    pass


@pytest.mark.parametrize("obj,where", [({"a": [1, Opaque()]}, r"obj\['a'\]\[1\]"), ({(1, 2): 3}, "dict key"),
                                       ({"s": {1, 2}}, r"obj\['s'\]")])
def test_unsupported_values_are_refused_with_where(tmp_path, obj, where):
    path = tmp_path / "bad.safetensors"
    with pytest.raises(TypeError, match=where):
        tinyjit.save(obj, path)
    assert not path.exists() and not list(tmp_path.iterdir())   # nothing half-written


def test_damaged_structure_is_a_value_error(tmp_path):
    from tinyjit.nn.state import safe_save
    path = tmp_path / "damaged.safetensors"
    safe_save({"0": np.zeros(1, np.float32)}, path, metadata={"tinyjit.structure": '{"version": 1, "tree": '
                                                                                  '{"type": "tensor", "key": "7"}}'})
    with pytest.raises(ValueError, match="does not hold"):
        tinyjit.load(path)
    safe_save({}, path, metadata={"tinyjit.structure": '{"version": 99}'})
    with pytest.raises(ValueError, match="unknown structure version"):
        tinyjit.load(path)
