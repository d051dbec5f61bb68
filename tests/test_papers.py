"""labkit.papers: every quoted number stands in its source's text, and the pages that quote them by hand agree."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from labkit import papers

IMAGENET_PAGE = Path(__file__).resolve().parents[1] / "book" / "imagenet.md"
#: The texts of the four documents (shared/papers beside the repository; LABKIT_PAPERS overrides, e.g. for a git
#: worktree that does not sit beside shared/).
PAPERS = Path(os.environ.get("LABKIT_PAPERS") or Path(__file__).parents[1] / ".." / "shared" / "papers")
needs_texts = pytest.mark.skipif(not PAPERS.is_dir(), reason=f"no source texts at {PAPERS}")

#: Constants whose numbers are labels (table and figure numbers, claim directions), not numbers a paper reports.
LABELS = {"SURVEY_F1_TABLES", "SURVEY_PREDICTION_TIME_TABLES", "SURVEY_DEFENCE_WHERE", "SURVEY_DEFENCE_CLAIMS"}


def _text(file: str) -> str:
    return (PAPERS / file).read_text(encoding="utf-8")


def _numbers(text: str, percent: bool) -> set[float]:
    """Every number printed in ``text`` (only those followed by "%" when ``percent``), as floats: "0.20" -> 0.2."""
    tail = r"\s*%" if percent else ""
    return {round(float(m), 6) for m in re.findall(rf"(?<![\w.])(\d+(?:\.\d+)?)(?![\d]){tail}", text)}


def _printed_in(file: str, value: float, percent: bool) -> bool:
    return round(value, 6) in _numbers(_text(file), percent)


# -- every number against its source's text -------------------------------------------------------------------------

@needs_texts
@pytest.mark.parametrize("name, value, quoted", [q for q in papers.quoted_numbers()
                                                 if papers.SOURCES[q[2].source][0]],
                         ids=lambda x: x if isinstance(x, str) else None)
def test_every_quoted_number_is_printed_in_its_source(name, value, quoted):
    file = papers.SOURCES[quoted.source][0]
    assert _printed_in(file, value, percent=quoted.printed != "plain"), f"{name}: {value:g} not in {file}"


@needs_texts
@pytest.mark.parametrize("claim", [c for c in papers.CLAIMS if c.value is not None and c.source],
                         ids=lambda c: f"{c.where}|{c.what[:40]}")
def test_every_claimed_number_is_printed_in_its_source(claim):
    assert _printed_in(claim.source, claim.value, percent=claim.unit == "%"), claim


def test_a_claim_without_a_filed_text_quotes_a_constant_of_an_unfiled_source():
    unfiled = {v for _, v, q in papers.quoted_numbers() if not papers.SOURCES[q.source][0]}
    for c in papers.CLAIMS:
        if c.value is not None and not c.source:
            assert c.value in unfiled, c


def test_every_constant_and_claim_names_a_known_source():
    files = {f for f, _ in papers.SOURCES.values() if f}
    assert all(q.source in papers.SOURCES and q.printed in ("%", "fraction", "plain")
               for q in papers.QUOTED.values())
    assert all(c.source in files or c.source == "" for c in papers.CLAIMS)
    assert all(c.where and c.direction in (-1, 0, 1) for c in papers.CLAIMS)
    # Every module-level constant that holds numbers is in QUOTED (or is another name of one, or labels).
    quoted_ids = {id(getattr(papers, n)) for n in papers.QUOTED}
    holders = [n for n in dir(papers) if n.isupper() and papers._leaves(getattr(papers, n))]
    assert [n for n in holders if id(getattr(papers, n)) not in quoted_ids and n not in LABELS] == []


@needs_texts
def test_the_sources_files_exist_and_their_dois_are_printed_there():
    for name, (file, citation) in papers.SOURCES.items():
        if file:
            doi = re.search(r"DOI (10\.\S+?)(?: |$)", citation)
            # The JPEG paper's cover page breaks its DOI's "ICSTCC" over a line ("IC-STCC").
            assert doi is None or doi.group(1) in _text(file).replace("IC-STCC", "ICSTCC"), name


# -- where each number stands -----------------------------------------------------------------------------------------

def _has_section(text: str, ref: str) -> bool:
    """Whether ``text`` has section ``ref``: "3.5.1" (a numbered heading), or "V.A.7" (heading "V.", then "A.", then
    "7)" below it, as APR and the JPEG paper number theirs)."""
    if ref[0].isdigit():
        return re.search(rf"(?m)^#+ {re.escape(ref)} ", text) is not None
    at = 0
    for part, mark in zip(ref.split("."), (r"\.", r"\.", r"\)")):
        found = re.compile(rf"(?m)^(?:#+ )?{part}{mark} ").search(text, at)
        if found is None:
            return False
        at = found.end()
    return True


def _cited_places(where: str) -> list[tuple[str, str]]:
    return re.findall(r"\b(Table|Figure|Sec\.) ((?:[0-9]+|[IVX]+)(?:\.[0-9A-Z]+)*)\b", where)


@needs_texts
@pytest.mark.parametrize("where, file", sorted({(c.where, c.source) for c in papers.CLAIMS if c.source} |
                                              {(q.where, papers.SOURCES[q.source][0]) for q in papers.QUOTED.values()
                                               if papers.SOURCES[q.source][0]}))
def test_the_tables_figures_and_sections_cited_exist_in_the_source(where, file):
    text = _text(file)
    for kind, number in _cited_places(where):
        if kind == "Sec.":
            assert _has_section(text, number), (where, file)
        else:
            pattern = rf"(?i)\btable {number}[:.]" if kind == "Table" else rf"\bFigure {number}:"
            assert re.search(pattern, text), (where, file)


def test_the_place_parser_reads_every_kind_of_reference():
    assert _cited_places("Sec. 3.5.3, Figure 14") == [("Sec.", "3.5.3"), ("Figure", "14")]
    assert _cited_places("Sec. V.A and Table I") == [("Sec.", "V.A"), ("Table", "I")]
    assert _has_section("## V. RESULTS\n### A. Setup\n7) DE\n", "V.A.7")
    assert not _has_section("## V. RESULTS\n7) DE\n### A. Setup\n", "V.A.7")  # order matters


@needs_texts
def test_the_apr_tables_are_the_datasets_they_are_quoted_as():
    text = _text(papers.APR_FILE)
    assert re.search(r"Table 1: Performance comparison on CIFAR-10", text)
    assert re.search(r"Table 2: Performance comparison on ImageNet", text)
    assert re.search(r"Table 3: Ablation study results on CIFAR-10", text)


@needs_texts
def test_the_survey_tables_and_figures_are_what_they_are_cited_for():
    text = _text(papers.SURVEY_FILE)
    for attack, n in papers.SURVEY_F1_TABLES.items():
        assert re.search(rf"Table {n}: Accuracy of CNN after", text), attack
    for key, n in papers.SURVEY_PREDICTION_TIME_TABLES.items():
        assert re.search(rf"Table {n}: (Baseline prediction time|Prediction time of CNN after)", text), key
    for defence, (section, figure, table) in papers.SURVEY_DEFENCE_WHERE.items():
        assert re.search(rf"(?m)^## {re.escape(section)} ", text), defence
        assert re.search(rf"Figure {figure}: CNN accuracy after", text), defence
        assert re.search(rf"Table {table}: Prediction time after", text), defence
        # The figure and the table sit in the defence's own section.
        body = re.split(r"(?m)^## 3\.\d(?:\.\d)? ", text.split(f"## {section} ", 1)[1], maxsplit=1)[0]
        assert f"Figure {figure}:" in body and f"Table {table}:" in body, defence


def test_the_survey_defence_claims_follow_its_conclusions():
    by = {c.measure.partition(":")[2]: c for c in papers.CLAIMS if c.measure.startswith("survey_defence:")}
    assert set(by) == set(papers.SURVEY_DEFENCES)
    # Sec. 3.5.3: gradient masking was ineffective; the other three raised accuracy under attack.
    assert by["gradient masking"].direction == 0 and "does not" in by["gradient masking"].what
    assert all(by[d].direction == -1 for d in papers.SURVEY_DEFENCES if d != "gradient masking")


# -- what the numbers say about each other ---------------------------------------------------------------------------

def test_robustness_is_100_minus_the_asr_and_the_reduction_follows_from_the_table():
    tables = {"Table 1": papers.APR2024_TABLE1, "Table 2": papers.APR2024_TABLE2, "Table 3": papers.APR2024_TABLE3}
    for name, table in tables.items():
        assert papers.APR2024_ROBUSTNESS[name] == {k: round(100 - asr, 2) for k, (_, asr) in table.items()}
    for dataset, table in (("CIFAR-10", papers.APR2024_TABLE1), ("ImageNet", papers.APR2024_TABLE2)):
        drop = 100 * (1 - table["APR"][1] / table["No defence"][1])
        assert round(drop, 1) == papers.APR2024_REDUCTION[dataset]


def test_the_journals_cifar10_figure_is_the_mean_of_its_three_networks():
    rates = [v["untargeted"] for v in papers.SU2019_CIFAR10.values()]
    assert round(sum(rates) / len(rates), 4) == papers.SU2019_CIFAR10_MEAN_UNTARGETED


def test_aprs_undefended_asr_equals_the_quoted_arxiv_v1_figure():
    v1 = 100 * papers.SU_ARXIV_V1_QUOTED_ANY_TARGET["CIFAR-10"]
    assert round(v1, 2) == papers.APR2024_TABLE1["No defence"][1] == papers.APR2024_SU_QUOTE
    assert f"{v1:.2f}%" in papers.APR2024_UNDEFENDED_ASR_EQUALS_SU_V1
    assert round(v1, 2) != round(100 * papers.SU2019_CIFAR10_MEAN_UNTARGETED, 2)  # not the journal's figure


def test_the_old_names_of_renamed_constants_are_the_same_objects():
    assert papers.SU2017_ARXIV_ANY_TARGET is papers.SU_ARXIV_SUMMARY_ANY_TARGET
    assert papers.SU2017_ARXIV_CONFIDENCE is papers.SU_ARXIV_SUMMARY_CONFIDENCE


def test_imagenet_claims_say_why_they_cannot_be_compared():
    table2 = [c for c in papers.CLAIMS if c.where.startswith("Table 2")]
    assert len(table2) == 2 * len(papers.APR2024_TABLE2)
    assert all(c.lab is None and c.not_comparable and "issue #" in c.pending for c in table2)
    assert not any("ImageNet" in c.where for c in papers.CLAIMS if c.where.startswith("Table 1"))


def test_the_books_own_questions_are_marked_and_worded_as_questions():
    ours = [c for c in papers.CLAIMS if c.ours]
    assert {c.measure for c in ours} == {"attention", "jpeg_specific"}
    assert all("?" in c.what and "book" in c.what for c in ours)


# -- pages that quote the constants by hand ---------------------------------------------------------------------------

def _quoted_rows(page: Path) -> list[tuple[float, str]]:
    """(percentage, constant expression) of each table row quoting a ``labkit.papers`` constant."""
    rows = re.findall(r"^\|.*\| ([\d.]+)% \| `([A-Z0-9_]+(?:\[\"[^\"]+\"\])?)` \|$", page.read_text(), re.MULTILINE)
    return [(float(value), expr) for value, expr in rows]


def _value(expr: str) -> float:
    name, _, key = expr.partition('["')
    value = getattr(papers, name)
    return float(value[key.rstrip('"]')] if key else value)


def test_the_imagenet_page_quotes_labkit_papers_exactly():
    rows = _quoted_rows(IMAGENET_PAGE)
    assert {expr for _, expr in rows} == {"SU2019_IMAGENET_UNTARGETED", 'SU_ARXIV_SUMMARY_ANY_TARGET["ImageNet"]',
                                          'SU_ARXIV_SUMMARY_CONFIDENCE["ImageNet"]'}
    for shown, expr in rows:
        assert shown == round(100 * _value(expr), 2), expr
    # Every two-decimal percentage anywhere on the page is one of those quotations: none is a measurement.
    assert {float(v) for v in re.findall(r"(\d+\.\d\d)%", IMAGENET_PAGE.read_text())} == {v for v, _ in rows}
