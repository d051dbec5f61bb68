"""labkit.labs.verification (Lab 12): the plan, the study of bounds, the bracket and what the lab reports."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from labkit import claims, records
from labkit.certify import ROBUST, UNKNOWN, VULNERABLE
from labkit.certify import parse as certify_parse
from labkit.certify.training import OnePixelIBP
from labkit.labs import verification as V
from labkit.models import Normalize, small_cnn
from labkit.profiles import PROFILES
from labkit.defences import defended
from labkit.train import build_for_config

from conftest import PixelTrigger


def tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(Normalize(), small_cnn(num_classes=3, widths=(4, 4, 6))).eval()


def test_every_profile_sizes_the_lab_and_the_proven_models_fine_tune_the_natural_one():
    for profile in PROFILES.values():
        cfg = V.verify_config(profile)
        natural, proven, *median = V.plan(profile, cfg)
        assert len(median) == (1 if cfg.median else 0) and natural.median == proven.median == 0
        if median:  # the same certified training behind the filter, from the same natural model
            assert median[0] == dataclasses.replace(proven, median=cfg.median) and median[0].init == natural
        assert proven.init == natural and isinstance(proven.objective, OnePixelIBP)
        assert proven.epochs == cfg.proven_epochs and proven.train_size == cfg.proven_size
        assert proven.objective.positions == cfg.positions and proven.objective.kappa == cfg.kappa
        assert natural.epochs == (cfg.natural_epochs or profile.epochs)
    assert V.verify_config(PROFILES["cpu"]).natural_epochs == 6  # sized for a CPU without native bf16
    # Every profile trains the median model, a trade-off over kappa, and certifies Lab 05's APR beside them.
    assert [V.verify_config(PROFILES[p]).median for p in ("smoke", "cpu", "full")] == [3, 3, 3]
    assert all(V.curve_kappas(V.verify_config(p)) and "APR" in V.verify_config(p).claimed for p in PROFILES.values())
    # A default left alone stays out of the record's settings (cache.NEW_FIELD), so older records still match.
    assert "claimed" not in records.jsonable(V.VerifyConfig())


@pytest.mark.parametrize("field, value", [("n_images", 0), ("kappa", 1.5), ("threat", "4bit"), ("seconds", 0),
                                          ("de_images", -1), ("median", 1), ("median", 4)])
def test_bad_settings_get_clear_errors(field, value):
    with pytest.raises(ValueError, match=field if field != "threat" else "threat"):
        V.VerifyConfig(**{field: value})


def test_the_de_budget_goes_only_where_the_outcome_is_open():
    status = torch.tensor([ROBUST, UNKNOWN, UNKNOWN, VULNERABLE, UNKNOWN], dtype=torch.int8)
    broken = torch.tensor([0, 1, 0, 1, 0])
    assert V.budget_images(status, broken, 10).tolist() == [2, 4]
    assert V.budget_images(status, broken, 1).tolist() == [2]
    # DE's verified success on the second open image joins the suite's.
    out = V.broken((0, 1, 0, 1, 0), torch.tensor([2, 4]), torch.tensor([False, True]))
    assert out.tolist() == [False, True, False, True, True]


def test_the_bracket_holds_the_attacked_rate_below_one_minus_the_proven_share():
    status = torch.tensor([ROBUST, ROBUST, UNKNOWN, VULNERABLE, UNKNOWN, UNKNOWN], dtype=torch.int8)
    broken = torch.tensor([False, False, True, False, False, False])
    row = V.bracket_row("m", 0.9, status, broken)
    assert row["proven"] == pytest.approx(2 / 6) and row["unknown"] == pytest.approx(3 / 6)
    # The verifier's flip counts as an attack success: 2 of 6 fooled.
    assert row["asr"] == pytest.approx(2 / 6) and row["bracket_lo"] <= row["bracket_hi"] == pytest.approx(4 / 6)
    assert row["asr_lo"] <= row["asr"] <= row["asr_hi"] and row["proven_lo"] <= row["proven"] <= row["proven_hi"]
    assert row["proven_robust_acc"] <= row["attacked_robust_acc"]
    assert row["outcomes"] == (0, 0, 1, 1, 0, 0) and row["proofs"] == (1, 1, 0, 0, 0, 0)


def test_corner_flips_find_the_trigger_pixel_only_where_it_is():
    model = PixelTrigger(row=2, col=5).eval()
    images = torch.full((2, 3, 8, 8), 0.1)
    labels = torch.zeros(2, dtype=torch.long)
    out = V.corner_flips(model, images, labels, [(2, 5), (0, 0)])
    assert out.tolist() == [[True, False], [True, False]]


def test_study_positions_start_with_a_corner_and_the_centre():
    assert V.study_positions(32, 32, 3) == [(0, 0), (16, 16), (0, 16)]
    assert len(set(V.study_positions(32, 32, 10))) == 10


def test_every_method_bounds_contain_the_sampled_range_and_tighter_methods_are_tighter():
    model = tiny(1)
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    w = V.layer_widths(model, image, 0, (4, 4), samples=64)
    n = len(w["layers"])
    assert w["layers"][0] == "input" and all(len(w[m]) == n for m in ("interval", "forward", "backward", "true"))
    for t in range(n):
        assert w["interval"][t] >= w["true"][t] - 1e-9 and w["backward"][t] >= w["true"][t] - 1e-9
        assert w["forward"][t] <= w["interval"][t] + 1e-9
    assert w["forward"][-1] < w["interval"][-1]  # linear forms help by the last layer


def test_method_costs_decide_positions_and_summarise_per_model_and_method():
    model = tiny(2)
    images = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    labels = model(images).argmax(1)
    cfg = V.VerifyConfig(study_positions=2, study_budget=50)
    rows = V.method_costs(model, images, labels, cfg, methods=("interval", "alpha"), name="tiny")
    assert len(rows) == 4 and {r["method"] for r in rows} == {"interval", "alpha"}
    assert all(r["model"] == "tiny" and 1 <= r["boxes"] <= 50 for r in rows)
    assert all((r["corner_flips"] is None) == (r["verdict"] != "vulnerable") for r in rows)
    summary = V.cost_summary(rows)
    assert [(s["model"], s["method"]) for s in summary] == [("tiny", "interval"), ("tiny", "alpha")]
    assert all(0 <= s["decided"] <= s["positions"] == 2 for s in summary)


def test_summary_and_apr_comparison_come_from_the_rows():
    status = {"a": torch.tensor([ROBUST, ROBUST, UNKNOWN], dtype=torch.int8),
              "b": torch.tensor([VULNERABLE, UNKNOWN, UNKNOWN], dtype=torch.int8)}
    seconds = {"a": torch.tensor([1.0, 3.0, 20.0]), "b": torch.tensor([0.5, 20.0, 20.0])}
    rows = [V.bracket_row(m, 0.85, status[m], torch.zeros(3, dtype=torch.bool)) for m in ("a", "b")]
    text = V.summary(rows, seconds, status, {"a": 20.0, "b": 5.0})
    assert "a: clean accuracy 85.0%" in text and "66.7% proven" in text and "median proof 2.0 s" in text
    assert "not met by a" in text  # 57% of the test set proven is below the goal
    assert "within 20 s per image" in text and "within 5 s per image" in text
    record = {"tables": {"suite": [{"attack": "worst case", "defence": "APR", "clean_acc": 0.8, "robust_acc": 0.6,
                                    "attacked": 100},
                                   {"attack": "DE k=1", "defence": "APR", "clean_acc": 0.8, "robust_acc": 0.7,
                                    "attacked": 100}]}}
    beside = V.beside_apr(rows, record)
    assert [b["model"] for b in beside] == ["a", "b", "APR (Lab 05's record)"]
    assert beside[-1]["proven_robust_acc"] is None and beside[-1]["attacked_robust_acc"] == 0.6
    assert V.beside_apr(rows, None) == beside[:2]


def test_the_claims_chapter_shows_the_proofs_and_marks_attack_only_rows():
    rows = [V.bracket_row("natural", 0.8, torch.tensor([UNKNOWN, VULNERABLE], dtype=torch.int8),
                          torch.tensor([False, False]))]
    shown = claims.proof_rows({V.LAB: {"tables": {V.BRACKET_STEP: rows}}})
    assert shown[0]["model"] == "natural" and shown[0]["proven robust %"] == 0.0
    assert shown[0]["true ASR in (%)"] == "50.0 to 100.0"
    assert claims.proof_rows({}) == []
    lab05 = {"models": {"suite": [{"defence": "No defence", "key": "k0"}, {"defence": "APR", "key": "k1"},
                                  {"defence": "DD (T=20)", "key": "k2"}]}}
    ours = {"tables": {V.BRACKET_STEP: rows}, "models": {"claimed": [{"defence": "APR", "key": "k1"}]}}
    assert claims.proof_note({V.LAB: ours, "05": lab05}, "05", "small_cnn, APR") == ""  # no Lab 05 model proven
    apr = V.bracket_row(V.claimed_name("APR"), 0.8, torch.tensor([ROBUST, UNKNOWN, VULNERABLE, UNKNOWN],
                                                                 dtype=torch.int8), torch.zeros(4, dtype=torch.bool))
    recs = {V.LAB: {**ours, "tables": {V.BRACKET_STEP: rows + [apr]}}, "05": lab05}
    note = claims.proof_note(recs, "05", "small_cnn, APR")
    assert "25.0% of 4 images proven robust, true ASR in 25.0 to 75.0%" in note and "natural" not in note
    # Only the row's own model, and only where the proven model has the row's cache key.
    assert claims.proof_note(recs, "05", "small_cnn, DD (T=20)") == ""  # proved no DD
    assert claims.proof_note(recs, "05", "small_cnn") == ""  # nor the undefended model
    other = {**recs, "05": {"models": {"suite": [{"defence": "APR", "key": "another recipe"}]}}}
    assert claims.proof_note(other, "05", "small_cnn, APR") == ""
    assert claims.proof_note(recs, "04", "small_cnn, APR") == ""  # a lab without that model


def test_an_ablation_row_gets_the_bounds_of_both_models_it_compares():
    status = torch.tensor([ROBUST, UNKNOWN], dtype=torch.int8)
    rows = [V.bracket_row(V.claimed_name("APR"), 0.8, status, torch.zeros(2, dtype=torch.bool)),
            V.bracket_row(V.claimed_name("no_attention"), 0.8, torch.tensor([UNKNOWN, VULNERABLE], dtype=torch.int8),
                          torch.zeros(2, dtype=torch.bool))]
    ours = {"tables": {V.BRACKET_STEP: rows},
            "models": {"claimed": [{"defence": "APR", "key": "k1"}, {"defence": "no_attention", "key": "k2"}]}}
    # Lab 06 names Lab 05's APR "full": the same cache key finds its bracket.
    lab06 = {"models": {"suite": [{"defence": "full", "key": "k1"}, {"defence": "no_attention", "key": "k2"},
                                  {"defence": "no_adversarial", "key": "k3"}]}}
    recs = {V.LAB: ours, "06": lab06}
    note = claims.proof_note(recs, "06", "small_cnn", ("no_attention", "full"))
    assert "no_attention: 0.0% of 2 images proven robust, true ASR in 50.0 to 100.0%" in note
    assert "full: 50.0% of 2 images proven robust, true ASR in 0.0 to 50.0%" in note
    # A variant Lab 12 did not prove leaves only the other's bound; neither proven: no note.
    assert "no_adversarial" not in claims.proof_note(recs, "06", "small_cnn", ("no_adversarial", "full"))
    assert claims.proof_note(recs, "06", "small_cnn", ("no_adversarial", "no_regularisation")) == ""


def test_attention_at_flips_compares_each_image_s_flipping_positions_with_its_others():
    from labkit.models import AttentionGate
    torch.manual_seed(0)
    gated = nn.Sequential(AttentionGate(), Normalize(), small_cnn(num_classes=3, widths=(4, 4, 6))).eval()
    images = torch.rand(4, 3, 8, 8)
    images[:, :, :4] *= 0.1  # a dark top half
    with torch.no_grad():  # attention rises with brightness: a bright pixel is let through, a dark one dimmed
        gated[0].conv.weight.fill_(1.0)
        gated[0].conv.bias.fill_(-4.0)
    status = torch.full((4, 8, 8), UNKNOWN, dtype=torch.int8)
    status[0, 6, 1] = status[0, 7, 7] = status[1, 5, 5] = VULNERABLE  # flips only in the bright half
    status[3, 0, 0] = ROBUST  # image 3: proven positions, no flip; image 2: nothing decided
    row = V.attention_at_flips(gated, images, status, "gated")
    assert row["images"] == 2 and row["flip_positions"] == 3 and row["model"] == "gated"
    assert row["at_flips"] > 0.6 > 0.5 > row["elsewhere"] and row["difference"] > 0
    assert row["ci_lo"] <= row["difference"] <= row["ci_hi"]
    # The flips moved to the dark half: the sign follows.
    dark = torch.full((4, 8, 8), UNKNOWN, dtype=torch.int8)
    dark[0, 1, 1] = dark[1, 2, 2] = VULNERABLE
    assert V.attention_at_flips(gated, images, dark, "gated")["difference"] < 0
    # No flip anywhere: a row of NaNs, not an error; no gate: no row.
    empty = V.attention_at_flips(gated, images, torch.full((4, 8, 8), UNKNOWN, dtype=torch.int8), "gated")
    assert empty["images"] == 0 and empty["difference"] != empty["difference"]
    assert V.attention_at_flips(tiny(), images, status, "plain") is None
    text = V.attention_summary([row, empty]).splitlines()
    assert "higher than elsewhere" in text[0] and "on 2 images the 3 flipping positions" in text[0]
    assert "nothing to compare" in text[1]
    assert "includes 0" in V.attention_summary([{**row, "ci_lo": -0.1}])


def test_the_config_is_frozen_and_compared_by_value():
    cfg = V.VerifyConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_images = 3
    assert V.certify_config(cfg).threat == "continuous" and V.certify_config(cfg).max_seconds == cfg.seconds


def test_the_curve_trains_the_last_model_again_at_each_other_kappa():
    profile = PROFILES["smoke"]
    cfg = dataclasses.replace(V.verify_config(profile), kappas=(0.8, 0.5, 0.2, 0.8), kappa=0.5)
    assert V.curve_kappas(cfg) == (0.2, 0.8)  # the lab's own kappa reuses its model; each kappa once, sorted
    last = V.plan(profile, cfg)[-1]
    extra = V.curve_plan(profile, cfg)
    assert [c.objective.kappa for c in extra] == [0.2, 0.8]
    # Only kappa differs: the same schedule, filter and warm start as the lab's last model.
    assert all(dataclasses.replace(c, objective=last.objective) == last for c in extra)
    assert V.curve_name(cfg, 0.2) == ("median + IBP, kappa 0.2" if cfg.median else "proven (IBP), kappa 0.2")
    assert V.curve_plan(profile, dataclasses.replace(cfg, kappas=())) == []
    with pytest.raises(ValueError, match="kappas"):
        V.VerifyConfig(kappas=(1.5,))


def test_curve_rows_count_every_point_on_the_same_first_images():
    first = torch.arange(10, 14)  # the curve's 4 images
    proofs = {"status": torch.tensor([ROBUST, UNKNOWN, ROBUST, ROBUST], dtype=torch.int8),
              "position_status": torch.tensor([ROBUST, UNKNOWN, ROBUST, ROBUST], dtype=torch.int8)[:, None, None]
              .expand(4, 2, 2),
              "seconds": torch.tensor([1.0, 9.0, 3.0, 5.0])}
    correct = torch.tensor([10, 12, 13, 20])  # image 20 is outside the curve's images: left out
    rows = V.curve_rows([("m", 0.5, 0.9, correct, proofs), ("none", None, 0.1, torch.zeros(0, dtype=torch.long),
                                                            {k: v[:0] for k, v in proofs.items()})], first)
    m, none = rows
    # Of 4 images, 2 proven (10 and 13); image 12 unknown; image 11 misclassified counts as not proven.
    assert m["images"] == 4 and m["correct"] == 3 and m["proven_robust_acc"] == pytest.approx(0.5)
    assert m["proven_lo"] < 0.5 < m["proven_hi"] and m["median_seconds"] == pytest.approx(2.0)
    assert m["positions_proven"] == pytest.approx(2 / 3) and m["kappa"] == 0.5
    # A model with no correct image is a point at 0, not an error.
    assert none["proven_robust_acc"] == 0.0 and none["correct"] == 0 and none["median_seconds"] != none["median_seconds"]


def test_the_defence_labs_models_are_named_and_unknown_ones_refused():
    profile = PROFILES["smoke"]
    cfg = dataclasses.replace(V.verify_config(profile), claimed=("APR", "no_attention", "No defence"))
    entries = V.claimed_plan(profile, cfg)
    assert [e.defence for e in entries] == ["APR", "no_attention", "No defence"]
    assert V.claimed_name("APR") == "APR (Lab 05)" and V.claimed_name("no_attention") == "no_attention (Lab 06)"
    # Lab 06's variant is its own recipe: APR with the gate switched off, the rest as Lab 05's APR.
    assert entries[1].config == dataclasses.replace(entries[0].config, gate="none")
    with pytest.raises(ValueError, match="full"):
        V.VerifyConfig(claimed=("full",))  # Lab 06's full APR is Lab 05's: claim "APR"
    assert V.claimed_plan(profile, dataclasses.replace(cfg, claimed=())) == []
    with pytest.raises(ValueError, match="JPEG"):
        V.VerifyConfig(claimed=("IT (JPEG q75)",))
    # Every other Table 1 model is claimable, and the verifier parses each pipeline (bit depth included).
    every = V.claimed_plan(profile, dataclasses.replace(cfg, claimed=V.CLAIMABLE))
    assert [e.defence for e in every] == list(V.CLAIMABLE)
    for e in every:
        model = build_for_config(e.config)
        certify_parse(model if e.transform is None else defended(model, e.transform), (3, 32, 32))
