"""labkit.labs.apr_paper (Labs 05-07): the suites of the APR paper's tables and the side-by-side timings."""

from __future__ import annotations

from dataclasses import replace

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
