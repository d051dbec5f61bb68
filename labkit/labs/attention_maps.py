"""Lab 08: APR's attention maps, on the gated variants of Lab 06.

* ``gated_variants``: Lab 06's APR variants that have a gate, attacked on Lab 06's images with the book's
  protocol (``labkit.evaluate.evaluate_model``, so the attack records are Lab 06's cache entries), as
  ``labkit.attention.AttackedModel`` s;
* ``explorer_indices``: the images the Lab 08 explorer offers (attacked ones first), ``EXPLORED`` of them
  attacked; ``panel_views``, ``panel_figure`` and ``change_figure``: the static figures beside it;
* the claim (``CLAIM``): ``claim_table`` tests it image by image, ``claim_verdicts`` / ``claim_verdict`` /
  ``claim_answer`` judge it; ``change_verdict`` and ``concentration_verdict`` say what the maps' tables show.

The measurements on a map (``attention_of``, ``pixel_attention``, ``concentration``...) are ``labkit.attention``'s.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from labkit import stats
from labkit.apr import gate_of
from labkit.attacks import verify
from labkit.attention import AttackedModel, attention_of
from labkit.data import CLASSES, first_n, load_cifar10
from labkit.evaluate import common_correct, evaluate_model, probabilities
from labkit.labs.apr_paper import ablation_suite
from labkit.plotting import attention_attack, attention_panel
from labkit.profiles import Profile
from labkit.report import MIN_IMAGES
from labkit.stats import Verdict
from labkit.suites import train_suite

__all__ = ["CLAIM", "CLAIM_STEP", "EXPLORED", "LAB", "change_figure", "change_verdict", "claim_answer", "claim_table",
           "claim_verdict", "claim_verdicts", "concentration_verdict", "explorer_indices", "first_success",
           "gated_variants", "panel_figure", "panel_views"]

#: The lab's record (``labkit.records``) and the step holding ``claim_table``'s rows (``labkit.claims`` reads it).
LAB = "08_attention_maps"
CLAIM_STEP = "claim"


def gated_variants(profile: Profile, split: Any = None, progress: bool = True) -> dict[str, AttackedModel]:
    """The APR variants of Lab 06 that have an attention gate (first seed of every architecture), attacked.

    The four variants are loaded (or trained) through the cache; the attacked images are the first
    ``profile.n_attack`` test images that all four variants of an architecture classify correctly: one set for
    every map, so the explorer and the figures show each variant on the same images. (Lab 06 attacks each variant
    on the images of full APR's it classifies correctly instead, so the comparisons there are not chosen by the
    least accurate variant; the two sets differ, and these attacks are cached on their own.) The attacks run
    through ``labkit.evaluate.evaluate_model``. The variant without the gate takes part in choosing the images
    but has no map to study, so it is not returned.
    """
    split = split if split is not None else load_cifar10("test")
    seed = profile.seeds[0]
    trained = train_suite([e for e in ablation_suite(profile) if e.config.seed == seed], progress=progress)
    out = {}
    for arch in profile.models:
        group = [t for t in trained if t.entry.config.model == arch]
        idx = common_correct([t.model for t in group], split, profile.n_attack)
        x, y = split.floats(idx), split.labels[idx]
        for t in (t for t in group if gate_of(t.model) is not None):
            ev = evaluate_model(t.model, t.key, split, idx, profile, progress=progress, model=arch, seed=seed,
                                defence=t.entry.defence, paper=t.entry.paper)
            name = f"{t.entry.defence} ({arch})"
            out[name] = AttackedModel(name, t.entry.defence, arch, t.model, t.key, idx, x, y, ev.rows, ev.results,
                                      {a: verify(t.model, x, r, max_pixels=1) for a, r in ev.results.items()})
    return out


#: Attacked images the Lab 08 explorer offers: its views (maps and probabilities of every variant, clean and
#: attacked) are kept in the lab's record, and a few dozen images keep that under a megabyte.
EXPLORED = 24


def explorer_indices(attacked: Tensor, split: Any, extra: int = 50, shown: int | None = None) -> Tensor:
    """Dataset indices for the Lab 08 explorer: the first ``shown`` (default: all) of the ``attacked`` ones, in
    order, then up to ``extra`` more from ``labkit.data.first_n`` order that were not attacked at all (so some
    images have no attack to show)."""
    more = first_n(split, min(len(split), len(attacked) + extra))
    more = more[~torch.isin(more, attacked)][:extra]
    return torch.cat([attacked[:shown], more])


def first_success(m: AttackedModel, attack: str = "DE k=1") -> int:
    """Row of the first verified success of ``attack`` on ``m`` (0 when it never succeeded)."""
    return int(m.verified[attack].float().argmax()) if len(m.verified[attack]) else 0


def panel_views(m: AttackedModel, attack: str | None = "DE k=1", i: int | None = None) -> dict[str, Tensor]:
    """What ``panel_figure`` and ``change_figure`` show of ``m``'s model for attacked image ``i`` (default:
    ``first_success``): ``maps`` (2, H, W) A of the clean image and of ``attack``'s adversarial image (the clean
    one twice without an attack), ``probs`` (2, classes) the model's probabilities on them."""
    i = _shown(m, attack, i)
    x = m.images[i:i + 1]
    both = torch.cat([x, m.results[attack].adv_images[i:i + 1] if attack is not None else x])
    return {"maps": attention_of(m.model, both), "probs": probabilities(m.model, both)}


def _shown(m: AttackedModel, attack: str | None, i: int | None) -> int:
    return first_success(m, attack) if i is None and attack is not None else (i or 0)


def panel_figure(m: AttackedModel, attack: str | None = "DE k=1", i: int | None = None,
                 views: dict[str, Tensor] | None = None) -> Any:
    """What the Lab 08 explorer shows for attacked image ``i`` of ``m`` (default: ``first_success``), as a
    static figure: ``labkit.plotting.attention_panel`` with ``attack``'s pixel (None: the image alone).
    ``views``: ``panel_views(m, attack, i)`` (computed from ``m.model`` when not given; a replayed lab passes
    its record's)."""
    i = _shown(m, attack, i)
    views = views if views is not None else panel_views(m, attack, i)
    title = f"{m.name}, test image {int(m.indices[i])}"
    kw: dict[str, Any] = {}
    if attack is not None:
        r = m.results[attack]
        kw = {"adversarial": r.adv_images[i], "pixels": r.pixels[i], "probs_after": views["probs"][1],
              "attention_after": views["maps"][1]}
        title += f" | {attack}: {'success' if m.verified[attack][i] else 'failed (its best candidate shown)'}"
    return attention_panel(m.images[i], views["maps"][0], views["probs"][0], CLASSES, title=title, **kw)


def change_figure(m: AttackedModel, attack: str = "DE k=1", i: int | None = None,
                  views: dict[str, Tensor] | None = None) -> Any:
    """The adversarial pixel of image ``i`` (default: ``first_success``) on A(x), and A(x') - A(x)
    (``labkit.plotting.attention_attack``); ``views`` as in ``panel_figure``."""
    i = _shown(m, attack, i)
    maps = (views if views is not None else panel_views(m, attack, i))["maps"]
    r = m.results[attack]
    return attention_attack(m.images[i], r.adv_images[i], maps[0], maps[1], r.pixels[i],
                            title=f"{m.name}, {attack}: the attacked pixel on the map, and how the map changed")


# -- the claim: attention at the attacked pixels, tested image by image ----------------------------------------------

#: The statement Lab 08 tests (the reading of the paper's "less critical regions" given in the lab's issue).
CLAIM = "attacks succeed where attention is low"


def claim_table(samples: dict[str, Any], measure: str = "percentile", statistic: str = "mean",
                permutations: int = 10_000, resamples: int = 2_000, seed: int = 0) -> list[dict[str, Any]]:
    """The test of Lab 08's claim, one row per (model, attack, reference group), resampling whole images.

    ``samples``: model name -> ``labkit.attention.PixelAttention``. For every attack: the attention
    (``measure``: within-image "percentile", or raw "value") at the pixels of successful attacks against
    (1) random pixels of the same images (paired design: per image, success minus the mean of its random
    pixels) and (2) the pixels of failed attacks (different images: independent design), with
    ``stats.cluster_compare``: a permutation test and bootstrap over images, not pixels. A negative difference
    means attacks succeed at lower attention. ``p_holm`` adjusts for the number of rows (Holm).
    """
    rows: list[dict[str, Any]] = []
    for model, pa in samples.items():
        values = pa.measure(measure)
        attacks = [name[:-len(" success")] for name in pa.groups if name.endswith(" success")]
        for i, attack in enumerate(attacks):
            for j, (reference, group) in enumerate((("random pixels", "random"),
                                                    ("failed attacks", f"{attack} failure"))):
                succ, ref = pa.groups[f"{attack} success"], pa.groups[group]
                c = stats.cluster_compare(values[f"{attack} success"], values[group], succ.image, ref.image,
                                          statistic, permutations, resamples, seed=seed + 2 * i + j)
                rows.append({"model": model, "attack": attack, "reference": reference, "measure": measure,
                             "statistic": statistic, "design": c.design, "successes": c.n_a,
                             "reference pixels": c.n_b, "images": c.clusters, "at successes": c.a,
                             "at reference": c.b, "difference": c.difference, "ci_lo": c.ci_lo, "ci_hi": c.ci_hi,
                             "p_value": c.p_value})
    for row, adjusted in zip(rows, stats.holm([r["p_value"] for r in rows])):
        row["p_holm"] = adjusted
    return rows


def _comparison(row: dict[str, Any]) -> stats.Comparison:
    return stats.Comparison(row["statistic"], row["design"], row["successes"], row["reference pixels"],
                            row["images"], row["at successes"], row["at reference"], row["difference"], row["ci_lo"],
                            row["ci_hi"], row["p_value"], 0.95, 0, 0)


def claim_verdicts(table: list[dict[str, Any]], min_effect: float = 0.05,
                   min_n: int = MIN_IMAGES) -> list[Verdict | None]:
    """One ``stats.direction_verdict`` per row of ``claim_table`` ("successes sit lower than the reference by at
    least ``min_effect``"), the tested rows one family (Bonferroni on both sides of the verdict), None for a row
    with fewer than ``min_n`` success pixels or images."""
    tested = [not (r["successes"] < min_n or r["images"] < min_n or math.isnan(r["p_holm"])) for r in table]
    family = max(1, sum(tested))
    out: list[Verdict | None] = []
    for r, ok in zip(table, tested):
        claim = f"[{r['model']}, {r['attack']}] successful pixels sit at lower attention than {r['reference']}"
        out.append(stats.direction_verdict(claim, _comparison(r), -1, min_effect, family=family) if ok else None)
    return out


def claim_verdict(table: list[dict[str, Any]], min_effect: float = 0.05, min_n: int = MIN_IMAGES,
                  profile: Any = None) -> str:
    """Sentences, computed from ``claim_table``, on "attacks succeed where attention is low", and the overall
    answer (``claim_answer``)."""
    lines = [f"Profile {profile.name}:"] if profile is not None and hasattr(profile, "name") else []
    unit = "percentile" if table and table[0]["measure"] == "percentile" else "A"
    for r, v in zip(table, claim_verdicts(table, min_effect, min_n)):
        if v is None:
            lines.append(f"[{r['model']}, {r['attack']}] successes vs {r['reference']}: not tested ({r['successes']} "
                         f"success pixels on {r['images']} images; at least {min_n} are needed).")
            continue
        lines.append(v.sentence() + f" ({r['statistic']} {unit} {r['at successes']:.3f} vs {r['at reference']:.3f}, "
                     f"{r['design']} design over images, Holm-adjusted p.)")
    lines.append("Overall: " + claim_answer(table, min_effect, min_n))
    return "\n".join(lines)


def claim_answer(table: list[dict[str, Any]], min_effect: float = 0.05, min_n: int = MIN_IMAGES) -> str:
    """The overall answer, from the rows against random pixels (where a success pixel would sit if attention
    did not matter): supported if every tested row is, contradicted if every tested row is, else undecided."""
    found = [v for r, v in zip(table, claim_verdicts(table, min_effect, min_n))
             if r["reference"] == "random pixels" and v is not None]
    if not found:
        return (f"UNDECIDED: the claim '{CLAIM}' cannot be tested here: too few successful attacks (at least {min_n} "
                "per model and attack are needed).")
    count = {s: sum(v.status == s for v in found) for s in stats.STATUSES}
    status = next((s for s in ("supported", "contradicted") if count[s] == len(found)), "undecided")
    return (f"{status.upper()}: '{CLAIM}' — of {len(found)} tested model/attack pairs, {count['supported']} support "
            f"it, {count['contradicted']} contradict it (no lowering of {min_effect:g} or more), "
            f"{count['undecided']} cannot tell.")


def change_verdict(rows: list[dict[str, Any]], kernel_size: int | None = None, tolerance: float = 1e-5) -> str:
    """A sentence from ``labkit.attention.attention_change``'s rows: what happens at the pixel, and how far the
    change reaches."""
    at = rows[0]
    if at["pixels"] == 0:
        return "No attacked pixel to measure (the attack changed no image in this set)."
    moved = [i for i, r in enumerate(rows) if r["pixels"] and r["max |change|"] > tolerance]
    text = (f"At the attacked pixel A moves from {at['mean A before']:.3f} to {at['mean A after']:.3f} on average "
            f"(mean change {at['mean change']:+.4f}; it drops in {at['share dropped']:.0%} of {at['pixels']} "
            "attacks). ")
    if not moved:
        return text + "Nowhere does the map change by more than the tolerance."
    reach = moved[-1]
    if reach == len(rows) - 1:
        return text + (f"The change reaches {rows[-1]['distance']} pixels from the attacked one (largest there "
                       f"{rows[-1]['max |change|']:.2g}): the map changes beyond the pixel's neighbourhood.")
    far = max((r["max |change|"] for r in rows[reach + 1:] if r["pixels"]), default=0.0)
    window = (f" (the gate's {kernel_size}x{kernel_size} kernel sees a pixel only from that close)" if kernel_size
              else "")
    return text + (f"The map changes only within distance {rows[reach]['distance']} of the attacked pixel; farther "
                   f"away the largest change is {far:.1g}, i.e. none{window}.")


def concentration_verdict(rows: list[dict[str, Any]], top: float = 0.1) -> str:
    """A sentence from ``labkit.attention.class_concentration``: how far above a flat map the maps concentrate."""
    if not rows:
        return "No images to summarise."
    flat = rows[0]["flat map"]
    hi, lo = rows[0], rows[-1]
    above = [r["class"] for r in rows if not math.isnan(r["top-mass_lo"]) and r["top-mass_lo"] > flat]
    return (f"The top {top:.0%} of pixels hold between {lo['top-mass']:.1%} ({lo['class']}) and {hi['top-mass']:.1%} "
            f"({hi['class']}) of the attention mass, against {flat:.1%} for a flat map; the most concentrated "
            f"classes are {', '.join(r['class'] for r in rows[:3])}. "
            + (f"{len(above)} of {len(rows)} classes are clearly above a flat map (95% interval above it)."
               if above else "No class is clearly above a flat map (no 95% interval lies above it)."))
