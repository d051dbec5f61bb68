"""Labs 05-07: the APR paper's tables, as labkit runs them.

* Lab 05: ``table1_suite``, APR and the baselines of the paper's Table 1, for every model and seed of a profile.
* Lab 06: ``ablation_suite``, the four variants of its Table 3 (each switches one component off).
* Lab 07: the overhead: ``time_training`` (seconds per training step, side by side), ``measure_overhead`` (the
  undefended model and the four variants, training steps and inference), ``cached_training_seconds`` (whole
  cached runs).

The method (the gate, the objective, ``apr_config``) is ``labkit.apr``; the generic protocol these suites run
(``train_suite``, ``attacked_indices``, ``evaluate_suite``) is ``labkit.evaluate``; their tables and verdicts are
``labkit.report``'s. Sizes: the profile's ``apr`` (inner attack) and ``timing`` sections (``Profile.lab``).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import torch

from labkit.apr import VARIANTS, apr_config, inner_positions
from labkit.data import first_n, load_cifar10
from labkit.defences import JPEG, PGDAT, BitDepth, OnePixelAT, distillation_config
from labkit.evaluate import Entry, time_inference, timing_repeats
from labkit.models import resolve_device, synchronize
from labkit.profiles import Profile
from labkit.train import TrainConfig, TrainContext, build_for_config, get_or_train, make_optimizer, train_step

__all__ = ["ablation_suite", "cached_training_seconds", "measure_overhead", "overhead_configs", "table1_suite",
           "time_training"]


# -- Labs 05-06: the suites of the paper's tables -------------------------------------------------------------------

def table1_suite(profile: Profile) -> list[Entry]:
    """APR and the baselines of the paper's Table 1 for every model and seed of ``profile``.

    AT appears twice (the paper does not say which): one-pixel AT with the same inner attack and budget as
    APR, and PGD AT (Madry et al.). IT is represented by Xu et al.'s 5-bit depth reduction and JPEG at
    quality 75 (as Guo et al. 2018), both in front of the undefended model; DD by distillation at T = 20.
    """
    out = []
    for model in profile.models:
        for seed in profile.seeds:
            base = profile.train_config(model, seed)
            inner = OnePixelAT(positions=inner_positions(profile))
            out += [Entry("No defence", base, paper="No defence"),
                    Entry("AT (one-pixel)", replace(base, objective=inner), paper="AT"),
                    Entry("AT (PGD)", replace(base, objective=PGDAT()), paper="AT"),
                    Entry("IT (bit depth 5)", base, BitDepth(5), paper="IT"),
                    Entry("IT (JPEG q75)", base, JPEG(75), paper="IT"),
                    Entry("DD (T=20)", distillation_config(base, 20.0), paper="DD"),
                    Entry("APR", apr_config(profile, "full", model, seed), paper="APR")]
    return out


def ablation_suite(profile: Profile) -> list[Entry]:
    """The four variants of the paper's Table 3 for every model and seed of ``profile``."""
    return [Entry(v, apr_config(profile, v, model, seed), paper=v)
            for model in profile.models for seed in profile.seeds for v in VARIANTS]


# -- Lab 07: overhead ------------------------------------------------------------------------------------------------

def overhead_configs(profile: Profile, model: str | None = None) -> dict[str, TrainConfig]:
    """The undefended model and the four APR variants of ``profile`` (for the cost split), by label."""
    out = {"undefended": profile.train_config(model)}
    out.update({f"APR {v}": apr_config(profile, v, model) for v in VARIANTS})
    return out


def time_training(configs: dict[str, TrainConfig], device: str | torch.device = "auto", warmup: int = 1,
                  repeats: int = 5) -> list[dict[str, Any]]:
    """Seconds per training step of each config, measured side by side on one batch of real training images.

    Each config gets a freshly initialised model and optimiser; every repeat runs one step of each, in an
    order rotated from repeat to repeat (so no config always runs first, after a cold cache). A step is
    what ``labkit.train.train`` does per mini-batch: augmentation, the objective under the autocast its
    ``precision`` resolves to on this device (``labkit.precision``), backward, optimiser and scheduler step. Rows: config, repeat, seconds, and
    inner_attack (the seconds of that step spent in the objective's inner attack), sorted by repeat and then
    in the order of ``configs``.
    """
    dev = resolve_device(device)
    first = next(iter(configs.values()))
    split = load_cifar10("train")
    idx = first_n(split, first.batch_size)
    images, labels = split.floats(idx).to(dev), split.labels[idx].to(dev)
    state = {}
    for name, cfg in configs.items():
        torch.manual_seed(cfg.seed)
        model = build_for_config(cfg).to(dev).train()
        # The schedule of the real run (its length only sets the learning rate, not the cost of a step).
        opt, sched = make_optimizer(model, cfg, cfg.epochs * math.ceil((cfg.train_size or 50_000) / cfg.batch_size))
        ctx = TrainContext(config=cfg, device=dev)
        cfg.objective.setup(ctx)
        state[name] = (cfg, model, opt, sched, ctx)
    names, rows = list(configs), []
    for rep in range(warmup + repeats):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            cfg, model, opt, sched, ctx = state[name]
            ctx.timers = {}
            synchronize(dev)
            start = time.perf_counter()
            train_step(model, opt, sched, cfg, images, labels, ctx)
            synchronize(dev)
            if rep >= warmup:
                rows.append({"config": name, "repeat": rep - warmup, "seconds": time.perf_counter() - start,
                             "inner_attack": ctx.timers.get("inner_attack", 0.0)})
    return sorted(rows, key=lambda r: (r["repeat"], names.index(r["config"])))


def measure_overhead(profile: Profile, model: str | None = None, device: str | torch.device = "auto",
                     progress: bool = True) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Lab 07's measurement for one architecture: (raw per-step timings, inference seconds per image by config).

    Training steps of the undefended model and the four APR variants side by side (``time_training``, with
    the profile's warm-up and repeats, ``evaluate.timing_repeats``), then inference (``labkit.evaluate.time_inference``) of the
    same untrained networks on test images, side by side. Weights do not change the cost, so nothing is trained.
    ``labkit.report.overhead_table(raw, inference, model=...)`` turns the two into the lab's table.
    """
    dev = resolve_device(device)
    warmup, repeats = timing_repeats(profile)
    configs = overhead_configs(profile, model)
    raw = time_training(configs, dev, warmup, repeats)
    test = load_cifar10("test")
    images = test.floats(first_n(test, 100))
    nets = {name: build_for_config(cfg).to(dev).eval() for name, cfg in configs.items()}
    inference = time_inference(nets, images, repeats=2 * repeats + 1, warmup=warmup, batch_size=100)
    return raw, inference


def cached_training_seconds(profile: Profile, model: str | None = None, seed: int | None = None,
                            progress: bool = True) -> dict[str, Any]:
    """Whole training runs from the cache (trained if missing): undefended vs full APR, at different times.

    Returns the model, both runs' seconds, APR's inner-attack seconds (summed over epochs) and the increase.
    Not side by side, so machine load at the time of each run enters the ratio: ``measure_overhead`` is the
    measurement to quote, this is the check on whole runs.
    """
    arch = model or profile.models[0]
    base = get_or_train(profile.train_config(arch, seed), progress=progress)
    full = get_or_train(apr_config(profile, "full", arch, seed), progress=progress)
    inner = sum(h.get("seconds_inner_attack", 0.0) for h in full.history)
    return {"model": arch, "undefended_s": base.train_seconds, "apr_s": full.train_seconds,
            "increase_pct": 100 * (full.train_seconds / base.train_seconds - 1), "inner_attack_s": inner,
            "inner_attack_share_pct": 100 * inner / max(full.train_seconds - base.train_seconds, 1e-9)}
