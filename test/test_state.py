"""Tests for tinyjit.nn.state: safetensors read/write and torch checkpoint loading, checked against the real
``safetensors`` package and ``torch.save`` (torch is imported inside the tests only)."""
import importlib.util
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    """Loaded tensors are views of their storages with torch's strides, so tensors that share a storage share
    memory, as after torch.load; an expanded (self-overlapping) view is read-only, the others writable."""
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
        if t.numel() > 1:
            assert got.strides == tuple(s * got.itemsize for s in t.stride()), name
        assert got.flags.writeable == (name != "expanded"), name
    aliased = ["view", "transposed", "base"]
    assert all(np.shares_memory(loaded[a], loaded[b]) for a in aliased for b in aliased)
    assert np.shares_memory(loaded["shared_a"], loaded["shared_b"])
    assert not np.shares_memory(loaded["base"], loaded["shared_a"])
    reloaded = torch.load(path)
    for got, want in ((loaded, "base"), (reloaded, "base")):   # a write shows through every view, as in torch
        got[want][1, 1] = -1
    np.testing.assert_array_equal(loaded["view"], reloaded["view"].numpy())
    np.testing.assert_array_equal(loaded["transposed"], reloaded["transposed"].numpy())
    assert loaded["view"][0, 0] == -1


def test_torch_load_tensors_are_views_of_one_buffer_per_storage(tmp_path):
    """Without as_numpy: each storage is copied to the device once; a tensor covering all of it is that buffer
    (tied weights stay tied), any other tensor a lazy view of it."""
    import torch
    tensors = _checkpoint_tensors()
    tensors["tied"] = tensors["base"]
    path = tmp_path / "ckpt.pth"
    torch.save(tensors, path)
    loaded = torch_load(path)
    assert loaded["base"].node.buffer is loaded["tied"].node.buffer
    assert not loaded["view"].node.realized and not loaded["expanded"].node.realized
    for name, t in tensors.items():
        got = loaded[name].numpy()
        assert got.shape == tuple(t.shape) and got.dtype == t.numpy().dtype, name
        np.testing.assert_array_equal(got, t.numpy(), err_msg=name)


def _pickled_checkpoint(path, obj, storages: dict[str, bytes], storage_types: dict[str, str] | None = None,
                        declared_numel: dict[str, int] | None = None) -> None:
    """A checkpoint whose data.pkl pickles `obj` with pickle itself: a `_Tensor(key, offset, size, stride)` leaf
    becomes torch's _rebuild_tensor_v2 call on storage `key` (a FloatStorage unless storage_types says otherwise),
    whose bytes are storages[key]. The sizes and views are whatever the test says, checked or not."""
    import collections

    import torch

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _StorageRef):
                kind = (storage_types or {}).get(obj.key, "FloatStorage")
                numel = (declared_numel or {}).get(obj.key, len(storages[obj.key]) // _ITEMSIZE[kind])
                return ("storage", getattr(torch, kind), obj.key, "cpu", numel)
            return None

    def reduce_tensor(t):
        return torch._utils._rebuild_tensor_v2, (_StorageRef(t.key), t.offset, t.size, t.stride, False,
                                                  collections.OrderedDict())

    import copyreg
    import io
    buf = io.BytesIO()
    pickler = Pickler(buf, protocol=2)
    pickler.dispatch_table = copyreg.dispatch_table.copy()
    pickler.dispatch_table[_Tensor] = reduce_tensor
    pickler.dump(obj)
    _write_checkpoint(path, buf.getvalue(), storages)


def _write_checkpoint(path, data_pkl: bytes, storages: dict[str, bytes], compress: bool = False) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
        for key, data in storages.items():
            zf.writestr(f"archive/data/{key}", data)


_ITEMSIZE = {"FloatStorage": 4, "DoubleStorage": 8, "ByteStorage": 1, "LongStorage": 8}


class _StorageRef:
    def __init__(self, key):
        self.key = key


class _Tensor:
    def __init__(self, key, offset, size, stride):
        self.key, self.offset, self.size, self.stride = key, offset, size, stride


def test_crafted_views_load_like_torch(tmp_path):
    """Views torch.save never writes but torch.load accepts (overlapping rows, offsets into a shared storage) load
    the same here."""
    import torch
    storage = np.arange(10, dtype=np.float32).tobytes()
    views = {"windows": _Tensor("0", 1, (4, 3), (2, 1)), "square": _Tensor("0", 0, (3, 3), (1, 1)),
             "broadcast": _Tensor("0", 9, (2, 3, 2), (0, 0, 0)), "mixed": _Tensor("0", 2, (2, 3, 2), (0, 2, 1))}
    path = tmp_path / "crafted.pth"
    _pickled_checkpoint(path, views, {"0": storage})
    want = torch.load(path)
    for as_numpy in (True, False):
        got = torch_load(path, as_numpy=as_numpy)
        for name in views:
            np.testing.assert_array_equal(np.asarray(got[name]), want[name].numpy(), err_msg=name)


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
    flat = torch_load(path, as_numpy=True, flatten=True)
    assert list(flat) == ["model.fc.weight", "model.fc.bias", "history.0", "history.1", "pair.0"]
    np.testing.assert_array_equal(flat["model.fc.weight"], w.numpy())
    np.testing.assert_array_equal(flat["history.1"], [2.0])
    raw = torch_load(path, as_numpy=True)   # the whole structure, like torch.load
    assert raw["epoch"] == 3 and raw["lr"] == 0.1 and raw["note"] == "hi" and raw["pair"][1] is None
    assert isinstance(raw["pair"], tuple) and isinstance(raw["history"], list)
    np.testing.assert_array_equal(raw["model"]["fc.bias"], b.numpy())


def test_torch_load_single_tensor_and_key_collision(tmp_path):
    import torch
    path = tmp_path / "t.pth"
    torch.save(torch.arange(4), path)
    with pytest.raises(TypeError, match="flatten=False"):
        torch_load(path, as_numpy=True, flatten=True)
    np.testing.assert_array_equal(torch_load(path, as_numpy=True), np.arange(4))
    torch.save({"a.b": torch.zeros(1), "a": {"b": torch.ones(1)}}, path)
    with pytest.raises(ValueError, match="'a.b'"):
        torch_load(path, as_numpy=True, flatten=True)


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


@pytest.mark.parametrize("offset,size,stride", [
    (2, (3,), (1,)), (0, (2,), (4,)), (-1, (1,), (1,)), (0, (2,), (-1,)), (0, (True,), (1,)), (0.0, (1,), (1,)),
    (0, (1, 1), (1,)), (0, (1,) * 65, (1,) * 65), (0, (2 ** 62, 4), (0, 0)), (0, (2 ** 64,), (0,)),
])
def test_view_outside_its_storage_is_refused(tmp_path, offset, size, stride):
    path = tmp_path / "bad.pth"
    _pickled_checkpoint(path, {"x": _Tensor("0", offset, size, stride)}, {"0": bytes(16)})  # 4 float32 items
    with pytest.raises(pickle.UnpicklingError, match=f"{path}: .*(tensor view|too large)"):
        torch_load(path, as_numpy=True)


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


# ------------------------------------------------------------------------- torch_load: untrusted files (bounded)

def test_expanded_storage_stays_a_view_not_an_8_gib_array(tmp_path):
    """torch.save of a 16-byte storage seen through a zero stride as 2**30 float64 (8 GiB): torch.load gives a
    view; so does torch_load, with numpy and with tinyjit Tensors, allocating nothing of the tensor's size."""
    import tracemalloc

    import torch
    t = torch.tensor([1.5, -2.0], dtype=torch.float64).as_strided((2 ** 30,), (0,), 1)
    path = tmp_path / "expanded.pth"
    torch.save({"x": t}, path)
    tracemalloc.start()
    try:
        loaded = torch_load(path, as_numpy=True)["x"]
        tensor = torch_load(path)["x"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    want = torch.load(path)["x"]
    assert loaded.shape == tuple(want.shape) and loaded.strides == (0,) and want.stride() == (0,)
    assert loaded[0] == loaded[-1] == -2.0 and not loaded.flags.writeable
    assert tensor.shape == (2 ** 30,) and not tensor.node.realized
    np.testing.assert_array_equal(tensor[-3:].numpy(), [-2.0] * 3)


def _set_declared_size(raw: bytes, member: str, size: int) -> bytes:
    """A zip whose local and central headers say `member` inflates to `size` bytes (its data is unchanged)."""
    raw = bytearray(raw)
    name = member.encode()
    local = 0
    while True:
        local = raw.index(b"PK\x03\x04", local)
        if raw[local + 30:local + 30 + len(name)] == name:
            break
        local += 4
    struct.pack_into("<I", raw, local + 22, size)
    central = raw.index(b"PK\x01\x02")
    while raw[central + 46:central + 46 + len(name)] != name:
        central = raw.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", raw, central + 24, size)
    return bytes(raw)


@pytest.mark.parametrize("declared_numel,member,match", [
    (None, "archive/data/0", "holds 3221225472 bytes but the pickle declares 16"),
    (3 << 28, "archive/data/0", "declares 3221225472 bytes, more than a file of"),
    (None, "archive/data.pkl", "declares 3221225472 bytes, more than a file of"),
])
def test_member_declaring_3_gib_is_refused_before_reading(tmp_path, declared_numel, member, match):
    """A compressed member may declare any size: it is checked against the pickle's storage size and against
    the file (all members together may inflate to 16x the file) before a byte of it is read."""
    import tracemalloc
    path = tmp_path / "bomb.pth"
    numel = {"0": declared_numel} if declared_numel else None
    _pickled_checkpoint(path, {"x": _Tensor("0", 0, (4,), (1,))}, {"0": bytes(16)}, declared_numel=numel)
    with zipfile.ZipFile(path) as zf:   # the same members, deflated
        members = {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    path.write_bytes(_set_declared_size(path.read_bytes(), member, 3 << 30))
    tracemalloc.start()
    try:
        with pytest.raises(pickle.UnpicklingError, match=f"{path}: .*{match}"):
            torch_load(path, as_numpy=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_recompressed_checkpoint_still_loads(tmp_path):
    """torch.load reads deflated members (a checkpoint zipped again); so does torch_load, within the budget."""
    import torch
    tensors = {"w": torch.randn(64, 32), "b": torch.zeros(1000)}   # the zeros inflate 100x: within 16x the file
    path = tmp_path / "ckpt.pth"
    torch.save(tensors, path)
    with zipfile.ZipFile(path) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for info, data in members:
            zf.writestr(info.filename, data)
    loaded = torch_load(path, as_numpy=True)
    for name, t in tensors.items():
        np.testing.assert_array_equal(loaded[name], torch.load(path)[name].numpy())


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _unicode(text: str) -> bytes:
    return pickle.BINUNICODE + struct.pack("<I", len(text.encode())) + text.encode()


_PROTO = b"\x80\x02"
_REBUILD_V3 = _global("torch._utils", "_rebuild_tensor_v3")
# a real tensor on the stack: _rebuild_tensor_v2(storage '0' of 4 float32, 0, (4,), (1,), False, OrderedDict())
_TENSOR = (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + b"(" + _unicode("storage")
           + _global("torch", "FloatStorage") + _unicode("0") + _unicode("cpu") + b"K\x04" + b"t" + b"Q"
           + b"K\x00" + b"K\x04\x85" + b"K\x01\x85" + b"\x89" + _global("collections", "OrderedDict") + b")R"
           + b"t" + b"R")


_CONTAINER_OPCODE_ABUSE = [
    # BUILD with (None, {"__defaults__": ...}) setattr()s the loader's own function; with a dict, its __dict__
    ("BUILD on the rebuild function (slot state)", _REBUILD_V3 + b"N}" + _unicode("__defaults__") + b"K\x07\x85s"
     + b"\x86b"),
    ("BUILD on the rebuild function (dict state)", _REBUILD_V3 + b"}" + _unicode("marker") + b"K\x07s" + b"b"),
    ("BUILD on a storage type", _global("torch", "FloatStorage") + b"}" + _unicode("dtype") + b"Ns" + b"b"),
    ("BUILD on a dtype", _global("torch", "uint16") + b"}" + _unicode("name") + b"Ns" + b"b"),
    ("BUILD on a tensor", _TENSOR + b"}" + _unicode("size") + b"Ns" + b"b"),
    ("BUILD on a dict", b"}" + b"}" + _unicode("a") + b"Ns" + b"b"),
    ("BUILD on OrderedDict itself", _global("collections", "OrderedDict") + b"}" + _unicode("a") + b"Ns" + b"b"),
    ("SETITEM on a tensor", _TENSOR + b"K\x00" + b"K\x07" + b"s"),
    ("SETITEMS on the rebuild function", _REBUILD_V3 + b"(" + _unicode("a") + b"N" + b"u"),
    ("APPEND on a tuple", b")" + b"N" + b"a"),
    ("APPENDS on a dict", b"}" + b"(" + b"N" + b"e"),
    ("ADDITEMS on a list", b"]" + b"(" + b"N" + b"\x90"),
]


@pytest.mark.parametrize("body", [pytest.param(body, id=name) for name, body in _CONTAINER_OPCODE_ABUSE])
def test_pickle_cannot_modify_anything_but_plain_containers(tmp_path, body):
    """Opcodes that modify an object already built act on dicts, lists and sets only (and BUILD on an
    OrderedDict instance, for state_dict's _metadata): a pickle cannot change the loader for the rest of the
    process, as BUILD of _rebuild_tensor_v3's __defaults__ once did."""
    from tinyjit.nn import torch_checkpoint
    defaults = torch_checkpoint._rebuild_tensor_v3.__defaults__
    path = tmp_path / "evil.pth"
    _write_checkpoint(path, _PROTO + body + b".", {"0": bytes(16)})
    with pytest.raises(pickle.UnpicklingError, match=f"{path}: (BUILD|SETITEMS?|APPENDS?|ADDITEMS) on a"):
        torch_load(path, as_numpy=True, flatten=False)
    assert torch_checkpoint._rebuild_tensor_v3.__defaults__ == defaults
    assert not hasattr(torch_checkpoint._rebuild_tensor_v3, "marker")


def test_state_dict_metadata_build_is_still_accepted(tmp_path):
    """The one BUILD torch writes: an OrderedDict's _metadata (also covered by test_torch_load_state_dict_of_a_model
    with a real model); its state is dropped, the tensors are what matters."""
    path = tmp_path / "sd.pth"
    od = _global("collections", "OrderedDict") + b")R"
    body = od + _unicode("w") + _TENSOR + b"s" + b"}" + _unicode("_metadata") + od + b"s" + b"b"
    _write_checkpoint(path, _PROTO + body + b".", {"0": np.arange(4, dtype=np.float32).tobytes()})
    np.testing.assert_array_equal(torch_load(path, as_numpy=True)["w"], np.arange(4))


def test_self_referential_pickles_are_a_format_error(tmp_path):
    import torch
    loop = [torch.ones(2)]
    loop.append(loop)
    cycle_in_dict: dict = {"w": torch.zeros(1)}
    cycle_in_dict["again"] = {"inner": [cycle_in_dict]}
    for i, obj in enumerate([{"loop": loop}, cycle_in_dict]):
        path = tmp_path / f"cycle{i}.pth"
        torch.save(obj, path)
        for flatten in (True, False):
            with pytest.raises(pickle.UnpicklingError, match=f"{path}: a (list|dict) contains itself"):
                torch_load(path, as_numpy=True, flatten=flatten)


@pytest.mark.parametrize("depth", [101, 100_000])
def test_deeply_nested_pickles_are_a_format_error(tmp_path, depth):
    """[[[...]]] nested `depth` deep (torch.save itself cannot write that: its pickler recurses)."""
    path = tmp_path / "deep.pth"
    nested = b"]" * depth + b"a" * (depth - 1)
    _write_checkpoint(path, _PROTO + b"}" + _unicode("x") + nested + b"s.", {})
    for flatten in (True, False):
        with pytest.raises(pickle.UnpicklingError, match=f"{path}: containers are nested more than 100 levels"):
            torch_load(path, as_numpy=True, flatten=flatten)


def test_nesting_within_the_limit_loads(tmp_path):
    path = tmp_path / "deep.pth"
    nested = b"]" * 99 + _TENSOR + b"a" * 99
    _write_checkpoint(path, _PROTO + nested + b".", {"0": np.arange(4, dtype=np.float32).tobytes()})
    assert list(torch_load(path, as_numpy=True, flatten=True)) == [".".join(["0"] * 99)]


def test_shared_containers_cannot_make_an_exponential_walk(tmp_path):
    """A list holding the previous list twice, 64 times: a 1 KB pickle whose tree has 2**64 leaves (the walk would
    never end); refused by the budget of visits. Sharing that stays small still loads, and keeps its sharing."""
    import torch
    level: list = [torch.ones(1)]
    for _ in range(64):
        level = [level, level]
    path = tmp_path / "dag.pth"
    torch.save({"x": level}, path)
    with pytest.raises(pickle.UnpicklingError, match=f"{path}: the pickled object has more than"):
        torch_load(path, as_numpy=True)
    shared = {"a": 1}
    torch.save({"p": [shared, shared], "w": torch.ones(1)}, path)
    raw = torch_load(path, as_numpy=True, flatten=False)
    assert raw["p"][0] is raw["p"][1] and raw["p"][0] == {"a": 1}


def test_deeply_nested_safetensors_header_is_a_format_error(tmp_path):
    path = tmp_path / "deep.safetensors"
    for nested in ("[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000):
        header = ('{"__metadata__": {"k": %s}}' % nested).encode()
        path.write_bytes(len(header).to_bytes(8, "little") + header)
        with pytest.raises(ValueError, match=f"{path}: safetensors header nests JSON too deeply"):
            safe_load(path, as_numpy=True)
    header = ('{"x": {"dtype": %s, "shape": [1], "data_offsets": [0, 4]}}' % ("[" * 500 + "]" * 500)).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
    with pytest.raises(ValueError, match=r"unsupported dtype \[+\.\.\.\]+ \(supported"):
        safe_load(path, as_numpy=True)


@st.composite
def _strided_views(draw):
    ndim = draw(st.integers(0, 4))
    size = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    stride = tuple(draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim)))
    offset = draw(st.integers(0, 5))
    numel = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 + draw(st.integers(0, 3))
    return numel, offset, size, stride


@settings(max_examples=25, deadline=None)
@given(view=_strided_views())
def test_strided_view_matches_numpy_as_strided(view):
    """The movement-op view torch_load builds for any (offset, size, stride), overlapping or expanded ones
    included, reads what numpy's as_strided reads (torch.as_strided's semantics). Movement ops only, so the
    default device is enough (PoCL would compile 25 kernels slowly)."""
    from tinyjit.nn.torch_checkpoint import strided_view
    from tinyjit.tensor import Tensor
    numel, offset, size, stride = view
    flat = np.arange(numel, dtype=np.int32)
    want = np.lib.stride_tricks.as_strided(flat[offset:], size, [s * 4 for s in stride])
    got = strided_view(Tensor(flat), offset, size, stride)
    assert got.shape == size
    np.testing.assert_array_equal(got.numpy(), want)


def test_stored_member_reaching_past_the_file_is_refused(tmp_path):
    """An uncompressed member whose headers claim more bytes than the file holds after it: refused from the
    headers, before a buffer of that size exists."""
    path = tmp_path / "short.pth"
    _pickled_checkpoint(path, {"x": _Tensor("0", 0, (4,), (1,))}, {"0": bytes(16)}, declared_numel={"0": 1 << 20})
    raw = _set_declared_size(path.read_bytes(), "archive/data/0", 4 << 20)
    for header, field in ((b"PK\x03\x04", 18), (b"PK\x01\x02", 20)):   # the compressed sizes too
        at = raw.index(header)
        while b"archive/data/0" not in raw[at:at + 64]:
            at = raw.index(header, at + 4)
        raw = raw[:at + field] + struct.pack("<I", 4 << 20) + raw[at + field + 4:]
    path.write_bytes(raw)
    with pytest.raises(pickle.UnpicklingError, match=f"{path}: archive/data/0 is stored uncompressed but declares"):
        torch_load(path, as_numpy=True)
