"""Interactive views for the labs that respond in the static book too, with no kernel and no widget manager.

A published page has no kernel, so a control that redraws through a Python callback changes nothing there.
These views instead render every picture a control can show up front (one PNG per view) and ship them in one
HTML block with their controls (dropdowns, a slider) and a few lines of JavaScript that show the picture the
controls point at: the browser switches it by itself, in JupyterLab and in the book alike (``Switchboard``).

Why not ipywidgets' ``Stack`` + ``jslink``: the static book then needs the ipywidgets HTML manager, 4.3 MB of
script, a quarter of the whole book (issue #25: the book <= 15 MB); the switch itself is ten lines.

The price is weight: every view is a picture in the page, so each view caps how many it renders
(``max_images``), and stores them as palette PNGs (about 10-15 kB per view).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import io
import json
from typing import Any, Sequence

from matplotlib.figure import Figure
from torch import Tensor, nn

from labkit.attacks.base import AttackResult
from labkit.attention import attention_of
from labkit.evaluate import probabilities
from labkit.plotting import attack_panel, attention_panel, legible

#: Resolution of a view's PNG (dots per inch). The panels are about 6-7 inches wide, so 100 dpi makes them
#: about as wide as the book's text column (676 px at a 1280-px window): shown at about their own size.
VIEW_DPI = 100


@dataclasses.dataclass(frozen=True)
class Control:
    """One control of a ``Switchboard``."""

    name: str  # the label in front of it, e.g. "image"
    options: tuple[str, ...]  # what each position is called (a dropdown's entries; a slider shows the chosen one)
    start: int  # the position shown first
    kind: str = "dropdown"  # "dropdown" (an HTML select) or "slider" (an HTML range input)

    def __post_init__(self) -> None:
        if self.kind not in ("dropdown", "slider"):
            raise ValueError(f"kind must be 'dropdown' or 'slider', got {self.kind!r}")
        if not 0 <= self.start < len(self.options):
            raise ValueError(f"start {self.start} outside the {len(self.options)} options of {self.name!r}")


#: The script that switches a board's picture: the controls' positions, read in the order they appear, index the
#: row-major table ``index`` (the last control fastest); the picture with that number is shown, the others hidden.
SWITCH_JS = """(() => {
  const root = document.getElementById(%(id)s);
  const index = %(index)s, sizes = %(sizes)s;
  const controls = [...root.querySelectorAll("select, input[type=range]")];
  const views = [...root.querySelectorAll("img.labkit-view")];
  const show = () => {
    let flat = 0;
    controls.forEach((c, k) => { flat = flat * sizes[k] + Number(c.value); });
    views.forEach((v, i) => { v.style.display = i === index[flat] ? "" : "none"; });
    root.querySelectorAll("output").forEach(o => {
      const c = root.querySelector("#" + o.htmlFor); o.value = c.dataset.labels.split("\\n")[Number(c.value)];
    });
  };
  controls.forEach(c => { c.addEventListener("input", show); c.addEventListener("change", show); });
  show();
})();"""


@dataclasses.dataclass(frozen=True)
class Switchboard:
    """Precomputed pictures and the controls that pick one; displayed as HTML that switches them in the browser.

    controls: the controls, in the order shown. views: the distinct pictures (PNG bytes). index: for every
    combination of control positions, row-major over ``controls`` (the last fastest), the number of the view it
    shows (a combination with nothing of its own shows a shared view, stored once).
    """

    controls: tuple[Control, ...]
    views: tuple[bytes, ...]  # PNG bytes, each once
    index: tuple[int, ...]  # len = product of the controls' option counts; values in range(len(views))

    def __post_init__(self) -> None:
        size = 1
        for c in self.controls:
            size *= len(c.options)
        if len(self.index) != size:
            raise ValueError(f"index needs {size} entries (one per combination of positions), got {len(self.index)}")
        if self.index and not (0 <= min(self.index) and max(self.index) < len(self.views)):
            raise ValueError(f"index must point into the {len(self.views)} views")

    def view_of(self, *positions: int) -> int:
        """The number of the view shown when control k is at ``positions[k]``."""
        if len(positions) != len(self.controls):
            raise ValueError(f"need {len(self.controls)} positions, got {len(positions)}")
        flat = 0
        for c, p in zip(self.controls, positions):
            if not 0 <= p < len(c.options):
                raise ValueError(f"position {p} outside the {len(c.options)} options of {c.name!r}")
            flat = flat * len(c.options) + p
        return self.index[flat]

    @property
    def shown(self) -> int:
        """The view shown first (every control at its start)."""
        return self.view_of(*(c.start for c in self.controls))

    def _repr_html_(self) -> str:
        """The board as one HTML block: controls, every view (only the shown one visible), the switch script.
        Its element id is a digest of the content, so the same board renders the same HTML in every run."""
        digest = hashlib.sha1(repr((self.controls, self.index)).encode())
        for png in self.views:
            digest.update(png)
        uid = f"labkit-board-{digest.hexdigest()[:12]}"
        parts = [f'<div class="labkit-board" id="{uid}">',
                 '<div class="labkit-controls" style="display:flex;flex-wrap:wrap;gap:0.3em 1.5em;'
                 'align-items:center;margin-bottom:0.4em">']
        for k, c in enumerate(self.controls):
            cid = f"{uid}-c{k}"
            label = f'<label for="{cid}" style="margin-right:0.4em">{html.escape(c.name)}</label>'
            if c.kind == "slider":
                labels = html.escape("\n".join(c.options), quote=True)
                parts.append(f'<span>{label}<input type="range" id="{cid}" min="0" max="{len(c.options) - 1}" '
                             f'step="1" value="{c.start}" data-labels="{labels}" style="vertical-align:middle"> '
                             f'<output for="{cid}">{html.escape(c.options[c.start])}</output></span>')
            else:
                options = "".join(f'<option value="{i}"{" selected" if i == c.start else ""}>{html.escape(o)}</option>'
                                  for i, o in enumerate(c.options))
                parts.append(f'<span>{label}<select id="{cid}">{options}</select></span>')
        parts.append("</div>")
        shown = self.shown
        for i, png in enumerate(self.views):
            hidden = "" if i == shown else "display:none;"
            parts.append(f'<img class="labkit-view" alt="view {i}" style="{hidden}max-width:100%;height:auto" '
                         f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')
        script = SWITCH_JS % {"id": json.dumps(uid), "index": json.dumps(list(self.index)),
                              "sizes": json.dumps([len(c.options) for c in self.controls])}
        parts += [f"<script>{script}</script>", "</div>"]
        return "\n".join(parts)


def _png(fig: Figure, dpi: int = VIEW_DPI, colours: int = 256) -> bytes:
    """A figure as PNG bytes, cropped to its contents (as Jupyter shows it), in a palette of ``colours``.

    Why a palette: a board stores dozens of views in its page; an 8-bit palette PNG is about a third of the
    size of the full-colour one, and a panel of 32x32 images, a few curves and text uses fewer colours than that.
    """
    from PIL import Image

    legible(fig, dpi=dpi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(colors=colours)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


#: ``browser_probabilities``' key of the clean images' probabilities.
BEFORE = "clean"


def browser_probabilities(model: nn.Module, originals: Tensor, results: dict[str, AttackResult]) -> dict[str, Tensor]:
    """What ``attack_browser`` shows beside the images: the model's class probabilities, (N, classes) float, on
    ``originals`` (key ``BEFORE``) and on each run's adversarial images (key: the run's name)."""
    return {BEFORE: probabilities(model, originals),
            **{name: probabilities(model, r.adv_images) for name, r in results.items()}}


def attack_browser(originals: Tensor, results: dict[str, AttackResult], probs: dict[str, Tensor],
                   classes: Sequence[str], max_images: int = 12) -> Switchboard:
    """Browse attacked images: an image slider and a dropdown over the runs in ``results``; every view is
    precomputed, so both controls work without a kernel (in the published book).

    originals: (N, C, H, W) in [0, 1], the attacked images (same order in every result).
    results: run name (e.g. "untargeted, k=1") -> its AttackResult on ``originals``.
    probs: ``browser_probabilities`` of the model (computed, or read from a lab's record: the browser itself
    never runs the model, so a replayed page shows it too).
    max_images: the slider covers the first ``max_images`` images (each image costs one PNG per run).
    Opens on the first successful attack (first run that has one, its first image), so the saved view shows
    what the attack does. Returns a ``Switchboard`` (display it: the page shows its HTML).
    """
    if not results:
        raise ValueError("attack_browser needs at least one run")
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    names = list(results)
    n = min(len(originals), max_images)
    before = probs[BEFORE]
    start_run, start_image = next(((k, i) for k, name in enumerate(names) for i in range(n)
                                   if bool(results[name].success[i])), (0, 0))

    def panel(name: str, i: int) -> bytes:
        r = results[name]
        verdict = "success" if r.success[i] else "failed"
        title = f"{name}: {verdict} after {int(r.queries[i])} queries"
        if r.targets is not None:
            title += f" (target: {classes[int(r.targets[i])]})"
        fig = attack_panel(originals[i], r.adv_images[i], r.pixels[i], before[i], probs[name][i], classes, title)
        return _png(fig)

    # Controls: image (slider) then attack (dropdown); the view of (image i, run k) is number i * runs + k.
    views = tuple(panel(name, i) for i in range(n) for name in names)
    controls = (Control("image", tuple(str(i) for i in range(n)), start_image, kind="slider"),
                Control("attack", tuple(names), start_run))
    return Switchboard(controls, views, tuple(range(len(views))))


def explorer_views(models: dict[str, nn.Module], images: Tensor,
                   attacks: dict[str, dict[str, AttackResult]] | None = None) -> dict[tuple[str, ...], Tensor]:
    """What ``attention_explorer`` shows of each model, computed up front: ``(model, "maps")`` (N, H, W) A(x) and
    ``(model, "probs")`` (N, classes) on ``images``, and ``(model, attack, "maps" | "probs")`` on the adversarial
    images of each of its attacks (the rows of the result). Raises ValueError for a model without a gate."""
    views: dict[tuple[str, ...], Tensor] = {}
    for name, model in models.items():
        views[name, "maps"], views[name, "probs"] = attention_of(model, images), probabilities(model, images)
        for a, r in (attacks or {}).get(name, {}).items():
            views[name, a, "maps"] = attention_of(model, r.adv_images)
            views[name, a, "probs"] = probabilities(model, r.adv_images)
    return views


def attention_explorer(views: dict[tuple[str, ...], Tensor], images: Tensor, labels: Tensor, classes: Sequence[str],
                       attacks: dict[str, dict[str, AttackResult]] | None = None, attacked: Tensor | None = None,
                       ids: Tensor | None = None, max_images: int = 8) -> Switchboard:
    """Explore APR's attention maps (Lab 08): pick a model, an image and, where there is one, an attack; every
    view is precomputed, so the controls work without a kernel (in the published book).

    Shows ``labkit.plotting.attention_panel``: the image, A(x), the overlay and the top-5 probabilities;
    when the image was attacked, the adversarial image, the pixel on the map with its attention value before
    and after, and the probabilities after the attack.

    views: ``explorer_views`` of the models on ``images`` (computed, or read from a lab's record: the explorer
    never runs a model, so a replayed page shows it too); the models are those it names, in order.
    images: (N, 3, H, W) in [0, 1]; labels: (N,);
    attacks: model name -> {attack name -> AttackResult}, every result on the images ``images[attacked]``
    (``attacked``: (M,) positions in ``images``; default the first M); ids: (N,) numbers naming the images in
    the list and the title (e.g. their test-set indices; default their positions).
    max_images: how many images the image list offers (each costs one PNG per model and attack): the attacked
    ones first (led by the first one the first model's first attack broke), then up to two that were not
    attacked. The image list names each image's class.
    Opens on the first image that the first model's first attack broke (first in the list; else the first
    attacked image), under that attack. Returns a ``Switchboard`` (display it: the page shows its HTML).
    """
    import torch

    models = list(dict.fromkeys(key[0] for key in views))
    if not models:
        raise ValueError("attention_explorer needs the views of at least one model")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    attacks = attacks or {}
    unknown = set(attacks) - set(models)
    if unknown:
        raise ValueError(f"attacks for unknown models: {sorted(unknown)}")
    sizes = {len(r) for runs in attacks.values() for r in runs.values()}
    if len(sizes) > 1:
        raise ValueError(f"every attack result must cover the same images, got sizes {sorted(sizes)}")
    m = sizes.pop() if sizes else 0
    attacked = torch.arange(m) if attacked is None else attacked.long()
    if len(attacked) != m or (m and (attacked.min() < 0 or attacked.max() >= len(images))):
        raise ValueError(f"attacked must hold {m} positions in [0, {len(images)})")
    row_of = {p: j for j, p in enumerate(attacked.tolist())}  # image position -> row of the attack results
    ids = torch.arange(len(images)) if ids is None else ids
    if ids.shape != (len(images),):
        raise ValueError(f"ids must have shape ({len(images)},), got {tuple(ids.shape)}")
    plain = [p for p in range(len(images)) if p not in row_of]
    keep_plain = min(len(plain), 2 if m else max_images, max(0, max_images - 1))
    names = list(dict.fromkeys(a for runs in attacks.values() for a in runs))  # every attack, in order
    # The first image the first model's first attack broke leads the list (the explorer opens on it), then the
    # other attacked images in order, then a few that were not attacked.
    first = attacks.get(models[0], {}).get(names[0]) if names else None
    order = attacked.tolist()
    if first is not None and bool(first.success.any()):
        lead = order[int(first.success.float().argmax())]
        order = [lead, *(p for p in order if p != lead)]
    shown = [*order[:max_images - keep_plain], *plain[:keep_plain]]

    def panel(name: str, i: int, a: str | None) -> bytes:
        kw: dict[str, Any] = {}
        title = f"{name}: {classes[int(labels[i])]} #{int(ids[i])}"
        if a is not None:
            r, j = attacks[name][a], row_of[i]
            kw = {"adversarial": r.adv_images[j], "pixels": r.pixels[j], "probs_after": views[name, a, "probs"][j],
                  "attention_after": views[name, a, "maps"][j]}
            title += f"\n{a}: {'success' if r.success[j] else 'failed (its best candidate shown)'}"
        else:
            title += "\nnot attacked" if i not in row_of else "\nno attack shown"
        fig = attention_panel(images[i], views[name, "maps"][i], views[name, "probs"][i], classes, title=title, **kw)
        return _png(fig)

    # Controls: model, image, attack ("none" first). A combination without an attack (image not attacked, or no
    # such attack on that model) shows the plain view: stored once, not once per option.
    # Open on what the explorer is for: that broken image (else the first attacked one), under that attack.
    start_image = 0
    start_attack = 1 if names and shown and shown[start_image] in row_of else 0
    pngs: list[bytes] = []
    index: list[int] = []
    for name in models:
        for i in shown:
            plain_view = len(pngs)
            pngs.append(panel(name, i, None))
            index.append(plain_view)
            for a in names:
                if i in row_of and a in attacks.get(name, {}):
                    index.append(len(pngs))
                    pngs.append(panel(name, i, a))
                else:
                    index.append(plain_view)
    image_names = tuple(f"{classes[int(labels[p])]} #{int(ids[p])}" + (" (attacked)" if p in row_of else "")
                        for p in shown)
    controls = (Control("model", tuple(models), 0), Control("image", image_names, start_image),
                Control("attack", ("none", *names), start_attack))
    return Switchboard(controls, tuple(pngs), tuple(index))
