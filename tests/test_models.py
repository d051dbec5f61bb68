"""The model registry: [0, 1] inputs, normalisation inside, ten logits out."""

from __future__ import annotations

import pytest
import torch

from labkit.models import CIFAR10_MEAN, REGISTRY, Normalize, build_model, count_parameters, resolve_device


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registered_models_take_unit_range_images(name):
    model = build_model(name).eval()
    assert isinstance(model[0], Normalize)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_small_cnn_matches_the_measured_size():
    assert 280_000 < count_parameters(build_model("small_cnn")) < 300_000


def test_normalize_maps_the_mean_to_zero():
    x = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert Normalize()(x).abs().max() < 1e-6


def test_unknown_model_and_devices():
    with pytest.raises(ValueError, match="registered"):
        build_model("alexnet")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
