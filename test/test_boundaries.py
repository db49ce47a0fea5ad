"""The engine's boundaries: codegen builds plans without the runtime or the kernel cache (one entry point,
codegen/pipeline.py), one enum of optimization kinds applied by one method, BEAM driven by the engine's timing
callback, every backend implementing the runtime's device interface, typed schedule items, TinyJit's capture as a
context manager, and the reduce identity."""
import ast as python_ast
import importlib
import math
from pathlib import Path

import numpy as np
import pytest

import runtime
from codegen import search
from codegen.copies import LaunchArg
from codegen.kernel import Kernel
from codegen.llvmir import LLVMRenderer
from codegen.opencl import OpenCLRenderer
from codegen.opts import KernelOptError, Opt, OptKind
from codegen.pipeline import build_plan
from tinyjit import Tensor, dtypes
from tinyjit import capture as capture_module
from tinyjit.capture import StepKind, capture
from tinyjit.device import BACKENDS, Buffer
from tinyjit.kernel_cache import compile_plan
from tinyjit.ops import Op, reduce_identity
from tinyjit.realize import run_schedule
from tinyjit.schedule import ItemKind, create_schedule

ROOT = Path(__file__).resolve().parent.parent


def _ast(t: Tensor):
    (item,) = create_schedule([t.node])
    return item.ast


def test_opt_kinds_are_one_enum():
    assert Opt("UPCAST", 0, 4).kind is OptKind.UPCAST and Opt("UPCAST", 0, 4) == Opt(OptKind.UPCAST, 0, 4)
    assert f"{OptKind.PACK}" == "PACK"
    with pytest.raises(ValueError, match="BOGUS"):
        Opt("BOGUS", 0, 1)


def test_kernel_applies_every_kind():
    """CPU and GPU kinds go through the same Kernel.apply_opt (which device a kind is for is the pipeline's
    question); a kind that does not fit the kernel raises KernelOptError."""
    x = Tensor(np.ones((8, 6, 16), np.float32))
    k = Kernel(_ast((x.permute(1, 0, 2) * 2).sum(2)))
    for opt in [Opt("SWAP", 0, 1), Opt("GROUP", 0, 4), Opt("UPCAST", 0, 2), Opt("MERGE", 0, 0)]:
        k.apply_opt(opt)
    assert k.applied == [Opt("SWAP", 0, 1), Opt("GROUP", 0, 4), Opt("UPCAST", 0, 2), Opt("MERGE", 0, 0)]
    with pytest.raises(KernelOptError, match="UNROLL"):
        k.apply_opt(Opt("UNROLL", 5, 2))


@pytest.mark.parametrize("renderer, opt", [(LLVMRenderer(), Opt("GROUP", 0, 4)), (OpenCLRenderer(), Opt("PACK", 0, 0)),
                                           (OpenCLRenderer(), Opt("SWAP", 0, 1))])
def test_pipeline_refuses_kinds_of_other_devices(renderer, opt):
    a = _ast(Tensor(np.ones((8, 16), np.float32)) @ Tensor(np.ones((16, 8), np.float32)))
    with pytest.raises(KernelOptError, match=f"{opt.kind} is not an optimization of {renderer.device} kernels"):
        build_plan(a, renderer, lambda source, name: b"", [opt])


def test_pipeline_builds_a_plan_without_runtime():
    """A matmul large enough for packing: the plan has copy launches around the kernel, bound to scratch buffers
    by typed arguments; codegen only called the compile callback it was given, once per launch, in order."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 96)).astype(np.float32), rng.standard_normal((96, 64)).astype(np.float32)
    a_t, b_t = Tensor(a).realize(), Tensor(b).realize()
    out = a_t @ b_t.T.contiguous().T   # B read across its rows: worth packing
    items = create_schedule([out.node])
    compiled = []
    plan = build_plan(items[-1].ast, LLVMRenderer(), lambda source, name: compiled.append(name) or source.encode(),
                      None, threads=2)
    assert [spec.name for spec in plan.launches] == compiled and len(compiled) >= 2
    assert all(isinstance(arg, LaunchArg) for spec in plan.launches for arg in spec.args)
    assert any(arg.scratch for spec in plan.launches for arg in spec.args) and plan.scratch
    assert all(spec.binary == spec.source.encode() for spec in plan.launches)
    # the same plan through the kernel cache, bound to buffers and run, matches numpy
    run_schedule(items[:-1])
    item = items[-1]
    output = Buffer("CPU", item.output.size, item.output.dtype)
    launches = compile_plan("CPU", item.ast).bind([output] + [i.buffer for i in item.inputs])
    assert len(launches) == len(plan.launches)
    for kernel, buffers in launches:
        kernel(buffers)
    np.testing.assert_allclose(output.numpy().reshape(64, 64), a @ b, rtol=1e-4, atol=1e-4)


def test_beam_search_is_driven_by_the_timing_callback():
    """The search times only through the callback, at most `threads` candidates per call, and picks what the
    callback says is fastest."""
    a = _ast(Tensor(np.ones((64, 64), np.float32)).sum(1))
    wanted = (Opt("UPCAST", 0, 4),)
    calls = []

    def time_candidates(candidates, runs, give_up_after):
        calls.append((len(candidates), runs, give_up_after))
        return [1.0 if opts == wanted else 2.0 if opts == () else 3.0 for opts in candidates]
    assert search.beam_search(a, 2, 3, time_candidates) == list(wanted)
    assert all(n <= 3 and runs == search.TIMING_RUNS for n, runs, _ in calls)
    assert calls[0][2] == math.inf and any(give_up == search.GIVE_UP_FACTOR * 1.0 for _, _, give_up in calls)


def _imports(path: Path) -> set[str]:
    tree = python_ast.parse(path.read_text())
    names = set()
    for node in python_ast.walk(tree):   # function-local imports too
        if isinstance(node, python_ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, python_ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_layers_import_only_what_they_may():
    """codegen sees no runtime, no kernel cache and no Tensor; runtime imports nothing of tinyjit or codegen."""
    engine = ("tinyjit.kernel_cache", "tinyjit.realize", "tinyjit.device", "tinyjit.tensor", "tinyjit.schedule",
              "tinyjit.jit")
    for path in sorted((ROOT / "codegen").glob("*.py")):
        bad = {name for name in _imports(path) if name.split(".")[0] == "runtime" or name.startswith(engine)}
        assert not bad, f"{path.name} imports {bad}"
    for path in sorted((ROOT / "runtime").glob("*.py")):
        bad = {name for name in _imports(path) if name.split(".")[0] in ("tinyjit", "codegen")}
        assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_backend_implements_the_device_interface(name):
    module_name, class_name, _, _ = BACKENDS[name]
    module = importlib.import_module(module_name)
    device = getattr(module, class_name)
    assert issubclass(device, runtime.Device) and not device.__abstractmethods__
    programs = [c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__ and
                issubclass(c, runtime.Program)]
    allocators = [c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__ and
                  issubclass(c, runtime.Allocator)]
    assert programs and allocators
    assert not any(c.__abstractmethods__ for c in programs + allocators)


def test_schedule_item_kinds_are_an_enum():
    x = Tensor(np.arange(6, dtype=np.float32)).realize()
    (kernel,) = create_schedule([(x + 1).node])
    (empty,) = create_schedule([Tensor.empty(3).node])
    assert kernel.kind is ItemKind.KERNEL and kernel.kind == "kernel" and f"{kernel.kind:<7}|" == "kernel |"
    assert empty.kind is ItemKind.EMPTY


def test_capture_records_the_steps_of_its_block():
    """A capture records the kernels its thread launches; an inner capture records its own, not the outer's."""
    x = Tensor(np.arange(6, dtype=np.float32)).realize()
    with capture() as outer:
        (x * 2).realize()
        with capture() as inner:
            (x + 1).realize()
        assert capture_module.current() is outer
    assert capture_module.current() is None
    assert [step.kind for step in outer.steps] == [StepKind.KERNEL] and len(inner.steps) == 1
    out = Buffer("CPU", 6, x.dtype)
    inner.steps[0].run([out, x.node.buffer])
    np.testing.assert_array_equal(out.numpy(), np.arange(6) + 1)


@pytest.mark.parametrize("dtype", ["bool", "int8", "int32", "int64", "uint8", "uint64", "float16", "float32"])
def test_reduce_identity(dtype):
    dt = dtypes.from_np(np.dtype(dtype))
    assert reduce_identity(Op.SUM, dt) == 0 and type(reduce_identity(Op.SUM, dt)) is type(np.zeros(1, dtype)[0].item())
    smallest = False if dtype == "bool" else np.iinfo(dtype).min if dt.is_int else -math.inf
    assert reduce_identity(Op.RMAX, dt) == smallest
