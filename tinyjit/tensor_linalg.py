"""Linear-algebra helpers of Tensor with torch's names: einsum, mm, mv, bmm, t, tril/triu. All are movement ops,
multiplies and sums (einsum contracts like matmul: broadcast, multiply, sum; the scheduler fuses each
contraction into one reduce kernel)."""
from __future__ import annotations

import string
from typing import TYPE_CHECKING, Sequence

from tinyjit.dtype import dtypes, promote
from tinyjit.tensor_base import TensorBase

if TYPE_CHECKING:
    from typing_extensions import Self

_LETTERS = set(string.ascii_letters)


def _diagonal(x: TensorBase, a: int, b: int) -> TensorBase:
    """The diagonal of dims a < b (of equal size n) as the last dim: (..., n) with the others in order. Movement
    ops only: the n*n block flattened and padded to n*(n+1) puts the diagonal in column 0 of an (n, n+1) view."""
    n = x.shape[a]
    rest = [i for i in range(x.ndim) if i not in (a, b)]
    x = x.permute(rest + [a, b])
    lead = x.shape[:-2]
    flat = x.reshape(lead + (n * n,)).pad(tuple((0, 0) for _ in lead) + ((0, n),))
    return flat.reshape(lead + (n, n + 1))[..., 0]


def _parse(subscripts: str, operands: Sequence[TensorBase]) -> tuple[list[list[str]], list[str]]:
    """Per operand, one label per dim (an ellipsis becomes labels '0', '1', ... for its dims, right-aligned
    across operands) and the output labels (torch's implicit output: the ellipsis dims, then the labels used
    once, in alphabetical order)."""
    spec = subscripts.replace(" ", "")
    inputs, arrow, output = spec.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum: {len(terms)} operand subscripts in {subscripts!r} for {len(operands)} operands")
    labels, ellipsis_dims = [], 0
    for term, x in zip(terms, operands):
        if term.count("...") > 1 or any(c not in _LETTERS for c in term.replace("...", "")):
            raise ValueError(f"einsum: invalid subscripts {term!r} in {subscripts!r} (letters and one '...')")
        named = len(term.replace("...", ""))
        if ("..." in term and named > x.ndim) or ("..." not in term and named != x.ndim):
            raise ValueError(f"einsum: subscripts {term!r} do not fit an operand of shape {x.shape}")
        ellipsis_dims = max(ellipsis_dims, x.ndim - named if "..." in term else 0)
    for term, x in zip(terms, operands):
        head, _, tail = term.partition("...")
        if "..." in term:
            k = x.ndim - len(head) - len(tail)
            labels.append(list(head) + [str(ellipsis_dims - k + i) for i in range(k)] + list(tail))
        else:
            labels.append(list(term))
    broadcast = [str(i) for i in range(ellipsis_dims)]
    if arrow:
        if output.count("...") > 1 or any(c not in _LETTERS for c in output.replace("...", "")):
            raise ValueError(f"einsum: invalid output subscripts {output!r}")
        head, _, tail = output.partition("...")
        if "..." not in output and ellipsis_dims and any(d in sum(labels, []) for d in broadcast):
            raise ValueError(f"einsum: output subscripts {output!r} must contain '...' (the operands use it)")
        out = list(head) + (broadcast if "..." in output else []) + list(tail)
        seen = sum(labels, [])
        for c in out:
            if c not in seen:
                raise ValueError(f"einsum: output label {c!r} of {subscripts!r} appears in no operand")
        if len(set(out)) != len(out):
            raise ValueError(f"einsum: output subscripts {output!r} repeat a label")
    else:
        counts: dict[str, int] = {}
        for c in sum(labels, []):
            counts[c] = counts.get(c, 0) + 1
        out = broadcast + sorted(c for c, k in counts.items() if k == 1 and c in _LETTERS)
    return labels, out


class LinalgMixin(TensorBase):
    @staticmethod
    def einsum(subscripts: str, *operands) -> Self:
        """torch.einsum: any subscripts ("ij,jk->ik", "bhqd,bhkd->bhqk", "ii->i", "...ij->...ji", implicit
        output without "->"), with broadcasting of size-1 dims and '...'. Operands may also be passed as one
        list. Contracts left to right, summing each label out as soon as no later operand or the output needs
        it. ValueError for malformed subscripts or sizes that do not match."""
        if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
            operands = tuple(operands[0])
        if not operands or not all(isinstance(x, TensorBase) for x in operands):
            raise TypeError("einsum: operands must be Tensors")
        labels, out = _parse(subscripts, operands)
        sizes: dict[str, int] = {}
        prepared = []
        for x, labs in zip(operands, labels):
            # a label repeated within one operand takes the diagonal
            labs = list(labs)
            while len(set(labs)) != len(labs):
                c = next(c for c in labs if labs.count(c) > 1)
                a = labs.index(c)
                b = labs.index(c, a + 1)
                if x.shape[a] != x.shape[b]:
                    raise ValueError(f"einsum: label {c!r} repeated in one operand with sizes {x.shape[a]} and "
                                     f"{x.shape[b]}")
                x = _diagonal(x, a, b)
                labs = [lab for i, lab in enumerate(labs) if i not in (a, b)] + [c]
            for c, s in zip(labs, x.shape):
                if sizes.get(c, 1) != 1 and s != 1 and sizes[c] != s:
                    raise ValueError(f"einsum: label {c!r} has sizes {sizes[c]} and {s} in {subscripts!r}")
                sizes[c] = s if sizes.get(c, 1) == 1 else sizes[c]
            prepared.append((x, labs))
        dtype = prepared[0][0].dtype
        for x, _ in prepared[1:]:
            dtype = promote(dtype, x.dtype)
        acc, acc_labels = None, []
        for k, (x, labs) in enumerate(prepared):
            x = x.cast(dtype)
            if acc is None:
                acc, acc_labels = x, labs
            else:
                union = acc_labels + [c for c in labs if c not in acc_labels]
                acc = _align(acc, acc_labels, union) * _align(x, labs, union)
                acc_labels = union
            later = set(out).union(*[set(lab) for _, lab in prepared[k + 1:]])
            done = [i for i, c in enumerate(acc_labels) if c not in later]
            if done:
                acc = acc.sum(tuple(done), dtype=dtype) if dtype.is_float else acc.sum(tuple(done)).cast(dtype)
                acc_labels = [c for i, c in enumerate(acc_labels) if i not in done]
        acc = acc.permute([acc_labels.index(c) for c in out]) if out else acc.reshape(())
        shape = tuple(sizes[c] for c in out)
        return acc.expand(shape) if acc.shape != shape else acc

    def bmm(self, other) -> Self:
        """torch.bmm: (b, n, k) @ (b, k, m) -> (b, n, m); RuntimeError unless both are 3-d with one batch size
        and matching inner sizes."""
        if not isinstance(other, TensorBase) or self.ndim != 3 or other.ndim != 3 or self.shape[0] != other.shape[0] \
                or self.shape[2] != other.shape[1]:
            raise RuntimeError(f"bmm: expected (b, n, k) and (b, k, m) tensors, got shapes {self.shape} and "
                               f"{getattr(other, 'shape', type(other).__name__)}")
        return self.matmul(other)

    def mm(self, mat2) -> Self:
        """torch.mm: (n, k) @ (k, m) -> (n, m), the matrix product of two 2-D tensors only (matmul broadcasts and
        takes vectors); mixed dtypes promote as matmul's do (torch raises). TypeError when mat2 is not a tensor,
        RuntimeError unless both are 2-D with matching inner sizes."""
        if not isinstance(mat2, TensorBase):
            raise TypeError(f"mm: mat2 must be a Tensor, not {type(mat2).__name__}")
        if self.ndim != 2 or mat2.ndim != 2:
            raise RuntimeError(f"mm: expected two 2-D tensors, got shapes {self.shape} and {mat2.shape}")
        if self.shape[1] != mat2.shape[0]:
            raise RuntimeError(f"mm: mat1 and mat2 shapes cannot be multiplied ({self.shape[0]}x{self.shape[1]} "
                               f"and {mat2.shape[0]}x{mat2.shape[1]})")
        return self.matmul(mat2)

    def mv(self, vec) -> Self:
        """torch.mv: (n, m) @ (m,) -> (n,), a 2-D tensor times a 1-D one only; mixed dtypes promote as matmul's
        do. TypeError when vec is not a tensor, RuntimeError for other ranks or sizes that do not match."""
        if not isinstance(vec, TensorBase):
            raise TypeError(f"mv: vec must be a Tensor, not {type(vec).__name__}")
        if self.ndim != 2 or vec.ndim != 1 or self.shape[1] != vec.shape[0]:
            raise RuntimeError(f"mv: expected a 2-D mat (n, m) and a 1-D vec (m,), got shapes {self.shape} and "
                               f"{vec.shape}")
        return self.matmul(vec)

    def t(self) -> Self:
        """torch.Tensor.t: the transpose of a tensor of at most 2 dims (0-d and 1-d ones are returned as they
        are); RuntimeError for more dims."""
        if self.ndim > 2:
            raise RuntimeError(f"t: expects a tensor with <= 2 dimensions, got shape {self.shape}; use transpose")
        return self.transpose(0, 1) if self.ndim == 2 else self

    def tril(self, diagonal: int = 0) -> Self:
        """torch.tril: the lower triangle of the last two dims (j - i <= diagonal), zeros above."""
        return self._triangle(diagonal, lower=True)

    def triu(self, diagonal: int = 0) -> Self:
        """torch.triu: the upper triangle of the last two dims (j - i >= diagonal), zeros below."""
        return self._triangle(diagonal, lower=False)

    def _triangle(self, diagonal: int, lower: bool) -> Self:
        name = "tril" if lower else "triu"
        if self.ndim < 2:
            raise RuntimeError(f"{name}: needs a tensor of at least 2 dims, got shape {self.shape}")
        n, m = self.shape[-2:]
        # int32 positions where the offsets fit (the compares then vectorize as wide as float32 data)
        index = dtypes.int32 if max(n, m) + abs(diagonal) < 2**31 else dtypes.int64
        rows = self._index_range(n, index, self.device).reshape(n, 1)
        cols = self._index_range(m, index, self.device).reshape(1, m)
        offset = cols - rows
        keep = offset <= diagonal if lower else offset >= diagonal
        zero = False if self.dtype == dtypes.bool else 0
        return keep.where(self, zero)


def _align(x: TensorBase, labels: list, union: list) -> TensorBase:
    """x with its dims ordered as `union` (size 1 for the labels it does not have)."""
    order = [labels.index(c) for c in union if c in labels]
    x = x.permute(order) if order != list(range(len(order))) else x
    present = [c for c in union if c in labels]
    shape, it = [], iter(x.shape)
    for c in union:
        shape.append(next(it) if c in present else 1)
    return x.reshape(tuple(shape))
