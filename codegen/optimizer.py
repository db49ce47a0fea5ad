"""Hand-coded kernel optimizations: choose upcasts/unrolls for a Kernel before it is linearized."""
from __future__ import annotations

from codegen.cpu_opts import optimize_cpu
from codegen.kernel import Kernel


def optimize(k: Kernel, renderer) -> None:
    """Apply the heuristics for this renderer. Never changes results, only the loop structure."""
    if renderer.gpu:
        return
    optimize_cpu(k)
