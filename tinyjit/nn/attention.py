"""MultiheadAttention with PyTorch's parameters (in_proj_weight / in_proj_bias / out_proj), mask conventions
and batch_first option, so PyTorch state_dicts load unchanged."""
from __future__ import annotations

import math
from typing import Optional

from tinyjit.dtype import dtypes
from tinyjit.nn import init
from tinyjit.nn.layers import Linear, size_arg
from tinyjit.nn.module import Module
from tinyjit.tensor import Tensor


class MultiheadAttention(Module):
    """Attention over `num_heads` heads of size embed_dim / num_heads.

    Masks follow nn.MultiheadAttention (not scaled_dot_product_attention): in a bool `attn_mask` (L, S) or
    (N*num_heads, L, S) and a bool `key_padding_mask` (N, S), True marks positions that may NOT be attended to;
    float masks are added to the scores. `is_causal=True` without an attn_mask builds the causal mask (PyTorch
    requires the mask and treats the flag as a hint)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 kdim: Optional[int] = None, vdim: Optional[int] = None, batch_first: bool = False, device=None,
                 dtype=None):
        super().__init__()
        size_arg("MultiheadAttention", "embed_dim", embed_dim, minimum=1)
        size_arg("MultiheadAttention", "num_heads", num_heads, minimum=1)
        for name, dim in (("kdim", kdim), ("vdim", vdim)):
            if dim is not None:
                size_arg("MultiheadAttention", name, dim)
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.embed_dim, self.num_heads, self.dropout, self.batch_first = embed_dim, num_heads, dropout, batch_first
        self.head_dim = embed_dim // num_heads
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._same_dims = self.kdim == embed_dim and self.vdim == embed_dim
        if self._same_dims:
            self.in_proj_weight = init.xavier_uniform((3 * embed_dim, embed_dim), dtype=dtype, device=device)
        else:
            self.q_proj_weight = init.xavier_uniform((embed_dim, embed_dim), dtype=dtype, device=device)
            self.k_proj_weight = init.xavier_uniform((embed_dim, self.kdim), dtype=dtype, device=device)
            self.v_proj_weight = init.xavier_uniform((embed_dim, self.vdim), dtype=dtype, device=device)
        self.in_proj_bias = init.zeros((3 * embed_dim,), dtype, device) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        if bias:
            self.out_proj.bias = init.zeros((embed_dim,), dtype, device)

    def _projections(self) -> tuple[tuple[Tensor, Optional[Tensor]], ...]:
        e = self.embed_dim
        if self._same_dims:
            weights = [self.in_proj_weight[i * e:(i + 1) * e] for i in range(3)]
        else:
            weights = [self.q_proj_weight, self.k_proj_weight, self.v_proj_weight]
        biases = [self.in_proj_bias[i * e:(i + 1) * e] if self.in_proj_bias is not None else None for i in range(3)]
        return tuple(zip(weights, biases))

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Optional[Tensor] = None,
                need_weights: bool = True, attn_mask: Optional[Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False):
        """Returns (output, attention weights or None), shaped like PyTorch's."""
        unbatched = query.ndim == 2
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(f"MultiheadAttention: query, key and value must all be 2-d (unbatched) or 3-d, got "
                             f"{query.shape}, {key.shape} and {value.shape}")
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:   # work in PyTorch's default (L, N, E) layout
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        L, n, e = query.shape
        S = key.shape[0]
        if e != self.embed_dim or key.shape[1:] != (n, self.kdim) or value.shape[1:] != (n, self.vdim):
            raise ValueError(f"MultiheadAttention: query {query.shape}, key {key.shape} and value {value.shape} (as "
                             f"(L, N, E)) do not fit embed_dim={self.embed_dim}, kdim={self.kdim}, vdim={self.vdim}")
        h, d = self.num_heads, self.head_dim
        (wq, bq), (wk, bk), (wv, bv) = self._projections()
        # (T, N, E) -> (N, H, T, D)
        q = query.linear(wq, bq).reshape(L, n, h, d).permute(1, 2, 0, 3)
        k = key.linear(wk, bk).reshape(S, n, h, d).permute(1, 2, 0, 3)
        v = value.linear(wv, bv).reshape(S, n, h, d).permute(1, 2, 0, 3)
        scores = (q * (1 / math.sqrt(d))) @ k.transpose(-1, -2)           # (N, H, L, S)
        mask = self._mask(attn_mask, key_padding_mask, is_causal, n, L, S, query.device)
        if mask is not None:
            scores = scores + mask
        weights = scores.softmax(-1)
        if self.dropout > 0:
            weights = weights.dropout(self.dropout, training=self.training)
        out = (weights @ v).permute(2, 0, 1, 3).reshape(L, n, e)           # (L, N, E)
        out = self.out_proj(out)
        if unbatched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(1)
        return out, (weights.squeeze(0) if unbatched else weights)

    def _mask(self, attn_mask, key_padding_mask, is_causal, n, L, S, device) -> Optional[Tensor]:
        """Both masks merged into one additive float mask broadcastable to (N, H, L, S), or None."""
        if is_causal and attn_mask is None:
            rows = Tensor.arange(L, dtype=dtypes.int32, device=device).reshape(L, 1)
            attn_mask = Tensor.arange(S, dtype=dtypes.int32, device=device).reshape(1, S) > rows
        merged = None
        if attn_mask is not None:
            if attn_mask.shape == (L, S):
                m = attn_mask
            elif attn_mask.shape == (n * self.num_heads, L, S):
                m = attn_mask.reshape(n, self.num_heads, L, S)
            else:
                raise ValueError(f"MultiheadAttention: attn_mask must have shape ({L}, {S}) or "
                                 f"({n * self.num_heads}, {L}, {S}), got {attn_mask.shape}")
            merged = _additive(m)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (n, S):
                raise ValueError(f"MultiheadAttention: key_padding_mask must have shape ({n}, {S}), got "
                                 f"{key_padding_mask.shape}")
            kpm = _additive(key_padding_mask).reshape(n, 1, 1, S)
            merged = kpm if merged is None else merged + kpm
        return merged


def _additive(mask: Tensor) -> Tensor:
    """A bool mask (True = blocked) as 0 / -inf; a float mask as it is."""
    if mask.dtype == dtypes.bool:
        return mask.where(-math.inf, 0.0)
    return mask
