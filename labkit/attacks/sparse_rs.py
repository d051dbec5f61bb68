"""Sparse-RS (Croce, Andriushchenko, Singh, Flammarion & Hein, AAAI 2022): random search for k pixels.

The L0 pixel threat model: at most k pixels change, each to a corner of the
colour cube. The search keeps one current perturbation per image (k distinct
positions with their colours) and, per query, proposes a neighbour: a few of the
k pixels go back to the image's own colour and as many fresh positions, outside
the current set, get random corner colours. The proposal is kept when it lowers
the logit margin (untargeted: logit_true - max_{j != true} logit_j; targeted:
max_{j != target} logit_j - logit_target) or succeeds. How many pixels move
shrinks over the budget (:func:`resample_count`, the paper's piecewise schedule):
large jumps early, single-pixel moves late. The margin does not go flat where
a saturated softmax (distillation, a high temperature) flattens the probabilities.

One deviation from the reference code: fresh positions are drawn outside the
pixels *kept*, not outside the whole current set, so a pixel being moved may
come back at its own position with another colour (never the colour it shows
now). For k = 1 the reference can never recolour its one pixel in place: once
a position with a half-good corner is the best so far, the right corner at that
very position is out of reach for the rest of the budget. With the change, k = 1
is a plain random search over all (position, other corner) candidates.

Each image's draws come from labkit's counter-based hash of (seed, image, label,
target, query index), so an image gets the same search alone or in any batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from labkit.attacks._rng import HashRNG
from labkit.attacks.base import Attack, AttackResult, CandidateScorer, Problem, attack_keys
from labkit.attacks.corner import cube_corners
from labkit.precision import check_precision

#: Croce et al.'s L0 schedule: (upper end of the rescaled iteration, divisor of p_init), iteration in 0..10,000.
_SCHEDULE = ((0, 1), (50, 2), (200, 4), (500, 5), (1000, 6), (2000, 8), (4000, 10), (6000, 12), (8000, 15))


@dataclass(frozen=True)
class SparseRSConfig:
    """Hyper-parameters of Sparse-RS for k pixels."""

    pixels: int = 1  # k, pixels changed per image (the one-pixel attack: 1)
    queries: int = 1000  # model evaluations per image, the initial perturbation included (Croce et al.'s eval default)
    targeted: bool = False  # success = prediction equals the target (else: differs from the label)
    p_init: float = 0.3  # fraction of the k pixels resampled first (Croce et al.'s untargeted L0 value; 0.1 targeted)
    precision: str = "fp32"  # "fp32"; "bf16": search in bf16, confirm successes in fp32; "auto": bf16 where native
    chunk_size: int | None = None  # candidates per forward pass; None = what fits in free memory (candidate_chunk_size)
    seed: int = 0  # with the image, label and target, fixes every random draw

    def __post_init__(self) -> None:
        if self.pixels < 1:
            raise ValueError(f"pixels (k) must be >= 1, got {self.pixels}")
        if self.queries < 1:
            raise ValueError(f"queries must be >= 1, got {self.queries}")
        if not 0 < self.p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {self.p_init}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        check_precision(self.precision)


def resample_count(it: int, queries: int, pixels: int, p_init: float) -> int:
    """How many of the k ``pixels`` query ``it`` (1 .. queries-1) resamples: at least 1.

    Croce et al.'s piecewise-constant schedule for L0, with the iteration rescaled
    to a budget of 10,000 so it has the same shape at any budget: p_init, then
    p_init / 2, / 4, / 5, / 6, / 8, / 10, / 12, / 15, and / 20 in the last fifth.
    """
    t = int(it / queries * 10000)
    divisor = next((d for end, d in _SCHEDULE if t <= end), 20)
    return max(int(p_init / divisor * pixels), 1)


class SparseRS(Attack):
    """Sparse-RS for k pixels set to colour-cube corners, batched over images.

    ``SparseRS(model, pixels=1, queries=1000)(images, labels)`` returns an
    :class:`AttackResult`. ``queries`` counts the image's candidates evaluated
    (not the fp32 re-checks of bf16 successes) up to and including the first success (``config.queries``
    for a failure, which returns its lowest-margin perturbation). Each image stops
    as soon as it succeeds.
    """

    Config = SparseRSConfig
    config: SparseRSConfig

    @property
    def fitness(self) -> str:
        return "margin"

    @staticmethod
    def _corners(rng: HashRNG, keys: Tensor, counter: int, original: Tensor, m: int) -> Tensor:
        """Random corner indices (A, s) for pixels whose current colours are ``original`` (A, s, C).

        A pixel whose colour already is a corner gets one of the other corners (as in
        Croce et al.'s code for single-pixel moves): a proposal must change something.
        """
        c = original.shape[-1]
        weights = 2 ** torch.arange(c - 1, -1, -1, device=original.device)
        is_corner = ((original == 0) | (original == 1)).all(-1)
        own = (original.round().long() * weights).sum(-1)  # its corner index, meaningful where is_corner
        idx = rng.randint(keys, counter, tuple(original.shape[1:2]), torch.where(is_corner, m - 1, m))
        return idx + (is_corner & (idx >= own)).long()  # skip its own corner

    def run(self, problem: Problem, progress: bool) -> AttackResult:
        """Sparse-RS's random search on ``problem`` (see ``Attack.__call__`` for the contract)."""
        cfg, scorer, dev = self.config, self.scorer(problem), problem.device
        n, c, h, w = problem.images.shape
        k, hw = cfg.pixels, h * w
        if 2 * k > hw:
            raise ValueError(f"pixels (k={k}) must be at most half the {hw} pixel positions")
        corners = cube_corners(c).to(dev)
        m = len(corners)
        flat = scorer.images.flatten(2).transpose(1, 2)  # (N, H*W, C) original pixel colours
        keys = attack_keys(scorer.images, scorer.labels, scorer.targets)
        rng = HashRNG(cfg.seed)

        # The start: k distinct random positions, each a random corner other than its own colour.
        pos = rng.uniform(keys, 0, (hw,)).argsort(dim=1, stable=True)[:, :k]  # (N, k)
        code = self._corners(rng, keys, 1, flat.gather(1, pos[..., None].expand(-1, -1, c)), m)
        best, succ = self._score(scorer, torch.arange(n, device=dev), pos, code, corners, w)
        done = succ.clone()
        queries = torch.ones(n, dtype=torch.int64, device=dev)

        bar = tqdm(range(1, cfg.queries), desc=f"Sparse-RS k={k}", disable=not progress, leave=False)
        for it in bar:
            act = (~done).nonzero().squeeze(1)
            if len(act) == 0:
                break
            s = resample_count(it, cfg.queries, k, cfg.p_init)
            ctr = 4 * it  # disjoint counters per query
            out_slot = rng.uniform(keys[act], ctr, (k,)).argsort(dim=1, stable=True)[:, :s]  # (A, s) slots to move
            kept = torch.ones(len(act), k, dtype=torch.bool, device=dev).scatter(1, out_slot, False)
            u = rng.uniform(keys[act], ctr + 1, (hw,))
            u = u.scatter(1, pos[act], torch.where(kept, 2.0, u.gather(1, pos[act])))  # kept positions sort last
            new_pos = u.argsort(dim=1, stable=True)[:, :s]  # (A, s) fresh positions outside the kept pixels
            shown = flat[act].scatter(1, pos[act, :, None].expand(-1, -1, c), corners[code[act]])  # current best image
            new_code = self._corners(rng, keys[act], ctr + 2, shown.gather(1, new_pos[..., None].expand(-1, -1, c)), m)
            cand_pos = pos[act].scatter(1, out_slot, new_pos)
            cand_code = code[act].scatter(1, out_slot, new_code)
            fit, ok = self._score(scorer, act, cand_pos, cand_code, corners, w)
            queries[act] += 1
            take = (fit < best[act]) | ok
            upd = act[take]
            pos[upd], code[upd], best[upd] = cand_pos[take], cand_code[take], fit[take]
            done[act] = ok
            bar.set_postfix(active=int((~done).sum()), success=int(done.sum()))
        bar.close()
        return scorer.finish(pos // w, pos % w, corners[code], done, queries)

    @staticmethod
    def _score(scorer: CandidateScorer, img: Tensor, pos: Tensor, code: Tensor, corners: Tensor,
               w: int) -> tuple[Tensor, Tensor]:
        """(margin (A,), fp32-confirmed success (A,)) of perturbations at ``pos`` (A, k) with corners ``code``."""
        args = (img, pos // w, pos % w, corners[code])
        fit, succ = scorer.score(*args)
        return fit, scorer.confirm(*args, succ)
