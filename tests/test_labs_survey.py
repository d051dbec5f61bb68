"""The survey's grid (Labs 10-11): datasets, pipelines, rows, and the verdicts made from them."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from labkit import stats
from labkit.data import Split
from labkit.defences import GaussianSmoothing, defended
from labkit.labs import survey
from labkit.profiles import PROFILES
from labkit.train import TrainConfig

CFG = replace(survey.SurveyConfig(**PROFILES["smoke"].lab("survey")), n_images=12, steps=3, deepfool_steps=3, cw_steps=5, swaps=6, timing_images=4)


def tiny(seed: int = 0, channels: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(24, 10)).eval()


class Trained:  # what ``pipelines`` reads of a TrainedModel
    def __init__(self, model: nn.Module, key: str):
        self.model, self.key = model, key


def split(n: int = 12, channels: int = 1) -> Split:
    g = torch.Generator().manual_seed(0)
    return Split(images=torch.randint(0, 256, (n, channels, 8, 8), generator=g, dtype=torch.uint8),
                 labels=torch.arange(n) % 10, classes=tuple(str(c) for c in range(10)), source="test")


def pipes() -> dict[str, survey.Pipeline]:
    trained = {"none": Trained(tiny(0), "k0"), "adversarial training (mixed)": Trained(tiny(1), "k1"),
               "distillation": Trained(tiny(2), "k2")}
    return survey.pipelines(trained, CFG)


def test_the_datasets_follow_the_local_copies(tmp_path, tmp_cache, monkeypatch) -> None:
    from conftest import write_idx

    monkeypatch.delenv("LABKIT_MNIST", raising=False)
    monkeypatch.delenv("LABKIT_GTSRB", raising=False)
    monkeypatch.setenv("LABKIT_FASHION_MNIST", str(tmp_path))
    assert survey.datasets_here() == ("fashion-mnist", "cifar10")
    write_idx(tmp_path / "digits")
    monkeypatch.setenv("LABKIT_MNIST", str(tmp_path / "digits"))
    monkeypatch.setenv("LABKIT_GTSRB", str(tmp_path))
    assert survey.datasets_here() == ("mnist", "cifar10", "gtsrb")
    assert survey.survey_config(PROFILES["cpu"]).datasets == ("mnist", "cifar10", "gtsrb")


def test_training_configs_hold_out_validation_and_share_the_undefended_start() -> None:
    configs = survey.defence_configs("fashion-mnist", CFG)
    base = configs["none"]
    assert isinstance(base, TrainConfig) and base.model == "survey_cnn" and base.dataset == "fashion-mnist"
    assert base.val_size == CFG.val_size > 0 and not base.augment
    assert configs["adversarial training (mixed)"].init == base
    assert configs["distillation"].objective.teacher.dataset == "fashion-mnist"
    assert [d for d, _, _ in survey.defence_plan(replace(CFG, datasets=("mnist", "cifar10")))] == ["mnist"] * 3 + [
        "cifar10"] * 3


def test_pipelines_change_what_each_defence_should_and_nothing_else() -> None:
    p, x = pipes(), torch.rand(5, 1, 8, 8)
    base = p["none"].model
    masked = p["gradient masking"]
    torch.testing.assert_close(masked.model(x), base(x))  # outputs unchanged
    assert masked.adaptive is base  # the attacker who knows it takes the true gradient
    xg = x.clone().requires_grad_(True)
    masked.model(xg)[:, 0].sum().backward()
    xt = x.clone().requires_grad_(True)
    base(xt)[:, 0].sum().backward()
    assert not torch.allclose(xg.grad, xt.grad)  # the survey's noise, on the gradient only
    student = p["distillation"]
    assert not student.adaptive.training
    assert torch.equal(student.adaptive(x).argmax(1), student.model(x).argmax(1))
    torch.testing.assert_close(student.adaptive(x), student.model(x) / CFG.temperature)
    smooth = p["Gaussian smoothing"].model
    torch.testing.assert_close(smooth(x), defended(base, GaussianSmoothing(CFG.kernel, CFG.sigma))(x))
    assert {k for k, v in p.items() if v.adaptive is not None} == set(survey.ADAPTIVE)
    assert len({v.key for v in p.values()}) == len(p)  # each pipeline its own attack cache entries


def test_an_attack_row_measures_f1_success_and_size_from_the_pipelines_own_predictions(tmp_cache) -> None:
    s, idx = split(), torch.arange(12)
    pipe = pipes()["none"]
    row = survey.attack_row(pipe, "MI-FGSM", "plain", s, idx, CFG, "fashion-mnist", progress=False)
    clean = pipe.model(s.floats(idx)).argmax(1)
    assert row["clean_pred"] == clean.tolist() and row["labels"] == s.labels.tolist()
    assert row["clean_f1"] == pytest.approx(stats.macro_f1(s.labels, clean, 10))
    assert row["adv_f1"] == pytest.approx(stats.macro_f1(row["labels"], row["adv_pred"], 10))
    correct = clean == s.labels
    broken = correct & (torch.tensor(row["adv_pred"]) != s.labels)
    assert row["asr"] == pytest.approx(int(broken.sum()) / max(1, int(correct.sum())))
    if broken.any():
        assert row["linf_median"] <= CFG.eps + 1e-6  # MI-FGSM stays in its ball
    with pytest.raises(ValueError, match="adaptive"):
        survey.attack_row(pipe, "MI-FGSM", "knows the defence", s, idx, CFG, "fashion-mnist", progress=False)
    with pytest.raises(ValueError, match="unknown attack"):
        survey.make_attack("FGSM", pipe.model, CFG)


def test_the_grid_attacks_every_pipeline_and_adds_the_adaptive_rows(tmp_cache) -> None:
    s, idx = split(), torch.arange(12)
    rows = survey.grid(pipes(), s, idx, CFG, "fashion-mnist", progress=False)
    assert len(rows) == len(survey.DEFENCES) * len(survey.ATTACKS) + len(survey.ADAPTIVE) * (len(survey.ATTACKS) - 1)
    adaptive = {(r["defence"], r["attack"]) for r in rows if r["attacker"] != "plain"}
    assert all(d in survey.ADAPTIVE and a != "pixel swap" for d, a in adaptive)
    swap = next(r for r in rows if r["defence"] == "none" and r["attack"] == "pixel swap")
    assert swap["l0_median"] != swap["l0_median"] or swap["l0_median"] <= 2 * CFG.swaps
    times = survey.timing(pipes(), s, idx, CFG, ("none", "gradient masking"))
    assert len(times) == 2 * len(survey.ATTACKS)
    assert all(t["predict_ms"] > 0 and t["attack_ms"] > 0 and t["total_ms"] == pytest.approx(t["predict_ms"] +
                                                                                           t["attack_ms"]) for t in times)


def row(dataset: str, defence: str, attack: str, wrong: list[int], attacker: str = "plain") -> dict:
    labels = [i % 10 for i in range(len(wrong))]
    adv = [(l + w) % 10 for l, w in zip(labels, wrong)]
    return {"dataset": dataset, "defence": defence, "attack": attack, "attacker": attacker, "images": len(wrong),
            "classes": 10, "labels": labels, "adv_pred": adv, "clean_pred": labels, "adv_f1": 0.5, "asr": 0.5}


def test_defence_verdicts_take_the_worst_case_over_attacks_and_attackers_per_image() -> None:
    n = 200
    half = [1] * 120 + [0] * 80  # undefended: 60% of the images fooled (no ceiling)
    rows = [row("cifar10", "none", a, half) for a in survey.ATTACKS]
    for d in ("adversarial training (mixed)", "Gaussian smoothing", "distillation"):
        rows += [row("cifar10", d, a, [0] * n) for a in survey.ATTACKS]  # fools nothing
    rows += [row("cifar10", "gradient masking", a, [0] * n) for a in survey.ATTACKS]
    rows += [row("cifar10", "gradient masking", a, half, "knows the defence") for a in survey.ATTACKS[:3]]
    lowers = {"gradient masking": -1}  # checked here as "masking lowers the share" (the survey claims it does not)
    plain = dict(survey.survey_defence_verdicts(rows, ("plain",), directions=lowers))
    # Against the survey's attacker alone masking looks perfect, but such a verdict never reads "supported".
    assert plain["survey_defence:gradient masking"].status == "undecided"
    assert "ignore the defence" in plain["survey_defence:gradient masking"].why
    both = dict(survey.survey_defence_verdicts(rows, directions=lowers))
    assert both["survey_defence:gradient masking"].status == "contradicted"
    # As the survey states it ("masking does not make the CNN harder to fool"), the same numbers support it.
    assert dict(survey.survey_defence_verdicts(rows))["survey_defence:gradient masking"].status == "supported"
    assert "knows the defence" in both["survey_defence:gradient masking"].claim
    assert both["survey_defence:Gaussian smoothing"].status == "supported"  # the plain attacks see through it
    # An aware attacker that is weaker on some images does not hide the plain attacker's successes there.
    weaker = [r for r in rows if r["defence"] != "distillation"]
    weaker += [row("cifar10", "distillation", a, half) for a in survey.ATTACKS]
    weaker += [row("cifar10", "distillation", a, [0] * n, "knows the defence") for a in survey.ATTACKS[:3]]
    assert dict(survey.survey_defence_verdicts(weaker))["survey_defence:distillation"].status == "contradicted"
    at = "adversarial training (mixed)"
    one_attack_breaks = [row("cifar10", at, a, half if a == "CW-L2" else [0] * n) for a in survey.ATTACKS]
    mixed = dict(survey.survey_defence_verdicts([r for r in rows if r["defence"] != at] + one_attack_breaks))
    assert mixed[f"survey_defence:{at}"].status == "contradicted"  # the worst case, not the mean
    # The survey credits smoothing against DeepFool and the pixel swap only: CW breaking it does not count there.
    cw_breaks = [row("cifar10", "Gaussian smoothing", a, half if a == "CW-L2" else [0] * n) for a in survey.ATTACKS]
    smooth = dict(survey.survey_defence_verdicts([r for r in rows if r["defence"] != "Gaussian smoothing"] + cw_breaks))
    assert smooth["survey_defence:Gaussian smoothing"].status == "supported"
    assert "DeepFool / pixel swap" in smooth["survey_defence:Gaussian smoothing"].claim


def test_a_claim_of_no_effect_is_checked_as_stated_and_a_ceiling_is_not_evidence() -> None:
    n = 200
    half = [1] * 120 + [0] * 80
    rows = [row("d", "none", a, half) for a in survey.ATTACKS]
    rows += [row("d", "gradient masking", a, half) for a in survey.ATTACKS]
    rows += [row("d", "gradient masking", a, half, "knows the defence") for a in survey.ATTACKS[:3]]
    same = dict(survey.survey_defence_verdicts(rows, directions={"gradient masking": 0}))
    assert same["survey_defence:gradient masking"].status == "supported"  # "masking changes nothing": it doesn't
    saturated = [row("d", "none", a, [1] * n) for a in survey.ATTACKS]
    saturated += [row("d", "Gaussian smoothing", a, [1] * n) for a in survey.ATTACKS]
    v = dict(survey.survey_defence_verdicts(saturated))["survey_defence:Gaussian smoothing"]
    assert v.status == "not informative" and "ceiling" in v.why


def test_f1_verdicts_judge_only_the_datasets_the_survey_measured() -> None:
    rows = [row("fashion-mnist", "none", "MI-FGSM", [1] * 300), row("cifar10", "none", "MI-FGSM", [1] * 300),
            row("cifar10", "Gaussian smoothing", "MI-FGSM", [1] * 300)]
    verdicts = survey.survey_f1_verdicts(rows)
    assert [k for k, _ in verdicts] == ["survey_f1:MI-FGSM|MNIST", "survey_f1:MI-FGSM|CIFAR-10"]
    assert verdicts[0][1].status == "not comparable" and "Fashion-MNIST" in verdicts[0][1].why
    assert verdicts[1][1].status == "supported"  # every image fooled: F1 0, the survey's 0.01 within 0.10


def test_the_matrix_falls_back_to_plain_rows_for_the_adaptive_attacker() -> None:
    rows = [row("d", "none", a, [1] * 4) | {"asr": 0.9} for a in survey.ATTACKS]
    rows += [row("d", "gradient masking", a, [0] * 4) | {"asr": 0.1} for a in survey.ATTACKS]
    rows += [row("d", "gradient masking", "MI-FGSM", [1] * 4, "knows the defence") | {"asr": 0.8}]
    m, names = survey.survey_matrix(rows, "d", "asr", "knows the defence")
    assert names == ["none", "gradient masking"]
    assert m[1].tolist() == pytest.approx([0.8, 0.1, 0.1, 0.1]) and m[0].tolist() == pytest.approx([0.9] * 4)
    plain, _ = survey.survey_matrix(rows, "d", "asr")
    assert plain[1, 0].item() == pytest.approx(0.1)
