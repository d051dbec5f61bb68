"""Training through the cache: deterministic, cached, invalidated, resumed."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from labkit import train
from labkit.models import AttentionGate, MedianBlur, gate_of, median_blur
from labkit.train import TrainConfig, build_for_config, get_or_train, model_key

CFG = TrainConfig(model="small_cnn", epochs=2, batch_size=40, train_size=None, eval_size=40, precision="fp32")


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
    trained = get_or_train(TrainConfig(epochs=4, batch_size=20, eval_size=40, lr=0.05, precision="fp32"), "cpu",
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
    gated = TrainConfig(gate="pixel")
    for bad in ({"epochs": 0}, {"optimizer": "lbfgs"}, {"schedule": "step"}, {"gate": "spatial"},
                {"precision": "fp16"}, {"precision": True}, {"init": TrainConfig(model="resnet18")},
                {"init": gated}, {"init": "small_cnn"}, {"median": 1}, {"median": -3}, {"median": True},
                {"median": 3, "gate": "pixel"}, {"median": 5, "init": TrainConfig(median=3)}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    assert model_key(TrainConfig()) == model_key(TrainConfig(median=0))  # a new field: old keys unchanged
    assert model_key(TrainConfig(median=3)) != model_key(TrainConfig())


def test_runs_too_short_for_a_schedule_still_train(tiny_folder):
    tiny = TrainConfig(epochs=1, batch_size=64, train_size=100, eval_size=40, precision="fp32")  # 2 steps
    assert len(get_or_train(tiny, "cpu", progress=False).history) == 1


def test_build_for_config_puts_the_gate_in_front() -> None:
    model = build_for_config(TrainConfig(gate="channel", gate_kernel=5))
    assert isinstance(model[0], AttentionGate) and model[0].mode == "channel" and model[0].kernel_size == 5
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_importing_train_does_not_import_the_apr_method():
    code = "import labkit.train, sys; assert 'labkit.apr' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- precision: keyed as asked, recorded as run ----------------------------------------------------------------------

def test_checkpoint_records_the_precision_that_ran(tiny_folder, monkeypatch):
    monkeypatch.setattr(train, "resolve_precision", lambda asked, device: "fp32")  # a machine without native bf16
    auto = replace(CFG, precision="auto")
    first = get_or_train(auto, "cpu", progress=False)
    assert first.precision_used == "fp32" and torch.load(first.path)["precision_used"] == "fp32"
    assert first.key == model_key(auto) != model_key(CFG)  # the key is what was asked
    monkeypatch.setattr(train, "train", lambda *a, **k: pytest.fail("retrained a cached model"))
    assert get_or_train(auto, "cpu", progress=False).precision_used == "fp32"  # read back from the entry


def test_train_step_autocasts_only_when_the_precision_resolves_to_bf16(monkeypatch):
    seen = []

    class Probe:
        def loss(self, model, images, labels, ctx):
            seen.append(torch.is_autocast_enabled("cpu"))
            return model(images).float().logsumexp(1).mean()

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    for resolved in ("bf16", "fp32"):
        monkeypatch.setattr(train, "resolve_precision", lambda asked, device, r=resolved: r)
        cfg = TrainConfig(objective=Probe(), augment=False)
        opt, sched = train.make_optimizer(model, cfg, 1)
        ctx = train.TrainContext(config=cfg, device=torch.device("cpu"))
        train.train_step(model, opt, sched, cfg, torch.rand(2, 3, 2, 2), torch.tensor([0, 1]), ctx)
    assert seen == [True, False]


# -- fine-tuning from a cached model ---------------------------------------------------------------------------------

BASE = replace(CFG, epochs=1)


def network_weights(model):
    net = model[1] if isinstance(model[0], AttentionGate) else model
    return weights(net)


def test_build_for_config_puts_the_median_filter_in_front() -> None:
    model = build_for_config(TrainConfig(median=3)).eval()
    assert isinstance(model[0], MedianBlur) and model[0].size == 3
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model(x), model[1](median_blur(x, 3)))


def test_a_median_model_starts_from_a_plain_base(tiny_folder):
    base = get_or_train(BASE, "cpu", progress=False)
    fronted = replace(CFG, epochs=1, lr=0.0, weight_decay=0.0, schedule="constant", median=3, init=BASE)
    tuned = get_or_train(fronted, "cpu", progress=False)
    learnt = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])  # noqa: E731
    assert isinstance(tuned.model[0], MedianBlur) and torch.equal(learnt(tuned.model[1]), learnt(base.model))


def test_fine_tuning_starts_from_the_base_weights(tiny_folder):
    base = get_or_train(BASE, "cpu", progress=False)
    # lr = 0 and no weight decay: the optimiser never moves the weights, so they stay the base's (batch-norm
    # running statistics, which are not learnt, do move; they are not in the comparison).
    frozen = replace(CFG, epochs=1, lr=0.0, weight_decay=0.0, schedule="constant", init=BASE)
    tuned = get_or_train(frozen, "cpu", progress=False)
    learnt = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])  # noqa: E731
    assert torch.equal(learnt(tuned.model), learnt(base.model))
    assert tuned.init_key == base.key and torch.load(tuned.path)["init_key"] == base.key
    assert get_or_train(frozen, "cpu", progress=False).init_key == base.key  # read back from the entry
    scratch = replace(frozen, init=None)
    assert model_key(scratch) != model_key(frozen)
    assert not torch.equal(learnt(get_or_train(scratch, "cpu", progress=False).model), learnt(base.model))


def test_a_gated_model_starts_from_an_ungated_base(tiny_folder):
    base = get_or_train(BASE, "cpu", progress=False)
    gated = replace(CFG, epochs=1, lr=0.0, weight_decay=0.0, schedule="constant", gate="pixel", init=BASE)
    tuned = get_or_train(gated, "cpu", progress=False)
    fresh = build_for_config(gated)
    learnt = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])  # noqa: E731
    assert torch.equal(learnt(tuned.model[1]), learnt(base.model))  # the network is the base's
    assert torch.equal(learnt(gate_of(tuned.model)), learnt(gate_of(fresh)))  # the gate keeps its own start
    # With a learning rate, the gate trains from there and the network moves on from the base.
    moving = get_or_train(replace(gated, lr=0.05, schedule="onecycle"), "cpu", progress=False)
    assert not torch.equal(learnt(gate_of(moving.model)), learnt(gate_of(fresh)))


def test_the_validation_split_is_held_out_and_class_balanced(tiny_folder):
    from labkit.data import load_cifar10

    split = load_cifar10("train")
    tr, val = train.training_indices(split, replace(CFG, val_size=20, train_size=50))
    assert len(val) == 20 and len(tr) == 50 and not set(tr.tolist()) & set(val.tolist())
    assert torch.bincount(split.labels[val], minlength=10).tolist() == [2] * 10
    everything, none = train.training_indices(split, CFG)
    assert len(everything) == len(split) and len(none) == 0


def test_validation_keeps_the_epoch_of_lowest_validation_loss(tiny_folder):
    from labkit.data import load_cifar10

    cfg = replace(CFG, epochs=4, val_size=30, lr=0.5, schedule="constant")  # a jumpy run: the last is rarely best
    trained = get_or_train(cfg, "cpu", progress=False)
    losses = [row["val_loss"] for row in trained.history]
    kept = [row["kept"] for row in trained.history]
    assert kept.count(True) == 1 and kept.index(True) == losses.index(min(losses))
    _, val = train.training_indices(load_cifar10("train"), cfg)
    assert train.validation(trained.model, load_cifar10("train"), val)["val_loss"] == pytest.approx(min(losses), rel=1e-5)
    assert model_key(cfg) != model_key(CFG)


def test_a_model_trains_on_another_registered_dataset(tmp_path, tmp_cache, monkeypatch):
    from conftest import write_idx

    write_idx(tmp_path / "fm", n_train=200, n_test=20)
    monkeypatch.setenv("LABKIT_FASHION_MNIST", str(tmp_path / "fm"))
    cfg = TrainConfig(model="survey_cnn", dataset="fashion-mnist", epochs=4, batch_size=20, eval_size=20,
                      val_size=20, augment=False, optimizer="adam", lr=1e-2, precision="fp32")
    trained = get_or_train(cfg, "cpu", progress=False)
    assert trained.model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert max(row["val_acc"] for row in trained.history) >= 0.5  # grey level encodes the class: chance is 0.1
    with pytest.raises(ValueError, match="registered"):
        TrainConfig(dataset="svhn")
    with pytest.raises(ValueError, match="trained on"):
        TrainConfig(model="survey_cnn", dataset="fashion-mnist", init=TrainConfig(model="survey_cnn"))
