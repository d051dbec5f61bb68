"""Training through the cache: deterministic, cached, invalidated, resumed."""

from __future__ import annotations

import pytest
import torch

from labkit import train
from labkit.train import TrainConfig, get_or_train

CFG = TrainConfig(model="small_cnn", epochs=2, batch_size=40, train_size=None, eval_size=40, bf16=False)


def weights(m):
    return torch.cat([p.detach().flatten() for p in m.state_dict().values() if p.is_floating_point()])


def test_trains_and_then_loads_from_the_cache(tiny_folder, monkeypatch):
    first = get_or_train(CFG, "cpu", progress=False)
    assert len(first.history) == 2 and {"train_loss", "test_acc", "seconds"} <= set(first.history[0])
    assert not first.model.training
    monkeypatch.setattr(train, "train", lambda *a, **k: pytest.fail("retrained a cached model"))
    again = get_or_train(CFG, "cpu", progress=False)
    assert torch.equal(weights(first.model), weights(again.model)) and again.key == first.key


def test_learns_the_tiny_task(tiny_folder):
    trained = get_or_train(TrainConfig(epochs=4, batch_size=20, eval_size=40, lr=0.05, bf16=False), "cpu",
                           progress=False)
    assert trained.history[-1]["test_acc"] >= 0.5  # colour-coded classes: chance is 0.1


def test_same_seed_same_weights(tiny_folder, tmp_path, monkeypatch):
    a = get_or_train(CFG, "cpu", progress=False)
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "other"))
    b = get_or_train(CFG, "cpu", progress=False)
    assert torch.equal(weights(a.model), weights(b.model))


def test_config_change_is_a_miss(tiny_folder):
    a = get_or_train(CFG, "cpu", progress=False)
    b = get_or_train(TrainConfig(**{**CFG.__dict__, "seed": 1}), "cpu", progress=False)
    assert a.key != b.key and not torch.equal(weights(a.model), weights(b.model))


def test_corrupt_checkpoint_is_retrained(tiny_folder):
    a = get_or_train(CFG, "cpu", progress=False)
    a.path.write_bytes(b"\0" * 100)
    with pytest.warns(UserWarning, match="unreadable"):
        b = get_or_train(CFG, "cpu", progress=False)
    assert torch.equal(weights(a.model), weights(b.model))


def test_interrupted_training_resumes_to_the_same_weights(tiny_folder, tmp_path, monkeypatch):
    reference = get_or_train(CFG, "cpu", progress=False)
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "resume"))
    calls = {"n": 0}
    real_accuracy = train.accuracy

    def interrupt_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_accuracy(*args, **kwargs)

    monkeypatch.setattr(train, "accuracy", interrupt_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        get_or_train(CFG, "cpu", progress=False)
    monkeypatch.setattr(train, "accuracy", real_accuracy)
    batches = []
    real_augment = train.augment
    monkeypatch.setattr(train, "augment", lambda x, g: (batches.append(len(x)), real_augment(x, g))[1])
    resumed = get_or_train(CFG, "cpu", progress=False)
    assert sum(batches) == 120  # only the second epoch was trained again
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert torch.equal(weights(reference.model), weights(resumed.model))


def test_bad_configs_are_rejected():
    for bad in ({"epochs": 0}, {"optimizer": "lbfgs"}, {"schedule": "step"}, {"gate": "spatial"}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_runs_too_short_for_a_schedule_still_train(tiny_folder):
    tiny = TrainConfig(epochs=1, batch_size=64, train_size=100, eval_size=40, bf16=False)  # 2 steps
    assert len(get_or_train(tiny, "cpu", progress=False).history) == 1
