"""Claims vs measured: every claim of the four source papers (``labkit.papers.CLAIMS``) beside what the labs'
result records (``labkit.records``) measured, with n, interval and the three-valued verdict of ``labkit.stats``.

Layer 8 of DESIGN.md: it reads records only (no model, no attack), so the chapter builds in seconds from the
committed ``results/<profile>/`` records. The verdicts are the labs' own (``labkit.report``), recomputed from
the recorded rows: a lab page and this chapter never disagree. A claim without a record, or without a lab yet,
has its row all the same, saying why.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from labkit import papers, report, stats
from labkit.stats import Verdict

__all__ = ["MEASURES", "claims_table", "markdown", "status_counts"]

#: The columns of ``claims_table``.
COLUMNS = ["paper", "where", "claim", "paper_value", "ours", "ci", "n", "p", "power", "verdict", "why", "lab"]

Records = dict[str, dict[str, Any]]


def _rows(record: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return record.get("tables", {}).get(table, [])


def _row(verdict: Verdict | None, *, ours: str = "", why: str = "", model: str | None = None) -> dict[str, Any]:
    """The measured columns of one chapter row, from a verdict (or a plain measurement without one)."""
    if verdict is None:
        return {"ours": ours, "ci": "", "n": None, "p": None, "power": None, "verdict": "undecided", "why": why}
    d = verdict.decimals
    both = not (math.isnan(verdict.lo) or math.isnan(verdict.hi))
    effect = "" if math.isnan(verdict.effect) else f"{verdict.effect:.{d}f} {verdict.unit}".replace(" %", "%")
    return {"ours": (f"[{model}] " if model else "") + (ours or effect),
            "ci": f"{verdict.lo:.{d}f} to {verdict.hi:.{d}f}" if both else "", "n": verdict.n,
            "p": verdict.p, "power": None if verdict.power is None else round(verdict.power, 2),
            "verdict": verdict.status, "why": (why + " " if why else "") + verdict.why}


# -- one function per kind of measurement: (claim, records) -> chapter rows (measured columns) ---------------------

def _su(claim: papers.Claim, recs: Records, network: str | None = None) -> list[dict[str, Any]]:
    """Su et al.'s claims from Lab 02b's summary rows (``report.su_verdicts``): one row per network, or the one
    network the claim names (``su_untargeted:<net>``)."""
    rec = recs[claim.lab]
    summary = rec.get("values", {}).get("summary") or []
    settings = rec.get("settings") or {}
    kind = claim.measure.partition(":")[0]
    verdicts = report.su_verdicts(summary, settings.get("population", 0), settings.get("generations", 0))
    return [_row(v, model=key.partition(":")[2]) for key, v in verdicts
            if key.partition(":")[0] == kind and (network is None or key.endswith(f":{network}"))]


def _clean(claim: papers.Claim, recs: Records, defence: str) -> list[dict[str, Any]]:
    rec = recs["05_apr"]
    eval_n = min(rec.get("config", {}).get("eval_size", 10_000), 10_000)
    out = []
    for r in _rows(rec, "suite"):
        if r.get("paper") == defence and r["attack"] == "DE k=1":
            v = report.on_paper_architecture(stats.rate_verdict(claim.what, round(r["clean_acc"] * eval_n), eval_n,
                                                                claim.value / 100, tolerance=0.02), r["model"])
            out.append(_row(v, model=f"{r['model']}, {r['defence']}"))
    return out


def _undefended_asr(claim: papers.Claim, recs: Records) -> list[dict[str, Any]]:
    rows = _rows(recs["05_apr"], "suite")
    out = []
    for arch in dict.fromkeys(r["model"] for r in rows):
        counts = report.rate_of(rows, "No defence", "DE k=1", arch)
        if counts:
            v = report.on_paper_architecture(stats.rate_verdict(claim.what, *counts, claim.value / 100), arch)
            out.append(_row(v, model=arch, why="Under DE, the paper's attack, at this run's budget."))
    return out


def _defence(claim: papers.Claim, recs: Records, key: str) -> list[dict[str, Any]]:
    rec = recs[claim.lab]
    # Labs 04-05 keep one table ("suite"); Lab 03 one per pipeline (and its replay table, without outcomes).
    rows = [r for t in rec.get("tables", {}).values() for r in t if "outcomes" in r and "model" in r]
    return [_row(v, model=f"{arch}, {v.claim.split(' lowers')[0]}")
            for arch, paper_key, v in report.keyed_defence_verdicts(rows) if paper_key == key]


def _ablation(claim: papers.Claim, recs: Records, variant: str) -> list[dict[str, Any]]:
    rows = _rows(recs["06_apr_ablation"], "suite")
    # The lab's own choice: the worst case over the attack suite where full APR has it, else DE.
    attack = next((report.attack_of(rows, a, "full") for a in dict.fromkeys(r["model"] for r in rows)), "DE k=1")
    return [_row(v, model=arch) for arch, var, v in report.keyed_ablation_verdicts(rows, attack) if var == variant]


def _overhead(claim: papers.Claim, recs: Records, kind: str) -> list[dict[str, Any]]:
    table = _rows(recs["07_apr_overhead"], "overhead")
    arch = claim.where.split("(")[-1].rstrip(")")
    out = []
    for r in table:
        if r.get("config") == "APR full":
            value = r.get("train_increase_pct" if kind == "training" else "infer_increase_pct")
            if value is None:
                continue
            same = r.get("model") == arch
            v = stats.overhead_verdict(claim.what, value, claim.value if same else None)
            out.append(_row(v, model=r.get("model"), why="" if same else
                            f"The paper timed {arch}; this run timed {r.get('model')}: no number to compare."))
    return out


def _attention(claim: papers.Claim, recs: Records) -> list[dict[str, Any]]:
    table = _rows(recs["08_attention_maps"], "claim")
    out = []
    for r, v in zip(table, report.claim_verdicts(table)):
        label = f"{r['model']}, {r['attack']}, vs {r['reference']}"
        out.append(_row(v, model=label) if v is not None else
                   _row(None, ours=f"[{label}]", why=f"Not tested: {r['successes']} success pixels on {r['images']} "
                                                     f"images; at least {report.MIN_IMAGES} are needed."))
    return out


def _jpeg(claim: papers.Claim, recs: Records, *_: str) -> list[dict[str, Any]]:
    rec = recs["09_jpeg_recovery"]
    arch = rec.get("models", {}).get("base", [{}])[0].get("model", "?")
    def label(v: Verdict) -> str:  # which recovery a row measures: the paper's (oracle) or the label-free one
        return next((f"{arch}, {who}" for who in ("oracle", "label-free") if who in v.claim), arch)

    return [_row(v, model=label(v)) for key, v in report.keyed_recovery_verdicts(_rows(rec, "table"), arch)
            if key == claim.measure]


def _survey_f1(claim: papers.Claim, recs: Records, *_: str) -> list[dict[str, Any]]:
    rows = _rows(recs["10_survey_attacks"], "attacks")
    datasets = {r["dataset"] for r in rows}
    ours = {report.SURVEY_PAPER_DATASET[d]: d for d in datasets}  # the survey's dataset -> the one measured
    paper_ds = claim.measure.rsplit("|", 1)[-1]
    out = [_row(v, model=f"survey_cnn, {ours.get(paper_ds, '?')}") for key, v in report.survey_f1_verdicts(rows)
           if key == claim.measure]
    if not out and claim.measure.endswith("|GTSRB") and "gtsrb" not in datasets:
        return [{**_row(None, why="Not measured here: no GTSRB copy (set LABKIT_GTSRB to an ImageFolder of it)."),
                 "verdict": "not measured"}]
    return out


def _survey_defence(claim: papers.Claim, recs: Records, *_: str) -> list[dict[str, Any]]:
    rows = _rows(recs["11_survey_defences"], "grid")
    return [_row(v, model=v.claim.split("]")[0].lstrip("[")) for key, v in report.survey_defence_verdicts(rows)
            if key == claim.measure]


#: How each kind of claim is measured from the records (``papers.Claim.measure`` = "<kind>[:<argument>]").
MEASURES: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "su_untargeted": _su, "su_any_target": _su, "su_pixels": _su, "su_confidence": _su,
    "clean": _clean, "undefended_asr": _undefended_asr, "defence": _defence,
    "ablation": _ablation, "overhead": _overhead, "attention": _attention, "jpeg_fgsm": _jpeg, "jpeg": _jpeg,
    "jpeg_recovery": _jpeg, "jpeg_specific": _jpeg, "survey_f1": _survey_f1, "survey_defence": _survey_defence,
}


def claims_table(recs: Records, claims: tuple[papers.Claim, ...] = papers.CLAIMS) -> list[dict[str, Any]]:
    """One row per (claim, measurement): every claim appears, measured or with the reason it is not.

    ``recs``: lab name -> record JSON (``labkit.records.load_all``). Columns ``COLUMNS``: the paper, where in it,
    the claim, the paper's number, ours (with the model in brackets), its 95% interval, n, p, power, the verdict
    (supported / contradicted / undecided / not measured) and why, and the lab that measures it.
    """
    out = []
    for c in claims:
        head = {"paper": c.paper, "where": c.where, "claim": c.what, "paper_value": c.value, "lab": c.lab or ""}
        if c.lab is None:
            out.append({**head, **_row(None, why=c.pending), "verdict": "not measured"})
            continue
        if c.lab not in recs:
            out.append({**head, **_row(None, why=f"No record of {c.lab} in this profile's results yet: run the lab."),
                        "verdict": "not measured"})
            continue
        kind, _, arg = c.measure.partition(":")
        measured = MEASURES[kind](c, recs, *([arg] if arg else []))
        if not measured:
            measured = [{**_row(None, why=f"{c.lab}'s record holds nothing that measures this claim."),
                         "verdict": "not measured"}]
        out += [{**head, **m} for m in measured]
    return [{col: r.get(col) for col in COLUMNS} for r in out]


def status_counts(table: list[dict[str, Any]]) -> dict[str, int]:
    """How many rows of ``claims_table`` have each verdict."""
    counts: dict[str, int] = {}
    for r in table:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    return counts



def markdown(table: list[dict[str, Any]]) -> str:
    """``claims_table`` as Markdown for the chapter: per paper a compact table (where and what, the paper's number,
    ours, interval, n, verdict), each row numbered, then by number the lab, the p-value and the reason (long
    sentences do not fit a table on a book page)."""
    def fmt(v: Any, spec: str = "g") -> str:  # empty for a missing number
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return f"{v:{spec}}" if isinstance(v, (int, float)) else str(v)

    out: list[str] = []
    for paper in dict.fromkeys(r["paper"] for r in table):
        rows = [r for r in table if r["paper"] == paper]
        out += [f"### {paper}", "", "| # | claim | paper | ours | 95% CI | n | verdict |", "|---|---|---|---|---|---|---|"]
        for k, r in enumerate(rows, 1):
            cells = [str(k), f"*{r['where']}*: {r['claim']}", fmt(r["paper_value"]), r["ours"] or "", r["ci"] or "",
                     fmt(r["n"]), f"**{r['verdict']}**"]
            out.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        out.append("")
        for k, r in enumerate(rows, 1):
            head = ", ".join(x for x in (f"lab {r['lab']}" if r["lab"] else "", f"p = {fmt(r['p'], '.3g')}"
                                         if r["p"] is not None else "") if x)
            out.append(f"{k}. " + (f"({head}) " if head else "") + (r["why"] or ""))
        out.append("")
    return "\n".join(out)
