"""Transformer layers with PyTorch's arguments, equations and parameter names: TransformerEncoderLayer,
TransformerDecoderLayer (post-norm by default, pre-norm with norm_first=True; batch_first; activation 'relu',
'gelu' or a callable) and the TransformerEncoder / TransformerDecoder stacks, so a PyTorch state_dict loads."""
from __future__ import annotations

from typing import Callable, Optional, Union

from tinyjit.nn.attention import MultiheadAttention
from tinyjit.nn.layers import Dropout, Linear
from tinyjit.nn.module import Module, ModuleList
from tinyjit.nn.norm import LayerNorm
from tinyjit.tensor import Tensor


def _activation(activation: Union[str, Callable], owner: str) -> Callable:
    if callable(activation):
        return activation
    if activation == "relu":
        return Tensor.relu
    if activation == "gelu":
        return Tensor.gelu
    raise RuntimeError(f"{owner}: activation should be relu/gelu, not {activation!r}")


class _TransformerLayer(Module):
    """What the encoder and decoder layers share: their constructor (PyTorch's arguments; submodules registered
    in PyTorch's order, so state_dict keys and repr match), the self-attention block and the feed-forward block.
    `_attentions` is 1 for the encoder (self-attention) and 2 for the decoder (and attention to the memory); a
    layer has one LayerNorm and one residual Dropout per block, feed-forward included."""
    _attentions = 1

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Union[str, Callable] = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self._config = dict(d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward, dropout=dropout,
                            activation=activation, layer_norm_eps=layer_norm_eps, batch_first=batch_first,
                            norm_first=norm_first, bias=bias, device=device, dtype=dtype)
        attention = dict(dropout=dropout, bias=bias, batch_first=batch_first, device=device, dtype=dtype)
        self.self_attn = MultiheadAttention(d_model, nhead, **attention)
        if self._attentions == 2:
            self.multihead_attn = MultiheadAttention(d_model, nhead, **attention)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, device=device, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, device=device, dtype=dtype)
        self.norm_first = norm_first
        blocks = range(1, self._attentions + 2)
        for k in blocks:
            setattr(self, f"norm{k}", LayerNorm(d_model, eps=layer_norm_eps, bias=bias, device=device, dtype=dtype))
        for k in blocks:
            setattr(self, f"dropout{k}", Dropout(dropout))
        self.activation = _activation(activation, type(self).__name__)

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal) -> Tensor:
        out = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                             is_causal=is_causal)[0]
        return self.dropout1(out)

    def _ff_block(self, x: Tensor) -> Tensor:
        last_dropout = getattr(self, f"dropout{self._attentions + 1}")
        return last_dropout(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerEncoderLayer(_TransformerLayer):
    """torch.nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1, activation='relu',
    layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True): self-attention and a feed-forward block
    (linear1, activation, linear2), each with a residual connection and a LayerNorm (after the residual by
    default, before the block with norm_first=True). activation is 'relu', 'gelu' or a callable (RuntimeError
    otherwise)."""
    _attentions = 1

    def forward(self, src: Tensor, src_mask: Optional[Tensor] = None, src_key_padding_mask: Optional[Tensor] = None,
                is_causal: bool = False) -> Tensor:
        """src (S, N, E), (N, S, E) with batch_first, or unbatched (S, E); masks as in MultiheadAttention. The
        output has src's shape."""
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff_block(x))


class TransformerDecoderLayer(_TransformerLayer):
    """torch.nn.TransformerDecoderLayer (the encoder layer's arguments): self-attention over the target,
    attention to the encoder's memory and a feed-forward block, each with a residual connection and a LayerNorm
    (norm_first as in the encoder layer)."""
    _attentions = 2

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask: Optional[Tensor] = None,
                memory_mask: Optional[Tensor] = None, tgt_key_padding_mask: Optional[Tensor] = None,
                memory_key_padding_mask: Optional[Tensor] = None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False) -> Tensor:
        """tgt (T, N, E) and memory (S, N, E) (N first with batch_first); masks as in MultiheadAttention. The
        output has tgt's shape."""
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal)
            return x + self._ff_block(self.norm3(x))
        x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
        x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal))
        return self.norm3(x + self._ff_block(x))

    def _mha_block(self, x, memory, attn_mask, key_padding_mask, is_causal) -> Tensor:
        out = self.multihead_attn(x, memory, memory, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                  need_weights=False, is_causal=is_causal)[0]
        return self.dropout2(out)


def _clones(layer: Module, n: int) -> ModuleList:
    """n independent layers built like `layer`, each starting from its values (PyTorch deep-copies the layer)."""
    layers = []
    for _ in range(n):
        clone = type(layer)(**layer._config)
        clone.load_state_dict(layer.state_dict())
        clone.train(layer.training)
        layers.append(clone)
    return ModuleList(layers)


class TransformerEncoder(Module):
    """torch.nn.TransformerEncoder: `num_layers` copies of an encoder layer (each starting from its weights;
    state_dict keys layers.0..., like PyTorch) applied in turn, then an optional norm. TypeError unless
    encoder_layer is a TransformerEncoderLayer."""

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm: Optional[Module] = None,
                 enable_nested_tensor: bool = True, mask_check: bool = True):
        super().__init__()
        if not isinstance(encoder_layer, TransformerEncoderLayer):
            raise TypeError(f"TransformerEncoder: encoder_layer must be a TransformerEncoderLayer, got "
                            f"{type(encoder_layer).__name__}")
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src: Tensor, mask: Optional[Tensor] = None, src_key_padding_mask: Optional[Tensor] = None,
                is_causal: Optional[bool] = None) -> Tensor:
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return self.norm(x) if self.norm is not None else x


class TransformerDecoder(Module):
    """torch.nn.TransformerDecoder: `num_layers` copies of a decoder layer applied in turn to the target (each
    attending to the same memory), then an optional final norm. TypeError unless decoder_layer is a
    TransformerDecoderLayer."""

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: Optional[Module] = None):
        super().__init__()
        if not isinstance(decoder_layer, TransformerDecoderLayer):
            raise TypeError(f"TransformerDecoder: decoder_layer must be a TransformerDecoderLayer, got "
                            f"{type(decoder_layer).__name__}")
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask: Optional[Tensor] = None,
                memory_mask: Optional[Tensor] = None, tgt_key_padding_mask: Optional[Tensor] = None,
                memory_key_padding_mask: Optional[Tensor] = None, tgt_is_causal: Optional[bool] = None,
                memory_is_causal: bool = False) -> Tensor:
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask,
                      bool(tgt_is_causal), memory_is_causal)
        return self.norm(x) if self.norm is not None else x
