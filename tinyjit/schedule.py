"""The scheduler: cut a lazy graph into kernels, each one AST that stores one output buffer.

Fusion rules (DESIGN.md):
- elementwise ops, movement ops and constants are inlined into whichever kernel consumes them;
- a reduce fuses into its consumer when the path to the kernel's output is elementwise ops and reshapes that
  only add or remove size-1 dimensions, and nothing else consumes it; otherwise it gets its own buffer
  (e.g. the max of a softmax, read back through an expanding view); reduces fused into one kernel must have the
  same input shape and axes (a + b.sum(1) + c.amax(1) is one kernel);
- a kernel boundary always comes from realize()/contiguous(), a device copy, an assign, and an empty buffer;
- an assign writes its target in place. When its value reads the target at other positions (x.assign(x.T)) the
  value is computed into a temporary first, and kernels that read the target's old value run before it; assigns
  that each read another's old target (an optimizer step's fused gradient reduces) get temporaries too. A kernel
  that must run after an assign but reads the old value (it reads both), and assigns of plain buffers that each
  read what another overwrites, read a copy of the old contents made just before the assign (`preserve`).
"""
from __future__ import annotations

import functools
import heapq
from collections import defaultdict
from dataclasses import dataclass, field

from tinyjit.dtype import dtypes
from tinyjit.helpers import NameEnum, deep_recursion
from tinyjit.lazy import Node, toposort
from tinyjit.ops import ELEMENTWISE, MOVEMENT, REDUCE, AstNode, Gather, Op, reduce_identity
from tinyjit.view import ShapeTracker

# ops with op(0, 0, ...) == 0: a zero pad can be pushed through them to their inputs
_ZERO_PRESERVING = {Op.ADD, Op.MUL, Op.NEG, Op.MAX, Op.SQRT, Op.SIN, Op.CAST, Op.BITCAST, Op.AND, Op.OR, Op.XOR,
                    Op.SHL, Op.SHR, Op.CMPLT, Op.CMPNE}
_BOUNDARY_OPS = {Op.CONTIGUOUS, Op.COPY, Op.ASSIGN, Op.EMPTY, Op.BUFFER}
# an elementwise node that one kernel would compute at more views than this gets its own buffer (build())
MAX_INLINED_VIEWS = 4
# an elementwise value that several kernels would inline is realized when its expression has more ops than this
# (_decide_shared_chains)
MAX_SHARED_INLINE = 128


# an elementwise value at least SHARED_EXPENSIVE_SIZE elements large whose expression costs SHARED_EXPENSIVE_COST
# (a transcendental op counts EXPENSIVE_OP_COST, others 1) and that SHARED_EXPENSIVE_KERNELS or more kernels would
# recompute is realized once (_decide_shared_chains): attention probabilities read by the forward and four
# backward matmuls, GELU's erf read by the forward and backward ones
EXPENSIVE_OP_COST = {Op.EXP2: 20, Op.LOG2: 20, Op.SIN: 20, Op.SQRT: 4, Op.RECIP: 4}
SHARED_EXPENSIVE_COST = 20
SHARED_EXPENSIVE_KERNELS = 3
SHARED_EXPENSIVE_SIZE = 1 << 14
# an elementwise value at least SHARED_EXPENSIVE_SIZE elements large whose expression has SHARED_LONG_OPS or more
# ops (of any kind, counted as a tree) and that two or more kernels would recompute is realized once too
# (_decide_shared_chains): a max-pool gradient times a relu's (compares and selects over each window, ~17 ops)
# was computed again in each conv weight-gradient pack and bias-gradient sum that read it, each through the
# pooling windows' stacked views (a division and remainder per index) in that kernel's own loop order
# A sum of pieces (_sum_of_pieces: an unrolled recurrence's per-step weight-gradient terms, its stacked padded
# input gradient) is not realized by this rule: realized, its terms stopped fusing into one stacked contraction,
# and the LSTM's weight gradient became one kernel of 20 products with 40 operand packs (4 CPU s to compile, not
# 0.4)
SHARED_LONG_OPS = 16
# an elementwise value of that cost padded to PADDED_WASTE_RATIO times its size or more is realized before the pad
# (_decide_shared_chains): inlined, its ops would run on every padded element too, masked out after. The gradient of
# an unrolled recurrence's input, a sum of one padded term per time step, computed every step's term T times
PADDED_WASTE_RATIO = 4

# on the CPU, a contraction (a sum of products: a matmul, a convolution) whose fused epilogue costs
# EPILOGUE_SPLIT_COST or more per element (EXPENSIVE_OP_COST weights: a GELU gradient's erf and exp) is stored on
# its own, and the epilogue runs as an elementwise kernel after it (_decide_heavy_epilogues). Fused, the epilogue is
# unrolled for every element of the matmul's register block, whose size codegen.cpu_opts then cuts to keep the code
# compilable: P1's MLP input gradient ran as 1-row blocks, 16x slower than the matmul alone plus the elementwise
# kernel. Only where the epilogue runs over EPILOGUE_SPLIT_SIZE elements or more and the contraction does
# MIN_CONTRACTION_WORK multiply-adds (smaller ones are not register blocked much, and a launch costs more)
EPILOGUE_SPLIT_COST = 24
EPILOGUE_SPLIT_SIZE = 1 << 14
MIN_CONTRACTION_WORK = 1 << 16

# work counters (tests check that scheduling grows linearly with the graph): schedules made, kernels built and
# (node, view) pairs lowered into kernel ASTs
stats = {"schedules": 0, "kernels_built": 0, "nodes_lowered": 0}


class ItemKind(NameEnum):
    KERNEL = "kernel"   # a kernel computes the output from the inputs (`ast`)
    COPY = "copy"       # the output is a copy of its one input on another device
    EMPTY = "empty"     # the output is new memory, left uninitialized


@dataclass
class ScheduleItem:
    kind: ItemKind
    output: Node                    # the node whose buffer this item fills
    inputs: list[Node] = field(default_factory=list)   # nodes whose buffers the kernel reads, buffer 1..n
    ast: AstNode | None = None      # STORE of buffer 0, for kernels
    preserve: list[Node] = field(default_factory=list)   # assigns: nodes of the old contents that get a copy first
    reason: str | None = None       # why this node was not fused into its consumer (None: an output or boundary op)

    def __repr__(self) -> str:
        return f"<ScheduleItem {self.kind} {self.output.shape} inputs={len(self.inputs)}>"


def _is_trivial_reshape(node: Node) -> bool:
    """A reshape that only adds or removes size-1 dimensions."""
    return node.op == Op.RESHAPE and [s for s in node.shape if s != 1] == [s for s in node.src[0].shape if s != 1]


class _Scheduler:
    def __init__(self, outputs: list[Node], readers=()):
        self.outputs = [o for o in dict.fromkeys(outputs) if not o.realized]
        # why a node that is neither an output nor a boundary op gets its own buffer (DEBUG=3, tinyjit.viz)
        self.reasons: dict[int, str] = {}
        self.graph = toposort(self.outputs)
        self.consumers: dict[int, list[Node]] = defaultdict(list)
        for node in self.graph:
            if node.realized:
                continue
            for s in dict.fromkeys(node.src):
                self.consumers[id(s)].append(node)
        self._decide_realized(self.outputs)
        stale = self._stale_readers(readers) if readers else []
        if stale:   # they cut fusion paths of reduces: decide again with them as outputs
            self.reasons = {id(n): "a live tensor still reads this value, which reads a buffer an assign of this "
                            "schedule overwrites: it is stored before the overwrite" for n in stale}
            self._decide_realized(self.outputs + stale)

    def _decide_realized(self, outputs: list[Node]) -> None:
        """Which nodes get their own buffer: the outputs, boundaries, and reduces and values that cannot fuse."""
        self.realize: dict[int, Node] = {}
        for node in outputs:
            self.realize[id(node)] = node
        for node in self.graph:
            if node.realized:
                continue
            if node.op in _BOUNDARY_OPS:
                self.realize[id(node)] = node
            if node.op == Op.COPY and not node.src[0].realized:
                self.realize[id(node.src[0])] = node.src[0]
                self.reasons.setdefault(id(node.src[0]), f"the source of a copy to {node.device} is computed into "
                                        f"its own buffer on {node.src[0].device} first")
        self._decide_gather_tables()
        self._decide_shared_chains()
        self._decide_reduces()
        self._decide_heavy_epilogues()
        self._decide_assign_temporaries()

    def _loadable(self, node: Node) -> bool:
        """Whether kernels read `node` from its own buffer (or will)."""
        return node.realized or id(node) in self.realize or node.op in _BOUNDARY_OPS

    def _gather_table(self, gather: Node):
        """(the node whose buffer a GATHER reads its table from, the movement ops from it to the table, the table's
        view of that buffer), or None when the table is not one view of a buffer with a fixed stride between its
        rows (then the table gets a buffer of its own)."""
        table, moves = gather.src[0], ()
        while not self._loadable(table) and table.op in MOVEMENT:
            moves = ((table.op, table.arg),) + moves
            table = table.src[0]
        if not self._loadable(table):
            return None
        st = _view(table.shape, moves)
        axis = gather.arg
        if len(st.views) != 1 or (st.views[0].mask is not None and
                                  st.views[0].mask[axis] != (0, gather.src[0].shape[axis])):
            return None
        return table, moves, st.views[0]

    def _decide_gather_tables(self) -> None:
        """A GATHER reads its table straight from a buffer (a kernel cannot compute the row an index picks):
        a table computed inline, or viewed in a way whose rows are not a fixed stride apart, gets its own buffer."""
        for node in self.graph:
            if node.op is Op.GATHER and not node.realized and self._gather_table(node) is None:
                self.realize[id(node.src[0])] = node.src[0]
                self.reasons.setdefault(id(node.src[0]), "a gather reads its table from a buffer")

    def _decide_shared_chains(self) -> None:
        """Give a buffer to an elementwise value that more than one kernel would inline and recompute from a long
        expression: a recurrence (an LSTM's cell state c[t] = f * c[t-1] + i * g, read by the next step and by
        h[t], which feeds the next step's matmul) would otherwise inline the whole chain back to its start into
        every step's kernels: quadratic in the number of steps, and every step's kernel a new one to compile.

        First, from the outputs down, the kernel each node is inlined into (its `home`), or None when its readers
        lead to different kernels (a chain of relus reads each value twice, but in one kernel: it stays fused).
        Then, from the sources up, a node's size: the elementwise ops inlined under it counted as a tree (what
        recomputing it costs a reader at worst), capped, so the pass stays linear in the graph. A node read by
        several nodes, without a single home, and past MAX_SHARED_INLINE is realized, and counts 0 for its
        readers."""
        home: dict[int, object] = {}
        # the kernels (their home nodes' ids) each node is inlined into, up to SHARED_EXPENSIVE_KERNELS of them
        kernels: dict[int, frozenset] = {}
        for node in reversed(self.graph):
            if node.realized or id(node) in self.realize or node.op in _BOUNDARY_OPS or node.op in REDUCE or \
                    not self.consumers[id(node)]:
                home[id(node)] = node
                kernels[id(node)] = frozenset((id(node),))
                continue
            homes = {id(home[id(c)]) if home[id(c)] is not None else None for c in self.consumers[id(node)]}
            home[id(node)] = home[id(self.consumers[id(node)][0])] if len(homes) == 1 else None
            reached: frozenset = frozenset()
            for c in self.consumers[id(node)]:
                reached |= kernels[id(c)]
                if len(reached) >= SHARED_EXPENSIVE_KERNELS:
                    break
            kernels[id(node)] = reached
        size: dict[int, int] = {}
        cost: dict[int, int] = {}
        for node in self.graph:
            if home[id(node)] is node or node.op == Op.CONST:
                size[id(node)] = cost[id(node)] = 0
                continue
            elementwise = node.op in ELEMENTWISE
            total = elementwise + sum(size[id(s)] for s in node.src)
            weighted = (EXPENSIVE_OP_COST.get(node.op, 1) if elementwise else 0) + sum(cost[id(s)] for s in node.src)
            shared = elementwise and home[id(node)] is None and len(self.consumers[id(node)]) > 1
            if shared and total > MAX_SHARED_INLINE:
                self.realize[id(node)] = node
                self.reasons.setdefault(id(node), f"is read by several kernels and would recompute more than "
                                        f"{MAX_SHARED_INLINE} inlined ops in each (a recurrence's shared chain)")
                total = weighted = 0
            elif elementwise and home[id(node)] is None and weighted >= SHARED_EXPENSIVE_COST and \
                    len(kernels[id(node)]) >= SHARED_EXPENSIVE_KERNELS and node.size >= SHARED_EXPENSIVE_SIZE and \
                    not self._same_kernels_above(node, kernels, home):
                self.realize[id(node)] = node
                self.reasons.setdefault(id(node), f"is read by {SHARED_EXPENSIVE_KERNELS} or more kernels, each of "
                                        f"which would recompute its transcendental ops")
                total = weighted = 0
            elif elementwise and home[id(node)] is None and total >= SHARED_LONG_OPS and \
                    len(kernels[id(node)]) >= 2 and node.size >= SHARED_EXPENSIVE_SIZE and \
                    not _sum_of_pieces(node) and not self._same_kernels_above(node, kernels, home):
                self.realize[id(node)] = node
                self.reasons.setdefault(id(node), f"is read by several kernels, each of which would recompute its "
                                        f"{SHARED_LONG_OPS} or more ops")
                total = weighted = 0
            if node.op == Op.PAD and weighted >= SHARED_EXPENSIVE_COST and \
                    0 < PADDED_WASTE_RATIO * node.src[0].size <= node.size:
                padded = _below_movement(node.src[0])
                if padded.op in ELEMENTWISE and not padded.realized and id(padded) not in self.realize:
                    self.realize[id(padded)] = padded
                    self.reasons.setdefault(id(padded), f"is padded to {node.size // node.src[0].size}x its size: "
                                            f"inlined, its transcendental ops would run on the padding too")
                    total = weighted = 0
            size[id(node)] = min(total, MAX_SHARED_INLINE + 1)
            cost[id(node)] = min(weighted, SHARED_EXPENSIVE_COST)

    def _same_kernels_above(self, node: Node, kernels: dict, home: dict) -> bool:
        """Whether an elementwise reader of `node` (directly or through movement ops: a pool's gradient scattered
        from its windows back to the image, where a relu's gradient multiplies it) is inlined into the same
        kernels: then that reader (the larger expression) is the one to realize, not each step of the chain below
        it."""
        stack, seen = list(self.consumers[id(node)]), set()
        while stack:
            c = stack.pop()
            if id(c) in seen or c.realized or id(c) in self.realize:
                continue
            seen.add(id(c))
            if c.op in ELEMENTWISE and home[id(c)] is None and kernels[id(c)] == kernels[id(node)]:
                return True
            if c.op in MOVEMENT and home[id(c)] is None:
                stack.extend(self.consumers[id(c)])
        return False

    def _stale_readers(self, readers) -> list[Node]:
        """The nodes of `readers` (values a live tensor still holds) that this schedule computes inline and that read
        a buffer one of its assigns overwrites: they would mean something else after it, so they are stored too
        (tinyjit.inplace). A reader that also reads an assign's new value is left out (its old contents are copied
        instead: no order of kernels could compute it in place)."""
        # a reader inside the graph is consumed by something (an unconsumed one is an output: realized anyway)
        candidates = [r for r in dict.fromkeys(readers) if id(r) in self.consumers and id(r) not in self.realize]
        targets = {id(_target_buffer(n)) for n in self.graph if n.op == Op.ASSIGN and not n.realized}
        if not candidates or not targets:
            return []
        reads_old: set[int] = set()   # through nodes that stay lazy, down to an overwritten buffer
        reads_new: set[int] = set()   # through anything this schedule computes, up to an assign
        for node in self.graph:       # sources come first
            key = id(node)
            if node.buffer is not None:
                if id(node.buffer) in targets:
                    reads_old.add(key)
                continue
            if node.op == Op.ASSIGN or any(id(s) in reads_new for s in node.src):
                reads_new.add(key)
            if key not in self.realize and any(id(s) in reads_old for s in node.src):
                reads_old.add(key)
        return [r for r in candidates if id(r) in reads_old and id(r) not in reads_new]

    def _fusion_root(self, reduce_node: Node) -> tuple[Node | None, str | None]:
        """The node whose kernel this reduce can fuse into, or None and the reason when it must be realized on its
        own.

        Every path from the reduce up to that node must be elementwise ops and trivial reshapes, all ending in
        the same node (`relu(s) = where(s > 0, s, 0)` reads s twice, in one kernel): the kernel's loop shape is
        the reduce's (keepdim) output shape, so a permute, expand, pad or shrink on the way would be lost, and a
        second kernel reading the reduce would have to recompute it.
        """
        root, stack, seen = None, [reduce_node], set()
        while stack:
            cur = stack.pop()
            if id(cur) in seen:
                continue
            seen.add(id(cur))
            for user in self.consumers[id(cur)]:
                if user.op == Op.CONTIGUOUS or (user.op == Op.ASSIGN and user.src[1] is cur):
                    candidate = user
                elif user.op in REDUCE:
                    return None, f"{_describe(reduce_node)} is reduced again by {_describe(user)}"
                elif not (user.op in ELEMENTWISE or _is_trivial_reshape(user)):
                    return None, (f"{_describe(reduce_node)} is read through {_describe(user)}: only elementwise "
                                  f"ops and size-1 reshapes keep a reduce's loop shape")
                elif id(user) in self.realize:
                    candidate = user
                else:
                    stack.append(user)
                    continue
                if root is not None and root is not candidate:
                    return None, (f"{_describe(reduce_node)} is read by two kernels ({_describe(root)} and "
                                  f"{_describe(candidate)}): fused into both it would be computed twice")
                root = candidate
        return root, None

    def _decide_reduces(self) -> None:
        signature_of_root: dict[int, tuple] = {}
        self.fused_roots: dict[int, Node | None] = {}   # id(reduce) -> the node whose kernel it fuses into
        for node in self.graph:
            if node.realized or node.op not in REDUCE or id(node) in self.realize:
                continue
            root, reason = self._fusion_root(node)
            signature = (node.src[0].shape, node.arg)
            self.fused_roots[id(node)] = root
            if root is None:
                self.realize[id(node)] = node
                self.reasons[id(node)] = reason
            elif signature_of_root.setdefault(id(root), signature) != signature:
                shape, axes = signature_of_root[id(root)]
                self.realize[id(node)] = node
                self.reasons[id(node)] = (f"{_describe(node)} reduces {node.src[0].shape} over axes {node.arg}, but "
                                          f"the kernel of {_describe(root)} already reduces {shape} over axes {axes}")

    def _decide_heavy_epilogues(self) -> None:
        """On the CPU, store a large contraction on its own where the ops fused after it are expensive (see
        EPILOGUE_SPLIT_COST): the epilogue then runs as an elementwise kernel reading the product."""
        epilogue_cost: dict[int, int] = {}   # id(root) -> the cost per element of its kernel's ops outside reduces
        for node in self.graph:
            root = self.fused_roots.get(id(node))
            if root is None or id(node) in self.realize or not _is_contraction(node) or \
                    node.device.split(":")[0] != "CPU" or root.size < EPILOGUE_SPLIT_SIZE:
                continue
            if id(root) not in epilogue_cost:
                epilogue_cost[id(root)] = self._epilogue_cost(root)
            if epilogue_cost[id(root)] >= EPILOGUE_SPLIT_COST:
                self.realize[id(node)] = node
                self.reasons[id(node)] = (f"the ops fused after this contraction cost {epilogue_cost[id(root)]} per "
                                          f"element: on the CPU they would be unrolled over its register block, so "
                                          f"they run as an elementwise kernel of their own")

    def _epilogue_cost(self, root: Node) -> int:
        """The cost per element (EXPENSIVE_OP_COST weights) of the elementwise ops in `root`'s kernel outside its
        reduces, each node once."""
        return sum(EXPENSIVE_OP_COST.get(n.op, 1) for n in self._kernel_nodes(root, into_reduces=False)
                   if n.op in ELEMENTWISE)

    def _decide_assign_temporaries(self) -> None:
        """An assign whose value reads the target buffer at other positions than the one it writes (x.assign(x.T),
        x.assign(x.flip(0))) would read elements it already overwrote: compute such a value into its own buffer."""
        for node in self.graph:
            if node.op == Op.ASSIGN and not node.realized and _reads_target_elsewhere(self.build(node)):
                self.realize[id(node.src[1])] = node.src[1]
                self.reasons.setdefault(id(node.src[1]), "the value of an assign reads its target at other positions "
                                        "than it writes: it goes through a temporary buffer")

    # ---- lowering one kernel ----
    def build(self, node: Node) -> ScheduleItem:
        """The item that fills `node`'s buffer. A value the kernel would inline under more than
        MAX_INLINED_VIEWS different views (prod's gradient reads each level of its halving tree through twice as
        many pads as the level above) gets its own buffer instead: inlining it would recompute it once per view,
        and the kernel would grow exponentially with the depth of such graphs."""
        while True:
            try:
                return self._build(node)
            except _Duplicated as dup:
                self.realize[id(dup.node)] = dup.node
                self.reasons.setdefault(id(dup.node), dup.reason or f"one kernel would inline it under more than "
                                        f"{MAX_INLINED_VIEWS} different views")
                self.added_realized = True
                self._decide_reduces()   # the new buffer may end a reduce's path to its kernel

    def _build(self, node: Node) -> ScheduleItem:
        if node.op == Op.EMPTY:
            return ScheduleItem(ItemKind.EMPTY, node)
        if node.op == Op.COPY:
            return ScheduleItem(ItemKind.COPY, node, [node.src[0]])
        value = node.src[1] if node.op == Op.ASSIGN else node.src[0] if node.op == Op.CONTIGUOUS else node
        # the node computed inline here; a value that gets its own buffer anyway (it is an output too, or an
        # assign's temporary) is loaded from it instead
        root = value if value is node or id(value) not in self.realize else None
        inputs: list[Node] = []
        memo: dict = {}
        views_of: dict[int, int] = defaultdict(int)   # inlined computing node -> distinct views it is lowered at
        zero_memo: dict[int, bool] = {}
        reduce_shape = self._fused_reduce_shape(value, root)
        out_shape = reduce_shape if reduce_shape is not None else value.shape
        start_moves = ((Op.RESHAPE, out_shape),) if out_shape != value.shape else ()

        def load(src: Node, moves) -> AstNode:
            if src not in inputs:
                inputs.append(src)
            st = _view(src.shape, moves)
            return AstNode(Op.LOAD, (), (inputs.index(src) + 1, st), src.dtype)

        def gathered_load(n: Node, moves) -> AstNode:
            """A GATHER as a LOAD of its table's buffer whose address along the axis comes from the index value: the
            view is the table cut to row 0 and broadcast over the gather's shape (then `moves`), so it transforms
            with the kernel's other accesses; the row stride and count go in the arg (tinyjit.ops.Gather)."""
            found = self._gather_table(n)
            if found is None:   # (a buffer decided since _decide_gather_tables cut the table's view short)
                raise _Duplicated(n.src[0], "a gather reads its table from a buffer")
            source, table_moves, table_view = found
            axis, table = n.arg, n.src[0]
            row_zero = ((Op.SHRINK, tuple((0, 1) if d == axis else (0, s) for d, s in enumerate(table.shape))),
                        (Op.EXPAND, n.shape))
            if source not in inputs:
                inputs.append(source)
            st = _view(source.shape, table_moves + row_zero + moves)
            gather = Gather(table_view.strides[axis], table.shape[axis])
            return AstNode(Op.LOAD, (lower(n.src[1], moves),), (inputs.index(source) + 1, st, gather), n.dtype)

        def lower(n: Node, moves: tuple) -> AstNode:
            # memoized by the view the moves make of n, not by the path of moves: a node read twice (tanh, the
            # halves of prod's tree) is reached along many paths, and lowering each path again is exponential
            # in the depth of the graph; the paths of a node lead to few distinct views
            key = (id(n), moves)
            if key in memo:
                return memo[key]
            view_key = (id(n), _view(n.shape, moves)) if moves else key
            if view_key in memo:
                memo[key] = memo[view_key]
                return memo[key]
            stats["nodes_lowered"] += 1
            if (n.op in ELEMENTWISE or n.op is Op.GATHER) and n is not root and not n.realized and \
                    id(n) not in self.realize:
                views_of[id(n)] += 1
                if views_of[id(n)] > MAX_INLINED_VIEWS:
                    raise _Duplicated(n)
            if n.realized or (id(n) in self.realize and n is not root) or n.op in _BOUNDARY_OPS:
                out = load(n, moves)
            elif n.op == Op.CONST:
                out = AstNode(Op.CONST, (), (n.arg, _view((), moves)), n.dtype)
            elif n.op in MOVEMENT:
                inner_moves = ((n.op, n.arg),) + moves
                out = lower(n.src[0], inner_moves)
                if n.op == Op.PAD and not _zero_preserving(n.src[0], self, root, zero_memo):
                    # the padded area must read 0 even though the inlined ops would not produce 0 there
                    valid_st = _view(n.src[0].shape, inner_moves)
                    valid = AstNode(Op.VALID, (), valid_st, dtypes.bool)
                    zero = AstNode(Op.CONST, (), (_zero(n.dtype), _apply(ShapeTracker.from_shape(()),
                                                                          ((Op.RESHAPE, (1,) * len(n.shape)),
                                                                           (Op.EXPAND, n.shape)) + moves)),
                                   n.dtype)
                    out = AstNode(Op.WHERE, (valid, out, zero), None, n.dtype)
            elif n.op in ELEMENTWISE:
                out = AstNode(n.op, tuple(lower(s, moves) for s in n.src), n.arg, n.dtype)
            elif n.op is Op.GATHER:
                out = gathered_load(n, moves)
            elif n.op in REDUCE and any(n.src[0].shape[a] == 0 for a in n.arg):
                # a reduce over no elements is its identity (whoever built it: Tensor methods, autograd's sums
                # of broadcast gradients); a kernel never loops 0 times
                out = AstNode(Op.CONST, (), (reduce_identity(n.op, n.dtype), _apply(
                    ShapeTracker.from_shape(()), ((Op.RESHAPE, (1,) * len(n.shape)), (Op.EXPAND, n.shape)) + moves)),
                    n.dtype)
            elif n.op in REDUCE:
                out = AstNode(n.op, (lower(n.src[0], ()),), n.arg, n.dtype)
            else:
                raise RuntimeError(f"scheduler cannot lower {n}")
            memo[key] = memo[view_key] = out
            return out

        body = lower(value, start_moves)
        # `lower` refers to itself through its closure: break that cycle, or it keeps this graph (and the buffers
        # of realized nodes in it) alive until the garbage collector runs, and freed memory is not reused
        lower = None
        store_st = _view(value.shape, start_moves)
        ast = AstNode(Op.STORE, (body,), (0, store_st), value.dtype)
        stats["kernels_built"] += 1
        return ScheduleItem(ItemKind.KERNEL, node, inputs, ast, reason=self.reasons.get(id(node)))

    def inlined_nodes(self, item: ScheduleItem) -> list[Node]:
        """The graph nodes whose work the item's kernel does (its output and everything inlined into it, by the
        same rule as `build`'s loads); for a copy or an empty buffer, its node alone."""
        node = item.output
        if item.kind != ItemKind.KERNEL:
            return [node]
        return ([node] if node.op in (Op.ASSIGN, Op.CONTIGUOUS) else []) + self._kernel_nodes(node)

    def _kernel_nodes(self, node: Node, into_reduces: bool = True) -> list[Node]:
        """The graph nodes inlined into the kernel that stores `node` (the value it stores, an assign's or a
        contiguous's source, and what that reads, by the same rule as `build`'s loads), each once; with
        `into_reduces` False, a reduce's own node but nothing under it."""
        value = node.src[-1] if node.op in (Op.ASSIGN, Op.CONTIGUOUS) else node
        root = value if value is node or id(value) not in self.realize else None
        members, stack, seen = [], [value], set()
        while stack:
            n = stack.pop()
            if id(n) in seen or n.realized or (id(n) in self.realize and n is not root) or n.op in _BOUNDARY_OPS:
                continue
            seen.add(id(n))
            members.append(n)
            if into_reduces or n.op not in REDUCE:
                stack.extend(n.src)
        return members

    def _fused_reduce_shape(self, value: Node, root):
        """Output shape (keepdim) of the reduce fused into `value`'s kernel, if any."""
        stack, seen = [value], set()
        while stack:
            n = stack.pop()
            if id(n) in seen or n.realized or (id(n) in self.realize and n is not root):
                continue
            seen.add(id(n))
            if n.op in REDUCE:
                return n.shape
            stack.extend(n.src)
        return None

    def schedule(self) -> list[ScheduleItem]:
        copied: set[int] = set()   # assigns whose old contents are copied for their readers instead of ordering
        while True:
            items = []
            self.added_realized = False
            for node in self.graph:
                if id(node) in self.realize and not node.realized and node.op != Op.BUFFER:
                    items.append(self.build(node))
            if self.added_realized:   # a node before some of these got its own buffer: its item is missing
                continue
            try:
                return _order_reads_before_assigns(items, copied)
            except _AssignCycle as cycle:
                # Assigns that each read what another overwrites (two layers' weight updates, each with its
                # gradient reduce fused in, reading the other's old weights): give their values temporaries, so
                # the assigns become copies that read nothing else, and order again.
                values = [items[i].output.src[1] for i in cycle.assigns]
                values = [v for v in values
                          if not v.realized and v.op not in _BOUNDARY_OPS and id(v) not in self.realize]
                if not values:   # plain buffers (nothing to compute into a temporary): copy one's old contents
                    copied.add(id(items[cycle.assigns[0]].output))
                for v in values:
                    self.realize[id(v)] = v
                    self.reasons.setdefault(id(v), "assigns that each read what another overwrites: this value "
                                            "goes through a temporary buffer")


class _Duplicated(Exception):
    """A node that a kernel would inline under too many different views, or (`reason`) otherwise cannot inline
    (see _Scheduler.build): it gets a buffer, and the kernel is built again."""

    def __init__(self, node: Node, reason: str | None = None):
        super().__init__()
        self.node, self.reason = node, reason


class _AssignCycle(Exception):
    """No order runs every reader of an old buffer before its assign; `assigns` are the items left unordered."""

    def __init__(self, assigns: list[int]):
        super().__init__()
        self.assigns = assigns


def _target_buffer(node: Node):
    """The buffer a node's value lives in once realized, when that is known now (realized, or an assign)."""
    while node.op == Op.ASSIGN and not node.realized:
        node = node.src[0]
    return node.buffer


def _reads_target_elsewhere(item: ScheduleItem) -> bool:
    target, store_st = item.output.src[0].buffer, item.ast.arg[1]
    return any(n.op == Op.LOAD and _target_buffer(item.inputs[n.arg[0] - 1]) is target and n.arg[1] != store_st
               for n in item.ast.toposort())


def _order_reads_before_assigns(items: list[ScheduleItem], copied=frozenset()) -> list[ScheduleItem]:
    """Dependency order, plus: a kernel that reads a buffer's old value runs before the assign that overwrites
    it (a graph's meaning never changes, DESIGN.md). When it cannot (it also depends on the assign) or the assign
    is in `copied` (ids of assign nodes), the assign's item lists the old value's nodes in `preserve` instead: they
    get a copy of the old contents just before it runs. Otherwise the given order is kept."""
    assigns = [i for i, item in enumerate(items) if item.output.op == Op.ASSIGN]
    if not assigns:
        return items
    position = {id(item.output): i for i, item in enumerate(items)}
    deps = [{position[id(n)] for n in item.inputs if id(n) in position} for item in items]
    for i, item in enumerate(items):   # an assign's own target buffer comes in through its value's loads
        if item.output.op == Op.ASSIGN and id(item.output.src[0]) in position:
            deps[i].add(position[id(item.output.src[0])])
    after = [set() for _ in items]   # after[i]: every item that (transitively) depends on item i
    for i in reversed(range(len(items))):   # dependencies point backwards, so after[i] is complete here
        for d in deps[i]:
            after[d] |= {i} | after[i]
    for a in assigns:
        target = items[a].output.src[0].buffer

        def reads_old_contents(n: Node) -> bool:
            """n holds the target buffer as it is before assign `a` runs."""
            if id(n) in position:   # made in this schedule: an earlier assign to the same buffer, or `a` itself
                return _target_buffer(n) is target and position[id(n)] != a and position[id(n)] not in after[a]
            return n.buffer is target
        for r, reader in enumerate(items):
            old_inputs = [n for n in reader.inputs if reads_old_contents(n)] if r != a else []
            if not old_inputs:
                continue
            if r in after[a] or id(items[a].output) in copied:
                items[a].preserve.extend(n for n in old_inputs if n not in items[a].preserve)
            else:
                deps[a].add(r)
    # always the first ready item in the given order (a heap of ready indices: linear-logarithmic, not quadratic)
    waiting = [len(d) for d in deps]
    users: list[list[int]] = [[] for _ in items]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(items):
        done = set(order)
        raise _AssignCycle([i for i in range(len(items)) if i not in done and items[i].output.op == Op.ASSIGN])
    return [items[i] for i in order]


def _sum_of_pieces(node: Node) -> bool:
    """Whether `node` continues a chain of sums of views (pad(a) + pad(b) + ...: the terms of a recurrence's
    gradient, stacked or accumulated per step), which the scheduler fuses into its readers' contractions."""
    return node.op is Op.ADD and any(s.op is Op.ADD for s in node.src) and any(s.op in MOVEMENT for s in node.src)


def _is_contraction(node: Node) -> bool:
    """Whether `node` sums products of two computed operands (a matmul, a convolution) of at least
    MIN_CONTRACTION_WORK multiply-adds."""
    product = node.src[0] if node.op == Op.SUM else None
    return product is not None and product.op == Op.MUL and product.size >= MIN_CONTRACTION_WORK and \
        all(_below_movement(s).op != Op.CONST for s in product.src)


def _below_movement(node: Node) -> Node:
    """The first node under `node`'s chain of movement ops (itself when it is not one), stopping at a realized one."""
    while node.op in MOVEMENT and not node.realized:
        node = node.src[0]
    return node


def _describe(node: Node) -> str:
    """A node in a few words for the reasons above: `the RMAX (4, 1) float32`."""
    if node.op in MOVEMENT:
        article = "an" if node.op.name[0] in "AEIOU" else "a"
        return f"{article} {node.op.name} to {node.shape}"
    return f"the {node.op.name} {node.shape} {node.dtype.name}"


def _zero_preserving(node: Node, sched: _Scheduler, root, memo: dict) -> bool:
    """Whether the ops inlined under `node` give 0 wherever every load gives 0 (as in a padded area).

    Loads and constants are masked by the pad's view, so they read 0 there; only the ops between them matter.
    `memo` (node id -> answer) is shared by the pads of one kernel, so nested pads walk each node once.
    """
    stack = [(node, False)]
    while stack:   # post-order: a node's answer is the AND of its own op's and its sources'
        n, expanded = stack.pop()
        if id(n) in memo:
            continue
        if n.realized or (id(n) in sched.realize and n is not root) or n.op in _BOUNDARY_OPS or n.op == Op.CONST:
            memo[id(n)] = True
        elif n.op is Op.GATHER:   # its table's load is masked by the pad's view like any load, whatever the index
            memo[id(n)] = True
        elif n.op not in MOVEMENT and (n.op not in _ZERO_PRESERVING or (n.op == Op.SIN and n.arg)):
            memo[id(n)] = False   # (SIN with a phase is a cos or -sin: not 0, or -0, at 0)
        elif expanded:
            memo[id(n)] = all(memo[id(s)] for s in n.src)
        else:
            stack.append((n, True))
            stack.extend((s, False) for s in n.src if id(s) not in memo)
    return memo[id(node)]


def _zero(dtype):
    return False if dtype == dtypes.bool else 0 if dtype.is_int else 0.0


@functools.lru_cache(maxsize=1 << 16)
def _view(shape: tuple[int, ...], moves) -> ShapeTracker:
    """The view `moves` make of a contiguous array of `shape` (cached: kernels of a graph repeat the same few)."""
    return _apply(ShapeTracker.from_shape(shape), moves)


def _apply(st: ShapeTracker, moves) -> ShapeTracker:
    for op, arg in moves:
        st = st.movement(op.name.lower(), arg)
    return st


def create_schedule(outputs: list[Node], readers=()) -> list[ScheduleItem]:
    """Kernels (in dependency order) that realize every node of `outputs`. `readers` are nodes that live tensors
    hold: those this schedule computes inline while they read a buffer it overwrites are realized too."""
    stats["schedules"] += 1
    with deep_recursion():   # (the scheduler's passes recurse along chains of fused ops)
        return _Scheduler(outputs, readers).schedule()


def schedule_with_members(outputs: list[Node]) -> list[tuple[ScheduleItem, list[Node]]]:
    """`create_schedule(outputs)` with, for each item, the graph nodes its kernel computes (tinyjit.viz)."""
    with deep_recursion():
        scheduler = _Scheduler(outputs)
        return [(item, scheduler.inlined_nodes(item)) for item in scheduler.schedule()]


def format_schedule(items: list[ScheduleItem]) -> str:
    """The schedule as text (DEBUG=3): one line per item, what it makes and from what, and for a kernel boundary
    that is not an output or a boundary op (realize, contiguous, copy, assign, empty) why it was not fused."""
    lines = [f"schedule: {len(items)} item{'s' if len(items) != 1 else ''}"]
    for i, item in enumerate(items):
        out = item.output
        sources = ", ".join(f"{n.op.name} {n.shape} {n.dtype.name}" for n in item.inputs) or "-"
        lines.append(f"  {i:>3} {item.kind:<6} {out.op.name:<10} {str(out.shape):<16} {out.dtype.name:<8} "
                     f"<- {sources}")
        if item.reason:
            lines.append(f"        not fused: {item.reason}")
    return "\n".join(lines)
