"""labkit.labs.attention_maps (Lab 08): the explorer's images, the static figures of an attacked model, and the claim's
test and verdicts on synthetic data with a known answer."""

from __future__ import annotations

import torch

from labkit import attention
from labkit.data import CLASSES, Split
from labkit.labs import attention_maps
from tests.test_attention import brightness_gated, dark_spot_images, fake_result, images, rendered


def test_explorer_indices_put_the_attacked_first() -> None:
    split = Split(torch.zeros(50, 3, 4, 4, dtype=torch.uint8), torch.arange(50) % 10, CLASSES, "test")
    attacked = torch.tensor([7, 3, 11])
    idx = attention_maps.explorer_indices(attacked, split, extra=5)
    assert torch.equal(idx[:3], attacked) and len(idx) == 8 and len(set(idx.tolist())) == 8
    few = attention_maps.explorer_indices(attacked, split, extra=5, shown=2)  # the rest of the attacked are not extras
    assert few[:2].tolist() == [7, 3] and len(few) == 7 and 11 not in few.tolist()


def test_static_figures_of_an_attacked_model() -> None:
    model = brightness_gated(3)
    x = images(4, 8)
    res = fake_result(x, torch.tensor([[1, 2]] * 4), torch.tensor([False, True, True, False]))
    verified = {"DE k=1": torch.tensor([False, False, True, False])}
    m = attention.AttackedModel("full (tiny)", "full", "tiny", model, "key", torch.arange(10, 14), x,
                                torch.zeros(4, dtype=torch.long), [{"defence": "full"}], {"DE k=1": res}, verified)
    assert attention_maps.first_success(m, "DE k=1") == 2  # the first *verified* success
    fig = attention_maps.panel_figure(m, "DE k=1")
    assert rendered(fig) and "test image 12" in fig._suptitle.get_text() and "success" in fig._suptitle.get_text()
    assert rendered(attention_maps.panel_figure(m, None, i=1)) and len(attention_maps.panel_figure(m, None).axes) == 5
    assert rendered(attention_maps.change_figure(m, "DE k=1", i=0))


# -- the claim, on synthetic data with a known answer ----------------------------------------------------------------

def test_claim_supported_when_attacks_hit_low_attention() -> None:
    model = brightness_gated()
    x, spots = dark_spot_images()
    far = (spots + 4) % 8  # another pixel, bright: high attention
    success = torch.arange(len(x)) % 3 != 0
    pix = torch.where(success[:, None], spots, far)  # successes at the dark spot, failures elsewhere
    results = {"DE k=1": fake_result(x, pix, success)}
    pa = attention.pixel_attention(model, x, results, random_per_image=10, seed=0)
    assert set(pa.groups) == {"DE k=1 success", "DE k=1 failure", "random"}
    assert len(pa.groups["DE k=1 success"]) == int(success.sum()) and len(pa.groups["random"]) == 10 * len(x)
    assert torch.allclose(pa.groups["DE k=1 success"].percentile, torch.zeros(1))  # the lowest pixel of each map
    table = attention_maps.claim_table({"full": pa}, permutations=2000, resamples=500)
    assert [r["reference"] for r in table] == ["random pixels", "failed attacks"]
    assert all(r["difference"] < 0 and r["p_holm"] < 0.01 and r["ci_hi"] < 0 for r in table)
    verdict = attention_maps.claim_verdict(table)
    assert "Overall: SUPPORTED: 'attacks succeed where attention is low'" in verdict
    assert verdict.count("SUPPORTED (DIRECTION): [full, DE k=1]") == 2 and "paired design" in verdict
    raw = attention_maps.claim_table({"full": pa}, measure="value", statistic="median", permutations=500, resamples=200)
    assert raw[0]["difference"] < 0 and raw[0]["p_holm"] < 0.01
    kept = attention.PixelAttention.from_arrays(pa.arrays())  # what a lab's record keeps (no maps)
    assert kept.maps is None and kept.summary() == pa.summary()
    assert attention_maps.claim_table({"full": kept}, permutations=2000, resamples=500) == table


def test_claim_not_supported_when_attack_pixels_are_random() -> None:
    model = brightness_gated()
    x, _ = dark_spot_images()
    pix = attention.random_pixels(len(x), 8, 8, per_image=1, seed=123)[:, 0]
    success = torch.arange(len(x)) % 2 == 0
    pa = attention.pixel_attention(model, x, {"corner": fake_result(x, pix, success)}, random_per_image=10)
    table = attention_maps.claim_table({"full": pa}, permutations=2000, resamples=500)
    assert all(r["p_holm"] > 0.05 for r in table)
    verdict = attention_maps.claim_verdict(table)
    assert "Overall: SUPPORTED" not in verdict and "SUPPORTED: [" not in verdict


def test_claim_verdict_with_too_few_successes_and_the_opposite() -> None:
    model = brightness_gated()
    x, spots = dark_spot_images(20)
    none = torch.zeros(len(x), dtype=torch.bool)
    pa = attention.pixel_attention(model, x, {"DE k=1": fake_result(x, spots, none)})
    verdict = attention_maps.claim_verdict(attention_maps.claim_table({"m": pa}, permutations=100, resamples=100))
    assert "cannot be tested" in verdict
    bright = x.mean(1).flatten(1).argmax(1)  # each image's brightest pixel: its highest attention
    top = torch.stack([bright // 8, bright % 8], 1)
    pa = attention.pixel_attention(model, x, {"DE k=1": fake_result(x, top, ~none)})
    verdict = attention_maps.claim_verdict(attention_maps.claim_table({"m": pa}, permutations=500, resamples=100))
    assert "Overall: CONTRADICTED" in verdict and "opposite side" in verdict
