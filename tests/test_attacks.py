"""The attacks: they must really flip the model, respect budgets, and be batch-independent."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor, nn

import labkit.attacks
from labkit import data
from labkit.attacks import (CW, FGSM, MIFGSM, PGD, WRAPPED, Attack, AttackResult, CornerSearch, DEConfig, DeepFool,
                            GradientCorner, OnePixel, PixelSwap, Pixle, SparseRS, apply_pixels, changed_pixels,
                            minimize, perturbation_norms, torch_attack, verify)
from labkit.attacks import base
from labkit.attacks._rng import HashRNG, image_keys
from labkit.attacks.base import CandidateScorer, attack_keys
from labkit.attacks.onepixel import _three_distinct_others
from labkit.attacks.sparse_rs import resample_count
from labkit.models import imagenet_model
from labkit.precision import resolve_precision

from conftest import PixelTrigger, make_tiny_cnn, write_imagenet_folder

LABELS0 = torch.zeros(6, dtype=torch.long)
# Every concrete attack (abstract bases such as Attack and TorchAttack have no Config).
ATTACKS = [getattr(labkit.attacks, name) for name in labkit.attacks.__all__
           if isinstance(getattr(labkit.attacks, name), type) and issubclass(getattr(labkit.attacks, name), Attack)
           and hasattr(getattr(labkit.attacks, name), "Config")]

#: Per attack, a budget that finds the PixelTrigger's pixel on the 8x8 dark images (k = pixels changed).
FINDING = {
    "OnePixel": dict(population=60, generations=60),
    "CornerSearch": dict(block=64),
    "GradientCorner": dict(positions=2, rank="candidate"),
    "SparseRS": dict(queries=1500),
    "PixelSwap": dict(),
    "FGSM": dict(eps=1.0),  # the gradient is zero everywhere but the trigger pixel: only it moves, to white
    "PGD": dict(eps=1.0, alpha=0.5, steps=2),
    "MIFGSM": dict(eps=1.0, alpha=1.0, steps=1),
    "DeepFool": dict(steps=5),
    "CW": dict(c=100.0, lr=0.5, steps=10),
    "Pixle": dict(restarts=60),
}
#: Per attack, how the dark images change so that it *can* find the trigger pixel (default: not at all).
FINDING_IMAGES = {
    # Attacks that only rearrange an image's own pixels cannot brighten a dark image: give them one white pixel to
    # move, and make the trigger pixel the darkest, so the survey's first swap sends the white one there.
    "PixelSwap": "white pixel", "Pixle": "white pixel",
    # CW's margin follows the strongest other class; the trigger class is that one only above brightness 0.25.
    "CW": "grey trigger",
}
#: Per attack, a small budget for the batch-independence checks on the tiny CNN.
SMALL = {
    "OnePixel": dict(population=10, generations=3, pixels=2, loss="margin"),
    "CornerSearch": dict(max_queries=40, block=16),
    "GradientCorner": dict(positions=3, rank="candidate", loss="margin", block=5),
    "SparseRS": dict(queries=30, pixels=3),
    "PixelSwap": dict(swaps=10, candidates=3, loss="margin"),
    "FGSM": dict(eps=0.3),
    "PGD": dict(eps=0.3, alpha=0.1, steps=3),
    "MIFGSM": dict(eps=0.3, alpha=0.1, steps=3),
    "DeepFool": dict(steps=3),
    "CW": dict(steps=5, lr=0.1),
    "Pixle": dict(restarts=3, max_iterations=3),
}
#: Attacks whose result for an image depends on the rest of its batch, and why; the contract asks them for a
#: repeatable call instead of batch independence.
BATCH_COUPLED = {
    "PGD": "torchattacks draws the random start for the whole batch from torch's (seeded) generator",
    "CW": "torchattacks stops early on the loss summed over the batch",
}


def finding_images(name: str, dark: Tensor) -> Tensor:
    """The dark images as attack ``name`` gets them in the finding contract (``FINDING_IMAGES``)."""
    x = dark.clone()
    if FINDING_IMAGES.get(name) == "white pixel":
        x[:, :, 2, 5], x[:, :, 6, 1] = 0.0, 1.0
    elif FINDING_IMAGES.get(name) == "grey trigger":
        x[:, :, 2, 5] = 0.35
    return x


class Recorder(nn.Module):
    """A model that never flips (class 0 always wins) and records the pixel each query changed in ``ref`` (N, C, H, W).

    Each query differs from one reference image in one pixel; ``positions`` collects its flat index.
    """

    def __init__(self, ref: Tensor):
        super().__init__()
        self.ref, self.queried = ref, []
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        diff = (x[:, None] != self.ref[None]).any(2)  # (B, N, H, W)
        source = diff.flatten(2).sum(2).argmin(1)  # the reference image the query was made from
        self.queried.append(diff[torch.arange(len(x)), source].flatten(1).float().argmax(1))
        return torch.arange(10, 0, -1, dtype=x.dtype).expand(len(x), -1) + 0 * x.sum((1, 2, 3))[:, None]

    @property
    def positions(self) -> Tensor:
        return torch.cat(self.queried[1:])  # the first call is the contract check on one clean image


class SaturatedBlob(nn.Module):
    """A PixelTrigger-like model whose softmax is saturated: fp32 probabilities are exactly 1.0 / 0.0.

    The logit of class 1 is a Gaussian-weighted sum (width ``sigma`` pixels) of the mean brightness around
    (``row``, ``col``) above 0.2, times ``scale``; it beats class 0 when that sum exceeds 0.6, which one
    near-white pixel close to the centre achieves. Every pixel moves the logits a little (a margin sees it),
    but with ``scale`` = 1e4 the probabilities are flat everywhere else.
    """

    def __init__(self, size: int = 32, row: int = 11, col: int = 17, sigma: float = 4.0, scale: float = 1e4):
        super().__init__()
        r = torch.arange(size)
        self.register_buffer("w", torch.exp(-((r[:, None] - row) ** 2 + (r[None, :] - col) ** 2) / (2 * sigma ** 2)))
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        z = ((x.mean(1) - 0.2) * self.w).sum((1, 2))
        base = torch.full((len(x), 10), -self.scale, dtype=x.dtype, device=x.device)
        base[:, 0] = 0.6 * self.scale
        return torch.cat([base[:, :1], (z * self.scale)[:, None], base[:, 2:]], dim=1)


@pytest.fixture
def saturated():
    """The SaturatedBlob model and eight 32x32 grey images (0.2 +- 0.025) it calls class 0."""
    x = 0.2 + 0.05 * (torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) - 0.5)
    return SaturatedBlob().eval(), x, torch.zeros(8, dtype=torch.long)


def assert_same(a: AttackResult, b: AttackResult, exact_probs: bool = True) -> None:
    """Equal results; ``exact_probs=False`` allows the model's own batch-size rounding in the reported probabilities."""
    for name, t in a.to_dict().items():
        if not exact_probs and name in ("adv_prob", "true_prob"):
            assert torch.allclose(t, b.to_dict()[name], atol=1e-6), name
        else:
            assert torch.equal(t, b.to_dict()[name]), name


# -- finding the pixel the model hinges on -----------------------------------------------------------

def test_de_finds_the_trigger_pixel(pixel_model, dark_images):
    res = OnePixel(pixel_model, population=60, generations=60)(dark_images, LABELS0)
    assert res.success.all()
    assert (res.pixels[:, 0] == torch.tensor([2, 5])).all()
    assert (pixel_model(res.adv_images).argmax(1) == 1).all()  # really flipped
    assert verify(pixel_model, dark_images, res, max_pixels=1).all()


def test_corner_search_finds_the_trigger_pixel(pixel_model, dark_images):
    res = CornerSearch(pixel_model)(dark_images, LABELS0)
    assert res.success.all() and (res.pixels[:, 0] == torch.tensor([2, 5])).all()
    assert (res.colours[:, 0] == 1).all()  # only white beats the 0.75 threshold
    assert (res.queries <= 8 * 64).all()
    assert verify(pixel_model, dark_images, res, max_pixels=1).all()


def test_corner_search_respects_its_budget(pixel_model, dark_images):
    res = CornerSearch(pixel_model, max_queries=20)(dark_images, LABELS0)
    assert (res.queries <= 20).all()
    assert torch.equal(res.success, verify(pixel_model, dark_images, res, 1))
    assert (res.queries[~res.success] == 20).all()


def test_gradient_corner_ranks_the_trigger_pixel_first(pixel_model, dark_images):
    attack = GradientCorner(pixel_model, positions=1)
    sal = attack.saliency(dark_images, LABELS0)
    assert (sal.flatten(1).argmax(1) == 2 * 8 + 5).all()
    res = attack(dark_images, LABELS0)
    assert res.success.all() and verify(pixel_model, dark_images, res, 1).all()
    assert (res.queries <= 8).all()


@pytest.mark.parametrize("make", [lambda m: OnePixel(m, population=60, generations=60, targeted=True),
                                  lambda m: CornerSearch(m, targeted=True)])
def test_targeted_attacks_reach_their_target(pixel_model, dark_images, make):
    targets = torch.ones(6, dtype=torch.long)
    res = make(pixel_model)(dark_images, LABELS0, targets)
    assert res.success.all() and (res.adv_pred == 1).all()
    assert verify(pixel_model, dark_images, res, 1).all()


def test_unreachable_target_fails_honestly(pixel_model, dark_images):
    targets = torch.full((6,), 7, dtype=torch.long)  # no pixel makes the model say 7
    for attack in (OnePixel(pixel_model, population=20, generations=5, targeted=True),
                   CornerSearch(pixel_model, targeted=True)):
        res = attack(dark_images, LABELS0, targets)
        assert not res.success.any()
        assert not verify(pixel_model, dark_images, res, 1).any()
        budget = attack.config.max_queries if isinstance(attack, OnePixel) else 8 * 64
        assert (res.queries == budget).all()


# -- budgets and early stopping ----------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 3, 5])
def test_de_budget_and_sparsity(tiny_cnn, k):
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    y = tiny_cnn(x).argmax(1)
    cfg = DEConfig(pixels=k, population=12, generations=6)
    res = OnePixel(tiny_cnn, cfg)(x, y)
    assert (res.queries <= cfg.max_queries).all() and (res.queries % cfg.population == 0).all()
    assert (changed_pixels(x, res.adv_images) <= k).all()
    assert res.adv_images.min() >= 0 and res.adv_images.max() <= 1
    assert torch.equal(res.success, verify(tiny_cnn, x, res, k))  # every reported success holds, and only those
    assert torch.equal(res.adv_pred, tiny_cnn(res.adv_images).argmax(1))


def test_de_stops_an_image_as_soon_as_it_succeeds(pixel_model, dark_images):
    x = dark_images.clone()
    x[:3, :, 2, 5] = 1.0  # the model already says class 1 for these: any candidate "succeeds"
    res = OnePixel(pixel_model, population=16, generations=10)(x, LABELS0)
    assert res.success[:3].all()
    assert (res.queries[:3] == 16).all()  # the initial population was enough


# -- determinism and batch independence --------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda m: OnePixel(m, population=10, generations=5, pixels=3),
    lambda m: OnePixel(m, population=10, generations=5, strategy="best1-scipy", crossover=0.5),
    lambda m: CornerSearch(m, block=50),
    lambda m: GradientCorner(m, positions=4),
])
def test_batched_result_equals_per_image_results(tiny_cnn, make):
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    y = tiny_cnn(x).argmax(1)
    attack = make(tiny_cnn)
    batched = attack(x, y)
    singles = AttackResult.cat([attack(x[i:i + 1], y[i:i + 1]) for i in range(4)])
    assert_same(batched, singles)


def test_chunk_size_does_not_change_the_result(tiny_cnn):
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    y = tiny_cnn(x).argmax(1)
    a = OnePixel(tiny_cnn, population=10, generations=4, chunk_size=7)(x, y)
    b = OnePixel(tiny_cnn, population=10, generations=4, chunk_size=1000)(x, y)
    assert_same(a, b)


def test_same_seed_same_result_other_seed_other_search(tiny_cnn):
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    y = tiny_cnn(x).argmax(1)
    run = lambda seed: OnePixel(tiny_cnn, population=10, generations=3, seed=seed)(x, y)  # noqa: E731
    assert_same(run(0), run(0))
    assert not torch.equal(run(0).colours, run(1).colours)


def test_bf16_search_confirms_successes_in_fp32(pixel_model, dark_images):
    res = OnePixel(pixel_model, population=60, generations=40, precision="bf16")(dark_images, LABELS0)
    assert res.success.any()
    assert torch.equal(res.success, verify(pixel_model, dark_images, res, 1))


def test_scipy_variant_stays_in_bounds(tiny_cnn):
    x = torch.rand(2, 3, 8, 8)
    y = tiny_cnn(x).argmax(1)
    res = OnePixel(tiny_cnn, population=8, generations=5, strategy="best1-scipy", init_colour="uniform")(x, y)
    assert ((res.pixels >= 0) & (res.pixels < 8)).all() and ((res.colours >= 0) & (res.colours <= 1)).all()


def test_penalty_adds_lambda_times_delta_norm(pixel_model, dark_images):
    from labkit.attacks.base import CandidateScorer

    scorer = CandidateScorer(pixel_model, dark_images, LABELS0, None)
    vec = torch.tensor([[5.5, 2.5, 1.0, 1.0, 1.0], [0.5, 0.5, 0.0, 0.0, 0.0]])
    img = torch.tensor([0, 1])
    plain, _ = OnePixel(pixel_model)._score(scorer, img, vec, 8, 8)
    pen, _ = OnePixel(pixel_model, penalty=0.3)._score(scorer, img, vec, 8, 8)
    delta = torch.stack([(torch.ones(3) - dark_images[0, :, 2, 5]).norm(), dark_images[1, :, 0, 0].norm()])
    assert torch.allclose(pen - plain, 0.3 * delta, atol=1e-6)


# -- building blocks ---------------------------------------------------------------------------------

def test_rand1_indices_are_distinct_and_exclude_self():
    keys = torch.arange(50)
    r1, r2, r3 = _three_distinct_others(HashRNG(0), keys, 0, 5)
    i = torch.arange(5)
    for a, b in ((r1, r2), (r1, r3), (r2, r3), (r1, i), (r2, i), (r3, i)):
        assert (a != b).all()


def test_hash_rng_rows_do_not_depend_on_the_batch():
    rng = HashRNG(3)
    keys = torch.tensor([11, 22, 33])
    full = rng.uniform(keys, 5, (4, 2))
    assert torch.equal(full[1:2], rng.uniform(keys[1:2], 5, (4, 2)))
    assert ((full >= 0) & (full < 1)).all()
    assert not torch.equal(full, rng.uniform(keys, 6, (4, 2)))
    u = rng.uniform(torch.arange(200), 0, (500,))
    assert abs(u.mean().item() - 0.5) < 0.01  # roughly uniform
    assert not torch.equal(image_keys(torch.zeros(1, 3, 4, 4)), image_keys(torch.ones(1, 3, 4, 4)))


def test_apply_pixels_writes_in_order():
    x = torch.zeros(1, 3, 4, 4)
    out = apply_pixels(x, torch.tensor([[1, 1]]), torch.tensor([[2, 2]]), torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]))
    assert torch.equal(out[0, :, 1, 2], torch.tensor([0.0, 1.0, 0.0]))  # the later pixel wins
    assert changed_pixels(torch.zeros(1, 3, 4, 4), out).item() == 1


@pytest.mark.parametrize("cls", ["PixelSwap", "SparseRS"])
def test_apply_pixels_rebuilds_every_result_from_its_pixels(tiny_cnn, cls):
    # A result's -1 slots (padding: nothing changed there) are skipped, so the clean images with the result's
    # pixels written are its adv_images: how a record rebuilds them (labkit.records stores pixels, not images).
    # (Dense results: test_wrapped_attacks_report_what_the_model_says; ragged widths: test_cat_pads_...)
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    res = getattr(labkit.attacks, cls)(tiny_cnn, **SMALL[cls])(x, tiny_cnn(x).argmax(1))
    rebuilt = apply_pixels(x.clone(), res.pixels[..., 0], res.pixels[..., 1], res.colours)
    assert torch.equal(rebuilt, res.adv_images)
    padded = res.padded(res.pixels.shape[1] + 2)  # -1 rows, if written at (-1, -1), would change the last pixel
    assert torch.equal(apply_pixels(x.clone(), padded.pixels[..., 0], padded.pixels[..., 1], padded.colours), rebuilt)


def test_minimize_finds_a_quadratic_minimum():
    run = minimize(lambda p: ((p - torch.tensor([1.0, -2.0])) ** 2).sum(1), [-5, -5], [5, 5],
                   population=20, generations=40)
    assert torch.allclose(run.best, torch.tensor([1.0, -2.0]), atol=1e-2)
    assert run.populations.shape == (41, 20, 2)
    assert (run.fitness[1:].min(1).values <= run.fitness[:-1].min(1).values).all()  # elitist


def test_result_roundtrips_through_weights_only_load(tmp_path, tiny_cnn):
    x = torch.rand(2, 3, 8, 8)
    res = CornerSearch(tiny_cnn)(x, tiny_cnn(x).argmax(1))
    torch.save(res.to_dict(), tmp_path / "r.pt")
    assert_same(res, AttackResult.from_dict(torch.load(tmp_path / "r.pt", weights_only=True)))


def test_cat_pads_results_of_different_widths_with_empty_slots(tiny_cnn):
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(11))
    y = tiny_cnn(x).argmax(1)
    one = SparseRS(tiny_cnn, queries=3, pixels=1)(x[:1], y[:1])
    three = SparseRS(tiny_cnn, queries=3, pixels=3)(x[1:], y[1:])
    both = AttackResult.cat([one, three])
    assert both.pixels.shape == (3, 3, 2) and both.colours.shape == (3, 3, 3)
    assert (both.pixels[0, 1:] == -1).all() and (both.colours[0, 1:] == 0).all()
    assert torch.equal(both.pixels[0, :1], one.pixels[0]) and torch.equal(both.pixels[1:], three.pixels)
    # The -1 slots are "no pixel": the record's reconstruction still gives the attack's images.
    assert torch.equal(apply_pixels(x.clone(), both.pixels[..., 0], both.pixels[..., 1], both.colours), both.adv_images)
    with pytest.raises(ValueError):
        three.padded(2)


def test_torchattacks_imports_without_its_pinned_requests(pixel_model, dark_images):
    torchattacks = pytest.importorskip("torchattacks")
    adv = torchattacks.OnePixel(pixel_model, pixels=1, steps=2, popsize=20)(dark_images[:1], LABELS0[:1])
    assert adv.shape == dark_images[:1].shape


# -- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("images, labels, err", [
    (torch.rand(3, 8, 8), torch.zeros(3, dtype=torch.long), ValueError),  # rank 3
    ((torch.rand(2, 3, 8, 8) * 255).to(torch.uint8), torch.zeros(2, dtype=torch.long), TypeError),
    (torch.rand(2, 3, 8, 8) * 2, torch.zeros(2, dtype=torch.long), ValueError),  # outside [0, 1]
    (torch.rand(2, 3, 8, 8), torch.zeros(3, dtype=torch.long), ValueError),  # wrong length
    (torch.rand(2, 3, 8, 8), torch.tensor([0, 10]), ValueError),  # label out of range
    (torch.rand(2, 3, 8, 8), torch.zeros(2), TypeError),  # float labels
])
def test_bad_inputs_are_rejected(pixel_model, images, labels, err):
    for attack in (OnePixel(pixel_model, population=4, generations=1), CornerSearch(pixel_model),
                   GradientCorner(pixel_model)):
        with pytest.raises(err):
            attack(images, labels)


@pytest.mark.parametrize("kwargs", [{"pixels": 0}, {"population": 3}, {"strategy": "best2"},
                                    {"crossover": 1.5}, {"init_colour": "gauss"}, {"precision": "fp16"}])
def test_bad_configs_are_rejected(pixel_model, dark_images, kwargs):
    with pytest.raises(ValueError):
        OnePixel(pixel_model, **kwargs)(dark_images, LABELS0)


def test_training_mode_and_target_misuse_are_rejected(pixel_model, dark_images):
    with pytest.raises(ValueError, match="eval"):
        OnePixel(pixel_model.train(), population=4)(dark_images, LABELS0)
    pixel_model.eval()
    with pytest.raises(ValueError, match="targets"):
        OnePixel(pixel_model, targeted=True)(dark_images, LABELS0)
    with pytest.raises(ValueError, match="target"):
        CornerSearch(pixel_model, targeted=True)(dark_images, LABELS0, LABELS0)


# -- the contract, for every attack in labkit.attacks.__all__ ------------------------------------------

def test_every_attack_has_a_contract_budget():
    assert {a.__name__ for a in ATTACKS} == set(FINDING) == set(SMALL)


@pytest.mark.parametrize("cls", ATTACKS, ids=lambda c: c.__name__)
def test_contract_successes_really_flip_the_model(pixel_model, dark_images, cls):
    attack = cls(pixel_model, precision="auto", **FINDING[cls.__name__])
    assert attack.precision_used == resolve_precision("auto", "cpu")
    dark_images = finding_images(cls.__name__, dark_images)
    assert (pixel_model(dark_images).argmax(1) == LABELS0).all()  # every image starts on the label
    res = attack(dark_images, LABELS0)
    n, c, h, w = dark_images.shape
    k = res.pixels.shape[1]
    assert res.adv_images.shape == (n, c, h, w) and res.colours.shape == (n, k, c) and res.pixels.shape == (n, k, 2)
    assert res.success.dtype == torch.bool and res.queries.dtype == torch.int64 and res.queries.shape == (n,)
    assert res.adv_images.min() >= 0 and res.adv_images.max() <= 1
    assert res.success.all()  # each of them finds the trigger pixel with this budget
    assert (pixel_model(res.adv_images).argmax(1) != LABELS0).all()  # re-checked with the model itself
    assert torch.equal(verify(pixel_model, dark_images, res, k), res.success)
    assert torch.equal(res.adv_pred, pixel_model(res.adv_images).argmax(1))


@pytest.mark.parametrize("cls", ATTACKS, ids=lambda c: c.__name__)
def test_contract_batched_equals_per_image_and_reports_honestly(tiny_cnn, cls):
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    y = tiny_cnn(x).argmax(1)
    attack = cls(tiny_cnn, **SMALL[cls.__name__])
    batched = attack(x, y)
    if cls.__name__ in BATCH_COUPLED:
        assert_same(batched, attack(x, y))  # repeatable, though not batch-independent
    else:
        # The search (what was tried, found and spent) is exact; a batch of 4 and a batch of 1 may round the
        # reported probabilities differently inside the model.
        assert_same(batched, AttackResult.cat([attack(x[i:i + 1], y[i:i + 1]) for i in range(4)]),
                    exact_probs=False)
    assert torch.equal(batched.success, verify(tiny_cnn, x, batched, batched.pixels.shape[1]))
    assert (changed_pixels(x, batched.adv_images) <= batched.pixels.shape[1]).all()


@pytest.mark.parametrize("cls", ATTACKS, ids=lambda c: c.__name__)
def test_contract_every_call_opens_in_the_base(pixel_model, dark_images, cls):
    # One opening for every attack (Attack.prepare): the attack implements only the search (run), so a bad input
    # is refused before any search starts, the same way for every attack.
    assert "__call__" not in vars(cls) and cls.run is not Attack.run
    attack = cls(pixel_model, **FINDING[cls.__name__])
    problem = attack.prepare(dark_images, LABELS0, None)
    assert problem.images is dark_images and problem.targets is None  # the model's device here: no copy
    assert problem.device == torch.device("cpu") and problem.precision == attack.precision_used
    searched = []
    attack.run = lambda *args: searched.append(args)
    with pytest.raises(ValueError, match="training mode"):
        cls(pixel_model.train(), **FINDING[cls.__name__])(dark_images, LABELS0)
    pixel_model.eval()
    with pytest.raises(TypeError, match="float"):
        attack((dark_images * 255).to(torch.uint8), LABELS0)
    with pytest.raises(ValueError, match="targets="):
        attack(dark_images, LABELS0, LABELS0 + 1)
    assert searched == []
    attack(dark_images, LABELS0, progress=True)
    assert len(searched) == 1 and searched[0][0].images is dark_images and searched[0][1] is True


@pytest.mark.parametrize("cls", ATTACKS, ids=lambda c: c.__name__)
def test_contract_config_merge(pixel_model, cls):
    cfg = cls.Config(precision="bf16")
    attack = cls(pixel_model, cfg, targeted=True)
    assert attack.config == dataclasses.replace(cfg, targeted=True) and attack.precision_used == "bf16"
    with pytest.raises(TypeError):
        cls(pixel_model, object())
    with pytest.raises(TypeError):
        cls(pixel_model, no_such_field=1)
    with pytest.raises(ValueError):
        cls(pixel_model, precision="fp16")


# -- DE: bounds, random streams, margin loss -----------------------------------------------------------

def border_fraction(positions: Tensor, size: int) -> float:
    row, col = positions // size, positions % size
    return ((row == 0) | (row == size - 1) | (col == 0) | (col == size - 1)).float().mean().item()


def test_de_redraw_does_not_pile_queries_on_the_border():
    # A model that never flips: the fitness is flat, so every trial is accepted and only the bound rule
    # shapes where the queries go. Clipping sends every out-of-range coordinate to row/column 0 or 31.
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    uniform = (4 * 32 - 4) / 32 ** 2  # 12.1% of positions lie on the border
    frac = {}
    for bounds in ("redraw", "clip"):
        rec = Recorder(x).eval()
        res = OnePixel(rec, population=60, generations=8, bounds=bounds)(x, torch.zeros(4, dtype=torch.long))
        assert not res.success.any() and len(rec.positions) >= 4 * 60 * 9
        frac[bounds] = border_fraction(rec.positions, 32)
    assert frac["clip"] > 3 * uniform
    # Redraw keeps the border near its uniform share. (rand/1 donors p1 + F (p2 - p3) that stay in range are
    # denser mid-box than near its edges, so the share is a little below uniform, never piled up.)
    assert 0.4 * uniform < frac["redraw"] < 1.5 * uniform


def test_de_targets_draw_independent_streams():
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    runs = {}
    for target, rep in ((1, 0), (2, 0), (1, 1)):
        rec = Recorder(x).eval()
        OnePixel(rec, population=12, generations=3, targeted=True)(x, torch.zeros(1, dtype=torch.long),
                                                                    torch.tensor([target]))
        runs[target, rep] = rec.positions
    assert torch.equal(runs[1, 0], runs[1, 1])  # same problem, same draws
    assert not torch.equal(runs[1, 0], runs[2, 0])  # another target, other draws
    y = torch.zeros(1, dtype=torch.long)
    assert attack_keys(x, y, torch.tensor([1])) != attack_keys(x, y, torch.tensor([2]))
    assert attack_keys(x, y, torch.tensor([1])) != attack_keys(x, y)


def test_margin_loss_succeeds_where_the_saturated_probability_is_flat(saturated):
    model, x, y = saturated
    scorer = CandidateScorer(model, x, y, None)
    img = torch.arange(8).repeat_interleave(50)
    g = torch.Generator().manual_seed(1)
    cand = (img, torch.randint(0, 32, (400, 1), generator=g), torch.randint(0, 32, (400, 1), generator=g),
            torch.rand(400, 1, 3, generator=g) * 0.7)
    prob, success = scorer.score(*cand)
    margin, _ = scorer.score(*cand, loss="margin")
    assert not success.any() and (prob == 1).all()  # the probability fitness cannot tell candidates apart
    assert len(margin.unique()) > 300  # the margin can
    budget = dict(population=30, generations=20)
    by_prob = OnePixel(model, loss="prob", **budget)(x, y)
    by_margin = OnePixel(model, loss="margin", **budget)(x, y)
    assert by_margin.success.all() and by_margin.success.sum() > by_prob.success.sum()
    assert torch.equal(by_margin.success, verify(model, x, by_margin, 1))


def test_margin_fitness_matches_its_definition(tiny_cnn):
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    y, t = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([5, 6, 7, 8, 9])
    z = tiny_cnn(x).detach()
    img, none = torch.arange(5), torch.zeros(5, 0, dtype=torch.long)
    for targets, own in ((None, y), (t, t)):
        fit, _ = CandidateScorer(tiny_cnn, x, y, targets, loss="margin").score(img, none, none, torch.zeros(5, 0, 3))
        others = z.scatter(1, own[:, None], float("-inf")).max(1).values
        expect = z[img, own] - others if targets is None else others - z[img, own]
        assert torch.allclose(fit, expect)


def test_de_clip_and_redraw_both_stay_in_bounds(tiny_cnn):
    x = torch.rand(2, 3, 8, 8)
    y = tiny_cnn(x).argmax(1)
    for bounds in ("clip", "redraw"):
        res = OnePixel(tiny_cnn, population=8, generations=5, bounds=bounds, f=2.0)(x, y)
        assert ((res.pixels >= 0) & (res.pixels < 8)).all() and ((res.colours >= 0) & (res.colours <= 1)).all()


# -- Sparse-RS -----------------------------------------------------------------------------------------

def test_sparse_rs_flips_the_trigger_within_its_budget(pixel_model, dark_images):
    res = SparseRS(pixel_model, queries=2000)(dark_images, LABELS0)
    assert res.success.all() and (res.queries <= 2000).all()
    assert (res.pixels[:, 0] == torch.tensor([2, 5])).all() and (res.colours[:, 0] == 1).all()
    assert verify(pixel_model, dark_images, res, 1).all()


def test_sparse_rs_respects_its_budget_and_k(tiny_cnn):
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    y = tiny_cnn(x).argmax(1)
    res = SparseRS(tiny_cnn, queries=25, pixels=4)(x, y)
    assert (res.queries <= 25).all() and (res.queries[~res.success] == 25).all()
    flat = res.pixels[..., 0] * 8 + res.pixels[..., 1]
    assert all(len(row.unique()) == 4 for row in flat)  # k distinct positions
    assert (changed_pixels(x, res.adv_images) == 4).all()  # each set to a corner other than its own colour
    assert ((res.colours == 0) | (res.colours == 1)).all()
    assert torch.equal(res.success, verify(tiny_cnn, x, res, 4))


def test_sparse_rs_targeted(pixel_model, dark_images):
    res = SparseRS(pixel_model, queries=2000, targeted=True)(dark_images, LABELS0, torch.ones(6, dtype=torch.long))
    assert res.success.all() and (res.adv_pred == 1).all()
    never = SparseRS(pixel_model, queries=30, targeted=True)(dark_images, LABELS0, torch.full((6,), 7))
    assert not never.success.any() and (never.queries == 30).all()


def test_sparse_rs_stops_each_image_at_its_first_success(pixel_model, dark_images):
    x = dark_images.clone()
    x[:3, :, 2, 5] = 1.0  # already class 1: the first perturbation (elsewhere) succeeds
    res = SparseRS(pixel_model, queries=50)(x, LABELS0)
    assert (res.queries[:3] == 1).all() and res.success[:3].all()
    assert (res.queries[3:] > 1).all()


def test_sparse_rs_finds_the_saturated_blob_by_its_margin(saturated):
    model, x, y = saturated
    res = SparseRS(model, queries=630)(x, y)
    assert res.success.all() and torch.equal(res.success, verify(model, x, res, 1))


def test_sparse_rs_bf16_successes_hold_in_fp32(pixel_model, dark_images):
    res = SparseRS(pixel_model, queries=1500, precision="bf16")(dark_images, LABELS0)
    assert res.success.any() and torch.equal(res.success, verify(pixel_model, dark_images, res, 1))


def test_sparse_rs_schedule_follows_croce_et_al():
    # k = 100, p_init = 0.3, 10,000 queries: 0.3/2 * 100 = 15 pixels at first, 0.3/4 * 100 = 7 after 50
    # queries, 0.3/20 * 100 = 1 in the last fifth (the paper's piecewise halving schedule).
    assert [resample_count(i, 10000, 100, 0.3) for i in (1, 50, 51, 200, 201, 9000)] == [15, 15, 7, 7, 6, 1]
    counts = [resample_count(i, 500, 40, 0.8) for i in range(1, 500)]
    assert all(a >= b for a, b in zip(counts, counts[1:])) and min(counts) >= 1
    assert resample_count(3, 1000, 1, 0.3) == 1  # k = 1 always moves its one pixel


@pytest.mark.parametrize("kwargs", [{"pixels": 0}, {"queries": 0}, {"p_init": 0.0}, {"p_init": 1.5},
                                    {"chunk_size": 0}])
def test_sparse_rs_bad_configs_are_rejected(pixel_model, kwargs):
    with pytest.raises(ValueError):
        SparseRS(pixel_model, **kwargs)


# -- the white-box candidate ranking -------------------------------------------------------------------

def test_gradient_candidate_rank_tries_the_trigger_first(pixel_model, dark_images):
    res = GradientCorner(pixel_model, positions=1, rank="candidate")(dark_images, LABELS0)
    assert res.success.all() and (res.queries == 1).all()  # white at (2, 5) is the best first-order candidate
    assert (res.pixels[:, 0] == torch.tensor([2, 5])).all() and (res.colours[:, 0] == 1).all()
    targeted = GradientCorner(pixel_model, positions=1, rank="candidate", loss="margin", targeted=True)
    res = targeted(dark_images, LABELS0, torch.ones(6, dtype=torch.long))
    assert res.success.all() and (res.queries == 1).all()


def test_gradient_estimate_is_exact_for_a_linear_margin():
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    y = lin(x).argmax(1).detach()
    attack = GradientCorner(lin, rank="candidate", loss="margin")
    est = attack.estimated_change(x, y)  # (2, 16, 8)
    from labkit.attacks.corner import cube_corners

    scorer = CandidateScorer(lin, x, y, None, loss="margin")
    corners = cube_corners(3)
    img = torch.arange(2).repeat_interleave(16 * 8)
    pos = torch.arange(16).repeat_interleave(8).repeat(2)
    after, _ = scorer.score(img, (pos // 4)[:, None], (pos % 4)[:, None], corners[torch.arange(8).repeat(32)][:, None])
    before, _ = scorer.score(torch.arange(2), torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.long),
                             torch.zeros(2, 0, 3))
    assert torch.allclose(est.flatten(), after - before.repeat_interleave(128), atol=1e-5)


def test_gradient_block_does_not_change_the_result(tiny_cnn):
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    y = tiny_cnn(x).argmax(1)
    run = lambda block: GradientCorner(tiny_cnn, positions=6, rank="candidate", block=block)(x, y)  # noqa: E731
    assert_same(run(5), run(64))


def test_gradient_chunks_do_not_change_the_gradient(tiny_cnn, monkeypatch):
    import labkit.attacks.gradient as gradient

    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(10))
    y = tiny_cnn(x).argmax(1)
    attack = GradientCorner(tiny_cnn, rank="candidate", loss="margin")
    whole = attack.input_gradient(x, y)
    monkeypatch.setattr(gradient, "GRADIENT_CHUNK", 2)
    assert torch.allclose(attack.input_gradient(x, y), whole, atol=1e-7)


class _Bf16Liar(PixelTrigger):
    """In bf16 every candidate looks like a success, ranked by pixel (0, 0); fp32 answers as PixelTrigger."""

    def forward(self, x):
        if torch.is_autocast_enabled("cpu"):
            logits = torch.zeros(len(x), 10)
            logits[:, 1] = 50 + 10 * x.float()[:, :, 0, 0].mean(1)
            return logits
        return super().forward(x)


def test_de_bf16_keeps_a_success_that_holds_in_fp32_when_the_fittest_does_not(dark_images):
    # Only the trigger pixel really flips the model; bf16 prefers other pixels. Confirming only the fittest
    # bf16 success of a generation dropped images whose trigger-pixel trials were real successes.
    model, labels = _Bf16Liar().eval(), torch.zeros(len(dark_images), dtype=torch.long)
    res = OnePixel(model, population=40, generations=30, precision="bf16", loss="margin")(dark_images, labels)
    fp32 = OnePixel(model, population=40, generations=30, precision="fp32", loss="margin")(dark_images, labels)
    assert res.success.any() and verify(model, dark_images, res, 1).equal(res.success)
    assert res.precision_used == "bf16" and fp32.precision_used == "fp32"


# -- 224 x 224: memory-aware chunks, and the ImageNet path end to end ----------------------------------------------

def test_candidate_bytes_is_the_image_plus_three_largest_activations():
    # make_tiny_cnn's largest layer output at 32 x 32 is its first conv's, 8 channels at full resolution.
    assert base.candidate_bytes(make_tiny_cnn(), (3, 32, 32)) == 4 * 3 * 32 * 32 + 3 * 4 * 8 * 32 * 32


def test_candidate_bytes_assumes_a_wide_first_stage_for_torchscript_models():
    traced = torch.jit.trace(make_tiny_cnn(), torch.rand(1, 3, 32, 32))  # its layers run without Python hooks
    assert base.candidate_bytes(traced, (3, 32, 32)) == 4 * 3 * 32 * 32 + 3 * 4 * base.FALLBACK_CHANNELS * 32 * 32


def test_chunk_size_fits_the_budget_and_shrinks_as_images_grow():
    model, budget = make_tiny_cnn(), 20 * 2 ** 20
    sizes = (32, 64, 128, 224)
    chunks = [base.candidate_chunk_size(model, (3, s, s), budget_bytes=budget) for s in sizes]
    assert all(a >= b for a, b in zip(chunks, chunks[1:])) and chunks[0] > chunks[-1]
    for s, chunk in zip(sizes, chunks):
        assert chunk * base.candidate_bytes(model, (3, s, s)) <= budget
    assert chunks[0] == base.default_chunk_size(torch.device("cpu"))  # CIFAR-sized: the measured default, as before
    assert base.candidate_chunk_size(model, (3, 224, 224), budget_bytes=1) == 1  # never below one candidate


def test_attacks_at_224_build_candidate_images_chunk_by_chunk(monkeypatch):
    seen = []
    original = base.CandidateScorer.perturbed
    monkeypatch.setattr(base.CandidateScorer, "perturbed",
                        lambda self, img, *a: seen.append(len(img)) or original(self, img, *a))
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    model = make_tiny_cnn()
    labels = model(images).argmax(1)
    OnePixel(model, population=8, generations=2, chunk_size=5)(images, labels)
    CornerSearch(model, max_queries=16, block=8, chunk_size=5)(images, labels)
    # 2 images x 8 candidates per generation or round: never more than a chunk of image copies at once.
    assert seen and max(seen) <= 5 and sum(seen) > 2 * 8 * 3


@pytest.fixture
def imagenet_val(tmp_path, tmp_cache, monkeypatch) -> data.Split:
    monkeypatch.setenv("LABKIT_IMAGENET", str(write_imagenet_folder(tmp_path / "imagenet")))
    return data.load_imagenet()


@pytest.fixture
def random_alexnet() -> nn.Module:
    torch.manual_seed(0)
    return imagenet_model("alexnet", pretrained=False, num_classes=3)


def least_confident(model: nn.Module, images: Tensor, n: int = 2) -> tuple[Tensor, Tensor]:
    """The ``n`` images the model is least sure of (smallest top-2 logit gap) and its own labels for them: a random
    network's labels are its predictions, and a one-pixel change flips it only near a decision boundary."""
    with torch.no_grad():
        top = model(images).topk(2, dim=1)
    idx = (top.values[:, 0] - top.values[:, 1]).argsort()[:n]
    return images[idx], top.indices[idx, 0]


def test_de_on_224_images_does_not_depend_on_the_chunk_size(imagenet_val, random_alexnet):
    x, y = least_confident(random_alexnet, imagenet_val.floats())
    runs = [OnePixel(random_alexnet, population=10, generations=3, chunk_size=c)(x, y) for c in (3, 16, None)]
    for other in runs[1:]:
        for name in ("success", "queries", "pixels", "colours", "adv_pred"):
            assert torch.equal(getattr(runs[0], name), getattr(other, name)), name


def test_imagenet_path_end_to_end_successes_really_flip_the_model(imagenet_val, random_alexnet):
    assert imagenet_val.images.shape[1:] == (3, 224, 224)
    x, y = least_confident(random_alexnet, imagenet_val.floats())
    res = OnePixel(random_alexnet, population=10, generations=3)(x, y)
    assert res.success.any()  # the least confident image of this seed breaks within the budget
    assert torch.equal(verify(random_alexnet, x, res, max_pixels=1), res.success)
    with torch.no_grad():
        pred = random_alexnet(res.adv_images).argmax(1)
    assert torch.equal(pred != y, res.success) and torch.equal(pred, res.adv_pred)
    assert (changed_pixels(x, res.adv_images) <= 1).all()


# -- the survey's pixel swap ---------------------------------------------------------------------------------------

def ramp_images(channels: int = 3) -> Tensor:
    """One 8x8 image whose brightness grows in raster order: pixel i holds i / 63 in every channel.

    The survey's pairs are then (0, 63), (1, 62), ...: the i-th darkest pixel is flat position i.
    """
    return (torch.arange(64.0) / 63).view(1, 1, 8, 8).expand(1, channels, 8, 8).clone()


def linear_model(channels: int, size: int, seed: int = 0, scale: float = 3.0) -> nn.Module:
    """A random linear 10-class model on (N, channels, size, size) whose answer moves with every pixel."""
    torch.manual_seed(seed)
    lin = nn.Linear(channels * size * size, 10)
    with torch.no_grad():
        lin.weight.mul_(scale * size)  # logits of order 10: predictions flip under a few swaps or eps 0.1
    return nn.Sequential(nn.Flatten(), lin).eval()


def colour_multiset(images: Tensor) -> list[list[tuple[float, ...]]]:
    """Each image's pixel colours, sorted: equal exactly when the pixels were only rearranged."""
    return [sorted(map(tuple, img.flatten(1).T.tolist())) for img in images]


@pytest.mark.parametrize("channels, size", [(3, 8), (1, 28)])
@pytest.mark.parametrize("candidates", [1, 4])
def test_pixel_swap_only_swaps_and_really_flips(channels, size, candidates):
    model = linear_model(channels, size)
    x = torch.rand(6, channels, size, size, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    res = PixelSwap(model, swaps=40, candidates=candidates)(x, y)
    assert res.success.any()  # the budget breaks some images, so the checks below see successes
    assert colour_multiset(res.adv_images) == colour_multiset(x)  # swapped, never recoloured
    valid = res.pixels[..., 0] >= 0
    assert ((valid.sum(1) % 2) == 0).all() and (valid.sum(1) <= 80).all()  # whole pairs, within the budget
    assert torch.equal(changed_pixels(x, res.adv_images), valid.sum(1))  # exactly the reported positions changed
    for i in range(6):
        r, c = res.pixels[i, valid[i]].T
        assert torch.equal(res.adv_images[i, :, r, c].T, res.colours[i, valid[i]])  # colours are what was written
    fresh = model(res.adv_images).argmax(1)
    assert torch.equal(res.success, fresh != y) and torch.equal(res.adv_pred, fresh)
    assert torch.equal(verify(model, x, res, res.pixels.shape[1]), res.success)
    assert (res.queries[res.success] <= 40 * candidates).all()


def test_pixel_swap_walks_the_survey_pairs_in_order():
    # The trigger pixel (1, 5) is flat position 13, paired with position 50 (brightness 50/63 > 0.75):
    # the plain walk swaps pairs 0..13 and flips the model with its 14th query.
    model, x = PixelTrigger(row=1, col=5).eval(), ramp_images()
    res = PixelSwap(model)(x, LABELS0[:1])
    assert res.success.item() and res.queries.item() == 14
    flat = res.pixels[0, :, 0] * 8 + res.pixels[0, :, 1]
    assert flat.tolist() == [p for i in range(14) for p in (i, 63 - i)]  # darker first, then its partner
    assert torch.equal(res.colours[0, 0], x[0, :, 7, 7]) and torch.equal(res.colours[0, 1], x[0, :, 0, 0])


def test_pixel_swap_greedy_tries_candidates_and_counts_every_query():
    # Four candidates per step: until pair 13 is among them every candidate scores alike, so the first is
    # taken (pairs 0..9 in ten steps, 40 queries); step 11 tries pairs 10..13 and succeeds on its 4th query.
    model, x = PixelTrigger(row=1, col=5).eval(), ramp_images()
    res = PixelSwap(model, candidates=4)(x, LABELS0[:1])
    assert res.success.item() and res.queries.item() == 44
    flat = res.pixels[0, :, 0] * 8 + res.pixels[0, :, 1]
    assert flat.tolist() == [p for i in [*range(10), 13] for p in (i, 63 - i)]
    # With every pair among the first step's candidates, one swap (the right one) is enough.
    one = PixelSwap(model, candidates=32)(x, LABELS0[:1])
    assert one.queries.item() == 14 and (one.pixels[0, :, 0] >= 0).sum() == 2


def test_pixel_swap_skips_pairs_that_would_change_nothing_and_respects_its_budget():
    model = linear_model(1, 8)
    digit = torch.zeros(2, 1, 8, 8)
    digit[0, 0, 3, 1:7] = 1.0  # a six-pixel white stroke on black: six pairs can change anything
    y = model(digit).argmax(1)
    res = PixelSwap(model)(digit, y)
    assert res.queries[0] <= 6 and res.queries[1] == 0  # a flat image has no pair worth a query
    assert not res.success[1] and (res.pixels[1] == -1).all() and torch.equal(res.adv_images[1], digit[1])
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    never = PixelSwap(Recorder(x).eval(), swaps=5)(x, torch.zeros(3, dtype=torch.long))
    assert not never.success.any() and (never.queries == 5).all()


def test_pixel_swap_returns_the_fittest_prefix_of_a_failed_walk():
    # Class 0 always wins; the true-class probability is lowest when the trigger pixel (position 13) is brightest,
    # i.e. right after the 14th swap; later swaps do not touch it, so that prefix stays the fittest (ties keep it).
    class Dip(PixelTrigger):
        def forward(self, x):
            logits = super().forward(x)
            logits[:, 0] = 16.0  # never flips (the trigger's logit peaks at 15), never saturates
            return logits

    model, x = Dip(row=1, col=5).eval(), ramp_images()
    res = PixelSwap(model, swaps=20)(x, LABELS0[:1])
    assert not res.success.item() and res.queries.item() == 20
    assert (res.pixels[0, :, 0] >= 0).sum() == 2 * 14
    assert res.true_prob.item() == pytest.approx(torch.softmax(model(res.adv_images), 1)[0, 0].item())


def test_pixel_swap_targeted_and_bad_configs(pixel_model):
    model, x = PixelTrigger(row=1, col=5).eval(), ramp_images()
    res = PixelSwap(model, targeted=True)(x, LABELS0[:1], torch.ones(1, dtype=torch.long))
    assert res.success.item() and res.adv_pred.item() == 1
    never = PixelSwap(model, targeted=True)(x, LABELS0[:1], torch.full((1,), 7))
    assert not never.success.item() and never.queries.item() == 32
    for kwargs in ({"swaps": 0}, {"candidates": 0}, {"loss": "ce"}, {"chunk_size": 0}):
        with pytest.raises(ValueError):
            PixelSwap(pixel_model, **kwargs)


# -- torchattacks under the contract (labkit.attacks.wrapped) ------------------------------------------------------

#: Per wrapped attack, a small budget on ``linear_model`` images (6 images: FGSM-like attacks break most).
WRAPPED_BUDGET = {
    "FGSM": dict(eps=0.05),
    "PGD": dict(eps=0.05, alpha=0.02, steps=4),
    "MIFGSM": dict(eps=0.05, alpha=0.02, steps=4),
    "DeepFool": dict(steps=10),
    "CW": dict(c=10.0, lr=0.05, steps=20),
    "Pixle": dict(restarts=5, max_iterations=5),
}


def wrapped_queries_are_as_documented(name: str, queries: Tensor, budget: dict) -> bool:
    """Forward plus backward passes per image, as each wrapper's docstring says they are counted."""
    if name == "FGSM":
        return bool((queries == 2).all())
    if name in ("PGD", "MIFGSM"):
        return bool((queries == 2 * budget["steps"]).all())
    if name == "CW":  # two per Adam step run; the early stop is the batch's
        return bool((queries == queries[0]).all() and queries[0] % 2 == 0 and queries[0] <= 2 * budget["steps"])
    if name == "DeepFool":  # per step 1 forward + 10 backward (one per class), +1 forward that sees the flip
        return bool(((queries % 11) <= 1).all() and (queries <= 11 * budget["steps"]).all())
    # Pixle: one forward on the clean image, then two per patch tried
    return bool((queries % 2 == 1).all() and (queries <= 1 + 2 * budget["restarts"] * budget["max_iterations"]).all())


@pytest.mark.parametrize("channels, size", [(3, 8), (1, 12)])
@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_wrapped_attacks_report_what_the_model_says(name, channels, size):
    model = linear_model(channels, size)
    x = torch.rand(6, channels, size, size, generator=torch.Generator().manual_seed(12))
    y = model(x).argmax(1)
    res = torch_attack(model, name, **WRAPPED_BUDGET[name])(x, y)
    assert not model.training  # torchattacks puts its model back in the mode it found it in
    k = res.pixels.shape[1]
    assert res.adv_images.shape == x.shape and res.pixels.shape == (6, k, 2) and res.colours.shape == (6, k, channels)
    assert res.success.dtype == torch.bool and res.queries.dtype == torch.int64
    assert res.adv_images.isfinite().all() and res.adv_images.min() >= 0 and res.adv_images.max() <= 1
    fresh = model(res.adv_images).argmax(1)
    assert torch.equal(res.success, fresh != y) and torch.equal(res.adv_pred, fresh)  # the model's verdict
    assert res.success.any()  # the budget breaks images, so the success path is exercised
    assert torch.equal(verify(model, x, res, size * size), res.success)
    # pixels/colours list every change: a record rebuilds the images from them, and L0 is their count.
    assert torch.equal(apply_pixels(x.clone(), res.pixels[..., 0], res.pixels[..., 1], res.colours), res.adv_images)
    assert torch.equal(changed_pixels(x, res.adv_images), (res.pixels[..., 0] >= 0).sum(1))
    assert wrapped_queries_are_as_documented(name, res.queries, WRAPPED_BUDGET[name]), res.queries


def test_wrapped_targeted_attacks_reach_their_target():
    model = linear_model(3, 8)
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(13))
    y = model(x).argmax(1)
    t = (y + 1) % 10
    for attack in (MIFGSM(model, eps=0.1, alpha=0.02, steps=10, targeted=True), CW(model, c=10.0, lr=0.05,
                                                                                   steps=30, targeted=True)):
        res = attack(x, y, t)
        fresh = model(res.adv_images).argmax(1)
        assert res.success.any() and torch.equal(res.success, fresh == t)
        assert torch.equal(res.targets, t) and torch.equal(verify(model, x, res, 64), res.success)
    with pytest.raises(ValueError, match="targeted"):
        DeepFool(model, targeted=True)(x, y, t)


def test_wrapped_random_draws_are_seeded_and_leave_the_global_generators_alone():
    import numpy as np

    model = linear_model(3, 8)
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(14))
    y = model(x).argmax(1)
    torch.manual_seed(123)
    np.random.seed(123)
    expect_torch, expect_np = torch.rand(1), np.random.rand()
    torch.manual_seed(123)
    np.random.seed(123)
    pgd = lambda seed: PGD(model, eps=0.05, alpha=0.01, steps=2, seed=seed)(x, y)  # noqa: E731
    pixle = lambda seed: Pixle(model, restarts=2, max_iterations=3, seed=seed)(x, y)  # noqa: E731
    assert torch.equal(pgd(0).adv_images, pgd(0).adv_images) and not torch.equal(pgd(0).adv_images, pgd(1).adv_images)
    assert torch.equal(pixle(0).adv_images, pixle(0).adv_images)
    assert not torch.equal(pixle(0).adv_images, pixle(1).adv_images)
    assert torch.rand(1) == expect_torch and np.random.rand() == expect_np  # callers' streams untouched


def test_deepfool_returning_a_tuple_is_unpacked(monkeypatch):
    torchattacks = pytest.importorskip("torchattacks")
    model = linear_model(1, 8)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(15))
    y = model(x).argmax(1)
    plain = DeepFool(model, steps=5)(x, y)
    # Other torchattacks versions return (images, target labels) from DeepFool's forward.
    monkeypatch.setattr(torchattacks.DeepFool, "forward", torchattacks.DeepFool.forward_return_target_labels)
    assert_same(DeepFool(model, steps=5)(x, y), plain)


def test_mifgsm_leaves_pixels_clean_where_a_saturated_softmax_gives_no_gradient(saturated):
    # torchattacks' MI-FGSM divides by the mean |gradient|: 0 / 0 on a saturated softmax.
    model, x, y = saturated
    res = MIFGSM(model, eps=0.1, steps=2)(x[:2], y[:2])
    assert res.adv_images.isfinite().all() and torch.equal(res.adv_images, x[:2]) and not res.success.any()
    assert res.pixels.shape[1] == 0


def test_torch_attack_names_the_wrappers(pixel_model):
    assert isinstance(torch_attack(pixel_model, "CW", steps=3), CW) and set(WRAPPED) == {
        "FGSM", "PGD", "MIFGSM", "DeepFool", "CW", "Pixle"}
    with pytest.raises(ValueError, match="MIFGSM"):
        torch_attack(pixel_model, "mifgsm")
    with pytest.raises(ValueError, match="square"):
        Pixle(pixel_model)(torch.rand(1, 3, 8, 6), LABELS0[:1])


def test_cw_moves_a_model_whose_logits_are_all_negative() -> None:
    # torchattacks 3.5.1 reads negative logits as 0 in CW's margin (its issue #184): on log-softmax outputs the
    # plain attack never moves. Shifted per image, log-softmax and raw logits give the same attack.
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    labels = linear(x).argmax(1)
    log_probs = nn.Sequential(linear, nn.LogSoftmax(dim=1)).eval()
    a = CW(log_probs, steps=50, c=5.0)(x, labels)
    b = CW(linear, steps=50, c=5.0)(x, labels)
    assert a.success.float().mean() >= 0.5
    assert torch.allclose(a.adv_images, b.adv_images, atol=1e-4) and torch.equal(a.success, b.success)
    assert torch.equal(linear(a.adv_images).argmax(1) != labels, a.success)


# -- verification and perturbation size (labkit.attacks.audit) ------------------------------------------------

def test_verify_rejects_forged_successes(pixel_model, dark_images):
    res = CornerSearch(pixel_model)(dark_images, LABELS0)
    assert verify(pixel_model, dark_images, res, 1).all()
    forged = res.select(slice(None))
    forged.adv_images = forged.adv_images.clone()
    forged.adv_images[0, :, 0, 0] = 0.9  # a second changed pixel
    forged.adv_images[1] = dark_images[1]  # the model is no longer fooled
    forged.adv_images[2, 0, 0, 1] = 1.5  # outside [0, 1]
    ok = verify(pixel_model, dark_images, forged, 1)
    assert ok.tolist() == [False, False, False, True, True, True]


def test_perturbation_norms_by_hand():
    clean = torch.zeros(2, 3, 4, 4)
    adv = clean.clone()
    adv[0, 0, 1, 2] = 0.5  # one channel of one pixel
    adv[0, :, 3, 3] = 0.1  # every channel of another
    norms = perturbation_norms(clean, adv)
    assert norms["L0"].tolist() == [2, 0] and norms["L0"].dtype == torch.int64
    assert norms["L2"].tolist() == pytest.approx([(0.25 + 3 * 0.01) ** 0.5, 0.0])
    assert norms["Linf"].tolist() == pytest.approx([0.5, 0.0])
    with pytest.raises(ValueError):
        perturbation_norms(clean, adv[:1])


def test_perturbation_norms_see_each_attack_s_threat_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 10)).eval()
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    dense = perturbation_norms(x, FGSM(model, eps=0.03)(x, y).adv_images)
    assert (dense["Linf"] <= 0.03 + 1e-6).all() and (dense["L0"] > 8).all()  # small everywhere
    res = PixelSwap(model, swaps=2)(x, y)
    swap = perturbation_norms(x, res.adv_images)
    assert torch.equal(swap["L0"], (res.pixels[..., 0] >= 0).sum(1)) and (swap["L0"] <= 4).all()  # few pixels
