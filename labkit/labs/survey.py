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
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from labkit import stats
from labkit._checks import check_int, check_positive
from labkit.attacks import SURVEY_ATTACKS, AttackResult, survey_attack
from labkit.data import available, first_n, load_dataset, predict
from labkit.defences import GaussianSmoothing, GradientMasking, MixedAT, defended, defended_key, distillation_config
from labkit.evaluate import perturbation_norms, probabilities, run_attack, time_inference
from labkit.profiles import Profile
from labkit.train import TrainConfig, TrainedModel

#: The labs' section of ``Profile.labs`` (their sizes per profile live in ``labkit.profiles``).
PART = "survey"

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
    # Per image, for paired tests and F1 intervals (``labkit.report``): the labels and both predictions.
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
