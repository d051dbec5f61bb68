"""Labs 03-04: what the baseline defences' tables measure beyond the attack suite.

* Lab 03 (input transformations): ``replay_table``, the non-adaptive evaluation of a preprocessing defence (the
  bare model's adversarial images fed through the pipeline) beside the adaptive one (the attack re-run against
  the whole pipeline).
* Lab 04 (training-time defences): ``gradient_diagnostics``, what a gradient attack sees of each trained model
  (``fgsm_success``, the input-gradient size, softmax saturation).

The defences themselves (transformations, objectives, gradient masking) are methods, in ``labkit.defences``;
the attacks and their verification in ``labkit.attacks`` and ``labkit.evaluate``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.attacks import AttackResult
from labkit.attacks.base import model_device
from labkit.data import predict
from labkit.evaluate import verify

__all__ = ["fgsm_success", "gradient_diagnostics", "replay_table"]


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

    Every success is re-verified (``labkit.evaluate.verify``) on the model it is counted for: a bare success
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
