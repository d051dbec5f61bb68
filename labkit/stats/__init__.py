"""The book's statistics, in one place: intervals, paired tests, power, image-level resampling, verdicts
(``labkit.stats.core``: the numbers; ``labkit.stats.verdicts``: the rule below).

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

Layer 7 of DESIGN.md: imports no other labkit module but ``_checks``.
"""
from labkit.stats import core, verdicts
from labkit.stats.core import *  # noqa: F401,F403 (the package's public names, listed in each module's __all__)
from labkit.stats.verdicts import *  # noqa: F401,F403

__all__ = [*core.__all__, *verdicts.__all__]
