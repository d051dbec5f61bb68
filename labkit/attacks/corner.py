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
from torch import Tensor, nn
from tqdm.auto import tqdm

from labkit.attacks._rng import HashRNG, image_keys
from labkit.attacks.base import AttackResult, CandidateScorer, start_attack


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
    precision: str = "fp32"  # "fp32" or "bf16" (successes then confirmed in fp32)
    chunk_size: int | None = None  # candidates per forward pass; None = 100 on CPU, 4096 on CUDA
    seed: int = 0  # fixes the random position order
    max_queries: int | None = None  # stop after this many candidates per image (None: all H*W*2**C)

    def __post_init__(self) -> None:
        if self.max_queries is not None and self.max_queries < 1:
            raise ValueError("max_queries must be None or >= 1")
        if self.order not in ("random", "raster"):
            raise ValueError(f"order must be 'random' or 'raster', not {self.order!r}")
        if self.block < 1:
            raise ValueError("block must be >= 1")


class CornerSearch:
    """Try every (position, corner colour) of each image until one succeeds.

    ``queries`` is the number of candidates a sequential search in this order
    evaluates up to and including the first success (all H*W*2**C, or
    ``max_queries``, for a failure),
    so ``success & (queries <= b)`` is the success rate at budget b.
    For failures the candidate with the lowest true-class (highest target)
    probability is returned.
    """

    def __init__(self, model: nn.Module, config: CornerConfig | None = None, **overrides: object):
        self.model = model
        self.config = CornerConfig(**{**(config.__dict__ if config else {}), **overrides})  # type: ignore[arg-type]

    def __call__(self, images: Tensor, labels: Tensor, targets: Tensor | None = None,
                 progress: bool = False) -> AttackResult:
        """Attack ``images`` (N, C, H, W) in [0, 1] with ``labels`` (N,) (and ``targets`` (N,))."""
        cfg = self.config
        scorer = start_attack(self.model, images, labels, targets, cfg)
        dev = scorer.device
        n, c, h, w = images.shape
        corners = cube_corners(c).to(dev)
        m, total = len(corners), h * w * len(corners)
        if cfg.max_queries is not None:
            total = min(total, cfg.max_queries)  # a random subset in "random" order
        if cfg.order == "random":
            keys = image_keys(scorer.images)
            positions = HashRNG(cfg.seed).uniform(keys, 0, (h * w,)).argsort(1)  # (N, H*W)
        else:
            positions = torch.arange(h * w, device=dev).expand(n, -1)

        done = torch.zeros(n, dtype=torch.bool, device=dev)
        queries = torch.full((n,), total, dtype=torch.int64, device=dev)
        best_fit = torch.full((n,), float("inf"), device=dev)
        best_q = torch.zeros(n, dtype=torch.int64, device=dev)  # index of the chosen candidate
        bar = tqdm(range(0, total, cfg.block), desc="corner search", disable=not progress, leave=False)
        for start in bar:
            act = (~done).nonzero().squeeze(1)
            if len(act) == 0:
                break
            q = torch.arange(start, min(start + cfg.block, total), device=dev)  # (B,)
            img = act.repeat_interleave(len(q))
            qq = q.repeat(len(act))
            pos = positions[img, qq // m]
            prob, succ = scorer(img, (pos // w)[:, None], (pos % w)[:, None], corners[qq % m][:, None])
            fit = (1 - prob if cfg.targeted else prob).view(len(act), -1)
            succ = succ.view(len(act), -1)
            if cfg.precision != "fp32":
                succ = self._confirm(scorer, act, succ, q, positions, corners, w)
            # Sequential-order semantics: first success wins; otherwise keep the fittest so far.
            first = torch.where(succ, q, torch.full_like(q, total)).min(1).values
            hit = first < total
            idx_fit, arg = fit.min(1)
            improve = (~hit) & (idx_fit < best_fit[act])
            best_fit[act] = torch.where(improve, idx_fit, best_fit[act])
            best_q[act] = torch.where(hit, first, torch.where(improve, q[arg], best_q[act]))
            queries[act] = torch.where(hit, first + 1, queries[act])
            done[act] = hit
            bar.set_postfix(active=int((~done).sum()), success=int(done.sum()))
        bar.close()
        pos = positions[torch.arange(n, device=dev), best_q // m]
        return scorer.finish((pos // w)[:, None], (pos % w)[:, None], corners[best_q % m][:, None], done, queries)

    @staticmethod
    def _confirm(scorer: CandidateScorer, act: Tensor, succ: Tensor, q: Tensor, positions: Tensor,
                 corners: Tensor, w: int) -> Tensor:
        """Re-score bf16 successes in fp32; keep only those that hold."""
        a, j = succ.nonzero(as_tuple=True)
        if len(a) == 0:
            return succ
        m = len(corners)
        pos = positions[act[a], q[j] // m]
        _, ok = scorer(act[a], (pos // w)[:, None], (pos % w)[:, None], corners[q[j] % m][:, None], precision="fp32")
        out = torch.zeros_like(succ)
        out[a[ok], j[ok]] = True
        return out
