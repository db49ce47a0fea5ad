"""The code generator's one entry point: a scheduled kernel's AST, a renderer and optimizations -> the launches
that compute it (`build_plan`).

    AST ──► Kernel (codegen/kernel.py) ──► optimizations: the given ones, or the hand-coded heuristics
        (codegen/optimizer.py, codegen/cpu_opts.py), applied by Kernel.apply_opt
        ──► linear program: renderer.linearize (codegen/linearizer.py; codegen/gpu.py on GPUs)
        ──► source: renderer.render (codegen/llvmir.py; codegen/cstyle.py with opencl.py, cuda.py)
        ──► binary: the engine's `compile_source` callback

On the CPU, PACK, DEPAD and STAGE (codegen/copies.py) put copy kernels around the kernel, so a plan is a list of
launches sharing scratch buffers. Compiling (the runtime) and caching (tinyjit/kernel_cache.py) are the engine's:
it passes `compile_source` in, and nothing here imports either.
"""
from __future__ import annotations

from typing import Callable, Optional

from tinyjit.helpers import debug_level, prod
from tinyjit.ops import AstNode

from codegen.kernel import Kernel
from codegen.cpu_opts import short_inner_axis_plan
from codegen.optimizer import optimize
from codegen.opts import CPU_ONLY, GPU_ONLY, KernelOptError, Opt
from codegen.plan import BuiltPlan, LaunchArg, LaunchSpec  # noqa: F401  (LaunchArg: importable from here too)
from codegen.uops import print_program




def build_plan(ast: AstNode, renderer, compile_source: Callable[[str, str], bytes],
               opts: Optional[list[Opt]] = None, threads: int = 1) -> BuiltPlan:
    """The launches computing `ast` (a STORE of buffer 0) with `renderer`'s language. `opts` are applied in order
    (KernelOptError when one does not apply, or is of a kind the renderer's devices do not have); None lets the
    hand-coded heuristics choose, for a device splitting a CPU kernel over `threads` threads.
    `compile_source(source, name)` turns each kernel's source into its binary, in launch order."""
    k = Kernel(ast)
    if opts is None:
        optimize(k, renderer, threads)
    else:
        for opt in opts:
            if opt.kind in (CPU_ONLY if renderer.gpu else GPU_ONLY):
                raise KernelOptError(f"{opt.kind} is not an optimization of {renderer.device} kernels")
            k.apply_opt(opt)
    copies = k.copies
    launches = [_launch(_copy_kernel(copy, renderer), copy, args, renderer, compile_source)
                for copy, args in copies.before]
    launches.append(_launch(k, ast, tuple(copies.args), renderer, compile_source))
    launches += [_launch(_copy_kernel(copy, renderer), copy, args, renderer, compile_source)
                 for copy, args in copies.after]
    return BuiltPlan(launches, list(copies.scratch), len(copies.before))


def _copy_kernel(copy: AstNode, renderer) -> Kernel:
    """The kernel of a copy made around a CPU kernel (a packed operand, a staged output). A packed operand is laid
    out in the register block's tiles (4 rows of a matmul's operand side by side), so its innermost loop is short,
    and it may compute the expression the operand was fused from (a gelu gradient): its loops are unrolled into
    blocks that LLVM vectorizes (cpu_opts.short_inner_axis_plan) whatever optimizations the main kernel got."""
    k = Kernel(copy)
    if not renderer.gpu:
        for opt in short_inner_axis_plan(k):
            k.apply_opt(opt)
    return k


def _launch(k: Kernel, ast: AstNode, args: tuple, renderer, compile_source: Callable[[str, str], bytes]) -> LaunchSpec:
    """Linearize, render and compile one kernel; DEBUG>=3 prints its AST, 4 its source, 5 its linear program."""
    program = renderer.linearize(k)
    symbol, source = renderer.render(program.name, program.uops)
    level = debug_level()
    if level >= 3:
        print(f"--- kernel {program.name} on {renderer.device}: {k.describe()}\n{ast.pretty()}")
    if level >= 5:
        print(f"--- linear program of {program.name}\n{print_program(program.uops)}")
    if level >= 4:
        print(f"--- source of {program.name}\n{source}")
    return LaunchSpec(program.name, symbol, source, compile_source(source, program.name), program.global_size,
                      program.local_size, program.flops, prod(k.full_shape), args)
