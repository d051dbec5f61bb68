"""Claims vs measured: every claim of the four source papers (``labkit.papers.CLAIMS``) beside what the labs'
result records (``labkit.records``) measured, with n, interval and the three-valued verdict of ``labkit.stats``.

Above the labs (layer 9 of DESIGN.md; the only labkit module that imports ``labkit.labs``): it reads records only
(no model, no attack), so the chapter builds in seconds from the committed ``results/<profile>/`` records. The
verdicts are the labs' own (their modules in ``labkit.labs``), recomputed from the recorded rows: a lab page and this
chapter never disagree. The records and their steps are found by the names those modules export (``LAB``,
``..._STEP``). A claim without a record, or without a lab yet, has its row all the same, saying why.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

from labkit import data, papers, report, stats
from labkit.labs import apr_paper, apr_tables, attention_maps, full_budget, recovery, su, survey, verification
from labkit.stats import Verdict
from labkit.suites import SUITE, WORST_CASE

__all__ = ["ATTACKS_ONLY", "COLUMNS", "MEASURES", "ONE_PIXEL_MEASURES", "UNIT_HEADINGS", "VERDICTS", "budget_note",
           "budget_rows", "claims_table", "markdown", "paper_value", "proof_note", "proof_rows", "provenance_rows",
           "status_counts", "totals"]

#: The columns of ``claims_table``.
COLUMNS = ["paper", "where", "claim", "paper_value", "model", "attackers", "ours", "ci", "n", "p", "power", "verdict",
           "label", "why", "lab", "unit", "ours_question", "robust", "detail", "effect", "lo", "hi"]
#: Every verdict a row can have, in the order the chapter counts them: ``labkit.stats.STATUSES`` and "not measured"
#: (no lab or no record measures the claim).
VERDICTS: tuple[str, ...] = (*stats.STATUSES, "not measured")

Records = dict[str, dict[str, Any]]


def _rows(record: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return record.get("tables", {}).get(table, [])


#: What a lab's verdict function returned in the current ``claims_table`` call, by (function, id of the record or
#: rows it read, arguments): a lab's verdicts are computed once however many of its claims read them (the survey's
#: paired tests took 2.6 s a call, four calls a chapter). Emptied when the call ends.
_ONCE: dict[tuple[Any, ...], Any] = {}


def _once(fn: Callable[..., Any], source: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(source, *args, **kwargs)``, computed once per ``claims_table`` call (hashable arguments only)."""
    key = (fn, id(source), args, tuple(sorted(kwargs.items())))
    if key not in _ONCE:
        _ONCE[key] = fn(source, *args, **kwargs)
    return _ONCE[key]


def _row(verdict: Verdict | None, *, ours: str = "", why: str = "", model: str | None = None,
         attackers: str = "") -> dict[str, Any]:
    """The measured columns of one chapter row, from a verdict (or a plain measurement without one). Numbers are
    written in the verdict's unit without it (the chapter's table for that unit names it once)."""
    if verdict is None:
        return {"model": model or "", "ours": ours, "ci": "", "n": None, "p": None, "power": None,
                "verdict": "undecided", "label": "", "why": why, "attackers": attackers}
    d = verdict.decimals
    both = not (math.isnan(verdict.lo) or math.isnan(verdict.hi))
    sign = "+" if verdict.unit in ("points", "") else ""
    effect = "" if math.isnan(verdict.effect) else f"{verdict.effect:{sign}.{d}f}"
    numbers = {k: None if math.isnan(v) else v for k, v in
               (("effect", verdict.effect), ("lo", verdict.lo), ("hi", verdict.hi))}  # for figures
    return {"model": model or "", "ours": ours or effect, "unit": verdict.unit, **numbers,
            "ci": f"{verdict.lo:{sign}.{d}f} to {verdict.hi:{sign}.{d}f}" if both else "", "n": verdict.n,
            "p": verdict.p, "power": None if verdict.power is None else round(verdict.power, 2),
            "verdict": verdict.status, "label": verdict.label, "attackers": attackers, "detail": verdict.claim,
            "why": (why + " " if why else "") + verdict.why}


# -- one function per kind of measurement: (claim, records) -> chapter rows (measured columns) ---------------------

def _su(claim: papers.Claim, recs: Records, network: str | None = None) -> list[dict[str, Any]]:
    """Su et al.'s claims from Lab 02b's summary rows (``su.su_verdicts``): one row per network, or the one
    network the claim names (``su_untargeted:<net>``)."""
    rec = recs[claim.lab]
    summary = rec.get("values", {}).get(su.SUMMARY_STEP) or []
    settings = rec.get("settings") or {}
    kind = claim.measure.partition(":")[0]
    verdicts = su.su_verdicts(summary, settings.get("population", 0), settings.get("generations", 0))
    return [_row(v, model=key.partition(":")[2]) for key, v in verdicts
            if key.partition(":")[0] == kind and (network is None or key.endswith(f":{network}"))]


def _clean(claim: papers.Claim, recs: Records, defence: str) -> list[dict[str, Any]]:
    rec = recs[apr_paper.TABLE1_LAB]
    eval_n = min(rec.get("config", {}).get("eval_size", 10_000), 10_000)
    out = []
    for r in _rows(rec, apr_paper.SUITE_STEP):
        if r.get("paper") == defence and r["attack"] == "DE k=1":
            v = report.on_paper_architecture(stats.rate_verdict(claim.what, round(r["clean_acc"] * eval_n), eval_n,
                                                                claim.value / 100, tolerance=0.02), r["model"],
                                             apr_tables.APR_ARCHITECTURES)
            out.append(_row(v, model=f"{r['model']}, {r['defence']}"))
    return out


def _undefended_asr(claim: papers.Claim, recs: Records) -> list[dict[str, Any]]:
    rows = _rows(recs[apr_paper.TABLE1_LAB], apr_paper.SUITE_STEP)
    out = []
    for arch in dict.fromkeys(r["model"] for r in rows):
        counts = apr_tables.rate_of(rows, "No defence", "DE k=1", arch)
        if counts:
            v = report.on_paper_architecture(stats.rate_verdict(claim.what, *counts, claim.value / 100), arch,
                                             apr_tables.APR_ARCHITECTURES)
            out.append(_row(v, model=arch, why="Under DE, the paper's attack, at this run's budget."))
    return out


def _defence_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    # Labs 04-05 keep one table ("suite"); Lab 03 one per pipeline (and its replay table, without outcomes).
    return [r for t in rec.get("tables", {}).values() for r in t if "outcomes" in r and "model" in r]


def _defence_verdicts(rec: dict[str, Any]) -> list[tuple[str, str, Verdict]]:
    return apr_tables.keyed_defence_verdicts(_defence_rows(rec))


def _defence(claim: papers.Claim, recs: Records, key: str) -> list[dict[str, Any]]:
    rec = recs[claim.lab]
    rows = _defence_rows(rec)
    out = []
    for arch, paper_key, v in _once(_defence_verdicts, rec):
        if paper_key != key:
            continue
        defence = v.claim.split(" lowers")[0]
        attack = WORST_CASE if WORST_CASE in v.claim else "DE k=1"
        ref, mine = (apr_tables.find_row(rows, d, attack, arch) for d in ("No defence", defence))
        robust = (f"{100 * ref['robust_acc']:.1f} → {100 * mine['robust_acc']:.1f}"
                  if ref and mine and "robust_acc" in ref and "robust_acc" in mine else "")
        caveat = data.JPEG_SOURCE_CAVEAT if "JPEG" in defence else ""
        out.append({**_row(v, model=f"{arch}, {defence}", attackers=_suite_attackers(v.claim), why=caveat),
                    "robust": robust})
    return out


def _suite_attackers(claim: str) -> str:
    """Which attackers a Labs 03-05 defence verdict covers: every attack of the suite queries the defended pipeline
    (black-box ones see any preprocessing; the white-box corner takes gradients through it)."""
    if WORST_CASE in claim:
        return "worst case over " + ", ".join(SUITE) + ", all against the defended pipeline"
    return "DE k=1 against the defended pipeline"


def _ablation(claim: papers.Claim, recs: Records, variant: str) -> list[dict[str, Any]]:
    rows = _rows(recs[apr_paper.ABLATION_LAB], apr_paper.SUITE_STEP)
    # The lab's own choice: the worst case over the attack suite where full APR has it, else DE.
    attack = next((apr_tables.attack_of(rows, a, "full") for a in dict.fromkeys(r["model"] for r in rows)), "DE k=1")
    return [_row(v, model=arch) for arch, var, v in apr_tables.keyed_ablation_verdicts(rows, attack) if var == variant]


def _overhead(claim: papers.Claim, recs: Records, kind: str) -> list[dict[str, Any]]:
    table = _rows(recs[apr_paper.OVERHEAD_LAB], apr_paper.OVERHEAD_STEP)
    arch = claim.where.split("(")[-1].rstrip(")")
    out = []
    for r in table:
        if r.get("config") == "APR full":
            value = r.get("train_increase_pct" if kind == "training" else "infer_increase_pct")
            if value is None:
                continue
            same = r.get("model") == arch
            v = stats.overhead_verdict(claim.what, value, claim.value if same else None)
            if not same:  # another network's overhead: no n would decide it
                v = dataclasses.replace(v, status="not comparable", direction=None, size=None, why=f"Not comparable: the paper timed {arch}; "
                                        f"this run timed {r.get('model')}.")
            out.append(_row(v, model=r.get("model")))
    return out


def _attention(claim: papers.Claim, recs: Records) -> list[dict[str, Any]]:
    table = _rows(recs[attention_maps.LAB], attention_maps.CLAIM_STEP)
    out = []
    for r, v in zip(table, attention_maps.claim_verdicts(table)):
        label = f"{r['model']}, {r['attack']}, vs {r['reference']}"
        out.append(_row(v, model=label) if v is not None else
                   _row(None, model=label, why=f"Not tested: {r['successes']} success pixels on {r['images']} "
                                               f"images; at least {report.MIN_IMAGES} are needed."))
    return out


def _jpeg(claim: papers.Claim, recs: Records, *_: str) -> list[dict[str, Any]]:
    rec = recs[recovery.LAB]
    arch = rec.get("models", {}).get(recovery.BASE_STEP, [{}])[0].get("model", "?")
    def label(v: Verdict) -> str:  # which recovery a row measures: the paper's (oracle) or the label-free one
        return next((f"{arch}, {who}" for who in ("oracle", "label-free") if who in v.claim), arch)

    caveat = data.JPEG_SOURCE_CAVEAT if claim.measure.startswith(("jpeg:", "jpeg_recovery:")) else ""
    blind = "FGSM crafted on the model, blind to the JPEG step (the paper's protocol)" if claim.measure.startswith(
        ("jpeg:", "jpeg_recovery:")) else ""
    rows = _rows(rec, recovery.TABLE_STEP)
    return [{**_row(v, model=label(v), attackers=blind, why=caveat), **({"ours_question": True} if "label-free" in v.claim else {})}
            for key, v in _once(recovery.keyed_recovery_verdicts, rows, arch) if key == claim.measure]


def _survey_f1(claim: papers.Claim, recs: Records, *_: str) -> list[dict[str, Any]]:
    rows = _rows(recs[survey.ATTACKS_LAB], survey.ATTACKS_STEP)
    datasets = {r["dataset"] for r in rows}
    ours = {survey.SURVEY_PAPER_DATASET[d]: d for d in datasets}  # the survey's dataset -> the one measured
    paper_ds = claim.measure.rsplit("|", 1)[-1]
    out = [_row(v, model=f"survey_cnn, {ours.get(paper_ds, '?')}") for key, v in _once(survey.survey_f1_verdicts, rows)
           if key == claim.measure]
    if not out and claim.measure.endswith("|GTSRB") and "gtsrb" not in datasets:
        return [{**_row(None, why="Not measured here: no GTSRB copy (set LABKIT_GTSRB to an ImageFolder of it)."),
                 "verdict": "not measured"}]
    return out


def _survey_defence_verdicts(rows: list[dict[str, Any]], directions: tuple[tuple[str, int], ...]
                             ) -> list[tuple[str, Verdict]]:
    return survey.survey_defence_verdicts(rows, directions=dict(directions))


def _survey_defence(claim: papers.Claim, recs: Records, defence: str = "") -> list[dict[str, Any]]:
    """Lab 11's defence claims, judged as the lab judges them: the worst case per image over the four attacks and
    every attacker run on the defence (the survey's and the one who knows the defence), in the claim's direction."""
    rows = _rows(recs[survey.DEFENCES_LAB], survey.GRID_STEP)
    defence = defence or claim.measure.partition(":")[2]
    # Every survey-defence claim's direction at once, so the lab's paired tests run once for all of them.
    directions = {c.measure.partition(":")[2]: c.direction for c in papers.CLAIMS
                  if c.measure.startswith("survey_defence:")} | {defence: getattr(claim, "direction", -1)}
    verdicts = _once(_survey_defence_verdicts, rows, tuple(sorted(directions.items())))
    # The claim reads "[dataset] ... (worst case per image; attackers: <who>)": drop only that closing parenthesis (the
    # label itself can end in one: "... (they attack the defended pipeline as deployed)").
    return [_row(v, model=v.claim.split("]")[0].lstrip("["), attackers=v.claim.rsplit("attackers: ", 1)[-1][:-1])
            for key, v in verdicts if key == claim.measure]


#: How each kind of claim is measured from the records (``papers.Claim.measure`` = "<kind>[:<argument>]").
MEASURES: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "su_untargeted": _su, "su_any_target": _su, "su_pixels": _su, "su_confidence": _su,
    "clean": _clean, "undefended_asr": _undefended_asr, "defence": _defence,
    "ablation": _ablation, "overhead": _overhead, "attention": _attention, "jpeg_fgsm": _jpeg, "jpeg": _jpeg,
    "jpeg_recovery": _jpeg, "jpeg_specific": _jpeg, "survey_f1": _survey_f1, "survey_defence": _survey_defence,
}


#: The measures judged by one-pixel attacks alone (Labs 02b, 04-06): their rows say that no proof covers the model.
ONE_PIXEL_MEASURES = ("su_untargeted", "su_any_target", "su_pixels", "su_confidence", "undefended_asr", "defence",
                      "ablation")
#: What such a row adds to its reasons.
ATTACKS_ONLY = ("Judged by attacks only: no proof covers this model (the proofs table lists the models Lab 12 "
                "proves).")


def budget_rows(recs: Records) -> list[dict[str, Any]]:
    """Lab 05b's check per model, for the chapter: Lab 05's suite beside DE at the papers' budget on the images the
    suite missed (how many it attacked and fooled), and the range of the ASR of both together (%; empty without a
    record)."""
    rows = _rows(recs.get(full_budget.LAB, {}), full_budget.BUDGET_STEP)
    return [{"model": r["defence"], "images": r["attacked"], "suite ASR %": round(100 * r["suite_asr"], 1),
             "DE budget": f"{r['population']} x {r['generations']}", "DE on (suite missed)": r["full_budget_attacked"],
             "DE fooled": r["full_budget_fooled"],
             "ASR with it (%)": (f"{100 * r['asr_both_lo']:.1f} to {100 * r['asr_both_hi']:.1f}"
                                 if r["full_budget_attacked"] else f"{100 * r['suite_asr']:.1f}"),
             "lab": _lab_link(full_budget.LAB)} for r in rows]


def budget_note(recs: Records) -> str:
    """What a row judged by Lab 05's suite adds about the full-budget check (Lab 05b), or "" without its record."""
    rows = _rows(recs.get(full_budget.LAB, {}), full_budget.BUDGET_STEP)
    if not rows:
        return ""
    found = ", ".join(f"{r['defence']}: {r['full_budget_fooled']} of {r['full_budget_attacked']}" for r in rows)
    return (f"Full-budget check (Lab 05b): DE at {rows[0]['population']} x {rows[0]['generations']} on images Lab "
            f"05's suite missed fooled {found} (see the table under 'Attacked hard enough?').")


def proof_note(recs: Records, lab: str, model: str, defences: Sequence[str] | None = None) -> str:
    """Lab 12's proven bounds on the models a one-pixel row of ``lab`` measured, or "" where Lab 12 proved none of
    them. ``model``: the row's "small_cnn" or "small_cnn, <defence>"; ``defences``: the row's defences where that
    string does not name them (Lab 06's ablation rows compare a variant with "full"). A model counts as proven where
    one of Lab 12's ``claimed`` models has the cache key of the row lab's model of that defence: Lab 12 proves the
    defence labs' recipes, retrained on its machine, on its own images (Lab 04 shares Lab 05's AT and DD, Lab 06's
    "full" is Lab 05's APR)."""
    names = list(defences) if defences else [model.partition(", ")[2] or "No defence"]
    ours = recs.get(verification.LAB, {})
    proved = {m.get("key"): m.get("defence") for m in ours.get("models", {}).get("claimed", [])}
    keys = {m.get("defence"): m.get("key") for ms in recs.get(lab, {}).get("models", {}).values() for m in ms}
    bracket = {r["model"]: r for r in _rows(ours, verification.BRACKET_STEP)}
    parts = []
    for name in names:
        mine = proved.get(keys[name]) if keys.get(name) is not None else None
        row = bracket.get(verification.claimed_name(mine)) if mine is not None else None
        if row is not None:
            parts.append(f"{name + ': ' if len(names) > 1 else ''}{round(100 * row['proven'], 1)}% of "
                         f"{row['certified']} images proven robust, true ASR in {100 * row['bracket_lo']:.1f} to "
                         f"{100 * row['bracket_hi']:.1f}%")
    if not parts:
        return ""
    return (f"Judged by attacks; the proven bound (Lab 12, on a retrain of the recipe and Lab 12's images): "
            f"{'; '.join(parts)} (see the proofs table).")


def proof_rows(recs: Records) -> list[dict[str, Any]]:
    """Lab 12's bracket per model, for the chapter: clean accuracy, the share of correctly classified images proven
    one-pixel robust, the attacks' success rate and the bracket on the true one-pixel ASR (%; empty without a
    record)."""
    rows = _rows(recs.get(verification.LAB, {}), verification.BRACKET_STEP)
    return [{"model": r["model"], "clean acc. %": round(100 * r["clean_acc"], 1), "images": r["certified"],
             "proven robust %": round(100 * r["proven"], 1), "unknown %": round(100 * r["unknown"], 1),
             "attacked ASR %": round(100 * r["asr"], 1),
             "true ASR in (%)": f"{100 * r['bracket_lo']:.1f} to {100 * r['bracket_hi']:.1f}",
             "lab": _lab_link(verification.LAB)} for r in rows]


def _merge_duplicates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per measurement: two labs that attacked the same model on the same images (Labs 04 and 05 share AT
    and DD) measure the same thing; keep the first lab's row and list both labs in its ``lab`` column. Their
    verdicts can differ only through the family each lab's table forms (Bonferroni over its comparisons): the row
    then says what the other lab's wider family reads."""
    out: list[dict[str, Any]] = []
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        key = (r["claim"], r["detail"], r["model"], r["ours"], r["n"])
        if r["n"] is None or key not in seen:
            seen[key] = r
            out.append(r)
            continue
        first = seen[key]
        first["lab"] = ", ".join(dict.fromkeys([*first["lab"].split(", "), r["lab"]]))
        if (r["verdict"], r["ci"]) != (first["verdict"], first["ci"]):
            first["why"] += (f" Lab {r['lab'].split('_')[0]} measures the same images; as one of its table's family "
                             f"of comparisons its interval is {r['ci']} and it reads {r['verdict']}.")
    return out


def claims_table(recs: Records, claims: tuple[papers.Claim, ...] = papers.CLAIMS) -> list[dict[str, Any]]:
    """One row per (claim, measurement): every claim appears, measured or with the reason it is not.

    ``recs``: lab name -> record JSON (``labkit.records.load_all``). Columns ``COLUMNS``: the paper, where in it,
    the claim, the paper's number, the model (and dataset) ours was measured on, the attackers a defence row's worst
    case covers, ours, its interval, n, p, power, the verdict (one of ``VERDICTS``) with its direction/size
    ``label``, why, the lab(s) that measure it, the unit of ``paper_value``/``ours``/``ci`` and whether the claim is
    the book's own question (``ours_question``) rather than the paper's. A measurement two labs share is one row.
    """
    try:
        return _claims_table(recs, claims)
    finally:
        _ONCE.clear()


def _claims_table(recs: Records, claims: tuple[papers.Claim, ...]) -> list[dict[str, Any]]:
    out = []
    # What a one-pixel row adds to its reasons: Lab 12's proof of its model where Lab 12 proved it (else that only
    # attacks judge it), and for Lab 05's rows the full-budget check (Lab 05b's record).
    budget = budget_note(recs)
    for c in claims:
        head = {"paper": c.paper, "where": c.where, "claim": c.what, "paper_value": c.value, "lab": c.lab or "",
                "ours_question": bool(getattr(c, "ours", False)), "unit": c.unit}
        reason = getattr(c, "not_comparable", "")
        if c.lab is None:
            out.append({**head, **_row(None, why=reason or c.pending),
                        "verdict": "not comparable" if reason else "not measured"})
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
        elif kind in ONE_PIXEL_MEASURES:
            extra = budget if c.lab == apr_paper.TABLE1_LAB else ""
            pair = (arg, "full") if kind == "ablation" else None  # an ablation row compares the variant with full APR
            measured = [{**m, "why": " ".join(filter(None, [
                m.get("why") or "", proof_note(recs, c.lab, m.get("model") or "", pair) or ATTACKS_ONLY,
                extra])).strip()} for m in measured]
        # A verdict's unit is the row's, "" (a fraction) included; a plain measurement takes the claim's.
        units = [m["unit"] if "unit" in m else c.unit for m in measured]
        out += [{**head, **m, "unit": u, "paper_value": paper_value(c, u)} for m, u in zip(measured, units)]
    return _merge_duplicates([{col: r.get(col) for col in COLUMNS} for r in out])


def paper_value(claim: papers.Claim, unit: str) -> float | None:
    """The paper's number in the unit of a measured row: the claim's value, or, where the lab measured a change
    (points) of a claim stated as two rates, the paper's change (value - baseline); None where the paper gives no
    number in that unit (a column never mixes a rate with a change)."""
    if unit == claim.unit or claim.value is None:
        return claim.value
    if unit == "points" and claim.unit == "%" and claim.baseline is not None:
        return round(claim.value - claim.baseline, 2)
    return None


def status_counts(table: list[dict[str, Any]]) -> dict[str, int]:
    """How many rows of ``claims_table`` have each verdict, in ``VERDICTS`` order (verdicts with no row left out)."""
    counts = {v: sum(r["verdict"] == v for r in table) for v in VERDICTS}
    return {v: n for v, n in counts.items() if n}


def totals(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows per paper and verdict (the chapter's first table): one dict per paper with a count per verdict and the
    total, then an "all papers" row."""
    out = []
    for paper in [*dict.fromkeys(r["paper"] for r in table), None]:
        rows = [r for r in table if paper is None or r["paper"] == paper]
        counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
        out.append({"paper": paper or "all papers", **counts, "rows": len(rows)})
    return out


#: How each unit's rows are headed in the chapter (one unit per table: rates, changes, F1 and timings never share
#: a column).
UNIT_HEADINGS = {"%": "Rates (%)", "points": "Changes (percentage points)", "F1": "Macro-F1",
                 "% increase": "Overheads (% increase)",
                 "": "Differences (fractions: of images fooled, or of attention percentiles in Lab 08)"}


def _lab_link(labs: str) -> str:
    """Markdown links to the lab pages (the chapter and the labs are notebooks of the same folder: MyST resolves a
    link to a notebook as a link to its page, and JupyterLab opens the notebook)."""
    return ", ".join(f"[{lab.split('_')[0]}]({lab}.ipynb)" for lab in labs.split(", ") if lab)


def provenance_rows(recs: Records) -> list[dict[str, Any]]:
    """One row per record for the chapter's "where the numbers come from" table (empty without records)."""
    return [{"lab": lab, "profile": r["profile"], "date (UTC)": r["provenance"]["date"][:16].replace("T", " "),
             "commit": (r["provenance"]["commit"] or "")[:10], "device": r["provenance"]["device"],
             "precision": r["provenance"]["precision"].split("-> ")[-1].split()[0],
             "recording wall (min)": round(r.get("wall_seconds", 0) / 60, 1)} for lab, r in recs.items()]


def markdown(table: list[dict[str, Any]]) -> str:
    """``claims_table`` as Markdown for the chapter: the totals first, then per paper one table per unit (where and
    what, the paper's number, the model, ours, interval, n, verdict, lab links), each row numbered, then by number
    the reason (long sentences do not fit a table on a book page)."""
    def fmt(v: Any, spec: str = "g") -> str:  # empty for a missing number
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return f"{v:{spec}}" if isinstance(v, (int, float)) else str(v)

    def cell(c: str) -> str:
        return c.replace("|", "/")

    shown = [v for v in VERDICTS if any(r["verdict"] == v for r in table)]
    out = ["**Totals** (rows per paper and verdict)", "", "| paper | " + " | ".join(shown) + " | rows |",
           "|---" * (len(shown) + 2) + "|"]
    for t in totals(table):
        out.append("| " + " | ".join([t["paper"], *(str(t[v]) for v in shown), str(t["rows"])]) + " |")
    out.append("")
    for paper in dict.fromkeys(r["paper"] for r in table):
        rows = [r for r in table if r["paper"] == paper]
        out += [f"### {paper}", ""]
        k = 0
        reasons: list[str] = []
        for unit in dict.fromkeys(r["unit"] or "" for r in rows):
            mine = [r for r in rows if (r["unit"] or "") == unit]
            robust = any(r.get("robust") for r in mine)  # defence rows: robust accuracy beside the ASR change
            out += [f"**{UNIT_HEADINGS.get(unit, unit)}**", "",
                    "| # | claim | paper | measured on | ours | 95% CI | n | "
                    + ("robust acc. % (undefended → defended) | " if robust else "") + "verdict | lab |",
                    "|---" * (10 if robust else 9) + "|"]
            for r in mine:
                k += 1
                claim = f"*{r['where']}*: {r['claim']}" + (" *(the book's question)*" if r["ours_question"] else "")
                verdict = f"**{r['verdict']}**" + (f" ({r['label']})" if r.get("label") else "")
                cells = [str(k), claim, fmt(r["paper_value"], "+g" if unit == "points" else "g"), r["model"] or "", r["ours"] or "", r["ci"] or "",
                         fmt(r["n"]), *([r.get("robust") or ""] if robust else []), verdict, _lab_link(r["lab"] or "")]
                out.append("| " + " | ".join(cell(c) for c in cells) + " |")
                extra = ", ".join(x for x in (f"attackers: {r['attackers']}" if r.get("attackers") else "",
                                              f"p = {fmt(r['p'], '.3g')}" if r["p"] is not None else "") if x)
                if r["why"] or extra:
                    reasons.append(f"{k}. " + (f"({extra}) " if extra else "") + (r["why"] or ""))
            out.append("")
        if reasons:
            out += ["<details><summary>Why each verdict is what it is</summary>", "", *reasons, "", "</details>", ""]
    return "\n".join(out)
