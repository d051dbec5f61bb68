"""The protocol over suites of trained models (Labs 03-07), and the adaptive suite every defence is judged by.

Built on ``labkit.evaluate`` (``run_attack``, ``summarize``, ``evaluate_model`` and the tables ``Evaluation`` and
``SuiteRows``), which imports nothing of this module.

* The adaptive suite, how every defence is judged (``evaluate_suite`` runs it for
  every entry): ``adaptive_suite`` runs the attacks of ``SUITE`` (``suite_attacks``)
  on the same images and adds the per-image ``worst_case`` (``WORST_CASE``);
  ``sweep_attack`` chooses between it and ``evaluate_model`` for the pipelines of a sweep (Lab 03);
  ``broke_what`` says which attack broke what, ``query_curves`` and
  ``benchmark_table`` compare the attacks' success against their queries.
* The protocol over suites of trained models (Labs 03-07): ``Entry`` (a config,
  optionally behind an input transformation), ``train_suite`` (-> ``Trained``),
  ``attacked_indices`` (the reference's images; every defence on those it classifies correctly) and ``evaluate_suite``;
  their rows become tables and verdicts in ``labkit.labs.apr_tables``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import Tensor, nn

from labkit.attacks import (CornerSearch, GradientCorner, GradientCornerConfig, OnePixel, SparseRS, SparseRSConfig,
                            verify)
from labkit.data import load_cifar10
from labkit.evaluate import (Evaluation, SuiteRows, clean_accuracy, common_correct, evaluate_model, run_attack,
                             still_correct, success_at_budgets, summarize)
from labkit.stats import wilson
from labkit.storable import NoWeights, model_entry, register_plan

if TYPE_CHECKING:  # annotations only: importing labkit.suites stays light (no training code)
    from labkit.profiles import Profile
    from labkit.train import TrainConfig

#: The attack name of the per-image worst case over an attack suite (an image counts as broken when any
#: attack of the suite broke it, verified). Tables and verdicts find that row by this name.
WORST_CASE = "worst case"


# -- the adaptive suite: a defence is judged by the strongest attack tried against the whole pipeline ----------

#: The attacks of ``adaptive_suite``, in the order they run and appear in tables. "DE k=1" is Su et al.'s attack at
#: the profile's budget (the row set beside the papers' numbers); the others look for what it misses.
SUITE: tuple[str, ...] = ("DE k=1", "DE k=1, strong", "corner", "white-box corner", "Sparse-RS")

#: The suite's attacks that follow the model's gradient. A defence that only breaks gradients (gradient masking)
#: can change only these rows; the black-box ones query the pipeline's outputs.
WHITE_BOX: tuple[str, ...] = ("white-box corner",)

# Columns ``summarize`` computes; every other column of a row is a label (model, seed, defence, ...).
_MEASURED = ("clean_acc", "attacked", "asr", "asr_lo", "asr_hi", "robustness", "robust_acc", "mean_queries",
             "unverified", "outcomes", "attack", "targeted", "precision", "image_ids")


def suite_attacks(model: nn.Module, profile: Profile) -> dict[str, Any]:
    """The untargeted one-pixel attacks of ``adaptive_suite`` against ``model`` (the whole pipeline), by name.

    * "DE k=1": DE at the profile's budget, Su et al.'s probability fitness (``profile.de_config()``);
    * "DE k=1, strong": population and generations x ``profile.strong_scale`` (about ``strong_scale**2`` x the
      queries), margin (logit-difference) fitness: a saturated softmax, as after distillation, leaves the
      probability fitness flat while the logits still point the way;
    * "corner": the profile's corner search (exhaustive where ``corner_queries`` is None);
    * "white-box corner": the ``profile.wb_positions`` x 2**C (position, corner colour) candidates that the input
      gradient of the margin, taken through the whole pipeline (gate, transformation, temperature), ranks best
      (first-order estimate of the margin's change), every candidate verified by a forward pass;
    * "Sparse-RS": black-box random search with a margin loss, ``profile.rs_queries`` queries per image.
    """
    s, precision = profile.strong_scale, profile.precision  # every search in the profile's precision, fp32-confirmed
    return {
        "DE k=1": OnePixel(model, profile.de_config()),
        "DE k=1, strong": OnePixel(model, profile.de_config(population=s * profile.population,
                                                           generations=s * profile.generations, loss="margin")),
        "corner": CornerSearch(model, profile.corner_config()),
        "white-box corner": GradientCorner(model, GradientCornerConfig(
            positions=profile.wb_positions, rank="candidate", loss="margin", precision=precision)),
        "Sparse-RS": SparseRS(model, SparseRSConfig(pixels=1, queries=profile.rs_queries, precision=precision)),
    }


def worst_case(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The per-image worst case over ``rows`` (one model's untargeted rows, same images): attack ``WORST_CASE``.

    An image counts as broken when any row's verified outcome says so (the OR of the ``outcomes``). Labels and
    clean accuracy come from the first row; ``mean_queries`` is what the whole suite spent per image (the sum
    over the attacks; gradient passes not counted); ``unverified`` is 0 (only verified outcomes enter).
    """
    if not rows:
        raise ValueError("worst_case needs at least one row")
    n = rows[0]["attacked"]
    if any(len(r["outcomes"]) != n or r.get("targeted") for r in rows):
        raise ValueError("worst_case takes untargeted rows with outcomes on the same images")
    broken = [int(any(o)) for o in zip(*(r["outcomes"] for r in rows))] if n else []
    k = sum(broken)
    asr = k / n if n else float("nan")
    lo, hi = wilson(k, n)
    labels = {c: v for c, v in rows[0].items() if c not in _MEASURED}
    acc = rows[0]["clean_acc"]
    return {**labels, "clean_acc": acc, "attacked": n, "asr": asr, "asr_lo": lo, "asr_hi": hi,
            "robustness": 1 - asr, "robust_acc": acc * (1 - asr),
            "mean_queries": sum(r["mean_queries"] for r in rows), "unverified": 0, "outcomes": tuple(broken),
            "attack": WORST_CASE, "targeted": False,
            "precision": "/".join(dict.fromkeys(r.get("precision", "unknown") for r in rows)),
            **({"image_ids": rows[0]["image_ids"]} if "image_ids" in rows[0] else {})}


def adaptive_suite(model: nn.Module, model_key: str, split: Any, indices: Tensor, profile: Profile, /, *,
                   progress: bool = True, **labels: Any) -> Evaluation:
    """Every attack of ``SUITE`` on the same images, and per image the worst case over them.

    Each attack runs through ``run_attack`` (cached per image under ``model_key``, resumable) and every success
    is re-checked by ``verify``; "DE k=1" and "corner" share their cache entries with ``evaluate_model``.

    Args:
        model: the whole pipeline (transformation, gate, network), eval mode, input [0, 1].
        model_key: its cache key; split: the test split; indices: (n,) the attacked images (correctly classified).
        profile: a ``labkit.profiles.Profile`` (budgets of every attack; ``suite_attacks``).
        labels: extra columns of the rows (e.g. model="small_cnn", defence="APR").

    Returns:
        rows: one per attack of ``SUITE`` (``summarize``), then the ``WORST_CASE`` row (``worst_case``), each
        with ``outcomes`` (n 0/1, in the order of ``indices``); results: the ``AttackResult`` per attack.
    """
    acc = clean_accuracy(model, split, profile.eval_size)
    images, y = split.floats(indices), split.labels[indices]
    rows, results = [], {}
    for name, attack in suite_attacks(model, profile).items():
        res = run_attack(attack, images, y, model_key=model_key, indices=indices, progress=progress)
        ok = verify(model, images, res, max_pixels=1)
        rows.append(summarize(res, ok, acc, image_ids=indices, **labels, attack=name, targeted=False))
        results[name] = res
    return Evaluation(rows + [worst_case(rows)], results)


def sweep_attack(model: nn.Module, model_key: str, split: Any, indices: Tensor, profile: Profile, /, *,
                 full: bool = False, progress: bool = True, **labels: Any) -> Evaluation:
    """The attacks of a sweep of many pipelines (Lab 03), as ``profile.sweep_suite`` says.

    ``full`` pipelines (the undefended model, the settings a paper's claim is about) and every pipeline when
    ``sweep_suite == "adaptive"`` get ``adaptive_suite``; otherwise ``evaluate_model``: DE and the corner search
    ("protocol") or DE alone ("de"). The sweep draws a trade-off curve, for which one attack shared by every
    pipeline suffices; the claims are judged on the ``full`` pipelines under the whole suite.
    """
    if full or profile.sweep_suite == "adaptive":
        return adaptive_suite(model, model_key, split, indices, profile, progress=progress, **labels)
    return evaluate_model(model, model_key, split, indices, profile, corner=profile.sweep_suite == "protocol",
                          progress=progress, **labels)


def _rows_of(evaluation: Evaluation | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(evaluation.rows if isinstance(evaluation, Evaluation) else evaluation)


def broke_what(evaluation: Evaluation | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Which attack broke what: per model (labels) and attack, counts of the attacked images.

    ``evaluation``: an ``adaptive_suite`` result, or rows of several (e.g. ``evaluate_suite``'s); untargeted rows
    with ``outcomes`` only, the ``WORST_CASE`` row excepted. Columns: the labels, ``attack``, ``images`` (n),
    ``broken`` (verified successes), ``only`` (images no other attack of the suite broke) and ``missed`` (images
    it left intact that another attack broke). An attack whose ``only`` is 0 adds nothing to the worst case.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in _rows_of(evaluation):
        if r["attack"] != WORST_CASE and not r.get("targeted") and "outcomes" in r:
            labels = tuple((c, v) for c, v in r.items() if c not in _MEASURED)
            groups.setdefault(labels, []).append(r)
    out = []
    for labels, rs in groups.items():
        hits = torch.tensor([r["outcomes"] for r in rs], dtype=torch.bool).view(len(rs), -1)  # (attacks, n)
        for i, r in enumerate(rs):
            others = torch.cat([hits[:i], hits[i + 1:]]).any(0)
            out.append({**dict(labels), "attack": r["attack"], "images": hits.shape[1],
                        "broken": int(hits[i].sum()), "only": int((hits[i] & ~others).sum()),
                        "missed": int((~hits[i] & others).sum())})
    return out


def query_curves(evaluation: Evaluation, budgets: Sequence[int] | None = None,
                 points: int = 40) -> dict[str, tuple[list[int], list[float]]]:
    """Verified success rate against the query budget per image, per attack (``labkit.plotting.budget_curves``).

    ``evaluation``: an ``adaptive_suite`` (or ``evaluate_model``) result, one model, untargeted. A budget b counts
    an image when the attack broke it (verified) within b queries (``AttackResult.queries``: forward evaluations;
    the white-box corner's gradient pass is not counted). ``budgets`` default to ``points`` log-spaced values
    from 1 to the largest query count of any attack.
    """
    rows = {r["attack"]: r for r in evaluation.rows}
    if budgets is None:
        top = max(int(res.queries.max()) for res in evaluation.results.values() if len(res))
        budgets = sorted({int(round(b)) for b in torch.logspace(0, math.log10(max(top, 1)), points).tolist()})
    verified = {name: torch.tensor(rows[name]["outcomes"], dtype=torch.bool) for name in evaluation.results}
    return {name: (list(budgets), success_at_budgets(res, budgets, verified[name]))
            for name, res in evaluation.results.items()}


def benchmark_table(evaluation: Evaluation, reference: str = "corner") -> list[dict[str, Any]]:
    """The attack benchmark on one model: per attack, its verified ASR, the median queries of its successes, and
    the fewest queries per image at which it reaches the ``reference`` attack's final success rate (None when it
    never does; with an exhaustive corner search as reference, that rate is every image an extreme-colour pixel
    breaks)."""
    rows = {r["attack"]: r for r in evaluation.rows}
    target = rows[reference]["asr"]
    out = []
    for name, res in evaluation.results.items():
        ok = torch.tensor(rows[name]["outcomes"], dtype=torch.bool)
        q = res.queries[ok].sort().values  # the budgets at which successes arrive
        need = math.ceil(target * len(ok) - 1e-9)  # images to break to match the reference
        reach = (int(q[need - 1]) if need > 0 else 0) if len(q) >= need else None
        out.append({"attack": name, "images": len(ok), "asr": rows[name]["asr"],
                    "median_queries": float(q.float().median()) if len(q) else None,
                    f"queries_to_{reference}_asr": reach})
    return out


# -- suites: the protocol over many trained models (Labs 03-07) ------------------------------------

@dataclass(frozen=True)
class Entry:
    """One row group of a lab's table: a training config, optionally behind an input transformation."""

    defence: str  # the row's label, e.g. "APR" or "IT (JPEG q75)"
    config: TrainConfig  # the model to train (or load) through the cache
    transform: Any = None  # a labkit.defences.InputTransform in front of the trained model, or None
    paper: str | None = None  # the key of the paper's row this one is compared with (``apr_tables.seed_table``'s claims)


@dataclass
class Trained:
    """An ``Entry`` trained (or loaded): the whole pipeline to attack and its cache key."""

    entry: Entry
    model: nn.Module  # eval mode; transform included
    key: str  # cache key of the pipeline (attack records live under it)
    history: list[dict[str, float]]
    train_seconds: float

    def to_record(self) -> dict[str, Any]:
        """This pipeline as a lab record's "models" section keeps it (``storable.model_entry``; no weights)."""
        c = self.entry.config
        return model_entry(key=self.key, model=c.model, seed=c.seed, defence=self.entry.defence,
                           train_seconds=self.train_seconds, history=self.history)

    @classmethod
    def from_record(cls, entry: Entry, stored: dict[str, Any]) -> Trained:
        """``entry``'s pipeline as a record keeps it (``stored``: its ``to_record``), the network a ``NoWeights``."""
        return cls(entry, NoWeights(stored["key"]), stored["key"], stored["history"], stored["train_seconds"])


def train_entry(e: Entry, device: str | torch.device = "auto", progress: bool = True) -> Trained:
    """Load or train ``e``'s model through the cache; its transform is put in front (``defences.defended``)."""
    # Kept local: training code (defences -> train) loads only when a suite is trained, so that importing
    # labkit.suites stays light (the attack suite needs none of it).
    from labkit.defences import defended, defended_key
    from labkit.train import get_or_train

    tm = get_or_train(e.config, device, progress)
    model = tm.model if e.transform is None else defended(tm.model, e.transform)
    key = tm.key if e.transform is None else defended_key(tm.key, e.transform)
    return Trained(e, model.eval(), key, tm.history, tm.train_seconds)


def entry_key(e: Entry) -> str:
    """The cache key ``train_entry(e)`` gives the pipeline, known without training (a record's replay checks it)."""
    # Kept local, as in train_entry: the key functions live with the training code.
    from labkit.defences import defended_key
    from labkit.train import model_key

    key = model_key(e.config)
    return key if e.transform is None else defended_key(key, e.transform)


def train_suite(entries: list[Entry], device: str | torch.device = "auto", progress: bool = True) -> list[Trained]:
    """Load or train every entry through the cache (``train_entry``)."""
    return [train_entry(e, device, progress) for e in entries]


# A lab record's models step trains an Entry, checks its key on replay and rebuilds it, through this.
register_plan(Entry, key=entry_key, train=train_entry, rebuild=Trained.from_record)


def _groups(trained: list[Trained]) -> dict[tuple[str, int], list[Trained]]:
    """Trained entries by (architecture, seed): the models compared on the same images."""
    groups: dict[tuple[str, int], list[Trained]] = {}
    for t in trained:
        groups.setdefault((t.entry.config.model, t.entry.config.seed), []).append(t)
    return groups


def attacked_indices(trained: list[Trained], profile: Profile) -> dict[tuple[str, int], Tensor]:
    """Test-set indices of the images to attack, per (architecture, seed): the first ``profile.n_attack``
    (``labkit.data.first_n`` order) that the group's reference, its first entry (the undefended model; full APR in
    the ablation), classifies correctly.

    ``evaluate_suite`` attacks every other entry on those of these images it classifies correctly too
    (``still_correct``), and the verdicts pair each with the reference on the images both were attacked on. Asking
    *every* entry to be right instead would let the least accurate one (a PGD-trained model at 51% here) choose the
    images: easy, high-margin ones, on which every attack rate, the reference's included, is biased down.
    """
    split = load_cifar10("test")
    return {group: common_correct([members[0].model], split, profile.n_attack)
            for group, members in _groups(trained).items()}


def evaluate_suite(trained: list[Trained], profile: Profile, indices: dict[tuple[str, int], Tensor] | None = None,
                   progress: bool = True) -> SuiteRows:
    """The adaptive suite (``adaptive_suite``: every attack of ``SUITE`` against the whole pipeline, and the
    per-image ``WORST_CASE``) for every entry, on the images ``indices[(architecture, seed)]`` (default:
    ``attacked_indices(trained, profile)``; pass them when they are needed again, to compute them once).

    Returns one row per (entry, attack), with columns model, seed, defence, paper, attack, ... (see
    ``summarize``), as ``SuiteRows`` (the attack results and images kept beside the rows). The reference (first
    entry) of an (architecture, seed) is attacked on all of ``indices[(architecture, seed)]``, every other entry on
    those it classifies correctly; rows carry ``image_ids``, so ``labkit.labs.apr_tables`` pairs them image by image.
    """
    split = load_cifar10("test")
    indices = attacked_indices(trained, profile) if indices is None else indices
    rows = SuiteRows()
    for (arch, seed), group in _groups(trained).items():
        for t in group:
            # Each entry on the reference's images it classifies correctly (all of them, for the reference).
            mine = still_correct(t.model, split, indices[(arch, seed)])
            ev = adaptive_suite(t.model, t.key, split, mine, profile, progress=progress,
                                model=arch, seed=seed, defence=t.entry.defence, paper=t.entry.paper)
            rows += ev.rows
            rows.results.update({(arch, seed, t.entry.defence, attack): res for attack, res in ev.results.items()})
            rows.indices[(arch, seed, t.entry.defence)] = mine
    return rows
