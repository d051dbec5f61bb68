"""Figures of Lab 12: bound widths per layer, verdicts per pixel position, the bracket on the true one-pixel ASR, and
clean accuracy against proven robustness."""

from __future__ import annotations

from typing import Any, Sequence

from matplotlib.figure import Figure
from torch import Tensor

from labkit.plotting.common import COLUMN_IN, LabFigure, _hwc


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
    fig.legend(fontsize=8, loc="outside lower center", ncol=2)  # below the axes: inside, it covers a bar
    return fig


def proof_tradeoff(rows: Sequence[dict[str, Any]], title: str = "") -> Figure:
    """Clean accuracy against the share of test images proven one-pixel robust, one point per model with its Wilson
    band, labelled with its name (``labs.verification.curve_row`` rows; Lab 12's trade-off over kappa)."""
    fig = LabFigure(figsize=(COLUMN_IN, 3.4), layout="constrained")
    ax = fig.subplots()
    # Labels alternate above and below their points, left to right: neighbours at one proven share stay legible.
    for i, r in enumerate(sorted(rows, key=lambda r: r["clean_acc"])):
        x, y = 100 * r["clean_acc"], 100 * r["proven_robust_acc"]
        ax.errorbar([x], [y], yerr=[[y - 100 * r["proven_lo"]], [100 * r["proven_hi"] - y]], fmt="o", capsize=3,
                    color="#2ca02c" if r.get("kappa") is not None else "#7f7f7f")
        ax.annotate(r["model"], (x, y), textcoords="offset points", xytext=(5, 5 if i % 2 == 0 else -12), fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_ylim(-2, 102)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("test images proven one-pixel robust (%)")
    ax.set_title(title, fontsize=10)
    return fig
