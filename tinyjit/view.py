"""Views: how a shape maps onto a flat buffer (strides, offset, valid mask), and stacks of them.

Movement ops (reshape, permute, expand, pad, shrink, flip) only rewrite a View. A reshape that one view
cannot express (e.g. merging dimensions of a permuted view) pushes a new View on the stack, whose flat
index is unravelled into the previous view's shape: still no copy, just more index math.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

from tinyjit.helpers import prod
from tinyjit.symbolic import Expr, Mul, Num, Sum, Var, logical_and, simplify_under

Mask = Optional[tuple[tuple[int, int], ...]]


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, acc = [], 1
    for s in reversed(shape):
        strides.append(acc if s != 1 else 0)
        acc *= s
    return tuple(reversed(strides))


def _canonical_strides(shape, strides) -> tuple[int, ...]:
    """Size-1 dimensions never move the index; give them stride 0 so equal views compare equal."""
    return tuple(0 if s == 1 else st for s, st in zip(shape, strides))


@dataclass(frozen=True)
class View:
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int = 0
    mask: Mask = None     # per dimension [lo, hi): outside it the element reads as 0 (padding)

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def create(shape: tuple[int, ...], strides: Optional[tuple[int, ...]] = None, offset: int = 0,
               mask: Mask = None) -> View:
        strides = contiguous_strides(shape) if strides is None else _canonical_strides(shape, strides)
        if mask is not None:
            if all(m == (0, s) for m, s in zip(mask, shape)):
                mask = None
            elif any(lo >= hi for lo, hi in mask):   # nothing is valid: every element reads as 0
                mask = tuple((0, 0) for _ in shape)
                strides, offset = (0,) * len(shape), 0
        return View(tuple(shape), tuple(strides), offset, mask)

    @property
    def contiguous(self) -> bool:
        return self.offset == 0 and self.mask is None and self.strides == contiguous_strides(self.shape)

    # ---- index math ----
    def index_and_valid(self, idxs: list[Expr]) -> tuple[Expr, Expr]:
        index = Num(self.offset)
        for i, st in zip(idxs, self.strides):
            if st != 0:
                index = index + i * st
        valid: Expr = Num(1)
        if self.mask is not None:
            conds = []
            for i, (lo, hi), s in zip(idxs, self.mask, self.shape):
                if lo > 0:
                    conds.append(i >= lo)
                if hi < s:
                    conds.append(i < hi)
            valid = logical_and(conds)
        return index, valid

    # ---- movement ops ----
    def permute(self, order: tuple[int, ...]) -> View:
        return View.create(tuple(self.shape[o] for o in order), tuple(self.strides[o] for o in order), self.offset,
                           tuple(self.mask[o] for o in order) if self.mask is not None else None)

    def expand(self, new_shape: tuple[int, ...]) -> View:
        mask = None
        if self.mask is not None:
            mask = tuple(m if s == ns else ((0, ns) if m != (0, 0) else (0, 0))
                         for m, s, ns in zip(self.mask, self.shape, new_shape))
        strides = tuple(st if s == ns else 0 for st, s, ns in zip(self.strides, self.shape, new_shape))
        return View.create(new_shape, strides, self.offset, mask)

    def shrink(self, arg: tuple[tuple[int, int], ...]) -> View:
        offset = self.offset + sum(lo * st for (lo, _), st in zip(arg, self.strides))
        mask = None
        if self.mask is not None:
            mask = tuple((max(mlo, lo) - lo, max(min(mhi, hi), max(mlo, lo)) - lo)
                         for (mlo, mhi), (lo, hi) in zip(self.mask, arg))
        return View.create(tuple(hi - lo for lo, hi in arg), self.strides, offset, mask)

    def pad(self, arg: tuple[tuple[int, int], ...]) -> View:
        """Pad with zeros: arg[i] = (before, after)."""
        shape = tuple(s + b + a for s, (b, a) in zip(self.shape, arg))
        offset = self.offset - sum(b * st for (b, _), st in zip(arg, self.strides))
        old_mask = self.mask if self.mask is not None else tuple((0, s) for s in self.shape)
        mask = tuple((lo + b, hi + b) for (lo, hi), (b, _) in zip(old_mask, arg))
        return View.create(shape, self.strides, offset, mask)

    def flip(self, axes: tuple[int, ...]) -> View:
        strides, offset, mask = list(self.strides), self.offset, list(self.mask) if self.mask else None
        for ax in axes:
            s = self.shape[ax]
            offset += (s - 1) * strides[ax]
            strides[ax] = -strides[ax]
            if mask is not None:
                lo, hi = mask[ax]
                mask[ax] = (s - hi, s - lo)
        return View.create(self.shape, tuple(strides), offset, tuple(mask) if mask is not None else None)

    def reshape(self, new_shape: tuple[int, ...]) -> Optional[View]:
        """The same elements in `new_shape` as one View, or None when that needs a stacked view."""
        if self.shape == new_shape:
            return self
        if prod(new_shape) == 0 or self.contiguous:
            return View.create(new_shape, offset=self.offset if prod(new_shape) else 0)
        old = [(s, st, m) for s, st, m in zip(self.shape, self.strides,
                                              self.mask or [(0, s) for s in self.shape]) if s != 1]
        if any(m == (0, 0) for m in (self.mask or ())):
            # nothing is valid; a 0-d view has no dimension to carry that mask, so it stacks on this one
            return View.create(new_shape, mask=tuple((0, 0) for _ in new_shape)) if new_shape else None
        new_dims = [i for i, s in enumerate(new_shape) if s != 1]
        strides = [0] * len(new_shape)
        mask = [(0, s) for s in new_shape]
        oi, ni = 0, 0
        while oi < len(old) and ni < len(new_dims):
            # grow a group of old dims and a group of new dims until they hold the same number of elements
            oj, nj = oi + 1, ni + 1
            osize, nsize = old[oi][0], new_shape[new_dims[ni]]
            while osize != nsize:
                if osize < nsize:
                    osize *= old[oj][0]
                    oj += 1
                else:
                    nsize *= new_shape[new_dims[nj]]
                    nj += 1
            group_old, group_new = old[oi:oj], new_dims[ni:nj]
            for (_, outer_stride, _), (inner_size, inner_stride, _) in zip(group_old, group_old[1:]):
                if outer_stride != inner_stride * inner_size:   # not mergeable without a copy
                    return None
            masked = [g for g in group_old if g[2] != (0, g[0])]
            if masked:
                if len(group_old) != 1:
                    return None
                lo, hi = masked[0][2]
                inner = prod(new_shape[d] for d in group_new[1:])
                if lo % inner or hi % inner:
                    return None
                mask[group_new[0]] = (lo // inner, hi // inner)
            # strides of the new dims: innermost gets the innermost old stride
            acc = group_old[-1][1]
            for d in reversed(group_new):
                strides[d] = acc
                acc *= new_shape[d]
            oi, ni = oj, nj
        has_mask = any(m != (0, s) for m, s in zip(mask, new_shape))
        return View.create(new_shape, tuple(strides), self.offset, tuple(mask) if has_mask else None)


@dataclass(frozen=True)
class ShapeTracker:
    views: tuple[View, ...]

    @staticmethod
    def from_shape(shape: tuple[int, ...]) -> ShapeTracker:
        return ShapeTracker((View.create(tuple(shape)),))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.views[-1].shape

    @property
    def contiguous(self) -> bool:
        return len(self.views) == 1 and self.views[0].contiguous

    def size(self) -> int:
        return prod(self.shape)

    def _replace_last(self, view: View) -> ShapeTracker:
        return ShapeTracker(self.views[:-1] + (view,))

    def permute(self, order) -> ShapeTracker:
        return self._replace_last(self.views[-1].permute(tuple(order)))

    def expand(self, shape) -> ShapeTracker:
        return self._replace_last(self.views[-1].expand(tuple(shape)))

    def shrink(self, arg) -> ShapeTracker:
        return self._replace_last(self.views[-1].shrink(tuple(arg)))

    def pad(self, arg) -> ShapeTracker:
        return self._replace_last(self.views[-1].pad(tuple(arg)))

    def flip(self, axes) -> ShapeTracker:
        return self._replace_last(self.views[-1].flip(tuple(axes)))

    def reshape(self, shape) -> ShapeTracker:
        shape = tuple(shape)
        merged = self.views[-1].reshape(shape)
        if merged is not None:
            return self._replace_last(merged)
        return ShapeTracker(self.views + (View.create(shape),))

    def movement(self, op_name: str, arg) -> ShapeTracker:
        return getattr(self, op_name)(arg)

    def index_and_valid(self, idxs: list[Expr]) -> tuple[Expr, Expr]:
        """Address (in elements) and validity (0/1) of the element at `idxs` in the buffer.

        The address is only used where the element is valid, so with stacked views it is computed for loop
        variables narrowed to the last view's mask: a piece of a cat (a padded view, valid for 64 <= i < 128)
        reshaped through a permute then unravels `i - 64` knowing it is not negative, and its quotients and
        remainders fold (a cat of q/k/v gradients had a dozen divisions per element). Conditions of the earlier
        views that the narrowing makes always true are implied by the last view's own, which `valid` keeps."""
        last = self.views[-1]
        _, valid = last.index_and_valid(idxs)
        index, _ = last.index_and_valid(_narrowed(idxs, last.mask) if len(self.views) > 1 else idxs)
        for view in reversed(self.views[:-1]):
            # unravel the flat index into the previous view's shape, then apply that view
            flat, inner = index, []
            for s in reversed(view.shape):
                inner.append(flat % s if s != 1 else Num(0))
                flat = flat // s
            index, inner_valid = view.index_and_valid(list(reversed(inner)))
            valid = logical_and([valid, inner_valid])
        return (simplify_under(index, valid) if len(self.views) > 1 else index), valid

    def real_strides(self) -> tuple[Optional[int], ...]:
        """Per dimension: the constant stride in elements, or None when it is not one (stacked views, masks)."""
        idxs = [Var(f"i{d}", 0, s - 1) for d, s in enumerate(self.shape)]
        index, valid = self.index_and_valid(idxs)
        out = []
        for d, var in enumerate(idxs):
            stride = _linear_coefficient(index, var)
            if stride is not None and var in valid.vars():
                stride = None
            out.append(stride)
        return tuple(out)


def _narrowed(idxs: list[Expr], mask) -> list[Expr]:
    """`idxs` with each variable's range cut to the mask's range along its dimension (a variable outside it makes
    the element invalid: its address does not matter)."""
    if mask is None:
        return idxs
    out = []
    for i, (lo, hi) in zip(idxs, mask):
        if isinstance(i, Var) and (lo > i.min or hi - 1 < i.max) and max(lo, i.min) <= min(hi - 1, i.max):
            i = Var(i.name, max(lo, i.min), min(hi - 1, i.max))
        out.append(i)
    return out


def _linear_coefficient(index: Expr, var: Var) -> Optional[int]:
    """The constant coefficient of `var` in `index`, or None when `index` is not linear in it. The variable is
    matched by name: with stacked views, index_and_valid narrows a loop variable to the last view's mask (the same
    loop index with a smaller range), and a padded pool gradient's `(h // 2) * 5` then read as not depending on h."""
    terms = index.terms if isinstance(index, Sum) else (index,)
    coefficient = 0
    for t in terms:
        if isinstance(t, Var) and t.name == var.name:
            coefficient += 1
        elif isinstance(t, Mul) and isinstance(t.a, Var) and t.a.name == var.name:
            coefficient += t.b
        elif any(v.name == var.name for v in t.vars()):
            return None
    return coefficient
