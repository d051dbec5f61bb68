"""Attacks, one class per attack, one contract (see ``labkit.attacks.base``).

Every attack is an :class:`~labkit.attacks.base.Attack`: ``Attack(model, config=None, **overrides)``, called as
``attack(images, labels, targets=None)`` on [0, 1] NCHW images, returning an ``AttackResult``.
labkit's own: ``OnePixel`` (DE), ``CornerSearch``, ``GradientCorner``, ``SparseRS``, ``PixelSwap`` (the survey's);
torchattacks' under the same contract (``labkit.attacks.wrapped``): ``FGSM``, ``PGD``, ``MIFGSM``, ``DeepFool``,
``CW``, ``Pixle``. What every result is checked with, whatever attack made it (``labkit.attacks.audit``):
``verify``, ``perturbation_norms``, ``changed_pixels``.
"""

from labkit.attacks.audit import changed_pixels, perturbation_norms, verify
from labkit.attacks.base import Attack, AttackResult, Problem, apply_pixels, check_inputs
from labkit.attacks.corner import CornerConfig, CornerSearch
from labkit.attacks.gradient import GradientCorner, GradientCornerConfig
from labkit.attacks.onepixel import DEConfig, OnePixel, minimize
from labkit.attacks.pixel_swap import PixelSwap, PixelSwapConfig
from labkit.attacks.sparse_rs import SparseRS, SparseRSConfig
from labkit.attacks.wrapped import (CW, PGD, SURVEY_ATTACKS, WRAPPED, CWConfig, DeepFool, DeepFoolConfig, FGSM,
                                    FGSMConfig, MIFGSM, MIFGSMConfig, PGDConfig, Pixle, PixleConfig, TorchAttack,
                                    survey_attack, torch_attack)

__all__ = [
    "Attack", "AttackResult", "CW", "CWConfig", "CornerConfig", "CornerSearch", "DEConfig", "DeepFool",
    "DeepFoolConfig", "FGSM", "FGSMConfig", "GradientCorner", "GradientCornerConfig", "MIFGSM", "MIFGSMConfig",
    "OnePixel", "PGD", "PGDConfig", "PixelSwap", "PixelSwapConfig", "Pixle", "PixleConfig", "Problem", "SparseRS",
    "SURVEY_ATTACKS", "SparseRSConfig", "TorchAttack", "WRAPPED", "apply_pixels", "changed_pixels", "check_inputs",
    "minimize", "perturbation_norms", "survey_attack", "torch_attack", "verify",
]
