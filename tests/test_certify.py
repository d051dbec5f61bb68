"""labkit.certify: bounds that contain what the network computes, and verdicts that agree with enumeration."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.certify import (ROBUST, UNKNOWN, VULNERABLE, Boxes, CertifyConfig, CertifyResult, Chain, NotCertifiable,
                            certify, margin_bounds, parse)
from labkit.certify.layers import clean_activations
from labkit.certify.relax import unfold
from labkit.defences import BitDepth, MedianFilter, defended
from labkit.models import AttentionGate, BasicBlock, MedianBlur, Normalize

METHODS = ("interval", "forward", "backward", "alpha")


def tiny_net(seed: int = 2, pool: nn.Module | None = None, classes: int = 3) -> nn.Module:
    """8x8 RGB -> 3 classes: normalisation, two small convs, a pooling layer, a linear head."""
    torch.manual_seed(seed)
    net = nn.Sequential(Normalize(), nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), pool if pool is not None else nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(classes)))
    net(torch.zeros(1, 3, 8, 8))  # materialise the head for this pooling's output size
    return net.eval()


#: One model per layer rule, each isolating it between convolutions (names say what is tested).
LAYER_NETS = {
    "conv stride 2, batch norm": lambda: nn.Sequential(
        nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 4, 3), nn.ReLU(),
        nn.Flatten(), nn.LazyLinear(3)),
    "max pool 3/2 padded": lambda: nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1), nn.Conv2d(4, 4, 3, padding=1),
        nn.Flatten(), nn.LazyLinear(3)),
    "avg pool padded, dropout": lambda: nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(3, 2, padding=1), nn.Dropout(0.5),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)),
    "adaptive max, linear relu linear": lambda: nn.Sequential(
        nn.Conv2d(3, 6, 3, padding="same"), nn.ReLU(), nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(24, 8),
        nn.ReLU(), nn.Linear(8, 3)),
    "adaptive avg, log-softmax": lambda: nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(6, 3), nn.LogSoftmax(dim=1)),
    "residual blocks (identity, projection)": lambda: nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), BasicBlock(4, 4, 1), BasicBlock(4, 6, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)),
    # APR's gate in front of the normalisation, as labkit.train places it; random weights, not its flat start.
    "gate pixel": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                        nn.LazyLinear(3)),
    "gate channel 5x5": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                              nn.LazyLinear(3)),
    # A median filter in front (labkit.train's TrainConfig.median), reflect padding: kinks at each output's ends.
    "median 3x3": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                        nn.LazyLinear(3)),
    "median 5x5": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)),
    # Bit-depth reduction in front (Lab 05's "IT (bit depth 5)"; 3 bits here, so boxes often round to a point).
    "bit depth 3": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                         nn.LazyLinear(3)),
}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(Normalize(), LAYER_NETS[name]())
    if name.startswith("gate"):
        gate = AttentionGate("pixel" if "pixel" in name else "channel", kernel_size=5 if "5x5" in name else 3)
        nn.init.normal_(gate.conv.weight, std=1.5)
        nn.init.normal_(gate.conv.bias, std=0.5)
        net = nn.Sequential(gate, net)
    if name.startswith("median"):
        net = nn.Sequential(MedianBlur(5 if "5x5" in name else 3), net)
    if name.startswith("bit depth"):
        net = nn.Sequential(BitDepth(3), net)
    for m in net.modules():  # batch norm with statistics of its own, not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.3, 2.0)
            m.weight.data.uniform_(-1.5, 1.5)
    net(torch.zeros(1, 3, 8, 8))
    return net.eval()


def random_boxes(n_images: int, b: int, seed: int, width: float | None = None) -> Boxes:
    """``b`` random boxes on 8x8 images: random positions, corners and widths (``width``: all that wide)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(b, 1, generator=g, dtype=torch.float64) if width is None else torch.full((b, 1), width,
                                                                                              dtype=torch.float64)
    lo = torch.rand(b, 3, generator=g, dtype=torch.float64) * (1 - w)
    return Boxes(torch.randint(0, n_images, (b,), generator=g), torch.randint(0, 8, (b,), generator=g),
                 torch.randint(0, 8, (b,), generator=g), lo, lo + w)


def sample_inputs(images: Tensor, boxes: Boxes, s: int, seed: int) -> Tensor:
    """(B, s, C, H, W) images with the box's pixel set to s colours of the box: its corners first, then uniform."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(len(boxes), s, 3, generator=g, dtype=torch.float64)
    u[:, :8] = ((torch.arange(8)[:, None] >> torch.arange(3)) & 1).double()
    colours = boxes.lo[:, None] + u * (boxes.hi - boxes.lo)[:, None]
    x = images.double()[boxes.img][:, None].repeat(1, s, 1, 1, 1)
    x[torch.arange(len(boxes))[:, None], torch.arange(s), :, boxes.row[:, None], boxes.col[:, None]] = colours
    return x


def true_margins(net: nn.Module, x: Tensor, labels: Tensor) -> Tensor:
    """The smallest sampled margin f_y - f_j per box and wrong class j: (B, classes - 1)."""
    b, s = x.shape[:2]
    with torch.no_grad():
        z = net.double()(x.flatten(0, 1)).view(b, s, -1)
    net.float()
    m = (z.gather(2, labels[:, None, None].expand(b, s, 1)) - z).amin(1)
    others = torch.arange(z.shape[2]).expand(b, -1)
    return m.gather(1, others[others != labels[:, None]].view(b, -1))


@pytest.mark.parametrize("name", list(LAYER_NETS))
def test_every_activation_window_contains_sampled_activations(name: str) -> None:
    net = build(name)
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    layers = parse(net, (3, 8, 8))
    chain = Chain(layers, images.double())
    boxes = random_boxes(3, 24, seed=1)
    x = sample_inputs(images, boxes, 40, seed=2)
    acts = clean_activations(chain.layers, chain.inputs(x.flatten(0, 1)))  # behind a leading bit-depth reduction
    for forms, crown in ((False, 0), (True, 0), (True, 10_000)):
        info = chain.forward(boxes, forms, crown_neurons=crown)
        for t, (lo, hi) in enumerate(info.bounds):
            a = acts[t].view(len(boxes), 40, *acts[t].shape[1:])
            geo = chain.geos[t]
            if geo.size is not None:  # the sampled map's window, where the bounds live
                r, c = geo.rows[boxes.row], geo.cols[boxes.col]
                rr = (r[:, None] + torch.arange(geo.size[0]))[:, None, None, :, None]
                cc = (c[:, None] + torch.arange(geo.size[1]))[:, None, None, None, :]
                a = a[torch.arange(len(boxes))[:, None, None, None, None], torch.arange(40)[None, :, None, None, None],
                      torch.arange(a.shape[2])[None, None, :, None, None], rr, cc]
            assert (a >= lo[:, None] - 1e-9).all() and (a <= hi[:, None] + 1e-9).all(), (name, t, forms, crown)


@pytest.mark.parametrize("name", list(LAYER_NETS))
def test_margin_bounds_contain_sampled_margins_and_windows_equal_full_maps(name: str) -> None:
    net = build(name, seed=1)
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    labels = net(images).argmax(1)
    layers = parse(net, (3, 8, 8))
    windowed, full = Chain(layers, images.double()), Chain(layers, images.double(), full=True)
    boxes = random_boxes(3, 24, seed=3)
    truth = true_margins(net, sample_inputs(images, boxes, 60, seed=4), labels[boxes.img])
    variants = [dict(method=m) for m in METHODS] + [dict(method="backward", intermediate="interval"),
                                                    dict(method="alpha", intermediate="backward", crown_depth=1)]
    for kw in variants:
        got = margin_bounds(windowed, boxes, labels[boxes.img], alpha_steps=4, **kw)
        assert (got.lower <= truth + 1e-9).all(), kw
        ref = margin_bounds(full, boxes, labels[boxes.img], alpha_steps=4, **kw)
        assert (got.lower - ref.lower).abs().max() < 1e-9, kw


def test_linear_bounds_hold_at_their_minimising_corner() -> None:
    net = tiny_net()
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    labels = net(images).argmax(1)
    chain = Chain(parse(net, (3, 8, 8)), images.double())
    boxes = random_boxes(2, 32, seed=8)
    for method in ("forward", "backward", "alpha"):
        mb = margin_bounds(chain, boxes, labels[boxes.img], method)
        corner = mb.minimiser(boxes)
        assert ((corner == boxes.lo) | (corner == boxes.hi)).all()
        # the minimiser is the corner where the worst margin's affine bound is least, and that bound is sound
        k = mb.lower.argmin(1)
        ar = torch.arange(len(boxes))
        g, c = mb.coef[ar, k], mb.const[ar, k]
        value = (g * corner).sum(1) + c
        corners = ((torch.arange(8)[:, None] >> torch.arange(3)) & 1).double()
        every = torch.where(corners.bool()[None], boxes.hi[:, None], boxes.lo[:, None])  # (B, 8, 3)
        assert (value[:, None] <= (g[:, None] * every).sum(2) + c[:, None] + 1e-12).all()
        assert (value <= mb.lower[ar, k] + 1e-12).all()


def test_tighter_methods_give_tighter_bounds() -> None:
    net = tiny_net()
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    labels = net(images).argmax(1)
    chain = Chain(parse(net, (3, 8, 8)), images.double())
    boxes = random_boxes(4, 64, seed=10, width=1.0)
    y = labels[boxes.img]
    ibp, fwd, crown, alpha = (margin_bounds(chain, boxes, y, m, alpha_steps=10).lower for m in METHODS)
    assert (crown >= ibp - 1e-9).all()
    assert (alpha >= crown - 1e-12).all()
    assert (crown - ibp).mean() > 0 and (alpha - crown).max() > 0  # and strictly better somewhere
    assert (crown >= fwd - 1e-9).float().mean() > 0.9


def test_crown_intermediate_bounds_are_tighter_on_a_deeper_net() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(Normalize(), nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1),
                        nn.Flatten(), nn.Linear(8, 3)).eval()
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = net(images).argmax(1)
    chain = Chain(parse(net, (3, 8, 8)), images.double())
    boxes = random_boxes(2, 16, seed=11, width=0.5)
    y = labels[boxes.img]
    truth = true_margins(net, sample_inputs(images, boxes, 60, seed=12), y)
    fwd = margin_bounds(chain, boxes, y, "backward", intermediate="forward").lower
    deep = margin_bounds(chain, boxes, y, "backward", intermediate="backward").lower
    assert (deep <= truth + 1e-9).all()
    assert (deep >= fwd - 1e-6).float().mean() > 0.9 and (deep - fwd).mean() > 0


def grid_flips(net: nn.Module, image: Tensor, label: int, levels: int = 16) -> Tensor:
    """(H, W) whether some colour of the grid (``levels`` per channel, multiples of 1/255) flips the prediction."""
    grid = torch.arange(levels) * (255 // (levels - 1)) / 255
    colours = torch.cartesian_prod(grid, grid, grid).float()
    h, w = image.shape[1:]
    out = torch.zeros(h, w, dtype=torch.bool)
    with torch.no_grad():
        for r in range(h):
            for c in range(w):
                x = image.expand(len(colours), -1, -1, -1).clone()
                x[:, :, r, c] = colours
                out[r, c] = (net(x).argmax(1) != label).any()
    return out


def flips_at(net: nn.Module, images: Tensor, labels: Tensor, result) -> Tensor:
    """Whether each VULNERABLE position's reported colour flips the fp32 prediction (vector over them)."""
    n, r, c = (result.position_status == VULNERABLE).nonzero(as_tuple=True)
    x = images[n].clone()
    x[torch.arange(len(n)), :, r, c] = result.colours[n, r, c]
    with torch.no_grad():
        return net(x).argmax(1) != labels[n]


@pytest.fixture(scope="module")
def graded() -> tuple[nn.Module, Tensor, Tensor, Tensor]:
    """A tiny net, two images with both robust and vulnerable positions, their labels and grid flips (H, W)."""
    net = tiny_net(seed=2)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    labels = net(images).argmax(1)
    return net, images, labels, torch.stack([grid_flips(net, images[i], int(labels[i])) for i in range(2)])


@pytest.mark.parametrize("threat", ["8bit", "continuous"])
def test_verdicts_agree_with_grid_enumeration(threat: str, graded: tuple[nn.Module, Tensor, Tensor, Tensor]) -> None:
    net, images, labels, flips = graded
    # The continuous threat cannot enumerate: a smaller budget leaves some positions UNKNOWN, which is allowed.
    cfg = CertifyConfig(threat=threat, method="backward", corners=False, all_positions=True,
                        max_boxes=4000 if threat == "8bit" else 1500, max_seconds=1e9)
    result = certify(net, images, labels, cfg)
    status = result.position_status
    assert not (flips & (status == ROBUST)).any()  # no proof contradicted by a grid colour
    assert flips_at(net, images, labels, result).all()  # every reported colour flips
    colours = result.colours[status == VULNERABLE]
    assert ((colours * 255 - (colours * 255).round()).abs() < 1e-4).all()
    assert result.colours[status != VULNERABLE].isnan().all()
    if threat == "8bit":  # complete: every position decided, every grid flip found
        assert (status != UNKNOWN).all()
        assert (status[flips] == VULNERABLE).all()
        assert (status == VULNERABLE).any() and (status == ROBUST).any()  # the fixture has both kinds
        assert result.status.tolist() == [VULNERABLE if (s == VULNERABLE).any() else ROBUST for s in status]


def test_corner_search_settles_an_image_without_boxes() -> None:
    # A model that predicts class 1 when pixel (2, 5) is white: the corner search finds it.
    net = nn.Sequential(nn.Conv2d(3, 1, 1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2)).eval()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(-2.5)
        net[3].weight.zero_()
        net[3].weight[1, 2 * 8 + 5] = 10.0
        net[3].bias.copy_(torch.tensor([1.0, 0.0]))
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5
    labels = torch.zeros(3, dtype=torch.long)
    result = certify(net, images, labels)
    assert (result.status == VULNERABLE).all() and (result.boxes == 0).all()
    assert torch.equal(result.colours[:, 2, 5], torch.ones(3, 3))
    black = certify(net, torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long), CertifyConfig(corners=False))
    assert (black.status == VULNERABLE).all()  # without corners the boxes' probes find the white pixel too
    assert (black.position_status[:, 2, 5] == VULNERABLE).all()
    blocked = certify(net, images, labels, CertifyConfig(corners=False, max_boxes=1, chunk_size=1))
    assert (blocked.boxes <= 2).all() and (blocked.status != ROBUST).all()


def test_a_model_without_flips_is_proven_and_its_mode_restored() -> None:
    net = tiny_net(seed=0)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = net(images).argmax(1)
    net.train()
    result = certify(net, images, labels, CertifyConfig(method="alpha", max_boxes=10 ** 5))
    assert net.training
    assert (result.status == ROBUST).all() and (result.position_status == ROBUST).all()
    assert (result.boxes >= 64).all() and (result.bound_evals >= result.boxes).all() and (result.seconds > 0).all()


def test_lab_03s_median_filter_is_verified_as_the_models_median_layer() -> None:
    # defences.MedianFilter in front of a model trained without it (Lab 03) is the same function as models.MedianBlur:
    # the verifier recognises both by ``median_window`` and decides every position alike.
    net = build("median 3x3", seed=1)
    behind = net[1]
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    labels = net(images).argmax(1)
    cfg = CertifyConfig(method="interval", all_positions=True, max_boxes=20_000)
    ours, lab03 = certify(net, images, labels, cfg), certify(defended(behind, MedianFilter(3)), images, labels, cfg)
    assert torch.equal(ours.position_status, lab03.position_status) and torch.equal(ours.status, lab03.status)
    assert (ours.position_status != UNKNOWN).any()
    with pytest.raises(NotCertifiable, match="MedianFilter.*odd"):
        certify(defended(behind, MedianFilter(2)), images, labels, cfg)


@pytest.mark.parametrize("layer", [nn.Tanh(), nn.GELU(), nn.Sequential(Normalize(), AttentionGate()),
                                   nn.Upsample(scale_factor=2), MedianBlur(2), nn.Sequential(Normalize(), MedianBlur()),
                                   nn.Sequential(Normalize(), BitDepth(4))])
def test_unsupported_layers_are_named(layer: nn.Module) -> None:
    net = nn.Sequential(layer, nn.Flatten(), nn.LazyLinear(3))
    net(torch.zeros(1, 3, 8, 8))
    name = type(layer[-1] if isinstance(layer, nn.Sequential) else layer).__name__
    with pytest.raises(NotCertifiable, match=name):
        certify(net.eval(), torch.rand(1, 3, 8, 8), torch.zeros(1, dtype=torch.long))


def test_bad_inputs_get_clear_errors() -> None:
    net, x, y = tiny_net(), torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="N, C, H, W"):
        certify(net, x[0], y)
    with pytest.raises(ValueError, match="labels"):
        certify(net, x, y[:1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        certify(net, x * 2, y)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        certify(net, x, y + 5)
    for bad in (dict(threat="linf"), dict(method="exact"), dict(chunk_size=0), dict(enumerate_below=0),
                dict(dtype="float16"), dict(max_seconds=-1.0)):
        with pytest.raises(ValueError):
            CertifyConfig(**bad)
    empty = certify(net, x[:0], y[:0])
    assert empty.status.shape == (0,) and empty.position_status.shape == (0, 8, 8)


def test_positions_and_position_budget_restrict_the_search() -> None:
    net = tiny_net(seed=2)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    labels = net(images).argmax(1)
    cfg = CertifyConfig(method="interval", corners=False, all_positions=True, positions=((0, 0), (3, 4), (7, 2)),
                        position_budget=5, chunk_size=4)
    result = certify(net, images, labels, cfg)
    chosen = torch.zeros(8, 8, dtype=torch.bool)
    chosen[[0, 3, 7], [0, 4, 2]] = True
    assert (result.position_status[:, ~chosen] == UNKNOWN).all() and (result.position_boxes[:, ~chosen] == 0).all()
    assert (result.position_boxes[:, chosen] >= 1).all() and (result.position_boxes <= 5 + 4).all()
    assert (result.status != ROBUST).all()  # unsearched positions are never proven
    assert torch.equal(result.position_boxes.sum((1, 2)), result.boxes)
    with pytest.raises(ValueError, match="outside"):
        certify(net, images, labels, CertifyConfig(positions=((8, 0),)))


def test_results_survive_saving_and_chunking(tmp_path) -> None:
    net = tiny_net(seed=4)
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    labels = net(images).argmax(1)
    cfg = CertifyConfig(method="backward", max_boxes=300, positions=((1, 1), (6, 2)), all_positions=True)
    whole = certify(net, images, labels, cfg)
    parts = CertifyResult.cat([certify(net, images[:2], labels[:2], cfg), certify(net, images[2:], labels[2:], cfg)])
    for name in ("status", "position_status", "clean_correct"):
        assert torch.equal(getattr(parts, name), getattr(whole, name)), name
    proven = whole.position_status == ROBUST  # a proof's split tree does not depend on the batch
    assert proven.any() and torch.equal(parts.position_boxes[proven], whole.position_boxes[proven])
    torch.save(whole.to_dict(), tmp_path / "r.pt")
    back = CertifyResult.from_dict(torch.load(tmp_path / "r.pt", weights_only=True))
    assert back.config == cfg and torch.equal(back.colours.nan_to_num(-1), whole.colours.nan_to_num(-1))
    with pytest.raises(ValueError):
        CertifyResult.cat([whole, certify(net, images, labels, CertifyConfig(max_boxes=1))])


@pytest.mark.parametrize("name, seed, index", [("gate pixel", 5, 0), ("gate channel 5x5", 0, 0),
                                              ("residual blocks (identity, projection)", 1, 15), ("median 3x3", 1, 1),
                                              ("median 3x3", 2, 0), ("bit depth 3", 6, 2)])
def test_gated_median_and_residual_models_are_verified_completely(name: str, seed: int, index: int) -> None:
    net = build(name, seed=seed)
    images = torch.rand(index + 1, 3, 8, 8, generator=torch.Generator().manual_seed(seed))[index:]
    labels = net(images).argmax(1)
    result = certify(net, images, labels, CertifyConfig(method="backward", corners=False, all_positions=True,
                                                        max_boxes=20_000))
    status = result.position_status[0]
    flips = grid_flips(net, images[0], int(labels[0]), levels=6)
    assert (status != UNKNOWN).all() and not (flips & (status == ROBUST)).any()
    assert (status[flips] == VULNERABLE).all() and flips_at(net, images, labels, result).all()
    assert (status == ROBUST).any() and (status == VULNERABLE).any()  # both kinds, so both checks bite


@pytest.mark.parametrize("kernel, stride, size", [((2, 2), (2, 2), (8, 6)), ((3, 3), (2, 2), (7, 7)),
                                                  ((2, 2), (2, 2), (5, 4)), ((1, 2), (1, 2), (3, 4))])
def test_the_pools_unfold_equals_torch_unfold(kernel, stride, size) -> None:
    # The reshape path (windows that tile the map) and the im2col path give the same columns in the same order.
    x = torch.rand(5, 1, *size, dtype=torch.float64)
    assert torch.equal(unfold(x, kernel, stride), F.unfold(x, kernel, stride=stride))
