"""Hand-coded kernel optimizations: choose upcasts/unrolls for a Kernel before it is linearized."""
from __future__ import annotations

from codegen.kernel import Kernel, KernelOptError, Opt


def optimize(k: Kernel, renderer) -> None:
    """Apply the heuristics for this renderer. Never changes results, only the loop structure."""
    if renderer.gpu:
        return
    # unroll a short innermost reduce and upcast the innermost global axis a little: more independent work
    # per iteration for LLVM's SLP vectorizer
    try:
        if k.first_upcast > k.first_reduce and k.full_shape[k.first_upcast - 1] % 4 == 0 and k.has_reduce:
            k.apply_opt(Opt("UNROLL", k.first_upcast - 1 - k.first_reduce, 4))
    except KernelOptError:
        pass
