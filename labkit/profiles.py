"""Named run sizes, one place every notebook reads.

* ``smoke``: CI on 2 CPU cores; tiny subsets, seconds per notebook (the corner
  search tries 512 random candidates, not all 8,192; the defence labs fine-tune
  Labs 01-02's model for 2 steps, as cpu fine-tunes it). Numbers are not
  meaningful, only the machinery is exercised.
* ``cpu``: a real run on 2 CPU cores, Labs 01-08 planned at 3.2 hours (measured plan:
  ``benchmarks/cpu_budget.py``, book/running.md). Labs 01-02: the small CNN trained
  to ~86% on all 50,000 images, 100 attacked images, DE 200 x 20. The defence labs
  (03-08, ``Profile.for_defences``) fine-tune that model for every defence, the
  undefended comparison included (2 epochs x 10,000 images each: one schedule for
  all), attack the reference's first 200 correct images (each other model those it gets right) with a reduced adaptive suite
  (DE 50 x 8, the stronger DE x2, 1,024 corner candidates, Sparse-RS 1,000,
  white-box 64 positions), the search in bf16 (successes confirmed in fp32).
* ``full``: the papers' settings (ResNet-18 / VGG-16, Adam 1e-3, 200 epochs;
  DE population 400 x 100 generations; 500 images; 5 seeds) for a GPU box.

The labs' own sizes (Su et al.'s networks, the JPEG recovery, the survey grid, APR's inner attack, the timing
repeats) are sections of the same profile (``Profile.lab``), so every size of a run is read here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from labkit.attacks.corner import CornerConfig
from labkit.attacks.onepixel import DEConfig
from labkit.cache import NOT_KEYED
from labkit.precision import describe as describe_precision
from labkit.train import TrainConfig

#: What Lab 03's sweep of transformations may run (``Profile.sweep_suite``).
SWEEP_SUITES = ("adaptive", "protocol", "de")
#: The sections of ``Profile.labs``: which lab (or part shared by labs) each sizes, and the fields it may set.
LAB_PARTS: dict[str, str] = {
    "su": "Lab 02b: ``labkit.labs.su.SuConfig``'s fields",
    "apr": "Labs 04-08: ``inner_positions``, the pixel positions of APR's and one-pixel AT's inner attack",
    "timing": "Labs 03, 04, 07: ``warmup`` and ``repeats`` of every side-by-side timing",
    "recovery": "Lab 09: ``labkit.labs.recovery.RecoveryConfig``'s fields",
    "survey": "Labs 10-11: ``labkit.labs.survey.SurveyConfig``'s fields",
    "verify": "Lab 12: ``labkit.labs.verification.VerifyConfig``'s fields",
    "budget": "Lab 05b: ``labkit.labs.full_budget.BudgetConfig``'s fields",
}

#: ``Profile.labs``' type: (part, ((field, value), ...)) pairs, sorted, so a profile stays frozen and hashable.
LabSizes = tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]


#: The defence labs' models Lab 12 proves in the cpu and full profiles (``labkit.labs.verification.CLAIMABLE``): all of
#: Lab 05's Table 1 but JPEG, and Lab 06's APR ablations (its "full" is Lab 05's APR).
VERIFY_CLAIMED = ("No defence", "AT (one-pixel)", "AT (PGD)", "IT (bit depth 5)", "DD (T=20)", "APR", "no_attention",
                  "no_adversarial", "no_regularisation")
#: Lab 12's cpu sizes (``labkit.labs.verification.VerifyConfig``'s fields), measured to fit one session.
#: On the 2-core EPYC with native bf16 the natural model (6 epochs) trains in 346 s, each certified model (474 steps)
#: in 480-590 s; the median model (median=3) reaches 39% clean and proves ~70% of an image's positions within 20 s;
#: two more kappas (0.2 and 0.8) for the trade-off. Lab 05's Table 1 models (all but JPEG, which has no bound rule)
#: and Lab 06's ablations are certified and attacked on the lab's images with the natural model's budget (about 12
#: minutes each).
VERIFY_CPU: dict[str, Any] = dict(natural_epochs=6, n_images=100, proven_epochs=6, proven_size=10_000, seconds=20.0,
                                  natural_seconds=5.0, method="interval",
                                  study_images=1, study_positions=2, study_budget=20, study_samples=512,
                                  de_images=10, median=3, kappas=(0.2, 0.8), curve_images=30,
                                  claimed=VERIFY_CLAIMED)


def lab_sizes(**parts: dict[str, Any]) -> LabSizes:
    """``Profile.labs`` from one dict of field values per part (keys of ``LAB_PARTS``)."""
    unknown = sorted(set(parts) - set(LAB_PARTS))
    if unknown:
        raise ValueError(f"unknown lab parts {unknown}; choose among {sorted(LAB_PARTS)}")
    return tuple(sorted((part, tuple(sorted(values.items()))) for part, values in parts.items()))


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
    precision: str = "auto"  # search precision of every attack ("auto": bf16 where native; bf16 successes confirmed in fp32)
    # The adaptive suite (labkit.suites): the strongest attacks tried against every defended pipeline.
    strong_scale: int = 2  # its stronger DE multiplies population and generations by this (about scale**2 x queries)
    rs_queries: int = 1000  # Sparse-RS (black-box random search, margin loss) queries per image
    wb_positions: int = 64  # white-box gradient-ranked corner search: pixel positions tried (x 2**C corner colours)
    # Fine-tuning: with finetune_epochs set, every model starts from this profile's own trained model (the
    # train_config without fine-tuning: for cpu, Labs 01-02's model, one cache entry) and every defence, the
    # undefended comparison included, trains the same schedule from there. None = every model from scratch.
    finetune_epochs: int | None = None  # epochs of each fine-tune (the same for every defence: a fair comparison)
    finetune_size: int | None = None  # training images per fine-tune epoch (class-balanced subset); None = all
    finetune_lr: float | None = None  # peak learning rate of a fine-tune (below lr: start near the base); None = lr
    # The attacks on Lab 03's sweep of transformations: "adaptive" (the whole adaptive suite on every pipeline),
    # "protocol" (DE + corner search) or "de" (DE at this budget). Below "adaptive", the whole suite still runs
    # on the undefended model and the two IT pipelines of Table 1 (bit depth 5, JPEG q75): the claims need those;
    # the sweep draws the trade-off curve, where one shared attack suffices.
    sweep_suite: str = "adaptive"
    # Fields the defence labs (03-08) change, as (field, value) pairs (``for_defences``); () = none.
    defence_overrides: tuple[tuple[str, Any], ...] = ()
    # The labs' own sizes, one section per part of ``LAB_PARTS`` (``lab_sizes``; read with ``lab``); a part left
    # out runs at its lab's defaults (the paper's settings). Never hashed (``cache.NOT_KEYED``): the labs turn a
    # section into the configs and settings their keys and records hold, so the sizes are checked there, and
    # the records written before the sections moved here still match this profile. Left out of the repr too: a
    # page that shows its profile shows what it showed before (the sections are read with ``lab``).
    labs: LabSizes = field(default=(), repr=False, metadata=NOT_KEYED)

    def __post_init__(self) -> None:
        if self.sweep_suite not in SWEEP_SUITES:
            raise ValueError(f"sweep_suite must be one of {SWEEP_SUITES}, not {self.sweep_suite!r}")
        unknown = sorted({part for part, _ in self.labs} - set(LAB_PARTS))
        if unknown:
            raise ValueError(f"unknown lab parts {unknown}; choose among {sorted(LAB_PARTS)}")

    def lab(self, part: str) -> dict[str, Any]:
        """The sizes of ``part`` (a key of ``LAB_PARTS``) in this profile, as field -> value; {} = the lab's
        defaults. A fresh dict: changing it changes nothing here."""
        if part not in LAB_PARTS:
            raise ValueError(f"unknown lab part {part!r}; choose among {sorted(LAB_PARTS)}")
        return dict(dict(self.labs).get(part, ()))

    def train_config(self, model: str | None = None, seed: int | None = None, **overrides: Any) -> TrainConfig:
        """The ``TrainConfig`` of this profile for ``model`` (default: the first of ``models``).

        When the profile fine-tunes (``finetune_epochs``), the config trains ``finetune_epochs`` x
        ``finetune_size`` at ``finetune_lr`` from ``init`` = the profile's from-scratch model of the same
        architecture and seed; ``overrides`` (a gate, an objective) apply to the fine-tune, never to ``init``.
        """
        cfg = TrainConfig(model=model or self.models[0], epochs=self.epochs, train_size=self.train_size,
                          batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr,
                          schedule=self.schedule, eval_size=min(self.eval_size, 2000),
                          seed=self.seeds[0] if seed is None else seed)
        if self.finetune_epochs is not None:
            cfg = replace(cfg, epochs=self.finetune_epochs, train_size=self.finetune_size,
                          lr=self.lr if self.finetune_lr is None else self.finetune_lr, init=cfg)
        return replace(cfg, **overrides)

    def corner_config(self, **overrides: Any) -> CornerConfig:
        """The corner search of this profile (untargeted unless overridden)."""
        return CornerConfig(**{"max_queries": self.corner_queries, "precision": self.precision, **overrides})

    def de_config(self, **overrides: Any) -> DEConfig:
        """The DE attack of this profile (1 pixel, untargeted; any field may be overridden)."""
        return DEConfig(**{"population": self.population, "generations": self.generations,
                           "precision": self.precision, **overrides})

    def describe(self) -> str:
        """One line for a lab's set-up cell: how its models are trained and what precision runs here.

        Training and search both ask for ``self.precision`` semantics ("auto" unless a profile says otherwise);
        ``labkit.precision.describe`` says what that resolves to on this machine.
        """
        def images(n: int | None) -> str:
            return "all training images" if n is None else f"{n:,} training images"

        if self.finetune_epochs is None:
            how = f"every model trained from scratch, {self.epochs} epochs on {images(self.train_size)}"
        else:
            lr = self.lr if self.finetune_lr is None else self.finetune_lr
            how = (f"every model, the undefended one included, fine-tuned from the {self.epochs}-epoch model on "
                   f"{images(self.train_size)}, {self.finetune_epochs} epochs on {images(self.finetune_size)} "
                   f"at peak lr {lr:g}")
        return f"profile {self.name}: {how}; {describe_precision(precision=self.precision)}"

    def for_defences(self) -> Profile:
        """The profile of the defence labs (03-08): this one with ``defence_overrides`` applied.

        Same name and lab sections (``labs``: inner-attack positions, timing repeats); the models the defence labs
        compare (undefended included) all share its training budget.
        """
        return replace(self, **dict(self.defence_overrides), defence_overrides=())


PROFILES: dict[str, Profile] = {
    "smoke": Profile(name="smoke", models=("small_cnn",), epochs=2, train_size=5000, batch_size=128,
                     optimizer="sgd", lr=0.1, schedule="onecycle", eval_size=500, n_attack=8, n_pairs=4,
                     population=40, generations=4, pixels=(1, 3), seeds=(0,), corner=True, corner_queries=512,
                     # The suite's stronger DE at the same budget (margin loss only): smoke checks the code path,
                     # and 2x (720 queries) doubled Lab 03's smoke attack time for numbers that mean nothing.
                     strong_scale=1, rs_queries=200, wb_positions=8,
                     # The defence labs fine-tune Labs 01-02's smoke model as cpu's do (the same code path), 2 steps
                     # each: from scratch (80 steps, up to 10x dearer for AT and APR) Labs 04-06 took 37 of CI's
                     # minutes (issue #24: CI under 20 minutes). Lab 03's sweep attacks its 11 other
                     # transformations with DE only, as cpu's does (the whole suite still runs on the undefended
                     # model and Table 1's two pipelines): the whole suite on all of them was CI's slowest cell (86 s).
                     defence_overrides=(("finetune_epochs", 1), ("finetune_size", 256), ("finetune_lr", 0.01),
                                        ("sweep_suite", "de")),
                     labs=lab_sizes(
                         su=dict(epochs=1, train_size=512, eval_size=200, n_images=4, target_images=2,
                                 target_pixels=(1,), population=16, generations=3),
                         apr=dict(inner_positions=1), timing=dict(warmup=1, repeats=3),
                         recovery=dict(n_images=12, n_sweep=6),
                         survey=dict(epochs=1, train_size=2000, val_size=500, n_images=24, deepfool_steps=10,
                                     cw_steps=20, swaps=20, at_epochs=1, at_size=500, timing_images=16,
                                     examples=2),
                         # 16 images: on a bf16 CPU the smoke median model got none of the first 8 right.
                         verify=dict(n_images=16, proven_epochs=1, proven_size=512, seconds=1.5, natural_seconds=0.5,
                                     max_boxes=2000, study_images=1, study_positions=2, study_budget=10, study_samples=64,
                                     de_images=2, de_population=20, de_generations=3, median=3,
                                     kappas=(0.8,), curve_images=8,
                                     claimed=("IT (bit depth 5)", "APR", "no_adversarial")),
                         budget=dict(n_images=2, population=8, generations=2))),
    "cpu": Profile(name="cpu", models=("small_cnn",), epochs=15, train_size=None, batch_size=128,
                   optimizer="sgd", lr=0.1, schedule="onecycle", eval_size=10000, n_attack=100, n_pairs=30,
                   population=200, generations=20, pixels=(1, 3, 5), seeds=(0,), corner=True, corner_queries=None,
                   strong_scale=2, rs_queries=1000, wb_positions=64,
                   # Sized by benchmarks/cpu_budget.py (book/running.md): on the 2-core EPYC of this project, 1 torch
                   # thread, a plain bf16 step 0.14 s, an APR step 2.0 s, 2,300 bf16 forwards/s; Labs 01-08 about
                   # 3.2 h. Defences fine-tune Labs 01-02's model (same schedule for each, undefended included);
                   # the reference's first 200 correct images (suites.attacked_indices); the suite's budgets cut to fit (4,689
                   # queries per image); Lab 03's 11 other transformations get DE only.
                   # Fine-tune lr 0.01: a cross-entropy fine-tune keeps 85.7% (0.02: 85.0%; base 86.3%).
                   defence_overrides=(("finetune_epochs", 2), ("finetune_size", 10_000), ("finetune_lr", 0.01),
                                      ("n_attack", 200), ("population", 50),
                                      ("generations", 8), ("corner_queries", 1024), ("sweep_suite", "de")),
                   labs=lab_sizes(
                       # Lab 02b: what a 2-core laptop does in an evening: 3.0 hours of one thread, 88 minutes as two
                       # 1-thread jobs (measured 2026-12-02 on the project's EPYC with native bf16: training 740 /
                       # 883 / 655 s for allconv / NiN / VGG16, the untargeted attacks ~110-160 s per k, the
                       # all-targets attacks 690-1,045 s per k; most targeted runs spend the whole budget): 6 epochs
                       # on 10,000 images, 24 images untargeted, 12 toward every other class, and a DE budget of
                       # 100 x 20 (2,100 queries, 1/19 of the paper's).
                       su=dict(epochs=6, train_size=10_000, n_images=24, target_images=12, population=100,
                               generations=20),
                       # The paper does not state APR's inner attack. On this project's 2-core CPU (1,600 fp32
                       # forwards/s) 16 queries already cost 1.2 s of a 2.3 s APR step (batch 128): 1 position
                       # (8 queries).
                       apr=dict(inner_positions=1),
                       timing=dict(warmup=2, repeats=9),  # enough repeats for a stable median
                       recovery=dict(n_images=300, n_sweep=100),
                       # Labs 10-11: 8 epochs on 20,000 images (a laptop run: the survey's 20 on all), 300 test
                       # images; the mixed adversarial fine-tune on 5,000 images (torchattacks' DeepFool loops over
                       # images: ~0.1 s each on 1 thread).
                       survey=dict(epochs=8, train_size=20_000, val_size=5000, n_images=300, swaps=100, at_epochs=2,
                                   at_size=5000, timing_images=100),
                       # Lab 12: sized to compute in one session on 2 cores (VERIFY_CPU says what each part costs).
                       verify=VERIFY_CPU,
                       # Lab 05b: the papers' DE (400 x 100) on 50 images per model that the suite missed: about 13
                       # minutes per model when every image spends the whole budget (2,500 forwards/s, 2 threads).
                       budget=dict(n_images=50))),
    "full": Profile(name="full", models=("resnet18", "vgg16"), epochs=200, train_size=None, batch_size=128,
                    optimizer="adam", lr=1e-3, schedule="cosine", eval_size=10000, n_attack=500, n_pairs=500,
                    population=400, generations=100, pixels=(1, 3, 5), seeds=(0, 1, 2, 3, 4), corner=True, corner_queries=None,
                    rs_queries=10_000, wb_positions=1024,
                    # Su et al.'s networks and the survey at their papers' settings (their configs' defaults); the
                    # JPEG paper's 1,000 and 200 images; APR's inner attack at OnePixelAT's default 8 positions.
                    labs=lab_sizes(apr=dict(inner_positions=8), timing=dict(warmup=3, repeats=15),
                                   recovery=dict(n_images=1000, n_sweep=200), verify=dict(median=3, kappas=(0.25, 0.75, 0.9),
                                                                      claimed=VERIFY_CLAIMED),
                                   budget=dict(n_images=500))),
}


def get_profile(name: str | None = None) -> Profile:
    """The profile ``name``, else ``$LABKIT_PROFILE``, else ``smoke``."""
    name = name or os.environ.get("LABKIT_PROFILE") or "smoke"
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)} (LABKIT_PROFILE)")
    return PROFILES[name]
