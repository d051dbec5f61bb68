"""From attack records to numbers a reader can trust.

* ``run_attack`` runs an attack through the cache: per-image records, saved after
  every chunk of images, so an interrupted evaluation resumes from its last
  finished chunk.
* ``run_certify`` does the same for ``labkit.certify.certify``'s verdicts (Lab 12, ``python -m labkit certify``).
* ``summarize`` turns records into one table row (aggregates are always computed
  from records; only successes ``labkit.attacks.verify`` confirms count; its Wilson
  interval comes from ``labkit.stats``).
* ``evaluate_model`` is the book's protocol for one model (clean accuracy, DE,
  corner search); ``time_inference`` times models side by side (``timing_repeats``
  per profile, ``labkit.models.device_name`` says on what).
* The two kinds of table a lab record keeps (``labkit.storable``): ``Evaluation`` (one model's rows and results)
  and ``SuiteRows`` (``labkit.suites.evaluate_suite``'s, many models').
* Targets and probabilities: ``target_pairs``, ``rotating_targets``, ``pair_matrix``, ``probabilities``,
  ``compare_attacks``.

The adaptive suite every defence is judged by, and the protocol over suites of trained models (Labs 03-07), are
``labkit.suites``, built on this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from labkit.attacks import CornerSearch, OnePixel, verify
from labkit.attacks.base import AttackResult, model_device
from labkit.cache import cache_path, config_key, load_checked, save_atomic
from labkit.data import correctly_classified, first_n, predict
from labkit.models import synchronize
from labkit.stats import wilson
from labkit.storable import Store, storable

if TYPE_CHECKING:  # annotations only: importing labkit.evaluate stays light (no training code)
    from labkit.certify import CertifyConfig, CertifyResult
    from labkit.profiles import Profile

RECORD_FORMAT = 2  # 2: results record the precision that ran (AttackResult.bf16); labels in the key


def success_at_budgets(result: AttackResult, budgets: Sequence[int], verified: Tensor | None = None) -> list[float]:
    """Fraction of images broken within each query budget (from per-image queries).

    ``verified`` (N,) bool, when given, replaces the attack's own verdict (``verify``'s answer).
    """
    ok = result.success if verified is None else verified.to(torch.bool)
    return [(ok & (result.queries <= b)).float().mean().item() for b in budgets]


def run_attack(attack: Any, images: Tensor, labels: Tensor, *, model_key: str, indices: Tensor,
               targets: Tensor | None = None, chunk_images: int = 50, progress: bool = True) -> AttackResult:
    """Run ``attack`` on images (N, C, H, W) through the cache, resumably.

    The cache key hashes the model's key, the attack's class and config, and the
    dataset ``indices`` (and targets) of the images. The record holds one entry
    per image (the ``AttackResult`` rows) and is saved after every chunk of
    ``chunk_images`` images, not after every image: the attacks run a chunk's
    images in lockstep (DE evolves all their populations in one stream of
    forward passes per generation), so no image of a chunk is finished before the
    chunk is, and saving per image would mean chunks of one image, without
    batching. An interrupted run therefore loses the chunk in progress (at most
    ``chunk_images`` images of work; with the default 50, a few minutes on a CPU);
    a rerun loads the finished chunks and attacks the rest. The attacks are
    batch-independent (each image's random stream is its own), so a resumed run,
    even with another ``chunk_images``, returns what an uninterrupted one would.
    """
    key = config_key("attack", model_key, type(attack).__name__, attack.config, indices, labels,
                     None if targets is None else targets)
    return _resumable(
        "attacks", key, len(images), chunk_images, AttackResult,
        lambda sl: attack(images[sl], labels[sl], None if targets is None else targets[sl]),
        f"{type(attack).__name__} ({model_key[:6]})", progress, "run_attack")


def _resumable(kind: str, key: str, n: int, chunk: int, result_type: Any, compute: Any, desc: str, progress: bool,
               caller: str) -> Any:
    """The chunked, resumable cache loop of ``run_attack`` and ``run_certify``: load the finished chunks of entry
    ``key`` (family ``kind``), run ``compute(slice)`` on the rest ``chunk`` images at a time, and after each chunk
    save all rows so far atomically. ``result_type`` joins (``cat``), saves (``to_dict``) and loads (``from_dict``)
    its rows. Raises ValueError (naming ``caller``) for no images."""
    path = cache_path(kind, key)
    expect = {"format": RECORD_FORMAT, "key": key, "n": n}
    saved = load_checked(path, expect)
    parts = [result_type.from_dict(saved["result"])] if saved and saved["done"] > 0 else []
    done = saved["done"] if saved else 0
    bar = tqdm(total=n, initial=done, desc=desc, disable=not progress)
    for start in range(done, n, chunk):
        parts = [result_type.cat(parts + [compute(slice(start, start + chunk))])]
        done = min(start + chunk, n)
        save_atomic({**expect, "done": done, "result": parts[0].to_dict()}, path)
        bar.update(done - bar.n)
    bar.close()
    if not parts:
        raise ValueError(f"{caller} needs at least one image")
    return parts[0]


def run_certify(model: nn.Module, images: Tensor, labels: Tensor, *, model_key: str, indices: Tensor,
                config: CertifyConfig | None = None, chunk_images: int = 8, progress: bool = True) -> CertifyResult:
    """``labkit.certify.certify`` on images (N, C, H, W) in [0, 1] through the cache, resumably (as ``run_attack``).

    The key hashes the model's key, the ``CertifyConfig`` and the dataset ``indices`` and labels; the verdicts are
    saved after every chunk of ``chunk_images`` images, so an interrupted run loses at most one chunk. Verdicts do
    not depend on the chunking (each image's search is its own), but a wall-clock budget (``max_seconds``) makes an
    image's UNKNOWN depend on the machine: the key says which budget, the record which device.
    """
    from labkit.certify import CertifyConfig, CertifyResult, certify  # bound code loads only when certifying

    cfg = config or CertifyConfig()
    key = config_key("certify", model_key, cfg, indices, labels)
    return _resumable("certify", key, len(images), chunk_images, CertifyResult,
                      lambda sl: certify(model, images[sl], labels[sl], cfg), f"certify ({model_key[:6]})",
                      progress, "run_certify")


def summarize(result: AttackResult, verified: Tensor, clean_accuracy: float, *, image_ids: Tensor | None = None,
              **labels: Any) -> dict[str, Any]:
    """One table row: clean accuracy, ASR with its Wilson 95% CI, robustness, robust accuracy.

    ASR is over the attacked (correctly classified) images and counts only
    verified successes; robust accuracy over all images is estimated as
    clean accuracy x (1 - ASR). ``outcomes`` keeps the verified success of every
    attacked image (a tuple of 0/1 in the order of the attacked indices), so rows
    of models attacked on the same images can be compared pairwise (``labkit.stats``);
    ``image_ids`` (the attacked images' test-set indices), when given, is kept too, so
    rows of several seeds that attacked the same images are compared per image.
    """
    n, k = len(result), int(verified.sum())
    asr = k / n if n else float("nan")
    lo, hi = wilson(k, n)
    return {**labels, "clean_acc": clean_accuracy, "attacked": n, "asr": asr, "asr_lo": lo, "asr_hi": hi,
            "robustness": 1 - asr, "robust_acc": clean_accuracy * (1 - asr),
            "mean_queries": result.queries.float().mean().item(),
            "unverified": int(result.success.sum()) - k, "outcomes": tuple(int(v) for v in verified.tolist()),
            "precision": result.precision_used,
            **({} if image_ids is None else {"image_ids": tuple(int(i) for i in torch.as_tensor(image_ids))})}


# -- the evaluation protocol shared by every lab ----------------------------------------------------

def clean_accuracy(model: nn.Module, split: Any, n: int | None = None) -> float:
    """Top-1 accuracy on the first ``n`` images (``labkit.data.first_n`` order; all when None or n > len)."""
    idx = first_n(split, min(n or len(split), len(split)))
    return (predict(model, split.images[idx]) == split.labels[idx]).float().mean().item()


def common_correct(models: Sequence[nn.Module], split: Any, n: int, pool: int | None = None) -> Tensor:
    """Indices of the first ``n`` images (``first_n`` order) that *every* model classifies correctly.

    The same images for every defence: ``labkit.data.correctly_classified`` with several models.
    """
    return correctly_classified(models, split, n, pool)


def still_correct(model: nn.Module, split: Any, indices: Tensor) -> Tensor:
    """The entries of ``indices`` (in their order) that ``model`` still classifies correctly.

    A sweep attacks every pipeline on the images its comparisons are paired on; a pipeline that misclassifies
    some of them clean (a strong transformation costs accuracy) is attacked on the rest, since an image it
    already gets wrong needs no attack. Choosing the shared images by *every* pipeline instead keeps only the
    images that survive the harshest transformation: easy, high-margin images that bias every ASR down.
    """
    indices = torch.as_tensor(indices)
    return indices[predict(model, split.images[indices]) == split.labels[indices]]


@storable("evaluation")
@dataclass
class Evaluation:
    """Rows of a results table and the per-image attack results behind them (by attack name)."""

    rows: list[dict[str, Any]]
    results: dict[str, AttackResult]

    def to_record(self, store: Store, name: str, *, indices: Tensor | None = None) -> None:
        """Keep the rows in a lab record's tables and each result per image under ``name/<attack>``;
        ``indices``: the dataset indices (n,) of the attacked images, the results' rows."""
        store.put("tables", name, self.rows)
        if indices is None:
            raise ValueError(f"record {name!r}: an Evaluation needs the indices of its images")
        for attack, res in self.results.items():
            res.to_record(store, f"{name}/{attack}", indices=indices, labels={"attack": attack})

    @classmethod
    def from_record(cls, store: Store, name: str) -> Evaluation:
        """What ``to_record`` kept under ``name``, the results rebuilt (``AttackResult.from_record``)."""
        return cls(store.stored("tables", name), {labels["attack"]: AttackResult.from_record(store, key)
                                                  for key, labels in store.named_under("attacks", name).items()})


@storable("suite")
class SuiteRows(list):
    """``labkit.suites.evaluate_suite``'s rows (a plain list of row dicts to every reader), with what produced them:
    ``results[(architecture, seed, defence, attack)]``, the ``AttackResult`` behind each attack row, and
    ``indices[(architecture, seed, defence)]``, the dataset indices of the images that entry was attacked on (the
    result rows' order).
    """

    def __init__(self, rows: Sequence[dict[str, Any]] = (), results: dict[tuple, AttackResult] | None = None,
                 indices: dict[tuple[str, int, str], Tensor] | None = None):
        super().__init__(rows)
        self.results = dict(results or {})
        self.indices = dict(indices or {})

    def to_record(self, store: Store, name: str, *, indices: Tensor | None = None) -> None:
        """Keep the rows in a lab record's tables and each result per image under
        ``name/<architecture>/<seed>/<defence>/<attack>``, labelled so; ``indices`` is not needed (kept inside)."""
        store.put("tables", name, list(self))
        for (arch, seed, defence, attack), res in self.results.items():
            res.to_record(store, f"{name}/{arch}/{seed}/{defence}/{attack}", indices=self.indices[arch, seed, defence],
                          labels={"model": arch, "seed": seed, "defence": defence, "attack": attack})

    @classmethod
    def from_record(cls, store: Store, name: str) -> SuiteRows:
        """What ``to_record`` kept under ``name``, the results and each entry's indices rebuilt."""
        results, where = {}, {}
        for key, labels in store.named_under("attacks", name).items():
            arch, seed, defence = labels["model"], labels["seed"], labels["defence"]
            results[arch, seed, defence, labels["attack"]] = AttackResult.from_record(store, key)
            where[arch, seed, defence] = store.stored_array(f"{key}/index")
        return cls(store.stored("tables", name), results, where)


def evaluate_model(model: nn.Module, model_key: str, split: Any, indices: Tensor, profile: Profile, /, *,
                   pixels: int = 1, corner: bool | None = None, targets: Tensor | None = None,
                   de_overrides: dict[str, Any] | None = None, progress: bool = True,
                   **labels: Any) -> Evaluation:
    """The protocol of the book: clean accuracy, then DE (and corner search) on ``indices``.

    Args:
        model: the whole defended pipeline, eval mode, input [0, 1].
        model_key: its cache key (attack records are cached under it).
        split: the test split; ``indices``: the attacked images (correctly classified).
        profile: a ``labkit.profiles.Profile`` (DE budget, eval size, corner on/off).
        pixels: k; targets: (n,) int64 for targeted attacks; de_overrides: DEConfig fields.
        labels: extra columns for the rows (e.g. model="small_cnn", defence="JPEG q50").
    """
    acc = clean_accuracy(model, split, profile.eval_size)
    images, y = split.floats(indices), split.labels[indices]
    targeted = targets is not None
    attacks = {f"DE k={pixels}": OnePixel(model, profile.de_config(pixels=pixels, targeted=targeted,
                                                                  **(de_overrides or {})))}
    if (profile.corner if corner is None else corner) and pixels == 1:
        attacks["corner"] = CornerSearch(model, profile.corner_config(targeted=targeted))
    rows, results = [], {}
    for name, attack in attacks.items():
        res = run_attack(attack, images, y, model_key=model_key, indices=indices, targets=targets,
                         progress=progress)
        ok = verify(model, images, res, max_pixels=pixels)
        rows.append(summarize(res, ok, acc, image_ids=indices, **labels, attack=name, targeted=targeted))
        results[name] = res
    return Evaluation(rows, results)


def time_inference(models: dict[str, nn.Module], images: Tensor, repeats: int = 7, warmup: int = 2,
                   batch_size: int = 100) -> dict[str, float]:
    """Median seconds per image of each model on ``images``, measured side by side.

    The models take turns within every repeat, so slow drifts of the machine
    (thermal, other load) hit all of them alike; ratios between them are what to report.
    """
    import statistics
    import time

    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for rep in range(warmup + repeats):
            for name, m in models.items():
                dev = model_device(m)
                x = images[:batch_size].to(dev)
                synchronize(dev)
                t0 = time.perf_counter()
                m(x)
                synchronize(dev)
                if rep >= warmup:
                    times[name].append((time.perf_counter() - t0) / len(x))
    return {name: statistics.median(t) for name, t in times.items()}


#: (warm-up, timed repeats) of a side-by-side timing where a profile sets none (its ``timing`` section).
DEFAULT_TIMING = (2, 9)


def timing_repeats(profile: Profile) -> tuple[int, int]:
    """(warm-up, timed repeats) of the side-by-side timings in ``profile``: its ``timing`` section
    (``Profile.lab``; enough repeats for a stable median), else ``DEFAULT_TIMING``."""
    section = profile.lab("timing")
    return int(section.get("warmup", DEFAULT_TIMING[0])), int(section.get("repeats", DEFAULT_TIMING[1]))


@torch.no_grad()
def probabilities(model: nn.Module, images: Tensor, batch_size: int = 500) -> Tensor:
    """Softmax probabilities (N, classes) of ``model`` (fp32) on [0, 1] images (N, C, H, W)."""
    dev = model_device(model)
    parts = [torch.softmax(model(images[s:s + batch_size].to(dev)).float(), 1).cpu()
             for s in range(0, len(images), batch_size)]
    return torch.cat(parts) if parts else torch.empty(0)


def target_pairs(labels: Tensor, num_classes: int = 10) -> tuple[Tensor, Tensor]:
    """Every (image, other class) pair: (row index into ``labels``, target), each (N * (classes-1),), image by
    image, targets in the order label + 1, label + 2, ... (mod classes).

    Su et al.'s targeted protocol attacks each image towards each of the other classes (``labs.su.all_targets``
    runs it).
    """
    n = len(labels)
    offsets = torch.arange(1, num_classes).repeat(n)
    rows = torch.arange(n).repeat_interleave(num_classes - 1)
    return rows, (labels[rows] + offsets) % num_classes


def pair_matrix(labels: Tensor, targets: Tensor, success: Tensor, num_classes: int = 10) -> Tensor:
    """Success rate per (true class, target class), (classes, classes); NaN where never tried."""
    tried = torch.zeros(num_classes, num_classes)
    won = torch.zeros(num_classes, num_classes)
    tried.index_put_((labels, targets), torch.ones(len(labels)), accumulate=True)
    won.index_put_((labels, targets), success.float(), accumulate=True)
    return torch.where(tried > 0, won / tried.clamp(min=1), torch.full_like(tried, float("nan")))


def rotating_targets(labels: Tensor, num_classes: int = 10) -> Tensor:
    """One target per image, never its label, cycling through the other classes: (N,) int64.

    Image i is sent to class (label + 1 + i mod (classes-1)) mod classes, so a run of
    images covers every offset evenly; labs that share images share targets (and cache entries).
    """
    i = torch.arange(len(labels))
    return (labels + 1 + i % (num_classes - 1)) % num_classes


def compare_attacks(first: Tensor, second: Tensor) -> dict[str, float]:
    """Overlap of two attacks' (verified) successes on the same images, as fractions of the images."""
    n = max(len(first), 1)
    return {"first": first.sum().item() / n, "second": second.sum().item() / n,
            "only_first": (first & ~second).sum().item() / n, "only_second": (second & ~first).sum().item() / n,
            "either": (first | second).sum().item() / n}
