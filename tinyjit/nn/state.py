"""Weights on disk: safetensors files (read and write) and PyTorch ``.pth`` checkpoints (read only).

Both formats are handled with numpy alone; torch is never imported. Values cross into and out of this
module through ``_to_numpy`` / ``_from_numpy``, so anything with a ``.numpy()`` method (or anything
``np.asarray`` accepts) can be saved, and loading returns ``tinyjit.tensor.Tensor`` objects, or numpy arrays
with ``as_numpy=True``.

bfloat16 has no numpy dtype, so BF16 data is widened to float32 on load (exactly: bf16 is the top half of an
fp32). Saving BF16 is not supported.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import pickle
import secrets
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

# safetensors dtype code -> little-endian numpy dtype of the stored bytes. BF16 is stored as raw uint16 bits.
_DTYPES: dict[str, np.dtype] = {code: np.dtype(spec) for code, spec in {
    "F16": "<f2", "F32": "<f4", "F64": "<f8",
    "I8": "i1", "I16": "<i2", "I32": "<i4", "I64": "<i8",
    "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8",
    "BOOL": "?", "BF16": "<u2",
}.items()}
# numpy (kind, itemsize) -> safetensors code, for saving. BF16 is absent: numpy cannot hold it.
_CODE_OF = {(dt.kind, dt.itemsize): code for code, dt in _DTYPES.items() if code != "BF16"}

# The reference implementation refuses larger headers; so do we, before reading them into memory.
_MAX_HEADER_BYTES = 100_000_000
_METADATA_KEY = "__metadata__"


def _to_numpy(t: Any) -> np.ndarray:
    """Tensor-like -> numpy: ``t.numpy()`` when it has one (tinyjit or torch Tensors), else ``np.asarray``."""
    return np.asarray(t.numpy()) if hasattr(t, "numpy") else np.asarray(t)


def _from_numpy(a: np.ndarray, as_numpy: bool) -> Any:
    """numpy -> what the caller asked for: the array itself, or a ``tinyjit.tensor.Tensor`` made from it."""
    if as_numpy:
        return a
    try:
        from tinyjit.tensor import Tensor  # imported late: tensor.py may itself import nn.state
    except ModuleNotFoundError as e:
        if e.name not in ("tinyjit.tensor", "tinyjit"):
            raise
        raise ImportError("tinyjit.tensor is not available; pass as_numpy=True to get numpy arrays") from e
    return Tensor(a)


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32: bf16 is the high 16 bits of an fp32, so this is exact."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _native(a: np.ndarray, code: str) -> np.ndarray:
    """Stored array -> native byte order, BF16 widened to float32."""
    if code == "BF16":
        return _bf16_to_f32(a.astype(np.uint16))
    return a.astype(a.dtype.newbyteorder("="), copy=False)


# ---------------------------------------------------------------------------------------------------------------
# safetensors
#
# Layout: an 8-byte little-endian unsigned header length N, N bytes of JSON, then the data section. The JSON maps
# each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} with offsets relative to the data section,
# plus an optional "__metadata__" mapping of str -> str. The offsets must tile the data section exactly.
# ---------------------------------------------------------------------------------------------------------------

def safe_save(tensors: Mapping[str, Any], path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (name -> Tensor-like) to ``path`` in the safetensors format.

    The file is written to a temporary name and renamed into place, so a crash never leaves half a file.
    """
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("safetensors metadata must map str to str")
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"safetensors names must be str, got {name!r}")
        if name == _METADATA_KEY:
            raise ValueError(f"{_METADATA_KEY!r} is reserved and cannot name a tensor")
        a = _to_numpy(value)
        if (a.dtype.kind, a.dtype.itemsize) not in _CODE_OF:
            raise TypeError(f"cannot save {name!r}: dtype {a.dtype} has no safetensors equivalent "
                            f"(supported: {', '.join(c for c in _DTYPES if c != 'BF16')})")
        arrays[name] = a
    # Widest dtypes first: the data section starts 8-aligned, so every tensor then starts at a multiple of its
    # own item size, which lets readers that map the file view tensors in place.
    order = sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, n))
    header: dict[str, Any] = {}
    if metadata:
        header[_METADATA_KEY] = dict(metadata)
    offset = 0
    for name in order:
        a = arrays[name]
        header[name] = {"dtype": _CODE_OF[(a.dtype.kind, a.dtype.itemsize)], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with _AtomicWriter(Path(path)) as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for name in order:
            a = arrays[name]
            f.write(np.ascontiguousarray(a, dtype=_DTYPES[header[name]["dtype"]]).tobytes())


def safe_load(path: str | os.PathLike, as_numpy: bool = False) -> dict[str, Any]:
    """Read a safetensors file into ``{name: Tensor}`` (numpy arrays with ``as_numpy=True``), in header order.

    A truncated or inconsistent file raises ValueError saying what is wrong.
    """
    out = {}
    with open(path, "rb") as f:
        entries, _, data_start = _read_header(f, path)
        for name, (code, shape, begin, end) in entries.items():
            buf = np.empty(end - begin, dtype=np.uint8)
            f.seek(data_start + begin)
            if f.readinto(memoryview(buf)) != buf.size:
                raise ValueError(f"{path}: data for {name!r} is truncated")
            a = _native(buf.view(_DTYPES[code]).reshape(shape), code)
            out[name] = _from_numpy(a, as_numpy)
    return out


def safe_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file ({} when absent), without reading any tensor data."""
    with open(path, "rb") as f:
        return _read_header(f, path)[1]


def _read_header(f, path) -> tuple[dict[str, tuple[str, tuple[int, ...], int, int]], dict[str, str], int]:
    """Parse and validate the header: returns (name -> (dtype code, shape, begin, end), metadata, data start)."""
    size = os.fstat(f.fileno()).st_size
    if size < 8:
        raise ValueError(f"{path}: {size} bytes is too short for a safetensors file")
    n = int.from_bytes(f.read(8), "little")
    if n > size - 8 or n > _MAX_HEADER_BYTES:
        raise ValueError(f"{path}: header length {n} is impossible for a file of {size} bytes "
                         "(truncated or not a safetensors file)")
    try:
        header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: safetensors header is not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise ValueError(f"{path}: safetensors header must be a JSON object")
    metadata = header.pop(_METADATA_KEY, None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path}: {_METADATA_KEY} must map str to str")
    entries = {name: _check_entry(path, name, info) for name, info in header.items()}
    data_size = size - 8 - n
    end = 0
    for name, (_, _, begin, stop) in sorted(entries.items(), key=lambda kv: kv[1][2:]):
        if begin != end:
            raise ValueError(f"{path}: tensor {name!r} starts at byte {begin} of the data section, expected {end} "
                             "(offsets must cover the data without gaps or overlaps)")
        end = stop
    if end != data_size:
        raise ValueError(f"{path}: header describes {end} bytes of data but the file holds {data_size} "
                         f"({'truncated' if end > data_size else 'trailing bytes'})")
    return entries, metadata, 8 + n


def _check_entry(path, name: str, info: Any) -> tuple[str, tuple[int, ...], int, int]:
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise ValueError(f"{path}: entry {name!r} needs dtype, shape and data_offsets, got {info!r}")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if code not in _DTYPES:
        raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {code!r} (supported: {', '.join(_DTYPES)})")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError(f"{path}: tensor {name!r} has invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise ValueError(f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}")
    nbytes = math.prod(shape) * _DTYPES[code].itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise ValueError(f"{path}: tensor {name!r} ({code}, shape {shape}) needs {nbytes} bytes but its "
                         f"data_offsets span {offsets[1] - offsets[0]}")
    return code, tuple(shape), offsets[0], offsets[1]


class _AtomicWriter:
    """Binary file written under a temporary name next to ``path`` and renamed over it on success."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")

    def __enter__(self):
        self.f = open(self.tmp, "xb")
        return self.f

    def __exit__(self, exc_type, exc, tb):
        self.f.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
        return False


# ---------------------------------------------------------------------------------------------------------------
# PyTorch checkpoints
#
# torch.save writes a zip: <prefix>/data.pkl is a pickle of the saved object in which every tensor is a call to a
# rebuild function in torch._utils, and every storage is a persistent id ('storage', <storage type>, <key>,
# <location>, <numel>) whose bytes are the zip member <prefix>/data/<key>. Legacy storage types (FloatStorage...)
# carry the dtype; tensors of newer dtypes use an untyped (byte) storage and pass the dtype to the rebuild call.
# ---------------------------------------------------------------------------------------------------------------

_TORCH_STORAGES = {"DoubleStorage": "F64", "FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16",
                   "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
                   "ByteStorage": "U8", "BoolStorage": "BOOL"}
_TORCH_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
                 "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32",
                 "uint64": "U64", "bool": "BOOL"}


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stands in for torch.FloatStorage etc. during unpickling; ``code`` is None for an untyped byte storage."""
    code: str | None


@dataclasses.dataclass(frozen=True)
class _TorchDType:
    """Stands in for a torch dtype (torch.uint16 ...) during unpickling."""
    code: str


@dataclasses.dataclass(frozen=True)
class _Storage:
    """A storage read from the zip: its raw bytes and, for typed storages, the dtype code."""
    data: np.ndarray
    code: str | None
    big_endian: bool


def torch_load(path: str | os.PathLike, as_numpy: bool = False, flatten: bool = True) -> Any:
    """Read a zip-format PyTorch checkpoint (``torch.save`` since 1.6) without importing torch.

    Unpickling is restricted to what rebuilds tensors (see ``_TorchUnpickler``); anything else, such as a class
    from the training code or ``os.system``, raises ``pickle.UnpicklingError`` naming it, before it could run.

    With ``flatten=True`` (the default) the result is ``{name: Tensor}``: nested dicts and lists are flattened
    with dotted keys (``{"model": {"fc.weight": w}}`` -> ``"model.fc.weight"``, list items by index) and
    non-tensor leaves such as epoch counters or learning rates are left out. With ``flatten=False`` the unpickled
    object is returned as saved, with its tensors converted.
    """
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a zip-format PyTorch checkpoint (files from torch.save before 1.6 or with "
                         "_use_new_zipfile_serialization=False are not supported)")
    with zipfile.ZipFile(path) as zf:
        pickles = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path}: expected one <prefix>/data.pkl in the zip, found {pickles or 'none'}")
        prefix = pickles[0][:-len("/data.pkl")]
        # Older torch versions do not write this member; their checkpoints are little-endian in practice.
        byteorder_member = f"{prefix}/byteorder"
        byteorder = zf.read(byteorder_member).decode().strip() if byteorder_member in zf.namelist() else "little"
        if byteorder not in ("little", "big"):
            raise ValueError(f"{path}: unknown byteorder {byteorder!r}")
        with zf.open(pickles[0]) as f:
            obj = _TorchUnpickler(f, zf, prefix, byteorder == "big").load()
    if not flatten:
        return _convert(obj, as_numpy)
    if isinstance(obj, np.ndarray):
        raise TypeError(f"{path} holds a single tensor, not a dict of them; use flatten=False")
    flat: dict[str, np.ndarray] = {}
    _flatten(obj, "", flat)
    return {k: _from_numpy(v, as_numpy) for k, v in flat.items()}


def _flatten(obj: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
    if isinstance(obj, np.ndarray):
        if prefix in out:
            raise ValueError(f"two tensors flatten to the same key {prefix!r}; use flatten=False")
        out[prefix] = obj
    elif isinstance(obj, (dict, list, tuple)):
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for k, v in items:
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)


def _convert(obj: Any, as_numpy: bool) -> Any:
    if isinstance(obj, np.ndarray):
        return _from_numpy(obj, as_numpy)
    if isinstance(obj, dict):
        return type(obj)((k, _convert(v, as_numpy)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_convert(v, as_numpy) for v in obj)
    return obj


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    if not isinstance(storage, _Storage) or storage.code is None:
        raise pickle.UnpicklingError("_rebuild_tensor_v2 needs a typed storage")
    return _materialize(storage, storage.code, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    if not isinstance(storage, _Storage) or not isinstance(dtype, _TorchDType):
        raise pickle.UnpicklingError("_rebuild_tensor_v3 needs a storage and a dtype")
    return _materialize(storage, dtype.code, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    """nn.Parameter -> its data; parameters are plain tensors here."""
    if not isinstance(data, np.ndarray):
        raise pickle.UnpicklingError("_rebuild_parameter expects a tensor")
    return data


def _materialize(storage: _Storage, code: str, offset, size, stride) -> np.ndarray:
    """The tensor view (offset, size, stride in elements) of a storage, copied into a fresh contiguous array.

    The pickle is untrusted, so the view is bounds-checked before ``as_strided`` could read outside the storage.
    """
    dtype = _DTYPES[code].newbyteorder(">" if storage.big_endian else "<")
    ok = (type(offset) is int and offset >= 0 and isinstance(size, tuple) and isinstance(stride, tuple)
          and len(size) == len(stride) and all(type(v) is int and v >= 0 for v in size + stride))
    if not ok:
        raise pickle.UnpicklingError(f"invalid tensor view: offset={offset!r} size={size!r} stride={stride!r}")
    if storage.data.size % dtype.itemsize:
        raise pickle.UnpicklingError(f"storage of {storage.data.size} bytes is not a whole number of {code} items")
    flat = storage.data.view(dtype)
    if math.prod(size) == 0:
        return _native(np.empty(size, dtype=dtype), code)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise pickle.UnpicklingError(f"tensor view (offset {offset}, size {size}, stride {stride}) reaches element "
                                     f"{last} of a storage with {flat.size}")
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size, strides=[s * dtype.itemsize for s in stride],
                                           writeable=False)
    return _native(np.array(view, order="C"), code)  # always a copy: the storage bytes are read-only


class _TorchUnpickler(pickle.Unpickler):
    """Unpickler for torch.save's data.pkl that only resolves the globals needed to rebuild tensors.

    Torch's own rebuild functions are replaced by the numpy versions above; storage classes and dtypes become
    inert markers. Every other global is refused, so a checkpoint cannot run code while it is loaded.
    """
    _FUNCTIONS = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("collections", "OrderedDict"): collections.OrderedDict,  # what state_dict() returns
    }

    def __init__(self, file, zf: zipfile.ZipFile, prefix: str, big_endian: bool):
        super().__init__(file)
        self.zf, self.prefix, self.big_endian = zf, prefix, big_endian
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._FUNCTIONS:
            return self._FUNCTIONS[(module, name)]
        if module == "torch" and name in _TORCH_STORAGES:
            return _StorageType(_TORCH_STORAGES[name])
        if module in ("torch", "torch.storage") and name == "UntypedStorage":
            return _StorageType(None)
        if module == "torch" and name in _TORCH_DTYPES:
            return _TorchDType(_TORCH_DTYPES[name])
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: torch_load only rebuilds tensors "
                                     "and plain containers")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key = pid[1], pid[2]
        if key not in self.storages:  # tensors that share a storage share one read of it
            member = f"{self.prefix}/data/{key}"
            try:
                raw = self.zf.read(member)
            except KeyError:
                raise pickle.UnpicklingError(f"storage {member} is missing from the checkpoint") from None
            self.storages[key] = _Storage(np.frombuffer(raw, dtype=np.uint8), storage_type.code, self.big_endian)
        storage = self.storages[key]
        if storage.code != storage_type.code:
            raise pickle.UnpicklingError(f"storage {key} is used with two dtypes ({storage.code}, {storage_type.code})")
        return storage
