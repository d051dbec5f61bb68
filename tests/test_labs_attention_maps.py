"""labkit.labs.attention_maps (Lab 08): the explorer's images and the static figures of an attacked model."""

from __future__ import annotations

import torch

from labkit import attention
from labkit.data import CLASSES, Split
from labkit.labs import attention_maps
from tests.test_attention import brightness_gated, fake_result, images, rendered


def test_explorer_indices_put_the_attacked_first() -> None:
    split = Split(torch.zeros(50, 3, 4, 4, dtype=torch.uint8), torch.arange(50) % 10, CLASSES, "test")
    attacked = torch.tensor([7, 3, 11])
    idx = attention_maps.explorer_indices(attacked, split, extra=5)
    assert torch.equal(idx[:3], attacked) and len(idx) == 8 and len(set(idx.tolist())) == 8
    few = attention_maps.explorer_indices(attacked, split, extra=5, shown=2)  # the rest of the attacked are not extras
    assert few[:2].tolist() == [7, 3] and len(few) == 7 and 11 not in few.tolist()


def test_static_figures_of_an_attacked_model() -> None:
    model = brightness_gated(3)
    x = images(4, 8)
    res = fake_result(x, torch.tensor([[1, 2]] * 4), torch.tensor([False, True, True, False]))
    verified = {"DE k=1": torch.tensor([False, False, True, False])}
    m = attention.AttackedModel("full (tiny)", "full", "tiny", model, "key", torch.arange(10, 14), x,
                                torch.zeros(4, dtype=torch.long), [{"defence": "full"}], {"DE k=1": res}, verified)
    assert attention_maps.first_success(m, "DE k=1") == 2  # the first *verified* success
    fig = attention_maps.panel_figure(m, "DE k=1")
    assert rendered(fig) and "test image 12" in fig._suptitle.get_text() and "success" in fig._suptitle.get_text()
    assert rendered(attention_maps.panel_figure(m, None, i=1)) and len(attention_maps.panel_figure(m, None).axes) == 5
    assert rendered(attention_maps.change_figure(m, "DE k=1", i=0))
