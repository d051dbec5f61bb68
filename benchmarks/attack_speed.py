"""How fast and how strong are labkit's one-pixel attacks, against the model's forward limit and torchattacks?

Run (long at the defaults, every DE row may spend 40,400 queries per image; uses the ``cpu`` profile's
small CNN, trained through the cache; ``--profile smoke --n 4`` and small budgets for a quick check):

    LABKIT_DATA=../shared/data/cifar10-jpeg python benchmarks/attack_speed.py [--n 50] [--out FILE]

Everything is measured side by side in one process on the same correctly classified test images of the
undefended model:
(a) forward throughput of the model at several chunk sizes, fp32 and (where native) bf16: the physical limit;
(b) labkit DE at population 400 x 100 generations, 1 pixel, untargeted: Su et al.'s rand/1 with out-of-range
    coordinates redrawn (SciPy's rule, the default) and clipped (the old rule: the effect of the bound rule on
    success), the SciPy-style best/1 variant, rand/1 with the margin loss, and rand/1 searching in bf16;
(c) torchattacks.OnePixel at the same budget (popsize=400 is its total population; steps=100);
(d) the exhaustive corner search (all 8,192 position x corner candidates);
(e) Sparse-RS (Croce et al. 2022, margin loss) for 1 pixel with ``--rs-queries`` queries;
(f) the white-box corner search: gradient-ranked (position, corner) candidates, ``--wb-positions`` x 8 of them,
    and the cheap position-ranked variant used inside adversarial training (8 positions, 64 queries).
Then, from each labkit attack's per-image verified successes and query counts, the success-vs-queries curve
and the fewest queries at which each attack reaches the exhaustive corner search's success rate.
It prints tables and writes JSON (per-image outcomes and queries included, so comparisons can be paired).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from labkit import data
from labkit.attacks import CornerSearch, GradientCorner, OnePixel, SparseRS, verify
from labkit.precision import native_bf16
from labkit.profiles import get_profile
from labkit.train import get_or_train

CORNER = "labkit corner search (exhaustive)"


class QueryCounter(nn.Module):
    """Counts the images that go through ``model`` (queries), whoever calls it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.queries = model, 0

    def forward(self, x: Tensor) -> Tensor:
        self.queries += len(x)
        return self.model(x)


@torch.no_grad()
def forward_throughput(model: nn.Module, images: Tensor, chunk: int, bf16: bool, seconds: float = 3.0) -> float:
    """Images per second of plain forward passes at batch size ``chunk`` (after warm-up)."""
    x = images[torch.arange(chunk) % len(images)]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for _ in range(3):
            model(x)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            model(x)
            n += chunk
    return n / (time.perf_counter() - t0)


def run(name: str, attack, model: QueryCounter, x: Tensor, y: Tensor) -> dict:
    """One attack on (x, y): wall time, success (own and verified), queries; per-image lists for labkit's attacks."""
    model.queries = 0
    t0 = time.perf_counter()
    out = attack(x, y)
    wall = time.perf_counter() - t0
    row = {"attack": name, "wall_s": wall}
    if isinstance(out, Tensor):  # torchattacks returns images only: no per-image query counts
        success = model.model(out).argmax(1) != y
        verified = success & ((out != x).any(1).flatten(1).sum(1) <= 1)
        mean_q = model.queries / len(x)
    else:
        success, verified, mean_q = out.success, verify(model.model, x, out, 1), out.queries.float().mean().item()
        row["outcomes"] = verified.long().tolist()
        row["queries"] = out.queries.tolist()
    row.update({"success": success.float().mean().item(), "verified": verified.float().mean().item(),
                "mean_queries": mean_q, "forward_images": model.queries, "queries_per_s": model.queries / wall})
    return row


def success_curve(outcomes: list[int], queries: list[int], budgets: list[int]) -> list[float]:
    """Verified success rate within each budget: mean over images of success & (queries <= b)."""
    ok, q = torch.tensor(outcomes, dtype=torch.bool), torch.tensor(queries)
    return [(ok & (q <= b)).float().mean().item() for b in budgets]


def queries_to_reach(outcomes: list[int], queries: list[int], rate: float) -> int | None:
    """The fewest queries per image at which the verified success rate reaches ``rate`` (None: never)."""
    need = math.ceil(rate * len(outcomes) - 1e-9)
    spent = sorted(q for o, q in zip(outcomes, queries) if o)
    if need == 0:
        return 0
    return spent[need - 1] if len(spent) >= need else None


def budget_grid(max_queries: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to and including ``max_queries``."""
    grid, b = [], 1
    while b < max_queries:
        grid += [m * b for m in (1, 2, 5) if m * b < max_queries]
        b *= 10
    return grid + [max_queries]


def comparison(rows: list[dict]) -> dict:
    """Success vs queries of every labkit attack, and who reaches the exhaustive corner search's rate first."""
    timed = [r for r in rows if "queries" in r]
    if not timed:
        return {}
    budgets = budget_grid(max(max(r["queries"]) for r in timed))
    out: dict = {"budgets": budgets,
                 "curves": {r["attack"]: success_curve(r["outcomes"], r["queries"], budgets) for r in timed}}
    corner = next((r for r in timed if r["attack"] == CORNER), None)
    if corner is not None and corner["verified"] > 0:  # a rate of zero is reached by doing nothing
        target = corner["verified"]
        reach = {r["attack"]: queries_to_reach(r["outcomes"], r["queries"], target) for r in timed}
        reached = {k: v for k, v in reach.items() if v is not None}
        out.update({"corner_rate": target, "queries_to_corner_rate": reach,
                    "fewest_queries_to_corner_rate": min(reached, key=reached.get) if reached else None,
                    "note": "white-box rows do not count their one gradient pass (a forward and a backward) "
                            "as queries; DE counts whole generations"})
    return out


def bounds_effect(rows: list[dict]) -> dict:
    """Redraw vs clip for DE rand/1 on the same images: both rates and the discordant pairs."""
    by = {r["attack"]: r for r in rows}
    redraw, clip = by.get("labkit DE rand/1 (Su), redraw"), by.get("labkit DE rand/1 (Su), clip")
    if redraw is None or clip is None:
        return {}
    pairs = list(zip(redraw["outcomes"], clip["outcomes"]))
    return {"redraw": redraw["verified"], "clip": clip["verified"],
            "only_redraw": sum(a and not b for a, b in pairs), "only_clip": sum(b and not a for a, b in pairs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50, help="correctly classified test images attacked")
    ap.add_argument("--profile", default="cpu", help="whose undefended model to attack (smoke: a quick check)")
    ap.add_argument("--population", type=int, default=400)
    ap.add_argument("--generations", type=int, default=100)
    ap.add_argument("--rs-queries", type=int, default=8192, help="Sparse-RS queries per image")
    ap.add_argument("--wb-positions", type=int, default=1024, help="white-box search: positions x 8 candidates")
    ap.add_argument("--corner-queries", type=int, default=None, help="corner search budget (default: exhaustive)")
    ap.add_argument("--chunks", default="50,100,200,400,1000", help="chunk sizes for the forward limit")
    ap.add_argument("--skip", default="", help="comma-separated substrings of attack names to skip, "
                                               "e.g. torchattacks,bf16,clip")
    ap.add_argument("--out", default="benchmarks/attack_speed.json")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = get_or_train(get_profile(args.profile).train_config(), "cpu").model
    counted = QueryCounter(model).eval()
    test = data.load_cifar10("test")
    idx = data.correctly_classified(model, test, args.n)
    x, y = test.floats(idx), test.labels[idx]
    skip = set(filter(None, args.skip.split(",")))
    if not native_bf16("cpu"):  # bf16 autocast falls back to a slow path here: measuring it measures the fallback
        skip.add("bf16")
        print("this CPU has no native bf16: bf16 rows skipped")

    limits = {}
    for bf16 in (False, True) if "bf16" not in skip else (False,):
        for chunk in (int(c) for c in args.chunks.split(",")):
            limits[f"{'bf16' if bf16 else 'fp32'}@{chunk}"] = forward_throughput(model, x, chunk, bf16)
    best_fp32, best_chunk = max((v, int(k.split("@")[1])) for k, v in limits.items() if k.startswith("fp32"))
    best_bf16, bf16_chunk = max(((v, int(k.split("@")[1])) for k, v in limits.items() if k.startswith("bf16")),
                                default=(float("nan"), best_chunk))
    print("forward limit (images/s):", {k: round(v) for k, v in limits.items()})

    budget = {"population": args.population, "generations": args.generations, "chunk_size": best_chunk}
    attacks = {
        "labkit DE rand/1 (Su), redraw": OnePixel(counted, **budget),
        "labkit DE rand/1 (Su), clip": OnePixel(counted, **budget, bounds="clip"),
        "labkit DE best/1 (scipy-style)": OnePixel(counted, **budget, strategy="best1-scipy", init_colour="uniform"),
        "labkit DE rand/1, margin loss": OnePixel(counted, **budget, loss="margin"),
        "labkit DE rand/1, bf16 search": OnePixel(counted, **{**budget, "chunk_size": bf16_chunk}, precision="bf16"),
        CORNER: CornerSearch(counted, chunk_size=best_chunk, max_queries=args.corner_queries),
        "labkit Sparse-RS k=1": SparseRS(counted, queries=args.rs_queries, chunk_size=best_chunk),
        "labkit white-box corner (candidate rank)": GradientCorner(counted, positions=args.wb_positions,
                                                                   rank="candidate", loss="margin",
                                                                   chunk_size=best_chunk),
        "labkit white-box corner (position rank, 8)": GradientCorner(counted, positions=8, chunk_size=best_chunk),
    }
    if not any(s in "torchattacks.OnePixel" for s in skip):
        import torchattacks

        attacks["torchattacks.OnePixel"] = torchattacks.OnePixel(counted, pixels=1, steps=args.generations,
                                                                 popsize=args.population, inf_batch=best_chunk)
    rows = []
    for name, attack in attacks.items():
        if any(s in name for s in skip):
            continue
        bf16 = "bf16" in name
        chunk = bf16_chunk if bf16 else best_chunk
        # The limit is re-measured right before and after each attack: on a shared machine the
        # available CPU drifts, and the ratio must compare like with like.
        before = forward_throughput(model, x, chunk, bf16)
        row = run(name, attack, counted, x, y)
        after = forward_throughput(model, x, chunk, bf16)
        row["forward_limit_adjacent"] = (before + after) / 2
        row["ratio_to_forward_limit"] = row["queries_per_s"] / row["forward_limit_adjacent"]
        rows.append(row)
        print(f"{name:42s} wall {row['wall_s']:7.1f}s  success {100 * row['success']:5.1f}%  "
              f"verified {100 * row['verified']:5.1f}%  queries/img {row['mean_queries']:8.0f}  "
              f"q/s {row['queries_per_s']:6.0f}  limit {row['forward_limit_adjacent']:6.0f}  "
              f"x limit {row['ratio_to_forward_limit']:.2f}", flush=True)

    ta = next((r for r in rows if r["attack"] == "torchattacks.OnePixel"), None)
    print("\n| attack | wall (s) | success | queries/image | queries/s | forward limit (img/s) | × limit |"
          " speed-up vs torchattacks |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        speed = f"{ta['wall_s'] / r['wall_s']:.1f}×" if ta else "n/a"
        print(f"| {r['attack']} | {r['wall_s']:.1f} | {100 * r['success']:.1f}% | {r['mean_queries']:.0f} | "
              f"{r['queries_per_s']:.0f} | {r['forward_limit_adjacent']:.0f} | {r['ratio_to_forward_limit']:.2f} | "
              f"{speed} |")

    curves, bounds = comparison(rows), bounds_effect(rows)
    if curves:
        print("\nverified success rate within a budget of queries per image:")
        print("| attack | " + " | ".join(str(b) for b in curves["budgets"]) + " |")
        print("|---|" + "---|" * len(curves["budgets"]))
        for name, curve in curves["curves"].items():
            print(f"| {name} | " + " | ".join(f"{100 * s:.0f}%" for s in curve) + " |")
    if "queries_to_corner_rate" in curves:
        print(f"\nqueries per image to reach the corner search's {100 * curves['corner_rate']:.1f}%: "
              + ", ".join(f"{k}: {v}" for k, v in curves["queries_to_corner_rate"].items())
              + f"\nfewest: {curves['fewest_queries_to_corner_rate']}")
    if bounds:
        print(f"\nDE rand/1 bound rule: redraw {100 * bounds['redraw']:.1f}% vs clip {100 * bounds['clip']:.1f}% "
              f"(images broken by redraw only: {bounds['only_redraw']}, by clip only: {bounds['only_clip']})")
    print(f"\nforward limit: fp32 {best_fp32:.0f} images/s (chunk {best_chunk}), "
          f"bf16 {best_bf16:.0f} images/s (chunk {bf16_chunk}); {args.n} images, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    out = {"n_images": args.n, "profile": args.profile, "indices": idx.tolist(),
           "budget": {"population": args.population, "generations": args.generations,
                      "rs_queries": args.rs_queries, "wb_positions": args.wb_positions,
                      "corner_queries": args.corner_queries},
           "forward_limit": limits, "best_fp32": best_fp32, "best_bf16": best_bf16,
           "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows,
           "success_vs_queries": curves, "de_bounds_effect": bounds}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
