"""White-box one-pixel attacks: corner colours where the input gradient points.

One backward pass through the whole model (any gate, input transform or
temperature included: the model passed in is the pipeline) gives the gradient
g of the attack's loss with respect to the input. Two ways to use it:

* ``rank="position"``: rank pixel positions by the L1 norm (over channels) of g
  and try the 2**C corner colours at the top ``positions`` of them
  (``positions * 8`` queries for RGB). It is the inner attack of one-pixel
  adversarial training (labkit.defences, labkit.apr): cheap enough to run on
  every mini-batch.
* ``rank="candidate"``: rank every (position p, corner c) pair, H*W*2**C of
  them, by the first-order estimate of the loss change <g_p, c - x_p> and try
  the best ``positions * 2**C`` in that order. The estimate sees the sign of the
  gradient and the pixel's current colour, so a pixel whose gradient is large
  but already saturated in the useful direction is not tried in vain, and a
  position can contribute one good corner instead of all eight. This is the
  white-box attack of the adaptive suite.

Every candidate is verified by a forward pass; the gradient only orders them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from labkit.attacks.base import Attack, AttackResult, Problem, model_device, ordered_search
from labkit.attacks.corner import cube_corners
from labkit.precision import check_precision

RANKS = ("position", "candidate")
GRADIENT_LOSSES = ("ce", "margin")
GRADIENT_CHUNK = 256  # images per backward pass (a training mini-batch of 128 stays one pass)


@dataclass(frozen=True)
class GradientCornerConfig:
    """Hyper-parameters of the gradient-guided corner attack."""

    positions: int = 8  # candidates tried = positions * 2**C (8 positions = 64 queries: cheap enough for training)
    rank: str = "position"  # "position": top positions by |grad| L1, all corners; "candidate": top (position, corner)
    loss: str = "ce"  # the loss differentiated: "ce" (cross-entropy), or "margin" (logit margin: no saturation)
    targeted: bool = False  # success = prediction equals the target
    block: int = 64  # candidates per image per round; an image stops after the round it succeeds in
    precision: str = "fp32"  # forward checks in "fp32", "bf16" (successes confirmed in fp32) or "auto"
    chunk_size: int | None = None  # candidates per forward pass; None = what fits in free memory (candidate_chunk_size)

    def __post_init__(self) -> None:
        if self.positions < 1:
            raise ValueError(f"positions must be >= 1, got {self.positions}")
        if self.rank not in RANKS:
            raise ValueError(f"rank must be one of {RANKS}, not {self.rank!r}")
        if self.loss not in GRADIENT_LOSSES:
            raise ValueError(f"loss must be one of {GRADIENT_LOSSES}, not {self.loss!r}")
        if self.block < 1:
            raise ValueError("block must be >= 1")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        check_precision(self.precision)


class GradientCorner(Attack):
    """Try colour-cube corners where the input gradient of the loss says they help most.

    ``queries`` counts forward evaluations of candidates (the gradient pass is
    not counted) up to the first success in rank order (``positions * 2**C`` for
    a failure). For failures the fittest candidate tried is returned (lowest
    true-class probability for ``loss="ce"``, lowest margin for "margin").
    """

    Config = GradientCornerConfig
    config: GradientCornerConfig

    @property
    def fitness(self) -> str:
        """Forward checks rank failures by the probability (for "ce") or the margin."""
        return "prob" if self.config.loss == "ce" else "margin"

    def input_gradient(self, images: Tensor, labels: Tensor, targets: Tensor | None = None) -> Tensor:
        """d objective / d x (N, C, H, W) in fp32, for an objective the attack wants to *decrease*.

        "ce": -CE(label), or CE(target) when targeted; "margin": the logit margin
        (``CandidateScorer.fitness``). Images are independent (summed per-image losses).
        """
        dev = model_device(self.model)
        images, labels = images.detach().to(dev), labels.to(dev)
        targets = None if targets is None else targets.to(dev)
        # Backward passes hold every activation: at most GRADIENT_CHUNK images at a time.
        return torch.cat([self._gradient(images[s:s + GRADIENT_CHUNK], labels[s:s + GRADIENT_CHUNK],
                                         None if targets is None else targets[s:s + GRADIENT_CHUNK])
                          for s in range(0, len(images), GRADIENT_CHUNK)]) if len(images) else images.clone()

    def _gradient(self, images: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        x = images.requires_grad_(True)
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            logits = self.model(x).float()
            if self.config.loss == "ce":
                objective = (F.cross_entropy(logits, targets, reduction="sum") if targets is not None
                             else -F.cross_entropy(logits, labels, reduction="sum"))
            else:
                cls = labels if targets is None else targets
                own = logits.gather(1, cls[:, None]).squeeze(1)
                others = logits.scatter(1, cls[:, None], float("-inf")).max(1).values
                objective = (others - own if targets is not None else own - others).sum()
            (grad,) = torch.autograd.grad(objective, x)
        return grad

    def saliency(self, images: Tensor, labels: Tensor, targets: Tensor | None = None) -> Tensor:
        """|d loss / d x| summed over channels, (N, H, W)."""
        return self.input_gradient(images, labels, targets).abs().sum(1)

    def estimated_change(self, images: Tensor, labels: Tensor, targets: Tensor | None = None) -> Tensor:
        """First-order change of the objective for each (position, corner), (N, H*W, 2**C).

        For corner c at pixel p: <g_p, c - x_p>, negative = the loss should drop.
        """
        x = images.to(model_device(self.model))
        g = self.input_gradient(x, labels, targets).flatten(2)  # (N, C, H*W)
        corners = cube_corners(x.shape[1]).to(x.device)  # (M, C)
        return torch.einsum("mc,ncp->npm", corners, g) - (g * x.flatten(2)).sum(1)[..., None]

    def run(self, problem: Problem, progress: bool) -> AttackResult:
        """Rank the candidates by the gradient, then try them in that order (see ``Attack.__call__``)."""
        cfg, scorer = self.config, self.scorer(problem)
        n, c, h, w = problem.images.shape
        corners = cube_corners(c).to(problem.device)
        m = len(corners)
        if cfg.rank == "position":
            top = min(cfg.positions, h * w)
            order = self.saliency(scorer.images, scorer.labels, scorer.targets).flatten(1).topk(top, dim=1).indices
            total = top * m

            def candidate(img: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
                return order[img, q // m], q % m
        else:
            total = min(cfg.positions * m, h * w * m)
            est = self.estimated_change(scorer.images, scorer.labels, scorer.targets).flatten(1)  # (N, H*W*M)
            # Stable sort: ties (e.g. a zero gradient) keep position-major order on every device.
            ranked = est.sort(dim=1, stable=True).indices[:, :total]

            def candidate(img: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
                code = ranked[img, q]
                return code // m, code % m
        return ordered_search(scorer, candidate, total, cfg.block, corners, w, progress,
                              f"gradient corner ({cfg.rank})")
