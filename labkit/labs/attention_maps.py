"""Lab 08: APR's attention maps, on the gated variants of Lab 06.

* ``gated_variants``: Lab 06's APR variants that have a gate, attacked on Lab 06's images with the book's
  protocol (``labkit.evaluate.evaluate_model``, so the attack records are Lab 06's cache entries), as
  ``labkit.attention.AttackedModel`` s;
* ``explorer_indices``: the images the Lab 08 explorer offers (attacked ones first), ``EXPLORED`` of them
  attacked; ``panel_views``, ``panel_figure`` and ``change_figure``: the static figures beside it.

The measurements on a map (``attention_of``, ``pixel_attention``, ``concentration``...) are ``labkit.attention``'s.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from labkit.apr import gate_of
from labkit.attention import AttackedModel, attention_of
from labkit.data import CLASSES, first_n, load_cifar10
from labkit.evaluate import common_correct, evaluate_model, probabilities, train_suite, verify
from labkit.labs.apr_paper import ablation_suite
from labkit.plotting import attention_attack, attention_panel
from labkit.profiles import Profile

__all__ = ["EXPLORED", "change_figure", "explorer_indices", "first_success", "gated_variants", "panel_figure",
           "panel_views"]


def gated_variants(profile: Profile, split: Any = None, progress: bool = True) -> dict[str, AttackedModel]:
    """The APR variants of Lab 06 that have an attention gate (first seed of every architecture), attacked.

    The four variants are loaded (or trained) through the cache; the attacked images are the first
    ``profile.n_attack`` test images that all four variants of an architecture classify correctly: one set for
    every map, so the explorer and the figures show each variant on the same images. (Lab 06 attacks each variant
    on the images of full APR's it classifies correctly instead, so the comparisons there are not chosen by the
    least accurate variant; the two sets differ, and these attacks are cached on their own.) The attacks run
    through ``labkit.evaluate.evaluate_model``. The variant without the gate takes part in choosing the images
    but has no map to study, so it is not returned.
    """
    split = split if split is not None else load_cifar10("test")
    seed = profile.seeds[0]
    trained = train_suite([e for e in ablation_suite(profile) if e.config.seed == seed], progress=progress)
    out = {}
    for arch in profile.models:
        group = [t for t in trained if t.entry.config.model == arch]
        idx = common_correct([t.model for t in group], split, profile.n_attack)
        x, y = split.floats(idx), split.labels[idx]
        for t in (t for t in group if gate_of(t.model) is not None):
            ev = evaluate_model(t.model, t.key, split, idx, profile, progress=progress, model=arch, seed=seed,
                                defence=t.entry.defence, paper=t.entry.paper)
            name = f"{t.entry.defence} ({arch})"
            out[name] = AttackedModel(name, t.entry.defence, arch, t.model, t.key, idx, x, y, ev.rows, ev.results,
                                      {a: verify(t.model, x, r, max_pixels=1) for a, r in ev.results.items()})
    return out


#: Attacked images the Lab 08 explorer offers: its views (maps and probabilities of every variant, clean and
#: attacked) are kept in the lab's record, and a few dozen images keep that under a megabyte.
EXPLORED = 24


def explorer_indices(attacked: Tensor, split: Any, extra: int = 50, shown: int | None = None) -> Tensor:
    """Dataset indices for the Lab 08 explorer: the first ``shown`` (default: all) of the ``attacked`` ones, in
    order, then up to ``extra`` more from ``labkit.data.first_n`` order that were not attacked at all (so some
    images have no attack to show)."""
    more = first_n(split, min(len(split), len(attacked) + extra))
    more = more[~torch.isin(more, attacked)][:extra]
    return torch.cat([attacked[:shown], more])


def first_success(m: AttackedModel, attack: str = "DE k=1") -> int:
    """Row of the first verified success of ``attack`` on ``m`` (0 when it never succeeded)."""
    return int(m.verified[attack].float().argmax()) if len(m.verified[attack]) else 0


def panel_views(m: AttackedModel, attack: str | None = "DE k=1", i: int | None = None) -> dict[str, Tensor]:
    """What ``panel_figure`` and ``change_figure`` show of ``m``'s model for attacked image ``i`` (default:
    ``first_success``): ``maps`` (2, H, W) A of the clean image and of ``attack``'s adversarial image (the clean
    one twice without an attack), ``probs`` (2, classes) the model's probabilities on them."""
    i = _shown(m, attack, i)
    x = m.images[i:i + 1]
    both = torch.cat([x, m.results[attack].adv_images[i:i + 1] if attack is not None else x])
    return {"maps": attention_of(m.model, both), "probs": probabilities(m.model, both)}


def _shown(m: AttackedModel, attack: str | None, i: int | None) -> int:
    return first_success(m, attack) if i is None and attack is not None else (i or 0)


def panel_figure(m: AttackedModel, attack: str | None = "DE k=1", i: int | None = None,
                 views: dict[str, Tensor] | None = None) -> Any:
    """What the Lab 08 explorer shows for attacked image ``i`` of ``m`` (default: ``first_success``), as a
    static figure: ``labkit.plotting.attention_panel`` with ``attack``'s pixel (None: the image alone).
    ``views``: ``panel_views(m, attack, i)`` (computed from ``m.model`` when not given; a replayed lab passes
    its record's)."""
    i = _shown(m, attack, i)
    views = views if views is not None else panel_views(m, attack, i)
    title = f"{m.name}, test image {int(m.indices[i])}"
    kw: dict[str, Any] = {}
    if attack is not None:
        r = m.results[attack]
        kw = {"adversarial": r.adv_images[i], "pixels": r.pixels[i], "probs_after": views["probs"][1],
              "attention_after": views["maps"][1]}
        title += f" | {attack}: {'success' if m.verified[attack][i] else 'failed (its best candidate shown)'}"
    return attention_panel(m.images[i], views["maps"][0], views["probs"][0], CLASSES, title=title, **kw)


def change_figure(m: AttackedModel, attack: str = "DE k=1", i: int | None = None,
                  views: dict[str, Tensor] | None = None) -> Any:
    """The adversarial pixel of image ``i`` (default: ``first_success``) on A(x), and A(x') - A(x)
    (``labkit.plotting.attention_attack``); ``views`` as in ``panel_figure``."""
    i = _shown(m, attack, i)
    maps = (views if views is not None else panel_views(m, attack, i))["maps"]
    r = m.results[attack]
    return attention_attack(m.images[i], r.adv_images[i], maps[0], maps[1], r.pixels[i],
                            title=f"{m.name}, {attack}: the attacked pixel on the map, and how the map changed")
