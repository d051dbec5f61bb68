"""Lab 12: what no attack can do. One-pixel verification of whole images, and a model trained to be proven.

Every other lab measures what *our* attacks found; this one measures what no colour at any single pixel can do.
``labkit.certify.certify`` decides each (image, position) exactly on 8-bit colours (or gives up within a budget:
UNKNOWN), so per model the true one-pixel attack success rate lies in a **bracket**:

    attacked ASR  <=  true ASR  <=  1 - proven share

(images an attack fooled are not robust; images proven robust cannot be fooled). Unknown images are "no attack
found", never "robust". The lab's plan:

* ``plan``: the natural small CNN (``natural_config``), the same network after certified one-pixel training
  (``proven_config``: ``labkit.certify.training.OnePixelIBP``, warm-started from the natural model), and that
  training with a median filter in front (``median_config``: ``labkit.models.MedianBlur``), which passes the pixel
  only between its neighbourhood's middle values, so the box the bounds start from is narrow;
* ``claimed_plan``: the defence labs' models named by ``claimed`` (Lab 05's Table 1 but JPEG, Lab 06's APR
  ablations), proven and attacked on the same images as the natural model, with its budget: defences whose
  robustness is claimed beside one whose robustness is proven; ``attention_at_flips`` gives Lab 08's question
  (where is the gate's attention at the pixels that flip?) the verifier's labels;
* ``certify_model``: every correctly classified image of the first ``n_images`` (``labkit.data.first_n`` order),
  through the cache (``labkit.evaluate.run_certify``);
* the defence labs' attack suite on the same images, then the papers' DE budget (400 x 100) on the images the
  suite missed and no proof settled (``budget_images``): which does the full budget fool?
* ``bracket_row``: the table; ``layer_widths`` and ``method_costs``: why proofs are hard (bound width per layer by
  method, boxes per position by method, and whether flipping colours are cube corners);
* ``curve_plan`` and ``curve_rows``: the trade-off of clean accuracy against proven share over the blend weight
  kappa (the last model trained again at each of ``kappas``, every point certified on the same first images).

Sizes: the profile's ``verify`` section (``Profile.lab``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from labkit._checks import check_int, check_number, check_positive
from labkit.cache import NEW_FIELD
from labkit.attacks.corner import cube_corners
from labkit.attention import attention_of, percentile_at
from labkit.certify import (ROBUST, UNKNOWN, VULNERABLE, Boxes, CertifyConfig, CertifyResult, Chain, certify,
                            parse)
from labkit.certify.training import OnePixelIBP
from labkit.data import Split
from labkit.evaluate import run_certify
from labkit.labs import apr_paper, full_budget
from labkit.labs.apr_paper import SUITE_STEP
from labkit.models import gate_of
from labkit.profiles import Profile
from labkit.stats import cluster_compare, wilson
from labkit.suites import Entry
from labkit.train import TrainConfig

#: The lab's section of ``Profile.labs``.
PART = "verify"
#: The lab's record (``labkit.records``) and the step holding ``bracket_row`` rows (``labkit.claims`` shows them).
LAB = "12_verification"
BRACKET_STEP = "bracket"
#: The models of the lab, in the order it shows them (the names its tables print).
MODELS = ("natural", "proven (IBP)", "median + IBP")
#: The bound methods compared in the study, cheapest first (``CertifyConfig.method``).
STUDY_METHODS = ("interval", "forward", "backward", "alpha")
#: The defence labs' models the verifier has bound rules for (``VerifyConfig.claimed``), each with the lab that trains
#: it: Lab 05's Table 1 (all but JPEG, whose codec has none) and Lab 06's APR ablations (its "full" is Lab 05's APR, the
#: same cache key). Lab 04 shares Lab 05's AT and DD (the same cache keys), so the proofs cover its rows too.
CLAIMED_LAB = {"No defence": "05", "AT (one-pixel)": "05", "AT (PGD)": "05", "IT (bit depth 5)": "05",
               "DD (T=20)": "05", "APR": "05", "no_attention": "06", "no_adversarial": "06", "no_regularisation": "06"}
CLAIMABLE = tuple(CLAIMED_LAB)
#: Verdict names, as the tables print them.
VERDICTS = {ROBUST: "proven robust", VULNERABLE: "vulnerable", UNKNOWN: "unknown"}


@dataclass(frozen=True)
class VerifyConfig:
    """What Lab 12 trains, proves and attacks (frozen: part of the record's config)."""

    natural_epochs: int | None = None  # epochs of the natural model (None: the profile's, Labs 01-02's model)
    n_images: int = 1000  # first test images (first_n order); the correctly classified ones are certified
    # Certified training (``OnePixelIBP``), a fine-tune of the natural model.
    proven_epochs: int = 20  # epochs of certified training
    proven_size: int | None = None  # training images per epoch (class-balanced subset; None: all 50,000)
    proven_lr: float = 0.01  # peak learning rate (SGD + OneCycle, as every fine-tune of the book)
    positions: int = 2  # pixel positions bounded per image and step
    kappa: float = 0.5  # final weight of the natural loss
    ramp: float = 0.8  # share of the run over which the colour box grows (geometrically) to the whole cube
    # The colours proofs cover: "continuous" (the whole cube [0, 1]^3) because the attacks (DE, Sparse-RS) search
    # colours between the 8-bit levels too, so only a proof over the whole cube bounds their success; "8bit" is
    # complete (every position decidable) but proves nothing about colours an image file cannot hold.
    threat: str = "continuous"
    # Verification budgets, per image (the verifier's other settings: ``CertifyConfig``'s defaults).
    seconds: float = 60.0  # wall-clock seconds per image of the proven model
    # ... and of the natural model, whose whole-image proofs stay out of reach (issue #23: ~38,000 boxes per
    # position with loose bounds): its budget goes to finding its vulnerable images (corner search first).
    natural_seconds: float = 10.0
    # The natural model's bound method: "interval" (cheap boxes, so the budget is spent in small steps); its
    # alpha-CROWN batches take minutes each on 2 cores (measured: 8 images overran a 20 s budget for 5 minutes).
    natural_method: str = "interval"
    # The proven model's bound method: "alpha" (tightest per box) or "interval" (about 20 boxes/s per image on 2
    # cores against alpha-CROWN's ~2: more positions decided within a small budget).
    method: str = "alpha"
    max_boxes: int = 200_000  # boxes per image
    # The study of bounds (one or two images of the natural model, a few positions, every method).
    study_images: int = 2  # images of the study
    study_positions: int = 6  # positions per image: corners, edges and centre first
    study_budget: int = 4000  # boxes per position and method before it counts as undecided
    study_samples: int = 512  # 8-bit colours sampled per position for the true range of each activation
    # The papers' attack budget, on the images the suite missed and no proof settled.
    de_images: int = 50  # at most this many images per model
    de_population: int = 400  # Su et al.'s population
    de_generations: int = 100  # Su et al.'s generations
    # The third model: the same certified training with a median filter of this window in front (0: no third
    # model). One pixel then reaches the network only through clamp(colour, a, b) at each output near it, a and b
    # the middle values of that output's window, so the bounds start from a box as narrow as the image is smooth.
    # Added after the first cpu record (cache.NEW_FIELD: out of a record's settings while 0).
    median: int = field(default=0, metadata=NEW_FIELD)
    # The trade-off (issue #23 §2): the last model's certified training again at each of these final natural-loss
    # weights (kappa; the lab's own ``kappa`` reuses its model), each certified on the same first ``curve_images``
    # test images with the ``seconds`` budget. Empty: no curve (cache.NEW_FIELD: out of older records' settings).
    kappas: tuple[float, ...] = field(default=(), metadata=NEW_FIELD)
    curve_images: int = field(default=30, metadata=NEW_FIELD)  # first test images of the curve (correct or not)
    # Lab 05's models (its Table 1 names) proven and attacked here on this lab's images, as the natural model is
    # (issue #23 §3: "the proven model beside APR, same images"); the cache holds them where Lab 05 or 05b ran.
    claimed: tuple[str, ...] = field(default=(), metadata=NEW_FIELD)

    def __post_init__(self) -> None:
        if self.natural_epochs is not None:
            check_int("natural_epochs", self.natural_epochs, 1)
        if self.proven_size is not None:
            check_int("proven_size", self.proven_size, 1)
        for name in ("n_images", "proven_epochs", "positions", "max_boxes", "study_images", "study_positions",
                     "study_budget", "study_samples", "de_population", "de_generations"):
            check_int(name, getattr(self, name), 1)
        check_int("de_images", self.de_images, 0)
        check_int("curve_images", self.curve_images, 1)
        unknown = sorted(set(self.claimed) - set(CLAIMABLE))
        if unknown:
            raise ValueError(f"claimed: Labs 05-06 train no certifiable {unknown}; choose among {list(CLAIMABLE)}")
        for k in self.kappas:
            check_number("kappas", k, 0.0, 1.0)
        if self.median:
            TrainConfig(median=self.median)  # a ValueError for a window the filter does not have
            if self.median % 2 == 0:
                raise ValueError(f"median must be odd (the verifier needs a centred window), got {self.median}")
        CertifyConfig(threat=self.threat, method=self.natural_method)  # a ValueError naming the choices
        CertifyConfig(method=self.method)
        check_positive("proven_lr", self.proven_lr)
        check_positive("seconds", self.seconds)
        check_positive("natural_seconds", self.natural_seconds)
        check_number("kappa", self.kappa, 0.0, 1.0)
        check_number("ramp", self.ramp, 0.0, 1.0)


def verify_config(profile: Profile) -> VerifyConfig:
    """The lab's settings in ``profile`` (its ``verify`` section; defaults where it has none)."""
    return VerifyConfig(**profile.lab(PART))


# -- the models ----------------------------------------------------------------------------------------------------

def natural_config(profile: Profile, cfg: VerifyConfig) -> TrainConfig:
    """The natural model: the profile's (Labs 01-02's) small CNN, with ``natural_epochs`` where set."""
    base = profile.train_config()
    return base if cfg.natural_epochs is None else replace(base, epochs=cfg.natural_epochs)


def proven_config(profile: Profile, cfg: VerifyConfig) -> TrainConfig:
    """Certified one-pixel training, fine-tuning the natural model (``OnePixelIBP``)."""
    natural = natural_config(profile, cfg)
    objective = OnePixelIBP(positions=cfg.positions, kappa=cfg.kappa, ramp=cfg.ramp)
    return replace(natural, epochs=cfg.proven_epochs, train_size=cfg.proven_size, lr=cfg.proven_lr,
                   objective=objective, init=natural)


def median_config(profile: Profile, cfg: VerifyConfig) -> TrainConfig:
    """Certified one-pixel training with a median filter in front (``cfg.median``), fine-tuning the natural model
    (its weights go behind the filter)."""
    return replace(proven_config(profile, cfg), median=cfg.median)


def plan(profile: Profile, cfg: VerifyConfig) -> list[TrainConfig]:
    """The lab's models, in ``MODELS`` order (the median model only with ``cfg.median``)."""
    models = [natural_config(profile, cfg), proven_config(profile, cfg)]
    return models + [median_config(profile, cfg)] if cfg.median else models


def curve_kappas(cfg: VerifyConfig) -> tuple[float, ...]:
    """The trade-off's extra blend weights: ``cfg.kappas`` without the lab's own (its model is already trained),
    sorted."""
    return tuple(sorted(k for k in set(cfg.kappas) if k != cfg.kappa))


def curve_plan(profile: Profile, cfg: VerifyConfig) -> list[TrainConfig]:
    """The trade-off's extra models: the lab's last model (median + IBP where ``cfg.median``, else IBP) trained
    again with final natural-loss weight kappa, one per ``curve_kappas``."""
    last = plan(profile, cfg)[-1]
    return [replace(last, objective=replace(last.objective, kappa=k)) for k in curve_kappas(cfg)]


def curve_row(model: str, kappa: float, clean_acc: float, n_images: int, status: Tensor,
              position_status: Tensor, seconds: Tensor) -> dict[str, Any]:
    """One point of the trade-off: over the first ``n_images`` test images (correct or not), the share proven
    one-pixel robust (``status``: the verdicts on the correctly classified ones among them) with its Wilson 95%
    interval, beside the model's clean accuracy (on the profile's evaluation images); the mean share of positions
    proven and the median seconds per proven image."""
    proven = int((status == ROBUST).sum())
    lo, hi = wilson(proven, n_images)
    return {"model": model, "kappa": kappa, "clean_acc": clean_acc, "images": n_images, "correct": len(status),
            "proven_robust_acc": proven / n_images, "proven_lo": lo, "proven_hi": hi,
            "positions_proven": float((position_status == ROBUST).float().mean()) if len(status) else math.nan,
            "median_seconds": _median(seconds[status == ROBUST])}


def curve_name(cfg: VerifyConfig, kappa: float) -> str:
    """A trade-off model's name: the lab's last model's, with its kappa."""
    return f"{MODELS[2] if cfg.median else MODELS[1]}, kappa {kappa:g}"


def curve_rows(points: Sequence[tuple[str, float | None, float, Tensor, dict[str, Tensor]]],
               first: Tensor) -> list[dict[str, Any]]:
    """The trade-off's rows (``curve_row``), each point (name, kappa or None, clean accuracy, the dataset indices
    of its correctly classified images, its ``certify_model`` proofs on them) cut to the images among ``first``
    (the curve's test images), so every point counts the same images."""
    rows = []
    for name, kappa, acc, correct, proofs in points:
        keep = torch.isin(correct, first)
        rows.append(curve_row(name, kappa, acc, len(first), proofs["status"][keep], proofs["position_status"][keep],
                              proofs["seconds"][keep]))
    return rows


def claimed_plan(profile: Profile, cfg: VerifyConfig) -> list[Entry]:
    """The defence labs' entries named by ``cfg.claimed``, in that order, at the profile's defence budgets
    (``Profile.for_defences``): Lab 05's Table 1 suite (``apr_paper.table1_suite``) and Lab 06's ablation variants
    (``apr_paper.ablation_suite``), for the profile's first model and seed."""
    if not cfg.claimed:
        return []
    d = profile.for_defences()
    entries = {e.defence: e for e in [*apr_paper.table1_suite(d), *apr_paper.ablation_suite(d)]
               if e.config.model == d.models[0] and e.config.seed == d.seeds[0] and e.defence in cfg.claimed}
    return [entries[n] for n in cfg.claimed]


def claimed_name(defence: str) -> str:
    """How the lab's tables name the defence labs' model ``defence`` (``CLAIMED_LAB``: the lab that trains it)."""
    return f"{defence} (Lab {CLAIMED_LAB.get(defence, '05')})"


# -- proofs and attacks --------------------------------------------------------------------------------------------

def certify_config(cfg: VerifyConfig, natural: bool = False) -> CertifyConfig:
    """The verifier's settings of the lab: its threat, alpha-CROWN, the lab's per-image budgets (the natural
    model's with ``natural``)."""
    return CertifyConfig(threat=cfg.threat, max_seconds=cfg.natural_seconds if natural else cfg.seconds,
                         max_boxes=cfg.max_boxes, method=cfg.natural_method if natural else cfg.method)


def certify_model(model: nn.Module, key: str, split: Split, indices: Tensor, cfg: VerifyConfig,
                  natural: bool = False, progress: bool = True) -> dict[str, Tensor]:
    """The verdicts on the images ``indices`` (correctly classified ones) as a dict of per-image tensors for a
    record: status (N,), position_status (N, H, W) int8, colours (N, H, W, C) float16 (NaN but where
    vulnerable), seconds (N,), boxes (N,), position_boxes (N, H, W) int32."""
    res = run_certify(model, split.floats(indices), split.labels[indices], model_key=key, indices=indices,
                      config=certify_config(cfg, natural), progress=progress)
    return compact(res)


def compact(res: CertifyResult) -> dict[str, Tensor]:
    """A ``CertifyResult``'s per-image tensors in small dtypes (a record keeps them under 5 MB)."""
    return {"status": res.status, "position_status": res.position_status, "colours": res.colours.half(),
            "seconds": res.seconds.float(), "boxes": res.boxes.int(), "position_boxes": res.position_boxes.int()}


def budget_images(status: Tensor, broken: Tensor, limit: int) -> Tensor:
    """Positions (in the attacked images' order) of at most ``limit`` images whose outcome is still open: the
    suite did not break them and no proof settled them (a proven image cannot be broken, a broken one needs no
    stronger attack)."""
    open_ = (~broken.bool()) & (status != ROBUST)
    return open_.nonzero().squeeze(1)[:limit]


def full_budget_check(model: nn.Module, key: str, split: Split, indices: Tensor, cfg: VerifyConfig,
                      precision: str = "auto", progress: bool = True) -> dict[str, Tensor]:
    """DE at Su et al.'s budget (``de_population`` x ``de_generations``, 1 pixel, untargeted) on ``indices``
    (``labkit.labs.full_budget.full_budget_de``: cached, every success re-checked): {"index": (m,) dataset indices,
    "success": (m,) verified, "queries": (m,)}; empty tensors when no image is open."""
    return full_budget.full_budget_de(model, key, split, indices, cfg.de_population, cfg.de_generations, precision,
                                      progress)


def broken(suite_outcomes: Sequence[int], open_positions: Tensor, de_success: Tensor) -> Tensor:
    """(n,) bool: broken by the suite (its worst-case ``outcomes``) or by the full-budget DE, which ran on the
    images at ``open_positions`` (``budget_images``) with verified successes ``de_success``."""
    out = torch.tensor(list(suite_outcomes), dtype=torch.bool)
    out[open_positions[de_success.bool()]] = True
    return out


def bracket_row(model: str, clean_acc: float, status: Tensor, broken: Tensor,
                position_status: Tensor | None = None) -> dict[str, Any]:
    """One model's row: over its n correctly classified images, the shares proven robust, found vulnerable by
    the verifier and left unknown, the attacks' ASR (``broken``: (n,) 0/1, suite and full-budget DE together),
    and the bracket [attacked ASR, 1 - proven share] on the true one-pixel ASR, with Wilson 95% intervals;
    with ``position_status`` (n, H, W), the mean share of each image's positions proven ("positions_proven")."""
    n = len(status)
    proven, vuln = int((status == ROBUST).sum()), int((status == VULNERABLE).sum())
    fooled = broken.bool() | (status == VULNERABLE)  # the verifier's flips are attacks too (each one re-checked)
    k = int(fooled.sum())
    p_lo, p_hi = wilson(proven, n)
    a_lo, a_hi = wilson(k, n)
    return {"model": model, "clean_acc": clean_acc, "certified": n,
            "proven": proven / n if n else float("nan"), "proven_lo": p_lo, "proven_hi": p_hi,
            "vulnerable": vuln / n if n else float("nan"),
            "unknown": int((status == UNKNOWN).sum()) / n if n else float("nan"),
            "asr": k / n if n else float("nan"), "asr_lo": a_lo, "asr_hi": a_hi,
            "bracket_lo": k / n if n else float("nan"), "bracket_hi": 1 - proven / n if n else float("nan"),
            "proven_robust_acc": clean_acc * proven / n if n else float("nan"),
            "attacked_robust_acc": clean_acc * (1 - k / n) if n else float("nan"),
            "positions_proven": (float((position_status == ROBUST).float().mean()) if position_status is not None
                                 and n else float("nan")),
            "outcomes": tuple(int(v) for v in fooled.tolist()),
            "proofs": tuple(int(v) for v in (status == ROBUST).tolist())}


# -- why proofs are hard ------------------------------------------------------------------------------------------

def study_positions(h: int, w: int, k: int) -> list[tuple[int, int]]:
    """``k`` positions, the cheapest to prove first (a corner reaches fewest neurons): corner, centre, edge,
    then the other corners and edges."""
    order = [(0, 0), (h // 2, w // 2), (0, w // 2), (h - 1, w - 1), (h // 2, 0), (h // 4, w // 4), (0, w - 1),
             (h - 1, w // 2), (h - 1, 0), (h // 2, w - 1)]
    return order[:k]


@torch.no_grad()
def layer_widths(model: nn.Module, image: Tensor, label: int, position: tuple[int, int], samples: int,
                 seed: int = 0) -> dict[str, list[Any]]:
    """Per activation of the verifier's chain: the mean width of each method's bounds over the whole colour cube
    at ``position`` of ``image`` (C, H, W), and the mean width of the range that ``samples`` 8-bit colours (the
    8 corners included) actually reach there: "true" (a lower bound of the true range). Window cells only.
    "layers" names the activations ("input", then the layer that made each)."""
    chain = Chain(parse(model.eval(), tuple(image.shape), torch.float64, image.device), image[None], torch.float64)
    layers = chain.layers  # behind a leading bit-depth reduction, which the chain applies to its inputs
    c = image.shape[0]
    boxes = Boxes(torch.zeros(1, dtype=torch.long), torch.tensor([position[0]]), torch.tensor([position[1]]),
                  torch.zeros(1, c, dtype=torch.float64), torch.ones(1, c, dtype=torch.float64))
    runs = {"interval": chain.forward(boxes, False), "forward": chain.forward(boxes, True),
            "backward": chain.forward(boxes, True, crown_neurons=4096)}
    gen = torch.Generator().manual_seed(seed)
    corners = cube_corners(c).double()
    colours = torch.cat([corners, torch.randint(0, 256, (max(0, samples - len(corners)), c), generator=gen) / 255])
    x = image[None].double().repeat(len(colours), 1, 1, 1)
    x[:, :, position[0], position[1]] = colours
    x = chain.inputs(x)
    out: dict[str, list[Any]] = {m: [] for m in (*runs, "true")}
    out["layers"] = ["input"] + [f"{t + 1} {layer.name}" for t, layer in enumerate(layers)]
    acts = x
    for t in range(len(layers) + 1):
        if t > 0:
            if layers[t - 1].kind == "add":  # residual nets: the study covers plain chains only
                break
            acts = layers[t - 1].forward(acts)
        win = _window(chain, t, boxes, acts)
        out["true"].append(float((win.amax(0) - win.amin(0)).mean()))
        for m, info in runs.items():
            lo, hi = info.bounds[t]
            out[m].append(float((hi - lo).mean()))
    return out


def _window(chain: Chain, t: int, boxes: Boxes, acts: Tensor) -> Tensor:
    """Activation t of every sample, cut to the verifier's window for the box."""
    g = chain.geos[t]
    if acts.dim() == 2:
        return acts
    r0, c0 = (int(v) for v in chain.origin(t, boxes))
    return acts[:, :, r0:r0 + g.size[0], c0:c0 + g.size[1]]


def method_costs(model: nn.Module, images: Tensor, labels: Tensor, cfg: VerifyConfig,
                 methods: tuple[str, ...] = STUDY_METHODS, name: str | None = None) -> list[dict[str, Any]]:
    """Per method, per (image, position) of the study: the verdict, the boxes and the seconds the verifier
    spent (every position searched to the end: ``all_positions``; budget ``study_budget`` boxes per position).
    The corner search is switched off, so every position's cost is the bounds' and splits' own."""
    positions = tuple(study_positions(images.shape[2], images.shape[3], cfg.study_positions))
    corner = corner_flips(model.eval(), images, labels, positions)
    rows = []
    for method in methods:
        ccfg = CertifyConfig(threat=cfg.threat, method=method, corners=False, all_positions=True, positions=positions,
                             position_budget=cfg.study_budget, max_boxes=cfg.study_budget * len(positions),
                             max_seconds=float("inf"))
        t0 = time.perf_counter()
        res = certify(model, images, labels, ccfg)
        seconds = time.perf_counter() - t0
        for i in range(len(images)):
            for j, (r, c) in enumerate(positions):
                verdict = VERDICTS[int(res.position_status[i, r, c])]
                rows.append({"model": name, "method": method, "image": i, "row": r, "col": c, "verdict": verdict,
                             "boxes": int(res.position_boxes[i, r, c]),
                             "corner_flips": bool(corner[i, j]) if verdict == "vulnerable" else None,
                             "seconds": seconds * float(res.position_boxes[i, r, c]) /
                             max(1, int(res.position_boxes[i].sum()))})
    return rows


@torch.no_grad()
def corner_flips(model: nn.Module, images: Tensor, labels: Tensor, positions: Sequence[tuple[int, int]]) -> Tensor:
    """(N, P) bool: whether any of the 2^C cube corners, written at each position, changes the prediction (plain
    fp32 forwards). Where the verifier found a position vulnerable and no corner flips it, the worst colours lie
    inside the cube: a corner search alone would miss that position."""
    n, c = images.shape[:2]
    corners = cube_corners(c)
    out = torch.zeros(n, len(positions), dtype=torch.bool)
    for j, (r, col) in enumerate(positions):
        x = images.repeat_interleave(len(corners), 0).clone()
        x[:, :, r, col] = corners.repeat(n, 1)
        pred = model(x).argmax(1).view(n, len(corners))
        out[:, j] = (pred != labels[:, None]).any(1)
    return out


def cost_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, method): positions decided (of those studied), median and largest boxes per position,
    seconds."""
    out = []
    for model, method in dict.fromkeys((r.get("model"), r["method"]) for r in rows):
        mine = [r for r in rows if (r.get("model"), r["method"]) == (model, method)]
        boxes = torch.tensor([r["boxes"] for r in mine], dtype=torch.float64)
        decided = sum(r["verdict"] != "unknown" for r in mine)
        out.append({"model": model, "method": method, "positions": len(mine), "decided": decided,
                    "median_boxes": float(boxes.median()), "max_boxes": float(boxes.max()),
                    "seconds": sum(r["seconds"] for r in mine)})
    return out


# -- the proven model beside the claimed one, and what the lab found ------------------------------------------------

#: The issue's goal for the proven model (#23): share of test images proven, clean accuracy, median proof seconds.
GOAL = {"proven": 0.70, "clean_acc": 0.80, "median_seconds": 5.0}


def beside_apr(rows: Sequence[dict[str, Any]], record: dict[str, Any] | None,
               defences: Sequence[str] = ("No defence", "APR")) -> list[dict[str, Any]]:
    """This lab's models beside Lab 05's (``record``: its result record, ``labkit.records.load`` of
    ``labkit.labs.apr_paper.TABLE1_LAB``), robust accuracy over all test images: proven (lower bound on the truth)
    and attacked (upper bound). Lab 05's rows come from its worst-case rows (same attack suite and budgets, its own
    images); no proof was attempted on its models, so their proven robust accuracy is unknown (None), not 0."""
    out = [{"model": r["model"], "lab": "12", "clean_acc": r["clean_acc"], "proven_robust_acc": r["proven_robust_acc"],
            "attacked_robust_acc": r["attacked_robust_acc"], "images": r["certified"]} for r in rows]
    for r in (record or {}).get("tables", {}).get(SUITE_STEP, []):
        if r.get("attack") == "worst case" and r.get("defence") in defences:
            out.append({"model": f"{r['defence']} (Lab 05's record)", "lab": "05", "clean_acc": r["clean_acc"],
                        "proven_robust_acc": None, "attacked_robust_acc": r["robust_acc"], "images": r["attacked"]})
    return out


def attention_at_flips(model: nn.Module, images: Tensor, position_status: Tensor, name: str,
                       seed: int = 0) -> dict[str, Any] | None:
    """Lab 08's question (do one-pixel attacks succeed where the gate's attention is low?) with the verifier's labels.

    ``images`` (N, C, H, W) in [0, 1], ``position_status`` (N, H, W) their per-position verdicts. On every image with
    a position the verifier found VULNERABLE (each one a flip re-checked by an fp32 forward), the within-image
    percentile of the clean image's attention A(x) (``labkit.attention.percentile_at``: 0 its lowest pixel, 1 its
    highest) at those positions against its other positions, which are mostly *unknown* (no flip found within the
    budget), not proven robust. Paired per image, whole images resampled (``labkit.stats.cluster_compare``):
    "difference" is the mean over images of (mean percentile at flips - mean at the others). None for a model
    without an attention gate.
    """
    if gate_of(model) is None:
        return None
    n, h, w = position_status.shape
    flips = (position_status == VULNERABLE).flatten(1)
    keep = flips.any(1).nonzero().squeeze(1)
    row: dict[str, Any] = {"model": name, "images": len(keep), "flip_positions": int(flips.sum())}
    if not len(keep):
        return {**row, "at_flips": math.nan, "elsewhere": math.nan, "difference": math.nan, "ci_lo": math.nan,
                "ci_hi": math.nan, "p_value": math.nan}
    maps = attention_of(model, images[keep])
    grid = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1).reshape(1, h * w, 2)
    pct = percentile_at(maps, grid.expand(len(keep), -1, -1).contiguous())  # (n, H * W)
    mine = flips[keep]
    image = torch.arange(len(keep))[:, None].expand(-1, h * w)
    cmp = cluster_compare(pct[mine], pct[~mine], image[mine], image[~mine], seed=seed)
    return {**row, "at_flips": cmp.a, "elsewhere": cmp.b, "difference": cmp.difference, "ci_lo": cmp.ci_lo,
            "ci_hi": cmp.ci_hi, "p_value": cmp.p_value}


def attention_summary(rows: Sequence[dict[str, Any]]) -> str:
    """What ``attention_at_flips`` rows say, one sentence per gated model, generated from the numbers: where the
    verifier's flips sit in the gate's attention (a difference is read as such only where its 95% interval excludes
    0)."""
    parts = []
    for r in rows:
        if not r["images"]:
            parts.append(f"{r['model']}: the verifier found no flipping position, so there is nothing to compare.")
            continue
        if r["ci_lo"] > 0:
            where = "where its attention is higher than elsewhere in the image"
        elif r["ci_hi"] < 0:
            where = "where its attention is lower than elsewhere in the image"
        else:
            where = "no differently from the image's other positions (the interval includes 0)"
        parts.append(f"{r['model']}: on {r['images']} images the {r['flip_positions']} flipping positions sit {where}: "
                     f"mean attention percentile {r['at_flips']:.2f} against {r['elsewhere']:.2f}, difference "
                     f"{r['difference']:+.3f} (95% CI {r['ci_lo']:+.3f} to {r['ci_hi']:+.3f}, p = {r['p_value']:.3g}).")
    return "\n".join(parts)


def _median(values: Tensor) -> float:
    """The median (the mean of the middle two for an even count); NaN for no values."""
    return float(torch.quantile(values.double(), 0.5)) if len(values) else math.nan


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def summary(rows: Sequence[dict[str, Any]], seconds: dict[str, Tensor], status: dict[str, Tensor],
            budget: dict[str, float]) -> str:
    """What the lab found, generated from the bracket rows, per image seconds, verdicts and the seconds budget per
    image (each by model)."""
    medians = {r["model"]: _median(seconds[r["model"]][status[r["model"]] == ROBUST]) for r in rows}
    parts = []
    for r in rows:
        m, med = r["model"], medians[r["model"]]
        parts.append(
            f"{m}: clean accuracy {_pct(r['clean_acc'])}; of {r['certified']} correctly classified images "
            f"{_pct(r['proven'])} proven one-pixel robust (95% CI {_pct(r['proven_lo'])}-{_pct(r['proven_hi'])}), "
            f"{_pct(r['vulnerable'])} found vulnerable by the verifier, {_pct(r['unknown'])} undecided within "
            f"{budget[m]:g} s per image (no attack found, not robust); the attacks and the verifier's flips fooled "
            f"{_pct(r['asr'])}, so the true one-pixel ASR lies in [{_pct(r['bracket_lo'])}, {_pct(r['bracket_hi'])}]"
            + (f"; {_pct(r['positions_proven'])} of an image's positions proven on average"
               if math.isfinite(r.get("positions_proven", math.nan)) else "")
            + (f"; median proof {med:.1f} s per proven image." if med == med else "."))
    best = max(rows, key=lambda r: r["proven_robust_acc"])
    share, med = best["proven_robust_acc"], medians[best["model"]]
    # No proof at all: no median to meet the time goal with (NaN compares False, as the goal needs).
    met = (share >= GOAL["proven"] and best["clean_acc"] >= GOAL["clean_acc"] and med <= GOAL["median_seconds"])
    parts.append(f"Goal (>= {_pct(GOAL['proven'])} of test images proven at >= {_pct(GOAL['clean_acc'])} clean, "
                 f"<= {GOAL['median_seconds']:g} s per proof): {'met' if met else 'not met'} by {best['model']} "
                 f"({_pct(share)} of all test images proven robust at {_pct(best['clean_acc'])} clean).")
    return "\n".join(parts)
