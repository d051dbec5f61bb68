"""Counter-based random numbers: a pure function of (seed, image key, counter, index).

The attacks draw every random number from this hash instead of a stateful
generator. A draw for one image therefore does not depend on which other
images share the batch, how the work is chunked, or which device runs it, so a
batched attack returns exactly what per-image attacks return, on CPU or GPU.

The mixer is Chris Wellons' ``lowbias32``, on 32-bit values held in int64
lanes; the multiplications are split so that no intermediate overflows int64.
"""

from __future__ import annotations

import torch
from torch import Tensor

MASK = 0xFFFFFFFF
_TWO31 = 1 << 31


def _mulmod32(x: Tensor, c: int) -> Tensor:
    """(x * c) mod 2**32 for 0 <= x < 2**32 without int64 overflow."""
    if c < _TWO31:
        return (x * c) & MASK
    return (((x * (c - _TWO31)) & MASK) + ((x << 31) & MASK)) & MASK


def mix(x: Tensor) -> Tensor:
    """lowbias32 hash of uint32 values (int64 tensor in, int64 tensor in [0, 2**32) out)."""
    x = x & MASK
    x = x ^ (x >> 16)
    x = _mulmod32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mulmod32(x, 0x846CA68B)
    return x ^ (x >> 16)


def image_keys(images: Tensor) -> Tensor:
    """A 32-bit key per image (N,) from its content (pixels quantised to 8 bits).

    Keying by content (not by position in the batch) is what makes an image's
    random stream the same alone or in any batch.
    """
    q = (images.detach().flatten(1).clamp(0, 1) * 255).round().to(torch.int64)
    weights = mix(torch.arange(1, q.shape[1] + 1, device=q.device, dtype=torch.int64))
    # Each product < 2**40 and at most ~2**13 terms, so the sum fits in int64.
    return mix(((q * weights).sum(1)) & MASK)


class HashRNG:
    """Uniform and normal draws for a set of images, addressed by a counter.

    ``uniform(keys, counter, shape)`` returns (len(keys), *shape) floats in [0, 1);
    calls with different ``counter`` values are independent streams.
    """

    def __init__(self, seed: int):
        self.seed = int(seed) & MASK

    def _bits(self, keys: Tensor, counter: int, shape: tuple[int, ...]) -> Tensor:
        n = 1
        for s in shape:
            n *= s
        salt = mix(torch.tensor([self.seed ^ mix(torch.tensor([counter & MASK])).item()]))
        base = mix(keys.to(torch.int64) ^ salt.to(keys.device))
        elem = mix(torch.arange(n, device=keys.device, dtype=torch.int64) + 0x9E3779B9)
        return mix(base[:, None] ^ elem[None, :]).view(len(keys), *shape)

    def uniform(self, keys: Tensor, counter: int, shape: tuple[int, ...]) -> Tensor:
        """float32 in [0, 1) with 24 random bits (exactly representable)."""
        return (self._bits(keys, counter, shape) >> 8).to(torch.float32) / float(1 << 24)

    def normal(self, keys: Tensor, counter: int, shape: tuple[int, ...]) -> Tensor:
        """Standard normal draws (Box-Muller on two independent uniform streams)."""
        u1 = 1.0 - self.uniform(keys, counter, shape)  # in (0, 1]: log is finite
        u2 = self.uniform(keys, counter ^ 0x5BD1E995, shape)
        return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)

    def randint(self, keys: Tensor, counter: int, shape: tuple[int, ...], high: int | Tensor) -> Tensor:
        """Integers in [0, high) (``high`` may broadcast against the draw)."""
        u = self.uniform(keys, counter, shape).to(torch.float64)
        high_t = torch.as_tensor(high, device=u.device)
        return torch.minimum((u * high_t).to(torch.int64), high_t.to(torch.int64) - 1)
