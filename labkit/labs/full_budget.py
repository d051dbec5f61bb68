"""Lab 05b: attacked hard enough? The papers' DE budget on the images Lab 05's suite missed.

Every one-pixel rate of the defence labs comes from the adaptive suite at a fraction of the papers' budgets (Lab
05's ``cpu`` suite spends at most 4,689 queries per image; Su et al.'s DE and APR's attacker 400 x (100 + 1) =
40,400), so an image the suite missed may only have been attacked too weakly. This lab retrains (through the cache)
Lab 05's undefended model and APR, attacks them with the same suite on the same images (``labkit.suites``), checks
that the outcomes are Lab 05's (same models, same images, same attacks), then runs DE at the papers' budget on up
to ``n_images`` images per model that the suite missed: which does the full budget fool?

Per model (``budget_rows``): the suite's ASR with its Wilson interval; the share of the missed images that the
full budget fooled (its interval); and the ASR of the suite and full-budget DE together, at least (only the images
attacked at the full budget counted) and at most (the missed images not attacked at the full budget counted at the
upper end of that share's interval). The lab's answer (``summary``) compares the two models' gaps and what the full
budget does to the undefended-vs-APR difference Lab 05 judged.

Sizes: the profile's ``budget`` section (``Profile.lab``); the models and images: Lab 05's (``apr_paper``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from labkit._checks import check_int
from labkit.attacks import DEConfig, OnePixel, verify
from labkit.data import Split
from labkit.evaluate import run_attack
from labkit.labs.apr_paper import table1_suite
from labkit.papers import APR2024_DE_BUDGET
from labkit.profiles import Profile
from labkit.stats import wilson
from labkit.suites import WORST_CASE, Entry

#: The lab's section of ``Profile.labs``.
PART = "budget"
#: This lab's record (``labkit.records``) and the step ``labkit.claims`` reads.
LAB = "05b_full_budget"
BUDGET_STEP = "budget"


@dataclass(frozen=True)
class BudgetConfig:
    """What Lab 05b attacks at the papers' budget (frozen: part of the record's settings)."""

    defences: tuple[str, ...] = ("No defence", "APR")  # Lab 05's Table 1 rows to check (``Entry.defence``)
    n_images: int = 50  # per model, at most this many of the images the suite missed (in Lab 05's order)
    population: int = APR2024_DE_BUDGET["population"]  # DE population: APR's Sec. V.A.7 and Su et al.'s 400
    # DE generations: APR's Sec. V.A.7 and Su et al.'s 100, so 400 x (100 + 1) = 40,400 queries at most per image
    generations: int = APR2024_DE_BUDGET["max_iterations"]

    def __post_init__(self) -> None:
        if not self.defences:
            raise ValueError("defences must name at least one of Lab 05's models")
        check_int("n_images", self.n_images, 1)
        check_int("population", self.population, 4)  # DE's mutation draws three others
        check_int("generations", self.generations, 1)

    @property
    def max_queries(self) -> int:
        """Queries per image at most: the initial population plus one per candidate and generation."""
        return self.population * (self.generations + 1)


def budget_config(profile: Profile) -> BudgetConfig:
    """The lab's settings in ``profile`` (its ``budget`` section; defaults, the papers' budget, where it has none)."""
    values = dict(profile.lab(PART))
    if "defences" in values:
        values["defences"] = tuple(values["defences"])
    return BudgetConfig(**values)


def plan(profile: Profile, cfg: BudgetConfig) -> list[Entry]:
    """Lab 05's Table 1 entries named by ``cfg.defences``, in that order (the first is the group's reference, whose
    correctly classified images ``labkit.suites.attacked_indices`` picks: put "No defence" first, as Lab 05 does).
    Raises ValueError for a name Lab 05 does not train."""
    entries = {e.defence: e for e in table1_suite(profile)}
    unknown = [d for d in cfg.defences if d not in entries]
    if unknown:
        raise ValueError(f"Lab 05 trains no {unknown}; its models: {sorted(entries)}")
    return [entries[d] for d in cfg.defences]


def worst_rows(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """defence -> its suite's worst-case row (``labkit.suites.WORST_CASE``: per image, broken by any attack)."""
    return {r["defence"]: r for r in rows if r["attack"] == WORST_CASE}


def agreement(rows: Sequence[dict[str, Any]], lab05: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per defence, whether this lab's suite saw what Lab 05's did (``lab05``: its record, ``labkit.records.load``
    of ``TABLE1_LAB``): the clean accuracy and worst-case ASR (%) here and there, and over the attacks how many ran
    on the same images and gave the same verified outcome on every one. Same models (weights), images and attacks
    give the same outcomes; the same cache keys with other outcomes mean the weights differ (training on another
    machine's arithmetic gives another model of the same recipe), and the comparison below is then with models like
    Lab 05's, not Lab 05's own."""
    theirs = {(r["defence"], r["attack"]): r for r in (lab05 or {}).get("tables", {}).get("suite", [])}
    out = []
    for defence in dict.fromkeys(r["defence"] for r in rows):
        mine = [r for r in rows if r["defence"] == defence]
        same_images = same_outcomes = 0
        for r in mine:
            other = theirs.get((defence, r["attack"]))
            if other is not None and list(other["image_ids"]) == list(r["image_ids"]):
                same_images += 1
                same_outcomes += list(other["outcomes"]) == list(r["outcomes"])
        worst, other_worst = (next((r for r in mine if r["attack"] == WORST_CASE), None),
                              theirs.get((defence, WORST_CASE)))
        out.append({"defence": defence,
                    "clean acc. % here": round(100 * worst["clean_acc"], 2) if worst else None,
                    "Lab 05's": round(100 * other_worst["clean_acc"], 2) if other_worst else None,
                    "worst-case ASR % here": round(100 * worst["asr"], 1) if worst else None,
                    "Lab 05's ": round(100 * other_worst["asr"], 1) if other_worst else None,
                    "attacks": len(mine), "on the same images": same_images, "same outcomes": same_outcomes})
    return out


def missed_images(rows: Sequence[dict[str, Any]], limit: int) -> dict[str, Tensor]:
    """defence -> dataset indices (int64) of the first ``limit`` images its suite's worst case did not break."""
    out = {}
    for defence, r in worst_rows(rows).items():
        ids = torch.tensor(list(r["image_ids"]), dtype=torch.long)
        broke = torch.tensor(list(r["outcomes"]), dtype=torch.bool)
        out[defence] = ids[~broke][:limit]
    return out


def full_budget_de(model: nn.Module, key: str, split: Split, indices: Tensor, population: int, generations: int,
                   precision: str = "auto", progress: bool = True) -> dict[str, Tensor]:
    """Untargeted one-pixel DE at ``population`` x ``generations`` (Su et al.'s 400 x 100) on the images ``indices``
    of ``split`` through the cache (``labkit.evaluate.run_attack``), every success re-checked by a forward pass of
    the adversarial image (``labkit.attacks.verify``).

    Returns {"index": (m,) dataset indices, "success": (m,) bool, verified, "queries": (m,) int64 spent per image};
    empty tensors when ``indices`` is empty.
    """
    if not len(indices):
        return {"index": indices.long(), "success": torch.zeros(0, dtype=torch.bool),
                "queries": torch.zeros(0, dtype=torch.long)}
    attack = OnePixel(model, DEConfig(population=population, generations=generations, precision=precision))
    x, y = split.floats(indices), split.labels[indices]
    res = run_attack(attack, x, y, model_key=key, indices=indices, chunk_images=10, progress=progress)
    return {"index": indices.long(), "success": verify(model, x, res, max_pixels=1),
            "queries": res.queries.long()}


def budget_rows(rows: Sequence[dict[str, Any]], checks: dict[str, dict[str, Tensor]],
                cfg: BudgetConfig) -> list[dict[str, Any]]:
    """One row per defence: the suite's worst case beside the papers' budget on the images it missed.

    ``rows``: the suite's rows (``labkit.suites.evaluate_suite``); ``checks``: defence -> ``full_budget_de`` on its
    ``missed_images``. Rates are fractions; ``*_lo``/``*_hi`` Wilson 95% bounds. ``asr_both_lo``: suite or full
    budget, counting only the images attacked at the full budget (a lower bound); ``asr_both_hi``: the missed images
    not attacked at the full budget counted at the upper bound of the share it fooled (a 95% upper estimate).
    """
    out = []
    for defence, w in worst_rows(rows).items():
        n, suite = int(w["attacked"]), int(sum(w["outcomes"]))
        check = checks.get(defence, {"success": torch.zeros(0, dtype=torch.bool),
                                     "queries": torch.zeros(0, dtype=torch.long)})
        m, found = len(check["success"]), int(check["success"].sum())
        missed = n - suite
        share_lo, share_hi = wilson(found, m) if m else (float("nan"), float("nan"))
        s_lo, s_hi = wilson(suite, n)
        out.append({
            "defence": defence, "attacked": n, "suite_fooled": suite, "suite_asr": suite / n if n else float("nan"),
            "suite_asr_lo": s_lo, "suite_asr_hi": s_hi, "suite_mean_queries": float(w["mean_queries"]),
            "missed": missed, "full_budget_attacked": m, "full_budget_fooled": found,
            "full_budget_share": found / m if m else float("nan"), "full_budget_share_lo": share_lo,
            "full_budget_share_hi": share_hi,
            "full_budget_mean_queries": float(check["queries"].float().mean()) if m else float("nan"),
            "population": cfg.population, "generations": cfg.generations, "max_queries": cfg.max_queries,
            "asr_both_lo": (suite + found) / n if n else float("nan"),
            "asr_both_hi": (suite + found + (missed - m) * share_hi) / n if n and m else float("nan"),
            "fooled_ids": [int(i) for i in check["index"][check["success"]]] if m else [],
        })
    return out


#: Columns of the page's table, with readable names (a ``budget_rows`` key, or what ``display_rows`` makes of
#: several: ``suite_ci``, ``full_budget_ci``, ``asr_both`` -> header).
COLUMNS = {"defence": "model", "attacked": "images", "suite_asr": "suite ASR %", "suite_ci": "95% CI",
           "missed": "suite missed", "full_budget_attacked": "full-budget DE on", "full_budget_fooled": "it fooled",
           "full_budget_ci": "share fooled % (95% CI)", "asr_both": "ASR, suite + full-budget DE %"}


def _pct(v: float, unit: str = "") -> str:
    """A fraction as a percentage with one decimal, "—" for NaN (nothing measured)."""
    return "—" if v != v else f"{100 * v:.1f}{unit}"


def display_rows(table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``budget_rows`` as the page shows them: percentages, intervals as "lo–hi", the combined ASR as a range."""
    return [{COLUMNS["defence"]: r["defence"], COLUMNS["attacked"]: r["attacked"],
             COLUMNS["suite_asr"]: _pct(r["suite_asr"]),
             COLUMNS["suite_ci"]: f"{_pct(r['suite_asr_lo'])}–{_pct(r['suite_asr_hi'])}",
             COLUMNS["missed"]: r["missed"], COLUMNS["full_budget_attacked"]: r["full_budget_attacked"],
             COLUMNS["full_budget_fooled"]: r["full_budget_fooled"],
             COLUMNS["full_budget_ci"]: f"{_pct(r['full_budget_share'])} ({_pct(r['full_budget_share_lo'])}–"
                                        f"{_pct(r['full_budget_share_hi'])})",
             COLUMNS["asr_both"]: f"{_pct(r['asr_both_lo'])}–{_pct(r['asr_both_hi'])}"} for r in table]


def summary(table: Sequence[dict[str, Any]], reference: str = "No defence") -> str:
    """The lab's answer, generated from ``budget_rows``: per model what the full budget added to the suite, and
    whether it changes the reference-vs-defence difference Lab 05 judged (the difference with the suite alone beside
    the range it can take with the full budget)."""
    def pct(v: float) -> str:
        return _pct(v, "%")

    lines = []
    for r in table:
        m = r["full_budget_attacked"]
        paper = (", the papers' budget" if (r["population"], r["generations"]) ==
                 (APR2024_DE_BUDGET["population"], APR2024_DE_BUDGET["max_iterations"]) else "")
        if not m:
            lines.append(f"{r['defence']}: the suite broke every attacked image ({r['suite_fooled']} of "
                         f"{r['attacked']}); nothing was left for the full-budget DE." if not r["missed"] else
                         f"{r['defence']}: the suite missed {r['missed']} of {r['attacked']} images, none of them "
                         "attacked at the full budget.")
            continue
        lines.append(
            f"{r['defence']}: DE at {r['population']} x {r['generations']}{paper} ({r['max_queries']:,} queries at "
            f"most, against the suite's mean of {r['suite_mean_queries']:,.0f} per image) fooled {r['full_budget_fooled']} of the {m} images the "
            f"suite missed that it attacked ({pct(r['full_budget_share'])}, 95% CI {pct(r['full_budget_share_lo'])}–"
            f"{pct(r['full_budget_share_hi'])}); the suite's ASR of {pct(r['suite_asr'])} becomes "
            f"{pct(r['asr_both_lo'])} to {pct(r['asr_both_hi'])} with it.")
    ref = next((r for r in table if r["defence"] == reference), None)
    for r in table:
        if ref is None or r is ref or not (ref["full_budget_attacked"] and r["full_budget_attacked"]):
            continue
        before = ref["suite_asr"] - r["suite_asr"]
        lo = ref["asr_both_lo"] - r["asr_both_hi"]
        hi = ref["asr_both_hi"] - r["asr_both_lo"]
        same_sign = (lo > 0 and before > 0) or (hi < 0 and before < 0)
        lines.append(
            f"{reference} minus {r['defence']}: {100 * before:+.1f} points with the suite alone; between "
            f"{100 * lo:+.1f} and {100 * hi:+.1f} points with the full-budget DE added "
            + ("(the same sign: the full budget does not reverse the suite's finding)." if same_sign else
               "(a range that includes no difference or the other sign: the suite alone cannot settle the "
               "comparison)."))
    return "\n".join(lines)
