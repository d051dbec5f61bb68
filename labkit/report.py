"""Verdict rules and sentences that several labs share; each lab's own tables and verdicts live in its module of
``labkit.labs``.

Presentation (layer 8 of DESIGN.md): it asks ``labkit.stats`` for every test, interval and verdict, and imports no
lab, so every lab module (and ``labkit.claims``) can use it.

* ``verdict_lines``: verdicts as sentences, one per line (each prints status, effect with interval, n, power, why).
* ``on_paper_architecture``: an absolute rate measured on an architecture the paper did not measure is "not
  comparable" (Labs 05 and 09, and ``labkit.claims``).
* ``mean_outcome``: the rate of per-image outcomes from which a paired verdict scales the paper's ratio (Labs 03-06
  and 09).
* ``MIN_IMAGES``: the fewest images behind a bootstrap verdict (Labs 02b and 08).
* ``attack_gap``: does one attack break more images than another on the same images (Labs 01-02)?

Every verdict is three-valued, whatever the profile: a run too small to decide says "undecided", with the power it
had and the images it would need.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from torch import Tensor

from labkit import stats
from labkit.stats import Verdict

__all__ = ["MIN_IMAGES", "attack_gap", "mean_outcome", "on_paper_architecture", "verdict_lines"]


#: Fewest attacked images (and success pixels) behind a Lab 08 verdict: the image-level percentile bootstrap
#: covers only 82% at 5 images, 87% at 8 and 93% at 15 (seeded simulation), too few to call a claim contradicted.
#: Lab 02b's paired bootstrap (``labkit.labs.su.su_verdicts``) asks for as many.
MIN_IMAGES = 20


def verdict_lines(verdicts: Sequence[Verdict], prefix: str = "") -> str:
    """The sentences of ``verdicts``, one per line, each with ``prefix``."""
    return "\n".join(prefix + v.sentence() for v in verdicts)


def mean_outcome(o: list[int] | None) -> float:
    """The share of 1s among per-image outcomes (NaN for none): the rate a paired verdict scales its claim from."""
    return sum(o) / len(o) if o else float("nan")


def on_paper_architecture(v: Verdict, arch: str, paper: Sequence[str]) -> Verdict:
    """``v`` where ``arch`` is one of the architectures the paper measured (``paper``); else the same measurement,
    "not comparable" (not "undecided": no number of images would decide it).

    An absolute number (a clean accuracy, an undefended ASR) belongs to an architecture and its training budget:
    a small CNN's rate neither confirms nor refutes a ResNet-18's. Only relative claims (a defence's fall, an
    ablation's rise) transfer across architectures, and those are judged
    (``labkit.labs.apr_tables.defence_verdicts``).
    """
    if arch.lower().replace("-", "") in {p.lower().replace("-", "") for p in paper}:
        return v
    return dataclasses.replace(v, status="not comparable", direction=None, size=None, p=None, power=None, n_needed=None,
                               why=f"Not comparable: an absolute rate belongs to its architecture; the paper measured "
                                   f"{' / '.join(paper)}, this run {arch}, so the numbers stand side by side, "
                                   "untested.")


# -- Labs 01-02: sentences from measured tables ----------------------------------------------------------------------

def attack_gap(first: Sequence[int] | Tensor, second: Sequence[int] | Tensor, names: tuple[str, str] = ("DE", "corner search"),
               model: str = "") -> str:
    """Does ``second`` break more images than ``first`` on the same images? Counts, exact McNemar, interval."""
    pr = stats.mcnemar(first, second)
    head = f"[{model}] " if model else ""
    if pr.n == 0:
        return head + "No images attacked."
    nums = (f"{names[1]} breaks {pr.c} images that {names[0]} leaves intact, {names[0]} {pr.b} that {names[1]} "
            f"leaves intact, of {pr.n}; difference {100 * pr.difference:+.1f} points (95% CI "
            f"{100 * pr.lo:+.1f} to {100 * pr.hi:+.1f}), exact McNemar p = {pr.p:.3g}")
    if pr.p < stats.ALPHA:
        say = f"{names[0]} under-reports vulnerability here" if pr.difference > 0 else \
            f"{names[1]} under-reports vulnerability here"
    else:
        say = "no significant difference between the two attacks on these images"
    return f"{head}{say}: {nums}."
