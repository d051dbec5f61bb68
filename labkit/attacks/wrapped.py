"""torchattacks' attacks under labkit's contract: FGSM, PGD, MIFGSM, DeepFool, CW (L2) and Pixle.

The survey's grid (issue #13) compares iterative FGSM with momentum, DeepFool and Carlini-Wagner L2 with its
pixel swap; Pixle (Pomponi et al. 2022) is the published relative of the pixel swap (it moves patches of the
image's own pixels). These classes do not re-implement them: each builds the torchattacks attack
(torchattacks 3.5.1, installed ``--no-deps``; imported only when an attack runs) and turns what it returns
into an :class:`~labkit.attacks.base.AttackResult`:

* ``adv_images`` are torchattacks' images clipped to [0, 1]; ``success`` is the model's own fp32 prediction
  on them (untargeted: not the label; targeted: the target), never torchattacks' view, so
  ``labkit.attacks.verify`` agrees with it.
* ``pixels`` / ``colours`` list every changed pixel position (any channel) in raster order, with the values
  there, padded with -1 rows to the most changed pixels of the batch: cheap next to the attack, and what
  lets a record rebuild the images and ``verify`` bound L0. A dense attack changes nearly every pixel, so
  expect k close to H*W.
* ``queries`` counts the model's forward and backward passes that carried the image, counted by a thin
  wrapper around the model (a backward is counted when a gradient reaches the logits: DeepFool's Jacobian
  costs one per class).

Six classes share one small file, against the house habit of one class per attack file: each is a config
and a constructor call, and the conversion they share is the substance.

Determinism and batches: FGSM, MIFGSM and DeepFool are deterministic and treat images independently. PGD's
random start draws from torch's global generator, here forked and seeded with ``seed`` for the call: the
same batch gives the same result, but an image's start depends on its batch. CW stops early on the loss
*summed over the batch*, so it too depends on the batch. DeepFool and Pixle loop over images inside
torchattacks anyway; they are called one image at a time here (no extra cost), which lets each image's
queries be counted and Pixle's numpy draws be seeded per image (``seed`` with the image's content, label
and target, as labkit's own attacks do), so they are batch-independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from labkit.attacks._rng import mix
from labkit.attacks.base import (Attack, AttackResult, Problem, attack_keys, default_chunk_size, make_result,
                                 model_device)
from labkit.attacks.pixel_swap import PixelSwap
from labkit.precision import check_precision

PIXEL_MAPPINGS = ("random", "similarity", "similarity_random", "distance", "distance_random")


class QueryCounter(nn.Module):
    """``model`` behind a counter of its forward passes and of the backward passes that reach its logits.

    In bf16 precision the forward runs under autocast and returns fp32 logits, so torchattacks' losses
    see the same dtype either way.
    """

    def __init__(self, model: nn.Module, bf16: bool = False):
        super().__init__()
        dev = model_device(model)
        # torchattacks finds the device from the first parameter; a parameter-free model would leave it unset.
        self.anchor = nn.Parameter(torch.empty(0, device=dev), requires_grad=False)
        self.model, self.bf16, self.device = model, bf16, dev
        self.forwards = self.backwards = 0
        # torchattacks puts its model back in the mode it found it in; a fresh Module is in training mode,
        # which would leave the attacked model in training mode after the call.
        self.train(model.training)

    def _count_backward(self, grad: Tensor) -> None:
        self.backwards += 1

    def forward(self, x: Tensor) -> Tensor:
        self.forwards += 1
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(x).float()
        if logits.requires_grad:
            logits.register_hook(self._count_backward)
        return logits

    @property
    def passes(self) -> int:
        return self.forwards + self.backwards


def changed_pixels_list(clean: Tensor, adv: Tensor) -> tuple[Tensor, Tensor]:
    """Every pixel position where ``adv`` differs from ``clean`` (both (N, C, H, W)), in raster order.

    Returns (pixels (N, k, 2) int64 (row, column), colours (N, k, C) of ``adv`` there), k the most changed
    positions of any image; shorter rows are padded with -1 (colour 0), the ``AttackResult`` convention.
    """
    n, c, h, w = adv.shape
    changed = (adv != clean).any(1).flatten(1)  # (N, H*W)
    k = int(changed.sum(1).max()) if n else 0
    # A stable sort of "unchanged" puts the changed positions first, in raster order.
    pos = (~changed).to(torch.uint8).argsort(dim=1, stable=True)[:, :k]
    valid = changed.gather(1, pos)
    pixels = torch.where(valid[..., None], torch.stack([pos // w, pos % w], -1), -1)
    colours = adv.flatten(2).gather(2, pos[:, None].expand(-1, c, -1)).transpose(1, 2)
    return pixels, torch.where(valid[..., None], colours, torch.zeros((), dtype=adv.dtype, device=adv.device))


class TorchAttack(Attack):
    """Base of the torchattacks wrappers: ``Cls(model, config=None, **overrides)(images, labels, targets=None)``.

    A subclass names its ``Config`` and builds the torchattacks attack in :meth:`build`. Whether torchattacks
    supports targeted mode is its business: asking DeepFool for it raises ValueError when called.
    """

    Config: ClassVar[type]
    #: Call torchattacks one image at a time (it loops over images itself): per-image queries and seeds.
    per_image: ClassVar[bool] = False

    def build(self, model: nn.Module) -> Any:
        """The torchattacks attack on ``model`` (the counting wrapper) with this config's hyper-parameters."""
        raise NotImplementedError

    def _torchattacks(self, counter: QueryCounter, images: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        """torchattacks' images for one call on ``images``; counts land in ``counter``."""
        atk = self.build(counter)
        atk.set_device(counter.device)
        if targets is not None:
            atk.set_mode_targeted_by_label(quiet=True)  # torchattacks then reads the labels it gets as targets
        seed = getattr(self.config, "seed", 0)
        with torch.random.fork_rng(devices=[] if counter.device.type == "cpu" else [counter.device]):
            torch.manual_seed(seed)
            out = atk(images, labels if targets is None else targets)
        # Some torchattacks versions return (images, target labels) from DeepFool.
        return (out[0] if isinstance(out, tuple) else out).detach()

    def run(self, problem: Problem, progress: bool) -> AttackResult:
        """torchattacks' attack on ``problem``, turned into an ``AttackResult`` (see ``Attack.__call__``).

        ``progress`` is accepted for the contract; torchattacks draws no progress bar.
        """
        x, y, t, dev = problem.images, problem.labels, problem.targets, problem.device
        bf16 = problem.precision == "bf16"
        if self.per_image:
            adv, queries = self._run_per_image(x, y, t, bf16)
        else:
            counter = QueryCounter(self.model, bf16)
            adv = self._torchattacks(counter, x, y, t).clamp(0, 1)
            queries = torch.full((len(x),), counter.passes, dtype=torch.int64)
        # MI-FGSM divides by the mean |gradient|, which is 0 where the softmax saturates: NaN pixels there.
        # Those pixels are left clean, so adv_images stay images (and the NaN shows up as no change).
        adv = torch.where(adv.isnan(), x, adv)
        pixels, colours = changed_pixels_list(x, adv)
        return make_result(self.model, adv, y, t, None, queries, pixels, colours, bf16, default_chunk_size(dev))

    def _run_per_image(self, x: Tensor, y: Tensor, t: Tensor | None, bf16: bool) -> tuple[Tensor, Tensor]:
        """torchattacks on one image at a time, numpy seeded per image: (adv (N, C, H, W), queries (N,))."""
        keys = attack_keys(x, y, t)
        seed = getattr(self.config, "seed", 0)
        advs, queries = [], []
        state = np.random.get_state()  # Pixle draws from numpy's global generator: leave it as found
        try:
            for i in range(len(x)):  # torchattacks' own loop, moved out here (see the module docstring)
                np.random.seed(int(mix(keys[i:i + 1] ^ seed).item()))
                counter = QueryCounter(self.model, bf16)
                ti = None if t is None else t[i:i + 1]
                advs.append(self._torchattacks(counter, x[i:i + 1], y[i:i + 1], ti).clamp(0, 1))
                queries.append(counter.passes)
        finally:
            np.random.set_state(state)
        adv = torch.cat(advs) if advs else x.clone()
        return adv, torch.tensor(queries, dtype=torch.int64)


# -- the attacks --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FGSMConfig:
    """Hyper-parameters of FGSM (Goodfellow et al. 2015), one gradient-sign step."""

    eps: float = 8 / 255  # L-infinity radius in [0, 1] pixel units (torchattacks' default, CIFAR's usual 8/255)
    targeted: bool = False  # success = prediction equals the target (else: differs from the label)
    precision: str = "fp32"  # the gradient pass in "fp32", "bf16" or "auto"; success is always judged in fp32

    def __post_init__(self) -> None:
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        check_precision(self.precision)


class FGSM(TorchAttack):
    """torchattacks' FGSM under the contract. ``queries``: 2 (one forward, one backward)."""

    Config = FGSMConfig
    config: FGSMConfig

    def build(self, model: nn.Module) -> Any:
        import torchattacks

        return torchattacks.FGSM(model, eps=self.config.eps)


@dataclass(frozen=True)
class PGDConfig:
    """Hyper-parameters of L-infinity PGD (Madry et al. 2018)."""

    eps: float = 8 / 255  # L-infinity radius in [0, 1] pixel units (torchattacks' default)
    alpha: float = 2 / 255  # step size per iteration (torchattacks' default: eps / 4)
    steps: int = 10  # gradient steps (torchattacks' default)
    random_start: bool = True  # start uniformly inside the eps-ball (Madry et al.), drawn with `seed`
    seed: int = 0  # seeds torch's generator, forked for the call: the random start
    targeted: bool = False  # success = prediction equals the target (else: differs from the label)
    precision: str = "fp32"  # the gradient passes in "fp32", "bf16" or "auto"; success is always judged in fp32

    def __post_init__(self) -> None:
        if self.eps <= 0 or self.alpha <= 0:
            raise ValueError(f"eps and alpha must be > 0, got {self.eps}, {self.alpha}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        check_precision(self.precision)


class PGD(TorchAttack):
    """torchattacks' PGD under the contract. ``queries``: 2 * steps. The random start depends on the batch."""

    Config = PGDConfig
    config: PGDConfig

    def build(self, model: nn.Module) -> Any:
        import torchattacks

        c = self.config
        return torchattacks.PGD(model, eps=c.eps, alpha=c.alpha, steps=c.steps, random_start=c.random_start)


@dataclass(frozen=True)
class MIFGSMConfig:
    """Hyper-parameters of MI-FGSM (Dong et al. 2018), the survey's "iterative FGSM with momentum"."""

    eps: float = 8 / 255  # L-infinity radius in [0, 1] pixel units (torchattacks' default)
    alpha: float = 2 / 255  # step size per iteration (torchattacks' default)
    steps: int = 10  # iterations (torchattacks' default)
    decay: float = 1.0  # momentum decay mu (Dong et al.'s 1.0)
    targeted: bool = False  # success = prediction equals the target (else: differs from the label)
    precision: str = "fp32"  # the gradient passes in "fp32", "bf16" or "auto"; success is always judged in fp32

    def __post_init__(self) -> None:
        if self.eps <= 0 or self.alpha <= 0:
            raise ValueError(f"eps and alpha must be > 0, got {self.eps}, {self.alpha}")
        if self.steps < 1 or self.decay < 0:
            raise ValueError(f"steps must be >= 1 and decay >= 0, got {self.steps}, {self.decay}")
        check_precision(self.precision)


class MIFGSM(TorchAttack):
    """torchattacks' MI-FGSM under the contract. ``queries``: 2 * steps."""

    Config = MIFGSMConfig
    config: MIFGSMConfig

    def build(self, model: nn.Module) -> Any:
        import torchattacks

        c = self.config
        return torchattacks.MIFGSM(model, eps=c.eps, alpha=c.alpha, steps=c.steps, decay=c.decay)


@dataclass(frozen=True)
class DeepFoolConfig:
    """Hyper-parameters of DeepFool (Moosavi-Dezfooli et al. 2016), L2, untargeted only."""

    steps: int = 50  # most linearisation steps per image (torchattacks' default)
    overshoot: float = 0.02  # step past the linearised boundary by this fraction (the paper's 0.02)
    targeted: bool = False  # torchattacks' DeepFool has no targeted mode: True raises when the attack runs
    precision: str = "fp32"  # the Jacobian passes in "fp32", "bf16" or "auto"; success is always judged in fp32

    def __post_init__(self) -> None:
        if self.steps < 1 or self.overshoot < 0:
            raise ValueError(f"steps must be >= 1 and overshoot >= 0, got {self.steps}, {self.overshoot}")
        check_precision(self.precision)


class DeepFool(TorchAttack):
    """torchattacks' DeepFool under the contract, one image at a time (as torchattacks loops anyway).

    ``queries``: per step one forward and one backward per class (the Jacobian), until the image's
    prediction changes or ``steps`` run out. The last step's image is returned unchecked by torchattacks:
    ``success`` is the fp32 re-check.
    """

    Config = DeepFoolConfig
    config: DeepFoolConfig
    per_image = True

    def build(self, model: nn.Module) -> Any:
        import torchattacks

        if self.config.targeted:
            raise ValueError("torchattacks' DeepFool has no targeted mode; use targeted=False")
        return torchattacks.DeepFool(model, steps=self.config.steps, overshoot=self.config.overshoot)


@dataclass(frozen=True)
class CWConfig:
    """Hyper-parameters of Carlini & Wagner's L2 attack (2017), torchattacks' version (no binary search on c)."""

    c: float = 1.0  # weight of the margin term against the squared L2 distance (torchattacks' default)
    kappa: float = 0.0  # confidence: the margin the wrong class must win by, in logits (the paper's 0)
    steps: int = 50  # Adam steps (torchattacks' default; it may stop early on the batch's summed loss)
    lr: float = 0.01  # Adam's learning rate in tanh space (torchattacks' default)
    targeted: bool = False  # success = prediction equals the target (else: differs from the label)
    precision: str = "fp32"  # the gradient passes in "fp32", "bf16" or "auto"; success is always judged in fp32

    def __post_init__(self) -> None:
        if self.c <= 0 or self.kappa < 0 or self.lr <= 0:
            raise ValueError(f"c and lr must be > 0 and kappa >= 0, got {self.c}, {self.kappa}, {self.lr}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        check_precision(self.precision)


class PositiveLogits(nn.Module):
    """``model``'s logits shifted per image so that the smallest is 1: z - min(z) + 1 (the shift carries no gradient).

    torchattacks 3.5.1's CW picks the true and the best other logit as ``max(one_hot * z)`` and
    ``max((1 - one_hot) * z)``: the masked entries are 0, so wherever the logits are negative (all of them after a
    log-softmax, as in the survey's CNN) both read 0 and the attack's margin term is constant: it never moves
    (torchattacks issue #184, fixed upstream in an unmerged pull request). CW's loss uses logit differences only,
    so a per-image shift changes nothing else: the same predictions, margins and gradients.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.train(model.training)  # torchattacks restores the mode it finds

    def forward(self, x: Tensor) -> Tensor:
        z = self.model(x)
        return z - z.detach().amin(1, keepdim=True) + 1


class CW(TorchAttack):
    """torchattacks' CW (L2) under the contract. ``queries``: 2 per Adam step run (the same for the batch).

    torchattacks returns the clean image where no step succeeded, and works in tanh space, where a pixel at
    exactly 0 or 1 (much of an MNIST digit) cannot move. It attacks ``PositiveLogits(model)``: torchattacks' margin
    reads negative logits as 0 (see there).
    """

    Config = CWConfig
    config: CWConfig

    def build(self, model: nn.Module) -> Any:
        import torchattacks

        c = self.config
        return torchattacks.CW(PositiveLogits(model), c=c.c, kappa=c.kappa, steps=c.steps, lr=c.lr)


@dataclass(frozen=True)
class PixleConfig:
    """Hyper-parameters of Pixle (Pomponi, Scardapane & Uncini 2022): black-box rearranging of the image's pixels."""

    x_dimensions: tuple[float, float] = (2, 10)  # patch width range: ints in pixels, floats as a fraction of W
    y_dimensions: tuple[float, float] = (2, 10)  # patch height range, the same way (torchattacks' defaults)
    pixel_mapping: str = "random"  # where patch pixels go: one of PIXEL_MAPPINGS (torchattacks' default "random")
    restarts: int = 20  # restarts of the patch search (torchattacks' default)
    max_iterations: int = 10  # patches tried per restart (torchattacks' default)
    update_each_iteration: bool = False  # keep improving one image instead of restarting (torchattacks' option)
    seed: int = 0  # with the image's content, label and target, seeds numpy's generator for that image
    targeted: bool = False  # success = prediction equals the target (else: differs from the label)
    precision: str = "fp32"  # the queries in "fp32", "bf16" or "auto"; success is always judged in fp32

    def __post_init__(self) -> None:
        if self.pixel_mapping not in PIXEL_MAPPINGS:
            raise ValueError(f"pixel_mapping must be one of {PIXEL_MAPPINGS}, not {self.pixel_mapping!r}")
        if self.restarts < 1 or self.max_iterations < 1:
            raise ValueError(f"restarts and max_iterations must be >= 1, got {self.restarts}, {self.max_iterations}")
        check_precision(self.precision)


class Pixle(TorchAttack):
    """torchattacks' Pixle under the contract, one image at a time (as torchattacks loops anyway).

    ``queries``: forward passes on the image (two per patch tried: torchattacks scores and re-checks each).
    Square images only: torchattacks writes a patch's (column, row) draws as (row, column).
    """

    Config = PixleConfig
    config: PixleConfig
    per_image = True

    def build(self, model: nn.Module) -> Any:
        import torchattacks

        c = self.config
        # torchattacks tells an int (pixels) from a float (fraction) by type: keep whole numbers ints.
        dims = lambda d: tuple(int(v) if float(v).is_integer() else float(v) for v in d)  # noqa: E731
        return torchattacks.Pixle(model, x_dimensions=dims(c.x_dimensions), y_dimensions=dims(c.y_dimensions),
                                  pixel_mapping=c.pixel_mapping, restarts=c.restarts,
                                  max_iterations=c.max_iterations, update_each_iteration=c.update_each_iteration)

    def prepare(self, images: Tensor, labels: Tensor, targets: Tensor | None) -> Problem:
        """The contract's opening, after checking that the images are square (torchattacks' Pixle needs it)."""
        if images.dim() == 4 and images.shape[2] != images.shape[3]:
            raise ValueError(f"torchattacks' Pixle needs square images, got {tuple(images.shape[2:])}")
        return super().prepare(images, labels, targets)


#: The wrappers by torchattacks' name, for code that picks attacks by name (the survey's grid).
WRAPPED: dict[str, type[TorchAttack]] = {cls.__name__: cls for cls in (FGSM, PGD, MIFGSM, DeepFool, CW, Pixle)}


def torch_attack(model: nn.Module, name: str, **overrides: Any) -> TorchAttack:
    """``WRAPPED[name](model, **overrides)``: e.g. ``torch_attack(model, "MIFGSM", eps=0.1, steps=20)``."""
    if name not in WRAPPED:
        raise ValueError(f"no wrapped attack {name!r}; choose one of {sorted(WRAPPED)}")
    return WRAPPED[name](model, **overrides)


#: The WPI survey's four attacks (issue #13), by the names its labs use.
SURVEY_ATTACKS = ("MI-FGSM", "DeepFool", "CW-L2", "pixel swap")


def survey_attack(name: str, model: nn.Module, *, eps: float, steps: int, deepfool_steps: int, cw_steps: int,
                  swaps: int) -> Attack:
    """The survey's attack ``name`` (one of ``SURVEY_ATTACKS``) on ``model`` at these budgets: MI-FGSM with radius
    ``eps`` in ``steps`` steps of eps / steps, DeepFool (overshoot 0.02), CW-L2 (c = 1, kappa = 0, lr 0.01) and the
    plain pixel swap. Shared by the grid (``labkit.labs.survey``) and the adversarial training on it
    (``labkit.defences.MixedAT``), so both run the same attacks."""
    if name == "MI-FGSM":
        return MIFGSM(model, eps=eps, alpha=eps / steps, steps=steps)
    if name == "DeepFool":
        return DeepFool(model, steps=deepfool_steps, overshoot=0.02)
    if name == "CW-L2":
        return CW(model, c=1.0, kappa=0.0, steps=cw_steps, lr=0.01)
    if name == "pixel swap":
        return PixelSwap(model, swaps=swaps)
    raise ValueError(f"unknown attack {name!r}; the survey's: {SURVEY_ATTACKS}")
