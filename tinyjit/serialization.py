"""``tinyjit.save(obj, path)`` / ``tinyjit.load(path)``: state dicts and nested containers of tensors in one
safetensors file, never pickle.

The tensors go into the safetensors data (named "0", "1", ... in the order met); the structure around them (dicts,
lists, tuples, and JSON-able values such as an optimizer's step count or a learning rate) is a JSON tree stored in
the file's ``__metadata__`` under ``tinyjit.structure``. Loading therefore executes nothing from the file, and any
safetensors reader can still read the tensors. A plain safetensors file (no structure) loads as a flat dict.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Optional

import numpy as np

from tinyjit.nn.state import safe_load, safe_metadata, safe_save
from tinyjit.tensor import Tensor

STRUCTURE_KEY = "tinyjit.structure"
FORMAT_VERSION = 1


def _encode_key(key: Any, where: str) -> list:
    # JSON objects have only string keys: keep the key's type so {0: ...} (an optimizer's state) round-trips
    if isinstance(key, bool) or key is None:
        return ["json", key]
    if isinstance(key, str):
        return ["str", key]
    if isinstance(key, int):
        return ["int", key]
    raise TypeError(f"tinyjit.save: dict key {key!r} at {where} is a {type(key).__name__}; keys must be str, int, "
                    f"bool or None")


def _decode_key(encoded: list) -> Any:
    kind, value = encoded
    return int(value) if kind == "int" else value


class _Encoder:
    """Walks the object, collecting tensors into a flat dict and returning the JSON tree that rebuilds it."""

    def __init__(self):
        self.tensors: dict[str, np.ndarray] = {}

    def _add_tensor(self, array: np.ndarray) -> str:
        name = str(len(self.tensors))
        self.tensors[name] = array
        return name

    def encode(self, obj: Any, where: str) -> dict:
        if isinstance(obj, Tensor):
            return {"type": "tensor", "key": self._add_tensor(obj.numpy()), "requires_grad": bool(obj.requires_grad)}
        if isinstance(obj, np.ndarray):
            return {"type": "ndarray", "key": self._add_tensor(obj)}
        if isinstance(obj, dict):
            return {"type": "dict", "items": [[_encode_key(k, where), self.encode(v, f"{where}[{k!r}]")]
                                              for k, v in obj.items()]}
        if isinstance(obj, (list, tuple)):
            kind = "list" if isinstance(obj, list) else "tuple"
            if isinstance(obj, tuple) and hasattr(obj, "_fields"):
                raise TypeError(f"tinyjit.save: a namedtuple ({type(obj).__name__}) at {where} cannot be rebuilt "
                                f"without pickle; save it as a dict")
            return {"type": kind, "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if isinstance(obj, float) and not math.isfinite(obj):
            return {"type": "float", "value": repr(obj)}   # 'nan', 'inf', '-inf': JSON has no literal for them
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return {"type": "value", "value": obj}
        if isinstance(obj, np.generic):
            return {"type": "ndarray", "key": self._add_tensor(np.asarray(obj)), "scalar": True}
        raise TypeError(f"tinyjit.save: cannot save a {type(obj).__name__} at {where}; supported: Tensor, numpy "
                        f"arrays, dict, list, tuple, str, int, float, bool, None (no pickle)")


def save(obj: Any, path: str | os.PathLike) -> None:
    """Save a Tensor, a state dict or any nesting of dicts/lists/tuples of Tensors, numpy arrays and JSON values
    (``torch.save``, without pickle). The file is a safetensors file, written atomically (a temporary file renamed
    into place). Raises TypeError naming where in `obj` an unsupported value is."""
    encoder = _Encoder()
    tree = encoder.encode(obj, "obj")
    metadata = {STRUCTURE_KEY: json.dumps({"version": FORMAT_VERSION, "tree": tree}, separators=(",", ":"))}
    safe_save(encoder.tensors, path, metadata=metadata)


def load(path: str | os.PathLike, device: Optional[str] = None) -> Any:
    """Load what ``save`` wrote (``torch.load``): the same nesting, with Tensors on `device` (default: the default
    device) and numpy arrays as numpy arrays. A safetensors file written by another tool loads as
    ``{name: Tensor}``. Raises ValueError for a damaged file or an unknown structure version."""
    arrays = safe_load(path, as_numpy=True)
    raw = safe_metadata(path).get(STRUCTURE_KEY)
    if raw is None:
        return {name: Tensor(a, device=device) for name, a in arrays.items()}
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"tinyjit.load: {path}: the structure metadata is not valid JSON ({e})") from None
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise ValueError(f"tinyjit.load: {path}: unknown structure version {document.get('version')!r} "
                         f"(this tinyjit reads version {FORMAT_VERSION})" if isinstance(document, dict) else
                         f"tinyjit.load: {path}: the structure metadata is not a JSON object")

    def decode(node: Any) -> Any:
        if not isinstance(node, dict) or "type" not in node:
            raise ValueError(f"tinyjit.load: {path}: malformed structure entry {str(node)[:80]}")
        kind = node["type"]
        if kind in ("tensor", "ndarray"):
            if node.get("key") not in arrays:
                raise ValueError(f"tinyjit.load: {path}: the structure names tensor {node.get('key')!r}, which the "
                                 f"file does not hold")
            array = arrays[node["key"]]
            if kind == "ndarray":
                return array[()] if node.get("scalar") else array
            return Tensor(array, device=device, requires_grad=True if node.get("requires_grad") else None)
        if kind == "dict":
            return {_decode_key(k): decode(v) for k, v in node["items"]}
        if kind == "list":
            return [decode(v) for v in node["items"]]
        if kind == "tuple":
            return tuple(decode(v) for v in node["items"])
        if kind == "float":
            return float(node["value"])
        if kind == "value":
            return node["value"]
        raise ValueError(f"tinyjit.load: {path}: unknown structure entry type {kind!r}")

    return decode(document["tree"])
