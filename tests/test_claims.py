"""The claims-vs-measured chapter (labkit.claims): every claim listed, verdicts the labs' own, from records only."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import claims, papers
from labkit.labs import (apr_paper, apr_tables, attention_maps, defence_baselines, recovery, su, survey,
                         verification)
from labkit.suites import WORST_CASE

from conftest import result_row


def _outcomes(broken: int, n: int = 200) -> tuple[int, ...]:
    return tuple([1] * broken + [0] * (n - broken))


def _suite(apr_broken: int, n: int = 200) -> list[dict]:
    """Lab 05's suite rows: the undefended model breaks on 80 of n images under the worst case and DE."""
    rows = []
    for defence, broken in (("No defence", 80), ("APR", apr_broken)):
        for attack in ("DE k=1", WORST_CASE):
            rows.append(result_row(defence, attack, broken / n, n=n, outcomes=_outcomes(broken, n),
                                   robust_acc=0.9 * (1 - broken / n)))
    return rows


def _record(lab: str, **tables) -> dict:
    return {"lab": lab, "profile": "cpu", "config": {"eval_size": 10_000}, "tables": tables, "values": {}}


def _rows_for(table, text):
    return [r for r in table if r["claim"] == text]


def test_every_claim_has_a_row_even_without_records():
    table = claims.claims_table({})
    assert [r["claim"] for r in table] == [c.what for c in papers.CLAIMS]
    assert {r["verdict"] for r in table} <= {"not measured", "not comparable"}
    pending = [r for r, c in zip(table, papers.CLAIMS) if c.lab is None]
    assert pending and all(r["why"] for r in pending)  # says why nothing measures it


def _small() -> list[dict]:
    """Ten images: no test can tell a fall to 30% from no fall."""
    rows = []
    for defence, broken in (("No defence", 4), ("APR", 2)):
        for attack in ("DE k=1", WORST_CASE):
            rows.append(result_row(defence, attack, broken / 10, n=10, outcomes=_outcomes(broken, 10)))
    return rows


# 80 -> 24 of 200 is the paper's fall to 30% of the baseline; 80 -> 80 (no fall) contradicts it; ten images decide
# nothing.
@pytest.mark.parametrize("rows, expected", [(_suite(24), "supported"), (_suite(80), "contradicted"),
                                            (_small(), "undecided")])
def test_the_apr_claim_gets_the_labs_own_verdict(rows, expected):
    table = claims.claims_table({"05_apr": _record("05_apr", suite=rows)})
    apr = _rows_for(table, next(c.what for c in papers.CLAIMS if c.measure == "defence:APR"))
    assert [r["verdict"] for r in apr] == [expected]
    lab = [v for arch, key, v in apr_tables.keyed_defence_verdicts(rows) if key == "APR"]
    assert apr[0]["verdict"] == lab[0].status and apr[0]["n"] == lab[0].n  # the lab page and the chapter agree


def test_claims_of_labs_without_a_record_say_so_and_others_are_measured():
    table = claims.claims_table({"05_apr": _record("05_apr", suite=_suite(24))})
    ablation = [r for r in table if r["where"] == "Table 3 (ablation)"]
    assert ablation and all(r["verdict"] == "not measured" and "06_apr_ablation" in r["why"] for r in ablation)
    undefended = _rows_for(table, next(c.what for c in papers.CLAIMS if c.measure == "undefended_asr"))
    # 80 of 200 (40%) under DE on model "m", not an architecture of the paper: side by side, not comparable (no n
    # would decide it, so not "undecided").
    assert [r["verdict"] for r in undefended] == ["not comparable"] and undefended[0]["n"] == 200
    assert "architecture" in undefended[0]["why"] and undefended[0]["model"] == "m" and undefended[0]["ours"] == "40.0"


def test_absolute_rates_are_tested_on_the_papers_architecture_only():
    rows = [dict(r, model="resnet18") for r in _suite(24)]
    table = claims.claims_table({"05_apr": _record("05_apr", suite=rows)})
    undefended = _rows_for(table, next(c.what for c in papers.CLAIMS if c.measure == "undefended_asr"))
    assert [r["verdict"] for r in undefended] == ["contradicted"]  # 40% of 200 against 70.97%: rejected


def test_the_chapters_markdown_has_totals_first_one_unit_per_table_and_every_reason():
    table = claims.claims_table({"05_apr": _record("05_apr", suite=_suite(24))})
    text = claims.markdown(table)
    assert text.index("**Totals**") < text.index("### ")
    totals = {t["paper"]: t for t in claims.totals(table)}
    assert totals["all papers"]["rows"] == len(table)
    assert sum(totals["all papers"][v] for v in claims.VERDICTS) == len(table)
    for paper in dict.fromkeys(r["paper"] for r in table):
        rows = [r for r in table if r["paper"] == paper]
        section = text.split(f"### {paper}\n", 1)[1].split("### ", 1)[0]
        units = list(dict.fromkeys(r["unit"] or "" for r in rows))
        assert section.count("\n| ") == len(rows) + len(units)  # one header per unit's table and one line per row
        assert all(claims.UNIT_HEADINGS[u] in section for u in units)
        assert all(f"\n{k}. " in section for k, r in enumerate(rows, 1) if r["why"])
    assert "**supported**" in text and "**not measured**" in text and "[05](05_apr.ipynb)" in text


def test_a_measurement_two_labs_share_is_one_row_listing_both_labs():
    rows = _suite(24) + [result_row("AT (one-pixel)", attack, 0.2, n=200, paper="AT", outcomes=_outcomes(40))
                         for attack in ("DE k=1", WORST_CASE)]
    recs = {lab: _record(lab, suite=rows) for lab in ("04_training_defences", "05_apr")}
    recs["03_input_transformations"] = _record("03_input_transformations")
    table = claims.claims_table(recs)
    apr = _rows_for(table, next(c.what for c in papers.CLAIMS if c.measure == "defence:APR"))
    assert len(apr) == 1
    measured = [(r["claim"], r["detail"], r["model"], r["ours"], r["ci"], r["n"]) for r in table if r["n"] is not None]
    assert len(measured) == len(set(measured))
    shared = [r for r in table if "04_training_defences" in r["lab"] and "05_apr" in r["lab"]]
    assert shared, "AT/DD are measured by Labs 04 and 05 on the same rows: one row naming both labs"


def test_defence_rows_name_their_attackers_and_show_robust_accuracy():
    table = claims.claims_table({"05_apr": _record("05_apr", suite=_suite(24))})
    apr = _rows_for(table, next(c.what for c in papers.CLAIMS if c.measure == "defence:APR"))[0]
    assert "worst case over" in apr["attackers"] and "→" in apr["robust"]


def test_the_survey_defence_claim_is_judged_against_the_attacker_who_knows_the_defence():
    def row(defence, attack, wrong, attacker="plain"):
        labels = [i % 10 for i in range(len(wrong))]
        return {"dataset": "cifar10", "defence": defence, "attack": attack, "attacker": attacker, "images": len(wrong),
                "classes": 10, "labels": labels, "adv_pred": [(l + w) % 10 for l, w in zip(labels, wrong)]}
    half = [1] * 120 + [0] * 80
    attacks = ("MI-FGSM", "DeepFool", "CW-L2", "pixel swap")
    grid = [row("none", a, half) for a in attacks] + [row("gradient masking", a, [0] * 200) for a in attacks]
    grid += [row("gradient masking", a, half, "knows the defence") for a in attacks[:3]]
    table = claims.claims_table({"11_survey_defences": _record("11_survey_defences", grid=grid)})
    masking = [r for r in table if r["claim"] == next(c.what for c in papers.CLAIMS
                                                      if c.measure == "survey_defence:gradient masking")]
    # The survey concludes masking does not help; against the attacker who knows it, it indeed changes nothing
    # (the plain attacks, which it blocks, alone would have contradicted the survey and credited the defence).
    assert [r["verdict"] for r in masking] == ["supported"] and masking[0]["ours"] == "+0.000"
    assert all("knows the defence" in r["attackers"] for r in masking)


def test_the_labs_name_their_records_as_their_notebooks_and_the_papers_claims_do():
    # The chapter finds a record by the name its lab's module exports; the notebook writes it under the same name
    # (its stem), and labkit.papers (which imports nothing) spells it once more for each claim.
    exported = {su.LAB, defence_baselines.INPUT_LAB, defence_baselines.TRAINING_LAB, apr_paper.TABLE1_LAB,
                apr_paper.ABLATION_LAB, apr_paper.OVERHEAD_LAB, attention_maps.LAB, recovery.LAB, survey.ATTACKS_LAB,
                survey.DEFENCES_LAB, verification.LAB}
    notebooks = {p.stem for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")}
    assert exported <= notebooks
    assert {c.lab for c in papers.CLAIMS if c.lab} <= exported and papers.SU_LAB == su.LAB


def test_a_change_row_sets_the_papers_change_beside_ours_never_its_rate():
    # APR's Table 1 states "from 70.97% to 21.43%"; Lab 05 measures the change in points: the row's paper column
    # must hold the paper's change (21.43 - 70.97), in the row's unit, not the rate 21.43.
    table = claims.claims_table({"05_apr": _record("05_apr", suite=_suite(24))})
    apr = next(c for c in papers.CLAIMS if c.measure == "defence:APR")
    row = next(r for r in table if r["claim"] == apr.what and r["unit"] == "points")
    assert apr.unit == "%" and apr.baseline is not None
    assert row["paper_value"] == pytest.approx(apr.value - apr.baseline)
    assert row["paper_value"] < 0 and row["effect"] < 0 and row["lo"] <= row["effect"] <= row["hi"]


def test_paper_value_is_in_the_rows_unit_or_missing():
    rate = papers.Claim("P", "T1", "x falls from 80% to 30%", 30.0, "%", "lab", baseline=80.0)
    assert claims.paper_value(rate, "%") == 30.0
    assert claims.paper_value(rate, "points") == -50.0
    assert claims.paper_value(rate, "") is None  # a fraction is neither the rate nor its change
    assert claims.paper_value(papers.Claim("P", "T1", "x is 30%", 30.0, "%", "lab"), "points") is None
    assert claims.paper_value(papers.Claim("P", "T1", "a question", None, "", "lab"), "points") is None


def test_every_change_claim_stated_as_two_rates_has_its_baseline():
    # A claim "from A% to B%" measured as a change needs A to be set beside our change (else its row shows none).
    for c in papers.CLAIMS:
        if " from " in c.what and "% to " in c.what and c.lab is not None:
            before = float(c.what.split(" from ")[1].split("%")[0])
            assert c.baseline == pytest.approx(before), c.what
