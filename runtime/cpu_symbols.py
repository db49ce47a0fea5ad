"""What a compiled CPU kernel may call outside itself, and where each such symbol comes from.

LLVM lowers some IR to calls into runtime libraries: libm for `frem` (fmodf, fmod) and the sin/cos intrinsics,
libc for loops it recognizes as memset/memcpy, and compiler-rt builtins for half-precision conversions it cannot
do in one instruction (`__truncdfhf2` always; `__extendhfsf2`/`__truncsfhf2` on CPUs without F16C). MCJIT looks an
undefined symbol up in the process, and when the lookup fails the kernel calls address 0 and the process dies with
a segmentation fault. Whether a builtin is found depended on which shared libraries happened to be loaded (recent
libgcc_s has the half conversions, and importing torch loads it), so a test could pass on one machine and crash
on another.

Here every undefined symbol of a kernel's object file (read from its ELF symbol table) must be one of a fixed
table, and is registered with MCJIT explicitly (`llvm.add_symbol`) before the object is loaded:
- the half-precision conversion builtins are implemented below in LLVM IR with integer arithmetic, so they are
  the same on every machine and never call anything themselves; they are compiled once per process;
- the C library functions are looked up in libm and libc with ctypes;
- the 128-bit integer division helpers (tinyjit emits no i128 today) come from libgcc_s where it is installed.
Any other symbol is a CompileError naming it, raised before the object is cached or reaches MCJIT.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import struct
import threading

from runtime import CompileError

# the C library functions LLVM may emit calls to for the IR of codegen/llvmir.py (and llvm_ops.py, llvm_math.py)
LIBC_FUNCTIONS = frozenset({
    "memset", "memcpy", "memmove",                       # loop idioms
    "fmodf", "fmod",                                     # frem
    "sinf", "sin", "cosf", "cos", "sincosf", "sincos",   # llvm.sin / llvm.cos (sin and cos of one x merge)
    "tanf", "tan", "expf", "exp", "exp2f", "exp2", "logf", "log", "log2f", "log2", "powf", "pow",
    "sqrtf", "sqrt", "fmaf", "fma", "ldexpf", "ldexp",   # intrinsics without an instruction on some CPUs
    "rintf", "rint", "nearbyintf", "nearbyint", "floorf", "floor", "ceilf", "ceil", "truncf", "trunc",
    "roundf", "round", "roundevenf", "roundeven", "fminf", "fmin", "fmaxf", "fmax",
    "syscall",                                           # the native thread pool's futex (runtime/cpu_pool.py)
})
# 128-bit integer division and remainder (libgcc_s / compiler-rt)
LIBGCC_FUNCTIONS = frozenset({"__divti3", "__udivti3", "__modti3", "__umodti3"})

# half <-> float/double conversions, in LLVM IR on the bits: exact, round to nearest even, NaN stays NaN (quiet, with
# the top payload bits), overflow gives inf, subnormals in and out.
BUILTINS_IR = r"""
define internal i32 @tj_half_bits_to_float_bits(i16 %h) {
  %b = zext i16 %h to i32
  %sign16 = and i32 %b, 32768
  %sign = shl i32 %sign16, 16
  %e.shifted = lshr i32 %b, 10
  %e = and i32 %e.shifted, 31
  %m = and i32 %b, 1023
  %m13 = shl i32 %m, 13
  %e.rebiased = add i32 %e, 112
  %e.bits = shl i32 %e.rebiased, 23
  %normal = or i32 %e.bits, %m13
  %m.nonzero = icmp ne i32 %m, 0
  %quiet = select i1 %m.nonzero, i32 4194304, i32 0
  %special.inf = or i32 %m13, 2139095040
  %special = or i32 %special.inf, %quiet
  %m.float = uitofp i32 %m to float
  %sub.float = fmul float %m.float, 0x3E70000000000000
  %subnormal = bitcast float %sub.float to i32
  %is.special = icmp eq i32 %e, 31
  %is.sub = icmp eq i32 %e, 0
  %r1 = select i1 %is.special, i32 %special, i32 %normal
  %r2 = select i1 %is.sub, i32 %subnormal, i32 %r1
  %r = or i32 %r2, %sign
  ret i32 %r
}

define float @__extendhfsf2(half %x) {
  %h = bitcast half %x to i16
  %bits = call i32 @tj_half_bits_to_float_bits(i16 %h)
  %f = bitcast i32 %bits to float
  ret float %f
}

define double @__extendhfdf2(half %x) {
  %h = bitcast half %x to i16
  %bits = call i32 @tj_half_bits_to_float_bits(i16 %h)
  %f = bitcast i32 %bits to float
  %d = fpext float %f to double
  ret double %d
}
"""


def _truncate_to_half_ir(name: str, source: str) -> str:
    """LLVM IR of `half name(source x)` for source float or double: the nearest half (ties to even), a NaN quiet
    with the top bits of its payload, overflow to inf, subnormals exact. Integer arithmetic on the bits, written once
    for both widths (only the field sizes and the constants differ)."""
    bits, exponent_bits = {"float": (32, 8), "double": (64, 11)}[source]
    mantissa_bits = bits - 1 - exponent_bits
    drop = mantissa_bits - 10                         # mantissa bits a half does not keep
    i = f"i{bits}"
    exponent_bias = (1 << (exponent_bits - 1)) - 1

    def bits_of(value: float) -> int:
        packed = struct.pack("<f", value) if source == "float" else struct.pack("<d", value)
        return int.from_bytes(packed, "little")

    def llvm_float(value: float) -> str:   # LLVM spells a float constant as the bits of the same double
        return "0x%016X" % int.from_bytes(struct.pack("<d", value), "little")
    return f"""
define half @{name}({source} %x) {{
  %u = bitcast {source} %x to {i}
  %sign.shifted = lshr {i} %u, {bits - 16}
  %sign = and {i} %sign.shifted, 32768
  %a = and {i} %u, {(1 << (bits - 1)) - 1}
  ; NaN: quiet, keeping the top payload bits
  %payload.shifted = lshr {i} %a, {drop}
  %payload = and {i} %payload.shifted, 1023
  %nan = or {i} %payload, 32256
  ; normal: add half an ulp of half (ties to even) and drop the bits; a carry moves into the exponent
  %lsb.shifted = lshr {i} %a, {drop}
  %lsb = and {i} %lsb.shifted, 1
  %bias = add {i} %lsb, {(1 << (drop - 1)) - 1}
  %rounded = add {i} %a, %bias
  %rounded.shifted = lshr {i} %rounded, {drop}
  %normal = sub {i} %rounded.shifted, {(exponent_bias - 15) << 10}
  ; subnormal: |x| * 2^24 rounded to an integer (ties to even) by adding and subtracting 2^{mantissa_bits}
  %abs = bitcast {i} %a to {source}
  %scaled = fmul {source} %abs, {llvm_float(2.0 ** 24)}
  %shifted = fadd {source} %scaled, {llvm_float(2.0 ** mantissa_bits)}
  %integral = fsub {source} %shifted, {llvm_float(2.0 ** mantissa_bits)}
  %subnormal = fptoui {source} %integral to {i}
  %is.nan = icmp ugt {i} %a, {bits_of(math.inf)}
  %is.inf = icmp uge {i} %a, {bits_of(65520.0)}
  %is.normal = icmp uge {i} %a, {bits_of(2.0 ** -14)}
  %r1 = select i1 %is.normal, {i} %normal, {i} %subnormal
  %r2 = select i1 %is.inf, {i} 31744, {i} %r1
  %r3 = select i1 %is.nan, {i} %nan, {i} %r2
  %r = or {i} %r3, %sign
  %h = trunc {i} %r to i16
  %out = bitcast i16 %h to half
  ret half %out
}}
"""


BUILTINS_IR += _truncate_to_half_ir("__truncsfhf2", "float") + _truncate_to_half_ir("__truncdfhf2", "double")
BUILTIN_FUNCTIONS = frozenset({"__extendhfsf2", "__extendhfdf2", "__truncsfhf2", "__truncdfhf2"})
KNOWN = LIBC_FUNCTIONS | LIBGCC_FUNCTIONS | BUILTIN_FUNCTIONS


def undefined_symbols(obj: bytes) -> list[str] | None:
    """Names of the undefined symbols in the symbol table of an ELF object file (what it needs from outside), or
    None when `obj` is not ELF (then nothing can be checked here)."""
    if obj[:4] != b"\x7fELF" or obj[4] != 2:   # ELF64 only (x86-64, aarch64, ...)
        return None
    e = "<" if obj[5] == 1 else ">"
    (section_offset,) = struct.unpack_from(e + "Q", obj, 0x28)
    entry_size, count = struct.unpack_from(e + "HH", obj, 0x3A)
    # section header: name, type, flags, addr, offset, size, link, info, addralign, entsize
    sections = [struct.unpack_from(e + "IIQQQQIIQQ", obj, section_offset + i * entry_size) for i in range(count)]
    names = []
    for _, kind, _, _, offset, size, link, _, _, symbol_size in sections:
        if kind != 2:   # SHT_SYMTAB
            continue
        strings = sections[link][4]
        for at in range(offset, offset + size, symbol_size or 24):
            name, _, _, section_index, _, _ = struct.unpack_from(e + "IBBHQQ", obj, at)
            if section_index == 0 and name:   # SHN_UNDEF, and not the null symbol
                end = obj.index(b"\0", strings + name)
                names.append(obj[strings + name:end].decode())
    return names


def check(obj: bytes, src: str | None = None) -> list[str]:
    """The undefined symbols of a kernel object; CompileError (naming them) when one is not in the known table."""
    names = undefined_symbols(obj) or []
    unknown = sorted(set(names) - KNOWN)
    if unknown:
        raise CompileError(f"the compiled CPU kernel calls {', '.join(unknown)}, which tinyjit does not provide "
                           f"(known external symbols: runtime/cpu_symbols.py)", src)
    return names


_lock = threading.Lock()
_provided: set[str] = set()
_builtins: dict[str, int] = {}
_builtin_engine = None   # kept for the life of the process: the registered addresses point into it


def provide(names: list[str]) -> None:
    """Register every symbol in `names` with MCJIT (once per process); CompileError naming those that cannot be
    found. Thread-safe."""
    import llvmlite.binding as llvm
    with _lock:
        missing = []
        for name in sorted(set(names) - _provided):
            address = _address(name)
            if not address:
                missing.append(name)
                continue
            llvm.add_symbol(name, address)
            _provided.add(name)
    if missing:
        raise CompileError(f"the compiled CPU kernel calls {', '.join(missing)}, which cannot be found on this "
                           f"machine (runtime/cpu_symbols.py)")


def _address(name: str) -> int:
    if name in BUILTIN_FUNCTIONS:
        return _builtin_addresses()[name]
    if name in LIBC_FUNCTIONS:
        return _library_address(("m", "c"), name)
    if name in LIBGCC_FUNCTIONS:
        return _library_address(("gcc_s",), name)
    return 0


def _builtin_addresses() -> dict[str, int]:
    """Compile BUILTINS_IR (once) for the generic CPU of this architecture: it is integer code, right on any model."""
    global _builtin_engine
    if not _builtins:
        import llvmlite.binding as llvm
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        module = llvm.parse_assembly(BUILTINS_IR)
        module.verify()
        target_machine = llvm.Target.from_default_triple().create_target_machine(opt=2, codemodel="jitdefault")
        _builtin_engine = llvm.create_mcjit_compiler(module, target_machine)
        _builtin_engine.finalize_object()
        _builtins.update({name: _builtin_engine.get_function_address(name) for name in BUILTIN_FUNCTIONS})
    return _builtins


_libraries: dict[str, object] = {}


def _library_address(libraries: tuple[str, ...], name: str) -> int:
    """The address of C function `name` in the first of `libraries` (short names: "m", "c", "gcc_s") having it."""
    for lib in libraries:
        if lib not in _libraries:
            path = ctypes.util.find_library(lib)
            try:
                _libraries[lib] = ctypes.CDLL(path) if path else None
            except OSError:
                _libraries[lib] = None
        handle = _libraries[lib]
        fn = getattr(handle, name, None) if handle is not None else None
        if fn is not None:
            return ctypes.cast(fn, ctypes.c_void_p).value or 0
    return 0
