"""Random numbers generated on the device by a counter-based hash, so TinyJit replays draw new values.

Each draw hashes (element index + counter) with the seed; the counter lives in a device buffer that every draw
advances with an in-place assign. Both the draw and the advance are kernels, so a captured TinyJit step replays
them and gets fresh numbers each call (host-generated numbers would be baked into the capture). The seed lives
in a device buffer too, and `manual_seed` writes it and resets the counters in place: replays of a step captured
before it then draw what eager code draws after the same seed. The stream is the same on every device for the
same seed.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from tinyjit.dtype import dtypes

if TYPE_CHECKING:
    from tinyjit.tensor import Tensor

_state: dict = {"seed": 0, "counters": {}, "seeds": {}, "aranges": {}}


def manual_seed(seed: int) -> None:
    from tinyjit.tensor import Tensor
    _state["seed"] = int(seed) & 0xFFFFFFFF
    _state.pop("host", None)
    # in place: kernels captured by TinyJit read these buffers
    written = [c.assign(Tensor(np.zeros((), np.uint32), device=d)) for d, c in _state["counters"].items()]
    written += [s.assign(Tensor(_seed_mix(), device=d)) for d, s in _state["seeds"].items()]
    if written:
        Tensor.realize_all(*written)


def _seed_mix() -> np.ndarray:
    return np.array((_state["seed"] * 0x9E3779B9 + 0x632BE5AB) & 0xFFFFFFFF, np.uint32)


def host_generator() -> np.random.Generator:
    """A host-side generator under the same seed, for parameter initialization (nn.init): values drawn once and
    uploaded cost no kernels, which matters when a model has many differently shaped parameters."""
    if "host" not in _state:
        _state["host"] = np.random.default_rng(_state["seed"])
    return _state["host"]


def _counter(device: str) -> "Tensor":
    from tinyjit.tensor import Tensor
    counters = _state["counters"]
    if device not in counters:
        counters[device] = Tensor(np.zeros((), dtype=np.uint32), device=device)
    return counters[device]


def _seed(device: str) -> "Tensor":
    """The seed (mixed) as a 0-d uint32 on `device`."""
    from tinyjit.tensor import Tensor
    if device not in _state["seeds"]:
        _state["seeds"][device] = Tensor(_seed_mix(), device=device)
    return _state["seeds"][device]


def _indices(n: int, device: str) -> "Tensor":
    """0..n-1 as uint32, computed on the device inside the kernel that hashes them (no n-sized host array or
    buffer)."""
    from tinyjit.tensor_create import index_range
    return index_range(n, dtypes.uint32, device)


def _mix(h: "Tensor") -> "Tensor":
    """A 32-bit integer finalizer (xor-shift-multiply): every input bit affects every output bit."""
    h = h ^ (h >> 16)
    h = h * 0x7FEB352D
    h = h ^ (h >> 15)
    h = h * 0x846CA68B
    return h ^ (h >> 16)


def random_bits(n: int, device: str) -> "Tensor":
    """n uniformly random uint32 values (realized), advancing the device's counter by n."""
    counter = _counter(device)
    bits = _mix(_mix(_indices(n, device) + counter.reshape(1).expand(n)) ^ _seed(device).reshape(1).expand(n))
    bits = bits.realize()
    counter.assign(counter + n).realize()
    return bits


def uniform01(shape: tuple[int, ...], device: str) -> "Tensor":
    """float32 uniform in [0, 1): the top 24 bits of each random word."""
    n = math.prod(shape)
    if n == 0:
        from tinyjit.tensor import Tensor
        return Tensor.zeros(*shape, device=device)
    bits = random_bits(n, device)
    return ((bits >> 8).cast(dtypes.float32) * (1.0 / (1 << 24))).reshape(shape)


def standard_normal(shape: tuple[int, ...], device: str) -> "Tensor":
    """Box-Muller on two uniforms; 1 - u keeps the log's argument in (0, 1]."""
    n = math.prod(shape)
    u = uniform01((2, n), device)
    radius = (-2.0 * (1.0 - u[0]).log()).sqrt()
    return (radius * (2 * math.pi * u[1]).cos()).reshape(shape)
