"""benchmarks/certify_speed.py (issue #23 §5): its loader takes labkit's checkpoints as labkit.train builds them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from labkit.cache import canonical
from labkit.train import CHECKPOINT_FORMAT, TrainConfig, build_for_config

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "certify_speed.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("certify_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_checkpoint(path: Path, config: TrainConfig) -> torch.nn.Module:
    """A checkpoint in labkit.train's format (weights plus config) of a random-init model built for ``config``."""
    torch.manual_seed(0)
    model = build_for_config(config).eval()
    torch.save({"format": CHECKPOINT_FORMAT, "config": canonical(config), "state_dict": model.state_dict(),
                "history": [], "seconds": 0.0, "precision_used": "fp32", "init_key": None}, path)
    return model


@pytest.mark.parametrize("median", [0, 3])
def test_a_labkit_checkpoint_loads_strictly_with_its_front(bench, tmp_path, median):
    config = TrainConfig(model="small_cnn", median=median)
    model = save_checkpoint(tmp_path / "m.pt", config)
    loaded = bench.load_model(tmp_path / "m.pt", "small_cnn")  # load_state_dict is strict: a missing key raises
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert isinstance(loaded[0], type(model[0]))  # the median filter (or Normalize) in front, as trained


def test_a_bare_state_dict_goes_into_the_named_architecture(bench, tmp_path):
    model = build_for_config(TrainConfig(model="small_cnn")).eval()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    loaded = bench.load_model(tmp_path / "sd.pt", "small_cnn")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_the_machine_is_named(bench):
    assert bench.cpu_name().strip()


def test_positions_are_parsed_and_bad_ones_refused(bench):
    import argparse

    assert bench.position("0,31") == (0, 31)
    with pytest.raises(argparse.ArgumentTypeError, match="ROW,COL"):
        bench.position("0;31")
