"""Tests for tinyjit.nn.state: safetensors read/write and torch checkpoint loading, checked against the real
``safetensors`` package and ``torch.save`` (torch is imported inside the tests only)."""
import importlib.util
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from tinyjit.nn import state
from tinyjit.nn.state import safe_load, safe_metadata, safe_save, torch_load

NUMPY_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I8": np.int8, "I16": np.int16,
                "I32": np.int32, "I64": np.int64, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32,
                "U64": np.uint64, "BOOL": np.bool_}


def _sample(dtype, shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dt.kind == "f":
        return (rng.standard_normal(size=shape) * 100).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)


def _header(path) -> tuple[int, bytes]:
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    return n, raw[8:8 + n]


# ----------------------------------------------------------------------------------------------- safetensors

@pytest.mark.parametrize("code", list(NUMPY_DTYPES))
def test_safe_round_trip_every_dtype(tmp_path, code):
    dt = NUMPY_DTYPES[code]
    tensors = {"matrix": _sample(dt, (3, 5)), "cube": _sample(dt, (2, 3, 4), seed=1), "scalar": _sample(dt, ()),
               "empty": np.zeros((0, 4), dtype=dt)}
    path = tmp_path / "t.safetensors"
    safe_save(tensors, path)
    _, raw = _header(path)
    header = json.loads(raw)
    assert {info["dtype"] for info in header.values()} == {code}
    n, raw = _header(path)
    assert n % 8 == 0
    loaded = safe_load(path, as_numpy=True)
    assert list(loaded) == list(header)
    assert set(loaded) == set(tensors)
    for name, want in tensors.items():
        assert loaded[name].dtype == want.dtype and loaded[name].shape == want.shape
        np.testing.assert_array_equal(loaded[name], want)


def test_safe_header_is_padded_and_tensors_aligned(tmp_path):
    tensors = {"a_byte": np.arange(3, dtype=np.uint8), "b_double": np.arange(5, dtype=np.float64),
               "c_half": np.arange(7, dtype=np.float16), "d_int": np.arange(1, dtype=np.int32)}
    path = tmp_path / "t.safetensors"
    safe_save(tensors, path)
    n, raw = _header(path)
    assert n % 8 == 0 and raw.startswith(b"{")
    assert raw.rstrip(b" ").endswith(b"}") and set(raw[len(raw.rstrip(b" ")):]) <= {ord(" ")}
    for name, info in json.loads(raw).items():
        assert info["data_offsets"][0] % tensors[name].itemsize == 0
    assert os.path.getsize(path) == 8 + n + sum(a.nbytes for a in tensors.values())


def test_safe_save_accepts_tensor_likes_and_views(tmp_path):
    class TensorLike:
        def __init__(self, a):
            self.a = a

        def numpy(self):
            return self.a

    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    tensors = {"transposed": base.T, "strided": base[::2, 1::3], "tensor_like": TensorLike(base + 1),
               "list": [[1, 2], [3, 4]]}
    path = tmp_path / "t.safetensors"
    safe_save(tensors, path)
    loaded = safe_load(path, as_numpy=True)
    np.testing.assert_array_equal(loaded["transposed"], base.T)
    np.testing.assert_array_equal(loaded["strided"], base[::2, 1::3])
    np.testing.assert_array_equal(loaded["tensor_like"], base + 1)
    np.testing.assert_array_equal(loaded["list"], np.array([[1, 2], [3, 4]]))
    assert os.listdir(tmp_path) == ["t.safetensors"]  # no temp file left behind


def test_safe_save_replaces_atomically(tmp_path):
    path = tmp_path / "t.safetensors"
    safe_save({"x": np.ones(3, dtype=np.float32)}, path)

    class Exploding:
        def numpy(self):
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        safe_save({"x": np.zeros(3, dtype=np.float32), "y": Exploding()}, path)
    np.testing.assert_array_equal(safe_load(path, as_numpy=True)["x"], np.ones(3, dtype=np.float32))
    assert os.listdir(tmp_path) == ["t.safetensors"]


@pytest.mark.parametrize("tensors,error,match", [
    ({"c": np.ones(2, dtype=np.complex64)}, TypeError, "complex64"),
    ({"o": np.array([object()])}, TypeError, "no safetensors equivalent"),
    ({"__metadata__": np.ones(2)}, ValueError, "reserved"),
    ({1: np.ones(2)}, TypeError, "must be str"),
])
def test_safe_save_rejects(tmp_path, tensors, error, match):
    with pytest.raises(error, match=match):
        safe_save(tensors, tmp_path / "t.safetensors")
    assert not (tmp_path / "t.safetensors").exists()


def test_safe_metadata(tmp_path):
    path = tmp_path / "t.safetensors"
    safe_save({"x": np.ones(2, dtype=np.float32)}, path, metadata={"format": "np", "step": "7"})
    assert safe_metadata(path) == {"format": "np", "step": "7"}
    safe_save({"x": np.ones(2, dtype=np.float32)}, path)
    assert safe_metadata(path) == {}
    with pytest.raises(TypeError, match="str to str"):
        safe_save({"x": np.ones(2)}, path, metadata={"step": 7})


def test_ours_load_in_safetensors_package(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file
    tensors = {code: _sample(dt, (2, 3), seed=i) for i, (code, dt) in enumerate(NUMPY_DTYPES.items())}
    tensors["scalar"] = np.float32(3.5) * np.ones((), dtype=np.float32)
    tensors["empty"] = np.zeros((0,), dtype=np.int64)
    path = tmp_path / "ours.safetensors"
    safe_save(tensors, path, metadata={"who": "tinyjit"})
    loaded = load_file(str(path))
    assert set(loaded) == set(tensors)
    for name, want in tensors.items():
        assert loaded[name].dtype == want.dtype and loaded[name].shape == want.shape
        np.testing.assert_array_equal(loaded[name], want)
    with safe_open(str(path), framework="np") as f:
        assert f.metadata() == {"who": "tinyjit"}


def test_safetensors_package_files_load_in_ours(tmp_path):
    from safetensors.numpy import save_file
    tensors = {code: _sample(dt, (4, 3), seed=i) for i, (code, dt) in enumerate(NUMPY_DTYPES.items())}
    tensors["scalar"] = np.ones((), dtype=np.float64)
    path = tmp_path / "theirs.safetensors"
    save_file(tensors, str(path), metadata={"a": "b"})
    loaded = safe_load(path, as_numpy=True)
    assert set(loaded) == set(tensors)
    for name, want in tensors.items():
        assert loaded[name].dtype == want.dtype and loaded[name].shape == want.shape
        np.testing.assert_array_equal(loaded[name], want)
    assert safe_metadata(path) == {"a": "b"}


def test_bf16_loads_as_float32(tmp_path):
    import torch
    from safetensors.torch import save_file
    t = torch.randn(5, 7).to(torch.bfloat16)
    path = tmp_path / "bf16.safetensors"
    save_file({"w": t}, str(path))
    loaded = safe_load(path, as_numpy=True)["w"]
    assert loaded.dtype == np.float32 and loaded.shape == (5, 7)
    np.testing.assert_array_equal(loaded, t.float().numpy())


def _valid_file(tmp_path) -> bytes:
    path = tmp_path / "ok.safetensors"
    safe_save({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.arange(4, dtype=np.int64)}, path)
    return path.read_bytes()


def _with_header(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data


@pytest.mark.parametrize("corrupt,match", [
    (lambda ok: ok[:5], "too short"),
    (lambda ok: (10 ** 9).to_bytes(8, "little") + ok[8:], "header length"),
    (lambda ok: ok[:8] + b"{not json" + ok[17:], "not valid JSON"),
    (lambda ok: ok[:-4], "truncated"),
    (lambda ok: ok + b"\0" * 8, "trailing bytes"),
    (lambda ok: _with_header([1, 2], b""), "JSON object"),
    (lambda ok: _with_header({"x": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8), "C64"),
    (lambda ok: _with_header({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8), "needs 12"),
    (lambda ok: _with_header({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4), "shape"),
    (lambda ok: _with_header({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4), "offsets"),
    (lambda ok: _with_header({"x": {"dtype": "F32", "shape": [1]}}, b"\0" * 4), "needs dtype, shape"),
    (lambda ok: _with_header({"x": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}, b"\0" * 2), "gaps"),
    (lambda ok: _with_header({"x": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                              "y": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}, b"\0" * 3), "overlaps"),
    (lambda ok: _with_header({"__metadata__": {"k": 1}}, b""), "str to str"),
])
def test_corrupt_safetensors_raise_value_error(tmp_path, corrupt, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(corrupt(_valid_file(tmp_path)))
    with pytest.raises(ValueError, match=match):
        safe_load(path, as_numpy=True)


def test_default_return_type_is_tensor(tmp_path):
    path = tmp_path / "t.safetensors"
    safe_save({"x": np.arange(3, dtype=np.float32)}, path)
    if importlib.util.find_spec("tinyjit.tensor") is None:
        with pytest.raises(ImportError, match="as_numpy=True"):
            safe_load(path)
    else:
        from tinyjit.tensor import Tensor
        x = safe_load(path)["x"]
        assert isinstance(x, Tensor)
        np.testing.assert_array_equal(x.numpy(), np.arange(3, dtype=np.float32))


# ----------------------------------------------------------------------------------------------- torch_load

def _checkpoint_tensors():
    import torch
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    shared = torch.arange(10, dtype=torch.float32) * 1.5
    return {
        "view": base[1:, 1::2],                    # storage offset 7, strides (6, 2)
        "transposed": base.t(),                    # non-contiguous, offset 0
        "base": base,                              # same storage as the two views
        "shared_a": shared[2:8],                   # two tensors that share one storage
        "shared_b": shared[5:].view(5, 1),
        "half": torch.randn(3, 4).half(),
        "long": torch.tensor([-(2 ** 40), -1, 0, 2 ** 62], dtype=torch.int64),
        "double": torch.randn(2, 2, dtype=torch.float64),
        "int32": torch.tensor([[1, -2], [3, 2 ** 31 - 1]], dtype=torch.int32),
        "int16": torch.tensor([-300, 300], dtype=torch.int16),
        "int8": torch.tensor([-128, 127], dtype=torch.int8),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "uint16": torch.tensor([0, 65535], dtype=torch.uint16),  # newer dtypes take the _rebuild_tensor_v3 path
        "uint32": torch.tensor([1, 2 ** 32 - 1], dtype=torch.uint32),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "expanded": torch.ones(3, 1).expand(3, 4),  # stride 0
    }


def _as_numpy(t):
    return t.float().numpy() if str(t.dtype) == "torch.bfloat16" else t.numpy()


def test_torch_load_views_shared_storage_and_dtypes(tmp_path):
    import torch
    tensors = _checkpoint_tensors()
    tensors["bf16"] = torch.randn(2, 3).to(torch.bfloat16)
    assert tensors["view"].storage_offset() == 7 and not tensors["view"].is_contiguous()
    assert tensors["shared_a"].untyped_storage().data_ptr() == tensors["shared_b"].untyped_storage().data_ptr()
    path = tmp_path / "ckpt.pth"
    torch.save(tensors, path)
    loaded = torch_load(path, as_numpy=True)
    assert list(loaded) == list(tensors)
    for name, t in tensors.items():
        want = _as_numpy(t)
        got = loaded[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.flags.c_contiguous and got.flags.writeable, name
    aliased = ["view", "transposed", "base", "shared_a", "shared_b"]  # one storage in torch, separate arrays here
    assert not any(np.shares_memory(loaded[a], loaded[b]) for a in aliased for b in aliased if a != b)
    loaded["shared_a"][:] = -1
    np.testing.assert_array_equal(loaded["shared_b"], tensors["shared_b"].numpy())


def test_torch_load_state_dict_of_a_model(tmp_path):
    import torch
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.BatchNorm1d(8),
                                torch.nn.Linear(8, 2))
    sd = model.state_dict()
    assert hasattr(sd, "_metadata")  # pickled as OrderedDict state, must be accepted
    path = tmp_path / "model.pth"
    torch.save(sd, path)
    loaded = torch_load(path, as_numpy=True)
    assert list(loaded) == list(sd)
    for name, t in sd.items():
        np.testing.assert_array_equal(loaded[name], t.numpy())
    assert loaded["2.num_batches_tracked"].dtype == np.int64


def test_torch_load_parameters(tmp_path):
    import torch
    p = torch.nn.Parameter(torch.randn(3, 2))
    path = tmp_path / "p.pth"
    torch.save({"p": p, "frozen": torch.nn.Parameter(torch.ones(2), requires_grad=False)}, path)
    loaded = torch_load(path, as_numpy=True)
    np.testing.assert_array_equal(loaded["p"], p.detach().numpy())
    np.testing.assert_array_equal(loaded["frozen"], np.ones(2, dtype=np.float32))


def test_torch_load_nested_checkpoint(tmp_path):
    import torch
    w, b = torch.randn(2, 3), torch.randn(2)
    ckpt = {"model": {"fc.weight": w, "fc.bias": b}, "epoch": 3, "lr": 0.1, "note": "hi",
            "history": [torch.tensor([1.0]), torch.tensor([2.0])], "pair": (torch.tensor([3]), None)}
    path = tmp_path / "ckpt.pth"
    torch.save(ckpt, path)
    flat = torch_load(path, as_numpy=True)
    assert list(flat) == ["model.fc.weight", "model.fc.bias", "history.0", "history.1", "pair.0"]
    np.testing.assert_array_equal(flat["model.fc.weight"], w.numpy())
    np.testing.assert_array_equal(flat["history.1"], [2.0])
    raw = torch_load(path, as_numpy=True, flatten=False)
    assert raw["epoch"] == 3 and raw["lr"] == 0.1 and raw["note"] == "hi" and raw["pair"][1] is None
    assert isinstance(raw["pair"], tuple) and isinstance(raw["history"], list)
    np.testing.assert_array_equal(raw["model"]["fc.bias"], b.numpy())


def test_torch_load_single_tensor_and_key_collision(tmp_path):
    import torch
    path = tmp_path / "t.pth"
    torch.save(torch.arange(4), path)
    with pytest.raises(TypeError, match="flatten=False"):
        torch_load(path, as_numpy=True)
    np.testing.assert_array_equal(torch_load(path, as_numpy=True, flatten=False), np.arange(4))
    torch.save({"a.b": torch.zeros(1), "a": {"b": torch.ones(1)}}, path)
    with pytest.raises(ValueError, match="'a.b'"):
        torch_load(path, as_numpy=True)


def test_torch_load_big_endian_checkpoint(tmp_path):
    """A checkpoint written on a big-endian machine says so in <prefix>/byteorder; its storages are swapped."""
    import torch
    t = {"x": torch.randn(3, 4), "i": torch.tensor([1, -2, 2 ** 40])}
    src, dst = tmp_path / "le.pth", tmp_path / "be.pth"
    torch.save(t, src)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                item = 4 if len(data) == 12 * 4 else 8  # the float32 storage or the int64 one
                data = np.frombuffer(data, dtype=f"<u{item}").byteswap().tobytes()
            zout.writestr(info, data)
    loaded = torch_load(dst, as_numpy=True)
    np.testing.assert_array_equal(loaded["x"], t["x"].numpy())
    np.testing.assert_array_equal(loaded["i"], t["i"].numpy())
    assert loaded["x"].dtype == np.float32 and loaded["x"].dtype.isnative


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": _Evil(marker)}, protocol=2))
        zf.writestr("archive/version", "3\n")
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to unpickle (posix|os|nt)\.system"):
        torch_load(path, as_numpy=True)
    assert not marker.exists()


def test_malicious_object_inside_real_checkpoint_is_refused(tmp_path):
    import torch
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(2), "hook": _Evil(marker)}, path)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        torch_load(path, as_numpy=True)
    assert not marker.exists()


def test_whole_module_pickle_is_refused_by_name(tmp_path):
    import torch
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(pickle.UnpicklingError, match=r"torch\.nn\.modules\.linear\.Linear"):
        torch_load(path, as_numpy=True)


def test_out_of_bounds_view_is_refused():
    storage = state._Storage(np.zeros(16, dtype=np.uint8), "F32", False)  # 4 float32 elements
    np.testing.assert_array_equal(state._materialize(storage, "F32", 1, (3,), (1,)), np.zeros(3))
    for offset, size, stride in [(2, (3,), (1,)), (0, (2,), (4,)), (-1, (1,), (1,)), (0, (2,), (-1,))]:
        with pytest.raises(pickle.UnpicklingError):
            state._materialize(storage, "F32", offset, size, stride)


def test_legacy_and_non_checkpoint_files_are_rejected(tmp_path):
    import torch
    path = tmp_path / "legacy.pth"
    torch.save({"x": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="not a zip-format"):
        torch_load(path, as_numpy=True)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(ValueError, match="data.pkl"):
        torch_load(tmp_path / "other.zip", as_numpy=True)
