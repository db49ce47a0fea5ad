"""The schedule cache: an eager loop builds a new graph of the same structure every step, and realize asks for
its kernels again. `cached_schedule` keys a graph by its structure (GraphWalk: one walk that gives the key and the
graph's nodes in the scheduler's order) and binds the kernels scheduled for an earlier graph of the same structure
to this graph's nodes. tinyjit.gradient_cache keys gradient graphs with the same walk."""
from __future__ import annotations

import threading
from collections import OrderedDict

from tinyjit.lazy import Node
from tinyjit.ops import Op
from tinyjit.schedule import ScheduleItem, create_schedule, stats

# structures kept (LRU), and at most this many graph nodes over all their keys (a key holds a tuple per node)
SCHEDULE_CACHE_ENTRIES = 64
SCHEDULE_CACHE_NODES = 1 << 19
# key -> (its number of graph nodes, the schedule's template, the key itself)
_schedule_cache: "OrderedDict[_HashedKey, tuple[int, list, _HashedKey]]" = OrderedDict()
_schedule_cache_lock = threading.Lock()   # threads realize at once (TinyJit captures per thread)
stats["schedule_cache_hits"] = 0
stats["walked_nodes"] = 0   # nodes emitted by GraphWalks (tests count how often a step walks its graph)
stats["walks_continued"] = 0   # realizes that continued the walk of their loss's backward (walk_for)
stats["spliced_nodes"] = 0   # gradient nodes added to a walk from their template's entries (GraphWalk.splice)


def cached_schedule(outputs: list[Node], readers=(), walk: GraphWalk | None = None) -> list[ScheduleItem]:
    """`create_schedule`, reused for a graph of the same structure as an earlier one: same ops, arguments, dtypes,
    shapes and devices, node for node, the same realized inputs up to which buffer is which (an assign's target
    must be the same buffer as the one its value reads), the same outputs and live readers. What the scheduler
    decides depends on nothing else, so the earlier kernels (their ASTs) are bound to this graph's nodes instead
    of being built again: linear in the graph's size, without lowering anything. `walk`: the GraphWalk of
    `outputs` when the caller has one (realize shares it with its other passes)."""
    if walk is None:
        walk = GraphWalk(outputs)
    parts, graph = walk.key(readers, outputs), walk.graph
    try:
        key = _HashedKey(parts)
        with _schedule_cache_lock:
            cached = _schedule_cache.get(key)
            if cached is not None:   # (by the stored key: found by identity, not compared item by item again)
                _schedule_cache.move_to_end(cached[2])
    except TypeError:   # an argument that cannot be hashed: no caching
        return create_schedule(outputs, readers)
    if cached is not None:
        stats["schedule_cache_hits"] += 1
        node_at = graph.__getitem__   # (map over a bound method: no comprehension frame per item)
        return [ScheduleItem(kind, graph[out], list(map(node_at, ins)), ast, list(map(node_at, keep)) if keep else [],
                             reason) for kind, out, ins, ast, keep, reason in cached[1]]
    items = create_schedule(outputs, readers)
    index = walk.index
    try:
        template = [(item.kind, index[id(item.output)], [index[id(n)] for n in item.inputs], item.ast,
                     [index[id(n)] for n in item.preserve], item.reason) for item in items]
    except KeyError:   # a node outside the graph (not expected): schedule such graphs every time
        return items
    with _schedule_cache_lock:
        _schedule_cache[key] = (len(graph), template, key)
        total = sum(entry[0] for entry in _schedule_cache.values())
        while len(_schedule_cache) > 1 and (len(_schedule_cache) > SCHEDULE_CACHE_ENTRIES or
                                            total > SCHEDULE_CACHE_NODES):
            total -= _schedule_cache.popitem(last=False)[1][0]
    return items


class _HashedKey:
    """A structure key that hashes its (long) tuple once: a cache hit looks it up and moves it to the end of the
    LRU order, and a tuple hashes all its items each time it is asked."""
    __slots__ = ("parts", "hash")

    def __init__(self, parts: tuple):
        self.parts, self.hash = parts, hash(parts)   # (TypeError for an argument that cannot be hashed)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other) -> bool:
        return isinstance(other, _HashedKey) and self.hash == other.hash and self.parts == other.parts


_CONST = Op.CONST   # (a module constant: reading a member from the Enum class is a slow metaclass hook)


def _structure_key(outputs: list[Node], readers) -> tuple[tuple, list[Node]]:
    """(a key equal for graphs the scheduler treats alike, the graph's nodes in the scheduler's order): see
    GraphWalk, which computes both."""
    walk = GraphWalk(outputs)
    return walk.key(readers), walk.graph


class GraphWalk:
    """One walk over the graph under some outputs that gives the schedule cache's key and the graph's nodes in
    the scheduler's order (`graph`; `index`: id(node) -> its position there). It runs on every realize, hit or
    miss, and realize's other passes read its result instead of walking again (the pending index checks find
    their readers in `index`, the pending assigns' targets are among `graph`). `add` walks more outputs after
    those walked, in the same order as one walk over all of them (each output's unwalked nodes after the
    earlier ones'), so a realize that adds deferred readers extends the walk instead of starting over.

    The order is `toposort`'s (a node after its sources, stopping at realized nodes), and each node's entry of
    the key is written when it is emitted, with its sources' positions in the order instead of the nodes.
    Written for speed (a large eager step walks thousands of nodes):
    - the key is one flat list: per node its op, then for a realized node -1, its dtype, shape, device, which
      buffer it is (numbered by first use: only which is which matters) and the buffer's size; for a lazy node
      its number of sources, their positions, its argument (a constant's as its type and repr), dtype, shape
      and device. No container is kept per node (a tuple per node was two garbage-collected objects per node,
      and the collections they set off cost more than the walk): an entry of a common layout is added through
      one tuple, freed at once, which costs fewer bytecodes than an append per item;
    - one dict both marks the nodes being walked (-1) and holds the emitted ones' positions; a realized node or
      one without sources is emitted at its first visit;
    - a dtype is keyed by its name (equal names are equal dtypes; a str caches its hash, a DType's hash is a
      Python call each time the key is hashed)."""
    __slots__ = ("graph", "index", "roots", "realized", "continued", "_buffers", "_parts")

    def __init__(self, outputs: list[Node] = ()):
        self.graph: list[Node] = []
        self.index: dict[int, int] = {}     # id(node) -> its position in `graph`, or -1 while its sources are walked
        self.roots: dict[Node, None] = {}   # the unrealized outputs walked, in order (each once)
        self.realized = 0                   # nodes of `graph` that were realized when walked (where it stops)
        self.continued = False              # continued by another realize's outputs (walk_for)
        self._buffers: dict[int, int] = {}
        self._parts: list = []
        if outputs:
            self.add(outputs)

    def add(self, outputs: list[Node]) -> None:
        """Walk the graph under `outputs` too (nodes already walked are not walked again)."""
        roots = self.roots
        if len(outputs) == 1:   # (the common case, a tensor's realize: no containers to drop repeats)
            new = outputs if outputs[0].buffer is None and outputs[0] not in roots else ()
        else:
            new = [o for o in dict.fromkeys(outputs) if o.buffer is None and o not in roots]
        if not new:
            return
        for o in new:
            roots[o] = None
        graph, index, buffers = self.graph, self.index, self._buffers
        stack = list(reversed(new))
        push, pop, emit, get = stack.append, stack.pop, graph.append, index.get
        extend, write = self._parts.extend, self._parts.append
        realized, start = 0, len(graph)
        while stack:
            n = pop()
            node_id = id(n)
            position = get(node_id)
            if position is None:   # first visit
                b = n.buffer
                if b is not None:   # a realized node: where the walk stops, emitted at once
                    index[node_id] = len(graph)
                    emit(n)
                    realized += 1
                    extend((n.op, -1, n.dtype.name, n.shape, n.device, buffers.setdefault(id(b), len(buffers)),
                            b.size))
                    continue
                src = n.src
                if src:   # walk the sources first, then come back to it
                    index[node_id] = -1
                    push(n)
                    for s in reversed(src):
                        if id(s) not in index:
                            push(s)
                    continue
            elif position >= 0:   # emitted since this copy was pushed (a shared node)
                continue
            else:   # its sources are emitted
                src = n.src
            index[node_id] = len(graph)
            emit(n)
            # its entry: the common layouts as one tuple each, added to the key and freed at once
            op = n.op
            if op is _CONST:   # a Python scalar: its type and repr tell -0.0 from 0.0, 1 from 1.0, match a NaN
                write(op)
                write(len(src))
                for s in src:
                    write(index[id(s)])
                extend((type(n.arg), repr(n.arg), n.dtype.name, n.shape, n.device))
            elif len(src) == 1:
                extend((op, 1, index[id(src[0])], n.arg, n.dtype.name, n.shape, n.device))
            elif len(src) == 2:
                extend((op, 2, index[id(src[0])], index[id(src[1])], n.arg, n.dtype.name, n.shape, n.device))
            else:
                write(op)
                write(len(src))
                for s in src:
                    write(index[id(s)])
                extend((n.arg, n.dtype.name, n.shape, n.device))
        self.realized += realized
        stats["walked_nodes"] += len(graph) - start

    def splice(self, fixed: list[Node], new: list[Node], memo: list) -> bool:
        """Add a gradient graph instantiated from a template (tinyjit.gradient_cache) after the walked graph,
        without walking it: `fixed`, the template's reused nodes, then `new`, its new nodes, in the template's
        order (each after its sources, which are nodes of this walk or earlier ones of the two lists). The key gets
        each node's entry as a walk would write it for that order. The entries of `new` depend only on the
        template and on where they start (their sources are positions), so they are written once and kept in
        `memo` (the template's: memo[0] is (start, entries), replaced as one item: threads share templates); the
        few fixed nodes (constants, the arange buffers of a gather's gradient; possibly realized) are written each
        time. A realize that continues this walk (walk_for) finds these nodes walked. Returns False (nothing
        added) when a fixed node is walked already (then they are left to the realize's walk)."""
        index = self.index
        if any(id(n) in index for n in fixed):
            return False
        for n in fixed:
            self._emit(n)
        start = len(self.graph)
        self.graph.extend(new)
        index.update(zip(map(id, new), range(start, start + len(new))))
        memo_start, entries = memo[0]
        if memo_start != start:
            parts, self._parts = self._parts, []
            try:
                for n in new:
                    self._entry(n)
                entries = tuple(self._parts)
            finally:
                self._parts = parts
            memo[0] = (start, entries)
        self._parts.extend(entries)
        stats["spliced_nodes"] += len(fixed) + len(new)
        return True

    def _emit(self, n: Node) -> None:
        """Add one node whose sources are walked (or a realized node) to the graph and its entry to the key."""
        self.index[id(n)] = len(self.graph)
        self.graph.append(n)
        self._entry(n)

    def _entry(self, n: Node) -> None:
        """The key entry of one node, the layouts `add` writes (inline there, for speed)."""
        index, extend = self.index, self._parts.extend
        b = n.buffer
        if b is not None:
            self.realized += 1
            buffers = self._buffers
            extend((n.op, -1, n.dtype.name, n.shape, n.device, buffers.setdefault(id(b), len(buffers)), b.size))
        elif n.op is _CONST:
            extend((n.op, len(n.src), *[index[id(s)] for s in n.src], type(n.arg), repr(n.arg), n.dtype.name,
                    n.shape, n.device))
        else:
            extend((n.op, len(n.src), *[index[id(s)] for s in n.src], n.arg, n.dtype.name, n.shape, n.device))

    def is_stale(self) -> bool:
        """Whether some node of `graph` was realized since it was walked (then the walk would stop there now)."""
        return sum(1 for n in self.graph if n.buffer is not None) != self.realized

    def key(self, readers=(), outputs=None) -> tuple:
        """The structure key of the walked graph with these live `readers` (nodes that live tensors hold) and
        `outputs` (the nodes to schedule, each walked). The outputs are keyed as the scheduler receives them, in
        their order, each once and without the realized ones: the roots walked, in the order walked, unless the
        walk was continued from another one (walk_for), which walked that one's root first."""
        index, parts = self.index, self._parts
        roots = [o for o in dict.fromkeys(outputs) if o.buffer is None] if self.continued and outputs is not None \
            else self.roots
        tail = [tuple([index[id(o)] for o in roots])]
        if readers:
            tail.append(tuple(sorted({index[id(r)] for r in readers if index.get(id(r), -1) >= 0})))
        parts += tail   # (appended for the one copy into the tuple, then taken off: the walk may go on)
        key = tuple(parts)
        del parts[-len(tail):]
        return key


class _Continued(threading.local):
    walk = None   # per thread: the GraphWalk of the last backward's output (remember_walk), until the next realize


remembered_walks = _Continued()


def remember_walk(walk: GraphWalk) -> None:
    """Keep the GraphWalk of a backward's output (the loss: its forward graph) for this thread's next realize,
    which in a training loop realizes that loss together with the optimizer's updates (tinyjit.deferred) and so
    walks the same forward graph again: walk_for continues this walk instead. Held until the next realize of
    this thread (used or not), so at most one forward graph is kept alive by it."""
    remembered_walks.walk = walk


def walk_for(outputs: list[Node]) -> GraphWalk:
    """GraphWalk(outputs), or the remembered walk (remember_walk) continued with `outputs` when its root is one
    of them and none of its nodes was realized since it was walked: its nodes are not walked again. The graph
    and key then list the remembered root's graph first, a different order from a fresh walk's (another key, the
    same structure key for the same structure): the key is still a complete description of the graph, and the
    outputs are keyed in their own order (GraphWalk.key), so a cache hit still means the same graph and outputs."""
    seed = remembered_walks.walk
    if seed is None:   # (every realize asks: the common case without a write)
        return GraphWalk(outputs)
    remembered_walks.walk = None
    if len(seed.roots) == 1:
        root = next(iter(seed.roots))
        if any(o is root for o in outputs) and not seed.is_stale():
            stats["walks_continued"] += 1
            seed.continued = True
            seed.add(outputs)
            return seed
    return GraphWalk(outputs)
