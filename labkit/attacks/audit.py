"""What an attack changed and whether its successes hold, checked independently of the attack.

Part of the attack contract (``labkit.attacks.base``): every attack returns an ``AttackResult``, and these functions
read nothing but that result, the clean images and the model, so they judge every attack alike.

* ``changed_pixels``: pixel positions changed per image (the L0 of a one-pixel attack's threat model).
* ``perturbation_norms``: L0, L2 and L-infinity per image, in [0, 1] pixel units.
* ``verify``: which reported successes hold up when checked from scratch (budget, range, the model's fp32 answer).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from labkit.attacks.base import AttackResult, model_device


def changed_pixels(originals: Tensor, adv: Tensor) -> Tensor:
    """Number of pixel positions (any channel) where ``adv`` differs from ``originals``, (N,)."""
    return (adv != originals).any(1).flatten(1).sum(1)


def perturbation_norms(clean: Tensor, adv: Tensor) -> dict[str, Tensor]:
    """How far each adversarial image lies from its clean one, in [0, 1] pixel units: a dict of (N,) tensors.

    "L0": pixel positions changed in any channel (int64, ``changed_pixels``); "L2": the Euclidean norm of
    the difference over all channels and pixels; "Linf": its largest absolute entry (both float32). For
    ``clean``, ``adv`` (N, C, H, W); the one-pixel attacks bound L0, FGSM/PGD Linf, CW and DeepFool minimise L2.
    """
    if clean.shape != adv.shape:
        raise ValueError(f"clean and adv must have the same shape, got {tuple(clean.shape)} and {tuple(adv.shape)}")
    diff = (adv.float() - clean.float()).flatten(1)
    linf = diff.abs().max(1).values if diff.shape[1] else torch.zeros(len(diff))
    return {"L0": changed_pixels(clean, adv), "L2": diff.norm(dim=1), "Linf": linf}


@torch.no_grad()
def verify(model: nn.Module, originals: Tensor, result: AttackResult, max_pixels: int,
           batch_size: int = 256) -> Tensor:
    """Which reported successes hold up, checked from scratch: (N,) bool.

    A success holds when the returned image differs from the original in at
    most ``max_pixels`` pixel positions, lies in [0, 1], and the model (fp32,
    eval mode) predicts a class other than the label (untargeted) or the target.
    ``originals``: the clean images (N, C, H, W) in [0, 1], on any device; ``batch_size`` images per forward pass.
    """
    if model.training:
        raise ValueError("call model.eval() before verifying")
    adv = result.adv_images
    sparse = changed_pixels(originals.cpu(), adv) <= max_pixels
    in_range = (adv >= 0).flatten(1).all(1) & (adv <= 1).flatten(1).all(1)
    dev = model_device(model)
    preds = torch.cat([model(adv[s:s + batch_size].to(dev)).argmax(1).cpu()
                       for s in range(0, len(adv), batch_size)]) if len(adv) else torch.empty(0, dtype=torch.long)
    fooled = preds == result.targets if result.targets is not None else preds != result.labels
    return result.success & sparse & in_range & fooled
