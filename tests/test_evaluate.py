"""Evaluation: confidence intervals, verified rows, the resumable attack cache."""

from __future__ import annotations

import pytest
import torch

from labkit import evaluate
from labkit.attacks import CornerSearch, OnePixel
from labkit.attacks import verify
from labkit.evaluate import run_attack, summarize

LABELS0 = torch.zeros(6, dtype=torch.long)


class Counting:
    """Wraps an attack, counting the images it is asked to attack; can fail after some calls.

    ``fail_after``: calls that succeed before one fails at its start; ``die_on``: the call that attacks its
    chunk and then dies before returning it (as a kill in the middle of a chunk would).
    """

    def __init__(self, attack, fail_after=None, die_on=None):
        self.attack, self.config, self.seen, self.calls, self.fail_after = attack, attack.config, 0, 0, fail_after
        self.die_on = die_on

    def __call__(self, images, labels, targets=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.seen += len(images)
        out = self.attack(images, labels, targets)
        if self.calls == self.die_on:
            raise KeyboardInterrupt
        return out


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


def test_run_attack_joins_chunks_that_changed_different_numbers_of_pixels(tmp_cache):
    from labkit.attacks import PixelSwap

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 10)).eval()
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    attack = PixelSwap(model, swaps=6)
    assert len({attack(x[i:i + 2], y[i:i + 2]).pixels.shape[1] for i in (0, 2, 4)}) > 1  # the chunks' k differ
    res = run_attack(attack, x, y, model_key="m", indices=torch.arange(6), chunk_images=2, progress=False)
    whole = attack(x, y)  # k is the widest chunk's; narrower chunks were padded with -1 slots
    assert res.pixels.shape == whole.pixels.shape
    for name in ("adv_images", "pixels", "colours", "queries", "success"):
        assert torch.equal(getattr(res, name), getattr(whole, name)), name


def test_run_attack_interrupted_mid_chunk_loses_only_that_chunk(tiny_cnn, tmp_cache):
    from labkit.cache import load_checked

    x = torch.rand(7, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    y, idx = tiny_cnn(x).argmax(1), torch.arange(10, 17)
    make = lambda: OnePixel(tiny_cnn, population=8, generations=3)  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        run_attack(Counting(make(), die_on=3), x, y, model_key="m", indices=idx, chunk_images=3,
                   progress=False)
    (record,) = (tmp_cache / "attacks").glob("*.pt")
    saved = load_checked(record)
    assert saved["done"] == 6 and len(saved["result"]["success"]) == 6  # the two finished chunks, per image
    resumed = Counting(make())  # another chunk size: the record does not depend on it
    res = run_attack(resumed, x, y, model_key="m", indices=idx, chunk_images=2, progress=False)
    assert resumed.seen == 1  # only the chunk in progress was lost
    whole = run_attack(make(), x, y, model_key="fresh", indices=idx, chunk_images=50, progress=False)
    for name, t in whole.to_dict().items():
        assert torch.equal(t, res.to_dict()[name]), name


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


def test_still_correct_keeps_the_order_and_drops_only_the_misclassified():
    from labkit.data import Split, predict

    from conftest import make_tiny_cnn

    gen = torch.Generator().manual_seed(1)
    images = (torch.rand(60, 3, 8, 8, generator=gen) * 255).to(torch.uint8)
    model = make_tiny_cnn(seed=1)
    labels = predict(model, images)
    labels[::3] = (labels[::3] + 1) % 10  # every third image misclassified
    split = Split(images, labels, tuple("abcdefghij"), "test")
    indices = torch.randperm(60, generator=gen)[:25]
    kept = evaluate.still_correct(model, split, indices)
    assert kept.tolist() == [int(i) for i in indices if i % 3]
    assert torch.equal(evaluate.still_correct(model, split, kept), kept)


def test_run_certify_caches_and_resumes(tmp_cache):
    from labkit.certify import CertifyConfig, certify
    from labkit.evaluate import run_certify

    model = PixelTrigger_like()
    x = torch.rand(5, 3, 6, 6, generator=torch.Generator().manual_seed(0)) * 0.4
    y = torch.zeros(5, dtype=torch.long)
    cfg = CertifyConfig(max_seconds=30.0)
    first = run_certify(model, x, y, model_key="m", indices=torch.arange(5), config=cfg, chunk_images=2,
                        progress=False)
    whole = certify(model, x, y, cfg)
    assert torch.equal(first.status, whole.status) and torch.equal(first.position_status, whole.position_status)
    calls = []
    import labkit.certify as certify_module

    original = certify_module.certify
    certify_module.certify = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        again = run_certify(model, x, y, model_key="m", indices=torch.arange(5), config=cfg, progress=False)
        assert not calls and torch.equal(again.status, first.status)  # a full hit: nothing certified again
        run_certify(model, x, y, model_key="other", indices=torch.arange(5), config=cfg, progress=False)
        assert calls  # another model, another key
    finally:
        certify_module.certify = original


def PixelTrigger_like() -> torch.nn.Module:
    """A verifier-friendly chain whose class 1 wins where one pixel is bright: a 1x1 conv, ReLU, a max pool and a
    linear head (so some positions flip and others are provably safe)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0]], [[1.0]], [[1.0]]], [[[0.0]], [[0.0]], [[0.0]]]]))
        conv.bias.copy_(torch.tensor([-2.4, 1.0]))
    head = torch.nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.0, 1.0], [10.0, 0.0]]))
        head.bias.zero_()
    return torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(), head).eval()


def test_target_pairs_are_every_other_class_of_every_image():
    labels = torch.tensor([3, 0, 9])
    rows, targets = evaluate.target_pairs(labels)
    assert rows.tolist() == [0] * 9 + [1] * 9 + [2] * 9  # image by image
    assert targets[:9].tolist() == [4, 5, 6, 7, 8, 9, 0, 1, 2]  # label + 1, label + 2, ... (mod 10)
    for i in range(3):
        assert sorted(targets[rows == i].tolist()) == [c for c in range(10) if c != labels[i]]  # never the label
    rows, targets = evaluate.target_pairs(torch.tensor([1]), num_classes=3)
    assert rows.tolist() == [0, 0] and targets.tolist() == [2, 0]
