"""The published book builds (warnings are errors) and its lab pages render offline.

One build per test session, into a temporary folder, with `tools/build_book.py --profile cpu --replay-only`:
the book `make book` builds, every lab replaying its committed record (results/cpu/), so CI also checks that
those records still replay with the current code. Each page in PAGES is then opened in headless Chromium
with name resolution switched off, and the rendered DOM must show the figures and the ipywidgets, with no
request having left the machine. Chromium missing: skipped on a workstation, a failure in CI (env CI set).

To check another lab, add a Page to PAGES (e.g. Page("notebooks/08_...", {"widget-hprogress"})).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

pytestmark = pytest.mark.book

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 3600  # replayed labs take seconds each; this only stops a hung kernel
RENDER_BUDGET_MS = 20_000  # Chromium's virtual time for scripts (widgets, MathJax) to finish
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
VOID_TAGS = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


@dataclasses.dataclass(frozen=True)
class Page:
    """A built page and what its rendered DOM must contain."""

    name: str  # docname, e.g. notebooks/01_one_pixel_attack (HTML at <html>/<name>.html)
    widget_classes: frozenset[str]  # CSS classes html-manager gives rendered widgets
    min_figures: int = 1  # matplotlib images in cell outputs


PAGES = [
    # Lab 01's attack browser has a slider (widget-slider) besides its figures (a replay has no progress bars).
    Page("notebooks/01_one_pixel_attack", frozenset({"widget-slider"})),
    # Lab 08's attention explorer: dropdowns and an Output widget holding the saved panel; five static figures.
    Page("notebooks/08_attention_maps", frozenset({"widget-dropdown", "widget-output"}), min_figures=5),
]


class DomSummary(HTMLParser):
    """What the checks need from a rendered page, gathered in one pass."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.classes: set[str] = set()
        self.resources: list[str] = []  # src/href of scripts, stylesheets, images
        self.output_images: list[str] = []  # img src inside cell outputs
        self.widget_views = 0  # saved widget views (<script type=...widget-view+json>)
        self.rendered_views = 0  # .widget-subarea blocks holding a rendered widget
        self._stack: list[set[str]] = []
        self._subarea_depth: int | None = None
        self._subarea_rendered = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        classes = set(attributes.get("class", "").split())
        self.classes |= classes
        if tag in ("script", "img") and attributes.get("src"):
            self.resources.append(attributes["src"])
        if tag == "link" and "stylesheet" in attributes.get("rel", ""):
            self.resources.append(attributes.get("href", ""))
        if tag == "img" and any("cell_output" in c for c in self._stack):
            self.output_images.append(attributes.get("src", ""))
        if tag == "script" and attributes.get("type") == "application/vnd.jupyter.widget-view+json":
            self.widget_views += 1
        if self._subarea_depth is not None and "jupyter-widgets" in classes:
            self._subarea_rendered = True
        if tag in VOID_TAGS:
            return
        self._stack.append(classes)
        if "widget-subarea" in classes and self._subarea_depth is None:
            self._subarea_depth = len(self._stack)
            self._subarea_rendered = False

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_TAGS or not self._stack:
            return
        if self._subarea_depth == len(self._stack):
            self.rendered_views += int(self._subarea_rendered)
            self._subarea_depth = None
        self._stack.pop()


def find_chromium() -> str | None:
    candidates = [os.environ.get("CHROMIUM", ""), *CHROMIUM_NAMES]
    return next((found for name in candidates if name and (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        message = f"none of {', '.join(CHROMIUM_NAMES)} is installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {message}")
        pytest.skip(f"{message}; CI is unset, so the rendering check is skipped")
    return found


@pytest.fixture(scope="module")
def html_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the book once for this module; return its HTML folder."""
    out = tmp_path_factory.mktemp("book") / "_build"
    command = [sys.executable, "tools/build_book.py", "--profile", "cpu", "--replay-only", "--out", str(out)]
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        log = (result.stdout + result.stderr)[-8000:]
        pytest.fail(f"{' '.join(command)} exited with {result.returncode}:\n{log}", pytrace=False)
    return out / "html"


def render(chromium: str, page: Path, workdir: Path) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran, and the URLs the page itself asked the network for."""
    netlog = workdir / "netlog.json"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={workdir / 'profile'}",
        # No name resolves: a page that needed the network would show it by failing to render.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--log-net-log={netlog}",
        f"--virtual-time-budget={RENDER_BUDGET_MS}",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"chromium failed: {result.stderr[-3000:]}"
    events = json.loads(netlog.read_text(encoding="utf-8"))["events"]
    # Chromium's own background requests carry the initiator "not an origin"; requests a page
    # opened from file:// makes carry its opaque origin, "null".
    requested = sorted(
        {
            e["params"]["url"]
            for e in events
            if "url" in e.get("params", {})
            and e["params"].get("initiator") not in (None, "not an origin")
        }
    )
    return result.stdout, requested


def is_local(url: str) -> bool:
    return urlparse(url).scheme in ("", "file", "data")


def test_book_builds(html_dir: Path) -> None:
    assert (html_dir / "index.html").is_file()
    status = (html_dir / "book" / "execution_status.html").read_text(encoding="utf-8")
    labs = sorted((REPO_ROOT / "notebooks").glob("[0-9]*.ipynb"))
    assert status.count("<td><p>replayed</p></td>") == len(labs), "every lab replays its committed cpu record"
    for lab in labs:
        page = (html_dir / "notebooks" / f"{lab.stem}.html").read_text(encoding="utf-8")
        assert f"replayed from results/cpu/{lab.stem}.json" in page, f"{lab.stem} does not say where its numbers are from"


def test_no_page_shows_the_building_machines_paths(html_dir: Path) -> None:
    local = {str(REPO_ROOT), str(Path.home()), os.environ.get("LABKIT_DATA") or str(REPO_ROOT)}
    for page in sorted(html_dir.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        shown = [p for p in local if p in text]
        assert not shown, f"{page.relative_to(html_dir)} shows local paths {shown}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name.split("/")[-1])
def test_page_renders_offline(page: Page, html_dir: Path, chromium: str, tmp_path: Path) -> None:
    path = html_dir / f"{page.name}.html"
    assert path.is_file(), f"{path} was not built (is {page.name} in _toc.yml?)"
    dom_text, requested = render(chromium, path, tmp_path)
    dom = DomSummary()
    dom.feed(dom_text)

    # (c) Nothing came from, or was asked of, the network.
    remote = [url for url in dom.resources if not is_local(url)]
    assert not remote, f"the page loads remote resources: {remote}"
    assert not requested, f"the page made network requests: {requested}"

    # (a) The matplotlib figures are there, as data URIs or files that exist.
    figures = [
        src
        for src in dom.output_images
        if src.startswith("data:image/") or (path.parent / unquote(urlparse(src).path)).is_file()
    ]
    assert len(figures) >= page.min_figures, (
        f"{len(figures)} figure(s) found, {page.min_figures} expected; output images: "
        f"{dom.output_images}"
    )

    # (b) The widgets rendered: every saved widget view got its DOM, of the expected kinds.
    assert dom.widget_views > 0, "the page carries no widget state (was it saved when executed?)"
    assert dom.rendered_views == dom.widget_views, (
        f"{dom.rendered_views} of {dom.widget_views} widget views rendered: the widget JavaScript "
        "did not run (see book/vendor/README.md)"
    )
    missing = page.widget_classes - dom.classes
    assert not missing, f"no rendered widget with class(es) {sorted(missing)}"
    assert "jupyter-widgets-error-widget" not in dom.classes, "a widget failed to load"

    # Maths, where the page has any, was typeset by the vendored MathJax.
    if "math" in dom.classes:
        assert "<mjx-container" in dom_text, "the page's maths was not typeset (MathJax)"
