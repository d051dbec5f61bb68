"""Settings and tables as a reader should see them (presentation layer: imports nothing from labkit).

``settings_rows`` turns a frozen config (``Profile``, a lab's ``*Config``) into (setting, value) rows, so a page
shows a small two-column table instead of a one-line repr thousands of pixels wide; nested dataclasses are
flattened into dotted names, fields hidden from the repr stay hidden.

``install`` makes every pandas table a lab displays read as a table in a paper does: a missing cell is "—", not
``NaN`` or ``None``, and a float column that holds only whole numbers (counts that pandas turned into floats,
``1775.00``) prints them as integers. One formatter for every lab, registered with IPython's display; the
DataFrames themselves are unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

__all__ = ["MISSING", "frame_html", "install", "settings_rows", "shown"]

#: What a missing table cell shows.
MISSING = "—"


def shown(value: Any) -> str:
    """A setting's value in words: sequences joined by commas, None as "—" (not set), numbers as Python writes
    them."""
    if value is None:
        return "—"
    if isinstance(value, (tuple, list)):
        return ", ".join(shown(v) for v in value) if value else "—"
    return str(value)


def settings_rows(config: Any, prefix: str = "") -> list[dict[str, str]]:
    """[{"setting": name, "value": words}] for every field of the dataclass ``config`` shown in its repr, nested
    dataclasses flattened (``"de.population"``). Raises TypeError for anything that is not a dataclass instance."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"settings_rows takes a dataclass instance, not {type(config).__name__}")
    rows: list[dict[str, str]] = []
    for f in dataclasses.fields(config):
        if not f.repr:
            continue
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            rows += settings_rows(value, f"{prefix}{f.name}.")
        else:
            rows.append({"setting": prefix + f.name, "value": shown(value)})
    return rows


def _whole(column: pd.Series) -> bool:
    """Whether a float column holds only whole numbers (missing cells aside) and at least one."""
    values = column.dropna()
    return pd.api.types.is_float_dtype(column) and len(values) > 0 and bool((values == values.round()).all()) \
        and bool((values.abs() < 2 ** 53).all())


def _label(value: Any) -> Any:
    """A row or column label, missing ones (None, NaN) as ``MISSING``."""
    missing = value is None or (isinstance(value, float) and value != value) or value is pd.NA
    return MISSING if missing else value


def frame_html(frame: pd.DataFrame) -> str:
    """``frame`` as HTML the way the labs show tables: missing cells as ``MISSING``, whole-number float columns as
    integers, pandas' own row and column limits and float precision otherwise."""
    shown_frame = frame.rename(index=_label, columns=_label)  # a copy: the caller's frame stays as it is
    for i in range(shown_frame.shape[1]):  # by position: labels may repeat
        if _whole(shown_frame.iloc[:, i]):
            shown_frame.isetitem(i, shown_frame.iloc[:, i].map(lambda v: MISSING if pd.isna(v) else int(v)))
    return shown_frame.to_html(na_rep=MISSING, max_rows=pd.get_option("display.max_rows"),
                               max_cols=pd.get_option("display.max_columns"), show_dimensions=False,
                               notebook=True)


def install() -> bool:
    """Show every DataFrame through ``frame_html`` in this IPython kernel (a lab calls it in its set-up cell);
    False, and nothing changed, outside IPython."""
    try:
        from IPython import get_ipython  # IPython is the notebooks' kernel, not a dependency of labkit's methods
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, frame_html)
    return True
