"""Figures for the book. Every function returns a ``matplotlib.figure.Figure``.

Figures are built with the object-oriented API (``Figure``, not ``pyplot``):
nothing opens a window, nothing is shown twice in a notebook (the cell's
returned figure is what Jupyter displays), and figures are garbage-collected.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from torch import Tensor


class LabFigure(Figure):
    """A Figure that Jupyter displays as PNG by itself (no ``%matplotlib`` magic or pyplot needed)."""

    def _repr_png_(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        return buf.getvalue()


def _hwc(img: Tensor) -> Any:
    """(C, H, W) uint8 or [0, 1] float -> (H, W, C) numpy array in [0, 1] for imshow."""
    x = img.detach().cpu()
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def image_grid(images: Tensor, titles: Sequence[str] | None = None, ncols: int = 8,
               pixels: Tensor | None = None, size: float = 1.6) -> Figure:
    """A grid of images (N, C, H, W); ``pixels`` (N, k, 2) (row, col) are circled in red."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig = LabFigure(figsize=(size * ncols, size * nrows + 0.3 * bool(titles)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(_hwc(images[i]), interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
        if pixels is not None:
            for r, c in pixels[i].tolist():
                if r >= 0:
                    ax.add_patch(Circle((c, r), 1.6, fill=False, color="red", lw=1.5))
    return fig


def attack_panel(original: Tensor, adversarial: Tensor, pixels: Tensor, probs_before: Tensor,
                 probs_after: Tensor, classes: Sequence[str], title: str = "") -> Figure:
    """Original, adversarial (changed pixels circled) and class probabilities before/after.

    original, adversarial: (C, H, W); pixels: (k, 2) (row, col); probs_*: (num_classes,).
    """
    fig = LabFigure(figsize=(10, 2.8), layout="constrained")
    ax_o, ax_a, ax_p = fig.subplots(1, 3, width_ratios=[1, 1, 2])
    ax_o.imshow(_hwc(original), interpolation="nearest")
    ax_o.set_title(f"original: {classes[int(probs_before.argmax())]}", fontsize=9)
    ax_a.imshow(_hwc(adversarial), interpolation="nearest")
    ax_a.set_title(f"adversarial: {classes[int(probs_after.argmax())]}", fontsize=9)
    for r, c in pixels.tolist():
        ax_a.add_patch(Circle((c, r), 1.6, fill=False, color="red", lw=1.5))
    for ax in (ax_o, ax_a):
        ax.axis("off")
    pos = torch.arange(len(classes)).numpy()
    ax_p.bar(pos - 0.2, probs_before.cpu().numpy(), 0.4, label="before")
    ax_p.bar(pos + 0.2, probs_after.cpu().numpy(), 0.4, label="after")
    ax_p.set_xticks(pos, classes, rotation=45, ha="right", fontsize=8)
    ax_p.set_ylabel("probability")
    ax_p.set_ylim(0, 1)
    ax_p.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def budget_curves(curves: dict[str, tuple[Sequence[int], Sequence[float]]], title: str = "") -> Figure:
    """Success rate against query budget (log x), one line per attack."""
    fig = LabFigure(figsize=(6, 3.6), layout="constrained")
    ax = fig.subplots()
    for name, (budgets, rates) in curves.items():
        ax.plot(budgets, [100 * r for r in rates], marker="o", ms=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("query budget per image")
    ax.set_ylabel("attack success rate (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def training_curves(histories: dict[str, Sequence[dict[str, float]]],
                    metrics: Sequence[str] = ("train_loss", "test_acc")) -> Figure:
    """Per-epoch metrics (one panel per metric, one line per model) from ``TrainedModel.history``."""
    fig = LabFigure(figsize=(4.5 * len(metrics), 3.2), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for name, hist in histories.items():
            ax.plot([h["epoch"] for h in hist], [h[metric] for h in hist], marker="o", ms=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def heatmap(matrix: Tensor, row_labels: Sequence[str], col_labels: Sequence[str], title: str = "",
            xlabel: str = "", ylabel: str = "", fmt: str = "{:.0f}", cmap: str = "viridis") -> Figure:
    """An annotated heat map of a (rows, cols) matrix (NaN cells left blank)."""
    m = matrix.detach().cpu().float()
    fig = LabFigure(figsize=(0.6 * len(col_labels) + 2, 0.5 * len(row_labels) + 1.5), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(m.numpy(), cmap=cmap)
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    for (i, j), v in zip(((i, j) for i in range(m.shape[0]) for j in range(m.shape[1])), m.flatten().tolist()):
        if v == v:  # not NaN
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7,
                    color="white" if v < (m.nan_to_num(0).max() / 2) else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def histograms(values: dict[str, Tensor], xlabel: str, bins: int = 20,
               range_: tuple[float, float] = (0.0, 1.0), title: str = "") -> Figure:
    """Overlaid histograms (as fractions of each set), one per named 1-D tensor."""
    fig = LabFigure(figsize=(6, 3.4), layout="constrained")
    ax = fig.subplots()
    for name, v in values.items():
        v = v.detach().cpu().float()
        if len(v):
            ax.hist(v.numpy(), bins=bins, range=range_, alpha=0.55, label=f"{name} (n={len(v)})",
                    weights=torch.full((len(v),), 1 / len(v)).numpy())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "nothing to show (no successful attack)", ha="center", transform=ax.transAxes)
    if title:
        ax.set_title(title)
    return fig


def de_generations(populations: Tensor, fn: Callable[[Tensor], Tensor], lo: Sequence[float],
                   hi: Sequence[float], generations: Sequence[int] = (0, 2, 5, 10, 30)) -> Figure:
    """A 2-D DE run: contours of ``fn`` with the population at selected generations.

    populations: (G+1, P, 2) as recorded by ``labkit.attacks.minimize``.
    """
    gens = [g for g in generations if g < len(populations)]
    xs = torch.linspace(lo[0], hi[0], 120)
    ys = torch.linspace(lo[1], hi[1], 120)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    z = fn(torch.stack([gx.flatten(), gy.flatten()], 1)).view(gx.shape)
    fig = LabFigure(figsize=(2.6 * len(gens), 2.8), layout="constrained")
    axes = fig.subplots(1, len(gens), squeeze=False)[0]
    for ax, g in zip(axes, gens):
        ax.contourf(gx.numpy(), gy.numpy(), z.numpy(), levels=20, cmap="Greys")
        p = populations[g]
        ax.scatter(p[:, 0].numpy(), p[:, 1].numpy(), s=10, c="tab:red")
        ax.set_title(f"generation {g}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


# -- Adaptive Pixel Resilience (Labs 05-07) ---------------------------------------------------------------------------

def attention_maps(images: Tensor, maps: Tensor, titles: Sequence[str] | None = None, size: float = 1.6) -> Figure:
    """Images (N, C, H, W) above their attention maps (N, 1 or C, H, W; channel maps averaged).

    All maps share one colour scale (its range printed on the colour bar), so a map that looks uniform is
    uniform, and the map of one image can be compared with another's.
    """
    n = len(images)
    m = maps.detach().cpu().float().mean(1)
    lo, hi = m.min().item(), m.max().item()
    fig = LabFigure(figsize=(size * n + 0.8, 2 * size + 0.3 * bool(titles)), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    im = None
    for i in range(n):
        axes[0, i].imshow(_hwc(images[i]), interpolation="nearest")
        im = axes[1, i].imshow(m[i].numpy(), cmap="magma", vmin=lo, vmax=hi if hi > lo else lo + 1e-6,
                               interpolation="nearest")
        if titles is not None:
            axes[0, i].set_title(titles[i], fontsize=8)
        for ax in axes[:, i]:
            ax.axis("off")
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.8, label="A(x)")
    return fig


def paper_comparison(labels: Sequence[str], ours: Sequence[float], lo: Sequence[float], hi: Sequence[float],
                     paper: Sequence[float | None], ylabel: str, title: str = "") -> Figure:
    """Our values (bars with 95% CI whiskers) beside the paper's (hatched bars; missing ones left out)."""
    import math

    fig = LabFigure(figsize=(max(4.5, 0.9 * len(labels) + 1.5), 3.4), layout="constrained")
    ax = fig.subplots()
    pos = torch.arange(len(labels)).float().numpy()
    val = [float(v) for v in ours]
    err = [[max(0.0, v - float(a)) if a == a else 0.0 for v, a in zip(val, lo)],
           [max(0.0, float(b) - v) if b == b else 0.0 for v, b in zip(val, hi)]]
    ax.bar(pos - 0.2, val, 0.4, yerr=err, capsize=3, label="ours (95% CI)")
    have = [i for i, p in enumerate(paper) if p is not None and not math.isnan(p)]
    ax.bar(pos[have] + 0.2, [float(paper[i]) for i in have], 0.4, hatch="//", fill=False, label="paper")
    ax.set_xticks(pos, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def time_split(parts: dict[str, float], total: float, unit: str = "ms per training step", title: str = "") -> Figure:
    """One horizontal stacked bar: how ``total`` (e.g. APR's extra training time) splits into ``parts``."""
    fig = LabFigure(figsize=(7, 1.9), layout="constrained")
    ax = fig.subplots()
    left = 0.0
    for name, value in parts.items():
        width = max(0.0, float(value))  # a slightly negative difference of medians is drawn as nothing
        ax.barh(0, width, left=left, label=f"{name}: {value:.0f}")
        left += width
    ax.axvline(total, color="black", lw=1, ls="--", label=f"measured total: {total:.0f}")
    ax.set_yticks([])
    ax.set_xlabel(unit)
    ax.legend(fontsize=7, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.45))
    if title:
        ax.set_title(title, fontsize=10)
    return fig
