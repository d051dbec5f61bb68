"""APR's attention maps, measured (Lab 08).

The APR paper shows attention maps of its gate, says they concentrate on class-specific features and that
this is why one-pixel perturbations in "less critical regions" fail; it reports no numbers. This module
turns those sentences into measurements on a gated model (``labkit.apr.AttentionGate`` in front):

* ``attention_of``: the map A(x) of a batch of images, (N, H, W); ``values_at`` and ``percentile_at``: A at
  given pixels, raw or as the pixel's percentile within its own map.
* ``pixel_attention``: A at the pixels the attacks chose (successes and failures, per attack) and at random
  pixels of the same images (each value with the image it belongs to, so Lab 08's
  ``labkit.labs.attention_maps.claim_table`` can test "attacks succeed where attention is low" by resampling whole
  images, ``labkit.stats.cluster_compare``).
* ``attention_change``: how A changes when the attack writes its pixel, by distance.
* ``concentration`` / ``class_concentration``: the share of attention mass in the top 10% of a map's pixels.
* ``AttackedModel``: a gated model and the attacks on it, as Lab 08 studies it (``labkit.labs.attention_maps``
  makes them, with the explorer's images and figures); a lab record keeps and rebuilds it (``to_record``).

Everything is batched over images (no Python loop over images) and seeded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from labkit._checks import check_int
from labkit.attacks.base import model_device
from labkit.evaluate import Evaluation
from labkit.models import gate_of
from labkit.stats import mean_ci
from labkit.storable import NoWeights, Store, storable

__all__ = [
    "AttackedModel", "GroupPixels", "PixelAttention", "attention_change", "attention_of", "class_concentration",
    "concentration", "percentile_at", "pixel_attention", "random_pixels", "values_at",
]


# -- maps and values at pixels --------------------------------------------------------------------------------------

def _check_images(images: Any) -> Tensor:
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be an RGB tensor (N, 3, H, W), got {shape}")
    if not images.is_floating_point():
        raise TypeError(f"images must be float in [0, 1], got {images.dtype} (uint8 images: divide by 255)")
    if len(images) and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"images must lie in [0, 1], got [{images.min():.3g}, {images.max():.3g}]")
    return images


@torch.no_grad()
def attention_of(model: nn.Module, images: Tensor, batch_size: int = 1000) -> Tensor:
    """The attention map A(x) of ``model``'s gate for [0, 1] images (N, 3, H, W): (N, H, W) on the CPU, fp32.

    Only the gate runs (the map does not depend on the network behind it). A per-channel gate's three maps
    are averaged into one, the map of the pixel as a whole (what a one-pixel attack changes).
    Raises ValueError for a model without an ``AttentionGate`` or for images that are not RGB in [0, 1].
    """
    gate = gate_of(model) if isinstance(model, nn.Module) else None
    if gate is None:
        raise ValueError("the model has no AttentionGate (an APR model with gate='pixel' or 'channel' has one)")
    images = _check_images(images)
    dev = model_device(gate)
    parts = [gate.attention(images[s:s + batch_size].to(dev)).float().mean(1).cpu()
             for s in range(0, len(images), batch_size)]
    return torch.cat(parts) if parts else torch.empty(0, *images.shape[2:])


def _check_maps_pixels(maps: Tensor, pixels: Tensor) -> None:
    if not isinstance(maps, Tensor) or maps.dim() != 3:
        raise ValueError(f"maps must be (N, H, W), got {tuple(maps.shape) if isinstance(maps, Tensor) else maps!r}")
    if not isinstance(pixels, Tensor) or pixels.dim() not in (2, 3) or pixels.shape[0] != len(maps) \
            or pixels.shape[-1] != 2:
        shape = tuple(pixels.shape) if isinstance(pixels, Tensor) else type(pixels).__name__
        raise ValueError(f"pixels must be (N, 2) or (N, k, 2) (row, col) with N = {len(maps)}, got {shape}")
    if pixels.is_floating_point():
        raise TypeError("pixels must be integer (row, col) positions")
    h, w = maps.shape[1:]
    if len(pixels) and ((pixels[..., 0] < 0).any() or (pixels[..., 0] >= h).any() or (pixels[..., 1] < 0).any()
                        or (pixels[..., 1] >= w).any()):
        raise ValueError(f"pixels must lie inside the {h}x{w} map (an attack's -1 rows mark 'no pixel': drop them)")


def values_at(maps: Tensor, pixels: Tensor) -> Tensor:
    """A at (row, col) ``pixels`` of each map: maps (N, H, W), pixels (N, 2) -> (N,), or (N, k, 2) -> (N, k)."""
    _check_maps_pixels(maps, pixels)
    p = pixels if pixels.dim() == 3 else pixels[:, None]
    flat = (p[..., 0] * maps.shape[2] + p[..., 1]).long()
    out = maps.flatten(1).gather(1, flat)
    return out if pixels.dim() == 3 else out[:, 0]


def percentile_at(maps: Tensor, pixels: Tensor) -> Tensor:
    """The within-image percentile (0 = the map's lowest pixel, 1 = its highest) of A at ``pixels``.

    Mid-ranks for ties: (pixels below + (pixels equal - 1) / 2) / (H * W - 1). For a pixel drawn uniformly
    from its image its expectation is exactly 0.5 whatever the map (a constant map gives 0.5 everywhere),
    so percentiles of different images, with maps of different levels and spreads, can be pooled.
    Shapes as in ``values_at``.
    """
    v = values_at(maps, pixels)
    vk = v if v.dim() == 2 else v[:, None]
    flat = maps.flatten(1)[:, None, :]  # (N, 1, HW) against (N, k, 1): one comparison per pixel, batched
    below = (flat < vk[..., None]).sum(-1).double()
    equal = (flat == vk[..., None]).sum(-1).double()
    out = ((below + (equal - 1) / 2) / max(flat.shape[-1] - 1, 1)).float()
    return out if v.dim() == 2 else out[:, 0]


def random_pixels(n: int, height: int, width: int, per_image: int = 10, seed: int = 0) -> Tensor:
    """``per_image`` uniformly random (row, col) positions for each of ``n`` images: (n, per_image, 2), seeded."""
    if n < 0 or height < 1 or width < 1 or per_image < 1:
        raise ValueError("need n >= 0, height, width >= 1 and per_image >= 1")
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(height, (n, per_image), generator=g),
                        torch.randint(width, (n, per_image), generator=g)], -1)


# -- attention at the attacks' pixels -------------------------------------------------------------------------------

@dataclass
class GroupPixels:
    """Pixels of one group (e.g. the successes of DE): which image, where, and A there."""

    image: Tensor  # (n,) int64 row of the image in the attacked set
    pixel: Tensor  # (n, 2) int64 (row, col)
    value: Tensor  # (n,) A(x) at the pixel, on the clean image
    percentile: Tensor  # (n,) its within-image percentile (``percentile_at``)

    def __len__(self) -> int:
        return len(self.image)


@dataclass
class PixelAttention:
    """A(x) of the attacked images and the attention at the pixels of each group.

    Groups: ``"<attack> success"`` (the pixel of each verified success), ``"<attack> failure"`` (the best
    candidate a failed attack ended on) for every attack, and ``"random"`` (random pixels of all images).
    """

    maps: Tensor | None  # (N, H, W) A(x) of the clean attacked images; None when rebuilt from a lab's record
    groups: dict[str, GroupPixels]

    def arrays(self) -> dict[tuple[str, str], Tensor]:
        """The groups as (group, field) -> tensor (what a lab's record keeps; the maps are left out: too big)."""
        return {(name, f): getattr(g, f) for name, g in self.groups.items() for f in GROUP_FIELDS}

    @classmethod
    def from_arrays(cls, arrays: dict[tuple[str, str], Tensor]) -> PixelAttention:
        """The inverse of ``arrays`` (``maps`` None)."""
        names = dict.fromkeys(name for name, _ in arrays)
        return cls(None, {n: GroupPixels(*(arrays[n, f] for f in GROUP_FIELDS)) for n in names})

    def measure(self, measure: str = "percentile") -> dict[str, Tensor]:
        """Group name -> its values of ``measure`` ("percentile" or "value")."""
        if measure not in ("percentile", "value"):
            raise ValueError(f"measure must be 'percentile' or 'value', not {measure!r}")
        return {name: getattr(g, measure) for name, g in self.groups.items()}

    def summary(self) -> list[dict[str, Any]]:
        """One row per group: pixels, mean and median of A and of its within-image percentile."""
        rows = []
        for name, g in self.groups.items():
            empty = len(g) == 0
            rows.append({"group": name, "pixels": len(g),
                         "mean A": float("nan") if empty else g.value.mean().item(),
                         "median A": float("nan") if empty else g.value.median().item(),
                         "mean percentile": float("nan") if empty else g.percentile.mean().item(),
                         "median percentile": float("nan") if empty else g.percentile.median().item()})
        return rows


#: ``GroupPixels``' fields, in order.
GROUP_FIELDS = ("image", "pixel", "value", "percentile")


def _group(maps: Tensor, image: Tensor, pixel: Tensor) -> GroupPixels:
    sub = maps[image]
    return GroupPixels(image, pixel, values_at(sub, pixel), percentile_at(sub, pixel))


def pixel_attention(model: nn.Module, images: Tensor, results: dict[str, Any],
                    successes: dict[str, Tensor] | None = None, random_per_image: int = 10,
                    seed: int = 0) -> PixelAttention:
    """A(x) at the pixels the attacks in ``results`` chose, split by outcome, and at random pixels.

    images: the attacked images (N, 3, H, W) in [0, 1]; results: attack name -> its ``AttackResult`` on them
    (same rows); successes: attack name -> (N,) bool, the verified successes (``labkit.attacks.verify``;
    default: each result's own ``success``). Every changed pixel of an image counts (one for k = 1); rows
    where an attack changed nothing (pixel -1) are left out. A is measured on the *clean* image: the claim
    is about where the model attends before anything is written.
    """
    maps = attention_of(model, images)
    n, h, w = maps.shape
    groups: dict[str, GroupPixels] = {}
    for name, res in results.items():
        if len(res) != n:
            raise ValueError(f"{name}: {len(res)} result rows for {n} images (results must be on `images`)")
        ok = (successes or {}).get(name, res.success).bool()
        if ok.shape != (n,):
            raise ValueError(f"successes[{name!r}] must have shape ({n},), got {tuple(ok.shape)}")
        k = res.pixels.shape[1]
        image = torch.arange(n).repeat_interleave(k)
        pixel = res.pixels.reshape(-1, 2).long()
        valid = pixel[:, 0] >= 0
        won = ok.repeat_interleave(k)
        for label, keep in (("success", valid & won), ("failure", valid & ~won)):
            groups[f"{name} {label}"] = _group(maps, image[keep], pixel[keep])
    rand = random_pixels(n, h, w, random_per_image, seed)
    groups["random"] = _group(maps, torch.arange(n).repeat_interleave(random_per_image), rand.reshape(-1, 2))
    return PixelAttention(maps, groups)


# -- do the maps change under attack? -------------------------------------------------------------------------------

def _distance(pixels: Tensor, height: int, width: int) -> Tensor:
    """Chebyshev distance (N, H, W) of every pixel from each image's (row, col) in ``pixels`` (N, 2)."""
    rows = (torch.arange(height)[None, :] - pixels[:, :1]).abs()[:, :, None]
    cols = (torch.arange(width)[None, :] - pixels[:, 1:]).abs()[:, None, :]
    return torch.maximum(rows, cols)


def attention_change(model: nn.Module, images: Tensor, result: Any, successes: Tensor | None = None,
                     max_distance: int = 3) -> list[dict[str, Any]]:
    """How A changes when the attack writes its pixel: A(x') - A(x), by Chebyshev distance from the pixel.

    images: the clean images (N, 3, H, W); result: a one-pixel ``AttackResult`` on them; successes: (N,) bool,
    which images to use (default: every image where the attack changed a pixel, success or not). Rows for
    distance 0 (the attacked pixel), 1, ..., ``max_distance`` - 1 and ">= max_distance" (the rest of the
    image): pixels counted, mean A before and after, mean change, mean |change|, largest |change|, and the
    share of pixels where A dropped. A gate with a k x k kernel can only change A within k // 2 of the pixel.
    """
    if result.pixels.shape[1] != 1:
        raise ValueError("attention_change takes a one-pixel attack (k = 1)")
    check_int("max_distance", max_distance, 1)
    if len(result) != len(images):
        raise ValueError(f"{len(result)} result rows for {len(images)} images")
    keep = result.pixels[:, 0, 0] >= 0
    if successes is not None:
        keep &= successes.bool()
    before, after = attention_of(model, images[keep]), attention_of(model, result.adv_images[keep])
    delta = after - before
    dist = _distance(result.pixels[keep, 0].long(), *before.shape[1:]).clamp(max=max_distance)
    rows = []
    nan = torch.full((1,), float("nan"))
    for d in range(max_distance + 1):  # a handful of rings: a loop over distances, never over images
        m = dist == d
        n = int(m.sum())
        b, a, c = (before[m], after[m], delta[m]) if n else (nan, nan, nan)
        rows.append({"distance": "0 (the pixel)" if d == 0 else (f">= {d}" if d == max_distance else str(d)),
                     "pixels": n, "mean A before": b.mean().item(), "mean A after": a.mean().item(),
                     "mean change": c.mean().item(), "mean |change|": c.abs().mean().item(),
                     "max |change|": c.abs().max().item(),
                     "share dropped": (c < 0).float().mean().item() if n else float("nan")})
    return rows


# -- where does attention concentrate? ------------------------------------------------------------------------------

def concentration(maps: Tensor, top: float = 0.1) -> Tensor:
    """Share of each map's attention mass (sum of A) held by its top ``top`` fraction of pixels: (N,).

    ceil(top * H * W) pixels are counted; a flat map gives about ``top`` (exactly k / (H * W)), a map with
    all its mass on a few pixels gives close to 1.
    """
    if not isinstance(maps, Tensor) or maps.dim() != 3:
        raise ValueError("maps must be (N, H, W)")
    if not 0 < top <= 1:
        raise ValueError(f"top must lie in (0, 1], got {top!r}")
    if len(maps) and (maps < 0).any():
        raise ValueError("attention maps must be non-negative (A is a sigmoid in (0, 1))")
    flat = maps.flatten(1).double()
    k = math.ceil(top * flat.shape[1])
    return (flat.topk(k, 1).values.sum(1) / flat.sum(1).clamp(min=1e-12)).float()


def class_concentration(maps: Tensor, labels: Tensor, classes: Sequence[str], top: float = 0.1) -> list[dict[str, Any]]:
    """Per class: images, mean ``concentration`` with its 95% Student-t interval over images, the value of a
    flat map, and the mean of A. Rows sorted from the most to the least concentrated class."""
    if labels.shape != (len(maps),):
        raise ValueError(f"labels must have shape ({len(maps)},), got {tuple(labels.shape)}")
    conc = concentration(maps, top)
    flat = math.ceil(top * maps[0].numel()) / maps[0].numel() if len(maps) else top
    means = maps.flatten(1).mean(1)
    rows = []
    for c, name in enumerate(classes):  # ten classes: a loop over classes, not images
        m = labels == c
        if not m.any():
            continue
        mean, lo, hi = (float(v) for v in mean_ci(conc[m].tolist()))
        rows.append({"class": name, "images": int(m.sum()), "top-mass": mean, "top-mass_lo": lo,
                     "top-mass_hi": hi, "flat map": flat, "mean A": means[m].mean().item()})
    return sorted(rows, key=lambda r: -r["top-mass"])


# -- attacked gated models ------------------------------------------------------------------------------------------

@storable("attacked model")
@dataclass
class AttackedModel:
    """A gated APR variant and the book's attacks on it (DE at the profile's budget, corner search)."""

    name: str  # "<variant> (<architecture>)", e.g. "full (small_cnn)"
    variant: str  # a key of labkit.apr.VARIANTS
    arch: str  # labkit.models.REGISTRY name
    model: nn.Module  # eval mode, gate in front
    key: str  # its cache key (the attack records live under it)
    indices: Tensor  # (n,) test-set indices of the attacked images
    images: Tensor  # (n, 3, H, W) in [0, 1]
    labels: Tensor  # (n,)
    rows: list[dict[str, Any]]  # labkit.evaluate.evaluate_model's table rows
    results: dict[str, Any]  # attack name ("DE k=1", "corner") -> AttackResult on ``images``
    verified: dict[str, Tensor]  # attack name -> (n,) bool, successes re-verified (labkit.attacks.verify)

    def to_record(self, store: Store, name: str) -> dict[str, str]:
        """Keep this model in a lab record under ``name``: its table and attack results (an ``Evaluation``, per
        image, with ``indices``) and its verified successes; returns what the record keeps of it in JSON (no
        weights, no images: its cache key, and the dataset rebuilds the images from the indices)."""
        store.rows(name, Evaluation(self.rows, self.results), indices=self.indices)
        store.array(f"{name}/verified", self.verified)
        return {"variant": self.variant, "arch": self.arch, "key": self.key}

    @classmethod
    def from_record(cls, store: Store, name: str, *, label: str, meta: dict[str, str]) -> AttackedModel:
        """The model ``to_record`` kept under ``name`` (``meta``: what it returned; ``label``: its ``name``), around
        a ``NoWeights`` network, its images and labels reloaded from the dataset by the recorded indices."""
        ev = store.replayed_rows(name)
        first = next(iter(store.named_under("attacks", name)))  # every attack ran on the same images
        idx = store.stored_array(f"{first}/index")
        split = store.split()
        return cls(label, meta["variant"], meta["arch"], NoWeights(meta["key"]), meta["key"], idx, split.floats(idx),
                   split.labels[idx], ev.rows, ev.results, store.replayed_array(f"{name}/verified"))
