"""A thread pool whose workers wait for work in native code, so handing a kernel launch to them costs
microseconds instead of the ~100 us of waking a Python thread (a training step launches dozens of small kernels).

Each worker is a Python thread that calls `tj_worker(slot)` through ctypes (releasing the GIL) and stays inside
it: it spins on its slot's sequence number for a while, then sleeps on a futex. `tj_parallel` (one ctypes call
from the launching thread; a spin lock lets one launching thread at a time use the workers) writes each worker's
range into its slot, bumps the sequence number (waking a sleeping worker), runs the first range itself and spins
until every worker has published "done". The functions are LLVM IR, compiled to object code once per machine
(through the disk cache, as kernels are) and loaded into a JIT engine of their own; kernels are called through their
uniform thunk `(void **buffers, int64 start, int64 end)`. Linux on x86-64 only (futex and pause); elsewhere the CPU
device falls back to a Python ThreadPoolExecutor.
"""
from __future__ import annotations

import ctypes
import functools
import platform
import sys
import threading

import numpy as np

from runtime.env import env

SLOT_BYTES = 64          # one cache line per worker: seq, done, thunk, args, start, end (i64 each), sleeping, quit
SPINS_BEFORE_SLEEP = 1 << 14   # ~1 ms of polling (pause) after the last launch before a worker sleeps
SYS_FUTEX, SYS_SCHED_YIELD, FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 202, 24, 128, 129
# tj_sequence's table: per launch its thunk, its arguments' C array, the outer loop's length and its threads
SEQUENCE_ENTRY_BYTES = 32

POOL_IR = f"""
declare i64 @syscall(i64, ...)
declare void @llvm.x86.sse2.pause()

define void @tj_worker(ptr %slot) {{
entry:
  %donep = getelementptr i8, ptr %slot, i64 8
  %thunkp = getelementptr i8, ptr %slot, i64 16
  %argsp = getelementptr i8, ptr %slot, i64 24
  %startp = getelementptr i8, ptr %slot, i64 32
  %endp = getelementptr i8, ptr %slot, i64 40
  %sleepingp = getelementptr i8, ptr %slot, i64 48
  %quitp = getelementptr i8, ptr %slot, i64 52
  br label %wait
wait:
  %last = phi i64 [ 0, %entry ], [ %seq, %ran ], [ %last, %woke ]
  br label %spin
spin:
  %i = phi i64 [ 0, %wait ], [ %i1, %spin_next ]
  %seq = load atomic i64, ptr %slot acquire, align 8
  %changed = icmp ne i64 %seq, %last
  br i1 %changed, label %run, label %spin_next
spin_next:
  call void @llvm.x86.sse2.pause()
  %i1 = add i64 %i, 1
  %more = icmp ult i64 %i1, {SPINS_BEFORE_SLEEP}
  br i1 %more, label %spin, label %sleep
sleep:
  store atomic i32 1, ptr %sleepingp seq_cst, align 4
  %seq2 = load atomic i64, ptr %slot seq_cst, align 8
  %changed2 = icmp ne i64 %seq2, %last
  br i1 %changed2, label %woke, label %futex
futex:
  %low = trunc i64 %last to i32
  %r = call i64 (i64, ...) @syscall(i64 {SYS_FUTEX}, ptr %slot, i32 {FUTEX_WAIT_PRIVATE}, i32 %low, ptr null)
  br label %woke
woke:
  store atomic i32 0, ptr %sleepingp seq_cst, align 4
  br label %wait
run:
  %quit = load atomic i32, ptr %quitp acquire, align 4
  %stop = icmp ne i32 %quit, 0
  br i1 %stop, label %exit, label %work
work:
  %thunk = load ptr, ptr %thunkp, align 8
  %args = load ptr, ptr %argsp, align 8
  %start = load i64, ptr %startp, align 8
  %end = load i64, ptr %endp, align 8
  call void %thunk(ptr %args, i64 %start, i64 %end)
  store atomic i64 %seq, ptr %donep release, align 8
  br label %ran
ran:
  br label %wait
exit:
  ret void
}}

define void @tj_post(ptr %slot, ptr %thunk, ptr %args, i64 %start, i64 %end, i32 %quit) {{
entry:
  %thunkp = getelementptr i8, ptr %slot, i64 16
  %argsp = getelementptr i8, ptr %slot, i64 24
  %startp = getelementptr i8, ptr %slot, i64 32
  %endp = getelementptr i8, ptr %slot, i64 40
  %sleepingp = getelementptr i8, ptr %slot, i64 48
  %quitp = getelementptr i8, ptr %slot, i64 52
  store ptr %thunk, ptr %thunkp, align 8
  store ptr %args, ptr %argsp, align 8
  store i64 %start, ptr %startp, align 8
  store i64 %end, ptr %endp, align 8
  store atomic i32 %quit, ptr %quitp release, align 4
  %seq = load atomic i64, ptr %slot monotonic, align 8
  %next = add i64 %seq, 1
  store atomic i64 %next, ptr %slot seq_cst, align 8
  %sleeping = load atomic i32, ptr %sleepingp seq_cst, align 4
  %asleep = icmp ne i32 %sleeping, 0
  br i1 %asleep, label %wake, label %done
wake:
  %r = call i64 (i64, ...) @syscall(i64 {SYS_FUTEX}, ptr %slot, i32 {FUTEX_WAKE_PRIVATE}, i32 1)
  br label %done
done:
  ret void
}}

define void @tj_join(ptr %slot) {{
entry:
  %donep = getelementptr i8, ptr %slot, i64 8
  %seq = load atomic i64, ptr %slot monotonic, align 8
  br label %spin
spin:
  %i = phi i64 [ 0, %entry ], [ %i1, %again ], [ %i1, %yield ]
  %done = load atomic i64, ptr %donep acquire, align 8
  %finished = icmp eq i64 %done, %seq
  br i1 %finished, label %exit, label %again
again:
  call void @llvm.x86.sse2.pause()
  %i1 = add i64 %i, 1
  %long = icmp ugt i64 %i1, {SPINS_BEFORE_SLEEP}
  br i1 %long, label %yield, label %spin
yield:
  %r = call i64 (i64, ...) @syscall(i64 {SYS_SCHED_YIELD})
  br label %spin
exit:
  ret void
}}

define void @tj_parallel(ptr %thunk, ptr %args, i64 %n, i64 %threads, ptr %slots, ptr %lock) {{
entry:
  br label %acquire
acquire:
  %got = cmpxchg ptr %lock, i32 0, i32 1 acquire monotonic
  %ok = extractvalue {{ i32, i1 }} %got, 1
  br i1 %ok, label %start, label %busy
busy:
  call void @llvm.x86.sse2.pause()
  br label %acquire
start:
  %t1 = sub i64 %threads, 1
  %sum = add i64 %n, %t1
  %chunk = sdiv i64 %sum, %threads
  br label %post
post:
  %w = phi i64 [ 1, %start ], [ %w1, %posted ]
  %lo = mul i64 %w, %chunk
  %has = icmp slt i64 %lo, %n
  %inpool = icmp slt i64 %w, %threads
  %go = and i1 %has, %inpool
  br i1 %go, label %dopost, label %mine
dopost:
  %hi0 = add i64 %lo, %chunk
  %over = icmp sgt i64 %hi0, %n
  %hi = select i1 %over, i64 %n, i64 %hi0
  %wi = sub i64 %w, 1
  %off = mul i64 %wi, {SLOT_BYTES}
  %slot = getelementptr i8, ptr %slots, i64 %off
  call void @tj_post(ptr %slot, ptr %thunk, ptr %args, i64 %lo, i64 %hi, i32 0)
  br label %posted
posted:
  %w1 = add i64 %w, 1
  br label %post
mine:
  %first = icmp slt i64 %chunk, %n
  %myend = select i1 %first, i64 %chunk, i64 %n
  call void %thunk(ptr %args, i64 0, i64 %myend)
  br label %join
join:
  %j = phi i64 [ 1, %mine ], [ %j1, %joined ]
  %more = icmp slt i64 %j, %w
  br i1 %more, label %dojoin, label %release
dojoin:
  %ji = sub i64 %j, 1
  %joff = mul i64 %ji, {SLOT_BYTES}
  %jslot = getelementptr i8, ptr %slots, i64 %joff
  call void @tj_join(ptr %jslot)
  br label %joined
joined:
  %j1 = add i64 %j, 1
  br label %join
release:
  store atomic i32 0, ptr %lock release, align 4
  ret void
}}

define void @tj_sequence(ptr %table, i64 %count, ptr %slots, ptr %lock) {{
entry:
  %any = icmp sgt i64 %count, 0
  br i1 %any, label %launch, label %exit
launch:
  %i = phi i64 [ 0, %entry ], [ %i1, %next ]
  %off = mul i64 %i, {SEQUENCE_ENTRY_BYTES}
  %entryp = getelementptr i8, ptr %table, i64 %off
  %thunk = load ptr, ptr %entryp, align 8
  %argsp = getelementptr i8, ptr %entryp, i64 8
  %args = load ptr, ptr %argsp, align 8
  %np = getelementptr i8, ptr %entryp, i64 16
  %n = load i64, ptr %np, align 8
  %threadsp = getelementptr i8, ptr %entryp, i64 24
  %threads = load i64, ptr %threadsp, align 8
  %split = icmp sgt i64 %threads, 1
  br i1 %split, label %parallel, label %alone
parallel:
  call void @tj_parallel(ptr %thunk, ptr %args, i64 %n, i64 %threads, ptr %slots, ptr %lock)
  br label %next
alone:
  call void %thunk(ptr %args, i64 0, i64 %n)
  br label %next
next:
  %i1 = add i64 %i, 1
  %more = icmp slt i64 %i1, %count
  br i1 %more, label %launch, label %exit
exit:
  ret void
}}
"""


def pool_object(device, src: str) -> bytes:
    """The pool's IR `src` -> object code for `device`'s CPU: the code generator only, without the kernels' IR
    optimization passes (what MCJIT did when it compiled the module itself)."""
    import llvmlite.binding as llvm
    module = llvm.parse_assembly(src, context=device._thread_llvm()[0])
    module.verify()
    return device._thread_llvm()[1].emit_object(module)


class _PoolCode:
    """The pool's functions, compiled once per device into a JIT engine of their own (the device's kernel engines
    come and go), and reused by the pool a forked child starts."""

    @staticmethod
    def of(device) -> "_PoolCode":
        if getattr(device, "_pool_code", None) is None:
            device._pool_code = _PoolCode(device)
        return device._pool_code

    def __init__(self, device):
        import llvmlite.binding as llvm

        from runtime import cpu_symbols
        from runtime.cache import cached_compile
        # object code through the disk cache, like a kernel's: generating it costs ~70 ms of LLVM, a sizeable part
        # of a warm start's first training step
        binary = cached_compile("cpu-pool", device.cache_key(), POOL_IR, functools.partial(pool_object, device))
        cpu_symbols.provide(cpu_symbols.check(binary))   # (only syscall) resolved explicitly, as for every kernel
        with device._engine_lock:
            self.engine = device.new_engine()
            self.engine.llvm.add_object_file(llvm.ObjectFileRef.from_data(binary))
            self.engine.llvm.finalize_object()
            address = {name: self.engine.llvm.get_function_address(name)
                       for name in ("tj_worker", "tj_post", "tj_parallel", "tj_sequence")}
        self.worker = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(address["tj_worker"])
        self.post = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                     ctypes.c_int64, ctypes.c_int32)(address["tj_post"])
        self.parallel = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                         ctypes.c_void_p, ctypes.c_void_p)(address["tj_parallel"])
        self.sequence = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                                         ctypes.c_void_p)(address["tj_sequence"])


def native_code_available() -> bool:
    """Whether the pool's native code runs here (Linux on x86-64, TINYJIT_NATIVE_POOL not 0)."""
    return sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64") and bool(env("TINYJIT_NATIVE_POOL"))


def sequence_call(device, entries: list[tuple[int, int, int, int]]):
    """A callable that runs launches one after another in one C call (tj_sequence), or None where the native code
    does not run. `entries` are (thunk, address of its arguments' C array, outer loop length, threads): a launch of
    one thread runs on the calling thread, the others are split over `device`'s native pool as `parallel` does. A
    TinyJit replay of many small kernels spent ~1 us of Python per launch. The callable keeps its table alive."""
    if not native_code_available():
        return None
    pool = device.native_pool
    if pool is None and any(threads > 1 for *_, threads in entries):
        return None
    if pool is not None:   # (the pool's own launcher caps the threads at its workers and the calling thread)
        entries = [(thunk, args, n, min(threads, pool.workers + 1)) for thunk, args, n, threads in entries]
    table = np.ascontiguousarray(np.array(entries, dtype=np.int64).reshape(len(entries), SEQUENCE_ENTRY_BYTES // 8))
    slots, lock = (pool.slots, pool.lock) if pool is not None else (None, None)
    call = functools.partial(_PoolCode.of(device).sequence, table.ctypes.data, len(entries), slots, lock)
    call.table = table
    return call


class NativePool:
    def __init__(self, code: _PoolCode, workers: int):
        self.code = code
        self._worker, self._post, self._parallel = code.worker, code.post, code.parallel
        self.workers = workers
        # one cache line per worker, then the lock that lets one launching thread at a time use the workers
        raw = np.zeros((workers + 1) * SLOT_BYTES + 64, dtype=np.uint8)
        self._slots = raw[(-raw.ctypes.data) % 64:][:(workers + 1) * SLOT_BYTES]   # cache-line aligned
        self.slots = self._slots.ctypes.data
        self.lock = self.slots + workers * SLOT_BYTES
        self.threads = [threading.Thread(target=self._worker, args=(self.slots + w * SLOT_BYTES,), daemon=True,
                                         name=f"tinyjit-cpu-{w}") for w in range(workers)]
        for t in self.threads:
            t.start()

    @staticmethod
    def create(device, workers: int):
        """The pool, or None where it cannot run (not Linux on x86-64, or TINYJIT_NATIVE_POOL=0)."""
        if not native_code_available():
            return None
        return NativePool(_PoolCode.of(device), workers)

    def parallel(self, thunk: int, args, n: int, threads: int) -> None:
        """Run thunk(args, lo, hi) over [0, n) split into `threads` ranges (this thread runs the first)."""
        fn, fn_args = self.launcher(thunk, args, n, threads)
        fn(*fn_args)

    def launcher(self, thunk: int, args, n: int, threads: int):
        """(ctypes function, arguments) of that launch."""
        return self._parallel, (thunk, args, n, min(threads, self.workers + 1), self.slots, self.lock)

    def stop(self) -> None:
        """Let the workers return (at interpreter exit they would simply be dropped)."""
        for w in range(self.workers):
            self._post(self.slots + w * SLOT_BYTES, None, None, 0, 0, 1)
