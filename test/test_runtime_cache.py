"""The on-disk compile cache: round trip, corruption, CACHE=0, concurrent writers, key sensitivity, OSErrors."""
import hashlib
import multiprocessing as mp
import os

import pytest

from runtime import cache
from runtime.cache import cache_key, cache_path, cached_compile


class Counter:
    """A compile function that records how often it ran."""

    def __init__(self, result=b"binary"):
        self.calls, self.result = 0, result

    def __call__(self, src: str) -> bytes:
        self.calls += 1
        return self.result + src.encode()


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CACHE", raising=False)
    return tmp_path / "cache"


def test_round_trip_compiles_once(cache_dir):
    fn = Counter()
    first = cached_compile("test", ("v1",), "kernel", fn)
    second = cached_compile("test", ("v1",), "kernel", fn)
    assert first == second == b"binarykernel"
    assert fn.calls == 1
    path = cache_path("test", ("v1",), "kernel")
    assert path.parent == cache_dir / "test" and path.exists()
    assert cache.decode_entry(path.read_bytes()) == b"binarykernel"


def test_empty_payload_is_cached():
    fn = Counter(result=b"")
    assert cached_compile("test", (), "", fn) == b""
    assert cached_compile("test", (), "", fn) == b""
    assert fn.calls == 1


def _damage_flip_payload(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


def _damage_flip_header(data: bytes) -> bytes:
    return bytes([data[0] ^ 0xFF]) + data[1:]


def _damage_truncate(data: bytes) -> bytes:
    return data[: len(data) - 3]


def _damage_truncate_header(data: bytes) -> bytes:
    return data[:10]


def _damage_empty(data: bytes) -> bytes:
    return b""


@pytest.mark.parametrize("damage", [_damage_flip_payload, _damage_flip_header, _damage_truncate,
                                    _damage_truncate_header, _damage_empty])
def test_corrupt_entry_is_rebuilt_not_loaded(damage):
    fn = Counter()
    good = cached_compile("test", ("v1",), "src", fn)
    path = cache_path("test", ("v1",), "src")
    path.write_bytes(damage(path.read_bytes()))
    assert cached_compile("test", ("v1",), "src", fn) == good
    assert fn.calls == 2, "a damaged entry must be rebuilt"
    assert cache.decode_entry(path.read_bytes()) == good, "the rebuilt entry must replace the damaged file"
    assert cached_compile("test", ("v1",), "src", fn) == good
    assert fn.calls == 2


def test_cache_disabled_bypasses_reads_and_writes(monkeypatch, cache_dir):
    fn = Counter()
    cached_compile("test", (), "x", fn)          # populate while enabled
    monkeypatch.setenv("CACHE", "0")
    assert cached_compile("test", (), "x", fn) == b"binaryx"
    assert cached_compile("test", (), "y", fn) == b"binaryy"
    assert fn.calls == 3, "CACHE=0 must not read the existing entry"
    assert not cache_path("test", (), "y").exists(), "CACHE=0 must not write"


def test_bad_cache_env_value_names_valid_ones(monkeypatch):
    monkeypatch.setenv("CACHE", "maybe")
    with pytest.raises(ValueError, match="CACHE=0"):
        cached_compile("test", (), "x", Counter())


def test_key_changes_with_every_part():
    base = cache_key("cl", ("compiler 1", "sm_80", "-O3"), "src")
    variants = [
        cache_key("cuda", ("compiler 1", "sm_80", "-O3"), "src"),
        cache_key("cl", ("compiler 2", "sm_80", "-O3"), "src"),
        cache_key("cl", ("compiler 1", "sm_90", "-O3"), "src"),
        cache_key("cl", ("compiler 1", "sm_80", "-O2"), "src"),
        cache_key("cl", ("compiler 1", "sm_80", "-O3"), "src "),
        cache_key("cl", ("compiler 1", "sm_80"), "src"),
        cache_key("cl", ("compiler 1", "sm_80", "-O3", ""), "src"),
        cache_key("cl", ("compiler 1sm_80", "", "-O3"), "src"),  # same concatenation, different split
    ]
    assert len({base, *variants}) == len(variants) + 1
    assert cache_key("cl", ("compiler 1", "sm_80", "-O3"), "src") == base


def test_different_key_parts_do_not_share_entries():
    fn = Counter()
    cached_compile("test", ("a",), "s", fn)
    cached_compile("test", ("b",), "s", fn)
    assert fn.calls == 2


def test_bad_kind_rejected():
    with pytest.raises(ValueError):
        cached_compile("../escape", (), "s", Counter())


def test_unusable_cache_dir_degrades_to_plain_compile(tmp_path, monkeypatch):
    # A cache "directory" below a regular file cannot be created, even by root (chmod would not stop root).
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    monkeypatch.setenv("TINYJIT_CACHE_DIR", str(blocker / "cache"))
    fn = Counter()
    assert cached_compile("test", (), "s", fn) == b"binarys"
    assert cached_compile("test", (), "s", fn) == b"binarys"
    assert fn.calls == 2


def test_full_disk_on_write_degrades_and_leaves_no_temp_files(monkeypatch, cache_dir):
    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.os, "replace", no_space)
    fn = Counter()
    assert cached_compile("test", (), "s", fn) == b"binarys"
    assert list((cache_dir / "test").iterdir()) == []


def test_unreadable_entry_is_a_miss(monkeypatch):
    fn = Counter()
    cached_compile("test", (), "s", fn)
    real_open = cache.os.open

    def failing_open(path, *args, **kwargs):
        if str(path).endswith(".bin"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(cache.os, "open", failing_open)
    assert cached_compile("test", (), "s", fn) == b"binarys"
    assert fn.calls == 2


def test_compile_errors_are_not_cached():
    def failing(src):
        raise RuntimeError("bad kernel")

    with pytest.raises(RuntimeError, match="bad kernel"):
        cached_compile("test", (), "s", failing)
    assert not cache_path("test", (), "s").exists()


# --- two processes compiling the same key at the same time ---------------------------------------------------

PAYLOAD_SIZE = 1 << 20


def _payload(src: str) -> bytes:
    """Deterministic, large enough that the two writes overlap in time."""
    seed = hashlib.sha256(src.encode()).digest()
    return (seed * (PAYLOAD_SIZE // len(seed) + 1))[:PAYLOAD_SIZE]


def _worker(cache_root, barrier, results, index):
    os.environ["TINYJIT_CACHE_DIR"] = cache_root
    os.environ.pop("CACHE", None)

    def slow_compile(src):
        barrier.wait(timeout=20)  # every process is inside compile_fn (a cache miss) before anyone writes
        return _payload(src)

    out = cached_compile("race", ("v1",), "same kernel", slow_compile)
    results.put((index, hashlib.sha256(out).hexdigest()))


def test_concurrent_processes_compile_same_key(cache_dir):
    n = 4
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(cache_dir), barrier, results, i)) for i in range(n)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=60) for _ in range(n))
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * n
    expected = hashlib.sha256(_payload("same kernel")).hexdigest()
    assert got == {i: expected for i in range(n)}
    entries = list((cache_dir / "race").iterdir())
    assert [e.suffix for e in entries] == [".bin"], f"temp files left behind: {entries}"
    assert cache.decode_entry(entries[0].read_bytes()) == _payload("same kernel")
    # and the entry they raced to write is now a hit
    fn = Counter()
    assert cached_compile("race", ("v1",), "same kernel", fn) == _payload("same kernel")
    assert fn.calls == 0
