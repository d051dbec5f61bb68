"""Interactive views (ipywidgets) for the labs.

They work live in JupyterLab and, once executed, render in the static book:
the executed notebook stores the widget state, and the book loads the widget
JavaScript from local copies (see book/vendor/).
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from labkit.attacks.base import AttackResult
from labkit.evaluate import probabilities
from labkit.plotting import attack_panel


def attack_browser(originals: Tensor, results: dict[str, AttackResult], model: nn.Module,
                   classes: Sequence[str]):
    """Browse attacked images: an image slider and a dropdown over the runs in ``results``.

    originals: (N, C, H, W) in [0, 1], the attacked images (same order in every result).
    results: run name (e.g. "untargeted, k=1") -> its AttackResult on ``originals``.
    Returns an ``ipywidgets.VBox`` (controls above, the attack panel below).
    """
    import ipywidgets as w
    from IPython.display import display

    before = probabilities(model, originals)
    after = {name: probabilities(model, r.adv_images) for name, r in results.items()}
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
