"""Linear algebra and neural-network building blocks of Tensor, composed from movement ops and reduces:
matmul is a broadcast multiply summed over the shared axis (convolutions: tinyjit/tensor_conv.py)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

from tinyjit.composite_cache import templated
from tinyjit.dtype import dtypes
from tinyjit.helpers import prod
from tinyjit.index_check import check_index, wide_enough
from tinyjit.ops import Op, reduce_identity
from tinyjit.tensor_base import TensorBase, broadcast_shape
from tinyjit.tensor_conv import _non_negative_ints, _pair, _positive_ints
from tinyjit.tensor_movement import _axis


if TYPE_CHECKING:
    from typing_extensions import Self



class NNMixin(TensorBase):
    # ---- linear algebra ----
    def matmul(self, other) -> Self:
        """The matrix product self @ other (torch.matmul, numpy.matmul): 1-d operands are vectors, batch dims broadcast;
        the result keeps the promoted dtype (ints too). Computed as a broadcast multiply summed over the shared dim.
        ValueError for 0-d operands, inner sizes that differ or batch dims that do not broadcast; RuntimeError for
        tensors on different devices."""
        if not isinstance(other, TensorBase):
            other = self._new(other, device=self.device)
        self._same_device("matmul", other)
        if self.ndim == 0 or other.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes {self.shape} and "
                             f"{other.shape}")
        w = other.unsqueeze(-1) if other.ndim == 1 else other
        return self._matmul_transposed(w.transpose(-1, -2), other.shape)

    def _matmul_transposed(self, wt, other_shape: tuple) -> Self:
        """self @ other given other transposed in its last two dims (`wt`, (..., m, k), as a linear layer's weight
        is stored: linear reads it as it is instead of transposing it twice); `other_shape` names other in errors."""
        x = self.unsqueeze(0) if self.ndim == 1 else self
        if x.shape[-1] != wt.shape[-1]:
            raise ValueError(f"matmul: shapes {self.shape} and {other_shape} do not match "
                             f"({x.shape[-1]} != {wt.shape[-1]})")
        try:
            batch = broadcast_shape(x.shape[:-2], wt.shape[:-2], "matmul")
        except ValueError:
            raise ValueError(f"matmul: the batch dims of shapes {self.shape} and {other_shape} cannot be broadcast "
                             f"together") from None
        n, k, m = x.shape[-2], x.shape[-1], wt.shape[-2]
        # (..., n, 1, k) * (..., 1, m, k) summed over k
        xb = x.reshape(x.shape[:-1] + (1, k)).expand(batch + (n, m, k))
        wb = wt.reshape(wt.shape[:-2] + (1, m, k)).expand(batch + (n, m, k))
        prod_ = xb * wb
        # the result keeps the operands' (promoted) dtype, ints included, like PyTorch
        out = prod_.sum(-1, dtype=prod_.dtype if prod_.dtype != dtypes.bool else None)
        if self.ndim == 1:
            out = out.squeeze(-2)
        if len(other_shape) == 1:
            out = out.squeeze(-1)
        return out

    def dot(self, other) -> Self:
        """The dot product (torch.dot): the same as `matmul` here, so it also accepts matrices."""
        return self.matmul(other)

    @templated   # (built from a template after the first call: tinyjit.composite_cache)
    def linear(self, weight, bias=None) -> Self:
        """x @ weight.T + bias (torch.nn.functional.linear) with PyTorch's (out_features, in_features) weight layout;
        errors as for matmul, and like PyTorch's TypeError for a weight that is not a tensor and RuntimeError for a
        weight of more than 2 dims (a batched weight would otherwise be matmul'd, where PyTorch refuses it)."""
        if not isinstance(weight, TensorBase):
            raise TypeError(f"linear: the weight must be a Tensor, not {type(weight).__name__}")
        if weight.ndim > 2:
            raise RuntimeError(f"linear: the weight must have 1 or 2 dims (out_features, in_features), got shape "
                               f"{weight.shape}")
        if weight.ndim == 2 and self.ndim > 0:
            self._same_device("matmul", weight)
            out = self._matmul_transposed(weight, weight.shape[::-1])   # (the weight is x @ W.T's W.T transposed)
        else:
            out = self.matmul(weight.transpose(-1, -2) if weight.ndim > 1 else weight)
        return out + bias if bias is not None else out

    def scaled_dot_product_attention(self, key, value, attn_mask=None, is_causal: bool = False,
                                     dropout_p: float = 0.0, scale: Optional[float] = None) -> Self:
        """softmax(q @ k^T * scale + mask) @ v with self as the queries (..., L, E); key (..., S, E), value
        (..., S, Ev). A bool mask marks positions that may be attended to (PyTorch's convention); a float mask is
        added to the scores. `dropout_p` applies dropout to the attention weights whatever the training mode."""
        if self.ndim < 2 or key.ndim < 2 or value.ndim < 2:
            raise ValueError(f"scaled_dot_product_attention: query, key and value need at least 2 dims, got "
                             f"{self.shape}, {key.shape} and {value.shape}")
        if self.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
            raise ValueError(f"scaled_dot_product_attention: query {self.shape}, key {key.shape} and value "
                             f"{value.shape} do not fit (q and k share the last dim, k and v the sequence dim)")
        if is_causal and attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal=True, not both")
        scale = 1 / math.sqrt(self.shape[-1]) if scale is None else scale
        scores = (self * scale) @ key.transpose(-1, -2)
        L, S = scores.shape[-2:]
        if is_causal:   # (int32 positions: the mask's compares then vectorize as wide as the float scores)
            rows = self.arange(L, dtype=dtypes.int32, device=self.device).reshape(L, 1)
            attn_mask = rows >= self.arange(S, dtype=dtypes.int32, device=self.device).reshape(1, S)
        if S == 0:   # no keys: every query attends to nothing and gets zeros, like PyTorch
            return scores @ value
        if attn_mask is None:
            weights = scores.softmax(-1)
        else:
            scores = attn_mask.where(scores, -math.inf) if attn_mask.dtype == dtypes.bool else scores + attn_mask
            weights = _softmax_or_zeros(scores)
        if dropout_p > 0:
            weights = weights.dropout(dropout_p, training=True)
        return weights @ value

    def max_pool2d(self, kernel_size=2, stride=None, padding=0, dilation=1) -> Self:
        """torch.nn.functional.max_pool2d over the last two dims of a (..., H, W) tensor of any dtype; the result
        keeps the dtype (padding is the dtype's lowest value, so ints stay exact). Where a window holds its maximum
        more than once, the gradient goes to the first of them (row-major), like PyTorch; `Tensor.max` instead
        splits it evenly between ties, like torch.amax. Raises RuntimeError for a non-positive kernel, stride or
        dilation, a negative padding or one larger than half the (dilated) kernel, like PyTorch."""
        k, s, p, d = _pool_args(kernel_size, stride, padding, dilation, "max_pool2d")
        _check_pool(self, k, p, d, "max_pool2d")
        training = self.requires_grad and not self.no_grad_active
        # with a gradient, three kernels read the windows: from one buffer they all see the same values (a fused
        # producer recomputed in each could round differently, and no element would equal the maximum)
        x = self.contiguous() if training else self
        x = x.pad(((0, 0),) * (self.ndim - 2) + tuple((q, q) for q in p), value=reduce_identity(Op.RMAX, self.dtype)) \
            if any(p) else x
        win = x._windows(k, s, d).flatten(-2)               # (..., out_h, out_w, kh * kw)
        best = win.amax(-1)
        if not training:
            return best
        inside = None
        if any(p):   # which window elements are in the input, not the padding (which ties with -inf or the lowest int)
            inside = self.ones(*self.shape[-2:], dtype=dtypes.bool, device=self.device).pad(tuple((q, q) for q in p))
            inside = inside._windows(k, s, d).flatten(-2)
        first = _first_maximum(win, best, inside)
        return first.where(win, 0).sum(-1, dtype=self.dtype)

    def avg_pool2d(self, kernel_size=2, stride=None, padding=0, count_include_pad: bool = True) -> Self:
        """torch.nn.functional.avg_pool2d over the last two dims of a (..., H, W) tensor. Floats keep their dtype
        (half sums in float32); ints keep theirs too, the mean truncated toward zero like PyTorch's int64 pooling
        (PyTorch implements no other int dtype); bool raises TypeError. Argument errors as in max_pool2d."""
        k, s, p, _ = _pool_args(kernel_size, stride, padding, 1, "avg_pool2d")
        _check_pool(self, k, p, (1, 1), "avg_pool2d")
        if self.dtype == dtypes.bool:
            raise TypeError("avg_pool2d: bool tensors are not supported (like PyTorch); cast to a number dtype first")
        x = self.pad(((0, 0),) * (self.ndim - 2) + tuple((q, q) for q in p)) if any(p) else self
        win = x._windows(k, s, (1, 1))
        if count_include_pad or not any(p):
            counts = prod(k)
        else:
            ones = self.ones(*self.shape[-2:], dtype=dtypes.int32, device=self.device).pad(tuple((q, q) for q in p))
            counts = ones._windows(k, s, (1, 1)).sum((-2, -1))
        if self.dtype.is_int:
            total = win.sum((-2, -1), dtype=dtypes.int64)
            return total.div(counts, rounding_mode="trunc").cast(self.dtype)
        total = win.sum((-2, -1), dtype=dtypes.float32 if self.dtype.itemsize < 4 else self.dtype)
        return (total / counts).cast(self.dtype)

    # ---- normalization / regularization ----
    def layernorm(self, axis=-1, eps: float = 1e-5) -> Self:
        """(x - mean) / sqrt(var + eps) over `axis` (an int or a tuple; biased variance), without weight or bias:
        torch.nn.functional.layer_norm's normalization. half computes its statistics in float32."""
        if self.dtype == dtypes.float16:   # statistics in float32, like PyTorch (a half square passes 65504)
            return self.float().layernorm(axis, eps).half()
        mean = self.mean(axis, keepdim=True)
        centered = self - mean
        return centered * (centered.square().mean(axis, keepdim=True) + eps).rsqrt()

    def layer_norm(self, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Self:
        """torch.nn.functional.layer_norm: normalized over the trailing dims `normalized_shape`, then scaled by `weight`
        and shifted by `bias` when given. ValueError when normalized_shape is not the input's trailing shape."""
        normalized_shape = _pair(normalized_shape, 1) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if self.shape[self.ndim - len(normalized_shape):] != normalized_shape or len(normalized_shape) > self.ndim:
            raise ValueError(f"layer_norm: normalized_shape {normalized_shape} is not the trailing shape of the "
                             f"input {self.shape}")
        axes = tuple(range(-len(normalized_shape), 0))
        out = self.layernorm(axes, eps)
        if weight is not None:
            out = out * weight
        if bias is not None:
            out = out + bias
        return out

    def dropout(self, p: float = 0.5, training: bool = True) -> Self:
        """torch.nn.functional.dropout: zero each element with probability p and scale the rest by 1/(1-p) when
        `training` (True by default, as in F.dropout); the identity otherwise. nn.Dropout passes its own
        train()/eval() flag. ValueError unless 0 <= p <= 1."""
        if not 0 <= p <= 1:
            raise ValueError(f"dropout: p must be in [0, 1], got {p}")
        if not training or p == 0:
            return self
        if p == 1:
            return self * 0
        keep = self.rand(*self.shape, device=self.device) >= p
        return keep.where(self * (1 / (1 - p)), 0)

    # ---- classification ----
    def one_hot(self, num_classes: int = -1) -> Self:
        """torch.nn.functional.one_hot: int64 of shape self.shape + (num_classes,), 1 at each value's class;
        num_classes=-1 takes max + 1 (reading the values). TypeError for a float tensor; IndexError for a value outside
        [0, num_classes) (at the call for host values, else when computed)."""
        if self.dtype.is_float:
            raise TypeError(f"one_hot: needs an int tensor, got {self.dtype.name}")
        if num_classes == -1:
            num_classes = int(self.max().item()) + 1 if self.numel() else 0
        index = wide_enough(self, num_classes)
        onehot = index.unsqueeze(-1) == self.arange(num_classes, dtype=index.dtype, device=self.device)
        check_index(self, 0, num_classes, "one_hot", f"{num_classes} classes", reader=onehot, what="class value")
        return onehot.cast(dtypes.int64)

    def cross_entropy(self, target, reduction: str = "mean", label_smoothing: float = 0.0,
                      ignore_index: int = -100, weight=None) -> Self:
        """torch.nn.functional.cross_entropy: self are logits (N, C) or (N, C, d...) (or (C,)); target holds class
        indices (N, d...) or probabilities of self's shape. `weight` (C,) rescales each class (with indices the mean
        divides by the summed target weights), `ignore_index` targets count nowhere, `label_smoothing` mixes in the
        uniform distribution; reduction 'mean', 'sum' or 'none'. ValueError for shapes that do not fit, IndexError for a
        class index out of range."""
        self._same_device("cross_entropy", target, weight)
        cls_axis = 1 if self.ndim > 1 else 0
        classes = self.shape[cls_axis]
        if not 0 <= label_smoothing <= 1:
            raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
        if weight is not None and weight.shape != (classes,):
            raise ValueError(f"cross_entropy: weight must have shape ({classes},), got {weight.shape}")
        if not target.dtype.is_float:
            # -log_softmax(x)[t] = logsumexp(x) - x[t]: the log-sum-exp is added per row after picking, so the
            # gradient is softmax(x) * g - onehot * g, with no sum over the classes of the picked gradient that
            # log_softmax's backward takes (a reduction as large as the logits: a 10,000-word vocabulary)
            return self._float()._nll(target, reduction, ignore_index, weight, label_smoothing, "cross_entropy",
                                      shift=self.logsumexp(cls_axis))
        # class probabilities
        if target.shape != self.shape:
            raise ValueError(f"cross_entropy: probability target {target.shape} must match input {self.shape}")
        tgt = target * (1 - label_smoothing) + label_smoothing / classes
        if weight is not None:
            tgt = tgt * weight.reshape((classes,) + (1,) * (self.ndim - cls_axis - 1))
        return _reduce_loss(-(self.log_softmax(axis=cls_axis) * tgt).sum(cls_axis), reduction, None)

    def nll_loss(self, target, reduction: str = "mean", ignore_index: int = -100, weight=None) -> Self:
        """torch.nn.functional.nll_loss: self are log-probabilities (N, C) or (N, C, d...), target class indices (N,
        d...); `weight`, `ignore_index` and reduction as in cross_entropy. TypeError for a float target, ValueError for
        shapes that do not fit, IndexError for a class out of range."""
        self._same_device("nll_loss", target, weight)
        classes = self.shape[1] if self.ndim > 1 else self.shape[0]
        if weight is not None and weight.shape != (classes,):
            raise ValueError(f"nll_loss: weight must have shape ({classes},), got {weight.shape}")
        return self._nll(target, reduction, ignore_index, weight, 0.0, "nll_loss")

    def _nll(self, target, reduction, ignore_index, weight, smoothing, name, shift=None) -> Self:
        """The negative log-likelihood of log-probabilities self - shift (`shift`: one value per target position,
        the target's shape, or None for 0) at the target classes."""
        cls_axis = 1 if self.ndim > 1 else 0
        classes = self.shape[cls_axis]
        if target.dtype.is_float:
            raise TypeError(f"{name}: target must hold class indices (an int tensor), got {target.dtype.name}")
        expected = self.shape[:cls_axis] + self.shape[cls_axis + 1:]
        if target.shape != expected:
            raise ValueError(f"{name}: target of shape {target.shape} does not fit input {self.shape} "
                             f"(expected {expected})")
        moved = self.permute(0, *range(2, self.ndim), 1) if self.ndim > 2 else self   # classes last
        valid = target != ignore_index
        picks = wide_enough(valid.where(target, 0), classes)
        onehot = picks.unsqueeze(-1) == self.arange(classes, dtype=picks.dtype, device=self.device)
        check_index(target, 0, classes, name, f"{classes} classes", reader=onehot, what="target",
                    allowed=ignore_index)
        picked = -(onehot.where(moved, 0.0)).sum(-1)
        if weight is None:
            loss, target_weight = picked, None
            smooth = -moved.mean(-1) if smoothing else None
        else:
            target_weight = valid.where(onehot.where(weight, 0.0).sum(-1), 0.0)
            loss = picked * target_weight
            smooth = -(moved * weight).sum(-1) / classes if smoothing else None
        if shift is not None:   # -(x - shift) = shift - x, and smooth's (weighted) mean of -(x - shift) likewise
            loss = loss + (shift if weight is None else shift * target_weight)
            if smoothing:
                smooth = smooth + (shift if weight is None else shift * weight.sum() / classes)
        if smoothing:
            loss = (1 - smoothing) * loss + smoothing * smooth
        loss = valid.where(loss, 0.0)
        if reduction == "mean" and target_weight is not None:
            return _sum_over(loss, target_weight.sum())
        return _reduce_loss(loss, reduction, valid)

    def binary_cross_entropy(self, target, reduction: str = "mean") -> Self:
        """torch.nn.functional.binary_cross_entropy: -(t log p + (1 - t) log(1 - p)) of probabilities self and targets
        of the same shape, each log clamped at -100 like PyTorch; reduction 'mean', 'sum' or 'none'. ValueError for
        different shapes."""
        _check_same_shape(self, target, "binary_cross_entropy")

        def value() -> Self:   # PyTorch clamps the logs at -100 so p == 0 or 1 gives a finite loss
            # (log1p: log(1 - p) is exact for tiny p, as in torch)
            return -(target * self.log().maximum(-100.0) + (1 - target) * (-self).log1p().maximum(-100.0))

        target_grad = isinstance(target, TensorBase) and target.requires_grad
        if self.no_grad_active or not (self.requires_grad or target_grad):
            return _reduce_loss(value(), reduction, None)
        p, t = self._frozen(), target._frozen() if isinstance(target, TensorBase) else target

        def backward(grad: Self) -> tuple:
            # torch's formulas: (p - t) / max(p (1 - p), 1e-12) for p (finite at p = 0 or 1, where the clamped logs'
            # own gradients are NaN), log(1 - p) - log(p) unclamped for the target
            with_p = grad * (p - t) / (p * (1 - p)).maximum(1e-12) if p.requires_grad else None
            with_t = grad * ((-p).log1p() - p.log()) if target_grad else None
            return (with_p, with_t) if target_grad else (with_p,)
        inputs = [p, t] if target_grad else [p]
        saved = [p, t] if isinstance(t, TensorBase) else [p]
        return _reduce_loss(self._with_gradient(value, inputs, backward, saved=saved), reduction, None)

    def binary_cross_entropy_with_logits(self, target, reduction: str = "mean", pos_weight=None) -> Self:
        """torch.nn.functional.binary_cross_entropy_with_logits: binary cross entropy of sigmoid(self), computed stably
        from the logits; `pos_weight` weights the positive term. ValueError for shapes that differ."""
        _check_same_shape(self, target, "binary_cross_entropy_with_logits")
        log_sig = -(-self).softplus()        # log(sigmoid(x))
        log_one_minus = -self.softplus()     # log(1 - sigmoid(x))
        pos = target * log_sig * (pos_weight if pos_weight is not None else 1)
        loss = -(pos + (1 - target) * log_one_minus)
        return _reduce_loss(loss, reduction, None)

    def gather(self, dim: int, index) -> Self:
        """torch.gather: out[i][j][k] = self[index[i][j][k]][j][k] for dim=0 (and likewise for every dim); index is
        an int tensor with self's number of dims and no dim larger than self's, except along `dim`. The GATHER
        primitive: an indexed load, fused with its producers and consumers; its gradient is a scatter-add. Raises
        ValueError/TypeError for a bad index shape or dtype, and IndexError for an index outside [0, self.shape[dim])
        (see tinyjit.index_check)."""
        d = _axis(self, dim, "gather")
        self._same_device("gather", index)
        if index.ndim != self.ndim:
            raise ValueError(f"gather: index has {index.ndim} dims, input {self.shape} has {self.ndim}")
        if index.dtype.is_float or index.dtype == dtypes.bool:
            raise TypeError(f"gather: index must be an int tensor, got {index.dtype.name}")
        if any(i != d and si > sx for i, (si, sx) in enumerate(zip(index.shape, self.shape))):
            raise ValueError(f"gather: index of shape {index.shape} is larger than the input {self.shape} in a dim "
                             f"other than dim {d}")
        n = self.shape[d]
        # the GATHER primitive wants the index's shape in every other dim: a view of the part of self it reads
        x = self.shrink(tuple(None if i == d else (0, s) for i, s in enumerate(index.shape)))
        out = x._gather(d, index)
        check_index(index, 0, n, "gather", f"dimension {d} with size {n}", reader=out)
        return out


def _check_same_shape(x, target, op: str) -> None:
    if target.shape != x.shape:
        raise ValueError(f"{op}: target of shape {target.shape} must have the input's shape {x.shape}")


def _first_maximum(win, best, inside=None):
    """(..., window) bool: the element of each window (last axis) whose value max pooling returns and whose gradient
    it takes, like PyTorch's kernels: the first maximum (row-major), or when the window holds NaN its last NaN (torch
    replaces its running maximum by every NaN it meets); never a padding element (`inside` False), which can tie
    with a maximum of -inf or of the dtype's lowest int. `best` is the window maximum (win.amax(-1))."""
    n = win.shape[-1]
    is_best = win == best.unsqueeze(-1)
    if inside is not None:
        is_best = is_best & inside
    countdown = win.arange(n, 0, -1, dtype=dtypes.int32, device=win.device)   # the first has the largest key
    key = is_best.where(countdown, 0)
    if win.dtype.is_float:
        key = (win != win).where(2 * n + 1 - countdown, key)     # NaN: keys above n, the last one largest
    return key.amax(-1, keepdim=True) == key     # the maximum key is >= 1: every window holds an input element


def _softmax_or_zeros(scores):
    """softmax over the last dim, but zeros (and zero gradients) for a row whose scores are all -inf (a query that may
    attend to nothing, or whose allowed scores overflowed), like PyTorch's CPU attention kernels, not the NaN of a
    softmax over -inf only (padded sequences would spread it). The softmax's own shift (its row max) tells such rows
    apart, so this takes no more reduces than the softmax."""
    half = scores.dtype == dtypes.float16   # (computed in float32, like softmax)
    x = scores.float() if half else scores
    shift = x.amax(-1, keepdim=True).detach()   # a shift that cancels: no gradient through it
    nothing = shift == -math.inf
    e = (x - nothing.where(0.0, shift)).exp()
    weights = e / nothing.where(1.0, e.sum(-1, keepdim=True))   # (0 / 1 there, so no NaN reaches the gradients)
    return weights.half() if half else weights


def _pool_args(kernel_size, stride, padding, dilation, op: str):
    """(kernel, stride, padding, dilation) as pairs, stride defaulting to the kernel; RuntimeError (PyTorch's class)
    for values PyTorch refuses, before anything divides by them."""
    k = _positive_ints(kernel_size, 2, "kernel_size", op)
    s = _positive_ints(stride, 2, "stride", op) if stride is not None and stride != () and stride != [] else k
    p, d = _non_negative_ints(padding, 2, "padding", op), _positive_ints(dilation, 2, "dilation", op)
    for pi, ki, di in zip(p, k, d):
        if 2 * pi > di * (ki - 1) + 1:
            raise RuntimeError(f"{op}: padding {p} must be at most half of the effective kernel size (kernel "
                               f"{k}, dilation {d})")
    return k, s, p, d


def _check_pool(x, kernel, padding, dilation, op: str) -> None:
    if x.ndim < 2:
        raise ValueError(f"{op}: needs at least 2 dims (..., H, W), got shape {x.shape}")

    for size, k, p, d in zip(x.shape[-2:], kernel, padding, dilation):
        if size + 2 * p < d * (k - 1) + 1:
            raise ValueError(f"{op}: kernel {tuple(kernel)} (dilation {tuple(dilation)}) does not fit the input "
                             f"of shape {x.shape} padded by {tuple(padding)}")


def _reduce_loss(loss, reduction: str, valid):
    if reduction == "none":
        return loss

    if reduction == "sum":
        return loss.sum()

    if reduction == "mean":
        if valid is None:
            return loss.mean()
        return _sum_over(loss, valid.sum())   # every target ignored: 0 / 0 = nan, like PyTorch

    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _sum_over(loss, total):
    """loss.sum() / total, both in float32 for a half loss (a count or a sum of weights passes half's range)."""
    if loss.dtype == dtypes.float16:
        return (loss.float().sum() / total.float()).half()

    return loss.sum() / total.cast(loss.dtype)
