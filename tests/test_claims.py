"""The claims-vs-measured chapter (labkit.claims): every claim listed, verdicts the labs' own, from records only."""

from __future__ import annotations

import pytest

from labkit import claims, papers, report
from labkit.evaluate import WORST_CASE

from conftest import result_row


def _outcomes(broken: int, n: int = 200) -> tuple[int, ...]:
    return tuple([1] * broken + [0] * (n - broken))


def _suite(apr_broken: int, n: int = 200) -> list[dict]:
    """Lab 05's suite rows: the undefended model breaks on 80 of n images under the worst case and DE."""
    rows = []
    for defence, broken in (("No defence", 80), ("APR", apr_broken)):
        for attack in ("DE k=1", WORST_CASE):
            rows.append(result_row(defence, attack, broken / n, n=n, outcomes=_outcomes(broken, n)))
    return rows


def _record(lab: str, **tables) -> dict:
    return {"lab": lab, "profile": "cpu", "config": {"eval_size": 10_000}, "tables": tables, "values": {}}


def _rows_for(table, text):
    return [r for r in table if r["claim"] == text]


def test_every_claim_has_a_row_even_without_records():
    table = claims.claims_table({})
    assert [r["claim"] for r in table] == [c.what for c in papers.CLAIMS]
    assert {r["verdict"] for r in table} == {"not measured"}
    pending = [r for r, c in zip(table, papers.CLAIMS) if c.lab is None]
    assert pending and all("issue #" in r["why"] for r in pending)  # says which issue will measure it


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
    lab = [v for arch, key, v in report.keyed_defence_verdicts(rows) if key == "APR"]
    assert apr[0]["verdict"] == lab[0].status and apr[0]["n"] == lab[0].n  # the lab page and the chapter agree


def test_claims_of_labs_without_a_record_say_so_and_others_are_measured():
    table = claims.claims_table({"05_apr": _record("05_apr", suite=_suite(24))})
    ablation = [r for r in table if r["where"] == "Table 3 (ablation)"]
    assert ablation and all(r["verdict"] == "not measured" and "06_apr_ablation" in r["why"] for r in ablation)
    undefended = _rows_for(table, next(c.what for c in papers.CLAIMS if c.measure == "undefended_asr"))
    # 80 of 200 (40%) under DE on model "m", not an architecture of the paper: side by side, untested.
    assert [r["verdict"] for r in undefended] == ["undecided"] and undefended[0]["n"] == 200
    assert "architecture" in undefended[0]["why"] and undefended[0]["ours"].startswith("[m] 40.0%")


def test_absolute_rates_are_tested_on_the_papers_architecture_only():
    rows = [dict(r, model="resnet18") for r in _suite(24)]
    table = claims.claims_table({"05_apr": _record("05_apr", suite=rows)})
    undefended = _rows_for(table, next(c.what for c in papers.CLAIMS if c.measure == "undefended_asr"))
    assert [r["verdict"] for r in undefended] == ["contradicted"]  # 40% of 200 against 70.97%: rejected


def test_the_chapters_markdown_numbers_every_row_and_gives_its_reason():
    table = claims.claims_table({"05_apr": _record("05_apr", suite=_suite(24))})
    text = claims.markdown(table)
    for paper in dict.fromkeys(r["paper"] for r in table):
        rows = [r for r in table if r["paper"] == paper]
        section = text.split(f"### {paper}\n", 1)[1].split("### ", 1)[0]
        assert section.count("\n| ") == len(rows) + 1  # the header and one line per row
        assert all(f"\n{k}. " in section for k, r in enumerate(rows, 1) if r["why"])
    assert "**supported**" in text and "**not measured**" in text
