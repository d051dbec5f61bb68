"""The attack contract shared by every attack in labkit.

An attack is constructed with a model in eval mode and its hyper-parameters and
called as ``attack(images, labels)`` (``targets=`` for targeted attacks) on
float images in [0, 1], shape (N, C, H, W), with int64 labels (N,). It returns
an :class:`AttackResult`. Normalisation is the model's business, never the attack's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class AttackResult:
    """What an attack returns, one row per image (all tensors on the CPU).

    adv_images: (N, C, H, W) float in [0, 1]; for a failed image, the best candidate found.
    success: (N,) bool, the attack's own verdict (re-verify with ``labkit.evaluate.verify``).
    queries: (N,) int64, model evaluations spent on the image (see each attack for how counted).
    pixels: (N, k, 2) int64 (row, column) of the changed pixels; -1 rows when nothing was changed.
    colours: (N, k, C) float in [0, 1], the values written at ``pixels``.
    labels: (N,) int64 true labels; targets: (N,) int64 targets of a targeted attack, else None.
    adv_pred: (N,) int64 the model's fp32 prediction on ``adv_images``.
    adv_prob: (N,) float, the probability of ``adv_pred``; true_prob: (N,) of the true label.
    """

    adv_images: Tensor
    success: Tensor
    queries: Tensor
    pixels: Tensor
    colours: Tensor
    labels: Tensor
    targets: Tensor | None
    adv_pred: Tensor
    adv_prob: Tensor
    true_prob: Tensor

    def __len__(self) -> int:
        return len(self.success)

    @property
    def success_rate(self) -> float:
        """Fraction of the images the attack reports as successful."""
        return self.success.float().mean().item() if len(self) else float("nan")

    def to_dict(self) -> dict[str, Tensor]:
        """Plain tensors for ``torch.save`` / ``torch.load(weights_only=True)``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Tensor]) -> "AttackResult":
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})

    def select(self, idx: Tensor | slice) -> "AttackResult":
        """The rows ``idx`` as a new result."""
        return AttackResult(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[idx]
                               for f in fields(self)})

    @classmethod
    def cat(cls, parts: list["AttackResult"]) -> "AttackResult":
        """Concatenate results row-wise (e.g. chunks of a resumable run)."""
        out = {}
        for f in fields(cls):
            vals = [getattr(p, f.name) for p in parts]
            out[f.name] = None if any(v is None for v in vals) else torch.cat(vals)
        return cls(**out)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def check_inputs(model: nn.Module, images: Tensor, labels: Tensor, targets: Tensor | None = None,
                 targeted: bool = False) -> int:
    """Validate the attack contract; returns the model's number of classes.

    Raises TypeError for wrong types or dtypes and ValueError for wrong shapes,
    ranges or a model in training mode, each saying what was expected.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError("the model is in training mode (batch norm and dropout would change its answers "
                         "between queries); call model.eval() before attacking")
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
        raise TypeError("images and labels must be torch tensors")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be float in [0, 1], got {images.dtype} (uint8 images: divide by 255)")
    if len(images) and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"images must lie in [0, 1], got values in [{images.min():.3g}, {images.max():.3g}]")
    for name, t in (("labels", labels), ("targets", targets)):
        if t is None:
            continue
        if t.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"{name} must be an integer tensor, got {t.dtype}")
        if t.shape != (len(images),):
            raise ValueError(f"{name} must have shape ({len(images)},), got {tuple(t.shape)}")
    if targeted and targets is None:
        raise ValueError("a targeted attack needs targets=")
    if not targeted and targets is not None:
        raise ValueError("targets= given to an untargeted attack; construct it with targeted=True")
    with torch.no_grad():
        num_classes = model(images[:1].to(model_device(model))).shape[1] if len(images) else 0
    for name, t in (("labels", labels), ("targets", targets)):
        if t is not None and len(t) and (t.min() < 0 or t.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got [{t.min()}, {t.max()}]")
    if targets is not None and (targets == labels).any():
        raise ValueError("a target equals the true label for some image; a targeted attack needs another class")
    return num_classes


def start_attack(model: nn.Module, images: Tensor, labels: Tensor, targets: Tensor | None,
                 config: object) -> "CandidateScorer":
    """Check the contract for an attack with ``config`` (its ``targeted``, ``chunk_size``, ``precision``
    fields) and return the scorer that streams its candidates through the model."""
    check_inputs(model, images, labels, targets, getattr(config, "targeted"))
    return CandidateScorer(model, images, labels, targets, getattr(config, "chunk_size"),
                           getattr(config, "precision", "fp32"))


def default_chunk_size(device: torch.device) -> int:
    """Candidates per forward pass: small batches are fastest per image on CPUs, large ones on GPUs."""
    return 4096 if device.type == "cuda" else 100


def apply_pixels(images: Tensor, rows: Tensor, cols: Tensor, colours: Tensor) -> Tensor:
    """Write ``colours`` (R, k, C) at (``rows``, ``cols``) (R, k) of ``images`` (R, C, H, W), in place.

    Pixels are written in order j = 0..k-1, so when two coincide the later one
    wins, deterministically on every device.
    """
    ar = torch.arange(len(images), device=images.device)
    for j in range(rows.shape[1]):  # k <= a handful: a loop over pixel slots, never over images
        images[ar, :, rows[:, j], cols[:, j]] = colours[:, j].to(images.dtype)
    return images


class CandidateScorer:
    """Scores one-pixel candidates of many images in one stream of chunks.

    A candidate r is (image index ``img[r]``, pixels ``rows[r]``, ``cols[r]``,
    ``colours[r]``). For each it returns the probability of the class the attack
    cares about (the true label, or the target when targeted) and whether it is a
    success (prediction differs from the label / equals the target).
    """

    def __init__(self, model: nn.Module, images: Tensor, labels: Tensor, targets: Tensor | None,
                 chunk_size: int | None = None, precision: str = "fp32"):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', not {precision!r}")
        self.model = model
        self.device = model_device(model)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.targets = None if targets is None else targets.to(self.device)
        self.chunk_size = chunk_size or default_chunk_size(self.device)
        self.precision = precision

    def perturbed(self, img: Tensor, rows: Tensor, cols: Tensor, colours: Tensor) -> Tensor:
        """The candidate images (R, C, H, W)."""
        return apply_pixels(self.images[img], rows, cols, colours)

    @torch.no_grad()
    def probs(self, img: Tensor, rows: Tensor, cols: Tensor, colours: Tensor, precision: str | None = None) -> Iterator[tuple[slice, Tensor]]:
        """Softmax probabilities (fp32) chunk by chunk: yields (row slice, (r, classes))."""
        bf16 = (precision or self.precision) == "bf16"
        for s in range(0, len(img), self.chunk_size):
            sl = slice(s, s + self.chunk_size)
            x = self.perturbed(img[sl], rows[sl], cols[sl], colours[sl])
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = self.model(x)
            yield sl, F.softmax(logits.float(), dim=1)

    def __call__(self, img: Tensor, rows: Tensor, cols: Tensor, colours: Tensor,
                 precision: str | None = None) -> tuple[Tensor, Tensor]:
        """(class probability (R,), success (R,) bool) for R candidates."""
        cls = self.labels[img] if self.targets is None else self.targets[img]
        prob = torch.empty(len(img), device=self.device)
        success = torch.empty(len(img), dtype=torch.bool, device=self.device)
        for sl, p in self.probs(img, rows, cols, colours, precision):
            c = cls[sl]
            prob[sl] = p.gather(1, c[:, None]).squeeze(1)
            pred = p.argmax(1)
            success[sl] = pred == c if self.targets is not None else pred != c
        return prob, success

    def finish(self, rows: Tensor, cols: Tensor, colours: Tensor, success: Tensor, queries: Tensor) -> AttackResult:
        """Build the result for all images from one chosen candidate each (fp32 predictions)."""
        img = torch.arange(len(self.images), device=self.device)
        adv = self.perturbed(img, rows, cols, colours)
        pred_parts, prob_parts, true_parts = [], [], []
        for sl, p in self.probs(img, rows, cols, colours, "fp32"):
            pred = p.argmax(1)
            pred_parts.append(pred)
            prob_parts.append(p.gather(1, pred[:, None]).squeeze(1))
            true_parts.append(p.gather(1, self.labels[sl, None]).squeeze(1))
        cat = (lambda parts: torch.cat(parts).cpu()) if len(img) else (lambda parts: torch.empty(0))
        return AttackResult(
            adv_images=adv.cpu(), success=success.cpu(), queries=queries.cpu(),
            pixels=torch.stack([rows, cols], dim=-1).cpu(), colours=colours.cpu(),
            labels=self.labels.cpu(), targets=None if self.targets is None else self.targets.cpu(),
            adv_pred=cat(pred_parts).long(), adv_prob=cat(prob_parts), true_prob=cat(true_parts),
        )
