"""Which reading of APR's regulariser to train by default: ||grad_x CE||^2 ("ce") or ||d logits/dx||_F^2 ("logits")?

The APR paper writes beta ||grad_x f(x)||^2 and never says what f is. This script trains the readings side by
side at a small budget and measures what the choice changes:

    OMP_NUM_THREADS=1 LABKIT_DATA=../shared/data/cifar10-jpeg nice python benchmarks/apr_penalty.py

(38 minutes on one niced CPU thread of a 2-core machine shared with other jobs, 2026-12-01; that run decided
``APRObjective``'s default, see its ``penalty`` field, and its numbers are in ``benchmarks/apr_penalty.json``.) The
variants are full APR (pixel gate, alpha 0.7, beta 0.01, one-pixel inner attack of ``--positions`` pixels) with
``APRObjective(penalty="ce")`` and ``penalty="logits"``; ``--reference`` adds the same run with beta = 0 ("none"),
which says whether either penalty does anything at this budget. All start from the same initial weights and see the
same batches and augmentations; their training steps are interleaved (one step of each in turn), so machine load
hits all alike and the step costs compare.

Per variant it reports: clean accuracy on ``--eval`` test images; the mean squared input-gradient norms of both
kinds on ``--norm-images`` test images (eval mode; ||J||_F^2 exact, one backward pass per class); the median seconds
per training step; and the one-pixel ASR of the exhaustive corner search (``labkit.attacks.CornerSearch``, all 1,024
x 8 candidates, searched in the precision this machine runs fast (``labkit.precision``; bf16 successes are confirmed
in fp32) and verified in fp32 with ``labkit.attacks.verify``) on the first ``--n-attack`` test images
(``labkit.data.first_n`` order) that every variant classifies correctly, with the Wilson 95% interval and the
discordant pairs against "ce". It prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.apr import APRObjective
from labkit.attacks import CornerSearch, verify
from labkit.attacks.corner import CornerConfig
from labkit.data import correctly_classified, first_n, load_cifar10, predict
from labkit.models import device_name, resolve_device, synchronize
from labkit.stats import wilson
from labkit.precision import resolve_precision
from labkit.train import TrainConfig, TrainContext, build_for_config, make_optimizer, train_step


def configs(args: argparse.Namespace, bf16: bool) -> dict[str, TrainConfig]:
    base = TrainConfig(model="small_cnn", gate="pixel", gate_kernel=3, epochs=args.epochs, train_size=args.train_size,
                       batch_size=128, bf16=bf16, seed=args.seed,
                       objective=APRObjective(alpha=0.7, beta=0.01, positions=args.positions))
    out = {p: replace(base, objective=replace(base.objective, penalty=p)) for p in ("ce", "logits")}
    if args.reference:
        out["none"] = replace(base, objective=replace(base.objective, beta=0.0))
    return out


def train_side_by_side(cfgs: dict[str, TrainConfig], dev: torch.device) -> tuple[dict[str, nn.Module], dict]:
    """Train every config with the loop of ``labkit.train.train``, one step of each in turn; per-step seconds."""
    split = load_cifar10("train")
    first = next(iter(cfgs.values()))
    idx = first_n(split, first.train_size)
    images, labels = split.images[idx].to(dev), split.labels[idx].to(dev)
    steps = math.ceil(len(idx) / first.batch_size)
    state = {}
    for name, cfg in cfgs.items():
        torch.manual_seed(cfg.seed)  # the same initial weights for every variant
        model = build_for_config(cfg).to(dev)
        opt, sched = make_optimizer(model, cfg, cfg.epochs * steps)
        ctx = TrainContext(config=cfg, device=dev)
        cfg.objective.setup(ctx)
        state[name] = (model, opt, sched, ctx)
    seconds: dict[str, list[float]] = {n: [] for n in cfgs}
    inner: dict[str, list[float]] = {n: [] for n in cfgs}
    names = list(cfgs)
    for epoch in range(first.epochs):
        perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(first.seed * 100_003 + epoch))
        for name in names:
            model, _, _, ctx = state[name]
            ctx.generator.manual_seed(first.seed * 100_003 + epoch)  # the same augmentations for every variant
            ctx.epoch = epoch
            model.train()
        for i, start in enumerate(range(0, len(idx), first.batch_size)):
            b = perm[start:start + first.batch_size].to(dev)
            x, y = images[b].float().div_(255), labels[b]
            for name in names[i % len(names):] + names[:i % len(names)]:  # rotate who goes first
                model, opt, sched, ctx = state[name]
                ctx.timers = {}
                synchronize(dev)
                t0 = time.perf_counter()
                train_step(model, opt, sched, cfgs[name], x, y, ctx)
                synchronize(dev)
                seconds[name].append(time.perf_counter() - t0)
                inner[name].append(ctx.timers.get("inner_attack", 0.0))
                ctx.step += 1
        print(f"epoch {epoch + 1}/{first.epochs}: median step " + ", ".join(
            f"{n} {statistics.median(seconds[n]) * 1000:.0f} ms" for n in names), flush=True)
    models = {n: state[n][0].eval() for n in names}
    timing = {n: {"step_ms_median": 1000 * statistics.median(seconds[n]),
                  "inner_attack_ms_median": 1000 * statistics.median(inner[n]), "steps": len(seconds[n])}
              for n in names}
    return models, timing


def gradient_norms(model: nn.Module, x: Tensor, y: Tensor, batch: int = 100) -> dict[str, float]:
    """Mean over images of ||grad_x CE||_2^2 and of ||d logits / dx||_F^2 (exact: one backward per class)."""
    ce_sq, jac_sq = [], []
    for s in range(0, len(x), batch):
        xb = x[s:s + batch].clone().requires_grad_(True)
        logits = model(xb).float()
        (g,) = torch.autograd.grad(F.cross_entropy(logits, y[s:s + batch], reduction="sum"), xb, retain_graph=True)
        ce_sq.append(g.pow(2).flatten(1).sum(1))
        jac = torch.zeros(len(xb))
        for k in range(logits.shape[1]):
            (gk,) = torch.autograd.grad(logits[:, k].sum(), xb, retain_graph=k < logits.shape[1] - 1)
            jac += gk.pow(2).flatten(1).sum(1)
        jac_sq.append(jac)
    ce, jac = torch.cat(ce_sq), torch.cat(jac_sq)
    return {"grad_ce_sq": ce.mean().item(), "jacobian_fro_sq": jac.mean().item(),
            "grad_ce_norm": ce.sqrt().mean().item(), "jacobian_fro_norm": jac.sqrt().mean().item()}


def sign_test(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for b and c discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-size", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--positions", type=int, default=1, help="inner attack positions (the cpu profile's 1)")
    ap.add_argument("--eval", type=int, default=2000, help="test images for clean accuracy")
    ap.add_argument("--norm-images", type=int, default=500)
    ap.add_argument("--n-attack", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", action="store_true", help="also train the beta = 0 run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/apr_penalty.json")
    args = ap.parse_args()

    dev = resolve_device(args.device)
    precision = resolve_precision("auto", dev)
    cfgs = configs(args, bf16=precision == "bf16")
    t_start = time.perf_counter()
    models, timing = train_side_by_side(cfgs, dev)

    test = load_cifar10("test")
    ev = first_n(test, args.eval)
    norm_idx = ev[:args.norm_images]
    rows: dict[str, dict] = {}
    for name, model in models.items():
        acc = (predict(model, test.images[ev]) == test.labels[ev]).float().mean().item()
        norms = gradient_norms(model, test.floats(norm_idx).to(dev), test.labels[norm_idx].to(dev))
        rows[name] = {"clean_acc": acc, **norms, **timing[name]}
        print(f"{name}: clean accuracy {100 * acc:.1f}%, E||grad CE||^2 {norms['grad_ce_sq']:.4g}, "
              f"E||J||_F^2 {norms['jacobian_fro_sq']:.4g}", flush=True)

    attacked = correctly_classified(list(models.values()), test, args.n_attack)
    x, y = test.floats(attacked), test.labels[attacked]
    broken = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        res = CornerSearch(model, CornerConfig(precision=precision))(x.to(dev), y.to(dev))
        ok = verify(model, x, res, max_pixels=1)
        broken[name] = ok
        k, n = int(ok.sum()), len(ok)
        lo, hi = wilson(k, n)
        rows[name].update({"asr": k / n, "asr_lo": lo, "asr_hi": hi, "attacked": n,
                           "corner_seconds": time.perf_counter() - t0})
        print(f"corner search on {name}: {k}/{n} broken", flush=True)
    for name in models:
        b = int((broken[name] & ~broken["ce"]).sum())  # broken here, not under "ce"
        c = int((broken["ce"] & ~broken[name]).sum())
        rows[name].update({"only_this_broken_vs_ce": b, "only_ce_broken": c, "mcnemar_p_vs_ce": sign_test(b, c)})

    head = (f"{'variant':8} {'clean %':>8} {'E|gCE|^2':>10} {'E|J|_F^2':>10} {'E|gCE|':>8} {'E|J|_F':>8} "
            f"{'step ms':>8} {'inner ms':>8} {'ASR %':>6} {'95% CI':>13} {'b/c vs ce':>9} {'p':>6}")
    print(head)
    for name, r in rows.items():
        print(f"{name:8} {100 * r['clean_acc']:8.1f} {r['grad_ce_sq']:10.4g} {r['jacobian_fro_sq']:10.4g} "
              f"{r['grad_ce_norm']:8.3f} {r['jacobian_fro_norm']:8.3f} {r['step_ms_median']:8.0f} "
              f"{r['inner_attack_ms_median']:8.0f} {100 * r['asr']:6.1f} "
              f"{100 * r['asr_lo']:5.1f}-{100 * r['asr_hi']:5.1f}% "
              f"{r['only_this_broken_vs_ce']:>4}/{r['only_ce_broken']:<4} {r['mcnemar_p_vs_ce']:6.3f}")
    out = {"args": vars(args), "precision": precision, "device": device_name(dev),
           "threads": torch.get_num_threads(), "wall_seconds": time.perf_counter() - t_start, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out} ({out['wall_seconds']:.0f} s, {out['device']}, {precision})")


if __name__ == "__main__":
    main()
