"""How long does the ``cpu`` run of Labs 01-08 take on this machine? A measured planning estimate.

Run (a few minutes; measures only, trains nothing):

    LABKIT_DATA=../shared/data/cifar10-jpeg python benchmarks/cpu_budget.py [--threads 2] [--out FILE]

Measured side by side in one process (``torch.set_num_threads(--threads)``):
(a) seconds per training step of every objective the defence labs train (``labkit.apr.time_training``: fresh
    models, one batch of real images, steps in rotated order), at the precision ``"auto"`` resolves to here;
(b) forward throughput (images/s) of the small CNN, alone and behind each input transformation of Lab 03, at
    the attacks' CPU chunk size, in fp32 and bf16 autocast.
(c) each attack of the suite at the cpu defence budgets on an untrained small CNN labelled by its own
    predictions (almost no image flips, so every attack spends its whole budget): its queries/s as a share of
    the forward limit (Sparse-RS, not on this branch, is charged at the limit).
Then the estimate per lab: training steps x step cost, plus attacked images x query budget / attack speed, with
the budgets, image counts and fine-tuning schedule read from ``labkit.profiles`` (so the table follows the code).
Query budgets per image (the adaptive suite): DE population x (generations + 1); the stronger DE
(``strong_scale``**2 x that); the corner search (``corner_queries``, else all 8,192 on 32x32); Sparse-RS ``rs_queries``; the
white-box corner search ``wb_positions`` x 8 (+ 3 forward-equivalents for its gradient). An image broken early
saves part of a budget: the undefended model's images are assumed broken at rate ``--broken`` (Lab 01's cpu
run: about 35%) after half the budget on average; every defended pipeline is charged the full budget.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from attack_speed import forward_throughput  # the same measurement as the attack benchmark, beside this script
from labkit import apr, defences
from labkit.labs import apr_paper
from labkit.attacks.base import default_chunk_size
from labkit.data import first_n, load_cifar10
from labkit.models import build_model
from labkit.precision import describe, resolve_precision
from labkit.profiles import Profile, get_profile
from labkit.train import TrainConfig, TrainContext, build_for_config

EXHAUSTIVE_CORNER = 32 * 32 * 8  # every pixel x the 8 corner colours


@dataclass(frozen=True)
class UntrainedTeacherDistillation(defences.Distillation):
    """Distillation whose teacher is an untrained network of the same shape: the student's step costs the
    same (one teacher forward), and timing it trains nothing."""

    def setup(self, ctx: TrainContext) -> None:
        ctx.state["teacher"] = build_for_config(self.teacher).to(ctx.device).eval().requires_grad_(False)


def objectives(prof: Profile) -> dict[str, TrainConfig]:
    """The training configs of the defence labs, one per distinct step cost, by label."""
    base = prof.train_config()
    inner = apr.inner_positions(prof)
    student = defences.distillation_config(base, 20.0)
    teacher = student.objective.teacher
    return {"cross-entropy": base,
            "cross-entropy, fp32": replace(base, precision="fp32"),
            "one-pixel AT": replace(base, objective=defences.OnePixelAT(positions=inner)),
            "PGD AT": replace(base, objective=defences.PGDAT()),
            "distillation teacher (T=20)": teacher,
            "distillation student": replace(base, objective=UntrainedTeacherDistillation(teacher, 20.0)),
            **{f"APR {v}": apr.apr_config(prof, v) for v in apr.VARIANTS}}


def step_costs(prof: Profile, repeats: int) -> dict[str, float]:
    """Median seconds per training step of each config of ``objectives`` (side by side)."""
    rows = apr_paper.time_training(objectives(prof), "cpu", warmup=1, repeats=repeats)
    return {c: statistics.median(r["seconds"] for r in rows if r["config"] == c)
            for c in dict.fromkeys(r["config"] for r in rows)}


def forward_rates(chunk: int, seconds: float) -> dict[str, dict[str, float]]:
    """Images/s of the small CNN, alone and behind each transform of Lab 03, in fp32 and bf16 autocast."""
    test = load_cifar10("test")
    images = test.floats(first_n(test, 200))
    net = build_model("small_cnn").eval()
    pipes = {"small_cnn": net, **{t.label: defences.defended(net, t).eval() for t in defences.standard_transforms()}}
    return {name: {p: forward_throughput(m, images, chunk, p == "bf16", seconds) for p in ("fp32", "bf16")}
            for name, m in pipes.items()}


def attack_efficiency(prof: Profile, n: int = 20) -> dict[str, float]:
    """Queries/s of each suite attack (at ``prof``'s budgets and precision) over the plain forward limit.

    Measured on an untrained small CNN with its own predictions as labels: every image starts "correct" and
    almost none flips, so every attack spends its whole budget (the rate of a full run). Sparse-RS is not
    measured here (not on this branch): it is charged at the forward limit.
    """
    from labkit.attacks import CornerSearch, GradientCorner, OnePixel

    test = load_cifar10("test")
    x = test.floats(first_n(test, n))
    torch.manual_seed(0)
    net = build_model("small_cnn").eval()
    with torch.no_grad():
        y = net(x).argmax(1)
    bf16 = resolve_precision(prof.precision, "cpu") == "bf16"
    limit = forward_throughput(net, x, default_chunk_size(torch.device("cpu")), bf16, 2.0)
    s = prof.strong_scale
    attacks = {"DE": OnePixel(net, prof.de_config()),
               "DE strong": OnePixel(net, prof.de_config(population=s * prof.population,
                                                         generations=s * prof.generations)),
               "corner": CornerSearch(net, prof.corner_config()),
               "white-box": GradientCorner(net, positions=prof.wb_positions)}
    out = {}
    for name, attack in attacks.items():
        t0 = time.perf_counter()
        res = attack(x, y)
        out[name] = float(res.queries.sum()) / (time.perf_counter() - t0) / limit
    return out


# -- the estimate --------------------------------------------------------------------------------------------------

#: The pipelines each defence lab attacks with the whole adaptive suite (labels of ``forward_rates`` for their
#: speed; "small_cnn" for trained defences, whose forward costs what the plain network's does).
LAB_PIPELINES: dict[str, list[tuple[str, str]]] = {
    "03": [("No defence", "small_cnn"), ("IT bit depth 5", "bit depth 5"), ("IT JPEG q75", "JPEG q75")],
    "04": [("No defence", "small_cnn"), ("AT (one-pixel)", "small_cnn"), ("AT (PGD)", "small_cnn"),
           ("DD (T=20)", "small_cnn"), ("Gradient masking", "small_cnn")],
    "05": [("No defence", "small_cnn"), ("AT (one-pixel)", "small_cnn"), ("AT (PGD)", "small_cnn"),
           ("IT bit depth 5", "bit depth 5"), ("IT JPEG q75", "JPEG q75"), ("DD (T=20)", "small_cnn"),
           ("APR", "small_cnn")],
    "06": [("APR", "small_cnn"), ("APR no_attention", "small_cnn"), ("APR no_adversarial", "small_cnn"),
           ("APR no_regularisation", "small_cnn")],
}

#: The training configs (labels of ``objectives``) each lab adds to the cache, in order of first use.
LAB_TRAINING: dict[str, list[str]] = {
    "03": ["cross-entropy"],
    "04": ["one-pixel AT", "PGD AT", "distillation teacher (T=20)", "distillation student"],
    "05": ["APR full"],
    "06": ["APR no_attention", "APR no_adversarial", "APR no_regularisation"],
}


def suite_queries(prof: Profile, suite: str) -> int:
    """Queries per image under ``suite``: "adaptive" (DE, stronger DE, corner, white-box corner, Sparse-RS),
    "protocol" (DE + corner search) or "de" (DE at the profile's budget)."""
    de = prof.population * (prof.generations + 1)
    if suite == "de":
        return de
    corner = prof.corner_queries or EXHAUSTIVE_CORNER
    if suite == "protocol":
        return de + corner
    s = prof.strong_scale
    strong = prof.population * s * (prof.generations * s + 1)
    return de + strong + corner + prof.rs_queries + 8 * prof.wb_positions + 3


def attack_seconds(prof: Profile, rate: float, suite: str, eff: dict[str, float], broken: float = 0.0) -> float:
    """Seconds to attack ``prof.n_attack`` images of one pipeline with ``suite`` (+ its clean accuracy).

    ``rate``: the pipeline's forward limit (images/s); ``eff``: each attack's share of that limit
    (``attack_efficiency``). Images broken early (fraction ``broken``) are charged half the budget."""
    s = prof.strong_scale
    queries = {"DE": suite_queries(prof, "de"),
               "DE strong": prof.population * s * (prof.generations * s + 1),
               "corner": prof.corner_queries or EXHAUSTIVE_CORNER,
               "white-box": 8 * prof.wb_positions + 3, "Sparse-RS": prof.rs_queries}
    used = {"de": ("DE",), "protocol": ("DE", "corner"), "adaptive": tuple(queries)}[suite]
    per_image = sum(queries[a] / eff.get(a, 1.0) for a in used)
    return (prof.n_attack * per_image * (1 - broken / 2) + prof.eval_size) / rate


def steps(cfg: TrainConfig) -> int:
    return cfg.epochs * math.ceil((cfg.train_size or 50_000) / cfg.batch_size)


def estimate(cost: dict[str, float], rates: dict[str, dict[str, float]], eff: dict[str, float], broken: float,
             shared_images: bool = False) -> list[dict[str, Any]]:
    """Seconds per lab of the ``cpu`` profile (Labs 01-02 at its own budget, 03-08 at ``for_defences``).

    ``shared_images``: whether Labs 03-06 attack one common image set, so a pipeline attacked by an earlier lab
    comes from the cache (as the code stands each lab picks the images all *its* models classify correctly,
    so only identical image sets share records).
    """
    p = get_profile("cpu")
    d = p.for_defences()
    # The searches run at each profile's precision (successes confirmed in fp32, a negligible extra).
    lab_rate = rates["small_cnn"][resolve_precision(p.precision, "cpu")]
    def_rate = resolve_precision(d.precision, "cpu")
    rows = []

    def add(lab: str, train_s: float, attack_s: float, what: str) -> None:
        rows.append({"lab": lab, "train_s": train_s, "attack_s": attack_s, "total_s": train_s + attack_s,
                     "what": what})

    de = p.population * (p.generations + 1)
    corner = p.corner_queries or EXHAUSTIVE_CORNER
    keep = 1 - broken / 2
    base = p.train_config()
    add("01", steps(base) * cost["cross-entropy"],
        p.n_attack * (2 * len(p.pixels) * de / eff["DE"] + corner / eff["corner"]) * keep / lab_rate,
        f"base model: {base.epochs} epochs x {base.train_size or 50_000} images; {p.n_attack} images: DE "
        f"{p.population}x{p.generations}, k in {p.pixels}, untargeted + targeted; corner search")
    add("02", 0.0, (p.n_attack * corner / eff["corner"] + 9 * p.n_pairs * de / eff["DE"]) * keep / lab_rate,
        f"Lab 01's runs from the cache; targeted corner search; {p.n_pairs} images x 9 targets (DE)")

    tuned = d.train_config()
    how = (f"fine-tuned {tuned.epochs} epochs x {tuned.train_size or 50_000} images from Lab 01's model"
           if tuned.init is not None else f"trained {tuned.epochs} epochs x {tuned.train_size or 50_000} images")
    seen: set[str] = set()
    for lab in ("03", "04", "05", "06"):
        train_s = steps(tuned) * sum(cost[c] for c in LAB_TRAINING[lab])
        attack_s, names = 0.0, []
        for name, speed in LAB_PIPELINES[lab]:
            if shared_images and name in seen:
                continue
            seen.add(name)
            names.append(name)
            attack_s += attack_seconds(d, rates[speed][def_rate], "adaptive", eff,
                                       broken if name == "No defence" else 0)
        what = f"{', '.join(LAB_TRAINING[lab])} {how}; adaptive suite on {len(names)} pipeline(s)"
        if lab == "03":
            others = [t for t in rates if t not in ("small_cnn", "bit depth 5", "JPEG q75")]
            attack_s += sum(attack_seconds(d, rates[t][def_rate], d.sweep_suite, eff) for t in others)
            what += f"; the other {len(others)} transformations: '{d.sweep_suite}' suite"
        add(lab, train_s, attack_s, what)
    lab07 = 11 * sum(cost[c] for c in ("cross-entropy", *(f"APR {v}" for v in apr.VARIANTS)))
    add("07", 0.0, lab07 + 30.0, "side-by-side step timings (2 warm-up + 9 repeats) and inference timings")
    add("08", 0.0, 60.0, "Lab 06's models and records from the cache; attention statistics (about a minute)")
    return rows


def budget_lines(prof: Profile) -> list[str]:
    """The attack budgets of ``prof`` per image, for the printout."""
    return [f"DE {prof.population} x ({prof.generations} + 1) = {suite_queries(prof, 'de')}",
            f"stronger DE x{prof.strong_scale}: {prof.population * prof.strong_scale} x "
            f"({prof.generations * prof.strong_scale} + 1)",
            f"corner {prof.corner_queries or EXHAUSTIVE_CORNER}", f"Sparse-RS {prof.rs_queries}",
            f"white-box {prof.wb_positions} x 8", f"adaptive suite {suite_queries(prof, 'adaptive')} queries/image"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the machine has 2 cores)")
    ap.add_argument("--repeats", type=int, default=3, help="timed training steps per config")
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds per forward-throughput measurement")
    ap.add_argument("--broken", type=float, default=0.35, help="undefended images broken early (Lab 01, cpu)")
    ap.add_argument("--out", type=Path, default=None, help="write the measurements and estimate as JSON")
    ap.add_argument("--measured", type=Path, default=None,
                    help="reuse the measurements of an earlier --out file: only recompute the estimate")
    args = ap.parse_args()
    if args.measured:
        old = json.loads(args.measured.read_text())
        args.threads, chunk = old["threads"], old["chunk"]
        cost, rates, eff = old["step_seconds"], old["forward_images_per_s"], old["attack_efficiency"]
        print(f"measurements of {args.measured}: {old['machine']}, {args.threads} thread(s); {old['precision']}")
    else:
        torch.set_num_threads(args.threads)
        chunk = default_chunk_size(torch.device("cpu"))
        print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
              f"attack chunk {chunk}; {describe('cpu')}")
        cost = step_costs(get_profile("cpu").for_defences(), args.repeats)
        rates = forward_rates(chunk, args.seconds)
        eff = attack_efficiency(get_profile("cpu").for_defences())
    for name, s in cost.items():
        print(f"  step {name:32s} {1e3 * s:8.0f} ms  ({s / cost['cross-entropy']:.1f}x cross-entropy)")
    for name, r in rates.items():
        print(f"  forward {name:29s} fp32 {r['fp32']:7.0f}/s   bf16 {r['bf16']:7.0f}/s")
    for name, e in eff.items():
        print(f"  attack {name:30s} {e:.2f} of the forward limit")
    d = get_profile("cpu").for_defences()
    print(f"\ncpu defence labs: {d.n_attack} images; " + "; ".join(budget_lines(d)))
    rows = estimate(cost, rates, eff, args.broken)
    total = sum(r["total_s"] for r in rows)
    print(f"estimate at {args.threads} thread(s):")
    for r in rows:
        print(f"  Lab {r['lab']}: {r['total_s'] / 60:6.1f} min (train {r['train_s'] / 60:5.1f}, attack "
              f"{r['attack_s'] / 60:5.1f})  {r['what']}")
    shared = sum(r["total_s"] for r in estimate(cost, rates, eff, args.broken, shared_images=True))
    print(f"  total: {total / 3600:.2f} h ({shared / 3600:.2f} h if Labs 03-06 attacked one common image set)")
    if args.out:
        machine = old["machine"] if args.measured else f"{platform.machine()} ({cpu_name()})"
        args.out.write_text(json.dumps({"machine": machine, "threads": args.threads, "chunk": chunk,
                                        "torch": torch.__version__, "precision": describe("cpu"),
                                        "step_seconds": cost, "forward_images_per_s": rates, "attack_efficiency": eff,
                                        "estimate": rows,
                                        "total_s": total, "total_shared_images_s": shared}, indent=2) + "\n")


def cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
