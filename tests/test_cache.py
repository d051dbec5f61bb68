"""The config-hash cache: stable keys, atomic writes, corrupt and stale files refused."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from labkit.cache import cache_path, cache_root, canonical, config_key, load_checked, save_atomic


@dataclass(frozen=True)
class A:
    x: float = 1.0
    y: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class B:
    x: float = 1.0
    y: tuple[int, ...] = (1, 2)


def test_keys_are_stable_and_sensitive():
    assert config_key(A()) == config_key(A())
    assert config_key(A()) != config_key(A(x=2.0))
    assert config_key(A()) != config_key(B())  # same fields, other type
    assert config_key(A(x=1.0)) == config_key(A(x=1))  # 1.0 and 1 mean the same
    assert canonical({"b": 1, "a": [A()]}) == {"a": [{"__type__": "A", "x": 1, "y": [1, 2]}], "b": 1}
    with pytest.raises(TypeError):
        config_key(object())


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert cache_path("models", "k").parent.is_dir()


def test_save_is_atomic_and_loads_weights_only(tmp_cache):
    path = cache_path("t", "k")
    save_atomic({"a": torch.ones(2), "cfg": {"x": 1}}, path)
    assert load_checked(path, {"cfg": {"x": 1}})["a"].sum() == 2
    assert [p.name for p in path.parent.iterdir()] == ["k.pt"]  # no temporary left behind


def test_failed_write_keeps_the_old_file(tmp_cache):
    path = cache_path("t", "k")
    save_atomic({"v": 1}, path)
    with pytest.raises(Exception):
        save_atomic({"v": lambda: 0}, path)  # not picklable: the write fails midway
    assert load_checked(path)["v"] == 1
    assert len(list(path.parent.iterdir())) == 1


def test_corrupt_stale_and_missing_files_are_refused(tmp_cache):
    path = cache_path("t", "k")
    assert load_checked(path) is None
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        assert load_checked(path) is None
    save_atomic({"cfg": 1}, path)
    with pytest.warns(UserWarning, match="does not match"):
        assert load_checked(path, {"cfg": 2}) is None


def test_code_in_a_cache_file_is_never_run(tmp_cache):
    path = cache_path("t", "evil")
    torch.save({"obj": A()}, path)  # a pickled class instance: weights_only refuses it
    with pytest.warns(UserWarning):
        assert load_checked(path) is None


def test_a_field_added_later_stays_out_of_the_key_while_default():
    import dataclasses

    from labkit.cache import NEW_FIELD

    @dataclasses.dataclass(frozen=True)
    class Before:
        x: int = 1

    @dataclasses.dataclass(frozen=True)
    class Before_:  # the same config after growing a field
        x: int = 1
        extra: str = dataclasses.field(default="old behaviour", metadata=NEW_FIELD)

    Before_.__name__ = "Before"
    assert config_key(Before_()) == config_key(Before())
    assert config_key(Before_(extra="new")) != config_key(Before())
    assert canonical(Before_(extra="new"))["extra"] == "new"


def test_a_not_keyed_field_never_enters_the_key():
    import dataclasses

    from labkit.cache import NOT_KEYED

    @dataclasses.dataclass(frozen=True)
    class Sized:
        x: int = 1
        sizes: tuple = dataclasses.field(default=(), metadata=NOT_KEYED)

    assert canonical(Sized(sizes=(("a", 1),))) == canonical(Sized()) == {"__type__": "Sized", "x": 1}
    assert config_key(Sized(x=2, sizes=(("a", 1),))) == config_key(Sized(x=2)) != config_key(Sized())
