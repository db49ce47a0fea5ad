"""On-disk cache of compiled kernels, shared by every backend.

One file per (kind, key parts, source): `<root>/<kind>/<sha256 hex>.bin`, where root is `$TINYJIT_CACHE_DIR`
if set, else `${XDG_CACHE_HOME:-~/.cache}/tinyjit/compile`. `CACHE=0` turns reading and writing off.

Why the file format and the write protocol look the way they do:
- Every entry starts with a header (magic, payload length, sha256 of the payload). A file cut short by a
  crash or a full disk, or changed on disk, fails the check and is deleted and rebuilt, never loaded: a
  corrupt binary handed to a driver can crash the process instead of raising.
- A writer puts the entry in a temporary file in the same directory and renames it over the final name
  (`os.replace`, atomic on POSIX and Windows). Two processes compiling the same kernel at once both write
  complete files and the last rename wins; a reader sees the old file, the new one, or none, never half.
- The cache is an optimization only: any OSError (read-only or missing home, full disk, permissions)
  degrades to compiling without caching. Errors of the compiler itself (CompileError) are never cached.
"""
from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
from pathlib import Path
from typing import Callable

MAGIC = b"TJCC\x01"                       # tinyjit compile cache, format version 1
_HEADER = struct.Struct(f"<{len(MAGIC)}sQ32s")  # magic, payload length, sha256(payload)
_KIND_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def cache_enabled() -> bool:
    """False when the env var CACHE is 0. Any other value than 0/1 is a user error and says so."""
    value = os.environ.get("CACHE", "1").strip()
    if value not in ("0", "1", ""):
        raise ValueError(f"CACHE={value!r} is not valid; use CACHE=0 (disable the compile cache) or CACHE=1")
    return value != "0"


def cache_root() -> Path:
    """The directory holding one folder per kind."""
    if os.environ.get("TINYJIT_CACHE_DIR"):
        return Path(os.environ["TINYJIT_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tinyjit" / "compile"


def cache_key(kind: str, key_parts: tuple[str, ...], src: str) -> str:
    """sha256 hex over kind, every key part and the source.

    Each field is length-prefixed so that ("ab", "c") and ("a", "bc") cannot collide.
    """
    h = hashlib.sha256()
    for field in (kind, *key_parts, src):
        data = str(field).encode("utf-8")
        h.update(struct.pack("<Q", len(data)))
        h.update(data)
    return h.hexdigest()


def cache_path(kind: str, key_parts: tuple[str, ...], src: str) -> Path:
    """Where the entry for these inputs lives (whether or not it exists)."""
    if not _KIND_RE.match(kind):
        raise ValueError(f"cache kind {kind!r} must be a plain name (letters, digits, '_', '-', '.')")
    return cache_root() / kind / f"{cache_key(kind, key_parts, src)}.bin"


def encode_entry(payload: bytes) -> bytes:
    """Header + payload, the exact bytes of a cache file."""
    return _HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload


def decode_entry(data: bytes) -> bytes | None:
    """The payload of a cache file, or None when the file is not a complete, intact entry."""
    if len(data) < _HEADER.size:
        return None
    magic, length, digest = _HEADER.unpack_from(data)
    payload = data[_HEADER.size:]
    if magic != MAGIC or length != len(payload) or hashlib.sha256(payload).digest() != digest:
        return None
    return payload


def _read(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return None  # unreadable cache: behave as a miss
    payload = decode_entry(data)
    if payload is None:
        try:
            path.unlink()  # corrupt or truncated: remove it so the rebuilt entry replaces it
        except OSError:
            pass
    return payload


def _write(path: Path, payload: bytes) -> None:
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.stem[:16] + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(encode_entry(payload))
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError:
        pass  # read-only dir, full disk, ...: the caller still gets its binary, just not cached
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


def cached_compile(kind: str, key_parts: tuple[str, ...], src: str, compile_fn: Callable[[str], bytes]) -> bytes:
    """`compile_fn(src)`, memoized on disk under (kind, key_parts, src).

    key_parts must name everything besides the source that changes the binary: compiler and driver
    versions, target architecture, device name, build options.
    """
    if not cache_enabled():
        return bytes(compile_fn(src))
    path = cache_path(kind, tuple(key_parts), src)
    payload = _read(path)
    if payload is not None:
        return payload
    payload = bytes(compile_fn(src))
    _write(path, payload)
    return payload
