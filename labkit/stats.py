"""The book's statistics, in one place: intervals, paired tests, power, image-level resampling, verdicts.

* Single rates: ``wilson`` (score interval), ``binomial_p`` / ``binomial_power`` (exact test against a value);
  across seeds: ``mean_ci``.
* Paired rates (every model of a lab is attacked on the same images): ``mcnemar`` (exact test on the discordant
  pairs), ``newcombe_paired`` (Newcombe's square-and-add interval of the difference) and ``newcombe_p`` (its
  dual p-value), ``mcnemar_power``, ``n_for_power``.
* Many comparisons in one table: ``holm``; ``z_of(alpha, family)`` for Bonferroni intervals.
* Values clustered by image (Lab 08: several pixels per image are not independent draws): ``cluster_compare``,
  a permutation test and a bootstrap that resample whole images.
* Classifiers: ``f1_per_class`` and ``macro_f1`` (the survey's metric after each attack), sklearn's conventions.
* ``Verdict``s, produced from numbers by ``paired_verdict``, ``clustered_paired_verdict``, ``rate_verdict``,
  ``value_verdict``, ``direction_verdict``, ``overhead_verdict`` and ``not_comparable``; never typed by hand.

The verdict rule, one for every verdict:
1. A claim asks up to two questions: its DIRECTION (supported: the interval of the change excludes 0 on the
   claimed side; contradicted: it excludes every change of ``min_effect`` or more that way; else undecided) and
   its SIZE (as claimed: the interval contains the claim and lies within +-EQUIVALENCE_MARGIN, 10 points, of it;
   smaller / larger than claimed: it excludes the claim, "larger" a bigger effect the claimed way; else undecided).
2. STATUSES: supported (direction supported or none, size as claimed or none); "direction supported" (the size is
   off or undecided); contradicted (direction contradicted, or with no direction the size); undecided; "not
   informative" (the reference rate is 0% or 100%: a floor or ceiling is no evidence); "not comparable".
3. ``family`` claims decided together: intervals at 1 - ALPHA / family and p x family (Bonferroni), so both
   "supported" and "contradicted" hold at the same family-wise level. Paired p-values are the dual of the
   interval (``newcombe_p``); a claimed ratio to the baseline is tested with the baseline's uncertainty.
4. Power: the chance of "supported" if the claim holds, simulated with the very rule (paired verdicts).

Layer 7 of DESIGN.md: imports no other labkit module but ``_checks``. Exact binomial sums are computed in
float64 from ``math.lgamma`` (no SciPy needed); only ``mean_ci`` uses SciPy's t quantile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from labkit._checks import check_int

__all__ = [
    "ALPHA", "DIRECTIONS", "EQUIVALENCE_MARGIN", "MIN_EFFECT", "POWER", "SIZES", "STATUSES", "Comparison", "Paired",
    "Verdict", "binomial_p", "binomial_power", "cluster_compare", "clustered_paired_verdict", "direction_verdict",
    "f1_interval", "f1_per_class", "holm", "macro_f1", "mcnemar", "mcnemar_power", "mean_ci", "n_for_power",
    "newcombe_p", "newcombe_paired", "not_comparable", "overhead_verdict", "paired_verdict", "rate_verdict",
    "status_of", "value_verdict", "wilson", "z_of",
]

ALPHA = 0.05  # the significance level of every test in the book (two-sided)
POWER = 0.8  # the power a run must reach to be able to decide a claim (the usual design target)
#: A verdict's headline status (for counting); ``Verdict.label`` says direction and size in words.
STATUSES = ("supported", "direction supported", "contradicted", "undecided", "not informative", "not comparable")
EQUIVALENCE_MARGIN = 0.10  # "as claimed": the interval lies within 10 points (a fraction of 1) of the claim
MIN_EFFECT = 0.05  # the smallest change that counts in a claimed direction when the claim gives none (5 points)
_Z = 1.959963984540054  # the 97.5% normal quantile: 95% two-sided intervals


# -- classifiers -----------------------------------------------------------------------------------------------------

def f1_per_class(y_true: Sequence[int] | Tensor, y_pred: Sequence[int] | Tensor, num_classes: int) -> Tensor:
    """F1 of each class (num_classes,) float64: 2 TP / (2 TP + FP + FN), NaN for a class in neither input.

    The same as precision/recall's harmonic mean wherever that is defined, and 0 (not undefined) for a class
    that only one of the two inputs holds: sklearn's value for it (``zero_division=0``, its default's result).
    """
    check_int("num_classes", num_classes, 1)
    t, p = torch.as_tensor(y_true).long().flatten(), torch.as_tensor(y_pred).long().flatten()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {len(t)} and {len(p)}")
    for name, v in (("y_true", t), ("y_pred", p)):
        if len(v) and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got [{int(v.min())}, {int(v.max())}]")
    return _f1_of_confusions(_confusions(t, p, num_classes, torch.arange(len(t))[None]))[0]


def _confusions(y_true: Tensor, y_pred: Tensor, num_classes: int, rows: Tensor) -> Tensor:
    """(R, K, K) float64 confusion counts [true, predicted] of the image rows (R, n) (resamples, or one row)."""
    k = num_classes
    cells = (torch.arange(len(rows))[:, None] * k * k + y_true[rows] * k + y_pred[rows]).flatten()
    return torch.bincount(cells, minlength=len(rows) * k * k).view(len(rows), k, k).double()


def _f1_of_confusions(conf: Tensor) -> Tensor:
    """Per-class F1 (R, K) of confusion matrices (R, K, K): 2 TP / (2 TP + FP + FN), NaN for an absent class."""
    tp = conf.diagonal(dim1=1, dim2=2)
    denom = conf.sum(2) + conf.sum(1)  # 2 TP + FN + FP: the class's row (truth) plus its column (predictions)
    return torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.full_like(denom, float("nan")))


def macro_f1(y_true: Sequence[int] | Tensor, y_pred: Sequence[int] | Tensor, num_classes: int) -> float:
    """The unweighted mean of ``f1_per_class`` over the classes that occur in ``y_true`` or ``y_pred``.

    sklearn's ``f1_score(y_true, y_pred, average="macro")`` convention (no ``labels=``): a class absent from
    both inputs is left out of the mean, not counted as 0. NaN for empty inputs.
    """
    f1 = f1_per_class(y_true, y_pred, num_classes)
    present = ~f1.isnan()
    return f1[present].mean().item() if present.any() else float("nan")


def f1_interval(y_true: Sequence[int] | Tensor, y_pred: Sequence[int] | Tensor, num_classes: int,
                resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``macro_f1``, resampling images (with replacement; ``resamples`` draws
    from one seeded generator, all at once). (NaN, NaN) for no images."""
    t, p = torch.as_tensor(y_true).long().flatten(), torch.as_tensor(y_pred).long().flatten()
    if not len(t):
        return float("nan"), float("nan")
    f1_per_class(t, p, num_classes)  # the same checks of the inputs
    rows = torch.randint(0, len(t), (resamples, len(t)), generator=torch.Generator().manual_seed(seed))
    return _quantiles(_f1_of_confusions(_confusions(t, p, num_classes, rows)).nanmean(1), confidence)


# -- single rates ----------------------------------------------------------------------------------------------------

def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) for a proportion; (nan, nan) when n == 0."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The bounds at 0 and n are exactly 0 and 1 in theory; rounding would put 1.0 just outside [lo, hi].
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval across runs (seeds): (mean, low, high); no interval for one run."""
    vals = [float(v) for v in values]
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, float("nan"), float("nan")
    from scipy.stats import t  # heavy and only needed with several seeds

    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    half = t.ppf(0.5 + confidence / 2, len(vals) - 1) * sd / math.sqrt(len(vals))
    return mean, mean - half, mean + half


def _binom_pmf(n: int, p: float) -> Tensor:
    """P(X = k) for k = 0..n, X ~ Binomial(n, p), float64 (log-space, so large n does not underflow)."""
    k = torch.arange(n + 1, dtype=torch.float64)
    if p <= 0 or p >= 1:
        return (k == (0 if p <= 0 else n)).double()
    logc = torch.lgamma(torch.tensor(n + 1.0, dtype=torch.float64)) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
    return torch.exp(logc + k * math.log(p) + (n - k) * math.log1p(-p))


def _two_sided_region(n: int, p0: float, alpha: float) -> Tensor:
    """(n + 1,) bool: the outcomes k the exact two-sided binomial test of p = p0 rejects at ``alpha``.

    The two-sided p-value is the total probability of outcomes no more likely than the observed one (the
    "minimum likelihood" rule, as R's binom.test and SciPy's binomtest); for p0 = 0.5 it is 2 x the smaller tail.
    """
    pmf = _binom_pmf(n, p0)
    # p(k) = sum of pmf[j] over j with pmf[j] <= pmf[k] (1e-7 relative slack for rounding, as R does)
    order = pmf.sort().values
    cum = order.cumsum(0)
    idx = torch.searchsorted(order, pmf * (1 + 1e-7), right=True) - 1
    return cum[idx].clamp(max=1.0) <= alpha


def binomial_p(k: int, n: int, p0: float) -> float:
    """Exact two-sided binomial test of "the rate is p0" after k successes in n trials (1.0 for n = 0)."""
    if n == 0:
        return 1.0
    pmf = _binom_pmf(n, p0)
    return min(1.0, float(pmf[pmf <= pmf[k] * (1 + 1e-7)].sum()))


def binomial_power(n: int, p0: float, p1: float, alpha: float = ALPHA) -> float:
    """Power of the exact two-sided binomial test of p = p0 at ``alpha`` when the true rate is p1, n trials."""
    if n == 0:
        return 0.0
    return float(_binom_pmf(n, p1)[_two_sided_region(n, p0, alpha)].sum())


# -- paired rates ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Paired:
    """Two 0/1 outcomes on the same n images: the discordant counts and what follows from them."""

    n: int  # images (pairs)
    b: int  # images where the first outcome is 1 and the second 0
    c: int  # images where the first outcome is 0 and the second 1
    rate_a: float  # rate of the first outcome
    rate_b: float  # rate of the second outcome
    difference: float  # rate_b - rate_a = (c - b) / n
    lo: float  # 95% interval of the difference (Newcombe's square-and-add, method 10)
    hi: float
    p: float  # exact two-sided McNemar p-value: binomial test of b against b + c trials at 1/2


def newcombe_paired(both: int, b: int, c: int, neither: int, z: float = _Z) -> tuple[float, float]:
    """Newcombe's (1998, method 10) score interval for rate_b - rate_a of paired 0/1 outcomes.

    ``both``: images with 1 in both, ``b``: 1 then 0, ``c``: 0 then 1, ``neither``: 0 in both; ``z``: the normal
    quantile of the interval (1.96: 95%; ``z_of(alpha, family)`` for a family-wise level). The Wilson
    intervals of the two marginal rates are combined ("square and add") with the phi correlation of the
    2x2 table, continuity-corrected as Newcombe does (0 when a margin is empty); Fagerland, Lydersen & Laake
    (2014) recommend it for paired proportions.
    """
    if both + b + c + neither == 0:
        return float("nan"), float("nan")
    lo, hi = _newcombe_t(*(torch.tensor([float(v)], dtype=torch.float64) for v in (both, b, c, neither)), z)
    return lo.item(), hi.item()


def _wilson_t(k: Tensor, n: Tensor, z: Tensor | float) -> tuple[Tensor, Tensor]:
    """``wilson`` on float64 tensors (any shape, n > 0): the bounds at k = 0 and k = n are exactly 0 and 1."""
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)).sqrt() / denom
    lo = torch.where(k == 0, torch.zeros_like(p), (centre - half).clamp(min=0.0))
    hi = torch.where(k == n, torch.ones_like(p), (centre + half).clamp(max=1.0))
    return lo, hi


def _newcombe_t(both: Tensor, b: Tensor, c: Tensor, neither: Tensor, z: Tensor | float) -> tuple[Tensor, Tensor]:
    """``newcombe_paired`` on float64 count tensors of one shape (batched tables; n > 0): (lo, hi)."""
    n = both + b + c + neither
    x1, x2 = both + b, both + c  # images with 1 first, second
    l1, u1 = _wilson_t(x1, n, z)
    l2, u2 = _wilson_t(x2, n, z)
    p1, p2 = x1 / n, x2 / n
    margins = x1 * (c + neither) * x2 * (b + neither)
    # phi with Newcombe's continuity correction: positive correlation shrunk by n / 2 (not below 0)
    cross = both * neither - b * c
    cross = torch.where(cross > n / 2, cross - n / 2, cross.clamp(max=0.0))
    phi = torch.where(margins > 0, cross / margins.clamp(min=1e-300).sqrt(), torch.zeros_like(n))
    d = p2 - p1
    lo = d - ((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2).clamp(min=0.0).sqrt()
    hi = d + ((u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2).clamp(min=0.0).sqrt()
    return lo.clamp(min=-1.0), hi.clamp(max=1.0)


def z_of(alpha: float = ALPHA, family: int = 1) -> float:
    """The normal quantile of a two-sided interval at family-wise level ``alpha`` over ``family`` claims
    (Bonferroni: confidence 1 - alpha / family; 1.96 for 0.05 and one claim)."""
    check_int("family", family, 1)
    return float(torch.special.ndtri(torch.tensor(1 - alpha / (2 * family), dtype=torch.float64)))


def newcombe_p(both: int, b: int, c: int, neither: int) -> float:
    """The two-sided p-value dual to ``newcombe_paired``: the smallest alpha whose interval excludes 0.

    Found by bisection on z (the interval widens with z), p = 2 (1 - Phi(z*)); so the interval at level alpha
    excludes no change exactly when p < alpha (up to the 1e-12 precision of the bisection). 1.0 for no change
    (or no images). The paired verdicts show this p, not McNemar's exact one, so interval and test never
    disagree.
    """
    t = [torch.tensor([float(v)], dtype=torch.float64) for v in (both, b, c, neither)]
    return _newcombe_p_t(*t).item() if both + b + c + neither else 1.0


def _newcombe_p_t(both: Tensor, b: Tensor, c: Tensor, neither: Tensor, steps: int = 60) -> Tensor:
    """``newcombe_p`` of batched tables (float64 count tensors of one shape, n > 0)."""
    up = (c > b)  # the sign of the change: which bound must cross 0
    lo_z, hi_z = torch.zeros_like(both), torch.full_like(both, 40.0)  # at z = 40: p ~ 1e-349, below float64
    for _ in range(steps):
        mid = (lo_z + hi_z) / 2
        lo, hi = _newcombe_t(both, b, c, neither, mid)
        excludes = torch.where(up, lo > 0, hi < 0)
        lo_z, hi_z = torch.where(excludes, mid, lo_z), torch.where(excludes, hi_z, mid)
    return torch.where(b == c, torch.ones_like(both), 2 * torch.special.ndtr(-lo_z))


def mcnemar(a: Sequence[int] | Tensor, b: Sequence[int] | Tensor) -> Paired:
    """Exact McNemar test of two 0/1 outcome sequences over the same images (e.g. two models' verified successes).

    Only the discordant images carry information: under "same rate", each of the b + c discordant images is
    equally likely to fall either way, so b ~ Binomial(b + c, 1/2) and the two-sided p is 2 x its smaller
    tail (capped at 1). The interval of rate_b - rate_a is ``newcombe_paired``.
    """
    x = torch.as_tensor(a, dtype=torch.long).flatten()
    y = torch.as_tensor(b, dtype=torch.long).flatten()
    if x.shape != y.shape:
        raise ValueError(f"paired outcomes need the same images: {len(x)} vs {len(y)} outcomes")
    if ((x != 0) & (x != 1)).any() or ((y != 0) & (y != 1)).any():
        raise ValueError("outcomes must be 0 or 1")
    n = len(x)
    both, disc_b = int((x & y).sum()), int((x & (1 - y)).sum())
    disc_c, neither = int(((1 - x) & y).sum()), int(((1 - x) & (1 - y)).sum())
    lo, hi = newcombe_paired(both, disc_b, disc_c, neither)
    nan = float("nan")
    return Paired(n, disc_b, disc_c, (both + disc_b) / n if n else nan, (both + disc_c) / n if n else nan,
                  (disc_c - disc_b) / n if n else nan, lo, hi, binomial_p(disc_b, disc_b + disc_c, 0.5))


def mcnemar_power(n: int, rate_a: float, rate_b: float, alpha: float = ALPHA, nested: bool = True) -> float:
    """Power of the exact McNemar test at ``alpha`` on n images when the true rates are rate_a and rate_b.

    The power depends on how the outcomes overlap, which a claim does not say. ``nested=True`` (the book's
    default) assumes the images with outcome 1 under the lower rate are a subset of those under the higher
    one (a defence only ever removes successes): the discordant pairs are then all one way, |rate_b - rate_a|
    of the images, the most favourable case, so the power is an UPPER bound and the n of ``n_for_power`` a
    LOWER bound. ``nested=False`` assumes the outcomes independent given the rates (many discordant pairs
    both ways: a conservative case).
    """
    if n <= 0:
        return 0.0
    hi_, lo_ = max(rate_a, rate_b), min(rate_a, rate_b)
    if nested:
        p10, p01 = hi_ - lo_, 0.0
    else:
        p10, p01 = hi_ * (1 - lo_), lo_ * (1 - hi_)
    disc = p10 + p01
    if disc <= 0:
        return 0.0
    q = p10 / disc
    pm = _binom_pmf(n, disc)  # P(m discordant images)
    if q == 1.0:  # all discordant pairs one way: rejected exactly when 2 / 2^m <= alpha
        m_min = math.ceil(math.log2(2 / alpha))
        return float(pm[m_min:].sum())
    power = torch.zeros(n + 1, dtype=torch.float64)
    for m in range(1, n + 1):  # one exact conditional power per discordant count: O(n^2) float64 work, fine for n <= 10^4
        region = _two_sided_region(m, 0.5, alpha)
        power[m] = _binom_pmf(m, q)[region].sum()
    return float((pm * power).sum())


def n_for_power(power_of_n: Any, target: float = POWER, limit: int = 100_000) -> int | None:
    """The smallest n with ``power_of_n(n) >= target`` (a doubling search, then bisection); None past ``limit``.

    Exact tests' power is not monotone in n (it saw-tooths); the n returned is the first one found by
    bisection between the last failing and first passing power of two, which may differ from the very
    first n reaching the target by a few.
    """
    lo, hi = 0, 1
    while power_of_n(hi) < target:
        if hi >= limit:
            return None
        lo, hi = hi, min(2 * hi, limit)  # the last step tests the limit itself
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power_of_n(mid) >= target else (mid, hi)
    return hi


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (NaN entries stay NaN and are not counted)."""
    p = [float(v) for v in p_values]
    order = sorted((i for i, v in enumerate(p) if not math.isnan(v)), key=lambda i: p[i])
    m, out, running = len(order), [float("nan")] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))  # monotone: never below an earlier adjusted value
        out[i] = running
    return out


# -- values clustered by image ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """``statistic(a) - statistic(b)`` with an image-level bootstrap interval and permutation p-value."""

    statistic: str  # "mean" or "median"
    design: str  # "paired" (both groups measured on the same images) or "independent" (different images)
    n_a: int  # values in a (pixels)
    n_b: int  # values in b
    clusters: int  # images the test resampled (paired: images with values in both groups)
    a: float  # statistic of a (paired: of the per-image means of a)
    b: float  # statistic of b (paired: of the per-image means of b)
    difference: float  # independent: a - b; paired: the statistic of the per-image differences
    ci_lo: float  # percentile bootstrap interval of the difference (``confidence``), images resampled
    ci_hi: float
    p_value: float  # two-sided permutation p-value, (1 + extreme) / (1 + permutations)
    confidence: float
    permutations: int
    resamples: int

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def _check_sample(name: str, x: Any) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 1-D tensor of values, got {shape}")
    if x.numel() and not torch.isfinite(x.double()).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return x.detach().cpu().double()


def _wstat(values: Tensor, weights: Tensor, statistic: str) -> Tensor:
    """Weighted mean or median of ``values`` (m,), sorted ascending, under each row of ``weights`` (R, m).

    The weights are how often a value was drawn; the median is the midpoint of the lower and upper weighted
    medians (the usual median for unit weights).
    """
    if statistic == "mean":
        return weights @ values / weights.sum(1)
    cw = weights.cumsum(1)
    half = cw[:, -1:] / 2
    last = len(values) - 1
    lo = torch.searchsorted(cw, half, right=False).clamp(max=last)
    hi = torch.searchsorted(cw, half, right=True).clamp(max=last)
    return (values[lo] + values[hi])[:, 0] / 2


def _tail(extreme: int, permutations: int) -> float:
    """Permutation p-value: the observed labelling counts as one of the permutations."""
    return (1 + extreme) / (1 + permutations)


def cluster_compare(a: Tensor, b: Tensor, clusters_a: Tensor | None = None, clusters_b: Tensor | None = None,
                    statistic: str = "mean", permutations: int = 10_000, resamples: int = 2_000,
                    confidence: float = 0.95, seed: int = 0) -> Comparison:
    """Compare two samples of values that come in clusters (pixels of images), resampling whole clusters.

    ``clusters_a`` / ``clusters_b``: (n_a,) / (n_b,) integer ids (the image of each value); None gives every
    value its own cluster (independent values). Ten random pixels of one image are not ten independent
    draws: resampling pixels would understate the uncertainty, so both tests here resample images.

    * independent design (no image holds values of both groups, e.g. successful vs failed attacks): the
      statistic of a minus that of b over the pooled values; the permutation test reassigns whole images
      between the groups (as many images to each as observed), the bootstrap resamples images within each group.
    * paired design (the groups share images, e.g. the successful pixel of an image vs random pixels of the
      same image): only images with values in both groups are used; per image d = mean(a) - mean(b), and the
      statistic of d is tested by random sign flips per image (its null: within an image the two groups do
      not differ), with a bootstrap over images. A design where the groups share some but not all images
      is treated as paired on the shared ones.

    p-value: share of the ``permutations`` (plus the observed one) whose |difference| reaches the observed one.
    Interval: ``confidence`` percentile interval over ``resamples`` bootstrap draws. One seeded
    ``torch.Generator``, batched draws in chunks (no Python loop per draw). An empty side gives NaN.
    """
    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic must be 'mean' or 'median', not {statistic!r}")
    check_int("permutations", permutations, 1)
    check_int("resamples", resamples, 1)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    a, b = _check_sample("a", a), _check_sample("b", b)
    na, nb = len(a), len(b)
    # Values without ids are images of their own; negative ids never meet the real ids of the other side.
    ca = -1 - torch.arange(na) if clusters_a is None else torch.as_tensor(clusters_a).long().flatten()
    cb = -1 - na - torch.arange(nb) if clusters_b is None else torch.as_tensor(clusters_b).long().flatten()
    if len(ca) != na or len(cb) != nb:
        raise ValueError(f"cluster ids must match the values: {len(ca)} ids for {na} values, {len(cb)} for {nb}")
    shared = ca.unique()[torch.isin(ca.unique(), cb)]  # sorted image ids holding values of both groups
    g = torch.Generator().manual_seed(seed)
    args = (statistic, permutations, resamples, confidence, g)
    if len(shared):
        return _paired(a, b, ca, cb, shared, *args)
    return _independent(a, b, ca, cb, *args)


def _quantiles(boot: Tensor, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    lo, hi = torch.quantile(boot, torch.tensor([tail, 1 - tail], dtype=boot.dtype)).tolist()
    return lo, hi


def _independent(a: Tensor, b: Tensor, ca: Tensor, cb: Tensor, statistic: str, permutations: int, resamples: int,
                 confidence: float, g: torch.Generator) -> Comparison:
    na, nb, nan = len(a), len(b), float("nan")
    ua, ia = ca.unique(return_inverse=True)
    ub, ib = cb.unique(return_inverse=True)
    ka, kb = len(ua), len(ub)
    if na == 0 or nb == 0:
        ones = lambda x: torch.ones(1, len(x), dtype=torch.float64)  # noqa: E731
        sa = _wstat(a.sort().values, ones(a), statistic).item() if na else nan
        sb = _wstat(b.sort().values, ones(b), statistic).item() if nb else nan
        return Comparison(statistic, "independent", na, nb, ka + kb, sa, sb, nan, nan, nan, nan, confidence,
                          permutations, resamples)
    values = torch.cat([a, b])
    cl = torch.cat([ia, ka + ib])  # cluster of every value: a's images first, then b's
    order = values.argsort()
    values, cl = values[order], cl[order]
    k = ka + kb

    def diff(wa: Tensor, wb: Tensor) -> Tensor:  # cluster weights (R, k) of each group -> differences (R,)
        return _wstat(values, wa[:, cl], statistic) - _wstat(values, wb[:, cl], statistic)  # a value weighs as its image

    observed_a = torch.cat([torch.ones(ka), torch.zeros(kb)]).double()[None]
    sa = _wstat(values, observed_a[:, cl], statistic).item()
    sb = _wstat(values, (1 - observed_a)[:, cl], statistic).item()
    observed = sa - sb
    chunk = max(1, 4_000_000 // max(len(values), k))
    extreme = 0
    for start in range(0, permutations, chunk):
        c = min(chunk, permutations - start)
        wa = (torch.rand(c, k, generator=g).argsort(1) < ka).double()  # ka random images to a, the rest to b
        extreme += int((diff(wa, 1 - wa).abs() >= abs(observed) - 1e-12).sum())
    boot = []
    for start in range(0, resamples, chunk):
        c = min(chunk, resamples - start)
        wa = torch.zeros(c, k, dtype=torch.float64)
        wa.scatter_add_(1, torch.randint(ka, (c, ka), generator=g), torch.ones(c, ka, dtype=torch.float64))
        wb = torch.zeros(c, k, dtype=torch.float64)
        wb.scatter_add_(1, ka + torch.randint(kb, (c, kb), generator=g), torch.ones(c, kb, dtype=torch.float64))
        boot.append(diff(wa, wb))
    lo, hi = _quantiles(torch.cat(boot), confidence)
    return Comparison(statistic, "independent", na, nb, k, sa, sb, observed, lo, hi,
                      _tail(extreme, permutations), confidence, permutations, resamples)


def _paired(a: Tensor, b: Tensor, ca: Tensor, cb: Tensor, shared: Tensor, statistic: str, permutations: int,
            resamples: int, confidence: float, g: torch.Generator) -> Comparison:
    k = len(shared)
    keep_a, keep_b = torch.isin(ca, shared), torch.isin(cb, shared)

    def means(x: Tensor, c: Tensor) -> Tensor:  # per shared image, the mean of its values (images in `shared` order)
        idx = torch.searchsorted(shared, c)
        s = torch.zeros(k, dtype=torch.float64).index_add_(0, idx, x)
        return s / torch.zeros(k, dtype=torch.float64).index_add_(0, idx, torch.ones_like(x))

    ma, mb = means(a[keep_a], ca[keep_a]), means(b[keep_b], cb[keep_b])
    d = ma - mb
    ds = d.sort()

    def stat(x: Tensor) -> float:
        return _wstat(x.sort().values, torch.ones(1, len(x), dtype=torch.float64), statistic).item()

    observed = stat(d)
    chunk = max(1, 4_000_000 // k)
    extreme = 0
    for start in range(0, permutations, chunk):
        c = min(chunk, permutations - start)
        signs = torch.randint(2, (c, k), generator=g).double() * 2 - 1
        flipped = (signs * d).sort(1).values
        s = flipped.mean(1) if statistic == "mean" else torch.quantile(flipped, 0.5, dim=1)
        extreme += int((s.abs() >= abs(observed) - 1e-12).sum())
    boot = []
    for start in range(0, resamples, chunk):
        c = min(chunk, resamples - start)
        w = torch.zeros(c, k, dtype=torch.float64)
        w.scatter_add_(1, torch.randint(k, (c, k), generator=g), torch.ones(c, k, dtype=torch.float64))
        boot.append(_wstat(ds.values, w[:, ds.indices], statistic))
    lo, hi = _quantiles(torch.cat(boot), confidence)
    return Comparison(statistic, "paired", int(keep_a.sum()), int(keep_b.sum()), k, stat(ma), stat(mb), observed,
                      lo, hi, _tail(extreme, permutations), confidence, permutations, resamples)


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
