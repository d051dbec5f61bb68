"""Profiles: one place for run sizes; full matches the papers' settings."""

from __future__ import annotations

import pytest

from labkit.profiles import PROFILES, get_profile


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
