"""What CPU kernels call outside themselves (runtime/cpu_symbols.py): every such symbol is provided explicitly, the
half-precision conversion builtins are exact, and an unknown symbol is a CompileError naming it, never a crash."""
import numpy as np
import pytest

from runtime import CompileError, cpu_symbols
from tinyjit import Tensor, dtypes
from tinyjit.device import Device

# a kernel with the CPU runtime's calling convention: out[i] = OP(in[i]) for i in [start, end)
_CONVERT_IR = """
define void @conv(ptr noalias %out, ptr noalias readonly %in, i32 %start, i32 %end) {
entry:
  br label %loop
loop:
  %i = phi i32 [ %start, %entry ], [ %next, %body ]
  %c = icmp slt i32 %i, %end
  br i1 %c, label %body, label %exit
body:
  %pi = getelementptr inbounds SRC, ptr %in, i32 %i
  %x = load SRC, ptr %pi
  %y = OP
  %po = getelementptr inbounds DST, ptr %out, i32 %i
  store DST %y, ptr %po
  %next = add nsw i32 %i, 1
  br label %loop
exit:
  ret void
}
define void @conv_thunk(ptr %args, i32 %start, i32 %end) {
entry:
  %a0p = getelementptr ptr, ptr %args, i64 0
  %a0 = load ptr, ptr %a0p
  %a1p = getelementptr ptr, ptr %args, i64 1
  %a1 = load ptr, ptr %a1p
  call void @conv(ptr %a0, ptr %a1, i32 %start, i32 %end)
  ret void
}
"""
_LLVM_TYPE = {np.float16: "half", np.float32: "float", np.float64: "double", np.int64: "i64"}


def _run_ir(device, op: str, x: np.ndarray, out_dtype, extra: str = "") -> np.ndarray:
    src = _CONVERT_IR.replace("SRC", _LLVM_TYPE[x.dtype.type]).replace("DST", _LLVM_TYPE[out_dtype]).replace("OP", op)
    program = device.program("conv", device.compile_ir(src + extra))
    out = np.empty(len(x), out_dtype)
    program(out, x, global_size=(len(x),))
    return out


def _conversion_inputs() -> dict:
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    rng = np.random.default_rng(0)
    # every half, the midpoints between neighbouring halves and a hair either side of them (ties to even), values
    # beyond the half range and deep in its subnormals, and random bit patterns
    h64 = np.sort(halves[np.isfinite(halves)].astype(np.float64))
    mid = (h64[1:] + h64[:-1]) / 2
    special = [65519.99, 65520.0, 1e300, -1e300, np.inf, -np.inf, np.nan, 2.0 ** -25, 2.0 ** -26, 5e-324, -0.0]
    doubles = np.concatenate([h64, mid, np.nextafter(mid, np.inf), np.nextafter(mid, -np.inf), special,
                              rng.integers(0, 1 << 64, 100000, dtype=np.uint64).view(np.float64)])
    with np.errstate(over="ignore", invalid="ignore"):
        floats = np.concatenate([doubles.astype(np.float32),
                                 rng.integers(0, 1 << 32, 100000, dtype=np.uint64).astype(np.uint32).view(np.float32)])
    return {"half": halves, "float": floats, "double": doubles}


def _same(got: np.ndarray, want: np.ndarray) -> None:
    """Equal values, signs of zero included, NaN where NaN."""
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan], want[~nan])
    np.testing.assert_array_equal(np.signbit(got[~nan]), np.signbit(want[~nan]))


def test_float64_to_half_cast_runs_from_an_empty_cache():
    # was a call to the unresolved __truncdfhf2: a segmentation fault unless some library happened to define it
    x = np.array([1.0, 1 / 3, 65519.99, 65520.0, 2.0 ** -25 * 3, -0.0, np.nan, -np.inf])
    with np.errstate(over="ignore"):
        _same(Tensor(x).cast(dtypes.half).numpy(), x.astype(np.float16))


def test_half_builtins_are_exact_on_a_cpu_without_f16c():
    """Without F16C every half conversion is a builtin call: __extendhfsf2, __extendhfdf2 (or extend through float),
    __truncsfhf2, __truncdfhf2, all against numpy's conversions over every half and the rounding boundaries."""
    from runtime.cpu import CPUDevice
    device = CPUDevice()
    device.features = ",".join(f for f in device.features.split(",") if "f16c" not in f and "avx512" not in f)
    device.features += ",-f16c"
    inputs = _conversion_inputs()
    with np.errstate(over="ignore", invalid="ignore"):
        for src, dst, op in [(np.float16, np.float32, "fpext"), (np.float16, np.float64, "fpext"),
                             (np.float32, np.float16, "fptrunc"), (np.float64, np.float16, "fptrunc")]:
            x = inputs[_LLVM_TYPE[src]]
            got = _run_ir(device, f"{op} {_LLVM_TYPE[src]} %x to {_LLVM_TYPE[dst]}", x, dst)
            _same(got, x.astype(dst))


def test_kernel_objects_list_the_library_functions_they_call():
    device = Device["CPU"]
    src = _CONVERT_IR.replace("SRC", "float").replace("DST", "float").replace("OP", "frem float %x, 3.0")
    assert "fmodf" in cpu_symbols.undefined_symbols(device.compile_ir(src))
    x = np.array([1e10, -7.5, 3.0, np.inf], np.float32)
    with np.errstate(invalid="ignore"):
        _same(_run_ir(device, "frem float %x, 3.0", x, np.float32), np.fmod(x, np.float32(3)))


def test_an_unknown_symbol_is_a_compile_error_naming_it():
    device = Device["CPU"]
    src = _CONVERT_IR.replace("SRC", "float").replace("DST", "float").replace(
        "OP", "call float @tj_no_such_function(float %x)") + "declare float @tj_no_such_function(float)\n"
    with pytest.raises(CompileError, match="tj_no_such_function"):
        device.compile_ir(src)
    # a binary from elsewhere (an old disk cache) is checked when it is loaded, before MCJIT sees it
    binary = device._thread_llvm()[1].emit_object(device._optimized_module(src))
    with pytest.raises(CompileError, match="tj_no_such_function"):
        device.program("conv", binary)


def test_128_bit_division_is_provided_or_named():
    """tinyjit emits no i128 today; if LLVM ever calls __divti3 it comes from libgcc_s, or is a CompileError."""
    device = Device["CPU"]
    # the divisor is loaded from a global so that LLVM cannot turn the division into a multiplication
    src = _CONVERT_IR.replace("SRC", "i64").replace("DST", "i64").replace(
        "%y = OP", "%w = sext i64 %x to i128\n  %d = load volatile i128, ptr @divisor\n  %q = sdiv i128 %w, %d\n"
                   "  %y = trunc i128 %q to i64") + "@divisor = global i128 7\n"
    binary = device.compile_ir(src)
    assert "__divti3" in cpu_symbols.undefined_symbols(binary)
    try:
        program = device.program("conv", binary)
    except CompileError as e:   # no libgcc_s on this machine
        assert "__divti3" in str(e)
        return
    x = np.array([-(2 ** 62), 12345678901234, -13, 13, 0], np.int64)
    out = np.empty(len(x), np.int64)
    program(out, x, global_size=(len(x),))
    np.testing.assert_array_equal(out, [-(2 ** 62) // 7 + 1, 12345678901234 // 7, -1, 1, 0])   # truncating
