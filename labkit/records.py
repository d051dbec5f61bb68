"""Result records: what a lab run measured, kept beside the code (``results/<profile>/<lab>.json`` + ``.npz``).

A lab opens one ``LabRecord`` and hands it what it computes (tables' rows, attack results, verdicts, model
keys); every ``add`` rewrites the record atomically, so an interrupted run keeps what it had finished and a
record is never half written. The JSON is ``jq``-readable (NaN written as null); per-image arrays (for every
attack result: dataset index, verified success, queries, pixel positions and colours, predicted class and its
probability, the true class's probability) go to the ``.npz`` beside it, under the names the JSON lists.

Nothing here trains or attacks: records are a by-product of running the labs, never written by hand.
Model weights are never recorded; the config hashes (cache keys) of the models are, and with the recorded
``Profile`` (every attack's budget) and the attacked indices they name every attack's cache entry.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

import labkit
from labkit.attacks.base import AttackResult
from labkit.cache import cache_root, canonical, write_atomic
from labkit.evaluate import Evaluation, SuiteRows, device_name
from labkit.precision import describe

#: Bumped when the layout of a record changes.
SCHEMA = 1
#: The per-image fields of an ``AttackResult`` kept in a record (``adv_images`` is not: it is the clean image with
#: ``colours`` written at ``pixels``, so the dataset and the record rebuild it).
PER_IMAGE = ("success", "queries", "pixels", "colours", "labels", "targets", "adv_pred", "adv_prob", "true_prob")


def project_root() -> Path | None:
    """The source checkout labkit runs from (the folder holding ``pyproject.toml`` beside ``labkit/``), or None."""
    root = Path(labkit.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def results_root() -> Path:
    """Where records go: ``$LABKIT_RESULTS``, else ``results/`` of the source checkout, else the cache's."""
    env = os.environ.get("LABKIT_RESULTS")
    if env:
        return Path(env).expanduser()
    root = project_root()
    return root / "results" if root is not None else cache_root() / "results"


def git_commit(root: Path | None = None) -> str | None:
    """The checkout's commit (with ``+dirty`` when labkit/ or notebooks/ have uncommitted changes), or None."""
    root = root or project_root()
    if root is None:
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "labkit", "notebooks"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def jsonable(obj: Any) -> Any:
    """``obj`` as strict JSON: tuples and tensors become lists, NaN and infinities null, dataclasses dicts."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Tensor):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return canonical(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return repr(obj)


class LabRecord:
    """The record of one lab run under one profile.

    Args:
        lab: the lab's name, e.g. ``"05_apr"`` (the notebook's stem).
        profile: a ``labkit.profiles.Profile`` (recorded whole: it fixes every training and attack budget).
        root: the results folder (default ``results_root()``); the record is ``root/<profile>/<lab>.json``.
    """

    def __init__(self, lab: str, profile: Any, root: Path | None = None):
        self.path = Path(root or results_root()) / profile.name / f"{lab}.json"
        self._arrays: dict[str, np.ndarray] = {}
        self._last = self._opened = time.perf_counter()
        self.data: dict[str, Any] = {
            "schema": SCHEMA, "lab": lab, "profile": profile.name, "config": jsonable(profile),
            "provenance": {"labkit": labkit.__version__, "commit": git_commit(),
                           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "device": device_name(), "threads": torch.get_num_threads(),
                           "precision": describe(profile.precision), "torch": torch.__version__,
                           "python": platform.python_version()},
            "stages": {}, "models": {}, "tables": {}, "attacks": {}, "texts": {}, "values": {},
            "figure_arrays": {},
        }

    def describe(self) -> str:
        """Where this page's numbers come from, and how to recompute them (printed at the top of every lab)."""
        prov = self.data["provenance"]
        commit = (prov["commit"] or "unknown commit")[:12] + (" (uncommitted changes)" if
                                                              (prov["commit"] or "").endswith("+dirty") else "")
        lab = self.data["lab"]
        return (f"Numbers of this page: profile {self.data['profile']}, run {prov['date']} on {prov['device']}, "
                f"labkit {prov['labkit']} at {commit}; recorded in results/{self.data['profile']}/{lab}.json. "
                f"Recompute: python tools/build_book.py --profile {self.data['profile']} --only {lab.split('_')[0]}")

    # -- what a lab hands over ------------------------------------------------------------------------------

    def models(self, name: str, trained: Sequence[Any]) -> Sequence[Any]:
        """Record the config hashes of models (``TrainedModel`` or ``evaluate.Trained``); returns ``trained``."""
        self.data["models"][name] = [_model_entry(t) for t in trained]
        return self._stage(name, trained)

    def rows(self, name: str, rows: Any, indices: Tensor | dict | None = None) -> Any:
        """Record a table's rows (per-image ``outcomes`` included) and, where the rows carry them
        (``evaluate.Evaluation`` / ``evaluate.SuiteRows``), the attack results behind them, per image.

        ``indices``: the dataset indices of the attacked images, for an ``Evaluation`` (``SuiteRows`` know
        theirs). Returns ``rows`` unchanged, so a cell can record what it computes in one line.
        """
        plain = rows.rows if isinstance(rows, Evaluation) else list(rows)
        self.data["tables"][name] = jsonable(plain)
        if isinstance(rows, Evaluation):
            if indices is None:
                raise ValueError(f"record {name!r}: an Evaluation needs the indices of its images")
            for attack, res in rows.results.items():
                self._attack(f"{name}/{attack}", {"attack": attack}, res, indices)
        elif isinstance(rows, SuiteRows):
            for (arch, seed, defence, attack), res in rows.results.items():
                labels = {"model": arch, "seed": seed, "defence": defence, "attack": attack}
                self._attack(f"{name}/{arch}/{seed}/{defence}/{attack}", labels, res,
                             rows.indices[(arch, seed, defence)])
        return self._stage(name, rows)

    def result(self, name: str, result: AttackResult, indices: Tensor, **labels: Any) -> AttackResult:
        """Record one attack result per image (``indices``: dataset indices of its rows); returns it."""
        self._attack(name, labels, result, indices)
        return self._stage(name, result)

    def text(self, name: str, text: str) -> str:
        """Record a generated sentence (a verdict, a summary); returns it."""
        self.data["texts"][name] = text
        return self._stage(name, text)

    def value(self, name: str, value: Any) -> Any:
        """Record any JSON-able value (a dict of timings, a list of indices); returns it."""
        self.data["values"][name] = jsonable(value)
        return self._stage(name, value)

    def array(self, name: str, value: Tensor) -> Tensor:
        """Record a small array a figure needs that the dataset and the record cannot rebuild (e.g. the
        attention maps of the images shown); returns it."""
        self._arrays[f"arrays/{name}"] = torch.as_tensor(value).detach().cpu().numpy()
        self.data["figure_arrays"][name] = f"arrays/{name}"
        return self._stage(name, value)

    # -- storage --------------------------------------------------------------------------------------------

    def _attack(self, name: str, labels: dict[str, Any], res: AttackResult, indices: Tensor) -> None:
        indices = torch.as_tensor(indices)
        if len(indices) != len(res):
            raise ValueError(f"record {name!r}: {len(indices)} indices for {len(res)} attacked images")
        arrays = {"index": indices}
        arrays.update({f: getattr(res, f) for f in PER_IMAGE if getattr(res, f) is not None})
        stored = []
        for field, value in arrays.items():
            self._arrays[f"{name}/{field}"] = value.detach().cpu().numpy()
            stored.append(field)
        self.data["attacks"][name] = {**jsonable(labels), "precision": res.precision_used, "images": len(res),
                                      "arrays": [f"{name}/{f}" for f in stored]}

    def _stage(self, name: str, passthrough: Any) -> Any:
        now = time.perf_counter()
        # The wall time since the previous thing recorded: the work that produced this one.
        self.data["stages"][name] = round(now - self._last, 3)
        self.data["wall_seconds"] = round(now - self._opened, 3)
        self._last = now
        self.save()
        return passthrough

    def save(self) -> Path:
        """Write the JSON and the ``.npz`` atomically (each file is either the old one or the new one)."""
        blob = json.dumps(self.data, indent=1, allow_nan=False).encode()
        npz = self.path.with_suffix(".npz")
        if self._arrays:
            buf = io.BytesIO()
            np.savez_compressed(buf, **self._arrays)
            write_atomic(npz, lambda fh: fh.write(buf.getvalue()))
        write_atomic(self.path, lambda fh: fh.write(blob))
        return self.path


def _model_entry(t: Any) -> dict[str, Any]:
    entry = getattr(t, "entry", None)
    config = entry.config if entry is not None else t.config
    history = getattr(t, "history", None) or [{}]
    return jsonable({"key": t.key, "defence": getattr(entry, "defence", None), "model": config.model,
                     "seed": config.seed, "config_key": getattr(t, "config_key", None),
                     "init_key": getattr(t, "init_key", None), "precision": getattr(t, "precision_used", None),
                     "train_seconds": getattr(t, "train_seconds", None),
                     "test_acc": history[-1].get("test_acc")})


def adversarial_images(clean: Tensor, pixels: Tensor, colours: Tensor) -> Tensor:
    """The adversarial images of a record: ``clean`` (N, C, H, W) in [0, 1] with ``colours`` (N, k, C) written
    at ``pixels`` (N, k, 2) (row, column); slots of -1 (nothing changed) are left alone. Equals the attack's
    ``adv_images`` (a test checks it), which is why records do not store them.
    """
    out = clean.clone()
    pixels, colours = torch.as_tensor(pixels), torch.as_tensor(colours)
    for j in range(pixels.shape[1]):  # k <= a handful: a loop over pixel slots, never over images
        keep = pixels[:, j, 0] >= 0
        img = torch.nonzero(keep).squeeze(1)
        out[img, :, pixels[keep, j, 0], pixels[keep, j, 1]] = colours[keep, j].to(out.dtype)
    return out


def load(lab: str, profile: str, root: Path | None = None) -> dict[str, Any] | None:
    """A lab's record as stored (JSON, with ``arrays``: the ``.npz``'s arrays by name), or None when absent."""
    path = Path(root or results_root()) / profile / f"{lab}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    npz = path.with_suffix(".npz")
    data["arrays"] = dict(np.load(npz)) if npz.is_file() else {}
    return data


def load_all(profile: str, root: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every record of ``profile`` by lab name (JSON only; arrays are loaded by ``load``)."""
    folder = Path(root or results_root()) / profile
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}
