"""The iterative pixel swap of the WPI survey ("Enhancing the Robustness of Deep Neural Networks"), black-box.

The survey describes it in one sentence: map the darkest pixels to the lightest and swap pairs until the
prediction changes. Our reading, stated so it can be checked:

* brightness is the mean over channels, so one rule serves 1-channel (MNIST) and RGB images;
* the pixels are ranked by brightness once, on the clean image, and paired in order: the i-th darkest with
  the i-th lightest, for i < H*W // 2 (the pairs are disjoint, so no swap undoes another);
* a swap exchanges the two pixels' whole colour vectors, so the image keeps its multiset of colours;
* the swaps accumulate: step s queries the image with pairs 0..s swapped, and the walk stops at the first
  query whose prediction is no longer the label (or is the target, ``targeted=True``) or when the budget of
  ``swaps`` is spent.

A pair whose two pixels already hold the same colour (e.g. two black background pixels of a digit) would
swap nothing, so it is skipped without a query: it cannot change the prediction.

``candidates`` > 1 is our extension, not the survey's: each step tries the next ``candidates`` unswapped pairs
of the same ranking and keeps the one that lowers the fitness most (the true class's probability, or
``loss="margin"``), a greedy walk over the survey's pairs. ``candidates=1`` (the default) is the survey's
plain walk, in which the fitness never decides anything.

The model is only queried for its outputs (black-box). The images of a batch walk in lockstep: the loop is
over swap steps, each step one stream of candidates through the model for every image still walking.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from labkit.attacks.base import LOSSES, Attack, AttackResult, CandidateScorer, Problem, make_result
from labkit.precision import check_precision


@dataclass(frozen=True)
class PixelSwapConfig:
    """Hyper-parameters of the survey's pixel swap."""

    swaps: int | None = None  # most swaps per image; None: all H*W // 2 pairs (the survey's "until it changes")
    candidates: int = 1  # pairs tried per swap: 1 = the survey's plain walk; m > 1 = greedy among the next m pairs
    loss: str = "prob"  # what the greedy choice minimises: "prob" (true-class probability) or "margin" (logits)
    targeted: bool = False  # success = prediction equals the target (else: differs from the label)
    precision: str = "fp32"  # "fp32"; "bf16": search in bf16, confirm successes in fp32; "auto": bf16 where native
    chunk_size: int | None = None  # candidates per forward pass; None = 100 on CPU, 4096 on CUDA

    def __post_init__(self) -> None:
        if self.swaps is not None and self.swaps < 1:
            raise ValueError(f"swaps must be None or >= 1, got {self.swaps}")
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {self.candidates}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {self.loss!r}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        check_precision(self.precision)


def brightness_pairs(images: Tensor) -> tuple[Tensor, Tensor]:
    """The survey's pairs of flat positions, darkest with lightest: (dark (N, P), light (N, P)), P = H*W // 2.

    Brightness is the mean over channels; a stable sort ranks equally bright pixels in raster order (dark
    side) and reverse raster order (light side) on every device.
    """
    n, _, h, w = images.shape
    order = images.mean(1).flatten(1).argsort(dim=1, stable=True)  # (N, H*W), darkest first
    p = h * w // 2
    return order[:, :p], order.flip(1)[:, :p]


def gather_colours(flat: Tensor, positions: Tensor) -> Tensor:
    """The colours (N, P, C) at flat ``positions`` (N, P) of images ``flat`` (N, C, H*W)."""
    return flat.gather(2, positions[:, None].expand(-1, flat.shape[1], -1)).transpose(1, 2)


class PixelSwap(Attack):
    """The survey's iterative pixel swap (module docstring), batched over images.

    ``PixelSwap(model)(images, labels)`` on [0, 1] images (N, C, H, W), any C. ``queries`` counts the
    model's evaluations of the image (one per swap in the plain walk, up to ``candidates`` per swap in the
    greedy one; in the order tried, up to and including the first success). ``pixels`` (N, k, 2) lists the
    swapped positions in swap order, each swap's darker pixel first, and ``colours`` (N, k, C) the colours
    written there (each pixel gets its partner's); k is twice the most swaps of the batch, -1 rows pad. A
    failed image returns the prefix of its walk with the lowest fitness seen (the true-class probability, or
    the margin with ``loss="margin"``).
    """

    Config = PixelSwapConfig
    config: PixelSwapConfig

    def run(self, problem: Problem, progress: bool) -> AttackResult:
        """The greedy walk of swaps on ``problem`` (see ``Attack.__call__`` for the contract)."""
        cfg, scorer, dev = self.config, self.scorer(problem), problem.device
        n, _, _, w = problem.images.shape
        dark, light = brightness_pairs(scorer.images)
        p = dark.shape[1]
        flat = scorer.images.flatten(2)  # (N, C, H*W) clean colours; the pairs are disjoint, so never stale
        # Swapping two equal colours changes nothing: such a pair is never offered (no wasted query).
        available = (gather_colours(flat, dark) != gather_colours(flat, light)).any(2)  # (N, P)
        # The walk queries the swapped image, not the clean one: a scorer over a private copy that each step
        # updates in place (its candidates are one more swap on top of the walk so far).
        walk = CandidateScorer(self.model, scorer.images.clone(), scorer.labels, scorer.targets, cfg.chunk_size,
                               scorer.precision, self.fitness)
        steps = min(cfg.swaps or p, p)
        chosen = torch.full((n, steps), -1, dtype=torch.int64, device=dev)  # pair index swapped at each step
        done = torch.zeros(n, dtype=torch.bool, device=dev)
        queries = torch.zeros(n, dtype=torch.int64, device=dev)
        best_fit = torch.full((n,), float("inf"), device=dev)
        best_len = torch.zeros(n, dtype=torch.int64, device=dev)  # swaps in the fittest prefix of a failed walk
        rank = torch.arange(p, device=dev)
        bar = tqdm(range(steps), desc="pixel swap", disable=not progress, leave=False)
        for step in bar:
            act = ((~done) & available.any(1)).nonzero().squeeze(1)
            if len(act) == 0:
                break
            # The next `candidates` pairs still available, in the survey's order (A, m); `ok` marks real ones.
            order = torch.where(available[act], rank, p + rank).argsort(dim=1)[:, :cfg.candidates]
            ok = available[act].gather(1, order)
            a_idx, slot = ok.nonzero(as_tuple=True)
            img, pair = act[a_idx], order[a_idx, slot]
            d, li = dark[img, pair], light[img, pair]
            # A candidate writes two pixels: each of the pair gets the other's clean colour.
            args = (img, torch.stack([d // w, li // w], 1), torch.stack([d % w, li % w], 1),
                    torch.stack([flat[img, :, li], flat[img, :, d]], 1))
            fit, succ = walk.score(*args)
            succ = walk.confirm(*args, succ)
            m = order.shape[1]
            fit_g = torch.full((len(act), m), float("inf"), device=dev).index_put_((a_idx, slot), fit)
            succ_g = torch.zeros(len(act), m, dtype=torch.bool, device=dev).index_put_((a_idx, slot), succ)
            # Sequential semantics within a step: the first success wins; otherwise the fittest (first on ties).
            first = torch.where(succ_g, torch.arange(m, device=dev), m).min(1).values
            hit = first < m
            pick = torch.where(hit, first, fit_g.argmin(1))
            queries[act] += torch.where(hit, first + 1, ok.sum(1))
            take = order.gather(1, pick[:, None]).squeeze(1)
            self._swap(walk.images, flat, act, dark[act, take], light[act, take], w)
            available[act, take] = False
            chosen[act, step] = take
            step_fit = fit_g.gather(1, pick[:, None]).squeeze(1)
            better = (~hit) & (step_fit < best_fit[act])
            best_fit[act] = torch.where(better, step_fit, best_fit[act])
            best_len[act] = torch.where(hit | better, torch.tensor(step + 1, device=dev), best_len[act])
            done[act] = hit
            bar.set_postfix(active=int(((~done) & available.any(1)).sum()), success=int(done.sum()))
        bar.close()
        return self._result(scorer, flat, dark, light, chosen, best_len, done, queries, w)

    @staticmethod
    def _swap(images: Tensor, flat: Tensor, img: Tensor, d: Tensor, li: Tensor, w: int) -> None:
        """Swap pixels ``d`` and ``li`` (flat positions) of ``images[img]`` in place, from the clean colours."""
        images[img, :, d // w, d % w] = flat[img, :, li]
        images[img, :, li // w, li % w] = flat[img, :, d]

    def _result(self, scorer: CandidateScorer, flat: Tensor, dark: Tensor, light: Tensor, chosen: Tensor,
                best_len: Tensor, done: Tensor, queries: Tensor, w: int) -> AttackResult:
        """The walk's prefix of ``best_len`` swaps per image (all of a success's), as an ``AttackResult``."""
        n, steps = chosen.shape
        dev = chosen.device
        kept = torch.arange(steps, device=dev) < best_len[:, None]  # (N, steps); chosen >= 0 there
        k = int(best_len.max()) if n else 0
        pair = chosen[:, :k].clamp(min=0)
        pos = torch.stack([dark.gather(1, pair), light.gather(1, pair)], 2).flatten(1)  # (N, 2k) dark, light, ...
        partner = torch.stack([light.gather(1, pair), dark.gather(1, pair)], 2).flatten(1)
        valid = kept[:, :k].repeat_interleave(2, dim=1)
        colours = gather_colours(flat, partner)  # (N, 2k, C)
        pixels = torch.where(valid[..., None], torch.stack([pos // w, pos % w], -1), -1)
        colours = torch.where(valid[..., None], colours, torch.zeros((), device=dev))
        adv = scorer.images.clone()
        r, j = valid.nonzero(as_tuple=True)
        adv.flatten(2)[r, :, pos[r, j]] = colours[r, j]  # a view: writes adv; the pairs never share a pixel
        return make_result(self.model, adv, scorer.labels, scorer.targets, done, queries, pixels, colours,
                           scorer.precision == "bf16", scorer.chunk_size)
