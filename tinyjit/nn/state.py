"""Weights on disk: safetensors files (read and write) and PyTorch ``.pth`` checkpoints (read only, ``torch_load``
from tinyjit/nn/torch_checkpoint.py).

Both formats are handled with numpy alone; torch is never imported. Values cross into and out of this
module through ``_to_numpy`` / ``_from_numpy``, so anything with a ``.numpy()`` method (or anything
``np.asarray`` accepts) can be saved, and loading returns ``tinyjit.tensor.Tensor`` objects, or numpy arrays
with ``as_numpy=True``.

bfloat16 has no numpy dtype, so BF16 data is widened to float32 on load (exactly: bf16 is the top half of an
fp32). Saving BF16 is not supported.
"""
from __future__ import annotations

import json
import math
import os
import reprlib
import secrets
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tinyjit.nn.torch_checkpoint import torch_load  # noqa: F401  (part of this module's API)

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
# numpy arrays have at most this many dims
_MAX_DIMS = 64

# values of an untrusted header in error messages: truncated, and safe for any nesting
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 80


def _short(value: Any) -> str:
    return _SHORT_REPR.repr(value)


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
    except ValueError as e:   # not UTF-8, not JSON, or an integer past Python's limit on digits
        raise ValueError(f"{path}: safetensors header is not valid JSON ({e})") from e
    except RecursionError:   # json's parser recurses per level; a valid header nests three levels deep
        raise ValueError(f"{path}: safetensors header nests JSON too deeply to be a header") from None
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
        raise ValueError(f"{path}: entry {_short(name)} needs dtype, shape and data_offsets, got {_short(info)}")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(code, str) or code not in _DTYPES:
        raise ValueError(f"{path}: tensor {_short(name)} has unsupported dtype {_short(code)} "
                         f"(supported: {', '.join(_DTYPES)})")
    if (not isinstance(shape, list) or len(shape) > _MAX_DIMS
            or not all(type(d) is int and 0 <= d < 2 ** 63 for d in shape)):
        raise ValueError(f"{path}: tensor {_short(name)} has invalid shape {_short(shape)}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise ValueError(f"{path}: tensor {_short(name)} has invalid data_offsets {_short(offsets)}")
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
