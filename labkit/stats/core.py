"""The book's statistics: intervals, exact and paired tests, power, image-level resampling, classifier scores.

* Single rates: ``wilson`` (score interval), ``binomial_p`` / ``binomial_power`` (exact test against a value);
  across seeds: ``mean_ci``.
* Paired rates (every model of a lab is attacked on the same images): ``mcnemar`` (exact test on the discordant
  pairs), ``newcombe_paired`` (Newcombe's square-and-add interval of the difference) and ``newcombe_p`` (its
  dual p-value), ``mcnemar_power``, ``n_for_power``.
* Many comparisons in one table: ``holm``; ``z_of(alpha, family)`` for Bonferroni intervals.
* Values clustered by image (Lab 08: several pixels per image are not independent draws): ``cluster_compare``,
  a permutation test and a bootstrap that resample whole images.
* Classifiers: ``f1_per_class`` and ``macro_f1`` (the survey's metric after each attack), sklearn's conventions.

Imports no other labkit module but ``_checks``. Exact binomial sums are computed in float64 from ``math.lgamma``
(no SciPy needed); only ``mean_ci`` uses SciPy's t quantile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from labkit._checks import check_int

__all__ = ["ALPHA", "POWER", "Comparison", "Paired", "binomial_p", "binomial_power", "cluster_compare",
    "f1_interval", "f1_per_class", "holm", "macro_f1", "mcnemar", "mcnemar_power", "mean_ci", "n_for_power",
    "newcombe_p", "newcombe_paired", "wilson", "z_of"]

ALPHA = 0.05  # the significance level of every test in the book (two-sided)
POWER = 0.8  # the power a run must reach to be able to decide a claim (the usual design target)
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


