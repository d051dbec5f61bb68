"""Figures of the defence labs: Labs 03-04 (the robustness / accuracy trade-off, grouped bars) and Labs 05-07 (APR's
attention maps, the paper beside ours, the time split of a training step)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from matplotlib.figure import Figure
from torch import Tensor

from labkit.plotting.common import COLUMN_IN, LabFigure, _hwc, declutter


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


def budget_gaps(rows: Sequence[dict[str, Any]], title: str = "") -> Figure:
    """Per model (Lab 05b's ``budget_rows``): the suite's one-pixel ASR (dot, 95% CI whiskers) and the range the ASR
    of the suite and the papers' full-budget DE together can take (band: from the images attacked at the full budget
    to the upper estimate for the rest)."""
    fig = LabFigure(figsize=(COLUMN_IN, 0.9 + 0.55 * len(rows)), layout="constrained")
    ax = fig.subplots()
    for i, r in enumerate(rows):
        suite = 100 * r["suite_asr"]
        lo, hi = 100 * r["asr_both_lo"], 100 * r["asr_both_hi"]
        if hi == hi:  # NaN when nothing was attacked at the full budget: no band
            ax.plot([lo, hi], [i, i], color="#ff7f0e", lw=7, alpha=0.45, solid_capstyle="butt",
                    label=f"suite + DE {r['population']} x {r['generations']} (range)" if i == 0 else None)
        ax.errorbar([suite], [i], xerr=[[suite - 100 * r["suite_asr_lo"]], [100 * r["suite_asr_hi"] - suite]],
                    fmt="o", color="#1f77b4", capsize=3, label="suite alone (95% CI)" if i == 0 else None)
    ax.set_yticks(range(len(rows)), [r["defence"] for r in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlim(-2, 102)
    ax.set_xlabel("one-pixel attack success rate (%), correctly classified images")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig
