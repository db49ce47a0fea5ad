"""Recurrent layers with PyTorch's equations, arguments, shapes and parameter names: RNN, LSTM, GRU (multi-layer,
bidirectional, batch_first, dropout between layers, initial states, LSTM projections) and their one-step cells.

Parameters are named like PyTorch's (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, `weight_hr_l0`
for an LSTM's projection, `_reverse` for the backward direction), with the gates stacked in PyTorch's order
(LSTM: i, f, g, o; GRU: r, z, n), so `load_state_dict(torch_module.state_dict())` works. The input-to-hidden
products of a whole sequence are one matmul per layer and direction; the time loop is unrolled into the lazy
graph (sequences are short in the graphs this is used for; a long one builds a long graph).
"""
from __future__ import annotations

import math
from typing import Optional

from tinyjit.nn import init
from tinyjit.nn.layers import size_arg
from tinyjit.nn.module import Module
from tinyjit.tensor import Tensor
from tinyjit.tensor_movement import stack

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _cell(mode: str, gi: Tensor, h: Tensor, c: Optional[Tensor], w_hh: Tensor, b_hh: Optional[Tensor]):
    """One step: gi = x @ W_ih.T + b_ih (precomputed), h the previous hidden state. Returns (h', c')."""
    gh = h.linear(w_hh, b_hh)
    if mode == "LSTM":
        i, f, g, o = gi.add(gh).chunk(4, -1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        return o.sigmoid() * c.tanh(), c
    if mode == "GRU":
        ir, iz, in_ = gi.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r, z = (ir + hr).sigmoid(), (iz + hz).sigmoid()
        n = (in_ + r * hn).tanh()
        return (1 - z) * n + z * h, None
    pre = gi + gh
    return (pre.tanh() if mode == "RNN_TANH" else pre.relu()), None


class _RNNBase(Module):
    _mode = "RNN_TANH"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        size_arg(name, "input_size", input_size), size_arg(name, "hidden_size", hidden_size, minimum=1)
        size_arg(name, "num_layers", num_layers, minimum=1), size_arg(name, "proj_size", proj_size)
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        if proj_size and self._mode != "LSTM":
            raise ValueError(f"{name}: proj_size is only supported for LSTM, not RNN or GRU")
        if proj_size >= hidden_size:
            raise ValueError(f"{name}: proj_size ({proj_size}) has to be smaller than hidden_size ({hidden_size})")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        gates = _GATES[self._mode] * hidden_size
        state_size = proj_size or hidden_size      # what h carries (an LSTM projects it down to proj_size)
        bound = 1 / math.sqrt(hidden_size)
        directions = 2 if bidirectional else 1
        # PyTorch's order: per layer, per direction: weight_ih, weight_hh, bias_ih, bias_hh, weight_hr
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else state_size * directions
            for suffix in ("", "_reverse")[:directions]:
                setattr(self, f"weight_ih_l{layer}{suffix}", init.uniform((gates, layer_in), -bound, bound, dtype,
                                                                          device))
                setattr(self, f"weight_hh_l{layer}{suffix}", init.uniform((gates, state_size), -bound, bound,
                                                                          dtype, device))
                if bias:
                    setattr(self, f"bias_ih_l{layer}{suffix}", init.uniform((gates,), -bound, bound, dtype, device))
                    setattr(self, f"bias_hh_l{layer}{suffix}", init.uniform((gates,), -bound, bound, dtype, device))
                if proj_size:
                    setattr(self, f"weight_hr_l{layer}{suffix}", init.uniform((proj_size, hidden_size), -bound,
                                                                              bound, dtype, device))

    def _weights(self, layer: int, reverse: bool):
        """weight_ih, weight_hh, bias_ih, bias_hh, weight_hr of one layer and direction (None where absent)."""
        suffix = f"l{layer}" + ("_reverse" if reverse else "")
        get = self.__dict__.get
        return get(f"weight_ih_{suffix}"), get(f"weight_hh_{suffix}"), get(f"bias_ih_{suffix}"), \
            get(f"bias_hh_{suffix}"), get(f"weight_hr_{suffix}")

    def _check_state(self, state: Tensor, what: str, batch: int, unbatched: bool) -> Tensor:
        directions = 2 if self.bidirectional else 1
        size = self.proj_size if self.proj_size and what == "h_0" else self.hidden_size
        expected = (self.num_layers * directions,) + (() if unbatched else (batch,)) + (size,)
        if not isinstance(state, Tensor) or state.shape != expected:
            shape = state.shape if isinstance(state, Tensor) else type(state).__name__
            raise RuntimeError(f"{type(self).__name__}: expected {what} of shape {expected}, got {shape}")
        return state.unsqueeze(1) if unbatched else state

    def forward(self, input: Tensor, hx=None):
        """input (L, N, input_size) (N first with batch_first) or unbatched (L, input_size); hx the initial hidden
        state (num_layers * directions, N, hidden_size), for LSTM a pair (h_0, c_0); zeros when None. Returns
        (output (L, N, directions * hidden_size), h_n) or, for LSTM, (output, (h_n, c_n)). With an LSTM's
        proj_size, h_0, h_n and the output carry proj_size features instead of hidden_size (c keeps hidden_size).
        ValueError for an input of the wrong shape, RuntimeError for initial states of the wrong shape."""
        name = type(self).__name__
        if not isinstance(input, Tensor) or input.ndim not in (2, 3) or input.shape[-1] != self.input_size:
            shape = input.shape if isinstance(input, Tensor) else type(input).__name__
            raise ValueError(f"{name}: expected input (L, N, {self.input_size}) or (L, {self.input_size}), got "
                             f"{shape}")
        unbatched = input.ndim == 2
        x = input.unsqueeze(1) if unbatched else input.transpose(0, 1) if self.batch_first else input
        steps, batch = x.shape[:2]
        directions = 2 if self.bidirectional else 1
        lstm = self._mode == "LSTM"
        if hx is None:
            def zeros(size: int) -> Tensor:
                return Tensor.zeros(self.num_layers * directions, batch, size, dtype=x.dtype, device=x.device)
            h0, c0 = zeros(self.proj_size or self.hidden_size), zeros(self.hidden_size) if lstm else None
        elif lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise RuntimeError(f"{name}: hx must be a tuple (h_0, c_0)")
            h0, c0 = (self._check_state(s, w, batch, unbatched) for s, w in zip(hx, ("h_0", "c_0")))
        else:
            h0, c0 = self._check_state(hx, "hx", batch, unbatched), None
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(directions):
                w_ih, w_hh, b_ih, b_hh, w_hr = self._weights(layer, d == 1)
                gi = x.linear(w_ih, b_ih)                       # (L, N, gates): the whole sequence at once
                k = layer * directions + d
                h, c = h0[k], c0[k] if lstm else None
                seq = [None] * steps
                for t in (range(steps - 1, -1, -1) if d == 1 else range(steps)):
                    h, c = _cell(self._mode, gi[t], h, c, w_hh, b_hh)
                    if w_hr is not None:     # LSTM with proj_size: h_t = (o_t * tanh(c_t)) W_hr^T
                        h = h.linear(w_hr)
                    h, c = h.contiguous(), c.contiguous() if c is not None else None
                    seq[t] = h
                outs.append(stack(seq, 0))
                h_n.append(h)
                c_n.append(c)
            x = outs[0] if directions == 1 else outs[0].cat(outs[1], dim=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = x.dropout(self.dropout, training=True)
        out = x.squeeze(1) if unbatched else x.transpose(0, 1) if self.batch_first else x
        h_n = stack(h_n, 0)
        h_n = h_n.squeeze(1) if unbatched else h_n
        if not lstm:
            return out, h_n
        c_n = stack(c_n, 0)
        return out, (h_n, c_n.squeeze(1) if unbatched else c_n)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"   # torch's order; defaults left out
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(_RNNBase):
    """torch.nn.RNN: the Elman RNN, h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (nonlinearity='relu'
    for ReLU); returns (output, h_n). Shapes and errors as in forward; ValueError for another nonlinearity."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: unknown nonlinearity {nonlinearity!r} (choose 'tanh' or 'relu')")
        self._mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0,
                         device, dtype)


class LSTM(_RNNBase):
    """torch.nn.LSTM: long short-term memory (gates i, f, g, o); returns (output, (h_n, c_n)). With proj_size > 0
    each step's hidden state is projected, h_t = (o_t * tanh(c_t)) W_hr^T (weight_hr_l{k} of shape (proj_size,
    hidden_size)), so h and the output have proj_size features. ValueError unless 0 <= proj_size < hidden_size."""
    _mode = "LSTM"


class GRU(_RNNBase):
    """torch.nn.GRU: gated recurrent unit (PyTorch's variant: the reset gate multiplies W_hn h + b_hn); returns
    (output, h_n). proj_size is LSTM's only (ValueError)."""
    _mode = "GRU"


class _CellBase(Module):
    _mode = "RNN_TANH"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        size_arg(name, "input_size", input_size), size_arg(name, "hidden_size", hidden_size, minimum=1)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        gates, bound = _GATES[self._mode] * hidden_size, 1 / math.sqrt(hidden_size)
        self.weight_ih = init.uniform((gates, input_size), -bound, bound, dtype, device)
        self.weight_hh = init.uniform((gates, hidden_size), -bound, bound, dtype, device)
        self.bias_ih = init.uniform((gates,), -bound, bound, dtype, device) if bias else None
        self.bias_hh = init.uniform((gates,), -bound, bound, dtype, device) if bias else None

    def _step(self, input: Tensor, hx):
        name = type(self).__name__
        if not isinstance(input, Tensor) or input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            shape = input.shape if isinstance(input, Tensor) else type(input).__name__
            raise ValueError(f"{name}: expected input (N, {self.input_size}) or ({self.input_size},), got {shape}")
        unbatched = input.ndim == 1
        x = input.unsqueeze(0) if unbatched else input
        if hx is None:
            zeros = Tensor.zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
            states = [zeros, zeros]
        else:
            states = list(hx) if self._mode == "LSTM" else [hx]
            states = [s.unsqueeze(0) if unbatched else s for s in states]
        for s in states:
            if s.shape != (x.shape[0], self.hidden_size):
                raise RuntimeError(f"{name}: hidden state of shape {s.shape} does not fit input {input.shape} and "
                                   f"hidden_size={self.hidden_size}")
        h, c = _cell(self._mode, x.linear(self.weight_ih, self.bias_ih), states[0],
                     states[1] if self._mode == "LSTM" else None, self.weight_hh, self.bias_hh)
        if unbatched:
            h, c = h.squeeze(0), c.squeeze(0) if c is not None else None
        return (h, c) if self._mode == "LSTM" else h

    def forward(self, input: Tensor, hx=None):
        """One step: the new hidden state (for LSTMCell the pair (h', c'))."""
        return self._step(input, hx)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"   # torch's order; defaults left out
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s


class RNNCell(_CellBase):
    """torch.nn.RNNCell: one step of RNN, h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or ReLU), for x (N,
    input_size) or (input_size,) and h of (N, hidden_size) (zeros when None). ValueError for an input of another
    shape, RuntimeError for a hidden state that does not fit."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: unknown nonlinearity {nonlinearity!r} (choose 'tanh' or 'relu')")
        self._mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)


class LSTMCell(_CellBase):
    """torch.nn.LSTMCell: one LSTM step; forward(x, (h, c)) returns (h', c'). Shapes and errors as RNNCell's."""
    _mode = "LSTM"


class GRUCell(_CellBase):
    """torch.nn.GRUCell: one GRU step; forward(x, h) returns h'. Shapes and errors as RNNCell's."""
    _mode = "GRU"
