"""Labs 03-06: our attack-suite rows beside the APR paper's Tables 1 and 3, and the verdicts on its claims.

Labs 03 and 04 (the baselines: input transformations, training-time defences) and Lab 05 (APR) measure rows of the
paper's Table 1; Lab 06 measures its Table 3 (the ablation). Each lab evaluates its suite with
``labkit.suites.evaluate_suite`` (per-image outcomes, the worst case over the attack suite); this module turns
those rows into tables and verdicts:

* ``seed_table`` (``TABLE_COLUMNS``, ``ROUNDING``): rows aggregated over seeds, in percent with 95% intervals, the
  paper's numbers (``TABLE1_CLAIMS``, ``TABLE3_CLAIMS``) beside ours;
* ``defence_verdicts`` / ``keyed_defence_verdicts`` / ``defence_verdict`` (Labs 03-05): a defence lowers the
  one-pixel ASR by the paper's ratio, paired image by image with the undefended model, under the worst case over
  the attack suite when present; ``table1_verdict`` (Lab 05) adds the absolute rates on the paper's architectures
  (``APR_ARCHITECTURES``);
* ``ablation_verdicts`` / ``keyed_ablation_verdicts`` / ``ablation_verdict`` (Lab 06): removing a component
  (``COMPONENT``) raises the ASR by the paper's ratio, paired with full APR;
* ``find_row``, ``attack_of`` and ``rate_of``: what ``labkit.claims`` reads from the same rows.

The suites themselves are ``labkit.labs.apr_paper``'s (and the defence labs' notebooks'); every test, interval and
verdict is ``labkit.stats``'s.
"""

from __future__ import annotations

from typing import Any

from labkit import papers, stats
from labkit.suites import WORST_CASE
from labkit.report import mean_outcome, on_paper_architecture
from labkit.stats import Verdict

__all__ = [
    "APR_ARCHITECTURES", "COMPONENT", "ROUNDING", "TABLE1_CLAIMS", "TABLE3_CLAIMS", "TABLE_COLUMNS", "ablation_verdict",
    "ablation_verdicts", "attack_of", "defence_verdict", "defence_verdicts", "find_row", "keyed_ablation_verdicts",
    "keyed_defence_verdicts", "rate_of", "seed_table", "table1_verdict",
]


#: The APR paper's CIFAR-10 claims, quoted from ``labkit.papers``: (clean accuracy %, ASR %); robustness =
#: 100 - ASR. Table 1 (defences; its AT/IT/DD rows as Lab 04 quotes them), Table 3 (ablation).
TABLE1_CLAIMS: dict[str, tuple[float, float]] = papers.APR2024_TABLE1
TABLE3_CLAIMS: dict[str, tuple[float, float]] = papers.APR2024_TABLE3


#: What each ablation variant removes, for tables and sentences.
COMPONENT = {"no_attention": "the attention gate", "no_adversarial": "adversarial training",
             "no_regularisation": "the gradient regulariser"}


#: The architectures of the APR paper's CIFAR-10 tables (``labkit.models.REGISTRY`` names).
APR_ARCHITECTURES = ("resnet18", "vgg16")


# -- tables over seeds -----------------------------------------------------------------------------------------------

#: The columns of the labs' tables, in reading order (percentages; _lo/_hi: 95% CI).
TABLE_COLUMNS = ["model", "defence", "attack", "seeds", "images", "clean_acc", "clean_acc_lo", "clean_acc_hi",
                 "paper_clean", "asr", "asr_lo", "asr_hi", "paper_asr", "robust_acc", "robustness", "robustness_lo",
                 "robustness_hi", "paper_robustness"]


#: Decimals per column for display: ours to 0.1 point, the paper's as the paper prints them (two decimals).
ROUNDING: dict[str, int] = {c: 2 if c.startswith("paper") else 1 for c in TABLE_COLUMNS[5:]}


def seed_table(rows: list[dict[str, Any]], claims: dict[str, tuple[float, float]] | None = None,
               eval_size: int | None = None) -> list[dict[str, Any]]:
    """Rows aggregated over seeds, in percent, with 95% CIs, and the paper's numbers beside ours.

    Per (model, defence, attack, targeted): with several seeds, the mean and Student-t interval over seeds
    (``stats.mean_ci``); with one, the Wilson interval over images (over ``eval_size`` test images for clean
    accuracy, when given). ``claims`` maps a row's ``paper`` key to the paper's (clean %, ASR %), shown as
    ``paper_clean``/``paper_asr``/``paper_robustness`` on DE rows (the paper's attack) and left empty otherwise.
    ``outcomes`` (per-image verified successes) is kept for a single-seed group, so verdicts can pair rows; it
    is None over several seeds (pair the raw rows instead: the verdict functions accept either).
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["defence"], r["attack"], r.get("targeted", False)), []).append(r)
    out = []
    for (arch, defence, attack, targeted), rs in groups.items():
        row: dict[str, Any] = {"model": arch, "defence": defence, "attack": attack + (" (targeted)" * targeted),
                               "seeds": len(rs), "images": sum(r["attacked"] for r in rs)}
        for col in ("clean_acc", "asr"):
            if len(rs) > 1:
                mean, lo, hi = stats.mean_ci([r[col] for r in rs])
            elif col == "asr":
                mean, lo, hi = rs[0]["asr"], rs[0]["asr_lo"], rs[0]["asr_hi"]
            else:
                mean = rs[0]["clean_acc"]
                lo, hi = stats.wilson(round(mean * eval_size), eval_size) if eval_size else (float("nan"),) * 2
            row.update({col: 100 * mean, f"{col}_lo": 100 * lo, f"{col}_hi": 100 * hi})
        row.update({"robustness": 100 - row["asr"], "robustness_lo": 100 - row["asr_hi"],
                    "robustness_hi": 100 - row["asr_lo"]})
        # Robust accuracy (correct AND unbroken, over all test images): the ASR alone is over the images a model
        # classifies correctly, so a model that is often wrong (51%-clean PGD-AT) would look robust by ASR alone.
        row["robust_acc"] = (100 * sum(r.get("robust_acc", r["clean_acc"] * (1 - r["asr"])) for r in rs) / len(rs))
        # The paper's numbers are for its attack (untargeted DE, one pixel): shown beside those rows only.
        claim = (claims or {}).get(rs[0].get("paper")) if attack == "DE k=1" and not targeted else None
        row.update({"paper_clean": claim[0] if claim else None, "paper_asr": claim[1] if claim else None,
                    "paper_robustness": 100 - claim[1] if claim else None, "paper": rs[0].get("paper"),
                    "outcomes": rs[0].get("outcomes") if len(rs) == 1 else None})
        out.append(row)
    return out


def find_row(table: list[dict[str, Any]], defence: str, attack: str, model: str | None = None) -> dict[str, Any] | None:
    """The first row of ``table`` with this defence, attack (and model), or None."""
    return next((r for r in table if r["defence"] == defence and r["attack"] == attack
                 and (model is None or r["model"] == model)), None)


def _outcomes(rows: list[dict[str, Any]], defence: str, attack: str, model: str) -> list[int] | None:
    """Per-image outcomes of (model, defence, attack), seeds concatenated in seed order (images pair within a
    seed), or None when a row has none (e.g. a seed_table row over several seeds)."""
    found = sorted((r for r in rows if r["defence"] == defence and r["attack"] == attack and r["model"] == model
                    and not r.get("targeted", False)), key=lambda r: r.get("seed", 0))
    if not found or any(r.get("outcomes") is None for r in found):
        return None
    return [int(v) for r in found for v in r["outcomes"]]


def _pair(rows: list[dict[str, Any]], reference: str, other: str, attack: str,
          model: str) -> tuple[list[int], list[int], list[int] | None] | None:
    """Outcomes of ``reference`` and ``other`` (``attack``, ``model``) on the images both were attacked on.

    Seed by seed (in seed order; each seed's images in the reference's order): with ``image_ids`` on both rows the
    images are matched by test-set index (an entry attacked on the subset of the reference's images it classifies
    correctly pairs on that subset); without, the rows must hold the same images in the same order. Returns
    (before, after, ids), ``ids`` the images' indices when several seeds repeat images (the verdict then takes the
    image as its unit), else None; or None when either side has no per-image outcomes (or seeds differ).
    """
    def by_seed(defence: str) -> dict[int, dict[str, Any]] | None:
        found = [r for r in rows if r["defence"] == defence and r["attack"] == attack and r["model"] == model
                 and not r.get("targeted", False)]
        if not found or any(r.get("outcomes") is None for r in found):
            return None
        return {r.get("seed", 0): r for r in found}

    a, b = by_seed(reference), by_seed(other)
    if a is None or b is None or set(a) != set(b):
        return None
    before: list[int] = []
    after: list[int] = []
    ids: list[int] = []
    with_ids = True
    for seed in sorted(a):
        ra, rb = a[seed], b[seed]
        if ra.get("image_ids") is not None and rb.get("image_ids") is not None:
            where = {int(i): k for k, i in enumerate(rb["image_ids"])}
            shared = [(k, where[int(i)], int(i)) for k, i in enumerate(ra["image_ids"]) if int(i) in where]
            before += [int(ra["outcomes"][k]) for k, _, _ in shared]
            after += [int(rb["outcomes"][m]) for _, m, _ in shared]
            ids += [i for _, _, i in shared]
        elif len(ra["outcomes"]) == len(rb["outcomes"]):
            before += [int(v) for v in ra["outcomes"]]
            after += [int(v) for v in rb["outcomes"]]
            with_ids = False
        else:
            return None
    return before, after, ids if with_ids and len(a) > 1 else None


def _pair_verdict(claim: str, before: list[int], after: list[int], ids: list[int] | None, ratio: float,
                  family: int) -> Verdict:
    """The paired verdict on "the rate moves to ``ratio`` x the reference's": McNemar's design over images, or, when
    seeds repeat images (``ids``), the image-level design (pooled seeds are not independent pairs). The claimed
    change is estimated from our reference rate (``claimed_ratio``: its uncertainty is carried into the size test);
    ``family``: the comparisons that share the run (Bonferroni on both sides of the verdict)."""
    change = mean_outcome(before) * (ratio - 1)
    if ids is None:
        return stats.paired_verdict(claim, before, after, change, family=family, claimed_ratio=ratio)
    return stats.clustered_paired_verdict(claim, before, after, ids, change, family=family, claimed_ratio=ratio)


# -- Table 1: defences against the undefended model ------------------------------------------------------------------

def attack_of(rows: list[dict[str, Any]], model: str, reference: str) -> str:
    """The worst case over the attack suite when the reference has it, else DE at the profile's budget."""
    return WORST_CASE if _outcomes(rows, reference, WORST_CASE, model) is not None else "DE k=1"


def defence_verdicts(rows: list[dict[str, Any]], claims: dict[str, tuple[float, float]] | None = None,
                     reference: str = "No defence") -> list[tuple[str, Verdict]]:
    """``keyed_defence_verdicts`` as (architecture, verdict) pairs."""
    return [(arch, v) for arch, _, v in keyed_defence_verdicts(rows, claims, reference)]


def keyed_defence_verdicts(rows: list[dict[str, Any]], claims: dict[str, tuple[float, float]] | None = None,
                           reference: str = "No defence") -> list[tuple[str, str, Verdict]]:
    """Verdicts on "defence X lowers the one-pixel ASR from the paper's undefended rate to its rate".

    Per architecture, every defence whose ``paper`` key has a claim (``claims``, default Table 1) is paired
    image by image with ``reference`` (the undefended model) under the worst case over the attack suite when
    both have a ``WORST_CASE`` row with outcomes, else under DE at the profile's budget. The claimed ratio is
    applied to OUR undefended rate (the paper's 70.97% -> 21.43% is a fall to 30.2% of the baseline): our
    baseline differs from the paper's, the relative effect is what transfers, and our baseline's uncertainty is
    carried into the test (``claimed_ratio``). The comparisons of one architecture are one family (Bonferroni on
    both sides of the verdict). ``rows``: raw rows (``evaluate_suite`` and the
    attack suite) or ``seed_table`` rows of one seed. Returns (architecture, the paper's row, verdict) triples.
    """
    claims = TABLE1_CLAIMS if claims is None else claims
    base_claim = claims[reference][1]
    out: list[tuple[str, str, Verdict]] = []
    for arch in dict.fromkeys(r["model"] for r in rows):
        attack = attack_of(rows, arch, reference)
        if _outcomes(rows, reference, attack, arch) is None:
            continue
        pairs, unpaired = [], []
        for defence in dict.fromkeys(r["defence"] for r in rows if r["model"] == arch and r["defence"] != reference):
            key = next(r.get("paper") for r in rows if r["model"] == arch and r["defence"] == defence)
            if key not in claims:
                continue
            pair = _pair(rows, reference, defence, attack, arch)
            (pairs if pair is not None else unpaired).append((defence, key, pair))

        def claim_of(defence: str, key: str) -> str:
            return (f"{defence} lowers the one-pixel ASR ({attack}) to {claims[key][1] / base_claim:.0%} of the "
                    f"undefended model's (the paper: {base_claim:g}% -> {claims[key][1]:g}%)")

        for defence, key, (before, after, ids) in pairs:
            ratio = claims[key][1] / base_claim
            # The claimed ratio applies to the undefended rate on the images this defence was attacked on.
            out.append((arch, key, _pair_verdict(claim_of(defence, key), before, after, ids, ratio, len(pairs))))
        # A claim never goes missing: without per-image outcomes under the reference's attack it is undecided.
        out += [(arch, key, stats.Verdict("undecided", claim_of(defence, key), float("nan"), float("nan"), float("nan"),
                                     "points", None, None, None,
                                     why=f"{defence} was not attacked with {attack} on the undefended model's "
                                         f"images, so nothing pairs with the undefended outcomes."))
                for defence, key, _ in unpaired]
    return out


def defence_verdict(rows: list[dict[str, Any]], claims: dict[str, tuple[float, float]] | None = None,
                    reference: str = "No defence") -> str:
    """``defence_verdicts`` as sentences, one per line, each headed by its architecture."""
    found = defence_verdicts(rows, claims, reference)
    if not found:
        return f"No defence with a claim of the paper was paired with '{reference}' (per-image outcomes needed)."
    return "\n".join(f"[{arch}] " + v.sentence() for arch, v in found)


def rate_of(rows: list[dict[str, Any]], defence: str, attack: str, arch: str) -> tuple[int, int] | None:
    """(broken, attacked) of (architecture, defence, attack) over its per-image outcomes, or None without them."""
    o = _outcomes(rows, defence, attack, arch)
    return (sum(o), len(o)) if o is not None else None


def table1_verdict(table: list[dict[str, Any]], profile: Any = None) -> str:
    """Sentences, generated from the measured rows, on the APR paper's Table 1 claim.

    ``table``: rows of ``labkit.suites.evaluate_suite`` (raw, or ``seed_table`` rows of one seed): the
    attack suite per model, with its ``WORST_CASE`` row (per-image outcomes). Per architecture:

    * our undefended and APR clean accuracy and ASR against the paper's numbers (``stats.rate_verdict``; the
      ASR under DE, the paper's attack; clean accuracy over ``min(profile.eval_size, 10,000)`` test images,
      within 2 points to be supported, when ``profile`` is given);
    * the claim itself, "APR lowers the one-pixel ASR to 30% of the undefended model's", paired image by image
      under the worst case over the attack suite when present, else under DE (``defence_verdicts``).
    """
    rows = list(table)
    lines = [f"Profile {profile.name}: every verdict below is computed from this run's numbers."] if profile else []
    eval_n = min(profile.eval_size, 10_000) if profile is not None else None
    for arch in dict.fromkeys(r["model"] for r in rows):
        for defence in ("No defence", "APR"):
            clean_claim, asr_claim = TABLE1_CLAIMS[defence]
            de = [r for r in table if r["model"] == arch and r["defence"] == defence and r["attack"] == "DE k=1"
                  and not r.get("targeted", False)]
            if eval_n and len(de) == 1:
                acc = de[0]["clean_acc"] / (100 if de[0]["clean_acc"] > 1 else 1)  # seed_table rows are in percent
                v = on_paper_architecture(
                    stats.rate_verdict(f"{defence}: clean accuracy is the paper's {clean_claim:g}%",
                                       round(acc * eval_n), eval_n, clean_claim / 100, tolerance=0.02), arch,
                    APR_ARCHITECTURES)
                lines.append(f"[{arch}] " + v.sentence())
            counts = rate_of(table, defence, "DE k=1", arch)
            if counts is not None:
                v = on_paper_architecture(
                    stats.rate_verdict(f"{defence}: the one-pixel ASR (DE k=1) is the paper's {asr_claim:g}%",
                                       *counts, asr_claim / 100), arch, APR_ARCHITECTURES)
                lines.append(f"[{arch}] " + v.sentence())
        lines += [f"[{arch}] " + v.sentence() for a, v in defence_verdicts(rows, {k: TABLE1_CLAIMS[k] for k in
                                                                                 ("No defence", "APR")})
                  if a == arch]
    return "\n".join(lines)


# -- Table 3: the ablation -------------------------------------------------------------------------------------------

def ablation_verdicts(rows: list[dict[str, Any]], attack: str = "DE k=1",
                      claims: dict[str, tuple[float, float]] | None = None) -> list[tuple[str, Verdict]]:
    """``keyed_ablation_verdicts`` as (architecture, verdict) pairs."""
    return [(arch, v) for arch, _, v in keyed_ablation_verdicts(rows, attack, claims)]


def keyed_ablation_verdicts(rows: list[dict[str, Any]], attack: str = "DE k=1",
                            claims: dict[str, tuple[float, float]] | None = None) -> list[tuple[str, str, Verdict]]:
    """Verdicts on "removing component X raises the ASR by the paper's d points", per architecture.

    Each variant is paired image by image with full APR (all four are attacked on the same images). As for the
    defences (``defence_verdicts``), the paper's relative rise is applied to OUR full-APR rate: the paper's
    21.43% -> 35.21% without adversarial training is a rise to 1.64x, so the claim here is full APR's measured
    rate x 0.64 in points (an absolute +13.78 points would be a far larger claim on a model that breaks less).
    One family (Bonferroni) over the three comparisons of an architecture. Returns (architecture, variant,
    verdict) triples.
    """
    claims = TABLE3_CLAIMS if claims is None else claims
    out: list[tuple[str, str, Verdict]] = []
    for arch in dict.fromkeys(r["model"] for r in rows):
        if _outcomes(rows, "full", attack, arch) is None:
            continue
        pairs = [(v, pair) for v in COMPONENT if (pair := _pair(rows, "full", v, attack, arch)) is not None]
        for v, (full, o, ids) in pairs:
            ratio = claims[v][1] / claims["full"][1]
            claim = (f"removing {COMPONENT[v]} raises the ASR ({attack}) to {ratio:.2f}x full APR's "
                     f"(the paper: {claims['full'][1]:g}% -> {claims[v][1]:g}%)")
            out.append((arch, v, _pair_verdict(claim, full, o, ids, ratio, len(pairs))))
    return out


def ablation_verdict(rows: list[dict[str, Any]], attack: str | None = None) -> str:
    """The ablation verdicts as sentences, and which removal raised the ASR most here (measured, with the
    paper's largest beside it; a 'largest' is named only when it is unique). ``attack``: whose outcomes are
    compared; default the worst case over the attack suite when full APR has it, else DE."""
    lines = []
    attack = attack or next((attack_of(rows, a, "full") for a in dict.fromkeys(r["model"] for r in rows)), "DE k=1")
    paper = {v: TABLE3_CLAIMS[v][1] - TABLE3_CLAIMS["full"][1] for v in COMPONENT}
    ptop = max(paper, key=lambda v: paper[v])
    for arch in dict.fromkeys(r["model"] for r in rows):
        found = [v for a, v in ablation_verdicts(rows, attack) if a == arch]
        if not found:
            lines.append(f"[{arch}, {attack}] No per-image outcomes of full APR: nothing to pair.")
            continue
        lines += [f"[{arch}] " + v.sentence() for v in found]
        rises = {v: mean_outcome(_outcomes(rows, v, attack, arch)) - mean_outcome(_outcomes(rows, "full", attack, arch))
                 for v in COMPONENT if _outcomes(rows, v, attack, arch) is not None}
        best = max(rises.values())
        tops = [v for v in rises if rises[v] == best]
        measured = ("no removal raised the measured ASR" if best <= 0 else
                    f"the largest measured rise is shared by {' and '.join(COMPONENT[v] for v in tops)}"
                    if len(tops) > 1 else f"the largest measured rise ({100 * best:+.1f} points) is without "
                                          f"{COMPONENT[tops[0]]}")
        lines.append(f"[{arch}, {attack}] Point estimates only: {measured}; the paper's largest is without "
                     f"{COMPONENT[ptop]} (+{paper[ptop]:.2f} points). The verdicts above say which rises the run "
                     "can resolve.")
    return "\n".join(lines)
