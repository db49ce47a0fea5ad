"""Random numbers generated on the device by a counter-based hash, so TinyJit replays draw new values.

Each draw hashes (element index + counter) with the seed; the counter lives in a device buffer that every draw
advances with an in-place assign. Both the draw and the advance are kernels, so a captured TinyJit step replays
them and gets fresh numbers each call (host-generated numbers would be baked into the capture). The seed lives
in a device buffer too, and `manual_seed` writes it and resets the counters in place: replays of a step captured
before it then draw what eager code draws after the same seed. The stream is the same on every device for the
same seed.

`RandomMixin` gives Tensor its random constructors (rand, randn, randint, uniform, normal, the *_like forms and
manual_seed); `host_generator` serves parameter initialization (tinyjit.nn.init).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import numpy as np

from tinyjit.device import canonicalize
from tinyjit.dtype import dtypes
from tinyjit.tensor_base import TensorBase
from tinyjit.tensor_create import shape_arg

if TYPE_CHECKING:
    from typing_extensions import Self

_state: dict = {"seed": 0, "counters": {}, "seeds": {}}


def manual_seed(seed: int) -> None:
    """Seed the generator of every device (and the host generator) with `seed` (torch.manual_seed)."""
    _state["seed"] = int(seed) & 0xFFFFFFFF
    _state.pop("host", None)
    # in place: kernels captured by TinyJit read these buffers
    written = [c.assign(c._new(np.zeros((), np.uint32), device=d)) for d, c in _state["counters"].items()]
    written += [s.assign(s._new(_seed_mix(), device=d)) for d, s in _state["seeds"].items()]
    if written:
        written[0].realize_all(*written)


def _seed_mix() -> np.ndarray:
    return np.array((_state["seed"] * 0x9E3779B9 + 0x632BE5AB) & 0xFFFFFFFF, np.uint32)


def host_generator() -> np.random.Generator:
    """A host-side generator under the same seed, for parameter initialization (nn.init): values drawn once and
    uploaded cost no kernels, which matters when a model has many differently shaped parameters."""
    if "host" not in _state:
        _state["host"] = np.random.default_rng(_state["seed"])
    return _state["host"]


def _mix(h: TensorBase) -> TensorBase:
    """A 32-bit integer finalizer (xor-shift-multiply): every input bit affects every output bit."""
    h = h ^ (h >> 16)
    h = h * 0x7FEB352D
    h = h ^ (h >> 15)
    h = h * 0x846CA68B
    return h ^ (h >> 16)


class RandomMixin(TensorBase):
    @classmethod
    def manual_seed(cls, seed: int = 0) -> None:
        """Seed the random number generator of every device and the host (torch.manual_seed): the draws after it
        are the same on every run and every device."""
        manual_seed(seed)

    @classmethod
    def _counter(cls, device: str) -> TensorBase:
        """The draw counter of `device`, a 0-d uint32 buffer (made on first use)."""
        counters = _state["counters"]
        if device not in counters:
            counters[device] = cls._new(np.zeros((), dtype=np.uint32), device=device)
        return counters[device]

    @classmethod
    def _seed(cls, device: str) -> TensorBase:
        """The seed (mixed) as a 0-d uint32 on `device`."""
        if device not in _state["seeds"]:
            _state["seeds"][device] = cls._new(_seed_mix(), device=device)
        return _state["seeds"][device]

    @classmethod
    def _random_bits(cls, n: int, device: str) -> TensorBase:
        """n uniformly random uint32 values (realized), advancing the device's counter by n. The element indices
        are computed on the device inside the kernel that hashes them (no n-sized host array or buffer)."""
        counter = cls._counter(device)
        indices = cls._index_range(n, dtypes.uint32, device)
        bits = _mix(_mix(indices + counter.reshape(1).expand(n)) ^ cls._seed(device).reshape(1).expand(n))
        bits = bits.realize()
        counter.assign(counter + n).realize()
        return bits

    @classmethod
    def _uniform01(cls, shape: tuple[int, ...], device: str, dtype=dtypes.float32) -> TensorBase:
        """Uniform in [0, 1) in `dtype` with every value a multiple of 2**-(mantissa bits + 1), so none rounds up
        to 1.0: the top 11 bits of a random word for half, 24 for float32, 53 of two words for float64 (PyTorch's
        resolution per dtype)."""
        n = math.prod(shape)
        if n == 0:
            return cls.zeros(*shape, dtype=dtype, device=device)
        if dtype == dtypes.float64:
            bits = cls._random_bits(2 * n, device).reshape(2, n)
            high, low = (bits[0] >> 5).cast(dtypes.float64), (bits[1] >> 6).cast(dtypes.float64)
            return ((high * float(1 << 26) + low) * 2.0 ** -53).reshape(shape)
        mantissa = 11 if dtype == dtypes.float16 else 24
        bits = cls._random_bits(n, device)
        return ((bits >> (32 - mantissa)).cast(dtypes.float32) * 2.0 ** -mantissa).cast(dtype).reshape(shape)

    @classmethod
    def _standard_normal(cls, shape: tuple[int, ...], device: str) -> TensorBase:
        """float32 N(0, 1) by Box-Muller on two uniforms; 1 - u keeps the log's argument in (0, 1]."""
        n = math.prod(shape)
        u = cls._uniform01((2, n), device)
        radius = (-2.0 * (1.0 - u[0]).log()).sqrt()
        return (radius * (2 * math.pi * u[1]).cos()).reshape(shape)

    @classmethod
    def rand(cls, *shape, dtype=None, device=None, requires_grad=None) -> Self:
        """Uniform random numbers in [0, 1) of `shape` (torch.rand) in `dtype` (default float32), with the
        dtype's resolution (53 random bits for float64, 11 for half: never 1.0). ValueError for a negative size,
        TypeError for a non-float dtype."""
        dt = dtypes.from_any(dtype or dtypes.default_float)
        if not dt.is_float:
            raise TypeError(f"rand: dtype must be a float dtype, got {dt.name} (use randint for ints)")
        out = cls._uniform01(shape_arg(shape), canonicalize(device), dt if dt.itemsize != 4 else dtypes.float32)
        return cls._new(out.cast(dt).node, requires_grad=requires_grad)

    @classmethod
    def randn(cls, *shape, dtype=None, device=None, requires_grad=None) -> Self:
        """Standard normal random numbers of `shape` (torch.randn), drawn on the device in float32 and cast to
        `dtype` (default float32). ValueError for a negative size."""
        dt = dtypes.from_any(dtype or dtypes.default_float)
        out = cls._standard_normal(shape_arg(shape), canonicalize(device)).cast(dt)
        return cls._new(out.node, requires_grad=requires_grad)

    @classmethod
    def randint(cls, low: int, high: Optional[int] = None, size=(1,), dtype=None, device=None) -> Self:
        """Random ints uniform in [low, high) of shape `size` (torch.randint; `randint(high)` and `randint(high, size)`
        draw from [0, high)), int64 unless `dtype` is given; every value of the range is reachable (62 random bits
        per draw). ValueError unless high > low."""
        if isinstance(high, (tuple, list)):   # torch.randint(high, size)
            low, high, size = 0, low, high
        if high is None:
            low, high = 0, low
        if high <= low:
            raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
        dt = dtypes.from_any(dtype) if dtype is not None else dtypes.default_int   # int64, like torch.randint
        shape, device = shape_arg(size), canonicalize(device)
        n = math.prod(shape)
        if n == 0:
            return cls.zeros(*shape, dtype=dt, device=device)
        # 62 random bits modulo the range: every value reachable, a bias of at most range / 2**62
        bits = cls._random_bits(2 * n, device).reshape(2, n)
        wide = (bits[0] >> 1).cast(dtypes.int64) * (1 << 31) + (bits[1] >> 1).cast(dtypes.int64)
        return (wide % (high - low) + low).cast(dt).reshape(shape)

    @classmethod
    def uniform(cls, *shape, low=0.0, high=1.0, dtype=None, device=None, requires_grad=None) -> Self:
        """Uniform random numbers in [low, high) of `shape` (like torch.empty(shape).uniform_(low, high))."""
        t = cls.rand(*shape, dtype=dtype, device=device) * (high - low) + low
        return cls._new(t.node, requires_grad=requires_grad)

    @classmethod
    def normal(cls, *shape, mean=0.0, std=1.0, dtype=None, device=None, requires_grad=None) -> Self:
        """Normal random numbers N(mean, std^2) of `shape` (like torch.normal(mean, std, size))."""
        t = cls.randn(*shape, dtype=dtype, device=device) * std + mean
        return cls._new(t.node, requires_grad=requires_grad)

    def rand_like(self) -> Self:
        """torch.rand_like: uniform [0, 1) numbers of self's shape and device, and its dtype if it is a float
        (float32 otherwise)."""
        return self.rand(*self.shape, dtype=self.dtype if self.dtype.is_float else None, device=self.device)

    def randn_like(self) -> Self:
        """torch.randn_like: standard normal numbers of self's shape and device, and its dtype if it is a float
        (float32 otherwise)."""
        return self.randn(*self.shape, dtype=self.dtype if self.dtype.is_float else None, device=self.device)
