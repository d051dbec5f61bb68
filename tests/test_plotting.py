"""Plotting helpers return figures (never windows) that render to PNG."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from labkit import plotting
from labkit.attacks import minimize
from labkit.data import CLASSES
from labkit.plotting.common import _overlap


def rendered(fig: Figure) -> bool:
    return isinstance(fig, Figure) and fig._repr_png_()[:4] == b"\x89PNG"


def test_image_grid_and_attack_panel():
    imgs = torch.rand(5, 3, 8, 8)
    assert rendered(plotting.image_grid(imgs, titles=list("abcde"), ncols=3, pixels=torch.ones(5, 1, 2).long()))
    fig = plotting.attack_panel(imgs[0], imgs[1], torch.tensor([[2, 3]]), torch.softmax(torch.rand(10), 0),
                                torch.softmax(torch.rand(10), 0), CLASSES, title="t")
    assert rendered(fig) and len(fig.axes) == 3


def test_curves_and_heatmap():
    assert rendered(plotting.budget_curves({"DE": ([10, 100], [0.1, 0.5])}))
    fig = plotting.quality_curves((10, 20), {"jpeg": torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]])},
                                  marks={"paper": {10: 40.0}})
    line = fig.axes[0].lines[0]
    assert rendered(fig) and list(line.get_ydata()) == [50.0, 25.0] and "n = 4" in line.get_label()
    with pytest.raises(ValueError, match="2 qualities"):
        plotting.quality_curves((10, 20), {"x": torch.zeros(3, 4)})
    hist = [{"epoch": 1, "train_loss": 2.0, "test_acc": 0.3}, {"epoch": 2, "train_loss": 1.0, "test_acc": 0.5}]
    assert rendered(plotting.training_curves({"m": hist}))
    m = torch.rand(3, 3)
    m[0, 0] = float("nan")
    assert rendered(plotting.heatmap(m, list("abc"), list("xyz")))


def test_de_generations():
    fn = lambda p: (p ** 2).sum(1)  # noqa: E731
    run = minimize(fn, [-1, -1], [1, 1], population=8, generations=5)
    fig = plotting.de_generations(run.populations, fn, [-1, -1], [1, 1], generations=(0, 5, 99))
    assert rendered(fig) and len(fig.axes) == 2  # generation 99 does not exist and is skipped



def smallest_shown_pt(fig: Figure) -> float:
    """The smallest text of a figure as the book shows it (CSS points), after Jupyter's rendering."""
    fig._repr_png_()
    return min(plotting.displayed_pt(fig, t.get_fontsize()) for t in plotting.texts(fig))


def sample_figures() -> dict[str, Figure]:
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(16, 3, 8, 8, generator=g)
    p = torch.softmax(torch.rand(10, generator=g), 0)
    maps = torch.rand(8, 1, 8, 8, generator=g)
    titles = ["automobile→airplane"] * 16
    return {
        "image_grid (16 titled images in 8 columns)": plotting.image_grid(imgs, titles=titles, ncols=8),
        "attack_panel": plotting.attack_panel(imgs[0], imgs[1], torch.tensor([[2, 3]]), p, p, CLASSES, title="t"),
        "heatmap (10 x 10)": plotting.heatmap(torch.rand(10, 10, generator=g) * 100, CLASSES, CLASSES, title="x (%)"),
        "attention_maps (8 images)": plotting.attention_maps(imgs[:8], maps),
        "attention_attack": plotting.attention_attack(imgs[0], imgs[1], maps[0], maps[1], torch.tensor([[1, 1]])),
        "attention_panel (attacked)": plotting.attention_panel(imgs[0], maps[0], p, CLASSES, adversarial=imgs[1],
                                                               pixels=torch.tensor([[1, 1]]), probs_after=p,
                                                               attention_after=maps[1], title="a\nb"),
        "time_split": plotting.time_split({"gate": 3.0, "regulariser": 2.0}, 5.5),
        "training_curves": plotting.training_curves({"m": [{"epoch": 1, "train_loss": 1.0, "test_acc": 0.5}]}),
    }


def test_no_text_under_8_pt_at_the_size_the_book_shows_it():
    small = {name: round(pt, 2) for name, fig in sample_figures().items()
             if (pt := smallest_shown_pt(fig)) < plotting.MIN_DISPLAY_PT - 1e-6}
    assert not small, f"figures with text under {plotting.MIN_DISPLAY_PT} pt as shown: {small}"


def test_legible_raises_only_the_small_text():
    fig = plotting.LabFigure(figsize=(2 * plotting.COLUMN_IN, 2))  # shown at half size
    ax = fig.subplots()
    tiny, big = ax.set_title("tiny", fontsize=6), ax.set_xlabel("big", fontsize=40)
    assert plotting.display_scale(fig) == pytest.approx(0.5)
    plotting.legible(fig)
    assert plotting.displayed_pt(fig, tiny.get_fontsize()) == pytest.approx(plotting.MIN_DISPLAY_PT)
    assert big.get_fontsize() == 40


def test_wide_grids_fit_the_column_and_colourbars_are_labelled():
    figs = sample_figures()
    grid = figs["image_grid (16 titled images in 8 columns)"]
    assert grid.get_figwidth() <= plotting.COLUMN_IN + 1e-6
    for name in ("heatmap (10 x 10)", "attention_maps (8 images)", "attention_attack", "attention_panel (attacked)"):
        bars = [ax for ax in figs[name].axes if ax.get_label() == "<colorbar>"]
        assert bars and all(ax.get_ylabel() or ax.get_xlabel() for ax in bars), f"{name}: unlabelled colour bar"


def test_tradeoff_labels_do_not_overlap_and_stay_in_the_axes():
    rows = []
    for attack in ("DE k=1", "Sparse-RS", "worst case"):
        rows.append({"defence": "No defence", "attack": attack, "clean_acc": 86.0, "asr": 40.0})
        for i, (name, cost, gain) in enumerate([("DD (T=20)", 1.0, 5.0), ("DD (T=50)", 1.1, 5.2),
                                                 ("AT (PGD, eps=8)", 10.0, 30.0), ("Mask", 0.9, 4.8)]):
            rows.append({"defence": name, "attack": attack, "clean_acc": 86.0 - cost, "asr": 40.0 - gain})
    fig = plotting.tradeoff(rows, title="t")
    fig._repr_png_()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    shown = [t for t in ax.texts if t.get_visible()]
    # Three attacks scoring alike put each defence's three points together: one label per defence.
    assert sorted(t.get_text() for t in shown) == ["AT (PGD, eps=8)", "DD (T=20)", "DD (T=50)", "Mask"]
    boxes = [t.get_window_extent(renderer) for t in shown]
    frame = ax.get_window_extent(renderer)
    for i, a in enumerate(boxes):
        assert frame.x0 <= a.x0 and a.x1 <= frame.x1 and frame.y0 <= a.y0 and a.y1 <= frame.y1, shown[i].get_text()
        for j, b in enumerate(boxes[:i]):
            assert not _overlap(a, b, pad=0), f"{shown[i].get_text()!r} overlaps {shown[j].get_text()!r}"


def test_declutter_draws_leader_lines_for_labels_moved_off_their_point() -> None:
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.scatter([0.5], [0.5])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    labels = [ax.annotate(f"defence {k}", (0.5, 0.5), xytext=(4, 4), textcoords="offset points") for k in range(12)]
    visible = plotting.declutter(fig, labels)
    assert len(visible) == 12 and any(v.arrow_patch is not None for v in visible)  # some had to leave their side
    fig.savefig(io.BytesIO(), format="png")  # the leader lines draw (a label given an arrow after creation did not)
    plt.close(fig)


def test_lab12_figures_render():
    fig = plotting.bound_widths({"interval": [1.0, 10.0, 1e3], "backward": [1.0, 2.0, 5.0], "true": [1.0, 1.5, 2.0]},
                                ["input", "1 Conv2d", "2 ReLU"], title="t")
    assert rendered(fig) and fig.axes[0].get_yscale() == "log" and len(fig.axes[0].lines) == 3
    status = torch.tensor([[[1, 0], [-1, 1]], [[1, 1], [1, 1]]], dtype=torch.int8)
    fig = plotting.position_maps(torch.rand(2, 3, 2, 2), status, titles=["vulnerable", "proven robust"])
    assert rendered(fig) and sum(ax.has_data() for ax in fig.axes) == 4
    row = {"model": "m", "bracket_lo": 0.2, "bracket_hi": 0.6, "asr_lo": 0.1, "asr_hi": 0.3, "proven_lo": 0.3,
           "proven_hi": 0.5}
    fig = plotting.brackets([row, {**row, "model": "n"}])
    assert rendered(fig) and [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["m", "n"]
    points = [{"model": "natural", "kappa": None, "clean_acc": 0.83, "proven_robust_acc": 0.0, "proven_lo": 0.0,
               "proven_hi": 0.1},
              {"model": "median + IBP", "kappa": 0.5, "clean_acc": 0.4, "proven_robust_acc": 0.2, "proven_lo": 0.1,
               "proven_hi": 0.35}]
    fig = plotting.proof_tradeoff(points, title="t")
    assert rendered(fig) and sorted(t.get_text() for t in fig.axes[0].texts) == ["median + IBP", "natural"]
    assert fig.axes[0].get_xlim() == (0, 100)  # clean accuracy in %, the whole range: the trade-off is to scale
