"""Parameter checks shared by labkit's modules (apr, attention, defences): one place, one wording.

A bad value raises a ValueError that names the parameter, the accepted range and the value given. A bool is
never a number here (``True`` is an ``int`` to Python, but a flag passed as a count or a weight is a mistake).
"""

from __future__ import annotations

import math
from typing import Any


def is_number(value: Any) -> bool:
    """Whether ``value`` is an int or a float (NaN and infinities included), and not a bool."""
    return not isinstance(value, bool) and isinstance(value, (int, float))


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high] (``high=None``: no upper bound), else a ValueError saying so."""
    bound = f"in {low}..{high}" if high is not None else f">= {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer {bound}, got {value}")
    return value


def check_number(name: str, value: Any, low: float, high: float | None = None) -> float:
    """``value`` as a finite float in [low, high] (``high=None``: no upper bound), else a ValueError saying so."""
    bound = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
    if not is_number(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def check_positive(name: str, value: Any, *, or_zero: bool = False) -> float:
    """``value`` as a float > 0 (>= 0 with ``or_zero``), else a ValueError saying so.

    Infinity passes (no upper bound is imposed), NaN does not.
    """
    if not is_number(value) or not (value >= 0 if or_zero else value > 0):
        raise ValueError(f"{name} must be a number {'>=' if or_zero else '>'} 0, got {value!r}")
    return float(value)
