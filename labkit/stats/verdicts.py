"""Verdicts: supported / direction supported / contradicted / undecided / not informative / not comparable,
produced from numbers (``paired_verdict``, ``clustered_paired_verdict``, ``rate_verdict``, ``value_verdict``,
``direction_verdict``, ``overhead_verdict``, ``not_comparable``); never typed by hand. The rule is stated once, in
``labkit.stats``' docstring; the intervals and tests come from ``labkit.stats.core``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from labkit.stats.core import (ALPHA, POWER, Comparison, Paired, _newcombe_t, binomial_p, binomial_power,
                               cluster_compare, mcnemar, n_for_power, newcombe_p, wilson, z_of)

__all__ = ["DIRECTIONS", "EQUIVALENCE_MARGIN", "MIN_EFFECT", "SIZES", "STATUSES", "Verdict",
    "clustered_paired_verdict", "direction_verdict", "not_comparable", "overhead_verdict", "paired_verdict",
    "rate_verdict", "status_of", "value_verdict"]

#: A verdict's headline status (for counting); ``Verdict.label`` says direction and size in words.
STATUSES = ("supported", "direction supported", "contradicted", "undecided", "not informative", "not comparable")
EQUIVALENCE_MARGIN = 0.10  # "as claimed": the interval lies within 10 points (a fraction of 1) of the claim
MIN_EFFECT = 0.05  # the smallest change that counts in a claimed direction when the claim gives none (5 points)

# -- verdicts --------------------------------------------------------------------------------------------------------

DIRECTIONS = ("supported", "contradicted", "undecided")
SIZES = ("as claimed", "smaller than claimed", "larger than claimed", "undecided")
_SIZE_WORDS = {"as claimed": "as claimed", "smaller than claimed": "contradicted (smaller than claimed)",
               "larger than claimed": "contradicted (larger than claimed)", "undecided": "undecided"}


@dataclass(frozen=True)
class Verdict:
    """What a run says about one claim, and why, from the numbers: a headline ``status`` (one of STATUSES, for
    counting) built from two separate answers, ``direction`` and ``size`` (``label`` says both in words)."""

    status: str  # one of STATUSES
    claim: str  # the claim in words, e.g. "APR lowers the one-pixel ASR from 70.97% to 21.43%"
    effect: float  # the measured effect, in ``unit``
    lo: float  # its interval at the verdict's level (``interval`` says which; NaN when the measurement has none)
    hi: float
    unit: str  # e.g. "points" (percentage points), "%"
    n: int | None  # images behind the measurement (None: not a sample, e.g. timings)
    p: float | None  # the p-value used (family-adjusted, or the caller's adjusted one), None when no test
    power: float | None  # chance of "supported" at this n if the claim holds exactly (None when not computed)
    why: str  # the reason, in words, with the numbers that decided it
    n_needed: int | None = None  # not supported: images that would give power POWER (None: not computable)
    interval: str = "95% CI"  # what (lo, hi) is, in words (timings: "range over repeats"; a family: "98.3% CI")
    direction: str | None = None  # one of DIRECTIONS; None for a claim without a direction ("the rate is 68.71%")
    size: str | None = None  # one of SIZES; None for a claim without a size ("a is lower than b")

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")
        if self.direction not in (None, *DIRECTIONS):
            raise ValueError(f"direction must be one of {DIRECTIONS} or None, not {self.direction!r}")
        if self.size not in (None, *SIZES):
            raise ValueError(f"size must be one of {SIZES} or None, not {self.size!r}")

    @property
    def label(self) -> str:
        """The verdict in words: "direction supported, size contradicted (larger than claimed)"; a claim without
        a direction: its status, with the side where the size is off ("contradicted (smaller than claimed)")."""
        if self.status in ("not informative", "not comparable") or (self.direction is None and self.size is None):
            return self.status
        if self.direction is None:  # the side is said only where it decided (a caller may have overridden status)
            return f"{self.status} ({self.size})" if self.status == "contradicted" and self.size else self.status
        if self.status == "supported":
            return "supported (direction and size as claimed)" if self.size else "supported (direction)"
        if self.size is None:
            return f"direction {self.direction}"
        return f"direction {self.direction}, size {_SIZE_WORDS[self.size]}"

    @property
    def decimals(self) -> int:
        """Decimals a number in ``unit`` is written with: percentages to 0.1, fractions (percentiles) to 0.001."""
        return 1 if self.unit.startswith(("points", "%")) else 3

    def number(self, x: float, with_unit: bool = False) -> str:
        """``x`` (in ``unit``) written as ``sentence`` writes it: "16.7", "+0.167", with ``with_unit`` "16.7%",
        "+3.2 points"."""
        d = self.decimals
        sign = "" if self.unit in ("%", "F1") else "+"  # a rate or a score has no sign; changes and increases do
        unit = self.unit if self.unit.startswith("%") else f" {self.unit}" if self.unit else ""
        return f"{x:{sign}.{d}f}{unit if with_unit else ''}"

    def sentence(self) -> str:
        """One line: the label, the claim, the effect with its interval, n, p and power, and why."""
        both = self.lo == self.lo and self.hi == self.hi
        interval = f" ({self.interval} {self.number(self.lo)} to {self.number(self.hi)})" if both else ""
        extra = [f"n = {self.n}" if self.n is not None else "",
                 f"p = {self.p:.3g}" if self.p is not None and self.p == self.p else "",
                 f"power {self.power:.2f}" if self.power is not None else ""]
        stats = ", ".join(e for e in extra if e)
        effect = f"Measured {self.number(self.effect, with_unit=True)}" if self.effect == self.effect else "Measured"
        return f"{self.label.upper()}: {self.claim}. {effect}{interval}{'; ' + stats if stats else ''}. {self.why}"


def status_of(direction: str | None, size: str | None) -> str:
    """The headline status of a (direction, size) answer: supported = direction supported (or none claimed) and
    size as claimed (or none claimed); "direction supported" = the direction holds, the size does not (or is
    undecided); contradicted = the direction contradicted, or (no direction) the size; undecided otherwise."""
    if direction == "supported":
        return "supported" if size in (None, "as claimed") else "direction supported"
    if direction == "contradicted":
        return "contradicted"
    if direction is None and size == "as claimed":
        return "supported"
    if direction is None and size in ("smaller than claimed", "larger than claimed"):
        return "contradicted"
    return "undecided"


def not_comparable(claim: str, reason: str, effect: float = float("nan"), unit: str = "", n: int | None = None,
                   lo: float = float("nan"), hi: float = float("nan")) -> Verdict:
    """A measurement that cannot test ``claim`` (another architecture, dataset or attack budget): status "not
    comparable", the numbers side by side, ``reason`` as the why. Not "undecided": more images would not help."""
    return Verdict("not comparable", claim, effect, lo, hi, unit, n, None, None, why=reason)


def _level(alpha: float, family: int) -> str:
    """The interval's name at the family-wise level: "95% CI", "98.3% CI"."""
    return f"{100 * (1 - alpha / family):.3g}% CI"


def _oriented(lo: Tensor, hi: Tensor, sign: int) -> tuple[Tensor, Tensor]:
    """(lo, hi) turned so that the claimed direction is positive (sign -1: a fall becomes a rise)."""
    return (lo, hi) if sign >= 0 else (-hi, -lo)


def _direction_t(lo: Tensor, hi: Tensor, sign: int, min_effect: float) -> Tensor:
    """Codes (1 supported, -1 contradicted, 0 undecided) of intervals of a change claimed to have ``sign``:
    supported when the interval excludes 0 on the claimed side; else contradicted when it excludes every change
    of ``min_effect`` or more in the claimed direction."""
    olo, ohi = _oriented(lo, hi, sign)
    return torch.where(olo > 0, 1, torch.where(ohi < min_effect, -1, 0))


def _size_t(dlo: Tensor, dhi: Tensor, sign: int, margin: float, slack: float = 0.0) -> Tensor:
    """Codes (indices of SIZES) of intervals of measured - claimed, the claimed direction ``sign`` (0: none; then
    "larger" means above the claim). As claimed: the interval contains the claim (within ``slack``) and lies
    within +-``margin`` of it; larger / smaller: it excludes the claim by more than ``slack``; else undecided."""
    olo, ohi = _oriented(dlo, dhi, sign)
    within = (olo >= -margin) & (ohi <= margin) & (olo <= slack) & (ohi >= -slack)
    return torch.where(olo > slack, 2, torch.where(ohi < -slack, 1, torch.where(within, 0, 3)))


def _ratio_interval_t(both: Tensor, b: Tensor, c: Tensor, neither: Tensor, ratio: float,
                      z: float) -> tuple[Tensor, Tensor]:
    """Interval of rate_after - ratio x rate_before from paired counts (batched): the claimed change with the
    baseline estimated, not fixed.

    Per image the score is after - ratio x before (1 - ratio, -ratio, 1 or 0 for the four cells), so its mean's
    standard error carries both rates' sampling error and their correlation; the Wald interval of that mean with
    Agresti & Min's (2005) half a pseudo-image per cell, which for ratio 1 is their recommended interval of a
    paired difference (it stays sensible at 0 and n discordant images, where the plain Wald collapses).
    """
    cells = torch.stack([both, b, c, neither]) + 0.5
    n = cells.sum(0)
    score = torch.tensor([1 - ratio, -ratio, 1.0, 0.0], dtype=torch.float64).view(4, *([1] * both.dim()))
    mean = (cells * score).sum(0) / n
    var = ((cells * score ** 2).sum(0) / n - mean ** 2).clamp(min=0.0)
    half = z * (var / n).sqrt()
    return mean - half, mean + half


@dataclass(frozen=True)
class _Rule:
    """The paired decision rule of ``paired_verdict``, applied alike to the run and to simulated runs."""

    change: float  # the claimed rate_after - rate_before (fraction), from the run's own reference rate
    ratio: float | None  # the claim as rate_after = ratio x rate_before (the baseline then estimated), or None
    z: float  # normal quantile of the family-wise interval
    min_effect: float  # the smallest change in the claimed direction that counts (fraction)

    @property
    def sign(self) -> int:
        return (self.change > 0) - (self.change < 0)

    def __call__(self, both: Tensor, b: Tensor, c: Tensor, neither: Tensor) -> tuple[Tensor, ...]:
        """(direction codes, size codes, informative, lo, hi, size lo, size hi) of batched 2x2 tables."""
        lo, hi = _newcombe_t(both, b, c, neither, self.z)
        before = (both + b) / (both + b + c + neither)
        informative = (before > 0) & (before < 1)  # a floor or a ceiling is no evidence
        direction = _direction_t(lo, hi, self.sign, self.min_effect)
        slo, shi = (lo - self.change, hi - self.change) if self.ratio is None else \
            _ratio_interval_t(both, b, c, neither, self.ratio, self.z)
        return direction, _size_t(slo, shi, self.sign, EQUIVALENCE_MARGIN), informative, lo, hi, slo, shi


def _paired_power(rule: _Rule, n: int, rate_before: float, discordant: float, draws: int = 2000,
                  seed: int = 0) -> float:
    """Chance that ``rule`` reads "supported" on n images if the claim holds exactly: paired 2x2 tables drawn
    (seeded, ``draws`` at once) with the run's reference rate, the claimed change and the run's share of
    discordant images (at least the claimed change: the nested case if fewer were seen)."""
    if n <= 0:
        return 0.0
    d = rule.change
    disc = max(discordant, abs(d))
    p10, p01 = (disc - d) / 2, (disc + d) / 2
    excess = max(0.0, p10 - rate_before, p01 - (1 - rate_before))  # keep the reference margin feasible
    p10, p01 = max(0.0, p10 - excess), max(0.0, p01 - excess)
    p11 = max(0.0, rate_before - p10)
    g = torch.Generator().manual_seed(seed)
    total = torch.full((draws,), float(n), dtype=torch.float64)

    def draw(count: Tensor, prob: float) -> Tensor:  # binomial of count with a probability clamped to [0, 1]
        return torch.binomial(count, torch.full_like(count, min(1.0, max(0.0, prob))), generator=g)

    both = draw(total, p11)
    b = draw(total - both, p10 / max(1e-300, 1 - p11))
    c = draw(total - both - b, p01 / max(1e-300, 1 - p11 - p10))
    direction, size, informative, *_ = rule(both, b, c, total - both - b - c)
    supported = informative & (size == 0) & ((direction == 1) if rule.sign else True)
    return supported.double().mean().item()


def _needed(n_needed: int | None, bound: str = "about") -> str:
    return (f"{bound} {n_needed} images would be needed for power {POWER:.0%}" if n_needed is not None
            else f"no n up to 100,000 would give power {POWER:.0%}")


def _floor(rate_before: float, sign: int) -> str | None:
    """Why a reference rate of 0% or 100% is no evidence for a change (None for a rate strictly between)."""
    if 0 < rate_before < 1:
        return None
    at = "0%" if rate_before <= 0 else "100%"
    what = ("nothing to lower" if sign < 0 else "nothing to raise from (the claimed rise is relative)") \
        if rate_before <= 0 else ("the attack saturates: every image breaks whatever the defence" if sign < 0
                                  else "nothing left to raise")
    return (f"The reference rate on these images is {at}: {what}. A floor or a ceiling is no evidence for or "
            "against the claim.")


def _reasons(direction: str | None, size: str | None, *, claimed: str, min_words: str, margin_words: str,
             off: str, p_used: float | None, alpha: float) -> str:
    """The why of a (direction, size) answer, in words."""
    parts = []
    if direction == "supported":
        parts.append(f"The interval excludes no change, on the claimed side (p = {p_used:.3g} < {alpha:g}).")
    elif direction == "contradicted":
        parts.append(f"The interval excludes every change of {min_words} or more in the claimed direction.")
    elif direction == "undecided":
        test = f" (p = {p_used:.3g})" if p_used is not None else ""
        parts.append(f"On direction the run cannot tell: the interval reaches a change of {min_words} in the claimed "
                     f"direction but does not exclude no change{test}.")
    if size == "as claimed":
        parts.append(f"Size: the interval contains the claimed {claimed} and lies within {margin_words} of it.")
    elif size in ("smaller than claimed", "larger than claimed"):
        parts.append(f"Size: the interval excludes the claimed {claimed}; the effect is at least {off} {size}.")
    elif size == "undecided":
        parts.append(f"Size: the interval contains the claimed {claimed} but reaches more than {margin_words} "
                     "from it.")
    return " ".join(parts)


def _table(before: Sequence[int] | Tensor, after: Sequence[int] | Tensor) -> tuple[Paired, Tensor]:
    """McNemar's summary of paired outcomes and their 2x2 counts (both, b, c, neither) as (1,) float64 tensors."""
    pr = mcnemar(before, after)
    both = round(pr.rate_a * pr.n) - pr.b if pr.n else 0
    counts = torch.tensor([[both], [pr.b], [pr.c], [pr.n - both - pr.b - pr.c]], dtype=torch.float64)
    return pr, counts


def paired_verdict(claim: str, before: Sequence[int] | Tensor, after: Sequence[int] | Tensor,
                   claimed_change: float, alpha: float = ALPHA, p: float | None = None, *, family: int = 1,
                   claimed_ratio: float | None = None, min_effect: float | None = None, draws: int = 2000,
                   seed: int = 0) -> Verdict:
    """Verdict on "the rate moves by ``claimed_change``" from paired 0/1 outcomes on the same images.

    ``before``/``after``: outcomes (e.g. verified worst-case successes) of the reference (the undefended model;
    full APR in the ablation) and of the compared model; ``claimed_change``: the claimed rate(after) -
    rate(before), a fraction. ``claimed_ratio``: the claim as rate(after) = ratio x rate(before) (a defence's
    relative fall, an ablation's relative rise); then the claimed change is (ratio - 1) x our reference rate,
    ``claimed_change`` is ignored, and the size is tested on after - ratio x before, whose interval carries the
    baseline's sampling error (``_ratio_interval_t``). ``family``: claims decided together (Bonferroni: the
    interval at 1 - alpha / family, p x family). ``p``: an adjusted p-value from the caller (e.g. Holm over a
    table), shown, and needed below alpha as well for the direction to count as supported. ``min_effect``: the
    smallest change in the claimed direction that counts (default the smaller of MIN_EFFECT and the claim).

    Direction from Newcombe's interval of the change (``newcombe_p``, its dual, is the p shown); size from the
    interval of measured - claimed against EQUIVALENCE_MARGIN; a reference rate of 0% or 100% is "not
    informative". ``power``: the simulated chance of "supported" if the claim holds (``_paired_power``,
    ``draws`` seeded tables), ``n_needed`` the images that would give POWER.
    """
    pr, counts = _table(before, after)
    z = z_of(alpha, family)
    change = claimed_change if claimed_ratio is None else (claimed_ratio - 1) * pr.rate_a
    pts = lambda v: 100 * v  # noqa: E731
    if pr.n == 0:
        return Verdict("undecided", claim, float("nan"), float("nan"), float("nan"), "points", 0, None, 0.0,
                       why="No images were attacked.")
    rule = _Rule(change, claimed_ratio, z, min(MIN_EFFECT, abs(change)) if min_effect is None else min_effect)
    direction_c, size_c, _, lo, hi, slo, shi = (t.item() for t in rule(*counts))
    p_own = min(1.0, family * newcombe_p(*(int(v) for v in counts)))
    p_used = p_own if p is None else p
    common = dict(claim=claim, effect=pts(pr.difference), lo=pts(lo), hi=pts(hi), unit="points", n=pr.n, p=p_used,
                  interval=_level(alpha, family))
    floor = _floor(pr.rate_a, rule.sign)
    if floor is not None:
        return Verdict("not informative", **common, power=None, why=floor)
    if direction_c == 1 and p_used >= alpha:  # the caller's adjusted p does not reject
        direction_c = 0
    direction = {1: "supported", -1: "contradicted", 0: "undecided"}[direction_c] if rule.sign else None
    size = SIZES[size_c]
    status = status_of(direction, size)
    disc = (pr.b + pr.c) / pr.n
    power = _paired_power(rule, pr.n, pr.rate_a, disc, draws, seed)
    n_needed = None if status == "supported" else \
        n_for_power(lambda m: _paired_power(rule, m, pr.rate_a, disc, draws, seed))
    if claimed_ratio is None:
        claimed = f"{pts(change):+.1f} points (from our {pts(pr.rate_a):.1f}%)"
    else:
        claimed = (f"{claimed_ratio:.2f}x our {pts(pr.rate_a):.1f}% ({pts(change):+.1f} points; interval of after - "
                   f"{claimed_ratio:.2f} x before {pts(slo):+.1f} to {pts(shi):+.1f} points)")
    off = f"{pts(min(abs(slo), abs(shi))):.1f} points"
    why = _reasons(direction, size, claimed=claimed, min_words=f"{pts(rule.min_effect):.1f} points",
                   margin_words=f"{pts(EQUIVALENCE_MARGIN):.0f} points", off=off, p_used=p_used, alpha=alpha)
    if status != "supported":
        why += (f" Power to read 'supported' if the claim holds: {power:.2f} (simulated, {disc:.0%} discordant "
                f"images); {_needed(n_needed)}.")
    return Verdict(status, **common, power=power, why=why, n_needed=n_needed, direction=direction, size=size)


def clustered_paired_verdict(claim: str, before: Sequence[int] | Tensor, after: Sequence[int] | Tensor,
                             images: Sequence[int] | Tensor, claimed_change: float, alpha: float = ALPHA,
                             p: float | None = None, seed: int = 0, comparison: Comparison | None = None, *,
                             family: int = 1, claimed_ratio: float | None = None,
                             min_effect: float | None = None) -> Verdict:
    """``paired_verdict`` for outcomes that repeat images: several seeds attacked the same test images.

    The image is the unit: five seeds' outcomes on one image are not five independent pairs (an easy image is
    easy for every seed), so pooling them in McNemar's test would overstate n and understate p. Per image, the
    change is mean(after) - mean(before) over the seeds that attacked it (``images[i]`` is the test-set index of
    ``before[i]`` and ``after[i]``); ``cluster_compare``'s paired design tests it by sign flips per image, with a
    bootstrap interval over images at the family-wise level. The same rule as ``paired_verdict`` (direction
    from the interval, with the sign-flip p x ``family`` (or the caller's ``p``) also below alpha; size against
    EQUIVALENCE_MARGIN; with ``claimed_ratio`` the size interval is the bootstrap of mean(after) - ratio x
    mean(before) per image); power is not computed for this design. ``comparison``: that test, already run
    (``cluster_compare(after, before, images, images)``) at the verdict's level, not run again.
    """
    ids = torch.as_tensor(images).long()
    a = torch.as_tensor(after, dtype=torch.float64)
    b = torch.as_tensor(before, dtype=torch.float64)
    if not len(a) == len(b) == len(ids):
        raise ValueError(f"before, after and images must have one entry per attacked image: {len(b)}, {len(a)}, "
                         f"{len(ids)}")
    pts = lambda v: 100 * v  # noqa: E731
    if len(ids) == 0:
        return Verdict("undecided", claim, float("nan"), float("nan"), float("nan"), "points", 0, None, None,
                       why="No images were attacked.")
    confidence = 1 - alpha / family
    comp = comparison if comparison is not None and abs(comparison.confidence - confidence) < 1e-9 else \
        cluster_compare(a, b, ids, ids, statistic="mean", confidence=confidence, seed=seed)
    rate_a = b.mean().item()
    change = claimed_change if claimed_ratio is None else (claimed_ratio - 1) * rate_a
    p_used = min(1.0, family * comp.p_value) if p is None else p
    common = dict(claim=claim, effect=pts(comp.difference), lo=pts(comp.ci_lo), hi=pts(comp.ci_hi), unit="points",
                  n=comp.clusters, p=p_used, power=None, interval=_level(alpha, family))
    design = (f"{len(ids)} outcomes on {comp.clusters} images, seeds averaged per image (sign-flip test and "
              "bootstrap over images; power not computed for this design)")
    sign = (change > 0) - (change < 0)
    floor = _floor(rate_a, sign)
    if floor is not None:
        return Verdict("not informative", **common, why=f"{floor} {design}.")
    m = min(MIN_EFFECT, abs(change)) if min_effect is None else min_effect
    lo, hi = torch.tensor([comp.ci_lo], dtype=torch.float64), torch.tensor([comp.ci_hi], dtype=torch.float64)
    if claimed_ratio is None:
        slo, shi = lo - change, hi - change
    else:
        sc = cluster_compare(a, claimed_ratio * b, ids, ids, statistic="mean", confidence=confidence, seed=seed)
        slo, shi = torch.tensor([sc.ci_lo], dtype=torch.float64), torch.tensor([sc.ci_hi], dtype=torch.float64)
    direction_c = int(_direction_t(lo, hi, sign, m))
    if direction_c == 1 and p_used >= alpha:
        direction_c = 0
    direction = {1: "supported", -1: "contradicted", 0: "undecided"}[direction_c] if sign else None
    size = SIZES[int(_size_t(slo, shi, sign, EQUIVALENCE_MARGIN))]
    claimed = f"{pts(change):+.1f} points (from our {pts(rate_a):.1f}%)"
    why = _reasons(direction, size, claimed=claimed, min_words=f"{pts(m):.1f} points",
                   margin_words=f"{pts(EQUIVALENCE_MARGIN):.0f} points",
                   off=f"{pts(min(abs(slo.item()), abs(shi.item()))):.1f} points", p_used=p_used, alpha=alpha)
    return Verdict(status_of(direction, size), **common, why=f"{why} {design}.", direction=direction, size=size)


def rate_verdict(claim: str, successes: int, n: int, claimed_rate: float, tolerance: float = EQUIVALENCE_MARGIN,
                 alpha: float = ALPHA, *, family: int = 1, comparable: str | None = None) -> Verdict:
    """Verdict on "the rate is ``claimed_rate``" (e.g. a paper's ASR) from k successes in n images: a claim
    with a size and no direction.

    * size contradicted (smaller / larger than claimed): the exact two-sided binomial test, p x ``family``,
      rejects the claimed rate at ``alpha`` (the Wilson interval at the family level, shown, almost always
      excludes it too; near the boundary the exact test decides);
    * as claimed: the interval contains the claimed rate and lies within +-``tolerance`` of it (default
      EQUIVALENCE_MARGIN, 10 points);
    * undecided: neither, with the power of the exact test to detect a rate ``tolerance`` away (the weaker side)
      and the n that would reach POWER.

    ``comparable``: a reason the rate cannot test the claim (another architecture, dataset or budget): status
    "not comparable", the numbers still shown.
    """
    lo, hi = wilson(successes, n, z_of(alpha, family))
    rate = successes / n if n else float("nan")
    p = min(1.0, family * binomial_p(successes, n, claimed_rate))
    level = alpha / family

    def power_at(m: int) -> float:
        sides = [r for r in (claimed_rate - tolerance, claimed_rate + tolerance) if 0 <= r <= 1]
        return min(binomial_power(m, claimed_rate, r, level) for r in sides)

    common = dict(claim=claim, effect=100 * rate, lo=100 * lo, hi=100 * hi, unit="%", n=n,
                  interval=_level(alpha, family))
    if comparable is not None:
        return not_comparable(claim, comparable, 100 * rate, "%", n, 100 * lo, 100 * hi)
    power = power_at(n)
    if n == 0:
        return Verdict("undecided", **common, p=p, power=power, why="No images were attacked.")
    said = f"{100 * claimed_rate:.2f}%"
    if p < alpha:  # the exact test decides; the Wilson interval is shown (they can differ at the boundary)
        off = max(lo - claimed_rate, claimed_rate - hi, 0.0)
        size = "larger than claimed" if rate > claimed_rate else "smaller than claimed"
        return Verdict("contradicted", **common, p=p, power=power, size=size,
                       why=f"The exact binomial test rejects the claimed {said} (p = {p:.3g}); the interval lies "
                           f"{100 * off:.1f} points from it, {size.split(' than')[0]}.")
    if lo <= claimed_rate <= hi and claimed_rate - tolerance <= lo and hi <= claimed_rate + tolerance:
        return Verdict("supported", **common, p=p, power=power, size="as claimed",
                       why=f"The interval contains the claimed {said} and lies within {100 * tolerance:.0f} points "
                           "of it.")
    n_needed = n_for_power(power_at)
    return Verdict("undecided", **common, p=p, power=power, n_needed=n_needed, size="undecided",
                   why=f"The exact test does not reject the claimed {said} (p = {p:.3g}) but the interval reaches "
                       f"more than {100 * tolerance:.0f} points from it: power {power:.2f} to detect a rate "
                       f"{100 * tolerance:.0f} points off; {_needed(n_needed)}.")


def overhead_verdict(claim: str, measured: float, claimed: float | None, spread: tuple[float, float] | None = None,
                     tolerance: float = 5.0) -> Verdict:
    """Verdict on a claimed percentage overhead from a measured one (timings: no sampling model, no p-value).

    ``measured``: the median increase in percent; ``spread``: the range of the per-repeat increases (None when
    only the median is known); ``claimed``: the paper's percentage (None: the paper has no number for this
    setting). Compatible means the claim lies within the spread widened by ``tolerance`` points (timing noise
    the repeats do not show, default 5): supported (size as claimed) if compatible, contradicted otherwise
    (larger or smaller than claimed, with the factor); undecided when there is no claim to compare with.
    """
    lo, hi = spread if spread is not None else (float("nan"), float("nan"))
    common = dict(claim=claim, effect=measured, lo=lo, hi=hi, unit="% increase", n=None, p=None, power=None,
                  interval="range over repeats")
    if claimed is None:
        return Verdict("undecided", **common, why="The paper reports no number for this setting.")
    low, high = (measured, measured) if spread is None else spread
    where = f"{'range over repeats' if spread else 'median'} widened by {tolerance:g} points"
    if low - tolerance <= claimed <= high + tolerance:
        return Verdict("supported", **common, size="as claimed",
                       why=f"The claimed {claimed:+g}% lies within the measured {where} (medians of timings on this "
                           "machine; no sampling model).")
    size = "larger than claimed" if claimed < low - tolerance else "smaller than claimed"
    factor = f"{measured / claimed:.1f}x the claimed {claimed:+g}%" if claimed else f"vs the claimed {claimed:+g}%"
    return Verdict("contradicted", **common, size=size,
                   why=f"Ours is {factor}, outside the measured {where} (medians of timings on this machine; no "
                       "sampling model).")


def _widened(estimate: float, lo: float, hi: float, confidence: float, alpha: float,
             family: int) -> tuple[float, float]:
    """An interval at ``confidence`` widened (or narrowed) to the family-wise level, each side scaled by the ratio
    of normal quantiles about the estimate: the caller holds only the interval, not the data behind it."""
    scale = z_of(alpha, family) / z_of(1 - confidence)
    return estimate - (estimate - lo) * scale, estimate + (hi - estimate) * scale


def direction_verdict(claim: str, comparison: Comparison, sign: int = -1, min_effect: float = MIN_EFFECT,
                      alpha: float = ALPHA, p: float | None = None, *, family: int = 1) -> Verdict:
    """Verdict on a directional claim ("a is lower than b", ``sign=-1``) from an image-level ``Comparison``: a
    claim with a direction and no size.

    ``min_effect``: the smallest difference that would count (the claim gives no magnitude; Lab 08 uses 0.05,
    five percentile points). ``family``: claims decided together (the comparison's interval widened to
    1 - alpha / family, its p x family). ``p``: an adjusted p-value to use instead (e.g. Holm's).

    * supported: the interval excludes 0 on the claimed side and p < alpha;
    * contradicted: otherwise, if the interval excludes every effect of ``min_effect`` or more in the claimed
      direction;
    * undecided: neither; power from the normal approximation with the bootstrap standard error, and the
      images needed (the standard error shrinks as 1 / sqrt(images)).
    """
    if sign not in (-1, 1):
        raise ValueError("sign must be -1 (a lower than b) or +1 (a higher than b)")
    d = comparison.difference
    lo, hi = _widened(d, comparison.ci_lo, comparison.ci_hi, comparison.confidence, alpha, family)
    p_used = min(1.0, family * comparison.p_value) if p is None else p
    z, zc = z_of(alpha, family), z_of(1 - comparison.confidence)
    se = (comparison.ci_hi - comparison.ci_lo) / (2 * zc) if hi == hi and lo == lo else float("nan")
    normal = torch.distributions.Normal(0.0, 1.0)
    power = float(normal.cdf(torch.tensor(min_effect / se - z))) if se > 0 else (0.0 if se != se else 1.0)
    common = dict(claim=claim, effect=d, lo=lo, hi=hi, unit="", n=comparison.clusters, p=p_used, power=power,
                  interval=_level(alpha, family))
    if d != d:
        return Verdict("undecided", **{**common, "power": 0.0}, why="A group is empty: nothing to compare.")
    code = int(_direction_t(torch.tensor([lo]), torch.tensor([hi]), sign, min_effect))
    if code == 1 and p_used >= alpha:
        code = 0
    if code == 1:
        return Verdict("supported", **common, direction="supported",
                       why=f"The interval excludes no difference, on the claimed side (p = {p_used:.3g} < {alpha:g}).")
    if code == -1:
        return Verdict("contradicted", **common, direction="contradicted",
                       why=f"The interval excludes every difference of {sign * min_effect:+g} or more in the claimed "
                           f"direction" + (" (it lies on the opposite side)" if (lo > 0 if sign < 0 else hi < 0)
                                           else "") + ".")
    z80 = float(torch.special.ndtri(torch.tensor(POWER, dtype=torch.float64)))
    n_needed = math.ceil(comparison.clusters * ((z + z80) * se / min_effect) ** 2) if se > 0 else None
    return Verdict("undecided", **common, n_needed=n_needed, direction="undecided",
                   why=f"The interval reaches {sign * min_effect:+g} and "
                       + ("no difference" if lo <= 0 <= hi else "excludes no difference, but the test does not reject")
                       + f" (p = {p_used:.3g}); power about {power:.2f} to detect {sign * min_effect:+g}; "
                       f"{_needed(n_needed)} (normal approximation).")


# -- a value with an interval (macro-F1, the survey's metric) ---------------------------------------------------

def value_verdict(claim: str, estimate: float, lo: float, hi: float, claimed: float, n: int,
                  tolerance: float = EQUIVALENCE_MARGIN, resolution: float = 0.02, unit: str = "F1", *,
                  family: int = 1, confidence: float = 0.95) -> Verdict:
    """Verdict on "the value is ``claimed``" from an estimate with an interval at ``confidence`` (e.g.
    ``f1_interval``), widened to the family-wise level; a claim with a size and no direction, no p or power.

    * contradicted (smaller / larger than claimed): the interval lies more than ``resolution`` from the claimed
      value. The margin is there because a bootstrap interval collapses at a boundary (every image fooled: F1 0
      in every resample) while the quantity itself does not, and a paper's two decimals round by 0.005; 0.02 of
      F1 is below anything a table would mean;
    * supported (as claimed): it contains the claim (within ``resolution``) and lies within +-``tolerance``;
    * undecided: neither: it reaches further than ``tolerance`` from the claim without excluding it.
    """
    common = dict(claim=claim, effect=estimate, unit=unit, n=n, p=None, power=None)
    if not (lo == lo and hi == hi):
        return Verdict("undecided", **common, lo=lo, hi=hi, why="No interval: nothing was measured.")
    lo, hi = _widened(estimate, lo, hi, confidence, ALPHA, family)
    common.update(lo=lo, hi=hi, interval=_level(ALPHA, family))
    size = SIZES[int(_size_t(torch.tensor([lo - claimed]), torch.tensor([hi - claimed]), 0, tolerance, resolution))]
    off = max(lo - claimed, claimed - hi, 0.0)
    why = {"as claimed": f"The interval lies within {tolerance:g} of the claimed {claimed:g}"
                         + (" (and within the comparison's resolution of it)." if off else "."),
           "undecided": f"The interval contains the claimed {claimed:g} but reaches more than {tolerance:g} from it: "
                        "more images would decide."}.get(size, f"The interval lies {off:.3f} from the claimed "
                                                           f"{claimed:g} (more than the {resolution:g} resolution of "
                                                           f"the comparison), {size.split(' than')[0]}.")
    return Verdict(status_of(None, size), **common, size=size, why=why)
