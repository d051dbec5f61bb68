"""labkit.certify.training: IBP margin bounds that hold, a schedule that ramps, a loss that trains."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labkit.certify import NotCertifiable
from labkit.certify.training import OnePixelIBP, interval_margins, pixel_boxes
from labkit.models import MedianBlur, Normalize, small_cnn
from labkit.train import TrainConfig, TrainContext


def net(seed: int = 0, median: int = 0) -> nn.Module:
    """small_cnn's layers at tiny widths behind the normalisation, on 8x8 images (``median``: a median filter of
    that window in front, as ``TrainConfig.median`` builds it)."""
    torch.manual_seed(seed)
    model = nn.Sequential(Normalize(), small_cnn(num_classes=4, widths=(4, 6, 8)))
    return nn.Sequential(MedianBlur(median), model) if median else model


def sampled_margins(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, pos: torch.Tensor,
                    colours: torch.Tensor) -> torch.Tensor:
    """(N * P, K) margins f_y - f_j with ``colours`` (N * P, C) written at the positions."""
    n, c, h, w = images.shape
    x = images.repeat_interleave(pos.shape[1], 0).clone()
    flat = pos.reshape(-1)
    x[torch.arange(len(flat)), :, flat // w, flat % w] = colours
    with torch.no_grad():
        out = model(x)
    y = labels.repeat_interleave(pos.shape[1])
    return out[torch.arange(len(y)), y][:, None] - out


@pytest.mark.parametrize("eps, median", [(0.0, 0), (0.3, 0), (1.0, 0), (0.0, 3), (1.0, 3)])
def test_interval_margins_bound_every_sampled_colour_in_the_box(eps: float, median: int) -> None:
    model = net(median=median).eval()
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, 8, 8, generator=gen)
    labels = torch.randint(0, 4, (3,), generator=gen)
    pos = torch.randint(0, 64, (3, 2), generator=gen)
    logits, lower = interval_margins(model, images, labels, pos, eps)
    assert torch.allclose(logits, model(images), atol=1e-5)
    lo, hi = pixel_boxes(images, pos, eps)
    flat = pos.reshape(-1)
    ar = torch.arange(len(flat))
    box_lo, box_hi = lo[ar, :, flat // 8, flat % 8], hi[ar, :, flat // 8, flat % 8]
    for _ in range(40):
        colours = box_lo + torch.rand(box_lo.shape, generator=gen) * (box_hi - box_lo)
        assert (sampled_margins(model, images, labels, pos, colours) >= lower - 1e-4).all()
    # The label's own margin is 0, and at eps = 0 the bound is the clean margin itself.
    y = labels.repeat_interleave(2)
    assert torch.allclose(lower[torch.arange(len(y)), y], torch.zeros(len(y)), atol=1e-5)
    if eps == 0.0:
        clean = sampled_margins(model, images, labels, pos, box_lo)
        assert torch.allclose(lower, clean, atol=1e-4)


def test_a_median_in_front_narrows_the_bound() -> None:
    # On a smooth image the filter passes the pixel only between its neighbourhood's close middle values, so the
    # whole cube's bound stays near the clean margin; without it the pixel moves by up to 1.
    gen = torch.Generator().manual_seed(3)
    images = 0.5 + 0.02 * torch.rand(4, 3, 8, 8, generator=gen)
    labels, pos = torch.randint(0, 4, (4,), generator=gen), torch.randint(0, 64, (4, 3), generator=gen)
    gaps = []
    for model in (net(seed=2).eval(), net(seed=2, median=3).eval()):
        clean, cube = (interval_margins(model, images, labels, pos, eps)[1] for eps in (0.0, 1.0))
        gaps.append(float((clean - cube).mean().detach()))
    assert 0 <= gaps[1] < gaps[0] / 10, gaps


def test_pixel_boxes_grow_from_the_pixel_to_the_whole_cube() -> None:
    images = torch.full((1, 3, 4, 4), 0.25)
    pos = torch.tensor([[5]])
    lo, hi = pixel_boxes(images, pos, 1.0)
    assert lo[0, :, 1, 1].eq(0).all() and hi[0, :, 1, 1].eq(1).all()
    lo, hi = pixel_boxes(images, pos, 0.5)
    assert torch.allclose(lo[0, :, 1, 1], torch.full((3,), 0.125)) and torch.allclose(hi[0, :, 1, 1],
                                                                                      torch.full((3,), 0.625))
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[1, 1] = False
    assert lo[0][:, mask].eq(0.25).all() and hi[0][:, mask].eq(0.25).all()  # every other pixel stays clean


def test_batch_norm_in_training_mode_uses_the_clean_batch_statistics() -> None:
    model = net(3).train()
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    labels = torch.zeros(6, dtype=torch.long)
    before = model[1][1].running_mean.clone()
    logits, lower = interval_margins(model, images, labels, torch.zeros(6, 1, dtype=torch.long), 0.0)
    # At eps = 0 the bound is the margin of the clean forward, in the same (training-mode) normalisation.
    margins = logits[:, :1] - logits
    assert torch.allclose(lower, margins, atol=1e-4)
    assert not torch.equal(before, model[1][1].running_mean)  # the clean pass alone updated the running stats


def test_schedule_grows_eps_geometrically_lowers_kappa_then_holds() -> None:
    obj = OnePixelIBP(eps=1.0, kappa=0.2, ramp=0.5, start=1e-4)
    assert obj.schedule(0, 100) == pytest.approx((1e-4, 1.0))
    eps, kappa = obj.schedule(25, 100)
    assert eps == pytest.approx(1e-2) and kappa == pytest.approx(0.6)  # halfway: the geometric mean, tenfold per
    assert obj.schedule(50, 100) == pytest.approx((1.0, 0.2)) and obj.schedule(99, 100) == pytest.approx((1.0, 0.2))
    assert OnePixelIBP(ramp=0.0).schedule(0, 100) == pytest.approx((1.0, 0.5))
    steps = [obj.schedule(s, 100)[0] for s in range(0, 51, 5)]
    assert all(b / a == pytest.approx(steps[1] / steps[0]) for a, b in zip(steps, steps[1:]))  # constant ratio


def test_the_robust_loss_trains_the_bound_up() -> None:
    """A few steps of the objective at the whole cube lower the worst-case loss of a fixed batch (measured in
    training mode: the batch statistics the objective trains with)."""
    model = net(1).train()
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.rand(16, 3, 8, 8, generator=gen), torch.randint(0, 4, (16,), generator=gen)
    obj = OnePixelIBP(positions=2, kappa=0.0, ramp=0.0)
    ctx = TrainContext(config=TrainConfig(), device=torch.device("cpu"), total_steps=10)
    pos = torch.randint(0, 64, (16, 2), generator=torch.Generator().manual_seed(5))

    def worst() -> float:
        with torch.no_grad():
            lower = interval_margins(model.train(), images, labels, pos, 1.0)[1]
            return nn.functional.cross_entropy(-lower, labels.repeat_interleave(2)).item()

    start = worst()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(15):
        model.train()
        ctx.step = step
        loss = obj.loss(model, images, labels, ctx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert worst() < 0.8 * start


def test_natural_end_of_the_schedule_is_plain_cross_entropy() -> None:
    model = net().eval()
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    ctx = TrainContext(config=TrainConfig(), device=torch.device("cpu"), total_steps=10, step=0)
    loss = OnePixelIBP(ramp=0.5).loss(model, images, labels, ctx)  # step 0: kappa is still 1
    assert torch.allclose(loss, nn.functional.cross_entropy(model(images), labels))


@pytest.mark.parametrize("model", [nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.LazyLinear(2)),
                                   nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())])
def test_unsupported_models_are_refused_by_name(model: nn.Module) -> None:
    model(torch.zeros(1, 3, 8, 8))
    with pytest.raises(NotCertifiable, match="Tanh|Linear"):
        interval_margins(model, torch.rand(1, 3, 8, 8), torch.tensor([0]), torch.tensor([[3]]))


@pytest.mark.parametrize("field, value", [("positions", 0), ("eps", 1.5), ("kappa", -0.1), ("ramp", 2.0), ("start", 0.0),
                                          ("start", 2.0)])
def test_bad_settings_get_clear_errors(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        OnePixelIBP(**{field: value})
