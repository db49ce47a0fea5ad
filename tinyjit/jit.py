"""TinyJit: capture the kernels a function launches, then replay them without building or scheduling graphs.

    @TinyJit
    def step(x, y): ...

The first call runs normally (it compiles everything). The second call runs again while recording every
kernel launch its thread makes and the buffers it touched (launches of other threads are not recorded). Later
calls only swap the input tensors' buffers into that record and launch the kernels again. Replay reuses every
intermediate and output buffer: a tensor returned by one call is overwritten by the next call (copy it with
`.numpy()` or `.clone().realize()` to keep it). A returned tensor passed back in (`x = f(x)`) is copied first,
since the replay writes the buffer it reads. An input the function returns (`buf.add_(v); return buf`) is returned
as the caller's input tensor of that call, as eager code (and torch) would.
"""
from __future__ import annotations

import functools
import os
import weakref
from typing import Any, Callable

from tinyjit import inplace
from tinyjit import realize as realize_module
from tinyjit.capture import StepKind, capture, without_repeated_scratch_copies
from tinyjit.helpers import getenv
from tinyjit.lazy import Node
from tinyjit.ops import Op
from tinyjit.tensor import Tensor

from runtime.cpu_pool import sequence_call


# one more in each forked child: a capture's prepared launches hold the parent's thread-pool slots, whose workers a
# child does not have (its threaded launches would wait for them forever), so a replay in a child prepares again
_fork_generation = [0]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _fork_generation.__setitem__(0, _fork_generation[0] + 1))


class JitError(RuntimeError):
    """TinyJit was used in a way it cannot replay correctly (it refuses instead of giving a wrong answer)."""


def _signature(t) -> tuple:
    return (t.shape, t.dtype, t.device)


def _aliasing(tensors) -> tuple:
    """For each tensor input (position, tensor), the index of the first input over the same buffer: the captured
    kernels read one buffer where the capture call passed one tensor twice (g(x, x)), so a replay must pass the
    inputs aliased the same way."""
    first: dict[int, int] = {}
    return tuple(first.setdefault(id(t.node.buffer), i) for i, (_, t) in enumerate(tensors))


def _shared(tensors, aliasing: tuple) -> list[list]:
    """The groups of argument positions that an `_aliasing` pattern puts over one buffer (for error messages)."""
    groups = [[position for (position, _), first in zip(tensors, aliasing) if first == i] for i in set(aliasing)]
    return [g for g in groups if len(g) > 1]


class TinyJit:
    def __init__(self, fn: Callable):
        self.fn = fn
        self.calls = 0
        self.captured: list = []
        self.prepared: list = []         # the replay loop (see _prepare), a step per launch
        self.replay_steps: list = []     # the same with runs of CPU launches made one C call each (_sequenced)
        self.prepared_generation = 0     # _fork_generation when they were prepared
        self.input_buffers: list = []    # buffers of the capture call's input tensors, by position
        self.input_signature: list = []
        self.input_aliasing: tuple = ()
        self.used_buffers: set[int] = set()   # ids of every buffer the captured steps use
        self.static_args: Any = None
        self.outputs = None              # returned value of the capture call (tensors replaced on replay)
        # id of a returned tensor of the capture call -> (index in the tensor inputs of the input it is or whose
        # buffer it holds, whether it is that input tensor itself): a replay returns that input of the call
        self.output_inputs: dict[int, tuple[int, bool]] = {}
        self.written: set[int] = set()   # ids of the buffers the replay writes, other than the inputs
        self.input_copies: dict = {}     # input position -> (steps copying an input into a buffer of its own, it)
        # what the captured function assigned: those tensors and their buffers, written in place by each replay;
        # values others still read from them are preserved first (tinyjit.inplace, as for a realize)
        self.assigned: list = []         # weak references to the tensors
        self.assigned_buffers: list = []
        self.checked_epoch = -1
        self.output_nodes: "weakref.WeakSet" = weakref.WeakSet()
        self.checked_nodes: "weakref.WeakSet" = weakref.WeakSet()
        functools.update_wrapper(self, fn)

    def __get__(self, obj, objtype=None):   # decorating a method binds self like a function would
        return functools.partial(self.__call__, obj) if obj is not None else self

    def reset(self) -> None:
        inplace.watch(self.assigned_buffers, watching=False)
        self.calls, self.captured, self.prepared, self.input_buffers, self.outputs = 0, [], [], [], None
        self.replay_steps = []
        self.used_buffers = set()
        self.written, self.input_copies, self.assigned, self.assigned_buffers = set(), {}, [], []
        self.checked_epoch = -1

    def __del__(self):
        try:
            inplace.watch(self.assigned_buffers, watching=False)
        except Exception:  # interpreter shutdown
            pass

    def _split_args(self, args, kwargs):
        tensors, static = [], []
        for position, value in list(enumerate(args)) + sorted(kwargs.items()):
            if isinstance(value, Tensor):
                tensors.append((position, value))
            elif isinstance(value, (list, tuple, dict)) and _contains_tensor(value):
                raise JitError(f"TinyJit: argument {position!r} nests tensors in a {type(value).__name__}; pass "
                               f"tensors as direct arguments so they can be tracked")
            else:
                static.append((position, value))
        return tensors, static

    def __call__(self, *args, **kwargs):
        if getenv("JIT", 1) == 0:
            return self.fn(*args, **kwargs)
        tensors, static = self._split_args(args, kwargs)
        for position, t in tensors:
            if not t.node.realized:
                raise JitError(f"TinyJit: input {position!r} is not realized; call .realize() on it before the "
                               f"jitted function (inputs must be buffers the replay can swap)")
        self.calls += 1
        if self.calls == 1:
            with inplace.recording_assigns() as assigned:
                return self._finish(self.fn(*args, **kwargs), assigned)
        if self.calls == 2:
            return self._capture(args, kwargs, tensors, static)
        return self._replay(tensors, static)

    @staticmethod
    def _finish(out, assigned=()):
        """Realize what the call returned and what it assigned: an assign nothing returned reads is still part of
        the call (a replay makes it), so it runs now, inside the capture, not at some later realize."""
        returned = [t for t in _flatten(out) if isinstance(t, Tensor)]
        pending = [t for t in (ref() for ref in assigned) if t is not None and not t.node.realized]
        if returned or pending:
            realize_module.realize_nodes([t.node for t in returned + pending])
            for t in returned + pending:
                t._collapse()
        return out

    def _capture(self, args, kwargs, tensors, static):
        self.input_buffers = [t.node.buffer for _, t in tensors]
        self.input_signature = [(position, _signature(t)) for position, t in tensors]
        self.input_aliasing = _aliasing(tensors)
        self.static_args = static
        # an update this thread made before this call (W.sub_(lr * g) between calls) lands first, as a replay lands
        # it: realized inside the capture, its kernel would be recorded and every replay would apply it again.
        # (Another thread's pending assigns are its own: that thread may be realizing them right now.)
        if inplace.assigns_pending():
            pending = inplace.pending_assign_nodes(this_thread=True)
            if pending:
                realize_module.realize_nodes(pending)
        with capture() as recorded, inplace.recording_assigns() as assigned:   # this thread's steps
            out = self._finish(self.fn(*args, **kwargs), assigned)
        if not recorded.steps:
            raise JitError("TinyJit: the function launched no kernels while being captured; nothing to replay")
        self.captured = recorded.steps
        self._prepare_replay()
        # every launch writes its first buffer (a kernel stores buffer 0; a copy's destination comes first)
        inputs = {id(b) for b in self.input_buffers}
        self.written = {id(step.buffers[0]) for step in recorded.steps} - inputs
        self.used_buffers = {id(b) for step in recorded.steps for b in step.buffers}
        self.assigned = list({id(ref): ref for ref in assigned if ref() is not None}.values())
        buffers = {id(t.node.buffer): t.node.buffer for t in (ref() for ref in self.assigned)
                   if t is not None and t.node.buffer is not None and id(t.node.buffer) in self.written}
        # buffers holding old contents of an assigned buffer (refreshed by each replay) are kept like them
        buffers.update((id(b), b) for b in recorded.preserved if id(b) in self.written)
        self.assigned_buffers = list(buffers.values())
        inplace.watch(self.assigned_buffers)
        self.outputs = out
        self.output_inputs = self._outputs_from_inputs(out, tensors)
        self.output_nodes.update(t.node for t in _flatten(out)
                                 if isinstance(t, Tensor) and id(t) not in self.output_inputs)
        return out

    @staticmethod
    def _outputs_from_inputs(out, tensors) -> dict[int, tuple[int, bool]]:
        """Which returned tensors are inputs of the call (e.g. one it wrote in place and returned, as in
        `buf.add_(v); return buf`) or tensors over an input's whole buffer:
        {id(returned tensor): (input index, is the input tensor itself)}."""
        by_buffer = {id(t.node.buffer): i for i, (_, t) in enumerate(tensors)}
        found = {}
        for t in _flatten(out):
            if not isinstance(t, Tensor):
                continue
            same = [i for i, (_, given) in enumerate(tensors) if given is t]
            if same:
                found[id(t)] = (same[0], True)
            elif t.node.buffer is not None and id(t.node.buffer) in by_buffer:
                found[id(t)] = (by_buffer[id(t.node.buffer)], False)
        return found

    def _prepare_replay(self) -> None:
        """The replay loop of the capture, bound to this process's launches (again after a fork)."""
        self.prepared = self._prepare(without_repeated_scratch_copies(self.captured))
        self.replay_steps = _sequenced(self.prepared)
        self.input_copies = {}
        self.prepared_generation = _fork_generation[0]

    def _prepare(self, recorded, input_buffers=None) -> list:
        """The replay loop's steps: each captured step with its arguments computed once, and the positions
        where an input buffer is swapped in on every call."""
        position = {id(b): i for i, b in enumerate(self.input_buffers if input_buffers is None else input_buffers)}
        steps = []
        for step in recorded:
            swaps = [(j, position[id(b)]) for j, b in enumerate(step.buffers) if id(b) in position]
            if step.kind == StepKind.KERNEL:
                call, set_buffer = step.run.prepare(step.buffers)
            else:   # a copy, a host step or a check: called with the buffers themselves
                bufs = list(step.buffers)
                call, set_buffer = (lambda bufs=bufs, run=step.run: run(*bufs)), bufs.__setitem__
            steps.append((call, set_buffer, swaps, step.buffers))   # buffers: kept alive with the capture
        return steps

    def _replay(self, tensors, static):
        signature = [(position, _signature(t)) for position, t in tensors]
        if signature != self.input_signature:
            raise JitError(f"TinyJit: inputs changed since capture: captured {self.input_signature}, "
                           f"got {signature} (position, (shape, dtype, device))")
        if not _same_static(static, self.static_args):
            raise JitError("TinyJit: a non-tensor argument changed since capture; the captured kernels have the old "
                           "value baked in. Pass it as a Tensor or use a new TinyJit")
        aliasing = _aliasing(tensors)
        if aliasing != self.input_aliasing:
            raise JitError(f"TinyJit: the inputs share buffers differently than at capture (argument positions over "
                           f"one buffer: captured {_shared(tensors, self.input_aliasing)}, now "
                           f"{_shared(tensors, aliasing)}); the captured kernels read one buffer where the capture "
                           f"passed one tensor twice. Capture with the inputs aliased as they will be, or use a new "
                           f"TinyJit")
        if self.prepared_generation != _fork_generation[0]:   # (a forked child)
            self._prepare_replay()
        inputs = [t.node.buffer for _, t in tensors]
        for i, buffer in enumerate(inputs):
            if id(buffer) in self.written:   # e.g. last call's output: the replay would write what it reads
                inputs[i] = self._copy_input(i, buffer)
        if inplace.assigns_pending():   # an update made since (W.add_(1) of a tensor the kernels read) lands first
            self._land_updates_of_read_buffers()
        self._preserve_what_others_read()
        self._launch(self.replay_steps, inputs)
        # outputs: fresh tensors over the same (now overwritten) buffers; an input returned is this call's input
        return _map_tensors(self.outputs, lambda template: self._output_tensor(template, tensors, inputs))

    def _output_tensor(self, template, tensors, inputs):
        if id(template) in self.output_inputs:
            position, is_input = self.output_inputs[id(template)]
            given = tensors[position][1]
            if is_input and given.node.buffer is inputs[position]:
                return given   # the caller's own tensor, as eager (and torch) return it
            # a tensor over the input's buffer (or over the copy the replay ran on, see _copy_input)
            return Tensor(Node.from_buffer(inputs[position], template.shape))
        node = Node.from_buffer(template.node.buffer, template.shape)
        self.output_nodes.add(node)
        return Tensor(node)

    def _land_updates_of_read_buffers(self) -> None:
        """Realize the pending assigns into buffers the captured steps use (another thread's pending assigns, into
        its own buffers, are its business: realizing them here would take them out of that thread's capture)."""
        nodes = [n for n in inplace.pending_assign_nodes() if id(inplace.target_buffer(n)) in self.used_buffers]
        if nodes:
            realize_module.realize_nodes(nodes)

    def _preserve_what_others_read(self) -> None:
        """The replay writes in place what the function assigned (parameters, optimizer state): values built
        since that still read the old contents get a copy of them first, as a realize would do."""
        if not self.assigned_buffers:
            return
        self.checked_epoch, renew, plan = inplace.replay_plan(self.assigned_buffers, self.assigned,
                                                              self.checked_epoch, self.output_nodes,
                                                              self.checked_nodes)
        for t in renew:   # its old node keeps the old contents (others read it); it means the new ones now
            old = t.node
            t.node = Node.from_buffer(old.buffer, t.shape)
            t._node_changed(old)
        for buffer in self.assigned_buffers:
            if plan.get(id(buffer)):
                realize_module.preserve_old_contents(buffer, plan[id(buffer)])

    @staticmethod
    def _launch(steps, inputs) -> None:
        for call, set_buffer, swaps, _ in steps:
            for j, i in swaps:
                set_buffer(j, inputs[i])
            call()

    def _copy_input(self, position: int, buffer):
        """A copy of `buffer` (input `position`) in a buffer of its own, kept for later calls; the copy kernel is
        recorded the first time and replayed like the rest."""
        if position not in self.input_copies:
            source = Node.from_buffer(buffer, (buffer.size,))
            copy = Node(Op.CONTIGUOUS, (source,), None, buffer.dtype, (buffer.size,), buffer.device)
            with capture() as recorded:
                realize_module.realize_nodes([copy])
            self.input_copies[position] = (self._prepare(recorded.steps, [buffer]), copy.buffer)
            return copy.buffer
        steps, copied = self.input_copies[position]
        self._launch(steps, [buffer])
        return copied


def _sequenced(steps: list) -> list:
    """The replay loop `steps` with each run of consecutive CPU kernel launches on one device made a single step:
    one C call that runs them in order (runtime.cpu_pool.sequence_call), not a Python call each (a GRU step is
    ~450 small launches). An input swapped in on every call goes to the launch it belongs to; where the native
    code does not run, the steps stay as they are."""
    out, run = [], []

    def flush():
        call = sequence_call(run[0][0].program.device, [s[0].sequence_entry for s in run]) if len(run) > 1 else None
        if call is None:
            out.extend(run)
        else:
            setters = [set_buffer for _, set_buffer, _, _ in run]
            swaps = [((m, j), i) for m, (_, _, member_swaps, _) in enumerate(run) for j, i in member_swaps]
            call.members = list(run)   # their C argument arrays and programs stay alive with the table
            out.append((call, lambda key, buffer: setters[key[0]](key[1], buffer), swaps,
                        [b for *_, buffers in run for b in buffers]))
        run.clear()

    for step in steps:
        call = step[0]
        if getattr(call, "sequence_entry", None) is None:
            if run:
                flush()
            out.append(step)
            continue
        if run and call.program.device is not run[0][0].program.device:
            flush()
        run.append(step)
    if run:
        flush()
    return out


def _contains_tensor(value) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return any(isinstance(v, Tensor) or (isinstance(v, (list, tuple, dict)) and _contains_tensor(v)) for v in items)


def _flatten(out):
    if isinstance(out, (list, tuple)):
        for o in out:
            yield from _flatten(o)
    elif isinstance(out, dict):
        for o in out.values():
            yield from _flatten(o)
    else:
        yield out


def _map_tensors(out, fn):
    if isinstance(out, Tensor):
        return fn(out)
    if isinstance(out, (list, tuple)):
        return type(out)(_map_tensors(o, fn) for o in out)
    if isinstance(out, dict):
        return {k: _map_tensors(v, fn) for k, v in out.items()}
    return out


def _same_static(a, b) -> bool:
    try:
        return a == b
    except Exception:   # e.g. numpy arrays: compare by identity
        return all(x is y for x, y in zip(a, b)) and len(a) == len(b)
