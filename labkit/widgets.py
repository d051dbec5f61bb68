"""Interactive views (ipywidgets) for the labs, that respond in the static book too.

A published page has no kernel, so a control that redraws through a Python callback changes nothing there.
These widgets instead render every view a control can show up front (one PNG per view, in an
``ipywidgets.Stack``) and tie the controls to the stacks with ``ipywidgets.jslink``: the browser switches the
shown view by itself, in JupyterLab and in the book alike. The executed notebook stores the widget state (the
PNGs and the links), and the book loads the widget JavaScript from local copies (see book/vendor/).

The price is weight: every view is a picture in the page, so each widget caps how many it renders
(``max_images``), and stores them as palette PNGs (about 10-15 kB per view).
"""

from __future__ import annotations

import dataclasses
import io
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
class Switchboard:
    """How a precomputed widget is wired, for tests and for callers that add controls.

    box: the widget to display (controls above the views). stacks: every ``ipywidgets.Stack`` holding views,
    outermost first. links: every ``jslink`` between a control and a stack (``ipywidgets.Link``).
    """

    box: Any  # ipywidgets.VBox
    stacks: tuple[Any, ...]  # ipywidgets.Stack, outermost first
    links: tuple[Any, ...]  # ipywidgets.Link (control -> stack selected_index)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Displayed as its box: a cell ending in a ``Switchboard`` shows the widget."""
        return self.box._repr_mimebundle_(**kwargs)


def _png(fig: Figure, dpi: int = VIEW_DPI, colours: int = 256) -> bytes:
    """A figure as PNG bytes, cropped to its contents (as Jupyter shows it), in a palette of ``colours``.

    Why a palette: a widget stores dozens of views in its page; an 8-bit palette PNG is about a third of the
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


def _view(png: bytes) -> Any:
    """One precomputed view: an Image widget no wider than its container."""
    import ipywidgets as w

    return w.Image(value=png, format="png", layout=w.Layout(max_width="100%", height="auto"))


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
    what the attack does. Returns a ``Switchboard`` (display it; ``.box`` is the ``ipywidgets.VBox``).
    """
    import ipywidgets as w

    if not results:
        raise ValueError("attack_browser needs at least one run")
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    names = list(results)
    n = min(len(originals), max_images)
    before = probs[BEFORE]
    start_run, start_image = next(((k, i) for k, name in enumerate(names) for i in range(n)
                                   if bool(results[name].success[i])), (0, 0))

    def panel(name: str, i: int) -> Any:
        r = results[name]
        verdict = "success" if r.success[i] else "failed"
        title = f"{name}: {verdict} after {int(r.queries[i])} queries"
        if r.targets is not None:
            title += f" (target: {classes[int(r.targets[i])]})"
        fig = attack_panel(originals[i], r.adv_images[i], r.pixels[i], before[i], probs[name][i], classes, title)
        return _view(_png(fig))

    per_run = tuple(w.Stack([panel(name, i) for i in range(n)], selected_index=start_image) for name in names)
    runs = w.Stack(list(per_run), selected_index=start_run)
    index = w.IntSlider(start_image, 0, n - 1, description="image", continuous_update=True)
    run = w.Dropdown(options=names, index=start_run, description="attack")
    links = (w.jslink((run, "index"), (runs, "selected_index")),
             *(w.jslink((index, "value"), (stack, "selected_index")) for stack in per_run))
    box = w.VBox([w.HBox([index, run]), runs])
    return Switchboard(box, (runs, *per_run), links)


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
    attacked image), under that attack. Returns a ``Switchboard`` (display it; ``.box`` is the ``ipywidgets.VBox``).
    """
    import ipywidgets as w
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

    def panel(name: str, i: int, a: str | None) -> Any:
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
        return _view(_png(fig))

    # model -> image -> attack ("none" first). A combination without an attack (image not attacked, or no such
    # attack on that model) shows the plain view: the same widget, so it costs one PNG, not one per option.
    # Open on what the explorer is for: that broken image (else the first attacked one), under that attack.
    start_image = 0
    start_attack = 1 if names and shown and shown[start_image] in row_of else 0
    per_image: list[Any] = []
    per_model: list[Any] = []
    for name in models:
        rows = []
        for i in shown:
            plain_view = panel(name, i, None)
            options = [panel(name, i, a) if i in row_of and a in attacks.get(name, {}) else plain_view for a in names]
            stack = w.Stack([plain_view, *options], selected_index=start_attack)
            per_image.append(stack)
            rows.append(stack)
        per_model.append(w.Stack(rows, selected_index=start_image))
    top = w.Stack(per_model, selected_index=0)

    model = w.Dropdown(options=models, index=0, description="model")
    image = w.Dropdown(options=[(f"{classes[int(labels[p])]} #{int(ids[p])}" + (" (attacked)" if p in row_of else ""),
                                 k) for k, p in enumerate(shown)], index=start_image, description="image")
    attack = w.Dropdown(options=["none", *names], index=start_attack, description="attack")
    links = (w.jslink((model, "index"), (top, "selected_index")),
             *(w.jslink((image, "index"), (stack, "selected_index")) for stack in per_model),
             *(w.jslink((attack, "index"), (stack, "selected_index")) for stack in per_image))
    box = w.VBox([w.HBox([model, image, attack]), top])
    return Switchboard(box, (top, *per_model, *per_image), links)
