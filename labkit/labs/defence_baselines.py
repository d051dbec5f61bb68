"""Labs 03-04: what the baseline defences' tables measure beyond the attack suite.

* Lab 03 (input transformations): ``replay_table``, the non-adaptive evaluation of a preprocessing defence (the
  bare model's adversarial images fed through the pipeline) beside the adaptive one (the attack re-run against
  the whole pipeline), and ``replay_summary``, what it says in words.
* Lab 04 (training-time defences): ``gradient_diagnostics``, what a gradient attack sees of each trained model
  (``fgsm_success``, the input-gradient size, softmax saturation); ``budget`` (one training step's cost in
  words), ``teacher_seconds`` and ``training_table`` (whole training runs from the cache, a distilled model with
  its teacher's run).

Both labs' attack suites are tabled and judged against the APR paper's Table 1 by ``labkit.labs.apr_tables``.

The defences themselves (transformations, objectives, gradient masking) are methods, in ``labkit.defences``;
the attacks and their verification in ``labkit.attacks`` and ``labkit.evaluate``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.attacks import AttackResult, verify
from labkit.attacks.base import model_device
from labkit.data import predict
from labkit.defences import PGDAT, Distillation, OnePixelAT, SoftmaxTemperature
from labkit.train import get_or_train

__all__ = ["INPUT_LAB", "TRAINING_LAB", "budget", "fgsm_success", "gradient_diagnostics", "replay_summary",
           "replay_table", "teacher_seconds", "training_table"]

#: The labs' records (``labkit.records``; ``labkit.claims`` reads every table of them that has per-image outcomes).
INPUT_LAB = "03_input_transformations"
TRAINING_LAB = "04_training_defences"


# -- Lab 03: replayed vs re-run attacks --------------------------------------------------------------------------

def replay_table(model: nn.Module, pipelines: dict[str, nn.Module], images: Tensor,
                 undefended: dict[str, AttackResult],
                 rerun: dict[str, dict[str, AttackResult]],
                 attacked: dict[str, Tensor] | None = None) -> list[dict[str, Any]]:
    """Replayed against re-run attack success, per pipeline and attack, in percent of the attacked images.

    ``model``: the bare (undefended) model, eval mode; ``undefended[attack]``: the attack's results on it;
    ``rerun[name][attack]``: the same attack run against pipeline ``name`` (``pipelines[name]``); all on
    ``images`` (N, C, H, W) in [0, 1], unless ``attacked[name]`` (a (N,) bool mask) says pipeline ``name`` was
    attacked on a subset of them (the images it classifies correctly clean; ``rerun[name]`` then holds results
    for those images only, and its row's percentages are of them). One row per pipeline and attack run against
    both (a sweep may re-run only some of the attacks on a pipeline). Columns:

    * ``replayed``: the bare model's successful adversarial image, fed through the pipeline, still fools it
      (what a non-adaptive evaluation of a preprocessing defence reports);
    * ``rerun``: the attack, querying the pipeline itself, finds a one-pixel change that fools it;
    * ``removed``: the bare model was broken, but its adversarial image no longer fools the pipeline;
    * ``moved``: of those, the ones the re-run attack breaks anyway, with another pixel or colour.

    Every success is re-verified (``labkit.attacks.verify``) on the model it is counted for: a bare success
    counts (is replayed, or removed) only if it verifies against ``model`` first, so ``replayed`` never
    exceeds the bare model's verified ASR, and an adversarial image that fools only the pipeline is no
    replayed success.
    """
    # Only the bare successes that hold up are replayed.
    verified = {attack: replace(bare, success=verify(model, images, bare, max_pixels=1))
                for attack, bare in undefended.items()}
    rows = []
    for name, pipe in pipelines.items():
        mask = None if attacked is None or name not in attacked else attacked[name]
        shown = images if mask is None else images[mask]
        for attack in (a for a in verified if a in rerun[name]):  # in the order of the bare attacks
            bare = verified[attack] if mask is None else verified[attack].select(mask)
            replayed = verify(pipe, shown, bare, max_pixels=1)
            rerun_ok = verify(pipe, shown, rerun[name][attack], max_pixels=1)
            removed = bare.success & ~replayed
            rows.append({"defence": name, "attack": attack, "replayed": _percent(replayed),
                         "rerun": _percent(rerun_ok), "removed": _percent(removed),
                         "moved": _percent(removed & rerun_ok)})
    return rows


def _percent(mask: Tensor) -> float:
    # In float64 from the count: a float32 mean (16.666667 for 5 of 30) does not compare equal with the ASR
    # that ``labkit.evaluate.summarize`` computes as k / n.
    return 100 * int(mask.sum()) / len(mask) if len(mask) else float("nan")


def replay_summary(replay: list[dict[str, Any]], attack: str = "DE k=1") -> str:
    """What the replay table says for ``attack``, computed from it: per pipeline, replayed vs re-run ASR, and how
    many pipelines the replay makes look stronger than attacking them does."""
    rows = [r for r in replay if r["attack"] == attack]
    if not rows:
        return f"No rows for {attack}."
    lower = [r for r in rows if r["replayed"] < r["rerun"]]
    moved = [r for r in rows if r["removed"] > 0 and r["moved"] == r["removed"]]
    return (f"{attack}: the replayed ASR is below the re-run ASR for {len(lower)} of {len(rows)} pipelines (there the "
            f"replay overstates the defence, by up to {max((r['rerun'] - r['replayed'] for r in rows), default=0):.1f}"
            f" points); for {len(moved)} pipelines every removed success was found again by the re-run attack. "
            "Per pipeline (replayed / re-run %): "
            + "; ".join(f"{r['defence']} {r['replayed']:.1f} / {r['rerun']:.1f}" for r in rows) + ".")


# -- Lab 04: what a gradient attack sees ------------------------------------------------------------------------

def fgsm_success(model: nn.Module, images: Tensor, labels: Tensor, eps: float = 8 / 255, seed: int = 0) -> Tensor:
    """Which images FGSM (torchattacks, L-infinity ``eps``) makes ``model`` misclassify, (N,) bool.

    The contrast to the one-pixel attacks: a gradient attack, blind where the gradient is masked. ``seed``
    fixes torch's global generator inside the call only (``NoisyGradient`` draws from it).
    """
    import torchattacks

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adv = torchattacks.FGSM(model, eps=eps)(images, labels)
    return predict(model, adv.cpu()) != labels.cpu()

def gradient_diagnostics(models: dict[str, nn.Module], images: Tensor, labels: Tensor, eps: float = 8 / 255,
                         seed: int = 0) -> list[dict[str, Any]]:
    """Per model, what a gradient attack sees: FGSM's success, the input-gradient size, softmax saturation.

    Columns (percent where a rate): ``fgsm_asr`` (torchattacks FGSM at ``eps``, ``fgsm_success``),
    ``grad_l1``: the median over images of the L1 norm of d CE / d x (fp32, eval mode), and ``saturated``:
    images whose top softmax probability is exactly 1 in fp32. A distilled model deployed at T = 1 has logits
    about T times larger than usual: its softmax saturates and its gradient vanishes (Carlini & Wagner 2017);
    gradient masking instead drowns the gradient in noise. ``seed`` fixes the noise (torch's global
    generator, inside the call only).
    """
    rows = []
    for name, model in models.items():
        x = images.to(model_device(model)).requires_grad_(True)
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            torch.manual_seed(seed)
            logits = model(x).float()
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels.to(x.device), reduction="sum"), x)
        top = F.softmax(logits.detach(), dim=1).max(1).values
        rows.append({"defence": name, "fgsm_asr": _percent(fgsm_success(model, images, labels, eps, seed)),
                     "grad_l1": grad.abs().flatten(1).sum(1).median().item(), "saturated": _percent(top == 1)})
    return rows


# -- Lab 04: what training costs -------------------------------------------------------------------------------------

def budget(objective: Any) -> str:
    """What one training step of ``objective`` costs, in words (for the tables of Lab 04)."""
    if isinstance(objective, OnePixelAT):
        return (f"inner attack: 1 gradient pass + {8 * objective.positions} fp32 forwards per image; "
                f"step on clean + adversarial (2x batch), alpha = {objective.alpha:g}")
    if isinstance(objective, PGDAT):
        return (f"inner attack: {objective.steps} forward+backward passes per image "
                f"(eps {255 * objective.eps:g}/255, step {255 * objective.step:g}/255, random start)")
    if isinstance(objective, Distillation):
        return f"a teacher trained at T = {objective.temperature:g} first, then 1 teacher forward per image"
    if isinstance(objective, SoftmaxTemperature):
        return f"plain step, logits / {objective.temperature:g}"
    return "plain step"


def teacher_seconds(trained: list[Any]) -> dict[str, float]:
    """Training seconds of the teacher of every distilled entry of ``trained``, by its defence label (loaded from
    the cache, trained if missing: a lab hands this to its record, so a replay never loads a model)."""
    return {t.entry.defence: get_or_train(t.entry.config.objective.teacher, progress=False).train_seconds
            for t in trained if isinstance(t.entry.config.objective, Distillation)}


def training_table(trained: list[Any], teachers: dict[str, float] | None = None,
                   reference: str = "No defence") -> list[dict[str, Any]]:
    """Whole training runs from the cache: seconds, inner-attack seconds, teacher seconds, ratio to ``reference``.

    Columns: model, seed, defence, test_acc (percent, last epoch), train_s, teacher_s, inner_attack_s, total_s
    (train_s + teacher_s) and vs_reference (total_s over the reference's, same model and seed).

    ``trained``: ``labkit.suites.Trained``-like objects (``entry.defence``, ``entry.config``, ``history``,
    ``train_seconds``); ``teachers``: ``teacher_seconds(trained)``, a distilled model's cost including its teacher's
    run (required when ``trained`` has one). The runs were timed whenever they were trained, so machine load enters
    the ratio; ``labkit.labs.apr_paper.time_training`` measures steps side by side.
    """
    rows = []
    for t in trained:
        cfg, obj = t.entry.config, t.entry.config.objective
        teacher = 0.0
        if isinstance(obj, Distillation):
            if not teachers or t.entry.defence not in teachers:
                raise ValueError(f"{t.entry.defence} is distilled: pass "
                                 "teachers=defence_baselines.teacher_seconds(trained)")
            teacher = teachers[t.entry.defence]
        rows.append({"model": cfg.model, "seed": cfg.seed, "defence": t.entry.defence,
                     "test_acc": 100 * t.history[-1]["test_acc"], "train_s": t.train_seconds, "teacher_s": teacher,
                     "inner_attack_s": sum(h.get("seconds_inner_attack", 0.0) for h in t.history),
                     "total_s": t.train_seconds + teacher})
    ref = {(r["model"], r["seed"]): r["total_s"] for r in rows if r["defence"] == reference}
    for r in rows:
        r["vs_reference"] = r["total_s"] / ref[(r["model"], r["seed"])] if (r["model"], r["seed"]) in ref else None
    return rows
