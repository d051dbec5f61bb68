"""labkit.papers: the papers' numbers, and the pages that quote them by hand where no notebook can print them."""

from __future__ import annotations

import re
from pathlib import Path

from labkit import papers

IMAGENET_PAGE = Path(__file__).resolve().parents[1] / "book" / "imagenet.md"


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
    assert {expr for _, expr in rows} == {"SU2019_IMAGENET_UNTARGETED", 'SU2017_ARXIV_ANY_TARGET["ImageNet"]',
                                          'SU2017_ARXIV_CONFIDENCE["ImageNet"]'}
    for shown, expr in rows:
        assert shown == round(100 * _value(expr), 2), expr
    # Every two-decimal percentage anywhere on the page is one of those quotations: none is a measurement.
    assert {float(v) for v in re.findall(r"(\d+\.\d\d)%", IMAGENET_PAGE.read_text())} == {v for v, _ in rows}
