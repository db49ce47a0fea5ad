"""Realize: the in-memory kernel cache, compile errors, kernel names and the CPU thread count."""
import numpy as np
import pytest

from codegen.kernel import Kernel, Opt
from runtime import CompileError
from runtime.cpu import launch_threads
from tinyjit import Device, Tensor
from tinyjit import realize as R
from tinyjit.helpers import prod
from tinyjit.kernel_cache import compile_kernel
from tinyjit.schedule import create_schedule


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def graph(x: Tensor, c: float = 1.25) -> Tensor:
    return (x * c + 0.5).relu().sum(1)


def counts() -> tuple[int, int]:
    return R.counters["kernels_compiled"], R.counters["kernels_launched"]


# ---- compiling once ----

def test_the_same_graph_built_again_compiles_nothing():
    xn = rand(8, 16)
    x = Tensor(xn)
    first = graph(x).numpy()
    compiled, launched = counts()
    second = graph(x).numpy()
    assert counts() == (compiled, launched + 1)
    np.testing.assert_allclose(first, second)
    np.testing.assert_allclose(second, np.maximum(xn * 1.25 + 0.5, 0).sum(1), rtol=1e-5)


def test_new_inputs_of_the_same_shape_compile_nothing():
    graph(Tensor(rand(8, 16, seed=1))).realize()
    compiled, launched = counts()
    xn = rand(8, 16, seed=2)
    out = graph(Tensor(xn)).numpy()
    assert counts() == (compiled, launched + 1)
    np.testing.assert_allclose(out, np.maximum(xn * 1.25 + 0.5, 0).sum(1), rtol=1e-5)


def test_a_different_graph_compiles_again():
    x = Tensor(rand(8, 16))
    graph(x).realize()
    compiled, _ = counts()
    graph(x, c=-3.0625).realize()          # another constant: another kernel
    assert counts()[0] == compiled + 1
    graph(Tensor(rand(8, 17)), c=-3.0625).realize()   # another shape: another kernel
    assert counts()[0] == compiled + 2


def test_elementwise_kernels_differing_only_in_size_share_one_binary(monkeypatch):
    """A 1-D elementwise kernel's loop runs over the range its caller passes, so its source is the same for every
    size: one compile, one loaded program (Adam's update of each parameter)."""
    import runtime.cpu as cpu
    compiled_sources = []
    compile_ir = cpu.CPUDevice.compile_ir
    monkeypatch.setattr(cpu.CPUDevice, "compile_ir", lambda self, src: compiled_sources.append(src) or
                        compile_ir(self, src))
    kernels, values = [], {}
    for size in (61, 1723, 4099):   # sizes no other test compiles
        x = Tensor(rand(size)).realize()
        (item,) = create_schedule([(x * -2.375 + 0.0625).node])
        kernels.append(compile_kernel("CPU", item.ast))
        values[size] = ((x * -2.375 + 0.0625).numpy(), x.numpy() * np.float32(-2.375) + np.float32(0.0625))
    assert len({k.symbol for k in kernels}) == 1 and len({id(k.program) for k in kernels}) == 1
    assert [k.name for k in kernels] == ["E_61", "E_1723", "E_4099"]     # readable names keep their sizes
    assert len(compiled_sources) <= 1                                      # (0 when the disk cache had it)
    for size, (got, want) in values.items():
        np.testing.assert_allclose(got, want, rtol=1e-6)


# ---- compile errors ----

BAD_IR = """define void @broken(ptr %p) {
entry:
  %x = add i32 %never_defined, 1
  ret void
}
"""


@pytest.mark.parametrize("method", ["compile", "compile_ir"])
def test_bad_llvm_ir_raises_compile_error_with_source_and_llvm_message(method):
    with pytest.raises(CompileError) as info:
        getattr(Device["CPU"], method)(BAD_IR)
    message = str(info.value)
    assert "%x = add i32 %never_defined, 1" in message            # the source, with line numbers
    assert "3 |" in message
    assert "never_defined" in info.value.log and "error" in info.value.log.lower()   # llvmlite's message
    assert info.value.log in message
    assert info.value.src == BAD_IR


def test_a_kernel_that_fails_to_compile_raises_at_the_users_call(monkeypatch):
    renderer = Device.renderer("CPU")
    render = renderer.render

    def broken_render(name, uops):
        symbol, src = render(name, uops)
        return symbol, src.replace("ret void", "ret i32 %undefined_here", 1)

    monkeypatch.setattr(renderer, "render", broken_render)
    out = Tensor(rand(3, 5)) * 7.75 - 0.125   # a kernel no other test compiles
    with pytest.raises(CompileError) as info:
        out.numpy()
    assert "kernel E_15" in str(info.value) and "define void @E_" in str(info.value)
    assert "undefined_here" in str(info.value)


# ---- names and threads ----

def kernel_for(t: Tensor) -> Kernel:
    (item,) = create_schedule([t.node])
    return Kernel(item.ast)


def test_kernel_names_say_what_they_do():
    x = Tensor(rand(64, 128))
    assert kernel_for(x * 2).name() == "E_8192"
    assert kernel_for(x.sum(1)).name() == "r_64_128"
    assert kernel_for(x.permute(1, 0).sum(0)).name() == "r_64_128"
    k = kernel_for(x.sum(1))
    k.apply_opt(Opt("UNROLL", 0, 4))
    assert k.name() == "r_64_32_x4"
    k = kernel_for(x * 2)
    k.apply_opt(Opt("UPCAST", 0, 4))
    assert k.name() == "E_2048_u4"


def test_compiled_kernel_reports_the_threads_the_runtime_uses(monkeypatch):
    cpu = Device["CPU"]
    xn = rand(512, 256)
    big = Tensor(xn) * 1.5 - 2.25
    (item,) = create_schedule([big.node])
    kernel = compile_kernel("CPU", item.ast)
    assert kernel.threads == min(cpu.threads, kernel.global_size[0])
    if cpu.native_pool is not None:   # the ranges the runtime really splits the launch into
        split = []
        launcher = cpu.native_pool.launcher
        monkeypatch.setattr(cpu.native_pool, "launcher", lambda *a: split.append(a) or launcher(*a))
        np.testing.assert_allclose(big.numpy(), xn * 1.5 - 2.25, rtol=1e-6, atol=1e-6)   # fma
        (_, _, n, threads), = split
        chunk = -(-n // min(threads, cpu.native_pool.workers + 1))
        assert -(-n // chunk) == kernel.threads
    elif cpu.pool is not None:   # count the ranges the runtime hands to its Python pool
        submitted = []
        submit = cpu.pool.submit
        monkeypatch.setattr(cpu.pool, "submit", lambda *a: submitted.append(a) or submit(*a))
        np.testing.assert_allclose(big.numpy(), xn * 1.5 - 2.25, rtol=1e-6, atol=1e-6)   # fma
        assert len(submitted) + 1 == kernel.threads   # the calling thread runs the first range itself
    (item,) = create_schedule([(Tensor(rand(4, 4)) * 1.5 - 2.25).node])
    assert compile_kernel("CPU", item.ast).threads == 1


@pytest.mark.parametrize("outer, pool, expected", [(5, 4, 3), (64, 2, 2), (1, 8, 1), (1000, 8, 8), (9, 8, 5)])
def test_thread_count_matches_the_runtime_split(outer, pool, expected):
    k = kernel_for(Tensor(rand(256, 256)) * 2)   # enough work to be threaded
    assert launch_threads(outer, prod(k.full_shape), pool) == expected


def test_describe_kernel_lists_axes_and_opts():
    k = kernel_for(Tensor(rand(64, 128)).sum(1))
    k.apply_opt(Opt("UNROLL", 0, 4))
    assert k.describe() == "global 64 | reduce 32 | upcast 4; opts: UNROLL axis 0 by 4"


# ---- constants in the kernel cache ----

def test_negative_zero_is_not_served_the_kernel_of_zero():
    x = Tensor(np.array([1.0, -2.0], dtype=np.float32))
    assert np.signbit((x * 0.0).numpy()).tolist() == [False, True]
    assert np.signbit((x * -0.0).numpy()).tolist() == [True, False]
    assert np.signbit(Tensor.full((2,), -0.0).numpy()).all()
    assert not np.signbit(Tensor.full((2,), 0.0).numpy()).any()
    assert np.signbit((x > 0).where(0.0, -0.0).numpy()).tolist() == [False, True]   # both in one kernel


def test_a_nan_constant_reuses_its_kernel():
    x = Tensor(np.array([1.0, 2.0], dtype=np.float32))
    assert np.isnan((x * float("nan")).numpy()).all()
    compiled, _ = counts()
    assert np.isnan((x * float("nan")).numpy()).all()
    assert counts()[0] == compiled
