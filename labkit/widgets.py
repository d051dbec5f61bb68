"""Interactive views (ipywidgets) for the labs.

They work live in JupyterLab and, once executed, render in the static book:
the executed notebook stores the widget state, and the book loads the widget
JavaScript from local copies (see book/vendor/).
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from labkit.attacks.base import AttackResult
from labkit.attention import attention_of
from labkit.evaluate import probabilities
from labkit.plotting import attack_panel, attention_panel


#: ``browser_probabilities``' key of the clean images' probabilities.
BEFORE = "clean"


def browser_probabilities(model: nn.Module, originals: Tensor, results: dict[str, AttackResult]) -> dict[str, Tensor]:
    """What ``attack_browser`` shows beside the images: the model's class probabilities, (N, classes) float, on
    ``originals`` (key ``BEFORE``) and on each run's adversarial images (key: the run's name)."""
    return {BEFORE: probabilities(model, originals),
            **{name: probabilities(model, r.adv_images) for name, r in results.items()}}


def attack_browser(originals: Tensor, results: dict[str, AttackResult], probs: dict[str, Tensor],
                   classes: Sequence[str]):
    """Browse attacked images: an image slider and a dropdown over the runs in ``results``.

    originals: (N, C, H, W) in [0, 1], the attacked images (same order in every result).
    results: run name (e.g. "untargeted, k=1") -> its AttackResult on ``originals``.
    probs: ``browser_probabilities`` of the model (computed, or read from a lab's record: the browser itself
    never runs the model, so a replayed page shows it too).
    Returns an ``ipywidgets.VBox`` (controls above, the attack panel below).
    """
    import ipywidgets as w
    from IPython.display import display

    before, after = probs[BEFORE], probs
    index = w.IntSlider(0, 0, len(originals) - 1, description="image")
    run = w.Dropdown(options=list(results), description="attack")
    out = w.Output()

    def draw(*_: object) -> None:
        r, i = results[run.value], index.value
        verdict = "success" if r.success[i] else "failed"
        title = f"{run.value}: {verdict} after {int(r.queries[i])} queries"
        if r.targets is not None:
            title += f" (target: {classes[int(r.targets[i])]})"
        with out:
            out.clear_output(wait=True)
            display(attack_panel(originals[i], r.adv_images[i], r.pixels[i], before[i], after[run.value][i],
                                 classes, title))

    index.observe(draw, "value")
    run.observe(draw, "value")
    draw()
    return w.VBox([w.HBox([index, run]), out])


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
                       ids: Tensor | None = None):
    """Explore APR's attention maps (Lab 08): pick a model, a class, an image and, where there is one, an attack.

    Shows ``labkit.plotting.attention_panel``: the image, A(x), the overlay and the top-5 probabilities;
    when the image was attacked, the adversarial image, the pixel on the map with its attention value before
    and after, and the probabilities after the attack.

    views: ``explorer_views`` of the models on ``images`` (computed, or read from a lab's record: the explorer
    never runs a model, so a replayed page shows it too); the models are those it names, in order.
    images: (N, 3, H, W) in [0, 1]; labels: (N,);
    attacks: model name -> {attack name -> AttackResult}, every result on the images ``images[attacked]``
    (``attacked``: (M,) positions in ``images``; default the first M); ids: (N,) numbers naming the images in
    the list and the title (e.g. their test-set indices; default their positions). Moving a control only draws;
    the saved state (what the static book shows) is the first attacked image.
    Returns an ``ipywidgets.VBox`` (controls above, the panel below).
    """
    import ipywidgets as w
    import torch
    from IPython.display import display

    models = list(dict.fromkeys(key[0] for key in views))
    if not models:
        raise ValueError("attention_explorer needs the views of at least one model")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
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
    maps = {name: views[name, "maps"] for name in models}
    probs = {name: views[name, "probs"] for name in models}
    adv = {(name, a): (views[name, a, "maps"], views[name, a, "probs"]) for name, runs in attacks.items() for a in runs}

    model = w.Dropdown(options=models, description="model")
    cls = w.Dropdown(options=[(classes[c], c) for c in range(len(classes)) if (labels == c).any()],
                     description="class")
    image, attack, out = w.Dropdown(description="image"), w.Dropdown(description="attack"), w.Output()
    quiet = [False]  # True while options are being rewritten: one draw per user action, not one per change

    def set_images() -> None:
        image.options = [(f"#{int(ids[p])}" + (" (attacked)" if p in row_of else ""), p)
                         for p in (labels == cls.value).nonzero().squeeze(1).tolist()]

    def set_attacks() -> None:
        runs = list(attacks.get(model.value, {})) if image.value in row_of else []
        previous = attack.value
        why = "not attacked" if image.value not in row_of else "no attack on this model"
        attack.options = ["none"] + runs if runs else [f"none ({why})"]
        attack.value = previous if previous in attack.options else attack.options[min(1, len(runs))]

    def draw() -> None:
        i, name, a = image.value, model.value, attack.value
        kw: dict = {}
        title = f"{name}: {classes[int(labels[i])]} #{int(ids[i])}"
        if a in attacks.get(name, {}) and i in row_of:
            r, j = attacks[name][a], row_of[i]
            kw = {"adversarial": r.adv_images[j], "pixels": r.pixels[j], "probs_after": adv[name, a][1][j],
                  "attention_after": adv[name, a][0][j]}
            title += f" | {a}: {'success' if r.success[j] else 'failed (its best candidate shown)'}"
        with out:
            out.clear_output(wait=True)
            display(attention_panel(images[i], maps[name][i], probs[name][i], classes, title=title, **kw))

    def refresh(change: dict | None = None) -> None:
        if quiet[0]:
            return
        quiet[0] = True
        try:
            owner = None if change is None else change["owner"]
            if owner is cls:
                set_images()
            if owner is not attack:
                set_attacks()
        finally:
            quiet[0] = False
        draw()

    quiet[0] = True
    if m:  # open on the first attacked image
        cls.value = int(labels[attacked[0]])
    set_images()
    if m:
        image.value = int(attacked[0])
    quiet[0] = False
    for control in (model, cls, image, attack):
        control.observe(refresh, "value")
    refresh()
    return w.VBox([w.HBox([model, cls]), w.HBox([image, attack]), out])
