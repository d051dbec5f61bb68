"""labkit.labs.recovery (Lab 09): FGSM, JPEG, the targeted one-pixel "recovery" and its controls; its Table I and
verdicts."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from labkit import claims, papers
from labkit.attacks import DEConfig
from labkit.data import predict
from labkit.labs import recovery
from labkit.profiles import PROFILES

from conftest import PixelTrigger


@dataclasses.dataclass(frozen=True)
class _Profile:
    """The one thing ``recover`` asks of a profile: its DE attack (here big enough for 8x8 images)."""

    name: str = "smoke"

    def de_config(self, **overrides) -> DEConfig:
        return DEConfig(population=200, generations=20, **overrides)


def test_random_wrong_targets_avoid_the_true_and_the_current_class():
    labels = torch.arange(200) % 10
    current = (labels + 3) % 10
    t = recovery.random_wrong_targets(labels, current, seed=5)
    assert ((t != labels) & (t != current)).all() and len(t.unique()) == 10
    assert torch.equal(t, recovery.random_wrong_targets(labels, current, seed=5))  # repeatable
    assert not torch.equal(t, recovery.random_wrong_targets(labels, current, seed=6))


def test_fgsm_and_pgd_stay_within_eps(tiny_cnn):
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = tiny_cnn(x).argmax(1)
    for adv in (recovery.fgsm(tiny_cnn, x, y, 0.02), recovery.pgd(tiny_cnn, x, y, 0.02, steps=3, seed=1)):
        assert (adv - x).abs().max() <= 0.02 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        assert (adv != x).any()
    assert torch.equal(recovery.pgd(tiny_cnn, x, y, 0.02, 3, seed=1), recovery.pgd(tiny_cnn, x, y, 0.02, 3, seed=1))


def test_the_quality_sweep_is_jpeg_then_the_model(tiny_cnn):
    x = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    y = torch.arange(5)
    adv = recovery.fgsm(tiny_cnn, x, y, 0.05)
    swept = recovery.quality_sweep(tiny_cnn, x, adv, y, (10, 90))
    assert swept["clean"].shape == swept["fgsm"].shape == (2, 5)
    assert torch.equal(swept["fgsm"][0], predict(tiny_cnn, recovery.jpeg(adv, 10)) != y)
    assert torch.equal(swept["clean"][1], predict(tiny_cnn, recovery.jpeg(x, 90)) != y)
    assert (recovery.jpeg(x, 10) * 255 == (recovery.jpeg(x, 10) * 255).round()).all()  # decoded to 8-bit levels


def test_recovery_reaches_the_true_class_where_one_pixel_can_and_the_controls_say_so(tmp_cache):
    # PixelTrigger predicts class 0 unless pixel (2, 5) is bright, then class 1: one pixel can reach class 1 and
    # never classes 2-9. Images of true class 1 predicted 0 are the "misclassified after JPEG" ones. Their pixels
    # lie in [0.3, 0.4], so class 1 is the runner-up (its logit is positive, the other classes' zero).
    model = PixelTrigger().eval()
    x = 0.3 + 0.1 * torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 1, 1, 1, 1, 0, 0, 0])
    cfg = recovery.RecoveryConfig(n_images=8, n_sweep=4)
    out = recovery.recover(model, "m", x, labels, torch.arange(100, 108), _Profile(), 20, cfg, progress=False)
    wrong = labels == 1
    assert torch.equal(out["wrong"], wrong) and torch.equal(out["pred"], torch.zeros(8, dtype=torch.long))
    assert torch.equal(out["oracle/attacked"], wrong) and torch.equal(out["oracle/success"], wrong)
    assert torch.equal(out["oracle/final"], labels)  # every wrong image recovered, the others untouched
    assert out["random/attacked"].sum() == 5 and not out["random/success"].any()  # classes 2-9: out of reach
    assert ((out["random/target"] >= 2) | ~out["random/attacked"]).all()
    assert out["runner_up/attacked"].all() and torch.equal(out["runner_up/target"], torch.ones(8, dtype=torch.long))
    assert torch.equal(out["runner_up/final"], torch.ones(8, dtype=torch.long))  # label-free: the correct ones go wrong
    assert ((out["oracle/queries"] > 0) == wrong).all()
    again = recovery.recover(model, "m", x, labels, torch.arange(100, 108), _Profile(), 20, cfg, progress=False)
    assert all(torch.equal(out[k], again[k]) for k in out)  # from the cache, the same


def _tables(n: int = 200) -> tuple[dict, dict, torch.Tensor]:
    """Synthetic Lab 09 arrays: FGSM fools all, JPEG leaves the first half wrong, the oracle recovers 70 of those
    100, a random wrong class is reached on 5, the label-free step changes nothing."""
    labels = torch.zeros(n, dtype=torch.long)
    wrong = torch.arange(n) < n // 2
    sweep = {"fgsm": torch.ones(n, dtype=torch.bool)}
    table = {}
    for q in (20, 40):
        oracle_ok = wrong & (torch.arange(n) < 70)
        random_ok = wrong & (torch.arange(n) < 5)
        pred = torch.where(wrong, torch.ones(n, dtype=torch.long), labels)
        table.update({f"q{q}/wrong": wrong, f"q{q}/pred": pred,
                      f"q{q}/oracle/attacked": wrong, f"q{q}/oracle/success": oracle_ok,
                      f"q{q}/oracle/final": torch.where(oracle_ok, labels, pred),
                      f"q{q}/random/attacked": wrong, f"q{q}/random/success": random_ok,
                      f"q{q}/runner_up/final": pred})
    return sweep, table, labels


def test_table_rows_and_verdicts_from_per_image_outcomes():
    sweep, table, labels = _tables()
    rows = recovery.recovery_rows(sweep, table, labels, torch.arange(200), (20, 40))
    by = {(r["quality"], r["stage"]): r for r in rows}
    assert by[None, recovery.STAGE_FGSM]["rate"] == 100 and by[20, recovery.STAGE_JPEG]["rate"] == 50
    assert by[20, recovery.STAGE_ORACLE]["rate"] == 15 and by[20, recovery.STAGE_LABEL_FREE]["rate"] == 50
    assert by[20, recovery.REACH_ORACLE]["images"] == 100 and by[20, recovery.REACH_ORACLE]["rate"] == 70
    assert by[40, recovery.STAGE_JPEG]["paper"] == papers.JPEG2023_TABLE1[40][0]
    keyed = recovery.keyed_recovery_verdicts(rows, "small_cnn")
    status = {}
    for key, v in keyed:
        status.setdefault(key, []).append(v.status)
    assert status["jpeg_fgsm"] == ["not comparable"]  # an absolute rate on another network: untested
    assert status["jpeg_specific"] == ["supported", "supported"]  # 70% vs 5% on the same 100 images
    # Label-free: no change where the paper claims a fall from 50% to 50 x 12.5 / 48.5 %: contradicted.
    assert status["jpeg_recovery:20"][1] == "contradicted"
    fgsm_on_vgg = recovery.keyed_recovery_verdicts(rows, "vgg16")[0][1]
    assert fgsm_on_vgg.status == "contradicted"  # 100% of 200 is not 89.3% on the paper's network
    sentences = recovery.recovery_verdict(rows, "small_cnn")
    assert sentences.count("\n") + 1 == len(keyed) and "random wrong class" in sentences


def test_the_claims_chapter_shows_lab_09s_verdicts():
    sweep, table, labels = _tables()
    rows = recovery.recovery_rows(sweep, table, labels, torch.arange(200), (20, 40))
    rec = {"lab": recovery.LAB, "profile": "cpu", "tables": {recovery.TABLE_STEP: rows},
           "models": {recovery.BASE_STEP: [{"model": "small_cnn"}]}}
    chapter = claims.claims_table({recovery.LAB: rec})
    jpeg = [r for r in chapter if r["paper"] == papers.JPEG_PAPER]
    assert jpeg and all(r["verdict"] != "not measured" for r in jpeg)
    keyed = recovery.keyed_recovery_verdicts(rows, "small_cnn")
    assert [r["verdict"] for r in jpeg] == [v.status for _, v in sorted(
        keyed, key=lambda kv: [c.measure for c in papers.CLAIMS if c.paper == papers.JPEG_PAPER].index(kv[0]))]


def test_config_checks():
    with pytest.raises(ValueError, match="n_sweep"):
        recovery.RecoveryConfig(n_images=5, n_sweep=6)
    with pytest.raises(ValueError, match="Table I"):
        recovery.RecoveryConfig(qualities=(10, 30), table=(20,))
    cpu = recovery.recovery_config(PROFILES["cpu"])  # the profile's section reaches the config
    assert (cpu.n_images, cpu.n_sweep) == tuple(PROFILES["cpu"].lab("recovery")[k] for k in ("n_images", "n_sweep"))
    full = recovery.recovery_config(PROFILES["full"])
    assert (full.n_images, full.n_sweep) == (1000, 200)  # the JPEG paper's sizes
