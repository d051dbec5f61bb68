"""labkit.labs.defence_baselines (Labs 03-04): the replayed-vs-re-run table and its summary, FGSM success, gradient
diagnostics, and the training costs.

Tiny models and tensors made here (``tests/conftest.py``'s fixtures, and its tiny ImageFolder for the training
costs); nothing touches the network or the real data.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from labkit.attacks import CornerSearch
from labkit.defences import PGDAT, BitDepth, GradientMasking, MedianFilter, OnePixelAT, defended, distillation_config
from labkit.labs.defence_baselines import (budget, fgsm_success, gradient_diagnostics, replay_summary, replay_table,
                                           teacher_seconds, training_table)
from labkit.train import CrossEntropy, TrainConfig, get_or_train
from tests.test_defences import tiny_run


def images(n: int = 4, size: int = 8, seed: int = 0) -> Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_replay_table_tells_removed_from_moved(pixel_model, dark_images) -> None:
    labels = torch.zeros(len(dark_images), dtype=torch.long)
    bare = {"corner": CornerSearch(pixel_model)(dark_images, labels)}
    pipelines = {"median": defended(pixel_model, MedianFilter(3)), "bits": defended(pixel_model, BitDepth(1))}
    rerun = {name: {"corner": CornerSearch(p)(dark_images, labels)} for name, p in pipelines.items()}
    rows = {r["defence"]: r for r in replay_table(pixel_model, pipelines, dark_images, bare, rerun)}
    # The median filter removes the bright pixel, and no other pixel works either.
    assert rows["median"] == {"defence": "median", "attack": "corner", "replayed": 0.0, "rerun": 0.0,
                              "removed": 100.0, "moved": 0.0}
    # One-bit depth keeps a white pixel white: the replayed images still fool the pipeline.
    assert rows["bits"]["replayed"] == 100.0 and rows["bits"]["removed"] == 0.0 and rows["bits"]["rerun"] == 100.0


def test_fgsm_success_is_seeded_and_counts_misclassified_images(tiny_cnn) -> None:
    x, labels = images(8, 8), torch.arange(8) % 10
    masked = GradientMasking(tiny_cnn, eps=1.0)
    assert torch.equal(fgsm_success(masked, x, labels, seed=3), fgsm_success(masked, x, labels, seed=3))
    import torchattacks

    adv = torchattacks.FGSM(tiny_cnn, eps=8 / 255)(x, labels)
    assert torch.equal(fgsm_success(tiny_cnn, x, labels), tiny_cnn(adv).argmax(1) != labels)


class Scaled(nn.Module):
    """A network whose logits are multiplied by ``factor``: what distillation at a high T deploys."""

    def __init__(self, net: nn.Module, factor: float):
        super().__init__()
        self.net, self.factor = net, factor

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x) * self.factor


def test_gradient_diagnostics_tell_vanishing_from_noisy_gradients(tiny_cnn) -> None:
    x = images(8, 8)
    labels = tiny_cnn(x).argmax(1)  # every image correctly classified, so FGSM success means a flip
    models = {"plain": tiny_cnn, "masked": GradientMasking(tiny_cnn, 1.0), "saturated": Scaled(tiny_cnn, 1e5).eval()}
    rows = {r["defence"]: r for r in gradient_diagnostics(models, x, labels)}
    assert rows["saturated"]["saturated"] == 100.0 and rows["saturated"]["grad_l1"] == 0.0
    assert rows["saturated"]["fgsm_asr"] == 0.0  # a zero gradient has no sign: FGSM changes nothing
    assert rows["plain"]["saturated"] == 0.0 and rows["masked"]["grad_l1"] > 100 * rows["plain"]["grad_l1"]
    assert gradient_diagnostics(models, x, labels) == list(rows.values())  # the noise is seeded


def test_replay_counts_only_successes_that_fool_the_bare_model(pixel_model, dark_images) -> None:
    # A grey 0.7 at the trigger pixel does not fool the bare model (it needs a mean above 0.75), but one-bit
    # depth rounds it to white, which fools the pipeline. Reported as a success on every image, it is no
    # bare success to replay: neither replayed nor removed.
    labels = torch.zeros(len(dark_images), dtype=torch.long)
    bare = CornerSearch(pixel_model)(dark_images, labels)
    grey = dark_images.clone()
    grey[:, :, 2, 5] = 0.7
    claimed = replace(bare, adv_images=grey, success=torch.ones(len(grey), dtype=torch.bool))
    assert (pixel_model(grey).argmax(1) == 0).all() and (defended(pixel_model, BitDepth(1))(grey).argmax(1) == 1).all()
    pipelines = {"bits": defended(pixel_model, BitDepth(1))}
    rows = replay_table(pixel_model, pipelines, dark_images, {"grey": claimed, "corner": bare},
                        {"bits": {"grey": claimed, "corner": bare}})
    grey_row, corner_row = rows
    assert grey_row["attack"] == "grey" and grey_row["replayed"] == grey_row["removed"] == 0.0
    assert grey_row["rerun"] == 100.0  # against the pipeline itself the same images do verify
    # Real (verified) bare successes are still replayed: a white pixel stays white at one bit.
    assert corner_row["replayed"] == 100.0 and corner_row["removed"] == 0.0


def test_replay_percentages_are_exact_fractions(pixel_model, dark_images) -> None:
    # Lab 03 compares them with the ASR of labkit.evaluate.summarize (k / n in float64): 1 of 6 must be 100 / 6
    # exactly, not the float32 mean 16.666667.
    labels = torch.zeros(len(dark_images), dtype=torch.long)
    bare = CornerSearch(pixel_model)(dark_images, labels)
    one = replace(bare, success=torch.arange(len(dark_images)) == 0)
    pipelines = {"bits": defended(pixel_model, BitDepth(1))}
    rows = replay_table(pixel_model, pipelines, dark_images, {"corner": one}, {"bits": {"corner": one}})
    assert rows[0]["replayed"] == rows[0]["rerun"] == 100 * 1 / 6


def test_replay_table_covers_only_the_attacks_rerun_on_each_pipeline(pixel_model, dark_images) -> None:
    labels = torch.zeros(len(dark_images), dtype=torch.long)
    bare = {"corner": CornerSearch(pixel_model)(dark_images, labels),
            "corner, 16": CornerSearch(pixel_model, max_queries=16)(dark_images, labels)}
    pipelines = {"swept": defended(pixel_model, BitDepth(1)), "full": defended(pixel_model, BitDepth(2))}
    rerun = {"swept": {"corner": CornerSearch(pipelines["swept"])(dark_images, labels)},
             "full": {a: CornerSearch(pipelines["full"], max_queries=16 if "16" in a else None)(dark_images, labels)
                      for a in bare}}
    rows = replay_table(pixel_model, pipelines, dark_images, bare, rerun)
    assert [(r["defence"], r["attack"]) for r in rows] == [("swept", "corner"), ("full", "corner"),
                                                          ("full", "corner, 16")]


def test_replay_table_on_a_pipelines_subset_equals_replaying_that_subset(pixel_model, dark_images) -> None:
    # A sweep attacks a pipeline only on the images it classifies correctly clean: its row must be what the
    # table computes when given just those images (the bare results restricted alike).
    labels = torch.zeros(len(dark_images), dtype=torch.long)
    bare = {"corner": CornerSearch(pixel_model)(dark_images, labels)}
    pipe = defended(pixel_model, BitDepth(1))
    mask = torch.tensor([True, False, True, True, False, True])
    rerun = {"bits": {"corner": CornerSearch(pipe)(dark_images[mask], labels[mask])}}
    sub = replay_table(pixel_model, {"bits": pipe}, dark_images, bare, rerun, attacked={"bits": mask})
    alone = replay_table(pixel_model, {"bits": pipe}, dark_images[mask], {"corner": bare["corner"].select(mask)},
                         rerun)
    assert sub == alone and sub[0]["rerun"] == 100.0


# -- Lab 03's replay table in words, Lab 04's training costs ---------------------------------------------------------

def test_replay_summary_counts_from_the_table() -> None:
    replay = [{"defence": "median 3x3", "attack": "DE k=1", "replayed": 5.0, "rerun": 40.0, "removed": 30.0,
               "moved": 20.0},
              {"defence": "JPEG q75", "attack": "DE k=1", "replayed": 30.0, "rerun": 30.0, "removed": 5.0,
               "moved": 5.0}]
    text = replay_summary(replay)
    assert "below the re-run ASR for 1 of 2 pipelines" in text and "by up to 35.0 points" in text
    assert "for 1 pipelines every removed success" in text and "median 3x3 5.0 / 40.0" in text


def test_budget_describes_every_objective() -> None:
    assert "16 fp32 forwards" in budget(OnePixelAT(positions=2)) and "7 forward+backward" in budget(PGDAT())
    assert "T = 20" in budget(distillation_config(TrainConfig()).objective)
    assert budget(CrossEntropy()) == "plain step"


def test_training_table_counts_the_teachers_run(tiny_folder) -> None:
    student_cfg = distillation_config(tiny_run(), temperature=20.0)
    trained = get_or_train(student_cfg, progress=False)  # trains its teacher first, through the cache
    teacher = get_or_train(student_cfg.objective.teacher, progress=False)
    runs = [SimpleNamespace(entry=SimpleNamespace(defence=name, config=c), history=t.history,
                            train_seconds=t.train_seconds)
            for name, c, t in (("No defence", tiny_run(), get_or_train(tiny_run(), progress=False)),
                               ("DD", student_cfg, trained))]
    base_row, dd_row = training_table(runs, teacher_seconds(runs))
    with pytest.raises(ValueError, match="teacher_seconds"):
        training_table(runs)  # a distilled run without its teacher's time
    assert dd_row["teacher_s"] == teacher.train_seconds and base_row["teacher_s"] == 0.0
    assert dd_row["total_s"] == trained.train_seconds + teacher.train_seconds
    assert base_row["vs_reference"] == 1.0 and dd_row["vs_reference"] == dd_row["total_s"] / base_row["total_s"]
