"""Training with a config-hash cache: ``get_or_train(config)`` loads or trains.

The loop is shared by every model in the book. What differs between an
undefended model, adversarial training, distillation and APR is the *objective*
(a small frozen dataclass with a ``loss`` method, see :class:`CrossEntropy`) and,
for APR, the attention gate in front of the network. A run starts from scratch or,
with ``TrainConfig.init``, from another cached model's weights (fine-tuning).

Precision: a config asks for one (``"auto"`` by default, see ``labkit.precision``);
the cache key hashes what was asked, the checkpoint records what ran
(``precision_used``), so one key means one model on every machine.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from labkit.cache import NEW_FIELD, cache_path, canonical, config_key, load_checked, save_atomic
from labkit.data import FIRST_N_ORDER, Split, dataset_source, dataset_spec, first_n, load_dataset, predict
from labkit.models import AttentionGate, MedianBlur, build_model, resolve_device
from labkit.precision import check_precision, resolve_precision
from labkit.storable import NoWeights, model_entry, register_plan

CHECKPOINT_FORMAT = 2  # 2: checkpoints record precision_used and init_key


@dataclass
class TrainContext:
    """Mutable state an objective may read or use during training.

    ``state`` holds objects an objective prepares once (a teacher model, say);
    ``timers`` accumulates seconds spent in named parts of the loss (e.g. the inner
    attack of adversarial training) so their share of training time is measured.
    """

    config: "TrainConfig"
    device: torch.device
    epoch: int = 0
    step: int = 0
    total_steps: int = 0  # optimiser steps of the whole run (schedules inside an objective read it; 0: unknown)
    generator: torch.Generator = field(default_factory=torch.Generator)
    state: dict[str, Any] = field(default_factory=dict)
    timers: dict[str, float] = field(default_factory=dict)


class Objective(Protocol):
    """What the training loop needs of an objective (frozen dataclasses implement it)."""

    def setup(self, ctx: TrainContext) -> None: ...

    def loss(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: TrainContext) -> Tensor: ...


@dataclass(frozen=True)
class CrossEntropy:
    """Plain cross-entropy on clean images: the undefended model."""

    def setup(self, ctx: TrainContext) -> None:
        """Nothing to prepare."""

    def loss(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: TrainContext) -> Tensor:
        return F.cross_entropy(model(images), labels)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model; its hash is the cache key."""

    model: str = "small_cnn"  # architecture name in labkit.models.REGISTRY
    gate: str = "none"  # APR attention gate in front of the network: "none", "pixel" or "channel"
    gate_kernel: int = 3  # kernel size of the gate's convolution W_a (pixels)
    epochs: int = 15  # passes over the training subset
    batch_size: int = 128  # images per optimiser step
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum; fast on small CPUs) or "adam" (the APR paper's)
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9  # SGD momentum (ignored by Adam)
    weight_decay: float = 5e-4  # L2 weight decay, the APR paper's value
    schedule: str = "onecycle"  # "onecycle" (short runs), "cosine" or "constant"
    augment: bool = True  # random crop (4-pixel padding) and horizontal flip
    train_size: int | None = None  # training images (a fixed class-balanced subset); None = all 50,000
    eval_size: int = 2000  # test images scored after each epoch for the history
    # Autocast precision: "auto" = bf16 where the device runs it natively (3x faster there), else fp32 (bf16
    # by fallback is 7x slower); "fp32"/"bf16" force one. Keyed as asked, recorded as run (precision_used).
    precision: str = "auto"
    seed: int = 0  # seeds initialisation, shuffling, augmentation and inner attacks
    objective: Any = CrossEntropy()  # the loss: CrossEntropy, or a defence's objective
    # The model whose trained weights start this run (loaded or trained through the cache); None = from scratch.
    # A gated config may start from an ungated one: the weights go behind the gate, the gate keeps its own start.
    init: TrainConfig | None = None
    # Fields added after the first keys were in use (cache.NEW_FIELD: out of the key while at their default).
    dataset: str = field(default="cifar10", metadata=NEW_FIELD)  # labkit.data.DATASETS name: images, classes, norm
    # Training images held out for validation (the first val_size of the class-balanced order; training takes the
    # next train_size): with val_size > 0 the run keeps the epoch with the lowest validation loss, never looking
    # at the test set (the survey's checkpointing). 0 = no validation split, the last epoch is kept.
    val_size: int = field(default=0, metadata=NEW_FIELD)
    # A median filter (labkit.models.MedianBlur) of this window in front of the network, before its Normalize:
    # 0 = none. One pixel then reaches the network only through its neighbourhood's middle values, a narrow box
    # that certified training can bound (labkit.certify.training); a run may start from a model without it.
    median: int = field(default=0, metadata=NEW_FIELD)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', not {self.optimizer!r}")
        if self.schedule not in ("onecycle", "cosine", "constant"):
            raise ValueError(f"schedule must be 'onecycle', 'cosine' or 'constant', not {self.schedule!r}")
        if self.gate not in ("none", "pixel", "channel"):
            raise ValueError(f"gate must be 'none', 'pixel' or 'channel', not {self.gate!r}")
        if isinstance(self.median, bool) or not isinstance(self.median, int) or self.median == 1 or self.median < 0:
            raise ValueError(f"median must be 0 (no filter) or a window >= 2, got {self.median!r}")
        if self.median and self.gate != "none":
            raise ValueError("a model has either an attention gate or a median filter in front, not both")
        check_precision(self.precision)
        dataset_spec(self.dataset)  # a ValueError naming the registered datasets
        if isinstance(self.val_size, bool) or not isinstance(self.val_size, int) or self.val_size < 0:
            raise ValueError(f"val_size must be an integer >= 0, got {self.val_size!r}")
        if self.init is not None:
            if not isinstance(self.init, TrainConfig):
                raise ValueError(f"init must be a TrainConfig or None, got {type(self.init).__name__}")
            if self.init.model != self.model:
                raise ValueError(f"init is a {self.init.model!r}, this run trains a {self.model!r}")
            if self.init.dataset != self.dataset:
                raise ValueError(f"init was trained on {self.init.dataset!r}, this run trains on {self.dataset!r}")
            if self.init.gate != "none" and (self.init.gate, self.init.gate_kernel) != (self.gate, self.gate_kernel):
                raise ValueError("init has a gate this config does not have (or one of another shape)")
            if self.init.median and self.init.median != self.median:
                raise ValueError("init has a median filter this config does not have (or one of another window)")


@dataclass
class TrainedModel:
    """A trained model (eval mode) with its config, cache key and per-epoch history."""

    model: nn.Module
    config: TrainConfig
    key: str
    history: list[dict[str, float]]
    train_seconds: float
    path: Path
    precision_used: str  # what the run's autocast was ("fp32" or "bf16"), whatever config.precision asked
    init_key: str | None = None  # cache key of the model it was fine-tuned from (None: from scratch)

    def to_record(self) -> dict[str, Any]:
        """This model as a lab record's "models" section keeps it (``storable.model_entry``; no weights)."""
        return model_entry(key=self.key, model=self.config.model, seed=self.config.seed, init_key=self.init_key,
                           precision=self.precision_used, train_seconds=self.train_seconds, history=self.history)

    @classmethod
    def from_record(cls, config: TrainConfig, stored: dict[str, Any]) -> TrainedModel:
        """``config``'s model as a record keeps it (``stored``: its ``to_record``): the network a ``NoWeights``,
        no cache path."""
        return cls(NoWeights(stored["key"]), config, stored["key"], stored["history"], stored["train_seconds"], None,
                   stored["precision"], stored["init_key"])


def model_key(config: TrainConfig) -> str:
    """The cache key of ``config`` (with the data source and the subset order: other data, other model)."""
    return config_key("model", config, dataset_source(config.dataset), FIRST_N_ORDER)


def build_for_config(config: TrainConfig) -> nn.Module:
    """The untrained network ``config`` describes (gate or median filter included), input in [0, 1]."""
    net = build_model(config.model, dataset_spec(config.dataset).num_classes, config.dataset)
    if config.median:
        return nn.Sequential(MedianBlur(config.median), net)
    if config.gate == "none":
        return net
    return nn.Sequential(AttentionGate(mode=config.gate, kernel_size=config.gate_kernel), net)


def _behind_front(model: nn.Module) -> nn.Module:
    """The network behind ``model``'s attention gate or median filter (``model`` itself when it has neither)."""
    fronted = (isinstance(model, nn.Sequential) and len(model) == 2
               and isinstance(model[0], (AttentionGate, MedianBlur)))
    return model[1] if fronted else model


def load_init(model: nn.Module, config: TrainConfig, device: torch.device, progress: bool = True) -> str | None:
    """Start ``model`` (built for ``config``) from the weights of ``config.init``; returns the init's cache key.

    The init model is loaded or trained through the cache (``get_or_train``). When ``config`` has a gate (or a
    median filter) and the init has none, the weights go into the network behind it (the gate keeps its own start).
    Returns None (and changes nothing) when ``config.init`` is None.
    """
    if config.init is None:
        return None
    base = get_or_train(config.init, device, progress)
    if config.init.gate == "none" and not config.init.median:
        _behind_front(model).load_state_dict(base.model.state_dict())
    else:
        model.load_state_dict(base.model.state_dict())
    return base.key


def training_indices(split: Split, config: TrainConfig) -> tuple[Tensor, Tensor]:
    """(training indices, validation indices) into ``split`` for ``config``, both int64.

    Without validation: the first ``train_size`` images of the class-balanced order (``first_n``), as always.
    With ``val_size``: the first ``val_size`` images of that order are held out (class-balanced) and training
    takes the next ``train_size`` (or all the rest).
    """
    if config.val_size == 0:
        return first_n(split, config.train_size or len(split)), torch.empty(0, dtype=torch.int64)
    if config.val_size >= len(split):
        raise ValueError(f"val_size {config.val_size} leaves no training image of {len(split)}")
    n_train = min(config.train_size or len(split), len(split) - config.val_size)
    order = first_n(split, config.val_size + n_train)
    return order[config.val_size:], order[:config.val_size]


@torch.no_grad()
def validation(model: nn.Module, split: Split, idx: Tensor, batch_size: int = 500) -> dict[str, float]:
    """Mean cross-entropy ("val_loss") and accuracy ("val_acc") of ``model`` (eval mode) on ``split.images[idx]``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss, correct = 0.0, 0
    for start in range(0, len(idx), batch_size):
        b = idx[start:start + batch_size]
        logits = model(split.images[b].to(device).float().div_(255)).float()
        target = split.labels[b].to(device)
        loss += F.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(1) == target).sum())
    model.train(was_training)
    return {"val_loss": loss / len(idx), "val_acc": correct / len(idx)}


def augment(x: Tensor, gen: torch.Generator) -> Tensor:
    """Random 4-pixel-padded crop and horizontal flip of a batch (N, C, H, W), per image.

    The random numbers come from a CPU generator so that runs are identical on any device.
    """
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dy, dx = (torch.randint(0, 9, (2, n), generator=gen)).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, idx: Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` on ``split.images[idx]`` (a fraction in [0, 1])."""
    was_training = model.training
    model.eval()
    correct = (predict(model, split.images[idx], batch_size) == split.labels[idx]).float().mean().item()
    model.train(was_training)
    return correct


def make_optimizer(model: nn.Module, cfg: TrainConfig, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """The optimiser and learning-rate scheduler of ``cfg`` for a run of ``steps`` optimiser steps."""
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                                     nesterov=True, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.schedule == "onecycle" and steps >= 10:  # OneCycle divides by its phase lengths: too short, no schedule
        sched: Any = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.25)
    elif cfg.schedule == "cosine" and steps >= 10:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def train_step(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, config: TrainConfig, images: Tensor,
               labels: Tensor, ctx: TrainContext) -> Tensor:
    """One optimiser step on a batch: augmentation, the objective (under bf16 autocast where ``config.precision``
    resolves to bf16 on this device), backward, step.

    images: (B, C, H, W) float in [0, 1] on the model's device; labels: (B,) int64. Returns the loss.
    Shared by ``train`` and the side-by-side step timing of Lab 07, so both time the same work.
    """
    x = augment(images, ctx.generator) if config.augment else images
    bf16 = resolve_precision(config.precision, ctx.device) == "bf16"
    with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = config.objective.loss(model, x, labels, ctx)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss


def train(config: TrainConfig, device: str | torch.device = "auto", progress: bool = True) -> TrainedModel:
    """Train ``config`` (from scratch, or from ``config.init``'s weights) and cache the result.

    Resumes an interrupted run: after every epoch a resumable checkpoint (model, optimiser, scheduler, history)
    is written atomically; an interrupted run picks up after its last finished
    epoch and ends with the same weights as an uninterrupted one.
    """
    dev = resolve_device(device)
    key = model_key(config)
    final_path, partial_path = cache_path("models", key), cache_path("models", key + ".partial")
    expect = {"format": CHECKPOINT_FORMAT, "config": canonical(config)}
    train_split, test_split = load_dataset(config.dataset, "train"), load_dataset(config.dataset, "test")
    idx, val_idx = training_indices(train_split, config)
    images, labels = train_split.images[idx].to(dev), train_split.labels[idx].to(dev)
    eval_idx = first_n(test_split, config.eval_size)

    torch.manual_seed(config.seed)
    model = build_for_config(config).to(dev)
    init_key = load_init(model, config, dev, progress)
    used = resolve_precision(config.precision, dev)
    steps_per_epoch = math.ceil(len(idx) / config.batch_size)
    opt, sched = make_optimizer(model, config, config.epochs * steps_per_epoch)
    ctx = TrainContext(config=config, device=dev, total_steps=config.epochs * steps_per_epoch)
    config.objective.setup(ctx)

    history: list[dict[str, float]] = []
    start_epoch, seconds, best = 0, 0.0, None
    partial = load_checked(partial_path, expect)
    if partial is not None:
        model.load_state_dict(partial["model"])
        opt.load_state_dict(partial["optimizer"])
        sched.load_state_dict(partial["scheduler"])
        history, start_epoch, seconds = partial["history"], partial["epoch"] + 1, partial["seconds"]
        best = partial.get("best")

    bar = tqdm(total=config.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
               desc=f"train {config.model}", disable=not progress)
    for epoch in range(start_epoch, config.epochs):
        # Seeding per epoch (not once) makes a resumed run replay exactly the same batches.
        ctx.generator.manual_seed(config.seed * 100_003 + epoch)
        torch.manual_seed(config.seed * 100_003 + epoch)
        ctx.epoch, ctx.timers, ctx.step = epoch, {}, epoch * steps_per_epoch  # a resumed run's schedule goes on
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(idx), generator=ctx.generator).to(dev)
        loss_sum, seen = 0.0, 0
        for start in range(0, len(idx), config.batch_size):
            b = perm[start:start + config.batch_size]
            loss = train_step(model, opt, sched, config, images[b].float().div_(255), labels[b], ctx)
            ctx.step += 1
            loss_sum += loss.item() * len(b)
            seen += len(b)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / seen:.3f}")
        seconds += time.perf_counter() - t0
        model.eval()
        row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "test_acc": accuracy(model, test_split, eval_idx),
               "lr": opt.param_groups[0]["lr"], "seconds": seconds}
        if len(val_idx):
            row.update(validation(model, train_split, val_idx))
            if best is None or row["val_loss"] < best["val_loss"]:
                best = {"epoch": epoch + 1, "val_loss": row["val_loss"],
                        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        row.update({f"seconds_{k}": v for k, v in ctx.timers.items()})
        history.append(row)
        bar.set_postfix(epoch=epoch + 1, loss=f"{row['train_loss']:.3f}", acc=f"{row['test_acc']:.3f}")
        save_atomic({**expect, "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict(), "history": history, "seconds": seconds,
                     "precision_used": used, "init_key": init_key, **({"best": best} if best else {})},
                    partial_path)
    bar.close()
    if best is not None:  # the epoch of lowest validation loss, not the last one
        model.load_state_dict(best["state_dict"])
        history = [{**row, "kept": row["epoch"] == best["epoch"]} for row in history]
    model.eval()
    save_atomic({**expect, "state_dict": model.state_dict(), "history": history, "seconds": seconds,
                 "precision_used": used, "init_key": init_key}, final_path)
    partial_path.unlink(missing_ok=True)
    return TrainedModel(model, config, key, history, seconds, final_path, used, init_key)


def get_or_train(config: TrainConfig, device: str | torch.device = "auto", progress: bool = True) -> TrainedModel:
    """Load the cached model for ``config``, or train it (resuming an interrupted run).

    A cache file that is unreadable, holds another config or does not fit the
    architecture is reported with a warning and retrained, never used.
    """
    dev = resolve_device(device)
    key = model_key(config)
    path = cache_path("models", key)
    ckpt = load_checked(path, {"format": CHECKPOINT_FORMAT, "config": canonical(config)})
    if ckpt is not None:
        model = build_for_config(config).to(dev)
        try:
            model.load_state_dict(ckpt["state_dict"])
            return TrainedModel(model.eval(), config, key, ckpt["history"], ckpt["seconds"], path,
                                ckpt["precision_used"], ckpt["init_key"])
        except (RuntimeError, KeyError) as exc:
            warnings.warn(f"retraining: cached weights in {path} do not fit the model ({exc})", stacklevel=2)
    return train(config, dev, progress)


# A lab record's models step trains a TrainConfig, checks its key on replay and rebuilds it, through this.
register_plan(TrainConfig, key=model_key, train=get_or_train, rebuild=TrainedModel.from_record)
