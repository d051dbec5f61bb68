"""The attack contract shared by every attack in labkit.

An attack is constructed with a model in eval mode and its hyper-parameters and
called as ``attack(images, labels)`` (``targets=`` for targeted attacks) on
float images in [0, 1], shape (N, C, H, W), with int64 labels (N,). It returns
an :class:`AttackResult`. Normalisation is the model's business, never the attack's.

What every attack shares lives here: the config-merging constructor and the
opening of every call, the contract's checks and the move to the model's device
(:class:`Attack`, :class:`Problem`), the stream of candidates through the model
with its bf16-search / fp32-confirmation step (:class:`CandidateScorer`), the
search of an ordered candidate list with early stop (:func:`ordered_search`),
and the per-image random-stream key (:func:`attack_keys`). What checks a result
afterwards, whatever attack made it, is ``labkit.attacks.audit``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from labkit.attacks._rng import MASK, image_keys, mix
from labkit.precision import resolve_precision
from labkit.storable import ATTACK, Store, storable

#: Fitness functions an attack can minimise over its candidates (see ``CandidateScorer.score``).
LOSSES = ("prob", "margin")
#: The per-image fields of an ``AttackResult`` a lab record keeps (``adv_images`` is not: it is the clean image with
#: ``colours`` written at ``pixels`` by ``apply_pixels``, so the dataset and the record rebuild it).
PER_IMAGE = ("success", "queries", "pixels", "colours", "labels", "targets", "adv_pred", "adv_prob", "true_prob",
             "bf16")


@storable(ATTACK)
@dataclass
class AttackResult:
    """What an attack returns, one row per image (all tensors on the CPU).

    adv_images: (N, C, H, W) float in [0, 1]; for a failed image, the best candidate found.
    success: (N,) bool, the attack's own verdict (re-verify with ``labkit.attacks.verify``).
    queries: (N,) int64, candidates evaluated on the image (see each attack for how counted; the fp32
    re-checks of bf16 successes are not counted).
    pixels: (N, k, 2) int64 (row, column) of the changed pixels; -1 rows when nothing was changed. Attacks whose
    number of changed pixels varies by image (pixel swap, the dense torchattacks wrappers) pad to the largest k
    of the batch with -1 rows.
    colours: (N, k, C) float in [0, 1], the values written at ``pixels`` (0 in the -1 rows).
    labels: (N,) int64 true labels; targets: (N,) int64 targets of a targeted attack, else None.
    adv_pred: (N,) int64 the model's fp32 prediction on ``adv_images``.
    adv_prob: (N,) float, the probability of ``adv_pred``; true_prob: (N,) of the true label.
    bf16: (N,) bool, whether the search ran in bf16 (successes confirmed in fp32), or None in records made
    before it was kept: configs ask for a precision ("auto"), the result records what ran on this machine.
    """

    adv_images: Tensor
    success: Tensor
    queries: Tensor
    pixels: Tensor
    colours: Tensor
    labels: Tensor
    targets: Tensor | None
    adv_pred: Tensor
    adv_prob: Tensor
    true_prob: Tensor
    bf16: Tensor | None = None

    @property
    def precision_used(self) -> str:
        """"bf16", "fp32", "mixed" (chunks of a resumed record searched on different machines) or "unknown"."""
        if self.bf16 is None:
            return "unknown"
        return "bf16" if bool(self.bf16.all()) else "fp32" if not bool(self.bf16.any()) else "mixed"

    def __len__(self) -> int:
        return len(self.success)

    @property
    def success_rate(self) -> float:
        """Fraction of the images the attack reports as successful."""
        return self.success.float().mean().item() if len(self) else float("nan")

    def to_dict(self) -> dict[str, Tensor]:
        """Plain tensors for ``torch.save`` / ``torch.load(weights_only=True)``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Tensor]) -> "AttackResult":
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})

    def to_record(self, store: Store, name: str, *, indices: Tensor, labels: dict[str, Any] | None = None) -> None:
        """Keep this result in a lab record (``labkit.records``) under ``name``: one array per ``PER_IMAGE`` field
        (and ``index``: the dataset ``indices`` (N,) of its rows, from which a replay reloads the clean images),
        and in JSON its ``labels`` (e.g. the attack's name), precision, number of images and array names."""
        indices = torch.as_tensor(indices)
        if len(indices) != len(self):
            raise ValueError(f"record {name!r}: {len(indices)} indices for {len(self)} attacked images")
        arrays = {"index": indices, **{f: getattr(self, f) for f in PER_IMAGE if getattr(self, f) is not None}}
        for field, value in arrays.items():
            store.put_array(f"{name}/{field}", value)
        store.put("attacks", name, {**(labels or {}), "precision": self.precision_used, "images": len(self),
                                    "arrays": [f"{name}/{f}" for f in arrays]})

    @classmethod
    def from_record(cls, store: Store, name: str) -> "AttackResult":
        """The result ``to_record`` kept under ``name``, its ``adv_images`` rebuilt: the clean images of its
        dataset indices (``store.split()``) with the recorded ``colours`` written at ``pixels``."""
        store.stored("attacks", name)  # a record without it is stale (StaleRecord), not a missing array
        kept = {f: store.stored_array(f"{name}/{f}") for f in ("index", *PER_IMAGE)}
        clean = store.split().floats(kept.pop("index")).clone()  # written in place below
        pixels = kept["pixels"]
        return cls(apply_pixels(clean, pixels[..., 0], pixels[..., 1], kept["colours"]), **kept)

    def select(self, idx: Tensor | slice) -> "AttackResult":
        """The rows ``idx`` as a new result."""
        return AttackResult(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[idx]
                               for f in fields(self)})

    def padded(self, k: int) -> "AttackResult":
        """The same result with ``pixels`` and ``colours`` padded to ``k`` slots (-1 rows, colour 0)."""
        extra = k - self.pixels.shape[1]
        if extra < 0:
            raise ValueError(f"cannot pad {self.pixels.shape[1]} pixel slots down to {k}")
        if extra == 0:
            return self
        n = len(self.pixels)
        pixels = torch.cat([self.pixels, self.pixels.new_full((n, extra, 2), -1)], dim=1)
        colours = torch.cat([self.colours, self.colours.new_zeros((n, extra, self.colours.shape[2]))], dim=1)
        return dataclasses.replace(self, pixels=pixels, colours=colours)

    @classmethod
    def cat(cls, parts: list["AttackResult"]) -> "AttackResult":
        """Concatenate results row-wise (e.g. chunks of a resumable run).

        Parts with fewer pixel slots than the widest are padded (``padded``): a chunk's k is the largest of
        its batch when an attack changes a varying number of pixels.
        """
        k = max((p.pixels.shape[1] for p in parts), default=0)
        parts = [p.padded(k) for p in parts]
        out = {}
        for f in fields(cls):
            vals = [getattr(p, f.name) for p in parts]
            out[f.name] = None if any(v is None for v in vals) else torch.cat(vals)
        return cls(**out)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def check_inputs(model: nn.Module, images: Tensor, labels: Tensor, targets: Tensor | None = None,
                 targeted: bool = False) -> int:
    """Validate the attack contract; returns the model's number of classes.

    Raises TypeError for wrong types or dtypes and ValueError for wrong shapes,
    ranges or a model in training mode, each saying what was expected.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError("the model is in training mode (batch norm and dropout would change its answers "
                         "between queries); call model.eval() before attacking")
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
        raise TypeError("images and labels must be torch tensors")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be float in [0, 1], got {images.dtype} (uint8 images: divide by 255)")
    if len(images) and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"images must lie in [0, 1], got values in [{images.min():.3g}, {images.max():.3g}]")
    for name, t in (("labels", labels), ("targets", targets)):
        if t is None:
            continue
        if t.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"{name} must be an integer tensor, got {t.dtype}")
        if t.shape != (len(images),):
            raise ValueError(f"{name} must have shape ({len(images)},), got {tuple(t.shape)}")
    if targeted and targets is None:
        raise ValueError("a targeted attack needs targets=")
    if not targeted and targets is not None:
        raise ValueError("targets= given to an untargeted attack; construct it with targeted=True")
    with torch.no_grad():
        num_classes = model(images[:1].to(model_device(model))).shape[1] if len(images) else 0
    for name, t in (("labels", labels), ("targets", targets)):
        if t is not None and len(t) and (t.min() < 0 or t.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got [{t.min()}, {t.max()}]")
    if targets is not None and (targets == labels).any():
        raise ValueError("a target equals the true label for some image; a targeted attack needs another class")
    return num_classes


def default_chunk_size(device: torch.device) -> int:
    """The most candidates per forward pass: small batches are fastest per image on CPUs (batches of 50-100 beat
    400-1,000 on this project's CPUs, ``shared/NOTES.md``), large ones on GPUs. ``candidate_chunk_size`` lowers it
    where memory requires."""
    return 4096 if device.type == "cuda" else 100


#: Share of the free memory one chunk of candidates may fill; the rest is headroom for the allocator's
#: fragmentation, convolution workspaces and the attack's own tensors (populations, fitness, the images).
MEMORY_SHARE = 0.5
#: A candidate's forward pass holds about this many of its largest activations at once: a layer's input and output,
#: plus a residual branch's saved input (ResNet's bottleneck); a plain chain (VGG) holds two.
LIVE_ACTIVATIONS = 3
#: Assumed largest activation, in channels at the input's resolution, of a model whose layers cannot be observed
#: (a TorchScript file, scripted or traced): VGG-19's first stage, the widest full-resolution stage of the registered architectures.
FALLBACK_CHANNELS = 64


def candidate_bytes(model: nn.Module, image_shape: tuple[int, int, int]) -> int:
    """Estimated memory (bytes) one candidate takes in a forward pass of ``model`` on an image of ``image_shape``
    (C, H, W): its float32 image copy plus ``LIVE_ACTIVATIONS`` times its largest layer output (float32, the
    widest case: a bf16 search halves the activations).

    Measured by one forward pass of a single zero image with hooks on the model's leaf modules, so it knows the
    architecture, not a guess from its name.
    """
    c, h, w = image_shape
    largest = 0

    def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal largest
        if isinstance(output, Tensor):
            largest = max(largest, output[0].numel() * 4)

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = []
    try:
        for m in leaves:
            handles.append(m.register_forward_hook(record))
    except RuntimeError:  # a scripted module takes no Python hooks
        pass
    try:
        with torch.no_grad():
            model(torch.zeros(1, c, h, w, device=model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    if largest == 0:  # no hook ran: a scripted module refuses them, a traced one never calls its Python layers
        largest = FALLBACK_CHANNELS * h * w * 4
    return 4 * c * h * w + LIVE_ACTIVATIONS * largest


def free_memory(device: torch.device) -> int | None:
    """Free memory (bytes) on ``device``: CUDA's ``mem_get_info``; on a CPU, the kernel's ``MemAvailable``
    (``/proc/meminfo``); ``None`` where it cannot be read (another OS or device type)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024  # reported in kB
        except OSError:
            return None
    return None


def candidate_chunk_size(model: nn.Module, image_shape: tuple[int, int, int], device: torch.device | None = None,
                         budget_bytes: int | None = None) -> int:
    """Candidates per forward pass for ``model`` on images of ``image_shape`` (C, H, W): as many as fit in
    ``budget_bytes`` (default ``MEMORY_SHARE`` of the device's free memory) by ``candidate_bytes``, at most
    ``default_chunk_size`` (the fastest, measured) and at least 1.

    On 32 x 32 CIFAR-10 this is the old fixed default (100 on a CPU, 4,096 on a GPU); at 224 x 224 a VGG-19
    candidate takes about 37 MB, so a GPU with 20 GB free gets about 270, not 4,096.
    """
    device = device if device is not None else model_device(model)
    cap = default_chunk_size(device)
    if budget_bytes is None:
        free = free_memory(device)
        if free is None:
            return cap
        budget_bytes = int(free * MEMORY_SHARE)
    return max(1, min(cap, budget_bytes // candidate_bytes(model, image_shape)))


def apply_pixels(images: Tensor, rows: Tensor, cols: Tensor, colours: Tensor) -> Tensor:
    """Write ``colours`` (R, k, C) at (``rows``, ``cols``) (R, k) of ``images`` (R, C, H, W), in place.

    Pixels are written in order j = 0..k-1, so when two coincide the later one
    wins, deterministically on every device. A slot whose row is negative (the -1
    padding of an ``AttackResult``'s ``pixels``: nothing changed there) is left alone,
    so ``apply_pixels(clean.clone(), *result.pixels.unbind(-1), result.colours)`` is
    the result's ``adv_images``: what a record rebuilds them from.
    """
    ar = torch.arange(len(images), device=images.device)
    for j in range(rows.shape[1]):  # k <= a handful: a loop over pixel slots, never over images
        keep, r, c = rows[:, j] >= 0, rows[:, j].clamp(min=0), cols[:, j].clamp(min=0)
        # A padded slot writes back the value already there (a mask, not a boolean index: no device sync).
        images[ar, :, r, c] = torch.where(keep[:, None], colours[:, j].to(images.dtype), images[ar, :, r, c])
    return images


def attack_keys(images: Tensor, labels: Tensor, targets: Tensor | None = None) -> Tensor:
    """The 32-bit random-stream key of each attacked problem (N,): image content, label and target.

    Keyed by what the problem *is*, not where it sits in the batch, so an image's draws are the same alone or
    in any batch; the target enters too, so the targeted runs of one image towards different classes draw
    independently (Su et al.'s targeted protocol attacks each image towards nine targets).
    """
    keys = image_keys(images) ^ ((labels.to(images.device).long() * 0x9E3779B1) & MASK)
    if targets is not None:
        keys = mix(keys ^ (((targets.to(images.device).long() + 1) * 0x85EBCA77) & MASK))
    return keys


@dataclass(frozen=True)
class Problem:
    """One call's inputs, checked against the contract and on the model's device: what every attack's ``run``
    starts from (``Attack.prepare`` makes it)."""

    images: Tensor  # (N, C, H, W) float in [0, 1], on ``device``
    labels: Tensor  # (N,) integer true classes, on ``device``
    targets: Tensor | None  # (N,) integer target classes of a targeted attack, on ``device``; None when untargeted
    device: torch.device  # the model's (``model_device``): every tensor of the search lives there
    precision: str  # what the search runs in on ``device``: "fp32" or "bf16" (the config's "auto" resolved)


class Attack:
    """Base of every attack: ``Attack(model, config=None, **overrides)``, called as ``attack(images, labels,
    targets=None, progress=False)``.

    ``config`` is the attack's frozen config dataclass (``Config``); keyword
    overrides replace its fields (and are validated by its ``__post_init__``),
    so ``OnePixel(model, cfg, pixels=3)`` is ``cfg`` with ``pixels=3``.
    A call opens the same way for every attack (``prepare``: the contract's checks, the move to the model's
    device, the precision); subclasses implement ``run(problem, progress)``, the search itself.
    """

    Config: ClassVar[type]

    def __init__(self, model: nn.Module, config: Any = None, **overrides: Any):
        if config is not None and not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(config).__name__}")
        self.model = model
        self.config = dataclasses.replace(config if config is not None else self.Config(), **overrides)

    @property
    def precision_used(self) -> str:
        """The precision the search runs in on the model's device ("fp32" or "bf16"; "auto" resolved)."""
        return resolve_precision(self.config.precision, model_device(self.model))

    @property
    def fitness(self) -> str:
        """The fitness its forward checks minimise (one of ``LOSSES``); by default the config's ``loss``."""
        return getattr(self.config, "loss", "prob")

    def __call__(self, images: Tensor, labels: Tensor, targets: Tensor | None = None,
                 progress: bool = False) -> AttackResult:
        """Attack ``images`` (N, C, H, W) float in [0, 1] with true ``labels`` (N,) int64 (and ``targets`` (N,)
        int64 when the config is targeted); ``progress`` draws a progress bar where the attack has one.
        Returns an ``AttackResult`` on the CPU."""
        return self.run(self.prepare(images, labels, targets), progress)

    def prepare(self, images: Tensor, labels: Tensor, targets: Tensor | None) -> Problem:
        """The opening of every call: check the contract (``check_inputs``; raises TypeError / ValueError) and
        move the problem to the model's device. A subclass with a further requirement on its inputs extends it."""
        check_inputs(self.model, images, labels, targets, self.config.targeted)
        dev = model_device(self.model)
        return Problem(images.to(dev), labels.to(dev), None if targets is None else targets.to(dev), dev,
                       self.precision_used)

    def scorer(self, problem: Problem) -> "CandidateScorer":
        """The scorer that streams this attack's candidates for ``problem`` through the model (the config's
        ``chunk_size``, the search's precision, the attack's ``fitness``)."""
        return CandidateScorer(self.model, problem.images, problem.labels, problem.targets, self.config.chunk_size,
                               problem.precision, self.fitness)

    def run(self, problem: Problem, progress: bool) -> AttackResult:
        """The search on a prepared ``problem``: what each attack implements."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


class CandidateScorer:
    """Scores pixel candidates of many images in one stream of chunks.

    A candidate r is (image index ``img[r]``, pixels ``rows[r]``, ``cols[r]``
    (each (R, k)), ``colours[r]`` (R, k, C)). :meth:`score` returns its fitness
    (lower is better for the attack) and whether it is a success: the
    prediction differs from the label (untargeted) or equals the target.
    Searching in bf16, :meth:`confirm` re-checks successes in fp32, and
    :meth:`finish` reports everything in fp32.
    """

    def __init__(self, model: nn.Module, images: Tensor, labels: Tensor, targets: Tensor | None,
                 chunk_size: int | None = None, precision: str = "fp32", loss: str = "prob"):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16' (resolve 'auto' first), not {precision!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")
        self.model = model
        self.device = model_device(model)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.targets = None if targets is None else targets.to(self.device)
        # None: sized to the model, the image and the device's free memory (a fixed 4,096 would not fit
        # VGG-19 at 224 x 224 on most GPUs).
        _, c, h, w = images.shape
        self.chunk_size = chunk_size or candidate_chunk_size(model, (c, h, w), self.device)
        self.precision = precision
        self.loss = loss

    def perturbed(self, img: Tensor, rows: Tensor, cols: Tensor, colours: Tensor) -> Tensor:
        """The candidate images (R, C, H, W)."""
        return apply_pixels(self.images[img], rows, cols, colours)

    @torch.no_grad()
    def logits(self, img: Tensor, rows: Tensor, cols: Tensor, colours: Tensor,
               precision: str | None = None) -> Iterator[tuple[slice, Tensor]]:
        """The model's logits (as fp32) chunk by chunk: yields (row slice, (r, classes))."""
        bf16 = (precision or self.precision) == "bf16"
        for s in range(0, len(img), self.chunk_size):
            sl = slice(s, s + self.chunk_size)
            x = self.perturbed(img[sl], rows[sl], cols[sl], colours[sl])
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = self.model(x)
            yield sl, logits.float()

    def fitness(self, logits: Tensor, img: Tensor, loss: str | None = None) -> Tensor:
        """Fitness (R,) of candidates of images ``img`` from their logits (R, classes); lower is better.

        "prob" (Su et al.): the true class's probability, or 1 - the target's (targeted).
        "margin" (Carlini & Wagner; Croce et al.'s Sparse-RS): logit_true - max_{j != true} logit_j,
        or max_{j != target} logit_j - logit_target (targeted); negative exactly when the class
        the attack cares about has lost (won) the argmax, up to ties. Unlike the probability it
        does not go flat when the softmax saturates (distillation, high temperature).
        """
        cls = (self.labels if self.targets is None else self.targets)[img]
        if (loss or self.loss) == "prob":
            p = F.softmax(logits, dim=1).gather(1, cls[:, None]).squeeze(1)
            return 1 - p if self.targets is not None else p
        own = logits.gather(1, cls[:, None]).squeeze(1)
        others = logits.scatter(1, cls[:, None], float("-inf")).max(1).values
        return others - own if self.targets is not None else own - others

    def is_success(self, logits: Tensor, img: Tensor) -> Tensor:
        """(R,) bool: prediction != label (untargeted) or == target (targeted)."""
        pred = logits.argmax(1)
        return pred == self.targets[img] if self.targets is not None else pred != self.labels[img]

    def score(self, img: Tensor, rows: Tensor, cols: Tensor, colours: Tensor, precision: str | None = None,
              loss: str | None = None) -> tuple[Tensor, Tensor]:
        """(fitness (R,), success (R,) bool) of R candidates, in the search precision unless told."""
        fit = torch.empty(len(img), device=self.device)
        success = torch.empty(len(img), dtype=torch.bool, device=self.device)
        for sl, z in self.logits(img, rows, cols, colours, precision):
            fit[sl] = self.fitness(z, img[sl], loss)
            success[sl] = self.is_success(z, img[sl])
        return fit, success

    def confirm(self, img: Tensor, rows: Tensor, cols: Tensor, colours: Tensor, success: Tensor) -> Tensor:
        """``success`` (R,) with every candidate found in a bf16 search re-checked in fp32.

        A bf16 forward pass can flip a prediction that fp32 keeps (or the reverse);
        only what holds in fp32 counts. In an fp32 search this is the identity.
        """
        if self.precision == "fp32" or not success.any():
            return success
        hit = success.nonzero().squeeze(1)
        _, ok = self.score(img[hit], rows[hit], cols[hit], colours[hit], precision="fp32")
        out = torch.zeros_like(success)
        out[hit[ok]] = True
        return out

    def finish(self, rows: Tensor, cols: Tensor, colours: Tensor, success: Tensor, queries: Tensor) -> AttackResult:
        """Build the result for all images from one chosen candidate each (fp32 predictions)."""
        img = torch.arange(len(self.images), device=self.device)
        adv = self.perturbed(img, rows, cols, colours)
        return make_result(self.model, adv, self.labels, self.targets, success, queries,
                           torch.stack([rows, cols], dim=-1), colours, self.precision == "bf16", self.chunk_size)


@torch.no_grad()
def fp32_outcome(model: nn.Module, adv: Tensor, labels: Tensor, chunk_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """The model's fp32 answer on ``adv`` (N, C, H, W), ``chunk_size`` images per pass.

    Returns (prediction (N,) int64, its probability (N,), the probability of ``labels`` (N,)), on the CPU.
    Autocast is switched off: a result reports what the model says in fp32 whatever context it is called in.
    """
    if not len(adv):
        return torch.empty(0, dtype=torch.int64), torch.empty(0), torch.empty(0)
    dev = model_device(model)
    preds, probs, trues = [], [], []
    for s in range(0, len(adv), chunk_size):
        with torch.autocast(dev.type, enabled=False):
            p = F.softmax(model(adv[s:s + chunk_size].to(dev)).float(), dim=1)
        pred = p.argmax(1)
        preds.append(pred)
        probs.append(p.gather(1, pred[:, None]).squeeze(1))
        trues.append(p.gather(1, labels[s:s + chunk_size, None].to(dev)).squeeze(1))
    return torch.cat(preds).long().cpu(), torch.cat(probs).cpu(), torch.cat(trues).cpu()


def make_result(model: nn.Module, adv: Tensor, labels: Tensor, targets: Tensor | None, success: Tensor | None,
                queries: Tensor, pixels: Tensor, colours: Tensor, bf16: bool, chunk_size: int) -> AttackResult:
    """An ``AttackResult`` for the finished adversarial images ``adv`` (N, C, H, W), with the model's fp32
    prediction and probabilities on them (``fp32_outcome``); every tensor moved to the CPU.

    ``success=None`` judges success by that fp32 prediction (not the label, or the target when targeted):
    for attacks that do not check their own images.
    """
    pred, prob, true = fp32_outcome(model, adv, labels, chunk_size)
    if success is None:
        success = pred == targets.cpu() if targets is not None else pred != labels.cpu()
    return AttackResult(
        adv_images=adv.cpu(), success=success.cpu(), queries=queries.cpu(), pixels=pixels.cpu(),
        colours=colours.cpu(), labels=labels.cpu(), targets=None if targets is None else targets.cpu(),
        adv_pred=pred, adv_prob=prob, true_prob=true, bf16=torch.full((len(adv),), bf16),
    )


#: ``candidate(img, q) -> (position, corner index)``: the q-th candidate (R,) of images ``img`` (R,) in search order.
CandidateFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def ordered_search(scorer: CandidateScorer, candidate: CandidateFn, total: int, block: int, corners: Tensor,
                   width: int, progress: bool = False, desc: str = "search") -> AttackResult:
    """Try each image's one-pixel candidates in a fixed order, ``block`` per image per round, until one succeeds.

    Candidate q of an image writes corner ``corners[c]`` ((2**C, C) colours) at position ``pos``
    (row ``pos // width``, column ``pos % width``), where ``(pos, c) = candidate(img, q)``.
    ``queries`` is what a sequential search in this order spends: the index of the first
    (fp32-confirmed) success plus one, or ``total`` for a failure, which returns its fittest
    candidate. The result does not depend on ``block`` beyond the work done.
    """
    n, dev = len(scorer.images), scorer.device
    done = torch.zeros(n, dtype=torch.bool, device=dev)
    queries = torch.full((n,), total, dtype=torch.int64, device=dev)
    best_fit = torch.full((n,), float("inf"), device=dev)
    best_q = torch.zeros(n, dtype=torch.int64, device=dev)  # index of the chosen candidate
    bar = tqdm(range(0, total, block), desc=desc, disable=not progress, leave=False)
    for start in bar:
        act = (~done).nonzero().squeeze(1)
        if len(act) == 0:
            break
        q = torch.arange(start, min(start + block, total), device=dev)  # (B,)
        img, qq = act.repeat_interleave(len(q)), q.repeat(len(act))
        pos, c = candidate(img, qq)
        args = (img, (pos // width)[:, None], (pos % width)[:, None], corners[c][:, None])
        fit, succ = scorer.score(*args)
        succ = scorer.confirm(*args, succ)
        fit, succ = fit.view(len(act), -1), succ.view(len(act), -1)
        # Sequential-order semantics: first success wins; otherwise keep the fittest so far (first on ties).
        first = torch.where(succ, q, torch.full_like(q, total)).min(1).values
        hit = first < total
        idx_fit, arg = fit.min(1)
        improve = (~hit) & (idx_fit < best_fit[act])
        best_fit[act] = torch.where(improve, idx_fit, best_fit[act])
        best_q[act] = torch.where(hit, first, torch.where(improve, q[arg], best_q[act]))
        queries[act] = torch.where(hit, first + 1, queries[act])
        done[act] = hit
        bar.set_postfix(active=int((~done).sum()), success=int(done.sum()))
    bar.close()
    pos, c = candidate(torch.arange(n, device=dev), best_q)
    return scorer.finish((pos // width)[:, None], (pos % width)[:, None], corners[c][:, None], done, queries)
