"""Su et al.'s study on their three networks (Lab 02b): configs, the attacks, the summary rows and the verdicts."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from labkit import claims, papers
from labkit.attacks import AttackResult
from labkit.data import Split
from labkit.labs import su
from labkit.profiles import get_profile
from tests.conftest import PixelTrigger

CFG = replace(su.su_config(get_profile("smoke")), n_images=3, target_images=2, population=60, generations=60)  # finds PixelTrigger's pixel


class Trained:  # what ``su.untargeted`` / ``su.all_targets`` read of a TrainedModel
    def __init__(self, model: torch.nn.Module, key: str):
        self.model, self.key = model, key


def dark_split(n: int = 3) -> Split:
    """``n`` dark 8x8 images of class 0: PixelTrigger predicts 0 until its pixel (2, 5) is bright."""
    g = torch.Generator().manual_seed(0)
    return Split(images=torch.randint(0, 90, (n, 3, 8, 8), generator=g, dtype=torch.uint8),
                 labels=torch.zeros(n, dtype=torch.long), classes=tuple(str(c) for c in range(10)), source="test")


def test_the_config_rejects_what_su_et_al_did_not_run():
    with pytest.raises(ValueError, match="unknown networks"):
        su.SuConfig(networks=("resnet18",))
    with pytest.raises(ValueError, match="target_images"):
        su.SuConfig(n_images=4, target_images=5)
    with pytest.raises(ValueError, match="pixels"):
        su.SuConfig(pixels=(0,))
    with pytest.raises(ValueError, match="unknown network"):
        su.train_config("small_cnn", su.SuConfig())


def test_each_profile_trains_the_three_networks_and_only_full_runs_the_papers_budget():
    for name in ("smoke", "cpu", "full"):
        cfg = su.su_config(get_profile(name))
        assert [su.train_config(n, cfg).model for n in cfg.networks] == ["allconv", "nin", "vgg16"]
        assert cfg.paper_budget == (name == "full")
        assert su.de_config(cfg, 3, targeted=True).pixels == 3 and su.de_config(cfg, 1).targeted is False
    full = su.su_config(get_profile("full"))
    assert (full.n_images, full.pixels, full.target_pixels) == (500, (1, 3, 5), (1, 3, 5))  # the paper's protocol


def test_untargeted_successes_really_flip_the_model(tmp_cache):
    model, split = PixelTrigger().eval(), dark_split()
    idx = torch.arange(len(split))
    result = su.untargeted(Trained(model, "pt"), split, idx, 1, CFG)
    assert result.success.any()  # the trigger pixel is findable at this budget
    with torch.no_grad():
        preds = model(result.adv_images).argmax(1)
    assert torch.equal(result.success, preds != split.labels[idx])
    changed = (result.adv_images != split.floats(idx)).any(1).flatten(1).sum(1)
    assert (changed[result.success] <= 1).all()


def test_all_targets_attacks_every_other_class_and_only_the_reachable_one_succeeds(tmp_cache):
    model, split = PixelTrigger().eval(), dark_split()
    idx = torch.arange(len(split))
    result = su.all_targets(Trained(model, "pt"), split, idx[:2], 1, CFG)
    assert len(result) == 2 * 9
    assert torch.equal(result.targets.view(2, 9), torch.arange(1, 10).repeat(2, 1))  # image by image, label + 1..9
    assert result.success.any() and (result.targets[result.success] == 1).all()  # only class 1 can be reached
    with torch.no_grad():
        assert (model(result.adv_images[result.success]).argmax(1) == 1).all()


def test_all_targets_batched_equals_each_image_alone(tmp_cache):
    model, split = PixelTrigger().eval(), dark_split()
    both = su.all_targets(Trained(model, "pt"), split, torch.arange(2), 1, CFG)
    alone = [su.all_targets(Trained(model, "pt"), split, torch.tensor([i]), 1, CFG) for i in range(2)]
    assert torch.equal(both.adv_images, torch.cat([a.adv_images for a in alone]))
    assert torch.equal(both.success, torch.cat([a.success for a in alone]))


def _result(success: list[bool], probs: list[float], targets: list[int] | None = None) -> AttackResult:
    n = len(success)
    return AttackResult(adv_images=torch.zeros(n, 3, 2, 2), success=torch.tensor(success),
                        queries=torch.ones(n, dtype=torch.long), pixels=torch.zeros(n, 1, 2, dtype=torch.long),
                        colours=torch.zeros(n, 1, 3), labels=torch.zeros(n, dtype=torch.long),
                        targets=None if targets is None else torch.tensor(targets),
                        adv_pred=torch.zeros(n, dtype=torch.long), adv_prob=torch.tensor(probs),
                        true_prob=torch.zeros(n))


def test_summary_counts_pairs_and_images_and_averages_confidence_over_successes():
    pairs = [False] * 18
    pairs[3] = pairs[4] = True  # image 0 reaches two targets, image 1 none
    probs = [0.0] * 18
    probs[3], probs[4] = 0.5, 0.7
    row = su.summary("nin", 1, _result([True, False, True], [0.9, 0.2, 0.5]),
                     _result(pairs, probs, targets=list(range(1, 10)) * 2))
    assert (row["paper_name"], row["untargeted"]["broken"], row["untargeted"]["n"]) == ("NiN", 2, 3)
    assert row["untargeted_confidence"] == pytest.approx(0.7)
    assert (row["targeted"]["broken"], row["targeted"]["n"]) == (2, 18)
    assert (row["any_target"]["broken"], row["any_target"]["n"], row["any_outcomes"]) == (1, 2, [1, 0])
    assert row["targeted_probs"] == pytest.approx([0.5, 0.7]) and row["targeted_rows"] == [0, 0]
    assert row["any_target"]["lo"] < 0.5 < row["any_target"]["hi"]
    table = su.table([row, su.summary("nin", 3, _result([True] * 3, [0.8] * 3), None)])
    assert table[0]["at least one target"].startswith("50.0% (1/2") and table[1]["targeted (pairs)"] == ""


def _summary(net: str, broken_k1: int, broken_k5: int, n: int = 200, any_broken: int = 30, images: int = 40) -> list:
    one = {"network": net.lower(), "paper_name": net, "pixels": 1, "untargeted": {"broken": broken_k1, "n": n},
           "outcomes": [1] * broken_k1 + [0] * (n - broken_k1),
           "any_target": {"broken": any_broken, "n": images},
           "targeted_probs": [0.7, 0.75, 0.8, 0.72], "targeted_rows": [0, 0, 1, 2]}
    five = {"network": net.lower(), "paper_name": net, "pixels": 5, "untargeted": {"broken": broken_k5, "n": n},
            "outcomes": [1] * broken_k5 + [0] * (n - broken_k5)}
    return [one, five]


def test_verdicts_decide_only_at_the_papers_budget():
    rows = _summary("VGG16", 130, 190) + _summary("AllConv", 20, 30)
    at_paper = dict(su.su_verdicts(rows, 400, 100))
    assert at_paper["su_untargeted:VGG16"].status == "supported"  # 65% of 200 against 63.53%
    assert at_paper["su_untargeted:AllConv"].status == "contradicted"  # 10% of 200 against 68.71%
    assert at_paper["su_any_target:VGG16"].status == "undecided"  # 75% of 40 against 68.36%: interval too wide
    smaller = dict(su.su_verdicts(rows, 100, 20))
    for key in ("su_untargeted:VGG16", "su_untargeted:AllConv", "su_any_target:AllConv", "su_confidence:VGG16"):
        assert smaller[key].status == "not comparable" and "budget" in smaller[key].why
        assert smaller[key].effect == at_paper[key].effect  # the measurement is kept, only the test is withheld
    # The pixel count's direction does not depend on the budget: 95% against 65% of the same images.
    assert smaller["su_pixels:VGG16"].status == at_paper["su_pixels:VGG16"].status == "supported"


def test_the_pixel_direction_needs_enough_images():
    verdicts = dict(su.su_verdicts(_summary("NiN", 2, 8, n=10), 400, 100))
    assert verdicts["su_pixels:NiN"].status == "undecided" and "fewer than" in verdicts["su_pixels:NiN"].why


def test_the_claims_chapter_reads_lab_02bs_record_per_network():
    record = {"lab": su.__name__, "settings": {"population": 400, "generations": 100}, "tables": {},
              "values": {su.SUMMARY_STEP: _summary("VGG16", 130, 190) + _summary("NiN", 20, 30)}}
    table = claims.claims_table({papers.SU_LAB: record})
    untargeted = {r["claim"].split(":")[0]: r for r in table if "non-targeted 1-pixel" in r["claim"]}
    assert untargeted["VGG16"]["verdict"] == "supported" and untargeted["VGG16"]["model"] == "VGG16" and untargeted["VGG16"]["ours"] == "65.0"
    assert untargeted["NiN"]["verdict"] == "contradicted"
    assert untargeted["AllConv"]["verdict"] == "not measured"  # the record has no AllConv row
    any_target = [r for r in table if "at least one other class" in r["claim"]]
    assert [r["model"] for r in any_target] == ["VGG16", "NiN"]


def test_the_lab_table_names_the_version_each_number_comes_from():
    verdicts = su.su_verdicts(_summary("VGG16", 130, 190), 400, 100)
    rows = su.su_table(verdicts)
    version = {key: r["version"] for (key, _), r in zip(verdicts, rows)}
    assert version["su_untargeted:VGG16"].startswith("journal") and version["su_any_target:VGG16"].startswith("arXiv")
    assert rows[0]["ours"] == "65.0%" and rows[0]["n"] == 200 and rows[0]["verdict"] == "supported"
    # Every number reads as the verdict's sentence writes it (a fraction to 0.001, a rate to 0.1%).
    for (_, v), row in zip(verdicts, rows):
        assert f"Measured {row['ours']}" in v.sentence() if row["ours"] else v.effect != v.effect
