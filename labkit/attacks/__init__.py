"""Attacks, one class per attack, one contract (see ``labkit.attacks.base``)."""

from labkit.attacks.base import AttackResult, apply_pixels, check_inputs
from labkit.attacks.corner import CornerConfig, CornerSearch
from labkit.attacks.gradient import GradientCorner, GradientCornerConfig
from labkit.attacks.onepixel import DEConfig, OnePixel, minimize

__all__ = [
    "AttackResult", "CornerConfig", "CornerSearch", "DEConfig", "GradientCorner", "GradientCornerConfig",
    "OnePixel", "apply_pixels", "check_inputs", "minimize",
]
