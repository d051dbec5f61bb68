"""Settings and tables as a reader should see them (presentation layer: imports nothing from labkit).

``settings_rows`` turns a frozen config (``Profile``, a lab's ``*Config``) into (setting, value) rows, so a page
shows a small two-column table instead of a one-line repr thousands of pixels wide; nested dataclasses are
flattened into dotted names, fields hidden from the repr stay hidden.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["settings_rows", "shown"]


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
