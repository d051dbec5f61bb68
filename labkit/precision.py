"""Which floating-point precision this device runs fast: chosen per machine, never assumed.

bf16 autocast trains about 3x faster than fp32 on a CPU with native bf16 (AVX-512-BF16 / AMX, seen by
oneDNN) and on CUDA GPUs with bf16 support, but about 7x *slower* on a CPU without it: PyTorch then falls
back to ``slow_conv2d`` with a naive GEMM (measured on this project's machines, ``shared/NOTES.md``).
So configs ask for a precision (``"auto"``, ``"fp32"`` or ``"bf16"``) and :func:`resolve_precision` says
what runs. Cache keys hash what was *asked* (a record made with ``"auto"`` stays valid on another
machine); records store what *ran* (``precision_used``), so a table can say which precision produced it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

from labkit.models import resolve_device

PRECISIONS = ("auto", "fp32", "bf16")
#: CPU flags (Linux ``/proc/cpuinfo``) of bf16 arithmetic in hardware: AVX-512-BF16 or AMX-BF16.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


@cache
def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The instruction-set flags of this machine's first CPU from ``cpuinfo``; None where it cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:  # not Linux (or no /proc): nobody lists the flags
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return None


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bf16 convolutions and matrix products natively (fast), not by fallback."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type == "cpu":
        # oneDNN's check says yes on any AVX-512 core, yet without AVX-512-BF16 or AMX its bf16 convolutions
        # convert to fp32 and back: a small-CNN step ran 2.6x slower than fp32 on an AVX-512 Xeon (2026-12-07,
        # shared/NOTES.md). So where the CPU's flags can be read they decide; elsewhere oneDNN's check does.
        flags = cpu_flags()
        if flags is not None and not flags & BF16_CPU_FLAGS:
            return False
        checker = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        try:
            return bool(checker()) if checker is not None else False
        except RuntimeError:  # a build without oneDNN
            return False
    return False


def check_precision(precision: str) -> str:
    """``precision`` if it is one of ``PRECISIONS``, else a ValueError naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    return precision


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """What runs for the requested ``precision`` on ``device``: ``"fp32"`` or ``"bf16"``.

    ``"auto"`` is bf16 where it is native (:func:`native_bf16`), else fp32; explicit requests are honoured.
    """
    check_precision(precision)
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def describe(device: torch.device | str = "auto", precision: str = "auto") -> str:
    """One line a lab can print: what ``precision`` resolves to on ``device`` ("auto": CUDA if present) and why.

    E.g. ``"precision: auto -> bf16 (this CPU has native bf16)"``.
    """
    dev = resolve_device(device)
    used = resolve_precision(precision, dev)
    kind = "GPU" if dev.type == "cuda" else dev.type.upper()
    native = native_bf16(dev)
    why = f"this {kind} has native bf16" if native else f"this {kind} has no native bf16"
    if precision == "bf16" and not native:
        why += ": bf16 runs by a slow fallback here"
    elif precision == "fp32" and native:
        why += ", fp32 asked for"
    return f"precision: {precision} -> {used} ({why})"
