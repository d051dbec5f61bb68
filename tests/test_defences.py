"""labkit.defences: input transformations, training objectives, gradient masking.

Everything runs on tiny models and tensors made here (plus the tiny ImageFolder fixture for the two tests
that go through the training loop); nothing touches the network or the real data.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.attacks import CornerSearch, GradientCorner
from labkit.defences import (
    JPEG,
    PGDAT,
    BitDepth,
    Distillation,
    GaussianSmoothing,
    GradientMasking,
    MedianFilter,
    NoisyGradient,
    OnePixelAT,
    SoftmaxTemperature,
    defended,
    defended_key,
    distillation_config,
    standard_transforms,
)
from labkit.train import TrainConfig, TrainContext, get_or_train, model_key

TRANSFORMS = standard_transforms()
IDS = [t.label for t in TRANSFORMS]


def images(n: int = 4, size: int = 8, seed: int = 0) -> Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def ctx_for(seed: int = 0) -> TrainContext:
    ctx = TrainContext(config=TrainConfig(), device=torch.device("cpu"))
    ctx.generator.manual_seed(seed)
    return ctx


class Spy(nn.Module):
    """Wraps a network and records, per forward, (training mode, CPU autocast on, grad mode on)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.calls: list[tuple[bool, bool, bool]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append((self.training, torch.is_autocast_enabled("cpu"), torch.is_grad_enabled()))
        return self.net(x)


# -- input transformations: shapes, range, specs --------------------------------------------------------------------

@pytest.mark.parametrize("transform", TRANSFORMS, ids=IDS)
@pytest.mark.parametrize("shape", [(5, 3, 8, 8), (2, 3, 32, 32), (1, 3, 9, 7)])
def test_transform_keeps_shape_dtype_and_range(transform: nn.Module, shape: tuple[int, ...]) -> None:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3))
    y = transform(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("transform", TRANSFORMS, ids=IDS)
def test_transform_is_batch_independent(transform: nn.Module) -> None:
    x = images(5, 16)
    one_by_one = torch.cat([transform(x[i:i + 1]) for i in range(len(x))])
    torch.testing.assert_close(transform(x), one_by_one, atol=1e-6, rtol=0)


@pytest.mark.parametrize("transform", TRANSFORMS, ids=IDS)
def test_transform_has_no_parameters_and_a_plain_data_spec(transform: nn.Module) -> None:
    assert list(transform.parameters()) == [] and list(transform.buffers()) == []
    spec = transform.spec()
    assert spec["transform"] == type(transform).__name__
    assert all(isinstance(v, (bool, int, float, str)) for v in spec.values())


def test_transforms_reject_non_image_batches() -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        MedianFilter(3)(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        JPEG(75)(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match="larger than"):
        MedianFilter(5)(torch.rand(1, 3, 2, 2))


def test_jpeg_of_an_empty_batch_is_empty() -> None:
    assert JPEG(50)(torch.rand(0, 3, 8, 8)).shape == (0, 3, 8, 8)


# -- bit depth and JPEG ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [1, 3, 5])
def test_bit_depth_lands_on_its_grid(bits: int) -> None:
    levels = 2 ** bits - 1
    y = BitDepth(bits)(images(4, 16)) * levels
    torch.testing.assert_close(y, y.round(), atol=1e-5, rtol=0)
    assert len(y.round().unique()) <= levels + 1


def test_eight_bits_is_the_identity_on_eight_bit_images() -> None:
    x = torch.randint(0, 256, (3, 3, 8, 8)).float() / 255
    assert torch.equal(BitDepth(8)(x), x)


def test_jpeg_returns_eight_bit_images_and_loses_more_at_lower_quality() -> None:
    ramp = torch.linspace(0.1, 0.9, 32)
    x = torch.stack([ramp[:, None] * ramp[None, :], ramp[:, None].expand(32, 32), ramp[None, :].expand(32, 32)])
    x = x.expand(2, 3, 32, 32)  # smooth colour ramps: JPEG's error then shrinks steadily with quality
    errors = [(JPEG(q)(x) - x).abs().mean().item() for q in (100, 75, 25, 5)]
    assert errors == sorted(errors) and errors[0] < 0.01
    y = JPEG(50)(x) * 255
    assert torch.equal(y, y.round())


def test_jpeg_matches_torchvision_codec_on_one_image() -> None:
    from torchvision.io import decode_jpeg, encode_jpeg

    x = images(1, 32)
    pixels = (x[0] * 255).round().to(torch.uint8)
    with pytest.warns(DeprecationWarning):  # torchvision 0.29's own notice; JPEG() silences it
        expected = decode_jpeg(encode_jpeg(pixels, quality=30)).float() / 255
    assert torch.equal(JPEG(30)(x)[0], expected)


# -- gradients ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda st: BitDepth(3, straight_through=st),
                                  lambda st: JPEG(40, straight_through=st)], ids=["bit depth", "JPEG"])
def test_non_differentiable_transforms_pass_gradients_straight_through_or_zero(make) -> None:
    x = images(2, 16).requires_grad_(True)
    upstream = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    (g_st,) = torch.autograd.grad((make(True)(x) * upstream).sum(), x)
    assert torch.equal(g_st, upstream)  # BPDA: the backward pass is the identity
    (g_zero,) = torch.autograd.grad((make(False)(x) * upstream).sum(), x)
    assert torch.equal(g_zero, torch.zeros_like(x))  # no straight-through: a (masking) zero gradient
    assert torch.equal(make(True)(x), make(False)(x))  # the forward pass is the same either way


def test_median_gradient_reaches_the_middle_values() -> None:
    x = images(2, 8).requires_grad_(True)
    for size in (2, 3):
        (g,) = torch.autograd.grad(MedianFilter(size)(x).sum(), x)
        # Each output passes half its gradient to each of its two middle values: the total is conserved.
        assert g.sum().item() == pytest.approx(x.numel())
        assert (g >= 0).all()


def test_gaussian_smoothing_is_differentiable() -> None:
    x = images(2, 8).requires_grad_(True)
    (g,) = torch.autograd.grad(GaussianSmoothing(3, 1.0)(x).square().sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


# -- what the median filter does to a one-pixel change ---------------------------------------------------------------

@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("outlier", [(1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.5)])
def test_median_removes_an_isolated_pixel_on_a_flat_region(size: int, outlier: tuple[float, ...]) -> None:
    # Every position of a constant 6x6 image, borders and corners included, in one batch.
    h = w = 6
    x = torch.full((h * w, 3, h, w), 0.4)
    pos = torch.arange(h * w)
    x[pos, :, pos // w, pos % w] = torch.tensor(outlier)
    assert torch.equal(MedianFilter(size)(x), torch.full_like(x, 0.4))


def test_median_does_not_remove_a_pixel_on_texture() -> None:
    # The docstring's example: the 3x3 window of the centre of a 5x5 image holds 0.1 ... 0.9.
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 1:4, 1:4] = torch.arange(1, 10, dtype=torch.float32).view(3, 3) / 10
    assert MedianFilter(3)(x)[0, 0, 2, 2].item() == pytest.approx(0.5)
    x[0, 0, 1, 1] = 0.55  # over the 0.1
    assert MedianFilter(3)(x)[0, 0, 2, 2].item() == pytest.approx(0.55)


def _windows(x: Tensor, size: int) -> Tensor:
    """The values of each output's window, (N, C, H, W, size**2), padded as MedianFilter documents."""
    before = (size - 1) // 2
    padded = F.pad(x, (before, size - 1 - before, before, size - 1 - before), mode="reflect")
    n, c, h, w = x.shape
    return padded.unfold(2, size, 1).unfold(3, size, 1).reshape(n, c, h, w, size * size)


@pytest.mark.parametrize("size", [2, 3])
def test_a_one_pixel_change_moves_the_median_at_most_one_rank_per_copy(size: int) -> None:
    # A textured image, one pixel changed at every position (borders and corners included) to a random colour.
    h = w = 6
    gen = torch.Generator().manual_seed(4)
    clean = torch.rand(1, 3, h, w, generator=gen).expand(h * w, -1, -1, -1)
    pos = torch.arange(h * w)
    x = clean.clone()
    x[pos, :, pos // w, pos % w] = torch.rand(h * w, 3, generator=gen)
    before, after = MedianFilter(size)(clean), MedianFilter(size)(x)

    # How often the changed pixel appears in each output's window (reflection can repeat it at the border).
    ids = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    copies = (_windows(ids, size)[0, 0] == pos.view(-1, 1, 1, 1).float()).sum(-1)  # (positions, H, W)
    copies = copies[:, None].expand_as(after)
    assert not after[copies == 0].ne(before[copies == 0]).any()  # outside the pixel's windows: untouched

    s = _windows(clean, size).sort(-1).values
    k = size * size
    lo_rank, hi_rank = (k - 1) // 2, k // 2  # the two middle values (one value for odd windows)
    assert int(copies.max()) <= lo_rank and hi_rank + int(copies.max()) <= k - 1  # the ranks below exist
    # Each order statistic moves by at most one rank per copy of the changed pixel in the window.
    low = (s.gather(-1, (lo_rank - copies)[..., None]) + s.gather(-1, (hi_rank - copies)[..., None])) / 2
    high = (s.gather(-1, (lo_rank + copies)[..., None]) + s.gather(-1, (hi_rank + copies)[..., None])) / 2
    eps = 1e-6
    assert ((after >= low[..., 0] - eps) & (after <= high[..., 0] + eps)).all()
    # ... and on texture that bound is all there is: the change is not removed (the medians did move).
    assert (after - before).abs().amax(dim=(1, 2, 3)).gt(eps).float().mean() > 0.5


def test_two_by_two_median_is_anchored_at_the_top_left() -> None:
    # A step edge between columns 3 and 4: the 2x2 window of column 3 straddles it, so the edge moves
    # half a pixel to the left (the documented alignment), and the reflected last column stays put.
    x = torch.zeros(1, 1, 4, 8)
    x[..., 4:] = 1.0
    y = MedianFilter(2)(x)[0, 0]
    assert torch.equal(y[:, :3], torch.zeros(4, 3))
    assert torch.equal(y[:, 3], torch.full((4,), 0.5))
    assert torch.equal(y[:, 4:], torch.ones(4, 4))


def test_median_filter_defeats_a_one_pixel_attack_that_breaks_the_bare_model(pixel_model, dark_images) -> None:
    labels = torch.zeros(len(dark_images), dtype=torch.long)
    bare = CornerSearch(pixel_model)(dark_images, labels)
    assert bare.success.all()  # one bright pixel at (2, 5) flips the bare model
    pipeline = defended(pixel_model, MedianFilter(3))
    assert (pipeline(dark_images).argmax(1) == 0).all()
    assert not CornerSearch(pipeline)(dark_images, labels).success.any()  # the filter erases every such pixel
    # Replayed through the filter, the bare model's adversarial images no longer fool anybody either.
    assert (pipeline(bare.adv_images).argmax(1) == 0).all()


def test_bit_depth_does_not_stop_a_bright_pixel(pixel_model, dark_images) -> None:
    labels = torch.zeros(len(dark_images), dtype=torch.long)
    assert CornerSearch(defended(pixel_model, BitDepth(1)))(dark_images, labels).success.all()


# -- pipelines and keys ---------------------------------------------------------------------------------------------

def test_defended_is_the_transform_then_the_model_in_eval_mode(tiny_cnn) -> None:
    tiny_cnn.train()
    pipeline = defended(tiny_cnn, JPEG(50))
    assert not pipeline.training and not tiny_cnn.training
    x = images(3, 16)
    assert torch.equal(pipeline(x), tiny_cnn(JPEG(50)(x)))


def test_defended_key_separates_pipelines_and_is_stable() -> None:
    keys = {defended_key("m1", t) for t in TRANSFORMS}
    assert len(keys) == len(TRANSFORMS) and "m1" not in keys
    assert defended_key("m1", JPEG(50)) == defended_key("m1", JPEG(50))
    assert defended_key("m1", JPEG(50)) != defended_key("m2", JPEG(50))
    assert defended_key("m1", BitDepth(3)) != defended_key("m1", BitDepth(3, straight_through=False))
    masked = defended_key("m1", GradientMasking(nn.Identity(), 1.0))
    assert masked != defended_key("m1", GradientMasking(nn.Identity(), 2.0))
    assert masked == defended_key("m1", NoisyGradient(1.0))  # the wrapper and the transform are one defence


# -- bad parameters -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: BitDepth(0), r"bits must be an integer in 1\.\.8, got 0"),
    (lambda: BitDepth(9), r"bits must be an integer in 1\.\.8"),
    (lambda: BitDepth(3.5), r"bits must be an integer"),
    (lambda: BitDepth(True), r"bits must be an integer"),
    (lambda: JPEG(0), r"quality must be an integer in 1\.\.100, got 0"),
    (lambda: JPEG(101), r"quality must be an integer in 1\.\.100"),
    (lambda: GaussianSmoothing(4, 1.0), r"kernel_size must be odd"),
    (lambda: GaussianSmoothing(-3, 1.0), r"kernel_size must be an integer >= 1"),
    (lambda: GaussianSmoothing(3, 0.0), r"sigma must be a number > 0"),
    (lambda: GaussianSmoothing(3, -1.0), r"sigma must be a number > 0"),
    (lambda: MedianFilter(1), r"size must be an integer >= 2"),
    (lambda: MedianFilter(-2), r"size must be an integer >= 2"),
    (lambda: OnePixelAT(alpha=1.5), r"alpha must be a fraction in \[0, 1\]"),
    (lambda: OnePixelAT(positions=0), r"positions must be an integer >= 1"),
    (lambda: PGDAT(eps=0), r"eps must be a number > 0"),
    (lambda: PGDAT(step=-1 / 255), r"step must be a number > 0"),
    (lambda: PGDAT(steps=0), r"steps must be an integer >= 1"),
    (lambda: SoftmaxTemperature(0.0), r"temperature must be a number > 0"),
    (lambda: Distillation(TrainConfig(), 20.0), r"teacher must be trained at the distillation temperature"),
    (lambda: Distillation(TrainConfig(objective=SoftmaxTemperature(10.0)), 20.0), r"SoftmaxTemperature\(20\.0\)"),
    (lambda: GradientMasking(nn.Identity(), -1.0), r"eps must be a number >= 0"),
    (lambda: NoisyGradient("big"), r"eps must be a number >= 0"),
])
def test_bad_parameters_are_rejected_with_clear_errors(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# -- gradient masking -----------------------------------------------------------------------------------------------

def test_gradient_masking_leaves_outputs_identical_and_changes_gradients(tiny_cnn) -> None:
    masked = GradientMasking(tiny_cnn, eps=0.1).eval()
    x = images(4, 8)
    with torch.no_grad():
        assert torch.equal(masked(x), tiny_cnn(x))
    xg = x.clone().requires_grad_(True)
    out = masked(xg)
    assert torch.equal(out, tiny_cnn(x))
    labels = torch.arange(4)
    (g_true,) = torch.autograd.grad(F.cross_entropy(tiny_cnn(xg), labels), xg)
    (g_masked,) = torch.autograd.grad(F.cross_entropy(masked(xg), labels), xg)
    noise = g_masked - g_true
    assert 0.05 < noise.std().item() < 0.2  # eps * N(0, 1)
    (g_zero,) = torch.autograd.grad(F.cross_entropy(GradientMasking(tiny_cnn, 0.0)(xg), labels), xg)
    assert torch.equal(g_zero, g_true)
    assert masked.model is tiny_cnn and list(masked.parameters()) == list(tiny_cnn.parameters())
    assert torch.equal(NoisyGradient(1.0)(x), x)  # without autograd: the identity


def test_gradient_masking_is_invisible_to_black_box_attacks(pixel_model, dark_images) -> None:
    labels = torch.zeros(len(dark_images), dtype=torch.long)
    bare = CornerSearch(pixel_model)(dark_images, labels)
    masked = CornerSearch(GradientMasking(pixel_model, eps=10.0).eval())(dark_images, labels)
    assert torch.equal(bare.adv_images, masked.adv_images) and torch.equal(bare.queries, masked.queries)


def test_gradient_masking_scrambles_fgsm(tiny_cnn) -> None:
    import torchattacks

    x, labels = images(8, 8), torch.arange(8) % 10
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(tiny_cnn(xg), labels), xg)
    eps = 4 / 255
    plain = torchattacks.FGSM(tiny_cnn, eps=eps)(x, labels)
    masked = torchattacks.FGSM(GradientMasking(tiny_cnn, eps=1.0), eps=eps)(x, labels)
    inside = ((x > eps) & (x < 1 - eps)) & (g != 0)  # pixels where clipping does not hide the step's sign
    agree = lambda adv: ((adv - x).sign() == g.sign())[inside].float().mean().item()  # noqa: E731
    assert agree(plain) == 1.0
    assert 0.3 < agree(masked) < 0.7  # the step's sign is a coin flip


# -- adversarial training objectives --------------------------------------------------------------------------------

def test_one_pixel_at_runs_its_inner_attack_in_eval_mode_fp32_without_a_graph(tiny_cnn) -> None:
    model = Spy(tiny_cnn).train()
    ctx = ctx_for()
    x, labels = images(8, 8), torch.arange(8) % 10
    objective = OnePixelAT(alpha=0.5, positions=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = objective.loss(model, x, labels, ctx)
    assert model.training  # switched back after the attack
    attack_calls, step_call = model.calls[:-1], model.calls[-1]
    assert attack_calls and all(not training and not autocast for training, autocast, _ in attack_calls)
    assert sum(grad for _, _, grad in attack_calls) == 1  # only the saliency pass builds a graph
    assert step_call == (True, True, True)  # the training step: train mode, bf16 autocast
    assert ctx.timers["inner_attack"] > 0
    loss.backward()
    grads = [p.grad for p in tiny_cnn.parameters()]
    assert torch.isfinite(loss) and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_one_pixel_at_trains_on_the_inner_attack_images(tiny_cnn) -> None:
    model = tiny_cnn.train()
    x, labels = images(6, 8), torch.arange(6)
    adv = OnePixelAT(positions=2).adversarial(model, x[:3], labels[:3], ctx_for())
    assert model.training
    assert ((adv != x[:3]).any(1).flatten(1).sum(1) <= 1).all()  # one changed pixel at most, per image
    expected = GradientCorner(tiny_cnn.eval(), positions=2)(x[:3], labels[:3]).adv_images
    assert torch.equal(adv, expected)  # failures included: the attack's best candidate
    full = OnePixelAT(positions=2).adversarial(model, x, labels, ctx_for())
    assert torch.equal(full[:3], adv)  # per-image: the batch an image is in does not matter
    ce = F.cross_entropy(tiny_cnn.train()(torch.cat([x, full])), labels.repeat(2), reduction="none")
    for alpha in (0.0, 0.3, 1.0):  # alpha weighs the adversarial half
        loss = OnePixelAT(alpha=alpha, positions=2).loss(tiny_cnn, x, labels, ctx_for())
        torch.testing.assert_close(loss, (1 - alpha) * ce[:6].mean() + alpha * ce[6:].mean())


def test_pgd_at_stays_in_the_ball_raises_the_loss_and_replays(tiny_cnn) -> None:
    model = Spy(tiny_cnn).train()
    x, labels = images(8, 8), torch.arange(8) % 10
    objective = PGDAT(eps=8 / 255, step=2 / 255, steps=5)
    adv = objective.adversarial(model, x, labels, ctx_for(seed=1))
    assert model.training and all(not training for training, _, _ in model.calls)
    assert (adv - x).abs().max() <= 8 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(adv, objective.adversarial(model, x, labels, ctx_for(seed=1)))  # seeded random start
    tiny_cnn.eval()
    assert F.cross_entropy(tiny_cnn(adv), labels) > F.cross_entropy(tiny_cnn(x), labels)
    tiny_cnn.train()
    ctx = ctx_for()
    loss = objective.loss(tiny_cnn, x, labels, ctx)
    loss.backward()
    assert ctx.timers["inner_attack"] > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in tiny_cnn.parameters())


# -- distillation ---------------------------------------------------------------------------------------------------

def test_softmax_temperature_is_cross_entropy_of_scaled_logits(tiny_cnn) -> None:
    x, labels = images(4, 8), torch.arange(4)
    logits = tiny_cnn(x)
    for t in (1.0, 20.0):
        expected = F.cross_entropy(logits / t, labels)
        torch.testing.assert_close(SoftmaxTemperature(t).loss(tiny_cnn, x, labels, ctx_for()), expected)


def test_distillation_config_pairs_teacher_and_student_at_one_temperature() -> None:
    base = TrainConfig(epochs=3, seed=2)
    student = distillation_config(base, temperature=50.0)
    teacher = student.objective.teacher
    assert teacher == replace(base, objective=SoftmaxTemperature(50.0))
    assert student.objective.temperature == 50.0 and replace(student, objective=base.objective) == base
    keys = {model_key(c) for c in (base, teacher, student, distillation_config(base, 20.0))}
    assert len(keys) == 4  # teacher, student and each temperature are cached apart


def test_distillation_loss_uses_the_teachers_soft_labels_at_t(tiny_cnn) -> None:
    from conftest import make_tiny_cnn

    student_cfg = distillation_config(TrainConfig(), temperature=20.0)
    ctx = ctx_for()
    ctx.state["teacher"] = tiny_cnn.eval()  # what setup() puts there
    x, labels = images(4, 8), torch.arange(4)
    student = make_tiny_cnn(seed=1)
    soft = F.softmax(tiny_cnn(x) / 20.0, dim=1)
    expected = -(soft * F.log_softmax(student(x) / 20.0, dim=1)).sum(1).mean()
    torch.testing.assert_close(student_cfg.objective.loss(student, x, labels, ctx), expected)
    # A student equal to its teacher sits at the minimum: zero gradient. The labels play no part.
    clone = make_tiny_cnn(seed=0)
    student_cfg.objective.loss(clone, x, labels.flip(0), ctx).backward()
    assert max(p.grad.abs().max().item() for p in clone.parameters()) < 1e-6
    # Higher T, softer labels: the teacher's top probability shrinks towards 1/10.
    tops = [F.softmax(tiny_cnn(x) * 50 / t, dim=1).max(1).values.mean().item() for t in (1.0, 20.0, 100.0)]
    assert tops == sorted(tops, reverse=True)


def tiny_run(**overrides: object) -> TrainConfig:
    """One step of one epoch on 20 images of the tiny ImageFolder (a constant rate: OneCycle needs more steps)."""
    return TrainConfig(epochs=1, train_size=20, batch_size=20, eval_size=10, schedule="constant", lr=0.01,
                       **overrides)


def test_distillation_trains_its_teacher_through_the_cache(tiny_folder) -> None:
    student_cfg = distillation_config(tiny_run(), temperature=20.0)
    ctx = TrainContext(config=student_cfg, device=torch.device("cpu"))
    student_cfg.objective.setup(ctx)
    teacher = ctx.state["teacher"]
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    cached = get_or_train(student_cfg.objective.teacher, progress=False)
    assert cached.path.exists()
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), cached.model.state_dict().values()))
    trained = get_or_train(student_cfg, progress=False)
    assert trained.history[0]["epoch"] == 1 and trained.key != cached.key


def test_one_pixel_at_inner_attack_time_lands_in_the_history(tiny_folder) -> None:
    trained = get_or_train(tiny_run(objective=OnePixelAT(positions=1)), progress=False)
    row = trained.history[0]
    assert 0 < row["seconds_inner_attack"] < row["seconds"]


# -- reporting ------------------------------------------------------------------------------------------------------

def test_defence_plots_render() -> None:
    from matplotlib.figure import Figure

    from labkit import plotting

    rows = [{"model": "m", "defence": d, "attack": a, "clean_acc": acc, "asr": asr}
            for d, acc, asr in (("No defence", 80.0, 60.0), ("median 3x3", 75.0, 20.0)) for a in ("DE k=1", "corner")]
    figs = [plotting.tradeoff(rows, title="t"),
            plotting.grouped_bars(["a", "b"], {"replayed": [1.0, 2.0], "re-run": [3.0, 4.0]}, "ASR (%)",
                                  reference=("undefended", 5.0))]
    for fig in figs:
        assert isinstance(fig, Figure) and fig._repr_png_()[:4] == b"\x89PNG"
    ax = figs[0].axes[0]
    assert [tuple(c.get_offsets()[0]) for c in ax.collections] == [(5.0, 40.0), (5.0, 40.0)]  # cost, gain


def test_mixed_at_rotates_the_four_attacks_and_weighs_the_adversarial_half(tiny_cnn) -> None:
    from labkit.defences import MixedAT

    x, labels = images(4, 8), torch.arange(4)
    objective = MixedAT(steps=2, deepfool_steps=2, cw_steps=2, swaps=4)
    seen = []
    for step in range(5):
        ctx = ctx_for()
        ctx.step = step
        model = Spy(tiny_cnn).train()
        loss = objective.loss(model, x, labels, ctx)
        assert model.training and torch.isfinite(loss) and ctx.timers["inner_attack"] > 0
        seen.append(objective.attacks[step % 4])
    assert seen == ["MI-FGSM", "DeepFool", "CW-L2", "pixel swap", "MI-FGSM"]
    ctx = ctx_for()
    ctx.step = 3  # the pixel swap: it only rearranges each image's own pixels
    adv = objective.attack("pixel swap", tiny_cnn.eval())(x, labels).adv_images
    assert torch.equal(adv.flatten(2).sort(2).values, x.flatten(2).sort(2).values)
    ce = F.cross_entropy(tiny_cnn.train()(torch.cat([x, adv])), labels.repeat(2), reduction="none")
    for alpha in (0.0, 0.5, 1.0):
        got = MixedAT(alpha=alpha, steps=2, deepfool_steps=2, cw_steps=2, swaps=4).loss(tiny_cnn, x, labels, ctx)
        torch.testing.assert_close(got, (1 - alpha) * ce[:4].mean() + alpha * ce[4:].mean())


def test_mixed_at_is_deterministic_per_step_and_checks_its_fields(tiny_cnn) -> None:
    from labkit.defences import MixedAT

    x, labels = images(4, 8), torch.arange(4)
    objective = MixedAT(steps=2, deepfool_steps=2, cw_steps=2, swaps=4)
    ctx = ctx_for()
    a, b = objective.loss(tiny_cnn.train(), x, labels, ctx), objective.loss(tiny_cnn.train(), x, labels, ctx)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="alpha"):
        MixedAT(alpha=1.5)
    with pytest.raises(ValueError, match="attacks"):
        MixedAT(attacks=("FGSM",))
