"""Result records (labkit.records): strict JSON, per-image arrays that rebuild the attack, atomic rewrites."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math

import numpy as np
import pytest
import torch

from labkit import records, storable
from labkit.attacks import CornerSearch, OnePixel, apply_pixels, changed_pixels, verify
from labkit.attacks.base import PER_IMAGE
from labkit.evaluate import Evaluation, SuiteRows, summarize
from labkit.profiles import get_profile
from labkit.train import TrainConfig, TrainedModel, model_key

from conftest import result_row


def _strict(path):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_rows_are_strict_json_with_their_outcomes(tmp_path):
    rec = records.LabRecord("99_test", get_profile("smoke"), root=tmp_path)
    rows = [result_row("No defence", "DE k=1", 0.3, outcomes=(1, 0, 1)), result_row("APR", "DE k=1", 0.0)]
    rows[1]["asr"] = float("nan")  # no image attacked
    assert rec.rows("table", rows) is rows  # a pass-through: a cell records what it computes in one line
    data = _strict(tmp_path / "smoke" / "99_test.json")
    assert data["schema"] == records.SCHEMA and data["profile"] == "smoke" and data["lab"] == "99_test"
    assert data["tables"]["table"][0]["outcomes"] == [1, 0, 1] and data["tables"]["table"][1]["asr"] is None
    assert data["config"]["n_attack"] == get_profile("smoke").n_attack
    prov = data["provenance"]
    assert {"labkit", "commit", "date", "device", "threads", "precision"} <= set(prov) and prov["threads"] >= 1
    assert set(data["stages"]) == {"tables/table"} and data["stages"]["tables/table"] >= 0
    said = rec.describe()
    assert "profile smoke" in said and prov["device"] in said and "--profile smoke --recompute --only 99" in said


@pytest.mark.parametrize("attack", [CornerSearch, OnePixel])
def test_per_image_arrays_rebuild_the_attack(tmp_path, tiny_cnn, attack):
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(6, 3, 8, 8, generator=gen)
    labels = tiny_cnn(images).argmax(1)
    kw = {"max_queries": 64} if attack is CornerSearch else {"population": 10, "generations": 2}
    res = attack(tiny_cnn, **kw)(images, labels)
    indices = torch.tensor([5, 9, 11, 20, 21, 40])
    rec = records.LabRecord("99_test", get_profile("smoke"), root=tmp_path)
    ev = Evaluation([summarize(res, verify(tiny_cnn, images, res, max_pixels=1), 0.5, attack="a")], {"a": res})
    rec.rows("suite", ev, indices=indices)
    stored = records.load("99_test", "smoke", root=tmp_path)
    entry = stored["attacks"]["suite/a"]
    arrays = {name.rsplit("/", 1)[1]: stored["arrays"][name] for name in entry["arrays"]}
    assert entry["images"] == 6 and entry["attack"] == "a"
    np.testing.assert_array_equal(arrays["index"], indices.numpy())
    np.testing.assert_array_equal(arrays["success"], res.success.numpy())
    np.testing.assert_array_equal(arrays["queries"], res.queries.numpy())
    pixels = torch.from_numpy(arrays["pixels"])
    rebuilt = apply_pixels(images.clone(), pixels[..., 0], pixels[..., 1], torch.from_numpy(arrays["colours"]))
    assert torch.equal(rebuilt, res.adv_images)  # the record holds the attack, not only its score
    assert (tiny_cnn(rebuilt).argmax(1) == torch.from_numpy(arrays["adv_pred"])).all()


def test_an_evaluation_without_indices_is_refused(tmp_path, tiny_cnn):
    images = torch.rand(2, 3, 8, 8)
    res = CornerSearch(tiny_cnn, max_queries=8)(images, tiny_cnn(images).argmax(1))
    rec = records.LabRecord("99_test", get_profile("smoke"), root=tmp_path)
    with pytest.raises(ValueError, match="indices"):
        rec.rows("t", Evaluation([], {"a": res}))
    with pytest.raises(ValueError, match="3 indices for 2"):
        rec.result("r", res, torch.arange(3))


def test_suite_rows_record_every_entry_and_attack(tmp_path, tiny_cnn):
    images = torch.rand(4, 3, 8, 8)
    res = CornerSearch(tiny_cnn, max_queries=8)(images, tiny_cnn(images).argmax(1))
    rows = SuiteRows([result_row("APR", "corner", 0.25, n=4)], {("m", 0, "APR", "corner"): res},
                     {("m", 0, "APR"): torch.arange(10, 14)})
    assert isinstance(rows, list) and len(rows) == 1  # every reader of plain rows still works
    rec = records.LabRecord("99_test", get_profile("smoke"), root=tmp_path)
    rec.rows("suite", rows)
    stored = records.load("99_test", "smoke", root=tmp_path)
    entry = stored["attacks"]["suite/m/0/APR/corner"]
    assert (entry["model"], entry["seed"], entry["defence"]) == ("m", 0, "APR")
    assert stored["arrays"]["suite/m/0/APR/corner/index"].tolist() == [10, 11, 12, 13]


def test_each_addition_rewrites_the_record_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_RESULTS", str(tmp_path))
    rec = records.LabRecord("99_test", get_profile("smoke"))
    rec.text("verdict", "UNDECIDED: n = 3")
    assert records.load_all("smoke")["99_test"]["texts"] == {"verdict": "UNDECIDED: n = 3"}
    rec.value("timings", {"a": 1.5, "b": math.inf})
    data = _strict(tmp_path / "smoke" / "99_test.json")
    assert data["texts"]["verdict"] == "UNDECIDED: n = 3" and data["values"]["timings"] == {"a": 1.5, "b": None}
    assert list(data["stages"]) == ["texts/verdict", "values/timings"]
    assert not list((tmp_path / "smoke").glob("*.tmp"))  # nothing half written is left behind


def test_the_committed_cpu_records_are_small_strict_and_traceable():
    folder = records.project_root() / "results" / "cpu"
    files = sorted(folder.glob("*"))
    assert files, "results/cpu/ holds the records of the project's cpu run"
    committed = [f for f in folder.parent.rglob("*") if f.is_file() and "smoke" not in f.parts]  # smoke: ignored
    assert sum(f.stat().st_size for f in committed) <= 5 * 2**20  # the committed results/ stay under 5 MB
    for path in folder.glob("*.json"):
        data = _strict(path)
        assert data["schema"] == records.SCHEMA and data["profile"] == "cpu" and data["lab"] == path.stem
        commit = data["provenance"]["commit"]
        assert commit and not commit.endswith("+dirty"), f"{path.name} was made by uncommitted code"
        stored = records.load(path.stem, "cpu", root=folder.parent)
        for entry in data["attacks"].values():  # every array the JSON names is in the .npz, one row per image
            assert all(stored["arrays"][name].shape[0] == entry["images"] for name in entry["arrays"])


# -- replay ---------------------------------------------------------------------------------------------------


def _never(*_):
    raise AssertionError("a replay ran a step it should have read from the record")


class _Split:
    """A stand-in dataset split: ``floats(indices)`` gives the images the attacks ran on, ``labels[indices]`` theirs."""

    def __init__(self, images, first, labels=None):
        self.images, self.first = images, first
        self.labels = labels

    def floats(self, idx):
        return self.images[torch.as_tensor(idx) - self.first]


def test_a_replay_returns_what_was_computed_without_running_a_step(tmp_path, tiny_cnn):
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = tiny_cnn(images).argmax(1)
    res = OnePixel(tiny_cnn, population=10, generations=2)(images, labels)
    idx = torch.arange(10, 14)
    ev = Evaluation([result_row("No defence", "DE k=1", 0.5, n=4, p_value=float("nan"))], {"DE k=1": res})
    suite = SuiteRows([result_row("APR", "DE k=1", 0.25, n=4)], {("m", 0, "APR", "DE k=1"): res},
                      {("m", 0, "APR"): idx})
    attacked = {("m", 0): idx, ("m", 1): idx[:2]}
    computed = {"ev": ev, "suite": suite, "attacked": attacked}
    profile = get_profile("smoke")
    rec = records.LabRecord("99_test", profile, root=tmp_path, mode="auto")
    assert not rec.replaying  # nothing to replay yet
    rec.rows("ev", lambda: ev, indices=idx)
    rec.rows("suite", lambda: suite)
    rec.result("one", lambda: res, idx, attack="DE k=1")
    rec.array("attacked", lambda: attacked)
    rec.array("probs", lambda: torch.softmax(tiny_cnn(images), 1))
    rec.value("timings", lambda: {"a": 1.5, "b": [float("inf"), 2]})
    rec.text("verdict", lambda: "SUPPORTED (n = 4)")
    written = (tmp_path / "smoke" / "99_test.json").stat().st_mtime_ns

    again = records.LabRecord("99_test", profile, root=tmp_path, mode="only", split=_Split(images, 10))
    assert again.replaying and "replayed from results/smoke/99_test.json" in again.describe()
    ev2 = again.rows("ev", _never, indices=idx)
    assert isinstance(ev2, Evaluation) and ev2.rows[0]["p_value"] != ev2.rows[0]["p_value"]  # NaN comes back
    assert {k: v for k, v in ev2.rows[0].items() if k != "p_value"} == \
        {k: v for k, v in computed["ev"].rows[0].items() if k != "p_value"}
    suite2 = again.rows("suite", _never)
    assert isinstance(suite2, SuiteRows) and list(suite2) == list(suite)
    assert torch.equal(suite2.indices["m", 0, "APR"], idx)
    for replayed in (ev2.results["DE k=1"], suite2.results["m", 0, "APR", "DE k=1"], again.result("one", _never, idx)):
        for field in ("adv_images", *PER_IMAGE):
            want, got = getattr(res, field), getattr(replayed, field)
            assert (want is None and got is None) or torch.equal(want, got), field
    got = again.array("attacked", _never)
    assert list(got) == list(attacked) and all(torch.equal(got[k], attacked[k]) for k in attacked)
    assert torch.equal(again.array("probs", _never), torch.softmax(tiny_cnn(images), 1))
    assert again.value("timings", _never) == {"a": 1.5, "b": [math.inf, 2]}
    assert again.text("verdict", _never) == "SUPPORTED (n = 4)"
    assert again.text("verdict", "derived now") == "derived now"  # a value the lab derived from replayed inputs
    assert (tmp_path / "smoke" / "99_test.json").stat().st_mtime_ns == written  # a replay never rewrites
    with pytest.raises(records.StaleRecord, match="no text 'other'.*--recompute"):
        again.text("other", _never)  # a step the record lacks: stale, and the message says how to recompute


def test_a_changed_profile_recomputes_and_replay_only_names_the_stale_record(tmp_path, monkeypatch):
    profile = get_profile("smoke")
    records.LabRecord("99_test", profile, root=tmp_path).text("verdict", "x")
    changed = dataclasses.replace(profile, n_attack=profile.n_attack + 1)
    rec = records.LabRecord("99_test", changed, root=tmp_path, mode="auto")
    assert not rec.replaying and rec.text("verdict", lambda: "y") == "y"  # auto: recomputes, rewrites
    with pytest.raises(records.StaleRecord, match=r"results/smoke/99_test\.json.*n_attack"):
        records.LabRecord("99_test", profile, root=tmp_path, mode="only")
    with pytest.raises(records.StaleRecord, match="no record"):
        records.LabRecord("98_absent", profile, root=tmp_path, mode="only")
    assert not records.LabRecord("99_test", changed, root=tmp_path, mode="never").replaying
    records.LabRecord("97_set", profile, root=tmp_path, settings=dataclasses.replace(profile, seeds=(0,))).text("t", "x")
    assert records.LabRecord("97_set", profile, root=tmp_path, mode="auto",
                             settings=dataclasses.replace(profile, seeds=(0,))).replaying
    with pytest.raises(records.StaleRecord, match="other settings"):  # a lab's own settings count too
        records.LabRecord("97_set", profile, root=tmp_path, mode="only", settings=dataclasses.replace(profile, seeds=(1,)))
    monkeypatch.setenv("LABKIT_REPLAY", "sometimes")
    with pytest.raises(ValueError, match="LABKIT_REPLAY"):
        records.replay_mode()
    monkeypatch.setenv("LABKIT_REPLAY", "only")  # the environment's mode, when none is given
    assert records.LabRecord("99_test", changed, root=tmp_path).replaying  # the record auto rewrote above


def test_replayed_models_are_keyed_stand_ins_and_a_changed_config_is_stale(tmp_path, monkeypatch):
    profile = get_profile("smoke")
    config = profile.train_config()
    history = [{"epoch": 1, "test_acc": 0.5}, {"epoch": 2, "test_acc": 0.625}]

    def fake_train(c):  # the record's logic, not training, is under test here
        return TrainedModel(torch.nn.Identity(), c, model_key(c), history, 3.0, None, "fp32")

    monkeypatch.setitem(storable.PLANS, TrainConfig, dataclasses.replace(storable.PLANS[TrainConfig], train=fake_train))
    records.LabRecord("99_test", profile, root=tmp_path).models("base", [config])
    monkeypatch.setitem(storable.PLANS, TrainConfig, dataclasses.replace(storable.PLANS[TrainConfig], train=_never))
    rec = records.LabRecord("99_test", profile, root=tmp_path, mode="only")
    (model,) = rec.models("base", [config])
    assert model.key == model_key(config) and model.history == history
    with pytest.raises(RuntimeError, match="no weights"):
        model.model(torch.zeros(1, 3, 32, 32))  # running a replayed model is a lab's mistake, said clearly
    assert model.config is config and model.train_seconds == 3.0 and model.precision_used == "fp32"
    other = dataclasses.replace(config, epochs=config.epochs + 1)
    with pytest.raises(records.StaleRecord, match="other cache keys"):
        rec.models("base", [other])


# -- the generic store: every registered type writes and rebuilds itself ------------------------------------------


def _same(want, got, path="obj"):
    """``got`` (replayed) equals ``want`` (computed): tensors exactly, a model as its keyed ``NoWeights`` stand-in."""
    if isinstance(want, torch.nn.Module):
        assert isinstance(got, storable.NoWeights), path
    elif isinstance(want, torch.Tensor):
        assert torch.equal(want, got), path
    elif isinstance(want, SuiteRows):
        _same(list(want), list(got), path)
        _same(want.results, got.results, f"{path}.results")
        _same(want.indices, got.indices, f"{path}.indices")
    elif dataclasses.is_dataclass(want):
        assert type(got) is type(want), path
        for f in dataclasses.fields(want):
            _same(getattr(want, f.name), getattr(got, f.name), f"{path}.{f.name}")
    elif isinstance(want, dict):
        assert list(want) == list(got), path
        for k in want:
            _same(want[k], got[k], f"{path}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(want) == len(got), path
        for i, (w, g) in enumerate(zip(want, got)):
            _same(w, g, f"{path}[{i}]")
    elif isinstance(want, float) and want != want:
        assert got != got, path  # NaN comes back as NaN
    else:
        assert want == got, path


def test_every_registered_type_round_trips_through_a_record(tmp_path, tiny_cnn, monkeypatch):
    from labkit.attention import AttackedModel  # registers Lab 08's type (labkit.evaluate registered its tables)
    from labkit.suites import Entry, Trained

    pool = torch.rand(20, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    split = _Split(pool, 0, tiny_cnn(pool).argmax(1))
    idx = torch.arange(10, 14)
    x, y = split.floats(idx), split.labels[idx]
    de = OnePixel(tiny_cnn, population=10, generations=2)(x, y)
    corner = CornerSearch(tiny_cnn, max_queries=16)(x, y)
    rows = [result_row("No defence", "DE k=1", 0.5, n=4, p_value=float("nan"))]
    gated = AttackedModel("full (tiny)", "full", "tiny", tiny_cnn, "0123abcd", idx, x, y, rows, {"DE k=1": de},
                          {"DE k=1": verify(tiny_cnn, x, de, 1)})
    config = get_profile("smoke").train_config()
    plan = [config, Entry("Gradient masking", config, paper="x")]
    history = [{"epoch": 1, "test_acc": 0.5}]
    fakes = {TrainConfig: lambda c: TrainedModel(torch.nn.Identity(), c, model_key(c), history, 2.0, None, "bf16"),
             Entry: lambda e: Trained(e, torch.nn.Identity(), storable.PLANS[Entry].key(e), history, 3.0)}
    for cls, fake in fakes.items():  # the record's logic, not training, is under test
        monkeypatch.setitem(storable.PLANS, cls, dataclasses.replace(storable.PLANS[cls], train=fake))

    rec = records.LabRecord("99_test", get_profile("smoke"), root=tmp_path, mode="never")
    computed = {
        "attack": rec.result("attack", de, idx, attack="DE k=1"),
        "evaluation": rec.rows("evaluation", Evaluation(rows, {"DE k=1": de, "corner": corner}), indices=idx),
        "suite": rec.rows("suite", SuiteRows(rows, {("m", 0, "APR", "DE k=1"): de, ("m", 1, "APR", "corner"): corner},
                                             {("m", 0, "APR"): idx, ("m", 1, "APR"): idx})),
        "attacked model": rec.variants("attacked model", {gated.name: gated}, AttackedModel),
    }
    assert set(computed) == set(storable.KINDS)  # a newly registered type needs a round trip here
    assert set(fakes) == set(storable.PLANS)  # and a new plan type too
    trained = rec.models("models", plan)
    assert [type(t) for t in trained] == [TrainedModel, Trained]

    for cls in fakes:
        monkeypatch.setitem(storable.PLANS, cls, dataclasses.replace(storable.PLANS[cls], train=_never))
    again = records.LabRecord("99_test", get_profile("smoke"), root=tmp_path, mode="only", split=split)
    replayed = {
        "attack": again.result("attack", _never, idx),
        "evaluation": again.rows("evaluation", _never),
        "suite": again.rows("suite", _never),
        "attacked model": again.variants("attacked model", _never, AttackedModel),
    }
    _same(computed, replayed)
    again_trained = again.models("models", plan)
    _same(trained, again_trained)
    assert [t.to_record() for t in again_trained] == [t.to_record() for t in trained]
    assert storable.kind_of(computed["suite"]) == "suite" and storable.kind_of(rows) is None  # plain rows: no kind
    assert storable.kind_of(type("Labelled", (SuiteRows,), {})()) == "suite"  # a subclass: as its registered base
    with pytest.raises(TypeError, match="plans of"):
        rec.models("other", ["small_cnn"])  # a plan no type registered
    with pytest.raises(LookupError, match="'no such kind'"):
        storable.kind_class("no such kind")


class _ByIndex:
    """A stand-in CIFAR-10 test split whose image i is a fixed function of i: a committed record's replay needs
    no dataset to show its structure (the real split only changes which pixels are the clean ones)."""

    labels = torch.arange(10_000) % 10

    def floats(self, idx):
        idx = torch.as_tensor(idx).view(-1, 1, 1, 1).float()
        return (idx * 0.618 + torch.arange(3 * 32 * 32).view(1, 3, 32, 32) * 0.001) % 1


def _matches_its_arrays(res, stored, key, split):
    """A replayed result holds what the record's .npz holds for ``key``, and its images are the clean ones with
    the recorded colours at the recorded pixels, nothing else changed."""
    arrays = stored["arrays"]
    for field in PER_IMAGE:
        want = arrays.get(f"{key}/{field}")
        got = getattr(res, field)
        assert (want is None and got is None) or np.array_equal(got.numpy(), want), (key, field)
    clean = split.floats(arrays[f"{key}/index"])
    valid = res.pixels[..., 0] >= 0
    assert (changed_pixels(clean, res.adv_images) <= valid.sum(1)).all()
    i, j = valid.nonzero(as_tuple=True)
    last = [(a, b) for a, b in zip(i.tolist(), j.tolist())
            if not any((res.pixels[a, b] == res.pixels[a, c]).all() for c in range(b + 1, res.pixels.shape[1]))]
    for a, b in last:  # the later of two coinciding pixels wins, as the attack wrote them
        r, c = res.pixels[a, b].tolist()
        assert torch.equal(res.adv_images[a, :, r, c], res.colours[a, b]), (key, a, b)


def test_records_written_before_the_generic_store_replay_through_the_registered_types():
    # results/cpu/ was written when records itself knew Lab 08's, evaluate's and train's types; the types now
    # rebuild themselves, from the same files, unchanged (schema 2).
    from labkit.attention import AttackedModel

    root, split = records.project_root() / "results", _ByIndex()
    cpu, defended = get_profile("cpu"), get_profile("cpu").for_defences()

    lab08 = records.LabRecord("08_attention_maps", defended, root=root, mode="only", split=split)
    stored = records.load("08_attention_maps", "cpu", root=root)
    variants = lab08.variants("variants", _never, AttackedModel)
    assert list(variants) == list(stored["values"]["variants"]) and len(variants) == 3
    for vname, m in variants.items():
        assert (m.name, m.variant, m.key) == (vname, stored["values"]["variants"][vname]["variant"],
                                              stored["values"]["variants"][vname]["key"])
        assert isinstance(m.model, storable.NoWeights) and torch.equal(m.images, split.floats(m.indices))
        assert list(m.results) == ["DE k=1", "corner"] and set(m.verified) == set(m.results)
        assert [r["attack"] for r in m.rows] == list(m.results) and len(m.rows[0]["outcomes"]) == len(m.indices)
        for attack, res in m.results.items():
            _matches_its_arrays(res, stored, f"variants/{vname}/{attack}", split)
            assert not (m.verified[attack] & ~res.success).any()  # verified successes are reported ones

    lab04 = records.LabRecord("04_training_defences", defended, root=root, mode="only", split=split)
    stored = records.load("04_training_defences", "cpu", root=root)
    suite = lab04.rows("suite", _never)
    assert isinstance(suite, SuiteRows) and list(suite) == lab04.stored("tables", "suite")
    assert len(suite.results) == len([k for k in stored["attacks"] if k.startswith("suite/")]) > 0
    for (arch, seed, defence, attack), res in suite.results.items():
        _matches_its_arrays(res, stored, f"suite/{arch}/{seed}/{defence}/{attack}", split)
        assert torch.equal(suite.indices[arch, seed, defence], torch.from_numpy(
            stored["arrays"][f"suite/{arch}/{seed}/{defence}/{attack}/index"]))

    lab01 = records.LabRecord("01_one_pixel_attack", cpu, root=root, mode="only", split=split)
    stored = records.load("01_one_pixel_attack", "cpu", root=root)
    (model,) = lab01.models("base", [cpu.train_config()])  # its key still matches: the same config, the same key
    assert isinstance(model, TrainedModel) and model.to_record() == stored["models"]["base"][0]
    corner = lab01.result("corner", _never, None)
    _matches_its_arrays(corner, stored, "corner", split)


# -- provenance: the code a record ran, the device's bf16 -----------------------------------------------------


def test_the_code_fingerprint_is_stable_and_follows_each_modules_source(tmp_path, monkeypatch):
    for name in ("fp_probe_a", "fp_probe_b"):
        (tmp_path / f"{name}.py").write_text(f"X = {name!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = records.code_fingerprint(["fp_probe_a", "fp_probe_b"])
    assert first == records.code_fingerprint(["fp_probe_b", "fp_probe_a"])  # a set of modules: order is no matter
    assert set(first["modules"]) == {"fp_probe_a", "fp_probe_b"} and len(first["fingerprint"]) == 16
    (tmp_path / "fp_probe_a.py").write_text("X = 'changed'\n")
    second = records.code_fingerprint(["fp_probe_a", "fp_probe_b"])
    assert second["fingerprint"] != first["fingerprint"]
    assert second["modules"]["fp_probe_a"] != first["modules"]["fp_probe_a"]
    assert second["modules"]["fp_probe_b"] == first["modules"]["fp_probe_b"]
    assert records.code_fingerprint(["fp_probe_absent"])["modules"] == {}  # no source, nothing to hash
    default = records.code_fingerprint()["modules"]  # the labkit modules imported now, presentation left out
    assert {"labkit.evaluate", "labkit.attacks.onepixel", "labkit.precision"} <= set(default)
    assert not set(default) & set(records.NOT_FINGERPRINTED) and all(m.startswith("labkit") for m in default)
    importlib.import_module("labkit.plotting.proofs")  # a submodule of a package left out is left out too
    assert not any(m.startswith("labkit.plotting") for m in records.code_fingerprint()["modules"])


def test_a_new_record_keeps_its_code_and_bf16_and_a_replay_names_the_modules_changed_since(tmp_path, monkeypatch):
    profile = get_profile("smoke")
    records.LabRecord("99_test", profile, root=tmp_path).text("verdict", "x")
    prov = _strict(tmp_path / "smoke" / "99_test.json")["provenance"]
    assert prov["bf16_native"] == records.native_bf16("cpu")
    assert prov["code"] == records.code_fingerprint(list(prov["code"]["modules"]))
    assert "labkit.evaluate" in prov["code"]["modules"] and "labkit.records" not in prov["code"]["modules"]
    rec = records.LabRecord("99_test", profile, root=tmp_path, mode="only")
    said = rec.describe()
    assert rec.code_drift() == [] and f"Code: the record's (fingerprint {prov['code']['fingerprint']})" in said
    assert ("native bf16" if prov["bf16_native"] else "no native bf16") in said

    real = records._module_source
    edited = {"labkit.evaluate": b"# the attack loop changed\n", "labkit.stats": None}  # None: the module is gone
    monkeypatch.setattr(records, "_module_source", lambda name: edited[name] if name in edited else real(name))
    assert rec.code_drift() == ["labkit.evaluate", "labkit.stats (removed)"]
    said = rec.describe()
    assert "differs from the record's in labkit.evaluate, labkit.stats (removed)" in said
    assert "recomputing may give other numbers" in said and "replayed from results/smoke/99_test.json" in said
    assert rec.text("verdict", _never) == "x"  # drift is said, not stale: the record still replays


def test_an_old_record_replays_and_says_what_it_does_not_know(tmp_path):
    profile = get_profile("smoke")
    records.LabRecord("99_test", profile, root=tmp_path).text("verdict", "x")
    path = tmp_path / "smoke" / "99_test.json"
    data = json.loads(path.read_text())
    for key in ("code", "bf16_native"):  # what records written before fingerprints lack
        del data["provenance"][key]
    data["provenance"]["precision"] = "precision: auto -> fp32 (this CPU has no native bf16)"
    path.write_text(json.dumps(data))
    rec = records.LabRecord("99_test", profile, root=tmp_path, mode="only")
    assert rec.replaying and rec.code_drift() == [records.UNFINGERPRINTED]
    said = rec.describe()
    commit = (data["provenance"]["commit"] or "")[:12]
    assert "(CPU), no native bf16, labkit" in said and "Code: not fingerprinted" in said
    assert (f"`git diff {commit} -- labkit`" if commit else "what changed is unknown") in said
    data["provenance"]["precision"] = None
    path.write_text(json.dumps(data))
    assert "bf16 support not recorded" in records.LabRecord("99_test", profile, root=tmp_path, mode="only").describe()


def test_the_committed_cpu_records_replay_unchanged_and_name_their_bf16():
    root = records.project_root() / "results"
    path = root / "cpu" / "05_apr.json"
    before = path.read_bytes()
    rec = records.LabRecord("05_apr", get_profile("cpu").for_defences(), root=root, mode="only")
    assert rec.code_drift() == [records.UNFINGERPRINTED] and "Code: not fingerprinted" in rec.describe()
    natives = {lab: records.bf16_native(d["provenance"]) for lab, d in records.load_all("cpu", root=root).items()}
    assert natives["05_apr"] is True and natives["10_survey_attacks"] is False  # two CPUs, both "AMD EPYC"
    assert "AMD EPYC, 1 PyTorch threads (CPU), native bf16" in rec.describe()
    assert path.read_bytes() == before
