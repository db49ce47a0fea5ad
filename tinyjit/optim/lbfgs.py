"""L-BFGS (torch.optim.LBFGS), with its optional strong-Wolfe line search: a quasi-Newton optimizer that calls a
closure several times per step.

Every iteration branches on scalars (is the curvature y.s positive, is the direction still a descent, did the loss
change), so each one waits for the closure's loss and gradient anyway. The direction is therefore computed on the
host, in NumPy, from the flat gradient read once per evaluation (the two-loop recursion over at most
`history_size` pairs of flat vectors: dot products and axpys, no kernels); the device computes the closure's
forward and backward passes and writes the parameter updates `p += t * d` in place. The arithmetic is torch's,
in the parameters' dtype (float32 parameters: float32 dot products and steps), with torch's fused multiply-adds
where it has them (`_axpy`), so runs follow torch's to rounding.
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
    fixed step `lr` along the quasi-Newton direction (the first one scaled by min(1, 1 / |g|_1)) or, with
    line_search_fn="strong_wolfe", the step a line search satisfying the strong Wolfe conditions finds from there
    (torch's bracketing and cubic-interpolation zoom); it re-evaluates the closure after each (at most `max_eval`
    evaluations, default max_iter * 5 // 4), and stops early when the gradient, the step or the change in loss
    falls below the tolerances. It returns the closure's first loss.

    One param group only (ValueError otherwise, as torch); RuntimeError for a line_search_fn other than None and
    "strong_wolfe", and from `step()` without a closure. Parameters without a gradient count as zero gradients."""

    def __init__(self, params, lr: float = 1.0, max_iter: int = 20, max_eval: Optional[int] = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: Optional[str] = None):
        if isinstance(lr, Tensor) or not lr >= 0:
            raise ValueError(f"LBFGS: invalid learning rate {lr}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        if line_search_fn not in (None, "strong_wolfe"):
            raise RuntimeError(f"LBFGS: only 'strong_wolfe' is supported as line_search_fn, got {line_search_fn!r}")
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

    def _add_step(self, t, d: np.ndarray) -> None:
        """p += t * d[p's slice] for every parameter, in place and in one schedule, rounded once as torch's
        `p.add_(d, alpha=t)` is (a fused multiply-add; see _axpy): computed on the host from p's values."""
        offset, targets = 0, []
        with no_grad():
            for p in self._params:
                piece = d[offset:offset + p.numel()].reshape(p.shape)
                current = p.detach().numpy().astype(self._dtype, copy=False)
                targets.append(p.assign(Tensor(_axpy(current, t, piece).astype(p.dtype.np), device=p.device)))
                offset += p.numel()
        Tensor.realize_all(*targets)

    def _set_params(self, values: list[Tensor]) -> None:
        """Write `values` back into the parameters, in place and in one schedule."""
        with no_grad():
            targets = [p.assign(v) for p, v in zip(self._params, values)]
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
                if "al" not in state:   # torch's list of the alphas, kept in the state like it
                    state["al"] = [None] * history_size
                alphas = state["al"]
                alphas.extend([None] * (len(old_dirs) - len(alphas)))
                q = -flat_grad
                for i in range(len(old_dirs) - 1, -1, -1):
                    alphas[i] = old_stps[i].dot(q) * ro[i]
                    q = _axpy(q, -alphas[i], old_dirs[i])     # torch: q.add_(y_i, alpha=-al[i]), fused
                d = r = q * H_diag
                for i in range(len(old_dirs)):
                    beta = old_dirs[i].dot(r) * ro[i]
                    r = _axpy(r, alphas[i] - beta, old_stps[i])
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
            if group["line_search_fn"] == "strong_wolfe":
                start = [p.detach().clone().realize() for p in self._params]

                def directional_evaluate(step_length):
                    """(loss, flat gradient) at start + step_length * d; the parameters are left at start."""
                    self._add_step(step_length, d)
                    new_loss, new_grad = evaluate()
                    self._set_params(start)
                    return float(new_loss), new_grad
                # at most the evaluations left; (torch's line search keeps its own tolerance_change of 1e-9)
                loss, flat_grad, t, evals = _strong_wolfe(directional_evaluate, t, d, loss, flat_grad, gtd,
                                                          max_ls=max_eval - current_evals)
                self._add_step(t, d)
            elif n_iter != max_iter:
                self._add_step(t, d)
                # re-evaluate the function only when the loop goes on (torch's order)
                new_loss, flat_grad = evaluate()
                loss = float(new_loss)
                evals = 1
            else:
                self._add_step(t, d)
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
        """As Optimizer.state_dict, with the L-BFGS history under state[0] with torch's keys (func_evals, n_iter,
        d, t, old_dirs, old_stps, ro, H_diag, prev_flat_grad, prev_loss, and al once the history was used), as
        NumPy arrays, NumPy scalars, numbers and None."""
        out = super().state_dict()
        out["state"] = {0: {k: ([v.copy() if isinstance(v, np.ndarray) else v for v in value]
                                if isinstance(value, list) else value.copy() if isinstance(value, np.ndarray)
                                else value)
                            for k, value in self._lbfgs.items()}}
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and the L-BFGS history saved by state_dict() or by torch.optim.LBFGS (its
        tensors, torch's or tinyjit's, become host arrays of the parameters' dtype). ValueError as Optimizer's, and
        when the history lacks one of torch's keys or its vectors do not have the parameters' total size."""
        saved = dict(state_dict)
        history = dict(saved.pop("state", {}).get(0, {}))
        numel = sum(p.numel() for p in self._params)
        if history:
            missing = [k for k in ("func_evals", "n_iter") if k not in history]
            if history.get("n_iter", 0):   # a step ran: the direction and the curvature history come with it
                missing += [k for k in _HISTORY_KEYS if k not in history]
            if missing:
                raise ValueError(f"LBFGS.load_state_dict: the saved state lacks {missing} (torch.optim.LBFGS keeps "
                                 f"{['func_evals', 'n_iter', *_HISTORY_KEYS, 'al']})")
        history = {k: _on_host(value, self._dtype) for k, value in history.items()}
        for k in ("d", "prev_flat_grad", "old_dirs", "old_stps"):
            for vector in (history.get(k) if isinstance(history.get(k), list) else [history.get(k)]):
                if vector is not None and np.shape(vector) != (numel,):
                    raise ValueError(f"LBFGS.load_state_dict: state {k!r} holds a vector of shape "
                                     f"{np.shape(vector)}, the parameters have {numel} elements")
        super().load_state_dict({**saved, "state": {}})
        self._lbfgs = {"func_evals": 0, "n_iter": 0, **history}


_HISTORY_KEYS = ("d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss")


def _on_host(value, dtype):
    """A state value as this optimizer keeps it: a tensor (tinyjit's, torch's) or array becomes a NumPy array of
    `dtype` (a NumPy scalar when 0-d), a list is converted item by item; numbers and None stay."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_on_host(v, dtype) for v in value]
    if isinstance(value, TensorBase):
        value = value.numpy()
    elif hasattr(value, "detach") and hasattr(value, "numpy"):   # a torch tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind in "fc":
        array = array.astype(dtype)
    return array[()] if array.ndim == 0 else array


def _axpy(x: np.ndarray, alpha, y: np.ndarray) -> np.ndarray:
    """x + alpha * y in x's dtype with one rounding, as torch's `x.add_(y, alpha=alpha)` computes it on the CPU (a
    fused multiply-add, alpha first converted to x's dtype). Two roundings (the product, then the sum) differ in
    the last bit, which L-BFGS's history amplifies: float32 runs left torch's path after a few iterations. Below
    float64 the product of two values is exact in float64, so the sum there rounds once (to float64, then to x's
    dtype); in float64 the rounding errors of the product and of the sum are computed exactly and added back
    (Dekker's product and Knuth's sum: NumPy has no fused multiply-add)."""
    alpha = x.dtype.type(alpha)
    if x.dtype != np.float64:
        return (x.astype(np.float64) + np.float64(alpha) * y.astype(np.float64)).astype(x.dtype)
    product, product_error = _two_product(np.broadcast_to(alpha, y.shape), y)
    with np.errstate(invalid="ignore", over="ignore"):   # inf or nan: the error terms are nan, the plain sum is right
        total = x + product
        virtual = total - x
        sum_error = (x - (total - virtual)) + (product - virtual)
        compensated = total + (sum_error + product_error)
        return np.where(np.isfinite(compensated), compensated, x + alpha * y)


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a * b rounded, its rounding error exactly) for float64 arrays (Dekker's algorithm with Veltkamp's split)."""
    product = a * b

    def split(v):
        scaled = v * 134217729.0   # 2**27 + 1
        high = scaled - (scaled - v)
        return high, v - high
    with np.errstate(over="ignore", invalid="ignore"):
        (a_high, a_low), (b_high, b_low) = split(a), split(b)
        error = ((a_high * b_high - product) + a_high * b_low + a_low * b_high) + a_low * b_low
    return product, np.where(np.isfinite(error), error, 0.0)


def _cubic_minimum(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float, bounds=None) -> float:
    """The minimizer, clamped to `bounds` (default: between x1 and x2), of the cubic through (x1, f1) and (x2, f2)
    with slopes g1 and g2; the middle of the bounds when the cubic has no minimum."""
    low, high = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square < 0:
        return (low + high) / 2.0
    d2 = np.sqrt(d2_square)
    if x1 <= x2:
        position = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        position = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(position, low), high)


def _strong_wolfe(evaluate, t: float, d: np.ndarray, f: float, g: np.ndarray, gtd, c1: float = 1e-4,
                  c2: float = 0.9, tolerance_change: float = 1e-9, max_ls: int = 25):
    """A step length along d from the current point (loss f, gradient g, slope gtd = g.d) that satisfies the
    strong Wolfe conditions (sufficient decrease c1, curvature c2), found as torch.optim.LBFGS finds it: bracket
    by growing steps chosen by cubic interpolation, then zoom. `evaluate(step)` is (loss, flat gradient) there.
    Returns (loss, gradient, step, evaluations) of the chosen point."""
    # slopes stay scalars of the parameters' dtype, as torch's 0-d tensors do (float32 arithmetic for float32)
    d_norm = np.abs(d).max()
    f_new, g_new = evaluate(t)
    evaluations = 1
    gtd_new = g_new.dot(d)

    # bracket an interval that holds a point satisfying the conditions
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f, bracket_g, bracket_gtd = [t_prev, t], [f_prev, f_new], [g_prev, g_new], \
                [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g, done = [t], [f_new], [g_new], True
            break
        if gtd_new >= 0:
            bracket, bracket_f, bracket_g, bracket_gtd = [t_prev, t], [f_prev, f_new], [g_prev, g_new], \
                [gtd_prev, gtd_new]
            break
        # extrapolate: a cubic step between 1.01 t and 10 t
        previous = t
        t = _cubic_minimum(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(t + 0.01 * (t - t_prev), t * 10))
        t_prev, f_prev, g_prev, gtd_prev = previous, f_new, g_new, gtd_new
        f_new, g_new = evaluate(t)
        evaluations += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    # zoom into the bracket until a point satisfies the conditions
    insufficient_progress = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:   # the bracket is too small
            break
        t = _cubic_minimum(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # a point too close to an end of the bracket twice in a row (or outside it) moves 10% inside
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insufficient_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False
        f_new, g_new = evaluate(t)
        evaluations += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1
        if f_new > f + c1 * t * gtd or f_new >= bracket_f[low]:
            # not a sufficient decrease, or not below the low end: the new high end
            bracket[high], bracket_f[high], bracket_g[high], bracket_gtd[high] = t, f_new, g_new, gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:   # the old low end becomes the high end
                bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
                bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low], bracket_g[low], bracket_gtd[low] = t, f_new, g_new, gtd_new
    return bracket_f[low], bracket_g[low], bracket[low], evaluations
