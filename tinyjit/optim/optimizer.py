"""The Optimizer base: parameter groups, per-parameter state, and one fused, in-place update per step.

`step()` builds every update as lazy tensors, `assign`s them into the parameters and the optimizer state, and
realizes all of them in one schedule: the forward pass, the backward pass and the updates are scheduled
together, and parameters keep their buffers (nothing is reallocated per step).

Learning rates follow PyTorch's interface: `param_groups[i]["lr"]` is a Python float. Each group also keeps the
rate in a realized 0-d Tensor that the update kernels read, and setting `group["lr"]` (as every lr_scheduler
does) assigns the new value into it at once; so a step captured by TinyJit sees learning-rate changes when it
is replayed. Other hyperparameters (momentum, betas, weight decay...) are read when `step()` builds its graph,
so changing them affects uncaptured steps only.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Union

import numpy as np

from tinyjit.deferred import take_deferred
from tinyjit.dtype import dtypes
from tinyjit.tensor import Tensor


class ParamGroup(dict):
    """A param group dict (torch.optim.Optimizer.param_groups' entries) whose "lr" is mirrored into realized 0-d
    Tensors, one per device, read by the updates: a TinyJit-captured step sees every change. TypeError for an lr
    that is not a Python number."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lr_tensors: dict[str, Tensor] = {}
        self.state: dict[str, Tensor] = {}    # per-group optimizer state (Adam's beta powers)

    def __setitem__(self, key, value) -> None:
        if key == "lr":
            if isinstance(value, Tensor) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise TypeError(f"param group 'lr' must be a Python number, got {type(value).__name__}")
            value = float(value)
            for t in self._lr_tensors.values():
                t.assign(value).realize()
        super().__setitem__(key, value)

    def update(self, *args, **kwargs) -> None:
        """dict.update, through __setitem__ (dict's own bypasses it: an "lr" set so would not reach the tensors)."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other) -> "ParamGroup":
        self.update(other)
        return self

    def lr_tensor(self, device: str) -> Tensor:
        """The learning rate as a realized 0-d float32 Tensor on `device` (created on first use)."""
        t = self._lr_tensors.get(device)
        if t is None:
            t = self._lr_tensors[device] = Tensor(np.array(self["lr"], np.float32), device=device,
                                                  requires_grad=False)
        return t


_Params = Union[Iterable[Tensor], Iterable[dict]]

# called as hook(optimizer) when any optimizer's step begins, before the updates are built
_step_pre_hooks: list[Callable[["Optimizer"], None]] = []


def register_optimizer_step_pre_hook(hook: Callable[["Optimizer"], None]) -> Callable[[], None]:
    """Call `hook(optimizer)` at the start of every optimizer's step (``step()`` and ``schedule_step()``), before the
    gradients are read; tinyjit.distributed averages gradients across ranks there. Returns a function that
    removes the hook (torch.optim.optimizer.register_optimizer_step_pre_hook, with a plain callable as handle)."""
    _step_pre_hooks.append(hook)
    return lambda: _step_pre_hooks.remove(hook) if hook in _step_pre_hooks else None


class Optimizer:
    """torch.optim.Optimizer: param_groups, state, zero_grad(set_to_none), step(), add_param_group, state_dict
    and load_state_dict. Subclasses define `_update(p, grad, group, state) -> the tensors assigned`; a step builds
    every update lazily and realizes them in one schedule. TypeError for a Tensor or non-float parameters,
    ValueError for an empty list or a parameter in two groups."""

    def __init__(self, params: _Params, defaults: dict[str, Any]):
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of Tensors or dicts, got a Tensor; "
                            f"pass [tensor] or model.parameters()")
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        self.defaults = dict(defaults)
        self.param_groups: list[ParamGroup] = []
        self.state: dict[Tensor, dict[str, Tensor]] = {}
        for group in (params if isinstance(params[0], dict) else [{"params": params}]):
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError(f"{type(self).__name__}: a param group must be a dict with a 'params' entry")
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: can only optimize Tensors, got {type(p).__name__}")
            if not p.dtype.is_float:
                raise TypeError(f"{type(self).__name__}: can only optimize floating-point tensors, got "
                                f"{p.dtype.name} of shape {p.shape}")
            if id(p) in seen:
                raise ValueError(f"{type(self).__name__}: a parameter of shape {p.shape} appears in more than one "
                                 f"param group")
            seen.add(id(p))
            if p._requires_grad is None:   # never decided (not False): a parameter now
                p.requires_grad = True
            if not p.node.realized:    # updates assign into the parameter's buffer
                p.realize()
        group = ParamGroup(self.defaults)
        for key, value in param_group.items():
            if key != "params":
                group[key] = value
        group["params"] = params
        self._check_hyperparameters(group)
        self.param_groups.append(group)

    def _check_hyperparameters(self, group: dict) -> None:
        if group["lr"] < 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate {group['lr']}")

    @property
    def lr(self) -> float:
        """The learning rate of the first param group."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        for g in self.param_groups:
            g["lr"] = value

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (PyTorch's default set_to_none=True; lazy gradients have no memory to zero)."""
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    def schedule_step(self) -> list[Tensor]:
        """Assign every update lazily and return the tensors to realize: parameters, optimizer state, and what
        was deferred to this step (the output of the last `backward()`, BatchNorm running statistics; see
        tinyjit.deferred). `step()` realizes them; realize them yourself to add more outputs to the schedule,
        e.g. `Tensor.realize_all(metric, *opt.schedule_step())`."""
        for hook in list(_step_pre_hooks):
            hook(self)
        with Tensor.no_grad():   # updates are not part of any graph autograd should see
            targets = self._assign_updates()
        return targets + take_deferred()

    def _assign_updates(self) -> list[Tensor]:
        targets: list[Tensor] = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            targets.extend(self._begin_group(group, params))
            for p in params:
                if p.grad.shape != p.shape:
                    raise RuntimeError(f"{type(self).__name__}: gradient of shape {p.grad.shape} does not match its "
                                       f"parameter of shape {p.shape}")
                grad = p.grad.detach().cast(p.dtype)
                if grad.device != p.device:
                    grad = grad.to(p.device)
                state = self.state.setdefault(p, {})
                targets.extend(self._update(p, grad, group, state))
        return targets

    def step(self, closure=None) -> Optional[Any]:
        """One update of every parameter that has a gradient, realized in a single schedule; a parameter whose
        `.grad` is None is skipped and its state does not advance (torch.optim). A closure (PyTorch style) is
        called first and its result returned."""
        loss = closure() if closure is not None else None
        targets = self.schedule_step()
        if isinstance(loss, Tensor):
            targets = [loss] + targets
        if targets:
            Tensor.realize_all(*targets)
        return loss

    def _begin_group(self, group: ParamGroup, params: list[Tensor]) -> list[Tensor]:
        """Per-group work once per step, before the updates of `params` (the group's parameters that have a
        gradient this step); returns the tensors it assigned."""
        return []

    def _update(self, p: Tensor, grad: Tensor, group: ParamGroup, state: dict) -> list[Tensor]:
        raise NotImplementedError

    # ---- helpers for subclasses ----
    @staticmethod
    def _zeros_like(p: Tensor) -> Tensor:
        """Realized zeros shaped like p (uploaded from the host: no kernel)."""
        return Tensor(np.zeros(p.shape, p.dtype.np), device=p.device, requires_grad=False)

    @staticmethod
    def _scalar(value: float, device: str) -> Tensor:
        return Tensor(np.array(value, np.float32), device=device, requires_grad=False)

    def _state_buffer(self, state: dict, name: str, p: Tensor) -> Tensor:
        if name not in state:
            state[name] = self._zeros_like(p)
        return state[name]

    # ---- checkpoints ----
    def state_dict(self) -> dict:
        """{"state": {param index: {name: numpy array}}, "param_groups": [hyperparameters and param indices]}."""
        index = {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        state = {index[id(p)]: {k: v.numpy().copy() for k, v in s.items()} for p, s in self.state.items() if s}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[id(p)] for p in g["params"]]}
                  for g in self.param_groups]
        group_state = [{k: v.numpy().copy() for k, v in g.state.items()} for g in self.param_groups]
        return {"state": state, "param_groups": groups, "group_state": group_state}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(len(a["params"]) != len(b["params"])
                                                        for a, b in zip(groups, self.param_groups)):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the saved param groups do not match this "
                             f"optimizer's (group count or sizes differ)")
        params = [p for g in self.param_groups for p in g["params"]]
        for saved, group in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    group[k] = v
        for i, saved_state in state_dict["state"].items():
            p = params[int(i)]
            _load_state(self.state.setdefault(p, {}), saved_state, p.dtype, p.device)
        for group, saved_state in zip(self.param_groups, state_dict.get("group_state", [{}] * len(groups))):
            _load_state(group.state, saved_state, dtypes.float32, group["params"][0].device)


def _load_state(state: dict, saved: dict, float_dtype, device: str) -> None:
    """Copy saved arrays into existing state tensors in place (assign), or create the missing ones."""
    for name, value in saved.items():
        value = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        if name in state:
            state[name].assign(Tensor(value.astype(state[name].dtype.np), device=device)).realize()
        else:
            dt = float_dtype if value.dtype.kind == "f" else dtypes.from_np(value.dtype)
            state[name] = Tensor(value.astype(dt.np), device=device, requires_grad=False)
