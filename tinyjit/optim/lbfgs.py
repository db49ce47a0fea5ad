"""L-BFGS (torch.optim.LBFGS): a quasi-Newton optimizer that calls a closure several times per step.

Every iteration branches on scalars (is the curvature y.s positive, is the direction still a descent, did the loss
change), so each one waits for the closure's loss and gradient anyway. The direction is therefore computed on the
host, in NumPy, from the flat gradient read once per evaluation (the two-loop recursion over at most
`history_size` pairs of flat vectors: dot products and axpys, no kernels); the device computes the closure's
forward and backward passes and writes the parameter updates `p += t * d` in place. The arithmetic is torch's,
in the parameters' dtype (float32 parameters: float32 dot products and steps), so runs follow torch's to rounding.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from tinyjit.deferred import take_deferred
from tinyjit.optim.optimizer import Optimizer
from tinyjit.tensor import Tensor
from tinyjit.tensor_autograd import no_grad
from tinyjit.tensor_base import TensorBase


class LBFGS(Optimizer):
    """torch.optim.LBFGS(params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
    history_size=100, line_search_fn=None): `step(closure)` runs up to `max_iter` L-BFGS iterations, each with a
    fixed step `lr` along the quasi-Newton direction (the first one scaled by min(1, 1 / |g|_1)), re-evaluating
    the closure after each (at most `max_eval` evaluations, default max_iter * 5 // 4), and stops early when the
    gradient, the step or the change in loss falls below the tolerances. It returns the closure's first loss.

    One param group only (ValueError otherwise, as torch); RuntimeError for a line_search_fn other than None,
    NotImplementedError for "strong_wolfe" (not implemented here); RuntimeError from `step()` without a closure.
    Parameters without a gradient count as zero gradients."""

    def __init__(self, params, lr: float = 1.0, max_iter: int = 20, max_eval: Optional[int] = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: Optional[str] = None):
        if isinstance(lr, Tensor) or not lr >= 0:
            raise ValueError(f"LBFGS: invalid learning rate {lr}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        if line_search_fn is not None:
            if line_search_fn != "strong_wolfe":
                raise RuntimeError(f"LBFGS: only 'strong_wolfe' is supported as line_search_fn, got "
                                   f"{line_search_fn!r}")
            raise NotImplementedError("LBFGS: line_search_fn='strong_wolfe' is not implemented in tinyjit; use the "
                                      "fixed step (line_search_fn=None)")
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change, history_size=history_size,
                                      line_search_fn=line_search_fn))
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]
        self._dtype = np.result_type(*(p.dtype.np for p in self._params))
        # the host-side state torch keeps under state[first parameter]
        self._lbfgs: dict = {"func_evals": 0, "n_iter": 0}

    def add_param_group(self, param_group: dict) -> None:
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)

    def _flat_grad(self, loss) -> np.ndarray:
        """The closure's loss (realized with everything the backward pass deferred) and the gradients as one flat
        host vector in the parameters' dtype (zeros for a parameter without a gradient, as torch)."""
        grads = [p.grad for p in self._params if p.grad is not None]
        pending = [t for t in [loss, *grads] if isinstance(t, Tensor)] + take_deferred()
        if pending:
            Tensor.realize_all(*pending)
        return np.concatenate([np.zeros(p.numel(), self._dtype) if p.grad is None else
                               p.grad.numpy().reshape(-1).astype(self._dtype) for p in self._params])

    def _add_step(self, step: np.ndarray) -> None:
        """p += step[p's slice] for every parameter, in place and in one schedule."""
        offset, targets = 0, []
        with no_grad():
            for p in self._params:
                piece = step[offset:offset + p.numel()].reshape(p.shape).astype(p.dtype.np)
                targets.append(p.assign(p.detach() + Tensor(piece, device=p.device)))
                offset += p.numel()
        Tensor.realize_all(*targets)

    def step(self, closure: Optional[Callable] = None):
        """Up to max_iter iterations (see the class); returns the closure's first loss. RuntimeError without a
        closure."""
        if closure is None:
            raise RuntimeError("LBFGS.step: a closure that reevaluates the model and returns the loss is required")
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        history_size = group["history_size"]
        dtype, state = self._dtype, self._lbfgs

        def evaluate():
            # the closure records gradients even when step() is called under no_grad (torch's enable_grad)
            previous, TensorBase.no_grad_active = TensorBase.no_grad_active, False
            try:
                loss = closure()
            finally:
                TensorBase.no_grad_active = previous
            return loss, self._flat_grad(loss)

        orig_loss, flat_grad = evaluate()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        if np.abs(flat_grad).max() <= tolerance_grad:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        H_diag, prev_flat_grad, prev_loss = state.get("H_diag"), state.get("prev_flat_grad"), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = dtype.type(1)
            else:
                # update the curvature pairs, then the two-loop recursion for d = -H g
                y = flat_grad - prev_flat_grad
                s = d * dtype.type(t)
                ys = y.dot(s)
                if ys > 1e-10:
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(dtype.type(1.0) / ys)
                    H_diag = ys / y.dot(y)
                alphas = [None] * len(old_dirs)
                q = -flat_grad
                for i in range(len(old_dirs) - 1, -1, -1):
                    alphas[i] = old_stps[i].dot(q) * ro[i]
                    q = q - alphas[i] * old_dirs[i]
                d = r = q * H_diag
                for i in range(len(old_dirs)):
                    beta = old_dirs[i].dot(r) * ro[i]
                    r = r + (alphas[i] - beta) * old_stps[i]
                d = r
            prev_flat_grad = flat_grad.copy()
            prev_loss = loss

            # the step length: the first iteration ever is scaled by the gradient's size
            # (torch's first step length is a tensor of the parameters' dtype, so is this one)
            if state["n_iter"] == 1:
                scale = dtype.type(1) / np.abs(flat_grad).sum()
                t = dtype.type(scale * lr) if scale < 1 else lr
            else:
                t = lr
            gtd = flat_grad.dot(d)
            if gtd > -tolerance_change:   # not a descent direction
                break

            evals = 0
            self._add_step(d * dtype.type(t))
            if n_iter != max_iter:
                # re-evaluate the function only when the loop goes on (torch's order)
                new_loss, flat_grad = evaluate()
                loss = float(new_loss)
                evals = 1
            current_evals += evals
            state["func_evals"] += evals

            if n_iter == max_iter or current_evals >= max_eval:
                break
            if np.abs(flat_grad).max() <= tolerance_grad:
                break
            if np.abs(d * dtype.type(t)).max() <= tolerance_change:   # the step is too small
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss

    def state_dict(self) -> dict:
        """As Optimizer.state_dict, with the L-BFGS history (NumPy arrays and numbers) under state[0]."""
        out = super().state_dict()
        out["state"] = {0: {k: ([v.copy() for v in value] if isinstance(value, list) else
                                value.copy() if isinstance(value, np.ndarray) else value)
                            for k, value in self._lbfgs.items()}}
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        saved = dict(state_dict)
        history = saved.pop("state", {}).get(0, {})
        super().load_state_dict({**saved, "state": {}})
        self._lbfgs = {"func_evals": 0, "n_iter": 0}
        for k, value in history.items():
            if isinstance(value, list):
                value = [np.asarray(v, self._dtype) for v in value]
            elif isinstance(value, np.ndarray):
                value = value.astype(self._dtype)
            self._lbfgs[k] = value
