"""Figure basics every lab uses: the size the book shows a figure at, legible text, image grids, curves, heat maps,
and labels placed so they do not overlap."""

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


# -- labels that do not overlap --------------------------------------------------------------------------------------

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
