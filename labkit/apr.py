"""Adaptive Pixel Resilience (APR, 2024): an attention gate, one-pixel adversarial training, a gradient penalty.

The APR paper publishes no code; this module is our reading of it, with every component switchable so the
ablation (its Table 3) is the same code with one switch off:

* ``AttentionGate``: y = f(A(x) * x) with A(x) = sigmoid(W_a * x + b_a), a learnable convolution in front of any
  registered model (``TrainConfig(gate="pixel")``; ``labkit.train.build_for_config`` puts it there). It lives in
  ``labkit.models`` (so training never imports this module) and is re-exported here.
* ``APRObjective``: L = alpha L_clean + (1 - alpha) L_adv + beta ||grad_x L_clean||^2, the adversarial images
  made for each mini-batch by the cheap inner attack of ``labkit.defences.OnePixelAT`` (reused, not copied).
* ``apr_config``: the ``TrainConfig`` of a profile for one of ``VARIANTS``; trained through the cache like any
  model (``labkit.train.get_or_train``: progress bar, resumable).

The second half holds what Labs 05-07 call: the suites of the paper's tables (``table1_suite``,
``ablation_suite``), the adaptive check on top of the book's protocol (``adaptive_check``), sentences computed
from the tables (``table1_verdict``, ``ablation_verdict``, ``overhead_verdict``) and side-by-side timings of
training (``time_training``, ``measure_overhead``). The generic protocol they run (``train_suite``,
``attacked_indices``, ``evaluate_suite``, ``seed_table``) lives in ``labkit.evaluate``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit import papers
from labkit._checks import check_int, check_number
from labkit.defences import OnePixelAT
from labkit.evaluate import TIMING, WORST_CASE, Entry, Trained, _groups, attacked_indices
# The gate lives in labkit.models (train builds it without importing the APR method); re-exported here.
from labkit.models import GATE_MODES, AttentionGate, gate_of, synchronize
from labkit.profiles import Profile, get_profile
from labkit.train import TrainConfig, TrainContext

__all__ = [
    # the method
    "AttentionGate", "APRObjective", "GATE_MODES", "INNER_POSITIONS", "VARIANTS", "apr_config", "gate_of",
    "input_gradient_penalty", "mix_losses",
    # the labs
    "COMPONENT", "TABLE1_CLAIMS", "TABLE3_CLAIMS", "TABLE4_CLAIMS", "ablation_suite", "ablation_verdict",
    "adaptive_check", "cached_training_seconds", "compare", "measure_overhead", "overhead_configs", "overhead_split",
    "overhead_table", "overhead_verdict", "random_targets", "stronger_de", "table1_suite", "table1_verdict",
    "time_training",
]

# -- the objective -------------------------------------------------------------------------------------------------

def mix_losses(clean: Tensor, adversarial: Tensor, alpha: float) -> Tensor:
    """alpha * clean + (1 - alpha) * adversarial: the APR paper's mixing (alpha weighs the *clean* loss).

    Note the convention: ``labkit.defences.OnePixelAT.alpha`` weighs the adversarial half instead.
    """
    return alpha * clean + (1 - alpha) * adversarial


def input_gradient_penalty(losses: Tensor, images: Tensor) -> Tensor:
    """mean_i ||d(sum_j losses_j)/d images_i||_2^2, differentiable (double backpropagation).

    ``losses`` (N,) are per-image losses computed from ``images`` (N, C, H, W), which must require grad.
    The sum (not the mean) is differentiated, so each image's gradient is that of its own loss, whatever the
    batch size, and the squared norms are averaged over the batch: the penalty means the same at any batch
    size. (In training mode batch norm couples the images, so each gradient also carries the small 1/N
    dependence of the others' losses through the batch statistics; in eval mode it is exactly per image.)
    The norm is taken in fp32 (fp64 for fp64 inputs) whatever precision the forward pass ran in.
    """
    (grad,) = torch.autograd.grad(losses.sum(), images, create_graph=True)
    return grad.to(torch.promote_types(grad.dtype, torch.float32)).pow(2).flatten(1).sum(1).mean()


@dataclass(frozen=True)
class APRObjective:
    """The APR training loss for ``TrainConfig(objective=...)``.

    L_total = alpha * L_clean + (1 - alpha) * L_adv + beta * mean_i ||grad_{x_i} l_clean(x_i)||_2^2

    * L_clean, L_adv: mean cross-entropy on the batch and on its one-pixel adversarial versions. These come
      from the current model (eval mode, fp32, timed into ``ctx.timers["inner_attack"]``) by the inner attack
      of one-pixel AT, ``OnePixelAT(positions=...).adversarial``: ``labkit.attacks.GradientCorner``, the 8
      corner colours at the ``positions`` pixels of largest input gradient (8 * positions queries plus one
      gradient pass per image; where it fails, its best candidate is used). Clean and adversarial images go
      through the model in one forward pass, as in ``OnePixelAT``, so batch norm sees the mixed batch.
    * The penalty (``input_gradient_penalty``) is on the gradient of the *clean* per-image cross-entropy with
      respect to the input *pixels* (the [0, 1] image before the gate and the normalisation: the space the
      attacker writes in), squared L2 norm per image, averaged over the batch, by double backpropagation.
      Why the clean loss: a one-pixel attack starts from the clean image, and to first order changing pixel p
      by delta changes the loss by <grad_p, delta>; a small input gradient at natural images flattens the
      loss exactly where attacks begin. It also reuses the clean forward pass (no extra forward). Why the
      mean of per-image norms: a batch-size-independent beta (the norm of the batch-mean loss's gradient
      would shrink as 1/N^2).
    * ``adversarial=False`` gives L_clean (+ penalty), with no inner attack run (alpha is then unused);
      ``beta=0`` drops the penalty and its double backward.

    Under the training loop's bf16 autocast the double backward runs through the bf16 graph (tested on CPU);
    the losses and the norm are computed in fp32.
    """

    alpha: float = 0.7  # weight of the clean loss; 1 - alpha goes to the adversarial loss (the paper's 0.7)
    beta: float = 0.01  # weight of the input-gradient penalty (the paper's 0.01); 0 removes it
    adversarial: bool = True  # train on one-pixel adversarial examples too; False = "w/o adversarial training"
    positions: int = 8  # inner attack: pixels tried by gradient rank, x 8 corner colours = queries per image

    def __post_init__(self) -> None:
        check_number("alpha", self.alpha, 0.0, 1.0)
        check_number("beta", self.beta, 0.0)
        if not isinstance(self.adversarial, bool):
            raise ValueError(f"adversarial must be True or False, got {self.adversarial!r}")
        check_int("positions", self.positions, 1)

    def setup(self, ctx: TrainContext) -> None:
        """Nothing to prepare: the inner attack uses the model being trained."""

    def terms(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: TrainContext) -> dict[str, Tensor]:
        """The loss and its parts: ``clean``, ``adversarial`` (if on), ``penalty`` (beta included, if on), ``total``."""
        if self.beta > 0 and not torch.is_grad_enabled():
            raise RuntimeError("the gradient penalty (beta > 0) needs autograd: call outside torch.no_grad()")
        n = len(labels)
        x = images.detach().requires_grad_(self.beta > 0)
        batch = x
        if self.adversarial:
            adv = OnePixelAT(positions=self.positions).adversarial(model, images, labels, ctx)
            batch = torch.cat([x, adv])
        ce = F.cross_entropy(model(batch).float(), labels.repeat(len(batch) // n), reduction="none")
        out = {"clean": ce[:n].mean()}
        total = out["clean"]
        if self.adversarial:
            out["adversarial"] = ce[n:].mean()
            total = mix_losses(out["clean"], out["adversarial"], self.alpha)
        if self.beta > 0:
            out["penalty"] = self.beta * input_gradient_penalty(ce[:n], x)
            total = total + out["penalty"]
        out["total"] = total
        return out

    def loss(self, model: nn.Module, images: Tensor, labels: Tensor, ctx: TrainContext) -> Tensor:
        return self.terms(model, images, labels, ctx)["total"]


# -- configs -------------------------------------------------------------------------------------------------------

#: The ablation of the paper's Table 3: each variant switches exactly one component off.
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_attention": {"gate": "none"},
    "no_adversarial": {"adversarial": False},
    "no_regularisation": {"beta": 0.0},
}

#: Inner-attack budget (pixel positions; x 8 corner colours = queries per training image) per profile.
#: The paper does not state its inner attack. 8 positions (64 queries) is OnePixelAT's default and is used in
#: ``full``. On this project's 2-core CPU (1,600 fp32 forwards/s) 16 queries already cost 1.2 s of a 2.3 s APR
#: step (batch 128), so ``cpu`` and ``smoke`` try 1 position (8 queries).
INNER_POSITIONS: dict[str, int] = {"smoke": 1, "cpu": 1, "full": 8}


def apr_config(profile: Profile | str, variant: str = "full", model: str | None = None, seed: int | None = None,
               positions: int | None = None) -> TrainConfig:
    """The ``TrainConfig`` of APR ``variant`` (one of ``VARIANTS``) in ``profile`` (a Profile or its name).

    Everything but the switched component is shared: the profile's training run (architecture ``model``,
    default the profile's first; ``seed``, default its first), the pixel gate (kernel 3), alpha = 0.7,
    beta = 0.01 and the inner attack of ``positions`` pixels (default ``INNER_POSITIONS[profile.name]``).
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, not {variant!r}")
    switches = {"gate": "pixel", "adversarial": True, "beta": 0.01, **VARIANTS[variant]}
    objective = APRObjective(alpha=0.7, beta=switches["beta"], adversarial=switches["adversarial"],
                             positions=positions if positions is not None else INNER_POSITIONS.get(prof.name, 8))
    return prof.train_config(model, seed, gate=switches["gate"], gate_kernel=3, objective=objective)


# == the labs (05-07): suites of trained models, tables beside the paper's, verdicts, overhead ====================

#: The APR paper's CIFAR-10 claims, quoted from ``labkit.papers``: (clean accuracy %, ASR %); robustness =
#: 100 - ASR. Table 1 (defences; its AT/IT/DD rows as Lab 04 quotes them), Table 3 (ablation), Table 4 (overhead).
TABLE1_CLAIMS: dict[str, tuple[float, float]] = papers.APR2024_TABLE1
TABLE3_CLAIMS: dict[str, tuple[float, float]] = papers.APR2024_TABLE3
TABLE4_CLAIMS: dict[str, tuple[float, float]] = papers.APR2024_TABLE4

#: What each ablation variant removes, for tables and sentences.
COMPONENT = {"no_attention": "the attention gate", "no_adversarial": "adversarial training",
             "no_regularisation": "the gradient regulariser"}


def table1_suite(profile: Profile) -> list[Entry]:
    """APR and the baselines of the paper's Table 1 for every model and seed of ``profile``.

    AT appears twice (the paper does not say which): one-pixel AT with the same inner attack and budget as
    APR, and PGD AT (Madry et al.). IT is represented by Xu et al.'s 5-bit depth reduction and JPEG at
    quality 75 (as Guo et al. 2018), both in front of the undefended model; DD by distillation at T = 20.
    """
    from labkit.defences import JPEG, PGDAT, BitDepth, OnePixelAT, distillation_config

    out = []
    for model in profile.models:
        for seed in profile.seeds:
            base = profile.train_config(model, seed)
            inner = OnePixelAT(positions=INNER_POSITIONS.get(profile.name, 8))
            out += [Entry("No defence", base, paper="No defence"),
                    Entry("AT (one-pixel)", replace(base, objective=inner), paper="AT"),
                    Entry("AT (PGD)", replace(base, objective=PGDAT()), paper="AT"),
                    Entry("IT (bit depth 5)", base, BitDepth(5), paper="IT"),
                    Entry("IT (JPEG q75)", base, JPEG(75), paper="IT"),
                    Entry("DD (T=20)", distillation_config(base, 20.0), paper="DD"),
                    Entry("APR", apr_config(profile, "full", model, seed), paper="APR")]
    return out


def ablation_suite(profile: Profile) -> list[Entry]:
    """The four variants of the paper's Table 3 for every model and seed of ``profile``."""
    return [Entry(v, apr_config(profile, v, model, seed), paper=v)
            for model in profile.models for seed in profile.seeds for v in VARIANTS]


def random_targets(labels: Tensor, num_classes: int = 10, seed: int = 0) -> Tensor:
    """A fixed random target class per image, never its label (for the targeted attack)."""
    shift = torch.randint(1, num_classes, (len(labels),), generator=torch.Generator().manual_seed(seed))
    return (labels + shift) % num_classes


def stronger_de(profile: Profile) -> Profile:
    """``profile`` with the DE budget of the adaptive check: twice the population and twice the generations.

    About four times the queries per image. A profile, not DEConfig overrides, because ``Profile.de_config``
    sets population and generations itself.
    """
    return replace(profile, population=2 * profile.population, generations=2 * profile.generations)


def adaptive_check(trained: list[Trained], profile: Profile, indices: dict[tuple[str, int], Tensor] | None = None,
                   defences: tuple[str, ...] = ("No defence", "APR"), progress: bool = True) -> list[dict[str, Any]]:
    """Stronger attacks on ``defences`` (first seed of each architecture), on the images ``indices`` (default:
    ``labkit.evaluate.attacked_indices``, the images of ``labkit.evaluate.evaluate_suite``, so its DE and corner
    records come from the cache).

    Per model: DE at the profile's budget and corner search (cached from ``evaluate_suite``), DE with
    ``stronger_de``, targeted DE and targeted corner search (a fixed random target per image), and the worst
    case over the untargeted attacks (``labkit.evaluate.WORST_CASE``: an image counts as broken if any of them broke it).
    """
    from labkit.data import load_cifar10
    from labkit.evaluate import evaluate_model, verify, wilson

    split, rows = load_cifar10("test"), []
    indices = attacked_indices(trained, profile) if indices is None else indices
    for (arch, seed), group in _groups(trained).items():
        if seed != profile.seeds[0]:
            continue
        idx = indices[(arch, seed)]
        images, labels = split.floats(idx), split.labels[idx]
        for t in (t for t in group if t.entry.defence in defences):
            tags = {"model": arch, "seed": seed, "defence": t.entry.defence, "paper": t.entry.paper}
            runs = [evaluate_model(t.model, t.key, split, idx, profile, progress=progress, **tags),
                    evaluate_model(t.model, t.key, split, idx, stronger_de(profile), corner=False,
                                   progress=progress, **tags),
                    evaluate_model(t.model, t.key, split, idx, profile, progress=progress,
                                   targets=random_targets(labels), **tags)]
            runs[1].rows[0]["attack"] = "DE k=1, 4x budget"
            rows += [r for ev in runs for r in ev.rows]
            broken = torch.zeros(len(idx), dtype=torch.bool)
            for ev in runs[:2]:
                for res in ev.results.values():
                    broken |= verify(t.model, images, res, max_pixels=1)
            k, n = int(broken.sum()), len(idx)
            lo, hi = wilson(k, n)
            rows.append({**tags, "clean_acc": runs[0].rows[0]["clean_acc"], "attacked": n, "asr": k / n,
                         "asr_lo": lo, "asr_hi": hi, "robustness": 1 - k / n,
                         "robust_acc": runs[0].rows[0]["clean_acc"] * (1 - k / n), "attack": WORST_CASE,
                         "outcomes": tuple(int(v) for v in broken.tolist()),
                         "targeted": False})
    return rows


def _find(table: list[dict[str, Any]], defence: str, attack: str, model: str | None = None) -> dict[str, Any]:
    return next(r for r in table if r["defence"] == defence and r["attack"] == attack
                and (model is None or r["model"] == model))


def compare(what: str, row: dict[str, Any], col: str, claimed: float) -> str:
    """A sentence placing our ``row[col]`` (percent, with its CI) against the paper's ``claimed`` value."""
    value, lo, hi = row[col], row[f"{col}_lo"], row[f"{col}_hi"]
    if not (lo == lo and hi == hi):  # no interval (NaN)
        verdict = "higher than" if value > claimed else "lower than" if value < claimed else "equal to"
        return f"{what}: ours {value:.1f}% vs the paper's {claimed:g}% ({verdict} the claim; no interval)."
    where = ("consistent with" if lo <= claimed <= hi else
             "above" if lo > claimed else "below")
    return (f"{what}: ours {value:.1f}% (95% CI {lo:.1f}-{hi:.1f}) vs the paper's {claimed:g}%: "
            f"{where} the paper's number.")


def table1_verdict(table: list[dict[str, Any]], adaptive: list[dict[str, Any]], profile: Profile) -> str:
    """Plain sentences, computed from the measured tables, on whether the paper's Table 1 claim survives.

    The claim is "APR brings the one-pixel ASR down to 21.43% (from 70.97% undefended)". It survives here
    if, under the worst case over our untargeted attacks, APR's ASR interval reaches down to 21.43% or
    below, and APR is clearly more robust than our undefended model (the two intervals do not overlap).
    """
    lines = []
    if profile.name == "smoke":
        lines.append("Smoke profile: tiny training runs and budgets, so these sentences exercise the code; "
                     "they say nothing about the paper.")
    for arch in dict.fromkeys(r["model"] for r in table):
        apr_de, none_de = _find(table, "APR", "DE k=1", arch), _find(table, "No defence", "DE k=1", arch)
        apr_any = _find(adaptive, "APR", WORST_CASE, arch)
        none_any = _find(adaptive, "No defence", WORST_CASE, arch)
        lines += [f"[{arch}] " + compare("APR clean accuracy", apr_de, "clean_acc", TABLE1_CLAIMS["APR"][0]),
                  f"[{arch}] " + compare("APR ASR, DE at the profile budget", apr_de, "asr", TABLE1_CLAIMS["APR"][1]),
                  f"[{arch}] " + compare("Undefended ASR, same attack", none_de, "asr", TABLE1_CLAIMS["No defence"][1]),
                  f"[{arch}] " + compare("APR ASR, worst case over DE, 4x DE and corner search", apr_any, "asr",
                                         TABLE1_CLAIMS["APR"][1])]
        reaches = apr_any["asr_lo"] <= TABLE1_CLAIMS["APR"][1]
        separated = apr_any["asr_hi"] < none_any["asr_lo"]
        if reaches and separated:
            lines.append(f"[{arch}] The claim survives the adaptive check: APR's worst-case ASR is compatible with "
                         f"21.43% and clearly below the undefended model's {none_any['asr']:.1f}%.")
        else:
            why = []
            if not reaches:
                why.append(f"its worst-case ASR ({apr_any['asr']:.1f}%, CI from {apr_any['asr_lo']:.1f}%) "
                           f"stays above the paper's 21.43%")
            if not separated:
                why.append(f"APR is not clearly more robust than our undefended model ({none_any['asr']:.1f}% "
                           f"under the same attacks; the intervals overlap)")
            lines.append(f"[{arch}] The claim does not survive here: " + "; and ".join(why) + ".")
    return "\n".join(lines)


def ablation_verdict(table: list[dict[str, Any]], attack: str = "DE k=1") -> str:
    """Which component carries APR's robustness here: the one whose removal raises the ASR the most.

    A component "carries" robustness only if removing it raises the ASR clearly (its interval lies above full
    APR's); ties and rises of zero are reported as such, not resolved by order.
    """
    lines = []
    paper = {v: TABLE3_CLAIMS[v][1] - TABLE3_CLAIMS["full"][1] for v in COMPONENT}
    ptop = max(paper, key=lambda v: paper[v])
    for arch in dict.fromkeys(r["model"] for r in table):
        full = _find(table, "full", attack, arch)
        rises = {v: _find(table, v, attack, arch)["asr"] - full["asr"] for v in COMPONENT}
        parts = ", ".join(f"without {COMPONENT[v]} {rises[v]:+.1f} points" for v in COMPONENT)
        line = f"[{arch}, {attack}] ASR change when one component is removed: {parts}. "
        best = max(rises.values())
        tops = [v for v in COMPONENT if rises[v] == best]
        clear = [v for v in COMPONENT if _find(table, v, attack, arch)["asr_lo"] > full["asr_hi"]]
        if best <= 0:
            line += "Removing no component raises the ASR here: none is shown to carry robustness."
        elif len(tops) > 1:
            line += f"The largest rise is shared by {' and '.join(COMPONENT[v] for v in tops)}."
        else:
            line += f"The largest rise comes from removing {COMPONENT[tops[0]]}"
            line += (" and it is clear (the intervals do not overlap)." if tops[0] in clear else
                     ", but the intervals overlap: at this sample size it is not shown to matter.")
        lines.append(line)
        ours = ("ours agrees." if tops == [ptop] and best > 0 else
                f"ours points at {COMPONENT[tops[0]]} instead." if len(tops) == 1 and best > 0 else
                "ours singles out no component.")
        lines.append(f"[{arch}] The paper's largest rise is without {COMPONENT[ptop]} (+{paper[ptop]:.2f} points); "
                     + ours)
    return "\n".join(lines)


# -- Lab 07: overhead ------------------------------------------------------------------------------------------------

def overhead_configs(profile: Profile, model: str | None = None) -> dict[str, TrainConfig]:
    """The undefended model and the four APR variants of ``profile`` (for the cost split), by label."""
    out = {"undefended": profile.train_config(model)}
    out.update({f"APR {v}": apr_config(profile, v, model) for v in VARIANTS})
    return out



def time_training(configs: dict[str, TrainConfig], device: str | torch.device = "auto", warmup: int = 1,
                  repeats: int = 5) -> list[dict[str, Any]]:
    """Seconds per training step of each config, measured side by side on one batch of real training images.

    Each config gets a freshly initialised model and optimiser; every repeat runs one step of each, in an
    order rotated from repeat to repeat (so no config always runs first, after a cold cache). A step is
    what ``labkit.train.train`` does per mini-batch: augmentation, the objective under the autocast its
    ``precision`` resolves to on this device (``labkit.precision``), backward, optimiser and scheduler step. Rows: config, repeat, seconds, and
    inner_attack (the seconds of that step spent in the objective's inner attack), sorted by repeat and then
    in the order of ``configs``.
    """
    from labkit.data import first_n, load_cifar10
    from labkit.models import resolve_device
    from labkit.train import build_for_config, make_optimizer, train_step

    dev = resolve_device(device)
    first = next(iter(configs.values()))
    split = load_cifar10("train")
    idx = first_n(split, first.batch_size)
    images, labels = split.floats(idx).to(dev), split.labels[idx].to(dev)
    state = {}
    for name, cfg in configs.items():
        torch.manual_seed(cfg.seed)
        model = build_for_config(cfg).to(dev).train()
        # The schedule of the real run (its length only sets the learning rate, not the cost of a step).
        opt, sched = make_optimizer(model, cfg, cfg.epochs * math.ceil((cfg.train_size or 50_000) / cfg.batch_size))
        ctx = TrainContext(config=cfg, device=dev)
        cfg.objective.setup(ctx)
        state[name] = (cfg, model, opt, sched, ctx)
    names, rows = list(configs), []
    for rep in range(warmup + repeats):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            cfg, model, opt, sched, ctx = state[name]
            ctx.timers = {}
            synchronize(dev)
            start = time.perf_counter()
            train_step(model, opt, sched, cfg, images, labels, ctx)
            synchronize(dev)
            if rep >= warmup:
                rows.append({"config": name, "repeat": rep - warmup, "seconds": time.perf_counter() - start,
                             "inner_attack": ctx.timers.get("inner_attack", 0.0)})
    return sorted(rows, key=lambda r: (r["repeat"], names.index(r["config"])))


def overhead_table(train_rows: list[dict[str, Any]], inference: dict[str, float],
                   reference: str = "undefended") -> list[dict[str, Any]]:
    """Medians per config and their increase over ``reference``, in percent.

    ``train_rows``: from ``time_training``; ``inference``: seconds per image by config (e.g. from
    ``labkit.evaluate.time_inference``). Columns: config, train_ms (per step), train_increase_pct,
    inner_attack_ms, inner_attack_share_pct (of the training-time increase), infer_us (per image),
    infer_increase_pct.
    """
    import statistics

    med = {c: statistics.median(r["seconds"] for r in train_rows if r["config"] == c)
           for c in dict.fromkeys(r["config"] for r in train_rows)}
    inner = {c: statistics.median(r["inner_attack"] for r in train_rows if r["config"] == c) for c in med}
    out = []
    for c, t in med.items():
        extra = t - med[reference]
        out.append({"config": c, "train_ms": 1e3 * t, "train_increase_pct": 100 * extra / med[reference],
                    "inner_attack_ms": 1e3 * inner[c],
                    "inner_attack_share_pct": 100 * inner[c] / extra if extra > 0 and c != reference else None,
                    "infer_us": 1e6 * inference[c] if c in inference else None,
                    "infer_increase_pct": (100 * (inference[c] / inference[reference] - 1)
                                           if c in inference and reference in inference else None)})
    return out


def overhead_split(table: list[dict[str, Any]]) -> dict[str, float]:
    """The training-time increase of full APR split by component, in ms per step, from ``overhead_table``.

    inner attack: its own timer; gradient regulariser: full - no_regularisation; attention gate:
    full - no_attention; the rest (the adversarial half of the batch through forward and backward): what
    remains. Differences of medians, so small parts can come out slightly negative on a noisy machine.
    """
    ms = {r["config"]: r["train_ms"] for r in table}
    inner = next(r["inner_attack_ms"] for r in table if r["config"] == "APR full")
    total = ms["APR full"] - ms["undefended"]
    reg = ms["APR full"] - ms["APR no_regularisation"]
    gate = ms["APR full"] - ms["APR no_attention"]
    return {"inner attack": inner, "gradient regulariser": reg, "attention gate": gate,
            "adversarial half-batch": total - inner - reg - gate}


def measure_overhead(profile: Profile, model: str | None = None, device: str | torch.device = "auto",
                     progress: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Lab 07's measurement for one architecture: (``overhead_table`` rows, raw per-step timings).

    Training steps of the undefended model and the four APR variants side by side (``time_training``, with
    ``TIMING[profile.name]`` warm-up and repeats), then inference (``labkit.evaluate.time_inference``) of the
    same untrained networks on test images, side by side. Weights do not change the cost, so nothing is trained.
    """
    from labkit.data import first_n, load_cifar10
    from labkit.evaluate import time_inference
    from labkit.models import resolve_device
    from labkit.train import build_for_config

    dev = resolve_device(device)
    warmup, repeats = TIMING.get(profile.name, (2, 9))
    configs = overhead_configs(profile, model)
    raw = time_training(configs, dev, warmup, repeats)
    test = load_cifar10("test")
    images = test.floats(first_n(test, 100))
    nets = {name: build_for_config(cfg).to(dev).eval() for name, cfg in configs.items()}
    inference = time_inference(nets, images, repeats=2 * repeats + 1, warmup=warmup, batch_size=100)
    table = overhead_table(raw, inference)
    arch = model or profile.models[0]
    for r in table:
        r["model"] = arch
    return table, raw


def cached_training_seconds(profile: Profile, model: str | None = None, seed: int | None = None,
                            progress: bool = True) -> dict[str, Any]:
    """Whole training runs from the cache (trained if missing): undefended vs full APR, at different times.

    Returns the model, both runs' seconds, APR's inner-attack seconds (summed over epochs) and the increase.
    Not side by side, so machine load at the time of each run enters the ratio: ``measure_overhead`` is the
    measurement to quote, this is the check on whole runs.
    """
    from labkit.train import get_or_train

    arch = model or profile.models[0]
    base = get_or_train(profile.train_config(arch, seed), progress=progress)
    full = get_or_train(apr_config(profile, "full", arch, seed), progress=progress)
    inner = sum(h.get("seconds_inner_attack", 0.0) for h in full.history)
    return {"model": arch, "undefended_s": base.train_seconds, "apr_s": full.train_seconds,
            "increase_pct": 100 * (full.train_seconds / base.train_seconds - 1), "inner_attack_s": inner,
            "inner_attack_share_pct": 100 * inner / max(full.train_seconds - base.train_seconds, 1e-9)}


def overhead_verdict(table: list[dict[str, Any]]) -> str:
    """Sentences from Lab 07's measured table, beside the paper's Table 4."""
    lines = []
    for arch in dict.fromkeys(r["model"] for r in table):
        full = next(r for r in table if r["model"] == arch and r["config"] == "APR full")
        undefended = next(r for r in table if r["model"] == arch and r["config"] == "undefended")
        claim = TABLE4_CLAIMS.get(arch)
        ref = (f"the paper: +{claim[0]:g}% training, +{claim[1]:g}% inference for {arch}" if claim else
               "the paper reports +27.3% / +8.6% (ResNet-18) and +31.5% / +9.2% (VGG-16); it has no " + arch)
        share = full["inner_attack_share_pct"]
        lines.append(f"[{arch}] Training APR costs {full['train_increase_pct']:+.0f}% per step over the "
                     f"undefended model and inference {full['infer_increase_pct']:+.1f}% per image ({ref}). "
                     + (f"The inner one-pixel attack is {share:.0f}% of the training-time increase."
                        if share is not None else "There is no training-time increase to split."))
        if claim:
            factor = full["train_increase_pct"] / claim[0]
            lines.append(f"[{arch}] Our training-time increase is {factor:.1f}x the paper's; the inner attack "
                         f"alone takes {100 * full['inner_attack_ms'] / undefended['train_ms']:.0f}% of an "
                         "undefended step.")
    return "\n".join(lines)
