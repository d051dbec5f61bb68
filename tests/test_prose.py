"""The notebooks' prose types no percentage that ``labkit.papers`` does not quote.

A number a run measures is printed by a code cell, never typed into a markdown cell (it would go stale with the next
run); a paper's number is typed only as ``labkit.papers`` registers it. So every percentage in a markdown cell of a
lab notebook must be one of the numbers registered there: its constants' numbers (as their sources print them) and
its claims' values.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from labkit import papers

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: A percentage: a number followed by "%" (or "\%" in LaTeX, or "per cent").
PERCENT = re.compile(r"(?<![\w.,])(\d+(?:\.\d+)?)\s*(?:\\?%|per ?cent\b)")
#: A confidence level names the interval's coverage, not a result: "95% interval", "95% Wilson interval",
#: "Wilson 95% intervals", "95% confidence intervals" (at most two words between the level and "interval").
CONFIDENCE_LEVEL = re.compile(r"95\s*%(?=(?:\s+[\w-]+){0,2}?\s+(?:intervals?|CIs?)\b)")


def registered() -> set[float]:
    """Every percentage ``labkit.papers`` registers, as the prose would print it (fractions in percent). Numbers its
    sources print bare (an F1 score, an epoch count, a population) are not percentages and do not count."""
    numbers = {v for _, v, q in papers.quoted_numbers() if q.printed in ("%", "fraction")}
    return numbers | {round(c.value, 6) for c in papers.CLAIMS if c.value is not None and c.unit == "%"}


def percentages(markdown: str) -> list[str]:
    """The percentages ``markdown`` types, confidence levels left out."""
    return [m.group(1) for m in PERCENT.finditer(CONFIDENCE_LEVEL.sub("", markdown))]


def offending(notebook: Path, allowed: set[float]) -> list[str]:
    """"<notebook> cell <i>: <number>%" for each percentage of a markdown cell that is not registered."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return [f"{notebook.name} cell {i}: {number}%" for i, cell in enumerate(cells) if cell["cell_type"] == "markdown"
            for number in percentages("".join(cell["source"])) if round(float(number), 6) not in allowed]


def test_the_patterns_read_percentages_and_leave_confidence_levels_alone():
    text = ("APR reports 21.43% (robustness 78.57 %), 5 \\% here, 12 per cent there, with a 95% Wilson interval, "
            "Wilson 95% intervals and 95% confidence intervals; but 95% of the images, and version 1.5.")
    assert percentages(text) == ["21.43", "78.57", "5", "12", "95"]


def test_a_registered_number_passes_and_any_other_is_listed(tmp_path):
    nb = tmp_path / "lab.ipynb"
    cells = [{"cell_type": "markdown", "source": ["The paper: 70.97% ", "and ours 41.5%."]},
             {"cell_type": "code", "source": ["print(f'{0.415:.1%}')  # 41.5% in code is printed, not typed"]}]
    nb.write_text(json.dumps({"cells": cells}))
    assert offending(nb, registered()) == ["lab.ipynb cell 0: 41.5%"]
    assert 70.97 in registered() and 68.36 in registered()  # a % constant and a fraction, as printed
    assert 400 not in registered() and 0.13 not in registered()  # a DE population and an F1 score are no percentages


def test_no_markdown_cell_types_a_percentage_that_labkit_papers_does_not_register():
    assert NOTEBOOKS
    allowed = registered()
    assert [o for nb in NOTEBOOKS for o in offending(nb, allowed)] == []
