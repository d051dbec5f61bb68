"""The labs' widgets respond without a kernel: every view is precomputed in a Stack that a control switches
through a jslink (a link the static book's widget manager runs in the browser). These unit tests check that
wiring; tests/test_book.py checks in Chromium that the published pages respond."""

from __future__ import annotations

import ipywidgets as w
import pytest
import torch

from labkit.attacks.base import AttackResult
from labkit.data import CLASSES
from labkit.widgets import BEFORE, attack_browser, attention_explorer


def result(n: int, success: list[bool], targeted: bool = False, seed: int = 0) -> AttackResult:
    """A one-pixel result on n 8x8 images, each pixel at a different place so that views differ."""
    g = torch.Generator().manual_seed(seed)
    return AttackResult(adv_images=torch.rand(n, 3, 8, 8, generator=g), success=torch.tensor(success),
                        queries=torch.arange(n) * 10 + 5, pixels=torch.stack([torch.tensor([[i % 8, i % 8]])
                                                                              for i in range(n)]),
                        colours=torch.rand(n, 1, 3, generator=g), labels=torch.zeros(n, dtype=torch.long),
                        targets=torch.ones(n, dtype=torch.long) if targeted else None,
                        adv_pred=torch.ones(n, dtype=torch.long), adv_prob=torch.full((n,), 0.6),
                        true_prob=torch.full((n,), 0.3))


def probs(n: int, seed: int) -> torch.Tensor:
    return torch.softmax(torch.randn(n, 10, generator=torch.Generator().manual_seed(seed)), 1)


def linked(board, control, stack) -> bool:
    """Whether a jslink ties ``control`` to ``stack``'s selected_index."""
    return any(link.source[0] is control and link.target == (stack, "selected_index") for link in board.links)


def test_attack_browser_precomputes_every_view_and_links_the_controls():
    n = 4
    originals = torch.rand(n, 3, 8, 8)
    results = {"untargeted": result(n, [False, False, False, False]),
               "targeted": result(n, [False, False, True, True], targeted=True, seed=1)}
    p = {BEFORE: probs(n, 0), "untargeted": probs(n, 1), "targeted": probs(n, 2)}
    board = attack_browser(originals, results, p, CLASSES, max_images=3)
    runs, *per_run = board.stacks
    (slider, dropdown), = [board.box.children[0].children]
    assert isinstance(slider, w.IntSlider) and isinstance(dropdown, w.Dropdown)
    assert board.box.children[1] is runs and isinstance(runs, w.Stack)
    # One stack of views per run, one view (a PNG) per image up to max_images, and all views differ.
    assert list(runs.children) == per_run and len(per_run) == len(results)
    assert all(len(s.children) == 3 for s in per_run) and slider.max == 2
    pngs = [view.value for s in per_run for view in s.children]
    assert all(png[:4] == b"\x89PNG" for png in pngs) and len(set(pngs)) == len(pngs)
    # The dropdown picks the run's stack; the slider picks the image in every run's stack.
    assert linked(board, dropdown, runs) and dropdown is board.links[0].source[0]
    assert board.links[0].source == (dropdown, "index")
    assert all(linked(board, slider, s) for s in per_run)
    assert all(link.source == (slider, "value") for link in board.links[1:])
    # Opens on the first successful attack: the second run's image 2, controls and stacks agreeing.
    assert (dropdown.index, slider.value) == (1, 2)
    assert runs.selected_index == 1 and all(s.selected_index == 2 for s in per_run)


def test_attack_browser_without_a_success_opens_on_the_first_view():
    n = 2
    results = {"a": result(n, [False, False])}
    board = attack_browser(torch.rand(n, 3, 8, 8), results, {BEFORE: probs(n, 0), "a": probs(n, 1)}, CLASSES)
    assert board.stacks[0].selected_index == 0 and board.stacks[1].selected_index == 0
    with pytest.raises(ValueError, match="max_images"):
        attack_browser(torch.rand(n, 3, 8, 8), results, {BEFORE: probs(n, 0), "a": probs(n, 1)}, CLASSES, max_images=0)


def test_attention_explorer_stacks_model_image_attack_and_links_each_level():
    n, m = 5, 3  # images 0-2 attacked, 3-4 not
    images, labels = torch.rand(n, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4])
    maps = {"A": torch.rand(n, 8, 8), "B": torch.rand(n, 8, 8)}
    attacks = {"A": {"DE": result(m, [True, False, True]), "SRS": result(m, [True, True, True], seed=2)},
               "B": {"DE": result(m, [False, False, False], seed=3)}}
    views = {**{(k, "maps"): v for k, v in maps.items()}, **{(k, "probs"): probs(n, i) for i, k in enumerate(maps)}}
    for k, runs in attacks.items():
        for a in runs:
            views[k, a, "maps"], views[k, a, "probs"] = torch.rand(m, 8, 8), probs(m, 7)
    board = attention_explorer(views, images, labels, CLASSES, attacks, ids=torch.arange(100, 105), max_images=4)
    model, image, attack = board.box.children[0].children
    top = board.stacks[0]
    per_model, per_image = board.stacks[1:3], board.stacks[3:]
    assert [c for c in top.children] == list(per_model) and model.options == ("A", "B")
    # Four images: attacked ones first, then two that were not; their names say their class and id.
    assert [label for label, _ in image.options] == ["airplane #100 (attacked)", "automobile #101 (attacked)",
                                                     "cat #103", "deer #104"]
    assert attack.options == ("none", "DE", "SRS")
    assert len(per_image) == 2 * 4 and all(len(s.children) == 3 for s in per_image)
    assert linked(board, model, top)
    assert all(linked(board, image, s) for s in per_model)
    assert all(linked(board, attack, s) for s in per_image)
    # Model A, attacked image: "none", DE and SRS are three different pictures; an image that was not attacked,
    # or an attack the model was not run against (B has no SRS), shows the plain view (the same widget).
    a_first = per_model[0].children[0]
    assert len({v.value for v in a_first.children}) == 3
    a_plain = per_model[0].children[2]
    assert a_plain.children[0] is a_plain.children[1] is a_plain.children[2]
    b_first = per_model[1].children[0]
    assert b_first.children[2] is b_first.children[0] and b_first.children[1] is not b_first.children[0]
    # Opens on the first image the first model's first attack broke, under that attack.
    assert (model.index, image.index, attack.index) == (0, 0, 1) and a_first.selected_index == 1
    # When the first broken image is further down (here the third), it leads the list and the explorer opens on it.
    attacks["A"]["DE"] = result(m, [False, False, True])
    board = attention_explorer(views, images, labels, CLASSES, attacks, ids=torch.arange(100, 105), max_images=4)
    model, image, attack = board.box.children[0].children
    assert [label for label, _ in image.options][:2] == ["bird #102 (attacked)", "airplane #100 (attacked)"]
    assert (image.index, attack.index) == (0, 1) and board.stacks[3].selected_index == 1
