"""The model registry: [0, 1] inputs, normalisation inside, ten logits out."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labkit import models
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


def test_device_name_says_what_ran_the_timings():
    said = models.device_name("cpu")
    assert said.endswith("PyTorch threads (CPU)") and f"{torch.get_num_threads()} PyTorch" in said


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


# -- ImageNet models: torchvision's architectures, weights only from local files ------------------------------------


@pytest.mark.parametrize("name", sorted(models.IMAGENET_ARCHITECTURES))
def test_imagenet_models_hold_imagenet_normalisation_and_take_224_pixels(name):
    torch.manual_seed(0)
    model = models.imagenet_model(name, pretrained=False, num_classes=3)
    assert not model.training and isinstance(model[0], Normalize)
    assert torch.allclose(model[0].mean.flatten(), torch.tensor(models.IMAGENET_MEAN))
    x = images(1, 224)
    with torch.no_grad():
        out = model(x)
        by_hand = model[1]((x - torch.tensor(models.IMAGENET_MEAN).view(1, 3, 1, 1))
                           / torch.tensor(models.IMAGENET_STD).view(1, 3, 1, 1))
    assert out.shape == (1, 3) and torch.allclose(out, by_hand, atol=1e-5)


def test_imagenet_model_with_apr_gate_gates_pixels_before_the_normalisation():
    model = models.imagenet_model("alexnet", pretrained=False, gate="pixel", num_classes=3)
    assert isinstance(model[0], AttentionGate) and gate_of(model) is model[0] and isinstance(model[1][0], Normalize)
    x = images(1, 224)
    with torch.no_grad():
        assert torch.equal(model(x), model[1](0.5 * x))  # the gate starts as the constant 0.5
    with pytest.raises(ValueError, match="gate"):
        models.imagenet_model("alexnet", pretrained=False, gate="spatial")


def test_missing_imagenet_weights_name_the_file_and_where_it_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"  # torchvision's file name for the weights
    assert models.imagenet_weights_file("vgg19") == expected
    with pytest.raises(FileNotFoundError, match=rf"no weights file for vgg19 at {expected}.*put it at {expected}"):
        models.imagenet_model("vgg19")
    with pytest.raises(FileNotFoundError, match="elsewhere.pth"):
        models.imagenet_model("resnet50", weights_file=tmp_path / "elsewhere.pth")
    with pytest.raises(ValueError, match="1000 classes"):
        models.imagenet_model("resnet50", num_classes=10)


def test_imagenet_weights_load_from_torch_home_or_a_file(tmp_path, monkeypatch):
    import torchvision

    # SqueezeNet stands in for the three (same mechanism, 5 MB of weights instead of 100-550 MB).
    monkeypatch.setitem(models.IMAGENET_ARCHITECTURES, "squeezenet1_1",
                        ("squeezenet1_1", "SqueezeNet1_1_Weights.IMAGENET1K_V1"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(1)
    state = torchvision.models.squeezenet1_1(weights=None).state_dict()
    path = models.imagenet_weights_file("squeezenet1_1")
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    for model in (models.imagenet_model("squeezenet1_1"), models.imagenet_model("squeezenet1_1", weights_file=path)):
        assert all(torch.equal(model[1].state_dict()[k], v) for k, v in state.items())
