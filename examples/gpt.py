"""Train a character-level GPT on Shakespeare's *As You Like It* on the CPU, then sample from it.

The text (125 kB, the Canterbury corpus' asyoulik.txt) comes from the brotli 1.2.1 source distribution on PyPI
and is cached in ~/.cache/tinyjit (tinyjit.datasets.shakespeare). The model is a decoder-only transformer in the
usual shape: token + position embeddings, pre-LayerNorm blocks of causal multi-head self-attention
(Tensor.scaled_dot_product_attention(is_causal=True)) and a GELU MLP, a final LayerNorm and an output layer tied
to the token embedding. Training: AdamW with linear warmup and cosine decay, gradient clipping, one TinyJit step
(forward, backward, clipping and update replayed as fixed kernels), 90/10 train/validation split.

Sampling uses a KV cache of fixed size (one TinyJit step per generated character: the new character's keys and
values are written into the cache in place, and its query attends to the cached ones).

    python examples/gpt.py                                   # train (1200 steps), save, sample 300 chars
    python examples/gpt.py --tokens 500 --prompt "ROSALIND:" # sample from the saved checkpoint
    python examples/gpt.py --steps 20 --n-layer 1            # a quick run
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tinyjit import Tensor, TinyJit, nn, optim
from tinyjit.datasets import data_dir, shakespeare
from tinyjit.nn.state import safe_load, safe_metadata, safe_save


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 64      # the longest context, in characters
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 64


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)   # queries, keys and values of all heads at once
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, T, C) -> queries, keys and values, each (B, n_head, T, C // n_head)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=-1)
        return tuple(t.reshape(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self._heads(x)
        y = q.scaled_dot_product_attention(k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))

    def decode(self, x: Tensor, cache_k: Tensor, cache_v: Tensor, at: Tensor, seen: Tensor) -> Tensor:
        """One new position: x (B, 1, C). Its keys and values are written into the caches (B, n_head, block, hd)
        where `at` (block, 1) is True; the query attends to the positions where `seen` (1, block) is True."""
        B, T, C = x.shape
        q, k, v = self._heads(x)
        cache_k.assign(at.where(k, cache_k))
        cache_v.assign(at.where(v, cache_v))
        y = q.scaled_dot_product_attention(cache_k, cache_v, attn_mask=seen)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(self.c_fc(x).gelu())


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))

    def decode(self, x: Tensor, cache_k: Tensor, cache_v: Tensor, at: Tensor, seen: Tensor) -> Tensor:
        x = x + self.attn.decode(self.ln_1(x), cache_k, cache_v, at, seen)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        # GPT-2's initialization: N(0, 0.02), residual projections scaled down by the depth (an in-place update
        # of a parameter happens under no_grad, as in PyTorch)
        with Tensor.no_grad():
            for name, p in self.named_parameters():
                if name.endswith(".weight") and p.ndim == 2:
                    std = 0.02 / math.sqrt(2 * cfg.n_layer) if name.endswith("c_proj.weight") else 0.02
                    p.assign(Tensor.randn(*p.shape) * std).realize()
                elif name.endswith(".bias") and "ln_" not in name:
                    p.assign(Tensor.zeros(*p.shape)).realize()

    def logits(self, x: Tensor) -> Tensor:
        """Output layer tied to the token embedding: (..., n_embd) -> (..., vocab_size)."""
        return self.ln_f(x) @ self.wte.weight.T

    def forward(self, idx: Tensor) -> Tensor:
        """idx (B, T) int32 character ids, T <= block_size -> logits (B, T, vocab_size)."""
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(Tensor.arange(T).reshape(1, T))
        for block in self.h:
            x = block(x)
        return self.logits(x)


class KVCacheSampler:
    """Generates one character per call of a TinyJit step whose shapes never change: the keys and values of every
    position so far are kept in per-layer caches of block_size positions. When the context is full, the cache is
    refilled from the last half of it (position embeddings are absolute, so cached keys cannot slide)."""

    def __init__(self, model: GPT):
        self.model, cfg = model, model.cfg
        shape = (1, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)
        self.caches = [(Tensor.zeros(*shape).contiguous().realize(), Tensor.zeros(*shape).contiguous().realize())
                       for _ in range(cfg.n_layer)]
        self.positions = np.arange(cfg.block_size)
        self.step = TinyJit(self._step)
        self.context: list[int] = []

    def _step(self, token: Tensor, position: Tensor, at: Tensor, seen: Tensor) -> Tensor:
        model = self.model
        x = model.wte(token) + model.wpe(position)                       # (1, 1, C)
        for block, (cache_k, cache_v) in zip(model.h, self.caches):
            x = block.decode(x, cache_k, cache_v, at, seen)
        return model.logits(x).reshape(-1).realize()

    def feed(self, token: int) -> np.ndarray:
        """Append one character to the context and return the logits (vocab_size,) for the next one."""
        block = self.model.cfg.block_size
        if len(self.context) == block:
            keep = self.context[block // 2:]
            self.context = []
            for t in keep:
                self.feed(t)
        pos = len(self.context)
        self.context.append(token)
        with Tensor.no_grad():
            logits = self.step(Tensor([[token]], dtype="int32"), Tensor([[pos]], dtype="int32"),
                               Tensor((self.positions == pos).reshape(block, 1)),
                               Tensor((self.positions <= pos).reshape(1, block)))
        return logits.numpy()


def sample(model: GPT, prompt_ids: list[int], n: int, temperature: float, top_k: int, rng) -> list[int]:
    """Continue `prompt_ids` by `n` characters drawn from softmax(logits / temperature) over the top_k best."""
    sampler = KVCacheSampler(model)
    for t in prompt_ids[:-1]:
        sampler.feed(t)
    logits, out = sampler.feed(prompt_ids[-1]), []
    for _ in range(n):
        logits = logits.astype(np.float64) / temperature
        if 0 < top_k < len(logits):
            logits[logits < np.sort(logits)[-top_k]] = -np.inf
        p = np.exp(logits - logits.max())
        token = int(rng.choice(len(p), p=p / p.sum()))
        out.append(token)
        logits = sampler.feed(token)
    return out


def learning_rate(step: int, total: int, warmup: int, peak: float, floor: float) -> float:
    """Linear warmup to `peak` over `warmup` steps, then cosine decay to `floor` at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def batches(data: np.ndarray, block: int, batch: int, rng) -> tuple[np.ndarray, np.ndarray]:
    starts = rng.integers(0, len(data) - block - 1, batch)
    x = np.stack([data[s:s + block] for s in starts])
    y = np.stack([data[s + 1:s + block + 1] for s in starts])
    return x.astype(np.int32), y.astype(np.int32)


def save_checkpoint(path: Path, model: GPT, chars: str, val_loss: float) -> None:
    meta = {"config": json.dumps(asdict(model.cfg)), "chars": chars, "val_loss": f"{val_loss:.4f}"}
    safe_save(model.state_dict(), path, metadata=meta)


def load_checkpoint(path: Path) -> tuple[GPT, str]:
    meta = safe_metadata(path)
    model = GPT(GPTConfig(**json.loads(meta["config"])))
    model.load_state_dict(safe_load(path))
    return model, meta["chars"]


def train(args) -> tuple[GPT, str, float]:
    text = shakespeare()
    chars = "".join(sorted(set(text)))
    data = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    lookup = np.zeros(256, dtype=np.int32)
    lookup[np.frombuffer(chars.encode("ascii"), dtype=np.uint8)] = np.arange(len(chars))
    data = lookup[data]
    split = int(0.9 * len(data))
    train_data, val_data = data[:split], data[split:]

    Tensor.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = GPTConfig(len(chars), args.block_size, args.n_layer, args.n_head, args.n_embd)
    model = GPT(cfg)
    params = model.parameters()
    print(f"{len(text)} characters ({len(chars)} distinct), {split} for training; "
          f"{sum(p.numel() for p in params) / 1e6:.2f}M parameters")
    # no weight decay on biases, LayerNorm and embeddings' position table (the usual GPT recipe)
    decay = [p for name, p in model.named_parameters() if p.ndim == 2 and name != "wpe.weight"]
    no_decay = [p for name, p in model.named_parameters() if not (p.ndim == 2 and name != "wpe.weight")]
    opt = optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                      lr=args.lr, betas=(0.9, 0.99))

    def loss_of(x: Tensor, y: Tensor) -> Tensor:
        return model(x).reshape(-1, cfg.vocab_size).cross_entropy(y.reshape(-1))

    @TinyJit
    def train_step(x: Tensor, y: Tensor) -> Tensor:
        opt.zero_grad()
        loss = loss_of(x, y)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss

    @TinyJit
    def eval_step(x: Tensor, y: Tensor) -> Tensor:
        return loss_of(x, y).realize()

    def validation_loss() -> float:
        eval_rng = np.random.default_rng(1234)   # the same windows every time
        with Tensor.no_grad():
            losses = [eval_step(*map(Tensor, batches(val_data, args.block_size, args.batch_size, eval_rng))).item()
                      for _ in range(args.eval_batches)]
        return float(np.mean(losses))

    warmup = max(1, min(100, args.steps // 10))
    started, cpu_started = time.perf_counter(), time.process_time()
    bar = tqdm(range(args.steps), desc="train", unit="step")
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, args.steps, warmup, args.lr, args.lr / 10)
        loss = train_step(*map(Tensor, batches(train_data, args.block_size, args.batch_size, rng)))
        if step % 20 == 0 or step == args.steps - 1:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if args.eval_every and step and step % args.eval_every == 0:
            bar.write(f"step {step}: validation loss {validation_loss():.3f}")
    minutes = (time.perf_counter() - started) / 60
    cpu_minutes = (time.process_time() - cpu_started) / 60
    val = validation_loss()
    print(f"validation loss {val:.3f} nats/char after {args.steps} steps ({minutes:.1f} min of training, "
          f"{cpu_minutes:.1f} min of CPU time in all threads)")
    return model, chars, val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200, help="training steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--n-layer", type=int, default=3)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--eval-batches", type=int, default=20, help="validation batches (same windows each time)")
    parser.add_argument("--eval-every", type=int, default=0, help="print the validation loss every N steps")
    parser.add_argument("--checkpoint", type=Path, default=data_dir() / "gpt-asyoulik.safetensors",
                        help="where the trained model is saved (safetensors) and sampled from")
    parser.add_argument("--tokens", type=int, default=None,
                        help="sample N characters from the saved checkpoint instead of training")
    parser.add_argument("--prompt", default="\n", help="text the sample continues")
    parser.add_argument("--sample-chars", type=int, default=300, help="characters sampled after training")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.tokens is None:
        model, chars, val = train(args)
        args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(args.checkpoint, model, chars, val)
        print(f"saved {args.checkpoint}")
        n = args.sample_chars
    else:
        if not args.checkpoint.exists():
            parser.error(f"no checkpoint at {args.checkpoint}: train first (python examples/gpt.py) or pass "
                         f"--checkpoint")
        model, chars = load_checkpoint(args.checkpoint)
        n = args.tokens
    unknown = sorted(set(args.prompt) - set(chars))
    if unknown or not args.prompt:
        parser.error(f"--prompt must be non-empty and use only the training text's characters; {unknown} are not")
    prompt_ids = [chars.index(c) for c in args.prompt]
    out = sample(model, prompt_ids, n, args.temperature, args.top_k, np.random.default_rng(args.seed))
    print("-" * 60)
    print(args.prompt + "".join(chars[i] for i in out))


if __name__ == "__main__":
    main()
