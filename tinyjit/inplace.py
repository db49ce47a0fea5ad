"""In-place updates never change the meaning of a lazy value: copy-on-write for the buffers an assign overwrites.

An assign writes its target's buffer in place: parameters and optimizer state keep their memory, and a TinyJit
replay sees the update. A lazy value built before it may still read the old contents, and a node never changes
what it means (DESIGN.md): `r = x * 3; x += 1; x.realize(); r.numpy()` is the old x times 3. Within one schedule
the scheduler runs such reads before the assign. A value outside the schedule is one of:

- computed by the schedule anyway (its node is part of the graph being realized, e.g. a `.grad` fused into its
  SGD update, or a model output the caller still holds): the schedule stores it too (`create_schedule(readers=)`),
  which costs one store and no copy;
- otherwise preserved: just before the assign runs, the old contents are copied to a new buffer and the realized
  nodes that held them are pointed at the copy (`preservation_plan`, then `realize.run_schedule`).

Nothing is copied when no live tensor can still read the old contents, which is the normal training loop: the
loss is realized with the step (tinyjit.deferred) and the gradients are realized by it or only read buffers it
computes. Who can still read a value are the live Tensors: each registers a weak reference here when it is made
(or assigned), so that a schedule with assigns looks at the lazy ones and at those over the buffers it overwrites.

Views are values, not aliases (unlike PyTorch): `y = x.detach()`, `y = x[1:]` or `Tensor(x)` keep the value x had
when they were made, whatever is later assigned into x. The one alias is `x.data` (torch.Tensor.data): it reads and
writes x's own node, so `p.data.add_(g, alpha=-lr)` updates p. Writing into a view taken by indexing (`x[0] += 1`)
assigns x (tinyjit.indexing.WriteBack); writing into another view of a live tensor raises (`viewed_tensor_shape`).
"""
from __future__ import annotations

import threading
import weakref
from collections import defaultdict
from contextlib import contextmanager

from tinyjit.lazy import Node, toposort
from tinyjit.ops import Op

# Live tensors, weakly: those whose node was lazy when registered (and tensors just assigned), and those whose node
# was realized, by id(buffer). A scan walks the lazy ones (moving the realized ones over) and looks up the holders
# of the overwritten buffers only, so many live parameters cost nothing. Dead references are dropped now and then.
_lazy: list[weakref.ref] = []
_by_buffer: dict[int, list[weakref.ref]] = {}
_lock = threading.RLock()   # reentrant: a TinyJit freed by GC while the lock is held calls watch() (same thread)
_purge_at = {"lazy": 1024, "buffers": 1024, "released": 1024}
# tensors a gradient rule saved whose rule has built its gradient (`release`), by id -> their weak reference
_released: dict[int, weakref.ref] = {}
# assign nodes not realized yet, with the thread that made each (by id; under _lock)
_pending_assigns: dict[int, tuple[weakref.ref, int]] = {}
# TinyJit replays write in place without a schedule: the buffers they write are watched, and `_epoch` counts the
# tensors filed under a watched buffer, so a replay checks again only when something new may read one
_watched: dict[int, int] = {}      # id(buffer) -> how many captures write it
_epoch = [0]
class _AssignLog(threading.local):
    log = None   # per thread: the tensors assigned during a capture (the class attribute: a cheap default)


_assign_log = _AssignLog()
stats = {"buffers_preserved": 0}   # how many times old contents were copied (tests count them)


def track(tensor) -> None:
    """Register a Tensor (weakly) whose node was just set: a value someone may still read."""
    ref = weakref.ref(tensor)
    buffer = tensor.node.buffer
    if buffer is None:
        # without the lock (every op's result comes here): list.append is atomic, and whatever removes from _lazy
        # holds the lock and removes only the items it read, so an append made meanwhile is never lost
        _lazy.append(ref)
        if len(_lazy) > _purge_at["lazy"]:
            with _lock:
                read = len(_lazy)
                if read > _purge_at["lazy"]:   # (not purged by another thread meanwhile)
                    _lazy[:read] = [r for r in _lazy[:read] if r() is not None]
                    _purge_at["lazy"] = max(1024, 2 * len(_lazy))
    else:
        with _lock:
            _add_holder(buffer, ref)


def _add_holder(buffer, ref) -> None:
    """(under _lock)"""
    refs = _by_buffer.setdefault(id(buffer), [])
    if any(r is ref for r in refs):   # (a reference without callback is one object per tensor)
        return
    refs.append(ref)
    if id(buffer) in _watched:
        _epoch[0] += 1
    if len(refs) > 8:
        refs[:] = [r for r in refs if r() is not None]
    if len(_by_buffer) > _purge_at["buffers"]:   # entries of freed buffers (ids are reused: holders are checked)
        for key in [k for k, v in _by_buffer.items() if all(r() is None for r in v)]:
            del _by_buffer[key]
        _purge_at["buffers"] = max(1024, 2 * len(_by_buffer))


def lazy_tensors() -> list:
    """The live tensors whose node is not realized (the others are filed by buffer on the way)."""
    with _lock:
        refs = _lazy[:]
        del _lazy[:len(refs)]   # (not clear(): a tensor another thread tracked meanwhile stays, see track)
        out, seen = [], set()
        for r in refs:
            t = r()
            if t is None or id(t) in seen or _released.get(id(t)) is r:   # (a tensor assigned again is listed again)
                continue
            seen.add(id(t))
            buffer = t.node.buffer
            if buffer is None:
                out.append(t)
                _lazy.append(r)
            else:
                _add_holder(buffer, r)
        return out


def release(tensors) -> None:
    """`tensors` were saved by a gradient rule (Tensor._frozen) that has now built its gradient: they stop being
    live readers, so an assign to a buffer they read (the optimizer step right after backward) neither stores their
    lazy value nor copies the old contents for them. The gradient built reads their nodes and is protected through
    the tensors that hold it (`.grad`); only a later backward through the same rule reads the buffers as they are
    then, as every op without a rule always does (PyTorch raises there: a saved tensor was modified in place)."""
    with _lock:
        for t in tensors:
            ref = weakref.ref(t)   # (the one reference without callback that track() filed too)
            _released[id(t)] = ref
            buffer = t.node.buffer
            if buffer is not None and id(buffer) in _by_buffer:
                _by_buffer[id(buffer)] = [r for r in _by_buffer[id(buffer)] if r is not ref]
        if len(_released) > _purge_at["released"]:
            for key in [k for k, r in _released.items() if r() is None]:
                del _released[key]
            _purge_at["released"] = max(1024, 2 * len(_released))


def holders(buffer) -> list[Node]:
    """The nodes over `buffer` that live tensors hold directly (a tensor made over it, or realized into it)."""
    with _lock:
        refs = list(_by_buffer.get(id(buffer), ()))
    nodes = [t.node for t in (r() for r in refs) if t is not None and t.node.buffer is buffer]
    return list({id(n): n for n in nodes}.values())


# the ops PyTorch returns as views sharing the input's storage (flip and pad copy in PyTorch)
TORCH_VIEWS = (Op.RESHAPE, Op.PERMUTE, Op.EXPAND, Op.SHRINK)


def viewed_tensor_shape(tensor) -> "tuple | None":
    """The shape of the live tensor that `tensor` is a view of in PyTorch's sense (made from it by reshapes,
    permutes, expands and slices), or None. PyTorch writes through such a view into that tensor; tinyjit's views are
    values, so an in-place update of one is refused (tinyjit.tensor.Tensor.assign)."""
    root = tensor._view_of() if tensor._view_of is not None else None
    return root.shape if root is not None and root is not tensor else None


def note_assign(tensor) -> None:
    """`tensor` was just assigned (its node is an assign): realizing graphs must look for readers of the buffer it
    overwrites, and the tensor itself is a lazy value now."""
    ref = weakref.ref(tensor)
    with _lock:
        _pending_assigns[id(tensor.node)] = (weakref.ref(tensor.node), threading.get_ident())
        _lazy.append(ref)
    log = _assign_log.log
    if log is not None:
        log.append(ref)


def assigns_pending() -> bool:
    """Whether some assign node is still unrealized (otherwise no schedule overwrites anything: nothing to do)."""
    if not _pending_assigns:   # (every realize asks: no lock when there is none)
        return False
    with _lock:
        for key, (ref, _) in list(_pending_assigns.items()):
            node = ref()
            if node is not None and not node.realized:
                return True
            del _pending_assigns[key]
    return False


def pending_assign_nodes(this_thread: bool = False) -> list[Node]:
    """The assign nodes not realized yet (their buffers still hold the old contents); this_thread: only those the
    calling thread made."""
    me = threading.get_ident()
    with _lock:
        nodes = [ref() for ref, thread in _pending_assigns.values() if not this_thread or thread == me]
    return [n for n in nodes if n is not None and not n.realized]


def assign_targets(outputs: list[Node], graph: list[Node] | None = None) -> set[int]:
    """ids of the buffers that realizing `outputs` overwrites. `graph`: their graph's nodes when the caller has
    walked it (schedule_cache.GraphWalk), or None to walk it here."""
    _assign = Op.ASSIGN
    return {id(target_buffer(n)) for n in (toposort(outputs) if graph is None else graph)
            if n.op is _assign and n.buffer is None}


def reads_any(node: Node, buffers: set[int]) -> bool:
    """Whether `node`, through nodes that are not realized, reads one of `buffers` (ids)."""
    return any(n.buffer is not None and id(n.buffer) in buffers for n in toposort([node]))


def target_buffer(assign: Node):
    """The buffer an assign writes (the target of a chain of assigns)."""
    node = assign.src[0]
    while node.op == Op.ASSIGN and not node.realized:
        node = node.src[0]
    return node.buffer


def preservation_plan(items, lazy: list) -> dict[int, list[Node]]:
    """For each buffer that an assign of `items` (a schedule) overwrites: the nodes holding its contents that a live
    tensor still reads after the schedule ran, keyed by id(buffer). They are realized nodes over the buffer (held
    by a tensor, or read by a lazy tensor through nodes that stay lazy), or assigns of this schedule that a later
    one overwrites. `lazy`: the live tensors whose node was lazy before the schedule (`lazy_tensors()`)."""
    buffers = {}
    for item in items:
        if item.output.op == Op.ASSIGN:
            buffer = target_buffer(item.output)
            buffers[id(buffer)] = buffer
    if not buffers:
        return {}
    plan: dict[int, list[Node]] = defaultdict(list)
    for key, buffer in buffers.items():
        plan[key].extend(holders(buffer))
    _reached(lazy, set(buffers), {id(item.output): item.output for item in items}, plan)
    return plan


def _reached(lazy: list, targets: set, made: dict, plan: dict) -> None:
    """Add to `plan` the nodes over a buffer in `targets` that the lazy tensors read: realized ones reached through
    nodes that stay lazy, and assigns among `made` (nodes the running schedule realizes; the walk stops there)."""
    seen: set[tuple[int, bool]] = set()
    # (node, whether it is reached from the value of an assign recorded for autograd)
    stack = [(t.node, False) for t in lazy]
    while stack:
        node, for_gradient = stack.pop()
        if (id(node), for_gradient) in seen:
            continue
        seen.add((id(node), for_gradient))
        if node.buffer is not None:
            if id(node.buffer) in targets:
                plan[id(node.buffer)].append(node)
        elif id(node) in made:
            if node.op == Op.ASSIGN:
                plan[id(target_buffer(node))].append(node)
        else:
            stack.extend((src, for_gradient) for src in node.src)
            continue
        if node.op == Op.ASSIGN and node.edges is not None:
            # an assign recorded for autograd (`y *= b` on a result) keeps its graph when realized: a backward pass
            # may still read what its value read (not its target node, which no gradient reads and which must keep
            # the buffer it writes)
            stack.extend((src, True) for src in node.src[1:])
        elif for_gradient and node.edges is not None:
            # a result of that value's graph (realized, by now or by this schedule, keeping its graph): the
            # gradient reads what it read (`n[0:2] = n[0:2] * c; n[1] = 7`: d/dc reads n's old contents)
            stack.extend((src, True) for src in node.src)


@contextmanager
def recording_assigns():
    """Collect weak references to the tensors this thread assigns until the block ends (TinyJit's capture)."""
    previous = _assign_log.log
    _assign_log.log = log = []
    try:
        yield log
    finally:
        _assign_log.log = previous


def watch(buffers, watching: bool = True) -> None:
    """Buffers a TinyJit replay writes in place (or, watching=False, no longer)."""
    with _lock:
        for b in buffers:
            _watched[id(b)] = _watched.get(id(b), 0) + (1 if watching else -1)
            if _watched[id(b)] <= 0:
                del _watched[id(b)]


def replay_plan(buffers: list, owner_refs: list, checked: int, skip, safe) -> tuple[int, list, dict]:
    """Before a TinyJit replay writes `buffers` in place: (epoch, owners to renew, plan). The plan is as in
    `preservation_plan`, for nodes that tensors other than the owners (the tensors the captured function assigned)
    hold or read; `skip` are nodes of the replay's own outputs (a call's outputs are overwritten by the next call,
    by contract). An owner whose node is in the plan needs a node of its own for the new contents. Nothing is
    looked at when no new lazy tensor is alive and no tensor was filed under one of the buffers since epoch
    `checked`. `safe` (a WeakSet) collects the lazy nodes checked: once their readers of these buffers got copies
    they never read them again (a node realized later gets a new buffer), so they are not walked again."""
    lazy = [t for t in lazy_tensors() if t.node not in safe]
    safe.update(t.node for t in lazy)
    epoch = _epoch[0]
    if not lazy and epoch == checked:
        return epoch, [], {}
    owners = [t for t in (ref() for ref in owner_refs) if t is not None]
    owner_ids = {id(t) for t in owners}
    plan: dict[int, list[Node]] = defaultdict(list)
    for b in buffers:
        with _lock:
            refs = list(_by_buffer.get(id(b), ()))
        for t in (r() for r in refs):
            if t is not None and id(t) not in owner_ids and t.node.buffer is b and t.node not in skip:
                plan[id(b)].append(t.node)
    _reached(lazy, {id(b) for b in buffers}, {}, plan)
    for key in plan:
        plan[key] = [n for n in plan[key] if n not in skip]
    renew = [t for t in owners
             if t.node.buffer is not None and any(n is t.node for n in plan.get(id(t.node.buffer), ()))]
    return epoch, renew, plan
