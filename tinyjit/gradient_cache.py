"""The gradient cache: an eager training loop builds a forward graph of the same structure every step, and its
backward pass would run the same gradient rules on it node by node again. Instead the gradient graph the rules
built is kept as a template, and a later backward over a graph of the same structure makes the
same nodes again from it, bound to the new graph's nodes (one node constructor per gradient node, no rule, no
decision). A key is only remembered the first time it is seen; the template is recorded when it comes again,
so a program whose graphs never repeat does not pay for recording them.

The key (made in `gradient`, from a `ReachableWalk`) holds everything the rules read:
- the forward graph under the outputs as the schedule cache keys it (schedule_cache.GraphWalk: per node its op,
  argument, dtype, shape, device and sources; constants by type and repr; a realized node as which buffer it is),
  so a different constant, dtype, broadcast, view or realized-ness is another key;
- per node gradient flows through, the edges it flows along (autograd's recorded edges, cut at leaves);
- which nodes the gradients are asked for (by position).
The template is used only when the gradient rules are known to be a function of that key alone (`cacheable`):
no gradient hooks, no custom rules (Functions, formulas with saved inputs) other than derivatives keyed by their
formula (autograd_graph.CustomGrad.formula: tanh's and sigmoid's, from the result), no replaced nodes (`t.data =
v`), no explicit grad_outputs, no create_graph, and every node gradient flows through lazy and inside the walked
graph. Nodes the rules build
that depend on no forward node (their constants, the arange buffers a gather's gradient uploads) are kept and
reused as they are; any other node the rules read from outside the walked graph makes the graph uncached.
Side effects of the rules are replayed: a gather's gradient shares the forward's pending index checks.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from operator import itemgetter
from typing import Callable, Optional, Sequence

from tinyjit import autograd_graph
from tinyjit.index_check import share_checks
from tinyjit.lazy import Node
from tinyjit.ops import Op
from tinyjit.schedule_cache import GraphWalk, _HashedKey

# templates kept (LRU), and at most this many template nodes over all of them
GRADIENT_CACHE_ENTRIES = 16
GRADIENT_CACHE_NODES = 1 << 18
# record the template the first time a key is seen, not the second (tests: every repeat is then a hit)
TEMPLATE_AT_FIRST_SIGHT = False
# rewrites: gradient graphs built by the rules; hits: built from a template; uncached: not cacheable
stats = {"gradient_rewrites": 0, "gradient_cache_hits": 0, "gradient_uncached": 0}


class _Template:
    """A gradient graph in terms of the forward graph's positions (GraphWalk order).

    A reference is an index into the values list of an instance: the forward graph's nodes (GraphWalk order), then
    `fixed` (nodes reused as they are), then one node per entry of `entries`. An entry is (op, a getter of its
    sources from the values list (operator.itemgetter), whether it has one source, arg, dtype, shape, device).
    `entries` None: the key was seen once and nothing was recorded yet. `results`: the reference of each target's
    gradient (or None); `checks`: (gather position, reference of its table's gradient) to share index checks."""
    __slots__ = ("fixed", "entries", "results", "checks", "size", "key", "walk_memo", "splices")

    def __init__(self, fixed: list, entries: list, results: list, checks: list):
        self.fixed, self.entries, self.results, self.checks = fixed, entries, results, checks
        self.size = len(fixed) + len(entries or ())
        self.key = None   # (its key in the cache)
        self.walk_memo = [(None, ())]   # the key entries of its new nodes in a walk (GraphWalk.splice)
        # whether its nodes may be spliced into the walk: not when the rules made an assign (realize reads the
        # targets of the assigns among the walked nodes: only what it realizes may be there)
        self.splices = not any(entry[0] is Op.ASSIGN for entry in entries or ())


_cache: "OrderedDict[_HashedKey, _Template]" = OrderedDict()
_lock = threading.Lock()


def _new_lock_in_child() -> None:   # (a fork while another thread held the lock would leave the child's held)
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def cacheable(hook, grad_outputs, create_graph: bool) -> bool:
    """Whether a backward with these settings may use the cache at all (the graph is checked in `gradient`)."""
    return hook is None and grad_outputs is None and not create_graph and not autograd_graph.REPLACED


class ReachableWalk:
    """The graph under some outputs walked once for both the cache key and autograd: `order`, the nodes gradient
    reaches (autograd_graph.reachable's set, in the walk's order: sources first), found by one pass over the walk
    in reverse; `parts`, per reached node its position and edges. `order` is None when gradient flows out of the
    walked graph (through a realized node, which the walk does not pass) or through a custom rule without a
    formula key: such a graph is not cached (the caller walks it with autograd_graph.reachable). A keyed rule adds
    its formula and its sources' positions to `parts`."""
    __slots__ = ("walk", "order", "parts")

    def __init__(self, out_nodes: list[Node], edges: Callable):
        self.walk = walk = GraphWalk(out_nodes)
        self.order: Optional[list[Node]] = None
        self.parts: list = []
        index, graph = walk.index, walk.graph
        if not walk.roots or len(walk.roots) != len(set(map(id, out_nodes))):   # (a realized output)
            return
        custom = autograd_graph.CUSTOM if len(autograd_graph.CUSTOM) else None   # (a weak dict's len is a call)
        reached = {id(o) for o in out_nodes}
        order, parts = [], self.parts
        for position in range(len(graph) - 1, -1, -1):
            node = graph[position]
            if id(node) not in reached:
                continue
            mask = edges(node)
            order.append(node)
            parts.append(position)
            parts.append(mask)
            if not mask:
                continue
            if node.buffer is not None:
                return
            sources = node.src
            rule = custom.get(node) if custom and node.op is autograd_graph.CUSTOM_OP else None
            if rule is not None:   # a custom rule: cached only when its formula is keyed (see CustomGrad)
                if rule.formula is None:
                    return
                sources = rule.src
                parts.append(rule.formula)
                parts.append(tuple(index.get(id(s), -1) for s in sources))
            for s, flows in zip(sources, mask):
                if flows:
                    if id(s) not in index:
                        return
                    reached.add(id(s))
        order.reverse()
        self.order = order


def gradient(out_nodes: list[Node], targets: list[Node], edges: Callable,
             reach: ReachableWalk, splice: bool = False) -> list[Optional[Node]]:
    """autograd_graph.gradient(out_nodes, targets, None, edges, order=reach.order) (no hook, default grad
    outputs), through the cache. `reach`: the ReachableWalk of out_nodes, whose order is not None. `splice`: a
    gradient graph made from a template is added to reach.walk (GraphWalk.splice), for the realize that
    continues that walk (backward's: schedule_cache.remember_walk)."""
    walk, order, parts = reach.walk, reach.order, list(reach.parts)
    index = walk.index
    try:
        parts.append(tuple(index[id(t)] for t in targets))
    except KeyError:   # (a target outside the walked graph)
        stats["gradient_uncached"] += 1
        return autograd_graph.gradient(out_nodes, targets, None, edges, order=order)
    try:
        key = _HashedKey((walk.key(), tuple(parts)))
        with _lock:
            template = _cache.get(key)
            if template is not None:   # (by the stored key: found by identity, not compared item by item again)
                _cache.move_to_end(template.key)
    except TypeError:   # an argument that cannot be hashed
        stats["gradient_uncached"] += 1
        return autograd_graph.gradient(out_nodes, targets, None, edges, order=order)
    if template is not None and template.entries is not None and _fixed_untouched(template):
        stats["gradient_cache_hits"] += 1
        forward = len(walk.graph)
        grads, values = _instantiate(template, walk.graph)
        if splice and template.splices:
            walk.splice(values[forward:forward + len(template.fixed)], values[forward + len(template.fixed):],
                        template.walk_memo)
        return grads
    # first sight: the rules run, and only the key is kept (a graph that never repeats records no template)
    if template is None and not TEMPLATE_AT_FIRST_SIGHT and not splice:
        grads = autograd_graph.gradient(out_nodes, targets, None, edges, order=order)
        stats["gradient_rewrites"] += 1
        _store(key, _Template([], None, [], []))
        return grads
    # seen before: the rules run once more, recorded as a template. A gradient graph spliced into the walk is
    # made a template at first sight too (not kept): every step of a loop, the first too, then splices in the
    # template's order, so the realize's key (and schedule) is the same from the first step on
    record = template is not None or TEMPLATE_AT_FIRST_SIGHT
    log = autograd_graph.rule_log
    log.entries, log.constant_buffers = [], set()
    try:
        grads = autograd_graph.gradient(out_nodes, targets, None, edges, order=order)
        checks, constant_buffers = log.entries, log.constant_buffers
    finally:
        log.entries, log.constant_buffers = None, set()
    stats["gradient_rewrites"] += 1
    made = _make_template(grads, checks, constant_buffers, index, len(walk.graph))
    if made is not None:
        template, new_nodes = made
        if splice and template.splices:
            walk.splice(template.fixed, new_nodes, template.walk_memo)
        if record:
            _store(key, template)
    if not record:
        _store(key, _Template([], None, [], []))
    return grads


def _store(key: _HashedKey, template: _Template) -> None:
    template.key = key
    with _lock:
        _cache[key] = template
        total = sum(t.size for t in _cache.values())
        while len(_cache) > 1 and (len(_cache) > GRADIENT_CACHE_ENTRIES or total > GRADIENT_CACHE_NODES):
            total -= _cache.popitem(last=False)[1].size


def _fixed_untouched(template: _Template) -> bool:
    """Whether the reused nodes are still plain values (none was marked by autograd since)."""
    return all(n.edges is None and n.leaf is None for n in template.fixed)


def _instantiate(template: _Template, graph: list[Node]) -> tuple[list[Optional[Node]], list[Node]]:
    """(the gradient nodes of the template's results, every value: graph, then the fixed nodes, then the new)"""
    values = graph + template.fixed
    make, add = Node, values.append
    for op, get, single, arg, dtype, shape, device in template.entries:   # (sources by C-level getters)
        add(make(op, (get(values),) if single else get(values), arg, dtype, shape, device))
    for position, ref in template.checks:
        share_checks(values[position], values[ref])
    return [None if r is None else values[r] for r in template.results], values


_CONST, _BUFFER = Op.CONST, Op.BUFFER


def _make_template(grads: Sequence[Optional[Node]], checks: list, constant_buffers: set, index: dict,
                   forward_nodes: int) -> Optional[tuple[_Template, list[Node]]]:
    """(the template of the gradient graph `grads` over the forward graph whose positions `index` gives, the nodes
    of `grads` its entries stand for, in their order), or None when some node the rules read lies outside that
    graph and is not a constant of the rules' own."""
    refs: dict[int, int] = {}     # id(node) -> its reference
    fixed: list[Node] = []
    entries: list = []
    new_nodes: list[Node] = []
    # nodes in post-order (sources first); the gradient graph is a DAG, walked once per node
    roots = [g for g in grads if g is not None] + [grad for _, grad in checks]
    stack = [(g, False) for g in reversed(roots)]
    depends: dict[int, bool] = {}   # id(node) -> whether it depends on a forward node
    order: list[Node] = []
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if key in depends:
            continue
        position = index.get(key)
        if position is not None:
            depends[key] = True
            refs[key] = position
            continue
        if not expanded:
            if not node.src:
                if node.op is not _CONST and not (node.op is _BUFFER and key in constant_buffers):
                    return None   # a node from outside the walked graph (e.g. beyond a realized node)
                if node.edges is not None or node.leaf is not None:
                    return None
                depends[key] = False
                order.append(node)
                continue
            stack.append((node, True))
            stack.extend((s, False) for s in node.src if id(s) not in depends)
            continue
        depends[key] = any(depends[id(s)] for s in node.src)
        if node.buffer is not None or node.edges is not None or node.leaf is not None:
            return None   # (new nodes of the rules are plain lazy values)
        order.append(node)
    for node in order:   # nodes that depend on no forward node keep their objects (constants): first
        if not depends[id(node)]:
            refs[id(node)] = forward_nodes + len(fixed)
            fixed.append(node)
    for node in order:
        if id(node) in refs:
            continue
        refs[id(node)] = forward_nodes + len(fixed) + len(entries)
        sources = [refs[id(s)] for s in node.src]
        entries.append((node.op, itemgetter(*sources), len(sources) == 1, node.arg, node.dtype, node.shape,
                        node.device))
        new_nodes.append(node)
    # (fixed nodes come first in the values list: an entry's references are all to earlier values)
    results = [None if g is None else refs[id(g)] for g in grads]
    check_refs = [(index[id(n)], refs[id(grad)]) for n, grad in checks if id(n) in index]
    if len(check_refs) != len(checks):
        return None
    return _Template(fixed, entries, results, check_refs), new_nodes
