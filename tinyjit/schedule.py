"""The scheduler: cut a lazy graph into kernels, each one AST that stores one output buffer.

Fusion rules (DESIGN.md):
- elementwise ops, movement ops and constants are inlined into whichever kernel consumes them;
- a reduce fuses into its consumer when the path to the kernel's output is elementwise ops and reshapes that
  only add or remove size-1 dimensions, and nothing else consumes it; otherwise it gets its own buffer
  (e.g. the max of a softmax, read back through an expanding view);
- a kernel boundary always comes from realize()/contiguous(), a device copy, an assign, and an empty buffer.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from tinyjit.dtype import dtypes
from tinyjit.lazy import Node, toposort
from tinyjit.ops import ELEMENTWISE, MOVEMENT, REDUCE, AstNode, Op
from tinyjit.view import ShapeTracker

# ops with op(0, 0, ...) == 0: a zero pad can be pushed through them to their inputs
_ZERO_PRESERVING = {Op.ADD, Op.MUL, Op.NEG, Op.MAX, Op.SQRT, Op.SIN, Op.CAST, Op.BITCAST, Op.AND, Op.OR, Op.XOR,
                    Op.SHL, Op.SHR, Op.CMPLT, Op.CMPNE}
_BOUNDARY_OPS = {Op.CONTIGUOUS, Op.COPY, Op.ASSIGN, Op.EMPTY, Op.BUFFER}


@dataclass
class ScheduleItem:
    kind: str                       # "kernel" | "copy" | "empty"
    output: Node                    # the node whose buffer this item fills
    inputs: list[Node] = field(default_factory=list)   # nodes whose buffers the kernel reads, buffer 1..n
    ast: AstNode | None = None      # STORE of buffer 0, for kernels

    def __repr__(self) -> str:
        return f"<ScheduleItem {self.kind} {self.output.shape} inputs={len(self.inputs)}>"


def _is_trivial_reshape(node: Node) -> bool:
    """A reshape that only adds or removes size-1 dimensions."""
    return node.op == Op.RESHAPE and [s for s in node.shape if s != 1] == [s for s in node.src[0].shape if s != 1]


class _Scheduler:
    def __init__(self, outputs: list[Node]):
        self.outputs = [o for o in dict.fromkeys(outputs) if not o.realized]
        self.graph = toposort(self.outputs)
        self.consumers: dict[int, list[Node]] = defaultdict(list)
        for node in self.graph:
            if node.realized:
                continue
            for s in dict.fromkeys(node.src):
                self.consumers[id(s)].append(node)
        self.realize: dict[int, Node] = {}
        for node in self.outputs:
            self.realize[id(node)] = node
        for node in self.graph:
            if node.realized:
                continue
            if node.op in _BOUNDARY_OPS:
                self.realize[id(node)] = node
            if node.op == Op.COPY and not node.src[0].realized:
                self.realize[id(node.src[0])] = node.src[0]
        self._decide_reduces()

    def _fusion_root(self, reduce_node: Node):
        """The node whose kernel this reduce can fuse into, or None when it must be realized on its own."""
        cur = reduce_node
        while id(cur) not in self.realize or cur is reduce_node:
            users = self.consumers[id(cur)]
            if len(users) != 1:
                return None
            user = users[0]
            if id(user) in self.realize:
                if user.op in (Op.COPY, Op.EMPTY) or (user.op == Op.ASSIGN and user.src[1] is not cur):
                    return None
                if user.op in REDUCE:
                    return None
                if user.op in MOVEMENT and not _is_trivial_reshape(user):
                    return None   # e.g. a permuted output: the kernel's loops would follow the reduce's order
                return user
            if user.op in ELEMENTWISE or _is_trivial_reshape(user):
                cur = user
                continue
            return None
        return cur

    def _decide_reduces(self) -> None:
        signature_of_root: dict[int, tuple] = {}
        for node in self.graph:
            if node.realized or node.op not in REDUCE or id(node) in self.realize:
                continue
            root = self._fusion_root(node)
            signature = (node.src[0].shape, node.arg)
            if root is None or signature_of_root.setdefault(id(root), signature) != signature:
                self.realize[id(node)] = node

    # ---- lowering one kernel ----
    def build(self, node: Node) -> ScheduleItem:
        if node.op == Op.EMPTY:
            return ScheduleItem("empty", node)
        if node.op == Op.COPY:
            return ScheduleItem("copy", node, [node.src[0]])
        value = node.src[1] if node.op == Op.ASSIGN else node.src[0] if node.op == Op.CONTIGUOUS else node
        inputs: list[Node] = []
        memo: dict = {}
        reduce_shape = self._fused_reduce_shape(value)
        out_shape = reduce_shape if reduce_shape is not None else value.shape
        start_moves = ((Op.RESHAPE, out_shape),) if out_shape != value.shape else ()

        def load(src: Node, moves) -> AstNode:
            if src not in inputs:
                inputs.append(src)
            st = _apply(ShapeTracker.from_shape(src.shape), moves)
            return AstNode(Op.LOAD, (), (inputs.index(src) + 1, st), src.dtype)

        def lower(n: Node, moves: tuple) -> AstNode:
            key = (id(n), moves)
            if key in memo:
                return memo[key]
            if n.realized or (id(n) in self.realize and n is not value) or n.op in _BOUNDARY_OPS:
                out = load(n, moves)
            elif n.op == Op.CONST:
                out = AstNode(Op.CONST, (), (n.arg, _apply(ShapeTracker.from_shape(()), moves)), n.dtype)
            elif n.op in MOVEMENT:
                inner_moves = ((n.op, n.arg),) + moves
                out = lower(n.src[0], inner_moves)
                if n.op == Op.PAD and not _zero_preserving(n.src[0], self, value):
                    # the padded area must read 0 even though the inlined ops would not produce 0 there
                    valid_st = _apply(ShapeTracker.from_shape(n.src[0].shape), inner_moves)
                    valid = AstNode(Op.VALID, (), valid_st, dtypes.bool)
                    zero = AstNode(Op.CONST, (), (_zero(n.dtype), _apply(ShapeTracker.from_shape(()),
                                                                          ((Op.RESHAPE, (1,) * len(n.shape)),
                                                                           (Op.EXPAND, n.shape)) + moves)),
                                   n.dtype)
                    out = AstNode(Op.WHERE, (valid, out, zero), None, n.dtype)
            elif n.op in ELEMENTWISE:
                out = AstNode(n.op, tuple(lower(s, moves) for s in n.src), n.arg, n.dtype)
            elif n.op in REDUCE:
                out = AstNode(n.op, (lower(n.src[0], ()),), n.arg, n.dtype)
            else:
                raise RuntimeError(f"scheduler cannot lower {n}")
            memo[key] = out
            return out

        body = lower(value, start_moves)
        store_st = _apply(ShapeTracker.from_shape(value.shape), start_moves)
        ast = AstNode(Op.STORE, (body,), (0, store_st), value.dtype)
        return ScheduleItem("kernel", node, inputs, ast)

    def _fused_reduce_shape(self, value: Node):
        """Output shape (keepdim) of the reduce fused into `value`'s kernel, if any."""
        stack, seen = [value], set()
        while stack:
            n = stack.pop()
            if id(n) in seen or n.realized or (id(n) in self.realize and n is not value):
                continue
            seen.add(id(n))
            if n.op in REDUCE:
                return n.shape
            stack.extend(n.src)
        return None

    def schedule(self) -> list[ScheduleItem]:
        items = []
        for node in self.graph:
            if id(node) in self.realize and not node.realized and node.op != Op.BUFFER:
                items.append(self.build(node))
        return items


def _zero_preserving(node: Node, sched: _Scheduler, value: Node) -> bool:
    for n in toposort([node]):
        if n.realized or (id(n) in sched.realize and n is not value) or n.op in _BOUNDARY_OPS or n.op == Op.CONST:
            continue
        if n.op in MOVEMENT:
            continue
        if n.op not in _ZERO_PRESERVING:
            return False
    return True


def _zero(dtype):
    return False if dtype == dtypes.bool else 0 if dtype.is_int else 0.0


def _apply(st: ShapeTracker, moves) -> ShapeTracker:
    for op, arg in moves:
        st = st.movement(op.name.lower(), arg)
    return st


def create_schedule(outputs: list[Node]) -> list[ScheduleItem]:
    """Kernels (in dependency order) that realize every node of `outputs`."""
    return _Scheduler(outputs).schedule()
