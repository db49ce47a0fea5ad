"""Every public method and property of Tensor, and every public function and class of the modules that make up
the Tensor layer, has a docstring (what it computes, shapes, dtypes, errors, the PyTorch/NumPy function it
mirrors: the project's standard for public functions)."""
import importlib
import inspect
import re

import pytest

from tinyjit import Tensor

# the modules Tensor is made of (tinyjit/tensor.py composes their mixins) and the autograd API beside it
TENSOR_LAYER = ["tinyjit.tensor", "tinyjit.tensor_base", "tinyjit.tensor_arithmetic", "tinyjit.tensor_math",
                "tinyjit.tensor_movement", "tinyjit.tensor_reduce", "tinyjit.tensor_nn", "tinyjit.tensor_linalg",
                "tinyjit.tensor_sort", "tinyjit.tensor_select", "tinyjit.tensor_scatter", "tinyjit.tensor_histogram",
                "tinyjit.tensor_math_more", "tinyjit.tensor_create", "tinyjit.tensor_mutation",
                "tinyjit.tensor_autograd", "tinyjit.tensor_format", "tinyjit.random", "tinyjit.indexing",
                "tinyjit.autograd", "tinyjit.autograd_function", "tinyjit.autograd_graph"]


def _documented(obj) -> bool:
    return bool((inspect.getdoc(obj) or "").strip())


def _tensor_members():
    """(name, object) of every public attribute of Tensor that is a method or property (as defined, so that a
    property's getter and a classmethod's function are what is checked)."""
    for name in sorted(dir(Tensor)):
        if name.startswith("_"):
            continue
        static = inspect.getattr_static(Tensor, name)
        if isinstance(static, property):
            yield name, static.fget
        elif isinstance(static, (classmethod, staticmethod)):
            yield name, static.__func__
        elif callable(static):
            yield name, static


def test_every_public_tensor_method_has_a_docstring():
    members = list(_tensor_members())
    assert len(members) > 150, f"only {len(members)} public Tensor methods found"
    missing = [name for name, obj in members if not _documented(obj)]
    assert not missing, f"{len(missing)} public Tensor methods/properties without a docstring: {', '.join(missing)}"


def test_tensor_docstrings_name_what_they_mirror():
    """Each docstring names the PyTorch or NumPy function the method mirrors, or says it is tinyjit's own (an
    object's inherited docstring, such as `Return self<value.` for a comparison, does not count)."""
    vague = [name for name, obj in _tensor_members()
             if not re.search(r"torch|numpy|tinyjit's own", inspect.getdoc(obj) or "", re.IGNORECASE)
             or (inspect.getdoc(obj) or "").startswith("Return self")]
    assert not vague, f"docstrings that name no PyTorch/NumPy function: {', '.join(vague)}"


@pytest.mark.parametrize("module_name", TENSOR_LAYER)
def test_every_public_function_of_the_tensor_layer_has_a_docstring(module_name):
    module = importlib.import_module(module_name)
    assert _documented(module), f"{module_name} has no module docstring"
    missing = []
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
            continue   # private, or imported from elsewhere
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and not _documented(obj):
            missing.append(name)
        if inspect.isclass(obj):   # the public methods of a public class too (the mixins' are checked above)
            missing += [f"{name}.{attr}" for attr, value in vars(obj).items()
                        if not attr.startswith("_") and inspect.isfunction(value) and not _documented(value)]
    assert not missing, f"{module_name}: public functions/classes without a docstring: {', '.join(missing)}"
