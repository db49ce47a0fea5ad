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


# --- an entry is valid only for its own key ---------------------------------------------------------------------

def test_entry_copied_under_another_key_is_rebuilt():
    fn = Counter()
    cached_compile("test", ("v1",), "kernel a", fn)
    cached_compile("test", ("v1",), "kernel b", fn)
    path_a, path_b = cache_path("test", ("v1",), "kernel a"), cache_path("test", ("v1",), "kernel b")
    path_b.write_bytes(path_a.read_bytes())   # intact, but kernel a's
    assert cached_compile("test", ("v1",), "kernel b", fn) == b"binarykernel b"
    assert fn.calls == 3, "another key's entry must be rebuilt, not loaded"
    assert cache.decode_entry(path_b.read_bytes(), path_b.stem) == b"binarykernel b"
    assert cache.decode_entry(path_a.read_bytes(), path_b.stem) is None


def test_entry_records_its_key_and_a_checksum():
    cached_compile("test", ("v1",), "src", Counter())
    path = cache_path("test", ("v1",), "src")
    data = path.read_bytes()
    assert bytes.fromhex(path.stem) in data[:64], "the header holds the sha256 of the full key"
    assert hashlib.sha256(b"binarysrc").digest() in data[:128], "and the payload's checksum"


def test_plan_entry_copied_under_another_kernels_key_is_rebuilt(cache_dir, monkeypatch):
    """The plan cache end to end: a copied entry would launch the other kernel (wrong values, or writes past a
    buffer); it must be rejected and the right kernel rebuilt."""
    import numpy as np

    from tinyjit import Tensor, kernel_cache
    from tinyjit.schedule import create_schedule
    x = np.arange(1000, dtype=np.float32)
    doubled, shifted = Tensor(x) * 2, Tensor(x) + 3
    (double_item,) = create_schedule([doubled.node])
    (shift_item,) = create_schedule([shifted.node])
    monkeypatch.setattr(kernel_cache, "_plans", kernel_cache.LRUCache(kernel_cache.kernel_cache_size))
    np.testing.assert_array_equal(doubled.numpy(), x * 2)
    key = kernel_cache._plan_key("CPU")
    double_path = cache_path("plan", key, kernel_cache.ast_text(double_item.ast))
    shift_path = cache_path("plan", key, kernel_cache.ast_text(shift_item.ast))
    assert double_path.exists() and not shift_path.exists()
    shift_path.parent.mkdir(parents=True, exist_ok=True)
    shift_path.write_bytes(double_path.read_bytes())
    np.testing.assert_array_equal(shifted.numpy(), x + 3)
    assert cache.decode_entry(shift_path.read_bytes(), shift_path.stem) is not None, "rebuilt under its own key"


# --- bounded reads ------------------------------------------------------------------------------------------------

READ_IN_LIMITED_MEMORY = """
import os, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))   # reading /dev/zero "whole" must fail, not hang the box
from runtime.cache import cache_path, cached_compile, decode_entry
kind = sys.argv[1]
path = cache_path("test", ("v1",), "src")
path.parent.mkdir(parents=True, exist_ok=True)
if kind == "dev_zero":
    os.symlink("/dev/zero", path)
elif kind == "fifo":
    os.mkfifo(path)
elif kind == "oversize":
    with open(path, "wb") as f:
        f.truncate((256 << 20) + 1)     # sparse: no disk space used
elif kind == "link_to_entry":
    cached_compile("test", ("v1",), "other", lambda s: b"other binary")
    os.symlink(cache_path("test", ("v1",), "other"), path)
t0 = time.time()
out = cached_compile("test", ("v1",), "src", lambda s: b"fresh binary")
assert out == b"fresh binary", out[:20]
assert not path.is_symlink() and decode_entry(path.read_bytes(), path.stem) == b"fresh binary"
print(f"ok {time.time() - t0:.2f}")
"""


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "oversize", "link_to_entry"])
def test_entry_that_is_not_a_small_regular_file_is_refused_unread(kind, cache_dir):
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, TINYJIT_CACHE_DIR=str(cache_dir))
    env.pop("CACHE", None)
    try:
        proc = subprocess.run([sys.executable, "-c", READ_IN_LIMITED_MEMORY, kind], env=env, capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading a {kind} cache entry blocked")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[1]) < 5, proc.stdout


# --- size cap -------------------------------------------------------------------------------------------------------

def _entries(cache_dir):
    return sorted((cache_dir / "test").glob("*.bin"))


def test_size_cap_evicts_least_recently_used(monkeypatch, cache_dir):
    monkeypatch.setenv("TINYJIT_CACHE_MAX_MB", str(50_000 / (1 << 20)))   # ~50 kB: five 10 kB entries
    monkeypatch.setattr(cache, "_written", {"bytes": 0, "scanned": set()})
    big = Counter(result=b"x" * 10_000)
    now = 1_700_000_000
    for i in range(4):
        cached_compile("test", (), f"k{i}", big)
        os.utime(cache_path("test", (), f"k{i}"), (now + i, now + i))   # k0 oldest ... k3 newest
    cached_compile("test", (), "k0", big)           # a hit refreshes k0: now k1 is the least recently used
    assert big.calls == 4
    for i in range(4, 8):
        cached_compile("test", (), f"k{i}", big)
        total = sum(p.stat().st_size for p in _entries(cache_dir))
        assert total <= 50_000, f"{total} bytes cached over a 50 kB cap"
    assert not cache_path("test", (), "k1").exists(), "the least recently used entry goes first"
    assert cache_path("test", (), "k7").exists()
    info = cache.cache_info()
    assert info.entries == len(_entries(cache_dir)) and info.bytes <= 50_000 and info.max_bytes <= 50_000


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf"])
def test_bad_cache_size_env_value_is_refused(monkeypatch, value):
    monkeypatch.setenv("TINYJIT_CACHE_MAX_MB", value)
    monkeypatch.setattr(cache, "_written", {"bytes": 0, "scanned": set()})
    with pytest.raises(ValueError, match="TINYJIT_CACHE_MAX_MB"):
        cached_compile("test", (), "s", Counter())


def test_cli_info_and_clear_touch_only_cache_files(cache_dir):
    import subprocess
    import sys
    fn = Counter()
    for i in range(3):
        cached_compile("test", ("v1",), f"s{i}", fn)
    cached_compile("plan", ("v1",), "s", fn)
    (cache_dir / "notes.txt").write_text("not ours")
    (cache_dir / "test" / "user.bin").write_text("not ours either")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, TINYJIT_CACHE_DIR=str(cache_dir))

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "tinyjit.cache", *args], env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    info = cli("--info")
    assert str(cache_dir) in info and "4 entries" in info, info
    assert "test" in info and "plan" in info
    cleared = cli("--clear")
    assert "4" in cleared, cleared
    assert (cache_dir / "notes.txt").exists() and (cache_dir / "test" / "user.bin").exists()
    assert list(cache_dir.glob("*/*.bin")) == [cache_dir / "test" / "user.bin"]
    assert "0 entries" in cli("--info")
