"""How many boxes does one pixel position take to decide, per bound method? (issue #23 §5)

Run (the lead runs it on the trained model; never at full size on the shared CPUs):

    python benchmarks/certify_speed.py --checkpoint PATH [--n 8 --positions 16 --max-boxes 2000] [--out FILE]
    python benchmarks/certify_speed.py --checkpoint natural=PATH proven=PATH   # several models, same images
    python benchmarks/certify_speed.py --smoke          # random-init small_cnn, random images: a dry run
    python benchmarks/certify_speed.py --checkpoint PATH --at 0,0 0,31 31,0 31,31   # chosen positions only

A labkit checkpoint (``labkit.train``'s cache file: weights plus config) is rebuilt with its own front (median
filter or attention gate, ``labkit.train.build_for_config``); a bare state dict goes into ``--model``.

One run, the same images and the same positions for every method ("interval", "forward", "backward" = CROWN,
"alpha" = CROWN with optimised slopes): ``labkit.certify.certify`` restricted to those positions (corner search
off, every position decided, ``--max-boxes`` per position), reporting per method boxes per position (median,
p90, over the decided positions, and the share decided within the budget), seconds per position and the
extrapolation to a whole image (x H*W), and the exhaustive corner search's seconds per image beside it.
Positions: a fixed sample per image, a third of them on the border (where the receptive field is cut), or the
positions ``--at`` names (e.g. the four corners: the cheapest to decide, so a natural model's positions can be
decided within a budget that leaves the methods' ratio measurable).
With several checkpoints (``name=PATH``), every model is measured on the same images (test images every model
classifies correctly) and positions. Writes JSON (per-position boxes included, so methods can be paired).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from labkit.certify import METHODS, ROBUST, THREATS, UNKNOWN, VULNERABLE, CertifyConfig, certify
from labkit.models import build_model
from labkit.train import TrainConfig, build_for_config


def load_model(checkpoint: Path | None, name: str) -> nn.Module:
    """The checkpoint's model, loaded strictly: a labkit checkpoint (weights plus the ``TrainConfig`` they were
    trained with) rebuilt as that config builds it (median filter or gate in front included), a bare state dict
    into ``name``'s architecture; random-init ``name`` without a checkpoint (a dry run: the numbers then say
    nothing about trained models)."""
    if checkpoint is None:
        return build_model(name).eval()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    config = state.get("config") if "state_dict" in state else None
    if isinstance(config, dict) and config.get("__type__") == "TrainConfig":
        arch = {k: config[k] for k in ("model", "gate", "gate_kernel", "median", "dataset") if k in config}
        model = build_for_config(TrainConfig(**arch))
    else:
        model = build_model(name)
    model.load_state_dict(state.get("state_dict", state))
    return model.eval()


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform``'s guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_images(n: int, random: bool, models: list[nn.Module], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` test images every model classifies correctly, with labels (random images labelled by the first model
    with ``random``)."""
    if not random:
        from labkit import data  # the data layer only when real images are asked for

        split = data.load_cifar10("test")
        g = torch.Generator().manual_seed(seed)  # the test folder is sorted by class: draw across classes
        idx = torch.randperm(len(split.labels), generator=g)[:20 * n]
        x = split.images[idx]
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        with torch.no_grad():
            ok = torch.stack([m(x).argmax(1) == split.labels[idx] for m in models]).all(0)
        keep = ok.nonzero().squeeze(1)[:n]
        return x[keep], split.labels[idx][keep]
    x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return x, models[0](x).argmax(1)


def sample_positions(h: int, w: int, k: int, seed: int) -> tuple[tuple[int, int], ...]:
    """``k`` distinct positions: a third on the border, the rest inside, fixed by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    all_pos = [(r, c) for r in range(h) for c in range(w)]
    border = [p for p in all_pos if min(p) == 0 or p[0] == h - 1 or p[1] == w - 1]
    inner = [p for p in all_pos if p not in border]
    nb = k // 3
    pick_b = [border[i] for i in torch.randperm(len(border), generator=g)[:nb].tolist()]
    pick_i = [inner[i] for i in torch.randperm(len(inner), generator=g)[:k - nb].tolist()]
    return tuple(sorted(pick_b + pick_i))


def position(text: str) -> tuple[int, int]:
    """``"row,col"`` as a (row, col) pair (``--at``'s argument type)."""
    try:
        r, c = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a position is ROW,COL (two integers), got {text!r}") from None
    return r, c


def quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None}
    v = sorted(values)
    return {"median": statistics.median(v), "p90": v[min(len(v) - 1, int(0.9 * len(v)))]}


def run_method(model: nn.Module, x: torch.Tensor, y: torch.Tensor, positions: tuple[tuple[int, int], ...],
               method: str, args: argparse.Namespace) -> dict:
    """One method on every (image, position): boxes per decided position, share decided, seconds."""
    cfg = CertifyConfig(threat=args.threat, method=method, corners=False, all_positions=True, positions=positions,
                        max_boxes=args.max_boxes * len(positions), position_budget=args.max_boxes,
                        max_seconds=args.max_seconds * len(positions),
                        alpha_steps=args.alpha_steps, chunk_size=args.chunk_size, group_size=len(x))
    t0 = time.perf_counter()
    res = certify(model, x, y, cfg)
    wall = time.perf_counter() - t0
    rows, cols = torch.tensor([p[0] for p in positions]), torch.tensor([p[1] for p in positions])
    status = res.position_status[:, rows, cols]  # (N, P)
    boxes = res.position_boxes[:, rows, cols]
    decided = status != UNKNOWN
    per_pos_seconds = (res.seconds / len(positions)).tolist()
    h, w = x.shape[2:]
    return {
        "method": method, "wall_s": wall,
        "boxes_per_position": quantiles(boxes[decided].double().tolist()),
        "share_decided": decided.double().mean().item(),
        "robust": int((status == ROBUST).sum()), "vulnerable": int((status == VULNERABLE).sum()),
        "unknown": int((status == UNKNOWN).sum()),
        "seconds_per_position": quantiles(per_pos_seconds),
        "seconds_per_image_extrapolated": quantiles([s * h * w for s in per_pos_seconds]),
        "bound_evals_per_box": (res.bound_evals.sum() / res.boxes.sum().clamp_min(1)).item(),
        "position_boxes": boxes.tolist(), "position_status": status.tolist(),
    }


def corner_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: str) -> float:
    """Seconds per image of the exhaustive corner search (every position x 8 corners, no early stop)."""
    cfg = CertifyConfig(threat=threat, max_boxes=0, all_positions=True, group_size=len(x))
    return certify(model, x, y, cfg).seconds.median().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", nargs="*", default=[],
                    help="weights, PATH or NAME=PATH, one or more (default: random init, a dry run)")
    ap.add_argument("--model", default="small_cnn", help="labkit.models architecture of the checkpoint")
    ap.add_argument("--n", type=int, default=8, help="images")
    ap.add_argument("--positions", type=int, default=16, help="positions per image (the same for every method)")
    ap.add_argument("--max-boxes", type=int, default=2000, help="box budget per position")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="seconds budget per position")
    ap.add_argument("--alpha-steps", type=int, default=CertifyConfig.alpha_steps)
    ap.add_argument("--chunk-size", type=int, default=CertifyConfig.chunk_size)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--threat", default=CertifyConfig.threat, choices=THREATS,
                    help="colours searched (Lab 12 certifies 'continuous')")
    ap.add_argument("--note", default="", help="recorded as is, e.g. what else ran on the machine")
    ap.add_argument("--random-images", action="store_true", help="random images labelled by the model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--at", nargs="*", type=position, default=None, metavar="ROW,COL",
                    help="search these positions instead of --positions sampled ones")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="2 random images, 2 positions, 6 boxes each: a dry run")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/certify_speed.json"))
    args = ap.parse_args()
    started, t_start = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    if args.smoke:
        args.n, args.positions, args.max_boxes, args.random_images = 2, 2, 6, True
    torch.set_num_threads(args.threads)
    specs = [c.partition("=")[::2] if "=" in c else ("model", c) for c in args.checkpoint] or [("random", None)]
    models = {name: load_model(Path(path) if path else None, args.model) for name, path in specs}
    x, y = load_images(args.n, args.random_images, list(models.values()), args.seed)
    positions = tuple(args.at) if args.at else sample_positions(x.shape[2], x.shape[3], args.positions, args.seed)
    if any(not (0 <= r < x.shape[2] and 0 <= c < x.shape[3]) for r, c in positions):
        ap.error(f"--at: positions must lie in the {x.shape[2]} x {x.shape[3]} image, got {list(positions)}")
    results = {}
    for name, model in models.items():
        rows = [run_method(model, x, y, positions, m, args) for m in args.methods.split(",")]
        corner = corner_seconds(model, x, y, args.threat)
        print(f"{name}\n{'method':9s} {'boxes/pos med':>13s} {'p90':>7s} {'decided':>8s} {'s/pos med':>9s} "
              f"{'s/img est':>10s}")
        for r in rows:
            b, s = r["boxes_per_position"], r["seconds_per_position"]
            print(f"{r['method']:9s} {b['median'] or float('nan'):13.0f} {b['p90'] or float('nan'):7.0f} "
                  f"{r['share_decided']:8.2f} {s['median']:9.2f} {r['seconds_per_image_extrapolated']['median']:10.0f}")
        print(f"exhaustive corner search: {corner:.2f} s per image")
        results[name] = {"corner_search_seconds_per_image": corner, "methods": rows}
    out = {"command": shlex.join(["python", *sys.argv]), "date": started, "machine": cpu_name(),
           "threads": args.threads, "note": args.note, "torch": torch.__version__, "checkpoints": dict(specs),
           "model": args.model, "n": len(x), "positions": [list(p) for p in positions], "threat": args.threat,
           "max_boxes_per_position": args.max_boxes, "max_seconds_per_position": args.max_seconds,
           "alpha_steps": args.alpha_steps, "chunk_size": args.chunk_size, "random_images": args.random_images,
           "wall_s": time.perf_counter() - t_start, "models": results}
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
