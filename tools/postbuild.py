"""Steps applied to the built HTML book after ``jupyter-book build`` (issue #25, "Weight").

Wiring: ``tools/build_book.py``'s ``main()`` calls ``strip_source_maps``, ``drop_unloaded_assets`` and
``palette_images`` on the HTML folder right after ``build_html`` returns.

This module imports nothing outside the standard library but Pillow and numpy (which matplotlib brings into every
labkit environment), and those only inside ``palette_images``.
"""

from __future__ import annotations

import io
import math
import re
import shutil
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


#: The scripts book/vendor/ puts at the root of the book (``html_extra_path``), each with the licences that ship
#: with it: kept only where some page loads the script.
VENDORED = {"require.js": (), "embed-amd.js": ("LICENSE-html-manager.txt",),
            "tex-svg-full.js": ("LICENSE-mathjax.txt",)}


def drop_unloaded_assets(html_dir: Path) -> list[Path]:
    """Delete the files copied into the book that no page loads; returns them (paths under ``html_dir``).

    - ``_static/locales/``: sphinx-book-theme's translation catalogues (``.po``/``.mo``, 0.7 MB), read by Sphinx
      while it writes the pages, never by a browser;
    - a ``.ttf`` font beside a ``.woff2`` of the same name (Font Awesome's, 0.7 MB): the stylesheets list the
      woff2 first, and every browser that runs the book's scripts reads woff2, so the TrueType fallback is never
      fetched;
    - a vendored script (``VENDORED``) that no page names, with its licences: the ipywidgets manager (4.3 MB) is
      loaded only by pages that carry widget state, and a replayed book has none (its interactive views are
      ``labkit.widgets`` boards; a computed book keeps it for its progress bars).
    """
    if not html_dir.is_dir():
        raise FileNotFoundError(f"{html_dir} is not a built book's folder")
    removed: list[Path] = []
    locales = html_dir / "_static" / "locales"
    if locales.is_dir():
        removed += sorted(p for p in locales.rglob("*") if p.is_file())
        shutil.rmtree(locales)
    for font in sorted(html_dir.rglob("*.ttf")):
        if font.with_suffix(".woff2").is_file():
            font.unlink()
            removed.append(font)
    pages = [page.read_text(encoding="utf-8", errors="replace") for page in html_dir.rglob("*.html")]
    for script, licences in VENDORED.items():
        if (html_dir / script).is_file() and not any(script in page for page in pages):
            for path in (html_dir / script, *(html_dir / name for name in licences)):
                if path.is_file():
                    path.unlink()
                    removed.append(path)
    return removed


def palette_images(html_dir: Path, colours: int = 256, min_psnr: float = 35.0) -> tuple[int, int]:
    """Rewrite the book's figures (``_images/*.png``) as 8-bit palette PNGs where that loses nothing visible.

    A figure is rewritten only if it is opaque (a palette of RGB colours would turn transparency black), its
    palette version is smaller, and that version differs from it by at least ``min_psnr`` dB of peak
    signal-to-noise ratio (35 dB: differences of a few levels in 255, invisible in plots and heat maps). The
    widget views are palette PNGs already (``labkit.widgets``). Returns (bytes before, bytes after) over all
    ``_images/*.png``.
    """
    import numpy as np
    from PIL import Image

    before = after = 0
    for path in sorted((html_dir / "_images").glob("*.png")):
        data = path.read_bytes()
        before += len(data)
        image = Image.open(io.BytesIO(data))
        opaque = image.mode == "RGB" or (image.mode == "RGBA" and image.getchannel("A").getextrema()[0] == 255)
        smaller = None
        if opaque:
            rgb = image.convert("RGB")
            palette = rgb.quantize(colors=colours)
            out = io.BytesIO()
            palette.save(out, format="PNG", optimize=True)
            error = np.mean((np.asarray(rgb, dtype=np.float64) - np.asarray(palette.convert("RGB"))) ** 2)
            psnr = math.inf if error == 0 else 10 * math.log10(255**2 / error)
            if len(out.getvalue()) < len(data) and psnr >= min_psnr:
                smaller = out.getvalue()
        if smaller is not None:
            path.write_bytes(smaller)
        after += len(smaller if smaller is not None else data)
    return before, after
