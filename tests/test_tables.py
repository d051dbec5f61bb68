"""labkit.tables: settings as (setting, value) rows instead of a repr."""

from __future__ import annotations

import dataclasses

import pandas as pd
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


def test_tables_show_missing_cells_as_a_dash_and_counts_as_integers() -> None:
    frame = pd.DataFrame({"model": ["AT", "APR", None], "queries": [1775.0, float("nan"), 12.0],
                          "asr": [0.125, 0.5, float("nan")]}).set_index("model")
    html = tables.frame_html(frame)
    assert "NaN" not in html and "None" not in html and html.count(tables.MISSING) == 3
    assert ">1775<" in html and "1775.0" not in html  # a count stays a count
    assert "0.125" in html and ">12<" in html
    assert frame["queries"].dtype == float  # the displayed copy changed, not the frame


def test_install_registers_the_formatter_only_inside_ipython(monkeypatch) -> None:
    import IPython

    assert tables.install() is False  # plain Python: nothing to register with

    class Formatter:
        def __init__(self) -> None:
            self.types: dict[type, object] = {}

        def for_type(self, typ: type, func: object) -> None:
            self.types[typ] = func

    html = Formatter()
    shell = type("Shell", (), {"display_formatter": type("D", (), {"formatters": {"text/html": html}})()})()
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    assert tables.install() is True and html.types[pd.DataFrame] is tables.frame_html
