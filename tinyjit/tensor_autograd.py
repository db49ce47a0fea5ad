"""Autograd on Tensors (PyTorch semantics) over the graph transformation of `tinyjit.autograd_graph`.

There is no tape: the lazy graph is the record. What the graph does not say is which edges gradient may
flow along, so every op applied while some input requires grad records, for its result node, one flag per
source (`Node.edges`): the inputs that required grad. Gradients flow only along recorded edges, which gives
PyTorch's rules: ops on tensors that do not require grad, ops run under `Tensor.no_grad()`, and `detach()`
(a tensor over the same node that does not require grad) all cut the gradient, even when the node they read
is also reached along another path.

Leaves are tensors whose `requires_grad` was set to True by the user (constructor argument, attribute or
`requires_grad_()`); a weak registry of them lets `backward()` find the tensors to fill. A leaf is a tensor,
not a buffer: when a tensor becomes a leaf it is realized and gets a node of its own (a BUFFER node over its
memory, no copy), so `w1.detach().requires_grad_()` or `Tensor(w1, requires_grad=True)` is another leaf than
`w1` although both read the same memory. A leaf is matched against the graph by the nodes it has had: its
node changes when an assign updates it (an optimizer step) and when that is realized, while graphs built
earlier still hold the old node (`Node.leaf` of each). Gradient does not flow past a leaf's node.

Realized results that require grad keep their graph (no collapse) so `loss.item()` before
`loss.backward()` works; an assign always collapses, so an optimizer step does not grow the graph.

Gradient hooks (`register_hook`) of a result run in `autograd_graph.gradient` when the gradient of its node is complete,
before it flows on; those of a leaf run on its summed gradient before it is accumulated into `.grad`.
`retain_grad()` adds a result to the tensors backward fills. With `create_graph=True` the nodes the rules built
get autograd edges (`_record_gradient_graph`), so gradients are differentiable like any result.

`Tensor.no_grad()` turns recording off (in the calling thread only, like torch). A tensor created with
`requires_grad=True` inside it is still a leaf that requires grad, as in PyTorch; only ops are not recorded.
"""
from __future__ import annotations

import functools
import weakref
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

from tinyjit import autograd_graph, gradient_cache, inplace, schedule_cache
from tinyjit.deferred import defer_realize
from tinyjit.lazy import Node, toposort
from tinyjit.ops import Op
from tinyjit.tensor_base import TensorBase, _no_grad_active

if TYPE_CHECKING:
    from typing_extensions import Self

# (the edges recorded per result node, one bool per source saying whether it required grad, are its `Node.edges`:
# tinyjit.inplace and custom Functions read and write them too)
# id(tensor) -> weak reference, for every leaf with requires_grad=True (keyed by id: Tensor.__eq__ is an op)
_leaves: dict[int, weakref.ref] = {}
# every node a leaf has had (its own since it became a leaf, then each assign's) holds a weak reference to the leaf
# in `Node.leaf`


# gradient hooks (Tensor.register_hook): of a leaf, by id(leaf); of a result, by its node
_leaf_hooks: dict[int, dict[int, object]] = {}
_node_hooks: "weakref.WeakKeyDictionary[Node, dict[int, object]]" = weakref.WeakKeyDictionary()
# id(tensor) -> weak reference, for results whose .grad backward() fills (retain_grad)
_retained: dict[int, weakref.ref] = {}


class RemovableHandle:
    """What register_hook returns: `.remove()` takes the hook off again (torch.utils.hooks.RemovableHandle)."""
    _next_id = 0

    def __init__(self, hooks: dict):
        self._hooks = hooks
        RemovableHandle._next_id += 1
        self.id = RemovableHandle._next_id

    def remove(self) -> None:
        """Unregister the hook (torch.utils.hooks.RemovableHandle.remove); removing it twice does nothing."""
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _read_replaced(inputs: Sequence[TensorBase]) -> list:
    """Point each input of a gradient formula that requires grad and whose node was replaced (`t.data = v`,
    autograd_graph.REPLACED) at the replacement, for the formula to read; returns (tensor, original node) pairs to
    restore."""
    swapped = []
    if not autograd_graph.REPLACED:
        return swapped
    for t in inputs:
        current = autograd_graph.REPLACED.get(t.node) if t.requires_grad else None
        new = current() if current is not None else None
        if new is not None and (new.shape, new.dtype, new.device) == (t.node.shape, t.node.dtype, t.node.device):
            swapped.append((t, t.node))
            t.node = new
    return swapped


def _run_hooks(hooks: dict, grad: Node, make: Callable[[Node], TensorBase]) -> Node:
    """Apply gradient hooks in registration order to the gradient as a tensor (`make(grad)`); a hook returning a
    tensor replaces the gradient."""
    for fn in list(hooks.values()):
        out = fn(make(grad))
        if out is None:
            continue
        if not isinstance(out, TensorBase) or out.shape != grad.shape:
            raise RuntimeError(f"register_hook: a hook must return None or a tensor of the gradient's shape "
                               f"{grad.shape}, got {getattr(out, 'shape', type(out).__name__)}")
        grad = out.node if out.dtype == grad.dtype else out.node.alu(Op.CAST, arg=grad.dtype)

    return grad


def _node_hook(node: Node, grad: Node, make: Callable[[Node], TensorBase]) -> Node:
    hooks = _node_hooks.get(node)
    return _run_hooks(hooks, grad, make) if hooks else grad


def _record_gradient_graph(grads: list, old_roots: list) -> None:
    """create_graph=True: record autograd edges on the nodes the gradient rules built, so the gradients can be
    differentiated again. A node is recorded as computed from the sources that depend on a tensor requiring grad:
    an existing float node when it is a leaf that requires grad or was recorded with an input that did; any other
    node (a new one, or an existing comparison or other non-float node) when one of its sources depends.

    Dependence through non-float nodes counts, as in torch: relu's gradient where(x > 0, g, 0) depends on x only
    through the comparison, so it requires grad, and differentiating it again gives zeros (the comparison passes no
    gradient; `_gradients` gives an input the graph reaches but no gradient flows to a zero gradient)."""
    old = {id(n) for n in toposort(old_roots, children=lambda n: n.src)}
    depends: dict[int, bool] = {}

    def old_requires(node: Node) -> bool:
        mask = node.edges
        ref = node.leaf
        leaf = ref() if ref is not None else None
        return bool(mask and any(mask)) or (leaf is not None and bool(leaf.requires_grad) and leaf._ctx is None)

    def is_old(node: Node) -> bool:   # (a saved tensor of a custom Function may not be reachable from the roots)
        return id(node) in old or node.edges is not None or node.leaf is not None

    def settled(node: Node) -> bool:   # an existing float node: whether it requires grad is already recorded
        return node.dtype.is_float and is_old(node)

    new_nodes = toposort([g for g in grads if g is not None], children=lambda n: () if settled(n) else n.src)
    for node in new_nodes:
        if settled(node) or (is_old(node) and not node.src):
            depends[id(node)] = old_requires(node)
            continue
        mask = tuple(depends.get(id(s), False) for s in node.src)
        depends[id(node)] = any(mask)
        if any(mask) and not (is_old(node) and node.edges):
            node.edges = mask


def _register(t: TensorBase) -> None:
    key = id(t)
    if key not in _leaves:
        _leaves[key] = weakref.ref(t, lambda ref, key=key: _leaves.get(key) is ref and _leaves.pop(key))


class no_grad:   # named like torch.no_grad
    """torch.no_grad: turn gradient recording off (in this thread, like torch's grad mode) inside
    `with Tensor.no_grad():` (or
    `tinyjit.no_grad()`), or for a function decorated `@Tensor.no_grad()` or `@Tensor.no_grad`."""

    def __new__(cls, fn=None):
        if fn is not None:   # used as a bare decorator
            return cls()(fn)
        return super().__new__(cls)

    def __init__(self, fn=None):
        self._previous: list[bool] = []

    def __enter__(self):
        self._previous.append(TensorBase.no_grad_active)
        TensorBase.no_grad_active = True
        return self

    def __exit__(self, *exc) -> None:
        TensorBase.no_grad_active = self._previous.pop()

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)
        return wrapper


class inference_mode(no_grad):   # named like torch.inference_mode
    """torch.inference_mode: no_grad (tinyjit has no separate inference tensors). `inference_mode(False)` records
    as usual; it works as a context manager and as a decorator, with or without parentheses."""

    def __new__(cls, mode=True):
        if callable(mode):   # used as a bare decorator
            return cls()(mode)
        return object.__new__(cls)

    def __init__(self, mode=True):
        super().__init__()
        self.mode = bool(mode) if not callable(mode) else True

    def __enter__(self):
        self._previous.append(TensorBase.no_grad_active)
        TensorBase.no_grad_active = TensorBase.no_grad_active if not self.mode else True
        return self

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(mode):
                return fn(*args, **kwargs)
        return wrapper


class AutogradMixin(TensorBase):
    no_grad = no_grad

    @property
    def requires_grad(self) -> bool:
        """Whether gradients are computed for this tensor (torch.Tensor.requires_grad): set it on a float leaf to
        make it a parameter; results of ops on such tensors have it. Always a bool, as in torch: False for a tensor
        made without requires_grad (internally `_requires_grad` stays None then, "not decided": a float tensor
        assigned to a Module attribute or given to an optimizer becomes a parameter, see nn.Module.__setattr__).
        Setting True on a non-float tensor, or False on a result computed from tensors that require grad, raises
        RuntimeError like PyTorch."""
        return bool(self._requires_grad)

    @requires_grad.setter
    def requires_grad(self, value: Optional[bool]) -> None:
        if value and not self.dtype.is_float:
            raise RuntimeError(f"requires_grad: only float tensors can require gradients, got {self.dtype.name}")
        if value and self._ctx is None:
            if id(self) not in _leaves:
                self._become_leaf()
            _register(self)
        elif not value and self._ctx is not None:
            raise RuntimeError("requires_grad: cannot turn it off on a result computed from tensors that require "
                               "grad; use .detach()")
        self._requires_grad = value

    def _become_leaf(self) -> None:
        """Give a new leaf a node of its own over its realized value (the same memory), so that it is told apart
        from every other tensor reading that memory or node (a detached copy of it, the tensor it was made from)."""
        if not self.node.realized:
            self.realize()
        self.node = Node.from_buffer(self.node.buffer, self.shape)
        self.node.leaf = weakref.ref(self)

    def _node_changed(self, old: Node) -> None:
        """Called when this tensor's node was replaced (an assign, or realizing one): a leaf keeps both."""
        if self._ctx is None and id(self) in _leaves:
            ref = weakref.ref(self)
            old.leaf = self.node.leaf = ref

    def requires_grad_(self, requires_grad: bool = True) -> Self:
        """Set requires_grad in place and return self (torch.Tensor.requires_grad_); RuntimeError as for the
        requires_grad property."""
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        """torch.Tensor.is_leaf: True unless the tensor is the result of an op recorded for autograd (a tensor made by
        the user, or computed from tensors that do not require grad or under no_grad)."""
        return self._ctx is None

    def detach(self) -> Self:
        """The same value (the same node, no copy) with gradient flow cut (torch.Tensor.detach). Unlike PyTorch's, it is
        a value, not an alias: a later in-place update of self does not change it."""
        return self._new(self.node, requires_grad=False)

    def _record(self, *inputs: Self) -> Self:
        """Called on the result of an op applied to `inputs` (whose nodes are the sources of self.node)."""
        for t in inputs:   # (a loop, not a tuple per op: most ops record nothing)
            if t._requires_grad:
                break
        else:
            return self
        node = self.node
        if _no_grad_active() or node.dtype.kind != "f":   # (not the property: every recorded op asks)
            return self
        self._requires_grad, self._ctx = True, node.op
        for t in inputs:
            if t.node is node:   # a no-op view returns an input's node: nothing new
                return self
        node.edges = tuple([bool(t._requires_grad) for t in inputs])
        return self

    def _with_gradient_rule(self, inputs: Sequence[Self], rule: Callable, formula=None) -> Self:
        """self (a value computed without recording gradients) as a result whose gradient with respect to `inputs`
        is given by `rule(node, grad_node) -> one gradient node or None per input`: a node of its own over the value
        (a same-shape reshape: a view, never a kernel) registered in autograd_graph.CUSTOM with `inputs` as its
        gradient sources. Used by custom Functions and by ops whose gradient is a formula (_with_gradient).
        `formula`: see autograd_graph.CustomGrad."""
        node = Node(autograd_graph.CUSTOM_OP, (self.node,), self.shape, self.dtype, self.shape, self.device)
        autograd_graph.CUSTOM[node] = autograd_graph.CustomGrad(tuple(t.node for t in inputs), rule, formula)
        node.edges = tuple(bool(t.requires_grad) for t in inputs)
        result = self._new(node)
        result._requires_grad, result._ctx = True, Op.RESHAPE
        return result

    def _frozen(self) -> Self:
        """A tensor over self's current node with self's autograd state, for a gradient formula to read later: an
        in-place update of self (`y.hypot_(z)` gives y a new node) does not change what it holds."""
        frozen = self._new(self.node)
        frozen._requires_grad, frozen._ctx = self._requires_grad, self._ctx
        return frozen

    def _with_gradient(self, compute: Callable[[], Self], inputs: Sequence[Self], backward: Callable,
                       reads_result: bool = False, saved: Sequence[Self] = ()) -> Self:
        """`compute()`, run without recording gradients, as a result whose gradient with respect to the tensors
        `inputs` is `backward(grad) -> one tensor (of the input's shape) or None per input`, built of Tensor ops (so
        it stays lazy, fuses, and is differentiable again under create_graph=True). For ops whose gradient is best
        written as a formula instead of derived from the ops computing the value (pow's and var's: PyTorch's
        formulas, which fix what inf, NaN and zero give at special points). `backward` runs at backward time: the
        tensors it reads must be `_frozen()` copies (of the inputs, of the result), or an in-place update made in
        between (`y.pow_(2)`, the in-place twin writing into its own input) would change the formula. An input
        whose tensor was given new contents since (`p.data = v`, autograd_graph.REPLACED) is read with them, as
        PyTorch's saved inputs are. `reads_result`: backward is called as `backward(grad, result)`, the result
        with its autograd state; it must not be captured by `backward` instead (the rule is the value of a weak
        dictionary keyed by the result's node: a rule holding that node would keep it, and its whole graph,
        alive forever). `saved`: the `_frozen()` tensors `backward` reads; once it has run they are not protected
        from in-place updates any more (inplace.release: the optimizer step after backward would store or copy
        them)."""
        with no_grad():
            value = compute()
        new_tensor = self._new   # (not self inside the rule: it would keep self, a live reader, alive)

        def rule(node: Node, grad: Node) -> tuple:
            swapped = _read_replaced(inputs)
            try:
                with no_grad():
                    if reads_result:
                        result = new_tensor(node)
                        result._requires_grad, result._ctx = True, autograd_graph.CUSTOM_OP
                        grads = backward(new_tensor(grad), result)
                    else:
                        grads = backward(new_tensor(grad))
            finally:
                for t, original in swapped:
                    t.node = original
            if saved:
                inplace.release(saved)
            return tuple(None if g is None else g.cast(t.dtype).node for g, t in zip(grads, inputs))
        return value._with_gradient_rule(inputs, rule)

    def _with_result_gradient(self, compute: Callable[[], Self], derivative: Callable[[Self], Self]) -> Self:
        """`compute()` (an elementwise function of self, run without recording gradients) as a result whose gradient
        is grad * derivative(result): the derivative in terms of the result, like PyTorch's tanh_backward (1 - y^2)
        and sigmoid_backward (y (1 - y)). The backward pass then reads the result alone instead of differentiating
        the formula that computed it (tanh's expm1 polynomial and its branches: a tanh-GELU's gradient was four
        kernels of ~60 ops per element). The rule keeps no tensor (nothing for an in-place update to protect), and
        `derivative` of the result (a tensor that requires grad) is differentiable again under create_graph=True.
        A `derivative` without closure variables builds the same gradient graph for the same graph, which the
        gradient cache then templates (its code object is the formula's key)."""
        with no_grad():
            value = compute()
        new_tensor, dtype = self._new, self.dtype   # (not self: the rule would keep it alive, a live reader)

        def rule(node: Node, grad: Node) -> tuple:
            with no_grad():
                result = new_tensor(node)
                result._requires_grad, result._ctx = True, autograd_graph.CUSTOM_OP
                return ((new_tensor(grad) * derivative(result)).cast(dtype).node,)
        formula = ("result", derivative.__code__, dtype) if derivative.__closure__ is None else None
        return value._with_gradient_rule([self], rule, formula)

    def register_hook(self, hook) -> RemovableHandle:
        """torch.Tensor.register_hook: call `hook(grad)` with the gradient of this tensor whenever one is computed
        (backward or gradient); a tensor it returns replaces the gradient (for a result, the one flowing on to its
        inputs; for a leaf, the one accumulated into .grad). Returns a handle whose .remove() unregisters it.
        RuntimeError on a tensor that does not require grad."""
        if not self.requires_grad:
            raise RuntimeError(f"register_hook: cannot register a hook on a tensor that does not require grad "
                               f"(shape {self.shape})")
        if self._ctx is None:
            key = id(self)
            if key not in _leaf_hooks:
                weakref.finalize(self, _leaf_hooks.pop, key, None)
            hooks = _leaf_hooks.setdefault(key, {})
        else:
            hooks = _node_hooks.setdefault(self.node, {})
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    def retain_grad(self) -> None:
        """torch.Tensor.retain_grad: let backward() fill .grad of this result too (leaves always get one).
        RuntimeError on a tensor that does not require grad."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: cannot retain the gradient of a tensor that does not require grad")
        if self._ctx is not None:
            key = id(self)
            _retained[key] = weakref.ref(self, lambda ref, key=key: _retained.get(key) is ref and _retained.pop(key))

    @property
    def retains_grad(self) -> bool:
        """torch.Tensor.retains_grad: whether retain_grad() was called on this result (backward() then fills its
        .grad)."""
        return id(self) in _retained

    def _record_assign(self) -> None:
        """self.node was just made an ASSIGN whose value requires grad: gradient flows into the value (not into the
        target's buffer node), and self is a result that requires grad, like a tensor PyTorch updated in place."""
        self.node.edges = (False, True)
        self._requires_grad, self._ctx = True, Op.ASSIGN

    def backward(self, gradient=None, retain_graph=None, create_graph: bool = False, inputs=None) -> Self:
        """Accumulate d(self)/d(leaf) (times `gradient`, default 1 for a one-element tensor) into `.grad` of
        every leaf that requires grad and that self depends on (only of `inputs` when given), and of results
        that called retain_grad(). The gradients are lazy tensors. With `create_graph=True` they are themselves
        differentiable (second derivatives: a gradient penalty, a Hessian-vector product). `retain_graph` is
        accepted for torch compatibility: the lazy graph is never freed by backward."""
        if not self.requires_grad:
            raise RuntimeError(f"backward: the tensor of shape {self.shape} does not require grad (nothing it was "
                               f"computed from has requires_grad=True, or it was computed under no_grad)")
        if gradient is None and self.numel() != 1:
            raise RuntimeError(f"backward: a gradient can only be implied for a one-element output, got shape "
                               f"{self.shape}; pass gradient=")
        # realize self with the next optimizer step: it reads the parameters that the step overwrites in place
        defer_realize(self)
        if inputs is not None:
            targets = [inputs] if isinstance(inputs, TensorBase) else list(inputs)
        else:
            targets = [t for t in (ref() for ref in list(_leaves.values())) if t is not None and t.requires_grad]
            targets += [t for t in (ref() for ref in list(_retained.values())) if t is not None and t.requires_grad]
        grads = _gradients([self], targets, None if gradient is None else [gradient], "backward", create_graph)
        for target, g in zip(targets, grads):
            if g is None:
                continue
            if target.grad is None:
                target.grad = _grad_tensor(g, create_graph, self._new)
            else:
                if target.grad.shape != target.shape:
                    raise RuntimeError(f"backward: .grad of shape {target.grad.shape} does not match its tensor of "
                                       f"shape {target.shape}")
                if create_graph:   # recorded like any op, so the sum stays differentiable
                    target.grad = target.grad + _grad_tensor(g, True, self._new).cast(target.grad.dtype)
                else:
                    old = target.grad.node
                    target.grad = self._new(old.alu(Op.ADD, g.alu(Op.CAST, arg=old.dtype) if g.dtype != old.dtype
                                                   else g))
        return self

    def gradient(self, *targets: Self, gradient=None, allow_unused: bool = False,
                 create_graph: bool = False) -> list:
        """d(self)/d(target) for each target as lazy tensors (no .grad is touched), like torch.autograd.grad
        (differentiable themselves with create_graph=True)."""
        return grad_of([self], list(targets), None if gradient is None else [gradient], allow_unused,
                       create_graph=create_graph)


def _grad_requires(g: Node) -> bool:
    mask = g.edges
    return bool(mask and any(mask))


def _grad_tensor(g: Node, create_graph: bool, make: Callable[[Node], TensorBase]) -> TensorBase:
    """A gradient node as a tensor (`make(g)`): with create_graph, one that requires grad when the node was recorded
    so."""
    t = make(g)
    if create_graph and _grad_requires(g):
        t._requires_grad, t._ctx = True, g.op

    return t


def grad_of(outputs: Union[TensorBase, Sequence[TensorBase]], inputs: Union[TensorBase, Sequence[TensorBase]],
            grad_outputs=None, allow_unused: bool = False, create_graph: bool = False, retain_graph=None) -> list:
    """The functional form (`tinyjit.gradient`, torch.autograd.grad): gradients of the outputs (weighted by
    `grad_outputs`, default ones) with respect to each input, as lazy tensors. Every input must require grad; an
    input the outputs do not depend on is an error unless `allow_unused` (then its gradient is None). With
    `create_graph=True` the gradients can be differentiated again."""
    outputs = [outputs] if isinstance(outputs, TensorBase) else list(outputs)
    inputs = [inputs] if isinstance(inputs, TensorBase) else list(inputs)
    if grad_outputs is not None and not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]

    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError(f"gradient: input {i} (shape {t.shape}) does not require grad; create it with "
                               f"requires_grad=True")
    for i, o in enumerate(outputs):
        if not o.requires_grad:
            raise RuntimeError(f"gradient: output {i} (shape {o.shape}) does not require grad")
    grads = _gradients(outputs, inputs, grad_outputs, "gradient", create_graph)
    for i, g in enumerate(grads):
        if g is None and not allow_unused:
            raise RuntimeError(f"gradient: the outputs do not depend on input {i} (shape {inputs[i].shape}); "
                               f"pass allow_unused=True to get None for it")
    return [None if g is None else _grad_tensor(g, create_graph, outputs[0]._new) for g in grads]


def _gradients(outputs: list, tensors: list, grad_outputs: Optional[list], op: str,
               create_graph: bool = False) -> list[Optional[Node]]:
    """Gradient node for each tensor of `tensors` (summed over every graph node that stands for it, then passed
    through the tensor's hooks if it is a leaf)."""
    make = outputs[0]._new
    out_nodes = [o.node for o in outputs]
    grad_nodes = None
    if grad_outputs is not None:
        if len(grad_outputs) != len(outputs):
            raise ValueError(f"{op}: {len(grad_outputs)} gradients for {len(outputs)} outputs")
        grad_nodes = []
        for o, g in zip(outputs, grad_outputs):
            g = g if isinstance(g, TensorBase) else o._new(g, dtype=o.dtype, device=o.device)
            if g.shape != o.shape:
                raise ValueError(f"{op}: gradient of shape {g.shape} does not match the output's shape {o.shape}")
            if g.device != o.device:
                raise RuntimeError(f"{op}: gradient on {g.device}, output on {o.device}")
            grad_nodes.append(g.node)
    # a tensor stands for its current node, and a leaf also for every node it had before (see Node.leaf)
    by_node: dict[int, list[int]] = {}
    position = {id(t): i for i, t in enumerate(tensors)}
    for i, t in enumerate(tensors):
        by_node.setdefault(id(t.node), []).append(i)

    leaf_nodes = {id(t.node) for t in tensors if t._ctx is None}

    def leaf_of(node: Node):
        ref = node.leaf
        leaf = ref() if ref is not None else None
        return leaf if leaf is not None and leaf._ctx is None and leaf.requires_grad else None

    def edges(node: Node) -> Optional[tuple]:
        # no gradient flows past a leaf (a node a leaf had may still have sources, e.g. an assign's value)
        if id(node) in leaf_nodes or (node.leaf is not None and leaf_of(node) is not None):
            return None
        return node.edges

    matched: list[tuple[int, Node]] = []
    hook = functools.partial(_node_hook, make=make) if _node_hooks else None
    # a repeated step reuses its gradient graph (tinyjit.gradient_cache), whose walk gives the reachable nodes too
    reach = gradient_cache.ReachableWalk(out_nodes, edges) if gradient_cache.cacheable(hook, grad_nodes,
                                                                                       create_graph) else None
    if reach is not None and op == "backward":   # (its forward graph is realized with the optimizer step)
        schedule_cache.remember_walk(reach.walk)
    if reach is not None and reach.order is not None:
        order = reach.order
    else:
        if reach is not None:
            gradient_cache.stats["gradient_uncached"] += 1
            reach = None
        order = autograd_graph.reachable(out_nodes, edges)   # (passed on to gradient: walked once)
    for node in order:
        owners = by_node.get(id(node))
        leaf = leaf_of(node) if node.leaf is not None else None
        if leaf is not None and id(leaf) in position:
            owners = set(owners or ()) | {position[id(leaf)]}
        if owners:
            matched.extend((i, node) for i in sorted(owners))

    result: list[Optional[Node]] = [None] * len(tensors)
    if not matched:
        return result

    if reach is not None:
        grads = gradient_cache.gradient(out_nodes, [n for _, n in matched], edges, reach, splice=op == "backward")
    else:
        grads = autograd_graph.gradient(out_nodes, [n for _, n in matched], grad_nodes, edges, hook=hook,
                                        order=order)
    for (i, _), g in zip(matched, grads):
        if g is not None:
            result[i] = g if result[i] is None else result[i].alu(Op.ADD, g)
    for i, _ in matched:   # in the graph, but every path passes no gradient (a comparison): zeros, like torch
        if result[i] is None and tensors[i].dtype.is_float:
            result[i] = Node.const(0.0, tensors[i].dtype, tensors[i].shape, tensors[i].device)
    for i, t in enumerate(tensors):
        hooks = _leaf_hooks.get(id(t)) if t._ctx is None else None
        if hooks and result[i] is not None:
            result[i] = _run_hooks(hooks, result[i], make)
    if create_graph:
        _record_gradient_graph(result, out_nodes + list(grad_nodes or []))

    return result
