"""Plotting helpers return figures (never windows) that render to PNG."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from labkit import plotting
from labkit.attacks import minimize
from labkit.data import CLASSES


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

