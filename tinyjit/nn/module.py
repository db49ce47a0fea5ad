"""`Module`, the base of every layer, and the containers `Sequential`, `ModuleList` and `ModuleDict`.

Registration follows PyTorch: a `Parameter` set as an attribute is a parameter, and so is a plain Tensor
attribute (a float one gets `requires_grad=True` unless it was set to False), so code written without
Parameter keeps working; state
that is not trained (BatchNorm's running statistics, a fixed mask) is declared with `register_buffer`. A list or
tuple of Modules set as an attribute is wrapped in a `ModuleList`, so its parameters are found (state_dict keys
`layers.0.weight`, as with a PyTorch ModuleList).

Training mode is a per-module flag, as in PyTorch: `train()` / `eval()` set `training` on the module and all its
submodules, and Dropout and BatchNorm read their own flag. The functional `Tensor.dropout(p, training=True)` is
active unless told otherwise, like `F.dropout`.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

import numpy as np

from tinyjit.dtype import dtypes
from tinyjit.lazy import Node
from tinyjit.tensor import Tensor, to_arguments

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])

_PARAM, _BUFFER, _MODULE = "parameter", "buffer", "module"


class Parameter(Tensor):
    """A Tensor that a Module registers as a parameter (torch.nn.Parameter): `Parameter(data, requires_grad=True)`
    is a new leaf over data's value (no copy; a lazy value is realized first). Plain Tensor attributes of a Module
    are parameters too; Parameter marks them explicitly and survives `isinstance(p, nn.Parameter)` checks.
    Results of ops on a Parameter are plain Tensors, as in PyTorch. RuntimeError for a non-float tensor that
    requires grad."""
    __slots__ = ()

    def __new__(cls, data=None, requires_grad: bool = True, **kwargs):
        if isinstance(data, Node):   # a factory (full, rand, zeros_like ...) reached through the subclass
            return Tensor(data, requires_grad=requires_grad, **kwargs)
        return super().__new__(cls)

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = Tensor.empty(0)
        value = data.detach() if isinstance(data, Tensor) else Tensor(data)
        super().__init__(value, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class RemovableHandle:
    """What the register_*_hook methods return: `.remove()` unregisters the hook (torch.utils.hooks)."""
    _next_id = 0

    def __init__(self, hooks: dict):
        self._hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _add_hook(hooks: dict, entry, prepend: bool) -> RemovableHandle:
    handle = RemovableHandle(hooks)
    hooks[handle.id] = entry
    if prepend:
        hooks_items = list(hooks.items())
        hooks.clear()
        hooks[handle.id] = entry
        hooks.update((k, v) for k, v in hooks_items if k != handle.id)
    return handle


class Module:
    """torch.nn.Module: the base class of layers. Subclasses set parameters, buffers and submodules as
    attributes in __init__ and define `forward`; calling the module runs the forward pre-hooks, `forward`, the
    forward hooks and attaches full backward hooks (see the module docstring for registration rules)."""

    def __init__(self):
        self._ensure_registry()

    def _ensure_registry(self) -> dict:
        # subclasses that forget super().__init__() still work: the registry is created on first use
        reg = self.__dict__.get("_kinds")
        if reg is None:
            reg = {}
            object.__setattr__(self, "_kinds", reg)
            object.__setattr__(self, "_non_persistent", set())
            object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
            object.__setattr__(self, "_forward_hooks", OrderedDict())
            object.__setattr__(self, "_backward_hooks", OrderedDict())
            if "training" not in self.__dict__:
                object.__setattr__(self, "training", True)
        return reg

    # ---- registration ----
    def __setattr__(self, name: str, value: Any) -> None:
        kinds = self._ensure_registry()
        kind = kinds.get(name)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, Module) for v in value):
            value = ModuleList(value)
        if isinstance(value, Tensor):
            if kind != _BUFFER:
                kind = _PARAM
                if value._requires_grad is None and value.dtype.is_float:   # (never set to False)
                    value.requires_grad = True
        elif isinstance(value, Module):
            kind = _MODULE
        elif value is None and kind in (_PARAM, _BUFFER, _MODULE):
            pass   # `self.bias = None`: keep the slot registered (it is skipped while None)
        else:
            kind = None
        if kind is None:
            kinds.pop(name, None)
            self._non_persistent.discard(name)
        else:
            kinds[name] = kind
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._ensure_registry().pop(name, None)
        self._non_persistent.discard(name)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Optional[Tensor]) -> None:
        if param is not None and not isinstance(param, Tensor):
            raise TypeError(f"register_parameter: {name!r} must be a Tensor or None, got {type(param).__name__}")
        self._ensure_registry()[name] = _PARAM
        self.__setattr__(name, param)

    def register_buffer(self, name: str, tensor: Optional[Tensor], persistent: bool = True) -> None:
        """Register state that is saved in state_dict (unless persistent=False) but is not a parameter."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, got {type(tensor).__name__}")
        self._ensure_registry()[name] = _BUFFER
        if tensor is not None and tensor._requires_grad is None:
            tensor.requires_grad = False
        (self._non_persistent.discard if persistent else self._non_persistent.add)(name)
        object.__setattr__(self, name, tensor)

    def add_module(self, name: str, module: Optional[Module]) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None, got {type(module).__name__}")
        self._ensure_registry()[name] = _MODULE
        object.__setattr__(self, name, module)

    register_module = add_module

    def _named(self, kind: str) -> Iterator[tuple[str, Any]]:
        for name, k in self._ensure_registry().items():
            if k == kind:
                value = self.__dict__.get(name)
                if value is not None:
                    yield name, value

    # ---- traversal ----
    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen = set()
        for name, m in self._named(_MODULE):
            if id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator[Module]:
        return (m for _, m in self.named_children())

    def named_modules(self, memo: Optional[set] = None, prefix: str = "") -> Iterator[tuple[str, Module]]:
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._named(_MODULE):
            yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        return (m for _, m in self.named_modules())

    def _named_members(self, kind: str, prefix: str, recurse: bool,
                       remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, t in module._named(kind):
                if remove_duplicate and id(t) in seen:
                    continue
                seen.add(id(t))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), t

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members(_PARAM, prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Tensor]:
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members(_BUFFER, prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        return (b for _, b in self.named_buffers(recurse=recurse))

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call fn on every submodule (children first) and then on self, like PyTorch."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- state ----
    def state_dict(self, prefix: str = "") -> dict[str, Tensor]:
        """name -> Tensor for parameters and persistent buffers, in PyTorch's order (per module: parameters,
        buffers, then submodules). The values are the module's own tensors, not copies."""
        out: dict[str, Tensor] = OrderedDict()
        self._save_to(out, prefix)
        return out

    def _save_to(self, out: dict, prefix: str) -> None:
        for name, p in self._named(_PARAM):
            out[prefix + name] = p
        for name, b in self._named(_BUFFER):
            if name not in self._non_persistent:
                out[prefix + name] = b
        for name, m in self._named(_MODULE):
            m._save_to(out, f"{prefix}{name}.")

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy values into this module's tensors in place (`assign`: buffers keep their identity, so optimizers
        and captured JIT functions keep working). Values may be tinyjit Tensors, numpy arrays, torch tensors or
        nested lists. Missing or unexpected keys raise when `strict`, else they are returned; a shape mismatch
        always raises. Every problem is reported in one error."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict and unexpected:
            errors.append("unexpected key(s) in state_dict: " + ", ".join(repr(k) for k in unexpected))
        if strict and missing:
            errors.append("missing key(s) in state_dict: " + ", ".join(repr(k) for k in missing))
        updates: list[tuple[Tensor, Any]] = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            shape = tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
            if shape != target.shape:
                errors.append(f"size mismatch for {key!r}: copying a value of shape {shape}, the tensor in this "
                              f"module has shape {target.shape}")
                continue
            updates.append((target, value))
        if errors:
            raise RuntimeError(f"error(s) in loading state_dict for {type(self).__name__}:\n  " + "\n  ".join(errors))
        with Tensor.no_grad():   # loading is no part of any graph (parameters are leaves: PyTorch's rule)
            assigned = [target.assign(_as_tensor(value, target)) for target, value in updates if value is not target]
        if assigned:
            Tensor.realize_all(*assigned)
        return IncompatibleKeys(missing, unexpected)

    # ---- modes and helpers ----
    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise TypeError(f"train: mode must be a bool, got {type(mode).__name__}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (set_to_none=True, the default) or make it zeros."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = Tensor.zeros(*p.grad.shape, dtype=p.grad.dtype, device=p.grad.device)

    def to(self, *args, **kwargs) -> Module:
        """torch.nn.Module.to: to(device), to(dtype), to(device, dtype), to(tensor) and the keywords device= /
        dtype=. Every parameter and buffer moves to the device; a dtype applies to the floating-point ones only
        (TypeError for a non-float dtype, as in torch). The same Tensor objects are kept (an optimizer built
        before still updates them)."""
        device, dtype = to_arguments(args, kwargs.pop("device", None), kwargs.pop("dtype", None), kwargs,
                                     "Module.to")
        if dtype is not None:
            dtype = dtypes.from_any(dtype)
            if not dtype.is_float:
                raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got desired dtype={dtype}")
        for t in list(self.parameters()) + list(self.buffers()):
            moved = t.to(device=device, dtype=dtype if t.dtype.is_float else None)
            if moved is not t:
                t.node = moved.realize().node
        return self

    def cpu(self) -> Module:
        """torch.nn.Module.cpu: every parameter and buffer to the CPU."""
        return self.to("CPU")

    def float(self) -> Module:
        """torch.nn.Module.float: floating-point parameters and buffers to float32."""
        return self.to(dtypes.float32)

    def double(self) -> Module:
        """torch.nn.Module.double: floating-point parameters and buffers to float64."""
        return self.to(dtypes.float64)

    def half(self) -> Module:
        """torch.nn.Module.half: floating-point parameters and buffers to float16."""
        return self.to(dtypes.float16)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # ---- hooks (torch.nn.Module's forward hooks) ----
    def register_forward_pre_hook(self, hook: Callable, *, prepend: bool = False,
                                  with_kwargs: bool = False) -> RemovableHandle:
        """hook(module, args) (or hook(module, args, kwargs) with_kwargs) runs before forward; returning a value
        replaces the positional args (a non-tuple becomes a 1-tuple), or (args, kwargs) with_kwargs."""
        self._ensure_registry()
        return _add_hook(self._forward_pre_hooks, (hook, with_kwargs), prepend)

    def register_forward_hook(self, hook: Callable, *, prepend: bool = False, with_kwargs: bool = False,
                              always_call: bool = False) -> RemovableHandle:
        """hook(module, args, output) (or hook(module, args, kwargs, output) with_kwargs) runs after forward;
        returning a value replaces the output. always_call runs it even when forward raised."""
        self._ensure_registry()
        return _add_hook(self._forward_hooks, (hook, with_kwargs, always_call), prepend)

    def register_full_backward_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """hook(module, grad_input, grad_output) runs once per call of this module when the gradients with
        respect to its positional inputs are built (backward or gradient); a tuple it returns replaces grad_input.
        Entries are lazy Tensors, or None for non-tensor arguments and outputs no gradient reached. When no input
        requires grad it runs with grad_input all None once grad_output is known. As torch.nn.Module's; see
        tinyjit.nn.backward_hooks for how it fits the graph-to-graph autograd."""
        self._ensure_registry()
        return _add_hook(self._backward_hooks, hook, prepend)

    def __call__(self, *args, **kwargs):
        self._ensure_registry()
        for hook, with_kwargs in list(self._forward_pre_hooks.values()):
            result = hook(self, args, kwargs) if with_kwargs else hook(self, args)
            if result is not None:
                if with_kwargs:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError(f"forward pre-hook {hook!r} must return None or a tuple of (new_args, "
                                           f"new_kwargs), got {result!r}")
                    args, kwargs = result
                else:
                    args = result if isinstance(result, tuple) else (result,)
        if self._backward_hooks:   # as in torch: inputs wrapped after the pre-hooks, outputs after the forward hooks
            from tinyjit.nn.backward_hooks import hooked_call
            return hooked_call(self, args, lambda hooked_args: self._forward_and_hooks(hooked_args, kwargs),
                               list(self._backward_hooks.values()))
        return self._forward_and_hooks(args, kwargs)

    def _forward_and_hooks(self, args: tuple, kwargs: dict):
        """forward(*args, **kwargs), then the forward hooks (which may replace the output)."""
        try:
            output = self.forward(*args, **kwargs)
        except Exception:
            for hook, with_kwargs, always_call in list(self._forward_hooks.values()):
                if always_call:   # told that forward failed: the output is None
                    hook(self, args, kwargs, None) if with_kwargs else hook(self, args, None)
            raise
        for hook, with_kwargs, _ in list(self._forward_hooks.values()):
            result = hook(self, args, kwargs, output) if with_kwargs else hook(self, args, output)
            if result is not None:
                output = result
        return output

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._named(_MODULE)]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not children:
            return head + ")"
        return head + "\n  " + "\n  ".join(children) + "\n)"


def _as_tensor(value: Any, like: Tensor) -> Tensor:
    """A state_dict value as a Tensor with the target's dtype and device."""
    if isinstance(value, Tensor):
        t = value
    else:
        if hasattr(value, "detach") and hasattr(value, "cpu"):   # a torch tensor
            value = value.detach().cpu()
            if str(value.dtype) == "torch.bfloat16":
                value = value.float()
            value = value.numpy()
        t = Tensor(np.asarray(value, dtype=like.dtype.np), device=like.device)
    if t.device != like.device:
        t = t.to(like.device)
    return t.cast(like.dtype)


class Sequential(Module):
    """torch.nn.Sequential: modules applied in order, each to the previous one's output. `Sequential(a, b)`
    names them "0", "1"; `Sequential(OrderedDict(...))` uses the dict's names; indexing and slicing as torch."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], Mapping):
            for name, m in modules[0].items():
                self.add_module(str(name), _check_module(m, "Sequential"))
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), _check_module(m, "Sequential"))

    def _list(self) -> list[Module]:
        return [m for _, m in self._named(_MODULE)]

    def __len__(self) -> int:
        return len(self._list())

    def __iter__(self) -> Iterator[Module]:
        return iter(self._list())

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._named(_MODULE))[idx]))
        return self._list()[idx]

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), _check_module(module, "Sequential.append"))
        return self

    def forward(self, x):
        for m in self._list():
            x = m(x)
        return x


class ModuleList(Module):
    """torch.nn.ModuleList: a list of modules whose parameters are registered (state_dict keys "0.weight", ...);
    append, extend, insert, pop, del, +, +=, indexing and iteration as a list. Calling it raises
    NotImplementedError."""

    def __init__(self, modules: Optional[Iterable[Module]] = None):
        super().__init__()
        object.__setattr__(self, "_items", [])
        if modules is not None:
            self.extend(modules)

    def _reindex(self) -> None:
        for name in [n for n, k in self._kinds.items() if k == _MODULE]:
            self._kinds.pop(name)
            object.__delattr__(self, name)
        for i, m in enumerate(self._items):
            self.add_module(str(i), m)

    def append(self, module: Module) -> ModuleList:
        self._items.append(_check_module(module, "ModuleList.append"))
        self.add_module(str(len(self._items) - 1), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        self._items.insert(index, _check_module(module, "ModuleList.insert"))
        self._reindex()

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return ModuleList(self._items[idx])
        return self._items[idx]

    def __setitem__(self, idx: int, module: Module) -> None:
        self._items[idx] = _check_module(module, "ModuleList")
        self._reindex()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._items)

    def __iadd__(self, modules: Iterable[Module]) -> ModuleList:
        return self.extend(modules)

    def __add__(self, modules: Iterable[Module]) -> ModuleList:
        """torch.nn.ModuleList.__add__: a new ModuleList of these modules then `modules` (a ModuleList or any
        iterable of Modules; TypeError for an item that is not a Module)."""
        return ModuleList(list(self._items)).extend(modules)

    def __radd__(self, modules: Iterable[Module]) -> ModuleList:
        """`[m] + self.layers`: a plain list of modules set as an attribute is a ModuleList here (the module
        docstring), where torch keeps the list; so adding one to a list works as it does there."""
        return ModuleList(modules).extend(self._items)

    def pop(self, index: int = -1) -> Module:
        """torch.nn.ModuleList.pop: remove and return the module at `index` (the later ones renumbered);
        IndexError for an index out of range."""
        module = self._items.pop(index)
        self._reindex()
        return module

    def __delitem__(self, idx) -> None:
        """del self[idx] (an int or a slice), the later modules renumbered as torch's."""
        del self._items[idx]
        self._reindex()

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList is a container: iterate over it and call its modules")


class ModuleDict(Module):
    """torch.nn.ModuleDict: a dict of modules whose parameters are registered under their keys (state_dict keys
    "key.weight", ...); keys, values, items, indexing and `in` as a dict."""

    def __init__(self, modules: Optional[Mapping[str, Module]] = None):
        super().__init__()
        for name, m in (modules or {}).items():
            self[name] = m

    def __getitem__(self, key: str) -> Module:
        if self._kinds.get(key) != _MODULE:
            raise KeyError(key)
        return self.__dict__[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, _check_module(module, "ModuleDict"))

    def __contains__(self, key: str) -> bool:
        return self._kinds.get(key) == _MODULE

    def __len__(self) -> int:
        return sum(1 for k in self._kinds.values() if k == _MODULE)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        return [n for n, k in self._kinds.items() if k == _MODULE]

    def values(self) -> list[Module]:
        return [self.__dict__[n] for n in self.keys()]

    def items(self) -> list[tuple[str, Module]]:
        return [(n, self.__dict__[n]) for n in self.keys()]

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict is a container: index it and call its modules")


def _check_module(m, where: str) -> Module:
    if not isinstance(m, Module):
        raise TypeError(f"{where}: expected a Module, got {type(m).__name__}")
    return m
