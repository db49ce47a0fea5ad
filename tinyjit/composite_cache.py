"""Templates of composite functions (tanh, sigmoid, gelu, linear, cat, ...): each call of such a function builds the
same subgraph of primitive ops for inputs of the same dtypes, shapes and devices (tanh: 43 nodes, each one Tensor,
one dispatch through the operand rules and one autograd record). The first call records the subgraph it built as a
template in terms of its input nodes; a later call with the same key makes the same nodes again from it (one node
constructor per node, with the autograd edges the ops recorded), as tinyjit.gradient_cache does for gradient
graphs, and wraps only the result in a Tensor.

Tensor arguments (linear's weight and bias, cat's other tensors) are inputs like the tensor itself. The key holds
everything those functions' construction reads: the function and its other arguments, each input's op, realized
or not, dtype, shape, device and whether it requires grad, which inputs are the same node, and whether gradients
are recorded (no_grad). A template is only made of nodes that depend on the inputs, each a plain lazy node (no
buffer, no leaf, no custom gradient rule but one keyed by its formula (tanh's and sigmoid's, registered again on
the new nodes): erf's reads its call's tensors, so a gelu under autograd is never templated), and
of constants that depend on nothing (Node.const's nodes: reused as they are while untouched, like
Node.shared_const's). Anything else makes the key untemplated (the function then always runs). Only functions
without other side effects are decorated (no random numbers, no index checks).
"""
from __future__ import annotations

import functools
import threading
from operator import itemgetter
from typing import Callable

from tinyjit import autograd_graph
from tinyjit.lazy import Node
from tinyjit.ops import Op
from tinyjit.tensor_base import TensorBase, _no_grad_active

# keys kept; all are dropped when there are more (input shapes vary little in a training loop)
COMPOSITE_CACHE_ENTRIES = 512
stats = {"composite_records": 0, "composite_hits": 0}
_templates: dict[tuple, "_Template | None"] = {}   # key -> template, or None: not templatable
_lock = threading.Lock()
_NOT_SEEN = object()
# movement ops a constant is broadcast with (Node.const): the only ops a reused constant subgraph may hold
_CONSTANT_OPS = frozenset((Op.CONST, Op.RESHAPE, Op.EXPAND))
_FOLDING = frozenset((Op.RESHAPE, Op.EXPAND))   # movement ops a chain of which folds into one (Node.movement)


class _Template:
    """A composite's subgraph over its inputs: values are the input nodes + `fixed` (constants reused) + one node per
    entry (op, getter of its sources from the values, whether it has one source, arg, dtype, shape, device,
    autograd edges). The last entry is the result; `requires_grad` and `ctx` are the result tensor's autograd
    state."""
    __slots__ = ("fixed", "entries", "requires_grad", "ctx")

    def __init__(self, fixed: list, entries: list, requires_grad, ctx):
        self.fixed, self.entries, self.requires_grad, self.ctx = fixed, entries, requires_grad, ctx


def templated(fn: Callable) -> Callable:
    """Decorate a Tensor method that builds a composite of its tensor and of tensor arguments (inputs) with no side
    effect but the nodes it builds (no random numbers, no index checks): its other arguments must be hashable
    (they are part of the key)."""
    @functools.wraps(fn)
    def method(self, *args, **kwargs):
        if not isinstance(self, TensorBase):   # (Tensor.cat([a, b]): a list first)
            return fn(self, *args, **kwargs)
        inputs = [self]
        try:
            if args or kwargs:   # tensors among the arguments are inputs, keyed like self; the rest by value
                spec = []
                for a in args:
                    if isinstance(a, TensorBase):
                        inputs.append(a)
                        a = _INPUT
                    spec.append(a)
                for name, a in kwargs.items():
                    if isinstance(a, TensorBase):
                        inputs.append(a)
                        a = _INPUT
                    spec.append((name, a))
                key = (fn, tuple(spec), _no_grad_active(), *[_signature(t) for t in inputs])
                if len(inputs) > 1:   # (which inputs are the same node)
                    ids = [id(t.node) for t in inputs]
                    key += (tuple([ids.index(i) for i in ids]),)
            else:
                key = (fn, _no_grad_active(), _signature(self))
            template = _templates.get(key, _NOT_SEEN)
        except TypeError:   # (an argument that cannot be hashed)
            return fn(self, *args, **kwargs)
        if template is None:
            return fn(self, *args, **kwargs)
        if template is not _NOT_SEEN and all(n.buffer is None and n.edges is None and n.leaf is None
                                             for n in template.fixed):
            stats["composite_hits"] += 1
            return _instantiate(inputs, template)
        nodes = [t.node for t in inputs]
        out = fn(self, *args, **kwargs)
        template = _make_template(nodes, out) if isinstance(out, TensorBase) else None
        stats["composite_records"] += 1
        with _lock:
            if len(_templates) >= COMPOSITE_CACHE_ENTRIES:
                _templates.clear()
            _templates[key] = template
        return out
    return method


_INPUT = object()   # (a tensor argument's place in a key)


def _signature(t) -> tuple:
    """An input's part of a key (the dtype by name: equal names are equal dtypes, and a str hashes without a
    Python call). Its op and whether it is realized too: a reshape of an unrealized reshape folds into one
    (Node.movement), so the function builds on the input's source instead of the input (then it is not
    templated, see _reads_below)."""
    node = t.node
    return node.op, node.buffer is None, node.dtype.name, node.shape, node.device, bool(t._requires_grad)


def _no_sources(values: list) -> tuple:
    return ()


def _instantiate(inputs: list, template: _Template):
    values = [t.node for t in inputs] + template.fixed
    make, add = Node, values.append
    for op, get, single, arg, dtype, shape, device, edges, rule in template.entries:
        node = make(op, (get(values),) if single else get(values), arg, dtype, shape, device)
        node.edges = edges
        if rule is not None:
            get_sources, one, function, formula = rule
            sources = (get_sources(values),) if one else get_sources(values)
            autograd_graph.CUSTOM[node] = autograd_graph.CustomGrad(sources, function, formula)
        add(node)
    out = inputs[0]._new(values[-1])
    if template.requires_grad:
        out._requires_grad, out._ctx = template.requires_grad, template.ctx
    return out


def _reads_below(inputs: list[Node], others: set[int]) -> bool:
    """Whether the function read one of the nodes `others` (ids: nodes its result reads that depend on no input)
    under an input: a reshape (or expand) of an unrealized reshape (expand) folds into one over the input's source
    (Node.movement), down a chain of them, so the function built on the input's graph instead of on the input, and
    a template would reuse this call's graph for another call's input. (Tensor ops reach no other node under
    their operands; the nodes a function reads that are neither inputs nor its own are constants, shared ones
    among them, which may also lie under an input elsewhere.)"""
    for x in inputs:
        node = x
        while node.op in _FOLDING and node.buffer is None and node.src:
            node = node.src[0]
            if id(node) in others:
                return True
            if node.op is not x.op:
                break
    return False


def _make_template(inputs: list[Node], out) -> _Template | None:
    """The template of the subgraph from the `inputs` to the tensor `out`, or None when it is not made of new plain
    nodes over them and of constants (see the module docstring)."""
    root = out.node
    if any(root is x for x in inputs) or root.buffer is not None:
        return None
    custom = autograd_graph.CUSTOM
    depends: dict[int, bool] = {id(x): True for x in inputs}   # id -> whether the node depends on an input
    fixed_ids: set[int] = set()
    order: list[Node] = []
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if key in depends:
            continue
        if not expanded:
            if node.buffer is not None or node.leaf is not None:
                return None   # (a realized node or a leaf the function read)
            rule = custom.get(node) if len(custom) and node.op is autograd_graph.CUSTOM_OP else None
            if rule is not None and rule.formula is None:
                return None   # (a custom gradient rule that reads this call's tensors: erf's, a Function's)
            stack.append((node, True))
            if rule is not None:   # (its sources before it too: the template refers to them)
                stack.extend((s, False) for s in rule.src if id(s) not in depends)
            stack.extend((s, False) for s in node.src if id(s) not in depends)
            continue
        depends[key] = any(depends[id(s)] for s in node.src)
        if not depends[key] and node.op in _CONSTANT_OPS and node.edges is None and \
                all(id(s) in fixed_ids for s in node.src):
            fixed_ids.add(key)   # a constant (Node.const's nodes): reused as it is
        order.append(node)
    if order[-1] is not root or not depends[id(root)] or \
            _reads_below(inputs, {id(n) for n in order if not depends[id(n)]}):
        return None
    # values: the inputs, the constants, then every other node (also those of constants only, e.g. -1 of x - 1:
    # made again each time, as the function makes them), each after its sources
    fixed = [n for n in order if id(n) in fixed_ids]
    refs: dict[int, int] = {}
    for position, x in enumerate(inputs):
        refs.setdefault(id(x), position)
    size = len(inputs)
    for n in fixed:
        refs[id(n)] = size
        size += 1
    entries = []
    for n in order:
        if id(n) not in fixed_ids:
            sources = [refs[id(s)] for s in n.src]
            refs[id(n)] = size
            size += 1
            get = itemgetter(*sources) if sources else _no_sources
            # a rule keyed by its formula (tanh's, sigmoid's: autograd_graph.CustomGrad) builds the same gradient
            # for every call of the key: the new node gets it too, over the new call's nodes
            rule = custom.get(n) if len(custom) and n.op is autograd_graph.CUSTOM_OP else None
            if rule is not None:
                rule = (itemgetter(*[refs[id(s)] for s in rule.src]), len(rule.src) == 1, rule.rule, rule.formula)
            entries.append((n.op, get, len(sources) == 1, n.arg, n.dtype, n.shape, n.device, n.edges, rule))
    return _Template(fixed, entries, out._requires_grad, out._ctx)
