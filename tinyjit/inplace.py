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
computes. Who can still read a value are the live Tensors: each registers a weak reference here when it is made.

Views are values, not aliases (unlike PyTorch): `y = x.detach()`, `y = x[1:]` or `Tensor(x)` keep the value x had
when they were made, whatever is later assigned into x.
"""
from __future__ import annotations

import threading
import weakref
from collections import defaultdict

from tinyjit.lazy import Node
from tinyjit.ops import Op

_live: list[weakref.ref] = []      # every Tensor made (dead references are dropped now and then)
_live_lock = threading.Lock()
_purge_at = [1024]                 # drop dead references when the list grows past this
_pending_assigns: "weakref.WeakSet[Node]" = weakref.WeakSet()   # assign nodes not realized yet
stats = {"buffers_preserved": 0}   # how many times old contents were copied (tests count them)


def track(tensor) -> None:
    """Register a new Tensor (weakly): a value someone may still read."""
    ref = weakref.ref(tensor)
    with _live_lock:
        _live.append(ref)
        if len(_live) > _purge_at[0]:
            _live[:] = [r for r in _live if r() is not None]
            _purge_at[0] = max(1024, 2 * len(_live))


def live_tensors() -> list:
    with _live_lock:
        refs = list(_live)
    return [t for t in (r() for r in refs) if t is not None]


def note_assign(node: Node) -> None:
    """An assign node was made: realizing graphs must look for readers of the buffer it overwrites."""
    _pending_assigns.add(node)


def assigns_pending() -> bool:
    """Whether some assign node is still unrealized (otherwise no schedule overwrites anything: nothing to do)."""
    for node in list(_pending_assigns):
        if node.realized:
            _pending_assigns.discard(node)
        else:
            return True
    return False


def target_buffer(assign: Node):
    """The buffer an assign writes (the target of a chain of assigns)."""
    node = assign.src[0]
    while node.op == Op.ASSIGN and not node.realized:
        node = node.src[0]
    return node.buffer


def preservation_plan(items, tensors) -> dict[int, list[Node]]:
    """For each buffer that an assign of `items` (a schedule) overwrites: the nodes holding its contents that a live
    tensor still reads after the schedule ran, keyed by id(buffer). They are realized nodes over the buffer, or
    assigns of this schedule that a later one overwrites. A tensor reads through every node that stays lazy."""
    targets = {id(target_buffer(item.output)) for item in items if item.output.op == Op.ASSIGN}
    if not targets:
        return {}
    made = {id(item.output): item.output for item in items}
    plan: dict[int, list[Node]] = defaultdict(list)
    seen: set[int] = set()
    stack = [t.node for t in tensors]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.buffer is not None:
            if id(node.buffer) in targets:
                plan[id(node.buffer)].append(node)
        elif id(node) in made:
            if node.op == Op.ASSIGN:
                plan[id(target_buffer(node))].append(node)
        else:
            stack.extend(node.src)
    return plan
