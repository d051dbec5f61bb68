"""Steps applied to the built HTML book after ``jupyter-book build`` (issue #25, "Weight").

Wiring: ``tools/build_book.py``'s ``main()`` calls ``strip_source_maps`` on the HTML folder right after
``build_html`` returns.

This module imports nothing outside the standard library, like build_book.py.
"""

from __future__ import annotations

import re
from pathlib import Path

#: The comment a minified script or stylesheet ends with to point a browser's developer tools at its map:
#: ``//# sourceMappingURL=x.js.map`` (JavaScript) or ``/*# sourceMappingURL=x.css.map */`` (CSS).
SOURCE_MAP_COMMENT = re.compile(
    r"^[ \t]*(?://[#@]\s*sourceMappingURL=\S*|/\*[#@]\s*sourceMappingURL=\S*\s*\*/)[ \t]*(?:\r?\n|$)", re.MULTILINE)


def strip_source_maps(html_dir: Path) -> list[Path]:
    """Delete every source map (``*.map``) under ``html_dir`` and the comments that point to them.

    Source maps only serve developer tools (the theme's and the widget manager's ship 3-4 MB of them); a reader
    never loads one. Their ``sourceMappingURL`` comments are removed too, so no script names a missing file.
    Returns the deleted maps (paths under ``html_dir``). Raises FileNotFoundError if ``html_dir`` is not a folder.
    """
    if not html_dir.is_dir():
        raise FileNotFoundError(f"{html_dir} is not a built book's folder")
    removed = sorted(p for p in html_dir.rglob("*.map") if p.is_file())
    for path in removed:
        path.unlink()
    for path in [*html_dir.rglob("*.js"), *html_dir.rglob("*.css")]:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        if "sourceMappingURL" not in text:
            continue
        stripped = SOURCE_MAP_COMMENT.sub("", text)
        if stripped != text:
            path.write_text(stripped, encoding="utf-8", errors="surrogateescape")
    return removed
