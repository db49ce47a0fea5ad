"""SGD, Adam, AdamW, RMSprop, Lion, Adagrad, Adadelta, Adamax, NAdam and RAdam with PyTorch's update rules and
defaults (Lion: Chen et al. 2023).

Each `_update` returns the tensors it assigned. State lives in realized tensors updated by `assign`; values that
change every step and that the update reads (Adam's bias corrections) are kept on the device too, so a step
captured by TinyJit replays correctly.

Order matters within the one schedule of a step: state updates may read the old parameter (weight decay), so the
parameter update reads the state *after* its assign (the assigned tensor), never recomputes it from the old
buffers; otherwise the parameter and its state would each need to be overwritten after the other reads it.
"""
from __future__ import annotations

import numpy as np

from tinyjit.composite_cache import templated
from tinyjit.optim.optimizer import Optimizer, ParamGroup
from tinyjit.tensor import Tensor


# Adam's update as three composites built from templates after their first call (tinyjit.composite_cache: each
# parameter's update is the same few dozen nodes every step): the moments, then the parameter from the assigned
# moments and the (1,)-shaped pair of bias corrections
@templated
def _adam_moment(m: Tensor, g: Tensor, one_minus_beta1: float) -> Tensor:
    return m + (g - m) * one_minus_beta1


@templated
def _adam_second_moment(v: Tensor, g: Tensor, beta2: float, one_minus_beta2: float) -> Tensor:
    return v * beta2 + g * g * one_minus_beta2


@templated
def _adam_param(param: Tensor, m: Tensor, second: Tensor, bias_correction: Tensor, lr: Tensor, eps: float,
                decay: float) -> Tensor:
    """param - lr / bc1 * m / (sqrt(second) / sqrt(bc2) + eps), param shrunk by 1 - lr * decay first (AdamW)."""
    if decay:
        param = param * (1 - lr * decay)
    step_size = lr / bias_correction[0]
    denom = second.sqrt() / bias_correction[1].sqrt() + eps
    return param - step_size * m / denom


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

    def _begin_group(self, group: ParamGroup, params: list[Tensor]) -> list[Tensor]:
        # Each parameter has its own step count t, as in torch.optim: a parameter without a gradient at a step is
        # skipped and its count does not advance. The count is kept as the bias corrections [1 - beta1^t,
        # 1 - beta2^t] in a (2,) tensor on the device (a step captured by TinyJit advances it on replay); it
        # advances as c <- c * beta + (1 - beta), which stays accurate in float32 (1 - beta2^t from a float32
        # beta2^t would be off by ~1e-5 relative). Parameters that have stepped together share one tensor, so
        # a step advances one tensor per group and device, not one per parameter; when only some of them step,
        # those get a copy of it (read back once on the host: no kernel, nothing captured).
        stepping = {id(p) for p in params}
        advanced: dict[int, Tensor] = {}     # id(count before this step) -> the count the stepping ones use now
        fresh: dict[str, Tensor] = {}        # device -> the count of parameters stepping for the first time
        out = []
        for p in params:
            state = self.state.setdefault(p, {})
            count = state.get("bias_correction")
            if count is None:
                if p.device not in fresh:
                    fresh[p.device] = Tensor(np.zeros(2, np.float32), device=p.device, requires_grad=False)
                    out.append(self._advance(fresh[p.device], group))
                state["bias_correction"] = fresh[p.device]
                continue
            if id(count) not in advanced:
                sharing = [q for q in group["params"] if self.state.get(q, {}).get("bias_correction") is count]
                if any(id(q) not in stepping for q in sharing):   # some skip this step: the others go on alone
                    count = Tensor(count.numpy(), device=p.device, requires_grad=False)
                advanced[id(state["bias_correction"])] = count
                out.append(self._advance(count, group))
            state["bias_correction"] = advanced[id(state["bias_correction"])]
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        """As Optimizer.load_state_dict; parameters saved with equal step counts share one count tensor again.
        (A checkpoint from before per-parameter counts gives every parameter with state its group's count.)"""
        counts, states = {}, {}
        for i, saved in state_dict["state"].items():
            saved = dict(saved)
            if "bias_correction" in saved:
                value = saved.pop("bias_correction")
                counts[int(i)] = np.asarray(value.numpy() if hasattr(value, "numpy") else value, np.float32)
            states[i] = saved
        super().load_state_dict({**state_dict, "state": states})
        group_states = state_dict.get("group_state", [{}] * len(self.param_groups))
        params = [(g, p) for g in range(len(self.param_groups)) for p in self.param_groups[g]["params"]]
        shared: dict[tuple, Tensor] = {}
        for i, (g, p) in enumerate(params):
            if i not in counts and "exp_avg" in self.state.get(p, {}) and "bias_correction1" in group_states[g]:
                legacy = group_states[g]
                counts[i] = np.array([np.asarray(legacy[f"bias_correction{k}"]).item() for k in (1, 2)], np.float32)
            if i in counts:
                key = (g, p.device, counts[i].tobytes())
                if key not in shared:
                    shared[key] = Tensor(counts[i].reshape(2), device=p.device, requires_grad=False)
                self.state[p]["bias_correction"] = shared[key]

    @staticmethod
    def _advance(count: Tensor, group: ParamGroup) -> Tensor:
        def pair(a: float, b: float) -> Tensor:   # constants (nothing uploaded), each rounded once from Python
            return Tensor.full((1,), a, device=count.device).cat(Tensor.full((1,), b, device=count.device))
        beta1, beta2 = group["betas"]
        return count.assign(count * pair(beta1, beta2) + pair(1 - beta1, 1 - beta2))

    def _update(self, p: Tensor, grad: Tensor, group: ParamGroup, state: dict) -> list[Tensor]:
        beta1, beta2 = group["betas"]
        lr = group.lr_tensor(p.device)
        g = -grad if group["maximize"] else grad
        param = p.detach()
        decay = 0.0
        if group["weight_decay"]:
            if self._decoupled:     # AdamW: shrink the weights (in _adam_param), leave the gradient alone
                decay = group["weight_decay"]
            else:
                g = g + param * group["weight_decay"]
        m = self._state_buffer(state, "exp_avg", p)
        v = self._state_buffer(state, "exp_avg_sq", p)
        out = [m.assign(_adam_moment(m, g, 1 - beta1)), v.assign(_adam_second_moment(v, g, beta2, 1 - beta2))]
        second = v
        if group["amsgrad"]:
            vmax = self._state_buffer(state, "max_exp_avg_sq", p)
            out.append(vmax.assign(vmax.maximum(v)))
            second = vmax
        # (the bias corrections advanced this step)
        out.insert(0, p.assign(_adam_param(param, m, second, state["bias_correction"], lr, group["eps"], decay)))
        return out


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (Loshchilov & Hutter), p *= 1 - lr * weight_decay
    before the Adam update (weight_decay defaults to 0.01); the other arguments and errors as Adam's."""
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
    """Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023; no torch.optim counterpart):
    the update is the sign of an interpolation between the momentum and the gradient; weight decay is decoupled,
    as in AdamW. ValueError for betas or weight_decay out of range."""

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


class Adagrad(Optimizer):
    """Adagrad as torch.optim.Adagrad: the step is scaled by the root of the running sum of squared gradients,
    the learning rate decayed by 1 / (1 + (step - 1) * lr_decay)."""

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, maximize: bool = False):
        _check_range("lr", "Adagrad", lr)
        _check_range("lr_decay", "Adagrad", lr_decay)
        _check_range("weight_decay", "Adagrad", weight_decay)
        _check_range("initial_accumulator_value", "Adagrad", initial_accumulator_value)
        _check_range("eps", "Adagrad", eps)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))

    def _update(self, p: Tensor, grad: Tensor, group: ParamGroup, state: dict) -> list[Tensor]:
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + p.detach() * group["weight_decay"]
        if "sum" not in state:
            state["sum"] = self._zeros_like(p)
            if group["initial_accumulator_value"]:
                state["sum"].assign(state["sum"] + group["initial_accumulator_value"]).realize()
        total = state["sum"]
        out = [total.assign(total + g * g)]
        lr = group.lr_tensor(p.device)
        if group["lr_decay"]:   # the step count lives on the device, so a TinyJit replay decays too
            if "step" not in state:
                state["step"] = self._scalar(0.0, p.device)
            step = state["step"]
            lr = lr / (1 + step * group["lr_decay"])
            out.append(step.assign(step + 1))
        out.insert(0, p.assign(p.detach() - lr * g / (total.sqrt() + group["eps"])))
        return out


class Adadelta(Optimizer):
    """Adadelta (Zeiler 2012) as torch.optim.Adadelta: the step is g * sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps),
    times lr."""

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0,
                 maximize: bool = False):
        _check_range("lr", "Adadelta", lr)
        _check_range("rho", "Adadelta", rho, 0.0, 1.0 + 1e-12)
        _check_range("eps", "Adadelta", eps)
        _check_range("weight_decay", "Adadelta", weight_decay)
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize))

    def _update(self, p: Tensor, grad: Tensor, group: ParamGroup, state: dict) -> list[Tensor]:
        rho, eps = group["rho"], group["eps"]
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + p.detach() * group["weight_decay"]
        square_avg = self._state_buffer(state, "square_avg", p)
        acc_delta = self._state_buffer(state, "acc_delta", p)
        out = [square_avg.assign(square_avg * rho + g * g * (1 - rho))]
        # delta reads acc_delta before its update; it is computed once into a buffer so both the parameter and
        # acc_delta updates read the same values
        delta = ((acc_delta + eps).sqrt() / (square_avg + eps).sqrt() * g).contiguous()
        out.append(p.assign(p.detach() - group.lr_tensor(p.device) * delta))
        out.append(acc_delta.assign(acc_delta * rho + delta * delta * (1 - rho)))
        return out


class _StepCounted(Optimizer):
    """An optimizer whose update needs the step count t and the bias corrections 1 - beta1^t, 1 - beta2^t: kept
    per parameter in 0-d float32 tensors on the device (so a step captured by TinyJit advances them on replay),
    the corrections by c <- c * beta + (1 - beta), which stays accurate in float32 where 1 - beta^t would lose
    digits (as Adam). Returns the assigns; afterwards the state tensors hold the new values."""

    def _advance_counts(self, p: Tensor, group: ParamGroup, state: dict) -> list[Tensor]:
        beta1, beta2 = group["betas"]
        step, c1, c2 = (state.setdefault(name, self._scalar(0.0, p.device))
                        for name in ("step", "bias_correction1", "bias_correction2"))
        return [step.assign(step + 1), c1.assign(c1 * beta1 + (1 - beta1)), c2.assign(c2 * beta2 + (1 - beta2))]

    def _begin_step(self, p: Tensor, grad: Tensor, group: ParamGroup, state: dict):
        """What every update of this family starts with: (lr tensor, weights and gradient after maximize and weight
        decay, the assigns advancing the step count and bias corrections)."""
        lr = group.lr_tensor(p.device)
        param, g = self._weight_decay(p.detach(), -grad if group["maximize"] else grad, group, lr)
        return lr, param, g, self._advance_counts(p, group, state)

    def _weight_decay(self, param: Tensor, g: Tensor, group: ParamGroup, lr: Tensor) -> tuple[Tensor, Tensor]:
        """(param, gradient) after weight decay: L2 (added to the gradient) or decoupled (the weights shrunk)."""
        wd = group["weight_decay"]
        if not wd:
            return param, g
        if group.get("decoupled_weight_decay"):
            return param * (1 - lr * wd), g
        return param, g + param * wd


def _check_adam_family(name: str, lr: float, betas, eps: float, weight_decay: float) -> None:
    _check_range("lr", name, lr)
    _check_range("eps", name, eps)
    _check_range("beta1", name, betas[0], 0.0, 1.0)
    _check_range("beta2", name, betas[1], 0.0, 1.0)
    _check_range("weight_decay", name, weight_decay)


class Adamax(_StepCounted):
    """torch.optim.Adamax (Kingma & Ba): Adam with the infinity norm, u = max(beta2 * u, |g| + eps) and
    p -= lr / (1 - beta1^t) * m / u; L2 weight decay added to the gradient. ValueError for out-of-range
    hyperparameters."""

    def __init__(self, params, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, maximize: bool = False):
        _check_adam_family("Adamax", lr, betas, eps, weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def _update(self, p: Tensor, grad: Tensor, group: ParamGroup, state: dict) -> list[Tensor]:
        beta1, beta2 = group["betas"]
        lr, param, g, out = self._begin_step(p, grad, group, state)
        m, u = self._state_buffer(state, "exp_avg", p), self._state_buffer(state, "exp_inf", p)
        out += [m.assign(m + (g - m) * (1 - beta1)), u.assign((u * beta2).maximum(g.abs() + group["eps"]))]
        out.insert(0, p.assign(param - lr / state["bias_correction1"] * m / u))
        return out


class NAdam(_StepCounted):
    """torch.optim.NAdam (Dozat 2016): Adam with Nesterov momentum, its momentum schedule mu_t = beta1 * (1 - 0.5 *
    0.96^(t * momentum_decay)) and the running product of the mu_t; weight decay L2 or, with
    decoupled_weight_decay, AdamW's. ValueError for out-of-range hyperparameters."""

    def __init__(self, params, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False,
                 maximize: bool = False):
        _check_adam_family("NAdam", lr, betas, eps, weight_decay)
        _check_range("momentum_decay", "NAdam", momentum_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize))

    def _update(self, p: Tensor, grad: Tensor, group: ParamGroup, state: dict) -> list[Tensor]:
        beta1, beta2 = group["betas"]
        lr, param, g, out = self._begin_step(p, grad, group, state)
        step = state["step"]
        decay = group["momentum_decay"] * float(np.log2(0.96))     # 0.96^(t * momentum_decay) as exp2
        mu = beta1 * (1.0 - 0.5 * (step * decay).exp2())
        mu_next = beta1 * (1.0 - 0.5 * ((step + 1) * decay).exp2())
        product = state.setdefault("mu_product", self._scalar(1.0, p.device))
        out.append(product.assign(product * mu))
        m, v = self._state_buffer(state, "exp_avg", p), self._state_buffer(state, "exp_avg_sq", p)
        out += [m.assign(m + (g - m) * (1 - beta1)), v.assign(v * beta2 + g * g * (1 - beta2))]
        denom = (v / state["bias_correction2"]).sqrt() + group["eps"]
        step_grad = lr * (1.0 - mu) / (1.0 - product)
        step_momentum = lr * mu_next / (1.0 - product * mu_next)
        out.insert(0, p.assign(param - step_grad * g / denom - step_momentum * m / denom))
        return out


class RAdam(_StepCounted):
    """torch.optim.RAdam (Liu et al. 2019): Adam with the variance rectification term; while the approximated SMA
    length rho_t is at most 5 the step is the bias-corrected momentum alone. Weight decay L2 or, with
    decoupled_weight_decay, AdamW's. ValueError for out-of-range hyperparameters."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled_weight_decay: bool = False, maximize: bool = False):
        _check_adam_family("RAdam", lr, betas, eps, weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize))

    def _update(self, p: Tensor, grad: Tensor, group: ParamGroup, state: dict) -> list[Tensor]:
        beta1, beta2 = group["betas"]
        lr, param, g, out = self._begin_step(p, grad, group, state)
        step, c1, c2 = state["step"], state["bias_correction1"], state["bias_correction2"]
        m, v = self._state_buffer(state, "exp_avg", p), self._state_buffer(state, "exp_avg_sq", p)
        out += [m.assign(m + (g - m) * (1 - beta1)), v.assign(v * beta2 + g * g * (1 - beta2))]
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (1 - c2) / c2                  # beta2^t = 1 - c2
        rectified = rho_t > 5.0
        safe_rho = rectified.where(rho_t, 5.0)
        rect = ((safe_rho - 4) * (safe_rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * safe_rho)).sqrt()
        adaptive = c2.sqrt() / (v.sqrt() + group["eps"])
        update = rectified.where(rect * adaptive, 1.0)
        out.insert(0, p.assign(param - m / c1 * lr * update))
        return out
