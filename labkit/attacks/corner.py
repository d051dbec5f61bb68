"""Exhaustive corner search: every pixel position x the 8 RGB corners of the colour cube.

The strongest cheap one-pixel reference (the one-pixel core of CornerSearch,
Croce & Hein 2019): on a 32x32 image it is 1,024 x 8 = 8,192 queries and
finds a successful one-pixel change whenever one with an extreme colour exists.
The book uses it to check whether differential evolution under-reports how
vulnerable a model is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from labkit.attacks._rng import HashRNG
from labkit.attacks.base import Attack, AttackResult, Problem, attack_keys, ordered_search
from labkit.precision import check_precision


def cube_corners(channels: int = 3) -> Tensor:
    """The 2**channels corners of the colour cube, (2**C, C) float in {0, 1}."""
    codes = torch.arange(2 ** channels)
    return ((codes[:, None] >> torch.arange(channels - 1, -1, -1)) & 1).float()


@dataclass(frozen=True)
class CornerConfig:
    """Hyper-parameters of the exhaustive corner search."""

    targeted: bool = False  # success = prediction equals the target (else: differs from the label)
    order: str = "random"  # "random": positions in a fixed per-image random order; "raster": row by row
    block: int = 512  # candidates per image per round; images stop at the end of the round they succeed in
    precision: str = "fp32"  # "fp32", "bf16" (successes confirmed in fp32) or "auto" (bf16 where native)
    chunk_size: int | None = None  # candidates per forward pass; None = what fits in free memory (candidate_chunk_size)
    seed: int = 0  # fixes the random position order
    max_queries: int | None = None  # stop after this many candidates per image (None: all H*W*2**C)

    def __post_init__(self) -> None:
        if self.max_queries is not None and self.max_queries < 1:
            raise ValueError("max_queries must be None or >= 1")
        if self.order not in ("random", "raster"):
            raise ValueError(f"order must be 'random' or 'raster', not {self.order!r}")
        if self.block < 1:
            raise ValueError("block must be >= 1")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        check_precision(self.precision)


class CornerSearch(Attack):
    """Try every (position, corner colour) of each image until one succeeds.

    ``queries`` is the number of candidates a sequential search in this order
    evaluates up to and including the first success (all H*W*2**C, or
    ``max_queries``, for a failure),
    so ``success & (queries <= b)`` is the success rate at budget b.
    For failures the candidate with the lowest true-class (highest target)
    probability is returned.
    """

    Config = CornerConfig
    config: CornerConfig

    def run(self, problem: Problem, progress: bool) -> AttackResult:
        """The corner search on ``problem`` (see ``Attack.__call__`` for the contract)."""
        cfg, scorer, dev = self.config, self.scorer(problem), problem.device
        n, c, h, w = problem.images.shape
        corners = cube_corners(c).to(dev)
        m, total = len(corners), h * w * len(corners)
        if cfg.max_queries is not None:
            total = min(total, cfg.max_queries)  # a random subset in "random" order
        if cfg.order == "random":
            keys = attack_keys(scorer.images, scorer.labels, scorer.targets)
            # (N, H*W); a stable sort orders the rare tied draws alike on every device
            positions = HashRNG(cfg.seed).uniform(keys, 0, (h * w,)).argsort(dim=1, stable=True)
        else:
            positions = torch.arange(h * w, device=dev).expand(n, -1)
        return ordered_search(scorer, lambda img, q: (positions[img, q // m], q % m), total, cfg.block, corners, w,
                              progress, "corner search")
