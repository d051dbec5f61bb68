"""From attack records to numbers a reader can trust.

* ``verify`` re-checks every success an attack reports, independently of the attack.
* ``run_attack`` runs an attack through the cache: per-image records are saved
  as the run goes, so an interrupted evaluation resumes where it stopped.
* ``wilson`` and ``mean_ci`` give 95% confidence intervals; ``summarize`` turns
  records into one table row (aggregates are always computed from records).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from labkit.attacks.base import AttackResult, model_device
from labkit.cache import cache_path, config_key, load_checked, save_atomic

RECORD_FORMAT = 1


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) for a proportion; (nan, nan) when n == 0."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval across runs (seeds): (mean, low, high); no interval for one run."""
    vals = [float(v) for v in values]
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, float("nan"), float("nan")
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    half = t.ppf(0.5 + confidence / 2, len(vals) - 1) * sd / math.sqrt(len(vals))
    return mean, mean - half, mean + half


def changed_pixels(originals: Tensor, adv: Tensor) -> Tensor:
    """Number of pixel positions (any channel) where ``adv`` differs from ``originals``, (N,)."""
    return (adv != originals).any(1).flatten(1).sum(1)


@torch.no_grad()
def verify(model: nn.Module, originals: Tensor, result: AttackResult, max_pixels: int,
           batch_size: int = 256) -> Tensor:
    """Which reported successes hold up, checked from scratch: (N,) bool.

    A success holds when the returned image differs from the original in at
    most ``max_pixels`` pixel positions, lies in [0, 1], and the model (fp32,
    eval mode) predicts a class other than the label (untargeted) or the target.
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


def success_at_budgets(result: AttackResult, budgets: Sequence[int]) -> list[float]:
    """Fraction of images broken within each query budget (from per-image queries)."""
    return [((result.success) & (result.queries <= b)).float().mean().item() for b in budgets]


def run_attack(attack: Any, images: Tensor, labels: Tensor, *, model_key: str, indices: Tensor,
               targets: Tensor | None = None, chunk_images: int = 50, progress: bool = True) -> AttackResult:
    """Run ``attack`` on images (N, C, H, W) through the cache, resumably.

    The cache key hashes the model's key, the attack's class and config, and the
    dataset ``indices`` (and targets) of the images. Records are saved after
    every ``chunk_images`` images; a rerun loads what is done and attacks the
    rest. The attacks are batch-independent, so a resumed run returns what an
    uninterrupted one would.
    """
    key = config_key("attack", model_key, type(attack).__name__, attack.config, indices,
                     None if targets is None else targets)
    path = cache_path("attacks", key)
    expect = {"format": RECORD_FORMAT, "key": key, "n": len(images)}
    saved = load_checked(path, expect)
    parts = [AttackResult.from_dict(saved["result"])] if saved and saved["done"] > 0 else []
    done = saved["done"] if saved else 0
    bar = tqdm(total=len(images), initial=done, desc=f"{type(attack).__name__} ({model_key[:6]})",
               disable=not progress)
    for start in range(done, len(images), chunk_images):
        sl = slice(start, start + chunk_images)
        parts.append(attack(images[sl], labels[sl], None if targets is None else targets[sl]))
        done = min(start + chunk_images, len(images))
        merged = AttackResult.cat(parts)
        parts = [merged]
        save_atomic({**expect, "done": done, "result": merged.to_dict()}, path)
        bar.update(done - bar.n)
    bar.close()
    if not parts:
        raise ValueError("run_attack needs at least one image")
    return parts[0]


def summarize(result: AttackResult, verified: Tensor, clean_accuracy: float, **labels: Any) -> dict[str, Any]:
    """One table row: clean accuracy, ASR with its Wilson 95% CI, robustness, robust accuracy.

    ASR is over the attacked (correctly classified) images and counts only
    verified successes; robust accuracy over all images is estimated as
    clean accuracy x (1 - ASR).
    """
    n, k = len(result), int(verified.sum())
    asr = k / n if n else float("nan")
    lo, hi = wilson(k, n)
    return {**labels, "clean_acc": clean_accuracy, "attacked": n, "asr": asr, "asr_lo": lo, "asr_hi": hi,
            "robustness": 1 - asr, "robust_acc": clean_accuracy * (1 - asr),
            "mean_queries": result.queries.float().mean().item(),
            "unverified": int(result.success.sum()) - k}
