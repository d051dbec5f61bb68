"""labkit.tables: settings as (setting, value) rows instead of a repr."""

from __future__ import annotations

import dataclasses

import pytest

from labkit import tables
from labkit.profiles import get_profile


@dataclasses.dataclass(frozen=True)
class Inner:
    population: int = 400


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "cpu"
    sizes: tuple[int, ...] = (1, 3, 5)
    limit: int | None = None
    de: Inner = Inner()
    hidden: int = dataclasses.field(default=7, repr=False)


def test_settings_rows_flatten_nested_configs_and_keep_hidden_fields_hidden() -> None:
    rows = tables.settings_rows(Outer())
    assert rows == [{"setting": "name", "value": "cpu"}, {"setting": "sizes", "value": "1, 3, 5"},
                    {"setting": "limit", "value": "—"}, {"setting": "de.population", "value": "400"}]


def test_a_profile_is_shown_without_any_repr() -> None:
    rows = tables.settings_rows(get_profile("cpu"))
    assert rows and all("(" not in r["value"] or not r["value"].split("(")[0].endswith(("Config", "Profile"))
                        for r in rows)
    assert {r["setting"] for r in rows} >= {"name", "population", "generations"}


def test_settings_rows_refuse_what_is_not_a_config() -> None:
    with pytest.raises(TypeError, match="dataclass instance"):
        tables.settings_rows({"name": "cpu"})
