"""Named run sizes, one place every notebook reads.

* ``smoke``: CI on 2 CPU cores; tiny subsets, seconds per notebook (the corner
  search tries 512 random candidates, not all 8,192). Numbers are not
  meaningful, only the machinery is exercised.
* ``cpu``: a real laptop-size run. Labs 01-02: the small CNN trained to ~86%
  on all 50,000 images, 100 attacked images, a reduced DE budget (tens of
  minutes on 2 CPU cores). The defence labs (03-08) train nine models, most of
  them 5-20x dearer per step than plain training (an attack inside every step),
  so they run a smaller budget (``Profile.for_defences``): 3 epochs on 15,000
  images, 30 attacked images, the search in bf16 (successes confirmed in fp32).
* ``full``: the papers' settings (ResNet-18 / VGG-16, Adam 1e-3, 200 epochs;
  DE population 400 x 100 generations; 500 images; 5 seeds) for a GPU box.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from labkit.attacks.corner import CornerConfig
from labkit.attacks.onepixel import DEConfig
from labkit.train import TrainConfig


@dataclass(frozen=True)
class Profile:
    """How big a run is; every lab derives its configs from one of these."""

    name: str  # "smoke", "cpu" or "full"
    models: tuple[str, ...]  # architectures the labs train and attack (labkit.models.REGISTRY names)
    epochs: int  # training epochs per model
    train_size: int | None  # training images (None = all 50,000)
    batch_size: int  # training mini-batch
    optimizer: str  # "sgd" or "adam"
    lr: float  # peak learning rate
    schedule: str  # learning-rate schedule (labkit.train)
    eval_size: int  # test images for clean accuracy
    n_attack: int  # correctly classified test images attacked per model
    n_pairs: int  # images attacked towards all 9 other classes (Su et al.'s class-pair analysis)
    population: int  # DE population (Su et al.: 400)
    generations: int  # DE generations (Su et al.: 100)
    pixels: tuple[int, ...]  # k values swept (Su et al.: 1, 3, 5)
    seeds: tuple[int, ...]  # training seeds for across-seed confidence intervals
    corner: bool  # run the corner search too
    corner_queries: int | None  # its budget per image; None = exhaustive (8,192 queries on 32x32)
    precision: str = "fp32"  # search precision of DE and corner search ("bf16": successes confirmed in fp32)
    # The adaptive suite (labkit.evaluate): the strongest attacks tried against every defended pipeline.
    strong_scale: int = 2  # its stronger DE multiplies population and generations by this (about scale**2 x queries)
    rs_queries: int = 1000  # Sparse-RS (black-box random search, margin loss) queries per image
    wb_positions: int = 64  # white-box gradient-ranked corner search: pixel positions tried (x 2**C corner colours)
    # Fields the defence labs (03-08) change, as (field, value) pairs (``for_defences``); () = none.
    defence_overrides: tuple[tuple[str, Any], ...] = ()

    def train_config(self, model: str | None = None, seed: int | None = None, **overrides: Any) -> TrainConfig:
        """The ``TrainConfig`` of this profile for ``model`` (default: the first of ``models``)."""
        cfg = TrainConfig(model=model or self.models[0], epochs=self.epochs, train_size=self.train_size,
                          batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr,
                          schedule=self.schedule, eval_size=min(self.eval_size, 2000),
                          seed=self.seeds[0] if seed is None else seed)
        return replace(cfg, **overrides)

    def corner_config(self, **overrides: Any) -> CornerConfig:
        """The corner search of this profile (untargeted unless overridden)."""
        return CornerConfig(**{"max_queries": self.corner_queries, "precision": self.precision, **overrides})

    def de_config(self, **overrides: Any) -> DEConfig:
        """The DE attack of this profile (1 pixel, untargeted; any field may be overridden)."""
        return DEConfig(**{"population": self.population, "generations": self.generations,
                           "precision": self.precision, **overrides})

    def for_defences(self) -> Profile:
        """The profile of the defence labs (03-08): this one with ``defence_overrides`` applied.

        Same name, so everything keyed by profile name (inner-attack positions, timing repeats) still applies;
        the models the defence labs compare (undefended included) all share its training budget.
        """
        return replace(self, **dict(self.defence_overrides), defence_overrides=())


PROFILES: dict[str, Profile] = {
    "smoke": Profile(name="smoke", models=("small_cnn",), epochs=2, train_size=5000, batch_size=128,
                     optimizer="sgd", lr=0.1, schedule="onecycle", eval_size=500, n_attack=8, n_pairs=4,
                     population=40, generations=4, pixels=(1, 3), seeds=(0,), corner=True, corner_queries=512,
                     # The suite's stronger DE at the same budget (margin loss only): smoke checks the code path,
                     # and 2x (720 queries) doubled Lab 03's smoke attack time for numbers that mean nothing.
                     strong_scale=1, rs_queries=200, wb_positions=8),
    "cpu": Profile(name="cpu", models=("small_cnn",), epochs=15, train_size=None, batch_size=128,
                   optimizer="sgd", lr=0.1, schedule="onecycle", eval_size=10000, n_attack=100, n_pairs=30,
                   population=200, generations=20, pixels=(1, 3, 5), seeds=(0,), corner=True, corner_queries=None,
                   # Measured on the 2-core Xeon of this project: a plain step 0.1 s, full APR 1.7 s; forwards
                   # 1,600 images/s in fp32, about twice that in bf16 (docs: book/running.md).
                   defence_overrides=(("epochs", 3), ("train_size", 15_000), ("eval_size", 2000),
                                      ("n_attack", 30), ("precision", "bf16"))),
    "full": Profile(name="full", models=("resnet18", "vgg16"), epochs=200, train_size=None, batch_size=128,
                    optimizer="adam", lr=1e-3, schedule="cosine", eval_size=10000, n_attack=500, n_pairs=500,
                    population=400, generations=100, pixels=(1, 3, 5), seeds=(0, 1, 2, 3, 4), corner=True, corner_queries=None,
                    rs_queries=10_000, wb_positions=1024),
}


def get_profile(name: str | None = None) -> Profile:
    """The profile ``name``, else ``$LABKIT_PROFILE``, else ``smoke``."""
    name = name or os.environ.get("LABKIT_PROFILE") or "smoke"
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)} (LABKIT_PROFILE)")
    return PROFILES[name]
