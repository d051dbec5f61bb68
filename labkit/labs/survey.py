"""Labs 10-11: the survey's attack x defence grid: four attacks, four defences, macro-F1 and time, per dataset.

The WPI study (``labkit.papers.SURVEY``) trains a small CNN on MNIST, CIFAR-10 and GTSRB, attacks it with
iterative FGSM with momentum, DeepFool, Carlini-Wagner L2 and its own pixel swap, and defends it with
adversarial training on a mix of those attacks, Gaussian smoothing, gradient noise and defensive distillation,
reporting macro-F1 after each attack and a "prediction time". Here, on every dataset with a local copy:

- ``train_config``: the survey's CNN (``labkit.models.survey_cnn``) with a held-out validation split and the
  checkpoint of lowest validation loss (``TrainConfig.val_size``), never the test set;
- ``defended_models``: the undefended model and the four defended pipelines, each attacked whole;
- ``grid``: every attack on every pipeline, on the same test images (the first ``n_images`` of the balanced
  order, misclassified ones included: F1 is over all of them; attack success over the correctly classified),
  with per-image outcomes for paired tests, perturbation sizes, and attack and prediction time measured
  separately (``timing``). Rows with ``attacker="knows the defence"`` add the attacker the survey did not
  have: gradient noise is removed from the gradient (the limit of averaging it away, EOT; outputs are
  unchanged, so the same adversarial images fool the pipeline), distillation's saturated softmax is undone by
  dividing its logits by T (Carlini & Wagner 2016); smoothing is differentiable, so the plain attack already
  knows it, and adversarial training hides nothing.

Every attack goes through ``labkit.evaluate.run_attack`` (cached, resumable), keyed by the pipeline it attacks.

From the rows, the survey's claims: ``survey_table`` (macro-F1 with intervals, the survey's beside ours),
``survey_matrix`` and ``survey_f1_series`` (for the figures), ``survey_examples`` (titles of ``examples``),
``survey_f1_verdicts`` (F1 after each attack, Lab 10) and ``survey_defence_verdicts`` (each defence, worst case per
image over every attacker run on it, Lab 11).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from labkit import papers, stats
from labkit._checks import check_int, check_positive
from labkit.attacks import SURVEY_ATTACKS, AttackResult, perturbation_norms, survey_attack
from labkit.data import available, first_n, load_dataset, predict
from labkit.defences import GaussianSmoothing, GradientMasking, MixedAT, defended, defended_key, distillation_config
from labkit.evaluate import probabilities, run_attack, time_inference
from labkit.profiles import Profile
from labkit.stats import Verdict
from labkit.train import TrainConfig, TrainedModel

#: The labs' section of ``Profile.labs`` (their sizes per profile live in ``labkit.profiles``).
PART = "survey"
#: The labs' records (``labkit.records``) and the steps in them holding ``grid`` rows (``labkit.claims`` reads them):
#: Lab 10's undefended rows (``undefended_rows``) and Lab 11's whole grid.
ATTACKS_LAB = "10_survey_attacks"
ATTACKS_STEP = "attacks"
DEFENCES_LAB = "11_survey_defences"
GRID_STEP = "grid"

#: The survey's four attacks, in its order (labkit names).
ATTACKS = SURVEY_ATTACKS
#: The defences of the grid, "none" first (the reference of every comparison).
DEFENCES = ("none", "adversarial training (mixed)", "Gaussian smoothing", "gradient masking", "distillation")
#: Who attacks: the survey's attacker (the pipeline's own gradient) and the one who knows the defence.
ATTACKERS = ("plain", "knows the defence")
#: The defences whose plain attack does not already know them (``adaptive_model``).
ADAPTIVE = ("gradient masking", "distillation")


@dataclass(frozen=True)
class SurveyConfig:
    """What Labs 10-11 train and measure (frozen: part of the records' settings)."""

    datasets: tuple[str, ...] = ("fashion-mnist", "cifar10")  # measured datasets (``datasets_here``)
    epochs: int = 20  # training epochs of every model (the survey's 20)
    train_size: int | None = None  # training images (after the validation split); None = all the rest
    val_size: int = 5000  # held-out training images: the checkpoint of lowest validation loss is kept
    n_images: int = 1000  # test images attacked per pipeline (the first of the class-balanced order)
    eps: float = 8 / 255  # MI-FGSM's L-infinity radius, [0, 1] units (the survey states none: the usual CIFAR one)
    steps: int = 10  # MI-FGSM iterations (step eps / steps; momentum 1.0, torchattacks' default)
    deepfool_steps: int = 50  # DeepFool's iterations (overshoot 0.02)
    cw_steps: int = 100  # CW-L2's Adam steps (c = 1, kappa = 0, lr 0.01: torchattacks' defaults)
    swaps: int = 100  # the pixel swap's budget: pairs swapped at most per image (one query each)
    sigma: float = 1.0  # Gaussian smoothing's standard deviation, pixels
    kernel: int = 3  # its kernel size, pixels (odd)
    noise: float = 1.0  # gradient masking's eps: input gradient + eps * N(0, 1) (per pixel; gradients are ~1e-3)
    temperature: float = 20.0  # defensive distillation's T
    at_epochs: int = 2  # mixed adversarial training: epochs of the fine-tune from the undefended model
    at_size: int | None = 10_000  # ... on this many training images (None: all)
    timing_images: int = 100  # images timed for attack and prediction time (side by side, now, never cached)
    examples: int = 4  # example images shown per dataset (their Figs. 7-11)

    def __post_init__(self) -> None:
        for name in ("epochs", "val_size", "n_images", "steps", "deepfool_steps", "cw_steps", "swaps", "at_epochs",
                     "timing_images"):
            check_int(name, getattr(self, name), 1)
        for name in ("eps", "sigma", "noise", "temperature"):
            check_positive(name, getattr(self, name))


def datasets_here() -> tuple[str, ...]:
    """The datasets this machine can measure: MNIST digits where a copy is configured, else Fashion-MNIST (Debian's
    package; it stands in for the survey's MNIST), CIFAR-10, and GTSRB where ``LABKIT_GTSRB`` is set."""
    digits = "mnist" if available("mnist") else "fashion-mnist"
    return (digits, "cifar10") + (("gtsrb",) if available("gtsrb") else ())


def survey_config(profile: Profile) -> SurveyConfig:
    """The profile's sizes (its ``survey`` section, ``Profile.lab``; none = the survey's settings), over the
    datasets this machine has (part of the settings a record must match)."""
    return SurveyConfig(**{**profile.lab(PART), "datasets": datasets_here()})


def train_config(dataset: str, cfg: SurveyConfig, **overrides: Any) -> TrainConfig:
    """The survey's CNN on ``dataset``: Adam (lr 1e-3, cosine), batch 128, no augmentation (the survey states
    none), validation split and best-validation-loss checkpoint."""
    base = TrainConfig(model="survey_cnn", dataset=dataset, epochs=cfg.epochs, batch_size=128, optimizer="adam",
                       lr=1e-3, schedule="cosine", augment=False, train_size=cfg.train_size, val_size=cfg.val_size,
                       eval_size=2000)
    return replace(base, **overrides)


def defence_configs(dataset: str, cfg: SurveyConfig) -> dict[str, TrainConfig]:
    """The trained models of the grid: ``"none"``, the mixed adversarial fine-tune (from ``"none"``, the same
    schedule for ``at_epochs`` on ``at_size`` images) and the distilled student (its teacher trained alongside)."""
    base = train_config(dataset, cfg)
    mixed = replace(base, epochs=cfg.at_epochs, train_size=cfg.at_size, init=base,
                    objective=MixedAT(eps=cfg.eps, steps=cfg.steps, deepfool_steps=min(cfg.deepfool_steps, 10),
                                      cw_steps=min(cfg.cw_steps, 10), swaps=min(cfg.swaps, 20)))
    return {"none": base, "adversarial training (mixed)": mixed,
            "distillation": distillation_config(base, cfg.temperature)}


def defence_plan(cfg: SurveyConfig) -> list[tuple[str, str, TrainConfig]]:
    """(dataset, defence, config) of every model Lab 11 trains, dataset by dataset (``defence_configs``)."""
    return [(d, name, c) for d in cfg.datasets for name, c in defence_configs(d, cfg).items()]


class ScaledLogits(nn.Module):
    """``model``'s logits divided by ``temperature``: the same predictions, an unsaturated softmax (the adaptive
    attacker's view of a distilled model)."""

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) / self.temperature


@dataclass
class Pipeline:
    """One defended model of the grid: ``model`` is what is deployed (and predicts), ``attacked`` what the plain
    attacker differentiates (the same), ``adaptive`` what the attacker who knows the defence differentiates
    (None: the plain attack already knows it); ``key`` names it in the attack cache."""

    name: str
    model: nn.Module
    key: str
    adaptive: nn.Module | None = None


def pipelines(trained: dict[str, TrainedModel], cfg: SurveyConfig) -> dict[str, Pipeline]:
    """The five pipelines of ``DEFENCES`` from the trained models of ``defence_configs``."""
    base = trained["none"]
    smooth = GaussianSmoothing(cfg.kernel, cfg.sigma)
    masked = GradientMasking(base.model, cfg.noise)
    student = trained["distillation"]
    return {
        "none": Pipeline("none", base.model, base.key),
        "adversarial training (mixed)": Pipeline("adversarial training (mixed)",
                                                 trained["adversarial training (mixed)"].model,
                                                 trained["adversarial training (mixed)"].key),
        "Gaussian smoothing": Pipeline("Gaussian smoothing", defended(base.model, smooth),
                                       defended_key(base.key, smooth)),
        "gradient masking": Pipeline("gradient masking", masked, defended_key(base.key, masked),
                                     adaptive=base.model),
        "distillation": Pipeline("distillation", student.model, student.key,
                                 adaptive=ScaledLogits(student.model, cfg.temperature).eval()),
    }


def make_attack(name: str, model: nn.Module, cfg: SurveyConfig) -> Any:
    """The survey's attack ``name`` (one of ``ATTACKS``) on ``model``, at ``cfg``'s budget."""
    return survey_attack(name, model, eps=cfg.eps, steps=cfg.steps, deepfool_steps=cfg.deepfool_steps,
                         cw_steps=cfg.cw_steps, swaps=cfg.swaps)


def images_of(dataset: str, cfg: SurveyConfig) -> tuple[Any, Tensor]:
    """(test split, indices of the first ``n_images`` in the class-balanced order) of ``dataset``."""
    split = load_dataset(dataset, "test")
    return split, first_n(split, cfg.n_images)


def attack_row(pipeline: Pipeline, attack: str, attacker: str, split: Any, idx: Tensor, cfg: SurveyConfig,
               dataset: str, progress: bool = True) -> dict[str, Any]:
    """One row of the grid: ``attack`` on ``pipeline`` by ``attacker`` over the images ``idx``.

    Columns: dataset, defence, attack, attacker, images, clean_acc, clean_f1 (macro), adv_acc, adv_f1 (predictions
    of the deployed pipeline on the adversarial images), asr (over the images the pipeline got right) with its
    Wilson interval, median L0 / L2 / L-infinity of the successful changes; per image, ``labels``, ``clean_pred``
    and ``adv_pred`` (with ``classes``, the class count) for paired tests and F1 intervals.
    """
    images, labels = split.floats(idx), split.labels[idx]
    target = pipeline.model if attacker == "plain" else pipeline.adaptive
    if target is None:
        raise ValueError(f"{pipeline.name!r} has no adaptive attacker: the plain attack already knows it")
    result: AttackResult = run_attack(make_attack(attack, target, cfg), images, labels, indices=idx,
                                      model_key=f"{pipeline.key}/{attacker}", progress=progress)
    clean_pred = predict(pipeline.model, images)
    adv_pred = predict(pipeline.model, result.adv_images)
    k = len(split.classes)
    correct = clean_pred == labels
    broken = correct & (adv_pred != labels)
    size = perturbation_norms(images, result.adv_images)
    lo, hi = stats.wilson(int(broken.sum()), int(correct.sum()))
    row = {"dataset": dataset, "defence": pipeline.name, "attack": attack, "attacker": attacker, "images": len(idx),
           "clean_acc": correct.float().mean().item(), "clean_f1": stats.macro_f1(labels, clean_pred, k),
           "adv_acc": (adv_pred == labels).float().mean().item(), "adv_f1": stats.macro_f1(labels, adv_pred, k),
           "asr": broken.sum().item() / max(1, int(correct.sum())), "asr_lo": lo, "asr_hi": hi}
    for name, v in size.items():
        row[f"{name.lower()}_median"] = v[broken].double().median().item() if broken.any() else float("nan")
    # Per image, for paired tests and F1 intervals (``survey_defence_verdicts``, ``survey_table``): the labels and both
    # predictions.
    row.update(classes=k, labels=labels.tolist(), clean_pred=clean_pred.tolist(), adv_pred=adv_pred.tolist())
    return row


def grid(pipes: dict[str, Pipeline], split: Any, idx: Tensor, cfg: SurveyConfig, dataset: str,
         defences: tuple[str, ...] = DEFENCES, progress: bool = True) -> list[dict[str, Any]]:
    """``attack_row`` for every defence of ``defences`` x attack, plain, then knowing the defence where that
    differs (``ADAPTIVE``; the black-box pixel swap sees the same outputs either way, so it runs plain only)."""
    rows = []
    for name in defences:
        for attack in ATTACKS:
            rows.append(attack_row(pipes[name], attack, "plain", split, idx, cfg, dataset, progress))
            if name in ADAPTIVE and attack != "pixel swap":
                rows.append(attack_row(pipes[name], attack, "knows the defence", split, idx, cfg, dataset, progress))
    return rows


def undefended_rows(trained: dict[str, TrainedModel], cfg: SurveyConfig, progress: bool = True) -> list[dict[str, Any]]:
    """Lab 10: the four attacks on each dataset's undefended CNN (``trained``: dataset -> model), ``grid`` rows."""
    rows = []
    for d, t in trained.items():
        split, idx = images_of(d, cfg)
        rows += grid({"none": Pipeline("none", t.model, t.key)}, split, idx, cfg, d, ("none",), progress)
    return rows


def undefended_timing(trained: dict[str, TrainedModel], cfg: SurveyConfig) -> list[dict[str, Any]]:
    """Lab 10: ``timing`` of each dataset's undefended CNN, rows with their ``dataset``."""
    rows = []
    for d, t in trained.items():
        split, idx = images_of(d, cfg)
        rows += [{"dataset": d, **r} for r in timing({"none": Pipeline("none", t.model, t.key)}, split, idx, cfg,
                                                      ("none",))]
    return rows


def timing(pipes: dict[str, Pipeline], split: Any, idx: Tensor, cfg: SurveyConfig,
           defences: tuple[str, ...] = DEFENCES) -> list[dict[str, Any]]:
    """Milliseconds per image, measured now, side by side on the first ``timing_images`` of ``idx``: each
    pipeline's prediction (``evaluate.time_inference``: batches of 100, median of repeats) and each plain
    attack's own run on it (one run, after a two-image warm-up). The survey's "prediction time" appears to add
    the two; both are kept apart here, with their sum."""
    idx = idx[:cfg.timing_images]
    images, labels = split.floats(idx), split.labels[idx]
    predict_s = time_inference({d: pipes[d].model for d in defences}, images)
    rows = []
    for d in defences:
        for attack in ATTACKS:
            atk = make_attack(attack, pipes[d].model, cfg)
            atk(images[:2], labels[:2])  # warm-up: first-call set-up is not the attack's cost
            start = time.perf_counter()
            atk(images, labels)
            attack_ms = 1e3 * (time.perf_counter() - start) / len(idx)
            rows.append({"defence": d, "attack": attack, "predict_ms": 1e3 * predict_s[d], "attack_ms": attack_ms,
                         "total_ms": 1e3 * predict_s[d] + attack_ms, "images": len(idx)})
    return rows


def examples(pipe: Pipeline, split: Any, idx: Tensor, cfg: SurveyConfig) -> dict[str, Tensor]:
    """The first ``cfg.examples`` images of ``idx`` under each plain attack on ``pipe`` (their Figs. 7-11):
    ``images`` (E, 1 + A, C, H, W) uint8 (clean, then one per attack of ``ATTACKS``), ``pred`` and ``prob``
    (E, 1 + A): the pipeline's prediction and its probability. From the cached attack results."""
    sel = idx[:cfg.examples]
    clean, labels = split.floats(sel), split.labels[sel]
    stages = [clean]
    for attack in ATTACKS:
        res = run_attack(make_attack(attack, pipe.model, cfg), split.floats(idx), split.labels[idx], indices=idx,
                         model_key=f"{pipe.key}/plain", progress=False)
        stages.append(res.adv_images[:len(sel)])
    x = torch.stack(stages, 1)  # (E, 1 + A, C, H, W)
    p = probabilities(pipe.model, x.flatten(0, 1)).view(len(sel), len(stages), -1)
    prob, pred = p.max(-1)
    return {"images": (x * 255).round().to(torch.uint8), "pred": pred, "prob": prob, "labels": labels}


# -- the survey's claims: tables and verdicts from the grid's rows ---------------------------------------------------

#: The survey's dataset for each of labkit's (Fashion-MNIST stands in for MNIST where no MNIST copy is set).
SURVEY_PAPER_DATASET = {"mnist": "MNIST", "fashion-mnist": "MNIST", "cifar10": "CIFAR-10", "gtsrb": "GTSRB"}


def _f1_of(row: dict[str, Any], pred: str = "adv_pred") -> tuple[float, float, float]:
    k = row["classes"]
    return (stats.macro_f1(row["labels"], row[pred], k), *stats.f1_interval(row["labels"], row[pred], k))


def survey_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``grid`` rows for display: macro-F1 before and after the attack (95% bootstrap interval over
    images), accuracy, attack success over the correctly classified images (Wilson), median perturbation sizes of
    the successes, and the survey's F1 beside the undefended model's plain rows (its dataset in brackets)."""
    out = []
    for r in rows:
        f1, lo, hi = _f1_of(r)
        paper_ds = SURVEY_PAPER_DATASET.get(r["dataset"])
        paper = (papers.SURVEY_F1_AFTER_ATTACK.get(r["attack"], {}).get(paper_ds)
                 if r["defence"] == "none" and r["attacker"] == "plain" else None)
        out.append({"dataset": r["dataset"], "defence": r["defence"], "attack": r["attack"], "attacker": r["attacker"],
                    "images": r["images"], "clean F1": r["clean_f1"], "F1 after": f1, "F1 lo": lo, "F1 hi": hi,
                    "paper F1 after": None if paper is None else f"{paper:g} ({paper_ds})",
                    "accuracy after": r["adv_acc"], "ASR": r["asr"], "ASR lo": r["asr_lo"], "ASR hi": r["asr_hi"],
                    "L0 median": r["l0_median"], "L2 median": r["l2_median"], "Linf median": r["linf_median"]})
    return out


def survey_f1_verdicts(rows: list[dict[str, Any]]) -> list[tuple[str, Verdict]]:
    """The survey's F1-after-attack claims (``papers.SURVEY_F1_AFTER_ATTACK``), keyed ``survey_f1:<attack>|<its
    dataset>``, from the undefended model's plain rows: ``stats.value_verdict`` on macro-F1 with its bootstrap
    interval, 0.10 either side. On Fashion-MNIST (the stand-in for MNIST) the verdict is undecided by rule: another
    dataset measures something else. The survey states no attack budget; the lab states ours."""
    out = []
    for r in rows:
        if r["defence"] != "none" or r["attacker"] != "plain":
            continue
        paper_ds = SURVEY_PAPER_DATASET.get(r["dataset"])
        claimed = papers.SURVEY_F1_AFTER_ATTACK.get(r["attack"], {}).get(paper_ds)
        if claimed is None:
            continue
        f1, lo, hi = _f1_of(r)
        v = stats.value_verdict(f"{r['attack']} lowers the CNN's macro-F1 on {paper_ds} to {claimed:g}", f1, lo, hi,
                                claimed, r["images"])
        if r["dataset"] == "fashion-mnist":
            v = replace(v, status="not comparable", direction=None, size=None, why=f"Not comparable: measured on Fashion-MNIST, which stands in for MNIST "
                                    f"here (set LABKIT_MNIST for the digits): not a test of the claim. {v.why}")
        elif r["attack"] == "CW-L2":
            v = replace(v, status="not comparable", direction=None, size=None, why="Not comparable: the survey's CW searches over its "
                                    "constant c; ours runs one c (torchattacks' CW has no search), a weaker attack. "
                                    + v.why)
        out.append((f"survey_f1:{r['attack']}|{paper_ds}", v))
    return out


def _worst(rows: list[dict[str, Any]], defence: str, attackers: Sequence[str] = ATTACKERS,
           attacks: Sequence[str] | None = None) -> Tensor | None:
    """Per image, 1 when any attack of ``attacks`` (default: all) by any of ``attackers`` leaves ``defence``'s
    pipeline wrong: the worst case over every attacker run on it (an aware attacker that is weaker on some image
    never hides the plain one's success)."""
    found = [r for r in rows if r["defence"] == defence and r["attacker"] in attackers
             and (attacks is None or r["attack"] in attacks)]
    if not found:
        return None
    wrong = [torch.tensor(r["adv_pred"]) != torch.tensor(r["labels"]) for r in found]
    return torch.stack(wrong).any(0).double()


def covers_aware(rows: list[dict[str, Any]], defence: str, attackers: Sequence[str] = ATTACKERS) -> bool:
    """Whether ``defence``'s rows by ``attackers`` include one who knows it: a defence-aware row, or a defence the
    plain attacks already see through (smoothing is differentiable; adversarial training changes only the weights)."""
    return defence in SEEN_THROUGH or any(r["defence"] == defence and r["attacker"] != "plain"
                                          and r["attacker"] in attackers for r in rows)


#: Survey defences that the plain attacks already attack as deployed (no separate aware attacker is needed): the
#: pipeline is differentiable and its outputs are what the attacks query.
SEEN_THROUGH = ("none", "adversarial training (mixed)", "Gaussian smoothing")


def _attackers_label(rows: list[dict[str, Any]], defence: str, attackers: Sequence[str]) -> str:
    """Which attackers a survey verdict's worst case covers, in words."""
    used = [a for a in attackers if any(r["defence"] == defence and r["attacker"] == a for r in rows)]
    label = " + ".join("the survey's" if a == "plain" else f"one who {a}" for a in used)
    return label + (" (they attack the defended pipeline as deployed)" if defence in SEEN_THROUGH else "")


def _no_change(claim: str, comp: stats.Comparison, margin: float, p: float, family: int = 1) -> Verdict:
    """"The defence changes nothing": an equivalence question on the paired difference (its interval, widened to
    the family level, against +-``margin``): supported inside, contradicted wholly outside, undecided across."""
    d = comp.difference
    widen = stats.z_of(family=family) / stats.z_of()  # the bootstrap interval is 95%; the family's is wider
    lo, hi = d - (d - comp.ci_lo) * widen, d + (comp.ci_hi - d) * widen
    common = dict(claim=claim, effect=d, lo=lo, hi=hi, unit="", n=comp.clusters, p=p, power=None)
    if -margin <= lo and hi <= margin:
        return Verdict("supported", **common, why=f"The interval lies within +-{margin:g} of no change.")
    if hi < -margin or lo > margin:
        return Verdict("contradicted", **common, why=f"The interval lies wholly beyond +-{margin:g}: the defence "
                                                     "changes the fooled share.")
    return Verdict("undecided", **common, why=f"The interval reaches beyond +-{margin:g} without excluding no "
                                              "change: more images would decide.")


def survey_defence_verdicts(rows: list[dict[str, Any]], attackers: Sequence[str] = ATTACKERS,
                            min_effect: float = 0.05, directions: dict[str, int] | None = None,
                            against: dict[str, Sequence[str]] | None = None) -> list[tuple[str, Verdict]]:
    """Per dataset and defence, the survey's claim about it, keyed ``survey_defence:<defence>``: the share of images
    some attack leaves misclassified (worst case per image over the four attacks and every attacker of
    ``attackers``, misclassified clean images included), defended minus undefended on the same images
    (``stats.cluster_compare``, paired), one Holm adjustment per dataset.

    ``directions``: per defence, what the survey claims (default ``papers.SURVEY_DEFENCE_CLAIMS``): -1 it lowers
    the share (``stats.direction_verdict``, at least ``min_effect``), 0 it changes nothing (equivalence within
    +-``min_effect``). ``against``: per defence, the attacks the claim is about (default
    ``papers.SURVEY_DEFENCE_AGAINST``: the survey credits distillation and smoothing against DeepFool and the pixel
    swap only); the undefended reference takes the worst case over the same attacks. Rules that keep the verdicts honest: a verdict whose worst case covers no attacker
    who knows the defence never reads "supported" (it is labelled and left undecided), and a reference share at 0 or
    1 (every image fooled undefended: a ceiling) is "not informative"."""
    directions = {d: sign for d, (_, sign) in papers.SURVEY_DEFENCE_CLAIMS.items()} | (directions or {})
    against = {**papers.SURVEY_DEFENCE_AGAINST, **(against or {})}
    out: list[tuple[str, Verdict]] = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        comps, refs = [], {}
        for d in papers.SURVEY_DEFENCES:
            attacks = tuple(against.get(d, ()) or {r["attack"] for r in mine})
            none, w = _worst(mine, "none", attackers, attacks), _worst(mine, d, attackers, attacks)
            if none is None or w is None:
                continue
            ids = torch.arange(len(none))
            comps.append((d, attacks, stats.cluster_compare(w, none, ids, ids)))
            refs[d] = none
        for d, attacks, comp in comps:
            p = min(1.0, comp.p_value * len(comps))  # one family per dataset (Bonferroni, as the interval)
            who = _attackers_label(mine, d, attackers)
            sign = directions.get(d, -1)
            what = "changes" if sign == 0 else "lowers"
            claim = (f"[{dataset}] {d} {'does not change' if sign == 0 else 'lowers'} the share of images "
                     f"{' / '.join(attacks)} fool (worst case per image; attackers: {who})")
            rate = refs[d].mean().item()
            if rate in (0.0, 1.0):
                v = Verdict("not informative", claim, comp.difference, comp.ci_lo, comp.ci_hi, "", comp.clusters,
                            None, None, why=f"Undefended, {rate:.0%} of the images are fooled: at this "
                                            f"{'ceiling' if rate else 'floor'} the attacks saturate, so whether "
                                            f"the defence {what} anything cannot be measured on these images.")
            elif sign == 0:
                v = _no_change(claim, comp, min_effect, p, len(comps))
            else:
                v = stats.direction_verdict(claim, comp, sign=sign, min_effect=min_effect, family=len(comps))
            if v.status == "supported" and not covers_aware(mine, d, attackers):
                v = replace(v, status="undecided", why=f"Only attackers that ignore the defence were run: "
                                        f"a defence is not credited against them. {v.why}")
            out.append((f"survey_defence:{d}", v))
    return out


def survey_matrix(rows: list[dict[str, Any]], dataset: str, column: str, attacker: str = "plain",
                  attacks: Sequence[str] = ("MI-FGSM", "DeepFool", "CW-L2", "pixel swap")) -> tuple[Tensor, list[str]]:
    """(defences x attacks) matrix of ``column`` ("adv_f1" or "asr") on ``dataset`` and the defences in row order;
    with ``attacker="knows the defence"`` each cell is that attacker's row where a defence has one, else the plain
    row (the plain attack already knows that defence). Missing cells are NaN."""
    defences = list(dict.fromkeys(r["defence"] for r in rows if r["dataset"] == dataset))
    m = torch.full((len(defences), len(attacks)), float("nan"))
    for r in rows:
        if r["dataset"] != dataset or r["attack"] not in attacks or r["attacker"] not in ("plain", attacker):
            continue
        i, j = defences.index(r["defence"]), list(attacks).index(r["attack"])
        if r["attacker"] == attacker or m[i, j] != m[i, j]:
            m[i, j] = r[column]
    return m, defences


def survey_f1_series(rows: list[dict[str, Any]], attacks: Sequence[str] = ("MI-FGSM", "DeepFool", "CW-L2",
                                                                           "pixel swap")) -> dict[str, list[float]]:
    """Macro-F1 after each attack of ``attacks``: ours per dataset (undefended, plain attacker), then the survey's
    per dataset it measured that we measured too (``plotting.grouped_bars`` series; NaN where a cell is missing)."""
    plain = [r for r in rows if r["defence"] == "none" and r["attacker"] == "plain"]
    cell = {(r["dataset"], r["attack"]): r["adv_f1"] for r in plain}
    datasets = list(dict.fromkeys(r["dataset"] for r in plain))
    series = {f"ours, {d}": [cell.get((d, a), float("nan")) for a in attacks] for d in datasets}
    for paper_ds in dict.fromkeys(SURVEY_PAPER_DATASET[d] for d in datasets):
        series[f"survey, {paper_ds}"] = [papers.SURVEY_F1_AFTER_ATTACK[a][paper_ds] for a in attacks]
    return series


def survey_examples(ex: dict[str, Tensor], classes: Sequence[str],
                    stages: Sequence[str] = ("clean", "MI-FGSM", "DeepFool", "CW-L2", "pixel swap")) -> list[str]:
    """Titles for ``examples`` laid out row by row: stage, predicted class and its probability."""
    pred, prob = ex["pred"], ex["prob"]
    return [f"{stages[j]}: {classes[int(pred[i, j])][:10]} {float(prob[i, j]):.2f}"
            for i in range(pred.shape[0]) for j in range(pred.shape[1])]
