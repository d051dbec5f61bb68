"""Profiles: one place for run sizes; full matches the papers' settings."""

from __future__ import annotations

from dataclasses import replace

import pytest

from labkit.profiles import PROFILES, get_profile
from labkit.train import model_key


def test_default_is_smoke_and_env_selects(monkeypatch):
    monkeypatch.delenv("LABKIT_PROFILE", raising=False)
    assert get_profile().name == "smoke"
    monkeypatch.setenv("LABKIT_PROFILE", "cpu")
    assert get_profile().name == "cpu"
    assert get_profile("full").name == "full"
    with pytest.raises(ValueError, match="LABKIT_PROFILE"):
        get_profile("huge")


def test_full_profile_is_the_papers_setting():
    full = PROFILES["full"]
    assert (full.population, full.generations, full.n_attack) == (400, 100, 500)
    assert full.de_config().f == 0.5 and full.de_config().crossover is None
    cfg = full.train_config("resnet18")
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.epochs) == ("adam", 1e-3, 5e-4, 128, 200)
    assert set(full.models) == {"resnet18", "vgg16"} and len(full.seeds) == 5


def test_profiles_grow_and_overrides_apply():
    s, c, f = (PROFILES[n] for n in ("smoke", "cpu", "full"))
    assert s.n_attack < c.n_attack < f.n_attack
    assert s.de_config().max_queries < c.de_config().max_queries < f.de_config().max_queries
    assert s.train_config(epochs=3).epochs == 3
    assert s.de_config(pixels=3, targeted=True).pixels == 3
    assert s.de_config(population=7).population == 7  # budget fields too (e.g. a stronger adaptive attack)


def test_for_defences_applies_the_defence_budget_and_keeps_the_name():
    for prof in PROFILES.values():
        d = prof.for_defences()
        assert d.name == prof.name and d.defence_overrides == () and d.for_defences() == d
        for field, value in prof.defence_overrides:
            assert getattr(d, field) == value != getattr(prof, field)
    smoke = PROFILES["smoke"].for_defences()  # CI fine-tunes as cpu does, for 2 steps (CI under 20 minutes)
    assert smoke.train_config().init == PROFILES["smoke"].train_config() and smoke.n_attack == PROFILES["smoke"].n_attack
    assert smoke.train_config().epochs * smoke.train_config().train_size <= 2 * smoke.batch_size
    cpu = PROFILES["cpu"].for_defences()
    # cpu's defence labs attack more images than Labs 01-02 (paired comparisons need them), on fine-tuned models.
    assert cpu.n_attack > PROFILES["cpu"].n_attack and cpu.train_config().epochs < PROFILES["cpu"].epochs


def test_precision_reaches_both_searches():
    # Every profile asks for "auto" (bf16 only where this machine runs it natively); a field overrides it.
    for profile in (*PROFILES.values(), PROFILES["cpu"].for_defences()):
        assert profile.de_config().precision == profile.corner_config().precision == "auto"
    assert PROFILES["cpu"].de_config(precision="fp32").precision == "fp32"


def test_full_defence_models_train_from_scratch():
    d = PROFILES["full"].for_defences()
    assert d.finetune_epochs is None and d.train_config().init is None
    assert d.train_config().epochs == PROFILES["full"].epochs


def test_cpu_defence_models_are_fine_tuned_from_the_lab_01_model():
    from labkit import defences
    from labkit.labs import apr_paper

    cpu, d = PROFILES["cpu"], PROFILES["cpu"].for_defences()
    base = cpu.train_config()
    assert base.init is None and base.train_size is None and base.epochs == 15  # Labs 01-02's model, all images
    configs = [e.config for e in apr_paper.table1_suite(d) + apr_paper.ablation_suite(d)]
    configs += [c.objective.teacher for c in configs if isinstance(c.objective, defences.Distillation)]
    assert len({model_key(c) for c in configs}) == 9  # 4 of Table 1 + teacher + APR's 4 variants
    for cfg in configs:
        # Every defence, the undefended comparison included, trains the same schedule from the same start.
        assert cfg.init == base and model_key(cfg.init) == model_key(base)
        assert (cfg.epochs, cfg.train_size, cfg.lr) == (d.finetune_epochs, d.finetune_size, d.finetune_lr)
    assert d.train_config(gate="pixel", epochs=1).init == base  # overrides change the fine-tune, never its start
    assert d.n_attack >= 200


def test_sweep_suite_is_checked():
    assert {p.sweep_suite for p in PROFILES.values()} <= {"adaptive", "protocol"}
    with pytest.raises(ValueError, match="sweep_suite"):
        replace(PROFILES["smoke"], sweep_suite="light")


def test_describe_says_how_models_are_trained_and_in_what_precision():
    cpu = PROFILES["cpu"].for_defences()
    line = cpu.describe()
    assert "fine-tuned from the 15-epoch model" in line and f"{cpu.finetune_epochs} epochs" in line
    assert "precision: auto -> " in line
    assert "trained from scratch" in PROFILES["full"].describe()


def test_every_lab_section_is_known_and_read_fresh():
    from labkit.profiles import LAB_PARTS, Profile, lab_sizes

    for profile in PROFILES.values():
        assert {part for part, _ in profile.labs} <= set(LAB_PARTS)
        assert profile.for_defences().labs == profile.labs  # the defence labs keep the lab sections
        section = profile.lab("timing")
        section["repeats"] = -1  # a copy: the profile is unchanged
        assert profile.lab("timing")["repeats"] > 0
    assert replace(PROFILES["cpu"], labs=()).lab("su") == {}  # no section: the lab's defaults
    with pytest.raises(ValueError, match="lab part"):
        PROFILES["cpu"].lab("09")
    with pytest.raises(ValueError, match="lab parts"):
        lab_sizes(jpeg=dict(n_images=1))
    with pytest.raises(ValueError, match="lab parts"):
        replace(PROFILES["cpu"], labs=(("jpeg", ()),))
    assert isinstance(hash(PROFILES["cpu"]), int) and isinstance(PROFILES["cpu"], Profile)  # still frozen


def test_lab_sections_leave_the_recorded_profile_as_the_committed_records_hold_it():
    # Records keep the Profile (``jsonable``) and replay only when it matches: the sections must not enter it, or
    # every committed record would be stale. Each committed record holds the cpu profile or its defence labs' one.
    import json
    from pathlib import Path

    from labkit.records import jsonable

    folder = Path(__file__).resolve().parents[1] / "results" / "cpu"
    cpu = PROFILES["cpu"]
    assert "labs" not in jsonable(cpu) and jsonable(replace(cpu, labs=())) == jsonable(cpu)
    configs = [json.loads(p.read_text())["config"] for p in sorted(folder.glob("*.json"))]
    assert configs and all(c in (jsonable(cpu), jsonable(cpu.for_defences())) for c in configs)


def test_the_labs_settings_are_the_committed_records_ones():
    # Labs 02b, 05b, 09, 10, 11 and 12 record the settings they build from their section: what the sizes moved to
    # ``Profile.labs`` build is what the committed records hold.
    import json
    from pathlib import Path

    from labkit.labs import full_budget, recovery, su, survey, verification
    from labkit.records import jsonable

    folder = Path(__file__).resolve().parents[1] / "results" / "cpu"
    cpu = PROFILES["cpu"]
    built = {"02b_su_networks": su.su_config(cpu), "09_jpeg_recovery": recovery.recovery_config(cpu),
             "10_survey_attacks": replace(survey.survey_config(cpu), datasets=("fashion-mnist", "cifar10")),
             "11_survey_defences": replace(survey.survey_config(cpu), datasets=("fashion-mnist", "cifar10")),
             "12_verification": verification.verify_config(cpu),
             "05b_full_budget": full_budget.budget_config(cpu.for_defences())}
    for lab, settings in built.items():
        assert json.loads((folder / f"{lab}.json").read_text())["settings"] == jsonable(settings), lab


def test_lab_sections_stay_out_of_the_profiles_repr():
    # Labs display their profile (Lab 05 shows ``P``): the sections moved here must not change what a page shows.
    cpu = PROFILES["cpu"]
    assert repr(cpu) == repr(replace(cpu, labs=())) and "labs=" not in repr(cpu)
