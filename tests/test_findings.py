"""What the book found at a glance (labkit.findings): key results and the landing page, generated from records."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

from labkit import claims, findings, papers
from labkit.labs import verification
from labkit.suites import WORST_CASE

from conftest import result_row


def _suite(apr_broken: int, n: int = 200) -> list[dict]:
    rows = []
    for defence, broken in (("No defence", 80), ("APR", apr_broken)):
        for attack in ("DE k=1", WORST_CASE):
            rows.append(result_row(defence, attack, broken / n, n=n, outcomes=[1] * broken + [0] * (n - broken),
                                   robust_acc=0.9 * (1 - broken / n)))
    return rows


def _record(lab: str, **tables) -> dict:
    return {"lab": lab, "profile": "cpu", "config": {"eval_size": 10_000}, "tables": tables, "values": {}}


def test_a_lab_without_a_record_has_no_key_result():
    assert findings.key_result({}, "05_apr") == []


@pytest.mark.parametrize("apr_broken, verdict", [(80, "contradicted"), (24, "supported")])
def test_a_labs_key_result_counts_its_verdicts_and_leads_with_the_most_decisive(apr_broken, verdict):
    recs = {"05_apr": _record("05_apr", suite=_suite(apr_broken))}
    table = claims.claims_table(recs)
    lines = findings.key_result(recs, "05_apr", table, lines=3)
    mine = [r for r in table if "05_apr" in r["lab"].split(", ") and r["verdict"] != "not measured"]
    assert len(lines) == 3
    assert f"({len(mine)} rows)" in lines[0]
    counted = {v: sum(r["verdict"] == v for r in mine) for v in claims.VERDICTS}
    assert all(f"{n} {v}" in lines[0] for v, n in counted.items() if n)
    # APR's own claim is the only decisive row: it comes first, with the paper's change beside ours.
    apr = next(c for c in papers.CLAIMS if c.measure == "defence:APR")
    assert apr.what in lines[1] and f"**{verdict}**" in lines[1]
    assert f"paper {apr.value - apr.baseline:+g} points" in lines[1]


def test_a_lab_that_checks_no_claim_shows_its_rates_with_intervals():
    row = result_row("No defence", "DE k=1", 0.31, n=100, outcomes=[1] * 31 + [0] * 69)
    recs = {"02_baselines": _record("02_baselines", **{"small_cnn/untargeted k=1": [row]})}
    (line,) = findings.key_result(recs, "02_baselines")
    assert line.startswith("DE k=1: 31% of 100 images fooled (95% CI ")
    lo, hi = line.split("CI ")[1].rstrip("%)").split("–")
    assert float(lo) < 31 < float(hi)


def test_lab_12s_key_result_is_its_bracket_per_model():
    bracket = [{"model": m, "clean_acc": 0.8, "certified": 50, "proven": p, "unknown": 1 - p - 0.2, "asr": 0.2,
                "bracket_lo": 0.2, "bracket_hi": 1 - p} for m, p in (("natural", 0.0), ("proven (IBP)", 0.5))]
    recs = {verification.LAB: _record(verification.LAB, **{verification.BRACKET_STEP: bracket})}
    lines = findings.key_result(recs, verification.LAB)
    assert [line.split(":")[0] for line in lines] == ["natural", "proven (IBP)"]
    assert "50% of 50 images proven" in lines[1] and "20.0–50.0%" in lines[1]


def test_the_landing_pages_findings_count_every_row_of_every_paper_and_link_the_labs():
    recs = {"05_apr": _record("05_apr", suite=_suite(80))}
    table = claims.claims_table(recs)
    text = findings.findings_markdown(recs, table, "findings.png")
    for paper in dict.fromkeys(r["paper"] for r in table):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"- **{paper}**"))
        counts = [int(part.split()[0]) for part in line.split(": ", 1)[1].split(" (")[0].split(", ")]
        assert sum(counts) == sum(r["paper"] == paper for r in table)
    assert "{doc}`Lab 05 </notebooks/05_apr>`" in text and "```{figure} findings.png" in text
    assert "{doc}`/notebooks/claims_vs_measured`" in text
    assert "```{figure}" not in findings.findings_markdown(recs, table)


def test_the_figure_has_a_panel_per_unit_with_both_numbers_and_a_legend():
    recs = {"05_apr": _record("05_apr", suite=_suite(80))}
    table = claims.claims_table(recs)
    fig = findings.findings_figure(table)
    units = {r["unit"] for r in table if r["unit"] in findings.FIGURE_UNITS and r["paper_value"] is not None
             and r["effect"] is not None}
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == len(units) >= 1
    assert any(ax.get_legend() is not None for ax in fig.axes)
    assert findings.findings_figure([]) is None
