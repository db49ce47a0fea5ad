"""The CPU optimizations that rewrite a kernel's AST and put copy kernels around it: PACK, DEPAD and STAGE.

PACK computes an operand (a matmul's B, a conv's input windows, an expression under a reduce) into a scratch
buffer laid out in the order the kernel reads it, by a small kernel run just before; DEPAD copies a padded input
once with its padding written out (much less memory than PACKing every window); STAGE writes the output in loop
order to a scratch buffer that a copy kernel moves into place. `Copies` records what they add: the copy kernels,
the scratch buffers, and what each buffer of the rewritten kernel is bound to. `Kernel.apply_opt` calls them; the
heuristics that choose them are in codegen/cpu_opts.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol

from tinyjit.helpers import prod
from tinyjit.ops import AstNode, Op
from tinyjit.symbolic import Var
from tinyjit.view import ShapeTracker, View, _linear_coefficient

from codegen.opts import KernelOptError
from codegen.plan import LaunchArg



class Kernel(Protocol):
    """What these rewrites read and change of a codegen.kernel.Kernel (which applies them; importing it here would
    make the two modules import each other)."""
    ast: AstNode
    sts: list
    accesses: list
    copies: "Copies"
    _operand_facts: tuple

    @property
    def full_shape(self) -> tuple[int, ...]: ...


@dataclass
class Copies:
    """The copy kernels PACK, DEPAD and STAGE put around a kernel, and what the kernel's own buffers are bound to.

    `args[i]` is what buffer i of the kernel is bound to; `scratch[j]` = (size, dtype) of scratch buffer j.
    `before` and `after` are elementwise kernels (AST, args) run before and after it; their buffer 0 is the one
    they write."""
    args: list[LaunchArg]
    scratch: list = field(default_factory=list)
    before: list = field(default_factory=list)
    after: list = field(default_factory=list)

    @staticmethod
    def none(buffers: int) -> "Copies":
        """No copies yet: buffer i of the kernel is buffer i of the scheduled kernel."""
        return Copies([LaunchArg(i) for i in range(buffers)])

    def new_scratch(self, size: int, dtype) -> LaunchArg:
        """A new scratch buffer of `size` elements of `dtype`."""
        self.scratch.append((size, dtype))
        return LaunchArg(len(self.scratch) - 1, scratch=True)


ACCESS_OPS = (Op.LOAD, Op.CONST, Op.VALID)


def dependent_axes(k: Kernel, node: AstNode, st_of: dict) -> set[int]:
    """The axes (of size > 1) whose index changes the value of `node`."""
    return set(operand_facts(k, st_of)[id(node)][1])


def operand_facts(k: Kernel, st_of: dict) -> dict[int, tuple[bool, frozenset]]:
    """Per AST node (by id): whether its subtree reads memory, and the axes (of size > 1) it depends on.

    One bottom-up pass over the AST as a DAG (shared subtrees once), cached on the kernel until its views change:
    walking it as a tree is exponential in the depth of expressions that read a value twice (tanh, mish)."""
    cached = getattr(k, "_operand_facts", None)
    if cached is not None and cached[0] is k.ast and len(cached[1]) == len(k.sts) and \
            all(a is b for a, b in zip(cached[1], k.sts)):
        return cached[2]
    axes_of_view: dict[int, frozenset] = {}
    facts: dict[int, tuple[bool, frozenset]] = {}
    for n in k.ast.toposort():
        if n.op in ACCESS_OPS:
            st = st_of[id(n)]
            if id(st) not in axes_of_view:
                axes_of_view[id(st)] = frozenset(a for a, (s, r) in enumerate(zip(st.shape, st.real_strides()))
                                                 if s > 1 and r != 0)
            facts[id(n)] = (n.op == Op.LOAD, axes_of_view[id(st)])
            if n.src:   # a gathered load also depends on the axes its index value does
                facts[id(n)] = (True, facts[id(n)][1] | facts[id(n.src[0])][1])
        else:
            reads = any(facts[id(s)][0] for s in n.src)
            facts[id(n)] = (reads, frozenset().union(*(facts[id(s)][1] for s in n.src)))
    k._operand_facts = (k.ast, tuple(k.sts), facts)
    return facts


def pack_candidates(k: Kernel) -> list[AstNode]:
    """The operands of the kernel's reduces that some packing could help: the largest subtrees under a reduce
    that read memory and do not depend on every axis (a matmul's A and B loads, a conv's windows, a fused
    `relu'(x) * grad`), in AST order. Linear in the size of the AST (a DAG: each node is visited once per
    context, inside or outside a reduce)."""
    st_of = {id(n): st for n, st in zip(k.accesses, k.sts)}
    facts = operand_facts(k, st_of)
    everything = frozenset(a for a, s in enumerate(k.full_shape) if s > 1)
    out: list[AstNode] = []
    chosen: set[int] = set()
    visited: set[tuple[int, bool]] = set()
    stack: list[tuple[AstNode, bool]] = [(k.ast, False)]
    while stack:   # depth first, sources in order: the order a recursive walk would find them
        n, under_reduce = stack.pop()
        if (id(n), under_reduce) in visited:
            continue
        visited.add((id(n), under_reduce))
        if n.op in (Op.SUM, Op.RMAX):
            stack.extend((s, True) for s in reversed(n.src))
            continue
        reads, axes = facts[id(n)]
        if under_reduce and reads and axes != everything:
            if id(n) not in chosen:
                chosen.add(id(n))
                out.append(n)
            continue
        stack.extend((s, under_reduce) for s in reversed(n.src))
    return out


def pack(k: Kernel, which: int) -> None:
    """PACK: read operand `which` of pack_candidates(k) from a scratch buffer that a copy kernel, run before,
    fills in the order the kernel reads it (the axes the operand does not depend on dropped)."""
    candidates = pack_candidates(k)
    if not 0 <= which < len(candidates):
        raise KernelOptError(f"PACK {which}: the kernel has {len(candidates)} packable operands")
    node = candidates[which]
    st_of = {id(n): st for n, st in zip(k.accesses, k.sts)}
    keep = sorted(dependent_axes(k, node, st_of))
    full = k.full_shape
    kept_shape = tuple(full[a] for a in keep)
    copies = k.copies
    args = copies.args
    copy_args: list = []   # buffer i + 1 of the copy kernel is copy_args[i]

    def onto_kept(st: ShapeTracker) -> ShapeTracker:
        """The access's view with the axes the operand does not depend on cut to one element."""
        return st.shrink(tuple((0, s) if a in keep else (0, 1) for a, s in enumerate(st.shape)))

    memo: dict[int, AstNode] = {}

    def rebuild(n: AstNode) -> AstNode:
        if id(n) in memo:
            return memo[id(n)]
        if n.op == Op.LOAD:   # (a gathered load keeps its Gather, and its index value is rebuilt like the rest)
            if args[n.arg[0]] not in copy_args:
                copy_args.append(args[n.arg[0]])
            out = AstNode(Op.LOAD, tuple(rebuild(s) for s in n.src),
                          (1 + copy_args.index(args[n.arg[0]]), onto_kept(st_of[id(n)])) + n.arg[2:], n.dtype)
        elif n.op == Op.CONST:
            out = AstNode(Op.CONST, (), (n.arg[0], onto_kept(st_of[id(n)])), n.dtype)
        elif n.op == Op.VALID:
            out = AstNode(Op.VALID, (), onto_kept(st_of[id(n)]), n.dtype)
        else:
            out = AstNode(n.op, tuple(rebuild(s) for s in n.src), n.arg, n.dtype)
        memo[id(n)] = out
        return out
    value = rebuild(node)
    if value.op == Op.LOAD and not value.src and value.arg[1].reshape(kept_shape).contiguous:
        raise KernelOptError(f"PACK {which}: the load already reads its buffer contiguously in loop order")
    # the copy runs over the kernel's axes (the dropped ones of size 1), so every view in it stays one view; it
    # writes in loop order, and the kernel reads that contiguously, broadcast where the operand was
    packed = ShapeTracker.from_shape(kept_shape).reshape(tuple(s if a in keep else 1 for a, s in enumerate(full)))
    copy = AstNode(Op.STORE, (value,), (0, packed), node.dtype)
    packed = packed.expand(full)
    scratch = copies.new_scratch(prod(kept_shape), node.dtype)
    copies.before.append((copy, (scratch,) + tuple(copy_args)))
    args = args + [scratch]
    new_node = AstNode(Op.LOAD, (), (len(args) - 1, packed), node.dtype)
    st_of[id(new_node)] = packed
    ast = _substitute(k.ast, node, new_node)
    st_of[id(ast)] = k.sts[0]
    _rebind(k, ast, st_of, args)


def stage(k: Kernel) -> None:
    """STAGE: write the output to a scratch buffer laid out like the output except that the innermost axis of the
    kernel (the register block's vector axis) is contiguous, then copy it into place: the block's stores become
    whole vectors (LLVM's SLP vectorizer starts from consecutive stores), and the copy is a transpose of small
    tiles that stay in cache."""
    copies = k.copies
    if copies.args[0] != LaunchArg(0):
        raise KernelOptError("STAGE: the output is staged already")
    st = k.sts[0]
    strides = index_strides(st)
    if strides[-1] == 1 or st.shape[-1] == 1:
        raise KernelOptError("STAGE: the output is contiguous along the innermost axis already")
    # the output's memory order (largest stride first), the innermost kernel axis moved last
    order = sorted(range(len(st.shape) - 1), key=lambda a: -abs(strides[a]) if strides[a] is not None else 0)
    order.append(len(st.shape) - 1)
    size = prod(st.shape)
    scratch = copies.new_scratch(size, k.ast.dtype)
    inverse = [order.index(a) for a in range(len(order))]
    staged = ShapeTracker.from_shape(tuple(st.shape[a] for a in order)).permute(inverse)
    # the copy walks the output in its memory order (contiguous writes)
    copy = AstNode(Op.STORE, (AstNode(Op.LOAD, (), (1, staged.permute(order)), k.ast.dtype),), (0, st.permute(order)),
                   k.ast.dtype)
    copies.after.append((copy, (LaunchArg(0), scratch)))
    k.ast = AstNode(Op.STORE, k.ast.src, (0, staged), k.ast.dtype)
    k.accesses[0], k.sts[0] = k.ast, staged
    copies.args[0] = scratch


def depad(k: Kernel, which: int) -> None:
    """DEPAD: copy the padded view a load starts from (the first view of its ShapeTracker, the one with the mask) into
    a buffer of its own with the padding written out as zeros, and read that without bounds checks through the
    rest of the views. Much less memory than PACKing a conv's input windows: the padded input, not every
    window."""
    candidates = pack_candidates(k)
    if not 0 <= which < len(candidates) or candidates[which].op != Op.LOAD or candidates[which].src:
        raise KernelOptError(f"DEPAD {which}: not a load among the kernel's {len(candidates)} packable operands")
    node = candidates[which]
    st_of = {id(n): st for n, st in zip(k.accesses, k.sts)}
    st = st_of[id(node)]
    first = st.views[0]
    if first.mask is None:
        raise KernelOptError(f"DEPAD {which}: the load has no padding")
    keep = [a for a, (size, stride, m) in enumerate(zip(first.shape, first.strides, first.mask))
            if size > 1 and (stride != 0 or m != (0, size))]
    kept_shape = tuple(first.shape[a] for a in keep)
    source = first.shrink(tuple((0, s) if a in keep else (0, 1) for a, s in enumerate(first.shape)))
    source = source.reshape(kept_shape)
    copies = k.copies
    copy = AstNode(Op.STORE, (AstNode(Op.LOAD, (), (1, ShapeTracker((source,))), node.dtype),),
                   (0, ShapeTracker.from_shape(kept_shape)), node.dtype)
    scratch = copies.new_scratch(prod(kept_shape), node.dtype)
    copies.before.append((copy, (scratch, copies.args[node.arg[0]])))
    strides, acc = [0] * len(first.shape), 1
    for a in reversed(keep):
        strides[a], acc = acc, acc * first.shape[a]
    depadded = ShapeTracker((View.create(first.shape, tuple(strides)),) + st.views[1:])
    args = copies.args + [scratch]
    new_node = AstNode(Op.LOAD, (), (len(args) - 1, depadded), node.dtype)
    st_of[id(new_node)] = depadded
    ast = _substitute(k.ast, node, new_node)
    st_of[id(ast)] = k.sts[0]
    _rebind(k, ast, st_of, args)


def _rebind(k: Kernel, ast: AstNode, st_of: dict, args: list) -> None:
    """Install a rewritten AST: recollect its accesses (keeping their views) and number its buffers 1.. again
    in order of first use, so no index is left unused."""
    loads = [n for n in ast.toposort() if n.op == Op.LOAD]
    used = sorted({n.arg[0] for n in loads})
    number = {old: new for new, old in enumerate(used, 1)}
    memo: dict[int, AstNode] = {}

    def renumber(n: AstNode) -> AstNode:
        if id(n) not in memo:
            if n.op == Op.LOAD:   # (a gathered load keeps its index value and Gather)
                out = AstNode(Op.LOAD, tuple(renumber(s) for s in n.src), (number[n.arg[0]],) + n.arg[1:], n.dtype)
            else:
                out = AstNode(n.op, tuple(renumber(s) for s in n.src), n.arg, n.dtype) if n.src else n
            if id(n) in st_of:   # an access (or the store)
                st_of[id(out)] = st_of[id(n)]
            memo[id(n)] = out
        return memo[id(n)]
    k.ast = renumber(ast)
    k.accesses = [k.ast] + [n for n in k.ast.toposort() if n.op in ACCESS_OPS]
    k.sts = [st_of[id(n)] for n in k.accesses]
    k.copies.args = [args[0]] + [args[old] for old in used]


def _substitute(ast: AstNode, old: AstNode, new: AstNode) -> AstNode:
    memo: dict[int, AstNode] = {}

    def walk(n: AstNode) -> AstNode:
        if n is old:
            return new
        if id(n) not in memo:
            memo[id(n)] = AstNode(n.op, tuple(walk(s) for s in n.src), n.arg, n.dtype) if n.src else n
        return memo[id(n)]
    return walk(ast)


def index_strides(st: ShapeTracker) -> tuple[Optional[int], ...]:
    """Per axis, the constant step of the address (ignoring validity masks), or None when it is not linear."""
    idxs = [Var(f"i{d}", 0, s - 1) for d, s in enumerate(st.shape)]
    index, _ = st.index_and_valid(idxs)
    return tuple(_linear_coefficient(index, v) if s > 1 else 0 for v, s in zip(idxs, st.shape))
