"""The attacks: they must really flip the model, respect budgets, and be batch-independent."""

from __future__ import annotations

import pytest
import torch

from labkit.attacks import (AttackResult, CornerSearch, DEConfig, GradientCorner, OnePixel, apply_pixels,
                            minimize)
from labkit.attacks._rng import HashRNG, image_keys
from labkit.attacks.onepixel import _three_distinct_others
from labkit.evaluate import changed_pixels, verify

LABELS0 = torch.zeros(6, dtype=torch.long)


def assert_same(a: AttackResult, b: AttackResult) -> None:
    for name, t in a.to_dict().items():
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
