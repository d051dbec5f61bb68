"""Figures of Lab 08: attention maps over images, before and after an attack, per class, and the explorer's panel."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from torch import Tensor

from labkit.plotting.common import LabFigure, _hwc


# -- Attention maps (Lab 08) ------------------------------------------------------------------------------------------

def _map2d(attention: Tensor) -> Any:
    """(H, W), (1, H, W) or (C, H, W) attention -> (H, W) numpy array (channel maps averaged)."""
    a = attention.detach().cpu().float()
    if a.dim() == 3:
        a = a.mean(0)
    if a.dim() != 2:
        raise ValueError(f"an attention map must be (H, W) or (C, H, W), got shape {tuple(attention.shape)}")
    return a.numpy()


def _check_pixel(pixel: Tensor | None, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """(k, 2) or (2,) (row, col) inside ``shape`` (H, W) -> list of (row, col); -1 rows dropped."""
    if pixel is None:
        return []
    p = pixel.detach().cpu().long().reshape(-1, 2).tolist()
    p = [(r, c) for r, c in p if r >= 0]
    if any(not (0 <= r < shape[0] and 0 <= c < shape[1]) for r, c in p):
        raise ValueError(f"pixel positions {p} lie outside the {shape[0]}x{shape[1]} image")
    return p


def _mark(ax: Any, pixels: list[tuple[int, int]], color: str = "cyan", radius: float = 1.6, ls: str = "-") -> None:
    for r, c in pixels:
        ax.add_patch(Circle((c, r), radius, fill=False, color=color, lw=1.5 if ls == "-" else 0.8, ls=ls))


def attention_overlay(image: Tensor, attention: Tensor, pixels: Tensor | None = None, title: str = "",
                      alpha: float = 0.55, vmin: float | None = None, vmax: float | None = None) -> Figure:
    """An image, its attention map A(x) (colour bar) and the map laid over the image.

    image: (3, H, W); attention: (H, W) or (1 or 3, H, W) (channel maps averaged); pixels: (k, 2) (row, col)
    circled on all three panels. The colour scale is the map's own range unless ``vmin``/``vmax`` are given.
    """
    a = _map2d(attention)
    if tuple(image.shape[-2:]) != a.shape:
        raise ValueError(f"image {tuple(image.shape)} and attention map {a.shape} differ in size")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    marks = _check_pixel(pixels, a.shape)
    lo, hi = (a.min() if vmin is None else vmin), (a.max() if vmax is None else vmax)
    hi = hi if hi > lo else lo + 1e-6
    fig = LabFigure(figsize=(6.4, 2.4), layout="constrained")
    ax_i, ax_a, ax_o = fig.subplots(1, 3)
    ax_i.imshow(_hwc(image), interpolation="nearest")
    ax_i.set_title("image", fontsize=9)
    im = ax_a.imshow(a, cmap="magma", vmin=lo, vmax=hi, interpolation="nearest")
    ax_a.set_title("attention A(x)", fontsize=9)
    ax_o.imshow(_hwc(image), interpolation="nearest")
    ax_o.imshow(a, cmap="magma", vmin=lo, vmax=hi, alpha=alpha, interpolation="nearest")
    ax_o.set_title("overlay", fontsize=9)
    for ax in (ax_i, ax_a, ax_o):
        ax.axis("off")
        _mark(ax, marks)
    fig.colorbar(im, ax=[ax_a, ax_o], shrink=0.8, label="A(x)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def attention_attack(original: Tensor, adversarial: Tensor, attention_before: Tensor, attention_after: Tensor,
                     pixels: Tensor, title: str = "") -> Figure:
    """The adversarial pixel marked on the attention map, and how the map changed.

    Panels: the original image; A(x) with the attacked pixel circled and its value printed; the adversarial
    image, pixel circled; A(x') - A(x) (blue: the gate dims more after the attack, red: less).
    original, adversarial: (3, H, W); attention_*: (H, W) or (C, H, W); pixels: (k, 2) (row, col).
    """
    before, after = _map2d(attention_before), _map2d(attention_after)
    if before.shape != after.shape or tuple(original.shape[-2:]) != before.shape \
            or original.shape != adversarial.shape:
        raise ValueError("images and attention maps must all have the same height and width")
    marks = _check_pixel(pixels, before.shape)
    delta = after - before
    span = max(float(abs(delta).max()), 1e-6)
    fig = LabFigure(figsize=(7.2, 2.4), layout="constrained")
    ax_o, ax_a, ax_x, ax_d = fig.subplots(1, 4)
    ax_o.imshow(_hwc(original), interpolation="nearest")
    ax_o.set_title("original", fontsize=9)
    im_a = ax_a.imshow(before, cmap="magma", interpolation="nearest")
    values = ", ".join(f"{before[r, c]:.3f}" for r, c in marks)
    ax_a.set_title(f"A(x)\nat the pixel: {values}" if marks else "A(x)", fontsize=9)
    ax_x.imshow(_hwc(adversarial), interpolation="nearest")
    ax_x.set_title("adversarial", fontsize=9)
    im_d = ax_d.imshow(delta, cmap="RdBu_r", vmin=-span, vmax=span, interpolation="nearest")
    ax_d.set_title("A(x') - A(x)", fontsize=9)
    for ax in (ax_o, ax_a, ax_x, ax_d):
        ax.axis("off")
    _mark(ax_a, marks)
    _mark(ax_x, marks, "red")
    _mark(ax_d, marks, "black", radius=2.6, ls="--")  # wide and thin: the change inside stays visible
    fig.colorbar(im_a, ax=ax_a, shrink=0.8, label="A(x)")
    fig.colorbar(im_d, ax=ax_d, shrink=0.8, label="change")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def class_grid_summary(attention: Tensor, labels: Tensor, n_classes: int, per_class: int = 4) -> dict[str, Tensor]:
    """What ``class_attention_grid`` draws, as tensors (small enough to keep in a lab's record): for every class
    present, in class order, ``classes`` (P,), ``counts`` (P,) images, ``means`` (P, H, W) mean A(x), ``examples``
    (P, per_class) positions of its first ``per_class`` images (-1 where it has fewer) and ``example_maps``
    (P, per_class, H, W) their maps; ``range`` (2,): the lowest and highest A(x) over all images (one colour scale).

    attention: (N, H, W) or (N, 1 or 3, H, W); labels: (N,) int in [0, n_classes).
    """
    maps = attention.detach().cpu().float()
    maps = maps.mean(1) if maps.dim() == 4 else maps
    if maps.dim() != 3 or labels.shape != (len(maps),):
        raise ValueError("need attention (N, [C,] H, W) and labels (N,) with the same N")
    if per_class < 0:
        raise ValueError(f"per_class must be >= 0, got {per_class}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes})")
    present = [c for c in range(n_classes) if (labels == c).any()]
    if not present:
        raise ValueError("no images to show")
    examples = torch.full((len(present), per_class), -1, dtype=torch.long)
    for row, c in enumerate(present):  # ten classes at most: a loop over rows of the figure, never over images
        idx = (labels == c).nonzero().squeeze(1)[:per_class]
        examples[row, :len(idx)] = idx
    means = torch.stack([maps[labels == c].mean(0) for c in present])
    lo, hi = maps.min().item(), maps.max().item()
    return {"classes": torch.tensor(present), "counts": torch.stack([(labels == c).sum() for c in present]),
            "means": means, "examples": examples, "example_maps": maps[examples.clamp(min=0)],
            "range": torch.tensor([lo, hi if hi > lo else lo + 1e-6])}


def class_attention_grid(images: Tensor, summary: dict[str, Tensor], classes: Sequence[str],
                         alpha: float = 0.55) -> Figure:
    """One row per class present: the mean A(x) over all its images, then its first examples with their map laid
    over them. One colour scale for every map in the grid.

    images: (N, 3, H, W), the images the summary's positions refer to; summary: ``class_grid_summary``.
    """
    examples = summary["examples"]
    if len(examples) and examples.max() >= len(images):
        raise ValueError(f"the summary shows image {int(examples.max())} of {len(images)}")
    lo, hi = summary["range"].tolist()
    per_class = examples.shape[1]
    fig = LabFigure(figsize=(1.1 * (1 + per_class) + 0.9, 1.25 * len(examples) + 0.4), layout="constrained")
    axes = fig.subplots(len(examples), 1 + per_class, squeeze=False)
    im = None
    for r, row in enumerate(axes):
        im = row[0].imshow(summary["means"][r].numpy(), cmap="magma", vmin=lo, vmax=hi, interpolation="nearest")
        row[0].set_title(f"{classes[int(summary['classes'][r])]}\nmean of {int(summary['counts'][r])}", fontsize=8)
        for ax, i, m in zip(row[1:], examples[r].tolist(), summary["example_maps"][r]):
            if i >= 0:
                ax.imshow(_hwc(images[i]), interpolation="nearest")
                ax.imshow(m.numpy(), cmap="magma", vmin=lo, vmax=hi, alpha=alpha, interpolation="nearest")
        for ax in row:
            ax.axis("off")
    fig.colorbar(im, ax=axes[:, 0].tolist(), shrink=0.6, label="A(x)", location="left")
    return fig


def attention_panel(image: Tensor, attention: Tensor, probs: Tensor, classes: Sequence[str],
                    adversarial: Tensor | None = None, pixels: Tensor | None = None,
                    probs_after: Tensor | None = None, attention_after: Tensor | None = None, top: int = 5,
                    title: str = "", alpha: float = 0.55) -> Figure:
    """What the Lab 08 explorer shows for one image (and the static figure beside it).

    Top row: the image, A(x) and the overlay; below them the ``top`` class probabilities. With an attack
    (``adversarial``, ``pixels`` (k, 2), ``probs_after``): the adversarial image beside the original, its pixel
    circled on every panel and its attention value (before, and after when ``attention_after`` is given) in
    the map's title, and the probabilities after the attack beside those before (the adversarial class added
    when not among the top ones). Two rows keep the text readable at the width of a book page.
    """
    a = _map2d(attention)
    if tuple(image.shape[-2:]) != a.shape:
        raise ValueError(f"image {tuple(image.shape)} and attention map {a.shape} differ in size")
    if probs.shape != (len(classes),) or (probs_after is not None and probs_after.shape != probs.shape):
        raise ValueError(f"probabilities must have shape ({len(classes)},)")
    if adversarial is not None and (pixels is None or probs_after is None):
        raise ValueError("an attack needs adversarial, pixels and probs_after together")
    marks = _check_pixel(pixels, a.shape)
    attacked = adversarial is not None
    top_row = ["image", "adversarial", "map", "overlay"] if attacked else ["image", "map", "overlay"]
    fig = LabFigure(figsize=(1.55 * len(top_row) + 0.8, 4.6), layout="constrained")
    ax = fig.subplot_mosaic([top_row, ["probs"] * len(top_row)], height_ratios=[1, 0.75])
    ax["image"].imshow(_hwc(image), interpolation="nearest")
    ax["image"].set_title(f"image: {classes[int(probs.argmax())]}", fontsize=9)
    if adversarial is not None and probs_after is not None:
        ax["adversarial"].imshow(_hwc(adversarial), interpolation="nearest")
        ax["adversarial"].set_title(f"adversarial: {classes[int(probs_after.argmax())]}", fontsize=9)
    im = ax["map"].imshow(a, cmap="magma", interpolation="nearest")
    note = ""
    if marks:
        note = "\nat the pixel: " + ", ".join(f"{a[r, c]:.3f}" for r, c in marks)
        if attention_after is not None:
            after = _map2d(attention_after)
            note += "\nafter: " + ", ".join(f"{after[r, c]:.3f}" for r, c in marks)
    ax["map"].set_title("A(x)" + note, fontsize=8)
    ax["overlay"].imshow(_hwc(image), interpolation="nearest")
    ax["overlay"].imshow(a, cmap="magma", alpha=alpha, interpolation="nearest")
    ax["overlay"].set_title("overlay", fontsize=9)
    for name in top_row:
        ax[name].axis("off")
        _mark(ax[name], marks, "red" if name == "adversarial" else "cyan")
    fig.colorbar(im, ax=ax["map"], shrink=0.55, label="A(x)")  # no taller than the map: clear of its title
    shown = probs.topk(min(top, len(classes))).indices.tolist()
    if probs_after is not None and int(probs_after.argmax()) not in shown:
        shown.append(int(probs_after.argmax()))
    pos = torch.arange(len(shown)).float().numpy()
    ax_p = ax["probs"]
    ax_p.barh(pos - (0.2 if probs_after is not None else 0), probs.detach().cpu()[shown].numpy(), 0.4,
              label="before")
    if probs_after is not None:
        ax_p.barh(pos + 0.2, probs_after.detach().cpu()[shown].numpy(), 0.4, label="after the attack")
        ax_p.legend(fontsize=7, loc="lower right")
    ax_p.set_yticks(pos, [classes[c] for c in shown], fontsize=8)
    ax_p.invert_yaxis()
    ax_p.set_xlim(0, 1)
    ax_p.set_xlabel(f"probability (top {top} classes)", fontsize=8)
    ax_p.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
