"""The in-memory kernel caches are bounded: the plan cache keeps its most recently used entries, loaded programs
live only while used, and on the CPU a JIT engine whose kernels are all gone is freed, while kernels still in use
(hot plans, TinyJit captures) keep working."""
import gc
import weakref

import numpy as np
import pytest

import runtime.cpu as cpu
from tinyjit import Tensor, TinyJit, kernel_cache
from runtime.env import env
from tinyjit.helpers import getenv


@pytest.fixture
def small_caches(monkeypatch):
    """An 8-plan cache (TINYJIT_KERNEL_CACHE=8) and 4-kernel JIT engines; yields the engines created while the
    test runs."""
    monkeypatch.setenv("TINYJIT_KERNEL_CACHE", "8")
    getenv.cache_clear()
    env.cache_clear()   # an earlier test may have read the variable already
    monkeypatch.setattr(kernel_cache, "_plans", kernel_cache.LRUCache(kernel_cache.kernel_cache_size))
    monkeypatch.setattr(cpu, "ENGINE_OBJECTS", 4)
    created = weakref.WeakSet()
    real_init = cpu.JitEngine.__init__

    def recording_init(self, device):
        real_init(self, device)
        created.add(self)

    monkeypatch.setattr(cpu.JitEngine, "__init__", recording_init)
    cpu_device = kernel_cache.Device["CPU"]
    monkeypatch.setattr(cpu_device, "jit_engine", cpu.JitEngine(cpu_device))   # a fresh one, counted
    yield created
    monkeypatch.delenv("TINYJIT_KERNEL_CACHE")
    getenv.cache_clear()
    env.cache_clear()


def test_plan_cache_is_bounded_and_old_engines_are_freed(small_caches, monkeypatch):
    reloads = []
    real_reloaded = cpu.CPUProgram.reloaded
    monkeypatch.setattr(cpu.CPUProgram, "reloaded", lambda self: reloads.append(self.name) or real_reloaded(self))
    hot_input = np.arange(7, dtype=np.float32)
    hot = Tensor(hot_input).realize()
    # 20 kernels no other test compiles (their own constants: a kernel's binary is shared by every size and by
    # every test in this process that computes the same expression)
    for i in range(20):
        x = np.arange(100 + i, dtype=np.float32)
        c = np.float32(3.0078125 + i)
        np.testing.assert_array_equal((Tensor(x) * float(c) - 1.00390625).numpy(), x * c - np.float32(1.00390625))
        # the hot kernel is this test's own too (`hot + 1` shares a program loaded by an earlier test into an engine
        # other tests' kernels keep alive, which is rightly never retired)
        np.testing.assert_array_equal((hot + 1.0009765625).numpy(), hot_input + np.float32(1.0009765625))
        assert len(kernel_cache._plans) <= 8
    assert reloads, "the hot kernel was never moved out of a retired engine"
    gc.collect()
    alive = [(e.loaded, len(e.programs)) for e in small_caches]
    # the current engine, the one before it, and engines still holding one of the 8 cached plans' kernels
    assert len(alive) <= 4, f"engines not freed (loaded, alive programs): {alive}"
    assert sum(programs for _, programs in alive) <= 3 * 8, f"programs outlived their plans: {alive}"


def test_tinyjit_capture_keeps_its_kernels_loaded(small_caches):
    @TinyJit
    def step(a, b):
        return (a * b + 1.0078125).realize()   # (a kernel of its own: see the test above)

    rng = np.random.default_rng(0)
    for _ in range(3):   # capture, then replays
        a, b = rng.standard_normal(33).astype(np.float32), rng.standard_normal(33).astype(np.float32)
        np.testing.assert_allclose(step(Tensor(a), Tensor(b)).numpy(), a * b + 1.0078125, rtol=1e-5, atol=1e-6)
    for i in range(14):   # push the captured kernel's plan out of the cache and its engine into retirement
        x = np.arange(200 + i, dtype=np.float32)   # (a constant of its own each: a new binary each)
        c = np.float32(2.00390625 + i)
        np.testing.assert_array_equal((Tensor(x) - float(c)).numpy(), x - c)
    gc.collect()
    a, b = rng.standard_normal(33).astype(np.float32), rng.standard_normal(33).astype(np.float32)
    np.testing.assert_allclose(step(Tensor(a), Tensor(b)).numpy(), a * b + 1.0078125, rtol=1e-5, atol=1e-6)


def test_bad_kernel_cache_size_is_refused(monkeypatch):
    monkeypatch.setenv("TINYJIT_KERNEL_CACHE", "0")
    getenv.cache_clear()
    env.cache_clear()
    try:
        with pytest.raises(ValueError, match="TINYJIT_KERNEL_CACHE"):
            kernel_cache.kernel_cache_size()
    finally:
        monkeypatch.delenv("TINYJIT_KERNEL_CACHE")
        getenv.cache_clear()
        env.cache_clear()
