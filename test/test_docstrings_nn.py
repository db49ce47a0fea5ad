"""Every public nn Module class, nn.functional function, optimizer and learning-rate scheduler (and the
tinyjit.pytorch namespace) has a docstring that says what it computes and names the PyTorch function it mirrors
(issue 13 item 6, for nn/ and optim/). Shapes, dtypes and errors are checked by review, not here."""
from __future__ import annotations

import inspect

import pytest

import tinyjit.nn.functional as F
import tinyjit.optim.lr_scheduler as lr_scheduler
import tinyjit.pytorch as tj
from tinyjit import nn, optim


def _own_doc(obj) -> str:
    """The object's own docstring (a class's, not one it inherits)."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    return (doc or "").strip()


def _public(namespace, keep) -> list[tuple[str, object]]:
    return [(f"{namespace.__name__}.{name}", obj) for name, obj in sorted(vars(namespace).items())
            if not name.startswith("_") and keep(obj)]


def _defined_in_package(obj, package: str) -> bool:
    return getattr(obj, "__module__", "").startswith(package)


def _unique(entries: list) -> list:
    """Each object once, under the first name it was found by (lr_scheduler re-exports optim's Optimizer)."""
    seen: set[int] = set()
    return [(name, obj) for name, obj in entries if id(obj) not in seen and not seen.add(id(obj))]


PUBLIC = _unique(
    _public(nn, lambda o: inspect.isclass(o) and issubclass(o, nn.Module))
    + _public(F, lambda o: inspect.isfunction(o) and _defined_in_package(o, "tinyjit.nn"))
    + _public(optim, lambda o: inspect.isclass(o) and _defined_in_package(o, "tinyjit.optim"))
    + _public(lr_scheduler, lambda o: inspect.isclass(o) and _defined_in_package(o, "tinyjit.optim"))
    + _public(tj, lambda o: (inspect.isfunction(o) or inspect.isclass(o)) and _defined_in_package(o, "tinyjit.pytorch"))
)


def test_the_walk_finds_the_namespaces():
    names = {name for name, _ in PUBLIC}
    assert {"tinyjit.nn.Linear", "tinyjit.nn.functional.cross_entropy", "tinyjit.optim.AdamW",
            "tinyjit.optim.lr_scheduler.StepLR", "tinyjit.pytorch.tensor"} <= names
    assert len(PUBLIC) > 150


@pytest.mark.parametrize("name,obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_api_has_a_docstring_naming_its_pytorch_counterpart(name, obj):
    doc = _own_doc(obj)
    assert doc, f"{name} has no docstring"
    assert "torch" in doc.lower(), f"{name}'s docstring does not name the PyTorch function it mirrors (or say " \
                                   f"there is none): {doc[:80]!r}"
