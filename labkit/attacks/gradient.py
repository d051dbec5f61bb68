"""A cheap white-box one-pixel attack: corner colours at the pixels of largest input gradient.

One backward pass ranks pixel positions by the L1 norm (over channels) of the
gradient of the loss with respect to the input; the 2**C corner colours are then
tried at the top ``positions`` of them (``positions * 8`` queries for RGB). It is
the inner attack of one-pixel adversarial training (labkit.defences, labkit.apr):
cheap enough to run on every mini-batch, and a useful white-box reference in the book.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.attacks.base import AttackResult, model_device, start_attack
from labkit.attacks.corner import cube_corners


@dataclass(frozen=True)
class GradientCornerConfig:
    """Hyper-parameters of the gradient-guided corner attack."""

    positions: int = 8  # pixel positions tried, by decreasing input-gradient magnitude
    targeted: bool = False  # success = prediction equals the target
    chunk_size: int | None = None  # candidates per forward pass; None = 100 on CPU, 4096 on CUDA

    def __post_init__(self) -> None:
        if self.positions < 1:
            raise ValueError(f"positions must be >= 1, got {self.positions}")


class GradientCorner:
    """Try the colour-cube corners at the ``positions`` pixels of largest input gradient.

    ``queries`` counts forward evaluations of candidates (the gradient pass is
    not counted) up to the first success in (rank, corner) order. For failures
    the candidate with the lowest true-class probability is returned.
    """

    def __init__(self, model: nn.Module, config: GradientCornerConfig | None = None, **overrides: object):
        self.model = model
        self.config = GradientCornerConfig(**{**(config.__dict__ if config else {}), **overrides})  # type: ignore[arg-type]

    def saliency(self, images: Tensor, labels: Tensor, targets: Tensor | None = None) -> Tensor:
        """|d loss / d x| summed over channels, (N, H, W); loss = CE(label) or -CE(target)."""
        x = images.detach().to(model_device(self.model)).requires_grad_(True)
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            logits = self.model(x).float()
            if targets is None:
                loss = F.cross_entropy(logits, labels.to(x.device), reduction="sum")
            else:
                loss = -F.cross_entropy(logits, targets.to(x.device), reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
        return grad.abs().sum(1)

    def __call__(self, images: Tensor, labels: Tensor, targets: Tensor | None = None,
                 progress: bool = False) -> AttackResult:
        """Attack ``images`` (N, C, H, W) in [0, 1] with ``labels`` (N,) (and ``targets``)."""
        cfg = self.config
        scorer = start_attack(self.model, images, labels, targets, cfg)
        n, c, h, w = images.shape
        m = min(cfg.positions, h * w)
        dev = scorer.device
        top = self.saliency(scorer.images, scorer.labels, scorer.targets).flatten(1).topk(m, dim=1).indices
        corners = cube_corners(c).to(dev)
        q = len(corners) * m
        img = torch.arange(n, device=dev).repeat_interleave(q)
        slot = torch.arange(q, device=dev).repeat(n)
        pos = top[img, slot // len(corners)]
        colour = corners[slot % len(corners)]
        prob, succ = scorer(img, (pos // w)[:, None], (pos % w)[:, None], colour[:, None])
        fit = (1 - prob if cfg.targeted else prob).view(n, q)
        succ = succ.view(n, q)
        order = torch.arange(q, device=dev)
        first = torch.where(succ, order, torch.full_like(order, q)).min(1).values
        done = first < q
        choice = torch.where(done, first, fit.argmin(1))
        queries = torch.where(done, first + 1, torch.full_like(first, q))
        chosen_pos = top[torch.arange(n, device=dev), choice // len(corners)]
        return scorer.finish((chosen_pos // w)[:, None], (chosen_pos % w)[:, None],
                             corners[choice % len(corners)][:, None], done, queries)
