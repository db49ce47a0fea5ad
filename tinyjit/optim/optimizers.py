"""SGD, Adam, AdamW, RMSprop and Lion with PyTorch's update rules and defaults (Lion: Chen et al. 2023).

Each `_update` returns the tensors it assigned. State lives in realized tensors updated by `assign`; values that
change every step and that the update reads (Adam's bias corrections) are kept on the device too, so a step
captured by TinyJit replays correctly.

Order matters within the one schedule of a step: state updates may read the old parameter (weight decay), so the
parameter update reads the state *after* its assign (the assigned tensor), never recomputes it from the old
buffers; otherwise the parameter and its state would each need to be overwritten after the other reads it.
"""
from __future__ import annotations

from tinyjit.optim.optimizer import Optimizer, ParamGroup
from tinyjit.tensor import Tensor


def _check_range(name: str, opt: str, value: float, low: float = 0.0, high: float = float("inf")) -> None:
    if not low <= value < high and not (high == float("inf") and value >= low):
        raise ValueError(f"{opt}: invalid {name} {value} (expected {low} <= {name} < {high})")


class SGD(Optimizer):
    """p -= lr * g, with optional weight decay, (Nesterov) momentum and dampening, as torch.optim.SGD."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False):
        _check_range("momentum", "SGD", momentum)
        _check_range("weight_decay", "SGD", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _update(self, p: Tensor, grad: Tensor, group: ParamGroup, state: dict) -> list[Tensor]:
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + p.detach() * group["weight_decay"]
        out = []
        momentum = group["momentum"]
        if momentum:
            buf = self._state_buffer(state, "momentum_buffer", p)
            dampening = group["dampening"]
            new_buf = buf * momentum + g * (1 - dampening)
            if dampening:
                # PyTorch starts the buffer at the first gradient, undampened: track whether it has started
                if "started" not in state:
                    state["started"] = self._scalar(0.0, p.device)
                started = state["started"]
                new_buf = (started > 0).where(new_buf, g)
                out.append(started.assign(started.ones_like()))
            out.append(buf.assign(new_buf))
            g = g + buf * momentum if group["nesterov"] else buf
        out.append(p.assign(p.detach() - group.lr_tensor(p.device) * g))
        return out


class Adam(Optimizer):
    """Adam (Kingma & Ba) as torch.optim.Adam: L2 weight decay added to the gradient, optional AMSGrad."""
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False):
        name = type(self).__name__
        _check_range("eps", name, eps)
        _check_range("beta1", name, betas[0], 0.0, 1.0)
        _check_range("beta2", name, betas[1], 0.0, 1.0)
        _check_range("weight_decay", name, weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _begin_group(self, group: ParamGroup, device: str) -> list[Tensor]:
        # The bias corrections 1 - beta^t live on the device, so the step count never leaves it. They advance as
        # c <- c * beta + (1 - beta), which stays accurate in float32 (1 - beta2^t from a float32 beta2^t would be
        # off by ~1e-5 relative). They are per group, not per parameter: a parameter that skips steps (no
        # gradient) shares its group's count.
        out = []
        for name, beta in (("bias_correction1", group["betas"][0]), ("bias_correction2", group["betas"][1])):
            if name not in group.state:
                group.state[name] = self._scalar(0.0, device)
            c = group.state[name]
            out.append(c.assign(c * beta + (1 - beta)))
        return out

    def _update(self, p: Tensor, grad: Tensor, group: ParamGroup, state: dict) -> list[Tensor]:
        beta1, beta2 = group["betas"]
        lr = group.lr_tensor(p.device)
        g = -grad if group["maximize"] else grad
        param = p.detach()
        if group["weight_decay"]:
            if self._decoupled:     # AdamW: shrink the weights, leave the gradient alone
                param = param * (1 - lr * group["weight_decay"])
            else:
                g = g + param * group["weight_decay"]
        m = self._state_buffer(state, "exp_avg", p)
        v = self._state_buffer(state, "exp_avg_sq", p)
        bc1, bc2 = group.state["bias_correction1"], group.state["bias_correction2"]   # advanced this step
        out = [m.assign(m + (g - m) * (1 - beta1)), v.assign(v * beta2 + g * g * (1 - beta2))]
        second = v
        if group["amsgrad"]:
            vmax = self._state_buffer(state, "max_exp_avg_sq", p)
            out.append(vmax.assign(vmax.maximum(v)))
            second = vmax
        step_size = lr / bc1
        denom = second.sqrt() / bc2.sqrt() + group["eps"]
        out.insert(0, p.assign(param - step_size * m / denom))
        return out


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr * weight_decay before the update."""
    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


class RMSprop(Optimizer):
    """RMSprop as torch.optim.RMSprop: a running mean of g^2 (optionally centered by the running mean of g),
    with optional momentum."""

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, maximize: bool = False):
        _check_range("alpha", "RMSprop", alpha)
        _check_range("eps", "RMSprop", eps)
        _check_range("momentum", "RMSprop", momentum)
        _check_range("weight_decay", "RMSprop", weight_decay)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def _update(self, p: Tensor, grad: Tensor, group: ParamGroup, state: dict) -> list[Tensor]:
        alpha = group["alpha"]
        lr = group.lr_tensor(p.device)
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + p.detach() * group["weight_decay"]
        sq = self._state_buffer(state, "square_avg", p)
        out = [sq.assign(sq * alpha + g * g * (1 - alpha))]
        if group["centered"]:
            ga = self._state_buffer(state, "grad_avg", p)
            out.append(ga.assign(ga + (g - ga) * (1 - alpha)))
            avg = (sq - ga * ga).sqrt() + group["eps"]
        else:
            avg = sq.sqrt() + group["eps"]
        if group["momentum"] > 0:
            buf = self._state_buffer(state, "momentum_buffer", p)
            out.append(buf.assign(buf * group["momentum"] + g / avg))
            update = buf
        else:
            update = g / avg
        out.insert(0, p.assign(p.detach() - lr * update))
        return out


class Lion(Optimizer):
    """Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023): the update is the sign of an
    interpolation between the momentum and the gradient; weight decay is decoupled, as in AdamW."""

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0,
                 maximize: bool = False):
        _check_range("beta1", "Lion", betas[0], 0.0, 1.0)
        _check_range("beta2", "Lion", betas[1], 0.0, 1.0)
        _check_range("weight_decay", "Lion", weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, maximize=maximize))

    def _update(self, p: Tensor, grad: Tensor, group: ParamGroup, state: dict) -> list[Tensor]:
        beta1, beta2 = group["betas"]
        lr = group.lr_tensor(p.device)
        g = -grad if group["maximize"] else grad
        m = self._state_buffer(state, "exp_avg", p)
        direction = (m + (g - m) * (1 - beta1)).sign()
        param = p.detach()
        if group["weight_decay"]:
            param = param * (1 - lr * group["weight_decay"])
        out = [p.assign(param - lr * direction), m.assign(m + (g - m) * (1 - beta2))]
        return out
