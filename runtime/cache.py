"""On-disk cache of compiled kernels, shared by every backend.

One file per (kind, key parts, source): `<root>/<kind>/<sha256 hex>.bin`, where root is `$TINYJIT_CACHE_DIR`
if set, else `${XDG_CACHE_HOME:-~/.cache}/tinyjit/compile`. `CACHE=0` turns reading and writing off.
`python -m tinyjit.cache --info` shows its size, `--clear` empties it.

Why the file format and the write protocol look the way they do:
- Every entry starts with a header: magic, the sha256 of its complete key (kind, every key part, the source),
  payload length, sha256 of the payload. A file cut short by a crash or a full disk, changed on disk, or copied
  or renamed to another key's file name fails the check and is deleted and rebuilt, never loaded: a corrupt
  binary, or another kernel's, handed to a driver can crash the process or compute the wrong thing silently.
- Reads are bounded: an entry is opened without following symlinks and without blocking, must be a regular file
  no larger than MAX_ENTRY_BYTES, and is read up to the size it had when opened. (A link to /dev/zero or a
  FIFO is refused, not read forever.)
- A writer puts the entry in a temporary file in the same directory and renames it over the final name
  (`os.replace`, atomic on POSIX and Windows). Two processes compiling the same kernel at once both write
  complete files and the last rename wins; a reader sees the old file, the new one, or none, never half.
- The cache has a size cap (`TINYJIT_CACHE_MAX_MB`, default DEFAULT_MAX_MB): a hit refreshes an entry's mtime,
  and when the entries outgrow the cap the least recently used are deleted until they fill 80% of it. The
  directory is scanned at a process's first write and again after every tenth of the cap written.
- The cache is an optimization only: any OSError (read-only or missing home, full disk, permissions)
  degrades to compiling without caching. Errors of the compiler itself (CompileError) are never cached.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple

MAGIC = b"TJCC\x02"   # tinyjit compile cache, format version 2 (version 1 files fail the check and are rebuilt)
_HEADER = struct.Struct(f"<{len(MAGIC)}s32sQ32s")  # magic, sha256(full key), payload length, sha256(payload)
_KIND_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_ENTRY_RE = re.compile(r"^[0-9a-f]{64}\.bin$|^[0-9a-f]{16}\..+\.tmp$")   # the names _write gives files
MAX_ENTRY_BYTES = 256 << 20    # no compiled kernel or plan comes near this; a bigger file is not an entry
DEFAULT_MAX_MB = 1024          # the cache's size cap unless TINYJIT_CACHE_MAX_MB says otherwise
TRIM_TO = 0.8                  # a trim deletes least recently used entries until this fraction of the cap is left


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


def cache_max_bytes() -> int:
    """The cache's size cap in bytes, from TINYJIT_CACHE_MAX_MB (a positive number of MiB)."""
    value = os.environ.get("TINYJIT_CACHE_MAX_MB", "").strip() or str(DEFAULT_MAX_MB)
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = -1.0
    if not megabytes > 0 or megabytes == float("inf"):
        raise ValueError(f"TINYJIT_CACHE_MAX_MB={value!r} is not valid: expected a positive number of MiB "
                         f"(default {DEFAULT_MAX_MB}); use CACHE=0 to turn the compile cache off")
    return int(megabytes * (1 << 20))


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


def encode_entry(payload: bytes, key: str) -> bytes:
    """Header + payload, the exact bytes of the cache file for `key` (a cache_key hex digest)."""
    return _HEADER.pack(MAGIC, bytes.fromhex(key), len(payload), hashlib.sha256(payload).digest()) + payload


def decode_entry(data: bytes, key: str | None = None) -> bytes | None:
    """The payload of a cache file, or None when the file is not a complete, intact entry, or (given `key`) is
    the entry of another key."""
    if len(data) < _HEADER.size:
        return None
    magic, key_digest, length, digest = _HEADER.unpack_from(data)
    payload = data[_HEADER.size:]
    if magic != MAGIC or length != len(payload) or hashlib.sha256(payload).digest() != digest:
        return None
    if key is not None and key_digest != bytes.fromhex(key):
        return None
    return payload


def _read_bounded(path: Path) -> bytes | None:
    """The bytes of a regular file of at most MAX_ENTRY_BYTES, or None for anything else (missing, a symlink,
    a device, a FIFO, too big, unreadable). A hit refreshes the file's mtime: the size cap evicts by it."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:   # missing, unreadable, or a symlink (ELOOP with O_NOFOLLOW)
        return None if not path.is_symlink() else b""   # b"": not an entry, so it gets deleted
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ENTRY_BYTES:
            return b""
        chunks, left = [], info.st_size
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        try:
            os.utime(fd if os.utime in os.supports_fd else path)
        except OSError:
            pass   # a read-only cache still serves hits
        return data
    except OSError:
        return None
    finally:
        os.close(fd)


def _read(path: Path, key: str) -> bytes | None:
    data = _read_bounded(path)
    if data is None:
        return None
    payload = decode_entry(data, key)
    if payload is None:
        _unlink(path)   # corrupt, truncated, another key's entry or not a file: the rebuilt entry replaces it
    return payload


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _write(path: Path, payload: bytes, key: str) -> None:
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.stem[:16] + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(encode_entry(payload, key))
        os.replace(tmp_name, path)
        tmp_name = None
        _note_written(path.parent.parent, _HEADER.size + len(payload))
    except OSError:
        pass  # read-only dir, full disk, ...: the caller still gets its binary, just not cached
    finally:
        if tmp_name is not None:
            _unlink(Path(tmp_name))


# ---- size cap, info, clear ----
class CacheInfo(NamedTuple):
    root: Path
    entries: int
    bytes: int
    by_kind: dict        # kind -> (entries, bytes)
    max_bytes: int


def _kind_dirs(root: Path) -> list[Path]:
    try:
        with os.scandir(root) as it:
            return [Path(d.path) for d in it if _KIND_RE.match(d.name) and d.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _entry_files(root: Path) -> list[tuple[Path, os.stat_result]]:
    """Every file the cache owns under `root` (`<kind>/<sha256>.bin` and leftover temporary files), with its
    lstat. Files named otherwise are never touched: the root may be a directory shared with other files."""
    found = []
    for kind in _kind_dirs(root):
        try:
            with os.scandir(kind) as it:
                for entry in it:
                    if _ENTRY_RE.match(entry.name):
                        try:
                            found.append((Path(entry.path), entry.stat(follow_symlinks=False)))
                        except OSError:
                            pass
        except OSError:
            pass
    return found


def cache_info(root: Path | None = None) -> CacheInfo:
    """Entries and bytes in the cache (the default root unless given), in total and per kind."""
    root = cache_root() if root is None else root
    by_kind: dict = {}
    for path, st in _entry_files(root):
        if path.suffix == ".bin":
            count, size = by_kind.get(path.parent.name, (0, 0))
            by_kind[path.parent.name] = (count + 1, size + st.st_size)
    return CacheInfo(root, sum(c for c, _ in by_kind.values()), sum(b for _, b in by_kind.values()),
                     dict(sorted(by_kind.items())), cache_max_bytes())


def clear_cache(root: Path | None = None) -> int:
    """Delete every entry (and leftover temporary file); returns how many files were deleted. The kind
    directories are deleted too when empty; the root directory itself and anything else in it are kept."""
    root = cache_root() if root is None else root
    deleted = 0
    for path, _ in _entry_files(root):
        try:
            path.unlink()
            deleted += 1
        except OSError:
            pass
    for kind in _kind_dirs(root):
        try:
            kind.rmdir()   # only if empty
        except OSError:
            pass
    return deleted


def trim_cache(max_bytes: int, root: Path | None = None) -> int:
    """If the entries take more than `max_bytes`, delete the least recently used (oldest mtime: a hit
    refreshes it) until they take at most TRIM_TO of it. Leftover temporary files older than an hour go too.
    Returns the bytes deleted."""
    root = cache_root() if root is None else root
    files = _entry_files(root)
    stale_before = time.time() - 3600
    deleted = 0
    for path, st in files:
        if path.suffix == ".tmp" and st.st_mtime < stale_before:
            _unlink(path)
    entries = sorted(((st.st_mtime, st.st_size, path) for path, st in files if path.suffix == ".bin"),
                     key=lambda e: e[0])
    total = sum(size for _, size, _ in entries)
    if total <= max_bytes:
        return 0
    target = int(max_bytes * TRIM_TO)
    for _, size, path in entries:
        if total <= target:
            break
        _unlink(path)
        total -= size
        deleted += size
    return deleted


_written = {"bytes": 0, "scanned": set()}   # bytes written since the last scan; roots scanned by this process
_written_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _written_lock
    _written_lock = threading.Lock()   # a thread of the parent may have held it; none of them exists here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _note_written(root: Path, nbytes: int) -> None:
    """Trim the cache at this process's first write to `root`, then after every tenth of the cap written."""
    max_bytes = cache_max_bytes()
    with _written_lock:
        _written["bytes"] += nbytes
        due = root not in _written["scanned"] or _written["bytes"] >= max_bytes // 10
        if due:
            _written["scanned"].add(root)
            _written["bytes"] = 0
    if due:
        trim_cache(max_bytes, root)


def cache_lookup(kind: str, key_parts: tuple[str, ...], src: str) -> bytes | None:
    """What `cached_compile(kind, key_parts, src, ...)` would return from disk, or None when it would compile."""
    if not cache_enabled():
        return None
    path = cache_path(kind, tuple(key_parts), src)
    return _read(path, path.stem)


def cached_compile(kind: str, key_parts: tuple[str, ...], src: str, compile_fn: Callable[[str], bytes]) -> bytes:
    """`compile_fn(src)`, memoized on disk under (kind, key_parts, src).

    key_parts must name everything besides the source that changes the binary: compiler and driver
    versions, target architecture, device name, build options.
    """
    if not cache_enabled():
        return bytes(compile_fn(src))
    cache_max_bytes()   # a bad TINYJIT_CACHE_MAX_MB is an error at every call, not only when an entry is written
    path = cache_path(kind, tuple(key_parts), src)
    key = path.stem
    payload = _read(path, key)
    if payload is not None:
        return payload
    payload = bytes(compile_fn(src))
    _write(path, payload, key)
    return payload
