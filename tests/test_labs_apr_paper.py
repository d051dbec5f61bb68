"""labkit.labs.apr_paper (Labs 05-07): the suites of the APR paper's tables, the side-by-side timings and Lab 07's table
and verdicts."""

from __future__ import annotations

from dataclasses import replace

import pytest
from torch import nn

from labkit import apr
from labkit.apr import APRObjective, apr_config
from labkit.evaluate import DEFAULT_TIMING, timing_repeats
from labkit.labs import apr_paper
from labkit.profiles import PROFILES, get_profile
from labkit.train import TrainConfig


def test_suites_share_configs_where_they_should() -> None:
    p = get_profile("smoke")
    suite = {e.defence: e for e in apr_paper.table1_suite(p)}
    assert suite["IT (bit depth 5)"].config == suite["No defence"].config == suite["IT (JPEG q75)"].config
    assert suite["APR"].config == apr_config(p) and suite["APR"].paper == "APR"
    # One-pixel AT gets the same inner attack budget as APR: the comparison is about the rest of APR.
    assert suite["AT (one-pixel)"].config.objective.positions == suite["APR"].config.objective.positions
    ablation = apr_paper.ablation_suite(p)
    assert [e.defence for e in ablation] == list(apr.VARIANTS) and ablation[0].config == suite["APR"].config


def test_time_training_runs_each_config_side_by_side(tiny_folder, monkeypatch) -> None:
    from labkit import models

    monkeypatch.setitem(models.REGISTRY, "tiny_test", lambda num_classes=10, in_channels=3: nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes)))
    base = TrainConfig(model="tiny_test", batch_size=8)
    configs = {"undefended": base, "APR full": TrainConfig(model="tiny_test", batch_size=8, gate="pixel",
                                                            objective=APRObjective(positions=1))}
    rows = apr_paper.time_training(configs, device="cpu", warmup=1, repeats=2)
    assert [(r["repeat"], r["config"]) for r in rows] == [(0, "undefended"), (0, "APR full"), (1, "undefended"),
                                                          (1, "APR full")]
    assert all(r["seconds"] > 0 for r in rows)
    assert all((r["inner_attack"] > 0) == (r["config"] == "APR full") for r in rows)


def test_suites_train_the_inner_attack_of_the_profiles_apr_section() -> None:
    for name, profile in PROFILES.items():
        p = profile.for_defences()
        suite = {e.defence: e for e in apr_paper.table1_suite(p)}
        positions = {suite["AT (one-pixel)"].config.objective.positions, suite["APR"].config.objective.positions}
        assert positions == {apr.inner_positions(p)} == {p.lab("apr")["inner_positions"]}, name
    bare = replace(get_profile("smoke"), labs=())  # a profile without the section: OnePixelAT's default
    assert apr_paper.table1_suite(bare)[-1].config.objective.positions == apr.DEFAULT_INNER_POSITIONS


def test_timings_repeat_as_the_profile_says() -> None:
    for profile in PROFILES.values():
        section = profile.lab("timing")
        assert timing_repeats(profile) == (section["warmup"], section["repeats"])
    assert timing_repeats(replace(get_profile("cpu"), labs=())) == DEFAULT_TIMING


# -- Lab 07's table, split and verdicts on Table 4 -------------------------------------------------------------------

def test_overhead_table_and_split() -> None:
    ms = {"undefended": 0.1, "APR full": 0.5, "APR no_attention": 0.49, "APR no_adversarial": 0.2,
          "APR no_regularisation": 0.4}
    inner = {"APR full": 0.15, "APR no_attention": 0.15, "APR no_regularisation": 0.15}
    rows = [{"config": c, "repeat": r, "seconds": s * (1 + 0.01 * r), "inner_attack": inner.get(c, 0.0)}
            for c, s in ms.items() for r in range(3)]
    table = apr_paper.overhead_table(rows, {"undefended": 1e-4, "APR full": 1.1e-4}, model="m")
    full = next(r for r in table if r["config"] == "APR full")
    assert full["model"] == "m" and full["train_increase_pct"] == pytest.approx(400)
    assert full["train_increase_lo"] == pytest.approx(400) == full["train_increase_hi"]  # same ratio every repeat
    assert full["infer_increase_pct"] == pytest.approx(10)
    assert full["inner_attack_share_pct"] == pytest.approx(100 * 0.15 / (0.505 - 0.101))
    split = apr_paper.overhead_split(table)
    assert split["inner attack"] == pytest.approx(150) and split["gradient regulariser"] == pytest.approx(101)
    assert sum(split.values()) == pytest.approx(full["train_ms"] - 101)


def test_overhead_verdicts_and_sentences() -> None:
    table = [{"model": "resnet18", "config": "undefended", "train_ms": 100.0, "train_increase_pct": 0.0,
              "inner_attack_ms": 0.0, "inner_attack_share_pct": None, "infer_increase_pct": 0.0},
             {"model": "resnet18", "config": "APR full", "train_ms": 500.0, "train_increase_pct": 400.0,
              "train_increase_lo": 380.0, "train_increase_hi": 420.0,
              "inner_attack_ms": 300.0, "inner_attack_share_pct": 75.0, "infer_increase_pct": 10.0}]
    statuses = [v.status for _, v in apr_paper.overhead_verdicts(table)]
    assert statuses == ["contradicted", "supported"]  # training 400% vs 27.3%; inference 10% vs 8.6%
    text = apr_paper.overhead_sentences(table)
    assert "14.7x the claimed +27.3%" in text and "75% of APR's training-time increase" in text
    assert "300% of an undefended step" in text and "no sampling model" in text
    small = [dict(r, model="small_cnn") for r in table]
    assert [v.status for _, v in apr_paper.overhead_verdicts(small)] == ["undecided", "undecided"]
    assert "it has no small_cnn" in apr_paper.overhead_sentences(small)
