"""The published book builds (warnings are errors) and its lab pages render offline.

One build per test session, into a temporary folder, with `tools/build_book.py --profile cpu --replay-only`:
the book `make book` builds, every lab replaying its committed record (results/cpu/), so CI also checks that
those records still replay with the current code. Each page in PAGES is then opened in headless Chromium
with name resolution switched off, and the rendered DOM must show the figures and the interactive views
(``labkit.widgets.Switchboard``), with no request having left the machine. Chromium missing: skipped on a
workstation, a failure in CI (env CI set).

To check another lab, add a Page to PAGES (e.g. Page("notebooks/08_...", frozenset({"select"}))).
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from labkit import papers

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
    controls: frozenset[str]  # the kinds of control its views have: "select" (a dropdown), "range" (a slider)
    min_figures: int = 1  # matplotlib images in cell outputs


PAGES = [
    # Lab 01's attack browser: an image slider and a dropdown over precomputed pictures, besides its figures.
    Page("notebooks/01_one_pixel_attack", frozenset({"range", "select"})),
    # Lab 08's attention explorer: three dropdowns over precomputed pictures; five static figures.
    Page("notebooks/08_attention_maps", frozenset({"select"}), min_figures=5),
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
        self.boards = 0  # labkit.widgets.Switchboard blocks
        self.board_controls: set[str] = set()  # "select" / "range" controls inside them
        self.board_views = 0  # their pictures
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
        self.boards += "labkit-board" in classes
        if any("labkit-board" in c for c in self._stack):
            if tag == "select" or (tag == "input" and attributes.get("type") == "range"):
                self.board_controls.add("select" if tag == "select" else "range")
            self.board_views += tag == "img" and "labkit-view" in classes
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
    """Build the book once for this module; return its HTML folder (``$LABKIT_BOOK_HTML``, when set: a book
    built before, e.g. to rerun the browser checks while working on the pages)."""
    if os.environ.get("LABKIT_BOOK_HTML"):
        return Path(os.environ["LABKIT_BOOK_HTML"])
    out = tmp_path_factory.mktemp("book") / "_build"
    command = [sys.executable, "tools/build_book.py", "--profile", "cpu", "--replay-only", "--jobs", "2", "--out", str(out)]
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
    # blob: URLs are objects in the page's own memory (an Image widget shows its PNG bytes through one).
    return urlparse(url).scheme in ("", "file", "data", "blob")


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

    # (b) The interactive views are there with their controls; any saved ipywidget (a computed page's progress
    # bars) got its DOM.
    assert dom.boards > 0 and dom.board_views > 1, "the page shows no interactive view (labkit.widgets)"
    missing = page.controls - dom.board_controls
    assert not missing, f"no {sorted(missing)} control in the page's interactive views"
    assert dom.rendered_views == dom.widget_views, (
        f"{dom.rendered_views} of {dom.widget_views} widget views rendered: the widget JavaScript "
        "did not run (see book/vendor/README.md)"
    )
    assert "jupyter-widgets-error-widget" not in dom.classes, "a widget failed to load"

    # Maths, where the page has any, was typeset by the vendored MathJax.
    if "math" in dom.classes:
        assert "<mjx-container" in dom_text, "the page's maths was not typeset (MathJax)"


# -- Reading the book in a browser (issue #25) ------------------------------------------------------------------------
# These open pages in one headless Chromium driven over the DevTools protocol (websocket-client, which Jupyter's
# server already requires), so that a page can be measured and its controls changed, not only dumped.

WIDTHS = (1280, 800)  # window widths, CSS px: a laptop, and a narrow window / tablet
SKIPPED_PAGES = ("genindex.html", "search.html")  # Sphinx's own pages, no content column to speak of
LANDING = Path("book") / "intro.html"  # the root page; index.html only redirects to it
SETTLE_TIMEOUT_S = 30.0  # how long a page may take to render its widgets and maths

#: Every element inside the content column (``article.bd-article``) must fit inside it: neither reach outside
#: it nor hold content wider than itself (``scrollWidth > clientWidth``), whether that content spills out or
#: scrolls sideways. Exempt, and said so in each failure message: the boxes that scroll by design (EXEMPT: code,
#: not a cell's printed output; the table and widget-output boxes of book/_static/lab.css; display maths; a
#: slider's track), which must fit themselves,
#: and text clipped by design (``overflow-x: hidden``, e.g. a widget's label, which ends in an ellipsis).
#: Elements that are not laid out (display: none) are skipped. The innermost offender is named.
EXEMPT = ("div.cell_input", "div.highlight:not(.cell_output div.highlight)", "pre:not(.cell_output pre)",  # code
          ".output.text_html", ".output.text_markdown",
          ".pst-scrollable-table-container", ".math", "mjx-container", ".widget-output",
          ".jupyter-widgets-output-area",
          ".noUi-target")  # a slider's track: its handle sits half outside the track's origin by design
OVERFLOW_SCRIPT = r"""
((exempt) => {
  const col = document.querySelector('article.bd-article');
  if (!col) return {error: 'no article.bd-article on the page'};
  const cr = col.getBoundingClientRect();
  const found = [];
  const name = el => {
    let s = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '');
    if (el.classList.length) s += '.' + [...el.classList].slice(0, 3).join('.');
    const sec = el.closest('section[id]');
    const text = (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 60);
    return s + (sec ? ' in section #' + sec.id : '') + (text ? ' ("' + text + '")' : '');
  };
  const byDesign = el => exempt.some(sel => el.matches(sel));
  // Returns whether el or something inside it was reported.
  const check = (el) => {
    let reported = false;
    for (const c of el.children) {
      const st = getComputedStyle(c);
      if (st.display === 'none') continue;
      const r = c.getBoundingClientRect();
      if (r.width > 0 && (r.right > cr.right + 1 || r.left < cr.left - 1)) {
        found.push({element: name(c), width: Math.round(r.width), column: Math.round(cr.width), how: 'outside'});
        reported = true;
        continue;
      }
      if (['hidden', 'clip'].includes(st.overflowX)) continue;  // clipped by design
      const scrolls = ['auto', 'scroll'].includes(st.overflowX);
      if (byDesign(c)) continue;  // its content is laid out so by design (it scrolls), and the box fits
      const inner = check(c);
      const wide = c.scrollWidth > c.clientWidth + 1 && c.clientWidth > 0 && st.display !== 'inline';
      if (wide && !inner) {
        found.push({element: name(c), width: c.scrollWidth, column: Math.round(cr.width),
                    how: scrolls ? 'scrolls' : 'spills'});
      }
      reported = reported || inner || wide;
    }
    return reported;
  };
  check(col);
  if (col.scrollWidth > col.clientWidth + 1)
    found.push({element: 'the column itself', width: col.scrollWidth, column: col.clientWidth, how: 'spills'});
  return {found: found.slice(0, 8), column: Math.round(cr.width)};
})
"""


def overflow_report(browser: "Browser") -> dict:
    """OVERFLOW_SCRIPT's findings on the page open in ``browser``."""
    report = browser.evaluate(f"{OVERFLOW_SCRIPT}({json.dumps(list(EXEMPT))})")
    assert isinstance(report, dict) and "error" not in report, report
    return report


#: True once every saved widget view has rendered (or the page has none) and MathJax, if any, is done.
SETTLED_SCRIPT = r"""
(() => {
  if (document.readyState !== 'complete') return false;
  const saved = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
  const rendered = [...document.querySelectorAll('.widget-subarea')]
    .filter(s => s.querySelector('.jupyter-widgets')).length;
  const maths = document.querySelectorAll('.math').length;
  const typeset = document.querySelectorAll('mjx-container').length;
  return rendered >= saved && (maths === 0 || typeset > 0);
})()
"""


class Browser:
    """One headless Chromium, one tab, driven over the DevTools protocol; names resolve nowhere (offline)."""

    def __init__(self, chromium: str, workdir: Path) -> None:
        import time
        import urllib.request

        websocket = pytest.importorskip("websocket")  # websocket-client
        profile = workdir / "cdp-profile"
        self.process = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND",
             "--remote-debugging-port=0", "--remote-allow-origins=*", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                pytest.fail("Chromium did not open its DevTools port")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self.next_id = 0
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, **params: object) -> dict:
        """Send one DevTools command and return its result (events that arrive meanwhile are dropped)."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, page: Path, width: int, height: int = 900) -> None:
        """Load ``page`` in a window ``width`` CSS px wide and wait until its widgets and maths rendered."""
        import time

        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)
        self.call("Page.navigate", url=page.as_uri())
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        time.sleep(0.3)
        while not self.evaluate(SETTLED_SCRIPT):
            if time.monotonic() > deadline:
                raise AssertionError(f"{page.name} at {width} px: widgets or maths still unrendered after "
                                     f"{SETTLE_TIMEOUT_S:.0f} s")
            time.sleep(0.2)
        time.sleep(0.3)  # images decoded, layout settled

    def screenshot(self, path: Path) -> None:
        import base64

        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def browser(chromium: str, tmp_path_factory: pytest.TempPathFactory):
    b = Browser(chromium, tmp_path_factory.mktemp("cdp"))
    yield b
    b.close()


def book_pages(html_dir: Path) -> list[Path]:
    """Every page of the book (not Sphinx's index and search pages)."""
    return sorted(p for p in html_dir.rglob("*.html")
                  if p.name not in SKIPPED_PAGES and p != html_dir / "index.html"
                  and "_static" not in p.parts and "_sources" not in p.parts)


def test_nothing_is_wider_than_the_column(html_dir: Path, browser: Browser) -> None:
    problems = []
    for page in book_pages(html_dir):
        for width in WIDTHS:
            browser.open(page, width)
            for item in overflow_report(browser)["found"]:
                what = {"outside": "it reaches outside the column", "spills": "its content spills out of it",
                        "scrolls": "its content scrolls sideways"}[item["how"]]
                problems.append(f"{page.relative_to(html_dir)} at {width} px: {item['element']} is "
                                f"{item['width']} px wide in a {item['column']}-px column ({what})")
    assert not problems, (
        f"elements wider than the content column (exempt: boxes that scroll by design, {', '.join(EXEMPT)}, as long "
        "as they fit themselves, and text clipped by design):\n" + "\n".join(problems))


LAB_STEM = re.compile(r"^(\d\d[a-z]?)_")


def lab_pages(html_dir: Path) -> dict[str, Path]:
    """Lab number ("01", "02b", ...) -> its built page."""
    return {m.group(1): p for p in sorted((html_dir / "notebooks").glob("*.html")) if (m := LAB_STEM.match(p.name))}


def test_labs_are_named_by_their_number_and_nothing_is_numbered_automatically(html_dir: Path) -> None:
    pages = lab_pages(html_dir)
    assert len(pages) == len(list((REPO_ROOT / "notebooks").glob("[0-9]*.ipynb")))
    landing = (html_dir / LANDING).read_text(encoding="utf-8")
    for page in book_pages(html_dir):
        text = page.read_text(encoding="utf-8")
        assert 'class="section-number"' not in text, f"{page.name} shows automatic section numbers"
    # The sidebar names every lab "Lab NN" with its own number.
    for number, page in pages.items():
        href = f"../notebooks/{page.name}"
        entry = re.search(rf'<a class="reference internal" href="{re.escape(href)}">(.*?)</a>', landing, re.S)
        assert entry, f"the sidebar does not link {href}"
        assert html.unescape(entry.group(1)).strip().startswith(f"Lab {number} "), (
            f"the sidebar names {page.name} {entry.group(1)!r}, not 'Lab {number} ...'")


def test_every_lab_page_heading_says_its_number(html_dir: Path) -> None:
    wrong = {}
    for number, page in lab_pages(html_dir).items():
        h1 = re.search(r"<h1>(.*?)<", page.read_text(encoding="utf-8"), re.S)
        if not h1 or not html.unescape(h1.group(1)).strip().startswith(f"Lab {number} "):
            wrong[page.name] = h1.group(1) if h1 else None
    assert not wrong, f"lab headings without their number: {wrong}"


def test_the_landing_page_leads_to_every_lab_and_next_to_lab_01(html_dir: Path) -> None:
    landing = (html_dir / LANDING).read_text(encoding="utf-8")
    assert f'url={LANDING.as_posix()}' in (html_dir / "index.html").read_text(encoding="utf-8")
    article = landing[landing.index('<article class="bd-article">'):landing.index("</article>")]
    for number, page in lab_pages(html_dir).items():
        assert f'href="../notebooks/{page.name}' in article, f"the landing page does not link Lab {number}"
    assert 'href="../notebooks/claims_vs_measured.html' in article, "the landing page does not link the claims chapter"
    following = re.search(r'<a class="right-next"\s+href="([^"]+)"', landing)
    assert following and following.group(1).startswith("../notebooks/01_"), (
        f"'Next' on the landing page goes to {following.group(1) if following else None}, not Lab 01")


def test_the_landing_page_opens_with_what_the_book_found(html_dir: Path) -> None:
    landing = (html_dir / LANDING).read_text(encoding="utf-8")
    article = landing[landing.index('<article class="bd-article">'):landing.index("</article>")]
    found = article.index("What the book found")
    assert found < article.index("The labs"), "the results do not come before the list of labs"
    for paper in dict.fromkeys(c.paper for c in papers.CLAIMS):
        assert html.escape(paper) in article[found:], f"the landing page gives no verdict totals for {paper}"
    image = re.search(r'<img[^>]+src="([^"]*findings\.png)"', article)
    assert image, "the landing page lacks its paper-vs-ours figure"
    assert (html_dir / LANDING.parent / image.group(1)).resolve().is_file()


def test_every_lab_opens_with_a_key_result_and_links_its_record(html_dir: Path) -> None:
    for number, page in lab_pages(html_dir).items():
        text = page.read_text(encoding="utf-8")
        article = text[text.index('<article class="bd-article">'):text.index("</article>")]
        box = article.find("Key result")
        assert box != -1, f"Lab {number} has no key result box"
        assert box < article.index("<h2"), f"Lab {number}'s key result does not come before its first section"
        links = re.findall(r'href="([^"]+\.(?:json|npz))"', article)
        assert any(link.endswith(f"{page.stem}.json") for link in links), f"Lab {number} links no record"
        for link in links:
            assert (page.parent / link).resolve().is_file(), f"Lab {number} links {link}, which is not in the book"


def test_references_name_the_authors_of_the_four_sources(html_dir: Path) -> None:
    text = html.unescape(re.sub(r"<[^>]+>", " ", (html_dir / "book" / "references.html").read_text(encoding="utf-8")))
    for author in ("Su", "Srivastava", "Cucu", "Campbell"):
        assert re.search(rf"\b{author}\b", text), f"the references lack {author}"
    assert "and others" not in text and "n.d." not in text
    glossary = (html_dir / "book" / "glossary.html").read_text(encoding="utf-8")
    for term in ("ASR", "Robust accuracy", "Profile", "Replay", "Supported", "Direction supported", "Contradicted",
                 "Undecided", "Not informative", "Not comparable", "Not measured"):
        assert f'id="term-{term.replace(" ", "-")}"' in glossary, f"the glossary does not define {term!r}"


def page_texts(html_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(html_dir)): html.unescape(p.read_text(encoding="utf-8")) for p in book_pages(html_dir)}


def test_no_page_shows_a_profile_repr(html_dir: Path) -> None:
    # A repr writes literal values (Profile(name='cpu', ...), DEConfig(pixels=1, ...)); a source listing shown with
    # inspect.getsource writes names (``DEConfig(pixels=pixels, ...)``), which is fine to show.
    repr_of = re.compile(r"\b(?:Profile|[A-Z][A-Za-z]*Config)\(\w+=(?:'|\"|-?\d|True\b|False\b|None\b|\()")
    shown = {name: sorted(set(repr_of.findall(text))) for name, text in page_texts(html_dir).items()
             if repr_of.search(text)}
    assert not shown, f"pages showing settings as a repr: {shown}"


def test_no_table_shows_nan(html_dir: Path) -> None:
    cell = re.compile(r"<td[^>]*>\s*(?:<p>)?\s*NaN\s*(?:</p>)?\s*</td>")
    shown = {name: len(cell.findall(text)) for name, text in page_texts(html_dir).items() if cell.search(text)}
    assert not shown, f"NaN table cells per page: {shown}"


def test_the_book_ships_no_source_maps(html_dir: Path) -> None:
    # tools/build_book.py strips them after the HTML build (tools/postbuild.strip_source_maps)
    assert not list(html_dir.rglob("*.map")), "source maps left in the built book"
    pointing = [str(p.relative_to(html_dir)) for p in [*html_dir.rglob("*.js"), *html_dir.rglob("*.css")]
                if re.search(r"^\s*(//|/\*)[#@]\s*sourceMappingURL=", p.read_text(encoding="utf-8", errors="replace"),
                             re.M)]
    assert not pointing, f"files still pointing at source maps: {pointing}"


#: The picture an interactive view shows: its visible <img> (its switch hides the others).
SHOWN_IMAGE = r"""
(() => {
  const imgs = [...document.querySelectorAll('.labkit-board img.labkit-view')]
    .filter(i => i.offsetParent !== null && i.getBoundingClientRect().width > 0);
  return imgs.map(i => i.src.length + ':' + i.src.slice(-64));
})()
"""

#: Change the dropdown number ``index`` of the page's interactive views to its next option, as a reader would,
#: firing the event a browser fires.
CHANGE_SELECT = r"""
((index) => {
  const controls = [...document.querySelectorAll('.labkit-board select')];
  const c = controls[index];
  if (!c) return 'no dropdown number ' + index + ' (found ' + controls.length + ')';
  c.selectedIndex = (c.selectedIndex + 1) % c.options.length;
  c.dispatchEvent(new Event('change', {bubbles: true}));
  return 'ok';
})
"""
#: Focus slider number ``index`` (an <input type=range>); returns the arrow key that moves it one step (right,
#: unless it is at its end).
FOCUS_SLIDER = r"""
((index) => {
  const sliders = [...document.querySelectorAll('.labkit-board input[type=range]')];
  const s = sliders[index];
  if (!s) return 'no slider number ' + index + ' (found ' + sliders.length + ')';
  s.focus();
  return Number(s.value) < Number(s.max) ? 'ArrowRight' : 'ArrowLeft';
})
"""


def change_control(browser: Browser, kind: str, index: int) -> None:
    """Move control ``index`` of ``kind`` ("select" or "slider") one step, as a reader would."""
    if kind == "select":
        assert browser.evaluate(f"{CHANGE_SELECT}({index})") == "ok"
        return
    key = browser.evaluate(f"{FOCUS_SLIDER}({index})")
    assert key in ("ArrowRight", "ArrowLeft"), key
    code = 39 if key == "ArrowRight" else 37
    for event in ("keyDown", "keyUp"):  # one press of an arrow key: the slider moves one step
        browser.call("Input.dispatchKeyEvent", type=event, key=key, code=key, windowsVirtualKeyCode=code,
                     nativeVirtualKeyCode=code)


@pytest.mark.parametrize("lab, controls", [
    ("01_one_pixel_attack", [("select", 0), ("slider", 0)]),  # the run, then the image
    ("08_attention_maps", [("select", 0), ("select", 1), ("select", 2)]),  # model, image, attack
])
def test_widgets_respond_without_a_kernel(lab: str, controls: list[tuple[str, int]], html_dir: Path,
                                          browser: Browser, tmp_path: Path) -> None:
    import time

    page = html_dir / "notebooks" / f"{lab}.html"
    browser.open(page, 1280)
    before = browser.evaluate(SHOWN_IMAGE)
    assert before, f"{lab}: no widget picture is shown"
    for kind, index in controls:
        change_control(browser, kind, index)
        time.sleep(0.5)
        after = browser.evaluate(SHOWN_IMAGE)
        if after == before:
            browser.screenshot(tmp_path / f"{lab}-unchanged.png")
        assert after != before, f"{lab}: changing {kind} #{index} left the picture as it was"
        before = after


#: The most the built (replayed) book may weigh, in bytes (issue #25).
BOOK_BYTES = 15_000_000


def test_the_book_weighs_at_most_its_budget(html_dir: Path) -> None:
    files = [p for p in html_dir.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    heaviest = sorted(files, key=lambda p: p.stat().st_size)[-5:]
    assert total <= BOOK_BYTES, (f"the book weighs {total / 1e6:.1f} MB (budget {BOOK_BYTES / 1e6:.1f}); heaviest: "
                                 + ", ".join(f"{p.relative_to(html_dir)} {p.stat().st_size / 1e6:.1f} MB"
                                             for p in reversed(heaviest)))


def test_drop_unloaded_assets_keeps_what_pages_load(tmp_path: Path) -> None:
    from tools.postbuild import drop_unloaded_assets

    fonts = tmp_path / "_static" / "vendor" / "webfonts"
    fonts.mkdir(parents=True)
    for name in ("a.woff2", "a.ttf", "b.ttf"):  # b has no woff2: its TrueType file is what loads
        (fonts / name).write_bytes(b"x")
    (tmp_path / "_static" / "locales" / "pl" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "_static" / "locales" / "pl" / "LC_MESSAGES" / "booktheme.mo").write_bytes(b"x")
    for name in ("require.js", "embed-amd.js", "LICENSE-html-manager.txt", "tex-svg-full.js", "LICENSE-mathjax.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "page.html").write_text('<script src="../tex-svg-full.js"></script>', encoding="utf-8")
    removed = drop_unloaded_assets(tmp_path)
    assert sorted(p.name for p in removed) == ["LICENSE-html-manager.txt", "a.ttf", "booktheme.mo", "embed-amd.js",
                                               "require.js"]
    assert (tmp_path / "tex-svg-full.js").is_file() and (tmp_path / "LICENSE-mathjax.txt").is_file()
    assert sorted(p.name for p in fonts.iterdir()) == ["a.woff2", "b.ttf"]
    assert not (tmp_path / "_static" / "locales").exists()
    with pytest.raises(FileNotFoundError):
        drop_unloaded_assets(tmp_path / "missing")


def test_palette_images_rewrites_only_what_it_cannot_spoil(tmp_path: Path) -> None:
    import numpy as np
    from matplotlib.figure import Figure
    from PIL import Image

    from tools.postbuild import palette_images

    images = tmp_path / "_images"
    images.mkdir()
    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.imshow(np.linspace(0, 1, 400).reshape(20, 20), cmap="viridis")
    ax.plot([0, 19], [0, 19], "r-")
    ax.set_title("a plot")
    fig.savefig(images / "plot.png", format="png", dpi=100)  # opaque: white face
    fig.savefig(images / "clear.png", format="png", dpi=100, transparent=True)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(images / "noise.png")  # 12k colours: a palette would blur it
    sizes = {p.name: p.stat().st_size for p in images.iterdir()}
    originals = {p.name: np.asarray(Image.open(p).convert("RGB"), dtype=float) for p in images.iterdir()}
    clear, noisy = (images / "clear.png").read_bytes(), (images / "noise.png").read_bytes()
    before, after = palette_images(tmp_path)
    assert before == sum(sizes.values()) and after < before
    plot = Image.open(images / "plot.png")
    assert plot.mode == "P" and (images / "plot.png").stat().st_size < sizes["plot.png"]
    assert np.abs(np.asarray(plot.convert("RGB"), dtype=float) - originals["plot.png"]).mean() < 1.0
    assert (images / "clear.png").read_bytes() == clear  # transparency kept
    assert (images / "noise.png").read_bytes() == noisy  # too many colours: kept


def test_strip_source_maps_removes_maps_and_their_comments(tmp_path: Path) -> None:
    from tools.postbuild import strip_source_maps

    (tmp_path / "_static" / "scripts").mkdir(parents=True)
    script, style = tmp_path / "_static" / "scripts" / "a.js", tmp_path / "_static" / "b.css"
    script.write_text("var a = 1;\n//# sourceMappingURL=a.js.map\n", encoding="utf-8")
    style.write_text("p{color:red}\n/*# sourceMappingURL=b.css.map */\n", encoding="utf-8")
    kept = tmp_path / "_static" / "c.js"
    kept.write_text("var s = 'sourceMappingURL= is only text here';\n", encoding="utf-8")
    for name in ("_static/scripts/a.js.map", "_static/b.css.map"):
        (tmp_path / name).write_text("{}", encoding="utf-8")
    removed = strip_source_maps(tmp_path)
    assert sorted(p.name for p in removed) == ["a.js.map", "b.css.map"] and not list(tmp_path.rglob("*.map"))
    assert script.read_text(encoding="utf-8") == "var a = 1;\n"
    assert style.read_text(encoding="utf-8") == "p{color:red}\n"
    assert "sourceMappingURL" in kept.read_text(encoding="utf-8")  # a string in code is not a comment
    with pytest.raises(FileNotFoundError):
        strip_source_maps(tmp_path / "missing")
