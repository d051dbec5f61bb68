"""Evaluation: confidence intervals, independent verification, the resumable attack cache."""

from __future__ import annotations

import pytest
import torch

from labkit import evaluate, papers
from labkit.attacks import CornerSearch, OnePixel
from labkit.evaluate import run_attack, summarize, verify

from conftest import result_row as row

LABELS0 = torch.zeros(6, dtype=torch.long)


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


class Counting:
    """Wraps an attack, counting the images it is asked to attack; can fail after some calls."""

    def __init__(self, attack, fail_after=None):
        self.attack, self.config, self.seen, self.calls, self.fail_after = attack, attack.config, 0, 0, fail_after

    def __call__(self, images, labels, targets=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.seen += len(images)
        return self.attack(images, labels, targets)


def test_run_attack_caches_and_resumes(tiny_cnn, tmp_cache):
    x = torch.rand(7, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = tiny_cnn(x).argmax(1)
    idx = torch.arange(7)
    make = lambda: OnePixel(tiny_cnn, population=8, generations=3)  # noqa: E731
    interrupted = Counting(make(), fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_attack(interrupted, x, y, model_key="m", indices=idx, chunk_images=3, progress=False)
    resumed = Counting(make())
    res = run_attack(resumed, x, y, model_key="m", indices=idx, chunk_images=3, progress=False)
    assert resumed.seen == 1  # six images were already on disk
    whole = make()(x, y)
    for name, t in whole.to_dict().items():
        assert torch.equal(t, res.to_dict()[name]), name
    again = Counting(make())
    run_attack(again, x, y, model_key="m", indices=idx, progress=False)
    assert again.seen == 0  # a full hit
    other = Counting(make())
    run_attack(other, x, y, model_key="other-model", indices=idx, progress=False)
    assert other.seen == 7  # another model, another key


def test_summarize_counts_only_verified(pixel_model, dark_images):
    res = CornerSearch(pixel_model)(dark_images, LABELS0)
    ok = verify(pixel_model, dark_images, res, 1)
    ok[0] = False
    row = summarize(res, ok, 0.8, model="m")
    assert row["asr"] == pytest.approx(5 / 6) and row["unverified"] == 1
    assert row["robust_acc"] == pytest.approx(0.8 / 6) and row["asr_lo"] < row["asr"] < row["asr_hi"]
    assert evaluate.success_at_budgets(res, [0, 10 ** 6]) == [0.0, 1.0]


def test_time_inference_measures_each_model(tiny_cnn, pixel_model):
    t = evaluate.time_inference({"a": tiny_cnn, "b": pixel_model}, torch.rand(8, 3, 8, 8), repeats=2, warmup=1)
    assert set(t) == {"a", "b"} and all(v > 0 for v in t.values())


def test_protocol_on_a_tiny_folder(tiny_folder, pixel_model):
    from dataclasses import replace

    from labkit.data import load_cifar10
    from labkit.profiles import PROFILES

    test = load_cifar10("test")
    idx = evaluate.common_correct([pixel_model], test, 4)
    exhaustive = replace(PROFILES["smoke"], corner_queries=None)
    ev = evaluate.evaluate_model(pixel_model, "pixel", test, idx, exhaustive, progress=False, model="p")
    assert [r["attack"] for r in ev.rows] == ["DE k=1", "corner"]
    assert ev.rows[1]["asr"] == 1.0  # the trigger pixel exists in every image
    assert all(r["model"] == "p" and r["attacked"] == 4 for r in ev.rows)


@pytest.mark.parametrize("n", [1, 3, 12, 40])
def test_common_correct_is_the_first_n_all_models_get_right(n):
    from labkit.data import Split, first_n, predict

    from conftest import make_tiny_cnn

    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(400, 3, 8, 8, generator=gen) * 255).to(torch.uint8)
    model = make_tiny_cnn(seed=0)
    models = [model, torch.nn.Sequential(model).eval()]
    labels = predict(model, images)
    wrong = torch.rand(400, generator=gen) < 0.5
    labels[wrong] = (labels[wrong] + 1) % 10  # half the images misclassified
    split = Split(images, labels, tuple("abcdefghij"), "test")
    order = first_n(split, 400)
    ok = torch.stack([predict(m, images[order]) == labels[order] for m in models]).all(0)
    assert torch.equal(evaluate.common_correct(models, split, n), order[ok][:n])  # brute force agrees
    with pytest.raises(ValueError, match="only"):
        evaluate.common_correct(models, split, int(ok.sum()) + 1)


def test_device_name_says_what_ran_the_timings():
    assert "CPU" in evaluate.device_name("cpu")


# -- suites (Labs 03-07) ---------------------------------------------------------------------------
