"""The book's statistics, in one place: intervals, paired tests, power, image-level resampling, verdicts.

* Single rates: ``wilson`` (score interval), ``binomial_p`` / ``binomial_power`` (exact test against a value);
  across seeds: ``mean_ci``.
* Paired rates (every model of a lab is attacked on the same images): ``mcnemar`` (exact test on the discordant
  pairs, Newcombe's square-and-add interval for the difference), ``mcnemar_power``, ``n_for_power``.
* Many comparisons in one table: ``holm``.
* Values clustered by image (Lab 08: several pixels per image are not independent draws): ``cluster_compare``,
  a permutation test and a bootstrap that resample whole images.
* Classifiers: ``f1_per_class`` and ``macro_f1`` (the survey's metric after each attack), sklearn's conventions.
* ``Verdict``: supported / contradicted / undecided, produced from numbers by ``paired_verdict``,
  ``rate_verdict``, ``overhead_verdict`` and ``direction_verdict``; never typed by hand.

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
    "ALPHA", "POWER", "STATUSES", "Comparison", "Paired", "Verdict", "binomial_p", "binomial_power", "cluster_compare",
    "clustered_paired_verdict",
    "direction_verdict", "f1_interval", "f1_per_class", "holm", "macro_f1", "mcnemar", "mcnemar_power", "mean_ci",
    "n_for_power", "newcombe_paired",
    "overhead_verdict", "paired_verdict", "rate_verdict", "value_verdict", "wilson",
]

ALPHA = 0.05  # the significance level of every test in the book (two-sided)
POWER = 0.8  # the power a run must reach to be able to decide a claim (the usual design target)
STATUSES = ("supported", "contradicted", "undecided")
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

    ``both``: images with 1 in both, ``b``: 1 then 0, ``c``: 0 then 1, ``neither``: 0 in both. The Wilson
    intervals of the two marginal rates are combined ("square and add") with the phi correlation of the
    2x2 table, continuity-corrected as Newcombe does (0 when a margin is empty); Fagerland, Lydersen & Laake
    (2014) recommend it for paired proportions.
    """
    n = both + b + c + neither
    if n == 0:
        return float("nan"), float("nan")
    p1, p2 = (both + b) / n, (both + c) / n  # first and second rate
    l1, u1 = wilson(both + b, n, z)
    l2, u2 = wilson(both + c, n, z)
    margins = (both + b) * (c + neither) * (both + c) * (b + neither)
    # phi with Newcombe's continuity correction: positive correlation shrunk by n / 2 (not below 0)
    cross = both * neither - b * c
    cross = cross - n / 2 if cross > n / 2 else min(cross, 0)
    phi = cross / math.sqrt(margins) if margins > 0 else 0.0
    d = p2 - p1
    lo = d - math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    hi = d + math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    return max(-1.0, lo), min(1.0, hi)


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

@dataclass(frozen=True)
class Verdict:
    """What a run says about one claim: supported, contradicted or undecided, and why, from the numbers."""

    status: str  # one of STATUSES
    claim: str  # the claim in words, e.g. "APR lowers the one-pixel ASR from 70.97% to 21.43%"
    effect: float  # the measured effect, in ``unit``
    lo: float  # its 95% interval (NaN when the measurement has none)
    hi: float
    unit: str  # e.g. "points" (percentage points), "%"
    n: int | None  # images behind the measurement (None: not a sample, e.g. timings)
    p: float | None  # the p-value used (Holm-adjusted where the verdict is one of a table), None when no test
    power: float | None  # power to detect the claimed effect at this n (None when no test)
    why: str  # the reason, in words, with the numbers that decided it
    n_needed: int | None = None  # undecided: images that would give power POWER (None: not computable)
    interval: str = "95% CI"  # what (lo, hi) is, in words (timings: "range over repeats")

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")

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
        """One line: status, the claim, the effect with its interval, n, p and power, and why."""
        both = self.lo == self.lo and self.hi == self.hi
        interval = f" ({self.interval} {self.number(self.lo)} to {self.number(self.hi)})" if both else ""
        extra = [f"n = {self.n}" if self.n is not None else "",
                 f"p = {self.p:.3g}" if self.p is not None and self.p == self.p else "",
                 f"power {self.power:.2f}" if self.power is not None else ""]
        stats = ", ".join(e for e in extra if e)
        return (f"{self.status.upper()}: {self.claim}. Measured {self.number(self.effect, with_unit=True)}{interval}"
                f"{'; ' + stats if stats else ''}. {self.why}")


def _needed(n_needed: int | None, bound: str = "about") -> str:
    return (f"{bound} {n_needed} images would be needed for power {POWER:.0%}" if n_needed is not None
            else f"no n up to 100,000 would give power {POWER:.0%}")


def paired_verdict(claim: str, before: Sequence[int] | Tensor, after: Sequence[int] | Tensor,
                   claimed_change: float, alpha: float = ALPHA, p: float | None = None) -> Verdict:
    """Verdict on "the rate moves by ``claimed_change``" from paired 0/1 outcomes on the same images.

    ``before``/``after``: outcomes (e.g. verified worst-case successes) of the reference (the undefended model;
    full APR in the ablation) and of the compared model; ``claimed_change``: the claimed rate(after) -
    rate(before), as a fraction (a defence: negative, e.g. our baseline x (21.43 / 70.97 - 1); an ablation: the
    paper's rise). ``p``: a Holm-adjusted p-value to use instead of this test's own (a table of comparisons).

    * supported: significant (exact McNemar p < alpha) in the claimed direction AND the claimed change lies in
      the 95% interval of the measured change (Newcombe);
    * contradicted: the interval excludes the claimed change (the sentence says by how much);
    * undecided: neither; with the power of the test to detect the claimed change at this n (``mcnemar_power``,
      nested outcomes: the most favourable case, so an upper bound) and the n that would reach power 0.8.
    """
    pr = mcnemar(before, after)
    p_used = pr.p if p is None else p
    target = min(1.0, max(0.0, pr.rate_a + claimed_change))
    power = mcnemar_power(pr.n, pr.rate_a, target, alpha) if pr.n else 0.0
    pts = lambda v: 100 * v  # noqa: E731
    common = dict(claim=claim, effect=pts(pr.difference), lo=pts(pr.lo), hi=pts(pr.hi), unit="points", n=pr.n,
                  p=p_used, power=power)
    claimed = f"{pts(claimed_change):+.1f} points (from our {pts(pr.rate_a):.1f}%)"
    if pr.n == 0:
        return Verdict("undecided", **{**common, "power": 0.0}, why="No images were attacked.")
    if target == pr.rate_a:  # e.g. a relative fall from a reference rate of 0: the claim predicts nothing here
        return Verdict("undecided", **common, why=f"Applied to our reference rate of {pts(pr.rate_a):.1f}%, the "
                                                  "claim predicts no change: this run cannot test it.")
    if not pr.lo <= claimed_change <= pr.hi:
        off = pr.lo - claimed_change if claimed_change < pr.lo else claimed_change - pr.hi
        side = "smaller" if abs(claimed_change) > max(abs(pr.lo), abs(pr.hi)) or \
            (claimed_change < 0) == (pr.lo > claimed_change) else "larger"
        return Verdict("contradicted", **common,
                       why=f"The interval excludes the claimed change of {claimed}: the change is at least "
                           f"{pts(off):.1f} points {side} than claimed.")
    moved = pr.difference != 0 and (pr.difference > 0) == (claimed_change > 0)
    if p_used < alpha and moved:
        return Verdict("supported", **common,
                       why=f"A significant change in the claimed direction (p < {alpha:g}), and the interval "
                           f"contains the claimed {claimed}.")
    n_needed = n_for_power(lambda m: mcnemar_power(m, pr.rate_a, target, alpha))
    if pr.lo <= 0 <= pr.hi:
        reason = f"The interval contains the claimed {claimed} and also no change (p = {p_used:.3g})"
    else:
        reason = (f"The interval contains the claimed {claimed} and excludes no change, but p = {p_used:.3g} "
                  f"(exact, Holm-adjusted where several claims share the run) is not below {alpha:g}")
    return Verdict("undecided", **common, n_needed=n_needed,
                   why=f"{reason}: the run cannot tell. Power to detect the claim here at most {power:.2f} "
                       f"(nested outcomes, the most favourable case); {_needed(n_needed, 'at least')}.")


def clustered_paired_verdict(claim: str, before: Sequence[int] | Tensor, after: Sequence[int] | Tensor,
                             images: Sequence[int] | Tensor, claimed_change: float, alpha: float = ALPHA,
                             p: float | None = None, seed: int = 0, comparison: Comparison | None = None) -> Verdict:
    """``paired_verdict`` for outcomes that repeat images: several seeds attacked the same test images.

    The image is the unit: five seeds' outcomes on one image are not five independent pairs (an easy image is
    easy for every seed), so pooling them in McNemar's test would overstate n and understate p. Per image, the
    change is mean(after) - mean(before) over the seeds that attacked it (``images[i]`` is the test-set index of
    ``before[i]`` and ``after[i]``); ``cluster_compare``'s paired design tests it by sign flips per image, with a
    bootstrap interval over images. Same rules as ``paired_verdict`` (supported / contradicted / undecided); the
    power of this design is not computed (the sentence says so), n is the number of images. ``comparison``: that
    test, already run (``cluster_compare(after, before, images, images)``, e.g. for a Holm table), not run again.
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
    comp = comparison if comparison is not None else cluster_compare(a, b, ids, ids, statistic="mean", seed=seed)
    rate_a = b.mean().item()
    target = min(1.0, max(0.0, rate_a + claimed_change))
    p_used = comp.p_value if p is None else p
    common = dict(claim=claim, effect=pts(comp.difference), lo=pts(comp.ci_lo), hi=pts(comp.ci_hi), unit="points",
                  n=comp.clusters, p=p_used, power=None)
    claimed = f"{pts(claimed_change):+.1f} points (from our {pts(rate_a):.1f}%)"
    design = (f"{len(ids)} outcomes on {comp.clusters} images, seeds averaged per image (sign-flip test and "
              "bootstrap over images; power not computed for this design)")
    if target == rate_a:
        return Verdict("undecided", **common, why=f"Applied to our reference rate of {pts(rate_a):.1f}%, the claim "
                                                  f"predicts no change: this run cannot test it. {design}.")
    if not comp.ci_lo <= claimed_change <= comp.ci_hi:
        return Verdict("contradicted", **common, why=f"The interval excludes the claimed change of {claimed}. "
                                                     f"{design}.")
    moved = comp.difference != 0 and (comp.difference > 0) == (claimed_change > 0)
    if p_used < alpha and moved:
        return Verdict("supported", **common, why=f"A significant change in the claimed direction (p < {alpha:g}), "
                                                  f"and the interval contains the claimed {claimed}. {design}.")
    return Verdict("undecided", **common, why=f"The interval contains the claimed {claimed}, and p = {p_used:.3g} is "
                                              f"not below {alpha:g}: the run cannot tell. {design}.")


def rate_verdict(claim: str, successes: int, n: int, claimed_rate: float, tolerance: float = 0.10,
                 alpha: float = ALPHA) -> Verdict:
    """Verdict on "the rate is ``claimed_rate``" (e.g. a paper's ASR) from k successes in n images.

    * contradicted: the exact two-sided binomial test rejects the claimed rate at ``alpha`` (the Wilson 95%
      interval, shown, almost always excludes it too; near the boundary the exact test decides);
    * supported: it contains the claimed rate and lies within +-``tolerance`` of it (the run pins the rate
      down to the precision the comparison needs; default 10 points);
    * undecided: it contains the claimed rate but is wider than that, with the power of the exact binomial
      test to detect a rate ``tolerance`` away from the claim (the weaker side) and the n that would reach 0.8.
    """
    lo, hi = wilson(successes, n)
    rate = successes / n if n else float("nan")
    p = binomial_p(successes, n, claimed_rate)

    def power_at(m: int) -> float:
        sides = [r for r in (claimed_rate - tolerance, claimed_rate + tolerance) if 0 <= r <= 1]
        return min(binomial_power(m, claimed_rate, r, alpha) for r in sides)

    power = power_at(n)
    common = dict(claim=claim, effect=100 * rate, lo=100 * lo, hi=100 * hi, unit="%", n=n, p=p, power=power)
    if n == 0:
        return Verdict("undecided", **common, why="No images were attacked.")
    if p < alpha:  # the exact test decides; the Wilson interval is shown (they can differ at the boundary)
        off = max(lo - claimed_rate, claimed_rate - hi, 0.0)
        return Verdict("contradicted", **common,
                       why=f"The exact binomial test rejects the claimed {100 * claimed_rate:.2f}% (p = {p:.3g}); "
                           f"the 95% interval lies {100 * off:.1f} points from it.")
    if claimed_rate - tolerance <= lo and hi <= claimed_rate + tolerance:
        return Verdict("supported", **common,
                       why=f"The interval contains the claimed {100 * claimed_rate:.2f}% and lies within "
                           f"{100 * tolerance:.0f} points of it.")
    n_needed = n_for_power(power_at)
    return Verdict("undecided", **common, n_needed=n_needed,
                   why=f"The interval contains the claimed {100 * claimed_rate:.2f}% but reaches more than "
                       f"{100 * tolerance:.0f} points from it: power {power:.2f} to detect a rate "
                       f"{100 * tolerance:.0f} points off; {_needed(n_needed)}.")


def overhead_verdict(claim: str, measured: float, claimed: float | None, spread: tuple[float, float] | None = None,
                     tolerance: float = 5.0) -> Verdict:
    """Verdict on a claimed percentage overhead from a measured one (timings: no sampling model, no p-value).

    ``measured``: the median increase in percent; ``spread``: the range of the per-repeat increases (None when
    only the median is known); ``claimed``: the paper's percentage (None: the paper has no number for this
    setting). Compatible means the claim lies within the spread widened by ``tolerance`` points (timing noise
    the repeats do not show, default 5): supported if compatible, contradicted otherwise (with the factor);
    undecided when there is no claim to compare with.
    """
    lo, hi = spread if spread is not None else (float("nan"), float("nan"))
    common = dict(claim=claim, effect=measured, lo=lo, hi=hi, unit="% increase", n=None, p=None, power=None,
                  interval="range over repeats")
    if claimed is None:
        return Verdict("undecided", **common, why="The paper reports no number for this setting.")
    low, high = (measured, measured) if spread is None else spread
    if low - tolerance <= claimed <= high + tolerance:
        return Verdict("supported", **common,
                       why=f"The claimed {claimed:+g}% lies within the measured "
                           f"{'range over repeats' if spread else 'median'} widened by {tolerance:g} points "
                           "(medians of timings on this machine; no sampling model).")
    factor = f"{measured / claimed:.1f}x the claimed {claimed:+g}%" if claimed else f"vs the claimed {claimed:+g}%"
    return Verdict("contradicted", **common,
                   why=f"Ours is {factor}, outside the measured {'range over repeats' if spread else 'median'} "
                       f"widened by {tolerance:g} points (medians of timings on this machine; no sampling model).")


def direction_verdict(claim: str, comparison: Comparison, sign: int = -1, min_effect: float = 0.05,
                      alpha: float = ALPHA, p: float | None = None) -> Verdict:
    """Verdict on a directional claim ("a is lower than b", ``sign=-1``) from an image-level ``Comparison``.

    ``min_effect``: the smallest difference that would count (the claim gives no magnitude; Lab 08 uses 0.05,
    five percentile points). ``p``: a Holm-adjusted p-value to use instead of the comparison's own.

    * supported: p < alpha, the difference has the claimed sign, and the interval reaches ``min_effect``;
    * contradicted: the interval excludes every effect of ``min_effect`` or more in the claimed direction;
    * undecided: neither; power from the normal approximation with the bootstrap standard error
      (interval width / 3.92), and the images needed (the standard error shrinks as 1 / sqrt(images)).
    """
    if sign not in (-1, 1):
        raise ValueError("sign must be -1 (a lower than b) or +1 (a higher than b)")
    d, lo, hi = comparison.difference, comparison.ci_lo, comparison.ci_hi
    p_used = comparison.p_value if p is None else p
    se = (hi - lo) / (2 * _Z) if hi == hi and lo == lo else float("nan")
    normal = torch.distributions.Normal(0.0, 1.0)
    power = float(normal.cdf(torch.tensor(min_effect / se - _Z))) if se > 0 else (0.0 if se != se else 1.0)
    common = dict(claim=claim, effect=d, lo=lo, hi=hi, unit="", n=comparison.clusters, p=p_used, power=power)
    if d != d:
        return Verdict("undecided", **{**common, "power": 0.0}, why="A group is empty: nothing to compare.")
    reach = lo <= -min_effect if sign < 0 else hi >= min_effect
    if p_used < alpha and (d < 0 if sign < 0 else d > 0) and reach:
        return Verdict("supported", **common,
                       why=f"A significant difference in the claimed direction (p < {alpha:g}) whose interval "
                           f"reaches {sign * min_effect:+g}.")
    if not reach:
        return Verdict("contradicted", **common,
                       why=f"The interval excludes every difference of {sign * min_effect:+g} or more in the claimed "
                           f"direction" + (" (it lies on the opposite side)" if (lo > 0 if sign < 0 else hi < 0)
                                           else "") + ".")
    z80 = 0.8416212335729143
    n_needed = math.ceil(comparison.clusters * ((_Z + z80) * se / min_effect) ** 2) if se > 0 else None
    return Verdict("undecided", **common, n_needed=n_needed,
                   why=f"The interval reaches {sign * min_effect:+g} and "
                       + ("no difference" if lo <= 0 <= hi else "excludes no difference, but the test does not reject")
                       + f" (p = {p_used:.3g}); "
                       f"power about {power:.2f} to detect {sign * min_effect:+g}; {_needed(n_needed)} "
                       "(normal approximation).")


# -- a value with an interval (macro-F1, the survey's metric) ---------------------------------------------------

def value_verdict(claim: str, estimate: float, lo: float, hi: float, claimed: float, n: int, tolerance: float = 0.10,
                  resolution: float = 0.02, unit: str = "F1") -> Verdict:
    """Verdict on "the value is ``claimed``" from an estimate with a 95% interval (e.g. ``f1_interval``); no
    sampling model beyond the interval, so no p-value or power.

    * contradicted: the interval lies more than ``resolution`` from the claimed value. The margin is there because a
      bootstrap interval collapses at a boundary (every image fooled: F1 0 in every resample) while the quantity
      itself does not, and a paper's two decimals round by 0.005; 0.02 of F1 is below anything a table would mean;
    * supported: the interval lies within +-``tolerance`` of the claimed value (the run pins it down);
    * undecided: neither: it reaches further than ``tolerance`` from the claim without excluding it.
    """
    common = dict(claim=claim, effect=estimate, lo=lo, hi=hi, unit=unit, n=n, p=None, power=None)
    if not (lo == lo and hi == hi):
        return Verdict("undecided", **common, why="No interval: nothing was measured.")
    off = max(lo - claimed, claimed - hi, 0.0)
    if off > resolution:
        return Verdict("contradicted", **common, why=f"The 95% interval lies {off:.3f} from the claimed {claimed:g} "
                                                     f"(more than the {resolution:g} resolution of the comparison).")
    if claimed - tolerance <= lo and hi <= claimed + tolerance:
        return Verdict("supported", **common, why=f"The interval lies within {tolerance:g} of the claimed {claimed:g}"
                                                  + (" (and within the comparison's resolution of it)." if off else "."))
    return Verdict("undecided", **common, why=f"The interval contains the claimed {claimed:g} but reaches more than "
                                              f"{tolerance:g} from it: more images would decide.")
