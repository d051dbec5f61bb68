"""Tests of labkit.stats: textbook values, closed forms, seeded simulations, and verdicts in every direction."""

from __future__ import annotations

import math

import pytest
import torch

from labkit import stats


# -- classifiers -----------------------------------------------------------------------------------------------------

def test_f1_and_macro_f1_by_hand() -> None:
    # class 0: TP 1, FP 1 (the last image), FN 1 (the second) -> 2/4; class 1: TP 2, FP 1, FN 0 -> 4/5;
    # class 2: TP 1, FP 0, FN 1 -> 2/3; class 3 occurs nowhere: NaN, and left out of the macro mean.
    y_true, y_pred = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]
    f1 = stats.f1_per_class(y_true, y_pred, 4)
    assert f1[:3].tolist() == pytest.approx([0.5, 0.8, 2 / 3]) and f1[3].isnan()
    assert stats.macro_f1(y_true, y_pred, 4) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # A class only predicted (or only true) counts, with F1 0: sklearn gives (2/3 + 0) / 2 here too.
    assert stats.macro_f1([0, 0], [0, 1], 3) == pytest.approx(1 / 3)
    assert stats.macro_f1(torch.tensor([3, 1]), torch.tensor([3, 1]), 5) == 1.0
    assert math.isnan(stats.macro_f1([], [], 3))


def _sklearn_macro_f1(y_true: list[int], y_pred: list[int]) -> float:
    """sklearn's f1_score(average="macro") written out: precision and recall per label of either input."""
    scores = []
    for c in sorted(set(y_true) | set(y_pred)):
        tp = sum(t == p == c for t, p in zip(y_true, y_pred))
        predicted, actual = y_pred.count(c), y_true.count(c)
        prec = tp / predicted if predicted else 0.0
        rec = tp / actual if actual else 0.0
        scores.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return sum(scores) / len(scores)


def test_macro_f1_matches_the_precision_recall_definition() -> None:
    g = torch.Generator().manual_seed(0)
    for n, k in ((5, 10), (50, 10), (200, 43)):
        t = torch.randint(0, k, (n,), generator=g)
        p = torch.where(torch.rand(n, generator=g) < 0.6, t, torch.randint(0, k, (n,), generator=g))
        assert stats.macro_f1(t, p, k) == pytest.approx(_sklearn_macro_f1(t.tolist(), p.tolist()), abs=1e-12)
    try:  # sklearn is not a dependency; where it is installed, it must agree
        from sklearn.metrics import f1_score
    except ImportError:
        return
    assert stats.macro_f1(t, p, k) == pytest.approx(f1_score(t.numpy(), p.numpy(), average="macro"), abs=1e-12)


@pytest.mark.parametrize("y_true, y_pred, k", [([0, 1], [0], 2), ([0, 2], [0, 1], 2), ([0, -1], [0, 0], 2),
                                               ([0], [0], 0)])
def test_f1_rejects_bad_inputs(y_true, y_pred, k) -> None:
    with pytest.raises(ValueError):
        stats.f1_per_class(y_true, y_pred, k)


# -- single rates ----------------------------------------------------------------------------------------------------

def test_wilson_interval() -> None:
    lo, hi = stats.wilson(0, 10)
    assert lo == 0 and 0.25 < hi < 0.35
    lo, hi = stats.wilson(5, 10)
    assert lo < 0.5 < hi and hi - 0.5 == pytest.approx(0.5 - lo)
    assert stats.wilson(50, 100)[1] - stats.wilson(50, 100)[0] < hi - lo  # more data, narrower
    assert all(v != v for v in stats.wilson(0, 0))


def test_mean_ci_across_seeds() -> None:
    m, lo, hi = stats.mean_ci([0.2, 0.4])
    assert m == pytest.approx(0.3) and lo < 0.2 and hi > 0.4
    assert stats.mean_ci([0.5])[1] != stats.mean_ci([0.5])[1]  # NaN: one run has no interval


def test_binomial_test_against_textbook_values() -> None:
    # Two-sided exact tests (R: binom.test(3, 10), binom.test(2, 12)): 0.34375 and 0.03857.
    assert stats.binomial_p(3, 10, 0.5) == pytest.approx(0.34375)
    assert stats.binomial_p(2, 12, 0.5) == pytest.approx(79 / 2048)
    # Asymmetric null, minimum-likelihood two-sided rule: the outcomes no more likely than 7 of 20 at 0.2 are
    # k >= 7 and k = 0, so p = P(X >= 7) + P(X = 0) = 0.0982 (as scipy.stats.binomtest(7, 20, 0.2)).
    tail = sum(math.comb(20, k) * 0.2 ** k * 0.8 ** (20 - k) for k in [0, *range(7, 21)])
    assert stats.binomial_p(7, 20, 0.2) == pytest.approx(tail) == pytest.approx(0.0982, abs=1e-4)


def test_binomial_power_matches_a_direct_sum() -> None:
    n, p0, p1 = 30, 0.5, 0.8
    reject = [k for k in range(n + 1) if stats.binomial_p(k, n, p0) <= 0.05]
    direct = sum(math.comb(n, k) * p1 ** k * (1 - p1) ** (n - k) for k in reject)
    assert stats.binomial_power(n, p0, p1) == pytest.approx(direct)
    assert stats.binomial_power(n, p0, p0) <= 0.05  # the size of an exact test never exceeds alpha


# -- paired rates ----------------------------------------------------------------------------------------------------

def outcomes(both: int, b: int, c: int, neither: int) -> tuple[list[int], list[int]]:
    """Two paired 0/1 sequences with the given 2x2 table (b: 1 then 0, c: 0 then 1)."""
    return [1] * both + [1] * b + [0] * c + [0] * neither, [1] * both + [0] * b + [1] * c + [0] * neither


def test_mcnemar_against_the_textbook_value() -> None:
    pr = stats.mcnemar(*outcomes(5, 10, 2, 3))
    assert (pr.n, pr.b, pr.c) == (20, 10, 2)
    assert pr.p == pytest.approx(0.0386, abs=1e-4)  # exact: 2 * P(Bin(12, 1/2) <= 2) = 79 / 2048
    assert pr.difference == pytest.approx(-8 / 20) and pr.lo <= pr.difference <= pr.hi
    assert stats.mcnemar(*outcomes(5, 0, 0, 3)).p == 1.0  # no discordant pair: no evidence of a difference
    with pytest.raises(ValueError, match="same images"):
        stats.mcnemar([1, 0], [1])
    with pytest.raises(ValueError, match="0 or 1"):
        stats.mcnemar([2, 0], [1, 0])


def test_newcombe_interval_against_a_published_example() -> None:
    # Fagerland, Lydersen & Laake (2014), Bentur et al. data: p1+ - p+1 = -0.286, Newcombe -0.507 to -0.026.
    # Our difference is the second rate minus the first, so the interval is mirrored.
    lo, hi = stats.newcombe_paired(1, 1, 7, 12)
    assert lo == pytest.approx(0.026, abs=1e-3) and hi == pytest.approx(0.507, abs=1e-3)


def test_newcombe_interval_covers_in_a_seeded_simulation() -> None:
    g = torch.Generator().manual_seed(0)
    n, true_a, true_b, hits, runs = 80, 0.5, 0.3, 0, 400
    for _ in range(runs):
        u = torch.rand(n, generator=g)
        a, b = (u < true_a).long(), (u < true_b).long()  # nested outcomes, correlated
        flip = torch.rand(n, generator=g) < 0.1  # some discordance both ways
        b = torch.where(flip, 1 - b, b)
        true_diff = (true_b * 0.9 + (1 - true_b) * 0.1) - true_a
        pr = stats.mcnemar(a, b)
        hits += pr.lo <= true_diff <= pr.hi
    assert 0.9 < hits / runs <= 1.0


def test_mcnemar_power_nested_closed_form_and_simulation() -> None:
    # Nested outcomes: every discordant pair goes one way, and the test rejects once there are >= 6 of them
    # (2 / 2^6 = 0.031 <= 0.05 < 2 / 2^5): power = P(Binomial(n, rate_a - rate_b) >= 6).
    n, ra, rb = 50, 0.3, 0.2
    closed = 1 - sum(math.comb(n, k) * 0.1 ** k * 0.9 ** (n - k) for k in range(6))
    assert stats.mcnemar_power(n, ra, rb) == pytest.approx(closed)
    # Independent outcomes: against a seeded simulation of the test itself.
    g = torch.Generator().manual_seed(1)
    runs, rejected = 2000, 0
    for _ in range(runs):
        a = (torch.rand(n, generator=g) < 0.5).long()
        b = (torch.rand(n, generator=g) < 0.2).long()
        rejected += stats.mcnemar(a, b).p <= 0.05
    assert stats.mcnemar_power(n, 0.5, 0.2, nested=False) == pytest.approx(rejected / runs, abs=0.03)
    assert stats.mcnemar_power(n, 0.3, 0.3) == 0.0


def test_n_for_power_finds_the_threshold() -> None:
    n = stats.n_for_power(lambda m: stats.mcnemar_power(m, 0.3, 0.2))
    assert stats.mcnemar_power(n, 0.3, 0.2) >= 0.8 > stats.mcnemar_power(n - 1, 0.3, 0.2)
    assert stats.n_for_power(lambda m: 0.0, limit=1000) is None


def test_holm_against_a_hand_example() -> None:
    # sorted 0.01, 0.03, 0.04: 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = stats.holm([0.5, float("nan"), 0.9])
    assert out[0] == pytest.approx(1.0) and math.isnan(out[1]) and out[2] == pytest.approx(1.0)


# -- image-level resampling ------------------------------------------------------------------------------------------

def test_cluster_compare_without_clusters_is_the_plain_two_sample_test() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, generator=g), torch.randn(300, generator=g) + 1.0
    c = stats.cluster_compare(a, b, permutations=2000, resamples=1000, seed=0)
    assert c.design == "independent" and c.clusters == 500
    assert c.p_value < 0.01 and c.ci_lo < -1.0 < c.ci_hi < 0 and c.ci_lo <= c.difference <= c.ci_hi
    assert c == stats.cluster_compare(a, b, permutations=2000, resamples=1000, seed=0)  # seeded
    med = stats.cluster_compare(a, b, statistic="median", permutations=500, resamples=500)
    assert med.p_value < 0.01 and med.difference == pytest.approx(a.double().quantile(0.5).item() - b.double().quantile(0.5).item())
    same = stats.cluster_compare(a, a.clone(), permutations=200, resamples=200)
    assert same.difference == 0 and same.p_value == 1.0
    empty = stats.cluster_compare(a, torch.empty(0))
    assert math.isnan(empty.p_value) and math.isnan(empty.difference) and empty.n_b == 0


def test_pixel_level_resampling_is_overconfident_where_images_differ() -> None:
    # 8 images per group, 10 nearly equal values per image (pixels of one image move together); the image
    # means differ a lot between images but not between the groups.
    g = torch.Generator().manual_seed(3)
    level = torch.randn(16, generator=g)
    values = level.repeat_interleave(10) + 0.01 * torch.randn(160, generator=g)
    ids = torch.arange(16).repeat_interleave(10)
    a, b, ia, ib = values[:80], values[80:], ids[:80], ids[80:]
    pixels = stats.cluster_compare(a, b, permutations=2000, resamples=1000)
    images = stats.cluster_compare(a, b, ia, ib, permutations=2000, resamples=1000)
    assert images.clusters == 16 and images.difference == pytest.approx(pixels.difference)
    assert images.ci_hi - images.ci_lo > 2.5 * (pixels.ci_hi - pixels.ci_lo)  # ~sqrt(10) wider
    assert images.p_value > 4 * pixels.p_value


def test_paired_design_uses_per_image_differences() -> None:
    # One "success" value per image and ten "random" values of the same image; images differ widely, but the
    # success sits 0.2 below its own image's values every time: a paired test sees it, a pooled one hardly.
    g = torch.Generator().manual_seed(4)
    level = 3 * torch.randn(30, generator=g)
    rand = level.repeat_interleave(10) + 0.05 * torch.randn(300, generator=g)
    succ = level - 0.2
    c = stats.cluster_compare(succ, rand, torch.arange(30), torch.arange(30).repeat_interleave(10),
                              permutations=2000, resamples=1000)
    assert c.design == "paired" and c.clusters == 30 and c.n_b == 300
    assert c.difference == pytest.approx(-0.2, abs=0.03) and c.ci_hi < 0 and c.p_value < 0.01
    pooled = stats.cluster_compare(succ, rand, permutations=2000, resamples=1000)
    assert pooled.ci_lo < 0 < pooled.ci_hi


@pytest.mark.parametrize("kwargs", [{"statistic": "mode"}, {"permutations": 0}, {"resamples": -1},
                                    {"confidence": 1.5}, {"permutations": 1.5}])
def test_cluster_compare_rejects_bad_parameters(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        stats.cluster_compare(torch.rand(5), torch.rand(5), **kwargs)


def test_cluster_compare_rejects_bad_samples() -> None:
    with pytest.raises(ValueError, match="1-D"):
        stats.cluster_compare(torch.rand(5, 2), torch.rand(5))
    with pytest.raises(ValueError, match="NaN"):
        stats.cluster_compare(torch.tensor([1.0, float("nan")]), torch.rand(5))
    with pytest.raises(ValueError, match="cluster ids"):
        stats.cluster_compare(torch.rand(5), torch.rand(5), torch.arange(4), torch.arange(5))


# -- verdicts, fixed in each direction -------------------------------------------------------------------------------

CLAIM = 21.43 / 70.97 - 1  # APR's Table 1: the ASR falls to 30% of the undefended one


def test_paired_verdict_supported() -> None:
    # 200 images; undefended breaks 100, the defence 30 of them (nested): 50% -> 15%, claimed 50% -> 15.1%.
    before, after = outcomes(30, 70, 0, 100)
    v = stats.paired_verdict("APR lowers the ASR", before, after, 0.5 * CLAIM)
    assert v.status == "supported" and (v.direction, v.size) == ("supported", "as claimed")
    assert v.p < 0.05 and v.lo <= 100 * 0.5 * CLAIM <= v.hi and v.hi - v.lo < 2 * 100 * stats.EQUIVALENCE_MARGIN
    assert v.n == 200 and 0.5 < v.power <= 1 and v.n_needed is None
    assert v.label == "supported (direction and size as claimed)"
    assert v.sentence().startswith("SUPPORTED (DIRECTION AND SIZE AS CLAIMED): APR") and "n = 200" in v.sentence()


def test_a_direction_contradicted_is_contradicted() -> None:
    # 200 images; undefended 100 broken, the defence all of them: no fall at all, the claimed -35 points excluded.
    before, after = outcomes(100, 0, 0, 100)
    v = stats.paired_verdict("APR lowers the ASR", before, after, 0.5 * CLAIM)
    assert v.status == "contradicted" and v.direction == "contradicted" and v.size == "smaller than claimed"
    assert v.lo > -100 * stats.MIN_EFFECT and "excludes every change" in v.why


def test_a_smaller_fall_than_claimed_is_direction_supported_not_contradicted() -> None:
    # 100 -> 95 of 200: a real fall (the interval excludes 0), far smaller than the claimed -35 points. The old
    # rule read "contradicted" (the interval excludes the claim); direction and size are separate questions.
    v = stats.paired_verdict("APR lowers the ASR", *outcomes(95, 5, 0, 100), 0.5 * CLAIM)
    assert v.hi < 0 and v.status == "direction supported"
    assert v.label == "direction supported, size contradicted (smaller than claimed)"
    assert v.sentence().startswith("DIRECTION SUPPORTED, SIZE CONTRADICTED (SMALLER THAN CLAIMED): APR")


def test_a_larger_effect_than_claimed_reads_larger_never_plainly_contradicted() -> None:
    # JPEG lowers the rate MORE than claimed: 100 -> 10 of 200 (-45 points) against a claimed -20 points.
    v = stats.paired_verdict("JPEG lowers the rate", *outcomes(10, 90, 0, 100), -0.20)
    assert v.hi < -20 and v.status == "direction supported"
    assert v.label == "direction supported, size contradicted (larger than claimed)"
    # a rise larger than claimed (an ablation): the same words, the other way
    rise = stats.paired_verdict("rise", *outcomes(20, 0, 20, 60), 0.0733)
    assert rise.status == "direction supported" and rise.size == "larger than claimed"


def test_paired_verdict_undecided_with_simulated_power_and_n() -> None:
    # 30 images, 2 broken undefended (as the cpu run), 1 under the defence: nothing to decide on.
    before, after = outcomes(1, 1, 0, 28)
    v = stats.paired_verdict("APR lowers the ASR", before, after, (2 / 30) * CLAIM)
    assert v.status == "undecided" and v.power < 0.8 and v.n_needed is not None and v.n_needed > 30
    assert "Power to read 'supported'" in v.why and str(v.n_needed) in v.why
    assert v == stats.paired_verdict("APR lowers the ASR", before, after, (2 / 30) * CLAIM)  # seeded


def test_power_is_simulated_with_the_rule_not_the_nested_bound() -> None:
    # The case: 114 images, 15 vs 19 discordant, a claimed rise of 8.6 points. The nested-outcomes bound
    # said power 0.87 (and >= 103 images) while the verdict stayed undecided; the very rule, simulated with the
    # observed 30% of discordant images, cannot read "supported" at this n most of the time.
    before, after = outcomes(40, 15, 19, 40)
    assert stats.mcnemar_power(114, 55 / 114, 55 / 114 + 0.086) > 0.8  # the old, optimistic number
    v = stats.paired_verdict("rise", before, after, 0.086)
    assert v.status == "undecided" and v.power < 0.5 and v.n_needed > 114
    # ... and the simulation is the rule's: at n_needed the chance of "supported" reaches POWER.
    rule = stats.verdicts._Rule(0.086, None, stats.z_of(), stats.MIN_EFFECT)
    assert stats.verdicts._paired_power(rule, v.n_needed, 55 / 114, 34 / 114) >= stats.POWER


@pytest.mark.parametrize("before, after", [(outcomes(45, 5, 0, 0)), (outcomes(0, 0, 0, 30))])
def test_floors_and_ceilings_are_not_informative(before, after) -> None:
    # A 100% reference (the attack saturates): the old rule read 45 of 50 against a claimed fall to 30% as
    # "contradicted". A 0% reference has nothing to lower.
    v = stats.paired_verdict("APR lowers the ASR", before, after, (sum(before) / len(before)) * CLAIM,
                             claimed_ratio=None)
    assert v.status == "not informative" and v.direction is None and v.size is None
    assert "no evidence" in v.why and v.label == "not informative"
    ids = list(range(len(before)))
    assert stats.clustered_paired_verdict("c", before, after, ids, -0.3).status == "not informative"


def test_paired_verdict_ablation_rise_and_an_adjusted_p() -> None:
    # removing a component raises the ASR by 7.33 points in the paper; here by 20 points on 100 images.
    full, variant = outcomes(20, 0, 20, 60)
    assert stats.paired_verdict("rise", full, variant, 0.2).status == "supported"
    assert stats.paired_verdict("rise", full, variant, 0.2, p=0.2).status == "undecided"  # an adjusted p decides


def test_family_widens_both_sides() -> None:
    # The example: +3.6 points (95% CI -0.8 to +8.0) against a claimed +8.6. At 95% the interval
    # excludes the claim (size "smaller"); with three claims decided together (98.3% CI) it does not.
    before, after = outcomes(40, 2, 7, 91)
    one = stats.paired_verdict("rise", before, after, 0.086)
    three = stats.paired_verdict("rise", before, after, 0.086, family=3)
    assert one.hi < 8.6 < three.hi and one.size == "smaller than claimed" and three.size == "undecided"
    assert three.status != "contradicted" and three.interval == "98.3% CI"
    assert three.p == pytest.approx(min(1.0, 3 * one.p))
    # the other side too: 62% of 100 is contradicted alone (p = 0.04 < 0.05) but not as one of three
    r1, r3 = stats.rate_verdict("x", 61, 100, 0.7097), stats.rate_verdict("x", 61, 100, 0.7097, family=3)
    assert r1.status == "contradicted" and r3.status != "contradicted" and r3.p == pytest.approx(min(1, 3 * r1.p))


def test_the_paired_p_is_the_dual_of_the_interval() -> None:
    # 200 seeded random 2x2 tables (n from 5 to 300, random cell probabilities), batched: at the family-wise
    # level, the interval excludes no change exactly when p x family < alpha.
    g = torch.Generator().manual_seed(0)
    n = torch.randint(5, 300, (200,), generator=g)
    probs = torch.rand(200, 4, generator=g)
    cells = torch.stack([torch.bincount(torch.multinomial(probs[i], int(n[i]), replacement=True, generator=g),
                                        minlength=4) for i in range(200)]).double().T
    p = stats.core._newcombe_p_t(*cells)
    for family in (1, 3):
        lo, hi = stats.core._newcombe_t(*cells, stats.z_of(stats.ALPHA, family))
        assert torch.equal((lo > 0) | (hi < 0), (family * p).clamp(max=1.0) < stats.ALPHA)
    assert 20 < int(((lo > 0) | (hi < 0)).sum()) < 180  # both answers occur: the test can fail
    one = cells[:, 0].long().tolist()  # the public, scalar functions agree with the batched ones
    assert stats.newcombe_p(*one) == pytest.approx(p[0].item())


def test_a_claimed_ratio_carries_the_baselines_uncertainty() -> None:
    # 10 images: full APR breaks 4, the variant the same 4 (no rise); the paper's rise is 1.64x the baseline.
    # Treating 0.64 x our 40% as a fixed +25.6 points excludes it; testing after - 1.64 x before = 0 with both
    # rates' sampling error cannot tell.
    before, after = outcomes(4, 0, 0, 6)
    fixed = stats.paired_verdict("rise", before, after, 0.64 * 0.4)
    estimated = stats.paired_verdict("rise", before, after, 0.64 * 0.4, claimed_ratio=1.64)
    assert fixed.size == "smaller than claimed" and estimated.size == "undecided"
    assert estimated.effect == fixed.effect and "1.64 x before" in estimated.why


def test_one_equivalence_margin() -> None:
    import inspect

    assert stats.EQUIVALENCE_MARGIN == 0.10
    assert inspect.signature(stats.rate_verdict).parameters["tolerance"].default == stats.EQUIVALENCE_MARGIN
    assert inspect.signature(stats.value_verdict).parameters["tolerance"].default == stats.EQUIVALENCE_MARGIN
    # A paired interval containing the claim but wider than +-10 points: size undecided (here 20 of 40 -> 14).
    v = stats.paired_verdict("fall", *outcomes(14, 6, 0, 20), -0.15)
    assert v.lo < -25 and v.size == "undecided" and v.status == "direction supported"


def test_not_comparable_is_not_undecided() -> None:
    v = stats.rate_verdict("ASR 70.97%", 80, 200, 0.7097, comparable="the paper measured ResNet-18, this run m")
    assert v.status == "not comparable" and v.label == "not comparable" and v.effect == 40.0 and v.n == 200
    assert v.lo < 40 < v.hi and "ResNet-18" in v.why and v.p is None
    w = stats.not_comparable("clean accuracy 95%", "another dataset", 91.0, "%", 1000)
    assert w.status == "not comparable" and w.sentence().startswith("NOT COMPARABLE: clean accuracy 95%")


def test_status_of_covers_the_rule() -> None:
    assert stats.status_of("supported", "as claimed") == stats.status_of("supported", None) == "supported"
    assert all(stats.status_of("supported", s) == "direction supported" for s in stats.SIZES[1:])
    assert all(stats.status_of("contradicted", s) == "contradicted" for s in stats.SIZES)
    assert stats.status_of(None, "larger than claimed") == "contradicted"
    assert stats.status_of("undecided", "smaller than claimed") == "undecided"
    rate = stats.rate_verdict("ASR 70.97%", 60, 200, 0.7097)
    assert rate.label == "contradicted (smaller than claimed)" and rate.direction is None
    with pytest.raises(ValueError, match="size"):
        stats.Verdict("undecided", "c", 0.0, 0.0, 0.0, "", None, None, None, "", size="huge")


def test_rate_verdict_each_direction() -> None:
    assert stats.rate_verdict("ASR 70.97%", 60, 200, 0.7097).status == "contradicted"
    v = stats.rate_verdict("ASR 70.97%", 141, 200, 0.7097)
    assert v.status == "supported" and 60 < v.lo < 70.97 < v.hi < 80
    u = stats.rate_verdict("ASR 70.97%", 6, 9, 0.7097)
    assert u.status == "undecided" and u.n_needed is not None and u.n_needed > 9 and u.power < 0.8


def test_overhead_verdict_each_direction() -> None:
    assert stats.overhead_verdict("training +27.3%", 30.0, 27.3, (25.0, 35.0)).status == "supported"
    v = stats.overhead_verdict("training +27.3%", 300.0, 27.3, (280.0, 320.0))
    assert v.status == "contradicted" and "11.0x" in v.why and v.p is None and v.power is None
    assert stats.overhead_verdict("training", 30.0, None).status == "undecided"


def test_direction_verdict_each_direction() -> None:
    def comp(d: float, lo: float, hi: float, p: float) -> stats.Comparison:
        return stats.Comparison("mean", "paired", 50, 500, 50, 0.5 + d, 0.5, d, lo, hi, p, 0.95, 1000, 1000)

    assert stats.direction_verdict("low", comp(-0.2, -0.3, -0.1, 0.001)).status == "supported"
    assert stats.direction_verdict("low", comp(0.1, 0.02, 0.2, 0.01)).status == "contradicted"
    assert stats.direction_verdict("low", comp(0.0, -0.01, 0.01, 0.9)).status == "contradicted"  # rules out -0.05
    u = stats.direction_verdict("low", comp(-0.05, -0.2, 0.1, 0.4))
    assert u.status == "undecided" and u.n_needed is not None and u.n_needed > 50


def test_verdict_rejects_unknown_status() -> None:
    with pytest.raises(ValueError, match="status"):
        stats.Verdict("maybe", "c", 0.0, 0.0, 0.0, "", None, None, None, "")


@pytest.mark.parametrize("n", [1, 6, 7, 30, 200])
def test_wilson_contains_the_rate_at_the_ends(n: int) -> None:
    assert stats.wilson(n, n)[1] == 1.0 and stats.wilson(0, n)[0] == 0.0  # never a hair inside the rate
    lo, hi = stats.wilson(n, n)
    assert lo <= 1.0 <= hi


def test_n_for_power_searches_up_to_its_limit() -> None:
    power = lambda m: stats.mcnemar_power(m, 2e-4, 1e-4)  # noqa: E731 - needs about 79,000 images
    n = stats.n_for_power(power)
    assert n is not None and 65_536 < n <= 100_000 and power(n) >= 0.8


def test_cluster_compare_default_ids_never_meet_given_ones() -> None:
    a, b = torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    c = stats.cluster_compare(a, b, clusters_a=[4, 4, 5, 5])  # b's values: images of their own
    assert c.design == "independent" and c.n_b == 6


def test_rate_verdict_contradicts_only_when_the_exact_test_rejects() -> None:
    v = stats.rate_verdict("x", 62, 100, 0.7097)  # Wilson excludes 70.97%, the exact test does not (p = 0.06)
    assert v.status != "contradicted" and v.p >= 0.05
    assert stats.rate_verdict("x", 40, 100, 0.7097).status == "contradicted"


def test_undecided_reason_matches_the_interval() -> None:
    # 6 of 200 before, 3 after (nested): the interval contains no change, and the reason says so.
    v = stats.paired_verdict("c", [1] * 6 + [0] * 194, [1] * 3 + [0] * 197, 0.03 * CLAIM)
    assert v.direction == "undecided" and v.lo < 0 < v.hi and "does not exclude no change" in v.why


# -- several seeds on the same images: the image is the unit ---------------------------------------------------------

def _seeded(per_image_before: list[int], per_image_after: list[int], seeds: int):
    """Outcomes of ``seeds`` seeds that all attacked the same images with the same result (the extreme of a
    shared image effect), concatenated seed by seed as the rows of a multi-seed run are."""
    n = len(per_image_before)
    return per_image_before * seeds, per_image_after * seeds, list(range(n)) * seeds


def test_seeds_repeating_images_are_not_independent_pairs():
    before, after, ids = _seeded([1] * 8 + [0] * 12, [1] * 4 + [0] * 16, seeds=5)
    pooled = stats.paired_verdict("falls", before, after, -0.2)
    clustered = stats.clustered_paired_verdict("falls", before, after, ids, -0.2)
    assert pooled.n == 100 and clustered.n == 20  # twenty images, not a hundred pairs
    assert clustered.effect == pytest.approx(pooled.effect) == pytest.approx(-20.0)
    # Four images changed: a sign-flip test over images gives p = 2 / 16 = 0.125; pooling five seeds claimed 0.0001.
    assert pooled.p < 0.001 and clustered.p == pytest.approx(0.125, abs=0.02)
    assert pooled.status == "supported" and clustered.status == "undecided"


@pytest.mark.parametrize("after_broken, status", [(20, "supported"), (40, "contradicted")])
def test_clustered_verdicts_decide_when_the_images_do(after_broken, status):
    # 80 of 120 images broken before; after: 40 (-33 points: the claimed -30 holds) or 80 (no change).
    before, after, ids = _seeded([1] * 80 + [0] * 40, [1] * after_broken * 2 + [0] * (120 - 2 * after_broken),
                                 seeds=3)
    v = stats.clustered_paired_verdict("falls by a third", before, after, ids, -1 / 3)
    assert v.status == status and v.n == 120 and v.power is None and "images" in v.why
    three = stats.clustered_paired_verdict("falls by a third", before, after, ids, -1 / 3, family=3)
    assert three.hi - three.lo >= v.hi - v.lo and three.interval == "98.3% CI"


def test_clustered_verdict_checks_its_inputs():
    with pytest.raises(ValueError, match="one entry per attacked image"):
        stats.clustered_paired_verdict("c", [1, 0], [0, 0], [0], -0.1)
    assert stats.clustered_paired_verdict("c", [], [], [], -0.1).status == "undecided"


# -- macro-F1 -------------------------------------------------------------------------------------------------------

def test_macro_f1_interval_contains_the_estimate_and_narrows_with_n():
    from labkit.stats import f1_interval, macro_f1

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (400,), generator=g)
    pred = torch.where(torch.rand(400, generator=g) < 0.7, y, torch.randint(0, 5, (400,), generator=g))
    lo, hi = f1_interval(y, pred, 5)
    assert lo <= macro_f1(y, pred, 5) <= hi
    lo_small, hi_small = f1_interval(y[:50], pred[:50], 5)
    assert hi_small - lo_small > hi - lo
    assert f1_interval(y, pred, 5) == (lo, hi)  # seeded


def test_value_verdict_has_three_outcomes():
    from labkit.stats import value_verdict

    assert value_verdict("c", 0.10, 0.05, 0.15, 0.08, 300).status == "supported"
    assert value_verdict("c", 0.40, 0.35, 0.45, 0.08, 300).status == "contradicted"
    assert value_verdict("c", 0.0, 0.0, 0.0, 0.01, 300).status == "supported"  # within the resolution
    assert value_verdict("c", 0.0, 0.0, 0.0, 0.03, 300).status == "contradicted"
    assert value_verdict("c", 0.20, 0.00, 0.40, 0.08, 30).status == "undecided"
