"""How fast is labkit's one-pixel DE, against the model's forward limit and torchattacks?

Run (minutes on 2 CPU cores; uses the ``cpu`` profile's small CNN, trained through the cache):

    LABKIT_DATA=../shared/data/cifar10-jpeg python benchmarks/attack_speed.py [--n 50] [--out FILE]

Everything is measured side by side in one process on the same images:
(a) forward throughput of the model at several chunk sizes, fp32 and bf16 (the physical limit);
(b) labkit DE at population 400 x 100 generations, 1 pixel, untargeted (Su et al.'s rand/1, the
    SciPy-style best/1 variant, and rand/1 searching in bf16);
(c) torchattacks.OnePixel at the same budget (popsize=400 is its total population; steps=100);
(d) the exhaustive corner search.
It prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from labkit import data
from labkit.attacks import CornerSearch, OnePixel
from labkit.evaluate import verify
from labkit.profiles import get_profile
from labkit.train import get_or_train


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
    model.queries = 0
    t0 = time.perf_counter()
    out = attack(x, y)
    wall = time.perf_counter() - t0
    if isinstance(out, Tensor):  # torchattacks returns images only
        success = model.model(out).argmax(1) != y
        verified = success & ((out != x).any(1).flatten(1).sum(1) <= 1)
        mean_q = model.queries / len(x)
    else:
        success, verified, mean_q = out.success, verify(model.model, x, out, 1), out.queries.float().mean().item()
    return {"attack": name, "wall_s": wall, "success": success.float().mean().item(),
            "verified": verified.float().mean().item(), "mean_queries": mean_q,
            "forward_images": model.queries, "queries_per_s": model.queries / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50, help="correctly classified test images attacked")
    ap.add_argument("--population", type=int, default=400)
    ap.add_argument("--generations", type=int, default=100)
    ap.add_argument("--chunks", default="50,100,200,400,1000", help="chunk sizes for the forward limit")
    ap.add_argument("--skip", default="", help="comma-separated attacks to skip, e.g. torchattacks,corner")
    ap.add_argument("--out", default="benchmarks/attack_speed.json")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = get_or_train(get_profile("cpu").train_config(), "cpu").model
    counted = QueryCounter(model).eval()
    test = data.load_cifar10("test")
    idx = data.correctly_classified(model, test, args.n)
    x, y = test.floats(idx), test.labels[idx]

    limits = {}
    for bf16 in (False, True):
        for chunk in (int(c) for c in args.chunks.split(",")):
            limits[f"{'bf16' if bf16 else 'fp32'}@{chunk}"] = forward_throughput(model, x, chunk, bf16)
    best_fp32 = max(v for k, v in limits.items() if k.startswith("fp32"))
    best_chunk = int(max((v, k) for k, v in limits.items() if k.startswith("fp32"))[1].split("@")[1])
    best_bf16 = max(v for k, v in limits.items() if k.startswith("bf16"))
    bf16_chunk = int(max((v, k) for k, v in limits.items() if k.startswith("bf16"))[1].split("@")[1])
    print("forward limit (images/s):", {k: round(v) for k, v in limits.items()})

    budget = {"population": args.population, "generations": args.generations}
    attacks = {
        "labkit DE rand/1 (Su)": OnePixel(counted, **budget, chunk_size=best_chunk),
        "labkit DE best/1 (scipy-style)": OnePixel(counted, **budget, strategy="best1-scipy",
                                                   init_colour="uniform", chunk_size=best_chunk),
        "labkit DE rand/1, bf16 search": OnePixel(counted, **budget, precision="bf16", chunk_size=bf16_chunk),
        "labkit corner search": CornerSearch(counted, chunk_size=best_chunk),
    }
    skip = set(filter(None, args.skip.split(",")))
    if "torchattacks" not in skip:
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
        print(f"{name:34s} wall {row['wall_s']:7.1f}s  success {100 * row['success']:5.1f}%  "
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
    print(f"\nforward limit: fp32 {best_fp32:.0f} images/s (chunk {best_chunk}), "
          f"bf16 {best_bf16:.0f} images/s (chunk {bf16_chunk}); {args.n} images, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    out = {"n_images": args.n, "budget": budget, "forward_limit": limits, "best_fp32": best_fp32,
           "best_bf16": best_bf16, "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
