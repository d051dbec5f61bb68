"""Lab 09: JPEG compression against FGSM, and the "targeted one-pixel class recovery" of the JPEG paper.

The paper's pipeline: FGSM (L-infinity, eps = 0.02) fools the classifier; JPEG compression at quality q undoes
part of it; on the images still misclassified after JPEG, a *targeted* one-pixel attack (DE) toward the *true*
class "recovers" them. Here every step is measured on the same images, with three recovery targets:

- ``oracle``: the true class, on the images misclassified after JPEG (the paper's step; it needs the true label
  and which images are wrong, which a deployed defence does not have);
- ``random``: a wrong class drawn at random (neither the true one nor the current prediction), on the same
  images: if one pixel reaches a random wrong class about as often, the step measures one-pixel reachability,
  not recovery;
- ``runner_up``: a label-free variant a deployment could run, on *every* image: the class the model ranks
  second on the compressed image; the image takes that class when one pixel reaches it.

Targeted DE needs a start class different from its target, so the attacks start from the model's current
(wrong) prediction, never from the true label. The attack records are cached under ``source_key``: the images
attacked are the FGSM images after JPEG, not the dataset's, and their cache entries must not meet the clean
images' ones.

``adaptive_sweep`` adds the attacker who knows the defence: FGSM and PGD through the JPEG step (straight-through
gradient, ``labkit.defences.JPEG``), at the same eps.

``recovery_rows`` makes the paper's Table I of the measured steps (per-image outcomes, Wilson intervals, the paper's
numbers beside), and ``keyed_recovery_verdicts`` / ``recovery_verdict`` test the paper's claims on them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from labkit import papers, stats
from labkit._checks import check_int, check_positive
from labkit.attacks import OnePixel, verify
from labkit.cache import config_key
from labkit.data import predict
from labkit.defences import JPEG, defended
from labkit.evaluate import probabilities, run_attack
from labkit.profiles import Profile
from labkit.report import mean_outcome, on_paper_architecture, verdict_lines
from labkit.stats import Verdict

#: The lab's section of ``Profile.labs`` (its sizes per profile live in ``labkit.profiles``).
PART = "recovery"
#: The lab's record (``labkit.records``), the step holding ``recovery_rows`` and the one naming the attacked model
#: (``labkit.claims`` reads both).
LAB = "09_jpeg_recovery"
TABLE_STEP = "table"
BASE_STEP = "base"

#: FGSM's L-infinity radius in [0, 1] pixel units (the paper's eps = 0.02).
EPS = 0.02
#: The JPEG qualities of the paper's sweeps (Figs. 3, 4 and 7): 10 to 100 in steps of 10.
QUALITIES = tuple(range(10, 101, 10))
#: The qualities of the paper's Table I.
TABLE_QUALITIES = (20, 40)
#: The recovery targets, in the order the lab shows them (see the module docstring).
TARGETS = ("oracle", "random", "runner_up")


@dataclass(frozen=True)
class RecoveryConfig:
    """What Lab 09 measures, on which images (frozen: part of the record's config)."""

    eps: float = EPS  # FGSM's and PGD's L-infinity radius, [0, 1] pixel units (the paper's 0.02)
    qualities: tuple[int, ...] = QUALITIES  # JPEG qualities of the sweeps (the paper's 10..100)
    table: tuple[int, ...] = TABLE_QUALITIES  # qualities of Table I (the paper's 20 and 40)
    n_images: int = 1000  # correctly classified test images of Table I and the sweeps (the paper's 1,000)
    n_sweep: int = 200  # the first of them, for the recovery sweep over every quality (Fig. 7: 200)
    pgd_steps: int = 10  # PGD iterations of the adaptive attacker (step eps / 4, random start)
    seed: int = 0  # the random-target draw and PGD's random start

    def __post_init__(self) -> None:
        check_positive("eps", self.eps)
        check_int("n_images", self.n_images, 1)
        check_int("n_sweep", self.n_sweep, 1)
        check_int("pgd_steps", self.pgd_steps, 1)
        if self.n_sweep > self.n_images:
            raise ValueError(f"n_sweep ({self.n_sweep}) must not exceed n_images ({self.n_images})")
        if not set(self.table) <= set(self.qualities):
            raise ValueError(f"Table I's qualities {self.table} must be among the sweep's {self.qualities}")
        for q in self.qualities:
            check_int("quality", q, 1, 100)


def recovery_config(profile: Profile) -> RecoveryConfig:
    """The profile's Lab 09 sizes: its ``recovery`` section (``Profile.lab``; the paper's 1,000 and 200
    images in ``full``, and where a profile has none)."""
    return RecoveryConfig(**profile.lab(PART))


def source_key(model_key: str, eps: float, quality: int) -> str:
    """The cache key standing for the images attacked at ``quality``: ``model_key``'s FGSM images at ``eps``,
    JPEG-compressed (``evaluate.run_attack`` keys its records by it, apart from the clean images' records)."""
    return config_key("fgsm-jpeg", model_key, eps, quality)


# -- the pipeline's steps --------------------------------------------------------------------------------------------

def fgsm(model: nn.Module, images: Tensor, labels: Tensor, eps: float = EPS) -> Tensor:
    """torchattacks' FGSM on ``model`` (L-infinity ``eps``): adversarial images (N, C, H, W) in [0, 1], CPU."""
    import torchattacks  # optional at import: only Lab 09 and the gradient diagnostics use it

    return torchattacks.FGSM(model, eps=eps)(images, labels).detach().cpu()


def pgd(model: nn.Module, images: Tensor, labels: Tensor, eps: float = EPS, steps: int = 10, seed: int = 0) -> Tensor:
    """torchattacks' PGD on ``model``: ``steps`` steps of eps / 4 from a random start in the eps-ball (drawn with
    torch's global generator, forked and seeded here so the call is repeatable). CPU tensor like ``fgsm``."""
    import torchattacks

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adv = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=steps, random_start=True)(images, labels)
    return adv.detach().cpu()


def jpeg(images: Tensor, quality: int) -> Tensor:
    """``images`` (N, C, H, W) in [0, 1] JPEG-compressed at ``quality`` and decoded (``labkit.defences.JPEG``)."""
    with torch.no_grad():
        return JPEG(quality)(images)


def wrong(model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    """(N,) bool: which images ``model`` misclassifies."""
    return predict(model, images) != labels


def quality_sweep(model: nn.Module, clean: Tensor, adversarial: Tensor, labels: Tensor,
                  qualities: Sequence[int] = QUALITIES) -> dict[str, Tensor]:
    """Misclassification after JPEG at every quality (Figs. 3 and 4): ``"clean"`` and ``"fgsm"``, each
    (len(qualities), N) bool, of ``clean`` images and of their ``adversarial`` (non-adaptive FGSM) versions."""
    return {"clean": torch.stack([wrong(model, jpeg(clean, q), labels) for q in qualities]),
            "fgsm": torch.stack([wrong(model, jpeg(adversarial, q), labels) for q in qualities])}


def adaptive_sweep(model: nn.Module, clean: Tensor, labels: Tensor, cfg: RecoveryConfig) -> dict[str, Tensor]:
    """The attacker who knows the defence: FGSM and PGD on ``JPEG(q) -> model`` (straight-through gradient) at
    ``cfg.eps``, for every quality; ``"fgsm"`` and ``"pgd"``, each (len(qualities), N) bool: misclassified by
    that pipeline."""
    out: dict[str, list[Tensor]] = {"fgsm": [], "pgd": []}
    for q in cfg.qualities:  # ten qualities: a loop over pipelines, the images are batched
        pipeline = defended(model, JPEG(q)).eval()
        out["fgsm"].append(wrong(pipeline, fgsm(pipeline, clean, labels, cfg.eps), labels))
        out["pgd"].append(wrong(pipeline, pgd(pipeline, clean, labels, cfg.eps, cfg.pgd_steps, cfg.seed), labels))
    return {k: torch.stack(v) for k, v in out.items()}


# -- recovery -------------------------------------------------------------------------------------------------------

def random_wrong_targets(labels: Tensor, current: Tensor, n_classes: int = 10, seed: int = 0) -> Tensor:
    """(N,) a class per image, uniformly among those that are neither ``labels`` nor ``current`` (a private
    generator: torch's global one is untouched)."""
    gen = torch.Generator().manual_seed(seed)
    draw = torch.rand(len(labels), n_classes, generator=gen)
    draw[torch.arange(len(labels)), labels] = -1
    draw[torch.arange(len(labels)), current] = -1
    return draw.argmax(1)


def runner_up(model: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """(prediction, the class ranked second) of ``model`` on ``images``, each (N,) int64."""
    top = probabilities(model, images).topk(2, dim=1).indices
    return top[:, 0], top[:, 1]


def recover(model: nn.Module, model_key: str, compressed: Tensor, labels: Tensor, indices: Tensor,
            profile: Profile, quality: int, cfg: RecoveryConfig, targets: Sequence[str] = TARGETS,
            progress: bool = True) -> dict[str, Tensor]:
    """The recovery step at one quality, every target kind of ``targets`` (see the module docstring).

    compressed: (N, C, H, W) the FGSM images after JPEG at ``quality``; labels: (N,) true classes; indices: (N,)
    their test-set indices. Returns per-image tensors over all N images: ``pred`` the prediction after JPEG,
    ``wrong`` (bool), and per target kind ``<kind>/attacked`` (bool: where the step runs), ``<kind>/target``
    (-1 where not attacked), ``<kind>/success`` (the verified, fp32 prediction equals the target), ``<kind>/
    queries`` (0 where not attacked) and ``<kind>/final`` (the class the image ends with: the target when reached,
    else the prediction after JPEG).
    """
    pred, second = runner_up(model, compressed)
    out = {"pred": pred, "wrong": pred != labels}
    key = source_key(model_key, cfg.eps, quality)
    de = OnePixel(model, profile.de_config(targeted=True))
    for kind in targets:
        if kind == "oracle":
            attacked, target = out["wrong"], labels
        elif kind == "random":
            attacked, target = out["wrong"], random_wrong_targets(labels, pred, seed=cfg.seed + quality)
        elif kind == "runner_up":
            attacked, target = torch.ones_like(out["wrong"]), second
        else:
            raise ValueError(f"unknown recovery target {kind!r}; expected one of {TARGETS}")
        rows = attacked.nonzero().squeeze(1)
        success = torch.zeros(len(labels), dtype=torch.bool)
        queries = torch.zeros(len(labels), dtype=torch.long)
        if len(rows):
            # Targeted DE leaves the current (wrong) prediction: it is the "label" the attack starts from.
            res = run_attack(de, compressed[rows], pred[rows], targets=target[rows], model_key=key,
                             indices=indices[rows], progress=progress)
            success[rows] = verify(model, compressed[rows], res, max_pixels=1)
            queries[rows] = res.queries
        out[f"{kind}/attacked"] = attacked
        out[f"{kind}/target"] = torch.where(attacked, target, torch.full_like(target, -1))
        out[f"{kind}/success"] = success
        out[f"{kind}/queries"] = queries
        out[f"{kind}/final"] = torch.where(success, target, pred)
    return out


def sweeps(model: nn.Module, clean: Tensor, labels: Tensor, cfg: RecoveryConfig) -> dict[str, Tensor]:
    """FGSM at ``cfg.eps`` on ``clean`` (N correctly classified images), then JPEG at every quality: ``"fgsm"`` (N,)
    bool misclassified after FGSM, and ``quality_sweep``'s ``"clean"`` and ``"jpeg"`` (Q, N) bool (Figs. 3, 4)."""
    adversarial = fgsm(model, clean, labels, cfg.eps)
    swept = quality_sweep(model, clean, adversarial, labels, cfg.qualities)
    return {"fgsm": wrong(model, adversarial, labels), "clean": swept["clean"], "jpeg": swept["fgsm"]}


def table(model: nn.Module, model_key: str, clean: Tensor, labels: Tensor, indices: Tensor, profile: Profile,
          cfg: RecoveryConfig, examples: int = 4, progress: bool = True) -> dict[str, Tensor]:
    """Table I: at every quality of ``cfg.table``, ``recover`` on the FGSM images after JPEG, every target kind;
    keys ``q<quality>/<recover's key>``. Also ``examples``: (k, 4, C, H, W) uint8, for up to ``examples`` images
    the oracle recovered at the first quality: the clean image, FGSM's, after JPEG, after the recovery pixel."""
    adversarial = fgsm(model, clean, labels, cfg.eps)
    out: dict[str, Tensor] = {}
    for q in cfg.table:
        compressed = jpeg(adversarial, q)
        for k, v in recover(model, model_key, compressed, labels, indices, profile, q, cfg, progress=progress).items():
            out[f"q{q}/{k}"] = v
        if q == cfg.table[0]:
            out["examples"] = _examples(model, model_key, clean, adversarial, compressed, labels, indices, profile, q,
                                        cfg, out[f"q{q}/oracle/success"], examples)
    return out


def _examples(model: nn.Module, model_key: str, clean: Tensor, adversarial: Tensor, compressed: Tensor,
              labels: Tensor, indices: Tensor, profile: Profile, quality: int, cfg: RecoveryConfig, success: Tensor,
              k: int) -> Tensor:
    rows = success.nonzero().squeeze(1)[:k]
    if not len(rows):
        return torch.zeros(0, 4, *clean.shape[1:], dtype=torch.uint8)
    pred = predict(model, compressed[rows])
    # The same cache entry as recover's oracle run would need the same rows: this small one is its own.
    res = run_attack(OnePixel(model, profile.de_config(targeted=True)), compressed[rows], pred, targets=labels[rows],
                     model_key=source_key(model_key, cfg.eps, quality), indices=indices[rows], progress=False)
    stages = torch.stack([clean[rows], adversarial[rows], compressed[rows], res.adv_images], 1)
    return (stages * 255).round().to(torch.uint8)


def recovery_sweep(model: nn.Module, model_key: str, clean: Tensor, labels: Tensor, indices: Tensor, profile: Profile,
                   cfg: RecoveryConfig, progress: bool = True) -> dict[str, Tensor]:
    """Fig. 7: on the first ``cfg.n_sweep`` images, at every quality, JPEG then the oracle recovery: ``"wrong"``
    (Q, n) bool misclassified after JPEG, ``"recovered"`` (Q, n) bool the recovery pixel reached the true class."""
    n = cfg.n_sweep
    adversarial = fgsm(model, clean[:n], labels[:n], cfg.eps)
    wrong_q, recovered = [], []
    for q in cfg.qualities:
        r = recover(model, model_key, jpeg(adversarial, q), labels[:n], indices[:n], profile, q, cfg,
                    targets=("oracle",), progress=progress)
        wrong_q.append(r["wrong"])
        recovered.append(r["oracle/success"])
    return {"wrong": torch.stack(wrong_q), "recovered": torch.stack(recovered)}


def timing(model: nn.Module, clean: Tensor, labels: Tensor, profile: Profile, cfg: RecoveryConfig,
           n: int = 16) -> dict[str, float]:
    """Cost per image, measured now (never from the cache), one step after the other on the same images: FGSM,
    JPEG at ``cfg.table[0]`` (batched, all images), and the oracle recovery attack on up to ``n`` of the images
    misclassified after JPEG. Keys: ``fgsm_ms``, ``jpeg_ms``, ``recovery_ms`` (per image), ``recovery_queries``
    (mean per image), ``recovery_images`` (how many were timed; 0: none misclassified, NaN times). Each step runs
    once on two images first, so imports and first-call set-up are not timed."""
    jpeg(fgsm(model, clean[:2], labels[:2], cfg.eps), cfg.table[0])  # warm-up
    start = time.perf_counter()
    adversarial = fgsm(model, clean, labels, cfg.eps)
    fgsm_s = time.perf_counter() - start
    start = time.perf_counter()
    compressed = jpeg(adversarial, cfg.table[0])
    jpeg_s = time.perf_counter() - start
    pred = predict(model, compressed)
    rows = (pred != labels).nonzero().squeeze(1)[:n]
    out = {"fgsm_ms": 1e3 * fgsm_s / len(clean), "jpeg_ms": 1e3 * jpeg_s / len(clean), "recovery_ms": float("nan"),
           "recovery_queries": float("nan"), "recovery_images": len(rows)}
    if len(rows):
        start = time.perf_counter()
        res = OnePixel(model, profile.de_config(targeted=True))(compressed[rows], pred[rows], labels[rows])
        out["recovery_ms"] = 1e3 * (time.perf_counter() - start) / len(rows)
        out["recovery_queries"] = res.queries.double().mean().item()
    return out


# -- Table I and the verdicts: rows with per-image outcomes, then the paper's claims tested on them ------------------

#: The stages of ``recovery_rows`` (its ``stage`` column): misclassification after each step, then how often one
#: pixel reaches its target.
STAGE_FGSM = "after FGSM"
STAGE_JPEG = "after JPEG"
STAGE_ORACLE = "after recovery (oracle: the true class)"
STAGE_LABEL_FREE = "after recovery (label-free: the runner-up class)"
REACH_ORACLE = "one pixel reaches the true class"
REACH_RANDOM = "one pixel reaches a random wrong class"


def _stage_row(quality: int | None, stage: str, outcomes: Tensor, ids: Tensor, paper: float | None) -> dict[str, Any]:
    k, n = int(outcomes.sum()), len(outcomes)
    lo, hi = stats.wilson(k, n)
    return {"quality": quality, "stage": stage, "images": n, "rate": 100 * k / n if n else float("nan"),
            "lo": 100 * lo, "hi": 100 * hi, "paper": paper, "outcomes": outcomes.int().tolist(),
            "image_ids": ids.tolist()}


def recovery_rows(sweep: dict[str, Tensor], table: dict[str, Tensor], labels: Tensor, image_ids: Tensor,
                  qualities: Sequence[int]) -> list[dict[str, Any]]:
    """Lab 09's Table I as rows with per-image outcomes: misclassification (%, Wilson 95% CI) after FGSM, and at
    every quality of ``qualities`` after JPEG, after the oracle recovery and after the label-free one (the paper's
    number beside each, where it has one); then how often one pixel reaches its target on the images misclassified
    after JPEG: the true class (oracle) and a random wrong class (the control), on the same images.

    ``sweep``: ``sweeps``; ``table``: ``table``; ``labels``/``image_ids``: (N,).
    """
    rows = [_stage_row(None, STAGE_FGSM, sweep["fgsm"], image_ids, papers.JPEG2023_FGSM)]
    for q in qualities:
        jpeg, rec = papers.JPEG2023_TABLE1.get(q, (None, None))
        wrong = table[f"q{q}/wrong"]
        rows.append(_stage_row(q, STAGE_JPEG, wrong, image_ids, jpeg))
        rows.append(_stage_row(q, STAGE_ORACLE, table[f"q{q}/oracle/final"] != labels, image_ids, rec))
        rows.append(_stage_row(q, STAGE_LABEL_FREE, table[f"q{q}/runner_up/final"] != labels, image_ids, None))
        for stage, kind in ((REACH_ORACLE, "oracle"), (REACH_RANDOM, "random")):
            attacked = table[f"q{q}/{kind}/attacked"]
            rows.append(_stage_row(q, stage, table[f"q{q}/{kind}/success"][attacked], image_ids[attacked], None))
    return rows


def _stage(rows: list[dict[str, Any]], quality: int | None, stage: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["quality"] == quality and r["stage"] == stage), None)


def keyed_recovery_verdicts(rows: list[dict[str, Any]], arch: str) -> list[tuple[str, Verdict]]:
    """Lab 09's verdicts, keyed by the claim they test (``papers.Claim.measure``).

    Absolute rates (after FGSM, after JPEG) are tested only on the paper's network (``on_paper_architecture``).
    The relative claims are paired on the same images, the paper's ratio applied to our rate before the step (as
    Labs 03-06 do): JPEG lowers the misclassification after FGSM; the oracle recovery lowers it after JPEG (and the
    label-free variant, which a deployment could run, tested against the same claimed fall). Specificity: one pixel
    reaches the true class more often than a random wrong class on the same images (``stats.direction_verdict``,
    at least 5 points). The paired tests share a Holm adjustment.
    """
    fgsm = _stage(rows, None, STAGE_FGSM)
    out: list[tuple[str, Verdict]] = []
    if fgsm is None:
        return out
    v = stats.rate_verdict(f"FGSM misclassifies {papers.JPEG2023_FGSM:g}% of the images", sum(fgsm["outcomes"]),
                           fgsm["images"], papers.JPEG2023_FGSM / 100)
    out.append(("jpeg_fgsm", on_paper_architecture(v, arch, (papers.JPEG2023_ARCHITECTURE,))))
    tests: list[tuple[str, str, list[int], list[int], float]] = []  # (key, claim, before, after, claimed ratio)
    specific: list[tuple[str, stats.Comparison]] = []
    for q, (jpeg_claim, rec_claim) in papers.JPEG2023_TABLE1.items():
        jpeg, oracle, free = (_stage(rows, q, s) for s in (STAGE_JPEG, STAGE_ORACLE, STAGE_LABEL_FREE))
        if jpeg is None:
            continue
        v = stats.rate_verdict(f"after JPEG at q = {q}, {jpeg_claim:g}% are misclassified", sum(jpeg["outcomes"]),
                               jpeg["images"], jpeg_claim / 100)
        out.append((f"jpeg:{q}", on_paper_architecture(v, arch, (papers.JPEG2023_ARCHITECTURE,))))
        tests.append((f"jpeg:{q}", f"JPEG at q = {q} lowers the misclassification after FGSM by the paper's ratio "
                                   f"({papers.JPEG2023_FGSM:g}% -> {jpeg_claim:g}%)", fgsm["outcomes"],
                      jpeg["outcomes"], jpeg_claim / papers.JPEG2023_FGSM))
        for row, who in ((oracle, "the oracle recovery (true class)"),
                         (free, "a label-free recovery (runner-up class)")):
            tests.append((f"jpeg_recovery:{q}", f"at q = {q}, {who} lowers the misclassification after JPEG by the "
                                                f"paper's ratio ({jpeg_claim:g}% -> {rec_claim:g}%)",
                          jpeg["outcomes"], row["outcomes"], rec_claim / jpeg_claim))
        reach, control = _stage(rows, q, REACH_ORACLE), _stage(rows, q, REACH_RANDOM)
        if reach is not None and control is not None and reach["images"] and reach["image_ids"] == control["image_ids"]:
            ids = torch.tensor(reach["image_ids"])
            specific.append((f"at q = {q}", stats.cluster_compare(
                torch.tensor(reach["outcomes"], dtype=torch.float64),
                torch.tensor(control["outcomes"], dtype=torch.float64), ids, ids)))
    family = len(tests) + len(specific)  # the paired questions of the lab: one family (Bonferroni, both sides)
    for key, claim, before, after, ratio in tests:
        out.append((key, stats.paired_verdict(claim, before, after, mean_outcome(before) * (ratio - 1), family=family,
                                              claimed_ratio=ratio)))
    for where, comp in specific:
        out.append(("jpeg_specific", stats.direction_verdict(
            f"{where}, one pixel reaches the true class more often than a random wrong class (difference of "
            "success rates, same images)", comp, sign=1, family=family)))
    return out


def recovery_verdict(rows: list[dict[str, Any]], arch: str) -> str:
    """Lab 09's verdict sentences (``keyed_recovery_verdicts``), one per line."""
    return verdict_lines([v for _, v in keyed_recovery_verdicts(rows, arch)])
