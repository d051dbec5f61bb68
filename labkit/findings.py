"""What the book found, at a glance: each lab's key result and the landing page's totals, generated from records.

Above the labs, beside ``labkit.claims`` (layer 9): it reads records only, so the book build (``tools/build_book.py``)
calls it after the labs ran and puts its Markdown at the top of each lab page (``key_result``) and on the landing
page (``findings_markdown``, ``findings_figure``). Every line is generated from numbers in a record; nothing is typed.

* ``key_result``: 3-5 lines for one lab: its verdict counts and its most decisive claim rows (contradicted first),
  or, for a lab that checks no paper's claim, its main rates with intervals (Labs 01-02) or proofs (Lab 12).
* ``findings_markdown``: per paper, how many claim rows got each verdict, with links to the labs and the chapter.
* ``findings_figure``: the paper's number against ours (95% CI) for every claim row that has both, one panel per
  unit.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from matplotlib.figure import Figure

from labkit import claims
from labkit.claims import Records
from labkit.labs import full_budget, verification
from labkit.plotting import COLUMN_IN, LabFigure

__all__ = ["DECISIVE", "FIGURE_UNITS", "key_result", "findings_markdown", "findings_figure"]

#: The verdicts a key result shows first, most telling first (a contradiction is news; "undecided" is not).
DECISIVE = ("contradicted", "supported", "direction supported", "not informative")
#: The units ``findings_figure`` draws, one panel each, with its axis label.
FIGURE_UNITS = {"%": "rate (%)", "points": "change (percentage points)", "F1": "macro-F1"}
_TITLES = {"%": "Rates", "points": "Changes", "F1": "Macro-F1"}
#: How a unit follows a number in a sentence.
_SUFFIX = {"%": "%", "points": " points", "% increase": "% more", "F1": " F1", "": ""}
#: The chapter every key result links to (a notebook beside the labs: MyST resolves it as the page).
CHAPTER = "claims_vs_measured.ipynb"


def _number(v: Any, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    sign = "+" if unit == "points" else ""
    return f"{v:{sign}g}{_SUFFIX.get(unit, ' ' + unit)}"


def _counts(rows: Sequence[dict[str, Any]]) -> str:
    """'2 contradicted, 1 supported, ...' in ``claims.VERDICTS`` order."""
    counts = {v: sum(r["verdict"] == v for r in rows) for v in claims.VERDICTS}
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n)


def _claim_line(r: dict[str, Any]) -> str:
    unit = r["unit"] or ""
    ours = f"{r['ours']}{_SUFFIX.get(unit, ' ' + unit)}" if r["ours"] else "—"
    ci = f" (95% CI {r['ci'].replace(' to ', ' – ')})" if r["ci"] else ""
    model = f" [{r['model']}]" if r["model"] else ""
    return (f"*{r['where']}*, {r['claim']}{model}: paper {_number(r['paper_value'], unit)}, ours {ours}{ci} → "
            f"**{r['verdict']}**")


def _rate_lines(record: dict[str, Any], limit: int) -> list[str]:
    """The first ``limit`` distinct attack rates of a record's tables, with their Wilson intervals."""
    out: dict[str, str] = {}
    for rows in record.get("tables", {}).values():
        for r in rows:
            if not all(k in r for k in ("asr", "asr_lo", "asr_hi", "attacked")):
                continue
            name = str(r.get("attack", "attack")) + (f", {r['pixels']} pixel(s)" if "pixels" in r else "")
            name += ", targeted" if r.get("targeted") and "targeted" not in name else ""
            out.setdefault(name, f"{name}: {100 * r['asr']:.0f}% of {r['attacked']} images fooled (95% CI "
                                 f"{100 * r['asr_lo']:.0f}–{100 * r['asr_hi']:.0f}%)")
    return list(out.values())[:limit]


def _proof_lines(recs: Records) -> list[str]:
    return [f"{r['model']}: {r['proven robust %']:g}% of {r['images']} images proven one-pixel robust, attacks fooled "
            f"{r['attacked ASR %']:g}%, so the true one-pixel ASR lies in {r['true ASR in (%)'].replace(' to ', '–')}%"
            for r in claims.proof_rows(recs)]


def _budget_lines(recs: Records) -> list[str]:
    return [f"{r['model']}: DE at {r['DE budget']} fooled {r['DE fooled']} of the {r['DE on (suite missed)']} images "
            f"the suite missed; the suite's ASR of {r['suite ASR %']:g}% becomes {r['ASR with it (%)']}% with it"
            for r in claims.budget_rows(recs)]


def key_result(recs: Records, lab: str, table: list[dict[str, Any]] | None = None, lines: int = 4) -> list[str]:
    """At most ``lines`` Markdown lines (no bullets) saying what lab ``lab`` (a notebook stem) found, from the
    records ``recs`` (``labkit.records.load_all``); ``table``: ``claims.claims_table(recs)`` when already built.
    Empty when there is no record of the lab."""
    if lab not in recs:
        return []
    table = claims.claims_table(recs) if table is None else table
    mine = [r for r in table if lab in (r["lab"] or "").split(", ") and r["verdict"] != "not measured"]
    if mine:
        # Most telling first: by verdict (``DECISIVE``, then undecided, then not comparable), rows with a number
        # before rows without.
        order = (*DECISIVE, "undecided", "not comparable")
        shown = sorted((r for r in mine if r["verdict"] in order),
                       key=lambda r: (order.index(r["verdict"]), not r["ours"]))
        head = f"The papers' claims this lab measures ({len(mine)} rows): {_counts(mine)}."
        return [head, *(_claim_line(r) for r in shown[:lines - 1])]
    if lab == verification.LAB:
        return _proof_lines(recs)[:lines]
    if lab == full_budget.LAB:
        return _budget_lines(recs)[:lines]
    return _rate_lines(recs[lab], lines)


def findings_markdown(recs: Records, table: list[dict[str, Any]] | None = None, figure: str | None = None) -> str:
    """The landing page's results section (Markdown): per paper the verdict counts of its claim rows and the labs
    that measure them, the figure ``figure`` (a path relative to the page) when given, and a link to the chapter."""
    table = claims.claims_table(recs) if table is None else table
    out = ["## What the book found", "",
           f"Every claim of the four papers, checked against the labs' committed records ({len(table)} rows; "
           "what each verdict word means: {doc}`glossary`):", ""]
    for paper in dict.fromkeys(r["paper"] for r in table):
        rows = [r for r in table if r["paper"] == paper]
        labs = sorted({lab for r in rows for lab in (r["lab"] or "").split(", ") if lab})
        links = ", ".join(f"{{doc}}`Lab {lab.split('_')[0]} </notebooks/{lab}>`" for lab in labs)
        out.append(f"- **{paper}**: {_counts(rows)}" + (f" (measured in {links})" if links else ""))
    if figure:
        out += ["", f"```{{figure}} {figure}", ":width: 100%", "",
                "The paper's number against ours for every claim row that has both (whiskers: our 95% CI; on the "
                "diagonal, ours equals the paper's). Filled: a verdict was reached; hollow: not comparable (another "
                "model or budget) or undecided.", "```"]
    out += ["", "Each row, with the model it was measured on, its interval and why its verdict is what it is: "
            "{doc}`/notebooks/claims_vs_measured`.", ""]
    return "\n".join(out)


#: Colours of the verdicts in ``findings_figure`` (colour-blind safe: Okabe-Ito).
VERDICT_COLOURS = {"supported": "#009E73", "direction supported": "#56B4E9", "contradicted": "#D55E00",
                   "not informative": "#E69F00", "undecided": "#999999", "not comparable": "#CC79A7"}
#: Markers of the papers in ``findings_figure``.
PAPER_MARKERS = ("o", "s", "^", "D")


def findings_figure(table: list[dict[str, Any]]) -> Figure | None:
    """The paper's number (x) against ours (y, 95% CI whiskers) for every claim row with both, one panel per unit
    of ``FIGURE_UNITS``; colour: the verdict, marker: the paper. None when no row has both numbers."""
    rows = [r for r in table if r["unit"] in FIGURE_UNITS and r["paper_value"] is not None
            and r.get("effect") is not None]
    units = [u for u in FIGURE_UNITS if any(r["unit"] == u for r in rows)]
    if not units:
        return None
    papers = list(dict.fromkeys(r["paper"] for r in table))
    # Two panels a row at the column's width (text stays legible at the size the book shows it); the legend
    # takes the last cell when the panels leave one, else a row of its own.
    nrows = -(-(len(units) + 1) // 2)  # cells: the panels and the legend
    fig = LabFigure(figsize=(COLUMN_IN, 3.0 * nrows), layout="constrained")
    grid = fig.subplots(nrows, 2, squeeze=False).ravel()
    axes, spare = grid[:len(units)], grid[len(units):]
    for ax, unit in zip(axes, units):
        mine = [r for r in rows if r["unit"] == unit]
        for r in mine:
            colour = VERDICT_COLOURS.get(r["verdict"], "#000000")
            filled = r["verdict"] in DECISIVE
            lo = r["effect"] - r["lo"] if r.get("lo") is not None else 0.0
            hi = r["hi"] - r["effect"] if r.get("hi") is not None else 0.0
            ax.errorbar(r["paper_value"], r["effect"], yerr=[[max(lo, 0.0)], [max(hi, 0.0)]], fmt="none",
                        ecolor=colour, elinewidth=1, alpha=0.8)
            ax.plot(r["paper_value"], r["effect"], PAPER_MARKERS[papers.index(r["paper"]) % len(PAPER_MARKERS)],
                    color=colour, markerfacecolor=colour if filled else "white", markersize=6)
        values = [v for r in mine for v in (r["paper_value"], r["lo"], r["hi"], r["effect"]) if v is not None]
        low, high = min(values), max(values)
        pad = 0.05 * (high - low or 1.0)
        ax.plot([low - pad, high + pad], [low - pad, high + pad], color="black", lw=0.8, ls="--")
        if low < 0 < high:
            ax.axhline(0, color="grey", lw=0.5)
            ax.axvline(0, color="grey", lw=0.5)
        ax.set_xlabel(f"paper's {FIGURE_UNITS[unit]}")
        ax.set_ylabel(f"ours, {FIGURE_UNITS[unit]}")
        ax.set_title(f"{_TITLES[unit]}: {len(mine)} rows", fontsize=9)
    shown_verdicts = [v for v in VERDICT_COLOURS if any(r["verdict"] == v for r in rows)]
    shown_papers = [p for p in papers if any(r["paper"] == p for r in rows)]
    handles = [axes[0].plot([], [], "o", color=VERDICT_COLOURS[v],
                            markerfacecolor=VERDICT_COLOURS[v] if v in DECISIVE else "white", label=v)[0]
               for v in shown_verdicts]
    handles += [axes[0].plot([], [], PAPER_MARKERS[papers.index(p) % len(PAPER_MARKERS)], color="black",
                             markerfacecolor="white", label=p)[0] for p in shown_papers]
    for ax in spare:
        ax.axis("off")
    spare[0].legend(handles=handles, loc="center", fontsize=8, frameon=False, ncols=2 if len(spare) > 1 else 1)
    return fig
