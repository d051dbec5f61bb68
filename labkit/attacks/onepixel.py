"""The one-pixel attack of Su, Vargas & Sakurai (2019): differential evolution over pixels.

A candidate is k concatenated (x, y, r, g, b) tuples (x = column, y = row,
colours in [0, 1]). Each generation every candidate i gets a trial vector;
the trial replaces it when its fitness is no worse (greedy one-to-one
selection). Fitness, to be minimised, is the probability of the true class
(untargeted) or 1 - the probability of the target (targeted) (Su et al.), or
the logit margin (``loss="margin"``), plus the APR paper's optional penalty
lambda * ||delta||_2.

A trial coordinate that leaves the search box is redrawn uniformly within its
bounds, as SciPy's ``differential_evolution`` does (the implementation behind Su
et al.'s public code, torchattacks and ART); the paper itself states no rule.
Clipping to the border instead (``bounds="clip"``) piles candidates onto the
image's outer rows and columns: on a model that never flips (population 60,
8 generations, 32x32) over 40% of the queried pixels lie on row or column 0 or
31, where 12% of the positions are; with redrawing, fewer than 12% do (in-range
rand/1 donors are denser mid-image). ``tests/test_attacks.py`` checks both.

All images and all their candidates go through the model in one stream of
chunks per generation; each image leaves the active set as soon as any of its
candidates succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from labkit.attacks._rng import HashRNG
from labkit.attacks.base import LOSSES, Attack, AttackResult, CandidateScorer, Problem, attack_keys
from labkit.precision import check_precision

STRATEGIES = ("rand1", "best1-scipy")
BOUNDS = ("redraw", "clip")


@dataclass(frozen=True)
class DEConfig:
    """Hyper-parameters of the differential-evolution one-pixel attack."""

    pixels: int = 1  # k, pixels changed per image (Su et al.: 1, 3, 5)
    population: int = 400  # candidates per image (Su et al.: 400)
    generations: int = 100  # generations after the initial population (Su et al.: 100)
    f: float = 0.5  # mutation scale F of rand/1 (Su et al.: 0.5); best1-scipy redraws it in [0.5, 1)
    crossover: float | None = None  # binomial crossover rate; None = no crossover (Su et al.)
    strategy: str = "rand1"  # "rand1" (Su et al.) or "best1-scipy" (what scipy/torchattacks/ART run)
    init_colour: str = "normal"  # "normal": N(128, 127)/255 clipped (Su et al.), or "uniform"
    targeted: bool = False  # success = prediction equals the target (else: differs from the label)
    penalty: float = 0.0  # lambda of the APR paper's fitness term lambda * ||delta||_2 (0 = Su et al.)
    loss: str = "prob"  # "prob": Su et al.'s probability fitness; "margin": logit margin (no plateau when saturated)
    bounds: str = "redraw"  # out-of-box trial coordinates: "redraw" uniformly (SciPy's rule) or "clip" (border-biased)
    precision: str = "fp32"  # "fp32"; "bf16": search in bf16, confirm successes in fp32; "auto": bf16 where native
    chunk_size: int | None = None  # candidates per forward pass; None = what fits in free memory (candidate_chunk_size)
    seed: int = 0  # with the image's content, fixes every random draw

    def __post_init__(self) -> None:
        if self.pixels < 1:
            raise ValueError(f"pixels (k) must be >= 1, got {self.pixels}")
        if self.population < 4:
            raise ValueError(f"population must be >= 4 (rand/1 needs three others), got {self.population}")
        if self.generations < 0:
            raise ValueError(f"generations must be >= 0, got {self.generations}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {self.strategy!r}")
        if self.init_colour not in ("normal", "uniform"):
            raise ValueError(f"init_colour must be 'normal' or 'uniform', not {self.init_colour!r}")
        if self.crossover is not None and not 0 <= self.crossover <= 1:
            raise ValueError(f"crossover must be None or in [0, 1], got {self.crossover}")
        if self.f <= 0 or self.penalty < 0:
            raise ValueError("f must be > 0 and penalty >= 0")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {self.loss!r}")
        if self.bounds not in BOUNDS:
            raise ValueError(f"bounds must be one of {BOUNDS}, not {self.bounds!r}")
        check_precision(self.precision)

    @property
    def max_queries(self) -> int:
        """The per-image query budget: the initial population plus one per candidate per generation."""
        return self.population * (self.generations + 1)


def _three_distinct_others(rng: HashRNG, keys: Tensor, counter: int, pop: int) -> tuple[Tensor, Tensor, Tensor]:
    """For each image and candidate i, indices r1, r2, r3 distinct from each other and from i, (A, pop) each."""
    m = pop - 1  # offsets 1..pop-1 from i exclude i itself
    a = rng.randint(keys, counter, (pop,), m)
    b = rng.randint(keys, counter + 1, (pop,), m - 1)
    c = rng.randint(keys, counter + 2, (pop,), m - 2)
    b = b + (b >= a)  # skip a
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    c = c + (c >= lo)
    c = c + (c >= hi)  # skip both, in increasing order
    i = torch.arange(pop, device=keys.device)
    return tuple(((i + 1 + o) % pop) for o in (a, b, c))  # type: ignore[return-value]


def _gather(pop: Tensor, idx: Tensor) -> Tensor:
    """pop[a, idx[a, i]] for (A, P, D) and (A, P) -> (A, P, D)."""
    return pop.gather(1, idx[..., None].expand(-1, -1, pop.shape[2]))


def de_trials(cfg: DEConfig, rng: HashRNG, keys: Tensor, pop: Tensor, fit: Tensor, gen: int,
              lo: Tensor, hi: Tensor) -> Tensor:
    """One generation of trial vectors for A independent problems: pop (A, P, D), fit (A, P) -> (A, P, D).

    rand/1 (Su et al.): v = p_r1 + F (p_r2 - p_r3).
    best1-scipy: v = p_best + F (p_r1 - p_r2) with F ~ U[0.5, 1) per generation.
    Binomial crossover with rate ``cfg.crossover`` when set (best1-scipy defaults
    to 1.0, i.e. none). Coordinates outside [lo, hi] are then redrawn uniformly
    within the bounds (``cfg.bounds="redraw"``, SciPy's rule) or clipped to them ("clip").
    """
    (a, p, d) = pop.shape
    ctr = 1000 * gen  # disjoint counters per generation
    r1, r2, r3 = _three_distinct_others(rng, keys, ctr, p)
    if cfg.strategy == "rand1":
        donor = _gather(pop, r1) + cfg.f * (_gather(pop, r2) - _gather(pop, r3))
    else:
        f = 0.5 + 0.5 * rng.uniform(keys, ctr + 3, (1,))
        best = pop.gather(1, fit.argmin(1)[:, None, None].expand(-1, 1, d))
        donor = best + f[:, :, None] * (_gather(pop, r1) - _gather(pop, r2))
    rate = cfg.crossover if cfg.crossover is not None else (1.0 if cfg.strategy == "best1-scipy" else None)
    if rate is not None and rate < 1:
        take = rng.uniform(keys, ctr + 4, (p, d)) < rate
        forced = rng.randint(keys, ctr + 5, (p,), d)  # at least one coordinate from the donor
        take |= torch.nn.functional.one_hot(forced, d).bool()
        donor = torch.where(take, donor, pop)
    if cfg.bounds == "clip":
        return torch.maximum(torch.minimum(donor, hi), lo)
    fresh = lo + rng.uniform(keys, ctr + 6, (p, d)) * (hi - lo)
    return torch.where((donor < lo) | (donor > hi), fresh, donor)


def select(pop: Tensor, fit: Tensor, trials: Tensor, t_fit: Tensor) -> tuple[Tensor, Tensor]:
    """Greedy one-to-one selection: each trial replaces its parent when no worse (ties move, as in scipy)."""
    better = t_fit <= fit
    return torch.where(better[..., None], trials, pop), torch.where(better, t_fit, fit)


@dataclass
class DERun:
    """A recorded run of ``minimize``: populations (G+1, P, D), their fitness (G+1, P), the best point (D,)."""

    populations: Tensor
    fitness: Tensor
    best: Tensor
    best_fitness: float


def minimize(fn: Callable[[Tensor], Tensor], lo: Sequence[float], hi: Sequence[float], population: int = 20,
             generations: int = 30, seed: int = 0, **de: Any) -> DERun:
    """Minimise ``fn`` ((P, D) -> (P,)) over the box [lo, hi] with the same DE step the attack uses.

    For teaching: the one-pixel attack is this loop with ``fn`` = the model's
    probability of the true class at the decoded pixel candidates.
    """
    cfg = DEConfig(population=population, generations=generations, seed=seed, **de)
    lo_t, hi_t = torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)
    rng, keys = HashRNG(seed), torch.zeros(1, dtype=torch.int64)
    pop = lo_t + rng.uniform(keys, 0, (population, len(lo_t))) * (hi_t - lo_t)
    fit = fn(pop[0])[None]
    pops, fits = [pop[0].clone()], [fit[0].clone()]
    for gen in range(1, generations + 1):
        trials = de_trials(cfg, rng, keys, pop, fit, gen, lo_t, hi_t)
        pop, fit = select(pop, fit, trials, fn(trials[0])[None])
        pops.append(pop[0].clone())
        fits.append(fit[0].clone())
    i = int(fit[0].argmin())
    return DERun(torch.stack(pops), torch.stack(fits), pop[0, i], float(fit[0, i]))


class OnePixel(Attack):
    """Su et al.'s one-pixel attack (``DEConfig`` for the knobs), batched over images.

    ``OnePixel(model, pixels=3)(images, labels)`` returns an :class:`AttackResult`.
    ``queries`` counts whole generations: population x (generations run + 1).
    Results depend only on (seed, image content, label/target, config), not on the
    batch an image is in or the chunk size (up to the model's own floating-point
    batch-size effects).
    """

    Config = DEConfig
    config: DEConfig

    # -- encoding ------------------------------------------------------------------
    def _bounds(self, h: int, w: int, c: int, device: torch.device) -> tuple[Tensor, Tensor]:
        lo = torch.zeros(2 + c, device=device)
        # Coordinates live in [0, size): floor() maps them to a pixel with equal width per pixel.
        hi = torch.tensor([w, h] + [1.0] * c, device=device) - torch.tensor([1e-4, 1e-4] + [0.0] * c, device=device)
        k = self.config.pixels
        return lo.repeat(k), hi.repeat(k)

    def _decode(self, vec: Tensor, h: int, w: int) -> tuple[Tensor, Tensor, Tensor]:
        """(R, k*(2+C)) vectors -> rows (R, k), cols (R, k), colours (R, k, C)."""
        v = vec.view(len(vec), self.config.pixels, -1)
        cols = v[..., 0].floor().long().clamp_(0, w - 1)
        rows = v[..., 1].floor().long().clamp_(0, h - 1)
        return rows, cols, v[..., 2:].clamp(0, 1)

    def _init(self, rng: HashRNG, keys: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
        n, p, d = len(keys), self.config.population, len(lo)
        pop = lo + rng.uniform(keys, 0, (p, d)) * (hi - lo)
        if self.config.init_colour == "normal":
            # Su et al.: colours ~ N(mean 128, std 127) on the 0..255 scale, clipped.
            colour = (128 + 127 * rng.normal(keys, 1, (p, d))) / 255
            is_colour = (torch.arange(d, device=keys.device) % (d // self.config.pixels)) >= 2
            pop = torch.where(is_colour, colour.clamp(0, 1), pop)
        return pop.view(n, p, d)

    def _score(self, scorer: CandidateScorer, img: Tensor, vec: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
        """(fitness (R,), success (R,)) of R candidate vectors; lower fitness is better."""
        rows, cols, colours = self._decode(vec, h, w)
        fit, success = scorer.score(img, rows, cols, colours)
        if self.config.penalty:
            original = scorer.images[img[:, None], :, rows, cols]  # (R, k, C) pixels being replaced
            fit = fit + self.config.penalty * (colours - original).flatten(1).norm(dim=1)
        return fit, success

    # -- the attack ----------------------------------------------------------------
    def run(self, problem: Problem, progress: bool) -> AttackResult:
        """Differential evolution on ``problem``, every image's population in one stream (see ``Attack.__call__``)."""
        cfg, scorer, dev = self.config, self.scorer(problem), problem.device
        n, c, h, w = problem.images.shape
        keys = attack_keys(scorer.images, scorer.labels, scorer.targets)
        rng, (lo, hi) = HashRNG(cfg.seed), self._bounds(h, w, c, dev)
        p, d = cfg.population, len(lo)

        pop = self._init(rng, keys, lo, hi)
        img_all = torch.arange(n, device=dev).repeat_interleave(p)
        fit, succ = self._score(scorer, img_all, pop.view(n * p, d), h, w)
        fit, succ = fit.view(n, p), succ.view(n, p)
        queries = torch.full((n,), p, dtype=torch.int64, device=dev)
        done = torch.zeros(n, dtype=torch.bool, device=dev)
        winner = torch.zeros(n, d, device=dev)
        self._settle(scorer, torch.arange(n, device=dev), pop, fit, succ, done, winner, h, w)

        bar = tqdm(range(1, cfg.generations + 1), desc=f"DE k={cfg.pixels}", disable=not progress, leave=False)
        for gen in bar:
            act = (~done).nonzero().squeeze(1)
            if len(act) == 0:
                break
            trials = de_trials(cfg, rng, keys[act], pop[act], fit[act], gen, lo, hi)
            img = act.repeat_interleave(p)
            t_fit, t_succ = self._score(scorer, img, trials.view(-1, d), h, w)
            t_fit, t_succ = t_fit.view(-1, p), t_succ.view(-1, p)
            pop[act], fit[act] = select(pop[act], fit[act], trials, t_fit)
            queries[act] += p
            self._settle(scorer, act, trials, t_fit, t_succ, done, winner, h, w)
            bar.set_postfix(active=int((~done).sum()), success=int(done.sum()))
        bar.close()

        left = (~done).nonzero().squeeze(1)  # failures return their fittest candidate
        winner[left] = pop[left].gather(1, fit[left].argmin(1)[:, None, None].expand(-1, 1, d)).squeeze(1)
        rows, cols, colours = self._decode(winner, h, w)
        return scorer.finish(rows, cols, colours, done, queries)

    def _settle(self, scorer: CandidateScorer, act: Tensor, cand: Tensor, fit: Tensor, succ: Tensor,
                done: Tensor, winner: Tensor, h: int, w: int) -> None:
        """Mark images of ``act`` with a successful candidate as done, keeping their fittest success.

        In bf16 every success of the generation is re-scored in fp32 and the fittest one that holds is kept
        (confirming only the fittest would drop an image whose other successes hold).
        """
        r, j = succ.nonzero(as_tuple=True)
        if len(r) == 0:
            return
        ok = scorer.confirm(act[r], *self._decode(cand[r, j], h, w), torch.ones_like(r, dtype=torch.bool))
        good = torch.zeros_like(succ)
        good[r[ok], j[ok]] = True
        rows_hit = good.any(1).nonzero().squeeze(1)
        if len(rows_hit) == 0:
            return
        masked = torch.where(good[rows_hit], fit[rows_hit], torch.full_like(fit[rows_hit], float("inf")))
        choice = cand[rows_hit].gather(1, masked.argmin(1)[:, None, None].expand(-1, 1, cand.shape[2])).squeeze(1)
        winner[act[rows_hit]] = choice
        done[act[rows_hit]] = True
