"""Exact one-pixel verification: is there *any* colour that, written at one pixel, changes the prediction?

An image is one-pixel robust iff at each of its H x W positions no colour of the cube (by default the 8-bit
colours k / 255, the ones an image file holds; optionally all of [0, 1]^C) changes the model's prediction. Each
position is a C-dimensional box of inputs, so the question is decidable by bound propagation and splitting:

    result = certify(model, images, labels)            # images (N, C, H, W) in [0, 1], labels (N,)
    result.status                                      # (N,) ROBUST / VULNERABLE / UNKNOWN (budget spent)

How (``labkit.certify.layers``, ``.bounds``, ``.margins``, ``.search``): bounds are computed only on the window
of each layer the pixel can reach, the rest of the network's activations being the clean ones; backward linear
bounds (CROWN)
with optimised ReLU slopes (alpha-CROWN) give each margin f_y - f_j as an affine lower bound in the colour.
A search first tries the 2^C cube corners at every position (a flip settles the image), then splits each
position's cube worst-first, probing every box for a counterexample and enumerating boxes of few 8-bit colours,
so on 8-bit colours it is complete. Every VULNERABLE verdict comes with a colour that flips the model's fp32
prediction, re-checked by a plain forward pass; every ROBUST one with float64 bounds (sound up to float64
rounding, not rounded outward).

Certified training (``labkit.certify.training.OnePixelIBP``) trains a model whose bounds hold, so that its proofs
take seconds; it is a training objective (``labkit.train``), imported from its module, not from here.

Supported layers: ``labkit.models.Normalize``, Conv2d, BatchNorm1d/2d (eval), ReLU, MaxPool2d, AvgPool2d,
adaptive max / average pooling (output sizes dividing the input), Flatten, Linear, Dropout / Identity (eval), a
trailing Softmax / LogSoftmax, ResNet's ``BasicBlock`` (identity or 1x1-conv shortcuts), and APR's
``AttentionGate`` as the model's first layer (where ``labkit.train`` puts it; sigmoid relaxed linearly, the
product by McCormick). Anything else raises :class:`NotCertifiable` naming it.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from labkit._checks import check_int, check_number, check_positive
from labkit.certify.bounds import Boxes, Chain
from labkit.certify.layers import NotCertifiable, parse
from labkit.certify.margins import margin_bounds
from labkit.certify.search import LEVELS, ROBUST, UNKNOWN, VULNERABLE, Group

__all__ = ["CertifyConfig", "CertifyResult", "NotCertifiable", "ROBUST", "UNKNOWN", "VULNERABLE", "Boxes", "Chain",
           "certify", "margin_bounds", "parse", "LEVELS", "THREATS", "METHODS", "INTERMEDIATE"]

THREATS = ("8bit", "continuous")
METHODS = ("interval", "forward", "backward", "alpha")
INTERMEDIATE = ("interval", "forward", "backward")
DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class CertifyConfig:
    """How ``certify`` searches and how much it may spend per image."""

    # "8bit": colours k / 255 (what an image file holds): complete, small boxes are enumerated;
    # "continuous": the whole cube [0, 1]^C: bounds alone close boxes, a flip is still reported as an 8-bit colour.
    threat: str = "8bit"
    # Per-image budget in boxes (bounded or enumerated); the natural small CNN needs ~10^3-10^4 per position with
    # loose bounds (issue #23), so whole-image proofs of natural models stay UNKNOWN at any default.
    max_boxes: int = 20_000
    # Per-position budget in boxes (None: only the image's): a position over it stays UNKNOWN, the others go on.
    position_budget: int | None = None
    # Per-image budget in wall-clock seconds (a batch's time shared among its images by their boxes).
    max_seconds: float = 60.0
    # Bounds on the margins: "interval", "forward" (linear forms carried forward), "backward" (CROWN),
    # "alpha" (CROWN with the ReLU lower slopes optimised per box: the tightest, the default).
    method: str = "alpha"
    # Intermediate-layer bounds for "backward" / "alpha": "interval" (cheapest), "forward" (linear forms carried
    # forward, ~5x interval's work) or "backward" (forward, then CROWN back-substitution for each ReLU input with
    # at most crown_neurons unstable window neurons: tightest, its cost grows with the neurons and the depth).
    intermediate: str = "forward"
    # The most unstable neurons (union over a batch) a layer may have for "backward" intermediate bounds.
    crown_neurons: int = 512
    # How many ReLU layers those back-substitutions pass before using the forward forms (0: all the way to the
    # colour, the tightest; 1-2 keep most of the gain at a fraction of the cost on deep nets).
    crown_depth: int = 0
    # Bound every box by interval arithmetic first and spend the chosen method only on those it leaves open.
    interval_first: bool = True
    # Projected Adam steps on the slopes per batch ("alpha" only), on the boxes plain CROWN leaves open.
    alpha_steps: int = 8
    # Adam's step size on the slopes (they live in [0, 1]).
    alpha_lr: float = 0.25
    # Boxes per bound batch and candidates per forward pass: small batches are fastest per box on CPUs.
    chunk_size: int = 256
    # 8-bit boxes holding at most this many colours are checked colour by colour (one forward each is cheaper
    # than the bounds and splits they would take); >= 1 keeps the search complete.
    enumerate_below: int = 64
    # Start with the corner search (2^C colours per position): the cheapest way to find most flips.
    corners: bool = True
    # Keep deciding the other positions of an image found vulnerable (per-position maps) instead of stopping.
    all_positions: bool = False
    # Images searched together (their clean activations are kept in memory, ~1 MB per CIFAR image for small_cnn).
    group_size: int = 16
    # Bound arithmetic: "float64" (sound up to its rounding) or "float32" (faster, for timing studies only).
    dtype: str = "float64"
    # Fixes the order in which each image's positions are searched (a random permutation keyed by the image).
    seed: int = 0
    # Search only these (row, col) positions (the others stay UNKNOWN, so no image is ROBUST): for spending a
    # budget where it decides (border pixels) and for per-position cost studies. None: every position.
    positions: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        if self.threat not in THREATS:
            raise ValueError(f"threat must be one of {THREATS}, not {self.threat!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        if self.intermediate not in INTERMEDIATE:
            raise ValueError(f"intermediate must be one of {INTERMEDIATE}, not {self.intermediate!r}")
        check_int("crown_neurons", self.crown_neurons, 0)
        check_int("crown_depth", self.crown_depth, 0)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, not {self.dtype!r}")
        check_int("max_boxes", self.max_boxes, 0)
        check_positive("max_seconds", self.max_seconds, or_zero=True)
        if self.position_budget is not None:
            check_int("position_budget", self.position_budget, 1)
        check_int("alpha_steps", self.alpha_steps, 0)
        check_number("alpha_lr", self.alpha_lr, 0.0)
        check_int("chunk_size", self.chunk_size, 1)
        check_int("enumerate_below", self.enumerate_below, 1)
        check_int("group_size", self.group_size, 1)
        check_int("seed", self.seed, 0)
        if self.positions is not None:
            if not self.positions or any(len(p) != 2 or min(p) < 0 for p in self.positions):
                raise ValueError(f"positions must be None or a non-empty tuple of (row, col) pairs >= 0, "
                                 f"got {self.positions!r}")


@dataclass
class CertifyResult:
    """Verdicts and costs, one row per image (tensors on the CPU).

    status: (N,) int8, ROBUST (every position proven), VULNERABLE (a flipping colour found) or UNKNOWN.
    position_status: (N, H, W) int8, the same per position (UNKNOWN: not decided within the budget, or not
    searched further once the image was found vulnerable).
    colours: (N, H, W, C) float32, for each VULNERABLE position a colour (multiples of 1/255) whose writing there
    flips the model's fp32 prediction; NaN elsewhere.
    clean_correct: (N,) bool, whether the unchanged image is predicted as its label (if not, any colour that
    keeps it wrong "flips" it).
    boxes: (N,) int64 boxes bounded or enumerated; bound_evals: (N,) int64 bound passes (alpha steps count);
    seconds: (N,) float64 wall-clock seconds spent on the image; position_boxes: (N, H, W) int64 boxes per position.
    """

    status: Tensor
    position_status: Tensor
    colours: Tensor
    clean_correct: Tensor
    boxes: Tensor
    bound_evals: Tensor
    seconds: Tensor
    position_boxes: Tensor
    config: CertifyConfig

    def __len__(self) -> int:
        return len(self.status)

    def share(self, verdict: int) -> float:
        """Fraction of the images with ``status == verdict``."""
        return (self.status == verdict).float().mean().item() if len(self) else float("nan")

    def to_dict(self) -> dict:
        """Plain tensors and the config's fields, for ``torch.save`` / ``torch.load(weights_only=True)``."""
        out: dict = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "config"}
        out["config"] = {k: [list(p) for p in v] if k == "positions" and v is not None else v
                         for k, v in dataclasses.asdict(self.config).items()}
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "CertifyResult":
        """The result ``to_dict`` wrote."""
        cfg = dict(d["config"])
        if cfg.get("positions") is not None:
            cfg["positions"] = tuple(tuple(p) for p in cfg["positions"])
        return cls(**{k: v for k, v in d.items() if k != "config"}, config=CertifyConfig(**cfg))

    @classmethod
    def cat(cls, parts: list["CertifyResult"]) -> "CertifyResult":
        """Rows of several results (chunks of one resumable run, all with the same config) as one."""
        if not parts or any(p.config != parts[0].config for p in parts):
            raise ValueError("cat needs at least one result, all made with the same config")
        return cls(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)
                      if f.name != "config"}, config=parts[0].config)


def _check(model: nn.Module, images: Tensor, labels: Tensor, config: CertifyConfig | None) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if config is not None and not isinstance(config, CertifyConfig):
        raise TypeError(f"config must be a CertifyConfig, got {type(config).__name__}")
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
        raise TypeError("images and labels must be torch tensors")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got {images.dtype} (uint8 images: divide by 255)")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"images must lie in [0, 1], got values in [{images.min():.3g}, {images.max():.3g}]")
    if config is not None and config.positions is not None:
        bad = [p for p in config.positions if p[0] >= images.shape[2] or p[1] >= images.shape[3]]
        if bad:
            raise ValueError(f"positions {bad} lie outside the {images.shape[2]} x {images.shape[3]} image")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.shape != (len(images),):
        raise ValueError(f"labels must be integers of shape ({len(images)},), got {labels.dtype} "
                         f"{tuple(labels.shape)}")


def certify(model: nn.Module, images: Tensor, labels: Tensor, config: CertifyConfig | None = None) -> CertifyResult:
    """Decide the one-pixel robustness of each image (N, C, H, W) in [0, 1] with labels (N,) under ``model``.

    Computes on the images' device (the model's fp32 forwards on the model's). The model is put in eval mode and
    restored. Raises NotCertifiable for a layer without a bound rule, ValueError for bad shapes or values.
    """
    cfg = config or CertifyConfig()
    _check(model, images, labels, config)
    was_training = model.training
    model.eval()
    try:
        return _certify(model, images, labels, cfg)
    finally:
        model.train(was_training)


def _certify(model: nn.Module, images: Tensor, labels: Tensor, cfg: CertifyConfig) -> CertifyResult:
    n, c, h, w = images.shape
    dev, dtype = images.device, DTYPES[cfg.dtype]
    layers = parse(model, (c, h, w), dtype, dev)
    labels = labels.to(dev).long()
    parts = []
    for s in range(0, n, cfg.group_size):
        x, y = images[s:s + cfg.group_size], labels[s:s + cfg.group_size]
        t0 = time.perf_counter()
        chain = Chain(layers, x, dtype)
        classes = chain.geos[-1].shape[0]
        if len(y) and (y.min() < 0 or y.max() >= classes):
            raise ValueError(f"labels must lie in [0, {classes}), got [{int(y.min())}, {int(y.max())}]")
        group = Group(model, chain, x, y, cfg)
        order = torch.stack([_position_order(img, cfg.seed) for img in x])
        if cfg.positions is not None:
            chosen = torch.zeros(h * w, dtype=torch.bool)
            chosen[torch.tensor([r * w + c for r, c in cfg.positions])] = True
            order = order[chosen[order]].view(len(x), -1)
        order = order.to(dev)
        correct = group.clean_correct()
        group.seconds += (time.perf_counter() - t0) / max(1, len(x))
        group.run(order)
        parts.append((group, correct))
    return _result(parts, n, c, h, w, cfg)


def _position_order(image: Tensor, seed: int) -> Tensor:
    """A random order of the image's H*W positions keyed by its content and ``seed``: the same alone or in any
    batch (as the attacks' random streams are)."""
    key = zlib.crc32(image.detach().float().cpu().numpy().tobytes()) ^ (seed * 0x9E3779B1 & 0xFFFFFFFF)
    return torch.randperm(image.shape[1] * image.shape[2], generator=torch.Generator().manual_seed(key))


def _result(parts: list, n: int, c: int, h: int, w: int, cfg: CertifyConfig) -> CertifyResult:
    if not parts:
        empty = torch.zeros(0, dtype=torch.int8)
        return CertifyResult(empty, torch.zeros(0, h, w, dtype=torch.int8), torch.zeros(0, h, w, c),
                             torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.long),
                             torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float64),
                             torch.zeros(0, h, w, dtype=torch.long), cfg)
    return CertifyResult(
        status=torch.cat([g.image_status().cpu() for g, _ in parts]),
        position_status=torch.cat([g.state.view(-1, h, w).cpu() for g, _ in parts]),
        colours=torch.cat([g.colours.view(-1, h, w, c).cpu() for g, _ in parts]),
        clean_correct=torch.cat([ok.cpu() for _, ok in parts]),
        boxes=torch.cat([g.boxes for g, _ in parts]), bound_evals=torch.cat([g.evals for g, _ in parts]),
        seconds=torch.cat([g.seconds for g, _ in parts]),
        position_boxes=torch.cat([g.position_boxes.view(-1, h, w).cpu() for g, _ in parts]), config=cfg)
