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

How it fits the graph-to-graph autograd (tinyjit.autograd_graph): `forward` runs under no_grad, so its ops record
no edges and gradient never flows through them. Each float output is then given a node of its own (a same-shape
reshape of the forward's result: a view, no copy or kernel) registered in `autograd_graph.CUSTOM` with the
Function's tensor inputs as its gradient sources and a rule that calls `backward`. Autograd reaches that node like any
other, calls the rule with the incoming gradient node, and gets back graph nodes built by the Tensor ops of
`backward`: the backward pass stays lazy and is scheduled and fused with the rest of the gradient graph (and
with the optimizer step that reads it). With several outputs, `backward` is called once per output that
receives a gradient, with zeros for the others (its result is linear in the gradients, so the sum is the same).
With create_graph=True the nodes `backward` built are recorded like any gradient's, so a Function whose backward
is itself differentiable supports second derivatives.
"""
from __future__ import annotations

from typing import Any

from tinyjit.lazy import Node
from tinyjit.tensor import Tensor


class FunctionCtx:
    """The `ctx` of forward/backward: save_for_backward / saved_tensors, needs_input_grad, and any attribute the
    forward sets for its backward (ctx.scale = 2)."""

    def __init__(self, needs_input_grad: tuple):
        self.needs_input_grad = needs_input_grad
        self._saved: tuple = ()

    def save_for_backward(self, *tensors) -> None:
        """Keep tensors (or None) for backward; read them back as ctx.saved_tensors."""
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
                   o._with_gradient_rule([t for _, t in tensors], _rule(cls, ctx, k, outputs, tensors, len(args)))
                   for k, o in enumerate(outputs)]
        return tuple(wrapped) if isinstance(out, (tuple, list)) else wrapped[0]


def _rule(cls, ctx: FunctionCtx, k: int, outputs: list, tensors: list, n_args: int):
    """The gradient rule of output k: backward with the gradient for output k (zeros for the other outputs)."""
    def rule(node: Node, grad: Node) -> tuple:
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
