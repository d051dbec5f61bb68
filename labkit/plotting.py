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

from labkit.stats import wilson


#: How the book shows a figure: Jupyter's PNG at PNG_DPI, scaled down by the browser to the text column when wider.
#: COLUMN_PX is the column's width at a 1280-px window (sphinx-book-theme); at 800 px it is about the same.
PNG_DPI = 110
COLUMN_PX = 676
COLUMN_IN = COLUMN_PX / PNG_DPI  # a figure this wide (inches) is shown at its own size
#: The smallest text a reader should have to read, in CSS points at the size shown (1 pt = 1/72 in = 4/3 px).
MIN_DISPLAY_PT = 8.0


def display_scale(fig: Figure, dpi: float = PNG_DPI, column_px: float = COLUMN_PX) -> float:
    """How much the book shrinks ``fig`` (1 = shown at its own size): the column over the PNG's width."""
    return min(1.0, column_px / (fig.get_figwidth() * dpi))


def displayed_pt(fig: Figure, fontsize: float, dpi: float = PNG_DPI, column_px: float = COLUMN_PX) -> float:
    """The size, in CSS points at the size shown in the book, of text set at ``fontsize`` points in ``fig``.

    A point of the figure is ``dpi / 72`` PNG pixels, scaled by ``display_scale``; a CSS point is 4/3 px.
    """
    return fontsize * dpi / 72 * display_scale(fig, dpi, column_px) * 0.75


def texts(fig: Figure) -> list[Any]:
    """Every visible, non-empty text of ``fig`` (titles, labels, tick labels, legends, annotations)."""
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def legible(fig: Figure, dpi: float = PNG_DPI, column_px: float = COLUMN_PX,
            min_pt: float = MIN_DISPLAY_PT) -> Figure:
    """Raise every text of ``fig`` that the book would show under ``min_pt`` points to ``min_pt`` (in place).

    The layout (``constrained``) makes room for the larger text when the figure is drawn. Returns ``fig``.
    """
    need = min_pt / displayed_pt(fig, 1.0, dpi, column_px)  # the smallest font size, in figure points
    for t in texts(fig):
        if t.get_fontsize() < need - 1e-6:
            t.set_fontsize(need)
    return fig


class LabFigure(Figure):
    """A Figure that Jupyter displays as PNG by itself (no ``%matplotlib`` magic or pyplot needed), every text
    legible at the size the book shows it (``legible``)."""

    def _repr_png_(self) -> bytes:
        import io

        legible(self)
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=PNG_DPI, bbox_inches="tight")
        return buf.getvalue()


def _hwc(img: Tensor) -> Any:
    """(C, H, W) uint8 or [0, 1] float -> (H, W, 3) numpy array in [0, 1] for imshow (grey images as grey RGB)."""
    x = img.detach().cpu()
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    x = x.expand(3, -1, -1) if x.shape[0] == 1 else x  # imshow takes (H, W) or (H, W, 3|4), never (H, W, 1)
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


#: The narrowest cell ``image_grid`` draws when it has to fit the column (inches).
MIN_CELL_IN = 1.2


def image_grid(images: Tensor, titles: Sequence[str] | None = None, ncols: int = 8,
               pixels: Tensor | None = None, size: float = 1.6) -> Figure:
    """A grid of images (N, C, H, W); ``pixels`` (N, k, 2) (row, col) are circled in red.

    At most the column's width: wider grids get fewer columns (each at least ``MIN_CELL_IN`` wide, so a title
    such as "automobile→airplane" fits above its image) and smaller cells, never text too small to read.
    """
    n = len(images)
    ncols = max(1, min(ncols, n))
    if ncols * size > COLUMN_IN:
        ncols = max(1, min(ncols, int(COLUMN_IN // MIN_CELL_IN)))
        size = min(size, COLUMN_IN / ncols)
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
    fig = LabFigure(figsize=(7.0, 2.8), layout="constrained")
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
    return _rate_axes(fig, ax, "query budget per image", "attack success rate (%)", title)


def _rate_axes(fig: Figure, ax: Any, xlabel: str, ylabel: str, title: str) -> Figure:
    """Label a 0-100% line plot, grid and legend it, and return its figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def quality_curves(qualities: Sequence[int], curves: dict[str, Tensor], ylabel: str = "misclassified (%)",
                   title: str = "", marks: dict[str, dict[int, float]] | None = None) -> Figure:
    """Rates against JPEG quality (Lab 09), one line per curve with its Wilson 95% band.

    curves: name -> (len(qualities), N) 0/1 outcomes (e.g. misclassified) per quality and image; marks: name ->
    {quality: value in %}, points drawn as crosses (the paper's numbers).
    """
    fig = LabFigure(figsize=(6, 3.6), layout="constrained")
    ax = fig.subplots()
    for name, outcomes in curves.items():
        if outcomes.shape[0] != len(qualities):
            raise ValueError(f"{name}: {outcomes.shape[0]} rows for {len(qualities)} qualities")
        n = outcomes.shape[1]
        k = outcomes.long().sum(1).tolist()
        bands = [wilson(int(v), n) for v in k]
        line, = ax.plot(qualities, [100 * v / max(n, 1) for v in k], marker="o", ms=3, label=f"{name} (n = {n})")
        ax.fill_between(qualities, [100 * lo for lo, _ in bands], [100 * hi for _, hi in bands],
                        color=line.get_color(), alpha=0.15, linewidth=0)
    for name, points in (marks or {}).items():
        ax.plot(list(points), list(points.values()), "x", ms=8, mew=2, label=name)
    return _rate_axes(fig, ax, "JPEG quality", ylabel, title)


def training_curves(histories: dict[str, Sequence[dict[str, float]]],
                    metrics: Sequence[str] = ("train_loss", "test_acc")) -> Figure:
    """Per-epoch metrics (one panel per metric, one line per model) from ``TrainedModel.history``."""
    fig = LabFigure(figsize=(min(4.5 * len(metrics), COLUMN_IN + 0.6), 3.2), layout="constrained")
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
            xlabel: str = "", ylabel: str = "", fmt: str = "{:.0f}", cmap: str = "viridis",
            cbar_label: str | None = None) -> Figure:
    """An annotated heat map of a (rows, cols) matrix (NaN cells left blank).

    cbar_label: what the colours measure, on the colour bar (default: the title, which names it).
    """
    import textwrap

    m = matrix.detach().cpu().float()
    fig = LabFigure(figsize=(0.5 * len(col_labels) + 1.8, 0.45 * len(row_labels) + 1.5), layout="constrained")
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
    label = title if cbar_label is None else cbar_label
    fig.colorbar(im, ax=ax, shrink=0.8, label="\n".join(textwrap.wrap(label, 40)))
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
    panel = min(2.6, (COLUMN_IN + 0.4) / max(1, len(gens)))  # one row, at most about the column's width
    fig = LabFigure(figsize=(panel * len(gens), panel + 0.4), layout="constrained")
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
    size = min(size, (COLUMN_IN - 1.0) / max(1, n))  # the strip fits the column: shown at its own size
    fig = LabFigure(figsize=(size * n + 1.0, 2 * size + 0.3 * bool(titles)), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    im = None
    for i in range(n):
        axes[0, i].imshow(_hwc(images[i]), interpolation="nearest")
        im = axes[1, i].imshow(m[i].numpy(), cmap="magma", vmin=lo, vmax=hi if hi > lo else lo + 1e-6,
                               interpolation="nearest")
        if titles is not None:
            axes[0, i].set_title(titles[i], fontsize=8)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
    axes[0, 0].set_ylabel("image", fontsize=8)
    axes[1, 0].set_ylabel("A(x)", fontsize=8)
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.9, label="A(x)")
    return fig


def _finish_bars(ax: Any, pos: Any, labels: Sequence[str], ylabel: str, title: str) -> None:
    """Category labels under bar groups at ``pos``, y label, grid, legend and title: shared by the bar charts."""
    ax.set_xticks(pos, list(labels), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)


def paper_comparison(labels: Sequence[str], ours: Sequence[float], lo: Sequence[float], hi: Sequence[float],
                     paper: Sequence[float | None], ylabel: str, title: str = "") -> Figure:
    """Our values (bars with 95% CI whiskers) beside the paper's (hatched bars; missing ones left out)."""
    import math

    fig = LabFigure(figsize=(min(max(4.5, 0.9 * len(labels) + 1.5), COLUMN_IN + 1.0), 3.4), layout="constrained")
    ax = fig.subplots()
    pos = torch.arange(len(labels)).float().numpy()
    val = [float(v) for v in ours]
    err = [[max(0.0, v - float(a)) if a == a else 0.0 for v, a in zip(val, lo)],
           [max(0.0, float(b) - v) if b == b else 0.0 for v, b in zip(val, hi)]]
    ax.bar(pos - 0.2, val, 0.4, yerr=err, capsize=3, label="ours (95% CI)")
    have = [i for i, p in enumerate(paper) if p is not None and not math.isnan(p)]
    ax.bar(pos[have] + 0.2, [float(paper[i]) for i in have], 0.4, hatch="//", fill=False, label="paper")
    _finish_bars(ax, pos, labels, ylabel, title)
    return fig


def time_split(parts: dict[str, float], total: float, unit: str = "ms per training step", title: str = "") -> Figure:
    """One horizontal stacked bar: how ``total`` (e.g. APR's extra training time) splits into ``parts``."""
    fig = LabFigure(figsize=(6.4, 2.0), layout="constrained")
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


# -- Defences (Labs 03-04) -------------------------------------------------------------------------------------------

def tradeoff(rows: Any, reference: str = "No defence", series: str = "attack", title: str = "") -> Figure:
    """Clean-accuracy cost against robustness gain of each defence, relative to ``reference``.

    ``rows``: records (or a DataFrame) with ``defence``, ``clean_acc`` and ``asr`` in percent (e.g. from
    ``labkit.labs.apr_tables.seed_table``), a ``series`` column (one marker per value, e.g. the attack) and,
    optionally, ``model`` (each compared with its own reference). x = reference clean accuracy - defence's,
    y = reference ASR - defence's, in percentage points: up is more robust, right costs more accuracy.
    """
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    ref = {(r.get("model"), r[series]): r for r in records if r["defence"] == reference}
    fig = LabFigure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    labels: list[Any] = []
    for i, name in enumerate(dict.fromkeys(r[series] for r in records)):
        pts = [(r, ref[(r.get("model"), name)]) for r in records
               if r[series] == name and r["defence"] != reference and (r.get("model"), name) in ref]
        x = [float(b["clean_acc"] - r["clean_acc"]) for r, b in pts]
        y = [float(b["asr"] - r["asr"]) for r, b in pts]
        ax.scatter(x, y, marker="os^Dv"[i % 5], label=str(name), alpha=0.8)
        for (r, _), xi, yi in zip(pts, x, y):
            labels.append(ax.annotate(str(r["defence"]), (xi, yi), fontsize=8, xytext=(4, 2),
                                      textcoords="offset points", annotation_clip=False))
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"clean-accuracy cost vs {reference} (percentage points)")
    ax.set_ylabel(f"ASR reduction vs {reference} (percentage points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    ax.margins(x=0.12, y=0.08)  # room for the labels of the outermost points
    declutter(fig, labels)
    return fig


def _overlap(a: Any, b: Any, pad: float = 1.0) -> bool:
    """Whether two display-space boxes (matplotlib Bbox) overlap, ``pad`` pixels included."""
    return a.x0 < b.x1 + pad and b.x0 < a.x1 + pad and a.y0 < b.y1 + pad and b.y0 < a.y1 + pad


def declutter(fig: Figure, labels: Sequence[Any], step_pt: float = 9.0, rings: int = 8, merge_px: float = 14.0
              ) -> list[Any]:
    """Move point labels (``ax.annotate`` texts in offset points) so that no two overlap, none covers the legend
    and none leaves its axes: each, in turn, tries places around its point, nearest first, and keeps the first
    free one; a label moved off its point's side gets a thin leader line.

    A label whose text repeats one already placed within ``merge_px`` pixels of its point (the same defence
    under attacks that score alike) is hidden: one label names the cluster. Returns the labels left visible.
    Deterministic: the result depends only on the labels' order.
    """
    if not labels:
        return []
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()  # the renderer savefig uses for PNGs: the same text extents
    fig.draw_without_rendering()  # lays the figure out, so that the axes' frames are final
    placed: list[Any] = [ax.get_legend().get_window_extent(renderer) for ax in fig.axes if ax.get_legend()]
    anchors: list[tuple[str, Any]] = []
    candidates = [(4.0, 2.0), (-4.0, 2.0), (4.0, -10.0), (-4.0, -10.0)]
    for k in range(1, rings + 1):
        candidates += [(4.0, 2.0 + k * step_pt), (-4.0, 2.0 + k * step_pt),
                       (4.0, -10.0 - k * step_pt), (-4.0, -10.0 - k * step_pt)]
    visible = []
    for label in labels:
        point = label.axes.transData.transform(label.xy)
        if any(text == label.get_text() and ((point - p) ** 2).sum() ** 0.5 < merge_px for text, p in anchors):
            label.set_visible(False)
            continue
        anchors.append((label.get_text(), point))
        frame = label.axes.get_window_extent(renderer)
        for n, (dx, dy) in enumerate(candidates):
            label.set_horizontalalignment("left" if dx > 0 else "right")
            label.xyann = (dx, dy)
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(_overlap(box, other) for other in placed):
                break
        else:  # nowhere free: the first place
            n, (dx, dy) = 0, candidates[0]
            label.set_horizontalalignment("left")
            label.xyann = (dx, dy)
            box = label.get_window_extent(renderer)
        if n >= 4:  # off its point's side: a leader line says which point it names. An annotation gets its arrow
            # only when made with one (matplotlib sets the arrow's anchor in __init__), so the label is made anew.
            ax = label.axes
            arrow = ax.annotate(label.get_text(), label.xy, xytext=label.xyann, textcoords=label.anncoords,
                                ha=label.get_horizontalalignment(), va=label.get_verticalalignment(),
                                fontsize=label.get_fontsize(), color=label.get_color(),
                                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "grey", "shrinkA": 0, "shrinkB": 2})
            label.remove()
            label = arrow
        placed.append(box)
        visible.append(label)
    return visible


def grouped_bars(categories: Sequence[str], series: dict[str, Sequence[float]], ylabel: str,
                 title: str = "", reference: tuple[str, float] | None = None) -> Figure:
    """One group of bars per category, one bar per series (e.g. replayed vs re-run attack success).

    ``reference``: (label, value) drawn as a dashed horizontal line (e.g. the undefended model's ASR).
    """
    fig = LabFigure(figsize=(min(max(5.0, 0.7 * len(categories) + 1.5), COLUMN_IN + 1.0), 3.4), layout="constrained")
    ax = fig.subplots()
    pos = torch.arange(len(categories)).float()
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        ax.bar((pos + (i - (len(series) - 1) / 2) * width).numpy(), [float(v) for v in values], width, label=name)
    if reference is not None:
        ax.axhline(float(reference[1]), color="black", lw=1, ls="--", label=reference[0])
    _finish_bars(ax, pos.numpy(), categories, ylabel, title)
    return fig


# -- Lab 12: proofs --------------------------------------------------------------------------------------------------

def bound_widths(widths: dict[str, Sequence[float]], layer_names: Sequence[str], title: str = "") -> Figure:
    """Mean width of each method's bounds per activation, against the true range ("true"), log scale (Lab 12).

    widths: method -> one width per activation (``labs.verification.layer_widths``); layer_names: the layer that
    produced each activation after the input ("input" first)."""
    fig = LabFigure(figsize=(COLUMN_IN, 3.4), layout="constrained")
    ax = fig.subplots()
    steps = range(len(layer_names))
    for name, w in widths.items():
        style = dict(color="black", lw=2.5, ls="--") if name == "true" else dict(marker="o", ms=3)
        ax.plot(steps[:len(w)], [max(v, 1e-12) for v in w], label="sampled range (true, at least)"
                if name == "true" else name, **style)
    ax.set_yscale("log")
    ax.set_xticks(list(steps), list(layer_names), rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("mean width over the window")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def position_maps(images: Tensor, status: Tensor, titles: Sequence[str] | None = None, size: float = 1.7) -> Figure:
    """Each image (N, C, H, W) beside its per-position verdicts (N, H, W): green proven, red vulnerable, grey
    unknown (``labkit.certify``'s ROBUST = 1, VULNERABLE = 0, UNKNOWN = -1)."""
    from matplotlib.colors import ListedColormap

    n = len(images)
    fig = LabFigure(figsize=(min(2 * size * min(n, 4), COLUMN_IN), size * 1.15 * -(-n // 4)), layout="constrained")
    axes = fig.subplots(-(-n // 4), 2 * min(n, 4), squeeze=False)
    cmap = ListedColormap(["#bbbbbb", "#d62728", "#2ca02c"])  # unknown, vulnerable, robust
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        a, b = axes[i // 4, 2 * (i % 4)], axes[i // 4, 2 * (i % 4) + 1]
        a.imshow(_hwc(images[i]))
        b.imshow(status[i].float().numpy() + 1, cmap=cmap, vmin=0, vmax=2, interpolation="nearest")
        if titles:
            a.set_title(titles[i], fontsize=8)
    return fig


def brackets(rows: Sequence[dict[str, Any]], title: str = "") -> Figure:
    """Per model the bracket on the true one-pixel ASR: from the attacks' rate (bracket_lo, with its Wilson band)
    to 1 - the proven share (bracket_hi, with its band); the true rate lies between (Lab 12)."""
    fig = LabFigure(figsize=(COLUMN_IN, 0.7 + 0.55 * len(rows)), layout="constrained")
    ax = fig.subplots()
    for i, r in enumerate(rows):
        lo, hi = 100 * r["bracket_lo"], 100 * r["bracket_hi"]
        ax.plot([lo, hi], [i, i], color="#1f77b4", lw=6, alpha=0.35, solid_capstyle="butt")
        ax.errorbar([lo], [i], xerr=[[lo - 100 * r["asr_lo"]], [100 * r["asr_hi"] - lo]], fmt="o", color="#d62728",
                    capsize=3, label="attacked (suite + DE 400 x 100)" if i == 0 else None)
        ax.errorbar([hi], [i], xerr=[[hi - 100 * (1 - r["proven_hi"])], [100 * (1 - r["proven_lo"]) - hi]], fmt="s",
                    color="#2ca02c", capsize=3, label="1 - proven share" if i == 0 else None)
    ax.set_yticks(range(len(rows)), [r["model"] for r in rows])
    ax.set_xlim(-2, 102)
    ax.set_xlabel("one-pixel attack success rate (%), correctly classified images")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig
