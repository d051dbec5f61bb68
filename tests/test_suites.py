"""The adaptive suite: every attack against the whole pipeline, the per-image worst case, what broke what."""

from __future__ import annotations

import pytest
import torch

from labkit import evaluate, suites
from labkit.attacks import CornerSearch, verify
from labkit.evaluate import summarize

from conftest import result_row as row


def test_rows_keep_the_attacked_images_and_the_worst_case_too(pixel_model, dark_images):
    labels = torch.zeros(len(dark_images), dtype=torch.long)
    res = CornerSearch(pixel_model)(dark_images, labels)
    ids = torch.tensor([7, 3, 9, 1, 4, 8])
    rows = [summarize(res, verify(pixel_model, dark_images, res, max_pixels=1), 1.0, image_ids=ids, model="p",
                      attack=a, targeted=False) for a in ("corner", "again")]
    assert rows[0]["image_ids"] == (7, 3, 9, 1, 4, 8) and len(rows[0]["outcomes"]) == 6
    worst = suites.worst_case(rows)
    assert worst["image_ids"] == rows[0]["image_ids"] and worst["model"] == "p"
    assert "image_ids" not in summarize(res, res.success, 1.0, model="p")  # only when given


# -- suites (Labs 03-07) ---------------------------------------------------------------------------

def _suite_profile(**fields):
    from dataclasses import replace

    from labkit.profiles import PROFILES

    return replace(PROFILES["smoke"], **fields)


def _attacked(model, n=6):
    """A test split of mid-grey 8x8 images the PixelTrigger model classifies as 0, and the attacked indices.

    Mid-grey keeps the trigger class the runner-up, so the margin's input gradient points at the trigger pixel.
    """
    from labkit.data import CLASSES, Split

    images = (77 + torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 76).to(torch.uint8)
    test = Split(images, torch.zeros(n, dtype=torch.long), CLASSES, "test")
    return test, evaluate.common_correct([model], test, n)


def test_suite_worst_case_is_the_or_of_the_verified_outcomes(tmp_cache, pixel_model):
    # Budgets so small that the attacks disagree: the worst case must take each image from whichever broke it.
    p = _suite_profile(population=4, generations=1, strong_scale=1, corner_queries=16, wb_positions=1,
                       rs_queries=16)
    test, idx = _attacked(pixel_model)
    ev = suites.adaptive_suite(pixel_model, "pixel", test, idx, p, progress=False, model="p")
    assert [r["attack"] for r in ev.rows] == [*suites.SUITE, suites.WORST_CASE]
    assert list(ev.results) == list(suites.SUITE)
    images = test.floats(idx)
    ok = {name: verify(pixel_model, images, res, 1) for name, res in ev.results.items()}
    for r in ev.rows:
        assert len(r["outcomes"]) == len(idx) and r["model"] == "p" and r["attacked"] == len(idx)
        if r["attack"] != suites.WORST_CASE:
            assert r["outcomes"] == tuple(ok[r["attack"]].int().tolist())
    either = torch.stack(list(ok.values())).any(0)
    worst = ev.rows[-1]
    assert worst["outcomes"] == tuple(either.int().tolist()) and worst["asr"] == either.float().mean().item()
    assert 0 < sum(r["asr"] < worst["asr"] for r in ev.rows[:-1])  # some attack missed what another found
    assert worst["asr_lo"] <= worst["asr"] and worst["unverified"] == 0


def test_suite_breaks_the_pixel_trigger(tmp_cache, pixel_model):
    test, idx = _attacked(pixel_model)
    ev = suites.adaptive_suite(pixel_model, "pixel", test, idx, _suite_profile(corner_queries=None),
                                 progress=False)
    by = {r["attack"]: r for r in ev.rows}
    assert by[suites.WORST_CASE]["asr"] == 1.0
    assert by["corner"]["asr"] == 1.0  # exhaustive: the trigger pixel exists in every image
    assert by["white-box corner"]["asr"] == 1.0  # only the trigger pixel has a gradient
    assert all(r["unverified"] == 0 for r in ev.rows)


def test_gradient_masking_only_fools_the_white_box_attack(tmp_cache, pixel_model):
    from labkit.defences import GradientMasking

    test, idx = _attacked(pixel_model)
    p = _suite_profile(corner_queries=None, wb_positions=2)
    torch.manual_seed(0)  # the masking noise draws from torch's global generator
    masked = suites.adaptive_suite(GradientMasking(pixel_model, 1e3), "masked", test, idx, p, progress=False)
    plain = suites.adaptive_suite(pixel_model, "pixel", test, idx, p, progress=False)
    m, b = ({r["attack"]: r for r in ev.rows} for ev in (masked, plain))
    assert m["white-box corner"]["asr"] < b["white-box corner"]["asr"] == 1.0  # the gradient points nowhere
    for name in suites.SUITE:
        if name not in suites.WHITE_BOX:  # the outputs are the model's: black-box attacks see no change
            assert m[name]["outcomes"] == b[name]["outcomes"]
    assert m[suites.WORST_CASE]["asr"] == 1.0  # ... and they still break it
    table = {r["attack"]: r for r in suites.broke_what(masked)}
    assert table["white-box corner"]["missed"] == len(idx) - table["white-box corner"]["broken"] > 0


def test_broke_what_counts_only_and_missed_per_model():
    rows = [row("A", "x", 0.5, n=4, outcomes=(1, 1, 0, 0), mean_queries=10.0),
            row("A", "y", 0.5, n=4, outcomes=(0, 1, 1, 0), mean_queries=5.0),
            row("A", suites.WORST_CASE, 0.75, n=4, outcomes=(1, 1, 1, 0)),
            row("B", "x", 0.0, n=4, outcomes=(0, 0, 0, 0)), row("B", "y", 0.25, n=4, outcomes=(0, 0, 0, 1))]
    table = suites.broke_what(rows)
    got = {(r["defence"], r["attack"]): (r["broken"], r["only"], r["missed"]) for r in table}
    assert got == {("A", "x"): (2, 1, 1), ("A", "y"): (2, 1, 1), ("B", "x"): (0, 0, 1), ("B", "y"): (1, 1, 0)}
    assert all(r["images"] == 4 for r in table)
    worst = suites.worst_case([r for r in rows if r["defence"] == "A" and r["attack"] != suites.WORST_CASE])
    assert worst["outcomes"] == (1, 1, 1, 0) and worst["asr"] == 0.75 and worst["defence"] == "A"
    assert worst["mean_queries"] == 15.0  # what the suite spent per image
    with pytest.raises(ValueError):
        suites.worst_case([rows[0], row("A", "z", 0.5, n=3, outcomes=(1, 0, 1))])  # not the same images


def test_query_curves_and_benchmark_follow_the_verified_outcomes(tmp_cache, pixel_model):
    test, idx = _attacked(pixel_model)
    ev = suites.adaptive_suite(pixel_model, "pixel", test, idx, _suite_profile(corner_queries=None),
                                 progress=False)
    curves = suites.query_curves(ev)
    by = {r["attack"]: r for r in ev.rows}
    assert set(curves) == set(suites.SUITE)
    for name, (budgets, rates) in curves.items():
        assert budgets == sorted(budgets) and rates == sorted(rates)  # more queries never break fewer images
        assert rates[-1] == pytest.approx(by[name]["asr"])  # the last budget covers every query count
    bench = {r["attack"]: r for r in suites.benchmark_table(ev)}
    assert bench["corner"]["queries_to_corner_asr"] == int(ev.results["corner"].queries.max())
    wb = bench["white-box corner"]["queries_to_corner_asr"]  # it reaches 100% within its own budget
    assert wb is not None and wb <= 8 * 8 and evaluate.success_at_budgets(ev.results["white-box corner"], [wb]) == [1.0]


@pytest.mark.parametrize("sweep,attacks", [("adaptive", [*suites.SUITE, suites.WORST_CASE]),
                                           ("protocol", ["DE k=1", "corner"]), ("de", ["DE k=1"])])
def test_sweep_attack_runs_what_the_profile_says(tmp_cache, pixel_model, sweep, attacks):
    p = _suite_profile(population=4, generations=1, strong_scale=1, corner_queries=16, wb_positions=1,
                       rs_queries=16, sweep_suite=sweep)
    test, idx = _attacked(pixel_model, n=3)
    ev = suites.sweep_attack(pixel_model, "pixel", test, idx, p, progress=False, model="p")
    assert [r["attack"] for r in ev.rows] == attacks
    full = suites.sweep_attack(pixel_model, "pixel", test, idx, p, full=True, progress=False, model="p")
    assert [r["attack"] for r in full.rows] == [*suites.SUITE, suites.WORST_CASE]
    # The shared attack is the same cached run either way: its outcomes agree image by image.
    assert ev.rows[0]["outcomes"] == full.rows[0]["outcomes"]
