"""Certified one-pixel training: a training objective whose robust part is a *bound*, not an attack.

Adversarial training lowers the loss at the colours an attack finds; this objective lowers an upper bound of the
loss over *every* colour of a pixel's cube, so the verifier (``labkit.certify.certify``) later finds those bounds
tight and closes positions without splitting. Per batch, each image gets ``positions`` random pixel positions;
at each, the colour ranges over a box that grows with training from the pixel's own colour (eps = 0) to the
whole cube [0, 1]^C (eps = 1); interval bound propagation (IBP) through the network gives a lower bound of every
margin f_y - f_j over that box, and the robust loss is the cross-entropy of the worst-case logits (-lower bound,
0 for the label), as in IBP training (Gowal et al. 2018) and Chiang et al.'s certified patch training (2020).

The last linear layer is bounded in margin space directly ("elision": rows W_y - W_j), which is much tighter
than bounding the logits apart. Batch norm in training mode is the affine map of the *clean* batch's statistics,
the one the clean forward uses (and the only one that updates the running statistics).

Unlike ``labkit.certify.certify`` this runs in the training dtype with autograd and on whole images: a
training-time surrogate, not a proof; proofs come from the verifier on the trained model. Interval bounds only
(CROWN-IBP's linear blend costs a backward pass per layer, beyond the 2-core budget); ``interval_margins``
serves the bound-width figures of Lab 12 too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit._checks import check_int, check_number
from labkit.certify.layers import NotCertifiable, _leaves
from labkit.models import MedianBlur, Normalize
from labkit.train import TrainContext

__all__ = ["OnePixelIBP", "interval_margins", "pixel_boxes"]


@dataclass(frozen=True)
class OnePixelIBP:
    """Training objective: kappa * natural cross-entropy + (1 - kappa) * cross-entropy of IBP's worst case.

    Over the first ``ramp`` share of the run's steps eps (the colour box's size) grows *geometrically* from
    ``start`` to ``eps`` and kappa falls linearly from 1 to ``kappa``; then both hold. Geometric, because on a
    natural model IBP's margin bound over a box of size eps is about -6,000 eps (measured on the 6-epoch small CNN:
    -60 at eps = 0.01, -10^4 at 1): a linear ramp asks for bounds 10^3 times too loose within a few steps and the
    model collapses to a constant (measured: 24% clean after 4 epochs); growing eps tenfold per fixed number of
    steps lets the bounds tighten as the box grows. Warm-start from a natural model (``TrainConfig.init``).
    """

    positions: int = 2  # pixel positions bounded per image and step (each costs ~2 forwards: centre and radius)
    eps: float = 1.0  # final box size: 1 = the whole colour cube, the threat the verifier decides
    kappa: float = 0.5  # final weight of the natural loss (1 = natural training; lower: more proofs, less accuracy)
    ramp: float = 0.8  # share of the run over which eps grows and kappa falls (the rest trains at the final values)
    start: float = 1e-3  # eps at the first step (the geometric ramp's start; 0 < start <= eps)

    def __post_init__(self) -> None:
        check_int("positions", self.positions, 1)
        check_number("eps", self.eps, 0.0, 1.0)
        check_number("kappa", self.kappa, 0.0, 1.0)
        check_number("ramp", self.ramp, 0.0, 1.0)
        check_number("start", self.start, 0.0, 1.0)
        if self.start <= 0 or (self.eps > 0 and self.start > self.eps):
            raise ValueError(f"start must lie in (0, eps], got start={self.start!r} with eps={self.eps!r}")

    def setup(self, ctx: TrainContext) -> None:
        """Nothing to prepare (the schedule reads ``ctx.step`` and ``ctx.total_steps``)."""

    def schedule(self, step: int, total: int) -> tuple[float, float]:
        """(eps, kappa) at optimiser step ``step`` of ``total``."""
        frac = 1.0 if self.ramp == 0 or total <= 0 else min(1.0, step / (self.ramp * total))
        eps = self.eps if self.eps == 0 else self.start * (self.eps / self.start) ** frac
        return eps, 1.0 - (1.0 - self.kappa) * frac

    def loss(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: TrainContext) -> Tensor:
        eps, kappa = self.schedule(ctx.step, ctx.total_steps)
        n, _, h, w = images.shape
        pos = torch.randint(h * w, (n, self.positions), generator=ctx.generator).to(images.device)
        logits, lower = interval_margins(model, images, labels, pos, eps)
        natural = F.cross_entropy(logits, labels)
        if kappa >= 1.0:
            return natural
        # Worst-case logits: -lower[j] bounds f_j - f_y from above, and the label's own entry is 0.
        robust = F.cross_entropy(-lower, labels.repeat_interleave(self.positions))
        return kappa * natural + (1.0 - kappa) * robust


def pixel_boxes(images: Tensor, pos: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Interval inputs: each image (N, C, H, W) repeated per position (pos (N, P), row * W + col), the pixel
    there ranging from colour * (1 - eps) to colour + eps * (1 - colour) (eps = 1: the whole cube [0, 1]^C).
    Returns lo, hi (N * P, C, H, W)."""
    n, c, h, w = images.shape
    rep = images.repeat_interleave(pos.shape[1], 0)
    flat = pos.reshape(-1)
    ar, r, col = torch.arange(len(flat), device=images.device), flat // w, flat % w
    pixel = rep[ar, :, r, col]
    lo, hi = rep.clone(), rep.clone()
    lo[ar, :, r, col] = pixel * (1 - eps)
    hi[ar, :, r, col] = pixel + eps * (1 - pixel)
    return lo, hi


def interval_margins(model: nn.Module, images: Tensor, labels: Tensor, pos: Tensor,
                     eps: float = 1.0) -> tuple[Tensor, Tensor]:
    """The clean logits (N, K) and IBP lower bounds (N * P, K) of the margins f_y - f_j (0 at j = y) over each
    image's pixel boxes (``pixel_boxes``; pos (N, P)), differentiable in the model's parameters.

    Supported: a ``MedianBlur`` in front, the model's ``Normalize``, Conv2d, BatchNorm2d, ReLU, MaxPool2d,
    AdaptiveMaxPool2d, Flatten and a final Linear (``labkit.models.small_cnn``'s layers); anything else raises
    ``NotCertifiable`` naming it.
    """
    leaves = _leaves(model)
    if not leaves or not isinstance(leaves[-1], nn.Linear):
        raise NotCertifiable("interval_margins needs a model ending in nn.Linear (the margins are bounded there)")
    lo, hi = pixel_boxes(images, pos, eps)
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    z = images
    for m in leaves[:-1]:
        mid, rad = _interval(m, z, mid, rad)
        z = m(z)
    last = leaves[-1]
    logits = last(z)
    y = labels.repeat_interleave(pos.shape[1])
    rows = last.weight[y][:, None, :] - last.weight[None]  # (B, K, D): W_y - W_j
    bias = last.bias[y][:, None] - last.bias[None] if last.bias is not None else 0.0
    lower = (rows @ mid[:, :, None]).squeeze(2) - (rows.abs() @ rad[:, :, None]).squeeze(2) + bias
    return logits, lower


def _interval(m: nn.Module, z: Tensor, mid: Tensor, rad: Tensor) -> tuple[Tensor, Tensor]:
    """One layer on centre/radius form; ``z`` is the clean batch's input to it (batch norm's statistics)."""
    if isinstance(m, Normalize):
        return (mid - m.mean) / m.std, rad / m.std
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise NotCertifiable(f"{m!r}: only zero padding is supported")
        return m(mid), F.conv2d(rad, m.weight.abs(), None, m.stride, m.padding, m.dilation, m.groups)
    if isinstance(m, nn.BatchNorm2d):
        a, b = _bn_affine(m, z)
        return mid * a + b, rad * a.abs()
    if isinstance(m, (nn.ReLU, nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, MedianBlur)):
        # Monotone (non-decreasing in every input): the box's ends map to the output box's ends. For the median
        # filter in front this is exact: each output is clamp(colour, a, b) with a, b its values at the box's ends.
        lo, hi = _apply(m, mid - rad), _apply(m, mid + rad)
        return (lo + hi) / 2, (hi - lo) / 2
    if isinstance(m, (nn.Dropout, nn.Identity)) and not (isinstance(m, nn.Dropout) and m.training and m.p > 0):
        return mid, rad
    raise NotCertifiable(f"interval_margins has no rule for {type(m).__name__} ({m!r})")


def _apply(m: nn.Module, x: Tensor) -> Tensor:
    # An in-place ReLU would overwrite the shared centre/radius sums' inputs: apply it out of place.
    return F.relu(x) if isinstance(m, nn.ReLU) else m(x)


def _bn_affine(m: nn.BatchNorm2d, z: Tensor) -> tuple[Tensor, Tensor]:
    """Batch norm as x * a + b (shapes (1, C, 1, 1)): the clean batch's statistics in training mode (what the
    clean forward normalises with), the running ones in eval mode."""
    if m.training or m.running_mean is None:
        mean, var = z.mean((0, 2, 3)), z.var((0, 2, 3), unbiased=False)
    else:
        mean, var = m.running_mean, m.running_var
    weight = m.weight if m.weight is not None else torch.ones_like(mean)
    bias = m.bias if m.bias is not None else torch.zeros_like(mean)
    a = weight / torch.sqrt(var + m.eps)
    return a.view(1, -1, 1, 1), (bias - mean * a).view(1, -1, 1, 1)
