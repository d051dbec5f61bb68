"""Labs 05-07: the APR paper's tables, as labkit runs them.

* Lab 05: ``table1_suite``, APR and the baselines of the paper's Table 1, for every model and seed of a profile.
* Lab 06: ``ablation_suite``, the four variants of its Table 3 (each switches one component off).
* Lab 07: the overhead: ``time_training`` (seconds per training step, side by side), ``measure_overhead`` (the
  undefended model and the four variants, training steps and inference), ``cached_training_seconds`` (whole
  cached runs); from those, ``overhead_table`` and ``overhead_split`` (Lab 04 times its defences with them too),
  and the paper's Table 4 (``TABLE4_CLAIMS``) judged by ``overhead_verdicts`` and told by ``overhead_sentences``.

The method (the gate, the objective, ``apr_config``) is ``labkit.apr``; the generic protocol these suites run
(``train_suite``, ``attacked_indices``, ``evaluate_suite``) is ``labkit.suites``; the tables and verdicts of
Tables 1 and 3 are ``labkit.labs.apr_tables``'. Sizes: the profile's ``apr`` (inner attack) and ``timing`` sections
(``Profile.lab``).
"""

from __future__ import annotations

import math
import statistics as pystats
import time
from dataclasses import replace
from typing import Any

import torch

from labkit import papers, stats
from labkit.apr import VARIANTS, apr_config, inner_positions
from labkit.data import first_n, load_cifar10
from labkit.defences import JPEG, PGDAT, BitDepth, OnePixelAT, distillation_config
from labkit.evaluate import time_inference, timing_repeats
from labkit.models import resolve_device, synchronize
from labkit.profiles import Profile
from labkit.stats import Verdict
from labkit.suites import Entry
from labkit.train import TrainConfig, TrainContext, build_for_config, get_or_train, make_optimizer, train_step

__all__ = ["ABLATION_LAB", "OVERHEAD_LAB", "OVERHEAD_STEP", "SUITE_STEP", "TABLE1_LAB", "TABLE4_CLAIMS",
           "ablation_suite", "cached_training_seconds", "measure_overhead", "overhead_configs", "overhead_sentences",
           "overhead_split", "overhead_table", "overhead_verdicts", "table1_suite", "time_training"]

#: The labs' records (``labkit.records``) and the steps ``labkit.claims`` reads in them: Labs 05 and 06 record their
#: evaluated suite (``labkit.suites.evaluate_suite`` rows) as ``SUITE_STEP``, Lab 07 its ``overhead_table``.
TABLE1_LAB = "05_apr"
ABLATION_LAB = "06_apr_ablation"
OVERHEAD_LAB = "07_apr_overhead"
SUITE_STEP = "suite"
OVERHEAD_STEP = "overhead"


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
    ``overhead_table(raw, inference, model=...)`` turns the two into the lab's table.
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


# -- Lab 07's table and verdicts: the paper's Table 4 beside the timings ---------------------------------------------

#: The APR paper's Table 4, quoted from ``labkit.papers``: per architecture (training %, inference %) over the
#: undefended model.
TABLE4_CLAIMS: dict[str, tuple[float, float]] = papers.APR2024_TABLE4


def overhead_table(train_rows: list[dict[str, Any]], inference: dict[str, float], reference: str = "undefended",
                   model: str | None = None) -> list[dict[str, Any]]:
    """Medians per config and their increase over ``reference``, in percent.

    ``train_rows``: from ``time_training``; ``inference``: seconds per image by config (e.g. from
    ``labkit.evaluate.time_inference``). Columns: (model,) config, train_ms (per step), train_increase_pct,
    train_increase_lo/hi (the range over repeats of the per-repeat increase: configs run side by side in
    every repeat), inner_attack_ms, inner_attack_share_pct (of the training-time increase), infer_us (per
    image), infer_increase_pct.
    """
    configs = list(dict.fromkeys(r["config"] for r in train_rows))
    med = {c: pystats.median(r["seconds"] for r in train_rows if r["config"] == c) for c in configs}
    inner = {c: pystats.median(r["inner_attack"] for r in train_rows if r["config"] == c) for c in configs}
    per_rep = {(r["config"], r["repeat"]): r["seconds"] for r in train_rows}
    out = []
    for c, t in med.items():
        extra = t - med[reference]
        reps = [100 * (s / per_rep[(reference, rep)] - 1) for (cc, rep), s in per_rep.items()
                if cc == c and (reference, rep) in per_rep]
        out.append({**({"model": model} if model is not None else {}), "config": c, "train_ms": 1e3 * t,
                    "train_increase_pct": 100 * extra / med[reference],
                    "train_increase_lo": min(reps) if reps else None, "train_increase_hi": max(reps) if reps else None,
                    "inner_attack_ms": 1e3 * inner[c],
                    "inner_attack_share_pct": 100 * inner[c] / extra if extra > 0 and c != reference else None,
                    "infer_us": 1e6 * inference[c] if c in inference else None,
                    "infer_increase_pct": (100 * (inference[c] / inference[reference] - 1)
                                           if c in inference and reference in inference else None)})
    return out


def overhead_split(table: list[dict[str, Any]]) -> dict[str, float]:
    """The training-time increase of full APR split by component, in ms per step, from ``overhead_table``.

    inner attack: its own timer; gradient regulariser: full - no_regularisation; attention gate:
    full - no_attention; the rest (the adversarial half of the batch through forward and backward): what
    remains. Differences of medians, so small parts can come out slightly negative on a noisy machine.
    """
    ms = {r["config"]: r["train_ms"] for r in table}
    inner = next(r["inner_attack_ms"] for r in table if r["config"] == "APR full")
    total = ms["APR full"] - ms["undefended"]
    reg = ms["APR full"] - ms["APR no_regularisation"]
    gate = ms["APR full"] - ms["APR no_attention"]
    return {"inner attack": inner, "gradient regulariser": reg, "attention gate": gate,
            "adversarial half-batch": total - inner - reg - gate}


def overhead_verdicts(table: list[dict[str, Any]]) -> list[tuple[str, Verdict]]:
    """Verdicts on Table 4 (APR's training and inference increase) from ``overhead_table`` rows (with ``model``).

    Timings are not a sample of images: the verdict compares our medians (and the range over repeats, where
    measured) with the paper's percentages (``stats.overhead_verdict``); undecided where the paper has no number
    for the architecture.
    """
    out = []
    for arch in dict.fromkeys(r.get("model") for r in table):
        full = next(r for r in table if r.get("model") == arch and r["config"] == "APR full")
        claim = TABLE4_CLAIMS.get(arch) if arch else None
        lo, hi = full.get("train_increase_lo"), full.get("train_increase_hi")
        train = f"APR's training step costs +{claim[0]:g}% over the undefended model" if claim else \
            f"APR's training-step increase on {arch} (the paper has no number for it)"
        infer = f"APR's inference costs +{claim[1]:g}% over the undefended model" if claim else \
            f"APR's inference increase on {arch} (the paper has no number for it)"
        out.append((arch, stats.overhead_verdict(train, full["train_increase_pct"], claim[0] if claim else None,
                                                 (lo, hi) if lo is not None and hi is not None else None)))
        if full.get("infer_increase_pct") is not None:
            out.append((arch, stats.overhead_verdict(infer, full["infer_increase_pct"], claim[1] if claim else None)))
    return out


def overhead_sentences(table: list[dict[str, Any]]) -> str:
    """Sentences from Lab 07's measured table: the verdicts on Table 4, then where the extra time goes."""
    lines = []
    verdicts = overhead_verdicts(table)
    for arch in dict.fromkeys(r.get("model") for r in table):
        full = next(r for r in table if r.get("model") == arch and r["config"] == "APR full")
        undefended = next(r for r in table if r.get("model") == arch and r["config"] == "undefended")
        if arch not in TABLE4_CLAIMS:
            lines.append(f"[{arch}] The paper reports +27.3% / +8.6% (ResNet-18) and +31.5% / +9.2% (VGG-16) "
                         f"training / inference; it has no {arch}.")
        lines += [f"[{arch}] " + v.sentence() for a, v in verdicts if a == arch]
        share = full["inner_attack_share_pct"]
        lines.append(f"[{arch}] " + (f"The inner one-pixel attack is {share:.0f}% of APR's training-time increase "
                                     f"and takes {100 * full['inner_attack_ms'] / undefended['train_ms']:.0f}% of "
                                     "an undefended step." if share is not None else
                                     "There is no training-time increase to split."))
    return "\n".join(lines)
