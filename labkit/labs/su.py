"""Lab 02b: Su et al.'s CIFAR-10 study on their own three networks: All-CNN-C, Network in Network and VGG16.

Su, Vargas & Sakurai attack 500 CIFAR-10 test images on each network with differential evolution (population 400,
100 generations, F = 0.5) changing 1, 3 or 5 pixels, untargeted and targeted toward each of the 9 other classes.
Two versions of the paper report different measures (``labkit.papers``): the journal's per-network non-targeted
rates, and arXiv v1's share of images pushed to *at least one* target class with its mean confidence. Here, per
network and per k:

- ``untargeted``: the non-targeted attack on the first ``n_images`` correctly classified test images;
- ``all_targets``: the first ``target_images`` of those, each attacked toward every other class (9 runs per image),
  giving the targeted success rate (over image-target pairs), the "at least one target class" rate (over images)
  and the class-pair map;
- ``summary``: those rates with 95% intervals and the mean probability of the adversarial class on successes;
- ``su_verdicts``: the paper's claims judged from ``summary`` rows (an absolute rate only at the paper's DE budget:
  ``on_paper_budget``), and ``su_table`` to show them.

Every success is re-verified (``labkit.attacks.verify``) before it is counted; every attack runs through
``labkit.evaluate.run_attack`` (cached, resumable), keyed by the network's trained weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from labkit import papers, stats
from labkit._checks import check_int
from labkit.attacks import AttackResult, DEConfig, OnePixel, verify
from labkit.evaluate import run_attack, target_pairs
from labkit.profiles import Profile
from labkit.report import MIN_IMAGES
from labkit.stats import Verdict
from labkit.train import TrainConfig, TrainedModel

#: The lab's section of ``Profile.labs`` (its sizes per profile live in ``labkit.profiles``).
PART = "su"
#: The lab's record (``labkit.records``) and the value in it that holds ``summary``'s rows (``labkit.claims`` reads it).
LAB = "02b_su_networks"
SUMMARY_STEP = "summary"

#: Su et al.'s three CIFAR-10 networks (``labkit.models`` names) and the names their tables use.
NETWORKS = {"allconv": "AllConv", "nin": "NiN", "vgg16": "VGG16"}
#: Su et al.'s DE budget: population and generations (F = 0.5, no crossover: ``DEConfig``'s defaults).
PAPER_BUDGET = (400, 100)


@dataclass(frozen=True)
class SuConfig:
    """What Lab 02b trains and attacks (frozen: part of the lab record's settings)."""

    networks: tuple[str, ...] = tuple(NETWORKS)  # the networks trained and attacked (``NETWORKS`` keys)
    epochs: int = 100  # training epochs of each network (SGD Nesterov, one-cycle, crop + flip: ``train_config``)
    train_size: int | None = None  # training images (class-balanced subset); None = all 50,000
    eval_size: int = 2000  # test images scored after each training epoch (the history's test accuracy)
    n_images: int = 500  # correctly classified test images attacked untargeted per network (Su et al.: 500)
    target_images: int = 500  # the first of those attacked toward each of the 9 other classes
    pixels: tuple[int, ...] = (1, 3, 5)  # k of the untargeted attack (Su et al.: 1, 3, 5)
    target_pixels: tuple[int, ...] = (1, 3, 5)  # k of the all-targets attack (9 runs per image each)
    population: int = PAPER_BUDGET[0]  # DE population (Su et al.: 400)
    generations: int = PAPER_BUDGET[1]  # DE generations (Su et al.: 100)
    precision: str = "auto"  # the attacks' search precision (bf16 where native; successes confirmed in fp32)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.networks) - set(NETWORKS))
        if unknown:
            raise ValueError(f"unknown networks {unknown}; Su et al.'s are {sorted(NETWORKS)}")
        for name in ("epochs", "eval_size", "n_images", "target_images", "population", "generations"):
            check_int(name, getattr(self, name), 1)
        if self.target_images > self.n_images:
            raise ValueError(f"target_images ({self.target_images}) must not exceed n_images ({self.n_images})")
        for k in (*self.pixels, *self.target_pixels):
            check_int("pixels", k, 1)

    @property
    def paper_budget(self) -> bool:
        """Whether the DE budget is Su et al.'s (population 400, 100 generations)."""
        return (self.population, self.generations) == PAPER_BUDGET


def su_config(profile: Profile) -> SuConfig:
    """The sizes of ``profile``: its ``su`` section (``Profile.lab``; none = the paper's settings)."""
    return SuConfig(**profile.lab(PART))


def train_config(network: str, cfg: SuConfig) -> TrainConfig:
    """How ``network`` is trained: labkit's recipe (SGD Nesterov, peak lr 0.1 one-cycle, weight decay 5e-4, batch
    128, random crop + flip, bf16 where native), not the original papers' (their schedules run hundreds of epochs)."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; Su et al.'s are {sorted(NETWORKS)}")
    return TrainConfig(model=network, epochs=cfg.epochs, train_size=cfg.train_size, eval_size=cfg.eval_size)


def de_config(cfg: SuConfig, pixels: int, targeted: bool = False) -> DEConfig:
    """Su et al.'s DE (rand/1, F = 0.5, no crossover, N(128, 127) colours) at ``cfg``'s budget, ``pixels`` pixels."""
    return DEConfig(pixels=pixels, population=cfg.population, generations=cfg.generations, targeted=targeted,
                    precision=cfg.precision)


def untargeted(trained: TrainedModel, split: Any, indices: Tensor, pixels: int, cfg: SuConfig) -> AttackResult:
    """The non-targeted attack on ``split``'s images ``indices`` (N,), through the cache; successes re-verified."""
    images, labels = split.floats(indices), split.labels[indices]
    result = run_attack(OnePixel(trained.model, de_config(cfg, pixels)), images, labels, model_key=trained.key,
                        indices=indices)
    return replace(result, success=verify(trained.model, images, result, pixels))


def all_targets(trained: TrainedModel, split: Any, indices: Tensor, pixels: int, cfg: SuConfig) -> AttackResult:
    """Each image of ``indices`` (N,) attacked toward each of the 9 other classes: a result of N * 9 rows, image
    by image (``labkit.evaluate.target_pairs``' order), through the cache; successes re-verified."""
    rows, targets = target_pairs(split.labels[indices])
    images, labels = split.floats(indices[rows]), split.labels[indices[rows]]
    result = run_attack(OnePixel(trained.model, de_config(cfg, pixels, targeted=True)), images, labels,
                        targets=targets, model_key=trained.key, indices=indices[rows])
    return replace(result, success=verify(trained.model, images, result, pixels))


def _rate(ok: Tensor) -> dict[str, Any]:
    lo, hi = stats.wilson(int(ok.sum()), len(ok))
    return {"broken": int(ok.sum()), "n": len(ok), "rate": ok.float().mean().item() if len(ok) else float("nan"),
            "lo": lo, "hi": hi}


def _confidence(result: AttackResult) -> float:
    """Mean probability of the adversarial class over the successes (NaN without any)."""
    ok = result.success
    return result.adv_prob[ok].mean().item() if ok.any() else float("nan")


def summary(network: str, pixels: int, untargeted_result: AttackResult | None,
            targets_result: AttackResult | None, num_classes: int = 10) -> dict[str, Any]:
    """One row of the lab's table: for ``network`` at ``pixels``, the non-targeted success rate, the targeted rate
    (over image-target pairs), the "at least one target class" rate (over images) and the mean confidence of the
    adversarial class on successes; each rate with ``broken``/``n`` and a Wilson 95% interval (``None`` where the
    attack was not run at this k). Per-image outcomes are kept for the claims (``outcomes``: untargeted,
    ``any_outcomes``: at least one target; ``targeted_probs``: the adversarial class's probability on each
    successful pair, ``targeted_rows``: the image, 0..N-1, of each)."""
    row: dict[str, Any] = {"network": network, "paper_name": NETWORKS[network], "pixels": pixels}
    if untargeted_result is not None:
        ok = untargeted_result.success
        row.update(untargeted=_rate(ok), untargeted_confidence=_confidence(untargeted_result),
                   outcomes=ok.int().tolist())
    if targets_result is not None:
        pairs = targets_result.success
        anyt = pairs.view(-1, num_classes - 1).any(1)
        row.update(targeted=_rate(pairs), any_target=_rate(anyt), targeted_confidence=_confidence(targets_result),
                   any_outcomes=anyt.int().tolist(), targeted_probs=targets_result.adv_prob[pairs].tolist(),
                   targeted_rows=(pairs.nonzero().flatten() // (num_classes - 1)).tolist())
    return row


def table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``summary`` rows flattened for display: percentages with their intervals, one row per (network, k)."""
    def pct(r: dict[str, Any] | None) -> str:
        if r is None:
            return ""
        return f"{100 * r['rate']:.1f}% ({r['broken']}/{r['n']}; {100 * r['lo']:.1f}-{100 * r['hi']:.1f})"

    def conf(v: float | None) -> str:
        return "" if v is None or v != v else f"{100 * v:.1f}%"

    return [{"network": r["paper_name"], "k": r["pixels"], "non-targeted": pct(r.get("untargeted")),
             "targeted (pairs)": pct(r.get("targeted")), "at least one target": pct(r.get("any_target")),
             "confidence, non-targeted": conf(r.get("untargeted_confidence")),
             "confidence, targeted": conf(r.get("targeted_confidence"))} for r in rows]


# -- Su et al.'s claims: verdicts and their table --------------------------------------------------------------------

def on_paper_budget(v: Verdict, population: int, generations: int) -> Verdict:
    """``v`` where the run's DE budget is Su et al.'s (``PAPER_BUDGET``); else the same measurement, "not
    comparable".

    A success rate belongs to its query budget (DE at a smaller budget finds fewer adversarial pixels: a lower
    bound) and to how well the networks were trained; a rate measured at a laptop budget neither confirms nor
    refutes the paper's."""
    if (population, generations) == PAPER_BUDGET:
        return v
    pop, gens = PAPER_BUDGET
    return replace(
        v, status="not comparable", direction=None, size=None, p=None, power=None, n_needed=None,
        why=f"Not comparable: this run's DE budget is population {population} x {generations} generations ({population * (generations + 1):,} "
            f"queries per image at most), the paper's {pop} x {gens} ({pop * (gens + 1):,}): the rates stand side "
            f"by side, untested (a smaller budget gives a lower bound).")


def _per_image_confidence(probs: list[float], rows: list[int]) -> list[float]:
    """Each image's mean probability of the adversarial class over its successful targets (``rows``: its index)."""
    per: dict[int, list[float]] = {}
    for p, r in zip(probs, rows):
        per.setdefault(r, []).append(p)
    return [sum(v) / len(v) for v in per.values()]


def su_verdicts(summary: list[dict[str, Any]], population: int, generations: int) -> list[tuple[str, Verdict]]:
    """(claim key, verdict) for Su et al.'s claims, per network, from ``summary`` rows.

    Keys are ``labkit.papers.Claim.measure`` strings with the network's paper name: ``su_untargeted:<net>``
    (the journal's 1-pixel non-targeted rate), ``su_any_target:<net>`` and ``su_confidence:<net>`` (the arXiv
    abstract's, version not stated: "at least one target class" rate and mean confidence, 1 pixel), ``su_pixels:<net>`` (more pixels break more
    images: k = 5 against k = 1, on the same images, paired). Absolute rates pass ``on_paper_budget``; the
    direction of the pixel count does not depend on the budget and is tested at any budget.
    """
    out: list[tuple[str, Verdict]] = []
    by = {(r["paper_name"], r["pixels"]): r for r in summary}
    for net in dict.fromkeys(r["paper_name"] for r in summary):
        one = by.get((net, 1))
        if one and "untargeted" in one and net in papers.SU2019_CIFAR10:
            u = one["untargeted"]
            v = stats.rate_verdict(f"[{net}] the non-targeted 1-pixel attack succeeds on "
                                   f"{papers.SU2019_CIFAR10[net]['untargeted']:.2%}", u["broken"], u["n"],
                                   papers.SU2019_CIFAR10[net]["untargeted"])
            out.append((f"su_untargeted:{net}", on_paper_budget(v, population, generations)))
        if one and "any_target" in one:
            a, claimed = one["any_target"], papers.SU2017_ARXIV_ANY_TARGET["CIFAR-10"]
            v = stats.rate_verdict(f"[{net}] {claimed:.2%} of images reach at least one target class with 1 pixel",
                                   a["broken"], a["n"], claimed)
            out.append((f"su_any_target:{net}", on_paper_budget(v, population, generations)))
            per_image = _per_image_confidence(one["targeted_probs"], one["targeted_rows"])
            claimed = 100 * papers.SU2017_ARXIV_CONFIDENCE["CIFAR-10"]
            claim = f"[{net}] the adversarial class wins with a mean confidence of {claimed:.2f}%"
            if len(per_image) >= 2:
                mean, lo, hi = stats.mean_ci(per_image)
                v = stats.value_verdict(claim, 100 * mean, 100 * lo, 100 * hi, claimed, len(per_image),
                                        tolerance=10.0, resolution=2.0, unit="%")
            else:
                v = Verdict("undecided", claim, float("nan"), float("nan"), float("nan"), "%", len(per_image), None,
                            None, why="Fewer than two images reached a target class: no interval.")
            out.append((f"su_confidence:{net}", on_paper_budget(v, population, generations)))
        five = by.get((net, max(k for n, k in by if n == net)))
        if one and five and five is not one and "outcomes" in one and "outcomes" in five:
            claim = f"[{net}] {five['pixels']} pixels break more images than 1"
            if len(one["outcomes"]) < MIN_IMAGES:  # a bootstrap over a handful of images decides nothing
                n = len(one["outcomes"])
                out.append((f"su_pixels:{net}", Verdict(
                    "undecided", claim, 100 * (sum(five["outcomes"]) - sum(one["outcomes"])) / max(n, 1),
                    float("nan"), float("nan"), "points", n, None, None,
                    why=f"{n} images: fewer than the {MIN_IMAGES} a paired comparison needs here.")))
                continue
            comp = stats.cluster_compare(torch.tensor(five["outcomes"], dtype=torch.float64),
                                         torch.tensor(one["outcomes"], dtype=torch.float64),
                                         torch.arange(len(one["outcomes"])), torch.arange(len(one["outcomes"])))
            out.append((f"su_pixels:{net}", stats.direction_verdict(claim, comp, sign=1)))
    return out


#: Which version of Su et al. each kind of claim quotes (``labkit.papers``: the two versions measure different things).
SU_VERSIONS = {"su_untargeted": "journal (IEEE TEVC 2019)",
               "su_any_target": "arXiv 1710.08864 abstract as a summary quotes it (version not stated)",
               "su_confidence": "arXiv 1710.08864 abstract as a summary quotes it (version not stated)",
               "su_pixels": "both (no number quoted)"}


def su_table(verdicts: list[tuple[str, Verdict]]) -> list[dict[str, Any]]:
    """``su_verdicts`` as display rows: the version of the paper each claim quotes, the claim with the paper's
    number, ours with its 95% interval and n, and the verdict."""
    def shown(x: float, v: Verdict) -> str:
        return "" if x != x else v.number(x, with_unit=True)

    return [{"version": SU_VERSIONS[key.partition(":")[0]], "claim": v.claim, "ours": shown(v.effect, v),
             "95% CI": "" if v.lo != v.lo else f"{shown(v.lo, v)} to {shown(v.hi, v)}", "n": v.n,
             "verdict": v.status} for key, v in verdicts]
