"""Convolutions of Tensor, composed from movement ops and reduces: a conv is a multiply-sum over the input's
sliding windows (a view, no copy), its transposed form a conv of the spread and padded input with the weight's
channels swapped and its kernel flipped. The input's gradient of a conv is written as that transposed conv (one
contraction, like the forward), not derived from the window view."""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

from tinyjit.schedule import _below_movement
from tinyjit.tensor_base import TensorBase

if TYPE_CHECKING:
    from typing_extensions import Self


class ConvMixin(TensorBase):
    # ---- sliding windows ----
    def _windows(self, kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...]) -> Self:
        """(..., *spatial) -> (..., *out_spatial, *kernel): every window as a view, no copy.

        For one dim of size i: repeat the row k times with a stride of i + d (by expanding, flattening and
        reshaping with one extra column per repeat), so window element j of output position o sits at row j,
        column o*s + j*d... after the shift each row is the input moved left by j*d."""
        prefix = self.shape[:-len(kernel)]
        x = self
        for axis_from_end in range(len(kernel), 0, -1):
            pos = x.ndim - axis_from_end
            k, s, d = kernel[-axis_from_end], stride[-axis_from_end], dilation[-axis_from_end]
            x = _window_one_axis(x, pos, k, s, d)
        # x is now (..., o1, k1, o2, k2, ...): move kernel axes last
        n = len(kernel)
        base = len(prefix)
        order = list(range(base)) + [base + 2 * i for i in range(n)] + [base + 2 * i + 1 for i in range(n)]
        return x.permute(order)

    def conv2d(self, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Self:
        """torch.nn.functional.conv2d: self (N, Cin, H, W), weight (Cout, Cin/groups, kh, kw), optional bias (Cout,) ->
        (N, Cout, H', W'); stride, padding (ints, pairs, 'same' or 'valid') and dilation as in PyTorch. ValueError for
        shapes that do not fit, RuntimeError for a non-positive stride, dilation or groups."""
        if self.ndim != 4 or weight.ndim != 4:
            raise ValueError(f"conv2d: expected a 4-d input and weight, got shapes {self.shape} and {weight.shape}")
        return self._conv(weight, bias, stride, padding, dilation, groups, 2, "conv2d")

    def conv1d(self, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Self:
        """torch.nn.functional.conv1d: self (N, Cin, L), weight (Cout, Cin/groups, k), optional bias (Cout,) -> (N,
        Cout, L'); arguments and errors as for conv2d."""
        if self.ndim != 3 or weight.ndim != 3:
            raise ValueError(f"conv1d: expected a 3-d input and weight, got shapes {self.shape} and {weight.shape}")
        return self._conv(weight, bias, stride, padding, dilation, groups, 1, "conv1d")

    def _conv(self, weight, bias, stride, padding, dilation, groups, nd: int, name: str) -> Self:
        self._same_device(name, weight, bias)
        n, cin = self.shape[:2]
        cout, cin_g = weight.shape[:2]
        kernel = weight.shape[2:]
        if not isinstance(groups, numbers.Integral) or groups <= 0:
            raise RuntimeError(f"{name}: groups must be a positive int, got {groups!r}")
        if cin % groups or cout % groups or cin // groups != cin_g:
            raise ValueError(f"{name}: input of shape {self.shape} ({cin} channels) and weight of shape "
                             f"{weight.shape} do not fit groups={groups} (the weight needs {cin} / groups input "
                             f"channels)")
        if bias is not None and bias.shape != (cout,):
            raise ValueError(f"{name}: bias of shape {bias.shape} does not match {cout} output channels")
        stride, dilation = _positive_ints(stride, nd, "stride", name), _positive_ints(dilation, nd, "dilation", name)
        if isinstance(padding, str):
            if padding == "valid":
                padding = 0
            elif padding == "same":
                if any(s != 1 for s in stride):
                    raise ValueError(f"{name}: padding='same' needs stride 1, got stride {stride}")
                # an odd total pads one more after than before, like PyTorch
                padding = tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for d, k in zip(dilation, kernel))
            else:
                raise ValueError(f"{name}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
        else:
            padding = _non_negative_ints(padding, nd, "padding", name)
        pad = tuple(p if isinstance(p, tuple) else (p, p) for p in _pair(padding, nd))
        padded = tuple(b + size + a for (b, a), size in zip(pad, self.shape[2:]))
        for size, k, d in zip(padded, kernel, dilation):
            if size < d * (k - 1) + 1:
                raise ValueError(f"{name}: kernel {tuple(kernel)} (dilation {dilation}) is larger than the padded "
                                 f"input {padded}")
        out_sp = tuple((size - d * (k - 1) - 1) // s + 1 for size, k, d, s in zip(padded, kernel, dilation, stride))
        cout_g = cout // groups

        def windows(x: Self) -> Self:   # (N, G, 1, Cin/G, *out, *k): every window of the padded input, a view
            win = x.pad(((0, 0), (0, 0)) + pad)._windows(kernel, stride, dilation)
            return win.reshape((n, groups, 1, cin_g) + out_sp + tuple(kernel))

        def value() -> Self:
            # (N, G, 1, Cin/G, *out, *k) * (1, G, Cout/G, Cin/G, 1.., *k), summed over Cin/G and k
            w = weight.reshape((1, groups, cout_g, cin_g) + (1,) * nd + tuple(kernel))
            red = (3,) + tuple(range(4 + nd, 4 + 2 * nd))
            return (windows(self) * w).sum(red).reshape((n, cout) + out_sp)

        # (a strided conv keeps the derivative of its window view: its transposed form would convolve the gradient
        # spread out with zeros, stride**2 times the work: 1.9x slower for a 3x3 stride-2 conv)
        if self.no_grad_active or not (self.requires_grad or weight.requires_grad) or any(s > 1 for s in stride):
            out = value()
        else:
            x, w = self._frozen(), weight._frozen()   # what backward reads, whatever in-place update comes later

            def backward(grad: Self) -> tuple:
                # the input's gradient as a transposed convolution of the output's gradient (one contraction over
                # Cout/G and k, like the forward) instead of the derivative of the window view, which is a product
                # the size of every window (k-fold the input) summed back over the overlaps in more kernels
                grad_x = grad_w = None
                if x.requires_grad:
                    # the spread gradient padded so that its windows cover exactly the input's positions: d*(k-1)
                    # before less the conv's own padding; after, up to the input's end (rows past the last window
                    # get zeros)
                    sides = tuple((d * (k - 1) - b, size - (o - 1) * s - 1 + b) for (b, _), size, o, s, d, k in
                                  zip(pad, x.shape[2:], out_sp, stride, dilation, kernel))
                    grad_x = grad._spread_conv(w, None, stride, sides, groups, dilation, nd, name)
                if w.requires_grad:   # sum over the batch and the output positions of window * output gradient
                    spread = grad.reshape((n, groups, cout_g, 1) + out_sp + (1,) * nd)
                    grad_w = (windows(x) * spread).sum((0,) + tuple(range(4, 4 + nd))).reshape(w.shape)
                return grad_x, grad_w
            out = self._with_gradient(value, [x, w], backward, saved=[x, w])
        if bias is not None:
            out = out + bias.reshape((1, cout) + (1,) * nd)
        return out

    def conv_transpose2d(self, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1,
                         dilation=1) -> Self:
        """torch.nn.functional.conv_transpose2d: self (N, Cin, H, W), weight (Cin, Cout/groups, kh, kw) -> (N, Cout, H',
        W'), the gradient of conv2d as a convolution. ValueError or RuntimeError for arguments PyTorch refuses
        (output_padding not smaller than stride or dilation, an empty output)."""
        return self._conv_transpose(weight, bias, stride, padding, output_padding, groups, dilation, 2,
                                    "conv_transpose2d")

    def conv_transpose1d(self, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1,
                         dilation=1) -> Self:
        """torch.nn.functional.conv_transpose1d: self (N, Cin, L), weight (Cin, Cout/groups, k) -> (N, Cout, L');
        arguments and errors as for conv_transpose2d."""
        return self._conv_transpose(weight, bias, stride, padding, output_padding, groups, dilation, 1,
                                    "conv_transpose1d")

    def _conv_transpose(self, weight, bias, stride, padding, output_padding, groups, dilation, nd: int,
                        name: str) -> Self:
        """The gradient of a convolution as a convolution: spread the input out by `stride` (zeros between
        elements), pad it by dilation*(k-1) - padding per side, and convolve with stride 1 and the weight with
        its in/out channels swapped and its spatial axes flipped."""
        if self.ndim != nd + 2 or weight.ndim != nd + 2:
            raise ValueError(f"{name}: expected a {nd + 2}-d input and weight, got shapes {self.shape} and "
                             f"{weight.shape}")
        n, cin = self.shape[:2]
        if not isinstance(groups, numbers.Integral) or groups <= 0:
            raise RuntimeError(f"{name}: groups must be a positive int, got {groups!r}")
        if weight.shape[0] != cin or cin % groups:
            raise ValueError(f"{name}: input {self.shape} and weight {weight.shape} do not fit groups={groups} "
                             f"(weight is (in_channels, out_channels/groups, *kernel))")
        kernel = weight.shape[2:]
        stride, dilation = _positive_ints(stride, nd, "stride", name), _positive_ints(dilation, nd, "dilation", name)
        padding = _non_negative_ints(padding, nd, "padding", name)
        output_padding = _non_negative_ints(output_padding, nd, "output_padding", name)
        for op_, s, d in zip(output_padding, stride, dilation):
            if op_ >= max(s, d):
                raise ValueError(f"{name}: output_padding {output_padding} must be smaller than stride {stride} "
                                 f"or dilation {dilation}")
        spatial = self.shape[2:]
        out_size = tuple((i - 1) * s - 2 * p + d * (k - 1) + o + 1
                         for i, s, p, d, k, o in zip(spatial, stride, padding, dilation, kernel, output_padding))
        if any(size <= 0 for size in out_size):
            raise RuntimeError(f"{name}: input {self.shape} with kernel {tuple(kernel)}, stride {stride}, padding "
                               f"{padding} and dilation {dilation} gives an empty output {out_size}")
        sides = tuple((d * (k - 1) - p, d * (k - 1) - p + o)
                      for k, p, d, o in zip(kernel, padding, dilation, output_padding))
        return self._spread_conv(weight, bias, stride, sides, groups, dilation, nd, name)

    def _spread_conv(self, weight, bias, stride, sides, groups, dilation, nd: int, name: str) -> Self:
        """The transposed convolution itself (arguments checked): self (N, Cin, *spatial) spread out by `stride`,
        padded by `sides` ((before, after) per spatial dim; negative cuts), convolved with `weight` (Cin, Cout/groups,
        *k) with its channels swapped and its kernel flipped."""
        n, cin = self.shape[:2]
        cout_g, kernel, spatial = weight.shape[1], weight.shape[2:], self.shape[2:]
        x = self
        if any(s > 1 for s in stride):
            # (..., i) -> (..., i, s) with zeros after each element -> (..., i*s), cut to (i-1)*s + 1
            inter = (n, cin) + tuple(v for i in spatial for v in (i, 1))
            x = x.reshape(inter).pad(((0, 0), (0, 0)) + tuple(p for s in stride for p in ((0, 0), (0, s - 1))))
            x = x.reshape((n, cin) + tuple(i * s for i, s in zip(spatial, stride)))
            x = x.shrink(((0, n), (0, cin)) + tuple((0, (i - 1) * s + 1) for i, s in zip(spatial, stride)))
        # negative padding (padding > dilation*(k-1)) cuts the spread input instead
        x = x.pad(((0, 0), (0, 0)) + tuple((max(b, 0), max(a, 0)) for b, a in sides))
        x = x.shrink(((0, n), (0, cin)) + tuple((max(-b, 0), size - max(-a, 0))
                                               for (b, a), size in zip(sides, x.shape[2:])))
        # (Cin, Cout/g, *k) -> (g, Cin/g, Cout/g, *k) -> (g, Cout/g, Cin/g, *k) -> (Cout, Cin/g, *k), flipped
        w = weight.reshape((groups, cin // groups, cout_g) + tuple(kernel)).transpose(1, 2)
        w = w.reshape((groups * cout_g, cin // groups) + tuple(kernel)).flip(*range(2, 2 + nd))
        if any(s > 1 for s in stride) or (any(b or a for b, a in sides) and not _below_movement(self.node).realized):
            # the spread or padded input as a buffer of its own, so the convolution reads its windows without
            # bounds checks: the CPU's register block would otherwise pack every window of a computed input (k-fold
            # its size, 2-3x the time); a buffer that is only padded is copied without its padding by the plan
            x = x.contiguous()
        return x._conv(w, bias, 1, 0, dilation, groups, nd, name)


def _pair(x, n: int = 2) -> tuple[int, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,) * n


def _int_args(value, n: int, what: str, op: str, low: int) -> tuple[int, ...]:
    values = _pair(value, n)
    if len(values) != n or any(not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low for v in values):
        kind = "positive" if low > 0 else "non-negative"
        raise RuntimeError(f"{op}: {what} must be a {kind} int" + (f" or {n} of them" if n > 1 else "") +
                           f", got {value!r}")
    return tuple(int(v) for v in values)


def _positive_ints(value, n: int, what: str, op: str) -> tuple[int, ...]:
    """`value` as n ints (one int is repeated), or RuntimeError (PyTorch's class) when one is not a positive int:
    a stride or dilation of 0 would otherwise divide by zero or repeat one element."""
    return _int_args(value, n, what, op, 1)


def _non_negative_ints(value, n: int, what: str, op: str) -> tuple[int, ...]:
    """Like _positive_ints, for paddings (a negative padding would crop silently)."""
    return _int_args(value, n, what, op, 0)



def _window_one_axis(x, pos: int, k: int, s: int, d: int):
    """Replace axis `pos` (size i) by (out, k) sliding windows with stride s and dilation d."""
    i = x.shape[pos]
    out = (i - d * (k - 1) - 1) // s + 1
    if out <= 0:
        raise ValueError(f"window of size {k} (dilation {d}) does not fit an axis of size {i}")

    pre, post = x.shape[:pos], x.shape[pos + 1:]
    if d == 1 and s >= k:
        # windows that do not overlap (pooling): cut the axis into blocks of s and keep the first k of each. One
        # view, and its gradient is the same view backwards instead of a sum over repeated copies
        x = x.pad(tuple((0, max(out * s - i, 0)) if a == pos else (0, 0) for a in range(x.ndim)))
        x = x.shrink(tuple((0, out * s) if a == pos else None for a in range(x.ndim)))
        x = x.reshape(pre + (out, s) + post)
        return x.shrink(tuple((0, k) if a == pos + 1 else None for a in range(x.ndim))) if s > k else x

    if out * s > i + d:   # large strides read past the re-cut rows: pad the axis (never read by a window)
        extra = out * s - (i + d)
        x = x.pad(tuple((0, extra) if a == pos else (0, 0) for a in range(x.ndim)))
        i += extra

    pre, post = x.shape[:pos], x.shape[pos + 1:]
    # repeat the axis `reps` times, flatten, and re-cut rows of length i + d: row j is the axis shifted by j*d
    reps = -(-k * (i + d) // i)
    rep = x.reshape(pre + (1, i) + post).expand(pre + (reps, i) + post).reshape(pre + (reps * i,) + post)
    rep = rep.shrink(tuple((0, k * (i + d)) if a == pos else None for a in range(rep.ndim)))
    rep = rep.reshape(pre + (k, i + d) + post)
    # keep the first out*s columns, then every s-th one
    rep = rep.shrink(tuple((0, out * s) if a == pos + 1 else None for a in range(rep.ndim)))
    rep = rep.reshape(pre + (k, out, s) + post)
    rep = rep.shrink(tuple((0, 1) if a == pos + 2 else None for a in range(rep.ndim)))
    rep = rep.reshape(pre + (k, out) + post)
    # (k, out) -> (out, k)
    order = list(range(rep.ndim))
    order[pos], order[pos + 1] = order[pos + 1], order[pos]
    return rep.permute(order)
