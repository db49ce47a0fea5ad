"""`repr(tensor)` like PyTorch's: `tensor([1., 2.])`, `tensor([1.5000, 2.0000], dtype=dtypes.float16)`, with the
device when it is not the CPU, `requires_grad=True` on a leaf that requires grad and `grad_fn=<...>` on a result
that does, and tensors of more than 1000 elements summarized (three items from each end of every dim).

The value is realized to print it (a repr of a lazy tensor runs its kernels, as printing a CUDA tensor in torch
synchronizes). Numbers are formatted as torch does: every float with four decimals (`1.5000`), or as `1.` when all
finite values are integers, in scientific notation (`1.0000e-05`) when the finite magnitudes span more than 1000x,
pass 1e8, or go below 1e-4; all items padded to one width.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyjit.dtype import dtypes

if TYPE_CHECKING:
    from tinyjit.tensor_base import TensorBase

SUMMARIZE_ABOVE = 1000   # torch's print threshold
EDGE_ITEMS = 3
LINE_WIDTH = 80


def _shown_values(arr: np.ndarray) -> np.ndarray:
    """The values that will be printed (the edges of every dim of a summarized array), flattened."""
    if arr.size <= SUMMARIZE_ABOVE:
        return arr.reshape(-1)
    for axis, n in enumerate(arr.shape):
        if n > 2 * EDGE_ITEMS:
            keep = list(range(EDGE_ITEMS)) + list(range(n - EDGE_ITEMS, n))
            arr = np.take(arr, keep, axis=axis)
    return arr.reshape(-1)


def _float_formatter(values: np.ndarray):
    """A function formatting one float the way torch would print it beside `values`."""
    finite = values[np.isfinite(values)].astype(np.float64)
    nonzero = np.abs(finite[finite != 0])
    if nonzero.size == 0:
        return lambda v: _special(v) or f"{v:.0f}."
    largest, smallest = nonzero.max(), nonzero.min()
    sci = largest / smallest > 1000.0 or largest > 1e8
    if np.all(finite == np.ceil(finite)):
        if sci:
            return lambda v: _special(v) or f"{v:.4e}"
        return lambda v: _special(v) or f"{v:.0f}."
    if sci or smallest < 1e-4:
        return lambda v: _special(v) or f"{v:.4e}"
    return lambda v: _special(v) or f"{v:.4f}"


def _special(v: float):
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return None


def format_values(arr: np.ndarray, prefix: str) -> str:
    """The bracketed values of `arr` laid out like torch (rows aligned under `prefix`)."""
    shown = _shown_values(arr)
    if arr.dtype == np.bool_:
        fmt = str
    elif arr.dtype.kind == "f":
        fmt = _float_formatter(shown)
    else:
        fmt = lambda v: str(int(v))   # noqa: E731
    width = max((len(fmt(v)) for v in shown.tolist()), default=0)
    text = np.array2string(arr, separator=", ", prefix=prefix, max_line_width=LINE_WIDTH,
                           threshold=SUMMARIZE_ABOVE, edgeitems=EDGE_ITEMS,
                           formatter={"all": lambda v: fmt(v).rjust(width)})
    # torch writes the gap of a summarized row as " ..."
    return text.replace(", ..., ", ",  ..., ")


def tensor_repr(t: "TensorBase") -> str:
    """torch's repr of a tensor (see the module docstring)."""
    arr = t.numpy()
    prefix = "tensor("
    extras = []
    if arr.size == 0:
        body = "[]"
        if arr.shape != (0,):
            extras.append(f"size={tuple(arr.shape)}")
    elif arr.ndim == 0:
        body = format_values(arr.reshape(1), prefix)[1:-1]
    else:
        body = format_values(arr, prefix)
    if t.dtype not in (dtypes.float32, dtypes.int64, dtypes.bool):
        extras.append(f"dtype={t.dtype!r}")
    if t.device != "CPU":
        extras.append(f"device='{t.device}'")
    if t.requires_grad and t._ctx is None:
        extras.append("requires_grad=True")
    elif t.requires_grad:
        extras.append(f"grad_fn=<{t._ctx.name.capitalize()}Backward>")
    return prefix + body + "".join(", " + e for e in extras) + ")"
