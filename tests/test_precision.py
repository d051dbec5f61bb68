"""Precision chosen by the machine: "auto" is bf16 only where the device runs it natively."""

from __future__ import annotations

import pytest
import torch

from labkit import precision
from labkit.precision import PRECISIONS, check_precision, describe, native_bf16, resolve_precision
from labkit.train import TrainConfig, get_or_train


@pytest.fixture(params=[True, False], ids=["native", "fallback"])
def cpu_bf16(request, monkeypatch) -> bool:
    """oneDNN's bf16 check patched to say yes (AVX-512-BF16 / AMX) or no (bf16 convs by slow fallback), on a CPU
    whose flags cannot be read (oneDNN decides alone)."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: request.param)
    monkeypatch.setattr(precision, "cpu_flags", lambda: None)
    return request.param


def test_auto_follows_the_cpu(cpu_bf16):
    assert native_bf16("cpu") is cpu_bf16
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_bf16 else "fp32")
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"  # as asked
    line = describe("cpu")
    assert line.startswith(f"precision: auto -> {'bf16' if cpu_bf16 else 'fp32'} (")
    assert ("has native bf16" if cpu_bf16 else "has no native bf16") in line


@pytest.mark.parametrize(("flags", "native"), [("avx512f avx512_vnni", False), ("avx512f avx512_bf16", True),
                                                ("avx2 amx_bf16 amx_tile", True)])
def test_the_cpu_flags_overrule_onednn(monkeypatch, tmp_path, flags, native):
    # oneDNN says yes on every AVX-512 core (the project's Xeon without AVX-512-BF16 ran bf16 2.6x slower).
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: some cpu\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n")
    assert precision.cpu_flags(info) == frozenset(f"fpu sse2 {flags}".split())
    read = precision.cpu_flags(info)
    monkeypatch.setattr(precision, "cpu_flags", lambda: read)
    assert native_bf16("cpu") is native
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")


def test_unreadable_cpu_flags_are_none(tmp_path):
    assert precision.cpu_flags(tmp_path / "missing") is None
    (tmp_path / "noflags").write_text("processor\t: 0\n")
    assert precision.cpu_flags(tmp_path / "noflags") is None


def test_a_cpu_build_without_onednn_is_not_native(monkeypatch):
    def broken() -> bool:
        raise RuntimeError("no mkldnn")

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", broken)
    assert not native_bf16("cpu") and resolve_precision("auto", "cpu") == "fp32"


@pytest.mark.parametrize("supported", [True, False])
def test_auto_follows_a_fake_cuda_device(monkeypatch, supported):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert native_bf16("cuda") is supported
    assert resolve_precision("auto", torch.device("cuda", 0)) == ("bf16" if supported else "fp32")
    assert describe("cuda").startswith(f"precision: auto -> {'bf16' if supported else 'fp32'} (this GPU")


def test_no_cuda_means_no_native_cuda_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not native_bf16("cuda") and not native_bf16("meta")


def test_unknown_precisions_are_rejected():
    assert PRECISIONS == ("auto", "fp32", "bf16") and check_precision("auto") == "auto"
    for bad in ("fp16", "BF16", None):
        with pytest.raises(ValueError, match="precision"):
            resolve_precision(bad, "cpu")
    with pytest.raises(ValueError, match="precision"):
        describe("cpu", "half")


def test_a_tiny_training_run_records_what_ran(cpu_bf16, tiny_folder):
    cfg = TrainConfig(epochs=1, batch_size=60, train_size=60, eval_size=20)  # precision "auto"
    trained = get_or_train(cfg, "cpu", progress=False)
    ran = "bf16" if cpu_bf16 else "fp32"
    assert trained.precision_used == ran and torch.load(trained.path)["precision_used"] == ran


def test_describe_explains_a_forced_precision(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert describe("cpu", "bf16") == ("precision: bf16 -> bf16 (this CPU has no native bf16: bf16 runs by a "
                                       "slow fallback here)")
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert describe("cpu", "fp32") == "precision: fp32 -> fp32 (this CPU has native bf16, fp32 asked for)"
