"""The model registry: [0, 1] inputs, normalisation inside, ten logits out."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labkit.models import (CIFAR10_MEAN, REGISTRY, AttentionGate, Normalize, build_model, count_parameters, gate_of,
                           resolve_device)


def images(n: int = 4, size: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registered_models_take_unit_range_images(name):
    model = build_model(name).eval()
    assert isinstance(model[0], Normalize)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_small_cnn_matches_the_measured_size():
    assert 280_000 < count_parameters(build_model("small_cnn")) < 300_000


def test_su_et_als_networks_have_their_published_sizes():
    # All-CNN-C: 1.37M weights (Springenberg et al. 2015, Table 1 "C"); NiN for CIFAR-10: about 0.97M.
    assert 1_360_000 < count_parameters(build_model("allconv")) < 1_380_000
    assert 960_000 < count_parameters(build_model("nin")) < 980_000
    allconv = build_model("allconv")
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for m in allconv.modules())  # all conv


def test_normalize_maps_the_mean_to_zero():
    x = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert Normalize()(x).abs().max() < 1e-6


def test_unknown_model_and_devices():
    with pytest.raises(ValueError, match="registered"):
        build_model("alexnet")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")


# -- the attention gate (APR's) ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,channels", [("pixel", 1), ("channel", 3)])
def test_gate_shapes_and_range(mode: str, channels: int) -> None:
    gate = AttentionGate(mode=mode, kernel_size=3)
    with torch.no_grad():
        gate.conv.weight.normal_(0, 1)  # a non-trivial map
    x = images(5, 8)
    a = gate.attention(x)
    y = gate(x)
    assert a.shape == (5, channels, 8, 8)
    assert ((a > 0) & (a < 1)).all()
    assert y.shape == x.shape
    assert (y >= 0).all() and (y <= x + 1e-7).all()  # the gate only dims pixels: output in [0, x]
    assert torch.allclose(y, a * x)


def test_gate_starts_at_its_initial_value() -> None:
    x = images()
    assert torch.allclose(AttentionGate().attention(x), torch.full((4, 1, 8, 8), 0.5))
    assert torch.allclose(AttentionGate(initial=0.9)(x), 0.9 * x, atol=1e-6)


def test_gate_is_differentiable_in_input_and_weights() -> None:
    gate = AttentionGate("pixel", 5)
    x = images().requires_grad_(True)
    (gate(x) ** 2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert gate.conv.weight.grad is not None and gate.conv.weight.grad.abs().sum() > 0
    assert gate.conv.bias.grad is not None and gate.conv.bias.grad.abs().sum() > 0
    # Float64 gradcheck of the whole gate, input and weights, with a random (non-constant) map.
    g64 = AttentionGate("channel", 3).double()
    with torch.no_grad():
        g64.conv.weight.normal_(0, 0.5)
    x64 = images(2, 5, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t, w: F.conv2d(t, w, g64.conv.bias, padding=1).sigmoid() * t,
                                    (x64, g64.conv.weight.detach().clone().requires_grad_(True)), fast_mode=True)


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "spatial"}, "mode"), ({"kernel_size": 0}, "kernel_size"), ({"kernel_size": 4}, "odd"),
    ({"kernel_size": 3.0}, "kernel_size"), ({"kernel_size": True}, "kernel_size"),
    ({"initial": 1.0}, "initial"), ({"initial": float("nan")}, "initial"),
])
def test_gate_rejects_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AttentionGate(**kwargs)


def test_gate_rejects_non_rgb_input() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        AttentionGate()(torch.rand(2, 1, 8, 8))


def test_gate_of_finds_the_gate_or_none() -> None:
    gate = AttentionGate()
    assert gate_of(torch.nn.Sequential(gate, build_model("small_cnn"))) is gate
    assert gate_of(build_model("small_cnn")) is None


def test_models_take_the_datasets_channels_classes_and_statistics():
    from labkit.data import DATASETS
    from labkit.models import REGISTRY, Normalize, build_model

    for name in REGISTRY:
        net = REGISTRY[name](7, in_channels=1)
        first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        assert first.in_channels == 1, name
    m = build_model("survey_cnn", 10, "fashion-mnist").eval()
    assert isinstance(m[0], Normalize) and m[0].mean.flatten().tolist() == pytest.approx(DATASETS["fashion-mnist"].mean)
    out = m(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10) and torch.allclose(out.exp().sum(1), torch.ones(3))  # log-softmax, as the survey's
    assert build_model("survey_cnn", 43, "gtsrb")(torch.rand(2, 3, 32, 32)).shape == (2, 43)
