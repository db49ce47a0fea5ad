"""Templates of composite elementwise functions (tanh, sigmoid, gelu, ...): each call of such a function on a tensor
builds the same subgraph of primitive ops for the same input dtype, shape and device (tanh: 43 nodes, one Tensor,
one dispatch through the operand rules and one autograd record per node). The first call records the subgraph it
built as a template in terms of its input node; a later call with the same key makes the same nodes again from it
(one node constructor per node, with the autograd edges the ops recorded), as tinyjit.gradient_cache does for
gradient graphs, and wraps only the result in a Tensor.

The key holds everything those functions' construction reads: the function and its arguments, the input's dtype,
shape and device, whether it requires grad, and whether gradients are recorded (no_grad). A template is only
made of nodes that depend on the input, each a plain lazy node (no buffer, no leaf, no custom gradient rule: erf's
gradient is a custom rule, so a gelu under autograd is never templated), and of constants that depend on nothing
(reused as they are while untouched, like Node.shared_const's). Anything else makes the key untemplated (the
function then always runs).
"""
from __future__ import annotations

import functools
import threading
from operator import itemgetter
from typing import Callable

from tinyjit import autograd_graph
from tinyjit.lazy import Node
from tinyjit.ops import Op
from tinyjit.tensor_base import _no_grad_active

# keys kept; all are dropped when there are more (input shapes vary little in a training loop)
COMPOSITE_CACHE_ENTRIES = 512
stats = {"composite_records": 0, "composite_hits": 0}
_templates: dict[tuple, "_Template | None"] = {}   # key -> template, or None: not templatable
_lock = threading.Lock()
_NOT_SEEN = object()
# movement ops a constant is broadcast with (Node.const): the only ops a reused constant subgraph may hold
_CONSTANT_OPS = frozenset((Op.CONST, Op.RESHAPE, Op.EXPAND))


class _Template:
    """A composite's subgraph over its input: values are [input node] + `fixed` (constants reused) + one node per
    entry (op, getter of its sources from the values, whether it has one source, arg, dtype, shape, device,
    autograd edges). The last entry is the result; `requires_grad` and `ctx` are the result tensor's autograd
    state."""
    __slots__ = ("fixed", "entries", "requires_grad", "ctx")

    def __init__(self, fixed: list, entries: list, requires_grad, ctx):
        self.fixed, self.entries, self.requires_grad, self.ctx = fixed, entries, requires_grad, ctx


def templated(fn: Callable) -> Callable:
    """Decorate a Tensor method computing an elementwise composite of its tensor (and hashable arguments) with no
    side effect but the nodes it builds."""
    @functools.wraps(fn)
    def method(self, *args, **kwargs):
        node = self.node
        try:   # (the dtype by name: equal names are equal dtypes, and a str hashes without a Python call)
            key = (fn, args, tuple(kwargs.items()) if kwargs else None, node.dtype.name, node.shape, node.device,
                   bool(self._requires_grad), _no_grad_active())
            template = _templates.get(key, _NOT_SEEN)
        except TypeError:   # (an argument that cannot be hashed)
            return fn(self, *args, **kwargs)
        if template is None:
            return fn(self, *args, **kwargs)
        if template is not _NOT_SEEN and all(n.buffer is None and n.edges is None and n.leaf is None
                                             for n in template.fixed):
            stats["composite_hits"] += 1
            return _instantiate(self, template)
        out = fn(self, *args, **kwargs)
        template = _make_template(node, out)
        stats["composite_records"] += 1
        with _lock:
            if len(_templates) >= COMPOSITE_CACHE_ENTRIES:
                _templates.clear()
            _templates[key] = template
        return out
    return method


def _no_sources(values: list) -> tuple:
    return ()


def _instantiate(x, template: _Template):
    values = [x.node] + template.fixed
    make, add = Node, values.append
    for op, get, single, arg, dtype, shape, device, edges in template.entries:
        node = make(op, (get(values),) if single else get(values), arg, dtype, shape, device)
        node.edges = edges
        add(node)
    out = x._new(values[-1])
    if template.requires_grad:
        out._requires_grad, out._ctx = template.requires_grad, template.ctx
    return out


def _make_template(x: Node, out) -> _Template | None:
    """The template of the subgraph from `x` to the tensor `out`, or None when it is not made of new plain nodes
    over x and of constants (see the module docstring)."""
    root = out.node
    if root is x or root.buffer is not None:
        return None
    custom = autograd_graph.CUSTOM
    depends: dict[int, bool] = {id(x): True}   # id -> whether the node depends on x
    fixed_ids: set[int] = set()
    order: list[Node] = []
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if key in depends:
            continue
        if not expanded:
            if node.buffer is not None or node.leaf is not None or (len(custom) and node in custom):
                return None   # (a realized node or a leaf the function read, or a custom gradient rule)
            stack.append((node, True))
            stack.extend((s, False) for s in node.src if id(s) not in depends)
            continue
        depends[key] = any(depends[id(s)] for s in node.src)
        if not depends[key] and node.op in _CONSTANT_OPS and node.edges is None and \
                all(id(s) in fixed_ids for s in node.src):
            fixed_ids.add(key)   # a constant (Node.const's nodes): reused as it is
        order.append(node)
    if order[-1] is not root or not depends[id(root)]:
        return None
    # values: x, the constants, then every other node (also those of constants only, e.g. -1 of x - 1: made again
    # each time, as the function makes them), each after its sources
    fixed = [n for n in order if id(n) in fixed_ids]
    refs: dict[int, int] = {id(x): 0}
    for n in fixed:
        refs[id(n)] = len(refs)
    entries = []
    for n in order:
        if id(n) not in fixed_ids:
            sources = [refs[id(s)] for s in n.src]
            refs[id(n)] = len(refs)
            get = itemgetter(*sources) if sources else _no_sources
            entries.append((n.op, get, len(sources) == 1, n.arg, n.dtype, n.shape, n.device, n.edges))
    return _Template(fixed, entries, out._requires_grad, out._ctx)
