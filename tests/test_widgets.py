"""The labs' interactive views respond without a kernel: every view is precomputed and a control picks one in
the browser (``Switchboard``: HTML with a small switch script). These unit tests check the views, the table that
maps control positions to views, and the HTML; tests/test_book.py checks in Chromium that the published pages
respond."""

from __future__ import annotations

import re

import pytest
import torch

from labkit.attacks.base import AttackResult
from labkit.data import CLASSES
from labkit.widgets import BEFORE, Control, Switchboard, attack_browser, attention_explorer


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


def test_attack_browser_precomputes_every_view_and_indexes_them_by_its_controls():
    n = 4
    originals = torch.rand(n, 3, 8, 8)
    results = {"untargeted": result(n, [False, False, False, False]),
               "targeted": result(n, [False, False, True, True], targeted=True, seed=1)}
    p = {BEFORE: probs(n, 0), "untargeted": probs(n, 1), "targeted": probs(n, 2)}
    board = attack_browser(originals, results, p, CLASSES, max_images=3)
    slider, dropdown = board.controls
    assert (slider.name, slider.kind, slider.options) == ("image", "slider", ("0", "1", "2"))
    assert (dropdown.name, dropdown.kind, dropdown.options) == ("attack", "dropdown", ("untargeted", "targeted"))
    # One view (a PNG) per run and image up to max_images, all different, each reached by its own positions.
    assert len(board.views) == 2 * 3 and all(png[:4] == b"\x89PNG" for png in board.views)
    assert len(set(board.views)) == len(board.views)
    assert sorted(board.view_of(i, k) for i in range(3) for k in range(2)) == list(range(6))
    # Opens on the first successful attack: the second run's image 2.
    assert (slider.start, dropdown.start) == (2, 1) and board.shown == board.view_of(2, 1)


def test_attack_browser_without_a_success_opens_on_the_first_view():
    n = 2
    results = {"a": result(n, [False, False])}
    board = attack_browser(torch.rand(n, 3, 8, 8), results, {BEFORE: probs(n, 0), "a": probs(n, 1)}, CLASSES)
    assert [c.start for c in board.controls] == [0, 0] and board.shown == board.view_of(0, 0)
    with pytest.raises(ValueError, match="max_images"):
        attack_browser(torch.rand(n, 3, 8, 8), results, {BEFORE: probs(n, 0), "a": probs(n, 1)}, CLASSES, max_images=0)


def test_attention_explorer_indexes_model_image_attack():
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
    model, image, attack = board.controls
    assert model.options == ("A", "B") and attack.options == ("none", "DE", "SRS")
    # Four images: attacked ones first, then two that were not; their names say their class and id.
    assert image.options == ("airplane #100 (attacked)", "automobile #101 (attacked)", "cat #103", "deer #104")
    assert len(board.index) == 2 * 4 * 3
    # Model A, attacked image: "none", DE and SRS are three different pictures; an image that was not attacked,
    # or an attack the model was not run against (B has no SRS), shows the plain view (one PNG, stored once).
    a_first = [board.view_of(0, 0, a) for a in range(3)]
    assert len({board.views[v] for v in a_first}) == 3
    assert len({board.view_of(0, 2, a) for a in range(3)}) == 1
    assert board.view_of(1, 0, 2) == board.view_of(1, 0, 0) != board.view_of(1, 0, 1)
    # Views: per model, 2 attacked images x (plain + its attacks) + 2 plain: A 2*3 + 2, B 2*2 + 2.
    assert len(board.views) == 8 + 6
    # Opens on the first image the first model's first attack broke, under that attack.
    assert (model.start, image.start, attack.start) == (0, 0, 1) and board.shown == a_first[1]
    # When the first broken image is further down (here the third), it leads the list and the explorer opens on it.
    attacks["A"]["DE"] = result(m, [False, False, True])
    board = attention_explorer(views, images, labels, CLASSES, attacks, ids=torch.arange(100, 105), max_images=4)
    model, image, attack = board.controls
    assert image.options[:2] == ("bird #102 (attacked)", "airplane #100 (attacked)")
    assert (image.start, attack.start) == (0, 1)


def test_a_switchboard_renders_its_controls_views_and_switch():
    pngs = (b"\x89PNG-a", b"\x89PNG-b", b"\x89PNG-c")
    board = Switchboard((Control("image", ("0", "1"), 1, kind="slider"), Control("run", ("x", "y <&>"), 0)),
                        pngs, (0, 1, 2, 2))
    page = board._repr_html_()
    assert page == board._repr_html_()  # no random ids: a replayed page renders the same HTML
    assert page.count('<img class="labkit-view"') == 3 and page.count("display:none") == 2
    shown = re.findall(r'<img class="labkit-view" alt="view (\d)" style="(?!display:none)', page)
    assert shown == [str(board.shown)] == ["2"]  # image 1, run x: row-major, the last control fastest
    assert 'type="range"' in page and 'min="0" max="1"' in page and "<select" in page
    assert "y &lt;&amp;&gt;" in page and "y <&>" not in page  # labels escaped
    assert "[0, 1, 2, 2]" in page and "[2, 2]" in page  # the table and the sizes the script reads
    with pytest.raises(ValueError, match="4 entries"):
        Switchboard(board.controls, pngs, (0, 1, 2))
    with pytest.raises(ValueError, match="into the 3 views"):
        Switchboard(board.controls, pngs, (0, 1, 2, 3))
    with pytest.raises(ValueError, match="outside"):
        Control("image", ("0",), 1)
    with pytest.raises(ValueError, match="kind"):
        Control("image", ("0",), 0, kind="knob")
    with pytest.raises(ValueError, match="outside"):
        board.view_of(0, 2)
