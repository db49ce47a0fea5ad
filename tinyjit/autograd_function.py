"""Custom differentiable functions, `tinyjit.autograd.Function` (PyTorch's torch.autograd.Function):

    class Exp(Function):
        @staticmethod
        def forward(ctx, x):
            y = x.exp()
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, grad):
            y, = ctx.saved_tensors
            return grad * y

    y = Exp.apply(x)

How it fits the graph-to-graph autograd (tinyjit.autograd): `forward` runs under no_grad, so its ops record no
edges and gradient never flows through them. Each float output is then given a node of its own (a same-shape
reshape of the forward's result: a view, no copy or kernel) registered in `autograd.CUSTOM` with the Function's
tensor inputs as its gradient sources and a rule that calls `backward`. Autograd reaches that node like any
other, calls the rule with the incoming gradient node, and gets back graph nodes built by the Tensor ops of
`backward`: the backward pass stays lazy and is scheduled and fused with the rest of the gradient graph (and
with the optimizer step that reads it). With several outputs, `backward` is called once per output that
receives a gradient, with zeros for the others (its result is linear in the gradients, so the sum is the same).
With create_graph=True the nodes `backward` built are recorded like any gradient's, so a Function whose backward
is itself differentiable supports second derivatives.
"""
from __future__ import annotations

from typing import Any

from tinyjit import autograd
from tinyjit.lazy import Node
from tinyjit.ops import Op


class FunctionCtx:
    """The `ctx` of forward/backward: save_for_backward / saved_tensors, needs_input_grad, and any attribute the
    forward sets for its backward (ctx.scale = 2)."""

    def __init__(self, needs_input_grad: tuple):
        self.needs_input_grad = needs_input_grad
        self._saved: tuple = ()

    def save_for_backward(self, *tensors) -> None:
        """Keep tensors (or None) for backward; read them back as ctx.saved_tensors."""
        from tinyjit.tensor import Tensor
        for i, t in enumerate(tensors):
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"save_for_backward: item {i} is a {type(t).__name__}, not a Tensor or None; "
                                f"store other values as attributes of ctx")
        self._saved = tensors

    @property
    def saved_tensors(self) -> tuple:
        return self._saved

    def mark_non_differentiable(self, *tensors) -> None:
        """Outputs that get no gradient node (their gradient is never asked for)."""
        self._non_differentiable = {id(t) for t in tensors}


class Function:
    """Subclass with static `forward(ctx, *args)` and `backward(ctx, *grad_outputs)` (one gradient or None per
    argument of forward; None for non-tensor arguments) and call `apply(*args)`. See the module docstring."""

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any) -> Any:
        raise NotImplementedError("Function subclasses implement forward(ctx, *args)")

    @staticmethod
    def backward(ctx: FunctionCtx, *grad_outputs: Any) -> Any:
        raise NotImplementedError("Function subclasses implement backward(ctx, *grad_outputs) to be differentiated")

    @classmethod
    def apply(cls, *args: Any) -> Any:
        from tinyjit.tensor import Tensor
        tensors = [(i, a) for i, a in enumerate(args) if isinstance(a, Tensor)]
        needs = tuple(isinstance(a, Tensor) and bool(a.requires_grad) for a in args)
        ctx = FunctionCtx(needs)
        with Tensor.no_grad():
            out = cls.forward(ctx, *args)
        if Tensor.no_grad_active or not any(needs):
            return out
        outputs = list(out) if isinstance(out, (tuple, list)) else [out]
        for o in outputs:
            if not isinstance(o, Tensor):
                raise TypeError(f"{cls.__name__}.forward must return a Tensor or a tuple of them, got "
                                f"{type(o).__name__}")
        skip = getattr(ctx, "_non_differentiable", set())
        wrapped = [o if not o.dtype.is_float or id(o) in skip else
                   _with_rule(o, [t for _, t in tensors], _rule(cls, ctx, k, outputs, tensors, len(args)))
                   for k, o in enumerate(outputs)]
        return tuple(wrapped) if isinstance(out, (tuple, list)) else wrapped[0]


def _with_rule(value, inputs: list, rule) -> Any:
    """A tensor over `value` (computed without recording gradients) whose gradient with respect to `inputs` is
    given by `rule(node, grad_node) -> one gradient node or None per input`: a node of its own over the value (a
    same-shape reshape: a view, never a kernel) registered in autograd.CUSTOM with `inputs` as its gradient
    sources. The result requires grad (callers attach a rule only when an input does)."""
    from tinyjit.tensor import Tensor
    from tinyjit.tensor_autograd import _edges
    node = Node(Op.RESHAPE, (value.node,), value.shape, value.dtype, value.shape, value.device)
    autograd.CUSTOM[node] = autograd.CustomGrad(tuple(t.node for t in inputs), rule)
    _edges[node] = tuple(bool(t.requires_grad) for t in inputs)
    result = Tensor(node)
    result._requires_grad, result._ctx = True, Op.RESHAPE
    return result


def with_gradient(value, inputs: list, backward) -> Any:
    """`value`, computed from the tensors `inputs` without recording gradients, as a result whose gradient is
    `backward(grad) -> one Tensor (of the input's shape) or None per input`, built of Tensor ops (so it stays lazy,
    fuses, and is differentiable again under create_graph=True). For ops whose gradient is best written as a
    formula instead of derived from the ops that compute the value (pow's, PyTorch's formulas at special points)."""
    from tinyjit.tensor import Tensor

    def rule(node: Node, grad: Node) -> tuple:
        with Tensor.no_grad():
            grads = backward(Tensor(grad))
        return tuple(None if g is None else g.cast(t.dtype).node for g, t in zip(grads, inputs))
    return _with_rule(value, inputs, rule)


def _rule(cls, ctx: FunctionCtx, k: int, outputs: list, tensors: list, n_args: int):
    """The gradient rule of output k: backward with the gradient for output k (zeros for the other outputs)."""
    def rule(node: Node, grad: Node) -> tuple:
        from tinyjit.tensor import Tensor
        grads = [Tensor(grad) if j == k else Tensor.zeros(*o.shape, dtype=o.dtype, device=o.device)
                 for j, o in enumerate(outputs)]
        with Tensor.no_grad():
            result = cls.backward(ctx, *grads)
        result = result if isinstance(result, (tuple, list)) else (result,)
        if len(result) != n_args:
            raise RuntimeError(f"{cls.__name__}.backward returned {len(result)} gradients, expected {n_args} (one "
                               f"per argument of forward, None where there is none)")
        out = []
        for i, t in tensors:
            g = result[i]
            if g is None:
                out.append(None)
                continue
            if not isinstance(g, Tensor):
                g = Tensor(g, dtype=t.dtype, device=t.device)
            if g.shape != t.shape:   # torch: a gradient the input broadcasts to is summed back to its shape
                lead = g.ndim - t.ndim
                if lead < 0 or any(a != b and a != 1 for a, b in zip(t.shape, g.shape[lead:])):
                    raise RuntimeError(f"{cls.__name__}.backward: gradient {i} of shape {g.shape} does not match "
                                       f"its input of shape {t.shape}")
                axes = tuple(range(lead)) + tuple(lead + d for d, (a, b) in enumerate(zip(t.shape, g.shape[lead:]))
                                                  if a != b)
                g = g.sum(axes, keepdim=True).reshape(t.shape)
            out.append(g.cast(t.dtype).node)
        return tuple(out)
    return rule
