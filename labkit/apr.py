"""Adaptive Pixel Resilience (APR, 2024): an attention gate, one-pixel adversarial training, a gradient penalty.

The APR paper publishes no code; this module is our reading of it, with every component switchable so the
ablation (its Table 3) is the same code with one switch off:

* ``AttentionGate``: y = f(A(x) * x) with A(x) = sigmoid(W_a * x + b_a), a learnable convolution in front of any
  registered model (``TrainConfig(gate="pixel")``; ``labkit.train.build_for_config`` puts it there). It lives in
  ``labkit.models`` (so training never imports this module) and is re-exported here.
* ``APRObjective``: L = alpha L_clean + (1 - alpha) L_adv + beta R(x), the adversarial images made for each
  mini-batch by the cheap inner attack of ``labkit.defences.OnePixelAT`` (reused, not copied). The paper writes
  R = ||grad_x f(x)||^2 without saying what f is; ``penalty="ce"`` reads it as the gradient of the clean
  cross-entropy, ``penalty="logits"`` literally, as the input-Jacobian of the logits (squared Frobenius norm).
* ``apr_config``: the ``TrainConfig`` of a profile for one of ``VARIANTS``; trained through the cache like any
  model (``labkit.train.get_or_train``: progress bar, resumable).

What Labs 05-07 run (the suites of the paper's tables, the side-by-side timings of training) lives in
``labkit.labs.apr_paper``; the generic protocol they run (``train_suite``, ``attacked_indices``,
``evaluate_suite`` with its adaptive suite) in ``labkit.suites``. This module imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit._checks import check_int, check_number
from labkit.defences import OnePixelAT
# The gate lives in labkit.models (train builds it without importing the APR method); re-exported here.
from labkit.models import GATE_MODES, AttentionGate, gate_of
from labkit.profiles import Profile
from labkit.train import TrainConfig, TrainContext

__all__ = [
    "AttentionGate", "APRObjective", "DEFAULT_INNER_POSITIONS", "GATE_MODES", "VARIANTS", "apr_config", "gate_of",
    "inner_positions", "input_gradient_penalty", "jacobian_penalty", "mix_losses", "PENALTIES",
]

#: The two readings of the paper's regulariser beta ||grad_x f(x)||^2 (see ``APRObjective.penalty``).
PENALTIES = ("ce", "logits")


# -- the objective -------------------------------------------------------------------------------------------------

def mix_losses(clean: Tensor, adversarial: Tensor, alpha: float) -> Tensor:
    """alpha * clean + (1 - alpha) * adversarial: the APR paper's mixing (alpha weighs the *clean* loss).

    Note the convention: ``labkit.defences.OnePixelAT.alpha`` weighs the adversarial half instead.
    """
    return alpha * clean + (1 - alpha) * adversarial


def input_gradient_penalty(losses: Tensor, images: Tensor) -> Tensor:
    """mean_i ||d(sum_j losses_j)/d images_i||_2^2, differentiable (double backpropagation).

    ``losses`` (N,) are per-image losses computed from ``images`` (N, C, H, W), which must require grad.
    The sum (not the mean) is differentiated, so each image's gradient is that of its own loss, whatever the
    batch size, and the squared norms are averaged over the batch: the penalty means the same at any batch
    size. (In training mode batch norm couples the images, so each gradient also carries the small 1/N
    dependence of the others' losses through the batch statistics; in eval mode it is exactly per image.)
    The norm is taken in fp32 (fp64 for fp64 inputs) whatever precision the forward pass ran in.
    """
    (grad,) = torch.autograd.grad(losses.sum(), images, create_graph=True)
    return grad.to(torch.promote_types(grad.dtype, torch.float32)).pow(2).flatten(1).sum(1).mean()


def jacobian_penalty(logits: Tensor, images: Tensor, projections: int, generator: torch.Generator) -> Tensor:
    """An unbiased estimate of mean_i ||J_i||_F^2, J_i = d logits_i / d images_i (classes x pixels), differentiable.

    ``logits`` (N, K) are computed from ``images`` (N, C, H, W), which must require grad. For v ~ N(0, I_K),
    E_v ||J^T v||^2 = tr(J J^T) = ||J||_F^2, and J^T v is the input gradient of the scalar v . logits: one
    backward pass per projection instead of K for the exact norm. Each of the ``projections`` draws one v per
    image from ``generator`` (a CPU generator, so a seeded run draws the same vectors on any device); the
    estimate is the mean of ``input_gradient_penalty`` over the draws. Per image and draw, the variance of
    v^T A v (A = J J^T) is 2 ||A||_F^2 <= 2 tr(A)^2, a relative spread of at most sqrt(2); over a batch of N
    images whose norms are alike that becomes about sqrt(2 / (N * projections)), 12% at batch 128 with one
    projection, and SGD averages it further over steps.
    """
    total = logits.new_zeros((), dtype=torch.promote_types(logits.dtype, torch.float32))
    for _ in range(projections):
        v = torch.randn(logits.shape, generator=generator).to(logits.device, total.dtype)
        total = total + input_gradient_penalty((logits.to(total.dtype) * v).sum(1), images)
    return total / projections


def _projection_generator(ctx: TrainContext) -> torch.Generator:
    """The CPU generator of the Jacobian projections: its own stream, re-seeded from the config's seed each epoch.

    Re-seeded per epoch like the training loop's own generator, so a run resumed at an epoch boundary draws
    the same vectors; kept apart from ``ctx.generator``, so the choice of penalty does not shift the
    augmentation and shuffling draws (two runs that differ only in ``penalty`` see the same batches).
    """
    gen, epoch = ctx.state.get("apr_projections", (None, None))
    if gen is None or epoch != ctx.epoch:
        # The loop seeds its generator with seed * 100_003 + epoch; the offset keeps this stream a different one.
        gen = torch.Generator().manual_seed(ctx.config.seed * 100_003 + ctx.epoch + 0x5EED)
        ctx.state["apr_projections"] = (gen, ctx.epoch)
    return gen


@dataclass(frozen=True)
class APRObjective:
    """The APR training loss for ``TrainConfig(objective=...)``.

    L_total = alpha * L_clean + (1 - alpha) * L_adv + beta * mean_i R(x_i)

    * L_clean, L_adv: mean cross-entropy on the batch and on its one-pixel adversarial versions. These come
      from the current model (eval mode, fp32, timed into ``ctx.timers["inner_attack"]``) by the inner attack
      of one-pixel AT, ``OnePixelAT(positions=...).adversarial``: ``labkit.attacks.GradientCorner``, the 8
      corner colours at the ``positions`` pixels of largest input gradient (8 * positions queries plus one
      gradient pass per image; where it fails, its best candidate is used). Clean and adversarial images go
      through the model in one forward pass, as in ``OnePixelAT``, so batch norm sees the mixed batch.
    * R, the regulariser: the paper writes beta ||grad_x f(x)||^2, and f is either reading of it:

      - ``penalty="ce"``: R = ||grad_x l_clean(x)||_2^2, the input gradient of the clean per-image
        cross-entropy (``input_gradient_penalty``). A one-pixel attack starts from the clean image, and to
        first order changing pixel p by delta changes the loss by <grad_p, delta>: a small gradient flattens
        the loss where attacks begin. It vanishes on images classified with confidence (grad = J^T (p - e_y)).
      - ``penalty="logits"``: R = ||J(x)||_F^2, J = d logits / d x, the literal reading (f = the network's
        output), estimated with ``projections`` random projections (``jacobian_penalty``). It bounds how far
        any logit can move under a small change of any pixel, confident images included; it costs one extra
        backward pass per projection.

      Both are taken with respect to the input *pixels* (the [0, 1] image before the gate and the
      normalisation: the space the attacker writes in), per image, averaged over the batch (a batch-size-
      independent beta), by double backpropagation, on the clean half of the forward pass (no extra forward).
      Which reading is the default was decided by measurement (``benchmarks/apr_penalty.py``; the numbers are
      at the ``penalty`` field): "ce", which kept clean accuracy at the same step cost, with no measurable
      loss of robustness.
    * ``adversarial=False`` gives L_clean (+ penalty), with no inner attack run (alpha is then unused);
      ``beta=0`` drops the penalty and its double backward.

    Under the training loop's bf16 autocast the double backward runs through the bf16 graph (tested on CPU);
    the losses and the norm are computed in fp32.
    """

    alpha: float = 0.7  # weight of the clean loss; 1 - alpha goes to the adversarial loss (the paper's 0.7)
    beta: float = 0.01  # weight of the input-gradient penalty (the paper's 0.01); 0 removes it
    adversarial: bool = True  # train on one-pixel adversarial examples too; False = "w/o adversarial training"
    positions: int = 8  # inner attack: pixels tried by gradient rank, x 8 corner colours = queries per image
    # Which f the paper's ||grad_x f(x)||^2 penalises (``PENALTIES``): "ce" = the clean cross-entropy, "logits" =
    # the logits' input-Jacobian. "ce" by measurement (benchmarks/apr_penalty.py, small_cnn, 3 epochs on 5,000
    # images, beta 0.01, 1 thread, 2026-12-01): same step cost (4.98 vs 4.86 s), clean accuracy 40.7% vs 29.1%,
    # and no measurable gain in robustness for the logits reading (exhaustive corner search: 6 vs 9 of 100
    # images broken, McNemar p = 0.61) though its ||J||_F^2 was 4.8x smaller. Its beta was not re-tuned.
    penalty: str = "ce"
    # "logits" only: random projections per step of the Jacobian estimate, drawn from a generator seeded by
    # the training config's seed and epoch (a resumed run replays them). 1 is unbiased, with a spread of about
    # 12% over a batch of 128 alike images; each more costs one more double backward.
    projections: int = 1

    def __post_init__(self) -> None:
        check_number("alpha", self.alpha, 0.0, 1.0)
        check_number("beta", self.beta, 0.0)
        if not isinstance(self.adversarial, bool):
            raise ValueError(f"adversarial must be True or False, got {self.adversarial!r}")
        check_int("positions", self.positions, 1)
        if self.penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}, not {self.penalty!r}")
        check_int("projections", self.projections, 1)

    def setup(self, ctx: TrainContext) -> None:
        """Nothing to prepare: the inner attack uses the model being trained."""

    def terms(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: TrainContext) -> dict[str, Tensor]:
        """The loss and its parts: ``clean``, ``adversarial`` (if on), ``penalty`` (beta included, if on), ``total``."""
        if self.beta > 0 and not torch.is_grad_enabled():
            raise RuntimeError("the gradient penalty (beta > 0) needs autograd: call outside torch.no_grad()")
        n = len(labels)
        x = images.detach().requires_grad_(self.beta > 0)
        batch = x
        if self.adversarial:
            adv = OnePixelAT(positions=self.positions).adversarial(model, images, labels, ctx)
            batch = torch.cat([x, adv])
        logits = model(batch).float()
        ce = F.cross_entropy(logits, labels.repeat(len(batch) // n), reduction="none")
        out = {"clean": ce[:n].mean()}
        total = out["clean"]
        if self.adversarial:
            out["adversarial"] = ce[n:].mean()
            total = mix_losses(out["clean"], out["adversarial"], self.alpha)
        if self.beta > 0:
            if self.penalty == "ce":
                out["penalty"] = self.beta * input_gradient_penalty(ce[:n], x)
            else:
                gen = _projection_generator(ctx)
                out["penalty"] = self.beta * jacobian_penalty(logits[:n], x, self.projections, gen)
            total = total + out["penalty"]
        out["total"] = total
        return out

    def loss(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: TrainContext) -> Tensor:
        return self.terms(model, images, labels, ctx)["total"]


# -- configs -------------------------------------------------------------------------------------------------------

#: The ablation of the paper's Table 3: each variant switches exactly one component off.
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_attention": {"gate": "none"},
    "no_adversarial": {"adversarial": False},
    "no_regularisation": {"beta": 0.0},
}

#: Inner-attack pixel positions (x 8 corner colours = queries per training image) where a profile sets none:
#: OnePixelAT's default. The paper does not state its inner attack; each profile sizes it in its ``apr`` section.
DEFAULT_INNER_POSITIONS = 8


def inner_positions(profile: Profile) -> int:
    """The pixel positions APR's and one-pixel AT's inner attack tries in ``profile`` (its ``apr`` section's
    ``inner_positions``, ``Profile.lab``; else ``DEFAULT_INNER_POSITIONS``)."""
    return int(profile.lab("apr").get("inner_positions", DEFAULT_INNER_POSITIONS))


def apr_config(profile: Profile, variant: str = "full", model: str | None = None, seed: int | None = None,
               positions: int | None = None) -> TrainConfig:
    """The ``TrainConfig`` of APR ``variant`` (one of ``VARIANTS``) in ``profile``.

    Everything but the switched component is shared: the profile's training run (architecture ``model``,
    default the profile's first; ``seed``, default its first), the pixel gate (kernel 3), alpha = 0.7,
    beta = 0.01 and the inner attack of ``positions`` pixels (default ``inner_positions(profile)``).
    """
    prof = profile
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, not {variant!r}")
    switches = {"gate": "pixel", "adversarial": True, "beta": 0.01, **VARIANTS[variant]}
    objective = APRObjective(alpha=0.7, beta=switches["beta"], adversarial=switches["adversarial"],
                             positions=positions if positions is not None else inner_positions(prof))
    return prof.train_config(model, seed, gate=switches["gate"], gate_kernel=3, objective=objective)
