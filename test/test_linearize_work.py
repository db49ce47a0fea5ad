"""The Python work of linearizing a CPU kernel, counted (never timed): a register block's elements are indexed
from element 0 by constants, and the linearizer's common-subexpression keys hash without Python calls. The
kernels' values are checked against numpy."""
import enum

import numpy as np

from codegen.kernel import Kernel
from codegen.optimizer import optimize
from codegen.uops import U
from tinyjit import Device, Tensor
from tinyjit.helpers import prod
from tinyjit.schedule import create_schedule
from tinyjit.view import ShapeTracker


def _matmul_plus_bias():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((64, 256)).astype(np.float32), rng.standard_normal((256, 128)).astype(np.float32)
    b = rng.standard_normal(128).astype(np.float32)
    return Tensor(x) @ Tensor(w) + Tensor(b), x @ w + b


def _linearize(out: Tensor):
    renderer = Device.renderer("CPU")
    (item,) = [item for item in create_schedule([out.node]) if item.kind == "kernel"]
    k = Kernel(item.ast)
    optimize(k, renderer, Device["CPU"].threads)
    block = prod(k.full_shape[k.first_upcast:])
    return k, block, renderer.linearize(k)


def test_a_register_blocks_elements_are_indexed_by_constants(monkeypatch):
    """The output, the bias and B's row vary along the block by constant steps: each access's views are asked for
    its index a few times (with upcast variables, and for element 0), not once per element of the block."""
    out, expected = _matmul_plus_bias()
    calls = []
    original = ShapeTracker.index_and_valid

    def counted(self, idxs):
        calls.append(self)
        return original(self, idxs)
    monkeypatch.setattr(ShapeTracker, "index_and_valid", counted)
    k, block, program = _linearize(out)
    assert block >= 32, (block, k.full_shape)
    stores = sum(u.uop == U.STORE for u in program.uops)
    assert stores == block
    assert len(calls) <= 8 * len(k.accesses), f"{len(calls)} index computations for a block of {block}"
    monkeypatch.undo()
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_linearizing_hashes_no_enum_through_python(monkeypatch):
    """Every op the linearizer emits is looked up by its kind (a U) in the common-subexpression tables: U hashes by
    identity in C, as tinyjit.ops.Op does, not through Enum's Python __hash__."""
    out, _ = _matmul_plus_bias()
    hashed = []
    original = enum.Enum.__hash__

    def counted(self):
        hashed.append(self)
        return original(self)
    monkeypatch.setattr(enum.Enum, "__hash__", counted)
    _linearize(out)
    assert not [member for member in hashed if isinstance(member, U)]


def test_index_expressions_are_lowered_once_per_scope(monkeypatch):
    """Each element's index is element 0's terms plus a constant: the shared terms are lowered to ops once, not
    again per element (they were looked up in the common-subexpression tables per element and term: 11,000 emits
    for 2,800 ops)."""
    from codegen.linearizer import Linearizer
    out, expected = _matmul_plus_bias()
    emits = []
    original = Linearizer.emit

    def counted(self, *args, **kwargs):
        emits.append(args[0])
        return original(self, *args, **kwargs)
    monkeypatch.setattr(Linearizer, "emit", counted)
    _, block, program = _linearize(out)
    assert len(emits) < 2 * len(program.uops), f"{len(emits)} emits for {len(program.uops)} ops"
    monkeypatch.undo()
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)
