"""Hand-coded kernel optimizations: choose upcasts/unrolls (and on GPUs work-groups) for a Kernel before it is
linearized."""
from __future__ import annotations

from tinyjit.helpers import largest_divisor, prod
from tinyjit.ops import Op

from codegen.cpu_opts import optimize_cpu
from codegen.kernel import Kernel
from codegen.opts import Opt, OptKind

GPU_GROUP_SIZE = 256        # work-items per work-group we aim for
GPU_GROUP_MAX_OUTPUTS = 2048  # a reduce with fewer outputs than this is split across a work-group ...
GPU_GROUP_MIN_REDUCE = 256    # ... when it is at least this long


def optimize(k: Kernel, renderer, threads: int = 1) -> None:
    """Apply the heuristics for this renderer. Never changes results, only the loop structure. `threads`: how
    many threads the device splits a CPU kernel's outer loop over (the runtime device's `threads`)."""
    if renderer.gpu:
        optimize_gpu(k)
        return
    optimize_cpu(k, threads)


def optimize_gpu(k: Kernel) -> None:
    """GROUP a long reduce with few outputs across a work-group (so it runs on many work-items, finished in
    local memory); otherwise give each work-item a small block of outputs of a contraction (UPCAST of axes
    that a load is broadcast along, so each loaded value is reused from a register). Then LOCAL-split the
    innermost grid axes into work-groups of up to GPU_GROUP_SIZE items."""
    threads_left = GPU_GROUP_SIZE
    outputs = prod(k.full_shape[:k.first_reduce])
    if k.has_reduce and outputs >= GPU_GROUP_MAX_OUTPUTS:
        _register_block(k)
    if k.has_reduce and outputs < GPU_GROUP_MAX_OUTPUTS:
        # the innermost reduce axis first: its neighbouring elements are usually neighbours in memory
        for axis in reversed(range(k.first_reduce, k.first_upcast)):
            size = k.full_shape[axis]
            amount = largest_divisor(size, GPU_GROUP_SIZE)
            if size >= GPU_GROUP_MIN_REDUCE and amount >= 16:
                k.apply_opt(Opt(OptKind.GROUP, axis - k.first_reduce, amount))
                threads_left //= amount
                break
    for axis in reversed(range(k.first_reduce - k.local_dims)):
        if threads_left < 2 or k.local_dims >= 2:
            break
        amount = largest_divisor(k.full_shape[axis], threads_left)
        if amount > 1:
            k.apply_opt(Opt(OptKind.LOCAL, axis, amount))
            threads_left //= amount


def _register_block(k: Kernel, amount: int = 4, max_axes: int = 2) -> None:
    """UPCAST up to `max_axes` grid axes along which some load is broadcast (stride 0): each value that load
    reads is then used `amount` times from a register instead of being loaded again (matmul, conv)."""
    strides = [st.real_strides() for node, st in zip(k.accesses, k.sts) if node.op == Op.LOAD]
    done = 0
    for axis in range(k.first_reduce):
        if done == max_axes:
            break
        size = k.full_shape[axis]
        if size % amount == 0 and size > amount and any(s[axis] == 0 for s in strides):
            k.apply_opt(Opt(OptKind.UPCAST, axis, amount))
            done += 1
