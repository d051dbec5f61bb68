"""Tests of labkit.attention (Lab 08) and its figures and explorer: synthetic models and data, no network."""

from __future__ import annotations


import pytest
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from labkit import attention, plotting
from labkit.apr import AttentionGate
from labkit.attacks import AttackResult
from labkit.data import CLASSES
from labkit.evaluate import probabilities
from labkit.labs import attention_maps


def rendered(fig: Figure) -> bool:
    return isinstance(fig, Figure) and fig._repr_png_()[:4] == b"\x89PNG"


class MeanColour(nn.Module):
    """Ten logits from the mean colour of the (gated) image: cheap, deterministic, any image size."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 10)
        torch.manual_seed(0)
        nn.init.normal_(self.head.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(x.mean((2, 3)))


def brightness_gated(kernel_size: int = 1, mode: str = "pixel") -> nn.Module:
    """A gated model whose attention rises with a pixel's brightness: A = sigmoid(5 * (r + g + b) - 7.5)."""
    gate = AttentionGate(mode, kernel_size)
    with torch.no_grad():
        gate.conv.weight.zero_()
        centre = kernel_size // 2
        if mode == "pixel":
            gate.conv.weight[0, :, centre, centre] = 5.0
        else:
            for c in range(3):
                gate.conv.weight[c, :, centre, centre] = 5.0
        gate.conv.bias.fill_(-7.5)
    return nn.Sequential(gate, MeanColour()).eval()


def images(n: int = 6, size: int = 8, seed: int = 0) -> Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def fake_result(x: Tensor, pixels: Tensor, success: Tensor, colour: float = 1.0) -> AttackResult:
    """An AttackResult that wrote ``colour`` at ``pixels`` (N, 2) of ``x`` (what an attack would return)."""
    n = len(x)
    adv = x.clone()
    adv[torch.arange(n), :, pixels[:, 0], pixels[:, 1]] = colour
    zeros = torch.zeros(n, dtype=torch.long)
    return AttackResult(adv_images=adv, success=success.bool(), queries=torch.ones(n, dtype=torch.long),
                        pixels=pixels[:, None].long(), colours=torch.full((n, 1, 3), colour), labels=zeros,
                        targets=None, adv_pred=zeros, adv_prob=torch.ones(n), true_prob=torch.ones(n))


# -- maps and values at pixels --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["pixel", "channel"])
def test_attention_of_shape_and_range(mode: str) -> None:
    x = images(5, 8)
    a = attention.attention_of(brightness_gated(3, mode), x, batch_size=2)  # several batches
    assert a.shape == (5, 8, 8) and a.dtype == torch.float32
    assert ((a > 0) & (a < 1)).all()
    bright = torch.ones(1, 3, 8, 8)
    assert attention.attention_of(brightness_gated(), bright).min() > 0.99  # A rises with brightness


def test_attention_of_rejects_bad_inputs() -> None:
    model = brightness_gated()
    with pytest.raises(ValueError, match="no AttentionGate"):
        attention.attention_of(MeanColour(), images())
    with pytest.raises(TypeError, match="float"):
        attention.attention_of(model, (images() * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attention.attention_of(model, images() * 2)
    with pytest.raises(ValueError, match="RGB"):
        attention.attention_of(model, torch.rand(2, 1, 8, 8))


def test_values_and_percentiles_at_pixels() -> None:
    maps = torch.arange(2 * 16).float().view(2, 4, 4)
    pix = torch.tensor([[0, 0], [3, 3]])
    assert torch.equal(attention.values_at(maps, pix), torch.tensor([0.0, 31.0]))
    assert torch.allclose(attention.percentile_at(maps, pix), torch.tensor([0.0, 1.0]))
    assert attention.values_at(maps, pix[:, None].repeat(1, 3, 1)).shape == (2, 3)
    # Ties take the mid-rank: a constant map puts every pixel at 0.5.
    assert torch.allclose(attention.percentile_at(torch.ones(1, 4, 4), torch.tensor([[1, 2]])), torch.tensor([0.5]))
    # A random pixel's percentile averages 0.5, whatever the map.
    m = torch.rand(1, 8, 8).expand(400, 8, 8)
    rand = attention.random_pixels(400, 8, 8, per_image=1, seed=3)[:, 0]
    assert abs(attention.percentile_at(m, rand).mean().item() - 0.5) < 0.05


def test_values_at_rejects_bad_pixels() -> None:
    maps = torch.rand(2, 4, 4)
    for bad in (torch.tensor([[0, 4], [0, 0]]), torch.tensor([[-1, -1], [0, 0]]), torch.tensor([[0, 0]])):
        with pytest.raises(ValueError):
            attention.values_at(maps, bad)
    with pytest.raises(TypeError):
        attention.values_at(maps, torch.zeros(2, 2))
    with pytest.raises(ValueError):
        attention.values_at(torch.rand(4, 4), torch.zeros(4, 2, dtype=torch.long))


def test_random_pixels_are_seeded_and_inside() -> None:
    p = attention.random_pixels(5, 4, 6, per_image=7, seed=1)
    assert p.shape == (5, 7, 2)
    assert (p[..., 0] < 4).all() and (p[..., 1] < 6).all() and (p >= 0).all()
    assert torch.equal(p, attention.random_pixels(5, 4, 6, per_image=7, seed=1))
    with pytest.raises(ValueError):
        attention.random_pixels(5, 4, 6, per_image=0)


# -- attention at the attacked pixels, on synthetic data -------------------------------------------------------------

def dark_spot_images(n: int = 60, size: int = 8) -> tuple[Tensor, Tensor]:
    """Bright-ish images, each with one dark pixel (where the brightness-gated model's attention is lowest)."""
    x = 0.6 + 0.4 * images(n, size, seed=5)
    spots = attention.random_pixels(n, size, size, per_image=1, seed=9)[:, 0]
    x[torch.arange(n), :, spots[:, 0], spots[:, 1]] = 0.0
    return x, spots


def test_pixel_attention_uses_verified_successes_and_checks_sizes() -> None:
    model = brightness_gated()
    x, spots = dark_spot_images(10)
    res = fake_result(x, spots, torch.ones(10, dtype=torch.bool))
    verified = torch.arange(10) < 4
    pa = attention.pixel_attention(model, x, {"DE": res}, successes={"DE": verified})
    assert len(pa.groups["DE success"]) == 4 and len(pa.groups["DE failure"]) == 6
    rows = pa.summary()
    assert rows[0]["group"] == "DE success" and rows[0]["mean percentile"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="result rows"):
        attention.pixel_attention(model, x[:5], {"DE": res})
    with pytest.raises(ValueError, match="measure"):
        pa.measure("rank")


# -- do the maps change under attack? -------------------------------------------------------------------------------

def test_attention_change_is_local_to_the_gate_kernel() -> None:
    model = brightness_gated(kernel_size=3)
    with torch.no_grad():
        model[0].conv.weight.fill_(0.7)  # every neighbour counts
    x = images(8, 10) * 0.5
    pix = torch.tensor([[5, 5]] * 8)
    res = fake_result(x, pix, torch.ones(8, dtype=torch.bool), colour=1.0)  # a bright pixel: A rises near it
    rows = attention.attention_change(model, x, res, max_distance=3)
    assert [r["distance"] for r in rows] == ["0 (the pixel)", "1", "2", ">= 3"]
    assert rows[0]["pixels"] == 8 and rows[1]["pixels"] == 64
    assert rows[0]["mean change"] > 0 and rows[1]["mean change"] > 0 and rows[0]["share dropped"] == 0
    assert rows[2]["max |change|"] < 1e-6 and rows[3]["max |change|"] < 1e-6
    text = attention_maps.change_verdict(rows, kernel_size=3)
    assert "only within distance 1" in text and "3x3" in text
    with pytest.raises(ValueError):
        attention.attention_change(model, x, res, max_distance=0)


# -- concentration --------------------------------------------------------------------------------------------------

def test_concentration_flat_and_peaked() -> None:
    flat = torch.full((2, 10, 10), 0.5)
    assert torch.allclose(attention.concentration(flat, 0.1), torch.tensor(0.1))
    peaked = torch.full((1, 10, 10), 1e-4)
    peaked[0, :2, :5] = 1.0  # all the mass on the top 10 pixels
    assert attention.concentration(peaked, 0.1).item() > 0.99
    with pytest.raises(ValueError):
        attention.concentration(flat, 0.0)
    with pytest.raises(ValueError):
        attention.concentration(-flat)


def test_class_concentration_table() -> None:
    maps = torch.rand(30, 6, 6)
    maps[:10] = 0.5  # class 0: flat
    labels = torch.arange(30) // 10
    rows = attention.class_concentration(maps, labels, CLASSES)
    assert [r["class"] for r in rows][-1] == "airplane" and len(rows) == 3
    assert all(r["images"] == 10 and r["top-mass_lo"] <= r["top-mass"] <= r["top-mass_hi"] for r in rows[:2])
    assert rows[-1]["top-mass"] == pytest.approx(4 / 36)  # ceil(0.1 * 36) = 4 pixels of a flat map
    assert "airplane" in attention_maps.concentration_verdict(rows)
    with pytest.raises(ValueError):
        attention.class_concentration(maps, labels[:5], CLASSES)


# -- figures and the explorer ---------------------------------------------------------------------------------------

def test_attention_figures_render() -> None:
    model = brightness_gated(3)
    x = images(12, 8)
    maps = attention.attention_of(model, x)
    res = fake_result(x, torch.tensor([[2, 3]] * 12), torch.ones(12, dtype=torch.bool))
    after = attention.attention_of(model, res.adv_images)
    probs = torch.softmax(torch.randn(10), 0)
    assert rendered(plotting.attention_overlay(x[0], maps[0], pixels=torch.tensor([[2, 3]]), title="t"))
    assert rendered(plotting.attention_overlay(x[0], maps[0][None]))  # (1, H, W) maps too
    fig = plotting.attention_attack(x[0], res.adv_images[0], maps[0], after[0], res.pixels[0], title="t")
    assert rendered(fig) and "at the pixel" in fig.axes[1].get_title()
    summary = plotting.class_grid_summary(maps, torch.arange(12) % 3, len(CLASSES), per_class=2)
    assert summary["examples"].tolist() == [[0, 3], [1, 4], [2, 5]] and summary["counts"].tolist() == [4, 4, 4]
    assert torch.allclose(summary["means"][1], maps[1::3].mean(0)) and torch.equal(summary["example_maps"][2, 1], maps[5])
    grid = plotting.class_attention_grid(x, summary, CLASSES)
    assert rendered(grid) and len(grid.axes) == 3 * 3 + 1  # 3 classes x (mean + 2 examples) + colour bar
    few = plotting.class_grid_summary(maps[:4], torch.tensor([0, 0, 0, 1]), len(CLASSES), per_class=2)
    assert few["examples"].tolist() == [[0, 1], [3, -1]] and rendered(plotting.class_attention_grid(x, few, CLASSES))
    assert rendered(plotting.attention_panel(x[0], maps[0], probs, CLASSES))
    fig = plotting.attention_panel(x[0], maps[0], probs, CLASSES, adversarial=res.adv_images[0], pixels=res.pixels[0],
                                   probs_after=torch.softmax(torch.randn(10), 0), attention_after=after[0])
    assert rendered(fig) and "after" in fig.axes[2].get_title()


def test_attention_figures_reject_bad_inputs() -> None:
    x, maps = images(2, 8), torch.rand(2, 8, 8)
    probs = torch.softmax(torch.randn(10), 0)
    with pytest.raises(ValueError):
        plotting.attention_overlay(x[0], torch.rand(6, 6))
    with pytest.raises(ValueError):
        plotting.attention_overlay(x[0], maps[0], pixels=torch.tensor([[8, 0]]))
    with pytest.raises(ValueError):
        plotting.attention_attack(x[0], x[1], maps[0], torch.rand(6, 6), torch.tensor([[1, 1]]))
    with pytest.raises(ValueError):
        plotting.class_grid_summary(maps, torch.tensor([0, 10]), len(CLASSES))
    with pytest.raises(ValueError, match="shows image"):
        plotting.class_attention_grid(x[:1], plotting.class_grid_summary(maps, torch.tensor([0, 1]), 10), CLASSES)
    with pytest.raises(ValueError):
        plotting.attention_panel(x[0], maps[0], probs[:5], CLASSES)
    with pytest.raises(ValueError):
        plotting.attention_panel(x[0], maps[0], probs, CLASSES, adversarial=x[1])  # no pixels / probs after


def test_attention_explorer_views_and_wiring() -> None:
    from labkit import widgets
    from labkit.widgets import attention_explorer

    models = {"full": brightness_gated(3), "no_regularisation": brightness_gated(1)}
    x, labels = images(9, 8), torch.arange(9) % 3
    res = fake_result(x[:4], torch.tensor([[1, 1]] * 4), torch.tensor([True, False, True, True]))
    attacks = {"full": {"DE k=1": res, "corner": res}}
    views = widgets.explorer_views(models, x, attacks)
    assert torch.equal(views["full", "maps"], attention.attention_of(models["full"], x))
    assert torch.equal(views["full", "corner", "probs"], probabilities(models["full"], res.adv_images))
    assert ("no_regularisation", "DE k=1", "maps") not in views  # only the attacks made on a model
    board = attention_explorer(views, x, labels, CLASSES, attacks, ids=torch.arange(100, 109), max_images=5)
    model, image, attack = board.controls
    assert model.options == ("full", "no_regularisation") and attack.options == ("none", "DE k=1", "corner")
    # Opens on the first attacked image with its first attack; three attacked images, then two that were not.
    assert (model.start, image.start, attack.start) == (0, 0, 1)
    assert image.options[-2:] == ("automobile #104", "bird #105")
    # The model without attacks shows its plain view under every attack option (one PNG).
    assert len({board.view_of(1, 0, a) for a in range(3)}) == 1
    with pytest.raises(ValueError, match="same images"):
        attention_explorer(views, x, labels, CLASSES, {"full": {"a": res, "b": res.select(slice(0, 2))}})
    with pytest.raises(ValueError, match="no AttentionGate"):
        widgets.explorer_views({"plain": MeanColour().eval()}, x)
    with pytest.raises(ValueError, match="unknown models"):
        attention_explorer(views, x, labels, CLASSES, {"other": {"a": res}})

