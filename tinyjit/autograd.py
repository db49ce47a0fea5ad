"""`tinyjit.autograd`, named like torch.autograd: custom differentiable functions (`Function`, `FunctionCtx`) and
the functional gradient `grad` (torch.autograd.grad). The machinery is elsewhere: the per-primitive rules and the
graph walk in tinyjit/autograd_graph.py, backward and hooks on Tensor in tinyjit/tensor_autograd.py."""
from tinyjit.autograd_function import Function, FunctionCtx
from tinyjit.tensor_autograd import grad_of as grad
from tinyjit.tensor_autograd import inference_mode, no_grad

__all__ = ["Function", "FunctionCtx", "grad", "inference_mode", "no_grad"]
