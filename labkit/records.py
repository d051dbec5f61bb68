"""Result records: what a lab run measured, kept beside the code (``results/<profile>/<lab>.json`` + ``.npz``).

A lab opens one ``LabRecord`` and hands it what it computes (tables' rows, attack results, verdicts, model
keys); every ``add`` rewrites the record atomically, so an interrupted run keeps what it had finished and a
record is never half written. The JSON is ``jq``-readable (NaN written as null); per-image arrays (for every
attack result: dataset index, verified success, queries, pixel positions and colours, predicted class and its
probability, the true class's probability) go to the ``.npz`` beside it, under the names the JSON lists.

Nothing here attacks: records are a by-product of running the labs, never written by hand.
Model weights are never recorded; the config hashes (cache keys) of the models are, and with the recorded
``Profile`` (every attack's budget) and the attacked indices they name every attack's cache entry.

**A generic store.** This module knows sections of JSON, arrays and replay, not the lab's types: a result type
says how it is written and rebuilt (``to_record`` / ``from_record`` through the record's primitives, the
``storable.Store`` part of ``LabRecord``) and registers by a kind name where it is defined (``storable.KINDS``: an
``AttackResult`` in ``labkit.attacks``, ``Evaluation`` and ``SuiteRows`` in ``labkit.evaluate``, Lab 08's
``AttackedModel`` in ``labkit.attention``); a plan of models says how it is keyed, trained and rebuilt
(``storable.PLANS``: ``train.TrainConfig``, ``suites.Entry``). A table's kind is kept beside it, so a replay
finds the type by name.

**Replay.** A lab hands each heavy step over as a callable (``rec.rows("suite", lambda: evaluate_suite(...))``).
When a record of the lab exists for its profile and was made with the same ``Profile`` (``LabRecord.replaying``),
the callables are never called: every step returns what the record holds, rebuilt as the objects the lab computed
(``Evaluation``, ``SuiteRows``, ``AttackResult``, tensors; models as stand-ins without weights,
``storable.NoWeights``), so the page shows the same tables, figures and verdicts without training or attacking.
Each model's cache key is checked against the one recorded (a changed training config or dataset is a stale
record), and a step the record lacks is one too: ``StaleRecord`` names the record and how to recompute.
``LABKIT_REPLAY`` (or the ``mode`` argument) chooses: ``auto`` (replay a matching record, else compute and write
it), ``only`` (replay or stop), ``never`` (always compute, rewriting the record).

**Drift.** A record's provenance holds a fingerprint of the labkit code its steps ran (``code_fingerprint``: a hash
of each labkit module imported when it was written) and whether the device had native bf16 (which decides the
precision ``"auto"`` runs). A replay never recomputes, so it cannot see that the attack code changed since: it
compares the fingerprint with the current code instead (``LabRecord.code_drift``), and ``describe`` names the
modules that differ. Drift does not make a record stale: the page still shows what was measured, and says that
recomputing may give other numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

import labkit
from labkit import data as datasets
from labkit.cache import cache_root, canonical, write_atomic
from labkit.models import device_name, resolve_device
from labkit.precision import describe, native_bf16
from labkit.profiles import Profile
from labkit.storable import ATTACK, PlanKind, kind_class, kind_of, plan_kind

#: Bumped when the layout of a record changes (2: replayable: full model histories, table kinds, non-finite
#: floats kept, ``bf16`` per image).
SCHEMA = 2
#: ``LABKIT_REPLAY``'s values: replay a matching record else compute; replay or stop; always compute.
REPLAY_MODES = ("auto", "only", "never")
#: labkit modules left out of a record's code fingerprint. They never run inside a step: ``plotting`` and
#: ``widgets`` draw what a page replays, and run anew on every replay; ``records`` and its registries (``storable``)
#: store and rebuild (a change of layout is ``SCHEMA``'s business). Counting them would flag every record as
#: drifted after a figure's tweak.
NOT_FINGERPRINTED = ("labkit.records", "labkit.storable", "labkit.plotting", "labkit.widgets")
#: What ``LabRecord.code_drift`` says of a record written before records fingerprinted their code.
UNFINGERPRINTED = "(record predates code fingerprints)"


class StaleRecord(RuntimeError):
    """A record cannot be replayed (absent, made with another profile or models, or missing a step)."""


def replay_mode() -> str:
    """``$LABKIT_REPLAY`` (default ``auto``), checked against ``REPLAY_MODES``."""
    mode = os.environ.get("LABKIT_REPLAY", "auto") or "auto"
    if mode not in REPLAY_MODES:
        raise ValueError(f"LABKIT_REPLAY={mode!r} is not one of {', '.join(REPLAY_MODES)}")
    return mode


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


def _module_source(name: str) -> bytes | None:
    """The source file of module ``name`` as it is on disk now (imported or not), or None when there is none."""
    path = getattr(sys.modules.get(name), "__file__", None)
    if path is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # a parent package that is gone, or a module without a spec
            spec = None
        path = spec.origin if spec is not None and spec.has_location else None
    return Path(path).read_bytes() if path and Path(path).is_file() else None


def code_fingerprint(modules: Sequence[str] | None = None) -> dict[str, Any]:
    """A fingerprint of the code a record's steps ran: ``{"fingerprint": 16 hex digits, "modules": {name: 12 hex
    digits}}``, each module's hash the sha256 of its source bytes, the fingerprint a sha256 over the sorted
    (name, module hash) pairs.

    ``modules``: module names (default: every labkit module imported now, less ``NOT_FINGERPRINTED``). Imported
    is a proxy for "ran": a lab imports what it uses, so an attack it ran is in, and a module it never imported
    cannot have changed its numbers. Modules without a source file are left out.
    """
    if modules is None:
        modules = [m for m in list(sys.modules) if (m == "labkit" or m.startswith("labkit."))
                   and not any(m == n or m.startswith(n + ".") for n in NOT_FINGERPRINTED)]  # packages too
    hashes = {}
    for name in sorted(set(modules)):
        source = _module_source(name)
        if source is not None:
            hashes[name] = hashlib.sha256(source).hexdigest()[:12]
    whole = hashlib.sha256("".join(f"{name}\0{h}\n" for name, h in hashes.items()).encode())
    return {"fingerprint": whole.hexdigest()[:16], "modules": hashes}


def bf16_native(provenance: dict[str, Any]) -> bool | None:
    """Whether a record's device had native bf16: its ``bf16_native``, else (records written before it was kept)
    read from its precision line, which the same check (``precision.native_bf16``) wrote; None when neither says."""
    if "bf16_native" in provenance:
        return bool(provenance["bf16_native"])
    line = provenance.get("precision") or ""
    return False if "has no native bf16" in line else True if "has native bf16" in line else None


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


Step = Any  # a value, or a zero-argument callable computing it (called only when the record is not replayed)


class LabRecord:
    """The record of one lab run under one profile: written as the lab computes, or replayed.

    Args:
        lab: the lab's name, e.g. ``"05_apr"`` (the notebook's stem).
        profile: the run's ``Profile`` (recorded whole but for its lab sections, which reach the record through
            ``settings`` and the models' keys: it fixes every training and attack budget).
        root: the results folder (default ``results_root()``); the record is ``root/<profile>/<lab>.json``.
        mode: ``auto``, ``only`` or ``never`` (default ``replay_mode()``, i.e. ``$LABKIT_REPLAY``).
        split: the dataset split the recorded indices refer to, for rebuilding adversarial images on replay
            (an object with ``floats(indices)``; default: CIFAR-10's test split, loaded at the first replayed attack).
        settings: the lab's own settings beyond the profile (a frozen dataclass, e.g.
            ``labs.recovery.RecoveryConfig``):
            recorded, and part of what a replayable record must match.

    Every recording method takes a step: a zero-argument callable (the heavy work) or a value already computed.
    Computing, the step is run, recorded and returned. Replaying (``self.replaying``), a callable is never run and
    what the record holds is returned instead; a value (which the lab computed from replayed inputs, e.g. a
    verdict sentence from replayed rows) is returned as it is, so what a page derives follows the current code.
    """

    def __init__(self, lab: str, profile: Profile, root: Path | None = None, mode: str | None = None,
                 split: Any = None, settings: Any = None):
        self.path = Path(root or results_root()) / profile.name / f"{lab}.json"
        self.mode = mode or replay_mode()
        if self.mode not in REPLAY_MODES:
            raise ValueError(f"replay mode {self.mode!r} is not one of {', '.join(REPLAY_MODES)}")
        self._arrays: dict[str, np.ndarray] = {}
        self._last = self._opened = time.perf_counter()
        self._test = split
        self.data: dict[str, Any] = {
            "schema": SCHEMA, "lab": lab, "profile": profile.name, "config": jsonable(profile),
            "settings": jsonable(settings),
            "provenance": {"labkit": labkit.__version__, "commit": git_commit(),
                           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "device": device_name(), "bf16_native": native_bf16(resolve_device("auto")),
                           "threads": torch.get_num_threads(), "code": code_fingerprint(),
                           "precision": describe(profile.precision), "torch": torch.__version__,
                           "python": platform.python_version()},
            "stages": {}, "models": {}, "tables": {}, "kinds": {}, "attacks": {}, "texts": {}, "values": {},
            "figure_arrays": {}, "nonfinite": {},
        }
        self.replaying = False
        if self.mode == "never":
            return
        stored = load(lab, profile.name, self.path.parent.parent)
        reason = "no record" if stored is None else _mismatch(stored, self.data)
        if reason is None:
            self.replaying, self.data, self._arrays = True, stored, stored.pop("arrays")
        elif self.mode == "only":
            raise StaleRecord(f"cannot replay {self._shown_path()}: {reason}. {self._recompute_hint()}")

    def _shown_path(self) -> str:
        return f"results/{self.data['profile']}/{self.data['lab']}.json"

    def _recompute_command(self) -> str:
        return (f"python tools/build_book.py --profile {self.data['profile']} --recompute "
                f"--only {self.data['lab'].split('_')[0]}")

    def _recompute_hint(self) -> str:
        return f"Recompute it: {self._recompute_command()} (or LABKIT_REPLAY=never for one notebook)"

    def describe(self) -> str:
        """Where this page's numbers come from, and how to recompute them (printed at the top of every lab): the
        run, its device (and whether it had native bf16, which decides what precision "auto" ran), its commit,
        and whether the code changed since (``code_drift``)."""
        prov = self.data["provenance"]
        commit = (prov["commit"] or "unknown commit")[:12] + (" (uncommitted changes)" if
                                                              (prov["commit"] or "").endswith("+dirty") else "")
        native = bf16_native(prov)
        bf16 = "bf16 support not recorded" if native is None else "native bf16" if native else "no native bf16"
        how = "replayed from" if self.replaying else "recorded in"
        return (f"Numbers of this page: profile {self.data['profile']}, run {prov['date']} on {prov['device']}, "
                f"{bf16}, labkit {prov['labkit']} at {commit}; {how} {self._shown_path()}. {self._code_said()} "
                f"Recompute: {self._recompute_command()}")

    def code_drift(self) -> list[str]:
        """The modules whose source differs now from the code this record's steps ran (a module gone is
        "<name> (removed)"); ``[UNFINGERPRINTED]`` for a record older than code fingerprints; [] when the same."""
        code = self.data["provenance"].get("code")
        if not code:
            return [UNFINGERPRINTED]
        now = code_fingerprint(list(code["modules"]))["modules"]
        return [name if name in now else f"{name} (removed)"
                for name, h in sorted(code["modules"].items()) if now.get(name) != h]

    def _code_said(self) -> str:
        code, commit = self.data["provenance"].get("code"), (self.data["provenance"]["commit"] or "")[:12]
        if not code:
            since = f"`git diff {commit} -- labkit` shows what changed since" if commit else "what changed is unknown"
            return f"Code: not fingerprinted (the record predates code fingerprints; {since})."
        if not self.replaying:
            return f"Code: fingerprint {code['fingerprint']}."
        drift = self.code_drift()
        if not drift:
            return f"Code: the record's (fingerprint {code['fingerprint']})."
        return (f"Code: differs from the record's in {', '.join(drift)} (changed since the record was made), so "
                "recomputing may give other numbers.")

    # -- what a lab hands over ------------------------------------------------------------------------------

    def models(self, name: str, plan: Sequence[Any]) -> list[Any]:
        """Load or train ``plan`` through the cache and record each model's cache key and history. A plan's
        type says how (``storable.PLANS``: ``suites.Entry`` -> ``suites.Trained``, ``train.TrainConfig`` ->
        ``train.TrainedModel``).

        Replaying: stand-ins of the same types whose ``model`` is a ``NoWeights`` (building a pipeline on it works,
        running it raises), and whose keys must equal the recorded ones.
        """
        kinds = [plan_kind(p) for p in plan]
        if self.replaying:
            return self._replay_models(name, plan, kinds)
        trained = [kind.train(p) for kind, p in zip(kinds, plan)]
        self.data["models"][name] = [jsonable(t.to_record()) for t in trained]
        return self._stage("models", name, trained)

    def rows(self, name: str, step: Step, indices: Tensor | None = None) -> Any:
        """Record a table's rows (per-image ``outcomes`` included) and, where the rows are a registered kind that
        carries them (``storable.KINDS``: ``evaluate.Evaluation``, ``evaluate.SuiteRows``), the attack results
        behind them, per image (the kind writes itself: ``to_record``).

        ``indices``: the dataset indices of the attacked images, for a kind that needs them (an ``Evaluation``;
        ``SuiteRows`` know theirs). Returns the rows (replaying: rebuilt from the record, of the kind computed).
        """
        if self.replaying:
            return self.replayed_rows(name) if callable(step) else step
        rows = _run(step)
        kind = kind_of(rows)
        if kind is None:
            self.put("tables", name, list(rows))
        else:
            rows.to_record(self, name, indices=indices)
        self.data["kinds"][name] = kind or "rows"
        return self._stage("tables", name, rows)

    def result(self, name: str, step: Step, indices: Tensor, **labels: Any) -> Any:
        """Record one attack result (an ``AttackResult``) per image (``indices``: dataset indices of its rows);
        returns it."""
        if self.replaying:
            return kind_class(ATTACK).from_record(self, name) if callable(step) else step
        result = _run(step)
        result.to_record(self, name, indices=indices, labels=labels)
        return self._stage("attacks", name, result)

    def text(self, name: str, step: Step) -> str:
        """Record a generated sentence (a verdict, a summary); returns it."""
        if self.replaying:
            return self.stored("texts", name) if callable(step) else step
        return self._stage("texts", name, self.put("texts", name, _run(step)))

    def value(self, name: str, step: Step) -> Any:
        """Record a value made of dicts (string keys), lists, numbers, strings and None; returns it."""
        if self.replaying:
            return self.stored("values", name) if callable(step) else step
        return self._stage("values", name, self.put("values", name, _run(step)))

    def array(self, name: str, step: Step) -> Any:
        """Record a tensor, or a dict of tensors (keys: strings or tuples of strings and ints), that the lab needs
        again and the dataset cannot rebuild (the attacked indices, the attention maps of the images shown, a
        model's probabilities); returns it (replaying: as stored, dtype kept)."""
        if self.replaying:
            return self.replayed_array(name) if callable(step) else step
        value = _run(step)
        if isinstance(value, dict):
            keys = list(value)
            for i, v in enumerate(value.values()):
                self.put_array(f"arrays/{name}/{i}", torch.as_tensor(v))
            self.data["figure_arrays"][name] = {"keys": jsonable(keys), "tuple_keys": isinstance(keys[0], tuple)
                                                if keys else False}
        else:
            self.put_array(f"arrays/{name}", torch.as_tensor(value))
            self.data["figure_arrays"][name] = f"arrays/{name}"
        return self._stage("arrays", name, value)

    def variants(self, name: str, step: Step, kind: type) -> dict[str, Any]:
        """Record a dict of objects of one storable type ``kind`` (e.g. Lab 08's ``attention.AttackedModel``s),
        each written by its ``to_record`` under ``name/<its key>``, what each returns kept in the values under
        ``name``; returns them (replaying: rebuilt by ``kind.from_record``)."""
        if self.replaying and not callable(step):
            return step
        if self.replaying:
            return {key: kind.from_record(self, f"{name}/{key}", label=key, meta=meta)
                    for key, meta in self.stored("values", name).items()}
        objects = _run(step)
        self.put("values", name, {key: obj.to_record(self, f"{name}/{key}") for key, obj in objects.items()})
        return self._stage("variants", name, objects)

    # -- the store: what a storable type writes and rebuilds itself with (``storable.Store``) --------------------

    def put(self, section: str, name: str, value: Any) -> Any:
        """Keep ``value`` as JSON in ``section`` under ``name``; returns it."""
        # NaN and infinities are null in strict JSON; where they were is kept, so a replay gets them back.
        self.data[section][name] = jsonable(value)
        bad = _nonfinite(value)
        if bad:
            self.data["nonfinite"][f"{section}/{name}"] = bad
        return value

    def put_array(self, key: str, value: Tensor) -> None:
        """Keep one array in the ``.npz`` under ``key`` (dtype kept)."""
        self._arrays[key] = value.detach().cpu().numpy()

    def stored(self, section: str, name: str) -> Any:
        """What ``put`` kept (non-finite floats back); ``StaleRecord`` when the record lacks it."""
        if name not in self.data[section]:
            raise self._stale(f"it has no {section[:-1]} {name!r} (written by an interrupted run, or by other code)")
        return _restore(copy.deepcopy(self.data[section][name]), self.data["nonfinite"].get(f"{section}/{name}", []))

    def stored_array(self, key: str) -> Tensor | None:
        """What ``put_array`` kept under ``key``, or None when the record has no such array."""
        return torch.from_numpy(self._arrays[key]) if key in self._arrays else None

    def named_under(self, section: str, prefix: str) -> dict[str, Any]:
        """The entries of ``section`` named ``<prefix>/...``, in the order written."""
        return {k: v for k, v in self.data[section].items() if k.startswith(f"{prefix}/")}

    def replayed_rows(self, name: str) -> Any:
        """The table ``rows`` recorded under ``name``, rebuilt as the kind it was (plain rows: a list of dicts)."""
        kind = self.data["kinds"].get(name, "rows")
        return self.stored("tables", name) if kind == "rows" else kind_class(kind).from_record(self, name)

    def replayed_array(self, name: str) -> Any:
        """What ``array`` recorded under ``name``: a tensor, or a dict of tensors under their keys."""
        spec = self.stored("figure_arrays", name)
        if isinstance(spec, str):
            return torch.from_numpy(self._arrays[spec])
        keys = [tuple(k) for k in spec["keys"]] if spec["tuple_keys"] else spec["keys"]
        return {k: torch.from_numpy(self._arrays[f"arrays/{name}/{i}"]) for i, k in enumerate(keys)}

    def split(self) -> Any:
        """The dataset split the recorded indices refer to: the one given, else CIFAR-10's test split (loaded
        once, at the first replayed attack)."""
        if self._test is None:
            self._test = datasets.load_cifar10("test")
        return self._test

    # -- writing and replaying ------------------------------------------------------------------------------

    def _stage(self, kind: str, name: str, passthrough: Any) -> Any:
        now = time.perf_counter()
        # The wall time since the previous thing recorded: the work that produced this one. Keyed by kind too: a
        # lab may record its models and its table under one name ("suite").
        self.data["stages"][f"{kind}/{name}"] = round(now - self._last, 3)
        self.data["wall_seconds"] = round(now - self._opened, 3)
        self._last = now
        self.save()
        return passthrough

    def save(self) -> Path:
        """Write the JSON and the ``.npz`` atomically (each file is either the old one or the new one)."""
        if self.replaying:
            raise RuntimeError(f"{self._shown_path()} is being replayed; it is never rewritten by a replay")
        # Refreshed at every write: a lab may import a module (and run it) after its first step.
        self.data["provenance"]["code"] = code_fingerprint()
        blob = json.dumps(self.data, indent=1, allow_nan=False).encode()
        npz = self.path.with_suffix(".npz")
        if self._arrays:
            buf = io.BytesIO()
            np.savez_compressed(buf, **self._arrays)
            write_atomic(npz, lambda fh: fh.write(buf.getvalue()))
        write_atomic(self.path, lambda fh: fh.write(blob))
        return self.path

    def _stale(self, what: str) -> StaleRecord:
        return StaleRecord(f"{self._shown_path()} is stale: {what}. {self._recompute_hint()}")

    def _replay_models(self, name: str, plan: Sequence[Any], kinds: Sequence[PlanKind]) -> list[Any]:
        stored = self.stored("models", name)
        keys = [kind.key(p) for kind, p in zip(kinds, plan)]
        if [m["key"] for m in stored] != keys:
            raise self._stale(f"the models of {name!r} have other cache keys now ({keys} vs "
                              f"{[m['key'] for m in stored]}): their training config or the dataset changed")
        return [kind.rebuild(p, m) for kind, p, m in zip(kinds, plan, stored)]


def _run(step: Step) -> Any:
    return step() if callable(step) else step


def _mismatch(stored: dict[str, Any], fresh: dict[str, Any]) -> str | None:
    """Why ``stored`` cannot be replayed for a lab about to record ``fresh``, or None when it can."""
    if stored.get("schema") != SCHEMA:
        return f"schema {stored.get('schema')}, this labkit writes {SCHEMA}"
    if stored.get("config") != fresh["config"]:
        changed = sorted(k for k in fresh["config"] if stored.get("config", {}).get(k) != fresh["config"][k])
        return f"it was made with another {fresh['profile']!r} profile (fields {', '.join(changed)} differ)"
    if stored.get("settings") != fresh["settings"]:
        return f"it was made with other settings ({stored.get('settings')} vs {fresh['settings']})"
    return None


def _nonfinite(obj: Any, path: tuple = ()) -> list[list[Any]]:
    """[path, "nan" | "inf" | "-inf"] of every non-finite float inside ``obj`` (paths as ``jsonable`` keys)."""
    if isinstance(obj, (Tensor, np.ndarray)):
        return _nonfinite(obj.tolist(), path)
    if isinstance(obj, (float, np.floating)) and not math.isfinite(obj):
        return [[list(path), "nan" if obj != obj else ("inf" if obj > 0 else "-inf")]]
    if isinstance(obj, dict):
        return [b for k, v in obj.items() for b in _nonfinite(v, (*path, str(k)))]
    if isinstance(obj, (list, tuple)):
        return [b for i, v in enumerate(obj) for b in _nonfinite(v, (*path, i))]
    return []


def _restore(obj: Any, bad: list[list[Any]]) -> Any:
    """``obj`` (from JSON) with the non-finite floats ``_nonfinite`` found put back."""
    for path, what in bad:
        if not path:
            return float(what)
        *head, last = path
        node = obj
        for p in head:
            node = node[p]
        node[last] = float(what)
    return obj


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
