"""``python -m labkit evaluate`` and ``python -m labkit certify``: the book's one-pixel attacks and its exact
one-pixel verifier on your own model, from the command line.

Examples::

    # a function in your code that returns the model (an nn.Module taking [0, 1] images)
    python -m labkit evaluate --model mynets.cifar:build --n 100 --profile cpu
    # a labkit architecture with your weights (a state_dict saved with torch.save)
    python -m labkit evaluate --model small_cnn --weights small_cnn.pt --attacks de,corner
    # a TorchScript file, on your own ImageFolder resized to 32 x 32, the whole adaptive suite
    python -m labkit evaluate --model net.ts --dataset /data/my_images --size 32 --attacks suite
    # torchvision's pretrained ResNet-50 ($TORCH_HOME/hub/checkpoints) on ImageNet's validation set ($LABKIT_IMAGENET)
    python -m labkit evaluate --model resnet50 --dataset imagenet --per-class 1 --attacks de --profile full
    # prove (or refute) one-pixel robustness of 20 images, at most 30 s and 20,000 boxes each
    python -m labkit certify --model small_cnn --weights small_cnn.pt --n 20 --seconds 30 --max-boxes 20000
    # the same, and the adaptive suite on the same images: the true attack success rate, bracketed
    python -m labkit certify --model mynets.cifar:build --n 20 --method alpha --threat 8bit --attacks suite

``evaluate`` attacks the first ``--n`` test images the model classifies correctly (``labkit.data.first_n`` order)
with the chosen attacks at the profile's budgets, verifies every success, prints the table (attack success rates
with Wilson 95% intervals) and writes a result record in the book's schema (``labkit.records``) to ``--results``.
Attacks run through the cache, keyed by a hash of the model's weights: an interrupted run resumes where it stopped.

``certify`` decides the same images with ``labkit.certify`` (``labkit.evaluate.run_certify``: cached and resumable
too): each is proven ROBUST (no colour at any one pixel changes the prediction), VULNERABLE (a colour that does,
re-checked by a forward pass) or UNKNOWN (no proof found within ``--seconds`` / ``--max-boxes``: *not* a claim of
robustness). It prints the shares with Wilson intervals and the median cost per image; with ``--attacks suite`` it
also runs the adaptive suite on the same images and prints the bracket the true one-pixel attack success rate lies
in: at least the share of images broken (by an attack, or by a colour the verifier found), at most 1 - the share
proven robust. The verifier handles ``nn.Sequential`` chains of Conv2d, BatchNorm, ReLU, max / average pooling,
Linear, Flatten, ``labkit.models.Normalize``, ResNet's BasicBlock and APR's AttentionGate; any other layer is named in
a usage error.

The model must take float images in [0, 1], (N, C, H, W), hold its own normalisation (``labkit.models.Normalize``),
be in eval mode and return one logit per class; each of these is checked first, with one message saying what to fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
from torch import nn

from labkit import data, records
from labkit.cache import config_key
from labkit.certify import (METHODS, ROBUST, THREATS, UNKNOWN, VULNERABLE, CertifyConfig, NotCertifiable,
                            parse)
from labkit.evaluate import Evaluation, evaluate_model, run_certify
from labkit.models import (CIFAR10_MEAN, CIFAR10_STD, IMAGENET_ARCHITECTURES, REGISTRY, build_model,
                           find_imagenet_weights, imagenet_model)
from labkit.profiles import PROFILES, Profile, get_profile
from labkit.stats import wilson
from labkit.suites import WORST_CASE, adaptive_suite

#: The attacks ``--attacks`` names: DE (Su et al.), the exhaustive corner search, the book's adaptive suite.
ATTACKS = ("de", "corner", "suite")
#: Columns of the printed table.
COLUMNS = ["attack", "attacked", "asr", "asr_lo", "asr_hi", "mean_queries", "clean_acc"]
#: Columns of ``certify``'s table: the shares of the images proven robust (Wilson 95% interval), found vulnerable
#: and left unknown, the median cost per image; with ``--attacks suite`` the attacks' worst-case success rate and the
#: bracket [bracket_lo, bracket_hi] the true one-pixel attack success rate lies in.
CERTIFY_COLUMNS = ["n", "robust", "robust_lo", "robust_hi", "vulnerable", "unknown", "median_s", "median_boxes"]
BRACKET_COLUMNS = ["asr", "asr_lo", "asr_hi", "bracket_lo", "bracket_hi"]
#: What ``--attacks`` of ``certify`` takes.
CERTIFY_ATTACKS = ("none", "suite")
#: The layers ``labkit.certify`` has bound rules for (its module docstring has the details).
CERTIFIABLE = ("Conv2d, BatchNorm, ReLU, max/avg pooling (adaptive too), Linear, Flatten, Dropout/Identity (eval), "
               "labkit.models.Normalize, ResNet BasicBlock, APR's AttentionGate (first layer), in nn.Sequential chains")


class UsageError(Exception):
    """Bad input on the command line (a model, a dataset, an option): the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class EvaluateSettings:
    """What an ``evaluate`` run measured beside the profile (recorded with it)."""

    model: str  # --model as given
    weights_key: str  # hash of the model's weights and class (the attack records' cache key; ``weights_key``)
    dataset: str  # the dataset in words (no local paths)
    attacks: tuple[str, ...]  # of ATTACKS
    n: int  # correctly classified images attacked


@dataclasses.dataclass(frozen=True)
class CertifySettings:
    """What a ``certify`` run decided beside the profile (recorded with it; the profile budgets ``--attacks suite``)."""

    model: str  # --model as given
    weights_key: str  # hash of the model's weights and class (the verdicts' and attacks' cache key; ``weights_key``)
    dataset: str  # the dataset in words (no local paths)
    n: int  # correctly classified images certified
    attacks: str  # of CERTIFY_ATTACKS
    config: Any  # the labkit.certify.CertifyConfig (threat, method, budgets per image)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labkit", description="One-Pixel Lab from the command line.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="attack your own model with the book's one-pixel attacks",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    _model_arguments(ev, what="attack")
    ev.add_argument("--attacks", default="de,corner", help=f"comma-separated, of {', '.join(ATTACKS)} "
                                                           "(suite: the adaptive suite, DE and corner included)")
    ev.add_argument("--profile", default="cpu", choices=PROFILES, help="attack budgets (default cpu)")
    _record_arguments(ev)

    default = CertifyConfig()
    ce = sub.add_parser("certify", help="prove (or refute) your model's one-pixel robustness, image by image",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    _model_arguments(ce, what="certify")
    ce.add_argument("--seconds", type=float, default=default.max_seconds,
                    help=f"wall-clock budget per image (default {default.max_seconds:g}); an image undecided then "
                         "is UNKNOWN")
    ce.add_argument("--max-boxes", type=int, default=default.max_boxes,
                    help=f"budget per image in boxes bounded or enumerated (default {default.max_boxes})")
    ce.add_argument("--method", default=default.method, choices=METHODS,
                    help=f"bounds on the margins (default {default.method}: CROWN with optimised ReLU slopes)")
    ce.add_argument("--threat", default=default.threat, choices=THREATS,
                    help=f"the colours a pixel may take (default {default.threat}: k / 255, what an image file holds; "
                         "continuous: all of [0, 1]^C)")
    ce.add_argument("--attacks", default="none", choices=CERTIFY_ATTACKS,
                    help="suite: also run the adaptive suite on the same images and print the bracket of the true "
                         "attack success rate (default none)")
    ce.add_argument("--profile", default="cpu", choices=PROFILES, help="the suite's budgets (default cpu)")
    _record_arguments(ce)
    return parser


def _model_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """The options every subcommand shares: the model, the dataset and how many images."""
    parser.add_argument("--model", required=True,
                        help="module:callable returning an nn.Module; a TorchScript file; a labkit architecture "
                             f"({', '.join(sorted(REGISTRY))}) with --weights; or an ImageNet architecture "
                             f"({', '.join(sorted(IMAGENET_ARCHITECTURES))}), torchvision's weights from --weights "
                             "or $TORCH_HOME/hub/checkpoints")
    parser.add_argument("--weights", help="a state_dict file (torch.save) for a labkit or ImageNet architecture")
    parser.add_argument("--dataset", default="cifar10",
                        help="cifar10 (LABKIT_DATA, else torchvision's download; the test split), fashion-mnist, "
                             "mnist or gtsrb (labkit's dataset registry: LABKIT_FASHION_MNIST, LABKIT_MNIST, "
                             "LABKIT_GTSRB; the test split), imagenet (LABKIT_IMAGENET, the val split, resized to "
                             "256 and centre-cropped to 224) or an ImageFolder path (<root>/<class>/*.jpg|png)")
    parser.add_argument("--size", type=int, help="resize an ImageFolder's images to SIZE x SIZE (once, when loading)")
    parser.add_argument("--per-class", type=int, help="imagenet: load only the first K images of each class (the "
                                                     "whole validation set is 50,000 images, 7.5 GB decoded)")
    parser.add_argument("--n", type=int, default=100, help=f"correctly classified images to {what} (default 100)")


def _record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, help="where the record goes (default $LABKIT_RESULTS, else "
                                                      "./labkit-results)")
    parser.add_argument("--name", help="the record's name (default: from --model)")


# -- the model ------------------------------------------------------------------------------------------------------

def load_model(spec: str, weights: str | None = None, num_classes: int = 10, dataset: str = "cifar10") -> nn.Module:
    """The model ``spec`` names (see ``--model``), on the CPU; a labkit architecture is built for ``dataset`` (a
    ``labkit.data.DATASETS`` name: its channels and normalisation)."""
    if spec in IMAGENET_ARCHITECTURES:
        return _imagenet_model(spec, weights, num_classes)
    if spec in REGISTRY:
        if weights is None:
            raise UsageError(f"--model {spec} is a labkit architecture: give its weights with --weights FILE")
        model = build_model(spec, num_classes, dataset)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise UsageError(f"cannot read weights {weights}: {exc}") from exc
        missing, unexpected = model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state,
                                                    strict=False)
        if missing or unexpected:
            raise UsageError(f"{weights} does not fit {spec}: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return model.eval()
    if weights is not None:
        raise UsageError("--weights goes with a labkit architecture name as --model")
    if Path(spec).is_file():
        try:
            return torch.jit.load(spec, map_location="cpu")
        except RuntimeError as exc:
            raise UsageError(f"{spec} is not a TorchScript file ({exc}); a state_dict needs --model ARCH --weights "
                             f"{spec}") from exc
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise UsageError(f"--model {spec!r}: expected module:callable, a TorchScript file, or one of "
                         f"{', '.join(sorted(REGISTRY))} with --weights")
    sys.path.insert(0, os.getcwd())  # a module next to where the command runs, as `python -m` users expect
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load {spec}: {exc}") from exc
    model = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
    if not isinstance(model, nn.Module):
        raise UsageError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _imagenet_model(name: str, weights: str | None, num_classes: int) -> nn.Module:
    """ImageNet architecture ``name`` (``labkit.models.imagenet_model``) with torchvision's state_dict from
    ``weights``, else from ``$TORCH_HOME/hub/checkpoints``; ``num_classes`` other than 1000 needs ``weights``."""
    if weights is None and num_classes != 1000:
        raise UsageError(f"--model {name} on a dataset of {num_classes} classes: torchvision's weights have 1000; "
                         "give weights for this head with --weights FILE")
    try:
        path = find_imagenet_weights(name, weights)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    model = imagenet_model(name, pretrained=False, num_classes=num_classes)
    try:
        model[1].load_state_dict(torch.load(path, map_location="cpu", weights_only=True))  # behind the Normalize
    except (OSError, RuntimeError) as exc:
        raise UsageError(f"{path} does not hold torchvision {name} weights for {num_classes} classes: {exc}") from exc
    return model.eval()


def weights_key(model: nn.Module) -> str:
    """A cache key for ``model``: its class and a hash of every parameter and buffer (same weights, same key).

    A user's model has no training config, so its weights name it; ``labkit.train.model_key`` is the other kind of
    key, the hash of a ``TrainConfig`` (what a lab's model is cached under before it is trained)."""
    digest = hashlib.sha256(type(model).__qualname__.encode())
    for name, t in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return config_key("user-model", digest.hexdigest())


def check_model(model: nn.Module, split: data.Split, probe: int = 64) -> None:
    """Raise ``UsageError`` when ``model`` is in training mode, returns something other than (N, classes) logits,
    or looks as if it wanted inputs other than [0, 1]: near-chance accuracy on the first ``probe`` images, clearly
    better when they are scaled to [0, 255] or normalised with CIFAR-10's mean and std (other than RGB images: the
    probe's own)."""
    if model.training:
        raise UsageError("the model is in training mode (dropout and batch norm would change every answer): return "
                         "model.eval()")
    idx = data.first_n(split, min(probe, len(split)))
    x, y = split.floats(idx), split.labels[idx]
    with torch.no_grad():
        try:
            out = model(x[:4])
        except Exception as exc:  # any failure of the user's forward: say which input it got
            raise UsageError(f"the model failed on a batch of shape {tuple(x[:4].shape)} in [0, 1]: "
                             f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(out, torch.Tensor) or out.shape != (4, len(split.classes)):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise UsageError(f"the model must return logits of shape (N, {len(split.classes)}) for the dataset's "
                             f"{len(split.classes)} classes; it returned {shape} for N = 4")

        def accuracy(inputs: torch.Tensor) -> float:
            return (model(inputs).argmax(1) == y).float().mean().item()

        chance = 1 / len(split.classes)
        plain = accuracy(x)
        if plain <= 2 * chance:
            if x.shape[1] == 3:
                mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
            else:  # grey (or other) images: the probe's own per-channel statistics
                mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True).clamp_min(1e-6)
            for what, inputs in (("[0, 255]", x * 255), ("normalised (x - mean) / std", (x - mean) / std)):
                if accuracy(inputs) > max(2 * plain, 2 * chance):
                    raise UsageError(f"the model gets {plain:.0%} of {len(y)} images right on [0, 1] inputs and "
                                     f"clearly more on {what} ones: labkit's attacks give [0, 1] images, so put the "
                                     "scaling inside the model (e.g. labkit.models.Normalize in front)")


# -- the run --------------------------------------------------------------------------------------------------------

def load_dataset(name: str, size: int | None = None, per_class: int | None = None) -> data.Split:
    """A registered dataset's test split (``cifar10``, ``fashion-mnist``, ...), ``imagenet``'s validation split (``data.load_imagenet``, ``per_class`` images of
    each class), or an ImageFolder path (``data.load_folder``)."""
    if per_class is not None and name.lower() != "imagenet":
        raise UsageError("--per-class applies to --dataset imagenet")
    registered = "cifar10" if name.lower() == "cifar-10" else name.lower()
    if registered in data.DATASETS:
        spec = data.DATASETS[registered]
        if size not in (None, spec.size):
            raise UsageError(f"--size applies to an ImageFolder; {spec.title} is {spec.size} x {spec.size}")
        return data.load_dataset(registered, "test")
    if name.lower() == "imagenet":
        if size not in (None, data.IMAGENET_CROP):
            raise UsageError(f"--size applies to an ImageFolder; ImageNet is prepared at {data.IMAGENET_CROP} x "
                             f"{data.IMAGENET_CROP}")
        if per_class is not None and per_class < 1:
            raise UsageError(f"--per-class must be at least 1, got {per_class}")
        return data.load_imagenet("val", per_class=per_class)
    if not Path(name).exists():
        raise UsageError(f"--dataset {name!r}: neither a registered dataset ({', '.join(sorted(data.DATASETS))}), "
                         "'imagenet' nor an existing ImageFolder path")
    return data.load_folder(name, size)


def parse_attacks(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(a.strip().lower() for a in text.split(",") if a.strip()))
    unknown = [a for a in chosen if a not in ATTACKS]
    if unknown or not chosen:
        raise UsageError(f"--attacks {text!r}: choose from {', '.join(ATTACKS)}")
    return chosen


@dataclasses.dataclass
class Run:
    """What every subcommand starts from: the checked model, its cache key, the dataset, the images chosen."""

    model: nn.Module
    key: str  # weights_key(model)
    split: data.Split
    indices: torch.Tensor  # the first --n test images the model classifies correctly (first_n order)
    profile: Profile  # --profile, with n_attack = --n
    name: str  # the record's name (--name, else from --model)
    root: Path  # the results folder

    def record(self, command: str, settings: Any) -> records.LabRecord:
        """A fresh record ``<command>_<name>`` of this run (never replayed: a command always computes)."""
        return records.LabRecord(f"{command}_{self.name}", self.profile, root=self.root, mode="never",
                                 split=self.split, settings=settings)


def prepare(args: argparse.Namespace, check: Any = None) -> Run:
    """Load and check what ``args`` name (the options ``_model_arguments`` adds, ``--profile``, ``--results``,
    ``--name``) and choose the images: the first ``--n`` the model classifies correctly. ``check(model, split)``,
    when given, runs after ``check_model`` and before the images are chosen (a subcommand's own requirements)."""
    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    split = load_dataset(args.dataset, args.size, args.per_class)
    registered = "cifar10" if args.dataset.lower() == "cifar-10" else args.dataset.lower()
    model = load_model(args.model, args.weights, len(split.classes),
                       registered if registered in data.DATASETS else "cifar10")
    check_model(model, split)
    if check is not None:
        check(model, split)
    profile = dataclasses.replace(get_profile(args.profile), n_attack=args.n)
    try:
        idx = data.correctly_classified(model, split, args.n)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    name = args.name or Path(args.model.replace(":", "_")).stem.replace(".", "_")
    root = args.results or Path(os.environ.get("LABKIT_RESULTS") or Path.cwd() / "labkit-results")
    return Run(model, weights_key(model), split, idx, profile, name, root)


def evaluate(args: argparse.Namespace, progress: bool = True) -> tuple[list[dict[str, Any]], Path]:
    """Run ``evaluate`` for parsed ``args``: (the table's rows, the record's path)."""
    attacks = parse_attacks(args.attacks)
    run = prepare(args)
    model, key, split, idx = run.model, run.key, run.split, run.indices
    rec = run.record("evaluate", EvaluateSettings(args.model, key, split.name, attacks, args.n))
    labels = {"model": run.name}
    if "suite" in attacks:
        ev = adaptive_suite(model, key, split, idx, run.profile, progress=progress, **labels)
    else:
        ev = evaluate_model(model, key, split, idx, run.profile, corner="corner" in attacks, progress=progress,
                            **labels)
        if "de" not in attacks:
            ev = Evaluation([r for r in ev.rows if r["attack"] != "DE k=1"],
                            {a: r for a, r in ev.results.items() if a != "DE k=1"})
    rec.rows("table", ev, indices=idx)
    return ev.rows, rec.path


def certify_config(args: argparse.Namespace) -> Any:
    """The ``labkit.certify.CertifyConfig`` that ``certify``'s options say."""

    try:
        return CertifyConfig(threat=args.threat, method=args.method, max_boxes=args.max_boxes,
                             max_seconds=args.seconds)
    except (TypeError, ValueError) as exc:  # the config names the field: say it as the option
        raise UsageError(str(exc).replace("max_seconds", "--seconds").replace("max_boxes", "--max-boxes")) from exc


def check_certifiable(model: nn.Module, split: data.Split) -> None:
    """Raise ``UsageError`` naming the first layer of ``model`` that ``labkit.certify`` has no bound rule for."""

    try:
        parse(model, tuple(split.floats(data.first_n(split, 1)).shape[1:]))
    except NotCertifiable as exc:  # its message names the layer (and, for an unknown one, lists the known)
        said = str(exc).rstrip(".")
        supported = "in nn.Sequential chains" if "supported:" in said else f"labkit.certify supports {CERTIFIABLE}"
        raise UsageError(f"the model cannot be certified: {said} ({supported}); `python -m labkit evaluate` "
                         "attacks any model") from exc


def certify(args: argparse.Namespace, progress: bool = True) -> tuple[list[dict[str, Any]], Path]:
    """Run ``certify`` for parsed ``args``: (the table's one row, the record's path).

    The row: ``n``; the shares ``robust`` (proven, with its Wilson 95% interval ``robust_lo``, ``robust_hi``),
    ``vulnerable`` (a flipping colour found and re-checked) and ``unknown`` (neither within the budget); the
    median ``median_s`` seconds and ``median_boxes`` boxes per image. With ``--attacks suite`` also the suite's
    worst-case ``asr`` (Wilson ``asr_lo``, ``asr_hi``) and the bracket of the true one-pixel attack success rate:
    ``bracket_lo`` the share of images broken (by an attack or by the verifier's colour), ``bracket_hi`` 1 - the
    share proven robust; ``conflicts`` counts images an attack broke that were proven robust (possible only where
    the attack's colour lies outside ``--threat``'s: a float colour between the 8-bit levels).
    """

    config = certify_config(args)
    run = prepare(args, check=check_certifiable)
    idx, n = run.indices, len(run.indices)
    images, labels = run.split.floats(idx), run.split.labels[idx]
    rec = run.record("certify", CertifySettings(args.model, run.key, run.split.name, args.n, args.attacks, config))
    try:
        res = run_certify(run.model, images, labels, model_key=run.key, indices=idx, config=config,
                          progress=progress)
    except ValueError as exc:  # the images or labels do not fit the model (certify's own checks)
        raise UsageError(f"cannot certify these images: {exc}") from exc
    rec.array("certify/index", idx)
    for field in ("status", "seconds", "boxes", "bound_evals", "clean_correct", "position_status"):
        rec.array(f"certify/{field}", getattr(res, field))
    robust = int((res.status == ROBUST).sum())
    lo, hi = wilson(robust, n)
    row: dict[str, Any] = {
        "model": run.name, "n": n, "robust": robust / n, "robust_lo": lo, "robust_hi": hi,
        "vulnerable": res.share(VULNERABLE), "unknown": res.share(UNKNOWN),
        "median_s": statistics.median(res.seconds.tolist()), "median_boxes": statistics.median(res.boxes.tolist()),
        "threat": config.threat, "method": config.method, "max_seconds": config.max_seconds,
        "max_boxes": config.max_boxes}
    if args.attacks == "suite":
        ev = adaptive_suite(run.model, run.key, run.split, idx, run.profile, progress=progress, model=run.name)
        rec.rows("attacks", ev, indices=idx)
        worst = next(r for r in ev.rows if r["attack"] == WORST_CASE)
        attacked = torch.tensor(worst["outcomes"], dtype=torch.bool)
        broken = attacked | (res.status == VULNERABLE)
        row.update(asr=worst["asr"], asr_lo=worst["asr_lo"], asr_hi=worst["asr_hi"],
                   bracket_lo=int(broken.sum()) / n, bracket_hi=1 - robust / n,
                   conflicts=int((attacked & (res.status == ROBUST)).sum()))
        rec.array("certify/attacked", attacked)
    rec.rows("table", [row])
    return [row], rec.path


def certify_notes(row: dict[str, Any]) -> list[str]:
    """What ``certify``'s table means, in sentences printed under it."""
    colours = "8-bit colours" if row["threat"] == "8bit" else "colours of [0, 1]^C"
    notes = [f"robust: proven, no one pixel of any of the {colours} changes the prediction; vulnerable: a colour "
             "that does was found and re-checked",
             f"unknown: no proof and no flip found within {row['max_seconds']:g} s and {row['max_boxes']} boxes per "
             "image; undecided, not robust"]
    if "bracket_lo" in row:
        notes.append(f"the true one-pixel attack success rate ({colours}) lies in [{row['bracket_lo']:.3f}, "
                     f"{row['bracket_hi']:.3f}]: images broken (by an attack or the verifier) <= it <= 1 - proven "
                     "robust")
        if row["conflicts"]:
            why = ("its colour lies between the 8-bit levels: the bracket holds for 8-bit colours only" if
                   row["threat"] == "8bit" else "a contradiction: please report it")
            notes.append(f"warning: {row['conflicts']} image(s) proven robust for {colours} were broken by an "
                         f"attack; {why}")
    return notes


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = certify if args.command == "certify" else evaluate
    try:
        rows, path = command(args)
    except (UsageError, data.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "certify":
        table = pd.DataFrame(rows)
        print(table[[c for c in CERTIFY_COLUMNS + BRACKET_COLUMNS if c in table]].round(3).to_string(index=False))
        print("\n".join(certify_notes(rows[0])))
    else:
        print(pd.DataFrame(rows)[COLUMNS].round(3).to_string(index=False))
    print(f"record: {path}")
    return 0
