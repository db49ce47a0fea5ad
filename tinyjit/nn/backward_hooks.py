"""Module.register_full_backward_hook: `hook(module, grad_input, grad_output)` called once per module call when
the gradients with respect to the call's inputs are built, with PyTorch's semantics (torch.nn.Module's full
backward hooks): `grad_input` has one entry per positional argument: the gradient for an input that requires
grad, zeros for another tensor (as torch gives), None for a non-tensor; `grad_output` has one per output (None
for an output no gradient reached). A tuple the hook returns replaces `grad_input` (only the inputs that require
grad take it on). When no input requires grad, the hook runs once the gradients of the outputs are known, with
`grad_input` all None, as in torch.

How it fits the graph-to-graph autograd (tinyjit.autograd): the hook needs every input's gradient at once, but
autograd builds the gradient of one node at a time. So, as torch wraps inputs and outputs in an identity
function, a hooked call routes its gradients through one *gate* node per side: each tensor input is replaced by
a view of itself (no copy, no kernel) whose custom gradient rule (Tensor._with_gradient_rule) sends its gradient,
flattened and padded to its slot, into a gate node whose gradient sources are the real inputs. Autograd sums the slots
into the gate's gradient and reaches the gate only after every wrapped input (it is upstream of all of them), so
the gate's rule sees the complete `grad_input`, calls the hooks and hands each input its (possibly replaced)
slice. The outputs get a gate the same way, read first, which records `grad_output`. The gates' values are never
computed; the gradients stay lazy and fuse with the rest of the backward pass.
"""
from __future__ import annotations

from typing import Callable, Optional

from tinyjit.dtype import promote
from tinyjit.lazy import Node
from tinyjit.tensor import Tensor


class _Gate:
    """One side (inputs or outputs) of a hooked call: `tensors` (float, requiring grad) are packed into consecutive
    slots of one flat gradient. `on_complete(grads)` receives one gradient Tensor per slot (None where none
    arrived) and returns the gradients (Tensors or None) to pass on to the real tensors."""

    def __init__(self, tensors: list[Tensor], on_complete: Callable[[list[Optional[Tensor]]], list]):
        self.tensors = tensors
        self.sizes = [t.numel() for t in tensors]
        self.offsets = [sum(self.sizes[:i]) for i in range(len(tensors))]
        self.total = sum(self.sizes)
        self.dtype = tensors[0].dtype
        for t in tensors[1:]:
            self.dtype = promote(self.dtype, t.dtype)
        self.device = tensors[0].device
        if any(t.device != self.device for t in tensors):
            raise RuntimeError(f"full backward hook: the tensors of one call must be on one device, got "
                               f"{sorted({t.device for t in tensors})}")
        self.arrived = [False] * len(tensors)
        self.on_complete = on_complete
        # the gate's own value is never computed: only its gradient is
        placeholder = Tensor.zeros(self.total, dtype=self.dtype, device=self.device)
        self.tensor = placeholder._with_gradient_rule(tensors, self._rule)

    def wrap(self, index: int) -> Tensor:
        """A view of tensors[index] whose gradient goes into the gate's slot `index`."""
        return self.tensors[index].detach()._with_gradient_rule([self.tensor], self._slot_rule(index))

    def _slot_rule(self, index: int):
        def rule(node: Node, grad: Node) -> tuple:
            self.arrived[index] = True
            flat = Tensor(grad).reshape(self.sizes[index]).cast(self.dtype)
            if len(self.tensors) > 1:
                before = self.offsets[index]
                flat = flat.pad(((before, self.total - before - self.sizes[index]),))
            return (flat.node,)
        return rule

    def _rule(self, node: Node, grad: Node) -> tuple:
        packed = Tensor(grad)
        grads = [packed[offset:offset + size].reshape(t.shape).cast(t.dtype) if arrived else None
                 for t, offset, size, arrived in zip(self.tensors, self.offsets, self.sizes, self.arrived)]
        self.arrived = [False] * len(self.tensors)   # (a second backward over the same graph starts afresh)
        with Tensor.no_grad():
            out = self.on_complete(grads)
        return tuple(None if g is None else g.node for g in out)


def _float_tensor(x) -> bool:
    return isinstance(x, Tensor) and x.dtype.is_float


def hooked_call(module, args: tuple, forward: Callable[[tuple], object], hooks: list[Callable]):
    """Run `forward(args)` with module's full backward hooks attached to this call (see the module docstring).
    Returns forward's output, its tensors replaced by views whose gradients pass the output gate."""
    slots = [i for i, a in enumerate(args) if _float_tensor(a) and a.requires_grad]
    any_input_grad = bool(slots)
    state: dict = {"grad_output": None}

    def call_hooks(grad_input: tuple) -> tuple:
        for hook in hooks:
            result = hook(module, grad_input, state["grad_output"])
            if result is None:
                continue
            if not isinstance(result, (tuple, list)) or len(result) != len(grad_input):
                got = len(result) if isinstance(result, (tuple, list)) else type(result).__name__
                raise RuntimeError(f"Backward hook returned an invalid number of grad_input, got {got}, but "
                                   f"expected {len(grad_input)}")
            for i, (new, old) in enumerate(zip(result, grad_input)):
                if new is not None and (not isinstance(new, Tensor) or old is None or new.shape != old.shape):
                    # (torch's message)
                    raise RuntimeError(f"hook {getattr(hook, '__name__', hook)!r} has changed the size of value: "
                                       f"grad_input[{i}] of shape {getattr(new, 'shape', None)} replaces one of "
                                       f"shape {getattr(old, 'shape', None)}")
            grad_input = tuple(result)
        return grad_input

    def inputs_complete(grads: list) -> list:
        grad_input = [a.zeros_like() if isinstance(a, Tensor) else None for a in args]
        for i, g in zip(slots, grads):
            grad_input[i] = g
        grad_input = call_hooks(tuple(grad_input))
        # only the inputs that require grad take a gradient on, in their own dtype
        return [None if grad_input[i] is None else grad_input[i].cast(args[i].dtype) for i in slots]

    if any_input_grad and not Tensor.no_grad_active:
        gate = _Gate([args[i] for i in slots], inputs_complete)
        wrapped = list(args)
        for k, i in enumerate(slots):
            wrapped[i] = gate.wrap(k)
        args = tuple(wrapped)
    output = forward(args)
    if Tensor.no_grad_active:
        return output
    outputs = list(output) if isinstance(output, (tuple, list)) else [output]
    out_slots = [j for j, o in enumerate(outputs) if _float_tensor(o) and o.requires_grad]
    if not out_slots:
        return output

    def outputs_complete(grads: list) -> list:
        grad_output = [None] * len(outputs)
        for j, g in zip(out_slots, grads):
            grad_output[j] = g
        state["grad_output"] = tuple(grad_output)
        if not any_input_grad:   # nothing upstream to wait for: torch fires the hook now, with no grad_input
            call_hooks((None,) * len(args))
        return grads

    out_gate = _Gate([outputs[j] for j in out_slots], outputs_complete)
    for k, j in enumerate(out_slots):
        outputs[j] = out_gate.wrap(k)
    if isinstance(output, tuple) and hasattr(output, "_fields"):   # a named tuple
        return type(output)(*outputs)
    return type(output)(outputs) if isinstance(output, (tuple, list)) else outputs[0]
