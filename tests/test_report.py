"""labkit.report: the verdict rules and sentences several labs share, and the layering around them."""

from __future__ import annotations

import math
import subprocess
import sys

from labkit import report, stats


# -- shared rules ----------------------------------------------------------------------------------------------------

def test_on_paper_architecture_withholds_only_other_architectures() -> None:
    v = stats.rate_verdict("the ASR is 70%", 140, 200, 0.7)
    assert report.on_paper_architecture(v, "ResNet-18", ("resnet18", "vgg16")) is v  # spelling aside, the paper's
    other = report.on_paper_architecture(v, "small_cnn", ("resnet18", "vgg16"))
    assert other.status == "not comparable" and other.effect == v.effect and other.power is None
    assert "resnet18 / vgg16, this run small_cnn" in other.why


def test_mean_outcome_and_verdict_lines() -> None:
    assert report.mean_outcome([1, 0, 0, 1]) == 0.5 and math.isnan(report.mean_outcome([]))
    assert math.isnan(report.mean_outcome(None))
    v = stats.rate_verdict("the ASR is 70%", 140, 200, 0.7)
    assert report.verdict_lines([v, v], prefix="  ") == "  " + v.sentence() + "\n  " + v.sentence()


# -- sentences of Labs 01-02 -----------------------------------------------------------------------------------------

def test_attack_gap_reports_the_paired_difference() -> None:
    de = [1] * 10 + [0] * 40
    corner = [1] * 10 + [1] * 12 + [0] * 28
    text = report.attack_gap(de, corner, model="m")
    assert text.startswith("[m] DE under-reports vulnerability here") and "breaks 12 images" in text
    assert "no significant difference" in report.attack_gap(de, [1] * 11 + [0] * 39)


# -- layering ---------------------------------------------------------------------------------------------------------

def test_method_modules_do_not_import_the_report_layer() -> None:
    code = ("import sys, labkit.apr, labkit.attention, labkit.defences, labkit.evaluate, labkit.stats, "
            "labkit.suites; "
            "assert 'labkit.report' not in sys.modules, 'a method module imports labkit.report'")
    subprocess.run([sys.executable, "-c", code], check=True)
    code = ("import sys, labkit.stats; assert not [m for m in sys.modules if m.startswith('labkit.') and m not in "
            "('labkit.stats', 'labkit.stats.core', 'labkit.stats.verdicts', 'labkit._checks')]")
    subprocess.run([sys.executable, "-c", code], check=True)
