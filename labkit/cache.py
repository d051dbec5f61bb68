"""On-disk cache keyed by a hash of a configuration.

Every heavy step (training a model, evaluating an attack) is stored under
``cache_root() / <kind> / <key>.pt`` where ``key`` hashes the config that produced
it. Files are written atomically (temporary file + ``os.replace``), so an
interrupted write never leaves a half file under the real name, and they are read
with ``torch.load(weights_only=True)``, so a cache file can never run code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

#: Bumped when the layout of cached files changes; part of every key.
CACHE_FORMAT = 1

#: Field metadata for a field added to a config after its keys were in use: ``canonical`` leaves the field out
#: while it holds its default, so the configs that existed before keep their keys (and the committed result
#: records that name those keys stay valid); any other value is hashed like every field.
NEW_FIELD = {"key": "omit while default"}
#: Field metadata for a field that is never hashed: ``canonical`` always leaves it out. For what a config carries
#: beside its keyed part (``Profile.labs``: the labs' own sizes, which reach the keys and records through the
#: configs and settings the labs build from them), so adding it changed no key and no committed record.
NOT_KEYED = {"key": "never"}


def cache_root() -> Path:
    """The cache directory: ``$LABKIT_CACHE`` if set, else ``~/.cache/labkit``."""
    env = os.environ.get("LABKIT_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "labkit"
    return root


def canonical(obj: Any) -> Any:
    """A JSON-able, order-stable view of ``obj`` (dataclasses carry their type name).

    The type name matters: two objectives with equal fields but different classes
    must not share a cache entry.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {"__type__": type(obj).__name__}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("key") == NEW_FIELD["key"] and value == f.default:
                continue
            if f.metadata.get("key") == NOT_KEYED["key"]:
                continue
            out[f.name] = canonical(value)
        return out
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return canonical(obj.tolist())
    if isinstance(obj, float) and obj.is_integer():
        # 1.0 and 1 must hash alike: configs are often written either way.
        return int(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot hash a {type(obj).__name__} into a cache key")


def config_key(*parts: Any, length: int = 16) -> str:
    """A short hex key (``length`` characters) hashing ``parts`` and the cache format."""
    blob = json.dumps([CACHE_FORMAT, *[canonical(p) for p in parts]], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def cache_path(kind: str, key: str) -> Path:
    """Where the entry ``key`` of the family ``kind`` lives (directory created)."""
    path = cache_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path / f"{key}.pt"


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same directory (``write_atomic``)."""
    write_atomic(path, lambda fh: torch.save(obj, fh))


def write_atomic(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write`` on a temporary file in ``path``'s directory, then rename it to ``path``.

    ``os.replace`` is atomic on POSIX and Windows, so readers see either the old
    file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide committed records and shared caches from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checked(path: Path, expect: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Load a cached dict, or ``None`` when it is missing, corrupt or stale.

    ``expect`` maps keys to the values the file must hold (e.g. the canonical
    config): a file that does not match is reported and treated as absent, so it
    is recomputed rather than silently used.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: recompute, say why
        warnings.warn(f"ignoring unreadable cache file {path}: {exc}", stacklevel=2)
        return None
    if not isinstance(obj, dict):
        warnings.warn(f"ignoring cache file {path}: not a dict", stacklevel=2)
        return None
    for k, v in (expect or {}).items():
        if obj.get(k) != v:
            warnings.warn(f"ignoring cache file {path}: its {k!r} does not match", stacklevel=2)
            return None
    return obj
