"""Small public programs ported to every framework, for bench/compare.py (workloads P1-P4 and G1).

The models are written once, as functions of a parameter dict and an op namespace (`TinyjitOps`, `TorchOps`,
`JaxOps`, `MlxOps`), with the public programs' small configurations:
- P1 `gpt`: a nanoGPT-style character model (2 layers, 4 heads, 64 wide, context 64, batch 32, vocabulary 65,
  tied output layer, AdamW, gradient clipping at 1.0);
- P2 `gru`: makemore's GRU (vocabulary 27, names up to 16 characters, 64-wide embedding and state, batch 32,
  AdamW);
- P3 `transformer`: makemore's Transformer (4 layers, 4 heads, 64 wide, context 16, batch 32, tanh GELU, AdamW);
- P4 `lstm`: a word-level LSTM language model (Zaremba et al.'s small config: 2 layers of 200, 20 steps,
  batch 20, vocabulary 10,000, SGD with clipping at 5);
- G1 `generate`: tokens per second of the P1 model generating 100 tokens through a KV cache of fixed size.
Parameters start from the same numpy values in every framework, so the first losses agree (checked).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np


@dataclass(frozen=True)
class Config:
    kind: str              # "transformer", "gru" or "lstm"
    vocab: int
    context: int           # sequence length of a training batch
    batch: int
    width: int             # embedding width (and hidden width)
    layers: int = 1
    heads: int = 1
    tied: bool = False     # output layer shares the token embedding
    gelu: str = "none"     # "none" (exact) or "tanh"
    optimizer: str = "adamw"
    lr: float = 1e-3
    clip: float = 0.0      # gradient norm clipping (0: none)


PROGRAMS = {
    "gpt": Config("transformer", vocab=65, context=64, batch=32, width=64, layers=2, heads=4, tied=True, clip=1.0),
    "gru": Config("gru", vocab=27, context=16, batch=32, width=64, lr=5e-4),
    "transformer": Config("transformer", vocab=27, context=16, batch=32, width=64, layers=4, heads=4, gelu="tanh",
                          lr=5e-4),
    "lstm": Config("lstm", vocab=10000, context=20, batch=20, width=200, layers=2, optimizer="sgd", lr=1.0,
                   clip=5.0),
}
LABELS = {"gpt": "P1 nanoGPT char 2x64 b32 T64", "gru": "P2 makemore GRU 64 b32 T16",
          "transformer": "P3 makemore Transformer 4x64 b32", "lstm": "P4 LSTM word LM 2x200 b20 T20"}
BETAS, EPS, WEIGHT_DECAY = (0.9, 0.99), 1e-8, 0.01
GENERATE_TOKENS = 100


# ---- parameters (numpy, the same for every framework) ----
def init_params(cfg: Config, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    p: dict[str, np.ndarray] = {}

    def normal(name, *shape, std=0.02):
        p[name] = (rng.standard_normal(shape) * std).astype(np.float32)

    def uniform(name, *shape, bound):
        p[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
    C, V = cfg.width, cfg.vocab
    normal("wte", V, C, std=0.02 if cfg.kind != "lstm" else 0.1)
    if cfg.kind == "transformer":
        normal("wpe", cfg.context, C)
        for i in range(cfg.layers):
            for ln in ("ln1", "ln2"):
                p[f"h{i}.{ln}.w"], p[f"h{i}.{ln}.b"] = np.ones(C, np.float32), np.zeros(C, np.float32)
            for name, n_in, n_out in (("attn", C, 3 * C), ("proj", C, C), ("fc", C, 4 * C), ("fc_proj", 4 * C, C)):
                normal(f"h{i}.{name}.w", n_out, n_in)
                p[f"h{i}.{name}.b"] = np.zeros(n_out, np.float32)
        p["lnf.w"], p["lnf.b"] = np.ones(C, np.float32), np.zeros(C, np.float32)
    elif cfg.kind == "gru":
        normal("h0", 1, C)
        for gate in ("r", "z", "hbar"):
            uniform(f"{gate}.w", C, 2 * C, bound=1 / math.sqrt(2 * C))
            uniform(f"{gate}.b", C, bound=1 / math.sqrt(2 * C))
    else:
        for i in range(cfg.layers):
            uniform(f"l{i}.wx", 4 * C, C, bound=1 / math.sqrt(C))
            uniform(f"l{i}.wh", 4 * C, C, bound=1 / math.sqrt(C))
            uniform(f"l{i}.b", 4 * C, bound=1 / math.sqrt(C))
    if not cfg.tied:
        normal("head.w", V, C)
        p["head.b"] = np.zeros(V, np.float32)
    return p


def batches(cfg: Config, n: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, cfg.vocab, (cfg.batch, cfg.context)).astype(np.int32),
             rng.integers(0, cfg.vocab, (cfg.batch, cfg.context)).astype(np.int32)) for _ in range(n)]


# ---- the models, written once ----
def logits_of(ops, p, idx, cfg: Config):
    """idx (B, T) int -> logits (B, T, vocab)."""
    B, T = idx.shape
    x = ops.embedding(idx, p["wte"])
    if cfg.kind == "transformer":
        x = x + ops.embedding(ops.arange(T).reshape(1, T), p["wpe"])
        for i in range(cfg.layers):
            x = _block(ops, p, f"h{i}.", x, cfg, lambda q, k, v: ops.attention(q, k, v, causal=True))
        x = ops.layer_norm(x, p["lnf.w"], p["lnf.b"])
    elif cfg.kind == "gru":   # makemore's GRU cell, unrolled over the sequence
        h = ops.expand(p["h0"], (B, cfg.width))
        hs = []
        for t in range(T):
            xt = x[:, t]
            xh = ops.cat([xt, h], 1)
            r = ops.sigmoid(ops.linear(xh, p["r.w"], p["r.b"]))
            hbar = ops.tanh(ops.linear(ops.cat([xt, r * h], 1), p["hbar.w"], p["hbar.b"]))
            z = ops.sigmoid(ops.linear(xh, p["z.w"], p["z.b"]))
            h = (1 - z) * h + z * hbar
            hs.append(h)
        x = ops.stack(hs, 1)
    else:   # a hand-written LSTM, layer by layer
        for i in range(cfg.layers):
            h = c = ops.zeros((B, cfg.width))
            hs = []
            for t in range(T):
                gates = ops.linear(x[:, t], p[f"l{i}.wx"], p[f"l{i}.b"]) + ops.linear(h, p[f"l{i}.wh"])
                gi, gf, gg, go = ops.split(gates, 4)
                c = ops.sigmoid(gf) * c + ops.sigmoid(gi) * ops.tanh(gg)
                h = ops.sigmoid(go) * ops.tanh(c)
                hs.append(h)
            x = ops.stack(hs, 1)
    return ops.linear(x, p["wte"]) if cfg.tied else ops.linear(x, p["head.w"], p["head.b"])


def _block(ops, p, pre: str, x, cfg: Config, attend):
    """Pre-LayerNorm transformer block; attend(q, k, v) over (B, heads, T, head width)."""
    B, T, C = x.shape
    H = cfg.heads
    q, k, v = ops.split(ops.linear(ops.layer_norm(x, p[pre + "ln1.w"], p[pre + "ln1.b"]), p[pre + "attn.w"],
                               p[pre + "attn.b"]), 3)
    q, k, v = (ops.swap(t.reshape(B, T, H, C // H), 1, 2) for t in (q, k, v))
    y = ops.swap(attend(q, k, v), 1, 2).reshape(B, T, C)
    x = x + ops.linear(y, p[pre + "proj.w"], p[pre + "proj.b"])
    normed = ops.layer_norm(x, p[pre + "ln2.w"], p[pre + "ln2.b"])
    hidden = ops.gelu(ops.linear(normed, p[pre + "fc.w"], p[pre + "fc.b"]), cfg.gelu)
    return x + ops.linear(hidden, p[pre + "fc_proj.w"], p[pre + "fc_proj.b"])


def loss_of(ops, p, x, y, cfg: Config):
    return ops.cross_entropy(logits_of(ops, p, x, cfg).reshape(-1, cfg.vocab), y.reshape(-1))


def decode_step(ops, p, token, position, at, seen, caches, cfg: Config):
    """One generated position through a KV cache of fixed size (context positions per layer): token and position
    (1, 1) int; `at` (context, 1) bool marks the position written, `seen` (1, context) the positions attended to.
    Returns (logits (vocab,), new caches)."""
    x = ops.embedding(token, p["wte"]) + ops.embedding(position, p["wpe"])
    new_caches = []
    for i, (cache_k, cache_v) in enumerate(caches):
        def attend(q, k, v, i=i, cache_k=cache_k, cache_v=cache_v):
            k_all, v_all = ops.where(at, k, cache_k), ops.where(at, v, cache_v)
            new_caches.append((k_all, v_all))
            return ops.attention(q, k_all, v_all, mask=seen)
        x = _block(ops, p, f"h{i}.", x, cfg, attend)
    x = ops.layer_norm(x, p["lnf.w"], p["lnf.b"])
    return ops.linear(x, p["wte"]).reshape(-1), new_caches


# ---- op namespaces ----
class _TorchLikeOps:
    """tinyjit and PyTorch share these spellings (tinyjit.nn.functional mirrors torch.nn.functional)."""

    def __init__(self, lib, F):
        self.lib, self.F = lib, F

    def embedding(self, idx, w): return self.F.embedding(idx, w)                       # noqa: E704
    def linear(self, x, w, b=None): return self.F.linear(x, w, b)                      # noqa: E704
    def layer_norm(self, x, w, b): return self.F.layer_norm(x, (x.shape[-1],), w, b)   # noqa: E704
    def gelu(self, x, approximate): return self.F.gelu(x, approximate=approximate)     # noqa: E704
    def tanh(self, x): return x.tanh()                                                  # noqa: E704
    def sigmoid(self, x): return x.sigmoid()                                            # noqa: E704
    def swap(self, x, a, b): return x.transpose(a, b)                                   # noqa: E704
    def split(self, x, n): return x.split(x.shape[-1] // n, -1)                         # noqa: E704
    def expand(self, x, shape): return x.expand(*shape)                                 # noqa: E704
    def where(self, m, a, b): return self.lib.where(m, a, b)                            # noqa: E704

    def attention(self, q, k, v, causal=False, mask=None):
        return self.F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)

    def cross_entropy(self, logits, y):
        return self.F.cross_entropy(logits, y.long() if hasattr(y, "long") else y)


class TinyjitOps(_TorchLikeOps):
    def __init__(self):
        import tinyjit
        super().__init__(None, tinyjit.nn.functional)
        self.Tensor = tinyjit.Tensor

    def where(self, m, a, b): return m.where(a, b)                                     # noqa: E704
    def cat(self, xs, axis): return xs[0].cat(*xs[1:], dim=axis)                       # noqa: E704
    def stack(self, xs, axis): return xs[0].stack(*xs[1:], dim=axis)                   # noqa: E704
    def arange(self, n): return self.Tensor.arange(n)                                  # noqa: E704
    def zeros(self, shape): return self.Tensor.zeros(*shape)                           # noqa: E704
    def cross_entropy(self, logits, y): return self.F.cross_entropy(logits, y)         # noqa: E704


class TorchOps(_TorchLikeOps):
    def __init__(self, torch):
        super().__init__(torch, torch.nn.functional)

    def cat(self, xs, axis): return self.lib.cat(xs, axis)                             # noqa: E704
    def stack(self, xs, axis): return self.lib.stack(xs, axis)                         # noqa: E704
    def arange(self, n): return self.lib.arange(n)                                     # noqa: E704
    def zeros(self, shape): return self.lib.zeros(shape)                               # noqa: E704
    def embedding(self, idx, w): return self.F.embedding(idx.long(), w)                # noqa: E704


class _NumpyLikeOps:
    """JAX and MLX: numpy spellings (xp = jax.numpy or mlx.core); attention written out."""

    def __init__(self, xp):
        self.xp = xp

    def embedding(self, idx, w): return w[idx]                                         # noqa: E704
    def linear(self, x, w, b=None): return x @ w.T if b is None else x @ w.T + b       # noqa: E704
    def swap(self, x, a, b): return self.xp.swapaxes(x, a, b)                          # noqa: E704
    def split(self, x, n): return self.xp.split(x, n, axis=-1)                         # noqa: E704
    def expand(self, x, shape): return self.xp.broadcast_to(x, shape)                  # noqa: E704
    def where(self, m, a, b): return self.xp.where(m, a, b)                            # noqa: E704
    def cat(self, xs, axis): return self.xp.concatenate(xs, axis)                      # noqa: E704
    def stack(self, xs, axis): return self.xp.stack(xs, axis)                          # noqa: E704
    def arange(self, n): return self.xp.arange(n)                                      # noqa: E704
    def zeros(self, shape): return self.xp.zeros(shape, dtype=self.xp.float32)         # noqa: E704
    def tanh(self, x): return self.xp.tanh(x)                                          # noqa: E704
    def sigmoid(self, x): return 1 / (1 + self.xp.exp(-x))                             # noqa: E704

    def layer_norm(self, x, w, b, eps=1e-5):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / self.xp.sqrt(var + eps) * w + b

    def gelu(self, x, approximate):
        if approximate == "tanh":
            return 0.5 * x * (1 + self.xp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        return 0.5 * x * (1 + self._erf(x / math.sqrt(2)))

    def attention(self, q, k, v, causal=False, mask=None):
        scores = (q * (1 / math.sqrt(q.shape[-1]))) @ self.swap(k, -1, -2)
        if causal:
            L, S = scores.shape[-2:]
            mask = self.xp.arange(L).reshape(L, 1) >= self.xp.arange(S).reshape(1, S)
        if mask is not None:
            scores = self.xp.where(mask, scores, -math.inf)
        scores = scores - scores.max(-1, keepdims=True)
        e = self.xp.exp(scores)
        return (e / e.sum(-1, keepdims=True)) @ v

    def cross_entropy(self, logits, y):
        shifted = logits - logits.max(-1, keepdims=True)
        logp = shifted - self.xp.log(self.xp.exp(shifted).sum(-1, keepdims=True))
        return -self._take(logp, y).mean()


class JaxOps(_NumpyLikeOps):
    def __init__(self, jax):
        super().__init__(jax.numpy)
        self.jax = jax

    def _erf(self, x): return self.jax.scipy.special.erf(x)                            # noqa: E704
    def _take(self, logp, y): return self.xp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]  # noqa: E704


class MlxOps(_NumpyLikeOps):
    def __init__(self, mx):
        super().__init__(mx)

    def _erf(self, x): return self.xp.erf(x)                                           # noqa: E704
    def _take(self, logp, y): return self.xp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]  # noqa: E704


# ---- training steps, one per framework: each make_* returns a zero-argument step (or raises) ----
def make_tinyjit(name: str, jit: bool = True, n_batches: int = 4):
    from tinyjit import Tensor, TinyJit, nn, optim
    cfg, ops = PROGRAMS[name], TinyjitOps()
    p = {k: Tensor(v, requires_grad=True) for k, v in init_params(cfg).items()}
    params = list(p.values())
    opt = optim.AdamW(params, lr=cfg.lr, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY) \
        if cfg.optimizer == "adamw" else optim.SGD(params, lr=cfg.lr)

    def step(x, y):
        opt.zero_grad()
        loss = loss_of(ops, p, x, y, cfg)
        loss.backward()
        if cfg.clip:
            nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        return loss.realize()
    fn = TinyJit(step) if jit else step
    data = [(Tensor(x), Tensor(y)) for x, y in batches(cfg, n_batches)]
    counter = iter(range(1 << 62))
    return lambda: fn(*data[next(counter) % n_batches]).item()


def make_torch(torch, name: str, compiled: bool = False, n_batches: int = 4):
    cfg, ops = PROGRAMS[name], TorchOps(torch)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in init_params(cfg).items()}
    params = list(p.values())
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY) \
        if cfg.optimizer == "adamw" else torch.optim.SGD(params, lr=cfg.lr)
    compute = torch.compile(partial(loss_of, ops, cfg=cfg)) if compiled else partial(loss_of, ops, cfg=cfg)

    def step(x, y):
        opt.zero_grad()
        loss = compute(p, x, y)
        loss.backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        return loss.item()
    data = [(torch.from_numpy(x).long(), torch.from_numpy(y).long()) for x, y in batches(cfg, n_batches)]
    counter = iter(range(1 << 62))
    return lambda: step(*data[next(counter) % n_batches])


def make_jax(jax, name: str, n_batches: int = 4):
    jnp = jax.numpy
    cfg, ops = PROGRAMS[name], JaxOps(jax)
    params = {k: jnp.asarray(v) for k, v in init_params(cfg).items()}
    state = (params, {k: jnp.zeros_like(v) for k, v in params.items()},
             {k: jnp.zeros_like(v) for k, v in params.items()}, jnp.zeros((), jnp.float32))

    @partial(jax.jit, donate_argnums=(0,))
    def step(state, x, y):
        params, m, v, t = state
        loss, grads = jax.value_and_grad(lambda q: loss_of(ops, q, x, y, cfg))(params)
        if cfg.clip:
            norm = jnp.sqrt(sum(jnp.sum(g * g) for g in grads.values()))
            scale = jnp.minimum(1.0, cfg.clip / (norm + 1e-6))
            grads = {k: g * scale for k, g in grads.items()}
        if cfg.optimizer == "sgd":
            return ({k: params[k] - cfg.lr * grads[k] for k in params}, m, v, t), loss
        t = t + 1
        b1, b2 = BETAS
        m = {k: b1 * m[k] + (1 - b1) * grads[k] for k in params}
        v = {k: b2 * v[k] + (1 - b2) * grads[k] ** 2 for k in params}
        params = {k: params[k] * (1 - cfg.lr * WEIGHT_DECAY) - cfg.lr * (m[k] / (1 - b1 ** t)) /
                  (jnp.sqrt(v[k] / (1 - b2 ** t)) + EPS) for k in params}
        return (params, m, v, t), loss
    data = [(jnp.asarray(x), jnp.asarray(y)) for x, y in batches(cfg, n_batches)]
    holder = [state]
    counter = iter(range(1 << 62))

    def run():
        holder[0], loss = step(holder[0], *data[next(counter) % n_batches])
        return float(loss)
    return run


def make_mlx(mx, name: str, n_batches: int = 4):
    import mlx.optimizers as optimizers
    cfg, ops = PROGRAMS[name], MlxOps(mx)
    params = {k: mx.array(v) for k, v in init_params(cfg).items()}
    opt = optimizers.AdamW(learning_rate=cfg.lr, betas=list(BETAS), eps=EPS, weight_decay=WEIGHT_DECAY) \
        if cfg.optimizer == "adamw" else optimizers.SGD(learning_rate=cfg.lr)
    opt.init(params)
    state = [params, opt.state]
    grad_fn = mx.value_and_grad(lambda q, x, y: loss_of(ops, q, x, y, cfg))

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y):
        loss, grads = grad_fn(params, x, y)
        if cfg.clip:
            grads, _ = optimizers.clip_grad_norm(grads, cfg.clip)
        params.update(opt.apply_gradients(grads, params))
        return loss
    data = [(mx.array(x), mx.array(y)) for x, y in batches(cfg, n_batches)]
    counter = iter(range(1 << 62))

    def run():
        loss = step(*data[next(counter) % n_batches])
        mx.eval(loss, state)
        return loss.item()
    return run


# ---- generation through a KV cache (G1) ----
def _decode_inputs(cfg: Config, pos: int):
    positions = np.arange(cfg.context)
    return (positions == pos).reshape(cfg.context, 1), (positions <= pos).reshape(1, cfg.context)


def generate_tinyjit(name: str = "gpt"):
    """A function generating GENERATE_TOKENS tokens greedily (one TinyJit step per token)."""
    from tinyjit import Tensor, TinyJit
    cfg, ops = PROGRAMS[name], TinyjitOps()
    p = {k: Tensor(v) for k, v in init_params(cfg).items()}
    hd = cfg.width // cfg.heads
    caches = [(Tensor.zeros(1, cfg.heads, cfg.context, hd).contiguous().realize(),
               Tensor.zeros(1, cfg.heads, cfg.context, hd).contiguous().realize()) for _ in range(cfg.layers)]

    @TinyJit
    def step(token, position, at, seen):
        logits, new = decode_step(ops, p, token, position, at, seen, caches, cfg)
        for (ck, cv), (nk, nv) in zip(caches, new):
            ck.assign(nk)
            cv.assign(nv)
        return logits.argmax().realize()

    def run():
        token = 0
        with Tensor.no_grad():
            for pos in range(GENERATE_TOKENS):
                at, seen = _decode_inputs(cfg, pos % cfg.context)
                token = step(Tensor([[token]], dtype="int32"), Tensor([[pos % cfg.context]], dtype="int32"),
                             Tensor(at), Tensor(seen)).item()
        return token
    return run


def generate_torch(torch, name: str = "gpt"):
    cfg, ops = PROGRAMS[name], TorchOps(torch)
    p = {k: torch.tensor(v) for k, v in init_params(cfg).items()}
    hd = cfg.width // cfg.heads

    def run():
        caches = [(torch.zeros(1, cfg.heads, cfg.context, hd), torch.zeros(1, cfg.heads, cfg.context, hd))
                  for _ in range(cfg.layers)]
        token = 0
        with torch.no_grad():
            for pos in range(GENERATE_TOKENS):
                at, seen = (torch.from_numpy(a) for a in _decode_inputs(cfg, pos % cfg.context))
                logits, caches = decode_step(ops, p, torch.tensor([[token]]), torch.tensor([[pos % cfg.context]]),
                                             at, seen, caches, cfg)
                token = int(logits.argmax())
        return token
    return run


def generate_jax(jax, name: str = "gpt"):
    jnp = jax.numpy
    cfg, ops = PROGRAMS[name], JaxOps(jax)
    p = {k: jnp.asarray(v) for k, v in init_params(cfg).items()}
    hd = cfg.width // cfg.heads

    @jax.jit
    def step(caches, token, position, at, seen):
        logits, new = decode_step(ops, p, token, position, at, seen, caches, cfg)
        return jnp.argmax(logits), new

    def run():
        caches = [(jnp.zeros((1, cfg.heads, cfg.context, hd)), jnp.zeros((1, cfg.heads, cfg.context, hd)))
                  for _ in range(cfg.layers)]
        token = 0
        for pos in range(GENERATE_TOKENS):
            at, seen = _decode_inputs(cfg, pos % cfg.context)
            token, caches = step(caches, jnp.array([[token]]), jnp.array([[pos % cfg.context]]), at, seen)
            token = int(token)
        return token
    return run


def generate_mlx(mx, name: str = "gpt"):
    cfg, ops = PROGRAMS[name], MlxOps(mx)
    p = {k: mx.array(v) for k, v in init_params(cfg).items()}
    hd = cfg.width // cfg.heads

    @mx.compile
    def step(caches, token, position, at, seen):
        logits, new = decode_step(ops, p, token, position, at, seen, caches, cfg)
        return mx.argmax(logits), new

    def run():
        caches = [(mx.zeros((1, cfg.heads, cfg.context, hd)), mx.zeros((1, cfg.heads, cfg.context, hd)))
                  for _ in range(cfg.layers)]
        token = 0
        for pos in range(GENERATE_TOKENS):
            at, seen = (mx.array(a) for a in _decode_inputs(cfg, pos % cfg.context))
            token, caches = step(caches, mx.array([[token]]), mx.array([[pos % cfg.context]]), at, seen)
            token = token.item()
        return token
    return run


# ---- the first step from an empty cache (run in a fresh process by compare.py) ----
def first_step_report(name: str) -> dict:
    """Import, build and run the first TinyJit training step of program `name`; seconds and compile statistics."""
    import time
    t0 = time.perf_counter()
    from tinyjit import kernel_cache as compiler
    step = make_tinyjit(name)
    loss = step()
    seconds = time.perf_counter() - t0
    cpu = sorted(c for _, _, c in compiler.compile_log)
    worst = max(compiler.compile_log, key=lambda e: e[2]) if compiler.compile_log else ("", 0.0, 0.0)
    return {"seconds": seconds, "loss": loss, "kernels": len(cpu), "compile_cpu_total": sum(cpu),
            "compile_cpu_max": cpu[-1] if cpu else 0.0, "compile_cpu_p95": cpu[int(0.95 * (len(cpu) - 1))] if cpu
            else 0.0, "slowest": worst[0]}


if __name__ == "__main__":
    import json
    import sys
    print(json.dumps(first_step_report(sys.argv[1])))
