"""labkit.labs.full_budget (Lab 05b): the plan, the images the suite missed, the full-budget DE and the table."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from labkit import claims, findings, papers
from labkit.data import CLASSES, Split
from labkit.labs import full_budget as B
from labkit.profiles import PROFILES
from labkit.suites import WORST_CASE


def suite_rows(defence: str, ids: list[int], outcomes: list[int], mean_queries: float = 900.0) -> list[dict]:
    """A suite's rows for one model: a DE row and the worst case, as ``labkit.suites.evaluate_suite`` writes them."""
    worst = {"defence": defence, "attack": WORST_CASE, "attacked": len(ids), "outcomes": outcomes, "image_ids": ids,
             "mean_queries": mean_queries, "clean_acc": 0.9, "asr": sum(outcomes) / len(ids)}
    return [{**worst, "attack": "DE k=1"}, worst]


def check(ids: list[int], success: list[bool], queries: int = 40_400) -> dict[str, torch.Tensor]:
    return {"index": torch.tensor(ids), "success": torch.tensor(success),
            "queries": torch.full((len(ids),), queries, dtype=torch.long)}


def test_the_papers_budget_is_the_default_and_every_profile_picks_lab_05s_models():
    cfg = B.BudgetConfig()
    assert (cfg.population, cfg.generations) == (papers.APR2024_DE_BUDGET["population"],
                                                 papers.APR2024_DE_BUDGET["max_iterations"]) == (400, 100)
    assert cfg.max_queries == 400 * 101
    for profile in PROFILES.values():
        P = profile.for_defences()
        entries = B.plan(P, B.budget_config(P))
        assert [e.defence for e in entries] == ["No defence", "APR"]  # the reference first, as in Lab 05
    assert B.budget_config(PROFILES["cpu"].for_defences()) == B.BudgetConfig(n_images=50)  # the papers' DE
    with pytest.raises(ValueError, match="Lab 05 trains no"):
        B.plan(PROFILES["smoke"].for_defences(), B.BudgetConfig(defences=("No defence", "magic")))


@pytest.mark.parametrize("field, value", [("n_images", 0), ("population", 3), ("generations", 0), ("defences", ())])
def test_bad_settings_get_clear_errors(field, value):
    with pytest.raises(ValueError, match=field if field != "defences" else "at least one"):
        B.BudgetConfig(**{field: value})


def test_the_full_budget_goes_to_the_first_images_the_suite_missed():
    rows = suite_rows("No defence", [7, 3, 9, 4, 1], [1, 0, 0, 1, 0]) + suite_rows("APR", [7, 9], [0, 0])
    missed = B.missed_images(rows, limit=2)
    assert missed["No defence"].tolist() == [3, 9] and missed["APR"].tolist() == [7, 9]
    assert B.missed_images(rows, limit=10)["No defence"].tolist() == [3, 9, 1]


def test_the_table_bounds_the_combined_rate_by_what_was_and_was_not_attacked():
    cfg = B.BudgetConfig(n_images=2)
    rows = suite_rows("No defence", [7, 3, 9, 4, 1], [1, 0, 0, 1, 0]) + suite_rows("APR", [7, 9], [1, 1])
    table = B.budget_rows(rows, {"No defence": check([3, 9], [True, False])}, cfg)
    ref, apr = table
    assert (ref["attacked"], ref["suite_fooled"], ref["missed"]) == (5, 2, 3)
    assert (ref["full_budget_attacked"], ref["full_budget_fooled"], ref["fooled_ids"]) == (2, 1, [3])
    assert ref["suite_asr"] == pytest.approx(0.4) and ref["asr_both_lo"] == pytest.approx(0.6)  # 2 + 1 of 5
    lo, hi = B.wilson(1, 2)
    assert (ref["full_budget_share_lo"], ref["full_budget_share_hi"]) == (lo, hi)
    # The third missed image (1) was not attacked at the full budget: counted at the share's upper bound.
    assert ref["asr_both_hi"] == pytest.approx((2 + 1 + 1 * hi) / 5)
    assert ref["suite_asr"] <= ref["asr_both_lo"] <= ref["asr_both_hi"] <= 1
    # APR: the suite broke everything, nothing left for the full budget.
    assert apr["missed"] == apr["full_budget_attacked"] == 0 and math.isnan(apr["asr_both_hi"])
    assert "nothing was left" in B.summary(table)
    shown = B.display_rows(table)
    assert shown[0]["ASR, suite + full-budget DE %"] == f"60.0–{100 * (3 + hi) / 5:.1f}"
    assert shown[1]["share fooled % (95% CI)"] == "— (—–—)"  # no number where nothing ran


def test_the_answer_says_whether_the_full_budget_can_reverse_the_difference():
    cfg = B.BudgetConfig(n_images=4)
    # Undefended: the suite fooled 6 of 10; APR: 1 of 10. The full budget fools nothing more: the difference stays.
    rows = (suite_rows("No defence", list(range(10)), [1] * 6 + [0] * 4)
            + suite_rows("APR", list(range(10)), [1] + [0] * 9))
    quiet = B.budget_rows(rows, {"No defence": check([6, 7, 8, 9], [False] * 4),
                                 "APR": check([1, 2, 3, 4], [False] * 4)}, cfg)
    text = B.summary(quiet)
    assert "No defence minus APR: +50.0 points with the suite alone" in text and "the same sign" in text
    assert "the papers' budget" in text  # 400 x 100 is named as the papers'
    # The full budget fools every APR image it attacks: the range can reach no difference.
    loud = B.budget_rows(rows, {"No defence": check([6, 7, 8, 9], [False] * 4),
                                "APR": check([1, 2, 3, 4], [True] * 4)}, cfg)
    assert "cannot settle" in B.summary(loud)
    unchecked = B.summary(B.budget_rows(rows, {}, dataclasses.replace(cfg, generations=5)))
    assert "none of them attacked at the full budget" in unchecked and "the papers' budget" not in unchecked


def test_agreement_compares_every_attack_image_by_image_with_lab_05():
    rows = suite_rows("No defence", [7, 3], [1, 0]) + suite_rows("APR", [7], [0])
    lab05 = {"tables": {"suite": suite_rows("No defence", [7, 3], [1, 0]) + suite_rows("APR", [7], [1])}}
    mine = {r["defence"]: r for r in B.agreement(rows, lab05)}
    assert (mine["No defence"]["on the same images"], mine["No defence"]["same outcomes"]) == (2, 2)
    assert (mine["APR"]["on the same images"], mine["APR"]["same outcomes"]) == (2, 0)
    assert (mine["APR"]["worst-case ASR % here"], mine["APR"]["Lab 05's "]) == (0.0, 100.0)
    assert mine["No defence"]["clean acc. % here"] == mine["No defence"]["Lab 05's"] == 90.0
    alone = B.agreement(rows, None)[0]
    assert alone["Lab 05's"] is None and alone["on the same images"] == 0


def test_full_budget_de_fools_the_trigger_model_and_verifies_every_success(pixel_model, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    split = Split(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), CLASSES, "test")
    out = B.full_budget_de(pixel_model, "trigger", split, torch.tensor([2, 0]), population=64, generations=20,
                           precision="fp32", progress=False)
    assert out["index"].tolist() == [2, 0] and out["success"].all()  # one bright pixel anywhere near (2, 5) flips it
    assert (out["queries"] <= 64 * 21).all()
    empty = B.full_budget_de(pixel_model, "trigger", split, torch.zeros(0, dtype=torch.long), 8, 2)
    assert len(empty["index"]) == len(empty["success"]) == len(empty["queries"]) == 0


def test_the_claims_chapter_and_the_key_result_show_the_check():
    cfg = B.BudgetConfig(n_images=2)
    rows = suite_rows("No defence", [7, 3, 9], [1, 0, 0]) + suite_rows("APR", [7, 9], [0, 0])
    table = B.budget_rows(rows, {"No defence": check([3, 9], [True, False]), "APR": check([7, 9], [False, False])},
                          cfg)
    recs = {B.LAB: {"tables": {B.BUDGET_STEP: table}}}
    shown = claims.budget_rows(recs)
    assert [r["model"] for r in shown] == ["No defence", "APR"] and shown[0]["DE fooled"] == 1
    assert shown[0]["ASR with it (%)"] == "66.7 to 66.7" and shown[0]["DE budget"] == "400 x 100"
    assert "No defence: 1 of 2, APR: 0 of 2" in claims.budget_note(recs)
    assert claims.budget_rows({}) == [] and claims.budget_note({}) == ""
    lines = findings.key_result(recs, B.LAB)
    assert lines[0].startswith("No defence: DE at 400 x 100 fooled 1 of the 2 images the suite missed")
