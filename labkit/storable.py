"""What a lab record stores, said by the stored types themselves: the registries ``labkit.records`` reads.

``labkit.records`` is a generic store (JSON sections, per-image arrays, replay); it imports none of the types it
keeps. Each type says how it is written and rebuilt, and registers where it is defined:

* ``KINDS``: a result type a record's tables or attack results hold, by the kind name the record keeps beside it
  (its ``kinds`` section: "evaluation", "suite"; ``ATTACK`` for the "attacks" section). The class implements
  ``Storable``: ``to_record(store, name, **context)`` writes it through the record's primitives (``Store``) and
  the classmethod ``from_record(store, name, **context)`` rebuilds it. ``@storable("kind")`` registers a class.
* ``PLANS``: how a record's ``models`` step loads or trains a model from a plan of one type (``train.TrainConfig``,
  ``suites.Entry``), names its cache key before training, and rebuilds the trained object from the record's
  entry (``model_entry``) around ``NoWeights``, since records never hold weights. ``register_plan`` adds one.

This module sits at the bottom of labkit (no labkit imports): the types register here without importing
``records``, which sits above them, so no import circle forms. The kind names are the record layout's
(``records.SCHEMA``): a registered name never changes meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, TypeVar

from torch import Tensor, nn

#: The kind of ``labkit.attacks.AttackResult``: what a record's "attacks" section (its ``result`` steps and the
#: results behind its tables) holds, one set of per-image arrays each.
ATTACK = "attack"


class Store(Protocol):
    """The primitives of a lab record that a type writes and rebuilds itself with (``labkit.records.LabRecord``).

    Names are the record's: a JSON entry lives in a ``section`` ("tables", "attacks", "values", ...) under its
    name, and an array in the ``.npz`` under its key; a nested object is named ``<name>/<part>``.
    """

    def put(self, section: str, name: str, value: Any) -> Any:
        """Keep ``value`` (dicts, lists, numbers, strings, None; non-finite floats come back) in ``section``."""

    def put_array(self, key: str, value: Tensor) -> None:
        """Keep one per-image array (any dtype, first dimension the images) in the ``.npz``."""

    def rows(self, name: str, step: Any, indices: Tensor | None = None) -> Any:
        """Record a table (of any kind) as a lab step does, its kind and timing included."""

    def array(self, name: str, step: Any) -> Any:
        """Record a tensor or a dict of tensors as a lab step does."""

    def stored(self, section: str, name: str) -> Any:
        """What ``put`` kept; ``records.StaleRecord`` when the record lacks it."""

    def stored_array(self, key: str) -> Tensor | None:
        """What ``put_array`` kept (dtype as written), or None when the record lacks it."""

    def named_under(self, section: str, prefix: str) -> dict[str, Any]:
        """The entries of ``section`` named ``<prefix>/...``, in the order written."""

    def replayed_rows(self, name: str) -> Any:
        """The table ``rows`` recorded under ``name``, rebuilt as the kind it was."""

    def replayed_array(self, name: str) -> Any:
        """What ``array`` recorded under ``name``."""

    def split(self) -> Any:
        """The dataset split the recorded indices refer to (``floats(indices)``, ``labels``)."""


class Storable(Protocol):
    """A type a record keeps: it writes itself through a ``Store`` and rebuilds itself from one."""

    def to_record(self, store: Store, name: str, **context: Any) -> Any:
        """Write this object under ``name``; returns what its caller keeps of it in JSON, if anything."""

    @classmethod
    def from_record(cls, store: Store, name: str, **context: Any) -> Any:
        """The object written under ``name``, rebuilt from ``store`` without recomputing it."""


#: Registered result types by kind name (``storable``).
KINDS: dict[str, type] = {}
#: The kind name of each registered type.
KIND_OF: dict[type, str] = {}

T = TypeVar("T", bound=type)


def storable(kind: str) -> Callable[[T], T]:
    """Class decorator: register the class under ``kind`` (a name a record keeps; one class per name)."""

    def register(cls: T) -> T:
        if KINDS.get(kind, cls) is not cls:
            raise ValueError(f"record kind {kind!r} is taken by {KINDS[kind].__qualname__}")
        KINDS[kind], KIND_OF[cls] = cls, kind
        return cls

    return register


def _registered(cls: type, registry: dict[type, Any]) -> Any:
    """The entry of the nearest class in ``cls``'s MRO that ``registry`` holds (a subclass is kept as its registered
    base, as an ``isinstance`` test would take it), or None."""
    return next((registry[c] for c in cls.__mro__ if c in registry), None)


def kind_of(obj: Any) -> str | None:
    """The registered kind of ``obj``'s type, or None for plain data (a list of row dicts, a tensor...)."""
    return _registered(type(obj), KIND_OF)


def kind_class(kind: str) -> type:
    """The class registered under ``kind``; LookupError naming the kinds known when none is (the module defining
    it was never imported: the labs import the modules whose results they record)."""
    if kind not in KINDS:
        raise LookupError(f"no type is registered as record kind {kind!r} (known: {', '.join(sorted(KINDS))}); "
                          "import the module that defines it before replaying")
    return KINDS[kind]


@dataclass(frozen=True)
class PlanKind:
    """How a record's ``models`` step handles a plan of one type."""

    key: Callable[[Any], str]  # the cache key the plan's trained model gets, known before training
    train: Callable[[Any], Any]  # load from the cache or train; returns an object with ``key`` and ``to_record()``
    rebuild: Callable[[Any, dict[str, Any]], Any]  # (plan, its ``model_entry``) -> the trained object, NoWeights


#: Registered plan types (``register_plan``).
PLANS: dict[type, PlanKind] = {}


def register_plan(cls: type, *, key: Callable[[Any], str], train: Callable[[Any], Any],
                  rebuild: Callable[[Any, dict[str, Any]], Any]) -> None:
    """Say how a record's ``models`` step keys, trains and rebuilds plans of type ``cls``."""
    PLANS[cls] = PlanKind(key, train, rebuild)


def plan_kind(plan: Any) -> PlanKind:
    """How to handle ``plan``; TypeError when its type is not registered."""
    kind = _registered(type(plan), PLANS)
    if kind is None:
        raise TypeError(f"a record's models step takes plans of {', '.join(c.__name__ for c in PLANS)}, "
                        f"not {type(plan).__name__}")
    return kind


def model_entry(*, key: str, model: str, seed: int, train_seconds: float, history: list[dict[str, float]],
                defence: str | None = None, init_key: str | None = None,
                precision: str | None = None) -> dict[str, Any]:
    """A trained model as a record's "models" section keeps it (no weights): its cache ``key``, architecture
    ``model`` and ``seed``, the row ``defence`` it stands for (a suite's entry), ``init_key`` (the model it was
    fine-tuned from), the ``precision`` its training ran in, ``train_seconds`` and the per-epoch ``history``
    (the last epoch's ``test_acc`` repeated, for readers of the JSON)."""
    # "config_key" is always null: kept so the entries' layout stays that of the records written so far.
    return {"key": key, "defence": defence, "model": model, "seed": seed, "config_key": None, "init_key": init_key,
            "precision": precision, "train_seconds": train_seconds, "history": history,
            "test_acc": (history or [{}])[-1].get("test_acc")}


class NoWeights(nn.Module):
    """The network of a replayed model: the record has no weights, so a forward pass is a mistake in the lab (a
    step that needs the model was not handed to the record) and says so."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key

    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError(f"model {self.key} is replayed from a record and has no weights: hand the step that "
                           "runs it to the LabRecord (rec.rows/result/array/value/text) so a replay reads it")
